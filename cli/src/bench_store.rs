//! `cairn bench store`: the chunk store's append throughput and latency on this disk.
//!
//! C appenders share one offset allocator, as appenders behind a primary do, so appends reach
//! the store slightly out of offset order and exercise its window. Each record is a real frame
//! (`encode_record`). When a record does not fit the chunk, the appender that noticed pads the
//! rest of the chunk, and the last append to finish on the full chunk seals it; the next chunk
//! is created at once. The files left behind are ordinary chunk files that `cairn inspect` reads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use cairn_chunkserver::{ChunkStore, FsDisk, Store};
use cairn_record::limits::{CHUNK_BYTES_DEFAULT, CHUNK_HEADER_BYTES, record_payload_bytes_max};
use cairn_record::{
    ChunkHandle, ChunkVersion, RecordId, WriterId, encode_padding, encode_record, encoded_len,
};
use serde_json::json;

/// Chunk version the bench creates chunks with.
const VERSION: ChunkVersion = ChunkVersion::FIRST;

/// Appends records with concurrent appenders into chunk files and reports throughput,
/// fsyncs and latency.
#[derive(clap::Args, Debug)]
pub(crate) struct StoreArgs {
    /// Data directory; chunk files go to DIR/chunks/. Created if missing; existing chunks are
    /// left alone (new ones get higher handles).
    #[arg(long, env = "CAIRN_BENCH_DIR")]
    dir: PathBuf,
    /// Records to append in total. Default 100000.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Payload bytes per record (a size: 1024, 1KiB, 64KiB). Default 1024; at most a quarter of
    /// the chunk size.
    #[arg(long, value_parser = crate::cluster::parse_bytes_usize, default_value = "1024")]
    size: usize,
    /// Concurrent appenders, each with one append in flight. Default 32.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Chunk capacity in bytes, header included. Default 64 MiB.
    #[arg(long, value_parser = crate::cluster::parse_bytes, default_value_t = CHUNK_BYTES_DEFAULT)]
    chunk_bytes: u64,
    /// Tokio worker threads for the appenders. Default 2.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One chunk being filled.
struct Track {
    handle: ChunkHandle,
    /// Appends issued on it and not finished, plus one held by whoever rolls it.
    outstanding: AtomicUsize,
    full: AtomicBool,
}

/// The shared offset allocator.
struct Alloc {
    track: Arc<Track>,
    next: u64,
    issued: u64,
    chunks: u64,
}

/// What an appender got from the allocator.
struct Slot {
    track: Arc<Track>,
    offset: u64,
    sequence: u64,
    /// A full chunk this appender must pad (at `offset`, `len` bytes) and release.
    roll: Option<(Arc<Track>, u64, u64)>,
}

struct Bench {
    store: Arc<Store<FsDisk>>,
    capacity: u64,
    total: u64,
    alloc: Mutex<Alloc>,
}

impl Bench {
    fn create(
        store: &Store<FsDisk>,
        handle: ChunkHandle,
        capacity: u64,
    ) -> anyhow::Result<Arc<Track>> {
        store
            .create(handle, VERSION, capacity)
            .with_context(|| format!("create chunk {handle}"))?;
        Ok(Arc::new(Track {
            handle,
            outstanding: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        }))
    }

    /// Takes the next record's offset, rolling to a new chunk when it does not fit.
    fn take(&self, frame_len: u64) -> anyhow::Result<Option<Slot>> {
        let mut a = self.alloc.lock().expect("allocator lock poisoned");
        if a.issued == self.total {
            return Ok(None);
        }
        let mut roll = None;
        if a.next + frame_len > self.capacity {
            let old = a.track.clone();
            old.outstanding.fetch_add(1, Ordering::AcqRel);
            old.full.store(true, Ordering::Release);
            roll = Some((old.clone(), a.next, self.capacity - a.next));
            a.track = Bench::create(&self.store, ChunkHandle(old.handle.0 + 1), self.capacity)?;
            a.next = CHUNK_HEADER_BYTES as u64;
            a.chunks += 1;
        }
        a.issued += 1;
        let offset = a.next;
        a.next += frame_len;
        a.track.outstanding.fetch_add(1, Ordering::AcqRel);
        Ok(Some(Slot {
            track: a.track.clone(),
            offset,
            sequence: a.issued,
            roll,
        }))
    }

    /// Ends one append (or the roll) on `track`; the last one on a full chunk seals it.
    async fn finish(&self, track: &Track) -> anyhow::Result<()> {
        if track.outstanding.fetch_sub(1, Ordering::AcqRel) == 1
            && track.full.load(Ordering::Acquire)
        {
            let (store, handle, len) = (self.store.clone(), track.handle, self.capacity);
            tokio::task::spawn_blocking(move || store.seal(handle, VERSION, len))
                .await?
                .with_context(|| format!("seal chunk {handle}"))?;
        }
        Ok(())
    }

    async fn pad(&self, track: Arc<Track>, offset: u64, len: u64) -> anyhow::Result<()> {
        if len > 0 {
            let mut buf = Vec::with_capacity(len as usize);
            encode_padding(&mut buf, len as usize)?;
            self.store
                .append(track.handle, VERSION, offset, Bytes::from(buf))
                .await
                .with_context(|| format!("pad chunk {}", track.handle))?;
        }
        self.finish(&track).await
    }

    /// One appender: records until the allocator runs out; returns latencies in microseconds.
    async fn appender(self: Arc<Bench>, writer: u64, size: usize) -> anyhow::Result<Vec<u32>> {
        let payload = vec![writer as u8; size];
        let frame_len = encoded_len(size) as u64;
        let max = record_payload_bytes_max(self.capacity);
        let mut buf = Vec::with_capacity(frame_len as usize);
        let mut latencies = Vec::new();
        while let Some(slot) = self.take(frame_len)? {
            if let Some((track, offset, len)) = slot.roll {
                let me = self.clone();
                tokio::spawn(async move { me.pad(track, offset, len).await });
            }
            buf.clear();
            let id = RecordId {
                writer: WriterId(writer),
                sequence: slot.sequence,
            };
            encode_record(&mut buf, id, &payload, max)?;
            let frames = Bytes::copy_from_slice(&buf);
            let t0 = Instant::now();
            self.store
                .append(slot.track.handle, VERSION, slot.offset, frames)
                .await
                .with_context(|| {
                    format!("append to chunk {} at {}", slot.track.handle, slot.offset)
                })?;
            latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            self.finish(&slot.track).await?;
        }
        Ok(latencies)
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs the benchmark and prints the result.
pub(crate) fn run(args: &StoreArgs) -> anyhow::Result<std::process::ExitCode> {
    let max = record_payload_bytes_max(args.chunk_bytes);
    if args.size > max {
        bail!(
            "--size {} exceeds {max}, a quarter of --chunk-bytes",
            args.size
        );
    }
    if args.concurrency == 0 || args.records == 0 || args.threads == 0 {
        bail!("--records, --concurrency and --threads must be positive");
    }
    let store = Arc::new(
        Store::open(&args.dir, FsDisk)
            .with_context(|| format!("open store in {}", args.dir.display()))?,
    );
    let first = store.list().last().map_or(1, |s| s.handle.0 + 1);
    let track = Bench::create(&store, ChunkHandle(first), args.chunk_bytes)?;
    let bench = Arc::new(Bench {
        store: store.clone(),
        capacity: args.chunk_bytes,
        total: args.records,
        alloc: Mutex::new(Alloc {
            track,
            next: CHUNK_HEADER_BYTES as u64,
            issued: 0,
            chunks: 1,
        }),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let before = store.stats();
    let t0 = Instant::now();
    let latencies = rt.block_on(async {
        let tasks: Vec<_> = (1..=args.concurrency as u64)
            .map(|w| tokio::spawn(bench.clone().appender(w, args.size)))
            .collect();
        let mut all = Vec::with_capacity(args.records as usize);
        for t in tasks {
            all.extend(t.await??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = t0.elapsed();
    // Let padding and seals spawned for the last full chunk finish.
    rt.shutdown_timeout(Duration::from_secs(10));
    let stats = store.stats();
    let mut sorted = latencies;
    sorted.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let records = args.records as f64;
    let groups = (stats.groups - before.groups).max(1);
    let fsyncs =
        (stats.data_fsyncs - before.data_fsyncs) + (stats.meta_fsyncs - before.meta_fsyncs);
    let chunks = bench.alloc.lock().expect("allocator lock poisoned").chunks;
    let out = json!({
        "records": args.records,
        "size": args.size,
        "concurrency": args.concurrency,
        "chunk_bytes": args.chunk_bytes,
        "chunks": chunks,
        "elapsed_s": secs,
        "records_per_sec": records / secs,
        "mb_per_sec": records * args.size as f64 / secs / 1e6,
        "groups": groups,
        "data_fsyncs": stats.data_fsyncs - before.data_fsyncs,
        "meta_fsyncs": stats.meta_fsyncs - before.meta_fsyncs,
        "fsyncs": fsyncs,
        "records_per_group": records / groups as f64,
        "records_per_fsync": records / fsyncs.max(1) as f64,
        "p50_us": percentile(&sorted, 0.50),
        "p99_us": percentile(&sorted, 0.99),
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "{} records of {} B, {} appenders, {} chunk(s) of {} B in {:.2} s",
            args.records, args.size, args.concurrency, chunks, args.chunk_bytes, secs
        );
        println!(
            "  {:.0} records/s, {:.1} MB/s (payload)",
            out["records_per_sec"].as_f64().unwrap_or(0.0),
            out["mb_per_sec"].as_f64().unwrap_or(0.0)
        );
        println!(
            "  {} fsyncs ({} data + {} meta), {:.1} records per fsync, {:.1} records per group",
            fsyncs,
            out["data_fsyncs"],
            out["meta_fsyncs"],
            out["records_per_fsync"].as_f64().unwrap_or(0.0),
            out["records_per_group"].as_f64().unwrap_or(0.0)
        );
        println!(
            "  latency p50 {} us, p99 {} us",
            out["p50_us"], out["p99_us"]
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
