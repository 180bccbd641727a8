//! The gRPC boundary, and the only module that touches the generated (prost) types: the
//! `Chunkserver` service, the primary's forwarding client ([`Peers`]), the master client
//! ([`MasterLink`]) and the mapping of [`Error`] to `tonic::Status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::GRPC_MESSAGE_BYTES_MAX;
use cairn_proto::v1::chunkserver_client::ChunkserverClient;
use cairn_proto::v1::chunkserver_server::Chunkserver;
use cairn_proto::v1::master_client::MasterClient;
use cairn_proto::v1::{
    AppendRequest, AppendResponse, ChecksumRequest, ChecksumResponse, CreateReplicaRequest,
    CreateReplicaResponse, DeleteReplicaRequest, DeleteReplicaResponse, FenceRequest,
    FenceResponse, ForwardRequest, ForwardResponse, HeartbeatRequest, ReadRequest, ReadResponse,
    RegisterRequest, ReplicaReport, ReplicateRequest, ReplicateResponse, SealRequest, SealResponse,
    WriterMark,
};
use cairn_record::ChunkHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tracing::instrument;

use crate::error::{Error, Result};
use crate::limits::{HTTP2_CONNECTION_WINDOW_BYTES, HTTP2_STREAM_WINDOW_BYTES};
use crate::node::{AppendStatus, Node, PrimaryRole};
use crate::primary::Inherited;
use crate::store::ReplicaState;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } | Error::WriterConflict { .. } => Code::AlreadyExists,
            Error::WriterFenced { .. } => Code::PermissionDenied,
            Error::StaleVersion { .. }
            | Error::Sealed { .. }
            | Error::Fenced { .. }
            | Error::NotPrimary { .. }
            | Error::WrongOffset { .. }
            | Error::SealBeyondEnd { .. }
            | Error::OpenReplica { .. } => Code::FailedPrecondition,
            Error::PastCapacity { .. }
            | Error::WindowFull { .. }
            | Error::Overloaded { .. }
            | Error::DiskFull { .. }
            | Error::NoSpace { .. }
            | Error::ReadTooLarge { .. }
            | Error::Exhausted { .. } => Code::ResourceExhausted,
            Error::Broken { .. }
            | Error::Forward { .. }
            | Error::Timeout { .. }
            | Error::GapTimeout { .. }
            | Error::Closed { .. }
            | Error::ShuttingDown
            | Error::Replication { .. }
            | Error::Master { .. } => Code::Unavailable,
            Error::Failed { .. } | Error::Corrupt { .. } | Error::SourceCorrupt { .. } => {
                Code::DataLoss
            }
            Error::InvalidBatch { .. }
            | Error::InvalidRequest { .. }
            | Error::Misaligned { .. }
            | Error::BadCapacity { .. }
            | Error::Config { .. } => Code::InvalidArgument,
            Error::OutOfRange { .. } => Code::OutOfRange,
            Error::Io { .. } | Error::Transport { .. } => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// A channel to `addr` (`HOST:PORT`) with Cairn's transport settings, connected on first use.
pub(crate) fn channel(addr: &str, timeout: Duration) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::InvalidRequest {
            reason: format!("bad address {addr:?}: {e}"),
        })?
        .tcp_nodelay(true)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW_BYTES)
        .connect_timeout(timeout)
        .timeout(timeout);
    Ok(endpoint.connect_lazy())
}

/// The primary's clients of its secondaries: one lazily connected channel per address.
pub(crate) struct Peers {
    clients: Mutex<HashMap<String, ChunkserverClient<Channel>>>,
    timeout: Duration,
}

impl Peers {
    /// No connections yet; each call times out after `timeout`.
    pub(crate) fn new(timeout: Duration) -> Peers {
        Peers {
            clients: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    pub(crate) fn client(&self, peer: &str) -> Result<ChunkserverClient<Channel>> {
        let mut clients = self.clients.lock().expect("peers lock poisoned");
        if let Some(c) = clients.get(peer) {
            return Ok(c.clone());
        }
        let c = ChunkserverClient::new(channel(peer, self.timeout)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        clients.insert(peer.to_owned(), c.clone());
        Ok(c)
    }

    /// Forwards `frames` to `peer`; resolves to the secondary's durable length. The client is
    /// looked up now (so the call is bound to this moment's connection); the RPC starts when the
    /// future is first polled.
    pub(crate) fn forward(
        &self,
        peer: &str,
        handle: ChunkHandle,
        version: u64,
        offset: u64,
        frames: Bytes,
        commit_offset: u64,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        let client = self.client(peer);
        let peer = peer.to_owned();
        async move {
            let req = ForwardRequest {
                handle: handle.0,
                version,
                offset,
                frames,
                commit_offset,
            };
            let resp = client?.forward(req).await.map_err(|s| Error::Forward {
                handle,
                peer,
                message: format!("{:?}: {}", s.code(), s.message()),
            })?;
            Ok(resp.into_inner().durable_length)
        }
    }
}

/// What the master said to a registration.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registered {
    /// Replicas to delete.
    pub(crate) delete: Vec<ChunkHandle>,
    /// The heartbeat period the master expects (0: not said).
    pub(crate) heartbeat_ms: u64,
    /// The master's cluster id (0: not said).
    pub(crate) cluster_id: u64,
}

/// What the master said to a heartbeat.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeartbeatReply {
    /// Replicas to delete.
    pub(crate) delete: Vec<ChunkHandle>,
    /// The master does not know this chunkserver: register again.
    pub(crate) reregister: bool,
}

/// The chunkserver's client of the master.
pub(crate) struct MasterLink {
    master: String,
    client: MasterClient<Channel>,
}

impl MasterLink {
    /// A lazily connected client of the master at `master` (`HOST:PORT`).
    pub(crate) fn new(master: &str, timeout: Duration) -> Result<MasterLink> {
        let client = MasterClient::new(channel(master, timeout)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        Ok(MasterLink {
            master: master.to_owned(),
            client,
        })
    }

    fn error(&self, s: Status) -> Error {
        Error::Master {
            master: self.master.clone(),
            message: format!("{:?}: {}", s.code(), s.message()),
        }
    }

    /// `RegisterChunkserver` with every replica's state.
    pub(crate) async fn register(
        &mut self,
        address: &str,
        replicas: &[(ReplicaState, bool)],
        free_bytes: u64,
        cluster_id: u64,
    ) -> Result<Registered> {
        let req = RegisterRequest {
            address: address.to_owned(),
            replicas: replicas.iter().map(report).collect(),
            free_bytes,
            cluster_id,
        };
        let resp = self.client.register_chunkserver(req).await;
        let resp = resp.map_err(|s| self.error(s))?.into_inner();
        Ok(Registered {
            delete: resp.delete.into_iter().map(ChunkHandle).collect(),
            heartbeat_ms: resp.heartbeat_ms as u64,
            cluster_id: resp.cluster_id,
        })
    }

    /// `Heartbeat` with every replica's state.
    pub(crate) async fn heartbeat(
        &mut self,
        address: &str,
        replicas: &[(ReplicaState, bool)],
        free_bytes: u64,
    ) -> Result<HeartbeatReply> {
        let req = HeartbeatRequest {
            address: address.to_owned(),
            replicas: replicas.iter().map(report).collect(),
            free_bytes,
        };
        let resp = self.client.heartbeat(req).await;
        let resp = resp.map_err(|s| self.error(s))?.into_inner();
        Ok(HeartbeatReply {
            delete: resp.delete.into_iter().map(ChunkHandle).collect(),
            reregister: resp.reregister,
        })
    }
}

fn report((s, primary): &(ReplicaState, bool)) -> ReplicaReport {
    ReplicaReport {
        handle: s.handle.0,
        version: s.version,
        length: s.len,
        sealed: s.sealed,
        failed: s.failed,
        corrupt: !s.corrupt.is_empty(),
        primary: *primary,
    }
}

/// The `cairn.v1.Chunkserver` service over a [`Node`].
pub(crate) struct ChunkserverService {
    node: Arc<Node>,
}

impl ChunkserverService {
    /// Serves `node`.
    pub(crate) fn new(node: Arc<Node>) -> ChunkserverService {
        ChunkserverService { node }
    }
}

#[tonic::async_trait]
impl Chunkserver for ChunkserverService {
    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn create_replica(
        &self,
        request: Request<CreateReplicaRequest>,
    ) -> Result<Response<CreateReplicaResponse>, Status> {
        let r = request.into_inner();
        if r.writer_marks.len() > cairn_proto::WRITER_MARKS_MAX {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "{} writer marks, over the limit of {}",
                    r.writer_marks.len(),
                    cairn_proto::WRITER_MARKS_MAX
                ),
            }
            .into());
        }
        let role = r.primary.then(|| PrimaryRole {
            secondaries: r.secondaries,
            inherited: r
                .writer_marks
                .iter()
                .map(|m| {
                    (
                        m.writer,
                        Inherited {
                            sequence: m.sequence,
                            frame_crc: m.frame_crc,
                            epoch: m.epoch,
                        },
                    )
                })
                .collect(),
        });
        self.node
            .create(ChunkHandle(r.handle), r.version, r.capacity, role)
            .await?;
        Ok(Response::new(CreateReplicaResponse {}))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let r = request.into_inner();
        let out = self
            .node
            .append(
                ChunkHandle(r.handle),
                r.version,
                r.frames,
                r.acked_through,
                r.writer_epoch,
            )
            .await?;
        let status = match out.status {
            AppendStatus::Ok => cairn_proto::v1::AppendStatus::Ok,
            AppendStatus::ChunkFull => cairn_proto::v1::AppendStatus::ChunkFull,
            AppendStatus::OutOfOrder => cairn_proto::v1::AppendStatus::OutOfOrder,
        };
        Ok(Response::new(AppendResponse {
            status: status as i32,
            offsets: out.offsets,
            unverified: out.unverified,
            commit_offset: out.commit_offset,
            expected_sequence: out.expected_sequence,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let r = request.into_inner();
        let durable_length = self
            .node
            .forward(
                ChunkHandle(r.handle),
                r.version,
                r.offset,
                r.frames,
                r.commit_offset,
            )
            .await?;
        Ok(Response::new(ForwardResponse { durable_length }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let r = request.into_inner();
        let out = self
            .node
            .read(ChunkHandle(r.handle), r.offset, r.max_bytes, r.wait_ms)
            .await?;
        Ok(Response::new(ReadResponse {
            offset: out.offset,
            data: out.data,
            readable_end: out.readable_end,
            sealed: out.sealed,
            version: out.version,
            primary: out.primary,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn fence(
        &self,
        request: Request<FenceRequest>,
    ) -> Result<Response<FenceResponse>, Status> {
        let r = request.into_inner();
        let out = self
            .node
            .fence(ChunkHandle(r.handle), r.new_version)
            .await?;
        Ok(Response::new(FenceResponse {
            durable_length: out.state.len,
            version: out.state.version,
            sealed: out.state.sealed,
            writer_marks: out
                .writer_marks
                .into_iter()
                .map(|m| WriterMark {
                    writer: m.writer,
                    sequence: m.sequence,
                    frame_crc: m.frame_crc,
                    epoch: 0,
                })
                .collect(),
            marks_through: out.marks_through,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn seal(&self, request: Request<SealRequest>) -> Result<Response<SealResponse>, Status> {
        let r = request.into_inner();
        let state = self
            .node
            .seal(ChunkHandle(r.handle), r.version, r.length)
            .await?;
        Ok(Response::new(SealResponse {
            length: state.acked_len,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn delete_replica(
        &self,
        request: Request<DeleteReplicaRequest>,
    ) -> Result<Response<DeleteReplicaResponse>, Status> {
        let r = request.into_inner();
        self.node.delete(ChunkHandle(r.handle)).await?;
        Ok(Response::new(DeleteReplicaResponse {}))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn replicate(
        &self,
        request: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateResponse>, Status> {
        let r = request.into_inner();
        let done = self
            .node
            .replicate(
                ChunkHandle(r.handle),
                r.version,
                r.length,
                r.capacity,
                &r.source,
            )
            .await
            .map_err(|e| match e {
                // DATA_LOSS from Replicate means the source's bytes are bad (the master marks
                // that source corrupt): this replica's own fault must not read as that.
                Error::Failed { .. } | Error::Corrupt { .. } => {
                    Status::internal(format!("this chunkserver's replica: {e}"))
                }
                e => Status::from(e),
            })?;
        Ok(Response::new(ReplicateResponse {
            copied_bytes: done.copied_bytes,
            crc32: done.crc32,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn checksum(
        &self,
        request: Request<ChecksumRequest>,
    ) -> Result<Response<ChecksumResponse>, Status> {
        let c = self
            .node
            .checksum(ChunkHandle(request.into_inner().handle))
            .await?;
        Ok(Response::new(ChecksumResponse {
            version: c.version,
            length: c.length,
            crc32: c.crc32,
        }))
    }
}
