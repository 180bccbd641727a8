//! Chunkserver registrations and heartbeats: liveness, free space and the replica reports,
//! reconciled with the metadata (unknown replicas and garbage are to be deleted; versions the
//! master never issued are never adopted).

use cairn_record::ChunkHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Inner, MasterCore};
use crate::chunkserver_api::ChunkserverApi;
use crate::error::{Error, Result};
use crate::heartbeat::ReplicaReport;
use crate::meta::ChunkState;
use crate::policy::{good_replicas, is_excess, is_garbage};

impl<C: ChunkserverApi> MasterCore<C> {
    /// `RegisterChunkserver`: records the chunkserver and its replicas. Returns the handles it
    /// should delete.
    pub(crate) async fn register(
        &self,
        address: &str,
        reports: &[ReplicaReport],
    ) -> Result<Vec<ChunkHandle>> {
        check_address(address)?;
        let (delete, sequence) = {
            let mut g = self.lock();
            // A registration is a (re)started process describing everything it holds: nothing
            // the master set earlier survives it (a wiped chunkserver must not keep phantoms).
            g.servers
                .register(address, Instant::now(), reports, std::time::Duration::ZERO);
            self.reconcile(&mut g, address, reports)
        };
        if let Some(sequence) = sequence {
            self.commit(sequence).await?;
        }
        info!(
            chunkserver = address,
            replicas = reports.len(),
            delete = delete.len(),
            "chunkserver registered"
        );
        Ok(delete)
    }

    /// `Heartbeat`: liveness and the replica report. Returns the handles to delete, and `true`
    /// when the chunkserver must register first (the master does not know it).
    pub(crate) async fn heartbeat(
        &self,
        address: &str,
        reports: &[ReplicaReport],
    ) -> Result<(Vec<ChunkHandle>, bool)> {
        check_address(address)?;
        let (delete, sequence) = {
            let mut g = self.lock();
            if !g.servers.is_known(address) {
                return Ok((Vec::new(), true));
            }
            g.servers
                .register(address, Instant::now(), reports, self.report_grace());
            self.reconcile(&mut g, address, reports)
        };
        if let Some(sequence) = sequence {
            self.commit(sequence).await?;
        }
        if !delete.is_empty() {
            info!(
                chunkserver = address,
                delete = delete.len(),
                "asking chunkserver to delete unknown, garbage or excess replicas"
            );
        }
        Ok((delete, false))
    }

    /// Records the free bytes a chunkserver reported with its registration or heartbeat (0:
    /// unknown), for placement.
    pub(crate) fn note_free_bytes(&self, address: &str, free_bytes: u64) {
        self.lock().servers.set_free_bytes(address, free_bytes);
    }

    /// How long a replica the master created survives reports that lack it.
    fn report_grace(&self) -> std::time::Duration {
        2 * self.config.heartbeat + self.config.rpc_timeout
    }

    /// Compares a report with the metadata: unknown handles are to be deleted. A version above
    /// the master's is never adopted: the master logs every version before any replica is
    /// fenced with it, so a replica claiming a higher one is forged or broken. It is logged and
    /// left out (never good, never read, never copied from), and the chunk's next seal fences
    /// the replicas the master trusts.
    fn reconcile(
        &self,
        g: &mut Inner,
        address: &str,
        reports: &[ReplicaReport],
    ) -> (Vec<ChunkHandle>, Option<u64>) {
        let mut delete = Vec::new();
        for r in reports {
            // A checker's corrupt mark holds whatever the chunkserver reports.
            let r = &g.servers.with_mark(address, r);
            let Some(chunk) = g.meta.chunks.get(&r.handle) else {
                if !g.dying.contains(&r.handle) {
                    delete.push(r.handle);
                }
                continue;
            };
            if chunk.state == ChunkState::Sealed {
                let good = good_replicas(&g.servers, chunk, Instant::now(), self.config.dead_after);
                let replication = g
                    .meta
                    .logs
                    .get(&chunk.log)
                    .map_or(u32::MAX, |l| l.replication);
                let copying_here = g.repairs.get(&r.handle).is_some_and(|t| t == address);
                if is_garbage(chunk, r, good.len(), replication, copying_here) {
                    info!(chunk = %r.handle, chunkserver = address, version = %r.version, length = %r.length, sealed = r.sealed, corrupt = r.corrupt, failed = r.failed, "replica not good and the chunk has enough good ones: deleting it");
                    delete.push(r.handle);
                    continue;
                }
                if is_excess(address, &good, replication) {
                    info!(chunk = %r.handle, chunkserver = address, good = good.len(), replication, "the chunk has more good replicas than its factor (a chunkserver came back after the repair): deleting this one");
                    delete.push(r.handle);
                    // Not listed to readers nor counted from now on: the chunkserver deletes it.
                    g.servers.forget_replica(address, r.handle);
                    continue;
                }
            }
            if r.version > chunk.version {
                warn!(chunk = %r.handle, chunkserver = address, reported = %r.version, master = %chunk.version, "replica reports a version this master never issued (forged or broken); ignoring it");
            }
        }
        (delete, None)
    }
}

fn check_address(address: &str) -> Result<()> {
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            reason: format!("chunkserver address {address:?} is not HOST:PORT"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::ChunkVersion;
    use std::sync::Arc;

    use crate::core::fake::{Fake, register, report, start, with_open_chunk};

    // After a restart the metadata (logs, chunks, versions) is back, locations are not: the open
    // chunk is UNAVAILABLE until its chunkservers report it. A replica reporting a version the
    // master never issued (forged, or broken) is never adopted, not even across a restart: the
    // master logs every version before any fence, so it never needs a replica's.
    #[tokio::test]
    async fn restart_keeps_metadata_and_waits_for_reports() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let (m, first) = with_open_chunk(dir.path(), &fake).await;
        let open = m
            .seal_chunk("/l", first.handle, ChunkVersion(1), "full")
            .await
            .unwrap();
        let before = m.stat_log("/l").unwrap();
        m.stop().await;
        drop(m);

        let m = start(dir.path(), &fake).await;
        let after = m.stat_log("/l").unwrap();
        assert_eq!(after.chunks.len(), 2);
        for (b, a) in before.chunks.iter().zip(&after.chunks) {
            assert_eq!(
                (b.handle, b.state, b.version, b.index),
                (a.handle, a.state, a.version, a.index)
            );
        }
        assert!(matches!(
            m.open_chunk("/l").await,
            Err(Error::NoLiveReplica { .. })
        ));
        m.register("a:1", &[report(open.handle, ChunkVersion(u64::MAX))])
            .await
            .unwrap();
        for a in ["b:1", "c:1"] {
            m.register(a, &[report(open.handle, ChunkVersion(1))])
                .await
                .unwrap();
        }
        let stat = m.stat_log("/l").unwrap();
        assert_eq!(stat.chunks[1].version, ChunkVersion(1));
        assert!(
            !stat.chunks[1].replicas.contains(&"a:1".to_owned()),
            "a replica at a forged version is not listed"
        );
        let again = m.open_chunk("/l").await.unwrap();
        assert_eq!(
            (again.handle, again.version),
            (open.handle, ChunkVersion(1))
        );
        m.stop().await;
        drop(m);
        let m = start(dir.path(), &fake).await;
        assert_eq!(m.stat_log("/l").unwrap().chunks[1].version, ChunkVersion(1));
        m.stop().await;
    }

    // A chunkserver that comes back holding a good replica of a chunk already at its factor
    // (repaired meanwhile) has it deleted: only the greatest address of the four goes, it is no
    // longer listed at once, and the others keep theirs.
    #[tokio::test]
    async fn an_excess_good_replica_is_deleted_and_unlisted() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1", "c:1", "d:1"]).await;
        m.create_log("/l", 3, 8192).await.unwrap();
        let first = m.open_chunk("/l").await.unwrap();
        m.seal_chunk("/l", first.handle, ChunkVersion(1), "full")
            .await
            .unwrap();
        let sealed = m.stat_log("/l").unwrap().chunks[0].clone();
        let good =
            crate::heartbeat::ReplicaReport::sealed(sealed.handle, sealed.version, sealed.length);
        let mut holders = sealed.replicas.clone();
        let spare = ["a:1", "b:1", "c:1", "d:1"]
            .into_iter()
            .find(|a| !holders.contains(&a.to_string()))
            .expect("four chunkservers, three replicas");
        let (delete, _) = m.heartbeat(spare, &[good]).await.unwrap();
        holders.push(spare.to_owned());
        holders.sort();
        let greatest = holders.last().unwrap().clone();
        if greatest == spare {
            assert_eq!(
                delete,
                vec![sealed.handle],
                "the newcomer is the greatest address"
            );
        } else {
            assert!(delete.is_empty(), "{spare} is not the one to go");
            let (delete, _) = m.heartbeat(&greatest, &[good]).await.unwrap();
            assert_eq!(delete, vec![sealed.handle]);
        }
        let listed = m.stat_log("/l").unwrap().chunks[0].replicas.clone();
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(!listed.contains(&greatest), "{listed:?}");
        for a in holders.iter().filter(|a| **a != greatest) {
            let (delete, _) = m.heartbeat(a, &[good]).await.unwrap();
            assert!(delete.is_empty(), "{a} keeps its replica");
        }
        m.stop().await;
    }
}
