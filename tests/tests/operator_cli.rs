//! The `cairn` command as an operator meets it: a closed output pipe ends a tool quietly,
//! `cairn rm` deletes a log (and says so when there is none), `cairn completions SHELL` prints a
//! completion script.

use std::process::Command;
use std::time::Duration;

use cairn_tests::{Cluster, ClusterOpts, Cmd, LogOpts, Role, cairn_bin};

/// Runs `cairn ARGS…` in a shell with its stdout into a pipe whose reader closes it at once;
/// returns cairn's stderr.
fn into_a_closed_pipe(args: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let script = format!(
        "'{}' {args} 2>\"$ERR\" | {{ exec <&-; sleep 0.5; }}",
        cairn_bin().display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("ERR", &err)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(&err).unwrap_or_default()
}

/// Proves: a tool whose output pipe is closed (`cairn fsck LOG | head`, `cairn inspect
/// --records FILE | head`, `cairn replay LOG | head`) ends quietly: it prints nothing on
/// stderr. (`fsck` and `inspect` panicked on the broken pipe in `println!`.)
///
/// How: 1 master + 3 chunkservers, 300 records; each command's stdout goes to a reader that
/// closes the pipe before the command writes.
#[test]
fn a_closed_output_pipe_ends_a_tool_quietly() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    cluster.create_log("/piped", LogOpts::chunk_bytes(1 << 20));
    let lines: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("record-{i}").into_bytes())
        .collect();
    cluster
        .append("fill", "/piped", lines, Duration::from_secs(60))
        .assert_all_acked();
    let handle = cluster.stat("/piped").chunks[0].handle.clone();
    let file = cluster
        .data_dir(Role::Chunkserver(0))
        .join("chunks")
        .join(format!("{handle}.chunk"));
    let master = cluster.master_addr();
    for args in [
        format!("fsck /piped --master {master}"),
        format!("fsck /piped --json --master {master}"),
        format!("inspect --records '{}'", file.display()),
        format!("replay /piped --master {master}"),
    ] {
        let err = into_a_closed_pipe(&args);
        assert!(err.trim().is_empty(), "`cairn {args}`: stderr {err}");
    }
}

/// Proves: `ls` shows a log's size (the sum of its chunks' lengths); `cairn rm LOG` deletes the
/// log (gone from `ls`, its replay fails) and a second `rm` fails with one line saying there is
/// no such log.
#[test]
fn rm_deletes_a_log_and_says_when_there_is_none() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    cluster.create_log("/doomed", LogOpts::chunk_bytes(1 << 20));
    cluster
        .append("a", "/doomed", vec![b"x".to_vec()], Duration::from_secs(30))
        .assert_all_acked();
    // An open chunk's length is what its replicas last reported: wait for the record's report.
    let bytes = cairn_tests::wait_until("a report of the record", Duration::from_secs(30), || {
        let length = cluster.stat("/doomed").chunks[0].length;
        (length > 32).then_some(length)
    });
    let ls = cluster.cairn(&["ls", "/doomed", "--json"]).run_ok();
    let listed: serde_json::Value = serde_json::from_str(ls.stdout_str().trim()).unwrap();
    assert_eq!(listed["bytes"], bytes, "ls shows the log's size");
    assert!(cluster.ls().stdout_str().contains("/doomed\tsize="));
    let rm = cluster.cairn(&["rm", "/doomed"]).run_ok();
    assert_eq!(rm.stdout_str().trim(), "deleted /doomed");
    assert!(!cluster.ls().stdout_str().contains("/doomed"));
    let replay = cluster.cairn(&["replay", "/doomed"]).run();
    assert!(!replay.success(), "{replay:?}");
    let again = cluster.cairn(&["rm", "/doomed"]).run();
    assert!(!again.success(), "{again:?}");
    assert_eq!(again.stderr_str().trim(), "error: no log /doomed");
}

/// Proves: `cairn completions bash` prints a bash completion script for `cairn` (naming its
/// subcommands), and an unknown shell is refused.
#[test]
fn completions_print_a_script() {
    let bash = Command::new(cairn_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success(), "{bash:?}");
    let script = String::from_utf8(bash.stdout).unwrap();
    assert!(script.contains("_cairn()"), "{script}");
    assert!(script.contains("complete -F _cairn"), "{script}");
    assert!(script.contains("fsck") && script.contains("rm"), "{script}");
    let unknown = Command::new(cairn_bin())
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
}

/// Proves: `cairn fsck` without a log checks every log: each one's table, then one line
/// counting them, exit 0 while all are healthy; `--json` prints one object per log per line;
/// a flipped byte in one replica of one log makes the whole run exit 1 and say so.
#[test]
fn fsck_without_a_log_checks_the_whole_namespace() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    for log in ["/first", "/second"] {
        cluster.create_log(log, LogOpts::chunk_bytes(8192));
        let lines: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("{log}-{i:0100}").into_bytes())
            .collect();
        cluster
            .append(log, log, lines, Duration::from_secs(60))
            .assert_all_acked();
    }
    let logs = cluster.ls().stdout_str().lines().count();
    let all = cluster.cairn(&["fsck"]).run_ok().stdout_str();
    assert!(
        all.contains("\n/first: ") && all.contains("\n/second: "),
        "{all}"
    );
    assert_eq!(
        all.lines().last().unwrap(),
        format!("{logs} log(s) checked: all healthy")
    );
    let json = cluster.cairn(&["fsck", "--json"]).run_ok().stdout_str();
    let paths: Vec<String> = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one object per line");
            v["path"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(paths.len(), logs);
    assert!(paths.contains(&"/first".to_owned()) && paths.contains(&"/second".to_owned()));

    // A sealed chunk: an open one's bytes may be served from the chunkserver's memory.
    let stat = cluster.stat("/second");
    let handle = stat
        .sealed()
        .first()
        .unwrap_or_else(|| panic!("a sealed chunk: {}", stat.raw))
        .handle
        .clone();
    let file = cluster
        .data_dir(Role::Chunkserver(1))
        .join("chunks")
        .join(format!("{handle}.chunk"));
    cairn_tests::damage::flip_byte(&file, 200);
    let damaged = cluster.cairn(&["fsck"]).run();
    assert!(!damaged.success(), "{damaged:?}");
    let out = damaged.stdout_str();
    assert!(out.contains("corrupt"), "{out}");
    assert_eq!(
        out.lines().last().unwrap(),
        format!("{logs} log(s) checked: NOT all healthy")
    );
}

/// Proves: mistakes get one clear line each: `--master` pointed at a chunkserver says it is not
/// a master (not "rpc failed (Unimplemented)"); a 2 GiB chunk size says it is too large (not
/// "not a multiple of 8", nor Rust range syntax); a replication factor above the live
/// chunkservers fails (not retried: `FAILED_PRECONDITION`) with both counts once the master has
/// waited its dead-after period for registrations (1 s here).
#[test]
fn mistakes_get_one_clear_line_each() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::fast_failure_detection());
    let one_line = |out: &cairn_tests::Output| {
        assert!(!out.success(), "{out:?}");
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err.trim().to_owned()
    };
    let chunkserver = cluster.chunkserver_addr(0);
    for args in [
        vec!["ls", "--master", chunkserver.as_str()],
        vec!["replay", "/x", "--master", chunkserver.as_str()],
    ] {
        let err = one_line(&Cmd::new(cairn_bin()).args(&args).run());
        assert!(err.contains("is not a Cairn master"), "{args:?}: {err}");
    }
    let big = one_line(
        &cluster
            .cairn(&["create", "/big", "--chunk-size", "2GiB"])
            .run(),
    );
    assert!(
        big.contains("is too large") && !big.contains("..="),
        "{big}"
    );
    // Past the master's first dead-after period (it waits that long for registrations).
    std::thread::sleep(Duration::from_millis(1500));
    let wide = one_line(
        &cluster
            .cairn(&["create", "/wide", "--replication", "5"])
            .run(),
    );
    assert!(
        wide.contains("replication 5 exceeds the 3 live chunkserver(s)"),
        "{wide}"
    );
}

/// Proves: size flags share one set of units: `create --chunk-size 256KiB` makes 262,144-byte
/// chunks, and `bench store --size 1KiB` (refused before: it took only a plain number) runs.
#[test]
fn sizes_take_units_on_every_flag() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    cluster
        .cairn(&["create", "/units", "--chunk-size", "256KiB"])
        .run_ok();
    assert_eq!(cluster.stat("/units").raw["chunk_bytes"], 262_144);
    let dir = tempfile::tempdir().unwrap();
    let bench = Cmd::new(cairn_bin())
        .args(["bench", "store", "--dir"])
        .args([dir.path()])
        .args([
            "--records",
            "200",
            "--size",
            "1KiB",
            "--chunk-bytes",
            "1MiB",
            "--json",
        ])
        .run_ok();
    let report: serde_json::Value = serde_json::from_slice(&bench.stdout).expect("JSON");
    assert_eq!(report["size"], 1024, "{report}");
    assert_eq!(report["chunk_bytes"], 1 << 20, "{report}");
}

/// Proves: `cairn --version` names the commit it was built from, and every role's first log
/// line does too; with `--log-format json` a role's stderr is one JSON object per line.
#[test]
fn version_and_commit_everywhere_and_json_logs() {
    let _serial = cairn_tests::serial();
    let version = Cmd::new(cairn_bin()).args(["--version"]).run_ok();
    let version = version.stdout_str();
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(cairn_tests::bin::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let built_from = match &commit {
        // The binary may be a little older than HEAD (built before the last commit): only its
        // form is checked then, and the commit must be one of this repository's.
        Some(head) if version.contains(head.as_str()) => head.clone(),
        _ => {
            let at = version.find("(commit ").expect("a commit in --version") + 8;
            version[at..at + 12].to_owned()
        }
    };
    assert!(
        built_from == "unknown" || built_from.chars().all(|c| c.is_ascii_hexdigit()),
        "{version}"
    );
    let cluster = Cluster::start(
        3,
        ClusterOpts {
            master_args: vec!["--log-format".into(), "json".into()],
            ..ClusterOpts::default()
        },
    );
    let stderr = cluster.server_stderr(Role::Master);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.starts_with("=====") && !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 2, "{stderr}");
    let first = &lines[0]["fields"];
    assert_eq!(first["message"], "starting", "{stderr}");
    assert_eq!(first["role"], "master");
    assert_eq!(first["commit"], built_from.as_str(), "{stderr}");
    let text = cluster.server_stderr(Role::Chunkserver(0));
    assert!(
        text.contains(&format!(
            "role=\"chunkserver\" version=\"{}\" commit=\"{built_from}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

/// Proves: an append blocked on a missing chunkserver says why while it waits (a warning naming
/// the master's reason), and completes once the chunkserver is back.
///
/// How: 1 master + 3 chunkservers, a replication-3 log; chunkserver 2 SIGKILLed; `cairn append`
/// started; chunkserver 2 restarted 4 s later.
#[test]
fn an_append_waiting_for_chunkservers_says_so() {
    let _serial = cairn_tests::serial();
    let mut cluster = Cluster::start(3, ClusterOpts::fast_failure_detection());
    cluster.create_log("/waits", LogOpts::chunk_bytes(1 << 20));
    cluster
        .append(
            "first",
            "/waits",
            vec![b"first".to_vec()],
            Duration::from_secs(30),
        )
        .assert_all_acked();
    cluster.kill_chunkserver(2);
    let lines: Vec<Vec<u8>> = (0..20).map(|i| format!("later-{i}").into_bytes()).collect();
    let append = cluster.spawn_append("/waits", &lines, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(4));
    cluster.restart_chunkserver(2);
    let out = append.wait();
    assert!(out.success(), "{out:?}");
    // The reason is the master's: the missing chunkserver by address until it counts as dead
    // (1 s here), then the number of live chunkservers against the number needed.
    let err = out.stderr_str();
    let missing = cluster.chunkserver_addr(2);
    assert!(
        err.contains("waiting for the master to place the log's open chunk")
            && (err.contains(&missing) || err.contains("live chunkservers")),
        "{err}"
    );
}
