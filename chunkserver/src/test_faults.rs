//! Test-only fault injection, compiled only with the cargo feature `test-faults`: the hidden
//! `--test-…` flags of `cairn chunkserver` ([`TestFaultArgs`]) and what they ask for
//! ([`TestFaults`]): the power-cut disk, injected disk faults and the abort between a primary's
//! local write and its forwards.
//!
//! Without the feature both types are empty: the flags do not exist (clap refuses them as
//! unknown arguments) and no code that loses data on purpose is in the build, so a release
//! binary cannot be asked to lose data. [`ENABLED`] tells which build this is.

#[cfg(feature = "test-faults")]
use cairn_record::ChunkHandle;

#[cfg(not(feature = "test-faults"))]
use crate::store::disk::FsDisk;
#[cfg(feature = "test-faults")]
use crate::store::fail_disk::DiskFaults;
use crate::store::server_disk::ServerDisk;

/// Whether this build has the `test-faults` feature (the hidden `--test-…` flags).
pub const ENABLED: bool = cfg!(feature = "test-faults");

/// The hidden `--test-…` flags of `cairn chunkserver` (feature `test-faults`). Every one is
/// TEST MODE, never for real data, and hidden from `--help`.
#[cfg(feature = "test-faults")]
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFaultArgs {
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

/// Without the feature `test-faults`: no flags.
#[cfg(not(feature = "test-faults"))]
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFaultArgs {}

/// The faults a chunkserver injects into itself (feature `test-faults`). The default injects
/// none.
#[cfg(feature = "test-faults")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFaults {
    /// The power-cut test mode (`--test-power-cut`): the store runs on a
    /// [`crate::store::write_behind::WriteBehindDisk`], so a killed process loses its unsynced
    /// writes.
    pub power_cut: bool,
    /// Disk faults to inject (the `--test-fail-…` and `--test-disk-full-…` flags).
    pub disk: DiskFaults,
    /// `--test-abort-before-forward-after`: abort as a primary before forwarding the N-th
    /// write.
    pub abort_before_forward_after: Option<u64>,
}

/// Without the feature `test-faults`: no faults.
#[cfg(not(feature = "test-faults"))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFaults {}

#[cfg(feature = "test-faults")]
impl From<TestFaultArgs> for TestFaults {
    fn from(a: TestFaultArgs) -> TestFaults {
        TestFaults {
            power_cut: a.test_power_cut,
            disk: DiskFaults {
                fail_fsync_after: a.test_fail_fsync_after,
                disk_full_after_bytes: a.test_disk_full_after_bytes,
                fail_reads_of: a.test_fail_reads_of,
            },
            abort_before_forward_after: a.test_abort_before_forward_after,
        }
    }
}

#[cfg(not(feature = "test-faults"))]
impl From<TestFaultArgs> for TestFaults {
    fn from(_: TestFaultArgs) -> TestFaults {
        TestFaults {}
    }
}

impl TestFaults {
    /// The disk these faults ask for: the real file system, or (feature `test-faults`) the
    /// power-cut disk, either one wrapped in the injected disk faults.
    pub fn disk(&self) -> ServerDisk {
        #[cfg(feature = "test-faults")]
        {
            ServerDisk::new(self.power_cut).with_faults(self.disk.clone())
        }
        #[cfg(not(feature = "test-faults"))]
        {
            ServerDisk::Fs(FsDisk)
        }
    }

    /// Logs one loud TEST MODE warning per fault asked for (none without the feature).
    pub(crate) fn warn(&self, data_dir: &std::path::Path) {
        #[cfg(feature = "test-faults")]
        {
            use tracing::warn;
            if self.power_cut {
                warn!(
                    data = %data_dir.display(),
                    "TEST MODE: unsynced writes live in memory (--test-power-cut): a kill loses \
                     them as a power cut would; never use this for real data"
                );
            }
            let faults = &self.disk;
            if !faults.is_empty() {
                warn!(
                    data = %data_dir.display(),
                    fail_fsync_after = ?faults.fail_fsync_after,
                    disk_full_after_bytes = ?faults.disk_full_after_bytes,
                    fail_reads_of = ?faults.fail_reads_of.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                    "TEST MODE: injecting disk faults into chunk files (--test-fail-fsync-after, \
                     --test-disk-full-after-bytes, --test-fail-reads-of); never use this for real data"
                );
            }
        }
        #[cfg(not(feature = "test-faults"))]
        let _ = data_dir;
    }
}

#[cfg(all(test, feature = "test-faults"))]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::config::{Args, Config};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Config {
        let argv = ["cairn", "--data", "/tmp/x"].iter().chain(extra);
        Config::try_from(Cli::try_parse_from(argv).unwrap().args).unwrap()
    }

    #[test]
    fn the_power_cut_test_mode_is_off_unless_asked_for_and_hidden_from_help() {
        // Proves: `--test-power-cut` turns the power-cut disk on, is off by default, and
        // `--help` does not show it.
        assert!(!parse(&[]).test_faults.power_cut);
        assert!(parse(&["--test-power-cut"]).test_faults.power_cut);
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--heartbeat-ms"), "{help}");
        assert!(!help.contains("power-cut"), "{help}");
    }

    #[test]
    fn disk_fault_and_abort_flags_parse_and_are_hidden_from_help() {
        // Proves: the disk-fault and abort flags land in `Config::test_faults` as given, a
        // bad handle is refused, none is set by default, and `--help` shows none of them.
        assert_eq!(parse(&[]).test_faults, TestFaults::default());
        let c = parse(&[
            "--test-fail-fsync-after",
            "3",
            "--test-disk-full-after-bytes",
            "1048576",
            "--test-fail-reads-of",
            "00000000000000ff,0000000000000a00",
            "--test-abort-before-forward-after",
            "7",
        ]);
        assert_eq!(
            c.test_faults,
            TestFaults {
                power_cut: false,
                disk: DiskFaults {
                    fail_fsync_after: Some(3),
                    disk_full_after_bytes: Some(1 << 20),
                    fail_reads_of: vec![ChunkHandle(0xff), ChunkHandle(0xa00)],
                },
                abort_before_forward_after: Some(7),
            }
        );
        let bad = ["cairn", "--data", "/x", "--test-fail-reads-of", "zz"];
        assert!(Cli::try_parse_from(bad).is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("--test-"), "{help}");
        assert!(!help.contains("disk-full"), "{help}");
    }
}
