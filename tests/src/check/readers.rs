//! Readers run during a scenario (classes R, G, T, and U, I, K on what they returned).

use std::collections::HashSet;

use super::attempts::Attempts;
use super::replays::{Expect, ReadSet, skipped};
use super::{AttemptKey, Input, Report};
use crate::contract::Event;

/// How a reader (replay or tail) ended.
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

/// What one reader of a scenario returned.
#[derive(Clone, Debug)]
pub struct ReaderRun {
    /// The reader, for messages (e.g. `replay at fault 3`).
    pub name: String,
    /// When it began, in the history's clock ([`History::now_ms`](crate::History::now_ms)),
    /// taken before its first call.
    pub started_ms: u64,
    /// How it ended.
    pub end: ReaderEnd,
    /// What it returned, in order.
    pub events: Vec<Event>,
}

/// Checks every reader of `input` against the history and against the `complete` replays taken
/// after all of them (name, attempts read).
pub(super) fn check(
    input: &Input,
    history: &Attempts,
    complete: &[(&str, ReadSet)],
    report: &mut Report,
) {
    // Acknowledged attempts with their acknowledgement times, by time.
    let mut acked: Vec<(u64, AttemptKey)> = history
        .by_key
        .iter()
        .filter_map(|(&k, a)| a.acked_at.filter(|_| a.acked()).map(|t| (t, k)))
        .collect();
    acked.sort_unstable();
    let all_acked: Vec<AttemptKey> = history
        .by_key
        .iter()
        .filter(|(_, a)| a.acked())
        .map(|(&k, _)| k)
        .collect();
    for reader in input.readers {
        report.readers += 1;
        let began = reader.started_ms as f64 / 1000.0;
        let mut read: HashSet<AttemptKey> = HashSet::new();
        let mut skips = Vec::new();
        let mut records = 0;
        for event in &reader.events {
            match event {
                Event::Record(rec) => {
                    records += 1;
                    let at = format!("{} chunk {} offset {}", reader.name, rec.chunk, rec.offset);
                    if let Some(key) = history.name(input.names, rec, &at, report) {
                        read.insert(key);
                    }
                }
                Event::Skipped { raw } => skips.push(raw.as_str()),
            }
        }
        report.reader_records += records;
        skipped(
            &reader.name,
            &skips,
            input.expected_skips,
            Expect::AtMost,
            report,
        );
        // G: nothing a reader returned may vanish, whatever way it ended.
        let mut returned: Vec<&AttemptKey> = read.iter().collect();
        returned.sort_unstable();
        for (replay, later) in complete {
            for key in returned.iter().filter(|k| !later.contains(k)) {
                report.violate("G (read-then-gone)", || {
                    format!(
                        "{} (began {began:.3} s, {:?}) returned attempt {key:?}, which {replay} \
                         lacks",
                        reader.name, reader.end
                    )
                });
            }
        }
        let state = match &reader.end {
            ReaderEnd::Complete => "complete",
            ReaderEnd::Stopped => "stopped",
            ReaderEnd::Failed(e) => {
                report.readers_failed += 1;
                eprintln!(
                    "checker: {} (began {began:.3} s) failed, not held to R: {e}",
                    reader.name
                );
                continue;
            }
            ReaderEnd::Hung(why) => {
                report.violate("R (read-after-ack)", || {
                    format!("{} (began {began:.3} s) never ended: {why}", reader.name)
                });
                continue;
            }
        };
        // R: every attempt acknowledged before it began.
        let before = acked.partition_point(|&(t, _)| t < reader.started_ms);
        report.acks_checked_by_readers += before;
        let missing: Vec<&(u64, AttemptKey)> = acked[..before]
            .iter()
            .filter(|(_, k)| !read.contains(k))
            .collect();
        for &&(t, key) in &missing {
            report.violate("R (read-after-ack)", || {
                format!(
                    "{} ({state}, began {began:.3} s, {records} records, {} of {before} earlier \
                     acks missing): attempt {key:?} acknowledged at {:.3} s is not in it",
                    reader.name,
                    missing.len(),
                    t as f64 / 1000.0
                )
            });
        }
        // T: a stopped tail has caught up with every acknowledged attempt.
        if reader.end == ReaderEnd::Stopped {
            let lacking: Vec<&AttemptKey> =
                all_acked.iter().filter(|k| !read.contains(k)).collect();
            if !lacking.is_empty() {
                report.violate("T (tail progress)", || {
                    format!(
                        "{} (began {began:.3} s) returned {records} records but lacks {} of the \
                         {} acknowledged attempts after catching up, e.g. {:?}",
                        reader.name,
                        lacking.len(),
                        all_acked.len(),
                        &lacking[..lacking.len().min(5)]
                    )
                });
            }
        }
    }
}
