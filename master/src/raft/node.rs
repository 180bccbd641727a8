//! Starting a master's Raft node on its data directory: the log store and state machine read
//! back, openraft started, the group initialised on its first start, and this node waited for
//! until it leads with every committed entry applied.
//!
//! A master without `--peers` is a group of one (itself): it forms the group at its first start
//! and leads as soon as it has started. With `--peers`, the master of the lowest id forms the
//! group at its first start, and every master then follows whoever is elected (`office::lead`
//! builds the leader's `MasterCore` from the state machine's metadata). A master whose data
//! directory was wiped must not form a group again: give it the others' data (not yet
//! automated).
//!
//! A data directory of the file-based operation log (`oplog`, `checkpoint.json`) is moved into
//! the group on the first start: its metadata is the state machine's starting state, the node
//! then writes a snapshot holding it, and only once that snapshot is durable are the old files
//! removed. A crash in between finds the old files still there and does it again: the log
//! entries written since are applied on top of the same starting state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_files::{Blocking, SharedDisk};
use cairn_proto::net::Connector;
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};

use super::log_store::LogStore;
use super::network::PeerNetwork;
use super::state_machine::{self, Applied, StateMachine};
use super::{TypeConfig, runtime};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::oplog;

/// How long a starting master waits to lead its group.
pub(crate) const LEAD_WAIT: Duration = Duration::from_secs(30);

/// Raft's timings between masters: a heartbeat every 100 ms, an election after 0.5–1 s
/// without one.
fn raft_config(config: &Config) -> Result<openraft::Config> {
    openraft::Config {
        cluster_name: "cairn-masters".to_owned(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.checkpoint_every_entries),
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| Error::Config {
        reason: format!("Raft settings: {e}"),
    })
}

/// A master's running Raft node.
pub(crate) struct Node {
    /// openraft's handle.
    pub(crate) raft: Raft<TypeConfig>,
    /// The committed metadata.
    pub(crate) state: StateMachine,
}

fn raft_failed(e: impl std::fmt::Display) -> Error {
    Error::OplogFailed {
        reason: format!("Raft: {e}"),
    }
}

/// Whether `dir` holds a Raft snapshot. Until one exists, an old operation log in `dir` is
/// the group's starting state: the move into Raft is done only once a snapshot holds it (Raft
/// log entries written before a crash in between are applied on top of it again).
fn has_snapshot(disk: &SharedDisk, dir: &Path) -> Result<bool> {
    has_file(disk, dir, state_machine::SNAPSHOT_FILE)
}

/// Whether `dir/name` exists.
fn has_file(disk: &SharedDisk, dir: &Path, name: &str) -> Result<bool> {
    let path = dir.join(name);
    match disk.open(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path)(e)),
    }
}

/// Reads the node's files in `dir`: its log store, and its state machine — from its snapshot,
/// or from an older operation log being moved in (`true`: the move is not done yet).
fn open_files(
    disk: SharedDisk,
    dir: &Path,
    blocking: Blocking,
) -> Result<(LogStore, StateMachine, bool)> {
    disk.create_dir_all(dir).map_err(Error::io(dir))?;
    let legacy = if has_snapshot(&disk, dir)? {
        None
    } else {
        oplog::load_legacy(&*disk, dir)?
    };
    if legacy.is_none()
        && oplog::is_moved(&*disk, dir)?
        && !has_file(&disk, dir, super::log_store::LOG_FILE)?
        && !has_snapshot(&disk, dir)?
    {
        return Err(Error::OplogCorrupt {
            path: dir.join(super::log_store::LOG_FILE),
            offset: 0,
            reason: "the metadata was moved into the Raft files (checkpoint.json says so) but \
                     neither the Raft log nor its snapshot is here: restore the directory from \
                     a backup rather than start empty"
                .to_owned(),
        });
    }
    let log = LogStore::open(disk.clone(), dir, blocking)?;
    let state = match legacy {
        Some((meta, sequence)) => {
            tracing::info!(
                logs = meta.logs.len(),
                chunks = meta.chunks.len(),
                sequence,
                "moving the old operation log into the Raft log"
            );
            let applied = Applied {
                meta,
                sequence,
                ..Applied::default()
            };
            return Ok((
                log,
                StateMachine::with_state(disk, dir, blocking, applied),
                true,
            ));
        }
        None => StateMachine::open(disk, dir, blocking)
            .map_err(Error::io(dir.join(state_machine::SNAPSHOT_FILE)))?,
    };
    Ok((log, state, false))
}

/// Starts the Raft node of the master with `config` on `disk`, reachable at `address`. A group
/// of one returns once it leads with every committed entry applied; a member of a larger group
/// (`config.peers`) returns at once, and `office::lead` serves whenever it is elected (see the
/// module doc).
pub(crate) async fn start(
    config: &Config,
    address: &str,
    disk: SharedDisk,
    blocking: Blocking,
    connector: Arc<dyn Connector>,
    seed: Option<u64>,
) -> Result<Node> {
    let dir = config.data_dir.clone();
    let (log, state, migrating) = {
        let (disk, dir) = (disk.clone(), dir.clone());
        blocking
            .run(move || open_files(disk, &dir, blocking))
            .await?
    };
    if let Some(seed) = seed {
        runtime::seed_elections(seed);
    }
    let id = config.id;
    let members: BTreeMap<u64, BasicNode> = if config.peers.is_empty() {
        BTreeMap::from([(id, BasicNode::new(address))])
    } else {
        config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect()
    };
    let forms_the_group = members.keys().next() == Some(&id);
    if migrating && members.len() > 1 {
        return Err(Error::Config {
            reason: "an old operation log can be moved into Raft only by a master started \
                     alone (without --peers); start it alone once, then with its peers"
                .to_owned(),
        });
    }
    let raft = Raft::new(
        id,
        Arc::new(raft_config(config)?),
        PeerNetwork::new(connector),
        log,
        state.clone(),
    )
    .await
    .map_err(raft_failed)?;
    if forms_the_group && !raft.is_initialized().await.map_err(raft_failed)? {
        match raft.initialize(members.clone()).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(raft_failed(e)),
        }
    }
    if members.len() > 1 {
        // A member of a group: `office::lead` serves whenever this one is elected.
        let (disk, dir) = (disk.clone(), dir.clone());
        blocking
            .run(move || oplog::retire_legacy(&*disk, &dir))
            .await?;
        return Ok(Node { raft, state });
    }
    raft.wait(Some(LEAD_WAIT))
        .metrics(
            |m| m.state == ServerState::Leader && m.current_leader == Some(id),
            "this master leads its group",
        )
        .await
        .map_err(raft_failed)?;
    raft.ensure_linearizable().await.map_err(raft_failed)?;
    if migrating {
        let applied = state.applied().last_applied;
        raft.trigger().snapshot().await.map_err(raft_failed)?;
        raft.wait(Some(LEAD_WAIT))
            .metrics(
                |m| m.snapshot >= applied && m.snapshot.is_some(),
                "the snapshot holding the old operation log",
            )
            .await
            .map_err(raft_failed)?;
    }
    // On every start (it does nothing once done): the old files go once a snapshot holds
    // them, and a marker keeps an older master off this directory.
    let (disk, dir) = (disk.clone(), dir.clone());
    blocking
        .run(move || oplog::retire_legacy(&*disk, &dir))
        .await?;
    Ok(Node { raft, state })
}

/// Tests: the node of a master (a group of one) on `dir` on the real file system.
#[cfg(test)]
pub(crate) async fn start_for_test(dir: &Path, seed: Option<u64>) -> Node {
    start(
        &Config::new(dir),
        "test-master:7000",
        cairn_files::shared(cairn_files::FsDisk),
        Blocking::Threads,
        cairn_proto::net::TcpConnector::shared(),
        seed,
    )
    .await
    .expect("the master's node starts")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Entry;

    fn create(path: &str) -> Entry {
        Entry::test_create(path)
    }

    async fn start_on(dir: &Path) -> Node {
        start_for_test(dir, Some(5)).await
    }

    // Proves: a data directory of the file-based operation log is moved into Raft at the first
    // start (its metadata is the committed state, and its entry count the sequence); the old
    // log is gone and the marker that keeps older masters off is in place; a later proposal
    // and a restart keep both the moved and the new metadata.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_old_operation_log_is_moved_into_raft() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Vec::new();
        oplog::encode(&mut old, 0, &Entry::Begin { format: 3 });
        oplog::encode(&mut old, 1, &create("/old-a"));
        oplog::encode(&mut old, 2, &create("/old-b"));
        std::fs::write(dir.path().join(oplog::FILE), &old).unwrap();

        let node = start_on(dir.path()).await;
        let applied = node.state.applied();
        assert!(
            applied.meta.logs.contains_key("/old-a") && applied.meta.logs.contains_key("/old-b")
        );
        assert_eq!(applied.sequence, 2);
        assert!(!dir.path().join(oplog::FILE).exists());
        assert!(dir.path().join(state_machine::SNAPSHOT_FILE).exists());
        assert_eq!(
            std::fs::read(dir.path().join(crate::checkpoint::FILE)).unwrap(),
            oplog::MOVED_MARKER.as_bytes()
        );
        node.raft
            .client_write(super::super::Proposal {
                entries: vec![create("/new")],
            })
            .await
            .unwrap();
        node.raft.shutdown().await.unwrap();

        let again = start_on(dir.path()).await;
        let applied = again.state.applied();
        assert_eq!(applied.sequence, 3);
        for log in ["/old-a", "/old-b", "/new"] {
            assert!(applied.meta.logs.contains_key(log), "{log}");
        }
        again.raft.shutdown().await.unwrap();
    }

    // Proves: a directory whose Raft files are gone but whose marker says the metadata was
    // moved into Raft refuses to start (it would serve empty metadata), saying so.
    #[tokio::test]
    async fn a_marked_directory_without_its_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(crate::checkpoint::FILE),
            oplog::MOVED_MARKER,
        )
        .unwrap();
        let e = start(
            &Config::new(dir.path()),
            "m:7000",
            cairn_files::shared(cairn_files::FsDisk),
            Blocking::Threads,
            cairn_proto::net::TcpConnector::shared(),
            None,
        )
        .await
        .err()
        .expect("refused");
        assert!(e.to_string().contains("restore the directory"), "{e}");
    }

    // Proves: a fresh directory starts empty, is marked, and starts again (no snapshot yet:
    // the Raft log alone holds its state).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fresh_directory_restarts_from_its_raft_log() {
        let dir = tempfile::tempdir().unwrap();
        let node = start_on(dir.path()).await;
        node.raft
            .client_write(super::super::Proposal {
                entries: vec![create("/fresh")],
            })
            .await
            .unwrap();
        node.raft.shutdown().await.unwrap();
        assert!(!dir.path().join(state_machine::SNAPSHOT_FILE).exists());
        let again = start_on(dir.path()).await;
        assert!(again.state.applied().meta.logs.contains_key("/fresh"));
        again.raft.shutdown().await.unwrap();
    }
}
