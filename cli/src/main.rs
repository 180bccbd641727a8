//! `cairn`: every Cairn role and tool in one binary. This file only parses arguments and
//! dispatches; each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_store;
mod chunkserver;
mod inspect;
mod master;
mod serve;

/// Cairn, a GFS-style append-only record store.
#[derive(Parser, Debug)]
#[command(name = "cairn", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Verify a chunk file offline (a bad final range counts as a torn tail) and print it.
    Inspect(inspect::InspectArgs),
    /// Run a chunkserver: store replicas under --data and serve them.
    Chunkserver(cairn_chunkserver::Args),
    /// Run the master: logs, chunk metadata and placement; its operation log lives under --data.
    Master(cairn_master::Args),
    /// Measure parts of Cairn on this machine.
    #[command(subcommand)]
    Bench(Bench),
}

/// The benchmarks.
#[derive(Subcommand, Debug)]
enum Bench {
    /// Append throughput, fsyncs and latency of the chunk store on one disk.
    Store(bench_store::StoreArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Print help and usage errors ourselves: clap would exit with 2, which `cairn`
            // reserves for "corrupt".
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match &cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Chunkserver(args) => chunkserver::run(args),
        Command::Master(args) => master::run(args),
        Command::Bench(Bench::Store(args)) => bench_store::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
