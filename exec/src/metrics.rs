//! The execution layer's metrics (`cairn_exec_*`, listed in docs/metrics.md): a front door's
//! calls, their latency and its dissents, labelled `service`; a replica's executions by outcome
//! and their duration and its worker starts, labelled `service` and `replica`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_metrics::{Metrics, advance, latency_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::front_door::FrontDoor;
use crate::records::{CODE_CRASH, CODE_TIMEOUT};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    service: String,
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    service: String,
    replica: String,
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

struct DoorFamilies {
    calls: Family<CallLabels, Counter>,
    call_seconds: Histograms<ServiceLabels>,
    dissents: Family<ServiceLabels, Counter>,
    quarantined: Family<ServiceLabels, Counter>,
}

impl DoorFamilies {
    fn register(r: &mut Registry) -> DoorFamilies {
        let f = DoorFamilies {
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram),
            dissents: Family::default(),
            quarantined: Family::default(),
        };
        r.register(
            "cairn_exec_calls",
            "Calls a front door answered, by outcome (answered: with a verdict, retries with an \
             idempotency key included; idempotent: of those, retries given an earlier call's \
             verdict; pending: DEADLINE_EXCEEDED, recorded PENDING; refused: the input is \
             quarantined)",
            f.calls.clone(),
        );
        r.register(
            "cairn_exec_call_seconds",
            "A call answered with a verdict, from its arrival at the front door to its answer",
            f.call_seconds.clone(),
        );
        r.register(
            "cairn_exec_dissents",
            "Outputs that differed from their request's verdict (a replica reported faulty)",
            f.dissents.clone(),
        );
        r.register(
            "cairn_exec_quarantined",
            "Inputs this front door quarantined (f+1 replicas crashed or timed out on them)",
            f.quarantined.clone(),
        );
        f
    }
}

/// The front door's counts as last mirrored.
#[derive(Default)]
struct DoorSeen {
    answered: AtomicU64,
    idempotent: AtomicU64,
    pending: AtomicU64,
    refused: AtomicU64,
    dissents: AtomicU64,
    quarantined: AtomicU64,
}

/// Registers `door` (of service `service`) in `metrics`: its counts at each scrape, and the
/// histogram of its calls' latency, which it returns for the door to observe.
pub(crate) fn register_front_door(
    metrics: &Metrics,
    service: &str,
    door: &Arc<FrontDoor>,
) -> Histogram {
    let f = metrics.families(DoorFamilies::register);
    let labels = ServiceLabels {
        service: service.to_owned(),
    };
    let latency = f.call_seconds.get_or_create_owned(&labels);
    let weak: Weak<FrontDoor> = Arc::downgrade(door);
    let seen = DoorSeen::default();
    metrics.on_scrape(move || {
        let Some(door) = weak.upgrade() else {
            return false;
        };
        let s = &door.stats;
        let calls = |outcome| {
            f.calls.get_or_create_owned(&CallLabels {
                service: labels.service.clone(),
                outcome,
            })
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        advance(&calls("answered"), &seen.answered, load(&s.answered));
        advance(
            &calls("idempotent"),
            &seen.idempotent,
            load(&s.idempotent_hits),
        );
        advance(&calls("pending"), &seen.pending, load(&s.pending));
        advance(&calls("refused"), &seen.refused, load(&s.refused));
        let dissents = f.dissents.get_or_create_owned(&labels);
        advance(&dissents, &seen.dissents, load(&s.dissents));
        let quarantined = f.quarantined.get_or_create_owned(&labels);
        advance(&quarantined, &seen.quarantined, load(&s.quarantined));
        true
    });
    latency
}

struct ReplicaFamilies {
    executions: Family<OutcomeLabels, Counter>,
    execution_seconds: Histograms<ReplicaLabels>,
    worker_starts: Family<ReplicaLabels, Counter>,
}

impl ReplicaFamilies {
    fn register(r: &mut Registry) -> ReplicaFamilies {
        let f = ReplicaFamilies {
            executions: Family::default(),
            execution_seconds: Family::new_with_constructor(latency_histogram),
            worker_starts: Family::default(),
        };
        r.register(
            "cairn_exec_replica_executions",
            "Inputs a replica's worker ran, by outcome (ok, error: a gRPC status, crash, timeout)",
            f.executions.clone(),
        );
        r.register(
            "cairn_exec_replica_execution_seconds",
            "How long the worker took on an input (as recorded in its OUTPUT)",
            f.execution_seconds.clone(),
        );
        r.register(
            "cairn_exec_replica_worker_starts",
            "Worker processes started (the first, and one after each crash, kill or rebuild)",
            f.worker_starts.clone(),
        );
        f
    }
}

/// One replica's metrics. [`ReplicaMetrics::default`] counts into a registry nobody reads.
#[derive(Clone, Debug)]
pub struct ReplicaMetrics {
    ok: Counter,
    error: Counter,
    crash: Counter,
    timeout: Counter,
    seconds: Histogram,
    worker_starts: Counter,
}

impl Default for ReplicaMetrics {
    fn default() -> ReplicaMetrics {
        ReplicaMetrics::register(&Metrics::default(), "", 0)
    }
}

impl ReplicaMetrics {
    /// Replica `index` of `service`, registered in `metrics`.
    pub fn register(metrics: &Metrics, service: &str, index: u32) -> ReplicaMetrics {
        let f = metrics.families(ReplicaFamilies::register);
        let labels = ReplicaLabels {
            service: service.to_owned(),
            replica: index.to_string(),
        };
        let outcome = |outcome| {
            f.executions.get_or_create_owned(&OutcomeLabels {
                service: labels.service.clone(),
                replica: labels.replica.clone(),
                outcome,
            })
        };
        ReplicaMetrics {
            ok: outcome("ok"),
            error: outcome("error"),
            crash: outcome("crash"),
            timeout: outcome("timeout"),
            seconds: f.execution_seconds.get_or_create_owned(&labels),
            worker_starts: f.worker_starts.get_or_create_owned(&labels),
        }
    }

    /// The worker ran an input in `took`, ending with gRPC code `code` (or the execution
    /// layer's CRASH or TIMEOUT).
    pub(crate) fn executed(&self, code: u32, took: Duration) {
        match code {
            0 => &self.ok,
            CODE_CRASH => &self.crash,
            CODE_TIMEOUT => &self.timeout,
            _ => &self.error,
        }
        .inc();
        self.seconds.observe(took.as_secs_f64());
    }

    /// A worker process started.
    pub(crate) fn worker_started(&self) {
        self.worker_starts.inc();
    }
}
