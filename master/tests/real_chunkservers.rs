//! The master with three real chunkservers (`cairn_chunkserver::serve`), all in-process on
//! 127.0.0.1: appends fill a small chunk until CHUNK_FULL, the seal path rolls the log, and a
//! master restart on the same port keeps the metadata while chunkservers register again.

use std::time::Duration;

use bytes::Bytes;
use cairn_proto::v1 as pb;
use cairn_proto::v1::chunkserver_client::ChunkserverClient;
use cairn_proto::v1::master_client::MasterClient;
use cairn_record::{RecordId, WriterId};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

struct Stopper {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Stopper {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn start_master(listener: TcpListener, dir: &std::path::Path) -> Stopper {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut config = cairn_master::Config::new(dir);
    config.heartbeat = Duration::from_millis(100);
    config.dead_after = Duration::from_millis(2000);
    let seams = cairn_master::Seams::production(&config);
    let task = tokio::spawn(async move {
        cairn_master::serve(config, listener, seams, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Stopper { stop, task }
}

async fn start_chunkserver(master: &str, dir: &std::path::Path) -> (String, Stopper) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut config = cairn_chunkserver::Config::new(dir);
    config.listen = address.clone();
    config.advertise = address.clone();
    config.master = master.to_owned();
    config.heartbeat_ms = 100;
    let (stop, stopped) = oneshot::channel::<()>();
    let seams = cairn_chunkserver::Seams::production(&config);
    let task = tokio::spawn(async move {
        cairn_chunkserver::serve(config, listener, seams, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (address, Stopper { stop, task })
}

/// Retries `OpenChunk` while the chunkservers are still registering.
async fn open_chunk(master: &mut MasterClient<Channel>, path: &str) -> pb::ChunkLocation {
    for _ in 0..100 {
        match master
            .open_chunk(pb::OpenChunkRequest { path: path.into() })
            .await
        {
            Ok(r) => return r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("open chunk: {s}"),
        }
    }
    panic!("the open chunk never became available");
}

async fn append(loc: &pb::ChunkLocation, sequence: u64) -> pb::AppendResponse {
    let mut frames = Vec::new();
    let id = RecordId {
        writer: WriterId(0xabc),
        sequence,
    };
    cairn_record::encode_record(&mut frames, id, &[sequence as u8; 200], 1024).unwrap();
    let mut client = ChunkserverClient::connect(format!("http://{}", loc.primary))
        .await
        .unwrap();
    client
        .append(pb::AppendRequest {
            handle: loc.handle,
            version: loc.version,
            frames: Bytes::from(frames),
            acked_through: sequence - 1,
            writer_epoch: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

// Fill a 4 KiB chunk until CHUNK_FULL, seal through the master, continue on the next chunk
// with the same writer (its mark inherited), then restart the master on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_and_restart_with_real_chunkservers() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master_address = listener.local_addr().unwrap().to_string();
    let master = start_master(listener, &dir.path().join("master"));
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(start_chunkserver(&master_address, &dir.path().join(format!("cs{i}"))).await);
    }
    let mut client = MasterClient::connect(format!("http://{master_address}"))
        .await
        .unwrap();
    // A log of three replicas is refused until three chunkservers have registered.
    let mut attempts = 0;
    loop {
        let created = client
            .create_log(pb::CreateLogRequest {
                path: "/t".into(),
                replication: 3,
                chunk_bytes: 4096,
                ..Default::default()
            })
            .await;
        match created {
            Ok(_) => break,
            Err(s) if s.code() == tonic::Code::Unavailable && attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(s) => panic!("create_log: {s:?}"),
        }
    }
    let first = open_chunk(&mut client, "/t").await;

    let mut sequence = 0;
    let next = loop {
        sequence += 1;
        let r = append(&first, sequence).await;
        if r.status == pb::AppendStatus::ChunkFull as i32 {
            assert!(r.offsets.is_empty());
            break client
                .seal_chunk(pb::SealChunkRequest {
                    path: "/t".into(),
                    handle: first.handle,
                    version: first.version,
                    reason: pb::SealReason::ChunkFull as i32,
                    detail: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
        }
        assert_eq!(r.status, pb::AppendStatus::Ok as i32);
    };
    assert_eq!(next.index, 1);
    let r = append(&next, sequence).await;
    assert_eq!(r.status, pb::AppendStatus::Ok as i32);
    assert_eq!(r.offsets, vec![32]);

    let stat = client
        .stat_log(pb::StatLogRequest {
            path: "/t".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stat.chunks[0].state, pb::ChunkState::Sealed as i32);
    assert_eq!(stat.chunks[0].length, 4096, "padded to the capacity");
    assert_eq!(stat.chunks[0].version, 2);
    assert_eq!(stat.chunks[0].replicas.len(), 3);

    // Restart the master on the same address.
    drop(client);
    master.stop().await;
    let listener = TcpListener::bind(&master_address).await.unwrap();
    let master = start_master(listener, &dir.path().join("master"));
    let mut client = MasterClient::connect(format!("http://{master_address}"))
        .await
        .unwrap();
    let again = open_chunk(&mut client, "/t").await;
    assert_eq!(again, next);
    let r = append(&again, sequence + 1).await;
    assert_eq!(r.status, pb::AppendStatus::Ok as i32);
    let stat = client
        .stat_log(pb::StatLogRequest {
            path: "/t".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stat.chunk_count, 2);
    assert_eq!(stat.chunks[0].length, 4096);

    drop(client);
    master.stop().await;
    for (_, s) in servers {
        s.stop().await;
    }
}
