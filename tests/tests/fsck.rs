//! `cairn fsck` against a real cluster: a healthy log passes; one flipped byte in one sealed
//! replica is found, named and reported to the master, which replaces that replica with a good
//! copy, after which fsck passes again.

use std::time::{Duration, Instant};

use cairn_tests::{Cluster, ClusterOpts, LogOpts, Output, Role, check_runs, workload};
use serde_json::Value;

fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

/// `cairn fsck LOG --json`, parsed, with its exit code.
fn fsck(cluster: &Cluster, log: &str) -> (i32, Value, Output) {
    let out = cluster
        .cairn(&["fsck", log, "--json"])
        .timeout(Duration::from_secs(60))
        .run();
    let code = out.status.code().expect("fsck exited");
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fsck printed no JSON ({e}): {out:?}"));
    (code, json, out)
}

/// Proves that fsck finds a corrupt sealed replica that nothing else has noticed, names it,
/// and that its report makes the master replace it.
///
/// How: 1 master (heartbeat 200 ms, dead after 1 s) + 3 chunkservers (heartbeat 200 ms), 64 KiB
/// chunks, RF 3. 400 records are appended; fsck must exit 0. Then one chunkserver (the first
/// listed replica of a sealed chunk, whatever else it holds) is stopped, one payload byte of its replica of a sealed chunk is flipped, and it is restarted (start-up
/// checks only the lengths of sealed replicas, so it does not notice). fsck must exit 1 and name
/// that chunk corrupt and that replica corrupt and reported. With three chunkservers the only
/// repair target is the corrupt replica's own chunkserver, so the master must delete it and
/// copy the chunk there; the harness runs fsck until it exits 0 again (bounded), then checks
/// that the file now equals another replica's byte for byte and that replay returns every
/// acknowledged record.
#[test]
fn fsck_finds_a_flipped_byte_and_the_master_repairs_it() {
    let _serial = cairn_tests::serial();
    let seed = workload::seed("fsck");
    let opts = ClusterOpts::fast_failure_detection();
    let mut cluster = Cluster::start(3, opts);
    let log = "/fsck/flip";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let runs = vec![cluster.append(
        "records",
        log,
        workload::lines("records", 400, seed, size),
        Duration::from_secs(60),
    )];
    runs[0].assert_all_acked();

    let (code, healthy, out) = fsck(&cluster, log);
    assert_eq!(code, 0, "a healthy log: {out:?}");
    assert_eq!(healthy["summary"]["ok"], true, "{healthy}");
    assert!(healthy["summary"]["bytes_verified"].as_u64().unwrap() > 400 * 100);
    let chunks = healthy["chunks"].as_array().unwrap();
    let victim_chunk = chunks
        .iter()
        .find(|c| c["state"] == "sealed" && c["length"].as_u64().unwrap() > 4096)
        .unwrap_or_else(|| panic!("a sealed chunk holding records: {healthy}"));
    let handle = victim_chunk["handle"].as_str().unwrap().to_owned();
    // Whether or not it is the open chunk's primary: a restarted primary's open chunk is sealed
    // by the master or by the first reader that needs it (read-after-ack).
    let victim_addr = victim_chunk["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["address"].as_str())
        .expect("a replica")
        .to_owned();
    let victim = cluster.chunkserver_index(&victim_addr);
    let files: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            cluster
                .data_dir(Role::Chunkserver(i))
                .join("chunks")
                .join(format!("{handle}.chunk"))
        })
        .collect();
    let file_of = |i: usize| files[i].clone();

    cluster.kill_chunkserver(victim);
    let path = file_of(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    // The first record's payload: chunk header (32) + frame header (32) + a few bytes.
    bytes[32 + 32 + 5] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    cluster.restart_chunkserver(victim);
    eprintln!("fsck: flipped a byte of chunk {handle} on {victim_addr}");

    let (code, found, out) = fsck(&cluster, log);
    assert_eq!(code, 1, "a corrupt replica must fail fsck: {out:?}");
    assert_eq!(found["summary"]["ok"], false);
    let chunk = found["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["handle"] == handle.as_str())
        .expect("the chunk is listed");
    assert_eq!(chunk["status"], "corrupt", "{chunk}");
    let replica = chunk["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == victim_addr.as_str())
        .expect("the replica is listed");
    assert_eq!(replica["status"], "corrupt", "{replica}");
    assert_eq!(replica["reported"], "reported to the master", "{replica}");
    assert!(
        found["summary"]["reported_corrupt"].as_u64().unwrap() >= 1,
        "{found}"
    );

    // The master repairs it; fsck passes again once the replica was replaced.
    let started = Instant::now();
    let mut last = None;
    let repaired = loop {
        let (code, json, out) = fsck(&cluster, log);
        if code == 0 {
            break Some(json);
        }
        if started.elapsed() > Duration::from_secs(60) {
            last = Some(out);
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let repaired = repaired.unwrap_or_else(|| {
        panic!(
            "fsck still fails 60 s after the report: {last:?}\n{}",
            cluster.log_tails(30)
        )
    });
    eprintln!(
        "fsck: repaired {:.1} s after the report",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(repaired["summary"]["corrupt"], 0, "{repaired}");
    let other = (0..3).find(|&i| i != victim).unwrap();
    let fixed = std::fs::read(file_of(victim)).expect("a replica on the victim again");
    assert_eq!(
        fixed,
        std::fs::read(file_of(other)).unwrap(),
        "the replaced replica holds the chunk's bytes"
    );

    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
}
