//! The version guard: a result is stored only if it is newer than the stored latest.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::{EventTime, Value};
use reckon_store::{CommitBatch, Store};

fn commit(store: &Store, emissions: Vec<reckon_core::Emission>) {
    store
        .commit(CommitBatch {
            emissions,
            ..CommitBatch::default()
        })
        .unwrap();
}

fn versions(store: &Store) -> Vec<u32> {
    store
        .history(PIPELINE, &key(1), EventTime(0))
        .unwrap()
        .iter()
        .map(|e| e.version.0)
        .collect()
}

#[test]
fn older_or_equal_versions_are_ignored() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    commit(&store, vec![emission(&k, 0, 1, 10, 1.0)]);
    commit(&store, vec![emission(&k, 0, 3, 30, 3.0)]);
    // A replay of v1 with other values, an equal v3 and a late v2: all ignored.
    commit(
        &store,
        vec![
            emission(&k, 0, 1, 40, 100.0),
            emission(&k, 0, 3, 40, 300.0),
            emission(&k, 0, 2, 40, 200.0),
        ],
    );
    assert_eq!(versions(&store), vec![1, 3]);
    let latest = store.latest(PIPELINE, &k, EventTime(0)).unwrap().unwrap();
    assert_eq!(latest.value("mean"), Some(&Value::F64(3.0)));
    assert_eq!(latest.emitted_at.0, 30);
    // The guard holds after a reopen too (it reads what is stored).
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    commit(&store, vec![emission(&k, 0, 3, 50, 999.0)]);
    assert_eq!(versions(&store), vec![1, 3]);
    commit(&store, vec![emission(&k, 0, 4, 60, 4.0)]);
    assert_eq!(versions(&store), vec![1, 3, 4]);
}

#[test]
fn corrections_of_one_window_in_one_batch_coalesce_into_the_newest() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    commit(
        &store,
        vec![
            emission(&k, 0, 2, 20, 2.0),
            emission(&k, 0, 1, 10, 1.0), // older than the v2 just before it
            emission(&k, 0, 2, 30, 2.5), // equal
            emission(&k, 0, 5, 50, 5.0),
        ],
    );
    // One version per window per commit: v2 was replaced inside the same atomic
    // commit, so no reader could have seen it; one change-feed row.
    assert_eq!(versions(&store), vec![5]);
    assert_eq!(store.last_change(), 1);
    let latest = store.latest(PIPELINE, &k, EventTime(0)).unwrap().unwrap();
    assert_eq!(latest.value("mean"), Some(&Value::F64(5.0)));
    // A duplicate of the newest inside a batch is stored once, the first one.
    commit(
        &store,
        vec![emission(&k, 0, 6, 60, 6.0), emission(&k, 0, 6, 61, 6.5)],
    );
    assert_eq!(versions(&store), vec![5, 6]);
    let latest = store.latest(PIPELINE, &k, EventTime(0)).unwrap().unwrap();
    assert_eq!(latest.emitted_at.0, 60);
    // Other windows and pipelines are independent.
    let mut other = emission(&k, 0, 1, 10, 1.0);
    other.pipeline = "other".into();
    commit(&store, vec![other.clone(), emission(&k, 1, 1, 10, 1.0)]);
    assert_eq!(
        store.latest("other", &k, EventTime(0)).unwrap(),
        Some(other)
    );
    assert_eq!(versions(&store), vec![5, 6]);
}

#[test]
fn tamper_hook_overwrites_a_stored_version_for_verify_tests() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    commit(&store, vec![emission(&k, 0, 1, 10, 1.0)]);
    let mut forged = emission(&k, 0, 1, 10, 1.0);
    forged.count = 12345;
    store.overwrite_result_for_tests(&forged).unwrap();
    assert_eq!(
        store.latest(PIPELINE, &k, EventTime(0)).unwrap(),
        Some(forged)
    );
    assert_eq!(versions(&store), vec![1]);
}
