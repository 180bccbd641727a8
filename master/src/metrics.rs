//! The master's metrics (`cairn_master_*`, listed in docs/metrics.md): seals by reason and
//! chunk allocations counted as they happen ([`MasterCounts`]); everything else read from the
//! cluster's status ([`crate::core::status`]) at each scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use cairn_metrics::{Metrics, advance};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::chunkserver_api::ChunkserverApi;
use crate::core::MasterCore;
use crate::office::Office;

/// Why a chunk was sealed, as a metric label: the reason a client gave (`SealChunk`), or the
/// master's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SealKind {
    /// The client found the chunk full.
    ChunkFull,
    /// An append failed at the primary.
    AppendFailed,
    /// The client could not reach the primary.
    PrimaryUnreachable,
    /// A writer resumed (`ResumeWriter`).
    WriterResumed,
    /// The repair loop sealed an open chunk whose primary is gone.
    PrimaryGone,
    /// Allocation found the open chunk without any replica.
    NoReplica,
    /// Every replica of the open chunk was gone though one had reported records: sealed with
    /// those bytes recorded as lost.
    ReplicasLost,
    /// Anything else (an unspecified client reason).
    Other,
}

impl SealKind {
    const ALL: [SealKind; 8] = [
        SealKind::ChunkFull,
        SealKind::AppendFailed,
        SealKind::PrimaryUnreachable,
        SealKind::WriterResumed,
        SealKind::PrimaryGone,
        SealKind::NoReplica,
        SealKind::ReplicasLost,
        SealKind::Other,
    ];

    /// The kind of the seal reason `reason` (as the seal driver logs it).
    pub(crate) fn of(reason: &str) -> SealKind {
        if reason.starts_with("SEAL_REASON_CHUNK_FULL") {
            SealKind::ChunkFull
        } else if reason.starts_with("SEAL_REASON_APPEND_FAILED") {
            SealKind::AppendFailed
        } else if reason.starts_with("SEAL_REASON_PRIMARY_UNREACHABLE") {
            SealKind::PrimaryUnreachable
        } else if reason == "writer resumed" {
            SealKind::WriterResumed
        } else if reason.starts_with("primary ") || reason.starts_with("a seal began") {
            SealKind::PrimaryGone
        } else if reason == "no replica reported" {
            SealKind::NoReplica
        } else if reason == REPLICAS_LOST {
            SealKind::ReplicasLost
        } else {
            SealKind::Other
        }
    }

    fn label(self) -> &'static str {
        match self {
            SealKind::ChunkFull => "chunk_full",
            SealKind::AppendFailed => "append_failed",
            SealKind::PrimaryUnreachable => "primary_unreachable",
            SealKind::WriterResumed => "writer_resumed",
            SealKind::PrimaryGone => "primary_gone",
            SealKind::NoReplica => "no_replica",
            SealKind::ReplicasLost => "replicas_lost",
            SealKind::Other => "other",
        }
    }
}

/// The seal reason counted for a chunk sealed with every replica lost (`seal_lost`).
pub(crate) const REPLICAS_LOST: &str = "every replica lost";

/// What the master counts as it works (the rest of its metrics are read from its state).
#[derive(Debug, Default)]
pub(crate) struct MasterCounts {
    seals: [AtomicU64; SealKind::ALL.len()],
    allocations: AtomicU64,
}

impl MasterCounts {
    /// A seal for `reason` completed (logged).
    pub(crate) fn sealed(&self, reason: &str) {
        let kind = SealKind::of(reason);
        let i = SealKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.seals[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A chunk was allocated (a log's first chunk, or the next one after a seal).
    pub(crate) fn allocated(&self) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    chunkserver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

struct Families {
    seals: Family<ReasonLabels, Counter>,
    allocations: Counter,
    chunkservers: Family<StateLabels, Gauge>,
    free_bytes: Family<ServerLabels, Gauge>,
    replicas: Family<ServerLabels, Gauge>,
    logs: Gauge,
    chunks: Family<StateLabels, Gauge>,
    under_replicated: Gauge,
    corrupt: Gauge,
    repairs_running: Gauge,
    repairs_queued: Gauge,
    copies: Family<OutcomeLabels, Counter>,
    bytes_copied: Counter,
    uptime: Gauge,
}

impl Families {
    fn register(r: &mut Registry) -> Families {
        let f = Families {
            seals: Family::default(),
            allocations: Counter::default(),
            chunkservers: Family::default(),
            free_bytes: Family::default(),
            replicas: Family::default(),
            logs: Gauge::default(),
            chunks: Family::default(),
            under_replicated: Gauge::default(),
            corrupt: Gauge::default(),
            repairs_running: Gauge::default(),
            repairs_queued: Gauge::default(),
            copies: Family::default(),
            bytes_copied: Counter::default(),
            uptime: Gauge::default(),
        };
        let p = "cairn_master_";
        r.register(
            format!("{p}seals"),
            "Chunks sealed, by reason",
            f.seals.clone(),
        );
        r.register(
            format!("{p}chunks_allocated"),
            "Chunks allocated (a log's first chunk, or the next after a seal: a roll)",
            f.allocations.clone(),
        );
        r.register(
            format!("{p}chunkservers"),
            "Chunkservers registered since the master started, by state (live, dead)",
            f.chunkservers.clone(),
        );
        r.register(
            format!("{p}chunkserver_free_bytes"),
            "Free bytes each chunkserver last reported",
            f.free_bytes.clone(),
        );
        r.register(
            format!("{p}chunkserver_replicas"),
            "Replicas each chunkserver holds, as the master knows them",
            f.replicas.clone(),
        );
        r.register(format!("{p}logs"), "Logs in the namespace", f.logs.clone());
        r.register(
            format!("{p}chunks"),
            "Chunks in the namespace, by state (open, sealed)",
            f.chunks.clone(),
        );
        r.register(
            format!("{p}under_replicated_chunks"),
            "Sealed chunks with fewer good replicas on live chunkservers than their factor",
            f.under_replicated.clone(),
        );
        r.register(
            format!("{p}corrupt_chunks"),
            "Chunks with a replica marked or reported corrupt",
            f.corrupt.clone(),
        );
        r.register(
            format!("{p}repairs_running"),
            "Re-replication copies running",
            f.repairs_running.clone(),
        );
        r.register(
            format!("{p}repairs_queued"),
            "Re-replication copies needed beyond the running ones",
            f.repairs_queued.clone(),
        );
        r.register(
            format!("{p}repair_copies"),
            "Re-replication copies finished, by outcome (done, failed)",
            f.copies.clone(),
        );
        r.register(
            format!("{p}repair_bytes_copied"),
            "Bytes copied by re-replication",
            f.bytes_copied.clone(),
        );
        r.register(
            format!("{p}uptime_seconds"),
            "Seconds since the master process started",
            f.uptime.clone(),
        );
        f
    }
}

/// The counts last mirrored into counters.
#[derive(Default)]
struct Mirrored {
    seals: [AtomicU64; SealKind::ALL.len()],
    allocations: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// Registers the master in `metrics`: its families, refreshed at each scrape from the counts
/// and status of the core in `office` while the master runs (unchanged while the office is
/// empty). A new core's counts start at zero, so the counters go on from what the old one had
/// counted.
pub(crate) fn register<C: ChunkserverApi + 'static>(metrics: &Metrics, office: &Arc<Office<C>>) {
    let f = metrics.families(Families::register);
    let office: Weak<Office<C>> = Arc::downgrade(office);
    let seen = std::sync::Mutex::new((0u64, Mirrored::default()));
    metrics.on_scrape(move || {
        let Some(office) = office.upgrade() else {
            return false;
        };
        if let Some((core, term)) = office.core_and_term() {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 != term {
                *seen = (term, Mirrored::default());
            }
            refresh(&core, &f, &seen.1);
        }
        true
    });
}

fn refresh<C: ChunkserverApi>(core: &MasterCore<C>, f: &Families, seen: &Mirrored) {
    let counts = core.counts();
    for (i, kind) in SealKind::ALL.iter().enumerate() {
        let total = counts.seals[i].load(Ordering::Relaxed);
        let labels = ReasonLabels {
            reason: kind.label(),
        };
        advance(&f.seals.get_or_create(&labels), &seen.seals[i], total);
    }
    advance(
        &f.allocations,
        &seen.allocations,
        counts.allocations.load(Ordering::Relaxed),
    );
    let status = core.status();
    let live = status.chunkservers.iter().filter(|s| s.live).count();
    let dead = status.chunkservers.len() - live;
    f.chunkservers
        .get_or_create(&StateLabels { state: "live" })
        .set(live as i64);
    f.chunkservers
        .get_or_create(&StateLabels { state: "dead" })
        .set(dead as i64);
    for s in &status.chunkservers {
        let labels = ServerLabels {
            chunkserver: s.address.clone(),
        };
        if let Some(free) = s.free_bytes {
            f.free_bytes
                .get_or_create(&labels)
                .set(i64::try_from(free).unwrap_or(i64::MAX));
        }
        f.replicas.get_or_create(&labels).set(s.replicas as i64);
    }
    f.logs.set(status.logs as i64);
    f.chunks
        .get_or_create(&StateLabels { state: "open" })
        .set(status.open_chunks as i64);
    f.chunks
        .get_or_create(&StateLabels { state: "sealed" })
        .set(status.sealed_chunks as i64);
    f.under_replicated.set(status.under_replicated_total as i64);
    f.corrupt.set(status.corrupt_total as i64);
    let r = &status.repairs;
    f.repairs_running.set(r.running.len() as i64);
    f.repairs_queued.set(r.queued as i64);
    // Owned handles: a family's read guard held while another label is created would deadlock.
    let done = f
        .copies
        .get_or_create_owned(&OutcomeLabels { outcome: "done" });
    advance(&done, &seen.done, r.copies_done);
    let failed = f
        .copies
        .get_or_create_owned(&OutcomeLabels { outcome: "failed" });
    advance(&failed, &seen.failed, r.copies_failed);
    advance(&f.bytes_copied, &seen.bytes, r.bytes_copied);
    f.uptime.set(status.uptime.as_secs() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_reasons_map_to_a_bounded_set_of_labels() {
        assert_eq!(SealKind::of("SEAL_REASON_CHUNK_FULL"), SealKind::ChunkFull);
        assert_eq!(
            SealKind::of("SEAL_REASON_APPEND_FAILED: primary said no"),
            SealKind::AppendFailed
        );
        assert_eq!(
            SealKind::of("primary 127.0.0.1:7001 is dead"),
            SealKind::PrimaryGone
        );
        assert_eq!(
            SealKind::of("a seal began (version 3) and did not finish"),
            SealKind::PrimaryGone
        );
        assert_eq!(SealKind::of("writer resumed"), SealKind::WriterResumed);
        assert_eq!(SealKind::of("no replica reported"), SealKind::NoReplica);
        assert_eq!(SealKind::of("SEAL_REASON_UNSPECIFIED"), SealKind::Other);
        let counts = MasterCounts::default();
        counts.sealed("SEAL_REASON_CHUNK_FULL");
        counts.sealed("writer resumed");
        counts.sealed("writer resumed");
        assert_eq!(counts.seals[0].load(Ordering::Relaxed), 1);
        assert_eq!(counts.seals[3].load(Ordering::Relaxed), 2);
    }
}
