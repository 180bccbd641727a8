//! A whole cluster in one process with no socket: the master, three chunkservers and a client,
//! every connection between them on one in-memory network (`cairn_proto::net::memory`), each role
//! started through its `serve_with` seam; the chunkservers store on in-memory disks with their
//! writers and blocking work inline, and the master writes its files on an in-memory disk too,
//! runs its blocking work inline and has its randomness seeded. This is the wiring a simulator
//! runs the cluster on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, LogOptions, ReplayEvent, ReplayOptions};
use cairn_proto::net::memory::MemoryNet;
use tokio::sync::oneshot;

mod common;
use common::Role;

const MASTER: &str = "master.memory:7000";

fn start_master(net: &MemoryNet, dir: &std::path::Path) -> Role {
    let mut config = cairn_master::Config::new(dir);
    config.heartbeat = Duration::from_millis(100);
    config.dead_after = Duration::from_millis(1500);
    let incoming = net.listen(MASTER).incoming();
    let (stop, stopped) = oneshot::channel::<()>();
    let seams = cairn_master::Seams {
        connector: Arc::new(net.clone()),
        disk: cairn_files::shared(cairn_files::FaultyDisk::new()),
        blocking: cairn_files::Blocking::Inline,
        seed: Some(42),
        metrics: Default::default(),
        tls: None,
    };
    let task = tokio::spawn(async move {
        cairn_master::serve_with(config, MASTER, incoming, seams, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the master serves");
    });
    Role { stop, task }
}

/// Creates `log`, retrying while the chunkservers are still registering.
async fn create_log(client: &Client, log: &str) {
    let options = LogOptions::default()
        .with_replication(3)
        .with_chunk_bytes(16 << 10);
    create_log_with(client, log, options).await;
}

/// Creates `log` with `options`, retrying while the chunkservers are still registering.
async fn create_log_with(client: &Client, log: &str, options: LogOptions) {
    for _ in 0..100 {
        match client.create_log(log, options.clone()).await {
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the cluster never took the log");
}

// Proves: master, chunkservers and client run together over nothing but their connectors: two
// appenders store 2 x 300 records of 200 bytes across many 16 KiB chunks (rolls and seals),
// replay returns every acknowledged record once, in order, and every connection made went to
// a name of the in-memory network (none of which resolves on a real one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_in_one_process_on_an_in_memory_network() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let net = MemoryNet::new();
    let master = start_master(&net, &tmp.path().join("master"));
    let chunkservers: Vec<Role> = (0..3)
        .map(|i| common::start_chunkserver(&net, i, &tmp.path().join(format!("cs{i}")), MASTER))
        .collect();
    let client = Client::with_connector(MASTER, Arc::new(net.clone()))
        .await
        .expect("the client connects to the master");
    create_log(&client, "/mem").await;

    let mut expected = Vec::new();
    let mut tasks = Vec::new();
    for w in 0..2 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let appender = client.appender("/mem").await.expect("an appender");
            let payloads: Vec<Bytes> = (0..300)
                .map(|i| Bytes::from(format!("w{w}-{i:04}-{}", "x".repeat(190))))
                .collect();
            let acks: Vec<_> = payloads
                .iter()
                .map(|p| appender.append(p.clone()))
                .collect();
            for a in acks {
                a.await.expect("acknowledged");
            }
            let writer = appender.writer_id();
            appender.close().await.expect("closed");
            (writer, payloads)
        }));
    }
    for t in tasks {
        expected.push(t.await.expect("the appender task"));
    }

    let stat = client.stat_log("/mem").await.expect("stat");
    assert!(stat.chunks.len() >= 8, "{} chunks", stat.chunks.len());
    let mut replay = client
        .replay("/mem", ReplayOptions::default())
        .await
        .expect("replay");
    let mut got: std::collections::HashMap<cairn_record::WriterId, Vec<Bytes>> = Default::default();
    while let Some(event) = replay.next().await {
        match event.expect("a replay event") {
            ReplayEvent::Record { id, payload, .. } => {
                got.entry(id.writer).or_default().push(payload)
            }
            ReplayEvent::Skipped { .. } => panic!("nothing was damaged"),
            other => panic!("an event this test does not know: {other:?}"),
        }
    }
    for (writer, payloads) in &expected {
        assert_eq!(got.get(writer), Some(payloads), "writer {writer:x}");
    }

    let dialed = net.dialed();
    assert!(dialed.iter().any(|a| a == MASTER));
    assert!(dialed.iter().any(|a| a.starts_with("cs")), "{dialed:?}");
    assert!(
        dialed
            .iter()
            .all(|a| a.ends_with(|c: char| c.is_ascii_digit()) && a.contains(".memory:")),
        "{dialed:?}"
    );
    drop(client);
    for cs in chunkservers {
        cs.stop().await;
    }
    master.stop().await;
}

// Proves: a log created with `place_on` keeps every chunk on that chunkserver: with replication
// 1 each of its many 16 KiB chunks has exactly that one replica (none elsewhere), listing shows
// the placement, ListChunkservers names the three live chunkservers in address order, and a log placed on a chunkserver that is not live is refused UNAVAILABLE
// rather than placed elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_log_keeps_every_chunk_on_its_chunkserver() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let net = MemoryNet::new();
    let master = start_master(&net, &tmp.path().join("master"));
    let chunkservers: Vec<Role> = (0..3)
        .map(|i| common::start_chunkserver(&net, i, &tmp.path().join(format!("cs{i}")), MASTER))
        .collect();
    let client = Client::with_connector(MASTER, Arc::new(net.clone()))
        .await
        .expect("the client connects to the master");
    let beside = "cs1.memory:7002";
    let placed = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(16 << 10)
        .with_place_on(beside);
    create_log_with(&client, "/placed", placed.clone()).await;
    let appender = client.appender("/placed").await.expect("an appender");
    let acks: Vec<_> = (0..200)
        .map(|i| appender.append(Bytes::from(format!("{i:04}-{}", "y".repeat(300)))))
        .collect();
    for a in acks {
        a.await.expect("acknowledged");
    }
    appender.close().await.expect("closed");
    let stat = client.stat_log("/placed").await.expect("stat");
    assert!(stat.chunks.len() >= 4, "{} chunks", stat.chunks.len());
    for chunk in &stat.chunks {
        assert_eq!(
            chunk.replicas,
            vec![beside.to_owned()],
            "chunk {}",
            chunk.index
        );
    }
    let servers = client.list_chunkservers().await.expect("list chunkservers");
    let addresses: Vec<&str> = servers.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addresses,
        ["cs0.memory:7001", "cs1.memory:7002", "cs2.memory:7003"]
    );
    assert!(servers.iter().all(|s| s.live), "{servers:?}");
    assert!(
        servers[1].replicas as usize >= stat.chunks.len(),
        "{servers:?}"
    );
    let listed = client.list_logs("/placed").await.expect("list");
    assert_eq!(listed[0].place_on.as_deref(), Some(beside));
    assert_eq!(listed[0].replication, 1);

    let nowhere = placed.with_place_on("cs9.memory:7010");
    match client.create_log("/nowhere", nowhere).await {
        Err(cairn_client::Error::Unavailable { message }) => {
            assert!(message.contains("cs9.memory:7010"), "{message}")
        }
        other => panic!("a log placed on a dead chunkserver: {other:?}"),
    }
    drop(client);
    for cs in chunkservers {
        cs.stop().await;
    }
    master.stop().await;
}
