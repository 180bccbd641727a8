//! The replica's side of a worker: the service binary re-launched as a worker process, spoken
//! to in frames over its stdin and stdout. One request at a time. Kept apart so that deadlines
//! (SIGKILL of a runaway handler) and crash handling can grow here.

use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::pipe::{read_frame, write_frame};
use crate::records::{WorkerReply, WorkerRequest};

/// A running worker process. Dropping it kills the process.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Starts `program args…` with piped stdin and stdout (stderr inherited).
    pub fn spawn(program: &Path, args: &[&str]) -> io::Result<Worker> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    /// The worker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Runs one request and waits for its reply. An error means the worker is gone or broke
    /// the protocol: drop it and start a fresh one.
    pub async fn call(&mut self, request: &WorkerRequest) -> io::Result<WorkerReply> {
        write_frame(&mut self.stdin, request).await?;
        read_frame(&mut self.stdout)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the worker process ended"))
    }

    /// Closes its stdin (the worker then exits) and waits for it.
    pub async fn shut_down(self) -> io::Result<std::process::ExitStatus> {
        let Worker {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        child.wait().await
    }
}
