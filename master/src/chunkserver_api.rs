//! The chunkserver RPCs the master makes, free of gRPC types: the [`ChunkserverApi`] trait and
//! the requests and answers it carries. `service.rs` implements it with real RPCs; tests use
//! fakes. The master's core, the repair loop and salvage all drive chunkservers through it.

use std::collections::BTreeMap;
use std::future::Future;

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, WriterId};

use crate::meta::WriterMark;

/// `CreateReplica` as the master sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateReplica {
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
    pub(crate) capacity: u64,
    pub(crate) primary: bool,
    pub(crate) secondaries: Vec<String>,
    pub(crate) writer_marks: Vec<WriterMark>,
    /// Primary only: the epochs of the log's resumed writers.
    pub(crate) writer_epochs: BTreeMap<WriterId, u64>,
}

/// A replica's answer to `Fence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fenced {
    pub(crate) length: ChunkOffset,
    pub(crate) version: ChunkVersion,
    pub(crate) sealed: bool,
    pub(crate) marks: Vec<WriterMark>,
    /// The commit offset the marks cover (`FenceResponse.marks_through`).
    pub(crate) marks_through: ChunkOffset,
    /// The primary's commit offset, when the primary answered in its role
    /// (`FenceResponse.primary_commit_offset`; 0 on the wire is `None`).
    pub(crate) primary_commit: Option<ChunkOffset>,
}

/// `Replicate` as the master sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Replicate {
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
    pub(crate) length: ChunkOffset,
    pub(crate) capacity: u64,
    pub(crate) source: String,
}

/// Why a chunkserver RPC failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RpcError {
    /// The chunkserver has no such replica.
    NotFound,
    /// Anything else (unreachable, timeout, refused).
    Other(String),
}

/// Why a copy failed, as far as the repair loop acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CopyError {
    /// The target found the source's bytes bad (`DATA_LOSS` from `Replicate`: a bad frame, a
    /// read the source answered `DATA_LOSS`, or a whole-replica checksum that differs).
    SourceCorrupt(String),
    /// Anything else (unreachable, timed out, refused, the target's own fault).
    Rpc(RpcError),
}

impl From<RpcError> for CopyError {
    fn from(e: RpcError) -> CopyError {
        CopyError::Rpc(e)
    }
}

/// The chunkserver RPCs the master makes. Each call is bounded by the master's RPC timeout.
pub(crate) trait ChunkserverApi: Send + Sync + 'static {
    /// Asks `address` to create an empty replica as `request` describes.
    fn create_replica(
        &self,
        address: String,
        request: CreateReplica,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// Asks `address` to refuse `handle`'s older versions from now on and to report its
    /// durable length and writer marks.
    fn fence(
        &self,
        address: String,
        handle: ChunkHandle,
        new_version: ChunkVersion,
    ) -> impl Future<Output = Result<Fenced, RpcError>> + Send;
    /// Asks `address` to seal its replica of `handle` at `version`, cut to `length`.
    fn seal(
        &self,
        address: String,
        handle: ChunkHandle,
        version: ChunkVersion,
        length: ChunkOffset,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// Asks `address` to bring its replica to the sealed `job` by copying from `job.source`;
    /// returns the bytes copied. Bounded by `timeout`, not the RPC timeout (copies are long).
    /// [`CopyError::SourceCorrupt`] when the target found the source's bytes bad.
    fn replicate(
        &self,
        address: String,
        job: Replicate,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<u64, CopyError>> + Send;
    /// Asks `address` to delete its replica of `handle` (a replica marked corrupt by a checker,
    /// before a repair copies the chunk onto the same chunkserver).
    fn delete_replica(
        &self,
        address: String,
        handle: ChunkHandle,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
}
