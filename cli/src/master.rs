//! `cairn master`: binds the listen address and runs [`cairn_master::serve`] until Ctrl-C or
//! SIGTERM (then writes a final checkpoint).

use std::process::ExitCode;

use cairn_master::{Args, Config};

/// Runs a master with `args`.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = Config::try_from(args.clone())?;
    let listen = config.listen.clone();
    crate::serve::run_role(&listen, |listener, shutdown| {
        cairn_master::serve(config, listener, shutdown)
    })
}
