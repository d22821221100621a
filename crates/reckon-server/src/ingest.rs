//! Ingest handlers: reckon's own `POST /v1/streams/{stream}/events` (NDJSON or a JSON
//! array) and InfluxDB v2's `POST /api/v2/write` (line protocol).
//!
//! Each bad line is reported with its line number and field; the good lines of the
//! same request are stored unless the request says `?atomic=true`. A line that is not
//! valid UTF-8 is one bad line, not a bad request. The answer comes only after the
//! events are durable.

use crate::AppState;
use crate::error::ApiError;
use crate::writer::SubmitError;
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reckon_connect::DecodeError;
use reckon_connect::lineproto::Precision;
use reckon_core::{Event, EventTime, PartitionId};
use reckon_runtime::{IngestReport, IngestRequest, StreamConfig};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// At most this many line errors are listed in one answer (the count is exact).
const MAX_LISTED_ERRORS: usize = 100;

/// Query parameters of `POST /v1/streams/{stream}/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// All or nothing: any bad line rejects the whole request.
    #[serde(default)]
    atomic: bool,
    /// The source partition (watermarks are per partition). Default 0.
    #[serde(default)]
    partition: u32,
}

/// Reads the body up to the configured limit (413 beyond it).
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config().server.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        let too_big = inner.is::<http_body_util::LengthLimitError>()
            || inner
                .source()
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_big {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than the limit of {limit} bytes \
                     ([server] max_body_bytes); send smaller batches"
                ),
            )
        } else {
            ApiError::bad_request(format!("could not read the request body: {inner}"))
        }
    })
}

/// The body as text, with every line that is not valid UTF-8 blanked (so line numbers
/// stay right) and reported.
pub(crate) fn utf8_lines(bytes: &[u8]) -> (std::borrow::Cow<'_, str>, Vec<DecodeError>) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (std::borrow::Cow::Borrowed(s), Vec::new());
    }
    let mut text = String::with_capacity(bytes.len());
    let mut errors = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(s) => text.push_str(s),
            Err(e) => errors.push(DecodeError {
                line: Some(i + 1),
                field: None,
                message: format!(
                    "not valid UTF-8 (invalid byte at column {})",
                    e.valid_up_to() + 1
                ),
            }),
        }
    }
    (std::borrow::Cow::Owned(text), errors)
}

/// Decodes NDJSON or a JSON array (a body whose first non-blank character is `[`).
pub(crate) fn decode_json(
    state: &AppState,
    stream: &StreamConfig,
    bytes: &[u8],
) -> (Vec<Event>, Vec<DecodeError>) {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return state.with_json(stream, |d| d.decode_array(bytes));
    }
    let (text, mut errors) = utf8_lines(bytes);
    let (events, more) = state.with_json(stream, |d| d.decode_ndjson(&text));
    errors.extend(more);
    errors.sort_by_key(|e| e.line);
    (events, errors)
}

/// A CSV body (`Content-Type: text/csv`): a header row, then one event per row, read
/// as `reckon replay` reads a CSV file. A bad header is a 400.
fn decode_csv(
    stream: &StreamConfig,
    bytes: &[u8],
) -> Result<(Vec<Event>, Vec<DecodeError>), ApiError> {
    let decoder = reckon_connect::csv::CsvDecoder::new(stream, bytes)
        .map_err(|e| ApiError::bad_request(format!("CSV header: {}", e.message)))?;
    let (mut events, mut errors) = (Vec::new(), Vec::new());
    for r in decoder {
        match r {
            Ok(e) => events.push(e),
            Err(e) => errors.push(e),
        }
    }
    Ok((events, errors))
}

fn errors_json(errors: &[DecodeError]) -> Json {
    Json::Array(
        errors
            .iter()
            .take(MAX_LISTED_ERRORS)
            .map(|e| {
                json!({
                    "line": e.line,
                    "field": e.field,
                    "message": e.message,
                    "error": e.to_string(),
                })
            })
            .collect(),
    )
}

pub(crate) fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Overloaded => ApiError::unavailable(
            "too many ingest requests are waiting ([server] max_pending_requests); retry after a second",
            1,
        ),
        SubmitError::Stopped(why) => ApiError::unavailable(why, 5),
        SubmitError::Finished(why) => ApiError::new(StatusCode::CONFLICT, why),
    }
}

fn count_request(state: &AppState, stream: &str, outcome: &'static str) {
    state.metrics().inc(
        "reckon_ingest_requests_total",
        &[("stream", stream), ("outcome", outcome)],
        1,
    );
}

/// Hands decoded events to the writer; counts what happened.
async fn submit(
    state: &AppState,
    stream: &StreamConfig,
    partition: u32,
    events: Vec<Event>,
    rejected: usize,
    bytes: usize,
) -> Result<IngestReport, ApiError> {
    let m = state.metrics();
    let l = [("stream", stream.name.as_str())];
    m.inc("reckon_events_rejected_total", &l, rejected as u64);
    if events.is_empty() {
        return Ok(IngestReport::default());
    }
    // A tenant's quotas take the request whole or refuse it whole (nothing stored).
    let charge = match &stream.tenant {
        Some(t) => state
            .limits()
            .charge(
                t,
                &stream.name,
                &events,
                bytes as u64,
                state.clock().now().0,
            )
            .inspect_err(|_| count_request(state, &stream.name, "throttled"))?,
        None => None,
    };
    let report = state
        .writer()
        .ingest(IngestRequest {
            stream: Arc::from(stream.name.as_str()),
            partition: PartitionId(partition),
            events,
        })
        .await
        .map_err(|e| {
            count_request(
                state,
                &stream.name,
                match e {
                    SubmitError::Overloaded => "overloaded",
                    SubmitError::Finished(_) => "finished",
                    SubmitError::Stopped(_) => "failed",
                },
            );
            if let Some(c) = &charge {
                state.limits().refund(c);
            }
            submit_error(e)
        })?;
    m.inc("reckon_events_accepted_total", &l, report.accepted);
    m.inc("reckon_events_duplicated_total", &l, report.duplicates);
    Ok(report)
}

/// `POST /v1/streams/{stream}/events`.
pub(crate) async fn post_events(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
    Path(stream): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let cfg = state
        .resolve_stream(&who, &stream, crate::auth::Access::Write)?
        .clone();
    let bytes = read_body(&state, body).await?;
    let csv = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    let (events, errors) = if csv {
        decode_csv(&cfg, &bytes)?
    } else {
        decode_json(&state, &cfg, &bytes)
    };
    let lines = events.len() + errors.len();
    if q.atomic && !errors.is_empty() {
        count_request(&state, &cfg.name, "rejected");
        state.metrics().inc(
            "reckon_events_rejected_total",
            &[("stream", cfg.name.as_str())],
            errors.len() as u64,
        );
        let body = json!({
            "error": format!(
                "{} of {lines} events are invalid; nothing was stored (atomic=true)",
                errors.len()
            ),
            "accepted": 0,
            "rejected": errors.len(),
            "errors": errors_json(&errors),
        });
        return Ok((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    }
    let report = submit(&state, &cfg, q.partition, events, errors.len(), bytes.len()).await?;
    let mut body = json!({
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "late": report.late,
        "dead_lettered": report.dead_lettered,
        "rejected": errors.len(),
        "seq": report.last_seq,
    });
    let status = if errors.is_empty() {
        count_request(&state, &cfg.name, "ok");
        StatusCode::OK
    } else {
        count_request(&state, &cfg.name, outcome(lines, errors.len()));
        if let Some(o) = body.as_object_mut() {
            o.insert(
                "error".into(),
                json!(format!(
                    "{} of {lines} events are invalid; the {} valid ones were stored",
                    errors.len(),
                    lines - errors.len()
                )),
            );
            o.insert("errors".into(), errors_json(&errors));
        }
        StatusCode::BAD_REQUEST
    };
    Ok((status, axum::Json(body)).into_response())
}

/// Query parameters of InfluxDB v2's write endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct InfluxQuery {
    /// Ignored (reckon has no organisations yet); accepted for compatibility.
    #[serde(default)]
    #[allow(dead_code)]
    org: Option<String>,
    #[serde(default, rename = "orgID")]
    #[allow(dead_code)]
    org_id: Option<String>,
    /// The stream.
    #[serde(default)]
    bucket: Option<String>,
    /// ns (default), us, ms, s.
    #[serde(default)]
    precision: Option<String>,
    /// reckon's own: all or nothing.
    #[serde(default)]
    atomic: bool,
}

/// An error in InfluxDB's shape (`{"code", "message"}`), which its clients display.
fn influx_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// `POST /api/v2/write?org=&bucket=&precision=`: InfluxDB v2 line protocol. Answers
/// 204 when every line was stored, as InfluxDB does.
pub(crate) async fn influx_write(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
    query: Result<Query<InfluxQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return influx_error(StatusCode::BAD_REQUEST, "invalid", e.body_text()),
    };
    let Some(bucket) = q.bucket.filter(|b| !b.is_empty()) else {
        return influx_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "missing the `bucket` query parameter (the bucket is the reckon stream)".into(),
        );
    };
    let cfg = match state.resolve_stream(&who, &bucket, crate::auth::Access::Write) {
        Ok(cfg) => cfg.clone(),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return influx_error(
                e.status,
                "not found",
                format!("bucket \"{bucket}\" not found: {}", e.message),
            );
        }
        Err(e) => return influx_error(e.status, "forbidden", e.message),
    };
    let precision = match Precision::parse(q.precision.as_deref().unwrap_or("ns")) {
        Ok(p) => p,
        Err(e) => return influx_error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let bytes = match read_body(&state, body).await {
        Ok(b) => b,
        Err(e) => {
            let code = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                "request too large"
            } else {
                "invalid"
            };
            return influx_error(e.status, code, e.message);
        }
    };
    let now = EventTime(state.clock().now().0);
    let (text, mut errors) = utf8_lines(&bytes);
    let (events, more) = state.with_lines(&cfg, |d| d.decode(&text, precision, now));
    errors.extend(more);
    errors.sort_by_key(|e| e.line);
    let lines = events.len() + errors.len();
    if q.atomic && !errors.is_empty() {
        count_request(&state, &cfg.name, "rejected");
        return influx_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "{} of {lines} lines are invalid; nothing was stored (atomic=true): {}",
                errors.len(),
                first_errors(&errors)
            ),
        );
    }
    match submit(&state, &cfg, 0, events, errors.len(), bytes.len()).await {
        Err(e) => {
            let code = match e.status {
                StatusCode::CONFLICT => "conflict",
                StatusCode::TOO_MANY_REQUESTS => "too many requests",
                StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                _ => "unavailable",
            };
            let mut r = influx_error(e.status, code, e.message);
            if let Some(s) = e.retry_after
                && let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string())
            {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            r
        }
        Ok(report) if errors.is_empty() => {
            count_request(&state, &cfg.name, "ok");
            with_report_headers(StatusCode::NO_CONTENT.into_response(), &report)
        }
        Ok(report) => {
            count_request(&state, &cfg.name, outcome(lines, errors.len()));
            let r = influx_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!(
                    "partial write: {} of {lines} lines are invalid, {} points stored: {}",
                    errors.len(),
                    report.accepted,
                    first_errors(&errors)
                ),
            );
            with_report_headers(r, &report)
        }
    }
}

/// The outcome label of a request none of whose events failed to be submitted: `ok`
/// (every line decoded), `partial` (some did) or `rejected` (none did). The same for
/// both ingest formats (`reckon_ingest_requests_total{outcome}`).
fn outcome(lines: usize, bad: usize) -> &'static str {
    if bad == 0 {
        "ok"
    } else if bad == lines {
        "rejected"
    } else {
        "partial"
    }
}

/// Line protocol answers 204 with no body (InfluxDB's clients expect exactly that), so
/// what happened to the points is told in headers: `X-Reckon-Accepted`,
/// `X-Reckon-Duplicates` and `X-Reckon-Dead-Lettered` (stored as dead letters, not in
/// any result). Clients that do not know them ignore them.
fn with_report_headers(mut r: Response, report: &IngestReport) -> Response {
    let h = r.headers_mut();
    for (name, n) in [
        ("x-reckon-accepted", report.accepted),
        ("x-reckon-duplicates", report.duplicates),
        ("x-reckon-dead-lettered", report.dead_lettered),
    ] {
        h.insert(name, axum::http::HeaderValue::from(n));
    }
    r
}

fn first_errors(errors: &[DecodeError]) -> String {
    let mut s: Vec<String> = errors.iter().take(10).map(|e| e.to_string()).collect();
    if errors.len() > 10 {
        s.push(format!("and {} more", errors.len() - 10));
    }
    s.join("; ")
}
