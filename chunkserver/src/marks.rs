//! Writer marks for a fence answer (ARCHITECTURE.md, "Seal"): per writer, its last record in a
//! prefix of the replica that every replica holds durably, at most
//! [`cairn_proto::WRITER_MARKS_MAX`] writers, the most recently active ones.
//!
//! The next chunk's primary answers a resent record "already stored" from these marks, so a
//! mark must name only a record that is acknowledged-safe: durable on every replica (hence the
//! commit-offset prefix) and read from verified bytes (hence the stop at the first bad range:
//! past one, the scanner's resynchronisation may find a frame embedded in a damaged record's
//! payload, a record nobody appended).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use cairn_record::limits::CHUNK_HEADER_BYTES;
use cairn_record::{FrameReader, ReadItem, WriterId, WriterMark};

use crate::error::Result;

/// The marks of a scan and the end of the prefix they cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScannedMarks {
    /// Most recently written first (by the offset of the writer's last record).
    pub(crate) marks: Vec<WriterMark>,
    /// The scan covered `[32, through)`: the asked end, or the start of the first bad range.
    pub(crate) through: u64,
}

/// The `max` most recently active writers seen so far, in bounded memory: a writer's entry
/// moves to the front each time it writes; the least recent is dropped past `max`.
struct Recent {
    max: usize,
    /// writer → its last record.
    by_writer: HashMap<WriterId, LastRecord>,
    /// offset of a writer's last record → writer.
    by_offset: BTreeMap<u64, WriterId>,
}

/// A writer's last record seen by the scan.
#[derive(Clone, Copy, Debug)]
struct LastRecord {
    offset: u64,
    sequence: u64,
    frame_crc: u32,
}

impl Recent {
    fn new(max: usize) -> Recent {
        Recent {
            max,
            by_writer: HashMap::new(),
            by_offset: BTreeMap::new(),
        }
    }

    fn saw(&mut self, writer: WriterId, last: LastRecord) {
        let offset = last.offset;
        if let Some(old) = self.by_writer.insert(writer, last) {
            self.by_offset.remove(&old.offset);
        }
        self.by_offset.insert(offset, writer);
        if self.by_writer.len() > self.max
            && let Some((_, oldest)) = self.by_offset.pop_first()
        {
            self.by_writer.remove(&oldest);
        }
    }

    fn into_marks(self) -> Vec<WriterMark> {
        let by_writer = self.by_writer;
        self.by_offset
            .into_values()
            .rev()
            .map(|writer| {
                let last = by_writer[&writer];
                WriterMark {
                    writer,
                    sequence: last.sequence,
                    frame_crc: last.frame_crc,
                }
            })
            .collect()
    }
}

/// Scans `[32, through)` of a replica, read `read_bytes_max` at a time with `read(offset, len)`,
/// and returns the last record of each of the `max` most recently active writers. Stops at the
/// first bad range (see the module doc).
pub(crate) fn scan_marks(
    mut read: impl FnMut(u64, usize) -> Result<Bytes>,
    through: u64,
    read_bytes_max: usize,
    max: usize,
) -> Result<ScannedMarks> {
    let mut recent = Recent::new(max);
    // The reader carries a frame cut by a read boundary into the next read.
    let mut reader = FrameReader::new(CHUNK_HEADER_BYTES as u64).until(through);
    let mut read_at = reader.fed_end();
    loop {
        for item in reader.by_ref() {
            match item {
                ReadItem::Record {
                    offset,
                    id,
                    frame_crc,
                    ..
                } => recent.saw(
                    id.writer,
                    LastRecord {
                        offset,
                        sequence: id.sequence,
                        frame_crc,
                    },
                ),
                ReadItem::Corrupt { offset, .. } => return Ok(stop_at_bad(recent, offset)),
                ReadItem::Header { .. }
                | ReadItem::Padding { .. }
                | ReadItem::Incomplete { .. } => {}
            }
        }
        // Bytes known bad already: no need to read on to where their range ends.
        if let Some(offset) = reader.bad_since() {
            return Ok(stop_at_bad(recent, offset));
        }
        if read_at >= through {
            break;
        }
        let want = (through - read_at).min(read_bytes_max as u64) as usize;
        let data = read(read_at, want)?;
        if data.is_empty() {
            break;
        }
        read_at += data.len() as u64;
        reader.feed(data);
    }
    // Through the last whole frame (a frame still cut, on a file shorter than asked, is not
    // covered).
    Ok(ScannedMarks {
        marks: recent.into_marks(),
        through: reader.position().min(through),
    })
}

/// The marks so far, covering the prefix up to the bad bytes at `offset`.
fn stop_at_bad(recent: Recent, offset: u64) -> ScannedMarks {
    tracing::warn!(
        offset,
        "bad bytes: writer marks stop here (nothing after them is trusted)"
    );
    ScannedMarks {
        marks: recent.into_marks(),
        through: offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primary::frame_crc;
    use cairn_record::{RecordId, encode_record};

    /// A replica image: a zeroed header, then `records` (writer, sequence, payload byte).
    fn image(records: &[(u64, u64, u8)]) -> Vec<u8> {
        let mut out = vec![0u8; CHUNK_HEADER_BYTES];
        for &(writer, sequence, b) in records {
            encode_record(
                &mut out,
                RecordId {
                    writer: WriterId(writer),
                    sequence,
                },
                &[b; 8],
                1 << 20,
            )
            .unwrap();
        }
        out
    }

    fn reader(img: &[u8]) -> impl FnMut(u64, usize) -> Result<Bytes> + '_ {
        move |offset, len| {
            let start = offset as usize;
            let end = (start + len).min(img.len());
            Ok(Bytes::copy_from_slice(&img[start..end]))
        }
    }

    // Proves: marks cover only [32, through) (a record past the commit offset gives no mark),
    // name each writer's last record with its frame CRC, and come most recent first; small
    // reads cut frames and the carry puts them back together.
    #[test]
    fn marks_cover_the_prefix_most_recent_first() {
        let img = image(&[(1, 1, 1), (2, 1, 2), (1, 2, 3), (3, 1, 4), (2, 2, 5)]);
        let through = 32 + 4 * 40;
        let m = scan_marks(reader(&img), through, 24, 100).unwrap();
        assert_eq!(m.through, through);
        let ids: Vec<(u64, u64)> = m.marks.iter().map(|m| (m.writer.0, m.sequence)).collect();
        assert_eq!(ids, vec![(3, 1), (1, 2), (2, 1)]);
        let crc_of_1_2 = frame_crc(&img[32 + 2 * 40..]);
        assert_eq!(m.marks[1].frame_crc, crc_of_1_2);
    }

    // Proves: past the first bad range no mark is taken, not even from a valid frame the
    // scanner's search finds in a damaged record's payload (record/tests/known_limits.rs).
    #[test]
    fn marks_stop_at_the_first_bad_range() {
        let mut inner = Vec::new();
        encode_record(
            &mut inner,
            RecordId {
                writer: WriterId(9),
                sequence: 99,
            },
            b"inner",
            1 << 10,
        )
        .unwrap();
        let mut img = image(&[(1, 1, 1)]);
        let outer_at = img.len();
        encode_record(
            &mut img,
            RecordId {
                writer: WriterId(2),
                sequence: 1,
            },
            &inner,
            1 << 10,
        )
        .unwrap();
        encode_record(
            &mut img,
            RecordId {
                writer: WriterId(3),
                sequence: 1,
            },
            b"after",
            1 << 10,
        )
        .unwrap();
        img[outer_at] ^= 1;
        let len = img.len() as u64;
        let m = scan_marks(reader(&img), len, 1 << 20, 100).unwrap();
        assert_eq!(m.through, outer_at as u64);
        let ids: Vec<(u64, u64)> = m.marks.iter().map(|m| (m.writer.0, m.sequence)).collect();
        assert_eq!(ids, vec![(1, 1)]);
    }

    // Proves (issue item 4, unit level): a chunk with 2,000,000 distinct writers (one record
    // each, empty payloads: 64 MB of frames) gives a bounded answer, the `max` most recently
    // active writers, newest first, and a writer that wrote again recently stays in.
    #[test]
    fn two_million_writers_give_the_most_recent_bounded_marks() {
        const WRITERS: u64 = 2_000_000;
        let max = cairn_proto::WRITER_MARKS_MAX;
        let mut img = vec![0u8; CHUNK_HEADER_BYTES];
        for w in 1..=WRITERS {
            encode_record(
                &mut img,
                RecordId {
                    writer: WriterId(w),
                    sequence: 1,
                },
                b"",
                1 << 10,
            )
            .unwrap();
        }
        // Writer 1 (the lowest id, the oldest record) writes once more at the very end.
        encode_record(
            &mut img,
            RecordId {
                writer: WriterId(1),
                sequence: 2,
            },
            b"",
            1 << 10,
        )
        .unwrap();
        let len = img.len() as u64;
        let m = scan_marks(reader(&img), len, 16 << 20, max).unwrap();
        assert_eq!(m.through, len);
        assert_eq!(m.marks.len(), max);
        assert_eq!((m.marks[0].writer, m.marks[0].sequence), (WriterId(1), 2));
        assert_eq!(m.marks[1].writer, WriterId(WRITERS));
        assert_eq!(m.marks[max - 1].writer, WriterId(WRITERS - max as u64 + 2));
    }
}
