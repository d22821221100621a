//! The committer is the store's only writer: sink deliveries and retention are parts of
//! a commit, written in the group's one storage batch and fsync; nothing else in the
//! crate opens a write batch.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::{EventId, EventTime};
use reckon_store::{
    CommitBatch, DELIVERIES_KEPT, Delivery, RETENTION_ROWS_PER_COMMIT, SinkState, Store,
};
use std::sync::Arc;

fn delivery(sink: &str, id: u64, cursor: u64) -> Delivery {
    Delivery {
        sink: Arc::from(sink),
        id,
        cursor,
        record: format!("{{\"id\":{id}}}").into_bytes(),
    }
}

#[test]
fn a_delivery_and_its_cursor_commit_with_an_ingest_batch_in_one_fsync() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    let before = store.stats();
    let c = store
        .commit(CommitBatch {
            events: vec![rec(event(STREAM, &k, 10, 1.0, Some("a")))],
            emissions: vec![emission(&k, 0, 1, 100, 1.0)],
            deliveries: vec![delivery("slack", 1, 5), delivery("slack", 2, 7)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!((c.first_seq, c.last_seq, c.last_change), (1, 1, 1));
    let after = store.stats();
    assert_eq!(after.commits - before.commits, 1);
    assert_eq!(after.fsyncs - before.fsyncs, 1, "one fsync for all of it");

    // A staged delivery rides with the next commit: still one fsync for both.
    let staged = store.stage(CommitBatch {
        deliveries: vec![delivery("slack", 3, 9)],
        ..CommitBatch::default()
    });
    assert_eq!(
        store.sink_state("slack").unwrap().last_delivery,
        2,
        "not yet"
    );
    store
        .commit(CommitBatch {
            events: vec![rec(event(STREAM, &k, 20, 2.0, None))],
            ..CommitBatch::default()
        })
        .unwrap();
    staged.wait().unwrap();
    let end = store.stats();
    assert_eq!(end.commits - after.commits, 2);
    assert_eq!(
        end.fsyncs - after.fsyncs,
        1,
        "the staged batch shared the fsync"
    );

    // A staged batch nobody carries is committed by its own wait.
    store
        .stage(CommitBatch {
            deliveries: vec![delivery("pager", 1, 1)],
            ..CommitBatch::default()
        })
        .wait()
        .unwrap();

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.sink_state("slack").unwrap(),
        SinkState {
            cursor: 9,
            last_delivery: 3
        }
    );
    assert_eq!(store.sink_state("pager").unwrap().cursor, 1);
    let ids: Vec<u64> = store
        .deliveries("slack", 10)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(ids, vec![3, 2, 1]);
    assert_eq!(store.raw_scan(STREAM).unwrap().len(), 2);
    assert_eq!(store.last_change(), 1);
}

#[test]
fn a_failed_fsync_loses_the_delivery_with_the_batch() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    store.fail_next_persist_for_tests();
    let staged = store.stage(CommitBatch {
        deliveries: vec![delivery("slack", 1, 5)],
        ..CommitBatch::default()
    });
    assert!(
        store
            .commit(CommitBatch {
                events: vec![rec(event(STREAM, &key(1), 10, 1.0, None))],
                ..CommitBatch::default()
            })
            .is_err()
    );
    assert!(matches!(
        staged.wait(),
        Err(reckon_store::Error::Poisoned(_))
    ));
    assert!(store.record_delivery("slack", 2, 6, b"x").is_err());
}

#[test]
fn deliveries_beyond_the_kept_number_are_pruned_even_within_one_commit() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let n = DELIVERIES_KEPT + 5;
    store
        .commit(CommitBatch {
            deliveries: (1..=n).map(|id| delivery("slack", id, id)).collect(),
            ..CommitBatch::default()
        })
        .unwrap();
    let kept = store.deliveries("slack", usize::MAX).unwrap();
    assert_eq!(kept.len() as u64, DELIVERIES_KEPT);
    assert_eq!(kept.last().unwrap().0, 6, "the oldest five were pruned");
    assert_eq!(
        store.sink_state("slack").unwrap().cursor,
        n,
        "the last cursor wins"
    );
}

#[test]
fn retention_in_a_commit_deletes_older_rows_of_many_keys_in_bounded_steps() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    // 2,000 keys × 12 hours; retention before hour 7 deletes 7 rows per key: 14,000,
    // more than one commit's share.
    const KEYS: u32 = 2_000;
    let mut events = Vec::new();
    for i in 0..KEYS {
        for h in 0..12i64 {
            let id = format!("{i}-{h}");
            events.push(rec(event(STREAM, &key(i), h * HOUR, 1.0, Some(&id))));
        }
    }
    events.push(rec(event("other", &key(0), 0, 1.0, None)));
    store
        .commit(CommitBatch {
            events,
            ..CommitBatch::default()
        })
        .unwrap();
    let expected = u64::from(KEYS) * 7;
    assert!(expected > RETENTION_ROWS_PER_COMMIT as u64);

    let entry = (Arc::<str>::from(STREAM), EventTime(7 * HOUR));
    let fsyncs = store.stats().fsyncs;
    let first = store
        .commit(CommitBatch {
            // Also an old event in the same commit: this group's rows are not seen by
            // its retention (a later one deletes it), and its id stays.
            events: vec![rec(event(STREAM, &key(0), HOUR / 2, 1.0, Some("late")))],
            retention: vec![entry.clone()],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(store.stats().fsyncs - fsyncs, 1);
    assert_eq!(first.retention_deleted, RETENTION_ROWS_PER_COMMIT as u64);
    assert!(first.retention_pending);

    // Right after that commit: the new old row and its id are still there.
    let late = EventId(Arc::from("late"));
    assert_eq!(store.ids_seen(STREAM, &[&late]).unwrap(), vec![true]);

    // The rest is carried over: an unrelated commit goes on with it...
    let unrelated = store
        .commit(CommitBatch {
            deliveries: vec![delivery("slack", 1, 1)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(unrelated.retention_deleted, 0);
    assert!(!unrelated.retention_pending);
    assert_eq!(store.stats().retention_deleted, expected);
    // ...and the next batch naming the stream gets that count, plus what it deletes
    // itself (it scans again: the late row goes now).
    let rest = store
        .commit(CommitBatch {
            retention: vec![entry.clone()],
            ..CommitBatch::default()
        })
        .unwrap();
    assert!(!rest.retention_pending);
    assert_eq!(
        first.retention_deleted + rest.retention_deleted,
        expected + 1
    );
    assert_eq!(store.stats().retention_deleted, expected + 1);

    let left = store.raw_scan(STREAM).unwrap();
    assert_eq!(left.len() as u64, u64::from(KEYS) * 5);
    assert!(left.iter().all(|e| e.time.0 >= 7 * HOUR));
    let id = |s: &str| EventId(Arc::from(s));
    let ids = [id("5-6"), id("5-7"), id("late")];
    assert_eq!(
        store
            .ids_seen(STREAM, &ids.iter().collect::<Vec<_>>())
            .unwrap(),
        vec![false, true, false]
    );
    assert_eq!(store.raw_scan("other").unwrap().len(), 1);

    // The wrapper: idempotent; everything durable.
    assert_eq!(
        store.apply_retention(STREAM, EventTime(7 * HOUR)).unwrap(),
        0
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.raw_scan(STREAM).unwrap().len() as u64,
        u64::from(KEYS) * 5
    );
    assert_eq!(store.ids_seen(STREAM, &[&late]).unwrap(), vec![false]);
    assert_eq!(store.ids_seen(STREAM, &[&id("5-7")]).unwrap(), vec![true]);
}

/// Every `batch()` (a fjall write batch) in the store's source is the committer's,
/// except the ones listed here by function, which run when no committer can be writing
/// (opening a store before the committer starts; `reckon repair`, offline).
#[test]
fn no_code_outside_the_committer_opens_a_write_batch() {
    let allowed: &[(&str, &str)] = &[
        ("store.rs", "migrate_v1_changes"),
        ("store.rs", "migrate_v2_raw_blocks"),
        ("raw.rs", "migrate_v2_rows"),
        ("store.rs", "remove_raw_after"),
        ("store.rs", "remove_dead_letters"),
        ("store.rs", "remove_windows"),
    ];
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut committer = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut current_fn = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(i) = t.find("fn ")
                && (t.starts_with("fn ") || t.starts_with("pub") || t.starts_with("async"))
            {
                current_fn = t[i + 3..]
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
            if t.starts_with("//") {
                continue;
            }
            for pat in [".batch()", "persist(", "OwnedWriteBatch"] {
                if t.contains(pat) {
                    if name == "commit.rs" {
                        committer += 1;
                    } else if pat == ".batch()" {
                        found.push((name.clone(), current_fn.clone()));
                    }
                }
            }
        }
    }
    assert!(committer >= 2, "the committer's own write batch and fsync");
    found.sort();
    let mut allowed: Vec<(String, String)> = allowed
        .iter()
        .map(|(f, n)| (f.to_string(), n.to_string()))
        .collect();
    allowed.sort();
    assert_eq!(
        found, allowed,
        "a write batch outside the committer: put it into a CommitBatch instead"
    );
}
