//! Log path rules.

use crate::error::Error;
use crate::limits::PATH_BYTES_MAX;

/// Checks a log path: it starts with `/`, has no empty segment (no `//`, no trailing `/`), is
/// at most [`PATH_BYTES_MAX`] bytes and holds no control characters.
pub(crate) fn check_path(path: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadPath {
            path: path.chars().take(80).collect(),
            reason,
        })
    };
    if path.len() > PATH_BYTES_MAX {
        return bad("longer than 1024 bytes");
    }
    let Some(rest) = path.strip_prefix('/') else {
        return bad("must start with '/'");
    };
    if rest.split('/').any(str::is_empty) {
        return bad("empty path segment");
    }
    if path.chars().any(char::is_control) {
        return bad("control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The naming rules: leading slash, no empty segments, a byte limit, no control characters.
    #[test]
    fn paths() {
        for good in ["/a", "/orders/eu", "/a.b-c_d/e f/ü"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/", "a", "a/b", "//a", "/a//b", "/a/", "/a\nb"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        let long = format!("/{}", "x".repeat(PATH_BYTES_MAX - 1));
        assert!(check_path(&long).is_ok());
        assert!(check_path(&format!("{long}x")).is_err());
    }
}
