//! Running child processes with deadlines: a hung `cairn` command fails its test instead of hanging
//! CI, and no child outlives the harness.
//!
//! Every child gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies if the thread that spawned it exits
//! (a test that panics, or a harness killed by CI). Spawn children from the thread that waits for
//! them (the test's own thread), never from a short-lived helper thread.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Default deadline of one client command.
pub const COMMAND_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// How often a waiting loop polls a child.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long to wait for a child to be reaped after SIGKILL before giving up on it.
pub const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// A command to run, with its stdin and deadline.
#[derive(Debug)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    /// A command running `program` with no stdin and [`COMMAND_TIMEOUT_DEFAULT`].
    pub fn new(program: impl AsRef<Path>) -> Self {
        Self {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout: COMMAND_TIMEOUT_DEFAULT,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Feeds `bytes` to the child's stdin (from a thread, then closes it). Without this the child's
    /// stdin is empty (`/dev/null`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets the deadline, counted from the spawn.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Spawns the command; stdout is read line by line (see [`Running::next_line`]), stderr is
    /// collected.
    ///
    /// # Panics
    /// If the program cannot be started.
    pub fn spawn(self) -> Running {
        let label = self.label();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{label}`: {e}"));
        let stdin_thread = self.stdin.map(|bytes| {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            thread::spawn(move || {
                // A child that exits early closes the pipe; its exit status tells the story.
                let _ = pipe.write_all(&bytes);
            })
        });
        let (line_tx, lines) = mpsc::channel();
        let mut stdout = BufReader::with_capacity(1 << 16, child.stdout.take().expect("piped"));
        let stdout_thread = thread::spawn(move || {
            loop {
                let mut line = Vec::new();
                match stdout.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line_tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let stderr_thread = thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        Running {
            label,
            child: Some(child),
            started: Instant::now(),
            timeout: self.timeout,
            lines,
            stdout: Vec::new(),
            stdout_thread: Some(stdout_thread),
            stderr_thread: Some(stderr_thread),
            stdin_thread,
        }
    }

    /// Runs the command to completion (or its deadline) and returns what it did.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// Runs the command and panics, showing its output, unless it exits 0 in time.
    pub fn run_ok(self) -> Output {
        let out = self.run();
        out.assert_success();
        out
    }

    /// The command line, for messages.
    fn label(&self) -> String {
        let mut label = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for arg in &self.args {
            label.push(' ');
            label.push_str(&arg.to_string_lossy());
        }
        label
    }
}

/// Makes the child die with SIGKILL when the spawning thread exits, so no process outlives the
/// harness even if it is killed.
pub(crate) fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running command. Dropping it kills the child (SIGKILL) and reaps it.
pub struct Running {
    label: String,
    child: Option<Child>,
    started: Instant,
    timeout: Duration,
    lines: Receiver<Vec<u8>>,
    stdout: Vec<u8>,
    stdout_thread: Option<JoinHandle<()>>,
    stderr_thread: Option<JoinHandle<Vec<u8>>>,
    stdin_thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("label", &self.label)
            .field("pid", &self.pid())
            .finish()
    }
}

impl Running {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The next stdout line (with its `\n`, if any), waiting at most `timeout` (and never past the
    /// command's deadline). `None` on timeout or at the end of stdout. Every line returned is also
    /// kept for [`Output::stdout`].
    pub fn next_line(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = (Instant::now() + timeout).min(self.started + self.timeout);
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.stdout.extend_from_slice(&line);
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Whether the child has exited (without reaping its output).
    pub fn has_exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// Waits for the child to exit, until the command's deadline; past it, kills the child and
    /// returns an [`Output`] with `timed_out` set.
    pub fn wait(mut self) -> Output {
        let deadline = self.started + self.timeout;
        let mut child = self.child.take().expect("not yet waited");
        let (status, timed_out) = loop {
            // Drain stdout as we go so a chatty child never blocks on a full pipe.
            while let Ok(line) = self.lines.try_recv() {
                self.stdout.extend_from_slice(&line);
            }
            match child.try_wait() {
                Ok(Some(status)) => break (status, false),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    break (reap(&mut child, &self.label), true);
                }
                Ok(None) => thread::sleep(POLL_INTERVAL),
                Err(e) => panic!("waiting for `{}`: {e}", self.label),
            }
        };
        self.collect(status, timed_out)
    }

    /// Kills the child (SIGKILL), reaps it and returns what it printed.
    pub fn kill(mut self) -> Output {
        let mut child = self.child.take().expect("not yet waited");
        let _ = child.kill();
        let status = reap(&mut child, &self.label);
        self.collect(status, false)
    }

    /// Joins the I/O threads and builds the [`Output`].
    fn collect(mut self, status: ExitStatus, timed_out: bool) -> Output {
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.extend_from_slice(&line);
        }
        let stderr = self
            .stderr_thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        if let Some(t) = self.stdin_thread.take() {
            let _ = t.join();
        }
        Output {
            label: std::mem::take(&mut self.label),
            status,
            timed_out,
            elapsed: self.started.elapsed(),
            stdout: std::mem::take(&mut self.stdout),
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            reap(&mut child, &self.label);
        }
    }
}

/// Waits (bounded) for a killed child; a child that cannot be reaped in [`REAP_TIMEOUT`] is
/// reported and left (it got SIGKILL and its parent-death signal, so it cannot linger long).
pub(crate) fn reap(child: &mut Child, label: &str) -> ExitStatus {
    let deadline = Instant::now() + REAP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!(
                    "cairn-tests: `{label}` (pid {}) not reaped after SIGKILL",
                    child.id()
                );
                return ExitStatus::from_raw(libc::SIGKILL);
            }
            Ok(None) => thread::sleep(POLL_INTERVAL),
            Err(e) => {
                eprintln!("cairn-tests: waiting for `{label}`: {e}");
                return ExitStatus::from_raw(libc::SIGKILL);
            }
        }
    }
}

/// What a finished command did.
#[derive(Clone)]
pub struct Output {
    /// The command line.
    pub label: String,
    /// Its exit status (SIGKILL if the harness killed it).
    pub status: ExitStatus,
    /// Whether the harness killed it at its deadline.
    pub timed_out: bool,
    /// From spawn to exit.
    pub elapsed: Duration,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// The output of work done in-process (e.g. an appender driven through the client library),
    /// so it can be checked like a command's: exit 0 if `ok`, else 1 with `stderr`.
    pub fn in_process(label: &str, ok: bool, stderr: String, elapsed: Duration) -> Self {
        Self {
            label: label.to_owned(),
            status: ExitStatus::from_raw(if ok { 0 } else { 1 << 8 }),
            timed_out: false,
            elapsed,
            stdout: Vec::new(),
            stderr: stderr.into_bytes(),
        }
    }

    /// Exited 0 within its deadline.
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.success()
    }

    /// Stdout as text (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (lossy).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics, showing the output, unless the command exited 0 in time.
    pub fn assert_success(&self) {
        assert!(self.success(), "command failed: {self:?}");
    }

    /// Panics unless the command exited non-zero on its own (not killed at its deadline, not
    /// killed by a signal such as a panic's abort).
    pub fn assert_clean_failure(&self) {
        assert!(
            !self.timed_out && self.status.code().is_some_and(|c| c != 0),
            "expected a clean non-zero exit: {self:?}"
        );
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.timed_out {
            format!(
                "killed at its deadline after {:.1} s",
                self.elapsed.as_secs_f64()
            )
        } else {
            format!("{} after {:.1} s", self.status, self.elapsed.as_secs_f64())
        };
        writeln!(f, "`{}`: {status}", self.label)?;
        writeln!(f, "--- stdout (tail) ---\n{}", tail_text(&self.stdout, 20))?;
        write!(f, "--- stderr (tail) ---\n{}", tail_text(&self.stderr, 40))
    }
}

/// The last `max_lines` lines of `bytes` as text, each cut to 300 characters.
pub fn tail_text(bytes: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max_lines);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("[{skip} earlier lines]\n"));
    }
    for line in &lines[skip..] {
        let cut: String = line.chars().take(300).collect();
        out.push_str(&cut);
        if cut.len() < line.len() {
            out.push('…');
        }
        out.push('\n');
    }
    out
}
