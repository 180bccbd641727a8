//! `cairn fsck [LOG]`: the wiring of [`cairn_client::Client::fsck`] (which reads and checks
//! every replica of each chunk of a log and reports corrupt ones to the master) over one log or
//! every log: its arguments, a progress bar, the table or JSON it prints and the exit status.

use std::io::IsTerminal;
use std::process::ExitCode;

use cairn_client::fsck::{FsckReport, ReadResult, bytes_to_read};
use serde_json::json;

use crate::cluster::{self, MasterArg};

/// `cairn fsck [LOG]`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Without LOG, checks every log in the namespace, in path order. For every chunk of a log, reads every replica the master knows of (whatever its state) from \
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

JSON (--json): for each log, one line holding one object with `path`, `replication`, `chunk_bytes`, `chunks` (each with \
`index`, `handle`, `state`, `version`, `length`, `replication`, `primary`, `status`, \
`verified` and `replicas`, each with \
`address`, `status`, `detail`, `version`, `length`, `sealed`, `bytes_verified`, `crc32` and \
`reported`) and `summary` (`chunks`, `replicas_checked`, `bytes_verified`, `healthy`, \
`under_replicated`, `stale`, `corrupt`, `reported_corrupt`, `ok`).

Exit status: 0 when every chunk of every log checked has at least its replication factor of \
healthy replicas and no replica is corrupt or stale; 1 otherwise, and when fsck cannot run (an \
error line says why).")]
pub(crate) struct FsckArgs {
    /// The log's path; every log when omitted.
    log: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// Runs `cairn fsck`.
pub(crate) fn run(args: &FsckArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let paths = match &args.log {
            Some(log) => vec![log.clone()],
            None => {
                let mut logs: Vec<String> = client
                    .list_logs("")
                    .await?
                    .into_iter()
                    .map(|l| l.path)
                    .collect();
                logs.sort();
                logs
            }
        };
        let mut logs = Vec::with_capacity(paths.len());
        for path in &paths {
            logs.push(client.list_replicas(path).await.map_err(cluster::hint)?);
        }
        let progress = progress_bar(logs.iter().map(bytes_to_read).sum());
        let mut ok = true;
        for (i, log) in logs.into_iter().enumerate() {
            let report = client
                .fsck(log, |n| {
                    if let Some(p) = &progress {
                        p.inc(n);
                    }
                })
                .await;
            ok &= report.summary.ok();
            if let Some(p) = &progress {
                p.suspend(|| print_report(&report, args.json, i > 0));
            } else {
                print_report(&report, args.json, i > 0);
            }
        }
        if let Some(p) = progress {
            p.finish_and_clear();
        }
        if args.log.is_none() && !args.json {
            println!(
                "{} log(s) checked: {}",
                paths.len(),
                if ok { "all healthy" } else { "NOT all healthy" }
            );
        }
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// Prints one log's report: a JSON line, or its table (after a blank line unless `first`).
fn print_report(report: &FsckReport, json: bool, after_another: bool) {
    if json {
        println!("{}", to_json(report));
    } else {
        if after_another {
            println!();
        }
        print_table(report);
    }
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

fn to_json(report: &FsckReport) -> serde_json::Value {
    let s = &report.summary;
    let chunks: Vec<_> = report
        .chunks
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
                        "crc32": o.read.crc32().map(|c| format!("{c:08x}")),
                        "reported": reported.as_ref().map(ToString::to_string),
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
        "path": report.path,
        "replication": report.replication,
        "chunk_bytes": report.chunk_bytes,
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

fn print_table(report: &FsckReport) {
    let s = &report.summary;
    println!(
        "{}: {} chunk(s), replication {}, chunks of {} bytes",
        report.path,
        report.chunks.len(),
        report.replication,
        report.chunk_bytes
    );
    println!("index\thandle\tstate\tversion\tlength\tverified\tstatus");
    for r in &report.chunks {
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
