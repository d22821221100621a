//! A process killed while fjall was creating the store (after its first journal, before
//! its version marker) leaves files fjall's next open fails on ("0.jnl: File exists").
//! The store holds nothing then, so opening it again creates it afresh. Seen in CI: the
//! `cli_crash` test killed `reckon ingest` 20 ms after start.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_store::{Error, Store};

/// The files fjall's `Database::create_new` has written when it is killed before the
/// version marker: the lock file, an empty `keyspaces/`, a preallocated `0.jnl`.
fn interrupted_create(dir: &std::path::Path, marker: &[u8]) {
    std::fs::write(dir.join("lock"), b"").unwrap();
    std::fs::create_dir(dir.join("keyspaces")).unwrap();
    let jnl = std::fs::File::create(dir.join("0.jnl")).unwrap();
    jnl.set_len(4 * 1024 * 1024).unwrap();
    if !marker.is_empty() {
        std::fs::write(dir.join("version"), marker).unwrap();
    }
}

#[test]
fn a_store_killed_before_fjalls_version_marker_opens_as_a_new_store() {
    let dir = tempdir();
    interrupted_create(dir.path(), b"");
    let store = Store::open(dir.path()).unwrap();
    let batches = fixture_batches();
    for b in &batches {
        store.commit(b.clone()).unwrap();
    }
    let n = store.raw_scan(STREAM).unwrap().len();
    assert!(n > 0);
    drop(store);
    // And it is an ordinary store afterwards: reopened, the data is there.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.raw_scan(STREAM).unwrap().len(), n);
}

#[test]
fn a_marker_cut_short_is_an_interrupted_create_too() {
    let dir = tempdir();
    interrupted_create(dir.path(), b"FJ");
    Store::open(dir.path()).unwrap();
}

#[test]
fn a_missing_marker_with_keyspace_data_is_corruption_not_a_fresh_start() {
    let dir = tempdir();
    interrupted_create(dir.path(), b"");
    std::fs::create_dir(dir.path().join("keyspaces").join("0")).unwrap();
    let e = Store::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(dir.path().join("0.jnl").exists(), "nothing is removed then");
}

#[test]
fn a_store_being_created_by_another_process_is_not_cleared() {
    let dir = tempdir();
    interrupted_create(dir.path(), b"");
    let held = std::fs::File::open(dir.path().join("lock")).unwrap();
    held.lock().unwrap();
    let e = Store::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    assert!(dir.path().join("0.jnl").exists());
}
