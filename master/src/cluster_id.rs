//! The cluster id: a random non-zero u64 the master creates with its data directory
//! (`DATA/cluster-id`, 16 hex digits and a newline; FORMAT.md). Chunkservers keep the id of the
//! cluster they joined and the master refuses registrations from another cluster, so a master
//! started on an empty (or wrong) data directory cannot tell chunkservers to delete replicas it
//! does not know.

use std::path::Path;

use cairn_files::DynDisk;

use crate::error::{Error, Result};

const FILE: &str = "cluster-id";

/// Reads the data directory's cluster id, creating it (durably: tmp file, fsync, rename, fsync
/// of the directory, all on `disk`) if the directory has none: random, or from `seed` (a
/// simulation).
pub(crate) fn load_or_create(disk: &DynDisk, dir: &Path, seed: Option<u64>) -> Result<u64> {
    let path = dir.join(FILE);
    match cairn_files::read_file(disk, &path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            parse(&text).ok_or_else(|| Error::Config {
                reason: format!(
                    "{}: not a cluster id (16 hex digits): {:?}",
                    path.display(),
                    text.trim()
                ),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = match seed {
                Some(seed) => seed.max(1),
                None => loop {
                    let id: u64 = rand::random();
                    if id != 0 {
                        break id;
                    }
                },
            };
            let text = format!("{id:016x}\n");
            cairn_files::replace(disk, dir, FILE, text.as_bytes()).map_err(|e| Error::Config {
                reason: format!("write {}: {e}", path.display()),
            })?;
            tracing::info!(cluster = %format!("{id:016x}"), "new cluster id");
            Ok(id)
        }
        Err(e) => Err(Error::Config {
            reason: format!("read {}: {e}", path.display()),
        }),
    }
}

fn parse(text: &str) -> Option<u64> {
    let t = text.trim();
    (t.len() == 16)
        .then(|| u64::from_str_radix(t, 16).ok())
        .flatten()
        .filter(|&id| id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: the id is created once and read back the same; a damaged file is an error, not a
    // new id (which would make every chunkserver a stranger).
    #[test]
    fn created_once_then_read_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let disk = cairn_files::shared(cairn_files::FsDisk);
        let id = load_or_create(&*disk, dir.path(), None).unwrap();
        assert_ne!(id, 0);
        assert_eq!(load_or_create(&*disk, dir.path(), None).unwrap(), id);
        std::fs::write(dir.path().join(FILE), "zz\n").unwrap();
        assert!(load_or_create(&*disk, dir.path(), None).is_err());
    }
}
