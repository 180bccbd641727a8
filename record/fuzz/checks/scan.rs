//! The body of the `scan` fuzz target: invariants that must hold for any input bytes.
//!
//! This file is compiled twice: by the cargo-fuzz target (`fuzz_targets/scan.rs`) and, through
//! `#[path]`, by `record/tests/properties.rs`, so it type-checks and runs in every `cargo test`
//! even where nightly and cargo-fuzz are missing.

use cairn_record::limits::{CHUNK_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
use cairn_record::{
    ChunkHeader, FrameReader, ReadItem, Recovery, ScanItem, Scanner, classify, decode_frame,
    encode_padding, encode_record, encoded_len,
};

/// Feeds `data` to every decoder of the record crate and asserts what each must guarantee:
/// no panic; scan items cover the buffer contiguously with no empty item and no two bad ranges
/// side by side; every record and padding run re-encodes to exactly the bytes it was read from;
/// a decoded header re-encodes to its bytes; and `classify` agrees with the scan.
pub(crate) fn check(data: &[u8]) {
    if let Ok(header) = ChunkHeader::decode(data) {
        assert_eq!(header.encode()[..], data[..CHUNK_HEADER_BYTES]);
    }
    if let Ok(frame) = decode_frame(data) {
        assert!(frame.encoded_len() <= data.len());
    }
    // The input as the frames that follow a header, and (when long enough) as a whole file.
    check_frames(data, CHUNK_HEADER_BYTES as u64);
    if data.len() >= CHUNK_HEADER_BYTES {
        check_frames(&data[CHUNK_HEADER_BYTES..], CHUNK_HEADER_BYTES as u64);
    }
    // The streaming reader, fed the input in slices of sizes the input itself picks (so a
    // fuzzer explores them too), one byte at a time and whole, must see what one scan sees.
    let picked: Vec<usize> = data.iter().take(16).map(|&b| usize::from(b) + 1).collect();
    for sizes in [&[1usize][..], &[usize::MAX][..], &picked[..]] {
        check_sliced(data, CHUNK_HEADER_BYTES as u64, sizes);
        check_sliced_chunk(data, sizes);
    }
}

/// What one scan of the whole of `buf` (at file offset `base`) yields, as reader items.
pub(crate) fn scanned(buf: &[u8], base: u64) -> Vec<ReadItem> {
    Scanner::new(buf, base)
        .map(|item| match item {
            ScanItem::Record {
                offset,
                id,
                payload,
            } => {
                let at = (offset - base) as usize;
                ReadItem::Record {
                    offset,
                    id,
                    payload: payload.to_vec().into(),
                    frame_crc: u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")),
                }
            }
            ScanItem::Padding { offset, len } => ReadItem::Padding { offset, len },
            ScanItem::Corrupt { offset, len } => ReadItem::Corrupt { offset, len },
        })
        .collect()
}

/// Feeds `buf` to `reader` in slices of `sizes` (cycled; a size past the rest takes the rest),
/// then finishes it. Returns every item but the `Incomplete` reports, after checking that each
/// of those names the bytes from the reader's position to the end of what was fed, and that
/// none comes after the finish.
pub(crate) fn read_sliced(mut reader: FrameReader, buf: &[u8], sizes: &[usize]) -> Vec<ReadItem> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut sizes = sizes.iter().copied().filter(|&n| n > 0).cycle();
    while at < buf.len() {
        let n = sizes.next().unwrap_or(usize::MAX).min(buf.len() - at);
        reader.feed(buf[at..at + n].to_vec());
        at += n;
        while let Some(item) = reader.next() {
            if let ReadItem::Incomplete {
                offset,
                len,
                needed,
            } = item
            {
                assert_eq!(
                    offset + len,
                    reader.fed_end(),
                    "an incomplete frame ends the input"
                );
                assert_eq!(offset, reader.position());
                assert!(needed > len, "a cut frame needs more than it has");
                continue;
            }
            out.push(item);
        }
    }
    reader.finish();
    for item in reader.by_ref() {
        assert!(
            !matches!(item, ReadItem::Incomplete { .. }),
            "incomplete after the finish: {item:?}"
        );
        out.push(item);
    }
    assert_eq!(
        reader.position(),
        reader.fed_end(),
        "everything was decided"
    );
    out
}

/// The frames of `buf` from file offset `base`, read in slices, are the frames one scan sees.
pub(crate) fn check_sliced(buf: &[u8], base: u64, sizes: &[usize]) {
    let read = read_sliced(FrameReader::new(base), buf, sizes);
    assert_eq!(read, scanned(buf, base), "slices {sizes:?}");
}

/// `file` read as a chunk file from offset 0, in slices: its header's decoding, then the
/// frames one scan from offset 32 sees.
pub(crate) fn check_sliced_chunk(file: &[u8], sizes: &[usize]) {
    let read = read_sliced(FrameReader::chunk(), file, sizes);
    // Even an empty file gives its header's verdict (incomplete).
    let mut expect = vec![ReadItem::Header {
        header: ChunkHeader::decode(file),
    }];
    if file.len() > CHUNK_HEADER_BYTES {
        expect.extend(scanned(
            &file[CHUNK_HEADER_BYTES..],
            CHUNK_HEADER_BYTES as u64,
        ));
    }
    assert_eq!(read, expect, "chunk file in slices {sizes:?}");
}

/// Checks a scan of `buf` (starting at file offset `base`) and `classify` on it.
fn check_frames(buf: &[u8], base: u64) {
    let end = base + buf.len() as u64;
    let mut at = base;
    let mut previous_corrupt = false;
    let mut corrupt = Vec::new();
    for item in Scanner::new(buf, base) {
        let (offset, len) = match item {
            ScanItem::Record {
                offset,
                id,
                payload,
            } => {
                let len = encoded_len(payload.len()) as u64;
                let mut again = Vec::new();
                encode_record(&mut again, id, payload, RECORD_PAYLOAD_BYTES_MAX)
                    .expect("a decoded record re-encodes");
                assert_eq!(
                    again[..],
                    *slice(buf, base, offset, len),
                    "record at {offset}"
                );
                previous_corrupt = false;
                (offset, len)
            }
            ScanItem::Padding { offset, len } => {
                let mut again = Vec::new();
                encode_padding(&mut again, len as usize).expect("decoded padding is aligned");
                assert_eq!(
                    again[..],
                    *slice(buf, base, offset, len),
                    "padding at {offset}"
                );
                previous_corrupt = false;
                (offset, len)
            }
            ScanItem::Corrupt { offset, len } => {
                assert!(!previous_corrupt, "two bad ranges side by side at {offset}");
                previous_corrupt = true;
                corrupt.push((offset, len));
                (offset, len)
            }
        };
        assert_eq!(offset, at, "items are not contiguous");
        assert!(len > 0, "empty item at {offset}");
        at += len;
        assert!(at <= end, "item past the end of the buffer");
    }
    assert_eq!(at, end, "items do not cover the buffer");

    // The verdict for a few acknowledged lengths: none, everything, more than everything, and
    // the start of each bad range.
    let mut acked_lens = vec![0, base, end, end + 8];
    acked_lens.extend(corrupt.iter().map(|&(offset, _)| offset));
    for acked in acked_lens {
        match classify(buf, base, acked) {
            Recovery::Clean => assert!(corrupt.is_empty() && acked <= end),
            Recovery::TornTail { valid_len } => {
                assert_eq!(corrupt.len(), 1);
                let (offset, len) = corrupt[0];
                assert_eq!((valid_len, offset + len), (offset, end));
                assert!(acked <= valid_len);
            }
            Recovery::Corrupt { ranges } => {
                let found: Vec<_> = ranges.iter().map(|r| (r.offset, r.len)).collect();
                let (listed, missing) = if acked > end {
                    assert_eq!(
                        ranges.last().map(|r| (r.offset, r.end())),
                        Some((end, acked))
                    );
                    (&found[..found.len() - 1], true)
                } else {
                    (&found[..], false)
                };
                assert_eq!(listed, &corrupt[..]);
                assert!(missing || !corrupt.is_empty());
            }
        }
    }
}

fn slice(buf: &[u8], base: u64, offset: u64, len: u64) -> &[u8] {
    let start = (offset - base) as usize;
    &buf[start..start + len as usize]
}
