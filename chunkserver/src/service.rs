//! The gRPC server boundary: the `Chunkserver` service over a [`Node`], and the mapping of
//! [`Error`] to `tonic::Status`. With [`crate::peers`] and [`crate::master_link`] (the gRPC
//! clients), the only modules that touch the generated (prost) types.

use std::sync::Arc;

use cairn_proto::v1::chunkserver_server::Chunkserver;
use cairn_proto::v1::{
    AppendRequest, AppendResponse, ChecksumRequest, ChecksumResponse, CreateReplicaRequest,
    CreateReplicaResponse, DeleteReplicaRequest, DeleteReplicaResponse, FenceRequest,
    FenceResponse, ForwardRequest, ForwardResponse, ReadRequest, ReadResponse, ReplicateRequest,
    ReplicateResponse, SealRequest, SealResponse, WriterMark,
};
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};
use tonic::{Code, Request, Response, Status};
use tracing::instrument;

use crate::error::Error;
use crate::metrics::ChunkserverMetrics;
use crate::node::{AppendStatus, Node, PrimaryRole};
use crate::primary::Inherited;

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

/// The `cairn.v1.Chunkserver` service over a [`Node`].
pub(crate) struct ChunkserverService {
    node: Arc<Node>,
    metrics: ChunkserverMetrics,
}

impl ChunkserverService {
    /// Serves `node`, counting into `metrics`.
    pub(crate) fn new(node: Arc<Node>, metrics: ChunkserverMetrics) -> ChunkserverService {
        ChunkserverService { node, metrics }
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
                    let inherited = Inherited {
                        mark: m.mark(),
                        epoch: m.epoch,
                    };
                    (inherited.mark.writer, inherited)
                })
                .collect(),
        });
        self.node
            .create(
                ChunkHandle(r.handle),
                ChunkVersion(r.version),
                r.capacity,
                role,
            )
            .await?;
        Ok(Response::new(CreateReplicaResponse {}))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let r = request.into_inner();
        let (arrived, bytes) = (std::time::Instant::now(), r.frames.len());
        let out = self
            .node
            .append(
                ChunkHandle(r.handle),
                ChunkVersion(r.version),
                r.frames,
                r.acked_through,
                r.writer_epoch,
            )
            .await?;
        self.metrics
            .appended(out.offsets.len(), bytes, arrived.elapsed());
        let status = match out.status {
            AppendStatus::Ok => cairn_proto::v1::AppendStatus::Ok,
            AppendStatus::ChunkFull => cairn_proto::v1::AppendStatus::ChunkFull,
            AppendStatus::OutOfOrder => cairn_proto::v1::AppendStatus::OutOfOrder,
        };
        Ok(Response::new(AppendResponse {
            status: status as i32,
            offsets: out.offsets.into_iter().map(u64::from).collect(),
            unverified: out.unverified,
            commit_offset: out.commit_offset.into(),
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
                ChunkVersion(r.version),
                ChunkOffset(r.offset),
                r.frames,
                ChunkOffset(r.commit_offset),
            )
            .await?;
        Ok(Response::new(ForwardResponse {
            durable_length: durable_length.into(),
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let r = request.into_inner();
        let out = self
            .node
            .read(
                ChunkHandle(r.handle),
                ChunkOffset(r.offset),
                r.max_bytes,
                r.wait_ms,
            )
            .await?;
        Ok(Response::new(ReadResponse {
            offset: out.offset.into(),
            data: out.data,
            readable_end: out.readable_end.into(),
            sealed: out.sealed,
            version: out.version.into(),
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
            .fence(ChunkHandle(r.handle), ChunkVersion(r.new_version))
            .await?;
        Ok(Response::new(FenceResponse {
            durable_length: out.state.len,
            version: out.state.version.into(),
            sealed: out.state.sealed,
            writer_marks: out
                .writer_marks
                .into_iter()
                .map(|m| WriterMark::with_epoch(m, 0))
                .collect(),
            marks_through: out.marks_through.into(),
            primary_commit_offset: out.primary_commit.map_or(0, u64::from),
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %ChunkHandle(request.get_ref().handle)))]
    async fn seal(&self, request: Request<SealRequest>) -> Result<Response<SealResponse>, Status> {
        let r = request.into_inner();
        let state = self
            .node
            .seal(ChunkHandle(r.handle), ChunkVersion(r.version), r.length)
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
                ChunkVersion(r.version),
                r.length,
                r.capacity,
                &r.source,
            )
            .await;
        self.metrics
            .copied(done.as_ref().ok().map(|d| d.copied_bytes));
        let done = done.map_err(|e| match e {
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
            version: c.version.into(),
            length: c.length,
            crc32: c.crc32,
        }))
    }
}
