//! A Raft group of three masters' Raft parts (log store, state machine, peer network and
//! service) in one process, over the in-memory network: the pieces work together before the
//! master is built on them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_files::{Blocking, SharedDisk};
use cairn_proto::net::memory::MemoryNet;
use cairn_proto::v1::master_peer_server::MasterPeerServer;
use openraft::{BasicNode, Config, Raft};

use super::log_store::LogStore;
use super::network::{PeerNetwork, PeerService};
use super::state_machine::StateMachine;
use super::{Proposal, TypeConfig};
use crate::meta::Entry;

/// One running node: its Raft, state machine and server task.
struct Node {
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    server: tokio::task::JoinHandle<()>,
}

fn addr(id: u64) -> String {
    format!("m{id}:7000")
}

async fn start(id: u64, net: &MemoryNet, disk: &SharedDisk, dir: &Path) -> Node {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        ..Config::default()
    }
    .validate()
    .unwrap();
    let log = LogStore::open(disk.clone(), dir, Blocking::Threads).unwrap();
    let sm = StateMachine::open(disk.clone(), dir, Blocking::Threads).unwrap();
    let network = PeerNetwork::new(Arc::new(net.clone()));
    let raft = Raft::new(id, Arc::new(config), network, log, sm.clone())
        .await
        .unwrap();
    let incoming = net.listen(&addr(id)).incoming();
    let service = MasterPeerServer::new(PeerService::new(raft.clone()));
    let server = tokio::spawn(async move {
        let _ = cairn_proto::net::server()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    Node { raft, sm, server }
}

/// Stops a node as a crash would: its server and its Raft end; its files stay.
async fn crash(node: Node) {
    node.server.abort();
    let _ = node.raft.shutdown().await;
}

async fn leader_of(nodes: &BTreeMap<u64, Node>) -> u64 {
    let any = nodes.values().next().unwrap();
    let deadline = Duration::from_secs(10);
    let m = any
        .raft
        .wait(Some(deadline))
        .metrics(
            |m| m.current_leader.is_some_and(|l| nodes.contains_key(&l)),
            "a live leader",
        )
        .await
        .unwrap();
    m.current_leader.unwrap()
}

fn create(path: &str) -> Entry {
    Entry::test_create(path)
}

async fn write(nodes: &BTreeMap<u64, Node>, path: &str) -> u64 {
    let leader = leader_of(nodes).await;
    let reply = nodes[&leader]
        .raft
        .client_write(Proposal {
            entries: vec![create(path)],
        })
        .await
        .unwrap();
    reply.log_id.index
}

async fn applied_everywhere(nodes: &BTreeMap<u64, Node>, index: u64, path: &str) {
    for (id, node) in nodes {
        tokio::time::timeout(Duration::from_secs(10), node.sm.wait_applied(index))
            .await
            .unwrap_or_else(|_| panic!("node {id} did not apply entry {index}"));
        assert!(node.sm.applied().meta.logs.contains_key(path), "node {id}");
    }
}

// Proves: three nodes elect a leader; a committed proposal is applied on all three; with the
// leader crashed the other two elect a new one and commit more; the old leader restarted from
// its files catches up (and a snapshot taken meanwhile is installed or the log replayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_commit_through_a_leader_crash() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let disk = cairn_files::shared(cairn_files::FsDisk);
    let net = MemoryNet::new();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(
            id,
            start(id, &net, &disk, dirs[id as usize - 1].path()).await,
        );
    }
    let members: BTreeMap<u64, BasicNode> =
        (1..=3).map(|id| (id, BasicNode::new(addr(id)))).collect();
    nodes[&1].raft.initialize(members).await.unwrap();

    let first = write(&nodes, "/a").await;
    applied_everywhere(&nodes, first, "/a").await;

    let old = leader_of(&nodes).await;
    crash(nodes.remove(&old).unwrap()).await;
    let second = write(&nodes, "/b").await;
    applied_everywhere(&nodes, second, "/b").await;
    let new = leader_of(&nodes).await;
    assert_ne!(new, old);
    nodes[&new].raft.trigger().snapshot().await.unwrap();
    let third = write(&nodes, "/c").await;

    nodes.insert(
        old,
        start(old, &net, &disk, dirs[old as usize - 1].path()).await,
    );
    applied_everywhere(&nodes, third, "/c").await;
    let state = nodes[&old].sm.applied();
    assert_eq!(
        state.sequence, 3,
        "three operation-log entries applied once each"
    );
    for node in nodes.into_values() {
        crash(node).await;
    }
}
