//! Golden vectors for format v1 (FORMAT.md; files in `record/tests/golden/`).
//!
//! Each golden file is the `hexdump -C` dump of a whole chunk file. The test proves two things:
//! encoding the chunk today produces exactly those bytes, and decoding those bytes yields the
//! header, records and padding listed here. The files never change once v1 ships; a new layout
//! gets new files next to them. When an encoding test fails, the bytes produced today are
//! written to `golden-actual/` under Cargo's test scratch directory (`target/tmp`) so they can be compared with `hexdump -C`.

use std::path::{Path, PathBuf};

use cairn_record::limits::record_payload_bytes_max;
use cairn_record::{
    ChunkHandle, ChunkHeader, FormatVersion, RecordId, Recovery, ScanItem, Scanner, WriterId,
    classify, encode_padding, encode_record,
};

/// One expected item of a golden chunk, in file order.
#[derive(Debug)]
enum Expect {
    Record {
        offset: u64,
        writer: WriterId,
        sequence: u64,
        payload: Vec<u8>,
    },
    Padding {
        offset: u64,
        len: u64,
    },
}

/// A golden chunk: its file name, header and contents.
struct Golden {
    file: &'static str,
    handle: u64,
    capacity: u64,
    items: Vec<Expect>,
}

/// Header, three records of different lengths (an empty payload, 5 bytes, 13 bytes) and a
/// padding frame filling the chunk to its 4 KiB capacity.
fn chunk_v1() -> Golden {
    Golden {
        file: "chunk_v1.hex",
        handle: 0x0123_4567_89ab_cdef,
        capacity: 4096,
        items: vec![
            Expect::Record {
                offset: 32,
                writer: WriterId(0xa1),
                sequence: 1,
                payload: Vec::new(),
            },
            Expect::Record {
                offset: 64,
                writer: WriterId(0xa1),
                sequence: 2,
                payload: b"hello".to_vec(),
            },
            Expect::Record {
                offset: 104,
                writer: WriterId(0x00c0_ffee_0000_00b2),
                sequence: 7,
                payload: b"Cairn golden!".to_vec(),
            },
            Expect::Padding {
                offset: 152,
                len: 4096 - 152,
            },
        ],
    }
}

/// Header, four records (three of the largest payload a 4 KiB chunk allows) and 24 bytes of
/// short padding (three `CAIRNPAD` words) filling the chunk to its capacity.
fn chunk_v1_short_padding() -> Golden {
    let max = record_payload_bytes_max(4096);
    assert_eq!(max, 1024);
    let record = |offset, sequence, byte, len| Expect::Record {
        offset,
        writer: WriterId(0xd4),
        sequence,
        payload: vec![byte; len],
    };
    Golden {
        file: "chunk_v1_short_padding.hex",
        handle: 0xfedc_ba98_7654_3210,
        capacity: 4096,
        items: vec![
            record(32, 1, 0x11, max),
            record(1088, 2, 0x22, max),
            record(2144, 3, 0x33, max),
            record(3200, 4, 0x44, 840),
            Expect::Padding {
                offset: 4072,
                len: 24,
            },
        ],
    }
}

/// Encodes `golden` with today's encoders.
fn encode(golden: &Golden) -> Vec<u8> {
    let header = ChunkHeader::new(ChunkHandle(golden.handle), golden.capacity).unwrap();
    let mut out = header.encode().to_vec();
    for item in &golden.items {
        match item {
            Expect::Record {
                offset,
                writer,
                sequence,
                payload,
            } => {
                assert_eq!(out.len() as u64, *offset);
                let id = RecordId {
                    writer: *writer,
                    sequence: *sequence,
                };
                let max = record_payload_bytes_max(golden.capacity);
                encode_record(&mut out, id, payload, max).unwrap();
            }
            Expect::Padding { offset, len } => {
                assert_eq!(out.len() as u64, *offset);
                encode_padding(&mut out, *len as usize).unwrap();
            }
        }
    }
    out
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Parses `hexdump -C` output: `OFFSET  xx xx .. |ascii|` lines, `*` for "the previous line
/// repeats up to the next offset", and a last line holding only the total length.
fn parse_hexdump(text: &str) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    let mut previous: Vec<u8> = Vec::new();
    let mut repeat = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line == "*" {
            repeat = true;
            continue;
        }
        let (offset, rest) = line.split_once(' ').unwrap_or((line, ""));
        let offset = usize::from_str_radix(offset, 16)
            .unwrap_or_else(|e| panic!("line {}: bad offset {offset:?}: {e}", n + 1));
        if repeat {
            while out.len() < offset {
                out.extend_from_slice(&previous);
            }
            repeat = false;
        }
        assert_eq!(out.len(), offset, "line {}: offset out of step", n + 1);
        let hex = rest.split('|').next().unwrap_or("");
        let bytes: Vec<u8> = hex
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("line {}: {e}", n + 1)))
            .collect();
        out.extend_from_slice(&bytes);
        if !bytes.is_empty() {
            previous = bytes;
        }
    }
    out
}

fn read_golden(golden: &Golden) -> Vec<u8> {
    let path = golden_dir().join(golden.file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_hexdump(&text)
}

/// Encoding today must produce the golden bytes exactly.
fn check_encoding(golden: &Golden) {
    let today = encode(golden);
    let expected = read_golden(golden);
    if today != expected {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-actual");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join(golden.file.replace(".hex", ".bin"));
        std::fs::write(&bin, &today).unwrap();
        let first = today.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{} no longer matches today's encoding (first difference at byte {first:?}, lengths \
             {} and {}); today's bytes are in {}. Golden files never change once their version \
             ships: a layout change is a new format version.",
            golden.file,
            expected.len(),
            today.len(),
            bin.display()
        );
    }
}

/// Decoding the golden bytes must yield the expected header, records and padding, and nothing
/// else.
fn check_decoding(golden: &Golden) {
    let bytes = read_golden(golden);
    assert_eq!(
        bytes.len() as u64,
        golden.capacity,
        "a golden chunk is full"
    );
    let header = ChunkHeader::decode(&bytes).unwrap();
    assert_eq!(header.format, FormatVersion::V1);
    assert_eq!(header.handle, ChunkHandle(golden.handle));
    assert_eq!(u64::from(header.capacity), golden.capacity);
    let items: Vec<ScanItem<'_>> = Scanner::new(&bytes[32..], 32).collect();
    assert_eq!(items.len(), golden.items.len(), "{items:?}");
    for (got, want) in items.iter().zip(&golden.items) {
        match (got, want) {
            (
                ScanItem::Record {
                    offset,
                    id,
                    payload,
                },
                Expect::Record {
                    offset: o,
                    writer,
                    sequence,
                    payload: p,
                },
            ) => {
                assert_eq!((*offset, id.writer, id.sequence), (*o, *writer, *sequence));
                assert_eq!(payload, p);
            }
            (ScanItem::Padding { offset, len }, Expect::Padding { offset: o, len: l }) => {
                assert_eq!((offset, len), (o, l));
            }
            _ => panic!("got {got:?}, expected {want:?}"),
        }
    }
    assert_eq!(classify(&bytes[32..], 32, golden.capacity), Recovery::Clean);
}

/// Today's encoders produce `chunk_v1.hex` byte for byte.
#[test]
fn chunk_v1_encodes_to_the_golden_bytes() {
    check_encoding(&chunk_v1());
}

/// `chunk_v1.hex` decodes to its header, three records and the padding frame.
#[test]
fn chunk_v1_golden_bytes_decode() {
    check_decoding(&chunk_v1());
}

/// Today's encoders produce `chunk_v1_short_padding.hex` byte for byte.
#[test]
fn chunk_v1_short_padding_encodes_to_the_golden_bytes() {
    check_encoding(&chunk_v1_short_padding());
}

/// `chunk_v1_short_padding.hex` decodes to its header, four records and the short padding.
#[test]
fn chunk_v1_short_padding_golden_bytes_decode() {
    check_decoding(&chunk_v1_short_padding());
}

/// The parser understands `hexdump -C`'s `*` lines and final length line.
#[test]
fn hexdump_parser_expands_repeats() {
    let text = "00000000  01 02 03 04 05 06 07 08  09 0a 0b 0c 0d 0e 0f 10  |................|\n\
                *\n\
                00000030  aa bb                                             |..|\n\
                00000032\n";
    let bytes = parse_hexdump(text);
    assert_eq!(bytes.len(), 0x32);
    assert_eq!(bytes[0x20..0x30], bytes[0..16]);
    assert_eq!(bytes[0x30..], [0xaa, 0xbb]);
}
