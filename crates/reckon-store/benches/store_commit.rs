//! Durable commit throughput and bytes on disk per raw event.
//!
//! `cargo bench -p reckon-store --bench store_commit`
//!
//! - `commit/1_thread`: one caller commits batches of 5,000 seed-000 events, each
//!   fsync'd before the next (events/s with fsync).
//! - `commit/4_threads`: four callers commit such batches at once; group commit lets
//!   them share fsyncs.
//! - After the timings: 1,000,000 seed-000 events are committed to a fresh store,
//!   memtables flushed and compacted, and the bytes on disk per raw event printed.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group};
use reckon_store::{CommitBatch, RawRecord, Store};
use reckon_workload::Seed000;
use std::time::{Duration, Instant};

const BATCH: usize = 5_000;

fn seed000() -> impl Iterator<Item = RawRecord> {
    Seed000::default().arrivals().map(|a| RawRecord {
        partition: a.partition,
        ingested_at: a.at,
        event: a.event,
    })
}

/// Pre-built batches, so the timing is the store's alone.
fn batches(n: usize) -> Vec<CommitBatch> {
    let mut it = seed000();
    (0..n)
        .map(|_| CommitBatch {
            events: it.by_ref().take(BATCH).collect(),
            ..CommitBatch::default()
        })
        .collect()
}

fn bench_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit");
    g.sample_size(20).measurement_time(Duration::from_secs(10));

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let pool = batches(64);
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut i = 0;
    g.bench_function("1_thread", |b| {
        b.iter(|| {
            store.commit(pool[i % pool.len()].clone()).unwrap();
            i += 1;
        })
    });

    g.throughput(Throughput::Elements(4 * BATCH as u64));
    g.bench_function("4_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..4 {
                    let (store, pool) = (&store, &pool);
                    s.spawn(move || {
                        for n in 0..iters as usize {
                            store
                                .commit(pool[(n * 4 + t) % pool.len()].clone())
                                .unwrap();
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
    let stats = store.stats();
    println!(
        "commit: {} commits, {} fsyncs ({:.2} commits per fsync)",
        stats.commits,
        stats.fsyncs,
        stats.commits as f64 / stats.fsyncs.max(1) as f64
    );
}

/// Commits 1,000,000 seed-000 events and prints the bytes on disk per raw event.
fn bytes_per_event() {
    const EVENTS: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut it = seed000();
    let start = Instant::now();
    for _ in 0..EVENTS / BATCH {
        store
            .commit(CommitBatch {
                events: it.by_ref().take(BATCH).collect(),
                ..CommitBatch::default()
            })
            .unwrap();
    }
    let took = start.elapsed();
    store.compact_for_tests().unwrap();
    let usage = store.disk_usage_for_tests().unwrap();
    let per = |name: &str| {
        usage
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, b)| *b as f64 / EVENTS as f64)
    };
    println!(
        "1M seed-000 events in 5,000-event commits: {:.1} s ({:.0} events/s, one caller)",
        took.as_secs_f64(),
        EVENTS as f64 / took.as_secs_f64()
    );
    for (name, bytes) in &usage {
        println!(
            "  {name:<14} {bytes:>12} bytes  {:>7.2} bytes/event",
            *bytes as f64 / EVENTS as f64
        );
    }
    println!(
        "bytes on disk per raw event (raw log): {:.2}; raw log + journal: {:.2}",
        per("raw"),
        per("raw") + per("journal")
    );
}

criterion_group!(benches, bench_commit);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    // `cargo bench -- <filter>` or `--list`/`--test` runs skip the size measurement.
    if std::env::args().skip(1).all(|a| a == "--bench") {
        bytes_per_event();
    }
}
