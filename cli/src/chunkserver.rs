//! `cairn chunkserver`: locks the data directory (`cairn_local::dir_lock`), binds the listen address and
//! runs [`cairn_chunkserver::serve`] until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use cairn_chunkserver::{Args, Config};

use crate::serve::RoleArgs;

/// Runs a chunkserver with `args`.
pub(crate) fn run(args: &RoleArgs<Args>) -> anyhow::Result<ExitCode> {
    let config = Config::try_from(args.role.clone())?;
    // Held until this process ends: no second process may use the directory meanwhile.
    let _lock = cairn_local::dir_lock::lock(&config.data_dir)?;
    let listen = config.listen.clone();
    crate::serve::run_role(
        cairn_proto::net::tls::Role::Chunkserver,
        &listen,
        args,
        |listener, (metrics, tls), shutdown| {
            let seams = cairn_chunkserver::Seams {
                metrics,
                tls,
                ..cairn_chunkserver::Seams::production(&config)
            };
            cairn_chunkserver::serve(config, listener, seams, shutdown)
        },
    )
}
