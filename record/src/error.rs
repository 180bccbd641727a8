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
        "chunk capacity of {chunk_bytes} bytes is {problem}: a capacity is a multiple of 8 bytes \
         from {min} bytes (4 KiB) to {max} bytes (1 GiB)",
        problem = capacity_problem(*.chunk_bytes),
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

/// What is wrong with a refused chunk capacity, in words.
fn capacity_problem(chunk_bytes: u64) -> &'static str {
    if chunk_bytes < crate::limits::CHUNK_BYTES_MIN {
        "too small"
    } else if chunk_bytes > crate::limits::CHUNK_BYTES_MAX {
        "too large"
    } else {
        "not a multiple of 8"
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: a refused capacity's message says what is wrong with it (2 GiB is too large, not
    // misaligned) and the bounds in plain numbers, not Rust range syntax.
    #[test]
    fn a_bad_capacity_says_what_is_wrong() {
        let text = |n| Error::BadCapacity { chunk_bytes: n }.to_string();
        assert!(text(2 << 30).contains("is too large"), "{}", text(2 << 30));
        assert!(text(1000).contains("is too small"));
        assert!(text(4097).contains("is not a multiple of 8"));
        assert!(!text(4097).contains("..="));
        assert!(text(4097).ends_with("from 4096 bytes (4 KiB) to 1073741824 bytes (1 GiB)"));
    }
}
