//! Log options against the cluster: a log asking for more replicas than the cluster has is
//! refused at creation, and a log with `--min-replicas` below its factor keeps taking appends
//! while a chunkserver is down, its sealed chunks brought to the full factor when it returns.

use std::time::Duration;

use cairn_tests::{Cluster, ClusterOpts, Role, check_runs, wait_until, workload};

/// The length of a chunk holding no record: its header.
const EMPTY_CHUNK_BYTES: u64 = 32;

fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

/// Proves that `cairn create --replication 5` on three chunkservers is refused at once with a
/// message naming both counts (it used to be accepted, and appends failed 31 s later), that a
/// minimum above the factor is refused, and that `stat`/`ls` show a log's minimum.
///
/// How: 1 master (dead after 1 s) + 3 chunkservers; run the creates and check exit status and stderr; create a
/// log with `--min-replicas 2` and read it back with `stat --json` and `ls`.
#[test]
fn a_log_needing_more_chunkservers_than_the_cluster_has_is_refused() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::fast_failure_detection());
    // Past the master's first dead-after period (1 s), in which chunkservers may still be
    // registering and the refusal is the retryable "need N live chunkservers".
    std::thread::sleep(Duration::from_millis(1500));
    let five = cluster
        .cairn(&["create", "/opts/five", "--replication", "5"])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(!five.success() && !five.timed_out, "{five:?}");
    let err = five.stderr_str();
    assert!(
        err.contains("replication 5") && err.contains("exceeds the 3 live"),
        "{err}"
    );
    let over = cluster
        .cairn(&["create", "/opts/over", "--replication", "3"])
        .args(["--min-replicas", "4"])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(
        !over.success() && over.stderr_str().contains("min replicas 4"),
        "{over:?}"
    );

    cluster
        .cairn(&[
            "create",
            "/opts/two",
            "--replication",
            "3",
            "--min-replicas",
            "2",
        ])
        .run_ok();
    let stat = cluster.stat("/opts/two");
    assert_eq!(stat.raw["min_replicas"], 2, "{:?}", stat.raw);
    let ls = cluster.ls().stdout_str();
    assert!(ls.contains("min_replicas=2"), "{ls}");
}

/// Proves that with replication 3 and `--min-replicas 2`, appends go on while one of three
/// chunkservers is down (new chunks open on the two live ones, every record acknowledged), and
/// that once it returns every sealed chunk holding records reaches three good replicas; replay
/// returns every acknowledged record.
///
/// How: 1 master (dead after 1 s) + 3 chunkservers, 64 KiB chunks, `--min-replicas 2`. 300
/// records; SIGKILL chunkserver 2; 1,500 more records (several chunks' worth), all of which
/// must be acknowledged; start chunkserver 2 again; wait (bounded) until `stat` lists three
/// replicas for every sealed chunk with records; replay and check both runs.
#[test]
fn appends_go_on_with_a_chunkserver_down_and_chunks_return_to_full_replication() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("min_replicas");
    let mut cluster = Cluster::start(3, ClusterOpts::fast_failure_detection());
    let log = "/opts/degraded";
    cluster
        .cairn(&["create", log, "--replication", "3", "--min-replicas", "2"])
        .args(["--chunk-size", "65536"])
        .run_ok();
    let before = cluster.append(
        "before",
        log,
        workload::lines("before", 300, seed, size),
        Duration::from_secs(60),
    );
    before.assert_all_acked();
    cluster.kill_chunkserver(2);
    let down = cluster.chunkserver_addr(2);
    let during = cluster.append(
        "during",
        log,
        workload::lines("during", 1_500, seed + 1, size),
        Duration::from_secs(120),
    );
    during.assert_all_acked();
    let stat = cluster.stat(log);
    let opened_on_two = stat
        .chunks
        .iter()
        .filter(|c| c.length > EMPTY_CHUNK_BYTES && !c.replicas.contains(&down))
        .count();
    assert!(
        opened_on_two >= 2,
        "chunks written without {down}: {stat:?}"
    );

    cluster.start_server(Role::Chunkserver(2));
    wait_until(
        "every sealed chunk with records at three replicas",
        Duration::from_secs(90),
        || {
            let stat = cluster.stat(log);
            stat.sealed()
                .iter()
                .filter(|c| c.length > EMPTY_CHUNK_BYTES)
                .all(|c| c.replicas.len() >= 3)
                .then_some(())
        },
    );
    let runs = vec![before, during];
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
}
