//! [`ServerDisk`]: the disk the chunkserver runs its store on, chosen at start-up: the real file
//! system ([`FsDisk`]), or the power-cut test mode ([`WriteBehindDisk`], `--test-power-cut`).
//! One concrete type, so the server and its node need not be generic over [`Disk`].

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::disk::{Disk, DiskFile, FsDisk};
use super::write_behind::{WriteBehindDisk, WriteBehindFile};

/// The chunkserver's disk: [`FsDisk`] normally, [`WriteBehindDisk`] in the power-cut test mode.
#[derive(Clone, Debug)]
pub enum ServerDisk {
    /// The real file system.
    Fs(FsDisk),
    /// Unsynced writes kept in process memory, lost by a kill (test mode only).
    WriteBehind(WriteBehindDisk),
}

impl ServerDisk {
    /// The disk for a chunkserver: write-behind if `test_power_cut`, else the real file system.
    pub fn new(test_power_cut: bool) -> ServerDisk {
        if test_power_cut {
            ServerDisk::WriteBehind(WriteBehindDisk::new())
        } else {
            ServerDisk::Fs(FsDisk)
        }
    }
}

/// A file of a [`ServerDisk`].
#[derive(Debug)]
pub enum ServerFile {
    /// A real file.
    Fs(std::fs::File),
    /// A write-behind file.
    WriteBehind(WriteBehindFile),
}

impl Disk for ServerDisk {
    type File = ServerFile;

    fn create(&self, path: &Path) -> io::Result<ServerFile> {
        match self {
            ServerDisk::Fs(d) => d.create(path).map(ServerFile::Fs),
            ServerDisk::WriteBehind(d) => d.create(path).map(ServerFile::WriteBehind),
        }
    }

    fn open(&self, path: &Path) -> io::Result<ServerFile> {
        match self {
            ServerDisk::Fs(d) => d.open(path).map(ServerFile::Fs),
            ServerDisk::WriteBehind(d) => d.open(path).map(ServerFile::WriteBehind),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.rename(from, to),
            ServerDisk::WriteBehind(d) => d.rename(from, to),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.remove_file(path),
            ServerDisk::WriteBehind(d) => d.remove_file(path),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.sync_dir(dir),
            ServerDisk::WriteBehind(d) => d.sync_dir(dir),
        }
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        match self {
            ServerDisk::Fs(d) => d.list_dir(dir),
            ServerDisk::WriteBehind(d) => d.list_dir(dir),
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            ServerDisk::Fs(d) => d.create_dir_all(dir),
            ServerDisk::WriteBehind(d) => d.create_dir_all(dir),
        }
    }
}

impl DiskFile for ServerFile {
    fn size(&self) -> io::Result<u64> {
        match self {
            ServerFile::Fs(f) => DiskFile::size(f),
            ServerFile::WriteBehind(f) => f.size(),
        }
    }

    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize> {
        match self {
            ServerFile::Fs(f) => f.write_vectored_at(bufs, offset),
            ServerFile::WriteBehind(f) => f.write_vectored_at(bufs, offset),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            ServerFile::Fs(f) => DiskFile::read_at(f, buf, offset),
            ServerFile::WriteBehind(f) => f.read_at(buf, offset),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        match self {
            ServerFile::Fs(f) => DiskFile::sync_data(f),
            ServerFile::WriteBehind(f) => f.sync_data(),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            ServerFile::Fs(f) => DiskFile::set_len(f, len),
            ServerFile::WriteBehind(f) => f.set_len(len),
        }
    }

    fn map(&self) -> io::Result<Bytes> {
        match self {
            ServerFile::Fs(f) => f.map(),
            ServerFile::WriteBehind(f) => f.map(),
        }
    }
}
