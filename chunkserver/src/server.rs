//! The chunkserver's entry points: [`serve_with`] opens the store, starts the heartbeat loop and
//! runs the gRPC server on any transport (the connections it is handed, a
//! [`Connector`] for the calls it makes) until `shutdown` resolves; [`serve`] is the TCP wiring
//! the binaries and tests use.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_metrics::{Metrics, RpcLayer};
use cairn_proto::GRPC_MESSAGE_BYTES_MAX;
use cairn_proto::net::tls::{ServerTls, guard_of};
use cairn_proto::net::{Connector, Incoming, TcpConnector};
use cairn_proto::v1::chunkserver_server::ChunkserverServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tracing::info;

use crate::config::{Config, split_host_port};
use crate::error::{Error, Result};
use crate::heartbeat::Heartbeat;
use crate::master_link::GrpcMaster;
use crate::metrics::ChunkserverMetrics;
use crate::node::Node;
use crate::peers::GrpcPeers;
use crate::service::ChunkserverService;
use crate::store::schedule::Scheduling;
use crate::store::server_disk::ServerDisk;
use crate::store::{ChunkStore, Store, StoreOptions};
use cairn_files::Blocking;

/// What a chunkserver is built from besides its configuration: the parts a test or a simulation
/// swaps. [`Seams::production`] is what `cairn chunkserver` runs on.
pub struct Seams {
    /// Makes every channel to peers and the master.
    pub connector: Arc<dyn Connector>,
    /// The store's disk.
    pub disk: ServerDisk,
    /// Where the store's writers run.
    pub writers: Scheduling,
    /// Where blocking store work runs.
    pub blocking: Blocking,
    /// The process's metrics registry, which the chunkserver registers in (labelled with its
    /// advertised address); served by whoever runs the process (`--http`).
    pub metrics: Metrics,
    /// TLS of its server (callers present a certificate of the cluster's CA or a token, and
    /// each call is checked against the caller's grant: `cairn_proto::net::auth`); `None`:
    /// plaintext. Its outgoing channels'
    /// TLS is the process's (`cairn_proto::net::tls::use_tls`).
    pub tls: Option<Arc<ServerTls>>,
}

impl Seams {
    /// The OS's TCP, the disk `config` asks for (the real file system, or a test mode), writer
    /// threads and tokio's blocking pool.
    pub fn production(config: &Config) -> Seams {
        Seams {
            connector: TcpConnector::shared(),
            disk: config.test_faults.disk(),
            writers: StoreOptions::default().writers,
            blocking: Blocking::Threads,
            metrics: Metrics::default(),
            tls: None,
        }
    }
}

/// Serves the chunkserver on `listener` until `shutdown` resolves: [`serve_with`] over the
/// operating system's TCP, with the advertised address's port 0 replaced by the listener's
/// (`seams`: usually [`Seams::production`], with the process's metrics and TLS).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    seams: Seams,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let local = listener.local_addr().map_err(|error| Error::Io {
        op: "local address of",
        path: config.listen.clone().into(),
        error,
    })?;
    let config = Config {
        advertise: advertised(&config.advertise, local.port()),
        ..config
    };
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_with(config, incoming, seams, shutdown).await
}

/// Serves the chunkserver on the connections `incoming` yields until `shutdown` resolves, built
/// from `seams`: every outgoing call (to peers, to the master) through its connector, the store
/// on its disk with its writer scheduling, blocking work where it says.
///
/// Opens (and recovers) the store under `config.data_dir`, registers with the master and
/// heartbeats in the background, scrubs sealed replicas in the background (`config.scrub()`) (an unreachable master is retried, never fatal), and answers
/// the `cairn.v1.Chunkserver` RPCs. On shutdown, long-poll reads return at once, in-flight
/// requests finish, and the store is closed (its writer threads stopped) before this returns,
/// unless a request still holds it. Errors: a bad configuration, a store that cannot be
/// opened, or a failed server.
pub async fn serve_with(
    config: Config,
    incoming: impl Incoming,
    seams: Seams,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let advertise = config.advertise.clone();
    let data_dir = config.data_dir.clone();
    config.test_faults.warn(&config.data_dir);
    let Seams {
        connector,
        disk,
        writers,
        blocking,
        metrics,
        tls,
    } = seams;
    let options = StoreOptions {
        writers,
        ..StoreOptions::default()
    };
    let store = blocking
        .run(move || Store::open_with(&data_dir, disk, options))
        .await?;
    let store = Arc::new(store);
    let timeout = config.rpc_timeout();
    info!(listen = %config.listen, advertise = %advertise, master = %config.master, data = %config.data_dir.display(), replicas = store.list().len(), "chunkserver starting");

    let (stop_tx, stop_rx) = watch::channel(false);
    let node = Node::new(
        store.clone(),
        Arc::new(GrpcPeers::new(connector.clone(), timeout)),
        timeout,
        config.replicate_bytes_per_sec,
        stop_rx,
    )
    .with_address(advertise.clone())
    .with_blocking(blocking);
    #[cfg(feature = "test-faults")]
    let node = node.with_test_abort_before_forward(config.test_faults.abort_before_forward_after);
    let node = Arc::new(node);
    let heartbeat = Heartbeat {
        node: node.clone(),
        master: Arc::new(GrpcMaster::new(connector.clone(), &config.master, timeout)?),
        address: advertise.clone(),
        data_dir: config.data_dir.clone(),
        adopt_cluster_id: config.adopt_cluster_id,
        period: Duration::from_millis(config.heartbeat_ms),
    };
    let heartbeat = tokio::spawn(heartbeat.run());
    let scrub = crate::scrub::ScrubConfig {
        blocking,
        ..config.scrub()
    };
    let scrubber = tokio::spawn(crate::scrub::run(store.clone(), scrub));

    let counts = ChunkserverMetrics::register(&metrics, &advertise, &store);
    let service = ChunkserverServer::new(ChunkserverService::new(node.clone(), counts))
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let shutdown = async move {
        shutdown.await;
        info!("chunkserver shutting down");
        // Long polls return now, so the graceful shutdown does not wait for them.
        let _ = stop_tx.send(true);
    };
    let mut server = cairn_proto::net::server();
    if let Some(tls) = &tls {
        server = server.tls_config(tls.config())?;
    }
    let served = server
        .layer(RpcLayer::new(&metrics, "chunkserver", &advertise))
        .layer(guard_of(tls.as_deref()))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    heartbeat.abort();
    let _ = heartbeat.await;
    scrubber.abort();
    let _ = scrubber.await;
    close(node, timeout, blocking).await;
    info!(advertise = %advertise, "chunkserver stopped");
    served.map_err(Error::from)
}

/// Drops the node (closing the store) once replication tasks let go of it, bounded by
/// `timeout`. Dropping waits for the store's writers, so it runs as blocking work.
async fn close(node: Arc<Node>, timeout: Duration, blocking: Blocking) {
    let deadline = tokio::time::Instant::now() + timeout;
    while Arc::strong_count(&node) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    blocking.run(move || drop(node)).await;
}

/// The advertised address, with a port of 0 replaced by the listener's.
fn advertised(advertise: &str, port: u16) -> String {
    match split_host_port(advertise) {
        Some((host, 0)) => format!("{host}:{port}"),
        _ => advertise.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_replaced_by_the_listener_port() {
        assert_eq!(advertised("127.0.0.1:0", 4321), "127.0.0.1:4321");
        assert_eq!(advertised("cs1:7001", 4321), "cs1:7001");
    }
}
