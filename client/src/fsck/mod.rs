//! Checking a log's replicas (`cairn fsck`): [`Client::fsck`] reads every replica the master
//! knows of each chunk of a log, checks its header, every frame, its version and length and
//! (sealed chunks) that the replicas hold the same bytes, reports corrupt replicas to the master
//! (which replaces them as it replaces any corrupt replica) and returns what it found as an
//! [`FsckReport`]. Printing it and the exit status are the caller's.
//!
//! Named after the command it serves, as the master's `fsck` module (the answers it gets) is;
//! the raw calls it builds on (every replica, raw reads, corrupt reports) are [`crate::check`].
//!
//! - `verdict`: the pure rules: a chunk's and each replica's health from what the master says
//!   and what reading found, the checksum vote among sealed replicas.
//! - `frame_check`: frame-by-frame checking of a replica's bytes as they arrive.
//! - `read`: reading one replica up to its readable end, checked and checksummed.

mod frame_check;
mod read;
mod verdict;

use cairn_record::{ChunkOffset, ChunkVersion};
use std::fmt;

use crate::check::{ChunkReplicas, CorruptReport, LogReplicas, ReplicaStatus};
use crate::client::Client;

use verdict::{ChunkFacts, classify};

/// What reading one replica found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadResult {
    /// Every byte up to the replica's readable end was read (or reading stopped at the first
    /// problem, which `bad` names).
    Done {
        /// The replica's version, as its chunkserver served it.
        version: ChunkVersion,
        /// Whether the chunkserver serves it as sealed.
        sealed: bool,
        /// Its readable end: the sealed length, or an open replica's commit offset.
        end: ChunkOffset,
        /// CRC-32 of bytes `[0, end)` (meaningful only when `bad` is `None`).
        crc32: u32,
        /// The first problem in its bytes.
        bad: Option<String>,
    },
    /// The chunkserver said the replica's bytes are damaged.
    DataLoss(String),
    /// No usable answer: the chunkserver is down, the replica is gone, a timeout.
    Failed(String),
}

impl ReadResult {
    /// The CRC-32 of a replica read whole without a problem.
    pub fn crc32(&self) -> Option<u32> {
        match self {
            ReadResult::Done {
                crc32, bad: None, ..
            } => Some(*crc32),
            _ => None,
        }
    }
}

/// One replica: what the master says of it and what reading it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// What the master says of the replica.
    pub master: ReplicaStatus,
    /// What reading it found.
    pub read: ReadResult,
    /// Bytes read and checked.
    pub bytes: u64,
}

/// A replica's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaHealth {
    /// Read whole, every check passed.
    Healthy,
    /// Old version, wrong length, not sealed, or a failed write.
    Stale,
    /// A bad frame or header, data loss, a checksum that differs from the majority's, or
    /// already marked corrupt at the master.
    Corrupt,
    /// Its chunkserver gave no usable answer.
    Unreachable,
}

impl ReplicaHealth {
    /// The status's name in `cairn fsck`'s output.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaHealth::Healthy => "healthy",
            ReplicaHealth::Stale => "stale",
            ReplicaHealth::Corrupt => "corrupt",
            ReplicaHealth::Unreachable => "unreachable",
        }
    }
}

/// The verdict on one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaVerdict {
    /// Its status.
    pub health: ReplicaHealth,
    /// Why, for anything but healthy.
    pub detail: String,
    /// A corrupt replica the master does not know about yet: report it.
    pub report: bool,
}

/// A chunk's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkHealth {
    /// At least the replication factor of healthy replicas, none corrupt or stale.
    Healthy,
    /// Fewer healthy replicas than the log's replication factor.
    UnderReplicated,
    /// Some replica stale.
    Stale,
    /// Some replica corrupt.
    Corrupt,
}

impl ChunkHealth {
    /// The status's name in `cairn fsck`'s output.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkHealth::Healthy => "healthy",
            ChunkHealth::UnderReplicated => "under-replicated",
            ChunkHealth::Stale => "stale",
            ChunkHealth::Corrupt => "corrupt",
        }
    }
}

/// The verdict on a chunk and on each of its replicas (in observation order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkVerdict {
    /// The chunk's status.
    pub health: ChunkHealth,
    /// Healthy replicas.
    pub verified: usize,
    /// Each replica's verdict.
    pub replicas: Vec<ReplicaVerdict>,
}

/// What reporting a corrupt replica to the master gave.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reported {
    /// The master marked it corrupt; its repair loop replaces it.
    Marked,
    /// The master did not mark it (the chunk's last good replica), and why.
    Refused(String),
    /// The report failed, and why.
    Failed(String),
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reported::Marked => f.write_str("reported to the master"),
            Reported::Refused(why) => write!(f, "the master did not mark it: {why}"),
            Reported::Failed(e) => write!(f, "reporting it to the master failed: {e}"),
        }
    }
}

/// One chunk's results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkReport {
    /// The chunk and every replica, as the master listed them.
    pub chunk: ChunkReplicas,
    /// Per replica (in `chunk.replicas` order): what reading it found.
    pub observations: Vec<Observation>,
    /// The verdicts.
    pub verdict: ChunkVerdict,
    /// Per replica: what reporting it to the master gave, if it was reported.
    pub reported: Vec<Option<Reported>>,
}

/// Counts over the whole log (more counts may be added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Chunks checked.
    pub chunks: usize,
    /// Replicas read.
    pub replicas_checked: usize,
    /// Bytes read and checked.
    pub bytes_verified: u64,
    /// Healthy chunks.
    pub healthy: usize,
    /// Under-replicated chunks.
    pub under_replicated: usize,
    /// Stale chunks.
    pub stale: usize,
    /// Corrupt chunks.
    pub corrupt: usize,
    /// Corrupt replicas reported to the master by this check.
    pub reported_corrupt: usize,
}

impl Summary {
    /// The counts of `reports`.
    pub fn of(reports: &[ChunkReport]) -> Summary {
        let mut s = Summary {
            chunks: reports.len(),
            ..Summary::default()
        };
        for r in reports {
            s.replicas_checked += r.observations.len();
            s.bytes_verified += r.observations.iter().map(|o| o.bytes).sum::<u64>();
            s.reported_corrupt += r.verdict.replicas.iter().filter(|v| v.report).count();
            match r.verdict.health {
                ChunkHealth::Healthy => s.healthy += 1,
                ChunkHealth::UnderReplicated => s.under_replicated += 1,
                ChunkHealth::Stale => s.stale += 1,
                ChunkHealth::Corrupt => s.corrupt += 1,
            }
        }
        s
    }

    /// Whether every chunk is healthy.
    pub fn ok(&self) -> bool {
        self.healthy == self.chunks
    }
}

/// What checking a log found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsckReport {
    /// The log's path.
    pub path: String,
    /// Replicas per chunk.
    pub replication: u32,
    /// Chunk capacity in bytes, header included.
    pub chunk_bytes: u64,
    /// Each chunk's results, in log order.
    pub chunks: Vec<ChunkReport>,
    /// The counts.
    pub summary: Summary,
}

/// About how many bytes [`Client::fsck`] reads for `log` (every replica up to its chunk's
/// length), for a progress bar.
pub fn bytes_to_read(log: &LogReplicas) -> u64 {
    log.chunks
        .iter()
        .map(|c| u64::from(c.length) * c.replicas.len() as u64)
        .sum()
}

impl Client {
    /// Checks every replica of every chunk of `log` (from [`Client::list_replicas`]): reads
    /// each one whole from its chunkserver, classifies chunks and replicas, and reports every
    /// corrupt replica the master does not know about yet. `progress` is called with the
    /// number of bytes of each read. A replica that cannot be read is a finding, not an error.
    pub async fn fsck(&self, log: LogReplicas, mut progress: impl FnMut(u64)) -> FsckReport {
        let mut chunks = Vec::with_capacity(log.chunks.len());
        for chunk in log.chunks {
            let mut observations = Vec::with_capacity(chunk.replicas.len());
            for r in &chunk.replicas {
                let (read, bytes) = read::read_replica(
                    self,
                    &r.address,
                    chunk.handle,
                    log.chunk_bytes,
                    &mut progress,
                )
                .await;
                observations.push(Observation {
                    master: r.clone(),
                    read,
                    bytes,
                });
            }
            let facts = ChunkFacts {
                state: chunk.state,
                version: chunk.version,
                length: chunk.length,
                replication: chunk.replication,
            };
            let verdict = classify(facts, &observations);
            let mut reported = Vec::with_capacity(observations.len());
            for (o, v) in observations.iter().zip(&verdict.replicas) {
                reported.push(if v.report {
                    let outcome = self
                        .report_corrupt(chunk.handle, &o.master.address, &v.detail)
                        .await;
                    Some(match outcome {
                        Ok(CorruptReport::Marked) => Reported::Marked,
                        Ok(CorruptReport::Refused(why)) => Reported::Refused(why),
                        Err(e) => Reported::Failed(e.to_string()),
                    })
                } else {
                    None
                });
            }
            chunks.push(ChunkReport {
                chunk,
                observations,
                verdict,
                reported,
            });
        }
        let summary = Summary::of(&chunks);
        FsckReport {
            path: log.path,
            replication: log.replication,
            chunk_bytes: log.chunk_bytes,
            chunks,
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ChunkState;
    use cairn_record::ChunkHandle;

    fn report(health: ChunkHealth, reports: &[bool], bytes: u64) -> ChunkReport {
        let status = ReplicaStatus {
            address: "a".into(),
            version: ChunkVersion(1),
            length: ChunkOffset(bytes),
            sealed: true,
            corrupt: false,
            failed: false,
            live: true,
            good: true,
            reported_corrupt: None,
        };
        ChunkReport {
            chunk: ChunkReplicas {
                index: 0,
                handle: ChunkHandle(1),
                state: ChunkState::Sealed,
                version: ChunkVersion(1),
                length: ChunkOffset(bytes),
                replication: 3,
                primary: None,
                replicas: vec![status.clone(); reports.len()],
            },
            observations: reports
                .iter()
                .map(|_| Observation {
                    master: status.clone(),
                    read: ReadResult::Failed("x".into()),
                    bytes,
                })
                .collect(),
            verdict: ChunkVerdict {
                health,
                verified: 0,
                replicas: reports
                    .iter()
                    .map(|&report| ReplicaVerdict {
                        health: ReplicaHealth::Corrupt,
                        detail: String::new(),
                        report,
                    })
                    .collect(),
            },
            reported: vec![None; reports.len()],
        }
    }

    #[test]
    fn the_summary_counts_chunks_by_health_and_is_ok_only_if_all_are_healthy() {
        // Proves: `Summary::of` counts replicas, bytes, reports and each chunk health, and
        // `ok` holds only when every chunk is healthy.
        let healthy = [
            report(ChunkHealth::Healthy, &[false; 3], 100),
            report(ChunkHealth::Healthy, &[false; 2], 10),
        ];
        let s = Summary::of(&healthy);
        assert_eq!(
            (s.chunks, s.replicas_checked, s.bytes_verified),
            (2, 5, 320)
        );
        assert_eq!((s.healthy, s.reported_corrupt), (2, 0));
        assert!(s.ok());
        let mixed = [
            report(ChunkHealth::Corrupt, &[true, false, true], 1),
            report(ChunkHealth::UnderReplicated, &[false], 1),
            report(ChunkHealth::Stale, &[false], 1),
            report(ChunkHealth::Healthy, &[false], 1),
        ];
        let s = Summary::of(&mixed);
        assert_eq!(
            (
                s.healthy,
                s.under_replicated,
                s.stale,
                s.corrupt,
                s.reported_corrupt
            ),
            (1, 1, 1, 1, 2)
        );
        assert!(!s.ok());
        assert!(Summary::of(&[]).ok());
    }

    #[test]
    fn report_outcomes_read_as_cairn_fsck_prints_them() {
        // Proves: each report outcome's text, which `cairn fsck` prints and its JSON carries.
        assert_eq!(Reported::Marked.to_string(), "reported to the master");
        assert_eq!(
            Reported::Refused("last good".into()).to_string(),
            "the master did not mark it: last good"
        );
        assert_eq!(
            Reported::Failed("down".into()).to_string(),
            "reporting it to the master failed: down"
        );
        let read = ReadResult::Done {
            version: ChunkVersion(1),
            sealed: true,
            end: ChunkOffset::FIRST_FRAME,
            crc32: 7,
            bad: None,
        };
        assert_eq!(read.crc32(), Some(7));
        let bad = ReadResult::Done {
            version: ChunkVersion(1),
            sealed: true,
            end: ChunkOffset::FIRST_FRAME,
            crc32: 7,
            bad: Some("bad".into()),
        };
        assert_eq!(bad.crc32(), None);
    }
}
