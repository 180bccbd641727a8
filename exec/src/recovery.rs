//! What a replica starts from: its output log replayed (the request ids it has outputs for
//! and its newest complete snapshot), and that snapshot restored into a fresh worker
//! ([`restore_newest`]). Used at every replica start; a worker restarted after a crash can use
//! [`restore_newest`] the same way.

use std::collections::HashSet;

use anyhow::Context as _;
use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions};
use tracing::warn;

use crate::records::{ExecRecord, Kind};
use crate::snapshot_records::{AssembledSnapshot, SnapshotParts};
use crate::supervisor::{Refusal, Worker};

/// A replica's output log as a replay found it.
#[derive(Debug, Default)]
pub struct OutputLogState {
    /// The request ids it has outputs for.
    pub done: HashSet<Bytes>,
    /// Its newest complete snapshot (every part present, length and blake3 checked).
    pub newest_snapshot: Option<AssembledSnapshot>,
}

/// Replays replica `replica`'s output log `path`. Snapshots that cannot be used (a part
/// missing, a digest that does not match, a record of another replica) are warned about and
/// passed over.
pub async fn read_output_log(
    client: &Client,
    path: &str,
    replica: u32,
) -> anyhow::Result<OutputLogState> {
    let mut replay = client
        .replay(path, ReplayOptions::default())
        .await
        .with_context(|| format!("replay {path}"))?;
    let mut done = HashSet::new();
    let mut snapshots = SnapshotParts::default();
    while let Some(event) = replay.next().await {
        let payload = match event? {
            ReplayEvent::Record { payload, .. } => payload,
            ReplayEvent::Skipped { .. } => {
                warn!(log = path, "output log bytes skipped");
                continue;
            }
            // A kind of event newer than this code: it carries no output.
            other => {
                warn!(
                    log = path,
                    event = ?other,
                    "an unknown replay event on the output log; ignored"
                );
                continue;
            }
        };
        match ExecRecord::from_payload(&payload) {
            Some(Kind::Output(output)) => {
                done.insert(output.request_id);
            }
            Some(Kind::Snapshot(record)) if record.replica == replica => {
                if let Err(e) = snapshots.add(record) {
                    warn!(log = path, error = %e, "SNAPSHOT record ignored");
                }
            }
            Some(Kind::Snapshot(record)) => warn!(
                log = path,
                of = record.replica,
                "a SNAPSHOT record of another replica; ignored"
            ),
            _ => warn!(
                log = path,
                "a record of the output log is not an OUTPUT or SNAPSHOT"
            ),
        }
    }
    let (newest_snapshot, broken) = snapshots.newest();
    for b in broken {
        warn!(
            log = path,
            reason = %b,
            "a snapshot newer than the newest usable one cannot be used"
        );
    }
    Ok(OutputLogState {
        done,
        newest_snapshot,
    })
}

/// Why a snapshot could not be restored.
#[derive(Debug)]
pub enum RestoreFailed {
    /// The worker refused the bytes (or has no snapshots); its state is unknown.
    Refused(Refusal),
    /// The worker died or broke the protocol.
    Worker(std::io::Error),
}

impl std::fmt::Display for RestoreFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreFailed::Refused(r) => write!(f, "the worker refused the snapshot: {r}"),
            RestoreFailed::Worker(e) => write!(f, "the worker failed restoring: {e}"),
        }
    }
}

/// Restores `state`'s newest snapshot into `worker`, a fresh one that has run no request;
/// returns how many inputs it covers (0 without a snapshot: nothing was sent). On an error the
/// worker's state is unknown: replace it with a fresh one and re-run every input.
pub async fn restore_newest(
    worker: &mut Worker,
    state: &OutputLogState,
) -> Result<u64, RestoreFailed> {
    let Some(snapshot) = &state.newest_snapshot else {
        return Ok(0);
    };
    match worker.restore(&snapshot.bytes).await {
        Ok(Ok(())) => Ok(snapshot.inputs),
        Ok(Err(refusal)) => Err(RestoreFailed::Refused(refusal)),
        Err(e) => Err(RestoreFailed::Worker(e)),
    }
}
