//! Faulty business replicas and front doors, on real processes: a Cairn cluster in this
//! process, three `cairn-bank replica` processes (each with its worker), a `cairn-bank
//! front-door`, and callers using the plain generated client. A replica's process killed under
//! load, a replica corrupting its outputs, a front door killed under keyed retries.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bank_client::pb::DepositRequest;
use bank_client::pb::bank_client::BankClient;
use bytes::Bytes;
use cairn_exec::records::Kind;
use cairn_exec::service_logs::ServiceLogs;
use common::processes::{
    Process, cluster, connect, front_door, front_door_with, open_accounts, replica,
};
use common::workload::{Callers, mixed_calls};
use common::{BANK, Got, digests_agree, got_of, inputs, outputs_of_all, sequential};
use tonic::transport::Channel;

const ACCOUNTS: u64 = 8;
const INITIAL: u64 = 1000;
/// The replica killed and restarted.
const VICTIM: u32 = 1;

/// Latencies of the calls made in one phase, and the money deposited.
#[derive(Default)]
struct Phase {
    latencies_us: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// Proves: with one replica's process SIGKILLed in the middle of a load of deposits from 4
// callers, every call is still answered (the other two make f+1), and correctly: after the
// replica is restarted it catches up (no lag), the three state digests are equal, and the sum
// of balances is the initial money plus every deposit acknowledged. Prints p50/p99 of the calls
// before, during and after the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_load_is_not_missed_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, client) = cluster(dir.path()).await;
    let master = cluster.master_addr.clone();
    let mut replicas: Vec<Process> = (0..3).map(|i| replica(&master, i, &[])).collect();
    let (door, addr) = front_door(BANK, &master, "127.0.0.1:0");
    let channel = connect(&addr).await;
    open_accounts(&channel, ACCOUNTS, INITIAL).await;
    // 0: before the kill, 1: replica down, 2: after its restart.
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4u64)
        .map(|c| {
            let mut bank = BankClient::new(channel.clone());
            let (phase, stop) = (phase.clone(), stop.clone());
            tokio::spawn(async move {
                let mut phases: [Phase; 3] = Default::default();
                let mut deposited = 0u64;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = usize::from(phase.load(Ordering::Relaxed));
                    let amount = 1 + (c * 7 + i) % 10;
                    let began = Instant::now();
                    bank.deposit(DepositRequest {
                        account: format!("acct-{}", (c + i) % ACCOUNTS),
                        amount,
                    })
                    .await
                    .unwrap_or_else(|s| panic!("a deposit failed in phase {p}: {s:?}"));
                    phases[p]
                        .latencies_us
                        .push(began.elapsed().as_micros() as u64);
                    deposited += amount;
                    i += 1;
                }
                (phases, deposited)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    replicas[VICTIM as usize].kill();
    phase.store(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    replicas[VICTIM as usize] = replica(&master, VICTIM, &[]);
    replicas[VICTIM as usize].wait_line(&["state rebuilt"]);
    phase.store(2, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut phases: [Vec<u64>; 3] = Default::default();
    let mut deposited = 0;
    for caller in callers {
        let (p, d) = caller.await.unwrap();
        for (all, one) in phases.iter_mut().zip(p) {
            all.extend(one.latencies_us);
        }
        deposited += d;
    }
    for (name, latencies) in ["before the kill", "replica down", "after its restart"]
        .iter()
        .zip(phases.iter_mut())
    {
        latencies.sort_unstable();
        println!(
            "{name}: {} calls, p50 {} µs, p99 {} µs",
            latencies.len(),
            percentile(latencies, 0.5),
            percentile(latencies, 0.99)
        );
        assert!(!latencies.is_empty(), "no call {name}");
    }
    // The restarted replica catches up.
    let logs = ServiceLogs::new("bank").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = cairn_exec::status::status(&client, &logs).await.unwrap();
        if s.replicas.iter().all(|r| r.lag == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never caught up: {:?}",
            s.replicas
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agreed = digests_agree(&client, &channel).await;
    assert_eq!(
        agreed.total,
        ACCOUNTS * INITIAL + deposited,
        "balances are the initial money plus every acknowledged deposit"
    );
    drop(door);
}

/// Deposits `amount` into `account` with idempotency key `key`, retrying (the same key) until
/// it is answered OK, at most 60 s: the front door may be down meanwhile.
async fn deposit_until_ok(channel: &Channel, key: &str, account: String, amount: u64) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut request = tonic::Request::new(DepositRequest {
            account: account.clone(),
            amount,
        });
        request
            .metadata_mut()
            .insert("cairn-idempotency-key", key.parse().unwrap());
        match BankClient::new(channel.clone()).deposit(request).await {
            Ok(_) => return attempts,
            Err(status) => {
                assert!(
                    Instant::now() < deadline,
                    "{key} never answered: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

// Proves: with the front door SIGKILLed in the middle of a load of keyed deposits from 4
// callers and restarted on the same address, callers that retry each deposit with its
// idempotency key until it is answered end with every deposit applied exactly once: the sum of
// balances is the initial money plus each deposit once (no double effects, none lost), and the
// three replicas' state digests are equal. Prints how many calls needed a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_door_killed_mid_load_executes_nothing_twice_for_keyed_retries() {
    const PER_CALLER: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let (cluster, client) = cluster(dir.path()).await;
    let master = cluster.master_addr.clone();
    let _replicas: Vec<Process> = (0..3).map(|i| replica(&master, i, &[])).collect();
    let (mut door, addr) = front_door(BANK, &master, "127.0.0.1:0");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    open_accounts(&channel, ACCOUNTS, INITIAL).await;
    let callers: Vec<_> = (0..4u64)
        .map(|c| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let (mut deposited, mut retried) = (0u64, 0u64);
                for i in 0..PER_CALLER {
                    let amount = 1 + (c * 13 + i) % 10;
                    let key = format!("deposit-{c}-{i}");
                    let account = format!("acct-{}", (c + i) % ACCOUNTS);
                    let attempts = deposit_until_ok(&channel, &key, account, amount).await;
                    retried += u64::from(attempts > 1);
                    deposited += amount;
                }
                (deposited, retried)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    door.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    (door, _) = front_door(BANK, &master, &addr);
    let (mut deposited, mut retried) = (0, 0);
    for caller in callers {
        let (d, r) = caller.await.unwrap();
        deposited += d;
        retried += r;
    }
    println!(
        "front door killed mid-load: {} keyed deposits, {retried} needed a retry",
        4 * PER_CALLER
    );
    assert!(retried > 0, "the kill interrupted no call");
    let agreed = digests_agree(&client, &channel).await;
    assert_eq!(
        agreed.total,
        ACCOUNTS * INITIAL + deposited,
        "every keyed deposit applied exactly once"
    );
    drop(door);
}

// Proves: with one replica (f = 1) run with `--test-corrupt-outputs 1.0` (a bit of every output
// flipped), 2,000 mixed calls from 4 callers all get the sequential answer of the input log
// (the two correct replicas outvote it); no vote counts the wrong replica among the agreeing;
// and `status` reports it dissenting on every request it answered, all of them in a row, so
// faulty, the other two on none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_answering_wrongly_is_outvoted_and_reported() {
    const CLIENTS: usize = 4;
    const CALLS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (cluster, client) = cluster(dir.path()).await;
    let master = cluster.master_addr.clone();
    let _replicas = [
        replica(&master, 0, &[]),
        replica(&master, 1, &["--test-corrupt-outputs", "1.0"]),
        replica(&master, 2, &[]),
    ];
    let (_door, addr) = front_door(BANK, &master, "127.0.0.1:0");
    let channel = connect(&addr).await;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(mixed_calls(
                BankClient::new(channel.clone()),
                0x2000 + c as u64,
                |n| n < CALLS / CLIENTS,
            ))
        })
        .collect();
    let mut calls = Vec::new();
    for t in tasks {
        calls.extend(t.await.unwrap().0);
    }
    let log = inputs(&client).await;
    assert_eq!(log.len(), CALLS);
    let expected = sequential(&log).await;
    for (id, outcome) in &calls {
        let reply = &expected[id];
        let want = got_of(reply);
        assert_eq!(outcome, &want);
    }
    let ids: Vec<Bytes> = log.iter().map(|i| i.request_id.clone()).collect();
    outputs_of_all(&client, &ids).await;
    let votes = common::records(&client, "/exec/bank/votes").await;
    let mut voted = 0;
    for kind in &votes {
        if let Kind::Vote(v) = kind {
            assert!(!v.agreeing.contains(&1), "{v:?}");
            assert_eq!(v.agreeing.len(), 2);
            voted += 1;
        }
    }
    assert!(voted >= CALLS, "{voted} votes");
    let logs = cairn_exec::service_logs::ServiceLogs::new("bank").unwrap();
    let s = cairn_exec::status::status(&client, &logs).await.unwrap();
    let dissents: Vec<u64> = s.replicas.iter().map(|r| r.dissents).collect();
    println!("wrong replica 1: dissents per replica {dissents:?} over {CALLS} requests");
    assert_eq!(dissents, vec![0, CALLS as u64, 0]);
    assert_eq!(s.replicas[1].dissents_in_a_row, CALLS as u64);
    assert_eq!(s.replicas[1].state, "faulty");
    assert_eq!(s.replicas[0].state, "ok");
    assert_eq!(s.dissents, CALLS as u64);
}

// Proves: with more than f replicas out at once — replica 1 paused (SIGSTOP) and replica 2
// SIGKILLed, under a mixed load from 4 callers with a 300 ms deadline — no call gets a wrong
// answer: calls made meanwhile end DEADLINE_EXCEEDED (PENDING, their request id in the
// metadata) after 2 × the deadline; once replica 1 resumes every pending request is decided by
// a VOTE equal to what a sequential execution of the input log gives, and calls are answered
// again; after replica 2 restarts and catches up the three state digests are equal and every
// definite reply equals the sequential execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_out_at_once_leave_calls_pending_never_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, client) = cluster(dir.path()).await;
    let master = cluster.master_addr.clone();
    let mut replicas: Vec<Process> = (0..3).map(|i| replica(&master, i, &[])).collect();
    let (_door, addr) = front_door_with(BANK, &master, "127.0.0.1:0", &["--deadline-ms", "300"]);
    let channel = connect(&addr).await;
    let callers = Callers::start(&channel, 4, 0x4000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    replicas[1].signal(libc::SIGSTOP);
    replicas[2].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    replicas[1].signal(libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(2)).await;
    replicas[2] = replica(&master, 2, &[]);
    replicas[2].wait_line(&["state rebuilt"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deadline_exceeded = tonic::Code::DeadlineExceeded as u32;
    let mut calls: Vec<(Bytes, Got)> = Vec::new();
    for made in callers.stop().await {
        assert!(
            made.last()
                .is_some_and(|(_, g)| !matches!(g, Err((c, _)) if *c == deadline_exceeded)),
            "a caller's last call is answered"
        );
        calls.extend(made);
    }

    let log = inputs(&client).await;
    let expected = sequential(&log).await;
    let mut pending: Vec<Bytes> = Vec::new();
    for (id, outcome) in &calls {
        if matches!(outcome, Err((code, _)) if *code == deadline_exceeded) {
            pending.push(id.clone());
            continue;
        }
        let reply = &expected[id];
        let want = got_of(reply);
        assert_eq!(outcome, &want, "request {}", cairn_exec::records::hex(id));
    }
    println!(
        "{} calls, {} pending while two replicas were out",
        calls.len(),
        pending.len()
    );
    assert!(!pending.is_empty(), "no call was left pending");
    // Each pending request is decided later, as the sequential execution says.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let votes: std::collections::HashMap<Bytes, [u8; 32]> =
            common::records(&client, "/exec/bank/votes")
                .await
                .into_iter()
                .filter_map(|k| match k {
                    Kind::Vote(v) => Some((
                        v.request_id.clone(),
                        cairn_exec::records::digest(v.code, &v.message, &v.response),
                    )),
                    _ => None,
                })
                .collect();
        if pending.iter().all(|id| votes.contains_key(id)) {
            for id in &pending {
                assert_eq!(
                    votes[id],
                    expected[id].digest(),
                    "the verdict of a pending call"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "pending requests never decided");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs = ServiceLogs::new("bank").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cairn_exec::status::status(&client, &logs)
        .await
        .unwrap()
        .replicas
        .iter()
        .all(|r| r.lag == 0)
    {
        assert!(Instant::now() < deadline, "replica 2 never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    digests_agree(&client, &channel).await;
}
