//! Re-replication and replica garbage (ARCHITECTURE.md, "Repair").
//!
//! A sealed chunk's replica is *good* when its chunkserver is live and reports it sealed at the
//! chunk's version and sealed length, neither failed nor corrupt (the rules are in
//! `crate::policy`). Only good replicas are read sources, copy sources or counted towards the
//! replication factor. Every pass (one per heartbeat period) the master:
//! - picks the sealed chunks with fewer good replicas than their factor, fewest first (the most
//!   endangered), and for each one a source (a good replica) and a target (a live chunkserver
//!   without a good replica: one already holding a shorter or stale copy first, since it only
//!   needs the missing tail, else the least loaded), and asks the target to `Replicate`;
//! - learns from failed copies: when the target found the source's bytes bad
//!   ([`CopyError::SourceCorrupt`](crate::chunkserver_api::CopyError::SourceCorrupt)), that
//!   source replica is marked corrupt exactly as a checker's `ReportCorrupt` would (never the
//!   chunk's last good replica), so it is no longer good and is replaced in turn; any other
//!   failure is remembered for [`FAILED_COPY_MEMORY`] against the chunk's source and target,
//!   which later passes try after every other candidate. So one bad replica never blocks a
//!   chunk whose other replicas are healthy;
//! - leaves replicas that are not good alone while the chunk is below its factor (they may
//!   still be caught up); once it is not, heartbeat replies tell their chunkservers to delete
//!   them ([`is_garbage`](crate::policy::is_garbage));
//! - recreates, from the metadata alone, an empty sealed chunk (sealed at the header's length)
//!   that lost every usable replica ([`empty_chunks_to_recreate`]): there is nothing to copy
//!   from, and nothing to lose;
//! - seals open chunks whose fixed primary is dead or has restarted ([`orphaned_open_chunks`]):
//!   no append can succeed there any more, and only a seal makes their acknowledged records
//!   readable (an open chunk is read up to the primary's commit offset, which a restarted
//!   primary no longer knows), even if no client appends again.
//!
//! This module is the pure part (what to copy, seal or fence, and the memory of failed copies);
//! the passes and copies that act on it are `MasterCore`'s, in `core/repair.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};
use tokio::time::Instant;

use crate::chunkserver_api::Replicate;
use crate::heartbeat::{ReplicaReport, Servers};
use crate::limits::{FAILED_COPIES_REMEMBERED_MAX, FAILED_COPY_MEMORY};
use crate::meta::{ChunkMeta, ChunkState, Metadata};
use crate::policy::{good_replicas, is_prefix};
use crate::versions::FIRST_VERSION;

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
) -> Vec<OrphanedOpenChunk> {
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
                Some(r) if !r.primary && !r.sealed && r.length > ChunkOffset::FIRST_FRAME => {
                    format!("primary {} restarted and lost its role", c.primary)
                }
                _ => continue,
            }
        };
        out.push(OrphanedOpenChunk {
            log: c.log.clone(),
            handle: c.handle,
            version: c.version,
            reason,
        });
    }
    out
}

/// An open chunk whose primary is gone ([`orphaned_open_chunks`]): the master seals it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OrphanedOpenChunk {
    pub(crate) log: String,
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
    /// Why it is taken for orphaned, for the log line.
    pub(crate) reason: String,
}

/// Replicas of a sealed chunk to seal in place or to fence, on the chunkservers `addresses`
/// (sorted): [`stale_open_replicas`] and [`complete_unsealed_replicas`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplicasToSeal {
    pub(crate) handle: ChunkHandle,
    /// The chunk's version (already logged).
    pub(crate) version: ChunkVersion,
    /// The chunk's sealed length.
    pub(crate) length: ChunkOffset,
    pub(crate) addresses: Vec<String>,
}

/// Replicas of sealed chunks that missed the seal and are still open at an older version,
/// healthy (a failed or corrupt replica refuses a fence, and a copy replaces it): the master
/// fences them with the chunk's version
/// (already logged, nothing new to issue) so that an old primary among them can never take an
/// append again, and so that they become prefix holders the repair loop catches up (a copy
/// only extends them) and salvage can use.
pub(crate) fn stale_open_replicas(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
) -> Vec<ReplicasToSeal> {
    sealed_chunk_replicas(meta, servers, now, dead_after, |c, r| {
        !r.sealed && !r.failed && !r.corrupt && r.version < c.version
    })
}

/// Replicas of sealed chunks that missed the seal but hold the whole chunk: open, at the chunk's
/// version (fenced with it, e.g. by [`stale_open_replicas`]' fence), at least as long as the
/// sealed length, healthy, on live chunkservers.
/// Every replica holds a prefix of the one byte stream its primary ordered, so such a replica
/// holds the sealed bytes: the master seals it in place at the sealed length, with no copy and
/// no new version (a seal cuts the bytes past it, never acknowledged; a chunkserver refuses a
/// seal past its end, so a stale report cannot make it seal what it lacks). A copy could not
/// serve here: it never lands over a longer open replica.
/// Without this, a chunk sealed on one replica that then went bad (a read error, a flipped byte)
/// had no copy source, while replicas holding every byte of it stayed unreadable until a salvage
/// many minutes later.
pub(crate) fn complete_unsealed_replicas(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
) -> Vec<ReplicasToSeal> {
    sealed_chunk_replicas(meta, servers, now, dead_after, |c, r| {
        !r.sealed && !r.failed && !r.corrupt && r.version == c.version && r.length >= c.length
    })
}

/// For every sealed chunk, its replicas on live chunkservers that `rule` picks (given the
/// chunk and the replica's report), in address order; chunks with none are left out.
fn sealed_chunk_replicas(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
    rule: impl Fn(&ChunkMeta, &ReplicaReport) -> bool,
) -> Vec<ReplicasToSeal> {
    let mut out = Vec::new();
    for c in meta.chunks.values() {
        if c.state != ChunkState::Sealed {
            continue;
        }
        let mut picked: Vec<String> = servers
            .replicas_of(c.handle)
            .into_iter()
            .filter(|(a, r)| rule(c, r) && servers.is_live(a, now, dead_after))
            .map(|(a, _)| a)
            .collect();
        if !picked.is_empty() {
            picked.sort();
            out.push(ReplicasToSeal {
                handle: c.handle,
                version: c.version,
                length: c.length,
                addresses: picked,
            });
        }
    }
    out
}

/// Failed copies remembered per (chunk, chunkserver): the source and the target of each, with
/// when it failed. Planning tries them after every other candidate until the memory fades.
#[derive(Debug, Default)]
pub(crate) struct FailedCopies {
    at: BTreeMap<(ChunkHandle, String), Instant>,
}

impl FailedCopies {
    /// When a copy of `handle` from or to `address` last failed, if within the memory.
    fn since(&self, handle: ChunkHandle, address: &str) -> Option<Instant> {
        self.at.get(&(handle, address.to_owned())).copied()
    }

    /// Remembers a failed copy of `handle` involving `address`.
    pub(crate) fn note(&mut self, handle: ChunkHandle, address: &str, now: Instant) {
        self.at.insert((handle, address.to_owned()), now);
    }

    /// Forgets failures older than [`FAILED_COPY_MEMORY`], and the oldest beyond
    /// [`FAILED_COPIES_REMEMBERED_MAX`].
    pub(crate) fn prune(&mut self, now: Instant) {
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
    running: &BTreeMap<ChunkHandle, String>,
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
    let mut load: BTreeMap<&str, usize> = live.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    let busy: BTreeSet<&str> = running.values().map(String::as_str).collect();
    let mut jobs = Vec::new();
    for (good_count, _, c, good) in wanting {
        if jobs.len() >= slots {
            break;
        }
        let capacity = meta
            .logs
            .get(&c.log)
            .map(|l| l.chunk_bytes)
            .unwrap_or(c.length.into());
        let need_free = capacity.saturating_add(min_free_bytes);
        // Holders of a usable prefix; a corrupt, failed, longer or newer copy is no head start
        // (a copy only extends a prefix: the target refuses to cut an open replica).
        let holders: BTreeSet<String> = servers
            .replicas_of(c.handle)
            .into_iter()
            .filter(|(_, r)| is_prefix(c, r))
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

/// An empty sealed chunk to recreate on `target` from the metadata alone
/// ([`empty_chunks_to_recreate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecreateEmpty {
    pub(crate) log: String,
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
    pub(crate) capacity: u64,
    pub(crate) target: String,
}

/// Sealed chunks that hold no record (sealed at the chunk header's length, so their every byte
/// is known from the metadata) and of which no live chunkserver holds a usable replica: each
/// gets a new empty replica, created at the chunk's version and sealed at the header's length,
/// on a live chunkserver that reports no replica of it (fewest recent failures, then least
/// loaded, then by address), up to `slots` of them. The copy loop then brings the chunk back
/// to its factor from that replica.
///
/// Why: a seal may complete on one replica (the only one that answered the fence), and that
/// replica may then be lost with its disk; with nothing to copy from and no prefix to salvage,
/// the chunk stayed without a replica forever and every replay of its log failed on it
/// (simulator seed 28034). An empty chunk holds no acknowledged record, so the recreated
/// replica is byte for byte what was lost: a chunk header. Chunks with a replica that is stale
/// or unsealed but healthy are left to the fence and seal-in-place rules; chunks being copied
/// (`running`) and the first `dead_after` after the master started (chunkservers are still
/// registering) are left alone.
#[allow(clippy::too_many_arguments)]
pub(crate) fn empty_chunks_to_recreate(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
    master_started: Instant,
    running: &BTreeMap<ChunkHandle, String>,
    slots: usize,
    min_free_bytes: u64,
    failed: &FailedCopies,
) -> Vec<RecreateEmpty> {
    if now.saturating_duration_since(master_started) < dead_after {
        return Vec::new();
    }
    let live = servers.live(now, dead_after);
    let mut load: BTreeMap<&str, usize> = live.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    let mut out = Vec::new();
    for c in meta.chunks.values() {
        if out.len() >= slots {
            break;
        }
        if c.state != ChunkState::Sealed
            || c.length != ChunkOffset::FIRST_FRAME
            || running.contains_key(&c.handle)
        {
            continue;
        }
        let Some(log) = meta.logs.get(&c.log) else {
            continue;
        };
        let reports = servers.replicas_of(c.handle);
        // A good replica is a prefix too (sealed at the whole length).
        let usable = reports
            .iter()
            .any(|(a, r)| is_prefix(c, r) && servers.is_live(a, now, dead_after));
        if usable {
            continue;
        }
        let need_free = log.chunk_bytes.saturating_add(min_free_bytes);
        let target = live
            .iter()
            .map(|(a, _)| a.as_str())
            .filter(|a| !reports.iter().any(|(r, _)| r == a))
            .filter(|a| servers.has_room(a, need_free))
            .min_by_key(|a| (failed.since(c.handle, a), load.get(a).copied(), *a));
        let Some(target) = target else {
            continue;
        };
        *load.entry(target).or_default() += 1;
        out.push(RecreateEmpty {
            log: c.log.clone(),
            handle: c.handle,
            version: c.version,
            capacity: log.chunk_bytes,
            target: target.to_owned(),
        });
    }
    out
}

/// Counters of the repair loop since the master started, and its memory of failed copies.
#[derive(Debug, Default)]
pub(crate) struct RepairStats {
    pub(crate) copies_done: AtomicU64,
    pub(crate) copies_failed: AtomicU64,
    pub(crate) bytes_copied: AtomicU64,
    /// Source replicas marked corrupt because a copy found their bytes bad.
    pub(crate) sources_marked_corrupt: AtomicU64,
    /// Empty sealed chunks recreated from the metadata ([`empty_chunks_to_recreate`]).
    pub(crate) empty_recreated: AtomicU64,
    /// Recently failed copies (taken after the metadata lock, never held across an `.await`).
    failed: Mutex<FailedCopies>,
    /// `bytes_copied` as the last [`COPY_RATE_SAMPLES`] repair passes saw it, oldest first: the
    /// recent copy rate the status shows, and its ETA.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

/// Repair passes (one per heartbeat period) over which the copy rate is measured.
const COPY_RATE_SAMPLES: usize = 30;

impl RepairStats {
    /// Notes `bytes_copied` at `now` (each repair pass).
    pub(crate) fn sample(&self, now: Instant) {
        let copied = self.bytes_copied.load(Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == COPY_RATE_SAMPLES {
            samples.pop_front();
        }
        samples.push_back((now, copied));
    }

    /// Bytes copied per second over the sampled passes; 0 before two samples.
    pub(crate) fn copy_rate(&self) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        match (samples.front(), samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1 - b0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    pub(crate) fn failed(&self) -> std::sync::MutexGuard<'_, FailedCopies> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When to retry a failed step, and the wait after the next failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Not before this instant.
    pub(crate) next: Instant,
    /// The wait that set `next`.
    pub(crate) delay: Duration,
}

impl Backoff {
    /// The backoff after a failure at `now`, following `previous` (if any): the delay doubles
    /// from `first` up to `max`.
    pub(crate) fn after_failure(
        previous: Option<Backoff>,
        now: Instant,
        first: Duration,
        max: Duration,
    ) -> Backoff {
        let delay = previous.map_or(first, |b| (b.delay * 2).min(max));
        Backoff {
            next: now + delay,
            delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::ReplicaReport;
    use crate::meta::Entry;

    const H: ChunkHandle = ChunkHandle(0x11);
    const DEAD_AFTER: Duration = Duration::from_secs(10);

    fn report(version: ChunkVersion, length: u64, sealed: bool, primary: bool) -> ReplicaReport {
        ReplicaReport {
            handle: H,
            version,
            length: ChunkOffset(length),
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
            ("a", report(ChunkVersion(1), 4096, false, true)),
            ("b", report(ChunkVersion(1), 4096, false, false)),
            ("c", report(ChunkVersion(1), 4096, false, false)),
        ];
        let meta = open_chunk();
        let found =
            |meta: &Metadata, s: &Servers| orphaned_open_chunks(meta, s, now, DEAD_AFTER, started);
        assert!(found(&meta, &servers(now, &healthy)).is_empty());
        let fresh = [
            ("a", report(ChunkVersion(1), 32, false, false)),
            healthy[1],
            healthy[2],
        ];
        assert!(found(&meta, &servers(now, &fresh)).is_empty());
        let restarted = [
            ("a", report(ChunkVersion(1), 4096, false, false)),
            healthy[1],
            healthy[2],
        ];
        let f = found(&meta, &servers(now, &restarted));
        assert_eq!(f.len(), 1);
        assert!(f[0].reason.contains("restarted"), "{f:?}");

        // A failed seal left the master at version 5 while the replicas kept version 1 and the
        // primary (restarted, or not) reports whatever it has.
        let mut bumped = open_chunk();
        bumped
            .apply(&Entry::Version {
                handle: H,
                version: ChunkVersion(5),
            })
            .unwrap();
        let f = found(&bumped, &servers(now, &healthy));
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].handle, f[0].version), (H, ChunkVersion(5)));
        assert!(f[0].reason.contains("seal began"), "{f:?}");

        // Every chunkserver silent: nothing to fence yet.
        let long_ago = now - 2 * DEAD_AFTER;
        assert!(found(&bumped, &servers(long_ago, &healthy)).is_empty());
        // Only the primary silent: it is dead.
        let mut s = servers(now, &healthy[1..]);
        s.register("a", long_ago, &[healthy[0].1], Duration::ZERO);
        let f = found(&meta, &s);
        assert_eq!(f.len(), 1);
        assert!(f[0].reason.contains("dead"), "{f:?}");
    }

    // Replicas of a sealed chunk still open at an older version (they missed its seal) are
    // fenced with the chunk's version; sealed, failed, corrupt (they refuse a fence, seed 3
    // fenced one every pass), current or silent ones are not.
    #[test]
    fn stale_open_replicas_are_found() {
        let now = Instant::now();
        let meta = crate::meta::one_sealed_chunk(H);
        let mut failed = report(ChunkVersion(1), 1024, false, false);
        failed.failed = true;
        let mut s = servers(
            now,
            &[
                ("a", report(ChunkVersion(2), 4096, true, false)),
                ("b", report(ChunkVersion(1), 1024, false, false)),
                ("c", report(ChunkVersion(2), 1024, false, false)),
                ("d", failed),
                ("e", report(ChunkVersion(1), 1024, true, false)),
            ],
        );
        s.register(
            "f",
            now - 2 * DEAD_AFTER,
            &[report(ChunkVersion(1), 1024, false, false)],
            Duration::ZERO,
        );
        let mut corrupt = report(ChunkVersion(1), 1024, false, false);
        corrupt.corrupt = true;
        s.register("g", now, &[corrupt], Duration::ZERO);
        assert_eq!(
            stale_open_replicas(&meta, &s, now, DEAD_AFTER),
            vec![ReplicasToSeal {
                handle: H,
                version: ChunkVersion(2),
                length: ChunkOffset(4096),
                addresses: vec!["b".to_owned()],
            }]
        );
        assert!(complete_unsealed_replicas(&meta, &s, now, DEAD_AFTER).is_empty());
    }

    // Proves: a replica that missed the seal is sealed in place only when it is open at the
    // chunk's version, at least the sealed length, healthy and live: not shorter, not at an older
    // version (that one is fenced first), not corrupt, not sealed already.
    #[test]
    fn complete_unsealed_replicas_are_found() {
        let now = Instant::now();
        let meta = crate::meta::one_sealed_chunk(H);
        let mut corrupt = report(ChunkVersion(2), 4096, false, false);
        corrupt.corrupt = true;
        let s = servers(
            now,
            &[
                ("a", report(ChunkVersion(2), 4096, true, false)),
                ("b", report(ChunkVersion(2), 4096, false, false)),
                ("c", report(ChunkVersion(2), 1024, false, false)),
                ("d", report(ChunkVersion(1), 4096, false, false)),
                ("e", corrupt),
                ("f", report(ChunkVersion(2), 8192, false, false)),
            ],
        );
        assert_eq!(
            complete_unsealed_replicas(&meta, &s, now, DEAD_AFTER),
            vec![ReplicasToSeal {
                handle: H,
                version: ChunkVersion(2),
                length: ChunkOffset(4096),
                addresses: vec!["b".to_owned(), "f".to_owned()],
            }]
        );
    }

    /// [`crate::meta::one_open_chunk`] sealed at version 2 with no record (length 32), on `a`.
    fn one_empty_sealed_chunk() -> Metadata {
        let mut meta = open_chunk();
        for e in [
            Entry::Version {
                handle: H,
                version: ChunkVersion(2),
            },
            Entry::Seal {
                handle: H,
                version: ChunkVersion(2),
                length: ChunkOffset::FIRST_FRAME,
                replicas: vec!["a".into()],
                writer_marks: Vec::new(),
            },
        ] {
            meta.apply(&e).unwrap();
        }
        meta
    }

    // Proves (simulator seed 28034): an empty sealed chunk with no usable replica on a live
    // chunkserver is recreated on one that reports none of it (the least loaded, then by
    // address; a target of a recent failure last), once the master has run `dead_after`; not
    // while a live replica is good or a healthy prefix (the other rules catch those up), not
    // while a copy runs, not beyond `slots`, and never a chunk holding records.
    #[tokio::test(start_paused = true)]
    async fn empty_sealed_chunks_without_replicas_are_recreated() {
        tokio::time::advance(2 * DEAD_AFTER).await;
        let now = Instant::now();
        let started = now - DEAD_AFTER;
        let meta = one_empty_sealed_chunk();
        let none = BTreeMap::new();
        let no_failures = FailedCopies::default();
        let find =
            |s: &Servers, running: &BTreeMap<ChunkHandle, String>, slots, started, failed| {
                empty_chunks_to_recreate(
                    &meta, s, now, DEAD_AFTER, started, running, slots, 0, failed,
                )
            };
        let mut failed_replica = report(ChunkVersion(2), 32, true, false);
        failed_replica.failed = true;
        // `a` (the sealer) came back wiped, `b` holds a failed replica, `c` and `d` nothing;
        // `c` already holds another chunk, so `d` is the least loaded.
        let mut s = Servers::default();
        s.register("a", now, &[], Duration::ZERO);
        s.register("b", now, &[failed_replica], Duration::ZERO);
        let mut other = report(ChunkVersion(1), 32, false, false);
        other.handle = ChunkHandle(0x99);
        s.register("c", now, &[other], Duration::ZERO);
        s.register("d", now, &[], Duration::ZERO);
        s.register("e", now - 2 * DEAD_AFTER, &[], Duration::ZERO);
        let want = |target: &str| RecreateEmpty {
            log: "/l".into(),
            handle: H,
            version: ChunkVersion(2),
            capacity: 1 << 20,
            target: target.into(),
        };
        assert_eq!(find(&s, &none, 4, started, &no_failures), vec![want("a")]);
        let mut failed = FailedCopies::default();
        failed.note(H, "a", now);
        assert_eq!(find(&s, &none, 4, started, &failed), vec![want("d")]);
        assert!(
            find(&s, &none, 4, now, &no_failures).is_empty(),
            "chunkservers may still be registering"
        );
        assert!(find(&s, &none, 0, started, &no_failures).is_empty());
        let running = BTreeMap::from([(H, "d".to_owned())]);
        assert!(find(&s, &running, 4, started, &no_failures).is_empty());
        for usable in [
            report(ChunkVersion(2), 32, true, false),
            report(ChunkVersion(1), 32, false, false),
        ] {
            let mut s = servers(now, &[("c", usable)]);
            s.register("d", now, &[], Duration::ZERO);
            assert!(
                find(&s, &none, 4, started, &no_failures).is_empty(),
                "{usable:?}"
            );
        }
        // A usable replica on a dead chunkserver does not count.
        let mut s = Servers::default();
        s.register(
            "c",
            now - 2 * DEAD_AFTER,
            &[report(ChunkVersion(2), 32, true, false)],
            Duration::ZERO,
        );
        s.register("d", now, &[], Duration::ZERO);
        assert_eq!(find(&s, &none, 4, started, &no_failures), vec![want("d")]);
        // A chunk that holds records is never recreated: its bytes are not in the metadata.
        let with_records = crate::meta::one_sealed_chunk(H);
        let s = servers(now, &[("d", other)]);
        assert!(
            empty_chunks_to_recreate(
                &with_records,
                &s,
                now,
                DEAD_AFTER,
                started,
                &none,
                4,
                0,
                &no_failures
            )
            .is_empty()
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

    // Proves: a failed step waits `first`, then twice as long after each further failure, up
    // to `max`.
    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let now = Instant::now();
        let (first, max) = (Duration::from_millis(400), Duration::from_secs(5));
        let mut b = Backoff::after_failure(None, now, first, max);
        let mut delays = vec![b.delay];
        for _ in 0..5 {
            b = Backoff::after_failure(Some(b), now, first, max);
            delays.push(b.delay);
        }
        let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.next, now + max);
    }
}
