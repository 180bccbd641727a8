//! [`Appender`]: one writer's records, batched, sent in sequence order, retried until durable.
//!
//! `append` queues a record and returns a future at once; a background task owns the
//! `window::Window` (batches and in-flight sends, no I/O) and does the RPCs: `OpenChunk`,
//! `Append` to the primary, and `SealChunk` when a chunk is full or an append failed.

mod window;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use cairn_proto::v1::{self, AppendStatus, SealReason};
use cairn_record::limits::record_payload_bytes_max;
use cairn_record::{ChunkOffset, RecordId, WriterId};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{Client, Location, request};
use crate::error::{Error, Result, is_retryable, is_transport};
use crate::limits::{
    APPEND_ATTEMPTS_MAX, APPEND_RETRY_WINDOW, APPEND_TIMEOUT, APPENDER_PENDING_BYTES_MAX,
    GATHER_YIELDS_MAX, MASTER_CALL_TIMEOUT, backoff,
};
use window::{Outcome, Send, SendMeta, Waiter, Window};

/// Where a record was stored, once every replica holds it durably.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppendAck {
    /// The record's id: this appender's writer id and the record's sequence.
    pub id: RecordId,
    /// Index of the chunk holding it. `None` only when the primary answered "already stored"
    /// without knowing where (a retried duplicate).
    pub chunk: Option<u32>,
    /// Offset of its frame in that chunk; `None` exactly when `chunk` is.
    pub offset: Option<ChunkOffset>,
}

/// Appends records to one log as one writer (a random non-zero writer id, sequences 1, 2, 3, …
/// in call order). Records are acknowledged only when every replica holds them durably; a
/// record whose acknowledgement was lost may be stored twice (replay drops the copy), never
/// lost.
///
/// If retries run out (about [`APPEND_RETRY_WINDOW`] or [`APPEND_ATTEMPTS_MAX`] failed
/// attempts without progress), every pending record fails and the appender stays closed:
/// later appends fail with [`Error::AppenderClosed`]. Make a new appender to continue.
///
/// Dropping an appender lets its task finish the queued records (their futures still
/// complete); [`Appender::close`] waits for that.
#[derive(Debug)]
pub struct Appender {
    tx: Option<mpsc::UnboundedSender<Command>>,
    writer: WriterId,
    payload_max: usize,
    pending: Arc<Pending>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Payload bytes queued or in flight, for [`Appender::ready`].
#[derive(Debug, Default)]
struct Pending {
    bytes: AtomicUsize,
    released: Notify,
}

impl Pending {
    fn release(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        self.released.notify_waiters();
    }
}

enum Command {
    /// Records to queue, in order, all at once.
    Append(Vec<(Bytes, RecordWaiter)>),
    Flush(oneshot::Sender<Result<()>>),
}

/// A record's receiver of its acknowledgement, or the error that refused it at once.
type Queued = Result<oneshot::Receiver<Result<AppendAck>>>;

/// A record's acknowledgement, from its waiter's receiver (or the error that refused it).
async fn ack(queued: Queued) -> Result<AppendAck> {
    match queued {
        Err(e) => Err(e),
        Ok(rx) => rx.await.unwrap_or_else(|_| {
            Err(Error::AppenderClosed {
                message: "the appender's task ended".into(),
            })
        }),
    }
}

struct RecordWaiter {
    tx: oneshot::Sender<Result<AppendAck>>,
    len: usize,
    pending: Arc<Pending>,
}

impl Waiter for RecordWaiter {
    fn complete(self, result: Result<AppendAck>) {
        self.pending.release(self.len);
        // The caller may have dropped the future; the record was still appended.
        let _ = self.tx.send(result);
    }
}

impl Client {
    /// An appender for the log at `path`. Fails with [`Error::LogNotFound`] if the log does
    /// not exist.
    pub async fn appender(&self, path: &str) -> Result<Appender> {
        let writer = self.new_writer_id();
        self.start_appender(path, writer, 0, 1).await
    }

    /// Resumes `writer` (a non-zero id the application chose and keeps, e.g. per producer
    /// process) on the log at `path`: the master hands out the writer's next epoch, and the
    /// appender numbers its records from `first_sequence` on. Like Kafka's idempotent
    /// producer:
    ///
    /// - a restarted process that re-sends the same records under the same (writer, sequence)
    ///   stores each once: a record found stored with the same frame CRC is acknowledged
    ///   without being stored again (`chunk`/`offset` are `None` when the primary no longer
    ///   knows where); a different record under a stored sequence fails with
    ///   [`Error::WriterConflict`];
    /// - an older incarnation still running is fenced: the master seals the log's open chunk
    ///   when it hands out the epoch, so from then on its appends fail with
    ///   [`Error::WriterFenced`].
    ///
    /// Records before `first_sequence` are taken as acknowledged (the application says so).
    /// Fails with [`Error::LogNotFound`], or [`Error::InvalidArgument`] for writer 0 or
    /// sequence 0.
    pub async fn resume_appender(
        &self,
        path: &str,
        writer: WriterId,
        first_sequence: u64,
    ) -> Result<Appender> {
        if writer == WriterId::PADDING || first_sequence == 0 {
            return Err(Error::InvalidArgument {
                message: "a resumed writer needs a non-zero writer id and first sequence".into(),
            });
        }
        let req = v1::ResumeWriterRequest {
            path: path.to_owned(),
            writer: writer.into(),
        };
        let epoch = self
            .on_master(|mut master| {
                let req = req.clone();
                async move {
                    master
                        .resume_writer(request(req, MASTER_CALL_TIMEOUT))
                        .await
                }
            })
            .await
            .map_err(|status| self.master_error(status, path))?
            .into_inner()
            .epoch;
        debug!(log = path, writer = %writer, epoch, first_sequence, "writer resumed");
        self.start_appender(path, writer, epoch, first_sequence)
            .await
    }

    async fn start_appender(
        &self,
        path: &str,
        writer: WriterId,
        epoch: u64,
        first_sequence: u64,
    ) -> Result<Appender> {
        // Only the options: the chunks come from OpenChunk, never a listing of the whole log.
        let stat = self.log_options(path).await?;
        let payload_max = record_payload_bytes_max(stat.chunk_bytes);
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        let task = Task {
            client: self.clone(),
            path: path.to_owned(),
            window: Window::new(writer, payload_max, stat.chunk_bytes, first_sequence),
            epoch,
            location: None,
            rx,
            flushes: Vec::new(),
            closed: None,
            failures: 0,
            failing_since: None,
            just_acked: 0,
        };
        Ok(Appender {
            tx: Some(tx),
            writer,
            payload_max,
            pending,
            task: Some(tokio::spawn(task.run())),
        })
    }
}

impl Appender {
    /// This appender's writer id (random, non-zero).
    pub fn writer_id(&self) -> WriterId {
        self.writer
    }

    /// The largest payload this log takes, in bytes (`min(chunk capacity / 4, 16 MiB)`).
    pub fn payload_bytes_max(&self) -> usize {
        self.payload_max
    }

    /// Queues `payload` as the next record and returns a future of its acknowledgement. The
    /// record's sequence is fixed here, at the call, not when the future is first polled;
    /// dropping the future does not withdraw the record.
    ///
    /// A payload over [`Appender::payload_bytes_max`] fails at once with
    /// [`Error::RecordTooLarge`] and takes no sequence.
    pub fn append(&self, payload: Bytes) -> impl Future<Output = Result<AppendAck>> + 'static {
        let (queued, record) = self.waiter(payload);
        if let Some(record) = record {
            self.send(Command::Append(vec![record]));
        }
        ack(queued)
    }

    /// Queues every payload, in order, as the next records, and returns their
    /// acknowledgements' futures in the same order: like calling [`Appender::append`] for
    /// each, except that the appender takes them all at once, so that they travel together
    /// (one batch, as far as the batch limits allow) instead of the first going out alone.
    /// A payload over [`Appender::payload_bytes_max`] fails at once and takes no sequence.
    pub fn append_all(
        &self,
        payloads: impl IntoIterator<Item = Bytes>,
    ) -> Vec<impl Future<Output = Result<AppendAck>> + 'static> {
        let mut records = Vec::new();
        let acks = payloads
            .into_iter()
            .map(|payload| {
                let (queued, record) = self.waiter(payload);
                records.extend(record);
                ack(queued)
            })
            .collect();
        if !records.is_empty() {
            self.send(Command::Append(records));
        }
        acks
    }

    /// The waiter of one record and its receiver, or `RecordTooLarge`.
    fn waiter(&self, payload: Bytes) -> (Queued, Option<(Bytes, RecordWaiter)>) {
        let len = payload.len();
        if len > self.payload_max {
            let too_large = Error::RecordTooLarge {
                len,
                max: self.payload_max,
            };
            return (Err(too_large), None);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.bytes.fetch_add(len, Ordering::AcqRel);
        let waiter = RecordWaiter {
            tx,
            len,
            pending: self.pending.clone(),
        };
        (Ok(rx), Some((payload, waiter)))
    }

    /// Hands records to the task; if it has ended, they fail at once.
    fn send(&self, command: Command) {
        let sender = self.tx.as_ref().expect("only close takes the sender");
        if let Err(mpsc::error::SendError(Command::Append(records))) = sender.send(command) {
            for (_, waiter) in records {
                waiter.complete(Err(Error::AppenderClosed {
                    message: "the appender's task ended".into(),
                }));
            }
        }
    }

    /// Waits until fewer than [`APPENDER_PENDING_BYTES_MAX`] payload bytes are queued or in
    /// flight. `append` never waits (so sequences follow call order); callers that produce
    /// records faster than the cluster takes them call this before each `append`.
    pub async fn ready(&self) {
        loop {
            let released = self.pending.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.pending.bytes.load(Ordering::Acquire) < APPENDER_PENDING_BYTES_MAX {
                return;
            }
            released.await;
        }
    }

    /// Waits until every record appended before this call is acknowledged or failed. Returns
    /// the error that closed the appender, if it closed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let sender = self.tx.as_ref().expect("only close takes the sender");
        if sender.send(Command::Flush(tx)).is_err() {
            return Err(Error::AppenderClosed {
                message: "the appender's task ended".into(),
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(Error::AppenderClosed {
                message: "the appender's task ended".into(),
            })
        })
    }

    /// Flushes, then stops the background task.
    pub async fn close(mut self) -> Result<()> {
        let flushed = self.flush().await;
        self.tx = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        flushed
    }
}

/// What the task gets back from an `Append` RPC.
enum RpcOutcome {
    Window(Outcome),
    /// A refusal retrying cannot fix.
    Fatal(Error),
}

type Locating = Pin<Box<dyn Future<Output = Result<Location>> + std::marker::Send>>;

struct Task {
    client: Client,
    path: String,
    window: Window<RecordWaiter>,
    /// The writer's epoch (0 unless resumed), sent with every append.
    epoch: u64,
    location: Option<Arc<Location>>,
    rx: mpsc::UnboundedReceiver<Command>,
    flushes: Vec<(u64, oneshot::Sender<Result<()>>)>,
    /// Set once the appender gave up: every later record fails with it.
    closed: Option<Error>,
    /// Failed attempts in a row without progress, and since when.
    failures: u32,
    failing_since: Option<Instant>,
    /// Records the last answer acknowledged: about how many callers it woke.
    just_acked: usize,
}

impl Task {
    async fn run(mut self) {
        let mut in_flight = FuturesUnordered::new();
        let mut locating: Option<Locating> = None;
        let mut rx_open = true;
        loop {
            if locating.is_none() && self.closed.is_none() {
                locating = self.start_locating();
            }
            if self.location.is_some() && rx_open && self.window.in_flight() == 0 {
                rx_open = self.gather().await;
            }
            if let Some(location) = &self.location {
                while let Some(send) = self.window.next_send() {
                    tracing::trace!(
                        first = send.meta.first_seq,
                        records = send.meta.count,
                        bytes = send.frames.len(),
                        "send"
                    );
                    in_flight.push(append_rpc(
                        self.client.clone(),
                        location.clone(),
                        send,
                        self.epoch,
                    ));
                }
            }
            self.answer_flushes();
            if !rx_open && self.window.is_empty() && self.flushes.is_empty() {
                // Sends still in flight belong to records already resolved.
                return;
            }
            tokio::select! {
                cmd = self.rx.recv(), if rx_open => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        // Records already queued behind it go out in the same batch.
                        rx_open = self.drain();
                    }
                    None => rx_open = false,
                },
                Some((meta, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.outcome(meta, outcome);
                }
                located = async { locating.as_mut().expect("guarded").await }, if locating.is_some() => {
                    locating = None;
                    match located {
                        Ok(location) => {
                            debug!(chunk = %location.handle, index = location.index, "appending");
                            self.window.set_location(location.index);
                            self.location = Some(Arc::new(location));
                        }
                        Err(e) => self.close_with(e),
                    }
                }
            }
        }
    }

    /// After an answer woke `just_acked` callers and nothing else is in flight, lets them run
    /// (yielding, at most [`GATHER_YIELDS_MAX`] times) so that their next records join the queued ones
    /// in one batch, instead of the queue going out alone and their records waiting a whole
    /// round trip behind it. Returns whether the command channel is still open.
    async fn gather(&mut self) -> bool {
        let just_acked = std::mem::take(&mut self.just_acked);
        if just_acked == 0 {
            return true;
        }
        // Those callers' next records join the ones already queued.
        let target = self.window.queued() + just_acked;
        let mut yields = 0;
        while self.window.queued() < target && yields < GATHER_YIELDS_MAX {
            yields += 1;
            tokio::task::yield_now().await;
            if !self.drain() {
                return false;
            }
        }
        tracing::trace!(target, queued = self.window.queued(), yields, "gathered");
        true
    }

    /// Takes every command already in the channel. Returns whether the channel is still open.
    fn drain(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => self.command(cmd),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Append(records) => {
                for (payload, waiter) in records {
                    match &self.closed {
                        Some(e) => waiter.complete(Err(closed_error(e))),
                        None => {
                            self.window.push(payload, waiter);
                        }
                    }
                }
            }
            Command::Flush(tx) => self.flushes.push((self.window.last_seq(), tx)),
        }
    }

    /// Answers every flush whose records are all acknowledged or failed.
    fn answer_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let lowest = self.window.lowest_unresolved();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(target, _)| lowest.is_none_or(|l| l > *target));
        self.flushes = waiting;
        for (_, tx) in done {
            let _ = tx.send(match &self.closed {
                Some(e) => Err(closed_error(e)),
                None => Ok(()),
            });
        }
    }

    /// An `OpenChunk` or `SealChunk` to start, if one is needed now.
    fn start_locating(&mut self) -> Option<Locating> {
        if let Some((reason, detail)) = self.window.take_seal() {
            let at = self
                .location
                .clone()
                .expect("a seal follows an append to a location");
            let retry = if reason == SealReason::ChunkFull {
                0
            } else {
                self.failures
            };
            let deadline = self.failing_since.unwrap_or_else(Instant::now) + APPEND_RETRY_WINDOW;
            return Some(Box::pin(locate(
                self.client.clone(),
                self.path.clone(),
                Some((at, reason, detail)),
                retry,
                deadline,
            )));
        }
        if self.location.is_none() && self.window.needs_location() {
            let deadline = Instant::now() + APPEND_RETRY_WINDOW;
            return Some(Box::pin(locate(
                self.client.clone(),
                self.path.clone(),
                None,
                0,
                deadline,
            )));
        }
        None
    }

    fn outcome(&mut self, meta: SendMeta, outcome: RpcOutcome) {
        let current = meta.generation == self.window.generation();
        let outcome = match outcome {
            RpcOutcome::Fatal(e) if current => return self.close_with(e),
            // An old generation's refusal: only unblock the window's accounting.
            RpcOutcome::Fatal(e) => Outcome::Failed {
                reason: SealReason::AppendFailed,
                fenced: false,
                detail: e.to_string(),
            },
            RpcOutcome::Window(o) => o,
        };
        // One failed attempt per generation: the other sends in flight to the same chunk fail
        // for the same reason.
        if current
            && !self.window.sealing()
            && let Outcome::Failed { detail, fenced, .. } = &outcome
        {
            if !fenced {
                self.failures += 1;
            }
            let since = *self.failing_since.get_or_insert_with(Instant::now);
            if *fenced {
                debug!(log = %self.path, detail = %detail, "chunk sealed meanwhile; moving on");
            } else {
                warn!(log = %self.path, attempt = self.failures, detail = %detail, "append failed");
            }
            if self.failures >= APPEND_ATTEMPTS_MAX || since.elapsed() >= APPEND_RETRY_WINDOW {
                let e = Error::Unavailable {
                    message: format!(
                        "gave up after {} failed attempts in {:.1} s; last: {detail}",
                        self.failures,
                        since.elapsed().as_secs_f64()
                    ),
                };
                return self.close_with(e);
            }
        }
        if let Outcome::OutOfOrder { expected } = &outcome {
            debug!(log = %self.path, first = meta.first_seq, expected, current, "out of order");
        }
        let acked = self.window.on_outcome(meta, outcome);
        self.just_acked = acked.len();
        if !acked.is_empty() {
            self.failures = 0;
            self.failing_since = None;
        }
        for (waiter, result) in acked {
            waiter.complete(result);
        }
    }

    /// Gives up: every pending and later record fails with `e`.
    fn close_with(&mut self, e: Error) {
        warn!(log = %self.path, error = %e, "appender closed");
        for waiter in self.window.fail_all() {
            waiter.complete(Err(e.clone()));
        }
        self.closed = Some(e);
    }
}

fn closed_error(e: &Error) -> Error {
    match e {
        Error::LogNotFound { .. } | Error::WriterConflict { .. } | Error::WriterFenced { .. } => {
            e.clone()
        }
        other => Error::AppenderClosed {
            message: other.to_string(),
        },
    }
}

/// Asks the master where to append: `OpenChunk`, or `SealChunk` of `seal.0` (then the next open
/// chunk), after a backoff if this is one of several `failures` in a row. Retries retryable
/// master failures with backoff until `deadline`.
async fn locate(
    client: Client,
    path: String,
    seal: Option<(Arc<Location>, SealReason, String)>,
    failures: u32,
    deadline: Instant,
) -> Result<Location> {
    // The first failure is sealed at once; repeated ones back off.
    if failures >= 2 {
        tokio::time::sleep(backoff(failures - 1)).await;
    }
    let mut attempt = 0;
    loop {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let result = match &seal {
            Some((at, reason, detail)) => {
                client.seal_chunk(&path, at, *reason, detail.clone()).await
            }
            None => client.open_chunk(&path).await,
        };
        match result {
            Ok(location) if location.primary.is_empty() => {
                return Err(Error::Protocol {
                    message: format!("master named no primary for chunk {}", location.handle),
                });
            }
            Ok(location) => return Ok(location),
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Err(Error::LogNotFound { path });
            }
            Err(status) if is_retryable(status.code()) && Instant::now() < deadline => {
                attempt += 1;
                // Said at the first failure and then at attempts 2, 4, 8, …: an append that
                // waits (chunkservers missing, the master restarting) says why while it waits.
                if attempt.is_power_of_two() {
                    warn!(log = %path, attempt, reason = %status.message(), "waiting for the master to place the log's open chunk; retrying");
                } else {
                    debug!(log = %path, attempt, code = ?status.code(), "locating the open chunk failed; retrying");
                }
            }
            Err(status) => return Err(client.master_error(status, &path)),
        }
    }
}

/// The offsets of an `Append` answer (0: stored before, place unknown).
pub(crate) fn chunk_offsets(wire: Vec<u64>) -> Vec<ChunkOffset> {
    wire.into_iter().map(ChunkOffset).collect()
}

/// One `Append` RPC to the location's primary.
async fn append_rpc(
    client: Client,
    location: Arc<Location>,
    send: Send,
    writer_epoch: u64,
) -> (SendMeta, RpcOutcome) {
    let meta = send.meta;
    let mut cs = match client.chunkserver(&location.primary) {
        Ok(cs) => cs,
        Err(e) => return (meta, RpcOutcome::Fatal(e)),
    };
    let req = v1::AppendRequest {
        handle: location.handle.0,
        version: location.version.into(),
        frames: send.frames,
        acked_through: send.acked_through,
        writer_epoch,
    };
    let started = Instant::now();
    let answer = cs.append(request(req, APPEND_TIMEOUT)).await;
    tracing::trace!(
        first = meta.first_seq,
        records = meta.count,
        elapsed_us = started.elapsed().as_micros() as u64,
        "answered"
    );
    let outcome = match answer {
        Ok(resp) => {
            let resp = resp.into_inner();
            match AppendStatus::try_from(resp.status) {
                Ok(AppendStatus::Ok) => Outcome::Stored {
                    offsets: chunk_offsets(resp.offsets),
                    unverified: resp.unverified,
                    full: false,
                },
                Ok(AppendStatus::ChunkFull) => Outcome::Stored {
                    offsets: chunk_offsets(resp.offsets),
                    unverified: resp.unverified,
                    full: true,
                },
                Ok(AppendStatus::OutOfOrder) => Outcome::OutOfOrder {
                    expected: resp.expected_sequence,
                },
                _ => Outcome::Failed {
                    reason: SealReason::AppendFailed,
                    fenced: false,
                    detail: format!(
                        "primary {} answered unknown status {}",
                        location.primary, resp.status
                    ),
                },
            }
        }
        Err(status) if is_retryable(status.code()) => Outcome::Failed {
            fenced: status.code() == tonic::Code::FailedPrecondition,
            reason: if is_transport(&status) {
                SealReason::PrimaryUnreachable
            } else {
                SealReason::AppendFailed
            },
            detail: format!(
                "append to {} failed ({:?}): {}",
                location.primary,
                status.code(),
                crate::error::transport_message(&status)
            ),
        },
        Err(status) => {
            return (
                meta,
                RpcOutcome::Fatal(Error::from_chunkserver(status, &location.primary)),
            );
        }
    };
    (meta, RpcOutcome::Window(outcome))
}
