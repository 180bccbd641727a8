//! Cairn's file plumbing: [`Blocking`], where blocking file work runs, and durable small files.
//!
//! Durable small files: the one way Cairn replaces a whole file (the master's checkpoint and a
//! fresh operation log, the cluster-id files of master and chunkservers) so that a crash at any
//! moment leaves either the old contents or the new ones, never a mix or nothing.
//!
//! The steps, each needed: write the new contents to `NAME.tmp` and `fsync` it (the data is on
//! disk before any name points at it); `rename` it over `NAME` (atomic on POSIX file systems);
//! `fsync` the directory (a rename is not durable until its directory is). A leftover `NAME.tmp`
//! from a crash before the rename is simply overwritten by the next replace.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the roles run blocking file work (a store create, seal or delete, an operation-log
/// write, a scrub slice) from async code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Blocking {
    /// On tokio's blocking thread pool, so the async workers never wait for a disk.
    #[default]
    Threads,
    /// Right here, in the calling task: a simulation, whose disk is memory and whose every
    /// interleaving must be decided by its own scheduler, not by OS threads.
    Inline,
}

impl Blocking {
    /// Runs `f` as this says. A panic in `f` is resumed in the caller.
    pub async fn run<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self {
            Blocking::Threads => match tokio::task::spawn_blocking(f).await {
                Ok(t) => t,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("blocking work cancelled by the runtime's shutdown: {e}"),
            },
            Blocking::Inline => f(),
        }
    }
}

/// The temporary name `NAME.tmp` a replace of `dir/NAME` writes first.
pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tmp"))
}

/// Replaces `dir/name` with `contents` durably (see the crate doc). Returns the new file, open
/// for writing at its end (a fresh log goes on appending to it). An error names the path.
pub fn replace(dir: &Path, name: &str, contents: &[u8]) -> io::Result<File> {
    let tmp = tmp_path(dir, name);
    let path = dir.join(name);
    let named = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| named("create", &tmp, e))?;
    f.write_all(contents).map_err(|e| named("write", &tmp, e))?;
    f.sync_all().map_err(|e| named("fsync", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| named("rename onto", &path, e))?;
    sync_dir(dir)?;
    Ok(f)
}

/// Fsyncs the directory `dir`, making the creates, renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("fsync directory {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: a replace leaves exactly the new contents under the name and no tmp file; the
    // returned file appends after them; a leftover tmp file from a crash does not matter; an
    // error names the path.
    #[test]
    fn replace_writes_renames_and_returns_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"old").unwrap();
        std::fs::write(tmp_path(dir.path(), "f"), b"half-written leftover").unwrap();
        let mut f = replace(dir.path(), "f", b"new").unwrap();
        f.write_all(b"+more").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new+more");
        assert!(!tmp_path(dir.path(), "f").exists());
        let e = replace(&dir.path().join("missing"), "f", b"x").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
