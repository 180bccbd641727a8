//! Writer identity against real processes (issue 8, items 10, 4 and the marks part of 1): a
//! record is "already stored" only when the stored record is the same one and durable on every
//! replica; impossible or refused requests change nothing; resumed writers store each record
//! once and fence their older incarnations; fences succeed whatever the number of writers.
//!
//! The misuse cases speak raw gRPC (cairn-proto's generated clients), as a client written from
//! the protos alone would.

use std::time::Duration;

use bytes::Bytes;
use cairn_proto::v1::chunkserver_client::ChunkserverClient;
use cairn_proto::v1::master_client::MasterClient;
use cairn_proto::v1::{self as pb, AppendStatus};
use cairn_record::{RecordId, encode_record};
use cairn_tests::{Cluster, ClusterOpts, LogOpts, Role, WriterId};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn frames(writer: u64, first: u64, payloads: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let id = RecordId {
            writer: cairn_record::WriterId(writer),
            sequence: first + i as u64,
        };
        encode_record(&mut out, id, p, 1 << 20).expect("a small record");
    }
    Bytes::from(out)
}

/// The log's open chunk and a client of its primary.
async fn open(
    master: &str,
    log: &str,
) -> (
    pb::ChunkLocation,
    ChunkserverClient<tonic::transport::Channel>,
) {
    let mut m = MasterClient::connect(format!("http://{master}"))
        .await
        .expect("connect to the master");
    let loc = m
        .open_chunk(pb::OpenChunkRequest {
            path: log.to_owned(),
        })
        .await
        .expect("the open chunk")
        .into_inner();
    let cs = ChunkserverClient::connect(format!("http://{}", loc.primary))
        .await
        .expect("connect to the primary");
    (loc, cs)
}

fn append_req(
    loc: &pb::ChunkLocation,
    frames: Bytes,
    acked_through: u64,
    writer_epoch: u64,
) -> pb::AppendRequest {
    pb::AppendRequest {
        handle: loc.handle,
        version: loc.version,
        frames,
        acked_through,
        writer_epoch,
    }
}

/// Payloads of `writer`'s records in a replay, in log order.
fn payloads_of(replay: &cairn_tests::Replay, writer: u64) -> Vec<Vec<u8>> {
    let id = WriterId(format!("{writer:016x}"));
    replay
        .records()
        .filter(|r| r.writer == id)
        .map(|r| r.payload.clone())
        .collect()
}

/// Proves (item 10, reproduced): a second appender using the first one's writer id, and a
/// resend of a stored sequence with another payload, are refused with ALREADY_EXISTS naming the
/// writer and sequence (before: OK with the first record's offset, the payload dropped); the
/// same record resent gets its offset back, stored once.
///
/// How: raw `Append`s to the open chunk's primary, then `cairn replay --keep-duplicates`.
#[test]
fn a_different_record_under_a_stored_sequence_is_refused() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/identity/conflict";
    cluster.create_log(log, LogOpts::chunk_bytes(1 << 20));
    let writer = 0x5eed_0001;
    runtime().block_on(async {
        let (loc, mut cs) = open(&cluster.master_addr(), log).await;
        let first = cs
            .append(append_req(&loc, frames(writer, 1, &[b"first"]), 0, 0))
            .await
            .expect("the first record is stored")
            .into_inner();
        assert_eq!(first.offsets, vec![32]);
        for payload in [&b"second appender"[..], b"changed resend"] {
            let e = cs
                .append(append_req(&loc, frames(writer, 1, &[payload]), 0, 0))
                .await
                .expect_err("a different record under a stored sequence is refused");
            assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
            assert!(
                e.message().contains(&format!("{writer:016x}"))
                    && e.message().contains("sequence 1"),
                "the refusal names writer and sequence: {}",
                e.message()
            );
        }
        let same = cs
            .append(append_req(&loc, frames(writer, 1, &[b"first"]), 0, 0))
            .await
            .expect("the same record is already stored")
            .into_inner();
        assert_eq!(same.offsets, vec![32]);
    });
    let replay = cluster.replay(log, true, Duration::from_secs(60));
    assert_eq!(payloads_of(&replay, writer), vec![b"first".to_vec()]);
}

/// Proves (item 10, reproduced): an `acked_through` at or above the batch's first sequence is
/// refused with INVALID_ARGUMENT (before: the record was answered "already stored", offset 0,
/// and never stored); and a first batch refused OUT_OF_ORDER registers nothing (before: it set
/// the writer's mark from its `acked_through`, so the writer's real first records were then
/// answered "already stored" at offset 0 and dropped).
///
/// How: raw `Append`s; every record answered with an offset must come back from replay.
#[test]
fn impossible_acked_through_and_refused_batches_change_nothing() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/identity/acked";
    cluster.create_log(log, LogOpts::chunk_bytes(1 << 20));
    let (liar, early) = (0x5eed_0002, 0x5eed_0003);
    runtime().block_on(async {
        let (loc, mut cs) = open(&cluster.master_addr(), log).await;
        let e = cs
            .append(append_req(&loc, frames(liar, 1, &[b"l1"]), 5, 0))
            .await
            .expect_err("acked_through 5 for a batch starting at 1 is impossible");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        let ok = cs
            .append(append_req(&loc, frames(liar, 1, &[b"l1"]), 0, 0))
            .await
            .expect("then stored")
            .into_inner();
        assert_ne!(ok.offsets, vec![0]);

        let ooo = cs
            .append(append_req(&loc, frames(early, 5, &[b"e5"]), 3, 0))
            .await
            .expect("an answer")
            .into_inner();
        assert_eq!(ooo.status, AppendStatus::OutOfOrder as i32);
        assert_eq!(ooo.expected_sequence, 4);
        let e1 = cs
            .append(append_req(&loc, frames(early, 1, &[b"e1"]), 0, 0))
            .await
            .expect("stored")
            .into_inner();
        assert_eq!(e1.status, AppendStatus::Ok as i32);
        assert!(
            e1.offsets[0] >= 32,
            "stored at a real offset: {:?}",
            e1.offsets
        );
    });
    let replay = cluster.replay(log, true, Duration::from_secs(60));
    assert_eq!(payloads_of(&replay, liar), vec![b"l1".to_vec()]);
    assert_eq!(payloads_of(&replay, early), vec![b"e1".to_vec()]);
}

/// Proves (item 10, the feature): a restarted process resuming its writer id re-sends the same
/// (writer, sequence) records and each is stored once, across chunk rolls; an older
/// incarnation still running is fenced as soon as a newer one resumed: its next append fails
/// with `WriterFenced`.
///
/// How: incarnation 1 is an in-process `resume_appender` that appends 120 records of 1 KiB
/// into 16 KiB chunks (several rolls); incarnation 2 resumes (in-process) and appends nothing:
/// 1's next append must fail. Incarnation 3 is `cairn append --writer W --first-sequence 1` fed
/// those 120 lines and 60 more; then 2's append must fail. Replay with duplicates kept must
/// hold the 180 records once each, in order.
#[test]
fn a_resumed_writer_stores_each_record_once_and_fences_the_old_incarnation() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/identity/resume";
    cluster.create_log(log, LogOpts::chunk_bytes(16 << 10));
    let writer: u64 = 0x5eed_0004;
    let lines: Vec<Vec<u8>> = (1..=180)
        .map(|i| {
            let mut l = format!("record {i:04} ").into_bytes();
            l.resize(1024, b'a' + (i % 26) as u8);
            l
        })
        .collect();
    let rt = runtime();
    let client = rt
        .block_on(cairn_client::Client::connect(&cluster.master_addr()))
        .expect("connect");
    let old = rt
        .block_on(client.resume_appender(log, cairn_record::WriterId(writer), 1))
        .expect("incarnation 1");
    rt.block_on(async {
        let acks: Vec<_> = lines[..120]
            .iter()
            .map(|l| old.append(Bytes::from(l.clone())))
            .collect();
        for a in acks {
            a.await.expect("incarnation 1 appends");
        }
    });
    // Incarnation 2 resumes: incarnation 1 is fenced at once, before 2 appends anything.
    let mid = rt
        .block_on(client.resume_appender(log, cairn_record::WriterId(writer), 1))
        .expect("incarnation 2");
    match rt.block_on(old.append(Bytes::from_static(b"late"))) {
        Err(cairn_client::Error::WriterFenced { message }) => {
            assert!(message.contains("epoch"), "{message}");
        }
        other => panic!("incarnation 1 must be fenced at once, got {other:?}"),
    }
    // Incarnation 3 (the CLI) re-sends everything and more; 2 is fenced after it.
    let out = cluster
        .cairn(&[
            "append",
            log,
            "--json",
            "--writer",
            &format!("{writer:016x}"),
            "--first-sequence",
            "1",
        ])
        .stdin(cairn_tests::contract::join_lines(&lines))
        .timeout(Duration::from_secs(120))
        .run_ok();
    // Re-sent records stored in an earlier chunk (below the mark carried to the next one) are
    // "already stored, not compared": the primary no longer has their bytes to compare.
    let acks = cairn_tests::contract::parse_acks(&out);
    assert_eq!(acks.len(), 180);
    let unverified: Vec<u64> = acks
        .iter()
        .filter(|a| a.unverified)
        .map(|a| a.sequence)
        .collect();
    // (Which of the re-sent ones depends on how the pipelined batches meet the chunk's roll:
    // a resend reaching a chunk whose carried mark is past it cannot be compared.)
    assert!(
        !unverified.is_empty() && unverified.iter().all(|&s| s <= 120),
        "only re-sent records are unverified: {unverified:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too long ago to be compared"),
        "the CLI says so"
    );
    match rt.block_on(mid.append(Bytes::from_static(b"late too"))) {
        Err(cairn_client::Error::WriterFenced { .. }) => {}
        other => panic!("incarnation 2 must be fenced, got {other:?}"),
    }
    let replay = cluster.replay(log, true, Duration::from_secs(60));
    assert_eq!(payloads_of(&replay, writer), lines);
    assert!(
        cluster.stat(log).chunks.len() >= 5,
        "the records span several chunks"
    );
}

/// Proves (item 10, the rest): a resent (writer, sequence) older than the primary remembers
/// (past the writer's last 4,096 records in the chunk) is never answered "the same record":
/// the raw answer is a duplicate at offset 0 listed in `unverified`, whatever its payload, and
/// nothing is stored; the client library fails that one record with `UnverifiedDuplicate` and
/// its appender goes on; a resent record the primary still remembers is compared (a different
/// payload is refused with ALREADY_EXISTS).
///
/// How: raw `Append`s store 4,200 records of writer W in one 1 MiB chunk; W's sequence 1 is
/// re-sent with another payload, raw and through `resume_appender(W, 1)`; then the appender
/// goes on with 4,201. Replay (duplicates kept) must hold W's original 4,200 and the new one.
#[test]
fn a_resend_older_than_the_primary_remembers_is_answered_unverified() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/identity/unverified";
    cluster.create_log(log, LogOpts::chunk_bytes(1 << 20));
    let writer: u64 = 0x5eed_0007;
    let n: u64 = 4200;
    let payload = |s: u64| format!("w{s:05}").into_bytes();
    runtime().block_on(async {
        let (loc, mut cs) = open(&cluster.master_addr(), log).await;
        let mut acked = 0;
        while acked < n {
            let batch: Vec<Vec<u8>> = (acked + 1..=(acked + 600).min(n)).map(payload).collect();
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let r = cs
                .append(append_req(&loc, frames(writer, acked + 1, &refs), acked, 0))
                .await
                .expect("stored")
                .into_inner();
            assert_eq!(r.status, AppendStatus::Ok as i32);
            assert!(r.unverified.is_empty() && r.offsets.iter().all(|&o| o >= 32));
            acked += batch.len() as u64;
        }
        for resend in [&b"another payload"[..], &payload(1)] {
            let r = cs
                .append(append_req(&loc, frames(writer, 1, &[resend]), 0, 0))
                .await
                .expect("answered")
                .into_inner();
            assert_eq!(r.status, AppendStatus::Ok as i32);
            assert_eq!((r.offsets, r.unverified), (vec![0], vec![0]));
        }
        // The last records are still remembered: compared by CRC.
        let e = cs
            .append(append_req(&loc, frames(writer, n, &[b"changed"]), n - 1, 0))
            .await
            .expect_err("a remembered sequence with another payload is refused");
        assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
        let same = cs
            .append(append_req(
                &loc,
                frames(writer, n, &[&payload(n)]),
                n - 1,
                0,
            ))
            .await
            .expect("the same record")
            .into_inner();
        assert!(same.unverified.is_empty() && same.offsets[0] > 32);
    });
    let rt = runtime();
    let client = rt
        .block_on(cairn_client::Client::connect(&cluster.master_addr()))
        .expect("connect");
    let resumed = rt
        .block_on(client.resume_appender(log, cairn_record::WriterId(writer), 1))
        .expect("resume the writer");
    match rt.block_on(resumed.append(Bytes::from_static(b"another payload"))) {
        Err(cairn_client::Error::UnverifiedDuplicate {
            writer: w,
            sequence: 1,
        }) if w == cairn_record::WriterId(writer) => {}
        other => panic!("expected UnverifiedDuplicate for sequence 1, got {other:?}"),
    }
    // Sequences 2..=n are skipped by a resumed appender only if it says so: resume from n + 1.
    let next = rt
        .block_on(client.resume_appender(log, cairn_record::WriterId(writer), n + 1))
        .expect("resume after the stored records");
    let ack = rt
        .block_on(next.append(Bytes::from(payload(n + 1))))
        .expect("a new record is stored");
    assert_eq!(ack.id.sequence, n + 1);
    assert!(ack.offset.is_some());
    let replay = cluster.replay(log, true, Duration::from_secs(60));
    let expected: Vec<Vec<u8>> = (1..=n + 1).map(payload).collect();
    assert_eq!(payloads_of(&replay, writer), expected);
}

/// Proves (item 1, the marks part, reproduced): records written on the primary alone (both
/// secondaries paused) are never answered "already stored" in the next chunk: the seal carries
/// marks computed over the commit offset, which every replica holds, so the resent x1, x2 are
/// stored again in the next chunk and acknowledged there with a place (before: acknowledged
/// with chunk/offset null while on one disk).
///
/// How: 5 chunkservers, an in-process appender; a1..a3 acknowledged; SIGSTOP both secondaries
/// of the open chunk; append x1, x2 (the forwards hang, the client seals, the fences to the
/// paused secondaries time out). Their acks must name chunk 1 and an offset.
#[test]
fn records_on_one_replica_are_stored_again_after_a_seal() {
    let _serial = cairn_tests::serial();
    let mut opts = ClusterOpts::fast_failure_detection();
    opts.master_args
        .extend(["--rpc-timeout-ms", "1500"].map(String::from));
    opts.chunkserver_args
        .extend(["--rpc-timeout-ms", "1500"].map(String::from));
    let mut cluster = Cluster::start(5, opts);
    let log = "/identity/one-disk";
    cluster.create_log(log, LogOpts::chunk_bytes(1 << 20));
    let rt = runtime();
    let client = rt
        .block_on(cairn_client::Client::connect(&cluster.master_addr()))
        .expect("connect");
    let appender = rt.block_on(client.appender(log)).expect("an appender");
    rt.block_on(async {
        for a in ["a1", "a2", "a3"] {
            appender
                .append(Bytes::from_static(a.as_bytes()))
                .await
                .expect("acknowledged");
        }
    });
    let stat = cluster.stat(log);
    let open = stat.chunks.last().expect("an open chunk");
    let primary = open.primary.clone().expect("the open chunk's primary");
    let secondaries: Vec<usize> = open
        .replicas
        .iter()
        .filter(|a| **a != primary)
        .map(|a| cluster.chunkserver_index(a))
        .collect();
    assert_eq!(secondaries.len(), 2, "{open:?}");
    for &i in &secondaries {
        cluster.pause(Role::Chunkserver(i));
    }
    let acks = rt.block_on(async {
        let x1 = appender.append(Bytes::from_static(b"x1"));
        let x2 = appender.append(Bytes::from_static(b"x2"));
        (x1.await, x2.await)
    });
    for &i in &secondaries {
        cluster.resume(Role::Chunkserver(i));
    }
    for ack in [acks.0, acks.1] {
        let ack = ack.expect("x1, x2 acknowledged in the next chunk");
        assert!(
            ack.chunk.is_some_and(|c| c >= 1) && ack.offset.is_some(),
            "acknowledged where it is stored, not 'already stored' from one disk: {ack:?}"
        );
    }
}

/// Proves (item 4, against real processes): a chunk with many distinct writers (one record
/// each, one writer per request) seals, and the marks carried to the next chunk are those of
/// the most recently active writers: the last writer (the highest id) resending its record to
/// the next chunk is answered "already stored" (offset 0, nothing written), while the first
/// writer (the lowest id, the least recent) is stored again. Before: the cap kept the lowest
/// writer ids.
///
/// How: `WRITERS` raw appends of empty records from 64 concurrent tasks into a 64 MiB chunk,
/// then `SealChunk`, then raw appends to the next chunk. The unit test in
/// chunkserver/src/marks.rs covers 2,000,000 writers in one chunk.
#[test]
fn a_chunk_with_many_writers_seals_and_keeps_the_most_recent_marks() {
    const WRITERS: u64 = 200_000;
    const TASKS: u64 = 64;
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/identity/many";
    cluster.create_log(log, LogOpts::chunk_bytes(64 << 20));
    let master = cluster.master_addr();
    let started = std::time::Instant::now();
    runtime().block_on(async {
        let (loc, cs) = open(&master, log).await;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let (loc, mut cs) = (loc.clone(), cs.clone());
            tasks.push(tokio::spawn(async move {
                let mut w = 1 + t;
                while w < WRITERS {
                    let r = cs
                        .append(append_req(&loc, frames(w, 1, &[b""]), 0, 0))
                        .await
                        .expect("stored")
                        .into_inner();
                    assert_eq!(r.status, AppendStatus::Ok as i32);
                    w += TASKS;
                }
            }));
        }
        for t in tasks {
            t.await.expect("an append task");
        }
        // The last and highest writer, after all the others; twice, so that the second
        // forward tells the secondaries a commit offset past its first record (each replica's
        // marks cover the commit offset it knows).
        let mut cs = cs;
        cs.append(append_req(&loc, frames(u64::MAX - 1, 1, &[b"last"]), 0, 0))
            .await
            .expect("stored");
        cs.append(append_req(
            &loc,
            frames(u64::MAX - 1, 2, &[b"last 2"]),
            1,
            0,
        ))
        .await
        .expect("stored");
        eprintln!(
            "many writers: {WRITERS} writers appended in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let sealing = std::time::Instant::now();
        let mut m = MasterClient::connect(format!("http://{master}"))
            .await
            .expect("connect to the master");
        let next = m
            .seal_chunk(pb::SealChunkRequest {
                path: log.to_owned(),
                handle: loc.handle,
                version: loc.version,
                reason: pb::SealReason::ChunkFull as i32,
                detail: "test".into(),
            })
            .await
            .expect("the chunk seals")
            .into_inner();
        eprintln!(
            "many writers: sealed in {:.2} s",
            sealing.elapsed().as_secs_f64()
        );
        assert_ne!(next.handle, loc.handle);
        let mut ncs = ChunkserverClient::connect(format!("http://{}", next.primary))
            .await
            .expect("connect to the next primary");
        let recent = ncs
            .append(append_req(&next, frames(u64::MAX - 1, 1, &[b"last"]), 0, 0))
            .await
            .expect("an answer")
            .into_inner();
        assert_eq!(
            recent.offsets,
            vec![0],
            "the most recent writer's mark was carried"
        );
        let oldest = ncs
            .append(append_req(&next, frames(1, 1, &[b""]), 0, 0))
            .await
            .expect("an answer")
            .into_inner();
        assert_ne!(
            oldest.offsets,
            vec![0],
            "the least recent writer's mark was dropped"
        );
    });
}
