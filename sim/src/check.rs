//! The history one run records ([`History`]) and the checker over it ([`check`]).
//!
//! Every record's payload is derived from its writer index and sequence ([`payload`]), so the
//! checker knows every byte that may legitimately be read. Classes of violation, each a key of
//! [`Outcome::problems`]:
//! - **lost**: an acknowledged record (any acknowledged attempt) missing from the final replay;
//! - **unexpected**: a replayed record that was never attempted, of an unknown writer, or with
//!   other bytes than its writer sent under that sequence;
//! - **duplicate**: a record twice in one replay or tail (the client drops resent copies);
//! - **order**: a writer's records out of sequence order in a replay or tail (every writer,
//!   acknowledged or not);
//! - **read-after-ack**: a replay that succeeded during the faults without a record
//!   acknowledged before it began;
//! - **monotonic**: a record a replay returned missing from a replay that began after it ended
//!   (read-then-gone), the final one included;
//! - **tail**: the tail, given time after healing, not returning every acknowledged record;
//! - **convergence**: after healing, a sealed chunk without its full replica count or with
//!   replicas whose bytes differ;
//! - **liveness**: an append still unanswered well after healing, or the final replay never
//!   succeeding.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use bytes::Bytes;
use cairn_record::WriterId;

/// (writer index, sequence): one record of the workload.
pub type Key = (usize, u64);

/// The payload of record `seq` of writer `w` (writer id `writer`): derived, so the checker
/// knows every byte.
///
/// Every fourth record's payload carries, 16 bytes in (8-aligned in the chunk, as frames are),
/// the whole valid frame of a *later* record of the same writer, [`EMBED_AHEAD`] or more
/// sequences on (the first that fits), byte for byte as that record will be stored. A scanner
/// that resynchronises inside a damaged record finds it; marks taken from such bytes would make
/// a primary answer the real record "already stored" before it ever was, and the checker would
/// see it lost. The length is the same either way, so the embedded frames change no chunk
/// boundary of a seed's history.
pub fn payload(writer: WriterId, w: usize, seq: u64) -> Bytes {
    let len = payload_len(w, seq);
    let mut p = format!("w{w}-s{seq:06}-").into_bytes();
    p.resize(len, b'a' + (seq % 26) as u8);
    let room = len - 16;
    let later = (seq + EMBED_AHEAD..seq + EMBED_AHEAD + 100)
        .find(|&t| cairn_record::encoded_len(payload_len(w, t)) <= room);
    if seq.is_multiple_of(4)
        && let Some(later) = later
    {
        let mut frame = Vec::new();
        let id = cairn_record::RecordId {
            writer,
            sequence: later,
        };
        cairn_record::encode_record(&mut frame, id, &payload(writer, w, later), usize::MAX)
            .expect("a workload record encodes");
        p[16..16 + frame.len()].copy_from_slice(&frame);
    }
    Bytes::from(p)
}

/// How far ahead of its own record a payload's embedded frame is at least ([`payload`]): past
/// the appender's window, so the later record is usually not sent yet when the chunk holding
/// the earlier one is damaged and sealed.
pub const EMBED_AHEAD: u64 = 60;

fn payload_len(w: usize, seq: u64) -> usize {
    64 + (seq as usize * 37 + w * 11) % 700
}

/// An acknowledgement.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Acked {
    /// Simulated time the appender learned it.
    pub at: Duration,
    /// (chunk, offset) if the acknowledgement said where.
    pub place: Option<(u32, u64)>,
}

/// One replay run by a reader while (or right after) faults were active.
#[derive(Clone, Debug, Hash)]
pub struct Read {
    /// Simulated time it began and ended.
    pub started: Duration,
    /// When it ended.
    pub ended: Duration,
    /// Records acknowledged before it began.
    pub acked_before: BTreeSet<Key>,
    /// What it returned in order, or why it failed (a failed read promises nothing).
    pub result: Result<Vec<Key>, String>,
}

/// Everything the workload saw; the hosts fill it in as the run goes.
#[derive(Debug, Default)]
pub struct History {
    /// Writer ids → writer index, as appenders learn them.
    pub writers: BTreeMap<WriterId, usize>,
    /// Records sent at least once.
    pub attempted: BTreeSet<Key>,
    /// Acknowledged records and when.
    pub acked: BTreeMap<Key, Acked>,
    /// Appends that failed (indeterminate: they may be stored).
    pub failed: usize,
    /// Appends still unanswered at the liveness deadline.
    pub unanswered: usize,
    /// Replays during the faults.
    pub reads: Vec<Read>,
    /// The final replay after healing, in log order.
    pub replayed: Vec<Key>,
    /// What the last tail returned, in order, and the problems found when it ended.
    pub tail: Vec<Key>,
    /// Times the tail failed and was restarted.
    pub tail_restarts: usize,
    /// Replayed or tailed records that are not what any writer sent.
    pub unexpected: Vec<String>,
    /// `Skipped` events of every replay and tail.
    pub skipped: usize,
    /// Replica bytes or counts that never converged after healing.
    pub convergence: Vec<String>,
    /// Tail records missing when the tail was given up on.
    pub tail_missing: Vec<Key>,
    /// Why the workload could not finish.
    pub error: Option<String>,
}

impl History {
    /// Maps a read record to its key, or says why it is not one the workload sent.
    pub fn classify(&mut self, writer: WriterId, seq: u64, bytes: &[u8]) -> Option<Key> {
        match self.writers.get(&writer) {
            Some(&w) if !self.attempted.contains(&(w, seq)) => {
                self.unexpected
                    .push(format!("writer {w} sequence {seq} read but never sent"));
                None
            }
            Some(&w) if bytes == payload(writer, w, seq).as_ref() => Some((w, seq)),
            Some(&w) => {
                self.unexpected
                    .push(format!("writer {w} sequence {seq} read with other bytes"));
                None
            }
            None => {
                self.unexpected
                    .push(format!("unknown writer {writer:016x} sequence {seq}"));
                None
            }
        }
    }
}

/// What a run saw and the checker's verdict.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Acknowledged records.
    pub acked: usize,
    /// Appends that failed.
    pub failed: usize,
    /// Records in the final replay.
    pub replayed: usize,
    /// Replays during the faults, and how many of them succeeded.
    pub reads: (usize, usize),
    /// Records the tail returned.
    pub tailed: usize,
    /// `Skipped` events seen by every reader.
    pub skipped: usize,
    /// Faults injected, in order, with the simulated time.
    pub faults: Vec<String>,
    /// Violations by class (see the module doc), a few examples each.
    pub problems: BTreeMap<&'static str, Vec<String>>,
    /// Why the run could not finish.
    pub error: Option<String>,
    /// A hash of the whole history: equal for two runs of one seed.
    pub history_hash: u64,
}

impl Outcome {
    /// Whether the checker found nothing wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.error.is_none()
    }

    /// One line of counts, then the problems and the fault schedule.
    pub fn report(&self, seed: u64) -> String {
        let mut s = format!(
            "seed {seed}: acked {}, failed {}, replayed {}, reads {}/{} ok, tailed {}, skipped {}, \
             faults {}, problems {:?}, error {:?}",
            self.acked,
            self.failed,
            self.replayed,
            self.reads.1,
            self.reads.0,
            self.tailed,
            self.skipped,
            self.faults.len(),
            self.problems.keys().collect::<Vec<_>>(),
            self.error
        );
        for (class, examples) in &self.problems {
            s.push_str(&format!("\n{class}:\n  {}", examples.join("\n  ")));
        }
        s.push_str(&format!("\nfaults:\n  {}", self.faults.join("\n  ")));
        s
    }
}

/// At most this many examples per class.
const EXAMPLES_MAX: usize = 8;

fn note(problems: &mut BTreeMap<&'static str, Vec<String>>, class: &'static str, what: String) {
    let v = problems.entry(class).or_default();
    if v.len() < EXAMPLES_MAX {
        v.push(what);
    }
}

/// Duplicates and per-writer order of one sequence of reads.
fn check_sequence(problems: &mut BTreeMap<&'static str, Vec<String>>, reader: &str, keys: &[Key]) {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for &(w, s) in keys {
        if !seen.insert((w, s)) {
            note(
                problems,
                "duplicate",
                format!("{reader}: writer {w} sequence {s} twice"),
            );
        }
        if let Some(&prev) = last.get(&w)
            && prev >= s
        {
            note(
                problems,
                "order",
                format!("{reader}: writer {w} sequence {s} after {prev}"),
            );
        }
        last.insert(w, s);
    }
}

/// Checks the history and hashes it.
pub fn check(h: &History, faults: Vec<String>) -> Outcome {
    let mut problems = BTreeMap::new();
    let final_set: BTreeSet<Key> = h.replayed.iter().copied().collect();
    if h.error.is_none() {
        for (k, a) in &h.acked {
            if !final_set.contains(k) {
                note(
                    &mut problems,
                    "lost",
                    format!(
                        "writer {} sequence {} acknowledged at {:?} {:?}",
                        k.0, k.1, a.at, a.place
                    ),
                );
            }
        }
    }
    for u in &h.unexpected {
        note(&mut problems, "unexpected", u.clone());
    }
    check_sequence(&mut problems, "final replay", &h.replayed);
    check_sequence(&mut problems, "tail", &h.tail);
    let done: Vec<(&Read, BTreeSet<Key>)> = h
        .reads
        .iter()
        .filter_map(|r| Some((r, r.result.as_ref().ok()?.iter().copied().collect())))
        .collect();
    for (i, (r, got)) in done.iter().enumerate() {
        let keys = r.result.as_ref().expect("only successful reads");
        check_sequence(&mut problems, &format!("read {i}"), keys);
        for k in r.acked_before.difference(got) {
            note(
                &mut problems,
                "read-after-ack",
                format!(
                    "replay from {:?} to {:?} lacks writer {} sequence {} acknowledged at {:?}",
                    r.started, r.ended, k.0, k.1, h.acked[k].at
                ),
            );
        }
        let later = done
            .iter()
            .filter(|(l, _)| l.started > r.ended)
            .map(|(l, s)| (format!("a replay from {:?}", l.started), s));
        let last = h
            .error
            .is_none()
            .then(|| ("the final replay".to_owned(), &final_set));
        for (name, set) in later.chain(last) {
            if let Some(k) = got.difference(set).next() {
                note(
                    &mut problems,
                    "monotonic",
                    format!(
                        "writer {} sequence {} returned by the replay from {:?} is missing from {name}",
                        k.0, k.1, r.started
                    ),
                );
            }
        }
    }
    for k in &h.tail_missing {
        note(
            &mut problems,
            "tail",
            format!("the tail never returned writer {} sequence {}", k.0, k.1),
        );
    }
    for c in &h.convergence {
        note(&mut problems, "convergence", c.clone());
    }
    if h.unanswered > 0 {
        note(
            &mut problems,
            "liveness",
            format!("{} appends unanswered long after healing", h.unanswered),
        );
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    h.acked.hash(&mut hasher);
    h.replayed.hash(&mut hasher);
    h.failed.hash(&mut hasher);
    h.reads.hash(&mut hasher);
    h.tail.hash(&mut hasher);
    faults.hash(&mut hasher);
    Outcome {
        acked: h.acked.len(),
        failed: h.failed,
        replayed: h.replayed.len(),
        reads: (h.reads.len(), done.len()),
        tailed: h.tail.len(),
        skipped: h.skipped,
        faults,
        problems,
        error: h.error.clone(),
        history_hash: hasher.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: a fourth of the payloads carry, 16 bytes in, the exact frame of a later record
    // of their writer (what a resynchronising scanner would find), the others none; the
    // lengths are the ones the history was built with.
    #[test]
    fn every_fourth_payload_embeds_a_later_frame() {
        let mut embedded = 0;
        for seq in 1..=200u64 {
            let p = payload(WriterId(0xfeed), 3, seq);
            assert_eq!(p.len(), 64 + (seq as usize * 37 + 33) % 700);
            if let Ok(f) = cairn_record::decode_frame(&p[16..]) {
                assert_eq!(seq % 4, 0, "seq {seq}");
                assert_eq!(f.id.writer, WriterId(0xfeed));
                assert!(f.id.sequence >= seq + EMBED_AHEAD);
                assert_eq!(
                    f.payload,
                    payload(WriterId(0xfeed), 3, f.id.sequence).as_ref()
                );
                embedded += 1;
            }
        }
        assert!(embedded >= 25, "only {embedded} of 50 could embed a frame");
    }

    fn history() -> History {
        let mut h = History::default();
        h.writers.insert(WriterId(0xa), 0);
        for s in 1..=3 {
            h.attempted.insert((0, s));
            h.acked.insert(
                (0, s),
                Acked {
                    at: Duration::from_millis(s * 10),
                    place: None,
                },
            );
        }
        h.replayed = vec![(0, 1), (0, 2), (0, 3)];
        h
    }

    fn classes(h: &History) -> Vec<&'static str> {
        check(h, vec![]).problems.keys().copied().collect()
    }

    // Proves: a clean history passes, and each class fires on a history built to break it.
    #[test]
    fn each_class_fires() {
        assert!(classes(&history()).is_empty());

        let mut h = history();
        h.replayed.pop();
        assert_eq!(classes(&h), ["lost"]);

        let mut h = history();
        h.replayed = vec![(0, 1), (0, 3), (0, 2)];
        assert_eq!(classes(&h), ["order"]);

        let mut h = history();
        h.replayed.push((0, 2));
        assert_eq!(classes(&h), ["duplicate", "order"]);

        let mut h = history();
        assert_eq!(h.classify(WriterId(0xa), 1, b"other"), None);
        assert_eq!(
            h.classify(WriterId(0xb), 1, &payload(WriterId(0xb), 0, 1)),
            None
        );
        assert_eq!(
            h.classify(WriterId(0xa), 9, &payload(WriterId(0xa), 0, 9)),
            None
        );
        assert_eq!(
            h.classify(WriterId(0xa), 2, &payload(WriterId(0xa), 0, 2)),
            Some((0, 2))
        );
        assert_eq!(h.unexpected.len(), 3);
        assert_eq!(classes(&h), ["unexpected"]);

        let read = |started: u64, keys: Vec<Key>, acked: &[Key]| Read {
            started: Duration::from_millis(started),
            ended: Duration::from_millis(started + 5),
            acked_before: acked.iter().copied().collect(),
            result: Ok(keys),
        };
        let mut h = history();
        h.reads.push(read(100, vec![(0, 1)], &[(0, 1), (0, 2)]));
        assert_eq!(classes(&h), ["read-after-ack"]);

        let mut h = history();
        h.attempted.insert((0, 4));
        h.reads.push(read(100, vec![(0, 1), (0, 4)], &[(0, 1)]));
        h.reads.push(read(200, vec![(0, 1)], &[(0, 1)]));
        assert_eq!(classes(&h), ["monotonic"]);

        // A failed read promises nothing.
        let mut h = history();
        h.reads.push(Read {
            result: Err("unavailable".into()),
            ..read(100, vec![], &[(0, 1)])
        });
        assert!(classes(&h).is_empty());

        let mut h = history();
        h.tail_missing.push((0, 3));
        assert_eq!(classes(&h), ["tail"]);

        let mut h = history();
        h.convergence.push("chunk 0: 2 replicas".into());
        assert_eq!(classes(&h), ["convergence"]);

        let mut h = history();
        h.unanswered = 1;
        assert_eq!(classes(&h), ["liveness"]);
    }
}
