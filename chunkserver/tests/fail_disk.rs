//! The chunk store on a [`ServerDisk`] with injected faults (the chunkserver's hidden
//! `--test-…` disk flags), over real files in a temporary directory.
//! Feature `test-faults` (this crate's tests always have it, see Cargo.toml).
#![cfg(feature = "test-faults")]

use bytes::Bytes;
use cairn_chunkserver::store::fail_disk::DiskFaults;
use cairn_chunkserver::{ChunkStore, Error, ServerDisk, Store};
use cairn_record::{
    ChunkHandle, ChunkVersion, RecordId, Recovery, WriterId, classify, encode_record,
};

const CAP: u64 = 64 << 10;

fn frame(sequence: u64, len: usize) -> Bytes {
    let mut out = Vec::new();
    let payload = vec![sequence as u8; len];
    let id = RecordId {
        writer: WriterId(1),
        sequence,
    };
    encode_record(&mut out, id, &payload, 1 << 20).unwrap();
    Bytes::from(out)
}

fn disk(faults: DiskFaults) -> ServerDisk {
    ServerDisk::new(false).with_faults(faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_replica_with_failing_reads_still_opens_and_its_reads_fail() {
    // A sealed replica whose file cannot be read must not keep the store from opening (it
    // would take every other replica down with it); its reads fail, the others' do not.
    let tmp = tempfile::tempdir().unwrap();
    let (bad, good) = (ChunkHandle(0xbad), ChunkHandle(0x600d));
    let data = frame(1, 100);
    {
        let store = Store::open(tmp.path(), disk(DiskFaults::default())).unwrap();
        for h in [bad, good] {
            store.create(h, ChunkVersion(1), CAP).unwrap();
            let end = store
                .append(h, ChunkVersion(1), 32, data.clone())
                .await
                .unwrap();
            store.fence(h, ChunkVersion(2)).await.unwrap();
            store.seal(h, ChunkVersion(2), end).unwrap();
        }
    }
    let faults = DiskFaults {
        fail_reads_of: vec![bad],
        ..DiskFaults::default()
    };
    let store = Store::open(tmp.path(), disk(faults)).unwrap();
    assert_eq!(store.list().len(), 2);
    assert!(store.state(bad).unwrap().healthy());
    // An I/O error on a read marks the replica corrupt (it is then reported and replaced).
    let err = store.read(bad, 32, data.len()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(!store.state(bad).unwrap().healthy());
    assert_eq!(&store.read(good, 32, data.len()).unwrap()[..], &data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_full_disk_fails_the_group_and_leaves_the_file_parseable() {
    let tmp = tempfile::tempdir().unwrap();
    let h = ChunkHandle(0xf011);
    let faults = DiskFaults {
        disk_full_after_bytes: Some(32 + 600),
        ..DiskFaults::default()
    };
    let disk = disk(faults);
    let store = Store::open(tmp.path(), disk.clone()).unwrap();
    store.create(h, ChunkVersion(1), CAP).unwrap();
    assert_eq!(disk.free_bytes(tmp.path()), Some(600));
    let mut end = 32;
    let mut full = false;
    for s in 1..=10 {
        match store.append(h, ChunkVersion(1), end, frame(s, 200)).await {
            Ok(e) => end = e,
            Err(Error::DiskFull { .. }) => {
                full = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full, "the disk filled up");
    assert!(end > 32, "appends before the limit were stored");
    let st = store.state(h).unwrap();
    assert!(!st.failed);
    assert_eq!(st.len, end);
    drop(store);
    let bytes = std::fs::read(tmp.path().join("chunks").join(format!("{h}.chunk"))).unwrap();
    assert_eq!(bytes.len() as u64, end, "the partial group was cut off");
    assert_eq!(classify(&bytes[32..], 32, end), Recovery::Clean);
}
