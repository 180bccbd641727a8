//! Queries of death on real processes (`cairn-bank local`: master, 3 chunkservers, 3 replicas
//! each with its worker process, a front door), called by the plain generated client: the
//! example's test inputs `spin-forever` (a handler that never returns) and `crash-now` (one that
//! aborts its worker) during a load of ordinary calls.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bank_client::pb::bank_client::BankClient;
use bank_client::pb::{BalanceRequest, DepositRequest, OpenRequest, StateDigestRequest};
use bytes::Bytes;
use cairn_client::Client;
use cairn_exec::records::{CODE_CRASH, CODE_TIMEOUT, hex};
use cairn_exec::service_logs::ServiceLogs;
use common::{
    Got, LocalBank, got, got_of, inputs, outputs_of_all, request_id, sample, scrape, sequential,
};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

const ACCOUNTS: usize = 4;

/// One caller's ordinary calls: deposits and balances on the test's accounts.
async fn ordinary(mut bank: BankClient<Channel>, caller: usize, calls: usize) -> Vec<(Bytes, Got)> {
    let mut log = Vec::with_capacity(calls);
    for i in 0..calls {
        let account = format!("acct-{}", (caller + i) % ACCOUNTS);
        let r = if i % 2 == 0 {
            got(bank
                .deposit(DepositRequest {
                    account,
                    amount: 1 + i as u64,
                })
                .await)
        } else {
            got(bank.balance(BalanceRequest { account }).await)
        };
        log.push(r);
    }
    log
}

/// Calls `Open(account)` and returns the status it must fail with, its request id and how long
/// it took.
async fn open_failing(
    bank: &mut BankClient<Channel>,
    account: &str,
) -> (tonic::Status, Bytes, Duration) {
    let began = Instant::now();
    let status = bank
        .open(OpenRequest {
            account: account.to_owned(),
            initial: 1,
        })
        .await
        .expect_err("a query of death has no answer");
    let took = began.elapsed();
    let id = request_id(status.metadata());
    (status, id, took)
}

/// The whole scenario for one pathological account name, whose outputs have `fault` as code.
async fn quarantine_scenario(account: &str, fault: u32) {
    const CALLERS: usize = 4;
    const CALLS: usize = 250;
    let bank = LocalBank::start_with_http();
    let channel = bank.channel().await;
    let mut client_bank = BankClient::new(channel.clone());
    for a in 0..ACCOUNTS {
        client_bank
            .open(OpenRequest {
                account: format!("acct-{a}"),
                initial: 1000,
            })
            .await
            .expect("open");
    }
    // 1,000 ordinary calls, with the query of death among them.
    let load: Vec<_> = (0..CALLERS)
        .map(|c| tokio::spawn(ordinary(BankClient::new(channel.clone()), c, CALLS)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, first, took) = open_failing(&mut client_bank, account).await;
    println!(
        "{account}: answered {:?} after {} ms: {}",
        status.code(),
        took.as_millis(),
        status.message()
    );
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("quarantined"), "{status:?}");
    // The identical call again: refused at the front door, naming the quarantined request.
    let (again, named, took_again) = open_failing(&mut client_bank, account).await;
    println!(
        "{account} again: refused after {} µs: {}",
        took_again.as_micros(),
        again.message()
    );
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("refused"), "{again:?}");
    assert_eq!(named, first, "the refusal names the quarantined request");
    let mut calls = Vec::new();
    for t in load {
        calls.extend(t.await.unwrap());
    }
    let client = Client::connect(&bank.master).await.unwrap();
    let logs = ServiceLogs::new("bank").unwrap();
    // Every ordinary call got the answer of a sequential execution of the log without the
    // quarantined input; the refused call was never logged.
    let log = inputs(&client).await;
    assert!(log.iter().any(|i| i.request_id == first));
    assert_eq!(
        log.len(),
        ACCOUNTS + CALLERS * CALLS + 1,
        "the refused call is not in the input log"
    );
    let kept: Vec<_> = log
        .iter()
        .filter(|i| i.request_id != first)
        .cloned()
        .collect();
    let expected = sequential(&kept).await;
    for (id, outcome) in &calls {
        let reply = &expected[id];
        let want = got_of(reply);
        assert_eq!(outcome, &want, "request {}", hex(id));
    }
    // Every replica's output for it is the fault, the quarantine lists it, and no replica
    // applied it: their states are equal (and equal the sequential one).
    let ids: Vec<Bytes> = kept.iter().map(|i| i.request_id.clone()).collect();
    let all = outputs_of_all(&client, std::slice::from_ref(&first)).await;
    for (replica, outputs) in all.iter().enumerate() {
        assert_eq!(outputs[&first].code, fault, "replica {replica}");
    }
    // Every replica has its output for it, so the QUARANTINE (appended when the caller was
    // answered, before them) is in the vote log by now.
    let quarantined = cairn_exec::quarantine::list(&client, &logs).await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].request_id, first);
    let s = cairn_exec::status::status(&client, &logs).await.unwrap();
    for r in &s.replicas {
        assert_eq!(r.worker_recoveries, 1, "{r:?}");
    }
    assert_eq!(s.quarantined, 1);
    // The same, as the metrics (`--http`) count it: every replica's worker ran into the fault
    // once and was started again, the front door quarantined 1 input and refused its repeat,
    // and answered every other call (each one timed).
    let metrics = scrape(bank.http.as_deref().expect("started with --http"));
    let outcome = if fault == CODE_CRASH {
        "crash"
    } else {
        "timeout"
    };
    for replica in 0..3 {
        let labels = format!("service=\"bank\",replica=\"{replica}\"");
        assert_eq!(
            sample(
                &metrics,
                &format!("cairn_exec_replica_executions_total{{{labels},outcome=\"{outcome}\"}}")
            ),
            1.0,
            "{metrics}"
        );
        let ok = sample(
            &metrics,
            &format!("cairn_exec_replica_executions_total{{{labels},outcome=\"ok\"}}"),
        );
        assert!(ok >= (ACCOUNTS + CALLERS * CALLS) as f64 * 0.5, "{metrics}");
        assert_eq!(
            sample(
                &metrics,
                &format!("cairn_exec_replica_worker_starts_total{{{labels}}}")
            ),
            2.0,
            "{metrics}"
        );
    }
    let door = |series: &str| sample(&metrics, &format!("cairn_exec_{series}"));
    assert_eq!(
        door("quarantined_total{service=\"bank\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        door("calls_total{service=\"bank\",outcome=\"refused\"}"),
        1.0,
        "{metrics}"
    );
    let answered = door("calls_total{service=\"bank\",outcome=\"answered\"}");
    assert!(answered >= (ACCOUNTS + CALLERS * CALLS) as f64, "{metrics}");
    assert_eq!(
        door("call_seconds_count{service=\"bank\"}"),
        answered,
        "{metrics}"
    );
    // One endpoint for the whole process: the storage roles' metrics are there too.
    assert!(sample(&metrics, "cairn_master_logs") >= 5.0, "{metrics}");
    let events = cairn_exec::timeline::timeline(&client, &logs, &first)
        .await
        .unwrap();
    for e in &events {
        println!(
            "timeline: {} at {:?} replica {:?} {:?} {}",
            e.event, e.at_ms, e.replica, e.status, e.detail
        );
    }
    let names: Vec<&str> = events.iter().map(|e| e.event).collect();
    assert_eq!(names[..2], ["received", "logged"]);
    assert!(
        names.contains(&"quarantine") && names.contains(&"reply"),
        "{names:?}"
    );
    assert!(names.iter().filter(|n| **n == "output").count() >= 2);
    // Recovery: each replica's next output after its fault came from a fresh worker that had
    // rebuilt the state (printed: the time from the fault to it, by the replica's clock).
    for replica in 0..3u32 {
        let outputs: Vec<_> = common::records(&client, &format!("/exec/bank/outputs/{replica}"))
            .await
            .into_iter()
            .filter_map(|k| match k {
                cairn_exec::records::Kind::Output(o) => Some(o),
                _ => None,
            })
            .collect();
        let at = outputs
            .iter()
            .position(|o| o.request_id == first)
            .expect("its fault output");
        if let Some(next) = outputs.get(at + 1) {
            println!(
                "{account}: replica {replica} answered its next input {} ms after its {} output",
                next.at_ms.saturating_sub(outputs[at].at_ms),
                cairn_exec::records::code_name(fault)
            );
        }
    }
    let digest = got(client_bank.state_digest(StateDigestRequest {}).await);
    let digest_id = digest.0.clone();
    let all = outputs_of_all(&client, std::slice::from_ref(&digest_id)).await;
    let responses: HashSet<&Bytes> = all.iter().map(|o| &o[&digest_id].response).collect();
    assert_eq!(responses.len(), 1, "the replicas' states differ");
    let mut ids = ids;
    ids.push(digest_id.clone());
    outputs_of_all(&client, &ids).await;
    // Lifted, the identical call is logged and run again (and quarantined again).
    let lifted =
        cairn_exec::quarantine::lift(&client, &logs, &hex(&quarantined[0].fingerprint), "test")
            .await
            .unwrap();
    assert_eq!(lifted.request_id, first);
    assert!(
        cairn_exec::quarantine::list(&client, &logs)
            .await
            .unwrap()
            .is_empty()
    );
    let mut second = None;
    for _ in 0..100 {
        let (status, id, _) = open_failing(&mut client_bank, account).await;
        assert_eq!(status.code(), Code::FailedPrecondition);
        if id != first {
            second = Some(id);
            break;
        }
        // The front door has not read the LIFT yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = second.expect("the lifted call was run again");
    // The QUARANTINE follows the caller's answer into the vote log (votes are grouped).
    let mut quarantined = Vec::new();
    for _ in 0..100 {
        quarantined = cairn_exec::quarantine::list(&client, &logs).await.unwrap();
        if !quarantined.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].request_id, second);
    // The replicas go on: an ordinary call still gets its answer.
    client_bank
        .balance(BalanceRequest {
            account: "acct-0".to_owned(),
        })
        .await
        .expect("a call after the quarantines");
}

// Proves: a handler that never returns (`spin-forever`) during 1,000 ordinary calls is killed
// on every replica at its deadline and quarantined (FAILED_PRECONDITION naming it); the
// identical call is then refused by the front door without being logged; every ordinary call
// gets the answer of a sequential execution of the other inputs; no replica applied it (equal
// states); its timeline shows the TIMEOUTs and the quarantine; lifted, it is run (and
// quarantined) again; the replicas' fresh workers go on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_returns_is_killed_and_quarantined() {
    quarantine_scenario(cairn_bank::SPIN_FOREVER, CODE_TIMEOUT).await;
}

// Proves: the same for a handler that aborts its worker process (`crash-now`): CRASH on every
// replica, quarantined, refused, never applied, lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_crashes_its_worker_is_quarantined() {
    quarantine_scenario(cairn_bank::CRASH_NOW, CODE_CRASH).await;
}

// Proves PENDING: three different runaway calls at once (a 300 ms deadline) run one after the
// other on every replica, so the last one is still out when its caller's wait (twice the
// deadline) ends: that caller gets DEADLINE_EXCEEDED with its request id, the vote log holds a
// PENDING naming the replicas out, and the request's later QUARANTINE follows it; its timeline
// shows pending, the reply, then the quarantine; status counts no request as pending once all
// are decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_still_running_at_its_deadline_is_recorded_pending() {
    let bank = LocalBank::start_with(&[], &["--deadline-ms", "300"]);
    let channel = bank.channel().await;
    let calls: Vec<_> = (1..=3u64)
        .map(|initial| {
            let mut client = BankClient::new(channel.clone());
            tokio::spawn(async move {
                let status = client
                    .open(OpenRequest {
                        account: cairn_bank::SPIN_FOREVER.to_owned(),
                        initial,
                    })
                    .await
                    .expect_err("a runaway call has no answer");
                (request_id(status.metadata()), status)
            })
        })
        .collect();
    let mut pending = Vec::new();
    for call in calls {
        let (id, status) = call.await.unwrap();
        println!("{}: {:?} {}", hex(&id), status.code(), status.message());
        match status.code() {
            Code::DeadlineExceeded => {
                assert!(status.message().contains("pending"), "{status:?}");
                pending.push(id);
            }
            code => assert_eq!(code, Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert!(
        !pending.is_empty(),
        "the last of three runaway calls is pending"
    );
    let client = Client::connect(&bank.master).await.unwrap();
    let logs = ServiceLogs::new("bank").unwrap();
    let all = outputs_of_all(&client, &pending).await;
    for outputs in &all {
        for id in &pending {
            assert_eq!(outputs[id].code, CODE_TIMEOUT);
        }
    }
    // The verdicts follow the PENDING records into the vote log.
    let mut status = None;
    for _ in 0..100 {
        let s = cairn_exec::status::status(&client, &logs).await.unwrap();
        if s.quarantined == 3 {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("all three quarantined");
    assert_eq!(status.pending, 0, "every pending request has its verdict");
    for id in &pending {
        let events = cairn_exec::timeline::timeline(&client, &logs, id)
            .await
            .unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.event).collect();
        println!("timeline of pending {}: {names:?}", hex(id));
        let at = |name: &str| names.iter().position(|n| *n == name);
        let (p, r, q) = (at("pending"), at("reply"), at("quarantine"));
        assert!(p.is_some() && r.is_some() && q.is_some(), "{names:?}");
        assert!(
            p < q && r < q,
            "pending and its reply come before the quarantine: {names:?}"
        );
        let pending_event = &events[p.unwrap()];
        assert!(
            pending_event.detail.contains("[0, 1, 2]"),
            "{pending_event:?}"
        );
    }
}

// Proves: an input that crashes two replicas but not the third (a test input: a nondeterministic
// crash) is quarantined, and the replica that applied it rebuilds its state without it: after
// it, all three replicas' state digests are equal, and equal a sequential execution of the
// input log without the quarantined input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_applied_a_quarantined_input_rebuilds_without_it() {
    let bank = LocalBank::start();
    let channel = bank.channel().await;
    let mut client_bank = BankClient::new(channel);
    client_bank
        .open(OpenRequest {
            account: "acct-0".to_owned(),
            initial: 1000,
        })
        .await
        .expect("open");
    let (status, quarantined, _) =
        open_failing(&mut client_bank, cairn_bank::CRASH_UNLESS_REPLICA_0).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let client = Client::connect(&bank.master).await.unwrap();
    let all = outputs_of_all(&client, std::slice::from_ref(&quarantined)).await;
    assert_eq!(all[0][&quarantined].code, 0, "replica 0 applied it");
    assert_eq!(
        (all[1][&quarantined].code, all[2][&quarantined].code),
        (CODE_CRASH, CODE_CRASH)
    );
    let kept: Vec<_> = inputs(&client)
        .await
        .into_iter()
        .filter(|i| i.request_id != quarantined)
        .collect();
    let mut expected_bank = cairn_bank::Bank::server();
    for input in &kept {
        cairn_exec::call::call(
            &mut expected_bank,
            &cairn_exec::replica::worker_request(input),
        )
        .await;
    }
    // Replica 0 rebuilds once it reads the QUARANTINE. Once the QUARANTINE is in the vote log
    // (and a moment for the replicas' tails of it), a state digest is equal on all three at the
    // first ask: replica 0 is not outvoted into rebuilding (3 dissents in a row would also make
    // it rebuild, as faulty; it must have none).
    let logs = ServiceLogs::new("bank").unwrap();
    for _ in 0..100 {
        if !cairn_exec::quarantine::list(&client, &logs)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let digest = got(client_bank.state_digest(StateDigestRequest {}).await);
    let id = digest.0.clone();
    let all = outputs_of_all(&client, std::slice::from_ref(&id)).await;
    let responses: HashSet<&Bytes> = all.iter().map(|o| &o[&id].response).collect();
    assert_eq!(
        responses.len(),
        1,
        "replica 0 still holds the quarantined input's effects"
    );
    let reply =
        bank_client::pb::StateDigestReply::decode(digest.1.expect("a state digest")).unwrap();
    assert_eq!(reply.accounts, 1, "the quarantined Open applied nowhere");
    let sequential = cairn_exec::call::call(
        &mut expected_bank,
        &cairn_exec::records::WorkerRequest {
            method: "/bank.v1.Bank/StateDigest".to_owned(),
            ..Default::default()
        },
    )
    .await;
    let sequential = bank_client::pb::StateDigestReply::decode(sequential.response).unwrap();
    assert_eq!(reply.digest, sequential.digest);
    let s = cairn_exec::status::status(&client, &logs).await.unwrap();
    assert_eq!(s.replicas[0].dissents, 0, "{:?}", s.replicas[0]);
}
