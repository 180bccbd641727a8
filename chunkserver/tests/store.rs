//! Chunk store behaviour under normal use and injected faults. Most tests run the real
//! `Store` on a `FaultyDisk`, so group commit, the `.meta` file and recovery all run exactly as
//! in production while the disk tears writes, fails fsync, fills up, flips bits and crashes.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_chunkserver::{ChunkStore, Error, FaultyDisk, FsDisk, Store};
use cairn_record::{ChunkHandle, ChunkVersion, Recovery, classify};
use common::frame;

const H: ChunkHandle = ChunkHandle(0x00c0_ffee);
const CAP: u64 = 64 << 10;

fn open(disk: &FaultyDisk) -> Store<FaultyDisk> {
    Store::open(Path::new("/data"), disk.clone()).unwrap()
}

fn chunk_file(disk: &FaultyDisk, store: &Store<FaultyDisk>) -> Vec<u8> {
    disk.contents(&store.chunk_path(H)).unwrap()
}

/// A tiny seeded generator (SplitMix64), so every schedule is reproducible from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs_between_concurrent_appends() {
    // 64 appends queued at once must be written in far fewer groups than appends: the writer
    // takes everything pending each time it goes to disk. Syncs take 2 ms, like a slow disk,
    // so the count does not depend on thread scheduling.
    let disk = FaultyDisk::new();
    disk.set_sync_delay(std::time::Duration::from_millis(2));
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let frames: Vec<Bytes> = (1..=64).map(|s| frame(1, s, 100)).collect();
    let mut offset = 32;
    let mut futs = Vec::new();
    for f in frames {
        let len = f.len() as u64;
        futs.push(store.append(H, ChunkVersion(1), offset, f));
        offset += len;
    }
    for fut in futs {
        fut.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.appends, 64);
    assert!(stats.groups <= 4, "64 appends took {} groups", stats.groups);
    assert_eq!(stats.data_fsyncs, stats.groups);
    assert_eq!(store.state(H).unwrap().len, offset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_appends_wait_in_the_window_and_are_written_in_order() {
    // Appends arriving in reverse offset order are all held until the first arrives, then
    // written as one contiguous run.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let frames: Vec<Bytes> = (1..=10).map(|s| frame(1, s, 50 + s as usize)).collect();
    let mut offsets = vec![32u64];
    for f in &frames {
        offsets.push(offsets.last().unwrap() + f.len() as u64);
    }
    let futs: Vec<_> = (0..10)
        .rev()
        .map(|i| store.append(H, ChunkVersion(1), offsets[i], frames[i].clone()))
        .collect();
    for fut in futs {
        fut.await.unwrap();
    }
    let all: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    let read = store.read(H, 32, 1 << 20).unwrap();
    assert_eq!(&read[..], &all[..]);
    assert_eq!(classify(&read, 32, offsets[10]), Recovery::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_append_times_out_when_the_gap_never_fills() {
    // An append past the end with nothing before it fails after the window timeout instead of
    // waiting forever; the replica stays usable.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let err = store
        .append(H, ChunkVersion(1), 32 + 64, frame(1, 2, 8))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::GapTimeout {
                expected: 32,
                got: 96,
                ..
            }
        ),
        "{err}"
    );
    store
        .append(H, ChunkVersion(1), 32, frame(1, 1, 8))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_is_bounded() {
    // More early appends than the window holds: the excess is refused with WindowFull.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), 1 << 20).unwrap();
    let f = frame(1, 1, 8);
    let n = cairn_chunkserver::limits::APPEND_WINDOW_COUNT_MAX + 1;
    let futs: Vec<_> = (1..=n as u64)
        .map(|i| store.append(H, ChunkVersion(1), 32 + i * f.len() as u64, f.clone()))
        .collect();
    // The last one is refused at once; fill the gap so the held ones complete.
    let gap = store.append(H, ChunkVersion(1), 32, f.clone());
    let results: Vec<_> = futures_join(futs).await;
    gap.await.unwrap();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(Error::WindowFull { .. })))
        .count();
    assert_eq!(full, 1);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), n - 1);
}

async fn futures_join<T>(futs: Vec<impl std::future::Future<Output = T>>) -> Vec<T> {
    let mut out = Vec::new();
    for f in futs {
        out.push(f.await);
    }
    out
}

#[test]
fn every_acknowledged_append_survives_a_crash_in_random_schedules() {
    // Many seeded schedules: concurrent appenders take offsets from a shared allocator (so
    // appends arrive out of order), a crash hits at a random moment keeping a random prefix of
    // the unsynced bytes; after reopening, every acknowledged append reads back byte for byte
    // and the replica is not corrupt.
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let disk = FaultyDisk::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let acked: Arc<Mutex<Vec<(u64, Bytes)>>> = Arc::default();
        let writers = 1 + rng.below(8);
        let crash_after_us = rng.below(3000);
        let keep = rng.below(3) as usize * rng.below(4000) as usize;
        // Odd seeds: flushes take a while, as on a real disk, so the crash often falls while a
        // group's data is durable and its `.meta` flush is still running (they overlap).
        let sync_delay_us = if seed % 2 == 1 {
            50 + rng.below(400)
        } else {
            0
        };
        rt.block_on(async {
            let store = Arc::new(open(&disk));
            store.create(H, ChunkVersion(7), CAP).unwrap();
            disk.set_sync_delay(std::time::Duration::from_micros(sync_delay_us));
            let next = Arc::new(Mutex::new(32u64));
            let mut tasks = Vec::new();
            for w in 1..=writers {
                let (store, next, acked) = (store.clone(), next.clone(), acked.clone());
                let len = 8 + (seed * 13 + w * 29) as usize % 300;
                tasks.push(tokio::spawn(async move {
                    for s in 1.. {
                        let f = frame(w, s, len);
                        let offset = {
                            let mut n = next.lock().unwrap();
                            let o = *n;
                            *n += f.len() as u64;
                            o
                        };
                        match store.append(H, ChunkVersion(7), offset, f.clone()).await {
                            Ok(durable) => {
                                assert!(durable >= offset + f.len() as u64);
                                acked.lock().unwrap().push((offset, f));
                            }
                            Err(_) => return,
                        }
                    }
                }));
            }
            tokio::time::sleep(std::time::Duration::from_micros(crash_after_us)).await;
            disk.crash(keep);
            for t in tasks {
                t.await.unwrap();
            }
        });
        disk.set_sync_delay(std::time::Duration::ZERO);
        let store = open(&disk);
        let st = store.state(H).unwrap();
        assert!(st.corrupt.is_empty(), "seed {seed}: {st:?}");
        assert!(!st.failed, "seed {seed}");
        let acked = acked.lock().unwrap();
        for (offset, f) in acked.iter() {
            let got = store.read(H, *offset, f.len()).unwrap();
            assert_eq!(
                &got[..],
                &f[..],
                "seed {seed}: acked append at {offset} lost"
            );
        }
        let whole = store.read(H, 32, 1 << 20).unwrap();
        assert_eq!(
            classify(&whole, 32, st.acked_len),
            Recovery::Clean,
            "seed {seed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_write_is_cut_on_reopen_and_nothing_acknowledged_is_lost() {
    // Power fails in the middle of a group's write: the torn frame lies past the acknowledged
    // length, so reopening cuts it (TornTail) and keeps every acknowledged append.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let a = frame(1, 1, 200);
    let end = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    disk.tear_next_write(50);
    let err = store
        .append(H, ChunkVersion(1), end, frame(1, 2, 300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    drop(store);
    disk.crash(usize::MAX);
    let torn = disk
        .contents(Path::new("/data/chunks/0000000000c0ffee.chunk"))
        .unwrap();
    assert_eq!(
        torn.len() as u64,
        end + 50,
        "the torn bytes reached the disk"
    );
    let store = open(&disk);
    let st = store.state(H).unwrap();
    assert_eq!(st.len, end);
    assert!(st.corrupt.is_empty() && !st.failed);
    assert_eq!(&store.read(H, 32, 1 << 20).unwrap()[..], &a[..]);
    // The cut itself is durable.
    drop(store);
    disk.crash(0);
    assert_eq!(open(&disk).state(H).unwrap().len, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flip_below_the_acknowledged_length_is_corruption_and_never_cut() {
    // A flipped byte inside acknowledged data is reported as corrupt, the file keeps every
    // byte, and the replica refuses appends.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let mut end = 32;
    for s in 1..=3 {
        end = store
            .append(H, ChunkVersion(1), end, frame(1, s, 100))
            .await
            .unwrap();
    }
    let path = store.chunk_path(H);
    let before = chunk_file(&disk, &store);
    drop(store);
    disk.flip_byte(&path, 32 + 40);
    let store = open(&disk);
    let st = store.state(H).unwrap();
    assert_eq!(st.len, end);
    assert_eq!(st.corrupt.len(), 1);
    assert_eq!(st.corrupt[0].offset, 32);
    assert_eq!(disk.contents(&path).unwrap().len(), before.len());
    let err = store
        .append(H, ChunkVersion(1), end, frame(1, 4, 8))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(store.list()[0].corrupt, st.corrupt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_error_fails_the_append_and_the_replica_for_good() {
    // An fsync error is never retried: the append fails, the replica is marked failed (and
    // stays failed after a restart), later appends are refused; acknowledged data stays readable.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let a = frame(1, 1, 100);
    let end = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    disk.fail_next_sync();
    let err = store
        .append(H, ChunkVersion(1), end, frame(1, 2, 100))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    assert!(store.state(H).unwrap().failed);
    let err = store
        .append(H, ChunkVersion(1), end, frame(1, 3, 100))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    assert!(matches!(
        store.fence(H, ChunkVersion(2)).await,
        Err(Error::Failed { .. })
    ));
    drop(store);
    let store = open(&disk);
    let st = store.state(H).unwrap();
    assert!(st.failed);
    assert_eq!(st.acked_len, end);
    assert_eq!(&store.read(H, 32, a.len()).unwrap()[..], &a[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_group_cleanly_and_keeps_earlier_data() {
    // ENOSPC mid-group: a clear DiskFull error, the partial bytes are cut off so the file still
    // parses, nothing of the group is acknowledged, earlier data is intact, and appends work
    // again once space is freed.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let a = frame(1, 1, 100);
    let end = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    disk.enospc_after(300);
    let mut offset = end;
    let mut futs = Vec::new();
    for s in 2..=5 {
        let f = frame(1, s, 200);
        futs.push((
            offset,
            f.clone(),
            store.append(H, ChunkVersion(1), offset, f.clone()),
        ));
        offset += f.len() as u64;
    }
    let mut acked_end = end;
    let mut full = 0;
    for (o, f, fut) in futs {
        match fut.await {
            Ok(d) => {
                assert_eq!(o, acked_end, "acks are contiguous");
                acked_end = d;
                assert_eq!(&store.read(H, o, f.len()).unwrap()[..], &f[..]);
            }
            Err(Error::DiskFull { .. }) => full += 1,
            // An append queued behind a failed group waits for bytes that never come.
            Err(Error::GapTimeout { .. }) if full > 0 => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full >= 1);
    let st = store.state(H).unwrap();
    assert_eq!(st.len, acked_end);
    assert!(!st.failed);
    let bytes = chunk_file(&disk, &store);
    assert_eq!(bytes.len() as u64, acked_end, "partial group was cut off");
    assert_eq!(classify(&bytes[32..], 32, acked_end), Recovery::Clean);
    assert_eq!(&bytes[32..32 + a.len()], &a[..]);
    disk.clear_enospc();
    store
        .append(H, ChunkVersion(1), acked_end, frame(1, 9, 10))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_appends_get_clear_errors() {
    // Wrong offset, misalignment, past capacity, stale version and a sealed chunk each get
    // their own error, and none of them harms the replica.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(3), 4096).unwrap();
    let f = frame(1, 1, 100);
    let end = store
        .append(H, ChunkVersion(3), 32, f.clone())
        .await
        .unwrap();
    let e = store
        .append(H, ChunkVersion(3), 32, f.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::WrongOffset { expected, got: 32, .. } if expected == end),
        "{e}"
    );
    let e = store
        .append(H, ChunkVersion(3), end + 4, f.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Misaligned { .. }), "{e}");
    let e = store
        .append(H, ChunkVersion(3), end, frame(1, 2, 4000))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::PastCapacity { capacity: 4096, .. }),
        "{e}"
    );
    let e = store
        .append(H, ChunkVersion(2), end, f.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleVersion {
                have: ChunkVersion(3),
                got: ChunkVersion(2),
                ..
            }
        ),
        "{e}"
    );
    let e = store
        .append(ChunkHandle(9), ChunkVersion(3), 32, f.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = store.create(H, ChunkVersion(3), 4096).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    let e = store
        .create(ChunkHandle(5), ChunkVersion(3), 4095)
        .unwrap_err();
    assert!(matches!(e, Error::BadCapacity { .. }), "{e}");
    store.seal(H, ChunkVersion(3), end).unwrap();
    let e = store
        .append(H, ChunkVersion(3), end, f.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Sealed { .. }), "{e}");
    let e = store.read(H, end + 8, 10).unwrap_err();
    assert!(matches!(e, Error::OutOfRange { .. }), "{e}");
    assert_eq!(store.state(H).unwrap().acked_len, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_refuses_the_old_version_and_persists_the_new_one() {
    // After fence(2), appends at version 1 are refused, the durable length is reported, a
    // lower fence is stale, and the new version survives a crash.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let end = store
        .append(H, ChunkVersion(1), 32, frame(1, 1, 64))
        .await
        .unwrap();
    let st = store.fence(H, ChunkVersion(2)).await.unwrap();
    assert_eq!(
        (st.version, st.len, st.acked_len),
        (ChunkVersion(2), end, end)
    );
    let e = store
        .append(H, ChunkVersion(1), end, frame(1, 2, 64))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleVersion {
                have: ChunkVersion(2),
                got: ChunkVersion(1),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        store.fence(H, ChunkVersion(2)).await.unwrap().version,
        ChunkVersion(2)
    );
    assert!(matches!(
        store.fence(H, ChunkVersion(1)).await,
        Err(Error::StaleVersion { .. })
    ));
    let end2 = store
        .append(H, ChunkVersion(2), end, frame(1, 2, 64))
        .await
        .unwrap();
    drop(store);
    disk.crash(0);
    let store = open(&disk);
    let st = store.state(H).unwrap();
    assert_eq!((st.version, st.len), (ChunkVersion(2), end2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_fails_held_early_appends_of_the_old_version() {
    // An early append waiting in the window when the fence arrives can never complete at the
    // old version: it fails with StaleVersion rather than timing out.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let held = store.append(H, ChunkVersion(1), 32 + 64, frame(1, 2, 8));
    let st = store.fence(H, ChunkVersion(2)).await.unwrap();
    assert_eq!(st.len, 32);
    assert!(matches!(
        held.await,
        Err(Error::StaleVersion {
            have: ChunkVersion(2),
            got: ChunkVersion(1),
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_cuts_to_the_agreed_length_and_reads_come_from_the_map() {
    // On the real file system: seal below this replica's acknowledged length (legitimate: a
    // cluster ack needs every replica), the file is cut, reads are served from the memory map,
    // a repeated seal is a no-op, and the seal survives a restart.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), FsDisk).unwrap();
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let a = frame(1, 1, 100);
    let b = frame(1, 2, 100);
    let mid = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    let end = store.append(H, ChunkVersion(1), mid, b).await.unwrap();
    assert!(matches!(
        store.seal(H, ChunkVersion(1), end + 8),
        Err(Error::SealBeyondEnd { .. })
    ));
    store.fence(H, ChunkVersion(2)).await.unwrap();
    let st = store.seal(H, ChunkVersion(2), mid).unwrap();
    assert!(st.sealed);
    assert_eq!((st.len, st.acked_len), (mid, mid));
    assert_eq!(std::fs::metadata(store.chunk_path(H)).unwrap().len(), mid);
    let read = store.read(H, 0, 1 << 20).unwrap();
    assert_eq!(read.len() as u64, mid);
    assert_eq!(&read[32..], &a[..]);
    assert_eq!(store.seal(H, ChunkVersion(2), mid).unwrap(), st);
    assert!(matches!(
        store.seal(H, ChunkVersion(2), 32),
        Err(Error::Sealed { .. })
    ));
    drop(store);
    let store = Store::open(dir.path(), FsDisk).unwrap();
    assert_eq!(store.state(H).unwrap(), st);
    assert_eq!(&store.read(H, 32, 1 << 20).unwrap()[..], &a[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_disk_round_trip_and_delete() {
    // The production disk: appends persist across reopen, files have the documented names,
    // delete removes both files.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), FsDisk).unwrap();
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let a = frame(1, 1, 1000);
    let end = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    drop(store);
    let chunks = dir.path().join("chunks");
    assert!(chunks.join("0000000000c0ffee.chunk").exists());
    assert!(chunks.join("0000000000c0ffee.meta").exists());
    std::fs::write(chunks.join("0000000000000001.chunk.tmp"), b"junk").unwrap();
    let store = Store::open(dir.path(), FsDisk).unwrap();
    assert!(!chunks.join("0000000000000001.chunk.tmp").exists());
    assert_eq!(store.state(H).unwrap().len, end);
    assert_eq!(&store.read(H, 32, 4096).unwrap()[..], &a[..]);
    store.delete(H).unwrap();
    assert!(store.list().is_empty());
    assert!(!chunks.join("0000000000c0ffee.chunk").exists());
    assert!(!chunks.join("0000000000c0ffee.meta").exists());
    assert!(matches!(store.read(H, 32, 1), Err(Error::NotFound { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_meta_slot_falls_back_to_the_other_slot() {
    // The newest `.meta` slot is damaged: the older slot still holds a consistent state, the
    // replica loads with the older version, and its bytes are kept, since they parse.
    let disk = FaultyDisk::new();
    let store = open(&disk);
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let e1 = store
        .append(H, ChunkVersion(1), 32, frame(1, 1, 64))
        .await
        .unwrap();
    store.fence(H, ChunkVersion(2)).await.unwrap();
    let e2 = store
        .append(H, ChunkVersion(2), e1, frame(1, 2, 64))
        .await
        .unwrap();
    store.fence(H, ChunkVersion(3)).await.unwrap();
    let mpath = store.meta_path(H);
    drop(store);
    // Generations: 1 at create, 2 at the first fence (slot 0), 3 at the second (slot B at 4096).
    disk.flip_byte(&mpath, 4096 + 41);
    let store = open(&disk);
    let st = store.state(H).unwrap();
    assert_eq!((st.version, st.acked_len), (ChunkVersion(2), e1));
    assert_eq!(st.len, e2);
    assert!(st.corrupt.is_empty());
    store
        .append(H, ChunkVersion(2), e2, frame(1, 3, 8))
        .await
        .unwrap();
}

#[test]
fn unfinished_create_leaves_nothing_behind_after_a_crash() {
    // A finished create is durable across a crash (files fsynced, renamed, directory fsynced),
    // and the leftover temporary files of an unfinished create are removed at open.
    let disk = FaultyDisk::new();
    drop(open(&disk));
    disk.crash(0);
    {
        let store = open(&disk);
        store.create(H, ChunkVersion(1), CAP).unwrap();
    }
    disk.crash(usize::MAX);
    assert_eq!(open(&disk).list().len(), 1, "a finished create is durable");
    use cairn_chunkserver::{Disk, DiskFile};
    let f = disk
        .create(Path::new("/data/chunks/0000000000000002.chunk.tmp"))
        .unwrap();
    f.write_all_at(b"partial", 0).unwrap();
    drop(open(&disk));
    assert!(
        disk.paths()
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{:?}",
        disk.paths()
    );
}

/// Appends from `writers` concurrent tasks at offsets from a shared allocator until one fails;
/// returns every acknowledged (offset, frame). `stop` ends the run from outside.
async fn append_until_failure(
    store: Arc<Store<FaultyDisk>>,
    writers: u64,
    frame_len: usize,
    stop: impl std::future::Future<Output = ()>,
) -> Vec<(u64, Bytes)> {
    let acked: Arc<Mutex<Vec<(u64, Bytes)>>> = Arc::default();
    let next = Arc::new(Mutex::new(32u64));
    let mut tasks = Vec::new();
    for w in 1..=writers {
        let (store, next, acked) = (store.clone(), next.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for s in 1.. {
                let f = frame(w, s, frame_len);
                let offset = {
                    let mut n = next.lock().unwrap();
                    let o = *n;
                    if o + f.len() as u64 > CAP {
                        return;
                    }
                    *n += f.len() as u64;
                    o
                };
                match store.append(H, ChunkVersion(1), offset, f.clone()).await {
                    Ok(durable) => {
                        assert!(durable >= offset + f.len() as u64);
                        acked.lock().unwrap().push((offset, f));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    stop.await;
    for t in tasks {
        t.await.unwrap();
    }
    let mut acked = std::mem::take(&mut *acked.lock().unwrap());
    acked.sort_by_key(|(o, _)| *o);
    acked
}

/// After a crash: the replica reopens clean and every acknowledged append reads back, below
/// the recovered length. Returns the reopened state.
fn check_acked_survived(
    disk: &FaultyDisk,
    acked: &[(u64, Bytes)],
    what: &str,
) -> cairn_chunkserver::ReplicaState {
    let store = open(disk);
    let st = store.state(H).unwrap();
    assert!(st.corrupt.is_empty() && !st.failed, "{what}: {st:?}");
    for (offset, f) in acked {
        assert!(
            offset + f.len() as u64 <= st.len,
            "{what}: ack at {offset} not covered by the recovered length {}",
            st.len
        );
        let got = store.read(H, *offset, f.len()).unwrap();
        assert_eq!(&got[..], &f[..], "{what}: acked append at {offset} lost");
    }
    let whole = store.read(H, 32, 1 << 20).unwrap();
    assert_eq!(
        classify(&whole, 32, st.acked_len),
        Recovery::Clean,
        "{what}"
    );
    st
}

#[test]
fn a_crash_at_every_flush_loses_no_acknowledged_append() {
    // The power fails at the n-th flush for every n in turn: at data flushes, at `.meta`
    // flushes, and between a group's data flush and its `.meta` flush (the data is durable,
    // the slot covering it is not, so the group was never acknowledged). Each time every
    // acknowledged append survives, and some crashes leave durable data past the persisted
    // acknowledged length (the window pipelining opens) without harm.
    let mut ahead = 0;
    for n in 1..=40u64 {
        let disk = FaultyDisk::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let acked = rt.block_on(async {
            let store = Arc::new(open(&disk));
            store.create(H, ChunkVersion(1), CAP).unwrap();
            if n % 2 == 0 {
                disk.set_sync_delay(std::time::Duration::from_micros(300));
            }
            disk.crash_at_sync(n);
            append_until_failure(store, 1 + n % 5, 8 + (n as usize * 37) % 200, async {}).await
        });
        disk.set_sync_delay(std::time::Duration::ZERO);
        let st = check_acked_survived(&disk, &acked, &format!("crash at flush {n}"));
        if st.len > st.acked_len {
            ahead += 1;
        }
    }
    assert!(
        ahead > 0,
        "no crash fell between a data flush and its .meta flush"
    );
}

// Proves (issue 8 item 12): the store refuses a new replica past its open-replica bound and past
// its replica bound with `Exhausted` naming the resource, changes nothing it holds when it
// refuses, and takes new replicas again once one is sealed (open bound) or deleted (replica
// bound). Replicas found at open are all kept, even above the bound.
//
// How: a store on the in-memory disk with bounds of 2 open and 3 replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_bounds_refuse_creation_and_change_nothing() {
    use cairn_chunkserver::StoreOptions;
    let disk = FaultyDisk::new();
    let limits = StoreOptions {
        open_replicas: 2,
        replicas: 3,
        ..StoreOptions::default()
    };
    let store = Store::open_with(Path::new("/data"), disk.clone(), limits).unwrap();
    let h = |n: u64| ChunkHandle(0x100 + n);
    store.create(h(1), ChunkVersion(1), CAP).unwrap();
    let len = store
        .append(h(1), ChunkVersion(1), 32, frame(1, 1, 100))
        .await
        .unwrap();
    store.create(h(2), ChunkVersion(1), CAP).unwrap();
    match store.create(h(3), ChunkVersion(1), CAP) {
        Err(Error::Exhausted { resource, detail }) => {
            assert_eq!(resource, "open replicas");
            assert!(detail.contains('2'), "{detail}");
        }
        other => panic!("expected the open-replica bound, got {other:?}"),
    }
    assert!(
        store.state(h(3)).is_err(),
        "a refused create leaves nothing"
    );
    assert_eq!(store.state(h(1)).unwrap().len, len);
    store.seal(h(1), ChunkVersion(1), len).unwrap();
    store.create(h(3), ChunkVersion(1), CAP).unwrap();
    store.seal(h(3), ChunkVersion(1), 32).unwrap();
    match store.create(h(4), ChunkVersion(1), CAP) {
        Err(Error::Exhausted { resource, .. }) => assert_eq!(resource, "replicas"),
        other => panic!("expected the replica bound, got {other:?}"),
    }
    assert_eq!(store.list().len(), 3);
    assert_eq!(store.read(h(1), 32, 4096).unwrap(), frame(1, 1, 100));
    store.delete(h(3)).unwrap();
    store.create(h(4), ChunkVersion(1), CAP).unwrap();
    drop(store);
    // Reopened with a smaller bound: every replica is still there and readable.
    let tight = StoreOptions {
        replicas: 1,
        ..limits
    };
    let store = Store::open_with(Path::new("/data"), disk, tight).unwrap();
    assert_eq!(store.list().len(), 3);
    assert_eq!(store.read(h(1), 32, 4096).unwrap(), frame(1, 1, 100));
    assert!(matches!(
        store.create(h(5), ChunkVersion(1), CAP),
        Err(Error::Exhausted { .. })
    ));
}

// Proves (issue 9, the store's seam for a simulator): with writers run inline, the store starts
// no writer thread and runs on tokio's clock alone: group commit, an early append held until
// the bytes before it arrive, an early append that times out after exactly the window timeout
// of (paused, virtual) time, a fence and a seal all behave as on the thread pool.
//
// How: a current-thread runtime with the clock paused; the store on the in-memory disk with
// `Scheduling::Inline`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn inline_writers_use_no_thread_and_tokio_time() {
    use cairn_chunkserver::StoreOptions;
    use cairn_chunkserver::store::schedule::Scheduling;
    let disk = FaultyDisk::new();
    let options = StoreOptions {
        writers: Scheduling::Inline,
        ..StoreOptions::default()
    };
    let store = Store::open_with(Path::new("/data"), disk.clone(), options).unwrap();
    store.create(H, ChunkVersion(1), CAP).unwrap();
    let (a, b) = (frame(1, 1, 8), frame(1, 2, 8));
    // The second record first: held, then written with the first as one contiguous run.
    let late = store.append(H, ChunkVersion(1), 32 + a.len() as u64, b.clone());
    let first = store
        .append(H, ChunkVersion(1), 32, a.clone())
        .await
        .unwrap();
    assert_eq!(first, 32 + (a.len() + b.len()) as u64);
    assert_eq!(late.await.unwrap(), first);
    // A gap that never fills: refused after the window timeout of virtual time, not before.
    let started = tokio::time::Instant::now();
    let err = store
        .append(H, ChunkVersion(1), first + 64, frame(1, 4, 8))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::GapTimeout { .. }), "{err}");
    let waited = started.elapsed();
    let window =
        std::time::Duration::from_millis(cairn_chunkserver::limits::APPEND_WINDOW_TIMEOUT_MS);
    assert!(waited >= window && waited < window * 2, "{waited:?}");
    let fenced = store.fence(H, ChunkVersion(2)).await.unwrap();
    assert_eq!(fenced.len, first);
    store.seal(H, ChunkVersion(2), first).unwrap();
    // (The process's thread count is not compared: other tests of this file run beside it.)
    assert_eq!(store.writer_threads(), 0, "inline writers start no thread");
    drop(store);
    let store = Store::open_with(Path::new("/data"), disk, options).unwrap();
    let s = store.state(H).unwrap();
    assert!(s.sealed && s.len == first);
}
