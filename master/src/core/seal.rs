//! The seal driver (ARCHITECTURE.md, "Seal"): `SealChunk`, the new version logged first, the
//! fence of every known replica, the seal at the length `crate::seal::plan` decides, the seal
//! logged, and the next chunk. Also the fence and seal fan-outs salvage and the repair loop use.

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Location, LogLock, MasterCore};
use crate::chunkserver_api::{ChunkserverApi, RpcError};
use crate::crash_point::CrashPoint;
use crate::error::{Error, Result};
use crate::heartbeat::ReplicaReport;
use crate::meta::{Entry, merge_marks};
use crate::seal::{FenceOutcome, SealPlan};
use crate::versions::next_version;

impl<C: ChunkserverApi> MasterCore<C> {
    /// `SealChunk`: seals `handle` at `version` and returns the log's next open chunk. A request
    /// for a chunk that is sealed already, is not the open one, or names an older version just
    /// gets the current open chunk, so many clients asking at once share one seal.
    pub(crate) async fn seal_chunk(
        &self,
        path: &str,
        handle: ChunkHandle,
        version: ChunkVersion,
        reason: &str,
    ) -> Result<Location> {
        let lock = self.log_lock(path)?;
        let _serial = lock.lock().await;
        self.seal_locked(path, &lock, handle, version, reason).await
    }

    /// The seal path (ARCHITECTURE.md, "Seal"). Called with the log's lock held.
    pub(super) async fn seal_locked(
        &self,
        path: &str,
        lock: &LogLock,
        handle: ChunkHandle,
        version: ChunkVersion,
        reason: &str,
    ) -> Result<Location> {
        // 1. Only the open chunk at the master's version is sealed; anything else is answered
        //    with the current open chunk.
        let start = {
            let mut g = self.lock();
            g.check_log(path, lock)?;
            match g.meta.open_chunk(path) {
                Some(c) if c.handle == handle && version > c.version => {
                    return Err(Error::VersionAhead {
                        handle,
                        version,
                        current: c.version,
                    });
                }
                Some(c) if c.handle == handle && version == c.version => {
                    self.check_writable()?;
                    let new_version = next_version(handle, version)?;
                    let mut targets = c.replicas.clone();
                    let mut proven_empty = false;
                    for (a, report) in g.servers.replicas_of(handle) {
                        // Failed takes no byte more: at the header, it never held a record.
                        if c.replicas.contains(&a)
                            && report.failed
                            && report.length <= ChunkOffset::FIRST_FRAME
                        {
                            proven_empty = true;
                        }
                        if !targets.contains(&a) {
                            targets.push(a);
                        }
                    }
                    // 2. The new version is durable before any replica sees it.
                    let sequence = g.record(Entry::Version {
                        handle,
                        version: new_version,
                    });
                    Some((sequence, new_version, targets, proven_empty))
                }
                _ => None,
            }
        };
        let Some((sequence, new_version, targets, proven_empty)) = start else {
            return Box::pin(self.current_or_allocate(path, lock, &[])).await;
        };
        self.commit(sequence).await?;
        self.crash_point(CrashPoint::AfterVersionLogged);
        info!(log = path, chunk = %handle, version = %new_version, reason, "sealing chunk");

        // 3. Fence every known replica in parallel.
        let outcomes = self.fence_all(handle, new_version, &targets).await;
        self.crash_point(CrashPoint::AfterFence);
        match crate::seal::plan(&outcomes, proven_empty) {
            SealPlan::Unavailable => Err(Error::FenceUnanswered { handle }),
            SealPlan::Abandon => {
                let held = self.lock().servers.longest_reported(handle);
                if let Some(held) = held.filter(|_| !proven_empty) {
                    self.seal_lost(path, lock, handle, new_version, held)
                        .await?;
                    return self.allocate(path, lock, &[]).await;
                }
                self.abandon(path, lock, handle).await?;
                warn!(
                    log = path,
                    chunk = %handle,
                    proven_empty,
                    "the open chunk never held an acknowledged record (no replica holds it, or one it was opened on failed at its header); dropped it"
                );
                self.allocate(path, lock, &[]).await
            }
            SealPlan::Seal {
                length,
                replicas,
                marks,
            } => {
                // 4-5. Seal at the longest durable length of the fenced replicas (or the length an
                //      earlier seal gave one), then log the seal.
                let sealed = self.seal_all(handle, new_version, length, &replicas).await;
                if sealed.is_empty() {
                    return Err(Error::SealUnanswered { handle });
                }
                self.crash_point(CrashPoint::BeforeSealLogged);
                let sequence = {
                    let mut g = self.lock();
                    let log = g.check_log(path, lock)?;
                    let writer_marks = merge_marks(&log.writer_marks, &marks);
                    let still_ours = g
                        .meta
                        .open_chunk(path)
                        .is_some_and(|c| c.handle == handle && c.version == new_version);
                    if !still_ours {
                        return Err(Error::FenceUnanswered { handle });
                    }
                    let now = Instant::now();
                    for a in &sealed {
                        g.servers.set_replica(
                            a,
                            now,
                            ReplicaReport::sealed(handle, new_version, length),
                        );
                    }
                    g.record(Entry::Seal {
                        handle,
                        version: new_version,
                        length,
                        replicas: sealed.clone(),
                        writer_marks,
                    })
                };
                self.commit(sequence).await?;
                self.counts().sealed(reason);
                info!(
                    log = path,
                    chunk = %handle,
                    version = %new_version,
                    %length,
                    replicas = sealed.len(),
                    "chunk sealed"
                );
                // 6. The next chunk, preferring the chunkservers that just answered.
                let answered: Vec<String> = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        FenceOutcome::Fenced { address, .. } => Some(address.clone()),
                        _ => None,
                    })
                    .collect();
                self.allocate(path, lock, &answered).await
            }
        }
    }

    /// The open chunk `handle` has no replica left (every fence found none), yet a chunkserver
    /// reported `held` bytes of it: records, possibly acknowledged, that every replica lost
    /// (all of them wiped, say). Rather than drop it as if it never held one, it is sealed
    /// at `held` and at once cut back to its header (a seal, then a salvage, both logged), so
    /// that it stays in the log with `[FIRST_FRAME, held)` recorded as lost and every reader
    /// reports those bytes skipped. Called with the log's lock held, `version` logged.
    async fn seal_lost(
        &self,
        path: &str,
        lock: &LogLock,
        handle: ChunkHandle,
        version: ChunkVersion,
        held: ChunkOffset,
    ) -> Result<()> {
        let sequence = {
            let mut g = self.lock();
            let log = g.check_log(path, lock)?;
            let writer_marks = log.writer_marks.clone();
            let still_ours = g
                .meta
                .open_chunk(path)
                .is_some_and(|c| c.handle == handle && c.version == version);
            if !still_ours {
                return Err(Error::FenceUnanswered { handle });
            }
            g.record(Entry::Seal {
                handle,
                version,
                length: held,
                replicas: Vec::new(),
                writer_marks,
            });
            g.record(Entry::Salvage {
                handle,
                version,
                length: ChunkOffset::FIRST_FRAME,
                replicas: Vec::new(),
            })
        };
        self.commit(sequence).await?;
        self.counts().sealed(crate::metrics::REPLICAS_LOST);
        warn!(
            log = path,
            chunk = %handle,
            %version,
            lost_end = %held,
            "every replica of the open chunk is gone, though one reported records: sealed with its bytes recorded as lost"
        );
        Ok(())
    }

    /// Fences `handle` with `new_version` on each of `targets` in parallel, each call bounded by
    /// the RPC timeout; the outcomes are sorted by address.
    pub(crate) async fn fence_all(
        &self,
        handle: ChunkHandle,
        new_version: ChunkVersion,
        targets: &[String],
    ) -> Vec<FenceOutcome> {
        let mut calls = JoinSet::new();
        for address in targets {
            let api = self.api.clone();
            let address = address.clone();
            let timeout = self.config.rpc_timeout;
            calls.spawn(async move {
                let call = api.fence(address.clone(), handle, new_version);
                let result = tokio::time::timeout(timeout, call).await;
                match result {
                    // A version of 0 means the chunkserver left the field unset.
                    Ok(Ok(f)) if f.version == ChunkVersion(0) || f.version >= new_version => FenceOutcome::Fenced {
                        address,
                        length: f.length,
                        sealed: f.sealed,
                        marks: f.marks,
                        marks_through: f.marks_through,
                        primary_commit: f.primary_commit,
                    },
                    Ok(Ok(f)) => {
                        warn!(chunk = %handle, %address, version = %f.version, "fence answered with an old version");
                        FenceOutcome::Failed { address }
                    }
                    Ok(Err(RpcError::NotFound)) => FenceOutcome::Absent { address },
                    Ok(Err(RpcError::Other(error))) => {
                        warn!(chunk = %handle, %address, %error, "fence failed");
                        FenceOutcome::Failed { address }
                    }
                    Err(_) => {
                        warn!(chunk = %handle, %address, "fence timed out");
                        FenceOutcome::Failed { address }
                    }
                }
            });
        }
        let mut outcomes: Vec<FenceOutcome> = calls.join_all().await;
        outcomes.sort_by(|a, b| outcome_address(a).cmp(outcome_address(b)));
        outcomes
    }

    /// Seals `handle` on each of `replicas`; returns those that confirmed.
    pub(crate) async fn seal_all(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        length: ChunkOffset,
        replicas: &[String],
    ) -> Vec<String> {
        let mut calls = JoinSet::new();
        for address in replicas {
            let api = self.api.clone();
            let address = address.clone();
            let timeout = self.config.rpc_timeout;
            calls.spawn(async move {
                let call = api.seal(address.clone(), handle, version, length);
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(())) => Some(address),
                    Ok(Err(e)) => {
                        warn!(chunk = %handle, %address, error = ?e, "seal failed");
                        None
                    }
                    Err(_) => {
                        warn!(chunk = %handle, %address, "seal timed out");
                        None
                    }
                }
            });
        }
        let mut sealed: Vec<String> = calls.join_all().await.into_iter().flatten().collect();
        sealed.sort();
        sealed
    }
}

fn outcome_address(o: &FenceOutcome) -> &str {
    match o {
        FenceOutcome::Fenced { address, .. }
        | FenceOutcome::Absent { address }
        | FenceOutcome::Failed { address } => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::core::fake::{Fake, repair_until_done, with_open_chunk};
    use crate::meta::{ChunkState, WriterMark};

    // Proves: an open chunk whose every replica is wiped after one reported records (each
    // chunkserver re-registers without it, so every fence finds none) is not dropped as if it
    // never held one: it is sealed at its header with the reported length recorded as lost (so
    // readers report those bytes skipped), it keeps its place in the log, and the next chunk
    // takes index 1. One that no chunkserver ever reported past its header is still dropped.
    #[tokio::test]
    async fn an_open_chunk_wiped_everywhere_after_holding_records_is_sealed_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let (m, first) = with_open_chunk(dir.path(), &fake).await;
        let held = ReplicaReport {
            length: ChunkOffset(6000),
            ..crate::core::fake::report(first.handle, first.version)
        };
        m.heartbeat("a:1", &[held]).await.unwrap();
        fake.st().replicas.clear();
        for a in ["a:1", "b:1", "c:1"] {
            m.register(a, &[]).await.unwrap();
        }
        let next = m
            .seal_chunk("/l", first.handle, first.version, "wiped")
            .await
            .unwrap();
        assert_eq!(next.index, 1, "the lost chunk keeps index 0");
        let info = m.stat_log("/l").unwrap();
        let lost = &info.chunks[0];
        assert_eq!(lost.handle, first.handle);
        assert_eq!(lost.state, ChunkState::Sealed);
        assert_eq!(
            (lost.length, lost.lost_end),
            (ChunkOffset::FIRST_FRAME, ChunkOffset(6000))
        );
        assert!(lost.replicas.is_empty());

        // The next chunk, wiped before any report of its bytes: dropped, index 1 reused.
        fake.st().replicas.clear();
        for a in ["a:1", "b:1", "c:1"] {
            m.register(a, &[]).await.unwrap();
        }
        let after = m
            .seal_chunk("/l", next.handle, next.version, "wiped")
            .await
            .unwrap();
        assert_eq!(
            after.index, 1,
            "a chunk that never held a record is dropped"
        );
        assert_ne!(after.handle, next.handle);
        // A restarted master replays the seal and the salvage from its operation log.
        drop(m);
        let m = crate::core::fake::start(dir.path(), &fake).await;
        let lost = m.stat_log("/l").unwrap().chunks[0].clone();
        assert_eq!(
            (lost.state, lost.length, lost.lost_end),
            (
                ChunkState::Sealed,
                ChunkOffset::FIRST_FRAME,
                ChunkOffset(6000)
            )
        );
    }

    // Many clients sealing the same full chunk at once: one fence round, one seal at the
    // longest durable length (on the one replica that holds it; the repair loop brings the
    // others up), one new chunk, and every caller gets that chunk. Sealing again
    // with the old version is answered with the current chunk and fences nothing.
    #[tokio::test]
    async fn concurrent_seals_share_one_new_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let (m, first) = with_open_chunk(dir.path(), &fake).await;
        assert_eq!(first.secondaries.len(), 2);
        let created = fake.st().creates.clone();
        assert_eq!(created.len(), 3);
        assert!(created[2].1.primary, "the primary is created last");
        assert_eq!(created[2].0, first.primary);
        for (a, len) in [("a:1", 8000), ("b:1", 5000), ("c:1", 7000)] {
            fake.st().lengths.insert(a.into(), len);
        }
        let mut calls = JoinSet::new();
        for _ in 0..8 {
            let m = m.clone();
            let (h, v) = (first.handle, first.version);
            calls.spawn(async move { m.seal_chunk("/l", h, v, "full").await.unwrap() });
        }
        let answers = calls.join_all().await;
        assert!(answers.iter().all(|l| *l == answers[0]));
        let next = &answers[0];
        assert_eq!((next.index, next.version), (1, ChunkVersion(1)));
        {
            let s = fake.st();
            assert_eq!(s.fences.len(), 3, "one fence per replica");
            assert_eq!(s.seals.len(), 1);
            assert_eq!(
                (
                    s.seals[0].address.as_str(),
                    s.seals[0].version,
                    s.seals[0].length
                ),
                ("a:1", ChunkVersion(2), ChunkOffset(8000))
            );
            let primary = s
                .creates
                .iter()
                .find(|(a, c)| c.handle == next.handle && c.primary && *a == next.primary);
            let marks = &primary.expect("primary created").1.writer_marks;
            assert_eq!(
                marks,
                &vec![WriterMark {
                    writer: cairn_record::WriterId(42),
                    sequence: 8000,
                    frame_crc: 0,
                }]
            );
        }
        let info = m.stat_log("/l").unwrap();
        assert_eq!(info.chunks.len(), 2);
        assert_eq!(info.chunks[0].state, ChunkState::Sealed);
        assert_eq!(
            (info.chunks[0].length, info.chunks[0].version),
            (ChunkOffset(8000), ChunkVersion(2))
        );
        assert_eq!(info.chunks[0].replicas, vec!["a:1".to_owned()]);
        // The repair loop first fences the two replicas that missed the seal (still open at
        // version 1; no copy lands on a replica being fenced), then copies the sealed chunk to
        // their chunkservers (they only need the tail), from the one good replica, one copy per
        // chunk at a time: three passes.
        let passes = repair_until_done(&m).await;
        assert_eq!(passes, 3);
        {
            let s = fake.st();
            let mut targets: Vec<_> = s
                .replicates
                .iter()
                .map(|(t, j)| (t.as_str(), j.length))
                .collect();
            targets.sort();
            assert_eq!(
                targets,
                vec![("b:1", ChunkOffset(8000)), ("c:1", ChunkOffset(8000))]
            );
            // The first copy could only come from the one good replica.
            assert_eq!(s.replicates[0].1.source, "a:1");
        }
        let info = m.stat_log("/l").unwrap();
        assert_eq!(info.chunks[0].replicas.len(), 3);
        // The repair loop fenced the two replicas it knew as open at version 1 with the
        // chunk's version (replicas that missed a seal are fenced when seen), once each: the
        // fence's answer stands for them until their next report.
        let fences = {
            let s = fake.st();
            let stale: Vec<_> = s.fences[3..]
                .iter()
                .map(|(a, h, v)| (a.as_str(), *h, *v))
                .collect();
            let mut sorted = stale.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                vec![
                    ("b:1", first.handle, ChunkVersion(2)),
                    ("c:1", first.handle, ChunkVersion(2))
                ]
            );
            s.fences.len()
        };
        // A late seal request for the old version fences nothing.
        let again = m
            .seal_chunk("/l", first.handle, ChunkVersion(1), "late")
            .await
            .unwrap();
        assert_eq!(&again, next);
        assert_eq!(fake.st().fences.len(), fences);
        m.stop().await;
    }
}
