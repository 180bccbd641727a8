//! The harness itself, without a cluster: the binary is built and runs, deadlines kill hung
//! commands, and the garbage helpers talk to a plain TCP listener.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use cairn_tests::{Cmd, cairn_bin, garbage};

/// Proves the build step works from a plain `cargo test`: the `cairn` binary exists, runs, and
/// prints its help on `--help` (exit 0).
#[test]
fn cairn_binary_is_built_and_runs() {
    let out = Cmd::new(cairn_bin())
        .args(["--help"])
        .timeout(Duration::from_secs(30))
        .run_ok();
    assert!(
        out.stdout_str().contains("cairn") || out.stdout_str().contains("Usage"),
        "{out:?}"
    );
}

/// Proves a hung command fails instead of hanging: `sleep 30` with a 300 ms deadline is killed
/// and reported as timed out well before 30 s; stdin is fed and stdout read line by line.
#[test]
fn deadlines_kill_hung_commands_and_lines_stream() {
    let started = Instant::now();
    let out = Cmd::new("sleep")
        .args(["30"])
        .timeout(Duration::from_millis(300))
        .run();
    assert!(out.timed_out && !out.success(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let mut cat = Cmd::new("cat")
        .stdin(b"one\ntwo\n".to_vec())
        .timeout(Duration::from_secs(10))
        .spawn();
    assert_eq!(
        cat.next_line(Duration::from_secs(5)),
        Some(b"one\n".to_vec())
    );
    let out = cat.wait();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");
}

/// Proves the garbage helpers send what they say and survive a server that hangs up: a listener
/// thread reads each connection to its end and counts the bytes.
#[test]
fn garbage_helpers_deliver_their_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            sizes.push(buf.len());
        }
        sizes
    });
    let mut rng = cairn_tests::workload::Rng::new(1);
    let random = garbage::random_bytes(1000, &mut rng);
    let a = garbage::send(addr, &random, true).unwrap();
    assert!(a.closed);
    let grpc = garbage::grpc_request("/cairn.v1.Master/OpenChunk", u32::MAX, b"x");
    garbage::send(addr, &grpc, true).unwrap();
    assert_eq!(server.join().unwrap(), vec![1000, grpc.len()]);
}
