//! The chunkserver's view of its peers: what a primary and a repair copy ask of other
//! chunkservers, as a trait ([`PeerApi`]) so that the node does not depend on how the calls
//! travel. [`GrpcPeers`] is the gRPC implementation, over the process's
//! [`Connector`](cairn_proto::net::Connector).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::GRPC_MESSAGE_BYTES_MAX;
use cairn_proto::net::{Connector, Link, endpoint};
use cairn_proto::v1::chunkserver_client::ChunkserverClient;
use cairn_proto::v1::{ChecksumRequest, ForwardRequest, ReadRequest};
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};
use tonic::Status;

use crate::error::{Error, Result};
use crate::replicate::Checksum;

/// A boxed future of a peer call, not borrowing the caller.
pub(crate) type PeerCall<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a peer's `Read` answered.
#[derive(Clone, Debug)]
pub(crate) struct PeerRead {
    /// File offset of `data`.
    pub(crate) offset: u64,
    /// The bytes.
    pub(crate) data: Bytes,
    /// Bytes below this are readable on the peer.
    pub(crate) readable_end: u64,
    /// The peer's replica is sealed.
    pub(crate) sealed: bool,
    /// The peer's replica version.
    pub(crate) version: ChunkVersion,
}

/// Calls to other chunkservers. Each call is bound to the connection of the moment it is made
/// and starts when its future is first polled.
pub(crate) trait PeerApi: Send + Sync + 'static {
    /// `Forward`: the primary's bytes for `peer`'s replica at `offset`; resolves to the peer's
    /// durable length ([`Error::Forward`] on failure).
    fn forward(
        &self,
        peer: &str,
        handle: ChunkHandle,
        version: ChunkVersion,
        offset: ChunkOffset,
        frames: Bytes,
        commit_offset: ChunkOffset,
    ) -> PeerCall<Result<ChunkOffset>>;

    /// `Read` of at most `max_bytes` at `offset`, without waiting; the peer's status as is.
    fn read(
        &self,
        peer: &str,
        handle: ChunkHandle,
        offset: u64,
        max_bytes: u32,
    ) -> PeerCall<std::result::Result<PeerRead, Status>>;

    /// `Checksum` of the peer's sealed replica; the peer's status as is.
    fn checksum(
        &self,
        peer: &str,
        handle: ChunkHandle,
    ) -> PeerCall<std::result::Result<Checksum, Status>>;
}

/// [`PeerApi`] over gRPC: one [`Link`] per peer (a lazily connected channel that dials anew
/// after a call timed out or broke in it, so a half-open connection holds no more than one
/// call's deadline), each call bounded by the RPC timeout.
pub(crate) struct GrpcPeers {
    connector: Arc<dyn Connector>,
    clients: Mutex<HashMap<String, ChunkserverClient<Link>>>,
    timeout: Duration,
}

impl GrpcPeers {
    /// No connections yet; channels are made by `connector`, each call times out after
    /// `timeout`.
    pub(crate) fn new(connector: Arc<dyn Connector>, timeout: Duration) -> GrpcPeers {
        GrpcPeers {
            connector,
            clients: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn client(&self, peer: &str) -> Result<ChunkserverClient<Link>> {
        let mut clients = self.clients.lock().expect("peers lock poisoned");
        if let Some(c) = clients.get(peer) {
            return Ok(c.clone());
        }
        let c = ChunkserverClient::new(link(self.connector.clone(), peer, self.timeout)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        clients.insert(peer.to_owned(), c.clone());
        Ok(c)
    }
}

/// A [`Link`] to any of the comma-separated addresses `list`, starting with the first, whose
/// calls time out after `timeout`.
pub(crate) fn link_among(
    connector: Arc<dyn Connector>,
    list: &str,
    timeout: Duration,
) -> Result<Link> {
    let endpoints: Vec<_> = cairn_proto::net::endpoints(list, timeout)
        .map_err(|e| Error::InvalidRequest {
            reason: e.to_string(),
        })?
        .into_iter()
        .map(|e| e.timeout(timeout))
        .collect();
    let first = connector.lazy(endpoints[0].clone());
    Ok(Link::among(connector, endpoints, 0, first))
}

/// A [`Link`] to `addr` whose calls time out after `timeout`.
pub(crate) fn link(connector: Arc<dyn Connector>, addr: &str, timeout: Duration) -> Result<Link> {
    let endpoint = endpoint(addr, timeout).map_err(|e| Error::InvalidRequest {
        reason: e.to_string(),
    })?;
    Ok(Link::lazy(connector, endpoint.timeout(timeout)))
}

impl PeerApi for GrpcPeers {
    fn forward(
        &self,
        peer: &str,
        handle: ChunkHandle,
        version: ChunkVersion,
        offset: ChunkOffset,
        frames: Bytes,
        commit_offset: ChunkOffset,
    ) -> PeerCall<Result<ChunkOffset>> {
        let client = self.client(peer);
        let peer = peer.to_owned();
        Box::pin(async move {
            let req = ForwardRequest {
                handle: handle.0,
                version: version.into(),
                offset: offset.into(),
                frames,
                commit_offset: commit_offset.into(),
            };
            let resp = client?.forward(req).await.map_err(|s| Error::Forward {
                handle,
                peer,
                message: format!("{:?}: {}", s.code(), s.message()),
            })?;
            Ok(ChunkOffset(resp.into_inner().durable_length))
        })
    }

    fn read(
        &self,
        peer: &str,
        handle: ChunkHandle,
        offset: u64,
        max_bytes: u32,
    ) -> PeerCall<std::result::Result<PeerRead, Status>> {
        let client = self.client(peer);
        Box::pin(async move {
            let mut client = client.map_err(Status::from)?;
            let r = client
                .read(ReadRequest {
                    handle: handle.0,
                    offset,
                    max_bytes,
                    wait_ms: 0,
                })
                .await?
                .into_inner();
            Ok(PeerRead {
                offset: r.offset,
                data: r.data,
                readable_end: r.readable_end,
                sealed: r.sealed,
                version: ChunkVersion(r.version),
            })
        })
    }

    fn checksum(
        &self,
        peer: &str,
        handle: ChunkHandle,
    ) -> PeerCall<std::result::Result<Checksum, Status>> {
        let client = self.client(peer);
        Box::pin(async move {
            let mut client = client.map_err(Status::from)?;
            let r = client
                .checksum(ChecksumRequest { handle: handle.0 })
                .await?
                .into_inner();
            Ok(Checksum {
                version: ChunkVersion(r.version),
                length: r.length,
                crc32: r.crc32,
            })
        })
    }
}
