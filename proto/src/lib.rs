//! Cairn's gRPC API, package `cairn.v1`, generated from `proto/cairn/v1/*.proto` at build time.
//!
//! Only the `service.rs` modules of the role crates and the client library touch these types;
//! everything else works with domain types. `bytes` fields are `bytes::Bytes`.
//!
//! # Layout
//! - `v1`: the generated messages, clients and servers.
//! - `marks`: `v1::WriterMark` to and from `cairn_record::WriterMark`.
//! - [`net`]: the one channel and server builder, the `Connector` seam, and (feature
//!   `memory-net`) an in-memory network.

#![allow(missing_docs, unreachable_pub, clippy::all)]

mod marks;
pub mod net;

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("cairn.v1");
}

/// Largest gRPC message any Cairn endpoint sends or accepts: a maximal batch (16 MiB of payload
/// plus framing) or a read of up to 16 MiB, with room for the envelope.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 20 << 20;

/// Most writer marks one message carries: a `Fence` answer (the most recently active writers of
/// the replica) and a `CreateReplica` (the marks and epochs carried across a roll). Bounds the
/// message whatever the number of writers in a chunk: a mark is at most 32 bytes on the wire.
pub const WRITER_MARKS_MAX: usize = 4096;
const _: () = assert!(WRITER_MARKS_MAX * 2 * 32 <= GRPC_MESSAGE_BYTES_MAX / 4);
