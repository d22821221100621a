//! A running total read over HTTP (`GET /v1/pipelines/occupancy/total?key=&at=`, seed
//! 003): latency of point lookups at a random event time, idle and while a background
//! client posts crossings.
//!
//! Setup: 20 spaces, 400,000 crossings over ~5.5 hours (1-minute buckets, clamped),
//! posted durably first. Then `QUERIES` sequential lookups (one connection, keep-alive)
//! with nothing else going on, and again while another client posts batches of 5,000
//! crossings at `LOAD_RATE` events/s (default 100,000). The answer comes from the
//! engine's memory, asked on the writer thread between two commits, so under load a
//! lookup waits for the commit group in progress.
//!
//! `cargo bench -p reckon-server --bench total_query` (env `QUERIES`, `LOAD_RATE`).
#![allow(clippy::unwrap_used)]

use reckon_core::ProcessingTime;
use reckon_runtime::Config;
use reckon_server::{App, AppOptions, ScaledClock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SPACES: u64 = 20;
const BASE_S: i64 = 1_519_491_600; // 2018-02-24T17:00:00Z
const BATCH: usize = 5_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 * p).ceil() as usize).clamp(1, xs.len()) - 1]
}

/// Batches of NDJSON crossings, starting at crossing `from`; one crossing every 50 ms
/// of event time, spread over the spaces.
fn bodies(from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| {
            let mut s = String::new();
            for &i in c {
                let space = (i as u64).wrapping_mul(2_654_435_761) % SPACES;
                let dir = if i % 5 == 4 { -1 } else { 1 };
                let ms = BASE_S * 1000 + i as i64 * 50;
                s.push_str(&format!(
                    "{{\"space\":\"s{space}\",\"time\":{},\"direction\":{dir}}}\n",
                    ms * 1_000_000
                ));
            }
            s
        })
        .collect()
}

async fn lookups(client: &reqwest::Client, base: &str, n: usize, span_s: i64) -> Vec<f64> {
    let mut x: u64 = 7;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let space = (x >> 40) % SPACES;
        let secs = BASE_S + ((x >> 20) as i64 % span_s);
        let at = jiff::Timestamp::from_second(secs).unwrap();
        let url = format!("{base}/v1/pipelines/occupancy/total?key=space=s{space}&at={at}");
        let t = Instant::now();
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(v["value"].is_number(), "{v}");
    }
    out
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let queries = env("QUERIES", 2_000);
    let load_rate = env("LOAD_RATE", 100_000) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(&format!(
            r#"
            [store]
            path = "{}"
            [server]
            max_pending_requests = 1024
            [[stream]]
            name = "crossings"
            key_fields = ["space"]
            time_format = "unix_ns"
            max_future = "off"
            [[running_total]]
            name = "occupancy"
            stream = "crossings"
            bucket = "1m"
            value = "direction"
            clamp = true
            retention = "30d"
            "#,
            dir.path().display()
        ))
        .unwrap();
        let app = App::open(
            config,
            AppOptions {
                clock: Arc::new(ScaledClock::new(ProcessingTime(BASE_S * 1_000_000_000), 1.0)),
                ..AppOptions::default()
            },
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = app.shutdown_signal();
        let task = tokio::spawn(app.serve(listener));
        let client = reqwest::Client::new();
        let setup = 400_000;
        for body in bodies(0, setup) {
            let r = client
                .post(format!("{base}/v1/streams/crossings/events"))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let span_s = (setup as i64 * 50) / 1000;
        let mut idle = lookups(&client, &base, queries, span_s).await;

        // Under load: a paced poster of later crossings.
        let done = Arc::new(AtomicBool::new(false));
        let posted = Arc::new(AtomicUsize::new(0));
        let loader = {
            let (done, posted, base) = (done.clone(), posted.clone(), base.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                let began = tokio::time::Instant::now();
                for (i, body) in bodies(setup, 4_000_000).into_iter().enumerate() {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    tokio::time::sleep_until(
                        began + Duration::from_secs_f64(i as f64 * BATCH as f64 / load_rate),
                    )
                    .await;
                    let r = c
                        .post(format!("{base}/v1/streams/crossings/events"))
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    posted.fetch_add(BATCH, Ordering::SeqCst);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (t0, p0) = (Instant::now(), posted.load(Ordering::SeqCst));
        let mut loaded = lookups(&client, &base, queries, span_s).await;
        let achieved = (posted.load(Ordering::SeqCst) - p0) as f64 / t0.elapsed().as_secs_f64();
        done.store(true, Ordering::SeqCst);
        loader.await.unwrap();
        let _ = stop.send(true);
        task.await.unwrap().unwrap();

        println!("GET /v1/pipelines/occupancy/total?key=&at= ({queries} lookups, {SPACES} spaces, {setup} crossings stored), ms:");
        println!("| condition | p50 | p99 | max |");
        println!("|---|---|---|---|");
        for (name, xs) in [("idle".to_string(), &mut idle), (format!("under load ({achieved:.0} crossings/s posted)"), &mut loaded)] {
            let (p50, p99, max) = (percentile(xs, 0.5), percentile(xs, 0.99), percentile(xs, 1.0));
            println!("| {name} | {p50:.3} | {p99:.3} | {max:.3} |");
        }
    });
}
