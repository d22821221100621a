//! Query handlers: windows (with `as_of`), a window's history, dead letters, webhooks
//! and their deliveries, metrics and health. JSON by default; the window queries answer
//! CSV to `Accept: text/csv`.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::{emission_json, emissions_csv, rfc3339, value_json};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reckon_core::{EventTime, Key, ProcessingTime};
use serde::Deserialize;
use serde_json::{Value as Json, json};

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

/// The `from` and `to` query parameters (RFC 3339; unbounded when absent), `from` not
/// after `to`.
pub(crate) fn time_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(EventTime, EventTime), ApiError> {
    let from = match from {
        Some(v) => EventTime(parse_time_param("from", v)?),
        None => EventTime::MIN,
    };
    let to = match to {
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
    Ok((from, to))
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

/// The response header carrying a CSV answer's `next` cursor (JSON answers carry it in
/// the body): present exactly when more rows follow.
pub(crate) const NEXT_CURSOR_HEADER: &str = "x-reckon-next-cursor";

/// The rows one answer may hold: `limit` (at least 1), lowered to `[server]
/// max_query_limit`, which is also the default. A bigger `limit` is not an error: the
/// answer's `next` cursor shows that more follow.
pub(crate) fn effective_limit(state: &AppState, limit: Option<u64>) -> Result<usize, ApiError> {
    let max = state.config().server.max_query_limit.max(1);
    match limit {
        None => Ok(max),
        Some(0) => Err(ApiError::bad_request(
            "`limit`: must be at least 1 (rows per page)",
        )),
        Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX).min(max)),
    }
}

/// Opaque page cursors of the windows query.
///
/// A cursor names the last window of a page, `(key, start)`, and is bound to the query
/// that produced it (pipeline, key, from, to, as_of) by a check value, so a cursor that
/// was edited, truncated or taken from another query is refused (400) instead of
/// silently answering something else. Text form: lowercase hex of `1 ‖ start (i64
/// big-endian) ‖ check (u32 big-endian) ‖ key (UTF-8)`. It is not a secret: the check
/// catches mistakes, not attackers, and a forged cursor can only name a position.
mod cursor {
    use reckon_core::{EventTime, Key};

    const VERSION: u8 = 1;

    /// What a cursor is bound to.
    pub(crate) struct Query<'a> {
        pub pipeline: &'a str,
        pub key: Option<&'a Key>,
        pub from: EventTime,
        pub to: EventTime,
        pub as_of: Option<i64>,
    }

    fn check(q: &Query<'_>, start: i64, key: &str) -> u32 {
        // FNV-1a (64-bit), folded to 32 bits.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            // A separator, so that ("ab", "c") and ("a", "bc") differ.
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        eat(q.pipeline.as_bytes());
        eat(q.key.map_or(&[][..], |k| k.as_str().as_bytes()));
        eat(&[u8::from(q.key.is_some())]);
        eat(&q.from.0.to_be_bytes());
        eat(&q.to.0.to_be_bytes());
        eat(&q.as_of.map_or([0; 9], |t| {
            let mut b = [1; 9];
            b[1..].copy_from_slice(&t.to_be_bytes());
            b
        }));
        eat(&start.to_be_bytes());
        eat(key.as_bytes());
        (h ^ (h >> 32)) as u32
    }

    /// The cursor resuming `q` after the window `(key, start)`.
    pub(crate) fn encode(q: &Query<'_>, key: &Key, start: EventTime) -> String {
        let mut bytes = vec![VERSION];
        bytes.extend_from_slice(&start.0.to_be_bytes());
        bytes.extend_from_slice(&check(q, start.0, key.as_str()).to_be_bytes());
        bytes.extend_from_slice(key.as_str().as_bytes());
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        out
    }

    /// The position `(key, start)` a cursor of `q` names, or why it is not one.
    pub(crate) fn decode(q: &Query<'_>, text: &str) -> Result<(Key, EventTime), &'static str> {
        const BAD: &str =
            "not a cursor of this server (pass the `next` value of an answer unchanged)";
        if !text.len().is_multiple_of(2) || !text.is_ascii() {
            return Err(BAD);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = text
            .as_bytes()
            .chunks_exact(2)
            .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or(BAD)?;
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err(BAD);
        };
        let (start, rest) = rest.split_first_chunk::<8>().ok_or(BAD)?;
        let (sum, key) = rest.split_first_chunk::<4>().ok_or(BAD)?;
        let start = i64::from_be_bytes(*start);
        let key = std::str::from_utf8(key).map_err(|_| BAD)?;
        if check(q, start, key) != u32::from_be_bytes(*sum) {
            return Err(
                "does not belong to this query (it was changed, or comes from a query with other `key`, `from`, `to` or `as_of`)",
            );
        }
        let key = Key::parse(key).map_err(|_| BAD)?;
        if q.key.is_some_and(|k| *k != key) {
            return Err(BAD);
        }
        Ok((key, EventTime(start)))
    }
}

/// A `Link: <…>; rel="next"` header value for `uri` resumed at `next`.
fn next_link(uri: &axum::http::Uri, next: &str) -> Option<axum::http::HeaderValue> {
    let mut parts: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
        .collect();
    let c = format!("cursor={next}");
    parts.push(&c);
    axum::http::HeaderValue::from_str(&format!(
        "<{}?{}>; rel=\"next\"",
        uri.path(),
        parts.join("&")
    ))
    .ok()
}

/// Parameters of `GET /v1/pipelines/{p}/windows`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowsQuery {
    key: Option<String>,
    from: Option<String>,
    to: Option<String>,
    as_of: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

/// `GET /v1/pipelines/{p}/windows?key=&from=&to=&as_of=&limit=&cursor=`: the latest
/// version of each window starting in `[from, to)` (or, with `as_of`, the version that
/// was latest at that processing time), one bounded page at a time: at most `limit`
/// (capped by `[server] max_query_limit`) windows in (key, start) order; `next` (JSON)
/// or the `X-Reckon-Next-Cursor` header (CSV) is the cursor of the next page, absent
/// at the end.
pub(crate) async fn windows(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    q: QueryResult<WindowsQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    let (local, pipeline) = (pipeline.clone(), state.resolve_pipeline(&who, &pipeline)?);
    let key = q.key.as_deref().map(parse_key).transpose()?;
    let (from, to) = time_range(q.from.as_deref(), q.to.as_deref())?;
    let as_of = q
        .as_of
        .as_deref()
        .map(|v| parse_time_param("as_of", v).map(ProcessingTime))
        .transpose()?;
    let limit = effective_limit(&state, q.limit)?;
    let bound = cursor::Query {
        pipeline: &pipeline,
        key: key.as_ref(),
        from,
        to,
        as_of: as_of.map(|t| t.0),
    };
    let after = q
        .cursor
        .as_deref()
        .map(|c| cursor::decode(&bound, c))
        .transpose()
        .map_err(|why| ApiError::bad_request(format!("`cursor`: {why}")))?;
    let store = state.store().clone();
    let p = pipeline.clone();
    let k = key.clone();
    let (rows, more) = tokio::task::spawn_blocking(move || {
        let after = after.as_ref().map(|(k, s)| (k, *s));
        store.windows_page(&p, k.as_ref(), from, to, as_of, after, limit)
    })
    .await
    .map_err(|e| ApiError::internal(format!("query task failed: {e}")))??;
    // Present exactly when more windows follow: truncation is always visible.
    let next = match rows.last() {
        Some(last) if more => Some(cursor::encode(&bound, &last.key, last.window.start)),
        _ => None,
    };
    if wants_csv(&headers) {
        let r: Vec<_> = rows.iter().map(|e| (None, e)).collect();
        let mut resp = emissions_csv(&r)
            .map(csv_response)
            .map_err(ApiError::internal)?;
        if let Some(n) = &next {
            if let Ok(v) = axum::http::HeaderValue::from_str(n) {
                resp.headers_mut().insert(NEXT_CURSOR_HEADER, v);
            }
            if let Some(link) = next_link(&uri, n) {
                resp.headers_mut().insert(header::LINK, link);
            }
        }
        return Ok(resp);
    }
    Ok(axum::Json(json!({
        "pipeline": local,
        "as_of": q.as_of,
        "limit": limit,
        "truncated": next.is_some(),
        "next": next,
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
    limit: Option<u64>,
    cursor: Option<String>,
}

/// `GET /v1/pipelines/{p}/history?key=&start=&limit=&cursor=`: every version of one
/// window, oldest first, at most `limit` (capped by `max_query_limit`) per page; `next`
/// (JSON) or `X-Reckon-Next-Cursor` (CSV) resumes.
pub(crate) async fn history(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    q: QueryResult<HistoryQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    let (local, pipeline) = (pipeline.clone(), state.resolve_pipeline(&who, &pipeline)?);
    let key = parse_key(q.key.as_deref().unwrap_or_default())?;
    let start = q.start.as_deref().ok_or_else(|| {
        ApiError::bad_request("`start` is required: the window's start time (RFC 3339)")
    })?;
    let start = EventTime(parse_time_param("start", start)?);
    let limit = effective_limit(&state, q.limit)?;
    // The cursor is the last version of the previous page.
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.strip_prefix("v")
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "`cursor`: not a history cursor (pass the `next` value of an answer unchanged)",
                    )
                })
        })
        .transpose()?;
    let (versions, more) = state
        .store()
        .history_page(&pipeline, &key, start, after, limit)?;
    let next = match versions.last() {
        Some(last) if more => Some(format!("v{}", last.version.0)),
        _ => None,
    };
    if wants_csv(&headers) {
        let r: Vec<_> = versions.iter().map(|e| (None, e)).collect();
        let mut resp = emissions_csv(&r)
            .map(csv_response)
            .map_err(ApiError::internal)?;
        if let Some(n) = next
            .as_deref()
            .and_then(|n| axum::http::HeaderValue::from_str(n).ok())
        {
            resp.headers_mut().insert(NEXT_CURSOR_HEADER, n);
        }
        return Ok(resp);
    }
    Ok(axum::Json(json!({
        "pipeline": local,
        "key": key.as_str(),
        "start": rfc3339(start.0),
        "versions": versions.iter().map(|e| emission_json(e, None)).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response())
}

/// `GET /v1/pipelines`: the pipelines and reconciliations, their streams and
/// watermarks.
pub(crate) async fn pipelines(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
) -> Response {
    let watermark = |name: &str| {
        state
            .metrics()
            .gauge("reckon_watermark_seconds", &[("pipeline", name)])
            .map(|s| rfc3339((s * 1e9) as i64))
    };
    let config = state.config();
    let list: Vec<Json> = config
        .operators()
        .unwrap_or_default()
        .iter()
        .filter(|op| {
            who.local(op.name())
                .is_some_and(|l| who.may(crate::auth::Access::Read, l))
        })
        .map(|op| {
            let mut o = serde_json::Map::new();
            o.insert(
                "name".into(),
                json!(who.local(op.name()).unwrap_or_default()),
            );
            o.insert("kind".into(), json!(op.kind()));
            for (name, detail) in op.details() {
                let v = match detail {
                    reckon_runtime::Detail::Name(n) => json!(who.local(&n).unwrap_or_default()),
                    reckon_runtime::Detail::Span(s) => json!(span_secs(s)),
                    reckon_runtime::Detail::Text(t) => json!(t),
                };
                o.insert(name.into(), v);
            }
            o.insert("watermark".into(), json!(watermark(op.name())));
            Json::Object(o)
        })
        .collect();
    axum::Json(json!({ "pipelines": list, "last_change": state.store().last_change() }))
        .into_response()
}

/// A span as seconds (JSON number).
fn span_secs(s: reckon_core::Span) -> f64 {
    s.0 as f64 / 1e9
}

/// Parameters of `GET /v1/webhooks/{name}/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitQuery {
    limit: Option<usize>,
}

/// Parameters of `GET /v1/streams/{s}/dead_letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLettersQuery {
    limit: Option<u64>,
    cursor: Option<String>,
}

/// `GET /v1/streams/{s}/dead_letters?limit=&cursor=`: the newest dead letters (at most
/// `limit`, default 1,000, capped by `max_query_limit`), oldest first; `next` is the
/// cursor of the page of older ones, absent when there are none.
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
    Path(stream): Path<String>,
    q: QueryResult<DeadLettersQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    let stored = state
        .resolve_stream(&who, &stream, crate::auth::Access::Read)?
        .name
        .clone();
    let limit = effective_limit(&state, Some(q.limit.unwrap_or(1_000)))?;
    // The cursor is the number of the oldest dead letter of the previous page.
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.strip_prefix("d")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "`cursor`: not a dead-letter cursor (pass the `next` value of an answer unchanged)",
                    )
                })
        })
        .transpose()?;
    let store = state.store().clone();
    let s = stored;
    let (page, more, total) = tokio::task::spawn_blocking(move || {
        let (page, more) = store.dead_letters_page(&s, before, limit)?;
        Ok::<_, reckon_store::Error>((page, more, store.dead_letter_count(&s)?))
    })
    .await
    .map_err(|e| ApiError::internal(format!("query task failed: {e}")))??;
    let next = match page.first() {
        Some((n, _)) if more => Some(format!("d{n}")),
        _ => None,
    };
    let rows: Vec<Json> = page
        .iter()
        .map(|(_, d)| {
            let fields: serde_json::Map<String, Json> = d
                .event
                .fields
                .iter()
                .map(|(n, v)| (n.to_string(), value_json(v)))
                .collect();
            json!({
                "pipeline": crate::auth::local_name(&d.pipeline),
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
    Ok(axum::Json(json!({
        "stream": stream,
        "total": total,
        "dead_letters": rows,
        "next": next,
    }))
    .into_response())
}

/// `GET /v1/webhooks`: each webhook and its position in the change feed.
pub(crate) async fn webhooks(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
) -> Result<Response, ApiError> {
    let mut list = Vec::new();
    for w in &state.config().webhooks {
        let Some(local) = who
            .local(&w.name)
            .filter(|l| who.may(crate::auth::Access::Read, l))
        else {
            continue;
        };
        let s = state.store().sink_state(&w.name)?;
        let pipelines: Vec<&str> = w.pipelines.iter().filter_map(|p| who.local(p)).collect();
        list.push(json!({
            "name": local,
            "url": w.url,
            "command": w.command.first(),
            "pipelines": pipelines,
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
    Extension(who): Extension<crate::auth::Principal>,
    Path(name): Path<String>,
    q: QueryResult<LimitQuery>,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    let stored = who.resolve(
        "webhook",
        &name,
        state.config().webhooks.iter().map(|w| w.name.as_str()),
        crate::auth::Access::Read,
    )?;
    let rows = state
        .store()
        .deliveries(
            &stored,
            q.limit
                .unwrap_or(100)
                .min(state.config().server.max_query_limit.max(1)),
        )?
        .into_iter()
        .map(|(id, bytes)| {
            serde_json::from_slice::<Json>(&bytes)
                .unwrap_or_else(|e| json!({ "id": id, "error": format!("unreadable record: {e}") }))
        })
        .collect::<Vec<_>>();
    Ok(axum::Json(json!({ "webhook": name, "deliveries": rows })).into_response())
}

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
) -> Result<Response, ApiError> {
    let m = state.metrics();
    for f in state.limits().snapshot() {
        let tenant = f.tenant.as_str();
        m.set(
            "reckon_tenant_series",
            &[("tenant", tenant)],
            f.series as f64,
        );
        let stored = f.stored_bytes as f64;
        m.set("reckon_tenant_stored_bytes", &[("tenant", tenant)], stored);
        for (quota, n) in f.throttled {
            m.set_counter(
                "reckon_tenant_throttled_total",
                &[("tenant", tenant), ("quota", quota)],
                n,
            );
        }
    }
    let text = if who.is_operator() {
        state.metrics().render()
    } else {
        // A tenant's token sees its own series only, named as the tenant names them.
        let Some(tenant) = who.tenant() else {
            return Err(who.forbidden("read metrics"));
        };
        if !who.reads_all() {
            return Err(who.forbidden("read metrics (a `read` or `admin` scope can)"));
        }
        state.metrics().render_tenant(tenant)
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /healthz`: 200 while the store and the writer work, 503 with the cause otherwise.
pub(crate) async fn healthz(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
) -> Response {
    let problem = if state.store().is_poisoned() {
        Some("the store refused a write (poisoned); restart reckon".to_string())
    } else {
        state.writer().failure()
    };
    match problem {
        // The change count says how busy every tenant is: operators only.
        None if who.is_operator() => {
            axum::Json(json!({ "status": "ok", "last_change": state.store().last_change() }))
                .into_response()
        }
        None => axum::Json(json!({ "status": "ok" })).into_response(),
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
