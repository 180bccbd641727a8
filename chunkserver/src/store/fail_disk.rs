//! [`FailDisk`]: a [`Disk`] wrapper that injects disk faults into a real chunkserver, for the
//! hidden test flags of `cairn chunkserver` (see [`DiskFaults`]). Never for real data.
//!
//! Only chunk data files (`{handle}.chunk`, and the `{handle}.chunk.tmp` a replica is created
//! as) are affected; `.meta` files and directory operations pass through. The store's logic is
//! unchanged: it meets these faults exactly as it would meet them from the kernel.
//!
//! - **fsync EIO once** ([`DiskFaults::fail_fsync_after`] = N): the first N `sync_data` calls
//!   on chunk files in this process succeed, the next one fails with EIO (without syncing, as a
//!   failed fsync leaves the pages' fate unknown), and every later one succeeds again. The store
//!   fails that replica for good and never retries the fsync.
//! - **Disk full** ([`DiskFaults::disk_full_after_bytes`] = N): once N bytes in all were
//!   written to chunk files by this process, writes stop: a write crossing the limit is cut
//!   short at it (a short write, as a filling disk does) and later writes fail with ENOSPC.
//!   Cutting a file back frees nothing. [`FailDisk::bytes_left`] tells what is left, so the
//!   chunkserver can report a small free space to the master.
//! - **Read EIO** ([`DiskFaults::fail_reads_of`]): `read_at` of the named chunks' files fails
//!   with EIO, so their reads are served from nowhere (the startup scan, reads and scrubs all
//!   use `read_at`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cairn_record::ChunkHandle;
use tracing::warn;

use super::disk::{Disk, DiskFile};

/// The faults a [`FailDisk`] injects (the chunkserver's `--test-…` disk flags). The default
/// injects nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// After this many successful `sync_data` calls on chunk files, the next one fails with
    /// EIO, once (`--test-fail-fsync-after`).
    pub fail_fsync_after: Option<u64>,
    /// Chunk-file writes hit ENOSPC once this many bytes were written to chunk files in this
    /// process (`--test-disk-full-after-bytes`).
    pub disk_full_after_bytes: Option<u64>,
    /// Reads of these chunks' data files fail with EIO (`--test-fail-reads-of`).
    pub fail_reads_of: Vec<ChunkHandle>,
}

impl DiskFaults {
    /// Whether no fault is set.
    pub fn is_empty(&self) -> bool {
        self.fail_fsync_after.is_none()
            && self.disk_full_after_bytes.is_none()
            && self.fail_reads_of.is_empty()
    }
}

/// What every handle of one [`FailDisk`] shares.
#[derive(Debug)]
struct Shared {
    faults: DiskFaults,
    /// `sync_data` calls started on chunk files.
    chunk_syncs: AtomicU64,
    /// Bytes written to chunk files (reserved before each write, the unused part given back).
    chunk_bytes_written: AtomicU64,
    /// Faults injected so far.
    injected: AtomicU64,
}

/// A [`Disk`] that injects the [`DiskFaults`] into the chunk files of the disk it wraps. Clones
/// share the fault state.
#[derive(Clone, Debug)]
pub struct FailDisk<D> {
    inner: D,
    shared: Arc<Shared>,
}

impl<D: Disk> FailDisk<D> {
    /// Wraps `inner`, injecting `faults`.
    pub fn new(inner: D, faults: DiskFaults) -> FailDisk<D> {
        FailDisk {
            inner,
            shared: Arc::new(Shared {
                faults,
                chunk_syncs: AtomicU64::new(0),
                chunk_bytes_written: AtomicU64::new(0),
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// The faults it injects.
    pub fn faults(&self) -> &DiskFaults {
        &self.shared.faults
    }

    /// Bytes chunk files may still grow by before ENOSPC; `None` without a disk-full limit.
    pub fn bytes_left(&self) -> Option<u64> {
        let limit = self.shared.faults.disk_full_after_bytes?;
        Some(limit.saturating_sub(self.shared.chunk_bytes_written.load(Ordering::Acquire)))
    }

    /// Faults injected so far (each failed call counts once).
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::Relaxed)
    }

    fn wrap(&self, path: &Path, file: D::File) -> FailFile<D::File> {
        let handle = chunk_file_handle(path);
        FailFile {
            inner: file,
            fail_reads: handle.is_some_and(|h| self.shared.faults.fail_reads_of.contains(&h)),
            handle,
            path: path.to_path_buf(),
            shared: self.shared.clone(),
        }
    }
}

/// The handle whose chunk data `path` holds (`{handle:016x}.chunk` or `….chunk.tmp`), if any.
fn chunk_file_handle(path: &Path) -> Option<ChunkHandle> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    let stem = name.strip_suffix(".chunk")?;
    if stem.len() != 16 {
        return None;
    }
    stem.parse().ok()
}

/// A file of a [`FailDisk`].
#[derive(Debug)]
pub struct FailFile<F> {
    inner: F,
    /// The chunk whose data this file holds; `None` for other files (no faults).
    handle: Option<ChunkHandle>,
    fail_reads: bool,
    /// The path it was opened by (for the log).
    path: PathBuf,
    shared: Arc<Shared>,
}

impl<F> FailFile<F> {
    fn injected(&self, what: &str, error: io::Error) -> io::Error {
        self.shared.injected.fetch_add(1, Ordering::Relaxed);
        warn!(path = %self.path.display(), error = %error, "TEST FAULT: injected {what}");
        error
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// The first `len` bytes of `bufs`.
fn prefix(bufs: &[Bytes], len: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut left = len as usize;
    for b in bufs {
        if left == 0 {
            break;
        }
        let n = b.len().min(left);
        out.push(b.slice(..n));
        left -= n;
    }
    out
}

impl<D: Disk> Disk for FailDisk<D> {
    type File = FailFile<D::File>;

    fn create(&self, path: &Path) -> io::Result<Self::File> {
        Ok(self.wrap(path, self.inner.create(path)?))
    }

    fn open(&self, path: &Path) -> io::Result<Self::File> {
        Ok(self.wrap(path, self.inner.open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
}

impl<F: DiskFile> DiskFile for FailFile<F> {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize> {
        let limit = match (self.handle, self.shared.faults.disk_full_after_bytes) {
            (Some(_), Some(limit)) => limit,
            _ => return self.inner.write_vectored_at(bufs, offset),
        };
        let want: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        // Reserve what may be written, so concurrent writers never pass the limit together.
        let written = &self.shared.chunk_bytes_written;
        let before = written
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used + want.min(limit.saturating_sub(used)))
            })
            .expect("the update always succeeds");
        let granted = want.min(limit.saturating_sub(before));
        if granted == 0 && want > 0 {
            return Err(self.injected("ENOSPC", enospc()));
        }
        let result = if granted < want {
            self.inner.write_vectored_at(&prefix(bufs, granted), offset)
        } else {
            self.inner.write_vectored_at(bufs, offset)
        };
        let done = *result.as_ref().unwrap_or(&0) as u64;
        written.fetch_sub(granted - done.min(granted), Ordering::AcqRel);
        result
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.fail_reads {
            return Err(self.injected("read EIO", eio()));
        }
        self.inner.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.handle.is_some()
            && let Some(after) = self.shared.faults.fail_fsync_after
        {
            let n = self.shared.chunk_syncs.fetch_add(1, Ordering::AcqRel);
            if n == after {
                return Err(self.injected("fsync EIO", eio()));
            }
        }
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::FsDisk;

    fn chunk_path(dir: &Path, handle: u64) -> PathBuf {
        dir.join(format!("{}.chunk", ChunkHandle(handle)))
    }

    #[test]
    fn only_chunk_files_are_recognised() {
        let dir = Path::new("/d");
        assert_eq!(chunk_file_handle(&chunk_path(dir, 7)), Some(ChunkHandle(7)));
        let tmp = dir.join(format!("{}.chunk.tmp", ChunkHandle(7)));
        assert_eq!(chunk_file_handle(&tmp), Some(ChunkHandle(7)));
        let meta = dir.join(format!("{}.meta", ChunkHandle(7)));
        assert_eq!(chunk_file_handle(&meta), None);
        assert_eq!(chunk_file_handle(&dir.join("7.chunk")), None);
    }

    // The (N+1)-th fsync of a chunk file fails once; `.meta` fsyncs neither count nor fail.
    #[test]
    fn fsync_fails_once_after_n_chunk_syncs() {
        let tmp = tempfile::tempdir().unwrap();
        let faults = DiskFaults {
            fail_fsync_after: Some(2),
            ..DiskFaults::default()
        };
        let disk = FailDisk::new(FsDisk, faults);
        let meta = disk
            .create(&tmp.path().join("0000000000000001.meta"))
            .unwrap();
        let a = disk.create(&chunk_path(tmp.path(), 1)).unwrap();
        let b = disk.create(&chunk_path(tmp.path(), 2)).unwrap();
        for _ in 0..5 {
            meta.sync_data().unwrap();
        }
        a.sync_data().unwrap();
        b.sync_data().unwrap();
        let e = a.sync_data().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert_eq!(disk.injected(), 1);
        for _ in 0..3 {
            a.sync_data().unwrap();
            b.sync_data().unwrap();
        }
        assert_eq!(disk.injected(), 1, "exactly one failure");
    }

    // Writes to chunk files stop at the limit: a short write, then ENOSPC; other files go on.
    #[test]
    fn chunk_writes_hit_enospc_at_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let faults = DiskFaults {
            disk_full_after_bytes: Some(100),
            ..DiskFaults::default()
        };
        let disk = FailDisk::new(FsDisk, faults);
        assert_eq!(disk.bytes_left(), Some(100));
        let f = disk.create(&chunk_path(tmp.path(), 1)).unwrap();
        let n = f
            .write_vectored_at(&[Bytes::from(vec![1u8; 60]), Bytes::from(vec![2u8; 20])], 0)
            .unwrap();
        assert_eq!(n, 80, "within the limit: all of it");
        assert_eq!(disk.bytes_left(), Some(20));
        let n = f
            .write_vectored_at(
                &[Bytes::from(vec![3u8; 15]), Bytes::from(vec![4u8; 15])],
                80,
            )
            .unwrap();
        assert_eq!(n, 20, "cut short at the limit");
        assert_eq!(disk.bytes_left(), Some(0));
        let e = f
            .write_vectored_at(&[Bytes::from(vec![5u8; 8])], 100)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(f.size().unwrap(), 100);
        let mut back = vec![0u8; 100];
        assert_eq!(f.read_full_at(&mut back, 0).unwrap(), 100);
        assert_eq!(&back[58..62], &[1, 1, 2, 2]);
        assert_eq!(
            &back[78..100],
            &[[2u8; 2].as_slice(), &[3u8; 15], &[4u8; 5]].concat()[..]
        );
        // The store cuts the file back after ENOSPC; that frees nothing.
        f.set_len(60).unwrap();
        assert_eq!(disk.bytes_left(), Some(0));
        let meta = disk
            .create(&tmp.path().join("0000000000000001.meta"))
            .unwrap();
        meta.write_all_at(&[0u8; 4096], 0).unwrap();
    }

    // Reads of the named chunks fail; other chunks read normally.
    #[test]
    fn reads_of_named_chunks_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let faults = DiskFaults {
            fail_reads_of: vec![ChunkHandle(2)],
            ..DiskFaults::default()
        };
        let disk = FailDisk::new(FsDisk, faults);
        let good = disk.create(&chunk_path(tmp.path(), 1)).unwrap();
        let bad = disk.create(&chunk_path(tmp.path(), 2)).unwrap();
        for f in [&good, &bad] {
            f.write_all_at(b"12345678", 0).unwrap();
            f.sync_data().unwrap();
        }
        let mut buf = [0u8; 8];
        assert_eq!(good.read_at(&mut buf, 0).unwrap(), 8);
        let e = bad.read_at(&mut buf, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        // Opened again by its final name, it still fails.
        let again = disk.open(&chunk_path(tmp.path(), 2)).unwrap();
        assert!(again.read_at(&mut buf, 0).is_err());
        assert_eq!(disk.injected(), 2);
    }
}
