//! Descriptors and threads of a store with many replicas: bounded by the store's limits, not by
//! its replica count. One test in this file, so that counting the process's open descriptors
//! and threads (in /proc/self) sees only this store.

use std::path::Path;

use bytes::Bytes;
use cairn_chunkserver::{ChunkStore, FsDisk, Store, StoreLimits};
use cairn_record::{ChunkHandle, RecordId, encode_record};

/// Replicas created: several times the descriptor cache below.
const REPLICAS: u64 = 300;

/// The descriptor cache the store is opened with.
const CACHE: usize = 16;

/// Descriptors the store may use beyond its cache: a read in flight, and the directory fsync.
const SLACK: usize = 4;

fn limits() -> StoreLimits {
    StoreLimits {
        file_cache: CACHE,
        ..StoreLimits::default()
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
        writer: 1,
        sequence: handle,
    };
    encode_record(&mut out, id, &[handle as u8; 200], 1 << 20).expect("encode a record");
    Bytes::from(out)
}

/// Proves that a store holding more sealed replicas than its descriptor cache keeps its open
/// descriptors under the cache bound (plus a small slack) while every replica is read, twice,
/// also after a restart, and that sealing ends each replica's writer thread.
///
/// How: a store on the real file system with a 16-file cache; 300 replicas are created, given a
/// record and sealed one by one (so at most one is open at a time); the process's descriptor
/// count (/proc/self/fd) is checked after each seal and each read, against the count before the
/// store was opened plus the cache and slack; the thread count must be back to its start once
/// every replica is sealed. The store is then dropped and opened again, and every replica read
/// once more under the same bound.
#[tokio::test(flavor = "current_thread")]
async fn many_sealed_replicas_use_a_bounded_number_of_descriptors() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let base_fds = open_fds();
    let base_threads = threads();
    let bound = base_fds + CACHE + SLACK;
    let store = Store::open_with_limits(tmp.path(), FsDisk, limits()).expect("open the store");
    let mut lens = Vec::new();
    for h in 1..=REPLICAS {
        let handle = ChunkHandle(h);
        store.create(handle, 1, 4096).expect("create a replica");
        let f = frame(h);
        let len = store
            .append(handle, 1, 32, f)
            .await
            .expect("append a record");
        store.seal(handle, 1, len).expect("seal the replica");
        lens.push(len);
        let fds = open_fds();
        assert!(
            fds <= bound,
            "after sealing {h} replicas: {fds} descriptors > {bound}"
        );
    }
    // Writer threads end at seal; give the last one a moment to exit.
    for _ in 0..100 {
        if threads() <= base_threads {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        threads(),
        base_threads,
        "no writer thread outlives its seal"
    );
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
    let store = Store::open_with_limits(Path::new(tmp.path()), FsDisk, limits())
        .expect("open the store again");
    assert!(open_fds() <= bound, "recovery closes what it opened");
    assert_eq!(store.list().len(), REPLICAS as usize);
    read_all(&store);
}
