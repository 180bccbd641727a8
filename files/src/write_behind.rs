//! [`WriteBehindDisk`]: a test-mode [`Disk`] over real files that keeps every unsynced write in
//! process memory, so that killing the process (SIGKILL) loses what a power cut may lose.
//!
//! With [`crate::disk::FsDisk`], bytes written but not yet fsynced sit in the kernel's page cache
//! and survive a `kill -9`; only a power cut or kernel crash loses them. A multi-process test
//! cannot cut the power, so in this mode a file's writes stay in memory until `sync_data`, and a
//! killed process takes them with it. While the process lives the store sees exactly what it
//! would see on `FsDisk`: reads and `size` show the pending writes on top of the file.
//!
//! # What reaches the real file, and when
//! - `write_vectored_at`: kept in memory as pending byte ranges (newer bytes replace older
//!   ones); the real file is untouched.
//! - `set_len`: kept in memory too. The logical length changes at once; bytes of the real file
//!   at or past the shortest length set since the last sync read as zeros. The real file is cut
//!   or extended only by `sync_data`.
//! - `sync_data`: applies the pending state to the real file (the cut first, then every pending
//!   range with `pwrite`, then the final length) and `fdatasync`s it. A kill in the middle of a
//!   `sync_data` keeps the part of that sync already written to the file: a power cut during an
//!   fsync may keep any part of it too, and the store never counts on a sync that did not return.
//! - `create` of a new path creates the empty file at once (an empty file with no name yet
//!   synced is something a power cut may also leave); `create` of an existing path truncates it
//!   only in memory, like `set_len(0)`: the old bytes stay on disk until `sync_data`.
//! - `rename`, `remove_file`, `list_dir`, `create_dir_all` and `sync_dir` act on the real
//!   directory at once, as with `FsDisk`. So this mode loses unsynced *data* and lengths, not
//!   unsynced *directory entries*: a rename or removal killed before its `sync_dir` survives,
//!   where a power cut might undo it. The store and [`crate::replace`] follow every such change
//!   with a `sync_dir`
//!   straight away; lost entries are covered by [`crate::faulty::FaultyDisk`] in unit tests.
//!
//! Handles of one file (found by device and inode) share their pending state, as open files of
//! one inode share the page cache. Dropping the last handle, or the process ending in any way
//! (even a clean shutdown), discards what was not synced. Never use this mode in production.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use crate::WRITEV_IOVECS_MAX;
use crate::disk::{Disk, DiskFile, FsDisk};

/// A [`Disk`] on the real file system whose files keep unsynced writes and length changes in
/// memory until `sync_data` (see the module documentation). Clones share the open files.
#[derive(Clone, Debug, Default)]
pub struct WriteBehindDisk {
    /// Open files by (device, inode), so every handle of a file shares its pending state.
    files: Arc<Mutex<Registry>>,
}

/// Open files by (device, inode).
type Registry = HashMap<(u64, u64), Weak<Shared>>;

impl WriteBehindDisk {
    /// A disk with no open files.
    pub fn new() -> WriteBehindDisk {
        WriteBehindDisk::default()
    }

    /// The handle for `file`: a new one sharing the pending state of the inode if another handle
    /// has it open, else one with nothing pending.
    fn handle(&self, file: File) -> io::Result<WriteBehindFile> {
        let meta = file.metadata()?;
        let key = (meta.dev(), meta.ino());
        let mut files = self
            .files
            .lock()
            .expect("write-behind registry lock poisoned");
        files.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = files.get(&key).and_then(Weak::upgrade) {
            return Ok(WriteBehindFile { shared });
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                real_len: meta.len(),
                len: meta.len(),
                cut: None,
                pending: BTreeMap::new(),
            }),
            file,
        });
        files.insert(key, Arc::downgrade(&shared));
        Ok(WriteBehindFile { shared })
    }
}

impl Disk for WriteBehindDisk {
    type File = WriteBehindFile;

    fn create(&self, path: &Path) -> io::Result<WriteBehindFile> {
        // No `truncate`: cutting an existing file waits for `sync_data` like any `set_len`.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let handle = self.handle(file)?;
        handle.set_len(0)?;
        Ok(handle)
    }

    fn open(&self, path: &Path) -> io::Result<WriteBehindFile> {
        self.handle(FsDisk.open(path)?)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsDisk.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsDisk.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsDisk.sync_dir(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        FsDisk.list_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FsDisk.create_dir_all(dir)
    }
}

/// A handle on a [`WriteBehindDisk`] file.
#[derive(Debug)]
pub struct WriteBehindFile {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The real file; written only by `sync_data`.
    file: File,
    state: Mutex<State>,
}

/// A file's pending (unsynced) state on top of its real bytes.
#[derive(Debug)]
struct State {
    /// The real file's length.
    real_len: u64,
    /// The logical length: what `size` returns.
    len: u64,
    /// The shortest length set since the last sync: real bytes at or past it read as zeros.
    cut: Option<u64>,
    /// Pending writes by offset; they do not overlap and end at or below `len`.
    pending: BTreeMap<u64, Vec<u8>>,
}

impl State {
    /// The end of the real bytes still visible.
    fn real_visible_end(&self) -> u64 {
        self.cut.map_or(self.real_len, |c| c.min(self.real_len))
    }

    /// Records a write of `data` at `offset`, replacing older pending bytes it covers.
    fn write(&mut self, offset: u64, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        let overlapping: Vec<u64> = self
            .pending
            .range(..end)
            .rev()
            .take_while(|(s, d)| **s + d.len() as u64 > offset)
            .map(|(s, _)| *s)
            .collect();
        for start in overlapping {
            let old = self.pending.remove(&start).expect("key just listed");
            let old_end = start + old.len() as u64;
            if start < offset {
                self.pending
                    .insert(start, old[..(offset - start) as usize].to_vec());
            }
            if old_end > end {
                self.pending
                    .insert(end, old[(end - start) as usize..].to_vec());
            }
        }
        // Appends extend the range before them, so a group stays one range and one pwrite.
        match self.pending.range_mut(..offset).next_back() {
            Some((start, prev)) if *start + prev.len() as u64 == offset => {
                prev.extend_from_slice(&data)
            }
            _ => {
                self.pending.insert(offset, data);
            }
        }
        self.len = self.len.max(end);
    }

    /// Records a truncation or extension to `len`.
    fn set_len(&mut self, len: u64) {
        self.cut = Some(self.cut.map_or(len, |c| c.min(len)));
        let cut: Vec<u64> = self.pending.range(len..).map(|(s, _)| *s).collect();
        for start in cut {
            self.pending.remove(&start);
        }
        if let Some((start, data)) = self.pending.range_mut(..len).next_back() {
            data.truncate((len - *start).min(data.len() as u64) as usize);
        }
        self.len = len;
    }
}

impl WriteBehindFile {
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .expect("write-behind file lock poisoned")
    }

    /// Applies the pending state to the real file (without fsync), leaving nothing pending.
    /// On an error the part not yet applied stays pending.
    fn apply(&self, s: &mut State) -> io::Result<()> {
        let file = &self.shared.file;
        if let Some(cut) = s.cut {
            if cut < s.real_len {
                file.set_len(cut)?;
                s.real_len = cut;
            }
            s.cut = None;
        }
        while let Some((offset, data)) = s.pending.pop_first() {
            if let Err(e) = FileExt::write_all_at(file, &data, offset) {
                s.pending.insert(offset, data);
                return Err(e);
            }
            s.real_len = s.real_len.max(offset + data.len() as u64);
        }
        if s.real_len != s.len {
            file.set_len(s.len)?;
            s.real_len = s.len;
        }
        Ok(())
    }
}

impl DiskFile for WriteBehindFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.state().len)
    }

    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize> {
        // At most as many buffers as one `pwritev` takes, as on `FsDisk`.
        let bufs = &bufs[..bufs.len().min(WRITEV_IOVECS_MAX)];
        let n: usize = bufs.iter().map(Bytes::len).sum();
        offset
            .checked_add(n as u64)
            .filter(|end| i64::try_from(*end).is_ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let mut data = Vec::with_capacity(n);
        for b in bufs {
            data.extend_from_slice(b);
        }
        self.state().write(offset, data);
        Ok(n)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.state();
        if offset >= s.len {
            return Ok(0);
        }
        let n = buf.len().min((s.len - offset) as usize);
        let buf = &mut buf[..n];
        let end = offset + n as u64;
        // The real bytes still visible, then zeros, then the pending writes on top.
        let real_end = s.real_visible_end().clamp(offset, end);
        let from_real = (real_end - offset) as usize;
        let got = self
            .shared
            .file
            .read_full_at(&mut buf[..from_real], offset)?;
        buf[got..].fill(0);
        let first = s
            .pending
            .range(..offset)
            .next_back()
            .map_or(offset, |(s, _)| *s);
        for (&start, data) in s.pending.range(first..end) {
            let data_end = start + data.len() as u64;
            if data_end <= offset {
                continue;
            }
            let from = start.max(offset);
            let to = data_end.min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut s = self.state();
            self.apply(&mut s)?;
        }
        // Outside the lock: reads meanwhile see the applied bytes in the real file.
        self.shared.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if i64::try_from(len).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "length too large",
            ));
        }
        self.state().set_len(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    /// Everything a reader of `f` sees, through `read_at` in small pieces.
    fn contents(f: &impl DiskFile) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = f.read_at(&mut buf, out.len() as u64).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn unsynced_writes_are_visible_in_process_and_absent_from_the_file_until_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let disk = WriteBehindDisk::new();
        let f = disk.create(&path).unwrap();
        assert_eq!(
            f.write_vectored_at(&[b(b"hello "), b(b"world")], 0)
                .unwrap(),
            11
        );
        f.write_all_at(b"W", 6).unwrap();
        assert_eq!(f.size().unwrap(), 11);
        assert_eq!(contents(&f), b"hello World");
        assert_eq!(&contents(&f)[..], b"hello World");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello World");
        // A clean file is mapped from the disk, and still reads the same.
        assert_eq!(&contents(&f)[..], b"hello World");
        f.write_all_at(b"!", 11).unwrap();
        assert_eq!(contents(&f), b"hello World!");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello World");
    }

    #[test]
    fn a_crash_keeps_exactly_the_synced_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let disk = WriteBehindDisk::new();
        let f = disk.create(&path).unwrap();
        f.write_all_at(b"0123456789", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"abc", 8).unwrap();
        f.write_all_at(b"xy", 2).unwrap();
        f.set_len(20).unwrap();
        assert_eq!(contents(&f), b"01xy4567abc\0\0\0\0\0\0\0\0\0");
        // The process dies: every handle goes, nothing more is synced.
        drop(f);
        drop(disk);
        let f = FsDisk.open(&path).unwrap();
        assert_eq!(DiskFile::size(&f).unwrap(), 10);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    }

    #[test]
    fn set_len_reaches_the_file_only_at_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let disk = WriteBehindDisk::new();
        let f = disk.create(&path).unwrap();
        f.write_all_at(b"0123456789", 0).unwrap();
        f.sync_data().unwrap();
        f.set_len(4).unwrap();
        assert_eq!(f.size().unwrap(), 4);
        // The cut bytes of the real file read as zeros when the file grows again.
        f.write_all_at(b"Z", 7).unwrap();
        assert_eq!(contents(&f), b"0123\0\0\0Z");
        assert_eq!(&contents(&f)[..], b"0123\0\0\0Z");
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"0123\0\0\0Z");
        // A cut alone, synced.
        f.set_len(2).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 8);
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"01");
        // An extension alone, synced.
        f.set_len(5).unwrap();
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"01\0\0\0");
    }

    #[test]
    fn create_of_an_existing_file_truncates_only_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old bytes").unwrap();
        let disk = WriteBehindDisk::new();
        let f = disk.create(&path).unwrap();
        assert_eq!(f.size().unwrap(), 0);
        assert_eq!(contents(&f), b"");
        f.write_all_at(b"new", 0).unwrap();
        assert_eq!(contents(&f), b"new");
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"old bytes");
        let f = disk.create(&path).unwrap();
        f.write_all_at(b"new", 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn handles_of_one_file_share_pending_writes_across_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, path) = (dir.path().join("f.tmp"), dir.path().join("f"));
        let disk = WriteBehindDisk::new();
        let a = disk.create(&tmp).unwrap();
        a.write_all_at(b"shared", 0).unwrap();
        disk.rename(&tmp, &path).unwrap();
        let c = disk.open(&path).unwrap();
        assert_eq!(contents(&c), b"shared");
        c.write_all_at(b"S", 0).unwrap();
        assert_eq!(contents(&a), b"Shared");
        assert_eq!(disk.list_dir(dir.path()).unwrap(), vec![path.clone()]);
        c.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"Shared");
    }

    /// A small seeded generator (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    #[test]
    fn random_writes_cuts_and_syncs_match_a_plain_model_and_a_crash_keeps_the_last_sync() {
        for seed in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let disk = WriteBehindDisk::new();
            let f = disk.create(&path).unwrap();
            let mut rng = Rng(seed);
            let mut model: Vec<u8> = Vec::new();
            let mut synced: Vec<u8> = Vec::new();
            for step in 0..200 {
                match rng.below(10) {
                    0..=5 => {
                        let at = rng.below(model.len() as u64 + 16);
                        let bufs: Vec<Bytes> = (0..1 + rng.below(3))
                            .map(|_| {
                                let n = rng.below(12) as usize;
                                Bytes::from(vec![(step % 251 + 1) as u8; n])
                            })
                            .collect();
                        let n = f.write_vectored_at(&bufs, at).unwrap();
                        let data: Vec<u8> = bufs.iter().flat_map(|b| b.to_vec()).collect();
                        assert_eq!(n, data.len());
                        // An empty write changes nothing, even past the end.
                        if !data.is_empty() {
                            let end = at as usize + data.len();
                            if model.len() < end {
                                model.resize(end, 0);
                            }
                            model[at as usize..end].copy_from_slice(&data);
                        }
                    }
                    6 | 7 => {
                        let len = rng.below(model.len() as u64 + 8);
                        f.set_len(len).unwrap();
                        model.resize(len as usize, 0);
                    }
                    8 => {
                        f.sync_data().unwrap();
                        synced = model.clone();
                        assert_eq!(std::fs::read(&path).unwrap(), synced, "seed {seed}");
                    }
                    _ => assert_eq!(&contents(&f)[..], &model[..], "seed {seed}"),
                }
                assert_eq!(f.size().unwrap(), model.len() as u64, "seed {seed}");
                assert_eq!(contents(&f), model, "seed {seed} step {step}");
                assert_eq!(std::fs::read(&path).unwrap(), synced, "seed {seed}");
            }
            drop(f);
            drop(disk);
            assert_eq!(std::fs::read(&path).unwrap(), synced, "seed {seed}");
        }
    }
}
