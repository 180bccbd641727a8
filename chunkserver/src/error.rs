//! Errors of the chunkserver crate.

use std::path::PathBuf;

use cairn_record::{ByteRange, ChunkHandle, ChunkVersion, WriterId};
use tracing::warn;

/// Why a chunk-store operation failed.
///
/// Variants are grouped by what the caller should do: `NotFound`; precondition failures
/// (`WrongOffset`, `Sealed`, `StaleVersion`, `Misaligned`, `SealBeyondEnd`, `AlreadyExists`); limits
/// (`PastCapacity`, `WindowFull`, `Overloaded`, `DiskFull`, `NoSpace`, `ReadTooLarge`); retryable
/// (`GapTimeout`, `Closed`); and data loss (`Failed`, `Corrupt`), which means "re-replicate".
/// The service adds batch checks (`InvalidBatch`), role and state refusals (`NotPrimary`,
/// `Fenced`, retryable `Broken`, `Forward`, `Timeout`), configuration and server errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No replica of this chunk is stored here (or it was deleted).
    #[error("chunk {handle} not found")]
    NotFound {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// `create` for a chunk that already has a replica here.
    #[error("chunk {handle} already exists")]
    AlreadyExists {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// An append at an offset below the replica's current end, or at an offset another early
    /// append already holds. Appends are accepted only at exactly the end.
    #[error("chunk {handle}: append at offset {got}, expected {expected}")]
    WrongOffset {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The replica's current end (including appends queued ahead of this one).
        expected: u64,
        /// The offset the append named.
        got: u64,
    },
    /// An append whose offset or length is not a positive multiple of 8.
    #[error("chunk {handle}: append of {len} bytes at offset {offset} is not 8-byte aligned")]
    Misaligned {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The offset the append named.
        offset: u64,
        /// Bytes offered.
        len: u64,
    },
    /// The replica is sealed: immutable.
    #[error("chunk {handle} is sealed")]
    Sealed {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// The request carries a different version than the replica (it was fenced, or the caller
    /// lags behind).
    #[error("chunk {handle}: version {got} is stale, replica has {have}")]
    StaleVersion {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The replica's version.
        have: ChunkVersion,
        /// The version the request carried.
        got: ChunkVersion,
    },
    /// An append that would end past the chunk's capacity.
    #[error("chunk {handle}: append would end at {end}, past the capacity of {capacity} bytes")]
    PastCapacity {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The chunk's capacity (file bytes, header included).
        capacity: u64,
        /// Where the append would end.
        end: u64,
    },
    /// A seal at a length this replica does not hold.
    #[error("chunk {handle}: cannot seal at {len}, replica holds only {have} bytes")]
    SealBeyondEnd {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The sealed length asked for.
        len: u64,
        /// The replica's durable length.
        have: u64,
    },
    /// An early (out-of-order) append could not be held: the per-chunk window is full.
    #[error("chunk {handle}: out-of-order window full, append at {offset} refused")]
    WindowFull {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The offset the append named.
        offset: u64,
    },
    /// An early append waited longer than the window timeout for the bytes before it.
    #[error("chunk {handle}: append at {got} timed out waiting for bytes from {expected}")]
    GapTimeout {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The replica's end while the append waited.
        expected: u64,
        /// The offset the append named.
        got: u64,
    },
    /// Too many requests are queued for this chunk's writer.
    #[error("chunk {handle}: writer queue full")]
    Overloaded {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// A read asked for more bytes than one read may return.
    #[error("read of {len} bytes exceeds the limit of {max} bytes")]
    ReadTooLarge {
        /// Bytes asked for.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A read starting past the replica's durable length.
    #[error("chunk {handle}: read at {offset} is past the durable length {len}")]
    OutOfRange {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The offset asked for.
        offset: u64,
        /// The replica's durable length.
        len: u64,
    },
    /// The disk is full: the group's bytes were cut back to the last durable length and nothing
    /// of the group was acknowledged. Earlier data is intact.
    #[error("chunk {handle}: disk full, append not stored")]
    DiskFull {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// Too little free space to create a replica: the disk is at its high-watermark, so the
    /// chunk should go elsewhere.
    #[error("chunk {handle}: no room for a new replica: {free} bytes free, {need} needed")]
    NoSpace {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// Free bytes for chunk data now.
        free: u64,
        /// Bytes a full replica takes (its capacity).
        need: u64,
    },
    /// The replica failed (an fsync or write error): its unacknowledged bytes cannot be trusted,
    /// and it refuses every append. Recover it from another replica.
    #[error("chunk {handle}: replica failed after an I/O error")]
    Failed {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// The replica holds bad bytes below its acknowledged length (found at startup). It is kept
    /// for inspection and must be repaired from another replica.
    #[error("chunk {handle} corrupt in {ranges:?}")]
    Corrupt {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The bad byte ranges, by file offset.
        ranges: Vec<ByteRange>,
    },
    /// The chunk capacity is not a valid one.
    #[error("bad capacity")]
    BadCapacity {
        /// What the record crate said.
        #[from]
        source: cairn_record::Error,
    },
    /// The store is shutting down (or the replica was deleted while the request waited).
    #[error("chunk {handle}: store closed")]
    Closed {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// An `Append` whose `frames` are not data frames of one writer with consecutive
    /// sequences, each within the chunk's record limit, covering the whole buffer.
    #[error("chunk {handle}: bad append batch: {reason}")]
    InvalidBatch {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// What is wrong with the batch.
        reason: String,
    },
    /// A request this server refuses as malformed (outside the batch check).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// A `Replicate` that would cut, replace or seal a healthy open replica: only the master's
    /// seal decides an open chunk's length.
    #[error("chunk {handle}: refusing to copy over its open replica: {why}")]
    OpenReplica {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// What the replica holds and why the copy would harm it.
        why: String,
    },
    /// An `Append` sent to a replica that is not the chunk's primary (or lost its primary state
    /// in a restart).
    #[error("chunk {handle}: this chunkserver is not its primary")]
    NotPrimary {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// A resent (writer, sequence) whose stored record has another frame CRC: two processes
    /// append as one writer, or a resend changed its payload. Nothing of the batch is stored.
    #[error(
        "chunk {handle}: writer {writer:016x} sequence {sequence} is already stored as a \
         different record (another frame CRC); two processes are appending as this writer, or \
         a resend changed its payload. Append as a fresh writer id, or resume the writer \
         (a new epoch) and re-send the same records"
    )]
    WriterConflict {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The writer id of the batch.
        writer: WriterId,
        /// The first sequence that differs.
        sequence: u64,
    },
    /// An append from an older incarnation of a resumed writer. Nothing is stored.
    #[error(
        "chunk {handle}: writer {writer:016x} at epoch {epoch} is fenced: a newer incarnation \
         resumed it at epoch {current}; stop this process (its unacknowledged records are the \
         newer incarnation's to re-send)"
    )]
    WriterFenced {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The writer id of the batch.
        writer: WriterId,
        /// The epoch the batch carried.
        epoch: u64,
        /// The epoch the primary knows.
        current: u64,
    },
    /// The chunk was fenced for a seal: it takes no more appends.
    #[error("chunk {handle} is fenced for a seal")]
    Fenced {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// A write of this chunk failed on some replica (or timed out): nothing more is acknowledged
    /// on it. Seal it and go on with the next chunk.
    #[error("chunk {handle} is broken after a failed write; seal it")]
    Broken {
        /// The chunk asked for.
        handle: ChunkHandle,
    },
    /// Forwarding a write to a secondary failed.
    #[error("chunk {handle}: forward to {peer} failed: {message}")]
    Forward {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The secondary's address.
        peer: String,
        /// What the transport or the secondary said.
        message: String,
    },
    /// A call to the master failed (unreachable, timed out, or refused).
    #[error("master {master}: {message}")]
    Master {
        /// The master's address.
        master: String,
        /// What the transport or the master said.
        message: String,
    },
    /// A write was not durable on every replica within the RPC timeout.
    #[error("chunk {handle}: write not durable on every replica within {timeout_ms} ms")]
    Timeout {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// Copying a replica from another chunkserver failed (unreachable, not sealed there, or the
    /// copy differed from the source and its own bytes were bad: it was deleted). No replica is
    /// left sealed from it.
    #[error("chunk {handle}: replicating from {source_addr} failed: {message}")]
    Replication {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The chunkserver copied from.
        source_addr: String,
        /// What went wrong.
        message: String,
    },
    /// A resource of this chunkserver ran out (file descriptors, threads, open replicas): the
    /// request is refused, nothing is wrong with the replica. Logged with `warn!` for the
    /// operator when it happens.
    #[error("chunkserver resource exhausted: {resource}: {detail}")]
    Exhausted {
        /// Which resource (named in the message the caller sees).
        resource: &'static str,
        /// What was being done, and the limit or OS error.
        detail: String,
    },
    /// Copying a replica found the source's bytes bad: a bad frame or a read the source answered
    /// `DATA_LOSS` (nothing was sealed from it), or a whole-replica checksum that differs from
    /// a copy that verifies whole (the copy is kept, sealed). The master marks that source
    /// corrupt and copies from another replica.
    #[error("chunk {handle}: the source {source_addr} holds bad bytes: {message}")]
    SourceCorrupt {
        /// The chunk asked for.
        handle: ChunkHandle,
        /// The chunkserver copied from.
        source_addr: String,
        /// What was found.
        message: String,
    },
    /// The server is shutting down.
    #[error("chunkserver is shutting down")]
    ShuttingDown,
    /// A configuration value is out of bounds or inconsistent.
    #[error("bad configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The gRPC server failed (what tonic said is the error's source).
    #[error("gRPC server failed")]
    Transport {
        /// What tonic said.
        #[from]
        source: tonic::transport::Error,
    },
    /// An I/O error outside the append path (create, open, recovery, seal). The OS error is
    /// part of the message (a gRPC status carries it) and not a separate source, so a chain of
    /// causes prints it once.
    #[error("{op} {path}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`, or [`Error::Exhausted`] when the OS is out of file
    /// descriptors (EMFILE, ENFILE): that is no fault of the file, and the caller is told so.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| {
            if is_exhausted(&source) {
                let resource = match source.raw_os_error() {
                    Some(libc::ENFILE) => "file descriptors (system-wide)",
                    _ => "file descriptors",
                };
                Error::exhausted(resource, format!("{op} {}: {source}", path.display()))
            } else {
                Error::Io {
                    op,
                    path,
                    error: source,
                }
            }
        }
    }

    /// An [`Error::Exhausted`] of `resource`, logged for the operator.
    pub(crate) fn exhausted(resource: &'static str, detail: String) -> Error {
        warn!(resource, detail = %detail, "chunkserver resource exhausted; request refused");
        Error::Exhausted { resource, detail }
    }
}

/// Whether `e` says the process or the system is out of file descriptors.
pub(crate) fn is_exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// `Result` with the chunkserver's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
