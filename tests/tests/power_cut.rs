//! Power cuts on one chunkserver: chunkservers run in the power-cut test mode
//! (`CAIRN_TEST_POWER_CUT=1`: unsynced writes live in process memory), so a SIGKILL loses what a
//! power cut may lose. Nothing acknowledged is lost, because acknowledgements wait for fsync.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_tests::contract::read_acks;
use cairn_tests::{AppendRun, Cluster, ClusterOpts, Cmd, LogOpts, Role, check_runs, workload};

/// What a chunkserver logs at start in the power-cut test mode.
const TEST_MODE_LINE: &str = "TEST MODE: unsynced writes live in memory";

/// Record sizes: 100–700 bytes, so a 64 KiB chunk holds ~150 records.
fn size(rng: &mut workload::Rng, _: usize) -> usize {
    rng.range(100, 700)
}

/// Panics unless every chunk file under `data_dir` is clean: `cairn inspect` finds no corrupt
/// range and no torn tail. In the power-cut mode a file only changes when a sync applies whole
/// groups of frames, so a kill leaves it at a group boundary. Returns how many files it checked.
fn assert_chunk_files_clean(data_dir: &Path) -> usize {
    let chunks = data_dir.join("chunks");
    let mut checked = 0;
    for entry in std::fs::read_dir(&chunks).expect("the chunks directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("chunk") {
            continue;
        }
        let out = Cmd::new(cairn_tests::cairn_bin())
            .args([
                "inspect".to_owned(),
                path.to_string_lossy().into_owned(),
                "--json".to_owned(),
            ])
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
            "{}: torn tail after a kill in the power-cut mode: {summary}",
            path.display()
        );
        assert_eq!(
            summary["corrupt"],
            serde_json::json!([]),
            "{}: corrupt after a kill: {summary}",
            path.display()
        );
        checked += 1;
    }
    checked
}

/// Proves that a chunkserver that loses its unsynced writes in the middle of a run (the
/// power-cut test mode, then SIGKILL) costs no acknowledged record: the appender rides through,
/// the chunkserver recovers from what it had synced, and replay returns every acknowledged record.
/// Also that the mode is really on (every chunkserver logs it at start) and that each killed
/// chunkserver's chunk files hold whole frames only.
///
/// How: 3 chunkservers started with `CAIRN_TEST_POWER_CUT=1`; `cairn append --json` with 10,000
/// records into 64 KiB chunks; after 2,000 acks SIGKILL chunkserver 2, run `cairn inspect` on each
/// of its chunk files, start it again; after 2,500 more acks the same with chunkserver 0; the
/// appender must exit 0 having acked every line; the checker runs over the replays.
#[test]
fn chunkserver_power_cut_mid_run_loses_nothing_acknowledged() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("chunkserver_power_cut");
    let opts = ClusterOpts {
        chunkserver_env: vec![("CAIRN_TEST_POWER_CUT".to_owned(), "1".to_owned())],
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::start(3, opts);
    for i in 0..3 {
        let log = cluster.server_stderr(Role::Chunkserver(i));
        assert!(
            log.contains(TEST_MODE_LINE),
            "chunkserver {i} is not in the power-cut mode; its log:\n{log}"
        );
    }
    let log = "/power-cut/mid-run";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 10));
    let lines = workload::lines("during", 10_000, seed, size);
    let mut during = cluster.spawn_append(log, &lines, Duration::from_secs(150));
    let mut checked = 0;
    // Two power cuts, on different chunkservers, each while the appender runs.
    for (victim, acks) in [(2, 2_000), (0, 2_500)] {
        read_acks(&mut during, acks, Duration::from_secs(30));
        assert!(
            !during.has_exited(),
            "the appender finished before the kill of chunkserver {victim}: make the run longer"
        );
        cluster.kill_chunkserver(victim);
        let files = assert_chunk_files_clean(cluster.data_dir(Role::Chunkserver(victim)));
        assert!(files > 0, "killed chunkserver {victim} holds chunk files");
        checked += files;
        std::thread::sleep(Duration::from_millis(500));
        cluster.restart_chunkserver(victim);
    }
    let run = AppendRun::from_output("during", lines, during.wait());
    eprintln!("power_cut: appender: {}", run.output.stderr_str().trim());
    run.assert_all_acked();
    let runs = vec![run];
    let deduplicated = cluster.replay(log, false, Duration::from_secs(60));
    let with_duplicates = cluster.replay(log, true, Duration::from_secs(60));
    check_runs(&runs, &deduplicated, &with_duplicates).assert_ok();
    cluster.assert_running();
    eprintln!(
        "power_cut: {checked} chunk files clean after the kills; done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
