//! Frames: a record or a padding run as laid on disk (FORMAT.md, "Frames").
//!
//! ```text
//! 0   4  frame_crc    CRC-32 of bytes 4..32 and the payload
//! 4   4  payload_len  u32
//! 8   8  writer_id    u64 (0 for padding)
//! 16  8  sequence     u64 (0 for padding)
//! 24  1  kind         1 = data, 2 = padding
//! 25  7  reserved     zero
//! 32  n  payload      then zero bytes up to the next multiple of 8
//! ```

use crate::error::{DecodeError, Error};
use crate::header::u32_at;
use crate::ids::{RecordId, WriterId};
use crate::limits::{FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, align_up};

/// Fills a padding run shorter than a frame header: each 8-byte word of it is this ASCII text.
pub const SHORT_PADDING_WORD: [u8; 8] = *b"CAIRNPAD";

const KIND_DATA: u8 = 1;
const KIND_PADDING: u8 = 2;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A record written by a client.
    Data,
    /// Filler up to the end of a chunk, written when a record did not fit the remainder.
    Padding,
}

/// A decoded, checksum-verified frame borrowing its payload from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Data or padding.
    pub kind: FrameKind,
    /// The record's id; writer and sequence are both zero for padding.
    pub id: RecordId,
    /// The payload (zeros for padding); excludes the alignment bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes this frame occupies on disk, header and alignment included.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.payload.len())
    }
}

/// Bytes a data frame with `payload_len` payload bytes occupies on disk.
pub const fn encoded_len(payload_len: usize) -> usize {
    FRAME_HEADER_BYTES + align_up(payload_len)
}

/// Appends one data frame for `payload` to `out`, refusing payloads above `payload_bytes_max`
/// (which callers take from [`crate::limits::record_payload_bytes_max`] for their chunk size).
/// Returns the bytes appended.
pub fn encode_record(
    out: &mut Vec<u8>,
    id: RecordId,
    payload: &[u8],
    payload_bytes_max: usize,
) -> Result<usize, Error> {
    let max = payload_bytes_max.min(RECORD_PAYLOAD_BYTES_MAX);
    if payload.len() > max {
        return Err(Error::RecordTooLarge {
            len: payload.len(),
            max,
        });
    }
    if id.writer == WriterId::PADDING {
        return Err(Error::ZeroWriter);
    }
    let start = out.len();
    let total = encoded_len(payload.len());
    out.reserve(total);
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    write_header_fields(&mut out[start..], KIND_DATA, payload.len(), id);
    out.extend_from_slice(payload);
    out.resize(start + total, 0);
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start + 4..start + FRAME_HEADER_BYTES]);
    h.update(payload);
    let crc = h.finalize();
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(total)
}

/// Appends `len` bytes of padding to `out`. `len` must be a positive multiple of 8. Runs shorter
/// than a frame header are written as [`SHORT_PADDING_WORD`]s, longer ones as a padding frame
/// whose zero payload fills the rest.
pub fn encode_padding(out: &mut Vec<u8>, len: usize) -> Result<(), Error> {
    if len == 0 || !len.is_multiple_of(FRAME_ALIGN_BYTES) {
        return Err(Error::BadPadding { len });
    }
    if len < FRAME_HEADER_BYTES {
        for _ in 0..len / FRAME_ALIGN_BYTES {
            out.extend_from_slice(&SHORT_PADDING_WORD);
        }
        return Ok(());
    }
    let start = out.len();
    let payload_len = len - FRAME_HEADER_BYTES;
    out.resize(start + len, 0);
    write_header_fields(
        &mut out[start..],
        KIND_PADDING,
        payload_len,
        RecordId {
            writer: WriterId::PADDING,
            sequence: 0,
        },
    );
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start + 4..start + len]);
    let crc = h.finalize();
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn write_header_fields(b: &mut [u8], kind: u8, payload_len: usize, id: RecordId) {
    b[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    b[8..16].copy_from_slice(&id.writer.0.to_le_bytes());
    b[16..24].copy_from_slice(&id.sequence.to_le_bytes());
    b[24] = kind;
    b[25..32].fill(0);
}

/// Decodes and verifies the frame at the start of `buf`.
///
/// `Incomplete` means the buffer ends inside a frame whose header is plausible (a torn append
/// looks like this); `Corrupt` means the bytes can never become a valid frame.
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Err(DecodeError::Incomplete {
            needed: FRAME_HEADER_BYTES,
            available: buf.len(),
        });
    }
    let corrupt = |reason| Err(DecodeError::Corrupt { reason });
    let payload_len = u32_at(buf, 4) as usize;
    let writer = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let sequence = u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes"));
    let kind = match buf[24] {
        KIND_DATA => FrameKind::Data,
        KIND_PADDING => FrameKind::Padding,
        _ => return corrupt("unknown frame kind"),
    };
    if buf[25..32].iter().any(|&b| b != 0) {
        return corrupt("reserved frame bytes are not zero");
    }
    match kind {
        FrameKind::Data if writer == 0 => return corrupt("data frame with writer 0"),
        FrameKind::Data if payload_len > RECORD_PAYLOAD_BYTES_MAX => {
            return corrupt("record length above the format limit");
        }
        FrameKind::Padding if writer != 0 || sequence != 0 => {
            return corrupt("padding frame with a record id");
        }
        // Padding fills less than the frame of the record that did not fit, so it is never
        // longer than the largest record: every frame fits `FRAME_BYTES_MAX`.
        FrameKind::Padding if payload_len > RECORD_PAYLOAD_BYTES_MAX => {
            return corrupt("padding longer than the largest record");
        }
        _ => {}
    }
    let total = encoded_len(payload_len);
    if buf.len() < total {
        return Err(DecodeError::Incomplete {
            needed: total,
            available: buf.len(),
        });
    }
    let payload_end = FRAME_HEADER_BYTES + payload_len;
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[4..payload_end]);
    if h.finalize() != u32_at(buf, 0) {
        return corrupt("frame checksum mismatch");
    }
    // The alignment bytes are outside the checksum; insisting on zeros still catches a flip there.
    if buf[payload_end..total].iter().any(|&b| b != 0) {
        return corrupt("alignment bytes are not zero");
    }
    Ok(Frame {
        kind,
        id: RecordId {
            writer: WriterId(writer),
            sequence,
        },
        payload: &buf[FRAME_HEADER_BYTES..payload_end],
    })
}

/// True when `buf` is exactly a short padding run: fewer bytes than a frame header, a positive
/// multiple of 8, every word [`SHORT_PADDING_WORD`].
pub fn is_short_padding(buf: &[u8]) -> bool {
    !buf.is_empty()
        && buf.len() < FRAME_HEADER_BYTES
        && buf.len().is_multiple_of(FRAME_ALIGN_BYTES)
        && buf
            .chunks_exact(FRAME_ALIGN_BYTES)
            .all(|w| w == SHORT_PADDING_WORD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sequence: u64) -> RecordId {
        RecordId {
            writer: WriterId(7),
            sequence,
        }
    }

    #[test]
    fn record_round_trips_with_alignment() {
        for len in [0usize, 1, 7, 8, 9, 100] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            let n = encode_record(&mut out, id(3), &payload, 1 << 20).unwrap();
            assert_eq!(n, out.len());
            assert_eq!(n % 8, 0);
            let f = decode_frame(&out).unwrap();
            assert_eq!(f.kind, FrameKind::Data);
            assert_eq!(f.id, id(3));
            assert_eq!(f.payload, &payload[..]);
            assert_eq!(f.encoded_len(), n);
        }
    }

    #[test]
    fn oversized_record_is_refused_with_the_limit() {
        let mut out = Vec::new();
        let err = encode_record(&mut out, id(1), &[0; 65], 64).unwrap_err();
        assert_eq!(err, Error::RecordTooLarge { len: 65, max: 64 });
        assert!(out.is_empty());
    }

    #[test]
    fn writer_zero_is_reserved() {
        let mut out = Vec::new();
        let err = encode_record(
            &mut out,
            RecordId {
                writer: WriterId(0),
                sequence: 1,
            },
            b"x",
            64,
        );
        assert_eq!(err, Err(Error::ZeroWriter));
    }

    #[test]
    fn padding_fills_any_aligned_remainder() {
        for len in (8..=256).step_by(8) {
            let mut out = Vec::new();
            encode_padding(&mut out, len).unwrap();
            assert_eq!(out.len(), len);
            if len < FRAME_HEADER_BYTES {
                assert!(is_short_padding(&out));
            } else {
                let f = decode_frame(&out).unwrap();
                assert_eq!(f.kind, FrameKind::Padding);
                assert_eq!(f.encoded_len(), len);
            }
        }
        assert!(encode_padding(&mut Vec::new(), 0).is_err());
        assert!(encode_padding(&mut Vec::new(), 12).is_err());
    }

    #[test]
    fn zero_filled_bytes_never_decode() {
        assert!(matches!(
            decode_frame(&[0u8; 64]),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(!is_short_padding(&[0u8; 16]));
    }

    #[test]
    fn cut_frame_is_incomplete() {
        let mut out = Vec::new();
        encode_record(&mut out, id(1), &[5; 40], 1 << 10).unwrap();
        for cut in 0..out.len() {
            assert!(
                matches!(
                    decode_frame(&out[..cut]),
                    Err(DecodeError::Incomplete { .. })
                ),
                "cut at {cut}"
            );
        }
    }
}
