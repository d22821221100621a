//! HTTP benchmarks with their load generator in the same run (release mode):
//!
//! 1. NDJSON ingest end to end with durability: seed 000's workload (write.py: every
//!    10 s a reading per location plus a late one up to 24 h old) in requests of 5,000
//!    events from `CLIENTS` concurrent connections; each request is answered after its
//!    commit is fsync'd. Baseline in the same run: the same batches through
//!    `Runtime::ingest_many` directly (no HTTP, no JSON), groups of `CLIENTS` batches.
//! 2. Correction latency: a follower holds the SSE change feed open; one late event is
//!    POSTed at a time into a closed window; the time from sending the POST to the
//!    corrected emission arriving on the feed, p50 and p99 over `LATENCY_SAMPLES`.
//!
//! `cargo bench -p reckon-server --bench http_ingest` (env: `EVENTS`, `CLIENTS`,
//! `RUNS`). The load generator shares the two cores with the server.
#![allow(clippy::unwrap_used)]

use reckon_core::ProcessingTime;
use reckon_runtime::{Config, IngestRequest, Runtime, RuntimeOptions};
use reckon_server::{App, AppOptions, ScaledClock};
use reckon_workload::{Seed000, ndjson_line};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 5_000;
const LATENCY_SAMPLES: usize = 300;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [server]
        max_pending_requests = 1024
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        time_format = "unix_ns"
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        out_of_orderness = "10s"
        allowed_lateness = "24h"
        retention = "7d"
        "#,
        dir.display()
    ))
    .unwrap()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 * p).ceil() as usize).clamp(1, xs.len()) - 1]
}

async fn http_run(
    arrivals: &[reckon_workload::Arrival],
    bodies: &Arc<Vec<String>>,
    clients: usize,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let g = Seed000::default();
    let app = App::open(
        config(dir.path()),
        AppOptions {
            clock: Arc::new(ScaledClock::new(ProcessingTime(g.start.0), 1.0)),
            ..AppOptions::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/streams/water_level/events",
        listener.local_addr().unwrap()
    );
    let stop = app.shutdown_signal();
    let server = tokio::spawn(app.serve(listener));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, url) = (bodies.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let r = client.post(&url).body(body.clone()).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    server.await.unwrap().unwrap();
    arrivals.len() as f64 / secs
}

fn direct_run(arrivals: &[reckon_workload::Arrival], clients: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(&config(dir.path()), RuntimeOptions::default()).unwrap();
    let stream: Arc<str> = Arc::from("water_level");
    let batches: Vec<Vec<reckon_core::Event>> = arrivals
        .chunks(BATCH)
        .map(|c| c.iter().map(|a| a.event.clone()).collect())
        .collect();
    let started = Instant::now();
    for group in batches.chunks(clients) {
        let now = ProcessingTime(Seed000::default().start.0);
        let reqs = group
            .iter()
            .map(|events| IngestRequest {
                stream: stream.clone(),
                partition: reckon_core::PartitionId(0),
                events: events.clone(),
            })
            .collect();
        rt.ingest_many(now, reqs, &mut |_| {}).unwrap();
    }
    arrivals.len() as f64 / started.elapsed().as_secs_f64()
}

async fn latency() -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let g = Seed000 {
        locations: 100,
        late_probability: 0.0,
        ..Seed000::default()
    };
    let app = App::open(
        config(dir.path()),
        AppOptions {
            clock: Arc::new(ScaledClock::new(ProcessingTime(g.start.0), 1.0)),
            ..AppOptions::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = app.shutdown_signal();
    let server = tokio::spawn(app.serve(listener));
    let client = reqwest::Client::new();
    // Two hours of on-time data: the first hour's windows are closed.
    let mut body = String::new();
    for a in g.arrivals().take(100 * 720 + 100) {
        ndjson_line(&a.event, &mut body);
    }
    let r = client
        .post(format!("{base}/v1/streams/water_level/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut feed = client
        .get(format!("{base}/v1/pipelines/mean_1h/changes"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut samples = Vec::new();
    let mut buf = String::new();
    for k in 0..LATENCY_SAMPLES {
        let line = format!(
            "{{\"i\":\"{}\",\"time\":{},\"level\":1.5}}\n",
            k % 100,
            g.start.0 + 1_000_000_000 * (k as i64 + 1)
        );
        let sent = Instant::now();
        let r = client
            .post(format!("{base}/v1/streams/water_level/events"))
            .body(line)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Wait for the corrected emission of that key on the feed.
        let key = format!("\"key\":\"i={}\"", k % 100);
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
        samples.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    let _ = stop.send(true);
    drop(feed);
    server.await.unwrap().unwrap();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
        mean,
    )
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = env("EVENTS", 1_000_000);
    let clients = env("CLIENTS", 4);
    let runs = env("RUNS", 3);
    let arrivals: Vec<_> = Seed000::default().arrivals().take(events).collect();
    let bodies: Arc<Vec<String>> = Arc::new(
        arrivals
            .chunks(BATCH)
            .map(|c| {
                let mut s = String::new();
                c.iter().for_each(|a| ndjson_line(&a.event, &mut s));
                s
            })
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut http, mut direct) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let h = rt.block_on(http_run(&arrivals, &bodies, clients));
        let d = direct_run(&arrivals, clients);
        println!(
            "run {run}: HTTP NDJSON {:.0} events/s   runtime direct (baseline) {:.0} events/s",
            h, d
        );
        http.push(h);
        direct.push(d);
    }
    println!(
        "seed 000, {events} events, batches of {BATCH}, {clients} clients, median of {runs}: HTTP NDJSON ingest {:.0} events/s; runtime without HTTP {:.0} events/s",
        median(http),
        median(direct)
    );
    let mut p = Vec::new();
    for _ in 0..runs {
        p.push(rt.block_on(latency()));
    }
    p.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (p50, p99, mean) = p[p.len() / 2];
    println!(
        "correction latency (POST of a late event → its corrected emission on the SSE feed), {LATENCY_SAMPLES} samples, median run of {runs}: p50 {p50:.2} ms, p99 {p99:.2} ms, mean {mean:.2} ms"
    );
}
