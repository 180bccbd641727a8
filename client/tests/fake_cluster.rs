//! The client against an in-process fake of the master and one chunkserver that follows the
//! append protocol of ARCHITECTURE.md (sequence checks, duplicates, CHUNK_FULL with padding,
//! seals that inherit writer marks) and injects faults: acknowledgements lost after the bytes
//! were stored, and requests delayed so they overtake each other. The real multi-process
//! tests live in the `tests` crate; these prove the client's side of the protocol alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, Error, LogOptions, ReplayEvent, ReplayOptions, TailFrom};
use cairn_proto::net::memory::MemoryNet;
use cairn_proto::v1::{self, chunkserver_server, master_server};
use cairn_record::{ScanItem, Scanner, WriterId, encode_padding};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Chunk {
    handle: u64,
    version: u64,
    bytes: Vec<u8>,
    capacity: u64,
    sealed: bool,
    full: bool,
    broken: bool,
    marks: HashMap<WriterId, u64>,
}

#[derive(Default)]
struct Log {
    chunk_bytes: u64,
    chunks: Vec<u64>,
}

#[derive(Default)]
struct State {
    addr: String,
    logs: HashMap<String, Log>,
    chunks: HashMap<u64, Chunk>,
    next_handle: u64,
    appends: u64,
    /// Every n-th append stores its records, then answers UNAVAILABLE and breaks the chunk.
    lose_ack_every: u64,
    /// Whether a new chunk inherits the sealed chunk's writer marks.
    inherit_marks: bool,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<State>>);

impl State {
    fn open_chunk(&mut self, path: &str) -> Result<v1::ChunkLocation, Status> {
        let log = self
            .logs
            .get(path)
            .ok_or_else(|| Status::not_found("no log"))?;
        let last = log.chunks.last().map(|h| &self.chunks[h]);
        let (handle, marks) = match last {
            Some(c) if !c.sealed => (c.handle, None),
            Some(c) => (0, Some(c.marks.clone())),
            None => (0, Some(HashMap::new())),
        };
        let handle = if let Some(marks) = marks {
            self.next_handle += 1;
            let h = self.next_handle;
            let capacity = log.chunk_bytes;
            self.chunks.insert(
                h,
                Chunk {
                    handle: h,
                    version: 1,
                    bytes: vec![0; 32],
                    capacity,
                    marks: if self.inherit_marks {
                        marks
                    } else {
                        HashMap::new()
                    },
                    ..Chunk::default()
                },
            );
            self.logs.get_mut(path).unwrap().chunks.push(h);
            h
        } else {
            handle
        };
        let log = &self.logs[path];
        let c = &self.chunks[&handle];
        Ok(v1::ChunkLocation {
            path: path.into(),
            index: log.chunks.len() as u32 - 1,
            handle,
            version: c.version,
            primary: self.addr.clone(),
            secondaries: vec![],
            chunk_bytes: log.chunk_bytes,
        })
    }
}

#[tonic::async_trait]
impl master_server::Master for Fake {
    async fn create_log(
        &self,
        r: Request<v1::CreateLogRequest>,
    ) -> Result<Response<v1::LogInfo>, Status> {
        let r = r.into_inner();
        let mut s = self.0.lock().unwrap();
        if s.logs.contains_key(&r.path) {
            return Err(Status::already_exists("exists"));
        }
        s.logs.insert(
            r.path.clone(),
            Log {
                chunk_bytes: r.chunk_bytes,
                chunks: vec![],
            },
        );
        Ok(Response::new(v1::LogInfo {
            path: r.path,
            replication: 1,
            chunk_bytes: r.chunk_bytes,
            ..Default::default()
        }))
    }
    async fn delete_log(
        &self,
        _: Request<v1::DeleteLogRequest>,
    ) -> Result<Response<v1::DeleteLogResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_logs(
        &self,
        _: Request<v1::ListLogsRequest>,
    ) -> Result<Response<v1::ListLogsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn stat_log(
        &self,
        r: Request<v1::StatLogRequest>,
    ) -> Result<Response<v1::LogInfo>, Status> {
        let path = r.into_inner().path;
        let s = self.0.lock().unwrap();
        let log = s
            .logs
            .get(&path)
            .ok_or_else(|| Status::not_found("no log"))?;
        let chunks = log
            .chunks
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let c = &s.chunks[h];
                v1::ChunkInfo {
                    index: i as u32,
                    handle: *h,
                    state: if c.sealed {
                        v1::ChunkState::Sealed
                    } else {
                        v1::ChunkState::Open
                    } as i32,
                    length: c.bytes.len() as u64,
                    version: c.version,
                    replicas: vec![s.addr.clone()],
                    primary: if c.sealed {
                        String::new()
                    } else {
                        s.addr.clone()
                    },
                    lost_end: 0,
                }
            })
            .collect::<Vec<_>>();
        Ok(Response::new(v1::LogInfo {
            path,
            replication: 1,
            chunk_bytes: log.chunk_bytes,
            chunk_count: chunks.len() as u32,
            chunks,
            ..Default::default()
        }))
    }
    async fn open_chunk(
        &self,
        r: Request<v1::OpenChunkRequest>,
    ) -> Result<Response<v1::ChunkLocation>, Status> {
        let path = r.into_inner().path;
        Ok(Response::new(self.0.lock().unwrap().open_chunk(&path)?))
    }
    async fn seal_chunk(
        &self,
        r: Request<v1::SealChunkRequest>,
    ) -> Result<Response<v1::ChunkLocation>, Status> {
        let r = r.into_inner();
        let mut s = self.0.lock().unwrap();
        if let Some(c) = s.chunks.get_mut(&r.handle)
            && !c.sealed
            && c.version == r.version
        {
            c.sealed = true;
            c.version += 1;
        }
        Ok(Response::new(s.open_chunk(&r.path)?))
    }
    async fn register_chunkserver(
        &self,
        _: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn heartbeat(
        &self,
        _: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_chunkservers(
        &self,
        _: Request<v1::ListChunkserversRequest>,
    ) -> Result<Response<v1::ListChunkserversResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn cluster_status(
        &self,
        _: Request<v1::ClusterStatusRequest>,
    ) -> Result<Response<v1::ClusterStatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_replicas(
        &self,
        _: Request<v1::ListReplicasRequest>,
    ) -> Result<Response<v1::ListReplicasResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn report_corrupt(
        &self,
        _: Request<v1::ReportCorruptRequest>,
    ) -> Result<Response<v1::ReportCorruptResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn resume_writer(
        &self,
        _: Request<v1::ResumeWriterRequest>,
    ) -> Result<Response<v1::ResumeWriterResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl chunkserver_server::Chunkserver for Fake {
    async fn create_replica(
        &self,
        _: Request<v1::CreateReplicaRequest>,
    ) -> Result<Response<v1::CreateReplicaResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn append(
        &self,
        r: Request<v1::AppendRequest>,
    ) -> Result<Response<v1::AppendResponse>, Status> {
        // Let requests overtake each other now and then.
        if rand::random::<u8>().is_multiple_of(8) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let r = r.into_inner();
        let mut s = self.0.lock().unwrap();
        s.appends += 1;
        let lose_ack = s.lose_ack_every > 0 && s.appends.is_multiple_of(s.lose_ack_every);
        let c = s
            .chunks
            .get_mut(&r.handle)
            .ok_or_else(|| Status::not_found("no chunk"))?;
        if c.version != r.version {
            return Err(Status::failed_precondition("stale version"));
        }
        if c.sealed {
            return Err(Status::failed_precondition("chunk sealed"));
        }
        if c.broken {
            return Err(Status::unavailable("chunk broken"));
        }
        let full = |offsets, unverified| v1::AppendResponse {
            status: v1::AppendStatus::ChunkFull as i32,
            offsets,
            unverified,
            ..Default::default()
        };
        if c.full {
            return Ok(Response::new(full(vec![], vec![])));
        }
        let mut records = Vec::new();
        for item in Scanner::new(&r.frames, 0) {
            match item {
                ScanItem::Record {
                    offset,
                    id,
                    payload,
                } => records.push((id, offset as usize, payload.len())),
                _ => return Err(Status::invalid_argument("not data frames")),
            }
        }
        let writer = records[0].0.writer;
        let mark = *c.marks.get(&writer).unwrap_or(&r.acked_through);
        let mut offsets = Vec::new();
        // The fake keeps no CRCs: every duplicate is answered as not compared.
        let mut unverified = Vec::new();
        let mut stored_any = false;
        for (i, (id, at, len)) in records.iter().enumerate() {
            assert_eq!(id.writer, writer);
            let mark = *c.marks.get(&writer).unwrap_or(&mark);
            if id.sequence <= mark {
                unverified.push(i as u32);
                offsets.push(0);
                continue;
            }
            if id.sequence > mark + 1 {
                if stored_any || i > 0 {
                    return Err(Status::invalid_argument("gap inside a batch"));
                }
                return Ok(Response::new(v1::AppendResponse {
                    status: v1::AppendStatus::OutOfOrder as i32,
                    expected_sequence: mark + 1,
                    ..Default::default()
                }));
            }
            let frame_len = cairn_record::encoded_len(*len);
            if c.bytes.len() + frame_len > c.capacity as usize {
                let pad = c.capacity as usize - c.bytes.len();
                if pad > 0 {
                    encode_padding(&mut c.bytes, pad).unwrap();
                }
                c.full = true;
                return Ok(Response::new(full(offsets, unverified)));
            }
            offsets.push(c.bytes.len() as u64);
            c.bytes.extend_from_slice(&r.frames[*at..*at + frame_len]);
            c.marks.insert(writer, id.sequence);
            stored_any = true;
        }
        if lose_ack {
            c.broken = true;
            return Err(Status::unavailable("injected: ack lost"));
        }
        Ok(Response::new(v1::AppendResponse {
            status: v1::AppendStatus::Ok as i32,
            offsets,
            unverified,
            commit_offset: c.bytes.len() as u64,
            expected_sequence: 0,
        }))
    }
    async fn forward(
        &self,
        _: Request<v1::ForwardRequest>,
    ) -> Result<Response<v1::ForwardResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn read(
        &self,
        r: Request<v1::ReadRequest>,
    ) -> Result<Response<v1::ReadResponse>, Status> {
        let r = r.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(r.wait_ms as u64);
        loop {
            {
                let s = self.0.lock().unwrap();
                let c = s
                    .chunks
                    .get(&r.handle)
                    .ok_or_else(|| Status::not_found("no chunk"))?;
                let end = c.bytes.len() as u64;
                if r.offset < end || c.sealed || tokio::time::Instant::now() >= deadline {
                    let to = (r.offset + r.max_bytes as u64).min(end).max(r.offset);
                    return Ok(Response::new(v1::ReadResponse {
                        offset: r.offset,
                        data: Bytes::copy_from_slice(&c.bytes[r.offset as usize..to as usize]),
                        readable_end: end,
                        sealed: c.sealed,
                        version: c.version,
                        // The fake's one chunkserver is every open chunk's primary.
                        primary: !c.sealed,
                    }));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    async fn fence(
        &self,
        _: Request<v1::FenceRequest>,
    ) -> Result<Response<v1::FenceResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn seal(
        &self,
        _: Request<v1::SealRequest>,
    ) -> Result<Response<v1::SealResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_replica(
        &self,
        _: Request<v1::DeleteReplicaRequest>,
    ) -> Result<Response<v1::DeleteReplicaResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn replicate(
        &self,
        _: Request<v1::ReplicateRequest>,
    ) -> Result<Response<v1::ReplicateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn checksum(
        &self,
        _: Request<v1::ChecksumRequest>,
    ) -> Result<Response<v1::ChecksumResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// The fake's gRPC server, both roles on one endpoint.
fn fake_server(fake: Fake) -> tonic::transport::server::Router {
    cairn_proto::net::server()
        .add_service(
            master_server::MasterServer::new(fake.clone())
                .max_decoding_message_size(cairn_proto::GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            chunkserver_server::ChunkserverServer::new(fake)
                .max_decoding_message_size(cairn_proto::GRPC_MESSAGE_BYTES_MAX),
        )
}

/// Starts the fake on an in-memory network under the name `addr`.
fn start_in_memory(addr: &str) -> (MemoryNet, Arc<Mutex<State>>) {
    let state = Arc::new(Mutex::new(State {
        addr: addr.to_owned(),
        lose_ack_every: 5,
        inherit_marks: true,
        ..State::default()
    }));
    let net = MemoryNet::new();
    let incoming = net.listen(addr).incoming();
    tokio::spawn(fake_server(Fake(state.clone())).serve_with_incoming(incoming));
    (net, state)
}

// Proves (the transport seam): a client built with `Client::with_connector` makes every channel
// (to the master and to the chunkserver) through that connector: over an in-memory network with
// no socket at all, appends with lost acknowledgements, seals and rolls, then a replay, all
// work, and the only addresses dialed are the ones the connector was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_runs_entirely_over_its_connector() {
    let (net, state) = start_in_memory("fake.cairn:7000");
    let client = Client::with_connector("fake.cairn:7000", Arc::new(net.clone()))
        .await
        .unwrap();
    let options = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(4096);
    client.create_log("m", options).await.unwrap();
    let expected = append_all(&client, "m", 2, 100).await;
    check_replay(&client, "m", &expected).await;
    assert!(state.lock().unwrap().appends > 20);
    let dialed = net.dialed();
    assert!(!dialed.is_empty());
    assert!(dialed.iter().all(|a| a == "fake.cairn:7000"), "{dialed:?}");
}

/// Starts the fake on a loopback port; returns its address and state.
async fn start(lose_ack_every: u64, inherit_marks: bool) -> (String, Arc<Mutex<State>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(State {
        addr: addr.clone(),
        lose_ack_every,
        inherit_marks,
        ..State::default()
    }));
    tokio::spawn(fake_server(Fake(state.clone())).serve_with_incoming(
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
    ));
    (addr, state)
}

fn payload(writer: usize, i: usize) -> Bytes {
    let len = 1 + (i * 37 + writer * 11) % 900;
    let mut p = format!("w{writer}-r{i}-").into_bytes();
    p.resize(len.max(p.len()), b'a' + (i % 26) as u8);
    Bytes::from(p)
}

/// Appends `n` records from each of `writers` appenders, all in flight at once; returns each
/// appender's writer id and its acknowledged payloads in sequence order.
async fn append_all(
    client: &Client,
    log: &str,
    writers: usize,
    n: usize,
) -> Vec<(WriterId, Vec<Bytes>)> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = client.clone();
        let log = log.to_owned();
        tasks.push(tokio::spawn(async move {
            let appender = client.appender(&log).await.unwrap();
            let futures: Vec<_> = (0..n).map(|i| appender.append(payload(w, i))).collect();
            for (i, f) in futures.into_iter().enumerate() {
                let ack = f.await.unwrap();
                assert_eq!(ack.id.sequence, i as u64 + 1);
                assert_eq!(ack.chunk.is_some(), ack.offset.is_some());
            }
            let writer = appender.writer_id();
            appender.close().await.unwrap();
            (writer, (0..n).map(|i| payload(w, i)).collect::<Vec<_>>())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Replays `log` and checks every acknowledged record is there exactly once, in per-writer
/// order, byte-exact. Returns the replay's stats.
async fn check_replay(
    client: &Client,
    log: &str,
    expected: &[(WriterId, Vec<Bytes>)],
) -> cairn_client::ReplayStats {
    let mut replay = client.replay(log, ReplayOptions::default()).await.unwrap();
    let mut got: HashMap<WriterId, Vec<(u64, Bytes)>> = HashMap::new();
    while let Some(e) = replay.next().await {
        match e.unwrap() {
            ReplayEvent::Record { id, payload, .. } => got
                .entry(id.writer)
                .or_default()
                .push((id.sequence, payload)),
            ReplayEvent::Skipped { .. } => panic!("nothing is corrupt here"),
            other => panic!("an event this test does not know: {other:?}"),
        }
    }
    for (writer, payloads) in expected {
        let records = &got[writer];
        assert_eq!(records.len(), payloads.len(), "writer {writer:x}");
        for (i, (seq, p)) in records.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(p, &payloads[i]);
        }
    }
    replay.stats()
}

// Proves: with 4 KiB chunks (many rolls and paddings), requests overtaking each other
// (OUT_OF_ORDER) and every 7th acknowledgement lost after the bytes were stored (seal and
// resend, answered "already stored" thanks to inherited marks), every record of 3 concurrent
// appenders is acknowledged and replays exactly once, in order, byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_rolls_reordering_and_lost_acks() {
    let (addr, state) = start(7, true).await;
    let client = Client::connect(&addr).await.unwrap();
    let options = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(4096);
    client.create_log("l", options).await.unwrap();
    let expected = append_all(&client, "l", 3, 400).await;
    let stats = check_replay(&client, "l", &expected).await;
    assert!(stats.padding_bytes > 0);
    let stat = client.stat_log("l").await.unwrap();
    assert!(stat.chunks.len() > 50, "{} chunks", stat.chunks.len());
    let appends = state.lock().unwrap().appends;
    eprintln!("{} appends, {} chunks", appends, stat.chunks.len());
    assert!(appends > 100);
}

// Proves: when a new chunk does not know a writer's marks, a resent batch is stored twice,
// and replay drops the copies (and keeps them with keep_duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_drops_resent_copies() {
    let (addr, _state) = start(5, false).await;
    let client = Client::connect(&addr).await.unwrap();
    let options = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(64 << 10);
    client.create_log("d", options).await.unwrap();
    let expected = append_all(&client, "d", 2, 300).await;
    let stats = check_replay(&client, "d", &expected).await;
    assert!(stats.duplicates_dropped > 0, "{stats:?}");
    let mut all = client
        .replay("d", ReplayOptions::default().with_keep_duplicates(true))
        .await
        .unwrap();
    while all.next().await.is_some() {}
    assert_eq!(
        all.stats().records,
        stats.records + stats.duplicates_dropped
    );
}

// Proves: a tail started on an empty log sees records appended afterwards, across rolls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_new_records_across_rolls() {
    let (addr, _state) = start(0, true).await;
    let client = Client::connect(&addr).await.unwrap();
    let options = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(4096);
    client.create_log("t", options).await.unwrap();
    let mut tail = client
        .tail("t", TailFrom::Start, ReplayOptions::default())
        .await
        .unwrap();
    let writer = {
        let client = client.clone();
        tokio::spawn(async move { append_all(&client, "t", 1, 200).await })
    };
    let mut seen = Vec::new();
    while seen.len() < 200 {
        let e = tokio::time::timeout(Duration::from_secs(20), tail.next())
            .await
            .expect("tail keeps up")
            .unwrap()
            .unwrap();
        if let ReplayEvent::Record { id, chunk, .. } = e {
            seen.push((id.sequence, chunk));
        }
    }
    writer.await.unwrap();
    assert!(seen.iter().map(|s| s.0).eq(1..=200));
    assert!(seen.last().unwrap().1 > 5, "crossed rolls");
}

// Proves: the clear errors: unknown log, record over the limit (naming it), master
// unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors() {
    let (addr, _state) = start(0, true).await;
    let client = Client::connect(&addr).await.unwrap();
    assert!(matches!(
        client.appender("missing").await,
        Err(Error::LogNotFound { .. })
    ));
    assert!(matches!(
        client.replay("missing", ReplayOptions::default()).await,
        Err(Error::LogNotFound { .. })
    ));
    let options = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(4096);
    client.create_log("e", options.clone()).await.unwrap();
    assert!(matches!(
        client.create_log("e", options).await,
        Err(Error::LogExists { .. })
    ));
    let appender = client.appender("e").await.unwrap();
    let err = appender
        .append(Bytes::from(vec![0; 1025]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::RecordTooLarge {
            len: 1025,
            max: 1024
        }
    ));
    assert!(err.to_string().contains("1024"), "{err}");
    assert!(appender.append(Bytes::from(vec![0; 1024])).await.is_ok());
    appender.close().await.unwrap();
    let dead = Client::connect("127.0.0.1:1").await.unwrap_err();
    assert!(matches!(dead, Error::MasterUnreachable { .. }), "{dead}");
    let all_dead = Client::connect("127.0.0.1:1,127.0.0.1:2")
        .await
        .unwrap_err();
    let message = all_dead.to_string();
    assert!(
        message.contains("127.0.0.1:1") && message.contains("127.0.0.1:2"),
        "{message}"
    );
    // A list of masters: the first that answers serves the client.
    let listed = Client::connect(&format!("127.0.0.1:1, {addr}"))
        .await
        .unwrap();
    let appender = listed.appender("e").await.unwrap();
    assert!(
        appender
            .append(Bytes::from_static(b"via the list"))
            .await
            .is_ok()
    );
    appender.close().await.unwrap();
    assert!(matches!(
        Client::connect("127.0.0.1:1,,x:2").await,
        Err(Error::InvalidArgument { .. })
    ));
}

// Proves: `append_all` queues its records at once: they go out in one Append RPC, in order,
// each acknowledged under the next sequence; a payload over the limit among them fails alone
// and takes no sequence; the log replays them exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_all_sends_its_records_in_one_batch() {
    let (addr, state) = start(0, true).await;
    let client = Client::connect(&addr).await.unwrap();
    let options = LogOptions::default()
        .with_replication(1)
        .with_chunk_bytes(1 << 20);
    client.create_log("g", options).await.unwrap();
    let appender = client.appender("g").await.unwrap();
    let too_large = Bytes::from(vec![0; appender.payload_bytes_max() + 1]);
    let mut payloads: Vec<Bytes> = (0..50).map(|i| payload(0, i)).collect();
    payloads.insert(20, too_large);
    let acks = appender.append_all(payloads);
    assert_eq!(acks.len(), 51);
    let mut sequences = Vec::new();
    for (i, ack) in acks.into_iter().enumerate() {
        match ack.await {
            Ok(ack) => sequences.push(ack.id.sequence),
            Err(e) => {
                assert_eq!(i, 20, "only the payload over the limit fails");
                assert!(matches!(e, Error::RecordTooLarge { .. }), "{e}");
            }
        }
    }
    assert!(sequences.iter().copied().eq(1..=50), "{sequences:?}");
    assert_eq!(
        state.lock().unwrap().appends,
        1,
        "one Append RPC for the group"
    );
    let writer = appender.writer_id();
    appender.close().await.unwrap();
    let expected = vec![(writer, (0..50).map(|i| payload(0, i)).collect::<Vec<_>>())];
    check_replay(&client, "g", &expected).await;
}
