//! Three masters in one Raft group (`Config::id`, `Config::peers`), three chunkservers and a
//! client, in one process on the in-memory network: the group elects a leader that serves,
//! the followers answer `UNAVAILABLE` (and the client and chunkservers, given every master's
//! address, move on to the next), and when the leader stops another takes over with every
//! committed change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, LogOptions, ReplayEvent, ReplayOptions};
use cairn_proto::net::memory::MemoryNet;
use tokio::sync::oneshot;

mod common;
use common::Role;

fn master_addr(id: u64) -> String {
    format!("m{id}.memory:7000")
}

fn all_masters() -> String {
    (1..=3).map(master_addr).collect::<Vec<_>>().join(",")
}

fn start_master(net: &MemoryNet, id: u64, dir: &std::path::Path) -> Role {
    let mut config = cairn_master::Config::new(dir);
    config.id = id;
    config.peers = (1..=3)
        .map(|i| (i, master_addr(i)))
        .collect::<BTreeMap<_, _>>();
    config.heartbeat = Duration::from_millis(100);
    config.dead_after = Duration::from_millis(1500);
    let address = master_addr(id);
    config.listen = address.clone();
    let incoming = net.listen(&address).incoming();
    let (stop, stopped) = oneshot::channel::<()>();
    let seams = cairn_master::Seams {
        connector: Arc::new(net.clone()),
        disk: cairn_files::shared(cairn_files::FsDisk),
        blocking: cairn_files::Blocking::Threads,
        seed: None,
        metrics: Default::default(),
        tls: None,
    };
    let task = tokio::spawn(async move {
        cairn_master::serve_with(config, &address, incoming, seams, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the master serves");
    });
    Role { stop, task }
}

/// The id of the master that serves now (the others answer `UNAVAILABLE`), waiting for one.
async fn leader(net: &MemoryNet, among: &[u64]) -> u64 {
    for _ in 0..200 {
        for id in among {
            if let Ok(client) =
                Client::with_connector(&master_addr(*id), Arc::new(net.clone())).await
                && client.list_logs("/").await.is_ok()
            {
                return *id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no master of {among:?} served");
}

/// Creates `log`, retrying while the group elects and the chunkservers register.
async fn create_log(client: &Client, log: &str) {
    let options = LogOptions::default()
        .with_replication(3)
        .with_chunk_bytes(16 << 10);
    for _ in 0..200 {
        match client.create_log(log, options.clone()).await {
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the cluster never took {log}");
}

/// Appends `n` records of ~200 bytes to `log` (16 KiB chunks: rolls through the master), all
/// acknowledged; returns them.
async fn append(client: &Client, log: &str, tag: &str, n: usize) -> Vec<Bytes> {
    let appender = client.appender(log).await.expect("an appender");
    let payloads: Vec<Bytes> = (0..n)
        .map(|i| Bytes::from(format!("{tag}-{i:04}-{}", "x".repeat(190))))
        .collect();
    let acks: Vec<_> = payloads
        .iter()
        .map(|p| appender.append(p.clone()))
        .collect();
    for a in acks {
        a.await.expect("acknowledged");
    }
    appender.close().await.expect("closed");
    payloads
}

/// Every record of `log`. A replay's first call goes to the master: while the client's next
/// address is a dead or non-leading master, it fails once and the next call goes on to the
/// following address, so the start is retried.
async fn replay(client: &Client, log: &str) -> Vec<Bytes> {
    let mut started = None;
    for _ in 0..100 {
        match client.replay(log, ReplayOptions::default()).await {
            Ok(r) => {
                started = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut replay = started.expect("a replay starts once a master serves");
    let mut got = Vec::new();
    while let Some(event) = replay.next().await {
        match event.expect("a replay event") {
            ReplayEvent::Record { payload, .. } => got.push(payload),
            other => panic!("nothing was damaged: {other:?}"),
        }
    }
    got
}

// Proves (issue 13): three masters form one group with one leader serving; a log created and
// appended through it (rolling 16 KiB chunks, each roll a seal and an allocation committed by
// the group) survives the leader's stop: another master is elected, serves the log with every
// acknowledged record, and takes new logs and rolls; the client and the chunkservers, given all
// three addresses, find the new leader by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_keeps_serving_through_the_leaders_stop() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let net = MemoryNet::new();
    let mut masters: BTreeMap<u64, Role> = (1..=3)
        .map(|id| {
            (
                id,
                start_master(&net, id, &tmp.path().join(format!("m{id}"))),
            )
        })
        .collect();
    let chunkservers: Vec<Role> = (0..3)
        .map(|i| {
            common::start_chunkserver(&net, i, &tmp.path().join(format!("cs{i}")), &all_masters())
        })
        .collect();
    let first = leader(&net, &[1, 2, 3]).await;
    let client = Client::with_connector(&all_masters(), Arc::new(net.clone()))
        .await
        .expect("the client connects to a master");
    create_log(&client, "/before").await;
    let before = append(&client, "/before", "a", 200).await;

    masters.remove(&first).expect("running").stop().await;
    let rest: Vec<u64> = masters.keys().copied().collect();
    let second = leader(&net, &rest).await;
    assert_ne!(second, first);

    assert_eq!(replay(&client, "/before").await, before);
    create_log(&client, "/after").await;
    let after = append(&client, "/after", "b", 200).await;
    assert_eq!(replay(&client, "/after").await, after);
    let stat = client.stat_log("/after").await.expect("stat");
    assert!(
        stat.chunks.len() >= 3,
        "rolled through the new leader: {stat:?}"
    );

    drop(client);
    for cs in chunkservers {
        cs.stop().await;
    }
    for (_, m) in masters {
        m.stop().await;
    }
}
