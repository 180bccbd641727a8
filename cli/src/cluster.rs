//! What the client subcommands (`create`, `append`, `replay`, `tail`, `ls`, `stat`, `bench`)
//! share: the `--master` flag, byte-size parsing, the runtime and connecting.

use std::process::ExitCode;

use anyhow::Context;
use cairn_client::Client;

/// The master to talk to.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct MasterArg {
    /// The master's address, HOST:PORT (or https://HOST:PORT, which needs --tls-dir), or
    /// several, comma separated: calls go to the first that answers, and to the next after a
    /// call fails in its connection.
    #[arg(long, env = "CAIRN_MASTER", default_value = "127.0.0.1:7000")]
    pub(crate) master: String,
    /// The cluster's TLS files (`cairn certs init DIR`): connect with TLS, presenting the
    /// client certificate (client.pem, client.key) and trusting only the cluster's CA (ca.pem).
    #[arg(long, env = "CAIRN_TLS_DIR", value_name = "DIR")]
    pub(crate) tls_dir: Option<std::path::PathBuf>,
    /// A token (`cairn certs token`) to present instead of a client certificate; sent only
    /// over TLS, so it needs --tls-dir (a directory with the cluster's ca.pem is enough).
    #[arg(
        long,
        env = "CAIRN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
}

/// A byte count from the command line, for every size flag alike: a plain number of bytes, or
/// a number with a unit, SI (`k`/`KB` 1,000, `MB`, `GB`) or IEC (`KiB` 1,024, `MiB`, `GiB`),
/// case-insensitive, as the `bytesize` crate reads it (`64MiB`, `1.5 GiB`, `1GB`).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 65536, 256KiB, 64MiB, 1GB)"))?;
    Ok(size.as_u64())
}

/// [`parse_bytes`] for a size held in a `usize`.
pub(crate) fn parse_bytes_usize(s: &str) -> Result<usize, String> {
    usize::try_from(parse_bytes(s)?).map_err(|_| format!("{s:?} is too large"))
}

/// Runs a client command: tracing, the runtime, then `f`. A closed stdout (`cairn replay LOG |
/// head`) ends the command quietly, as it does for other Unix tools.
pub(crate) fn run<F>(f: F) -> anyhow::Result<ExitCode>
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    // Client commands log errors only unless `RUST_LOG` says otherwise (a failure is reported
    // once, as the `error:` line), and an appender's warnings: why an append is waiting.
    crate::logging::init("error,cairn_client::append=warn");
    // One thread: the command's own future and the appender's or reader's task then run
    // side by side on it, so waking one never costs an OS thread wake-up (and the servers
    // keep the other core).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    match rt.block_on(f) {
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) if is_transport_failure(&e) && cairn_proto::net::tls::client_tls().is_none() => {
            Err(anyhow::anyhow!(
                "{e:#} (is a master running at that address? If the cluster uses TLS, give \
                 --tls-dir DIR or CAIRN_TLS_DIR)"
            ))
        }
        Err(e) if is_not_a_master(&e) => Err(anyhow::anyhow!(
            "the address given with --master (or CAIRN_MASTER) is not a Cairn master: it does \
             not serve the master's API (is it a chunkserver's or a front door's?)"
        )),
        r => r,
    }
}

/// Whether `e` is an `UNIMPLEMENTED` answer: the master's RPCs sent to something else.
fn is_not_a_master(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<cairn_client::Error>(),
            Some(cairn_client::Error::Rpc {
                code: cairn_client::Code::Unimplemented,
                ..
            })
        )
    })
}

/// Whether `e` is a failure of the connection to the master itself, as when a plaintext
/// client meets a TLS server (which closes the connection).
fn is_transport_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<cairn_client::Error>(),
            Some(cairn_client::Error::MasterUnreachable { .. })
        )
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Connects to the master (an error names the address).
pub(crate) async fn connect(master: &MasterArg) -> anyhow::Result<Client> {
    if let Some(token) = &master.token {
        cairn_proto::net::auth::use_token(token)?;
    }
    if let Some(dir) = &master.tls_dir {
        let files = cairn_proto::net::tls::TlsFiles::load_client(dir, master.token.is_some())?;
        cairn_proto::net::tls::use_tls(files);
    }
    Ok(Client::connect(&master.master).await?)
}

/// Adds a hint to "log not found".
pub(crate) fn hint(e: cairn_client::Error) -> anyhow::Error {
    match e {
        cairn_client::Error::LogNotFound { .. } => {
            anyhow::anyhow!("{e} (create it first: cairn create LOG)")
        }
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: every size flag reads SI and IEC units the same way (k and KB are 1,000, KiB is
    // 1,024), plain numbers as bytes, fractions of a unit, and refuses what is not a size.
    #[test]
    fn sizes_take_si_and_iec_units() {
        assert_eq!(parse_bytes("65536"), Ok(65_536));
        assert_eq!(parse_bytes("256KiB"), Ok(256 << 10));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64 mib"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("64k"), Ok(64_000));
        assert_eq!(parse_bytes("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("10kb"), Ok(10_000));
        assert_eq!(parse_bytes_usize("1MiB"), Ok(1 << 20));
        assert!(parse_bytes("three").is_err());
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("").is_err());
    }
}
