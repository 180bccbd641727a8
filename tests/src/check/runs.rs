//! `cairn append --json` runs as a history: run `r` (from 0) is test writer `r + 1`, its input
//! line `n` is attempt 0 of sequence `n`, an acknowledgement is that attempt's `ok` (with where
//! and under which Cairn id), a line of a run refused before any write is a definite failure,
//! and any other unacknowledged line is indeterminate. Records name their attempt by their bytes
//! ([`Names::Lines`]: the lines are unique by construction).

use std::collections::{HashMap, HashSet};

use super::{EXAMPLES_MAX, Input, Names, Report, check};
use crate::contract::{self, Ack, Replay, WriterId};
use crate::history::{Entry, Op};
use crate::proc::Output;

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
        Self::from_acks(name, lines, acks, output)
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

/// The history and the names of `runs`.
///
/// # Panics
/// If two input lines carry the same bytes (a test bug: lines must be unique).
pub fn history_of(runs: &[AppendRun]) -> (Vec<Entry>, Names) {
    let mut history = Vec::new();
    let mut names = HashMap::new();
    let entry = |w, seq, op| Entry {
        w,
        seq,
        attempt: Some(0),
        t: None,
        op,
    };
    for (r, run) in runs.iter().enumerate() {
        let w = u32::try_from(r + 1).expect("fewer than 2^32 runs");
        for (i, line) in run.lines.iter().enumerate() {
            let seq = i as u64 + 1;
            if let Some(old) = names.insert(line.clone(), (w, seq, 0)) {
                panic!(
                    "test bug: lines {old:?} and {:?} carry the same bytes",
                    (w, seq, 0)
                );
            }
            history.push(entry(w, seq, Op::Invoke));
        }
        let mut acked = HashSet::new();
        for ack in &run.acks {
            acked.insert(ack.line);
            history.push(entry(
                w,
                ack.line,
                Op::Ok {
                    chunk: ack.chunk,
                    offset: ack.offset,
                    id: Some((ack.writer.clone(), ack.sequence)),
                },
            ));
        }
        if run.definite_failure {
            for seq in (1..=run.lines.len() as u64).filter(|l| !acked.contains(l)) {
                let reason = "the run was refused before any write".to_owned();
                let op = Op::Fail {
                    reason,
                    definite: true,
                };
                history.push(entry(w, seq, op));
            }
        }
    }
    (history, Names::Lines(names))
}

/// Checks `runs` against `deduplicated` (`replay --json`) and `with_duplicates` (`replay --json
/// --keep-duplicates`), both taken after every run ended, expecting no skipped range.
pub fn check_runs(runs: &[AppendRun], deduplicated: &Replay, with_duplicates: &Replay) -> Report {
    check_runs_skipping(runs, deduplicated, with_duplicates, 0)
}

/// [`check_runs`] for a test that damages data on purpose: each replay must report exactly
/// `expected_skips` skipped ranges.
pub fn check_runs_skipping(
    runs: &[AppendRun],
    deduplicated: &Replay,
    with_duplicates: &Replay,
    expected_skips: usize,
) -> Report {
    let (history, names) = history_of(runs);
    let mut input = Input::new(
        &history,
        &names,
        &deduplicated.events,
        &with_duplicates.events,
    );
    input.expected_skips = expected_skips;
    check(&input)
}
