//! Which [`MasterCore`] is in office. Only the group's leader decides, so a master builds a core
//! when it takes the lead — from the state machine's committed metadata, after every committed
//! entry is applied — and drops it when it loses the lead: what the old core applied ahead of
//! the group may never be committed, so nothing of it carries over. The gRPC service, the
//! metrics and the status page reach the core through the office; while it is empty the
//! master answers `UNAVAILABLE`.
//!
//! [`lead`] is the task that fills and empties it, following openraft's metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::{Raft, ServerState};
use tracing::{info, warn};

use crate::chunkserver_api::ChunkserverApi;
use crate::config::Config;
use crate::core::MasterCore;
use crate::raft::TypeConfig;
use crate::raft::state_machine::StateMachine;

/// The core in office, if this master leads.
pub(crate) struct Office<C> {
    slot: Mutex<Option<Arc<MasterCore<C>>>>,
    /// Cores installed so far: a reader that mirrors a core's counters starts again at a new one.
    installed: AtomicU64,
}

impl<C> Office<C> {
    /// An empty office.
    pub(crate) fn new() -> Arc<Office<C>> {
        Arc::new(Office {
            slot: Mutex::new(None),
            installed: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<MasterCore<C>>>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The core in office.
    pub(crate) fn core(&self) -> Option<Arc<MasterCore<C>>> {
        self.lock().clone()
    }

    /// The core in office and how many cores were installed up to it.
    pub(crate) fn core_and_term(&self) -> Option<(Arc<MasterCore<C>>, u64)> {
        let slot = self.lock();
        slot.clone()
            .map(|core| (core, self.installed.load(Ordering::Relaxed)))
    }

    /// Puts `core` in office.
    pub(crate) fn install(&self, core: Arc<MasterCore<C>>) {
        let mut slot = self.lock();
        self.installed.fetch_add(1, Ordering::Relaxed);
        *slot = Some(core);
    }

    /// Empties the office; returns the core that was in it.
    pub(crate) fn vacate(&self) -> Option<Arc<MasterCore<C>>> {
        self.lock().take()
    }
}

/// Fills `office` while this node leads `raft` and empties it when it stops leading, until
/// `raft` stops; runs the repair loop of the core in office (one installed before it started
/// too). `make` builds a core from the committed state (`state`) as of taking office; a group
/// without a cluster id yet gets `cluster_id` (this master's candidate) from its first leader.
pub(crate) async fn lead<C, F>(
    office: Arc<Office<C>>,
    raft: Raft<TypeConfig>,
    state: StateMachine,
    config: Config,
    cluster_id: u64,
    make: F,
) where
    C: ChunkserverApi + 'static,
    F: Fn(&Config, crate::raft::state_machine::Applied) -> Arc<MasterCore<C>>,
{
    let mut metrics = raft.metrics();
    let mut repairs: Option<tokio::task::JoinHandle<()>> =
        office.core().map(|core| tokio::spawn(core.run_repairs()));
    loop {
        let leading = {
            let m = metrics.borrow_and_update();
            m.state == ServerState::Leader && m.current_leader == Some(m.id)
        };
        match (leading, office.core().is_some()) {
            (true, false) => match raft.ensure_linearizable().await {
                Ok(_) => {
                    let applied = state.applied();
                    let sequence = applied.sequence;
                    let core = make(&config, applied);
                    match core.settle_cluster_id(cluster_id).await {
                        Ok(id) => {
                            repairs = Some(tokio::spawn(core.clone().run_repairs()));
                            office.install(core);
                            info!(sequence, cluster = %format!("{id:016x}"), "this master leads: serving");
                            continue;
                        }
                        Err(e) => {
                            warn!(error = %e, "elected, but the cluster id could not be committed");
                            core.close().await;
                        }
                    }
                }
                Err(e) => warn!(error = %e, "elected, but could not confirm the lead yet"),
            },
            (false, true) => {
                if let Some(r) = repairs.take() {
                    r.abort();
                }
                if let Some(core) = office.vacate() {
                    core.close().await;
                }
                warn!("this master no longer leads: it takes no requests until it leads again");
            }
            _ => {}
        }
        if metrics.changed().await.is_err() {
            break;
        }
    }
    if let Some(r) = repairs.take() {
        r.abort();
    }
}
