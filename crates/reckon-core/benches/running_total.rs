//! Running totals (seed 003): what a late event costs with 10⁶ later buckets, what a
//! total at an event time costs, and the on-time ingest rate.
//!
//! Setup: one key (a space) with one crossing (+1 or −1) per second for 10⁶ seconds,
//! 1-second buckets (so 10⁶ buckets, every one emitted), retention 30 days, no reset.
//!
//! - `late_event_1m_later_buckets`: one late crossing into the first minutes (every
//!   later total changes): ingest, its one `late` emission, the tree update. A plain
//!   total and, for contrast, a clamped one (not linear: it recomputes later buckets
//!   until the totals meet the old ones).
//! - `value_at`: the total at a random event time in the 10⁶ seconds.
//! - `mapping_row_moves_10k_events`: a mapping row for a past time that moves one
//!   sensor's 10⁴ crossings to another space (and the next moves them back).
//! - `ingest_on_time`: 10⁵ events in order into a fresh running total (events/s).
//!
//! Run: `cargo bench -p reckon-core --bench running_total` (figures in docs/BENCHMARKS.md).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reckon_core::operator::{RunningSpec, RunningTotal};
use reckon_core::{Event, EventTime, Expr, Key, Operator, PartitionId, Span, StepReport, Value};
use std::hint::black_box;

const N: i64 = 1_000_000;

fn ev(key: &Key, secs: i64, d: i64) -> Event {
    Event {
        stream: "crossings".into(),
        key: key.clone(),
        time: EventTime::from_secs(secs),
        id: None,
        fields: vec![("d".into(), Value::I64(d))],
    }
}

/// Ins slightly ahead of outs, so a clamped total rarely touches zero.
fn direction(i: i64) -> i64 {
    if i % 5 == 4 { -1 } else { 1 }
}

fn filled(clamp: bool) -> (RunningTotal, Key) {
    let mut spec = RunningSpec::new("occupancy", Span::secs(1));
    spec.value = Some(Expr::parse("d").expect("expr"));
    spec.retention = Span::days(30);
    spec.clamp = clamp;
    let mut rt = RunningTotal::new(spec, "crossings", None).expect("spec");
    let key = Key::parse("space=lobby").expect("key");
    let (mut out, mut report) = (Vec::new(), StepReport::default());
    let events: Vec<Event> = (0..=N).map(|i| ev(&key, i, direction(i))).collect();
    for chunk in events.chunks(10_000) {
        rt.ingest_events(0, PartitionId(0), chunk, &mut out, &mut report);
        out.clear();
    }
    (rt, key)
}

/// Resident memory in bytes (Linux), for the memory figure.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("running_total");
    g.sample_size(30);
    for clamp in [false, true] {
        let before = rss();
        let (mut rt, key) = filled(clamp);
        println!(
            "clamp={clamp}: {} MB resident for {N} events in {N} buckets",
            (rss().saturating_sub(before)) / 1_000_000
        );
        let (mut out, mut report) = (Vec::new(), StepReport::default());
        let mut i = 0i64;
        let name = if clamp {
            "late_event_1m_later_buckets_clamped"
        } else {
            "late_event_1m_later_buckets"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                // +1 then -1 alternately at the start: the totals return to where they were.
                i += 1;
                let d = if i % 2 == 0 { 1 } else { -1 };
                let e = ev(&key, 60 + (i % 600), d);
                rt.ingest_events(
                    0,
                    PartitionId(0),
                    std::slice::from_ref(&e),
                    &mut out,
                    &mut report,
                );
                black_box(out.len());
                out.clear();
            })
        });
        if !clamp {
            let mut x: u64 = 1;
            g.bench_function("value_at", |b| {
                b.iter(|| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let t = EventTime::from_secs((x >> 33) as i64 % N);
                    black_box(rt.value_at(&key, t).expect("inside retention"))
                })
            });
            // The same lookups one by one, for the tail: p50, p99, max of 10^5.
            let mut times: Vec<f64> = (0..100_000)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let t = EventTime::from_secs((x >> 33) as i64 % N);
                    let start = std::time::Instant::now();
                    black_box(rt.value_at(&key, t).expect("inside retention"));
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "value_at, 10^5 single lookups (us): p50 {:.2}  p99 {:.2}  max {:.1}",
                times[times.len() / 2],
                times[times.len() * 99 / 100],
                times[times.len() - 1]
            );
            let (series, buckets, nodes) = rt.sizes();
            println!("one key: {series} series, {buckets} buckets, {nodes} tree nodes");
        }
    }
    // A mapping correction: 4 sensors with a crossing a second each for 10^5 s on
    // space A; a row for the past moves one sensor's 10^4 crossings of a window to B
    // (and the next row moves them back, so every iteration moves 10^4).
    {
        let mut spec = RunningSpec::new("occupancy", Span::secs(60));
        spec.value = Some(Expr::parse("d * sign").expect("expr"));
        spec.retention = Span::days(30);
        spec.mapping = Some(reckon_core::operator::Mapping {
            stream: "dpu_location".into(),
            key_fields: vec!["space".into()],
        });
        let mut rt = RunningTotal::new(spec, "crossings", None).expect("spec");
        let (mut out, mut report) = (Vec::new(), StepReport::default());
        let row = |dpu: u32, secs: i64, space: &str| Event {
            stream: "dpu_location".into(),
            key: Key::parse(&format!("dpu={dpu}")).expect("key"),
            time: EventTime::from_secs(secs),
            id: None,
            fields: vec![
                ("space".into(), Value::Str(space.into())),
                ("sign".into(), Value::I64(1)),
            ],
        };
        let rows: Vec<Event> = (0..4).map(|d| row(d, 0, "A")).collect();
        rt.ingest_events(1, PartitionId(0), &rows, &mut out, &mut report);
        for d in 0..4u32 {
            let key = Key::parse(&format!("dpu={d}")).expect("key");
            let evs: Vec<Event> = (0..100_000).map(|i| ev(&key, i, direction(i))).collect();
            for chunk in evs.chunks(10_000) {
                rt.ingest_events(0, PartitionId(0), chunk, &mut out, &mut report);
                out.clear();
            }
        }
        // The window [20000 s, 30000 s) of sensor 1: closed by the row at 30000 s.
        rt.ingest_events(
            1,
            PartitionId(0),
            &[row(1, 30_000, "A")],
            &mut out,
            &mut report,
        );
        let mut flip = false;
        let mut n = 0;
        g.throughput(Throughput::Elements(10_000));
        g.bench_function("mapping_row_moves_10k_events", |b| {
            b.iter(|| {
                flip = !flip;
                n += 1;
                // Each row a second after the last: it covers [20000 + n, 30000) s,
                // just under 10^4 crossings, all counted in the other space until now.
                let r = row(1, 20_000 + n, if flip { "B" } else { "A" });
                rt.ingest_events(
                    1,
                    PartitionId(0),
                    std::slice::from_ref(&r),
                    &mut out,
                    &mut report,
                );
                black_box(out.len());
                out.clear();
            })
        });
        let (moved, touched) = rt.remapped();
        println!(
            "mapping: {moved} events moved by {n} rows ({:.0} per row), {touched} series touched",
            moved as f64 / n.max(1) as f64
        );
    }
    let key = Key::parse("space=lobby").expect("key");
    let events: Vec<Event> = (0..100_000).map(|i| ev(&key, i, direction(i))).collect();
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("ingest_on_time", |b| {
        b.iter(|| {
            let mut spec = RunningSpec::new("occupancy", Span::secs(1));
            spec.value = Some(Expr::parse("d").expect("expr"));
            let mut rt = RunningTotal::new(spec, "crossings", None).expect("spec");
            let (mut out, mut report) = (Vec::new(), StepReport::default());
            for chunk in events.chunks(5_000) {
                rt.ingest_events(0, PartitionId(0), chunk, &mut out, &mut report);
                out.clear();
            }
            black_box(rt.sizes())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
