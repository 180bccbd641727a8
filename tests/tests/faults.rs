//! Process crashes and restarts: the master killed mid-run, a chunkserver restarted between
//! appends. Nothing acknowledged is lost, no metadata is lost, appends carry on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_tests::{
    AppendRun, ChunkStat, Cluster, ClusterOpts, LogOpts, check, wait_until, workload,
};

/// Sealed chunks by index: their persistent metadata (index, handle, state, length, version).
fn sealed_metadata(chunks: &[ChunkStat]) -> BTreeMap<u64, (u64, String, String, u64, u64)> {
    chunks
        .iter()
        .filter(|c| c.is_sealed())
        .map(|c| (c.index, c.metadata()))
        .collect()
}

/// Panics unless every chunk sealed in `before` is in `after` with the same metadata.
fn assert_sealed_kept(before: &[ChunkStat], after: &[ChunkStat], when: &str) {
    let before = sealed_metadata(before);
    let after_all: BTreeMap<u64, _> = after.iter().map(|c| (c.index, c.metadata())).collect();
    for (index, meta) in &before {
        assert_eq!(
            after_all.get(index),
            Some(meta),
            "{when}: sealed chunk {index} changed or vanished"
        );
    }
}

/// Proves that a master killed with SIGKILL in the middle of a run loses no log and no chunk
/// metadata (every chunk sealed before the kill is there afterwards, identical), that appends
/// resume (the running appender finishes, a new one succeeds) and that replay is complete.
///
/// How: one appender fills some chunks; a second `cairn append --json` with 6,000 records runs
/// into a log of 64 KiB chunks (a roll, which needs the master, every ~150 records); after 500 of
/// its acknowledgements the harness takes `stat --json` and `ls`, SIGKILLs the master, waits a
/// second and restarts it on the same port and data directory. The running appender must ride
/// through; then a third appender runs; the checker compares all three runs with the replays, and
/// the sealed chunks must regain their 3 replicas from chunkserver reports.
#[test]
fn master_killed_and_restarted_mid_run() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("master_killed");
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/faults/master";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let size = |rng: &mut workload::Rng, _| rng.range(100, 700);

    let mut runs = vec![cluster.append(
        "before",
        log,
        workload::lines("before", 1_000, seed, size),
        Duration::from_secs(60),
    )];
    runs[0].assert_all_acked();

    let during_lines = workload::lines("during", 6_000, seed + 1, size);
    let mut during = cluster.spawn_append(log, &during_lines, Duration::from_secs(150));
    for i in 0..500 {
        assert!(
            during.next_line(Duration::from_secs(30)).is_some(),
            "the appender stalled after {i} acknowledgements"
        );
    }
    let stat_before = cluster.stat(log);
    let ls_before = cluster.ls().stdout_str();
    assert!(ls_before.contains(log), "ls lists the log: {ls_before}");
    eprintln!(
        "master_killed: killing the master with {} chunks ({} sealed)",
        stat_before.chunks.len(),
        stat_before.sealed().len()
    );
    cluster.kill_master();
    std::thread::sleep(Duration::from_secs(1));
    let restarting = Instant::now();
    cluster.restart_master();
    eprintln!(
        "master_killed: master back and ready in {:.1} s",
        restarting.elapsed().as_secs_f64()
    );

    let stat_after = cluster.stat(log);
    assert_sealed_kept(&stat_before.chunks, &stat_after.chunks, "after the restart");
    assert!(
        stat_after.chunks.len() >= stat_before.chunks.len(),
        "chunks vanished: {} before, {} after",
        stat_before.chunks.len(),
        stat_after.chunks.len()
    );
    let ls_after = cluster.ls().stdout_str();
    assert!(
        ls_after.contains(log),
        "ls lists the log after the restart: {ls_after}"
    );

    runs.push(AppendRun::from_output(
        "during",
        during_lines,
        during.wait(),
    ));
    runs[1].assert_all_acked();
    runs.push(cluster.append(
        "after",
        log,
        workload::lines("after", 1_000, seed + 2, size),
        Duration::from_secs(60),
    ));
    runs[2].assert_all_acked();

    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check(&runs, &deduplicated, &with_duplicates).assert_ok();

    // Locations are not persisted: they come back from chunkserver reports.
    let mut all = cluster.chunkserver_addrs();
    all.sort();
    let stat_final = wait_until(
        "every sealed chunk has its 3 replicas again",
        Duration::from_secs(20),
        || {
            let stat = cluster.stat(log);
            stat.sealed()
                .iter()
                .all(|c| c.replicas == all)
                .then_some(stat)
        },
    );
    assert_sealed_kept(&stat_before.chunks, &stat_final.chunks, "at the end");
    eprintln!(
        "master_killed: {} chunks at the end; done in {:.1} s",
        stat_final.chunks.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Proves that a chunkserver restarted (SIGKILL, then started on the same port and data
/// directory) between appends recovers its chunks and reports them: `stat` lists it again among
/// the replicas of every chunk sealed before, with the same lengths and versions; appends then
/// continue and replay is complete.
///
/// How: 1,500 records into 64 KiB chunks (several sealed chunks, one open); SIGKILL chunkserver
/// 1 and restart it; wait until the cluster accepts a probe append on all three chunkservers and
/// `stat` shows the restarted one among the replicas; append 1,500 more records; check both runs
/// against the replays.
#[test]
fn chunkserver_restarted_between_appends() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("chunkserver_restarted");
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/faults/chunkserver";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let size = |rng: &mut workload::Rng, _| rng.range(100, 700);

    let mut runs = vec![cluster.append(
        "before",
        log,
        workload::lines("before", 1_500, seed, size),
        Duration::from_secs(60),
    )];
    runs[0].assert_all_acked();
    let stat_before = cluster.stat(log);
    assert!(
        stat_before.sealed().len() >= 3,
        "the first run fills several chunks: {:?}",
        stat_before.chunks
    );
    let restarted = cluster.chunkserver_addr(1);
    eprintln!(
        "chunkserver_restarted: restarting {restarted} with {} chunks ({} sealed)",
        stat_before.chunks.len(),
        stat_before.sealed().len()
    );
    let restarting = Instant::now();
    cluster.restart_chunkserver(1);
    let stat_after = wait_until(
        "the restarted chunkserver is listed among the replicas of every sealed chunk",
        Duration::from_secs(20),
        || {
            let stat = cluster.stat(log);
            let sealed_before = sealed_metadata(&stat_before.chunks);
            stat.chunks
                .iter()
                .filter(|c| sealed_before.contains_key(&c.index))
                .all(|c| c.replicas.contains(&restarted))
                .then_some(stat)
        },
    );
    eprintln!(
        "chunkserver_restarted: back and reported in {:.1} s",
        restarting.elapsed().as_secs_f64()
    );
    assert_sealed_kept(&stat_before.chunks, &stat_after.chunks, "after the restart");

    runs.push(cluster.append(
        "after",
        log,
        workload::lines("after", 1_500, seed + 1, size),
        Duration::from_secs(60),
    ));
    runs[1].assert_all_acked();
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check(&runs, &deduplicated, &with_duplicates).assert_ok();

    let mut all = cluster.chunkserver_addrs();
    all.sort();
    let stat_final = cluster.stat(log);
    for chunk in stat_final.sealed() {
        assert_eq!(
            chunk.replicas, all,
            "sealed chunk without its 3 replicas: {chunk:?}"
        );
    }
    assert_sealed_kept(&stat_before.chunks, &stat_final.chunks, "at the end");
    eprintln!(
        "chunkserver_restarted: {} chunks at the end; done in {:.1} s",
        stat_final.chunks.len(),
        started.elapsed().as_secs_f64()
    );
}
