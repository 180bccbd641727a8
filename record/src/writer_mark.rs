//! [`WriterMark`]: a writer's last record in a prefix of a chunk that every replica holds,
//! named by its sequence and stored frame CRC. A chunkserver's fence scan finds marks, the
//! master's seal carries them to the next chunk (and logs them), and the next primary uses them
//! to answer a resent record "already stored" and to tell a different record under the same
//! sequence (ARCHITECTURE.md, "Seal").

use crate::ids::WriterId;

/// One writer's last record in a prefix every replica of a chunk holds durably.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WriterMark {
    /// The writer id.
    pub writer: WriterId,
    /// Its highest sequence in the prefix (0: no record known).
    pub sequence: u64,
    /// That record's stored frame CRC (FORMAT.md, "Frames"). 0 stands for "not known": marks
    /// the master logged before CRCs were carried, used as a sequence only.
    #[cfg_attr(feature = "serde", serde(default))]
    pub frame_crc: u32,
}

impl WriterMark {
    /// The frame CRC of record `sequence`, if the mark names a record and knows its CRC.
    pub fn known_crc(&self) -> Option<u32> {
        (self.sequence > 0 && self.frame_crc != 0).then_some(self.frame_crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crc_is_known_only_for_a_named_record_with_a_non_zero_crc() {
        // Proves: `known_crc` answers the CRC only when both the sequence and the CRC are set.
        let m = |sequence, frame_crc| WriterMark {
            writer: WriterId(1),
            sequence,
            frame_crc,
        };
        assert_eq!(m(3, 7).known_crc(), Some(7));
        assert_eq!(m(3, 0).known_crc(), None);
        assert_eq!(m(0, 7).known_crc(), None);
    }
}
