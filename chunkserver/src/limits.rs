//! Every bound of the chunkserver, checked against its neighbours at compile time.

use cairn_record::limits::{CHUNK_BYTES_MIN, RECORD_PAYLOAD_BYTES_MAX};

/// Most early (out-of-order) appends one chunk holds while it waits for the bytes before them.
/// A primary pipelines at most a handful of batches per chunk, so 256 is generous.
pub const APPEND_WINDOW_COUNT_MAX: usize = 256;

/// Most bytes of early appends one chunk holds (64 MiB).
pub const APPEND_WINDOW_BYTES_MAX: usize = 64 << 20;

/// How long an early append waits for the bytes before it before failing with `GapTimeout`,
/// in milliseconds. Default 2000.
pub const APPEND_WINDOW_TIMEOUT_MS: u64 = 2_000;

/// Most requests queued for one chunk's writer before appends are refused with `Overloaded`.
pub const WRITER_QUEUE_COUNT_MAX: usize = 16 << 10;

/// Most bytes one `read` returns: the wire's bound (16 MiB); replay streams large ranges in
/// several reads.
pub const READ_BYTES_MAX: usize = cairn_proto::limits::READ_BYTES_MAX;

/// Most iovecs handed to one `pwritev` call (Linux `IOV_MAX`); the disks in `cairn-files` hold
/// it.
pub use cairn_files::WRITEV_IOVECS_MAX;

/// Bytes of one replica-state slot in the `.meta` file.
pub const META_SLOT_BYTES: usize = 64;

/// File offset of the second replica-state slot; the first is at 0. A page apart, so a torn
/// page write can damage at most one slot.
pub const META_SLOT_B_OFFSET: u64 = 4096;

/// Length of every `.meta` file: two slots, a page each.
pub const META_FILE_BYTES: u64 = 2 * META_SLOT_B_OFFSET;

/// Longest a `Read` long poll (`wait_ms`) waits for new bytes, in milliseconds (30 s).
pub const READ_WAIT_MS_MAX: u64 = 30_000;

/// Most recent (sequence → offset) entries a primary keeps per writer of a chunk, to answer a
/// retried record with its offset. Older duplicates are answered with offset 0.
pub const WRITER_RECENT_OFFSETS_MAX: usize = 4096;

/// Shortest heartbeat period a chunkserver accepts, in milliseconds (the master's bound too).
pub const HEARTBEAT_MS_MIN: u64 = cairn_proto::limits::HEARTBEAT_MS_MIN;

/// Longest heartbeat period a chunkserver accepts, in milliseconds (the master's bound too).
pub const HEARTBEAT_MS_MAX: u64 = cairn_proto::limits::HEARTBEAT_MS_MAX;

/// Shortest RPC timeout a chunkserver accepts, in milliseconds.
pub const RPC_TIMEOUT_MS_MIN: u64 = 10;

/// Longest RPC timeout a chunkserver accepts, in milliseconds (ten minutes).
pub const RPC_TIMEOUT_MS_MAX: u64 = 600_000;

/// First wait before retrying an unreachable master, in milliseconds; doubled per failure.
pub const MASTER_RETRY_MS_MIN: u64 = 100;

/// Longest wait between retries to an unreachable master, in milliseconds.
pub const MASTER_RETRY_MS_MAX: u64 = 5_000;

// A window must be able to hold at least one maximal record.
const _: () = assert!(APPEND_WINDOW_BYTES_MAX >= RECORD_PAYLOAD_BYTES_MAX);
// The window can never hold more than the writer queue admitted.
const _: () = assert!(APPEND_WINDOW_COUNT_MAX <= WRITER_QUEUE_COUNT_MAX);
const _: () = assert!(META_SLOT_BYTES as u64 <= META_SLOT_B_OFFSET);
// A long poll must end well before any sane client deadline.
const _: () = assert!(READ_WAIT_MS_MAX <= 60_000);
const _: () = assert!(MASTER_RETRY_MS_MIN <= MASTER_RETRY_MS_MAX);

/// Most bytes the scrubber reads in one slice (1 MiB); it sleeps between slices to keep its rate.
/// A frame cut by a slice boundary is carried into the next slice (at most
/// [`cairn_record::limits::FRAME_BYTES_MAX`] bytes), so one read stays this small whatever the
/// frames.
pub const SCRUB_SLICE_BYTES_MAX: usize = 1 << 20;

/// Default scrub rate, in bytes per second (32 MiB/s).
pub const SCRUB_BYTES_PER_SEC_DEFAULT: u64 = 32 << 20;

/// Lowest scrub rate a chunkserver accepts, in bytes per second (64 KiB/s).
pub const SCRUB_BYTES_PER_SEC_MIN: u64 = 64 << 10;

/// Highest scrub rate a chunkserver accepts, in bytes per second (16 GiB/s, i.e. unthrottled).
pub const SCRUB_BYTES_PER_SEC_MAX: u64 = 16 << 30;

/// Default time from one scrub pass's start to the next one's, in milliseconds (one hour).
pub const SCRUB_INTERVAL_MS_DEFAULT: u64 = 3_600_000;

/// Longest scrub interval a chunkserver accepts, in milliseconds (30 days). 0 turns it off.
pub const SCRUB_INTERVAL_MS_MAX: u64 = 30 * 24 * 3_600_000;

const _: () = assert!(SCRUB_BYTES_PER_SEC_MIN <= SCRUB_BYTES_PER_SEC_DEFAULT);
const _: () = assert!(SCRUB_BYTES_PER_SEC_DEFAULT <= SCRUB_BYTES_PER_SEC_MAX);
const _: () = assert!(SCRUB_INTERVAL_MS_DEFAULT <= SCRUB_INTERVAL_MS_MAX);
// A slice holds at least a chunk header, so the header is checked in the first slice.
const _: () = assert!(SCRUB_SLICE_BYTES_MAX >= cairn_record::limits::CHUNK_HEADER_BYTES);

/// How long the primary holds a batch that arrived ahead of its writer's next sequence, waiting
/// for the earlier batch, before answering `OUT_OF_ORDER` (milliseconds).
pub const REORDER_HOLD_MS: u64 = 50;
const _: () = assert!(REORDER_HOLD_MS < RPC_TIMEOUT_MS_MIN * 100);

/// Smallest bandwidth bound of re-replication, bytes per second (1 MiB/s).
pub const REPLICATE_BYTES_PER_SEC_MIN: u64 = 1 << 20;

/// Bytes asked of the source per read while replicating (4 MiB).
pub const REPLICATE_READ_BYTES: u32 = 4 << 20;
const _: () = assert!(REPLICATE_READ_BYTES as usize <= READ_BYTES_MAX);

/// Most threads running the writers of open replicas (the store's pool, `store::schedule`):
/// group commits of this many replicas wait for the disk at once; others queue. Threads no
/// longer grow with the open replicas.
pub const WRITER_THREADS_MAX: usize = 32;

/// How long a writer thread stays without work before it ends, in milliseconds.
pub const WRITER_THREAD_IDLE_MS: u64 = 10_000;

/// Most chunk files of replicas without a writer (sealed, failed, corrupt) held open at once:
/// the store's descriptor cache, least recently used closed first. Bounds descriptors whatever
/// the number of replicas (100,000+ on a full disk of small chunks).
pub const FILE_CACHE_MAX: usize = 1024;

/// Most open (writable) replicas one chunkserver holds; `CreateReplica` beyond it is refused
/// with `RESOURCE_EXHAUSTED`. Each has two descriptors (chunk and `.meta`) until it is sealed; a
/// log has one open chunk at a time, so this bounds open logs per chunkserver, not its
/// replicas.
pub const OPEN_REPLICAS_MAX: usize = 1024;

/// Most bytes the startup scan of an open replica reads at once (4 MiB), plus a frame carried
/// across the boundary: startup memory does not grow with the chunk size.
pub const RECOVERY_SLICE_BYTES_MAX: usize = 4 << 20;

/// Descriptors the store may hold beyond those of reads in flight: the cache plus two per open
/// replica. It must leave room under a common `ulimit -n` of 20,000 for sockets and the rest.
pub const STORE_FILES_MAX: usize = FILE_CACHE_MAX + 2 * OPEN_REPLICAS_MAX;
const _: () = assert!(STORE_FILES_MAX <= 10_000);
const _: () = assert!(RECOVERY_SLICE_BYTES_MAX as u64 >= CHUNK_BYTES_MIN);

/// Most replicas one chunkserver holds; `CreateReplica` and repair copies beyond it are refused
/// with `RESOURCE_EXHAUSTED` (400,000: 25 TB of 64 MiB chunks). What grows with the replica
/// count is bounded by it: the store's in-memory state of a replica (a few hundred bytes, no
/// thread, no descriptor, no buffer; see the store's module doc) and the replica report every
/// registration and heartbeat carries, which must fit one gRPC message.
pub const REPLICAS_MAX: usize = 400_000;

/// Largest encoded `ReplicaReport` with its framing: a fixed64 handle, two varints (a version up
/// to 2^62, a length up to the largest chunk), four booleans, tags and the length prefix.
pub const REPLICA_REPORT_BYTES_MAX: usize = 40;

// A full report of the most replicas fits one message, with room for the rest of it.
const _: () =
    assert!(REPLICAS_MAX * REPLICA_REPORT_BYTES_MAX <= cairn_proto::GRPC_MESSAGE_BYTES_MAX * 4 / 5);

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    // Proves: REPLICA_REPORT_BYTES_MAX bounds a report of a replica at its largest (every field
    // at its widest value), framed as an element of a repeated field, so the assertion that
    // REPLICAS_MAX reports fit one message holds for real encodings.
    #[test]
    fn the_largest_replica_report_fits_its_bound() {
        let r = cairn_proto::v1::ReplicaReport {
            handle: u64::MAX,
            version: cairn_record::limits::CHUNK_VERSION_MAX,
            length: cairn_record::limits::CHUNK_BYTES_MAX,
            sealed: true,
            failed: true,
            corrupt: true,
            primary: true,
        };
        let framed = 1 + prost::length_delimiter_len(r.encoded_len()) + r.encoded_len();
        assert!(framed <= REPLICA_REPORT_BYTES_MAX, "{framed} bytes");
    }
}
