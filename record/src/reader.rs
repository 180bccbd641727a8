//! A streaming frame reader: the frames of a replica or of a range of it, fed as byte slices in
//! file order, with a frame cut by the end of a slice carried into the next.
//!
//! The reader does no I/O: each caller keeps its own reads (`pread` in slices, `Read` RPCs, a
//! buffer already in memory) and feeds what it got. Whatever the slices, it yields exactly the
//! items one [`Scanner`](crate::Scanner) pass over all the bytes at once would (FORMAT.md,
//! "Scanning and resynchronisation"): it decides nothing that bytes not yet fed could change.
//! While input may still come, a frame cut by its end is reported as
//! [`ReadItem::Incomplete`], never as corrupt; [`FrameReader::finish`] (or reaching the end
//! given to [`FrameReader::until`]) declares the input complete, and only then is a cut frame
//! corrupt (or short padding, if that is what it is).
//!
//! Bounds: the reader keeps at most the bytes of one frame cut by the end of its input, and a
//! frame is never longer than [`FRAME_BYTES_MAX`]. Payloads are slices of the fed buffers
//! ([`Bytes`]): a slice that continues no cut frame is never copied; one that does is copied
//! once, with the cut bytes, into the buffer that joins them (and the reader waits, without
//! re-decoding, until the cut frame's bytes are all there).

use bytes::{Bytes, BytesMut};

use crate::error::DecodeError;
use crate::frame::{FrameKind, decode_frame, is_short_padding};
use crate::header::{ChunkHeader, u32_at};
use crate::ids::RecordId;
use crate::limits::{CHUNK_HEADER_BYTES, FRAME_ALIGN_BYTES, FRAME_BYTES_MAX, FRAME_HEADER_BYTES};

/// One thing a [`FrameReader`] found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadItem {
    /// The 32-byte chunk header (only from a reader made with [`FrameReader::chunk`]); a file
    /// shorter than a header gives `Err(DecodeError::Incomplete)` once the input is complete.
    /// Frames follow from offset 32 whether the header decoded or not.
    Header {
        /// The decoded header, or why it did not decode.
        header: Result<ChunkHeader, DecodeError>,
    },
    /// A verified data frame.
    Record {
        /// File offset of the frame.
        offset: u64,
        /// The record's id.
        id: RecordId,
        /// The payload, a slice of the fed bytes.
        payload: Bytes,
        /// The frame's stored CRC-32 (its first four bytes).
        frame_crc: u32,
    },
    /// A verified padding run (a padding frame, or short padding at the end of the input).
    Padding {
        /// File offset of the run.
        offset: u64,
        /// Bytes it covers.
        len: u64,
    },
    /// Bytes that are not a valid frame, up to the next valid frame or the end of the input.
    Corrupt {
        /// File offset of the first bad byte.
        offset: u64,
        /// Bytes skipped.
        len: u64,
    },
    /// A frame (or chunk header) cut by the end of the input fed so far: its bytes are kept,
    /// and the next feed continues it. Yielded once per feed that leaves it cut; never once
    /// the input is complete.
    Incomplete {
        /// File offset of the cut frame.
        offset: u64,
        /// Bytes of it fed so far.
        len: u64,
        /// Bytes the frame occupies, as far as its bytes so far tell (a frame header's 32 while
        /// the header itself is cut); at most [`FRAME_BYTES_MAX`].
        needed: u64,
    },
}

/// Where the reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The chunk header at offset 0 is next.
    Header,
    /// A frame may start at `pos`.
    Frames,
    /// Bytes from file offset `start` are bad; `cand` (an index into the buffer) is the next
    /// aligned offset where a frame might start and end the bad range.
    Bad { start: u64, cand: usize },
    /// Everything up to the end of the complete input was yielded.
    Done,
}

/// What the bytes at one offset are, as far as the bytes fed so far tell.
enum At {
    /// A valid frame of `len` bytes.
    Frame {
        kind: FrameKind,
        id: RecordId,
        len: usize,
        payload_len: usize,
    },
    /// Never a frame, whatever follows.
    Bad,
    /// Possibly a frame of `needed` bytes, once more bytes come.
    Cut { needed: usize },
}

/// Reads frames from slices fed in file order; see the module documentation.
///
/// Use: [`feed`](FrameReader::feed) a slice, take items with the iterator until it returns
/// `None`, feed the next slice; after the last one call [`finish`](FrameReader::finish) (unless
/// [`until`](FrameReader::until) named the end) and take the rest.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes being read; `buf[0]` is at file offset `base`.
    buf: Bytes,
    base: u64,
    /// Pieces of a cut frame being joined, from file offset `base` (then `buf` is empty).
    joining: BytesMut,
    /// Bytes `joining` must hold (from its start) before the cut frame can be judged.
    need: usize,
    /// In [`State::Frames`]: index of the next frame; else unused.
    pos: usize,
    state: State,
    /// File offset one past the last byte fed.
    fed_end: u64,
    /// The input ends at this file offset, if known.
    end: Option<u64>,
    /// [`FrameReader::finish`] was called.
    finished: bool,
    /// The current cut frame was already reported since the last feed.
    cut_reported: bool,
    /// Indexes into `buf`: bytes of yielded records and padding not yet taken.
    taken: usize,
    verified: usize,
}

impl FrameReader {
    /// A reader of frames from file offset `offset` (recovery and replay start at 32).
    ///
    /// # Panics
    /// If `offset` is not a multiple of 8: frames are aligned, so an unaligned start is a caller
    /// bug.
    pub fn new(offset: u64) -> FrameReader {
        assert!(
            offset.is_multiple_of(FRAME_ALIGN_BYTES as u64),
            "frames must be read from an aligned offset, got {offset}"
        );
        FrameReader {
            buf: Bytes::new(),
            base: offset,
            joining: BytesMut::new(),
            need: 0,
            pos: 0,
            state: State::Frames,
            fed_end: offset,
            end: None,
            finished: false,
            cut_reported: false,
            taken: 0,
            verified: 0,
        }
    }

    /// A reader of a whole chunk file from offset 0: first a [`ReadItem::Header`], then frames.
    pub fn chunk() -> FrameReader {
        FrameReader {
            state: State::Header,
            ..FrameReader::new(0)
        }
    }

    /// Declares that the input ends at file offset `end`: once it is fed the input is complete
    /// (no [`finish`](FrameReader::finish) needed), fed bytes past it are ignored, and a frame
    /// that claims to run past it is corrupt at once instead of being carried.
    pub fn until(mut self, end: u64) -> FrameReader {
        self.end = Some(end.max(self.fed_end));
        self
    }

    /// File offset one past the last byte fed (where the next feed's bytes belong).
    pub fn fed_end(&self) -> u64 {
        self.fed_end
    }

    /// File offset of the first byte not covered by a yielded item: the start of a cut frame,
    /// or of a bad range whose end is not known yet.
    pub fn position(&self) -> u64 {
        match self.state {
            State::Header => 0,
            State::Frames => self.base + self.pos as u64,
            State::Bad { start, .. } => start,
            State::Done => self.fed_end,
        }
    }

    /// The start of a bad range whose end the bytes not yet fed will decide (it is bad whatever
    /// they are; its [`ReadItem::Corrupt`] comes once its end is known). Callers that stop at the
    /// first bad byte can stop here without reading on.
    pub fn bad_since(&self) -> Option<u64> {
        match self.state {
            State::Bad { start, .. } => Some(start),
            _ => None,
        }
    }

    /// Whether the input is complete: finished, or fed up to the end given to `until`.
    fn complete(&self) -> bool {
        self.finished || self.end.is_some_and(|e| self.fed_end >= e)
    }

    /// Appends the next bytes of the input (the ones at file offset [`fed_end`]).
    ///
    /// [`fed_end`]: FrameReader::fed_end
    ///
    /// # Panics
    /// After [`finish`](FrameReader::finish): the input was declared complete.
    pub fn feed(&mut self, data: impl Into<Bytes>) {
        assert!(!self.finished, "bytes fed after the input was finished");
        let mut data: Bytes = data.into();
        if let Some(end) = self.end {
            let room = end.saturating_sub(self.fed_end);
            if (data.len() as u64) > room {
                data.truncate(room as usize);
            }
        }
        if data.is_empty() {
            return;
        }
        self.fed_end += data.len() as u64;
        self.cut_reported = false;
        if self.joining.is_empty() {
            // Keep only the undecided bytes of the current buffer.
            let from = match self.state {
                State::Header => 0,
                State::Frames => self.pos,
                State::Bad { cand, .. } => cand,
                State::Done => self.buf.len(),
            }
            .min(self.buf.len());
            let keep = self.buf.slice(from..);
            self.rebase(from);
            if keep.is_empty() {
                self.buf = data;
            } else {
                self.buf = Bytes::new();
                self.joining = BytesMut::with_capacity(self.need.max(keep.len() + data.len()));
                self.joining.extend_from_slice(&keep);
                self.joining.extend_from_slice(&data);
            }
        } else {
            self.joining.extend_from_slice(&data);
        }
        if !self.joining.is_empty() && (self.joining.len() >= self.need || self.complete()) {
            self.buf = self.joining.split().freeze();
        }
    }

    /// Declares the input complete: a frame still cut is now corrupt (or short padding).
    pub fn finish(&mut self) {
        self.finished = true;
        if !self.joining.is_empty() {
            self.buf = self.joining.split().freeze();
        }
    }

    /// The bytes of the records and padding yielded since the last feed or take, as one
    /// buffer without a copy when they were fed in one piece. For callers that stop at the
    /// first bad range (a copy writes only verified frames); a bad range yielded in between is
    /// included.
    pub fn take_verified(&mut self) -> Bytes {
        let out = self.buf.slice(self.taken..self.verified);
        self.taken = self.verified;
        out
    }

    /// Moves the start of `buf` forward by `from` bytes (which are dropped).
    fn rebase(&mut self, from: usize) {
        self.base += from as u64;
        match &mut self.state {
            State::Frames => self.pos -= from,
            State::Bad { cand, .. } => *cand -= from,
            State::Header | State::Done => {}
        }
        self.taken = 0;
        self.verified = 0;
    }

    /// What the bytes at `buf[i..]` are.
    fn at(&self, i: usize) -> At {
        let rest = &self.buf[i..];
        let offset = self.base + i as u64;
        match decode_frame(rest) {
            Ok(f) => At::Frame {
                kind: f.kind,
                id: f.id,
                len: f.encoded_len(),
                payload_len: f.payload.len(),
            },
            Err(DecodeError::Corrupt { .. }) => At::Bad,
            Err(DecodeError::Incomplete { needed, .. }) => {
                // The decoder refuses any frame longer than FRAME_BYTES_MAX before asking for
                // its bytes, so `needed` is bounded; the end, when known, bounds it further.
                debug_assert!(needed <= FRAME_BYTES_MAX);
                let past_end = rest.len() >= FRAME_HEADER_BYTES
                    && self.end.is_some_and(|e| offset + needed as u64 > e);
                if past_end || self.complete() {
                    At::Bad
                } else {
                    At::Cut { needed }
                }
            }
        }
    }

    /// The item for the valid frame at `buf[i..]`.
    fn frame_item(
        &self,
        i: usize,
        kind: FrameKind,
        id: RecordId,
        len: usize,
        payload_len: usize,
    ) -> ReadItem {
        let offset = self.base + i as u64;
        match kind {
            FrameKind::Data => ReadItem::Record {
                offset,
                id,
                payload: self
                    .buf
                    .slice(i + FRAME_HEADER_BYTES..i + FRAME_HEADER_BYTES + payload_len),
                frame_crc: u32_at(&self.buf[i..], 0),
            },
            FrameKind::Padding => ReadItem::Padding {
                offset,
                len: len as u64,
            },
        }
    }

    /// Reports the cut bytes from `buf[i..]` once per feed, and waits for more.
    fn cut(&mut self, i: usize, needed: usize) -> Option<ReadItem> {
        self.need = needed;
        self.report_cut(self.base + i as u64, (self.buf.len() - i) as u64)
    }

    /// The [`ReadItem::Incomplete`] for `len` cut bytes at `offset`, unless already reported
    /// since the last feed.
    fn report_cut(&mut self, offset: u64, len: u64) -> Option<ReadItem> {
        if self.cut_reported {
            return None;
        }
        self.cut_reported = true;
        Some(ReadItem::Incomplete {
            offset,
            len,
            needed: self.need as u64,
        })
    }
}

impl Iterator for FrameReader {
    type Item = ReadItem;

    fn next(&mut self) -> Option<ReadItem> {
        if !self.joining.is_empty() {
            // Pieces of a cut frame (or of a candidate ending a bad range) are still being
            // joined; `joining` starts at the cut frame.
            return match self.state {
                State::Header | State::Frames => {
                    self.report_cut(self.base, self.joining.len() as u64)
                }
                State::Bad { .. } | State::Done => None,
            };
        }
        loop {
            match self.state {
                State::Done => return None,
                State::Header => {
                    if self.buf.len() < CHUNK_HEADER_BYTES && !self.complete() {
                        return self.cut(0, CHUNK_HEADER_BYTES);
                    }
                    let header = ChunkHeader::decode(&self.buf);
                    if self.buf.len() < CHUNK_HEADER_BYTES {
                        self.pos = self.buf.len();
                        self.state = State::Done;
                    } else {
                        self.pos = CHUNK_HEADER_BYTES;
                        self.state = State::Frames;
                    }
                    self.need = 0;
                    return Some(ReadItem::Header { header });
                }
                State::Frames => {
                    let i = self.pos;
                    if i >= self.buf.len() {
                        if self.complete() {
                            self.state = State::Done;
                        }
                        return None;
                    }
                    match self.at(i) {
                        At::Frame {
                            kind,
                            id,
                            len,
                            payload_len,
                        } => {
                            self.need = 0;
                            self.pos = i + len;
                            self.verified = self.pos;
                            return Some(self.frame_item(i, kind, id, len, payload_len));
                        }
                        At::Cut { needed } => return self.cut(i, needed),
                        At::Bad if self.complete() && is_short_padding(&self.buf[i..]) => {
                            let len = self.buf.len() - i;
                            self.pos = self.buf.len();
                            self.verified = self.pos;
                            return Some(ReadItem::Padding {
                                offset: self.base + i as u64,
                                len: len as u64,
                            });
                        }
                        At::Bad => {
                            self.state = State::Bad {
                                start: self.base + i as u64,
                                cand: i + FRAME_ALIGN_BYTES,
                            };
                        }
                    }
                }
                State::Bad { start, mut cand } => {
                    // Short padding never ends a bad range: its words are also payload bytes.
                    while cand < self.buf.len() {
                        match self.at(cand) {
                            At::Frame { .. } => {
                                self.state = State::Frames;
                                self.pos = cand;
                                self.verified = cand;
                                return Some(ReadItem::Corrupt {
                                    offset: start,
                                    len: self.base + cand as u64 - start,
                                });
                            }
                            At::Cut { needed } => {
                                self.need = needed;
                                self.state = State::Bad { start, cand };
                                return None;
                            }
                            At::Bad => cand += FRAME_ALIGN_BYTES,
                        }
                    }
                    self.need = 0;
                    if self.complete() {
                        self.state = State::Done;
                        self.pos = self.buf.len();
                        self.verified = self.pos;
                        return Some(ReadItem::Corrupt {
                            offset: start,
                            len: self.fed_end - start,
                        });
                    }
                    self.state = State::Bad { start, cand };
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_padding, encode_record, encoded_len};
    use crate::ids::{ChunkHandle, WriterId};
    use crate::scan::{ScanItem, Scanner};

    /// Frames of records with the given payload lengths (writer 3, sequences from 1), then
    /// `padding` bytes of padding. Returns the bytes and each record's offset from their start.
    fn frames(sizes: &[usize], padding: usize) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            offsets.push(out.len() as u64);
            let payload: Vec<u8> = (0..n).map(|b| (b * 31 + i) as u8).collect();
            let id = RecordId {
                writer: WriterId(3),
                sequence: i as u64 + 1,
            };
            encode_record(&mut out, id, &payload, 1 << 20).unwrap();
        }
        if padding > 0 {
            encode_padding(&mut out, padding).unwrap();
        }
        (out, offsets)
    }

    /// What one `Scanner` pass over the whole of `buf` (at file offset `base`) yields, as
    /// reader items.
    fn scanned(buf: &[u8], base: u64) -> Vec<ReadItem> {
        Scanner::new(buf, base)
            .map(|item| match item {
                ScanItem::Record {
                    offset,
                    id,
                    payload,
                } => ReadItem::Record {
                    offset,
                    id,
                    payload: Bytes::copy_from_slice(payload),
                    frame_crc: u32_at(&buf[(offset - base) as usize..], 0),
                },
                ScanItem::Padding { offset, len } => ReadItem::Padding { offset, len },
                ScanItem::Corrupt { offset, len } => ReadItem::Corrupt { offset, len },
            })
            .collect()
    }

    /// Feeds `buf` to a reader from `base`, cut at `cuts` (sorted indexes), then finishes.
    /// Returns the items without the `Incomplete` reports, and checks those reports: each names
    /// the bytes from the reader's position to the end of what was fed.
    fn read_cut(buf: &[u8], base: u64, cuts: &[usize]) -> Vec<ReadItem> {
        let mut r = FrameReader::new(base);
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&buf.len())) {
            r.feed(buf[at..cut].to_vec());
            at = cut;
            while let Some(item) = r.next() {
                if let ReadItem::Incomplete { offset, len, .. } = item {
                    assert_eq!(offset + len, base + cut as u64, "cut at {cut}");
                    assert_eq!(offset, r.position());
                    continue;
                }
                out.push(item);
            }
        }
        r.finish();
        for item in r.by_ref() {
            assert!(!matches!(item, ReadItem::Incomplete { .. }), "{item:?}");
            out.push(item);
        }
        assert_eq!(r.position(), base + buf.len() as u64);
        out
    }

    // Proves: records and padding fed in one piece come back with their offsets, ids, zero-copy
    // payloads and stored CRCs, as the scanner sees them.
    #[test]
    fn whole_feed_yields_what_the_scanner_sees() {
        let (buf, offsets) = frames(&[0, 5, 100, 8], 64);
        let items = read_cut(&buf, 32, &[]);
        assert_eq!(items, scanned(&buf, 32));
        assert_eq!(items.len(), 5);
        let ReadItem::Record {
            offset,
            payload,
            frame_crc,
            ..
        } = &items[2]
        else {
            panic!("{items:?}");
        };
        assert_eq!(*offset, 32 + offsets[2]);
        assert_eq!(payload.len(), 100);
        assert_eq!(
            *frame_crc,
            u32_at(&buf[offsets[2] as usize..], 0),
            "the stored CRC"
        );
        let fed = Bytes::from(buf.clone());
        let mut r = FrameReader::new(32);
        r.feed(fed.clone());
        let Some(ReadItem::Record { payload, .. }) = r.nth(1) else {
            panic!("second item is a record");
        };
        let inside = fed.as_ptr_range();
        assert!(inside.contains(&payload.as_ptr()), "the payload was copied");
    }

    // Proves (the reader's contract): the same bytes fed cut at every possible boundary (one
    // cut, and every byte as its own slice) yield exactly the items of one whole feed, for clean
    // frames, short padding at the end, a damaged frame and a torn final frame.
    #[test]
    fn every_cut_yields_the_items_of_one_whole_feed() {
        let (clean, offsets) = frames(&[3, 40, 0, 17, 200], 0);
        let mut short = clean.clone();
        encode_padding(&mut short, 24).unwrap();
        let mut damaged = clean.clone();
        damaged[offsets[1] as usize + 35] ^= 0x20;
        let torn = clean[..offsets[4] as usize + 50].to_vec();
        let mut bad_len = clean.clone();
        bad_len[offsets[3] as usize + 4] = 0xff; // claims a longer payload than it has
        for (name, buf) in [
            ("clean", clean),
            ("short padding", short),
            ("damaged", damaged),
            ("torn", torn),
            ("bad length", bad_len),
        ] {
            let whole = scanned(&buf, 32);
            assert_eq!(read_cut(&buf, 32, &[]), whole, "{name}: whole feed");
            for cut in 0..=buf.len() {
                assert_eq!(read_cut(&buf, 32, &[cut]), whole, "{name}: cut at {cut}");
            }
            let every: Vec<usize> = (1..buf.len()).collect();
            assert_eq!(read_cut(&buf, 32, &every), whole, "{name}: byte by byte");
        }
    }

    // Proves: a final frame cut by the end of the input is Incomplete (never Corrupt) until the
    // input is declared finished, and Corrupt from its start to the end after.
    #[test]
    fn a_cut_final_frame_is_incomplete_until_finished() {
        let (buf, offsets) = frames(&[10, 300], 0);
        let cut = offsets[1] as usize + 100;
        let mut r = FrameReader::new(32);
        r.feed(buf[..cut].to_vec());
        let items: Vec<_> = r.by_ref().collect();
        assert!(matches!(items[0], ReadItem::Record { .. }));
        assert_eq!(
            items[1],
            ReadItem::Incomplete {
                offset: 32 + offsets[1],
                len: 100,
                needed: encoded_len(300) as u64
            }
        );
        assert_eq!(items.len(), 2);
        // More bytes that still do not complete it: reported again, still not corrupt.
        r.feed(buf[cut..cut + 8].to_vec());
        assert_eq!(
            r.by_ref().collect::<Vec<_>>(),
            vec![ReadItem::Incomplete {
                offset: 32 + offsets[1],
                len: 108,
                needed: encoded_len(300) as u64
            }]
        );
        assert_eq!(r.position(), 32 + offsets[1]);
        r.finish();
        assert_eq!(
            r.collect::<Vec<_>>(),
            vec![ReadItem::Corrupt {
                offset: 32 + offsets[1],
                len: 108
            }]
        );
    }

    // Proves: a flipped byte anywhere in the frames is reported as Corrupt covering exactly the
    // damaged frame, whatever the slice size, and every other record still comes back.
    #[test]
    fn a_corrupt_byte_is_reported_at_its_frame() {
        let (buf, offsets) = frames(&[7, 64, 1, 130, 9], 0);
        let ends: Vec<u64> = offsets[1..]
            .iter()
            .copied()
            .chain([buf.len() as u64])
            .collect();
        for flip in 0..buf.len() {
            let mut bad = buf.clone();
            bad[flip] ^= 0x04;
            let k = offsets.iter().rposition(|&o| o <= flip as u64).unwrap();
            for slice in [8usize, 13, 64, 1 << 10] {
                let cuts: Vec<usize> = (1..bad.len()).filter(|c| c % slice == 0).collect();
                let items = read_cut(&bad, 32, &cuts);
                let corrupt: Vec<_> = items
                    .iter()
                    .filter(|i| matches!(i, ReadItem::Corrupt { .. }))
                    .collect();
                let expect = ReadItem::Corrupt {
                    offset: 32 + offsets[k],
                    len: ends[k] - offsets[k],
                };
                // A flip in a record's payload_len can make it claim more bytes than the input
                // has left; then the bad range runs to the end only if no frame follows.
                assert_eq!(corrupt, vec![&expect], "flip at {flip}, slice {slice}");
                let records = items
                    .iter()
                    .filter(|i| matches!(i, ReadItem::Record { .. }))
                    .count();
                assert_eq!(records, offsets.len() - 1, "flip at {flip}, slice {slice}");
            }
        }
    }

    // Proves: bytes known bad are reported by `bad_since` before the range's end is known, and
    // are not kept (only a candidate frame is carried).
    #[test]
    fn an_open_bad_range_is_known_before_its_end() {
        let (buf, offsets) = frames(&[50, 50], 0);
        let mut bad = buf.clone();
        bad[24] = 7; // an unknown kind: bad from its header on
        let mut r = FrameReader::new(32);
        r.feed(bad[..offsets[1] as usize - 8].to_vec());
        assert_eq!(r.by_ref().count(), 0);
        assert_eq!(r.bad_since(), Some(32));
        assert_eq!(r.position(), 32);
        r.feed(bad[offsets[1] as usize - 8..].to_vec());
        assert_eq!(
            r.next(),
            Some(ReadItem::Corrupt {
                offset: 32,
                len: offsets[1]
            })
        );
        assert!(matches!(r.next(), Some(ReadItem::Record { .. })));
        assert_eq!(r.bad_since(), None);
    }

    // Proves: with the end known (`until`), a frame claiming to run past it is corrupt at once
    // (not carried), and the input is complete without `finish` once the end is fed.
    #[test]
    fn a_frame_past_the_known_end_is_corrupt_at_once() {
        let (buf, offsets) = frames(&[10, 300], 0);
        let end = 32 + offsets[1] + 100;
        let mut r = FrameReader::new(32).until(end);
        r.feed(buf[..offsets[1] as usize + 40].to_vec());
        let items: Vec<_> = r.by_ref().collect();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(r.bad_since(), Some(32 + offsets[1]));
        r.feed(buf[offsets[1] as usize + 40..].to_vec());
        assert_eq!(r.fed_end(), end, "bytes past the end are ignored");
        assert_eq!(
            r.collect::<Vec<_>>(),
            vec![ReadItem::Corrupt {
                offset: 32 + offsets[1],
                len: 100
            }]
        );
    }

    // Proves: from offset 0 the chunk header comes first (decoded, or why not), frames follow
    // at 32, and a header cut by the end of the input is Incomplete until finished.
    #[test]
    fn the_chunk_header_is_checked_first() {
        let header = ChunkHeader::new(ChunkHandle(9), 1 << 20).unwrap();
        let (body, _) = frames(&[5], 0);
        let mut file = header.encode().to_vec();
        file.extend_from_slice(&body);
        let mut r = FrameReader::chunk();
        r.feed(file[..20].to_vec());
        assert_eq!(
            r.next(),
            Some(ReadItem::Incomplete {
                offset: 0,
                len: 20,
                needed: 32
            })
        );
        r.feed(file[20..].to_vec());
        assert_eq!(r.next(), Some(ReadItem::Header { header: Ok(header) }));
        assert!(matches!(
            r.next(),
            Some(ReadItem::Record { offset: 32, .. })
        ));

        let mut bad = file.clone();
        bad[17] ^= 1;
        let mut r = FrameReader::chunk();
        r.feed(bad);
        r.finish();
        let items: Vec<_> = r.collect();
        assert!(matches!(
            items[0],
            ReadItem::Header {
                header: Err(DecodeError::Corrupt { .. })
            }
        ));
        assert!(matches!(items[1], ReadItem::Record { offset: 32, .. }));

        let mut r = FrameReader::chunk();
        r.feed(file[..20].to_vec());
        r.finish();
        assert_eq!(
            r.collect::<Vec<_>>(),
            vec![ReadItem::Header {
                header: Err(DecodeError::Incomplete {
                    needed: 32,
                    available: 20
                })
            }]
        );
    }

    // Proves: `take_verified` hands out the bytes of the records and padding yielded, without
    // a copy for a slice fed whole, and joined for a frame cut between slices.
    #[test]
    fn verified_bytes_are_the_whole_frames() {
        let (buf, offsets) = frames(&[10, 20, 30], 0);
        let cut = offsets[2] as usize + 10;
        let mut r = FrameReader::new(32);
        let first = Bytes::copy_from_slice(&buf[..cut]);
        r.feed(first.clone());
        assert_eq!(r.by_ref().count(), 3, "two records and the cut");
        let verified = r.take_verified();
        assert_eq!(verified[..], buf[..offsets[2] as usize]);
        assert_eq!(verified.as_ptr(), first.as_ptr(), "no copy");
        assert!(r.take_verified().is_empty());
        r.feed(buf[cut..].to_vec());
        assert_eq!(r.by_ref().count(), 1);
        assert_eq!(r.take_verified()[..], buf[offsets[2] as usize..]);
    }
}
