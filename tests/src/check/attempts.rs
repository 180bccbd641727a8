//! The attempts of a history (class H) and the naming of read records (classes U and I).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{AttemptKey, Names, Report, preview};
use crate::contract::{Record, WriterId};
use crate::history::{CairnId, Entry, Op};
use crate::payload::{Payload, PayloadError};

/// What the history says about one attempt.
#[derive(Debug, Default)]
pub(super) struct Attempt {
    /// It was invoked.
    pub(super) invoked: bool,
    /// Its one outcome, if it has one.
    pub(super) outcome: Option<Op>,
    /// When its acknowledgement was recorded (ms), if it was and the history has times.
    pub(super) acked_at: Option<u64>,
}

impl Attempt {
    /// Acknowledged.
    pub(super) fn acked(&self) -> bool {
        matches!(self.outcome, Some(Op::Ok { .. }))
    }

    /// Refused before any write.
    pub(super) fn failed_definitely(&self) -> bool {
        matches!(self.outcome, Some(Op::Fail { definite: true, .. }))
    }
}

/// The attempts of a history and the Cairn ids their acknowledgements named.
#[derive(Debug, Default)]
pub(super) struct Attempts {
    /// Every attempt by `(w, seq, attempt)`, sorted.
    pub(super) by_key: BTreeMap<AttemptKey, Attempt>,
    /// The attempt each acknowledged Cairn id was acknowledged for.
    acked_ids: HashMap<CairnId, AttemptKey>,
    /// The test writer each acknowledged Cairn writer belongs to.
    writer_of: HashMap<WriterId, u32>,
}

impl Attempts {
    /// Reads `history`, counting into `report` and flagging H.
    pub(super) fn of(history: &[Entry], report: &mut Report) -> Self {
        let mut out = Self::default();
        let mut latest: HashMap<(u32, u64), u32> = HashMap::new();
        let mut keys: HashSet<(u32, u64)> = HashSet::new();
        for (i, e) in history.iter().enumerate() {
            let line = i + 1;
            if e.op == Op::Invoke {
                let attempt = e.attempt.unwrap_or(0);
                let a = out.by_key.entry((e.w, e.seq, attempt)).or_default();
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
            let Some(attempt) =
                attempt.filter(|&a| out.by_key.get(&(e.w, e.seq, a)).is_some_and(|a| a.invoked))
            else {
                report.violate("H (history)", || {
                    format!(
                        "event {line}: outcome of writer {} seq {} without an invoke",
                        e.w, e.seq
                    )
                });
                continue;
            };
            let key = (e.w, e.seq, attempt);
            let a = out.by_key.get_mut(&key).expect("checked");
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
            if let Op::Ok { id, .. } = &e.op {
                a.acked_at = e.t;
                if let Some(id) = id {
                    out.acked_id(id, key, line, report);
                }
            }
        }
        out.acked_sequences_in_order(report);
        report.attempted = keys.len();
        for a in out.by_key.values() {
            match &a.outcome {
                Some(Op::Ok { .. }) => report.acknowledged += 1,
                Some(Op::Fail { definite: true, .. }) => report.definite_failures += 1,
                Some(Op::Fail { .. }) => {}
                None | Some(Op::Info { .. }) | Some(Op::Invoke) => report.indeterminate += 1,
            }
        }
        out
    }

    /// H: a Cairn id is acknowledged for one attempt, a Cairn writer belongs to one test writer.
    fn acked_id(&mut self, id: &CairnId, key: AttemptKey, line: usize, report: &mut Report) {
        if let Some(&other) = self.acked_ids.get(id)
            && other != key
        {
            report.violate("H (history)", || {
                format!(
                    "event {line}: Cairn id {}/{} acknowledged for attempts {other:?} and {key:?}",
                    id.0, id.1
                )
            });
        }
        self.acked_ids.insert(id.clone(), key);
        let w = *self.writer_of.entry(id.0.clone()).or_insert(key.0);
        if w != key.0 {
            report.violate("H (history)", || {
                format!(
                    "event {line}: Cairn writer {} acknowledged for test writers {w} and {}",
                    id.0, key.0
                )
            });
        }
    }

    /// H: per Cairn writer, acknowledged Cairn sequences grow with the test sequence.
    fn acked_sequences_in_order(&self, report: &mut Report) {
        let mut by_writer: BTreeMap<&WriterId, Vec<(u64, u64)>> = BTreeMap::new();
        for (id, &(_, seq, _)) in &self.acked_ids {
            by_writer.entry(&id.0).or_default().push((seq, id.1));
        }
        for (writer, mut acks) in by_writer {
            acks.sort_unstable();
            for pair in acks.windows(2) {
                if pair[0].1 >= pair[1].1 {
                    report.violate("H (history)", || {
                        format!(
                            "Cairn writer {writer}: test seq {} acknowledged as sequence {} but \
                             later test seq {} as {}",
                            pair[0].0, pair[0].1, pair[1].0, pair[1].1
                        )
                    });
                }
            }
        }
    }

    /// The attempt a read record names, or `None` after flagging U or I.
    pub(super) fn name(
        &self,
        names: &Names,
        rec: &Record,
        at: &str,
        report: &mut Report,
    ) -> Option<AttemptKey> {
        let key = match names {
            Names::Payloads => match Payload::decode(&rec.payload) {
                Ok(p) => (p.w, p.seq, p.attempt),
                Err(e @ PayloadError::HashMismatch { .. }) => {
                    report.violate("I (integrity)", || format!("{at}: {e}"));
                    return None;
                }
                Err(e) => {
                    report.violate("U (unexpected)", || {
                        format!("{at}: {e}: {}", preview(&rec.payload))
                    });
                    return None;
                }
            },
            Names::Lines(lines) => match lines.get(&rec.payload) {
                Some(&key) => key,
                None => {
                    report.violate("U (unexpected)", || {
                        format!(
                            "{at}: writer {} sequence {}: {} bytes never attempted: {}",
                            rec.writer,
                            rec.sequence,
                            rec.payload.len(),
                            preview(&rec.payload)
                        )
                    });
                    return None;
                }
            },
        };
        if !self.by_key.get(&key).is_some_and(|a| a.invoked) {
            report.violate("U (unexpected)", || {
                format!("{at}: attempt {key:?} was never invoked")
            });
            return None;
        }
        let id = (rec.writer.clone(), rec.sequence);
        if let Some(&acked) = self.acked_ids.get(&id)
            && acked != key
        {
            report.violate("I (integrity)", || {
                format!(
                    "{at}: Cairn id {}/{} was acknowledged for attempt {acked:?} but carries the \
                     bytes of {key:?}",
                    id.0, id.1
                )
            });
            return None;
        }
        if let Some(&w) = self.writer_of.get(&rec.writer)
            && w != key.0
        {
            report.violate("I (integrity)", || {
                format!(
                    "{at}: Cairn writer {} belongs to test writer {w} but carries the bytes of \
                     {key:?}",
                    rec.writer
                )
            });
            return None;
        }
        Some(key)
    }

    /// The attempt `key`.
    pub(super) fn get(&self, key: &AttemptKey) -> &Attempt {
        &self.by_key[key]
    }

    /// Whether some attempt of `(w, seq)` was acknowledged.
    pub(super) fn any_acked(&self, w: u32, seq: u64) -> bool {
        self.by_key
            .range((w, seq, 0)..=(w, seq, u32::MAX))
            .any(|(_, a)| a.acked())
    }
}
