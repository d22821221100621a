//! Bounded queries through `router().oneshot`: `limit` capped by `[server]
//! max_query_limit`, the opaque `next` cursor (JSON body, CSV header), stable paging
//! (every window exactly once, in order), bad and tampered cursors, the change feed's
//! `since` past the last change, and the memory of four parallel maximal queries.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use reckon_core::{
    Checksum, Emission, EmissionKind, EventTime, Key, ProcessingTime, Value, Version, Watermark,
    Window,
};
use reckon_server::{App, AppOptions};
use reckon_store::CommitBatch;
use serde_json::Value as Json;
use std::sync::Arc;
use tower::ServiceExt;

const H: i64 = 3_600_000_000_000;

async fn call(app: &App, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
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

async fn get(app: &App, path: &str) -> (StatusCode, Json) {
    let (s, _, text) = call(app, Request::get(path).body(Body::empty()).unwrap()).await;
    (s, serde_json::from_str(&text).unwrap_or(Json::String(text)))
}

async fn get_csv(app: &App, path: &str) -> (StatusCode, HeaderMap, String) {
    call(
        app,
        Request::get(path)
            .header(header::ACCEPT, "text/csv")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// An app whose `[server] max_query_limit` is `max`.
fn open(max: usize) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), "");
    config.server.max_query_limit = max;
    let app = App::open(config, AppOptions::default()).unwrap();
    (dir, app)
}

fn emission(key: &Key, hour: i64) -> Emission {
    Emission {
        pipeline: Arc::from("mean_1h"),
        key: key.clone(),
        window: Window {
            start: EventTime(hour * H),
            end: EventTime((hour + 1) * H),
        },
        version: Version(1),
        kind: EmissionKind::OnTime,
        columns: Arc::from(vec![Arc::<str>::from("mean"), Arc::<str>::from("count")]),
        values: vec![Some(Value::F64(hour as f64)), Some(Value::I64(1))],
        count: 1,
        checksum: Checksum { count: 1, hash: 7 },
        emitted_at: ProcessingTime(1),
        watermark: Watermark(EventTime((hour + 1) * H)),
        states: None,
    }
}

/// Stores `hours` windows of each of `keys` keys of `mean_1h` directly (no ingest), in
/// commits of at most 20,000 results. Returns their (key, start) in query order.
fn fill(app: &App, keys: u32, hours: i64) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut batch = Vec::new();
    for k in 0..keys {
        let key = Key::from_tags([("i", format!("{k:04}"))]).unwrap();
        for h in 0..hours {
            all.push((key.as_str().to_string(), rfc3339(h * H)));
            batch.push(emission(&key, h));
            if batch.len() == 20_000 {
                commit(app, std::mem::take(&mut batch));
            }
        }
    }
    commit(app, batch);
    all.sort();
    all
}

fn commit(app: &App, emissions: Vec<Emission>) {
    app.state()
        .store()
        .commit(CommitBatch {
            emissions,
            ..CommitBatch::default()
        })
        .unwrap();
}

fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .unwrap()
        .to_string()
}

fn positions(j: &Json) -> Vec<(String, String)> {
    j["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["key"].as_str().unwrap().to_string(),
                w["window"]["start"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Follows `next` from `first` (a path with a query) to the end; the pages' windows.
async fn page_through(app: &App, first: &str) -> (Vec<(String, String)>, usize) {
    let (s, mut j) = get(app, first).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let mut got = positions(&j);
    let mut pages = 1;
    while let Some(next) = j["next"].as_str() {
        assert_eq!(j["truncated"], true, "{j}");
        let (s, page) = get(app, &format!("{first}&cursor={next}")).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        got.extend(positions(&page));
        pages += 1;
        j = page;
    }
    assert_eq!(j["next"], Json::Null, "{j}");
    assert_eq!(j["truncated"], false, "{j}");
    (got, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_limit_is_clamped_and_next_pages_through_every_window_exactly_once() {
    let (_dir, app) = open(7);
    let all = fill(&app, 3, 10);
    // The limit from the issue: clamped to max_query_limit, with a cursor.
    let (s, j) = get(
        &app,
        "/v1/pipelines/mean_1h/windows?limit=18446744073709551615",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["limit"], 7, "{j}");
    assert_eq!(j["windows"].as_array().unwrap().len(), 7, "{j}");
    assert!(j["next"].is_string(), "{j}");

    let (got, pages) = page_through(&app, "/v1/pipelines/mean_1h/windows?limit=100").await;
    assert_eq!(got, all, "every window once, in (key, start) order");
    assert_eq!(pages, 5); // 30 windows, 7 a page.

    // A smaller limit, page boundaries inside and at the end of a key.
    for limit in [1, 5, 7] {
        let (got, pages) = page_through(
            &app,
            &format!("/v1/pipelines/mean_1h/windows?limit={limit}"),
        )
        .await;
        assert_eq!(got, all, "limit {limit}");
        assert_eq!(pages, 30usize.div_ceil(limit), "limit {limit}");
    }

    // With a key and a time range.
    let (got, _) = page_through(
        &app,
        "/v1/pipelines/mean_1h/windows?key=i%3D0001&from=1970-01-01T02:00:00Z&to=1970-01-01T09:00:00Z&limit=2",
    )
    .await;
    let want: Vec<_> = all
        .iter()
        .filter(|(k, s)| {
            k == "i=0001"
                && s.as_str() >= "1970-01-01T02:00:00Z"
                && s.as_str() < "1970-01-01T09:00:00Z"
        })
        .cloned()
        .collect();
    assert_eq!(want.len(), 7);
    assert_eq!(got, want);

    // An exact fit: one full page and no cursor.
    let (s, j) = get(
        &app,
        "/v1/pipelines/mean_1h/windows?key=i%3D0002&from=1970-01-01T03:00:00Z",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["windows"].as_array().unwrap().len(), 7, "{j}");
    assert_eq!(j["next"], Json::Null, "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_past_10000_rows_says_more_follow() {
    // Regression: CSV stopped at 10,000 rows with no marker.
    let (_dir, app) = open(10_000);
    let all = fill(&app, 1, 10_001);
    let (s, h, text) = get_csv(&app, "/v1/pipelines/mean_1h/windows").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text.lines().count(), 1 + 10_000);
    let next = h
        .get("x-reckon-next-cursor")
        .expect("a truncated CSV answer carries the cursor")
        .to_str()
        .unwrap()
        .to_string();
    let link = h.get(header::LINK).unwrap().to_str().unwrap();
    assert_eq!(
        link,
        format!("</v1/pipelines/mean_1h/windows?cursor={next}>; rel=\"next\"")
    );
    let (s, h, rest) = get_csv(
        &app,
        &format!("/v1/pipelines/mean_1h/windows?cursor={next}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("x-reckon-next-cursor").is_none(), "the last page");
    assert!(h.get(header::LINK).is_none());
    let rows: Vec<&str> = rest.lines().collect();
    assert_eq!(rows.len(), 2, "{rest}");
    assert!(
        rows[1].starts_with(&format!("mean_1h,i=0000,{},", all[10_000].1)),
        "{rest}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tampered_and_foreign_cursors_are_400_naming_cursor() {
    let (_dir, app) = open(3);
    fill(&app, 2, 5);
    let (_, j) = get(&app, "/v1/pipelines/mean_1h/windows").await;
    let next = j["next"].as_str().unwrap().to_string();
    let mut tampered = next.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        (
            "/v1/pipelines/mean_1h/windows?cursor=zz".to_string(),
            "`cursor`: not a cursor of this server",
        ),
        (
            "/v1/pipelines/mean_1h/windows?cursor=".to_string(),
            "`cursor`: not a cursor of this server",
        ),
        (
            format!("/v1/pipelines/mean_1h/windows?cursor={}", &next[..10]),
            "`cursor`: not a cursor of this server",
        ),
        (
            format!("/v1/pipelines/mean_1h/windows?cursor={tampered}"),
            "`cursor`: does not belong to this query",
        ),
        (
            format!("/v1/pipelines/mean_1h/windows?from=1970-01-01T01:00:00Z&cursor={next}"),
            "`cursor`: does not belong to this query",
        ),
        (
            "/v1/pipelines/mean_1h/windows?limit=0".to_string(),
            "`limit`: must be at least 1",
        ),
    ];
    for (path, want) in cases {
        let (s, j) = get(&app, &path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {j}");
        assert!(
            j["error"].as_str().unwrap().starts_with(want),
            "{path}: {j}"
        );
    }
    // The untouched cursor still works.
    let (s, j) = get(
        &app,
        &format!("/v1/pipelines/mean_1h/windows?cursor={next}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["windows"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_past_the_last_change_is_400_naming_the_last_change() {
    // Regression: a stale cursor answered 200 and the poller never saw anything again.
    let (_dir, app) = open(10_000);
    fill(&app, 1, 3);
    let (s, j) = get(&app, "/v1/pipelines/mean_1h/changes?since=500").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("since=500 is past the last change 3 of pipeline `mean_1h`"),
        "{j}"
    );
    // Equal to the last change: nothing new yet.
    let (s, j) = get(&app, "/v1/pipelines/mean_1h/changes?since=3").await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["changes"].as_array().unwrap().len(), 0);
    assert_eq!(j["next"], 3);
    let (s, j) = get(&app, "/v1/pipelines/mean_1h/changes?since=0&limit=2").await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["changes"].as_array().unwrap().len(), 2);
    // Last-Event-ID, for both the JSON page and the event stream.
    for accept in ["application/json", "text/event-stream"] {
        let (s, _, text) = call(
            &app,
            Request::get("/v1/pipelines/mean_1h/changes")
                .header("last-event-id", "4")
                .header(header::ACCEPT, accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{accept}: {text}");
        let j: Json = serde_json::from_str(&text).unwrap();
        assert!(
            j["error"]
                .as_str()
                .unwrap()
                .starts_with("Last-Event-ID=4 is past the last change 3 of pipeline `mean_1h`"),
            "{j}"
        );
    }
}

/// Resident set size of this process in KiB (`VmRSS` or `VmHWM`).
fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_parallel_maximal_queries_on_200k_windows_stay_in_bounded_memory() {
    // Regression: `limit=18446744073709551615` on 200k windows answered 60 MB each and
    // four in parallel grew the server from 0.7 to 3 GB.
    let (_dir, app) = open(10_000);
    fill(&app, 200, 1_000);
    let Some(before) = status_kib("VmRSS:") else {
        return; // No /proc (not Linux): nothing to measure.
    };
    // Reset the peak, so the filling above does not count (Linux >= 4.0).
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (s, _, text) = call(
                &app,
                Request::get("/v1/pipelines/mean_1h/windows?limit=18446744073709551615")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            (s, text.len())
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        let (s, len) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(len < 8 << 20, "one page is {len} bytes");
        bytes = len;
    }
    let after = if peak_reset {
        status_kib("VmHWM:").unwrap()
    } else {
        status_kib("VmRSS:").unwrap()
    };
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "answers of {bytes} bytes; RSS before {before} KiB, peak during the queries {after} KiB: +{grown_mib} MiB"
    );
    assert!(
        grown_mib < 256,
        "four maximal queries grew the process by {grown_mib} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_page_back_through_every_one_with_a_cursor() {
    let (_dir, app) = open(4);
    let key = Key::from_tags([("i", "1")]).unwrap();
    let dead: Vec<reckon_store::DeadLetter> = (0..10)
        .map(|n| reckon_store::DeadLetter {
            pipeline: Arc::from("mean_1h"),
            stream: Arc::from("water_level"),
            event: reckon_core::Event {
                stream: "water_level".into(),
                key: key.clone(),
                time: EventTime(n),
                id: None,
                fields: vec![("level".into(), Value::F64(1.0))],
            },
            kind: "beyond_retention".into(),
            reason: format!("test {n}"),
            at: ProcessingTime(n),
        })
        .collect();
    app.state()
        .store()
        .commit(CommitBatch {
            dead_letters: dead,
            ..CommitBatch::default()
        })
        .unwrap();
    let reasons = |j: &Json| -> Vec<String> {
        j["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["reason"].as_str().unwrap().to_string())
            .collect()
    };
    // The newest first page (capped at 4 of the default 1,000), oldest first within.
    let (s, j) = get(&app, "/v1/streams/water_level/dead_letters").await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["total"], 10);
    assert_eq!(reasons(&j), ["test 6", "test 7", "test 8", "test 9"]);
    let mut pages = vec![reasons(&j)];
    let mut j = j;
    while let Some(next) = j["next"].as_str() {
        let (s, page) = get(
            &app,
            &format!("/v1/streams/water_level/dead_letters?cursor={next}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages.push(reasons(&page));
        j = page;
    }
    pages.reverse();
    let all: Vec<String> = pages.concat();
    let want: Vec<String> = (0..10).map(|n| format!("test {n}")).collect();
    assert_eq!(all, want);
    let (s, j) = get(&app, "/v1/streams/water_level/dead_letters?cursor=x1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("`cursor`: not a dead-letter cursor"),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_through_every_version_with_a_cursor() {
    let (_dir, app) = open(3);
    let key = Key::from_tags([("i", "1")]).unwrap();
    for v in 1..=8 {
        let mut e = emission(&key, 0);
        e.version = Version(v);
        commit(&app, vec![e]);
    }
    let first = "/v1/pipelines/mean_1h/history?key=i%3D1&start=1970-01-01T00:00:00Z";
    let versions = |j: &Json| -> Vec<u64> {
        j["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect()
    };
    let (s, mut j) = get(&app, first).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let mut got = versions(&j);
    assert_eq!(got, [1, 2, 3]);
    while let Some(next) = j["next"].as_str() {
        let (s, page) = get(&app, &format!("{first}&cursor={next}")).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        got.extend(versions(&page));
        j = page;
    }
    assert_eq!(got, (1..=8).collect::<Vec<u64>>());
    // CSV: the cursor in the header.
    let (s, h, text) = get_csv(&app, first).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(h.get("x-reckon-next-cursor").unwrap(), "v3");
    let (s, j) = get(&app, &format!("{first}&cursor=3")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("`cursor`: not a history cursor"),
        "{j}"
    );
}
