//! `GET /v1/pipelines/{p}/total?key=&at=&known_at=`: a running total's value
//! (`docs/running-totals.md`).
//!
//! Without `known_at` the answer comes from the engine's memory (asked on the writer
//! thread, between two commits): the exact total at `at` (default: now) over every
//! event received so far, late ones included. With `known_at` it comes from the stored
//! bucket versions: what reckon's results said at that processing time, at bucket
//! resolution (the buckets that end at or before `at`, each in the version that was
//! the latest at `known_at`), which is what a dashboard fed by the results showed.

use crate::AppState;
use crate::error::ApiError;
use crate::query::{parse_key, parse_time_param};
use crate::wire::{rfc3339, value_json};
use crate::writer::SubmitError;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use reckon_core::aggregate::SumState;
use reckon_core::operator::RunningTotal;
use reckon_core::{EventTime, Key, ProcessingTime, Value};
use serde::Deserialize;
use serde_json::json;

/// Parameters of the total query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TotalQuery {
    key: Option<String>,
    at: Option<String>,
    known_at: Option<String>,
}

/// Windows read from the store at a time (a known-at sum pages through them).
const PAGE: usize = 10_000;

pub(crate) async fn total(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
    Path(pipeline): Path<String>,
    q: Result<Query<TotalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (local, pipeline) = (pipeline.clone(), state.resolve_pipeline(&who, &pipeline)?);
    let config = state.config();
    let Some(cfg) = config.running_total(&pipeline) else {
        return Err(match config.operator(&pipeline) {
            Some(op) => ApiError::bad_request(format!(
                "`{local}` is a {} pipeline, not a running_total: read its windows at /v1/pipelines/{local}/windows",
                op.kind()
            )),
            None => ApiError::not_found(format!("unknown running total `{local}`")),
        });
    };
    let key = match q.key.as_deref() {
        Some(k) => parse_key(k)?,
        None => {
            return Err(ApiError::bad_request(
                "`key` is required: the series whose total you want (e.g. key=space=lobby)",
            ));
        }
    };
    let at = match q.at.as_deref() {
        Some(v) => EventTime(parse_time_param("at", v)?),
        None => EventTime(state.clock().now().0),
    };
    let known_at = q
        .known_at
        .as_deref()
        .map(|v| parse_time_param("known_at", v).map(ProcessingTime))
        .transpose()?;
    let now = state.clock().now();
    let asked_now = q.at.is_none();
    let mut live = None;
    let value = match known_at {
        None => {
            let (p, k) = (pipeline.clone(), key.clone());
            let (answer, l) = state
                .writer()
                .read(move |rt| {
                    let op = rt.operator(&p);
                    let live = op
                        .filter(|_| asked_now)
                        .and_then(|o| o.as_any().downcast_ref::<RunningTotal>())
                        .and_then(|r| r.live(&k, now));
                    (op.and_then(|o| o.value_at(&k, at)), live)
                })
                .await
                .map_err(|e| match e {
                    SubmitError::Overloaded => ApiError::unavailable(
                        "the writer's queue is full ([server] max_pending_requests); retry after a second",
                        1,
                    ),
                    SubmitError::Stopped(why) | SubmitError::Finished(why) => {
                        ApiError::unavailable(why, 5)
                    }
                })?;
            live = l;
            match answer {
                Some(Ok(v)) => v,
                Some(Err(why)) => return Err(ApiError::bad_request(why)),
                None => {
                    return Err(ApiError::internal(format!(
                        "running total `{pipeline}` is not running"
                    )));
                }
            }
        }
        Some(known) => {
            // The spec (its reset and kind) only for reads from the store; a lookup in
            // memory does not parse it again.
            let spec = cfg.spec().map_err(|e| ApiError::internal(e.to_string()))?;
            let store = state.store().clone();
            let (p, k) = (pipeline.clone(), key.clone());
            let from = spec
                .reset_at_or_before(at)
                .map_err(ApiError::bad_request)?
                .unwrap_or(EventTime::MIN);
            let (clamp, gauge) = (spec.clamp, spec.gauge);
            tokio::task::spawn_blocking(move || {
                known_total(&store, &p, &k, from, at, known, clamp || gauge)
            })
            .await
            .map_err(|e| ApiError::internal(format!("query task failed: {e}")))??
        }
    };
    let mut body = json!({
        "pipeline": local,
        "key": key.as_str(),
        "at": rfc3339(at.0),
        "known_at": known_at.map(|t| rfc3339(t.0)),
        "resolution": if known_at.is_some() { "bucket" } else { "event" },
        "value": value.as_ref().map(value_json),
    });
    // Now (no `at`): the real-time counter beside the reconciled value.
    if let Some(l) = live {
        let difference = l
            .reconciled
            .as_ref()
            .and_then(|r| crate::wire::difference(Some(r), Some(&l.real_time)));
        body["real_time"] = value_json(&l.real_time);
        body["difference"] = difference
            .as_ref()
            .map_or(serde_json::Value::Null, value_json);
        body["corrected_at"] = l
            .corrected_at
            .map_or(serde_json::Value::Null, |t| rfc3339(t.0).into());
    }
    Ok(axum::Json(body).into_response())
}

/// The total at `at` as the stored buckets said at `known`: the buckets of the reset
/// period (from `from`) that end at or before `at`, each in its version latest at
/// `known`; `None` when the key had no stored bucket at or before `at` then. With
/// `last` (clamped totals and gauges) the answer is the last bucket's `total` (or
/// `last` reading) instead of the sum of the deltas.
fn known_total(
    store: &reckon_store::Store,
    pipeline: &str,
    key: &Key,
    from: EventTime,
    at: EventTime,
    known: ProcessingTime,
    last: bool,
) -> Result<Option<Value>, ApiError> {
    let to = EventTime(at.0.saturating_add(1));
    let (mut sum, mut last_total, mut any) = (SumState::default(), None, false);
    let mut after: Option<(Key, EventTime)> = None;
    loop {
        let (rows, more) = store.windows_page(
            pipeline,
            Some(key),
            from,
            to,
            Some(known),
            after.as_ref().map(|(k, s)| (k, *s)),
            PAGE,
        )?;
        for e in &rows {
            if e.window.end > to || e.count == 0 {
                // The bucket `at` is inside (not complete at `at`), or one a mapping
                // row emptied (a retraction: it holds nothing).
                continue;
            }
            any = true;
            if let Some(d) = e.value("delta") {
                sum.add(d);
            }
            last_total = e.value("total").or_else(|| e.value("last")).cloned();
        }
        match rows.last() {
            Some(last) if more => after = Some((last.key.clone(), last.window.start)),
            _ => break,
        }
    }
    if !any {
        // Data before the period (a reset since): the total is zero; none at all: null.
        let (before, _) = store.windows_page(
            pipeline,
            Some(key),
            EventTime::MIN,
            from,
            Some(known),
            None,
            1,
        )?;
        return Ok((!before.is_empty()).then_some(Value::I64(0)));
    }
    Ok(Some(if last {
        last_total.unwrap_or(Value::I64(0))
    } else {
        sum.sum_value().unwrap_or(Value::I64(0))
    }))
}
