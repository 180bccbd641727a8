//! `cairn`: every Cairn role and tool in one binary. This file only parses arguments and
//! dispatches; each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod append;
mod bench_cluster;
mod bench_store;
mod certs;
mod chunkserver;
mod cluster;
mod exec;
mod fsck;
mod inspect;
mod local;
mod logging;
mod logs;
mod master;
mod replay;
mod serve;
mod status;

/// What `cairn --version` prints: the version and the commit it was built from, and a warning
/// if this binary has the test-only fault injection (cargo feature `test-faults`; the
/// multi-process tests look for the words `(test-faults:` in it).
const VERSION: &str = if cairn_chunkserver::TEST_FAULTS && cairn_master::TEST_FAULTS {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("CAIRN_COMMIT"),
        ") (test-faults: hidden fault-injection flags; never for real data)"
    )
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("CAIRN_COMMIT"),
        ")"
    )
};

/// The words in `cairn --version` of a binary built with the feature `test-faults`.
#[cfg(test)]
const TEST_FAULTS_MARK: &str = "(test-faults:";

/// Cairn, a GFS-style append-only record store.
#[derive(Parser, Debug)]
#[command(name = "cairn", version = VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr are written: text, or json (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = logging::LogFormat::Text,
        env = "CAIRN_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Verify a chunk file offline (a bad final range counts as a torn tail) and print it.
    Inspect(inspect::InspectArgs),
    /// Run a chunkserver: store replicas under --data and serve them.
    Chunkserver(serve::RoleArgs<cairn_chunkserver::Args>),
    /// Run the master: logs, chunk metadata and placement; its operation log lives under --data.
    Master(serve::RoleArgs<cairn_master::Args>),
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
    /// Delete a log: its metadata at once, its chunks' replicas on the chunkservers after.
    Rm(logs::RmArgs),
    /// Check every replica of every chunk of a log; report corrupt ones to the master.
    Fsck(fsck::FsckArgs),
    /// Show the cluster: chunkservers, logs, under-replicated and corrupt chunks, repairs.
    Status(status::StatusArgs),
    /// Make the cluster's TLS files: a CA and a certificate per role (`certs init DIR`).
    Certs(certs::CertsArgs),
    /// Measure a running cluster (--log LOG …), or parts of Cairn on this machine (`store`).
    Bench(BenchArgs),
    /// The execution layer: create a hosted service's logs, list services, show one's status.
    #[command(subcommand)]
    Exec(exec::ExecCommand),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Whether this command runs a server (master, chunkserver, a local cluster), as opposed
    /// to a tool whose output may go into a pipe.
    fn is_server(&self) -> bool {
        matches!(
            self,
            Command::Chunkserver(_) | Command::Master(_) | Command::Local(_)
        )
    }
}

/// Makes a tool whose reader went away (`cairn fsck LOG | head`) end quietly, as Unix tools do,
/// instead of panicking in `println!`: a panic from printing to a closed stdout ends the
/// process by SIGPIPE, as if the signal had not been ignored. Only stdout: SIGPIPE itself
/// stays ignored (Rust's default), so a network peer that closes a connection while a tool
/// writes to it is an error the tool reports, not a silent death (giving SIGPIPE its default
/// action, as a first version of this did, killed `cairn ls` without a word when a TLS server
/// refused its certificate). Servers keep the default hook.
fn end_quietly_on_a_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            // SAFETY: signal(2) with a valid signal and SIG_DFL, then raise(3): the process
            // ends here, by SIGPIPE.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
        }
        report(info);
    }));
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
    logging::set_format(cli.log_format);
    if !cli.command.is_server() {
        end_quietly_on_a_closed_pipe();
    }
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
        Command::Rm(args) => logs::rm(args),
        Command::Fsck(args) => fsck::run(args),
        Command::Status(args) => status::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Bench(BenchArgs {
            command: Some(Bench::Store(args)),
            ..
        }) => bench_store::run(args),
        Command::Bench(BenchArgs {
            command: None,
            cluster,
        }) => bench_cluster::run(cluster),
        Command::Exec(command) => exec::run(command),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "cairn", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every hidden test flag of `cairn chunkserver`, with a value.
    const CHUNKSERVER_TEST_FLAGS: [&[&str]; 5] = [
        &["--test-power-cut"],
        &["--test-abort-before-forward-after", "3"],
        &["--test-fail-fsync-after", "3"],
        &["--test-disk-full-after-bytes", "4096"],
        &["--test-fail-reads-of", "00000000000000ff"],
    ];

    #[test]
    fn test_fault_flags_exist_only_in_a_build_with_the_test_faults_feature() {
        // Proves: without the feature `test-faults` (`cargo test -p cairn-cli`, a release
        // build) `cairn chunkserver` refuses every hidden test flag as unknown and `--version`
        // says nothing of test faults; with it (`cargo test --workspace`) every flag parses and
        // `--version` carries the mark the multi-process tests look for.
        let with = cairn_chunkserver::TEST_FAULTS;
        let mut accepted = 0;
        for flag in CHUNKSERVER_TEST_FLAGS {
            let argv = ["cairn", "chunkserver", "--data", "/tmp/x"]
                .iter()
                .chain(flag);
            match Cli::try_parse_from(argv) {
                Ok(_) => accepted += 1,
                Err(e) => {
                    assert!(!with, "{flag:?}: {e}");
                    assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{e}");
                }
            }
        }
        assert_eq!(
            accepted,
            if with {
                CHUNKSERVER_TEST_FLAGS.len()
            } else {
                0
            }
        );
        let version = Cli::try_parse_from(["cairn", "--version"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            version.contains(TEST_FAULTS_MARK),
            with && cairn_master::TEST_FAULTS,
            "{version}"
        );
    }
}
