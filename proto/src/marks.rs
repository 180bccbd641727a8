//! [`v1::WriterMark`] to and from the domain type [`cairn_record::WriterMark`]: the one
//! conversion the chunkserver's fence answer, the master's fence call and its `CreateReplica`
//! use. The wire form carries a writer's epoch too (`CreateReplica` only).

use cairn_record::WriterMark;

use crate::v1;

impl From<v1::WriterMark> for WriterMark {
    /// The mark, without the epoch.
    fn from(m: v1::WriterMark) -> WriterMark {
        m.mark()
    }
}

impl v1::WriterMark {
    /// `mark` on the wire with the writer's `epoch` (0: none, as in a fence answer).
    pub fn with_epoch(mark: WriterMark, epoch: u64) -> v1::WriterMark {
        v1::WriterMark {
            writer: mark.writer.into(),
            sequence: mark.sequence,
            frame_crc: mark.frame_crc,
            epoch,
        }
    }

    /// The mark without the epoch.
    pub fn mark(&self) -> WriterMark {
        WriterMark {
            writer: self.writer.into(),
            sequence: self.sequence,
            frame_crc: self.frame_crc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_survives_the_wire_and_the_epoch_rides_along() {
        // Proves: a mark converted to the wire form with an epoch and back is the same mark,
        // and the epoch is the one given.
        let mark = WriterMark {
            writer: cairn_record::WriterId(u64::MAX - 1),
            sequence: 42,
            frame_crc: 0xdead_beef,
        };
        let pb = v1::WriterMark::with_epoch(mark, 9);
        assert_eq!(pb.epoch, 9);
        assert_eq!(pb.mark(), mark);
        assert_eq!(WriterMark::from(pb), mark);
    }
}
