//! Cost per event of expressions on seed 004's BTS alarms (`examples/seed004`): the
//! filter `value > threshold and threshold != 999999` and the derived field
//! `value - threshold`, each against a hand-written Rust closure doing the same in the
//! same run. `cargo bench -p reckon-core --bench expr`.
#![allow(clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reckon_core::expr::Expr;
use reckon_core::{Event, Value};
use std::hint::black_box;
use std::path::Path;

const FILTER: &str = "value > threshold and threshold != 999999";
const DERIVE: &str = "value - threshold";

/// The 191 alarms, each with fields `id`, `value`, `threshold` and key tags
/// `station_id`, `alarm_id`, repeated to 10,000 events.
fn events() -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed004/alarms.csv");
    let rows = reckon_testkit::bts::load_bts(&path);
    let one: Vec<Event> = rows
        .iter()
        .map(|r| {
            let mut e = r.to_event();
            e.fields.insert(0, ("id".into(), Value::I64(r.id as i64)));
            e
        })
        .collect();
    one.iter().cycle().take(10_000).cloned().collect()
}

fn closure_filter(e: &Event) -> bool {
    let num = |name| e.field(name).and_then(Value::as_f64);
    match (num("value"), num("threshold")) {
        (Some(v), Some(t)) => v > t && t != 999_999.0,
        _ => false,
    }
}

fn closure_derive(e: &Event) -> Option<Value> {
    match (e.field("value")?, e.field("threshold")?) {
        (Value::I64(v), Value::I64(t)) => v.checked_sub(*t).map(Value::I64),
        (v, t) => Value::float(v.as_f64()? - t.as_f64()?).ok(),
    }
}

fn bench(c: &mut Criterion) {
    let events = events();
    let filter = Expr::parse_filter(FILTER).unwrap();
    let derive = Expr::parse(DERIVE).unwrap();
    // The two ways must agree before their speed means anything.
    for e in &events {
        assert_eq!(filter.eval_filter(e), closure_filter(e));
        assert_eq!(derive.eval(e), closure_derive(e));
    }
    let passing = events.iter().filter(|e| closure_filter(e)).count();
    eprintln!("{} events, {passing} pass the filter", events.len());

    let mut g = c.benchmark_group("expr");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function(BenchmarkId::new("filter", "expr"), |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| filter.eval_filter(black_box(e)))
                .count()
        })
    });
    g.bench_function(BenchmarkId::new("filter", "closure"), |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| closure_filter(black_box(e)))
                .count()
        })
    });
    g.bench_function(BenchmarkId::new("derive", "expr"), |b| {
        b.iter(|| {
            for e in &events {
                black_box(derive.eval(black_box(e)));
            }
        })
    });
    g.bench_function(BenchmarkId::new("derive", "closure"), |b| {
        b.iter(|| {
            for e in &events {
                black_box(closure_derive(black_box(e)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
