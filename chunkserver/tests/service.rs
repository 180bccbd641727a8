//! The chunkserver's RPC service end to end: three real chunkservers (`serve`) on
//! `127.0.0.1:0` with temporary directories, a tiny fake master that records registrations and
//! heartbeats, and the generated gRPC client driving CreateReplica / Append / Read / Fence /
//! Seal / Delete the way the master and the client library will.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_chunkserver::{Config, serve};
use cairn_proto::GRPC_MESSAGE_BYTES_MAX;
use cairn_proto::v1::chunkserver_client::ChunkserverClient;
use cairn_proto::v1::master_server::{Master, MasterServer};
use cairn_proto::v1::*;
use cairn_record::{RecordId, ScanItem, Scanner, WriterId, encode_record};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

type Client = ChunkserverClient<Channel>;

/// A master that records what chunkservers tell it and hands out queued delete instructions.
#[derive(Default)]
struct FakeMaster {
    registrations: Mutex<Vec<RegisterRequest>>,
    heartbeats: Mutex<Vec<HeartbeatRequest>>,
    /// Delete instructions for the next heartbeat, by chunkserver address.
    deletes: Mutex<HashMap<String, Vec<u64>>>,
}

/// The gRPC face of a shared [`FakeMaster`].
struct FakeMasterService(Arc<FakeMaster>);

impl std::ops::Deref for FakeMasterService {
    type Target = FakeMaster;
    fn deref(&self) -> &FakeMaster {
        &self.0
    }
}

#[tonic::async_trait]
impl Master for FakeMasterService {
    async fn create_log(&self, _: Request<CreateLogRequest>) -> Result<Response<LogInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_log(
        &self,
        _: Request<DeleteLogRequest>,
    ) -> Result<Response<DeleteLogResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_logs(
        &self,
        _: Request<ListLogsRequest>,
    ) -> Result<Response<ListLogsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn stat_log(&self, _: Request<StatLogRequest>) -> Result<Response<LogInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn open_chunk(
        &self,
        _: Request<OpenChunkRequest>,
    ) -> Result<Response<ChunkLocation>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn seal_chunk(
        &self,
        _: Request<SealChunkRequest>,
    ) -> Result<Response<ChunkLocation>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn register_chunkserver(
        &self,
        r: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.registrations.lock().unwrap().push(r.into_inner());
        Ok(Response::new(RegisterResponse {
            delete: Vec::new(),
            heartbeat_ms: 50,
            cluster_id: 0x5eed,
        }))
    }
    async fn heartbeat(
        &self,
        r: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = r.into_inner();
        let delete = self
            .deletes
            .lock()
            .unwrap()
            .remove(&r.address)
            .unwrap_or_default();
        self.heartbeats.lock().unwrap().push(r);
        Ok(Response::new(HeartbeatResponse {
            delete,
            reregister: false,
        }))
    }
    async fn list_chunkservers(
        &self,
        _: Request<cairn_proto::v1::ListChunkserversRequest>,
    ) -> Result<Response<cairn_proto::v1::ListChunkserversResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn cluster_status(
        &self,
        _: Request<cairn_proto::v1::ClusterStatusRequest>,
    ) -> Result<Response<cairn_proto::v1::ClusterStatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_replicas(
        &self,
        _: Request<cairn_proto::v1::ListReplicasRequest>,
    ) -> Result<Response<cairn_proto::v1::ListReplicasResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn report_corrupt(
        &self,
        _: Request<cairn_proto::v1::ReportCorruptRequest>,
    ) -> Result<Response<cairn_proto::v1::ReportCorruptResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn resume_writer(
        &self,
        _: Request<cairn_proto::v1::ResumeWriterRequest>,
    ) -> Result<Response<cairn_proto::v1::ResumeWriterResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

async fn start_master() -> (Arc<FakeMaster>, String) {
    let master = Arc::new(FakeMaster::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let svc = MasterServer::new(FakeMasterService(master.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (master, addr)
}

/// One running chunkserver.
struct Cs {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<cairn_chunkserver::Result<()>>,
}

impl Cs {
    async fn start(dir: &Path, master: &str, addr: &str) -> Cs {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = Config {
            listen: addr.clone(),
            advertise: addr.clone(),
            master: master.to_owned(),
            data_dir: dir.to_owned(),
            heartbeat_ms: 50,
            rpc_timeout_ms: 2000,
            ..Config::new(dir)
        };
        let (tx, rx) = oneshot::channel::<()>();
        let seams = cairn_chunkserver::Seams::production(&config);
        let task = tokio::spawn(serve(config, listener, seams, async move {
            let _ = rx.await;
        }));
        Cs {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    async fn client(&self) -> Client {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy();
        ChunkserverClient::new(ch)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    }
}

/// Three chunkservers and a fake master.
struct Cluster {
    master: Arc<FakeMaster>,
    master_addr: String,
    dirs: Vec<tempfile::TempDir>,
    servers: Vec<Option<Cs>>,
}

impl Cluster {
    async fn start() -> Cluster {
        let (master, master_addr) = start_master().await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut servers = Vec::new();
        for d in &dirs {
            servers.push(Some(Cs::start(d.path(), &master_addr, "127.0.0.1:0").await));
        }
        // Each chunkserver records the cluster id (DATA/cluster-id) after its first
        // registration. A chunkserver restarted with replicas but without one refuses to join
        // (it would adopt any master), so the tests that restart one need it written first.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dirs.iter().all(|d| d.path().join("cluster-id").exists()) {
            assert!(Instant::now() < deadline, "chunkservers did not register");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Cluster {
            master,
            master_addr,
            dirs,
            servers,
        }
    }

    fn addr(&self, i: usize) -> String {
        self.servers[i].as_ref().unwrap().addr.clone()
    }

    async fn client(&self, i: usize) -> Client {
        self.servers[i].as_ref().unwrap().client().await
    }

    /// Creates `handle` with server 0 as primary and 1, 2 as secondaries.
    async fn create(&self, handle: u64, capacity: u64, marks: Vec<WriterMark>) {
        for i in [1, 2, 0] {
            let req = CreateReplicaRequest {
                handle,
                version: 1,
                capacity,
                primary: i == 0,
                secondaries: if i == 0 {
                    vec![self.addr(1), self.addr(2)]
                } else {
                    Vec::new()
                },
                writer_marks: if i == 0 { marks.clone() } else { Vec::new() },
            };
            self.client(i).await.create_replica(req).await.unwrap();
        }
    }

    async fn stop_server(&mut self, i: usize) {
        self.servers[i].take().unwrap().stop().await;
    }

    async fn restart_server(&mut self, i: usize) {
        let addr = self.servers[i].take().map(|s| {
            let a = s.addr.clone();
            (s, a)
        });
        let (s, addr) = addr.unwrap();
        s.stop().await;
        self.servers[i] = Some(Cs::start(self.dirs[i].path(), &self.master_addr, &addr).await);
    }
}

fn payload(writer: u64, sequence: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ writer ^ sequence) as u8)
        .collect()
}

/// Encoded frames of `writer`'s records `sequences`, each `len` payload bytes.
fn frames(writer: u64, sequences: std::ops::RangeInclusive<u64>, len: usize) -> Bytes {
    let mut out = Vec::new();
    for sequence in sequences {
        let id = RecordId {
            writer: WriterId(writer),
            sequence,
        };
        encode_record(&mut out, id, &payload(writer, sequence, len), 1 << 24).unwrap();
    }
    Bytes::from(out)
}

fn append_req(handle: u64, version: u64, frames: Bytes, acked_through: u64) -> AppendRequest {
    AppendRequest {
        handle,
        version,
        frames,
        acked_through,
        writer_epoch: 0,
    }
}

async fn append(
    c: &mut Client,
    handle: u64,
    frames: Bytes,
    acked_through: u64,
) -> Result<AppendResponse, Status> {
    c.append(append_req(handle, 1, frames, acked_through))
        .await
        .map(Response::into_inner)
}

async fn read(c: &mut Client, handle: u64, offset: u64, wait_ms: u32) -> ReadResponse {
    c.read(ReadRequest {
        handle,
        offset,
        max_bytes: 0,
        wait_ms,
    })
    .await
    .unwrap()
    .into_inner()
}

/// Every byte of a sealed or committed replica from `offset` 0, over as many reads as it takes.
async fn read_all(c: &mut Client, handle: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let r = read(c, handle, out.len() as u64, 0).await;
        if r.data.is_empty() {
            return out;
        }
        out.extend_from_slice(&r.data);
    }
}

async fn fence(c: &mut Client, handle: u64, new_version: u64) -> FenceResponse {
    c.fence(FenceRequest {
        handle,
        new_version,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn seal(c: &mut Client, handle: u64, version: u64, length: u64) -> u64 {
    c.seal(SealRequest {
        handle,
        version,
        length,
    })
    .await
    .unwrap()
    .into_inner()
    .length
}

fn status(r: &AppendResponse) -> AppendStatus {
    AppendStatus::try_from(r.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_replicated_byte_for_byte() {
    // Four writers append 25 batches of 4 records each, all at once, through the primary. Each
    // acknowledged record must sit at its offset on all three replicas (checked by scanning the
    // sealed bytes of every replica), the replicas must be identical, the commit offset must
    // reach the end, and the fence must report each writer's last sequence.
    let c = Cluster::start().await;
    let h = 0x11;
    c.create(h, 1 << 20, Vec::new()).await;
    let mut tasks = Vec::new();
    for writer in 1..=4u64 {
        let mut client = c.client(0).await;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in 0..25u64 {
                let seqs = b * 4 + 1..=b * 4 + 4;
                let r = append(
                    &mut client,
                    h,
                    frames(writer, seqs.clone(), 100 + writer as usize),
                    b * 4,
                )
                .await
                .unwrap();
                assert_eq!(status(&r), AppendStatus::Ok);
                assert_eq!(r.offsets.len(), 4);
                for (s, o) in seqs.zip(r.offsets) {
                    acked.push((
                        RecordId {
                            writer: WriterId(writer),
                            sequence: s,
                        },
                        o,
                    ));
                }
            }
            acked
        }));
    }
    let mut acked: HashMap<u64, RecordId> = HashMap::new();
    for t in tasks {
        for (id, offset) in t.await.unwrap() {
            assert!(
                acked.insert(offset, id).is_none(),
                "offset {offset} given twice"
            );
        }
    }
    assert_eq!(acked.len(), 400);
    let mut p = c.client(0).await;
    let end = read(&mut p, h, 32, 0).await.readable_end;
    let expected_end: u64 = 32
        + (1..=4u64)
            .map(|w| 100 * (32 + (100 + w).div_ceil(8) * 8))
            .sum::<u64>();
    assert_eq!(
        end, expected_end,
        "commit offset covers every acknowledged record"
    );
    // Secondaries know a commit offset too (the last one forwarded), never past the end.
    let mut s1 = c.client(1).await;
    assert!(read(&mut s1, h, 32, 0).await.readable_end <= end);

    // The primary's marks cover its commit offset, the end: every writer's last record. A
    // secondary's cover only the commit offset last forwarded to it (every replica holds that
    // prefix), so they may lag, never lead.
    let mut lens = Vec::new();
    for i in 0..3 {
        let f = fence(&mut c.client(i).await, h, 2).await;
        assert_eq!(f.version, 2);
        let mut marks: Vec<(u64, u64)> = f
            .writer_marks
            .iter()
            .map(|m| (m.writer, m.sequence))
            .collect();
        marks.sort_unstable();
        if i == 0 {
            assert_eq!(f.marks_through, end);
            let want: Vec<_> = (1..=4).map(|writer| (writer, 100)).collect();
            assert_eq!(marks, want);
        } else {
            assert!(f.marks_through <= end);
            assert!(marks.iter().all(|&(w, s)| (1..=4).contains(&w) && s <= 100));
        }
        lens.push(f.durable_length);
    }
    assert!(lens.iter().all(|&l| l == end), "{lens:?} vs {end}");
    let mut replicas = Vec::new();
    for i in 0..3 {
        let mut client = c.client(i).await;
        assert_eq!(seal(&mut client, h, 2, end).await, end);
        let bytes = read_all(&mut client, h).await;
        assert_eq!(bytes.len() as u64, end);
        replicas.push(bytes);
    }
    assert!(replicas[1] == replicas[0] && replicas[2] == replicas[0]);
    let mut seen = 0;
    for item in Scanner::new(&replicas[0][32..], 32) {
        match item {
            ScanItem::Record {
                offset,
                id,
                payload: p,
            } => {
                assert_eq!(acked.get(&offset), Some(&id));
                assert_eq!(
                    p,
                    &payload(id.writer.0, id.sequence, 100 + id.writer.0 as usize)[..]
                );
                seen += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_are_out_of_order_and_retries_are_duplicates() {
    // A writer's batch past its next sequence stores nothing and names the expected sequence;
    // a retried batch gets the offsets of its first copy; inherited marks and acked_through
    // make earlier sequences duplicates at offset 0.
    let c = Cluster::start().await;
    let h = 0x12;
    c.create(
        h,
        1 << 20,
        vec![WriterMark {
            writer: 9,
            sequence: 5,
            frame_crc: 0,
            epoch: 0,
        }],
    )
    .await;
    let mut p = c.client(0).await;
    let first = append(&mut p, 7, frames(1, 1..=3, 10), 0).await;
    assert_eq!(first.unwrap_err().code(), Code::NotFound, "unknown handle");
    let a = append(&mut p, h, frames(1, 1..=3, 10), 0).await.unwrap();
    assert_eq!(a.offsets, vec![32, 80, 128]);
    let gap = append(&mut p, h, frames(1, 5..=6, 10), 3).await.unwrap();
    assert_eq!(status(&gap), AppendStatus::OutOfOrder);
    assert_eq!((gap.expected_sequence, gap.offsets.len()), (4, 0));
    let retry = append(&mut p, h, frames(1, 2..=4, 10), 1).await.unwrap();
    assert_eq!(status(&retry), AppendStatus::Ok);
    assert_eq!(retry.offsets, vec![80, 128, 176]);
    assert_eq!(retry.commit_offset, 224);
    // Writer 9 inherited mark 5 from the previous chunk.
    let w9 = append(&mut p, h, frames(9, 5..=6, 10), 0).await.unwrap();
    assert_eq!(w9.offsets, vec![0, 224]);
    // Writer 3, unseen here, says 1..=7 were acknowledged elsewhere.
    let w3 = append(&mut p, h, frames(3, 9..=9, 10), 7).await.unwrap();
    assert_eq!(
        (status(&w3), w3.expected_sequence),
        (AppendStatus::OutOfOrder, 8)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_chunk_is_padded_to_its_capacity() {
    // 4 KiB chunks: appends that no longer fit store the prefix that does, pad to exactly the
    // capacity on every replica and answer CHUNK_FULL; every later append is CHUNK_FULL with no
    // offsets.
    let c = Cluster::start().await;
    let h = 0x13;
    let cap = 4096;
    c.create(h, cap, Vec::new()).await;
    let mut p = c.client(0).await;
    let mut seq = 1;
    let full = loop {
        // 3 records of 200 bytes (232 on disk each).
        let r = append(&mut p, h, frames(5, seq..=seq + 2, 200), seq - 1)
            .await
            .unwrap();
        if status(&r) == AppendStatus::ChunkFull {
            break r;
        }
        assert_eq!(r.offsets.len(), 3);
        seq += 3;
    };
    // 17 records fit in 4064 bytes: after 5 full batches (15), 2 of the next 3 fit.
    assert_eq!(seq, 16);
    assert_eq!(full.offsets.len(), 2);
    assert_eq!(full.commit_offset, cap);
    let again = append(&mut p, h, frames(5, 18..=18, 10), 17).await.unwrap();
    assert_eq!(
        (status(&again), again.offsets.len()),
        (AppendStatus::ChunkFull, 0)
    );
    for i in 0..3 {
        let f = fence(&mut c.client(i).await, h, 2).await;
        assert_eq!(f.durable_length, cap);
        let file = c.dirs[i].path().join(format!("chunks/{h:016x}.chunk"));
        assert_eq!(std::fs::metadata(file).unwrap().len(), cap);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_misdirected_appends_are_refused() {
    // Garbage, two writers in one batch, an oversized record and padding are INVALID_ARGUMENT;
    // a stale version and an append at a secondary are FAILED_PRECONDITION. Nothing is stored.
    let c = Cluster::start().await;
    let h = 0x14;
    c.create(h, 4096, Vec::new()).await;
    let mut p = c.client(0).await;
    let garbage = Bytes::from(vec![0xAB; 96]);
    let mut two = frames(1, 1..=1, 8).to_vec();
    two.extend_from_slice(&frames(2, 2..=2, 8));
    let oversized = frames(1, 1..=1, 1025); // over 4096 / 4
    let mut padding = Vec::new();
    cairn_record::encode_padding(&mut padding, 64).unwrap();
    for bad in [
        garbage,
        Bytes::from(two),
        oversized,
        Bytes::from(padding),
        Bytes::new(),
    ] {
        let e = append(&mut p, h, bad, 0).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    let e = p
        .append(append_req(h, 2, frames(1, 1..=1, 8), 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = append(&mut c.client(1).await, h, frames(1, 1..=1, 8), 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let ok = append(&mut p, h, frames(1, 1..=1, 8), 0).await.unwrap();
    assert_eq!(ok.offsets, vec![32]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_secondary_breaks_the_chunk() {
    // With a secondary down, an append cannot be durable everywhere: UNAVAILABLE, and the chunk
    // stays broken (later appends UNAVAILABLE at once) until it is sealed. The records
    // acknowledged before the failure survive the seal.
    let mut c = Cluster::start().await;
    let h = 0x15;
    c.create(h, 1 << 20, Vec::new()).await;
    let mut p = c.client(0).await;
    let a = append(&mut p, h, frames(1, 1..=2, 50), 0).await.unwrap();
    assert_eq!(a.offsets, vec![32, 120]);
    c.stop_server(2).await;
    let e = append(&mut p, h, frames(1, 3..=3, 50), 2)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let t = Instant::now();
    let e = append(&mut p, h, frames(1, 3..=3, 50), 2)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(t.elapsed() < Duration::from_millis(500), "refused at once");
    let mut lens = Vec::new();
    let mut primary_commits = Vec::new();
    for i in 0..2 {
        let f = fence(&mut c.client(i).await, h, 2).await;
        lens.push(f.durable_length);
        primary_commits.push(f.primary_commit_offset);
    }
    // The primary reports its commit offset, the end of what it acknowledged (the master seals
    // there); the failed write past it was never acknowledged. A secondary reports none.
    assert_eq!(primary_commits, vec![208, 0]);
    let sealed = *lens.iter().min().unwrap();
    assert!(
        sealed >= 208,
        "acknowledged records lie below the sealed length"
    );
    for i in 0..2 {
        let mut client = c.client(i).await;
        seal(&mut client, h, 2, sealed).await;
        let bytes = read_all(&mut client, h).await;
        assert_eq!(bytes.len() as u64, sealed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_refuses_the_old_version_and_returns_marks() {
    // After a fence, appends with the old version (and the new one: the chunk is being sealed)
    // are refused, a forward with the old version is refused by a fenced secondary, and the
    // fence reports the durable length and each writer's highest sequence.
    let c = Cluster::start().await;
    let h = 0x16;
    c.create(h, 1 << 20, Vec::new()).await;
    let mut p = c.client(0).await;
    append(&mut p, h, frames(1, 1..=3, 20), 0).await.unwrap();
    append(&mut p, h, frames(2, 1..=7, 20), 0).await.unwrap();
    let f = fence(&mut p, h, 2).await;
    assert_eq!(f.durable_length, 32 + 10 * 56);
    // Most recently active writer first.
    let marks: Vec<(u64, u64)> = f
        .writer_marks
        .iter()
        .map(|m| (m.writer, m.sequence))
        .collect();
    assert_eq!(marks, vec![(2, 7), (1, 3)]);
    assert_eq!(f.marks_through, f.durable_length);
    // Everything was acknowledged: the primary's commit offset is the whole durable length.
    assert_eq!(f.primary_commit_offset, f.durable_length);
    for version in [1, 2] {
        let e = p
            .append(append_req(h, version, frames(1, 4..=4, 8), 3))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    }
    let mut s = c.client(1).await;
    let fs = fence(&mut s, h, 2).await;
    assert_eq!(
        fs.primary_commit_offset, 0,
        "a secondary reports no commit offset"
    );
    let e = s
        .forward(ForwardRequest {
            handle: h,
            version: 1,
            offset: f.durable_length,
            frames: frames(1, 4..=4, 8),
            commit_offset: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = s
        .fence(FenceRequest {
            handle: h,
            new_version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_reads_wake_on_append_and_seal() {
    // A read at the commit offset with wait_ms waits; an append wakes it with the new bytes.
    // On a secondary, a waiting read is woken by the seal. Without wait_ms a read returns at
    // once with nothing.
    let c = Cluster::start().await;
    let h = 0x17;
    c.create(h, 1 << 20, Vec::new()).await;
    let mut p = c.client(0).await;
    let now = read(&mut p, h, 32, 0).await;
    assert_eq!(
        (now.data.len(), now.readable_end, now.sealed),
        (0, 32, false)
    );
    let mut reader = c.client(0).await;
    let waiting = tokio::spawn(async move {
        let t = Instant::now();
        (read(&mut reader, h, 32, 10_000).await, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = append(&mut p, h, frames(4, 1..=1, 16), 0).await.unwrap();
    let (r, took) = waiting.await.unwrap();
    assert_eq!(r.data, frames(4, 1..=1, 16));
    assert_eq!(r.readable_end, a.commit_offset);
    assert!(took < Duration::from_secs(5), "{took:?}");

    let mut s = c.client(2).await;
    let waiting = tokio::spawn(async move {
        let t = Instant::now();
        (read(&mut s, h, 80, 10_000).await, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s2 = c.client(2).await;
    fence(&mut s2, h, 2).await;
    seal(&mut s2, h, 2, 80).await;
    let (r, took) = waiting.await.unwrap();
    assert!(
        r.sealed && r.data.is_empty() && r.readable_end == 80,
        "{r:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_chunkserver_reports_and_serves_its_replicas() {
    // A chunkserver restarted on the same directory registers again with every replica (sealed
    // and open, with versions and lengths), serves the sealed one, and no longer acts as the
    // open chunk's primary (its role lived in memory). A heartbeat's delete instruction
    // removes a replica.
    let mut c = Cluster::start().await;
    let (sealed, open) = (0x18, 0x19);
    c.create(sealed, 1 << 20, Vec::new()).await;
    c.create(open, 1 << 20, Vec::new()).await;
    let mut p = c.client(0).await;
    append(&mut p, sealed, frames(1, 1..=2, 30), 0)
        .await
        .unwrap();
    append(&mut p, open, frames(1, 3..=3, 30), 2).await.unwrap();
    let len = fence(&mut p, sealed, 2).await.durable_length;
    seal(&mut p, sealed, 2, len).await;
    let addr = c.addr(0);
    c.restart_server(0).await;
    assert_eq!(c.addr(0), addr);

    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let regs = c.master.registrations.lock().unwrap().clone();
        let mine: Vec<_> = regs.into_iter().filter(|r| r.address == addr).collect();
        if mine.len() >= 2 {
            break mine.last().unwrap().clone();
        }
        assert!(
            Instant::now() < deadline,
            "no registration after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut replicas = report.replicas.clone();
    replicas.sort_by_key(|r| r.handle);
    assert_eq!(replicas.len(), 2);
    assert_eq!(
        (
            replicas[0].handle,
            replicas[0].version,
            replicas[0].length,
            replicas[0].sealed
        ),
        (sealed, 2, len, true)
    );
    assert_eq!(
        (
            replicas[1].handle,
            replicas[1].version,
            replicas[1].length,
            replicas[1].sealed
        ),
        (open, 1, 32 + 64, false)
    );

    let mut p = c.client(0).await;
    let bytes = read_all(&mut p, sealed).await;
    assert_eq!(bytes.len() as u64, len);
    assert_eq!(&bytes[32..], &frames(1, 1..=2, 30)[..]);
    let e = append(&mut p, open, frames(1, 4..=4, 30), 3)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    c.master
        .deletes
        .lock()
        .unwrap()
        .insert(addr.clone(), vec![open]);
    let file = c.dirs[0].path().join(format!("chunks/{open:016x}.chunk"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.exists() {
        assert!(Instant::now() < deadline, "replica not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = p
        .read(ReadRequest {
            handle: open,
            offset: 32,
            max_bytes: 0,
            wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(!c.master.heartbeats.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_arriving_out_of_order_land_in_order() {
    // Concurrent forwards of one chunk can overtake each other on the way to a secondary: the
    // later one waits in the store's window for the earlier one, both succeed, and the
    // secondary serves bytes up to the commit offset the primary sent.
    let c = Cluster::start().await;
    let h = 0x1a;
    c.create(h, 1 << 20, Vec::new()).await;
    let (first, second) = (frames(1, 1..=1, 40), frames(1, 2..=2, 40));
    let mut s = c.client(1).await;
    let mut s2 = c.client(1).await;
    let at = 32 + first.len() as u64;
    let end = at + second.len() as u64;
    let later = tokio::spawn(async move {
        s2.forward(ForwardRequest {
            handle: h,
            version: 1,
            offset: at,
            frames: second,
            commit_offset: 32,
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = s
        .forward(ForwardRequest {
            handle: h,
            version: 1,
            offset: 32,
            frames: first,
            commit_offset: at,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.durable_length >= at);
    assert_eq!(
        later.await.unwrap().unwrap().into_inner().durable_length,
        end
    );
    let r = read(&mut s, h, 32, 0).await;
    assert_eq!((r.readable_end, r.data.len() as u64), (at, at - 32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrubbed_bad_replica_reports_corrupt_and_answers_data_loss() {
    // A byte flipped on disk in one sealed replica while its chunkserver is down is found by the
    // scrub pass that runs at startup: the next heartbeat reports the replica corrupt, and reads
    // of it answer DATA_LOSS naming the chunk, while the other replicas still serve the bytes.
    let mut c = Cluster::start().await;
    let handle = 0x5c;
    c.create(handle, 1 << 20, Vec::new()).await;
    let mut p = c.client(0).await;
    append(&mut p, handle, frames(1, 1..=20, 500), 0)
        .await
        .unwrap();
    let mut len = u64::MAX;
    for i in 0..3 {
        len = len.min(
            fence(&mut c.client(i).await, handle, 2)
                .await
                .durable_length,
        );
    }
    for i in 0..3 {
        seal(&mut c.client(i).await, handle, 2, len).await;
    }
    let addr = c.addr(1);
    c.stop_server(1).await;
    let file = c.dirs[1].path().join(format!("chunks/{handle:016x}.chunk"));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[5000] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let heartbeats_before = c.master.heartbeats.lock().unwrap().len();
    c.servers[1] = Some(Cs::start(c.dirs[1].path(), &c.master_addr, &addr).await);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let flagged = c.master.heartbeats.lock().unwrap()[heartbeats_before..]
            .iter()
            .filter(|h| h.address == addr)
            .any(|h| h.replicas.iter().any(|r| r.handle == handle && r.corrupt));
        if flagged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat reported the replica corrupt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = c
        .client(1)
        .await
        .read(ReadRequest {
            handle,
            offset: 32,
            max_bytes: 0,
            wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains(&format!("{:016x}", handle)), "{e:?}");
    for i in [0, 2] {
        let good = read_all(&mut c.client(i).await, handle).await;
        assert_eq!(good.len() as u64, len);
        assert_eq!(&good[32..], &frames(1, 1..=20, 500)[..]);
    }
}

// Proves: a repair copy (`Replicate`) whose 4 MiB reads of the source cut frames (records of
// ~700 KB) joins them and writes every frame whole: the copy holds exactly the source's bytes
// (same CRC-32, same fourteen records at the same offsets), all of them copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_joins_frames_cut_by_its_reads() {
    let c = Cluster::start().await;
    let h = 0x7c0;
    let cap = 16 << 20;
    // The chunk on servers 0 (primary) and 1 only; server 2 gets its copy by `Replicate`.
    for i in [1, 0] {
        let req = CreateReplicaRequest {
            handle: h,
            version: 1,
            capacity: cap,
            primary: i == 0,
            secondaries: if i == 0 { vec![c.addr(1)] } else { Vec::new() },
            writer_marks: Vec::new(),
        };
        c.client(i).await.create_replica(req).await.unwrap();
    }
    let mut p = c.client(0).await;
    let size = 700_001;
    for seq in (1..=14).step_by(2) {
        let r = append(&mut p, h, frames(4, seq..=seq + 1, size), seq - 1)
            .await
            .unwrap();
        assert_eq!(status(&r), AppendStatus::Ok);
    }
    let len = fence(&mut p, h, 2).await.durable_length;
    let frame = 32 + 700_008;
    assert!(len > 8 << 20, "the copy takes three 4 MiB reads: {len}");
    assert!(
        ((4 << 20) - 32) % frame != 0,
        "a frame straddles the first read's end"
    );
    assert_eq!(
        fence(&mut c.client(1).await, h, 2).await.durable_length,
        len
    );
    for i in [0, 1] {
        assert_eq!(seal(&mut c.client(i).await, h, 2, len).await, len);
    }
    let copied = c
        .client(2)
        .await
        .replicate(ReplicateRequest {
            handle: h,
            version: 2,
            length: len,
            capacity: cap,
            source: c.addr(0),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(copied.copied_bytes, len - 32);
    let source = p
        .checksum(ChecksumRequest { handle: h })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((source.length, source.crc32), (len, copied.crc32));
    let copy = read_all(&mut c.client(2).await, h).await;
    assert_eq!(copy, read_all(&mut p, h).await);
    let sequences: Vec<u64> = Scanner::new(&copy[32..], 32)
        .filter_map(|item| match item {
            ScanItem::Record { id, payload: p, .. } => {
                assert_eq!(p, payload(4, id.sequence, size));
                Some(id.sequence)
            }
            _ => None,
        })
        .collect();
    assert_eq!(sequences, (1..=14).collect::<Vec<_>>());
}

/// Flips the bits of one byte of server `i`'s replica file of `handle`, in place, under the
/// running chunkserver (which does not notice: it reads with `pread` and scrubs hourly).
fn flip_file_byte(c: &Cluster, i: usize, handle: u64, offset: u64) {
    use std::os::unix::fs::FileExt;
    let path = c.dirs[i].path().join(format!("chunks/{handle:016x}.chunk"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset).unwrap();
    file.write_all_at(&[b[0] ^ 0xff], offset).unwrap();
    file.sync_all().unwrap();
}

/// The chunk `handle` with 20 records on all three servers, fenced to version 2 everywhere and
/// sealed on servers 0 and 1 only: server 2 holds the whole chunk open (it missed the seal).
/// Returns the sealed length.
async fn sealed_on_two(c: &Cluster, handle: u64) -> u64 {
    c.create(handle, 1 << 20, Vec::new()).await;
    let r = append(&mut c.client(0).await, handle, frames(3, 1..=20, 400), 0)
        .await
        .unwrap();
    assert_eq!(status(&r), AppendStatus::Ok);
    let mut len = 0;
    for i in 0..3 {
        len = fence(&mut c.client(i).await, handle, 2)
            .await
            .durable_length;
    }
    for i in [0, 1] {
        assert_eq!(seal(&mut c.client(i).await, handle, 2, len).await, len);
    }
    len
}

// Proves (simulator seed 42634): when a copy's whole-replica checksum differs from its
// source's, the copy is verified whole before anything is deleted.
// - The source holds a flipped byte in bytes the target already had (the target's own replica,
//   complete but unsealed): the target's replica verifies, so it is kept, sealed and equal to
//   the healthy replica byte for byte, and the answer names the source (`DATA_LOSS`). Before,
//   the good replica was deleted, and with it the chunk's last good copy in the seed.
// - The target's own bytes are bad and the source is healthy: the target's replica is deleted
//   (a later copy replaces it whole) and the answer does not blame the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_differs_from_its_source_is_verified_before_it_is_deleted() {
    let c = Cluster::start().await;
    let replicate = |handle: u64, length: u64, source: String| ReplicateRequest {
        handle,
        version: 2,
        length,
        capacity: 1 << 20,
        source,
    };

    let h = 0x4a6;
    let len = sealed_on_two(&c, h).await;
    flip_file_byte(&c, 0, h, 600);
    let e = c
        .client(2)
        .await
        .replicate(replicate(h, len, c.addr(0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains(&c.addr(0)), "{e:?}");
    assert!(e.message().contains("kept"), "{e:?}");
    let kept = read(&mut c.client(2).await, h, 32, 0).await;
    assert!(kept.sealed, "the verified copy is kept sealed");
    assert_eq!(kept.readable_end, len);
    assert_eq!(
        read_all(&mut c.client(2).await, h).await,
        read_all(&mut c.client(1).await, h).await
    );
    let mut crc = Vec::new();
    for i in 0..3 {
        let r = c
            .client(i)
            .await
            .checksum(ChecksumRequest { handle: h })
            .await;
        crc.push(r.unwrap().into_inner().crc32);
    }
    assert_eq!(crc[2], crc[1]);
    assert_ne!(crc[0], crc[1], "the source is damaged");

    let h = 0x4a7;
    let len = sealed_on_two(&c, h).await;
    flip_file_byte(&c, 2, h, 600);
    let e = c
        .client(2)
        .await
        .replicate(replicate(h, len, c.addr(1)))
        .await
        .unwrap_err();
    assert_ne!(
        e.code(),
        Code::DataLoss,
        "the healthy source is not blamed: {e:?}"
    );
    assert!(e.message().contains("deleted"), "{e:?}");
    let gone = c
        .client(2)
        .await
        .read(ReadRequest {
            handle: h,
            offset: 32,
            max_bytes: 0,
            wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    // The next copy starts from nothing and gives a replica equal to the source's.
    let copied = c
        .client(2)
        .await
        .replicate(replicate(h, len, c.addr(1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(copied.copied_bytes, len - 32);
    assert_eq!(
        read_all(&mut c.client(2).await, h).await,
        read_all(&mut c.client(1).await, h).await
    );
}
