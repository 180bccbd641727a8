//! The master's durable metadata (logs and chunks) and the operation-log entries that change it.
//!
//! [`Metadata::apply`] is the only way metadata changes, both live and during replay, so a
//! restarted master rebuilds exactly the state it had acknowledged.

use std::collections::BTreeMap;

use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, WriterId};
use serde::{Deserialize, Serialize};

use crate::limits::{WRITER_EPOCHS_MAX, WRITER_MARKS_MAX};

/// A writer's last record durable on every replica of a sealed chunk (its sequence and frame
/// CRC), handed from a sealed chunk to the next primary so that it can answer a resend of that
/// record "already stored" and tell a different record under the same sequence. Logged as
/// `{"writer", "sequence", "frame_crc"}` (`frame_crc` absent in entries written before it was
/// carried: 0, a mark used as a sequence only).
pub(crate) use cairn_record::WriterMark;

/// Whether a chunk still takes appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChunkState {
    Open,
    Sealed,
}

/// One log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogMeta {
    pub(crate) path: String,
    pub(crate) replication: u32,
    /// Fewest replicas a new chunk opens on (`create --min-replicas`); 0 in data written before
    /// the field existed, meaning `replication` ([`LogMeta::min_replicas`]).
    #[serde(default)]
    pub(crate) min_replicas: u32,
    pub(crate) chunk_bytes: u64,
    /// The chunkserver every chunk of this log is placed on (its primary), or empty: anywhere.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) place_on: String,
    /// Marks to hand to the next chunk's primary (from the last seals), the most recently
    /// active writers first, at most [`WRITER_MARKS_MAX`].
    #[serde(default)]
    pub(crate) writer_marks: Vec<WriterMark>,
    /// Epoch of each resumed writer (`ResumeWriter`), at most [`WRITER_EPOCHS_MAX`].
    #[serde(default)]
    pub(crate) writer_epochs: BTreeMap<WriterId, u64>,
    /// Chunk handles in log order; rebuilt from the chunks' `index` when loading a checkpoint.
    #[serde(skip)]
    pub(crate) chunks: Vec<ChunkHandle>,
}

impl LogMeta {
    /// Fewest live chunkservers a new chunk of this log opens on: `min_replicas`, or the
    /// replication factor where it is unset (0).
    pub(crate) fn min_replicas(&self) -> u32 {
        match self.min_replicas {
            0 => self.replication,
            k => k.min(self.replication),
        }
    }
}

/// One chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkMeta {
    #[serde(with = "hex_handle")]
    pub(crate) handle: ChunkHandle,
    /// Path of the log it belongs to.
    pub(crate) log: String,
    /// Position in the log, from 0.
    pub(crate) index: u32,
    pub(crate) version: ChunkVersion,
    pub(crate) state: ChunkState,
    /// The sealed length; 0 while open.
    pub(crate) length: ChunkOffset,
    /// The fixed primary while open; empty once sealed.
    pub(crate) primary: String,
    /// Open: the chunkservers it was allocated on, primary first. Sealed: those that sealed it.
    pub(crate) replicas: Vec<String>,
    /// Sealed chunks: 0, or the sealed length before a salvage cut the chunk back to `length`
    /// (every replica holding bytes past it was lost): bytes `[length, lost_end)` are gone.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) lost_end: ChunkOffset,
}

fn is_zero(n: &ChunkOffset) -> bool {
    *n == ChunkOffset::ZERO
}

/// One operation-log entry: the payload of one frame, a JSON object tagged by `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// First frame of every operation-log file.
    Begin {
        format: u32,
    },
    CreateLog {
        path: String,
        replication: u32,
        /// Absent (0) in entries written before it existed: the replication factor.
        #[serde(default)]
        min_replicas: u32,
        chunk_bytes: u64,
        /// (Version 3) the chunkserver every chunk is placed on; absent: anywhere.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        place_on: String,
    },
    DeleteLog {
        path: String,
    },
    /// A new chunk, version 1, logged before any `CreateReplica` goes out.
    Allocate {
        path: String,
        index: u32,
        #[serde(with = "hex_handle")]
        handle: ChunkHandle,
        version: ChunkVersion,
        /// Primary first.
        replicas: Vec<String>,
    },
    /// A version bump, logged before any replica is fenced with it (seal, salvage). The
    /// master never takes a version from a replica: it issues every version itself.
    Version {
        #[serde(with = "hex_handle")]
        handle: ChunkHandle,
        version: ChunkVersion,
    },
    Seal {
        #[serde(with = "hex_handle")]
        handle: ChunkHandle,
        version: ChunkVersion,
        length: ChunkOffset,
        replicas: Vec<String>,
        /// The marks the next chunk's primary inherits.
        writer_marks: Vec<WriterMark>,
    },
    /// A sealed chunk none of whose replicas holding its whole sealed length survives, resealed
    /// at `version` on `replicas` at the longest `length` a surviving replica held (ARCHITECTURE.md,
    /// "Salvage"). Bytes past it, up to the previous sealed length, are recorded as lost.
    Salvage {
        #[serde(with = "hex_handle")]
        handle: ChunkHandle,
        version: ChunkVersion,
        length: ChunkOffset,
        replicas: Vec<String>,
    },
    /// `ResumeWriter`: `writer` of the log at `path` starts epoch `epoch`.
    WriterEpoch {
        path: String,
        writer: WriterId,
        epoch: u64,
    },
    /// The cluster's id, proposed once by the group's first leader (the id of its data
    /// directory's `cluster-id` file): every master of the group then answers chunkservers with
    /// it. Never changed once set.
    ClusterId {
        id: u64,
    },
    /// An open chunk that provably holds no data (no replica was ever created, or every
    /// replica said it has none) is dropped from its log.
    Abandon {
        #[serde(with = "hex_handle")]
        handle: ChunkHandle,
    },
}

#[cfg(test)]
impl Entry {
    /// Tests' entry creating the log `path`: replication 3, 1 MiB chunks.
    pub(crate) fn test_create(path: &str) -> Entry {
        Entry::CreateLog {
            path: path.to_owned(),
            replication: 3,
            min_replicas: 0,
            chunk_bytes: 1 << 20,
            place_on: String::new(),
        }
    }
}

/// Logs and chunks, and the cluster's id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub(crate) logs: BTreeMap<String, LogMeta>,
    pub(crate) chunks: BTreeMap<ChunkHandle, ChunkMeta>,
    /// The cluster's id (`Entry::ClusterId`); 0 until the group's first leader sets it.
    pub(crate) cluster_id: u64,
}

impl Metadata {
    /// Applies `entry`. Returns the handles that stopped existing (deleted log, abandoned chunk).
    /// An error means the entry does not fit the state: a bug or a damaged log, never ignored.
    pub(crate) fn apply(&mut self, entry: &Entry) -> Result<Vec<ChunkHandle>, String> {
        match entry {
            Entry::Begin { .. } => Err("begin entry in the middle of the log".to_owned()),
            Entry::CreateLog {
                path,
                replication,
                min_replicas,
                chunk_bytes,
                place_on,
            } => {
                if self.logs.contains_key(path) {
                    return Err(format!("create of existing log {path}"));
                }
                self.logs.insert(
                    path.clone(),
                    LogMeta {
                        path: path.clone(),
                        replication: *replication,
                        min_replicas: *min_replicas,
                        chunk_bytes: *chunk_bytes,
                        place_on: place_on.clone(),
                        writer_marks: Vec::new(),
                        writer_epochs: BTreeMap::new(),
                        chunks: Vec::new(),
                    },
                );
                Ok(Vec::new())
            }
            Entry::DeleteLog { path } => {
                let log = self
                    .logs
                    .remove(path)
                    .ok_or_else(|| format!("delete of unknown log {path}"))?;
                for h in &log.chunks {
                    self.chunks.remove(h);
                }
                Ok(log.chunks)
            }
            Entry::Allocate {
                path,
                index,
                handle,
                version,
                replicas,
            } => {
                if self.chunks.contains_key(handle) {
                    return Err(format!("allocation of existing chunk {handle}"));
                }
                let log = self
                    .logs
                    .get_mut(path)
                    .ok_or_else(|| format!("allocation in unknown log {path}"))?;
                if *index as usize != log.chunks.len() {
                    return Err(format!("allocation of chunk index {index} in {path}"));
                }
                if let Some(last) = log.chunks.last()
                    && self.chunks[last].state == ChunkState::Open
                {
                    return Err(format!("allocation in {path} while chunk {last} is open"));
                }
                let Some(primary) = replicas.first() else {
                    return Err(format!("allocation of chunk {handle} with no replicas"));
                };
                log.chunks.push(*handle);
                self.chunks.insert(
                    *handle,
                    ChunkMeta {
                        handle: *handle,
                        log: path.clone(),
                        index: *index,
                        version: *version,
                        state: ChunkState::Open,
                        length: ChunkOffset::ZERO,
                        primary: primary.clone(),
                        replicas: replicas.clone(),
                        lost_end: ChunkOffset::ZERO,
                    },
                );
                Ok(Vec::new())
            }
            Entry::Version { handle, version } => {
                let chunk = self
                    .chunks
                    .get_mut(handle)
                    .ok_or_else(|| format!("version of unknown chunk {handle}"))?;
                if *version <= chunk.version {
                    return Err(format!(
                        "version {version} of chunk {handle} does not exceed {}",
                        chunk.version
                    ));
                }
                chunk.version = *version;
                Ok(Vec::new())
            }
            Entry::Seal {
                handle,
                version,
                length,
                replicas,
                writer_marks,
            } => {
                let chunk = self
                    .chunks
                    .get_mut(handle)
                    .ok_or_else(|| format!("seal of unknown chunk {handle}"))?;
                if chunk.state != ChunkState::Open || *version < chunk.version {
                    return Err(format!(
                        "seal of chunk {handle} that is not open at {version}"
                    ));
                }
                chunk.state = ChunkState::Sealed;
                chunk.version = *version;
                chunk.length = *length;
                chunk.primary.clear();
                chunk.replicas = replicas.clone();
                let log = chunk.log.clone();
                let log = self
                    .logs
                    .get_mut(&log)
                    .ok_or_else(|| format!("chunk {handle} of unknown log {log}"))?;
                log.writer_marks = writer_marks.clone();
                Ok(Vec::new())
            }
            Entry::Salvage {
                handle,
                version,
                length,
                replicas,
            } => {
                let chunk = self
                    .chunks
                    .get_mut(handle)
                    .ok_or_else(|| format!("salvage of unknown chunk {handle}"))?;
                if chunk.state != ChunkState::Sealed
                    || *version < chunk.version
                    || *length > chunk.length
                {
                    return Err(format!(
                        "salvage of chunk {handle} at version {version}, length {length}: it is \
                         not sealed at or below them"
                    ));
                }
                if *length < chunk.length {
                    chunk.lost_end = chunk.lost_end.max(chunk.length);
                }
                chunk.version = *version;
                chunk.length = *length;
                chunk.replicas = replicas.clone();
                Ok(Vec::new())
            }
            Entry::WriterEpoch {
                path,
                writer,
                epoch,
            } => {
                let log = self
                    .logs
                    .get_mut(path)
                    .ok_or_else(|| format!("writer epoch in unknown log {path}"))?;
                let current = log.writer_epochs.get(writer).copied().unwrap_or(0);
                if *epoch <= current {
                    return Err(format!(
                        "epoch {epoch} of writer {writer:016x} in {path} does not exceed {current}"
                    ));
                }
                if current == 0 && log.writer_epochs.len() >= WRITER_EPOCHS_MAX {
                    return Err(format!(
                        "more than {WRITER_EPOCHS_MAX} resumed writers in {path}"
                    ));
                }
                log.writer_epochs.insert(*writer, *epoch);
                Ok(Vec::new())
            }
            Entry::ClusterId { id } => {
                if *id == 0 || (self.cluster_id != 0 && self.cluster_id != *id) {
                    return Err(format!(
                        "cluster id {id:016x} over {:016x}",
                        self.cluster_id
                    ));
                }
                self.cluster_id = *id;
                Ok(Vec::new())
            }
            Entry::Abandon { handle } => {
                let chunk = self
                    .chunks
                    .get(handle)
                    .ok_or_else(|| format!("abandon of unknown chunk {handle}"))?;
                let log = self
                    .logs
                    .get_mut(&chunk.log)
                    .ok_or_else(|| format!("chunk {handle} of unknown log"))?;
                if chunk.state != ChunkState::Open || log.chunks.last() != Some(handle) {
                    return Err(format!(
                        "abandon of chunk {handle} that is not the open one"
                    ));
                }
                log.chunks.pop();
                self.chunks.remove(handle);
                Ok(vec![*handle])
            }
        }
    }

    /// The log's open chunk, if its last chunk is open.
    pub(crate) fn open_chunk(&self, path: &str) -> Option<&ChunkMeta> {
        let last = self.logs.get(path)?.chunks.last()?;
        let chunk = &self.chunks[last];
        (chunk.state == ChunkState::Open).then_some(chunk)
    }
}

/// Merges the marks of a just sealed chunk (`fresh`, most recently active writer first) with
/// the ones the log carried so far (`carried`, same order, from earlier chunks): fresh ones
/// come first, then the carried ones in their order; a writer in both keeps its place in
/// `fresh` and the mark with the higher sequence. At most [`WRITER_MARKS_MAX`] are kept: the
/// most recently active writers (not the lowest ids).
pub(crate) fn merge_marks(carried: &[WriterMark], fresh: &[WriterMark]) -> Vec<WriterMark> {
    let mut at: BTreeMap<WriterId, usize> = BTreeMap::new();
    let mut out: Vec<WriterMark> = Vec::new();
    for m in fresh.iter().chain(carried) {
        match at.get(&m.writer) {
            Some(&i) => {
                if m.sequence > out[i].sequence {
                    out[i] = *m;
                }
            }
            None => {
                at.insert(m.writer, out.len());
                out.push(*m);
            }
        }
    }
    out.truncate(WRITER_MARKS_MAX);
    out
}

/// Serde for chunk handles as 16 hex digits, the form of replica file names.
pub(crate) mod hex_handle {
    use cairn_record::ChunkHandle;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(h: &ChunkHandle, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(h)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChunkHandle, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 16 {
            return Err(serde::de::Error::custom(
                "chunk handle is not 16 hex digits",
            ));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Test fixture: a log `/l` (replication 3, 1 MiB chunks) whose one chunk `handle` is open at
/// version 1 on `a` (primary), `b` and `c`.
#[cfg(test)]
pub(crate) fn one_open_chunk(handle: ChunkHandle) -> Metadata {
    let mut meta = Metadata::default();
    for e in [
        Entry::CreateLog {
            path: "/l".into(),
            replication: 3,
            min_replicas: 3,
            chunk_bytes: 1 << 20,
            place_on: String::new(),
        },
        Entry::Allocate {
            path: "/l".into(),
            index: 0,
            handle,
            version: crate::versions::FIRST_VERSION,
            replicas: vec!["a".into(), "b".into(), "c".into()],
        },
    ] {
        meta.apply(&e).expect("a fresh log takes its first chunk");
    }
    meta
}

/// Test fixture: [`one_open_chunk`] sealed at version 2, length 4096, on `a` alone (`b` and `c`
/// missed the seal).
#[cfg(test)]
pub(crate) fn one_sealed_chunk(handle: ChunkHandle) -> Metadata {
    let mut meta = one_open_chunk(handle);
    for e in [
        Entry::Version {
            handle,
            version: ChunkVersion(2),
        },
        Entry::Seal {
            handle,
            version: ChunkVersion(2),
            length: ChunkOffset(4096),
            replicas: vec!["a".into()],
            writer_marks: Vec::new(),
        },
    ] {
        meta.apply(&e)
            .expect("an open chunk takes a version and a seal");
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_marks_keep_their_logged_json_form() {
        // Proves: the shared `cairn_record::WriterMark` is logged as `writer`, `sequence`,
        // `frame_crc` and still reads a mark logged before CRCs were carried (CRC 0: unknown).
        let m = WriterMark {
            writer: WriterId(5),
            sequence: 9,
            frame_crc: 77,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"writer":5,"sequence":9,"frame_crc":77}"#);
        assert_eq!(serde_json::from_str::<WriterMark>(&json).unwrap(), m);
        let old: WriterMark = serde_json::from_str(r#"{"writer":5,"sequence":9}"#).unwrap();
        assert_eq!((old.sequence, old.frame_crc, old.known_crc()), (9, 0, None));
    }

    #[test]
    fn newtype_fields_are_logged_as_the_plain_numbers_they_wrap() {
        // Proves: versions, lengths and writer ids in entries and chunk metadata are written as
        // the bare JSON numbers logs written before the newtypes hold, and read back from them:
        // the operation log's and checkpoint's bytes did not change with the types.
        let seal = Entry::Seal {
            handle: h(1),
            version: ChunkVersion(3),
            length: ChunkOffset(4096),
            replicas: vec!["a:1".into()],
            writer_marks: Vec::new(),
        };
        let json = r#"{"op":"seal","handle":"0000000000000001","version":3,"length":4096,"replicas":["a:1"],"writer_marks":[]}"#;
        assert_eq!(serde_json::to_string(&seal).unwrap(), json);
        assert_eq!(serde_json::from_str::<Entry>(json).unwrap(), seal);
        let epoch = Entry::WriterEpoch {
            path: "/l".into(),
            writer: WriterId(7),
            epoch: 2,
        };
        let json = r#"{"op":"writer_epoch","path":"/l","writer":7,"epoch":2}"#;
        assert_eq!(serde_json::to_string(&epoch).unwrap(), json);
        assert_eq!(serde_json::from_str::<Entry>(json).unwrap(), epoch);
        let log = LogMeta {
            path: "/l".into(),
            replication: 3,
            min_replicas: 0,
            chunk_bytes: 1 << 20,
            writer_marks: Vec::new(),
            writer_epochs: BTreeMap::from([(WriterId(7), 2)]),
            chunks: Vec::new(),
            place_on: String::new(),
        };
        let json = serde_json::to_string(&log).unwrap();
        assert!(json.contains(r#""writer_epochs":{"7":2}"#), "{json}");
        assert_eq!(serde_json::from_str::<LogMeta>(&json).unwrap(), log);
    }

    fn h(n: u64) -> ChunkHandle {
        ChunkHandle(n)
    }

    fn create(path: &str) -> Entry {
        Entry::test_create(path)
    }

    fn allocate(path: &str, index: u32, handle: u64) -> Entry {
        Entry::Allocate {
            path: path.to_owned(),
            index,
            handle: h(handle),
            version: ChunkVersion(1),
            replicas: vec!["a:1".into(), "b:1".into(), "c:1".into()],
        }
    }

    // Entries round-trip through JSON with handles as 16 hex digits.
    #[test]
    fn entries_are_json_with_hex_handles() {
        let e = allocate("/l", 0, 0xab);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""op":"allocate""#), "{json}");
        assert!(json.contains(r#""handle":"00000000000000ab""#), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
    }

    // The lifecycle of a log: allocation needs the previous chunk sealed, seals need the chunk
    // open, deletion drops every chunk and reports its handles.
    #[test]
    fn apply_enforces_the_chunk_lifecycle() {
        let mut m = Metadata::default();
        m.apply(&create("/l")).unwrap();
        assert!(m.apply(&create("/l")).is_err());
        m.apply(&allocate("/l", 0, 1)).unwrap();
        assert!(
            m.apply(&allocate("/l", 1, 2)).is_err(),
            "chunk 0 still open"
        );
        m.apply(&Entry::Version {
            handle: h(1),
            version: ChunkVersion(2),
        })
        .unwrap();
        assert!(
            m.apply(&Entry::Version {
                handle: h(1),
                version: ChunkVersion(2)
            })
            .is_err()
        );
        let seal = Entry::Seal {
            handle: h(1),
            version: ChunkVersion(2),
            length: ChunkOffset(4096),
            replicas: vec!["a:1".into()],
            writer_marks: vec![WriterMark {
                writer: WriterId(9),
                sequence: 4,
                frame_crc: 0,
            }],
        };
        m.apply(&seal).unwrap();
        assert!(m.apply(&seal).is_err(), "already sealed");
        assert_eq!(m.logs["/l"].writer_marks.len(), 1);
        assert!(m.open_chunk("/l").is_none());
        m.apply(&allocate("/l", 1, 2)).unwrap();
        assert!(m.apply(&Entry::Abandon { handle: h(1) }).is_err(), "sealed");
        assert_eq!(
            m.apply(&Entry::Abandon { handle: h(2) }).unwrap(),
            vec![h(2)]
        );
        m.apply(&allocate("/l", 1, 3)).unwrap();
        assert_eq!(m.open_chunk("/l").unwrap().handle, h(3));
        let gone = m.apply(&Entry::DeleteLog { path: "/l".into() }).unwrap();
        assert_eq!(gone, vec![h(1), h(3)]);
        assert!(m.chunks.is_empty());
    }

    // Proves: a writer in both keeps the higher mark; the fresh chunk's writers come first.
    #[test]
    fn marks_merge_by_highest_sequence() {
        let m = |writer, sequence| WriterMark {
            writer: WriterId(writer),
            sequence,
            frame_crc: 0,
        };
        let merged = merge_marks(&[m(1, 5), m(2, 7)], &[m(2, 3), m(3, 1)]);
        assert_eq!(merged, vec![m(2, 7), m(3, 1), m(1, 5)]);
    }

    // Proves (issue 8 item 4): the cap across rolls keeps the most recently active writers,
    // not the lowest ids: high ids active in the last chunk push out low ids of older chunks.
    #[test]
    fn the_marks_cap_keeps_the_most_recently_active_writers() {
        let m = |writer, sequence| WriterMark {
            writer: WriterId(writer),
            sequence,
            frame_crc: 0,
        };
        let old: Vec<WriterMark> = (1..=WRITER_MARKS_MAX as u64).map(|w| m(w, 1)).collect();
        let fresh: Vec<WriterMark> = (0..10).map(|i| m(u64::MAX - i, 1)).collect();
        let merged = merge_marks(&old, &fresh);
        assert_eq!(merged.len(), WRITER_MARKS_MAX);
        assert_eq!(&merged[..10], &fresh[..]);
        assert!(
            merged
                .iter()
                .all(|x| x.writer.0 <= WRITER_MARKS_MAX as u64 - 10 || x.writer.0 > 1 << 60)
        );
    }

    // Proves: writer epochs only grow, per writer, and survive in the metadata.
    #[test]
    fn writer_epochs_only_grow() {
        let mut m = Metadata::default();
        m.apply(&create("/l")).unwrap();
        let e = |epoch| Entry::WriterEpoch {
            path: "/l".into(),
            writer: WriterId(7),
            epoch,
        };
        m.apply(&e(1)).unwrap();
        m.apply(&e(2)).unwrap();
        assert!(m.apply(&e(2)).is_err());
        assert_eq!(m.logs["/l"].writer_epochs[&WriterId(7)], 2);
    }
}
