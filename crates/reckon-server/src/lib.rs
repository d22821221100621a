//! `reckon-server`: reckon over HTTP.
//!
//! - Ingest: `POST /v1/streams/{stream}/events` (NDJSON or a JSON array) and
//!   `POST /api/v2/write` (InfluxDB v2 line protocol, so InfluxDB clients and Telegraf
//!   write to reckon unchanged). Requests are acknowledged only after the durable commit.
//! - Queries: windows (optionally `as_of` a past processing time), a window's revision
//!   history, dead letters; JSON, or CSV with `Accept: text/csv`.
//! - The change feed: `GET /v1/pipelines/{p}/changes`, server-sent events with a
//!   resumable cursor (the change number).
//! - Webhooks (Slack-compatible, digested, signed, retried), `GET /metrics`
//!   (Prometheus) and `GET /healthz`.
//!
//! [`App::open`] opens the store and the pipelines and starts the writer thread and the
//! webhooks; [`App::router`] is the axum router (handlers can be tested with
//! `tower::ServiceExt::oneshot`); [`App::serve`] serves it on a listener until
//! [`App::shutdown_signal`] fires. The HTTP API is documented in `docs/http.md`.

pub mod clock;
pub mod error;
mod feed;
mod ingest;
pub mod metrics;
mod notify;
mod query;
mod wire;
pub mod writer;

pub use clock::{Clock, ScaledClock, SystemClock};
pub use error::{ApiError, Error, Result};

use axum::Router;
use axum::routing::{get, post};
use metrics::Metrics;
use reckon_connect::JsonDecoder;
use reckon_connect::lineproto::LineProtocolDecoder;
use reckon_runtime::{Config, Runtime, RuntimeOptions, StreamConfig};
use reckon_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use writer::{Progress, WriterHandle};

/// Options of a server beyond its configuration file.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Where processing time comes from (the system clock, or the demo's scaled one).
    pub clock: Arc<dyn Clock>,
    /// Runtime options (checkpoint interval).
    pub runtime: RuntimeOptions,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            clock: Arc::new(SystemClock),
            runtime: RuntimeOptions::default(),
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    writer: WriterHandle,
    progress: watch::Receiver<Progress>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    json: Mutex<HashMap<String, Vec<JsonDecoder>>>,
    lines: Mutex<HashMap<String, Vec<LineProtocolDecoder>>>,
}

impl AppState {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    /// The store (for reads; the writer is its only writer).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// The writer.
    pub fn writer(&self) -> &WriterHandle {
        &self.inner.writer
    }
    /// The newest durable change, updated after every commit.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.inner.progress.clone()
    }
    /// Fires (becomes `true`) when the server shuts down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.clone()
    }
    /// The clock stamping processing time.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }
    fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.inner.config.stream(name)
    }
    /// Runs `f` with a JSON decoder of `stream` (decoders are pooled so that their
    /// interned keys and names are shared across requests).
    fn with_json<T>(&self, stream: &StreamConfig, f: impl FnOnce(&mut JsonDecoder) -> T) -> T {
        pooled(&self.inner.json, stream, JsonDecoder::new, f)
    }
    /// Like [`AppState::with_json`], for line protocol.
    fn with_lines<T>(
        &self,
        stream: &StreamConfig,
        f: impl FnOnce(&mut LineProtocolDecoder) -> T,
    ) -> T {
        pooled(&self.inner.lines, stream, LineProtocolDecoder::new, f)
    }
}

/// Takes a decoder of `stream` from `pool` (or makes one), runs `f`, puts it back.
fn pooled<D, T>(
    pool: &Mutex<HashMap<String, Vec<D>>>,
    stream: &StreamConfig,
    make: fn(&StreamConfig) -> D,
    f: impl FnOnce(&mut D) -> T,
) -> T {
    let mut d = pool
        .lock()
        .ok()
        .and_then(|mut m| m.get_mut(&stream.name).and_then(Vec::pop))
        .unwrap_or_else(|| make(stream));
    let out = f(&mut d);
    if let Ok(mut m) = pool.lock() {
        m.entry(stream.name.clone()).or_default().push(d);
    }
    out
}

/// A running reckon server: state, writer thread and webhooks, ready to serve.
#[derive(Debug)]
pub struct App {
    state: AppState,
    shutdown: watch::Sender<bool>,
    writer: Option<std::thread::JoinHandle<()>>,
    webhooks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Opens the store and every pipeline (restoring checkpoints and replaying the
    /// journal), starts the writer thread and the webhooks. Must be called inside a
    /// tokio runtime.
    pub fn open(config: Config, options: AppOptions) -> Result<App> {
        let runtime = Runtime::open(&config, options.runtime.clone())?;
        let store = runtime.store().clone();
        let metrics = Arc::new(Metrics::default());
        let (writer, progress, thread) = writer::spawn(
            runtime,
            options.clock.clone(),
            metrics.clone(),
            config.server.max_pending_requests,
            config.server.tick_interval.to_std(),
        )
        .map_err(|source| Error::Io {
            what: "starting the writer thread".into(),
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = AppState {
            inner: Arc::new(Inner {
                config,
                store,
                writer,
                progress,
                shutdown: shutdown_rx,
                metrics,
                clock: options.clock,
                json: Mutex::new(HashMap::new()),
                lines: Mutex::new(HashMap::new()),
            }),
        };
        let webhooks = notify::start(&state)?;
        Ok(App {
            state,
            shutdown,
            writer: Some(thread),
            webhooks,
        })
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The HTTP API.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Sends `true` to stop [`App::serve`], the change feeds and the webhooks.
    pub fn shutdown_signal(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Serves the API on `listener` until the shutdown signal, then stops the webhooks
    /// and the writer (everything acknowledged is durable already).
    pub async fn serve(mut self, listener: tokio::net::TcpListener) -> Result<()> {
        let mut stop = self.state.shutdown();
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        self.close().await;
        served.map_err(|source| Error::Io {
            what: "serving HTTP".into(),
            source,
        })
    }

    /// Stops the webhooks and the writer.
    pub async fn close(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self.webhooks.drain(..) {
            let _ = t.await;
        }
        let writer = self.state.inner.writer.clone();
        let thread = self.writer.take();
        let _ = tokio::task::spawn_blocking(move || {
            writer.stop();
            if let Some(t) = thread {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// The HTTP API over `state` (see `docs/http.md`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/streams/{stream}/events", post(ingest::post_events))
        .route("/api/v2/write", post(ingest::influx_write))
        .route(
            "/v1/streams/{stream}/dead_letters",
            get(query::dead_letters),
        )
        .route("/v1/pipelines", get(query::pipelines))
        .route("/v1/pipelines/{pipeline}/windows", get(query::windows))
        .route("/v1/pipelines/{pipeline}/history", get(query::history))
        .route("/v1/pipelines/{pipeline}/changes", get(feed::changes))
        .route("/v1/webhooks", get(query::webhooks))
        .route("/v1/webhooks/{name}/deliveries", get(query::deliveries))
        .route("/metrics", get(query::metrics))
        .route("/healthz", get(query::healthz))
        .route("/health", get(query::influx_health))
        .route("/ping", get(query::influx_ping).head(query::influx_ping))
        .fallback(query::not_found)
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}
