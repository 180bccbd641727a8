//! `cairn`: every Cairn role and tool in one binary. This file only parses arguments and
//! dispatches; each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;

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
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
