//! Process crashes, restarts and pauses: the master killed mid-run, a chunkserver restarted
//! between appends, a chunkserver killed or paused mid-run. Nothing acknowledged is lost, no
//! metadata is lost, appends carry on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_tests::contract::read_acks;
use cairn_tests::{
    AppendRun, ChunkStat, Cluster, ClusterOpts, LogOpts, Role, check_runs, wait_until, workload,
};

/// The length of a chunk holding no record: its header.
const EMPTY_CHUNK_BYTES: u64 = 32;

/// Sealed chunks by index: their persistent metadata (index, handle, state, length, version).
fn sealed_metadata(chunks: &[ChunkStat]) -> BTreeMap<u64, (u64, String, String, u64, u64)> {
    chunks
        .iter()
        .filter(|c| c.is_sealed())
        .map(|c| (c.index, c.metadata()))
        .collect()
}

/// Panics unless every chunk sealed in `before` is in `after` with the same metadata, and every
/// chunk of `before` keeps its handle and does not lose version.
fn assert_sealed_kept(before: &[ChunkStat], after: &[ChunkStat], when: &str) {
    let after_all: BTreeMap<u64, &ChunkStat> = after.iter().map(|c| (c.index, c)).collect();
    for (index, meta) in &sealed_metadata(before) {
        assert_eq!(
            after_all.get(index).map(|c| c.metadata()).as_ref(),
            Some(meta),
            "{when}: sealed chunk {index} changed or vanished"
        );
    }
    for chunk in before {
        let later = after_all
            .get(&chunk.index)
            .unwrap_or_else(|| panic!("{when}: chunk {} vanished", chunk.index));
        assert_eq!(
            later.handle, chunk.handle,
            "{when}: chunk {} changed handle",
            chunk.index
        );
        assert!(
            later.version >= chunk.version,
            "{when}: chunk {} went from version {} back to {}",
            chunk.index,
            chunk.version,
            later.version
        );
    }
}

/// The cluster's chunkserver addresses, sorted like `stat`'s replica lists.
fn all_chunkservers(cluster: &Cluster) -> Vec<String> {
    let mut all = cluster.chunkserver_addrs();
    all.sort();
    all
}

/// Record sizes of the fault tests: 100–700 bytes, so a 64 KiB chunk holds ~150 records.
fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

/// Proves that a master killed with SIGKILL in the middle of a run, three times, loses no log and
/// no chunk metadata (every chunk sealed before a kill is there afterwards, identical; no chunk
/// changes handle or loses version), that appends resume (the running appender rides through
/// every outage and finishes, a new one succeeds) and that replay is complete.
///
/// How: one appender fills some chunks; a second `cairn append --json` with 20,000 records runs
/// into a log of 64 KiB chunks (a roll, which needs the master, every ~150 records). Three times,
/// after another 2,500 of its acknowledgements (and while it still runs), the harness takes
/// `stat --json` and `ls`, SIGKILLs the master, waits half a second, restarts it on the same port
/// and data directory, waits for a probe append, and compares `stat`. Then a third appender runs;
/// the checker compares all three runs with the replays, and the sealed chunks holding records
/// must regain their 3 replicas from chunkserver reports.
#[test]
fn master_killed_and_restarted_mid_run() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("master_killed");
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/faults/master";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));

    let mut runs = vec![cluster.append(
        "before",
        log,
        workload::lines("before", 1_000, seed, size),
        Duration::from_secs(60),
    )];
    runs[0].assert_all_acked();

    let during_lines = workload::lines("during", 20_000, seed + 1, size);
    let mut during = cluster.spawn_append(log, &during_lines, Duration::from_secs(180));
    let mut stats = vec![cluster.stat(log)];
    for kill in 1..=3 {
        read_acks(&mut during, 2_500, Duration::from_secs(30));
        assert!(
            !during.has_exited(),
            "the appender finished before kill {kill}: make the run longer"
        );
        let stat_before = cluster.stat(log);
        let ls_before = cluster.ls().stdout_str();
        assert!(ls_before.contains(log), "ls lists the log: {ls_before}");
        eprintln!(
            "master_killed: kill {kill} with {} chunks ({} sealed)",
            stat_before.chunks.len(),
            stat_before.sealed().len()
        );
        cluster.kill_master();
        std::thread::sleep(Duration::from_millis(500));
        let restarting = Instant::now();
        cluster.restart_master();
        eprintln!(
            "master_killed: master back and ready in {:.1} s",
            restarting.elapsed().as_secs_f64()
        );
        let stat_after = cluster.stat(log);
        assert_sealed_kept(&stat_before.chunks, &stat_after.chunks, "after a restart");
        let ls_after = cluster.ls().stdout_str();
        assert!(
            ls_after.contains(log),
            "ls lists the log after a restart: {ls_after}"
        );
        stats.push(stat_before);
        stats.push(stat_after);
    }

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
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();

    // Locations are not persisted: they come back from chunkserver reports. A chunk whose
    // allocation the master logged just before a kill may have reached only some chunkservers
    // (CreateReplica goes out after the log entry); the first append then fails, and the seal
    // closes it empty on the replicas that exist. So only chunks holding data must have all 3.
    let all = all_chunkservers(&cluster);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stat_final = loop {
        let stat = cluster.stat(log);
        let short: Vec<&ChunkStat> = stat
            .sealed()
            .into_iter()
            .filter(|c| c.length > EMPTY_CHUNK_BYTES && c.replicas != all)
            .collect();
        if short.is_empty() {
            break stat;
        }
        assert!(
            Instant::now() < deadline,
            "sealed chunks still without their 3 replicas after 20 s ({} of {}): {short:#?}",
            short.len(),
            stat.sealed().len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for stat in &stats {
        assert_sealed_kept(&stat.chunks, &stat_final.chunks, "at the end");
    }
    let empty: Vec<(u64, usize)> = stat_final
        .sealed()
        .iter()
        .filter(|c| c.length <= EMPTY_CHUNK_BYTES)
        .map(|c| (c.index, c.replicas.len()))
        .collect();
    eprintln!("master_killed: empty sealed chunks (index, replicas): {empty:?}");
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
    let sealed_before = sealed_metadata(&stat_before.chunks);
    let stat_after = wait_until(
        "the restarted chunkserver is listed among the replicas of every sealed chunk",
        Duration::from_secs(20),
        || {
            let stat = cluster.stat(log);
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
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();

    let all = all_chunkservers(&cluster);
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

/// Proves that a chunkserver killed with SIGKILL in the middle of a run and restarted a second
/// later costs no acknowledged record: the running appender rides through (its in-flight batches
/// fail, the client seals and retries on a new chunk once three chunkservers are live again), and
/// replay returns everything. Also that every chunk sealed before the kill keeps its metadata, and
/// every sealed chunk ends with at least 2 replicas (a chunk sealed while the chunkserver was down
/// may legitimately lack its copy).
///
/// How: `cairn append --json` with 12,000 records into 64 KiB chunks; after 2,000 acks SIGKILL
/// chunkserver 2, sleep 1 s, start it again; the appender must exit 0 having acked every line; the
/// checker runs over the replays.
#[test]
fn chunkserver_killed_mid_run_and_restarted() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("chunkserver_killed_mid_run");
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/faults/chunkserver-mid-run";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let lines = workload::lines("during", 12_000, seed, size);
    let mut during = cluster.spawn_append(log, &lines, Duration::from_secs(150));
    read_acks(&mut during, 2_000, Duration::from_secs(30));
    assert!(
        !during.has_exited(),
        "the appender finished before the kill"
    );
    let stat_before = cluster.stat(log);
    cluster.kill_chunkserver(2);
    std::thread::sleep(Duration::from_secs(1));
    let restarting = Instant::now();
    cluster.restart_chunkserver(2);
    eprintln!(
        "chunkserver_killed_mid_run: back and ready in {:.1} s",
        restarting.elapsed().as_secs_f64()
    );
    let run = AppendRun::from_output("during", lines, during.wait());
    eprintln!(
        "chunkserver_killed_mid_run: appender: {}",
        run.output.stderr_str().trim()
    );
    run.assert_all_acked();
    let runs = vec![run];
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
    let stat_final = cluster.stat(log);
    assert_sealed_kept(&stat_before.chunks, &stat_final.chunks, "at the end");
    let short: Vec<&ChunkStat> = stat_final
        .sealed()
        .into_iter()
        .filter(|c| c.replicas.len() < 3)
        .collect();
    assert!(
        short.iter().all(|c| c.replicas.len() >= 2),
        "sealed chunks with fewer than 2 replicas: {short:?}"
    );
    eprintln!(
        "chunkserver_killed_mid_run: {} chunks, {} sealed with fewer than 3 replicas; done in \
         {:.1} s",
        stat_final.chunks.len(),
        short.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Proves that a chunkserver paused (SIGSTOP) for 1.5 s in the middle of a run — shorter than
/// every RPC timeout — only stalls appends: after SIGCONT the appender finishes with every record
/// acknowledged, and replay returns them all once, in order.
///
/// How: `cairn append --json` with 8,000 records into 64 KiB chunks; after 1,500 acks SIGSTOP
/// chunkserver 1 for 1.5 s, then SIGCONT; the checker runs over the replays.
#[test]
fn chunkserver_paused_briefly_mid_run() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("chunkserver_paused");
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/faults/paused";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let lines = workload::lines("during", 8_000, seed, size);
    let mut during = cluster.spawn_append(log, &lines, Duration::from_secs(120));
    read_acks(&mut during, 1_500, Duration::from_secs(30));
    assert!(
        !during.has_exited(),
        "the appender finished before the pause"
    );
    cluster.pause(Role::Chunkserver(1));
    std::thread::sleep(Duration::from_millis(1_500));
    cluster.resume(Role::Chunkserver(1));
    let run = AppendRun::from_output("during", lines, during.wait());
    run.assert_all_acked();
    let runs = vec![run];
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
    cluster.assert_running();
    eprintln!(
        "chunkserver_paused: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
