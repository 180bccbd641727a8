//! Reading one replica up to its readable end (its first answer's), in reads of at most
//! `READ_RPC_BYTES_MAX`, checked frame by frame and checksummed as the bytes arrive.

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};

use crate::client::Client;
use crate::fsck::ReadResult;
use crate::fsck::frame_check::FrameCheck;
use crate::limits::READ_RPC_BYTES_MAX;

/// Reads `address`'s replica of `handle` up to its readable end, checking it as it arrives.
pub(crate) async fn read_replica(
    client: &Client,
    address: &str,
    handle: ChunkHandle,
    capacity: u64,
    progress: &mut impl FnMut(u64),
) -> (ReadResult, u64) {
    let mut check = FrameCheck::new(handle, capacity);
    let mut crc = crc32fast::Hasher::new();
    // From the file's first byte: the chunk header is checked too.
    let mut offset = ChunkOffset::ZERO;
    // From the first answer: (version, sealed, readable end).
    let mut first: Option<(ChunkVersion, bool, ChunkOffset)> = None;
    loop {
        let want = match first {
            Some((_, _, end)) if offset >= end => break,
            Some((_, _, end)) => (end - offset).min(READ_RPC_BYTES_MAX),
            None => READ_RPC_BYTES_MAX,
        };
        let r = match client
            .read_replica(address, handle, offset, want as u32)
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_data_loss() => {
                return (ReadResult::DataLoss(e.to_string()), offset.into());
            }
            Err(e) => return (ReadResult::Failed(e.to_string()), offset.into()),
        };
        let (version, sealed, end) = *first.get_or_insert((r.version, r.sealed, r.readable_end));
        let done = |bad: Option<String>, crc: crc32fast::Hasher| ReadResult::Done {
            version,
            sealed,
            end,
            crc32: crc.finalize(),
            bad,
        };
        if end == ChunkOffset::ZERO {
            return (done(None, crc), 0);
        }
        if r.offset != offset || (r.data.is_empty() && offset < end) {
            let bad = format!(
                "the replica served nothing at offset {offset}, below its readable end {end}"
            );
            return (done(Some(bad), crc), offset.into());
        }
        let n = r.data.len().min((end - offset) as usize);
        let data = &r.data[..n];
        crc.update(data);
        offset += n as u64;
        progress(n as u64);
        if let Some(bad) = check.feed(data, offset >= end) {
            return (done(Some(bad), crc), offset.into());
        }
        if offset >= end {
            return (done(None, crc), offset.into());
        }
    }
    // Only reached when the first answer's readable end was already passed (never on the
    // first iteration).
    let (version, sealed, end) = first.expect("at least one read answered");
    (
        ReadResult::Done {
            version,
            sealed,
            end,
            crc32: crc.finalize(),
            bad: None,
        },
        offset.into(),
    )
}
