//! Log lines on stderr for every subcommand: the `RUST_LOG` filter (a default level otherwise),
//! as text or, with `--log-format json`, one JSON object per line; and the first line a server
//! role writes, naming its version and commit.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// How log lines are written (`--log-format`, env `CAIRN_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `target`.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Sets the format every later [`init`] uses; called once, from `main`.
pub(crate) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// Installs the subscriber: `RUST_LOG`, else `default_level`, to stderr in the chosen format.
/// Safe to call more than once (later calls do nothing).
pub(crate) fn init(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Logs that server role `role` starts: its version and the commit it was built from.
pub(crate) fn starting(role: &str) {
    tracing::info!(
        role,
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("CAIRN_COMMIT"),
        "starting"
    );
}
