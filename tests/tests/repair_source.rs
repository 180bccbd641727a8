//! Repair from a corrupt source: a copy that finds its source's bytes bad marks that source
//! corrupt, and the chunk is repaired from a healthy replica, the corrupt one replaced in turn.

use std::time::Duration;

use cairn_record::limits::FRAME_HEADER_BYTES;
use cairn_tests::damage::flip_byte;
use cairn_tests::{Cluster, ClusterOpts, LogOpts, Role, check_runs, wait_until, workload};

/// The length of a chunk holding no record: its header.
const EMPTY_CHUNK_BYTES: u64 = 32;

fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

/// Proves that one corrupt replica never blocks the repair of a chunk whose other replica is
/// healthy: the copy from the corrupt source fails with the source named as bad, the master
/// marks that source corrupt, copies the chunk from the healthy replica, and then replaces the
/// corrupt replica too, so the chunk returns to three good replicas, the repaired one
/// byte-identical to the healthy one, and replay returns every record.
///
/// How: 1 master (dead after 1 s) + 4 chunkservers, 64 KiB chunks, 600 records. Take the first
/// sealed chunk and its three holders sorted by address; the last one will be killed, and of the
/// other two the master's first choice of source is the one at `handle % 2` (ARCHITECTURE.md,
/// "Repair"): flip a payload byte of a record in that one's replica file (the running
/// chunkserver does not notice: its scrubber runs hourly), then SIGKILL the third holder. Wait
/// (bounded) until `stat` lists three replicas of the chunk, none the killed one and one the
/// damaged one; compare the damaged holder's file with the healthy one's; check the master
/// logged the mark; replay and check.
#[test]
fn a_corrupt_copy_source_is_marked_and_the_chunk_repaired_from_a_healthy_replica() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("corrupt_source");
    let mut cluster = Cluster::start(4, ClusterOpts::fast_failure_detection());
    let log = "/repair/corrupt-source";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let run = cluster.append(
        "only",
        log,
        workload::lines("only", 600, seed, size),
        Duration::from_secs(60),
    );
    run.assert_all_acked();
    let stat = cluster.stat(log);
    let chunk = stat
        .sealed()
        .into_iter()
        .find(|c| c.length > EMPTY_CHUNK_BYTES && c.replicas.len() == 3)
        .expect("a sealed chunk with three replicas")
        .clone();
    let mut holders = chunk.replicas.clone();
    holders.sort();
    let victim = holders.pop().expect("three holders");
    let handle = u64::from_str_radix(&chunk.handle, 16).expect("a hex handle");
    let bad = holders[(handle % 2) as usize].clone();
    let good = holders[1 - (handle % 2) as usize].clone();
    let records: Vec<u64> = cluster
        .replay(log, false, Duration::from_secs(60))
        .records()
        .filter(|r| r.chunk == chunk.index)
        .map(|r| r.offset)
        .collect();
    assert!(records.len() >= 2, "{records:?}");
    let file_of = |addr: &str| {
        cluster
            .data_dir(Role::Chunkserver(cluster.chunkserver_index(addr)))
            .join("chunks")
            .join(format!("{}.chunk", chunk.handle))
    };
    let (bad_file, good_file) = (file_of(&bad), file_of(&good));
    // The frame header, then the payload.
    let at = records[1] + FRAME_HEADER_BYTES as u64 + 3;
    eprintln!(
        "corrupt_source: chunk {} ({}): flip byte {at} on {bad}, kill {victim}, healthy {good}",
        chunk.index, chunk.handle
    );
    flip_byte(&bad_file, at);
    cluster.kill_chunkserver(cluster.chunkserver_index(&victim));

    wait_until(
        "the chunk back at three good replicas, the damaged one among them",
        Duration::from_secs(60),
        || {
            let now = cluster.stat(log);
            let c = now.chunks.iter().find(|c| c.handle == chunk.handle)?;
            (c.replicas.len() >= 3 && !c.replicas.contains(&victim) && c.replicas.contains(&bad))
                .then_some(())
        },
    );
    let len = chunk.length as usize;
    let repaired = std::fs::read(&bad_file).expect("the replaced replica");
    let healthy = std::fs::read(&good_file).expect("the healthy replica");
    assert!(
        repaired.len() >= len && healthy.len() >= len && repaired[..len] == healthy[..len],
        "the damaged replica was replaced by a copy of the healthy one"
    );
    let master_log = cluster.server_stderr(Role::Master);
    assert!(
        master_log.contains("the copy source holds bad bytes: marked it corrupt"),
        "the master marked the source"
    );
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&[run], &deduplicated, &with_duplicates).assert_ok();
}
