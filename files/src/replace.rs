//! Durable small files: the one way Cairn replaces a whole file (the master's checkpoint and a
//! fresh operation log, the cluster-id files of master and chunkservers) so that a crash at any
//! moment leaves either the old contents or the new ones, never a mix or nothing.
//!
//! The steps, each needed: write the new contents to `NAME.tmp` and `fsync` it (the data is on
//! disk before any name points at it); `rename` it over `NAME` (atomic on POSIX file systems);
//! `fsync` the directory (a rename is not durable until its directory is). A leftover `NAME.tmp`
//! from a crash before the rename is simply overwritten by the next replace. Every step goes
//! through a [`Disk`], so the same code runs on the real file system and on a simulated one.

use std::io;
use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskFile};

/// The temporary name `NAME.tmp` a replace of `dir/NAME` writes first.
pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tmp"))
}

/// Replaces `dir/name` on `disk` with `contents` durably (see the module doc). Returns the new
/// file; its length is `contents.len()` (a fresh log goes on appending there). An error names
/// the path.
pub fn replace<D: Disk + ?Sized>(
    disk: &D,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> io::Result<D::File> {
    let tmp = tmp_path(dir, name);
    let path = dir.join(name);
    let named = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let f = disk.create(&tmp).map_err(|e| named("create", &tmp, e))?;
    f.write_all_at(contents, 0)
        .map_err(|e| named("write", &tmp, e))?;
    f.sync_data().map_err(|e| named("fsync", &tmp, e))?;
    disk.rename(&tmp, &path)
        .map_err(|e| named("rename onto", &path, e))?;
    sync_dir(disk, dir)?;
    Ok(f)
}

/// Fsyncs the directory `dir` on `disk`, making the creates, renames and removals in it durable.
pub fn sync_dir<D: Disk + ?Sized>(disk: &D, dir: &Path) -> io::Result<()> {
    disk.sync_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("fsync directory {}: {e}", dir.display())))
}

/// The whole contents of the file `path` on `disk`. A missing file is `ErrorKind::NotFound`.
pub fn read_file<D: Disk + ?Sized>(disk: &D, path: &Path) -> io::Result<Vec<u8>> {
    let f = disk.open(path)?;
    let len = usize::try_from(f.size()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to read"))?;
    let mut buf = vec![0; len];
    let n = f.read_full_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::FsDisk;
    use crate::faulty::FaultyDisk;

    // Proves: a replace leaves exactly the new contents under the name and no tmp file; the
    // returned file appends after them; a leftover tmp file from a crash does not matter; an
    // error names the path.
    #[test]
    fn replace_writes_renames_and_returns_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"old").unwrap();
        std::fs::write(tmp_path(dir.path(), "f"), b"half-written leftover").unwrap();
        let f = replace(&FsDisk, dir.path(), "f", b"new").unwrap();
        f.write_all_at(b"+more", f.size().unwrap()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new+more");
        assert_eq!(
            read_file(&FsDisk, &dir.path().join("f")).unwrap(),
            b"new+more"
        );
        assert!(!tmp_path(dir.path(), "f").exists());
        let e = replace(&FsDisk, &dir.path().join("missing"), "f", b"x").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    // Proves: a power cut before each step of a replace, and after the last, leaves the old
    // contents or the new ones under the name (the new ones once the replace returned), never
    // a mix, a short file or no file; every step was interrupted once.
    #[test]
    fn a_power_cut_at_any_step_leaves_the_old_or_the_new_contents() {
        let dir = Path::new("/d");
        let path = dir.join("f");
        let mut cuts_before_return = 0;
        for call in 1.. {
            let disk = FaultyDisk::new();
            replace(&disk, dir, "f", b"old contents").unwrap();
            disk.power_off_at_call(call);
            let returned = replace(&disk, dir, "f", b"the new contents").is_ok();
            disk.crash(usize::MAX);
            let after = read_file(&disk, &path).unwrap();
            if returned {
                assert_eq!(after, b"the new contents", "call {call}");
                break;
            }
            cuts_before_return += 1;
            assert!(
                after == b"old contents" || after == b"the new contents",
                "call {call}: {after:?}"
            );
        }
        // create, write, fsync, rename, directory fsync.
        assert_eq!(cuts_before_return, 5);
    }
}
