//! `cairn master`: locks the data directory (`cairn_local::dir_lock`), binds the listen address and runs
//! [`cairn_master::serve`] until Ctrl-C or SIGTERM (then proposes what is queued and stops).

use std::process::ExitCode;

use cairn_master::{Args, Config};

use crate::serve::RoleArgs;

/// Runs a master with `args`.
pub(crate) fn run(args: &RoleArgs<Args>) -> anyhow::Result<ExitCode> {
    let config = Config::try_from(args.role.clone())?;
    // Held until this process ends: no second process may use the directory meanwhile.
    let _lock = cairn_local::dir_lock::lock(&config.data_dir)?;
    let listen = config.listen.clone();
    crate::serve::run_role(
        cairn_proto::net::tls::Role::Master,
        &listen,
        args,
        |listener, (metrics, tls), shutdown| {
            let seams = cairn_master::Seams {
                metrics,
                tls,
                ..cairn_master::Seams::production(&config)
            };
            cairn_master::serve(config, listener, seams, shutdown)
        },
    )
}
