//! `cairn-bank bench`: N mixed calls (deposit, transfer, balance on each caller's own two
//! accounts, opened first) from C concurrent callers over one HTTP/2 connection, against a
//! front door (voted) or `serve-direct` (plain tonic). Prints calls/s, p50/p99 latency and the
//! number of calls that failed.

use std::time::{Duration, Instant};

use clap::Parser;
use rand::RngCore;
use serde_json::json;
use tonic::transport::Channel;

use crate::pb::bank_client::BankClient;
use crate::pb::{BalanceRequest, DepositRequest, OpenRequest, TransferRequest};

/// `cairn-bank bench`.
#[derive(Parser, Debug)]
#[command(name = "cairn-bank bench")]
pub struct BenchArgs {
    /// A front door's address (voted calls).
    #[arg(long, conflicts_with = "direct", required_unless_present = "direct")]
    front_door: Option<String>,
    /// A `cairn-bank serve-direct` address (plain tonic, no replication).
    #[arg(long)]
    direct: Option<String>,
    /// Calls in all (the opens of each caller's two accounts included).
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// Calls completed per second of the run.
    pub calls_per_sec: f64,
    /// Median latency of a call, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Calls that failed.
    pub errors: u64,
}

/// Runs `cairn-bank bench ARGS…` (`argv` starts with the program name, then `bench`).
pub fn main(argv: Vec<String>) -> anyhow::Result<()> {
    let args =
        BenchArgs::parse_from(std::iter::once(argv[0].clone()).chain(argv.into_iter().skip(2)));
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    let addr = args
        .front_door
        .clone()
        .or(args.direct.clone())
        .expect("clap requires one");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&addr, args.calls, args.concurrency))?;
    if args.json {
        println!(
            "{}",
            json!({
                "calls_per_sec": result.calls_per_sec,
                "p50_us": result.p50_us,
                "p99_us": result.p99_us,
                "errors": result.errors,
            })
        );
    } else {
        println!(
            "{} calls at concurrency {}: {:.0} calls/s, p50 {} µs, p99 {} µs, {} errors",
            args.calls,
            args.concurrency,
            result.calls_per_sec,
            result.p50_us,
            result.p99_us,
            result.errors
        );
    }
    Ok(())
}

/// `calls` mixed calls from `concurrency` callers against the bank at `addr`.
pub async fn run(addr: &str, calls: u64, concurrency: u64) -> anyhow::Result<BenchResult> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let run_id = rand::rng().next_u64();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..concurrency {
        let share = calls / concurrency + u64::from(caller < calls % concurrency);
        let client = BankClient::new(channel.clone());
        tasks.push(tokio::spawn(caller_run(client, run_id, caller, share)));
    }
    let mut latencies = Vec::with_capacity(calls as usize);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_micros() as u64
    };
    Ok(BenchResult {
        calls_per_sec: latencies.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors,
    })
}

/// One caller: opens its two accounts, then deposits, transfers and reads balances in turn.
async fn caller_run(
    mut bank: BankClient<Channel>,
    run_id: u64,
    caller: u64,
    calls: u64,
) -> (Vec<Duration>, u64) {
    let a = format!("bench-{run_id:016x}-{caller}-a");
    let b = format!("bench-{run_id:016x}-{caller}-b");
    let mut latencies = Vec::with_capacity(calls as usize);
    let mut errors = 0;
    for i in 0..calls {
        let start = Instant::now();
        let ok = match i {
            0 => bank
                .open(OpenRequest {
                    account: a.clone(),
                    initial: 1_000_000,
                })
                .await
                .is_ok(),
            1 => bank
                .open(OpenRequest {
                    account: b.clone(),
                    initial: 0,
                })
                .await
                .is_ok(),
            _ => match i % 3 {
                0 => bank
                    .deposit(DepositRequest {
                        account: a.clone(),
                        amount: 1,
                    })
                    .await
                    .is_ok(),
                1 => bank
                    .transfer(TransferRequest {
                        from: a.clone(),
                        to: b.clone(),
                        amount: 1,
                    })
                    .await
                    .is_ok(),
                _ => bank
                    .balance(BalanceRequest { account: b.clone() })
                    .await
                    .is_ok(),
            },
        };
        latencies.push(start.elapsed());
        errors += u64::from(!ok);
    }
    (latencies, errors)
}
