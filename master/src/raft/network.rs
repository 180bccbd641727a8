//! Raft between masters over gRPC (`cairn.v1.MasterPeer`): [`PeerNetwork`] makes openraft's
//! clients, one per peer, on the process's [`Connector`] (so TLS, the in-memory network and the
//! simulator's network carry them like every other call); [`PeerService`] answers them with
//! the local [`openraft::Raft`].
//!
//! Each message is openraft's request or answer as JSON in `RaftMessage.json`; a snapshot
//! piece's bytes go in `RaftMessage.data`, not inside the JSON (where each byte would become a
//! number). An answer is the JSON of `Result<response, RaftError>`: a Raft error travels back
//! as itself, and only a failure to deliver is a gRPC error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::net::{Connector, Link};
use cairn_proto::v1::RaftMessage;
use cairn_proto::v1::master_peer_client::MasterPeerClient;
use cairn_proto::v1::master_peer_server::MasterPeer;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::TypeConfig;

type NodeId = u64;

/// The largest `AppendEntries` message sent (JSON bytes): half of a gRPC message, so one
/// proposal ([`PROPOSAL_BYTES_MAX`](crate::limits::PROPOSAL_BYTES_MAX)) always fits.
pub(crate) const APPEND_ENTRIES_BYTES_MAX: usize = cairn_proto::GRPC_MESSAGE_BYTES_MAX / 2;

/// How long a peer gets to accept a connection.
pub(crate) const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes a [`PeerClient`] per peer (openraft's network factory).
#[derive(Clone)]
pub(crate) struct PeerNetwork {
    connector: Arc<dyn Connector>,
}

impl PeerNetwork {
    /// Peers reached through `connector`.
    pub(crate) fn new(connector: Arc<dyn Connector>) -> PeerNetwork {
        PeerNetwork { connector }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        // A bad address is not an error here (openraft could only ignore it): every call on
        // the client then fails as unreachable, naming it.
        let client = cairn_proto::net::endpoint(&node.addr, PEER_CONNECT_TIMEOUT)
            .map(|endpoint| MasterPeerClient::new(Link::lazy(self.connector.clone(), endpoint)))
            .map_err(|e| e.to_string());
        PeerClient { target, client }
    }
}

/// openraft's client of one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    client: Result<MasterPeerClient<Link>, String>,
}

/// Why a call to a peer failed.
type CallError<E> = RPCError<NodeId, BasicNode, E>;

impl PeerClient {
    /// Sends `message` with `send` and decodes the answer `Result<T, E>`.
    async fn call<T, E, F, Fut>(
        &mut self,
        message: RaftMessage,
        option: &RPCOption,
        send: F,
    ) -> Result<T, CallError<E>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(MasterPeerClient<Link>, Request<RaftMessage>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<RaftMessage>, Status>>,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(bad) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(bad.clone()),
                )));
            }
        };
        let mut request = Request::new(message);
        request.set_timeout(option.hard_ttl());
        let answer = send(client, request).await.map_err(|status| {
            if status.code() == tonic::Code::Unavailable
                || std::error::Error::source(&status).is_some()
            {
                RPCError::Unreachable(Unreachable::new(&status))
            } else {
                RPCError::Network(NetworkError::new(&status))
            }
        })?;
        let result: Result<T, E> = serde_json::from_slice(&answer.into_inner().json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// The JSON message of `value`.
fn message(value: &impl Serialize, data: Bytes) -> RaftMessage {
    RaftMessage {
        json: serde_json::to_vec(value)
            .expect("Raft messages always serialise to JSON")
            .into(),
        data,
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, CallError<RaftError<NodeId>>> {
        let message = message(&rpc, Bytes::new());
        if message.json.len() > APPEND_ENTRIES_BYTES_MAX && rpc.entries.len() > 1 {
            // openraft sends up to `max_payload_entries` entries at once, whatever their size:
            // ask it for fewer, so the message stays within what a master accepts.
            let fewer = (rpc.entries.len() / 2) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fewer),
            ));
        }
        self.call(message, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, CallError<RaftError<NodeId, InstallSnapshotError>>>
    {
        let data = Bytes::from(std::mem::take(&mut rpc.data));
        self.call(message(&rpc, data), &option, |mut c, r| async move {
            c.install_snapshot(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, CallError<RaftError<NodeId>>> {
        self.call(
            message(&rpc, Bytes::new()),
            &option,
            |mut c, r| async move { c.vote(r).await },
        )
        .await
    }
}

/// `cairn.v1.MasterPeer` over the local Raft node.
pub(crate) struct PeerService {
    raft: Raft<TypeConfig>,
}

impl PeerService {
    /// The service of `raft`.
    pub(crate) fn new(raft: Raft<TypeConfig>) -> PeerService {
        PeerService { raft }
    }
}

/// Decodes a request's JSON.
fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&message.json)
        .map_err(|e| Status::invalid_argument(format!("not a Raft message: {e}")))
}

/// The answer carrying `result`.
fn answer<T: Serialize, E: Serialize>(result: Result<T, E>) -> Response<RaftMessage> {
    Response::new(message(&result, Bytes::new()))
}

#[tonic::async_trait]
impl MasterPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        Ok(answer(self.raft.append_entries(rpc).await))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(request.get_ref())?;
        Ok(answer(self.raft.vote(rpc).await))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(&message)?;
        rpc.data = message.data.to_vec();
        Ok(answer(self.raft.install_snapshot(rpc).await))
    }
}
