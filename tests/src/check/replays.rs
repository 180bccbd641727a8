//! The final replays (classes L, U, I, D, O, P, F, K) and a later one (S, K).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::attempts::Attempts;
use super::{AttemptKey, Input, Report};
use crate::contract::{Event, Record, WriterId};
use crate::history::{CairnId, Op};

/// The attempts a complete replay returned, for G.
pub(super) type ReadSet = HashSet<AttemptKey>;

/// Checks the full and the deduplicated replay; returns the attempts the deduplicated one read.
pub(super) fn check_final(input: &Input, history: &Attempts, report: &mut Report) -> ReadSet {
    let first_copies = full_replay(input, history, report);
    deduplicated_replay(input, history, &first_copies, report)
}

/// The full replay: U, I, F, D (copies), O, P, K; returns its first copies, in order.
fn full_replay<'a>(input: &'a Input, history: &Attempts, report: &mut Report) -> Vec<&'a Record> {
    let mut first_copies: Vec<&Record> = Vec::new();
    // Per Cairn id: the attempt of its first copy.
    let mut attempt_of_id: HashMap<CairnId, Option<AttemptKey>> = HashMap::new();
    // Per attempt: its first Cairn id, and every place it is at.
    let mut id_of_attempt: HashMap<AttemptKey, CairnId> = HashMap::new();
    let mut positions: HashMap<AttemptKey, Vec<(u64, u64)>> = HashMap::new();
    let mut definite_read: HashSet<AttemptKey> = HashSet::new();
    // Per Cairn writer: the last first copy's (Cairn sequence, test key).
    let mut last_of_writer: HashMap<WriterId, (u64, AttemptKey)> = HashMap::new();
    // Per test writer: the highest seq with a first copy so far.
    let mut highest_seq: HashMap<u32, u64> = HashMap::new();
    let mut first_of_key: HashSet<(u32, u64)> = HashSet::new();
    let mut skips = Vec::new();
    for event in input.with_duplicates {
        let rec = match event {
            Event::Record(rec) => rec,
            Event::Skipped { raw } => {
                skips.push(raw.as_str());
                continue;
            }
        };
        report.copies += 1;
        let at = format!("full replay chunk {} offset {}", rec.chunk, rec.offset);
        let named = history.name(input.names, rec, &at, report);
        let id = (rec.writer.clone(), rec.sequence);
        let first = match attempt_of_id.get(&id) {
            None => {
                attempt_of_id.insert(id.clone(), named);
                first_copies.push(rec);
                true
            }
            Some(first) => {
                // An unnamed copy (U or I) is flagged already.
                if first.is_some() && named.is_some() && *first != named {
                    report.violate("D (duplicates)", || {
                        format!(
                            "copies of Cairn id {}/{} carry attempts {first:?} and {named:?} \
                             ({at})",
                            id.0, id.1
                        )
                    });
                }
                false
            }
        };
        let Some(key) = named else { continue };
        match id_of_attempt.get(&key) {
            None => {
                id_of_attempt.insert(key, id.clone());
            }
            Some(other) if *other != id => report.violate("D (duplicates)", || {
                format!(
                    "attempt {key:?} stored under Cairn ids {}/{} and {}/{} ({at})",
                    other.0, other.1, id.0, id.1
                )
            }),
            Some(_) => {}
        }
        positions
            .entry(key)
            .or_default()
            .push((rec.chunk, rec.offset));
        if history.get(&key).failed_definitely() && definite_read.insert(key) {
            report.violate("F (definite failure)", || {
                format!("attempt {key:?} failed definitely but is read ({at})")
            });
        }
        if !first {
            continue;
        }
        // O, per Cairn writer: every writer, acknowledged or not.
        if let Some(&(seq, last)) = last_of_writer.get(&rec.writer)
            && (seq >= rec.sequence || last.1 >= key.1)
        {
            report.violate("O (order)", || {
                format!(
                    "Cairn writer {}: first copy of sequence {} (attempt {key:?}) at {at} follows \
                     sequence {seq} (attempt {last:?})",
                    rec.writer, rec.sequence
                )
            });
        }
        last_of_writer.insert(rec.writer.clone(), (rec.sequence, key));
        // O, per test writer, for acknowledged records.
        if first_of_key.insert((key.0, key.1)) {
            let highest = highest_seq.entry(key.0).or_insert(0);
            if *highest > key.1 && history.any_acked(key.0, key.1) {
                let higher = *highest;
                report.violate("O (order)", || {
                    format!(
                        "test writer {}: acknowledged seq {} first appears after seq {higher} \
                         ({at})",
                        key.0, key.1
                    )
                });
            }
            *highest = (*highest).max(key.1);
        }
    }
    report.duplicates_before = report.copies - attempt_of_id.len();
    report.writers = last_of_writer.len();
    skipped(
        "full replay",
        &skips,
        input.expected_skips,
        Expect::Exactly,
        report,
    );
    positions_of_acks(history, &positions, report);
    first_copies
}

/// The deduplicated replay: D (equals the first copies), L, K, recovered; returns what it read.
fn deduplicated_replay(
    input: &Input,
    history: &Attempts,
    first_copies: &[&Record],
    report: &mut Report,
) -> ReadSet {
    let mut read: ReadSet = HashSet::new();
    let mut records: Vec<&Record> = Vec::new();
    let mut skips = Vec::new();
    for event in input.deduplicated {
        match event {
            Event::Record(rec) => records.push(rec),
            Event::Skipped { raw } => skips.push(raw.as_str()),
        }
    }
    report.replayed = records.len();
    report.skipped = skips.len();
    skipped(
        "deduplicated replay",
        &skips,
        input.expected_skips,
        Expect::Exactly,
        report,
    );
    if records != first_copies {
        let i = records
            .iter()
            .zip(first_copies)
            .position(|(a, b)| a != b)
            .unwrap_or(records.len().min(first_copies.len()));
        let show = |r: Option<&&Record>| {
            r.map(|r| {
                format!(
                    "{}/{} at chunk {} offset {}",
                    r.writer, r.sequence, r.chunk, r.offset
                )
            })
        };
        report.violate("D (duplicates)", || {
            format!(
                "the deduplicated replay ({} records) is not the first copies of the full replay \
                 ({}); first difference at position {i}: {:?} vs {:?}",
                records.len(),
                first_copies.len(),
                show(records.get(i)),
                show(first_copies.get(i))
            )
        });
    }
    let mut read_keys: HashSet<(u32, u64)> = HashSet::new();
    for rec in records {
        let at = format!(
            "deduplicated replay chunk {} offset {}",
            rec.chunk, rec.offset
        );
        if let Some(key) = history.name(input.names, rec, &at, report) {
            read.insert(key);
            read_keys.insert((key.0, key.1));
        }
    }
    report.read = read_keys.len();
    report.duplicates_after = read.len() - read_keys.len();
    report.recovered = read_keys
        .iter()
        .filter(|&&(w, seq)| !history.any_acked(w, seq))
        .count();
    lost(history, &read, report);
    read
}

/// Checks a later deduplicated replay: S against the deduplicated one, K, U and I; returns what
/// it read.
pub(super) fn check_later(
    input: &Input,
    history: &Attempts,
    later: &[Event],
    report: &mut Report,
) -> ReadSet {
    let mut at: HashMap<(u64, u64), &Record> = HashMap::new();
    let mut read = HashSet::new();
    let mut skips = Vec::new();
    for event in later {
        match event {
            Event::Record(r) => {
                at.insert((r.chunk, r.offset), r);
                let place = format!("later replay chunk {} offset {}", r.chunk, r.offset);
                if let Some(key) = history.name(input.names, r, &place, report) {
                    read.insert(key);
                }
            }
            Event::Skipped { raw } => skips.push(raw.as_str()),
        }
    }
    skipped(
        "later replay",
        &skips,
        input.expected_skips,
        Expect::Exactly,
        report,
    );
    for event in input.deduplicated {
        let Event::Record(r) = event else { continue };
        match at.get(&(r.chunk, r.offset)) {
            Some(l) if l.payload == r.payload => {}
            found => report.violate("S (stability)", || {
                format!(
                    "chunk {} offset {}: the deduplicated replay had {}/{}, the later one {}",
                    r.chunk,
                    r.offset,
                    r.writer,
                    r.sequence,
                    found.map_or("nothing".to_owned(), |l| format!(
                        "{}/{}",
                        l.writer, l.sequence
                    ))
                )
            }),
        }
    }
    read
}

/// How many skips a replay may report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    /// Exactly the expected number (a complete replay after the faults).
    Exactly,
    /// At most the expected number (a reader during the faults, before the damage, say).
    AtMost,
}

/// K: `skips` (the raw events of one replay) against what the test expects; every skip is shown.
pub(super) fn skipped(
    replay: &str,
    skips: &[&str],
    expected: usize,
    expect: Expect,
    report: &mut Report,
) {
    let wrong = match expect {
        Expect::Exactly => skips.len() != expected,
        Expect::AtMost => skips.len() > expected,
    };
    if wrong {
        report.violate("K (skipped)", || {
            format!(
                "{replay}: {} skipped ranges where {expected} were expected ({expect:?}): {skips:?}",
                skips.len()
            )
        });
    }
}

/// L: each acknowledged attempt missing from the deduplicated replay, classed per writer.
fn lost(history: &Attempts, read: &ReadSet, report: &mut Report) {
    let mut read_range: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for &(w, seq, _) in read {
        let r = read_range.entry(w).or_insert((seq, seq));
        *r = (r.0.min(seq), r.1.max(seq));
    }
    for (&key, a) in &history.by_key {
        if !a.acked() || read.contains(&key) {
            continue;
        }
        let (w, seq, attempt) = key;
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
        let other = read.iter().any(|&(rw, rs, _)| (rw, rs) == (w, seq));
        report.violate("L (lost)", || {
            format!(
                "writer {w} seq {seq} attempt {attempt} was acknowledged but is not read \
                 ({place}{})",
                if other {
                    "; another attempt of it is"
                } else {
                    ""
                }
            )
        });
    }
}

/// P: each acknowledgement that says where is where a copy of its attempt is.
fn positions_of_acks(
    history: &Attempts,
    positions: &HashMap<AttemptKey, Vec<(u64, u64)>>,
    report: &mut Report,
) {
    for (key, a) in &history.by_key {
        let Some(Op::Ok {
            chunk: Some(chunk),
            offset: Some(offset),
            ..
        }) = a.outcome
        else {
            continue;
        };
        if let Some(found) = positions.get(key)
            && !found.contains(&(chunk, offset))
        {
            report.violate("P (position)", || {
                format!(
                    "attempt {key:?} acknowledged at chunk {chunk} offset {offset}, but its \
                     copies are at {found:?}"
                )
            });
        }
    }
}
