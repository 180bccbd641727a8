//! Descriptors and threads of a store with many replicas: bounded by the store's limits, not by
//! its replica count. One test in this file, so that counting the process's open descriptors
//! and threads (in /proc/self) sees only this store.

use std::path::Path;

use bytes::Bytes;
use cairn_chunkserver::{ChunkStore, FsDisk, Store, StoreOptions};
use cairn_record::{ChunkHandle, ChunkVersion, RecordId, WriterId, encode_record};

/// Replicas created: several times the descriptor cache below.
const REPLICAS: u64 = 300;

/// The descriptor cache the store is opened with.
const CACHE: usize = 16;

/// Descriptors the store may use beyond its cache: a read in flight, and the directory fsync.
const SLACK: usize = 4;

/// Writer threads the store may run.
const WRITERS: usize = 2;

/// Replicas open at once in the first phase: many times the writer threads.
const OPEN_AT_ONCE: u64 = 64;

fn limits() -> StoreOptions {
    StoreOptions {
        file_cache: CACHE,
        writers: cairn_chunkserver::store::schedule::Scheduling::Threads(WRITERS),
        ..StoreOptions::default()
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
}

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

fn frame(handle: u64) -> Bytes {
    let mut out = Vec::new();
    let id = RecordId {
        writer: WriterId(1),
        sequence: handle,
    };
    encode_record(&mut out, id, &[handle as u8; 200], 1 << 20).expect("encode a record");
    Bytes::from(out)
}

/// Proves that a store's threads are bounded by its writer pool however many replicas are open,
/// and that a store holding more sealed replicas than its descriptor cache keeps its open
/// descriptors under the cache bound (plus a small slack) while every replica is read, twice,
/// also after a restart.
///
/// How: a store on the real file system with a 16-file cache and 2 writer threads. First 64
/// replicas are open at once, each with appends in flight together: the process never has more
/// than 2 threads beyond its start (it had one per open replica before the pool). They are
/// sealed. Then the rest of 300 replicas are created, given a record and sealed one by one; the
/// process's descriptor count (/proc/self/fd) is checked after each seal and each read, against
/// the count before the store was opened plus the cache and slack. The store is then dropped
/// (its threads end) and opened again, and every replica read once more under the same bound.
#[tokio::test(flavor = "current_thread")]
async fn many_sealed_replicas_use_a_bounded_number_of_descriptors() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let base_fds = open_fds();
    let base_threads = threads();
    let bound = base_fds + CACHE + SLACK;
    let store = Store::open_with(tmp.path(), FsDisk, limits()).expect("open the store");
    let mut lens = Vec::new();
    for h in 1..=OPEN_AT_ONCE {
        store
            .create(ChunkHandle(h), ChunkVersion(1), 4096)
            .expect("create a replica");
    }
    let appends: Vec<_> = (1..=OPEN_AT_ONCE)
        .map(|h| store.append(ChunkHandle(h), ChunkVersion(1), 32, frame(h)))
        .collect();
    assert!(
        threads() <= base_threads + WRITERS,
        "{} threads with {OPEN_AT_ONCE} replicas open, more than {WRITERS} writers",
        threads() - base_threads
    );
    for (i, a) in appends.into_iter().enumerate() {
        let len = a.await.expect("append a record");
        store
            .seal(ChunkHandle(i as u64 + 1), ChunkVersion(1), len)
            .expect("seal the replica");
        lens.push(len);
    }
    assert!(store.writer_threads() <= WRITERS);
    for h in OPEN_AT_ONCE + 1..=REPLICAS {
        let handle = ChunkHandle(h);
        store
            .create(handle, ChunkVersion(1), 4096)
            .expect("create a replica");
        let f = frame(h);
        let len = store
            .append(handle, ChunkVersion(1), 32, f)
            .await
            .expect("append a record");
        store
            .seal(handle, ChunkVersion(1), len)
            .expect("seal the replica");
        lens.push(len);
        let fds = open_fds();
        assert!(
            fds <= bound,
            "after sealing {h} replicas: {fds} descriptors > {bound}"
        );
    }
    assert!(threads() <= base_threads + WRITERS);
    assert_eq!(store.open_replicas(), 0);
    let read_all = |store: &Store<FsDisk>| {
        for (i, &len) in lens.iter().enumerate() {
            let handle = ChunkHandle(i as u64 + 1);
            let data = store.read(handle, 32, 4096).expect("read a sealed replica");
            assert_eq!(data.len() as u64, len - 32, "replica {handle}");
            assert_eq!(data, frame(i as u64 + 1), "replica {handle}");
            let fds = open_fds();
            assert!(
                fds <= bound,
                "reading {handle}: {fds} descriptors > {bound}"
            );
            assert!(store.cached_files() <= CACHE);
        }
    };
    read_all(&store);
    read_all(&store);
    drop(store);
    assert_eq!(
        open_fds(),
        base_fds,
        "a dropped store closes every descriptor"
    );
    // A dropped store's writer threads end; give them a moment.
    for _ in 0..200 {
        if threads() <= base_threads {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        threads(),
        base_threads,
        "no writer thread outlives its store"
    );
    let store =
        Store::open_with(Path::new(tmp.path()), FsDisk, limits()).expect("open the store again");
    assert!(open_fds() <= bound, "recovery closes what it opened");
    assert_eq!(store.list().len(), REPLICAS as usize);
    read_all(&store);
}
