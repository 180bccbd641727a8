//! What checkers ask of the master (`crate::fsck` has the answers): `ListChunkservers`,
//! `ListReplicas`, and
//! `ReportCorrupt`, which marks a replica corrupt unless it is the chunk's last good one.

use cairn_record::ChunkHandle;
use tokio::time::Instant;
use tracing::warn;

use super::MasterCore;
use crate::chunkserver_api::ChunkserverApi;
use crate::error::{Error, Result};
use crate::fsck::{ChunkReplicas, CorruptMark, LogReplicas, ReplicaStatus};
use crate::meta::ChunkState;
use crate::policy::{chunk_length, good_replicas, is_readable};

impl<C: ChunkserverApi> MasterCore<C> {
    /// `ListChunkservers`: every chunkserver registered since the master started, in address
    /// order, with whether it is live and how many replicas it holds.
    pub(crate) fn list_chunkservers(&self) -> Vec<(String, bool, usize)> {
        self.lock()
            .servers
            .all(Instant::now(), self.config().dead_after)
    }

    /// `ListReplicas`.
    pub(crate) fn list_replicas(&self, path: &str) -> Result<LogReplicas> {
        let g = self.lock();
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
                        let good = live && is_readable(c, r);
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
                let length = chunk_length(c, &reports);
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
        let mut g = self.lock();
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::{ChunkOffset, ChunkVersion};
    use std::sync::Arc;

    use crate::core::fake::{Fake, repair_until_done, with_open_chunk};
    use crate::heartbeat::ReplicaReport;

    // A checker reports one replica of a sealed chunk corrupt: it stops being good (stat drops
    // it, ListReplicas shows the mark), a heartbeat that does not know of the mark keeps it, the
    // repair loop deletes it and copies the chunk back onto the same chunkserver (the only one
    // free), and the mark ends. The last good replica is never marked.
    #[tokio::test]
    async fn reported_corrupt_replica_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let (m, first) = with_open_chunk(dir.path(), &fake).await;
        for a in ["a:1", "b:1", "c:1"] {
            fake.st().lengths.insert(a.into(), 4096);
        }
        m.seal_chunk("/l", first.handle, ChunkVersion(1), "full")
            .await
            .unwrap();
        let sealed = ReplicaReport {
            handle: first.handle,
            version: ChunkVersion(2),
            length: ChunkOffset(4096),
            sealed: true,
            failed: false,
            corrupt: false,
            primary: false,
        };
        for a in ["a:1", "b:1", "c:1"] {
            m.heartbeat(a, &[sealed]).await.unwrap();
        }
        assert_eq!(m.stat_log("/l").unwrap().chunks[0].replicas.len(), 3);
        assert!(matches!(
            m.report_corrupt(first.handle, "zz:1", "x"),
            Err(Error::ReplicaNotFound { .. })
        ));
        assert!(matches!(
            m.report_corrupt(ChunkHandle(12345), "a:1", "x"),
            Err(Error::ChunkNotFound { .. })
        ));
        assert_eq!(
            m.report_corrupt(first.handle, "b:1", "bad frame at 64")
                .unwrap(),
            crate::fsck::CorruptMark::Marked
        );
        // The chunkserver's next report says nothing of the damage; the mark holds, and the
        // chunk is below its factor, so nothing is deleted yet.
        let (delete, _) = m.heartbeat("b:1", &[sealed]).await.unwrap();
        assert!(delete.is_empty());
        let info = m.stat_log("/l").unwrap();
        assert_eq!(info.chunks[0].replicas, vec!["a:1", "c:1"]);
        let listed = m.list_replicas("/l").unwrap();
        let b = &listed.chunks[0].replicas[1];
        assert_eq!(b.address, "b:1");
        assert!(b.corrupt && !b.good && b.live);
        assert_eq!(b.reported_corrupt.as_deref(), Some("bad frame at 64"));
        assert_eq!(listed.chunks[0].replicas.len(), 3);

        repair_until_done(&m).await;
        {
            let s = fake.st();
            assert_eq!(s.deletes, vec![("b:1".to_owned(), first.handle)]);
            let last = s.replicates.last().expect("a copy");
            assert_eq!(last.0, "b:1");
        }
        let listed = m.list_replicas("/l").unwrap();
        assert!(listed.chunks[0].replicas.iter().all(|r| r.good));
        assert_eq!(m.stat_log("/l").unwrap().chunks[0].replicas.len(), 3);

        // Two replicas reported corrupt: the third, the last good one, is kept readable.
        m.report_corrupt(first.handle, "a:1", "x").unwrap();
        m.report_corrupt(first.handle, "b:1", "x").unwrap();
        assert!(matches!(
            m.report_corrupt(first.handle, "c:1", "x").unwrap(),
            crate::fsck::CorruptMark::Refused(_)
        ));
        assert_eq!(m.stat_log("/l").unwrap().chunks[0].replicas, vec!["c:1"]);
        // A chunkserver that stops reporting its replica ends the mark.
        m.heartbeat("a:1", &[]).await.unwrap();
        m.heartbeat("a:1", &[sealed]).await.unwrap();
        assert_eq!(
            m.stat_log("/l").unwrap().chunks[0].replicas,
            vec!["a:1", "c:1"]
        );
        m.stop().await;
    }
}
