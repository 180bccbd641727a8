//! The mixed workload of the multi-process tests: opens, deposits, transfers and balances on a
//! few accounts, from a seeded generator, each call's request id and outcome kept for checking
//! against a sequential execution of the input log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bank_client::pb::bank_client::BankClient;
use bank_client::pb::{BalanceRequest, DepositRequest, OpenRequest, TransferRequest};
use bytes::Bytes;
use tonic::transport::Channel;

use super::{Got, got};

/// Accounts the workload uses: `acct-0` … `acct-15`.
pub(crate) const ACCOUNTS: u64 = 16;

/// A tiny deterministic generator (SplitMix64) for the workload.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One caller's share of the mixed workload, calls made while `keep_going(calls so far)`:
/// every call's request id and outcome, and the money it put in (successful opens and
/// deposits).
pub(crate) async fn mixed_calls(
    mut bank: BankClient<Channel>,
    seed: u64,
    keep_going: impl Fn(usize) -> bool,
) -> CallerLog {
    let mut rng = Rng(seed);
    let mut log = Vec::new();
    let mut money_in = 0;
    let account = |rng: &mut Rng| format!("acct-{}", rng.below(ACCOUNTS));
    while keep_going(log.len()) {
        let roll = rng.below(100);
        let (id, outcome) = if roll < 10 {
            let initial = 100 + rng.below(900);
            let r = got(bank
                .open(OpenRequest {
                    account: account(&mut rng),
                    initial,
                })
                .await);
            if r.1.is_ok() {
                money_in += initial;
            }
            r
        } else if roll < 40 {
            let amount = 1 + rng.below(100);
            let r = got(bank
                .deposit(DepositRequest {
                    account: account(&mut rng),
                    amount,
                })
                .await);
            if r.1.is_ok() {
                money_in += amount;
            }
            r
        } else if roll < 70 {
            got(bank
                .transfer(TransferRequest {
                    from: account(&mut rng),
                    to: account(&mut rng),
                    amount: 1 + rng.below(300),
                })
                .await)
        } else {
            got(bank
                .balance(BalanceRequest {
                    account: account(&mut rng),
                })
                .await)
        };
        log.push((id, outcome));
    }
    (log, money_in)
}

/// One caller's calls (request id and outcome, in order) and the money it put in.
type CallerLog = (Vec<(Bytes, Got)>, u64);

/// Callers making the mixed workload until told to stop.
pub(crate) struct Callers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<CallerLog>>,
}

impl Callers {
    /// Starts `count` callers on `channel`, caller `c` seeded with `seed + c`.
    pub(crate) fn start(channel: &Channel, count: u64, seed: u64) -> Callers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..count)
            .map(|c| {
                let stop = stop.clone();
                tokio::spawn(mixed_calls(
                    BankClient::new(channel.clone()),
                    seed + c,
                    move |_| !stop.load(Ordering::Relaxed),
                ))
            })
            .collect();
        Callers { stop, tasks }
    }

    /// Stops them once their call in flight ends; each caller's calls in order.
    pub(crate) async fn stop(self) -> Vec<Vec<(Bytes, Got)>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.push(task.await.expect("a caller panicked").0);
        }
        all
    }
}
