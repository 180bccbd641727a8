//! The master's behaviour, free of gRPC types. `service.rs` converts requests and answers at the
//! boundary and implements [`ChunkserverApi`] with real RPCs; tests use fakes.
//!
//! This file holds the state ([`MasterCore`], [`Inner`]) and what every job shares (the lock,
//! committing operation-log entries, per-log locks); each job adds its methods in its own file:
//! - `logs`: `CreateLog`, `DeleteLog`, `ListLogs`, `StatLog` (and their answers).
//! - `writers`: `ResumeWriter`, writer epochs.
//! - `allocate`: `OpenChunk`, chunk allocation and dropping a chunk that holds nothing.
//! - `seal`: the seal driver (fence, seal, log); the decision itself is `crate::seal`.
//! - `reports`: chunkserver registrations and heartbeats, reconciled with the metadata.
//! - `fsck`: what checkers ask (`ListChunkservers`, `ListReplicas`, `ReportCorrupt`).
//! - `repair`: the repair loop's passes and copies; the planning is `crate::repair`.
//! - `salvage`: resealing a chunk whose complete replicas are lost; the decision is
//!   `crate::salvage`.
//!
//! Locking: one `std::sync::Mutex` guards metadata, the operation-log queue and the chunkserver
//! table, never held across an `.await`. Entries are applied and queued under it, so memory and
//! log agree on order; the RPC is answered only after its entry is durable. Per log, an async
//! mutex serialises allocation and sealing (held across the chunkserver RPCs).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_record::{ChunkHandle, SplitMix64};
use tokio::time::Instant;

use crate::chunkserver_api::ChunkserverApi;
use crate::config::Config;
use crate::crash_point::{CrashPoint, CrashPoints};
use crate::error::{Error, Result};
use crate::heartbeat::Servers;
use crate::meta::{Entry, LogMeta, Metadata};
use crate::oplog::{Committer, OplogQueue};
use crate::repair::{Backoff, RepairStats};

mod allocate;
#[cfg(test)]
mod fake;
mod fsck;
mod logs;
mod repair;
mod reports;
mod salvage;
mod seal;
pub(crate) mod status;
mod writers;

pub(crate) use allocate::Location;
pub(crate) use logs::{ChunkInfo, LogInfo};

/// Serialises the seals and allocations of one log (held across chunkserver RPCs).
pub(crate) type LogLock = Arc<tokio::sync::Mutex<()>>;

/// What the metadata lock guards (see the module doc).
pub(crate) struct Inner {
    pub(crate) meta: Metadata,
    queue: OplogQueue,
    pub(crate) servers: Servers,
    /// One per existing log; replaced when a log is deleted and created again, so a caller
    /// holding an old one can tell (`Arc::ptr_eq`).
    log_locks: BTreeMap<String, LogLock>,
    /// Handles whose removal (deleted log, abandoned chunk) is not durable yet: heartbeats must
    /// not tell chunkservers to delete them, in case the master crashes and they come back.
    dying: BTreeSet<ChunkHandle>,
    /// Copies running (the repair loop): chunk → target chunkserver.
    pub(crate) repairs: BTreeMap<ChunkHandle, String>,
    /// Chunks with a seal of an orphaned open chunk or a salvage running (one such task per
    /// chunk at a time; seals and fences of single replicas are in `in_place`).
    pub(crate) resealing: BTreeSet<ChunkHandle>,
    /// Replicas being sealed or fenced in place by the repair loop, as (chunk, chunkserver): no
    /// copy into one starts meanwhile (it would compare checksums mid-seal).
    pub(crate) in_place: BTreeSet<(ChunkHandle, String)>,
    /// Orphaned open chunks whose last seal by the repair loop failed: when to try again.
    pub(crate) reseal_backoff: BTreeMap<ChunkHandle, Backoff>,
    rng: SplitMix64,
}

impl Inner {
    /// The repair loop's seal or fence of `addresses`' replicas of `handle` ended.
    pub(crate) fn end_in_place(&mut self, handle: ChunkHandle, addresses: &[String]) {
        for a in addresses {
            self.in_place.remove(&(handle, a.clone()));
        }
    }

    /// Whether the repair loop is sealing or fencing some replica of `handle` in place.
    pub(crate) fn in_place_on(&self, handle: ChunkHandle) -> bool {
        self.in_place
            .range((handle, String::new())..)
            .next()
            .is_some_and(|(h, _)| *h == handle)
    }

    /// Applies and queues an entry the caller has validated. Returns its sequence.
    pub(crate) fn record(&mut self, entry: Entry) -> u64 {
        let gone = self
            .meta
            .apply(&entry)
            .expect("callers validate entries against the metadata before recording them");
        self.dying.extend(gone);
        if let Entry::Seal { handle, .. } = &entry {
            // Only an open chunk's reported length is needed (`MasterCore::seal_lost`).
            self.servers.forget_chunk(*handle);
        }
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
    crash_points: CrashPoints,
    repair_stats: RepairStats,
    /// Seals and allocations, for the metrics.
    counts: crate::metrics::MasterCounts,
    /// When this process started: servers that never registered since count as dead only
    /// after the dead-after time has passed.
    started: Instant,
}

impl<C: ChunkserverApi> MasterCore<C> {
    /// The leader's master over the group's committed metadata, `last_sequence` entries of it,
    /// proposing its changes to `raft`.
    pub(crate) fn new(
        config: Config,
        api: C,
        meta: Metadata,
        last_sequence: u64,
        raft: openraft::Raft<crate::raft::TypeConfig>,
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
            dying: BTreeSet::new(),
            repairs: BTreeMap::new(),
            resealing: BTreeSet::new(),
            in_place: BTreeSet::new(),
            reseal_backoff: BTreeMap::new(),
            // Mixing in the log position keeps a fixed seed (tests, simulations) from handing
            // out the handles of a previous run again.
            rng: SplitMix64::new(seed ^ last_sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }));
        let for_committer = inner.clone();
        let committer = Committer::spawn(raft, last_sequence, move || {
            let mut g = for_committer.lock().unwrap_or_else(|p| p.into_inner());
            g.queue.take()
        });
        MasterCore {
            crash_points: CrashPoints::new(config.test_crash_at),
            config,
            api: Arc::new(api),
            inner,
            committer,
            repair_stats: RepairStats::default(),
            counts: Default::default(),
            started: Instant::now(),
        }
    }

    /// The master passes the crash point `point`: aborts there if a test asked for it
    /// (`--test-crash-at`).
    fn crash_point(&self, point: CrashPoint) {
        self.crash_points.reached(point);
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

    /// Seals and allocations counted for the metrics.
    pub(crate) fn counts(&self) -> &crate::metrics::MasterCounts {
        &self.counts
    }

    /// Counters of the repair loop.
    pub(crate) fn repair_stats(&self) -> &RepairStats {
        &self.repair_stats
    }

    /// A random seed for handles, different in every process.
    pub(crate) fn random_seed() -> u64 {
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
    }

    /// Proposes everything queued, then stops proposing.
    pub(crate) async fn close(&self) {
        self.committer.close().await;
    }

    /// [`MasterCore::close`], then stops its Raft node too (tests: a master that restarts on
    /// the same directory).
    #[cfg(test)]
    pub(crate) async fn stop(&self) {
        self.close().await;
        let _ = self.committer.raft().shutdown().await;
    }

    /// The metadata lock (see the module doc); never held across an `.await`.
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
            g.servers.forget_chunk(*h);
        }
    }

    /// The cluster's id, as the group agreed it (0 until [`MasterCore::settle_cluster_id`]).
    pub(crate) fn cluster_id(&self) -> u64 {
        self.lock().meta.cluster_id
    }

    /// Makes sure the group has a cluster id: a leader of a group that has none yet (its first
    /// leader, or a master upgraded from a directory whose id was only in its `cluster-id`
    /// file) commits `candidate`. Returns the group's id.
    pub(crate) async fn settle_cluster_id(&self, candidate: u64) -> Result<u64> {
        let sequence = {
            let mut g = self.lock();
            if g.meta.cluster_id != 0 {
                return Ok(g.meta.cluster_id);
            }
            g.record(Entry::ClusterId { id: candidate })
        };
        self.commit(sequence).await?;
        Ok(candidate)
    }

    /// The heartbeat period chunkservers are asked to keep, in milliseconds.
    pub(crate) fn heartbeat_ms(&self) -> u32 {
        self.config.heartbeat.as_millis() as u32
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
}
