//! The body of the `scan` fuzz target: invariants that must hold for any input bytes.
//!
//! This file is compiled twice: by the cargo-fuzz target (`fuzz_targets/scan.rs`) and, through
//! `#[path]`, by `record/tests/properties.rs`, so it type-checks and runs in every `cargo test`
//! even where nightly and cargo-fuzz are missing.

use cairn_record::limits::{CHUNK_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
use cairn_record::{
    ChunkHeader, Recovery, ScanItem, Scanner, classify, decode_frame, encode_padding,
    encode_record, encoded_len,
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
