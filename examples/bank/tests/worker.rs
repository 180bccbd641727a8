//! The bank driven the way the execution layer drives it: recorded request bytes through the
//! generated server in process, the same through a `cairn-bank worker` process over a pipe, and
//! the plain generated client against `cairn-bank serve-direct`.

use std::path::Path;

use bytes::Bytes;
use cairn_bank::pb::{
    BalanceReply, BalanceRequest, ClaimReply, ClaimRequest, DepositRequest, OpenRequest,
    TransferReply, TransferRequest,
};
use cairn_exec::Worker;
use cairn_exec::records::{WorkerReply, WorkerRequest};
use prost::Message;
use tonic::Code;

/// A fixed script of calls covering every method and every error the bank answers.
fn script() -> Vec<WorkerRequest> {
    fn req(i: u8, method: &str, message: impl Message) -> WorkerRequest {
        WorkerRequest {
            request_id: Bytes::from(vec![i; 16]),
            method: format!("/bank.v1.Bank/{method}"),
            message: Bytes::from(message.encode_to_vec()),
            seed: u64::from(i),
            logical_time_ms: 1000 + u64::from(i),
            ..WorkerRequest::default()
        }
    }
    let open = |a: &str, initial| OpenRequest {
        account: a.into(),
        initial,
    };
    vec![
        req(1, "Open", open("alice", 100)),
        req(2, "Open", open("bob", 5)),
        req(3, "Open", open("alice", 1)),
        req(
            4,
            "Deposit",
            DepositRequest {
                account: "bob".into(),
                amount: 10,
            },
        ),
        req(
            5,
            "Transfer",
            TransferRequest {
                from: "alice".into(),
                to: "bob".into(),
                amount: 30,
            },
        ),
        req(
            6,
            "Transfer",
            TransferRequest {
                from: "bob".into(),
                to: "alice".into(),
                amount: 1000,
            },
        ),
        req(
            7,
            "Balance",
            BalanceRequest {
                account: "carol".into(),
            },
        ),
        req(
            8,
            "Claim",
            ClaimRequest {
                name: "prize".into(),
                claimant: "bob".into(),
            },
        ),
        req(
            9,
            "Claim",
            ClaimRequest {
                name: "prize".into(),
                claimant: "alice".into(),
            },
        ),
        req(
            10,
            "Balance",
            BalanceRequest {
                account: "bob".into(),
            },
        ),
    ]
}

/// Checks the script's replies: every answer and error is the one the bank promises.
fn check(replies: &[WorkerReply]) {
    assert_eq!(replies.len(), 10);
    let ok = |r: &WorkerReply| {
        assert_eq!(r.code, 0, "{r:?}");
        r.response.clone()
    };
    assert_eq!(BalanceReply::decode(ok(&replies[0])).unwrap().balance, 100);
    assert_eq!(BalanceReply::decode(ok(&replies[1])).unwrap().balance, 5);
    assert_eq!(replies[2].code, Code::AlreadyExists as u32);
    assert_eq!(BalanceReply::decode(ok(&replies[3])).unwrap().balance, 15);
    let moved = TransferReply::decode(ok(&replies[4])).unwrap();
    assert_eq!((moved.from_balance, moved.to_balance), (70, 45));
    assert_eq!(replies[5].code, Code::FailedPrecondition as u32);
    assert_eq!(replies[6].code, Code::NotFound as u32);
    let won = ClaimReply::decode(ok(&replies[7])).unwrap();
    assert_eq!(won.request_id, "08".repeat(16));
    assert_eq!(replies[8].code, Code::AlreadyExists as u32);
    assert!(
        replies[8].message.contains(&"08".repeat(16)),
        "{}",
        replies[8].message
    );
    assert_eq!(BalanceReply::decode(ok(&replies[9])).unwrap().balance, 45);
}

// Proves: recorded request bytes run through the generated BankServer give every answer and
// error the bank promises, and a claim's winner is named by the request id from the Context.
#[tokio::test]
async fn the_bank_runs_recorded_requests_in_process() {
    let mut bank = cairn_bank::Bank::server();
    let mut replies = Vec::new();
    for request in script() {
        replies.push(cairn_exec::call::call(&mut bank, &request).await);
    }
    check(&replies);
}

// Proves: a `cairn-bank worker` process answers the same script over its pipe with exactly the
// replies the in-process server gives (same digests), and exits when its stdin closes.
#[tokio::test]
async fn a_worker_process_answers_like_the_in_process_server() {
    let mut in_process = cairn_bank::Bank::server();
    let mut worker = Worker::spawn(Path::new(env!("CARGO_BIN_EXE_cairn-bank")), &["worker"])
        .expect("start a worker");
    let mut replies = Vec::new();
    for request in script() {
        let reply = worker.call(&request).await.expect("a reply");
        let expected = cairn_exec::call::call(&mut in_process, &request).await;
        assert_eq!(reply.digest(), expected.digest());
        assert_eq!(reply, expected);
        replies.push(reply);
    }
    check(&replies);
    assert!(worker.shut_down().await.unwrap().success());
}

// Proves: the plain generated client (crate bank-client, no Cairn code) talks to
// `cairn-bank serve-direct`: answers and status codes arrive as the bank gives them.
#[tokio::test]
async fn the_plain_client_calls_serve_direct() {
    use bank_client::pb as client_pb;
    use tokio::io::AsyncBufReadExt;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn-bank"))
        .args(["serve-direct", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("a first line");
    let addr = line.strip_prefix("listening ").expect("listening ADDR");
    let mut bank = client_pb::bank_client::BankClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let opened = bank
        .open(client_pb::OpenRequest {
            account: "alice".into(),
            initial: 7,
        })
        .await
        .unwrap();
    assert_eq!(opened.into_inner().balance, 7);
    let missing = bank
        .balance(client_pb::BalanceRequest {
            account: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.kill().await.unwrap();
}

// Proves: requests pipelined to a worker process (the whole script sent before any reply is
// read) are answered one by one in order, exactly as the in-process server answers them.
#[tokio::test]
async fn a_worker_answers_pipelined_requests_in_order() {
    let (mut to_worker, mut from_worker, process) =
        Worker::spawn(Path::new(env!("CARGO_BIN_EXE_cairn-bank")), &["worker"])
            .expect("start a worker")
            .split();
    assert!(process.pid().is_some());
    for request in script() {
        to_worker.send(&request).await.unwrap();
    }
    to_worker.flush().await.unwrap();
    let mut in_process = cairn_bank::Bank::server();
    let mut replies = Vec::new();
    for request in script() {
        let reply = from_worker.next_reply().await.expect("a reply");
        assert_eq!(
            reply,
            cairn_exec::call::call(&mut in_process, &request).await
        );
        replies.push(reply);
    }
    check(&replies);
}

/// The bank's StateDigest request (request id 0xee…).
fn state_digest_request() -> WorkerRequest {
    WorkerRequest {
        request_id: Bytes::from(vec![0xee; 16]),
        method: "/bank.v1.Bank/StateDigest".into(),
        message: Bytes::from(cairn_bank::pb::StateDigestRequest {}.encode_to_vec()),
        seed: 0,
        logical_time_ms: 0,
        ..WorkerRequest::default()
    }
}

fn spawn_worker() -> Worker {
    Worker::spawn(Path::new(env!("CARGO_BIN_EXE_cairn-bank")), &["worker"]).expect("start a worker")
}

// Proves: a `cairn-bank worker`'s snapshot after the script, restored into a fresh worker,
// gives that worker the same state: its StateDigest answer equals the first worker's (and is
// not an empty bank's), and its own snapshot is byte-equal; the fresh worker then answers the
// next request as the first does.
#[tokio::test]
async fn a_snapshot_restored_into_a_fresh_worker_gives_the_same_state() {
    let mut first = spawn_worker();
    for request in script() {
        first.call(&request).await.expect("a reply");
    }
    let snapshot = first
        .snapshot()
        .await
        .expect("the worker answers")
        .expect("the bank has snapshots");
    let digest = first.call(&state_digest_request()).await.unwrap();
    let mut fresh = spawn_worker();
    let empty = fresh.call(&state_digest_request()).await.unwrap();
    assert_ne!(empty, digest, "the script changed the state");
    let mut restored = spawn_worker();
    restored
        .restore(&snapshot)
        .await
        .expect("the worker answers")
        .expect("the snapshot restores");
    assert_eq!(
        restored.call(&state_digest_request()).await.unwrap(),
        digest
    );
    assert_eq!(restored.snapshot().await.unwrap().unwrap(), snapshot);
    let next = WorkerRequest {
        request_id: Bytes::from(vec![0x44; 16]),
        method: "/bank.v1.Bank/Deposit".into(),
        message: Bytes::from(
            DepositRequest {
                account: "alice".into(),
                amount: 1,
            }
            .encode_to_vec(),
        ),
        ..WorkerRequest::default()
    };
    assert_eq!(
        restored.call(&next).await.unwrap(),
        first.call(&next).await.unwrap()
    );
    for w in [first, fresh, restored] {
        assert!(w.shut_down().await.unwrap().success());
    }
}

// Proves: a snapshot request pipelined between calls reflects exactly the calls before it
// (byte-equal to an in-process bank's snapshot after the first half of the script, unlike the
// one after all of it); and a restore of bytes that are not a bank snapshot is refused, not
// taken for an empty bank.
#[tokio::test]
async fn a_pipelined_snapshot_is_the_state_after_the_requests_before_it() {
    use cairn_exec::Snapshot as _;
    let (mut to_worker, mut from_worker, _process) = spawn_worker().split();
    let script = script();
    let (before, after) = script.split_at(5);
    for request in before {
        to_worker.send(request).await.unwrap();
    }
    to_worker.send_snapshot_request().await.unwrap();
    for request in after {
        to_worker.send(request).await.unwrap();
    }
    to_worker.flush().await.unwrap();
    for _ in before {
        from_worker.next_reply().await.unwrap();
    }
    let taken = from_worker.next_snapshot().await.unwrap().unwrap();
    for _ in after {
        from_worker.next_reply().await.unwrap();
    }
    let (mut server, bank) = cairn_bank::Bank::server_with_snapshots();
    for request in before {
        cairn_exec::call::call(&mut server, request).await;
    }
    assert_eq!(taken.as_ref(), bank.snapshot().as_slice());
    for request in after {
        cairn_exec::call::call(&mut server, request).await;
    }
    assert_ne!(taken.as_ref(), bank.snapshot().as_slice());

    let mut worker = spawn_worker();
    let refused = worker
        .restore(&Bytes::from_static(b"not a bank"))
        .await
        .expect("the worker answers");
    match refused {
        Err(cairn_exec::supervisor::Refusal::Failed { code, message }) => {
            assert_eq!(code, Code::InvalidArgument as u32);
            assert!(message.contains("version"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

// Proves: a worker answers a request before it runs the next one, even when requests arrive
// pipelined and the next one never returns: the answer to `Open(alice)` reaches the replica
// while `Open(spin-forever)` spins (a held-back answer once made the replica time the wrong
// request out, and quarantine an ordinary call).
#[tokio::test]
async fn an_answer_is_not_held_back_by_a_handler_that_runs_long() {
    let open = |i: u8, account: &str| WorkerRequest {
        request_id: Bytes::from(vec![i; 16]),
        method: "/bank.v1.Bank/Open".to_owned(),
        message: Bytes::from(
            OpenRequest {
                account: account.to_owned(),
                initial: 1,
            }
            .encode_to_vec(),
        ),
        ..WorkerRequest::default()
    };
    let worker = Worker::spawn(Path::new(env!("CARGO_BIN_EXE_cairn-bank")), &["worker"])
        .expect("start a worker");
    let (mut input, mut output, mut process) = worker.split();
    input.send(&open(1, "alice")).await.unwrap();
    input
        .send(&open(2, cairn_bank::SPIN_FOREVER))
        .await
        .unwrap();
    input.flush().await.unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(30), output.next_reply())
        .await
        .expect("the first answer arrives while the second request spins")
        .unwrap();
    assert_eq!(reply.code, 0, "{reply:?}");
    process.kill().await.unwrap();
}
