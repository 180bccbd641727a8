//! Registration and heartbeats: `RegisterChunkserver` at start with every replica's state, then
//! `Heartbeat` every period; deletes what the master says to delete, registers again when asked.
//! An unreachable master is retried with a doubling backoff, forever: a chunkserver keeps
//! serving reads and appends while the master is away. The first registration records the
//! master's cluster id in `DATA/cluster-id`; later ones present it, and a master of another
//! cluster refuses them, so it never gets to send deletions.
//!
//! A chunkserver that holds replicas but records no cluster id (a data directory from before
//! cluster ids existed, or one whose `cluster-id` file was lost) does not register at all unless
//! started with `--adopt-cluster-id`: any master would be adopted, and one that does not know its
//! chunks would have it delete every replica. It keeps its replicas and says why, every retry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_record::ChunkHandle;
use tracing::{debug, error, info, warn};

use crate::error::Error;
use crate::limits::{MASTER_RETRY_MS_MAX, MASTER_RETRY_MS_MIN};
use crate::master_link::MasterApi;
use crate::node::Node;

/// What the heartbeat loop needs.
pub(crate) struct Heartbeat {
    pub(crate) node: Arc<Node>,
    pub(crate) master: Arc<dyn MasterApi>,
    /// This chunkserver's advertised address.
    pub(crate) address: String,
    pub(crate) data_dir: PathBuf,
    /// `--adopt-cluster-id`: join a cluster although replicas are held and no id is recorded.
    pub(crate) adopt_cluster_id: bool,
    pub(crate) period: Duration,
}

/// A doubling retry delay.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_millis(MASTER_RETRY_MS_MIN))
    }

    /// The delay to wait now; the next one is twice as long, up to the bound.
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (d * 2).min(Duration::from_millis(MASTER_RETRY_MS_MAX));
        d
    }
}

impl Heartbeat {
    /// Runs until the task is aborted.
    pub(crate) async fn run(mut self) {
        loop {
            let period = self.register().await;
            self.beat(period).await;
        }
    }

    /// Registers, retrying until the master answers; returns the heartbeat period to use.
    async fn register(&mut self) -> Duration {
        let mut backoff = Backoff::new();
        loop {
            let replicas = self.node.replicas();
            let free = self.free_bytes();
            let joined = match read_cluster_id(&self.data_dir) {
                Ok(id) => id,
                Err(e) => {
                    // Never register (and so never delete) without knowing our cluster.
                    error!(error = %e, "cannot read this chunkserver's cluster id; not registering");
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            };
            if joined.is_none() && !replicas.is_empty() && !self.adopt_cluster_id {
                error!(
                    data = %self.data_dir.display(),
                    replicas = replicas.len(),
                    "this chunkserver holds replicas but has no cluster-id file: refusing to join \
                     the master's cluster, which would delete every replica it does not know; \
                     if this directory belongs to that master's cluster, restart with \
                     --adopt-cluster-id (CAIRN_ADOPT_CLUSTER_ID=1)"
                );
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
            match self
                .master
                .register(&self.address, &replicas, free, joined.unwrap_or(0))
                .await
            {
                Ok(r) => {
                    match joined {
                        Some(id) if r.cluster_id != 0 && r.cluster_id != id => {
                            error!(ours = %format!("{id:016x}"), master = %format!("{:016x}", r.cluster_id), "the master is of another cluster; ignoring its answer");
                            tokio::time::sleep(backoff.next()).await;
                            continue;
                        }
                        None if r.cluster_id != 0 => {
                            if let Err(e) = write_cluster_id(&self.data_dir, r.cluster_id) {
                                error!(error = %e, "cannot record the cluster id; not registering");
                                tokio::time::sleep(backoff.next()).await;
                                continue;
                            }
                            info!(cluster = %format!("{:016x}", r.cluster_id), "joined the cluster");
                        }
                        _ => {}
                    }
                    info!(address = %self.address, replicas = replicas.len(), delete = r.delete.len(), "registered with the master");
                    self.delete(&r.delete).await;
                    let asked = Duration::from_millis(r.heartbeat_ms);
                    // Beating faster than the master expects is harmless; slower could get
                    // this chunkserver declared dead.
                    return if asked.is_zero() {
                        self.period
                    } else {
                        self.period.min(asked)
                    };
                }
                Err(e) => {
                    let wait = backoff.next();
                    warn!(error = %e, retry_ms = wait.as_millis() as u64, "registration failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Heartbeats every `period` until the master asks for a new registration.
    async fn beat(&mut self, period: Duration) {
        let mut backoff = Backoff::new();
        let mut wait = period;
        loop {
            tokio::time::sleep(wait).await;
            let replicas = self.node.replicas();
            let free = self.free_bytes();
            match self.master.heartbeat(&self.address, &replicas, free).await {
                Ok(r) => {
                    backoff = Backoff::new();
                    wait = period;
                    self.delete(&r.delete).await;
                    if r.reregister {
                        info!("the master asked for a new registration");
                        return;
                    }
                }
                Err(e) => {
                    wait = backoff.next().max(period);
                    warn!(error = %e, retry_ms = wait.as_millis() as u64, "heartbeat failed; retrying");
                }
            }
        }
    }

    /// Free bytes for chunk data, as reported to the master: 0 means unknown, so a full disk
    /// reports 1.
    fn free_bytes(&self) -> u64 {
        match self.node.store.disk().free_bytes(&self.data_dir) {
            Some(free) => free.max(1),
            None => 0,
        }
    }

    async fn delete(&self, handles: &[ChunkHandle]) {
        for &handle in handles {
            match self.node.delete(handle).await {
                Ok(()) => info!(chunk = %handle, "deleted replica as the master asked"),
                Err(Error::NotFound { .. }) => debug!(chunk = %handle, "replica to delete is gone"),
                Err(e) => warn!(chunk = %handle, error = %e, "could not delete replica"),
            }
        }
    }
}

/// The file holding the id of the cluster this chunkserver joined (FORMAT.md).
const CLUSTER_ID_FILE: &str = "cluster-id";

/// The cluster id in `dir`, if this chunkserver joined one.
fn read_cluster_id(dir: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::read_to_string(dir.join(CLUSTER_ID_FILE)) {
        Ok(text) => u64::from_str_radix(text.trim(), 16)
            .ok()
            .filter(|&id| id != 0)
            .map(Some)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a cluster id: {:?}", CLUSTER_ID_FILE, text.trim()),
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records `id` in `dir` durably (`cairn_files::replace`).
fn write_cluster_id(dir: &Path, id: u64) -> std::io::Result<()> {
    let id = format!("{id:016x}\n");
    cairn_files::replace(&cairn_files::FsDisk, dir, CLUSTER_ID_FILE, id.as_bytes()).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let mut b = Backoff::new();
        assert_eq!(b.next(), Duration::from_millis(MASTER_RETRY_MS_MIN));
        assert_eq!(b.next(), Duration::from_millis(2 * MASTER_RETRY_MS_MIN));
        for _ in 0..20 {
            b.next();
        }
        assert_eq!(b.next(), Duration::from_millis(MASTER_RETRY_MS_MAX));
    }

    // Proves: no file is "not joined yet"; a written id reads back; a damaged file is an error
    // (so the chunkserver does not register as a stranger that adopts any master's cluster).
    #[test]
    fn cluster_id_file_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_cluster_id(dir.path()).unwrap(), None);
        write_cluster_id(dir.path(), 0xabc).unwrap();
        assert_eq!(read_cluster_id(dir.path()).unwrap(), Some(0xabc));
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "nope").unwrap();
        assert!(read_cluster_id(dir.path()).is_err());
    }
}
