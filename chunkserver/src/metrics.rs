//! The chunkserver's metrics (`cairn_chunkserver_*`, listed in docs/metrics.md), every one
//! labelled `chunkserver` with the advertised address (a process may run several).
//!
//! Appends and copies are counted where they are answered; group commits and fsyncs are timed
//! by the store's writers; the store's and the scrubber's own counts, the replicas held and the
//! free space are read at each scrape.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_metrics::{Metrics, advance, count_buckets, latency_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::server_disk::ServerDisk;
use crate::store::{ChunkStore, Store};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    chunkserver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    chunkserver: String,
    file: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    chunkserver: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    chunkserver: String,
    state: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every chunkserver family of the process, registered once.
struct Families {
    append_records: Family<Labels, Counter>,
    append_bytes: Family<Labels, Counter>,
    append_seconds: Histograms<Labels>,
    append_batch_records: Histograms<Labels>,
    store_appends: Family<Labels, Counter>,
    group_commits: Family<Labels, Counter>,
    group_commit_batches: Histograms<Labels>,
    fsyncs: Family<FileLabels, Counter>,
    fsync_seconds: Histograms<Labels>,
    copies: Family<OutcomeLabels, Counter>,
    copied_bytes: Family<Labels, Counter>,
    scrub_passes: Family<Labels, Counter>,
    scrub_replicas: Family<Labels, Counter>,
    scrub_bytes: Family<Labels, Counter>,
    corrupt_found: Family<Labels, Counter>,
    replicas: Family<StateLabels, Gauge>,
    free_bytes: Family<Labels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

fn count_histogram() -> Histogram {
    Histogram::new(count_buckets())
}

impl Families {
    fn register(r: &mut Registry) -> Families {
        let f = Families {
            append_records: Family::default(),
            append_bytes: Family::default(),
            append_seconds: Family::new_with_constructor(latency_histogram),
            append_batch_records: Family::new_with_constructor(count_histogram),
            store_appends: Family::default(),
            group_commits: Family::default(),
            group_commit_batches: Family::new_with_constructor(count_histogram),
            fsyncs: Family::default(),
            fsync_seconds: Family::new_with_constructor(latency_histogram),
            copies: Family::default(),
            copied_bytes: Family::default(),
            scrub_passes: Family::default(),
            scrub_replicas: Family::default(),
            scrub_bytes: Family::default(),
            corrupt_found: Family::default(),
            replicas: Family::default(),
            free_bytes: Family::default(),
        };
        let p = "cairn_chunkserver_";
        r.register(
            format!("{p}append_records"),
            "Records acknowledged by Append as the primary (resent ones already stored included)",
            f.append_records.clone(),
        );
        r.register(
            format!("{p}append_bytes"),
            "Framed bytes received in Append requests as the primary",
            f.append_bytes.clone(),
        );
        r.register(
            format!("{p}append_seconds"),
            "Time from an Append request's arrival at the primary to its answer (local write, \
             fdatasync and the secondaries' acknowledgements)",
            f.append_seconds.clone(),
        );
        r.register(
            format!("{p}append_batch_records"),
            "Records per Append request",
            f.append_batch_records.clone(),
        );
        r.register(
            format!("{p}store_appends"),
            "Batches made durable by the store (as primary or secondary)",
            f.store_appends.clone(),
        );
        r.register(
            format!("{p}group_commits"),
            "Group commits: one write and one fdatasync of a chunk file each",
            f.group_commits.clone(),
        );
        r.register(
            format!("{p}group_commit_batches"),
            "Batches (Append or Forward requests) per group commit",
            f.group_commit_batches.clone(),
        );
        r.register(
            format!("{p}fsyncs"),
            "fdatasync calls, by file (data: chunk files; meta: .meta files)",
            f.fsyncs.clone(),
        );
        r.register(
            format!("{p}fsync_seconds"),
            "Duration of a group commit's fdatasync of a chunk file",
            f.fsync_seconds.clone(),
        );
        r.register(
            format!("{p}copies"),
            "Replicate requests (re-replication copies to this chunkserver), by outcome",
            f.copies.clone(),
        );
        r.register(
            format!("{p}copied_bytes"),
            "Bytes copied from other replicas by Replicate",
            f.copied_bytes.clone(),
        );
        r.register(
            format!("{p}scrub_passes"),
            "Scrub passes finished",
            f.scrub_passes.clone(),
        );
        r.register(
            format!("{p}scrub_replicas"),
            "Replicas verified to the end by the scrubber",
            f.scrub_replicas.clone(),
        );
        r.register(
            format!("{p}scrub_bytes"),
            "Bytes read and verified by the scrubber",
            f.scrub_bytes.clone(),
        );
        r.register(
            format!("{p}corrupt_replicas_found"),
            "Replicas found corrupt, by the scrubber or by a failed read",
            f.corrupt_found.clone(),
        );
        r.register(
            format!("{p}replicas"),
            "Replicas held now, by state (open, sealed, failed, corrupt)",
            f.replicas.clone(),
        );
        r.register(
            format!("{p}free_bytes"),
            "Free bytes on the data directory's file system",
            f.free_bytes.clone(),
        );
        f
    }
}

/// One chunkserver's metrics: what its RPC handlers count.
pub(crate) struct ChunkserverMetrics {
    append_records: Counter,
    append_bytes: Counter,
    append_seconds: Histogram,
    append_batch_records: Histogram,
    copies_done: Counter,
    copies_failed: Counter,
    copied_bytes: Counter,
}

/// The store's writers' timings, set once the chunkserver's metrics are registered.
#[derive(Clone, Debug)]
pub(crate) struct WriterMetrics {
    /// Duration of each group commit's fdatasync, in seconds.
    pub(crate) fsync_seconds: Histogram,
    /// Batches per group commit.
    pub(crate) group_batches: Histogram,
}

impl ChunkserverMetrics {
    /// Registers the chunkserver at `address` (its store `store`) in `metrics`: the handlers'
    /// counts, the writers' timings, and a refresher reading the store at each scrape.
    pub(crate) fn register(
        metrics: &Metrics,
        address: &str,
        store: &Arc<Store<ServerDisk>>,
    ) -> ChunkserverMetrics {
        let f = metrics.families(Families::register);
        let labels = Labels {
            chunkserver: address.to_owned(),
        };
        let outcome = |outcome| OutcomeLabels {
            chunkserver: address.to_owned(),
            outcome,
        };
        store.set_writer_metrics(WriterMetrics {
            fsync_seconds: f.fsync_seconds.get_or_create_owned(&labels),
            group_batches: f.group_commit_batches.get_or_create_owned(&labels),
        });
        let mirrored = Mirrored::default();
        let (weak, families, at) = (Arc::downgrade(store), f.clone(), labels.clone());
        metrics.on_scrape(move || refresh(&weak, &families, &at, &mirrored));
        ChunkserverMetrics {
            append_records: f.append_records.get_or_create_owned(&labels),
            append_bytes: f.append_bytes.get_or_create_owned(&labels),
            append_seconds: f.append_seconds.get_or_create_owned(&labels),
            append_batch_records: f.append_batch_records.get_or_create_owned(&labels),
            copies_done: f.copies.get_or_create_owned(&outcome("done")),
            copies_failed: f.copies.get_or_create_owned(&outcome("failed")),
            copied_bytes: f.copied_bytes.get_or_create_owned(&labels),
        }
    }

    /// An Append answered after `took`: `records` records of `bytes` framed bytes.
    pub(crate) fn appended(&self, records: usize, bytes: usize, took: Duration) {
        self.append_records.inc_by(records as u64);
        self.append_bytes.inc_by(bytes as u64);
        self.append_seconds.observe(took.as_secs_f64());
        self.append_batch_records.observe(records as f64);
    }

    /// A Replicate finished: `Some(bytes)` copied, or `None` when it failed.
    pub(crate) fn copied(&self, bytes: Option<u64>) {
        match bytes {
            Some(bytes) => {
                self.copies_done.inc();
                self.copied_bytes.inc_by(bytes);
            }
            None => {
                self.copies_failed.inc();
            }
        }
    }
}

/// The store's counts as last mirrored into the families.
#[derive(Default)]
struct Mirrored {
    appends: AtomicU64,
    groups: AtomicU64,
    data_fsyncs: AtomicU64,
    meta_fsyncs: AtomicU64,
    scrub_passes: AtomicU64,
    scrub_replicas: AtomicU64,
    scrub_bytes: AtomicU64,
    corrupt: AtomicU64,
}

/// Copies the store's counts and state into the families; `false` once the store is closed.
fn refresh(
    store: &Weak<Store<ServerDisk>>,
    f: &Families,
    labels: &Labels,
    seen: &Mirrored,
) -> bool {
    let Some(store) = store.upgrade() else {
        return false;
    };
    let file = |file| FileLabels {
        chunkserver: labels.chunkserver.clone(),
        file,
    };
    let state = |state| StateLabels {
        chunkserver: labels.chunkserver.clone(),
        state,
    };
    let s = store.stats();
    advance(
        &f.store_appends.get_or_create(labels),
        &seen.appends,
        s.appends,
    );
    advance(
        &f.group_commits.get_or_create(labels),
        &seen.groups,
        s.groups,
    );
    advance(
        &f.fsyncs.get_or_create(&file("data")),
        &seen.data_fsyncs,
        s.data_fsyncs,
    );
    advance(
        &f.fsyncs.get_or_create(&file("meta")),
        &seen.meta_fsyncs,
        s.meta_fsyncs,
    );
    let scrub = store.scrub_stats();
    advance(
        &f.scrub_passes.get_or_create(labels),
        &seen.scrub_passes,
        scrub.passes,
    );
    advance(
        &f.scrub_replicas.get_or_create(labels),
        &seen.scrub_replicas,
        scrub.replicas,
    );
    advance(
        &f.scrub_bytes.get_or_create(labels),
        &seen.scrub_bytes,
        scrub.bytes,
    );
    advance(
        &f.corrupt_found.get_or_create(labels),
        &seen.corrupt,
        scrub.corrupt,
    );
    let (mut open, mut sealed, mut failed, mut corrupt) = (0, 0, 0, 0);
    for r in store.list() {
        if r.failed {
            failed += 1;
        } else if !r.corrupt.is_empty() {
            corrupt += 1;
        } else if r.sealed {
            sealed += 1;
        } else {
            open += 1;
        }
    }
    for (name, n) in [
        ("open", open),
        ("sealed", sealed),
        ("failed", failed),
        ("corrupt", corrupt),
    ] {
        f.replicas.get_or_create(&state(name)).set(n);
    }
    if let Some(free) = store.disk().free_bytes(store.dir()) {
        f.free_bytes
            .get_or_create(labels)
            .set(i64::try_from(free).unwrap_or(i64::MAX));
    }
    true
}
