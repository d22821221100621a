//! The cost of a late event that cascades through four rollup levels, with its
//! baseline in the same run (release mode):
//!
//! - 100 stations, one reading a minute each from 2024-03-29 to 2024-04-01 01:00 UTC,
//!   in 5-minute windows rolled up to hour, day, ISO week and month (UTC), every level
//!   with 2 h of allowed lateness. 2024-03-31 is a Sunday: its week and its month end
//!   together at midnight, so a late reading of 23:30 that day finds every level closed
//!   and still hot, and each of the five levels emits a `late` correction in the
//!   event's commit.
//! - **Direct**: one late event per `Runtime::ingest` (one commit each) on a store in
//!   `/dev/shm` when there is one (so the fsync costs little and the engines' work
//!   shows), for the chain and for the 5-minute pipeline alone (baseline).
//! - **Latency**: under `reckon serve`, a follower holds the month level's SSE feed
//!   open; one late event is POSTed at a time; the time from sending the POST to the
//!   month's correction arriving on the feed (p50, p99), and for the baseline the time
//!   to the 5-minute correction on its feed, store on the ordinary disk.
//!
//! `cargo bench -p reckon-server --bench rollup_cascade` (env: `SAMPLES`, `RUNS`).
#![allow(clippy::unwrap_used)]

use reckon_core::{Event, EventTime, Key, PartitionId, ProcessingTime, Value};
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_server::{App, AppOptions, ScaledClock};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STATIONS: i64 = 100;
const MIN: i64 = 60_000_000_000;
/// 2024-03-29T00:00:00Z.
const T0: i64 = 1_711_670_400_000_000_000;
/// 2024-03-31T23:30:00Z: a Sunday evening.
const LATE: i64 = 1_711_927_800_000_000_000;
/// Minutes of data: to 2024-04-01 01:00 UTC.
const MINUTES: i64 = 3 * 24 * 60 + 60;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path, rollups: bool) -> Config {
    let mut text = format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "alarms"
        key_fields = ["station"]
        time_format = "unix_ns"
        max_future = "off"
        [[pipeline]]
        name = "a5m"
        stream = "alarms"
        window = {{ type = "tumbling", size = "5m" }}
        aggregates = [{{ fn = "count", name = "all" }}, {{ fn = "count", filter = "value > threshold", name = "above" }}, {{ fn = "max", field = "value" }}, {{ fn = "mean", field = "value" }}]
        allowed_lateness = "2h"
        retention = "30d"
        "#,
        dir.display()
    );
    if rollups {
        text.push_str(
            r#"
        [[pipeline]]
        name = "ahour"
        input = "a5m"
        window = { type = "tumbling", size = "1h" }
        [[pipeline]]
        name = "aday"
        input = "ahour"
        window = { type = "calendar", unit = "day", tz = "UTC" }
        [[pipeline]]
        name = "aweek"
        input = "aday"
        window = { type = "calendar", unit = "week", tz = "UTC" }
        [[pipeline]]
        name = "amonth"
        input = "aday"
        window = { type = "calendar", unit = "month", tz = "UTC" }
        "#,
        );
    }
    Config::from_toml(&text).unwrap()
}

fn reading(station: i64, t: i64, value: i64) -> Event {
    Event {
        stream: "alarms".into(),
        key: Key::from_tags([("station", station.to_string())]).unwrap(),
        time: EventTime(t),
        id: None,
        fields: vec![
            ("value".into(), Value::I64(value)),
            ("threshold".into(), Value::I64(50)),
        ],
    }
}

fn history() -> Vec<Event> {
    let mut out = Vec::with_capacity((MINUTES * STATIONS) as usize);
    for m in 0..MINUTES {
        for s in 0..STATIONS {
            out.push(reading(s, T0 + m * MIN, (m * 7 + s * 13) % 100));
        }
    }
    out
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 * p).ceil() as usize).clamp(1, xs.len()) - 1]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Microseconds per late event through `Runtime::ingest`, and emissions per event.
fn direct(rollups: bool, samples: usize) -> (f64, f64) {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let cfg = config(&dir.path().join("store"), rollups);
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let now = ProcessingTime(LATE + 100 * 24 * 60 * MIN);
    for chunk in history().chunks(20_000) {
        rt.ingest("alarms", PartitionId(0), now, chunk.to_vec(), &mut |_| {})
            .unwrap();
    }
    let mut emitted = 0usize;
    let started = Instant::now();
    for k in 0..samples as i64 {
        let e = reading(k % STATIONS, LATE + (k % 600) * 1_000_000_000, 99);
        rt.ingest("alarms", PartitionId(0), now, vec![e], &mut |_| {
            emitted += 1
        })
        .unwrap();
    }
    (
        started.elapsed().as_secs_f64() * 1e6 / samples as f64,
        emitted as f64 / samples as f64,
    )
}

/// (p50, p99) in ms from the POST of a late event to `level`'s correction on its feed.
async fn latency(rollups: bool, level: &str, samples: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(
        config(&dir.path().join("store"), rollups),
        AppOptions {
            clock: Arc::new(ScaledClock::new(
                ProcessingTime(LATE + 100 * 24 * 60 * MIN),
                1.0,
            )),
            ..AppOptions::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = app.shutdown_signal();
    let server = tokio::spawn(app.serve(listener));
    let client = reqwest::Client::new();
    let line = |e: &Event| {
        format!(
            "{{\"station\":\"{}\",\"time\":{},\"value\":{},\"threshold\":50}}\n",
            e.key.as_str().trim_start_matches("station="),
            e.time.0,
            match e.fields[0].1 {
                Value::I64(v) => v,
                _ => 0,
            }
        )
    };
    for chunk in history().chunks(20_000) {
        let body: String = chunk.iter().map(line).collect();
        let r = client
            .post(format!("{base}/v1/streams/alarms/events"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut feed = client
        .get(format!("{base}/v1/pipelines/{level}/changes"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let mut times = Vec::with_capacity(samples);
    for k in 0..samples as i64 {
        let station = k % STATIONS;
        let body = line(&reading(station, LATE + (k % 600) * 1_000_000_000, 99));
        let sent = Instant::now();
        let r = client
            .post(format!("{base}/v1/streams/alarms/events"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let key = format!("\"key\":\"station={station}\"");
        loop {
            if let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if frame.contains(&key) && frame.contains("\"kind\":\"late\"") {
                    break;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), feed.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        times.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    let _ = stop.send(true);
    drop(feed);
    server.await.unwrap().unwrap();
    (percentile(&mut times, 0.5), percentile(&mut times, 0.99))
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let samples = env("SAMPLES", 300);
    let runs = env("RUNS", 3);
    let (mut chain, mut base) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let c = direct(true, samples);
        let b = direct(false, samples);
        println!(
            "run {run}: late event through 5 levels {:.1} us ({:.1} emissions), 5-minute level alone {:.1} us ({:.1} emissions)",
            c.0, c.1, b.0, b.1
        );
        chain.push(c.0);
        base.push(b.0);
    }
    println!(
        "direct, {samples} late events, median of {runs}: 5m→hour→day→week+month {:.1} us per late event; 5-minute pipeline alone {:.1} us",
        median(chain),
        median(base)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut month, mut alone) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        month.push(rt.block_on(latency(true, "amonth", samples)));
        alone.push(rt.block_on(latency(false, "a5m", samples)));
    }
    month.sort_by(|a, b| a.1.total_cmp(&b.1));
    alone.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (m, a) = (month[month.len() / 2], alone[alone.len() / 2]);
    println!(
        "correction latency, POST → correction on the SSE feed, {samples} samples, median run of {runs}: month level of the chain p50 {:.2} ms p99 {:.2} ms; 5-minute pipeline alone p50 {:.2} ms p99 {:.2} ms",
        m.0, m.1, a.0, a.1
    );
}
