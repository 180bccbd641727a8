//! The worker process's side: builds the service from the factory and runs each request frame
//! from stdin, one at a time, answering on stdout; between requests it takes and restores
//! snapshots of the service's state when asked (if the service has them). Nothing else may
//! write to stdout.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::call::{HostedService, call, status_reply};
use crate::pipe::{PIPE_BUFFER_BYTES, read_frame, snapshot_frames, write_frame_unflushed};
use crate::records::{WorkerReply, WorkerRequest};
use crate::snapshot::{SNAPSHOTS_UNSUPPORTED, Snapshot};

/// What a worker hosts: the generated server and, if the service has them, its snapshots.
pub struct Hosted<S> {
    /// The generated tonic server.
    pub service: S,
    /// The service's snapshots; `None`: snapshot and restore requests are answered
    /// UNIMPLEMENTED ([`SNAPSHOTS_UNSUPPORTED`]).
    pub snapshots: Option<Box<dyn Snapshot>>,
}

impl<S> Hosted<S> {
    /// A service without snapshots.
    pub fn without_snapshots(service: S) -> Hosted<S> {
        Hosted {
            service,
            snapshots: None,
        }
    }

    /// A service and the handle that snapshots its state.
    pub fn with_snapshots(service: S, snapshots: impl Snapshot) -> Hosted<S> {
        Hosted {
            service,
            snapshots: Some(Box::new(snapshots)),
        }
    }
}

/// Serves request frames from `input` on one service built by `factory` (without snapshots),
/// replies to `output`, until `input` ends: [`serve_hosted_pipe`].
pub async fn serve_pipe<S, R, W>(factory: impl FnOnce() -> S, input: R, output: W) -> io::Result<()>
where
    S: HostedService,
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    serve_hosted_pipe(|| Hosted::without_snapshots(factory()), input, output).await
}

/// Serves request frames from `input` on what `factory` builds, replies to `output`, until
/// `input` ends. Requests may arrive pipelined; they run one at a time, in order, and each
/// answer is flushed before the next request runs. A snapshot request is answered
/// with the state after every request before it; a restore replaces the state.
pub async fn serve_hosted_pipe<S, R, W>(
    factory: impl FnOnce() -> Hosted<S>,
    input: R,
    output: W,
) -> io::Result<()>
where
    S: HostedService,
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let Hosted {
        mut service,
        snapshots,
    } = factory();
    let mut input = tokio::io::BufReader::with_capacity(PIPE_BUFFER_BYTES, input);
    let mut output = tokio::io::BufWriter::with_capacity(PIPE_BUFFER_BYTES, output);
    // The parts of a snapshot being restored, until its last part.
    let mut restoring: Vec<u8> = Vec::new();
    while let Some(request) = read_frame::<_, WorkerRequest>(&mut input).await? {
        if request.snapshot {
            let bytes = snapshots.as_ref().map(|s| Bytes::from(s.snapshot()));
            write_snapshot(&mut output, bytes).await?;
        } else if let Some(part) = request.restore {
            restoring.extend_from_slice(&part.data);
            if !part.more {
                let bytes = std::mem::take(&mut restoring);
                let reply = restore(snapshots.as_deref(), &bytes);
                write_frame_unflushed(&mut output, &reply).await?;
            }
        } else {
            let reply = call(&mut service, &request).await;
            write_frame_unflushed(&mut output, &reply).await?;
        }
        // Every answer is flushed before the next request runs: one held back behind a handler
        // that runs long would make its replica time the wrong request out (and blame it).
        output.flush().await?;
    }
    output.flush().await
}

/// Answers a snapshot request: the state's bytes in one or more frames, or UNIMPLEMENTED
/// (`None`: the service has no snapshots).
async fn write_snapshot<W: AsyncWrite + Unpin>(
    output: &mut W,
    bytes: Option<Bytes>,
) -> io::Result<()> {
    let Some(bytes) = bytes else {
        let reply = status_reply(&tonic::Status::unimplemented(SNAPSHOTS_UNSUPPORTED));
        return write_frame_unflushed(output, &reply).await;
    };
    for part in snapshot_frames(&bytes) {
        let reply = WorkerReply {
            snapshot: Some(part),
            ..WorkerReply::default()
        };
        write_frame_unflushed(output, &reply).await?;
    }
    Ok(())
}

/// Restores `bytes`: OK, UNIMPLEMENTED without snapshots, INVALID_ARGUMENT with the service's
/// reason if it refuses them.
fn restore(snapshots: Option<&dyn Snapshot>, bytes: &[u8]) -> WorkerReply {
    let Some(snapshots) = snapshots else {
        return status_reply(&tonic::Status::unimplemented(SNAPSHOTS_UNSUPPORTED));
    };
    match snapshots.restore(bytes) {
        Ok(()) => WorkerReply::default(),
        Err(reason) => status_reply(&tonic::Status::invalid_argument(format!(
            "the snapshot does not restore: {reason}"
        ))),
    }
}

/// The worker process's whole life: [`serve_hosted_pipe`] on stdin and stdout, on a
/// single-threaded runtime (one request at a time). When they are pipes (as a replica starts
/// it) they are read and written directly, non-blocking; tokio's `stdin()`/`stdout()` would hand
/// every read, write and flush to a blocking thread (a thread switch per answer).
pub fn run<S: HostedService>(factory: impl FnOnce() -> Hosted<S>) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let (input, output) = stdio_pipes()?;
            serve_hosted_pipe(factory, input, output).await
        })
}

type Input = Box<dyn tokio::io::AsyncRead + Unpin>;
type Output = Box<dyn tokio::io::AsyncWrite + Unpin>;

/// Stdin and stdout as non-blocking pipe ends, or tokio's blocking-thread wrappers when they
/// are not pipes (a file or a terminal).
fn stdio_pipes() -> io::Result<(Input, Output)> {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let own = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map(std::fs::File::from);
    let input: Input = match pipe::Receiver::from_file(own(io::stdin().as_fd())?) {
        Ok(receiver) => Box::new(receiver),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let output: Output = match pipe::Sender::from_file(own(io::stdout().as_fd())?) {
        Ok(sender) => Box::new(sender),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    Ok((input, output))
}
