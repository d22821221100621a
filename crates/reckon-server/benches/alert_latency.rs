//! Alert re-evaluation latency (seed 004's trigger): from sending a late POST that
//! makes a closed window hold an alert's condition to the POST's answer (the window's
//! correction and the alert's late fire are durable, in one commit) and to the late
//! fire arriving on the alert's change feed (server-sent events), p50/p99/max over
//! `SAMPLES`, with nothing
//! else going on and while a background client posts on-time readings at `LOAD_RATE`
//! events/s. The webhook's digest interval (yours to choose; `0s` sends at once) comes on
//! top; the feed is what webhooks follow.
//!
//! Setup: 1,000 stations, 5-minute sums of `above` per station, the rule `above >= 10`
//! (`for = 1`), 2 hours of on-time readings below the threshold, so every window is closed
//! and holds nothing. Each sample posts one late reading of 10 into a closed window of
//! its own station.
//!
//! `cargo bench -p reckon-server --bench alert_latency` (env `SAMPLES`, `LOAD_RATE`,
//! `RUNS`).
#![allow(clippy::unwrap_used)]

use reckon_runtime::Config;
use reckon_server::{App, AppOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STATIONS: usize = 1_000;
const BASE_S: i64 = 1_709_280_000; // 2024-03-01T08:00:00Z

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

fn median(mut xs: Vec<f64>) -> f64 {
    percentile(&mut xs, 0.5)
}

fn config(dir: &std::path::Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [server]
        max_pending_requests = 1024
        [[stream]]
        name = "alarms"
        key_fields = ["station"]
        time_format = "unix_s"
        max_future = "off"
        [[pipeline]]
        name = "rate"
        stream = "alarms"
        window = {{ type = "tumbling", size = "5m" }}
        aggregates = [{{ fn = "sum", field = "above", name = "above" }}]
        out_of_orderness = "0s"
        allowed_lateness = "1d"
        [[alert]]
        name = "hot"
        input = "rate"
        condition = "above >= 10"
        "#,
        dir.display()
    ))
    .unwrap()
}

fn line(station: usize, t: i64, above: i64) -> String {
    format!("{{\"station\":\"s{station}\",\"time\":{t},\"above\":{above}}}\n")
}

struct Feed {
    resp: reqwest::Response,
    buf: String,
}

impl Feed {
    async fn find(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut at = 0;
            let mut found = false;
            while let Some(end) = self.buf[at..].find("\n\n") {
                found |= self.buf[at..at + end].contains(needle);
                at += end + 2;
                if found {
                    break;
                }
            }
            self.buf.drain(..at);
            if found {
                return true;
            }
            let Ok(chunk) = tokio::time::timeout_at(deadline, self.resp.chunk()).await else {
                return false;
            };
            self.buf
                .push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
        }
    }
}

/// Posts a late reading of 10 for station `k` into its closed first window and waits
/// for the alert on the feed: milliseconds.
async fn probe(c: &reqwest::Client, url: &str, k: usize, feed: &mut Feed) -> [f64; 2] {
    let station = k % STATIONS;
    let t = BASE_S + 300 * (k / STATIONS) as i64 + 30;
    let started = Instant::now();
    let r = c.post(url).body(line(station, t, 10)).send().await.unwrap();
    assert!(r.status().is_success());
    let ack = started.elapsed().as_secs_f64() * 1e3;
    let needle = format!("station=s{station}\"");
    assert!(
        feed.find(&needle, Duration::from_secs(10)).await,
        "no alert for s{station}"
    );
    [ack, started.elapsed().as_secs_f64() * 1e3]
}

/// One run, idle and under load.
async fn run(samples: usize, load_rate: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(config(dir.path()), AppOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = app.shutdown_signal();
    let task = tokio::spawn(app.serve(listener));
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/streams/alarms/events");
    // Two hours of readings of 1 per station every minute: no window holds.
    let mut body = String::new();
    for m in 0..120 {
        for s in 0..STATIONS {
            body.push_str(&line(s, BASE_S + m * 60, 1));
        }
        if body.len() > 4 << 20 {
            let r = c
                .post(&url)
                .body(std::mem::take(&mut body))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    }
    let r = c.post(&url).body(body).send().await.unwrap();
    assert!(r.status().is_success());
    let resp = c
        .get(format!("{base}/v1/pipelines/hot/changes"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut feed = Feed {
        resp,
        buf: String::new(),
    };
    let mut idle = Vec::new();
    for k in 0..samples {
        idle.push(probe(&c, &url, k, &mut feed).await);
    }
    // Under load: on-time readings of other minutes (later, below the threshold).
    let stopping = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (c, url, stopping, sent) = (c.clone(), url.clone(), stopping.clone(), sent.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut m = 120i64;
            while !stopping.load(Ordering::Relaxed) {
                let mut body = String::new();
                for s in 0..STATIONS {
                    body.push_str(&line(s, BASE_S + m * 60, 1));
                }
                m += 1;
                let r = c.post(&url).body(body).send().await.unwrap();
                assert!(r.status().is_success());
                let n = sent.fetch_add(STATIONS, Ordering::Relaxed) + STATIONS;
                let due = Duration::from_secs_f64(n as f64 / load_rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut loaded = Vec::new();
    for k in samples..2 * samples {
        loaded.push(probe(&c, &url, k, &mut feed).await);
    }
    stopping.store(true, Ordering::Relaxed);
    let rate = load.await.unwrap();
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    let stats = |v: &[[f64; 2]], i: usize| {
        let mut v: Vec<f64> = v.iter().map(|x| x[i]).collect();
        let max = v.iter().copied().fold(0.0, f64::max);
        [percentile(&mut v, 0.5), percentile(&mut v, 0.99), max]
    };
    Run {
        idle: [stats(&idle, 0), stats(&idle, 1)],
        loaded: [stats(&loaded, 0), stats(&loaded, 1)],
        rate,
    }
}

/// p50, p99, max in ms; [the POST's answer (the correction and the alert are durable),
/// the alert's late fire on the feed].
struct Run {
    idle: [[f64; 3]; 2],
    loaded: [[f64; 3]; 2],
    rate: f64,
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let samples = env("SAMPLES", 300);
    let load_rate = env("LOAD_RATE", 50_000);
    let runs = env("RUNS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "alert_latency: {samples} late POSTs idle and under {load_rate} events/s, median of {runs} runs"
    );
    let r: Vec<Run> = (0..runs)
        .map(|_| rt.block_on(run(samples, load_rate)))
        .collect();
    let col = |f: &dyn Fn(&Run) -> f64| median(r.iter().map(f).collect());
    for (what, i) in [
        ("POST answered (durable)", 0),
        ("alert late fire on the feed", 1),
    ] {
        println!(
            "{what:<32} idle p50 {:.2} p99 {:.2} max {:.2} ms | loaded p50 {:.2} p99 {:.2} max {:.2} ms",
            col(&|x| x.idle[i][0]),
            col(&|x| x.idle[i][1]),
            col(&|x| x.idle[i][2]),
            col(&|x| x.loaded[i][0]),
            col(&|x| x.loaded[i][1]),
            col(&|x| x.loaded[i][2]),
        );
    }
    println!("load reached {:.0} events/s", col(&|x| x.rate));
}
