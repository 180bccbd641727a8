//! Deciding, after a restart, whether a replica's bad bytes are a torn append (safe to cut) or
//! corruption (keep, report, repair from another replica).

use crate::scan::{ByteRange, ScanItem, Scanner};

/// The verdict on a replica's bytes given the length it had acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Every byte is part of a valid frame and nothing acknowledged is missing.
    Clean,
    /// Bad bytes only past the acknowledged length, with no valid frame after them: an append that
    /// was cut by a crash. Truncating to `valid_len` loses nothing that was acknowledged.
    TornTail {
        /// File length to cut back to: the end of the last valid frame.
        valid_len: u64,
    },
    /// Bad or missing bytes below the acknowledged length, or bad bytes followed by valid frames.
    /// Never truncate: keep the file, report the ranges, repair from a healthy replica.
    Corrupt {
        /// Every bad range in file order; a missing acknowledged suffix is reported as a range
        /// starting at the file's end.
        ranges: Vec<ByteRange>,
    },
}

/// Classifies `buf`, the frames of a replica starting at file offset `base`, given `acked_len`,
/// the file length this replica had durably acknowledged before the restart.
pub fn classify(buf: &[u8], base: u64, acked_len: u64) -> Recovery {
    let ranges: Vec<ByteRange> = Scanner::new(buf, base)
        .filter_map(|item| match item {
            ScanItem::Corrupt { offset, len } => Some(ByteRange { offset, len }),
            _ => None,
        })
        .collect();
    classify_ranges(ranges, base + buf.len() as u64, acked_len)
}

/// The verdict [`classify`] gives, from what a scan of the replica's frames found: its bad
/// ranges in file order (as a [`Scanner`] or a finished [`FrameReader`](crate::FrameReader)
/// reports them) and `end`, the file offset where the scanned bytes end.
pub fn classify_ranges(mut ranges: Vec<ByteRange>, end: u64, acked_len: u64) -> Recovery {
    if end < acked_len {
        ranges.push(ByteRange {
            offset: end,
            len: acked_len - end,
        });
        return Recovery::Corrupt { ranges };
    }
    match ranges.as_slice() {
        [] => Recovery::Clean,
        [only] if only.end() == end && only.offset >= acked_len => Recovery::TornTail {
            valid_len: only.offset,
        },
        _ => Recovery::Corrupt { ranges },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_record;
    use crate::ids::{RecordId, WriterId};

    fn three_records() -> Vec<u8> {
        let mut out = Vec::new();
        for s in 1..=3 {
            let id = RecordId {
                writer: WriterId(1),
                sequence: s,
            };
            encode_record(&mut out, id, &[s as u8; 50], 1 << 10).unwrap();
        }
        out
    }

    #[test]
    fn clean_file_is_clean() {
        let buf = three_records();
        assert_eq!(classify(&buf, 32, 32 + buf.len() as u64), Recovery::Clean);
    }

    #[test]
    fn cut_past_the_ack_is_a_torn_tail() {
        let buf = three_records();
        let frame = buf.len() / 3;
        let cut = &buf[..2 * frame + 20];
        assert_eq!(
            classify(cut, 32, 32 + 2 * frame as u64),
            Recovery::TornTail {
                valid_len: 32 + 2 * frame as u64
            }
        );
    }

    // Regression: a record whose payload holds `CAIRNPAD` words, torn just after some of them,
    // is a torn tail (it used to scan as a bad range followed by padding, i.e. corruption).
    #[test]
    fn torn_record_with_padding_words_in_its_payload_is_a_torn_tail() {
        let mut buf = three_records();
        let acked = 32 + buf.len() as u64;
        let id = RecordId {
            writer: WriterId(1),
            sequence: 4,
        };
        encode_record(&mut buf, id, &b"CAIRNPAD".repeat(8), 1 << 10).unwrap();
        let cut = &buf[..acked as usize - 32 + 32 + 24];
        assert_eq!(
            classify(cut, 32, acked),
            Recovery::TornTail { valid_len: acked }
        );
    }

    #[test]
    fn cut_below_the_ack_is_corruption() {
        let buf = three_records();
        let frame = buf.len() / 3;
        let cut = &buf[..2 * frame + 20];
        let acked = 32 + buf.len() as u64;
        let Recovery::Corrupt { ranges } = classify(cut, 32, acked) else {
            panic!("expected corruption");
        };
        assert_eq!(ranges.last().unwrap().end(), acked);
    }

    #[test]
    fn bad_bytes_followed_by_good_frames_are_corruption_even_past_the_ack() {
        let mut buf = three_records();
        let frame = buf.len() / 3;
        buf[frame + 40] ^= 1;
        let Recovery::Corrupt { ranges } = classify(&buf, 32, 32) else {
            panic!("expected corruption");
        };
        assert_eq!(
            ranges,
            vec![ByteRange {
                offset: 32 + frame as u64,
                len: frame as u64
            }]
        );
    }
}
