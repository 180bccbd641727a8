//! `cairn-bank-plain`: the same bank hosted without snapshots (`cairn_exec::main`), so its
//! replicas rebuild by re-running every input: how a service without the `Snapshot` trait runs,
//! and what the tests check still works.

use std::process::ExitCode;

fn main() -> ExitCode {
    cairn_exec::main(cairn_bank::Bank::server)
}
