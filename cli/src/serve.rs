//! What every server subcommand (`chunkserver`, `master`, `local`) shares: the shutdown
//! signal, the runtime and [`run_role`].

/// A tokio runtime with two worker threads: with a master, three chunkservers and clients on
/// two cores, more workers only add context switches (seen in profiles of `cairn local`).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A server role's flags (`A`) and the flags every server shares.
#[derive(clap::Args, Debug)]
pub(crate) struct RoleArgs<A: clap::Args> {
    #[command(flatten)]
    pub(crate) role: A,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
}

/// `--http`: where a server serves its metrics (and the master its status page).
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct HttpArgs {
    /// Serve HTTP on HOST:PORT: Prometheus metrics at /metrics (OpenMetrics text), and on the
    /// master a status page at /. Off by default.
    #[arg(long, env = "CAIRN_HTTP", value_name = "HOST:PORT")]
    pub(crate) http: Option<String>,
}

impl HttpArgs {
    /// Binds `--http`, if given, and serves `metrics` there on a task of the current runtime.
    pub(crate) async fn start(
        &self,
        metrics: &cairn_metrics::Metrics,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        use anyhow::Context;
        let Some(addr) = &self.http else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr} (--http)"))?;
        let bound = listener.local_addr().map(|a| a.to_string());
        tracing::info!(http = %bound.as_deref().unwrap_or(addr), "serving metrics at /metrics");
        let metrics = metrics.clone();
        Ok(Some(tokio::spawn(async move {
            if let Err(e) = cairn_metrics::serve(listener, metrics, std::future::pending()).await {
                tracing::warn!(error = %e, "the HTTP listener stopped");
            }
        })))
    }
}

/// Runs server role `role` in the foreground: installs tracing (its first line names the
/// version and commit), starts the runtime, binds `listen` (and `--http`) and runs
/// `serve(listener, metrics, shutdown)` until Ctrl-C or SIGTERM. `cairn master` and `cairn
/// chunkserver` differ only in the `serve` they pass.
pub(crate) fn run_role<F, Fut, E>(
    role: &str,
    listen: &str,
    http: &HttpArgs,
    serve: F,
) -> anyhow::Result<std::process::ExitCode>
where
    F: FnOnce(
        tokio::net::TcpListener,
        cairn_metrics::Metrics,
        std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    use anyhow::Context;
    crate::logging::init("info");
    crate::logging::starting(role);
    let rt = runtime().context("start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let metrics = cairn_metrics::Metrics::new();
        let http = http.start(&metrics).await?;
        let served = serve(listener, metrics, Box::pin(cairn_local::shutdown_signal())).await;
        if let Some(http) = http {
            http.abort();
        }
        served.map_err(Into::into)?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}
