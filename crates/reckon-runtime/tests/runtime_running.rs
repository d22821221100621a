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
    config_with(path, clamp, false)
}

/// With `mapped`, crossings are keyed by sensor (`dpu`) and mapped to spaces by the
/// rows of `dpu_location`.
fn config_with(path: &Path, clamp: bool, mapped: bool) -> Config {
    let (key, value, mapping) = if mapped {
        (
            "dpu",
            "direction * sign",
            "mapping = { stream = \"dpu_location\", key_fields = [\"space\"] }",
        )
    } else {
        ("space", "direction", "")
    };
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "crossings"
        key_fields = ["{key}"]
        id_field = "crossing_id"
        max_future = "off"
        [[stream]]
        name = "dpu_location"
        key_fields = ["dpu"]
        max_future = "off"
        [[running_total]]
        name = "occupancy"
        stream = "crossings"
        bucket = "1m"
        value = "{value}"
        reset = {{ at = "04:00", time_zone = "Europe/Amsterdam" }}
        clamp = {clamp}
        retention = "3d"
        {mapping}
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

fn drive(cfg: Config, arrivals: &[Arrival], seed: u64) -> Runtime {
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
            let Some(first) = arrivals.get(i) else {
                break;
            };
            let stream = first.event.stream.clone();
            let events: Vec<Event> = arrivals[i..]
                .iter()
                .take(take)
                .take_while(|a| a.event.stream == stream)
                .map(|a| a.event.clone())
                .collect();
            i += events.len();
            requests.push(IngestRequest {
                stream,
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

/// Before the end: the total of each space at `n` times `step_s` apart (from an hour
/// before the workload) equals the oracle's.
fn totals_equal_the_oracle(
    rt: &Runtime,
    oracle: &RunningOracle,
    events: &[Event],
    spaces: &[&str],
    n: i64,
    step_s: i64,
) {
    let op = rt.operator("occupancy").unwrap();
    for space in spaces {
        let key = Key::from_tags([("space", *space)]).unwrap();
        for k in 0..n {
            let t = EventTime(BASE - 3600 * SEC + k * step_s * SEC);
            let got = op.value_at(&key, t).unwrap().unwrap();
            assert_eq!(got, oracle.total_at(events, &key, t), "{key} at {t}");
        }
    }
}

/// After the end: every stored bucket's latest version (buckets a mapping row emptied,
/// count 0, left out) equals the oracle's bucket, and there is one per oracle bucket.
fn stored_equal_the_oracle(
    rt: &mut Runtime,
    oracle: &RunningOracle,
    events: &[Event],
    clamp: bool,
) -> Vec<reckon_core::Emission> {
    rt.finish(&mut |_| {}).unwrap();
    let want = oracle.buckets(events);
    let stored: Vec<_> = rt
        .store()
        .windows("occupancy", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.count > 0)
        .collect();
    assert_eq!(
        stored.len(),
        want.len(),
        "one stored bucket per bucket with events"
    );
    for e in &stored {
        let w = &want[&(e.key.clone(), e.window.start)];
        let at = format!("{} {}", e.key, e.window);
        assert_eq!((e.count, e.checksum.hash), (w.count, w.hash), "{at}");
        assert_eq!(e.value("delta"), Some(&w.delta), "{at}");
        if clamp {
            assert_eq!(e.value("total"), w.total.as_ref(), "{at}");
        }
    }
    stored
}

fn check(clamp: bool, seed: u64) {
    let dir = temp_dir(&format!("running-{clamp}-{seed}"));
    let arrivals = workload(3_000, seed);
    let mut rt = drive(config(&dir, clamp), &arrivals, seed + 1);
    let events: Vec<Event> = arrivals.iter().map(|a| a.event.clone()).collect();
    let mut oracle = RunningOracle::new(Span::minutes(1), |e| e.field("direction").cloned()).reset(
        jiff::civil::time(4, 0, 0, 0),
        jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap(),
    );
    if clamp {
        oracle = oracle.clamp();
    }
    totals_equal_the_oracle(
        &rt,
        &oracle,
        &events,
        &["s0", "s1", "s2", "s3", "nobody"],
        400,
        331,
    );
    let stored = stored_equal_the_oracle(&mut rt, &oracle, &events, clamp);
    let corrected = stored.iter().filter(|e| e.version.0 > 1).count();
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

/// Seed 003's sensors: crossings keyed by DPU, mapped to spaces (and a sign: a DPU
/// mounted facing out counts -1 for "in") by rows of `dpu_location`. Four DPUs on two
/// spaces from the start; then, while crossings flow, rows arrive that say where DPUs
/// really were: DPU 1 moved to space s3 from hour 5 (sent at hour 12), DPU 2 turned
/// around from hour 8 (sent at hour 9), DPU 0 moved to s1 from hour 20 (sent ahead, at
/// hour 2). Through grouped commits and restarts the totals and the buckets equal the
/// oracle over the final rows.
#[test]
fn mapped_sensors_with_retroactive_moves_equal_the_oracle() {
    let dir = temp_dir("running-mapped");
    let mut arrivals: Vec<Arrival> = workload(3_000, 9)
        .into_iter()
        .map(|mut a| {
            let space = a.event.key.tags()[0].1.clone();
            a.event.key = Key::from_tags([("dpu", space.replace('s', ""))]).unwrap();
            a
        })
        .collect();
    let row = |dpu: u32, hours: i64, space: &str, sign: i64, sent_h: i64| Arrival {
        event: Event {
            stream: "dpu_location".into(),
            key: Key::from_tags([("dpu", dpu.to_string())]).unwrap(),
            time: EventTime(BASE + hours * 3600 * SEC),
            id: None,
            fields: vec![
                ("space".into(), Value::Str(Arc::from(space))),
                ("sign".into(), Value::I64(sign)),
            ],
        },
        at: BASE + sent_h * 3600 * SEC,
    };
    let mut rows = vec![
        row(0, -1, "s0", 1, -1),
        row(1, -1, "s0", -1, -1),
        row(2, -1, "s1", 1, -1),
        row(3, -1, "s1", 1, -1),
        row(1, 5, "s3", -1, 12),
        row(2, 8, "s1", -1, 9),
        row(0, 20, "s1", 1, 2),
    ];
    arrivals.append(&mut rows);
    arrivals.sort_by_key(|a| a.at);
    let mut rt = drive(config_with(&dir, true, true), &arrivals, 10);
    let (rows, events): (Vec<Event>, Vec<Event>) = arrivals
        .iter()
        .map(|a| a.event.clone())
        .partition(|e| &*e.stream == "dpu_location");
    let oracle = RunningOracle::new(Span::minutes(1), |e| {
        match (e.field("direction"), e.field("sign")) {
            (Some(Value::I64(d)), Some(Value::I64(s))) => Some(Value::I64(d * s)),
            _ => None,
        }
    })
    .reset(
        jiff::civil::time(4, 0, 0, 0),
        jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap(),
    )
    .clamp()
    .mapping(&rows, &["space"]);
    totals_equal_the_oracle(&rt, &oracle, &events, &["s0", "s1", "s3", "s9"], 300, 443);
    let stored = stored_equal_the_oracle(&mut rt, &oracle, &events, true);
    let moved = stored
        .iter()
        .filter(|e| e.key.as_str() == "space=s3")
        .count();
    assert!(
        moved > 100,
        "DPU 1's crossings after hour 5 are counted in s3 ({moved} buckets)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
