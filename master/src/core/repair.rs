//! The repair loop's driver (ARCHITECTURE.md, "Repair"): a pass per heartbeat period plans copies
//! with `crate::repair::plan` and starts them, and starts the seals, salvages and fences the
//! pure finders of `crate::repair` and `crate::salvage` ask for.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_record::{ChunkHandle, ChunkOffset};
use tokio::time::Instant;
use tracing::{info, warn};

use super::MasterCore;
use crate::chunkserver_api::{ChunkserverApi, CopyError, CreateReplica, RpcError};
use crate::fsck::CorruptMark;
use crate::heartbeat::ReplicaReport;
use crate::limits::{
    REPAIR_RATE_FLOOR_BYTES_PER_SEC, REPAIRS_IN_FLIGHT_MAX, RESEAL_BACKOFF_FIRST,
    RESEAL_BACKOFF_MAX,
};
use crate::meta::ChunkState;
use crate::repair::{
    Backoff, OrphanedOpenChunk, RecreateEmpty, RepairJob, RepairScan, ReplicasToSeal,
    complete_unsealed_replicas, empty_chunks_to_recreate, orphaned_open_chunks, plan,
    stale_open_replicas,
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
            self.repair_stats().sample(Instant::now());
            if scan != last_scan {
                let stats = self.repair_stats();
                info!(
                    under_replicated = scan.under_replicated,
                    without_good_replica = scan.unrecoverable_now,
                    copies_done = stats.copies_done.load(Ordering::Relaxed),
                    copies_failed = stats.copies_failed.load(Ordering::Relaxed),
                    sources_marked_corrupt = stats.sources_marked_corrupt.load(Ordering::Relaxed),
                    empty_recreated = stats.empty_recreated.load(Ordering::Relaxed),
                    bytes_copied = stats.bytes_copied.load(Ordering::Relaxed),
                    "re-replication progress"
                );
                last_scan = scan;
            }
        }
    }

    /// Plans this pass's copies (and recreations of empty chunks) and starts them, then its
    /// seals, salvages and fences; returns what it found.
    pub(crate) fn repair_pass(self: Arc<Self>) -> RepairScan {
        let now = Instant::now();
        let dead_after = self.config().dead_after;
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
                .filter(|c| !g.in_place_on(c.handle) && g.resealing.insert(c.handle))
                .collect::<Vec<_>>();
            // Never a replica a copy is landing on (the copy fences and seals it itself).
            // One task per replica (not per chunk: a stale replica's fence must not hold up a
            // complete one's seal), none while a salvage of the chunk runs.
            let in_place = |g: &mut super::Inner, mut r: ReplicasToSeal| {
                let copying = g.repairs.get(&r.handle).cloned();
                r.addresses.retain(|a| {
                    Some(a) != copying.as_ref() && !g.in_place.contains(&(r.handle, a.clone()))
                });
                if r.addresses.is_empty() || g.resealing.contains(&r.handle) {
                    return None;
                }
                for a in &r.addresses {
                    g.in_place.insert((r.handle, a.clone()));
                }
                Some(r)
            };
            let stale = stale
                .into_iter()
                .filter_map(|r| in_place(&mut g, r))
                .collect::<Vec<_>>();
            let complete = complete
                .into_iter()
                .filter_map(|r| in_place(&mut g, r))
                .collect::<Vec<_>>();
            (reseals, salvages, stale, complete)
        };
        let jobs = {
            let mut g = self.lock();
            let running = &g.repairs;
            let slots = REPAIRS_IN_FLIGHT_MAX.saturating_sub(running.len());
            let min_free = self.config().min_free_bytes;
            let mut failed = self.repair_stats().failed();
            failed.prune(now);
            let (mut jobs, scan) = plan(
                &g.meta, &g.servers, now, dead_after, running, slots, min_free, &failed,
            );
            // No copy into a replica being sealed or fenced in place (chosen above, or still
            // running): it would compare checksums mid-seal (seed 42634). Other targets of the
            // chunk are fine, so a fence that keeps failing never keeps a chunk from its copies.
            jobs.retain(|j| !g.in_place.contains(&(j.job.handle, j.target.clone())));
            let mut recreations = empty_chunks_to_recreate(
                &g.meta,
                &g.servers,
                now,
                dead_after,
                self.started(),
                running,
                slots.saturating_sub(jobs.len()),
                min_free,
                &failed,
            );
            drop(failed);
            recreations.retain(|r| !g.in_place.contains(&(r.handle, r.target.clone())));
            for j in &jobs {
                g.repairs.insert(j.job.handle, j.target.clone());
            }
            for r in &recreations {
                g.repairs.insert(r.handle, r.target.clone());
            }
            (jobs, recreations, scan)
        };
        let (jobs, recreations, scan) = jobs;
        for j in jobs {
            let core = self.clone();
            tokio::spawn(async move { core.copy(j).await });
        }
        for r in recreations {
            let core = self.clone();
            tokio::spawn(async move { core.recreate_empty(r).await });
        }
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
                g.end_in_place(handle, &addresses);
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
                let outcomes = core.fence_all(handle, version, &addresses).await;
                let mut g = core.lock();
                let now = Instant::now();
                for o in outcomes {
                    match o {
                        crate::seal::FenceOutcome::Fenced {
                            address,
                            length,
                            sealed,
                            ..
                        } => {
                            // What the replica is now, ahead of its next report: at the
                            // chunk's version, so it is not fenced again meanwhile.
                            let report = ReplicaReport {
                                handle,
                                version,
                                length,
                                sealed,
                                failed: false,
                                corrupt: false,
                                primary: false,
                            };
                            g.servers.set_replica(&address, now, report);
                        }
                        crate::seal::FenceOutcome::Failed { address } => {
                            warn!(chunk = %handle, %address, "fencing a replica that missed the seal failed; a later pass retries");
                        }
                        crate::seal::FenceOutcome::Absent { .. } => {}
                    }
                }
                g.end_in_place(handle, &addresses);
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

    /// Recreates the empty sealed chunk `r.handle` on `r.target`: an empty replica at the
    /// chunk's version, sealed at the header's length (`crate::repair::empty_chunks_to_recreate`
    /// says why that is the lost replica byte for byte). A failure is remembered against the
    /// target, and a later pass retries (an unsealed replica left behind is sealed in place by
    /// the complete-unsealed rule).
    async fn recreate_empty(&self, r: RecreateEmpty) {
        let RecreateEmpty {
            log,
            handle,
            version,
            capacity,
            target,
        } = r;
        warn!(%log, chunk = %handle, %version, to = %target, "recreating an empty sealed chunk that lost every replica, from its metadata");
        let create = CreateReplica {
            handle,
            version,
            capacity,
            primary: false,
            secondaries: Vec::new(),
            writer_marks: Vec::new(),
            writer_epochs: Default::default(),
        };
        let created = self
            .create_one(target.clone(), create)
            .await
            .map_err(|e| e.to_string());
        let result = match created {
            Ok(()) => {
                let sealed = self
                    .seal_all(
                        handle,
                        version,
                        ChunkOffset::FIRST_FRAME,
                        std::slice::from_ref(&target),
                    )
                    .await;
                if sealed.is_empty() {
                    Err("the seal failed".to_owned())
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.repair_stats()
                .failed()
                .note(handle, &target, Instant::now());
        }
        let mut g = self.lock();
        g.repairs.remove(&handle);
        match result {
            Ok(()) => {
                self.repair_stats()
                    .empty_recreated
                    .fetch_add(1, Ordering::Relaxed);
                let still = g
                    .meta
                    .chunks
                    .get(&handle)
                    .is_some_and(|c| c.version == version && c.state == ChunkState::Sealed);
                if still {
                    g.servers.set_replica(
                        &target,
                        Instant::now(),
                        ReplicaReport::sealed(handle, version, ChunkOffset::FIRST_FRAME),
                    );
                }
                info!(%log, chunk = %handle, to = %target, "empty sealed chunk recreated");
            }
            Err(e) => {
                warn!(%log, chunk = %handle, to = %target, error = %e, "recreating an empty sealed chunk failed; a later pass retries");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::ChunkVersion;

    use crate::core::fake::{Fake, repair_until_done, with_open_chunk};

    // Proves (simulator seed 28034) through the repair loop: a chunk sealed with no record on
    // one replica, whose chunkserver then comes back wiped, is recreated from the metadata (an
    // empty replica at the chunk's version, sealed at 32), and the copy loop takes it back to
    // its factor from there; the master lists it readable again.
    #[tokio::test(start_paused = true)]
    async fn an_empty_sealed_chunk_that_lost_every_replica_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let (m, first) = with_open_chunk(dir.path(), &fake).await;
        // Only `a` answers the fence: the chunk is sealed, empty, on `a` alone.
        fake.st().replicas.retain(|(a, _)| a == "a:1");
        m.seal_chunk("/l", first.handle, ChunkVersion(1), "full")
            .await
            .unwrap();
        let sealed = m.stat_log("/l").unwrap().chunks[0].clone();
        assert_eq!(sealed.length, ChunkOffset::FIRST_FRAME);
        // `a` is wiped; every chunkserver reports nothing of the chunk.
        tokio::time::advance(m.config().dead_after).await;
        for a in ["a:1", "b:1", "c:1"] {
            m.heartbeat(a, &[]).await.unwrap();
        }
        assert!(m.stat_log("/l").unwrap().chunks[0].replicas.is_empty());

        assert!(repair_until_done(&m).await > 0);
        {
            let s = fake.st();
            let (target, create) = s.creates.last().expect("a recreation");
            assert_eq!(
                (create.handle, create.version, create.primary),
                (sealed.handle, sealed.version, false)
            );
            let seal = s.seals.last().expect("its seal");
            assert_eq!(
                (&seal.address, seal.handle, seal.version, seal.length),
                (
                    target,
                    sealed.handle,
                    sealed.version,
                    ChunkOffset::FIRST_FRAME
                )
            );
            assert_eq!(s.replicates.len(), 2, "two copies to reach the factor");
            assert_eq!(
                &s.replicates[0].1.source, target,
                "the first from the new one"
            );
        }
        assert_eq!(m.repair_stats().empty_recreated.load(Ordering::Relaxed), 1);
        assert_eq!(m.stat_log("/l").unwrap().chunks[0].replicas.len(), 3);
        m.stop().await;
    }

    // Proves (simulator seed 42634): a copy never lands on a replica the same pass seals in
    // place. `b` missed the seal but holds the whole chunk (open at the chunk's version, as long
    // as the sealed length): the pass seals it in place, and does not copy onto it, although
    // its prefix makes it the copy's first choice of target.
    #[tokio::test]
    async fn a_copy_never_lands_on_a_replica_sealed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let (m, first) = with_open_chunk(dir.path(), &fake).await;
        fake.st().lengths.insert("a:1".into(), 4096);
        // Only `a` answers the fence: sealed at version 2, 4096 bytes, on `a` alone.
        fake.st().replicas.retain(|(a, _)| a == "a:1");
        m.seal_chunk("/l", first.handle, ChunkVersion(1), "full")
            .await
            .unwrap();
        let sealed = m.stat_log("/l").unwrap().chunks[0].clone();
        assert_eq!(sealed.length, ChunkOffset(4096));
        let good = ReplicaReport::sealed(first.handle, sealed.version, sealed.length);
        let whole = ReplicaReport {
            sealed: false,
            ..good
        };
        m.heartbeat("a:1", &[good]).await.unwrap();
        m.heartbeat("b:1", &[whole]).await.unwrap();
        m.heartbeat("c:1", &[]).await.unwrap();
        m.clone().repair_pass();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let s = fake.st();
        assert!(
            s.seals
                .iter()
                .any(|c| c.address == "b:1" && c.length == sealed.length),
            "{:?}",
            s.seals
        );
        assert!(
            s.replicates.iter().all(|(target, _)| target != "b:1"),
            "{:?}",
            s.replicates
        );
    }
}
