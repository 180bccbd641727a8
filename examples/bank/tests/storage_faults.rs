//! Storage faults beneath the execution layer, on real processes: a Cairn cluster of separate
//! `cairn master` and `cairn chunkserver` processes (so one chunkserver can be killed, damaged
//! or wiped), three `cairn-bank replica` processes, a `cairn-bank front-door`, and callers
//! using the plain generated client.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bank_client::pb::bank_client::BankClient;
use bank_client::pb::{StateDigestReply, StateDigestRequest};
use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions};
use cairn_exec::records::{ExecRecord, Kind, hex};
use cairn_exec::service_logs::ServiceLogs;
use cairn_tests::cluster::Role;
use cairn_tests::damage::flip_byte;
use cairn_tests::{Cluster, ClusterOpts};
use common::processes::{Process, connect, front_door, replica};
use common::workload::Callers;
use common::{BANK, Got, got_of, inputs, request_id, sequential};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

const CALLERS: u64 = 4;

/// Runs a blocking cluster operation from the test's runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The chunkserver each output log is placed on, by replica index (`cairn ls --json`).
fn placements(cluster: &Cluster) -> Vec<String> {
    let ls = cluster
        .cairn(&["ls", "/exec/bank/outputs/", "--json"])
        .run_ok();
    let logs: Vec<serde_json::Value> = ls
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (0..3)
        .map(|i| {
            let path = format!("/exec/bank/outputs/{i}");
            let log = logs
                .iter()
                .find(|l| l["path"] == path.as_str())
                .unwrap_or_else(|| panic!("{path} in {logs:?}"));
            log["place_on"].as_str().expect("placed").to_owned()
        })
        .collect()
}

/// Replica `index`'s outputs by request id (the newest of each) and how many byte ranges of its
/// output log a replay skipped.
async fn outputs_past_damage(client: &Client, index: u32) -> (HashMap<Bytes, Vec<u8>>, u64) {
    let path = format!("/exec/bank/outputs/{index}");
    let mut replay = client
        .replay(&path, ReplayOptions::default())
        .await
        .expect("replay an output log");
    let (mut outputs, mut skipped) = (HashMap::new(), 0);
    while let Some(event) = replay.next().await {
        match event.unwrap_or_else(|e| panic!("replay {path}: {e:#}")) {
            ReplayEvent::Record { payload, .. } => {
                if let Some(Kind::Output(o)) = ExecRecord::from_payload(&payload) {
                    outputs.insert(o.request_id, o.response.to_vec());
                }
            }
            ReplayEvent::Skipped { .. } => skipped += 1,
            other => panic!("replay {path}: an event this test does not know: {other:?}"),
        }
    }
    (outputs, skipped)
}

/// The state digest asked through the front door, and each replica's answer to that request
/// once all three have one (at most 120 s).
async fn digest_of_each_replica(
    client: &Client,
    channel: &Channel,
) -> (Bytes, StateDigestReply, Vec<StateDigestReply>) {
    let reply = BankClient::new(channel.clone())
        .state_digest(StateDigestRequest {})
        .await
        .expect("the state digest");
    let id = request_id(reply.metadata());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut answers = Vec::new();
        for i in 0..3 {
            let (outputs, _) = outputs_past_damage(client, i).await;
            if let Some(bytes) = outputs.get(&id) {
                answers.push(StateDigestReply::decode(bytes.as_slice()).expect("a digest"));
            }
        }
        if answers.len() == 3 {
            return (id, reply.into_inner(), answers);
        }
        assert!(
            Instant::now() < deadline,
            "only {} replicas answered the state digest",
            answers.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The data file of the first chunk of `path` on chunkserver `i`, and that chunk's length.
fn first_chunk_file(cluster: &Cluster, path: &str, i: usize) -> (PathBuf, u64) {
    let stat = cluster.stat(path);
    let chunk = stat
        .chunks
        .first()
        .unwrap_or_else(|| panic!("{path} has a chunk"));
    let file = cluster
        .data_dir(Role::Chunkserver(i))
        .join("chunks")
        .join(format!("{}.chunk", chunk.handle));
    (file, chunk.length)
}

// Proves: storage faults beneath the business replicas change no reply and leave the replicas
// equal. Under a mixed load from 4 plain callers: (1) the chunkserver that is primary of the
// input log's open chunk is SIGKILLed, and restarted 3 s later; (2) a byte of replica R's
// output log (replication 1, on the chunkserver beside R) is flipped and R's process
// restarted: it starts past the damage (a replay of its log skips a range); (3) that
// chunkserver is SIGKILLed, its data directory wiped and it is restarted while R runs: R finds
// its output log lost and makes it again; (4) the same while R is down: R finds it as it
// starts. Then: every definite reply (OK or a service error) equals what a sequential execution
// of the input log gives, call by call; the three replicas' state digests are equal and equal
// the sequential one; every replica's output log (R's rebuilt one too) has an output for
// every input. Prints how many calls ended indeterminate (DEADLINE_EXCEEDED or UNAVAILABLE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_faults_beneath_the_replicas_change_no_reply() {
    let mut cluster = blocking(|| Cluster::start(3, ClusterOpts::fast_failure_detection()));
    let master = cluster.master_addr();
    blocking(|| {
        cluster
            .cairn(&["exec", "create", "bank"])
            .timeout(Duration::from_secs(30))
            .run_ok()
    });
    let placed = blocking(|| placements(&cluster));
    let client = Client::connect(&master).await.unwrap();
    let mut replicas: Vec<Process> = (0..3).map(|i| replica(&master, i, &[])).collect();
    let (door, addr) = front_door(BANK, &master, "127.0.0.1:0");
    let channel = connect(&addr).await;
    let callers = Callers::start(&channel, CALLERS, 0x3000);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // (1) The input log's primary.
    let inputs_stat = blocking(|| cluster.stat("/exec/bank/inputs"));
    let open = inputs_stat.chunks.last().expect("an input chunk");
    let primary = open
        .primary
        .clone()
        .expect("the open input chunk has a primary");
    let p = cluster.chunkserver_index(&primary);
    println!(
        "(1) SIGKILL chunkserver {p} ({primary}), primary of input chunk {}",
        open.index
    );
    blocking(|| cluster.kill_chunkserver(p));
    tokio::time::sleep(Duration::from_secs(3)).await;
    blocking(|| cluster.restart_chunkserver(p));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // (2) A byte of replica R's output log, on the chunkserver beside it.
    const R: u32 = 2;
    let beside = cluster.chunkserver_index(&placed[R as usize]);
    let (file, length) = blocking(|| first_chunk_file(&cluster, "/exec/bank/outputs/2", beside));
    let at = length / 2;
    println!(
        "(2) flip a byte at {at} of {} (replica {R}'s output log, {length} bytes)",
        file.display()
    );
    flip_byte(&file, at);
    replicas[R as usize].kill();
    replicas[R as usize] = replica(&master, R, &[]);
    replicas[R as usize].wait_line(&["state rebuilt"]);
    let (_, skipped) = outputs_past_damage(&client, R).await;
    println!(
        "    replica {R} restarted past it; a replay of its output log skips {skipped} range(s)"
    );
    assert!(skipped >= 1, "the flipped byte is not seen");

    // (3) That chunkserver wiped, replica R running: R finds its output log lost and makes it
    // again.
    println!("(3) SIGKILL chunkserver {beside}, wipe its data directory, restart it");
    let wipe = |cluster: &mut Cluster| {
        blocking(|| {
            cluster.kill_chunkserver(beside);
            std::fs::remove_dir_all(cluster.data_dir(Role::Chunkserver(beside))).expect("wipe");
            cluster.restart_chunkserver(beside);
        })
    };
    wipe(&mut cluster);
    let line = replicas[R as usize].wait_line(&["rebuilding the output log"]);
    println!(
        "    replica {R}: {}",
        &line[line.find("rebuilding").unwrap()..]
    );
    replicas[R as usize].wait_line(&["state rebuilt"]);

    // (4) Wiped again while replica R is down: R finds it lost as it starts. First the
    // chunkserver is SIGKILLed and restarted, so that R's appends fail and its open chunk is
    // sealed with records on it: a replay of the log then fails at that chunk once it is gone.
    let path = format!("/exec/bank/outputs/{R}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while outputs_past_damage(&client, R).await.0.len() < 100 {
        assert!(
            Instant::now() < deadline,
            "replica {R} rebuilt no output log"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    blocking(|| {
        cluster.kill_chunkserver(beside);
        std::thread::sleep(Duration::from_millis(1500));
        cluster.restart_chunkserver(beside);
    });
    let sealed = cairn_tests::wait_until(
        "a sealed chunk in replica R's output log",
        Duration::from_secs(60),
        || {
            let stat = blocking(|| cluster.stat(&path));
            let sealed = stat.sealed().iter().filter(|c| c.length > 4096).count();
            (sealed > 0 && stat.chunks.last().is_some_and(|c| !c.is_sealed())).then_some(sealed)
        },
    );
    let outputs = outputs_past_damage(&client, R).await.0.len();
    println!(
        "(4) replica {R}'s output log: {outputs} outputs, {sealed} sealed chunk(s); replica {R} \
         stopped, chunkserver {beside} wiped again, replica {R} started"
    );
    replicas[R as usize].kill();
    wipe(&mut cluster);
    replicas[R as usize] = replica(&master, R, &[]);
    let line = replicas[R as usize].wait_line(&["rebuilding the output log"]);
    println!(
        "    replica {R}: {}",
        &line[line.find("rebuilding").unwrap()..]
    );
    replicas[R as usize].wait_line(&["state rebuilt"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls: Vec<(Bytes, Got)> = callers.stop().await.into_iter().flatten().collect();
    let log = inputs(&client).await;
    let expected = sequential(&log).await;
    let (mut matched, mut indeterminate) = (0, 0);
    for (id, outcome) in &calls {
        if let Err((code, _)) = outcome
            && [Code::DeadlineExceeded as u32, Code::Unavailable as u32].contains(code)
        {
            indeterminate += 1;
            continue;
        }
        let reply = expected
            .get(id)
            .unwrap_or_else(|| panic!("request {} answered but not in the input log", hex(id)));
        let want = got_of(reply);
        assert_eq!(outcome, &want, "request {}", hex(id));
        matched += 1;
    }
    println!(
        "{} calls: {matched} equal the sequential execution, {indeterminate} indeterminate",
        calls.len()
    );
    assert!(matched > 0);

    let (digest_id, voted, each) = digest_of_each_replica(&client, &channel).await;
    let expected = sequential(&inputs(&client).await).await;
    let sequential_digest =
        StateDigestReply::decode(expected[&digest_id].response.clone()).unwrap();
    assert_eq!(voted, sequential_digest, "the voted digest");
    for (i, d) in each.iter().enumerate() {
        assert_eq!(d, &voted, "replica {i}'s state");
    }
    println!("replica states equal: {}", hex(&voted.digest));
    let log = inputs(&client).await;
    for i in 0..3 {
        let (outputs, skipped) = outputs_past_damage(&client, i).await;
        let missing = log
            .iter()
            .filter(|input| !outputs.contains_key(&input.request_id))
            .count();
        println!(
            "replica {i}'s output log: outputs for {} inputs, {missing} missing, {skipped} ranges skipped",
            log.len() - missing
        );
        assert_eq!(missing, 0, "replica {i} has an output for every input");
    }
    let s = cairn_exec::status::status(&client, &ServiceLogs::new("bank").unwrap())
        .await
        .unwrap();
    println!("status: {s:?}");
    drop(door);
}
