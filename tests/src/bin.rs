//! Locating, and building once per test process, the `cairn` binary under test.
//!
//! A test package cannot use another package's `CARGO_BIN_EXE_*` (DESIGN §9), so the harness runs
//! `cargo build -p cairn-cli --bin cairn` itself, once, with the profile the test executable was
//! built with, and takes the binary from the same profile directory as the test executable. A
//! plain `cargo test` from a fresh clone therefore works, and when `cargo test --workspace` has
//! already built the binary the nested build is a no-op.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// Environment variable naming a prebuilt `cairn` binary to use instead of building one.
pub const CAIRN_BIN_ENV: &str = "CAIRN_BIN";

/// The file cargo writes at the root of every target directory.
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// The `cairn` binary under test: `$CAIRN_BIN` if set, else the workspace's binary built (once per
/// test process) with the test executable's profile.
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
        build()
    })
}

/// The workspace root: this crate's parent directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
}

/// Runs `cargo build -p cairn-cli --bin cairn` with the test executable's profile and returns the
/// binary's path.
fn build() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // Test executables live in `<target>/<profile dir>/deps/`; binaries in `<target>/<profile dir>/`.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable sits in <target>/<profile>/deps")
        .to_path_buf();
    let profile_dir_name = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 profile directory name")
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "cairn-cli", "--bin", "cairn"]);
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
    let started = Instant::now();
    eprintln!(
        "cairn-tests: building the cairn binary: {:?} (profile dir {})",
        cmd,
        profile_dir.display()
    );
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cairn-tests: could not run {cargo:?}: {e}"));
    assert!(
        status.success(),
        "cairn-tests: `cargo build -p cairn-cli --bin cairn` failed ({status}); \
         set ${CAIRN_BIN_ENV} to use a prebuilt binary"
    );
    let bin = profile_dir.join(format!("cairn{}", std::env::consts::EXE_SUFFIX));
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
