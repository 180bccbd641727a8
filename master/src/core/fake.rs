//! In-memory chunkservers for the core's unit tests, and helpers to start a master over them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};

use super::MasterCore;
use crate::chunkserver_api::{
    ChunkserverApi, CopyError, CreateReplica, Fenced, Replicate, RpcError,
};
use crate::config::Config;
use crate::heartbeat::ReplicaReport;
use crate::meta::WriterMark;

/// In-memory chunkservers: remember created replicas, answer fences with a set length.
#[derive(Default)]
pub(super) struct Fake {
    state: Mutex<FakeState>,
}

/// What the fake chunkservers hold and every call they were asked.
#[derive(Default)]
pub(super) struct FakeState {
    /// Replicas that exist, as (chunkserver, handle).
    pub(super) replicas: HashSet<(String, ChunkHandle)>,
    /// Durable length each chunkserver reports when fenced (default 32).
    pub(super) lengths: HashMap<String, u64>,
    /// Chunkservers whose CreateReplica fails.
    pub(super) broken: HashSet<String>,
    /// Chunkservers whose replicas failed after an I/O error: a fence fails (`DataLoss`).
    pub(super) failed: HashSet<String>,
    /// Chunkservers that answer a fence as the chunk's primary in its role, with this commit
    /// offset (`Fenced::primary_commit`).
    pub(super) primary_commits: HashMap<String, u64>,
    /// Every `CreateReplica`, in order.
    pub(super) creates: Vec<(String, CreateReplica)>,
    /// Every `Fence`: (chunkserver, handle, new version).
    pub(super) fences: Vec<(String, ChunkHandle, ChunkVersion)>,
    /// Every `Seal`, in order.
    pub(super) seals: Vec<SealCall>,
    /// Every `Replicate`, by target.
    pub(super) replicates: Vec<(String, Replicate)>,
    /// Every `DeleteReplica`.
    pub(super) deletes: Vec<(String, ChunkHandle)>,
}

/// One `Seal` the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SealCall {
    pub(super) address: String,
    pub(super) handle: ChunkHandle,
    pub(super) version: ChunkVersion,
    pub(super) length: ChunkOffset,
}

impl Fake {
    /// The state, locked.
    pub(super) fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }
}

impl ChunkserverApi for Arc<Fake> {
    async fn create_replica(&self, address: String, r: CreateReplica) -> Result<(), RpcError> {
        let mut s = self.st();
        if s.broken.contains(&address) {
            return Err(RpcError::Other("broken".into()));
        }
        s.replicas.insert((address.clone(), r.handle));
        s.creates.push((address, r));
        Ok(())
    }

    async fn fence(
        &self,
        address: String,
        handle: ChunkHandle,
        new_version: ChunkVersion,
    ) -> Result<Fenced, RpcError> {
        // Let concurrent seal requests pile up behind the per-log lock.
        tokio::task::yield_now().await;
        let mut s = self.st();
        if !s.replicas.contains(&(address.clone(), handle)) {
            return Err(RpcError::NotFound);
        }
        if s.failed.contains(&address) {
            return Err(RpcError::Other(format!(
                "DataLoss: chunk {handle}: replica failed after an I/O error"
            )));
        }
        s.fences.push((address.clone(), handle, new_version));
        let length = s.lengths.get(&address).copied().unwrap_or(32);
        Ok(Fenced {
            length: ChunkOffset(length),
            version: new_version,
            sealed: false,
            marks: vec![WriterMark {
                writer: cairn_record::WriterId(42),
                sequence: length,
                frame_crc: 0,
            }],
            marks_through: ChunkOffset(length),
            primary_commit: s.primary_commits.get(&address).copied().map(ChunkOffset),
        })
    }

    async fn seal(
        &self,
        address: String,
        handle: ChunkHandle,
        version: ChunkVersion,
        length: ChunkOffset,
    ) -> Result<(), RpcError> {
        self.st().seals.push(SealCall {
            address,
            handle,
            version,
            length,
        });
        Ok(())
    }

    async fn replicate(
        &self,
        address: String,
        job: Replicate,
        _timeout: std::time::Duration,
    ) -> Result<u64, CopyError> {
        let mut s = self.st();
        if s.broken.contains(&address) {
            return Err(RpcError::Other("broken".into()).into());
        }
        s.replicas.insert((address.clone(), job.handle));
        let copied = job.length;
        s.replicates.push((address, job));
        Ok(copied.into())
    }

    async fn delete_replica(&self, address: String, handle: ChunkHandle) -> Result<(), RpcError> {
        let mut s = self.st();
        s.replicas.remove(&(address.clone(), handle));
        s.deletes.push((address, handle));
        Ok(())
    }
}

/// A master over the data directory `dir` (recovered from it if it holds one) and `fake`, its
/// Raft node started as `cairn master` starts it (a group of one).
pub(super) async fn start(dir: &Path, fake: &Arc<Fake>) -> Arc<MasterCore<Arc<Fake>>> {
    let config = Config::new(dir);
    let node = crate::raft::node::start_for_test(dir, None).await;
    let applied = node.state.applied();
    Arc::new(MasterCore::new(
        config,
        fake.clone(),
        applied.meta,
        applied.sequence,
        node.raft,
        7,
    ))
}

/// A master over `dir` and `fake` with `a:1`, `b:1` and `c:1` registered and the log `/l`
/// (factor 3, 8 KiB chunks) holding its first chunk, open: where most core tests start.
pub(super) async fn with_open_chunk(
    dir: &Path,
    fake: &Arc<Fake>,
) -> (Arc<MasterCore<Arc<Fake>>>, super::allocate::Location) {
    let m = start(dir, fake).await;
    register(&m, &["a:1", "b:1", "c:1"]).await;
    m.create_log("/l", 3, 8192).await.unwrap();
    let first = m.open_chunk("/l").await.unwrap();
    (m, first)
}

/// Registers `addresses` as chunkservers holding nothing.
pub(super) async fn register(m: &MasterCore<Arc<Fake>>, addresses: &[&str]) {
    for a in addresses {
        m.register(a, &[]).await.unwrap();
    }
}

/// Runs repair passes until no sealed chunk is below its factor, letting each pass's copies,
/// seals and fences finish before the next; returns how many passes had work. Fails the test
/// after 100.
pub(super) async fn repair_until_done(m: &Arc<MasterCore<Arc<Fake>>>) -> usize {
    let mut passes = 0;
    while m.clone().repair_pass().under_replicated > 0 {
        passes += 1;
        assert!(passes < 100, "repair did not converge");
        for _ in 0..100 {
            let idle = {
                let g = m.lock();
                g.repairs.is_empty() && g.resealing.is_empty() && g.in_place.is_empty()
            };
            if idle {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    passes
}

/// A healthy open replica of `handle` at `version`, 32 bytes long.
pub(super) fn report(handle: ChunkHandle, version: ChunkVersion) -> ReplicaReport {
    ReplicaReport {
        handle,
        version,
        length: ChunkOffset(32),
        sealed: false,
        failed: false,
        corrupt: false,
        primary: false,
    }
}
