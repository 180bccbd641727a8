//! Every bound the master enforces, in one place, checked against its neighbours at compile time.

/// Longest log path, in bytes.
pub const PATH_BYTES_MAX: usize = 1024;

/// Fewest replicas a log may ask for.
pub const REPLICATION_MIN: u32 = 1;

/// Most replicas a log may ask for.
pub const REPLICATION_MAX: u32 = 7;

/// Replicas per chunk when neither the request nor `--default-replication` names a number.
pub const REPLICATION_DEFAULT: u32 = 3;

/// Bytes of operation-log entries (as JSON) in one Raft entry at most: a group commit of more is
/// proposed in several. Any entry fits ([`OPLOG_ENTRY_BYTES_MAX`]), and a proposal stays far
/// below a gRPC message between masters.
pub const PROPOSAL_BYTES_MAX: usize = 4 << 20;

/// Raft log entries between two snapshots of the master's metadata.
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 10_000;

/// Shortest heartbeat period a chunkserver may be asked for, in milliseconds (the
/// chunkserver's bound too).
pub const HEARTBEAT_MS_MIN: u64 = cairn_proto::limits::HEARTBEAT_MS_MIN;

/// Longest heartbeat period, in milliseconds (it travels as a u32 in `RegisterResponse`; the
/// chunkserver's bound too).
pub const HEARTBEAT_MS_MAX: u64 = cairn_proto::limits::HEARTBEAT_MS_MAX;

/// Shortest timeout of one master → chunkserver RPC, in milliseconds.
pub const RPC_TIMEOUT_MS_MIN: u64 = 10;

/// Writer marks carried from one chunk to the next, at most: those of the most recently active
/// writers. Dropping one is safe (its resent records are stored again and replay drops the
/// copies); the bound keeps seal entries, checkpoints and `CreateReplica` small. Equal to what
/// one fence answer carries.
pub const WRITER_MARKS_MAX: usize = cairn_proto::WRITER_MARKS_MAX;

/// Resumed writers (`ResumeWriter`) per log whose epochs the master keeps, at most. Every
/// chunk's primary is told them all at creation, so a new one past it is refused
/// (`RESOURCE_EXHAUSTED`) rather than an old epoch forgotten (which would unfence it).
pub const WRITER_EPOCHS_MAX: usize = cairn_proto::WRITER_MARKS_MAX;

/// Placements tried for one new chunk before giving up with `UNAVAILABLE` (a chunkserver that
/// died since its last heartbeat is left out of the next try).
pub const ALLOCATION_ATTEMPTS_MAX: usize = 3;

/// Largest operation-log entry (one JSON object), in bytes: a seal with the most writer marks
/// and replicas fits easily.
pub const OPLOG_ENTRY_BYTES_MAX: usize = 1 << 20;

const _: () = assert!(REPLICATION_MIN >= 1 && REPLICATION_MIN <= REPLICATION_MAX);
const _: () =
    assert!(REPLICATION_DEFAULT >= REPLICATION_MIN && REPLICATION_DEFAULT <= REPLICATION_MAX);
// A seal entry: each mark is at most ~85 JSON bytes, each replica address at most ~300.
const _: () =
    assert!(WRITER_MARKS_MAX * 96 + REPLICATION_MAX as usize * 512 <= OPLOG_ENTRY_BYTES_MAX);
// A CreateReplica carries the marks and the epochs of writers without a mark.
const _: () = assert!(WRITER_MARKS_MAX + WRITER_EPOCHS_MAX <= 2 * cairn_proto::WRITER_MARKS_MAX);
const _: () = assert!(OPLOG_ENTRY_BYTES_MAX <= cairn_record::limits::RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(OPLOG_ENTRY_BYTES_MAX <= PROPOSAL_BYTES_MAX);
const _: () = assert!(PROPOSAL_BYTES_MAX * 2 <= cairn_proto::GRPC_MESSAGE_BYTES_MAX);

/// Most chunks in one `StatLog` page (a request's `max_chunks` is capped to it; 0 asks for it).
pub const STAT_LOG_PAGE_CHUNKS_MAX: usize = 16_384;

/// Most bytes of chunk descriptions (estimated encoded size) in one `StatLog` page.
pub const STAT_LOG_PAGE_BYTES_MAX: usize = 4 << 20;

/// Most bytes of chunk descriptions in an unpaged `StatLog` answer (a client that predates
/// paging asks for the whole log); a bigger log is `RESOURCE_EXHAUSTED` for it.
pub const STAT_LOG_UNPAGED_BYTES_MAX: usize = 16 << 20;

const _: () = assert!(STAT_LOG_PAGE_BYTES_MAX <= STAT_LOG_UNPAGED_BYTES_MAX);
// Room for the log's own fields and message framing under the gRPC message limit.
const _: () =
    assert!(STAT_LOG_UNPAGED_BYTES_MAX + (1 << 20) <= cairn_proto::GRPC_MESSAGE_BYTES_MAX);

/// Copies (re-replications or catch-ups) the master runs at once, cluster-wide. Each copy is
/// also bounded in bandwidth by its target chunkserver (`--replicate-bytes-per-sec`).
pub const REPAIRS_IN_FLIGHT_MAX: usize = 4;

/// How long a failed copy of a chunk counts against its source and target: until then the
/// repair loop tries every other good replica (and target) first.
pub const FAILED_COPY_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);

/// Failed copies remembered at most (the oldest are forgotten first), bounding that memory.
pub const FAILED_COPIES_REMEMBERED_MAX: usize = 65_536;

/// The slowest copy rate the master waits for before timing a copy out, bytes per second.
pub const REPAIR_RATE_FLOOR_BYTES_PER_SEC: u64 = 1 << 20;

/// Default `--min-free-bytes`: the free space a chunkserver must keep beyond a chunk's capacity
/// to be given new replicas (1 GiB).
pub const MIN_FREE_BYTES_DEFAULT: u64 = 1 << 30;

/// Default silence, in milliseconds, after which a chunkserver's replicas count as lost for a
/// salvage (15 minutes): long past a restart, so a briefly unreachable chunkserver never has its
/// acknowledged records cut off.
pub const SALVAGE_AFTER_MS_DEFAULT: u64 = 900_000;

/// The first wait before the repair loop seals again an orphaned open chunk whose last seal
/// failed; it doubles on each failure up to [`RESEAL_BACKOFF_MAX`]. Each seal logs a new chunk
/// version, so a chunk no seal can finish must not burn one every repair pass.
pub const RESEAL_BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_millis(400);

/// The longest wait between the repair loop's seals of one orphaned open chunk.
pub const RESEAL_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);
