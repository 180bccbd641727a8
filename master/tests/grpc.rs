//! The master over real gRPC on 127.0.0.1:0, with minimal fake chunkservers (the `Chunkserver`
//! service implemented in memory): allocation, the seal path, concurrent seals and a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::v1 as pb;
use cairn_proto::v1::chunkserver_server::{Chunkserver, ChunkserverServer};
use cairn_proto::v1::master_client::MasterClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

#[derive(Clone, Debug)]
struct Replica {
    version: u64,
    length: u64,
    sealed: bool,
    primary: bool,
    secondaries: Vec<String>,
    marks: Vec<(u64, u64)>,
}

/// A chunkserver that keeps replicas as metadata only. `durable` is the length it reports
/// when fenced, standing in for appended bytes.
#[derive(Default)]
struct FakeChunkserver {
    address: String,
    durable: Mutex<u64>,
    replicas: Mutex<HashMap<u64, Replica>>,
    fences: Mutex<u32>,
}

impl FakeChunkserver {
    fn reports(&self) -> Vec<pb::ReplicaReport> {
        self.replicas
            .lock()
            .unwrap()
            .iter()
            .map(|(h, r)| pb::ReplicaReport {
                handle: *h,
                version: r.version,
                length: r.length,
                sealed: r.sealed,
                failed: false,
                corrupt: false,
                primary: r.primary,
            })
            .collect()
    }

    fn replica(&self, handle: u64) -> Option<Replica> {
        self.replicas.lock().unwrap().get(&handle).cloned()
    }
}

/// The gRPC face of a fake (a local type, so the foreign trait can be implemented for it).
struct FakeService(Arc<FakeChunkserver>);

impl std::ops::Deref for FakeService {
    type Target = FakeChunkserver;

    fn deref(&self) -> &FakeChunkserver {
        &self.0
    }
}

#[tonic::async_trait]
impl Chunkserver for FakeService {
    async fn create_replica(
        &self,
        req: Request<pb::CreateReplicaRequest>,
    ) -> Result<Response<pb::CreateReplicaResponse>, Status> {
        let r = req.into_inner();
        self.replicas.lock().unwrap().insert(
            r.handle,
            Replica {
                version: r.version,
                length: 32,
                sealed: false,
                primary: r.primary,
                secondaries: r.secondaries,
                marks: r
                    .writer_marks
                    .iter()
                    .map(|m| (m.writer, m.sequence))
                    .collect(),
            },
        );
        Ok(Response::new(pb::CreateReplicaResponse {}))
    }

    async fn append(
        &self,
        _: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn forward(
        &self,
        _: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn read(
        &self,
        _: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn fence(
        &self,
        req: Request<pb::FenceRequest>,
    ) -> Result<Response<pb::FenceResponse>, Status> {
        let r = req.into_inner();
        // Give concurrent seal requests time to queue up behind the first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        *self.fences.lock().unwrap() += 1;
        let durable = *self.durable.lock().unwrap();
        let mut replicas = self.replicas.lock().unwrap();
        let replica = replicas
            .get_mut(&r.handle)
            .ok_or_else(|| Status::not_found("no replica"))?;
        if r.new_version <= replica.version {
            return Err(Status::failed_precondition("old version"));
        }
        replica.version = r.new_version;
        replica.length = durable;
        Ok(Response::new(pb::FenceResponse {
            durable_length: durable,
            version: r.new_version,
            sealed: replica.sealed,
            writer_marks: vec![pb::WriterMark {
                writer: 77,
                sequence: durable,
                frame_crc: 0,
                epoch: 0,
            }],
            marks_through: durable,
            // Answers as a secondary: the seal takes the longest durable length.
            primary_commit_offset: 0,
        }))
    }

    async fn seal(
        &self,
        req: Request<pb::SealRequest>,
    ) -> Result<Response<pb::SealResponse>, Status> {
        let r = req.into_inner();
        let mut replicas = self.replicas.lock().unwrap();
        let replica = replicas
            .get_mut(&r.handle)
            .ok_or_else(|| Status::not_found("no replica"))?;
        assert!(replica.length >= r.length, "sealed past the durable length");
        replica.sealed = true;
        replica.length = r.length;
        replica.version = r.version;
        Ok(Response::new(pb::SealResponse { length: r.length }))
    }

    async fn delete_replica(
        &self,
        req: Request<pb::DeleteReplicaRequest>,
    ) -> Result<Response<pb::DeleteReplicaResponse>, Status> {
        self.replicas.lock().unwrap().remove(&req.get_ref().handle);
        Ok(Response::new(pb::DeleteReplicaResponse {}))
    }

    async fn replicate(
        &self,
        _req: Request<pb::ReplicateRequest>,
    ) -> Result<Response<pb::ReplicateResponse>, Status> {
        Err(Status::unimplemented("this fake does not copy replicas"))
    }

    async fn checksum(
        &self,
        _req: Request<pb::ChecksumRequest>,
    ) -> Result<Response<pb::ChecksumResponse>, Status> {
        Err(Status::unimplemented("this fake keeps no bytes"))
    }
}

async fn start_chunkserver() -> Arc<FakeChunkserver> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Arc::new(FakeChunkserver {
        address: listener.local_addr().unwrap().to_string(),
        ..Default::default()
    });
    let service = ChunkserverServer::new(FakeService(fake.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    fake
}

struct RunningMaster {
    client: MasterClient<Channel>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<cairn_master::Result<()>>,
}

impl RunningMaster {
    async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn start_master(dir: &std::path::Path) -> RunningMaster {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(cairn_master::serve(
        cairn_master::Config::new(dir),
        listener,
        cairn_master::Seams::production(&cairn_master::Config::new(dir)),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = MasterClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    RunningMaster { client, stop, task }
}

async fn register(client: &mut MasterClient<Channel>, fakes: &[Arc<FakeChunkserver>]) {
    for f in fakes {
        let r = client
            .register_chunkserver(pb::RegisterRequest {
                address: f.address.clone(),
                replicas: f.reports(),
                free_bytes: 1 << 40,
                cluster_id: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.heartbeat_ms, 1000);
        assert!(r.delete.is_empty(), "nothing is unknown here");
        assert_ne!(r.cluster_id, 0, "the master names its cluster");
        // A chunkserver of another cluster is refused before anything is compared or deleted.
        let err = client
            .register_chunkserver(pb::RegisterRequest {
                address: f.address.clone(),
                replicas: f.reports(),
                free_bytes: 1 << 40,
                cluster_id: r.cluster_id ^ 1,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("another") || err.message().contains("belongs to cluster"));
    }
}

fn by_address<'a>(fakes: &'a [Arc<FakeChunkserver>], address: &str) -> &'a FakeChunkserver {
    fakes.iter().find(|f| f.address == address).unwrap()
}

// create → open → seal (full) → the next chunk goes to the least used chunkserver as primary,
// with the sealed chunk's writer marks; the seal cuts at the smallest durable length.
// Eight concurrent seals of that chunk give one new chunk. A restart keeps logs, chunks and
// versions, asks chunkservers to register again, and serves the open chunk once they have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_open_seal_concurrent_seals_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut fakes = Vec::new();
    for _ in 0..4 {
        fakes.push(start_chunkserver().await);
    }
    let mut m = start_master(dir.path()).await;
    register(&mut m.client, &fakes[..3]).await;

    m.client
        .create_log(pb::CreateLogRequest {
            path: "/orders".into(),
            replication: 3,
            chunk_bytes: 8192,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = m
        .client
        .create_log(pb::CreateLogRequest {
            path: "/orders".into(),
            replication: 3,
            chunk_bytes: 8192,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let first = m
        .client
        .open_chunk(pb::OpenChunkRequest {
            path: "/orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.index, first.version, first.chunk_bytes),
        (0, 1, 8192)
    );
    let primary = by_address(&fakes, &first.primary)
        .replica(first.handle)
        .unwrap();
    assert!(primary.primary);
    let mut secondaries = primary.secondaries.clone();
    secondaries.sort();
    let mut expected = first.secondaries.clone();
    expected.sort();
    assert_eq!(secondaries, expected);

    // The fourth chunkserver joins; the others hold "data".
    register(&mut m.client, &fakes[3..]).await;
    for (f, len) in fakes.iter().zip([6000u64, 4000, 5000, 0]) {
        *f.durable.lock().unwrap() = len;
    }
    let next = m
        .client
        .seal_chunk(pb::SealChunkRequest {
            path: "/orders".into(),
            handle: first.handle,
            version: first.version,
            reason: pb::SealReason::ChunkFull as i32,
            detail: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((next.index, next.version), (1, 1));
    assert_eq!(
        next.primary, fakes[3].address,
        "least used chunkserver first"
    );
    // Sealed at the longest fenced length, on the replica that holds it; the two shorter
    // ones are fenced (version 2) and left for the repair loop to bring up to it.
    let r = fakes[0].replica(first.handle).unwrap();
    assert!(r.sealed);
    assert_eq!((r.length, r.version), (6000, 2));
    for f in &fakes[1..3] {
        let r = f.replica(first.handle).unwrap();
        assert!(!r.sealed);
        assert_eq!(r.version, 2);
    }
    let new_primary = fakes[3].replica(next.handle).unwrap();
    assert!(new_primary.primary);
    assert_eq!(new_primary.marks, vec![(77, 6000)]);

    // Eight clients seal the new chunk at once.
    for f in &fakes {
        *f.durable.lock().unwrap() = 32;
    }
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut c = m.client.clone();
        let (handle, version) = (next.handle, next.version);
        calls.push(tokio::spawn(async move {
            c.seal_chunk(pb::SealChunkRequest {
                path: "/orders".into(),
                handle,
                version,
                reason: pb::SealReason::AppendFailed as i32,
                detail: "test".into(),
            })
            .await
            .unwrap()
            .into_inner()
        }));
    }
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    assert!(answers.iter().all(|a| *a == answers[0]));
    let third = answers[0].clone();
    assert_eq!(third.index, 2);
    let fences: u32 = fakes.iter().map(|f| *f.fences.lock().unwrap()).sum();
    assert_eq!(fences, 6, "two seals, three replicas each");

    let stat = m
        .client
        .stat_log(pb::StatLogRequest {
            path: "/orders".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stat.chunk_count, 3);
    assert_eq!(stat.chunks[0].length, 6000);
    assert_eq!(stat.chunks[0].state, pb::ChunkState::Sealed as i32);
    // Only the good replica is listed (this fake cannot copy, so repair cannot add others).
    assert_eq!(stat.chunks[0].replicas, vec![fakes[0].address.clone()]);
    assert_eq!(stat.chunks[2].state, pb::ChunkState::Open as i32);
    assert_eq!(stat.chunks[2].primary, third.primary);

    // Restart: metadata back, locations not.
    m.stop().await;
    let mut m = start_master(dir.path()).await;
    let restarted = m
        .client
        .stat_log(pb::StatLogRequest {
            path: "/orders".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restarted.chunk_count, 3);
    for (a, b) in stat.chunks.iter().zip(&restarted.chunks) {
        assert_eq!(
            (a.index, a.handle, a.state, a.version),
            (b.index, b.handle, b.state, b.version)
        );
        assert_eq!(a.primary, b.primary);
    }
    assert_eq!(restarted.chunks[0].length, 6000);
    let hb = m
        .client
        .heartbeat(pb::HeartbeatRequest {
            address: fakes[0].address.clone(),
            replicas: fakes[0].reports(),
            free_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hb.reregister);
    let err = m
        .client
        .open_chunk(pb::OpenChunkRequest {
            path: "/orders".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    register(&mut m.client, &fakes).await;
    let again = m
        .client
        .open_chunk(pb::OpenChunkRequest {
            path: "/orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, third);
    let err = m
        .client
        .stat_log(pb::StatLogRequest {
            path: "/missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    m.stop().await;
}
