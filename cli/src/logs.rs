//! `cairn create`, `cairn ls`, `cairn stat`, `cairn rm`: the log namespace.

use std::process::ExitCode;

use cairn_client::{LogOptions, LogStat};
use cairn_record::limits::CHUNK_BYTES_DEFAULT;
use serde_json::json;

use crate::cluster::{self, MasterArg, parse_bytes};

/// `cairn create LOG`.
#[derive(clap::Args, Debug)]
pub(crate) struct CreateArgs {
    /// The log's path.
    log: String,
    /// Replicas per chunk. Default: the master's default (3; `cairn local` lowers it to its
    /// number of chunkservers).
    #[arg(long)]
    replication: Option<u32>,
    /// Fewest replicas a new chunk opens on, 1..=replication (default: the replication factor).
    /// With fewer, appends go on while some chunkservers are down: a chunk opens on as many live
    /// ones as it can (at least this many) and is copied to the full factor once sealed; an
    /// acknowledged record is then durable on every replica its chunk was opened on.
    #[arg(long)]
    min_replicas: Option<u32>,
    /// Chunk capacity, header included: bytes, or with a suffix (256KiB, 64MiB). Default 64 MiB.
    #[arg(long, value_parser = parse_bytes, default_value_t = CHUNK_BYTES_DEFAULT)]
    chunk_size: u64,
    /// Place every chunk of the log on this chunkserver (its advertised address), as primary.
    /// It must be live now; while it is down the log takes no new chunk (appends wait and fail)
    /// instead of moving elsewhere. With --replication 1 it holds the only copy.
    #[arg(long)]
    place_on: Option<String>,
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn ls`.
#[derive(clap::Args, Debug)]
pub(crate) struct LsArgs {
    /// Only logs whose path starts with this.
    #[arg(default_value = "")]
    prefix: String,
    /// One JSON object per log.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn stat LOG`.
#[derive(clap::Args, Debug)]
pub(crate) struct StatArgs {
    /// The log's path.
    log: String,
    /// Print JSON: the log's options and its `chunks` array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn rm LOG`.
#[derive(clap::Args, Debug)]
pub(crate) struct RmArgs {
    /// The log's path.
    log: String,
    #[command(flatten)]
    master: MasterArg,
}

/// Creates a log.
pub(crate) fn create(args: &CreateArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let mut options = LogOptions::default()
            // 0 asks the master for its default.
            .with_replication(args.replication.unwrap_or(0))
            // 0: the replication factor.
            .with_min_replicas(args.min_replicas.unwrap_or(0))
            .with_chunk_bytes(args.chunk_size);
        if let Some(chunkserver) = &args.place_on {
            options = options.with_place_on(chunkserver.clone());
        }
        if args.replication == Some(0) {
            anyhow::bail!("--replication must be at least 1");
        }
        if args.min_replicas == Some(0) {
            anyhow::bail!("--min-replicas must be at least 1");
        }
        let info = client.create_log(&args.log, options).await?;
        println!(
            "created {}: replication {}, min replicas {}, chunks of {} bytes{}",
            info.path,
            info.replication,
            info.min_replicas,
            info.chunk_bytes,
            info.place_on
                .map(|a| format!(", placed on {a}"))
                .unwrap_or_default()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Deletes a log. Its records are gone for good: readers and appenders of it fail from now
/// on, and the chunkservers delete its replicas at their next report.
pub(crate) fn rm(args: &RmArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        match client.delete_log(&args.log).await {
            Ok(()) => {
                println!("deleted {}", args.log);
                Ok(ExitCode::SUCCESS)
            }
            Err(cairn_client::Error::LogNotFound { .. }) => {
                anyhow::bail!("no log {}", args.log)
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Lists logs, each with its size: the sum of its chunks' lengths (one replica's worth, chunk
/// headers included; a log's `StatLog` each).
pub(crate) fn ls(args: &LsArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let mut logs = client.list_logs(&args.prefix).await?;
        logs.sort_by(|a, b| a.path.cmp(&b.path));
        for l in logs {
            let bytes = match client.stat_log(&l.path).await {
                Ok(stat) => stat.chunks.iter().map(|c| u64::from(c.length)).sum(),
                // Deleted since the listing.
                Err(cairn_client::Error::LogNotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if args.json {
                println!(
                    "{}",
                    json!({
                        "path": l.path,
                        "bytes": bytes,
                        "replication": l.replication,
                        "min_replicas": l.min_replicas,
                        "chunk_bytes": l.chunk_bytes,
                        "chunks": l.chunk_count,
                        "place_on": l.place_on,
                    })
                );
            } else {
                println!(
                    "{}\tsize={}\tchunks={}\treplication={}\tmin_replicas={}\tchunk_bytes={}",
                    l.path,
                    bytesize::ByteSize(bytes).display().iec(),
                    l.chunk_count,
                    l.replication,
                    l.min_replicas,
                    l.chunk_bytes
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Shows a log's chunks.
pub(crate) fn stat(args: &StatArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let stat = client.stat_log(&args.log).await.map_err(cluster::hint)?;
        if args.json {
            println!("{}", stat_json(&stat));
        } else {
            print_stat(&stat);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn stat_json(stat: &LogStat) -> serde_json::Value {
    let chunks: Vec<_> = stat
        .chunks
        .iter()
        .map(|c| {
            json!({
                "index": c.index,
                "handle": c.handle.to_string(),
                "state": c.state.as_str(),
                "length": c.length,
                "version": c.version,
                "replicas": c.replicas,
                "primary": c.primary,
                "lost_end": c.lost_end,
            })
        })
        .collect();
    json!({
        "path": stat.path,
        "replication": stat.replication,
        "min_replicas": stat.min_replicas,
        "chunk_bytes": stat.chunk_bytes,
        "chunks": chunks,
    })
}

fn print_stat(stat: &LogStat) {
    println!(
        "{}: {} chunk(s), replication {} (min {}), chunks of {} bytes",
        stat.path,
        stat.chunks.len(),
        stat.replication,
        stat.min_replicas,
        stat.chunk_bytes
    );
    println!("index\thandle\tstate\tlength\tversion\tprimary\treplicas");
    for c in &stat.chunks {
        let length = if c.lost_end > c.length {
            format!("{} (lost to {})", c.length, c.lost_end)
        } else {
            c.length.to_string()
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            c.index,
            c.handle,
            c.state.as_str(),
            length,
            c.version,
            c.primary.as_deref().unwrap_or("-"),
            c.replicas.join(",")
        );
    }
}
