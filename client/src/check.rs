//! Calls for checkers (`cairn fsck`): every replica the master knows of, one replica's raw
//! bytes, and reporting a corrupt replica to the master (ARCHITECTURE.md, "Repair").

use bytes::Bytes;
use cairn_proto::v1;
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};

use crate::client::{ChunkState, Client, request};
use crate::error::{Code, Error, Result};
use crate::limits::{MASTER_CALL_TIMEOUT, READ_TIMEOUT};

/// One replica as the master sees it (its chunkserver's last report plus the master's marks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The chunkserver's address.
    pub address: String,
    /// The version it reported.
    pub version: ChunkVersion,
    /// The length it reported, header included.
    pub length: ChunkOffset,
    /// Whether it reported the replica sealed.
    pub sealed: bool,
    /// Reported corrupt by its chunkserver, or marked so by a checker.
    pub corrupt: bool,
    /// Its chunkserver reported a failed fsync on it.
    pub failed: bool,
    /// The chunkserver was heard from recently.
    pub live: bool,
    /// The master counts it (sealed: good; open: current and healthy).
    pub good: bool,
    /// What a checker reported, if the master holds a corrupt mark from one.
    pub reported_corrupt: Option<String>,
}

/// One chunk with every replica the master knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkReplicas {
    /// Position in the log, from 0.
    pub index: u32,
    /// The chunk's handle.
    pub handle: ChunkHandle,
    /// Open or sealed.
    pub state: ChunkState,
    /// The master's version of the chunk.
    pub version: ChunkVersion,
    /// Sealed: the sealed length. Open: the largest length a replica reported.
    pub length: ChunkOffset,
    /// The log's replication factor.
    pub replication: u32,
    /// Open chunks: the fixed primary.
    pub primary: Option<String>,
    /// Sorted by address.
    pub replicas: Vec<ReplicaStatus>,
}

/// A log's options and every replica of each of its chunks, in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogReplicas {
    /// The log's path.
    pub path: String,
    /// Replicas per chunk.
    pub replication: u32,
    /// Chunk capacity in bytes, header included.
    pub chunk_bytes: u64,
    /// The chunks in order.
    pub chunks: Vec<ChunkReplicas>,
}

/// Bytes of one replica as its chunkserver served them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaBytes {
    /// File offset of `data`.
    pub offset: ChunkOffset,
    /// The bytes.
    pub data: Bytes,
    /// Bytes below this are readable: the sealed length, or an open chunk's commit offset.
    pub readable_end: ChunkOffset,
    /// Whether the replica is sealed.
    pub sealed: bool,
    /// The replica's version.
    pub version: ChunkVersion,
}

/// What the master did with a corrupt-replica report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptReport {
    /// The replica is marked corrupt; the master will replace it.
    Marked,
    /// Not marked (it is the chunk's last good replica), and why.
    Refused(String),
}

fn state(s: i32) -> ChunkState {
    if s == v1::ChunkState::Sealed as i32 {
        ChunkState::Sealed
    } else {
        ChunkState::Open
    }
}

/// A chunkserver as [`Client::list_chunkservers`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkserverInfo {
    /// Its advertised address.
    pub address: String,
    /// Heard from within the master's dead-after period.
    pub live: bool,
    /// Replicas it holds, as the master knows them.
    pub replicas: u32,
}

impl Client {
    /// Every chunkserver registered since the master started, in address order, live or not.
    pub async fn list_chunkservers(&self) -> Result<Vec<ChunkserverInfo>> {
        let r = self
            .on_master(|mut master| {
                let req = v1::ListChunkserversRequest {};
                async move {
                    master
                        .list_chunkservers(request(req, MASTER_CALL_TIMEOUT))
                        .await
                }
            })
            .await
            .map_err(|s| self.master_error(s, ""))?
            .into_inner();
        Ok(r.chunkservers
            .into_iter()
            .map(|c| ChunkserverInfo {
                address: c.address,
                live: c.live,
                replicas: c.replicas,
            })
            .collect())
    }

    /// Every replica the master knows of each chunk of `path`, whatever its state.
    /// [`Error::LogNotFound`] if absent.
    pub async fn list_replicas(&self, path: &str) -> Result<LogReplicas> {
        let req = v1::ListReplicasRequest {
            path: path.to_owned(),
        };
        let r = self
            .on_master(|mut master| {
                let req = req.clone();
                async move {
                    master
                        .list_replicas(request(req, MASTER_CALL_TIMEOUT))
                        .await
                }
            })
            .await
            .map_err(|s| self.master_error(s, path))?
            .into_inner();
        let mut chunks: Vec<ChunkReplicas> = r
            .chunks
            .into_iter()
            .map(|c| ChunkReplicas {
                index: c.index,
                handle: ChunkHandle(c.handle),
                state: state(c.state),
                version: ChunkVersion(c.version),
                length: ChunkOffset(c.length),
                replication: c.replication,
                primary: (!c.primary.is_empty()).then_some(c.primary),
                replicas: c
                    .replicas
                    .into_iter()
                    .map(|r| ReplicaStatus {
                        address: r.address,
                        version: ChunkVersion(r.version),
                        length: ChunkOffset(r.length),
                        sealed: r.sealed,
                        corrupt: r.corrupt,
                        failed: r.failed,
                        live: r.live,
                        good: r.good,
                        reported_corrupt: (!r.reported_corrupt.is_empty())
                            .then_some(r.reported_corrupt),
                    })
                    .collect(),
            })
            .collect();
        chunks.sort_by_key(|c| c.index);
        Ok(LogReplicas {
            path: r.path,
            replication: r.replication,
            chunk_bytes: r.chunk_bytes,
            chunks,
        })
    }

    /// Reports `address`'s replica of `handle` corrupt, with what was found. The master marks
    /// it (its repair loop then replaces it) unless it is the chunk's last good replica.
    pub async fn report_corrupt(
        &self,
        handle: ChunkHandle,
        address: &str,
        detail: &str,
    ) -> Result<CorruptReport> {
        let req = v1::ReportCorruptRequest {
            handle: handle.0,
            address: address.to_owned(),
            detail: detail.to_owned(),
        };
        let r = self
            .on_master(|mut master| {
                let req = req.clone();
                async move {
                    master
                        .report_corrupt(request(req, MASTER_CALL_TIMEOUT))
                        .await
                }
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => Error::Rpc {
                    code: Code::NotFound,
                    message: s.message().to_owned(),
                },
                _ => self.master_error(s, ""),
            })?
            .into_inner();
        Ok(if r.marked {
            CorruptReport::Marked
        } else {
            CorruptReport::Refused(r.reason)
        })
    }

    /// Up to `max_bytes` of `address`'s replica of `handle` from `offset`, as stored: no
    /// verification, no retry, no other replica. A chunkserver that knows its replica is
    /// damaged answers [`Error::Rpc`] with [`Code::DataLoss`].
    pub async fn read_replica(
        &self,
        address: &str,
        handle: ChunkHandle,
        offset: ChunkOffset,
        max_bytes: u32,
    ) -> Result<ReplicaBytes> {
        let req = v1::ReadRequest {
            handle: handle.0,
            offset: offset.into(),
            max_bytes,
            wait_ms: 0,
        };
        let r = self
            .chunkserver(address)?
            .read(request(req, READ_TIMEOUT))
            .await
            .map_err(|s| Error::from_chunkserver(s, address))?
            .into_inner();
        Ok(ReplicaBytes {
            offset: ChunkOffset(r.offset),
            data: r.data,
            readable_end: ChunkOffset(r.readable_end),
            sealed: r.sealed,
            version: ChunkVersion(r.version),
        })
    }
}

impl Error {
    /// Whether a chunkserver said its replica's bytes are damaged (`DATA_LOSS`).
    pub fn is_data_loss(&self) -> bool {
        matches!(
            self,
            Error::Rpc {
                code: Code::DataLoss,
                ..
            }
        )
    }
}
