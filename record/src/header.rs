//! The 32-byte header at the start of every chunk file (FORMAT.md, "Chunk file header").

use crate::error::DecodeError;
use crate::ids::ChunkHandle;
use crate::limits::{self, CHUNK_HEADER_BYTES};

/// ASCII `CAIRNCHK`: the first 8 bytes of every chunk file.
pub const CHUNK_MAGIC: [u8; 8] = *b"CAIRNCHK";

/// On-disk format versions this build reads. New layouts add a variant and a FORMAT.md history
/// row; code asks the variant for capabilities rather than comparing numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatVersion {
    /// Format version 1: the layout FORMAT.md describes.
    V1,
}

impl FormatVersion {
    /// The version new files are written with.
    pub const CURRENT: FormatVersion = FormatVersion::V1;

    /// The number stored in the header.
    pub const fn number(self) -> u16 {
        match self {
            FormatVersion::V1 => 1,
        }
    }

    /// Maps a stored number to a known version.
    pub const fn from_number(n: u16) -> Option<FormatVersion> {
        match n {
            1 => Some(FormatVersion::V1),
            _ => None,
        }
    }
}

/// The decoded chunk-file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Layout of the frames that follow.
    pub format: FormatVersion,
    /// The chunk this file is a replica of; must match the file name.
    pub handle: ChunkHandle,
    /// Largest length the file may reach, header included.
    pub capacity: u32,
}

impl ChunkHeader {
    /// A header for a new replica of `handle` with `capacity` bytes (validated).
    pub fn new(handle: ChunkHandle, capacity: u64) -> crate::Result<ChunkHeader> {
        limits::check_chunk_bytes(capacity)?;
        Ok(ChunkHeader {
            format: FormatVersion::CURRENT,
            handle,
            capacity: capacity as u32,
        })
    }

    /// The 32 bytes as they lie on disk.
    pub fn encode(&self) -> [u8; CHUNK_HEADER_BYTES] {
        let mut b = [0u8; CHUNK_HEADER_BYTES];
        b[0..8].copy_from_slice(&CHUNK_MAGIC);
        b[8..10].copy_from_slice(&self.format.number().to_le_bytes());
        b[10..12].copy_from_slice(&(CHUNK_HEADER_BYTES as u16).to_le_bytes());
        // 12..16: flags, zero.
        b[16..24].copy_from_slice(&self.handle.0.to_le_bytes());
        b[24..28].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates the header at the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<ChunkHeader, DecodeError> {
        if buf.len() < CHUNK_HEADER_BYTES {
            return Err(DecodeError::Incomplete {
                needed: CHUNK_HEADER_BYTES,
                available: buf.len(),
            });
        }
        let b = &buf[..CHUNK_HEADER_BYTES];
        let corrupt = |reason| Err(DecodeError::Corrupt { reason });
        if b[0..8] != CHUNK_MAGIC {
            return corrupt("bad chunk magic");
        }
        if crc32fast::hash(&b[0..28]) != u32_at(b, 28) {
            return corrupt("chunk header checksum mismatch");
        }
        let Some(format) = FormatVersion::from_number(u16::from_le_bytes([b[8], b[9]])) else {
            return corrupt("unknown chunk format version");
        };
        if u16::from_le_bytes([b[10], b[11]]) as usize != CHUNK_HEADER_BYTES {
            return corrupt("unexpected chunk header length");
        }
        if u32_at(b, 12) != 0 {
            return corrupt("unknown chunk header flags");
        }
        let capacity = u32_at(b, 24);
        if limits::check_chunk_bytes(capacity as u64).is_err() {
            return corrupt("chunk capacity out of bounds");
        }
        Ok(ChunkHeader {
            format,
            handle: ChunkHandle(u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"))),
            capacity,
        })
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = ChunkHeader::new(ChunkHandle(0x0123_4567_89ab_cdef), 256 << 10).unwrap();
        assert_eq!(ChunkHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn every_flipped_header_byte_is_caught() {
        let h = ChunkHeader::new(ChunkHandle(42), 1 << 20).unwrap().encode();
        for i in 0..CHUNK_HEADER_BYTES {
            let mut b = h;
            b[i] ^= 0x10;
            assert!(
                ChunkHeader::decode(&b).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn short_header_is_incomplete_not_corrupt() {
        let h = ChunkHeader::new(ChunkHandle(1), 1 << 20).unwrap().encode();
        assert!(matches!(
            ChunkHeader::decode(&h[..10]),
            Err(DecodeError::Incomplete { .. })
        ));
    }
}
