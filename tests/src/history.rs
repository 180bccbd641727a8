//! The client history: what each test writer attempted and what it was told, one JSON object
//! per line. Chaos scenarios write it as they go; append runs are turned into it
//! ([`crate::check::runs`]); [`crate::check`] checks it against what was read.
//!
//! Events (`t` is milliseconds since the history was created; `attempt` is on every event the
//! [`History`] writes, and an outcome read without it belongs to the latest invoke of its
//! `(w, seq)`):
//! - `{"type":"invoke","w":W,"seq":S,"attempt":A,"t":T}`;
//! - `{"type":"ok","w":W,"seq":S,"attempt":A,"chunk":C,"offset":O,"writer":I,"sequence":N,"t":T}`
//!   (chunk index and file offset, or `null` when the acknowledgement did not say where; Cairn's
//!   record id, writer and sequence, when the acknowledgement gave it);
//! - `{"type":"fail","w":W,"seq":S,"attempt":A,"reason":"…","definite":B,"t":T}`: `definite` only
//!   for a rejection before anything was written (validation, size);
//! - `{"type":"info","w":W,"seq":S,"attempt":A,"reason":"…","t":T}`: indeterminate (timeout,
//!   disconnect, `UNAVAILABLE` after sending).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use crate::contract::WriterId;

/// Cairn's id of a stored record: the appender's writer id and the record's sequence.
pub type CairnId = (WriterId, u64);

/// What happened to an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The writer is about to send the record.
    Invoke,
    /// Acknowledged, at this chunk index and offset if the acknowledgement said.
    Ok {
        /// Chunk index in the log.
        chunk: Option<u64>,
        /// File offset of the record in its chunk.
        offset: Option<u64>,
        /// Cairn's id of the record, when the acknowledgement gave it.
        id: Option<CairnId>,
    },
    /// Failed; `definite` when nothing can have been written.
    Fail {
        /// Why.
        reason: String,
        /// Rejected before any write.
        definite: bool,
    },
    /// Unknown outcome: the record may or may not be stored.
    Info {
        /// Why.
        reason: String,
    },
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The test writer.
    pub w: u32,
    /// The writer's sequence number.
    pub seq: u64,
    /// The attempt, when the line gives it.
    pub attempt: Option<u32>,
    /// Milliseconds since the history began, when the line gives it.
    pub t: Option<u64>,
    /// What happened.
    pub op: Op,
}

impl Entry {
    /// The JSON line (without its newline).
    pub fn to_json(&self) -> String {
        let (kind, mut v) = match &self.op {
            Op::Invoke => ("invoke", json!({})),
            Op::Ok { chunk, offset, id } => {
                let mut v = json!({"chunk": chunk, "offset": offset});
                if let Some((writer, sequence)) = id {
                    v["writer"] = json!(writer.0);
                    v["sequence"] = json!(sequence);
                }
                ("ok", v)
            }
            Op::Fail { reason, definite } => {
                ("fail", json!({"reason": reason, "definite": definite}))
            }
            Op::Info { reason } => ("info", json!({"reason": reason})),
        };
        v["type"] = json!(kind);
        v["w"] = json!(self.w);
        v["seq"] = json!(self.seq);
        if let Some(a) = self.attempt {
            v["attempt"] = json!(a);
        }
        if let Some(t) = self.t {
            v["t"] = json!(t);
        }
        v.to_string()
    }

    /// Parses one JSON line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
        let uint = |k: &str| v.get(k).and_then(Value::as_u64);
        let required = |k: &str| uint(k).ok_or_else(|| format!("no unsigned `{k}`"));
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("no string `{k}`"))
        };
        let w = u32::try_from(required("w")?).map_err(|_| "`w` over u32".to_owned())?;
        let attempt = match v.get("attempt") {
            None | Some(Value::Null) => None,
            Some(_) => Some(
                u32::try_from(required("attempt")?).map_err(|_| "`attempt` over u32".to_owned())?,
            ),
        };
        let op = match v.get("type").and_then(Value::as_str) {
            Some("invoke") => Op::Invoke,
            Some("ok") => Op::Ok {
                chunk: uint("chunk"),
                offset: uint("offset"),
                id: match (v.get("writer").and_then(Value::as_str), uint("sequence")) {
                    (Some(writer), Some(sequence)) => Some((WriterId(writer.to_owned()), sequence)),
                    _ => None,
                },
            },
            Some("fail") => Op::Fail {
                reason: text("reason")?,
                definite: v
                    .get("definite")
                    .and_then(Value::as_bool)
                    .ok_or("no boolean `definite`")?,
            },
            Some("info") => Op::Info {
                reason: text("reason")?,
            },
            other => return Err(format!("unknown `type` {other:?}")),
        };
        Ok(Self {
            w,
            seq: required("seq")?,
            attempt,
            t: uint("t"),
            op,
        })
    }
}

/// A history being written: every event is appended to its file at once (so a crashed test still
/// leaves it) and kept in memory. Shared by the writer threads of a scenario.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    started: Instant,
    inner: Mutex<(File, Vec<Entry>)>,
}

impl History {
    /// Creates (or truncates) the history file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            started: Instant::now(),
            inner: Mutex::new((file, Vec::new())),
        })
    }

    /// The file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Milliseconds since the history began, on the clock of its events' `t` (a reader's start
    /// time for invariant R).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records that attempt `attempt` of `(w, seq)` is being sent.
    pub fn invoke(&self, w: u32, seq: u64, attempt: u32) {
        self.push(w, seq, attempt, Op::Invoke);
    }

    /// Records the acknowledgement of an attempt: where it put the record and under which Cairn
    /// id, as far as the acknowledgement said.
    pub fn ok(
        &self,
        w: u32,
        seq: u64,
        attempt: u32,
        (chunk, offset): (Option<u64>, Option<u64>),
        id: Option<CairnId>,
    ) {
        self.push(w, seq, attempt, Op::Ok { chunk, offset, id });
    }

    /// Records the failure of an attempt (`definite`: nothing can have been written).
    pub fn fail(&self, w: u32, seq: u64, attempt: u32, reason: &str, definite: bool) {
        let reason = reason.to_owned();
        self.push(w, seq, attempt, Op::Fail { reason, definite });
    }

    /// Records an indeterminate outcome of an attempt.
    pub fn info(&self, w: u32, seq: u64, attempt: u32, reason: &str) {
        let reason = reason.to_owned();
        self.push(w, seq, attempt, Op::Info { reason });
    }

    /// Every event so far, in the order written.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().1.clone()
    }

    fn push(&self, w: u32, seq: u64, attempt: u32, op: Op) {
        let entry = Entry {
            w,
            seq,
            attempt: Some(attempt),
            t: Some(self.started.elapsed().as_millis() as u64),
            op,
        };
        let mut inner = self.lock();
        writeln!(inner.0, "{}", entry.to_json()).expect("append to the history file");
        inner.1.push(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (File, Vec<Entry>)> {
        // A writer thread that panicked mid-push leaves whole lines behind: keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads a history file; blank lines are skipped, any other bad line is an error naming it.
pub fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            Entry::parse(line)
                .map_err(|e| format!("{} line {}: {e}: {line}", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: events written by concurrent writers read back from the file as written, the
    // optional Cairn id of an acknowledgement included.
    #[test]
    fn written_events_read_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let history = History::create(&path).unwrap();
        std::thread::scope(|s| {
            for w in 1..=4 {
                let h = &history;
                s.spawn(move || {
                    h.invoke(w, 1, 0);
                    h.ok(
                        w,
                        1,
                        0,
                        (Some(0), Some(32)),
                        Some((WriterId("7".into()), 1)),
                    );
                    h.invoke(w, 2, 0);
                    h.info(w, 2, 0, "deadline exceeded");
                    h.invoke(w, 2, 1);
                    h.fail(w, 2, 1, "record too large", true);
                    h.invoke(w, 3, 0);
                    h.ok(w, 3, 0, (None, None), None);
                });
            }
        });
        let entries = history.entries();
        assert_eq!(entries.len(), 32);
        assert_eq!(read(&path).unwrap(), entries);
    }

    // Proves: a malformed line fails the read naming its line number; `attempt` may be absent.
    #[test]
    fn a_bad_line_is_an_error_naming_it_and_attempt_is_optional() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(
            &path,
            "{\"type\":\"invoke\",\"w\":1,\"seq\":1}\n\n{\"type\":\"ok\",\"w\":1}\n",
        )
        .unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("line 3") && err.contains("seq"), "{err}");
        let entry = Entry::parse("{\"type\":\"invoke\",\"w\":1,\"seq\":1}").unwrap();
        assert_eq!((entry.attempt, entry.t, entry.op), (None, None, Op::Invoke));
    }
}
