//! A real cluster: one `cairn master` and N `cairn chunkserver` processes on loopback ports, with
//! temporary data directories, driven through the `cairn` command line.
//!
//! With [`ClusterOpts::proxied`], a nemesis [`Proxy`] stands in front of the master and of every
//! chunkserver: each server listens on its own port, chunkservers advertise their proxy's address
//! (their name in `stat`) and reach the master through its proxy, and client commands use the
//! master's proxy. So every client → master, chunkserver → master, master → chunkserver, client →
//! chunkserver and chunkserver → chunkserver connection crosses the proxy of the server it goes
//! to, and [`Cluster::proxy`] controls what reaches that server.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::check::AppendRun;
use crate::contract::{self, LogStat, Replay};
use crate::proc::{self, Cmd, Output, Running};
use crate::proxy::{Mode, Proxy};

/// Chunkserver heartbeat period the harness asks for, in milliseconds (production: 1000).
pub const HEARTBEAT_MS_DEFAULT: u64 = 200;

/// How long a server may take to listen after its spawn.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a cluster may take to accept a probe append after (re)starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(45);

/// Deadline of the probe commands `wait_ready` runs.
const PROBE_COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts to start a server on a fresh port when the spawned one exits early (port taken).
const FRESH_PORT_ATTEMPTS: u32 = 5;

/// Attempts to restart a server on its old port (which names it) when it exits early.
const SAME_PORT_ATTEMPTS: u32 = 10;

/// Pause between two attempts on the same port.
const SAME_PORT_RETRY_DELAY: Duration = Duration::from_millis(300);

/// Environment variable: when set, the temporary directory (data and logs) of a failed test is
/// kept and its path printed; set to `always`, that of every test.
pub const KEEP_ENV: &str = "CAIRN_TESTS_KEEP";

/// How a [`Cluster`] is started.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// `--heartbeat-ms` of every chunkserver.
    pub heartbeat_ms: u64,
    /// Extra arguments for `cairn master`.
    pub master_args: Vec<String>,
    /// Extra arguments for every `cairn chunkserver`.
    pub chunkserver_args: Vec<String>,
    /// Extra environment variables (name, value) for every `cairn chunkserver`, e.g.
    /// `CAIRN_TEST_POWER_CUT=1` for the power-cut test mode.
    pub chunkserver_env: Vec<(String, String)>,
    /// `RUST_LOG` of the servers, unless the test's environment sets `RUST_LOG`.
    pub rust_log: String,
    /// Put a [`Proxy`] in front of every server (see the module docs).
    pub proxied: bool,
    /// The cluster's TLS files (`cairn certs init DIR`): every server gets `--tls-dir DIR` and
    /// every client command `CAIRN_TLS_DIR=DIR`. `None`: plaintext (on loopback).
    pub tls_dir: Option<PathBuf>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        Self {
            heartbeat_ms: HEARTBEAT_MS_DEFAULT,
            master_args: Vec::new(),
            chunkserver_args: Vec::new(),
            chunkserver_env: Vec::new(),
            rust_log: "info".to_owned(),
            proxied: false,
            tls_dir: None,
        }
    }
}

impl ClusterOpts {
    /// Failure detection shortened for fault tests: every server heartbeats every 200 ms, the
    /// master declares a chunkserver dead after 1 s of silence (and so starts repairs), and
    /// counts the replicas of one silent for 3 s as lost for a salvage.
    pub fn fast_failure_detection() -> Self {
        Self {
            heartbeat_ms: 200,
            master_args: [
                "--heartbeat-ms",
                "200",
                "--dead-after-ms",
                "1000",
                "--salvage-after-ms",
                "3000",
            ]
            .map(String::from)
            .to_vec(),
            ..Self::default()
        }
    }
}

/// One server process of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The master.
    Master,
    /// Chunkserver number `i` (from 0).
    Chunkserver(usize),
}

/// A server process and everything needed to start it again.
#[derive(Debug)]
struct Server {
    name: String,
    /// Where the process listens.
    addr: SocketAddr,
    /// In front of `addr` when the cluster is proxied; kept across restarts (chunkservers are
    /// named by the address they advertise).
    proxy: Option<Proxy>,
    data_dir: PathBuf,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Arguments for this server alone, after the cluster's (see
    /// [`Cluster::restart_chunkserver_with`]).
    extra_args: Vec<String>,
}

/// Options of a log created through [`Cluster::create_log`].
#[derive(Clone, Copy, Debug)]
pub struct LogOpts {
    /// `--chunk-size`, in bytes (header included).
    pub chunk_bytes: u64,
    /// `--replication`.
    pub replication: u32,
}

impl LogOpts {
    /// Replication 3 and chunks of `chunk_bytes`.
    pub fn chunk_bytes(chunk_bytes: u64) -> Self {
        Self {
            chunk_bytes,
            replication: 3,
        }
    }
}

/// A running cluster. Every process it started is killed (SIGKILL, by PID) and reaped when it is
/// dropped; if the test is panicking, the tails of every server's logs are printed first.
#[derive(Debug)]
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    opts: ClusterOpts,
    master: Server,
    chunkservers: Vec<Server>,
    probes: u32,
}

impl Cluster {
    /// Starts a master and `chunkservers` chunkservers and waits until a probe log with that many
    /// replicas accepts an append (so every chunkserver has registered).
    ///
    /// # Panics
    /// If a server does not come up, showing its logs.
    pub fn start(chunkservers: usize, opts: ClusterOpts) -> Self {
        let bin = crate::cairn_bin().to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("cairn-tests-")
            .tempdir()
            .expect("a temporary directory");
        let root = dir.path().to_path_buf();
        let master = Server::new(&root, "master");
        let chunkservers = (0..chunkservers)
            .map(|i| Server::new(&root, &format!("chunkserver{i}")))
            .collect();
        let mut cluster = Self {
            dir: Some(dir),
            bin,
            opts,
            master,
            chunkservers,
            probes: 0,
        };
        eprintln!(
            "cairn-tests: cluster in {} (set {KEEP_ENV}=1 to keep it after a failure)",
            root.display()
        );
        let started = Instant::now();
        cluster.start_fresh(Role::Master);
        for i in 0..cluster.chunkservers.len() {
            cluster.start_fresh(Role::Chunkserver(i));
        }
        cluster.wait_ready();
        eprintln!(
            "cairn-tests: cluster ready in {:.1} s: master {}, chunkservers {:?}",
            started.elapsed().as_secs_f64(),
            cluster.master_addr(),
            cluster.chunkserver_addrs()
        );
        cluster
    }

    /// The master's address as chunkservers and clients use it, `HOST:PORT` (its proxy's, when
    /// proxied).
    pub fn master_addr(&self) -> String {
        self.advertised_addr(Role::Master).to_string()
    }

    /// Chunkserver `i`'s advertised address (its proxy's, when proxied), also its name in `stat`.
    pub fn chunkserver_addr(&self, i: usize) -> String {
        self.advertised_addr(Role::Chunkserver(i)).to_string()
    }

    /// The number of the chunkserver whose advertised address is `addr` (as `stat` lists it).
    ///
    /// # Panics
    /// If no chunkserver of the cluster has that address.
    pub fn chunkserver_index(&self, addr: &str) -> usize {
        (0..self.chunkservers.len())
            .find(|&i| self.chunkserver_addr(i) == addr)
            .unwrap_or_else(|| panic!("{addr} is not a chunkserver of the cluster"))
    }

    /// Every chunkserver's advertised address, in order.
    pub fn chunkserver_addrs(&self) -> Vec<String> {
        (0..self.chunkservers.len())
            .map(|i| self.chunkserver_addr(i))
            .collect()
    }

    /// The address a server is known by: its proxy's when proxied, else where it listens.
    pub fn advertised_addr(&self, role: Role) -> SocketAddr {
        let server = self.server(role);
        server.proxy.as_ref().map_or(server.addr, Proxy::addr)
    }

    /// The address a server process listens on (behind its proxy, when proxied).
    pub fn listen_addr(&self, role: Role) -> SocketAddr {
        self.server(role).addr
    }

    /// The proxy in front of a server.
    ///
    /// # Panics
    /// If the cluster was not started with [`ClusterOpts::proxied`].
    pub fn proxy(&self, role: Role) -> &Proxy {
        self.server(role)
            .proxy
            .as_ref()
            .unwrap_or_else(|| panic!("{role:?} has no proxy: set ClusterOpts::proxied"))
    }

    /// Sets every proxy of the cluster back to [`Mode::Pass`] (a no-op when not proxied).
    pub fn heal(&self) {
        for server in std::iter::once(&self.master).chain(&self.chunkservers) {
            if let Some(proxy) = &server.proxy {
                proxy.set(Mode::Pass);
            }
        }
    }

    /// Every gRPC port of the cluster, where the processes listen (not their proxies):
    /// `(name, address)` of the master and each chunkserver.
    pub fn grpc_addrs(&self) -> Vec<(String, SocketAddr)> {
        std::iter::once(&self.master)
            .chain(&self.chunkservers)
            .map(|s| (s.name.clone(), s.addr))
            .collect()
    }

    /// The cluster's temporary directory (data directories and logs).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("kept until drop").path()
    }

    /// A server's data directory.
    pub fn data_dir(&self, role: Role) -> &Path {
        &self.server(role).data_dir
    }

    /// Everything a server has written to stderr so far (its log, over all its starts).
    pub fn server_stderr(&self, role: Role) -> String {
        let bytes = fs::read(&self.server(role).stderr_log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A client command: `cairn ARGS… --master ADDR`, with the default deadline and the test's
    /// environment (so its stderr is what a user would see).
    pub fn cairn<S: AsRef<str>>(&self, args: &[S]) -> Cmd {
        let cmd = Cmd::new(&self.bin)
            .args(args.iter().map(|a| a.as_ref().to_owned()))
            .args(["--master".to_owned(), self.master_addr()]);
        match &self.opts.tls_dir {
            Some(dir) => cmd.env("CAIRN_TLS_DIR", dir),
            None => cmd,
        }
    }

    // ---- process control ----

    /// The process id of a running server, if it runs.
    pub fn pid(&self, role: Role) -> Option<u32> {
        self.server(role).child.as_ref().map(Child::id)
    }

    /// Kills the master with SIGKILL and reaps it.
    pub fn kill_master(&mut self) {
        self.kill(Role::Master);
    }

    /// Starts the master again on its old port and data directory, and waits until the cluster
    /// accepts a probe append (chunkservers re-registered).
    pub fn restart_master(&mut self) {
        self.kill(Role::Master);
        self.start_same_port(Role::Master);
        self.wait_ready();
    }

    /// Kills chunkserver `i` with SIGKILL and reaps it.
    pub fn kill_chunkserver(&mut self, i: usize) {
        self.kill(Role::Chunkserver(i));
    }

    /// Kills chunkserver `i` (SIGKILL) if it runs, starts it again on its old port and data
    /// directory, and waits until the cluster accepts a probe append on all chunkservers.
    pub fn restart_chunkserver(&mut self, i: usize) {
        self.kill(Role::Chunkserver(i));
        self.start_same_port(Role::Chunkserver(i));
        self.wait_ready();
    }

    /// Like [`Cluster::restart_chunkserver`], with `extra_args` added to this chunkserver's
    /// command line (after the cluster's `chunkserver_args`) for this and every later start;
    /// an empty list drops earlier ones.
    pub fn restart_chunkserver_with<S: AsRef<str>>(&mut self, i: usize, extra_args: &[S]) {
        self.chunkservers[i].extra_args =
            extra_args.iter().map(|a| a.as_ref().to_owned()).collect();
        self.restart_chunkserver(i);
    }

    /// Sets the arguments added to this server's command line (after the cluster's) for every
    /// later start; an empty list drops earlier ones. The running process is left alone.
    pub fn set_extra_args<S: AsRef<str>>(&mut self, role: Role, extra_args: &[S]) {
        self.server_mut(role).extra_args =
            extra_args.iter().map(|a| a.as_ref().to_owned()).collect();
    }

    /// Waits until a server exits on its own (a crash the test caused), reaps it and returns its
    /// exit status.
    ///
    /// # Panics
    /// If it is not running, or still runs after `timeout`.
    pub fn wait_exit(&mut self, role: Role, timeout: Duration) -> std::process::ExitStatus {
        let server = self.server_mut(role);
        let name = server.name.clone();
        let child = server
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("{name} is not running"));
        let status = wait_until(&format!("{name} exits"), timeout, || {
            child.try_wait().expect("try_wait on a child")
        });
        server.child = None;
        eprintln!("cairn-tests: {name} exited on its own ({status})");
        status
    }

    /// Kills a server with SIGKILL and reaps it (bounded); a no-op if it is not running.
    pub fn kill(&mut self, role: Role) {
        let server = self.server_mut(role);
        if let Some(mut child) = server.child.take() {
            let _ = child.kill();
            let status = proc::reap(&mut child, &server.name);
            eprintln!("cairn-tests: killed {} ({status})", server.name);
        }
    }

    /// Starts a stopped server again on its old port and data directory, without waiting for the
    /// cluster to be ready.
    pub fn start_server(&mut self, role: Role) {
        assert!(self.pid(role).is_none(), "{role:?} is already running");
        self.start_same_port(role);
    }

    /// Suspends a server with SIGSTOP.
    pub fn pause(&mut self, role: Role) {
        self.signal(role, libc::SIGSTOP);
    }

    /// Resumes a server suspended by [`Cluster::pause`] with SIGCONT.
    pub fn resume(&mut self, role: Role) {
        self.signal(role, libc::SIGCONT);
    }

    /// Sends `signal` to a running server, by its PID.
    pub fn signal(&mut self, role: Role, signal: libc::c_int) {
        let pid = self
            .pid(role)
            .unwrap_or_else(|| panic!("{role:?} is not running"));
        // SAFETY: kill(2) on our own child's PID; the child is not reaped yet (we hold its Child),
        // so the PID cannot have been reused.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Panics, showing logs, if a server the harness started has exited on its own.
    pub fn assert_running(&mut self) {
        let mut dead = Vec::new();
        for server in std::iter::once(&mut self.master).chain(&mut self.chunkservers) {
            if let Some(child) = &mut server.child
                && let Ok(Some(status)) = child.try_wait()
            {
                dead.push(format!("{} exited: {status}", server.name));
            }
        }
        assert!(dead.is_empty(), "servers died: {dead:?}");
    }

    /// Waits until a fresh probe log, replicated on every chunkserver, accepts an append: the
    /// master is up and every chunkserver has registered.
    ///
    /// # Panics
    /// After [`READY_TIMEOUT`], or as soon as a server exits.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let replication = self.chunkservers.len().to_string();
        let mut last = None;
        while Instant::now() < deadline {
            self.assert_running();
            self.probes += 1;
            let probe = format!("/cairn-tests-probe-{}", self.probes);
            let create = self
                .cairn(&[
                    "create",
                    &probe,
                    "--replication",
                    &replication,
                    "--chunk-size",
                    "65536",
                ])
                .timeout(PROBE_COMMAND_TIMEOUT)
                .run();
            if create.success() {
                // The log exists; retry only the append until it is accepted.
                while Instant::now() < deadline {
                    self.assert_running();
                    let append = self
                        .cairn(&["append", &probe])
                        .stdin("probe\n")
                        .timeout(PROBE_COMMAND_TIMEOUT)
                        .run();
                    if append.success() {
                        return;
                    }
                    last = Some(append);
                    thread::sleep(Duration::from_millis(200));
                }
            } else {
                last = Some(create);
                thread::sleep(Duration::from_millis(200));
            }
        }
        panic!("cluster not ready after {READY_TIMEOUT:?}; last probe: {last:?}");
    }

    // ---- client commands with the contract's outputs parsed ----

    /// `cairn create PATH --replication R --chunk-size BYTES`, which must succeed.
    pub fn create_log(&self, path: &str, opts: LogOpts) {
        self.cairn(&[
            "create",
            path,
            "--replication",
            &opts.replication.to_string(),
            "--chunk-size",
            &opts.chunk_bytes.to_string(),
        ])
        .run_ok();
    }

    /// Starts `cairn append PATH --json` fed with `lines` (one record each), without waiting.
    pub fn spawn_append(&self, path: &str, lines: &[Vec<u8>], timeout: Duration) -> Running {
        self.cairn(&["append", path, "--json"])
            .stdin(contract::join_lines(lines))
            .timeout(timeout)
            .spawn()
    }

    /// Runs `cairn append PATH --json` fed with `lines` and returns the run for the checker (it
    /// does not assert success: see [`AppendRun::assert_all_acked`]).
    pub fn append(
        &self,
        name: &str,
        path: &str,
        lines: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> AppendRun {
        let output = self.spawn_append(path, &lines, timeout).wait();
        AppendRun::from_output(name, lines, output)
    }

    /// `cairn replay PATH --json [--keep-duplicates]`, which must succeed, parsed.
    pub fn replay(&self, path: &str, keep_duplicates: bool, timeout: Duration) -> Replay {
        let mut args = vec!["replay", path, "--json"];
        if keep_duplicates {
            args.push("--keep-duplicates");
        }
        let output = self.cairn(&args).timeout(timeout).run_ok();
        Replay::parse(output)
    }

    /// `cairn stat PATH --json`, which must succeed, parsed.
    pub fn stat(&self, path: &str) -> LogStat {
        let output = self.cairn(&["stat", path, "--json"]).run_ok();
        LogStat::parse(&output)
    }

    /// `cairn ls`, which must succeed.
    pub fn ls(&self) -> Output {
        self.cairn(&["ls"]).run_ok()
    }

    /// The last `max_lines` lines of each server's stderr and stdout logs.
    pub fn log_tails(&self, max_lines: usize) -> String {
        let mut out = String::new();
        for server in std::iter::once(&self.master).chain(&self.chunkservers) {
            for (kind, path) in [
                ("stderr", &server.stderr_log),
                ("stdout", &server.stdout_log),
            ] {
                let bytes = fs::read(path).unwrap_or_default();
                if bytes.is_empty() {
                    continue;
                }
                out.push_str(&format!(
                    "===== {} {kind} ({}) =====\n{}",
                    server.name,
                    path.display(),
                    proc::tail_text(&bytes, max_lines)
                ));
            }
        }
        out
    }

    // ---- internals ----

    fn server(&self, role: Role) -> &Server {
        match role {
            Role::Master => &self.master,
            Role::Chunkserver(i) => &self.chunkservers[i],
        }
    }

    fn server_mut(&mut self, role: Role) -> &mut Server {
        match role {
            Role::Master => &mut self.master,
            Role::Chunkserver(i) => &mut self.chunkservers[i],
        }
    }

    /// The server's command line.
    fn server_args(&self, role: Role) -> Vec<String> {
        let server = self.server(role);
        let addr = server.addr.to_string();
        let advertised = self.advertised_addr(role).to_string();
        let data = server.data_dir.to_string_lossy().into_owned();
        let mut args: Vec<String> = match role {
            Role::Master => vec![
                "master".into(),
                "--listen".into(),
                addr,
                "--data".into(),
                data,
            ],
            Role::Chunkserver(_) => vec![
                "chunkserver".into(),
                "--listen".into(),
                addr,
                "--advertise".into(),
                advertised,
                "--master".into(),
                self.master_addr(),
                "--data".into(),
                data,
                "--heartbeat-ms".into(),
                self.opts.heartbeat_ms.to_string(),
            ],
        };
        args.extend(match role {
            Role::Master => self.opts.master_args.iter().cloned(),
            Role::Chunkserver(_) => self.opts.chunkserver_args.iter().cloned(),
        });
        if let Some(dir) = &self.opts.tls_dir {
            args.extend(["--tls-dir".to_owned(), dir.to_string_lossy().into_owned()]);
        }
        args.extend(server.extra_args.iter().cloned());
        args
    }

    /// First start: a fresh free port, and another one if the server exits early (the port was
    /// taken between our probe and its bind).
    fn start_fresh(&mut self, role: Role) {
        let mut failures = Vec::new();
        let proxied = self.opts.proxied;
        for _ in 0..FRESH_PORT_ATTEMPTS {
            let server = self.server_mut(role);
            server.addr = free_addr();
            if proxied {
                server.proxy = Some(Proxy::start(server.addr));
            }
            match self.spawn_server(role) {
                Ok(()) => return,
                Err(e) => failures.push(e),
            }
        }
        // The cluster's Drop prints the logs.
        panic!("{role:?} did not start: {failures:#?}");
    }

    /// Restart on the server's old port, which is its identity (chunkservers are named by address;
    /// chunkservers know the master by address).
    fn start_same_port(&mut self, role: Role) {
        let mut failures = Vec::new();
        for _ in 0..SAME_PORT_ATTEMPTS {
            match self.spawn_server(role) {
                Ok(()) => return,
                Err(e) => failures.push(e),
            }
            thread::sleep(SAME_PORT_RETRY_DELAY);
        }
        panic!("{role:?} did not restart: {failures:#?}");
    }

    /// Spawns the server, its output appended to its log files, and waits until it listens.
    fn spawn_server(&mut self, role: Role) -> Result<(), String> {
        let args = self.server_args(role);
        let env = match role {
            Role::Master => Vec::new(),
            Role::Chunkserver(_) => self.opts.chunkserver_env.clone(),
        };
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| self.opts.rust_log.clone());
        let bin = self.bin.clone();
        let server = self.server_mut(role);
        server.starts += 1;
        let stdout = open_log(&server.stdout_log, server.starts, &args);
        let stderr = open_log(&server.stderr_log, server.starts, &args);
        let mut command = Command::new(&bin);
        command
            .args(&args)
            .env("RUST_LOG", rust_log)
            .env("RUST_BACKTRACE", "1")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        proc::die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", bin.display()))?;
        let addr = server.addr;
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{} on {addr} exited early: {status}", server.name));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Someone listens; make sure it is our child, not a squatter, before trusting it.
                thread::sleep(Duration::from_millis(50));
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("{} on {addr} exited early: {status}", server.name));
                }
                server.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                proc::reap(&mut child, &server.name);
                return Err(format!(
                    "{} did not listen on {addr} within {LISTEN_TIMEOUT:?}",
                    server.name
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        if panicking {
            eprintln!(
                "cairn-tests: test failed; server logs:\n{}",
                self.log_tails(60)
            );
        }
        for i in 0..self.chunkservers.len() {
            self.kill(Role::Chunkserver(i));
        }
        self.kill(Role::Master);
        let keep = match std::env::var(KEEP_ENV) {
            Ok(v) => panicking || v == "always",
            Err(_) => false,
        };
        if keep && let Some(dir) = self.dir.take() {
            eprintln!("cairn-tests: kept {}", dir.keep().display());
        }
    }
}

impl Server {
    fn new(root: &Path, name: &str) -> Self {
        let data_dir = root.join(name);
        fs::create_dir_all(&data_dir).expect("create a data directory");
        let logs = root.join("logs");
        fs::create_dir_all(&logs).expect("create the log directory");
        Self {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            proxy: None,
            data_dir,
            stdout_log: logs.join(format!("{name}.stdout")),
            stderr_log: logs.join(format!("{name}.stderr")),
            child: None,
            starts: 0,
            extra_args: Vec::new(),
        }
    }
}

/// Opens a server's log for appending, marking where this start begins.
fn open_log(path: &Path, start: u32, args: &[String]) -> File {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a server log");
    let _ = writeln!(
        file,
        "===== cairn-tests: start #{start}: cairn {}",
        args.join(" ")
    );
    file
}

/// A loopback address with a port that was free a moment ago (bound to port 0, read, released).
/// Callers must handle losing the race for it (see `start_fresh`).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound address")
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
///
/// # Panics
/// On timeout, naming `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
