//! Checkpoints: a JSON snapshot of the metadata as of an operation-log sequence, written
//! crash-safely (tmp → fsync → rename → fsync directory).

use std::collections::BTreeMap;
use std::path::Path;

use cairn_files::DynDisk;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta::{ChunkMeta, LogMeta, Metadata};

/// File name of the checkpoint in the data directory.
pub(crate) const FILE: &str = "checkpoint.json";
/// Where a checkpoint is written before it is renamed into place.
pub(crate) const TMP: &str = "checkpoint.json.tmp";
/// The checkpoint format this code writes. Version 2 added chunk salvage (the `salvage` entry and
/// a chunk's `lost_end`); version 1 files have neither and are read as they are. A master of
/// version 1 refuses version 2 files by their format number instead of dropping what it
/// does not know. Version 3 added a log's `place_on` (absent in older files: anywhere), so a
/// version 2 master refuses version 3 files rather than place such a log's chunks elsewhere.
pub(crate) const FORMAT: u32 = 3;
/// The oldest checkpoint format this code reads.
pub(crate) const FORMAT_READ_MIN: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    /// The last operation-log sequence whose entry is reflected here.
    sequence: u64,
    logs: Vec<LogMeta>,
    chunks: Vec<ChunkMeta>,
    /// The cluster's id, in Raft snapshots (absent in checkpoint files: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    cluster_id: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The JSON bytes of a checkpoint of `meta` covering entries through `sequence`.
pub(crate) fn encode(meta: &Metadata, sequence: u64) -> Vec<u8> {
    let mut chunks: Vec<ChunkMeta> = meta.chunks.values().cloned().collect();
    chunks.sort_by(|a, b| (&a.log, a.index).cmp(&(&b.log, b.index)));
    let snapshot = Snapshot {
        format: FORMAT,
        sequence,
        logs: meta.logs.values().cloned().collect(),
        chunks,
        cluster_id: meta.cluster_id,
    };
    serde_json::to_vec(&snapshot).expect("metadata always serialises to JSON")
}

/// Decodes a checkpoint into metadata and the sequence it covers.
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<(Metadata, u64)> {
    let invalid = |reason: String| Error::CheckpointInvalid {
        path: path.to_owned(),
        reason,
    };
    let snapshot: Snapshot =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a checkpoint: {e}")))?;
    if !(FORMAT_READ_MIN..=FORMAT).contains(&snapshot.format) {
        return Err(invalid(format!("unknown format {}", snapshot.format)));
    }
    let mut logs: BTreeMap<String, LogMeta> = BTreeMap::new();
    for log in snapshot.logs {
        if logs.insert(log.path.clone(), log).is_some() {
            return Err(invalid("a log appears twice".to_owned()));
        }
    }
    let mut chunks = BTreeMap::new();
    // Sorted by (log, index), so each log's chunks arrive in order.
    for chunk in snapshot.chunks {
        let log = logs
            .get_mut(&chunk.log)
            .ok_or_else(|| invalid(format!("chunk {} of unknown log", chunk.handle)))?;
        if chunk.index as usize != log.chunks.len() {
            return Err(invalid(format!("chunk {} out of order", chunk.handle)));
        }
        log.chunks.push(chunk.handle);
        if chunks.insert(chunk.handle, chunk).is_some() {
            return Err(invalid("a chunk appears twice".to_owned()));
        }
    }
    Ok((
        Metadata {
            logs,
            chunks,
            cluster_id: snapshot.cluster_id,
        },
        snapshot.sequence,
    ))
}

/// Reads the checkpoint in `dir` on `disk`, if there is one.
pub(crate) fn read(disk: &DynDisk, dir: &Path) -> Result<Option<(Metadata, u64)>> {
    let path = dir.join(FILE);
    match cairn_files::read_file(disk, &path) {
        Ok(bytes) => decode(&bytes, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path)(e)),
    }
}

/// Writes `bytes` as the checkpoint of `dir` on `disk`, durably (`cairn_files::replace`), as
/// the file-based operation log did.
#[cfg(test)]
pub(crate) fn write(disk: &DynDisk, dir: &Path, bytes: &[u8]) -> Result<()> {
    cairn_files::replace(disk, dir, FILE, bytes).map_err(Error::io(&dir.join(FILE)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Entry;
    use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion};

    // A checkpoint round-trips metadata exactly, chunk order included.
    #[test]
    fn round_trip() {
        let mut m = Metadata::default();
        m.apply(&Entry::CreateLog {
            path: "/l".into(),
            replication: 1,
            min_replicas: 1,
            chunk_bytes: 8192,
            place_on: String::new(),
        })
        .unwrap();
        m.apply(&Entry::CreateLog {
            path: "/placed".into(),
            replication: 1,
            min_replicas: 1,
            chunk_bytes: 8192,
            place_on: "cs:7".into(),
        })
        .unwrap();
        for i in 0..3u32 {
            let handle = ChunkHandle(100 - u64::from(i));
            m.apply(&Entry::Allocate {
                path: "/l".into(),
                index: i,
                handle,
                version: ChunkVersion(1),
                replicas: vec!["a:1".into()],
            })
            .unwrap();
            m.apply(&Entry::Seal {
                handle,
                version: ChunkVersion(2),
                length: ChunkOffset(64),
                replicas: vec!["a:1".into()],
                writer_marks: vec![],
            })
            .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = cairn_files::shared(cairn_files::FsDisk);
        write(&*disk, dir.path(), &encode(&m, 42)).unwrap();
        let (back, seq) = read(&*disk, dir.path()).unwrap().unwrap();
        assert_eq!(seq, 42);
        assert_eq!(back, m);
    }

    // Version 3 keeps a log's placement; a version 2 checkpoint (no `place_on`) reads as placed
    // anywhere.
    #[test]
    fn placement_is_kept_and_older_checkpoints_read_unplaced() {
        let mut m = Metadata::default();
        m.apply(&Entry::CreateLog {
            path: "/p".into(),
            replication: 1,
            min_replicas: 0,
            chunk_bytes: 8192,
            place_on: "cs:7".into(),
        })
        .unwrap();
        let bytes = encode(&m, 1);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""place_on":"cs:7""#), "{text}");
        assert!(text.starts_with(r#"{"format":3,"#), "{text}");
        let (back, _) = decode(&bytes, Path::new("c")).unwrap();
        assert_eq!(back.logs["/p"].place_on, "cs:7");
        let old = br#"{"format":2,"sequence":1,"logs":[{"path":"/p","replication":1,"min_replicas":0,"chunk_bytes":8192}],"chunks":[]}"#;
        let (back, _) = decode(old, Path::new("c")).unwrap();
        assert_eq!(back.logs["/p"].place_on, "");
    }
}
