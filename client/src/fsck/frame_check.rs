//! Frame-by-frame checking of a replica's bytes as they arrive: the chunk header (magic,
//! checksum, handle, capacity), then every frame, a frame cut by the end of one read carried
//! into the next.

use cairn_record::{ChunkHandle, DecodeError, FrameReader, ReadItem};

/// Frame-by-frame checking of a replica's bytes as they arrive.
pub(crate) struct FrameCheck {
    handle: ChunkHandle,
    capacity: u64,
    /// The header and frames received so far; it keeps a frame cut by the end of a read.
    reader: FrameReader,
}

impl FrameCheck {
    pub(crate) fn new(handle: ChunkHandle, capacity: u64) -> FrameCheck {
        FrameCheck {
            handle,
            capacity,
            reader: FrameReader::chunk(),
        }
    }

    /// Checks the next bytes; `last` when they reach the readable end. Returns the first
    /// problem found. A frame cut by the end of a non-final read waits for the next one.
    pub(crate) fn feed(&mut self, data: &[u8], last: bool) -> Option<String> {
        self.reader.feed(bytes::Bytes::copy_from_slice(data));
        if last {
            self.reader.finish();
        }
        for item in self.reader.by_ref() {
            match item {
                ReadItem::Header { header } => match header {
                    Err(DecodeError::Incomplete { available, .. }) => {
                        return Some(format!(
                            "the replica ends at {available} bytes, inside the chunk header"
                        ));
                    }
                    Err(e) => return Some(format!("bad chunk header: {e}")),
                    Ok(h) if h.handle != self.handle => {
                        return Some(format!("the chunk header names chunk {}", h.handle));
                    }
                    Ok(h) if u64::from(h.capacity) != self.capacity => {
                        return Some(format!(
                            "the chunk header says capacity {}, the log's chunks hold {}",
                            h.capacity, self.capacity
                        ));
                    }
                    Ok(_) => {}
                },
                ReadItem::Corrupt { offset, len } => {
                    return Some(format!("bad frame at offset {offset} ({len} bytes)"));
                }
                ReadItem::Record { .. }
                | ReadItem::Padding { .. }
                | ReadItem::Incomplete { .. } => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::{ChunkHeader, RecordId, encode_padding, encode_record};

    fn chunk_bytes(records: u64, pad_to: usize) -> Vec<u8> {
        let mut out = ChunkHeader::new(ChunkHandle(5), 8192)
            .unwrap()
            .encode()
            .to_vec();
        for s in 1..=records {
            let id = RecordId {
                writer: cairn_record::WriterId(3),
                sequence: s,
            };
            encode_record(&mut out, id, &[s as u8; 300], 1 << 20).unwrap();
        }
        if pad_to > out.len() {
            let rest = pad_to - out.len();
            encode_padding(&mut out, rest).unwrap();
        }
        out
    }

    #[test]
    fn frame_check_across_reads() {
        // Proves: frames are checked across read boundaries at every split; a flipped payload
        // byte, a wrong handle, a wrong capacity and a replica ending mid-frame or mid-header
        // are each named.
        let bytes = chunk_bytes(10, 8192);
        for split in [1, 31, 32, 33, 100, 345, 4000, 8191] {
            let mut c = FrameCheck::new(ChunkHandle(5), 8192);
            assert_eq!(c.feed(&bytes[..split], false), None, "split {split}");
            assert_eq!(c.feed(&bytes[split..], true), None, "split {split}");
        }
        let mut flipped = bytes.clone();
        flipped[32 + 32 + 7] ^= 0x40;
        let mut c = FrameCheck::new(ChunkHandle(5), 8192);
        let bad = c.feed(&flipped, true).expect("a bad frame");
        assert!(bad.contains("offset 32"), "{bad}");
        let mut c = FrameCheck::new(ChunkHandle(6), 8192);
        assert!(c.feed(&bytes, true).unwrap().contains("names chunk"));
        let mut c = FrameCheck::new(ChunkHandle(5), 4096);
        assert!(c.feed(&bytes, true).unwrap().contains("capacity"));
        let mut c = FrameCheck::new(ChunkHandle(5), 8192);
        assert!(c.feed(&bytes[..500], true).unwrap().contains("bad frame"));
        let mut c = FrameCheck::new(ChunkHandle(5), 8192);
        assert!(c.feed(&bytes[..20], true).unwrap().contains("header"));
    }
}
