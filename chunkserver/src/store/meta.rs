//! The replica state file `{handle:016x}.meta` (FORMAT.md, "Replica state file"): two
//! alternating checksummed 64-byte slots, a page apart, so a torn write of one slot never loses
//! the state the other holds.
//!
//! ```text
//! 0   8  magic        ASCII "CAIRNMET"
//! 8   2  format       u16, 1
//! 10  2  slot_len     u16, 64
//! 12  4  flags        u32: bit 0 sealed, bit 1 failed, bit 2 corrupt; other bits must be zero
//! 16  8  generation   u64, +1 per write; slot index = generation % 2
//! 24  8  handle       u64, must match the file name
//! 32  8  version      u64, the replica's chunk version
//! 40  8  acked_len    u64, file length this replica reported durable (the sealed length once sealed)
//! 48  8  capacity     u64, chunk capacity, header included
//! 56  4  reserved     zero
//! 60  4  slot_crc     CRC-32 of bytes 0..60
//! ```

use cairn_record::{ChunkHandle, ChunkVersion};

use crate::limits::{META_SLOT_B_OFFSET, META_SLOT_BYTES};

/// ASCII `CAIRNMET`: the first 8 bytes of a valid slot.
pub const META_MAGIC: [u8; 8] = *b"CAIRNMET";

const META_FORMAT: u16 = 1;
const FLAG_SEALED: u32 = 1;
const FLAG_FAILED: u32 = 2;
/// Set by the scrubber (or a read error) on a replica whose bytes are bad; added after v1 shipped,
/// so the format version is unchanged (see FORMAT.md, "Replica state file").
const FLAG_CORRUPT: u32 = 4;

/// One decoded slot: the replica's durable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Increases by one per write; the valid slot with the highest generation wins.
    pub generation: u64,
    /// The chunk this replica belongs to.
    pub handle: ChunkHandle,
    /// The replica's chunk version.
    pub version: ChunkVersion,
    /// The file length this replica last reported durable; once sealed, the sealed length.
    pub acked_len: u64,
    /// Chunk capacity in bytes, header included.
    pub capacity: u64,
    /// The replica is sealed at `acked_len`.
    pub sealed: bool,
    /// The replica failed (an fsync or write error) and must be recovered from another replica.
    pub failed: bool,
    /// The replica's bytes were found bad after it was sealed (scrub or read error): it serves
    /// no reads and must be repaired from another replica.
    pub corrupt: bool,
}

impl Meta {
    /// File offset of the slot this state is written to.
    pub fn slot_offset(&self) -> u64 {
        if self.generation.is_multiple_of(2) {
            0
        } else {
            META_SLOT_B_OFFSET
        }
    }

    /// The slot's 64 bytes.
    pub fn encode(&self) -> [u8; META_SLOT_BYTES] {
        let mut b = [0u8; META_SLOT_BYTES];
        b[0..8].copy_from_slice(&META_MAGIC);
        b[8..10].copy_from_slice(&META_FORMAT.to_le_bytes());
        b[10..12].copy_from_slice(&(META_SLOT_BYTES as u16).to_le_bytes());
        let flags = (self.sealed as u32 * FLAG_SEALED)
            | (self.failed as u32 * FLAG_FAILED)
            | (self.corrupt as u32 * FLAG_CORRUPT);
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.handle.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.version.0.to_le_bytes());
        b[40..48].copy_from_slice(&self.acked_len.to_le_bytes());
        b[48..56].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes one slot; `None` if it is not a valid slot.
    pub fn decode(b: &[u8]) -> Option<Meta> {
        let b = b.get(..META_SLOT_BYTES)?;
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u16_at = |at: usize| u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"));
        let valid = b[0..8] == META_MAGIC
            && crc32fast::hash(&b[0..60]) == u32_at(60)
            && u16_at(8) == META_FORMAT
            && u16_at(10) as usize == META_SLOT_BYTES
            && u32_at(12) & !(FLAG_SEALED | FLAG_FAILED | FLAG_CORRUPT) == 0
            && u32_at(56) == 0;
        if !valid {
            return None;
        }
        let flags = u32_at(12);
        Some(Meta {
            generation: u64_at(16),
            handle: ChunkHandle(u64_at(24)),
            version: ChunkVersion(u64_at(32)),
            acked_len: u64_at(40),
            capacity: u64_at(48),
            sealed: flags & FLAG_SEALED != 0,
            failed: flags & FLAG_FAILED != 0,
            corrupt: flags & FLAG_CORRUPT != 0,
        })
    }

    /// The state in a whole `.meta` file: the valid slot for `handle` with the highest
    /// generation, if any slot is valid.
    pub fn choose(file: &[u8], handle: ChunkHandle) -> Option<Meta> {
        let a = Meta::decode(file);
        let b = file
            .get(META_SLOT_B_OFFSET as usize..)
            .and_then(Meta::decode);
        [a, b]
            .into_iter()
            .flatten()
            .filter(|m| m.handle == handle)
            .max_by_key(|m| m.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::META_FILE_BYTES;

    fn meta(generation: u64) -> Meta {
        Meta {
            generation,
            handle: ChunkHandle(0xabc),
            version: ChunkVersion(3),
            acked_len: 4096,
            capacity: 1 << 20,
            sealed: generation.is_multiple_of(3),
            failed: false,
            corrupt: generation.is_multiple_of(5),
        }
    }

    fn file_with(metas: &[Meta]) -> Vec<u8> {
        let mut f = vec![0u8; META_FILE_BYTES as usize];
        for m in metas {
            let at = m.slot_offset() as usize;
            f[at..at + META_SLOT_BYTES].copy_from_slice(&m.encode());
        }
        f
    }

    #[test]
    fn slot_round_trips() {
        for generation in [7, 10, 15] {
            let m = meta(generation);
            assert_eq!(Meta::decode(&m.encode()), Some(m));
        }
        assert!(Meta::decode(&meta(10).encode()).unwrap().corrupt);
        assert!(!Meta::decode(&meta(7).encode()).unwrap().corrupt);
    }

    #[test]
    fn every_flipped_slot_byte_is_caught() {
        let enc = meta(5).encode();
        for i in 0..META_SLOT_BYTES {
            let mut b = enc;
            b[i] ^= 0x04;
            assert_eq!(Meta::decode(&b), None, "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn highest_valid_generation_wins_and_a_torn_slot_falls_back() {
        let f = file_with(&[meta(8), meta(9)]);
        assert_eq!(Meta::choose(&f, ChunkHandle(0xabc)), Some(meta(9)));
        // Tear the newer slot (generation 9, slot B): the older one is still there.
        let mut torn = f.clone();
        torn[META_SLOT_B_OFFSET as usize + 30..META_SLOT_B_OFFSET as usize + 64].fill(0);
        assert_eq!(Meta::choose(&torn, ChunkHandle(0xabc)), Some(meta(8)));
        assert_eq!(Meta::choose(&f, ChunkHandle(0xabd)), None);
    }
}
