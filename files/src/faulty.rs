//! [`FaultyDisk`]: an in-memory [`Disk`] that models what a power cut keeps and injects faults.
//!
//! Every file has the bytes a reader sees (the page cache) and the bytes that survive a crash
//! (the disk). Writes and truncations go to the first at once and are queued as unsynced
//! operations; `sync_data` applies the queue to the durable copy. Directory entries work the
//! same way: creations, renames and removals become durable at `sync_dir`.
//!
//! Switches: fail reads of a file with EIO; fail the next fsync with EIO (and, as Linux does, drop the unsynced pages so a
//! later fsync cannot resurrect them); report ENOSPC once files have grown by N more bytes;
//! tear the next write after K bytes, after which the disk is "dead" (every call fails) until
//! [`FaultyDisk::crash`]; cut the power at the N-th sync or at the N-th changing call of any
//! kind (dead until `crash`); flip a byte. `crash` discards everything not synced, optionally keeping
//! a prefix of the unsynced writes (a torn tail), and invalidates every open handle, so a store
//! still running against the old handles cannot change the "rebooted" disk.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::disk::{Disk, DiskFile};

/// An in-memory, fault-injecting [`Disk`]. Clones share the same files.
#[derive(Clone, Debug, Default)]
pub struct FaultyDisk {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every crash; handles opened in an older epoch fail.
    epoch: u64,
    next_ino: u64,
    files: HashMap<u64, FileData>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    fail_next_sync: bool,
    /// Reads of this file fail with EIO (a bad sector), until [`FaultyDisk::crash`].
    fail_reads_of: Option<PathBuf>,
    enospc_budget: Option<u64>,
    tear_next_write: Option<usize>,
    dead: bool,
    syncs: u64,
    sync_delay: std::time::Duration,
    /// `sync_data` calls running now, and the most ever at once.
    syncs_running: u64,
    syncs_running_max: u64,
    /// Power fails when this many more `sync_data` calls have started (the last one included).
    crash_at_sync: Option<u64>,
    /// Power fails when this many more changing calls have started (the last one included).
    power_off_at_call: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

fn apply_write(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO: {what}"))
}

impl FaultyDisk {
    /// An empty disk with no faults armed.
    pub fn new() -> FaultyDisk {
        FaultyDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("faulty disk lock poisoned")
    }

    /// Makes the next `sync_data` fail with EIO and drop that file's unsynced writes from what
    /// can ever become durable (they stay visible to reads, like clean-marked dirty pages).
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// After files have grown by `bytes` more bytes, writes that extend a file are cut short and
    /// then fail with ENOSPC. Overwrites inside a file's length still succeed.
    pub fn enospc_after(&self, bytes: u64) {
        self.lock().enospc_budget = Some(bytes);
    }

    /// Makes every read of `path` (through any handle) fail with EIO, as a bad sector does,
    /// until [`FaultyDisk::heal_reads`] or a crash.
    pub fn fail_reads(&self, path: &Path) {
        self.lock().fail_reads_of = Some(path.to_path_buf());
    }

    /// Undoes [`FaultyDisk::fail_reads`].
    pub fn heal_reads(&self) {
        self.lock().fail_reads_of = None;
    }

    /// Frees the disk again after [`FaultyDisk::enospc_after`].
    pub fn clear_enospc(&self) {
        self.lock().enospc_budget = None;
    }

    /// The next write stores only its first `bytes` bytes (unsynced) and fails; from then on the
    /// disk is dead (every call fails with EIO) until [`FaultyDisk::crash`], as if the machine lost
    /// power in the middle of the write.
    pub fn tear_next_write(&self, bytes: usize) {
        self.lock().tear_next_write = Some(bytes);
    }

    /// Simulates a power cut and reboot: every file goes back to its durable bytes plus the first
    /// `keep_unsynced_bytes` bytes of its unsynced writes (in order; the last kept write may be
    /// cut anywhere), and the namespace goes back to its last synced state. Open handles from
    /// before the crash fail from now on. Faults are disarmed.
    pub fn crash(&self, keep_unsynced_bytes: usize) {
        self.lock().crash(keep_unsynced_bytes);
    }

    /// Power fails at the start of the `n`-th `sync_data` call from now (`n` ≥ 1), before it
    /// makes anything durable, as [`FaultyDisk::crash`] with no unsynced bytes kept; that call
    /// and every later one on an old handle fail. Stepping `n` puts the crash at every flush
    /// in turn, e.g. between a group's data fsync and its `.meta` fsync.
    pub fn crash_at_sync(&self, n: u64) {
        self.lock().crash_at_sync = Some(n.max(1));
    }

    /// Replaces the disk with a blank one (a lost or reformatted disk): every file and name is
    /// gone, durable or not, open handles fail, faults are disarmed.
    pub fn wipe(&self) {
        let mut s = self.lock();
        s.crash(0);
        s.files.clear();
        s.names.clear();
        s.durable_names.clear();
    }

    /// Power fails at the start of the `n`-th changing call from now (`n` ≥ 1): a create,
    /// rename, removal, directory sync, write, length change or `sync_data`. That call changes
    /// nothing and fails, and so does every later call until [`FaultyDisk::crash`] (the reboot)
    /// decides what survived. Stepping `n` from 1 up interrupts a sequence of steps (such as
    /// [`crate::replace`]) before each of its steps in turn.
    pub fn power_off_at_call(&self, n: u64) {
        self.lock().power_off_at_call = Some(n.max(1));
    }

    /// The most `sync_data` calls that ever ran at the same time (with a sync delay set, on
    /// different files: overlapping flushes).
    pub fn max_concurrent_syncs(&self) -> u64 {
        self.lock().syncs_running_max
    }
}

impl State {
    /// Counts one changing call toward [`FaultyDisk::power_off_at_call`]; fails if the power
    /// goes now.
    fn changing_call(&mut self) -> io::Result<()> {
        match self.power_off_at_call {
            Some(n) if n <= 1 => {
                self.power_off_at_call = None;
                self.dead = true;
                Err(eio("power cut"))
            }
            Some(n) => {
                self.power_off_at_call = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn crash(&mut self, keep_unsynced_bytes: usize) {
        let s = self;
        s.epoch += 1;
        s.crash_at_sync = None;
        s.power_off_at_call = None;
        s.dead = false;
        s.fail_next_sync = false;
        s.fail_reads_of = None;
        s.enospc_budget = None;
        s.tear_next_write = None;
        s.names = s.durable_names.clone();
        let live: Vec<u64> = s.names.values().copied().collect();
        s.files.retain(|ino, _| live.contains(ino));
        for f in s.files.values_mut() {
            let mut bytes = std::mem::take(&mut f.durable);
            let mut budget = keep_unsynced_bytes;
            for op in f.unsynced.drain(..) {
                match op {
                    Op::SetLen(len) => bytes.resize(len as usize, 0),
                    Op::Write { offset, data } => {
                        let n = data.len().min(budget);
                        apply_write(&mut bytes, offset, &data[..n]);
                        budget -= n;
                    }
                }
                if budget == 0 {
                    break;
                }
            }
            f.current = bytes.clone();
            f.durable = bytes;
        }
    }
}

impl FaultyDisk {
    /// Flips every bit of the byte at `offset` of `path`, in the cache and on "disk".
    ///
    /// # Panics
    /// If the file does not exist or is shorter: a test bug.
    pub fn flip_byte(&self, path: &Path, offset: u64) {
        let mut s = self.lock();
        let ino = *s.names.get(path).expect("flip_byte: no such file");
        let f = s.files.get_mut(&ino).expect("inode exists");
        f.current[offset as usize] ^= 0xff;
        if let Some(b) = f.durable.get_mut(offset as usize) {
            *b ^= 0xff;
        }
    }

    /// Makes every `sync_data` take at least `delay`, as a real disk's flush does, so that tests
    /// of group commit do not depend on how fast the test machine schedules threads.
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.lock().sync_delay = delay;
    }

    /// Number of successful `sync_data` calls so far, on every file.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The bytes a reader of `path` sees now, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        let ino = s.names.get(path)?;
        Some(s.files[ino].current.clone())
    }

    /// The paths of every file, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    fn open_ino(&self, ino: u64, epoch: u64) -> FaultyFile {
        FaultyFile {
            disk: self.clone(),
            ino,
            epoch,
        }
    }

    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = self.lock();
        if s.dead {
            return Err(eio("disk is dead after a torn write"));
        }
        Ok(s)
    }
}

/// A handle on a [`FaultyDisk`] file.
#[derive(Debug)]
pub struct FaultyFile {
    disk: FaultyDisk,
    ino: u64,
    epoch: u64,
}

impl FaultyFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.disk.live()?;
        if s.epoch != self.epoch || !s.files.contains_key(&self.ino) {
            return Err(eio("stale handle after a crash"));
        }
        f(&mut s, self.ino)
    }
}

impl Disk for FaultyDisk {
    type File = FaultyFile;

    fn create(&self, path: &Path) -> io::Result<FaultyFile> {
        let mut s = self.live()?;
        s.changing_call()?;
        if let Some(&ino) = s.names.get(path) {
            let f = s.files.get_mut(&ino).expect("inode exists");
            f.current.clear();
            f.unsynced.push(Op::SetLen(0));
            return Ok(self.open_ino(ino, s.epoch));
        }
        s.next_ino += 1;
        let ino = s.next_ino;
        s.files.insert(ino, FileData::default());
        s.names.insert(path.to_path_buf(), ino);
        Ok(self.open_ino(ino, s.epoch))
    }

    fn open(&self, path: &Path) -> io::Result<FaultyFile> {
        let s = self.live()?;
        match s.names.get(path) {
            Some(&ino) => Ok(self.open_ino(ino, s.epoch)),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        s.changing_call()?;
        let ino = s.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        s.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        s.changing_call()?;
        s.names.remove(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        s.changing_call()?;
        let in_dir = |p: &Path| p.parent() == Some(dir);
        let mut durable: BTreeMap<PathBuf, u64> = s
            .durable_names
            .iter()
            .filter(|(p, _)| !in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        durable.extend(
            s.names
                .iter()
                .filter(|(p, _)| in_dir(p))
                .map(|(p, i)| (p.clone(), *i)),
        );
        s.durable_names = durable;
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.live()?;
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit: a path's parent is its directory.
        Ok(())
    }
}

impl DiskFile for FaultyFile {
    fn size(&self) -> io::Result<u64> {
        self.with(|s, ino| Ok(s.files[&ino].current.len() as u64))
    }

    fn write_vectored_at(&self, bufs: &[Bytes], offset: u64) -> io::Result<usize> {
        self.with(|s, ino| {
            s.changing_call()?;
            let mut data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let cur_len = s.files[&ino].current.len() as u64;
            let mut result_len = data.len();
            let mut fail = None;
            if let Some(k) = s.tear_next_write.take() {
                data.truncate(k);
                result_len = data.len();
                s.dead = true;
                fail = Some(eio("torn write"));
            }
            if let Some(budget) = s.enospc_budget {
                let end = offset + data.len() as u64;
                let growth = end.saturating_sub(cur_len.max(offset));
                if growth > budget {
                    let allowed_end = cur_len.max(offset) + budget;
                    let keep = allowed_end.saturating_sub(offset) as usize;
                    data.truncate(keep);
                    result_len = keep;
                    if keep == 0 {
                        fail = Some(io::Error::from_raw_os_error(libc::ENOSPC));
                    }
                }
                let used = (offset + data.len() as u64).saturating_sub(cur_len.max(offset));
                s.enospc_budget = Some(budget - used.min(budget));
            }
            let f = s.files.get_mut(&ino).expect("inode exists");
            apply_write(&mut f.current, offset, &data);
            if !data.is_empty() {
                f.unsynced.push(Op::Write { offset, data });
            }
            match fail {
                Some(e) => Err(e),
                None => Ok(result_len),
            }
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|s, ino| {
            if let Some(bad) = &s.fail_reads_of
                && s.names.get(bad) == Some(&ino)
            {
                return Err(eio("read"));
            }
            let cur = &s.files[&ino].current;
            let start = (offset as usize).min(cur.len());
            let n = buf.len().min(cur.len() - start);
            buf[..n].copy_from_slice(&cur[start..start + n]);
            Ok(n)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let delay = {
            let mut s = self.disk.lock();
            if let Some(n) = s.crash_at_sync {
                if n <= 1 {
                    s.crash(0);
                } else {
                    s.crash_at_sync = Some(n - 1);
                }
            }
            s.syncs_running += 1;
            s.syncs_running_max = s.syncs_running_max.max(s.syncs_running);
            s.sync_delay
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        self.disk.lock().syncs_running -= 1;
        self.with(|s, ino| {
            s.changing_call()?;
            let fail = std::mem::take(&mut s.fail_next_sync);
            let f = s.files.get_mut(&ino).expect("inode exists");
            let ops = std::mem::take(&mut f.unsynced);
            if fail {
                // Linux marks the failed pages clean: they will never reach the disk.
                return Err(eio("fsync"));
            }
            for op in ops {
                match op {
                    Op::SetLen(len) => f.durable.resize(len as usize, 0),
                    Op::Write { offset, data } => apply_write(&mut f.durable, offset, &data),
                }
            }
            s.syncs += 1;
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|s, ino| {
            s.changing_call()?;
            let f = s.files.get_mut(&ino).expect("inode exists");
            f.current.resize(len as usize, 0);
            f.unsynced.push(Op::SetLen(len));
            Ok(())
        })
    }
}
