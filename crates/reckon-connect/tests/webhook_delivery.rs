#![allow(clippy::unwrap_used)]
//! The webhook sink end to end, against a real HTTP receiver on 127.0.0.1: what seed
//! 000's Slack alert said arrives (and more), signed; failures are retried with
//! backoff as configured; hopeless ones fail at once. Backoffs are milliseconds so the
//! file runs in a few seconds.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use reckon_connect::webhook::{
    Correction, DELIVERY_HEADER, DeliveryOutcome, DeliveryResult, SIGNATURE_HEADER, WebhookSender,
    verify_signature,
};
use reckon_core::{
    Checksum, Emission, EmissionKind, EventTime, Key, ProcessingTime, Span, Value, Version,
    Watermark, Window,
};
use reckon_runtime::config::Duration as ConfigDuration;
use reckon_runtime::{WebhookConfig, WebhookFormat, WebhookNotify};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_test";
/// 2022-06-13T14:00:00Z, the hour of seed 000's alert.
const HOUR_START: i64 = 1_655_128_800;
/// The mean of 360 readings summing to 744, then with a late reading of 3.6.
const OLD_MEAN: f64 = 744.0 / 360.0;
const NEW_MEAN: f64 = (744.0 + 3.6) / 361.0;

// ---------------------------------------------------------------- the receiver

/// What the receiver answers to one request.
#[derive(Clone, Debug)]
enum Reply {
    /// This status, with this body.
    Status(u16, &'static str),
    /// This status with a `Retry-After` header.
    RetryAfter(u16, &'static str),
    /// A 302 to another path.
    Redirect,
    /// Waits, then answers this status (to trip the client's timeout).
    Slow(Duration, u16),
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Vec<Reply>>,
}

impl Receiver {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let n = {
        let mut hits = r.hits.lock().unwrap();
        hits.push(Hit {
            at: Instant::now(),
            headers,
            body,
        });
        hits.len() - 1
    };
    let status = |s: u16| StatusCode::from_u16(s).unwrap();
    match r.script.get(n).cloned().unwrap_or(Reply::Status(200, "ok")) {
        Reply::Status(s, body) => (status(s), body).into_response(),
        Reply::RetryAfter(s, after) => (status(s), [(header::RETRY_AFTER, after)]).into_response(),
        Reply::Redirect => (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into_response(),
        Reply::Slow(wait, s) => {
            tokio::time::sleep(wait).await;
            status(s).into_response()
        }
    }
}

/// Starts a receiver answering requests in `script` order (then 200), and returns the
/// URL to POST to. The path looks like a Slack hook's, whose token is a credential.
async fn receiver(script: Vec<Reply>) -> (String, Receiver) {
    let r = Receiver {
        hits: Arc::default(),
        script: Arc::new(script),
    };
    let app = Router::new()
        .route("/services/T000/B000/XXXX", post(handle))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/services/T000/B000/XXXX"), r)
}

/// A port nothing listens on.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/services/T000/B000/XXXX")
}

// ---------------------------------------------------------------- fixtures

fn ms(n: i64) -> ConfigDuration {
    ConfigDuration(Span(n * 1_000_000))
}

fn config(url: &str, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig {
        name: "ops".into(),
        tenant: None,
        url: url.into(),
        command: vec![],
        pipelines: vec![],
        format,
        notify: WebhookNotify::Corrections,
        secret: Some(SECRET.into()),
        digest_interval: ms(0),
        max_digest_windows: 10_000,
        max_attempts: 4,
        backoff: ms(20),
        max_backoff: ms(500),
        timeout: ms(5_000),
    }
}

fn sender(config: &WebhookConfig) -> WebhookSender {
    WebhookSender::new(config).unwrap()
}

fn now_unix_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn emission(key: &str, version: u32, kind: EmissionKind, count: u64, mean: f64) -> Emission {
    Emission {
        pipeline: Arc::from("water_level_mean_1h"),
        key: Key::from_tags([("i", key)]).unwrap(),
        window: Window {
            start: EventTime::from_secs(HOUR_START),
            end: EventTime::from_secs(HOUR_START + 3600),
        },
        version: Version(version),
        kind,
        columns: Arc::from(vec![Arc::<str>::from("mean")]),
        values: vec![Some(Value::F64(mean))],
        count,
        checksum: Checksum {
            count,
            hash: u64::from(version),
        },
        emitted_at: ProcessingTime::from_secs(HOUR_START + 7200),
        watermark: Watermark(EventTime::from_secs(HOUR_START + 7190)),
        states: None,
    }
}

/// Seed 000's situation: one late reading made the hour of location 42 go from 360 to
/// 361 readings, and its mean moved.
fn seed_000(change: u64) -> Correction {
    Correction {
        change,
        stream: Arc::from("water_level"),
        emission: emission("42", 2, EmissionKind::Late, 361, NEW_MEAN),
        previous: Some(emission("42", 1, EmissionKind::OnTime, 360, OLD_MEAN)),
    }
}

/// Runs `corrections` through the sender's filter and digest, as the notifier does.
fn digest_body(s: &WebhookSender, corrections: Vec<Correction>) -> (Vec<u8>, u64, u64) {
    let mut digest = s.digest();
    let t = Instant::now();
    for c in corrections.into_iter().filter(|c| s.wants(c)) {
        digest.push(t, c);
    }
    let batch = digest.poll(t).unwrap();
    (
        s.body(&batch.corrections),
        batch.first_change,
        batch.last_change,
    )
}

fn failed(r: &DeliveryResult) -> (Option<u16>, &str) {
    match &r.outcome {
        DeliveryOutcome::Failed { status, error } => (*status, error.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn gaps(hits: &[Hit]) -> Vec<Duration> {
    hits.windows(2).map(|w| w[1].at - w[0].at).collect()
}

// ---------------------------------------------------------------- what arrives

#[tokio::test]
async fn seed_000_correction_arrives_as_signed_json() {
    let (url, rx) = receiver(vec![]).await;
    let s = sender(&config(&url, WebhookFormat::Json));
    // An early preview is not a correction: the default `notify` drops it.
    let mut preview = seed_000(4);
    preview.emission.kind = EmissionKind::Early;
    preview.emission.window.start = EventTime::from_secs(HOUR_START + 3600);
    let (body, first, last) = digest_body(&s, vec![preview, seed_000(5)]);
    assert_eq!((first, last), (5, 5));

    let now = now_unix_s();
    let result = s.deliver(7, &body, now).await;
    assert_eq!(result.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert_eq!((result.id, result.attempts), (7, 1));

    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(hit.headers[DELIVERY_HEADER], "7");
    assert_eq!(&hit.body[..], &body[..]);

    let sig = hit.headers[SIGNATURE_HEADER].to_str().unwrap();
    assert!(sig.starts_with(&format!("t={now},v1=")), "{sig}");
    let tolerance = Duration::from_secs(300);
    assert!(verify_signature(
        SECRET.as_bytes(),
        sig,
        &hit.body,
        now,
        tolerance
    ));
    assert!(!verify_signature(
        b"wrong secret",
        sig,
        &hit.body,
        now,
        tolerance
    ));
    let tampered = String::from_utf8(hit.body.to_vec())
        .unwrap()
        .replace("361", "362");
    assert!(!verify_signature(
        SECRET.as_bytes(),
        sig,
        tampered.as_bytes(),
        now,
        tolerance
    ));
    assert!(!verify_signature(
        SECRET.as_bytes(),
        sig,
        &hit.body,
        now + 3600,
        tolerance
    ));

    let json: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(json["webhook"], "ops");
    let list = json["corrections"].as_array().unwrap();
    assert_eq!(list.len(), 1, "the preview was filtered out");
    let c = &list[0];
    assert_eq!(c["change"], 5);
    assert_eq!(c["stream"], "water_level");
    assert_eq!(c["pipeline"], "water_level_mean_1h");
    assert_eq!(c["key"], "i=42");
    assert_eq!(c["window"]["start"], "2022-06-13T14:00:00Z");
    assert_eq!(c["window"]["end"], "2022-06-13T15:00:00Z");
    assert_eq!(c["kind"], "late");
    assert_eq!(
        (c["previous_version"].clone(), c["version"].clone()),
        (1.into(), 2.into())
    );
    assert_eq!(c["previous_count"], 360);
    assert_eq!(c["count"], 361);
    assert_eq!(c["previous_values"]["mean"], OLD_MEAN);
    assert_eq!(c["values"]["mean"], NEW_MEAN);
    assert_eq!(c["emitted_at"], "2022-06-13T16:00:00Z");
}

#[tokio::test]
async fn seed_000_correction_arrives_as_slack_message() {
    let (url, rx) = receiver(vec![]).await;
    let s = sender(&config(&url, WebhookFormat::Slack));
    // The same window corrected twice in one interval appears once: 360 -> 362.
    let mut again = seed_000(9);
    again.previous = Some(again.emission.clone());
    again.emission.version = Version(3);
    again.emission.count = 362;
    let (body, first, last) = digest_body(&s, vec![seed_000(8), again]);
    assert_eq!((first, last), (8, 9));
    let result = s.deliver(1, &body, now_unix_s()).await;
    assert!(result.is_delivered(), "{result:?}");

    let hit = &rx.hits()[0];
    let json: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    let text = json["text"].as_str().unwrap();
    for needle in [
        "Late data corrected 1 window",
        "Measurement *water_level*",
        "key `i=42`",
        "window 2022-06-13T14:00:00Z – 2022-06-13T15:00:00Z",
        "pipeline `water_level_mean_1h`",
        "v1 → v3 (late)",
        "count 360 → 362",
        "mean 2.066666666666667 → 2.0709141274238227",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[tokio::test]
async fn without_a_secret_nothing_is_signed() {
    let (url, rx) = receiver(vec![]).await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.secret = None;
    let s = sender(&cfg);
    let result = s.deliver(3, b"{}", now_unix_s()).await;
    assert!(result.is_delivered());
    let hit = &rx.hits()[0];
    assert!(hit.headers.get(SIGNATURE_HEADER).is_none());
    assert_eq!(hit.headers[DELIVERY_HEADER], "3");
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn server_errors_are_retried_with_exponential_backoff() {
    let (url, rx) = receiver(vec![
        Reply::Status(500, "boom"),
        Reply::Status(503, "busy"),
        Reply::Status(200, "ok"),
    ])
    .await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.backoff = ms(60);
    cfg.max_backoff = ms(1_000);
    let s = sender(&cfg);
    let result = s.deliver(11, b"{}", now_unix_s()).await;
    assert_eq!(result.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert_eq!(result.attempts, 3);
    assert!(result.elapsed >= Duration::from_millis(180), "{result:?}");

    let hits = rx.hits();
    assert_eq!(hits.len(), 3);
    let gaps = gaps(&hits);
    assert!(gaps[0] >= Duration::from_millis(60), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(120), "doubled: {gaps:?}");
    assert!(gaps[1] < Duration::from_millis(1_000), "{gaps:?}");
    // A retry is the same delivery: same id, so the receiver can de-duplicate.
    assert!(hits.iter().all(|h| h.headers[DELIVERY_HEADER] == "11"));
}

#[tokio::test]
async fn request_timeout_status_is_retried() {
    let (url, rx) = receiver(vec![Reply::Status(408, "")]).await;
    let s = sender(&config(&url, WebhookFormat::Json));
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert_eq!((result.attempts, rx.hits().len()), (2, 2));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (url, rx) = receiver(vec![Reply::RetryAfter(429, "1")]).await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.backoff = ms(10);
    cfg.max_backoff = ms(5_000);
    let s = sender(&cfg);
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert_eq!(result.attempts, 2);
    let gaps = gaps(&rx.hits());
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(3), "{gaps:?}");
}

#[tokio::test]
async fn retry_after_is_capped_by_max_backoff() {
    let (url, rx) = receiver(vec![Reply::RetryAfter(503, "3600")]).await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.max_backoff = ms(100);
    let s = sender(&cfg);
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert!(result.is_delivered());
    let gaps = gaps(&rx.hits());
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(2), "{gaps:?}");
}

#[tokio::test]
async fn client_errors_fail_at_once() {
    let (url, rx) = receiver(vec![Reply::Status(400, "invalid_payload")]).await;
    let s = sender(&config(&url, WebhookFormat::Slack));
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.attempts, 1);
    let (status, error) = failed(&result);
    assert_eq!(status, Some(400));
    assert!(
        error.contains("400") && error.contains("invalid_payload"),
        "{error}"
    );
    assert_eq!(rx.hits().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (url, rx) = receiver(vec![Reply::Redirect]).await;
    let s = sender(&config(&url, WebhookFormat::Json));
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.attempts, 1);
    let (status, error) = failed(&result);
    assert_eq!(status, Some(302));
    assert!(error.contains("redirect"), "{error}");
    assert_eq!(rx.hits().len(), 1);
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_the_last_status() {
    let (url, rx) = receiver(vec![Reply::Status(502, "bad gateway"); 10]).await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.max_attempts = 3;
    cfg.backoff = ms(5);
    let s = sender(&cfg);
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.attempts, 3);
    let (status, error) = failed(&result);
    assert_eq!(status, Some(502));
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert_eq!(rx.hits().len(), 3);
}

#[tokio::test]
async fn unreachable_receiver_fails_after_max_attempts() {
    let url = dead_url().await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.max_attempts = 3;
    cfg.backoff = ms(5);
    let s = sender(&cfg);
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.attempts, 3);
    let (status, error) = failed(&result);
    assert_eq!(status, None);
    assert!(!error.contains("XXXX"), "the URL's token leaked: {error}");
    assert!(error.contains("gave up after 3 attempts"), "{error}");
}

#[tokio::test]
async fn timeouts_are_retried() {
    let (url, rx) = receiver(vec![Reply::Slow(Duration::from_secs(2), 200)]).await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.timeout = ms(200);
    let s = sender(&cfg);
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.outcome, DeliveryOutcome::Delivered { status: 200 });
    assert_eq!(result.attempts, 2);
    assert!(result.elapsed < Duration::from_secs(2), "{result:?}");
    assert_eq!(rx.hits().len(), 2);
}

#[tokio::test]
async fn timeouts_until_max_attempts_fail_without_status() {
    let (url, _rx) = receiver(vec![Reply::Slow(Duration::from_secs(2), 200); 5]).await;
    let mut cfg = config(&url, WebhookFormat::Json);
    cfg.timeout = ms(100);
    cfg.max_attempts = 2;
    let s = sender(&cfg);
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.attempts, 2);
    let (status, error) = failed(&result);
    assert_eq!(status, None);
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test]
async fn garbage_answers_are_retried_and_never_panic() {
    // A "server" that answers every connection with bytes that are not HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(Mutex::new(0u32));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            *counted.lock().unwrap() += 1;
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n").await;
            let _ = sock.shutdown().await;
        }
    });
    let mut cfg = config(&format!("http://{addr}/hook"), WebhookFormat::Json);
    cfg.max_attempts = 2;
    cfg.backoff = ms(5);
    let s = sender(&cfg);
    let result = s.deliver(1, b"{}", now_unix_s()).await;
    assert_eq!(result.attempts, 2);
    assert_eq!(failed(&result).0, None);
    assert_eq!(*connections.lock().unwrap(), 2);
}

// ---------------------------------------------------------------- setup

#[test]
fn bad_urls_are_refused_without_echoing_them() {
    for url in [
        "not a url",
        "ftp://example.com/x",
        "file:///etc/passwd",
        "unix:/tmp/sock",
    ] {
        let cfg = config(url, WebhookFormat::Slack);
        let err = WebhookSender::new(&cfg).unwrap_err().to_string();
        assert!(err.contains("webhook `ops`: invalid url"), "{err}");
        assert!(!err.contains(url), "{err}");
    }
}

#[test]
fn https_clients_build_and_debug_hides_the_token() {
    let cfg = config(
        "https://hooks.slack.com/services/T000/B000/XXXX",
        WebhookFormat::Slack,
    );
    let s = sender(&cfg);
    assert_eq!(s.redacted_url(), "https://hooks.slack.com/…");
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("XXXX") && !debug.contains(SECRET),
        "{debug}"
    );
    assert_eq!(s.name(), "ops");
}

#[test]
fn pipeline_and_notify_filters() {
    let mut cfg = config("http://127.0.0.1:9/hook", WebhookFormat::Json);
    let late = seed_000(1);
    let mut on_time = seed_000(2);
    on_time.emission.kind = EmissionKind::OnTime;
    on_time.previous = None;
    let mut recomputed = seed_000(3);
    recomputed.emission.kind = EmissionKind::Recomputed;

    let s = sender(&cfg);
    assert!(s.wants(&late) && s.wants(&recomputed) && !s.wants(&on_time));

    cfg.notify = WebhookNotify::All;
    assert!(sender(&cfg).wants(&on_time));

    cfg.pipelines = vec!["other".into()];
    assert!(!sender(&cfg).wants(&late));
    cfg.pipelines.push("water_level_mean_1h".into());
    assert!(sender(&cfg).wants(&late));
}

/// An alert episode's emission (columns as `AlertRule` writes them).
fn episode(version: u32, kind: EmissionKind, late: bool) -> Emission {
    Emission {
        pipeline: Arc::from("hot"),
        columns: Arc::from(
            ["state", "resolved_at", "late", "value", "input_count"].map(Arc::<str>::from),
        ),
        values: vec![
            Some(Value::Str(Arc::from(kind.as_str()))),
            None,
            Some(Value::Bool(late)),
            Some(Value::I64(12)),
            Some(Value::I64(3)),
        ],
        ..emission("a", version, kind, 3, 0.0)
    }
}

/// A `trigger` webhook runs a `command` once per episode that begins: the episode on
/// standard input and its fields in `RECKON_*` variables; exit 0 is a delivery, another
/// status is retried and then fails; a program that cannot start fails at once.
#[tokio::test]
async fn a_trigger_command_runs_per_episode_that_begins() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config("", WebhookFormat::Trigger);
    cfg.command = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo \"$RECKON_RULE|$RECKON_KEY|$RECKON_WINDOW_START|$RECKON_LATE|$RECKON_DELIVERY\" >> {0}; cat >> {0}; echo >> {0}",
            out.display()
        ),
    ];
    let s = sender(&cfg);
    assert!(s.redacted_url().contains("command `sh`"));
    assert_eq!(s.max_windows(10_000), 1, "one run per episode");
    let fired = Correction {
        change: 7,
        stream: Arc::from("alarms"),
        emission: episode(1, EmissionKind::Firing, true),
        previous: None,
    };
    let resolved = Correction {
        change: 8,
        emission: episode(2, EmissionKind::Resolved, true),
        previous: Some(fired.emission.clone()),
        ..fired.clone()
    };
    let back = Correction {
        change: 9,
        emission: episode(4, EmissionKind::Firing, false),
        previous: Some(episode(3, EmissionKind::Retracted, false)),
        ..fired.clone()
    };
    let not_an_alert = seed_000(10);
    assert!(s.wants(&fired) && s.takes(&fired));
    assert!(
        s.wants(&resolved) && !s.takes(&resolved),
        "no run for a resolution"
    );
    assert!(
        s.takes(&back),
        "a run for an episode back after a retraction"
    );
    assert!(
        !s.wants(&not_an_alert),
        "windows of other pipelines are not episodes"
    );
    let body = s.body(std::slice::from_ref(&fired));
    let r = s.deliver(5, &body, now_unix_s()).await;
    assert!(r.is_delivered(), "{r:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "hot|i=a|2022-06-13T14:00:00Z|true|5");
    let json: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(json["rule"], "hot");
    assert_eq!(json["change"], 7);
    assert_eq!(json["value"], 12);
    assert_eq!(json["window"]["start"], "2022-06-13T14:00:00Z");

    cfg.command = vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()];
    let r = sender(&cfg).deliver(6, &body, now_unix_s()).await;
    let (status, error) = failed(&r);
    assert_eq!((status, r.attempts), (Some(3), 4), "{error}");
    assert!(
        error.contains("exited with") && error.contains("nope"),
        "{error}"
    );
    cfg.command = vec!["/no/such/program".into()];
    let r = sender(&cfg).deliver(7, &body, now_unix_s()).await;
    assert_eq!(r.attempts, 1);
    assert!(failed(&r).1.contains("cannot run"), "{r:?}");
}
