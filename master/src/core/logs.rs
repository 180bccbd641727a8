//! The namespace operations: `CreateLog` (checked against the cluster's size), `DeleteLog`,
//! `ListLogs` and `StatLog`, with their answers.

use cairn_record::limits::{CHUNK_BYTES_DEFAULT, check_chunk_bytes};
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};
use tokio::time::Instant;
use tracing::info;

use super::{Inner, LogLock, MasterCore};
use crate::chunkserver_api::ChunkserverApi;
use crate::error::{Error, Result};
use crate::limits::{
    REPLICATION_MAX, REPLICATION_MIN, STAT_LOG_PAGE_BYTES_MAX, STAT_LOG_PAGE_CHUNKS_MAX,
    STAT_LOG_UNPAGED_BYTES_MAX,
};
use crate::meta::{ChunkMeta, ChunkState, Entry, LogMeta};
use crate::namespace::check_path;
use crate::policy::{chunk_length, readable_replicas};

/// A log as `CreateLog`, `ListLogs` and `StatLog` return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogInfo {
    pub(crate) path: String,
    pub(crate) replication: u32,
    /// Fewest replicas a new chunk opens on.
    pub(crate) min_replicas: u32,
    pub(crate) chunk_bytes: u64,
    /// The chunkserver every chunk is placed on, or empty: anywhere.
    pub(crate) place_on: String,
    pub(crate) chunk_count: u32,
    /// Filled by `StatLog` only.
    pub(crate) chunks: Vec<ChunkInfo>,
}

/// A chunk as `StatLog` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkInfo {
    pub(crate) index: u32,
    pub(crate) handle: ChunkHandle,
    pub(crate) state: ChunkState,
    /// Sealed: the sealed length. Open: the largest length a replica reported (32 if none).
    pub(crate) length: ChunkOffset,
    pub(crate) version: ChunkVersion,
    /// Live chunkservers whose replica may serve reads (`policy::readable_replicas`): the good
    /// ones of a sealed chunk; of an open one, those at its version, neither failed nor corrupt.
    pub(crate) replicas: Vec<String>,
    /// Open chunks: the fixed primary. Empty once sealed.
    pub(crate) primary: String,
    /// Sealed chunks: 0, or the end of a lost tail `[length, lost_end)` (see [`ChunkMeta`]).
    pub(crate) lost_end: ChunkOffset,
}

impl<C: ChunkserverApi> MasterCore<C> {
    /// `CreateLog` with every new chunk needing its full replication factor (tests).
    #[cfg(test)]
    pub(crate) async fn create_log(
        &self,
        path: &str,
        replication: u32,
        chunk_bytes: u64,
    ) -> Result<LogInfo> {
        self.create_log_with(path, replication, 0, chunk_bytes, "")
            .await
    }

    /// `CreateLog`: `replication` 0 is the default factor, `min_replicas` 0 the factor. Refused
    /// (`ClusterTooSmall`) when fewer than `min_replicas` chunkservers are live, or fewer than
    /// `replication` registered: no chunk of it could be opened or ever fully replicated.
    /// `place_on` (empty: anywhere) names the chunkserver every chunk of the log is placed on,
    /// as its primary; it must be live now, and an allocation while it is not fails too
    /// (`PlacementUnavailable`, retryable) rather than placing the chunk elsewhere.
    pub(crate) async fn create_log_with(
        &self,
        path: &str,
        replication: u32,
        min_replicas: u32,
        chunk_bytes: u64,
        place_on: &str,
    ) -> Result<LogInfo> {
        check_path(path)?;
        let replication = match replication {
            0 => self.config.default_replication,
            r => r,
        };
        if !(REPLICATION_MIN..=REPLICATION_MAX).contains(&replication) {
            return Err(Error::BadReplication { replication });
        }
        let min_replicas = match min_replicas {
            0 => replication,
            k => k,
        };
        if !(1..=replication).contains(&min_replicas) {
            return Err(Error::BadMinReplicas {
                min_replicas,
                replication,
            });
        }
        let chunk_bytes = match chunk_bytes {
            0 => CHUNK_BYTES_DEFAULT,
            b => b,
        };
        check_chunk_bytes(chunk_bytes).map_err(|source| Error::BadChunkBytes { source })?;
        self.check_writable()?;
        let sequence = {
            let mut g = self.lock();
            if g.meta.logs.contains_key(path) {
                return Err(Error::LogExists {
                    path: path.to_owned(),
                });
            }
            self.check_cluster_size(&g, path, replication, min_replicas, true)?;
            if !place_on.is_empty()
                && !g
                    .servers
                    .is_live(place_on, Instant::now(), self.config.dead_after)
            {
                return Err(Error::PlacementUnavailable {
                    path: path.to_owned(),
                    address: place_on.to_owned(),
                    reason: "it is not live".to_owned(),
                });
            }
            g.log_locks.insert(path.to_owned(), LogLock::default());
            g.record(Entry::CreateLog {
                path: path.to_owned(),
                replication,
                min_replicas,
                chunk_bytes,
                place_on: place_on.to_owned(),
            })
        };
        self.commit(sequence).await?;
        info!(
            log = path,
            replication, min_replicas, chunk_bytes, place_on, "log created"
        );
        Ok(LogInfo {
            path: path.to_owned(),
            replication,
            min_replicas,
            chunk_bytes,
            place_on: place_on.to_owned(),
            chunk_count: 0,
            chunks: Vec::new(),
        })
    }

    /// Whether the cluster is big enough for a log of `replication` with `min_replicas`. To
    /// create it: at least `min_replicas` live chunkservers and `replication` registered ones.
    /// To allocate a chunk (`creating` false): at least `min_replicas` registered ones; fewer
    /// live ones is a passing outage, answered by placement with the retryable
    /// `NotEnoughChunkservers`. Within the first dead-after period of this master, chunkservers
    /// may not have registered yet: then the answer is that retryable error too.
    pub(super) fn check_cluster_size(
        &self,
        g: &Inner,
        path: &str,
        replication: u32,
        min_replicas: u32,
        creating: bool,
    ) -> Result<()> {
        let now = Instant::now();
        let live = g.servers.live(now, self.config.dead_after).len();
        let known = g.servers.known_count();
        let problem = if creating && (min_replicas as usize) > live {
            Some(("min replicas", min_replicas, "live", live))
        } else if (min_replicas as usize) > known {
            Some(("min replicas", min_replicas, "registered", known))
        } else if creating && (replication as usize) > known {
            Some(("replication", replication, "registered", known))
        } else {
            None
        };
        let Some((what, need, which, have)) = problem else {
            return Ok(());
        };
        if now.saturating_duration_since(self.started) < self.config.dead_after {
            return Err(Error::NotEnoughChunkservers {
                need: need as usize,
                have,
            });
        }
        let what = if min_replicas == replication {
            "replication"
        } else {
            what
        };
        Err(Error::ClusterTooSmall {
            path: path.to_owned(),
            what,
            need,
            which,
            have,
        })
    }

    /// `DeleteLog`. Its replicas are deleted through heartbeat replies once the deletion is
    /// durable.
    pub(crate) async fn delete_log(&self, path: &str) -> Result<()> {
        self.check_writable()?;
        let (sequence, gone) = {
            let mut g = self.lock();
            let Some(log) = g.meta.logs.get(path) else {
                return Err(Error::LogNotFound {
                    path: path.to_owned(),
                });
            };
            let gone = log.chunks.clone();
            g.log_locks.remove(path);
            let sequence = g.record(Entry::DeleteLog {
                path: path.to_owned(),
            });
            (sequence, gone)
        };
        self.commit(sequence).await?;
        self.forget(&gone);
        info!(log = path, chunks = gone.len(), "log deleted");
        Ok(())
    }

    /// `ListLogs`: logs whose path starts with `prefix`, without chunks.
    pub(crate) fn list_logs(&self, prefix: &str) -> Vec<LogInfo> {
        let g = self.lock();
        g.meta
            .logs
            .range(prefix.to_owned()..)
            .take_while(|(p, _)| p.starts_with(prefix))
            .map(|(_, log)| log_info(log))
            .collect()
    }

    /// `StatLog` of the whole log, as a request without paging fields (tests).
    #[cfg(test)]
    pub(crate) fn stat_log(&self, path: &str) -> Result<LogInfo> {
        self.stat_log_page(path, 0, None)
    }

    /// `StatLog`: the chunks from index `first`, at most `max` of them (0: the page limit)
    /// within the page limits (`STAT_LOG_PAGE_*`), at least one if any remain. `max` absent
    /// (a client that predates paging) asks for the whole log: `StatTooLarge` if it does not fit
    /// in one answer, rather than a list that silently ends early.
    pub(crate) fn stat_log_page(
        &self,
        path: &str,
        first: u32,
        max: Option<u32>,
    ) -> Result<LogInfo> {
        let g = self.lock();
        let log = g.meta.logs.get(path).ok_or_else(|| Error::LogNotFound {
            path: path.to_owned(),
        })?;
        let (count_max, bytes_max) = match max {
            None => (usize::MAX, STAT_LOG_UNPAGED_BYTES_MAX),
            Some(0) => (STAT_LOG_PAGE_CHUNKS_MAX, STAT_LOG_PAGE_BYTES_MAX),
            Some(n) => (
                (n as usize).min(STAT_LOG_PAGE_CHUNKS_MAX),
                STAT_LOG_PAGE_BYTES_MAX,
            ),
        };
        let now = Instant::now();
        let mut info = log_info(log);
        let mut bytes = 0usize;
        for h in log.chunks.iter().skip(first as usize) {
            if info.chunks.len() >= count_max {
                break;
            }
            let c = self.chunk_info(&g, &g.meta.chunks[h], now);
            bytes = bytes.saturating_add(chunk_info_bytes(&c));
            if bytes > bytes_max && !info.chunks.is_empty() {
                if max.is_none() {
                    return Err(Error::StatTooLarge {
                        path: path.to_owned(),
                        chunks: log.chunks.len(),
                    });
                }
                break;
            }
            info.chunks.push(c);
        }
        Ok(info)
    }

    fn chunk_info(&self, g: &Inner, c: &ChunkMeta, now: Instant) -> ChunkInfo {
        // Only good replicas are read sources of a sealed chunk (policy.rs).
        let replicas = readable_replicas(&g.servers, c, now, self.config.dead_after);
        let length = chunk_length(c, &g.servers.replicas_of(c.handle));
        ChunkInfo {
            index: c.index,
            handle: c.handle,
            state: c.state,
            length,
            version: c.version,
            replicas,
            primary: c.primary.clone(),
            lost_end: c.lost_end,
        }
    }
}

fn log_info(log: &LogMeta) -> LogInfo {
    LogInfo {
        path: log.path.clone(),
        replication: log.replication,
        min_replicas: log.min_replicas(),
        chunk_bytes: log.chunk_bytes,
        place_on: log.place_on.clone(),
        chunk_count: log.chunks.len() as u32,
        chunks: Vec::new(),
    }
}

/// An upper estimate of a chunk's encoded size in a `StatLog` answer: its fixed fields (tags,
/// varints at their longest) and its addresses with their framing.
fn chunk_info_bytes(c: &ChunkInfo) -> usize {
    const FIXED: usize = 64;
    FIXED + c.primary.len() + c.replicas.iter().map(|a| a.len() + 4).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::config::Config;
    use crate::core::fake::{Fake, register, start};
    use crate::meta::Metadata;

    // Once chunkservers have had time to register: a log asking for more replicas than there
    // are chunkservers is refused (FAILED_PRECONDITION naming both counts), and so is a bad
    // minimum; a log with a minimum below its factor opens chunks on the live chunkservers
    // (at least the minimum) while one is dead.
    #[tokio::test(start_paused = true)]
    async fn log_options_checked_against_the_cluster_and_min_replicas_open_on_fewer() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        register(&m, &["a:1", "b:1", "c:1"]).await;
        tokio::time::advance(m.config.dead_after).await;
        for a in ["a:1", "b:1"] {
            m.heartbeat(a, &[]).await.unwrap();
        }
        let err = m.create_log_with("/five", 5, 0, 0, "").await.unwrap_err();
        assert!(matches!(err, Error::ClusterTooSmall { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "log /five: replication 5 exceeds the 2 live chunkserver(s)"
        );
        let err = m.create_log_with("/m", 3, 3, 0, "").await.unwrap_err();
        assert!(matches!(err, Error::ClusterTooSmall { .. }), "{err:?}");
        assert!(matches!(
            m.create_log_with("/m", 3, 4, 0, "").await,
            Err(Error::BadMinReplicas { .. })
        ));
        let info = m.create_log_with("/m", 3, 2, 8192, "").await.unwrap();
        assert_eq!((info.replication, info.min_replicas), (3, 2));
        let loc = m.open_chunk("/m").await.unwrap();
        let mut on: Vec<String> = loc.secondaries.clone();
        on.push(loc.primary.clone());
        on.sort();
        assert_eq!(on, vec!["a:1", "b:1"]);
        assert_eq!(m.list_logs("/m")[0].min_replicas, 2);
        m.stop().await;
    }

    // Namespace errors: bad paths and options, duplicates, unknown logs; list by prefix.
    #[tokio::test]
    async fn namespace_errors_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let m = start(dir.path(), &fake).await;
        // Logs of the default factor need that many chunkservers.
        register(&m, &["a:1", "b:1", "c:1"]).await;
        assert!(matches!(
            m.create_log("nope", 3, 0).await,
            Err(Error::BadPath { .. })
        ));
        assert!(matches!(
            m.create_log("/a", 8, 0).await,
            Err(Error::BadReplication { .. })
        ));
        assert!(matches!(
            m.create_log("/a", 3, 100).await,
            Err(Error::BadChunkBytes { .. })
        ));
        let info = m.create_log("/a/x", 0, 0).await.unwrap();
        assert_eq!(
            (info.replication, info.chunk_bytes),
            (3, CHUNK_BYTES_DEFAULT)
        );
        m.create_log("/a/y", 1, 4096).await.unwrap();
        m.create_log("/b", 1, 4096).await.unwrap();
        assert!(matches!(
            m.create_log("/b", 1, 4096).await,
            Err(Error::LogExists { .. })
        ));
        let listed: Vec<String> = m.list_logs("/a/").into_iter().map(|l| l.path).collect();
        assert_eq!(listed, vec!["/a/x", "/a/y"]);
        m.delete_log("/a/x").await.unwrap();
        assert!(matches!(
            m.delete_log("/a/x").await,
            Err(Error::LogNotFound { .. })
        ));
        assert!(matches!(m.stat_log("/a/x"), Err(Error::LogNotFound { .. })));
        assert_eq!(m.list_logs("").len(), 2);
        m.stop().await;
    }

    // StatLog paging over a log too big for one answer: pages are capped by the named limits
    // and together list every chunk exactly once, in order; an unpaged request (a client that
    // predates paging) is refused rather than answered with a shortened list.
    #[tokio::test]
    async fn stat_log_pages_cover_a_log_of_any_length() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Fake::default());
        let node = crate::raft::node::start_for_test(dir.path(), None).await;
        let last = node.state.applied().sequence;
        let mut meta = Metadata::default();
        meta.apply(&Entry::CreateLog {
            path: "/big".into(),
            replication: 1,
            min_replicas: 0,
            chunk_bytes: 8192,
            place_on: String::new(),
        })
        .unwrap();
        // More chunks than the unpaged answer may hold at the estimated size of each.
        let n = STAT_LOG_UNPAGED_BYTES_MAX / 64 + 1000;
        for i in 0..n as u64 {
            let handle = ChunkHandle(i + 1);
            meta.apply(&Entry::Allocate {
                path: "/big".into(),
                index: i as u32,
                handle,
                version: ChunkVersion(1),
                replicas: vec!["a:1".into()],
            })
            .unwrap();
            meta.apply(&Entry::Seal {
                handle,
                version: ChunkVersion(1),
                length: ChunkOffset(32),
                replicas: vec!["a:1".into()],
                writer_marks: Vec::new(),
            })
            .unwrap();
        }
        let m = MasterCore::new(Config::new(dir.path()), fake, meta, last, node.raft, 7);
        assert!(matches!(
            m.stat_log_page("/big", 0, None),
            Err(Error::StatTooLarge { .. })
        ));
        let page = m.stat_log_page("/big", 0, Some(0)).unwrap();
        assert_eq!(page.chunks.len(), STAT_LOG_PAGE_CHUNKS_MAX);
        assert_eq!(page.chunk_count as usize, n);
        let page = m.stat_log_page("/big", 5, Some(3)).unwrap();
        let indexes: Vec<u32> = page.chunks.iter().map(|c| c.index).collect();
        assert_eq!(indexes, vec![5, 6, 7]);
        let mut next = 0u32;
        let mut pages = 0;
        while (next as usize) < n {
            let page = m.stat_log_page("/big", next, Some(u32::MAX)).unwrap();
            assert!(!page.chunks.is_empty());
            assert!(page.chunks.len() <= STAT_LOG_PAGE_CHUNKS_MAX);
            for c in &page.chunks {
                assert_eq!(c.index, next);
                next += 1;
            }
            pages += 1;
        }
        assert!(pages > 1);
        assert!(
            m.stat_log_page("/big", next, Some(10))
                .unwrap()
                .chunks
                .is_empty()
        );
        m.stop().await;
    }
}
