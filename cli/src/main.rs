//! `cairn`: every Cairn role and tool in one binary. This file only parses arguments and
//! dispatches; each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod append;
mod bench_cluster;
mod bench_store;
mod chunkserver;
mod cluster;
mod dir_lock;
mod fsck;
mod inspect;
mod local;
mod logs;
mod master;
mod replay;
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
    /// Run a master and chunkservers in this process on 127.0.0.1 until Ctrl-C.
    Local(local::LocalArgs),
    /// Create a log.
    Create(logs::CreateArgs),
    /// Append each input line (newline removed) as one record.
    Append(append::AppendArgs),
    /// Print every record of a log, one per line, and a summary on stderr.
    Replay(replay::ReplayArgs),
    /// Print a log's records, then new ones as they are appended, until Ctrl-C.
    Tail(replay::TailArgs),
    /// List logs.
    Ls(logs::LsArgs),
    /// Show a log's chunks.
    Stat(logs::StatArgs),
    /// Check every replica of every chunk of a log; report corrupt ones to the master.
    Fsck(fsck::FsckArgs),
    /// Measure a running cluster (--log LOG …), or parts of Cairn on this machine (`store`).
    Bench(BenchArgs),
}

/// `cairn bench`: the cluster bench with its flags, or a subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchArgs {
    #[command(subcommand)]
    command: Option<Bench>,
    #[command(flatten)]
    cluster: bench_cluster::ClusterArgs,
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
        Command::Local(args) => local::run(args),
        Command::Create(args) => logs::create(args),
        Command::Append(args) => append::run(args),
        Command::Replay(args) => replay::replay(args),
        Command::Tail(args) => replay::tail(args),
        Command::Ls(args) => logs::ls(args),
        Command::Stat(args) => logs::stat(args),
        Command::Fsck(args) => fsck::run(args),
        Command::Bench(BenchArgs {
            command: Some(Bench::Store(args)),
            ..
        }) => bench_store::run(args),
        Command::Bench(BenchArgs {
            command: None,
            cluster,
        }) => bench_cluster::run(cluster),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
