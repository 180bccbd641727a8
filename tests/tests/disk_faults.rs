//! Injected disk faults on one real chunkserver of four (its hidden `--test-…` disk flags):
//! fsync EIO once, a full disk, EIO on reads of its replicas. Nothing acknowledged is lost,
//! failed replicas are replaced, a full chunkserver gets no new chunks, and replay reads around
//! a replica that cannot be read.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_tests::small_chunks::{
    CHUNK_BYTES, EMPTY_CHUNK_BYTES, check_log, cluster, log_count, size, wait_three_good,
};
use cairn_tests::{AppendRun, Cmd, LogOpts, Role};
use cairn_tests::{wait_until, workload};

/// Proves that an fsync that fails once (EIO) on one chunkserver during appends costs no
/// acknowledged record, and that the replica it failed is replaced: afterwards every sealed chunk
/// has three good replicas.
///
/// How: chunkserver 0 restarted with `--test-fail-fsync-after 20`; one appender writes 3,000
/// records into 64 KiB chunks (~20 chunks, chunkserver 0 in most of them). The appender must end
/// with every record acknowledged (the primary fails the append in flight, the client seals and
/// retries on the next chunk); chunkserver 0 must have logged the injected EIO and the replica
/// failure; `stat` must then show three good replicas of every sealed chunk within 60 s; replay
/// must return every acknowledged record.
#[test]
fn fsync_eio_once_fails_the_replica_and_it_is_replaced() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("disk_faults_fsync");
    let mut cluster = cluster();
    cluster.restart_chunkserver_with(0, &["--test-fail-fsync-after", "20"]);
    assert_eq!(
        log_count(&cluster, 0, "TEST MODE: injecting disk faults"),
        1
    );
    let log = "/disk/fsync";
    cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    let started = Instant::now();
    let runs = vec![cluster.append(
        "fsync",
        log,
        workload::lines("fsync", 3_000, seed, size),
        Duration::from_secs(120),
    )];
    runs[0].assert_all_acked();
    eprintln!(
        "disk_faults: 3,000 records acknowledged in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        log_count(&cluster, 0, "TEST FAULT: injected fsync EIO"),
        1,
        "the fault fired exactly once"
    );
    assert!(
        log_count(&cluster, 0, "replica failed") >= 1,
        "the store failed the replica"
    );
    let stat = wait_three_good(&cluster, log, Duration::from_secs(60));
    eprintln!(
        "disk_faults: {} sealed chunks at three good replicas {:.1} s after the appends began",
        stat.sealed().len(),
        started.elapsed().as_secs_f64()
    );
    check_log("disk_faults", &cluster, log, &runs);
}

/// Panics unless `cairn inspect` finds every chunk file under `data_dir` clean (no corrupt
/// range, no torn tail). Returns how many files it checked.
fn assert_chunk_files_clean(data_dir: &Path) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(data_dir.join("chunks")).expect("the chunks directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("chunk") {
            continue;
        }
        let out = Cmd::new(cairn_tests::cairn_bin())
            .args(["inspect", &path.to_string_lossy(), "--json"])
            .timeout(Duration::from_secs(30))
            .run();
        out.assert_success();
        let stdout = out.stdout_str();
        let summary: serde_json::Value =
            serde_json::from_str(stdout.lines().last().expect("a summary line"))
                .expect("inspect --json prints JSON");
        assert_eq!(
            summary["torn_tail_bytes"],
            0,
            "{}: {summary}",
            path.display()
        );
        assert_eq!(
            summary["corrupt"],
            serde_json::json!([]),
            "{}: {summary}",
            path.display()
        );
        checked += 1;
    }
    checked
}

/// Proves that a chunkserver whose disk fills up costs no acknowledged record, gets no new
/// chunk once the master knows it is full, and keeps parseable chunk files.
///
/// How: chunkserver 0 restarted with `--test-disk-full-after-bytes 524288` (writes of chunk
/// data hit ENOSPC after 512 KiB, and it reports at most what is left as its free space); two
/// appenders write 2,000 records each into two logs of 64 KiB chunks (~1.6 MB, most chunks
/// placed on three of the four servers, so chunkserver 0 fills up). Both must end with every
/// record acknowledged, and chunkserver 0 must have held some of their chunks. After 1 s
/// (five heartbeats), a third appender writes 1,500 records into a new log: none of its chunks
/// may list chunkserver 0 as a replica or primary. Then chunkserver 0 is stopped and `cairn
/// inspect` must find each of its chunk files clean; replay of each log returns every
/// acknowledged record.
#[test]
fn full_disk_gets_no_new_chunks_and_loses_nothing() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("disk_faults_full");
    let mut cluster = cluster();
    cluster.restart_chunkserver_with(0, &["--test-disk-full-after-bytes", "524288"]);
    let full_addr = cluster.chunkserver_addr(0);
    let logs = ["/disk/full-a", "/disk/full-b"];
    for log in logs {
        cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    }
    let started = Instant::now();
    let running: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            let lines = workload::lines(&format!("full{i}"), 2_000, seed + i as u64, size);
            let child = cluster.spawn_append(log, &lines, Duration::from_secs(120));
            (i, lines, child)
        })
        .collect();
    let mut runs = Vec::new();
    for (i, lines, child) in running {
        let run = AppendRun::from_output(&format!("full{i}"), lines, child.wait());
        run.assert_all_acked();
        runs.push(run);
    }
    let used: usize = logs
        .iter()
        .map(|log| {
            let stat = cluster.stat(log);
            stat.chunks
                .iter()
                .filter(|c| c.replicas.contains(&full_addr))
                .count()
        })
        .sum();
    eprintln!(
        "disk_faults: 4,000 records acknowledged in {:.1} s; chunkserver 0 holds {used} good \
         replicas of them; it logged {} injected ENOSPC, {} groups failed on a full disk, {} \
         refused replicas",
        started.elapsed().as_secs_f64(),
        log_count(&cluster, 0, "TEST FAULT: injected ENOSPC"),
        log_count(&cluster, 0, "disk full: group not stored"),
        log_count(&cluster, 0, "refusing a new replica"),
    );
    assert!(used > 0, "chunkserver 0 took chunks before it filled up");

    // Five heartbeats: the master has the small free space by now.
    std::thread::sleep(Duration::from_secs(1));
    let refused_before = log_count(&cluster, 0, "refusing a new replica");
    let after = "/disk/after-full";
    cluster.create_log(after, LogOpts::chunk_bytes(CHUNK_BYTES));
    let after_run = cluster.append(
        "after",
        after,
        workload::lines("after", 1_500, seed + 7, size),
        Duration::from_secs(120),
    );
    after_run.assert_all_acked();
    let stat = cluster.stat(after);
    let on_full: Vec<_> = stat
        .chunks
        .iter()
        .filter(|c| c.replicas.contains(&full_addr) || c.primary.as_ref() == Some(&full_addr))
        .collect();
    eprintln!(
        "disk_faults: {} chunks allocated after the disk filled, {} on the full chunkserver; \
         it refused {} creates meanwhile",
        stat.chunks.len(),
        on_full.len(),
        log_count(&cluster, 0, "refusing a new replica") - refused_before,
    );
    assert!(stat.chunks.len() >= 5, "{:?}", stat.chunks);
    assert!(
        on_full.is_empty(),
        "new chunks on the full chunkserver: {on_full:?}"
    );

    cluster.kill_chunkserver(0);
    let checked = assert_chunk_files_clean(cluster.data_dir(Role::Chunkserver(0)));
    eprintln!("disk_faults: {checked} chunk files of the full chunkserver inspected clean");
    assert!(checked > 0);
    cluster.start_server(Role::Chunkserver(0));
    for (log, run) in logs.iter().zip(runs) {
        check_log("disk_faults", &cluster, log, &[run]);
    }
    check_log("disk_faults", &cluster, after, &[after_run]);
}

/// Proves that replay returns every record when one replica's reads fail with EIO: the client
/// reads another replica.
///
/// How: one appender writes 1,500 records into 64 KiB chunks (~10 sealed chunks). The first
/// replica listed for the first sealed chunk (the one replay reads first) names the victim; it
/// is restarted with `--test-fail-reads-of` every sealed chunk it holds. Once `stat` lists it
/// again as a good replica of those chunks, replay must return every acknowledged record, and
/// the victim must have logged at least one injected read EIO (replay really tried it).
#[test]
fn read_eio_on_one_replica_is_read_around() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("disk_faults_read");
    let mut cluster = cluster();
    let log = "/disk/read";
    cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    let runs = vec![cluster.append(
        "read",
        log,
        workload::lines("read", 1_500, seed, size),
        Duration::from_secs(120),
    )];
    runs[0].assert_all_acked();
    let stat = wait_three_good(&cluster, log, Duration::from_secs(60));
    let first = stat
        .sealed()
        .into_iter()
        .find(|c| c.length > EMPTY_CHUNK_BYTES)
        .expect("a sealed chunk with records")
        .clone();
    let victim_addr = first.replicas.first().expect("replicas").clone();
    let victim = cluster.chunkserver_index(&victim_addr);
    let handles: Vec<String> = stat
        .sealed()
        .iter()
        .filter(|c| c.replicas.contains(&victim_addr))
        .map(|c| c.handle.clone())
        .collect();
    eprintln!(
        "disk_faults: failing reads of {} sealed chunks on chunkserver {victim} ({victim_addr})",
        handles.len()
    );
    // Scrubbing off on the victim: its scrubber reads through the same failing disk and would
    // mark the replicas corrupt before stat lists them again, and this test is about replay
    // meeting the EIO (the scrubber's handling of it: file_faults.rs).
    cluster.restart_chunkserver_with(
        victim,
        &[
            "--test-fail-reads-of",
            &handles.join(","),
            "--scrub-interval-ms",
            "0",
        ],
    );
    // No append after the restart: if the victim was the open chunk's primary, replay itself
    // has the chunk sealed (read-after-ack) and must still return every acknowledged record.
    wait_until(
        "the victim listed again as a replica",
        Duration::from_secs(30),
        || {
            let stat = cluster.stat(log);
            let listed = stat
                .sealed()
                .iter()
                .filter(|c| handles.contains(&c.handle) && c.replicas.contains(&victim_addr))
                .count();
            (listed == handles.len()).then_some(())
        },
    );
    check_log("disk_faults", &cluster, log, &runs);
    let injected = log_count(&cluster, victim, "TEST FAULT: injected read EIO");
    eprintln!("disk_faults: replay met {injected} injected read errors on the victim");
    assert!(injected > 0, "replay never read the failing replica");
}
