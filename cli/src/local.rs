//! `cairn local`: a master and N chunkservers in this process, on 127.0.0.1, until Ctrl-C
//! (`cairn_local::LocalCluster`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// `cairn local`.
#[derive(clap::Args, Debug)]
pub(crate) struct LocalArgs {
    /// Data directory: the master's state in DATA/master, chunkservers' in DATA/cs1, DATA/cs2, ….
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
    #[command(flatten)]
    http: crate::serve::HttpArgs,
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub(crate) fn run(args: &LocalArgs) -> anyhow::Result<ExitCode> {
    let config = cairn_local::LocalConfig {
        data: args.data.clone(),
        chunkservers: args.chunkservers,
        port: args.port,
        adopt_cluster_id: args.adopt_cluster_id,
    };
    crate::logging::init("info");
    crate::logging::starting("local");
    let rt = crate::serve::runtime().context("start the runtime")?;
    rt.block_on(async {
        let metrics = cairn_metrics::Metrics::new();
        let http = args.http.start(&metrics).await?;
        let cluster = cairn_local::LocalCluster::start_with_metrics(&config, metrics).await?;
        println!("{}", cluster.master_addr);
        eprintln!(
            "cairn local: master {}, chunkservers {}, data in {}; Ctrl-C stops",
            cluster.master_addr,
            cluster.chunkserver_addrs.join(" "),
            args.data.display()
        );
        let stopped = cluster.run_until(cairn_local::shutdown_signal()).await;
        if let Some(http) = http {
            http.abort();
        }
        stopped?;
        Ok(ExitCode::SUCCESS)
    })
}
