//! `cairn exec create|ls|status|quarantine|timeline`: the execution layer's services, as their
//! logs show them.

use std::collections::BTreeSet;
use std::process::ExitCode;

use cairn_exec::quarantine;
use cairn_exec::records::{REQUEST_ID_BYTES, code_name, from_hex, hex};
use cairn_exec::service_logs::ServiceLogs;
use cairn_exec::status::{ServiceStatus, status};
use cairn_exec::timeline::{TimelineEvent, timeline};
use serde_json::json;

use crate::cluster::{self, MasterArg};

/// `cairn exec …`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ExecCommand {
    /// Create a service's logs: /exec/SERVICE/inputs and /votes (RF 3), and one output log
    /// per replica (RF 1) placed on the I-th live chunkserver in address order.
    Create(CreateArgs),
    /// List services and their replica counts.
    Ls(LsArgs),
    /// A service's replicas (outputs executed, dissents), inputs, votes and storage.
    Status(StatusArgs),
    /// List a service's quarantined inputs (queries of death), or lift one with --lift.
    Quarantine(QuarantineArgs),
    /// One request's history: received, logged, each replica's outcome, vote, quarantine or
    /// pending, reply.
    Timeline(TimelineArgs),
}

/// `cairn exec quarantine`.
#[derive(clap::Args, Debug)]
pub(crate) struct QuarantineArgs {
    /// The service's name.
    service: String,
    /// Lift the quarantine of this fingerprint (64 hex digits): front doors accept its calls
    /// again. Recorded as a LIFT record in the vote log.
    #[arg(long, value_name = "FINGERPRINT")]
    lift: Option<String>,
    /// Why (recorded with the lift). Default: the user and host running the command.
    #[arg(long, requires = "lift")]
    reason: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn exec timeline`.
#[derive(clap::Args, Debug)]
pub(crate) struct TimelineArgs {
    /// The service's name.
    service: String,
    /// The request id (hex, from the `cairn-request-id` metadata).
    request_id: String,
    /// One JSON object per event and line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn exec create`.
#[derive(clap::Args, Debug)]
pub(crate) struct CreateArgs {
    /// The service's name.
    service: String,
    /// Business replicas, n = 2f+1.
    #[arg(long, default_value_t = 3)]
    replicas: u32,
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn exec ls`.
#[derive(clap::Args, Debug)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    master: MasterArg,
}

/// `cairn exec status`.
#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    /// The service's name.
    service: String,
    /// One JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: MasterArg,
}

/// Runs a `cairn exec` subcommand.
pub(crate) fn run(command: &ExecCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExecCommand::Create(args) => cluster::run(async {
            let client = cluster::connect(&args.master).await?;
            let logs = ServiceLogs::new(&args.service)?;
            let placed = logs.create(&client, args.replicas).await?;
            println!(
                "created service {}: {} replicas, outputs on {}",
                logs.service(),
                placed.len(),
                placed.join(" ")
            );
            Ok(ExitCode::SUCCESS)
        }),
        ExecCommand::Ls(args) => cluster::run(async {
            let client = cluster::connect(&args.master).await?;
            let mut services = BTreeSet::new();
            for log in client.list_logs("/exec/").await? {
                if let Some(name) = log.path["/exec/".len()..].split('/').next() {
                    services.insert(name.to_owned());
                }
            }
            for service in services {
                let logs = ServiceLogs::new(&service)?;
                let replicas = logs.replica_count(&client).await.unwrap_or(0);
                println!("{service}\t{replicas} replicas");
            }
            Ok(ExitCode::SUCCESS)
        }),
        ExecCommand::Status(args) => cluster::run(async {
            let client = cluster::connect(&args.master).await?;
            let logs = ServiceLogs::new(&args.service)?;
            let s = status(&client, &logs).await?;
            if args.json {
                println!("{}", status_json(&s));
            } else {
                print_status(&s);
            }
            Ok(ExitCode::SUCCESS)
        }),
        ExecCommand::Quarantine(args) => cluster::run(async {
            let client = cluster::connect(&args.master).await?;
            let logs = ServiceLogs::new(&args.service)?;
            if let Some(fingerprint) = &args.lift {
                let reason = args.reason.clone().unwrap_or_else(who);
                let q = quarantine::lift(&client, &logs, fingerprint, &reason).await?;
                println!(
                    "lifted the quarantine of {} (request {}, {}): front doors accept it again",
                    hex(&q.fingerprint),
                    hex(&q.request_id),
                    q.method
                );
                return Ok(ExitCode::SUCCESS);
            }
            let all = quarantine::list(&client, &logs).await?;
            for q in &all {
                let outcomes: Vec<String> = q
                    .outcomes
                    .iter()
                    .map(|o| format!("{}:{}", o.replica, code_name(o.code)))
                    .collect();
                if args.json {
                    println!(
                        "{}",
                        json!({
                            "fingerprint": hex(&q.fingerprint),
                            "request_id": hex(&q.request_id),
                            "method": q.method,
                            "at_ms": q.at_ms,
                            "outcomes": q.outcomes.iter().map(|o| json!({
                                "replica": o.replica,
                                "status": code_name(o.code),
                                "detail": o.detail,
                            })).collect::<Vec<_>>(),
                        })
                    );
                } else {
                    println!(
                        "{}\t{}\trequest {}\t{}",
                        hex(&q.fingerprint),
                        q.method,
                        hex(&q.request_id),
                        outcomes.join(" ")
                    );
                }
            }
            if !args.json {
                eprintln!(
                    "{} quarantined input(s) in service {}",
                    all.len(),
                    logs.service()
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        ExecCommand::Timeline(args) => cluster::run(async {
            let client = cluster::connect(&args.master).await?;
            let logs = ServiceLogs::new(&args.service)?;
            let id = from_hex(&args.request_id)
                .filter(|b| b.len() == REQUEST_ID_BYTES)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{:?} is not a request id ({} hex digits)",
                        args.request_id,
                        REQUEST_ID_BYTES * 2
                    )
                })?;
            let events = timeline(&client, &logs, &id).await?;
            if events.is_empty() {
                anyhow::bail!(
                    "request {} is not in service {}'s logs",
                    args.request_id,
                    logs.service()
                );
            }
            for e in &events {
                if args.json {
                    println!(
                        "{}",
                        json!({
                            "event": e.event,
                            "at": e.at_ms,
                            "replica": e.replica,
                            "status": e.status,
                            "digest": e.digest,
                            "chunk": e.chunk,
                            "offset": e.offset,
                            "detail": e.detail,
                        })
                    );
                } else {
                    print_event(e);
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// The user and host running this command, for a lift's record.
fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown user".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".to_owned());
    format!("lifted by {user} on {host}")
}

/// One timeline event as a line: time (UTC), event, then what it has.
fn print_event(e: &TimelineEvent) {
    let at = e.at_ms.map_or_else(
        || "-".to_owned(),
        |ms| {
            let secs = ms / 1000;
            format!(
                "{:02}:{:02}:{:02}.{:03}",
                secs / 3600 % 24,
                secs / 60 % 60,
                secs % 60,
                ms % 1000
            )
        },
    );
    let mut line = format!("{at}  {:<10}", e.event);
    if let Some(r) = e.replica {
        line.push_str(&format!(" replica {r}"));
    }
    if let Some(s) = &e.status {
        line.push_str(&format!(" {s}"));
    }
    if let Some(d) = &e.digest {
        line.push_str(&format!(" digest {}", &d[..16.min(d.len())]));
    }
    if let (Some(c), Some(o)) = (e.chunk, e.offset) {
        line.push_str(&format!(" at chunk {c} offset {o}"));
    }
    if !e.detail.is_empty() {
        line.push_str(&format!("  {}", e.detail));
    }
    println!("{line}");
}

/// The `--json` form.
fn status_json(s: &ServiceStatus) -> serde_json::Value {
    json!({
        "service": s.service,
        "replicas": s.replicas.iter().map(|r| json!({
            "index": r.index,
            "chunkserver": r.chunkserver,
            "executed": r.executed,
            "dissents": r.dissents,
            "dissents_in_a_row": r.dissents_in_a_row,
            "lag": r.lag,
            "worker_recoveries": r.worker_recoveries,
            "state": r.state,
            "snapshot": r.snapshot.as_ref().map(|s| json!({
                "inputs": s.inputs,
                "digest": cairn_exec::records::hex(&s.digest),
                "bytes": s.bytes,
            })),
        })).collect::<Vec<_>>(),
        "inputs": s.inputs,
        "votes": s.votes,
        "dissents": s.dissents,
        "quarantined": s.quarantined,
        "pending": s.pending,
        "bytes": {
            "inputs_on_disk": s.bytes.inputs_on_disk,
            "input_records": s.bytes.input_records,
            "outputs_on_disk": s.bytes.outputs_on_disk,
            "output_records": s.bytes.output_records,
            "snapshot_records": s.bytes.snapshot_records,
            "votes_on_disk": s.bytes.votes_on_disk,
        },
    })
}

fn print_status(s: &ServiceStatus) {
    println!(
        "service {}: {} inputs, {} votes, {} dissents, {} quarantined, {} pending",
        s.service, s.inputs, s.votes, s.dissents, s.quarantined, s.pending
    );
    for r in &s.replicas {
        let snapshot = match &r.snapshot {
            Some(snap) => format!(
                ", snapshot after {} inputs ({} bytes, blake3 {})",
                snap.inputs,
                snap.bytes,
                cairn_exec::records::hex(&snap.digest)
            ),
            None => String::new(),
        };
        println!(
            "  replica {} on {}: {} executed ({} behind), {} dissents ({} in a row), {} worker \
             recoveries, {}{snapshot}",
            r.index,
            r.chunkserver,
            r.executed,
            r.lag,
            r.dissents,
            r.dissents_in_a_row,
            r.worker_recoveries,
            r.state
        );
    }
    let ratio = |on_disk: u64, records: u64| {
        if records == 0 {
            0.0
        } else {
            on_disk as f64 / records as f64
        }
    };
    println!(
        "  inputs: {} bytes on disk for {} bytes of records ({:.2} copies)",
        s.bytes.inputs_on_disk,
        s.bytes.input_records,
        ratio(s.bytes.inputs_on_disk, s.bytes.input_records)
    );
    let n = s.replicas.len() as u64;
    println!(
        "  outputs: {} bytes on disk for {} bytes of records per request ({:.2} copies over \
         {n} replicas: {:.2} per replica)",
        s.bytes.outputs_on_disk,
        s.bytes.output_records,
        ratio(s.bytes.outputs_on_disk, s.bytes.output_records),
        ratio(s.bytes.outputs_on_disk, n * s.bytes.output_records)
    );
    if s.bytes.snapshot_records > 0 {
        println!(
            "  snapshots: {} bytes of SNAPSHOT records in the output logs (counted in their bytes on disk)",
            s.bytes.snapshot_records
        );
    }
    println!("  votes: {} bytes on disk", s.bytes.votes_on_disk);
}
