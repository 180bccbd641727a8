//! Cairn chunkserver: stores chunk replicas on local disk and (later) serves them over RPC.
//!
//! This crate currently holds the crash-safe chunk store: one file per replica, appends
//! group-committed (one `pwritev` and one `fdatasync` per group, then one small state-file
//! write and `fdatasync`), recovery that tells a torn tail from corruption, fencing and sealing
//! for the master's seal (DESIGN.md §3.6), and a fault-injecting disk for tests.
//!
//! # Layout
//! - [`store`]: the [`ChunkStore`] trait, [`Store`] and [`ReplicaState`].
//!   - [`store::disk`]: the [`Disk`] trait the store is generic over, and [`FsDisk`].
//!   - [`store::faulty`]: [`FaultyDisk`], which tears writes, fails fsync, fills up, flips bits
//!     and loses unsynced data on a simulated crash.
//!   - [`store::meta`]: the `.meta` replica-state slots (FORMAT.md).
//! - [`limits`]: every bound of the crate.
//! - [`error`]: [`Error`] and [`Result`].
//!
//! # Invariants
//! - An append is acknowledged only after its bytes and the persisted acknowledged length that
//!   covers them are durable; no acknowledged byte is lost by a crash.
//! - Recovery never truncates below a replica's acknowledged length.
//! - An fsync error fails the replica permanently; it is never retried and trusted.
//! - Offsets are file offsets: the first frame of a chunk is at offset 32.

pub mod error;
pub mod limits;
pub mod store;

pub use error::{Error, Result};
pub use store::disk::{Disk, DiskFile, FsDisk};
pub use store::faulty::FaultyDisk;
pub use store::{ChunkStore, ReplicaState, Store, StoreStats};
