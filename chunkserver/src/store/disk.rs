//! The small file-system interface the store is generic over: [`FsDisk`] on `std::fs` for real
//! use, [`crate::store::faulty::FaultyDisk`] in memory for fault-injection tests, so that the
//! store's whole logic (group commit, meta, recovery) runs under faults.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::limits::WRITEV_IOVECS_MAX;

/// A directory tree of files. Paths are whatever the store builds with `Path::join`.
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
