//! `cairn fsck LOG`: reads every replica the master knows of each chunk of a log, checks its
//! header, every frame, its version and length and (sealed chunks) that the replicas hold the
//! same bytes, reports corrupt replicas to the master (which replaces them as it replaces any
//! corrupt replica) and prints what it found.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use cairn_client::limits::READ_RPC_BYTES_MAX;
use cairn_client::{ChunkReplicas, ChunkState, Client, CorruptReport, ReplicaStatus};
use cairn_record::{ChunkHandle, DecodeError, FrameReader, ReadItem};
use serde_json::json;

use crate::cluster::{self, MasterArg};

/// `cairn fsck LOG`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
For every chunk of the log, reads every replica the master knows of (whatever its state) from \
its chunkserver and checks: the chunk header (magic, checksum, handle, capacity); every frame's \
checksum, with valid records or padding ending exactly at the replica's readable end; for \
sealed chunks, that each replica is sealed at the chunk's version and sealed length and that \
the CRC-32 of all such replicas agree (a replica whose checksum differs from the majority's is \
corrupt); for the open chunk, what each replica serves up to its commit offset.

Replica status: healthy, stale (old version, wrong length, not sealed, a failed write), corrupt \
(a bad frame or header, the chunkserver reports data loss, a checksum that differs from the \
majority, or already marked corrupt at the master), unreachable. Chunk status: corrupt (some \
replica corrupt), under-replicated (fewer healthy replicas than the log's replication factor), \
stale (some replica stale), healthy.

Every corrupt replica the master does not know about yet is reported to it; the master then \
copies the chunk from a good replica and deletes the corrupt one, as for any corrupt replica. \
Run fsck again later to see the result.

JSON (--json): one object with `path`, `replication`, `chunk_bytes`, `chunks` (each with \
`index`, `handle`, `state`, `version`, `length`, `replication`, `primary`, `status`, \
`verified` and `replicas`, each with \
`address`, `status`, `detail`, `version`, `length`, `sealed`, `bytes_verified`, `crc32` and \
`reported`) and `summary` (`chunks`, `replicas_checked`, `bytes_verified`, `healthy`, \
`under_replicated`, `stale`, `corrupt`, `reported_corrupt`, `ok`).

Exit status: 0 when every chunk has at least its replication factor of healthy replicas and no \
replica is corrupt or stale; 1 otherwise, and when fsck cannot run (an error line says why).")]
pub(crate) struct FsckArgs {
    /// The log's path.
    log: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// What reading one replica found.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ReadResult {
    /// Every byte up to the replica's readable end was read (or reading stopped at the first
    /// problem, which `bad` names).
    Done {
        /// The replica's version, as its chunkserver served it.
        version: u64,
        /// Whether the chunkserver serves it as sealed.
        sealed: bool,
        /// Its readable end: the sealed length, or an open replica's commit offset.
        end: u64,
        /// CRC-32 of bytes `[0, end)` (meaningful only when `bad` is `None`).
        crc32: u32,
        /// The first problem in its bytes.
        bad: Option<String>,
    },
    /// The chunkserver said the replica's bytes are damaged.
    DataLoss(String),
    /// No usable answer: the chunkserver is down, the replica is gone, a timeout.
    Failed(String),
}

/// One replica: what the master says of it and what reading it found.
#[derive(Clone, Debug)]
struct Observation {
    master: ReplicaStatus,
    read: ReadResult,
    /// Bytes read and checked.
    bytes: u64,
}

/// A replica's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplicaHealth {
    Healthy,
    Stale,
    Corrupt,
    Unreachable,
}

impl ReplicaHealth {
    fn as_str(self) -> &'static str {
        match self {
            ReplicaHealth::Healthy => "healthy",
            ReplicaHealth::Stale => "stale",
            ReplicaHealth::Corrupt => "corrupt",
            ReplicaHealth::Unreachable => "unreachable",
        }
    }
}

/// The verdict on one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReplicaVerdict {
    health: ReplicaHealth,
    /// Why, for anything but healthy.
    detail: String,
    /// A corrupt replica the master does not know about yet: report it.
    report: bool,
}

/// A chunk's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkHealth {
    Healthy,
    UnderReplicated,
    Stale,
    Corrupt,
}

impl ChunkHealth {
    fn as_str(self) -> &'static str {
        match self {
            ChunkHealth::Healthy => "healthy",
            ChunkHealth::UnderReplicated => "under-replicated",
            ChunkHealth::Stale => "stale",
            ChunkHealth::Corrupt => "corrupt",
        }
    }
}

/// What the master says of a chunk, as far as the verdicts need it.
#[derive(Clone, Copy, Debug)]
struct ChunkFacts {
    state: ChunkState,
    version: u64,
    /// Sealed chunks: the sealed length.
    length: u64,
    replication: u32,
}

/// The verdict on a chunk and on each of its replicas (in `observations` order).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChunkVerdict {
    health: ChunkHealth,
    /// Healthy replicas.
    verified: usize,
    replicas: Vec<ReplicaVerdict>,
}

fn verdict(health: ReplicaHealth, detail: impl Into<String>, report: bool) -> ReplicaVerdict {
    ReplicaVerdict {
        health,
        detail: detail.into(),
        report,
    }
}

/// Classifies a chunk's replicas from what the master says and what reading them found.
fn classify(chunk: ChunkFacts, observations: &[Observation]) -> ChunkVerdict {
    let sealed_chunk = chunk.state == ChunkState::Sealed;
    let mut replicas: Vec<ReplicaVerdict> = observations
        .iter()
        .map(|o| {
            // Known to the master already (its chunkserver's report or an earlier check):
            // nothing new to report.
            let unknown = !o.master.corrupt;
            match &o.read {
                ReadResult::Failed(e) => verdict(ReplicaHealth::Unreachable, e.clone(), false),
                ReadResult::DataLoss(e) => verdict(
                    ReplicaHealth::Corrupt,
                    format!("its chunkserver reports data loss: {e}"),
                    unknown,
                ),
                ReadResult::Done { bad: Some(b), .. } => {
                    verdict(ReplicaHealth::Corrupt, b.clone(), unknown)
                }
                ReadResult::Done {
                    version,
                    sealed,
                    end,
                    ..
                } => {
                    if o.master.corrupt {
                        let detail = match &o.master.reported_corrupt {
                            Some(d) => format!("marked corrupt at the master: {d}"),
                            None => "reported corrupt by its chunkserver".to_owned(),
                        };
                        verdict(ReplicaHealth::Corrupt, detail, false)
                    } else if o.master.failed {
                        verdict(
                            ReplicaHealth::Stale,
                            "its chunkserver reports a failed write",
                            false,
                        )
                    } else if sealed_chunk && *version != chunk.version {
                        verdict(
                            ReplicaHealth::Stale,
                            format!("version {version}, the chunk's is {}", chunk.version),
                            false,
                        )
                    } else if sealed_chunk && !sealed {
                        verdict(ReplicaHealth::Stale, "not sealed", false)
                    } else if sealed_chunk && *end != chunk.length {
                        verdict(
                            ReplicaHealth::Stale,
                            format!("length {end}, the sealed length is {}", chunk.length),
                            false,
                        )
                    } else if !sealed_chunk && *version < chunk.version {
                        verdict(
                            ReplicaHealth::Stale,
                            format!("version {version}, the chunk's is {}", chunk.version),
                            false,
                        )
                    } else {
                        verdict(ReplicaHealth::Healthy, "", false)
                    }
                }
            }
        })
        .collect();
    if sealed_chunk {
        compare_checksums(observations, &mut replicas);
    }
    let verified = replicas
        .iter()
        .filter(|v| v.health == ReplicaHealth::Healthy)
        .count();
    let any = |h: ReplicaHealth| replicas.iter().any(|v| v.health == h);
    let health = if any(ReplicaHealth::Corrupt) {
        ChunkHealth::Corrupt
    } else if verified < chunk.replication as usize {
        ChunkHealth::UnderReplicated
    } else if any(ReplicaHealth::Stale) {
        ChunkHealth::Stale
    } else {
        ChunkHealth::Healthy
    };
    ChunkVerdict {
        health,
        verified,
        replicas,
    }
}

/// Sealed replicas that passed every other check must hold the same bytes: one whose CRC-32
/// differs from a strict majority's is corrupt; with no majority, none can be trusted (and none
/// is reported: fsck cannot tell which is right).
fn compare_checksums(observations: &[Observation], replicas: &mut [ReplicaVerdict]) {
    let crc_of = |o: &Observation| match o.read {
        ReadResult::Done { crc32, .. } => Some(crc32),
        _ => None,
    };
    let mut counts: HashMap<u32, usize> = HashMap::new();
    let mut candidates = 0;
    for (o, v) in observations.iter().zip(replicas.iter()) {
        if v.health == ReplicaHealth::Healthy
            && let Some(crc) = crc_of(o)
        {
            *counts.entry(crc).or_default() += 1;
            candidates += 1;
        }
    }
    if counts.len() <= 1 {
        return;
    }
    let majority = counts
        .iter()
        .find(|(_, n)| **n * 2 > candidates)
        .map(|(crc, n)| (*crc, *n));
    for (o, v) in observations.iter().zip(replicas.iter_mut()) {
        if v.health != ReplicaHealth::Healthy {
            continue;
        }
        let Some(crc) = crc_of(o) else { continue };
        match majority {
            Some((m, _)) if m == crc => {}
            Some((m, n)) => {
                *v = verdict(
                    ReplicaHealth::Corrupt,
                    format!(
                        "checksum {crc:08x} differs from {m:08x} of {n} of {candidates} replicas"
                    ),
                    !o.master.corrupt,
                );
            }
            None => {
                *v = verdict(
                    ReplicaHealth::Corrupt,
                    format!(
                        "checksum {crc:08x}: the {candidates} sealed replicas disagree and no checksum has a majority"
                    ),
                    false,
                );
            }
        }
    }
}

/// Frame-by-frame checking of a replica's bytes as they arrive.
struct FrameCheck {
    handle: ChunkHandle,
    capacity: u64,
    /// The header and frames received so far; it keeps a frame cut by the end of a read.
    reader: FrameReader,
}

impl FrameCheck {
    fn new(handle: ChunkHandle, capacity: u64) -> FrameCheck {
        FrameCheck {
            handle,
            capacity,
            reader: FrameReader::chunk(),
        }
    }

    /// Checks the next bytes; `last` when they reach the readable end. Returns the first
    /// problem found. A frame cut by the end of a non-final read waits for the next one.
    fn feed(&mut self, data: &[u8], last: bool) -> Option<String> {
        self.reader.feed(bytes::Bytes::copy_from_slice(data));
        if last {
            self.reader.finish();
        }
        for item in self.reader.by_ref() {
            match item {
                ReadItem::Header { header } => match header {
                    Err(DecodeError::Incomplete { available, .. }) => {
                        return Some(format!(
                            "the replica ends at {available} bytes, inside the chunk header"
                        ));
                    }
                    Err(e) => return Some(format!("bad chunk header: {e}")),
                    Ok(h) if h.handle != self.handle => {
                        return Some(format!("the chunk header names chunk {}", h.handle));
                    }
                    Ok(h) if u64::from(h.capacity) != self.capacity => {
                        return Some(format!(
                            "the chunk header says capacity {}, the log's chunks hold {}",
                            h.capacity, self.capacity
                        ));
                    }
                    Ok(_) => {}
                },
                ReadItem::Corrupt { offset, len } => {
                    return Some(format!("bad frame at offset {offset} ({len} bytes)"));
                }
                ReadItem::Record { .. }
                | ReadItem::Padding { .. }
                | ReadItem::Incomplete { .. } => {}
            }
        }
        None
    }
}

/// Reads `address`'s replica of `handle` up to its readable end, checking it as it arrives.
async fn read_replica(
    client: &Client,
    address: &str,
    handle: ChunkHandle,
    capacity: u64,
    progress: Option<&indicatif::ProgressBar>,
) -> (ReadResult, u64) {
    let mut check = FrameCheck::new(handle, capacity);
    let mut crc = crc32fast::Hasher::new();
    let mut offset = 0u64;
    // From the first answer: (version, sealed, readable end).
    let mut first: Option<(u64, bool, u64)> = None;
    loop {
        let want = match first {
            Some((_, _, end)) if offset >= end => break,
            Some((_, _, end)) => (end - offset).min(READ_RPC_BYTES_MAX),
            None => READ_RPC_BYTES_MAX,
        };
        let r = match client
            .read_replica(address, handle, offset, want as u32)
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_data_loss() => return (ReadResult::DataLoss(e.to_string()), offset),
            Err(e) => return (ReadResult::Failed(e.to_string()), offset),
        };
        let (version, sealed, end) = *first.get_or_insert((r.version, r.sealed, r.readable_end));
        let done = |bad: Option<String>, crc: crc32fast::Hasher| ReadResult::Done {
            version,
            sealed,
            end,
            crc32: crc.finalize(),
            bad,
        };
        if end == 0 {
            return (done(None, crc), 0);
        }
        if r.offset != offset || (r.data.is_empty() && offset < end) {
            let bad = format!(
                "the replica served nothing at offset {offset}, below its readable end {end}"
            );
            return (done(Some(bad), crc), offset);
        }
        let n = r.data.len().min((end - offset) as usize);
        let data = &r.data[..n];
        crc.update(data);
        offset += n as u64;
        if let Some(p) = progress {
            p.inc(n as u64);
        }
        if let Some(bad) = check.feed(data, offset >= end) {
            return (done(Some(bad), crc), offset);
        }
        if offset >= end {
            return (done(None, crc), offset);
        }
    }
    // Only reached when the first answer's readable end was already passed (never on the
    // first iteration).
    let (version, sealed, end) = first.expect("at least one read answered");
    (
        ReadResult::Done {
            version,
            sealed,
            end,
            crc32: crc.finalize(),
            bad: None,
        },
        offset,
    )
}

/// One chunk's results.
struct ChunkReport {
    chunk: ChunkReplicas,
    observations: Vec<Observation>,
    verdict: ChunkVerdict,
    /// Per replica: what reporting it to the master gave, if it was reported.
    reported: Vec<Option<String>>,
}

/// Runs `cairn fsck`.
pub(crate) fn run(args: &FsckArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let log = client
            .list_replicas(&args.log)
            .await
            .map_err(cluster::hint)?;
        let total: u64 = log
            .chunks
            .iter()
            .map(|c| c.length * c.replicas.len() as u64)
            .sum();
        let progress = progress_bar(total);
        let mut reports = Vec::with_capacity(log.chunks.len());
        for chunk in &log.chunks {
            let mut observations = Vec::with_capacity(chunk.replicas.len());
            for r in &chunk.replicas {
                let (read, bytes) = read_replica(
                    &client,
                    &r.address,
                    chunk.handle,
                    log.chunk_bytes,
                    progress.as_ref(),
                )
                .await;
                observations.push(Observation {
                    master: r.clone(),
                    read,
                    bytes,
                });
            }
            let facts = ChunkFacts {
                state: chunk.state,
                version: chunk.version,
                length: chunk.length,
                replication: chunk.replication,
            };
            let verdict = classify(facts, &observations);
            let mut reported = Vec::with_capacity(observations.len());
            for (o, v) in observations.iter().zip(&verdict.replicas) {
                reported.push(if v.report {
                    let outcome = client
                        .report_corrupt(chunk.handle, &o.master.address, &v.detail)
                        .await;
                    Some(match outcome {
                        Ok(CorruptReport::Marked) => "reported to the master".to_owned(),
                        Ok(CorruptReport::Refused(why)) => {
                            format!("the master did not mark it: {why}")
                        }
                        Err(e) => format!("reporting it to the master failed: {e}"),
                    })
                } else {
                    None
                });
            }
            reports.push(ChunkReport {
                chunk: chunk.clone(),
                observations,
                verdict,
                reported,
            });
        }
        if let Some(p) = progress {
            p.finish_and_clear();
        }
        let summary = Summary::of(&reports);
        if args.json {
            println!("{}", to_json(&log, &reports, &summary));
        } else {
            print_table(&log, &reports, &summary);
        }
        Ok(if summary.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "fsck [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .expect("the template is valid"),
    );
    Some(bar)
}

/// Counts over the whole log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Summary {
    chunks: usize,
    replicas_checked: usize,
    bytes_verified: u64,
    healthy: usize,
    under_replicated: usize,
    stale: usize,
    corrupt: usize,
    reported_corrupt: usize,
}

impl Summary {
    fn of(reports: &[ChunkReport]) -> Summary {
        let mut s = Summary {
            chunks: reports.len(),
            ..Summary::default()
        };
        for r in reports {
            s.replicas_checked += r.observations.len();
            s.bytes_verified += r.observations.iter().map(|o| o.bytes).sum::<u64>();
            s.reported_corrupt += r.verdict.replicas.iter().filter(|v| v.report).count();
            match r.verdict.health {
                ChunkHealth::Healthy => s.healthy += 1,
                ChunkHealth::UnderReplicated => s.under_replicated += 1,
                ChunkHealth::Stale => s.stale += 1,
                ChunkHealth::Corrupt => s.corrupt += 1,
            }
        }
        s
    }

    fn ok(&self) -> bool {
        self.healthy == self.chunks
    }
}

fn crc_hex(o: &Observation) -> Option<String> {
    match &o.read {
        ReadResult::Done {
            crc32, bad: None, ..
        } => Some(format!("{crc32:08x}")),
        _ => None,
    }
}

fn to_json(
    log: &cairn_client::LogReplicas,
    reports: &[ChunkReport],
    s: &Summary,
) -> serde_json::Value {
    let chunks: Vec<_> = reports
        .iter()
        .map(|r| {
            let replicas: Vec<_> = r
                .observations
                .iter()
                .zip(&r.verdict.replicas)
                .zip(&r.reported)
                .map(|((o, v), reported)| {
                    let (version, length, sealed) = match &o.read {
                        ReadResult::Done {
                            version,
                            end,
                            sealed,
                            ..
                        } => (*version, *end, *sealed),
                        _ => (o.master.version, o.master.length, o.master.sealed),
                    };
                    json!({
                        "address": o.master.address,
                        "status": v.health.as_str(),
                        "detail": v.detail,
                        "version": version,
                        "length": length,
                        "sealed": sealed,
                        "bytes_verified": o.bytes,
                        "crc32": crc_hex(o),
                        "reported": reported,
                    })
                })
                .collect();
            json!({
                "index": r.chunk.index,
                "handle": r.chunk.handle.to_string(),
                "state": r.chunk.state.as_str(),
                "version": r.chunk.version,
                "length": r.chunk.length,
                "replication": r.chunk.replication,
                "primary": r.chunk.primary,
                "status": r.verdict.health.as_str(),
                "verified": r.verdict.verified,
                "replicas": replicas,
            })
        })
        .collect();
    json!({
        "path": log.path,
        "replication": log.replication,
        "chunk_bytes": log.chunk_bytes,
        "chunks": chunks,
        "summary": {
            "chunks": s.chunks,
            "replicas_checked": s.replicas_checked,
            "bytes_verified": s.bytes_verified,
            "healthy": s.healthy,
            "under_replicated": s.under_replicated,
            "stale": s.stale,
            "corrupt": s.corrupt,
            "reported_corrupt": s.reported_corrupt,
            "ok": s.ok(),
        },
    })
}

fn print_table(log: &cairn_client::LogReplicas, reports: &[ChunkReport], s: &Summary) {
    println!(
        "{}: {} chunk(s), replication {}, chunks of {} bytes",
        log.path,
        reports.len(),
        log.replication,
        log.chunk_bytes
    );
    println!("index\thandle\tstate\tversion\tlength\tverified\tstatus");
    for r in reports {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}/{}\t{}",
            r.chunk.index,
            r.chunk.handle,
            r.chunk.state.as_str(),
            r.chunk.version,
            r.chunk.length,
            r.verdict.verified,
            r.chunk.replication,
            r.verdict.health.as_str()
        );
        for ((o, v), reported) in r
            .observations
            .iter()
            .zip(&r.verdict.replicas)
            .zip(&r.reported)
        {
            let mut line = format!("  {}\t{}", o.master.address, v.health.as_str());
            if !v.detail.is_empty() {
                line.push_str(&format!("\t{}", v.detail));
            }
            if let Some(reported) = reported {
                line.push_str(&format!(" ({reported})"));
            }
            println!("{line}");
        }
    }
    println!(
        "summary: {} chunk(s), {} replica(s) checked, {} bytes verified; healthy {}, under-replicated {}, stale {}, corrupt {}; {} corrupt replica(s) reported to the master",
        s.chunks,
        s.replicas_checked,
        s.bytes_verified,
        s.healthy,
        s.under_replicated,
        s.stale,
        s.corrupt,
        s.reported_corrupt
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::{ChunkHeader, RecordId, encode_padding, encode_record};

    const SEALED: ChunkFacts = ChunkFacts {
        state: ChunkState::Sealed,
        version: 2,
        length: 4096,
        replication: 3,
    };

    fn status(address: &str) -> ReplicaStatus {
        ReplicaStatus {
            address: address.to_owned(),
            version: 2,
            length: 4096,
            sealed: true,
            corrupt: false,
            failed: false,
            live: true,
            good: true,
            reported_corrupt: None,
        }
    }

    fn read_ok(crc32: u32) -> ReadResult {
        done(2, true, 4096, crc32, None)
    }

    fn done(version: u64, sealed: bool, end: u64, crc32: u32, bad: Option<&str>) -> ReadResult {
        ReadResult::Done {
            version,
            sealed,
            end,
            crc32,
            bad: bad.map(str::to_owned),
        }
    }

    fn obs(address: &str, read: ReadResult) -> Observation {
        Observation {
            master: status(address),
            read,
            bytes: 4096,
        }
    }

    fn healths(v: &ChunkVerdict) -> Vec<ReplicaHealth> {
        v.replicas.iter().map(|r| r.health).collect()
    }

    use ReplicaHealth::{Corrupt, Healthy, Stale, Unreachable};

    #[test]
    fn three_equal_replicas_are_healthy() {
        let o = [
            obs("a", read_ok(7)),
            obs("b", read_ok(7)),
            obs("c", read_ok(7)),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(v.health, ChunkHealth::Healthy);
        assert_eq!(v.verified, 3);
        assert!(v.replicas.iter().all(|r| !r.report));
    }

    #[test]
    fn a_bad_frame_is_corrupt_and_reported_once() {
        let bad = done(2, true, 4096, 9, Some("bad frame at offset 64 (40 bytes)"));
        let o = [
            obs("a", read_ok(7)),
            obs("b", bad.clone()),
            obs("c", read_ok(7)),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(v.health, ChunkHealth::Corrupt);
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Healthy]);
        assert!(v.replicas[1].report);
        assert_eq!(v.verified, 2);
        // Already marked at the master: still corrupt, not reported again.
        let mut marked = obs("b", read_ok(7));
        marked.master.corrupt = true;
        marked.master.reported_corrupt = Some("bad frame".into());
        let v = classify(
            SEALED,
            &[obs("a", read_ok(7)), marked, obs("c", read_ok(7))],
        );
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Healthy]);
        assert!(!v.replicas[1].report);
        let mut known = obs("b", bad);
        known.master.corrupt = true;
        let v = classify(SEALED, &[obs("a", read_ok(7)), known]);
        assert!(!v.replicas[1].report);
    }

    #[test]
    fn data_loss_is_corrupt_and_silence_is_unreachable() {
        let o = [
            obs("a", read_ok(7)),
            obs("b", ReadResult::DataLoss("DATA_LOSS".into())),
            obs("c", ReadResult::Failed("connection refused".into())),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Unreachable]);
        assert!(v.replicas[1].report && !v.replicas[2].report);
        assert_eq!(v.health, ChunkHealth::Corrupt);
        let v = classify(
            SEALED,
            &[obs("a", read_ok(7)), o[2].clone(), obs("d", read_ok(7))],
        );
        assert_eq!(v.health, ChunkHealth::UnderReplicated);
        assert_eq!(v.verified, 2);
    }

    #[test]
    fn checksum_minority_is_corrupt_and_a_tie_trusts_nobody() {
        let o = [
            obs("a", read_ok(7)),
            obs("b", read_ok(8)),
            obs("c", read_ok(7)),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(healths(&v), vec![Healthy, Corrupt, Healthy]);
        assert!(v.replicas[1].report);
        assert!(
            v.replicas[1].detail.contains("00000008"),
            "{:?}",
            v.replicas[1]
        );
        let v = classify(SEALED, &[obs("a", read_ok(7)), obs("b", read_ok(8))]);
        assert_eq!(healths(&v), vec![Corrupt, Corrupt]);
        assert!(v.replicas.iter().all(|r| !r.report));
        assert_eq!(v.verified, 0);
    }

    #[test]
    fn old_version_short_or_unsealed_replicas_are_stale() {
        let old = done(1, true, 4096, 1, None);
        let short = done(2, true, 2048, 2, None);
        let open = done(2, false, 4096, 3, None);
        let o = [
            obs("a", read_ok(7)),
            obs("b", read_ok(7)),
            obs("c", read_ok(7)),
            obs("d", old),
            obs("e", short),
            obs("f", open),
        ];
        let v = classify(SEALED, &o);
        assert_eq!(
            healths(&v),
            vec![Healthy, Healthy, Healthy, Stale, Stale, Stale]
        );
        assert_eq!(v.health, ChunkHealth::Stale);
        // Stale replicas take no part in the checksum vote.
        assert!(v.replicas.iter().all(|r| !r.report));
        let v = classify(SEALED, &o[2..]);
        assert_eq!(v.health, ChunkHealth::UnderReplicated);
    }

    #[test]
    fn open_chunk_replicas_are_checked_up_to_their_commit_offset() {
        let open = ChunkFacts {
            state: ChunkState::Open,
            version: 1,
            length: 32,
            replication: 2,
        };
        let at = |end: u64, crc32: u32, version: u64| ReadResult::Done {
            version,
            sealed: false,
            end,
            crc32,
            bad: None,
        };
        // Different lengths (a secondary lags the primary) are fine while the chunk is open.
        let v = classify(open, &[obs("a", at(4096, 1, 1)), obs("b", at(2048, 2, 1))]);
        assert_eq!(v.health, ChunkHealth::Healthy);
        let v = classify(open, &[obs("a", at(4096, 1, 1)), obs("b", at(2048, 2, 0))]);
        assert_eq!(healths(&v), vec![Healthy, Stale]);
        assert_eq!(v.health, ChunkHealth::UnderReplicated);
    }

    fn chunk_bytes(records: u64, pad_to: usize) -> Vec<u8> {
        let mut out = ChunkHeader::new(ChunkHandle(5), 8192)
            .unwrap()
            .encode()
            .to_vec();
        for s in 1..=records {
            let id = RecordId {
                writer: 3,
                sequence: s,
            };
            encode_record(&mut out, id, &[s as u8; 300], 1 << 20).unwrap();
        }
        if pad_to > out.len() {
            let rest = pad_to - out.len();
            encode_padding(&mut out, rest).unwrap();
        }
        out
    }

    // Frames checked across read boundaries at every split; a flipped payload byte, a wrong
    // handle and a replica ending mid-frame are each named.
    #[test]
    fn frame_check_across_reads() {
        let bytes = chunk_bytes(10, 8192);
        for split in [1, 31, 32, 33, 100, 345, 4000, 8191] {
            let mut c = FrameCheck::new(ChunkHandle(5), 8192);
            assert_eq!(c.feed(&bytes[..split], false), None, "split {split}");
            assert_eq!(c.feed(&bytes[split..], true), None, "split {split}");
        }
        let mut flipped = bytes.clone();
        flipped[32 + 32 + 7] ^= 0x40;
        let mut c = FrameCheck::new(ChunkHandle(5), 8192);
        let bad = c.feed(&flipped, true).expect("a bad frame");
        assert!(bad.contains("offset 32"), "{bad}");
        let mut c = FrameCheck::new(ChunkHandle(6), 8192);
        assert!(c.feed(&bytes, true).unwrap().contains("names chunk"));
        let mut c = FrameCheck::new(ChunkHandle(5), 4096);
        assert!(c.feed(&bytes, true).unwrap().contains("capacity"));
        let mut c = FrameCheck::new(ChunkHandle(5), 8192);
        assert!(c.feed(&bytes[..500], true).unwrap().contains("bad frame"));
        let mut c = FrameCheck::new(ChunkHandle(5), 8192);
        assert!(c.feed(&bytes[..20], true).unwrap().contains("header"));
    }
}
