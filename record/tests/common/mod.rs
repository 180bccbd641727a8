//! Helpers shared by the record crate's integration tests: building chunk files with a model of
//! what they contain, and checking what a scan returns against that model.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use cairn_record::limits::{CHUNK_HEADER_BYTES, FRAME_HEADER_BYTES, record_payload_bytes_max};
use cairn_record::{
    ChunkHandle, ChunkHeader, RecordId, ScanItem, Scanner, WriterId, encode_padding, encode_record,
    encoded_len,
};

/// One record as the test wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// File offset of the frame.
    pub(crate) offset: u64,
    /// The record's id.
    pub(crate) id: RecordId,
    /// The payload.
    pub(crate) payload: Vec<u8>,
}

/// What a frame in a built file is, for working out which frame a byte belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameModel {
    /// Index into [`Chunk::records`].
    Record(usize),
    /// A padding frame.
    PaddingFrame,
    /// A run of `CAIRNPAD` words shorter than a frame header.
    ShortPadding,
}

/// A chunk file and the model of its contents.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    /// The whole file: header and frames.
    pub(crate) file: Vec<u8>,
    /// The decoded header.
    pub(crate) header: ChunkHeader,
    /// Every record in file order.
    pub(crate) records: Vec<Written>,
    /// Every frame (records and padding) as (file offset, length, what).
    pub(crate) frames: Vec<(u64, u64, FrameModel)>,
}

impl Chunk {
    /// An empty chunk file: only its header.
    pub(crate) fn new(handle: u64, capacity: u64) -> Chunk {
        let header = ChunkHeader::new(ChunkHandle(handle), capacity).expect("valid capacity");
        Chunk {
            file: header.encode().to_vec(),
            header,
            records: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// File offset one past the last byte written.
    pub(crate) fn len(&self) -> u64 {
        self.file.len() as u64
    }

    /// Bytes left before the capacity.
    pub(crate) fn remaining(&self) -> u64 {
        u64::from(self.header.capacity) - self.len()
    }

    /// Largest payload a record in this chunk may carry.
    pub(crate) fn payload_max(&self) -> usize {
        record_payload_bytes_max(u64::from(self.header.capacity))
    }

    /// Appends one record.
    pub(crate) fn push(&mut self, id: RecordId, payload: &[u8]) {
        let offset = self.len();
        let max = self.payload_max();
        let n = encode_record(&mut self.file, id, payload, max).expect("encodes");
        assert_eq!(n, encoded_len(payload.len()));
        self.frames
            .push((offset, n as u64, FrameModel::Record(self.records.len())));
        self.records.push(Written {
            offset,
            id,
            payload: payload.to_vec(),
        });
    }

    /// Appends `len` bytes of padding (a frame, or short padding below a frame header's size).
    pub(crate) fn pad(&mut self, len: u64) {
        let offset = self.len();
        encode_padding(&mut self.file, len as usize).expect("aligned padding");
        let what = if len < FRAME_HEADER_BYTES as u64 {
            FrameModel::ShortPadding
        } else {
            FrameModel::PaddingFrame
        };
        self.frames.push((offset, len, what));
    }

    /// Fills the chunk up to `capacity - tail` with filler records, then pads the last `tail`
    /// bytes, so the file ends exactly at its capacity. `tail` must be a multiple of 8 and fit.
    pub(crate) fn fill_to_capacity(&mut self, tail: u64, writer: WriterId) {
        assert!(tail <= self.remaining() && tail.is_multiple_of(8));
        let max = (self.payload_max() as u64) & !7;
        let mut gap = self.remaining() - tail;
        let mut sequence = 1u64 << 40;
        while gap > 0 {
            assert!(gap >= FRAME_HEADER_BYTES as u64, "gap {gap} too small");
            // Never leave a gap smaller than a frame header behind a filler record.
            let payload = if gap - FRAME_HEADER_BYTES as u64 <= max {
                gap - FRAME_HEADER_BYTES as u64
            } else {
                max.min(gap - 2 * FRAME_HEADER_BYTES as u64)
            };
            sequence += 1;
            self.push(
                RecordId { writer, sequence },
                &vec![(sequence as u8) ^ 0x5a; payload as usize],
            );
            gap -= FRAME_HEADER_BYTES as u64 + payload;
        }
        if tail > 0 {
            self.pad(tail);
        }
        assert_eq!(self.len(), u64::from(self.header.capacity));
    }

    /// The frame containing file offset `at`, if any.
    pub(crate) fn frame_at(&self, at: u64) -> Option<(u64, u64, FrameModel)> {
        self.frames
            .iter()
            .copied()
            .find(|&(o, l, _)| o <= at && at < o + l)
    }

    /// File offsets at which a frame ends or the first frame starts.
    pub(crate) fn boundaries(&self) -> Vec<u64> {
        std::iter::once(CHUNK_HEADER_BYTES as u64)
            .chain(self.frames.iter().map(|&(o, l, _)| o + l))
            .collect()
    }
}

/// Scans the frames of a chunk file (everything after its header), as recovery does.
pub(crate) fn scan_file(file: &[u8]) -> Vec<ScanItem<'_>> {
    Scanner::new(&file[CHUNK_HEADER_BYTES..], CHUNK_HEADER_BYTES as u64).collect()
}

/// The records a scan returned, owned.
pub(crate) fn records_of(items: &[ScanItem<'_>]) -> Vec<Written> {
    items
        .iter()
        .filter_map(|item| match *item {
            ScanItem::Record {
                offset,
                id,
                payload,
            } => Some(Written {
                offset,
                id,
                payload: payload.to_vec(),
            }),
            _ => None,
        })
        .collect()
}

/// The corrupt ranges a scan returned, as (offset, len).
pub(crate) fn corrupt_of(items: &[ScanItem<'_>]) -> Vec<(u64, u64)> {
    items
        .iter()
        .filter_map(|item| match *item {
            ScanItem::Corrupt { offset, len } => Some((offset, len)),
            _ => None,
        })
        .collect()
}

/// File offset and length of a scan item.
pub(crate) fn span(item: &ScanItem<'_>) -> (u64, u64) {
    match *item {
        ScanItem::Record {
            offset, payload, ..
        } => (offset, encoded_len(payload.len()) as u64),
        ScanItem::Padding { offset, len } | ScanItem::Corrupt { offset, len } => (offset, len),
    }
}

/// Asserts that `items` cover `start..end` contiguously, in order, with no empty item.
pub(crate) fn assert_contiguous(items: &[ScanItem<'_>], start: u64, end: u64) {
    let mut at = start;
    for item in items {
        let (offset, len) = span(item);
        assert_eq!(offset, at, "gap or overlap before {item:?}");
        assert!(len > 0, "empty item {item:?}");
        at += len;
    }
    assert_eq!(at, end, "items do not reach the end");
}
