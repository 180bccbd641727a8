//! Shared by the multi-process tests: a `cairn-bank local` process (master, 3 chunkservers,
//! 3 replicas with their worker processes, a front door) on loopback ports in a temporary
//! directory, stopped by PID when dropped; and the sequential execution of a service's input
//! log.

#![allow(dead_code)]

pub(crate) mod processes;
pub(crate) mod workload;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions};
use cairn_exec::records::{ExecRecord, Input, Kind, Output, WorkerReply};

/// The `cairn-bank` binary under test.
pub(crate) const BANK: &str = env!("CARGO_BIN_EXE_cairn-bank");

/// A running `cairn-bank local`.
pub(crate) struct LocalBank {
    child: Child,
    /// The master's address.
    pub(crate) master: String,
    /// The front door's address.
    pub(crate) front_door: String,
    /// Where every role's metrics are served (`--http`), if asked for.
    pub(crate) http: Option<String>,
    _dir: tempfile::TempDir,
}

static NEXT_BASE: AtomicU16 = AtomicU16::new(0);

impl LocalBank {
    /// Starts one on free-looking ports (another base is tried if a port is taken) and waits
    /// for its `front door ADDR` line.
    pub(crate) fn start() -> LocalBank {
        LocalBank::start_with_env(&[])
    }

    /// [`LocalBank::start`] with these environment variables set for the process.
    pub(crate) fn start_with_env(env: &[(&str, &str)]) -> LocalBank {
        LocalBank::start_with(env, &[])
    }

    /// [`LocalBank::start`] serving every role's metrics (`--http`) on the port after its
    /// front door's block ([`LocalBank::http`]).
    pub(crate) fn start_with_http() -> LocalBank {
        LocalBank::start_inner(&[], &[], true)
    }

    /// [`LocalBank::start`] with these environment variables and extra `local` arguments.
    pub(crate) fn start_with(env: &[(&str, &str)], args: &[&str]) -> LocalBank {
        LocalBank::start_inner(env, args, false)
    }

    fn start_inner(env: &[(&str, &str)], args: &[&str], http: bool) -> LocalBank {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for _ in 0..8 {
            let slot = NEXT_BASE.fetch_add(1, Ordering::Relaxed);
            let base = 20_000 + (std::process::id() as u16 % 200) * 100 + (slot % 50) * 16;
            let data = dir.path().join(format!("data{slot}"));
            // The block is base..base+16: the master, 3 chunkservers, the front door at +10.
            let http = http.then(|| format!("127.0.0.1:{}", base + 15));
            let http_args = match &http {
                Some(addr) => vec!["--http", addr.as_str()],
                None => Vec::new(),
            };
            let mut child = Command::new(BANK)
                .args(["local", "--data"])
                .arg(&data)
                .args(["--port", &base.to_string()])
                .args(&http_args)
                .args(args)
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start cairn-bank local");
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let front_door = line
                        .strip_prefix("front door ")
                        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
                        .to_owned();
                    return LocalBank {
                        child,
                        master: format!("127.0.0.1:{base}"),
                        front_door,
                        http,
                        _dir: dir,
                    };
                }
                Err(_) => {
                    // Most likely a port was taken: try the next base.
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("cairn-bank local never served");
    }

    /// The plain client's endpoint.
    /// A connected channel to its front door.
    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.url())
            .expect("a URL")
            .connect()
            .await
            .expect("connect to the front door")
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.front_door)
    }
}

/// `GET /metrics` on `addr`: the body.
pub(crate) fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to --http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The value of series `series` (name and labels exactly as written) in a scrape, 0 if absent.
pub(crate) fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

impl Drop for LocalBank {
    fn drop(&mut self) {
        // SIGINT: a clean stop of every role and worker; then make sure.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every execution-layer record of `path`, in log order.
pub(crate) async fn records(client: &Client, path: &str) -> Vec<Kind> {
    let mut replay = client
        .replay(path, ReplayOptions::default())
        .await
        .expect("replay");
    let mut out = Vec::new();
    while let Some(event) = replay.next().await {
        match event.expect("a replay event") {
            ReplayEvent::Record { payload, .. } => {
                out.push(ExecRecord::from_payload(&payload).expect("an execution-layer record"))
            }
            ReplayEvent::Skipped { .. } => panic!("nothing was damaged"),
            other => panic!("a replay event this test does not know: {other:?}"),
        }
    }
    out
}

/// The service's inputs in log order, each request once.
pub(crate) async fn inputs(client: &Client) -> Vec<Input> {
    let mut seen = std::collections::HashSet::new();
    records(client, "/exec/bank/inputs")
        .await
        .into_iter()
        .filter_map(|k| match k {
            Kind::Input(i) => Some(i),
            _ => None,
        })
        .filter(|i| seen.insert(i.request_id.clone()))
        .collect()
}

/// Replica `index`'s outputs by request id.
pub(crate) async fn outputs(client: &Client, index: u32) -> HashMap<Bytes, Output> {
    records(client, &format!("/exec/bank/outputs/{index}"))
        .await
        .into_iter()
        .filter_map(|k| match k {
            Kind::Output(o) => Some((o.request_id.clone(), o)),
            _ => None,
        })
        .collect()
}

/// Waits until every replica has an output for each of `ids` (at most 120 s); returns each
/// replica's outputs.
pub(crate) async fn outputs_of_all(client: &Client, ids: &[Bytes]) -> Vec<HashMap<Bytes, Output>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut all = Vec::new();
        for i in 0..3 {
            all.push(outputs(client, i).await);
        }
        if all.iter().all(|o| ids.iter().all(|id| o.contains_key(id))) {
            return all;
        }
        assert!(Instant::now() < deadline, "replicas never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the input log in order on one fresh in-process bank: each request's reply.
pub(crate) async fn sequential(inputs: &[Input]) -> HashMap<Bytes, WorkerReply> {
    let mut bank = cairn_bank::Bank::server();
    let mut replies = HashMap::new();
    for input in inputs {
        let reply =
            cairn_exec::call::call(&mut bank, &cairn_exec::replica::worker_request(input)).await;
        replies.insert(input.request_id.clone(), reply);
    }
    replies
}

/// The request id a front door put in a reply's or a status's metadata.
pub(crate) fn request_id(metadata: &tonic::metadata::MetadataMap) -> Bytes {
    let text = metadata
        .get("cairn-request-id")
        .expect("a cairn-request-id")
        .to_str()
        .expect("ascii");
    Bytes::from(cairn_exec::records::from_hex(text).expect("hex"))
}

/// What a caller got: the response message's bytes, or the status's code and message.
pub(crate) type Got = Result<Bytes, (u32, String)>;

/// What a caller gets for `reply`: its response bytes, or its status code and message.
pub(crate) fn got_of(reply: &WorkerReply) -> Got {
    if reply.code == 0 {
        Ok(reply.response.clone())
    } else {
        Err((reply.code, reply.message.clone()))
    }
}

/// A call's request id (from its metadata) and what it got.
pub(crate) fn got<M: prost::Message>(r: Result<tonic::Response<M>, tonic::Status>) -> (Bytes, Got) {
    match r {
        Ok(response) => (
            request_id(response.metadata()),
            Ok(Bytes::from(response.into_inner().encode_to_vec())),
        ),
        Err(status) => (
            request_id(status.metadata()),
            Err((status.code() as u32, status.message().to_owned())),
        ),
    }
}

/// Asks the state digest through the front door on `channel` and waits until every replica has
/// answered it: their answers must be equal. Returns the agreed reply.
pub(crate) async fn digests_agree(
    client: &Client,
    channel: &tonic::transport::Channel,
) -> bank_client::pb::StateDigestReply {
    let reply = bank_client::pb::bank_client::BankClient::new(channel.clone())
        .state_digest(bank_client::pb::StateDigestRequest {})
        .await
        .expect("the state digest");
    let id = request_id(reply.metadata());
    let all = outputs_of_all(client, std::slice::from_ref(&id)).await;
    let answers: Vec<&Bytes> = all.iter().map(|o| &o[&id].response).collect();
    assert!(all.iter().all(|o| o[&id].code == 0));
    assert_eq!(answers[0], answers[1], "replicas 0 and 1");
    assert_eq!(answers[0], answers[2], "replicas 0 and 2");
    reply.into_inner()
}
