//! Puts the commit the binary is built from into `CAIRN_COMMIT`, for `cairn --version` and every
//! role's first log line: `git rev-parse --short=12 HEAD`, or `unknown` outside a git checkout.

use std::process::Command;

/// One line of `git ARGS` run in this crate's directory, if git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CAIRN_COMMIT={commit}");
    // Built again when HEAD moves: a commit, a checkout (paths resolved for worktrees too).
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
