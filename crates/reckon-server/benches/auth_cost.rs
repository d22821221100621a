//! What tenants, tokens and quotas cost, side by side with single-user mode in the same
//! run (release mode):
//!
//! 1. Per request: `GET /v1/pipelines` over loopback HTTP (one keep-alive connection,
//!    `REQUESTS` sequential requests), p50 and p99, on a server without tokens and on
//!    one where a tenant's token is checked (SHA-256 of the token, a map lookup) and
//!    names are resolved in its tenant.
//! 2. Per event: durable NDJSON ingest of seed 000's workload in batches of 5,000 from
//!    `CLIENTS` connections, events/s, with no tokens, and as a tenant with all four
//!    quotas set high enough never to refuse (so every event's series is hashed and
//!    checked).
//! 3. The two checks alone, in a loop: `Auth::authenticate` per call and
//!    `Limits::charge` per event of a 5,000-event request with every quota set.
//!
//! `cargo bench -p reckon-server --bench auth_cost` (env `REQUESTS`, `EVENTS`,
//! `CLIENTS`, `RUNS`).
#![allow(clippy::unwrap_used)]

use reckon_core::ProcessingTime;
use reckon_runtime::Config;
use reckon_server::{App, AppOptions, ScaledClock};
use reckon_workload::{Seed000, ndjson_line};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

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

fn median(mut xs: Vec<f64>) -> f64 {
    percentile(&mut xs, 0.5)
}

fn config(dir: &std::path::Path, tenant: bool) -> Config {
    let t = if tenant { "tenant = \"acme\"" } else { "" };
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [server]
        max_pending_requests = 1024
        [[stream]]
        name = "water_level"
        {t}
        key_fields = ["i"]
        time_format = "unix_ns"
        max_future = "off"
        [[pipeline]]
        name = "mean_1h"
        {t}
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

struct Server {
    _dir: tempfile::TempDir,
    app_state: reckon_server::AppState,
    base: String,
    token: Option<String>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<reckon_server::Result<()>>,
}

async fn serve(tenant: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ScaledClock::new(
        ProcessingTime(Seed000::default().start.0),
        1.0,
    ));
    let app = App::open(
        config(dir.path(), tenant),
        AppOptions {
            clock,
            ..AppOptions::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app_state = app.state().clone();
    let stop = app.shutdown_signal();
    let task = tokio::spawn(app.serve(listener));
    let mut token = None;
    if tenant {
        let c = reqwest::Client::new();
        let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
            let mut r = c.post(format!("{base}{path}")).json(&body);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r
        };
        let admin: serde_json::Value =
            post("/v1/tokens", None, serde_json::json!({"scopes": ["admin"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let admin = admin["token"].as_str().unwrap().to_string();
        let q = serde_json::json!({
            "name": "acme",
            "quotas": {
                "events_per_second": 100_000_000u64,
                "bytes_per_second": 10_000_000_000u64,
                "max_series": 10_000_000u64,
                "max_stored_bytes": 1u64 << 50,
            }
        });
        assert!(
            post("/v1/tenants", Some(&admin), q)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        let t: serde_json::Value = post(
            "/v1/tokens",
            Some(&admin),
            serde_json::json!({"tenant": "acme", "scopes": ["read", "write"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        token = Some(t["token"].as_str().unwrap().to_string());
    }
    Server {
        _dir: dir,
        app_state,
        base,
        token,
        stop,
        task,
    }
}

impl Server {
    fn req(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let r = c.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

/// Sequential `GET /v1/pipelines`, milliseconds each.
async fn gets(s: &Server, n: usize) -> Vec<f64> {
    let c = reqwest::Client::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = s
            .req(&c, reqwest::Method::GET, "/v1/pipelines")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out
}

/// Durable ingest of `bodies` from `clients` connections: events/s.
async fn ingest(s: &Server, bodies: &Arc<Vec<String>>, events: usize, clients: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next) = (bodies.clone(), next.clone());
        let c = reqwest::Client::new();
        let url = format!("{}/v1/streams/water_level/events", s.base);
        let token = s.token.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = bodies.get(i) else { return };
                let mut r = c.post(&url).body(b.clone());
                if let Some(t) = &token {
                    r = r.bearer_auth(t);
                }
                let resp = r.send().await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let requests = env("REQUESTS", 20_000);
    let events = env("EVENTS", 500_000);
    let clients = env("CLIENTS", 4);
    let runs = env("RUNS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let arrivals: Vec<reckon_core::Event> = Seed000::default()
        .arrivals()
        .take(events)
        .map(|a| a.event)
        .collect();
    let bodies: Arc<Vec<String>> = Arc::new(
        arrivals
            .chunks(BATCH)
            .map(|c| {
                let mut body = String::new();
                for e in c {
                    ndjson_line(e, &mut body);
                }
                body
            })
            .collect(),
    );
    println!(
        "auth_cost: {requests} GETs, {events} events in batches of {BATCH} from {clients} clients, median of {runs} runs"
    );
    rt.block_on(async {
        // 1. Per request.
        let (mut open_p50, mut open_p99, mut auth_p50, mut auth_p99) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            for tenant in [false, true] {
                let s = serve(tenant).await;
                let mut ms = gets(&s, requests).await;
                let (p50, p99) = (percentile(&mut ms, 0.5), percentile(&mut ms, 0.99));
                if tenant {
                    auth_p50.push(p50);
                    auth_p99.push(p99);
                } else {
                    open_p50.push(p50);
                    open_p99.push(p99);
                }
                s.stop().await;
            }
        }
        println!(
            "GET /v1/pipelines  single-user p50 {:.1} µs p99 {:.1} µs | tenant token p50 {:.1} µs p99 {:.1} µs",
            median(open_p50) * 1e3,
            median(open_p99) * 1e3,
            median(auth_p50) * 1e3,
            median(auth_p99) * 1e3
        );
        // 2. Per event, durable ingest.
        let (mut open, mut auth) = (vec![], vec![]);
        for _ in 0..runs {
            for tenant in [false, true] {
                let s = serve(tenant).await;
                let rate = ingest(&s, &bodies, events, clients).await;
                if tenant { auth.push(rate) } else { open.push(rate) }
                s.stop().await;
            }
        }
        println!(
            "NDJSON ingest      single-user {:.0} events/s | tenant token + 4 quotas {:.0} events/s",
            median(open),
            median(auth)
        );
        // 3. The checks alone.
        let s = serve(true).await;
        let header = format!("Bearer {}", s.token.as_deref().unwrap());
        let n = 200_000;
        let mut per = vec![];
        for _ in 0..runs {
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(s.app_state.auth().authenticate(Some(&header), 0).unwrap());
            }
            per.push(t.elapsed().as_secs_f64() * 1e9 / n as f64);
        }
        println!("Auth::authenticate {:.0} ns per request", median(per));
        let events = &arrivals[..BATCH];
        let mut per = vec![];
        let mut now = 1_000_000_000i64;
        for _ in 0..runs {
            let t = Instant::now();
            for _ in 0..200 {
                now += 1_000_000_000;
                let c = s
                    .app_state
                    .limits()
                    .charge("acme", "acme/water_level", events, 400_000, now)
                    .unwrap();
                std::hint::black_box(c);
            }
            per.push(t.elapsed().as_secs_f64() * 1e9 / (200 * BATCH) as f64);
        }
        println!("Limits::charge     {:.1} ns per event (5,000-event request, every quota set)", median(per));
        s.stop().await;
    });
}
