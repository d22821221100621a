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

pub mod auth;
pub mod backfill;
mod changed;
pub mod clock;
pub mod connector;
pub mod dashboard;
mod define;
pub mod error;
mod feed;
pub mod follow;
mod ingest;
pub mod metrics;
mod notify;
mod query;
pub mod quota;
mod rules;
pub mod sinks;
pub mod source;
mod total;
mod wire;
pub mod writer;

pub use clock::{Clock, ScaledClock, SystemClock};
pub use error::{ApiError, Error, Result};

use axum::Router;
use axum::routing::{get, post};
use follow::Follower;
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
    /// What runs: the file's configuration with the definitions made over the API
    /// (replaced whole when they change).
    config: std::sync::RwLock<Arc<Config>>,
    /// How many times the definitions changed since startup (webhooks refresh what
    /// they know of the pipelines when it moves).
    epoch: std::sync::atomic::AtomicU64,
    /// The configuration file's own part (what definitions are checked against).
    base: Config,
    /// Stored names of operators past their first generation → their identity.
    aliases: std::sync::RwLock<Arc<HashMap<String, String>>>,
    /// The definitions made over the API; its lock serialises changes to them.
    definitions: tokio::sync::Mutex<define::Catalog>,
    store: Store,
    writer: WriterHandle,
    progress: watch::Receiver<Progress>,
    follower: Follower,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    auth: auth::Auth,
    limits: quota::Limits,
    json: Mutex<HashMap<String, Vec<JsonDecoder>>>,
    lines: Mutex<HashMap<String, Vec<LineProtocolDecoder>>>,
    sources: source::Sources,
    sinks: sinks::Sinks,
}

impl AppState {
    /// The configuration running now: the file's, with the definitions made over the
    /// API (`docs/definitions.md`).
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// How many times the definitions changed since startup.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(std::sync::atomic::Ordering::Acquire)
    }
    /// The configuration file's part of the running configuration.
    fn base_config(&self) -> &Config {
        &self.inner.base
    }
    /// The definitions made over the API (locked to change them).
    fn definitions(&self) -> &tokio::sync::Mutex<define::Catalog> {
        &self.inner.definitions
    }
    /// Stored names of operators past their first generation → their identity.
    fn aliases(&self) -> Arc<HashMap<String, String>> {
        self.inner
            .aliases
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Makes `config` the running configuration (after the writer started its
    /// operators): pooled decoders of replaced streams are dropped.
    fn set_config(&self, config: Config, aliases: HashMap<String, String>) {
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        *self
            .inner
            .aliases
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(aliases);
        if let Ok(mut p) = self.inner.json.lock() {
            p.clear();
        }
        if let Ok(mut p) = self.inner.lines.lock() {
            p.clear();
        }
        self.inner
            .epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    /// The store (for reads; the writer thread is its only writer).
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
    /// The change-feed follower: subscribe to every change from a position on.
    pub fn follower(&self) -> &Follower {
        &self.inner.follower
    }
    /// Fires (becomes `true`) when the server shuts down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.clone()
    }
    /// The clock stamping processing time.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }
    /// The tenants and tokens.
    pub fn auth(&self) -> &auth::Auth {
        &self.inner.auth
    }
    /// The tenants' quotas and usage.
    pub fn limits(&self) -> &quota::Limits {
        &self.inner.limits
    }
    /// What each `[[source]]` is doing.
    pub fn sources(&self) -> &source::Sources {
        &self.inner.sources
    }
    /// What each `[[sink]]` is doing.
    pub fn sinks(&self) -> &sinks::Sinks {
        &self.inner.sinks
    }
    /// The stream `who` calls `local`, if it may `access` it (else 404 or 403).
    fn resolve_stream(
        &self,
        who: &auth::Principal,
        local: &str,
        access: auth::Access,
    ) -> std::result::Result<StreamConfig, ApiError> {
        let config = self.config();
        let streams = config.streams.iter().map(|s| s.name.as_str());
        let stored = who.resolve("stream", local, streams, access)?;
        config
            .stream(&stored)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("unknown stream `{local}`")))
    }
    /// The stored name of the pipeline `who` calls `local`, if it may read it.
    fn resolve_pipeline(
        &self,
        who: &auth::Principal,
        local: &str,
    ) -> std::result::Result<String, ApiError> {
        let config = self.config();
        // A definition replaced by a different one runs under a new identity
        // (`name@2`); its plain name means the current one.
        let current = define::current_identity(self, who, local);
        who.resolve(
            "pipeline",
            current.as_deref().unwrap_or(local),
            config.output_names(),
            auth::Access::Read,
        )
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
    follower: Option<tokio::task::JoinHandle<()>>,
    webhooks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Opens the store and every pipeline (restoring checkpoints and replaying the
    /// journal), starts the writer thread and the webhooks. Must be called inside a
    /// tokio runtime.
    pub fn open(base: Config, options: AppOptions) -> Result<App> {
        let store = Store::open(&base.store.path)?;
        // The definitions made over the API run with the file's.
        let definitions = define::Catalog::load(&store)?;
        let config = definitions
            .fragment()
            .and_then(|f| base.extended(f).map_err(|e| e.to_string()))
            .map_err(|e| {
                Error::Catalog(format!(
                    "the definitions made over the API do not fit the configuration file: {e}"
                ))
            })?;
        let runtime = Runtime::with_store(&config, store.clone(), options.runtime.clone())?;
        let auth = auth::Auth::load(&store)?;
        let limits = quota::Limits::default();
        for t in auth.tenants() {
            let scan = auth::needs_scan(&t.quotas)
                .then(|| quota::Limits::scan(&store, &config.streams_of(&t.name)))
                .transpose()?;
            limits.set(&t.name, t.quotas.clone(), scan);
        }
        if auth.enabled() {
            tracing::info!(
                tenants = auth.tenants().len(),
                "authentication on: every request but the health checks needs a token"
            );
        } else {
            tracing::info!(
                "single-user mode: no token exists, every route is open to loopback clients \
                 (and only to them); `reckon token create --admin` turns authentication on"
            );
        }
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
        let (follower, follower_task) = Follower::start(
            store.clone(),
            progress.clone(),
            shutdown_rx.clone(),
            follow::FollowerOptions::default(),
        );
        let aliases = definitions.aliases();
        let state = AppState {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(Arc::new(config)),
                epoch: std::sync::atomic::AtomicU64::new(0),
                base,
                aliases: std::sync::RwLock::new(Arc::new(aliases)),
                definitions: tokio::sync::Mutex::new(definitions),
                store,
                writer,
                progress,
                follower,
                shutdown: shutdown_rx,
                metrics,
                clock: options.clock,
                auth,
                limits,
                json: Mutex::new(HashMap::new()),
                lines: Mutex::new(HashMap::new()),
                sources: source::Sources::default(),
                sinks: sinks::Sinks::default(),
            }),
        };
        let mut webhooks = notify::start(&state)?;
        webhooks.extend(backfill::start(&state));
        webhooks.extend(source::start(&state));
        webhooks.extend(sinks::start(&state));
        Ok(App {
            state,
            shutdown,
            writer: Some(thread),
            follower: Some(follower_task),
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

    /// Serves the API (HTTP/1.1) on `listener` until the shutdown signal, then lets the
    /// connections finish their requests in flight, stops the webhooks and the writer
    /// (everything acknowledged is durable already).
    ///
    /// A client must send its headers within `[server] header_read_timeout` (else the
    /// connection is closed) and its body within `[server] body_read_timeout` of them
    /// (else 408).
    pub async fn serve(mut self, listener: tokio::net::TcpListener) -> Result<()> {
        let router = self.router();
        let header_timeout = nonzero(self.state.config().server.header_read_timeout.to_std());
        let mut stop = self.state.shutdown();
        // Every connection task holds a clone; `closed()` resolves when all are done.
        let (all_closed, connection) = watch::channel(());
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped(&mut stop) => break,
            };
            let (io, peer) = match accepted {
                Ok(c) => c,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::error!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(
                tower::ServiceBuilder::new()
                    .map_request(
                        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(auth::Peer(peer));
                            req
                        },
                    )
                    .service(router.clone()),
            );
            let mut conn_stop = self.state.shutdown();
            let connection = connection.clone();
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stopped(&mut conn_stop) => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.as_mut().await;
                    }
                }
                drop(connection);
            });
        }
        drop(listener);
        drop(connection);
        tracing::info!("draining: finishing the requests in flight");
        all_closed.closed().await;
        self.close().await;
        tracing::info!("server stopped: every acknowledged write is durable");
        Ok(())
    }

    /// Stops the webhooks, the change-feed follower and the writer.
    pub async fn close(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self.webhooks.drain(..) {
            let _ = t.await;
        }
        if let Some(t) = self.follower.take() {
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

/// Resolves when the shutdown signal fires (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `d`, or `None` (no timeout) for zero.
fn nonzero(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

/// Errors of one connection (the listener goes on accepting).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// Middleware: the request body must arrive within `[server] body_read_timeout` of the
/// headers. A handler reading a body past that sees a read error; the answer is then
/// replaced by 408 and the connection closed.
async fn body_deadline(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(limit) = nonzero(state.config().server.body_read_timeout.to_std()) else {
        return next.run(req).await;
    };
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let req = req.map(|body| axum::body::Body::new(TimedBody::new(body, limit, timed_out.clone())));
    let response = next.run(req).await;
    if !timed_out.load(std::sync::atomic::Ordering::Acquire) {
        return response;
    }
    let mut r = ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} ([server] body_read_timeout); \
             the connection is closed",
            format_args!("{limit:?}")
        ),
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

/// A request body that fails with [`error::BodyTimeout`] once its deadline passes
/// (and records that it did, for [`body_deadline`]).
struct TimedBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: std::time::Duration,
    timed_out: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for TimedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl TimedBody {
    fn new(
        inner: axum::body::Body,
        limit: std::time::Duration,
        timed_out: Arc<std::sync::atomic::AtomicBool>,
    ) -> TimedBody {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            timed_out,
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Self::Data>, Self::Error>>>
    {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if this.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.timed_out
                .store(true, std::sync::atomic::Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(error::BodyTimeout(this.limit)))));
        }
        std::pin::Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
        .route("/v1/pipelines/{pipeline}/total", get(total::total))
        .route(
            "/v1/pipelines/{pipeline}/backfill",
            get(rules::backfill_rule),
        )
        .route("/v1/rules/backfill", post(rules::backfill_definition))
        .route("/v1/pipelines/{pipeline}/changed", get(changed::changed))
        .route("/v1/backfills", get(backfill::list))
        .route("/v1/sources", get(source::list))
        .route("/v1/sinks", get(sinks::list))
        .route("/v1/webhooks", get(query::webhooks))
        .route("/v1/webhooks/{name}/deliveries", get(query::deliveries))
        .route("/metrics", get(query::metrics))
        .route("/v1/tenants", get(auth::tenants).post(auth::create_tenant))
        .route(
            "/v1/tenants/{tenant}/quotas",
            axum::routing::put(auth::set_quotas),
        )
        .route("/v1/tenants/{tenant}/usage", get(auth::usage))
        .route("/v1/tokens", get(auth::tokens).post(auth::create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(auth::revoke_token))
        .route("/v1/definitions", get(define::list))
        .route(
            "/v1/definitions/{kind}/{name}",
            get(define::get_one).put(define::put).delete(define::delete),
        )
        .route("/", get(dashboard::index))
        .route("/ui/{file}", get(dashboard::asset))
        .route("/healthz", get(query::healthz))
        .route("/health", get(query::influx_health))
        .route("/ping", get(query::influx_ping).head(query::influx_ping))
        .fallback(query::not_found)
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_deadline,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}
