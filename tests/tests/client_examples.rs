//! The client library's example programs (`client/examples/`), run as a user runs them against
//! a real cluster: what they print is checked, so an example that stops working, or starts
//! saying something false, fails here.

use std::path::Path;
use std::time::Duration;

use cairn_tests::{Cluster, ClusterOpts, Cmd, Output, client_example};

/// Deadline of one example run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The example `name` with `args`, against `cluster`'s master.
fn example(cluster: &Cluster, name: &str, args: &[&str]) -> Cmd {
    Cmd::new(client_example(name))
        .args(args.iter().copied())
        .args(["--master".to_owned(), cluster.master_addr()])
        .timeout(RUN_TIMEOUT)
}

/// One record line of the `replay` and `tail` examples,
/// `WRITER:SEQUENCE chunk C offset O: PAYLOAD`: (writer, sequence, payload).
fn record(line: &str) -> (String, u64, String) {
    let parsed = line.split_once(": ").and_then(|(meta, payload)| {
        let (writer, sequence) = meta.split(' ').next()?.split_once(':')?;
        Some((
            writer.to_owned(),
            sequence.parse().ok()?,
            payload.to_owned(),
        ))
    });
    parsed.unwrap_or_else(|| panic!("not a record line: {line:?}"))
}

/// Every record line of a `replay` or `tail` run's stdout.
fn records(out: &Output) -> Vec<(String, u64, String)> {
    out.stdout_str().lines().map(record).collect()
}

/// `"<prefix> i"` for i in `range`: the payloads the `append` and `resume` examples write.
fn payloads(prefix: &str, range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

/// The counts of the `resume` example's summary line: (sent, stored now, acknowledged as
/// already stored, already stored too long ago to compare, failed).
fn resume_counts(out: &Output) -> (u64, u64, u64, u64, u64) {
    let stdout = out.stdout_str();
    let line = stdout
        .lines()
        .find(|l| l.contains("records sent:"))
        .unwrap_or_else(|| panic!("no summary line: {out:?}"));
    let numbers: Vec<u64> = line
        .split_once("records sent:")
        .map(|(before, after)| {
            let sent = before
                .split_whitespace()
                .last()
                .and_then(|n| n.parse().ok());
            let rest = after
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok());
            sent.into_iter().chain(rest).collect()
        })
        .unwrap_or_default();
    match numbers[..] {
        [sent, stored, found, not_compared, failed] => (sent, stored, found, not_compared, failed),
        _ => panic!("unexpected summary line: {line:?}"),
    }
}

/// The writer id the `resume` example's first line names (`writer W read from …` or `writer W
/// new, saved in …`), and which of the two it said.
fn resume_writer(out: &Output) -> (String, bool) {
    let stdout = out.stdout_str();
    let first = stdout.lines().next().unwrap_or_default();
    let mut words = first.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("writer"), Some(writer), Some(how)) => (writer.to_owned(), how == "read"),
        _ => panic!("unexpected first line: {out:?}"),
    }
}

/// Proves: the client library's four examples do what their doc comments say, against a real
/// cluster of 1 master and 3 chunkservers:
/// - `append` creates a missing log and appends 100 records, acknowledging each once;
/// - `replay` returns exactly those records, in order, under one writer, and its counts;
/// - `tail --count 150` (from the log's start) prints the 100, then the 50 records appended
///   after it had started, in order, and exits by itself; a `tail` without `--count` stops on
///   SIGINT (Ctrl-C), exiting 0; `tail --from-end` prints none of the log's earlier records;
/// - `resume` run twice with one id file appends as one writer (the id made and saved by the
///   first run, read by the second), and the second run's re-sent records are not stored
///   again: a replay keeping every stored copy shows sequences 1–50 once each.
#[test]
fn the_client_examples_work_against_a_cluster() {
    let _serial = cairn_tests::serial();
    // Located (and built, if they are missing or stale) before the cluster starts.
    for name in ["append", "replay", "tail", "resume"] {
        client_example(name);
    }
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/examples/events";

    let out = example(
        &cluster,
        "append",
        &[log, "--count", "100", "--prefix", "first", "--acks"],
    )
    .run_ok();
    let stdout = out.stdout_str();
    assert!(stdout.contains(&format!("created {log}")), "{out:?}");
    assert!(
        stdout.contains(&format!("appended 100 of 100 records to {log}")),
        "{out:?}"
    );
    let acks: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("record "))
        .collect();
    assert_eq!(acks.len(), 100, "{out:?}");
    assert!(acks.iter().all(|l| l.contains(" at chunk ")), "{out:?}");

    let out = example(&cluster, "replay", &[log]).run_ok();
    let replayed = records(&out);
    let got: Vec<String> = replayed.iter().map(|r| r.2.clone()).collect();
    assert_eq!(got, payloads("first", 1..=100), "{out:?}");
    let sequences: Vec<u64> = replayed.iter().map(|r| r.1).collect();
    assert_eq!(sequences, (1..=100).collect::<Vec<_>>());
    assert!(replayed.iter().all(|r| r.0 == replayed[0].0), "one writer");
    assert!(out.stderr_str().contains("100 records ("), "{out:?}");

    let mut tail = example(&cluster, "tail", &[log, "--count", "150"]).spawn();
    // Its first line (the log's first record) says it is reading: the records appended from
    // now on are appended after it started.
    let Some(first) = tail.next_line(Duration::from_secs(30)) else {
        panic!("tail printed nothing: {:?}", tail.kill());
    };
    assert_eq!(
        record(String::from_utf8_lossy(&first).trim_end()).2,
        "first 1"
    );
    example(
        &cluster,
        "append",
        &[log, "--count", "50", "--prefix", "late"],
    )
    .run_ok();
    let out = tail.wait();
    out.assert_success();
    let mut expected = payloads("first", 1..=100);
    expected.extend(payloads("late", 1..=50));
    let got: Vec<String> = records(&out).into_iter().map(|r| r.2).collect();
    assert_eq!(got, expected, "{out:?}");

    // Ctrl-C: once it has printed a record, the tail has its handler installed.
    let mut tail = example(&cluster, "tail", &[log]).spawn();
    if tail.next_line(Duration::from_secs(30)).is_none() {
        panic!("tail printed nothing: {:?}", tail.kill());
    }
    let pid = libc::pid_t::try_from(tail.pid()).expect("a pid");
    // SAFETY: kill(2) of the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = tail.wait();
    out.assert_success();
    assert!(out.stderr_str().contains("interrupted"), "{out:?}");

    // From the end: the first record it prints is one appended after it started, never one of
    // the log's 150 earlier records. It cannot say when it has started, so records are
    // appended one at a time until it prints one.
    let mut tail = example(&cluster, "tail", &[log, "--from-end", "--count", "1"]).spawn();
    let mut printed = None;
    for n in 1..=40 {
        let probe = format!("probe-{n}");
        example(
            &cluster,
            "append",
            &[log, "--count", "1", "--prefix", &probe],
        )
        .run_ok();
        if let Some(line) = tail.next_line(Duration::from_millis(500)) {
            printed = Some(record(String::from_utf8_lossy(&line).trim_end()).2);
            break;
        }
    }
    let out = tail.wait();
    out.assert_success();
    let printed = printed.unwrap_or_else(|| panic!("tail --from-end printed nothing: {out:?}"));
    assert!(printed.starts_with("probe-"), "{printed:?}: {out:?}");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let id_file = dir.path().join("writer-id");
    let resume = |count: &str| {
        let id = id_file.to_str().expect("a UTF-8 path");
        let args = [
            "/examples/resumed",
            "--id-file",
            id,
            "--count",
            count,
            "--prefix",
            "order",
        ];
        example(&cluster, "resume", &args).run_ok()
    };
    let first_run = resume("30");
    let (writer, read) = resume_writer(&first_run);
    assert!(!read, "the first run makes the id: {first_run:?}");
    assert_eq!(saved_id(&id_file), writer);
    let (sent, stored, found, not_compared, failed) = resume_counts(&first_run);
    assert_eq!(
        (sent, stored + found, not_compared, failed),
        (30, 30, 0, 0),
        "{first_run:?}"
    );

    let second_run = resume("50");
    assert_eq!(resume_writer(&second_run), (writer.clone(), true));
    let (sent, stored, found, not_compared, failed) = resume_counts(&second_run);
    assert_eq!((sent, failed), (50, 0), "{second_run:?}");
    assert_eq!(stored + found + not_compared, 50, "{second_run:?}");
    assert!(
        found + not_compared >= 30,
        "the first run's 30 records were found stored: {second_run:?}"
    );

    let out = example(
        &cluster,
        "replay",
        &["/examples/resumed", "--keep-duplicates"],
    )
    .run_ok();
    let replayed = records(&out);
    assert!(replayed.iter().all(|r| r.0 == writer), "{out:?}");
    let sequences: Vec<u64> = replayed.iter().map(|r| r.1).collect();
    assert_eq!(
        sequences,
        (1..=50).collect::<Vec<_>>(),
        "every record stored once: {out:?}"
    );
    let got: Vec<String> = replayed.into_iter().map(|r| r.2).collect();
    assert_eq!(got, payloads("order", 1..=50));
}

/// The writer id the `resume` example saved in `path`.
fn saved_id(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}
