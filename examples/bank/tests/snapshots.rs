//! Snapshots on real processes: a Cairn cluster in this process, three `cairn-bank replica`
//! processes (each with its worker) taking a snapshot every few inputs, a `cairn-bank
//! front-door`, and the plain generated client. One replica is killed and restarted: from its
//! snapshot, then from forged snapshots that must not be used. The same with
//! `cairn-bank-plain`, the bank hosted without snapshots.

mod common;

use std::time::{Duration, Instant};

use bank_client::pb::bank_client::BankClient;
use bank_client::pb::{DepositRequest, TransferRequest};
use bytes::Bytes;
use cairn_client::Client;
use cairn_exec::records::{ExecRecord, Kind};
use cairn_exec::service_logs::ServiceLogs;
use cairn_exec::snapshot_records::{
    AssembledSnapshot, SnapshotParts, TakenSnapshot, snapshot_records,
};
use common::processes::{self, Process, cluster, field, front_door, open_accounts};
use common::{BANK, digests_agree, outputs};
use tonic::transport::Channel;

/// Snapshot interval of the replicas under test.
const EVERY: u64 = 40;
/// The replica killed and restarted.
const VICTIM: u32 = 2;

/// The bank hosted without snapshots.
const PLAIN_BANK: &str = env!("CARGO_BIN_EXE_cairn-bank-plain");

/// Replica `index` of `program`'s service, a snapshot every [`EVERY`] inputs.
fn replica_of(program: &str, master: &str, index: u32) -> Process {
    processes::replica_of(
        program,
        master,
        index,
        &["--snapshot-every", &EVERY.to_string()],
    )
}

fn replica(master: &str, index: u32) -> Process {
    replica_of(BANK, master, index)
}

/// `calls` deposits and transfers over 8 accounts from 4 concurrent callers.
async fn calls(channel: &Channel, round: u64, calls: u64) {
    let tasks: Vec<_> = (0..4u64)
        .map(|c| {
            let mut bank = BankClient::new(channel.clone());
            tokio::spawn(async move {
                for i in 0..calls / 4 {
                    let n = round * 1000 + c * 100 + i;
                    let account = format!("acct-{}", n % 8);
                    if n.is_multiple_of(3) {
                        let _ = bank
                            .transfer(TransferRequest {
                                from: account,
                                to: format!("acct-{}", (n + 3) % 8),
                                amount: n % 50,
                            })
                            .await;
                    } else {
                        let _ = bank.deposit(DepositRequest { account, amount: n }).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Replica `index`'s newest complete snapshot in its output log.
async fn newest_snapshot(client: &Client, index: u32) -> Option<AssembledSnapshot> {
    let mut parts = SnapshotParts::default();
    for kind in common::records(client, &format!("/exec/bank/outputs/{index}")).await {
        if let Kind::Snapshot(record) = kind {
            parts.add(record).unwrap();
        }
    }
    parts.newest().0
}

/// Appends `forged` to replica `index`'s output log (while that replica is down).
async fn append_snapshot(client: &Client, index: u32, forged: &TakenSnapshot) {
    let appender = client
        .appender(&format!("/exec/bank/outputs/{index}"))
        .await
        .unwrap();
    let records = snapshot_records(forged, appender.payload_bytes_max()).unwrap();
    let payloads = records
        .into_iter()
        .map(|r| ExecRecord::from(Kind::Snapshot(r)).to_payload());
    for ack in appender.append_all(payloads) {
        ack.await.unwrap();
    }
}

/// Waits until every replica's newest snapshot covers `inputs` (at most 120 s) and checks
/// their digests are equal.
async fn snapshots_agree(client: &Client, inputs: u64) {
    let logs = ServiceLogs::new("bank").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = cairn_exec::status::status(client, &logs).await.unwrap();
        let snaps: Vec<_> = s.replicas.iter().map(|r| r.snapshot.clone()).collect();
        if snaps
            .iter()
            .all(|x| x.as_ref().is_some_and(|x| x.inputs == inputs))
        {
            let digests: Vec<[u8; 32]> = snaps.iter().map(|x| x.as_ref().unwrap().digest).collect();
            assert!(digests.iter().all(|d| *d == digests[0]), "{snaps:?}");
            println!(
                "snapshots after {inputs} inputs on 3 replicas: blake3 {}",
                cairn_exec::records::hex(&digests[0])
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "snapshots never caught up: {snaps:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// Proves: with `--snapshot-every 40`, replicas store snapshots whose blake3 is equal at equal
// points; a killed replica restarted while the others went on restores its newest snapshot
// (log: path "snapshot", restored K > 0, a multiple of 40) and re-runs only the inputs it had
// outputs for beyond K (K + rerun = its outputs), not the whole input log; its state digest
// then equals the others'. A forged newest snapshot whose input K is another request (state
// bytes genuine, so using it would lose 8 inputs) and one whose bytes the bank refuses are
// both passed over with a warning for a full re-run, and the state digests still agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_restores_its_snapshot_and_reruns_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, client) = cluster(dir.path()).await;
    let master = cluster.master_addr.clone();
    let mut replicas: Vec<Process> = (0..3).map(|i| replica(&master, i)).collect();
    let (_door, addr) = front_door(BANK, &master, "127.0.0.1:0");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    open_accounts(&channel, 8, 1000).await;
    calls(&channel, 1, 200).await;
    // 208 inputs: snapshots after 40 … 200.
    snapshots_agree(&client, 200).await;

    replicas[VICTIM as usize].kill();
    calls(&channel, 2, 120).await;
    let had = outputs(&client, VICTIM).await.len() as u64;
    let logged = common::inputs(&client).await.len() as u64;
    replicas[VICTIM as usize] = replica(&master, VICTIM);
    let start = replicas[VICTIM as usize].wait_line(&["replica starting"]);
    println!("{start}");
    assert!(
        start.contains("path=\"snapshot\"") || start.contains("path=snapshot"),
        "{start}"
    );
    let restored = field(&start, "restored");
    let rerun = field(&start, "rerun");
    println!(
        "restart: input log {logged} inputs, replica {VICTIM} had {had} outputs, restored a \
         snapshot of {restored}, re-ran {rerun}"
    );
    assert!(restored >= 200 && restored.is_multiple_of(EVERY), "{start}");
    assert_eq!(restored + rerun, had, "{start}");
    // After the restart it runs logged - restored inputs (rerun of them again), not logged.
    assert!(
        logged - restored < logged && rerun < logged - restored,
        "{start}"
    );
    replicas[VICTIM as usize].wait_line(&["state rebuilt"]);
    digests_agree(&client, &channel).await;
    // 8 + 200 + 120 + 1 = 329 inputs: every replica's newest snapshot is after 320.
    snapshots_agree(&client, 320).await;

    // A forged snapshot: the genuine bytes of the newest one (after 320 inputs) claimed for
    // 8 more, which the replica has outputs for: only the check of input K's request id
    // stops it from skipping 8 inputs.
    replicas[VICTIM as usize].kill();
    let genuine = newest_snapshot(&client, VICTIM).await.unwrap();
    assert_eq!(genuine.inputs, 320);
    calls(&channel, 3, 40).await;
    let forged = TakenSnapshot {
        replica: VICTIM,
        inputs: genuine.inputs + 8,
        last_request_id: genuine.last_request_id.clone(),
        bytes: genuine.bytes.clone(),
    };
    append_snapshot(&client, VICTIM, &forged).await;
    replicas[VICTIM as usize] = replica(&master, VICTIM);
    let warned = replicas[VICTIM as usize].wait_line(&["does not agree with the snapshot"]);
    println!("{warned}");
    assert!(warned.contains("input 328 is request"), "{warned}");
    let start = replicas[VICTIM as usize].wait_line(&["replica starting", "full"]);
    assert_eq!(field(&start, "restored"), 0, "{start}");
    digests_agree(&client, &channel).await;

    // A forged snapshot the bank refuses to restore.
    replicas[VICTIM as usize].kill();
    let refused = TakenSnapshot {
        replica: VICTIM,
        inputs: genuine.inputs + 2 * EVERY,
        last_request_id: Bytes::from_static(&[0; 16]),
        bytes: Bytes::from_static(b"not a bank snapshot"),
    };
    append_snapshot(&client, VICTIM, &refused).await;
    calls(&channel, 4, 40).await;
    replicas[VICTIM as usize] = replica(&master, VICTIM);
    let warned = replicas[VICTIM as usize].wait_line(&["did not restore"]);
    println!("{warned}");
    let start = replicas[VICTIM as usize].wait_line(&["replica starting", "full"]);
    assert_eq!(field(&start, "restored"), 0, "{start}");
    digests_agree(&client, &channel).await;
}

// Proves: a service hosted without snapshots (`cairn_exec::main`) runs as before under
// `--snapshot-every 40`: its replicas learn once that it has none, store no SNAPSHOT record, and
// a replica killed and restarted re-runs every input it had outputs for (path "full", restored
// 0) and ends with the others' state digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_snapshots_rebuilds_by_rerunning_every_input() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, client) = cluster(dir.path()).await;
    let master = cluster.master_addr.clone();
    let mut replicas: Vec<Process> = (0..3).map(|i| replica_of(PLAIN_BANK, &master, i)).collect();
    let (_door, addr) = front_door(PLAIN_BANK, &master, "127.0.0.1:0");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    open_accounts(&channel, 8, 1000).await;
    calls(&channel, 1, 100).await;
    for r in &replicas {
        r.wait_line(&["the service has no snapshots"]);
    }
    replicas[VICTIM as usize].kill();
    calls(&channel, 2, 40).await;
    let had = outputs(&client, VICTIM).await.len() as u64;
    replicas[VICTIM as usize] = replica_of(PLAIN_BANK, &master, VICTIM);
    let start = replicas[VICTIM as usize].wait_line(&["replica starting"]);
    println!("{start}");
    assert!(start.contains("full"), "{start}");
    assert_eq!(field(&start, "restored"), 0, "{start}");
    assert_eq!(field(&start, "rerun"), had, "{start}");
    digests_agree(&client, &channel).await;
    let logs = ServiceLogs::new("bank").unwrap();
    let s = cairn_exec::status::status(&client, &logs).await.unwrap();
    assert_eq!(s.bytes.snapshot_records, 0);
    assert!(s.replicas.iter().all(|r| r.snapshot.is_none()), "{s:?}");
}
