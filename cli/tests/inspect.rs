//! `cairn inspect` end to end: each test writes a chunk file with `cairn_record`'s encoders into
//! a temporary directory, runs the built `cairn` binary on it and checks the output and the
//! exit status (0 clean or torn tail, 2 corrupt, 1 other errors).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_record::limits::record_payload_bytes_max;
use cairn_record::{ChunkHandle, ChunkHeader, RecordId, WriterId, encode_padding, encode_record};
use serde_json::Value;

const HANDLE: u64 = 0x00c0_ffee_0000_0042;
const CAPACITY: u64 = 4096;

/// A chunk file's bytes and the file offset and length of each record frame.
struct Chunk {
    bytes: Vec<u8>,
    frames: Vec<(u64, u64)>,
}

/// A chunk with `n` records of different lengths, padded to its capacity when `full`.
fn chunk(n: u64, full: bool) -> Chunk {
    let header = ChunkHeader::new(ChunkHandle(HANDLE), CAPACITY).unwrap();
    let mut bytes = header.encode().to_vec();
    let mut frames = Vec::new();
    for sequence in 1..=n {
        let offset = bytes.len() as u64;
        let id = RecordId {
            writer: WriterId(0xabcd_0000_0000_0001),
            sequence,
        };
        let payload = vec![sequence as u8; 10 * sequence as usize + 3];
        let len =
            encode_record(&mut bytes, id, &payload, record_payload_bytes_max(CAPACITY)).unwrap();
        frames.push((offset, len as u64));
    }
    if full {
        let rest = CAPACITY as usize - bytes.len();
        encode_padding(&mut bytes, rest).unwrap();
    }
    Chunk { bytes, frames }
}

/// Writes `bytes` as `name` in a fresh temporary directory.
fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn chunk_name() -> String {
    format!("{HANDLE:016x}.chunk")
}

fn cairn(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("inspect")
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn summary(out: &Output) -> Value {
    stdout_lines(out).pop().expect("a summary line")
}

fn corrupt_ranges(summary: &Value) -> Vec<(u64, u64)> {
    summary["corrupt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["offset"].as_u64().unwrap(), r["len"].as_u64().unwrap()))
        .collect()
}

fn record_offsets(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.get("sequence").is_some())
        .map(|l| l["offset"].as_u64().unwrap())
        .collect()
}

/// A full, clean chunk: every record counted, the padding measured, nothing bad, exit 0, in
/// both output forms.
#[test]
fn clean_file_is_reported_clean() {
    let c = chunk(3, true);
    let (_dir, path) = write(&chunk_name(), &c.bytes);
    let out = cairn(&["--json"], &path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["records"], 3);
    let used = c.frames.last().map(|f| f.0 + f.1).unwrap();
    assert_eq!(s["padding_bytes"], CAPACITY - used);
    assert_eq!(corrupt_ranges(&s), vec![]);
    assert_eq!(s["torn_tail_bytes"], 0);
    assert_eq!(s["status"], "clean");
    assert_eq!(s["handle_mismatch"], false);
    assert_eq!(s["header"]["handle"], format!("{HANDLE:016x}"));
    assert_eq!(s["header"]["capacity"], CAPACITY);

    let out = cairn(&[], &path);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("records:     3 "), "{text}");
    assert!(text.contains("status:      clean"), "{text}");
    assert!(text.contains("file name:   matches the handle"), "{text}");
}

/// A chunk file with one flipped byte in a middle record reports exactly one corrupt range
/// (that record's frame) and every other record, and exits 2.
#[test]
fn flipped_byte_in_a_middle_record_is_one_corrupt_range() {
    let mut c = chunk(5, true);
    let (offset, len) = c.frames[2];
    c.bytes[(offset + 40) as usize] ^= 0x04;
    let (_dir, path) = write(&chunk_name(), &c.bytes);
    let out = cairn(&["--records", "--json"], &path);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let lines = stdout_lines(&out);
    let s = lines.last().unwrap();
    assert_eq!(corrupt_ranges(s), vec![(offset, len)]);
    assert_eq!(s["records"], 4);
    assert_eq!(s["torn_tail_bytes"], 0);
    assert_eq!(s["status"], "corrupt");
    let expected: Vec<u64> = [0, 1, 3, 4].iter().map(|&i| c.frames[i].0).collect();
    assert_eq!(record_offsets(&lines), expected);
}

/// A file cut in the middle of a frame (an append torn by a crash) reports a torn tail, the
/// records before it, and exits 0.
#[test]
fn file_cut_mid_frame_reports_a_torn_tail() {
    let c = chunk(3, false);
    let (offset, _) = c.frames[2];
    let cut = offset + 20;
    let (_dir, path) = write(&chunk_name(), &c.bytes[..cut as usize]);
    let out = cairn(&["--json"], &path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["records"], 2);
    assert_eq!(s["torn_tail_bytes"], 20);
    assert_eq!(s["valid_len"], offset);
    assert_eq!(corrupt_ranges(&s), vec![]);
    assert_eq!(s["status"], "torn_tail");
}

/// Bytes that are not a chunk file: exit 1 and one clear line on stderr, nothing on stdout.
#[test]
fn garbage_file_is_an_error() {
    let garbage: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    let (_dir, path) = write("garbage.bin", &garbage);
    let out = cairn(&[], &path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("not a Cairn chunk file"), "{err}");
    assert!(out.stdout.is_empty());

    let (_dir, path) = write("short.chunk", b"CAIRNCHK");
    let out = cairn(&[], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than the 32-byte header"));
}

/// A missing file is an error (exit 1), and so is a usage error (not clap's usual 2, which
/// would read as "corrupt").
#[test]
fn missing_file_and_bad_usage_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(&[], &dir.path().join("nope.chunk"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: opening "), "{err}");

    let out = cairn(&["--no-such-flag"], &dir.path().join("nope.chunk"));
    assert_eq!(out.status.code(), Some(1));
}

/// With `--records --json`, one object per record comes first, in file order with its offset,
/// writer, sequence and length, and the summary object is the last line.
#[test]
fn records_json_lists_records_first_and_the_summary_last() {
    let c = chunk(4, true);
    let (_dir, path) = write(&chunk_name(), &c.bytes);
    let out = cairn(&["--records", "--json"], &path);
    assert_eq!(out.status.code(), Some(0));
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 5);
    for (i, line) in lines[..4].iter().enumerate() {
        let sequence = i as u64 + 1;
        assert_eq!(line["offset"], c.frames[i].0);
        assert_eq!(line["writer"], "abcd000000000001");
        assert_eq!(line["sequence"], sequence);
        assert_eq!(line["len"], 10 * sequence + 3);
        assert!(line.get("records").is_none());
    }
    assert_eq!(lines[4]["records"], 4);

    let out = cairn(&["--records"], &path);
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "record offset=32 writer=abcd000000000001 sequence=1 len=13"
    );
}

/// A header naming another chunk than the file name is reported and exits 2.
#[test]
fn handle_not_matching_the_file_name_is_reported() {
    let c = chunk(2, true);
    let (_dir, path) = write("00000000000000ff.chunk", &c.bytes);
    let out = cairn(&["--json"], &path);
    assert_eq!(out.status.code(), Some(2));
    let s = summary(&out);
    assert_eq!(s["handle_mismatch"], true);
    assert_eq!(s["file_name_handle"], "00000000000000ff");
    // Any other name is not checked.
    let (_dir, path) = write("copy.chunk", &c.bytes);
    assert_eq!(cairn(&[], &path).status.code(), Some(0));
}

/// A damaged header is corruption (exit 2), reported as the range 0..32; the frames after it
/// are still scanned.
#[test]
fn damaged_header_is_corrupt_and_frames_are_still_listed() {
    let mut c = chunk(2, true);
    c.bytes[20] ^= 1;
    let (_dir, path) = write(&chunk_name(), &c.bytes);
    let out = cairn(&["--json"], &path);
    assert_eq!(out.status.code(), Some(2));
    let s = summary(&out);
    assert_eq!(corrupt_ranges(&s), vec![(0, 32)]);
    assert_eq!(s["header"], Value::Null);
    assert_eq!(s["header_error"], "chunk header checksum mismatch");
    assert_eq!(s["records"], 2);
}
