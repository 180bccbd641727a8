//! A replica's view of its service's vote log: which requests were quarantined (never to be
//! applied), for a request its worker crashed or timed out on what f+1 others agreed, and how
//! many of its own latest outputs in a row the votes disagreed with.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions, TailFrom};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::records::{CODE_CRASH, CODE_TIMEOUT, ExecRecord, Kind, digest, hex};
use crate::service_logs::ServiceLogs;

/// Agreed digests remembered (the newest); older ones are found by a scan of the vote log.
const RECENT_VERDICTS_MAX: usize = 65_536;
/// How long a wait for one verdict goes before it scans the vote log for it (and says so).
const VERDICT_SCAN_EVERY: Duration = Duration::from_secs(5);

/// The vote log's decision on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// f+1 replicas agreed on this outcome digest.
    Agreed([u8; 32]),
    /// f+1 replicas crashed or timed out: no replica applies it.
    Quarantined,
}

#[derive(Default)]
struct Known {
    quarantined: HashSet<Bytes>,
    agreed: HashMap<Bytes, [u8; 32]>,
    agreed_order: VecDeque<Bytes>,
    caught_up: bool,
    /// This replica's outputs not yet compared with a vote: their digests.
    own: HashMap<Bytes, [u8; 32]>,
    own_order: VecDeque<Bytes>,
    /// Its latest compared outputs that disagreed with the vote, in a row.
    dissents_in_a_row: u64,
    /// Requests this replica answered (applied) that were then quarantined: its state holds
    /// effects no other replica has.
    applied_quarantined: Vec<Bytes>,
}

impl Known {
    fn learn(&mut self, kind: Kind) -> Option<Bytes> {
        match kind {
            Kind::Quarantine(q) => {
                self.quarantined.insert(q.request_id.clone());
                if let Some(own) = self.own.remove(&q.request_id)
                    && !is_fault_digest(&own)
                {
                    self.applied_quarantined.push(q.request_id.clone());
                }
                Some(q.request_id)
            }
            Kind::Vote(v) => {
                let d = digest(v.code, &v.message, &v.response);
                if let Some(own) = self.own.remove(&v.request_id) {
                    self.compare(own, d);
                }
                if self.agreed.insert(v.request_id.clone(), d).is_none() {
                    self.agreed_order.push_back(v.request_id);
                    while self.agreed_order.len() > RECENT_VERDICTS_MAX {
                        if let Some(old) = self.agreed_order.pop_front() {
                            self.agreed.remove(&old);
                        }
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn compare(&mut self, own: [u8; 32], agreed: [u8; 32]) {
        if own == agreed {
            self.dissents_in_a_row = 0;
        } else {
            self.dissents_in_a_row += 1;
            debug!(
                in_a_row = self.dissents_in_a_row,
                "this replica's output differs from the vote"
            );
        }
    }

    /// This replica output `digest` for `request_id`: compared with its vote now if it is known,
    /// else when it arrives.
    fn note_output(&mut self, request_id: Bytes, digest: [u8; 32]) {
        if self.quarantined.contains(&request_id) {
            if !is_fault_digest(&digest) {
                self.applied_quarantined.push(request_id);
            }
            return;
        }
        if let Some(agreed) = self.agreed.get(&request_id).copied() {
            self.compare(digest, agreed);
            return;
        }
        if self.own.insert(request_id.clone(), digest).is_none() {
            self.own_order.push_back(request_id);
            while self.own_order.len() > RECENT_VERDICTS_MAX {
                if let Some(old) = self.own_order.pop_front() {
                    self.own.remove(&old);
                }
            }
        }
    }

    fn decision(&self, request_id: &Bytes) -> Option<Decision> {
        if self.quarantined.contains(request_id) {
            return Some(Decision::Quarantined);
        }
        self.agreed.get(request_id).copied().map(Decision::Agreed)
    }
}

/// Whether `digest` is that of a CRASH or TIMEOUT outcome (the replica applied nothing).
fn is_fault_digest(d: &[u8; 32]) -> bool {
    *d == digest(CODE_CRASH, "", b"") || *d == digest(CODE_TIMEOUT, "", b"")
}

/// Follows the vote log from its start for as long as it lives.
pub struct Verdicts {
    client: Client,
    path: String,
    known: Mutex<Known>,
    changed: Notify,
}

impl std::fmt::Debug for Verdicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verdicts")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Verdicts {
    /// Starts following `logs`' vote log; returns once it has read the whole log as it stands,
    /// so every quarantine recorded before is known.
    pub async fn start(client: &Client, logs: &ServiceLogs) -> anyhow::Result<Arc<Verdicts>> {
        let verdicts = Arc::new(Verdicts {
            client: client.clone(),
            path: logs.votes(),
            known: Mutex::new(Known::default()),
            changed: Notify::new(),
        });
        // The log as it stands, then a tail of it from the start again (a tail from the end
        // would miss what is appended between the two); learning is idempotent.
        let mut replay = client
            .replay(&verdicts.path, ReplayOptions::default())
            .await?;
        while let Some(event) = replay.next().await {
            if let ReplayEvent::Record { payload, .. } = event?
                && let Some(kind) = ExecRecord::from_payload(&payload)
            {
                verdicts.lock().learn(kind);
            }
        }
        let quarantined = {
            let mut known = verdicts.lock();
            known.caught_up = true;
            known.quarantined.len()
        };
        info!(quarantined, "vote log read");
        let mut tail = client
            .tail(&verdicts.path, TailFrom::Start, ReplayOptions::default())
            .await?;
        let weak = Arc::downgrade(&verdicts);
        tokio::spawn(async move {
            while let Some(event) = tail.next().await {
                let Some(verdicts) = weak.upgrade() else {
                    return;
                };
                match event {
                    Ok(ReplayEvent::Record { payload, .. }) => {
                        if let Some(kind) = ExecRecord::from_payload(&payload) {
                            verdicts.lock().learn(kind);
                            verdicts.changed.notify_waiters();
                        }
                    }
                    Ok(ReplayEvent::Skipped { .. }) => warn!("vote log bytes skipped"),
                    // A kind of event newer than this code: it carries no vote.
                    Ok(other) => {
                        warn!(event = ?other, "an unknown replay event on the vote log; ignored")
                    }
                    Err(e) => {
                        warn!(error = %e, "following the vote log failed; waits scan it instead");
                        return;
                    }
                }
            }
        });
        Ok(verdicts)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this replica output `digest` for `request_id`, to be compared with the vote.
    pub fn note_output(&self, request_id: Bytes, digest: [u8; 32]) {
        self.lock().note_output(request_id, digest);
        self.changed.notify_waiters();
    }

    /// How many of this replica's latest outputs in a row the votes disagreed with.
    pub fn dissents_in_a_row(&self) -> u64 {
        self.lock().dissents_in_a_row
    }

    /// Waits until `k` of this replica's latest outputs in a row disagreed with their votes, then
    /// starts counting again from 0; returns the count.
    pub async fn dissented_in_a_row(&self, k: u64) -> u64 {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut known = self.lock();
                if known.dissents_in_a_row >= k {
                    return std::mem::take(&mut known.dissents_in_a_row);
                }
            }
            changed.await;
        }
    }

    /// Waits until a request this replica answered (so applied) is quarantined, then returns
    /// those requests (and forgets them).
    pub async fn applied_a_quarantined_input(&self) -> Vec<Bytes> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut known = self.lock();
                if !known.applied_quarantined.is_empty() {
                    return std::mem::take(&mut known.applied_quarantined);
                }
            }
            changed.await;
        }
    }

    /// Whether `request_id` is quarantined (as far as the log has been read).
    pub fn is_quarantined(&self, request_id: &Bytes) -> bool {
        self.lock().quarantined.contains(request_id)
    }

    /// Waits until the vote log decides `request_id`. Every few seconds without a decision it
    /// scans the whole vote log for it (a decision older than the remembered ones).
    pub async fn decision(&self, request_id: &Bytes) -> anyhow::Result<Decision> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(d) = self.lock().decision(request_id) {
                return Ok(d);
            }
            if tokio::time::timeout(VERDICT_SCAN_EVERY, changed)
                .await
                .is_err()
            {
                info!(request = %hex(request_id), "waiting for the vote on a request this replica's worker failed");
                if let Some(d) = self.scan_for(request_id).await? {
                    return Ok(d);
                }
            }
        }
    }

    async fn scan_for(&self, request_id: &Bytes) -> anyhow::Result<Option<Decision>> {
        let mut replay = self
            .client
            .replay(&self.path, ReplayOptions::default())
            .await?;
        let mut found = Known::default();
        while let Some(event) = replay.next().await {
            if let ReplayEvent::Record { payload, .. } = event?
                && payload
                    .windows(request_id.len().max(1))
                    .any(|w| w == request_id.as_ref())
                && let Some(kind) = ExecRecord::from_payload(&payload)
            {
                found.learn(kind);
            }
        }
        Ok(found.decision(request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Quarantine, Vote};

    // Proves: a QUARANTINE decides its request as quarantined even after a VOTE of it was
    // seen, and a VOTE's decision is the digest of its outcome.
    #[test]
    fn quarantine_beats_a_vote_and_votes_give_digests() {
        let mut k = Known::default();
        let a = Bytes::from_static(b"a");
        let b = Bytes::from_static(b"b");
        k.learn(Kind::Vote(Vote {
            request_id: a.clone(),
            code: 0,
            response: Bytes::from_static(b"r"),
            ..Vote::default()
        }));
        assert_eq!(k.decision(&a), Some(Decision::Agreed(digest(0, "", b"r"))));
        assert_eq!(k.decision(&b), None);
        let learned = k.learn(Kind::Quarantine(Quarantine {
            request_id: a.clone(),
            ..Quarantine::default()
        }));
        assert_eq!(learned, Some(a.clone()));
        assert_eq!(k.decision(&a), Some(Decision::Quarantined));
    }

    fn vote(id: u8, response: &'static [u8]) -> Kind {
        Kind::Vote(Vote {
            request_id: Bytes::from(vec![id]),
            response: Bytes::from_static(response),
            ..Vote::default()
        })
    }

    // Proves: own outputs are compared with their votes whichever comes first, a run of
    // dissents counts up and an agreement ends it.
    #[test]
    fn dissents_in_a_row_count_either_order() {
        let mut k = Known::default();
        let wrong = digest(0, "", b"wrong");
        k.note_output(Bytes::from(vec![1]), wrong);
        k.learn(vote(1, b"right"));
        assert_eq!(k.dissents_in_a_row, 1, "output first");
        k.learn(vote(2, b"right"));
        k.note_output(Bytes::from(vec![2]), wrong);
        assert_eq!(k.dissents_in_a_row, 2, "vote first");
        k.note_output(Bytes::from(vec![3]), digest(0, "", b"right"));
        assert_eq!(k.dissents_in_a_row, 2, "no vote yet");
        k.learn(vote(3, b"right"));
        assert_eq!(k.dissents_in_a_row, 0, "an agreement ends the run");
    }

    // Proves: an input this replica answered and f+1 others crashed on is reported as applied
    // and quarantined, whichever of its output and the QUARANTINE comes first; one it crashed on
    // too is not.
    #[test]
    fn an_applied_input_then_quarantined_is_reported() {
        let quarantine = |id: u8| {
            Kind::Quarantine(Quarantine {
                request_id: Bytes::from(vec![id]),
                ..Quarantine::default()
            })
        };
        let mut k = Known::default();
        k.note_output(Bytes::from(vec![1]), digest(0, "", b"ok"));
        k.learn(quarantine(1));
        k.learn(quarantine(2));
        k.note_output(Bytes::from(vec![2]), digest(0, "", b"ok"));
        k.note_output(Bytes::from(vec![3]), digest(CODE_CRASH, "", b""));
        k.learn(quarantine(3));
        assert_eq!(
            k.applied_quarantined,
            vec![Bytes::from(vec![1]), Bytes::from(vec![2])]
        );
    }
}
