//! The replica's side of a worker: the service binary re-launched as a worker process, spoken
//! to in frames over its stdin and stdout. One request at a time. Kept apart so that deadlines
//! (SIGKILL of a runaway handler) and crash handling can grow here.

use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::pipe::{PIPE_BUFFER_BYTES, read_frame, write_frame, write_frame_unflushed};
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

    /// The worker's two directions and its process, to pipeline requests: send many, then
    /// read the replies in the same order (the worker still runs one request at a time).
    pub fn split(self) -> (WorkerInput, WorkerOutput, WorkerProcess) {
        let Worker {
            child,
            stdin,
            stdout,
        } = self;
        (
            WorkerInput {
                stdin: BufWriter::with_capacity(PIPE_BUFFER_BYTES, stdin),
            },
            WorkerOutput { stdout },
            WorkerProcess { child },
        )
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

/// The request side of a split [`Worker`].
#[derive(Debug)]
pub struct WorkerInput {
    stdin: BufWriter<ChildStdin>,
}

impl WorkerInput {
    /// Queues one request (sent at the next [`WorkerInput::flush`] or when the buffer fills).
    pub async fn send(&mut self, request: &WorkerRequest) -> io::Result<()> {
        write_frame_unflushed(&mut self.stdin, request).await
    }

    /// Sends every queued request.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stdin.flush().await
    }
}

/// The reply side of a split [`Worker`].
#[derive(Debug)]
pub struct WorkerOutput {
    stdout: BufReader<ChildStdout>,
}

impl WorkerOutput {
    /// The reply to the oldest request not yet answered. An error means the worker is gone or
    /// broke the protocol.
    pub async fn next_reply(&mut self) -> io::Result<WorkerReply> {
        read_frame(&mut self.stdout)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the worker process ended"))
    }

    /// Whether a whole reply is already buffered, so that [`WorkerOutput::next_reply`] returns
    /// it without waiting for the worker.
    pub fn reply_buffered(&self) -> bool {
        crate::pipe::frame_buffered(self.stdout.buffer())
    }
}

/// The process of a split [`Worker`]; dropping it kills the process.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// The worker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
