//! A replica's output log lost for good, and made again. The log has replication 1, on the
//! chunkserver beside its replica: when that chunkserver loses its disk, the log's chunks are
//! gone, and every replay of the log — the replica's own at start, each front door's, `cairn
//! exec timeline` — fails at the first of them. The outputs are not the replica's state (the
//! input log is), so the replica rebuilds them: it deletes the log, creates it again on the same
//! chunkserver, re-runs every input in a fresh worker and appends an output for each, which is
//! compared with its vote like any other (a rebuilt output that disagrees is a dissent).
//!
//! A chunk is lost when no chunkserver reports holding it while the chunkserver the log is
//! placed on is live — so it has reported what it holds, and the chunk is not among it — on two
//! looks [`CONFIRM_AFTER`] apart (a chunk is listed a moment before its replica is created; the
//! same chunk still without one two seconds later is not being created). A chunkserver that is
//! only down is not live, and its chunks are not lost. Sealed or open makes no difference: an
//! open chunk whose only replica is gone cannot be sealed (no replica answers the fence), and a
//! read of it fails like one of a sealed chunk.

use std::time::Duration;

use cairn_client::{Appender, ChunkHandle, Client};
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

/// The chunks of `path` that no chunkserver holds while `placed_on` is live, on one look.
async fn look(client: &Client, path: &str, placed_on: &str) -> anyhow::Result<Vec<ChunkHandle>> {
    let live = client
        .list_chunkservers()
        .await?
        .iter()
        .any(|c| c.address == placed_on && c.live);
    if !live {
        return Ok(Vec::new());
    }
    let log = client.list_replicas(path).await?;
    Ok(log
        .chunks
        .iter()
        .filter(|c| c.replicas.is_empty())
        .map(|c| c.handle)
        .collect())
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
