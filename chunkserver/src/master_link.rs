//! The chunkserver's view of the master: registration and heartbeats, as a trait
//! ([`MasterApi`]) so that the heartbeat loop does not depend on how the calls travel.
//! [`GrpcMaster`] is the gRPC implementation, over the process's
//! [`Connector`](cairn_proto::net::Connector).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::GRPC_MESSAGE_BYTES_MAX;
use cairn_proto::net::{Connector, Link};
use cairn_proto::v1::master_client::MasterClient;
use cairn_proto::v1::{HeartbeatRequest, RegisterRequest, ReplicaReport};
use cairn_record::ChunkHandle;
use tonic::Status;

use crate::error::{Error, Result};
use crate::peers::link_among;
use crate::store::ReplicaState;

/// A boxed future of a call to the master, borrowing the caller.
pub(crate) type MasterCall<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

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

/// Calls to the master. Each replica is reported with whether this process holds its primary
/// role.
pub(crate) trait MasterApi: Send + Sync + 'static {
    /// `RegisterChunkserver` with every replica's state, presenting `cluster_id` (0: none yet).
    fn register<'a>(
        &'a self,
        address: &'a str,
        replicas: &'a [(ReplicaState, bool)],
        free_bytes: u64,
        cluster_id: u64,
    ) -> MasterCall<'a, Registered>;

    /// `Heartbeat` with every replica's state.
    fn heartbeat<'a>(
        &'a self,
        address: &'a str,
        replicas: &'a [(ReplicaState, bool)],
        free_bytes: u64,
    ) -> MasterCall<'a, HeartbeatReply>;
}

/// [`MasterApi`] over gRPC: one [`Link`] (a lazily connected channel that dials anew after a
/// call timed out or broke in it), each call bounded by the RPC timeout. Without the new dial, a
/// connection left half-open by a network fault holds every heartbeat until HTTP/2 keep-alive
/// gives up on it, and the master takes the chunkserver for dead meanwhile.
pub(crate) struct GrpcMaster {
    master: String,
    client: MasterClient<Link>,
    /// How many masters `master` names.
    masters: usize,
}

impl GrpcMaster {
    /// A client of the master at `master` (`HOST:PORT`, or a comma-separated list of a
    /// group's masters, tried in turn), connected by `connector` on first use.
    pub(crate) fn new(
        connector: Arc<dyn Connector>,
        master: &str,
        timeout: Duration,
    ) -> Result<GrpcMaster> {
        let client = MasterClient::new(link_among(connector, master, timeout)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        Ok(GrpcMaster {
            master: master.to_owned(),
            client,
            masters: master.split(',').count(),
        })
    }

    fn client(&self) -> MasterClient<Link> {
        self.client.clone()
    }

    /// Calls with `call`, and at once again on the next master (the link moves on by itself)
    /// while the one reached answers that it does not lead its group or refuses the
    /// connection, once per master at most: a heartbeat reaches the leader of a group without
    /// waiting for its backoff.
    async fn to_leader<T, F, Fut>(&self, mut call: F) -> std::result::Result<T, Status>
    where
        F: FnMut(MasterClient<Link>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Status>>,
    {
        let mut tries = 0;
        loop {
            match call(self.client()).await {
                Err(s) if tries + 1 < self.masters && moves_on(&s) => tries += 1,
                result => return result,
            }
        }
    }

    /// The error for `s`.
    fn error(&self, s: Status) -> Error {
        Error::Master {
            master: self.master.clone(),
            message: format!("{:?}: {}", s.code(), s.message()),
        }
    }
}

impl MasterApi for GrpcMaster {
    fn register<'a>(
        &'a self,
        address: &'a str,
        replicas: &'a [(ReplicaState, bool)],
        free_bytes: u64,
        cluster_id: u64,
    ) -> MasterCall<'a, Registered> {
        Box::pin(async move {
            let req = RegisterRequest {
                address: address.to_owned(),
                replicas: replicas.iter().map(report).collect(),
                free_bytes,
                cluster_id,
            };
            let resp = self
                .to_leader(|mut c| {
                    let req = req.clone();
                    async move { c.register_chunkserver(req).await }
                })
                .await;
            let resp = resp.map_err(|s| self.error(s))?.into_inner();
            Ok(Registered {
                delete: resp.delete.into_iter().map(ChunkHandle).collect(),
                heartbeat_ms: resp.heartbeat_ms as u64,
                cluster_id: resp.cluster_id,
            })
        })
    }

    fn heartbeat<'a>(
        &'a self,
        address: &'a str,
        replicas: &'a [(ReplicaState, bool)],
        free_bytes: u64,
    ) -> MasterCall<'a, HeartbeatReply> {
        Box::pin(async move {
            let req = HeartbeatRequest {
                address: address.to_owned(),
                replicas: replicas.iter().map(report).collect(),
                free_bytes,
            };
            let resp = self
                .to_leader(|mut c| {
                    let req = req.clone();
                    async move { c.heartbeat(req).await }
                })
                .await;
            let resp = resp.map_err(|s| self.error(s))?.into_inner();
            Ok(HeartbeatReply {
                delete: resp.delete.into_iter().map(ChunkHandle).collect(),
                reregister: resp.reregister,
            })
        })
    }
}

fn report((s, primary): &(ReplicaState, bool)) -> ReplicaReport {
    ReplicaReport {
        handle: s.handle.0,
        version: s.version.into(),
        length: s.len,
        sealed: s.sealed,
        failed: s.failed,
        corrupt: !s.corrupt.is_empty(),
        primary: *primary,
    }
}

/// Whether a master call failed without reaching a master that could serve it: the master
/// does not lead its group, or its connection was refused.
fn moves_on(status: &Status) -> bool {
    cairn_proto::net::not_leader(status) || cairn_proto::net::connection_refused(status)
}
