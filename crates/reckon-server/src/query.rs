//! Query handlers: windows (with `as_of`), a window's history, dead letters, webhooks
//! and their deliveries, metrics and health. JSON by default; the window queries answer
//! CSV to `Accept: text/csv`.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::{emission_json, emissions_csv, rfc3339, value_json};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reckon_core::{EventTime, Key, ProcessingTime};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// Most rows one window query returns unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 10_000;

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn params<T>(q: QueryResult<T>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Parses an RFC 3339 time given in query parameter `name`.
pub(crate) fn parse_time_param(name: &str, v: &str) -> Result<i64, ApiError> {
    let ts: jiff::Timestamp = v.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "`{name}`: `{v}` is not an RFC 3339 time (e.g. 2022-06-13T14:00:00Z): {e}"
        ))
    })?;
    i64::try_from(ts.as_nanosecond()).map_err(|_| {
        ApiError::bad_request(format!(
            "`{name}`: `{v}` is outside the supported range (years 1678 to 2262)"
        ))
    })
}

/// Parses a series key written as its canonical text (`i=42`, `a=1,b=x`; `\` escapes
/// `,`, `=` and `\`).
pub(crate) fn parse_key(v: &str) -> Result<Key, ApiError> {
    Key::parse(v).map_err(|e| {
        // The key is a parameter here, not part of an event.
        let why = match e {
            reckon_core::Error::InvalidEvent(m) => m,
            other => other.to_string(),
        };
        ApiError::bad_request(format!("`key`: `{v}`: {why}"))
    })
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

fn csv_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response()
}

fn check_pipeline(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.config().output_names().any(|p| p == name) {
        return Ok(());
    }
    let known: Vec<&str> = state.config().output_names().collect();
    Err(ApiError::not_found(format!(
        "unknown pipeline `{name}` (configured pipelines: {})",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )))
}

/// Parameters of `GET /v1/pipelines/{p}/windows`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowsQuery {
    key: Option<String>,
    from: Option<String>,
    to: Option<String>,
    as_of: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/pipelines/{p}/windows?key=&from=&to=&as_of=&limit=`: the latest version
/// of each window starting in `[from, to)` (or, with `as_of`, the version that was
/// latest at that processing time).
pub(crate) async fn windows(
    State(state): State<AppState>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    q: QueryResult<WindowsQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    check_pipeline(&state, &pipeline)?;
    let key = q.key.as_deref().map(parse_key).transpose()?;
    let from = match &q.from {
        Some(v) => EventTime(parse_time_param("from", v)?),
        None => EventTime::MIN,
    };
    let to = match &q.to {
        Some(v) => EventTime(parse_time_param("to", v)?),
        None => EventTime::MAX,
    };
    if from > to {
        return Err(ApiError::bad_request(format!(
            "`from` ({}) is after `to` ({})",
            rfc3339(from.0),
            rfc3339(to.0)
        )));
    }
    let as_of = q
        .as_of
        .as_deref()
        .map(|v| parse_time_param("as_of", v).map(ProcessingTime))
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let store = state.store().clone();
    let p = pipeline.clone();
    let mut rows =
        tokio::task::spawn_blocking(move || store.windows(&p, key.as_ref(), from, to, as_of))
            .await
            .map_err(|e| ApiError::internal(format!("query task failed: {e}")))??;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    if wants_csv(&headers) {
        let r: Vec<_> = rows.iter().map(|e| (None, e)).collect();
        return emissions_csv(&r)
            .map(csv_response)
            .map_err(ApiError::internal);
    }
    Ok(axum::Json(json!({
        "pipeline": pipeline,
        "as_of": q.as_of,
        "truncated": truncated,
        "windows": rows.iter().map(|e| emission_json(e, None)).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// Parameters of `GET /v1/pipelines/{p}/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    key: Option<String>,
    start: Option<String>,
}

/// `GET /v1/pipelines/{p}/history?key=&start=`: every version of one window.
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    q: QueryResult<HistoryQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    check_pipeline(&state, &pipeline)?;
    let key = parse_key(q.key.as_deref().unwrap_or_default())?;
    let start = q.start.as_deref().ok_or_else(|| {
        ApiError::bad_request("`start` is required: the window's start time (RFC 3339)")
    })?;
    let start = EventTime(parse_time_param("start", start)?);
    let versions = state.store().history(&pipeline, &key, start)?;
    if wants_csv(&headers) {
        let r: Vec<_> = versions.iter().map(|e| (None, e)).collect();
        return emissions_csv(&r)
            .map(csv_response)
            .map_err(ApiError::internal);
    }
    Ok(axum::Json(json!({
        "pipeline": pipeline,
        "key": key.as_str(),
        "start": rfc3339(start.0),
        "versions": versions.iter().map(|e| emission_json(e, None)).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /v1/pipelines`: the pipelines and reconciliations, their streams and
/// watermarks.
pub(crate) async fn pipelines(State(state): State<AppState>) -> Response {
    let watermark = |name: &str| {
        state
            .metrics()
            .gauge("reckon_watermark_seconds", &[("pipeline", name)])
            .map(|s| rfc3339((s * 1e9) as i64))
    };
    let config = state.config();
    let list: Vec<Json> = config
        .pipelines
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "kind": "window",
                "stream": p.stream,
                "watermark": watermark(&p.name),
            })
        })
        .chain(config.reconciles.iter().map(|r| {
            json!({
                "name": r.name,
                "kind": "reconcile",
                "events": r.events.stream,
                "audit": r.audit.stream,
                "period": span_secs(r.period.0),
                "missing_after": span_secs(r.missing_after.0),
                "horizon": span_secs(r.horizon.0),
                "watermark": watermark(&r.name),
            })
        }))
        .collect();
    axum::Json(json!({ "pipelines": list, "last_change": state.store().last_change() }))
        .into_response()
}

/// A span as seconds (JSON number).
fn span_secs(s: reckon_core::Span) -> f64 {
    s.0 as f64 / 1e9
}

/// Parameters of `GET /v1/streams/{s}/dead_letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitQuery {
    limit: Option<usize>,
}

/// `GET /v1/streams/{s}/dead_letters?limit=`: the newest dead letters, oldest first.
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    q: QueryResult<LimitQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    if state.stream(&stream).is_none() {
        return Err(ApiError::not_found(format!("unknown stream `{stream}`")));
    }
    let all = state.store().dead_letters(&stream)?;
    let limit = q.limit.unwrap_or(1_000);
    let skip = all.len().saturating_sub(limit);
    let rows: Vec<Json> = all[skip..]
        .iter()
        .map(|d| {
            let fields: serde_json::Map<String, Json> = d
                .event
                .fields
                .iter()
                .map(|(n, v)| (n.to_string(), value_json(v)))
                .collect();
            json!({
                "pipeline": &*d.pipeline,
                "kind": d.kind,
                "reason": d.reason,
                "at": rfc3339(d.at.0),
                "event": {
                    "key": d.event.key.as_str(),
                    "time": rfc3339(d.event.time.0),
                    "id": d.event.id.as_ref().map(|i| i.0.to_string()),
                    "fields": fields,
                },
            })
        })
        .collect();
    Ok(
        axum::Json(json!({ "stream": stream, "total": all.len(), "dead_letters": rows }))
            .into_response(),
    )
}

/// `GET /v1/webhooks`: each webhook and its position in the change feed.
pub(crate) async fn webhooks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut list = Vec::new();
    for w in &state.config().webhooks {
        let s = state.store().sink_state(&w.name)?;
        list.push(json!({
            "name": w.name,
            "url": w.url,
            "pipelines": w.pipelines,
            "cursor": s.cursor,
            "last_delivery": s.last_delivery,
            "delivered": state.metrics().counter("reckon_webhook_deliveries_total", &[("webhook", &w.name), ("outcome", "delivered")]),
            "failed": state.metrics().counter("reckon_webhook_deliveries_total", &[("webhook", &w.name), ("outcome", "failed")]),
        }));
    }
    Ok(
        axum::Json(json!({ "webhooks": list, "last_change": state.store().last_change() }))
            .into_response(),
    )
}

/// `GET /v1/webhooks/{name}/deliveries?limit=`: the newest deliveries, newest first.
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: QueryResult<LimitQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    if !state.config().webhooks.iter().any(|w| w.name == name) {
        return Err(ApiError::not_found(format!("unknown webhook `{name}`")));
    }
    let rows = state
        .store()
        .deliveries(&name, q.limit.unwrap_or(100))?
        .into_iter()
        .map(|(id, bytes)| {
            serde_json::from_slice::<Json>(&bytes)
                .unwrap_or_else(|e| json!({ "id": id, "error": format!("unreadable record: {e}") }))
        })
        .collect::<Vec<_>>();
    Ok(axum::Json(json!({ "webhook": name, "deliveries": rows })).into_response())
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// `GET /healthz`: 200 while the store and the writer work, 503 with the cause otherwise.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let problem = if state.store().is_poisoned() {
        Some("the store refused a write (poisoned); restart reckon".to_string())
    } else {
        state.writer().failure()
    };
    match problem {
        None => axum::Json(json!({ "status": "ok", "last_change": state.store().last_change() }))
            .into_response(),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "failing", "error": p })),
        )
            .into_response(),
    }
}

/// InfluxDB's `GET /health`, which some clients call before writing.
pub(crate) async fn influx_health() -> Response {
    axum::Json(json!({
        "name": "reckon",
        "message": "ready for writes",
        "status": "pass",
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// InfluxDB's `GET /ping`.
pub(crate) async fn influx_ping() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Any other path.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} (see docs/http.md)",
        uri.path()
    ))
}
