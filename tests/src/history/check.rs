//! The chaos checker: a [`History`](super::History) against the final reads.
//!
//! Records are named by their [`Payload`] — the test's `(w, seq, attempt)` — not by Cairn's
//! appender ids, so a record is recognised whatever path it took. A read record is *valid* when
//! its payload decodes, its hash matches and its attempt was invoked; only valid records count as
//! read. Invariants, each a named class of violations with a counter:
//! - **H (history)**: every outcome follows an invoke of its attempt; one outcome per attempt.
//! - **L (lost)**: every acknowledged `(w, seq)` is in the deduplicated replay; each lost one is
//!   classed against the writer's read sequences: prefix (below all), middle, postfix (above all,
//!   or nothing of the writer read).
//! - **U (unexpected)**: every record of the full replay and of every replica scan decodes and was
//!   invoked (phantoms, garbage or padding parsed as records).
//! - **I (integrity)**: every such record's body matches its blake3.
//! - **F (definite failure)**: no attempt that failed definitely is read.
//! - **D (duplicates)**: in the full replay, a second copy of an attempt carries the same Cairn
//!   `(writer, sequence)` as the first (a client-library retry, which replay drops); in the
//!   deduplicated replay each attempt and each Cairn id appears once, and every record is one of
//!   the full replay's. Distinct attempts of one `(w, seq)` may each appear: the test retried
//!   after an indeterminate outcome, which is at-least-once.
//! - **O (order)**: per writer, in the full replay, no first copy of a higher sequence comes before
//!   the first copy of an acknowledged one.
//! - **P (position)**: an acknowledgement's `(chunk, offset)`, when given, is where a copy of that
//!   attempt is.
//! - **S (stability)**: [`HistoryReport::check_stable`]: every record an earlier replay returned is
//!   in a later one, at the same place, with the same bytes.
//! - **R (read-after-ack)**: [`HistoryReport::check_read_after_ack`]: a replay or tail started
//!   (during faults or after) once an append was acknowledged returns that record: every
//!   `(w, seq)` whose acknowledgement was recorded before a reader began is among the reader's
//!   records, unless the reader failed with an error (a reader may give up loudly, never end
//!   short silently). A reader that never ended is a violation too.
//! - **T (tail progress)**: [`HistoryReport::check_tail_progress`]: a tail given time to catch
//!   up after healing has returned every acknowledged record, whenever it began.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::{Entry, Op};
use crate::checker::{EXAMPLES_MAX, preview};
use crate::contract::{Record, WriterId};
use crate::payload::{Payload, PayloadError};

/// A raw scan of one replica's chunk files (e.g. `cairn inspect --records`), checked for U and I.
#[derive(Clone, Debug)]
pub struct ReplicaScan {
    /// The replica, for messages (e.g. `chunkserver1 chunk 3`).
    pub name: String,
    /// Its records, in file order.
    pub records: Vec<Record>,
}

/// Counts and violations of one check. `Display` prints the counts and up to
/// [`EXAMPLES_MAX`] examples per violated class.
#[derive(Debug, Default)]
pub struct HistoryReport {
    /// Distinct `(w, seq)` invoked.
    pub attempted: usize,
    /// Invokes (attempts) in all.
    pub attempts: usize,
    /// Distinct `(w, seq)` with an acknowledged attempt.
    pub acknowledged: usize,
    /// Attempts that failed definitely.
    pub definite_failures: usize,
    /// Attempts with an `info` outcome or none at all.
    pub indeterminate: usize,
    /// Distinct `(w, seq)` in the deduplicated replay (valid records).
    pub read: usize,
    /// Records in the full replay (all copies, valid or not).
    pub copies: usize,
    /// Full replay records beyond one per distinct `(w, seq)` (valid records).
    pub duplicates_before: usize,
    /// Deduplicated replay records beyond one per distinct `(w, seq)` (distinct attempts).
    pub duplicates_after: usize,
    /// Read `(w, seq)` never acknowledged, with an indeterminate attempt.
    pub recovered: usize,
    /// Lost acknowledged records below every read sequence of their writer.
    pub lost_prefix: usize,
    /// Lost acknowledged records between read ones: the worst kind.
    pub lost_middle: usize,
    /// Lost acknowledged records above every read sequence of their writer.
    pub lost_postfix: usize,
    /// Records in the replica scans.
    pub replica_records: usize,
    /// Readers (replays and tails run during and after the faults) checked for R.
    pub readers: usize,
    /// Readers that ended with an error (not held to R).
    pub readers_failed: usize,
    /// Acknowledgements checked by readers: per reader, those recorded before it began.
    pub acks_checked_by_readers: usize,
    /// Violations by class, each with a count and the first examples.
    pub violations: BTreeMap<&'static str, (usize, Vec<String>)>,
}

/// `(w, seq)`.
type Key = (u32, u64);
/// `(w, seq, attempt)`.
type AttemptKey = (u32, u64, u32);

/// How a reader (replay or tail) of invariant R ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReaderEnd {
    /// A replay that returned its last record and ended without error.
    Complete,
    /// A tail the harness stopped (tails never end by themselves).
    Stopped,
    /// It ended with an error: a loud failure, not held to R.
    Failed(String),
    /// It had not ended when the harness stopped waiting for it: a violation of R.
    Hung(String),
}

/// What one reader of a scenario returned, for invariant R.
#[derive(Clone, Debug)]
pub struct ReaderRun {
    /// The reader, for messages (e.g. `replay at fault 3`).
    pub name: String,
    /// When it began, in the history's clock ([`History::now_ms`](super::History::now_ms)),
    /// taken before its first call.
    pub started_ms: u64,
    /// How it ended.
    pub end: ReaderEnd,
    /// Its records, in the order returned.
    pub records: Vec<Record>,
}

/// What the history says about one attempt.
#[derive(Debug, Default)]
struct Attempt {
    invoked: bool,
    outcome: Option<Op>,
}

impl HistoryReport {
    fn violate(&mut self, class: &'static str, message: impl FnOnce() -> String) {
        let entry = self.violations.entry(class).or_default();
        entry.0 += 1;
        if entry.1.len() < EXAMPLES_MAX {
            entry.1.push(message());
        }
    }

    /// The violated classes, by name.
    pub fn classes(&self) -> Vec<&'static str> {
        self.violations.keys().copied().collect()
    }

    /// Invariant S: every record of `earlier` (a replay taken first) is in `later` at the same
    /// chunk and offset with the same payload. Adds violations to this report.
    pub fn check_stable(&mut self, earlier: &[Record], later: &[Record]) {
        let at: HashMap<(u64, u64), &Record> =
            later.iter().map(|r| ((r.chunk, r.offset), r)).collect();
        for r in earlier {
            match at.get(&(r.chunk, r.offset)) {
                Some(l) if l.payload == r.payload => {}
                found => self.violate("S (stability)", || {
                    format!(
                        "chunk {} offset {}: earlier replay had {}, later has {}",
                        r.chunk,
                        r.offset,
                        preview(&r.payload),
                        found.map_or("nothing".to_owned(), |l| preview(&l.payload))
                    )
                }),
            }
        }
    }

    /// Invariant R: every `(w, seq)` acknowledged before a reader began (its `ok` event's time is
    /// below the reader's start) is among that reader's valid records, unless the reader failed
    /// with an error; a hung reader is a violation. Adds counts and violations to this report.
    pub fn check_read_after_ack(&mut self, history: &[Entry], readers: &[ReaderRun]) {
        // The first acknowledgement time of each (w, seq).
        let mut acked_at: HashMap<Key, u64> = HashMap::new();
        for e in history {
            if let (Op::Ok { .. }, Some(t)) = (&e.op, e.t) {
                let at = acked_at.entry((e.w, e.seq)).or_insert(t);
                *at = (*at).min(t);
            }
        }
        let mut acked: Vec<(u64, Key)> = acked_at.iter().map(|(&k, &t)| (t, k)).collect();
        acked.sort_unstable();
        for reader in readers {
            self.readers += 1;
            let state = match &reader.end {
                ReaderEnd::Complete => "complete",
                ReaderEnd::Stopped => "stopped",
                ReaderEnd::Failed(e) => {
                    self.readers_failed += 1;
                    eprintln!(
                        "history checker: {} (started {:.3} s) failed, not held to R: {e}",
                        reader.name,
                        reader.started_ms as f64 / 1000.0
                    );
                    continue;
                }
                ReaderEnd::Hung(why) => {
                    self.violate("R (read-after-ack)", || {
                        format!(
                            "{} (started {:.3} s) never ended: {why}",
                            reader.name,
                            reader.started_ms as f64 / 1000.0
                        )
                    });
                    continue;
                }
            };
            let read: HashSet<Key> = reader
                .records
                .iter()
                .filter_map(|r| Payload::decode(&r.payload).ok())
                .map(|p| (p.w, p.seq))
                .collect();
            let before = acked.partition_point(|&(t, _)| t < reader.started_ms);
            self.acks_checked_by_readers += before;
            let missing: Vec<&(u64, Key)> = acked[..before]
                .iter()
                .filter(|(_, k)| !read.contains(k))
                .collect();
            for &&(t, (w, seq)) in &missing {
                self.violate("R (read-after-ack)", || {
                    format!(
                        "{} ({state}, started {:.3} s, {} records, {} of {before} earlier acks \
                         missing): writer {w} seq {seq} acknowledged at {:.3} s is not in it",
                        reader.name,
                        reader.started_ms as f64 / 1000.0,
                        reader.records.len(),
                        missing.len(),
                        t as f64 / 1000.0
                    )
                });
            }
        }
    }

    /// Invariant T (tail progress): a tail stopped after the writers stopped and the cluster
    /// healed, and given time to catch up, has returned every acknowledged `(w, seq)` of the
    /// history, whenever it began (a tail follows the log; it must not hang on a chunk). Tails
    /// that failed with an error are not held to it. One violation per short tail.
    pub fn check_tail_progress(&mut self, history: &[Entry], tails: &[ReaderRun]) {
        let mut acked: Vec<Key> = history
            .iter()
            .filter(|e| matches!(e.op, Op::Ok { .. }))
            .map(|e| (e.w, e.seq))
            .collect::<HashSet<Key>>()
            .into_iter()
            .collect();
        acked.sort_unstable();
        for tail in tails.iter().filter(|t| t.end == ReaderEnd::Stopped) {
            let read: HashSet<Key> = tail
                .records
                .iter()
                .filter_map(|r| Payload::decode(&r.payload).ok())
                .map(|p| (p.w, p.seq))
                .collect();
            let missing: Vec<&Key> = acked.iter().filter(|k| !read.contains(k)).collect();
            if !missing.is_empty() {
                self.violate("T (tail progress)", || {
                    format!(
                        "{} (started {:.3} s) returned {} records but lacks {} of the {} \
                         acknowledged ones after catching up, e.g. (w, seq) {:?}",
                        tail.name,
                        tail.started_ms as f64 / 1000.0,
                        tail.records.len(),
                        missing.len(),
                        acked.len(),
                        &missing[..missing.len().min(5)]
                    )
                });
            }
        }
    }

    /// Prints the report and panics, showing it, if any invariant is violated.
    pub fn assert_ok(&self) {
        eprintln!("{self}");
        assert!(
            self.violations.is_empty(),
            "history checker found violations:\n{self}"
        );
    }
}

impl fmt::Display for HistoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "history checker: attempted {} ({} attempts), acknowledged {}, definite failures {}, \
             indeterminate {}, read {}, copies {}, duplicates {} before / {} after dedupe, \
             recovered {}, lost {} prefix / {} middle / {} postfix, replica records {}, \
             readers {} ({} failed), acks checked by readers {}",
            self.attempted,
            self.attempts,
            self.acknowledged,
            self.definite_failures,
            self.indeterminate,
            self.read,
            self.copies,
            self.duplicates_before,
            self.duplicates_after,
            self.recovered,
            self.lost_prefix,
            self.lost_middle,
            self.lost_postfix,
            self.replica_records,
            self.readers,
            self.readers_failed,
            self.acks_checked_by_readers
        )?;
        for (class, (count, examples)) in &self.violations {
            write!(f, "\n  {class}: {count} violation(s)")?;
            for e in examples {
                write!(f, "\n    - {e}")?;
            }
        }
        Ok(())
    }
}

/// Checks `history` against the deduplicated replay, the replay with duplicates kept (both in log
/// order, taken after healing) and raw scans of the replicas (may be empty).
pub fn check(
    history: &[Entry],
    deduplicated: &[Record],
    with_duplicates: &[Record],
    replicas: &[ReplicaScan],
) -> HistoryReport {
    let mut report = HistoryReport::default();
    let attempts = attempts(history, &mut report);
    let acked_keys = keys_where(&attempts, |o| matches!(o, Some(Op::Ok { .. })));
    let indeterminate_keys = keys_where(&attempts, |o| matches!(o, None | Some(Op::Info { .. })));

    // The full replay: U, I, F, D (before), O; where every attempt's copies are.
    report.copies = with_duplicates.len();
    let mut first_id: HashMap<AttemptKey, (WriterId, u64)> = HashMap::new();
    let mut positions: HashMap<AttemptKey, Vec<(u64, u64)>> = HashMap::new();
    let mut full_keys: HashSet<Key> = HashSet::new();
    let mut valid_copies = 0;
    let mut highest_first: HashMap<u32, u64> = HashMap::new();
    let mut definite_read: HashSet<AttemptKey> = HashSet::new();
    for rec in with_duplicates {
        let where_ = format!("full replay chunk {} offset {}", rec.chunk, rec.offset);
        let Some(p) = valid(rec, &where_, &attempts, &mut report) else {
            continue;
        };
        let key = (p.w, p.seq);
        let akey = (p.w, p.seq, p.attempt);
        valid_copies += 1;
        let cairn_id = (rec.writer.clone(), rec.sequence);
        match first_id.get(&akey) {
            None => {
                first_id.insert(akey, cairn_id);
            }
            Some(first) if *first != cairn_id => report.violate("D (duplicates)", || {
                format!(
                    "writer {} seq {} attempt {} stored under Cairn ids {}/{} and {}/{} \
                     ({where_})",
                    p.w, p.seq, p.attempt, first.0, first.1, cairn_id.0, cairn_id.1
                )
            }),
            Some(_) => {}
        }
        positions
            .entry(akey)
            .or_default()
            .push((rec.chunk, rec.offset));
        if matches!(
            attempts[&akey].outcome,
            Some(Op::Fail { definite: true, .. })
        ) && definite_read.insert(akey)
        {
            report.violate("F (definite failure)", || {
                format!(
                    "writer {} seq {} attempt {} failed definitely but is read ({where_})",
                    p.w, p.seq, p.attempt
                )
            });
        }
        if full_keys.insert(key) {
            let highest = highest_first.entry(p.w).or_insert(0);
            if *highest > p.seq && acked_keys.contains(&key) {
                let higher = *highest;
                report.violate("O (order)", || {
                    format!(
                        "writer {}: acknowledged seq {} first appears after seq {higher} \
                         ({where_})",
                        p.w, p.seq
                    )
                });
            }
            *highest = (*highest).max(p.seq);
        }
    }
    report.duplicates_before = valid_copies - full_keys.len();

    // The deduplicated replay: D (after); what is read.
    let in_full: HashSet<(u64, u64, &[u8])> = with_duplicates
        .iter()
        .map(|r| (r.chunk, r.offset, r.payload.as_slice()))
        .collect();
    let mut read_attempts: HashSet<AttemptKey> = HashSet::new();
    let mut read_ids: HashSet<(WriterId, u64)> = HashSet::new();
    let mut read_keys: HashSet<Key> = HashSet::new();
    let mut deduplicated_valid = 0;
    for rec in deduplicated {
        let at = format!("chunk {} offset {}", rec.chunk, rec.offset);
        if !in_full.contains(&(rec.chunk, rec.offset, rec.payload.as_slice())) {
            report.violate("D (duplicates)", || {
                format!("deduplicated replay {at}: not in the full replay")
            });
            continue;
        }
        // Invalid records were reported with the full replay.
        let Ok(p) = Payload::decode(&rec.payload) else {
            continue;
        };
        let akey = (p.w, p.seq, p.attempt);
        if !attempts.get(&akey).is_some_and(|a| a.invoked) {
            continue;
        }
        deduplicated_valid += 1;
        let fresh_id = read_ids.insert((rec.writer.clone(), rec.sequence));
        if !read_attempts.insert(akey) || !fresh_id {
            report.violate("D (duplicates)", || {
                format!(
                    "deduplicated replay {at}: writer {} seq {} attempt {} (Cairn id {}/{}) \
                     appears twice",
                    p.w, p.seq, p.attempt, rec.writer, rec.sequence
                )
            });
        }
        read_keys.insert((p.w, p.seq));
    }
    report.read = read_keys.len();
    report.duplicates_after = deduplicated_valid - read_keys.len();

    lost(&acked_keys, &read_keys, &mut report);
    positions_of_acks(&attempts, &positions, &mut report);
    report.recovered = read_keys
        .iter()
        .filter(|key| !acked_keys.contains(key) && indeterminate_keys.contains(key))
        .count();

    for scan in replicas {
        for rec in &scan.records {
            report.replica_records += 1;
            let where_ = format!(
                "replica {} chunk {} offset {}",
                scan.name, rec.chunk, rec.offset
            );
            valid(rec, &where_, &attempts, &mut report);
        }
    }
    report
}

/// The attempts of the history, with H violations and the history's counters.
fn attempts(history: &[Entry], report: &mut HistoryReport) -> HashMap<AttemptKey, Attempt> {
    let mut attempts: HashMap<AttemptKey, Attempt> = HashMap::new();
    let mut latest: HashMap<Key, u32> = HashMap::new();
    let mut keys: HashSet<Key> = HashSet::new();
    for (i, e) in history.iter().enumerate() {
        let line = i + 1;
        if e.op == Op::Invoke {
            let attempt = e.attempt.unwrap_or(0);
            let a = attempts.entry((e.w, e.seq, attempt)).or_default();
            if a.invoked {
                report.violate("H (history)", || {
                    format!(
                        "event {line}: writer {} seq {} attempt {attempt} invoked twice",
                        e.w, e.seq
                    )
                });
            }
            a.invoked = true;
            latest.insert((e.w, e.seq), attempt);
            keys.insert((e.w, e.seq));
            report.attempts += 1;
            continue;
        }
        let attempt = e.attempt.or_else(|| latest.get(&(e.w, e.seq)).copied());
        let Some(attempt) = attempt.filter(|&a| attempts.contains_key(&(e.w, e.seq, a))) else {
            report.violate("H (history)", || {
                format!(
                    "event {line}: outcome of writer {} seq {} without an invoke",
                    e.w, e.seq
                )
            });
            continue;
        };
        let a = attempts.get_mut(&(e.w, e.seq, attempt)).expect("checked");
        if a.outcome.is_some() {
            report.violate("H (history)", || {
                format!(
                    "event {line}: second outcome of writer {} seq {} attempt {attempt}",
                    e.w, e.seq
                )
            });
            continue;
        }
        a.outcome = Some(e.op.clone());
    }
    report.attempted = keys.len();
    report.acknowledged = keys_where(&attempts, |o| matches!(o, Some(Op::Ok { .. }))).len();
    for a in attempts.values() {
        match &a.outcome {
            Some(Op::Fail { definite: true, .. }) => report.definite_failures += 1,
            None | Some(Op::Info { .. }) => report.indeterminate += 1,
            _ => {}
        }
    }
    attempts
}

/// The `(w, seq)` with an attempt whose outcome satisfies `f`.
fn keys_where(
    attempts: &HashMap<AttemptKey, Attempt>,
    f: impl Fn(&Option<Op>) -> bool,
) -> HashSet<Key> {
    attempts
        .iter()
        .filter(|(_, a)| f(&a.outcome))
        .map(|(&(w, seq, _), _)| (w, seq))
        .collect()
}

/// Decodes a read record and checks U and I; `Some` for a valid record.
fn valid(
    rec: &Record,
    where_: &str,
    attempts: &HashMap<AttemptKey, Attempt>,
    report: &mut HistoryReport,
) -> Option<Payload> {
    match Payload::decode(&rec.payload) {
        Ok(p)
            if attempts
                .get(&(p.w, p.seq, p.attempt))
                .is_some_and(|a| a.invoked) =>
        {
            Some(p)
        }
        Ok(p) => {
            report.violate("U (unexpected)", || {
                format!(
                    "{where_}: writer {} seq {} attempt {} was never invoked",
                    p.w, p.seq, p.attempt
                )
            });
            None
        }
        Err(e @ PayloadError::HashMismatch { .. }) => {
            report.violate("I (integrity)", || format!("{where_}: {e}"));
            None
        }
        Err(e) => {
            report.violate("U (unexpected)", || {
                format!("{where_}: {e}: {}", preview(&rec.payload))
            });
            None
        }
    }
}

/// L: acknowledged `(w, seq)` missing from the deduplicated replay, classed per writer.
fn lost(acked: &HashSet<Key>, read: &HashSet<Key>, report: &mut HistoryReport) {
    let mut read_range: HashMap<u32, (u64, u64)> = HashMap::new();
    for &(w, seq) in read {
        let r = read_range.entry(w).or_insert((seq, seq));
        *r = (r.0.min(seq), r.1.max(seq));
    }
    let mut acked: Vec<Key> = acked.iter().copied().collect();
    acked.sort_unstable();
    for (w, seq) in acked {
        if read.contains(&(w, seq)) {
            continue;
        }
        let place = match read_range.get(&w) {
            Some(&(lo, _)) if seq < lo => {
                report.lost_prefix += 1;
                "prefix"
            }
            Some(&(_, hi)) if seq < hi => {
                report.lost_middle += 1;
                "middle"
            }
            _ => {
                report.lost_postfix += 1;
                "postfix"
            }
        };
        report.violate("L (lost)", || {
            format!("writer {w} seq {seq} was acknowledged but is not read ({place})")
        });
    }
}

/// P: each acknowledgement that says where is where a copy of its attempt is.
fn positions_of_acks(
    attempts: &HashMap<AttemptKey, Attempt>,
    positions: &HashMap<AttemptKey, Vec<(u64, u64)>>,
    report: &mut HistoryReport,
) {
    let mut acks: Vec<(AttemptKey, u64, u64)> = attempts
        .iter()
        .filter_map(|(&k, a)| match a.outcome {
            Some(Op::Ok {
                chunk: Some(c),
                offset: Some(o),
            }) => Some((k, c, o)),
            _ => None,
        })
        .collect();
    acks.sort_unstable();
    for ((w, seq, attempt), chunk, offset) in acks {
        if let Some(found) = positions.get(&(w, seq, attempt))
            && !found.contains(&(chunk, offset))
        {
            report.violate("P (position)", || {
                format!(
                    "writer {w} seq {seq} attempt {attempt} acknowledged at chunk {chunk} offset \
                     {offset}, but its copies are at {found:?}"
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writer 1: seq 1–3 acknowledged at chunk 0, offset 32 × seq. Writer 2: seq 1 indeterminate
    /// (`info`), seq 2 refused definitely.
    fn history() -> Vec<Entry> {
        let e = |w, seq, op| Entry {
            w,
            seq,
            attempt: Some(0),
            t: None,
            op,
        };
        let mut h = Vec::new();
        for seq in 1..=3 {
            h.push(e(1, seq, Op::Invoke));
            h.push(e(
                1,
                seq,
                Op::Ok {
                    chunk: Some(0),
                    offset: Some(32 * seq),
                },
            ));
        }
        h.push(e(2, 1, Op::Invoke));
        h.push(e(
            2,
            1,
            Op::Info {
                reason: "timeout".into(),
            },
        ));
        h.push(e(2, 2, Op::Invoke));
        h.push(e(
            2,
            2,
            Op::Fail {
                reason: "too large".into(),
                definite: true,
            },
        ));
        h
    }

    /// A read record of attempt 0 of `(w, seq)`, Cairn id `c{w}/{seq}`, at chunk 0.
    fn rec(w: u32, seq: u64, offset: u64) -> Record {
        Record {
            chunk: 0,
            offset,
            writer: WriterId(format!("c{w}")),
            sequence: seq,
            payload: Payload::new(w, seq, 0, format!("body {w}/{seq}").into_bytes()).encode(),
        }
    }

    /// The clean reads: writer 1's records at their acked offsets, writer 2's indeterminate
    /// record; the full replay adds a library-retry copy of writer 1 seq 2.
    fn clean() -> (Vec<Record>, Vec<Record>) {
        let dedup = vec![rec(1, 1, 32), rec(1, 2, 64), rec(1, 3, 96), rec(2, 1, 128)];
        let mut full = dedup.clone();
        full.insert(3, rec(1, 2, 200));
        (dedup, full)
    }

    /// Panics unless `report` violates exactly `class`.
    fn only(report: &HistoryReport, class: &str) {
        assert_eq!(report.classes(), vec![class], "{report}");
    }

    #[test]
    fn a_clean_history_passes_with_its_counts() {
        let (dedup, full) = clean();
        let scan = ReplicaScan {
            name: "cs0".into(),
            records: full.clone(),
        };
        let report = check(&history(), &dedup, &full, &[scan]);
        assert!(report.violations.is_empty(), "{report}");
        let counts = (
            report.attempted,
            report.acknowledged,
            report.definite_failures,
            report.indeterminate,
            report.read,
            report.copies,
            report.duplicates_before,
            report.duplicates_after,
            report.recovered,
            report.replica_records,
        );
        assert_eq!(counts, (5, 3, 1, 1, 4, 5, 1, 0, 1, 5), "{report}");
    }

    #[test]
    fn lost_records_are_flagged_and_classed() {
        for (missing, counts) in [(1, (1, 0, 0)), (2, (0, 1, 0)), (3, (0, 0, 1))] {
            let (mut dedup, mut full) = clean();
            dedup.retain(|r| !(r.writer.0 == "c1" && r.sequence == missing));
            full.retain(|r| !(r.writer.0 == "c1" && r.sequence == missing));
            let report = check(&history(), &dedup, &full, &[]);
            only(&report, "L (lost)");
            let got = (report.lost_prefix, report.lost_middle, report.lost_postfix);
            assert_eq!(got, counts, "seq {missing} missing: {report}");
        }
    }

    #[test]
    fn phantoms_and_garbage_are_unexpected() {
        let (mut dedup, mut full) = clean();
        let phantom = rec(1, 9, 300);
        let mut garbage = rec(1, 10, 400);
        garbage.payload = b"padding parsed as a record".to_vec();
        dedup.extend([phantom.clone(), garbage.clone()]);
        full.extend([phantom, garbage]);
        let report = check(&history(), &dedup, &full, &[]);
        only(&report, "U (unexpected)");
        assert_eq!(report.violations["U (unexpected)"].0, 2, "{report}");

        let (dedup, full) = clean();
        let scan = ReplicaScan {
            name: "cs1".into(),
            records: vec![rec(3, 1, 32)],
        };
        only(&check(&history(), &dedup, &full, &[scan]), "U (unexpected)");
    }

    #[test]
    fn a_definitely_failed_record_that_is_read_is_flagged() {
        let (mut dedup, mut full) = clean();
        dedup.push(rec(2, 2, 160));
        full.push(rec(2, 2, 160));
        only(
            &check(&history(), &dedup, &full, &[]),
            "F (definite failure)",
        );
    }

    #[test]
    fn unexplained_copies_and_copies_left_after_dedupe_are_duplicates() {
        // One attempt stored under two Cairn ids.
        let (dedup, mut full) = clean();
        let mut other = rec(1, 2, 300);
        other.writer = WriterId("c9".into());
        full.push(other);
        only(&check(&history(), &dedup, &full, &[]), "D (duplicates)");

        // The library-retry copy survives dedupe.
        let (mut dedup, full) = clean();
        dedup.push(rec(1, 2, 200));
        let report = check(&history(), &dedup, &full, &[]);
        only(&report, "D (duplicates)");
    }

    #[test]
    fn an_acknowledged_record_after_a_higher_one_is_out_of_order() {
        let (_, full) = clean();
        let reorder = |v: &[Record]| {
            let mut v = v.to_vec();
            let i = v
                .iter()
                .position(|r| r.writer.0 == "c1" && r.sequence == 1)
                .unwrap();
            let r = v.remove(i);
            v.insert(2, r);
            v
        };
        let dedup = reorder(&clean().0);
        only(
            &check(&history(), &dedup, &reorder(&full), &[]),
            "O (order)",
        );
    }

    #[test]
    fn a_corrupt_body_fails_integrity() {
        let (dedup, mut full) = clean();
        let mut corrupt = rec(1, 2, 300);
        let last = corrupt.payload.len() - 40;
        corrupt.payload[last] ^= 0x20;
        full.push(corrupt);
        only(&check(&history(), &dedup, &full, &[]), "I (integrity)");
    }

    #[test]
    fn an_ack_at_a_place_without_its_record_is_a_position_violation() {
        let (mut dedup, mut full) = clean();
        for r in dedup.iter_mut().chain(full.iter_mut()) {
            if r.offset == 96 {
                r.offset = 100;
            }
        }
        only(&check(&history(), &dedup, &full, &[]), "P (position)");
    }

    #[test]
    fn a_record_an_earlier_replay_returned_must_stay() {
        let (dedup, full) = clean();
        let mut report = check(&history(), &dedup, &full, &[]);
        report.check_stable(&full[..3], &full);
        assert!(report.violations.is_empty(), "{report}");
        let mut later = full.clone();
        later.remove(1);
        report.check_stable(&full, &later);
        only(&report, "S (stability)");
    }

    #[test]
    fn a_reader_must_hold_every_record_acknowledged_before_it_began() {
        let (dedup, full) = clean();
        let mut h = history();
        // Writer 1's acks at 10, 20, 30 ms.
        let mut t = 0;
        for e in h.iter_mut().filter(|e| e.w == 1) {
            if matches!(e.op, Op::Ok { .. }) {
                t += 10;
                e.t = Some(t);
            }
        }
        let reader = |name: &str, started_ms, end, records: &[Record]| ReaderRun {
            name: name.into(),
            started_ms,
            end,
            records: records.to_vec(),
        };
        let readers = [
            // Began after all three acks and has them.
            reader("whole", 31, ReaderEnd::Complete, &dedup),
            // Began after the first two acks; has exactly those.
            reader("early tail", 25, ReaderEnd::Stopped, &dedup[..2]),
            // Failed loudly: not held to R.
            reader("failed", 40, ReaderEnd::Failed("gave up".into()), &[]),
            // An ack at exactly its start does not count as before it.
            reader("same ms", 10, ReaderEnd::Complete, &[]),
        ];
        let mut report = check(&h, &dedup, &full, &[]);
        report.check_read_after_ack(&h, &readers);
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(
            (
                report.readers,
                report.readers_failed,
                report.acks_checked_by_readers
            ),
            (4, 1, 5),
            "{report}"
        );

        // Ended without writer 1 seq 2, acknowledged before it began; and a hung reader.
        let short = [dedup[0].clone(), dedup[2].clone()];
        let mut report = check(&h, &dedup, &full, &[]);
        report.check_read_after_ack(
            &h,
            &[
                reader("short replay", 35, ReaderEnd::Complete, &short),
                reader("hung", 35, ReaderEnd::Hung("no end".into()), &[]),
            ],
        );
        only(&report, "R (read-after-ack)");
        assert_eq!(report.violations["R (read-after-ack)"].0, 2, "{report}");
        let text = report.to_string();
        assert!(text.contains("writer 1 seq 2"), "{text}");
    }

    #[test]
    fn a_stopped_tail_must_hold_every_acknowledged_record() {
        let (dedup, full) = clean();
        let h = history();
        let tail = |records: &[Record], end| ReaderRun {
            name: "tail".into(),
            started_ms: 0,
            end,
            records: records.to_vec(),
        };
        let mut report = check(&h, &dedup, &full, &[]);
        report.check_tail_progress(
            &h,
            &[
                tail(&dedup, ReaderEnd::Stopped),
                tail(&[], ReaderEnd::Failed("log deleted".into())),
            ],
        );
        assert!(report.violations.is_empty(), "{report}");
        let mut report = check(&h, &dedup, &full, &[]);
        report.check_tail_progress(&h, &[tail(&dedup[..1], ReaderEnd::Stopped)]);
        only(&report, "T (tail progress)");
        assert!(report.to_string().contains("lacks 2 of the 3"), "{report}");
    }

    #[test]
    fn outcomes_without_invokes_and_second_outcomes_break_the_history() {
        let (dedup, full) = clean();
        let mut h = history();
        h.push(Entry {
            w: 2,
            seq: 1,
            attempt: None,
            t: None,
            op: Op::Info {
                reason: "again".into(),
            },
        });
        only(&check(&h, &dedup, &full, &[]), "H (history)");
        let mut h = history();
        h.push(Entry {
            w: 7,
            seq: 1,
            attempt: None,
            t: None,
            op: Op::Info {
                reason: "no invoke".into(),
            },
        });
        only(&check(&h, &dedup, &full, &[]), "H (history)");
    }

    #[test]
    fn a_retried_attempt_after_an_indeterminate_one_is_at_least_once() {
        let (mut dedup, mut full) = clean();
        let mut h = history();
        let retry = |attempt| Entry {
            w: 2,
            seq: 1,
            attempt: Some(attempt),
            t: None,
            op: Op::Invoke,
        };
        h.push(retry(1));
        h.push(Entry {
            op: Op::Ok {
                chunk: Some(0),
                offset: Some(500),
            },
            ..retry(1)
        });
        let second = Record {
            chunk: 0,
            offset: 500,
            writer: WriterId("c2b".into()),
            sequence: 1,
            payload: Payload::new(2, 1, 1, b"retry".to_vec()).encode(),
        };
        dedup.push(second.clone());
        full.push(second);
        let report = check(&h, &dedup, &full, &[]);
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(
            (report.duplicates_after, report.recovered),
            (1, 0),
            "{report}"
        );
    }
}
