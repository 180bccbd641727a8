//! The must-show checks of the execution layer, on real processes: `cairn-bank local` (master,
//! 3 chunkservers, 3 replicas each with its worker process, a front door) called by the plain
//! generated client (crate bank-client, no Cairn code).

mod common;

use std::time::{Duration, Instant};

use bank_client::pb::bank_client::BankClient;
use bank_client::pb::{
    BalanceRequest, ClaimRequest, DepositRequest, OpenRequest, StateDigestReply, StateDigestRequest,
};
use bytes::Bytes;
use cairn_client::Client;
use cairn_exec::records::Kind;
use common::workload::mixed_calls;
use common::{Got, LocalBank, got, got_of, inputs, outputs_of_all, request_id, sequential};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

// Proves: 8 concurrent plain clients making 10,000 mixed calls (opens, deposits, transfers,
// balances; with NOT_FOUND, FAILED_PRECONDITION and ALREADY_EXISTS among them) get exactly the
// replies a sequential execution of the input log gives, call by call; the three replicas'
// state digests are equal (and equal the sequential one); the sum of balances equals the money
// put in; and outputs, stored once beside each replica (RF 1), take about 3 × their record
// bytes on disk, not 9 ×, while inputs at RF 3 take about 3 ×.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_get_the_sequential_answers_of_the_input_log() {
    const CLIENTS: usize = 8;
    const CALLS: usize = 10_000;
    let bank = LocalBank::start();
    let channel = Channel::from_shared(bank.url())
        .unwrap()
        .connect()
        .await
        .expect("connect to the front door");
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let client = BankClient::new(channel.clone());
            tokio::spawn(mixed_calls(client, 0x1000 + c as u64, |n| {
                n < CALLS / CLIENTS
            }))
        })
        .collect();
    let mut calls: Vec<(Bytes, Got)> = Vec::new();
    let mut money_in = 0;
    for t in tasks {
        let (log, money) = t.await.unwrap();
        calls.extend(log);
        money_in += money;
    }
    let elapsed = started.elapsed();
    assert_eq!(calls.len(), CALLS);
    let (failed, succeeded): (Vec<_>, Vec<_>) = calls.iter().partition(|(_, g)| g.is_err());
    println!(
        "{CALLS} calls from {CLIENTS} clients in {:.1} s: {} OK, {} refused",
        elapsed.as_secs_f64(),
        succeeded.len(),
        failed.len()
    );
    assert!(!succeeded.is_empty() && !failed.is_empty());

    let mut digest_client = BankClient::new(channel.clone());
    let digest_reply = digest_client
        .state_digest(StateDigestRequest {})
        .await
        .expect("the state digest");
    let digest_id = request_id(digest_reply.metadata());
    let voted = digest_reply.into_inner();
    assert_eq!(voted.total, money_in, "the sum of balances is conserved");

    let client = Client::connect(&bank.master).await.unwrap();
    let log = inputs(&client).await;
    assert_eq!(log.len(), CALLS + 1, "every call logged once");
    let expected = sequential(&log).await;
    let mut matched = 0;
    for (id, outcome) in &calls {
        let reply = &expected[id];
        let want = got_of(reply);
        assert_eq!(outcome, &want, "request {}", cairn_exec::records::hex(id));
        matched += 1;
    }
    assert_eq!(matched, CALLS);
    let sequential_digest =
        StateDigestReply::decode(expected[&digest_id].response.clone()).unwrap();
    assert_eq!(voted, sequential_digest);

    let replicas = outputs_of_all(&client, std::slice::from_ref(&digest_id)).await;
    let digests: Vec<StateDigestReply> = replicas
        .iter()
        .map(|o| StateDigestReply::decode(o[&digest_id].response.clone()).unwrap())
        .collect();
    for (i, d) in digests.iter().enumerate() {
        assert_eq!(d, &voted, "replica {i}'s state");
    }
    println!(
        "replica state digests: {} (all 3 equal), total balance {}, {} accounts",
        cairn_exec::records::hex(&voted.digest),
        voted.total,
        voted.accounts
    );

    // Storage: the master learns replica lengths from heartbeats; wait until it has them.
    let logs = cairn_exec::service_logs::ServiceLogs::new("bank").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (outputs_ratio, inputs_ratio) = loop {
        let s = cairn_exec::status::status(&client, &logs).await.unwrap();
        let b = s.bytes;
        let outputs_ratio = b.outputs_on_disk as f64 / (3.0 * b.output_records as f64);
        let inputs_ratio = b.inputs_on_disk as f64 / (3.0 * b.input_records as f64);
        if (outputs_ratio >= 0.99 && inputs_ratio >= 0.99) || Instant::now() > deadline {
            println!(
                "storage: outputs_on_disk {} / (3 x output_records {}) = {outputs_ratio:.3}; \
                 inputs_on_disk {} / (3 x input_records {}) = {inputs_ratio:.3}",
                b.outputs_on_disk, b.output_records, b.inputs_on_disk, b.input_records
            );
            assert_eq!(s.inputs, CALLS as u64 + 1);
            assert_eq!(s.dissents, 0);
            break (outputs_ratio, inputs_ratio);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!((0.99..1.2).contains(&outputs_ratio), "{outputs_ratio}");
    assert!((0.99..1.2).contains(&inputs_ratio), "{inputs_ratio}");
}

// Proves: 50 concurrent claimants of one name get exactly one winner; every loser gets
// ALREADY_EXISTS naming the winner's request id; the winner is the earliest claim in the input
// log; and every replica output the same single winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_claim_in_log_order_wins_on_every_replica() {
    const CLAIMANTS: usize = 50;
    let bank = LocalBank::start();
    let channel = bank.channel().await;
    let tasks: Vec<_> = (0..CLAIMANTS)
        .map(|c| {
            let mut client = BankClient::new(channel.clone());
            tokio::spawn(async move {
                got(client
                    .claim(ClaimRequest {
                        name: "prize".into(),
                        claimant: format!("claimant-{c}"),
                    })
                    .await)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let winners: Vec<&(Bytes, Got)> = results.iter().filter(|(_, g)| g.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one winner");
    let winner = winners[0].0.clone();
    let winner_hex = cairn_exec::records::hex(&winner);
    let mut losers = 0;
    for (_, g) in &results {
        if let Err((code, message)) = g {
            assert_eq!(*code, Code::AlreadyExists as u32);
            assert!(message.contains(&winner_hex), "{message}");
            losers += 1;
        }
    }
    assert_eq!(losers, CLAIMANTS - 1);

    let client = Client::connect(&bank.master).await.unwrap();
    let log = inputs(&client).await;
    let claims: Vec<Bytes> = log
        .iter()
        .filter(|i| i.method == "/bank.v1.Bank/Claim")
        .map(|i| i.request_id.clone())
        .collect();
    assert_eq!(claims.len(), CLAIMANTS);
    assert_eq!(claims[0], winner, "the earliest claim in the log wins");
    let replicas = outputs_of_all(&client, &claims).await;
    for (i, outputs) in replicas.iter().enumerate() {
        let ok: Vec<&Bytes> = claims.iter().filter(|id| outputs[*id].code == 0).collect();
        assert_eq!(ok, vec![&winner], "replica {i}'s winner");
    }
    println!("claim race: {CLAIMANTS} claimants, winner {winner_hex}, the same on 3 replicas");
}

// Proves: a retry with the same `cairn-idempotency-key` gets the first call's verdict and
// request id without a second execution, at the same front door and at a second front door
// started later (which rebuilt the key from the logs); calls through the second front door
// work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_gets_the_first_verdict() {
    let bank = LocalBank::start();
    let mut first = BankClient::connect(bank.url()).await.unwrap();
    first
        .open(OpenRequest {
            account: "k".into(),
            initial: 5,
        })
        .await
        .unwrap();
    let keyed = |amount| {
        let mut r = tonic::Request::new(DepositRequest {
            account: "k".into(),
            amount,
        });
        r.metadata_mut()
            .insert("cairn-idempotency-key", "deposit-1".parse().unwrap());
        r
    };
    let (id_a, got_a) = got(first.deposit(keyed(10)).await);
    let (id_b, got_b) = got(first.deposit(keyed(10)).await);
    assert_eq!(id_a, id_b);
    assert_eq!(got_a, got_b);

    let mut door = tokio::process::Command::new(common::BANK)
        .args(["front-door", "--master", &bank.master])
        .args(["--service", "bank", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(door.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the second front door serves in time")
        .unwrap()
        .unwrap();
    let addr = line.strip_prefix("front door ").expect("front door ADDR");
    let mut second = BankClient::connect(format!("http://{addr}")).await.unwrap();
    let (id_c, got_c) = got(second.deposit(keyed(10)).await);
    assert_eq!(id_c, id_a, "the second front door knows the key");
    assert_eq!(got_c, got_a);
    let balance = second
        .balance(BalanceRequest {
            account: "k".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance;
    assert_eq!(balance, 15, "the deposit ran once");
    let client = Client::connect(&bank.master).await.unwrap();
    let deposits = inputs(&client)
        .await
        .iter()
        .filter(|i| i.method == "/bank.v1.Bank/Deposit")
        .count();
    assert_eq!(deposits, 1, "one deposit input for three calls");
    let votes = common::records(&client, "/exec/bank/votes").await;
    assert!(
        votes
            .iter()
            .any(|k| matches!(k, Kind::Vote(v) if v.request_id == id_a && v.idempotency_key == "deposit-1")),
        "the vote carries the key"
    );
    door.kill().await.unwrap();
}
