//! Every size bound of the format, in one place, checked against its neighbours at compile time.

/// Bytes of the chunk-file header that precedes the first frame.
pub const CHUNK_HEADER_BYTES: usize = 32;

/// Bytes of a frame header (before the payload).
pub const FRAME_HEADER_BYTES: usize = 32;

/// Every frame starts at a multiple of this many bytes (from the start of the chunk file).
pub const FRAME_ALIGN_BYTES: usize = 8;

/// Largest record payload the format allows, whatever the chunk capacity (16 MiB).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 16 << 20;

/// Largest frame, header and alignment included: a maximal record (16 MiB + 32). Padding is
/// never longer (it fills less than the frame of the record that did not fit, and the decoder
/// refuses a longer one), so a streaming reader carries at most this many bytes of a frame cut
/// by the end of its input, and a frame claiming more is corrupt.
pub const FRAME_BYTES_MAX: usize = FRAME_HEADER_BYTES + align_up(RECORD_PAYLOAD_BYTES_MAX);

/// Smallest chunk capacity (file bytes, header included) a log may use (4 KiB).
pub const CHUNK_BYTES_MIN: u64 = 4 << 10;

/// Largest chunk capacity (file bytes, header included) a log may use (1 GiB).
pub const CHUNK_BYTES_MAX: u64 = 1 << 30;

/// Chunk capacity used when a log does not name one (64 MiB).
pub const CHUNK_BYTES_DEFAULT: u64 = 64 << 20;

/// Largest chunk version anyone may issue or accept (2^62). The master raises a chunk's version
/// by one per seal, so no real chunk comes near it; a version above it in a request is forged or
/// broken, and is refused before any arithmetic could wrap.
pub const CHUNK_VERSION_MAX: u64 = 1 << 62;

const _: () = assert!(CHUNK_HEADER_BYTES.is_multiple_of(FRAME_ALIGN_BYTES));
// Every frame, the largest included, fits a chunk of the default capacity.
const _: () = assert!(FRAME_BYTES_MAX as u64 <= CHUNK_BYTES_DEFAULT);
const _: () = assert!(FRAME_BYTES_MAX.is_multiple_of(FRAME_ALIGN_BYTES));
// The master adds one to a version per seal: that can never wrap below the bound.
const _: () = assert!(CHUNK_VERSION_MAX < u64::MAX);
const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(FRAME_ALIGN_BYTES));
const _: () = assert!(CHUNK_BYTES_MIN.is_multiple_of(FRAME_ALIGN_BYTES as u64));
const _: () =
    assert!(CHUNK_BYTES_DEFAULT >= CHUNK_BYTES_MIN && CHUNK_BYTES_DEFAULT <= CHUNK_BYTES_MAX);
// The capacity is stored as a u32 in the chunk header.
const _: () = assert!(CHUNK_BYTES_MAX <= u32::MAX as u64);
// A maximal record must fit a quarter of the default chunk, so one record never fills a chunk alone.
const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX as u64 <= CHUNK_BYTES_DEFAULT / 4);
// The smallest chunk still holds its header and a minimal frame.
const _: () = assert!(CHUNK_BYTES_MIN as usize >= CHUNK_HEADER_BYTES + 4 * FRAME_HEADER_BYTES);

/// Largest record payload allowed in a chunk of `chunk_bytes` capacity: a quarter of the capacity,
/// and never more than [`RECORD_PAYLOAD_BYTES_MAX`].
///
/// Keeping records at most a quarter of a chunk bounds the space padding can waste to 25 %.
pub const fn record_payload_bytes_max(chunk_bytes: u64) -> usize {
    let quarter = chunk_bytes / 4;
    if quarter < RECORD_PAYLOAD_BYTES_MAX as u64 {
        quarter as usize
    } else {
        RECORD_PAYLOAD_BYTES_MAX
    }
}

/// Checks that `chunk_bytes` is a usable chunk capacity: within
/// [`CHUNK_BYTES_MIN`]..=[`CHUNK_BYTES_MAX`] and a multiple of [`FRAME_ALIGN_BYTES`].
pub fn check_chunk_bytes(chunk_bytes: u64) -> Result<(), crate::Error> {
    if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&chunk_bytes)
        || !chunk_bytes.is_multiple_of(FRAME_ALIGN_BYTES as u64)
    {
        return Err(crate::Error::BadCapacity { chunk_bytes });
    }
    Ok(())
}

/// Rounds `len` up to the next multiple of [`FRAME_ALIGN_BYTES`].
pub const fn align_up(len: usize) -> usize {
    (len + FRAME_ALIGN_BYTES - 1) & !(FRAME_ALIGN_BYTES - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_limit_is_a_quarter_of_small_chunks_and_capped_for_large_ones() {
        assert_eq!(record_payload_bytes_max(256 << 10), 64 << 10);
        assert_eq!(record_payload_bytes_max(64 << 20), 16 << 20);
        assert_eq!(record_payload_bytes_max(1 << 30), 16 << 20);
    }

    #[test]
    fn capacity_bounds_are_enforced() {
        assert!(check_chunk_bytes(CHUNK_BYTES_MIN).is_ok());
        assert!(check_chunk_bytes(CHUNK_BYTES_MAX).is_ok());
        assert!(check_chunk_bytes(CHUNK_BYTES_MIN - 8).is_err());
        assert!(check_chunk_bytes(CHUNK_BYTES_MAX + 8).is_err());
        assert!(check_chunk_bytes(CHUNK_BYTES_MIN + 4).is_err());
    }

    #[test]
    fn align_up_rounds_to_eight() {
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(1), 8);
        assert_eq!(align_up(8), 8);
        assert_eq!(align_up(9), 16);
    }
}
