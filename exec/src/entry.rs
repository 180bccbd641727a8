//! [`main`]: the one entry point of a hosted service's binary. The same binary runs as worker,
//! replica, front door, local cluster or plain server, chosen by its arguments.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::call::HostedService;

/// The roles of a service binary.
#[derive(Parser, Debug)]
#[command(about = "A service hosted by Cairn's execution layer")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Run requests from stdin, one at a time, answering on stdout (started by a replica).
    #[command(hide = true)]
    Worker,
    /// Serve the service directly with plain tonic: in memory, no replication, no vote.
    ServeDirect {
        /// Address to listen on.
        #[arg(long)]
        listen: String,
    },
}

/// Runs the service binary: parses the arguments and runs the role they name. `factory`
/// builds a fresh service (a generated tonic server), e.g. `|| BankServer::new(Bank::default())`.
pub fn main<S, F>(factory: F) -> ExitCode
where
    S: HostedService + Sync,
    F: Fn() -> S + Send + Sync + Clone + 'static,
{
    let cli = Cli::parse();
    let result = match cli.role {
        Role::Worker => crate::worker::run(factory).map_err(anyhow::Error::from),
        Role::ServeDirect { listen } => serve_direct(factory(), &listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `serve-direct`: the service on plain tonic until Ctrl-C; prints `listening ADDR` once bound.
fn serve_direct<S: HostedService + Sync>(service: S, listen: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let rt = tokio::runtime::Runtime::new().context("start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        println!("listening {}", listener.local_addr()?);
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown_signal(),
            )
            .await
            .context("serve")
    })
}
