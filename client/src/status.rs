//! The cluster's status as the master sees it (`cairn status`).

use cairn_proto::v1;

use crate::client::{Client, request};
use crate::error::Result;
use crate::limits::MASTER_CALL_TIMEOUT;

/// The master's `ClusterStatus` answer: chunkservers (liveness, last heartbeat, free space,
/// replicas held), namespace counts, chunks below their factor or with a corrupt replica, and
/// re-replication progress. It is the wire message itself (package `cairn.v1`, documented in
/// the repository's `proto/`): an operator's view, whose fields may grow.
pub type ClusterStatus = v1::ClusterStatusResponse;

pub use v1::{ChunkProblem, ChunkserverStatus, RepairCopy, RepairStatus};

impl Client {
    /// The cluster's status now.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        Ok(self
            .on_master(|mut master| {
                let req = v1::ClusterStatusRequest {};
                async move {
                    master
                        .cluster_status(request(req, MASTER_CALL_TIMEOUT))
                        .await
                }
            })
            .await
            .map_err(|s| self.master_error(s, ""))?
            .into_inner())
    }
}
