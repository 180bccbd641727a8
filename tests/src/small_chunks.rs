//! A cluster of small chunks for the disk-fault tests: 1 master (heartbeat 200 ms, dead after
//! 1 s, no free-space margin) and 4 chunkservers, logs of 64 KiB chunks holding ~150 records of
//! 100–700 bytes each, and the checks those tests share.

use std::time::Duration;

use crate::{AppendRun, Cluster, ClusterOpts, LogStat, Role, check_runs, wait_until, workload};

/// The length of a chunk holding no record: its header.
pub const EMPTY_CHUNK_BYTES: u64 = 32;

/// Small chunks, so that a short run seals several and chunks roll all the time.
pub const CHUNK_BYTES: u64 = 64 << 10;

/// Record sizes: 100–700 bytes, so a 64 KiB chunk holds ~150 records.
pub fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

/// 1 master (heartbeat 200 ms, dead after 1 s, free-space margin 0: a chunkserver needs just one
/// chunk's capacity free) and 4 chunkservers, so a replaced replica has a fourth to go to.
pub fn cluster() -> Cluster {
    let mut opts = ClusterOpts::fast_failure_detection();
    opts.master_args
        .extend(["--min-free-bytes", "0"].map(String::from));
    Cluster::start(4, opts)
}

/// Replays `log` (with and without duplicates) and checks `runs` against it; `label` names the
/// test in the output.
pub fn check_log(label: &str, cluster: &Cluster, log: &str, runs: &[AppendRun]) {
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    eprintln!(
        "{label}: {log}: replay returned {} records",
        deduplicated.records().count()
    );
    check_runs(runs, &deduplicated, &with_duplicates).assert_ok();
}

/// Waits up to `timeout` until every sealed chunk of `log` holding records lists three good
/// replicas.
pub fn wait_three_good(cluster: &Cluster, log: &str, timeout: Duration) -> LogStat {
    wait_until("three good replicas of every sealed chunk", timeout, || {
        let stat = cluster.stat(log);
        let short = stat
            .sealed()
            .iter()
            .filter(|c| c.length > EMPTY_CHUNK_BYTES && c.replicas.len() < 3)
            .count();
        (short == 0).then_some(stat)
    })
}

/// How many times `needle` occurs in chunkserver `i`'s log.
pub fn log_count(cluster: &Cluster, i: usize, needle: &str) -> usize {
    cluster
        .server_stderr(Role::Chunkserver(i))
        .matches(needle)
        .count()
}
