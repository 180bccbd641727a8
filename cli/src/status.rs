//! `cairn status`: the cluster as the master sees it ([`cairn_client::Client::cluster_status`]),
//! as a summary or JSON, with an exit status a health check can use.

use std::process::ExitCode;

use bytesize::ByteSize;
use cairn_client::ClusterStatus;
use serde_json::json;

use crate::cluster::{self, MasterArg};

/// `cairn status`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Shows: the cluster id and the master's uptime; every chunkserver registered since the master \
started (live or dead, seconds since its last heartbeat, free space it reported, replicas it \
holds); the number of logs and of open and sealed chunks; sealed chunks below their log's \
replication factor and chunks with a corrupt replica (at most 100 of each are listed); \
re-replication (copies running and their targets, copies still needed, copies done and failed, \
bytes copied, the recent copy rate, bytes left and an ETA at that rate); and the \
execution-layer services in the namespace. The master's `--http` listener serves the same as a \
web page at /.

JSON (--json): one object with `cluster_id` (hex), `uptime_ms`, `health`, `chunkservers` (each \
`address`, `live`, `last_heartbeat_ms`, `free_bytes` (null if never reported), `replicas`), \
`logs`, `open_chunks`, `sealed_chunks`, `under_replicated` and `corrupt` (each chunk: `log`, \
`chunk` (hex), `index`, `good`, `replication`, `length`, `corrupt_on`), \
`under_replicated_total`, `corrupt_total`, `repairs` (`running` (each `chunk`, `target`), \
`queued`, `copies_done`, `copies_failed`, `bytes_copied`, `bytes_per_sec`, `bytes_remaining`, \
`eta_ms` (null when unknown)) and `exec_services`.

Exit status: 0 when every registered chunkserver is live and no chunk is under-replicated or \
corrupt (health `healthy`); 1 otherwise (health `degraded`), and when the master cannot be \
reached (an error line says why).")]
pub(crate) struct StatusArgs {
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// Runs `cairn status`.
pub(crate) fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    cluster::run(async {
        let client = cluster::connect(&args.master).await?;
        let status = client.cluster_status().await?;
        let healthy = is_healthy(&status);
        if args.json {
            println!("{}", to_json(&status, healthy));
        } else {
            print!("{}", summary(&status, &args.master.master, healthy));
        }
        Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// Every registered chunkserver live, no chunk under-replicated or corrupt.
fn is_healthy(s: &ClusterStatus) -> bool {
    s.chunkservers.iter().all(|c| c.live) && s.under_replicated_total == 0 && s.corrupt_total == 0
}

fn bytes(n: u64) -> String {
    ByteSize(n).display().iec().to_string()
}

/// The human summary.
fn summary(s: &ClusterStatus, master: &str, healthy: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {:016x} · master {master} up {} s · {}",
        s.cluster_id,
        s.uptime_ms / 1000,
        if healthy { "healthy" } else { "DEGRADED" }
    );
    let live = s.chunkservers.iter().filter(|c| c.live).count();
    let _ = writeln!(out, "chunkservers: {live} live of {}", s.chunkservers.len());
    let width = s
        .chunkservers
        .iter()
        .map(|c| c.address.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        out,
        "  {:width$}  STATE  HEARTBEAT   {:>10}  REPLICAS",
        "ADDRESS", "FREE"
    );
    for c in &s.chunkservers {
        let free = if c.free_bytes == 0 {
            "?".to_owned()
        } else {
            bytes(c.free_bytes)
        };
        let _ = writeln!(
            out,
            "  {:width$}  {:5}  {:>6.1} s ago {free:>10}  {}",
            c.address,
            if c.live { "live" } else { "DEAD" },
            c.last_heartbeat_ms as f64 / 1000.0,
            c.replicas
        );
    }
    let _ = writeln!(
        out,
        "logs: {} · chunks: {} open, {} sealed",
        s.logs, s.open_chunks, s.sealed_chunks
    );
    for (title, list, total) in [
        (
            "under-replicated chunks",
            &s.under_replicated,
            s.under_replicated_total,
        ),
        ("chunks with a corrupt replica", &s.corrupt, s.corrupt_total),
    ] {
        let _ = writeln!(out, "{title}: {total}");
        for p in list {
            let corrupt = if p.corrupt_on.is_empty() {
                String::new()
            } else {
                format!(", corrupt on {}", p.corrupt_on.join(" "))
            };
            let _ = writeln!(
                out,
                "  {} chunk {} ({:016x}): {} of {} good, {}{corrupt}",
                p.log,
                p.index,
                p.chunk,
                p.good,
                p.replication,
                bytes(p.length)
            );
        }
        if total as usize > list.len() {
            let _ = writeln!(out, "  … and {} more", total as usize - list.len());
        }
    }
    let r = s.repairs.clone().unwrap_or_default();
    let eta = if r.eta_ms > 0 {
        format!(", ETA {} s", r.eta_ms.div_ceil(1000))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "re-replication: {} running, {} queued · {} done, {} failed · {} copied, {}/s lately · {} to copy{eta}",
        r.running.len(),
        r.queued,
        r.copies_done,
        r.copies_failed,
        bytes(r.bytes_copied),
        bytes(r.bytes_per_sec as u64),
        bytes(r.bytes_remaining),
    );
    for c in &r.running {
        let _ = writeln!(out, "  copying chunk {:016x} to {}", c.chunk, c.target);
    }
    if !s.exec_services.is_empty() {
        let _ = writeln!(out, "exec services: {}", s.exec_services.join(" "));
    }
    out
}

/// The `--json` object.
fn to_json(s: &ClusterStatus, healthy: bool) -> serde_json::Value {
    let problem = |p: &cairn_client::status::ChunkProblem| {
        json!({
            "log": p.log,
            "chunk": format!("{:016x}", p.chunk),
            "index": p.index,
            "good": p.good,
            "replication": p.replication,
            "length": p.length,
            "corrupt_on": p.corrupt_on,
        })
    };
    let r = s.repairs.clone().unwrap_or_default();
    json!({
        "cluster_id": format!("{:016x}", s.cluster_id),
        "uptime_ms": s.uptime_ms,
        "health": if healthy { "healthy" } else { "degraded" },
        "chunkservers": s.chunkservers.iter().map(|c| json!({
            "address": c.address,
            "live": c.live,
            "last_heartbeat_ms": c.last_heartbeat_ms,
            "free_bytes": (c.free_bytes > 0).then_some(c.free_bytes),
            "replicas": c.replicas,
        })).collect::<Vec<_>>(),
        "logs": s.logs,
        "open_chunks": s.open_chunks,
        "sealed_chunks": s.sealed_chunks,
        "under_replicated": s.under_replicated.iter().map(problem).collect::<Vec<_>>(),
        "under_replicated_total": s.under_replicated_total,
        "corrupt": s.corrupt.iter().map(problem).collect::<Vec<_>>(),
        "corrupt_total": s.corrupt_total,
        "repairs": {
            "running": r.running.iter().map(|c| json!({
                "chunk": format!("{:016x}", c.chunk),
                "target": c.target,
            })).collect::<Vec<_>>(),
            "queued": r.queued,
            "copies_done": r.copies_done,
            "copies_failed": r.copies_failed,
            "bytes_copied": r.bytes_copied,
            "bytes_per_sec": r.bytes_per_sec,
            "bytes_remaining": r.bytes_remaining,
            "eta_ms": (r.eta_ms > 0).then_some(r.eta_ms),
        },
        "exec_services": s.exec_services,
    })
}
