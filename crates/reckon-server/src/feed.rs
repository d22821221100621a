//! The change feed: `GET /v1/pipelines/{p}/changes`.
//!
//! Every stored version of every window of the pipeline, in the order it became
//! durable, each with its change number (the store's `changes` keyspace). As
//! server-sent events (`Accept: text/event-stream`), each emission is an event of type
//! `emission` whose `id` is its change number: a client that reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does so by itself) or `?since=<id>`
//! continues exactly after it — nothing lost, nothing repeated. Without `since`, the
//! stream starts at the newest change (only what happens from now on); `since=0` gives
//! the whole history first. Other clients get one JSON page:
//! `{"changes": [...], "next": <cursor>}`.
//!
//! `?key=i=42` keeps only that series' emissions (a dashboard or alert that watches one
//! location need not read, nor the server serialize, every other key's). Change numbers
//! stay those of the whole feed, so `Last-Event-ID` and `since` work the same.
//!
//! An SSE stream is a subscription to the change-feed follower (`follow.rs`): it
//! catches up from the store from its cursor, then takes the changes the follower reads
//! once per commit for every feed and webhook.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::emission_json;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

/// Changes read from the store at a time.
const PAGE: usize = 1_000;

/// Parameters of the change feed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangesQuery {
    since: Option<u64>,
    limit: Option<u64>,
    key: Option<String>,
}

/// Decrements the open-feeds gauge when a feed ends.
struct Open(AppState);

impl Open {
    fn new(state: AppState) -> Open {
        state.metrics().add("reckon_change_feed_clients", &[], 1.0);
        Open(state)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .metrics()
            .add("reckon_change_feed_clients", &[], -1.0);
    }
}

struct Feed {
    _open: Open,
    sub: crate::follow::Subscription,
    /// The page being sent and the index of its next change.
    page: Option<(crate::follow::Page, usize)>,
    /// Only this series' emissions, when set.
    key: Option<reckon_core::Key>,
    /// An unclamped running total: each emission also says the range correction it is.
    ranges: Option<Ranges>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

async fn load(
    state: &AppState,
    pipeline: &Arc<str>,
    after: u64,
    limit: usize,
) -> Result<reckon_store::ChangesPage, String> {
    let store = state.store().clone();
    let p = pipeline.clone();
    tokio::task::spawn_blocking(move || store.changes_page(after, Some(&p), limit))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            if let Some((page, i)) = &mut self.page {
                if let Some((n, e)) = page.changes().get(*i) {
                    *i += 1;
                    if self.key.as_ref().is_some_and(|k| *k != e.key) {
                        continue;
                    }
                    let mut json = emission_json(e, Some(*n));
                    if let Some(r) = &self.ranges {
                        r.annotate(e, &mut json);
                    }
                    let data = json.to_string();
                    return Some(
                        Event::default()
                            .id(n.to_string())
                            .event("emission")
                            .data(data),
                    );
                }
                self.page = None;
            }
            if *self.shutdown.borrow() {
                return None;
            }
            let page = tokio::select! {
                p = self.sub.next_page() => p,
                _ = self.shutdown.wait_for(|s| *s) => return None,
            };
            match page {
                Ok(Some(page)) => self.page = Some((page, 0)),
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(
                        Event::default().event("error").data(
                            json!({ "error": format!("reading the change feed failed: {e}") })
                                .to_string(),
                        ),
                    );
                }
            }
        }
    }
}

/// What a running total's change records need to say which range of totals they
/// move: the store (for the version each replaces) and the spec (for the next reset).
struct Ranges {
    store: reckon_store::Store,
    spec: reckon_core::operator::RunningSpec,
}

impl Ranges {
    /// For an unclamped running total of sums (a clamped one moves later totals by
    /// different amounts: its buckets carry `total` instead; a gauge's value is a
    /// reading, not a sum).
    fn of(state: &AppState, pipeline: &str) -> Option<Ranges> {
        let spec = state.config().running_total(pipeline)?.spec().ok()?;
        (!spec.clamp && !spec.gauge).then(|| Ranges {
            store: state.store().clone(),
            spec,
        })
    }

    /// Adds `"range": {from, until, delta, replaces}` to an emission's JSON (one point
    /// read of the version it replaced).
    fn annotate(&self, e: &reckon_core::Emission, json: &mut serde_json::Value) {
        let previous = match self.store.replaced_by(e) {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(
                    pipeline = &*e.pipeline,
                    "cannot read the version a change replaced: {err}"
                );
                return;
            }
        };
        let until = self
            .spec
            .reset_after(e.window.start)
            .ok()
            .flatten()
            .map(|t| t.0);
        json["range"] = crate::wire::range_json(e, previous.as_ref(), until);
    }
}

/// `GET /v1/pipelines/{p}/changes?since=&limit=`.
pub(crate) async fn changes(
    State(state): State<AppState>,
    Extension(who): Extension<crate::auth::Principal>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    q: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let key = q.key.as_deref().map(crate::query::parse_key).transpose()?;
    let (local, pipeline) = (pipeline.clone(), state.resolve_pipeline(&who, &pipeline)?);
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Last-Event-ID `{}` is not a change number",
                        String::from_utf8_lossy(v.as_bytes())
                    ))
                })?,
        ),
    };
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    // A cursor past the newest change cannot come from this store (it was replaced, or
    // the number was made up): waiting for it would hide every change from now on.
    let last = state.store().last_change();
    let asked = match (last_event_id, q.since) {
        (Some(n), _) => Some(("Last-Event-ID", n)),
        (None, Some(n)) => Some(("since", n)),
        (None, None) => None,
    };
    if let Some((what, n)) = asked
        && n > last
    {
        return Err(ApiError::bad_request(format!(
            "{what}={n} is past the last change {last} of pipeline `{local}` (was the store \
             replaced?); resume from since={last}, or since=0 for the whole history"
        )));
    }
    let pipeline: Arc<str> = Arc::from(pipeline);
    if !sse {
        let since = last_event_id.or(q.since).unwrap_or(0);
        let limit = crate::query::effective_limit(&state, q.limit.or(Some(PAGE as u64)))?;
        let page = load(&state, &pipeline, since, limit)
            .await
            .map_err(ApiError::internal)?;
        let ranges = Ranges::of(&state, &pipeline);
        return Ok(axum::Json(json!({
            "pipeline": local,
            "changes": page
                .changes
                .iter()
                .filter(|(_, e)| key.as_ref().is_none_or(|k| *k == e.key))
                .map(|(n, e)| {
                    let mut json = emission_json(e, Some(*n));
                    if let Some(r) = &ranges {
                        r.annotate(e, &mut json);
                    }
                    json
                })
                .collect::<Vec<_>>(),
            "next": page.scanned_to,
            "last_change": state.store().last_change(),
        }))
        .into_response());
    }
    let cursor = last_event_id
        .or(q.since)
        .unwrap_or_else(|| state.store().last_change());
    let ranges = Ranges::of(&state, &pipeline);
    let feed = Feed {
        sub: state.follower().subscribe(cursor).only(pipeline),
        shutdown: state.shutdown(),
        _open: Open::new(state),
        page: None,
        ranges,
        key,
        done: false,
    };
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        f.next().await.map(|e| (Ok::<_, Infallible>(e), f))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
