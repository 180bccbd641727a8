//! The master killed at its named crash points (`--test-crash-at POINT:N`: it aborts the N-th
//! time it reaches the point) and by a power cut (`--test-power-cut`, then SIGKILL): each time a
//! restarted master finishes or repairs what the dead one left half done, the appender rides
//! through, replay holds every acknowledged record once, and the log keeps taking appends.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use cairn_tests::contract::read_acks;
use cairn_tests::{AppendRun, Cluster, ClusterOpts, LogOpts, Role, check_runs, workload};

/// Small chunks (~150 records of 100–700 bytes each), so a short run rolls many chunks.
const CHUNK_BYTES: u64 = 64 << 10;

/// Records per append run: about ten chunks.
const RECORDS: usize = 1_500;

/// Records appended after the restart, to show the log keeps working.
const RECORDS_AFTER: usize = 300;

/// The pass through a crash point that aborts: the second, so that the dying master has
/// already sealed or allocated once and some records were acknowledged before it dies.
const PASS: u64 = 2;

/// Records acknowledged before the master dies (fewer than a chunk holds).
const ACKED_BEFORE_CRASH: usize = 50;

/// How long the master may take to reach its crash point once the appender runs.
const CRASH_TIMEOUT: Duration = Duration::from_secs(60);

/// Deadline of each append and replay command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Record sizes: 100–700 bytes.
fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

/// A cluster of 3 chunkservers with fast failure detection and one log of small chunks.
fn cluster_with_log(log: &str, master_args: &[&str]) -> Cluster {
    let mut opts = ClusterOpts::fast_failure_detection();
    opts.master_args.extend(
        ["--min-free-bytes", "0"]
            .iter()
            .chain(master_args)
            .map(|a| a.to_string()),
    );
    let cluster = Cluster::start(3, opts);
    cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    cluster
}

/// Appends `RECORDS_AFTER` more records, then checks every run against the log's replays and
/// that the log rolled past `chunks_at_least` chunks. Returns the number of chunks.
fn append_more_and_check(
    cluster: &mut Cluster,
    log: &str,
    mut runs: Vec<AppendRun>,
    seed: u64,
    chunks_at_least: usize,
) -> usize {
    let lines = workload::lines("after", RECORDS_AFTER, seed ^ 1, size);
    let after = cluster.append("after", log, lines, COMMAND_TIMEOUT);
    after.assert_all_acked();
    runs.push(after);
    let deduplicated = cluster.replay(log, false, COMMAND_TIMEOUT);
    let with_duplicates = cluster.replay(log, true, COMMAND_TIMEOUT);
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
    let acked: usize = runs.iter().map(|r| r.acks.len()).sum();
    assert_eq!(acked, RECORDS + RECORDS_AFTER);
    let chunks = cluster.stat(log).chunks.len();
    assert!(
        chunks >= chunks_at_least,
        "{log}: {chunks} chunks; the run should have rolled at least {chunks_at_least}"
    );
    cluster.assert_running();
    chunks
}

/// One crash-point run: the master is restarted with `--test-crash-at POINT:2`, an appender
/// writes `RECORDS` records across chunk rolls, some are acknowledged, the master aborts at the
/// point (checked: killed
/// by SIGABRT, and its stderr names the point), is restarted without the flag, the appender
/// finishes with every record acknowledged, more records go in, and the checker finds every
/// acknowledged record exactly once in replay.
fn crash_at(point: &str) {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed(&format!("master_crash_at_{point}"));
    let log = format!("/master-crash/{point}");
    let mut cluster = cluster_with_log(&log, &[]);
    // The crash point only for this run of the master: the cluster's start-up probes allocate
    // chunks too, and would count as passes.
    cluster.kill_master();
    let flag = format!("{point}:{PASS}");
    cluster.set_extra_args(Role::Master, &["--test-crash-at", &flag]);
    cluster.start_server(Role::Master);
    let lines = workload::lines("during", RECORDS, seed, size);
    let mut during = cluster.spawn_append(&log, &lines, COMMAND_TIMEOUT);
    // The first chunk's records are acknowledged before its seal and the next allocation, so
    // before the second pass through any of the points.
    read_acks(&mut during, ACKED_BEFORE_CRASH, CRASH_TIMEOUT);
    let status = cluster.wait_exit(Role::Master, CRASH_TIMEOUT);
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "the master should have aborted at {point}; it ended with {status}"
    );
    let line = format!("TEST CRASH POINT {point} reached (pass {PASS}); aborting");
    let stderr = cluster.server_stderr(Role::Master);
    assert!(
        stderr.contains(&line),
        "no {line:?} in the master's log:\n{stderr}"
    );
    cluster.set_extra_args::<&str>(Role::Master, &[]);
    cluster.restart_master();
    // The appender rode through the master's death: it must acknowledge everything.
    let run = AppendRun::from_output("during", lines, during.wait());
    run.assert_all_acked();
    let chunks = append_more_and_check(&mut cluster, &log, vec![run], seed, 4);
    eprintln!(
        "master_crash_points: {point}: {} records checked over {chunks} chunks in {:.1} s",
        RECORDS + RECORDS_AFTER,
        started.elapsed().as_secs_f64()
    );
}

/// Proves: a master that dies after logging a seal's new version and before fencing any
/// replica (`after-version-logged`) loses no acknowledged record: the restarted master
/// finishes the seal at the new version and the log goes on.
#[test]
fn master_crash_after_version_logged() {
    crash_at("after-version-logged");
}

/// Proves: a master that dies after the fences were answered and before any replica is
/// sealed (`after-fence`) loses no acknowledged record and leaves no chunk stuck.
#[test]
fn master_crash_after_fence() {
    crash_at("after-fence");
}

/// Proves: a master that dies after the replicas confirmed a seal but before the seal is in
/// its operation log (`before-seal-logged`) loses no acknowledged record: the restarted
/// master seals the chunk again at the same length.
#[test]
fn master_crash_before_seal_logged() {
    crash_at("before-seal-logged");
}

/// Proves: a master that dies in the middle of an allocation (logged, the secondaries'
/// replicas created, the primary's not, the chunk never handed out: `mid-allocation`) loses
/// no acknowledged record, and the half-made chunk does not stop the log.
#[test]
fn master_crash_mid_allocation() {
    crash_at("mid-allocation");
}

/// What the master logs at start in the power-cut test mode.
const POWER_CUT_LINE: &str = "TEST MODE: unsynced master writes live in memory";

/// Proves: with the master's unsynced writes held in memory (`--test-power-cut`), a SIGKILL
/// (what a power cut would lose) costs nothing the master acknowledged: a log created just
/// before the kill exists after the restart, and the appender, whose records span chunk rolls
/// the master logged, gets every record acknowledged and replayed once. The mode is checked to
/// be on (the master logs it at start).
#[test]
fn master_power_cut_loses_nothing_acknowledged() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("master_power_cut");
    let log = "/master-power-cut/log";
    let mut cluster = cluster_with_log(log, &["--test-power-cut"]);
    let stderr = cluster.server_stderr(Role::Master);
    assert!(
        stderr.contains(POWER_CUT_LINE),
        "the master is not in the power-cut mode; its log:\n{stderr}"
    );
    // A log whose creation was acknowledged, then the power goes at once.
    let created = "/master-power-cut/created-then-cut";
    cluster.create_log(created, LogOpts::chunk_bytes(CHUNK_BYTES));
    cluster.kill_master();
    cluster.restart_master();
    assert!(cluster.stat(created).chunks.is_empty());

    let lines = workload::lines("during", RECORDS, seed, size);
    let mut during = cluster.spawn_append(log, &lines, COMMAND_TIMEOUT);
    // Power cut in the middle of the run, after a few chunk rolls.
    read_acks(&mut during, RECORDS / 2, Duration::from_secs(30));
    assert!(
        !during.has_exited(),
        "the appender finished before the power cut: make the run longer"
    );
    cluster.kill_master();
    cluster.restart_master();
    let stderr = cluster.server_stderr(Role::Master);
    assert_eq!(stderr.matches(POWER_CUT_LINE).count(), 3, "three starts");
    let run = AppendRun::from_output("during", lines, during.wait());
    run.assert_all_acked();
    let chunks = append_more_and_check(&mut cluster, log, vec![run], seed, 4);
    eprintln!(
        "master_crash_points: power cut: {} records checked over {chunks} chunks in {:.1} s",
        RECORDS + RECORDS_AFTER,
        started.elapsed().as_secs_f64()
    );
}
