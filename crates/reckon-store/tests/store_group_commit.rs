//! Group commit: concurrent callers share fsyncs, and every acknowledged commit is there.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_core::EventTime;
use reckon_store::{CommitBatch, Committed, Store};
use std::collections::BTreeSet;

#[test]
fn eight_threads_share_fsyncs_and_lose_nothing() {
    const THREADS: u32 = 8;
    const BATCHES: u32 = 200;
    const PER_BATCH: i64 = 3;
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let k = key(t);
                let mut acked = Vec::new();
                for b in 0..BATCHES {
                    let base = i64::from(b) * PER_BATCH;
                    let c = store
                        .commit(CommitBatch {
                            events: (0..PER_BATCH)
                                .map(|j| rec(event(STREAM, &k, base + j, f64::from(t), None)))
                                .collect(),
                            emissions: vec![emission(&k, 0, b + 1, i64::from(b), 1.0)],
                            ..CommitBatch::default()
                        })
                        .unwrap();
                    assert_eq!(c.last_seq - c.first_seq + 1, PER_BATCH as u64);
                    acked.push(c);
                }
                acked
            })
        })
        .collect();
    let acked: Vec<Committed> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    // Sequence numbers: unique and contiguous over all callers.
    let seqs: BTreeSet<u64> = acked
        .iter()
        .flat_map(|c| c.first_seq..=c.last_seq)
        .collect();
    let total = u64::from(THREADS * BATCHES) * PER_BATCH as u64;
    assert_eq!(seqs.len() as u64, total);
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(seqs.last(), Some(&total));
    assert_eq!(store.last_seq(), total);

    let stats = store.stats();
    assert_eq!(stats.commits, u64::from(THREADS * BATCHES));
    assert!(
        stats.fsyncs < stats.commits,
        "group commit should share fsyncs: {stats:?}"
    );
    eprintln!("group commit: {stats:?}");

    let check = |store: &Store| {
        for t in 0..THREADS {
            let got = store
                .raw_range(STREAM, &key(t), EventTime::MIN, EventTime::MAX)
                .unwrap();
            assert_eq!(
                got.len() as i64,
                i64::from(BATCHES) * PER_BATCH,
                "thread {t}"
            );
            assert!(got.windows(2).all(|w| w[0].time < w[1].time));
            let latest = store
                .latest(PIPELINE, &key(t), EventTime(0))
                .unwrap()
                .unwrap();
            assert_eq!(latest.version.0, BATCHES);
        }
        assert_eq!(store.journal_after(0).unwrap().len() as u64, total);
    };
    check(&store);
    drop(store);
    check(&Store::open(dir.path()).unwrap());
}
