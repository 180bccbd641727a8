//! The salvage driver (ARCHITECTURE.md, "Salvage"): the new version logged first, the surviving
//! prefixes fenced, the chunk resealed at the length `crate::salvage::plan` decides, the salvage
//! logged with its lost tail.

use cairn_record::{ChunkHandle, ChunkVersion};
use tokio::time::Instant;
use tracing::{info, warn};

use super::MasterCore;
use crate::chunkserver_api::ChunkserverApi;
use crate::error::{Error, Result};
use crate::heartbeat::ReplicaReport;
use crate::meta::{ChunkState, Entry};
use crate::policy::good_replicas;
use crate::salvage::{SalvagePlan, plan, prefix_holders};
use crate::versions::next_version;

impl<C: ChunkserverApi> MasterCore<C> {
    /// Salvages the sealed chunk `handle` of `path` at `version` (see the module doc), under the
    /// log's lock. Does nothing if the chunk changed or has a good live replica again.
    pub(crate) async fn salvage(
        &self,
        path: &str,
        handle: ChunkHandle,
        version: ChunkVersion,
    ) -> Result<()> {
        let lock = self.log_lock(path)?;
        let _serial = lock.lock().await;
        self.check_writable()?;
        let now = Instant::now();
        let dead_after = self.config().dead_after;
        let start = {
            let mut g = self.lock();
            g.check_log(path, &lock)?;
            let Some(c) = g.meta.chunks.get(&handle) else {
                return Ok(());
            };
            if c.state != ChunkState::Sealed
                || c.version != version
                || !good_replicas(&g.servers, c, now, dead_after).is_empty()
            {
                return Ok(());
            }
            let targets = prefix_holders(&g.servers, c, now, dead_after);
            if targets.is_empty() {
                return Ok(());
            }
            let sealed_len = c.length;
            let new_version = next_version(handle, version)?;
            // The new version is durable before any replica sees it.
            let sequence = g.record(Entry::Version {
                handle,
                version: new_version,
            });
            (sequence, new_version, targets, sealed_len)
        };
        let (sequence, new_version, targets, sealed_len) = start;
        self.commit(sequence).await?;
        warn!(log = path, chunk = %handle, version = %new_version, %sealed_len, survivors = ?targets, "salvaging a sealed chunk whose complete replicas are all lost");
        let outcomes = self.fence_all(handle, new_version, &targets).await;
        let Some(SalvagePlan { length, replicas }) = plan(sealed_len, &outcomes) else {
            return Err(Error::FenceUnanswered { handle });
        };
        let sealed = self.seal_all(handle, new_version, length, &replicas).await;
        if sealed.is_empty() {
            return Err(Error::SealUnanswered { handle });
        }
        let sequence = {
            let mut g = self.lock();
            g.check_log(path, &lock)?;
            let still = g
                .meta
                .chunks
                .get(&handle)
                .is_some_and(|c| c.state == ChunkState::Sealed && c.version == new_version);
            if !still {
                return Ok(());
            }
            let now = Instant::now();
            for a in &sealed {
                g.servers
                    .set_replica(a, now, ReplicaReport::sealed(handle, new_version, length));
            }
            g.record(Entry::Salvage {
                handle,
                version: new_version,
                length,
                replicas: sealed.clone(),
            })
        };
        self.commit(sequence).await?;
        if length < sealed_len {
            warn!(log = path, chunk = %handle, version = %new_version, %length, lost_from = %length, lost_end = %sealed_len, replicas = ?sealed, "chunk salvaged; its tail past the surviving replicas is lost (never acknowledged unless a second fault cut them)");
        } else {
            info!(log = path, chunk = %handle, version = %new_version, %length, replicas = ?sealed, "chunk salvaged whole from a replica that missed its seal");
        }
        Ok(())
    }
}
