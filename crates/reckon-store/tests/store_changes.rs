//! The change feed and the sinks' cursors: every stored version appears once, in commit
//! order; rejected versions never; a resumed reader misses nothing and repeats nothing.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_store::{CommitBatch, SinkState, Store};
use std::sync::Arc;

fn feed(store: &Store, after: u64, pipeline: Option<&str>) -> Vec<(u64, String, i64, u32)> {
    store
        .changes_after(after, pipeline, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(n, e)| {
            (
                n,
                format!("{}/{}", e.pipeline, e.key.as_str()),
                e.window.start.0 / HOUR,
                e.version.0,
            )
        })
        .collect()
}

#[test]
fn every_stored_version_gets_one_change_number_in_commit_order() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let (k1, k2) = (key(1), key(2));
    let c1 = store
        .commit(CommitBatch {
            emissions: vec![emission(&k1, 0, 1, 100, 1.0), emission(&k2, 0, 1, 100, 2.0)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(c1.last_change, 2);
    let mut other = emission(&k1, 0, 1, 150, 7.0);
    other.pipeline = Arc::from("other");
    let c2 = store
        .commit(CommitBatch {
            emissions: vec![
                emission(&k1, 0, 2, 200, 1.5),
                // A replayed (equal) and an older version: rejected by the version
                // guard, so never in the feed.
                emission(&k2, 0, 1, 100, 2.0),
                emission(&k1, 0, 1, 100, 1.0),
                other,
            ],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(c2.last_change, 4);
    assert_eq!(store.last_change(), 4);
    let all = vec![
        (1, format!("{PIPELINE}/i=1"), 0, 1),
        (2, format!("{PIPELINE}/i=2"), 0, 1),
        (3, format!("{PIPELINE}/i=1"), 0, 2),
        (4, "other/i=1".to_string(), 0, 1),
    ];
    assert_eq!(feed(&store, 0, None), all);
    // Resuming after any number gives exactly the rest.
    for cut in 0..=4 {
        assert_eq!(feed(&store, cut, None), all[cut as usize..].to_vec());
    }
    assert_eq!(feed(&store, 0, Some("other")), vec![all[3].clone()]);
    assert_eq!(feed(&store, 0, Some(PIPELINE)), all[..3].to_vec());
    // The limit cuts in change order.
    let first_two: Vec<u64> = store
        .changes_after(0, None, 2)
        .unwrap()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(first_two, vec![1, 2]);
    // The emission itself comes back whole.
    assert_eq!(
        store.changes_after(2, None, 1).unwrap()[0].1,
        emission(&k1, 0, 2, 200, 1.5)
    );
    // An empty commit reports the newest change.
    assert_eq!(store.commit(CommitBatch::default()).unwrap().last_change, 4);

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.last_change(), 4);
    assert_eq!(feed(&store, 0, None), all);
    let c3 = store
        .commit(CommitBatch {
            emissions: vec![emission(&k2, 0, 2, 300, 2.5)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(c3.last_change, 5, "numbers continue after a reopen");
}

#[test]
fn a_sink_cursor_and_its_deliveries_survive_a_reopen() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.sink_state("slack").unwrap(), SinkState::default());
    store.record_delivery("slack", 1, 7, b"{\"a\":1}").unwrap();
    store.record_delivery("slack", 2, 9, b"{\"a\":2}").unwrap();
    store.record_delivery("slack2", 1, 3, b"x").unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.sink_state("slack").unwrap(),
        SinkState {
            cursor: 9,
            last_delivery: 2
        }
    );
    assert_eq!(
        store.deliveries("slack", 10).unwrap(),
        vec![(2, b"{\"a\":2}".to_vec()), (1, b"{\"a\":1}".to_vec())]
    );
    assert_eq!(store.deliveries("slack", 1).unwrap().len(), 1);
    assert_eq!(
        store.deliveries("slack2", 10).unwrap(),
        vec![(1, b"x".to_vec())]
    );
}

#[test]
fn catalog_entries_are_put_and_removed_atomically_and_survive_a_reopen() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let put = |k: &str, v: &str| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
    store
        .commit(CommitBatch {
            catalog: vec![
                put("tenant/acme", "1"),
                put("token/a", "2"),
                put("token/b", "3"),
            ],
            ..CommitBatch::default()
        })
        .unwrap();
    store
        .commit(CommitBatch {
            catalog: vec![(b"token/a".to_vec(), None), put("token/b", "4")],
            ..CommitBatch::default()
        })
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.catalog(b"token/").unwrap(),
        vec![(b"token/b".to_vec(), b"4".to_vec())]
    );
    assert_eq!(store.catalog(b"").unwrap().len(), 2);
}

#[test]
fn a_filtered_read_reports_how_far_it_looked_so_readers_skip_other_pipelines() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let mut ems = Vec::new();
    for k in 0..50u32 {
        let mut e = emission(&key(k), 0, 1, 100, 1.0);
        e.pipeline = Arc::from("busy");
        ems.push(e);
    }
    ems.push(emission(&key(1), 0, 1, 100, 1.0));
    store
        .commit(CommitBatch {
            emissions: ems,
            ..CommitBatch::default()
        })
        .unwrap();
    let page = store.changes_page(0, Some(PIPELINE), 10).unwrap();
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].0, 51);
    assert_eq!(page.scanned_to, 51);
    // Nothing of PIPELINE among the first 50: the reader still moves past them.
    let page = store.changes_page(0, Some(PIPELINE), 0).unwrap();
    assert!(page.changes.is_empty());
    let page = store.changes_page(51, Some(PIPELINE), 10).unwrap();
    assert_eq!(
        (page.changes.len(), page.scanned_to),
        (0, 51),
        "nothing after the newest"
    );
    let page = store.changes_page(0, Some("busy"), 5).unwrap();
    assert_eq!((page.changes.len(), page.scanned_to), (5, 5));
}

#[test]
fn the_version_a_correction_replaced_is_the_newest_older_one() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    for (v, mean) in [(1, 1.0), (2, 2.0), (4, 4.0)] {
        store
            .commit(CommitBatch {
                emissions: vec![emission(&k, 0, v, 100 * i64::from(v), mean)],
                ..CommitBatch::default()
            })
            .unwrap();
    }
    let replaced = |v: u32| {
        store
            .replaced_by(&emission(&k, 0, v, 0, 0.0))
            .unwrap()
            .map(|e| e.version.0)
    };
    assert_eq!(replaced(1), None);
    assert_eq!(replaced(2), Some(1));
    assert_eq!(replaced(4), Some(2), "versions need not be consecutive");
    assert_eq!(replaced(5), Some(4));
    assert_eq!(
        store
            .replaced_by(&emission(&k, 0, 4, 0, 0.0))
            .unwrap()
            .unwrap(),
        emission(&k, 0, 2, 200, 2.0)
    );
    assert_eq!(
        store.replaced_by(&emission(&key(2), 0, 3, 0, 0.0)).unwrap(),
        None
    );
}
