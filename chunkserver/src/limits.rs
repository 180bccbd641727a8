//! Every bound of the chunkserver, checked against its neighbours at compile time.

use cairn_record::limits::{CHUNK_BYTES_MAX, RECORD_PAYLOAD_BYTES_MAX};

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

/// Most bytes one `read` returns (16 MiB): replay streams large ranges in several reads.
pub const READ_BYTES_MAX: usize = 16 << 20;

/// Most iovecs handed to one `pwritev` call (Linux `IOV_MAX`).
pub const WRITEV_IOVECS_MAX: usize = 1024;

/// Bytes of one replica-state slot in the `.meta` file.
pub const META_SLOT_BYTES: usize = 64;

/// File offset of the second replica-state slot; the first is at 0. A page apart, so a torn
/// page write can damage at most one slot.
pub const META_SLOT_B_OFFSET: u64 = 4096;

/// Length of every `.meta` file: two slots, a page each.
pub const META_FILE_BYTES: u64 = 2 * META_SLOT_B_OFFSET;

// A window must be able to hold at least one maximal record.
const _: () = assert!(APPEND_WINDOW_BYTES_MAX >= RECORD_PAYLOAD_BYTES_MAX);
// The window can never hold more than the writer queue admitted.
const _: () = assert!(APPEND_WINDOW_COUNT_MAX <= WRITER_QUEUE_COUNT_MAX);
// One read never needs to exceed a chunk.
const _: () = assert!(READ_BYTES_MAX as u64 <= CHUNK_BYTES_MAX);
const _: () = assert!(META_SLOT_BYTES as u64 <= META_SLOT_B_OFFSET);
