//! [`LocalCluster`]: a master on `port` and chunkservers on the ports after it, in this
//! process, on 127.0.0.1; each one's data directory is locked ([`crate::dir_lock`]) first.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::dir_lock::{DirLock, lock};

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// Data directory: the master's state in DATA/master, chunkservers' in DATA/cs1, DATA/cs2, ….
    pub data: PathBuf,
    /// Number of chunkservers (1..=16). Logs default to min(3, this) replicas.
    pub chunkservers: u16,
    /// The master's port; chunkservers take the ports after it.
    pub port: u16,
    /// Let chunkservers whose directory holds replicas but no cluster id join the master's
    /// cluster (see `cairn chunkserver --adopt-cluster-id`).
    pub adopt_cluster_id: bool,
}

/// A running cluster. [`LocalCluster::run_until`] stops it.
#[derive(Debug)]
pub struct LocalCluster {
    /// The master's address.
    pub master_addr: String,
    /// The chunkservers' addresses, in port order.
    pub chunkserver_addrs: Vec<String>,
    servers: JoinSet<anyhow::Result<()>>,
    stop: watch::Sender<bool>,
    _locks: Vec<DirLock>,
}

impl LocalCluster {
    /// Locks every role's directory (before any of them reads or writes: a second cluster, or
    /// a `cairn master`/`chunkserver`, on one of them changes nothing), binds every port and
    /// starts the master and the chunkservers.
    pub async fn start(config: &LocalConfig) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with_metrics(config, cairn_metrics::Metrics::default()).await
    }

    /// [`LocalCluster::start`], every role registering its metrics in `metrics` (one registry
    /// for the process: chunkservers' metrics are labelled by address).
    pub async fn start_with_metrics(
        config: &LocalConfig,
        metrics: cairn_metrics::Metrics,
    ) -> anyhow::Result<LocalCluster> {
        anyhow::ensure!(
            (1..=16).contains(&config.chunkservers),
            "--chunkservers must be within 1..=16"
        );
        anyhow::ensure!(
            u32::from(config.port) + u32::from(config.chunkservers) <= u32::from(u16::MAX),
            "--port {} leaves no room for {} chunkserver ports after it",
            config.port,
            config.chunkservers
        );
        let locks = std::iter::once(config.data.join("master"))
            .chain((1..=config.chunkservers).map(|i| config.data.join(format!("cs{i}"))))
            .map(|dir| lock(&dir))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let master_addr = format!("127.0.0.1:{}", config.port);
        let mut master_config = cairn_master::Config::new(config.data.join("master"));
        master_config.listen = master_addr.clone();
        master_config.default_replication = u32::from(config.chunkservers.min(3));
        master_config.validate()?;
        let (stop, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let master_listener = tokio::net::TcpListener::bind(&master_addr)
            .await
            .with_context(|| format!("listen on {master_addr}"))?;
        let mut servers = JoinSet::new();
        servers.spawn({
            let stopped = stopped();
            let metrics = metrics.clone();
            async move {
                let seams = cairn_master::Seams {
                    metrics,
                    ..cairn_master::Seams::production(&master_config)
                };
                cairn_master::serve(master_config, master_listener, seams, stopped)
                    .await
                    .context("master")
            }
        });
        let mut chunkserver_addrs = Vec::new();
        for i in 1..=config.chunkservers {
            let addr = format!("127.0.0.1:{}", config.port + i);
            let cs_config = cairn_chunkserver::Config {
                listen: addr.clone(),
                advertise: addr.clone(),
                master: master_addr.clone(),
                adopt_cluster_id: config.adopt_cluster_id,
                ..cairn_chunkserver::Config::new(config.data.join(format!("cs{i}")))
            };
            cs_config.validate()?;
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listen on {addr}"))?;
            let stopped = stopped();
            let metrics = metrics.clone();
            servers.spawn(async move {
                let seams = cairn_chunkserver::Seams {
                    metrics,
                    ..cairn_chunkserver::Seams::production(&cs_config)
                };
                cairn_chunkserver::serve(cs_config, listener, seams, stopped)
                    .await
                    .with_context(|| format!("chunkserver {i}"))
            });
            chunkserver_addrs.push(addr);
        }
        Ok(LocalCluster {
            master_addr,
            chunkserver_addrs,
            servers,
            stop,
            _locks: locks,
        })
    }

    /// Runs until `shutdown` resolves or a server stops on its own (an error: the others are
    /// stopped too), then stops every server and waits for them.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut result = Ok(());
        tokio::select! {
            _ = shutdown => {}
            Some(done) = self.servers.join_next() => {
                result = match done {
                    Ok(Ok(())) => Err(anyhow::anyhow!("a server stopped unexpectedly")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::anyhow!("a server task failed: {e}")),
                };
            }
        }
        let _ = self.stop.send(true);
        while let Some(done) = self.servers.join_next().await {
            if let Ok(Err(e)) = done
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }
}
