//! Cairn's master: the namespace of logs, chunk metadata and placement, the one seal path, and
//! the operation log, replicated by Raft, that makes every metadata change durable before it is
//! acknowledged.
//!
//! The master is a library with one entry point, [`serve`], so the `cairn` binary, `cairn local`
//! and tests run the same code.
//!
//! # Layout
//! - [`config`]: the `cairn master` flags and the validated [`Config`].
//! - [`error`]: the master's [`Error`] (mapped to gRPC codes in `service`).
//! - [`limits`]: every bound the master enforces.
//! - `namespace`: log path rules.
//! - `meta`: logs, chunks and the operation-log entries that change them (`Metadata::apply`).
//! - `versions`: the version a chunk starts at and the next one a seal or salvage takes.
//! - `oplog`: the operation log: the leader's queue of entries, the committer that proposes
//!   them to Raft (group commit), and the reading of an older file-based log to move it in.
//! - `raft`: the Raft group of masters (openraft): log store, state machine and snapshots,
//!   peer network, the node's start-up.
//! - `checkpoint`: the JSON encoding of the metadata (in snapshots; the older checkpoint file).
//! - `cluster_id`: the cluster id created with the data directory, checked at registration.
//!   These write only through the [`Seams::disk`] (`cairn_files::Disk`).
//! - [`crash_point`]: the named crash points of `--test-crash-at` (a test-only flag).
//! - `heartbeat`: chunkserver liveness and reported replica locations (not persisted).
//! - `policy`: which replicas are good, readable, garbage or a usable prefix (pure rules).
//! - `placement`: RF distinct live chunkservers, least used first.
//! - `seal`: the seal decision (sealed length, surviving replicas, writer marks); pure.
//! - `repair`: what the repair loop copies, seals and fences, and its failed-copy memory; pure.
//! - `salvage`: which sealed chunks lost every complete replica, and their reseal length; pure.
//! - `fsck`: the answers checkers get (every replica of a log's chunks, corrupt marks).
//! - `chunkserver_api`: the chunkserver RPCs the master makes, as a trait free of gRPC types.
//! - `core`: the RPC behaviour, free of gRPC types: the state and one file per job
//!   - `core::logs`: `CreateLog`, `DeleteLog`, `ListLogs`, `StatLog`;
//!   - `core::writers`: `ResumeWriter` (writer epochs);
//!   - `core::allocate`: `OpenChunk` and chunk allocation;
//!   - `core::seal`: the seal driver (fence, seal, log, next chunk);
//!   - `core::reports`: registrations and heartbeats, reconciled with the metadata;
//!   - `core::fsck`: `ListReplicas` and `ReportCorrupt`;
//!   - `core::repair`: the repair loop's passes and copies;
//!   - `core::salvage`: the salvage driver;
//!   - `core::fake` (tests only): in-memory chunkservers.
//! - `service`: the gRPC boundary, the chunkserver client and `From<Error> for Status`.
//!
//! # Invariants
//! - Every metadata change is an operation-log entry, applied to memory in log order and
//!   committed through Raft (fsynced by a majority of the masters) before the RPC that caused it
//!   is answered. Restart = snapshot + the Raft entries after it; a torn tail is cut, corruption
//!   anywhere else stops the start-up.
//! - Versions only grow and handles are never handed out twice: a seal's new version and a new
//!   chunk are logged before any chunkserver hears of them.
//! - A chunk's sealed length is the longest durable length among the replicas that were fenced
//!   (or the length an interrupted earlier seal already gave one of them), so every
//!   acknowledged record lies below it even if a replica lost part of its tail.
//! - Allocation and sealing are serialised per log; concurrent seal requests get one answer.
//! - The master asks a chunkserver to delete a replica only if its chunk is not in the metadata
//!   (and its removal, if any, is durable), or it is a sealed chunk's replica that is not good
//!   while the chunk has its factor of good ones (`policy::is_garbage`), or a checker marked it
//!   corrupt and a repair copy is about to replace it. Never a good replica, never one of an open
//!   chunk.

use std::future::Future;
use std::sync::Arc;

use cairn_files::{Blocking, FsDisk, SharedDisk, WriteBehindDisk};
use cairn_proto::net::{Connector, Incoming, TcpConnector};
use tonic::transport::server::TcpIncoming;

mod checkpoint;
mod chunkserver_api;
mod cluster_id;
pub mod config;
mod core;
pub mod crash_point;
pub mod error;
mod fsck;
mod heartbeat;
pub mod limits;
mod meta;
mod metrics;
mod namespace;
mod office;
mod oplog;
mod placement;
mod policy;
mod raft;
mod repair;
mod salvage;
mod seal;
mod service;
mod status_page;
mod versions;

pub use config::{Args, Config};
pub use crash_point::{CrashAt, CrashPoint};
pub use error::{Error, Result};

/// Whether this build has the cargo feature `test-faults` (test-only fault injection through
/// hidden `--test-…` flags; never in a release build).
pub const TEST_FAULTS: bool = cfg!(feature = "test-faults");

/// Runs a master on `listener` until `shutdown` completes, then proposes what is queued and
/// stops.
///
/// Start-up loads `config.data_dir` (Raft snapshot and log; an older operation log is moved
/// in) and fails with a clear error if either is damaged beyond a torn tail.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    seams: Seams,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let address = listener.local_addr().map_err(Error::io("listener"))?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_with(config, &address.to_string(), incoming, seams, shutdown).await
}

/// What a master is built from besides its configuration: the parts a test or a simulation
/// swaps. [`Seams::production`] is what `cairn master` runs on.
pub struct Seams {
    /// Makes every channel to chunkservers.
    pub connector: Arc<dyn Connector>,
    /// What the Raft files, snapshots and the cluster id are written through: the real
    /// file system, the power-cut test disk, or an in-memory `cairn_files::FaultyDisk`.
    pub disk: SharedDisk,
    /// Where blocking file work (the Raft log, snapshots, start-up) runs.
    pub blocking: Blocking,
    /// Seeds the master's randomness (a new cluster id, chunk handles, placement ties, Raft
    /// election timeouts; mixed with the operation log's last sequence); `None` draws it from
    /// the OS. A given seed must differ
    /// for every master process: a crash that loses the log's unsynced tail repeats the last
    /// sequence, and the same seed would then hand out handles already handed out.
    pub seed: Option<u64>,
    /// The process's metrics registry: the master registers its metrics and its status page
    /// (`/`) there; served by whoever runs the process (`--http`).
    pub metrics: cairn_metrics::Metrics,
    /// TLS of its server (callers present a certificate of the cluster's CA or a token, and
    /// each call is checked against the caller's grant: `cairn_proto::net::auth`); `None`:
    /// plaintext. Its outgoing channels'
    /// TLS is the process's (`cairn_proto::net::tls::use_tls`).
    pub tls: Option<Arc<cairn_proto::net::tls::ServerTls>>,
}

impl Seams {
    /// The OS's TCP, the real file system (or, in the power-cut test mode, a
    /// [`WriteBehindDisk`] on it), tokio's blocking pool and OS randomness.
    pub fn production(config: &Config) -> Seams {
        let disk = if config.test_power_cut {
            cairn_files::shared(WriteBehindDisk::new())
        } else {
            cairn_files::shared(FsDisk)
        };
        Seams {
            connector: TcpConnector::shared(),
            disk,
            blocking: Blocking::Threads,
            seed: None,
            metrics: cairn_metrics::Metrics::default(),
            tls: None,
        }
    }
}

/// [`serve`] on any transport: the connections `incoming` yields (named `address` in the logs),
/// built from `seams`.
pub async fn serve_with(
    config: Config,
    address: &str,
    incoming: impl Incoming,
    seams: Seams,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let Seams {
        connector,
        disk,
        blocking,
        seed,
        metrics,
        tls,
    } = seams;
    if config.test_power_cut {
        tracing::warn!(
            "TEST MODE: unsynced master writes live in memory (--test-power-cut): a kill loses \
             them as a power cut would; never use this for real data"
        );
    }
    if let Some(at) = config.test_crash_at {
        tracing::warn!(point = %at.point, pass = at.time, "TEST MODE: the master aborts at a crash point (--test-crash-at)");
    }
    let node = raft::node::start(
        &config,
        address,
        disk.clone(),
        blocking,
        connector.clone(),
        seed,
    )
    .await?;
    let applied = node.state.applied();
    let (id_dir, id_disk) = (config.data_dir.clone(), disk.clone());
    let cluster_id = blocking
        .run(move || cluster_id::load_or_create(&*id_disk, &id_dir, seed))
        .await?;
    let office = office::Office::new();
    // A given seed is mixed with how far the operation log has come, so that a restarted master
    // (or a new term's core) given the same seed does not draw the same chunk handles again: a
    // handle it allocated and dropped before the restart is in no metadata and, until the
    // chunkservers report, in no report either, and could otherwise be issued twice. That is
    // not enough when the crash lost the unsynced tail of the log (the position then repeats),
    // so a given seed must differ for every process: the simulator gives each master
    // incarnation its own. Without one, every core draws a random seed.
    let core_raft = node.raft.clone();
    let make_core = move |config: &Config, applied: raft::state_machine::Applied| {
        let seed = match seed {
            Some(s) => s ^ applied.sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            None => core::MasterCore::<service::GrpcChunkservers>::random_seed(),
        };
        let api = service::GrpcChunkservers::new(connector.clone(), config.rpc_timeout);
        Arc::new(core::MasterCore::new(
            config.clone(),
            api,
            applied.meta,
            applied.sequence,
            core_raft.clone(),
            seed,
        ))
    };
    // A group of one leads as soon as it started: serve with its core in office at once.
    let mut cluster = cluster_id;
    if config.peers.len() <= 1 {
        let core = make_core(&config, applied.clone());
        cluster = core.settle_cluster_id(cluster_id).await?;
        office.install(core);
    }
    tracing::info!(%address, logs = applied.meta.logs.len(), chunks = applied.meta.chunks.len(), cluster = %format!("{cluster:016x}"), "master started");
    metrics::register(&metrics, &office);
    status_page::register(&metrics, &office);
    let rpc_counts = cairn_metrics::RpcLayer::new(&metrics, "master", address);
    let leading = tokio::spawn(office::lead(
        office.clone(),
        node.raft.clone(),
        node.state.clone(),
        config,
        cluster_id,
        make_core,
    ));
    let result = service::run(
        office.clone(),
        node.raft.clone(),
        incoming,
        rpc_counts,
        tls,
        shutdown,
    )
    .await;
    leading.abort();
    if let Some(core) = office.vacate() {
        core.close().await;
    }
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "Raft did not stop cleanly");
    }
    tracing::info!(%address, "master stopped");
    result
}
