//! The worker process's side: builds the service from the factory and runs each request frame
//! from stdin, one at a time, answering on stdout. Nothing else may write to stdout.

use std::io;

use crate::call::{HostedService, call};
use tokio::io::AsyncWriteExt;

use crate::pipe::{PIPE_BUFFER_BYTES, read_frame, write_frame_unflushed};
use crate::records::WorkerRequest;

/// Serves request frames from `input` on one service built by `factory`, replies to `output`,
/// until `input` ends. Requests may arrive pipelined; they run one at a time, in order, and
/// replies are flushed whenever no further request is already buffered.
pub async fn serve_pipe<S, R, W>(factory: impl FnOnce() -> S, input: R, output: W) -> io::Result<()>
where
    S: HostedService,
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut service = factory();
    let mut input = tokio::io::BufReader::with_capacity(PIPE_BUFFER_BYTES, input);
    let mut output = tokio::io::BufWriter::with_capacity(PIPE_BUFFER_BYTES, output);
    while let Some(request) = read_frame::<_, WorkerRequest>(&mut input).await? {
        let reply = call(&mut service, &request).await;
        write_frame_unflushed(&mut output, &reply).await?;
        if input.buffer().is_empty() {
            output.flush().await?;
        }
    }
    output.flush().await
}

/// The worker process's whole life: [`serve_pipe`] on stdin and stdout, on a single-threaded
/// runtime (one request at a time).
pub fn run<S: HostedService>(factory: impl FnOnce() -> S) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve_pipe(factory, tokio::io::stdin(), tokio::io::stdout()))
}
