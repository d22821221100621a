//! A failed fsync poisons the store: that commit and every later one fail until reopen.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::EventTime;
use reckon_store::{CommitBatch, Error, Store};

fn batch(t: i64) -> CommitBatch {
    CommitBatch {
        events: vec![rec(event(STREAM, &key(1), t, 1.0, None))],
        ..CommitBatch::default()
    }
}

#[test]
fn a_failed_persist_poisons_every_later_commit_until_reopen() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    store.commit(batch(1)).unwrap();
    store.commit(batch(2)).unwrap();
    store.fail_next_persist_for_tests();
    let e = store.commit(batch(3)).unwrap_err();
    assert!(matches!(e, Error::Poisoned(_)), "{e:?}");
    assert!(e.to_string().contains("injected fsync failure"), "{e}");
    assert!(store.is_poisoned());
    for t in 4..7 {
        let e = store.commit(batch(t)).unwrap_err();
        assert!(matches!(e, Error::Poisoned(_)), "{e:?}");
    }
    // Even an empty commit and retention are refused; the stats did not count them.
    assert!(matches!(
        store.commit(CommitBatch::default()),
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(
        store.apply_retention(STREAM, EventTime::MAX),
        Err(Error::Poisoned(_))
    ));
    assert_eq!(store.stats().commits, 2);
    assert_eq!(
        store.last_seq(),
        2,
        "a failed commit does not advance the durable seq"
    );
    // Reads still work.
    let got = store
        .raw_range(STREAM, &key(1), EventTime::MIN, EventTime::MAX)
        .unwrap();
    assert!(got.len() >= 2);

    // Concurrent callers of a poisoned store all get the error.
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || s.commit(batch(100 + t)))
        })
        .collect();
    for h in hs {
        assert!(matches!(h.join().unwrap(), Err(Error::Poisoned(_))));
    }

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(!store.is_poisoned());
    // What the failed commit wrote is unknown (here fjall flushed it on close); every
    // acknowledged commit is there, and writing works again.
    let times: Vec<i64> = store
        .raw_range(STREAM, &key(1), EventTime::MIN, EventTime::MAX)
        .unwrap()
        .iter()
        .map(|e| e.time.0)
        .collect();
    assert_eq!(&times[..2], &[1, 2]);
    assert!(times.len() <= 3, "{times:?}");
    let c = store.commit(batch(50)).unwrap();
    assert!(c.first_seq > 2);
}
