//! `cairn local`: a master and N chunkservers in this process, on 127.0.0.1, until Ctrl-C; each
//! one's data directory is locked (`dir_lock.rs`) first.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::watch;

/// `cairn local`.
#[derive(clap::Args, Debug)]
pub(crate) struct LocalArgs {
    /// Data directory: the master's state in DATA/master, chunkservers' in DATA/cs0, DATA/cs1, ….
    #[arg(long, env = "CAIRN_DATA")]
    data: PathBuf,
    /// Number of chunkservers (1..=16). Logs default to min(3, this) replicas.
    #[arg(long, default_value_t = 3)]
    chunkservers: u16,
    /// The master's port; chunkservers take the ports after it.
    #[arg(long, default_value_t = 7000)]
    port: u16,
    /// Let chunkservers whose directory holds replicas but no cluster id join the master's
    /// cluster (a data directory from before cluster ids existed); see `cairn chunkserver`.
    #[arg(
        long,
        env = "CAIRN_ADOPT_CLUSTER_ID",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    adopt_cluster_id: bool,
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub(crate) fn run(args: &LocalArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=16).contains(&args.chunkservers),
        "--chunkservers must be within 1..=16"
    );
    anyhow::ensure!(
        u32::from(args.port) + u32::from(args.chunkservers) <= u32::from(u16::MAX),
        "--port {} leaves no room for {} chunkserver ports after it",
        args.port,
        args.chunkservers
    );
    // Every role's directory is locked before any of them reads or writes: a second
    // `cairn local` (or a `cairn master`/`chunkserver`) on one of them changes nothing.
    let _locks = std::iter::once(args.data.join("master"))
        .chain((1..=args.chunkservers).map(|i| args.data.join(format!("cs{i}"))))
        .map(|dir| crate::dir_lock::lock(&dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::serve::init_tracing();
    let rt = crate::serve::runtime().context("start the runtime")?;
    rt.block_on(async {
        let master_addr = format!("127.0.0.1:{}", args.port);
        let mut master_config = cairn_master::Config::new(args.data.join("master"));
        master_config.listen = master_addr.clone();
        master_config.default_replication = u32::from(args.chunkservers.min(3));
        master_config.validate()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let master_listener = tokio::net::TcpListener::bind(&master_addr)
            .await
            .with_context(|| format!("listen on {master_addr}"))?;
        let mut servers = tokio::task::JoinSet::new();
        servers.spawn({
            let stopped = stopped();
            async move {
                cairn_master::serve(master_config, master_listener, stopped)
                    .await
                    .context("master")
            }
        });
        let mut chunkserver_addrs = Vec::new();
        for i in 1..=args.chunkservers {
            let addr = format!("127.0.0.1:{}", args.port + i);
            let config = cairn_chunkserver::Config {
                listen: addr.clone(),
                advertise: addr.clone(),
                master: master_addr.clone(),
                adopt_cluster_id: args.adopt_cluster_id,
                ..cairn_chunkserver::Config::new(args.data.join(format!("cs{i}")))
            };
            config.validate()?;
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listen on {addr}"))?;
            let stopped = stopped();
            servers.spawn(async move {
                cairn_chunkserver::serve(config, listener, stopped)
                    .await
                    .with_context(|| format!("chunkserver {i}"))
            });
            chunkserver_addrs.push(addr);
        }
        println!("{master_addr}");
        eprintln!(
            "cairn local: master {master_addr}, chunkservers {}, data in {}; Ctrl-C stops",
            chunkserver_addrs.join(" "),
            args.data.display()
        );
        let mut result = Ok(());
        tokio::select! {
            _ = crate::serve::shutdown_signal() => {}
            Some(done) = servers.join_next() => {
                // A server stopped on its own: that is an error; stop the others.
                result = match done {
                    Ok(Ok(())) => Err(anyhow::anyhow!("a server stopped unexpectedly")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::anyhow!("a server task failed: {e}")),
                };
            }
        }
        let _ = stop_tx.send(true);
        while let Some(done) = servers.join_next().await {
            if let Ok(Err(e)) = done
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result.map(|()| ExitCode::SUCCESS)
    })
}
