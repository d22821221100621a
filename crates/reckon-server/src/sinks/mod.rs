//! Sinks: one task per `[[sink]]`, keeping a system up to date from the change feed
//! (`docs/connectors.md`).
//!
//! Every kind is one [`Sink`]: it connects and writes a batch of changes so that
//! writing the same batch again changes nothing (each row or key takes a window's
//! version only if it is newer than the one it holds). The loop here is the same for
//! all: it follows the change feed from the sink's durable cursor (the store's sink
//! state, as the webhooks do), writes the changes of its pipelines in batches of
//! `batch`, and then has the writer commit the new cursor. A crash between the write
//! and the cursor's commit writes those changes again after the restart, which the
//! version check makes harmless: the effect is exactly once. A sink that is down is
//! retried with backoff while ingest goes on (the follower serves a sink that fell
//! behind from the store).

#[cfg(feature = "kafka")]
mod kafka;
mod nats;
mod postgres;
mod redis;

use crate::AppState;
use crate::connector::{Backoff, pause};
use reckon_core::Emission;
use reckon_runtime::{SinkConfig, SinkKind};
use reckon_store::Delivery;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A system a sink writes. `connect` is called again after any error.
pub(crate) trait Sink: Send {
    /// Connects (and prepares: a table created if missing).
    fn connect(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Writes `changes` (in change order; a window may appear more than once), each
    /// window taking only a version newer than the one it holds.
    fn write(
        &mut self,
        changes: &[&(u64, Emission)],
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// What `GET /v1/sinks` shows of one sink.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkStatus {
    /// Its name.
    pub name: String,
    /// `postgres`, `redis`, `nats` or `kafka`.
    pub kind: &'static str,
    /// `connecting`, `running`, `retrying` (with `error`) or `stopped`.
    pub state: &'static str,
    /// Every change up to this number is written (durable cursor).
    pub cursor: u64,
    /// Changes written since startup (those of its pipelines).
    pub written: u64,
    /// Failed writes or connections since startup.
    pub errors: u64,
    /// The last error, if any.
    pub error: Option<String>,
}

/// Every sink's status, shared between the tasks and `GET /v1/sinks`.
pub type Sinks = crate::connector::Statuses<SinkStatus>;

fn kind_name(k: SinkKind) -> &'static str {
    match k {
        SinkKind::Postgres => "postgres",
        SinkKind::Redis => "redis",
        SinkKind::Nats => "nats",
        SinkKind::Kafka => "kafka",
    }
}

/// The change as a structured-mode CloudEvent, and its id
/// (`{pipeline}/{key}/{window start}/v{version}`: one id is one version of one window).
pub(crate) fn cloudevent(n: u64, e: &Emission) -> (String, serde_json::Value) {
    let start = crate::wire::rfc3339(e.window.start.0);
    let id = format!("{}/{}/{start}/v{}", e.pipeline, e.key.as_str(), e.version.0);
    let ev = serde_json::json!({
        "specversion": "1.0",
        "type": format!("dev.reckon.window.{}", crate::writer::kind_name(e.kind)),
        "source": format!("reckon/{}", e.pipeline),
        "id": id,
        "subject": e.key.as_str(),
        "time": crate::wire::rfc3339(e.emitted_at.0),
        "datacontenttype": "application/json",
        "data": crate::wire::emission_json(e, Some(n)),
    });
    (id, ev)
}

/// How long a connect or a batch's write may take before it counts as a failure.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts one task per `[[sink]]`.
pub(crate) fn start(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for k in &state.config().sinks {
        let cursor = state
            .store()
            .sink_state(&k.name)
            .map(|s| s.cursor)
            .unwrap_or(0);
        state.sinks().insert(
            &k.name,
            SinkStatus {
                name: k.name.clone(),
                kind: kind_name(k.kind),
                state: "connecting",
                cursor,
                ..SinkStatus::default()
            },
        );
        let (st, cfg) = (state.clone(), k.clone());
        tasks.push(match k.kind {
            SinkKind::Postgres => tokio::spawn(async move {
                let sink = postgres::Postgres::new(&cfg);
                run(st, cfg, sink).await
            }),
            SinkKind::Redis => tokio::spawn(async move {
                match redis::Redis::new(&cfg) {
                    Ok(sink) => run(st, cfg, sink).await,
                    Err(e) => stopped(&st, &cfg.name, e),
                }
            }),
            SinkKind::Nats => tokio::spawn(async move {
                let sink = nats::Nats::new(&cfg);
                run(st, cfg, sink).await
            }),
            #[cfg(feature = "kafka")]
            SinkKind::Kafka => tokio::spawn(async move {
                let sink = kafka::Kafka::new(&cfg);
                run(st, cfg, sink).await
            }),
            #[cfg(not(feature = "kafka"))]
            SinkKind::Kafka => {
                stopped(state, &k.name, crate::connector::NO_KAFKA.into());
                continue;
            }
        });
    }
    tasks
}

fn stopped(state: &AppState, name: &str, error: String) {
    tracing::error!(sink = name, "sink `{name}` stopped: {error}");
    state.sinks().update(name, |s| {
        s.state = "stopped";
        s.error = Some(error);
    });
}

/// The sink loop (see the module's documentation).
async fn run<S: Sink>(state: AppState, cfg: SinkConfig, mut sink: S) {
    let name = cfg.name.clone();
    let labels = [("sink", name.as_str())];
    let sink_state = match state.store().sink_state(&name) {
        Ok(s) => s,
        Err(e) => return stopped(&state, &name, format!("cannot read its cursor: {e}")),
    };
    let mut next_id = sink_state.last_delivery + 1;
    let mut changes = state.follower().subscribe(sink_state.cursor);
    let mut shutdown = state.shutdown();
    let mut connected = false;
    let mut backoff = Backoff::default();
    let mut page: Option<crate::follow::Page> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !connected {
            let connect = tokio::select! {
                r = tokio::time::timeout(IO_TIMEOUT, sink.connect()) => {
                    r.unwrap_or_else(|_| Err(format!("no answer within {IO_TIMEOUT:?} while connecting")))
                }
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match connect {
                Ok(()) => {
                    tracing::info!(sink = %name, "sink `{name}` connected");
                    connected = true;
                    state.sinks().update(&name, |s| {
                        s.state = "running";
                        s.error = None;
                    });
                }
                Err(e) => {
                    if !retry(&state, &name, &labels, e, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let current = match page.take() {
            Some(p) => p,
            None => {
                let next = tokio::select! {
                    p = changes.next_page() => p,
                    _ = shutdown.wait_for(|s| *s) => return,
                };
                match next {
                    Ok(Some(p)) => p,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(sink = %name, "sink `{name}`: reading the change feed failed ({e}); retrying in 1 s");
                        if !pause(&state, Duration::from_secs(1)).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let wanted: Vec<&(u64, Emission)> = current
            .changes()
            .iter()
            .filter(|(_, e)| {
                cfg.pipelines.is_empty() || cfg.pipelines.iter().any(|p| **p == *e.pipeline)
            })
            .collect();
        let mut failed = None;
        for chunk in wanted.chunks(cfg.batch) {
            // A system that stops answering (a lock held, packets dropped) counts as a
            // failure, and shutdown does not wait for it.
            let written = tokio::select! {
                r = tokio::time::timeout(IO_TIMEOUT, sink.write(chunk)) => {
                    r.unwrap_or_else(|_| Err(format!("no answer within {IO_TIMEOUT:?} while writing {} changes", chunk.len())))
                }
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if let Err(e) = written {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            // The whole page again after reconnecting (rewriting is harmless).
            connected = false;
            page = Some(current);
            if !retry(&state, &name, &labels, e, &mut backoff).await {
                return;
            }
            continue;
        }
        let cursor = current.to();
        let record = serde_json::json!({
            "id": next_id,
            "sink": name,
            "kind": kind_name(cfg.kind),
            "last_change": cursor,
            "written": wanted.len(),
        });
        let delivery = Delivery {
            sink: Arc::from(name.as_str()),
            id: next_id,
            cursor,
            record: record.to_string().into_bytes(),
        };
        next_id += 1;
        if let Err(e) = state.writer().record(delivery).await {
            return stopped(&state, &name, format!("cannot record its cursor ({e:?})"));
        }
        // Only a write that went through resets the backoff: one that fails the same
        // way after every reconnect waits longer and longer.
        backoff.reset();
        state
            .metrics()
            .inc("reckon_sink_written_total", &labels, wanted.len() as u64);
        state.sinks().update(&name, |s| {
            s.state = "running";
            s.cursor = cursor;
            s.written += wanted.len() as u64;
        });
    }
}

/// Logs and counts a failure and shows it; then waits the backoff (`false` on
/// shutdown).
async fn retry(
    state: &AppState,
    name: &str,
    labels: &[(&'static str, &str)],
    error: String,
    backoff: &mut Backoff,
) -> bool {
    tracing::warn!(
        sink = name,
        "sink `{name}`: {error}; retrying in {:?}",
        backoff.next()
    );
    state.metrics().inc("reckon_sink_errors_total", labels, 1);
    state.sinks().update(name, |s| {
        s.state = "retrying";
        s.errors += 1;
        s.error = Some(error);
    });
    backoff.wait(state).await
}

/// The newest version of each window among `changes` (a batch may hold several
/// versions of one window; a row can take only one per statement).
fn newest<'a>(changes: &[&'a (u64, Emission)]) -> Vec<&'a (u64, Emission)> {
    let mut by_window: BTreeMap<(&str, &str, i64), &'a (u64, Emission)> = BTreeMap::new();
    for c in changes {
        let e = &c.1;
        let k = (&*e.pipeline, e.key.as_str(), e.window.start.0);
        match by_window.get(&k) {
            Some(have) if have.1.version >= e.version => {}
            _ => {
                by_window.insert(k, c);
            }
        }
    }
    by_window.into_values().collect()
}

/// `GET /v1/sinks`: every sink's state, cursor and counts (an operator's token).
pub(crate) async fn list(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
) -> Result<axum::Json<serde_json::Value>, crate::ApiError> {
    if !(who.is_operator() && who.reads_all()) {
        return Err(who.forbidden("read the sinks (an operator's token can)"));
    }
    Ok(axum::Json(serde_json::json!({
        "sinks": state.sinks().list(),
        "last_change": state.store().last_change(),
    })))
}
