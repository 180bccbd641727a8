//! `cairn-bank`: the bank hosted by Cairn's execution layer. Every role (front door, replica,
//! worker, local cluster, plain server) is `cairn_exec::main`'s.

use std::process::ExitCode;

fn main() -> ExitCode {
    cairn_exec::main(cairn_bank::Bank::server)
}
