//! The pure rules of a check: a chunk's and each replica's health from what the master says of
//! them and what reading them found, and the checksum vote among sealed replicas.

use cairn_record::{ChunkOffset, ChunkVersion};
use std::collections::HashMap;

use crate::client::ChunkState;
use crate::fsck::{
    ChunkHealth, ChunkVerdict, Observation, ReadResult, ReplicaHealth, ReplicaVerdict,
};

/// What the master says of a chunk, as far as the verdicts need it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkFacts {
    /// Open or sealed.
    pub(crate) state: ChunkState,
    /// The master's version of the chunk.
    pub(crate) version: ChunkVersion,
    /// Sealed chunks: the sealed length.
    pub(crate) length: ChunkOffset,
    /// The log's replication factor.
    pub(crate) replication: u32,
}

fn verdict(health: ReplicaHealth, detail: impl Into<String>, report: bool) -> ReplicaVerdict {
    ReplicaVerdict {
        health,
        detail: detail.into(),
        report,
    }
}

/// Classifies a chunk's replicas from what the master says and what reading them found.
pub(crate) fn classify(chunk: ChunkFacts, observations: &[Observation]) -> ChunkVerdict {
    let sealed_chunk = chunk.state == ChunkState::Sealed;
    let mut replicas: Vec<ReplicaVerdict> = observations
        .iter()
        .map(|o| {
            // Known to the master already (its chunkserver's report or an earlier check):
            // nothing new to report.
            let unknown = !o.master.corrupt;
            match &o.read {
                ReadResult::Failed(e) => verdict(ReplicaHealth::Unreachable, e.clone(), false),
                ReadResult::DataLoss(e) => verdict(
                    ReplicaHealth::Corrupt,
                    format!("its chunkserver reports data loss: {e}"),
                    unknown,
                ),
                ReadResult::Done { bad: Some(b), .. } => {
                    verdict(ReplicaHealth::Corrupt, b.clone(), unknown)
                }
                ReadResult::Done {
                    version,
                    sealed,
                    end,
                    ..
                } => {
                    if o.master.corrupt {
                        let detail = match &o.master.reported_corrupt {
                            Some(d) => format!("marked corrupt at the master: {d}"),
                            None => "reported corrupt by its chunkserver".to_owned(),
                        };
                        verdict(ReplicaHealth::Corrupt, detail, false)
                    } else if o.master.failed {
                        verdict(
                            ReplicaHealth::Stale,
                            "its chunkserver reports a failed write",
                            false,
                        )
                    } else if sealed_chunk && *version != chunk.version {
                        verdict(
                            ReplicaHealth::Stale,
                            format!("version {version}, the chunk's is {}", chunk.version),
                            false,
                        )
                    } else if sealed_chunk && !sealed {
                        verdict(ReplicaHealth::Stale, "not sealed", false)
                    } else if sealed_chunk && *end != chunk.length {
                        verdict(
                            ReplicaHealth::Stale,
                            format!("length {end}, the sealed length is {}", chunk.length),
                            false,
                        )
                    } else if !sealed_chunk && *version < chunk.version {
                        verdict(
                            ReplicaHealth::Stale,
                            format!("version {version}, the chunk's is {}", chunk.version),
                            false,
                        )
                    } else {
                        verdict(ReplicaHealth::Healthy, "", false)
                    }
                }
            }
        })
        .collect();
    if sealed_chunk {
        compare_checksums(observations, &mut replicas);
    }
    let verified = replicas
        .iter()
        .filter(|v| v.health == ReplicaHealth::Healthy)
        .count();
    let any = |h: ReplicaHealth| replicas.iter().any(|v| v.health == h);
    let health = if any(ReplicaHealth::Corrupt) {
        ChunkHealth::Corrupt
    } else if verified < chunk.replication as usize {
        ChunkHealth::UnderReplicated
    } else if any(ReplicaHealth::Stale) {
        ChunkHealth::Stale
    } else {
        ChunkHealth::Healthy
    };
    ChunkVerdict {
        health,
        verified,
        replicas,
    }
}

/// Sealed replicas that passed every other check must hold the same bytes: one whose CRC-32
/// differs from a strict majority's is corrupt; with no majority, none can be trusted (and none
/// is reported: fsck cannot tell which is right).
fn compare_checksums(observations: &[Observation], replicas: &mut [ReplicaVerdict]) {
    let crc_of = |o: &Observation| match o.read {
        ReadResult::Done { crc32, .. } => Some(crc32),
        _ => None,
    };
    let mut counts: HashMap<u32, usize> = HashMap::new();
    let mut candidates = 0;
    for (o, v) in observations.iter().zip(replicas.iter()) {
        if v.health == ReplicaHealth::Healthy
            && let Some(crc) = crc_of(o)
        {
            *counts.entry(crc).or_default() += 1;
            candidates += 1;
        }
    }
    if counts.len() <= 1 {
        return;
    }
    let majority = counts
        .iter()
        .find(|(_, n)| **n * 2 > candidates)
        .map(|(crc, n)| (*crc, *n));
    for (o, v) in observations.iter().zip(replicas.iter_mut()) {
        if v.health != ReplicaHealth::Healthy {
            continue;
        }
        let Some(crc) = crc_of(o) else { continue };
        match majority {
            Some((m, _)) if m == crc => {}
            Some((m, n)) => {
                *v = verdict(
                    ReplicaHealth::Corrupt,
                    format!(
                        "checksum {crc:08x} differs from {m:08x} of {n} of {candidates} replicas"
                    ),
                    !o.master.corrupt,
                );
            }
            None => {
                *v = verdict(
                    ReplicaHealth::Corrupt,
                    format!(
                        "checksum {crc:08x}: the {candidates} sealed replicas disagree and no checksum has a majority"
                    ),
                    false,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::ReplicaStatus;
    use crate::fsck::{ChunkHealth, ReadResult};

    const SEALED: ChunkFacts = ChunkFacts {
        state: ChunkState::Sealed,
        version: ChunkVersion(2),
        length: ChunkOffset(4096),
        replication: 3,
    };

    fn status(address: &str) -> ReplicaStatus {
        ReplicaStatus {
            address: address.to_owned(),
            version: ChunkVersion(2),
            length: ChunkOffset(4096),
            sealed: true,
            corrupt: false,
            failed: false,
            live: true,
            good: true,
            reported_corrupt: None,
        }
    }

    fn read_ok(crc32: u32) -> ReadResult {
        done(ChunkVersion(2), true, 4096, crc32, None)
    }

    fn done(
        version: ChunkVersion,
        sealed: bool,
        end: u64,
        crc32: u32,
        bad: Option<&str>,
    ) -> ReadResult {
        ReadResult::Done {
            version,
            sealed,
            end: ChunkOffset(end),
            crc32,
            bad: bad.map(str::to_owned),
        }
    }

    fn obs(address: &str, read: ReadResult) -> Observation {
        Observation {
            master: status(address),
            read,
            bytes: 4096,
        }
    }

    fn healths(v: &ChunkVerdict) -> Vec<ReplicaHealth> {
        v.replicas.iter().map(|r| r.health).collect()
    }

    use ReplicaHealth::{Corrupt, Healthy, Stale, Unreachable};

    #[test]
    fn three_equal_replicas_are_healthy() {
        // Proves: three sealed replicas with one checksum make a healthy chunk and report nothing.
        let o = [
            obs("a", read_ok(7)),
            obs("b", read_ok(7)),
            obs("c", read_ok(7)),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(v.health, ChunkHealth::Healthy);
        assert_eq!(v.verified, 3);
        assert!(v.replicas.iter().all(|r| !r.report));
    }

    #[test]
    fn a_bad_frame_is_corrupt_and_reported_once() {
        // Proves: a bad frame makes its replica corrupt and reported, but not again once the master has marked it.
        let bad = done(
            ChunkVersion(2),
            true,
            4096,
            9,
            Some("bad frame at offset 64 (40 bytes)"),
        );
        let o = [
            obs("a", read_ok(7)),
            obs("b", bad.clone()),
            obs("c", read_ok(7)),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(v.health, ChunkHealth::Corrupt);
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Healthy]);
        assert!(v.replicas[1].report);
        assert_eq!(v.verified, 2);
        // Already marked at the master: still corrupt, not reported again.
        let mut marked = obs("b", read_ok(7));
        marked.master.corrupt = true;
        marked.master.reported_corrupt = Some("bad frame".into());
        let v = classify(
            SEALED,
            &[obs("a", read_ok(7)), marked, obs("c", read_ok(7))],
        );
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Healthy]);
        assert!(!v.replicas[1].report);
        let mut known = obs("b", bad);
        known.master.corrupt = true;
        let v = classify(SEALED, &[obs("a", read_ok(7)), known]);
        assert!(!v.replicas[1].report);
    }

    #[test]
    fn data_loss_is_corrupt_and_silence_is_unreachable() {
        // Proves: a data-loss answer is corrupt (reported), no answer is unreachable (not reported) and leaves the chunk under-replicated.
        let o = [
            obs("a", read_ok(7)),
            obs("b", ReadResult::DataLoss("DATA_LOSS".into())),
            obs("c", ReadResult::Failed("connection refused".into())),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Unreachable]);
        assert!(v.replicas[1].report && !v.replicas[2].report);
        assert_eq!(v.health, ChunkHealth::Corrupt);
        let v = classify(
            SEALED,
            &[obs("a", read_ok(7)), o[2].clone(), obs("d", read_ok(7))],
        );
        assert_eq!(v.health, ChunkHealth::UnderReplicated);
        assert_eq!(v.verified, 2);
    }

    #[test]
    fn checksum_minority_is_corrupt_and_a_tie_trusts_nobody() {
        // Proves: a sealed replica whose checksum differs from the majority is corrupt and reported; without a majority all are corrupt and none is reported.
        let o = [
            obs("a", read_ok(7)),
            obs("b", read_ok(8)),
            obs("c", read_ok(7)),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Healthy]);
        assert!(v.replicas[1].report);
        assert!(
            v.replicas[1].detail.contains("00000008"),
            "{:?}",
            v.replicas[1]
        );
        let v = classify(SEALED, &[obs("a", read_ok(7)), obs("b", read_ok(8))]);
        assert_eq!(healths(&v), vec![Corrupt, Corrupt]);
        assert!(v.replicas.iter().all(|r| !r.report));
        assert_eq!(v.verified, 0);
    }

    #[test]
    fn old_version_short_or_unsealed_replicas_are_stale() {
        // Proves: sealed-chunk replicas with an old version, a wrong length or not sealed are stale and take no part in the vote.
        let old = done(ChunkVersion(1), true, 4096, 1, None);
        let short = done(ChunkVersion(2), true, 2048, 2, None);
        let open = done(ChunkVersion(2), false, 4096, 3, None);
        let o = [
            obs("a", read_ok(7)),
            obs("b", read_ok(7)),
            obs("c", read_ok(7)),
            obs("d", old),
            obs("e", short),
            obs("f", open),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(
            healths(&v),
            vec![Healthy, Healthy, Healthy, Stale, Stale, Stale]
        );
        assert_eq!(v.health, ChunkHealth::Stale);
        // Stale replicas take no part in the checksum vote.
        assert!(v.replicas.iter().all(|r| !r.report));
        let v = classify(SEALED, &o[2..]);
        assert_eq!(v.health, ChunkHealth::UnderReplicated);
    }

    #[test]
    fn open_chunk_replicas_are_checked_up_to_their_commit_offset() {
        // Proves: open-chunk replicas of different lengths are healthy, one with an old version is stale.
        let open = ChunkFacts {
            state: ChunkState::Open,
            version: ChunkVersion(1),
            length: ChunkOffset::FIRST_FRAME,
            replication: 2,
        };
        let at = |end: u64, crc32: u32, version: ChunkVersion| ReadResult::Done {
            version,
            sealed: false,
            end: ChunkOffset(end),
            crc32,
            bad: None,
        };
        // Different lengths (a secondary lags the primary) are fine while the chunk is open.
        let v = classify(
            open,
            &[
                obs("a", at(4096, 1, ChunkVersion(1))),
                obs("b", at(2048, 2, ChunkVersion(1))),
            ],
        );
        assert_eq!(v.health, ChunkHealth::Healthy);
        let v = classify(
            open,
            &[
                obs("a", at(4096, 1, ChunkVersion(1))),
                obs("b", at(2048, 2, ChunkVersion(0))),
            ],
        );
        assert_eq!(healths(&v), vec![Healthy, Stale]);
        assert_eq!(v.health, ChunkHealth::UnderReplicated);
    }
}
