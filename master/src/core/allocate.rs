//! `OpenChunk` and chunk allocation (ARCHITECTURE.md, "Chunk allocation"): placement, the
//! allocation logged first, then `CreateReplica` on the chosen chunkservers; and dropping an open
//! chunk that provably holds nothing.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, WriterId};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{LogLock, MasterCore};
use crate::chunkserver_api::{ChunkserverApi, CreateReplica, RpcError};
use crate::crash_point::CrashPoint;
use crate::error::{Error, Result};
use crate::heartbeat::ReplicaReport;
use crate::limits::ALLOCATION_ATTEMPTS_MAX;
use crate::meta::{ChunkMeta, Entry, LogMeta, WriterMark};
use crate::placement::{Candidate, place, place_on};
use crate::versions::FIRST_VERSION;

/// Where to append: `OpenChunk` and `SealChunk` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) path: String,
    pub(crate) index: u32,
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
    pub(crate) primary: String,
    pub(crate) secondaries: Vec<String>,
    pub(crate) chunk_bytes: u64,
}

/// What `current_or_allocate` found.
enum Current {
    Location(Location),
    Allocate,
    /// The open chunk has no live replica reporting it, but some of its chunkservers are live:
    /// let a seal find out what they hold.
    Reseal(ChunkHandle, ChunkVersion),
}

impl<C: ChunkserverApi> MasterCore<C> {
    /// `OpenChunk`: the log's open chunk, allocating one if the log has none.
    pub(crate) async fn open_chunk(&self, path: &str) -> Result<Location> {
        let lock = self.log_lock(path)?;
        let _serial = lock.lock().await;
        self.current_or_allocate(path, &lock, &[]).await
    }

    /// The open chunk's location if it can take appends; allocates when the log has none.
    /// Called with the log's lock held.
    pub(super) async fn current_or_allocate(
        &self,
        path: &str,
        lock: &LogLock,
        preferred: &[String],
    ) -> Result<Location> {
        let current = {
            let g = self.lock();
            let log = g.check_log(path, lock)?;
            match g.meta.open_chunk(path) {
                None => Current::Allocate,
                Some(chunk) => {
                    let now = Instant::now();
                    let dead_after = self.config.dead_after;
                    let live = |a: &String| g.servers.is_live(a, now, dead_after);
                    let reported = g
                        .servers
                        .replicas_of(chunk.handle)
                        .iter()
                        .any(|(a, _)| live(a) && chunk.replicas.contains(a));
                    if reported {
                        Current::Location(location(log, chunk))
                    } else if chunk.replicas.iter().any(live) {
                        Current::Reseal(chunk.handle, chunk.version)
                    } else {
                        return Err(Error::NoLiveReplica {
                            path: path.to_owned(),
                            handle: chunk.handle,
                        });
                    }
                }
            }
        };
        match current {
            Current::Location(l) => Ok(l),
            Current::Allocate => self.allocate(path, lock, preferred).await,
            Current::Reseal(handle, version) => {
                warn!(log = path, chunk = %handle, "open chunk has no reported replica; sealing it");
                Box::pin(self.seal_locked(path, lock, handle, version, "no replica reported")).await
            }
        }
    }

    /// Allocates the log's next chunk (ARCHITECTURE.md, "Chunk allocation"): logged first, then
    /// `CreateReplica` on the secondaries, then on the primary with the inherited writer marks.
    /// A chunkserver that fails is left out of the next attempt. Called with the log's lock held.
    pub(super) async fn allocate(
        &self,
        path: &str,
        lock: &LogLock,
        preferred: &[String],
    ) -> Result<Location> {
        let mut excluded: HashSet<String> = HashSet::new();
        let mut last_error = None;
        for _ in 0..ALLOCATION_ATTEMPTS_MAX {
            self.check_writable()?;
            let (sequence, loc, marks) = {
                let mut g = self.lock();
                let log = g.check_log(path, lock)?;
                let log_place_on = log.place_on.clone();
                let (replication, min_replicas, index, marks) = (
                    log.replication,
                    log.min_replicas(),
                    log.chunks.len() as u32,
                    (log.writer_marks.clone(), log.writer_epochs.clone()),
                );
                // A log that can never be placed fails now, not after the client's retries.
                self.check_cluster_size(&g, path, replication, min_replicas, false)?;
                let need_free = log.chunk_bytes.saturating_add(self.config.min_free_bytes);
                let now = Instant::now();
                let live = g.servers.live(now, self.config.dead_after);
                let mut candidates = Vec::with_capacity(live.len());
                for (address, replicas) in live {
                    if !excluded.contains(&address) {
                        candidates.push(Candidate {
                            preferred: preferred.contains(&address),
                            free_bytes: g.servers.free_bytes(&address),
                            address,
                            replicas,
                            tie: g.rng.next_u64(),
                        });
                    }
                }
                let placed = if log_place_on.is_empty() {
                    place(
                        candidates,
                        replication as usize,
                        min_replicas as usize,
                        need_free,
                    )
                } else {
                    place_on(
                        path,
                        &log_place_on,
                        candidates,
                        replication as usize,
                        min_replicas as usize,
                        need_free,
                    )
                };
                let replicas = match placed {
                    Ok(r) => r,
                    // Too few chunkservers left once those that failed CreateReplica are
                    // excluded: the failure is the cause, not the count (e.g. a chunkserver out
                    // of file descriptors), so that is what the caller is told.
                    Err(e) => return Err(last_error.unwrap_or(e)),
                };
                let handle = g.new_handle();
                let sequence = g.record(Entry::Allocate {
                    path: path.to_owned(),
                    index,
                    handle,
                    version: FIRST_VERSION,
                    replicas,
                });
                let log = &g.meta.logs[path];
                let loc = location(log, &g.meta.chunks[&handle]);
                (sequence, loc, marks)
            };
            self.commit(sequence).await?;
            self.counts().allocated();
            match self.create_replicas(&loc, marks).await {
                Ok(()) => {
                    let mut g = self.lock();
                    let now = Instant::now();
                    for a in std::iter::once(&loc.primary).chain(&loc.secondaries) {
                        g.servers.set_replica(
                            a,
                            now,
                            ReplicaReport {
                                handle: loc.handle,
                                version: loc.version,
                                length: ChunkOffset::FIRST_FRAME,
                                sealed: false,
                                failed: false,
                                corrupt: false,
                                primary: *a == loc.primary,
                            },
                        );
                    }
                    drop(g);
                    info!(
                        log = path,
                        chunk = %loc.handle,
                        index = loc.index,
                        primary = %loc.primary,
                        secondaries = ?loc.secondaries,
                        "chunk allocated"
                    );
                    return Ok(loc);
                }
                Err(error) => {
                    warn!(log = path, chunk = %loc.handle, %error, "chunk allocation failed; dropping it");
                    if let Error::CreateReplicaFailed { address, .. } = &error {
                        excluded.insert(address.clone());
                    }
                    // Its location was never handed out, so nothing can be in it.
                    self.abandon(path, lock, loc.handle).await?;
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    async fn create_replicas(
        &self,
        loc: &Location,
        (marks, epochs): (Vec<WriterMark>, BTreeMap<WriterId, u64>),
    ) -> Result<()> {
        let request = |primary: bool| CreateReplica {
            handle: loc.handle,
            version: loc.version,
            capacity: loc.chunk_bytes,
            primary,
            secondaries: if primary {
                loc.secondaries.clone()
            } else {
                Vec::new()
            },
            writer_marks: if primary { marks.clone() } else { Vec::new() },
            writer_epochs: if primary {
                epochs.clone()
            } else {
                BTreeMap::new()
            },
        };
        let mut calls = JoinSet::new();
        for address in &loc.secondaries {
            calls.spawn(self.create_one(address.clone(), request(false)));
        }
        for result in calls.join_all().await {
            result?;
        }
        self.crash_point(CrashPoint::MidAllocation);
        self.create_one(loc.primary.clone(), request(true)).await
    }

    /// Creates one replica on `address`, bounded by the RPC timeout, naming the chunk and
    /// the chunkserver in the error.
    pub(super) fn create_one(
        &self,
        address: String,
        request: CreateReplica,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let api = self.api.clone();
        let timeout = self.config.rpc_timeout;
        async move {
            let handle = request.handle;
            let failed = |reason: String| Error::CreateReplicaFailed {
                handle,
                address: address.clone(),
                reason,
            };
            match tokio::time::timeout(timeout, api.create_replica(address.clone(), request)).await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(RpcError::NotFound)) => Err(failed("not found".to_owned())),
                Ok(Err(RpcError::Other(e))) => Err(failed(e)),
                Err(_) => Err(failed(format!("timed out after {timeout:?}"))),
            }
        }
    }

    /// Drops the open chunk `handle`, which provably holds no data, from its log.
    pub(super) async fn abandon(
        &self,
        path: &str,
        lock: &LogLock,
        handle: ChunkHandle,
    ) -> Result<()> {
        self.check_writable()?;
        let sequence = {
            let mut g = self.lock();
            g.check_log(path, lock)?;
            if g.meta.open_chunk(path).map(|c| c.handle) != Some(handle) {
                return Ok(());
            }
            g.record(Entry::Abandon { handle })
        };
        self.commit(sequence).await?;
        self.forget(&[handle]);
        Ok(())
    }
}

fn location(log: &LogMeta, c: &ChunkMeta) -> Location {
    Location {
        path: log.path.clone(),
        index: c.index,
        handle: c.handle,
        version: c.version,
        primary: c.primary.clone(),
        secondaries: c
            .replicas
            .iter()
            .filter(|a| **a != c.primary)
            .cloned()
            .collect(),
        chunk_bytes: log.chunk_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::core::fake::{Fake, register, report, start};

    // With too few chunkservers left once the one whose CreateReplica fails is excluded, the
    // allocation's error is that failure (e.g. a chunkserver out of descriptors), not the count
    // of live chunkservers.
    #[tokio::test]
    async fn failed_allocation_reports_the_create_replica_cause() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1", "c:1"]).await;
        fake.st().broken.insert("c:1".into());
        m.create_log("/l", 3, 8192).await.unwrap();
        let e = m.open_chunk("/l").await.unwrap_err();
        assert!(
            matches!(&e, Error::CreateReplicaFailed { address, reason, .. }
                if address == "c:1" && reason == "broken"),
            "{e}"
        );
        m.stop().await;
    }

    // A chunkserver whose CreateReplica fails: the half-made chunk is dropped (logged), and the
    // next attempt avoids that server. Heartbeats then ask for the orphan replicas' deletion but
    // never for a replica of a chunk in the metadata.
    #[tokio::test]
    async fn failed_create_is_abandoned_and_orphans_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1", "c:1", "d:1"]).await;
        fake.st().broken.insert("d:1".into());
        m.create_log("/l", 3, 8192).await.unwrap();
        let loc = m.open_chunk("/l").await.unwrap();
        assert!(loc.primary != "d:1" && !loc.secondaries.contains(&"d:1".to_owned()));
        assert_eq!(m.stat_log("/l").unwrap().chunks.len(), 1);
        let orphans: Vec<ChunkHandle> = fake
            .st()
            .creates
            .iter()
            .map(|c| c.1.handle)
            .filter(|h| *h != loc.handle)
            .collect();
        for a in ["a:1", "b:1", "c:1"] {
            let mut reports = vec![report(loc.handle, ChunkVersion(1))];
            reports.extend(orphans.iter().map(|h| report(*h, ChunkVersion(1))));
            let (delete, reregister) = m.heartbeat(a, &reports).await.unwrap();
            assert!(!reregister);
            assert!(!delete.contains(&loc.handle));
            assert!(delete.iter().all(|h| orphans.contains(h)));
        }
        let (_, reregister) = m.heartbeat("zz:1", &[]).await.unwrap();
        assert!(reregister, "an unknown chunkserver must register");
        m.stop().await;
    }

    // Too few live chunkservers: UNAVAILABLE with both counts while chunkservers may still be
    // registering (the master's first dead-after period) for a new log; for a chunk of an
    // existing one whose CreateReplica failed, the failure.
    #[tokio::test]
    async fn too_few_chunkservers() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1"]).await;
        let err = m.create_log("/l", 0, 0).await.unwrap_err();
        assert_eq!(err.to_string(), "need 3 live chunkservers, have 2");
        m.create_log("/two", 2, 0).await.unwrap();
        fake.st().broken.insert("b:1".into());
        // Once the chunkserver whose CreateReplica failed is left out, too few remain: the
        // caller is told the failure itself, not only the count (a chunkserver out of file
        // descriptors must not read as "need 2 live chunkservers, have 1").
        let err = m.open_chunk("/two").await.unwrap_err().to_string();
        assert!(
            err.starts_with("could not create chunk ") && err.ends_with(" on b:1: broken"),
            "{err}"
        );
        m.stop().await;
    }

    // A chunkserver that reported less free space than a chunk plus the margin gets no new
    // chunk; when too few have room, the error says so.
    #[tokio::test]
    async fn full_chunkservers_get_no_new_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1", "c:1", "d:1"]).await;
        let chunk = 1u64 << 20;
        let need = chunk + m.config.min_free_bytes;
        m.note_free_bytes("a:1", need);
        m.note_free_bytes("c:1", 0);
        m.note_free_bytes("d:1", need - 1);
        for i in 0..8 {
            let path = format!("/l{i}");
            m.create_log(&path, 3, chunk).await.unwrap();
            let loc = m.open_chunk(&path).await.unwrap();
            let mut got: Vec<&str> = std::iter::once(&loc.primary)
                .chain(&loc.secondaries)
                .map(String::as_str)
                .collect();
            got.sort();
            assert_eq!(got, vec!["a:1", "b:1", "c:1"], "d:1 is full");
        }
        m.note_free_bytes("b:1", 1);
        m.create_log("/full", 3, chunk).await.unwrap();
        let err = m.open_chunk("/full").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "need 3 live chunkservers with at least {need} free bytes, have 2 (2 more are too full)"
            )
        );
        m.stop().await;
    }

    // An open chunk whose replicas were never created (the master crashed after logging the
    // allocation): once its chunkservers are back and all say "absent", it is dropped and a new
    // chunk takes its index.
    #[tokio::test]
    async fn allocation_without_replicas_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1", "c:1"]).await;
        m.create_log("/l", 3, 8192).await.unwrap();
        let lost = m.open_chunk("/l").await.unwrap();
        m.stop().await;
        drop(m);
        fake.st().replicas.clear();
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1", "c:1"]).await;
        let fresh = m.open_chunk("/l").await.unwrap();
        assert_ne!(fresh.handle, lost.handle);
        assert_eq!(fresh.index, 0);
        assert_eq!(m.stat_log("/l").unwrap().chunks.len(), 1);
        m.stop().await;
    }

    // Proves (simulator seed 8851): an open chunk created on one secondary only (the master
    // died before the others and the primary) whose one replica then failed on an I/O error at
    // its header is dropped and replaced, instead of every seal retrying it forever and the log
    // taking no append and no replay again. A failed replica with bytes past its header keeps
    // the chunk (it may hold acknowledged records): the seal is retried.
    #[tokio::test]
    async fn open_chunk_failed_at_its_header_and_absent_elsewhere_is_replaced() {
        for (length, replaced) in [(32, true), (4096, false)] {
            let dir = tempfile::tempdir().unwrap();
            let fake = Arc::new(Fake::default());
            let m = start(dir.path(), &fake).await;
            register(&m, &["a:1", "b:1", "c:1"]).await;
            m.create_log("/l", 3, 8192).await.unwrap();
            let stuck = m.open_chunk("/l").await.unwrap();
            m.stop().await;
            drop(m);
            let lone = stuck.secondaries[0].clone();
            {
                let mut st = fake.st();
                st.replicas.clear();
                st.replicas.insert((lone.clone(), stuck.handle));
                st.failed.insert(lone.clone());
            }
            let m = start(dir.path(), &fake).await;
            register(&m, &["a:1", "b:1", "c:1"]).await;
            let failed = ReplicaReport {
                length: ChunkOffset(length),
                failed: true,
                ..report(stuck.handle, stuck.version)
            };
            m.register(&lone, &[failed]).await.unwrap();
            let sealed = m
                .seal_chunk("/l", stuck.handle, stuck.version, "test")
                .await;
            if replaced {
                let fresh = sealed.expect("the chunk is replaced");
                assert_ne!(fresh.handle, stuck.handle);
                assert_eq!(fresh.index, 0);
                assert_eq!(m.stat_log("/l").unwrap().chunks.len(), 1);
            } else {
                let e = sealed.expect_err("a failed replica with data keeps the chunk");
                assert!(matches!(e, Error::FenceUnanswered { .. }), "{e:?}");
                assert_eq!(m.stat_log("/l").unwrap().chunks[0].handle, stuck.handle);
            }
            m.stop().await;
        }
    }
}
