//! The master's operation log replicated by Raft (openraft 0.9): the pieces a Raft group of
//! masters is built from. A master runs a group of one today; the leader's `MasterCore`
//! proposes its entries through `oplog::Committer`.
//!
//! - `runtime`: the async runtime openraft runs on (tokio's, with a seeded random-number
//!   generator for election timeouts, so a simulation replays bit for bit).
//! - `log_store`: the Raft log and vote in files of the master's data directory, through its
//!   [`cairn_files::Disk`], fsynced before openraft is told they are durable.
//! - `state_machine`: the metadata the committed entries made, the same on every master, and
//!   its snapshots (`raft-snapshot`).
//! - `network`: Raft between masters over gRPC (`cairn.v1.MasterPeer`), on the process's
//!   connector.
//! - `node`: a master's node started on its data directory (and an old operation log moved
//!   into it), returned once it leads.
//!
//! A log entry's application data is a [`Proposal`]: the operation-log entries one group commit
//! of the leader collected, in order.

use serde::{Deserialize, Serialize};

use crate::meta::Entry;

#[cfg(test)]
mod group_tests;
pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod node;
pub(crate) mod runtime;
pub(crate) mod state_machine;

/// The operation-log entries of one group commit, replicated as one Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proposal {
    /// In the order the leader applied them.
    pub(crate) entries: Vec<Entry>,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} operation-log entries", self.entries.len())
    }
}

openraft::declare_raft_types!(
    /// The master group's Raft types: node ids are the masters' `--id`, a node is its address.
    pub(crate) TypeConfig:
        D = Proposal,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = runtime::SeededRuntime,
);
