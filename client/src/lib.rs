//! Cairn's client library: create and inspect logs, append records, replay and tail them.
//!
//! ```no_run
//! use bytes::Bytes;
//! use cairn_client::{Client, LogOptions, ReplayEvent, ReplayOptions};
//!
//! # async fn example() -> cairn_client::Result<()> {
//! let client = Client::connect("127.0.0.1:7000").await?;
//! client.create_log("/events", LogOptions::default()).await?;
//!
//! // Appends are pipelined: each `append` queues a record and returns a future of its ack.
//! let appender = client.appender("/events").await?;
//! let acks: Vec<_> = (0..100)
//!     .map(|i| appender.append(Bytes::from(format!("record {i}"))))
//!     .collect();
//! for ack in acks {
//!     let ack = ack.await?;
//!     println!("{} at chunk {:?} offset {:?}", ack.id, ack.chunk, ack.offset);
//! }
//! appender.close().await?;
//!
//! let mut replay = client.replay("/events", ReplayOptions::default()).await?;
//! while let Some(event) = replay.next().await {
//!     match event? {
//!         ReplayEvent::Record { payload, .. } => println!("{}", String::from_utf8_lossy(&payload)),
//!         ReplayEvent::Skipped { chunk, offset, len, reason } => {
//!             eprintln!("skipped {len} bytes at chunk {chunk} offset {offset}: {reason}")
//!         }
//!         // `ReplayEvent` may gain kinds of events; say so rather than drop one unseen.
//!         other => eprintln!("an event this program does not know: {other:?}"),
//!     }
//! }
//! println!("{:?}", replay.stats());
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - An acknowledged record (`append` returned `Ok`) is durable on every replica of its chunk
//!   and survives the crash, pause or power loss of any process, the loss or corruption of any
//!   one replica and a master crash; replay returns it.
//! - Appends are at least once. An appender resends unacknowledged records with the same
//!   (writer, sequence) id; the primary and, across a roll, the writer marks the seal hands on
//!   (each writer's last record held by every replica, for the 4,096 most recently active
//!   writers of a log) keep a resent record from being stored twice. "Already stored" is
//!   answered only for the same record (same frame CRC where the primary knows it); a
//!   different record under a stored (writer, sequence) fails with [`Error::WriterConflict`].
//!   Replay drops copies by per-writer sequence ([`ReplayOptions`] can keep them), and an
//!   appender's records appear in call order.
//! - Writer ids ([`WriterId`]): [`Client::appender`] picks a random one, never shared. A
//!   process that must survive its own restarts keeps an id and calls
//!   [`Client::resume_appender`]: the master
//!   hands out a new epoch for it, re-sent (writer, sequence) records are stored once, and an
//!   older incarnation still appending is fenced ([`Error::WriterFenced`]).
//! - An `Err` from `append` is indeterminate: the record may still be in the log. The
//!   exceptions are few ([`Error::RecordTooLarge`], most [`Error::AppenderClosed`]); see
//!   "Errors and retries" below.
//! - Replay reads a bad frame again from another replica and yields
//!   [`ReplayEvent::Skipped`] only when no replica has it whole.
//! - A replay of a log this client listed before (any earlier `stat_log`, replay or tail of
//!   it) starts even while the master cannot be reached: it reads the sealed chunks it knows,
//!   then waits for the master to list the rest (and fails after
//!   [`READ_RETRY_WINDOW`](limits::READ_RETRY_WINDOW) if it never answers).
//!
//! The failure model and how it is tested are in the repository's README and
//! `tests/tests/chaos.rs`.
//!
//! # Errors and retries
//!
//! Every call that can fail fails with an [`Error`]. Calls to the master —
//! [`Client::create_log`], [`Client::delete_log`], [`Client::list_logs`],
//! [`Client::stat_log`], the [`check`] calls, and the first step of [`Client::appender`],
//! [`Client::resume_appender`], [`Client::replay`] and [`Client::tail`] — are not retried
//! (each RPC has a deadline of [`MASTER_CALL_TIMEOUT`](limits::MASTER_CALL_TIMEOUT)); whether
//! to retry is the caller's choice. Appends and reads retry by themselves:
//!
//! - **An appender resends by itself.** When an `Append` to a chunk's primary fails in a way
//!   that may pass (gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED`, `UNKNOWN`, `ABORTED`,
//!   `FAILED_PRECONDITION`, `NOT_FOUND` or `INTERNAL`, a broken connection included: a replica
//!   down, a timeout, a chunk fenced by someone else's seal), the appender has the master seal
//!   the chunk and resends every record not yet acknowledged, in order and under the same
//!   (writer, sequence), on the next chunk; a full chunk rolls over the same way, and master
//!   calls failing with those codes are retried with backoff. None of this reaches the caller:
//!   each `append` future resolves once, with an [`AppendAck`] or with the error the appender
//!   gave up with. It gives up after [`APPEND_ATTEMPTS_MAX`](limits::APPEND_ATTEMPTS_MAX)
//!   failed attempts in a row or [`APPEND_RETRY_WINDOW`](limits::APPEND_RETRY_WINDOW) of
//!   failures with no record acknowledged, and at once on any other answer (a primary's
//!   `INVALID_ARGUMENT`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`,
//!   `DATA_LOSS`, …; the master's `NOT_FOUND`). Giving up **closes** the appender: every
//!   record it has not had acknowledged fails with that error, every later `append` fails
//!   without being sent, and [`Appender::flush`] and [`Appender::close`] return the error.
//!   The one exception is [`Error::UnverifiedDuplicate`], which fails one record and leaves
//!   the appender open.
//! - **A reader rereads by itself.** A read that fails on one replica is tried on the others;
//!   one that fails on all of them is retried with backoff and the master's newer view of the
//!   chunk (an open chunk whose primary cannot be read is sealed first). A [`Replay`] gives up
//!   after [`READ_RETRY_WINDOW`](limits::READ_RETRY_WINDOW) without progress and returns the
//!   last error, after which it is over: start a new one (reading changes nothing). A [`Tail`]
//!   never gives up: it ends with an error only when its log is deleted.
//!
//! **A failed append is indeterminate**: the record may be in the log, because the failure
//! may have come after it was stored, or after an earlier send of it was (its acknowledgement
//! lost, or the seal that ended its chunk keeping it). Only two failures say it was never
//! sent: [`Error::RecordTooLarge`], and an [`Error::AppenderClosed`] for a record appended
//! after the appender had closed.
//!
//! What each variant means:
//!
//! - [`Error::LogNotFound`]: the log does not exist — from any call naming it, and from an
//!   appender whose log was deleted while it appended (the master answered `NOT_FOUND` when
//!   asked for the open chunk; the appender is closed and every later `append` fails with this
//!   same error). Records of a deleted log are gone with it. Retrying helps only once the log
//!   is created again, with a new appender.
//! - [`Error::LogExists`]: `create_log` of a path that is taken; nothing was created. After an
//!   earlier `create_log` of that path failed indeterminately (the connection broke, a
//!   deadline), this says the log exists: check its options with [`Client::stat_log`].
//! - [`Error::MasterUnreachable`]: no connection to the master (connect failed, or the
//!   connection broke during the call, which may then have taken effect). The client
//!   reconnects by itself at the next call: retry later. From an appender: it could not reach
//!   the master to seal or open a chunk for its whole retry window; it is closed and the
//!   records are indeterminate.
//! - [`Error::RecordTooLarge`]: refused by `append` itself: the record was never sent and took
//!   no sequence; the appender goes on. Retrying cannot help: split the payload, or use a log
//!   with larger chunks (the limit is `min(chunk capacity / 4, 16 MiB)`,
//!   [`Appender::payload_bytes_max`]).
//! - [`Error::InvalidArgument`]: a malformed request (a bad address, a path without its
//!   leading `/`, an option out of range, writer or first sequence 0), refused before anything
//!   happened; retrying the same request cannot help. From an appender: a primary refused a
//!   batch as malformed (a bug, not a state of the cluster); it is closed and the records are
//!   indeterminate.
//! - [`Error::AccessDenied`]: a cluster on TLS refused the caller's identity (no certificate
//!   or token, a revoked token, or a grant too small for the call: see "A cluster on TLS");
//!   nothing was done. From an appender: closed, nothing of the refused batch stored.
//! - [`Error::Unavailable`]: the cluster could not serve the request: an appender's or a
//!   replay's retries ran out, or the master answered `UNAVAILABLE` (for instance no
//!   chunkservers to place a chunk on, or the chunkserver of [`LogOptions::place_on`] down).
//!   From an appender: closed, records indeterminate. Retrying helps once the cluster
//!   recovers: see "Appending again after a failure" below.
//! - [`Error::Protocol`]: a server answered what the protocol does not allow (a version
//!   mismatch or a bug). An appender closes at once (records indeterminate); a reader retries
//!   it as a failed read.
//! - [`Error::WriterConflict`]: a primary refused a batch because a *different* record is
//!   stored under one of its (writer, sequence): two processes append as one writer id, or a
//!   resumed writer re-sent other payloads under old sequences. The refusal stored nothing, but
//!   the appender closes and fails every record not yet acknowledged with this error (and every
//!   later one), and records it had sent before may be stored: indeterminate. Retrying under
//!   this writer id cannot help; find the other process, or append afresh with a new appender.
//! - [`Error::UnverifiedDuplicate`]: this copy was not stored, because a record with its
//!   (writer, sequence) is, too long ago for the primary to compare the two. If it is this
//!   writer's own earlier send of the same record (a resumed writer re-sending what an earlier
//!   incarnation appended), take the record as stored, as `cairn append --writer` does. Only
//!   this record fails; the appender goes on. Retrying gets the same answer.
//! - [`Error::WriterFenced`]: a newer incarnation took this writer id over
//!   ([`Client::resume_appender`]): the appender is closed and its records are refused from
//!   now on (every later `append` fails with this same error); records it sent before may be
//!   stored (the seal that fenced it keeps what its replicas hold): indeterminate. Do not
//!   retry in this process — resuming the id again would fence the newer incarnation; that
//!   one owns the writer id and re-sends what it must.
//! - [`Error::AppenderClosed`]: the record reached an appender that had already closed (its
//!   message names the failure that closed it): it was never sent. The exception is the
//!   message "the appender's task ended" (its runtime shut down, or its task panicked, with
//!   records in flight): indeterminate. Retry with another appender, as below.
//! - [`Error::Rpc`]: any other gRPC status, by its [`Code`]: `UNIMPLEMENTED` (the address is
//!   not a Cairn master or chunkserver), `RESOURCE_EXHAUSTED` (a chunkserver out of disk
//!   space or queue room, the master's table of writers full), `DATA_LOSS` (a replica's bytes
//!   are damaged: [`Error::is_data_loss`]), or a code the appender retries (such as
//!   `FAILED_PRECONDITION` or `DEADLINE_EXCEEDED`) once its master calls' retry window ran out.
//!   An appender closes at once on one from a primary (records indeterminate). Whether
//!   retrying helps depends on the code.
//!
//! ## Appending again after a failure
//!
//! The appender that gave up is closed for good; records it failed must be appended again by
//! another one, and since they may be stored already, how matters:
//!
//! - A new appender ([`Client::appender`]) has a new writer id. A failed record that was in
//!   fact stored is then stored twice, under two ids, and replay returns both: at least once.
//! - To keep one copy, resume the failed appender's writer with [`Client::resume_appender`],
//!   its [`Appender::writer_id`] and the sequence of the first record not acknowledged, and
//!   append the same records again, in the same order (the n-th record an appender takes gets
//!   sequence `first_sequence + n - 1`; one refused as too large takes none, and an ack's
//!   [`AppendAck::id`] names it). A record found stored is acknowledged without being stored
//!   again (its `chunk` and `offset` are `None` when the primary no longer knows where), or
//!   fails with [`Error::UnverifiedDuplicate`] (take it as stored). Where the primary cannot
//!   know of the earlier copy (a record past what every replica held when its chunk was
//!   sealed; a writer no longer among the 4,096 most recently active of the log) it is stored
//!   again under the same id, and replay drops that copy.
//! - Not after [`Error::WriterFenced`] (the id belongs to a newer incarnation) or
//!   [`Error::WriterConflict`] (someone else appends under the id).
//!
//! ```no_run
//! use bytes::Bytes;
//! use cairn_client::{Client, Error};
//!
//! # async fn example(client: Client, records: Vec<Bytes>) -> cairn_client::Result<()> {
//! let appender = client.appender("/events").await?;
//! let writer = appender.writer_id();
//! let acks = appender.append_all(records.iter().cloned());
//! // Sequences start at 1 and no record here is too large: record i has sequence i + 1.
//! let mut first_failed = None;
//! for (i, ack) in acks.into_iter().enumerate() {
//!     match ack.await {
//!         Ok(_) => {}
//!         // Another process appends under this writer id: resuming it would not help.
//!         Err(e @ (Error::WriterFenced { .. } | Error::WriterConflict { .. })) => return Err(e),
//!         Err(e) => {
//!             eprintln!("record {i}: {e}");
//!             first_failed.get_or_insert(i);
//!         }
//!     }
//! }
//! if let Some(i) = first_failed {
//!     let again = client.resume_appender("/events", writer, i as u64 + 1).await?;
//!     for ack in again.append_all(records[i..].iter().cloned()) {
//!         match ack.await {
//!             Ok(_) | Err(Error::UnverifiedDuplicate { .. }) => {}
//!             Err(e) => return Err(e),
//!         }
//!     }
//!     again.close().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # A cluster on TLS
//!
//! A process talks to a cluster that runs with `--tls-dir` by setting its identity once, before
//! [`Client::connect`]: the cluster's client certificate, or a token (`cairn certs token`) with
//! the cluster's CA alone. Every later channel is then TLS, and a token rides on every call (the
//! grants are in the README, "Security"):
//!
//! ```no_run
//! # fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use cairn_client::security;
//! let dir = std::path::Path::new("/etc/cairn/tls");
//! security::use_token("cairn_…")?; // or skip it to present dir/client.pem
//! security::use_tls(security::TlsFiles::load_client(dir, true)?);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`client`]: [`Client`] (channels to the master and a cache of chunkserver channels) and
//!   the namespace calls: [`Client::create_log`], [`Client::delete_log`],
//!   [`Client::list_logs`], [`Client::stat_log`].
//! - [`check`]: for checkers (`cairn fsck`) and placement: the chunkservers, every replica of
//!   a log, raw replica reads, and corrupt-replica reports.
//! - [`fsck`]: [`Client::fsck`], the check `cairn fsck` runs on those calls: every replica of
//!   a log read and verified, chunks and replicas classified, corrupt ones reported, all in a
//!   typed [`FsckReport`].
//! - [`append`]: [`Appender`] — batching, the in-flight window, seals and retries.
//! - [`read`]: [`Replay`] and [`Tail`] — range reads, scanning, repair, duplicate dropping.
//! - [`limits`]: every bound of the client, checked at compile time.
//! - [`error`]: [`Error`], its gRPC status [`Code`], and [`Result`].
//!
//! # Guarantees
//! - An [`AppendAck`] means every replica of the chunk holds the record durably.
//! - Records are appended at least once: a record whose acknowledgement was lost is resent with
//!   the same `(writer, sequence)` and may be stored twice; [`Replay`] keeps the first copy.
//! - An appender's records are sent in sequence order, so the first copy of each of its
//!   records appears in the log in its order.
//! - Replay never hides damage: bytes that no replica holds whole come back as
//!   [`ReplayEvent::Skipped`].

pub mod append;
pub mod check;
pub mod client;
pub mod error;
pub mod fsck;
pub mod limits;
pub mod read;
mod sealed_cache;
pub mod status;

pub use append::{AppendAck, Appender};
pub use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, RecordId, WriterId};
pub use check::{
    ChunkReplicas, ChunkserverInfo, CorruptReport, LogReplicas, ReplicaBytes, ReplicaStatus,
};
pub use client::{ChunkStat, ChunkState, Client, LogInfo, LogOptions, LogStat};
pub use error::{Code, Error, Result};
pub use fsck::FsckReport;
pub use read::{Replay, ReplayEvent, ReplayOptions, ReplayStats, Tail, TailFrom};
pub use status::ClusterStatus;

/// How this process identifies itself to a cluster on TLS (see "A cluster on TLS" above): set
/// once, before connecting; every later channel of the process uses it.
pub mod security {
    pub use cairn_proto::net::auth::use_token;
    pub use cairn_proto::net::tls::{TlsError, TlsFiles, use_tls};
}
