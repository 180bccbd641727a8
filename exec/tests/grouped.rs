//! `GroupedAppender` against a real cluster in this process (a master and one chunkserver on
//! loopback ports): every record queued is acknowledged to its own caller, in call order, and
//! the log holds them once each in that order, under both policies the front door uses.

use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, LogOptions, ReplayEvent, ReplayOptions};
use cairn_exec::grouped::{GroupPolicy, GroupedAppender};
use cairn_local::{LocalCluster, LocalConfig};

/// Starts a master and one chunkserver on free-looking ports (another base if one is taken).
async fn cluster(dir: &std::path::Path) -> LocalCluster {
    for attempt in 0..8u16 {
        let base = 30_000 + (std::process::id() as u16 % 500) * 20 + attempt * 2;
        let config = LocalConfig {
            data: dir.join(format!("data{attempt}")),
            chunkservers: 1,
            port: base,
            adopt_cluster_id: false,
        };
        if let Ok(cluster) = LocalCluster::start(&config).await {
            return cluster;
        }
    }
    panic!("no free ports for a local cluster");
}

/// Creates `log` (RF 1) once the chunkserver has registered.
async fn create(client: &Client, log: &str) {
    let options = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(1 << 20);
    for _ in 0..150 {
        if client.create_log(log, options.clone()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{log} could not be created");
}

async fn replay(client: &Client, log: &str) -> Vec<Bytes> {
    let mut replay = client.replay(log, ReplayOptions::default()).await.unwrap();
    let mut got = Vec::new();
    while let Some(event) = replay.next().await {
        match event.unwrap() {
            ReplayEvent::Record { payload, .. } => got.push(payload),
            ReplayEvent::Skipped { .. } => panic!("nothing is damaged here"),
            other => panic!("an event this test does not know: {other:?}"),
        }
    }
    got
}

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("record {i}"))
}

// Proves: with the INPUT policy (yields, groups in flight together) and the VOTE policy (a
// hold, one group in flight), records queued by many callers at once and then one by one are
// each acknowledged to their own caller, with sequences in call order, and the log replays
// them exactly once, in that order; detached records land too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_records_are_acknowledged_and_stored_in_call_order() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let client = Client::connect(&cluster.master_addr).await.unwrap();
    let policies = [
        (
            "/inputs",
            GroupPolicy {
                yields_max: 4,
                hold: Duration::ZERO,
                one_in_flight: false,
            },
        ),
        (
            "/votes",
            GroupPolicy {
                yields_max: 0,
                hold: Duration::from_millis(5),
                one_in_flight: true,
            },
        ),
    ];
    for (log, policy) in policies {
        create(&client, log).await;
        let grouped = GroupedAppender::start(client.appender(log).await.unwrap(), policy, "test");
        // A burst: 300 records queued at once, then 20 more one at a time, then 5 detached.
        let burst: Vec<_> = (0..300).map(|i| grouped.append(payload(i))).collect();
        let mut sequences = Vec::new();
        for ack in burst {
            sequences.push(ack.await.unwrap().id.sequence);
        }
        for i in 300..320 {
            sequences.push(grouped.append(payload(i)).await.unwrap().id.sequence);
        }
        assert!(
            sequences.iter().copied().eq(1..=320),
            "{log}: {sequences:?}"
        );
        for i in 320..325 {
            grouped.append_detached(payload(i));
        }
        // Queued after the detached ones: once it is acknowledged, so are they (one writer's
        // records are committed in sequence order).
        let last = grouped.append(payload(325)).await.unwrap();
        assert_eq!(last.id.sequence, 326);
        let got = replay(&client, log).await;
        let want: Vec<Bytes> = (0..326).map(payload).collect();
        assert_eq!(got, want, "{log}");
    }
}
