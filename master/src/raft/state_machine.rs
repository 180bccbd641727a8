//! The Raft state machine of a master group: the metadata every committed operation-log entry
//! was applied to, on every master alike, and its snapshots.
//!
//! Only committed entries reach it, in log order, so it is the group's agreed metadata; the
//! leader's `MasterCore` works ahead of it (it applies an entry when it proposes it) and starts
//! from a copy of it when it takes office. The state is held in memory; a snapshot is written
//! to `raft-snapshot` in the data directory (replaced crash-safely) and read back at start,
//! after which openraft re-applies the log entries it does not cover.
//!
//! `raft-snapshot` (FORMAT.md, "Master Raft snapshot"): one line of JSON, the
//! [`SnapshotHeader`] (format and openraft's snapshot metadata), a newline, then a checkpoint
//! (`checkpoint::encode`) of the metadata and the count of entries applied. A follower too far
//! behind is sent the same bytes.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_files::{Blocking, SharedDisk};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::TypeConfig;
use crate::checkpoint;
use crate::meta::Metadata;

/// File name of the snapshot in the data directory.
pub(crate) const SNAPSHOT_FILE: &str = "raft-snapshot";

/// The snapshot format this code writes and reads.
pub(crate) const SNAPSHOT_FORMAT: u32 = 1;

type NodeId = u64;
type Membership = StoredMembership<NodeId, BasicNode>;

/// The first line of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    format: u32,
    meta: SnapshotMeta<NodeId, BasicNode>,
}

/// What the committed entries made: the metadata and where the log stands.
#[derive(Clone, Debug, Default)]
pub(crate) struct Applied {
    /// Logs and chunks.
    pub(crate) meta: Metadata,
    /// Operation-log entries applied (the master's entry sequence).
    pub(crate) sequence: u64,
    /// The last Raft log entry applied.
    pub(crate) last_applied: Option<LogId<NodeId>>,
    /// The group's membership as of `last_applied`.
    pub(crate) membership: Membership,
}

/// The state machine; clones share it (openraft holds one, the master reads the other).
#[derive(Clone)]
pub(crate) struct StateMachine {
    shared: Arc<Shared>,
}

struct Shared {
    disk: SharedDisk,
    dir: PathBuf,
    blocking: Blocking,
    state: Mutex<Applied>,
    /// The last Raft log entry applied, for [`StateMachine::wait_applied`].
    applied: watch::Sender<Option<LogId<NodeId>>>,
    /// Snapshots built by this process, to name each one differently.
    built: std::sync::atomic::AtomicU64,
}

/// Why a snapshot could not be read.
fn invalid(path: &Path, reason: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {reason}", path.display()),
    )
}

/// Encodes a snapshot of `applied` as `meta`.
fn encode(applied: &Applied, meta: &SnapshotMeta<NodeId, BasicNode>) -> Vec<u8> {
    let header = SnapshotHeader {
        format: SNAPSHOT_FORMAT,
        meta: meta.clone(),
    };
    let mut bytes = serde_json::to_vec(&header).expect("snapshot headers serialise to JSON");
    bytes.push(b'\n');
    bytes.extend(checkpoint::encode(&applied.meta, applied.sequence));
    bytes
}

/// Decodes a snapshot's bytes (read from `path`, or received as it).
fn decode(
    bytes: &[u8],
    path: &Path,
) -> std::io::Result<(SnapshotMeta<NodeId, BasicNode>, Applied)> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| invalid(path, "no header line"))?;
    let header: SnapshotHeader = serde_json::from_slice(&bytes[..newline])
        .map_err(|e| invalid(path, format!("bad header: {e}")))?;
    if header.format != SNAPSHOT_FORMAT {
        return Err(invalid(path, format!("unknown format {}", header.format)));
    }
    let (meta, sequence) =
        checkpoint::decode(&bytes[newline + 1..], path).map_err(|e| invalid(path, e))?;
    let applied = Applied {
        meta,
        sequence,
        last_applied: header.meta.last_log_id,
        membership: header.meta.last_membership.clone(),
    };
    Ok((header.meta, applied))
}

impl StateMachine {
    /// The state machine of the data directory `dir` on `disk`: its snapshot, if any (the
    /// entries after it are re-applied by openraft from the log).
    pub(crate) fn open(
        disk: SharedDisk,
        dir: &Path,
        blocking: Blocking,
    ) -> std::io::Result<StateMachine> {
        let path = dir.join(SNAPSHOT_FILE);
        let applied = match cairn_files::read_file(&*disk, &path) {
            Ok(bytes) => decode(&bytes, &path)?.1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Applied::default(),
            Err(e) => return Err(e),
        };
        Ok(StateMachine::with_state(disk, dir, blocking, applied))
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A state machine of the data directory `dir` starting from `applied` (the metadata of an
    /// old operation log being moved into the group: no snapshot holds it yet).
    pub(crate) fn with_state(
        disk: SharedDisk,
        dir: &Path,
        blocking: Blocking,
        applied: Applied,
    ) -> StateMachine {
        let (applied_tx, _) = watch::channel(applied.last_applied);
        StateMachine {
            shared: Arc::new(Shared {
                disk,
                dir: dir.to_owned(),
                blocking,
                state: Mutex::new(applied),
                applied: applied_tx,
                built: Default::default(),
            }),
        }
    }

    /// A copy of the state now.
    pub(crate) fn applied(&self) -> Applied {
        self.lock().clone()
    }

    /// Waits until the entry at `index` (or a later one) is applied.
    #[cfg(test)]
    pub(crate) async fn wait_applied(&self, index: u64) {
        let mut rx = self.shared.applied.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = rx
            .wait_for(|last| last.is_some_and(|id| id.index >= index))
            .await;
    }

    /// Writes `bytes` as the snapshot file, crash-safely.
    async fn write_file(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        let (disk, dir) = (self.shared.disk.clone(), self.shared.dir.clone());
        self.shared
            .blocking
            .run(move || cairn_files::replace(&*disk, &dir, SNAPSHOT_FILE, &bytes).map(drop))
            .await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let applied = self.applied();
        let built = self
            .shared
            .built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id: format!("{}-{built}", applied.last_applied.map_or(0, |id| id.index)),
        };
        let bytes = encode(&applied, &meta);
        self.write_file(bytes.clone())
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let state = self.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut answers = Vec::new();
        let last = {
            let mut state = self.lock();
            for entry in entries {
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(proposal) => {
                        for e in &proposal.entries {
                            // The leader validated it against this state plus its earlier
                            // entries: not applying is a divergence, never to be skipped.
                            state.meta.apply(e).map_err(|reason| {
                                StorageIOError::apply(
                                    entry.log_id,
                                    &std::io::Error::other(format!(
                                        "committed entry {e:?} does not apply: {reason}"
                                    )),
                                )
                            })?;
                            state.sequence += 1;
                        }
                    }
                    EntryPayload::Membership(m) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    }
                }
                state.last_applied = Some(entry.log_id);
                answers.push(());
            }
            state.last_applied
        };
        self.shared.applied.send_replace(last);
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let path = self.shared.dir.join(SNAPSHOT_FILE);
        let (_, applied) = decode(&bytes, &path)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.write_file(bytes)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let last = applied.last_applied;
        *self.lock() = applied;
        self.shared.applied.send_replace(last);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let path = self.shared.dir.join(SNAPSHOT_FILE);
        let disk = self.shared.disk.clone();
        let read = {
            let path = path.clone();
            self.shared
                .blocking
                .run(move || cairn_files::read_file(&*disk, &path))
                .await
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, &e).into()),
        };
        let (meta, _) =
            decode(&bytes, &path).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Entry;
    use crate::raft::Proposal;
    use openraft::{CommittedLeaderId, Membership as RaftMembership};

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn create(path: &str) -> Entry {
        Entry::test_create(path)
    }

    fn entries() -> Vec<openraft::Entry<TypeConfig>> {
        let nodes = std::collections::BTreeMap::from([(1, BasicNode::new("m1:7000"))]);
        vec![
            openraft::Entry {
                log_id: log_id(1),
                payload: EntryPayload::Membership(RaftMembership::new(
                    vec![std::collections::BTreeSet::from([1])],
                    nodes,
                )),
            },
            openraft::Entry {
                log_id: log_id(2),
                payload: EntryPayload::Blank,
            },
            openraft::Entry {
                log_id: log_id(3),
                payload: EntryPayload::Normal(Proposal {
                    entries: vec![create("/a"), create("/b")],
                }),
            },
        ]
    }

    fn fs() -> (tempfile::TempDir, SharedDisk) {
        (
            tempfile::tempdir().unwrap(),
            cairn_files::shared(cairn_files::FsDisk),
        )
    }

    // Proves: applying entries counts operation-log entries, tracks the membership and the
    // last applied id; a snapshot written and read back at the next open gives the same state;
    // installing that snapshot's bytes on another state machine gives it the same state.
    #[tokio::test]
    async fn apply_snapshot_and_reopen() {
        let (dir, disk) = fs();
        let mut sm = StateMachine::open(disk.clone(), dir.path(), Blocking::Inline).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        sm.apply(entries()).await.unwrap();
        let state = sm.applied();
        assert_eq!(state.sequence, 2);
        assert_eq!(state.last_applied, Some(log_id(3)));
        assert!(state.meta.logs.contains_key("/b"));
        assert_eq!(state.membership.log_id(), &Some(log_id(1)));
        sm.wait_applied(3).await;

        let snapshot = sm.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(3)));
        let reopened = StateMachine::open(disk.clone(), dir.path(), Blocking::Inline).unwrap();
        let again = reopened.applied();
        assert_eq!(again.meta, state.meta);
        assert_eq!(again.sequence, 2);
        assert_eq!(again.last_applied, Some(log_id(3)));

        let (other_dir, _) = fs();
        let mut other = StateMachine::open(disk, other_dir.path(), Blocking::Inline).unwrap();
        let mut received = other.begin_receiving_snapshot().await.unwrap();
        received.get_mut().extend(snapshot.snapshot.into_inner());
        other
            .install_snapshot(&snapshot.meta, received)
            .await
            .unwrap();
        assert_eq!(other.applied().meta, state.meta);
        let current = other.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
    }

    // Proves: a committed entry that does not apply (a divergence) is an error, never skipped;
    // and garbage offered as a snapshot is refused, leaving the state as it was.
    #[tokio::test]
    async fn divergence_and_bad_snapshots_are_errors() {
        let (dir, disk) = fs();
        let mut sm = StateMachine::open(disk, dir.path(), Blocking::Inline).unwrap();
        sm.apply(entries()).await.unwrap();
        let again = openraft::Entry {
            log_id: log_id(4),
            payload: EntryPayload::Normal(Proposal {
                entries: vec![create("/a")],
            }),
        };
        let e = sm.apply([again]).await.unwrap_err();
        assert!(
            e.to_string().contains("does not apply") || format!("{e:?}").contains("does not apply"),
            "{e:?}"
        );
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(9)),
            last_membership: Membership::default(),
            snapshot_id: "x".into(),
        };
        let bad = Box::new(Cursor::new(b"{\"format\":1}\nnot json".to_vec()));
        assert!(sm.install_snapshot(&meta, bad).await.is_err());
        assert!(sm.applied().meta.logs.contains_key("/a"));
    }
}
