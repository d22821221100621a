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
        "store format 5 is newer than this reckon supports (4); upgrade reckon"
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
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    drop(store);
    Store::open(dir.path()).unwrap();
}

#[test]
fn a_version_1_store_gets_a_change_feed_of_its_results_in_emission_order() {
    use reckon_core::{
        Checksum, Emission, EmissionKind, EventTime, Key, ProcessingTime, Version, Watermark,
        Window,
    };
    use reckon_store::CommitBatch;
    let dir = tempfile::tempdir().unwrap();
    let em = |i: u32, v: u32, at: i64| Emission {
        pipeline: "p".into(),
        key: Key::from_tags([("i", i.to_string().as_str())]).unwrap(),
        window: Window {
            start: EventTime(0),
            end: EventTime(10),
        },
        version: Version(v),
        kind: EmissionKind::OnTime,
        columns: std::sync::Arc::from(vec![std::sync::Arc::<str>::from("n")]),
        values: vec![None],
        count: 1,
        checksum: Checksum { count: 1, hash: 1 },
        emitted_at: ProcessingTime(at),
        watermark: Watermark(EventTime(10)),
        states: None,
    };
    let store = Store::open(dir.path()).unwrap();
    // Two commits: the versions of one window inside one commit would coalesce.
    for emissions in [
        vec![em(1, 1, 30), em(2, 1, 10)],
        vec![em(1, 2, 50), em(3, 1, 20)],
    ] {
        store
            .commit(CommitBatch {
                emissions,
                ..CommitBatch::default()
            })
            .unwrap();
    }
    drop(store);
    // Make it a version-1 store: no change feed, version 1.
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let changes = db
            .keyspace("changes", KeyspaceCreateOptions::default)
            .unwrap();
        let keys: Vec<_> = changes.iter().map(|kv| kv.key().unwrap()).collect();
        for k in keys {
            changes.remove(k).unwrap();
        }
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        meta.remove("last_change").unwrap();
        meta.insert("format_version", 1u32.to_be_bytes()).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let got: Vec<(u64, String, u32, i64)> = store
        .changes_after(0, None, 100)
        .unwrap()
        .into_iter()
        .map(|(n, e)| (n, e.key.as_str().to_string(), e.version.0, e.emitted_at.0))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "i=2".to_string(), 1, 10),
            (2, "i=3".to_string(), 1, 20),
            (3, "i=1".to_string(), 1, 30),
            (4, "i=1".to_string(), 2, 50),
        ]
    );
    assert_eq!(store.last_change(), 4);
    drop(store);
    assert_eq!(
        meta_version(dir.path()),
        Some(FORMAT_VERSION.to_be_bytes().to_vec())
    );
}
