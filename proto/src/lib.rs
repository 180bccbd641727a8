//! Cairn's gRPC API, package `cairn.v1`, generated from `proto/cairn/v1/*.proto` at build time.
//!
//! Only the `service.rs` modules of the role crates and the client library touch these types;
//! everything else works with domain types. `bytes` fields are `bytes::Bytes`.
//!
//! # Layout
//! - `v1`: the generated messages, clients and servers.
//! - [`limits`]: the bounds the crates meet on over the wire (message, read and mark sizes, the
//!   heartbeat period), checked against each other and the record format at compile time;
//!   [`GRPC_MESSAGE_BYTES_MAX`] and [`WRITER_MARKS_MAX`] are also here at the root.
//! - `marks`: `v1::WriterMark` to and from `cairn_record::WriterMark`.
//! - [`net`]: the one channel and server builder, the `Connector` seam, [`net::Link`] (a
//!   channel that dials anew after a call failed in it), and (feature `memory-net`) an
//!   in-memory network.

#![allow(missing_docs, unreachable_pub, clippy::all)]

pub mod limits;
mod marks;
pub mod net;

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("cairn.v1");
}

pub use limits::{GRPC_MESSAGE_BYTES_MAX, WRITER_MARKS_MAX};
