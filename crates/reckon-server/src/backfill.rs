//! Delta backfill planning (seed 002, `docs/backfill.md`): where plans, cursors and
//! runs live in a store (shared with `reckon backfill`), and the `[[backfill]]` tasks
//! of `reckon serve`, which plan from a watched table's log every `interval`.
//!
//! Catalog keys: `backfill/<name>/cursor`, `backfill/<name>/plan/<version>.<since>`
//! (`since`: the cursor planned after, or `start`) and
//! `backfill/<name>/run/<version>/<partition>`.

use crate::AppState;
use reckon_delta::plan::OnGap;
use reckon_delta::{DeltaLog, Plan, PlanOptions};
use reckon_runtime::BackfillConfig;
use reckon_store::{CommitBatch, Store};
use serde_json::{Value, json};
use std::path::Path;

/// The catalog key of `what` of backfill `name`.
pub fn key(name: &str, what: &str) -> Vec<u8> {
    format!("backfill/{name}/{what}").into_bytes()
}

/// The stored cursor of `name` (the last version planned), if it was planned before.
pub fn cursor(store: &Store, name: &str) -> reckon_store::Result<Option<u64>> {
    let k = key(name, "cursor");
    Ok(store
        .catalog(&k)?
        .into_iter()
        .find(|(key, _)| *key == k)
        .and_then(|(_, v)| serde_json::from_slice::<Value>(&v).ok())
        .and_then(|c| c["version"].as_u64()))
}

/// Stores `plan` (as `shown`) and moves the cursor of `name` to its last version, in
/// **one** durable commit: a crash leaves both or neither.
pub fn commit_plan(
    store: &Store,
    name: &str,
    table: &Path,
    plan: &Plan,
    shown: &Value,
) -> std::result::Result<(), String> {
    let Some(version) = plan.last_processed_version else {
        return Err("the table has no version yet".into());
    };
    let after = plan
        .since_version
        .map_or("start".to_string(), |s| format!("{s:020}"));
    let id = format!("{version:020}.{after}");
    let cursor = json!({
        "version": version,
        "plan": id,
        "table": table,
        "planned_at": jiff::Timestamp::now().to_string(),
    });
    let enc = |v: &Value| serde_json::to_vec(v).map_err(|e| e.to_string());
    store
        .commit(CommitBatch {
            catalog: vec![
                (key(name, &format!("plan/{id}")), Some(enc(shown)?)),
                (key(name, "cursor"), Some(enc(&cursor)?)),
            ],
            ..CommitBatch::default()
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so a reader never
/// sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// One round of a `[[backfill]]`: plans after the stored cursor and, when the log has
/// new commits, stores the plan with the moved cursor and writes the seed's file.
/// Returns the plan, or why there is none.
pub fn plan_once(store: &Store, b: &BackfillConfig) -> std::result::Result<Option<Plan>, String> {
    let log = DeltaLog::open(&b.table).map_err(|e| e.to_string())?;
    let since = cursor(store, &b.name).map_err(|e| e.to_string())?;
    let plan = reckon_delta::plan(
        &log,
        &PlanOptions {
            since_version: since,
            partition_column: b.partition_column.clone(),
            grace_ns: b.grace.map_or(0, |g| g.0.0),
            on_gap: if b.on_gap.as_deref() == Some("all") {
                OnGap::AllPartitions
            } else {
                OnGap::Fail
            },
            event_time_column: b.event_time_column.clone(),
        },
    )
    .map_err(|e| e.to_string())?;
    if plan.last_processed_version == since {
        return Ok(None);
    }
    let mut shown = plan.json();
    if let Some(o) = shown.as_object_mut() {
        o.insert("name".into(), json!(b.name));
    }
    commit_plan(store, &b.name, &b.table, &plan, &shown)?;
    if let Some(path) = &b.seed_json {
        let bytes = serde_json::to_vec(&plan.seed_json()).map_err(|e| e.to_string())?;
        write_atomically(path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(Some(plan))
}

/// Starts one task per `[[backfill]]`.
pub(crate) fn start(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    state
        .config()
        .backfills
        .iter()
        .map(|b| tokio::spawn(watch(state.clone(), b.clone())))
        .collect()
}

async fn watch(state: AppState, b: BackfillConfig) {
    let mut stop = state.shutdown();
    let every = b.interval.to_std();
    tracing::info!(backfill = %b.name, table = %b.table.display(), "watching the Delta table's log every {every:?}");
    loop {
        let (store, cfg) = (state.store().clone(), b.clone());
        let round = tokio::task::spawn_blocking(move || plan_once(&store, &cfg)).await;
        let labels = [("backfill", b.name.as_str())];
        match round {
            Ok(Ok(Some(plan))) => {
                state
                    .metrics()
                    .inc("reckon_backfill_plans_total", &labels, 1);
                state.metrics().inc(
                    "reckon_backfill_partitions_total",
                    &labels,
                    plan.partitions.len() as u64,
                );
                tracing::info!(
                    backfill = %b.name,
                    version = ?plan.last_processed_version,
                    partitions = ?plan.partitions,
                    "backfill planned: {} late partition(s)",
                    plan.partitions.len()
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                state
                    .metrics()
                    .inc("reckon_backfill_errors_total", &labels, 1);
                tracing::warn!(backfill = %b.name, "planning failed, the cursor stays: {e}");
            }
            Err(e) => tracing::warn!(backfill = %b.name, "planning task failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// `GET /v1/backfills`: every `[[backfill]]` with its cursor and newest plan.
pub(crate) async fn list(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Extension(who): axum::extract::Extension<crate::auth::Principal>,
) -> std::result::Result<axum::response::Response, crate::ApiError> {
    use axum::response::IntoResponse;
    if !(who.is_operator() && who.reads_all()) {
        return Err(who.forbidden("read the backfills (an operator's token can)"));
    }
    let mut out = Vec::new();
    for b in &state.config().backfills {
        let plans = state.store().catalog(&key(&b.name, "plan/"))?;
        let newest = plans
            .last()
            .and_then(|(_, v)| serde_json::from_slice::<Value>(v).ok());
        out.push(json!({
            "name": b.name,
            "table": b.table,
            "cursor": cursor(state.store(), &b.name)?,
            "partitions": newest.as_ref().map(|p| p["partitions"].clone()),
            "plans": plans.len(),
        }));
    }
    Ok(axum::Json(json!({ "backfills": out })).into_response())
}
