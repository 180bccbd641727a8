//! The gRPC boundary: the `cairn.v1.Master` service over [`MasterCore`], the chunkserver client
//! the master uses, and the mapping of [`Error`] to gRPC status codes. The only module that
//! touches prost types.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::GRPC_MESSAGE_BYTES_MAX;
use cairn_proto::net::{Connector, Link};
use cairn_proto::v1 as pb;
use cairn_proto::v1::chunkserver_client::ChunkserverClient;
use cairn_proto::v1::master_server::{Master, MasterServer};
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, WriterId};
use tonic::{Code, Request, Response, Status};
use tracing::{debug, instrument, warn};

use crate::chunkserver_api::{
    ChunkserverApi, CopyError, CreateReplica, Fenced, Replicate, RpcError,
};
use crate::core::status::{ChunkProblem, ClusterStatus};
use crate::core::{ChunkInfo, Location, LogInfo, MasterCore};
use crate::error::Error;
use crate::fsck::{CorruptMark, LogReplicas};
use crate::heartbeat::ReplicaReport;
use crate::meta::{ChunkState, WriterMark};
use crate::office::Office;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::LogNotFound { .. }
            | Error::ChunkNotFound { .. }
            | Error::ReplicaNotFound { .. } => Code::NotFound,
            Error::LogExists { .. } => Code::AlreadyExists,
            Error::BadPath { .. }
            | Error::BadReplication { .. }
            | Error::BadMinReplicas { .. }
            | Error::BadChunkBytes { .. }
            | Error::InvalidArgument { .. }
            | Error::Config { .. } => Code::InvalidArgument,
            Error::VersionAhead { .. } | Error::ClusterTooSmall { .. } => Code::FailedPrecondition,
            Error::VersionExhausted { .. } => Code::FailedPrecondition,
            Error::TooManyWriters { .. } => Code::ResourceExhausted,
            Error::NotEnoughChunkservers { .. }
            | Error::PlacementUnavailable { .. }
            | Error::NotEnoughRoom { .. }
            | Error::NoLiveReplica { .. }
            | Error::FenceUnanswered { .. }
            | Error::SealUnanswered { .. }
            | Error::CreateReplicaFailed { .. }
            | Error::OplogFailed { .. }
            | Error::Io { .. }
            | Error::Transport { .. } => Code::Unavailable,
            Error::StatTooLarge { .. } => Code::ResourceExhausted,
            Error::OplogCorrupt { .. } | Error::CheckpointInvalid { .. } => Code::DataLoss,
        };
        Status::new(code, e.to_string())
    }
}

/// Runs the gRPC server on the connections `incoming` yields until `shutdown` completes: the
/// master's API over `core`, and Raft between masters (`cairn.v1.MasterPeer`) over `raft`.
pub(crate) async fn run(
    office: Arc<Office<GrpcChunkservers>>,
    raft: openraft::Raft<crate::raft::TypeConfig>,
    incoming: impl cairn_proto::net::Incoming,
    rpc_counts: cairn_metrics::RpcLayer,
    tls: Option<Arc<cairn_proto::net::tls::ServerTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let service = MasterServer::from_arc(Arc::new(MasterService { office }))
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let mut server = cairn_proto::net::server();
    if let Some(tls) = &tls {
        server = server
            .tls_config(tls.config())
            .map_err(|source| Error::Transport { source })?;
    }
    server
        .layer(rpc_counts)
        .layer(cairn_proto::net::tls::guard_of(tls.as_deref()))
        .add_service(service)
        .add_service(
            cairn_proto::v1::master_peer_server::MasterPeerServer::new(
                crate::raft::network::PeerService::new(raft),
            )
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| Error::Transport { source })
}

/// `cairn.v1.Master` over the core in office.
pub(crate) struct MasterService {
    office: Arc<Office<GrpcChunkservers>>,
}

impl MasterService {
    /// The core in office, or `UNAVAILABLE` while this master does not lead its group.
    fn core(&self) -> Result<Arc<MasterCore<GrpcChunkservers>>, Status> {
        self.office.core().ok_or_else(|| {
            let mut status = Status::unavailable(
                "this master does not lead its group now (an election is under way, or another \
                 master leads): try again, or another master",
            );
            status.metadata_mut().insert(
                cairn_proto::net::NOT_LEADER_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            status
        })
    }
}

#[tonic::async_trait]
impl Master for MasterService {
    #[instrument(skip_all, fields(log = %req.get_ref().path))]
    async fn create_log(
        &self,
        req: Request<pb::CreateLogRequest>,
    ) -> Result<Response<pb::LogInfo>, Status> {
        let r = req.into_inner();
        let info = self
            .core()?
            .create_log_with(
                &r.path,
                r.replication,
                r.min_replicas,
                r.chunk_bytes,
                &r.place_on,
            )
            .await?;
        Ok(Response::new(log_info(info)))
    }

    #[instrument(skip_all, fields(log = %req.get_ref().path))]
    async fn delete_log(
        &self,
        req: Request<pb::DeleteLogRequest>,
    ) -> Result<Response<pb::DeleteLogResponse>, Status> {
        self.core()?.delete_log(&req.get_ref().path).await?;
        Ok(Response::new(pb::DeleteLogResponse {}))
    }

    async fn list_chunkservers(
        &self,
        _: Request<pb::ListChunkserversRequest>,
    ) -> Result<Response<pb::ListChunkserversResponse>, Status> {
        let chunkservers = self
            .core()?
            .list_chunkservers()
            .into_iter()
            .map(|(address, live, replicas)| pb::ChunkserverInfo {
                address,
                live,
                replicas: replicas as u32,
            })
            .collect();
        Ok(Response::new(pb::ListChunkserversResponse { chunkservers }))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let core = self.core()?;
        Ok(Response::new(status_to_proto(
            &core.status(),
            core.cluster_id(),
        )))
    }

    async fn list_logs(
        &self,
        req: Request<pb::ListLogsRequest>,
    ) -> Result<Response<pb::ListLogsResponse>, Status> {
        let logs = self.core()?.list_logs(&req.get_ref().prefix);
        Ok(Response::new(pb::ListLogsResponse {
            logs: logs.into_iter().map(log_info).collect(),
        }))
    }

    async fn stat_log(
        &self,
        req: Request<pb::StatLogRequest>,
    ) -> Result<Response<pb::LogInfo>, Status> {
        let r = req.get_ref();
        let info = self
            .core()?
            .stat_log_page(&r.path, r.first_index, r.max_chunks)?;
        Ok(Response::new(log_info(info)))
    }

    #[instrument(skip_all, fields(log = %req.get_ref().path))]
    async fn open_chunk(
        &self,
        req: Request<pb::OpenChunkRequest>,
    ) -> Result<Response<pb::ChunkLocation>, Status> {
        let loc = self.core()?.open_chunk(&req.get_ref().path).await?;
        Ok(Response::new(location(loc)))
    }

    #[instrument(skip_all, fields(log = %req.get_ref().path, chunk = %ChunkHandle(req.get_ref().handle)))]
    async fn seal_chunk(
        &self,
        req: Request<pb::SealChunkRequest>,
    ) -> Result<Response<pb::ChunkLocation>, Status> {
        let r = req.into_inner();
        let reason = match pb::SealReason::try_from(r.reason) {
            Ok(reason) => reason.as_str_name(),
            Err(_) => "SEAL_REASON_UNKNOWN",
        };
        let reason = if r.detail.is_empty() {
            reason.to_owned()
        } else {
            format!("{reason}: {}", r.detail)
        };
        let loc = self
            .core()?
            .seal_chunk(
                &r.path,
                ChunkHandle(r.handle),
                ChunkVersion(r.version),
                &reason,
            )
            .await?;
        Ok(Response::new(location(loc)))
    }

    #[instrument(skip_all, fields(chunkserver = %req.get_ref().address))]
    async fn register_chunkserver(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        let core = self.core()?;
        let ours = core.cluster_id();
        if r.cluster_id != 0 && r.cluster_id != ours {
            warn!(chunkserver = %r.address, theirs = %format!("{:016x}", r.cluster_id), ours = %format!("{ours:016x}"), "refused a chunkserver of another cluster");
            return Err(Status::failed_precondition(format!(
                "chunkserver {} belongs to cluster {:016x}, this master's cluster is {ours:016x} \
                 (a master started on an empty or wrong data directory?); it is not registered \
                 and none of its replicas is touched",
                r.address, r.cluster_id
            )));
        }
        let reports: Vec<ReplicaReport> = r.replicas.iter().map(report).collect();
        let delete = core.register(&r.address, &reports).await?;
        core.note_free_bytes(&r.address, r.free_bytes);
        Ok(Response::new(pb::RegisterResponse {
            delete: delete.into_iter().map(|h| h.0).collect(),
            heartbeat_ms: core.heartbeat_ms(),
            cluster_id: ours,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        debug!(chunkserver = %r.address, replicas = r.replicas.len(), "heartbeat");
        let reports: Vec<ReplicaReport> = r.replicas.iter().map(report).collect();
        let core = self.core()?;
        let (delete, reregister) = core.heartbeat(&r.address, &reports).await?;
        core.note_free_bytes(&r.address, r.free_bytes);
        Ok(Response::new(pb::HeartbeatResponse {
            delete: delete.into_iter().map(|h| h.0).collect(),
            reregister,
        }))
    }

    async fn list_replicas(
        &self,
        req: Request<pb::ListReplicasRequest>,
    ) -> Result<Response<pb::ListReplicasResponse>, Status> {
        let replicas = self.core()?.list_replicas(&req.get_ref().path)?;
        Ok(Response::new(log_replicas(replicas)))
    }

    #[instrument(skip_all, fields(log = %req.get_ref().path))]
    async fn resume_writer(
        &self,
        req: Request<pb::ResumeWriterRequest>,
    ) -> Result<Response<pb::ResumeWriterResponse>, Status> {
        let r = req.into_inner();
        let epoch = self
            .core()?
            .resume_writer(&r.path, WriterId(r.writer))
            .await?;
        Ok(Response::new(pb::ResumeWriterResponse { epoch }))
    }

    #[instrument(skip_all, fields(chunk = %ChunkHandle(req.get_ref().handle), chunkserver = %req.get_ref().address))]
    async fn report_corrupt(
        &self,
        req: Request<pb::ReportCorruptRequest>,
    ) -> Result<Response<pb::ReportCorruptResponse>, Status> {
        let r = req.into_inner();
        let mark = self
            .core()?
            .report_corrupt(ChunkHandle(r.handle), &r.address, &r.detail)?;
        Ok(Response::new(match mark {
            CorruptMark::Marked => pb::ReportCorruptResponse {
                marked: true,
                reason: String::new(),
            },
            CorruptMark::Refused(reason) => pb::ReportCorruptResponse {
                marked: false,
                reason,
            },
        }))
    }
}

fn log_replicas(l: LogReplicas) -> pb::ListReplicasResponse {
    pb::ListReplicasResponse {
        path: l.path,
        replication: l.replication,
        chunk_bytes: l.chunk_bytes,
        chunks: l
            .chunks
            .into_iter()
            .map(|c| pb::ChunkReplicas {
                index: c.index,
                handle: c.handle.0,
                state: chunk_state(c.state) as i32,
                version: c.version.into(),
                length: c.length.into(),
                replication: c.replication,
                primary: c.primary,
                replicas: c
                    .replicas
                    .into_iter()
                    .map(|r| pb::ReplicaStatus {
                        address: r.address,
                        version: r.version.into(),
                        length: r.length.into(),
                        sealed: r.sealed,
                        corrupt: r.corrupt,
                        failed: r.failed,
                        live: r.live,
                        good: r.good,
                        reported_corrupt: r.reported_corrupt.unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn chunk_state(s: ChunkState) -> pb::ChunkState {
    match s {
        ChunkState::Open => pb::ChunkState::Open,
        ChunkState::Sealed => pb::ChunkState::Sealed,
    }
}

fn report(r: &pb::ReplicaReport) -> ReplicaReport {
    ReplicaReport {
        handle: ChunkHandle(r.handle),
        version: ChunkVersion(r.version),
        length: ChunkOffset(r.length),
        sealed: r.sealed,
        failed: r.failed,
        corrupt: r.corrupt,
        primary: r.primary,
    }
}

fn log_info(l: LogInfo) -> pb::LogInfo {
    pb::LogInfo {
        path: l.path,
        replication: l.replication,
        min_replicas: l.min_replicas,
        chunk_bytes: l.chunk_bytes,
        chunk_count: l.chunk_count,
        place_on: l.place_on,
        chunks: l.chunks.into_iter().map(chunk_info).collect(),
    }
}

fn chunk_info(c: ChunkInfo) -> pb::ChunkInfo {
    let state = chunk_state(c.state);
    pb::ChunkInfo {
        index: c.index,
        handle: c.handle.0,
        state: state as i32,
        length: c.length.into(),
        version: c.version.into(),
        replicas: c.replicas,
        primary: c.primary,
        lost_end: c.lost_end.into(),
    }
}

fn location(l: Location) -> pb::ChunkLocation {
    pb::ChunkLocation {
        path: l.path,
        index: l.index,
        handle: l.handle.0,
        version: l.version.into(),
        primary: l.primary,
        secondaries: l.secondaries,
        chunk_bytes: l.chunk_bytes,
    }
}

/// The marks and epochs a new primary is told: each mark with its writer's epoch, then the
/// resumed writers without a mark (sequence 0) with theirs.
fn marks_to_pb(marks: Vec<WriterMark>, mut epochs: BTreeMap<WriterId, u64>) -> Vec<pb::WriterMark> {
    let mut out: Vec<pb::WriterMark> = marks
        .into_iter()
        .map(|m| {
            let epoch = epochs.remove(&m.writer).unwrap_or(0);
            pb::WriterMark::with_epoch(m, epoch)
        })
        .collect();
    out.extend(epochs.into_iter().map(|(writer, epoch)| {
        let unmarked = WriterMark {
            writer,
            ..WriterMark::default()
        };
        pb::WriterMark::with_epoch(unmarked, epoch)
    }));
    out
}

/// The master's client for chunkservers: one [`Link`] per address (a lazily connected channel,
/// made by the process's [`Connector`], that dials anew after a call timed out or broke in it).
pub(crate) struct GrpcChunkservers {
    connector: Arc<dyn Connector>,
    rpc_timeout: Duration,
    channels: Mutex<HashMap<String, Link>>,
}

impl GrpcChunkservers {
    /// A client whose connections are made by `connector`; connecting, and each call but
    /// `replicate` (which is given its own deadline), are bounded by `rpc_timeout`.
    pub(crate) fn new(connector: Arc<dyn Connector>, rpc_timeout: Duration) -> GrpcChunkservers {
        GrpcChunkservers {
            connector,
            rpc_timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// `message` with the deadline of a create, fence, seal or delete: a tenth shorter than the
    /// caller's own timer (the RPC timeout), so that a call on a dead connection fails inside
    /// the [`Link`], which dials anew, rather than being dropped by the caller unseen.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.rpc_timeout - self.rpc_timeout / 10);
        request
    }

    fn client(&self, address: &str) -> Result<ChunkserverClient<Link>, RpcError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(address) {
            Some(c) => c.clone(),
            None => {
                let endpoint = cairn_proto::net::endpoint(address, self.rpc_timeout)
                    .map_err(|e| RpcError::Other(e.to_string()))?;
                let channel = Link::lazy(self.connector.clone(), endpoint);
                channels.insert(address.to_owned(), channel.clone());
                channel
            }
        };
        Ok(ChunkserverClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX))
    }
}

fn rpc_error(s: Status) -> RpcError {
    match s.code() {
        Code::NotFound => RpcError::NotFound,
        code => RpcError::Other(format!("{code:?}: {}", s.message())),
    }
}

impl ChunkserverApi for GrpcChunkservers {
    async fn create_replica(&self, address: String, r: CreateReplica) -> Result<(), RpcError> {
        let mut client = self.client(&address)?;
        client
            .create_replica(self.request(pb::CreateReplicaRequest {
                handle: r.handle.0,
                version: r.version.into(),
                capacity: r.capacity,
                primary: r.primary,
                secondaries: r.secondaries,
                writer_marks: marks_to_pb(r.writer_marks, r.writer_epochs),
            }))
            .await
            .map_err(rpc_error)?;
        Ok(())
    }

    async fn fence(
        &self,
        address: String,
        handle: ChunkHandle,
        new_version: ChunkVersion,
    ) -> Result<Fenced, RpcError> {
        let mut client = self.client(&address)?;
        let r = client
            .fence(self.request(pb::FenceRequest {
                handle: handle.0,
                new_version: new_version.into(),
            }))
            .await
            .map_err(rpc_error)?
            .into_inner();
        Ok(Fenced {
            length: ChunkOffset(r.durable_length),
            version: ChunkVersion(r.version),
            sealed: r.sealed,
            marks: r.writer_marks.into_iter().map(WriterMark::from).collect(),
            marks_through: ChunkOffset(r.marks_through),
            primary_commit: (r.primary_commit_offset > 0)
                .then_some(ChunkOffset(r.primary_commit_offset)),
        })
    }

    async fn seal(
        &self,
        address: String,
        handle: ChunkHandle,
        version: ChunkVersion,
        length: ChunkOffset,
    ) -> Result<(), RpcError> {
        let mut client = self.client(&address)?;
        client
            .seal(self.request(pb::SealRequest {
                handle: handle.0,
                version: version.into(),
                length: length.into(),
            }))
            .await
            .map_err(rpc_error)?;
        Ok(())
    }

    async fn replicate(
        &self,
        address: String,
        job: Replicate,
        timeout: std::time::Duration,
    ) -> Result<u64, CopyError> {
        let mut client = self.client(&address)?;
        let mut req = Request::new(pb::ReplicateRequest {
            handle: job.handle.0,
            version: job.version.into(),
            length: job.length.into(),
            capacity: job.capacity,
            source: job.source,
        });
        req.set_timeout(timeout);
        let r = client
            .replicate(req)
            .await
            .map_err(|s| match s.code() {
                // The target found the source's bytes bad (chunkserver.proto, `Replicate`).
                Code::DataLoss => CopyError::SourceCorrupt(s.message().to_owned()),
                _ => CopyError::Rpc(rpc_error(s)),
            })?
            .into_inner();
        Ok(r.copied_bytes)
    }

    async fn delete_replica(&self, address: String, handle: ChunkHandle) -> Result<(), RpcError> {
        let mut client = self.client(&address)?;
        client
            .delete_replica(self.request(pb::DeleteReplicaRequest { handle: handle.0 }))
            .await
            .map_err(rpc_error)?;
        Ok(())
    }
}

/// The status as `ClusterStatus` answers it.
pub(crate) fn status_to_proto(s: &ClusterStatus, cluster_id: u64) -> pb::ClusterStatusResponse {
    let problem = |p: &ChunkProblem| pb::ChunkProblem {
        log: p.log.clone(),
        chunk: p.handle.0,
        index: p.index,
        good: p.good as u32,
        replication: p.replication,
        length: p.length.into(),
        corrupt_on: p.corrupt_on.clone(),
    };
    let r = &s.repairs;
    pb::ClusterStatusResponse {
        cluster_id,
        uptime_ms: s.uptime.as_millis() as u64,
        chunkservers: s
            .chunkservers
            .iter()
            .map(|c| pb::ChunkserverStatus {
                address: c.address.clone(),
                live: c.live,
                last_heartbeat_ms: c.silent.as_millis() as u64,
                free_bytes: c.free_bytes.unwrap_or(0),
                replicas: c.replicas as u32,
            })
            .collect(),
        logs: s.logs as u64,
        open_chunks: s.open_chunks as u64,
        sealed_chunks: s.sealed_chunks as u64,
        under_replicated: s.under_replicated.iter().map(problem).collect(),
        under_replicated_total: s.under_replicated_total as u64,
        corrupt: s.corrupt.iter().map(problem).collect(),
        corrupt_total: s.corrupt_total as u64,
        repairs: Some(pb::RepairStatus {
            running: r
                .running
                .iter()
                .map(|(h, t)| pb::RepairCopy {
                    chunk: h.0,
                    target: t.clone(),
                })
                .collect(),
            queued: r.queued,
            copies_done: r.copies_done,
            copies_failed: r.copies_failed,
            bytes_copied: r.bytes_copied,
            bytes_per_sec: r.bytes_per_sec,
            bytes_remaining: r.bytes_remaining,
            eta_ms: r.eta.map_or(0, |d| d.as_millis() as u64),
        }),
        exec_services: s.exec_services.clone(),
    }
}
