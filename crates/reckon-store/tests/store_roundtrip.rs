//! Everything committed can be read back, before and after a reopen.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::{DeadLetterReason, EventId, EventTime, Key, ProcessingTime, Watermark, Window};
use reckon_store::{Checkpoint, CommitBatch, Committed, DeadLetter, JournalEntry, Store};
use std::sync::Arc;

fn times(events: &[reckon_core::Event]) -> Vec<i64> {
    events.iter().map(|e| e.time.0).collect()
}

#[test]
fn events_come_back_by_key_and_time_range_in_time_then_seq_order() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let (k1, k2) = (key(1), key(2));
    let batch = CommitBatch {
        events: vec![
            rec(event(STREAM, &k1, 30, 1.0, Some("a"))),
            rec(event(STREAM, &k1, -10, 2.0, None)),
            rec(event(STREAM, &k2, 20, 3.0, None)),
            rec(event(STREAM, &k1, 30, 4.0, None)), // same time: after the first by seq
            rec(event(STREAM, &k1, 100, 5.0, None)),
            rec(event("water_level_2", &k1, 50, 6.0, None)), // a stream sharing a prefix
        ],
        ..CommitBatch::default()
    };
    let c = store.commit(batch.clone()).unwrap();
    assert_eq!(
        c,
        Committed {
            first_seq: 1,
            last_seq: 6,
            last_change: 0,
            retention_deleted: 0,
            retention_pending: false,
        }
    );
    assert_eq!(store.last_seq(), 6);

    let check = |store: &Store| {
        let got = store
            .raw_range(STREAM, &k1, EventTime(-10), EventTime(100))
            .unwrap();
        assert_eq!(times(&got), vec![-10, 30, 30]);
        assert_eq!(got[1], batch.events[0].event);
        assert_eq!(got[2], batch.events[3].event);
        assert!(
            store
                .raw_range(STREAM, &k1, EventTime(31), EventTime(100))
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .raw_range(STREAM, &k1, EventTime(50), EventTime(0))
                .unwrap()
                .is_empty()
        );
        let all = store
            .raw_range(STREAM, &k1, EventTime::MIN, EventTime::MAX)
            .unwrap();
        assert_eq!(times(&all), vec![-10, 30, 30, 100]);
        let scan = store.raw_scan(STREAM).unwrap();
        let keyed: Vec<(String, i64)> =
            scan.iter().map(|e| (e.key.to_string(), e.time.0)).collect();
        assert_eq!(
            keyed,
            vec![
                ("i=1".into(), -10),
                ("i=1".into(), 30),
                ("i=1".into(), 30),
                ("i=1".into(), 100),
                ("i=2".into(), 20)
            ]
        );
        assert_eq!(store.raw_scan("water_level_2").unwrap().len(), 1);
        assert!(store.raw_scan("water").unwrap().is_empty());
        let recs = store.raw_records(STREAM).unwrap();
        assert_eq!(recs[1], batch.events[0]);
    };
    check(&store);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check(&store);
    assert_eq!(store.last_seq(), 6);
    let c = store
        .commit(CommitBatch {
            events: vec![rec(event(STREAM, &k2, 1, 0.5, None))],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(
        c,
        Committed {
            first_seq: 7,
            last_seq: 7,
            last_change: 0,
            retention_deleted: 0,
            retention_pending: false,
        },
        "seqs continue after reopen"
    );
}

#[test]
fn odd_keys_and_streams_are_kept_apart() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let nul = Key::from_tags([("a", "x\0y")]).unwrap();
    let nul_prefix = Key::from_tags([("a", "x")]).unwrap();
    let commas = Key::from_tags([("a,b", "c=d"), ("e", "")]).unwrap();
    let empty = Key::empty();
    let keys = [&nul, &nul_prefix, &commas, &empty];
    let events: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| rec(event("s\0t", k, i as i64, i as f64, None)))
        .collect();
    store
        .commit(CommitBatch {
            events,
            ..CommitBatch::default()
        })
        .unwrap();
    for (i, k) in keys.iter().enumerate() {
        let got = store
            .raw_range("s\0t", k, EventTime::MIN, EventTime::MAX)
            .unwrap();
        assert_eq!(times(&got), vec![i as i64], "key {k}");
        assert_eq!(&got[0].key, *k);
    }
    assert!(store.raw_scan("s").unwrap().is_empty());
    let scanned: Vec<Key> = store
        .raw_scan("s\0t")
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let mut sorted: Vec<Key> = keys.iter().map(|k| (*k).clone()).collect();
    sorted.sort();
    assert_eq!(scanned, sorted, "raw_scan is in key order");
}

#[test]
fn journal_holds_events_and_ticks_in_seq_order_and_checkpoints_prune_it() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(7);
    let b1 = CommitBatch {
        events: (0..4)
            .map(|t| rec(event(STREAM, &k, t, 1.0, None)))
            .collect(),
        ticks: vec![(Arc::from("a"), ProcessingTime(99))],
        ..CommitBatch::default()
    };
    assert_eq!(
        store.commit(b1.clone()).unwrap(),
        Committed {
            first_seq: 1,
            last_seq: 5,
            last_change: 0,
            retention_deleted: 0,
            retention_pending: false,
        }
    );
    let b2 = CommitBatch {
        events: (4..10)
            .map(|t| rec(event(STREAM, &k, t, 2.0, None)))
            .collect(),
        ..CommitBatch::default()
    };
    store.commit(b2).unwrap();
    let j = store.journal_after(0).unwrap();
    assert_eq!(
        j.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
    assert_eq!(j[0].1, JournalEntry::Event(b1.events[0].clone()));
    assert_eq!(
        j[4].1,
        JournalEntry::Tick {
            pipeline: Arc::from("a"),
            at: ProcessingTime(99)
        }
    );
    assert_eq!(store.journal_after(9).unwrap().len(), 2);
    assert!(store.journal_after(11).unwrap().is_empty());
    assert!(store.journal_after(u64::MAX).unwrap().is_empty());

    let cp = |p: &str, seq: u64| Checkpoint {
        pipeline: Arc::from(p),
        seq,
        snapshot: vec![p.len() as u8, seq as u8, 0, 255],
    };
    // Only "a" has a checkpoint: everything up to 5 is pruned.
    store
        .commit(CommitBatch {
            checkpoints: vec![cp("a", 5)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(store.checkpoint("a").unwrap(), Some(cp("a", 5)));
    assert_eq!(store.checkpoint("b").unwrap(), None);
    assert_eq!(store.journal_after(0).unwrap()[0].0, 6);
    // "b" needs from 3 on, but 3..=5 is gone already; nothing more goes.
    store
        .commit(CommitBatch {
            checkpoints: vec![cp("b", 3)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(store.journal_after(0).unwrap()[0].0, 6);
    // "a" moves to 11, but "b" still needs 4 on: nothing goes; then "b" moves to 8.
    store
        .commit(CommitBatch {
            checkpoints: vec![cp("a", 11)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(store.journal_after(0).unwrap()[0].0, 6);
    store
        .commit(CommitBatch {
            checkpoints: vec![cp("b", 8)],
            ..CommitBatch::default()
        })
        .unwrap();
    // The journal is pruned by whole commits: 6..=11 was one commit, 9..=11 is still
    // needed by "b", so the commit stays; journal_after(8) gives what "b" replays.
    let seqs = |j: Vec<(u64, JournalEntry)>| j.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.journal_after(0).unwrap()),
        (6..=11).collect::<Vec<_>>()
    );
    assert_eq!(seqs(store.journal_after(8).unwrap()), vec![9, 10, 11]);
    // Pruning never touches the raw log.
    assert_eq!(
        store
            .raw_range(STREAM, &k, EventTime::MIN, EventTime::MAX)
            .unwrap()
            .len(),
        10
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.checkpoint("b").unwrap(), Some(cp("b", 8)));
    assert_eq!(seqs(store.journal_after(8).unwrap()), vec![9, 10, 11]);
    assert_eq!(store.last_seq(), 11);
    store
        .commit(CommitBatch {
            checkpoints: vec![cp("b", 11)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert!(store.journal_after(0).unwrap().is_empty());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.last_seq(),
        11,
        "the last seq survives an empty journal"
    );
}

#[test]
fn a_checkpoint_in_a_batch_that_appends_keeps_that_batchs_entries_until_the_next_checkpoint() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    let c = store
        .commit(CommitBatch {
            events: (0..3)
                .map(|t| rec(event(STREAM, &k, t, 1.0, None)))
                .collect(),
            checkpoints: vec![Checkpoint {
                pipeline: Arc::from(PIPELINE),
                seq: 3,
                snapshot: b"snap".to_vec(),
            }],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(c.last_seq, 3);
    assert_eq!(store.checkpoint(PIPELINE).unwrap().unwrap().seq, 3);
    // Entries of the same commit are not pruned by it (documented), only by a later one.
    assert_eq!(store.journal_after(0).unwrap().len(), 3);
    store
        .commit(CommitBatch {
            checkpoints: vec![Checkpoint {
                pipeline: Arc::from(PIPELINE),
                seq: 3,
                snapshot: b"snap".to_vec(),
            }],
            ..CommitBatch::default()
        })
        .unwrap();
    assert!(store.journal_after(0).unwrap().is_empty());
    assert_eq!(store.last_seq(), 3);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.last_seq(), 3, "last seq survives an empty journal");
}

#[test]
fn ids_are_seen_per_stream_once_committed() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(1);
    store
        .commit(CommitBatch {
            events: vec![
                rec(event(STREAM, &k, 1, 1.0, Some("x-1"))),
                rec(event(STREAM, &k, 2, 1.0, Some("x-2"))),
                rec(event("other", &k, 2, 1.0, Some("x-3"))),
            ],
            ..CommitBatch::default()
        })
        .unwrap();
    let id = |s: &str| EventId(Arc::from(s));
    let (a, b, c, d) = (id("x-1"), id("x-2"), id("x-3"), id("nope"));
    assert_eq!(
        store.ids_seen(STREAM, &[&a, &b, &c, &d]).unwrap(),
        vec![true, true, false, false]
    );
    assert_eq!(
        store.ids_seen("other", &[&c, &a]).unwrap(),
        vec![true, false]
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.ids_seen(STREAM, &[&a, &d]).unwrap(),
        vec![true, false]
    );
}

#[test]
fn results_history_windows_and_as_of() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let (k1, k2, k3) = (key(1), key(2), key(3));
    store
        .commit(CommitBatch {
            emissions: vec![
                emission(&k1, 0, 1, 100, 1.0),
                emission(&k1, 1, 1, 200, 2.0),
                emission(&k2, 0, 1, 100, 3.0),
                emission(&k3, -1, 1, 50, 9.0),
            ],
            ..CommitBatch::default()
        })
        .unwrap();
    store
        .commit(CommitBatch {
            emissions: vec![emission(&k1, 0, 2, 300, 1.5), emission(&k2, 0, 2, 400, 3.5)],
            ..CommitBatch::default()
        })
        .unwrap();
    store
        .commit(CommitBatch {
            emissions: vec![emission(&k1, 0, 3, 500, 1.75)],
            ..CommitBatch::default()
        })
        .unwrap();

    let check = |store: &Store| {
        let start0 = EventTime(0);
        assert_eq!(
            store.latest(PIPELINE, &k1, start0).unwrap(),
            Some(emission(&k1, 0, 3, 500, 1.75))
        );
        assert_eq!(store.latest(PIPELINE, &k1, EventTime(1)).unwrap(), None);
        assert_eq!(store.latest("other", &k1, start0).unwrap(), None);
        let h = store.history(PIPELINE, &k1, start0).unwrap();
        assert_eq!(
            h,
            vec![
                emission(&k1, 0, 1, 100, 1.0),
                emission(&k1, 0, 2, 300, 1.5),
                emission(&k1, 0, 3, 500, 1.75)
            ]
        );
        let vs = |w: Vec<reckon_core::Emission>| -> Vec<(String, i64, u32)> {
            w.iter()
                .map(|e| (e.key.to_string(), e.window.start.0 / HOUR, e.version.0))
                .collect()
        };
        let all = store
            .windows(PIPELINE, None, EventTime::MIN, EventTime::MAX, None)
            .unwrap();
        assert_eq!(
            vs(all),
            vec![
                ("i=1".into(), 0, 3),
                ("i=1".into(), 1, 1),
                ("i=2".into(), 0, 2),
                ("i=3".into(), -1, 1)
            ]
        );
        // [0, 1h): window starts in range only.
        let first_hour = store
            .windows(PIPELINE, None, EventTime(0), EventTime(HOUR), None)
            .unwrap();
        assert_eq!(
            vs(first_hour),
            vec![("i=1".into(), 0, 3), ("i=2".into(), 0, 2)]
        );
        let one_key = store
            .windows(PIPELINE, Some(&k1), EventTime::MIN, EventTime::MAX, None)
            .unwrap();
        assert_eq!(
            vs(one_key),
            vec![("i=1".into(), 0, 3), ("i=1".into(), 1, 1)]
        );
        // As of processing time 300: k1@0 was v2, k1@1 v1, k2@0 v1, k3 v1.
        let then = store
            .windows(
                PIPELINE,
                None,
                EventTime::MIN,
                EventTime::MAX,
                Some(ProcessingTime(300)),
            )
            .unwrap();
        assert_eq!(
            vs(then.clone()),
            vec![
                ("i=1".into(), 0, 2),
                ("i=1".into(), 1, 1),
                ("i=2".into(), 0, 1),
                ("i=3".into(), -1, 1)
            ]
        );
        assert_eq!(then[0], emission(&k1, 0, 2, 300, 1.5));
        // Before anything was emitted for most windows.
        let early = store
            .windows(
                PIPELINE,
                None,
                EventTime::MIN,
                EventTime::MAX,
                Some(ProcessingTime(60)),
            )
            .unwrap();
        assert_eq!(vs(early), vec![("i=3".into(), -1, 1)]);
        assert!(
            store
                .windows(PIPELINE, None, EventTime(5), EventTime(5), None)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .windows("water", None, EventTime::MIN, EventTime::MAX, None)
                .unwrap()
                .is_empty()
        );
    };
    check(&store);
    drop(store);
    check(&Store::open(dir.path()).unwrap());
}

#[test]
fn dead_letters_keep_the_event_kind_and_reason_in_commit_order() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = key(4);
    let e1 = event(STREAM, &k, -5 * HOUR, 1.0, Some("late-1"));
    let reason = DeadLetterReason::BeyondRetention {
        window: Window {
            start: EventTime(-5 * HOUR),
            end: EventTime(-4 * HOUR),
        },
        watermark: Watermark(EventTime(100 * HOUR)),
    };
    let d1 = DeadLetter::from_reason(Arc::from(PIPELINE), e1.clone(), &reason, ProcessingTime(7));
    assert_eq!(d1.kind, "beyond_retention");
    assert!(d1.reason.contains("beyond retention"), "{}", d1.reason);
    let d2 = DeadLetter::from_reason(
        Arc::from(PIPELINE),
        event(STREAM, &k, i64::MIN, 2.0, None),
        &DeadLetterReason::Unwindowable {
            message: "too early".into(),
        },
        ProcessingTime(8),
    );
    store
        .commit(CommitBatch {
            dead_letters: vec![d1.clone()],
            ..CommitBatch::default()
        })
        .unwrap();
    store
        .commit(CommitBatch {
            dead_letters: vec![d2.clone()],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(
        store.dead_letters(STREAM).unwrap(),
        vec![d1.clone(), d2.clone()]
    );
    assert!(store.dead_letters("other").unwrap().is_empty());
    assert_eq!(store.last_seq(), 0, "dead letters are not journal entries");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let d3 = DeadLetter {
        at: ProcessingTime(9),
        ..d1.clone()
    };
    store
        .commit(CommitBatch {
            dead_letters: vec![d3.clone()],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(store.dead_letters(STREAM).unwrap(), vec![d1, d2, d3]);
}

#[test]
fn an_empty_commit_is_an_empty_range() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.commit(CommitBatch::default()).unwrap(),
        Committed {
            first_seq: 1,
            last_seq: 0,
            last_change: 0,
            retention_deleted: 0,
            retention_pending: false,
        }
    );
    let c = store
        .commit(CommitBatch {
            emissions: vec![emission(&key(1), 0, 1, 1, 1.0)],
            ..CommitBatch::default()
        })
        .unwrap();
    assert_eq!(
        c,
        Committed {
            first_seq: 1,
            last_seq: 0,
            last_change: 1,
            retention_deleted: 0,
            retention_pending: false,
        }
    );
}
