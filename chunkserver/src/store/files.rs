//! The store's file descriptors, bounded whatever the number of replicas (as RocksDB's table
//! cache bounds its open table files).
//!
//! - An open (writable) replica holds its chunk and `.meta` files open while its writer runs
//!   (pinned in the replica); at most [`OPEN_REPLICAS_MAX`] replicas are open at once.
//! - A sealed, failed or corrupt replica holds no descriptor. Reads of its chunk file go through
//!   [`Files::chunk`], an LRU cache of at most `cache_max` open chunk files
//!   ([`FILE_CACHE_MAX`] by default); its rare `.meta` writes (a fence at a higher version, a
//!   corrupt mark) open the file for that write and close it again.
//!
//! A descriptor evicted while a reader still uses it closes when that read ends, so the store
//! holds at most `cache_max` + 2 × [`OPEN_REPLICAS_MAX`] + (reads in flight) descriptors.
//!
//! [`OPEN_REPLICAS_MAX`]: crate::limits::OPEN_REPLICAS_MAX
//! [`FILE_CACHE_MAX`]: crate::limits::FILE_CACHE_MAX

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_record::ChunkHandle;

use super::disk::Disk;
use super::{chunk_path, meta_path};

/// Opens a replica's files for a [`super::writer::Replica`] that holds none.
pub(crate) trait FileSource<F>: Send + Sync {
    /// The chunk file of `handle`, from the cache or newly opened (and cached).
    fn chunk(&self, handle: ChunkHandle) -> io::Result<Arc<F>>;
    /// The `.meta` file of `handle`, opened for one write; closed when dropped.
    fn meta(&self, handle: ChunkHandle) -> io::Result<F>;
    /// Hands a chunk file the caller held open (a writer that stopped) to the cache.
    fn adopt(&self, handle: ChunkHandle, file: Arc<F>);
}

/// The cache's entries, least recently used first in `order`.
struct Lru<F> {
    /// Handle → (file, the tick of its last use).
    files: HashMap<ChunkHandle, (Arc<F>, u64)>,
    /// Tick of last use → handle: the smallest tick is evicted first.
    order: BTreeMap<u64, ChunkHandle>,
    tick: u64,
}

impl<F> Lru<F> {
    fn touch(&mut self, handle: ChunkHandle) -> Option<Arc<F>> {
        self.tick += 1;
        let tick = self.tick;
        let (file, used) = self.files.get_mut(&handle)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, handle);
        Some(file.clone())
    }

    fn put(&mut self, handle: ChunkHandle, file: Arc<F>, cap: usize) -> Arc<F> {
        if let Some(f) = self.touch(handle) {
            // Another thread opened it meanwhile: keep one descriptor.
            return f;
        }
        while self.files.len() >= cap {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            self.files.remove(&old);
        }
        self.tick += 1;
        self.order.insert(self.tick, handle);
        self.files.insert(handle, (file.clone(), self.tick));
        file
    }

    fn remove(&mut self, handle: ChunkHandle) {
        if let Some((_, used)) = self.files.remove(&handle) {
            self.order.remove(&used);
        }
    }
}

/// The disk, the replica directory and the descriptor cache of one store.
pub(crate) struct Files<D: Disk> {
    pub(crate) disk: D,
    pub(crate) dir: PathBuf,
    cache: Mutex<Lru<D::File>>,
    cache_max: usize,
}

impl<D: Disk> Files<D> {
    /// Files under `dir` on `disk`, caching at most `cache_max` (≥ 1) chunk files.
    pub(crate) fn new(disk: D, dir: PathBuf, cache_max: usize) -> Files<D> {
        Files {
            disk,
            dir,
            cache: Mutex::new(Lru {
                files: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
            }),
            cache_max: cache_max.max(1),
        }
    }

    fn lru(&self) -> MutexGuard<'_, Lru<D::File>> {
        self.cache.lock().expect("file cache lock poisoned")
    }

    /// Chunk files held open by the cache now.
    pub(crate) fn cached(&self) -> usize {
        self.lru().files.len()
    }

    /// Closes `handle`'s cached chunk file, if any (the replica is deleted or its file
    /// replaced).
    pub(crate) fn forget(&self, handle: ChunkHandle) {
        let f = {
            let mut lru = self.lru();
            let f = lru.files.get(&handle).map(|(f, _)| f.clone());
            lru.remove(handle);
            f
        };
        // Closed here, outside the lock.
        drop(f);
    }

    fn path(&self, handle: ChunkHandle) -> PathBuf {
        chunk_path(&self.dir, handle)
    }

    /// The directory holding the replica files.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl<D: Disk> FileSource<D::File> for Files<D> {
    fn chunk(&self, handle: ChunkHandle) -> io::Result<Arc<D::File>> {
        if let Some(f) = self.lru().touch(handle) {
            return Ok(f);
        }
        // Opened outside the lock: an open may wait for the disk.
        let f = Arc::new(self.disk.open(&self.path(handle))?);
        Ok(self.lru().put(handle, f, self.cache_max))
    }

    fn meta(&self, handle: ChunkHandle) -> io::Result<D::File> {
        self.disk.open(&meta_path(&self.dir, handle))
    }

    fn adopt(&self, handle: ChunkHandle, file: Arc<D::File>) {
        self.lru().put(handle, file, self.cache_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_file_is_evicted_first() {
        let mut lru: Lru<u32> = Lru {
            files: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        };
        for h in 1..=3u64 {
            lru.put(ChunkHandle(h), Arc::new(h as u32), 3);
        }
        assert!(lru.touch(ChunkHandle(1)).is_some());
        lru.put(ChunkHandle(4), Arc::new(4), 3);
        assert_eq!(lru.files.len(), 3);
        assert!(
            lru.touch(ChunkHandle(2)).is_none(),
            "2 was the least recently used"
        );
        assert!(lru.touch(ChunkHandle(1)).is_some());
        lru.remove(ChunkHandle(1));
        assert_eq!(lru.files.len(), 2);
        assert_eq!(lru.order.len(), 2);
    }
}
