//! A scanner over a run of frames that resynchronises after garbage.

use crate::frame::{FrameKind, decode_frame, is_short_padding};
use crate::ids::RecordId;
use crate::limits::FRAME_ALIGN_BYTES;

/// A byte range within a chunk file, by file offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    /// File offset of the first byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

impl ByteRange {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// One step of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanItem<'a> {
    /// A verified data frame.
    Record {
        /// File offset of the frame.
        offset: u64,
        /// The record's id.
        id: RecordId,
        /// The payload, borrowed from the scanned buffer.
        payload: &'a [u8],
    },
    /// A verified padding run (a padding frame or a short padding run).
    Padding {
        /// File offset of the run.
        offset: u64,
        /// Bytes it covers.
        len: u64,
    },
    /// Bytes that are not a valid frame, up to the next valid frame or the end of the buffer.
    Corrupt {
        /// File offset of the first bad byte.
        offset: u64,
        /// Bytes skipped.
        len: u64,
    },
}

/// Walks frames in a buffer that starts at file offset `base` (a multiple of 8).
///
/// After bytes that do not decode it searches the following 8-byte-aligned offsets for the next
/// valid frame and reports everything in between as one [`ScanItem::Corrupt`]. It never panics,
/// whatever the bytes. A frame embedded in the payload of a corrupt record can be found by the
/// search; replay guards against that by preferring a replica where the range is whole.
///
/// Short padding is accepted only where a frame may start (at the start of the buffer or right
/// after a valid frame), never by the search: `CAIRNPAD` words are ordinary payload bytes, and
/// a torn record whose payload holds some just before the tear must stay one bad range reaching
/// the end (a torn tail), not become "bad range, then padding" (which reads as corruption).
#[derive(Clone, Debug)]
pub struct Scanner<'a> {
    buf: &'a [u8],
    base: u64,
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner over `buf`, whose first byte is at file offset `base`.
    ///
    /// # Panics
    /// If `base` is not a multiple of 8: frames are aligned, so an unaligned start is a caller bug.
    pub fn new(buf: &'a [u8], base: u64) -> Scanner<'a> {
        assert!(
            base.is_multiple_of(FRAME_ALIGN_BYTES as u64),
            "scan must start at an aligned offset, got {base}"
        );
        Scanner { buf, base, pos: 0 }
    }

    /// File offset of the next byte to be scanned.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// File offset one past the end of the buffer.
    pub fn end_offset(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// The valid frame or (if `short_padding_ok`) short padding at `pos`, with its length.
    fn valid_at(&self, pos: usize, short_padding_ok: bool) -> Option<(ScanItem<'a>, usize)> {
        let rest = &self.buf[pos..];
        let offset = self.base + pos as u64;
        match decode_frame(rest) {
            Ok(f) => {
                let len = f.encoded_len();
                let item = match f.kind {
                    FrameKind::Data => ScanItem::Record {
                        offset,
                        id: f.id,
                        payload: f.payload,
                    },
                    FrameKind::Padding => ScanItem::Padding {
                        offset,
                        len: len as u64,
                    },
                };
                Some((item, len))
            }
            Err(_) if short_padding_ok && is_short_padding(rest) => Some((
                ScanItem::Padding {
                    offset,
                    len: rest.len() as u64,
                },
                rest.len(),
            )),
            Err(_) => None,
        }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = ScanItem<'a>;

    fn next(&mut self) -> Option<ScanItem<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        if let Some((item, len)) = self.valid_at(self.pos, true) {
            self.pos += len;
            return Some(item);
        }
        let start = self.pos;
        let mut next = start + FRAME_ALIGN_BYTES;
        while next < self.buf.len() && self.valid_at(next, false).is_none() {
            next += FRAME_ALIGN_BYTES;
        }
        let next = next.min(self.buf.len());
        self.pos = next;
        Some(ScanItem::Corrupt {
            offset: self.base + start as u64,
            len: (next - start) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_padding, encode_record, encoded_len};
    use crate::ids::WriterId;

    fn build(payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            offsets.push(out.len() as u64);
            let id = RecordId {
                writer: WriterId(9),
                sequence: i as u64 + 1,
            };
            encode_record(&mut out, id, p, 1 << 20).unwrap();
        }
        (out, offsets)
    }

    #[test]
    fn scans_records_and_padding() {
        let (mut buf, _) = build(&[b"a", b"bb", b"ccc"]);
        encode_padding(&mut buf, 64).unwrap();
        encode_padding(&mut buf, 16).unwrap();
        let items: Vec<_> = Scanner::new(&buf, 0).collect();
        assert_eq!(items.len(), 5);
        assert!(matches!(items[3], ScanItem::Padding { len: 64, .. }));
        assert!(matches!(items[4], ScanItem::Padding { len: 16, .. }));
    }

    #[test]
    fn resynchronises_after_garbage() {
        let (buf, offsets) = build(&[b"first", &[1u8; 100], b"third"]);
        let mut bad = buf.clone();
        bad[offsets[1] as usize + 40] ^= 0xff;
        let items: Vec<_> = Scanner::new(&bad, 32).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[1],
            ScanItem::Corrupt {
                offset: 32 + offsets[1],
                len: offsets[2] - offsets[1]
            }
        );
        assert!(matches!(
            items[2],
            ScanItem::Record {
                payload: b"third",
                ..
            }
        ));
    }

    // Regression (found by `record/tests/properties.rs`, cut_anywhere_yields_a_prefix): a record
    // torn right after `CAIRNPAD` words in its payload scanned as "bad range, then padding", so
    // `classify` called a plain torn append corruption. The search must not stop at short
    // padding; the tear is one range reaching the end.
    #[test]
    fn short_padding_words_inside_a_torn_record_are_not_padding() {
        let mut payload = b"CAIRNPAD".repeat(4);
        payload.extend_from_slice(b"tail....");
        let (buf, _) = build(&[b"first", &payload]);
        let second = encoded_len(5);
        // Cut after the header and two payload words of the second record.
        let cut = second + 32 + 16;
        let items: Vec<_> = Scanner::new(&buf[..cut], 32).collect();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(
            items[1],
            ScanItem::Corrupt {
                offset: 32 + second as u64,
                len: (cut - second) as u64
            }
        );
    }

    // The same words in a damaged record followed by nothing else stay part of the bad range.
    #[test]
    fn short_padding_words_inside_a_damaged_last_record_are_not_padding() {
        let payload = b"CAIRNPAD".repeat(3);
        let (mut buf, _) = build(&[&payload]);
        buf[0] ^= 1;
        let items: Vec<_> = Scanner::new(&buf, 32).collect();
        assert_eq!(
            items,
            vec![ScanItem::Corrupt {
                offset: 32,
                len: buf.len() as u64
            }]
        );
    }

    #[test]
    fn garbage_to_the_end_is_one_range() {
        let items: Vec<_> = Scanner::new(&[0xAB; 100], 0).collect();
        assert_eq!(
            items,
            vec![ScanItem::Corrupt {
                offset: 0,
                len: 100
            }]
        );
    }
}
