//! Cairn's metrics: one Prometheus registry per process, shared by every role the process runs
//! (`cairn local` runs a master and several chunkservers and serves them all on one endpoint).
//!
//! - [`Metrics`] is the process's registry. A role registers its metric families once per
//!   process ([`Metrics::families`]), labelled by instance where a process may run several (a
//!   chunkserver's families carry its address), and may add a refresher ([`Metrics::on_scrape`])
//!   that copies state (counts kept elsewhere, free space, live chunkservers) into gauges and
//!   counters just before each scrape.
//! - [`serve`] answers HTTP: `/metrics` in the OpenMetrics text format, and `/` with the status
//!   page a role set ([`Metrics::set_status_page`]), else a link to `/metrics`.
//! - [`RpcLayer`] counts a gRPC server's answers by method and status code.
//!
//! Every metric's name starts with `cairn_`; the list is in the repository's `docs/metrics.md`.

mod http;
mod rpc;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

pub use http::{serve, serve_on};
use prometheus_client::registry::Registry;
pub use rpc::{RpcLayer, RpcService};

/// A scrape-time refresher: copies state into metrics; returns `false` once what it reads is
/// gone (a stopped role), and is then dropped.
type Refresher = Box<dyn Fn() -> bool + Send + Sync>;

/// Renders a role's status page (HTML), on each request to `/`.
type StatusPage = Arc<dyn Fn() -> String + Send + Sync>;

/// A process's metrics registry, cheap to clone; every clone is the same registry. A role given
/// none makes its own ([`Metrics::default`]) and nobody reads it.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    registry: RwLock<Registry>,
    families: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    refreshers: Mutex<Vec<Refresher>>,
    status_page: Mutex<Option<StatusPage>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The metric families of type `T`, registered by `register` the first time any role of
    /// this process asks for them; later calls return the same families. A family labelled by
    /// instance (a `Family<Labels, Counter>`) then serves every instance of the role in the
    /// process, so each metric name is described once.
    pub fn families<T: Send + Sync + 'static>(
        &self,
        register: impl FnOnce(&mut Registry) -> T,
    ) -> Arc<T> {
        let mut families = lock(&self.inner.families);
        if let Some(found) = families.get(&TypeId::of::<T>()) {
            return found
                .clone()
                .downcast::<T>()
                .expect("families are stored under their own type");
        }
        let mut registry = self
            .inner
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let made = Arc::new(register(&mut registry));
        families.insert(TypeId::of::<T>(), made.clone());
        made
    }

    /// Runs `refresh` before each scrape, until it returns `false`.
    pub fn on_scrape(&self, refresh: impl Fn() -> bool + Send + Sync + 'static) {
        lock(&self.inner.refreshers).push(Box::new(refresh));
    }

    /// Serves `render`'s HTML at `/` (the master's status page).
    pub fn set_status_page(&self, render: impl Fn() -> String + Send + Sync + 'static) {
        *lock(&self.inner.status_page) = Some(Arc::new(render));
    }

    /// The status page, if a role set one.
    pub fn status_page(&self) -> Option<String> {
        let page = lock(&self.inner.status_page).clone();
        page.map(|render| render())
    }

    /// Every metric in the OpenMetrics text format, after running the refreshers.
    pub fn encode(&self) -> String {
        lock(&self.inner.refreshers).retain(|refresh| refresh());
        let registry = self
            .inner
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String does not fail");
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Histogram buckets for durations in seconds: 50 µs doubling to about 1.6 s (16 buckets), for
/// appends, fsyncs and calls.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16)
}

/// Histogram buckets for counts: 1 doubling to 4,096 (13 buckets), e.g. records per group
/// commit.
pub fn count_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 13)
}

/// Adds to `counter` what `total` (a count kept elsewhere, only ever growing) gained since
/// `seen`, and remembers it: how a refresher mirrors an atomic count into a counter.
pub fn advance(
    counter: &prometheus_client::metrics::counter::Counter,
    seen: &std::sync::atomic::AtomicU64,
    total: u64,
) {
    let before = seen.swap(total, std::sync::atomic::Ordering::Relaxed);
    counter.inc_by(total.saturating_sub(before));
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::sync::atomic::AtomicU64;

    struct Families {
        hits: Counter,
    }

    #[test]
    fn families_are_registered_once_and_shared() {
        let metrics = Metrics::new();
        let a = metrics.families(|r| {
            let hits = Counter::default();
            r.register("cairn_test_hits", "Hits.", hits.clone());
            Families { hits }
        });
        let b = metrics.families::<Families>(|_| panic!("registered twice"));
        a.hits.inc();
        b.hits.inc();
        let text = metrics.encode();
        assert!(text.contains("cairn_test_hits_total 2"), "{text}");
        assert_eq!(text.matches("# TYPE cairn_test_hits counter").count(), 1);
    }

    #[test]
    fn refreshers_run_before_each_scrape_until_they_say_they_are_done() {
        let metrics = Metrics::new();
        let f = metrics.families(|r| {
            let hits = Counter::default();
            r.register("cairn_test_hits", "Hits.", hits.clone());
            Families { hits }
        });
        let total = Arc::new(AtomicU64::new(0));
        let seen = AtomicU64::new(0);
        let (t, fam) = (total.clone(), f.clone());
        metrics.on_scrape(move || {
            let now = t.load(std::sync::atomic::Ordering::Relaxed);
            advance(&fam.hits, &seen, now);
            now < 10
        });
        total.store(4, std::sync::atomic::Ordering::Relaxed);
        assert!(metrics.encode().contains("cairn_test_hits_total 4"));
        total.store(10, std::sync::atomic::Ordering::Relaxed);
        assert!(metrics.encode().contains("cairn_test_hits_total 10"));
        // Done: the refresher is gone, later growth is not mirrored.
        total.store(20, std::sync::atomic::Ordering::Relaxed);
        assert!(metrics.encode().contains("cairn_test_hits_total 10"));
    }
}
