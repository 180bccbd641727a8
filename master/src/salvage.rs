//! Salvage: a sealed chunk whose every replica holding its whole sealed length is lost is
//! resealed at the longest length a surviving replica holds (ARCHITECTURE.md, "Salvage").
//!
//! Why this is sound: a seal may complete on fewer replicas than the chunk had (those that
//! answered the fence), at the longest length among them. Every acknowledged record was durable
//! on *every* replica of the chunk when it was acknowledged, so a replica that missed the seal
//! (paused, cut off) still holds every acknowledged record as a prefix of its bytes; only bytes
//! that were never acknowledged can be past it (unless a second fault also cut that replica).
//! When the replicas that sealed the chunk are all dead, the survivors are fenced with a new
//! version and sealed at the longest prefix among them; the bytes past it, up to the old sealed
//! length, are recorded as lost (`lost_end`) so replay reports them as `Skipped` instead of
//! silently ending the chunk early. The chunk is then good again, and the repair loop brings it
//! back to its replication factor.
//!
//! [`candidates`] and [`plan`] are pure; `MasterCore::salvage` (`core/salvage.rs`) does the
//! RPCs.

use std::time::Duration;

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};
use tokio::time::Instant;

use crate::heartbeat::Servers;
use crate::meta::{ChunkMeta, ChunkState, Metadata};
use crate::policy::{good_replicas, is_prefix, live_replicas};
use crate::seal::FenceOutcome;

/// The live chunkservers holding a prefix of `c` ([`is_prefix`]), sorted.
pub(crate) fn prefix_holders(
    servers: &Servers,
    c: &ChunkMeta,
    now: Instant,
    dead_after: Duration,
) -> Vec<String> {
    let mut holders = live_replicas(servers, c, now, dead_after, is_prefix);
    holders.sort();
    holders
}

/// A sealed chunk to salvage ([`candidates`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SalvageCandidate {
    pub(crate) log: String,
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
}

/// Sealed chunks to salvage, ordered by log and handle: no good replica on a live
/// chunkserver; every chunkserver that sealed it gone: silent past `salvage_after` (or never
/// heard from although this master has run that long: a restarted master waits for
/// registrations) or live without the replica (it came back with a wiped data directory; a
/// registration reports everything a chunkserver holds); and a live chunkserver holding a
/// prefix of it. A sealer that still reports the replica, damaged, is not gone: the chunk is
/// read around the damage, not cut back. A sealer merely dead (silent past `dead_after` but not
/// `salvage_after`) is not gone either: it is most likely restarting or cut off, with its
/// replica intact, and a salvage would discard the acknowledged records it holds for good.
pub(crate) fn candidates(
    meta: &Metadata,
    servers: &Servers,
    now: Instant,
    dead_after: Duration,
    salvage_after: Duration,
    master_started: Instant,
) -> Vec<SalvageCandidate> {
    if now.saturating_duration_since(master_started) < dead_after {
        return Vec::new();
    }
    debug_assert!(salvage_after >= dead_after);
    let mut out = Vec::new();
    for c in meta.chunks.values() {
        if c.state != ChunkState::Sealed
            || !good_replicas(servers, c, now, dead_after).is_empty()
            || prefix_holders(servers, c, now, dead_after).is_empty()
        {
            continue;
        }
        let reporting: Vec<String> = servers
            .replicas_of(c.handle)
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        let gone = |a: &String| {
            servers.is_dead(a, now, salvage_after, master_started)
                || (servers.is_live(a, now, dead_after) && !reporting.contains(a))
        };
        if !c.replicas.iter().all(gone) {
            continue;
        }
        out.push(SalvageCandidate {
            log: c.log.clone(),
            handle: c.handle,
            version: c.version,
        });
    }
    out.sort_by(|a, b| (&a.log, a.handle).cmp(&(&b.log, b.handle)));
    out
}

/// The salvage decision: the longest fenced length, at most the sealed length `sealed_len`, and
/// the fenced replicas that can be sealed there (open ones at least that long: a seal cuts an
/// open replica; sealed ones exactly that long). `None` if no replica was fenced.
pub(crate) fn plan(sealed_len: ChunkOffset, outcomes: &[FenceOutcome]) -> Option<SalvagePlan> {
    let fenced = crate::seal::fenced(outcomes);
    let length = fenced.iter().map(|f| f.length).max()?.min(sealed_len);
    let replicas = fenced
        .iter()
        .filter(|f| {
            if f.sealed {
                f.length == length
            } else {
                f.length >= length
            }
        })
        .map(|f| f.address.clone())
        .collect();
    Some(SalvagePlan { length, replicas })
}

/// A salvage's decision: the length to seal at and the replicas to seal there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SalvagePlan {
    pub(crate) length: ChunkOffset,
    pub(crate) replicas: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fenced(address: &str, length: u64) -> FenceOutcome {
        FenceOutcome::Fenced {
            address: address.to_owned(),
            length: ChunkOffset(length),
            sealed: false,
            marks: Vec::new(),
            marks_through: ChunkOffset(32),
            primary_commit: None,
        }
    }

    // The longest surviving prefix wins, capped at the sealed length; shorter survivors are
    // left for the repair loop; nobody fenced means no salvage.
    #[test]
    fn longest_surviving_prefix_capped_at_the_sealed_length() {
        let outcomes = [
            fenced("a", 400),
            fenced("b", 800),
            FenceOutcome::Failed {
                address: "c".into(),
            },
            fenced("d", 800),
        ];
        assert_eq!(
            plan(ChunkOffset(1000), &outcomes),
            Some(SalvagePlan {
                length: ChunkOffset(800),
                replicas: vec!["b".into(), "d".into()]
            })
        );
        assert_eq!(
            plan(ChunkOffset(600), &outcomes),
            Some(SalvagePlan {
                length: ChunkOffset(600),
                replicas: vec!["b".into(), "d".into()]
            })
        );
        let sealed_short = FenceOutcome::Fenced {
            address: "e".into(),
            length: ChunkOffset(400),
            sealed: true,
            marks: Vec::new(),
            marks_through: ChunkOffset(32),
            primary_commit: None,
        };
        assert_eq!(
            plan(ChunkOffset(1000), &[fenced("a", 400), sealed_short.clone()]),
            Some(SalvagePlan {
                length: ChunkOffset(400),
                replicas: vec!["a".into(), "e".into()]
            })
        );
        assert_eq!(
            plan(ChunkOffset(1000), &[fenced("a", 800), sealed_short]),
            Some(SalvagePlan {
                length: ChunkOffset(800),
                replicas: vec!["a".into()]
            })
        );
        assert_eq!(
            plan(
                ChunkOffset(1000),
                &[FenceOutcome::Absent {
                    address: "a".into()
                }]
            ),
            None
        );
    }
}

#[cfg(test)]
mod candidate_tests {
    use super::*;
    use crate::heartbeat::ReplicaReport;
    use crate::meta::Entry;

    const H: ChunkHandle = ChunkHandle(0x22);
    const DEAD_AFTER: Duration = Duration::from_secs(10);
    const SALVAGE_AFTER: Duration = Duration::from_secs(60);

    fn report(version: ChunkVersion, length: u64, sealed: bool) -> ReplicaReport {
        ReplicaReport {
            handle: H,
            version,
            length: ChunkOffset(length),
            sealed,
            failed: false,
            corrupt: false,
            primary: false,
        }
    }

    /// One chunk sealed at version 2, length 4096, on `a` alone; `b` and `c` missed the seal.
    fn sealed_on_a() -> Metadata {
        crate::meta::one_sealed_chunk(H)
    }

    // A sealed chunk is salvaged only when no live good replica exists, every chunkserver that
    // sealed it is dead, the master has run for the dead-after time (it waits for
    // registrations after a restart), and a live chunkserver holds a prefix. The salvage entry
    // records the lost tail.
    #[test]
    fn salvage_needs_the_sealers_dead_and_a_live_prefix() {
        let now = Instant::now();
        let started = now - 2 * SALVAGE_AFTER;
        let long_ago = now - 2 * SALVAGE_AFTER;
        let meta = sealed_on_a();
        let mut s = Servers::default();
        s.register(
            "b",
            now,
            &[report(ChunkVersion(1), 1024, false)],
            Duration::ZERO,
        );
        s.register(
            "c",
            now,
            &[report(ChunkVersion(1), 512, false)],
            Duration::ZERO,
        );
        // `a` never registered since this master started: dead only once the master has run
        // for the dead-after time.
        assert!(candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, now).is_empty());
        assert_eq!(
            candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, started),
            vec![SalvageCandidate {
                log: "/l".to_owned(),
                handle: H,
                version: ChunkVersion(2),
            }]
        );
        // `a` live with its good replica: nothing to salvage.
        s.register(
            "a",
            now,
            &[report(ChunkVersion(2), 4096, true)],
            Duration::ZERO,
        );
        assert!(candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, started).is_empty());
        // `a` silent past the dead-after time only (restarting, cut off): its replica may be
        // intact, so nothing is cut (found by the simulator, seed 270: a salvage from a
        // repair's partial copy lost 31 acknowledged records held by briefly silent sealers).
        s.register(
            "a",
            now - 2 * DEAD_AFTER,
            &[report(ChunkVersion(2), 4096, true)],
            Duration::ZERO,
        );
        assert!(candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, started).is_empty());
        // `a` silent past the salvage-after time: lost, salvage.
        s.register(
            "a",
            long_ago,
            &[report(ChunkVersion(2), 4096, true)],
            Duration::ZERO,
        );
        assert_eq!(
            candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, started).len(),
            1
        );
        // `a` back with a wiped directory (live, without the replica): salvage too.
        s.register("a", now, &[], Duration::ZERO);
        assert_eq!(
            candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, started).len(),
            1
        );
        // `a` back with its replica damaged: read around the damage, not cut back.
        let mut damaged = report(ChunkVersion(2), 4096, true);
        damaged.corrupt = true;
        s.register("a", now, &[damaged], Duration::ZERO);
        assert!(candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, started).is_empty());
        s.register(
            "a",
            long_ago,
            &[report(ChunkVersion(2), 4096, true)],
            Duration::ZERO,
        );
        // No live prefix holder (corrupt and longer replicas do not count): nothing to do.
        let mut corrupt = report(ChunkVersion(1), 1024, false);
        corrupt.corrupt = true;
        s.register("b", now, &[corrupt], Duration::ZERO);
        s.register(
            "c",
            now,
            &[report(ChunkVersion(1), 8192, false)],
            Duration::ZERO,
        );
        assert!(candidates(&meta, &s, now, DEAD_AFTER, SALVAGE_AFTER, started).is_empty());

        let mut meta = meta;
        meta.apply(&Entry::Version {
            handle: H,
            version: ChunkVersion(3),
        })
        .unwrap();
        meta.apply(&Entry::Salvage {
            handle: H,
            version: ChunkVersion(3),
            length: ChunkOffset(1024),
            replicas: vec!["b".into()],
        })
        .unwrap();
        let c = &meta.chunks[&H];
        assert_eq!(
            (c.version, c.length, c.lost_end),
            (ChunkVersion(3), ChunkOffset(1024), ChunkOffset(4096))
        );
        assert_eq!(c.replicas, vec!["b".to_owned()]);
        // A salvage never lengthens a chunk.
        assert!(
            meta.apply(&Entry::Salvage {
                handle: H,
                version: ChunkVersion(3),
                length: ChunkOffset(2048),
                replicas: vec!["c".into()],
            })
            .is_err()
        );
    }
}
