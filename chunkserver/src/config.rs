//! The chunkserver's configuration: command-line [`Args`] (each flag also read from a
//! `CAIRN_…` environment variable) and the validated [`Config`] that [`crate::server::serve`]
//! takes.

use std::path::PathBuf;
use std::time::Duration;

use cairn_record::ChunkHandle;

use crate::error::{Error, Result};
use crate::limits::{
    HEARTBEAT_MS_MAX, HEARTBEAT_MS_MIN, REPLICATE_BYTES_PER_SEC_MIN, RPC_TIMEOUT_MS_MAX,
    RPC_TIMEOUT_MS_MIN, SCRUB_BYTES_PER_SEC_DEFAULT, SCRUB_BYTES_PER_SEC_MAX,
    SCRUB_BYTES_PER_SEC_MIN, SCRUB_INTERVAL_MS_DEFAULT, SCRUB_INTERVAL_MS_MAX,
};
use crate::scrub::ScrubConfig;
use crate::store::fail_disk::DiskFaults;

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
    /// The master's address, HOST:PORT.
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
    /// TEST MODE, never for real data: keep every write in process memory until its fsync, so
    /// that killing the process (SIGKILL) loses what a power cut may lose. Only data and lengths
    /// are held back; directory changes reach the disk at once. Hidden from --help. The variable
    /// takes 1/0, true/false, yes/no or on/off.
    #[arg(
        long,
        env = "CAIRN_TEST_POWER_CUT",
        hide = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub test_power_cut: bool,
    /// Time from the start of one scrub pass (re-verifying every sealed replica) to the next, in
    /// milliseconds; 0 turns scrubbing off. The first pass starts at startup.
    #[arg(long, env = "CAIRN_SCRUB_INTERVAL_MS", default_value_t = SCRUB_INTERVAL_MS_DEFAULT)]
    pub scrub_interval_ms: u64,
    /// Most bytes per second the scrubber reads (minimum 65536).
    #[arg(long, env = "CAIRN_SCRUB_BYTES_PER_SEC", default_value_t = SCRUB_BYTES_PER_SEC_DEFAULT)]
    pub scrub_bytes_per_sec: u64,
    /// TEST MODE, never for real data: as a primary, abort the process right after queueing the
    /// N-th write on its own store and before forwarding it to the secondaries (the crash point
    /// between a primary's local write and its forwards). Hidden from --help.
    #[arg(
        long,
        env = "CAIRN_TEST_ABORT_BEFORE_FORWARD_AFTER",
        hide = true,
        value_name = "N"
    )]
    pub test_abort_before_forward_after: Option<u64>,
    /// TEST MODE, never for real data: after N successful fsyncs of chunk files in this process,
    /// the next one fails with EIO, once (later ones succeed again); the store fails that
    /// replica for good and the master replaces it. Hidden from --help.
    #[arg(
        long,
        env = "CAIRN_TEST_FAIL_FSYNC_AFTER",
        hide = true,
        value_name = "N"
    )]
    pub test_fail_fsync_after: Option<u64>,
    /// TEST MODE, never for real data: once this process has written N bytes of chunk data,
    /// chunk writes fail with ENOSPC (the write crossing N is cut short), and the free space
    /// reported to the master and checked by CreateReplica is at most what is left of N.
    /// Hidden from --help.
    #[arg(
        long,
        env = "CAIRN_TEST_DISK_FULL_AFTER_BYTES",
        hide = true,
        value_name = "N"
    )]
    pub test_disk_full_after_bytes: Option<u64>,
    /// TEST MODE, never for real data: reads of these chunks' data files fail with EIO
    /// (16-hex-digit handles, comma-separated; name sealed replicas: an open replica that
    /// cannot be read at start-up stops the chunkserver). Hidden from --help.
    #[arg(
        long,
        env = "CAIRN_TEST_FAIL_READS_OF",
        hide = true,
        value_delimiter = ',',
        value_name = "HANDLE"
    )]
    pub test_fail_reads_of: Vec<ChunkHandle>,
}

/// A validated chunkserver configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on, HOST:PORT. The caller binds it (see [`crate::server::serve`]).
    pub listen: String,
    /// The name the master and clients use, HOST:PORT. A port of 0 is replaced by the
    /// listener's port when serving (handy with `127.0.0.1:0` in tests).
    pub advertise: String,
    /// The master's address, HOST:PORT.
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
    /// The power-cut test mode (`--test-power-cut`): the store runs on a
    /// [`crate::store::write_behind::WriteBehindDisk`], so a killed process loses its unsynced
    /// writes. Default false; never for real data.
    pub test_power_cut: bool,
    /// Time from one scrub pass's start to the next one's, in milliseconds. Default one hour,
    /// 0 = off, maximum 30 days.
    pub scrub_interval_ms: u64,
    /// Scrub rate in bytes per second. Default 32 MiB/s, minimum 64 KiB/s, maximum 16 GiB/s.
    pub scrub_bytes_per_sec: u64,
    /// Disk faults to inject (the `--test-fail-…` and `--test-disk-full-…` flags). Default
    /// none; never for real data.
    pub disk_faults: DiskFaults,
    /// `--test-abort-before-forward-after`: abort as a primary before forwarding the N-th
    /// write. Default none; never for real data.
    pub test_abort_before_forward_after: Option<u64>,
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
            test_power_cut: false,
            disk_faults: DiskFaults::default(),
            test_abort_before_forward_after: None,
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
        check_host_port("--master", &self.master)?;
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
            test_power_cut: a.test_power_cut,
            scrub_interval_ms: a.scrub_interval_ms,
            scrub_bytes_per_sec: a.scrub_bytes_per_sec,
            disk_faults: DiskFaults {
                fail_fsync_after: a.test_fail_fsync_after,
                disk_full_after_bytes: a.test_disk_full_after_bytes,
                fail_reads_of: a.test_fail_reads_of,
            },
            test_abort_before_forward_after: a.test_abort_before_forward_after,
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
            test_power_cut: false,
            scrub_interval_ms: SCRUB_INTERVAL_MS_DEFAULT,
            scrub_bytes_per_sec: SCRUB_BYTES_PER_SEC_DEFAULT,
            test_abort_before_forward_after: None,
            test_fail_fsync_after: None,
            test_disk_full_after_bytes: None,
            test_fail_reads_of: Vec::new(),
        }
    }

    #[test]
    fn the_power_cut_test_mode_is_off_unless_asked_for_and_hidden_from_help() {
        use clap::{CommandFactory, Parser};
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |extra: &[&str]| {
            let argv = ["cairn", "--data", "/tmp/x"].iter().chain(extra);
            Config::try_from(Cli::try_parse_from(argv).unwrap().args).unwrap()
        };
        assert!(!parse(&[]).test_power_cut);
        assert!(parse(&["--test-power-cut"]).test_power_cut);
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--heartbeat-ms"), "{help}");
        assert!(!help.contains("power-cut"), "{help}");
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
    fn disk_fault_flags_parse_and_are_hidden_from_help() {
        use clap::{CommandFactory, Parser};
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |extra: &[&str]| {
            let argv = ["cairn", "--data", "/tmp/x"].iter().chain(extra);
            Config::try_from(Cli::try_parse_from(argv).unwrap().args).unwrap()
        };
        assert!(parse(&[]).disk_faults.is_empty());
        let c = parse(&[
            "--test-fail-fsync-after",
            "3",
            "--test-disk-full-after-bytes",
            "1048576",
            "--test-fail-reads-of",
            "00000000000000ff,0000000000000a00",
        ]);
        assert_eq!(
            c.disk_faults,
            DiskFaults {
                fail_fsync_after: Some(3),
                disk_full_after_bytes: Some(1 << 20),
                fail_reads_of: vec![ChunkHandle(0xff), ChunkHandle(0xa00)],
            }
        );
        let bad = ["cairn", "--data", "/x", "--test-fail-reads-of", "zz"];
        assert!(Cli::try_parse_from(bad).is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("test-fail"), "{help}");
        assert!(!help.contains("disk-full"), "{help}");
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
    }
}
