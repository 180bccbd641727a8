//! What checkers (`cairn fsck`) ask of the master: every replica it knows of each chunk of a
//! log, and reports of replicas they found corrupt (ARCHITECTURE.md, "Repair").
//!
//! A reported replica is marked corrupt in the chunkserver table ([`Servers::mark_corrupt`]),
//! in memory only: from then on it is not good, so the repair loop copies the chunk from a good
//! replica and heartbeat replies delete the marked one, exactly as if its chunkserver had
//! reported it corrupt itself. The last good replica of a chunk is never marked: readers would
//! be left with nothing to read, and there would be nothing to repair it from either.
//!
//! [`Servers::mark_corrupt`]: crate::heartbeat::Servers::mark_corrupt

use cairn_record::ChunkHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::core::{ChunkserverApi, MasterCore};
use crate::error::{Error, Result};
use crate::meta::ChunkState;
use crate::repair::{good_replicas, is_good};

/// One replica as `ListReplicas` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaStatus {
    pub(crate) address: String,
    pub(crate) version: u64,
    pub(crate) length: u64,
    pub(crate) sealed: bool,
    /// Reported corrupt by its chunkserver or marked so by a checker.
    pub(crate) corrupt: bool,
    pub(crate) failed: bool,
    pub(crate) live: bool,
    /// Sealed chunks: good (repair.rs). Open chunks: live, at the chunk's version, neither
    /// failed nor corrupt.
    pub(crate) good: bool,
    /// The detail of a checker's corrupt mark, if any.
    pub(crate) reported_corrupt: Option<String>,
}

/// One chunk with every replica the master knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkReplicas {
    pub(crate) index: u32,
    pub(crate) handle: ChunkHandle,
    pub(crate) state: ChunkState,
    pub(crate) version: u64,
    /// Sealed: the sealed length. Open: the largest length a replica reported (32 if none).
    pub(crate) length: u64,
    pub(crate) replication: u32,
    /// Open chunks: the fixed primary. Empty once sealed.
    pub(crate) primary: String,
    /// Sorted by address.
    pub(crate) replicas: Vec<ReplicaStatus>,
}

/// `ListReplicas`: a log's options and its chunks in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogReplicas {
    pub(crate) path: String,
    pub(crate) replication: u32,
    pub(crate) chunk_bytes: u64,
    pub(crate) chunks: Vec<ChunkReplicas>,
}

/// What `ReportCorrupt` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CorruptMark {
    /// The replica is marked corrupt (or already was).
    Marked,
    /// Not marked, and why.
    Refused(String),
}

impl<C: ChunkserverApi> MasterCore<C> {
    /// `ListReplicas`.
    pub(crate) fn list_replicas(&self, path: &str) -> Result<LogReplicas> {
        let g = self.lock_inner();
        let log = g.meta.logs.get(path).ok_or_else(|| Error::LogNotFound {
            path: path.to_owned(),
        })?;
        let now = Instant::now();
        let dead_after = self.config().dead_after;
        let chunks = log
            .chunks
            .iter()
            .filter_map(|h| g.meta.chunks.get(h))
            .map(|c| {
                let reports = g.servers.replicas_of(c.handle);
                let replicas: Vec<ReplicaStatus> = reports
                    .iter()
                    .map(|(a, r)| {
                        let live = g.servers.is_live(a, now, dead_after);
                        let good = live
                            && match c.state {
                                ChunkState::Sealed => is_good(c, r),
                                ChunkState::Open => {
                                    r.version == c.version && !r.failed && !r.corrupt
                                }
                            };
                        ReplicaStatus {
                            address: a.clone(),
                            version: r.version,
                            length: r.length,
                            sealed: r.sealed,
                            corrupt: r.corrupt,
                            failed: r.failed,
                            live,
                            good,
                            reported_corrupt: g.servers.mark(a, c.handle).map(str::to_owned),
                        }
                    })
                    .collect();
                let length = match c.state {
                    ChunkState::Sealed => c.length,
                    ChunkState::Open => reports
                        .iter()
                        .map(|(_, r)| r.length)
                        .max()
                        .unwrap_or(cairn_record::limits::CHUNK_HEADER_BYTES as u64),
                };
                ChunkReplicas {
                    index: c.index,
                    handle: c.handle,
                    state: c.state,
                    version: c.version,
                    length,
                    replication: log.replication,
                    primary: c.primary.clone(),
                    replicas,
                }
            })
            .collect();
        Ok(LogReplicas {
            path: log.path.clone(),
            replication: log.replication,
            chunk_bytes: log.chunk_bytes,
            chunks,
        })
    }

    /// `ReportCorrupt`: marks `address`'s replica of `handle` corrupt, unless it is the chunk's
    /// last good replica. `InvalidArgument` if the chunk or the replica is unknown.
    pub(crate) fn report_corrupt(
        &self,
        handle: ChunkHandle,
        address: &str,
        detail: &str,
    ) -> Result<CorruptMark> {
        let mut g = self.lock_inner();
        let Some(chunk) = g.meta.chunks.get(&handle) else {
            return Err(Error::ChunkNotFound { handle });
        };
        let replicas = g.servers.replicas_of(handle);
        let Some((_, report)) = replicas.iter().find(|(a, _)| a == address) else {
            return Err(Error::ReplicaNotFound {
                handle,
                address: address.to_owned(),
            });
        };
        if report.corrupt && g.servers.mark(address, handle).is_some() {
            return Ok(CorruptMark::Marked);
        }
        if chunk.state == ChunkState::Sealed {
            let good = good_replicas(&g.servers, chunk, Instant::now(), self.config().dead_after);
            if good.iter().all(|a| a == address) && !good.is_empty() {
                warn!(chunk = %handle, chunkserver = address, detail, "a checker reported the last good replica corrupt; keeping it readable");
                return Ok(CorruptMark::Refused(format!(
                    "{address} holds the only good replica of chunk {handle}; it stays readable"
                )));
            }
        }
        g.servers.mark_corrupt(address, handle, detail);
        warn!(chunk = %handle, chunkserver = address, detail, "replica reported corrupt by a checker; it will be replaced");
        Ok(CorruptMark::Marked)
    }
}
