//! The handlers through `router().oneshot`: ingest with good and bad input (each error
//! text asserted), queries in JSON and CSV, history, `as_of`, dead letters, health and
//! metrics.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use reckon_server::{App, AppOptions};
use serde_json::Value as Json;
use tower::ServiceExt;

const H: i64 = 3_600_000_000_000;

async fn call(app: &App, req: Request<Body>) -> (StatusCode, String) {
    let r = app.router().oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn post(app: &App, path: &str, body: impl Into<Body>) -> (StatusCode, Json) {
    let (s, text) = call(app, Request::post(path).body(body.into()).unwrap()).await;
    (s, serde_json::from_str(&text).unwrap_or(Json::String(text)))
}

async fn get(app: &App, path: &str) -> (StatusCode, Json) {
    let (s, text) = call(app, Request::get(path).body(Body::empty()).unwrap()).await;
    (s, serde_json::from_str(&text).unwrap_or(Json::String(text)))
}

fn line(i: u32, t: i64, level: f64, id: &str) -> String {
    format!("{{\"i\":\"{i}\",\"time\":{t},\"level\":{level},\"id\":\"{id}\"}}\n")
}

fn open() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::config(dir.path(), ""), AppOptions::default()).unwrap();
    (dir, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_lines_are_kept_and_each_bad_line_is_named() {
    let (_dir, app) = open();
    let body = [
        line(1, 10, 1.0, "a"),
        "{\"i\":\"1\",\"time\":20,\"level\":NaN}\n".into(),
        line(1, 30, 3.0, "b"),
        "{\"i\":\"1\",\"time\":\"yesterday\",\"level\":1}\n".into(),
        "{\"i\":{\"x\":1},\"time\":40,\"level\":1}\n".into(),
        "{\"i\":\"1\",\"time\":50,\"level\":[1,2]}\n".into(),
        "{\"time\":60,\"level\":1}\n".into(),
        "[1,2]\n".into(),
        line(1, 30, 3.0, "b"), // a duplicate by id
    ]
    .concat();
    let (s, j) = post(&app, "/v1/streams/water_level/events", body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{j}");
    assert_eq!(j["accepted"], 2, "{j}");
    assert_eq!(j["duplicates"], 1, "{j}");
    assert_eq!(j["rejected"], 6, "{j}");
    assert_eq!(
        j["error"],
        "6 of 9 events are invalid; the 3 valid ones were stored"
    );
    let errors: Vec<String> = j["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect();
    assert!(
        errors[0].starts_with("line 2: invalid JSON: expected value"),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        "line 4: field `time`: expected a number (nanoseconds since the Unix epoch), got string"
    );
    assert!(errors[2].starts_with("line 5: field `i`: "), "{errors:?}");
    assert_eq!(
        errors[3],
        "line 6: field `level`: array values are not supported; use numbers, strings or booleans"
    );
    assert_eq!(
        errors[4],
        "line 7: field `i`: missing (it is a key field of this stream)"
    );
    assert_eq!(errors[5], "line 8: expected a JSON object, got array");
    assert_eq!(j["errors"][0]["line"], 2);
    assert_eq!(j["errors"][4]["field"], "i");

    // A bad RFC 3339 time on a stream that expects one.
    let (s, j) = post(
        &app,
        "/v1/streams/rfc/events",
        "{\"i\":\"1\",\"time\":\"2022-13-45T00:00:00Z\",\"v\":1}\n",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        j["errors"][0]["error"].as_str().unwrap().starts_with(
            "line 1: field `time`: `2022-13-45T00:00:00Z` is not an RFC 3339 timestamp"
        ),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_requests_store_nothing_when_a_line_is_bad() {
    let (_dir, app) = open();
    let body = format!("{}{{\"i\":\"1\"}}\n", line(1, 10, 1.0, "a"));
    let (s, j) = post(
        &app,
        "/v1/streams/water_level/events?atomic=true",
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        j["error"],
        "1 of 2 events are invalid; nothing was stored (atomic=true)"
    );
    assert_eq!(j["accepted"], 0);
    // Nothing was stored: the same good line is accepted (not a duplicate) afterwards.
    let (s, j) = post(
        &app,
        "/v1/streams/water_level/events",
        line(1, 10, 1.0, "a"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        (j["accepted"].as_u64(), j["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_one_bad_line() {
    let (_dir, app) = open();
    let mut body = line(1, 10, 1.0, "a").into_bytes();
    body.extend_from_slice(b"{\"i\":\"\xff\xfe\",\"time\":1,\"level\":1}\n");
    body.extend_from_slice(line(2, 10, 1.0, "b").as_bytes());
    let (s, j) = post(&app, "/v1/streams/water_level/events", body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(j["accepted"], 2, "{j}");
    assert_eq!(
        j["errors"][0]["error"],
        "line 2: not valid UTF-8 (invalid byte at column 7)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_unknown_streams_and_paths_are_refused_with_a_reason() {
    let (_dir, app) = open();
    let big = line(1, 10, 1.0, "a").repeat(1_048_576 / 30);
    let (s, j) = post(&app, "/v1/streams/water_level/events", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        j["error"],
        "request body is larger than the limit of 1048576 bytes ([server] max_body_bytes); send smaller batches"
    );
    let (s, j) = post(&app, "/v1/streams/nope/events", line(1, 1, 1.0, "a")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        j["error"],
        "unknown stream `nope` (streams you can see: rfc, water_level)"
    );
    let (s, j) = get(&app, "/v1/nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        j["error"],
        "no such endpoint: /v1/nothing (see docs/http.md)"
    );
    let (s, j) = post(&app, "/v1/streams/water_level/events?atomc=true", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `atomc`"),
        "{j}"
    );
    let (s, j) = get(&app, "/v1/pipelines/nope/windows").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        j["error"],
        "unknown pipeline `nope` (pipelines you can see: mean_1h, rfc_sum)"
    );
    let (s, j) = get(&app, "/v1/pipelines/mean_1h/windows?key=i").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(j["error"], "`key`: `i`: the tag `i` has no `=value`");
    let (s, j) = get(&app, "/v1/pipelines/mean_1h/windows?from=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("`from`: `yesterday` is not an RFC 3339 time (e.g. 2022-06-13T14:00:00Z)"),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_history_as_of_csv_and_dead_letters() {
    let (_dir, app) = open();
    // Hour 0 of location 1: two readings; then time passes to close it; then a late one.
    let (s, j) = post(
        &app,
        "/v1/streams/water_level/events",
        [
            line(1, 10, 1.0, "a"),
            line(1, 20, 3.0, "b"),
            line(2, 30, 5.0, "c"),
            line(1, 2 * H, 9.0, "d"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let (_, before) = get(&app, "/v1/pipelines/mean_1h/windows?key=i=1").await;
    assert_eq!(before["windows"].as_array().unwrap().len(), 1, "{before}");
    assert_eq!(before["windows"][0]["values"]["mean"], 2.0);
    assert_eq!(before["windows"][0]["version"], 1);
    let v1_at = before["windows"][0]["emitted_at"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (s, j) = post(
        &app,
        "/v1/streams/water_level/events",
        line(1, 40, 5.0, "e"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["late"], 1);
    let (_, after) = get(&app, "/v1/pipelines/mean_1h/windows?key=i%3D1").await;
    let w = &after["windows"][0];
    assert_eq!(
        (w["version"].as_u64(), w["count"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(w["values"]["mean"], 3.0);
    assert_eq!(w["kind"], "late");
    assert_eq!(w["window"]["start"], "1970-01-01T00:00:00Z");
    // As of the first emission: version 1.
    let (_, asof) = get(
        &app,
        &format!("/v1/pipelines/mean_1h/windows?key=i=1&as_of={v1_at}"),
    )
    .await;
    assert_eq!(asof["windows"][0]["version"], 1, "{asof}");
    // History: both versions.
    let (_, h) = get(
        &app,
        "/v1/pipelines/mean_1h/history?key=i=1&start=1970-01-01T00:00:00Z",
    )
    .await;
    let versions: Vec<u64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);
    // CSV.
    let (s, text) = call(
        &app,
        Request::get("/v1/pipelines/mean_1h/windows")
            .header(header::ACCEPT, "text/csv")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "pipeline,key,window_start,window_end,version,kind,events,mean,count,checksum,emitted_at,watermark"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].starts_with("mean_1h,i=1,1970-01-01T00:00:00Z,1970-01-01T01:00:00Z,2,late,3,3,3,"),
        "{text}"
    );
    assert!(
        rows[1]
            .starts_with("mean_1h,i=2,1970-01-01T00:00:00Z,1970-01-01T01:00:00Z,1,on_time,1,5,1,"),
        "{text}"
    );

    // Dead letters: beyond retention (2h) on the rfc stream.
    let ev = |t: &str, v: i64| format!("{{\"i\":\"1\",\"time\":\"{t}\",\"v\":{v}}}\n");
    let (s, _) = post(
        &app,
        "/v1/streams/rfc/events",
        [ev("2022-06-13T10:00:00Z", 1), ev("2022-06-13T20:00:00Z", 2)].concat(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, j) = post(
        &app,
        "/v1/streams/rfc/events",
        ev("2022-06-13T11:00:00Z", 3),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["dead_lettered"], 1, "{j}");
    let (_, d) = get(&app, "/v1/streams/rfc/dead_letters").await;
    assert_eq!(d["total"], 1, "{d}");
    assert_eq!(d["dead_letters"][0]["kind"], "beyond_retention");
    assert_eq!(
        d["dead_letters"][0]["event"]["time"],
        "2022-06-13T11:00:00Z"
    );
    assert_eq!(d["dead_letters"][0]["event"]["fields"]["v"], 3);

    // Health and metrics.
    let (s, hz) = get(&app, "/healthz").await;
    assert_eq!((s, hz["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, text) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text.contains("reckon_events_accepted_total{stream=\"water_level\"} 5\n"),
        "{text}"
    );
    assert!(
        text.contains("reckon_events_late_applied_total{pipeline=\"mean_1h\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "reckon_events_dead_lettered_total{pipeline=\"rfc_sum\",kind=\"beyond_retention\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("reckon_emissions_total{pipeline=\"mean_1h\",kind=\"late\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("reckon_ingest_latency_seconds_count "),
        "{text}"
    );
    assert!(
        text.contains("reckon_watermark_lag_seconds{pipeline=\"mean_1h\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_answers_like_influxdb_and_takes_gzip() {
    use std::io::Write as _;
    let (_dir, app) = open();
    // Telegraf gzips its bodies by default.
    let text = "water_level,i=7 level=4.5 3600000000000\nwater_level,i=7 level=5.5 3601000000000\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let (s, body) = call(
        &app,
        Request::post("/api/v2/write?org=o&bucket=water_level&precision=ns")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::from(gz.finish().unwrap()))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        app.state()
            .metrics()
            .counter("reckon_events_accepted_total", &[("stream", "water_level")]),
        2
    );
    let (s, j) = post(&app, "/api/v2/write?org=o", "m,i=1 level=1 1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(j["code"], "invalid");
    assert_eq!(
        j["message"],
        "missing the `bucket` query parameter (the bucket is the reckon stream)"
    );
    let (s, j) = post(
        &app,
        "/api/v2/write?bucket=water_level&precision=h",
        "m,i=1 level=1 1",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(j["message"].as_str().unwrap().contains("`h`"), "{j}");
    let (s, j) = post(
        &app,
        "/api/v2/write?bucket=water_level",
        "m,i=1 level=1 1\nm,i=1 level=\"x 2\n",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .starts_with("partial write: 1 of 2 lines are invalid, 1 points stored: line 2"),
        "{j}"
    );
    let (s, j) = post(&app, "/api/v2/write?bucket=lake", "m,i=1 level=1 1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(j["code"], "not found");
    let (s, _) = call(&app, Request::get("/ping").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurdly_long_key_is_dead_lettered_and_the_server_keeps_working() {
    let (_dir, app) = open();
    let long = "k".repeat(70_000);
    let body = format!(
        "{{\"i\":\"{long}\",\"time\":1,\"level\":1}}\n{}",
        line(1, 2, 1.0, "a")
    );
    let (s, j) = post(&app, "/v1/streams/water_level/events", body).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        (j["accepted"].as_u64(), j["dead_lettered"].as_u64()),
        (Some(1), Some(1)),
        "{j}"
    );
    let (_, d) = get(&app, "/v1/streams/water_level/dead_letters").await;
    assert_eq!(d["dead_letters"][0]["kind"], "invalid");
    assert_eq!(
        d["dead_letters"][0]["reason"],
        "the series key is 70002 bytes long; at most 16384 are allowed"
    );
    let (s, _) = post(&app, "/v1/streams/water_level/events", line(2, 3, 1.0, "b")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get(&app, "/healthz").await;
    assert_eq!(s, StatusCode::OK);
}
