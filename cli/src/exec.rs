//! `cairn exec create|ls|status`: the execution layer's services, as their logs show them.

use std::collections::BTreeSet;
use std::process::ExitCode;

use cairn_exec::service_logs::ServiceLogs;
use cairn_exec::status::{ServiceStatus, status};
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
    }
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
        "service {}: {} inputs, {} votes, {} dissents",
        s.service, s.inputs, s.votes, s.dissents
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
            "  replica {} on {}: {} executed, {} dissents, {}{snapshot}",
            r.index, r.chunkserver, r.executed, r.dissents, r.state
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
