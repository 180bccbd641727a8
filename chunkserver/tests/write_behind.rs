//! The chunk store on the power-cut test disk (`WriteBehindDisk`): it behaves as on the real file
//! system while the process lives, and what survives the process is exactly what was synced.
//! Feature `test-faults` (this crate's tests always have it, see Cargo.toml).
#![cfg(feature = "test-faults")]

mod common;

use cairn_chunkserver::{ChunkStore, FsDisk, Store, WriteBehindDisk};
use cairn_record::{ChunkHandle, ChunkVersion};
use common::frame;

const H: ChunkHandle = ChunkHandle(0x00c0_ffee);
const CAP: u64 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_and_a_seal_survive_the_process_on_the_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), WriteBehindDisk::new()).unwrap();
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let a = frame(1, 1, 300);
    let b = frame(1, 2, 500);
    let mid = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    let end = store
        .append(H, ChunkVersion(1), mid, b.clone())
        .await
        .unwrap();
    // Acknowledged means synced, so the bytes are in the real file already.
    let on_disk = std::fs::read(store.chunk_path(H)).unwrap();
    assert_eq!(on_disk.len() as u64, end);
    assert_eq!(&on_disk[32..mid as usize], &a[..]);
    assert_eq!(&store.read(H, mid, 1 << 20).unwrap()[..], &b[..]);
    store.fence(H, ChunkVersion(2)).await.unwrap();
    let st = store.seal(H, ChunkVersion(2), mid).unwrap();
    assert_eq!((st.len, st.acked_len, st.sealed), (mid, mid, true));
    assert_eq!(std::fs::metadata(store.chunk_path(H)).unwrap().len(), mid);
    assert_eq!(&store.read(H, 32, 1 << 20).unwrap()[..], &a[..]);
    drop(store);
    let store = Store::open(dir.path(), FsDisk).unwrap();
    assert_eq!(store.state(H).unwrap(), st);
    assert_eq!(&store.read(H, 32, 1 << 20).unwrap()[..], &a[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_reopened_on_the_write_behind_disk_recovers_as_on_the_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), FsDisk).unwrap();
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let a = frame(7, 1, 1000);
    let end = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    drop(store);
    // A torn tail past the acknowledged length, left by a crash.
    let path = dir.path().join("chunks/0000000000c0ffee.chunk");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&frame(7, 2, 100)[..40]);
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open(dir.path(), WriteBehindDisk::new()).unwrap();
    // Recovery cut the tail (and synced the cut), so the real file is back at `end`.
    assert_eq!(store.state(H).unwrap().len, end);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
    let end2 = store
        .append(H, ChunkVersion(1), end, frame(7, 2, 100))
        .await
        .unwrap();
    assert_eq!(
        store.read(H, end, 1 << 20).unwrap().len() as u64,
        end2 - end
    );
    assert_eq!(&store.read(H, 32, a.len()).unwrap()[..], &a[..]);
}
