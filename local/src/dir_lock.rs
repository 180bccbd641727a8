//! One process per data directory: every server command (`cairn master`, `cairn chunkserver`,
//! `cairn local`, `cairn-bank local`) takes an exclusive lock on `DATA/LOCK` before it reads or writes anything else there, and
//! holds it until the process ends (FORMAT.md, "Data directory lock").
//!
//! Two processes on one directory break every invariant at once: a second master fences the
//! first one's chunks and rewrites its checkpoint, a second chunkserver registers the same files
//! as another replica. The lock is `flock(2)` through `File::try_lock`: the kernel drops it when
//! its holder exits, however it exits, so a crash never leaves a stale lock behind, and the PID
//! written into the file only names the holder in the refusal.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// A held lock on one data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    /// Held open: closing the file would release the lock.
    _file: File,
}

/// Locks `dir` for this process, creating the directory and its lock file if needed.
///
/// Fails, changing nothing but possibly creating an empty directory and lock file, when another
/// process holds the lock: the error names the directory and the holder's PID where known.
pub fn lock(dir: &Path) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the data directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    // Never truncate on open: the file holds the current holder's PID.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) => text.trim().parse::<u32>().ok(),
                Err(_) => None,
            };
            let holder = match holder {
                Some(pid) => format!("process {pid}"),
                None => "another process".to_owned(),
            };
            anyhow::bail!(
                "data directory {} is in use by {holder} (it holds {}); refusing to start a second \
                 process on it",
                dir.display(),
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("lock {}", path.display()));
        }
    }
    // Ours now: record who holds it, for the refusal above.
    let pid = std::process::id();
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .and_then(|()| writeln!(file, "{pid}"))
        .with_context(|| format!("write the lock file {}", path.display()))?;
    Ok(DirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: a second lock on a locked directory fails naming the directory and the holder's
    // PID, without touching the holder's file; once the holder is dropped the directory can be
    // locked again. (Two opens of one file are two open file descriptions, which flock(2)
    // treats as two holders, as it does two processes.)
    #[test]
    fn second_lock_is_refused_naming_the_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let before = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(before.trim(), std::process::id().to_string());
        let err = format!("{:#}", lock(dir.path()).unwrap_err());
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        let after = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(before, after, "the refused process left the file alone");
        drop(first);
        lock(dir.path()).unwrap();
    }
}
