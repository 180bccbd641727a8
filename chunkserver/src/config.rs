//! The chunkserver's configuration: command-line [`Args`] (each flag also read from a
//! `CAIRN_…` environment variable) and the validated [`Config`] that [`crate::server::serve`]
//! takes.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits::{
    HEARTBEAT_MS_MAX, HEARTBEAT_MS_MIN, REPLICATE_BYTES_PER_SEC_MIN, RPC_TIMEOUT_MS_MAX,
    RPC_TIMEOUT_MS_MIN, SCRUB_BYTES_PER_SEC_DEFAULT, SCRUB_BYTES_PER_SEC_MAX,
    SCRUB_BYTES_PER_SEC_MIN, SCRUB_INTERVAL_MS_DEFAULT, SCRUB_INTERVAL_MS_MAX,
};
use crate::scrub::ScrubConfig;
use crate::test_faults::{TestFaultArgs, TestFaults};

/// `cairn chunkserver` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Address to listen on, HOST:PORT.
    #[arg(
        long,
        env = "CAIRN_CHUNKSERVER_LISTEN",
        default_value = "127.0.0.1:7001"
    )]
    pub listen: String,
    /// Address the master and clients use to reach this chunkserver, HOST:PORT (its name in
    /// the cluster). Default: the listen address.
    #[arg(long, env = "CAIRN_CHUNKSERVER_ADVERTISE")]
    pub advertise: Option<String>,
    /// The master's address, HOST:PORT, or the masters' of a group, comma separated (calls go
    /// to the next one when one fails).
    #[arg(long, env = "CAIRN_MASTER", default_value = "127.0.0.1:7000")]
    pub master: String,
    /// Directory holding the replicas (created if missing).
    #[arg(long, env = "CAIRN_CHUNKSERVER_DATA")]
    pub data: PathBuf,
    /// Heartbeat period in milliseconds (minimum 50).
    #[arg(long, env = "CAIRN_HEARTBEAT_MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// Join the master's cluster although this data directory holds replicas but records no
    /// cluster id (a directory from before cluster ids existed). Without it such a chunkserver
    /// refuses to register: a master that does not know its replicas would delete them all.
    /// The variable takes 1/0, true/false, yes/no or on/off.
    #[arg(
        long,
        env = "CAIRN_ADOPT_CLUSTER_ID",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub adopt_cluster_id: bool,
    /// Timeout of calls to secondaries and the master, in milliseconds; bounds how long an
    /// append waits for every replica.
    #[arg(long, env = "CAIRN_RPC_TIMEOUT_MS", default_value_t = 5000)]
    pub rpc_timeout_ms: u64,
    /// Bandwidth bound of re-replication into this chunkserver (copying sealed chunks from
    /// another chunkserver), in bytes per second.
    #[arg(long, env = "CAIRN_REPLICATE_BYTES_PER_SEC", default_value_t = 64 << 20)]
    pub replicate_bytes_per_sec: u64,
    /// Time from the start of one scrub pass (re-verifying every sealed replica) to the next, in
    /// milliseconds; 0 turns scrubbing off. The first pass starts at startup.
    #[arg(long, env = "CAIRN_SCRUB_INTERVAL_MS", default_value_t = SCRUB_INTERVAL_MS_DEFAULT)]
    pub scrub_interval_ms: u64,
    /// Most bytes per second the scrubber reads (minimum 65536).
    #[arg(long, env = "CAIRN_SCRUB_BYTES_PER_SEC", default_value_t = SCRUB_BYTES_PER_SEC_DEFAULT)]
    pub scrub_bytes_per_sec: u64,
    /// The hidden `--test-…` flags (cargo feature `test-faults`; none without it).
    #[command(flatten)]
    pub test_faults: TestFaultArgs,
}

/// A validated chunkserver configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on, HOST:PORT. The caller binds it (see [`crate::server::serve`]).
    pub listen: String,
    /// The name the master and clients use, HOST:PORT. A port of 0 is replaced by the
    /// listener's port when serving (handy with `127.0.0.1:0` in tests).
    pub advertise: String,
    /// The master's address, HOST:PORT, or several, comma separated.
    pub master: String,
    /// Data directory; replicas live in `DATA/chunks/`.
    pub data_dir: PathBuf,
    /// Heartbeat period in milliseconds. Default 1000, minimum 50, maximum 60000. A master
    /// that asks for a shorter period gets that.
    pub heartbeat_ms: u64,
    /// `--adopt-cluster-id`: register and record the master's cluster id even though the data
    /// directory holds replicas and no cluster id. Default false (such a chunkserver does not
    /// register, and keeps its replicas).
    pub adopt_cluster_id: bool,
    /// Timeout of calls to secondaries and the master, in milliseconds. Default 5000,
    /// minimum 10, maximum 600000.
    pub rpc_timeout_ms: u64,
    /// Bandwidth bound of re-replication into this chunkserver, bytes per second. Default
    /// 64 MiB/s, minimum 1 MiB/s.
    pub replicate_bytes_per_sec: u64,
    /// Time from one scrub pass's start to the next one's, in milliseconds. Default one hour,
    /// 0 = off, maximum 30 days.
    pub scrub_interval_ms: u64,
    /// Scrub rate in bytes per second. Default 32 MiB/s, minimum 64 KiB/s, maximum 16 GiB/s.
    pub scrub_bytes_per_sec: u64,
    /// Faults to inject (the hidden `--test-…` flags, cargo feature `test-faults`). Default
    /// none; never for real data.
    pub test_faults: TestFaults,
}

impl Config {
    /// A configuration with the defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: "127.0.0.1:7001".into(),
            advertise: "127.0.0.1:7001".into(),
            master: "127.0.0.1:7000".into(),
            data_dir: data_dir.into(),
            heartbeat_ms: 1000,
            adopt_cluster_id: false,
            rpc_timeout_ms: 5000,
            replicate_bytes_per_sec: 64 << 20,
            test_faults: TestFaults::default(),
            scrub_interval_ms: SCRUB_INTERVAL_MS_DEFAULT,
            scrub_bytes_per_sec: SCRUB_BYTES_PER_SEC_DEFAULT,
        }
    }

    /// The scrubber's settings.
    pub fn scrub(&self) -> ScrubConfig {
        ScrubConfig {
            interval: Duration::from_millis(self.scrub_interval_ms),
            bytes_per_sec: self.scrub_bytes_per_sec,
            blocking: cairn_files::Blocking::Threads,
        }
    }

    /// The RPC timeout.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }

    /// Checks every field's bounds.
    pub fn validate(&self) -> Result<()> {
        check_host_port("--listen", &self.listen)?;
        check_host_port("--advertise", &self.advertise)?;
        for master in self.master.split(',') {
            check_host_port("--master", master.trim())?;
        }
        let (host, _) = split_host_port(&self.advertise).expect("checked above");
        if matches!(host, "0.0.0.0" | "::" | "[::]") {
            return Err(bad(format!(
                "--advertise {}: peers cannot connect to an unspecified address; name this host",
                self.advertise
            )));
        }
        if !(HEARTBEAT_MS_MIN..=HEARTBEAT_MS_MAX).contains(&self.heartbeat_ms) {
            return Err(bad(format!(
                "--heartbeat-ms {} is outside {HEARTBEAT_MS_MIN}..={HEARTBEAT_MS_MAX}",
                self.heartbeat_ms
            )));
        }
        if !(RPC_TIMEOUT_MS_MIN..=RPC_TIMEOUT_MS_MAX).contains(&self.rpc_timeout_ms) {
            return Err(bad(format!(
                "--rpc-timeout-ms {} is outside {RPC_TIMEOUT_MS_MIN}..={RPC_TIMEOUT_MS_MAX}",
                self.rpc_timeout_ms
            )));
        }
        if self.replicate_bytes_per_sec < REPLICATE_BYTES_PER_SEC_MIN {
            return Err(bad(format!(
                "--replicate-bytes-per-sec {} is below the minimum of {REPLICATE_BYTES_PER_SEC_MIN}",
                self.replicate_bytes_per_sec
            )));
        }
        if self.scrub_interval_ms > SCRUB_INTERVAL_MS_MAX {
            return Err(bad(format!(
                "--scrub-interval-ms {} is above {SCRUB_INTERVAL_MS_MAX} (0 turns scrubbing off)",
                self.scrub_interval_ms
            )));
        }
        if !(SCRUB_BYTES_PER_SEC_MIN..=SCRUB_BYTES_PER_SEC_MAX).contains(&self.scrub_bytes_per_sec)
        {
            return Err(bad(format!(
                "--scrub-bytes-per-sec {} is outside {SCRUB_BYTES_PER_SEC_MIN}..={SCRUB_BYTES_PER_SEC_MAX}",
                self.scrub_bytes_per_sec
            )));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("--data must name a directory".into()));
        }
        Ok(())
    }
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(a: Args) -> Result<Config> {
        let config = Config {
            advertise: a.advertise.unwrap_or_else(|| a.listen.clone()),
            listen: a.listen,
            master: a.master,
            data_dir: a.data,
            heartbeat_ms: a.heartbeat_ms,
            adopt_cluster_id: a.adopt_cluster_id,
            rpc_timeout_ms: a.rpc_timeout_ms,
            replicate_bytes_per_sec: a.replicate_bytes_per_sec,
            scrub_interval_ms: a.scrub_interval_ms,
            scrub_bytes_per_sec: a.scrub_bytes_per_sec,
            test_faults: TestFaults::from(a.test_faults),
        };
        config.validate()?;
        Ok(config)
    }
}

fn bad(reason: String) -> Error {
    Error::Config { reason }
}

/// `(host, port)` of `HOST:PORT` (the host may be a bracketed IPv6 address).
pub(crate) fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

fn check_host_port(flag: &str, s: &str) -> Result<()> {
    if split_host_port(s).is_none() {
        return Err(bad(format!("{flag} {s:?} is not HOST:PORT")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            listen: "127.0.0.1:7001".into(),
            advertise: None,
            master: "127.0.0.1:7000".into(),
            data: "/tmp/x".into(),
            heartbeat_ms: 1000,
            adopt_cluster_id: false,
            rpc_timeout_ms: 5000,
            replicate_bytes_per_sec: 64 << 20,
            scrub_interval_ms: SCRUB_INTERVAL_MS_DEFAULT,
            scrub_bytes_per_sec: SCRUB_BYTES_PER_SEC_DEFAULT,
            test_faults: TestFaultArgs::default(),
        }
    }

    #[test]
    fn scrub_flags_are_bounded_and_zero_turns_it_off() {
        let off = Config::try_from(Args {
            scrub_interval_ms: 0,
            ..args()
        })
        .unwrap();
        assert!(off.scrub().interval.is_zero());
        let e = Config::try_from(Args {
            scrub_bytes_per_sec: 1000,
            ..args()
        });
        assert!(e.unwrap_err().to_string().contains("--scrub-bytes-per-sec"));
        let e = Config::try_from(Args {
            scrub_interval_ms: SCRUB_INTERVAL_MS_MAX + 1,
            ..args()
        });
        assert!(e.unwrap_err().to_string().contains("--scrub-interval-ms"));
    }

    #[test]
    fn advertise_defaults_to_listen_and_bounds_are_checked() {
        let c = Config::try_from(args()).unwrap();
        assert_eq!(c.advertise, "127.0.0.1:7001");
        assert_eq!(c, Config::new("/tmp/x"));
        let e = Config::try_from(Args {
            heartbeat_ms: 10,
            ..args()
        });
        assert!(e.unwrap_err().to_string().contains("--heartbeat-ms"));
        let e = Config::try_from(Args {
            listen: "0.0.0.0:7001".into(),
            ..args()
        });
        assert!(e.unwrap_err().to_string().contains("--advertise"));
        let ok = Config::try_from(Args {
            listen: "0.0.0.0:7001".into(),
            advertise: Some("cs1.example:7001".into()),
            ..args()
        });
        assert!(ok.is_ok());
        assert!(
            Config::try_from(Args {
                master: "nohost".into(),
                ..args()
            })
            .is_err()
        );
        // A group's masters: a list, every entry HOST:PORT.
        assert!(
            Config::try_from(Args {
                master: "m1:7000,m2:7000, m3:7000".into(),
                ..args()
            })
            .is_ok()
        );
        assert!(
            Config::try_from(Args {
                master: "m1:7000,nohost".into(),
                ..args()
            })
            .is_err()
        );
    }
}
