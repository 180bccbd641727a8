//! Locating, and building once per test process, the `cairn` binary under test.
//!
//! A test package cannot use another package's `CARGO_BIN_EXE_*`, so the harness runs
//! `cargo build -p cairn-cli --bin cairn --features test-faults` itself, once, with the profile
//! the test executable was built with, and takes the binary from the same profile directory as
//! the test executable. A plain `cargo test` from a fresh clone therefore works. The tests need
//! the feature `test-faults`: it gives the binary its hidden `--test-…` flags (power cut, disk
//! faults, aborts), which a release build does not have.
//!
//! One shortcut: if that binary already exists, is newer than every source file of the
//! workspace (`*.rs`, `*.toml`, `*.proto`, `Cargo.lock`, outside `target/` and this crate) and
//! has the test faults (its `--version` carries [`TEST_FAULTS_MARK`]), it is used as is. That is
//! the case under `cargo test --workspace`, which builds `cairn` for the CLI's own tests first —
//! with the whole workspace's features (tokio's `test-util`, from a dev-dependency, among them;
//! and `test-faults`, which this crate's dev-dependencies turn on), so `cargo build -p
//! cairn-cli` would rebuild tokio and everything above it only to get a different feature set:
//! minutes of CI on two cores. A fresh binary without the test faults (a plain `cargo build`) is
//! rebuilt with them. Set `CAIRN_TESTS_BUILD=1` to always run the build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// Environment variable naming a prebuilt `cairn` binary to use instead of building one.
pub const CAIRN_BIN_ENV: &str = "CAIRN_BIN";

/// Environment variable: when set, always run `cargo build` (no freshness shortcut).
pub const BUILD_ENV: &str = "CAIRN_TESTS_BUILD";

/// The binary's file name.
const BIN_NAME: &str = "cairn";

/// The cargo feature the binary under test is built with.
const TEST_FEATURE: &str = "test-faults";

/// What `cairn --version` prints only when the binary has the feature `test-faults`.
pub const TEST_FAULTS_MARK: &str = "(test-faults:";

/// The file cargo writes at the root of every target directory.
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// At most this many directory entries are looked at by the freshness check; past it, build.
const FRESHNESS_ENTRIES_MAX: u32 = 50_000;

/// The `cairn` binary under test: `$CAIRN_BIN` if set, else the workspace's binary (built once per
/// test process if it is not fresh) from the test executable's profile directory.
///
/// # Panics
/// If the build fails or the binary is not where cargo puts it; the message says what to do.
pub fn cairn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os(CAIRN_BIN_ENV) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "${CAIRN_BIN_ENV} = {} is not a file",
                path.display()
            );
            return path;
        }
        let (profile_dir, _) = test_profile_dir();
        let bin = profile_dir.join(BIN_NAME);
        if std::env::var_os(BUILD_ENV).is_none() && is_fresh(&bin) {
            if has_test_faults(&bin) {
                eprintln!(
                    "cairn-tests: using {} (newer than every workspace source, with \
                     {TEST_FEATURE}; {BUILD_ENV}=1 forces a build)",
                    bin.display()
                );
                return bin;
            }
            eprintln!(
                "cairn-tests: {} is fresh but built without the feature {TEST_FEATURE}: building",
                bin.display()
            );
        }
        let bin = build();
        assert!(
            has_test_faults(&bin),
            "cairn-tests: {} was built with --features {TEST_FEATURE} but its --version lacks \
             {TEST_FAULTS_MARK:?}",
            bin.display()
        );
        bin
    })
}

/// The workspace root: this crate's parent directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
}

/// The directory the test executable was built into (`<target>/<profile dir>`) and its name.
pub(crate) fn test_profile_dir() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("the test executable's path");
    // Test executables live in `<target>/<profile dir>/deps/`; binaries in `<target>/<profile dir>/`.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable sits in <target>/<profile>/deps")
        .to_path_buf();
    let name = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 profile directory name")
        .to_owned();
    (profile_dir, name)
}

/// Whether `bin --version` says the binary has the feature [`TEST_FEATURE`].
fn has_test_faults(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(TEST_FAULTS_MARK)
        })
}

/// Runs `cargo build -p cairn-cli --bin cairn --features test-faults` with the test executable's
/// profile and returns the binary's path.
fn build() -> PathBuf {
    let started = Instant::now();
    cargo_build(&[
        "-p",
        "cairn-cli",
        "--bin",
        BIN_NAME,
        "--features",
        TEST_FEATURE,
    ]);
    let (profile_dir, _) = test_profile_dir();
    let bin = profile_dir.join(BIN_NAME);
    assert!(
        bin.is_file(),
        "cairn-tests: the build succeeded but {} does not exist",
        bin.display()
    );
    eprintln!(
        "cairn-tests: using {} (build step took {:.1} s)",
        bin.display(),
        started.elapsed().as_secs_f64()
    );
    bin
}

/// Runs `cargo build ARGS…` in the workspace with the test executable's profile, into its
/// target directory (so the artifacts land in [`test_profile_dir`]).
///
/// # Panics
/// If cargo cannot be run or the build fails.
pub(crate) fn cargo_build(args: &[&str]) {
    let (profile_dir, profile_dir_name) = test_profile_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root()).arg("build").args(args);
    // Cargo names the directory after the profile, except `dev` (and `test`) → `debug`.
    match profile_dir_name.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    // Build into the directory the test executable came from, wherever that is (CARGO_TARGET_DIR,
    // a config's build.target-dir, or the workspace's target/). A `--target TRIPLE` layout puts the
    // triple between the two; cargo marks the target directory's root with CACHEDIR.TAG.
    let parent = profile_dir.parent().expect("a target directory");
    let (target_dir, triple) = match parent.parent() {
        Some(grand) if !parent.join(CACHEDIR_TAG).exists() && grand.join(CACHEDIR_TAG).exists() => {
            let triple = parent.file_name().and_then(|n| n.to_str());
            (grand.to_path_buf(), triple.map(str::to_owned))
        }
        _ => (parent.to_path_buf(), None),
    };
    cmd.arg("--target-dir").arg(&target_dir);
    if let Some(triple) = &triple {
        cmd.args(["--target", triple]);
    }
    eprintln!(
        "cairn-tests: building: {:?} (profile dir {})",
        cmd,
        profile_dir.display()
    );
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cairn-tests: could not run {cargo:?}: {e}"));
    assert!(
        status.success(),
        "cairn-tests: `cargo build {}` failed ({status}); for the cairn binary, set \
         ${CAIRN_BIN_ENV} to use a prebuilt one",
        args.join(" ")
    );
}

/// Whether `bin` exists and is newer than every workspace source file that can go into it (see
/// the module docs). Any doubt (an unreadable entry, too many entries) answers `false`.
pub(crate) fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let this_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![workspace_root().to_path_buf()];
    let mut budget = FRESHNESS_ENTRIES_MAX;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return false;
        };
        for entry in entries {
            let Ok(entry) = entry else { return false };
            budget = budget.saturating_sub(1);
            let Ok(kind) = entry.file_type() else {
                return false;
            };
            if budget == 0 {
                return false;
            }
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                let skip = name.starts_with('.')
                    || name == "target"
                    || path == this_crate
                    || path.join(CACHEDIR_TAG).exists();
                if !skip {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs")
                || name.ends_with(".toml")
                || name.ends_with(".proto")
                || name == "Cargo.lock"
            {
                match entry.metadata().and_then(|m| m.modified()) {
                    Ok(modified) if modified <= built => {}
                    _ => return false,
                }
            }
        }
    }
    true
}
