//! What starting an operator in a running instance costs ([`Runtime::reconfigure`], the
//! engine of pipelines by API): on a store that ingested `EVENTS` seed 000 events
//! (default 1,000,000, 100 locations) into `mean_1h`,
//!
//! - `pipeline`: a new 15-minute pipeline over the same stream, fed the whole raw log;
//! - `rule`: a new alert rule over `mean_1h`, fed its stored windows;
//!
//! each started and stopped again `RUNS` times (default 5), wall time per start, median.
//! The baseline in the same run: ingesting the same events live (durable, batches of
//! 5,000) into the instance with `mean_1h` only, events/s.
//!
//! `cargo bench -p reckon-runtime --bench define_start` (env `EVENTS`, `RUNS`).
#![allow(clippy::unwrap_used)]

use reckon_core::PartitionId;
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_workload::Seed000;
use std::path::Path;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn base(path: &Path) -> Config {
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
    .unwrap()
}

fn with(path: &Path, more: &str) -> Config {
    base(path).extended(toml::from_str(more).unwrap()).unwrap()
}

const PIPELINE: &str = r#"
    [[pipeline]]
    name = "max_15m"
    stream = "water_level"
    window = { type = "tumbling", size = "15m" }
    aggregates = [{ fn = "max", field = "level", name = "max" }]
    allowed_lateness = "24h"
    retention = "30d"
"#;

const RULE: &str = r#"
    [[alert]]
    name = "high"
    input = "mean_1h"
    condition = "mean > 6.5"
    for = 2
"#;

fn main() {
    let events = env("EVENTS", 1_000_000);
    let runs = env("RUNS", 5).max(1);
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(&base(dir.path()), RuntimeOptions::default()).unwrap();
    let arrivals: Vec<_> = Seed000::default().arrivals().take(events).collect();
    let t = Instant::now();
    for chunk in arrivals.chunks(5_000) {
        let now = chunk.last().unwrap().at;
        let batch = chunk.iter().map(|a| a.event.clone()).collect();
        rt.ingest("water_level", PartitionId(0), now, batch, &mut |_| {})
            .unwrap();
    }
    let live = events as f64 / t.elapsed().as_secs_f64();
    drop(arrivals);
    let windows = rt
        .store()
        .windows(
            "mean_1h",
            None,
            reckon_core::EventTime::MIN,
            reckon_core::EventTime::MAX,
            None,
        )
        .unwrap()
        .len();
    println!(
        "store: {events} events, mean_1h {windows} windows; live ingest {:.0} events/s (baseline)",
        live
    );
    for (what, more) in [("pipeline", PIPELINE), ("rule", RULE)] {
        let mut secs = Vec::new();
        let mut emitted = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let done = rt
                .reconfigure(&with(dir.path(), more), vec![], &mut |_| {})
                .unwrap();
            secs.push(t.elapsed().as_secs_f64());
            emitted = done.emissions;
            rt.reconfigure(&base(dir.path()), vec![], &mut |_| {})
                .unwrap();
        }
        let s = median(secs);
        let read = if what == "pipeline" { events } else { windows };
        println!(
            "start {what}: {s:.3} s median of {runs} ({:.0} {}/s read, {emitted} results)",
            read as f64 / s,
            if what == "pipeline" {
                "events"
            } else {
                "windows"
            }
        );
    }
}
