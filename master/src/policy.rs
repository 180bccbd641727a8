//! The replica policy: which replicas of a chunk count, and for what. Pure rules over the
//! metadata (`meta`) and the chunkservers' reports (`heartbeat`), with no I/O, shared by the
//! answers to readers and checkers (`StatLog`, `ListReplicas`), heartbeat reconciliation, the
//! repair loop and salvage, so that none of them can disagree about a replica.
//!
//! - A sealed chunk's replica is *good* ([`is_good`]) when it is sealed at the chunk's version
//!   and sealed length, neither failed nor corrupt. Only good replicas on live chunkservers
//!   ([`good_replicas`]) are read sources, copy sources or counted towards the replication
//!   factor.
//! - An open chunk's replica is *current* when it is at the chunk's version, neither failed nor
//!   corrupt; [`is_readable`] is good for a sealed chunk and current for an open one.
//! - A replica that is not good is *garbage* ([`is_garbage`]) only once its chunk has enough good
//!   ones: until then it may still be caught up.
//! - A good replica is *excess* ([`is_excess`]) when the chunk has more good ones than its
//!   factor (a chunkserver thought lost came back after the repair replaced its replicas); one
//!   at a time is deleted until the factor is met.
//! - A *prefix* ([`is_prefix`]) is a healthy replica no longer than the sealed length: what a
//!   repair copy extends and what salvage can reseal from.
//! - A chunk's length as shown to readers and checkers is [`chunk_length`]: the sealed length,
//!   or for an open chunk the longest length a replica reported.

use std::time::Duration;

use cairn_record::ChunkOffset;
use tokio::time::Instant;

use crate::heartbeat::{ReplicaReport, Servers};
use crate::meta::{ChunkMeta, ChunkState};

/// Whether `r` is a good replica of the sealed chunk `c` (liveness is checked by the caller).
pub(crate) fn is_good(c: &ChunkMeta, r: &ReplicaReport) -> bool {
    c.state == ChunkState::Sealed
        && r.sealed
        && r.version == c.version
        && r.length == c.length
        && !r.failed
        && !r.corrupt
}

/// The addresses of the replicas of `c` on live chunkservers whose report passes `keep` (one
/// of the rules of this module), in the order the reports are kept.
pub(crate) fn live_replicas(
    servers: &Servers,
    c: &ChunkMeta,
    now: Instant,
    dead_after: Duration,
    keep: impl Fn(&ChunkMeta, &ReplicaReport) -> bool,
) -> Vec<String> {
    servers
        .replicas_of(c.handle)
        .into_iter()
        .filter(|(a, r)| keep(c, r) && servers.is_live(a, now, dead_after))
        .map(|(a, _)| a)
        .collect()
}

/// The addresses of the good replicas of `c` on live chunkservers.
pub(crate) fn good_replicas(
    servers: &Servers,
    c: &ChunkMeta,
    now: Instant,
    dead_after: Duration,
) -> Vec<String> {
    live_replicas(servers, c, now, dead_after, is_good)
}

/// Whether `r` may serve reads of `c` (liveness is checked by the caller): a good replica of a
/// sealed chunk; for an open chunk, one at the chunk's version, neither failed nor corrupt.
pub(crate) fn is_readable(c: &ChunkMeta, r: &ReplicaReport) -> bool {
    match c.state {
        ChunkState::Sealed => is_good(c, r),
        ChunkState::Open => r.version == c.version && !r.failed && !r.corrupt,
    }
}

/// The addresses of the replicas of `c` on live chunkservers that may serve reads of it (the
/// replicas `StatLog` lists; for a sealed chunk, its [`good_replicas`]).
pub(crate) fn readable_replicas(
    servers: &Servers,
    c: &ChunkMeta,
    now: Instant,
    dead_after: Duration,
) -> Vec<String> {
    live_replicas(servers, c, now, dead_after, is_readable)
}

/// Whether the replica `r` reported by a chunkserver is garbage to delete: a replica of a
/// sealed chunk that is not good, while the chunk has at least `replication` good replicas and
/// no copy into that chunkserver is running.
pub(crate) fn is_garbage(
    c: &ChunkMeta,
    r: &ReplicaReport,
    good: usize,
    replication: u32,
    copying_here: bool,
) -> bool {
    c.state == ChunkState::Sealed
        && !is_good(c, r)
        && r.version <= c.version
        && good >= replication as usize
        && !copying_here
}

/// Whether the good replica on `address` is one too many: the chunk has more good replicas on
/// live chunkservers (`good`) than its factor, and `address` is the one picked to go (the
/// greatest address, so that every heartbeat picks the same one; the master forgets the
/// replica as it asks for the deletion, so the count drops at once and only one goes).
pub(crate) fn is_excess(address: &str, good: &[String], replication: u32) -> bool {
    good.len() > replication as usize && good.iter().max().is_some_and(|a| a == address)
}

/// Whether `r` holds a usable prefix of the sealed chunk `c` (a repair copy only extends it; a
/// salvage may reseal from it): a healthy replica of this chunk's byte stream at a version the
/// master issued, no longer than the sealed length.
pub(crate) fn is_prefix(c: &ChunkMeta, r: &ReplicaReport) -> bool {
    !r.corrupt
        && !r.failed
        && r.version <= c.version
        && r.length >= ChunkOffset::FIRST_FRAME
        && r.length <= c.length
}

/// The length of `c` as `StatLog` and `ListReplicas` show it, given every report of its
/// replicas: the sealed length; for an open chunk, the longest length a replica reported (the
/// chunk header's if none did).
pub(crate) fn chunk_length(c: &ChunkMeta, reports: &[(String, ReplicaReport)]) -> ChunkOffset {
    match c.state {
        ChunkState::Sealed => c.length,
        ChunkState::Open => reports
            .iter()
            .map(|(_, r)| r.length)
            .max()
            .unwrap_or(ChunkOffset::FIRST_FRAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Metadata;
    use cairn_record::{ChunkHandle, ChunkVersion};

    const H: ChunkHandle = ChunkHandle(0x33);

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

    /// The open chunk `H` of `/l` (factor 3) at version 1, and the same chunk sealed at version
    /// 2, length 4096.
    fn open_and_sealed() -> (Metadata, Metadata) {
        (
            crate::meta::one_open_chunk(H),
            crate::meta::one_sealed_chunk(H),
        )
    }

    // Proves the rules one by one on hand-made reports: good means sealed at the chunk's
    // version and length and healthy; readable is good when sealed and current when open;
    // garbage needs enough good replicas and no copy landing there, and never a version the
    // master did not issue; one excess good replica (the greatest address) goes at a time; a prefix is healthy, issued and no longer than the sealed length;
    // the shown length is the sealed one, or the longest report (32 without any) when open.
    #[test]
    fn replica_rules() {
        let (open, sealed) = open_and_sealed();
        let (o, s) = (&open.chunks[&H], &sealed.chunks[&H]);
        let mut corrupt = report(ChunkVersion(2), 4096, true);
        corrupt.corrupt = true;
        let mut failed = report(ChunkVersion(1), 1024, false);
        failed.failed = true;

        assert!(is_good(s, &report(ChunkVersion(2), 4096, true)));
        for r in [
            report(ChunkVersion(2), 4096, false),
            report(ChunkVersion(2), 1024, true),
            report(ChunkVersion(1), 4096, true),
            corrupt,
        ] {
            assert!(!is_good(s, &r), "{r:?}");
        }
        assert!(
            !is_good(o, &report(ChunkVersion(1), 4096, true)),
            "open chunks have none"
        );

        assert!(is_readable(o, &report(ChunkVersion(1), 100, false)));
        assert!(!is_readable(o, &report(ChunkVersion(2), 100, false)));
        assert!(!is_readable(o, &failed));
        assert_eq!(is_readable(s, &corrupt), is_good(s, &corrupt));

        let short = report(ChunkVersion(1), 1024, false);
        assert!(is_garbage(s, &short, 3, 3, false));
        assert!(!is_garbage(s, &short, 2, 3, false), "below the factor");
        assert!(
            !is_garbage(s, &short, 3, 3, true),
            "a copy is landing there"
        );
        assert!(!is_garbage(
            s,
            &report(ChunkVersion(3), 1024, false),
            3,
            3,
            false
        ));
        assert!(!is_garbage(
            s,
            &report(ChunkVersion(2), 4096, true),
            3,
            3,
            false
        ));
        assert!(!is_garbage(o, &short, 3, 3, false));

        let good = |n: usize| (0..n).map(|i| format!("cs{i}")).collect::<Vec<_>>();
        assert!(is_excess("cs3", &good(4), 3));
        assert!(
            !is_excess("cs2", &good(4), 3),
            "only the greatest address goes"
        );
        assert!(!is_excess("cs2", &good(3), 3), "at the factor");
        assert!(!is_excess("cs9", &good(4), 3), "not a good replica");

        assert!(is_prefix(s, &short));
        assert!(is_prefix(s, &report(ChunkVersion(2), 4096, true)));
        assert!(
            !is_prefix(s, &report(ChunkVersion(1), 8192, false)),
            "longer"
        );
        assert!(
            !is_prefix(s, &report(ChunkVersion(3), 1024, false)),
            "not issued"
        );
        assert!(!is_prefix(s, &failed));
        assert!(
            !is_prefix(s, &report(ChunkVersion(1), 16, false)),
            "no chunk header"
        );

        let reports = vec![
            ("a".to_owned(), report(ChunkVersion(1), 300, false)),
            ("b".to_owned(), report(ChunkVersion(1), 700, false)),
        ];
        assert_eq!(chunk_length(o, &reports), ChunkOffset(700));
        assert_eq!(chunk_length(o, &[]), ChunkOffset::FIRST_FRAME);
        assert_eq!(chunk_length(s, &reports), ChunkOffset(4096));
    }
}
