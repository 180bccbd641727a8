//! Re-replication and stale replicas, against a real 4-chunkserver cluster: a chunkserver dies
//! mid-run, every sealed chunk it held regains three good replicas elsewhere, and when it comes
//! back its replica of the chunk that was open at its death (now stale) is deleted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_record::limits::FRAME_HEADER_BYTES;
use cairn_tests::contract::read_acks;
use cairn_tests::damage::flip_byte;
use cairn_tests::{
    AppendRun, Cluster, ClusterOpts, LogOpts, Role, check_runs, wait_until, workload,
};

/// The length of a chunk holding no record: its header.
const EMPTY_CHUNK_BYTES: u64 = 32;

fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Proves that the death of one of four chunkservers costs no acknowledged record, that the
/// master re-replicates every sealed chunk the dead one held onto the others (three good
/// replicas each, none on the dead server) without help, and that the dead server's replica of
/// the chunk that was open when it died is deleted once it returns (its version is stale).
///
/// How: 1 master (dead after 1 s) + 4 chunkservers (heartbeat 200 ms), 64 KiB chunks. One
/// appender writes 1,000 records; a second `cairn append --json` with 6,000 records runs, and
/// after 500 of its acknowledgements the harness SIGKILLs a replica holder of the open chunk.
/// The appender must finish with every record acknowledged (its client seals and rolls). The
/// harness then polls `stat` until every sealed chunk holding records lists three replicas,
/// none of them the dead server, restarts the dead server, and waits until its copy of the
/// chunk that was open at the kill is gone from its data directory. Finally both runs are
/// checked against the replays.
#[test]
fn dead_chunkserver_is_re_replicated_and_its_stale_replica_deleted() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("re_replication");
    let opts = ClusterOpts::fast_failure_detection();
    let mut cluster = Cluster::start(4, opts);
    let log = "/repair/dead";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let mut runs = vec![cluster.append(
        "before",
        log,
        workload::lines("before", 1_000, seed, size),
        Duration::from_secs(60),
    )];
    runs[0].assert_all_acked();

    let during_lines = workload::lines("during", 6_000, seed + 1, size);
    let mut during = cluster.spawn_append(log, &during_lines, Duration::from_secs(180));
    read_acks(&mut during, 500, Duration::from_secs(30));
    // Freeze the appender so that the open chunk cannot roll between `stat` and the kill.
    signal(during.pid(), libc::SIGSTOP);
    let at_kill = cluster.stat(log);
    let open = at_kill
        .chunks
        .iter()
        .find(|c| !c.is_sealed())
        .expect("an open chunk")
        .clone();
    let victim_addr = open
        .replicas
        .first()
        .expect("the open chunk has replicas")
        .clone();
    let victim = cluster.chunkserver_index(&victim_addr);
    eprintln!(
        "re_replication: killing chunkserver {victim} ({victim_addr}), which holds open chunk {} ({})",
        open.index, open.handle
    );
    cluster.kill_chunkserver(victim);
    let killed = Instant::now();
    signal(during.pid(), libc::SIGCONT);
    runs.push(AppendRun::from_output(
        "during",
        during_lines,
        during.wait(),
    ));
    runs[1].assert_all_acked();

    let stat = wait_until(
        "three good replicas of every sealed chunk",
        Duration::from_secs(60),
        || {
            let stat = cluster.stat(log);
            let short = stat
                .sealed()
                .iter()
                .filter(|c| c.length > EMPTY_CHUNK_BYTES)
                .filter(|c| c.replicas.len() < 3 || c.replicas.contains(&victim_addr))
                .count();
            (short == 0).then_some(stat)
        },
    );
    eprintln!(
        "re_replication: {} sealed chunks back at 3 replicas {:.1} s after the kill",
        stat.sealed().len(),
        killed.elapsed().as_secs_f64()
    );
    cluster.start_server(Role::Chunkserver(victim));
    let chunk_file = cluster
        .data_dir(Role::Chunkserver(victim))
        .join("chunks")
        .join(format!("{}.chunk", open.handle));
    wait_until("the stale replica deleted", Duration::from_secs(30), || {
        (!chunk_file.exists()).then_some(())
    });
    // The chunk itself is intact elsewhere.
    let after = cluster.stat(log);
    let chunk = after
        .chunks
        .iter()
        .find(|c| c.handle == open.handle)
        .expect("the chunk is still in the log");
    assert!(chunk.is_sealed(), "{chunk:?}");
    let holders: BTreeSet<&String> = chunk.replicas.iter().collect();
    assert!(
        chunk.length <= EMPTY_CHUNK_BYTES || holders.len() >= 3,
        "{chunk:?}"
    );
    assert!(!holders.contains(&victim_addr), "{chunk:?}");

    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
}

/// Proves that records acknowledged in an open chunk stay readable when its primary restarts
/// and nobody appends again: the restarted primary reports the replica without its (in-memory)
/// primary role, the chunk is sealed, and the first replay after the restart returns every
/// record (read-after-ack: it must not end short, whoever seals the chunk).
///
/// How: 300 records into a log with 1 MiB chunks (all in the open chunk), SIGKILL and restart
/// the open chunk's primary, then — with no appender running — one replay, which must exit 0
/// with all 300; the chunk must then be sealed; check the run.
#[test]
fn restarted_primary_gets_its_open_chunk_sealed_without_new_appends() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("restarted_primary");
    let opts = ClusterOpts::fast_failure_detection();
    let mut cluster = Cluster::start(3, opts);
    let log = "/repair/restarted-primary";
    cluster.create_log(log, LogOpts::chunk_bytes(1 << 20));
    let run = cluster.append(
        "only",
        log,
        workload::lines("only", 300, seed, size),
        Duration::from_secs(60),
    );
    run.assert_all_acked();
    let stat = cluster.stat(log);
    let open = stat
        .chunks
        .iter()
        .find(|c| !c.is_sealed())
        .expect("an open chunk");
    let (handle, primary) = (
        open.handle.clone(),
        open.primary.clone().expect("a primary"),
    );
    let i = cluster.chunkserver_index(&primary);
    cluster.kill_chunkserver(i);
    cluster.start_server(Role::Chunkserver(i));
    let restarted = Instant::now();
    let runs = vec![run];
    let first = cluster.replay(log, false, Duration::from_secs(60));
    assert!(
        first.output.success(),
        "the first replay after the restart failed: {:?}",
        first.output
    );
    let returned = first.records().count();
    eprintln!(
        "restarted_primary: the first replay, {:.1} s after the restart, returned {returned} records",
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!(
        returned, 300,
        "the first replay after the restart ended short"
    );
    let sealed = cluster
        .stat(log)
        .chunks
        .into_iter()
        .find(|c| c.handle == handle)
        .expect("the chunk is still in the log");
    assert!(
        sealed.is_sealed(),
        "chunk {handle} is not sealed: {sealed:?}"
    );
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
}

/// Proves row 12 (helix) for reads: with a different record corrupted on each of the three
/// replicas of a sealed chunk (every record still whole on two of them), replay returns every
/// record byte-exact and skips nothing, fetching each bad frame from another replica.
///
/// How: 600 records into 64 KiB chunks; in the first sealed chunk, flip a payload bit of its
/// 2nd, 5th and 8th record, each on a different replica's file (live: bit rot under the running
/// chunkservers, whose scrubbers run hourly); replay; check. (Repairing a chunk none of whose
/// replicas is whole needs a copy assembled from several sources: not built yet.)
#[test]
fn helix_corruption_is_read_around() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("helix");
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/repair/helix";
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
        .next()
        .expect("a sealed chunk")
        .clone();
    let records: Vec<u64> = cluster
        .replay(log, false, Duration::from_secs(60))
        .records()
        .filter(|r| r.chunk == chunk.index)
        .map(|r| r.offset)
        .collect();
    assert!(
        records.len() >= 9,
        "{} records in chunk {}",
        records.len(),
        chunk.index
    );
    for (k, addr) in chunk.replicas.iter().enumerate() {
        let i = cluster.chunkserver_index(addr);
        let path = cluster
            .data_dir(Role::Chunkserver(i))
            .join("chunks")
            .join(format!("{}.chunk", chunk.handle));
        // The frame header, then the payload.
        let at = records[1 + 3 * k] + FRAME_HEADER_BYTES as u64 + 3;
        eprintln!("helix: flip chunk {} byte {at} on {addr}", chunk.index);
        flip_byte(&path, at);
    }
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    let runs = vec![run];
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
}

/// The chunk files under every chunkserver's data directory, sorted.
fn chunk_files(cluster: &Cluster, n: usize) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = (0..n)
        .flat_map(|i| {
            std::fs::read_dir(cluster.data_dir(Role::Chunkserver(i)).join("chunks"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "chunk"))
                .collect::<Vec<_>>()
        })
        .collect();
    files.sort();
    files
}

/// Proves that a master started on an empty data directory (its metadata lost or a wrong
/// `--data`) cannot make chunkservers delete what it does not know: they present the cluster id
/// they joined, it refuses them, and every chunk file stays where it was.
///
/// How: 500 records into 64 KiB chunks; SIGKILL the master, empty its data directory, start it
/// again; wait for every chunkserver to log the refusal (bounded), then another two heartbeat
/// periods; compare the chunk files before and after.
#[test]
fn a_master_with_an_empty_data_directory_deletes_nothing() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("empty_master");
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/repair/empty-master";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    cluster
        .append(
            "only",
            log,
            workload::lines("only", 500, seed, size),
            Duration::from_secs(60),
        )
        .assert_all_acked();
    let before = chunk_files(&cluster, 3);
    assert!(before.len() >= 6, "{before:?}");
    cluster.kill_master();
    let dir = cluster.data_dir(Role::Master).to_owned();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    cluster.start_server(Role::Master);
    wait_until(
        "every chunkserver refused by the new master",
        Duration::from_secs(30),
        || {
            (0..3)
                .all(|i| {
                    cluster
                        .server_stderr(Role::Chunkserver(i))
                        .contains("belongs to cluster")
                })
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        chunk_files(&cluster, 3),
        before,
        "no chunk file was deleted"
    );
}
