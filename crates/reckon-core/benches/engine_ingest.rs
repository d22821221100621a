//! Engine ingest rate on seed 000's workload, next to a naive ceiling.
//!
//! Workload: 1M events, 100 locations, a reading every 10 s per location, about 10%
//! of events late by up to 24 h; 1 h tumbling windows with mean and count, allowed
//! lateness 24 h, so every late event is a hot correction that emits a new version.
//!
//! - `reckon_pipeline`: the engine, with watermarks, lateness tiers, versions,
//!   checksums, and one `late` emission per late event collected into a buffer.
//! - `naive_hashmap`: a `HashMap<(key, window start), (count, sum)>`, no versions, no
//!   lateness handling, no emissions: what the work costs with nothing else.
//!
//! Run: `cargo bench -p reckon-core --bench engine_ingest` (figures in docs/BENCHMARKS.md).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reckon_core::{
    AggKind, AggregateSpec, BatchReport, Emission, EventTime, Key, PartitionId, Pipeline,
    PipelineSpec, Span, Value, WindowSpec,
};
use reckon_workload::{Arrival, Seed000};
use std::collections::HashMap;
use std::hint::black_box;

const EVENTS: usize = 1_000_000;

fn workload() -> Vec<Arrival> {
    Seed000::with_late_fraction(0.1)
        .arrivals()
        .take(EVENTS)
        .collect()
}

fn spec() -> PipelineSpec {
    PipelineSpec::builder("water_level_mean_1h")
        .window(WindowSpec::tumbling(Span::hours(1)))
        .aggregate(AggregateSpec::new(AggKind::Mean, "level"))
        .aggregate(AggregateSpec::count())
        .allowed_lateness(Span::hours(24))
        .retention(Span::days(7))
        .build()
        .expect("valid spec")
}

/// Drives the engine the way the runtime does: a batch per arrival time (one tick of
/// the generator, ~110 events, as one HTTP request would bring), processing time
/// advanced once per batch, emissions handed on per batch.
fn run_pipeline(arrivals: &[Arrival]) -> (usize, usize) {
    let mut p = Pipeline::new(spec()).expect("pipeline");
    let mut out: Vec<Emission> = Vec::with_capacity(4096);
    let mut report = BatchReport::default();
    let mut emitted = 0;
    for batch in arrivals.chunk_by(|a, b| a.at == b.at) {
        p.advance(batch[0].at, &mut out);
        p.ingest_batch(PartitionId(0), batch, &mut report, &mut out);
        emitted += out.len();
        out.clear();
        black_box(&report);
        report.follow_ups.clear();
    }
    (emitted, p.hot_windows())
}

fn run_naive(arrivals: &[Arrival]) -> usize {
    let size = Span::hours(1).nanos();
    let mut m: HashMap<(Key, i64), (u64, f64), foldhash::fast::RandomState> = HashMap::default();
    for a in arrivals {
        let t: EventTime = a.event.time;
        let start = t.0 - t.0.rem_euclid(size);
        let x = match a.event.field("level") {
            Some(Value::F64(x)) => *x,
            _ => 0.0,
        };
        let e = m.entry((a.event.key.clone(), start)).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += x;
    }
    m.len()
}

fn bench(c: &mut Criterion) {
    let arrivals = workload();
    let late = arrivals.iter().filter(|a| a.event.time.0 < a.at.0).count();
    let (emitted, hot) = run_pipeline(&arrivals);
    eprintln!(
        "workload: {} events, {:.1}% late, {} emissions, {} hot windows at the end, {} naive windows",
        arrivals.len(),
        100.0 * late as f64 / arrivals.len() as f64,
        emitted,
        hot,
        run_naive(&arrivals)
    );
    let mut g = c.benchmark_group("seed000_1M");
    g.throughput(Throughput::Elements(arrivals.len() as u64));
    g.sample_size(20);
    g.bench_with_input(
        BenchmarkId::new("reckon_pipeline", EVENTS),
        &arrivals,
        |b, a| b.iter(|| run_pipeline(a)),
    );
    g.bench_with_input(
        BenchmarkId::new("naive_hashmap", EVENTS),
        &arrivals,
        |b, a| b.iter(|| run_naive(a)),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
