//! The sealed chunks of logs as the master last listed them, so that a replay can start and
//! read them while the master cannot be reached (it is restarting, or a group of masters has
//! no leader for a moment).
//!
//! A sealed chunk's place in its log, handle and sealed length do not change; its replicas may
//! move (a repair copies one and deletes another), and a reader that finds a listed replica
//! gone tries the others and asks the master again. Only each log's prefix of sealed chunks is
//! kept: the open chunk's state is the master's to tell. Bounded by
//! [`SEALED_CACHE_CHUNKS_MAX`](crate::limits::SEALED_CACHE_CHUNKS_MAX) chunks in all: a log
//! that does not fit keeps its first chunks, and other logs are dropped to make room.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::client::{ChunkState, LogStat};
use crate::limits::SEALED_CACHE_CHUNKS_MAX;

/// See the module doc.
#[derive(Debug, Default)]
pub(crate) struct SealedCache {
    logs: Mutex<HashMap<String, LogStat>>,
}

impl SealedCache {
    /// Remembers the sealed prefix of `stat`, the master's full listing of its log.
    pub(crate) fn remember(&self, stat: &LogStat) {
        let sealed = stat
            .chunks
            .iter()
            .take_while(|c| c.state == ChunkState::Sealed)
            .take(SEALED_CACHE_CHUNKS_MAX)
            .cloned()
            .collect::<Vec<_>>();
        let mut logs = self.lock();
        logs.remove(&stat.path);
        let mut held: usize = logs.values().map(|l| l.chunks.len()).sum();
        while held + sealed.len() > SEALED_CACHE_CHUNKS_MAX {
            let Some(victim) = logs.keys().next().cloned() else {
                break;
            };
            held -= logs.remove(&victim).map_or(0, |l| l.chunks.len());
        }
        if !sealed.is_empty() {
            logs.insert(
                stat.path.clone(),
                LogStat {
                    chunks: sealed,
                    ..stat.clone()
                },
            );
        }
    }

    /// Forgets `path` (the master said it does not exist).
    pub(crate) fn forget(&self, path: &str) {
        self.lock().remove(path);
    }

    /// The sealed chunks of `path` last listed, with the log's options.
    pub(crate) fn get(&self, path: &str) -> Option<LogStat> {
        self.lock().get(path).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LogStat>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ChunkStat;
    use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};

    fn stat(path: &str, sealed: u32, open: bool) -> LogStat {
        let chunk = |index: u32, state| ChunkStat {
            index,
            handle: ChunkHandle(u64::from(index) + 1),
            state,
            length: ChunkOffset::FIRST_FRAME,
            version: ChunkVersion::FIRST,
            replicas: vec!["cs:1".into()],
            primary: None,
            lost_end: ChunkOffset::ZERO,
        };
        let mut chunks: Vec<ChunkStat> =
            (0..sealed).map(|i| chunk(i, ChunkState::Sealed)).collect();
        if open {
            chunks.push(chunk(sealed, ChunkState::Open));
        }
        LogStat {
            path: path.into(),
            replication: 3,
            min_replicas: 3,
            chunk_bytes: 1 << 20,
            chunks,
        }
    }

    // Proves: only the sealed prefix is kept (never the open chunk), a newer listing replaces
    // the older, a log with no sealed chunk is not cached, and forgetting removes it.
    #[test]
    fn keeps_the_sealed_prefix() {
        let cache = SealedCache::default();
        cache.remember(&stat("/a", 2, true));
        assert_eq!(cache.get("/a").unwrap().chunks.len(), 2);
        cache.remember(&stat("/a", 5, true));
        let got = cache.get("/a").unwrap();
        assert_eq!(got.chunks.len(), 5);
        assert!(got.chunks.iter().all(|c| c.state == ChunkState::Sealed));
        cache.remember(&stat("/b", 0, true));
        assert!(cache.get("/b").is_none());
        cache.forget("/a");
        assert!(cache.get("/a").is_none());
    }

    // Proves: the cache never holds more than its bound: other logs are dropped to make room,
    // and a log longer than the bound keeps its first chunks.
    #[test]
    fn stays_within_its_bound() {
        let cache = SealedCache::default();
        let half = (SEALED_CACHE_CHUNKS_MAX / 2) as u32;
        cache.remember(&stat("/a", half, false));
        cache.remember(&stat("/b", half, false));
        cache.remember(&stat("/c", half, false));
        let held: usize = ["/a", "/b", "/c"]
            .iter()
            .filter_map(|p| cache.get(p))
            .map(|l| l.chunks.len())
            .sum();
        assert!(held <= SEALED_CACHE_CHUNKS_MAX, "{held}");
        assert!(cache.get("/c").is_some(), "the newest listing is kept");
        cache.remember(&stat("/d", SEALED_CACHE_CHUNKS_MAX as u32 + 10, false));
        assert_eq!(
            cache.get("/d").unwrap().chunks.len(),
            SEALED_CACHE_CHUNKS_MAX
        );
    }
}
