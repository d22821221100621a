//! Every error status answers with the JSON error shape `{"error": "..."}` through
//! `router().oneshot`: unknown routes (404), wrong methods (405, `Allow` kept), too
//! long request targets (414), unsupported content encodings (415, `Accept-Encoding`
//! kept) and extractor rejections that would otherwise be plain text.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use reckon_server::{App, AppOptions};
use serde_json::Value as Json;
use tower::ServiceExt;

fn open() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::config(dir.path(), ""), AppOptions::default()).unwrap();
    (dir, app)
}

/// Sends `req`; the status, the headers and the body parsed as a JSON error (the test
/// fails when the body is not JSON with a non-empty `error` string).
async fn call(app: &App, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let r = app.router().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{status}: content type {ct:?}: {text:?}"
    );
    let j: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text:?}"));
    let msg = j["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}: no error in {j}"));
    assert!(!msg.is_empty(), "{status}: empty error");
    (status, headers, msg.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_json() {
    let (_dir, app) = open();
    let req = Request::get("/v2/nothing/here")
        .body(Body::empty())
        .unwrap();
    let (s, _, msg) = call(&app, req).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(msg.contains("/v2/nothing/here"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_json_with_allow() {
    let (_dir, app) = open();
    let req = Request::get("/v1/streams/water_level/events")
        .body(Body::empty())
        .unwrap();
    let (s, h, msg) = call(&app, req).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.get(header::ALLOW).unwrap(), "POST");
    assert_eq!(
        msg,
        "method GET is not allowed on /v1/streams/water_level/events"
    );
    let req = Request::delete("/healthz").body(Body::empty()).unwrap();
    let (s, _, msg) = call(&app, req).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        msg.starts_with("method DELETE is not allowed on /healthz"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_long_target_is_414_json() {
    let (_dir, app) = open();
    let uri = format!("/v1/pipelines/mean_1h/windows?key={}", "x".repeat(20_000));
    let req = Request::get(uri).body(Body::empty()).unwrap();
    let (s, _, msg) = call(&app, req).await;
    assert_eq!(s, StatusCode::URI_TOO_LONG);
    assert_eq!(
        msg,
        "request target is 20034 bytes, longer than the limit of 16384 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_encoding_is_415_json() {
    let (_dir, app) = open();
    let req = Request::post("/v1/streams/water_level/events")
        .header(header::CONTENT_ENCODING, "br")
        .body(Body::from("{}"))
        .unwrap();
    let (s, h, msg) = call(&app, req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(h.get(header::ACCEPT_ENCODING).is_some(), "{h:?}");
    assert_eq!(
        msg,
        "unsupported Content-Encoding `br` (supported: gzip, or none)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_rejection_is_wrapped_as_json() {
    let (_dir, app) = open();
    // A path segment that is not UTF-8 once percent-decoded: the path extractor's
    // rejection is plain text.
    let req = Request::get("/v1/pipelines/%FF/windows")
        .body(Body::empty())
        .unwrap();
    let (s, _, msg) = call(&app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(msg.contains("UTF-8"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_pass_unchanged() {
    let (_dir, app) = open();
    let req = Request::get("/v1/pipelines/nope/windows")
        .body(Body::empty())
        .unwrap();
    let (s, _, msg) = call(&app, req).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(msg.starts_with("unknown pipeline `nope`"), "{msg}");
}
