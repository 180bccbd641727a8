//! Cairn chunkserver: stores chunk replicas on local disk and serves them over gRPC.
//!
//! One process per disk. It keeps one file per replica (the crash-safe [`store`], with group
//! commit: one `pwritev` and one `fdatasync` per group), serves the `cairn.v1.Chunkserver` API
//! (ARCHITECTURE.md: record append, forwarding, reads with long polls, fence, seal, delete),
//! acts as the fixed primary of the open chunks the master names it for, and registers and
//! heartbeats with the master. [`server::serve_with`] is the one entry point, over any
//! transport; [`server::serve`] wires it to TCP for the `cairn chunkserver` command, `cairn
//! local` and tests.
//!
//! # Layout
//! - [`config`]: [`config::Args`] (flags, `CAIRN_…` environment) and the validated
//!   [`config::Config`].
//! - [`server`]: [`server::serve_with`] and [`server::serve`], the gRPC server with Cairn's
//!   transport settings (`cairn_proto::net`).
//! - `service`: the `Chunkserver` trait implementation and the one
//!   `impl From<Error> for tonic::Status`.
//! - `peers`: the chunkserver's view of other chunkservers (forward, read, checksum) as the
//!   `PeerApi` trait, and its gRPC implementation.
//! - `master_link`: the chunkserver's view of the master (register, heartbeat) as the
//!   `MasterApi` trait, and its gRPC implementation. With `service` and `peers`, the only
//!   modules touching the generated prost types.
//! - `node`: what each RPC does, in domain types: in-memory chunk states, the primary's write
//!   path (local store + forwards, awaited in a task), reads and long polls, the fence scan.
//! - `marks`: the fence's writer marks: the last record of the most recently active writers
//!   in the prefix every replica holds, stopping at the first bad range.
//! - `primary`: the primary's per-chunk bookkeeping: batch checks, writer marks, offsets,
//!   padding, full / broken / fenced flags and the commit offset. Synchronous, no I/O.
//! - `heartbeat`: registration at start, heartbeats, deletes the master asks for.
//! - `replicate`: re-replication and catch-up: a sealed chunk's missing bytes copied from a
//!   chunkserver that holds it, checked frame by frame, sealed and compared by CRC-32.
//! - [`store`]: the [`ChunkStore`] trait, [`Store`] and [`ReplicaState`].
//!   - [`store::disk`], [`store::faulty`], `store::write_behind`: re-exports of the disk seam
//!     that lives in `cairn-files` and is shared with the master: the [`Disk`] trait the store
//!     is generic over, [`FsDisk`], [`FaultyDisk`] (in memory: tears writes, fails fsync, fills
//!     up, flips bits, loses unsynced data on a simulated crash) and `WriteBehindDisk`, the
//!     power-cut test mode (`--test-power-cut`, feature `test-faults`): real files whose unsynced
//!     writes live in process memory.
//!   - `store::fail_disk` (feature `test-faults`): `FailDisk`, injected disk faults (the
//!     `--test-fail-…` and `--test-disk-full-…` flags).
//!   - [`store::server_disk`]: [`ServerDisk`], the server's choice among them.
//!   - [`store::meta`]: the `.meta` replica-state slots (FORMAT.md).
//!   - [`store::schedule`]: where open replicas' writers run: a bounded thread pool, or inline.
//!   - `store::writer`, `store::files`, `store::scan`: an open replica's group-commit writer,
//!     the replica files and their descriptor cache, and the startup scan (see [`store`]).
//! - [`scrub`]: the scrubber, which re-verifies sealed replicas at a bounded rate and marks
//!   bad ones corrupt (persisted; reported to the master; their reads refused).
//! - [`test_faults`]: the hidden `--test-…` flags and the faults they inject, compiled only
//!   with the cargo feature `test-faults` (empty without it: a release build cannot be asked
//!   to lose data).
//! - [`limits`]: every bound of the crate.
//! - [`error`]: [`Error`] and [`Result`].
//!
//! # Invariants
//! - An append is acknowledged only after its bytes and the persisted acknowledged length that
//!   covers them are durable on *every* replica of the chunk; no acknowledged byte is lost by a
//!   crash.
//! - The primary queues a chunk's writes to its own store in offset order under the chunk's
//!   lock; the commit offset is the end of the longest prefix durable on every replica and
//!   only grows. Reads of an open chunk never go past it (on a secondary: past the last one
//!   forwarded).
//! - After any failed write (store error, forward error or timeout) the primary acknowledges
//!   nothing more on that chunk (`UNAVAILABLE`); after a fence, nothing at all.
//! - A writer's records are stored in sequence order: a batch past the next expected sequence
//!   is refused (`OUT_OF_ORDER`), one at or below it is answered as a duplicate.
//! - The primary role lives in memory only: after a restart, a chunk has no primary here.
//! - Recovery never truncates below a replica's acknowledged length; an fsync error fails the
//!   replica permanently.
//! - Offsets are file offsets: the first frame of a chunk is at offset 32.

pub mod config;
pub mod error;
mod heartbeat;
pub mod limits;
mod marks;
mod master_link;
mod metrics;
mod node;
mod peers;
mod primary;
mod replicate;
pub mod scrub;
pub mod server;
mod service;
pub mod store;
pub mod test_faults;

pub use config::{Args, Config};
pub use error::{Error, Result};
pub use scrub::{ScrubConfig, ScrubStats};
pub use server::{Seams, serve, serve_with};
pub use store::disk::{Disk, DiskFile, FsDisk};
pub use store::faulty::FaultyDisk;
pub use store::server_disk::ServerDisk;
#[cfg(feature = "test-faults")]
pub use store::write_behind::WriteBehindDisk;
pub use store::{ChunkStore, ReplicaState, Store, StoreOptions, StoreStats};
pub use test_faults::{ENABLED as TEST_FAULTS, TestFaultArgs, TestFaults};
