//! Bad input: records over the limit, unknown logs, an unreachable master, bad flags, and garbage
//! on every gRPC port. Each gets a clear error (or a closed connection); the servers stay up and
//! nothing acknowledged is lost.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use cairn_tests::garbage::{self, Answer};
use cairn_tests::{AppendRun, Cluster, ClusterOpts, Cmd, LogOpts, Output, check_runs, workload};

/// Panics unless `out` is a clean non-zero exit whose stderr is a short, clear error (no panic,
/// no backtrace) mentioning each of `mentions` (case-insensitively).
fn assert_clear_error(out: &Output, mentions: &[&str]) {
    out.assert_clean_failure();
    let stderr = out.stderr_str();
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("stack backtrace"),
        "a panic instead of an error: {out:?}"
    );
    let lines = stderr.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        (1..=3).contains(&lines),
        "expected one clear error line, got {lines}: {out:?}"
    );
    for m in mentions {
        assert!(
            lower.contains(&m.to_lowercase()),
            "the error does not mention {m:?}: {out:?}"
        );
    }
    eprintln!("bad_input: `{}` → {}", out.label, stderr.trim());
}

/// Proves that bad input gets clear errors and harms nothing: a record one byte over the limit
/// is refused with an error naming the limit (and never stored), a record exactly at the limit is
/// accepted; appending to, replaying or stating an unknown log is an error naming it; an
/// unreachable master and bad flags are clean errors; garbage on each gRPC port (random bytes,
/// an HTTP/1 request, a truncated HTTP/2 preface, junk HTTP/2 frames, a gRPC message claiming
/// 4 GiB, a gRPC body that is not protobuf, idle connections) leaves every server up, appends and
/// replay work afterwards, and no acknowledged record is lost.
///
/// How: the `cairn` CLI for the errors (exit status and stderr checked), raw TCP for the garbage;
/// then `assert_running` on every process, a new append, and the checker over all runs.
#[test]
fn bad_input_gets_clear_errors_and_servers_stay_up() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("bad_input");
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    const CHUNK_BYTES: u64 = 64 << 10;
    const LIMIT: usize = (CHUNK_BYTES / 4) as usize;
    let log = "/bad/input";
    cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    let size = |rng: &mut workload::Rng, _| rng.range(10, 2_000);
    let mut runs = vec![cluster.append(
        "first",
        log,
        workload::lines("first", 300, seed, size),
        Duration::from_secs(60),
    )];
    runs[0].assert_all_acked();

    // A record one byte over the limit: refused, the limit named, nothing acknowledged.
    let mut rng = workload::Rng::new(seed);
    let over = cluster.append(
        "over",
        log,
        vec![workload::line("over", 1, LIMIT + 1, &mut rng)],
        Duration::from_secs(30),
    );
    assert_clear_error(&over.output, &[&LIMIT.to_string()]);
    assert!(
        over.acks.is_empty(),
        "an over-limit record was acked: {:?}",
        over.acks
    );
    let mut over = over;
    over.definite_failure = true;
    runs.push(over);
    // Exactly at the limit: accepted.
    let at = cluster.append(
        "at-limit",
        log,
        vec![workload::line("at", 1, LIMIT, &mut rng)],
        Duration::from_secs(30),
    );
    at.assert_all_acked();
    runs.push(at);

    // Unknown logs.
    let unknown = "/bad/no-such-log";
    assert_clear_error(
        &cluster
            .cairn(&["append", unknown])
            .stdin("x\n")
            .timeout(Duration::from_secs(30))
            .run(),
        &[unknown],
    );
    assert_clear_error(
        &cluster
            .cairn(&["replay", unknown])
            .timeout(Duration::from_secs(30))
            .run(),
        &[unknown],
    );
    assert_clear_error(
        &cluster
            .cairn(&["stat", unknown, "--json"])
            .timeout(Duration::from_secs(30))
            .run(),
        &[unknown],
    );
    assert_clear_error(
        &cluster
            .cairn(&["tail", unknown])
            .timeout(Duration::from_secs(30))
            .run(),
        &[unknown],
    );
    // An unreachable master: an error within the deadline, not a hang.
    let nobody = cairn_tests::cluster::free_addr().to_string();
    assert_clear_error(
        &Cmd::new(cairn_tests::cairn_bin())
            .args(["ls", "--master", &nobody])
            .timeout(Duration::from_secs(45))
            .run(),
        &[],
    );
    // Bad flags.
    assert_clear_error(
        &cluster
            .cairn(&["create", "/bad/flags", "--replication", "three"])
            .run(),
        &[],
    );
    assert_clear_error(
        &cluster
            .cairn(&["create", "/bad/flags", "--chunk-size", "12"])
            .run(),
        &[],
    );

    // Garbage on every gRPC port.
    for (name, addr) in cluster.grpc_addrs() {
        let service = if name == "master" {
            "/cairn.v1.Master/OpenChunk"
        } else {
            "/cairn.v1.Chunkserver/Append"
        };
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "64 KiB of random bytes",
                garbage::random_bytes(64 << 10, &mut rng),
                true,
            ),
            ("an HTTP/1.1 request", garbage::http1_request(), false),
            (
                "a truncated HTTP/2 preface",
                garbage::truncated_h2_preface(),
                true,
            ),
            (
                "junk HTTP/2 frames",
                garbage::h2_preface_then_junk_frames(&mut rng),
                true,
            ),
            (
                "a gRPC message claiming 4 GiB",
                garbage::grpc_request(service, u32::MAX, b"short"),
                false,
            ),
            (
                "a gRPC body that is not protobuf",
                garbage::grpc_request(service, 9, &[0xff; 9]),
                false,
            ),
        ];
        for (what, bytes, shutdown) in cases {
            let answer: Answer = garbage::send(addr, &bytes, shutdown).unwrap_or_else(|e| {
                panic!("{name} ({addr}) refused a connection before {what}: {e}")
            });
            eprintln!(
                "bad_input: {name} got {what}: answered {} bytes{}",
                answer.bytes.len(),
                if answer.closed { ", closed" } else { "" }
            );
            cluster.assert_running();
        }
    }
    // Idle connections held open while a client works.
    let idle: Vec<TcpStream> = cluster
        .grpc_addrs()
        .iter()
        .flat_map(|(_, addr)| (0..10).map(move |_| *addr))
        .map(|addr| TcpStream::connect(addr).expect("connect an idle connection"))
        .collect();

    let after = cluster.append(
        "after",
        log,
        workload::lines("after", 300, seed + 1, size),
        Duration::from_secs(60),
    );
    after.assert_all_acked();
    runs.push(after);
    drop(idle);
    cluster.assert_running();

    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    let report = check_runs(&runs, &deduplicated, &with_duplicates);
    report.assert_ok();
    assert_eq!(report.replayed, 300 + 1 + 300);
    eprintln!(
        "bad_input: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Proves that a failed append run's records are accounted for: a run whose input holds an
/// over-limit record among good ones exits non-zero, and whatever it acknowledged is replayed.
///
/// How: `append --json` fed good, over-limit, good lines; the checker then runs over it with the
/// over-limit line required absent (F) and every acked line present (L).
#[test]
fn over_limit_record_among_good_ones() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("over_limit_among_good");
    let cluster = Cluster::start(3, ClusterOpts::default());
    const CHUNK_BYTES: u64 = 16 << 10;
    const LIMIT: usize = (CHUNK_BYTES / 4) as usize;
    let log = "/bad/mixed";
    cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    let mut rng = workload::Rng::new(seed);
    let lines = vec![
        workload::line("mixed", 1, 100, &mut rng),
        workload::line("mixed", 2, LIMIT + 1, &mut rng),
        workload::line("mixed", 3, 100, &mut rng),
    ];
    let run: AppendRun = cluster.append("mixed", log, lines, Duration::from_secs(30));
    run.output.assert_clean_failure();
    assert!(
        !run.acks.iter().any(|a| a.line == 2),
        "the over-limit line was acked: {:?}",
        run.acks
    );
    eprintln!(
        "over_limit_among_good: acked lines {:?}; stderr: {}",
        run.acks.iter().map(|a| a.line).collect::<Vec<_>>(),
        run.output.stderr_str().trim()
    );
    let deduplicated = cluster.replay(log, false, Duration::from_secs(30));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(30));
    let report = check_runs(&[run], &deduplicated, &with_duplicates);
    report.assert_ok();
    assert!(
        !deduplicated.payloads().iter().any(|p| p.len() > LIMIT),
        "an over-limit record is in the log"
    );
}
