//! Cairn's execution layer: an ordinary tonic service runs on n = 2f+1 business replicas,
//! ordered by a Cairn log; every replica's outputs are records, and a caller gets the answer
//! f+1 replicas agree on.
//!
//! # Hosting a service
//! Write an ordinary tonic service and hand a factory of its generated server to [`main`]:
//!
//! ```text
//! fn main() -> std::process::ExitCode {
//!     cairn_exec::main(|| BankServer::new(Bank::default()))
//! }
//! ```
//!
//! The binary then runs as `front-door`, `replica`, `local` (a whole cluster on this machine),
//! `serve-direct` (plain tonic, no replication) or, started by a replica, `worker`. Callers use
//! the plain generated client of the service against a front door; the request id comes back
//! in the `cairn-request-id` metadata and a caller may send `cairn-idempotency-key`.
//!
//! # Determinism contract
//! Every replica runs every input, in log order, in its own process; the vote compares their
//! outcomes byte for byte. So a handler must compute its response and state only from its
//! request, its service's state and the request's [`Context`]:
//! - no wall clock: time is [`Context::logical_time_ms`];
//! - no unseeded randomness: seed any generator from [`Context::seed`];
//! - no iteration order of hash maps (or anything else unordered) into a response or into the
//!   order of state changes; use ordered maps or sort first;
//! - canonical encodings (prost's encoding of a given message is fixed);
//! - no I/O whose answer may differ between replicas.
//!
//! # Snapshots (optional)
//! A replica rebuilds its state by re-running its inputs in order. A service that implements
//! [`Snapshot`] (its whole state as deterministic bytes, and back) and is hosted with
//! [`main_with_snapshots`] lets each replica store a snapshot every `--snapshot-every` inputs
//! in its output log; a restarted replica restores the newest one and re-runs only the inputs
//! after it.
//!
//! # Layout
//! - [`records`]: the record messages (INPUT, OUTPUT, VOTE, SNAPSHOT, QUARANTINE, PENDING,
//!   LIFT) and worker frames, the input fingerprint, the outcome digest and the CRASH/TIMEOUT
//!   codes.
//! - [`snapshot`]: [`Snapshot`], the optional trait of a service whose state can be saved and
//!   restored.
//! - [`snapshot_records`]: a snapshot split into SNAPSHOT records and put back together.
//! - [`snapshot_writer`]: a replica's newest snapshot appended to its output log while the
//!   worker runs on.
//! - [`context`]: [`Context`], the seed and logical time a handler gets.
//! - [`deadline`]: a method's handler deadline and the front door's wait for a verdict.
//! - [`codec`]: [`BytesCodec`], tonic's `Codec` passing message bytes through undecoded.
//! - [`call`]: [`HostedService`] and [`call::call`], one recorded request through a generated
//!   server's `tower::Service`.
//! - [`pipe`]: length-prefixed prost frames over a pipe (and snapshots cut into frames).
//! - [`worker`]: the worker process's loop: calls, snapshots and restores.
//! - [`supervisor`]: [`Worker`], a replica's handle on its worker process.
//! - [`recovery`]: what a replica starts from: its output log replayed, its newest snapshot
//!   restored into a fresh worker.
//! - [`service_logs`]: a service's log names and their creation (output logs placed beside
//!   their replicas).
//! - [`lost_outputs`]: a replica's output log whose chunks are lost for good (its chunkserver
//!   lost its disk), found and made again.
//! - [`grouped`]: [`grouped::GroupedAppender`], records handed to an appender in groups so
//!   that a burst travels in one batch (the front door's INPUTs and VOTEs).
//! - [`vote`]: [`vote::Tally`], f+1 equal digests of n = 2f+1 replicas make a verdict.
//! - [`verdicts`]: a replica's view of the vote log: the verdicts and quarantines it must
//!   follow, and its own dissents in a row.
//! - [`replica`]: a replica's loop: tail the inputs, run them in the worker, append OUTPUTs
//!   and, every `--snapshot-every` inputs, SNAPSHOTs.
//! - [`front_door`]: the generic gRPC endpoint: INPUT, wait for the vote, answer, VOTE.
//! - [`status`]: a service's replicas, counts and storage, from its logs.
//! - [`quarantine`]: the quarantined inputs (QUARANTINE without a later LIFT) and lifting one.
//! - [`timeline`]: one request's history from its service's logs.
//! - [`test_faults`]: with the feature `test-faults` only, a replica that answers wrongly.
//! - [`entry`]: [`main`] and [`main_with_snapshots`], a service binary's entry points: its
//!   roles by argument.

pub mod call;
pub mod codec;
pub mod context;
pub mod deadline;
pub mod entry;
pub mod front_door;
pub mod grouped;
pub mod lost_outputs;
pub mod metrics;
pub mod pipe;
pub mod quarantine;
pub mod records;
pub mod recovery;
pub mod replica;
pub mod service_logs;
pub mod snapshot;
pub mod snapshot_records;
pub mod snapshot_writer;
pub mod status;
pub mod supervisor;
pub mod test_faults;
pub mod timeline;
pub mod verdicts;
pub mod vote;
pub mod worker;

pub use call::HostedService;
pub use codec::BytesCodec;
pub use context::Context;
pub use entry::{main, main_with_snapshots};
pub use snapshot::Snapshot;
pub use supervisor::Worker;
