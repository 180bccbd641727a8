//! The `cairn` command line's machine-readable outputs (issue 3, item 5), parsed strictly: a line
//! that breaks the contract fails the test with the line shown.
//!
//! - `append --json`: `{"line":N,"chunk":I,"offset":O,"writer":W,"sequence":S}` per acked record;
//! - `replay --json`: one event per line, `type` = `record` (payload base64, chunk, offset, writer,
//!   sequence) or `skipped` (chunk, offset, len, reason);
//! - `stat --json`: the log's chunks with `index`, `handle`, `state`, `length`, `version`,
//!   `replicas`, `primary`.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::proc::{Output, Running};

/// A writer id as the CLI prints it (a JSON number, or a string), compared as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriterId(pub String);

impl fmt::Display for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One acknowledgement printed by `cairn append --json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Input line number, from 1.
    pub line: u64,
    /// Chunk index in the log; `None` (JSON `null`) when the primary answered "already stored"
    /// without knowing where (a retried duplicate).
    pub chunk: Option<u64>,
    /// File offset of the record's frame in its chunk; `None` exactly when `chunk` is.
    pub offset: Option<u64>,
    /// The appender's writer id.
    pub writer: WriterId,
    /// The record's sequence number.
    pub sequence: u64,
    /// `"unverified":true`: not stored by this run; a record with this (writer, sequence) was
    /// stored earlier, too long ago for the primary to compare it with this one.
    pub unverified: bool,
}

/// A record event of `cairn replay --json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Chunk index in the log.
    pub chunk: u64,
    /// File offset of the frame in its chunk.
    pub offset: u64,
    /// Writer id.
    pub writer: WriterId,
    /// Sequence number.
    pub sequence: u64,
    /// The payload, decoded from base64.
    pub payload: Vec<u8>,
}

/// One event of `cairn replay --json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A record.
    Record(Record),
    /// A range no replica holds whole.
    Skipped {
        /// The event as printed.
        raw: String,
    },
}

/// A parsed `cairn replay --json` run.
#[derive(Clone, Debug)]
pub struct Replay {
    /// Events in log order.
    pub events: Vec<Event>,
    /// The command's output (stderr has the summary).
    pub output: Output,
}

impl Replay {
    /// Parses the stdout of `cairn replay --json`.
    ///
    /// # Panics
    /// On a line that is not a contract event.
    pub fn parse(output: Output) -> Self {
        let mut events = Vec::new();
        for (i, line) in output.stdout.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v = parse_json_line(line, i, &output.label);
            let kind = v.get("type").and_then(Value::as_str).unwrap_or_else(|| {
                panic!("replay line {} has no string `type`: {}", i + 1, show(line))
            });
            match kind {
                "record" => {
                    let field = |k: &str| number(&v, k, line);
                    let payload = v
                        .get("payload")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("record without payload: {}", show(line)));
                    events.push(Event::Record(Record {
                        chunk: field("chunk"),
                        offset: field("offset"),
                        writer: writer(&v, line),
                        sequence: field("sequence"),
                        payload: decode_base64(payload)
                            .unwrap_or_else(|| panic!("payload is not base64: {}", show(line))),
                    }));
                }
                "skipped" => events.push(Event::Skipped {
                    raw: String::from_utf8_lossy(line).into_owned(),
                }),
                other => panic!("replay event of unknown type {other:?}: {}", show(line)),
            }
        }
        Self { events, output }
    }

    /// The record events.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.events.iter().filter_map(|e| match e {
            Event::Record(r) => Some(r),
            Event::Skipped { .. } => None,
        })
    }

    /// The payloads of the record events, in order.
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.records().map(|r| r.payload.clone()).collect()
    }
}

/// Parses the stdout of `cairn append --json`.
///
/// # Panics
/// On a line that is not a contract acknowledgement.
pub fn parse_acks(output: &Output) -> Vec<Ack> {
    let mut acks = Vec::new();
    for (i, line) in output.stdout.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = parse_json_line(line, i, &output.label);
        acks.push(ack_from_json(&v, line));
    }
    acks
}

/// Parses one line of `cairn append --json` (as read while it runs).
///
/// # Panics
/// If it is not a contract acknowledgement.
pub fn parse_ack_line(line: &[u8]) -> Ack {
    let v = parse_json_line(line, 0, "cairn append --json");
    ack_from_json(&v, line)
}

/// Reads the next `count` acknowledgements a running `cairn append --json` prints, each within
/// `timeout` of the previous one (they stay in its output for [`parse_acks`] too).
///
/// # Panics
/// If the appender stalls for `timeout` or stops printing first, with its output.
pub fn read_acks(running: &mut Running, count: usize, timeout: Duration) -> Vec<Ack> {
    let mut acks = Vec::with_capacity(count);
    while acks.len() < count {
        match running.next_line(timeout) {
            Some(line) if line.iter().all(u8::is_ascii_whitespace) => {}
            Some(line) => acks.push(parse_ack_line(&line)),
            None => {
                let exited = running.has_exited();
                panic!(
                    "the appender printed {} of {count} more acknowledgements, then {} for \
                     {timeout:?}",
                    acks.len(),
                    if exited { "exited" } else { "nothing" }
                );
            }
        }
    }
    acks
}

fn ack_from_json(v: &Value, line: &[u8]) -> Ack {
    Ack {
        line: number(v, "line", line),
        chunk: nullable_number(v, "chunk", line),
        offset: nullable_number(v, "offset", line),
        writer: writer(v, line),
        sequence: number(v, "sequence", line),
        unverified: match v.get("unverified") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => panic!("`unverified` is not a boolean in {}", show(line)),
        },
    }
}

/// One chunk of `cairn stat --json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkStat {
    /// Position in the log, from 0.
    pub index: u64,
    /// The handle as printed (16 hex digits).
    pub handle: String,
    /// `open` or `sealed`.
    pub state: String,
    /// Length in bytes (final once sealed).
    pub length: u64,
    /// Chunk version.
    pub version: u64,
    /// Chunkserver addresses holding a current replica, sorted.
    pub replicas: Vec<String>,
    /// The primary's address, if any.
    pub primary: Option<String>,
}

impl ChunkStat {
    /// Whether the chunk is sealed.
    pub fn is_sealed(&self) -> bool {
        self.state == "sealed"
    }

    /// The chunk without its replica list and primary (which come from reports, not the master's
    /// persistent state).
    pub fn metadata(&self) -> (u64, String, String, u64, u64) {
        (
            self.index,
            self.handle.clone(),
            self.state.clone(),
            self.length,
            self.version,
        )
    }
}

/// A parsed `cairn stat --json`.
#[derive(Clone, Debug)]
pub struct LogStat {
    /// The JSON as printed.
    pub raw: Value,
    /// The chunks in log order.
    pub chunks: Vec<ChunkStat>,
}

impl LogStat {
    /// Parses the stdout of `cairn stat --json`: an object with a `chunks` array (or a bare array).
    ///
    /// # Panics
    /// On output that does not follow the contract.
    pub fn parse(output: &Output) -> Self {
        let raw: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {output:?}", output.label));
        let chunks = match &raw {
            Value::Array(a) => a.clone(),
            Value::Object(o) => o
                .get("chunks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| panic!("stat JSON has no `chunks` array: {raw}")),
            _ => panic!("stat JSON is neither an object nor an array: {raw}"),
        };
        let chunks = chunks
            .iter()
            .map(|c| {
                let text = c.to_string();
                let mut replicas: Vec<String> = c
                    .get("replicas")
                    .and_then(Value::as_array)
                    .unwrap_or_else(|| panic!("chunk without `replicas` array: {text}"))
                    .iter()
                    .map(|r| {
                        r.as_str()
                            .unwrap_or_else(|| panic!("replica is not a string: {text}"))
                            .to_owned()
                    })
                    .collect();
                replicas.sort();
                ChunkStat {
                    index: number(c, "index", text.as_bytes()),
                    handle: match c.get("handle") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        _ => panic!("chunk without `handle`: {text}"),
                    },
                    state: c
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("chunk without string `state`: {text}"))
                        .to_owned(),
                    length: number(c, "length", text.as_bytes()),
                    version: number(c, "version", text.as_bytes()),
                    replicas,
                    primary: c
                        .get("primary")
                        .and_then(Value::as_str)
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                }
            })
            .collect();
        Self { raw, chunks }
    }

    /// The sealed chunks.
    pub fn sealed(&self) -> Vec<&ChunkStat> {
        self.chunks.iter().filter(|c| c.is_sealed()).collect()
    }
}

/// Joins records into `append`'s stdin: one line each.
pub fn join_lines(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        assert!(
            !line.contains(&b'\n'),
            "test bug: a record line contains a newline"
        );
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn parse_json_line(line: &[u8], index: usize, label: &str) -> Value {
    serde_json::from_slice(line).unwrap_or_else(|e| {
        panic!(
            "`{label}` stdout line {} is not JSON ({e}): {}",
            index + 1,
            show(line)
        )
    })
}

fn number(v: &Value, key: &str, line: &[u8]) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no unsigned integer `{key}` in {}", show(line)))
}

fn nullable_number(v: &Value, key: &str, line: &[u8]) -> Option<u64> {
    match v.get(key) {
        Some(Value::Null) => None,
        Some(n) if n.is_u64() => n.as_u64(),
        _ => panic!("no unsigned integer or null `{key}` in {}", show(line)),
    }
}

fn writer(v: &Value, line: &[u8]) -> WriterId {
    match v.get("writer") {
        Some(Value::Number(n)) => WriterId(n.to_string()),
        Some(Value::String(s)) => WriterId(s.to_ascii_lowercase()),
        _ => panic!("no `writer` in {}", show(line)),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}

/// A line for a message, cut to 300 characters.
fn show(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
