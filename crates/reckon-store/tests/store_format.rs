//! The format version: recorded on create, checked on open, newer refused.
#![allow(clippy::unwrap_used)]

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use reckon_store::{Error, FORMAT_VERSION, Store};
use std::path::Path;

fn meta_version(path: &Path) -> Option<Vec<u8>> {
    let db = Database::builder(path).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    meta.get("format_version").unwrap().map(|v| v.to_vec())
}

fn set_meta_version(path: &Path, bytes: &[u8]) {
    let db = Database::builder(path).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    meta.insert("format_version", bytes).unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

#[test]
fn a_new_store_records_its_format_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert_eq!(
        meta_version(dir.path()),
        Some(FORMAT_VERSION.to_be_bytes().to_vec())
    );
    // Reopening a store of the current version works.
    drop(Store::open(dir.path()).unwrap());
}

#[test]
fn a_newer_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    set_meta_version(dir.path(), &(FORMAT_VERSION + 1).to_be_bytes());
    let e = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(e, Error::FormatTooNew { found, supported } if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "store format 2 is newer than this reckon supports (1); upgrade reckon"
    );
    // Refusing changed nothing: the newer version is still recorded.
    assert_eq!(
        meta_version(dir.path()),
        Some((FORMAT_VERSION + 1).to_be_bytes().to_vec())
    );
}

#[test]
fn a_damaged_format_version_is_corrupt() {
    for bad in [&0u32.to_be_bytes()[..], &[1, 2, 3]] {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        set_meta_version(dir.path(), bad);
        let e = Store::open(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{bad:?}: {e:?}");
        assert!(e.to_string().contains("format_version"), "{e}");
    }
}

#[test]
fn the_store_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let e = Store::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Fjall(fjall::Error::Locked)), "{e:?}");
    drop(store);
    Store::open(dir.path()).unwrap();
}
