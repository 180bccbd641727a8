//! `cairn master`: binds the listen address and runs [`cairn_master::serve`] until Ctrl-C or
//! SIGTERM (then writes a final checkpoint).

use std::process::ExitCode;

use anyhow::Context;
use cairn_master::{Args, Config};

/// Runs a master with `args`.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    crate::serve::init_tracing();
    let config = Config::try_from(args.clone())?;
    let rt = crate::serve::runtime().context("start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        cairn_master::serve(config, listener, crate::serve::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
