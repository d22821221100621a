//! Retention deletes raw events and their ids, and keeps results and dead letters.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::{EventId, EventTime, ProcessingTime};
use reckon_store::{CommitBatch, DeadLetter, JournalEntry, Store};
use std::sync::Arc;

#[test]
fn retention_deletes_raw_events_and_ids_but_keeps_results() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let mut events = Vec::new();
    for i in 0..5u32 {
        for h in -2..4i64 {
            let id = format!("{i}-{h}");
            events.push(rec(event(STREAM, &key(i), h * HOUR, 1.0, Some(&id))));
        }
    }
    events.push(rec(event("other", &key(0), -HOUR, 1.0, Some("0--1"))));
    let dl = DeadLetter {
        pipeline: Arc::from(PIPELINE),
        stream: Arc::from(STREAM),
        event: event(STREAM, &key(0), -9 * HOUR, 1.0, None),
        kind: "beyond_retention".into(),
        reason: "old".into(),
        at: ProcessingTime(1),
    };
    store
        .commit(CommitBatch {
            events,
            emissions: vec![
                emission(&key(0), -2, 1, 1, 1.0),
                emission(&key(0), 3, 1, 1, 1.0),
            ],
            dead_letters: vec![dl.clone()],
            ..CommitBatch::default()
        })
        .unwrap();

    // Everything before 1h goes: hours -2, -1, 0 of 5 keys.
    assert_eq!(store.apply_retention(STREAM, EventTime(HOUR)).unwrap(), 15);
    for i in 0..5u32 {
        let left = store
            .raw_range(STREAM, &key(i), EventTime::MIN, EventTime::MAX)
            .unwrap();
        let hours: Vec<i64> = left.iter().map(|e| e.time.0 / HOUR).collect();
        assert_eq!(hours, vec![1, 2, 3], "key {i}");
    }
    let id = |s: &str| EventId(Arc::from(s));
    let (gone, kept) = (id("3--2"), id("3-1"));
    assert_eq!(
        store.ids_seen(STREAM, &[&gone, &kept]).unwrap(),
        vec![false, true]
    );
    // Other streams, results and dead letters are untouched.
    assert_eq!(store.raw_scan("other").unwrap().len(), 1);
    assert_eq!(store.ids_seen("other", &[&id("0--1")]).unwrap(), vec![true]);
    assert!(
        store
            .latest(PIPELINE, &key(0), EventTime(-2 * HOUR))
            .unwrap()
            .is_some()
    );
    assert_eq!(store.dead_letters(STREAM).unwrap(), vec![dl]);
    // The journal leaves out events that retention removed.
    let j = store.journal_after(0).unwrap();
    assert_eq!(j.len(), 15 + 1);
    assert!(j.iter().all(|(_, e)| match e {
        JournalEntry::Event(r) => r.event.time.0 >= HOUR || &*r.event.stream == "other",
        JournalEntry::Tick { .. } => false,
    }));
    // Idempotent, and durable.
    assert_eq!(store.apply_retention(STREAM, EventTime(HOUR)).unwrap(), 0);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.raw_scan(STREAM).unwrap().len(), 15);
    assert_eq!(store.ids_seen(STREAM, &[&gone]).unwrap(), vec![false]);
}

#[test]
fn an_id_stays_seen_while_a_newer_event_with_it_is_kept() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    // The same id at two times (a duplicate delivered with a corrected timestamp).
    store
        .commit(CommitBatch {
            events: vec![rec(event(STREAM, &k, 0, 1.0, Some("dup")))],
            ..CommitBatch::default()
        })
        .unwrap();
    store
        .commit(CommitBatch {
            events: vec![rec(event(STREAM, &k, 10 * HOUR, 1.0, Some("dup")))],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(store.apply_retention(STREAM, EventTime(HOUR)).unwrap(), 1);
    let dup = EventId(Arc::from("dup"));
    assert_eq!(store.ids_seen(STREAM, &[&dup]).unwrap(), vec![true]);
    assert_eq!(
        store.apply_retention(STREAM, EventTime(11 * HOUR)).unwrap(),
        1
    );
    assert_eq!(store.ids_seen(STREAM, &[&dup]).unwrap(), vec![false]);
}

#[test]
fn retention_over_many_keys_and_chunks() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    // 25,000 events over 500 keys: more than one deletion chunk.
    let events: Vec<_> = (0..25_000i64)
        .map(|n| rec(event(STREAM, &key((n % 500) as u32), n, 1.0, None)))
        .collect();
    store
        .commit(CommitBatch {
            events,
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(
        store.apply_retention(STREAM, EventTime(20_000)).unwrap(),
        20_000
    );
    let left = store.raw_scan(STREAM).unwrap();
    assert_eq!(left.len(), 5_000);
    assert!(left.iter().all(|e| e.time.0 >= 20_000));
}
