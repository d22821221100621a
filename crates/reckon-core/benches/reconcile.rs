//! Reconciliation throughput (events + audit records per second, one core) and memory
//! per pending id. `cargo bench -p reckon-core --bench reconcile` (env `RECORDS`,
//! `RUNS`). Baseline in the same run: inserting the same ids into a bare
//! `HashMap<Arc<str>, (i64, i64)>` (the least any id-keyed join must do).
#![allow(clippy::unwrap_used)]

use reckon_core::reconcile::{ReconcileSpec, Reconciler, Side};
use reckon_core::{Event, EventId, EventTime, Key, Span};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

const SEC: i64 = 1_000_000_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Seed 001's shape: one audit record per event, ids unique, audit a second after its
/// event, 1% of events missing, 1% of audits duplicated; 1,000 ids per second.
fn records(n: usize) -> Vec<(Side, Event)> {
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let t = (i as i64) * SEC / 1000;
        let id = EventId(Arc::from(format!("ev-{i:09}")));
        let mk = |time| Event {
            stream: "s".into(),
            key: Key::empty(),
            time: EventTime(time),
            id: Some(id.clone()),
            fields: Vec::new(),
        };
        if i % 100 != 7 {
            out.push((Side::Event, mk(t)));
        }
        out.push((Side::Audit, mk(t + SEC)));
        if i % 100 == 3 {
            out.push((Side::Audit, mk(t + SEC)));
        }
    }
    out
}

fn main() {
    let n = env("RECORDS", 1_000_000);
    let runs = env("RUNS", 5);
    let recs = records(n);
    let spec = ReconcileSpec::new("r", Span(60 * SEC), Span(10 * SEC), Span(600 * SEC)).unwrap();
    let (mut engine, mut base) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let mut r = Reconciler::new(spec.clone());
        let mut out = Vec::new();
        for (side, e) in &recs {
            r.ingest(*side, e, &mut out);
            if out.len() > 4096 {
                out.clear();
            }
        }
        r.finish(&mut out);
        engine.push(recs.len() as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut m: HashMap<Arc<str>, (i64, i64)> = HashMap::new();
        for (side, e) in &recs {
            let id = e.id.as_ref().unwrap().0.clone();
            let slot = m.entry(id).or_default();
            match side {
                Side::Event => slot.0 = e.time.0,
                Side::Audit => slot.1 = e.time.0,
            }
        }
        std::hint::black_box(&m);
        base.push(recs.len() as f64 / started.elapsed().as_secs_f64());
    }
    engine.sort_by(|a, b| a.total_cmp(b));
    base.sort_by(|a, b| a.total_cmp(b));
    println!(
        "reconcile: {} records ({} ids), median of {runs}: engine {:.2} M records/s; bare HashMap join baseline {:.2} M records/s",
        recs.len(),
        n,
        engine[runs / 2] / 1e6,
        base[runs / 2] / 1e6
    );

    // Memory per pending id: audit records only, no watermark progress (every id waits).
    let pending = 1_000_000usize;
    let audits: Vec<Event> = (0..pending)
        .map(|i| Event {
            stream: "s".into(),
            key: Key::empty(),
            time: EventTime(0),
            id: Some(EventId(Arc::from(format!("ev-{i:09}")))),
            fields: Vec::new(),
        })
        .collect();
    let before = rss_bytes();
    let mut r = Reconciler::new(spec);
    let mut out = Vec::new();
    for e in &audits {
        r.ingest(Side::Audit, e, &mut out);
    }
    let after = rss_bytes();
    println!(
        "memory per pending id (RSS delta / {pending}, ids' own strings shared with the input): {:.0} bytes",
        (after.saturating_sub(before)) as f64 / pending as f64
    );
    std::hint::black_box(&r);
}
