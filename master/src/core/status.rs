//! `ClusterStatus`: the cluster as the master sees it, for `cairn status`, the master's HTTP
//! page (`crate::status_page`) and its metrics (`crate::metrics`).

use std::time::Duration;

use cairn_record::{ChunkHandle, ChunkOffset};
use tokio::time::Instant;

use super::MasterCore;
use crate::chunkserver_api::ChunkserverApi;
use crate::heartbeat::ServerOverview;
use crate::meta::ChunkState;
use crate::policy::good_replicas;

/// Most chunks listed in each problem list of a [`ClusterStatus`] (the totals count them all).
pub(crate) const STATUS_CHUNKS_LISTED_MAX: usize = 100;

/// The cluster now ([`MasterCore::status`]).
#[derive(Clone, Debug)]
pub(crate) struct ClusterStatus {
    pub(crate) uptime: Duration,
    pub(crate) chunkservers: Vec<ServerOverview>,
    pub(crate) logs: usize,
    pub(crate) open_chunks: usize,
    pub(crate) sealed_chunks: usize,
    /// Fewest good replicas first, at most [`STATUS_CHUNKS_LISTED_MAX`].
    pub(crate) under_replicated: Vec<ChunkProblem>,
    pub(crate) under_replicated_total: usize,
    /// At most [`STATUS_CHUNKS_LISTED_MAX`].
    pub(crate) corrupt: Vec<ChunkProblem>,
    pub(crate) corrupt_total: usize,
    pub(crate) repairs: RepairProgress,
    /// Execution-layer services (logs `/exec/NAME/inputs`).
    pub(crate) exec_services: Vec<String>,
}

/// A chunk below its factor or with a corrupt replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkProblem {
    pub(crate) log: String,
    pub(crate) handle: ChunkHandle,
    pub(crate) index: u32,
    pub(crate) good: usize,
    pub(crate) replication: u32,
    pub(crate) length: ChunkOffset,
    pub(crate) corrupt_on: Vec<String>,
}

/// Re-replication now and since the master started.
#[derive(Clone, Debug, Default)]
pub(crate) struct RepairProgress {
    /// (chunk, target) of the copies running.
    pub(crate) running: Vec<(ChunkHandle, String)>,
    /// Copies needed beyond the running ones.
    pub(crate) queued: u64,
    pub(crate) copies_done: u64,
    pub(crate) copies_failed: u64,
    pub(crate) bytes_copied: u64,
    /// Over the last repair passes.
    pub(crate) bytes_per_sec: f64,
    pub(crate) bytes_remaining: u64,
    /// `bytes_remaining` at `bytes_per_sec`; `None` when nothing was copied lately.
    pub(crate) eta: Option<Duration>,
}

impl<C: ChunkserverApi> MasterCore<C> {
    /// The cluster's status now.
    pub(crate) fn status(&self) -> ClusterStatus {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Instant::now();
        let dead_after = self.config().dead_after;
        let g = self.lock();
        let mut status = ClusterStatus {
            uptime: now.saturating_duration_since(self.started()),
            chunkservers: g.servers.overview(now, dead_after),
            logs: g.meta.logs.len(),
            open_chunks: 0,
            sealed_chunks: 0,
            under_replicated: Vec::new(),
            under_replicated_total: 0,
            corrupt: Vec::new(),
            corrupt_total: 0,
            repairs: RepairProgress::default(),
            exec_services: g
                .meta
                .logs
                .keys()
                .filter_map(|path| path.strip_prefix("/exec/")?.strip_suffix("/inputs"))
                .map(str::to_owned)
                .collect(),
        };
        let mut missing_copies = 0u64;
        for c in g.meta.chunks.values() {
            if c.state != ChunkState::Sealed {
                status.open_chunks += 1;
                continue;
            }
            status.sealed_chunks += 1;
            let Some(log) = g.meta.logs.get(&c.log) else {
                continue;
            };
            let good = good_replicas(&g.servers, c, now, dead_after).len();
            let corrupt_on: Vec<String> = g
                .servers
                .replicas_of(c.handle)
                .iter()
                .filter(|(a, r)| g.servers.with_mark(a, r).corrupt)
                .map(|(a, _)| a.clone())
                .collect();
            let problem = || ChunkProblem {
                log: c.log.clone(),
                handle: c.handle,
                index: c.index,
                good,
                replication: log.replication,
                length: c.length,
                corrupt_on: corrupt_on.clone(),
            };
            if good < log.replication as usize {
                status.under_replicated_total += 1;
                let missing = (log.replication as usize - good) as u64;
                missing_copies += missing;
                status.repairs.bytes_remaining += missing * u64::from(c.length);
                status.under_replicated.push(ChunkProblem {
                    corrupt_on: Vec::new(),
                    ..problem()
                });
            }
            if !corrupt_on.is_empty() {
                status.corrupt_total += 1;
                if status.corrupt.len() < STATUS_CHUNKS_LISTED_MAX {
                    status.corrupt.push(problem());
                }
            }
        }
        status
            .under_replicated
            .sort_by_key(|p| (p.good, p.log.clone(), p.index));
        status.under_replicated.truncate(STATUS_CHUNKS_LISTED_MAX);
        let stats = self.repair_stats();
        let repairs = &mut status.repairs;
        repairs.running = g.repairs.iter().map(|(h, t)| (*h, t.clone())).collect();
        repairs.queued = missing_copies.saturating_sub(repairs.running.len() as u64);
        repairs.copies_done = stats.copies_done.load(Relaxed);
        repairs.copies_failed = stats.copies_failed.load(Relaxed);
        repairs.bytes_copied = stats.bytes_copied.load(Relaxed);
        repairs.bytes_per_sec = stats.copy_rate();
        repairs.eta = (repairs.bytes_per_sec > 0.0 && repairs.bytes_remaining > 0).then(|| {
            Duration::from_secs_f64(repairs.bytes_remaining as f64 / repairs.bytes_per_sec)
        });
        status
    }
}
