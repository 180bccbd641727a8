//! Cairn's record format: the bytes every chunk replica and the master's operation log are made of.
//!
//! A chunk file is a 32-byte [`ChunkHeader`] followed by 8-byte-aligned frames. A frame is a
//! 32-byte header (checksum, length, record id, kind) and a payload; `FORMAT.md` at the
//! repository root has the byte tables. This crate is pure: no I/O, no async, only slices.
//!
//! # Layout
//! - [`limits`]: every size bound, checked against the others at compile time.
//! - [`error`]: [`Error`] (encoding) and [`DecodeError`] (incomplete versus corrupt bytes).
//! - [`ids`]: the protocol's numbers as types: [`ChunkHandle`], [`ChunkVersion`],
//!   [`ChunkOffset`] (a position in a chunk's data), [`WriterId`] and [`RecordId`].
//! - [`header`]: the chunk-file header and [`FormatVersion`].
//! - [`frame`]: encoding and verifying single frames, padding included.
//! - [`scan`]: a [`Scanner`] that walks the frames of one buffer and resynchronises after
//!   garbage.
//! - [`reader`]: a [`FrameReader`] that yields the same items from slices fed one after the
//!   other (a frame cut by a slice's end is [`ReadItem::Incomplete`] and carried), checking the
//!   chunk header when read from offset 0; every sliced read of frames uses it.
//! - [`recovery`]: [`classify`] (and [`classify_ranges`], for a scan already done), which tells
//!   a torn tail from corruption after a restart.
//! - [`rng`]: [`SplitMix64`], the seeded generator behind every reproducible random choice.
//! - [`writer_mark`]: [`WriterMark`], a writer's last record in a prefix every replica holds
//!   (found by the fence scan, carried by the seal, used by the next primary); with the
//!   feature `serde`, the form the master's operation log stores.
//!
//! # Invariants
//! - Every frame starts at a file offset that is a multiple of 8 and is covered by a CRC-32;
//!   a zero-filled region never decodes as a frame.
//! - Decoding never panics and never returns a frame whose bytes changed after encoding.
//! - Offsets are file offsets: the first frame of a chunk is at offset 32.

pub mod error;
pub mod frame;
pub mod header;
pub mod ids;
pub mod limits;
pub mod reader;
pub mod recovery;
pub mod rng;
pub mod scan;
pub mod writer_mark;

pub use error::{DecodeError, Error, Result};
pub use frame::{
    Frame, FrameKind, SHORT_PADDING_WORD, decode_frame, encode_padding, encode_record, encoded_len,
    is_short_padding,
};
pub use header::{CHUNK_MAGIC, ChunkHeader, FormatVersion};
pub use ids::{ChunkHandle, ChunkOffset, ChunkVersion, RecordId, WriterId};
pub use reader::{FrameReader, ReadItem};
pub use recovery::{Recovery, classify, classify_ranges};
pub use rng::SplitMix64;
pub use scan::{ByteRange, ScanItem, Scanner};
pub use writer_mark::WriterMark;
