//! What checkers (`cairn fsck`) ask of the master: every replica it knows of each chunk of a
//! log, and reports of replicas they found corrupt (ARCHITECTURE.md, "Repair").
//!
//! A reported replica is marked corrupt in the chunkserver table ([`Servers::mark_corrupt`]),
//! in memory only: from then on it is not good, so the repair loop copies the chunk from a good
//! replica and heartbeat replies delete the marked one, exactly as if its chunkserver had
//! reported it corrupt itself. The last good replica of a chunk is never marked: readers would
//! be left with nothing to read, and there would be nothing to repair it from either.
//!
//! [`Servers::mark_corrupt`]: crate::heartbeat::Servers::mark_corrupt

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};

use crate::meta::ChunkState;

/// One replica as `ListReplicas` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaStatus {
    pub(crate) address: String,
    pub(crate) version: ChunkVersion,
    pub(crate) length: ChunkOffset,
    pub(crate) sealed: bool,
    /// Reported corrupt by its chunkserver or marked so by a checker.
    pub(crate) corrupt: bool,
    pub(crate) failed: bool,
    pub(crate) live: bool,
    /// Sealed chunks: good (policy.rs). Open chunks: live, at the chunk's version, neither
    /// failed nor corrupt.
    pub(crate) good: bool,
    /// The detail of a checker's corrupt mark, if any.
    pub(crate) reported_corrupt: Option<String>,
}

/// One chunk with every replica the master knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkReplicas {
    pub(crate) index: u32,
    pub(crate) handle: ChunkHandle,
    pub(crate) state: ChunkState,
    pub(crate) version: ChunkVersion,
    /// Sealed: the sealed length. Open: the largest length a replica reported (32 if none).
    pub(crate) length: ChunkOffset,
    pub(crate) replication: u32,
    /// Open chunks: the fixed primary. Empty once sealed.
    pub(crate) primary: String,
    /// Sorted by address.
    pub(crate) replicas: Vec<ReplicaStatus>,
}

/// `ListReplicas`: a log's options and its chunks in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogReplicas {
    pub(crate) path: String,
    pub(crate) replication: u32,
    pub(crate) chunk_bytes: u64,
    pub(crate) chunks: Vec<ChunkReplicas>,
}

/// What `ReportCorrupt` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CorruptMark {
    /// The replica is marked corrupt (or already was).
    Marked,
    /// Not marked, and why.
    Refused(String),
}
