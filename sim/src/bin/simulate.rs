//! Runs one seed of the cluster simulator in this process and prints its report and history
//! hash: `cargo run -p cairn-sim --bin simulate -- SEED`. Exits 1 when the checker found a
//! problem or nothing was acknowledged. Each seed in a fresh process replays bit for bit; the
//! suite runs every seed through this binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(seed) = std::env::args().nth(1).and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("usage: simulate SEED");
        return ExitCode::from(2);
    };
    let outcome = cairn_sim::run(cairn_sim::SimConfig::new(seed));
    println!("{}", outcome.report(seed));
    println!("history hash: {:016x}", outcome.history_hash);
    if outcome.acked == 0 && outcome.error.is_none() {
        println!("seed {seed}: nothing acknowledged: the workload did not run");
        return ExitCode::FAILURE;
    }
    if outcome.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
