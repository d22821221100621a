//! A `[[running_total]]` driven by the runtime (seed 003's door crossings): +1/−1 per
//! crossing, out of order and late, with client retries (duplicate ids) and a clamp at
//! zero, in requests grouped into commits, while the runtime stops and reopens
//! (checkpoint + journal replay) at random points. Before the end every total at any
//! time equals the batch oracle; after it every stored bucket's latest version does.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::{Event, EventId, EventTime, Key, PartitionId, ProcessingTime, Span, Value};
use reckon_runtime::{Config, IngestRequest, Runtime, RuntimeOptions};
use reckon_testkit::running::RunningOracle;
use reckon_workload::SplitMix64;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SEC: i64 = 1_000_000_000;
/// 2022-10-29T12:00:00Z: the night after, Europe/Amsterdam falls back (its 04:00 reset
/// is 03:00 UTC on the 30th, 25 hours after the one before).
const BASE: i64 = 1_667_044_800 * SEC;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reckon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(path: &Path, clamp: bool) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "crossings"
        key_fields = ["space"]
        id_field = "crossing_id"
        max_future = "off"
        [[running_total]]
        name = "occupancy"
        stream = "crossings"
        bucket = "1m"
        value = "direction"
        reset = {{ at = "04:00", time_zone = "Europe/Amsterdam" }}
        clamp = {clamp}
        retention = "3d"
        "#,
        path.display()
    ))
    .unwrap()
}

struct Arrival {
    event: Event,
    at: i64,
}

/// `n` crossings of 4 spaces over 30 hours (ins slightly more likely than outs), some
/// at the same second, arrivals up to 10 minutes late and 5% up to 20 hours late, 5%
/// sent twice (a retry: same id).
fn workload(n: u32, seed: u64) -> Vec<Arrival> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for i in 0..n {
        let mut r = |m: u64| rng.next_u64() % m;
        let t = BASE + (r(30 * 3600) as i64) * SEC;
        let direction = if r(100) < 55 { 1 } else { -1 };
        let late = if r(100) < 5 { r(20 * 3600) } else { r(600) } as i64 * SEC;
        let event = Event {
            stream: "crossings".into(),
            key: Key::from_tags([("space", format!("s{}", r(4)))]).unwrap(),
            time: EventTime(t),
            id: Some(EventId(Arc::from(format!("c{i}")))),
            fields: vec![("direction".into(), Value::I64(direction))],
        };
        if r(100) < 5 {
            out.push(Arrival {
                event: event.clone(),
                at: t + late + 30 * SEC,
            });
        }
        out.push(Arrival {
            event,
            at: t + late,
        });
    }
    out.sort_by_key(|a| a.at);
    out
}

fn drive(dir: &Path, clamp: bool, arrivals: &[Arrival], seed: u64) -> Runtime {
    let cfg = config(dir, clamp);
    let options = RuntimeOptions {
        checkpoint_every: 7,
    };
    let mut rt = Runtime::open(&cfg, options.clone()).unwrap();
    let mut rng = SplitMix64::new(seed);
    let (mut i, mut restarts) = (0, 0);
    while i < arrivals.len() {
        let now = ProcessingTime(arrivals[i].at);
        let mut requests = Vec::new();
        for _ in 0..1 + rng.next_u64() % 3 {
            let take = 1 + (rng.next_u64() % 20) as usize;
            let events: Vec<Event> = arrivals[i..]
                .iter()
                .take(take)
                .map(|a| a.event.clone())
                .collect();
            i += events.len();
            if events.is_empty() {
                break;
            }
            requests.push(IngestRequest {
                stream: Arc::from("crossings"),
                partition: PartitionId(0),
                events,
            });
        }
        for r in rt.ingest_many(now, requests, &mut |_| {}).unwrap() {
            assert_eq!(r.dead_lettered, 0, "{r:?}");
        }
        if rng.next_u64().is_multiple_of(25) {
            drop(rt);
            rt = Runtime::open(&cfg, options.clone()).unwrap();
            restarts += 1;
        }
    }
    assert!(restarts > 3, "only {restarts} restarts");
    rt
}

fn check(clamp: bool, seed: u64) {
    let dir = temp_dir(&format!("running-{clamp}-{seed}"));
    let arrivals = workload(3_000, seed);
    let mut rt = drive(&dir, clamp, &arrivals, seed + 1);
    let events: Vec<Event> = arrivals.iter().map(|a| a.event.clone()).collect();
    let mut oracle = RunningOracle::new(Span::minutes(1), |e| e.field("direction").cloned()).reset(
        jiff::civil::time(4, 0, 0, 0),
        jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap(),
    );
    if clamp {
        oracle = oracle.clamp();
    }
    // Totals at any time, before the end.
    let op = rt.operator("occupancy").unwrap();
    for space in ["s0", "s1", "s2", "s3", "nobody"] {
        let key = Key::from_tags([("space", space)]).unwrap();
        for k in 0..400 {
            let t = EventTime(BASE - 3600 * SEC + k * 331 * SEC);
            let got = op.value_at(&key, t).unwrap().unwrap();
            assert_eq!(got, oracle.total_at(&events, &key, t), "{key} at {t}");
        }
    }
    // After the end: every bucket's latest stored version.
    rt.finish(&mut |_| {}).unwrap();
    let want = oracle.buckets(&events);
    let stored = rt
        .store()
        .windows("occupancy", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap();
    assert_eq!(
        stored.len(),
        want.len(),
        "one stored bucket per bucket with events"
    );
    let mut corrected = 0;
    for e in &stored {
        let w = &want[&(e.key.clone(), e.window.start)];
        assert_eq!(
            (e.count, e.checksum.hash),
            (w.count, w.hash),
            "{} {}",
            e.key,
            e.window
        );
        assert_eq!(e.value("delta"), Some(&w.delta), "{} {}", e.key, e.window);
        if clamp {
            assert_eq!(e.value("total"), w.total.as_ref(), "{} {}", e.key, e.window);
        }
        if e.version.0 > 1 {
            corrected += 1;
        }
    }
    assert!(corrected > 20, "late data corrected buckets ({corrected})");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn restarts_and_grouped_commits_end_equal_to_the_oracle() {
    check(false, 3);
}

#[test]
fn clamped_totals_through_restarts_equal_the_oracle() {
    check(true, 5);
}
