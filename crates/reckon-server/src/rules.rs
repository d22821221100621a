//! Alert timelines over stored history (`reckon rules backfill`, `docs/alerts.md`).
//!
//! - `GET /v1/pipelines/{rule}/backfill?from=&to=`: the timeline a rule that runs gives
//!   when evaluated at once over its input's stored windows that start in `[from, to)`.
//! - `POST /v1/rules/backfill?from=&to=` with an `[[alert]]` as JSON: the same for a rule
//!   that does not run ("what would this rule have fired last month?").
//!
//! The rule is built fresh (the engine's [`reckon_core::operator::AlertRule`], from the
//! same definition), fed the newest version of every input window in the range in the
//! order they were emitted, with the input's watermark now, and its episodes are
//! answered; nothing is stored and nothing is sent. Episodes that the evaluation
//! retracted again are left out: the answer is the timeline.

use crate::auth::{Access, Principal, json_body};
use crate::query::time_range;
use crate::wire::{emission_json, emissions_csv, rfc3339};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reckon_core::{Emission, EmissionKind, EventTime, Key, StepReport, Watermark};
use reckon_runtime::{AlertConfig, Config, OperatorConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Most input windows one backfill reads (they are held in memory together).
const MAX_INPUT_WINDOWS: usize = 2_000_000;

/// The name a rule given in a request's body gets when it has none.
const UNNAMED: &str = "backfill";

/// `?from=&to=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Range {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

type RangeQuery = Result<Query<Range>, axum::extract::rejection::QueryRejection>;

fn range(q: RangeQuery) -> Result<(EventTime, EventTime), ApiError> {
    let Query(r) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    time_range(r.from.as_deref(), r.to.as_deref())
}

/// `GET /v1/pipelines/{rule}/backfill`: a running rule's timeline over stored history.
pub(crate) async fn backfill_rule(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(rule): Path<String>,
    headers: HeaderMap,
    q: RangeQuery,
) -> Result<Response, ApiError> {
    let (from, to) = range(q)?;
    let stored = state.resolve_pipeline(&who, &rule)?;
    let config = state.config();
    let Some(cfg) = config.alert(&stored).cloned() else {
        let kind = config.operator(&stored).map_or("pipeline", |o| o.kind());
        return Err(ApiError::bad_request(format!(
            "`{rule}` is a {kind}, not an alert rule: only rules have a timeline to backfill"
        )));
    };
    answer(&state, &who, config, cfg, from, to, &headers).await
}

/// `POST /v1/rules/backfill`: the timeline of the `[[alert]]` in the body (JSON) over
/// stored history, without running it.
pub(crate) async fn backfill_definition(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    q: RangeQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (from, to) = range(q)?;
    let mut body: Value = json_body(
        &body,
        r#"{"input": "alarms_5m", "condition": "above >= 10", "for": 2}"#,
    )?;
    let Some(o) = body.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be an [[alert]] as a JSON object, such as {\"input\": \"alarms_5m\", \"condition\": \"above >= 10\"}",
        ));
    };
    o.entry("name").or_insert_with(|| json!(UNNAMED));
    match who.tenant() {
        Some(t) => {
            o.insert("tenant".into(), json!(t));
        }
        None => {
            o.remove("tenant");
        }
    }
    let invalid = |m: String| {
        let m = m.strip_prefix("configuration: ").unwrap_or(&m).to_string();
        let m = match who.tenant() {
            Some(t) => m.replace(&format!("{t}/"), ""),
            None => m,
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)
    };
    let rule: AlertConfig =
        serde_json::from_value(body).map_err(|e| invalid(format!("alert: {e}")))?;
    let name = who.stored(&rule.name);
    // Checked as a definition would be, against what runs (its input must exist).
    let config = state
        .config()
        .extended(Config {
            alerts: vec![rule],
            ..Config::default()
        })
        .map_err(|e| invalid(e.to_string()))?;
    let Some(cfg) = config.alert(&name).cloned() else {
        return Err(ApiError::internal("the rule vanished"));
    };
    answer(
        &state,
        &who,
        std::sync::Arc::new(config),
        cfg,
        from,
        to,
        &headers,
    )
    .await
}

/// Evaluates `cfg` over its input's stored windows in `[from, to)` and answers the
/// episodes (JSON, or CSV with `Accept: text/csv`).
async fn answer(
    state: &AppState,
    who: &Principal,
    config: std::sync::Arc<Config>,
    cfg: AlertConfig,
    from: EventTime,
    to: EventTime,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let local = |n: &str| who.local(n).unwrap_or(n).to_string();
    if !who.may(Access::Read, &local(&cfg.input)) {
        return Err(who.forbidden(&format!("read `{}`", local(&cfg.input))));
    }
    let input = cfg.input.clone();
    let watermark = state
        .writer()
        .read(move |rt| rt.watermark(&input))
        .await
        .map_err(crate::ingest::submit_error)?
        .unwrap_or(Watermark::MIN);
    let store = state.store().clone();
    let rule = cfg.clone();
    let (episodes, read) =
        tokio::task::spawn_blocking(move || evaluate(&config, &rule, &store, from, to, watermark))
            .await
            .map_err(|e| ApiError::internal(format!("backfill task failed: {e}")))??;
    let shown: Vec<Emission> = episodes
        .into_iter()
        .map(|mut e| {
            e.pipeline = std::sync::Arc::from(local(&e.pipeline).as_str());
            e
        })
        .collect();
    tracing::info!(
        rule = %cfg.name,
        input = %cfg.input,
        input_windows = read,
        episodes = shown.len(),
        "alert rule backfilled over stored history"
    );
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        let rows: Vec<_> = shown.iter().map(|e| (None, e)).collect();
        let text = emissions_csv(&rows).map_err(ApiError::internal)?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    Ok(Json(json!({
        "rule": local(&cfg.name),
        "input": local(&cfg.input),
        "condition": cfg.condition,
        "from": (from != EventTime::MIN).then(|| rfc3339(from.0)),
        "to": (to != EventTime::MAX).then(|| rfc3339(to.0)),
        "watermark": rfc3339(watermark.0.0),
        "input_windows": read,
        "episodes": shown.iter().map(|e| emission_json(e, None)).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The episodes of `rule` over the newest version of every window of its input that
/// starts in `[from, to)`, given the input's `watermark`; and how many windows it read.
fn evaluate(
    config: &Config,
    rule: &AlertConfig,
    store: &reckon_store::Store,
    from: EventTime,
    to: EventTime,
    watermark: Watermark,
) -> Result<(Vec<Emission>, usize), ApiError> {
    let mut op = OperatorConfig::Alert(rule)
        .build(
            config,
            None,
            [0; reckon_core::reconcile::ID_SECRET_LEN],
            reckon_runtime::runtime::MAX_KEY_BYTES,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut windows = store.windows(&rule.input, None, from, to, None)?;
    if windows.len() > MAX_INPUT_WINDOWS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "`{}` has {} windows in the range, more than the {MAX_INPUT_WINDOWS} one backfill reads: narrow `from` and `to`",
                rule.input,
                windows.len()
            ),
        ));
    }
    windows.sort_by(|a, b| {
        (a.emitted_at, &a.key, a.window.start).cmp(&(b.emitted_at, &b.key, b.window.start))
    });
    let mut out = Vec::new();
    let mut report = StepReport::default();
    op.ingest_results(0, &windows, watermark, &mut out, &mut report)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut latest: BTreeMap<(Key, EventTime), Emission> = BTreeMap::new();
    for e in out {
        latest.insert((e.key.clone(), e.window.start), e);
    }
    let episodes = latest
        .into_values()
        .filter(|e| e.kind != EmissionKind::Retracted)
        .collect();
    Ok((episodes, windows.len()))
}
