//! Data directories belong to one process and one cluster: a second `cairn master`,
//! `cairn chunkserver` or `cairn local` on a directory in use exits non-zero naming it and its
//! holder and changes nothing; a chunkserver holding replicas but no cluster id joins no master
//! unless told to with `--adopt-cluster-id`; a wiped data directory loses its open chunk's
//! records loudly (replay reports them skipped), not silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_tests::cluster::free_addr;
use cairn_tests::{Cluster, ClusterOpts, Cmd, LogOpts, Output, Role, cairn_bin, wait_until};

/// Deadline of a refused second process (it should exit at once).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Every file under `dir` with its bytes, by path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// Asserts that `out` is a refusal naming `dir` and the holder's `pid`.
fn assert_refused(out: &Output, dir: &Path, pid: u32) {
    assert!(!out.timed_out && !out.success(), "{out:?}");
    let err = out.stderr_str();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains(&format!("process {pid}")), "{err}");
    assert!(err.contains("in use"), "{err}");
}

/// Proves that a second master and a second chunkserver on directories in use by a running
/// cluster exit non-zero at once, naming the directory and the running holder's PID, and change
/// nothing: every file of both directories is byte-identical afterwards, and the cluster still
/// appends and replays.
///
/// How: 1 master + 1 chunkserver; 200 records into a replication-1 log; snapshot both data
/// directories; run `cairn master` and `cairn chunkserver` on fresh ports with the same
/// `--data`; check exit status, stderr and the snapshots; append and replay again.
#[test]
fn a_second_master_or_chunkserver_on_a_directory_in_use_changes_nothing() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(1, ClusterOpts::default());
    let log = "/dirs/locked";
    cluster.create_log(
        log,
        LogOpts {
            chunk_bytes: 64 << 10,
            replication: 1,
        },
    );
    let lines: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("before {i}").into_bytes())
        .collect();
    cluster
        .append("before", log, lines, Duration::from_secs(60))
        .assert_all_acked();
    let master_dir = cluster.data_dir(Role::Master).to_owned();
    let cs_dir = cluster.data_dir(Role::Chunkserver(0)).to_owned();
    let before = (snapshot(&master_dir), snapshot(&cs_dir));

    let master = Cmd::new(cairn_bin())
        .args(["master", "--listen", &free_addr().to_string(), "--data"])
        .args([master_dir.to_string_lossy().into_owned()])
        .timeout(REFUSAL_TIMEOUT)
        .run();
    assert_refused(
        &master,
        &master_dir,
        cluster.pid(Role::Master).expect("runs"),
    );
    let chunkserver = Cmd::new(cairn_bin())
        .args(["chunkserver", "--listen", &free_addr().to_string()])
        .args(["--master", &cluster.master_addr(), "--data"])
        .args([cs_dir.to_string_lossy().into_owned()])
        .timeout(REFUSAL_TIMEOUT)
        .run();
    assert_refused(
        &chunkserver,
        &cs_dir,
        cluster.pid(Role::Chunkserver(0)).expect("runs"),
    );
    assert_eq!(
        (snapshot(&master_dir), snapshot(&cs_dir)),
        before,
        "the refused processes changed no file"
    );

    let lines: Vec<Vec<u8>> = (0..50).map(|i| format!("after {i}").into_bytes()).collect();
    cluster
        .append("after", log, lines, Duration::from_secs(60))
        .assert_all_acked();
    let replay = cluster.replay(log, false, Duration::from_secs(60));
    assert_eq!(replay.records().count(), 250);
}

/// Proves that a second `cairn local` on a data directory in use exits non-zero naming the
/// directory and the first one's PID, leaves the first one's files unchanged, and that the first
/// one keeps serving.
///
/// How: `cairn local --chunkservers 1` on a temporary directory; wait for its master address on
/// stdout and for a probe append; snapshot the directory; run a second `cairn local` on it (other
/// ports); check; append and replay through the first.
#[test]
fn a_second_local_on_a_directory_in_use_changes_nothing() {
    let _serial = cairn_tests::serial();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let port = free_addr().port();
    let mut first = Cmd::new(cairn_bin())
        .args(["local", "--chunkservers", "1", "--port", &port.to_string()])
        .args(["--data".to_owned(), data.to_string_lossy().into_owned()])
        .timeout(Duration::from_secs(300))
        .spawn();
    let line = first
        .next_line(Duration::from_secs(30))
        .expect("cairn local prints its master address");
    let master = String::from_utf8_lossy(&line).trim().to_owned();
    let cairn = |args: &[&str]| {
        Cmd::new(cairn_bin())
            .args(args.iter().map(|a| (*a).to_owned()))
            .args(["--master".to_owned(), master.clone()])
            .timeout(Duration::from_secs(30))
    };
    wait_until(
        "the first local accepts appends",
        Duration::from_secs(45),
        || {
            let _ = cairn(&["create", "/l", "--replication", "1"]).run();
            cairn(&["append", "/l"])
                .stdin("one\n")
                .run()
                .success()
                .then_some(())
        },
    );
    let before = snapshot(&data);

    let other = free_addr().port();
    let second = Cmd::new(cairn_bin())
        .args(["local", "--chunkservers", "1", "--port", &other.to_string()])
        .args(["--data".to_owned(), data.to_string_lossy().into_owned()])
        .timeout(REFUSAL_TIMEOUT)
        .run();
    assert_refused(&second, &data.join("master"), first.pid());
    assert_eq!(snapshot(&data), before, "the refused local changed no file");

    cairn(&["append", "/l"]).stdin("two\n").run_ok();
    let out = cairn(&["replay", "/l"]).run_ok();
    assert_eq!(out.stdout_str(), "one\ntwo\n");
    assert!(!first.has_exited());
    drop(first);
}

/// The chunk files of chunkserver `i`, sorted.
fn chunk_files(cluster: &Cluster, i: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(cluster.data_dir(Role::Chunkserver(i)).join("chunks"))
            .expect("the chunks directory")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "chunk"))
            .collect();
    files.sort();
    files
}

/// What chunkserver `i` has logged since its last start.
fn last_start_log(cluster: &Cluster, i: usize) -> String {
    let all = cluster.server_stderr(Role::Chunkserver(i));
    match all.rfind("===== cairn-tests: start #") {
        Some(at) => all[at..].to_owned(),
        None => all,
    }
}

/// Proves that a chunkserver whose data directory holds replicas but no `cluster-id` file (as
/// every directory from before cluster ids did) does not register with the master, says so
/// naming `--adopt-cluster-id`, and keeps every replica; and that with the flag it joins, records
/// the master's cluster id and its replicas count again.
///
/// How: 1 master + 3 chunkservers; 300 records into 64 KiB chunks. SIGKILL chunkserver 0,
/// delete its `cluster-id`, start it again: wait for the refusal in its log, two more seconds;
/// check it never registered, its chunk files are all there and no `cluster-id` was written.
/// Then restart it with `--adopt-cluster-id`: the cluster takes a probe append on all three
/// chunkservers, its `cluster-id` is the master's, and its chunk files are still there.
#[test]
fn a_chunkserver_with_replicas_and_no_cluster_id_joins_only_when_told() {
    let _serial = cairn_tests::serial();
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/dirs/adopt";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let lines: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("record {i} {}", "x".repeat(400)).into_bytes())
        .collect();
    cluster
        .append("only", log, lines, Duration::from_secs(60))
        .assert_all_acked();
    cluster.kill_chunkserver(0);
    let cs_dir = cluster.data_dir(Role::Chunkserver(0)).to_owned();
    std::fs::remove_file(cs_dir.join("cluster-id")).expect("the chunkserver joined a cluster");
    let before = chunk_files(&cluster, 0);
    assert!(before.len() >= 3, "{before:?}");
    cluster.start_server(Role::Chunkserver(0));
    wait_until(
        "the chunkserver refuses to join",
        Duration::from_secs(30),
        || {
            last_start_log(&cluster, 0)
                .contains("--adopt-cluster-id")
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.assert_running();
    let logged = last_start_log(&cluster, 0);
    assert!(!logged.contains("registered with the master"), "{logged}");
    assert_eq!(chunk_files(&cluster, 0), before, "every replica is kept");
    assert!(!cs_dir.join("cluster-id").exists(), "no cluster id adopted");

    cluster.restart_chunkserver_with(0, &["--adopt-cluster-id"]);
    let master_dir = cluster.data_dir(Role::Master).to_owned();
    let master_id = std::fs::read_to_string(master_dir.join("cluster-id")).expect("master id");
    let ours = std::fs::read_to_string(cs_dir.join("cluster-id")).expect("adopted id");
    assert_eq!(ours, master_id);
    let now = chunk_files(&cluster, 0);
    assert!(
        before.iter().all(|f| now.contains(f)),
        "the master knew them all: {before:?} {now:?}"
    );
}

/// Proves: the open chunk of a replication-1 log whose only replica is wiped (its chunkserver
/// SIGKILLed, its data directory removed, restarted empty) after the master heard of its
/// records is not dropped as if it had never held any: a replay reports its bytes skipped (the
/// records went with the disk; nothing brings them back, but nothing hides it either), the
/// chunk keeps its place sealed with those bytes recorded as lost, and appends go on in the next
/// chunk.
///
/// How: 1 master + 1 chunkserver (fast failure detection); 200 records appended and
/// acknowledged; wait until `stat` shows the open chunk's bytes (a heartbeat reported them);
/// wipe; replay.
#[test]
fn a_wiped_open_chunk_is_reported_lost_not_dropped() {
    let _serial = cairn_tests::serial();
    let mut cluster = Cluster::start(1, ClusterOpts::fast_failure_detection());
    cluster.create_log(
        "/one",
        LogOpts {
            chunk_bytes: 1 << 20,
            replication: 1,
        },
    );
    let lines: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("before-{i:04}").into_bytes())
        .collect();
    cluster
        .append("before", "/one", lines, Duration::from_secs(60))
        .assert_all_acked();
    let held = wait_until(
        "a report of the open chunk's bytes",
        Duration::from_secs(30),
        || {
            let stat = cluster.stat("/one");
            let c = stat.chunks.first()?;
            (!c.is_sealed() && c.length > 4096).then_some(c.length)
        },
    );

    cluster.kill(Role::Chunkserver(0));
    let dir = cluster.data_dir(Role::Chunkserver(0)).to_owned();
    std::fs::remove_dir_all(&dir).expect("wipe");
    cluster.restart_chunkserver(0);

    let replay = cluster.replay("/one", false, Duration::from_secs(60));
    let records = replay
        .events
        .iter()
        .filter(|e| matches!(e, cairn_tests::Event::Record(_)))
        .count();
    let skipped: Vec<&String> = replay
        .events
        .iter()
        .filter_map(|e| match e {
            cairn_tests::Event::Skipped { raw } => Some(raw),
            _ => None,
        })
        .collect();
    assert_eq!(records, 0, "the records went with the wiped disk");
    assert_eq!(skipped.len(), 1, "their bytes are reported: {skipped:?}");
    let stat = cluster.stat("/one");
    let lost = &stat.chunks[0];
    assert!(lost.is_sealed() && lost.replicas.is_empty(), "{}", stat.raw);
    assert_eq!(stat.raw["chunks"][0]["lost_end"], held, "{}", stat.raw);
    assert_eq!(
        stat.raw["chunks"][0]["length"], 32,
        "cut back to its header"
    );

    let after: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("after-{i:04}").into_bytes())
        .collect();
    cluster
        .append("after", "/one", after, Duration::from_secs(60))
        .assert_all_acked();
    let replay = cluster.replay("/one", false, Duration::from_secs(60));
    let records = replay
        .events
        .iter()
        .filter(|e| matches!(e, cairn_tests::Event::Record(_)))
        .count();
    assert_eq!(records, 50, "appends go on past the lost chunk");
    assert!(cluster.stat("/one").chunks.len() >= 2);
}
