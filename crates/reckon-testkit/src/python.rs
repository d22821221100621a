//! The project's Python test helpers, installed by its own scripts.

use std::path::PathBuf;
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The virtualenv's python with the `deltalake` package (`scripts/python-delta.sh`
/// installs it), or `None` after printing SKIP when it cannot be installed; with
/// `RECKON_REQUIRE_SERVICES` set (CI) that is a panic instead.
pub fn deltalake() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/python-delta.sh"))
        .output()
        .ok()?;
    if out.status.success() {
        return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    assert!(
        std::env::var("RECKON_REQUIRE_SERVICES").is_err(),
        "the deltalake Python package could not be installed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "SKIP: the deltalake Python package is not available (scripts/python-delta.sh failed)"
    );
    None
}
