//! `cairn inspect FILE`: offline verification and dump of one chunk file (FORMAT.md).

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use cairn_record::limits::{CHUNK_BYTES_MAX, CHUNK_HEADER_BYTES};
use cairn_record::{
    ByteRange, CHUNK_MAGIC, ChunkHandle, ChunkHeader, DecodeError, FrameReader, ReadItem, RecordId,
};
use serde_json::json;

/// Exit status when the file is corrupt (or names another chunk than its file name).
const EXIT_CORRUPT: u8 = 2;

/// Bytes of the file handed to the frame reader at a time (4 MiB).
const INSPECT_SLICE_BYTES: usize = 4 << 20;

/// Verifies a chunk file offline and prints what it holds.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Reads the whole file, checks the header and every frame's checksum, and prints the header, \
the number of records, padding bytes, corrupt ranges and the torn tail.

Torn tail: inspect works offline and does not know the length this replica acknowledged, so a \
bad range at the very end of the file with no valid frame or padding after it is reported as a \
torn tail (an append cut by a crash), not as corruption. Recovery, which knows the acknowledged \
length, may still call it corruption. A `.meta` sidecar is not read.

If the file is named `{16 hex digits}.chunk`, the handle in its header must match the name.

JSON (--json): the summary is one object with at least `records` (a count), `padding_bytes`, \
`corrupt` (a list of {offset, len}) and `torn_tail_bytes`. With --records, one object per \
record (`offset`, `writer` as 16 hex digits, `sequence`, `len`) comes first, one per line, and \
the summary is the last line. Offsets are file offsets.

Exit status: 0 when clean or only a torn tail; 2 when corrupt (a bad header, a bad range \
followed by valid data, a handle that does not match the file name, or a file longer than its \
capacity); 1 on any other error \
(unreadable file, not a chunk file, unsupported format version).")]
pub(crate) struct InspectArgs {
    /// The chunk file to inspect.
    file: PathBuf,
    /// Also list every record: offset, writer, sequence and payload length.
    #[arg(long)]
    records: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What a scan of the file found.
struct Report {
    length: u64,
    header: Result<ChunkHeader, &'static str>,
    /// The handle the file name gives, when it is named `{16 hex}.chunk`.
    name_handle: Option<ChunkHandle>,
    records: Vec<RecordLine>,
    payload_bytes: u64,
    padding_bytes: u64,
    /// Bad ranges, the header included if it is bad; not the torn tail.
    corrupt: Vec<ByteRange>,
    /// The final bad range when nothing valid follows it.
    torn_tail: Option<ByteRange>,
}

struct RecordLine {
    offset: u64,
    id: RecordId,
    len: usize,
}

impl Report {
    fn handle_mismatch(&self) -> bool {
        match (&self.header, self.name_handle) {
            (Ok(header), Some(named)) => header.handle != named,
            _ => false,
        }
    }

    /// Bytes past the capacity the header allows; a replica never grows past it.
    fn over_capacity_bytes(&self) -> u64 {
        match &self.header {
            Ok(h) => self.length.saturating_sub(u64::from(h.capacity)),
            Err(_) => 0,
        }
    }

    fn is_corrupt(&self) -> bool {
        !self.corrupt.is_empty() || self.handle_mismatch() || self.over_capacity_bytes() > 0
    }

    fn status(&self) -> &'static str {
        if self.is_corrupt() {
            "corrupt"
        } else if self.torn_tail.is_some() {
            "torn_tail"
        } else {
            "clean"
        }
    }
}

/// Runs `cairn inspect`. Returns the exit status for a file that could be read as a chunk file.
pub(crate) fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_chunk_file(&args.file)?;
    let report = inspect(&args.file, &bytes)?;
    let mut out = String::new();
    if args.json {
        write_json(&mut out, &args.file, &report, args.records)?;
    } else {
        write_text(&mut out, &args.file, &report, args.records)?;
    }
    print!("{out}");
    Ok(if report.is_corrupt() {
        ExitCode::from(EXIT_CORRUPT)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads the file after checking that it starts like a chunk file, so a large unrelated file is
/// refused without reading it all.
fn read_chunk_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let length = file
        .metadata()
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len();
    if length < CHUNK_HEADER_BYTES as u64 {
        bail!(
            "{} is not a Cairn chunk file: {length} bytes, shorter than the {CHUNK_HEADER_BYTES}-byte header",
            path.display()
        );
    }
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)
        .with_context(|| format!("reading {}", path.display()))?;
    if magic != CHUNK_MAGIC {
        bail!(
            "{} is not a Cairn chunk file: it does not start with {:?}",
            path.display(),
            std::str::from_utf8(&CHUNK_MAGIC).expect("ASCII magic")
        );
    }
    if length > CHUNK_BYTES_MAX {
        bail!(
            "{} is {length} bytes, longer than any chunk ({CHUNK_BYTES_MAX} bytes)",
            path.display()
        );
    }
    let mut bytes = magic.to_vec();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

/// The handle a replica's file name gives: `{16 lower-case hex digits}.chunk`.
fn handle_from_name(path: &Path) -> Option<ChunkHandle> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_suffix(".chunk")?;
    let is_handle = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !is_handle {
        return None;
    }
    hex.parse().ok()
}

fn inspect(path: &Path, bytes: &[u8]) -> anyhow::Result<Report> {
    let header = match ChunkHeader::decode(bytes) {
        Ok(header) => Ok(header),
        // The decoder checks the checksum before the version, so this is a well-formed header
        // of a format this build does not know, not damage.
        Err(DecodeError::Corrupt {
            reason: "unknown chunk format version",
        }) => bail!(
            "{}: chunk format version {} is not supported by this build (it reads version 1)",
            path.display(),
            u16::from_le_bytes([bytes[8], bytes[9]])
        ),
        Err(DecodeError::Corrupt { reason }) => Err(reason),
        Err(e @ DecodeError::Incomplete { .. }) => {
            bail!("{}: chunk header: {e}", path.display())
        }
    };
    let mut report = Report {
        length: bytes.len() as u64,
        header,
        name_handle: handle_from_name(path),
        records: Vec::new(),
        payload_bytes: 0,
        padding_bytes: 0,
        corrupt: Vec::new(),
        torn_tail: None,
    };
    if report.header.is_err() {
        report.corrupt.push(ByteRange {
            offset: 0,
            len: CHUNK_HEADER_BYTES as u64,
        });
    }
    let base = CHUNK_HEADER_BYTES as u64;
    let mut bad = Vec::new();
    // The file is in memory already; it is fed in slices so that at most one slice (and a frame
    // cut by its end) is copied at a time.
    let mut reader = FrameReader::new(base);
    let mut slices = bytes[CHUNK_HEADER_BYTES..]
        .chunks(INSPECT_SLICE_BYTES)
        .peekable();
    while let Some(slice) = slices.next() {
        reader.feed(bytes::Bytes::copy_from_slice(slice));
        if slices.peek().is_none() {
            reader.finish();
        }
        for item in reader.by_ref() {
            match item {
                ReadItem::Record {
                    offset,
                    id,
                    payload,
                    ..
                } => {
                    report.payload_bytes += payload.len() as u64;
                    report.records.push(RecordLine {
                        offset,
                        id,
                        len: payload.len(),
                    });
                }
                ReadItem::Padding { len, .. } => report.padding_bytes += len,
                ReadItem::Corrupt { offset, len } => bad.push(ByteRange { offset, len }),
                ReadItem::Header { .. } | ReadItem::Incomplete { .. } => {}
            }
        }
    }
    // Offline, a final bad range with nothing valid after it is taken for a torn append.
    if let Some(last) = bad.last()
        && last.end() == report.length
    {
        report.torn_tail = bad.pop();
    }
    report.corrupt.extend(bad);
    Ok(report)
}

fn write_text(out: &mut String, path: &Path, report: &Report, records: bool) -> std::fmt::Result {
    if records {
        for r in &report.records {
            writeln!(
                out,
                "record offset={} writer={:016x} sequence={} len={}",
                r.offset, r.id.writer, r.id.sequence, r.len
            )?;
        }
    }
    writeln!(out, "file:        {}", path.display())?;
    match &report.header {
        Ok(h) => writeln!(
            out,
            "header:      format v{}, handle {}, capacity {} bytes",
            h.format.number(),
            h.handle,
            h.capacity
        )?,
        Err(reason) => writeln!(out, "header:      corrupt ({reason})")?,
    }
    if let (Ok(h), Some(named)) = (&report.header, report.name_handle) {
        if h.handle == named {
            writeln!(out, "file name:   matches the handle")?;
        } else {
            writeln!(
                out,
                "file name:   MISMATCH: the name says {named}, the header says {}",
                h.handle
            )?;
        }
    }
    let full = match &report.header {
        Ok(h) if report.length == u64::from(h.capacity) => " (full)",
        Ok(h) if report.length > u64::from(h.capacity) => " (LONGER THAN ITS CAPACITY)",
        _ => "",
    };
    writeln!(out, "length:      {} bytes{full}", report.length)?;
    writeln!(
        out,
        "records:     {} ({} payload bytes)",
        report.records.len(),
        report.payload_bytes
    )?;
    writeln!(out, "padding:     {} bytes", report.padding_bytes)?;
    if report.corrupt.is_empty() {
        writeln!(out, "corrupt:     none")?;
    } else {
        let total: u64 = report.corrupt.iter().map(|r| r.len).sum();
        let n = report.corrupt.len();
        let ranges = if n == 1 { "range" } else { "ranges" };
        writeln!(out, "corrupt:     {n} {ranges}, {total} bytes")?;
        for ByteRange { offset, len } in &report.corrupt {
            writeln!(out, "  offset={offset} len={len}")?;
        }
    }
    match report.torn_tail {
        None => writeln!(out, "torn tail:   none")?,
        Some(ByteRange { offset, len }) => writeln!(
            out,
            "torn tail:   {len} bytes at offset {offset} (valid frames end at {offset})"
        )?,
    }
    writeln!(out, "status:      {}", report.status())
}

fn write_json(out: &mut String, path: &Path, report: &Report, records: bool) -> anyhow::Result<()> {
    if records {
        for r in &report.records {
            let line = json!({
                "offset": r.offset,
                "writer": format!("{:016x}", r.id.writer),
                "sequence": r.id.sequence,
                "len": r.len,
            });
            writeln!(out, "{line}")?;
        }
    }
    let header = match &report.header {
        Ok(h) => json!({
            "format_version": h.format.number(),
            "handle": h.handle.to_string(),
            "capacity": h.capacity,
        }),
        Err(_) => serde_json::Value::Null,
    };
    let summary = json!({
        "file": path.display().to_string(),
        "header": header,
        "header_error": report.header.as_ref().err(),
        "file_name_handle": report.name_handle.map(|h| h.to_string()),
        "handle_mismatch": report.handle_mismatch(),
        "length": report.length,
        "over_capacity_bytes": report.over_capacity_bytes(),
        "records": report.records.len(),
        "payload_bytes": report.payload_bytes,
        "padding_bytes": report.padding_bytes,
        "corrupt": report
            .corrupt
            .iter()
            .map(|r| json!({ "offset": r.offset, "len": r.len }))
            .collect::<Vec<_>>(),
        "torn_tail_bytes": report.torn_tail.map_or(0, |t| t.len),
        "valid_len": report.torn_tail.map_or(report.length, |t| t.offset),
        "status": report.status(),
    });
    writeln!(out, "{summary}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_taken_only_from_canonical_names() {
        let h = |name: &str| handle_from_name(Path::new(name));
        assert_eq!(
            h("/d/0123456789abcdef.chunk"),
            Some(ChunkHandle(0x0123_4567_89ab_cdef))
        );
        assert_eq!(h("0123456789ABCDEF.chunk"), None);
        assert_eq!(h("123.chunk"), None);
        assert_eq!(h("0123456789abcdef.chunk.tmp"), None);
        assert_eq!(h("+123456789abcdef.chunk"), None);
    }

    // Proves: frames that cross the boundary of the slices the file is read in are whole
    // records (not corruption), and a record cut by the end of the file is the torn tail.
    #[test]
    fn frames_across_read_slices_are_whole() {
        let handle = ChunkHandle(7);
        let mut bytes = ChunkHeader::new(handle, 16 << 20)
            .unwrap()
            .encode()
            .to_vec();
        let size = INSPECT_SLICE_BYTES / 3 + 5;
        for sequence in 1..=7 {
            let id = RecordId {
                writer: cairn_record::WriterId(1),
                sequence,
            };
            cairn_record::encode_record(&mut bytes, id, &vec![sequence as u8; size], 4 << 20)
                .unwrap();
        }
        assert!(
            bytes.len() > 2 * INSPECT_SLICE_BYTES,
            "frames cross two slice ends"
        );
        let path = Path::new("/d/0000000000000007.chunk");
        let report = inspect(path, &bytes).unwrap();
        assert_eq!(report.records.len(), 7);
        assert!(report.corrupt.is_empty() && report.torn_tail.is_none());
        let torn = bytes.len() - 100;
        let report = inspect(path, &bytes[..torn]).unwrap();
        assert_eq!(report.records.len(), 6);
        assert!(report.corrupt.is_empty());
        let last = report.records[5].offset + cairn_record::encoded_len(size) as u64;
        assert_eq!(
            report.torn_tail,
            Some(ByteRange {
                offset: last,
                len: torn as u64 - last
            })
        );
    }
}
