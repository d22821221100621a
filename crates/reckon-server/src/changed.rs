//! reckon's own results as a source of backfills (seed 002, `docs/backfill.md`):
//! `GET /v1/pipelines/{p}/changed?since=C&by=1d` answers which partitions (windows
//! grouped by the start of a `by`-sized, UTC-aligned span: a day by default) of
//! pipeline `p` were corrected after change `C`, and the change number to pass as
//! `since` next time. A downstream batch job re-runs exactly the days reckon corrected.
//!
//! By default only corrections count (late and recomputed versions, and any version
//! after a window's first); `all=true` counts every new result too. The scan reads at
//! most `MAX_CHANGES` changes per call: `more` says the client should ask again from
//! `lastChange`.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use reckon_core::EmissionKind;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Changes one call reads at most.
const MAX_CHANGES: usize = 1_000_000;

/// Changes read per page of the scan.
const PAGE: usize = 10_000;

/// `?since=&by=&all=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangedQuery {
    /// The change number already handled (default 0: everything).
    #[serde(default)]
    since: u64,
    /// The partition size (default `1d`).
    #[serde(default)]
    by: Option<String>,
    /// Count every new result, not only corrections.
    #[serde(default)]
    all: bool,
}

type ChangedParams = Result<Query<ChangedQuery>, axum::extract::rejection::QueryRejection>;

/// A partition's corrected windows `(key, start)`, its changes and its newest change.
type Partition = (std::collections::BTreeSet<(String, i64)>, u64, u64);

/// Whether an emission is a correction of something a batch job may have read.
fn is_correction(kind: EmissionKind, version: u32) -> bool {
    match kind {
        EmissionKind::Late | EmissionKind::Recomputed | EmissionKind::Found => true,
        EmissionKind::Early => false,
        _ => version > 1,
    }
}

/// A partition's label: its start as a date when partitions are whole days, else as an
/// RFC 3339 time.
fn label(start: i64, by: i64) -> String {
    let t = crate::wire::rfc3339(start);
    if by % 86_400_000_000_000 == 0 {
        t.get(..10).unwrap_or(&t).to_string()
    } else {
        t
    }
}

/// `GET /v1/pipelines/{p}/changed`.
pub(crate) async fn changed(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(pipeline): Path<String>,
    q: ChangedParams,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let stored = state.resolve_pipeline(&who, &pipeline)?;
    let by = match &q.by {
        Some(b) => {
            reckon_runtime::config::parse_duration(b)
                .map_err(|e| ApiError::bad_request(format!("`by`: {e}")))?
                .0
        }
        None => 86_400_000_000_000,
    };
    if by <= 0 {
        return Err(ApiError::bad_request("`by` must be a positive duration"));
    }
    let store = state.store().clone();
    let (since, all) = (q.since, q.all);
    let name = stored.clone();
    let scan = tokio::task::spawn_blocking(move || {
        let mut parts: BTreeMap<i64, Partition> = BTreeMap::new();
        let (mut cursor, mut read) = (since, 0usize);
        let last = store.last_change();
        while cursor < last && read < MAX_CHANGES {
            let page = store.changes_page(cursor, Some(&name), PAGE)?;
            read += page.changes.len();
            for (n, e) in &page.changes {
                if !all && !is_correction(e.kind, e.version.0) {
                    continue;
                }
                let start = e.window.start.0.div_euclid(by) * by;
                let p = parts.entry(start).or_default();
                p.0.insert((e.key.as_str().to_string(), e.window.start.0));
                p.1 += 1;
                p.2 = p.2.max(*n);
            }
            if page.scanned_to <= cursor {
                break;
            }
            cursor = page.scanned_to;
        }
        Ok::<_, reckon_store::Error>((parts, cursor, last))
    })
    .await
    .map_err(|e| ApiError::internal(format!("scan task failed: {e}")))??;
    let (parts, cursor, last) = scan;
    let details: Vec<_> = parts
        .iter()
        .map(|(start, (windows, changes, newest))| {
            json!({
                "partition": label(*start, by),
                "start": crate::wire::rfc3339(*start),
                "end": crate::wire::rfc3339(start.saturating_add(by)),
                "windows": windows.len(),
                "changes": changes,
                "lastChange": newest,
            })
        })
        .collect();
    Ok(Json(json!({
        "pipeline": who.local(&stored).unwrap_or(&stored),
        "since": since,
        "by": q.by.as_deref().unwrap_or("1d"),
        "partitions": parts.keys().map(|s| label(*s, by)).collect::<Vec<_>>(),
        "lastChange": cursor,
        "more": cursor < last,
        "details": details,
    }))
    .into_response())
}
