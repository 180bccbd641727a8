//! A replica's output log lost for good, and made again. The log has replication 1, on the
//! chunkserver beside its replica: when that chunkserver loses its disk, the log's chunks are
//! gone, and every replay of the log — the replica's own at start, each front door's, `cairn
//! exec timeline` — fails at the first of them. The outputs are not the replica's state (the
//! input log is), so the replica rebuilds them: it deletes the log, creates it again on the same
//! chunkserver, re-runs every input in a fresh worker and appends an output for each, which is
//! compared with its vote like any other (a rebuilt output that disagrees is a dissent).
//!
//! A chunk is lost when the master recorded bytes of it as lost (an open chunk whose only
//! replica vanished after it reported records is sealed that way; a replay reports the bytes
//! skipped, and the master may give the chunk an empty replica again), or when no chunkserver
//! reports holding it while the chunkserver the log is placed on is live — so it has reported
//! what it holds, and the chunk is not among it (a sealed chunk wiped with its chunkserver: a
//! replay of it fails). Either must hold on two looks [`CONFIRM_AFTER`] apart (a chunk is listed
//! a moment before its replica is created; the same chunk still without one two seconds later
//! is not being created). A chunkserver that is only down is not live, and its chunks are not
//! lost.

use std::time::Duration;

use cairn_client::{Appender, ChunkHandle, ChunkserverInfo, Client, LogReplicas, LogStat};
use tracing::{debug, warn};

use crate::service_logs::ServiceLogs;

/// Two looks at least this far apart must both find a chunk lost.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(2);

/// How long the old log's appender gets to give up on its records before the log is made
/// again.
pub const OLD_APPENDER_CLOSE_MAX: Duration = Duration::from_secs(30);

/// A running replica looks at its output log this often.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Chunks of a replica's output log are lost for good (the replica rebuilds the log).
#[derive(Debug)]
pub struct OutputLogLost {
    /// The log.
    pub path: String,
    /// Its lost chunks.
    pub chunks: Vec<ChunkHandle>,
    /// The chunkserver it is placed on.
    pub chunkserver: String,
}

impl std::fmt::Display for OutputLogLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chunks: Vec<String> = self.chunks.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} lost chunk(s) {} for good: {} is live and holds no replica of them",
            self.path,
            chunks.join(", "),
            self.chunkserver
        )
    }
}

impl std::error::Error for OutputLogLost {}

/// The chunks of `path` whose bytes the master recorded as lost, and, while `placed_on` is
/// live, those no chunkserver holds; on one look.
async fn look(client: &Client, path: &str, placed_on: &str) -> anyhow::Result<Vec<ChunkHandle>> {
    let mut lost = recorded_lost(&client.stat_log(path).await?);
    let chunkservers = client.list_chunkservers().await?;
    if is_live(&chunkservers, placed_on) {
        for handle in unheld(&client.list_replicas(path).await?) {
            if !lost.contains(&handle) {
                lost.push(handle);
            }
        }
    }
    Ok(lost)
}

/// The chunks of `stat` with bytes recorded as lost (sealed, cut back below what they held).
fn recorded_lost(stat: &LogStat) -> Vec<ChunkHandle> {
    stat.chunks
        .iter()
        .filter(|c| c.lost_end > c.length)
        .map(|c| c.handle)
        .collect()
}

/// Whether `address` is among `chunkservers` and live.
fn is_live(chunkservers: &[ChunkserverInfo], address: &str) -> bool {
    chunkservers.iter().any(|c| c.address == address && c.live)
}

/// The chunks of `log` that no chunkserver reports holding, live or not.
fn unheld(log: &LogReplicas) -> Vec<ChunkHandle> {
    log.chunks
        .iter()
        .filter(|c| c.replicas.is_empty())
        .map(|c| c.handle)
        .collect()
}

/// The chunks of the output log `path`, placed on `placed_on`, that are lost for good (two
/// looks [`CONFIRM_AFTER`] apart found them lost); `None` if there are none.
pub async fn lost_chunks(
    client: &Client,
    path: &str,
    placed_on: &str,
) -> anyhow::Result<Option<OutputLogLost>> {
    let first = look(client, path, placed_on).await?;
    if first.is_empty() {
        return Ok(None);
    }
    tokio::time::sleep(CONFIRM_AFTER).await;
    let second = look(client, path, placed_on).await?;
    let chunks: Vec<ChunkHandle> = first.into_iter().filter(|h| second.contains(h)).collect();
    Ok((!chunks.is_empty()).then(|| OutputLogLost {
        path: path.to_owned(),
        chunks,
        chunkserver: placed_on.to_owned(),
    }))
}

/// Looks at the output log every [`WATCH_EVERY`] until chunks of it are lost; returns them. A
/// look that fails (the master unreachable) is passed over.
pub async fn watch(client: &Client, path: &str, placed_on: &str) -> OutputLogLost {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        match lost_chunks(client, path, placed_on).await {
            Ok(Some(lost)) => return lost,
            Ok(None) => {}
            Err(e) => debug!(log = path, error = %e, "looking for lost output chunks failed"),
        }
    }
}

/// Deletes replica `index`'s output log and creates it again, empty, on `chunkserver`. The
/// replica's appender of the old log, if it has one, is closed in between: records it still
/// holds fail (their log is gone) instead of being written into the new log.
pub async fn recreate(
    client: &Client,
    logs: &ServiceLogs,
    index: u32,
    chunkserver: &str,
    old_appender: Option<Appender>,
) -> anyhow::Result<()> {
    let path = logs.output(index);
    match client.delete_log(&path).await {
        Ok(()) | Err(cairn_client::Error::LogNotFound { .. }) => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("delete {path}"))),
    }
    if let Some(appender) = old_appender
        && let Err(e) = tokio::time::timeout(OLD_APPENDER_CLOSE_MAX, appender.close()).await
    {
        // It gave up on nothing within the bound: the new log is created anyway (a record it
        // writes there later is a duplicate output, which readers count once).
        warn!(log = %path, error = %e, "the old output log's appender did not close in time");
    }
    logs.create_output(client, index, Some(chunkserver)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use cairn_client::{
        ChunkOffset, ChunkReplicas, ChunkStat, ChunkState, ChunkVersion, ReplicaStatus,
    };

    use super::*;

    fn chunk(handle: u64, replicas: Vec<ReplicaStatus>) -> ChunkReplicas {
        ChunkReplicas {
            index: 0,
            handle: ChunkHandle(handle),
            state: ChunkState::Sealed,
            version: ChunkVersion(1),
            length: ChunkOffset(4096),
            replication: 1,
            primary: None,
            replicas,
        }
    }

    fn replica(address: &str, live: bool) -> ReplicaStatus {
        ReplicaStatus {
            address: address.into(),
            version: ChunkVersion(1),
            length: ChunkOffset(4096),
            sealed: true,
            corrupt: false,
            failed: false,
            live,
            good: live,
            reported_corrupt: None,
        }
    }

    fn chunkserver(address: &str, live: bool) -> ChunkserverInfo {
        ChunkserverInfo {
            address: address.into(),
            live,
            replicas: 0,
        }
    }

    // Proves: a chunk no chunkserver reports is unheld, one whose only holder is down is not
    // (it may come back with it); a chunk cut back below what it held counts as lost whoever
    // holds it now; and the placed chunkserver counts as live only if it is listed live.
    #[test]
    fn a_chunk_is_lost_only_when_nobody_reports_it_and_its_chunkserver_is_live() {
        let log = LogReplicas {
            path: "/exec/s/outputs/0".into(),
            replication: 1,
            chunk_bytes: 1 << 20,
            chunks: vec![
                chunk(1, vec![replica("a:1", true)]),
                chunk(2, vec![]),
                chunk(3, vec![replica("a:1", false)]),
            ],
        };
        assert_eq!(unheld(&log), vec![ChunkHandle(2)]);
        let stat_chunk = |handle: u64, length: u64, lost_end: u64| ChunkStat {
            index: 0,
            handle: ChunkHandle(handle),
            state: ChunkState::Sealed,
            length: ChunkOffset(length),
            version: ChunkVersion(2),
            replicas: vec!["a:1".into()],
            primary: None,
            lost_end: ChunkOffset(lost_end),
        };
        let stat = LogStat {
            path: "/exec/s/outputs/0".into(),
            replication: 1,
            min_replicas: 1,
            chunk_bytes: 1 << 20,
            chunks: vec![stat_chunk(1, 4096, 0), stat_chunk(4, 32, 9632)],
        };
        assert_eq!(
            recorded_lost(&stat),
            vec![ChunkHandle(4)],
            "cut back below what it held"
        );
        let servers = [chunkserver("a:1", true), chunkserver("b:1", false)];
        assert!(is_live(&servers, "a:1"));
        assert!(!is_live(&servers, "b:1"), "down");
        assert!(!is_live(&servers, "c:1"), "never registered");
    }
}
