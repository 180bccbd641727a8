//! Reads while the master is away: a client that listed a log replays its sealed chunks with
//! the master dead (they need no master: their replicas and lengths are fixed), and finishes the
//! replay once a master answers again; a log it never listed cannot be replayed meanwhile.

use std::time::Duration;

use cairn_client::{Client, ReplayEvent, ReplayOptions};
use cairn_tests::{Cluster, ClusterOpts, LogOpts};

/// Every record of a replay of `path` with `client`, as (chunk index, payload).
async fn replay_all(client: &Client, path: &str) -> Vec<(u32, Vec<u8>)> {
    let mut replay = client.replay(path, ReplayOptions::default()).await.unwrap();
    let mut records = Vec::new();
    while let Some(event) = replay.next().await {
        if let ReplayEvent::Record { chunk, payload, .. } = event.unwrap() {
            records.push((chunk, payload.to_vec()));
        }
    }
    records
}

/// Proves (issue 13, reads without a master): a client that replayed a log once replays its
/// sealed chunks again after the master was SIGKILLed — every record of them, in order, with
/// no master to ask — and, once the master is back, the same replay goes on into the chunks
/// after them and ends with every acknowledged record; a log the client never listed fails at
/// once while the master is away (the client has no listing of it).
///
/// How: 1 master + 3 chunkservers; 400 records of ~350 bytes into 64 KiB chunks (two or more
/// sealed chunks and an open one); the client library in-process.
#[test]
fn sealed_chunks_replay_while_the_master_is_away() {
    let _serial = cairn_tests::serial();
    let mut cluster = Cluster::start(3, ClusterOpts::default());
    cluster.create_log("/away", LogOpts::chunk_bytes(64 << 10));
    cluster.create_log("/never", LogOpts::chunk_bytes(64 << 10));
    let lines: Vec<Vec<u8>> = (0..400)
        .map(|i| format!("record {i:04} {}", "x".repeat(340)).into_bytes())
        .collect();
    cluster
        .append("away", "/away", lines.clone(), Duration::from_secs(60))
        .assert_all_acked();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(Client::connect(&cluster.master_addr()))
        .unwrap();
    let first = rt.block_on(replay_all(&client, "/away"));
    assert_eq!(
        first.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        lines
    );
    let stat = cluster.stat("/away");
    let sealed = stat.sealed().len() as u32;
    assert!(sealed >= 2, "{stat:?}");
    let in_sealed = first.iter().filter(|(chunk, _)| *chunk < sealed).count();

    cluster.kill_master();
    rt.block_on(async {
        let never = client.replay("/never", ReplayOptions::default()).await;
        assert!(never.is_err(), "no listing of /never to read from");

        let mut replay = client
            .replay("/away", ReplayOptions::default())
            .await
            .expect("the sealed chunks listed before are readable without the master");
        let mut got = Vec::new();
        while got.len() < in_sealed {
            match replay.next().await.expect("the replay goes on") {
                Ok(ReplayEvent::Record { payload, .. }) => got.push(payload.to_vec()),
                Ok(_) => {}
                Err(e) => panic!("record {} of the sealed chunks: {e}", got.len()),
            }
        }
        assert_eq!(
            got,
            lines[..in_sealed],
            "the sealed chunks, whole and in order"
        );

        // The master returns; the replay asks it for the chunks after the cached ones.
        cluster.restart_master();
        while let Some(event) = replay.next().await {
            if let ReplayEvent::Record { payload, .. } = event.unwrap() {
                got.push(payload.to_vec());
            }
        }
        assert_eq!(got, lines, "every record once the master answered");
    });
}
