//! Errors of the record crate.

/// Why bytes could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A record payload is larger than the limit that applies to it.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Payload bytes offered.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// A data record must name a non-zero writer (zero is reserved for padding).
    #[error("record id has writer 0, which is reserved for padding")]
    ZeroWriter,
    /// A chunk capacity outside the allowed bounds or not 8-byte aligned.
    #[error(
        "chunk capacity {chunk_bytes} bytes is not a multiple of 8 within {min}..={max}",
        min = crate::limits::CHUNK_BYTES_MIN,
        max = crate::limits::CHUNK_BYTES_MAX
    )]
    BadCapacity {
        /// The capacity that was asked for.
        chunk_bytes: u64,
    },
    /// A padding length that is zero or not a multiple of 8.
    #[error("padding of {len} bytes is not a positive multiple of 8")]
    BadPadding {
        /// The padding length that was asked for.
        len: usize,
    },
}

/// Why a chunk-file header or a frame did not decode. "Need more bytes" is kept apart from "bad
/// bytes": the first may be a torn write still being appended, the second never heals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends before the header or frame does; `needed` bytes would complete it.
    #[error("incomplete: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Bytes the header or frame claims to occupy.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The bytes are not a valid header or frame.
    #[error("corrupt: {reason}")]
    Corrupt {
        /// What check failed.
        reason: &'static str,
    },
}

/// `Result` with the record crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
