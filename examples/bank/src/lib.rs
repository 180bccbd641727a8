//! The example service for Cairn's execution layer: a bank written as an ordinary tonic
//! service. Nothing in it knows about replication; it only keeps the determinism contract
//! (`cairn_exec`): ordered maps, no clock, the winner of a claim named by the request id from
//! [`cairn_exec::Context`].
//!
//! The bank implements [`cairn_exec::Snapshot`], so its replicas recover from a snapshot
//! instead of re-running every input (`cairn-bank` is hosted with
//! [`cairn_exec::main_with_snapshots`]).
//!
//! # Snapshot layout, version 1
//! All integers little-endian; a string is a u32 byte length then its UTF-8 bytes.
//! - u8 version = 1;
//! - u64 number of accounts, then each account in name order (byte-wise ascending, as the
//!   `BTreeMap` keeps them): name (string), balance (u64);
//! - u64 number of claims, then each claim in name order: name, claimant, request id (strings).
//!
//! The layout has one encoding per state (ordered maps, fixed-width integers), so replicas
//! with equal states write equal bytes. A restore refuses anything else: another version,
//! names out of order or repeated, a cut or trailing byte, a string that is not UTF-8.
//!
//! # Layout
//! - [`pb`]: the generated `bank.v1` messages, server and client.
//! - [`Bank`]: the service: accounts and claims in memory.
//! - [`mod@snapshot`]: the bank's snapshot encoding (above) and its [`cairn_exec::Snapshot`].
//! - [`mod@bench`]: `cairn-bank bench`, mixed calls from C concurrent callers against a front door
//!   or a direct server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tonic::{Request, Response, Status};

pub mod bench;
pub mod snapshot;

/// The generated `bank.v1` code (server and client).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("bank.v1");
}

use pb::bank_server::BankServer;
use pb::*;

/// A claim's winner.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    claimant: String,
    request_id: String,
}

/// The bank's state: balances and claims, by name, in order.
#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    accounts: BTreeMap<String, u64>,
    claims: BTreeMap<String, Claim>,
}

impl State {
    /// blake3 over accounts then claims, in name order, each string length-prefixed.
    fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        let mut put = |s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        for (name, balance) in &self.accounts {
            put(name);
            put(&balance.to_string());
        }
        put("claims");
        for (name, claim) in &self.claims {
            put(name);
            put(&claim.claimant);
            put(&claim.request_id);
        }
        *h.finalize().as_bytes()
    }
}

/// Test inputs of the example only, to show the execution layer's query-of-death handling:
/// `Open` of the account [`SPIN_FOREVER`] loops forever (a runaway handler, killed at its
/// deadline), of [`CRASH_NOW`] aborts the process (a crash), and of [`CRASH_UNLESS_REPLICA_0`]
/// aborts on every replica but one (test builds only). A real service has none of them.
fn pathological(account: &str) {
    if account == SPIN_FOREVER {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    if account == CRASH_NOW {
        std::process::abort();
    }
    // Only where the replica says which it is (a test build of the execution layer): every
    // replica but replica 0 crashes, so replica 0 applies an input that is then quarantined.
    if account == CRASH_UNLESS_REPLICA_0
        && std::env::var(cairn_exec::test_faults::WORKER_REPLICA_ENV).is_ok_and(|r| r != "0")
    {
        std::process::abort();
    }
}

/// The account name whose `Open` never returns (a test input of the example).
pub const SPIN_FOREVER: &str = "spin-forever";
/// The account name whose `Open` aborts the worker process (a test input of the example).
pub const CRASH_NOW: &str = "crash-now";
/// The account name whose `Open` aborts the worker process of every replica but replica 0, in
/// a test build of the execution layer (a test input of the example: a nondeterministic crash).
pub const CRASH_UNLESS_REPLICA_0: &str = "crash-unless-replica-0";

/// The bank: accounts and claims in memory. Clones share the state.
#[derive(Clone, Debug, Default)]
pub struct Bank {
    state: Arc<Mutex<State>>,
}

impl Bank {
    /// The generated server around a fresh, empty bank.
    pub fn server() -> BankServer<Bank> {
        BankServer::new(Bank::default())
    }

    /// A fresh, empty bank's generated server and the bank itself (its state shared, for
    /// snapshots): what `cairn-bank` hosts with [`cairn_exec::main_with_snapshots`].
    pub fn server_with_snapshots() -> (BankServer<Bank>, Bank) {
        let bank = Bank::default();
        (BankServer::new(bank.clone()), bank)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unknown(account: &str) -> Status {
    Status::not_found(format!("no account {account:?}"))
}

#[tonic::async_trait]
impl pb::bank_server::Bank for Bank {
    async fn open(&self, request: Request<OpenRequest>) -> Result<Response<BalanceReply>, Status> {
        let OpenRequest { account, initial } = request.into_inner();
        pathological(&account);
        let mut state = self.state();
        if state.accounts.contains_key(&account) {
            return Err(Status::already_exists(format!(
                "account {account:?} is open"
            )));
        }
        state.accounts.insert(account.clone(), initial);
        Ok(Response::new(BalanceReply {
            account,
            balance: initial,
        }))
    }

    async fn deposit(
        &self,
        request: Request<DepositRequest>,
    ) -> Result<Response<BalanceReply>, Status> {
        let DepositRequest { account, amount } = request.into_inner();
        let mut state = self.state();
        let balance = state
            .accounts
            .get_mut(&account)
            .ok_or_else(|| unknown(&account))?;
        *balance = balance
            .checked_add(amount)
            .ok_or_else(|| Status::out_of_range("the balance would overflow"))?;
        let balance = *balance;
        Ok(Response::new(BalanceReply { account, balance }))
    }

    async fn transfer(
        &self,
        request: Request<TransferRequest>,
    ) -> Result<Response<TransferReply>, Status> {
        let TransferRequest { from, to, amount } = request.into_inner();
        let mut state = self.state();
        let from_balance = *state.accounts.get(&from).ok_or_else(|| unknown(&from))?;
        let to_balance = *state.accounts.get(&to).ok_or_else(|| unknown(&to))?;
        if from_balance < amount {
            return Err(Status::failed_precondition(format!(
                "account {from:?} holds {from_balance}, less than {amount}"
            )));
        }
        if from == to {
            return Ok(Response::new(TransferReply {
                from_balance,
                to_balance,
            }));
        }
        let to_after = to_balance
            .checked_add(amount)
            .ok_or_else(|| Status::out_of_range("the balance would overflow"))?;
        state.accounts.insert(from, from_balance - amount);
        state.accounts.insert(to, to_after);
        Ok(Response::new(TransferReply {
            from_balance: from_balance - amount,
            to_balance: to_after,
        }))
    }

    async fn balance(
        &self,
        request: Request<BalanceRequest>,
    ) -> Result<Response<BalanceReply>, Status> {
        let BalanceRequest { account } = request.into_inner();
        let balance = *self
            .state()
            .accounts
            .get(&account)
            .ok_or_else(|| unknown(&account))?;
        Ok(Response::new(BalanceReply { account, balance }))
    }

    async fn claim(&self, request: Request<ClaimRequest>) -> Result<Response<ClaimReply>, Status> {
        let request_id = cairn_exec::Context::of(&request)
            .map(|c| c.request_id_hex())
            .unwrap_or_default();
        let ClaimRequest { name, claimant } = request.into_inner();
        let mut state = self.state();
        if let Some(winner) = state.claims.get(&name) {
            return Err(Status::already_exists(format!(
                "{name:?} was claimed by request {} ({:?})",
                winner.request_id, winner.claimant
            )));
        }
        state.claims.insert(
            name.clone(),
            Claim {
                claimant: claimant.clone(),
                request_id: request_id.clone(),
            },
        );
        Ok(Response::new(ClaimReply {
            name,
            claimant,
            request_id,
        }))
    }

    async fn state_digest(
        &self,
        _: Request<StateDigestRequest>,
    ) -> Result<Response<StateDigestReply>, Status> {
        let state = self.state();
        Ok(Response::new(StateDigestReply {
            digest: state.digest().to_vec(),
            total: state.accounts.values().sum(),
            accounts: state.accounts.len() as u64,
        }))
    }
}
