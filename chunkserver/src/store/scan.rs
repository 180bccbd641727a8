//! The startup scan of an open replica, with positioned reads in bounded slices.
//!
//! Never a memory map: touching a mapped page that the file no longer has (truncated under the
//! server) or that the disk cannot read is `SIGBUS`, which would kill the process and, since the
//! scan runs at every start, crash-loop it. A read error here is an `Err` the caller turns into
//! a corrupt replica.

use std::io;

use cairn_record::limits::CHUNK_HEADER_BYTES;
use cairn_record::{
    ByteRange, ChunkHandle, ChunkHeader, FrameReader, ReadItem, Recovery, classify_ranges,
};

use super::disk::DiskFile;
use crate::limits::RECOVERY_SLICE_BYTES_MAX;

/// Classifies the first `len` bytes of `handle`'s chunk file as `cairn_record::classify` would
/// classify them read whole, reading at most [`RECOVERY_SLICE_BYTES_MAX`] bytes at a time (a
/// [`FrameReader`] carries a frame cut by a slice boundary into the next slice).
pub(crate) fn scan_open_replica<F: DiskFile>(
    handle: ChunkHandle,
    file: &F,
    acked_len: u64,
    len: u64,
) -> io::Result<Recovery> {
    let header_bytes = CHUNK_HEADER_BYTES as u64;
    let mut head = [0u8; CHUNK_HEADER_BYTES];
    let n = file.read_full_at(&mut head, 0)?;
    let header_ok = n == CHUNK_HEADER_BYTES
        && len >= header_bytes
        && ChunkHeader::decode(&head).is_ok_and(|h| h.handle == handle);
    if !header_ok {
        return Ok(Recovery::Corrupt {
            ranges: vec![ByteRange {
                offset: 0,
                len: header_bytes,
            }],
        });
    }
    let mut ranges: Vec<ByteRange> = Vec::new();
    let mut reader = FrameReader::new(header_bytes).until(len);
    let mut read_at = header_bytes;
    while read_at < len {
        let want = (len - read_at).min(RECOVERY_SLICE_BYTES_MAX as u64) as usize;
        let mut slice = vec![0u8; want];
        let got = file.read_full_at(&mut slice, read_at)?;
        if got == 0 {
            // The file is shorter than it was a moment ago: what is missing is reported below.
            break;
        }
        slice.truncate(got);
        read_at += got as u64;
        reader.feed(slice);
        ranges.extend(bad_ranges(&mut reader));
    }
    // A frame still cut is a bad range reaching the end of what could be read.
    reader.finish();
    ranges.extend(bad_ranges(&mut reader));
    Ok(classify_ranges(ranges, read_at, acked_len))
}

/// The bad ranges among the items `reader` has decided so far.
fn bad_ranges(reader: &mut FrameReader) -> impl Iterator<Item = ByteRange> + '_ {
    reader.by_ref().filter_map(|item| match item {
        ReadItem::Corrupt { offset, len } => Some(ByteRange { offset, len }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::RecordId;
    use cairn_record::frame::encode_record;
    use std::sync::Mutex;

    /// A file in memory.
    struct Mem(Mutex<Vec<u8>>);

    impl DiskFile for Mem {
        fn size(&self) -> io::Result<u64> {
            Ok(self.0.lock().unwrap().len() as u64)
        }
        fn write_vectored_at(&self, _: &[bytes::Bytes], _: u64) -> io::Result<usize> {
            unreachable!("the scan never writes")
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let v = self.0.lock().unwrap();
            let at = (offset as usize).min(v.len());
            let n = buf.len().min(v.len() - at);
            buf[..n].copy_from_slice(&v[at..at + n]);
            Ok(n)
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.lock().unwrap().resize(len as usize, 0);
            Ok(())
        }
    }

    /// A chunk file of `records` records of `size` bytes each.
    fn chunk(records: u64, size: usize) -> Vec<u8> {
        let handle = ChunkHandle(7);
        let mut out = ChunkHeader::new(handle, 64 << 20)
            .unwrap()
            .encode()
            .to_vec();
        for s in 1..=records {
            let id = RecordId {
                writer: cairn_record::WriterId(1),
                sequence: s,
            };
            encode_record(&mut out, id, &vec![s as u8; size], 16 << 20).unwrap();
        }
        out
    }

    /// Proves the sliced scan gives the whole-buffer verdict: a clean file (with frames far
    /// larger than a slice, so they cross slice boundaries), a torn tail past the ack, and a
    /// flipped byte below it, compared with `cairn_record::classify` on the same bytes.
    #[test]
    fn sliced_scan_agrees_with_classify() {
        let size = RECOVERY_SLICE_BYTES_MAX * 3 / 2;
        let whole = chunk(4, size);
        let len = whole.len() as u64;
        let cases: Vec<(Vec<u8>, u64)> = vec![
            (whole.clone(), len),
            (whole[..whole.len() - 100].to_vec(), len - 2 * size as u64),
            (
                {
                    let mut v = whole.clone();
                    v[size + 500] ^= 0x40;
                    v
                },
                len,
            ),
            (whole.clone(), len + 64),
        ];
        for (i, (bytes, acked)) in cases.into_iter().enumerate() {
            let expect = cairn_record::classify(
                &bytes[CHUNK_HEADER_BYTES..],
                CHUNK_HEADER_BYTES as u64,
                acked,
            );
            let file = Mem(Mutex::new(bytes.clone()));
            let got = scan_open_replica(ChunkHandle(7), &file, acked, bytes.len() as u64).unwrap();
            assert_eq!(got, expect, "case {i}");
        }
    }
}
