//! The cold path and restart, on a durable store.
//!
//! - `cold_recompute_1h_360_events`: one 1 h window of 360 events read back from the
//!   store's raw log with a range scan and recomputed (what a late event beyond allowed
//!   lateness costs).
//! - `restart_after_<N>_events`: `Runtime::open` on a store that ingested N seed 000
//!   events (`EVENTS`, default 1,000,000): checkpoint restore plus replay of the
//!   journal written after it.
//! - At the end, the store's bytes on disk per event, keyspace by keyspace, after
//!   flushing and compacting every keyspace.
//!
//! Run: `cargo bench -p reckon-runtime --bench runtime_restart` (figures in
//! docs/BENCHMARKS.md); `EVENTS=10000000` for the 10M restart figure.

use criterion::{Criterion, criterion_group, criterion_main};
use reckon_core::{Key, Span, Window};
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_workload::Seed000;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

fn config(path: &Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        allowed_lateness = "24h"
        retention = "30d"
        "#,
        path.display()
    ))
    .expect("config")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let started = Instant::now();
    {
        let mut rt = Runtime::open(
            &cfg,
            RuntimeOptions {
                checkpoint_every: 64,
            },
        )
        .expect("open");
        let mut arrivals = Seed000::with_late_fraction(0.1).arrivals().take(events);
        loop {
            let batch: Vec<_> = arrivals.by_ref().take(5000).collect();
            let Some(first) = batch.first() else { break };
            let (partition, at) = (first.partition, first.at);
            let evs = batch.into_iter().map(|a| a.event).collect();
            rt.ingest("water_level", partition, at, evs, &mut |_| {})
                .expect("ingest");
        }
    }
    eprintln!(
        "setup: {events} events ingested durably in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("runtime");
    g.sample_size(10);
    g.bench_function(format!("restart_after_{events}_events"), |b| {
        b.iter(|| black_box(Runtime::open(&cfg, RuntimeOptions::default()).expect("reopen")))
    });
    let rt = Runtime::open(&cfg, RuntimeOptions::default()).expect("reopen");
    let key = Key::from_tags([("i", "7")]).expect("key");
    // A full hour in the middle of the workload: 360 readings of location 7.
    let start = Seed000::default().start.plus(Span::hours(10));
    let window = Window {
        start,
        end: start.plus(Span::hours(1)),
    };
    let raw = rt
        .store()
        .raw_range("water_level", &key, window.start, window.end)
        .expect("range");
    eprintln!("cold window: {} events", raw.len());
    let spec = cfg.pipelines[0].spec().expect("spec");
    g.sample_size(50);
    g.bench_function("cold_recompute_1h_360_events", |b| {
        let mut engine = reckon_core::Pipeline::new(spec.clone()).expect("pipeline");
        let mut out = Vec::new();
        // Move the watermark far ahead so the window is cold.
        engine.finish(&mut out);
        b.iter(|| {
            let evs = rt
                .store()
                .raw_range("water_level", &key, window.start, window.end)
                .expect("range");
            black_box(
                engine
                    .recompute(&key, window, None, &evs)
                    .expect("recompute"),
            )
        })
    });
    g.finish();
    let store = rt.store();
    store.compact_for_tests().expect("compact");
    let usage = store.disk_usage_for_tests().expect("usage");
    let total: u64 = usage
        .iter()
        .filter(|(n, _)| *n != "fjall_journal")
        .map(|(_, b)| b)
        .sum();
    for (name, bytes) in &usage {
        eprintln!(
            "disk {name:>13}: {bytes:>12} bytes = {:6.2} bytes/event",
            *bytes as f64 / events as f64
        );
    }
    eprintln!(
        "disk total (keyspaces, fjall's journal left out): {:.2} bytes/event",
        total as f64 / events as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
