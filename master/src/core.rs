//! The master's behaviour, free of gRPC types: namespace operations, allocation, the seal path,
//! registrations and heartbeats. `service.rs` converts requests and answers at the boundary and
//! implements [`ChunkserverApi`] with real RPCs; tests use fakes.
//!
//! Locking: one `std::sync::Mutex` guards metadata, the operation-log queue and the chunkserver
//! table, never held across an `.await`. Entries are applied and queued under it, so memory and
//! log agree on order; the RPC is answered only after its entry is durable. Per log, an async
//! mutex serialises allocation and sealing (held across the chunkserver RPCs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_record::ChunkHandle;
use cairn_record::limits::{
    CHUNK_BYTES_DEFAULT, CHUNK_HEADER_BYTES, CHUNK_VERSION_MAX, check_chunk_bytes,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::heartbeat::{ReplicaReport, Servers};
use crate::limits::{
    ALLOCATION_ATTEMPTS_MAX, REPLICATION_MAX, REPLICATION_MIN, STAT_LOG_PAGE_BYTES_MAX,
    STAT_LOG_PAGE_CHUNKS_MAX, STAT_LOG_UNPAGED_BYTES_MAX, WRITER_EPOCHS_MAX,
};
use crate::meta::{ChunkMeta, ChunkState, Entry, LogMeta, Metadata, WriterMark, merge_marks};
use crate::namespace::check_path;
use crate::oplog::{Committer, OplogQueue};
use crate::placement::{Candidate, place};
use crate::repair::{CopyError, RepairStats, good_replicas, is_garbage};
use crate::seal::{FenceOutcome, SealPlan};

/// `CreateReplica` as the master sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateReplica {
    pub(crate) handle: ChunkHandle,
    pub(crate) version: u64,
    pub(crate) capacity: u64,
    pub(crate) primary: bool,
    pub(crate) secondaries: Vec<String>,
    pub(crate) writer_marks: Vec<WriterMark>,
    /// Primary only: the epochs of the log's resumed writers.
    pub(crate) writer_epochs: BTreeMap<u64, u64>,
}

/// A replica's answer to `Fence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fenced {
    pub(crate) length: u64,
    pub(crate) version: u64,
    pub(crate) sealed: bool,
    pub(crate) marks: Vec<WriterMark>,
    /// The commit offset the marks cover (`FenceResponse.marks_through`).
    pub(crate) marks_through: u64,
}

/// Why a chunkserver RPC failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RpcError {
    /// The chunkserver has no such replica.
    NotFound,
    /// Anything else (unreachable, timeout, refused).
    Other(String),
}

/// The chunkserver RPCs the master makes. Each call is bounded by the master's RPC timeout.
pub(crate) trait ChunkserverApi: Send + Sync + 'static {
    fn create_replica(
        &self,
        address: String,
        request: CreateReplica,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
    fn fence(
        &self,
        address: String,
        handle: ChunkHandle,
        new_version: u64,
    ) -> impl Future<Output = Result<Fenced, RpcError>> + Send;
    fn seal(
        &self,
        address: String,
        handle: ChunkHandle,
        version: u64,
        length: u64,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// Asks `address` to bring its replica to the sealed `job` by copying from `job.source`;
    /// returns the bytes copied. Bounded by `timeout`, not the RPC timeout (copies are long).
    /// [`CopyError::SourceCorrupt`] when the target found the source's bytes bad.
    fn replicate(
        &self,
        address: String,
        job: Replicate,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<u64, CopyError>> + Send;
    /// Asks `address` to delete its replica of `handle` (a replica marked corrupt by a checker,
    /// before a repair copies the chunk onto the same chunkserver).
    fn delete_replica(
        &self,
        address: String,
        handle: ChunkHandle,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
}

/// `Replicate` as the master sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Replicate {
    pub(crate) handle: ChunkHandle,
    pub(crate) version: u64,
    pub(crate) length: u64,
    pub(crate) capacity: u64,
    pub(crate) source: String,
}

/// A log as `CreateLog`, `ListLogs` and `StatLog` return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogInfo {
    pub(crate) path: String,
    pub(crate) replication: u32,
    /// Fewest replicas a new chunk opens on.
    pub(crate) min_replicas: u32,
    pub(crate) chunk_bytes: u64,
    pub(crate) chunk_count: u32,
    /// Filled by `StatLog` only.
    pub(crate) chunks: Vec<ChunkInfo>,
}

/// A chunk as `StatLog` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkInfo {
    pub(crate) index: u32,
    pub(crate) handle: ChunkHandle,
    pub(crate) state: ChunkState,
    /// Sealed: the sealed length. Open: the largest length a replica reported (32 if none).
    pub(crate) length: u64,
    pub(crate) version: u64,
    /// Live chunkservers reporting a replica at the chunk's version.
    pub(crate) replicas: Vec<String>,
    /// Open chunks: the fixed primary. Empty once sealed.
    pub(crate) primary: String,
    /// Sealed chunks: 0, or the end of a lost tail `[length, lost_end)` (see [`ChunkMeta`]).
    pub(crate) lost_end: u64,
}

/// Where to append: `OpenChunk` and `SealChunk` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) path: String,
    pub(crate) index: u32,
    pub(crate) handle: ChunkHandle,
    pub(crate) version: u64,
    pub(crate) primary: String,
    pub(crate) secondaries: Vec<String>,
    pub(crate) chunk_bytes: u64,
}

/// Serialises the seals and allocations of one log (held across chunkserver RPCs).
pub(crate) type LogLock = Arc<tokio::sync::Mutex<()>>;

/// The version every chunk is allocated at. An open chunk at a higher version had a seal begin
/// (the version is logged before any fence) that did not finish.
pub(crate) const FIRST_VERSION: u64 = 1;

pub(crate) struct Inner {
    pub(crate) meta: Metadata,
    queue: OplogQueue,
    pub(crate) servers: Servers,
    /// One per existing log; replaced when a log is deleted and created again, so a caller
    /// holding an old one can tell (`Arc::ptr_eq`).
    log_locks: HashMap<String, LogLock>,
    /// Handles whose removal (deleted log, abandoned chunk) is not durable yet: heartbeats must
    /// not tell chunkservers to delete them, in case the master crashes and they come back.
    dying: HashSet<ChunkHandle>,
    /// Copies running (repair.rs): chunk → target chunkserver.
    pub(crate) repairs: HashMap<ChunkHandle, String>,
    /// Chunks with a task of the repair loop running on them: a seal of an orphaned open chunk,
    /// a salvage, or a fence of replicas that missed a seal (one task per chunk at a time).
    pub(crate) resealing: HashSet<ChunkHandle>,
    rng: SplitMix64,
}

impl Inner {
    /// Applies and queues an entry the caller has validated. Returns its sequence.
    pub(crate) fn record(&mut self, entry: Entry) -> u64 {
        let gone = self
            .meta
            .apply(&entry)
            .expect("callers validate entries against the metadata before recording them");
        self.dying.extend(gone);
        self.queue.push(&entry)
    }

    /// Checks that `lock` is still the lock of the live log `path` (it was not deleted, or
    /// deleted and created again, while the caller waited).
    pub(crate) fn check_log(&self, path: &str, lock: &LogLock) -> Result<&LogMeta> {
        match (self.log_locks.get(path), self.meta.logs.get(path)) {
            (Some(current), Some(log)) if Arc::ptr_eq(current, lock) => Ok(log),
            _ => Err(Error::LogNotFound {
                path: path.to_owned(),
            }),
        }
    }

    /// A fresh random handle: non-zero, unknown to the metadata and to every chunkserver.
    fn new_handle(&mut self) -> ChunkHandle {
        loop {
            let h = ChunkHandle(self.rng.next_u64());
            if h.0 != 0
                && !self.meta.chunks.contains_key(&h)
                && !self.dying.contains(&h)
                && !self.servers.anyone_has(h)
            {
                return h;
            }
        }
    }
}

/// The master.
pub(crate) struct MasterCore<C> {
    config: Config,
    api: Arc<C>,
    inner: Arc<Mutex<Inner>>,
    committer: Committer,
    repair_stats: RepairStats,
    /// When this process started: servers that never registered since count as dead only
    /// after the dead-after time has passed.
    started: Instant,
}

/// What `current_or_allocate` found.
enum Current {
    Location(Location),
    Allocate,
    /// The open chunk has no live replica reporting it, but some of its chunkservers are live:
    /// let a seal find out what they hold.
    Reseal(ChunkHandle, u64),
}

impl<C: ChunkserverApi> MasterCore<C> {
    /// A master over recovered metadata whose operation log is `file`, through `last_sequence`.
    pub(crate) fn new(
        config: Config,
        api: C,
        meta: Metadata,
        last_sequence: u64,
        file: std::fs::File,
        seed: u64,
    ) -> MasterCore<C> {
        let log_locks = meta
            .logs
            .keys()
            .map(|p| (p.clone(), LogLock::default()))
            .collect();
        let inner = Arc::new(Mutex::new(Inner {
            meta,
            queue: OplogQueue::new(last_sequence),
            servers: Servers::default(),
            log_locks,
            dying: HashSet::new(),
            repairs: HashMap::new(),
            resealing: HashSet::new(),
            // Mixing in the log position keeps a fixed seed (tests, simulations) from handing
            // out the handles of a previous run again.
            rng: SplitMix64(seed ^ last_sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }));
        let for_committer = inner.clone();
        let every = config.checkpoint_every_entries;
        let committer =
            Committer::spawn(config.data_dir.clone(), file, last_sequence, move |force| {
                let mut g = for_committer.lock().unwrap_or_else(|p| p.into_inner());
                let Inner { meta, queue, .. } = &mut *g;
                queue.take(meta, every, force)
            });
        MasterCore {
            config,
            api: Arc::new(api),
            inner,
            committer,
            repair_stats: RepairStats::default(),
            started: Instant::now(),
        }
    }

    /// When this master process started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The settings.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The chunkserver RPCs.
    pub(crate) fn api(&self) -> &C {
        &self.api
    }

    /// The metadata lock (see the module doc); never held across an `.await`.
    pub(crate) fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        self.lock()
    }

    /// Counters of the repair loop.
    pub(crate) fn repair_stats(&self) -> &RepairStats {
        &self.repair_stats
    }

    /// A random seed for handles, different in every process.
    pub(crate) fn random_seed() -> u64 {
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
    }

    /// Writes everything queued and a final checkpoint.
    pub(crate) async fn close(&self) {
        self.committer.close().await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug already reported; the state is still the one
        // every entry was applied to.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails if the operation log can no longer be written.
    pub(crate) fn check_writable(&self) -> Result<()> {
        match self.committer.failure() {
            Some(reason) => Err(Error::OplogFailed { reason }),
            None => Ok(()),
        }
    }

    /// Waits until the operation-log entry `sequence` is durable.
    pub(crate) async fn commit(&self, sequence: u64) -> Result<()> {
        self.committer.wait(sequence).await
    }

    /// Once the removal of `handles` is durable they may be deleted from chunkservers.
    fn forget(&self, handles: &[ChunkHandle]) {
        let mut g = self.lock();
        for h in handles {
            g.dying.remove(h);
        }
    }

    /// The heartbeat period chunkservers are asked to keep, in milliseconds.
    pub(crate) fn heartbeat_ms(&self) -> u32 {
        self.config.heartbeat.as_millis() as u32
    }

    /// `CreateLog` with every new chunk needing its full replication factor (tests).
    #[cfg(test)]
    pub(crate) async fn create_log(
        &self,
        path: &str,
        replication: u32,
        chunk_bytes: u64,
    ) -> Result<LogInfo> {
        self.create_log_with(path, replication, 0, chunk_bytes)
            .await
    }

    /// `CreateLog`: `replication` 0 is the default factor, `min_replicas` 0 the factor. Refused
    /// (`ClusterTooSmall`) when fewer than `min_replicas` chunkservers are live, or fewer than
    /// `replication` registered: no chunk of it could be opened or ever fully replicated.
    pub(crate) async fn create_log_with(
        &self,
        path: &str,
        replication: u32,
        min_replicas: u32,
        chunk_bytes: u64,
    ) -> Result<LogInfo> {
        check_path(path)?;
        let replication = match replication {
            0 => self.config.default_replication,
            r => r,
        };
        if !(REPLICATION_MIN..=REPLICATION_MAX).contains(&replication) {
            return Err(Error::BadReplication { replication });
        }
        let min_replicas = match min_replicas {
            0 => replication,
            k => k,
        };
        if !(1..=replication).contains(&min_replicas) {
            return Err(Error::BadMinReplicas {
                min_replicas,
                replication,
            });
        }
        let chunk_bytes = match chunk_bytes {
            0 => CHUNK_BYTES_DEFAULT,
            b => b,
        };
        check_chunk_bytes(chunk_bytes).map_err(|source| Error::BadChunkBytes { source })?;
        self.check_writable()?;
        let sequence = {
            let mut g = self.lock();
            if g.meta.logs.contains_key(path) {
                return Err(Error::LogExists {
                    path: path.to_owned(),
                });
            }
            self.check_cluster_size(&g, path, replication, min_replicas, true)?;
            g.log_locks.insert(path.to_owned(), LogLock::default());
            g.record(Entry::CreateLog {
                path: path.to_owned(),
                replication,
                min_replicas,
                chunk_bytes,
            })
        };
        self.commit(sequence).await?;
        info!(
            log = path,
            replication, min_replicas, chunk_bytes, "log created"
        );
        Ok(LogInfo {
            path: path.to_owned(),
            replication,
            min_replicas,
            chunk_bytes,
            chunk_count: 0,
            chunks: Vec::new(),
        })
    }

    /// Whether the cluster is big enough for a log of `replication` with `min_replicas`. To
    /// create it: at least `min_replicas` live chunkservers and `replication` registered ones.
    /// To allocate a chunk (`creating` false): at least `min_replicas` registered ones; fewer
    /// live ones is a passing outage, answered by placement with the retryable
    /// `NotEnoughChunkservers`. Within the first dead-after period of this master, chunkservers
    /// may not have registered yet: then the answer is that retryable error too.
    fn check_cluster_size(
        &self,
        g: &Inner,
        path: &str,
        replication: u32,
        min_replicas: u32,
        creating: bool,
    ) -> Result<()> {
        let now = Instant::now();
        let live = g.servers.live(now, self.config.dead_after).len();
        let known = g.servers.known_count();
        let problem = if creating && (min_replicas as usize) > live {
            Some(("min replicas", min_replicas, "live", live))
        } else if (min_replicas as usize) > known {
            Some(("min replicas", min_replicas, "registered", known))
        } else if creating && (replication as usize) > known {
            Some(("replication", replication, "registered", known))
        } else {
            None
        };
        let Some((what, need, which, have)) = problem else {
            return Ok(());
        };
        if now.saturating_duration_since(self.started) < self.config.dead_after {
            return Err(Error::NotEnoughChunkservers {
                need: need as usize,
                have,
            });
        }
        let what = if min_replicas == replication {
            "replication"
        } else {
            what
        };
        Err(Error::ClusterTooSmall {
            path: path.to_owned(),
            what,
            need,
            which,
            have,
        })
    }

    /// `DeleteLog`. Its replicas are deleted through heartbeat replies once the deletion is
    /// durable.
    pub(crate) async fn delete_log(&self, path: &str) -> Result<()> {
        self.check_writable()?;
        let (sequence, gone) = {
            let mut g = self.lock();
            let Some(log) = g.meta.logs.get(path) else {
                return Err(Error::LogNotFound {
                    path: path.to_owned(),
                });
            };
            let gone = log.chunks.clone();
            g.log_locks.remove(path);
            let sequence = g.record(Entry::DeleteLog {
                path: path.to_owned(),
            });
            (sequence, gone)
        };
        self.commit(sequence).await?;
        self.forget(&gone);
        info!(log = path, chunks = gone.len(), "log deleted");
        Ok(())
    }

    /// `ListLogs`: logs whose path starts with `prefix`, without chunks.
    pub(crate) fn list_logs(&self, prefix: &str) -> Vec<LogInfo> {
        let g = self.lock();
        g.meta
            .logs
            .range(prefix.to_owned()..)
            .take_while(|(p, _)| p.starts_with(prefix))
            .map(|(_, log)| log_info(log))
            .collect()
    }

    /// `StatLog` of the whole log, as a request without paging fields (tests).
    #[cfg(test)]
    pub(crate) fn stat_log(&self, path: &str) -> Result<LogInfo> {
        self.stat_log_page(path, 0, None)
    }

    /// `StatLog`: the chunks from index `first`, at most `max` of them (0: the page limit)
    /// within the page limits (`STAT_LOG_PAGE_*`), at least one if any remain. `max` absent
    /// (a client that predates paging) asks for the whole log: `StatTooLarge` if it does not fit
    /// in one answer, rather than a list that silently ends early.
    pub(crate) fn stat_log_page(
        &self,
        path: &str,
        first: u32,
        max: Option<u32>,
    ) -> Result<LogInfo> {
        let g = self.lock();
        let log = g.meta.logs.get(path).ok_or_else(|| Error::LogNotFound {
            path: path.to_owned(),
        })?;
        let (count_max, bytes_max) = match max {
            None => (usize::MAX, STAT_LOG_UNPAGED_BYTES_MAX),
            Some(0) => (STAT_LOG_PAGE_CHUNKS_MAX, STAT_LOG_PAGE_BYTES_MAX),
            Some(n) => (
                (n as usize).min(STAT_LOG_PAGE_CHUNKS_MAX),
                STAT_LOG_PAGE_BYTES_MAX,
            ),
        };
        let now = Instant::now();
        let mut info = log_info(log);
        let mut bytes = 0usize;
        for h in log.chunks.iter().skip(first as usize) {
            if info.chunks.len() >= count_max {
                break;
            }
            let c = self.chunk_info(&g, &g.meta.chunks[h], now);
            bytes = bytes.saturating_add(chunk_info_bytes(&c));
            if bytes > bytes_max && !info.chunks.is_empty() {
                if max.is_none() {
                    return Err(Error::StatTooLarge {
                        path: path.to_owned(),
                        chunks: log.chunks.len(),
                    });
                }
                break;
            }
            info.chunks.push(c);
        }
        Ok(info)
    }

    fn chunk_info(&self, g: &Inner, c: &ChunkMeta, now: Instant) -> ChunkInfo {
        let reports = g.servers.replicas_of(c.handle);
        let replicas = match c.state {
            // Only good replicas are read sources (repair.rs).
            ChunkState::Sealed => good_replicas(&g.servers, c, now, self.config.dead_after),
            ChunkState::Open => reports
                .iter()
                .filter(|(a, r)| {
                    r.version == c.version
                        && !r.failed
                        && !r.corrupt
                        && g.servers.is_live(a, now, self.config.dead_after)
                })
                .map(|(a, _)| a.clone())
                .collect(),
        };
        let length = match c.state {
            ChunkState::Sealed => c.length,
            ChunkState::Open => reports
                .iter()
                .map(|(_, r)| r.length)
                .max()
                .unwrap_or(CHUNK_HEADER_BYTES as u64),
        };
        ChunkInfo {
            index: c.index,
            handle: c.handle,
            state: c.state,
            length,
            version: c.version,
            replicas,
            primary: c.primary.clone(),
            lost_end: c.lost_end,
        }
    }

    /// The lock that serialises seals and allocations of the log at `path`.
    pub(crate) fn log_lock(&self, path: &str) -> Result<LogLock> {
        self.lock()
            .log_locks
            .get(path)
            .cloned()
            .ok_or_else(|| Error::LogNotFound {
                path: path.to_owned(),
            })
    }

    /// `OpenChunk`: the log's open chunk, allocating one if the log has none.
    pub(crate) async fn open_chunk(&self, path: &str) -> Result<Location> {
        let lock = self.log_lock(path)?;
        let _serial = lock.lock().await;
        self.current_or_allocate(path, &lock, &[]).await
    }

    /// `SealChunk`: seals `handle` at `version` and returns the log's next open chunk. A request
    /// for a chunk that is sealed already, is not the open one, or names an older version just
    /// gets the current open chunk, so many clients asking at once share one seal.
    pub(crate) async fn seal_chunk(
        &self,
        path: &str,
        handle: ChunkHandle,
        version: u64,
        reason: &str,
    ) -> Result<Location> {
        let lock = self.log_lock(path)?;
        let _serial = lock.lock().await;
        self.seal_locked(path, &lock, handle, version, reason).await
    }

    /// `ResumeWriter`: the next epoch of `writer` in the log at `path`, logged before it is
    /// returned, so no epoch is ever handed out twice; then the log's open chunk is sealed, so
    /// that every later append goes to a primary that knows the epoch (ARCHITECTURE.md,
    /// "Writers and epochs").
    pub(crate) async fn resume_writer(&self, path: &str, writer: u64) -> Result<u64> {
        if writer == 0 {
            return Err(Error::InvalidArgument {
                reason: "writer id 0 is reserved (padding frames carry it)".to_owned(),
            });
        }
        let lock = self.log_lock(path)?;
        let _serial = lock.lock().await;
        self.check_writable()?;
        let (sequence, epoch) = {
            let mut g = self.lock();
            let log = g.check_log(path, &lock)?;
            let current = log.writer_epochs.get(&writer).copied().unwrap_or(0);
            if current == 0 && log.writer_epochs.len() >= WRITER_EPOCHS_MAX {
                return Err(Error::TooManyWriters {
                    path: path.to_owned(),
                    max: WRITER_EPOCHS_MAX,
                });
            }
            let epoch = current
                .checked_add(1)
                .ok_or_else(|| Error::InvalidArgument {
                    reason: format!("writer {writer:016x} has used every epoch"),
                })?;
            let sequence = g.record(Entry::WriterEpoch {
                path: path.to_owned(),
                writer,
                epoch,
            });
            (sequence, epoch)
        };
        self.commit(sequence).await?;
        info!(log = path, writer = %format!("{writer:016x}"), epoch, "writer resumed");
        // The open chunk's primary does not know the new epoch until the new incarnation
        // appends there, so an older one could still be acknowledged in it meanwhile. Sealing
        // it moves the log to a chunk whose primary is told every epoch at creation: the older
        // incarnation is fenced from the moment this call returns. Resumes are rare (process
        // restarts), so one seal each is cheap.
        let open = {
            let g = self.lock();
            g.meta.open_chunk(path).map(|c| (c.handle, c.version))
        };
        if let Some((handle, version)) = open {
            self.seal_locked(path, &lock, handle, version, "writer resumed")
                .await?;
        }
        Ok(epoch)
    }

    /// The open chunk's location if it can take appends; allocates when the log has none.
    /// Called with the log's lock held.
    async fn current_or_allocate(
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

    /// The seal path (ARCHITECTURE.md, "Seal"). Called with the log's lock held.
    async fn seal_locked(
        &self,
        path: &str,
        lock: &LogLock,
        handle: ChunkHandle,
        version: u64,
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
                    for (a, _) in g.servers.replicas_of(handle) {
                        if !targets.contains(&a) {
                            targets.push(a);
                        }
                    }
                    // 2. The new version is durable before any replica sees it.
                    let sequence = g.record(Entry::Version {
                        handle,
                        version: new_version,
                    });
                    Some((sequence, new_version, targets))
                }
                _ => None,
            }
        };
        let Some((sequence, new_version, targets)) = start else {
            return Box::pin(self.current_or_allocate(path, lock, &[])).await;
        };
        self.commit(sequence).await?;
        info!(log = path, chunk = %handle, version = new_version, reason, "sealing chunk");

        // 3. Fence every known replica in parallel.
        let outcomes = self.fence_all(handle, new_version, &targets).await;
        match crate::seal::plan(&outcomes) {
            SealPlan::Unavailable => Err(Error::FenceUnanswered { handle }),
            SealPlan::Abandon => {
                self.abandon(path, lock, handle).await?;
                warn!(log = path, chunk = %handle, "no replica of the open chunk exists; dropped it");
                self.allocate(path, lock, &[]).await
            }
            SealPlan::Seal {
                length,
                replicas,
                marks,
            } => {
                // 4-5. Seal at the smallest durable length, then log the seal.
                let sealed = self.seal_all(handle, new_version, length, &replicas).await;
                if sealed.is_empty() {
                    return Err(Error::SealUnanswered { handle });
                }
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
                info!(
                    log = path,
                    chunk = %handle,
                    version = new_version,
                    length,
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

    /// Drops the open chunk `handle`, which provably holds no data, from its log.
    async fn abandon(&self, path: &str, lock: &LogLock, handle: ChunkHandle) -> Result<()> {
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

    /// Fences `handle` with `new_version` on each of `targets` in parallel, each call bounded by
    /// the RPC timeout; the outcomes are sorted by address.
    pub(crate) async fn fence_all(
        &self,
        handle: ChunkHandle,
        new_version: u64,
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
                    Ok(Ok(f)) if f.version == 0 || f.version >= new_version => FenceOutcome::Fenced {
                        address,
                        length: f.length,
                        sealed: f.sealed,
                        marks: f.marks,
                        marks_through: f.marks_through,
                    },
                    Ok(Ok(f)) => {
                        warn!(chunk = %handle, %address, version = f.version, "fence answered with an old version");
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
        version: u64,
        length: u64,
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

    /// Allocates the log's next chunk (ARCHITECTURE.md, "Chunk allocation"): logged first, then
    /// `CreateReplica` on the secondaries, then on the primary with the inherited writer marks.
    /// A chunkserver that fails is left out of the next attempt. Called with the log's lock held.
    async fn allocate(&self, path: &str, lock: &LogLock, preferred: &[String]) -> Result<Location> {
        let mut excluded: HashSet<String> = HashSet::new();
        let mut last_error = None;
        for _ in 0..ALLOCATION_ATTEMPTS_MAX {
            self.check_writable()?;
            let (sequence, loc, marks) = {
                let mut g = self.lock();
                let log = g.check_log(path, lock)?;
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
                let replicas = match place(
                    candidates,
                    replication as usize,
                    min_replicas as usize,
                    need_free,
                ) {
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
                                length: CHUNK_HEADER_BYTES as u64,
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
        (marks, epochs): (Vec<WriterMark>, BTreeMap<u64, u64>),
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
        self.create_one(loc.primary.clone(), request(true)).await
    }

    fn create_one(
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
                "asking chunkserver to delete unknown replicas"
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
            if chunk.state == ChunkState::Sealed && !crate::repair::is_good(chunk, r) {
                let good = good_replicas(&g.servers, chunk, Instant::now(), self.config.dead_after);
                let replication = g
                    .meta
                    .logs
                    .get(&chunk.log)
                    .map_or(u32::MAX, |l| l.replication);
                let copying_here = g.repairs.get(&r.handle).is_some_and(|t| t == address);
                if is_garbage(chunk, r, good.len(), replication, copying_here) {
                    info!(chunk = %r.handle, chunkserver = address, version = r.version, length = r.length, sealed = r.sealed, corrupt = r.corrupt, failed = r.failed, "replica not good and the chunk has enough good ones: deleting it");
                    delete.push(r.handle);
                    continue;
                }
            }
            if r.version > chunk.version {
                warn!(chunk = %r.handle, chunkserver = address, reported = r.version, master = chunk.version, "replica reports a version this master never issued (forged or broken); ignoring it");
            }
        }
        (delete, None)
    }
}

/// The version after `version`, refused (never wrapped) past [`CHUNK_VERSION_MAX`].
pub(crate) fn next_version(handle: ChunkHandle, version: u64) -> Result<u64> {
    match version.checked_add(1) {
        Some(v) if v <= CHUNK_VERSION_MAX => Ok(v),
        _ => Err(Error::VersionExhausted { handle, version }),
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

fn outcome_address(o: &FenceOutcome) -> &str {
    match o {
        FenceOutcome::Fenced { address, .. }
        | FenceOutcome::Absent { address }
        | FenceOutcome::Failed { address } => address,
    }
}

fn log_info(log: &LogMeta) -> LogInfo {
    LogInfo {
        path: log.path.clone(),
        replication: log.replication,
        min_replicas: log.min_replicas(),
        chunk_bytes: log.chunk_bytes,
        chunk_count: log.chunks.len() as u32,
        chunks: Vec::new(),
    }
}

/// An upper estimate of a chunk's encoded size in a `StatLog` answer: its fixed fields (tags,
/// varints at their longest) and its addresses with their framing.
fn chunk_info_bytes(c: &ChunkInfo) -> usize {
    const FIXED: usize = 64;
    FIXED + c.primary.len() + c.replicas.iter().map(|a| a.len() + 4).sum::<usize>()
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

/// A small seeded generator for handles and placement tie-breaks (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// In-memory chunkservers: remember created replicas, answer fences with a set length.
    #[derive(Default)]
    struct Fake {
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        replicas: HashSet<(String, ChunkHandle)>,
        /// Durable length each chunkserver reports when fenced (default 32).
        lengths: HashMap<String, u64>,
        /// Chunkservers whose CreateReplica fails.
        broken: HashSet<String>,
        creates: Vec<(String, CreateReplica)>,
        fences: Vec<(String, ChunkHandle, u64)>,
        seals: Vec<(String, ChunkHandle, u64, u64)>,
        replicates: Vec<(String, Replicate)>,
        deletes: Vec<(String, ChunkHandle)>,
    }

    impl Fake {
        fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap()
        }
    }

    impl ChunkserverApi for Arc<Fake> {
        async fn create_replica(&self, address: String, r: CreateReplica) -> Result<(), RpcError> {
            let mut s = self.st();
            if s.broken.contains(&address) {
                return Err(RpcError::Other("broken".into()));
            }
            s.replicas.insert((address.clone(), r.handle));
            s.creates.push((address, r));
            Ok(())
        }

        async fn fence(
            &self,
            address: String,
            handle: ChunkHandle,
            new_version: u64,
        ) -> Result<Fenced, RpcError> {
            // Let concurrent seal requests pile up behind the per-log lock.
            tokio::task::yield_now().await;
            let mut s = self.st();
            if !s.replicas.contains(&(address.clone(), handle)) {
                return Err(RpcError::NotFound);
            }
            s.fences.push((address.clone(), handle, new_version));
            let length = s.lengths.get(&address).copied().unwrap_or(32);
            Ok(Fenced {
                length,
                version: new_version,
                sealed: false,
                marks: vec![WriterMark {
                    writer: 42,
                    sequence: length,
                    frame_crc: 0,
                }],
                marks_through: length,
            })
        }

        async fn seal(
            &self,
            address: String,
            handle: ChunkHandle,
            version: u64,
            length: u64,
        ) -> Result<(), RpcError> {
            self.st().seals.push((address, handle, version, length));
            Ok(())
        }

        async fn replicate(
            &self,
            address: String,
            job: Replicate,
            _timeout: std::time::Duration,
        ) -> Result<u64, CopyError> {
            let mut s = self.st();
            if s.broken.contains(&address) {
                return Err(RpcError::Other("broken".into()).into());
            }
            s.replicas.insert((address.clone(), job.handle));
            let copied = job.length;
            s.replicates.push((address, job));
            Ok(copied)
        }

        async fn delete_replica(
            &self,
            address: String,
            handle: ChunkHandle,
        ) -> Result<(), RpcError> {
            let mut s = self.st();
            s.replicas.remove(&(address.clone(), handle));
            s.deletes.push((address, handle));
            Ok(())
        }
    }

    fn start(dir: &Path, fake: &Arc<Fake>) -> Arc<MasterCore<Arc<Fake>>> {
        let (meta, last, file) = crate::oplog::open(dir).unwrap();
        Arc::new(MasterCore::new(
            Config::new(dir),
            fake.clone(),
            meta,
            last,
            file,
            7,
        ))
    }

    async fn register(m: &MasterCore<Arc<Fake>>, addresses: &[&str]) {
        for a in addresses {
            m.register(a, &[]).await.unwrap();
        }
    }

    fn report(handle: ChunkHandle, version: u64) -> ReplicaReport {
        ReplicaReport {
            handle,
            version,
            length: 32,
            sealed: false,
            failed: false,
            corrupt: false,
            primary: false,
        }
    }

    // Proves: ResumeWriter hands out growing epochs per (log, writer), logged (they survive a
    // restart), refuses writer 0, and seals the open chunk so that the next chunk's primary is
    // created knowing the epoch (an older incarnation is fenced at once).
    #[tokio::test]
    async fn resume_writer_logs_an_epoch_and_rolls_the_open_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        {
            let m = start(dir.path(), &fake);
            register(&m, &["a:1", "b:1", "c:1"]).await;
            m.create_log("/l", 3, 8192).await.unwrap();
            assert!(m.resume_writer("/l", 0).await.is_err());
            assert!(matches!(
                m.resume_writer("/nope", 7).await,
                Err(Error::LogNotFound { .. })
            ));
            let first = m.open_chunk("/l").await.unwrap();
            assert_eq!(m.resume_writer("/l", 7).await.unwrap(), 1);
            let info = m.stat_log("/l").unwrap();
            assert_eq!(info.chunks[0].state, ChunkState::Sealed);
            let next = m.open_chunk("/l").await.unwrap();
            assert_ne!(next.handle, first.handle);
            let created = fake.st().creates.clone();
            let primary = created
                .iter()
                .find(|(a, c)| c.handle == next.handle && c.primary && *a == next.primary)
                .expect("the next primary was created");
            assert_eq!(primary.1.writer_epochs, BTreeMap::from([(7, 1)]));
            assert_eq!(m.resume_writer("/l", 7).await.unwrap(), 2);
            assert_eq!(m.resume_writer("/l", 8).await.unwrap(), 1);
            m.close().await;
        }
        let m = start(dir.path(), &fake);
        let epochs = m.lock().meta.logs["/l"].writer_epochs.clone();
        assert_eq!(epochs, BTreeMap::from([(7, 2), (8, 1)]));
        m.close().await;
    }

    // Many clients sealing the same full chunk at once: one fence round, one seal at the
    // longest durable length (on the one replica that holds it; the repair loop brings the
    // others up), one new chunk, and every caller gets that chunk. Sealing again
    // with the old version is answered with the current chunk and fences nothing.
    #[tokio::test]
    async fn concurrent_seals_share_one_new_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
        register(&m, &["a:1", "b:1", "c:1"]).await;
        m.create_log("/l", 3, 8192).await.unwrap();
        let first = m.open_chunk("/l").await.unwrap();
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
        assert_eq!((next.index, next.version), (1, 1));
        {
            let s = fake.st();
            assert_eq!(s.fences.len(), 3, "one fence per replica");
            assert_eq!(s.seals.len(), 1);
            assert_eq!(
                (s.seals[0].0.as_str(), s.seals[0].2, s.seals[0].3),
                ("a:1", 2, 8000)
            );
            let primary = s
                .creates
                .iter()
                .find(|(a, c)| c.handle == next.handle && c.primary && *a == next.primary);
            let marks = &primary.expect("primary created").1.writer_marks;
            assert_eq!(
                marks,
                &vec![WriterMark {
                    writer: 42,
                    sequence: 8000,
                    frame_crc: 0,
                }]
            );
        }
        let info = m.stat_log("/l").unwrap();
        assert_eq!(info.chunks.len(), 2);
        assert_eq!(info.chunks[0].state, ChunkState::Sealed);
        assert_eq!((info.chunks[0].length, info.chunks[0].version), (8000, 2));
        assert_eq!(info.chunks[0].replicas, vec!["a:1".to_owned()]);
        // The repair loop copies the sealed chunk to the two shorter replicas' chunkservers
        // (they only need the tail), from the one good replica, one copy per chunk at a time.
        let mut passes = 0;
        while m.clone().repair_pass().under_replicated > 0 {
            passes += 1;
            assert!(passes < 100, "repair did not converge");
            for _ in 0..100 {
                if m.lock_inner().repairs.is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(passes, 2);
        {
            let s = fake.st();
            let mut targets: Vec<_> = s
                .replicates
                .iter()
                .map(|(t, j)| (t.as_str(), j.length))
                .collect();
            targets.sort();
            assert_eq!(targets, vec![("b:1", 8000), ("c:1", 8000)]);
            // The first copy could only come from the one good replica.
            assert_eq!(s.replicates[0].1.source, "a:1");
        }
        let info = m.stat_log("/l").unwrap();
        assert_eq!(info.chunks[0].replicas.len(), 3);
        // The repair loop also fenced the two replicas it still knew as open at version 1
        // (replicas that missed a seal are fenced with the chunk's version when seen).
        let fences = {
            let s = fake.st();
            let mut stale: Vec<_> = s.fences[3..]
                .iter()
                .map(|(a, h, v)| (a.as_str(), *h, *v))
                .collect();
            stale.sort();
            stale.dedup();
            assert_eq!(
                stale,
                vec![("b:1", first.handle, 2), ("c:1", first.handle, 2)]
            );
            s.fences.len()
        };
        // A late seal request for the old version fences nothing.
        let again = m.seal_chunk("/l", first.handle, 1, "late").await.unwrap();
        assert_eq!(&again, next);
        assert_eq!(fake.st().fences.len(), fences);
        m.close().await;
    }

    // With too few chunkservers left once the one whose CreateReplica fails is excluded, the
    // allocation's error is that failure (e.g. a chunkserver out of descriptors), not the count
    // of live chunkservers.
    #[tokio::test]
    async fn failed_allocation_reports_the_create_replica_cause() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
        register(&m, &["a:1", "b:1", "c:1"]).await;
        fake.st().broken.insert("c:1".into());
        m.create_log("/l", 3, 8192).await.unwrap();
        let e = m.open_chunk("/l").await.unwrap_err();
        assert!(
            matches!(&e, Error::CreateReplicaFailed { address, reason, .. }
                if address == "c:1" && reason == "broken"),
            "{e}"
        );
        m.close().await;
    }

    // A chunkserver whose CreateReplica fails: the half-made chunk is dropped (logged), and the
    // next attempt avoids that server. Heartbeats then ask for the orphan replicas' deletion but
    // never for a replica of a chunk in the metadata.
    #[tokio::test]
    async fn failed_create_is_abandoned_and_orphans_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
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
            let mut reports = vec![report(loc.handle, 1)];
            reports.extend(orphans.iter().map(|h| report(*h, 1)));
            let (delete, reregister) = m.heartbeat(a, &reports).await.unwrap();
            assert!(!reregister);
            assert!(!delete.contains(&loc.handle));
            assert!(delete.iter().all(|h| orphans.contains(h)));
        }
        let (_, reregister) = m.heartbeat("zz:1", &[]).await.unwrap();
        assert!(reregister, "an unknown chunkserver must register");
        m.close().await;
    }

    // A checker reports one replica of a sealed chunk corrupt: it stops being good (stat drops
    // it, ListReplicas shows the mark), a heartbeat that does not know of the mark keeps it, the
    // repair loop deletes it and copies the chunk back onto the same chunkserver (the only one
    // free), and the mark ends. The last good replica is never marked.
    #[tokio::test]
    async fn reported_corrupt_replica_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
        register(&m, &["a:1", "b:1", "c:1"]).await;
        m.create_log("/l", 3, 8192).await.unwrap();
        let first = m.open_chunk("/l").await.unwrap();
        for a in ["a:1", "b:1", "c:1"] {
            fake.st().lengths.insert(a.into(), 4096);
        }
        m.seal_chunk("/l", first.handle, 1, "full").await.unwrap();
        let sealed = ReplicaReport {
            handle: first.handle,
            version: 2,
            length: 4096,
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

        let mut passes = 0;
        while m.clone().repair_pass().under_replicated > 0 {
            passes += 1;
            assert!(passes < 100, "repair did not converge");
            for _ in 0..100 {
                if m.lock_inner().repairs.is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
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
        m.close().await;
    }

    // Too few live chunkservers: UNAVAILABLE with both counts while chunkservers may still be
    // registering (the master's first dead-after period) for a new log; for a chunk of an
    // existing one whose CreateReplica failed, the failure.
    #[tokio::test]
    async fn too_few_chunkservers() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
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
        m.close().await;
    }

    // Once chunkservers have had time to register: a log asking for more replicas than there
    // are chunkservers is refused (FAILED_PRECONDITION naming both counts), and so is a bad
    // minimum; a log with a minimum below its factor opens chunks on the live chunkservers
    // (at least the minimum) while one is dead.
    #[tokio::test(start_paused = true)]
    async fn log_options_checked_against_the_cluster_and_min_replicas_open_on_fewer() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
        register(&m, &["a:1", "b:1", "c:1"]).await;
        tokio::time::advance(m.config.dead_after).await;
        for a in ["a:1", "b:1"] {
            m.heartbeat(a, &[]).await.unwrap();
        }
        let err = m.create_log_with("/five", 5, 0, 0).await.unwrap_err();
        assert!(matches!(err, Error::ClusterTooSmall { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "log /five: replication 5 exceeds the 2 live chunkserver(s)"
        );
        let err = m.create_log_with("/m", 3, 3, 0).await.unwrap_err();
        assert!(matches!(err, Error::ClusterTooSmall { .. }), "{err:?}");
        assert!(matches!(
            m.create_log_with("/m", 3, 4, 0).await,
            Err(Error::BadMinReplicas { .. })
        ));
        let info = m.create_log_with("/m", 3, 2, 8192).await.unwrap();
        assert_eq!((info.replication, info.min_replicas), (3, 2));
        let loc = m.open_chunk("/m").await.unwrap();
        let mut on: Vec<String> = loc.secondaries.clone();
        on.push(loc.primary.clone());
        on.sort();
        assert_eq!(on, vec!["a:1", "b:1"]);
        assert_eq!(m.list_logs("/m")[0].min_replicas, 2);
        m.close().await;
    }

    // A chunkserver that reported less free space than a chunk plus the margin gets no new
    // chunk; when too few have room, the error says so.
    #[tokio::test]
    async fn full_chunkservers_get_no_new_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
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
        m.close().await;
    }

    // After a restart the metadata (logs, chunks, versions) is back, locations are not: the open
    // chunk is UNAVAILABLE until its chunkservers report it. A replica reporting a version the
    // master never issued (forged, or broken) is never adopted, not even across a restart: the
    // master logs every version before any fence, so it never needs a replica's.
    #[tokio::test]
    async fn restart_keeps_metadata_and_waits_for_reports() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
        register(&m, &["a:1", "b:1", "c:1"]).await;
        m.create_log("/l", 3, 8192).await.unwrap();
        let first = m.open_chunk("/l").await.unwrap();
        let open = m.seal_chunk("/l", first.handle, 1, "full").await.unwrap();
        let before = m.stat_log("/l").unwrap();
        m.close().await;
        drop(m);

        let m = start(dir.path(), &fake);
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
        m.register("a:1", &[report(open.handle, u64::MAX)])
            .await
            .unwrap();
        for a in ["b:1", "c:1"] {
            m.register(a, &[report(open.handle, 1)]).await.unwrap();
        }
        let stat = m.stat_log("/l").unwrap();
        assert_eq!(stat.chunks[1].version, 1);
        assert!(
            !stat.chunks[1].replicas.contains(&"a:1".to_owned()),
            "a replica at a forged version is not listed"
        );
        let again = m.open_chunk("/l").await.unwrap();
        assert_eq!((again.handle, again.version), (open.handle, 1));
        m.close().await;
        drop(m);
        let m = start(dir.path(), &fake);
        assert_eq!(m.stat_log("/l").unwrap().chunks[1].version, 1);
        m.close().await;
    }

    // An open chunk whose replicas were never created (the master crashed after logging the
    // allocation): once its chunkservers are back and all say "absent", it is dropped and a new
    // chunk takes its index.
    #[tokio::test]
    async fn allocation_without_replicas_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
        register(&m, &["a:1", "b:1", "c:1"]).await;
        m.create_log("/l", 3, 8192).await.unwrap();
        let lost = m.open_chunk("/l").await.unwrap();
        m.close().await;
        drop(m);
        fake.st().replicas.clear();
        let m = start(dir.path(), &fake);
        register(&m, &["a:1", "b:1", "c:1"]).await;
        let fresh = m.open_chunk("/l").await.unwrap();
        assert_ne!(fresh.handle, lost.handle);
        assert_eq!(fresh.index, 0);
        assert_eq!(m.stat_log("/l").unwrap().chunks.len(), 1);
        m.close().await;
    }

    // Namespace errors: bad paths and options, duplicates, unknown logs; list by prefix.
    #[tokio::test]
    async fn namespace_errors_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake);
        // Logs of the default factor need that many chunkservers.
        register(&m, &["a:1", "b:1", "c:1"]).await;
        assert!(matches!(
            m.create_log("nope", 3, 0).await,
            Err(Error::BadPath { .. })
        ));
        assert!(matches!(
            m.create_log("/a", 8, 0).await,
            Err(Error::BadReplication { .. })
        ));
        assert!(matches!(
            m.create_log("/a", 3, 100).await,
            Err(Error::BadChunkBytes { .. })
        ));
        let info = m.create_log("/a/x", 0, 0).await.unwrap();
        assert_eq!(
            (info.replication, info.chunk_bytes),
            (3, CHUNK_BYTES_DEFAULT)
        );
        m.create_log("/a/y", 1, 4096).await.unwrap();
        m.create_log("/b", 1, 4096).await.unwrap();
        assert!(matches!(
            m.create_log("/b", 1, 4096).await,
            Err(Error::LogExists { .. })
        ));
        let listed: Vec<String> = m.list_logs("/a/").into_iter().map(|l| l.path).collect();
        assert_eq!(listed, vec!["/a/x", "/a/y"]);
        m.delete_log("/a/x").await.unwrap();
        assert!(matches!(
            m.delete_log("/a/x").await,
            Err(Error::LogNotFound { .. })
        ));
        assert!(matches!(m.stat_log("/a/x"), Err(Error::LogNotFound { .. })));
        assert_eq!(m.list_logs("").len(), 2);
        m.close().await;
    }

    // StatLog paging over a log too big for one answer: pages are capped by the named limits
    // and together list every chunk exactly once, in order; an unpaged request (a client that
    // predates paging) is refused rather than answered with a shortened list.
    #[tokio::test]
    async fn stat_log_pages_cover_a_log_of_any_length() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let (_, last, file) = crate::oplog::open(dir.path()).unwrap();
        let mut meta = Metadata::default();
        meta.apply(&Entry::CreateLog {
            path: "/big".into(),
            replication: 1,
            min_replicas: 0,
            chunk_bytes: 8192,
        })
        .unwrap();
        // More chunks than the unpaged answer may hold at the estimated size of each.
        let n = STAT_LOG_UNPAGED_BYTES_MAX / 64 + 1000;
        for i in 0..n as u64 {
            let handle = ChunkHandle(i + 1);
            meta.apply(&Entry::Allocate {
                path: "/big".into(),
                index: i as u32,
                handle,
                version: 1,
                replicas: vec!["a:1".into()],
            })
            .unwrap();
            meta.apply(&Entry::Seal {
                handle,
                version: 1,
                length: 32,
                replicas: vec!["a:1".into()],
                writer_marks: Vec::new(),
            })
            .unwrap();
        }
        let m = MasterCore::new(Config::new(dir.path()), fake, meta, last, file, 7);
        assert!(matches!(
            m.stat_log_page("/big", 0, None),
            Err(Error::StatTooLarge { .. })
        ));
        let page = m.stat_log_page("/big", 0, Some(0)).unwrap();
        assert_eq!(page.chunks.len(), STAT_LOG_PAGE_CHUNKS_MAX);
        assert_eq!(page.chunk_count as usize, n);
        let page = m.stat_log_page("/big", 5, Some(3)).unwrap();
        let indexes: Vec<u32> = page.chunks.iter().map(|c| c.index).collect();
        assert_eq!(indexes, vec![5, 6, 7]);
        let mut next = 0u32;
        let mut pages = 0;
        while (next as usize) < n {
            let page = m.stat_log_page("/big", next, Some(u32::MAX)).unwrap();
            assert!(!page.chunks.is_empty());
            assert!(page.chunks.len() <= STAT_LOG_PAGE_CHUNKS_MAX);
            for c in &page.chunks {
                assert_eq!(c.index, next);
                next += 1;
            }
            pages += 1;
        }
        assert!(pages > 1);
        assert!(
            m.stat_log_page("/big", next, Some(10))
                .unwrap()
                .chunks
                .is_empty()
        );
        m.close().await;
    }
}
