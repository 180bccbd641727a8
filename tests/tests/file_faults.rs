//! No fault in a replica file can kill a chunkserver: a sealed replica file truncated under a
//! running chunkserver, and a disk whose reads of some replica files fail with EIO at startup,
//! each cost that replica (marked corrupt, reported, replaced by the master) and never the
//! process. Real processes: 1 master and 4 chunkservers.

use std::path::PathBuf;
use std::time::Duration;

use cairn_tests::small_chunks::{
    CHUNK_BYTES, EMPTY_CHUNK_BYTES, check_log, cluster, log_count, size, wait_three_good,
};
use cairn_tests::{LogOpts, Role};
use cairn_tests::{wait_until, workload};

/// Proves that truncating a sealed replica file under a running chunkserver costs that replica
/// only: replay returns every acknowledged record, the chunkserver is still running afterwards,
/// it marks the replica corrupt (and reports it), and the master brings the chunk back to three
/// good replicas. Before reads used `pread`, the replay's read of the truncated pages
/// of the memory map killed the chunkserver with SIGBUS.
///
/// How: one appender writes 1,500 records into 64 KiB chunks (~10 sealed chunks); once every
/// sealed chunk has three replicas, the file of the first sealed chunk's first listed replica
/// (the one replay reads first) is cut to half its length while its chunkserver runs. Replay
/// must return every acknowledged record; the chunkserver must still run and have logged the
/// corrupt mark; within 90 s `stat` must list three good replicas of that chunk, and the victim
/// must hold none or a whole new copy (its corrupt replica deleted).
#[test]
fn a_sealed_replica_truncated_under_a_running_chunkserver_costs_only_that_replica() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("file_faults_truncate");
    let mut cluster = cluster();
    let log = "/file/truncate";
    cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    let runs = vec![cluster.append(
        "truncate",
        log,
        workload::lines("truncate", 1_500, seed, size),
        Duration::from_secs(120),
    )];
    runs[0].assert_all_acked();
    let stat = wait_three_good(&cluster, log, Duration::from_secs(90));
    let sealed = stat.sealed();
    assert!(sealed.len() >= 3, "several sealed chunks: {}", stat.raw);
    let chunk = sealed
        .iter()
        .find(|c| c.length > EMPTY_CHUNK_BYTES)
        .expect("a sealed chunk with records");
    let victim_addr = chunk.replicas.first().expect("replicas").clone();
    let victim = cluster.chunkserver_index(&victim_addr);
    let file: PathBuf = cluster
        .data_dir(Role::Chunkserver(victim))
        .join("chunks")
        .join(format!("{}.chunk", chunk.handle));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    f.set_len(chunk.length / 2)
        .expect("truncate the replica file");
    drop(f);
    eprintln!(
        "file_faults: cut {} on chunkserver {victim} from {} to {} bytes",
        file.display(),
        chunk.length,
        chunk.length / 2
    );

    check_log("file_faults", &cluster, log, &runs);
    // Still running: a SIGBUS would have ended it.
    cluster.assert_running();
    assert!(
        log_count(&cluster, victim, "replica marked corrupt") > 0,
        "the truncated replica was read and marked corrupt"
    );
    let handle = chunk.handle.clone();
    // Replaced: three good replicas, and on the victim either none or a whole new copy (the
    // master may copy the chunk back onto it, over the corrupt replica).
    let deleted = format!("chunk={handle}");
    wait_until(
        "three good replicas of the truncated chunk, the truncated file replaced",
        Duration::from_secs(90),
        || {
            let now = cluster.stat(log);
            let c = now.chunks.iter().find(|c| c.handle == handle)?;
            let replaced = !c.replicas.contains(&victim_addr)
                || (cluster
                    .server_stderr(Role::Chunkserver(victim))
                    .lines()
                    .any(|l| l.contains("replica deleted") && l.contains(&deleted))
                    && std::fs::metadata(&file).is_ok_and(|m| m.len() == chunk.length));
            (c.replicas.len() >= 3 && replaced).then_some(())
        },
    );
    cluster.assert_running();
    check_log("file_faults", &cluster, log, &runs);
}

/// Proves that a chunkserver whose disk fails every read of some replica files (EIO) starts,
/// stays up, and has those replicas replaced, instead of dying at startup and so crash-looping.
/// Before the startup scan used `pread`, it mapped every open replica and failed the whole
/// store on the first one it could not read.
///
/// How: one appender writes 1,500 records into 64 KiB chunks; a replica of the open chunk names
/// the victim, which is restarted with `--test-fail-reads-of` the open chunk and every sealed
/// chunk it holds. The restart must come up (the harness fails as soon as a server exits); a
/// second appender then writes 200 more records (the client seals the open chunk, whose primary
/// may be the victim). Within 90 s the victim must have logged each of those replicas corrupt
/// (found by the startup scan, the scrubber or a read) and deleted it (the master replaces it),
/// and every sealed chunk must list three good replicas; the victim must still run, and replay
/// must return every acknowledged record.
#[test]
fn read_eio_at_startup_costs_the_replicas_not_the_process() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("file_faults_eio");
    let mut cluster = cluster();
    let log = "/file/eio";
    cluster.create_log(log, LogOpts::chunk_bytes(CHUNK_BYTES));
    let runs = vec![cluster.append(
        "eio",
        log,
        workload::lines("eio", 1_500, seed, size),
        Duration::from_secs(120),
    )];
    runs[0].assert_all_acked();
    let stat = wait_three_good(&cluster, log, Duration::from_secs(90));
    let open = stat
        .chunks
        .iter()
        .find(|c| !c.is_sealed())
        .expect("an open chunk");
    let victim_addr = open.replicas.first().expect("replicas").clone();
    let victim = cluster.chunkserver_index(&victim_addr);
    let handles: Vec<String> = stat
        .chunks
        .iter()
        .filter(|c| c.replicas.contains(&victim_addr))
        .map(|c| c.handle.clone())
        .collect();
    let sealed = stat
        .sealed()
        .iter()
        .filter(|c| c.replicas.contains(&victim_addr) && c.length > EMPTY_CHUNK_BYTES)
        .count();
    assert!(sealed > 0, "the victim holds sealed chunks: {}", stat.raw);
    eprintln!(
        "file_faults: failing reads of {} chunks ({sealed} sealed, 1 open) on chunkserver {victim}",
        handles.len()
    );
    cluster.restart_chunkserver_with(victim, &["--test-fail-reads-of", &handles.join(",")]);

    let mut runs = runs;
    runs.push(cluster.append(
        "eio-after",
        log,
        workload::lines("eio-after", 200, seed + 1, size),
        Duration::from_secs(60),
    ));
    runs[1].assert_all_acked();
    // Each unreadable replica was marked corrupt, then deleted (replaced by a copy, possibly
    // on the victim again, or dropped once the chunk had three good replicas elsewhere).
    wait_until(
        "every unreadable replica found corrupt and deleted",
        Duration::from_secs(90),
        || {
            let text = cluster.server_stderr(Role::Chunkserver(victim));
            let lines: Vec<&str> = text.lines().collect();
            let done = |h: &String| {
                let about = |needle: &str| {
                    lines
                        .iter()
                        .any(|l| l.contains(needle) && l.contains(&format!("chunk={h}")))
                };
                about("corrupt") && about("replica deleted")
            };
            handles.iter().all(done).then_some(())
        },
    );
    wait_three_good(&cluster, log, Duration::from_secs(90));
    cluster.assert_running();
    check_log("file_faults", &cluster, log, &runs);
    cluster.assert_running();
}
