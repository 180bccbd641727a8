//! The replica's side of a worker: the service binary re-launched as a worker process, spoken
//! to in frames over its stdin and stdout. One request at a time; snapshots taken and restored
//! in order with the requests. Kept apart so that deadlines (SIGKILL of a runaway handler) and
//! crash handling can grow here.

use std::io;
use std::path::Path;
use std::process::Stdio;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::pipe::{
    PIPE_BUFFER_BYTES, read_frame, snapshot_frames, write_frame, write_frame_unflushed,
};
use crate::records::{WorkerReply, WorkerRequest};

/// Why a worker did not take or restore a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The service has no snapshots (UNIMPLEMENTED): do not ask again.
    Unsupported,
    /// Any other refusal, e.g. a restore whose bytes the service does not accept.
    Failed {
        /// gRPC status code.
        code: u32,
        /// The worker's reason.
        message: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsupported => f.write_str(crate::snapshot::SNAPSHOTS_UNSUPPORTED),
            Refusal::Failed { code, message } => write!(f, "code {code}: {message}"),
        }
    }
}

impl Refusal {
    /// The refusal a non-OK reply without snapshot bytes says.
    fn of(reply: WorkerReply) -> Refusal {
        if reply.code == tonic::Code::Unimplemented as u32 {
            Refusal::Unsupported
        } else {
            Refusal::Failed {
                code: reply.code,
                message: reply.message,
            }
        }
    }
}

/// A snapshot request's frame.
fn snapshot_request() -> WorkerRequest {
    WorkerRequest {
        snapshot: true,
        ..WorkerRequest::default()
    }
}

/// Queues the frames of a restore of `bytes`.
async fn send_restore<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &Bytes) -> io::Result<()> {
    for part in snapshot_frames(bytes) {
        let request = WorkerRequest {
            restore: Some(part),
            ..WorkerRequest::default()
        };
        write_frame_unflushed(writer, &request).await?;
    }
    Ok(())
}

/// One reply frame; the end of the stream is an error.
async fn next_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<WorkerReply> {
    read_frame(reader)
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the worker process ended"))
}

/// The answer to a snapshot request: its frames joined, or the refusal.
async fn read_snapshot<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Result<Bytes, Refusal>> {
    let mut joined = BytesMut::new();
    loop {
        let reply = next_frame(reader).await?;
        match reply.snapshot {
            Some(part) => {
                joined.extend_from_slice(&part.data);
                if !part.more {
                    return Ok(Ok(joined.freeze()));
                }
            }
            None if reply.code != 0 && joined.is_empty() => return Ok(Err(Refusal::of(reply))),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the worker answered a snapshot request without snapshot bytes",
                ));
            }
        }
    }
}

/// The answer to a restore: OK or the refusal.
async fn read_restored<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Result<(), Refusal>> {
    let reply = next_frame(reader).await?;
    if reply.snapshot.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the worker answered a restore with snapshot bytes",
        ));
    }
    Ok(if reply.code == 0 {
        Ok(())
    } else {
        Err(Refusal::of(reply))
    })
}

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
        Worker::spawn_with_env(program, args, &[])
    }

    /// [`Worker::spawn`] with these environment variables set for the worker.
    pub fn spawn_with_env(
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> io::Result<Worker> {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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
        next_frame(&mut self.stdout).await
    }

    /// Takes a snapshot of the service's state after every request so far. `Ok(Err(_))`: the
    /// worker refused ([`Refusal::Unsupported`] for a service without snapshots); `Err(_)`:
    /// the worker is gone or broke the protocol.
    pub async fn snapshot(&mut self) -> io::Result<Result<Bytes, Refusal>> {
        write_frame(&mut self.stdin, &snapshot_request()).await?;
        read_snapshot(&mut self.stdout).await
    }

    /// Replaces the service's state with the snapshot `bytes` (a fresh worker's, before any
    /// request). `Ok(Err(_))`: the worker refused them, and its state is then unknown: drop it
    /// and start a fresh one.
    pub async fn restore(&mut self, bytes: &Bytes) -> io::Result<Result<(), Refusal>> {
        send_restore(&mut self.stdin, bytes).await?;
        self.stdin.flush().await?;
        read_restored(&mut self.stdout).await
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

    /// Queues a snapshot request: its answer ([`WorkerOutput::next_snapshot`]) is the state
    /// after every request queued before it.
    pub async fn send_snapshot_request(&mut self) -> io::Result<()> {
        write_frame_unflushed(&mut self.stdin, &snapshot_request()).await
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
        next_frame(&mut self.stdout).await
    }

    /// The answer to the oldest request not yet answered, which is a snapshot request: the
    /// snapshot's bytes or the worker's refusal.
    pub async fn next_snapshot(&mut self) -> io::Result<Result<Bytes, Refusal>> {
        read_snapshot(&mut self.stdout).await
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

    /// SIGKILLs the worker (a handler past its deadline) and waits for it to be gone.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.child.kill().await
    }

    /// How the worker ended, for a CRASH output's detail: its exit status once it has exited
    /// (waiting at most `within`), or that it is still running.
    pub async fn ended(&mut self, within: std::time::Duration) -> String {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => describe_exit(status),
            Ok(Err(e)) => format!("the worker process could not be waited for: {e}"),
            Err(_) => "the worker process broke the protocol and is still running".to_owned(),
        }
    }
}

/// An exit status in words: the signal that killed the process, or its exit code.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), status.code()) {
        (Some(signal), _) => format!("the worker process was killed by signal {signal}"),
        (None, Some(code)) => format!("the worker process exited with status {code}"),
        (None, None) => "the worker process ended".to_owned(),
    }
}
