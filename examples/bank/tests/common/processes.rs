//! Real processes for the multi-process tests: a `cairn-bank` role as a child process (killed
//! when dropped, its output lines readable) and a Cairn cluster in the test process with the
//! bank's logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bank_client::pb::OpenRequest;
use bank_client::pb::bank_client::BankClient;
use cairn_client::Client;
use cairn_exec::service_logs::ServiceLogs;

use super::BANK;

/// Lines of a process kept to be shown when a test fails.
const LINES_KEPT: usize = 80;

/// Environment variable: a directory where every line of each process is also written, to
/// `PID.log` (its first line the process's arguments).
const LOGS_ENV: &str = "BANK_TEST_LOGS";

/// A child process killed when dropped, its output lines in a channel (and the last
/// [`LINES_KEPT`] printed when it is dropped by a failing test).
pub(crate) struct Process {
    child: Child,
    name: String,
    lines: std::sync::mpsc::Receiver<String>,
    last: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

impl Process {
    pub(crate) fn spawn(args: &[&str]) -> Process {
        Process::spawn_program(BANK, args)
    }

    pub(crate) fn spawn_program(program: &str, args: &[&str]) -> Process {
        let mut child = Command::new(program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cairn-bank");
        let (tx, rx) = std::sync::mpsc::channel();
        let last = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let pid = child.id();
        if let Some(dir) = std::env::var_os(LOGS_ENV) {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("{pid}.log")),
                format!("{}\n", args.join(" ")),
            )
            .unwrap();
        }
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            let last = last.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    {
                        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                        if last.len() == LINES_KEPT {
                            last.pop_front();
                        }
                        last.push_back(strip_ansi(&line));
                    }
                    if let Some(dir) = std::env::var_os(LOGS_ENV) {
                        use std::io::Write;
                        let mut f = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(std::path::Path::new(&dir).join(format!("{pid}.log")))
                            .unwrap();
                        let _ = writeln!(f, "{}", strip_ansi(&line));
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Process {
            child,
            name: args.join(" "),
            lines: rx,
            last,
        }
    }

    /// The first line (stdout or stderr) containing every one of `words`, within 120 s.
    pub(crate) fn wait_line(&self, words: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {words:?}"));
            let line = strip_ansi(&line);
            if words.iter().all(|w| line.contains(w)) {
                return line;
            }
        }
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the process.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the PID of a child this value owns and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "signal {signal} to {}", self.name);
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!(
                "===== the last {} lines of `{}` =====",
                last.len(),
                self.name
            );
            for line in last.iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// `line` without terminal colour escapes.
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number in `key=N` of a log line.
pub(crate) fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    line[at + key.len() + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {line}"))
}

/// A cluster in this process on free-looking ports, with the bank's logs.
pub(crate) async fn cluster(dir: &std::path::Path) -> (cairn_local::LocalCluster, Client) {
    static NEXT_SLOT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    for _ in 0..8 {
        // Slots of 4 ports (master, 3 chunkservers) in 60..100 of this process's block of 100.
        let slot = NEXT_SLOT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let base = 20_000 + (std::process::id() as u16 % 200) * 100 + 60 + slot * 4;
        let config = cairn_local::LocalConfig {
            data: dir.join(format!("data{slot}")),
            chunkservers: 3,
            port: base,
            adopt_cluster_id: false,
        };
        let Ok(cluster) = cairn_local::LocalCluster::start(&config).await else {
            continue;
        };
        let client = Client::connect(&cluster.master_addr).await.unwrap();
        let logs = ServiceLogs::new("bank").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = logs.create(&client, 3).await {
            assert!(Instant::now() < deadline, "no service logs: {e:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return (cluster, client);
    }
    panic!("no cluster started");
}

/// A `front-door` of `program`'s service `bank` on `listen`, and the address it serves on (its
/// stdout line `front door ADDR`; its log lines on stderr say "front door ready").
pub(crate) fn front_door(program: &str, master: &str, listen: &str) -> (Process, String) {
    front_door_with(program, master, listen, &[])
}

/// [`front_door`] with `extra` arguments.
pub(crate) fn front_door_with(
    program: &str,
    master: &str,
    listen: &str,
    extra: &[&str],
) -> (Process, String) {
    let mut args = vec![
        "front-door",
        "--master",
        master,
        "--service",
        "bank",
        "--listen",
        listen,
    ];
    args.extend_from_slice(extra);
    let door = Process::spawn_program(program, &args);
    let line = door.wait_line(&["front door 127.0.0.1:"]);
    let addr = line.trim().strip_prefix("front door ").unwrap().to_owned();
    (door, addr)
}

/// Opens accounts `acct-0` … `acct-{accounts - 1}` with `initial` each through `channel`.
pub(crate) async fn open_accounts(
    channel: &tonic::transport::Channel,
    accounts: u64,
    initial: u64,
) {
    let mut bank = BankClient::new(channel.clone());
    for a in 0..accounts {
        bank.open(OpenRequest {
            account: format!("acct-{a}"),
            initial,
        })
        .await
        .expect("open an account");
    }
}

/// Replica `index` of the bank's service `bank`, with `extra` arguments.
pub(crate) fn replica(master: &str, index: u32, extra: &[&str]) -> Process {
    replica_of(BANK, master, index, extra)
}

/// Replica `index` of `program`'s service `bank`, with `extra` arguments.
pub(crate) fn replica_of(program: &str, master: &str, index: u32, extra: &[&str]) -> Process {
    let index = index.to_string();
    let mut args = vec![
        "replica",
        "--master",
        master,
        "--service",
        "bank",
        "--index",
        &index,
    ];
    args.extend_from_slice(extra);
    Process::spawn_program(program, &args)
}

/// A channel connected to the front door at `addr`.
pub(crate) async fn connect(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("a URL")
        .connect()
        .await
        .expect("connect to the front door")
}
