//! The checker: what was attempted and acknowledged (the `append --json` runs and their input
//! lines) against what replay returned.
//!
//! Invariants, each a named class of violations in the [`Report`]:
//! - **ack**: the acknowledgements themselves are sane: each names an input line, once; a writer
//!   id belongs to one run; within a run, sequence order is input order.
//! - **L (lost)**: every acknowledged `(writer, sequence)` is in the deduplicated replay.
//! - **U (unexpected)**: every replayed payload was attempted (payloads are unique by
//!   construction, so a payload names its run and line); a writer's records carry its own run's
//!   payloads.
//! - **I (integrity)**: a replayed acknowledged record has byte for byte the payload of the line
//!   that was acknowledged under its `(writer, sequence)`.
//! - **D (duplicates)**: all copies of a `(writer, sequence)` carry the same payload; after
//!   deduplication each appears exactly once, and the deduplicated replay is exactly the first
//!   copies of the full one, in order.
//! - **O (order)**: per writer, first copies appear in increasing sequence (and input-line) order.
//! - **P (position)**: an acknowledgement's `(chunk, offset)`, when given, is where a copy of that
//!   record is.
//! - **F (definite failure)**: a line of a run marked as definitely failed that was not
//!   acknowledged never appears.
//! - **skipped**: no `skipped` event (these tests corrupt nothing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::contract::{self, Ack, Event, Replay, WriterId};
use crate::proc::Output;

/// At most this many examples are shown per violation class.
pub(crate) const EXAMPLES_MAX: usize = 10;

/// One `cairn append --json` run: its input lines and what it acknowledged.
#[derive(Clone, Debug)]
pub struct AppendRun {
    /// A name for messages (e.g. `writer-3`).
    pub name: String,
    /// The input lines (records), in order; line `n` of the contract is `lines[n - 1]`.
    pub lines: Vec<Vec<u8>>,
    /// The acknowledgements it printed.
    pub acks: Vec<Ack>,
    /// The command's output.
    pub output: Output,
    /// Set when the run was refused before anything was written (e.g. a record over the limit):
    /// its unacknowledged lines must then never appear (invariant F).
    pub definite_failure: bool,
}

impl AppendRun {
    /// Builds a run from a finished `append --json` command fed with `lines`.
    pub fn from_output(name: &str, lines: Vec<Vec<u8>>, output: Output) -> Self {
        let acks = contract::parse_acks(&output);
        Self {
            name: name.to_owned(),
            lines,
            acks,
            output,
            definite_failure: false,
        }
    }

    /// Builds a run from acknowledgements gathered some other way (an in-process appender).
    pub fn from_acks(name: &str, lines: Vec<Vec<u8>>, acks: Vec<Ack>, output: Output) -> Self {
        Self {
            name: name.to_owned(),
            lines,
            acks,
            output,
            definite_failure: false,
        }
    }

    /// Panics unless the command exited 0 and acknowledged every input line exactly once.
    pub fn assert_all_acked(&self) {
        assert!(
            self.output.success(),
            "append run {} failed after {} acks: {:?}",
            self.name,
            self.acks.len(),
            self.output
        );
        let acked: HashSet<u64> = self.acks.iter().map(|a| a.line).collect();
        let missing: Vec<u64> = (1..=self.lines.len() as u64)
            .filter(|l| !acked.contains(l))
            .take(EXAMPLES_MAX)
            .collect();
        assert!(
            missing.is_empty() && self.acks.len() == self.lines.len(),
            "append run {} exited 0 but printed {} acks for {} lines (unacked lines, first few: \
             {missing:?}): {:?}",
            self.name,
            self.acks.len(),
            self.lines.len(),
            self.output
        );
    }

    /// The writer id of this run's acknowledgements (`None` if it acknowledged nothing).
    ///
    /// # Panics
    /// If it used more than one writer id.
    pub fn writer(&self) -> Option<WriterId> {
        let writers: HashSet<&WriterId> = self.acks.iter().map(|a| &a.writer).collect();
        assert!(
            writers.len() <= 1,
            "run {} used writers {writers:?}",
            self.name
        );
        writers.into_iter().next().cloned()
    }
}

/// Where an attempted payload came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LineId {
    run: usize,
    /// From 1.
    line: usize,
}

/// The counts and violations of one check.
#[derive(Debug, Default)]
pub struct Report {
    /// Input lines of all runs.
    pub attempted: usize,
    /// Distinct acknowledged `(writer, sequence)`.
    pub acknowledged: usize,
    /// Records in the deduplicated replay.
    pub replayed: usize,
    /// Records in the replay with duplicates kept.
    pub copies: usize,
    /// Extra copies (`copies` minus distinct records).
    pub duplicates: usize,
    /// Replayed records that were never acknowledged (the ack was lost, or the run failed).
    pub recovered: usize,
    /// Attempted lines neither acknowledged nor replayed.
    pub unacked_absent: usize,
    /// `skipped` events.
    pub skipped: usize,
    /// Distinct writers in the replay.
    pub writers: usize,
    /// Violations by class (see the module docs), each with examples.
    pub violations: BTreeMap<&'static str, (usize, Vec<String>)>,
}

impl Report {
    fn violate(&mut self, class: &'static str, message: impl FnOnce() -> String) {
        let entry = self.violations.entry(class).or_default();
        entry.0 += 1;
        if entry.1.len() < EXAMPLES_MAX {
            entry.1.push(message());
        }
    }

    /// Prints the counts and panics if any invariant is violated, showing examples.
    pub fn assert_ok(&self) {
        eprintln!("{self}");
        assert!(
            self.violations.is_empty(),
            "checker found violations:\n{self}"
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checker: attempted {}, acknowledged {}, replayed {} (deduplicated), copies {}, \
             duplicates {}, recovered (replayed, not acked) {}, not acked and absent {}, \
             skipped {}, writers {}",
            self.attempted,
            self.acknowledged,
            self.replayed,
            self.copies,
            self.duplicates,
            self.recovered,
            self.unacked_absent,
            self.skipped,
            self.writers
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

type Key = (WriterId, u64);

/// Checks `deduplicated` (`replay --json`) and `with_duplicates` (`replay --json
/// --keep-duplicates`), both taken after every run finished, against the runs.
///
/// # Panics
/// If two input lines carry the same payload (a test bug: payloads must be unique).
pub fn check(runs: &[AppendRun], deduplicated: &Replay, with_duplicates: &Replay) -> Report {
    let mut report = Report::default();

    // What was attempted: each payload names its run and line.
    let mut attempted: HashMap<&[u8], LineId> = HashMap::new();
    for (run, r) in runs.iter().enumerate() {
        for (i, payload) in r.lines.iter().enumerate() {
            let id = LineId { run, line: i + 1 };
            if let Some(old) = attempted.insert(payload, id) {
                panic!("test bug: lines {old:?} and {id:?} carry the same payload");
            }
        }
        report.attempted += r.lines.len();
    }
    let name = |id: LineId| format!("{} line {}", runs[id.run].name, id.line);

    // What was acknowledged.
    let mut acked: HashMap<Key, (LineId, &Ack)> = HashMap::new();
    let mut writer_run: HashMap<&WriterId, usize> = HashMap::new();
    for (run, r) in runs.iter().enumerate() {
        let mut lines_seen = HashSet::new();
        let mut by_line: Vec<&Ack> = Vec::new();
        for ack in &r.acks {
            if ack.line == 0 || ack.line as usize > r.lines.len() {
                report.violate("ack", || {
                    format!(
                        "{}: ack for line {} of {} lines",
                        r.name,
                        ack.line,
                        r.lines.len()
                    )
                });
                continue;
            }
            if !lines_seen.insert(ack.line) {
                report.violate("ack", || {
                    format!("{}: line {} acked twice", r.name, ack.line)
                });
                continue;
            }
            if let Some(&other) = writer_run.get(&ack.writer)
                && other != run
            {
                report.violate("ack", || {
                    format!(
                        "writer {} used by {} and {}",
                        ack.writer, runs[other].name, r.name
                    )
                });
            }
            writer_run.insert(&ack.writer, run);
            let id = LineId {
                run,
                line: ack.line as usize,
            };
            let key = (ack.writer.clone(), ack.sequence);
            if let Some((old, _)) = acked.insert(key, (id, ack)) {
                report.violate("ack", || {
                    format!(
                        "writer {} sequence {} acked for {} and {}",
                        ack.writer,
                        ack.sequence,
                        name(old),
                        name(id)
                    )
                });
            }
            by_line.push(ack);
        }
        by_line.sort_by_key(|a| a.line);
        for pair in by_line.windows(2) {
            if pair[0].writer == pair[1].writer && pair[0].sequence >= pair[1].sequence {
                report.violate("ack", || {
                    format!(
                        "{}: line {} has sequence {} but later line {} has sequence {}",
                        r.name, pair[0].line, pair[0].sequence, pair[1].line, pair[1].sequence
                    )
                });
            }
        }
    }
    report.acknowledged = acked.len();

    // The replay with duplicates: every copy, first copies in order.
    let mut copies: HashMap<Key, (LineId, Vec<(u64, u64)>)> = HashMap::new();
    let mut first_copies: Vec<Key> = Vec::new();
    let mut last_first: HashMap<WriterId, (u64, usize)> = HashMap::new();
    for event in &with_duplicates.events {
        let rec = match event {
            Event::Record(rec) => rec,
            Event::Skipped { raw } => {
                report.skipped += 1;
                report.violate("skipped", || format!("keep-duplicates replay: {raw}"));
                continue;
            }
        };
        report.copies += 1;
        let at = format!("chunk {} offset {}", rec.chunk, rec.offset);
        let Some(&id) = attempted.get(rec.payload.as_slice()) else {
            report.violate("U (unexpected)", || {
                format!(
                    "writer {} sequence {} at {at}: payload of {} bytes was never attempted: {}",
                    rec.writer,
                    rec.sequence,
                    rec.payload.len(),
                    preview(&rec.payload)
                )
            });
            continue;
        };
        let key = (rec.writer.clone(), rec.sequence);
        if let Some((acked_id, _)) = acked.get(&key) {
            if *acked_id != id {
                report.violate("I (integrity)", || {
                    format!(
                        "writer {} sequence {} was acked for {} but replay at {at} has the payload \
                         of {}",
                        rec.writer,
                        rec.sequence,
                        name(*acked_id),
                        name(id)
                    )
                });
            }
        } else if let Some(&run) = writer_run.get(&rec.writer)
            && run != id.run
        {
            report.violate("U (unexpected)", || {
                format!(
                    "writer {} belongs to {} but its record at {at} carries {}",
                    rec.writer,
                    runs[run].name,
                    name(id)
                )
            });
        }
        match copies.get_mut(&key) {
            Some((first_id, positions)) => {
                if *first_id != id {
                    report.violate("D (duplicates)", || {
                        format!(
                            "copies of writer {} sequence {} carry {} and {} (at {at})",
                            rec.writer,
                            rec.sequence,
                            name(*first_id),
                            name(id)
                        )
                    });
                }
                positions.push((rec.chunk, rec.offset));
            }
            None => {
                if let Some(&(seq, line)) = last_first.get(&rec.writer)
                    && (seq >= rec.sequence || line >= id.line)
                {
                    report.violate("O (order)", || {
                        format!(
                            "writer {}: first copy of sequence {} ({}) at {at} follows sequence \
                             {seq} (line {line})",
                            rec.writer,
                            rec.sequence,
                            name(id)
                        )
                    });
                }
                last_first.insert(rec.writer.clone(), (rec.sequence, id.line));
                copies.insert(key.clone(), (id, vec![(rec.chunk, rec.offset)]));
                first_copies.push(key);
            }
        }
    }
    report.duplicates = report.copies - copies.len();
    report.writers = last_first.len();

    // The deduplicated replay: exactly the first copies.
    let mut deduped_keys: Vec<Key> = Vec::new();
    let mut seen: HashSet<Key> = HashSet::new();
    for event in &deduplicated.events {
        let rec = match event {
            Event::Record(rec) => rec,
            Event::Skipped { raw } => {
                report.violate("skipped", || format!("deduplicated replay: {raw}"));
                continue;
            }
        };
        report.replayed += 1;
        let key = (rec.writer.clone(), rec.sequence);
        match (attempted.get(rec.payload.as_slice()), copies.get(&key)) {
            (None, _) => report.violate("U (unexpected)", || {
                format!(
                    "deduplicated replay: writer {} sequence {}: payload never attempted: {}",
                    rec.writer,
                    rec.sequence,
                    preview(&rec.payload)
                )
            }),
            (Some(id), Some((first_id, _))) if id != first_id => {
                report.violate("I (integrity)", || {
                    format!(
                        "writer {} sequence {}: deduplicated replay has {} but the full replay {}",
                        rec.writer,
                        rec.sequence,
                        name(*id),
                        name(*first_id)
                    )
                });
            }
            _ => {}
        }
        if !seen.insert(key.clone()) {
            report.violate("D (duplicates)", || {
                format!(
                    "writer {} sequence {} appears twice after deduplication",
                    rec.writer, rec.sequence
                )
            });
        }
        deduped_keys.push(key);
    }
    if deduped_keys != first_copies {
        let i = deduped_keys
            .iter()
            .zip(&first_copies)
            .position(|(a, b)| a != b)
            .unwrap_or(deduped_keys.len().min(first_copies.len()));
        report.violate("D (duplicates)", || {
            format!(
                "the deduplicated replay ({} records) is not the first copies of the full replay \
                 ({} distinct); first difference at position {i}: {:?} vs {:?}",
                deduped_keys.len(),
                first_copies.len(),
                deduped_keys.get(i),
                first_copies.get(i)
            )
        });
    }

    // Lost and misplaced acknowledged records.
    let mut acked_sorted: Vec<(&Key, &(LineId, &Ack))> = acked.iter().collect();
    acked_sorted.sort_by_key(|(_, (id, _))| (id.run, id.line));
    for (key, (id, ack)) in acked_sorted {
        if !seen.contains(key) {
            report.violate("L (lost)", || {
                format!(
                    "{} (writer {} sequence {}, acked at chunk {:?} offset {:?}) is not in the \
                     replay",
                    name(*id),
                    key.0,
                    key.1,
                    ack.chunk,
                    ack.offset
                )
            });
        }
        if let (Some(chunk), Some(offset)) = (ack.chunk, ack.offset)
            && let Some((_, positions)) = copies.get(key)
            && !positions.contains(&(chunk, offset))
        {
            report.violate("P (position)", || {
                format!(
                    "{} acked at chunk {chunk} offset {offset}, but its copies are at \
                     {positions:?}",
                    name(*id)
                )
            });
        }
    }

    // Recovered, absent, and definitely failed lines.
    let replayed_ids: HashSet<LineId> = copies.values().map(|(id, _)| *id).collect();
    let acked_ids: HashSet<LineId> = acked.values().map(|(id, _)| *id).collect();
    report.recovered = replayed_ids.difference(&acked_ids).count();
    report.unacked_absent = report.attempted - acked_ids.union(&replayed_ids).count();
    for (run, r) in runs.iter().enumerate() {
        if !r.definite_failure {
            continue;
        }
        for line in 1..=r.lines.len() {
            let id = LineId { run, line };
            if replayed_ids.contains(&id) && !acked_ids.contains(&id) {
                report.violate("F (definite failure)", || {
                    format!("{} was refused but is in the replay", name(id))
                });
            }
        }
    }
    report
}

/// The start of a payload, for messages.
pub(crate) fn preview(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
    if payload.len() > 80 {
        format!("{text}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::time::Duration;

    use super::*;
    use crate::contract::Record;

    fn output(stdout: Vec<u8>) -> Output {
        Output {
            label: "test".into(),
            status: ExitStatus::from_raw(0),
            timed_out: false,
            elapsed: Duration::ZERO,
            stdout,
            stderr: Vec::new(),
        }
    }

    /// A run of `n` lines `NAME-i`, acked as writer `w` with sequence = line at chunk 0, offset
    /// 32 × line (lines in `unacked` get no ack).
    fn run(name: &str, w: &str, n: usize, unacked: &[u64]) -> AppendRun {
        let lines = (1..=n)
            .map(|i| format!("{name}-{i}").into_bytes())
            .collect();
        let mut r = AppendRun::from_output(name, lines, output(Vec::new()));
        r.acks = (1..=n as u64)
            .filter(|l| !unacked.contains(l))
            .map(|l| Ack {
                line: l,
                chunk: Some(0),
                offset: Some(32 * l),
                writer: WriterId(w.into()),
                sequence: l,
                unverified: false,
            })
            .collect();
        r
    }

    fn rec(w: &str, seq: u64, payload: &str, offset: u64) -> Event {
        Event::Record(Record {
            chunk: 0,
            offset,
            writer: WriterId(w.into()),
            sequence: seq,
            payload: payload.as_bytes().to_vec(),
        })
    }

    fn replay(events: Vec<Event>) -> Replay {
        Replay {
            events,
            output: output(Vec::new()),
        }
    }

    fn classes(report: &Report) -> Vec<&'static str> {
        report.violations.keys().copied().collect()
    }

    #[test]
    fn a_clean_history_passes_with_counts() {
        let runs = vec![run("a", "1", 2, &[]), run("b", "2", 1, &[])];
        let full = vec![
            rec("1", 1, "a-1", 32),
            rec("2", 1, "b-1", 32),
            rec("1", 1, "a-1", 500),
            rec("1", 2, "a-2", 64),
        ];
        let dedup = vec![full[0].clone(), full[1].clone(), full[3].clone()];
        let report = check(&runs, &replay(dedup), &replay(full));
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(
            (
                report.attempted,
                report.acknowledged,
                report.replayed,
                report.duplicates
            ),
            (3, 3, 3, 1)
        );
    }

    #[test]
    fn lost_unexpected_order_and_integrity_are_caught() {
        let runs = vec![run("a", "1", 3, &[])];
        // a-2 lost, a foreign payload, a-3 before a-1, a-1's payload under sequence 3.
        let full = vec![
            rec("1", 3, "a-3", 96),
            rec("1", 1, "a-1", 32),
            rec("1", 9, "zzz", 128),
        ];
        let report = check(&runs, &replay(full.clone()), &replay(full));
        let c = classes(&report);
        for class in ["L (lost)", "U (unexpected)", "O (order)"] {
            assert!(c.contains(&class), "{class} missing: {report}");
        }
        let swapped = vec![
            rec("1", 1, "a-2", 32),
            rec("1", 2, "a-1", 64),
            rec("1", 3, "a-3", 96),
        ];
        let report = check(&runs, &replay(swapped.clone()), &replay(swapped));
        assert!(classes(&report).contains(&"I (integrity)"), "{report}");
    }

    #[test]
    fn duplicates_after_dedupe_positions_and_refused_lines_are_caught() {
        let mut runs = vec![run("a", "1", 2, &[2])];
        runs[0].definite_failure = true;
        let full = vec![rec("1", 1, "a-1", 40), rec("1", 2, "a-2", 64)];
        let dedup = vec![full[0].clone(), full[0].clone(), full[1].clone()];
        let report = check(&runs, &replay(dedup), &replay(full));
        let c = classes(&report);
        for class in ["D (duplicates)", "P (position)", "F (definite failure)"] {
            assert!(c.contains(&class), "{class} missing: {report}");
        }
        assert_eq!(report.recovered, 1);
    }
}
