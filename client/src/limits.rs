//! Every bound of the client: queues, batches, in-flight windows, retries and read ranges.
//!
//! Each is checked against its neighbours at compile time below.

use std::time::Duration;

use cairn_proto::limits::{GRPC_ENVELOPE_BYTES, GRPC_MESSAGE_BYTES_MAX};
use cairn_record::frame::encoded_len;
use cairn_record::limits::{FRAME_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};

/// Largest batch of encoded frames sent in one `Append` RPC (1 MiB). A single record larger
/// than this still travels alone in its own batch.
pub const BATCH_BYTES_MAX: usize = 1 << 20;

/// Most records in one batch.
pub const BATCH_RECORDS_MAX: usize = 1024;

/// Most batches of one appender in flight (sent, not yet answered) at once. The window
/// starts at one batch and grows by one per [`WINDOW_GROW_AFTER_BATCHES`] batches stored in
/// order; an `OUT_OF_ORDER` answer (a batch overtook an earlier one on its way into the
/// primary) halves it. While one batch is in flight the next one gathers everything queued.
pub const BATCHES_IN_FLIGHT_MAX: usize = 8;

/// While batches are in flight, a new batch is sent only if it holds more records than they
/// do, or at least this many encoded bytes (256 KiB); otherwise it waits for an answer and the
/// records go out together. Many small RPCs cost more CPU than the fsync they would share, so
/// small records travel in a few full batches, while large records (or a producer far ahead)
/// still keep several batches in flight. Resends of batches already built are not held back.
pub const PIPELINE_BATCH_BYTES_MIN: usize = 256 << 10;

/// How many times the appender yields to other tasks, after records were acknowledged and
/// before it sends what is queued, so that the callers those acknowledgements woke can append
/// their next records into the same batch (a yield is a few µs: well under 150 µs in all). It
/// stops as soon as they have; a caller that does not append again costs this much CPU, not
/// latency: its next record finds nothing in flight and goes out at once. A count, not a clock:
/// a wait on real time would make a simulated run depend on the machine's speed.
pub const GATHER_YIELDS_MAX: u32 = 32;

/// Batches stored in order, in a row, before the in-flight window grows by one.
pub const WINDOW_GROW_AFTER_BATCHES: u32 = 32;

/// [`crate::Appender::ready`] waits while more payload bytes than this are queued or in flight
/// (64 MiB). `append` itself never waits, so that sequences follow call order.
pub const APPENDER_PENDING_BYTES_MAX: usize = 64 << 20;

/// Deadline of one `Append` RPC: a primary answers only after every replica fsynced.
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Deadline of one call to the master.
pub const MASTER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Deadline of one `Read` RPC, on top of its long-poll wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect timeout of every channel.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An appender gives up on its pending records after failing this long without progress…
pub const APPEND_RETRY_WINDOW: Duration = Duration::from_secs(30);

/// …or after this many failed attempts (seal and resend) in a row without progress.
pub const APPEND_ATTEMPTS_MAX: u32 = 20;

/// How long a master call goes on looking for the leader of a group of masters (each master
/// that does not lead answers so at once; an election takes about a second).
pub const LEADER_SEARCH: Duration = Duration::from_secs(5);

/// The pause after every master of a group answered that it does not lead.
pub const LEADER_SEARCH_PAUSE: Duration = Duration::from_millis(100);

/// Sealed chunks a client remembers in all, across logs, so a replay can read them while the
/// master cannot be reached (`sealed_cache`); about 200 bytes each.
pub const SEALED_CACHE_CHUNKS_MAX: usize = 1 << 18;

/// A reader gives up on an unreachable chunk or master after this long without progress.
pub const READ_RETRY_WINDOW: Duration = Duration::from_secs(30);

/// First retry delay; it doubles per attempt up to [`RETRY_BACKOFF_MAX`].
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Largest retry delay.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Bytes asked for in one `Read` RPC of replay and tail (8 MiB).
pub const READ_RANGE_BYTES: u64 = 8 << 20;

/// Most bytes one `Read` RPC may ask for: the wire's bound, at which the chunkserver caps
/// reads (16 MiB). A frame longer than this is fetched in several reads and joined.
pub const READ_RPC_BYTES_MAX: u64 = cairn_proto::limits::READ_BYTES_MAX as u64;

/// Long-poll wait of `tail`'s reads of an open chunk.
pub const TAIL_WAIT_MS: u32 = 1_000;

/// How often `tail` asks the master for the next chunk while it has none to read.
pub const TAIL_POLL_INTERVAL: Duration = Duration::from_millis(200);

// A batch holding one maximal record fits one gRPC message (the largest read answer does too:
// `cairn_proto::limits`).
const _: () =
    assert!(encoded_len(RECORD_PAYLOAD_BYTES_MAX) + GRPC_ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX + GRPC_ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(READ_RANGE_BYTES <= READ_RPC_BYTES_MAX);
// A read range holds at least a frame header, so every range makes progress.
const _: () = assert!(READ_RANGE_BYTES as usize >= 2 * FRAME_HEADER_BYTES);
// The whole in-flight window fits the pending bound, so `ready` never stalls a full window.
const _: () = assert!(BATCH_BYTES_MAX * BATCHES_IN_FLIGHT_MAX <= APPENDER_PENDING_BYTES_MAX);
const _: () = assert!(BATCH_RECORDS_MAX >= 1 && BATCHES_IN_FLIGHT_MAX >= 1);
// A batch fits the stream window, so one batch never waits for a window update.
// One batch is in flight without waiting for window updates (the windows: cairn_proto::net).
const _: () = assert!(BATCH_BYTES_MAX <= cairn_proto::net::HTTP2_STREAM_WINDOW_BYTES as usize);
const _: () = assert!(RETRY_BACKOFF_MIN.as_millis() <= RETRY_BACKOFF_MAX.as_millis());
// A tail long-poll ends well within its RPC deadline.
const _: () = assert!((TAIL_WAIT_MS as u128) < READ_TIMEOUT.as_millis());

/// The delay before retry number `attempt` (1 = the first retry).
pub(crate) fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(10);
    RETRY_BACKOFF_MIN
        .saturating_mul(factor)
        .min(RETRY_BACKOFF_MAX)
}

/// Chunks asked for per `StatLog` page: `Client::stat_log` pages through a log of any length
/// (the master may answer fewer; a log of 230k chunks no longer fits one gRPC message).
pub const STAT_LOG_PAGE_CHUNKS: u32 = 8_192;
