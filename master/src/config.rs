//! The master's flags (`cairn master …`) and the validated [`Config`] they become.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::crash_point::CrashAt;
use crate::error::Error;
use crate::limits::{
    CHECKPOINT_EVERY_ENTRIES, HEARTBEAT_MS_MAX, HEARTBEAT_MS_MIN, MIN_FREE_BYTES_DEFAULT,
    REPLICATION_DEFAULT, REPLICATION_MAX, REPLICATION_MIN, RPC_TIMEOUT_MS_MIN,
    SALVAGE_AFTER_MS_DEFAULT,
};

/// Flags of `cairn master`. Every flag can also be set through its `CAIRN_…` environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to listen on, HOST:PORT. Default 127.0.0.1:7000.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:7000")]
    pub listen: String,
    /// Directory for the master's Raft log and snapshot (created if missing). Required.
    #[arg(long, env = "CAIRN_DATA")]
    pub data: PathBuf,
    /// This master's id in its group of masters (with --peers). Default 1.
    #[arg(long, env = "CAIRN_MASTER_ID", default_value_t = 1)]
    pub id: u64,
    /// The masters of the group, this one included: ID=HOST:PORT,… (e.g.
    /// 1=m1:7000,2=m2:7000,3=m3:7000). The lowest id forms the group at its first start.
    /// Without it, this master is a group of one.
    #[arg(long, env = "CAIRN_MASTER_PEERS", value_name = "ID=HOST:PORT,…", value_parser = parse_peers)]
    pub peers: Option<BTreeMap<u64, String>>,
    /// Heartbeat period chunkservers are asked to keep, in milliseconds. Default 1000, minimum 50.
    #[arg(long, env = "CAIRN_HEARTBEAT_MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// A chunkserver silent this long, in milliseconds, is dead and gets no new chunks.
    /// Default 10000; must exceed the heartbeat period.
    #[arg(long, env = "CAIRN_DEAD_AFTER_MS", default_value_t = 10_000)]
    pub dead_after_ms: u64,
    /// A sealed chunk whose complete replicas are all unreachable is salvaged (cut back to the
    /// longest prefix other replicas hold, the rest reported lost) only once every chunkserver
    /// that sealed it has been silent this long, in milliseconds, or came back without it.
    /// Default 900000 (15 min); at least the dead-after time. A dead chunkserver is usually a
    /// restarting one: cutting a chunk then would discard acknowledged records it still holds.
    #[arg(long, env = "CAIRN_SALVAGE_AFTER_MS", default_value_t = SALVAGE_AFTER_MS_DEFAULT)]
    pub salvage_after_ms: u64,
    /// Timeout of each master → chunkserver RPC (create, fence, seal), in milliseconds.
    /// Default 5000, minimum 10.
    #[arg(long, env = "CAIRN_RPC_TIMEOUT_MS", default_value_t = 5000)]
    pub rpc_timeout_ms: u64,
    /// Replicas per chunk for logs created without a replication factor. Default 3, 1..=7.
    #[arg(long, env = "CAIRN_DEFAULT_REPLICATION", default_value_t = REPLICATION_DEFAULT)]
    pub default_replication: u32,
    /// Free-space margin, in bytes: a chunkserver that reports less free space than a chunk's
    /// capacity plus this gets no new chunks and no re-replicated ones. Default 1 GiB.
    #[arg(long, env = "CAIRN_MIN_FREE_BYTES", default_value_t = MIN_FREE_BYTES_DEFAULT)]
    pub min_free_bytes: u64,
    /// TEST MODE, never for real data: keep every write to the Raft files, snapshot and
    /// cluster id in process memory until its fsync, so that killing the process (SIGKILL)
    /// loses what a power cut may lose. Hidden from --help; built only with the `test-faults`
    /// feature. The variable takes 1/0, true/false, yes/no or on/off.
    #[cfg(feature = "test-faults")]
    #[arg(
        long,
        env = "CAIRN_TEST_POWER_CUT",
        hide = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub test_power_cut: bool,
    /// TEST MODE, never for real data: abort the process (with a stderr line naming the point)
    /// the N-th time (default 1) it reaches the named crash point: after-version-logged,
    /// after-fence, before-seal-logged or mid-allocation (see `crash_point`). Hidden from
    /// --help; built only with the `test-faults` feature.
    #[cfg(feature = "test-faults")]
    #[arg(
        long,
        env = "CAIRN_TEST_CRASH_AT",
        hide = true,
        value_name = "POINT[:N]"
    )]
    pub test_crash_at: Option<CrashAt>,
}

/// Reads `--peers`: `ID=HOST:PORT` pairs, comma separated, ids unique and non-zero.
fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for pair in s.split(',').map(str::trim) {
        let (id, addr) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id != 0)
            .ok_or_else(|| format!("{pair:?}: the id is not a number above 0"))?;
        if peers.insert(id, addr.trim().to_owned()).is_some() {
            return Err(format!("id {id} appears twice"));
        }
    }
    Ok(peers)
}

/// The master's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (HOST:PORT), as given; the binary binds it.
    pub listen: String,
    /// Directory holding the Raft files (`raft-log`, `raft-vote`, `raft-meta`,
    /// `raft-snapshot`) and the cluster id.
    pub data_dir: PathBuf,
    /// This master's id in its group. Default 1.
    pub id: u64,
    /// The masters of the group (id → address), this one included; empty: a group of one.
    pub peers: BTreeMap<u64, String>,
    /// Heartbeat period chunkservers are asked to keep. Default 1 s, at least 50 ms.
    pub heartbeat: Duration,
    /// Silence after which a chunkserver is dead. Default 10 s, longer than `heartbeat`.
    pub dead_after: Duration,
    /// Silence after which a chunkserver's replicas count as lost for a salvage. Default 15 min,
    /// at least `dead_after`.
    pub salvage_after: Duration,
    /// Timeout of each master → chunkserver RPC. Default 5 s, at least 10 ms.
    pub rpc_timeout: Duration,
    /// Replicas per chunk when a log is created without a factor. Default 3, 1..=7.
    pub default_replication: u32,
    /// Raft log entries between snapshots of the metadata. Default 10,000, at least 1.
    pub checkpoint_every_entries: u64,
    /// Free bytes a chunkserver must report beyond a chunk's capacity to be given a new
    /// replica (the high-watermark margin). Default 1 GiB; 0 leaves just the capacity.
    pub min_free_bytes: u64,
    /// The power-cut test mode (`--test-power-cut`): [`crate::Seams::production`] writes the
    /// master's files through a [`cairn_files::WriteBehindDisk`], so a killed process loses its
    /// unsynced writes. Off by default; only the test-only flag turns it on.
    pub test_power_cut: bool,
    /// The crash point the master aborts at (`--test-crash-at`), if any. None by default; only
    /// the test-only flag sets it.
    pub test_crash_at: Option<CrashAt>,
}

impl Config {
    /// The default settings with `data_dir` as the data directory (for tests and `cairn local`).
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: "127.0.0.1:7000".to_owned(),
            data_dir: data_dir.into(),
            id: 1,
            peers: BTreeMap::new(),
            heartbeat: Duration::from_millis(1000),
            dead_after: Duration::from_millis(10_000),
            salvage_after: Duration::from_millis(SALVAGE_AFTER_MS_DEFAULT),
            rpc_timeout: Duration::from_millis(5000),
            default_replication: REPLICATION_DEFAULT,
            checkpoint_every_entries: CHECKPOINT_EVERY_ENTRIES,
            min_free_bytes: MIN_FREE_BYTES_DEFAULT,
            test_power_cut: false,
            test_crash_at: None,
        }
    }

    /// Checks the bounds and combinations documented on each field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::Config { reason });
        let heartbeat_ms = self.heartbeat.as_millis() as u64;
        if !(HEARTBEAT_MS_MIN..=HEARTBEAT_MS_MAX).contains(&heartbeat_ms) {
            return bad(format!(
                "heartbeat {heartbeat_ms} ms is outside {HEARTBEAT_MS_MIN}..={HEARTBEAT_MS_MAX} ms"
            ));
        }
        if self.dead_after <= self.heartbeat {
            return bad(format!(
                "dead-after {} ms must exceed the heartbeat period {heartbeat_ms} ms",
                self.dead_after.as_millis()
            ));
        }
        if self.salvage_after < self.dead_after {
            return bad(format!(
                "salvage-after {} ms is below the dead-after time {} ms",
                self.salvage_after.as_millis(),
                self.dead_after.as_millis()
            ));
        }
        if self.rpc_timeout < Duration::from_millis(RPC_TIMEOUT_MS_MIN) {
            return bad(format!(
                "rpc timeout {} ms is below {RPC_TIMEOUT_MS_MIN} ms",
                self.rpc_timeout.as_millis()
            ));
        }
        if !(REPLICATION_MIN..=REPLICATION_MAX).contains(&self.default_replication) {
            return bad(format!(
                "default replication {} is outside {REPLICATION_MIN}..={REPLICATION_MAX}",
                self.default_replication
            ));
        }
        if self.checkpoint_every_entries == 0 {
            return bad("checkpoint interval must be at least 1 entry".to_owned());
        }
        let port_ok = self
            .listen
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return bad(format!("listen address {:?} is not HOST:PORT", self.listen));
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data directory is empty".to_owned());
        }
        if self.id == 0 {
            return bad("--id must be above 0".to_owned());
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.id) {
            return bad(format!(
                "--peers does not name this master's id {} (it lists {:?})",
                self.id,
                self.peers.keys().collect::<Vec<_>>()
            ));
        }
        for (id, addr) in &self.peers {
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return bad(format!(
                    "--peers: master {id}'s address {addr:?} is not HOST:PORT"
                ));
            }
        }
        Ok(())
    }
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(args: Args) -> Result<Config, Error> {
        let config = Config {
            listen: args.listen,
            data_dir: args.data,
            id: args.id,
            peers: args.peers.unwrap_or_default(),
            heartbeat: Duration::from_millis(args.heartbeat_ms),
            dead_after: Duration::from_millis(args.dead_after_ms),
            salvage_after: Duration::from_millis(args.salvage_after_ms),
            rpc_timeout: Duration::from_millis(args.rpc_timeout_ms),
            default_replication: args.default_replication,
            checkpoint_every_entries: CHECKPOINT_EVERY_ENTRIES,
            min_free_bytes: args.min_free_bytes,
            #[cfg(feature = "test-faults")]
            test_power_cut: args.test_power_cut,
            #[cfg(not(feature = "test-faults"))]
            test_power_cut: false,
            #[cfg(feature = "test-faults")]
            test_crash_at: args.test_crash_at,
            #[cfg(not(feature = "test-faults"))]
            test_crash_at: None,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Result<Config, Error> {
        let mut argv = vec!["master", "--data", "/tmp/x"];
        argv.extend_from_slice(flags);
        Config::try_from(Cli::try_parse_from(argv).expect("flags parse").args)
    }

    // Defaults parse into the documented values; each bound is enforced.
    #[test]
    fn defaults_and_bounds() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000");
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert_eq!(c.dead_after, Duration::from_secs(10));
        assert_eq!(c.rpc_timeout, Duration::from_secs(5));
        assert_eq!(c.default_replication, 3);
        assert_eq!(c.min_free_bytes, 1 << 30);
        assert_eq!(parse(&["--min-free-bytes", "0"]).unwrap().min_free_bytes, 0);
        assert!(parse(&["--heartbeat-ms", "49"]).is_err());
        assert!(parse(&["--heartbeat-ms", "50", "--dead-after-ms", "50"]).is_err());
        assert!(parse(&["--heartbeat-ms", "50", "--dead-after-ms", "51"]).is_ok());
        assert!(parse(&["--default-replication", "0"]).is_err());
        assert!(parse(&["--default-replication", "8"]).is_err());
        assert!(parse(&["--listen", "nohost"]).is_err());
        assert!(parse(&["--rpc-timeout-ms", "1"]).is_err());
        assert!(!c.test_power_cut);
        assert_eq!(c.test_crash_at, None);
    }

    // Proves: with the `test-faults` feature the test flags parse and stay out of --help;
    // without it they do not exist.
    #[test]
    fn test_flags_exist_only_with_the_feature_and_are_hidden() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(
            !help.contains("power-cut") && !help.contains("crash-at"),
            "{help}"
        );
        let flags = ["--test-power-cut", "--test-crash-at", "after-fence:2"];
        if cfg!(feature = "test-faults") {
            let c = parse(&flags).unwrap();
            assert!(c.test_power_cut);
            let at = c.test_crash_at.unwrap();
            assert_eq!((at.point.name(), at.time), ("after-fence", 2));
            let argv = ["master", "--data", "/x", "--test-crash-at", "nowhere"];
            assert!(Cli::try_parse_from(argv).is_err());
        } else {
            let mut argv = vec!["master", "--data", "/tmp/x"];
            argv.extend_from_slice(&flags);
            assert!(Cli::try_parse_from(argv).is_err());
        }
    }
}
