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
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

/// `--tls-dir` and `--insecure` of a server.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct TlsArgs {
    /// The cluster's TLS files (`cairn certs init DIR` makes them): the CA (ca.pem) and this
    /// role's certificate and key. With it every connection to and from this server is TLS,
    /// callers must present a certificate of the cluster's CA, and only the master and
    /// chunkservers may call the internal RPCs. Without it the server is plaintext, which it
    /// refuses unless it listens on a loopback address or --insecure is given.
    #[arg(long, env = "CAIRN_TLS_DIR", value_name = "DIR")]
    pub(crate) tls_dir: Option<std::path::PathBuf>,
    /// Serve plaintext on a non-loopback address (anything that reaches the port may call
    /// every RPC, including the internal ones). For networks you trust entirely.
    #[arg(long, env = "CAIRN_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) insecure: bool,
}

impl TlsArgs {
    /// The server's TLS for `listen` as `role`, also made the TLS of this process's outgoing
    /// channels (a role calls the others with its own certificate).
    pub(crate) fn server(
        &self,
        listen: &str,
        role: cairn_proto::net::tls::Role,
    ) -> anyhow::Result<Option<std::sync::Arc<cairn_proto::net::tls::ServerTls>>> {
        let tls = cairn_proto::net::tls::server_tls(
            listen,
            self.tls_dir.as_deref(),
            role,
            self.insecure,
        )?;
        if let Some(files) = &tls {
            cairn_proto::net::tls::use_tls(files.files.clone());
        }
        Ok(tls)
    }
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
        match &self.http {
            Some(addr) => Ok(Some(
                cairn_metrics::serve_on(addr, metrics.clone()).await?.1,
            )),
            None => Ok(None),
        }
    }
}

/// What [`run_role`] hands a role's `serve`: the process's metrics registry and the server's
/// TLS.
pub(crate) type RoleParts = (
    cairn_metrics::Metrics,
    Option<std::sync::Arc<cairn_proto::net::tls::ServerTls>>,
);

/// Runs server role `role` in the foreground: installs tracing (its first line names the
/// version and commit), loads its TLS (`--tls-dir`; plaintext only on loopback or with
/// `--insecure`), starts the runtime, binds `listen` (and `--http`) and runs `serve(listener,
/// (metrics, tls), shutdown)` until Ctrl-C or SIGTERM. `cairn master` and `cairn chunkserver`
/// differ only in the `serve` they pass.
pub(crate) fn run_role<A: clap::Args, F, Fut, E>(
    role: cairn_proto::net::tls::Role,
    listen: &str,
    args: &RoleArgs<A>,
    serve: F,
) -> anyhow::Result<std::process::ExitCode>
where
    F: FnOnce(
        tokio::net::TcpListener,
        RoleParts,
        std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    use anyhow::Context;
    crate::logging::init("info");
    crate::logging::starting(role.file_stem());
    let tls = args.tls.server(listen, role)?;
    let rt = runtime().context("start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let metrics = cairn_metrics::Metrics::new();
        let http = args.http.start(&metrics).await?;
        let served = serve(
            listener,
            (metrics, tls),
            Box::pin(cairn_local::shutdown_signal()),
        )
        .await;
        if let Some(http) = http {
            http.abort();
        }
        served.map_err(Into::into)?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}
