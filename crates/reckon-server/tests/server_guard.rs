//! The time guard and dead letters as a client sees them: a far-future event is a dead
//! letter of kind `future` (counted by kind, told in line protocol headers), both
//! ingest formats label outcomes alike, and a finished store refuses ingest with 409.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use reckon_server::{App, AppOptions};
use serde_json::Value as Json;
use tower::ServiceExt;

async fn call(app: &App, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let r = app.router().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn post(app: &App, path: &str, body: &str) -> (StatusCode, axum::http::HeaderMap, Json) {
    let (s, h, text) = call(
        app,
        Request::post(path)
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await;
    (
        s,
        h,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

fn header(h: &axum::http::HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// 2200-01-01T00:00:00Z in ns.
const YEAR_2200: i64 = 7_258_118_400_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_event_does_not_poison_stream_and_the_client_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::config(dir.path(), ""), AppOptions::default()).unwrap();
    // NDJSON: the answer counts it.
    let (s, _, j) = post(
        &app,
        "/v1/streams/rfc/events",
        "{\"i\":\"1\",\"time\":\"2200-01-01T00:00:00Z\",\"v\":9}\n{\"i\":\"1\",\"time\":\"2022-06-13T10:00:00Z\",\"v\":1}\n",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        (j["accepted"].as_u64(), j["dead_lettered"].as_u64()),
        (Some(1), Some(1)),
        "{j}"
    );
    // Line protocol: 204 as InfluxDB answers, with the counts in headers.
    let (s, h, body) = post(
        &app,
        "/api/v2/write?bucket=rfc",
        &format!("rfc,i=1 v=5 {YEAR_2200}\nrfc,i=1 v=2 1655114460000000000\n"),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(header(&h, "x-reckon-dead-lettered").as_deref(), Some("1"));
    assert_eq!(header(&h, "x-reckon-accepted").as_deref(), Some("1"));
    assert_eq!(header(&h, "x-reckon-duplicates").as_deref(), Some("0"));
    // A normal event later is still accepted: the watermark did not jump to 2200.
    let (s, _, j) = post(
        &app,
        "/v1/streams/rfc/events",
        "{\"i\":\"1\",\"time\":\"2022-06-13T10:30:00Z\",\"v\":3}\n",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        (j["accepted"].as_u64(), j["dead_lettered"].as_u64()),
        (Some(1), Some(0)),
        "{j}"
    );
    let (_, _, text) = call(
        &app,
        Request::get("/v1/streams/rfc/dead_letters")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let d: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(d["total"], 2, "{d}");
    assert_eq!(d["dead_letters"][0]["kind"], "future", "{d}");
    let reason = d["dead_letters"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("2200-01-01T00:00:00Z") && reason.contains("max_future 1h"),
        "{reason}"
    );
    assert_eq!(
        app.state().metrics().counter(
            "reckon_events_dead_lettered_total",
            &[("pipeline", "rfc_sum"), ("kind", "future")]
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_dead_letters_are_counted_by_kind_and_outcomes_agree_across_formats() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::config(dir.path(), ""), AppOptions::default()).unwrap();
    let long = "k".repeat(20_000);
    let (s, h, body) = post(
        &app,
        "/api/v2/write?bucket=rfc",
        &format!("rfc,i={long} v=5 1655114400000000000\n"),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(header(&h, "x-reckon-dead-lettered").as_deref(), Some("1"));
    assert_eq!(
        app.state().metrics().counter(
            "reckon_events_dead_lettered_total",
            &[("pipeline", "rfc_sum"), ("kind", "invalid")]
        ),
        1
    );
    // An all-bad request is `rejected` in both formats.
    let (s, _, _) = post(&app, "/api/v2/write?bucket=rfc", "rfc,i=1 v=\"x 2\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = post(&app, "/v1/streams/rfc/events", "{nope\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let m = app.state().metrics();
    assert_eq!(
        m.counter(
            "reckon_ingest_requests_total",
            &[("stream", "rfc"), ("outcome", "rejected")]
        ),
        2
    );
    assert_eq!(
        m.counter(
            "reckon_ingest_requests_total",
            &[("stream", "rfc"), ("outcome", "partial")]
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_store_refuses_ingest_with_409_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), "");
    {
        let mut rt = reckon_runtime::Runtime::open(&config, Default::default()).unwrap();
        rt.finish(&mut |_| {}).unwrap();
    }
    let app = App::open(config, AppOptions::default()).unwrap();
    let (s, _, j) = post(
        &app,
        "/v1/streams/rfc/events",
        "{\"i\":\"1\",\"time\":\"2022-06-13T10:00:00Z\",\"v\":1}\n",
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{j}");
    let e = j["error"].as_str().unwrap();
    assert!(
        e.contains("reckon ingest --finish") && e.contains("reckon repair"),
        "{e}"
    );
    let (s, _, j) = post(
        &app,
        "/api/v2/write?bucket=rfc",
        "rfc,i=1 v=5 1655114400000000000\n",
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{j}");
    assert_eq!(j["code"], "conflict");
    assert!(
        j["message"].as_str().unwrap().contains("reckon repair"),
        "{j}"
    );
    // Nothing was dead-lettered, and the server still serves.
    let (_, _, text) = call(
        &app,
        Request::get("/v1/streams/rfc/dead_letters")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let d: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(d["total"], 0, "{d}");
    let (s, _, _) = call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}
