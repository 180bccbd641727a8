//! Errors of the master. `service.rs` maps each to a gRPC status code.

use std::path::PathBuf;

use cairn_record::{ChunkHandle, ChunkVersion};

/// Everything that can go wrong in the master.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No log has this path.
    #[error("log {path} not found")]
    LogNotFound {
        /// The path asked for.
        path: String,
    },
    /// No log holds a chunk with this handle.
    #[error("chunk {handle} not found")]
    ChunkNotFound {
        /// The handle asked for.
        handle: ChunkHandle,
    },
    /// The master knows of no replica of this chunk on this chunkserver.
    #[error("no replica of chunk {handle} on {address} is known")]
    ReplicaNotFound {
        /// The chunk.
        handle: ChunkHandle,
        /// The chunkserver named.
        address: String,
    },
    /// A log with this path exists already.
    #[error("log {path} already exists")]
    LogExists {
        /// The path asked for.
        path: String,
    },
    /// A log path that breaks the naming rules.
    #[error("invalid log path {path:?}: {reason}")]
    BadPath {
        /// The path offered (cut to a readable length).
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A replication factor outside the allowed range.
    #[error(
        "replication {replication} is outside {min}..={max}",
        min = crate::limits::REPLICATION_MIN,
        max = crate::limits::REPLICATION_MAX
    )]
    BadReplication {
        /// The factor asked for.
        replication: u32,
    },
    /// A chunk capacity outside the allowed range.
    #[error(transparent)]
    BadChunkBytes {
        /// The record crate's verdict.
        source: cairn_record::Error,
    },
    /// `ResumeWriter` for a new writer of a log that already keeps the most epochs it may.
    #[error(
        "log {path} already has {max} resumed writers; resume an existing writer id or use \
         plain (random, unresumable) writers"
    )]
    TooManyWriters {
        /// The log.
        path: String,
        /// The bound.
        max: usize,
    },
    /// A request that is malformed in some other way.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// A seal request names a version the master never handed out.
    #[error("chunk {handle} version {version} is newer than the master's version {current}")]
    VersionAhead {
        /// The chunk.
        handle: ChunkHandle,
        /// The version in the request.
        version: ChunkVersion,
        /// The master's version.
        current: ChunkVersion,
    },
    /// A chunk's version reached the largest one the master issues; it is never wrapped.
    #[error("chunk {handle} is at version {version}: no higher version may be issued")]
    VersionExhausted {
        /// The chunk.
        handle: ChunkHandle,
        /// Its version.
        version: ChunkVersion,
    },
    /// A log's minimum replica count outside `1..=replication`.
    #[error(
        "min replicas {min_replicas} must be within 1..={replication} (the replication factor)"
    )]
    BadMinReplicas {
        /// The minimum asked for.
        min_replicas: u32,
        /// The log's replication factor.
        replication: u32,
    },
    /// A log asks for more chunkservers than the cluster has: refused at creation, and an
    /// allocation that can never be placed fails with it at once instead of being retried.
    #[error("log {path}: {what} {need} exceeds the {have} {which} chunkserver(s)")]
    ClusterTooSmall {
        /// The log.
        path: String,
        /// `replication` or `min replicas`.
        what: &'static str,
        /// That number.
        need: u32,
        /// `live` or `registered`.
        which: &'static str,
        /// How many chunkservers are.
        have: usize,
    },
    /// A `StatLog` without paging for a log whose chunks do not fit in one answer.
    #[error(
        "log {path} has {chunks} chunks, too many for one StatLog answer; ask for pages \
         (first_index, max_chunks)"
    )]
    StatTooLarge {
        /// The log.
        path: String,
        /// Its chunk count.
        chunks: usize,
    },
    /// A log placed on one chunkserver (`CreateLogRequest.place_on`) whose chunkserver is not
    /// live, has no room or failed to create the replica: the chunk is not moved elsewhere.
    #[error(
        "log {path} is placed on chunkserver {address}, which cannot take a chunk now: {reason}"
    )]
    PlacementUnavailable {
        /// The log.
        path: String,
        /// The chunkserver it is placed on.
        address: String,
        /// Why not: not live, too full, or the replica creation's error.
        reason: String,
    },
    /// Too few live chunkservers to place a chunk.
    #[error("need {need} live chunkservers, have {have}")]
    NotEnoughChunkservers {
        /// The log's minimum replica count.
        need: usize,
        /// Live chunkservers that could take a replica.
        have: usize,
    },
    /// Too few live chunkservers with room for a new chunk (the others are past the free-space
    /// high-watermark).
    #[error(
        "need {need} live chunkservers with at least {need_free} free bytes, have {have} ({full} more are too full)"
    )]
    NotEnoughRoom {
        /// The log's replication factor.
        need: usize,
        /// Live chunkservers with room.
        have: usize,
        /// Live chunkservers without room.
        full: usize,
        /// The high-watermark: a chunk's capacity plus `--min-free-bytes`.
        need_free: u64,
    },
    /// The open chunk's replicas have not reported since the master started.
    #[error(
        "open chunk {handle} of log {path} has no live replica yet; waiting for chunkservers to report"
    )]
    NoLiveReplica {
        /// The log.
        path: String,
        /// Its open chunk.
        handle: ChunkHandle,
    },
    /// No replica answered a fence, so the chunk cannot be sealed now.
    #[error("no replica of chunk {handle} answered the fence; retry later")]
    FenceUnanswered {
        /// The chunk being sealed.
        handle: ChunkHandle,
    },
    /// No replica accepted the seal.
    #[error("no replica of chunk {handle} accepted the seal; retry later")]
    SealUnanswered {
        /// The chunk being sealed.
        handle: ChunkHandle,
    },
    /// A new chunk could not be created on its chunkservers.
    #[error("could not create chunk {handle} on {address}: {reason}")]
    CreateReplicaFailed {
        /// The new chunk.
        handle: ChunkHandle,
        /// The chunkserver that failed.
        address: String,
        /// Why.
        reason: String,
    },
    /// The operation log could not be written; the master accepts no more changes.
    #[error("operation log failed: {reason}; restart the master")]
    OplogFailed {
        /// The first write or fsync error.
        reason: String,
    },
    /// A file of the master's data directory could not be read or written. The OS error is
    /// part of the message and not a separate source, so a chain of causes prints it once.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The operation log holds bad bytes that are not a torn tail: the master refuses to start
    /// rather than drop acknowledged changes.
    #[error("operation log {path} is corrupt at offset {offset}: {reason}")]
    OplogCorrupt {
        /// The operation-log file.
        path: PathBuf,
        /// File offset of the first bad byte or entry.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint cannot be used.
    #[error("checkpoint {path} is invalid: {reason}")]
    CheckpointInvalid {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Flags or settings that do not make sense together.
    #[error("configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The gRPC server failed (what tonic said is the error's source).
    #[error("gRPC server failed")]
    Transport {
        /// The transport error.
        source: tonic::transport::Error,
    },
}

/// `Result` with the master's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io { path, error }
    }
}
