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
//! - An `Err` from `append` is indeterminate unless it is [`Error::RecordTooLarge`],
//!   [`Error::LogNotFound`], [`Error::WriterConflict`] or [`Error::WriterFenced`] (refused
//!   before any write of that batch): the record may still be in the log.
//! - Replay reads a bad frame again from another replica and yields
//!   [`ReplayEvent::Skipped`] only when no replica has it whole.
//!
//! The failure model and how it is tested are in the repository's README and
//! `tests/tests/chaos.rs`.
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

pub use append::{AppendAck, Appender};
pub use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, RecordId, WriterId};
pub use check::{
    ChunkReplicas, ChunkserverInfo, CorruptReport, LogReplicas, ReplicaBytes, ReplicaStatus,
};
pub use client::{ChunkStat, ChunkState, Client, LogInfo, LogOptions, LogStat};
pub use error::{Code, Error, Result};
pub use fsck::FsckReport;
pub use read::{Replay, ReplayEvent, ReplayOptions, ReplayStats, Tail, TailFrom};
