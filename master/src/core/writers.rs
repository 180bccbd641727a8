//! `ResumeWriter`: writer epochs, logged before they are handed out, and the seal that makes
//! every later append go to a primary that knows the new epoch.

use cairn_record::WriterId;
use tracing::info;

use super::MasterCore;
use crate::chunkserver_api::ChunkserverApi;
use crate::error::{Error, Result};
use crate::limits::WRITER_EPOCHS_MAX;
use crate::meta::Entry;

impl<C: ChunkserverApi> MasterCore<C> {
    /// `ResumeWriter`: the next epoch of `writer` in the log at `path`, logged before it is
    /// returned, so no epoch is ever handed out twice; then the log's open chunk is sealed, so
    /// that every later append goes to a primary that knows the epoch (ARCHITECTURE.md,
    /// "Writers and epochs").
    pub(crate) async fn resume_writer(&self, path: &str, writer: WriterId) -> Result<u64> {
        if writer == WriterId::PADDING {
            return Err(Error::InvalidArgument {
                reason: "writer id 0 is reserved (padding frames carry it)".to_owned(),
            });
        }
        let lock = self.log_lock(path)?;
        let _serial = lock.lock().await;
        self.check_writable()?;
        let (sequence, epoch) = {
            let mut g = self.lock();
            let log = g.check_log(path, &lock)?;
            let current = log.writer_epochs.get(&writer).copied().unwrap_or(0);
            if current == 0 && log.writer_epochs.len() >= WRITER_EPOCHS_MAX {
                return Err(Error::TooManyWriters {
                    path: path.to_owned(),
                    max: WRITER_EPOCHS_MAX,
                });
            }
            let epoch = current
                .checked_add(1)
                .ok_or_else(|| Error::InvalidArgument {
                    reason: format!("writer {writer:016x} has used every epoch"),
                })?;
            let sequence = g.record(Entry::WriterEpoch {
                path: path.to_owned(),
                writer,
                epoch,
            });
            (sequence, epoch)
        };
        self.commit(sequence).await?;
        info!(log = path, writer = %writer, epoch, "writer resumed");
        // The open chunk's primary does not know the new epoch until the new incarnation
        // appends there, so an older one could still be acknowledged in it meanwhile. Sealing
        // it moves the log to a chunk whose primary is told every epoch at creation: the older
        // incarnation is fenced from the moment this call returns. Resumes are rare (process
        // restarts), so one seal each is cheap.
        let open = {
            let g = self.lock();
            g.meta.open_chunk(path).map(|c| (c.handle, c.version))
        };
        if let Some((handle, version)) = open {
            self.seal_locked(path, &lock, handle, version, "writer resumed")
                .await?;
        }
        Ok(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::core::fake::{Fake, register, start};
    use crate::meta::ChunkState;

    // Proves: ResumeWriter hands out growing epochs per (log, writer), logged (they survive a
    // restart), refuses writer 0, and seals the open chunk so that the next chunk's primary is
    // created knowing the epoch (an older incarnation is fenced at once).
    #[tokio::test]
    async fn resume_writer_logs_an_epoch_and_rolls_the_open_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        {
            let m = start(dir.path(), &fake).await;
            register(&m, &["a:1", "b:1", "c:1"]).await;
            m.create_log("/l", 3, 8192).await.unwrap();
            assert!(m.resume_writer("/l", WriterId(0)).await.is_err());
            assert!(matches!(
                m.resume_writer("/nope", WriterId(7)).await,
                Err(Error::LogNotFound { .. })
            ));
            let first = m.open_chunk("/l").await.unwrap();
            assert_eq!(m.resume_writer("/l", WriterId(7)).await.unwrap(), 1);
            let info = m.stat_log("/l").unwrap();
            assert_eq!(info.chunks[0].state, ChunkState::Sealed);
            let next = m.open_chunk("/l").await.unwrap();
            assert_ne!(next.handle, first.handle);
            let created = fake.st().creates.clone();
            let primary = created
                .iter()
                .find(|(a, c)| c.handle == next.handle && c.primary && *a == next.primary)
                .expect("the next primary was created");
            assert_eq!(primary.1.writer_epochs, BTreeMap::from([(WriterId(7), 1)]));
            assert_eq!(m.resume_writer("/l", WriterId(7)).await.unwrap(), 2);
            assert_eq!(m.resume_writer("/l", WriterId(8)).await.unwrap(), 1);
            m.stop().await;
        }
        let m = start(dir.path(), &fake).await;
        let epochs = m.lock().meta.logs["/l"].writer_epochs.clone();
        assert_eq!(epochs, BTreeMap::from([(WriterId(7), 2), (WriterId(8), 1)]));
        m.stop().await;
    }
}
