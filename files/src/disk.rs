//! The small file-system interface both server roles write through: [`FsDisk`] on `std::fs` for
//! real use, [`crate::faulty::FaultyDisk`] in memory for fault-injection tests and simulations,
//! [`crate::write_behind::WriteBehindDisk`] for the power-cut test mode. The chunkserver's store
//! is generic over it, so its whole logic (group commit, meta, recovery) runs under faults; the
//! master holds one as a [`SharedDisk`] (a [`Disk`] behind a trait object, [`shared`]) for its
//! operation log, checkpoint and cluster id.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::WRITEV_IOVECS_MAX;

/// A directory tree of files. Paths are whatever the caller builds with `Path::join`.
pub trait Disk: Send + Sync + 'static {
    /// An open file.
    type File: DiskFile;

    /// Creates `path` (or truncates it to zero), open for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens the existing file `path` for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Renames `from` to `to`, replacing `to`. Durable only after [`Disk::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`. Durable only after [`Disk::sync_dir`].
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The paths of the files directly in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
}

/// An open file, used through positional I/O only so readers and the writer share it. There is
/// deliberately no memory map (see [`FsDisk`]).
pub trait DiskFile: Send + Sync + 'static {
    /// The file's current length.
    fn size(&self) -> io::Result<u64>;
    /// Writes `bufs`, in order, starting at `offset`, with one `pwritev`. May write fewer bytes
    /// than offered (a full disk does this); returns the count.
    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize>;
    /// Reads into `buf` from `offset`; returns the count (0 at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync`: makes the written bytes and the length durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, retrying short writes. A write that makes no progress is
    /// an `ErrorKind::WriteZero` error.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let rest = Bytes::copy_from_slice(&buf[done..]);
            match self.write_vectored_at(&[rest], offset + done as u64)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => done += n,
            }
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fewer if the file ends first; returns the
    /// count.
    fn read_full_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_at(&mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }
}

/// The real file system, through `std::fs` and `pwritev(2)`/`pread(2)`. Never a memory map: a
/// mapped page the file no longer has (truncated under the server) or the disk cannot read is
/// `SIGBUS`, which kills the whole process for one bad file; a failed `pread` is an error that
/// costs one replica.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsDisk;

impl Disk for FsDisk {
    type File = File;

    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
}

impl DiskFile for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize> {
        let n = bufs.len().min(WRITEV_IOVECS_MAX);
        let iov: Vec<libc::iovec> = bufs[..n]
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        loop {
            // SAFETY: every iovec points into a `Bytes` that `bufs` keeps alive for the call, and
            // the kernel only reads from them.
            let r =
                unsafe { libc::pwritev(self.as_raw_fd(), iov.as_ptr(), n as libc::c_int, offset) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Any [`Disk`] as a trait object, its files boxed ([`shared`] makes one).
pub type DynDisk = dyn Disk<File = Box<dyn DiskFile>>;

/// A [`DynDisk`] that clones share: what the master is given in its seams.
pub type SharedDisk = Arc<DynDisk>;

/// `disk` as a [`SharedDisk`]. Clones of a disk that share their files (every disk here does)
/// stay in step with it, so a test can keep a clone to crash or inspect.
pub fn shared<D: Disk>(disk: D) -> SharedDisk {
    Arc::new(Boxed(disk))
}

/// A [`Disk`] whose files are boxed, so that disks of every kind have one file type.
struct Boxed<D>(D);

impl<D: Disk> Disk for Boxed<D> {
    type File = Box<dyn DiskFile>;

    fn create(&self, path: &Path) -> io::Result<Self::File> {
        Ok(Box::new(self.0.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<Self::File> {
        Ok(Box::new(self.0.open(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.0.list_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.create_dir_all(dir)
    }
}

impl DiskFile for Box<dyn DiskFile> {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize> {
        (**self).write_vectored_at(bufs, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        (**self).sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
}
