//! The scrubber: re-verifies sealed replicas in the background at a bounded rate.
//!
//! Startup checks only the length of a sealed replica (reading every byte of every replica
//! at each start would be slow), so bit rot in sealed bytes is found here. Each pass visits every
//! replica that is sealed and not yet known bad, once, reads its file with `pread` (the store maps
//! no file, so a failing disk shows up as an error rather than a `SIGBUS`) in slices of at
//! most [`ScrubConfig::slice_bytes`], and checks that:
//! - the chunk header decodes, names this chunk and has the replica's capacity;
//! - every byte in `[32, sealed length)` is a valid frame (record or padding), read with a
//!   [`cairn_record::FrameReader`] (which carries a frame cut by a slice boundary into the next
//!   slice), the last one ending exactly at the sealed length;
//! - the file is not shorter than the sealed length, and no read fails.
//!
//! A replica that fails is marked corrupt with [`Store::mark_corrupt`]: persisted in its
//! `.meta`, it then refuses reads of its bad ranges (all reads after a restart), fences and
//! seals, and reports `corrupt` to the master in the next heartbeat.
//!
//! Rate: after each slice the pass sleeps until its bytes fit [`ScrubConfig::bytes_per_sec`]
//! ([`pace`]); each slice's I/O and checks run on a blocking thread, so the async workers
//! serving appends and reads are never held.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_files::Blocking;
use cairn_record::limits::CHUNK_HEADER_BYTES;
use cairn_record::{ByteRange, ChunkHandle, FrameReader, ReadItem};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::error::Error;
use crate::limits::SCRUB_SLICE_BYTES_MAX;
use crate::store::disk::Disk;
use crate::store::{ChunkStore, ReplicaState, Store};

/// How fast and how often the scrubber runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Time from the start of one pass to the start of the next (a pass that takes longer is
    /// followed at once by the next). `Duration::ZERO` turns the scrubber off.
    pub interval: Duration,
    /// Most bytes read per second, averaged over a pass.
    pub bytes_per_sec: u64,
    /// Where each slice's reads run.
    pub blocking: Blocking,
}

impl ScrubConfig {
    /// Most bytes one slice reads: the rate's worth of one second, at most
    /// [`SCRUB_SLICE_BYTES_MAX`].
    pub fn slice_bytes(&self) -> usize {
        self.bytes_per_sec.clamp(1, SCRUB_SLICE_BYTES_MAX as u64) as usize
    }
}

/// Counters of a store's scrubbing since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubStats {
    /// Passes finished.
    pub passes: u64,
    /// Replicas verified to the end (clean or not).
    pub replicas: u64,
    /// Bytes read and verified.
    pub bytes: u64,
    /// Replicas found corrupt (by the scrubber or by a failed read).
    pub corrupt: u64,
}

/// The atomic counters behind [`ScrubStats`], kept by the store.
#[derive(Debug, Default)]
pub(crate) struct ScrubCounters {
    passes: AtomicU64,
    replicas: AtomicU64,
    bytes: AtomicU64,
    pub(crate) corrupt: AtomicU64,
}

impl ScrubCounters {
    pub(crate) fn snapshot(&self) -> ScrubStats {
        ScrubStats {
            passes: self.passes.load(Ordering::Relaxed),
            replicas: self.replicas.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
        }
    }
}

/// What a finished replica scrub found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte checked out.
    Clean,
    /// Bad ranges, by file offset (a failed read counts its whole slice).
    Corrupt(Vec<ByteRange>),
    /// The replica was deleted meanwhile.
    Gone,
}

/// One step of a [`ReplicaScrub`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `bytes` more bytes were read and checked; call again.
    Progress {
        /// Bytes read by this step.
        bytes: u64,
    },
    /// The replica is done.
    Done {
        /// Bytes read by this step.
        bytes: u64,
        /// What was found.
        verdict: Verdict,
    },
}

/// The incremental verification of one sealed replica, a slice per [`ReplicaScrub::step`].
#[derive(Debug)]
pub struct ReplicaScrub {
    handle: ChunkHandle,
    capacity: u64,
    sealed_len: u64,
    /// Next file offset to read.
    read_at: u64,
    /// The header and frames read so far; it keeps at most a frame cut by the slice boundary.
    reader: FrameReader,
    bad: Vec<ByteRange>,
}

impl ReplicaScrub {
    /// A scrub of the sealed replica `state` from its first byte.
    pub fn new(state: &ReplicaState) -> ReplicaScrub {
        ReplicaScrub {
            handle: state.handle,
            capacity: state.capacity,
            sealed_len: state.acked_len,
            read_at: 0,
            reader: FrameReader::chunk().until(state.acked_len),
            bad: Vec::new(),
        }
    }

    /// The chunk being scrubbed.
    pub fn handle(&self) -> ChunkHandle {
        self.handle
    }

    /// Reads at most `slice` more bytes of the replica (never more, whatever the frames) and
    /// verifies every frame that is now whole.
    pub fn step<D: Disk>(&mut self, store: &Store<D>, slice: usize) -> Step {
        let slice = slice.max(1);
        let want = (self.sealed_len - self.read_at).min(slice as u64) as usize;
        let mut buf = vec![0u8; want];
        let got = match store.read_from_disk(self.handle, self.read_at, &mut buf) {
            Ok(got) => got,
            Err(Error::NotFound { .. }) => {
                return Step::Done {
                    bytes: 0,
                    verdict: Verdict::Gone,
                };
            }
            Err(e) => {
                warn!(chunk = %self.handle, offset = self.read_at, len = want, error = %e, "scrub read failed");
                self.note_bad(self.read_at, want as u64);
                return self.finish(0);
            }
        };
        buf.truncate(got);
        let bytes = got as u64;
        self.read_at += bytes;
        self.reader.feed(buf);
        if got < want {
            // The file is shorter than its sealed length: the rest is missing.
            self.note_bad(self.read_at, self.sealed_len - self.read_at);
            self.read_at = self.sealed_len;
            self.reader.finish();
        }
        self.verify();
        if self.read_at >= self.sealed_len {
            return self.finish(bytes);
        }
        Step::Progress { bytes }
    }

    /// Takes what the reader decided: a header that does not name this chunk with this
    /// capacity, and every bad range, are noted.
    fn verify(&mut self) {
        while let Some(item) = self.reader.next() {
            match item {
                ReadItem::Header { header } => {
                    let ok = header.is_ok_and(|h| {
                        h.handle == self.handle && u64::from(h.capacity) == self.capacity
                    });
                    if !ok {
                        self.note_bad(0, CHUNK_HEADER_BYTES as u64);
                    }
                }
                ReadItem::Corrupt { offset, len } => self.note_bad(offset, len),
                ReadItem::Record { .. }
                | ReadItem::Padding { .. }
                | ReadItem::Incomplete { .. } => {}
            }
        }
    }

    /// Records a bad range.
    fn note_bad(&mut self, offset: u64, len: u64) {
        if len > 0 {
            self.bad.push(ByteRange { offset, len });
        }
    }

    fn finish(&mut self, bytes: u64) -> Step {
        let verdict = if self.bad.is_empty() {
            Verdict::Clean
        } else {
            Verdict::Corrupt(merge(std::mem::take(&mut self.bad)))
        };
        self.reader = FrameReader::new(0);
        self.read_at = self.sealed_len;
        Step::Done { bytes, verdict }
    }
}

/// `ranges` sorted, with overlapping or adjacent ones joined (a frame cut by the end of a short
/// file and the missing bytes after it are found as two).
fn merge(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort();
    let mut out: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(prev) if r.offset <= prev.end() => {
                prev.len = prev.len.max(r.end() - prev.offset);
            }
            _ => out.push(r),
        }
    }
    out
}

/// How long to wait after `bytes` were read in `elapsed` so the average stays at or below
/// `bytes_per_sec`.
pub fn pace(bytes: u64, bytes_per_sec: u64, elapsed: Duration) -> Duration {
    let due = Duration::from_secs_f64(bytes as f64 / bytes_per_sec.max(1) as f64);
    due.saturating_sub(elapsed)
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Replicas verified to the end.
    pub replicas: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Replicas found corrupt.
    pub corrupt: u64,
}

/// Scrubs `state`'s replica to the end, a slice at a time, and marks it corrupt if it is. Every
/// slice runs as blocking work (`blocking`); `on_slice` is awaited after each one (the pacing
/// sleep).
async fn scrub_replica<D: Disk, F, Fut>(
    store: &Arc<Store<D>>,
    state: &ReplicaState,
    slice: usize,
    blocking: Blocking,
    mut on_slice: F,
) -> Option<(u64, Verdict)>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut scrub = ReplicaScrub::new(state);
    let mut total = 0;
    loop {
        let s = store.clone();
        let (back, step) = blocking
            .run(move || {
                let step = scrub.step(&s, slice);
                (scrub, step)
            })
            .await;
        scrub = back;
        match step {
            Step::Progress { bytes } => {
                total += bytes;
                on_slice(bytes).await;
            }
            Step::Done { bytes, verdict } => {
                total += bytes;
                on_slice(bytes).await;
                return Some((total, verdict));
            }
        }
    }
}

/// Verifies `state`'s sealed replica whole, at once (no pacing), as a scrub pass would; `None`
/// if it was deleted meanwhile. Marks nothing: the caller decides what a bad verdict means.
pub(crate) async fn verify_now<D: Disk>(
    store: &Arc<Store<D>>,
    state: &ReplicaState,
    blocking: Blocking,
) -> Option<Verdict> {
    let verdict = scrub_replica(store, state, SCRUB_SLICE_BYTES_MAX, blocking, |_| async {})
        .await
        .map(|(_, v)| v);
    match verdict {
        Some(Verdict::Gone) | None => None,
        v => v,
    }
}

/// One pass over every sealed replica not already known bad, paced to `config`.
pub async fn pass<D: Disk>(store: &Arc<Store<D>>, config: &ScrubConfig) -> PassStats {
    let mut stats = PassStats::default();
    let started = Instant::now();
    let mut read = 0u64;
    let candidates: Vec<ReplicaState> = store
        .list()
        .into_iter()
        .filter(|s| s.sealed && !s.failed && s.corrupt.is_empty())
        .collect();
    for state in candidates {
        let handle = state.handle;
        let pacer = |bytes: u64| {
            read += bytes;
            store.scrub_counters().add_bytes(bytes);
            let wait = pace(read, config.bytes_per_sec, started.elapsed());
            tokio::time::sleep(wait)
        };
        let Some((bytes, verdict)) =
            scrub_replica(store, &state, config.slice_bytes(), config.blocking, pacer).await
        else {
            continue;
        };
        stats.bytes += bytes;
        match verdict {
            Verdict::Gone => debug!(chunk = %handle, "replica deleted while being scrubbed"),
            Verdict::Clean => {
                stats.replicas += 1;
                store.scrub_counters().add_replica();
            }
            Verdict::Corrupt(ranges) => {
                stats.replicas += 1;
                stats.corrupt += 1;
                store.scrub_counters().add_replica();
                error!(chunk = %handle, ranges = ?ranges, sealed_len = state.acked_len, "scrub found a corrupt replica");
                if let Err(e) = store.mark_corrupt(handle, &ranges) {
                    error!(chunk = %handle, error = %e, "could not persist the corrupt mark");
                }
            }
        }
    }
    store
        .scrub_counters()
        .passes
        .fetch_add(1, Ordering::Relaxed);
    stats
}

impl ScrubCounters {
    fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn add_replica(&self) {
        self.replicas.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs passes forever, one every `config.interval` (the first at once); abort the task to
/// stop it. Logs one line per pass with its counts and the store's totals.
pub async fn run<D: Disk>(store: Arc<Store<D>>, config: ScrubConfig) {
    if config.interval.is_zero() {
        info!("scrubber off");
        return;
    }
    loop {
        let started = Instant::now();
        let p = pass(&store, &config).await;
        let total = store.scrub_stats();
        // A clean pass is routine (with short test intervals, twice a second): only passes
        // that found something, and every hundredth one, reach the default log level.
        let level_info = p.corrupt > 0 || total.passes % 100 == 1;
        macro_rules! pass_line {
            ($lvl:ident) => {
                tracing::$lvl!(
                    replicas = p.replicas,
                    bytes = p.bytes,
                    corrupt = p.corrupt,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    total_passes = total.passes,
                    total_replicas = total.replicas,
                    total_bytes = total.bytes,
                    total_corrupt = total.corrupt,
                    "scrub pass finished"
                )
            };
        }
        if level_info {
            pass_line!(info);
        } else {
            pass_line!(debug);
        }
        tokio::time::sleep_until(started + config.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;
    use cairn_record::{ChunkVersion, RecordId, WriterId, encode_padding, encode_record};

    use super::*;
    use crate::store::faulty::FaultyDisk;

    const H: ChunkHandle = ChunkHandle(0x5c7b);
    const CAP: u64 = 64 << 10;

    fn open(disk: &FaultyDisk) -> Arc<Store<FaultyDisk>> {
        Arc::new(Store::open(Path::new("/data"), disk.clone()).unwrap())
    }

    /// A fast configuration: the pacing sleeps are negligible.
    fn fast() -> ScrubConfig {
        ScrubConfig {
            interval: Duration::from_secs(3600),
            bytes_per_sec: crate::limits::SCRUB_BYTES_PER_SEC_MAX,
            blocking: Blocking::Threads,
        }
    }

    /// Creates `H`, appends records of varied sizes (one of 10 KiB, longer than the small slices
    /// used below) and padding up to the capacity, and seals it. Returns the file offset of each
    /// record's frame.
    async fn sealed_replica(store: &Store<FaultyDisk>) -> Vec<u64> {
        store.create(H, ChunkVersion(1), CAP).unwrap();
        let mut offsets = Vec::new();
        let mut end = CHUNK_HEADER_BYTES as u64;
        for (i, len) in [5usize, 100, 10 << 10, 0, 3000, 77].into_iter().enumerate() {
            let mut frame = Vec::new();
            let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let id = RecordId {
                writer: WriterId(9),
                sequence: i as u64 + 1,
            };
            encode_record(&mut frame, id, &payload, 1 << 20).unwrap();
            offsets.push(end);
            let n = frame.len() as u64;
            end = store
                .append(H, ChunkVersion(1), end, Bytes::from(frame))
                .await
                .unwrap();
            assert_eq!(end, offsets[i] + n);
        }
        let mut pad = Vec::new();
        encode_padding(&mut pad, (CAP - end) as usize).unwrap();
        let end = store
            .append(H, ChunkVersion(1), end, Bytes::from(pad))
            .await
            .unwrap();
        assert_eq!(end, CAP);
        store.seal(H, ChunkVersion(1), CAP).unwrap();
        offsets
    }

    /// Scrubs `H` with `slice`-byte slices; checks every step's size. Returns the verdict and
    /// the number of steps.
    fn scrub_with(store: &Store<FaultyDisk>, slice: usize) -> (Verdict, u64) {
        let state = store.state(H).unwrap();
        let mut scrub = ReplicaScrub::new(&state);
        let (mut total, mut steps) = (0, 0);
        loop {
            steps += 1;
            assert!(steps <= 1 + state.acked_len, "scrub does not end");
            match scrub.step(store, slice) {
                Step::Progress { bytes } => {
                    assert!(
                        bytes > 0 && bytes <= slice as u64,
                        "step read {bytes} bytes"
                    );
                    total += bytes;
                }
                Step::Done { bytes, verdict } => {
                    assert!(bytes <= slice as u64, "step read {bytes} bytes");
                    total += bytes;
                    if verdict == Verdict::Clean {
                        assert_eq!(total, state.acked_len, "every byte read exactly once");
                    }
                    return (verdict, steps);
                }
            }
        }
    }

    // Proves: a clean sealed replica passes whatever the slice size (frames cut by slice
    // boundaries, one longer than ten slices, are carried, never reported), each slice reads at
    // most its budget and the whole replica is read exactly once, in ceil(len / slice) slices.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_sealed_replica_passes_in_bounded_slices() {
        let disk = FaultyDisk::new();
        let store = open(&disk);
        sealed_replica(&store).await;
        for slice in [8, 24, 1000, 1024, 4096, CAP as usize, 1 << 20] {
            let (verdict, steps) = scrub_with(&store, slice);
            assert_eq!(verdict, Verdict::Clean, "slice {slice}");
            assert_eq!(steps, CAP.div_ceil(slice as u64), "slice {slice}");
        }
        let p = pass(&store, &fast()).await;
        assert_eq!(
            p,
            PassStats {
                replicas: 1,
                bytes: CAP,
                corrupt: 0
            }
        );
        assert!(store.state(H).unwrap().corrupt.is_empty());
        let totals = store.scrub_stats();
        assert_eq!((totals.passes, totals.replicas, totals.bytes), (1, 1, CAP));
    }

    /// Flips the byte at `offset` of `H`'s file, scrubs, and checks the finding, the refusal of
    /// reads, the heartbeat state and the mark's survival across a reopen.
    async fn flip_and_scrub(offset: u64) {
        let disk = FaultyDisk::new();
        let store = open(&disk);
        sealed_replica(&store).await;
        disk.flip_byte(&store.chunk_path(H), offset);
        for slice in [8, 1000, 1 << 20] {
            let (verdict, _) = scrub_with(&store, slice);
            let Verdict::Corrupt(ranges) = verdict else {
                panic!("flip at {offset} not found with slice {slice}: {verdict:?}");
            };
            assert!(
                ranges
                    .iter()
                    .any(|r| r.offset <= offset && offset < r.end()),
                "flip at {offset} with slice {slice}: {ranges:?}"
            );
        }
        assert!(store.read(H, offset, 8).is_ok(), "not marked before a pass");
        let p = pass(&store, &fast()).await;
        assert_eq!((p.replicas, p.corrupt), (1, 1));
        let state = store.state(H).unwrap();
        assert!(!state.corrupt.is_empty(), "heartbeats report corrupt");
        assert!(matches!(
            store.read(H, offset, 1),
            Err(Error::Corrupt { handle: H, .. })
        ));
        assert!(matches!(
            store.read(H, 0, CAP as usize),
            Err(Error::Corrupt { .. })
        ));
        // A corrupt replica is not scrubbed again, and takes no part in a seal.
        assert_eq!(pass(&store, &fast()).await.replicas, 0);
        assert!(matches!(
            store.fence(H, ChunkVersion(2)).await,
            Err(Error::Corrupt { .. })
        ));
        drop(store);

        let store = open(&disk);
        let state = store.state(H).unwrap();
        assert!(state.sealed);
        assert_eq!(
            state.corrupt,
            vec![ByteRange {
                offset: 0,
                len: CAP
            }],
            "the mark survives a reopen, for the whole file"
        );
        assert!(matches!(
            store.read(H, CAP - 8, 8),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(pass(&store, &fast()).await.replicas, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flipped_payload_byte_is_found_marked_and_remembered() {
        // Offsets: header 32, record 1 (5 bytes) 32..72, record 2 (100 bytes) at 72: its
        // payload starts at 104.
        flip_and_scrub(104 + 50).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flipped_frame_header_byte_is_found() {
        // Record 3's payload_len field (frame offset 4).
        let disk = FaultyDisk::new();
        let offsets = sealed_replica(&open(&disk)).await;
        assert_eq!(offsets[2], 72 + 136);
        flip_and_scrub(offsets[2] + 4).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flipped_padding_or_chunk_header_byte_is_found() {
        flip_and_scrub(CAP - 100).await; // In the padding frame's zero payload.
        flip_and_scrub(20).await; // The chunk header's handle.
    }

    // Proves: a replica shorter than its sealed length (bytes lost behind the store's back) is
    // corrupt up to the sealed length.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_file_is_corrupt_from_its_end() {
        let disk = FaultyDisk::new();
        let store = open(&disk);
        sealed_replica(&store).await;
        let path = store.chunk_path(H);
        let file = disk.open(&path).unwrap();
        crate::store::disk::DiskFile::set_len(&file, CAP - 64).unwrap();
        let (verdict, _) = scrub_with(&store, 4096);
        let Verdict::Corrupt(ranges) = verdict else {
            panic!("short file passed");
        };
        // The cut padding frame, then the missing bytes, as one range to the sealed length.
        let last = ranges.last().unwrap();
        assert_eq!(last.end(), CAP, "{ranges:?}");
        assert!(last.offset <= CAP - 64, "{ranges:?}");
    }

    // Proves: EIO while scrubbing marks the replica corrupt (persisted); EIO on a read of an
    // open replica (served with pread) marks it corrupt in memory and answers `Corrupt`
    // (DATA_LOSS on the wire) instead of an internal error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_errors_mark_the_replica_corrupt() {
        let disk = FaultyDisk::new();
        let store = open(&disk);
        sealed_replica(&store).await;
        disk.fail_reads(&store.chunk_path(H));
        let p = pass(&store, &fast()).await;
        assert_eq!((p.replicas, p.corrupt), (1, 1));
        disk.heal_reads();
        assert!(matches!(store.read(H, 32, 8), Err(Error::Corrupt { .. })));
        drop(store);
        let store = open(&disk);
        assert!(!store.state(H).unwrap().corrupt.is_empty());

        let open_handle = ChunkHandle(0x0be);
        store.create(open_handle, ChunkVersion(1), CAP).unwrap();
        let mut frame = Vec::new();
        let id = RecordId {
            writer: WriterId(1),
            sequence: 1,
        };
        encode_record(&mut frame, id, b"payload", 1 << 20).unwrap();
        store
            .append(open_handle, ChunkVersion(1), 32, Bytes::from(frame))
            .await
            .unwrap();
        disk.fail_reads(&store.chunk_path(open_handle));
        let e = store.read(open_handle, 32, 8).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::DataLoss,
            "clients try another replica"
        );
        disk.heal_reads();
        assert!(!store.state(open_handle).unwrap().corrupt.is_empty());
        assert_eq!(store.scrub_stats().corrupt, 1, "counted since this open");
    }

    #[test]
    fn pace_waits_until_the_bytes_fit_the_rate() {
        let rate = 32 << 20;
        assert_eq!(pace(rate, rate, Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            pace(rate / 4, rate, Duration::from_millis(100)),
            Duration::from_millis(150)
        );
        assert_eq!(pace(rate, rate, Duration::from_secs(2)), Duration::ZERO);
        let c = ScrubConfig {
            interval: Duration::from_secs(1),
            bytes_per_sec: 64 << 10,
            blocking: Blocking::Threads,
        };
        assert_eq!(c.slice_bytes(), 64 << 10);
        let c = ScrubConfig {
            bytes_per_sec: 1 << 30,
            ..c
        };
        assert_eq!(c.slice_bytes(), SCRUB_SLICE_BYTES_MAX);
    }
}
