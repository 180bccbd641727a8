//! The crash-safe chunk store: one file per replica, group commit, recovery at open.
//!
//! # Files
//! Under `DATA/chunks/`: `{handle:016x}.chunk`, the replica (a `ChunkHeader` then frames), and
//! `{handle:016x}.meta`, its durable state (version, a length known durable, sealed and failed
//! flags, capacity) in two alternating checksummed slots (see [`meta`] and FORMAT.md). New files
//! are written as `*.tmp`, fsynced, renamed, and the directory fsynced; leftover `*.tmp` files
//! are removed at open.
//!
//! # Invariants
//! - An append is answered only after its bytes are durable (one `fdatasync` per group).
//! - `.meta` changes only with the replica's state (creation, fence, seal, failure); its
//!   `acked_len` is a length known durable at that moment (the sealed length once sealed).
//! - Restart cuts bad bytes at the end of an open replica (a torn append) down to the last
//!   whole frame, but never below `acked_len`, and never a bad range that valid frames follow:
//!   that is corruption, kept and reported in [`ReplicaState::corrupt`]. An acknowledged byte
//!   one replica lost is still on the others; the master seals at the longest fenced length, so
//!   one short replica never shortens the chunk (ARCHITECTURE.md, "Seal").
//! - The writer writes only at the file's length, which between groups is the durable length.
//!   Reads never return bytes past the durable length; a file shorter than that is corrupt.
//! - Exactly one thread writes a replica's `.meta` at a time (its writer's step while it runs,
//!   the caller's thread after), each write with the next generation, so writes alternate slots.
//! - An fsync error fails the replica for good (persisted in `.meta`); it is never retried.
//!
//! # Threads, descriptors, memory
//! Each open (writable) replica has a writer that does group commit (see the `writer` module) and holds
//! its chunk and `.meta` files open; at most [`OPEN_REPLICAS_MAX`] replicas are open (`create`
//! beyond is `Exhausted`). A writer is not a thread: its steps run on the store's scheduler
//! ([`schedule`]), a pool of at most [`WRITER_THREADS_MAX`] threads (`chunk-writer-N`, started
//! with work, ended when idle), or inline in the caller (simulations). At seal (or failure) the
//! writer ends and the descriptors are released before the seal is answered. Sealed, failed and
//! corrupt replicas have no writer and no descriptor: reads go through a descriptor cache of at
//! most [`FILE_CACHE_MAX`] chunk files (the `files` module). What a replica costs in memory is its small
//! in-memory state (no buffer, no map). So threads and descriptors are bounded by limits, not by
//! the number of replicas, open or sealed.
//!
//! # No memory maps
//! Reads, the startup scan and the scrubber use `pread` only ([`disk::FsDisk`] maps nothing): a
//! mapped page that the file no longer has (truncated under the server) or that the disk cannot
//! read is `SIGBUS` and would kill the whole process for one bad file, and crash-loop it when
//! the startup scan meets it. A failed or short `pread` costs one replica: it is marked corrupt
//! (persisted, reported, reads answer `DATA_LOSS`) and the master replaces it. (`cairn inspect`
//! reads a file it is pointed at into memory; a fault there ends that one command.) Appends and
//! fences are futures completed by the writer through `tokio::sync::oneshot`; they need no
//! runtime of their own. `create`, `seal` and `delete` block on disk I/O: call them from
//! `spawn_blocking` in async code (with inline writers, on a simulated disk, directly).

#[cfg(feature = "test-faults")]
pub mod fail_disk;
mod files;
pub mod meta;
mod scan;
pub mod schedule;
pub mod server_disk;
mod writer;

/// The disk seam, shared with the master: it lives in `cairn-files` (re-exported here, so the
/// store's paths stay as they were).
pub use cairn_files::{disk, faulty, write_behind};

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use cairn_record::limits::CHUNK_HEADER_BYTES;
use cairn_record::{ByteRange, ChunkHandle, ChunkHeader, ChunkVersion, Recovery};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use self::disk::{Disk, DiskFile};
use self::files::{FileSource, Files};
use self::meta::Meta;
use self::schedule::{Scheduler, Scheduling};
use self::writer::{Msg, Pinned, Replica, Stats, Status, Submitted};
use crate::error::{Error, Result, is_exhausted};
use crate::limits::{
    FILE_CACHE_MAX, META_FILE_BYTES, OPEN_REPLICAS_MAX, READ_BYTES_MAX, REPLICAS_MAX,
    WRITER_THREADS_MAX,
};
use crate::scrub::{ScrubCounters, ScrubStats};

/// The chunk store the chunkserver's RPC service runs on.
pub trait ChunkStore: Send + Sync + 'static {
    /// Creates an empty replica (just the header) of `handle` at `version`, `capacity` bytes
    /// (header included). Durable when it returns.
    fn create(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        capacity: u64,
    ) -> Result<ReplicaState>;

    /// Appends `frames` (whole frames, a multiple of 8 bytes) at file offset `offset`.
    /// Resolves once bytes [offset, offset+frames.len()) are durable; returns the new durable
    /// length. An early append (offset past the current end) waits, bounded, for the bytes
    /// before it. The request is queued when this is called, not when the future is polled; a
    /// dropped future does not cancel it. The future does not borrow the store (`'static`), so
    /// a caller can queue appends in order under a lock and await them in another task.
    fn append(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        offset: u64,
        frames: Bytes,
    ) -> impl Future<Output = Result<u64>> + Send + 'static;

    /// Up to `max_len` bytes from file offset `offset`, never past the durable length.
    /// Never waits for writes. One `pread` into one buffer, returned without copying; a read
    /// the file cannot answer (EIO, or the file ends before the durable length) marks the
    /// replica corrupt and answers `Corrupt`.
    fn read(&self, handle: ChunkHandle, offset: u64, max_len: usize) -> Result<Bytes>;

    /// The replica's state.
    fn state(&self, handle: ChunkHandle) -> Result<ReplicaState>;

    /// Every replica's state, by handle, for reports to the master.
    fn list(&self) -> Vec<ReplicaState>;

    /// Fences the replica at `new_version` (the master's seal): completes the appends queued
    /// before it, fails held early ones, persists the new version and returns the state with
    /// the durable length. Afterwards appends with an older version are refused. Fencing at the
    /// current version again returns the state unchanged; a lower version is `StaleVersion`.
    fn fence(
        &self,
        handle: ChunkHandle,
        new_version: ChunkVersion,
    ) -> impl Future<Output = Result<ReplicaState>> + Send + 'static;

    /// Seals the replica at `len` (the master's agreed length, possibly below this replica's
    /// length), which must be at most the durable length; the version must be the
    /// replica's. Persisted; the file is cut to `len`; the replica's writer thread ends and its
    /// descriptors are released. Repeating the same seal is a no-op.
    fn seal(&self, handle: ChunkHandle, version: ChunkVersion, len: u64) -> Result<ReplicaState>;

    /// Removes the replica and its files.
    fn delete(&self, handle: ChunkHandle) -> Result<()>;
}

/// What a replica reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    /// The chunk.
    pub handle: ChunkHandle,
    /// The replica's chunk version.
    pub version: ChunkVersion,
    /// Chunk capacity in bytes, header included.
    pub capacity: u64,
    /// Durable file length (header included).
    pub len: u64,
    /// A length known durable when `.meta` was last written (creation, fence, failure): losing
    /// bytes below it is corruption. Once sealed, the sealed length.
    pub acked_len: u64,
    /// Sealed: immutable at `acked_len`.
    pub sealed: bool,
    /// Failed after an I/O error: refuses appends, to be recovered from another replica.
    pub failed: bool,
    /// Bad byte ranges (empty when healthy), found at startup, by the scrubber or by a failed
    /// read; such a replica refuses appends, and reads that overlap a bad range. A replica
    /// marked corrupt before a restart comes back with one range covering the whole file (the
    /// mark is persisted, the ranges are not).
    pub corrupt: Vec<ByteRange>,
}

impl ReplicaState {
    /// Neither failed nor corrupt.
    pub fn healthy(&self) -> bool {
        !self.failed && self.corrupt.is_empty()
    }
}

/// Counters of a store's disk work since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Group commits: one chunk-file write + fdatasync each.
    pub groups: u64,
    /// Appends acknowledged.
    pub appends: u64,
    /// `fdatasync` calls on chunk files by group commits.
    pub data_fsyncs: u64,
    /// `fdatasync` calls on `.meta` files (at most one per group: one per committer batch of
    /// groups, plus fences, seals and failures).
    pub meta_fsyncs: u64,
}

/// The bounds of a store and where its writers run; [`StoreOptions::default`] is the
/// chunkserver's (`crate::limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Where open replicas' writers run: a pool of at most `WRITER_THREADS_MAX` threads by
    /// default, or inline (see [`schedule`]).
    pub writers: Scheduling,
    /// Most chunk files of replicas without a writer held open at once (see the store's `files` module).
    pub file_cache: usize,
    /// Most open (writable) replicas, each with a writer thread and two descriptors.
    pub open_replicas: usize,
    /// Most replicas held; replicas found at open are all kept, only creation is refused.
    pub replicas: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            writers: Scheduling::Threads(WRITER_THREADS_MAX),
            file_cache: FILE_CACHE_MAX,
            open_replicas: OPEN_REPLICAS_MAX,
            replicas: REPLICAS_MAX,
        }
    }
}

/// A [`ChunkStore`] on a [`Disk`]: [`disk::FsDisk`] in production, [`faulty::FaultyDisk`] in
/// tests.
pub struct Store<D: Disk> {
    limits: StoreOptions,
    /// Runs the open replicas' writers.
    scheduler: Arc<Scheduler>,
    /// The disk, the directory and the descriptor cache, shared with every replica.
    files: Arc<Files<D>>,
    replicas: RwLock<BTreeMap<ChunkHandle, Arc<Replica<D::File>>>>,
    /// Serialises create and delete, which do several file operations.
    admin: Mutex<()>,
    stats: Arc<Stats>,
    scrub: ScrubCounters,
}

fn chunk_path(dir: &Path, handle: ChunkHandle) -> PathBuf {
    dir.join(format!("{handle}.chunk"))
}

fn meta_path(dir: &Path, handle: ChunkHandle) -> PathBuf {
    dir.join(format!("{handle}.meta"))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The handle a `{handle:016x}.{ext}` file name names, if it is one.
fn parse_name(path: &Path, ext: &str) -> Option<ChunkHandle> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 16 {
        return None;
    }
    stem.parse().ok()
}

impl<D: Disk> Store<D> {
    /// Opens the store under `data_dir` (files in `data_dir/chunks/`), creating it if needed, and
    /// recovers every replica: leftover `*.tmp` files are removed; an open replica's torn tail
    /// past `acked_len` is cut (and fsynced, with a warning); bad bytes below it mark
    /// the replica corrupt, and the file is kept as it is. Sealed replicas are only checked for
    /// length here (the scrubber verifies their frames), so startup does not read every byte.
    pub fn open(data_dir: &Path, disk: D) -> Result<Store<D>> {
        Store::open_with(data_dir, disk, StoreOptions::default())
    }

    /// [`Store::open`] with other bounds than the chunkserver's (tests reach them quickly), or
    /// its writers run inline (simulations).
    pub fn open_with(data_dir: &Path, disk: D, limits: StoreOptions) -> Result<Store<D>> {
        let dir = data_dir.join("chunks");
        disk.create_dir_all(&dir)
            .map_err(Error::io("create directory", &dir))?;
        let store = Store {
            limits,
            scheduler: Arc::new(Scheduler::new(limits.writers)),
            files: Arc::new(Files::new(disk, dir, limits.file_cache)),
            replicas: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            stats: Arc::new(Stats::default()),
            scrub: ScrubCounters::default(),
        };
        store.recover_all()?;
        Ok(store)
    }

    /// Counters of the disk work done since open.
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    /// Times every later group commit's fdatasync and counts its batches into `timings` (the
    /// first call wins).
    pub(crate) fn set_writer_metrics(&self, timings: crate::metrics::WriterMetrics) {
        let _ = self.stats.timings.set(timings);
    }

    /// Counters of the scrubber's work (and of corrupt replicas found by reads) since open.
    pub fn scrub_stats(&self) -> ScrubStats {
        self.scrub.snapshot()
    }

    pub(crate) fn scrub_counters(&self) -> &ScrubCounters {
        &self.scrub
    }

    /// Chunk files held open by the descriptor cache now (open replicas' files not counted):
    /// at most the cache's bound.
    pub fn cached_files(&self) -> usize {
        self.files.cached()
    }

    /// Threads running writers now: at most the pool's bound (`WRITER_THREADS_MAX` by default),
    /// 0 when writers run inline.
    pub fn writer_threads(&self) -> usize {
        self.scheduler.threads()
    }

    /// Replicas open now, each with two descriptors: at most
    /// [`OPEN_REPLICAS_MAX`] created through [`ChunkStore::create`].
    pub fn open_replicas(&self) -> u64 {
        self.stats.open_replicas.load(Ordering::Acquire)
    }

    /// Reads into `buf` from file offset `offset` of `handle`'s replica with `pread` (the store
    /// maps no file, so a failing disk is an error here rather than a `SIGBUS`). Returns the
    /// count, short only at the end of the file. For the scrubber: no length or state checks.
    pub fn read_from_disk(
        &self,
        handle: ChunkHandle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let rep = self.get(handle)?;
        let path = || chunk_path(self.dir(), handle);
        rep.chunk_file()
            .and_then(|f| f.read_full_at(buf, offset))
            .map_err(Error::io("read", path()))
    }

    /// Marks `handle`'s replica corrupt in `ranges` (added to those already known). From then on
    /// it refuses reads overlapping them, appends, fences and seals, and reports itself corrupt
    /// to the master. A sealed replica persists the mark
    /// in its `.meta` (in both slots, so no older unmarked state is left to fall back on); an
    /// open one keeps it in memory only, since its writer owns the `.meta` file. The in-memory
    /// mark holds even if persisting fails (the error is returned).
    pub fn mark_corrupt(&self, handle: ChunkHandle, ranges: &[ByteRange]) -> Result<()> {
        let rep = self.get(handle)?;
        let mut s = rep.status();
        if s.deleted {
            return Err(Error::NotFound { handle });
        }
        if s.corrupt.is_empty() {
            self.scrub.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        for r in ranges {
            if !s.corrupt.contains(r) {
                s.corrupt.push(*r);
            }
        }
        s.corrupt.sort();
        if !s.meta.sealed || s.meta.corrupt {
            return Ok(());
        }
        let mpath = meta_path(self.dir(), handle);
        let next = Meta {
            corrupt: true,
            ..s.meta
        };
        let first = rep.write_meta(next).map_err(Error::io("write", &mpath))?;
        s.meta = first;
        s.meta = rep.write_meta(first).map_err(Error::io("write", &mpath))?;
        info!(chunk = %handle, ranges = ?s.corrupt, "replica marked corrupt");
        Ok(())
    }

    /// The disk the store runs on.
    pub fn disk(&self) -> &D {
        &self.files.disk
    }

    /// The directory holding the replica files.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// The path of `handle`'s chunk file.
    pub fn chunk_path(&self, handle: ChunkHandle) -> PathBuf {
        chunk_path(self.dir(), handle)
    }

    /// The path of `handle`'s `.meta` file.
    pub fn meta_path(&self, handle: ChunkHandle) -> PathBuf {
        meta_path(self.dir(), handle)
    }

    fn recover_all(&self) -> Result<()> {
        let dir = self.dir();
        let paths = self
            .disk()
            .list_dir(dir)
            .map_err(Error::io("list directory", dir))?;
        let mut removed = false;
        for p in &paths {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let orphan_meta =
                parse_name(p, "meta").is_some_and(|h| !paths.contains(&chunk_path(dir, h)));
            if name.ends_with(".tmp") || orphan_meta {
                // An unfinished create (or delete): nothing in it was ever acknowledged.
                info!(path = %p.display(), "removing leftover file");
                self.disk()
                    .remove_file(p)
                    .map_err(Error::io("remove leftover", p))?;
                removed = true;
            }
        }
        if removed {
            self.disk()
                .sync_dir(dir)
                .map_err(Error::io("fsync directory", dir))?;
        }
        for p in &paths {
            let Some(handle) = parse_name(p, "chunk") else {
                continue;
            };
            if let Some(rep) = self.recover(handle)? {
                self.insert(rep)?;
            }
        }
        Ok(())
    }

    /// Recovers one replica; `None` (with an error logged, file kept) if its state file is
    /// missing or unreadable. Reads use `pread` only (see [`scan`]): a chunk file that cannot be
    /// opened or read (EIO) loads as a corrupt replica, for the master to replace, instead of
    /// failing the whole store. Only an open, healthy replica keeps its files open (for its
    /// writer); every other replica's descriptors are closed before the next one is looked at.
    fn recover(&self, handle: ChunkHandle) -> Result<Option<Replica<D::File>>> {
        let path = chunk_path(self.dir(), handle);
        let mpath = meta_path(self.dir(), handle);
        let meta_file = match self.disk().open(&mpath) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                error!(chunk = %handle, "replica has no state file; kept, not loaded");
                return Ok(None);
            }
            Err(e) if is_exhausted(&e) => return Err(Error::io("open", &mpath)(e)),
            Err(e) => {
                error!(chunk = %handle, error = %e, "replica state file cannot be opened; kept, not loaded");
                return Ok(None);
            }
        };
        let mut mbytes = vec![0u8; META_FILE_BYTES as usize];
        let meta = match meta_file.read_full_at(&mut mbytes, 0) {
            Ok(n) => Meta::choose(&mbytes[..n], handle),
            Err(e) => {
                error!(chunk = %handle, error = %e, "replica state file cannot be read; kept, not loaded");
                return Ok(None);
            }
        };
        let Some(meta) = meta else {
            error!(chunk = %handle, "replica state file has no valid slot; kept, not loaded");
            return Ok(None);
        };
        let whole = |len: u64| {
            vec![ByteRange {
                offset: 0,
                len: len.max(meta.acked_len),
            }]
        };
        let (file, len, mut corrupt) = match self.open_chunk(handle, &meta) {
            Ok((file, len, corrupt)) => (Some(file), len, corrupt),
            Err(e) if is_exhausted(&e) => return Err(Error::io("open", &path)(e)),
            Err(e) => {
                error!(chunk = %handle, error = %e, "chunk file cannot be read; replica corrupt");
                (None, meta.acked_len, whole(0))
            }
        };
        if meta.corrupt && corrupt.is_empty() {
            // Marked by a scrub or a failed read before the restart; its ranges were not kept.
            corrupt = whole(len);
        }
        if !corrupt.is_empty() {
            error!(chunk = %handle, ranges = ?corrupt, acked_len = meta.acked_len, "replica corrupt; kept for repair");
        }
        let status = Status {
            meta,
            corrupt,
            deleted: false,
        };
        let pinned = match file {
            Some(chunk) if status.writable() => Some(Pinned {
                chunk: Arc::new(chunk),
                meta: meta_file,
            }),
            // Not open: both descriptors close here.
            _ => None,
        };
        let files: Arc<dyn FileSource<D::File>> = self.files.clone();
        Ok(Some(Replica::new(
            handle,
            pinned,
            files,
            len,
            status,
            self.stats.clone(),
            self.scheduler.clone(),
        )))
    }

    /// Opens `handle`'s chunk file and checks it: a sealed replica's length (its frames are
    /// the scrubber's job, so startup does not read every byte), an open replica's frames (a
    /// torn tail is cut). Returns the file, its length and its corrupt ranges.
    fn open_chunk(
        &self,
        handle: ChunkHandle,
        meta: &Meta,
    ) -> io::Result<(D::File, u64, Vec<ByteRange>)> {
        let path = chunk_path(self.dir(), handle);
        let file = self.disk().open(&path)?;
        let mut len = file.size()?;
        if meta.sealed {
            if len > meta.acked_len {
                // A seal was persisted but the cut had not finished: finish it.
                info!(chunk = %handle, from = len, to = meta.acked_len, "finishing an interrupted seal");
                cut(&file, meta.acked_len)?;
                len = meta.acked_len;
            }
            return Ok((file, len, check_sealed_len(len, meta.acked_len)));
        }
        let corrupt = match scan::scan_open_replica(handle, &file, meta.acked_len, len)? {
            Recovery::Clean => Vec::new(),
            Recovery::TornTail { valid_len } => {
                warn!(chunk = %handle, from = len, to = valid_len, acked_len = meta.acked_len, "cutting torn tail");
                cut(&file, valid_len)?;
                len = valid_len;
                Vec::new()
            }
            Recovery::Corrupt { ranges } => ranges,
        };
        Ok((file, len, corrupt))
    }

    fn insert(&self, rep: Replica<D::File>) -> Result<Arc<Replica<D::File>>> {
        let handle = rep.handle;
        let writable = rep.status().writable();
        let rep = Arc::new(rep);
        if writable {
            rep.start_writer();
        }
        self.replicas
            .write()
            .expect("replica map lock poisoned")
            .insert(handle, rep.clone());
        Ok(rep)
    }

    fn get(&self, handle: ChunkHandle) -> Result<Arc<Replica<D::File>>> {
        self.replicas
            .read()
            .expect("replica map lock poisoned")
            .get(&handle)
            .cloned()
            .ok_or(Error::NotFound { handle })
    }

    /// Queues an append now; the receiver resolves when the writer answers.
    fn submit_append(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        offset: u64,
        frames: Bytes,
    ) -> Result<oneshot::Receiver<Result<u64>>> {
        let rep = self.get(handle)?;
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Append {
            version,
            offset,
            frames,
            reply,
        };
        if let Submitted::NoWriter(msg) = rep.submit(msg)? {
            rep.answer_inline(msg);
        }
        Ok(rx)
    }

    fn submit_fence(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
    ) -> Result<oneshot::Receiver<Result<ReplicaState>>> {
        let rep = self.get(handle)?;
        let (reply, rx) = oneshot::channel();
        if let Submitted::NoWriter(msg) = rep.submit(Msg::Fence { version, reply })? {
            rep.answer_inline(msg);
        }
        Ok(rx)
    }

    /// A read the replica's file could not answer (EIO, a missing or short file): such a disk
    /// cannot be trusted with these bytes, so the range is marked corrupt, the master learns of
    /// it and readers go to another replica.
    fn read_failed(&self, handle: ChunkHandle, offset: u64, len: usize, why: &str) -> Error {
        let bad = ByteRange {
            offset,
            len: len as u64,
        };
        error!(chunk = %handle, offset, len, error = why, "read failed; replica marked corrupt");
        if let Err(e) = self.mark_corrupt(handle, &[bad]) {
            error!(chunk = %handle, error = %e, "could not persist the corrupt mark");
        }
        Error::Corrupt {
            handle,
            ranges: vec![bad],
        }
    }

    fn create_files(&self, header: &ChunkHeader, meta: &Meta) -> io::Result<(D::File, D::File)> {
        let handle = header.handle;
        let (cpath, mpath) = (
            chunk_path(self.dir(), handle),
            meta_path(self.dir(), handle),
        );
        let (ctmp, mtmp) = (tmp_path(&cpath), tmp_path(&mpath));
        let file = self.disk().create(&ctmp)?;
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        let meta_file = self.disk().create(&mtmp)?;
        let mut mbytes = vec![0u8; META_FILE_BYTES as usize];
        let at = meta.slot_offset() as usize;
        mbytes[at..at + crate::limits::META_SLOT_BYTES].copy_from_slice(&meta.encode());
        meta_file.write_all_at(&mbytes, 0)?;
        meta_file.sync_data()?;
        // The state file first: a chunk file without one cannot be loaded, while a state file
        // without a chunk file is a leftover that open removes.
        self.disk().rename(&mtmp, &mpath)?;
        self.disk().rename(&ctmp, &cpath)?;
        // Fsync the directory too: the renames are not durable until their parent is.
        self.disk().sync_dir(self.dir())?;
        Ok((file, meta_file))
    }
}

/// Truncates `file` to `len` and makes that durable.
fn cut<F: DiskFile>(file: &F, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

/// A sealed replica shorter than its sealed length lost bytes: that range is corrupt.
fn check_sealed_len(len: u64, sealed_len: u64) -> Vec<ByteRange> {
    if len < sealed_len {
        vec![ByteRange {
            offset: len,
            len: sealed_len - len,
        }]
    } else {
        Vec::new()
    }
}

impl<D: Disk> ChunkStore for Store<D> {
    fn create(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        capacity: u64,
    ) -> Result<ReplicaState> {
        let header = ChunkHeader::new(handle, capacity)?;
        let _admin = self.admin.lock().expect("store admin lock poisoned");
        if self.get(handle).is_ok() {
            return Err(Error::AlreadyExists { handle });
        }
        let open = self.open_replicas();
        if open >= self.limits.open_replicas as u64 {
            // Each open replica holds a thread and two descriptors: refuse rather than run out.
            return Err(Error::exhausted(
                "open replicas",
                format!("{open} replicas are open here, the most one chunkserver holds"),
            ));
        }
        let held = self.replicas.read().expect("replicas lock poisoned").len();
        if held >= self.limits.replicas {
            // Each replica costs a little memory and a line of every report to the master.
            return Err(Error::exhausted(
                "replicas",
                format!(
                    "{held} replicas are held here, the most one chunkserver holds \
                     (its report to the master must fit one message)"
                ),
            ));
        }
        let meta = Meta {
            generation: 1,
            handle,
            version,
            acked_len: CHUNK_HEADER_BYTES as u64,
            capacity,
            sealed: false,
            failed: false,
            corrupt: false,
        };
        let (file, meta_file) = self
            .create_files(&header, &meta)
            .map_err(Error::io("create", chunk_path(self.dir(), handle)))?;
        let status = Status {
            meta,
            corrupt: Vec::new(),
            deleted: false,
        };
        let pinned = Pinned {
            chunk: Arc::new(file),
            meta: meta_file,
        };
        let files: Arc<dyn FileSource<D::File>> = self.files.clone();
        let rep = Replica::new(
            handle,
            Some(pinned),
            files,
            CHUNK_HEADER_BYTES as u64,
            status,
            self.stats.clone(),
            self.scheduler.clone(),
        );
        info!(chunk = %handle, %version, capacity, "replica created");
        Ok(self.insert(rep)?.state())
    }

    fn append(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        offset: u64,
        frames: Bytes,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        let rx = self.submit_append(handle, version, offset, frames);
        async move {
            match rx {
                Ok(rx) => rx.await.unwrap_or(Err(Error::Closed { handle })),
                Err(e) => Err(e),
            }
        }
    }

    fn read(&self, handle: ChunkHandle, offset: u64, max_len: usize) -> Result<Bytes> {
        if max_len > READ_BYTES_MAX {
            return Err(Error::ReadTooLarge {
                len: max_len,
                max: READ_BYTES_MAX,
            });
        }
        let rep = self.get(handle)?;
        let len = rep.durable.load(Ordering::Acquire);
        if offset > len {
            return Err(Error::OutOfRange {
                handle,
                offset,
                len,
            });
        }
        let n = (max_len as u64).min(len - offset) as usize;
        {
            let s = rep.status();
            let end = offset + n as u64;
            let bad: Vec<ByteRange> = s
                .corrupt
                .iter()
                .filter(|r| r.offset < end.max(offset + 1) && offset < r.end())
                .copied()
                .collect();
            if !bad.is_empty() {
                return Err(Error::Corrupt {
                    handle,
                    ranges: bad,
                });
            }
        }
        if n == 0 {
            return Ok(Bytes::new());
        }
        let path = || chunk_path(self.dir(), handle);
        let file = match rep.chunk_file() {
            Ok(f) => f,
            // Out of descriptors is this server's problem, not the replica's.
            Err(e) if is_exhausted(&e) => return Err(Error::io("open", path())(e)),
            Err(e) => return Err(self.read_failed(handle, offset, n, &e.to_string())),
        };
        // One buffer per read, handed out without a copy: replay slices records out of it.
        let mut buf = vec![0u8; n];
        let got = match file.read_full_at(&mut buf, offset) {
            Ok(got) => got,
            Err(e) => return Err(self.read_failed(handle, offset, n, &e.to_string())),
        };
        drop(file);
        if got < n {
            // The file ends before the durable length. Only a seal cuts a replica, and only
            // past the new durable length (reads stop there); anything else is lost bytes.
            let now = rep.durable.load(Ordering::Acquire);
            let want_end = (offset + n as u64).min(now);
            let got_end = offset + got as u64;
            if got_end < want_end {
                let why = format!("file ends at {got_end}, before the durable length {now}");
                return Err(self.read_failed(handle, got_end, (want_end - got_end) as usize, &why));
            }
            buf.truncate(got);
        }
        Ok(Bytes::from(buf))
    }

    fn state(&self, handle: ChunkHandle) -> Result<ReplicaState> {
        Ok(self.get(handle)?.state())
    }

    fn list(&self) -> Vec<ReplicaState> {
        let reps: Vec<_> = self
            .replicas
            .read()
            .expect("replica map lock poisoned")
            .values()
            .cloned()
            .collect();
        let mut states: Vec<ReplicaState> = reps.iter().map(|r| r.state()).collect();
        states.sort_by_key(|s| s.handle);
        states
    }

    fn fence(
        &self,
        handle: ChunkHandle,
        new_version: ChunkVersion,
    ) -> impl Future<Output = Result<ReplicaState>> + Send + 'static {
        let rx = self.submit_fence(handle, new_version);
        async move {
            match rx {
                Ok(rx) => rx.await.unwrap_or(Err(Error::Closed { handle })),
                Err(e) => Err(e),
            }
        }
    }

    fn seal(&self, handle: ChunkHandle, version: ChunkVersion, len: u64) -> Result<ReplicaState> {
        let rep = self.get(handle)?;
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        let msg = Msg::Seal {
            version,
            len,
            reply,
        };
        if let Submitted::NoWriter(msg) = rep.submit(msg)? {
            rep.answer_inline(msg);
        }
        rx.recv().unwrap_or(Err(Error::Closed { handle }))
    }

    fn delete(&self, handle: ChunkHandle) -> Result<()> {
        let _admin = self.admin.lock().expect("store admin lock poisoned");
        let rep = self
            .replicas
            .write()
            .expect("replica map lock poisoned")
            .remove(&handle)
            .ok_or(Error::NotFound { handle })?;
        rep.status().deleted = true;
        rep.stop_writer();
        self.files.forget(handle);
        let (cpath, mpath) = (
            chunk_path(self.dir(), handle),
            meta_path(self.dir(), handle),
        );
        // The chunk file first: a state file left alone by a crash is removed at open.
        self.disk()
            .remove_file(&cpath)
            .map_err(Error::io("remove", &cpath))?;
        self.disk()
            .remove_file(&mpath)
            .map_err(Error::io("remove", &mpath))?;
        self.disk()
            .sync_dir(self.dir())
            .map_err(Error::io("fsync directory", self.dir()))?;
        info!(chunk = %handle, "replica deleted");
        Ok(())
    }
}

impl<D: Disk> Drop for Store<D> {
    /// Stops every writer after it finishes what is queued.
    fn drop(&mut self) {
        let reps: Vec<_> = self
            .replicas
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for rep in reps {
            rep.stop_writer();
        }
    }
}
