//! Chunkservers as the master knows them: liveness from registrations and heartbeats, and the
//! replicas each one reported. None of this is persisted; a restarted master rebuilds it from
//! registrations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};
use tokio::time::Instant;

/// One replica as its chunkserver reported it (or as the master last set it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaReport {
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
    pub(crate) length: ChunkOffset,
    pub(crate) sealed: bool,
    pub(crate) failed: bool,
    pub(crate) corrupt: bool,
    /// The chunkserver holds this open replica's primary role (lost in a restart).
    pub(crate) primary: bool,
}

impl ReplicaReport {
    /// A healthy replica sealed at `(version, length)`, as the master records one it has just
    /// sealed or copied (until the chunkserver's next report says otherwise).
    pub(crate) fn sealed(
        handle: ChunkHandle,
        version: ChunkVersion,
        length: ChunkOffset,
    ) -> ReplicaReport {
        ReplicaReport {
            handle,
            version,
            length,
            sealed: true,
            failed: false,
            corrupt: false,
            primary: false,
        }
    }
}

#[derive(Debug)]
struct Server {
    last_seen: Instant,
    /// Free bytes for chunk data it last reported; `None` if it never said (0 on the wire).
    free_bytes: Option<u64>,
    /// Each replica with the time the master itself last set it (see [`Servers::set_replica`]).
    replicas: BTreeMap<ChunkHandle, (ReplicaReport, Option<Instant>)>,
}

/// One chunkserver in the cluster's status ([`Servers::overview`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerOverview {
    pub(crate) address: String,
    /// Heard from within the dead-after period.
    pub(crate) live: bool,
    /// Since its last registration or heartbeat.
    pub(crate) silent: Duration,
    /// Free bytes it last reported, if it said.
    pub(crate) free_bytes: Option<u64>,
    /// Replicas it holds, as the master knows them.
    pub(crate) replicas: usize,
}

/// Registered chunkservers and the replicas they hold.
#[derive(Debug, Default)]
pub(crate) struct Servers {
    servers: BTreeMap<String, Server>,
    /// handle → addresses reporting it.
    locations: BTreeMap<ChunkHandle, BTreeSet<String>>,
    /// Replicas a checker reported corrupt (`ReportCorrupt`), with what it found. Reports do
    /// not clear a mark (the chunkserver does not know of it); it ends when the chunkserver
    /// stops reporting the replica or a repair copy replaces it ([`Servers::clear_mark`]).
    marks: BTreeMap<(String, ChunkHandle), String>,
    /// The longest length past the chunk header any chunkserver reported for each open chunk
    /// since the master started, kept after the replicas are gone: evidence that an open chunk
    /// whose every replica vanished held records (see `MasterCore::seal_lost`). Forgotten when
    /// the chunk is sealed or deleted.
    held: BTreeMap<ChunkHandle, ChunkOffset>,
}

impl Servers {
    /// Records a report: the chunkserver is live and holds exactly `replicas`, except that a
    /// replica the master set less than `recent` ago and missing from the report is kept (the
    /// report may have been taken before the master's `CreateReplica` landed).
    pub(crate) fn register(
        &mut self,
        address: &str,
        now: Instant,
        replicas: &[ReplicaReport],
        recent: Duration,
    ) {
        let server = self.servers.entry(address.to_owned()).or_insert(Server {
            last_seen: now,
            free_bytes: None,
            replicas: BTreeMap::new(),
        });
        server.last_seen = now;
        let old = std::mem::take(&mut server.replicas);
        for r in replicas {
            server.replicas.insert(r.handle, (*r, None));
            note_held(&mut self.held, r);
        }
        for (h, (report, set_at)) in old {
            let fresh = set_at.is_some_and(|t| now.saturating_duration_since(t) < recent);
            if fresh && !server.replicas.contains_key(&h) {
                server.replicas.insert(h, (report, set_at));
            }
            if !server.replicas.contains_key(&h)
                && let Some(set) = self.locations.get_mut(&h)
            {
                set.remove(address);
                if set.is_empty() {
                    self.locations.remove(&h);
                }
            }
        }
        for h in server.replicas.keys() {
            self.locations
                .entry(*h)
                .or_default()
                .insert(address.to_owned());
        }
        // A replica its chunkserver no longer holds takes its mark with it.
        self.marks
            .retain(|(a, h), _| a != address || server.replicas.contains_key(h));
    }

    /// Every chunkserver registered since the master started, in address order: its address,
    /// whether it is live and how many replicas it holds.
    pub(crate) fn all(&self, now: Instant, dead_after: Duration) -> Vec<(String, bool, usize)> {
        self.servers
            .iter()
            .map(|(a, s)| {
                let live = now.saturating_duration_since(s.last_seen) < dead_after;
                (a.clone(), live, s.replicas.len())
            })
            .collect()
    }

    /// Every chunkserver registered since the master started, in address order, as the status
    /// shows it.
    pub(crate) fn overview(&self, now: Instant, dead_after: Duration) -> Vec<ServerOverview> {
        self.servers
            .iter()
            .map(|(a, s)| {
                let silent = now.saturating_duration_since(s.last_seen);
                ServerOverview {
                    address: a.clone(),
                    live: silent < dead_after,
                    silent,
                    free_bytes: s.free_bytes,
                    replicas: s.replicas.len(),
                }
            })
            .collect()
    }

    /// How many chunkservers registered since the master started, live or not.
    pub(crate) fn known_count(&self) -> usize {
        self.servers.len()
    }

    /// Whether `address` has registered since the master started.
    pub(crate) fn is_known(&self, address: &str) -> bool {
        self.servers.contains_key(address)
    }

    /// Whether `address` is dead: registered but silent for `dead_after`, or never heard from
    /// although the master has run for `dead_after` (a server that died while the master was
    /// down never registers again).
    pub(crate) fn is_dead(
        &self,
        address: &str,
        now: Instant,
        dead_after: Duration,
        master_started: Instant,
    ) -> bool {
        match self.servers.get(address) {
            Some(s) => now.saturating_duration_since(s.last_seen) >= dead_after,
            None => now.saturating_duration_since(master_started) >= dead_after,
        }
    }

    /// Whether `address` is registered and was heard from within `dead_after`.
    pub(crate) fn is_live(&self, address: &str, now: Instant, dead_after: Duration) -> bool {
        self.servers
            .get(address)
            .is_some_and(|s| now.saturating_duration_since(s.last_seen) < dead_after)
    }

    /// Live chunkservers with the number of replicas each holds.
    pub(crate) fn live(&self, now: Instant, dead_after: Duration) -> Vec<(String, usize)> {
        self.servers
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) < dead_after)
            .map(|(a, s)| (a.clone(), s.replicas.len()))
            .collect()
    }

    /// Records the free bytes `address` reported (0: unknown).
    pub(crate) fn set_free_bytes(&mut self, address: &str, free_bytes: u64) {
        if let Some(server) = self.servers.get_mut(address) {
            server.free_bytes = (free_bytes > 0).then_some(free_bytes);
        }
    }

    /// The free bytes `address` last reported, `None` if unknown.
    pub(crate) fn free_bytes(&self, address: &str) -> Option<u64> {
        self.servers.get(address)?.free_bytes
    }

    /// Whether `address` may take a new replica needing `need` free bytes: it reported at least
    /// that much, or never said how much it has.
    pub(crate) fn has_room(&self, address: &str, need: u64) -> bool {
        self.free_bytes(address).is_none_or(|free| free >= need)
    }

    /// Records what the master itself just did to a replica (created, sealed), ahead of the
    /// chunkserver's next report.
    pub(crate) fn set_replica(&mut self, address: &str, now: Instant, report: ReplicaReport) {
        if let Some(server) = self.servers.get_mut(address) {
            note_held(&mut self.held, &report);
            server.replicas.insert(report.handle, (report, Some(now)));
            self.locations
                .entry(report.handle)
                .or_default()
                .insert(address.to_owned());
        }
    }

    /// The longest length any chunkserver reported for `handle` since the master started, if
    /// one reported bytes past its header.
    pub(crate) fn longest_reported(&self, handle: ChunkHandle) -> Option<ChunkOffset> {
        self.held.get(&handle).copied()
    }

    /// Forgets what was reported of `handle` (the chunk is gone from the metadata).
    pub(crate) fn forget_chunk(&mut self, handle: ChunkHandle) {
        self.held.remove(&handle);
    }

    /// Forgets `address`'s replica of `handle` at once: the master has just asked for its
    /// deletion, so it is neither listed to readers nor counted from now on (its chunkserver's
    /// next report, taken after the deletion, agrees).
    pub(crate) fn forget_replica(&mut self, address: &str, handle: ChunkHandle) {
        if let Some(server) = self.servers.get_mut(address) {
            server.replicas.remove(&handle);
        }
        if let Some(set) = self.locations.get_mut(&handle) {
            set.remove(address);
            if set.is_empty() {
                self.locations.remove(&handle);
            }
        }
        self.marks.remove(&(address.to_owned(), handle));
    }

    /// Every replica of `handle` the master knows of, with its chunkserver's address.
    pub(crate) fn replicas_of(&self, handle: ChunkHandle) -> Vec<(String, ReplicaReport)> {
        let mut out: Vec<(String, ReplicaReport)> = self
            .locations
            .get(&handle)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let r = self.servers.get(a)?.replicas.get(&handle)?.0;
                Some((a.clone(), self.with_mark(a, &r)))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// `r`, reported by `address`, marked corrupt if a checker reported it so.
    pub(crate) fn with_mark(&self, address: &str, r: &ReplicaReport) -> ReplicaReport {
        let mut r = *r;
        r.corrupt |= self.mark(address, r.handle).is_some();
        r
    }

    /// What a checker reported about `address`'s replica of `handle`, if it is marked corrupt.
    pub(crate) fn mark(&self, address: &str, handle: ChunkHandle) -> Option<&str> {
        self.marks
            .get(&(address.to_owned(), handle))
            .map(String::as_str)
    }

    /// Marks `address`'s replica of `handle` corrupt. Returns false (and marks nothing) if the
    /// master knows of no such replica.
    pub(crate) fn mark_corrupt(
        &mut self,
        address: &str,
        handle: ChunkHandle,
        detail: &str,
    ) -> bool {
        let known = self
            .servers
            .get(address)
            .is_some_and(|s| s.replicas.contains_key(&handle));
        if known {
            self.marks
                .insert((address.to_owned(), handle), detail.to_owned());
        }
        known
    }

    /// Ends the corrupt mark of `address`'s replica of `handle` (a repair replaced it).
    pub(crate) fn clear_mark(&mut self, address: &str, handle: ChunkHandle) {
        self.marks.remove(&(address.to_owned(), handle));
    }

    /// Whether any chunkserver reports `handle`.
    pub(crate) fn anyone_has(&self, handle: ChunkHandle) -> bool {
        self.locations.contains_key(&handle)
    }
}

/// Keeps in `held` the longest length `report` of an open replica shows past the chunk header
/// (sealing a chunk forgets its entry, so the map holds about one per open chunk).
fn note_held(held: &mut BTreeMap<ChunkHandle, ChunkOffset>, report: &ReplicaReport) {
    if !report.sealed && report.length > ChunkOffset::FIRST_FRAME {
        let longest = held.entry(report.handle).or_insert(report.length);
        *longest = (*longest).max(report.length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(handle: u64) -> ReplicaReport {
        ReplicaReport {
            handle: ChunkHandle(handle),
            version: ChunkVersion(1),
            length: ChunkOffset(32),
            sealed: false,
            failed: false,
            corrupt: false,
            primary: false,
        }
    }

    // A report replaces the previous one; silence past dead_after makes a server dead.
    #[tokio::test(start_paused = true)]
    async fn reports_replace_and_silence_kills() {
        let mut s = Servers::default();
        let recent = Duration::from_secs(2);
        let t0 = Instant::now();
        s.register("a", t0, &[r(1), r(2)], recent);
        s.register("b", t0, &[r(2)], recent);
        assert_eq!(s.replicas_of(ChunkHandle(2)).len(), 2);
        s.register("a", t0, &[r(1)], recent);
        assert_eq!(s.replicas_of(ChunkHandle(2)).len(), 1);
        // A replica the master just created survives a report taken before it landed.
        s.set_replica("a", t0, r(3));
        s.register("a", t0, &[r(1)], recent);
        assert!(s.anyone_has(ChunkHandle(3)));
        let dead_after = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(11)).await;
        let now = Instant::now();
        assert!(!s.is_live("a", now, dead_after));
        s.register("b", now, &[r(2)], recent);
        assert_eq!(s.live(now, dead_after), vec![("b".to_owned(), 1)]);
        s.register("a", now, &[r(1)], recent);
        assert!(
            !s.anyone_has(ChunkHandle(3)),
            "gone once the grace has passed"
        );
    }

    // Free space: unknown until reported, 0 on the wire means unknown, the last report counts.
    #[tokio::test(start_paused = true)]
    async fn free_bytes_decide_room() {
        let mut s = Servers::default();
        let t0 = Instant::now();
        s.set_free_bytes("a", 10);
        assert_eq!(
            s.free_bytes("a"),
            None,
            "unregistered servers are not recorded"
        );
        s.register("a", t0, &[], Duration::from_secs(1));
        assert!(
            s.has_room("a", u64::MAX),
            "unknown free space is not held against it"
        );
        s.set_free_bytes("a", 100);
        assert!(s.has_room("a", 100));
        assert!(!s.has_room("a", 101));
        s.set_free_bytes("a", 0);
        assert_eq!(s.free_bytes("a"), None);
        s.set_free_bytes("a", 1);
        assert!(!s.has_room("a", 2));
    }

    // A checker's corrupt mark survives reports that say nothing of it, and ends when the
    // chunkserver stops reporting the replica; unknown replicas are not marked.
    #[tokio::test(start_paused = true)]
    async fn corrupt_marks_outlive_reports_until_the_replica_is_gone() {
        let mut s = Servers::default();
        let recent = Duration::from_secs(2);
        let t0 = Instant::now();
        s.register("a", t0, &[r(1), r(2)], recent);
        assert!(!s.mark_corrupt("a", ChunkHandle(9), "bad frame"));
        assert!(!s.mark_corrupt("zz", ChunkHandle(1), "bad frame"));
        assert!(s.mark_corrupt("a", ChunkHandle(1), "bad frame at 64"));
        s.register("a", t0, &[r(1), r(2)], recent);
        let reps = s.replicas_of(ChunkHandle(1));
        assert_eq!(reps.len(), 1);
        assert!(reps[0].1.corrupt, "the report does not clear the mark");
        assert_eq!(s.mark("a", ChunkHandle(1)), Some("bad frame at 64"));
        assert!(!s.replicas_of(ChunkHandle(2))[0].1.corrupt);
        s.register("a", t0, &[r(2)], recent);
        assert_eq!(s.mark("a", ChunkHandle(1)), None);
        s.register("a", t0, &[r(1), r(2)], recent);
        assert!(
            !s.replicas_of(ChunkHandle(1))[0].1.corrupt,
            "a new replica starts clean"
        );
        assert!(s.mark_corrupt("a", ChunkHandle(2), "x"));
        s.clear_mark("a", ChunkHandle(2));
        assert!(!s.replicas_of(ChunkHandle(2))[0].1.corrupt);
    }
}
