//! Re-replication and replica garbage (ARCHITECTURE.md, "Repair").
//!
//! A sealed chunk's replica is *good* when its chunkserver is live and reports it sealed at the
//! chunk's version and sealed length, neither failed nor corrupt. Only good replicas are read
//! sources, copy sources or counted towards the replication factor. Every pass (one per
//! heartbeat period) the master:
//! - picks the sealed chunks with fewer good replicas than their factor, fewest first (the most
//!   endangered), and for each one a source (a good replica) and a target (a live chunkserver
//!   without a good replica: one already holding a shorter or stale copy first, since it only
//!   needs the missing tail, else the least loaded), and asks the target to `Replicate`;
//! - learns from failed copies: when the target found the source's bytes bad
//!   ([`CopyError::SourceCorrupt`]), that source replica is marked corrupt exactly as a
//!   checker's `ReportCorrupt` would (never the chunk's last good replica), so it is no longer
//!   good and is replaced in turn; any other failure is remembered for
//!   [`FAILED_COPY_MEMORY`](crate::limits::FAILED_COPY_MEMORY) against the chunk's source and
//!   target, which later passes try after every other candidate. So one bad replica never
//!   blocks a chunk whose other replicas are healthy;
//! - leaves replicas that are not good alone while the chunk is below its factor (they may
//!   still be caught up); once it is not, heartbeat replies tell their chunkservers to delete
//!   them ([`is_garbage`]);
//! - seals open chunks whose fixed primary is dead or has restarted ([`orphaned_open_chunks`]):
//!   no append can succeed there any more, and only a seal makes their acknowledged records
//!   readable (an open chunk is read up to the primary's commit offset, which a restarted
//!   primary no longer knows), even if no client appends again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_record::ChunkHandle;
use cairn_record::limits::CHUNK_HEADER_BYTES;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::core::{ChunkserverApi, FIRST_VERSION, MasterCore, Replicate, RpcError};
use crate::fsck::CorruptMark;
use crate::heartbeat::{ReplicaReport, Servers};
use crate::limits::{
    FAILED_COPIES_REMEMBERED_MAX, FAILED_COPY_MEMORY, REPAIR_RATE_FLOOR_BYTES_PER_SEC,
    REPAIRS_IN_FLIGHT_MAX,
};
use crate::meta::{ChunkMeta, ChunkState, Metadata};

/// Whether `r` is a good replica of the sealed chunk `c` (liveness is checked by the caller).
pub(crate) fn is_good(c: &ChunkMeta, r: &ReplicaReport) -> bool {
    c.state == ChunkState::Sealed
        && r.sealed
        && r.version == c.version
        && r.length == c.length
        && !r.failed
        && !r.corrupt
}

/// The addresses of the good replicas of `c` on live chunkservers.
pub(crate) fn good_replicas(
    servers: &Servers,
    c: &ChunkMeta,
    now: Instant,
    dead_after: Duration,
) -> Vec<String> {
    servers
        .replicas_of(c.handle)
        .into_iter()
        .filter(|(a, r)| is_good(c, r) && servers.is_live(a, now, dead_after))
        .map(|(a, _)| a)
        .collect()
}

/// Whether the replica `r` reported by a chunkserver is garbage to delete: a replica of a
/// sealed chunk that is not good, while the chunk has at least `replication` good replicas and
/// no copy into that chunkserver is running.
pub(crate) fn is_garbage(
    c: &ChunkMeta,
    r: &ReplicaReport,
    good: usize,
    replication: u32,
    copying_here: bool,
) -> bool {
    c.state == ChunkState::Sealed
        && !is_good(c, r)
        && r.version <= c.version
        && good >= replication as usize
        && !copying_here
}

/// Open chunks that can take no more appends and must be sealed, as `(log, handle, version,
/// reason)`, when at least one of their chunkservers is live (a seal needs someone to fence):
/// - a seal began and did not finish: the chunk's version is above [`FIRST_VERSION`] (a seal
///   logs the new version before any fence; the primary's role keeps the allocation version,
///   so no append can succeed at the new one);
/// - the primary is dead ([`Servers::is_dead`]);
/// - the primary restarted: it reports the chunk's replica without the primary role (the role
///   lives in memory) and with data past the header (a fresh replica whose `CreateReplica` is
///   still landing reports an empty one).
///
/// A primary that does not report the replica at all is not taken as gone here: right after an
/// allocation its report may predate the `CreateReplica`. A wiped primary's chunk is sealed
/// when a client or a reader asks (they get `NOT_FOUND` from it).
///
/// Without this, a chunk left open by a failed seal or a lost primary would keep its
/// acknowledged records from readers that rely on the primary's commit offset, and a tail would
/// hang on it, until some client appended again.
pub(crate) fn orphaned_open_chunks(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
    master_started: Instant,
) -> Vec<(String, ChunkHandle, u64, String)> {
    let mut out = Vec::new();
    for c in meta.chunks.values() {
        if c.state != ChunkState::Open || c.primary.is_empty() {
            continue;
        }
        if !c
            .replicas
            .iter()
            .any(|a| servers.is_live(a, now, dead_after))
        {
            continue;
        }
        let reports = servers.replicas_of(c.handle);
        let primary_report = reports
            .iter()
            .find(|(a, _)| *a == c.primary)
            .map(|(_, r)| r);
        let reason = if c.version > FIRST_VERSION {
            format!("a seal began (version {}) and did not finish", c.version)
        } else if servers.is_dead(&c.primary, now, dead_after, master_started) {
            format!("primary {} is dead", c.primary)
        } else {
            match primary_report {
                Some(r) if !r.primary && !r.sealed && r.length > CHUNK_HEADER_BYTES as u64 => {
                    format!("primary {} restarted and lost its role", c.primary)
                }
                _ => continue,
            }
        };
        out.push((c.log.clone(), c.handle, c.version, reason));
    }
    out
}

/// Replicas of sealed chunks that missed the seal and are still open at an older version, as
/// `(handle, the chunk's version, addresses)`: the master fences them with the chunk's version
/// (already logged, nothing new to issue) so that an old primary among them can never take an
/// append again, and so that they become prefix holders the repair loop catches up (a copy
/// only extends them) and salvage can use.
pub(crate) fn stale_open_replicas(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
) -> Vec<(ChunkHandle, u64, Vec<String>)> {
    let mut out = Vec::new();
    for c in meta.chunks.values() {
        if c.state != ChunkState::Sealed {
            continue;
        }
        let mut stale: Vec<String> = servers
            .replicas_of(c.handle)
            .into_iter()
            .filter(|(a, r)| {
                !r.sealed
                    && !r.failed
                    && r.version < c.version
                    && servers.is_live(a, now, dead_after)
            })
            .map(|(a, _)| a)
            .collect();
        if !stale.is_empty() {
            stale.sort();
            out.push((c.handle, c.version, stale));
        }
    }
    out
}

/// Why a copy failed, as far as the repair loop acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CopyError {
    /// The target found the source's bytes bad (`DATA_LOSS` from `Replicate`: a bad frame, a
    /// read the source answered `DATA_LOSS`, or a whole-replica checksum that differs).
    SourceCorrupt(String),
    /// Anything else (unreachable, timed out, refused, the target's own fault).
    Rpc(RpcError),
}

impl From<RpcError> for CopyError {
    fn from(e: RpcError) -> CopyError {
        CopyError::Rpc(e)
    }
}

/// Failed copies remembered per (chunk, chunkserver): the source and the target of each, with
/// when it failed. Planning tries them after every other candidate until the memory fades.
#[derive(Debug, Default)]
pub(crate) struct FailedCopies {
    at: HashMap<(ChunkHandle, String), Instant>,
}

impl FailedCopies {
    /// When a copy of `handle` from or to `address` last failed, if within the memory.
    fn since(&self, handle: ChunkHandle, address: &str) -> Option<Instant> {
        self.at.get(&(handle, address.to_owned())).copied()
    }

    /// Remembers a failed copy of `handle` involving `address`.
    fn note(&mut self, handle: ChunkHandle, address: &str, now: Instant) {
        self.at.insert((handle, address.to_owned()), now);
    }

    /// Forgets failures older than [`FAILED_COPY_MEMORY`], and the oldest beyond
    /// [`FAILED_COPIES_REMEMBERED_MAX`].
    fn prune(&mut self, now: Instant) {
        self.at
            .retain(|_, t| now.saturating_duration_since(*t) < FAILED_COPY_MEMORY);
        if self.at.len() > FAILED_COPIES_REMEMBERED_MAX {
            let mut times: Vec<Instant> = self.at.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() - FAILED_COPIES_REMEMBERED_MAX];
            self.at.retain(|_, t| *t >= cut);
        }
    }
}

/// The source to copy `handle` from, out of its good replicas `good` (not empty): the first one
/// without a remembered failure, starting at a position given by the handle (so the reading is
/// spread over the replicas); if every one failed recently, the one that failed longest ago.
fn pick_source<'a>(handle: ChunkHandle, good: &'a [String], failed: &FailedCopies) -> &'a str {
    let n = good.len();
    let start = (handle.0 % n as u64) as usize;
    // `None` (no failure) sorts first; among failures the oldest; ties keep rotation order.
    (0..n)
        .map(|k| good[(start + k) % n].as_str())
        .min_by_key(|a| failed.since(handle, a))
        .expect("a chunk to repair has a good replica")
}

/// One copy to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RepairJob {
    pub(crate) target: String,
    pub(crate) job: Replicate,
    /// Good replicas when it was planned.
    pub(crate) good: usize,
}

/// What a pass found, for the progress log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RepairScan {
    /// Sealed chunks below their factor.
    pub(crate) under_replicated: usize,
    /// Of those, chunks with no good replica on a live chunkserver (nothing to copy from).
    pub(crate) unrecoverable_now: usize,
}

/// Plans up to `slots` copies. `running` maps chunks being copied to their target. A target
/// must have room: at least the chunk's capacity plus `min_free_bytes` free, or unknown.
/// Sources and targets of recently failed copies of a chunk (`failed`) come last.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
    running: &HashMap<ChunkHandle, String>,
    slots: usize,
    min_free_bytes: u64,
    failed: &FailedCopies,
) -> (Vec<RepairJob>, RepairScan) {
    let mut scan = RepairScan::default();
    let mut wanting: Vec<(usize, u32, &ChunkMeta, Vec<String>)> = Vec::new();
    for c in meta.chunks.values() {
        if c.state != ChunkState::Sealed {
            continue;
        }
        let Some(log) = meta.logs.get(&c.log) else {
            continue;
        };
        let good = good_replicas(servers, c, now, dead_after);
        if good.len() >= log.replication as usize {
            continue;
        }
        scan.under_replicated += 1;
        if good.is_empty() {
            scan.unrecoverable_now += 1;
            continue;
        }
        if !running.contains_key(&c.handle) {
            wanting.push((good.len(), c.index, c, good));
        }
    }
    // Most endangered first; then older chunks first (a stable order).
    wanting.sort_by(|a, b| (a.0, &a.2.log, a.1).cmp(&(b.0, &b.2.log, b.1)));
    let live = servers.live(now, dead_after);
    let mut load: HashMap<&str, usize> = live.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    let busy: HashSet<&str> = running.values().map(String::as_str).collect();
    let mut jobs = Vec::new();
    for (good_count, _, c, good) in wanting {
        if jobs.len() >= slots {
            break;
        }
        let capacity = meta
            .logs
            .get(&c.log)
            .map(|l| l.chunk_bytes)
            .unwrap_or(c.length);
        let need_free = capacity.saturating_add(min_free_bytes);
        // Holders of a usable prefix; a corrupt, failed, longer or newer copy is no head start
        // (a copy only extends a prefix: the target refuses to cut an open replica).
        let holders: HashSet<String> = servers
            .replicas_of(c.handle)
            .into_iter()
            .filter(|(_, r)| crate::salvage::is_prefix(c, r))
            .map(|(a, _)| a)
            .collect();
        let target = live
            .iter()
            .map(|(a, _)| a.as_str())
            .filter(|a| !good.iter().any(|g| g == a) && !busy.contains(a))
            .filter(|a| !jobs.iter().any(|j: &RepairJob| j.target == *a))
            .filter(|a| servers.has_room(a, need_free))
            .min_by_key(|a| {
                (
                    failed.since(c.handle, a),
                    !holders.contains(*a),
                    load.get(a).copied().unwrap_or(0),
                    *a,
                )
            });
        let Some(target) = target else {
            continue;
        };
        *load.entry(target).or_default() += 1;
        let source = pick_source(c.handle, &good, failed).to_owned();
        jobs.push(RepairJob {
            target: target.to_owned(),
            job: Replicate {
                handle: c.handle,
                version: c.version,
                length: c.length,
                capacity,
                source,
            },
            good: good_count,
        });
    }
    (jobs, scan)
}

/// Counters of the repair loop since the master started, and its memory of failed copies.
#[derive(Debug, Default)]
pub(crate) struct RepairStats {
    pub(crate) copies_done: AtomicU64,
    pub(crate) copies_failed: AtomicU64,
    pub(crate) bytes_copied: AtomicU64,
    /// Source replicas marked corrupt because a copy found their bytes bad.
    pub(crate) sources_marked_corrupt: AtomicU64,
    /// Recently failed copies (taken after the metadata lock, never held across an `.await`).
    failed: Mutex<FailedCopies>,
}

impl RepairStats {
    fn failed(&self) -> std::sync::MutexGuard<'_, FailedCopies> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
            let mut g = self.lock_inner();
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
        let (reseals, salvages, stale) = {
            let mut g = self.lock_inner();
            let started = self.started();
            let found = orphaned_open_chunks(&g.meta, &g.servers, now, dead_after, started);
            let salvages =
                crate::salvage::candidates(&g.meta, &g.servers, now, dead_after, started);
            let stale = stale_open_replicas(&g.meta, &g.servers, now, dead_after);
            let reseals = found
                .into_iter()
                .filter(|(_, h, _, _)| g.resealing.insert(*h))
                .collect::<Vec<_>>();
            let salvages = salvages
                .into_iter()
                .filter(|(_, h, _)| g.resealing.insert(*h))
                .collect::<Vec<_>>();
            let stale = stale
                .into_iter()
                .filter(|(h, _, _)| g.resealing.insert(*h))
                .collect::<Vec<_>>();
            (reseals, salvages, stale)
        };
        for (log, handle, version) in salvages {
            let core = self.clone();
            tokio::spawn(async move {
                if let Err(e) = core.salvage(&log, handle, version).await {
                    warn!(%log, chunk = %handle, error = %e, "salvage failed; a later pass retries");
                }
                core.lock_inner().resealing.remove(&handle);
            });
        }
        for (handle, version, addresses) in stale {
            let core = self.clone();
            tokio::spawn(async move {
                info!(chunk = %handle, version, replicas = ?addresses, "fencing replicas that missed the chunk's seal");
                for o in core.fence_all(handle, version, &addresses).await {
                    if let crate::seal::FenceOutcome::Failed { address } = o {
                        warn!(chunk = %handle, %address, "fencing a replica that missed the seal failed; a later pass retries");
                    }
                }
                core.lock_inner().resealing.remove(&handle);
            });
        }
        for (log, handle, version, reason) in reseals {
            let core = self.clone();
            tokio::spawn(async move {
                warn!(%log, chunk = %handle, %reason, "sealing an open chunk whose primary is gone");
                if let Err(e) = core.seal_chunk(&log, handle, version, &reason).await {
                    warn!(%log, chunk = %handle, error = %e, "sealing failed; a later pass retries");
                }
                core.lock_inner().resealing.remove(&handle);
            });
        }
        scan
    }

    async fn copy(&self, j: RepairJob) {
        let handle = j.job.handle;
        let timeout = self.config().rpc_timeout
            + Duration::from_secs(j.job.length / REPAIR_RATE_FLOOR_BYTES_PER_SEC + 1);
        info!(chunk = %handle, from = %j.job.source, to = %j.target, good = j.good, length = j.job.length, "copying replica");
        let started = Instant::now();
        // The target's chunkserver does not know that a checker found its replica corrupt, and
        // would keep it as complete: delete it first so the copy replaces it.
        let marked = self.lock_inner().servers.mark(&j.target, handle).is_some();
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
            // Mark the source before the next pass can pick it again (fsck.rs: never the
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
        let mut g = self.lock_inner();
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
    use crate::meta::Entry;

    const H: ChunkHandle = ChunkHandle(0x11);
    const DEAD_AFTER: Duration = Duration::from_secs(10);

    fn report(version: u64, length: u64, sealed: bool, primary: bool) -> ReplicaReport {
        ReplicaReport {
            handle: H,
            version,
            length,
            sealed,
            failed: false,
            corrupt: false,
            primary,
        }
    }

    /// A log with one open chunk `H` on a (primary), b, c.
    fn open_chunk() -> Metadata {
        crate::meta::one_open_chunk(H)
    }

    fn servers(now: Instant, reports: &[(&str, ReplicaReport)]) -> Servers {
        let mut s = Servers::default();
        for (a, r) in reports {
            s.register(a, now, &[*r], Duration::ZERO);
        }
        s
    }

    // An open chunk is sealed by the master when a seal began and did not finish (version
    // above the allocation's), when its primary restarted with data, or when its primary is
    // dead; not while its primary holds the role, not for a fresh empty replica without the
    // role yet, and not when none of its chunkservers is live (nobody to fence).
    #[test]
    fn orphaned_open_chunks_are_found() {
        let now = Instant::now();
        let started = now - 2 * DEAD_AFTER;
        let healthy = [
            ("a", report(1, 4096, false, true)),
            ("b", report(1, 4096, false, false)),
            ("c", report(1, 4096, false, false)),
        ];
        let meta = open_chunk();
        let found = |meta: &Metadata, s: &Servers| {
            orphaned_open_chunks(meta, s, now, DEAD_AFTER, started)
                .into_iter()
                .map(|(_, h, v, reason)| (h, v, reason))
                .collect::<Vec<_>>()
        };
        assert!(found(&meta, &servers(now, &healthy)).is_empty());
        let fresh = [("a", report(1, 32, false, false)), healthy[1], healthy[2]];
        assert!(found(&meta, &servers(now, &fresh)).is_empty());
        let restarted = [("a", report(1, 4096, false, false)), healthy[1], healthy[2]];
        let f = found(&meta, &servers(now, &restarted));
        assert_eq!(f.len(), 1);
        assert!(f[0].2.contains("restarted"), "{f:?}");

        // A failed seal left the master at version 5 while the replicas kept version 1 and the
        // primary (restarted, or not) reports whatever it has.
        let mut bumped = open_chunk();
        bumped
            .apply(&Entry::Version {
                handle: H,
                version: 5,
            })
            .unwrap();
        let f = found(&bumped, &servers(now, &healthy));
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0, f[0].1), (H, 5));
        assert!(f[0].2.contains("seal began"), "{f:?}");

        // Every chunkserver silent: nothing to fence yet.
        let long_ago = now - 2 * DEAD_AFTER;
        assert!(found(&bumped, &servers(long_ago, &healthy)).is_empty());
        // Only the primary silent: it is dead.
        let mut s = servers(now, &healthy[1..]);
        s.register("a", long_ago, &[healthy[0].1], Duration::ZERO);
        let f = found(&meta, &s);
        assert_eq!(f.len(), 1);
        assert!(f[0].2.contains("dead"), "{f:?}");
    }

    // Replicas of a sealed chunk still open at an older version (they missed its seal) are
    // fenced with the chunk's version; sealed, failed, current or silent ones are not.
    #[test]
    fn stale_open_replicas_are_found() {
        let now = Instant::now();
        let mut meta = open_chunk();
        for e in [
            Entry::Version {
                handle: H,
                version: 2,
            },
            Entry::Seal {
                handle: H,
                version: 2,
                length: 4096,
                replicas: vec!["a".into()],
                writer_marks: Vec::new(),
            },
        ] {
            meta.apply(&e).unwrap();
        }
        let mut failed = report(1, 1024, false, false);
        failed.failed = true;
        let mut s = servers(
            now,
            &[
                ("a", report(2, 4096, true, false)),
                ("b", report(1, 1024, false, false)),
                ("c", report(2, 1024, false, false)),
                ("d", failed),
                ("e", report(1, 1024, true, false)),
            ],
        );
        s.register(
            "f",
            now - 2 * DEAD_AFTER,
            &[report(1, 1024, false, false)],
            Duration::ZERO,
        );
        assert_eq!(
            stale_open_replicas(&meta, &s, now, DEAD_AFTER),
            vec![(H, 2, vec!["b".to_owned()])]
        );
    }

    // Proves: the first choice rotates by handle; a source with a remembered failed copy comes
    // after every other good replica; when all failed, the one that failed longest ago is
    // retried; failures fade after FAILED_COPY_MEMORY.
    #[tokio::test(start_paused = true)]
    async fn failed_sources_are_tried_last_and_forgotten() {
        let good = vec!["a:1".to_owned(), "b:1".to_owned(), "c:1".to_owned()];
        let h = ChunkHandle(4); // 4 % 3 = 1: "b:1" first
        let mut failed = FailedCopies::default();
        assert_eq!(pick_source(h, &good, &failed), "b:1");
        let t0 = Instant::now();
        failed.note(h, "b:1", t0);
        assert_eq!(pick_source(h, &good, &failed), "c:1");
        failed.note(ChunkHandle(5), "c:1", t0);
        assert_eq!(pick_source(h, &good, &failed), "c:1", "per chunk");
        tokio::time::advance(Duration::from_secs(1)).await;
        failed.note(h, "c:1", Instant::now());
        assert_eq!(pick_source(h, &good, &failed), "a:1");
        tokio::time::advance(Duration::from_secs(1)).await;
        failed.note(h, "a:1", Instant::now());
        assert_eq!(pick_source(h, &good, &failed), "b:1", "the oldest failure");
        tokio::time::advance(FAILED_COPY_MEMORY).await;
        failed.prune(Instant::now());
        assert!(failed.at.is_empty());
        assert_eq!(pick_source(h, &good, &failed), "b:1");
    }
}
