//! Locating, and building when needed, the client library's example programs
//! (`client/examples/`), which `tests/client_examples.rs` runs against a real cluster.
//!
//! `cargo test --workspace` builds every member's examples into `<target>/<profile
//! dir>/examples/` before it runs a test, so they are found there. A run of this crate's tests
//! alone (`cargo test -p cairn-tests --test client_examples`) does not build them: then, as
//! [`crate::bin`] does for the `cairn` binary, the harness runs `cargo build -p cairn-client
//! --examples` (same profile and target directory as the test executable), once per test
//! process, unless the example asked for is newer than every workspace source. Set
//! `CAIRN_TESTS_BUILD=1` ([`crate::bin::BUILD_ENV`]) to always build.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::bin::{BUILD_ENV, cargo_build, is_fresh, test_profile_dir};

/// The package whose examples these are.
const PACKAGE: &str = "cairn-client";

/// The path of the client example `name` (`client/examples/NAME.rs`), built first if it is
/// missing or older than a workspace source.
///
/// # Panics
/// If the build fails, or the example is still not there after it (no such example).
pub fn client_example(name: &str) -> PathBuf {
    /// Whether this process has run the build (it builds every example at once).
    static BUILT: Mutex<bool> = Mutex::new(false);
    let (profile_dir, _) = test_profile_dir();
    let path = profile_dir.join("examples").join(name);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !*built && (std::env::var_os(BUILD_ENV).is_some() || !is_fresh(&path)) {
        eprintln!(
            "cairn-tests: {} is missing or may be older than a source: building the examples \
             of {PACKAGE} (cargo rebuilds only what is out of date)",
            path.display()
        );
        cargo_build(&["-p", PACKAGE, "--examples"]);
        *built = true;
    }
    assert!(
        path.is_file(),
        "cairn-tests: no example binary {} (after `cargo build -p {PACKAGE} --examples`): is \
         there a client/examples/{name}.rs?",
        path.display()
    );
    path
}
