//! The repair loop's driver (ARCHITECTURE.md, "Repair"): a pass per heartbeat period plans copies
//! with `crate::repair::plan` and starts them, and starts the seals, salvages and fences the
//! pure finders of `crate::repair` and `crate::salvage` ask for.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_record::ChunkHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::MasterCore;
use crate::chunkserver_api::{ChunkserverApi, CopyError, RpcError};
use crate::fsck::CorruptMark;
use crate::heartbeat::ReplicaReport;
use crate::limits::{
    REPAIR_RATE_FLOOR_BYTES_PER_SEC, REPAIRS_IN_FLIGHT_MAX, RESEAL_BACKOFF_FIRST,
    RESEAL_BACKOFF_MAX,
};
use crate::meta::ChunkState;
use crate::repair::{
    Backoff, OrphanedOpenChunk, RepairJob, RepairScan, ReplicasToSeal, complete_unsealed_replicas,
    orphaned_open_chunks, plan, stale_open_replicas,
};
use crate::salvage::SalvageCandidate;

impl<C: ChunkserverApi> MasterCore<C> {
    /// Runs repair passes, one per heartbeat period, until the task is aborted.
    pub(crate) async fn run_repairs(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config().heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_scan = RepairScan::default();
        loop {
            tick.tick().await;
            let scan = self.clone().repair_pass();
            if scan != last_scan {
                let stats = self.repair_stats();
                info!(
                    under_replicated = scan.under_replicated,
                    without_good_replica = scan.unrecoverable_now,
                    copies_done = stats.copies_done.load(Ordering::Relaxed),
                    copies_failed = stats.copies_failed.load(Ordering::Relaxed),
                    sources_marked_corrupt = stats.sources_marked_corrupt.load(Ordering::Relaxed),
                    bytes_copied = stats.bytes_copied.load(Ordering::Relaxed),
                    "re-replication progress"
                );
                last_scan = scan;
            }
        }
    }

    /// Plans this pass's copies and starts them; returns what it found.
    pub(crate) fn repair_pass(self: Arc<Self>) -> RepairScan {
        let now = Instant::now();
        let dead_after = self.config().dead_after;
        let jobs = {
            let mut g = self.lock();
            let running = &g.repairs;
            let slots = REPAIRS_IN_FLIGHT_MAX.saturating_sub(running.len());
            let min_free = self.config().min_free_bytes;
            let mut failed = self.repair_stats().failed();
            failed.prune(now);
            let (jobs, scan) = plan(
                &g.meta, &g.servers, now, dead_after, running, slots, min_free, &failed,
            );
            drop(failed);
            for j in &jobs {
                g.repairs.insert(j.job.handle, j.target.clone());
            }
            (jobs, scan)
        };
        let (jobs, scan) = jobs;
        for j in jobs {
            let core = self.clone();
            tokio::spawn(async move { core.copy(j).await });
        }
        let (reseals, salvages, stale, complete) = {
            let mut g = self.lock();
            let started = self.started();
            let found = orphaned_open_chunks(&g.meta, &g.servers, now, dead_after, started);
            let salvage_after = self.config().salvage_after;
            let salvages = crate::salvage::candidates(
                &g.meta,
                &g.servers,
                now,
                dead_after,
                salvage_after,
                started,
            );
            let stale = stale_open_replicas(&g.meta, &g.servers, now, dead_after);
            let complete = complete_unsealed_replicas(&g.meta, &g.servers, now, dead_after);
            g.reseal_backoff
                .retain(|h, _| found.iter().any(|o| o.handle == *h));
            let due = |g: &super::Inner, h: &ChunkHandle| {
                g.reseal_backoff.get(h).is_none_or(|b| b.next <= now)
            };
            let reseals = found
                .into_iter()
                .filter(|o| due(&g, &o.handle) && g.resealing.insert(o.handle))
                .collect::<Vec<_>>();
            let salvages = salvages
                .into_iter()
                .filter(|c| g.resealing.insert(c.handle))
                .collect::<Vec<_>>();
            let stale = stale
                .into_iter()
                .filter(|r| g.resealing.insert(r.handle))
                .collect::<Vec<_>>();
            let complete = complete
                .into_iter()
                .filter(|r| g.resealing.insert(r.handle))
                .collect::<Vec<_>>();
            (reseals, salvages, stale, complete)
        };
        for ReplicasToSeal {
            handle,
            version,
            length,
            addresses,
        } in complete
        {
            let core = self.clone();
            tokio::spawn(async move {
                info!(chunk = %handle, %version, %length, replicas = ?addresses, "sealing in place replicas that missed the seal but hold the whole chunk");
                let sealed = core.seal_all(handle, version, length, &addresses).await;
                let mut g = core.lock();
                let now = Instant::now();
                for a in &sealed {
                    g.servers
                        .set_replica(a, now, ReplicaReport::sealed(handle, version, length));
                }
                g.resealing.remove(&handle);
            });
        }
        for SalvageCandidate {
            log,
            handle,
            version,
        } in salvages
        {
            let core = self.clone();
            tokio::spawn(async move {
                if let Err(e) = core.salvage(&log, handle, version).await {
                    warn!(%log, chunk = %handle, error = %e, "salvage failed; a later pass retries");
                }
                core.lock().resealing.remove(&handle);
            });
        }
        for ReplicasToSeal {
            handle,
            version,
            addresses,
            ..
        } in stale
        {
            let core = self.clone();
            tokio::spawn(async move {
                info!(chunk = %handle, %version, replicas = ?addresses, "fencing replicas that missed the chunk's seal");
                for o in core.fence_all(handle, version, &addresses).await {
                    if let crate::seal::FenceOutcome::Failed { address } = o {
                        warn!(chunk = %handle, %address, "fencing a replica that missed the seal failed; a later pass retries");
                    }
                }
                core.lock().resealing.remove(&handle);
            });
        }
        for OrphanedOpenChunk {
            log,
            handle,
            version,
            reason,
        } in reseals
        {
            let core = self.clone();
            tokio::spawn(async move {
                warn!(%log, chunk = %handle, %reason, "sealing an open chunk whose primary is gone");
                let result = core.seal_chunk(&log, handle, version, &reason).await;
                let mut g = core.lock();
                g.resealing.remove(&handle);
                match result {
                    Ok(_) => {
                        g.reseal_backoff.remove(&handle);
                    }
                    Err(e) => {
                        let backoff = Backoff::after_failure(
                            g.reseal_backoff.get(&handle).copied(),
                            Instant::now(),
                            RESEAL_BACKOFF_FIRST,
                            RESEAL_BACKOFF_MAX,
                        );
                        g.reseal_backoff.insert(handle, backoff);
                        warn!(%log, chunk = %handle, error = %e, retry_in = ?backoff.delay, "sealing failed; a later pass retries");
                    }
                }
            });
        }
        scan
    }

    async fn copy(&self, j: RepairJob) {
        let handle = j.job.handle;
        let timeout = self.config().rpc_timeout
            + Duration::from_secs(u64::from(j.job.length) / REPAIR_RATE_FLOOR_BYTES_PER_SEC + 1);
        info!(chunk = %handle, from = %j.job.source, to = %j.target, good = j.good, length = %j.job.length, "copying replica");
        let started = Instant::now();
        // The target's chunkserver does not know that a checker found its replica corrupt, and
        // would keep it as complete: delete it first so the copy replaces it.
        let marked = self.lock().servers.mark(&j.target, handle).is_some();
        let deleted = if marked {
            info!(chunk = %handle, chunkserver = %j.target, "deleting the replica reported corrupt before copying over it");
            let call = self.api().delete_replica(j.target.clone(), handle);
            match tokio::time::timeout(self.config().rpc_timeout, call).await {
                Ok(Ok(())) | Ok(Err(RpcError::NotFound)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(RpcError::Other("delete timed out".to_owned())),
            }
        } else {
            Ok(())
        };
        let result = match deleted {
            Err(e) => Err(CopyError::Rpc(e)),
            Ok(()) => {
                let call = self
                    .api()
                    .replicate(j.target.clone(), j.job.clone(), timeout);
                match tokio::time::timeout(timeout, call).await {
                    Ok(r) => r,
                    Err(_) => Err(RpcError::Other(format!("no answer within {timeout:?}")).into()),
                }
            }
        };
        let result = result.map_err(|e| match e {
            CopyError::Rpc(e) => CopyError::Rpc(e),
            // Mark the source before the next pass can pick it again (core/fsck.rs: never the
            // chunk's last good replica).
            CopyError::SourceCorrupt(detail) => {
                let reason = format!("a copy to {} found bad bytes: {detail}", j.target);
                match self.report_corrupt(handle, &j.job.source, &reason) {
                    Ok(CorruptMark::Marked) => {
                        self.repair_stats()
                            .sources_marked_corrupt
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(chunk = %handle, source = %j.job.source, to = %j.target, %detail, "the copy source holds bad bytes: marked it corrupt");
                    }
                    Ok(CorruptMark::Refused(why)) => {
                        warn!(chunk = %handle, source = %j.job.source, %detail, %why, "the copy source holds bad bytes but is the last good replica");
                    }
                    Err(e) => {
                        warn!(chunk = %handle, source = %j.job.source, error = %e, "could not mark the copy source corrupt");
                    }
                }
                CopyError::SourceCorrupt(detail)
            }
        });
        if result.is_err() {
            let now = Instant::now();
            let mut failed = self.repair_stats().failed();
            failed.note(handle, &j.job.source, now);
            failed.note(handle, &j.target, now);
        }
        let stats = self.repair_stats();
        let mut g = self.lock();
        g.repairs.remove(&handle);
        match result {
            Ok(copied) => {
                stats.copies_done.fetch_add(1, Ordering::Relaxed);
                stats.bytes_copied.fetch_add(copied, Ordering::Relaxed);
                let still =
                    g.meta.chunks.get(&handle).is_some_and(|c| {
                        c.version == j.job.version && c.state == ChunkState::Sealed
                    });
                if marked {
                    g.servers.clear_mark(&j.target, handle);
                }
                if still {
                    g.servers.set_replica(
                        &j.target,
                        Instant::now(),
                        ReplicaReport::sealed(handle, j.job.version, j.job.length),
                    );
                }
                let secs = started.elapsed().as_secs_f64();
                info!(chunk = %handle, to = %j.target, copied, mb_per_sec = format_args!("{:.1}", copied as f64 / secs.max(1e-6) / 1e6), "replica copied");
            }
            Err(e) => {
                stats.copies_failed.fetch_add(1, Ordering::Relaxed);
                warn!(chunk = %handle, from = %j.job.source, to = %j.target, error = ?e, "copying a replica failed; a later pass retries");
            }
        }
    }
}
