//! Re-replication and catch-up: bring this chunkserver's replica of a sealed chunk to the
//! chunk's sealed (version, length) by copying the missing bytes from a chunkserver that holds
//! it sealed (ARCHITECTURE.md, "Repair").
//!
//! Every byte copied is checked before it is written: the source's bytes are scanned frame by
//! frame and a bad frame stops the copy (corruption is never copied). The bytes are written
//! through the replica's writer at exactly its length, as a secondary's forwards are, then
//! sealed; finally the whole replica's CRC-32 is compared with the source's. When they differ,
//! the local replica is verified whole: kept if every frame checks (the source is the one that
//! differs), deleted if not. Bad bytes found on the source (a bad frame, a read it answers
//! `DATA_LOSS`, a checksum that differs from a replica that verifies) are
//! [`Error::SourceCorrupt`], so the master can tell them from any other failure and stop
//! copying from that replica.

use std::time::Duration;

use bytes::Bytes;
use cairn_record::limits::CHUNK_HEADER_BYTES;
use cairn_record::{ChunkHandle, ChunkVersion, FrameReader, ReadItem};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::limits::{READ_BYTES_MAX, REPLICATE_READ_BYTES};
use crate::node::Node;
use crate::scrub::{Verdict, verify_now};
use crate::store::ChunkStore;

/// What a replication did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Replicated {
    /// Bytes copied from the source (0: the replica was already complete).
    pub(crate) copied_bytes: u64,
    /// CRC-32 of the replica's bytes `[0, length)`, equal to the source's.
    pub(crate) crc32: u32,
}

/// A sealed replica's checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checksum {
    pub(crate) version: ChunkVersion,
    pub(crate) length: u64,
    pub(crate) crc32: u32,
}

impl Node {
    /// Brings the local replica of `handle` to sealed `(version, length)` from `source`.
    ///
    /// - already sealed there, intact: nothing to copy;
    /// - open, not failed or corrupt, at most `length` long and at `version` or older: its
    ///   bytes are a prefix of the chunk (every replica takes bytes only at its exact length
    ///   from the one primary), so it is fenced to `version` and only the rest is copied;
    /// - sealed at another version or length, failed, corrupt, or absent: replaced by a new
    ///   replica and copied whole.
    ///
    /// Refused, changing nothing: a source that is this chunkserver itself, a version above
    /// [`CHUNK_VERSION_MAX`], and any request that would cut or replace a healthy open replica
    /// (longer than `length`, at a newer version, of another capacity) or seal the replica of
    /// an open chunk this chunkserver is the active primary of. Only the master's seal decides
    /// an open chunk's length; a copy only ever extends a prefix.
    pub(crate) async fn replicate(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        length: u64,
        capacity: u64,
        source: &str,
    ) -> Result<Replicated> {
        let header = CHUNK_HEADER_BYTES as u64;
        if length < header || !length.is_multiple_of(8) || length > capacity {
            return Err(Error::InvalidRequest {
                reason: format!("chunk {handle}: cannot replicate to length {length}"),
            });
        }
        if !version.is_issuable() {
            return Err(Error::InvalidRequest {
                reason: format!("chunk {handle}: cannot replicate to version {version}"),
            });
        }
        if !self.address().is_empty() && source == self.address() {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "chunk {handle}: the copy source {source} is this chunkserver itself"
                ),
            });
        }
        if let Ok(s) = self.store.state(handle)
            && !s.sealed
            && s.healthy()
        {
            let refuse = |why: String| {
                warn!(chunk = %handle, %version, length, source, "refusing a copy over an open replica: {why}");
                Err(Error::OpenReplica { handle, why })
            };
            if s.len > length || s.version > version || s.capacity != capacity {
                return refuse(format!(
                    "it holds {} bytes at version {} (capacity {}); a copy to {length} bytes at \
                     version {version} would cut or replace it",
                    s.len, s.version, s.capacity
                ));
            }
            if s.version == version && self.is_active_primary(handle) {
                return refuse(format!(
                    "this chunkserver is its primary at version {version} and takes appends"
                ));
            }
        }
        let start = match self.store.state(handle) {
            Ok(s) if s.sealed && s.version == version && s.acked_len == length && s.healthy() => {
                let crc = self.checksum(handle).await?.crc32;
                return Ok(Replicated {
                    copied_bytes: 0,
                    crc32: crc,
                });
            }
            Ok(s)
                if !s.sealed
                    && s.healthy()
                    && s.version <= version
                    && s.len <= length
                    && s.capacity == capacity =>
            {
                if s.version < version {
                    self.store.fence(handle, version).await?;
                }
                s.len
            }
            Ok(s) => {
                warn!(chunk = %handle, version = %s.version, len = s.len, sealed = s.sealed, "replacing an unusable replica before copying");
                self.delete(handle).await?;
                self.create(handle, version, capacity, None).await?;
                header
            }
            Err(Error::NotFound { .. }) => {
                self.create(handle, version, capacity, None).await?;
                header
            }
            Err(e) => return Err(e),
        };
        let copied = self
            .copy_range(handle, version, start, length, source)
            .await;
        let copied = match copied {
            Ok(n) => n,
            Err(e) => {
                warn!(chunk = %handle, source, error = %e, "copy failed");
                return Err(e);
            }
        };
        let store = self.store.clone();
        self.offload(move || store.seal(handle, version, length))
            .await?;
        self.forget_sealed(handle);
        let local = self.checksum(handle).await?;
        let remote = self.remote_checksum(handle, source).await?;
        if (local.version, local.length, local.crc32)
            != (remote.version, remote.length, remote.crc32)
        {
            return Err(self
                .on_checksum_mismatch(handle, source, local, remote)
                .await);
        }
        info!(chunk = %handle, source, %version, length, copied, crc32 = format_args!("{:08x}", local.crc32), "replica copied");
        Ok(Replicated {
            copied_bytes: copied,
            crc32: local.crc32,
        })
    }

    /// The copy is sealed here but its whole-replica checksum differs from the source's. Every
    /// byte this copy wrote was checked frame by frame, but the bytes the replica held before
    /// (its own prefix, or all of it when it was already complete) were not, and the source's
    /// checksum covers bytes this copy never read: either side may hold the bad bytes. So the
    /// local replica is verified whole, as the scrubber would:
    /// - every frame checks: the source is the one that differs. The replica is kept (sealed,
    ///   healthy; the master counts it from the next report) and the source is named
    ///   ([`Error::SourceCorrupt`]). Deleting it would throw away a good replica, perhaps the
    ///   last one holding the chunk's acknowledged records (the simulator's seed 42634 lost
    ///   thirteen that way: a flipped byte on the one sealed replica made two good prefixes
    ///   copied from it fail the comparison and be deleted);
    /// - it does not: its own bytes are bad. It is deleted, so the next copy starts from
    ///   nothing, and the failure does not blame the source ([`Error::Replication`]).
    async fn on_checksum_mismatch(
        &self,
        handle: ChunkHandle,
        source: &str,
        local: Checksum,
        remote: Checksum,
    ) -> Error {
        let differs = format!(
            "checksum {:08x} over {} bytes differs from the source's {:08x} over {}",
            local.crc32, local.length, remote.crc32, remote.length
        );
        let verdict = match self.store.state(handle) {
            Ok(state) => verify_now(&self.store, &state, self.blocking()).await,
            Err(_) => None,
        };
        match verdict {
            Some(Verdict::Clean) => {
                warn!(chunk = %handle, source, local = ?local, remote = ?remote, "the source differs from this copy, which verifies whole; keeping the copy");
                Error::SourceCorrupt {
                    handle,
                    source_addr: source.to_owned(),
                    message: format!("{differs}; this copy verifies whole and is kept"),
                }
            }
            verdict => {
                warn!(chunk = %handle, source, local = ?local, remote = ?remote, ?verdict, "this copy differs from its source and holds bad bytes of its own; deleting it");
                if let Err(e) = self.delete(handle).await {
                    warn!(chunk = %handle, error = %e, "deleting the bad copy failed");
                }
                Error::Replication {
                    handle,
                    source_addr: source.to_owned(),
                    message: format!(
                        "{differs}, and this replica's own bytes are bad ({verdict:?}); deleted"
                    ),
                }
            }
        }
    }

    /// Copies `[start, end)` from `source` into the local open replica, whole frames at a time,
    /// within this chunkserver's bandwidth bound. Returns the bytes copied.
    async fn copy_range(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        start: u64,
        end: u64,
        source: &str,
    ) -> Result<u64> {
        // `pos`: file offset of the first byte not yet written; the reader carries a frame cut
        // by the previous read.
        let mut pos = start;
        let mut reader = FrameReader::new(start).until(end);
        let mut read_at = start;
        while pos < end {
            let want = (end - read_at).min(REPLICATE_READ_BYTES as u64) as u32;
            let resp = self
                .peers
                .read(source, handle, read_at, want)
                .await
                .map_err(|s| source_error(handle, source, format!("read at {read_at}"), &s))?;
            if !resp.sealed || resp.version != version || resp.readable_end < end {
                return Err(Error::Replication {
                    handle,
                    source_addr: source.to_owned(),
                    message: format!(
                        "source holds version {} {} to {}, not sealed at version {version} to {end}",
                        resp.version,
                        if resp.sealed { "sealed" } else { "open" },
                        resp.readable_end
                    ),
                });
            }
            if resp.data.is_empty() || resp.offset != read_at {
                return Err(Error::Replication {
                    handle,
                    source_addr: source.to_owned(),
                    message: format!("read at {read_at} returned nothing"),
                });
            }
            let got = resp.data.len() as u64;
            read_at += got;
            let whole =
                whole_frames(&mut reader, resp.data).map_err(|bad| Error::SourceCorrupt {
                    handle,
                    source_addr: source.to_owned(),
                    message: format!("bad frame at {bad} on the source; nothing copied from it"),
                })?;
            if !whole.is_empty() {
                let n = whole.len() as u64;
                let end_now = self.store.append(handle, version, pos, whole).await?;
                debug_assert_eq!(end_now, pos + n);
                pos += n;
            }
            // The bandwidth bound, shared by every copy into this chunkserver: book this read's
            // bytes on the node's clock and wait for their turn.
            let cost = Duration::from_secs_f64(got as f64 / self.replicate_bytes_per_sec as f64);
            let wait = {
                let mut next = self
                    .replicate_clock
                    .lock()
                    .expect("replicate clock lock poisoned");
                let now = Instant::now();
                let turn = (*next).max(now);
                *next = turn + cost;
                turn - now
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(pos - start)
    }

    /// CRC-32 of the local sealed replica's bytes.
    pub(crate) async fn checksum(&self, handle: ChunkHandle) -> Result<Checksum> {
        let store = self.store.clone();
        self.offload(move || {
            let s = store.state(handle)?;
            if !s.sealed {
                return Err(Error::InvalidRequest {
                    reason: format!("chunk {handle} is not sealed here; no checksum"),
                });
            }
            if !s.healthy() {
                return Err(if s.failed {
                    Error::Failed { handle }
                } else {
                    Error::Corrupt {
                        handle,
                        ranges: s.corrupt.clone(),
                    }
                });
            }
            let mut hasher = crc32fast::Hasher::new();
            let mut at = 0;
            while at < s.acked_len {
                let n = (s.acked_len - at).min(READ_BYTES_MAX as u64) as usize;
                let data = store.read(handle, at, n)?;
                if data.is_empty() {
                    break;
                }
                hasher.update(&data);
                at += data.len() as u64;
            }
            Ok(Checksum {
                version: s.version,
                length: at,
                crc32: hasher.finalize(),
            })
        })
        .await
    }

    async fn remote_checksum(&self, handle: ChunkHandle, source: &str) -> Result<Checksum> {
        self.peers
            .checksum(source, handle)
            .await
            .map_err(|s| source_error(handle, source, "checksum".to_owned(), &s))
    }
}

/// The error for an RPC to the source that failed: [`Error::SourceCorrupt`] when the source
/// itself answered that its bytes are bad (`DATA_LOSS`), else [`Error::Replication`].
fn source_error(handle: ChunkHandle, source: &str, what: String, s: &tonic::Status) -> Error {
    let message = format!("{what}: {:?}: {}", s.code(), s.message());
    let source_addr = source.to_owned();
    if s.code() == tonic::Code::DataLoss {
        Error::SourceCorrupt {
            handle,
            source_addr,
            message,
        }
    } else {
        Error::Replication {
            handle,
            source_addr,
            message,
        }
    }
}

/// Feeds `data` (the next bytes of the source) to `reader` and returns the bytes of the frames
/// now whole, as one buffer (without a copy unless they continue a frame cut by the previous
/// read). A frame still cut waits for the next read, unless `data` reaches the end the reader
/// was given; bad bytes anywhere are an error naming their offset.
fn whole_frames(reader: &mut FrameReader, data: Bytes) -> std::result::Result<Bytes, u64> {
    reader.feed(data);
    for item in reader.by_ref() {
        if let ReadItem::Corrupt { offset, .. } = item {
            return Err(offset);
        }
    }
    if let Some(bad) = reader.bad_since() {
        return Err(bad);
    }
    Ok(reader.take_verified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::{RecordId, encode_record};

    fn frames(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for s in 1..=n {
            let id = RecordId {
                writer: cairn_record::WriterId(7),
                sequence: s,
            };
            encode_record(&mut out, id, &[s as u8; 100], 1 << 20).unwrap();
        }
        out
    }

    // Whole frames are counted; a frame cut at the end waits for the next read unless the
    // buffer is the last; a bad byte anywhere else stops the copy at its offset.
    #[test]
    fn whole_frames_cut_and_corrupt() {
        let f = frames(3);
        let len = |r: std::result::Result<Bytes, u64>| r.map(|b| b.len());
        let all = 32 + f.len() as u64;
        let mut r = FrameReader::new(32).until(all);
        assert_eq!(len(whole_frames(&mut r, f.clone().into())), Ok(f.len()));
        let one = f.len() / 3;
        let cut = Bytes::copy_from_slice(&f[..one + 10]);
        let mut r = FrameReader::new(32).until(all);
        assert_eq!(len(whole_frames(&mut r, cut.clone())), Ok(one));
        // The rest completes the cut frame: it is copied next.
        let rest = Bytes::copy_from_slice(&f[one + 10..]);
        assert_eq!(len(whole_frames(&mut r, rest)), Ok(2 * one));
        let mut r = FrameReader::new(32).until(32 + cut.len() as u64);
        assert_eq!(len(whole_frames(&mut r, cut)), Err(32 + one as u64));
        let mut bad = f.clone();
        bad[one + 40] ^= 1;
        let mut r = FrameReader::new(32).until(all);
        assert_eq!(len(whole_frames(&mut r, bad.into())), Err(32 + one as u64));
    }
}
