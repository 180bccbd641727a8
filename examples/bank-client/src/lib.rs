//! A plain gRPC client of the example bank: the code tonic generates from
//! `examples/bank/proto/bank.proto`, nothing else. It works the same against `cairn-bank`'s
//! front door (voted, replicated) and against `cairn-bank serve-direct`.
//!
//! # Layout
//! - [`pb`]: the generated `bank.v1` messages and `BankClient`.

/// The generated `bank.v1` code (client side).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("bank.v1");
}
