//! Webhooks through the server: a local receiver gets seed 000's alert (digested,
//! signed), a failing receiver is retried and its failure recorded without ever
//! blocking ingest, and after a restart a webhook resumes after its last delivery.
#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reckon_connect::webhook::verify_signature;
use reckon_server::AppOptions;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Receiver {
    /// (signature header, body) of every request.
    got: Arc<Mutex<Vec<(String, String)>>>,
    /// When each request arrived.
    at: Arc<Mutex<Vec<std::time::Instant>>>,
    /// Statuses to answer, in order (then 200).
    script: Arc<Mutex<Vec<u16>>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let sig = headers
        .get("x-reckon-signature")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    r.got.lock().unwrap().push((sig, body));
    r.at.lock().unwrap().push(std::time::Instant::now());
    let mut s = r.script.lock().unwrap();
    if s.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::from_u16(s.remove(0)).unwrap()
    }
}

async fn receiver(script: Vec<u16>) -> (String, Receiver) {
    let r = Receiver {
        script: Arc::new(Mutex::new(script)),
        ..Receiver::default()
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/hook"), r)
}

const H: i64 = 3_600_000_000_000;

fn line(i: u32, t: i64, level: f64, id: &str) -> String {
    format!("{{\"i\":\"{i}\",\"time\":{t},\"level\":{level},\"id\":\"{id}\"}}\n")
}

fn webhook(url: &str, extra: &str) -> String {
    format!(
        r#"
        [[webhook]]
        name = "slack"
        url = "{url}"
        pipelines = ["mean_1h"]
        secret = "s3cret"
        backoff = "20ms"
        max_backoff = "50ms"
        {extra}
        "#
    )
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_reach_the_webhook_digested_signed_and_recorded() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The receiver fails twice (500, 503), then takes the message.
    let (url, r) = receiver(vec![500, 503]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), &webhook(&url, "digest_interval = \"2s\""));
    let server = common::serve(config.clone(), AppOptions::default()).await;
    let client = reqwest::Client::new();
    let post = |body: String| {
        let (client, url) = (client.clone(), server.url("/v1/streams/water_level/events"));
        async move {
            let r = client.post(url).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    // Two windows closed (360 readings each, like seed 000). The first late point is
    // sent at once (nothing was sent in the last interval); the next two, for both
    // windows, wait for the next slot and go in one message.
    let mut body = String::new();
    for k in 0..360 {
        body.push_str(&line(1, k * 10_000_000_000, 4.0, &format!("a{k}")));
        body.push_str(&line(2, k * 10_000_000_000, 2.0, &format!("b{k}")));
    }
    body.push_str(&line(1, 2 * H, 1.0, "x"));
    post(body).await;
    post(line(1, 5, 4.36, "late1")).await;
    post(line(2, 6, 2.361, "late2")).await;
    post(line(1, 7, 4.0, "late3")).await;
    wait_for(|| r.got.lock().unwrap().len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        4,
        "two failed attempts, a delivery, a digest: {got:?}"
    );
    assert_eq!(got[0].1, got[2].1, "a retry sends the same message");
    assert!(
        got[0]
            .1
            .contains("count 360 → 361 · mean 4 → 4.000997229916897"),
        "{}",
        got[0].1
    );
    let at = r.at.lock().unwrap().clone();
    assert!(
        at[3].duration_since(at[2]) >= Duration::from_millis(1_800),
        "at most one message per digest interval"
    );
    let (sig, body) = &got[3];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(verify_signature(
        b"s3cret",
        sig,
        body.as_bytes(),
        now,
        Duration::from_secs(300)
    ));
    assert!(!verify_signature(
        b"wrong",
        sig,
        body.as_bytes(),
        now,
        Duration::from_secs(300)
    ));
    let msg: serde_json::Value = serde_json::from_str(body).unwrap();
    let text = msg["text"].as_str().unwrap();
    for needle in [
        "Late data corrected 2 windows",
        "Measurement *water_level* · key `i=2` · window 1970-01-01T00:00:00Z – 1970-01-01T01:00:00Z",
        "pipeline `mean_1h` · v1 → v2 (late) · count 360 → 361 · mean 2 → 2.001",
        "Measurement *water_level* · key `i=1`",
        "v2 → v3 (late) · count 361 → 362",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    // Recorded (once the receiver has answered) and queryable.
    wait_for(|| {
        server
            .state
            .store()
            .sink_state("slack")
            .is_ok_and(|s| s.last_delivery == 2)
    })
    .await;
    let d: serde_json::Value = client
        .get(server.url("/v1/webhooks/slack/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (newest, first) = (&d["deliveries"][0], &d["deliveries"][1]);
    assert_eq!(
        (newest["id"].as_u64(), first["id"].as_u64()),
        (Some(2), Some(1)),
        "{d}"
    );
    assert_eq!(newest["windows"], 2, "{d}");
    assert_eq!(first["result"]["attempts"], 3, "{d}");
    assert_eq!(first["result"]["outcome"], "delivered", "{d}");
    assert_eq!(first["result"]["status"], 200, "{d}");
    assert_eq!(newest["result"]["attempts"], 1, "{d}");
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "reckon_webhook_deliveries_total{webhook=\"slack\",outcome=\"delivered\"} 2\n"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("reckon_webhook_attempts_total{webhook=\"slack\"} 4\n"));
    let cursor = server.state.store().sink_state("slack").unwrap().cursor;
    assert!(cursor > 0);
    server.shutdown().await;

    // Restart: nothing is sent again; a new correction is message 3.
    let server = common::serve(config, AppOptions::default()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        r.got.lock().unwrap().len(),
        4,
        "nothing resent after a restart"
    );
    let client = reqwest::Client::new();
    let resp = client
        .post(server.url("/v1/streams/water_level/events"))
        .body(line(2, 8, 9.0, "late4"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for(|| r.got.lock().unwrap().len() >= 5).await;
    let got = r.got.lock().unwrap().clone();
    assert!(
        got[4].1.contains("key `i=2`") && !got[4].1.contains("key `i=1`"),
        "{}",
        got[4].1
    );
    assert!(got[4].1.contains("v2 → v3"), "{}", got[4].1);
    // The delivery is recorded once the receiver has answered: wait for it.
    wait_for(|| {
        server
            .state
            .store()
            .sink_state("slack")
            .is_ok_and(|s| s.last_delivery == 3)
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_never_blocks_ingest_and_its_failure_is_recorded() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (url, r) = receiver(vec![500; 100]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(
        dir.path(),
        &webhook(&url, "max_attempts = 3\ndigest_interval = \"300ms\""),
    );
    let server = common::serve(config, AppOptions::default()).await;
    let client = reqwest::Client::new();
    let url_events = server.url("/v1/streams/water_level/events");
    let mut body = String::new();
    for k in 0..50 {
        body.push_str(&line(1, k * 60_000_000_000, 1.0, &format!("a{k}")));
    }
    body.push_str(&line(1, 3 * H, 1.0, "z"));
    assert_eq!(
        client
            .post(&url_events)
            .body(body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Many late corrections while the webhook fails: every request is answered fast.
    for k in 0..40 {
        let t = std::time::Instant::now();
        let resp = client
            .post(&url_events)
            .body(line(1, 1 + k, 2.0, &format!("late{k}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "ingest waited on the webhook"
        );
    }
    wait_for(|| {
        server.state.metrics().counter(
            "reckon_webhook_deliveries_total",
            &[("webhook", "slack"), ("outcome", "failed")],
        ) >= 1
    })
    .await;
    let d: serde_json::Value = client
        .get(server.url("/v1/webhooks/slack/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oldest = d["deliveries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(oldest["result"]["attempts"], 3, "{d}");
    assert_eq!(oldest["result"]["outcome"], "failed", "{d}");
    assert_eq!(oldest["result"]["status"], 500, "{d}");
    assert_eq!(
        oldest["result"]["error"],
        "HTTP 500 Internal Server Error (gave up after 3 attempts)"
    );
    assert!(r.got.lock().unwrap().len() >= 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_max_digest_windows_goes_in_several_messages() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (url, r) = receiver(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(
        dir.path(),
        &webhook(&url, "digest_interval = \"500ms\"\nmax_digest_windows = 1"),
    );
    let server = common::serve(config, AppOptions::default()).await;
    let client = reqwest::Client::new();
    // Two windows close, then one request corrects both: two messages of one window.
    let mut body = String::new();
    for k in 0..10 {
        body.push_str(&line(1, k * 10_000_000_000, 4.0, &format!("a{k}")));
        body.push_str(&line(2, k * 10_000_000_000, 2.0, &format!("b{k}")));
    }
    body.push_str(&line(1, 2 * H, 1.0, "x"));
    body.push_str(&line(2, 2 * H, 1.0, "y"));
    let url = server.url("/v1/streams/water_level/events");
    assert_eq!(
        client.post(&url).body(body).send().await.unwrap().status(),
        200
    );
    let late = [line(1, 5, 9.0, "late1"), line(2, 6, 9.0, "late2")].concat();
    assert_eq!(
        client.post(&url).body(late).send().await.unwrap().status(),
        200
    );
    wait_for(|| r.got.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].1.contains("key `i=1`") && !got[0].1.contains("key `i=2`"),
        "{}",
        got[0].1
    );
    assert!(
        got[1].1.contains("key `i=2`") && !got[1].1.contains("key `i=1`"),
        "{}",
        got[1].1
    );
    server.shutdown().await;
}
