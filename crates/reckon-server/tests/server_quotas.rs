//! Per-tenant quotas over HTTP: events/s and bytes/s refuse a request whole with 429 and
//! `Retry-After` (InfluxDB writes too), a request larger than a second's worth is 413,
//! series and stored bytes are capped (counted again from the raw log after a
//! restart), and a client that retries every refused request after `Retry-After` ends
//! with every event counted exactly once: nothing below quota is lost.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_core::ProcessingTime;
use reckon_server::AppOptions;
use reckon_server::clock::Clock;
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug)]
struct SetClock(AtomicI64);

impl Clock for SetClock {
    fn now(&self) -> ProcessingTime {
        ProcessingTime(self.0.load(Ordering::SeqCst))
    }
}

/// 2024-03-01 12:00 UTC.
const START: i64 = 1_709_294_400_000_000_000;
const S: i64 = 1_000_000_000;

const TENANT: &str = r#"
[[stream]]
name = "alarms"
tenant = "acme"
key_fields = ["station"]
time_format = "rfc3339"
id_field = "id"
[[pipeline]]
name = "rate"
tenant = "acme"
stream = "alarms"
window = { type = "tumbling", size = "1h" }
aggregates = [{ fn = "count" }]
out_of_orderness = "0s"
allowed_lateness = "1d"
"#;

struct Http {
    c: reqwest::Client,
    base: String,
}

impl Http {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: String,
    ) -> (u16, Option<u32>, Json) {
        let r = self
            .c
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.base),
            )
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let text = r.text().await.unwrap();
        (
            status,
            retry,
            serde_json::from_str(&text).unwrap_or(Json::Null),
        )
    }
}

/// `n` events of `stations` stations, ids from `first`, in hour 10:00 of 2024-03-01.
fn batch(first: usize, n: usize, stations: usize) -> String {
    (first..first + n)
        .map(|i| {
            format!(
                r#"{{"station":"s{}","id":"e{i}","time":"2024-03-01T10:{:02}:00Z"}}"#,
                i % stations,
                i % 60
            ) + "\n"
        })
        .collect()
}

async fn start(dir: &std::path::Path, clock: Arc<SetClock>) -> (common::Running, Http) {
    let server = common::serve(
        common::config(dir, TENANT),
        AppOptions {
            clock,
            ..AppOptions::default()
        },
    )
    .await;
    let http = Http {
        c: reqwest::Client::new(),
        base: server.url(""),
    };
    (server, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_is_429_whole_and_retrying_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SetClock(AtomicI64::new(START)));
    let (server, h) = start(dir.path(), clock.clone()).await;
    let admin = h
        .send(
            "POST",
            "/v1/tokens",
            "",
            json!({"scopes": ["admin"]}).to_string(),
        )
        .await;
    let admin = admin.2["token"].as_str().unwrap().to_string();
    let (s, _, t) = h
        .send(
            "POST",
            "/v1/tenants",
            &admin,
            json!({"name": "acme", "quotas": {"events_per_second": 100, "max_series": 8}})
                .to_string(),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let (_, _, tok) = h
        .send(
            "POST",
            "/v1/tokens",
            &admin,
            json!({"tenant": "acme", "scopes": ["read", "write"]}).to_string(),
        )
        .await;
    let acme = tok["token"].as_str().unwrap().to_string();
    let post = |first: usize, n: usize| {
        let (h, acme) = (&h, acme.clone());
        async move {
            h.send(
                "POST",
                "/v1/streams/alarms/events",
                &acme,
                batch(first, n, 5),
            )
            .await
        }
    };

    // 100 a second: 60 pass, the next 60 are refused whole (retry in 1 s).
    let (s, _, r) = post(0, 60).await;
    assert_eq!((s, r["accepted"].clone()), (200, json!(60)), "{r}");
    let (s, retry, r) = post(60, 60).await;
    assert_eq!((s, retry), (429, Some(1)), "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("nothing of this request was stored")
    );
    // 201 events can never fit: 413, not a retry.
    let (s, _, r) = post(60, 101).await;
    assert_eq!(s, 413, "{r}");
    // InfluxDB clients get the same, with Retry-After.
    let (s, retry, r) = h
        .send(
            "POST",
            "/api/v2/write?bucket=alarms&precision=s",
            &acme,
            (0..50)
                .map(|i| format!("alarms,station=s{} id=\"i{i}\" 1709287200\n", i % 5))
                .collect(),
        )
        .await;
    assert_eq!(
        (s, retry, r["code"].clone()),
        (429, Some(1), json!("too many requests")),
        "{r}"
    );

    // A client that retries after Retry-After: 950 more events in requests of 50, the clock
    // moving 0.1 s per request. Every refused request is sent again, whole.
    let mut refused = 0;
    let mut next = 120;
    let mut retries = std::collections::VecDeque::from([(60usize, 60usize)]);
    while next < 1_070 || !retries.is_empty() {
        clock.0.fetch_add(S / 10, Ordering::SeqCst);
        let (first, n) = retries.pop_front().unwrap_or_else(|| {
            let b = (next, 50);
            next += 50;
            b
        });
        let (s, retry, r) = post(first, n).await;
        match s {
            200 => assert_eq!(r["accepted"], n, "{r}"),
            429 => {
                refused += 1;
                clock
                    .0
                    .fetch_add(i64::from(retry.unwrap()) * S, Ordering::SeqCst);
                retries.push_back((first, n));
            }
            other => panic!("{other}: {r}"),
        }
    }
    assert!(refused > 0, "the quota never refused anything");
    // Close the hour and count: every one of the 1,070 events once.
    let (s, _, r) = h
        .send(
            "POST",
            "/v1/streams/alarms/events",
            &acme,
            r#"{"station":"s0","id":"close","time":"2024-03-01T12:00:00Z"}"#.into(),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, _, w) = h
        .send(
            "GET",
            "/v1/pipelines/rate/windows?from=2024-03-01T10:00:00Z&to=2024-03-01T11:00:00Z",
            &acme,
            String::new(),
        )
        .await;
    let total: u64 = w["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["values"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!((next, total), (1_070, 1_070), "{w}");

    // Series: 5 stations so far; 3 more fit, the 4th does not (nothing of it stored).
    clock.0.fetch_add(10 * S, Ordering::SeqCst);
    let new = |ids: std::ops::Range<usize>| {
        ids.map(|i| {
            format!(r#"{{"station":"n{i}","id":"n{i}","time":"2024-03-01T12:00:00Z"}}"#) + "\n"
        })
        .collect::<String>()
    };
    let (s, _, r) = h
        .send("POST", "/v1/streams/alarms/events", &acme, new(0..3))
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, retry, r) = h
        .send("POST", "/v1/streams/alarms/events", &acme, new(3..5))
        .await;
    assert_eq!((s, retry), (429, Some(60)), "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("would have 10 series, over its quota of 8"),
        "{r}"
    );
    let (_, _, u) = h
        .send("GET", "/v1/tenants/acme/usage", &acme, String::new())
        .await;
    assert_eq!(u["usage"]["series"], 8, "{u}");
    assert_eq!(u["quotas"]["events_per_second"], 100, "{u}");
    assert!(
        u["usage"]["throttled_requests"]["events_per_second"]
            .as_u64()
            .unwrap()
            >= 2,
        "{u}"
    );
    let metrics = reqwest::Client::new()
        .get(h.base.clone() + "/metrics")
        .header("authorization", format!("Bearer {acme}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"reckon_tenant_series{tenant="acme"} 8"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"reckon_tenant_throttled_total{tenant="acme",quota="max_series"} 1"#),
        "{metrics}"
    );

    // After a restart the series are counted again from the raw log.
    server.shutdown().await;
    let (server, h) = start(dir.path(), clock.clone()).await;
    let (_, _, u) = h
        .send("GET", "/v1/tenants/acme/usage", &acme, String::new())
        .await;
    assert_eq!(u["usage"]["series"], 8, "{u}");
    let (s, _, r) = h
        .send("POST", "/v1/streams/alarms/events", &acme, new(3..4))
        .await;
    assert_eq!(s, 429, "{r}");
    // The operator raises the quota: in effect at once.
    let (s, _, r) = h
        .send(
            "PUT",
            "/v1/tenants/acme/quotas",
            &admin,
            json!({"max_series": 20}).to_string(),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, _, r) = h
        .send("POST", "/v1/streams/alarms/events", &acme, new(3..5))
        .await;
    assert_eq!(s, 200, "{r}");
    // A tenant cannot raise its own.
    let (s, _, _) = h
        .send(
            "PUT",
            "/v1/tenants/acme/quotas",
            &acme,
            json!({"max_series": 99}).to_string(),
        )
        .await;
    assert_eq!(s, 403);
    server.shutdown().await;
}
