//! The bounds more than one crate must agree on, because they meet on the wire: message sizes,
//! read sizes, writer marks per message and the heartbeat period. The client, chunkserver and
//! master `limits` modules name these (never a number of their own for the same bound), and the
//! relations between them and the record format's sizes are checked here at compile time.

use cairn_record::limits::{CHUNK_BYTES_MAX, FRAME_BYTES_MAX, FRAME_HEADER_BYTES};

/// Largest gRPC message any Cairn endpoint sends or accepts (20 MiB): a maximal batch (one
/// record of 16 MiB with its frame) or a maximal read, with room for the envelope.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 20 << 20;

/// Room for a message's other fields and gRPC framing beyond its frames or data (64 KiB).
pub const GRPC_ENVELOPE_BYTES: usize = 64 << 10;

/// Most bytes one `Read` RPC returns, and so the most a reader asks for (16 MiB). The
/// chunkserver caps every read at it; the client's replay, tail and fsck read at most this much
/// at once and join a longer frame from several reads.
pub const READ_BYTES_MAX: usize = 16 << 20;

/// Most writer marks one message carries: a `Fence` answer (the most recently active writers of
/// the replica) and a `CreateReplica` (the marks and epochs carried across a roll). Bounds the
/// message whatever the number of writers in a chunk: a mark is at most 32 bytes on the wire.
pub const WRITER_MARKS_MAX: usize = 4096;

/// Shortest heartbeat period, in milliseconds: the least a chunkserver accepts and the master
/// may ask for.
pub const HEARTBEAT_MS_MIN: u64 = 50;

/// Longest heartbeat period, in milliseconds (one minute); it travels as a u32 in
/// `RegisterResponse`.
pub const HEARTBEAT_MS_MAX: u64 = 60_000;

// The largest read answer fits one message.
const _: () = assert!(READ_BYTES_MAX + GRPC_ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
// The largest frame (a maximal record, which travels alone in its batch) fits one `Append`.
const _: () = assert!(FRAME_BYTES_MAX + GRPC_ENVELOPE_BYTES <= GRPC_MESSAGE_BYTES_MAX);
// A read holds at least a frame header, so every read makes progress.
const _: () = assert!(READ_BYTES_MAX >= 2 * FRAME_HEADER_BYTES);
// A read never needs to exceed a chunk.
const _: () = assert!(READ_BYTES_MAX as u64 <= CHUNK_BYTES_MAX);
// The marks and the epochs of writers without a mark (a `CreateReplica`) fit a quarter message.
const _: () = assert!(WRITER_MARKS_MAX * 2 * 32 <= GRPC_MESSAGE_BYTES_MAX / 4);
const _: () = assert!(HEARTBEAT_MS_MIN <= HEARTBEAT_MS_MAX && HEARTBEAT_MS_MAX <= u32::MAX as u64);
