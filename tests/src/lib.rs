//! `cairn-tests`: the multi-process test harness. It spawns the real `cairn` binary — a master
//! and chunkservers on loopback ports with temporary data directories — and drives it through the
//! command-line contract of issue 3 (item 5), so the tests exercise exactly what users run,
//! including SIGKILL, restarts and SIGSTOP that need real processes.
//!
//! # Layout
//! - [`bin`]: builds the `cairn` binary once per test process (`cargo build -p cairn-cli --bin
//!   cairn --features test-faults`, same profile and target directory as the test executable),
//!   reuses a fresh one that has the test faults, or takes `$CAIRN_BIN`.
//! - [`proc`]: [`Cmd`]/[`Running`]/[`Output`]: child processes with deadlines; a hung command
//!   fails its test instead of hanging CI.
//! - [`cluster`]: [`Cluster`]: `cairn master` + N `cairn chunkserver`, readiness, kill/restart,
//!   pause/resume, client commands with parsed outputs, log tails on failure.
//! - [`contract`]: parsers of `append --json`, `replay --json` and `stat --json`.
//! - [`check`]: the one checker: a [`History`] of attempts against the final replays, a later
//!   replay, readers run during faults and replica scans, with one class per invariant
//!   ([`Report`]); [`check_runs`] for `append --json` runs, which it turns into a history.
//! - [`damage`]: bit rot in files on disk (`flip_byte`), under a possibly running server.
//! - [`examples`]: [`client_example`]: the client library's example programs, built if
//!   needed, for the test that runs them.
//! - [`workload`]: unique, self-describing record lines of chosen sizes from a seed.
//! - [`garbage`]: raw-TCP garbage for gRPC ports.
//! - [`small_chunks`]: the 4-chunkserver, 64 KiB-chunk cluster of the disk-fault tests and
//!   their shared checks.
//! - [`history`]: the JSONL client history ([`History`]): every attempt and its outcome.
//! - [`payload`]: self-describing record payloads ([`Payload`]) naming writer, sequence and
//!   attempt, with a blake3 of the body.
//! - [`proxy`]: [`Proxy`]: a userspace TCP nemesis proxy (pass, blackhole, delay, reset), per
//!   direction, with byte counters.
//!
//! # Invariants of the harness
//! - Every process it starts is killed by PID and reaped: servers when the [`Cluster`] drops,
//!   commands when their [`Running`] drops; all carry a parent-death signal as a backstop.
//! - Every wait is bounded in time, every loop in count or time.
//! - When a test panics, the dropped [`Cluster`] prints the tails of every server's logs
//!   (`CAIRN_TESTS_KEEP=1` also keeps its directory).
//!
//! # Example
//! ```no_run
//! use cairn_tests::{Cluster, ClusterOpts, LogOpts};
//! use std::time::Duration;
//!
//! let _serial = cairn_tests::serial();
//! let cluster = Cluster::start(3, ClusterOpts::default());
//! cluster.create_log("/demo", LogOpts::chunk_bytes(64 << 10));
//! let run = cluster.append("w", "/demo", vec![b"hello".to_vec()], Duration::from_secs(30));
//! run.assert_all_acked();
//! let replay = cluster.replay("/demo", false, Duration::from_secs(30));
//! assert_eq!(replay.payloads(), vec![b"hello".to_vec()]);
//! ```

pub mod bin;
pub mod check;
pub mod cluster;
pub mod contract;
pub mod damage;
pub mod examples;
pub mod garbage;
pub mod history;
pub mod payload;
pub mod proc;
pub mod proxy;
pub mod small_chunks;
pub mod workload;

use std::sync::{Mutex, MutexGuard};

pub use bin::cairn_bin;
pub use check::{AppendRun, Report, check_runs, runs::check_runs_skipping};
pub use cluster::{Cluster, ClusterOpts, LogOpts, Role, wait_until};
pub use contract::{Ack, ChunkStat, Event, LogStat, Record, Replay, WriterId};
pub use examples::client_example;
pub use history::History;
pub use payload::Payload;
pub use proc::{Cmd, Output, Running};
pub use proxy::{Direction, Mode, Proxy};

/// Serialises the cluster tests of one test process: on two shared cores, two clusters at once
/// would only make each other's timings flaky. Take it first thing in every test; a test that
/// panicked while holding it does not poison it for the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
