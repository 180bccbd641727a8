//! A replica's snapshot writer: the newest snapshot taken waits in a one-slot
//! [`PendingSnapshot`] (a newer one replaces it), and [`write_snapshots`] appends each as
//! SNAPSHOT records to the replica's output log while the worker runs on.

use std::sync::Arc;

use anyhow::Context as _;
use cairn_client::Appender;
use tracing::info;

use crate::records::{ExecRecord, Kind, hex};
use crate::snapshot_records::{TakenSnapshot, snapshot_records};

/// The newest snapshot taken and not yet being written.
#[derive(Debug, Default)]
pub struct PendingSnapshot {
    slot: std::sync::Mutex<Option<TakenSnapshot>>,
    ready: tokio::sync::Notify,
}

impl PendingSnapshot {
    /// Puts `taken` in the slot; returns the older one it replaces, if any.
    pub fn put(&self, taken: TakenSnapshot) -> Option<TakenSnapshot> {
        let older = self
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(taken);
        self.ready.notify_one();
        older
    }

    /// Waits for a snapshot in the slot and takes it.
    pub async fn take(&self) -> TakenSnapshot {
        loop {
            if let Some(taken) = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return taken;
            }
            self.ready.notified().await;
        }
    }
}

/// Writes the newest snapshot taken as SNAPSHOT records (split and hashed off the runtime's
/// threads), waiting for their acks, then the newest one taken meanwhile, and so on; never
/// ends but on an error, which stops the replica.
pub async fn write_snapshots(
    appender: Arc<Appender>,
    pending: Arc<PendingSnapshot>,
) -> anyhow::Result<()> {
    loop {
        let snapshot = pending.take().await;
        let payload_bytes_max = appender.payload_bytes_max();
        let (replica, inputs, bytes) = (snapshot.replica, snapshot.inputs, snapshot.bytes.len());
        let records =
            tokio::task::spawn_blocking(move || snapshot_records(&snapshot, payload_bytes_max))
                .await
                .context("split a snapshot")??;
        let parts = records.len();
        let digest = records.first().map(|r| hex(&r.digest)).unwrap_or_default();
        let payloads = records
            .into_iter()
            .map(|r| ExecRecord::from(Kind::Snapshot(r)).to_payload());
        for ack in appender.append_all(payloads) {
            ack.await.context("append a snapshot part")?;
        }
        info!(replica, inputs, bytes, parts, digest, "snapshot written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn taken(inputs: u64) -> TakenSnapshot {
        TakenSnapshot {
            replica: 0,
            inputs,
            last_request_id: Bytes::from(vec![1; 16]),
            bytes: Bytes::from_static(b"state"),
        }
    }

    // Proves: a snapshot put while an older one still waits replaces it (the older is handed
    // back), the writer takes the newest, and a take waits for the next put.
    #[tokio::test]
    async fn a_newer_snapshot_replaces_one_still_waiting() {
        let pending = Arc::new(PendingSnapshot::default());
        assert!(pending.put(taken(40)).is_none());
        assert_eq!(pending.put(taken(80)).map(|t| t.inputs), Some(40));
        assert_eq!(pending.take().await.inputs, 80);
        let writer = pending.clone();
        let waiting = tokio::spawn(async move { writer.take().await.inputs });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing to take yet");
        assert!(pending.put(taken(120)).is_none());
        assert_eq!(waiting.await.unwrap(), 120);
    }
}
