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

/// Runs server role `role` in the foreground: installs tracing (its first line names the
/// version and commit), starts the runtime, binds `listen` and runs `serve(listener,
/// shutdown)` until Ctrl-C or SIGTERM. `cairn master` and `cairn chunkserver` differ only in
/// the `serve` they pass.
pub(crate) fn run_role<F, Fut, E>(
    role: &str,
    listen: &str,
    serve: F,
) -> anyhow::Result<std::process::ExitCode>
where
    F: FnOnce(tokio::net::TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
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
        serve(listener, Box::pin(cairn_local::shutdown_signal()))
            .await
            .map_err(Into::into)?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}
