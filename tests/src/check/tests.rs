//! One small hand-made history per class: each class can fire, and a clean history passes.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::*;
use crate::contract::{Ack, Replay, WriterId};
use crate::history::{CairnId, Op};
use crate::payload::Payload;
use crate::proc::Output;

/// Writer 1: seq 1–3 acknowledged (Cairn ids `c1`/1–3) at chunk 0, offset 32 × seq, at 10, 20,
/// 30 ms. Writer 2: seq 1 indeterminate (`info`), seq 2 refused definitely.
fn history() -> Vec<Entry> {
    let e = |w, seq, op| Entry {
        w,
        seq,
        attempt: Some(0),
        t: Some(10 * seq),
        op,
    };
    let mut h = Vec::new();
    for seq in 1..=3 {
        h.push(e(1, seq, Op::Invoke));
        h.push(e(1, seq, ok(32 * seq, "c1", seq)));
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

fn ok(offset: u64, writer: &str, sequence: u64) -> Op {
    Op::Ok {
        chunk: Some(0),
        offset: Some(offset),
        id: Some(id(writer, sequence)),
    }
}

fn id(writer: &str, sequence: u64) -> CairnId {
    (WriterId(writer.into()), sequence)
}

/// A record of attempt `attempt` of `(w, seq)` under Cairn id `c{w}`/`seq` at chunk 0.
fn rec_attempt(w: u32, seq: u64, attempt: u32, offset: u64) -> Record {
    Record {
        chunk: 0,
        offset,
        writer: WriterId(format!("c{w}")),
        sequence: seq,
        payload: Payload::new(w, seq, attempt, format!("body {w}/{seq}").into_bytes()).encode(),
    }
}

fn rec(w: u32, seq: u64, offset: u64) -> Record {
    rec_attempt(w, seq, 0, offset)
}

fn events(records: &[Record]) -> Vec<Event> {
    records.iter().cloned().map(Event::Record).collect()
}

/// The clean reads: writer 1's records at their acked offsets, writer 2's indeterminate record;
/// the full replay adds a library-retry copy of writer 1 seq 2.
fn clean() -> (Vec<Record>, Vec<Record>) {
    let dedup = vec![rec(1, 1, 32), rec(1, 2, 64), rec(1, 3, 96), rec(2, 1, 128)];
    let mut full = dedup.clone();
    full.insert(3, rec(1, 2, 200));
    (dedup, full)
}

/// Checks the history against the replays (payload names, no skip expected).
fn run(h: &[Entry], dedup: &[Record], full: &[Record]) -> Report {
    let (d, f) = (events(dedup), events(full));
    check(&Input::new(h, &Names::Payloads, &d, &f))
}

/// Panics unless `report` violates exactly `class`.
fn only(report: &Report, class: &str) {
    assert_eq!(report.classes(), vec![class], "{report}");
}

// Proves: a clean history with a retry copy, an indeterminate record and a definite failure
// passes, with every count as expected.
#[test]
fn a_clean_history_passes_with_its_counts() {
    let (dedup, full) = clean();
    let (d, f) = (events(&dedup), events(&full));
    let scans = [ReplicaScan {
        name: "cs0".into(),
        records: full.clone(),
    }];
    let h = history();
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.later = Some(&d);
    input.replicas = &scans;
    let report = check(&input);
    assert!(report.violations.is_empty(), "{report}");
    let counts = [
        report.attempted,
        report.attempts,
        report.acknowledged,
        report.definite_failures,
        report.indeterminate,
        report.replayed,
        report.read,
        report.copies,
        report.duplicates_before,
        report.duplicates_after,
        report.writers,
        report.recovered,
        report.replica_records,
    ];
    assert_eq!(counts, [5, 5, 3, 1, 1, 4, 4, 5, 1, 0, 2, 1, 5], "{report}");
}

// Proves H: an outcome without an invoke, a second outcome, and one Cairn id acknowledged for
// two attempts are each flagged.
#[test]
fn a_broken_history_is_flagged() {
    let (dedup, full) = clean();
    let info = |w, reason: &str| Entry {
        w,
        seq: 1,
        attempt: None,
        t: None,
        op: Op::Info {
            reason: reason.into(),
        },
    };
    let mut h = history();
    h.push(info(2, "again"));
    only(&run(&h, &dedup, &full), "H (history)");
    let mut h = history();
    h.push(info(7, "no invoke"));
    only(&run(&h, &dedup, &full), "H (history)");
    let mut h = history();
    h.push(Entry {
        w: 3,
        seq: 1,
        attempt: Some(0),
        t: None,
        op: Op::Invoke,
    });
    h.push(Entry {
        w: 3,
        seq: 1,
        attempt: Some(0),
        t: None,
        op: ok(500, "c1", 2),
    });
    assert!(run(&h, &dedup, &full).classes().contains(&"H (history)"));
}

// Proves L: each missing acknowledged record is lost and classed prefix, middle or postfix.
#[test]
fn lost_records_are_flagged_and_classed() {
    for (missing, counts) in [(1, (1, 0, 0)), (2, (0, 1, 0)), (3, (0, 0, 1))] {
        let (mut dedup, mut full) = clean();
        dedup.retain(|r| !(r.writer.0 == "c1" && r.sequence == missing));
        full.retain(|r| !(r.writer.0 == "c1" && r.sequence == missing));
        let report = run(&history(), &dedup, &full);
        only(&report, "L (lost)");
        let got = (report.lost_prefix, report.lost_middle, report.lost_postfix);
        assert_eq!(got, counts, "seq {missing} missing: {report}");
    }
}

// Proves L per attempt: an acknowledged retry whose record is missing is lost even though the
// earlier, indeterminate attempt of the same (w, seq) is stored.
#[test]
fn a_missing_acknowledged_retry_does_not_hide_behind_an_earlier_attempt() {
    let (dedup, full) = clean();
    let mut h = history();
    h.push(Entry {
        w: 2,
        seq: 1,
        attempt: Some(1),
        t: Some(40),
        op: Op::Invoke,
    });
    h.push(Entry {
        w: 2,
        seq: 1,
        attempt: Some(1),
        t: Some(50),
        op: ok(500, "c2b", 1),
    });
    let report = run(&h, &dedup, &full);
    only(&report, "L (lost)");
    assert!(report.to_string().contains("attempt 1"), "{report}");
}

// Proves U: a phantom (never invoked), garbage, and an unknown record in a replica scan are
// unexpected; with line names, bytes that are no input line are unexpected.
#[test]
fn phantoms_and_garbage_are_unexpected() {
    let (mut dedup, mut full) = clean();
    let phantom = rec(1, 9, 300);
    let mut garbage = rec(1, 10, 400);
    garbage.payload = b"padding parsed as a record".to_vec();
    dedup.extend([phantom.clone(), garbage.clone()]);
    full.extend([phantom, garbage]);
    let report = run(&history(), &dedup, &full);
    only(&report, "U (unexpected)");
    // Each of the two, once in each replay.
    assert_eq!(report.violations["U (unexpected)"].0, 4, "{report}");

    let (dedup, full) = clean();
    let (d, f) = (events(&dedup), events(&full));
    let h = history();
    let scans = [ReplicaScan {
        name: "cs1".into(),
        records: vec![rec(3, 1, 32)],
    }];
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.replicas = &scans;
    only(&check(&input), "U (unexpected)");

    let runs = [append_run("a", "9", 2, &[2])];
    let full = vec![record("9", 1, "a-1", 32), record("9", 2, "zzz", 64)];
    only(&check_replays(&runs, &full, &full), "U (unexpected)");
}

// Proves I: a body that does not match its hash, and a Cairn id acknowledged for one attempt
// carrying another's bytes, break integrity.
#[test]
fn a_corrupt_body_or_swapped_bytes_fail_integrity() {
    let (dedup, mut full) = clean();
    let mut corrupt = rec(1, 2, 300);
    let last = corrupt.payload.len() - 40;
    corrupt.payload[last] ^= 0x20;
    full.push(corrupt);
    only(&run(&history(), &dedup, &full), "I (integrity)");

    let runs = [append_run("a", "1", 2, &[])];
    let swapped = vec![record("1", 1, "a-2", 32), record("1", 2, "a-1", 64)];
    let report = check_replays(&runs, &swapped, &swapped);
    assert!(report.classes().contains(&"I (integrity)"), "{report}");
}

// Proves D: one attempt under two Cairn ids, copies of one Cairn id with different bytes, and a
// deduplicated replay that is not the first copies (a copy left after dedupe) are duplicates.
#[test]
fn unexplained_copies_and_copies_left_after_dedupe_are_duplicates() {
    let (dedup, mut full) = clean();
    let mut other = rec(1, 2, 300);
    other.writer = WriterId("c9".into());
    full.push(other);
    only(&run(&history(), &dedup, &full), "D (duplicates)");

    let (dedup, mut full) = clean();
    let mut swapped = rec(2, 1, 300);
    swapped.payload = rec_attempt(2, 1, 1, 0).payload;
    let mut h = history();
    h.push(Entry {
        w: 2,
        seq: 1,
        attempt: Some(1),
        t: None,
        op: Op::Invoke,
    });
    full.push(swapped);
    only(&run(&h, &dedup, &full), "D (duplicates)");

    let (mut dedup, full) = clean();
    dedup.push(rec(1, 2, 200));
    only(&run(&history(), &dedup, &full), "D (duplicates)");
}

// Proves O: an acknowledged record after a higher one of its test writer, and an
// unacknowledged writer's records out of Cairn order, are out of order.
#[test]
fn records_out_of_order_are_flagged_for_every_writer() {
    let (dedup, full) = clean();
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
    only(
        &run(&history(), &reorder(&dedup), &reorder(&full)),
        "O (order)",
    );

    // Writer 3 acknowledged nothing; its Cairn sequence 2 comes before 1.
    let mut h = history();
    for seq in 1..=2 {
        h.push(Entry {
            w: 3,
            seq,
            attempt: Some(0),
            t: None,
            op: Op::Invoke,
        });
    }
    let (mut dedup, mut full) = clean();
    let late = [rec(3, 2, 300), rec(3, 1, 400)];
    dedup.extend(late.clone());
    full.extend(late);
    only(&run(&h, &dedup, &full), "O (order)");
}

// Proves P: an acknowledgement at a place without its record is a position violation.
#[test]
fn an_ack_at_a_place_without_its_record_is_a_position_violation() {
    let (mut dedup, mut full) = clean();
    for r in dedup.iter_mut().chain(full.iter_mut()) {
        if r.offset == 96 {
            r.offset = 100;
        }
    }
    only(&run(&history(), &dedup, &full), "P (position)");
}

// Proves F: a record whose attempt was refused definitely must never be read.
#[test]
fn a_definitely_failed_record_that_is_read_is_flagged() {
    let (mut dedup, mut full) = clean();
    dedup.push(rec(2, 2, 160));
    full.push(rec(2, 2, 160));
    only(&run(&history(), &dedup, &full), "F (definite failure)");
}

// Proves K: a skipped range nobody expected is flagged, the expected number passes, and a
// missing expected skip is flagged too.
#[test]
fn skipped_ranges_are_counted_against_the_expected_number() {
    let (dedup, full) = clean();
    let skip = Event::Skipped {
        raw: r#"{"type":"skipped","chunk":0,"offset":300,"len":50}"#.into(),
    };
    let mut d = events(&dedup);
    let mut f = events(&full);
    d.push(skip.clone());
    f.push(skip);
    let h = history();
    let report = check(&Input::new(&h, &Names::Payloads, &d, &f));
    only(&report, "K (skipped)");
    assert_eq!(
        (report.skipped, report.violations["K (skipped)"].0),
        (1, 2),
        "{report}"
    );
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.expected_skips = 1;
    assert!(check(&input).violations.is_empty());
    let (d, f) = (events(&dedup), events(&full));
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.expected_skips = 1;
    only(&check(&input), "K (skipped)");
}

// Proves S: a record the deduplicated replay returned that a later replay lacks is unstable.
#[test]
fn a_record_an_earlier_replay_returned_must_stay() {
    let (dedup, full) = clean();
    let (d, f) = (events(&dedup), events(&full));
    let later = events(&[dedup[0].clone(), dedup[2].clone(), dedup[3].clone()]);
    let h = history();
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.later = Some(&later);
    let report = check(&input);
    // The later replay also lacks an acknowledged record a reader could have returned: S only,
    // since no reader ran.
    only(&report, "S (stability)");
}

fn reader(name: &str, started_ms: u64, end: ReaderEnd, records: &[Record]) -> ReaderRun {
    ReaderRun {
        name: name.into(),
        started_ms,
        end,
        events: events(records),
    }
}

// Proves R: a reader must hold every attempt acknowledged before it began (not those at or
// after its start), unless it failed with an error; a hung reader is a violation.
#[test]
fn a_reader_must_hold_every_record_acknowledged_before_it_began() {
    let (dedup, full) = clean();
    let (d, f) = (events(&dedup), events(&full));
    let h = history();
    let readers = [
        reader("whole", 31, ReaderEnd::Complete, &dedup),
        reader("early", 25, ReaderEnd::Complete, &dedup[..2]),
        reader("failed", 40, ReaderEnd::Failed("gave up".into()), &[]),
        reader("same ms", 10, ReaderEnd::Complete, &[]),
    ];
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.readers = &readers;
    let report = check(&input);
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(
        (
            report.readers,
            report.readers_failed,
            report.acks_checked_by_readers,
            report.reader_records
        ),
        (4, 1, 5, 6),
        "{report}"
    );

    let short = [dedup[0].clone(), dedup[2].clone()];
    let readers = [
        reader("short replay", 35, ReaderEnd::Complete, &short),
        reader("hung", 35, ReaderEnd::Hung("no end".into()), &[]),
    ];
    input.readers = &readers;
    let report = check(&input);
    only(&report, "R (read-after-ack)");
    assert_eq!(report.violations["R (read-after-ack)"].0, 2, "{report}");
    assert!(report.to_string().contains("(1, 2, 0)"), "{report}");
}

// Proves G: a record a reader returned that a later complete replay lacks is gone, even from a
// reader that failed afterwards.
#[test]
fn a_record_a_reader_returned_must_not_vanish() {
    let (mut dedup, mut full) = clean();
    let h = history();
    let readers = [reader(
        "during the fault",
        5,
        ReaderEnd::Failed("gave up".into()),
        &[dedup[3].clone()],
    )];
    dedup.pop();
    full.pop();
    let (d, f) = (events(&dedup), events(&full));
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.readers = &readers;
    let report = check(&input);
    only(&report, "G (read-then-gone)");
}

// Proves T: a stopped tail lacking acknowledged records after catching up violates tail
// progress; one holding all of them, or a failed one, does not.
#[test]
fn a_stopped_tail_must_hold_every_acknowledged_record() {
    let (dedup, full) = clean();
    let (d, f) = (events(&dedup), events(&full));
    let h = history();
    let readers = [
        reader("tail", 0, ReaderEnd::Stopped, &dedup),
        reader(
            "failed tail",
            0,
            ReaderEnd::Failed("log deleted".into()),
            &[],
        ),
    ];
    let mut input = Input::new(&h, &Names::Payloads, &d, &f);
    input.readers = &readers;
    assert!(check(&input).violations.is_empty());
    let readers = [reader("tail", 0, ReaderEnd::Stopped, &dedup[..1])];
    input.readers = &readers;
    let report = check(&input);
    only(&report, "T (tail progress)");
    assert!(report.to_string().contains("lacks 2 of the 3"), "{report}");
}

// Proves: append runs become a history whose acks, definite failures and indeterminate lines
// check like any other: a clean run passes with its counts, a refused line that is read is F.
#[test]
fn append_runs_check_as_a_history() {
    let runs = [append_run("a", "1", 2, &[]), append_run("b", "2", 1, &[])];
    let full = vec![
        record("1", 1, "a-1", 32),
        record("2", 1, "b-1", 32),
        record("1", 1, "a-1", 500),
        record("1", 2, "a-2", 64),
    ];
    let dedup = vec![full[0].clone(), full[1].clone(), full[3].clone()];
    let report = check_replays(&runs, &dedup, &full);
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(
        (
            report.attempted,
            report.acknowledged,
            report.replayed,
            report.duplicates_before,
            report.writers
        ),
        (3, 3, 3, 1, 2)
    );

    let mut runs = [append_run("a", "1", 2, &[2])];
    runs[0].definite_failure = true;
    let full = vec![record("1", 1, "a-1", 32), record("1", 2, "a-2", 64)];
    let report = check_replays(&runs, &full, &full);
    only(&report, "F (definite failure)");
    assert_eq!(report.recovered, 1);
}

fn output() -> Output {
    Output {
        label: "test".into(),
        status: ExitStatus::from_raw(0),
        timed_out: false,
        elapsed: Duration::ZERO,
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

/// A run of `n` lines `NAME-i`, acked as Cairn writer `w` with sequence = line at chunk 0,
/// offset 32 × line (lines in `unacked` get no ack).
fn append_run(name: &str, w: &str, n: usize, unacked: &[u64]) -> AppendRun {
    let lines = (1..=n)
        .map(|i| format!("{name}-{i}").into_bytes())
        .collect();
    let acks = (1..=n as u64)
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
    AppendRun::from_acks(name, lines, acks, output())
}

fn record(w: &str, seq: u64, payload: &str, offset: u64) -> Record {
    Record {
        chunk: 0,
        offset,
        writer: WriterId(w.into()),
        sequence: seq,
        payload: payload.as_bytes().to_vec(),
    }
}

fn check_replays(runs: &[AppendRun], dedup: &[Record], full: &[Record]) -> Report {
    let replay = |r: &[Record]| Replay {
        events: events(r),
        output: output(),
    };
    check_runs(runs, &replay(dedup), &replay(full))
}
