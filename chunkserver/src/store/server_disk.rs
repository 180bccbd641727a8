//! [`ServerDisk`]: the disk the chunkserver runs its store on, chosen at start-up: the real file
//! system ([`FsDisk`]), or an in-memory disk ([`FaultyDisk`]) for a simulation; with the cargo
//! feature `test-faults` also the power-cut test mode (`WriteBehindDisk`, `--test-power-cut`),
//! either one optionally wrapped in injected disk faults (`FailDisk`, the `--test-fail-…` and
//! `--test-disk-full-…` flags). One concrete type, so the server and its node need not be
//! generic over [`Disk`].

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::disk::{Disk, DiskFile, FsDisk};
#[cfg(feature = "test-faults")]
use super::fail_disk::{DiskFaults, FailDisk, FailFile};
use super::faulty::{FaultyDisk, FaultyFile};
#[cfg(feature = "test-faults")]
use super::write_behind::{WriteBehindDisk, WriteBehindFile};

/// The chunkserver's disk: [`FsDisk`] normally, [`FaultyDisk`] in a simulation; with the
/// feature `test-faults`, `WriteBehindDisk` in the power-cut test mode and `FailDisk` around
/// either when disk faults are injected.
#[derive(Clone, Debug)]
pub enum ServerDisk {
    /// The real file system.
    Fs(FsDisk),
    /// Unsynced writes kept in process memory, lost by a kill (test mode only, feature `test-faults`).
    #[cfg(feature = "test-faults")]
    WriteBehind(WriteBehindDisk),
    /// Injected disk faults around another `ServerDisk` (test mode only, feature `test-faults`).
    #[cfg(feature = "test-faults")]
    Failing(Box<FailDisk<ServerDisk>>),
    /// An in-memory disk with real fsync semantics and injectable faults (simulations).
    Memory(FaultyDisk),
}

impl ServerDisk {
    /// The disk for a chunkserver: write-behind if `test_power_cut`, else the real file system
    /// (feature `test-faults`; without it a chunkserver runs on `ServerDisk::Fs`).
    #[cfg(feature = "test-faults")]
    pub fn new(test_power_cut: bool) -> ServerDisk {
        if test_power_cut {
            ServerDisk::WriteBehind(WriteBehindDisk::new())
        } else {
            ServerDisk::Fs(FsDisk)
        }
    }

    /// This disk with `faults` injected into its chunk files; unchanged if there are none
    /// (feature `test-faults`).
    #[cfg(feature = "test-faults")]
    pub fn with_faults(self, faults: DiskFaults) -> ServerDisk {
        if faults.is_empty() {
            self
        } else {
            ServerDisk::Failing(Box::new(FailDisk::new(self, faults)))
        }
    }

    /// Free bytes for chunk data on the file system holding `dir`, `None` if unknown. Under an
    /// injected disk-full limit, at most what the limit leaves.
    pub fn free_bytes(&self, dir: &Path) -> Option<u64> {
        let real = fs_free_bytes(dir);
        match self {
            #[cfg(feature = "test-faults")]
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => match (real, d.bytes_left()) {
                (Some(r), Some(l)) => Some(r.min(l)),
                (r, l) => r.or(l),
            },
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(_) => real,
            ServerDisk::Fs(_) => real,
            ServerDisk::Memory(_) => None,
        }
    }
}

/// Free bytes (for unprivileged users) on the file system holding `dir`; `None` if unknown.
fn fs_free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` is writable memory of the right
    // type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (blocks, size) = (st.f_bavail as u64, st.f_frsize as u64);
    Some(blocks.saturating_mul(size))
}

/// A file of a [`ServerDisk`].
#[derive(Debug)]
pub enum ServerFile {
    /// A real file.
    Fs(std::fs::File),
    /// A write-behind file.
    #[cfg(feature = "test-faults")]
    WriteBehind(WriteBehindFile),
    /// A file with injected faults.
    #[cfg(feature = "test-faults")]
    Failing(Box<FailFile<ServerFile>>),
    /// A file of the in-memory disk.
    Memory(FaultyFile),
}

impl Disk for ServerDisk {
    type File = ServerFile;

    fn create(&self, path: &Path) -> io::Result<ServerFile> {
        match self {
            ServerDisk::Fs(d) => d.create(path).map(ServerFile::Fs),
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(d) => d.create(path).map(ServerFile::WriteBehind),
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => d.create(path).map(|f| ServerFile::Failing(Box::new(f))),
            ServerDisk::Memory(d) => d.create(path).map(ServerFile::Memory),
        }
    }

    fn open(&self, path: &Path) -> io::Result<ServerFile> {
        match self {
            ServerDisk::Fs(d) => d.open(path).map(ServerFile::Fs),
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(d) => d.open(path).map(ServerFile::WriteBehind),
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => d.open(path).map(|f| ServerFile::Failing(Box::new(f))),
            ServerDisk::Memory(d) => d.open(path).map(ServerFile::Memory),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.rename(from, to),
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(d) => d.rename(from, to),
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => d.rename(from, to),
            ServerDisk::Memory(d) => d.rename(from, to),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.remove_file(path),
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(d) => d.remove_file(path),
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => d.remove_file(path),
            ServerDisk::Memory(d) => d.remove_file(path),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.sync_dir(dir),
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(d) => d.sync_dir(dir),
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => d.sync_dir(dir),
            ServerDisk::Memory(d) => d.sync_dir(dir),
        }
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        match self {
            ServerDisk::Fs(d) => d.list_dir(dir),
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(d) => d.list_dir(dir),
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => d.list_dir(dir),
            ServerDisk::Memory(d) => d.list_dir(dir),
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.create_dir_all(dir),
            #[cfg(feature = "test-faults")]
            ServerDisk::WriteBehind(d) => d.create_dir_all(dir),
            #[cfg(feature = "test-faults")]
            ServerDisk::Failing(d) => d.create_dir_all(dir),
            ServerDisk::Memory(d) => d.create_dir_all(dir),
        }
    }
}

impl DiskFile for ServerFile {
    fn size(&self) -> io::Result<u64> {
        match self {
            ServerFile::Fs(f) => DiskFile::size(f),
            #[cfg(feature = "test-faults")]
            ServerFile::WriteBehind(f) => f.size(),
            #[cfg(feature = "test-faults")]
            ServerFile::Failing(f) => f.size(),
            ServerFile::Memory(f) => f.size(),
        }
    }

    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize> {
        match self {
            ServerFile::Fs(f) => f.write_vectored_at(bufs, offset),
            #[cfg(feature = "test-faults")]
            ServerFile::WriteBehind(f) => f.write_vectored_at(bufs, offset),
            #[cfg(feature = "test-faults")]
            ServerFile::Failing(f) => f.write_vectored_at(bufs, offset),
            ServerFile::Memory(f) => f.write_vectored_at(bufs, offset),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            ServerFile::Fs(f) => DiskFile::read_at(f, buf, offset),
            #[cfg(feature = "test-faults")]
            ServerFile::WriteBehind(f) => f.read_at(buf, offset),
            #[cfg(feature = "test-faults")]
            ServerFile::Failing(f) => f.read_at(buf, offset),
            ServerFile::Memory(f) => f.read_at(buf, offset),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        match self {
            ServerFile::Fs(f) => DiskFile::sync_data(f),
            #[cfg(feature = "test-faults")]
            ServerFile::WriteBehind(f) => f.sync_data(),
            #[cfg(feature = "test-faults")]
            ServerFile::Failing(f) => f.sync_data(),
            ServerFile::Memory(f) => f.sync_data(),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            ServerFile::Fs(f) => DiskFile::set_len(f, len),
            #[cfg(feature = "test-faults")]
            ServerFile::WriteBehind(f) => f.set_len(len),
            #[cfg(feature = "test-faults")]
            ServerFile::Failing(f) => f.set_len(len),
            ServerFile::Memory(f) => f.set_len(len),
        }
    }
}

#[cfg(all(test, feature = "test-faults"))]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_are_capped_by_an_injected_disk_full_limit() {
        let tmp = std::env::temp_dir();
        let real = ServerDisk::new(false).free_bytes(&tmp).expect("known");
        assert!(real > 0);
        let faults = DiskFaults {
            disk_full_after_bytes: Some(4096),
            ..DiskFaults::default()
        };
        let disk = ServerDisk::new(false).with_faults(faults);
        assert!(matches!(disk, ServerDisk::Failing(_)));
        assert_eq!(disk.free_bytes(&tmp), Some(4096.min(real)));
        let plain = ServerDisk::new(false).with_faults(DiskFaults::default());
        assert!(matches!(plain, ServerDisk::Fs(_)));
    }
}
