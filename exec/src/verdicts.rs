//! A replica's view of its service's vote log: which requests were quarantined (never to be
//! applied) and, for a request its worker crashed or timed out on, what f+1 others agreed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions, TailFrom};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::records::{ExecRecord, Kind, digest, hex};
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
}

impl Known {
    fn learn(&mut self, kind: Kind) -> Option<Bytes> {
        match kind {
            Kind::Quarantine(q) => {
                self.quarantined.insert(q.request_id.clone());
                Some(q.request_id)
            }
            Kind::Vote(v) => {
                let d = digest(v.code, &v.message, &v.response);
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

    fn decision(&self, request_id: &Bytes) -> Option<Decision> {
        if self.quarantined.contains(request_id) {
            return Some(Decision::Quarantined);
        }
        self.agreed.get(request_id).copied().map(Decision::Agreed)
    }
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
}
