//! The checker: what test writers attempted and were told (a [`History`](crate::History), or
//! `cairn append --json` runs turned into one by [`runs`]) against what was read (the final
//! replays, a later replay, readers run during the faults, raw replica scans).
//!
//! An *attempt* is one try of a test writer `w` at its record `seq`; attempt `a` of `(w, seq)`
//! has its own payload, so a read record names its attempt: by decoding a [`Payload`]
//! ([`Names::Payloads`]) or by looking its bytes up among the run's input lines
//! ([`Names::Lines`]). Cairn's id of a stored record, `(writer, sequence)`, is its *Cairn id*.
//! Each class below has one meaning, and a violation of it is counted and shown with examples:
//!
//! | class | invariant |
//! | --- | --- |
//! | **H** history | every outcome follows an invoke of its attempt; one outcome per attempt; a Cairn id is acknowledged for one attempt; a Cairn writer belongs to one test writer; per Cairn writer, acknowledged sequences grow with the test sequence |
//! | **L** lost | every acknowledged *attempt* is in the deduplicated replay (per attempt: a missing acknowledged retry is lost even if an earlier attempt of its `(w, seq)` is stored); classed prefix / middle / postfix against the writer's read sequences |
//! | **U** unexpected | every record read (final replays, later replay, readers, replica scans) names an invoked attempt: no phantom, garbage or padding read as a record |
//! | **I** integrity | a record's bytes are those of the attempt it names: its blake3 matches, and the Cairn id it is stored under was not acknowledged for, and its Cairn writer does not belong to, another attempt or test writer |
//! | **D** duplicates | all copies of a Cairn id carry one attempt, and an attempt is stored under one Cairn id; the deduplicated replay is exactly the first copy of every Cairn id of the full replay, in order |
//! | **O** order | per Cairn writer, every writer acknowledged or not, first copies follow in increasing Cairn sequence and test sequence; per test writer, no first copy of a higher `seq` precedes the first copy of an acknowledged one |
//! | **P** position | an acknowledgement's `(chunk, offset)`, when given, is where a copy of its attempt is |
//! | **F** definite failure | no attempt that failed definitely (refused before any write) is read |
//! | **K** skipped | the final and later replays each report exactly the `Skipped` events the test expects ([`Input::expected_skips`], 0 unless it damages data on purpose), and no reader more; every one is listed |
//! | **S** stability | every record of the deduplicated replay is in the later replay, at the same place, with the same bytes |
//! | **R** read-after-ack | a reader (replay or tail) started after an acknowledgement returns that attempt's record unless it failed with an error; a reader that never ended is a violation |
//! | **G** read-then-gone | every attempt a reader returned is in the final deduplicated replay and the later replay: nothing read can vanish |
//! | **T** tail progress | a tail stopped after healing and catching up has returned every acknowledged attempt |
//!
//! # Layout
//! - `attempts`: the attempts of a history (H) and how a read record names one (U, I).
//! - `replays`: the final and the later replays (L, U, I, D, O, P, F, K, S).
//! - `readers`: readers run during the scenario ([`ReaderRun`]; R, G, T, and U, I, K on what
//!   they returned).
//! - [`runs`]: `cairn append --json` runs ([`AppendRun`]) as a history, and [`check_runs`].
//! - `tests`: one hand-made history per class.

mod attempts;
mod readers;
mod replays;
pub mod runs;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::contract::{Event, Record};
use crate::history::Entry;
#[cfg(doc)]
use crate::payload::Payload;

pub use readers::{ReaderEnd, ReaderRun};
pub use runs::{AppendRun, check_runs};

/// At most this many examples are shown per violation class.
pub const EXAMPLES_MAX: usize = 10;

/// `(w, seq, attempt)`: one attempt of a test writer.
pub type AttemptKey = (u32, u64, u32);

/// How a read record's bytes name their attempt.
#[derive(Clone, Debug)]
pub enum Names {
    /// The bytes are a [`Payload`] (binary or base64), naming `(w, seq, attempt)` and carrying
    /// the blake3 of the body.
    Payloads,
    /// The bytes are one of these input lines (unique by construction), each one attempt.
    Lines(HashMap<Vec<u8>, AttemptKey>),
}

/// A raw scan of one replica's chunk file (e.g. with `cairn_record::Scanner`), checked for U and
/// I.
#[derive(Clone, Debug)]
pub struct ReplicaScan {
    /// The replica, for messages (e.g. `chunkserver1 chunk 3`).
    pub name: String,
    /// Its records, in file order.
    pub records: Vec<Record>,
}

/// Everything one check looks at. The final replays are required; the rest may be empty.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The history of every attempt.
    pub history: &'a [Entry],
    /// How records name their attempts.
    pub names: &'a Names,
    /// The deduplicated replay, taken after every writer ended (and after healing).
    pub deduplicated: &'a [Event],
    /// The replay with duplicates kept, taken then too.
    pub with_duplicates: &'a [Event],
    /// A deduplicated replay taken after those two (S, G), if any.
    pub later: Option<&'a [Event]>,
    /// Readers run during the scenario (R, G, T).
    pub readers: &'a [ReaderRun],
    /// Raw scans of replica files (U, I).
    pub replicas: &'a [ReplicaScan],
    /// `Skipped` events each final replay must report (K).
    pub expected_skips: usize,
}

impl<'a> Input<'a> {
    /// An input of the history and the two final replays, expecting no skip.
    pub fn new(
        history: &'a [Entry],
        names: &'a Names,
        deduplicated: &'a [Event],
        with_duplicates: &'a [Event],
    ) -> Self {
        Self {
            history,
            names,
            deduplicated,
            with_duplicates,
            later: None,
            readers: &[],
            replicas: &[],
            expected_skips: 0,
        }
    }
}

/// The counts and violations of one check. `Display` prints the counts and up to
/// [`EXAMPLES_MAX`] examples per violated class.
#[derive(Debug, Default)]
pub struct Report {
    /// Distinct `(w, seq)` invoked.
    pub attempted: usize,
    /// Invokes (attempts) in all.
    pub attempts: usize,
    /// Acknowledged attempts.
    pub acknowledged: usize,
    /// Attempts that failed definitely.
    pub definite_failures: usize,
    /// Attempts with an `info` outcome or none at all.
    pub indeterminate: usize,
    /// Records in the deduplicated replay.
    pub replayed: usize,
    /// Distinct `(w, seq)` in the deduplicated replay.
    pub read: usize,
    /// Records in the full replay (all copies).
    pub copies: usize,
    /// Full replay records beyond one per Cairn id.
    pub duplicates_before: usize,
    /// Deduplicated replay records beyond one per `(w, seq)` (distinct attempts: at least once).
    pub duplicates_after: usize,
    /// Distinct Cairn writers in the full replay.
    pub writers: usize,
    /// Read `(w, seq)` with no acknowledged attempt.
    pub recovered: usize,
    /// Lost acknowledged attempts below every read sequence of their writer.
    pub lost_prefix: usize,
    /// Lost acknowledged attempts between read ones: the worst kind.
    pub lost_middle: usize,
    /// Lost acknowledged attempts above every read sequence of their writer.
    pub lost_postfix: usize,
    /// `Skipped` events in the deduplicated replay.
    pub skipped: usize,
    /// Records in the replica scans.
    pub replica_records: usize,
    /// Readers checked.
    pub readers: usize,
    /// Readers that ended with an error (not held to R).
    pub readers_failed: usize,
    /// Acknowledgements checked by readers: per reader, those recorded before it began.
    pub acks_checked_by_readers: usize,
    /// Records readers returned, each checked against the later complete replays (G).
    pub reader_records: usize,
    /// Violations by class, each with a count and the first examples.
    pub violations: BTreeMap<&'static str, (usize, Vec<String>)>,
}

impl Report {
    pub(crate) fn violate(&mut self, class: &'static str, message: impl FnOnce() -> String) {
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

    /// Prints the report and panics, showing it, if any invariant is violated.
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
            "checker: attempted {} ({} attempts), acknowledged {}, definite failures {}, \
             indeterminate {}, replayed {} (read {}), copies {}, duplicates {} before / {} after \
             dedupe, writers {}, recovered {}, lost {} prefix / {} middle / {} postfix, skipped \
             {}, replica records {}, readers {} ({} failed), acks checked by readers {}, reader \
             records {}",
            self.attempted,
            self.attempts,
            self.acknowledged,
            self.definite_failures,
            self.indeterminate,
            self.replayed,
            self.read,
            self.copies,
            self.duplicates_before,
            self.duplicates_after,
            self.writers,
            self.recovered,
            self.lost_prefix,
            self.lost_middle,
            self.lost_postfix,
            self.skipped,
            self.replica_records,
            self.readers,
            self.readers_failed,
            self.acks_checked_by_readers,
            self.reader_records
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

/// Runs every check of the module docs over `input`.
pub fn check(input: &Input) -> Report {
    let mut report = Report::default();
    let history = attempts::Attempts::of(input.history, &mut report);
    let mut complete = vec![(
        "the final deduplicated replay",
        replays::check_final(input, &history, &mut report),
    )];
    for scan in input.replicas {
        for rec in &scan.records {
            report.replica_records += 1;
            let at = format!(
                "replica {} chunk {} offset {}",
                scan.name, rec.chunk, rec.offset
            );
            history.name(input.names, rec, &at, &mut report);
        }
    }
    if let Some(later) = input.later {
        let read = replays::check_later(input, &history, later, &mut report);
        complete.push(("the later replay", read));
    }
    readers::check(input, &history, &complete, &mut report);
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
