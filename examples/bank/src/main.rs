//! `cairn-bank`: the bank hosted by Cairn's execution layer, with snapshots. Every role (front
//! door, replica, worker, local cluster, plain server) is `cairn_exec::main_with_snapshots`';
//! `cairn-bank bench` is the bank's own load generator.

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("bench") {
        return match cairn_bank::bench::main(argv) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    cairn_exec::main_with_snapshots(cairn_bank::Bank::server_with_snapshots)
}
