//! `reckon.toml`: streams and pipelines, as a user writes them.
//!
//! The doc comments of these structs are the user documentation of the file (see the
//! example in `docs/config.md`). Unknown keys are errors, so a typo never silently
//! falls back to a default.
//!
//! ```toml
//! [store]
//! path = "reckon-data"
//!
//! [[stream]]
//! name = "water_level"
//! key_fields = ["i"]
//! time_field = "time"
//! time_format = "rfc3339"
//!
//! [[pipeline]]
//! name = "water_level_mean_1h"
//! stream = "water_level"
//! window = { type = "tumbling", size = "1h" }
//! aggregates = [{ fn = "mean", field = "level", name = "mean" }, { fn = "count" }]
//! out_of_orderness = "10s"
//! allowed_lateness = "24h"
//! retention = "7d"
//! ```

use crate::error::{Error, Result};
use reckon_core::Expr;
use reckon_core::operator::{
    AlertRule, IdFields, ReconcileOperator, Rollup, RollupSpec, RunningTotal, WindowOperator,
};
use reckon_core::{
    AggKind, AggregateSpec, CalendarUnit, Operator, PipelineSpec, Source, Span, WindowSpec,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store lives.
    #[serde(default)]
    pub store: StoreConfig,
    /// Input streams: how to read keys, times and ids from their events.
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
    /// Pipelines: what to compute over which stream.
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<PipelineConfig>,
    /// Reconciliations: is every audited id in the event stream (`docs/reconcile.md`)?
    #[serde(default, rename = "reconcile")]
    pub reconciles: Vec<ReconcileConfig>,
    /// Running totals per key, with as-of values (`docs/running-totals.md`).
    #[serde(default, rename = "running_total")]
    pub running_totals: Vec<RunningTotalConfig>,
    /// Alert rules on a pipeline's windows, evaluated in event time (`docs/alerts.md`).
    #[serde(default, rename = "alert")]
    pub alerts: Vec<AlertConfig>,
    /// The HTTP server (`reckon serve`).
    #[serde(default)]
    pub server: ServerConfig,
    /// Webhooks notified of corrected windows (Slack-compatible by default).
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    /// Delta tables `reckon serve` watches for late data (`docs/backfill.md`).
    #[serde(default, rename = "backfill")]
    pub backfills: Vec<BackfillConfig>,
    /// Brokers `reckon serve` consumes (`docs/connectors.md`).
    #[serde(default, rename = "source")]
    pub sources: Vec<crate::connectors::SourceConfig>,
    /// Systems `reckon serve` keeps up to date from the change feed.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<crate::connectors::SinkConfig>,
}

/// `[[backfill]]`: a Delta table whose log `reckon serve` plans from every `interval`
/// (seed 002), as `reckon backfill plan` does, keeping plans and cursor in its store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    /// The name its cursor and plans are kept under.
    pub name: String,
    /// The table's directory (with `_delta_log`).
    pub table: PathBuf,
    /// How often the log is read. Default `1m`.
    #[serde(default = "default_backfill_interval")]
    pub interval: Duration,
    /// The partition column ordering partitions in time (default: the first).
    #[serde(default)]
    pub partition_column: Option<String>,
    /// Changes within this much of the newest partition (or of the event-time
    /// watermark) are not late. Default `0s`.
    #[serde(default)]
    pub grace: Option<Duration>,
    /// A column of event times: lateness follows the table's event-time watermark
    /// from file statistics instead of the partition order.
    #[serde(default)]
    pub event_time_column: Option<String>,
    /// `fail` (default: a gap is logged and the cursor stays) or `all`.
    #[serde(default)]
    pub on_gap: Option<String>,
    /// Where to write the seed's `backfilling_configuration.json` after each plan.
    #[serde(default)]
    pub seed_json: Option<PathBuf>,
}

fn default_backfill_interval() -> Duration {
    Duration(Span(60_000_000_000))
}

/// `[server]`: the HTTP server of `reckon serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8086` (InfluxDB's port, so clients
    /// written for InfluxDB need only the host changed). There is no authentication
    /// yet: bind to another interface only behind something that authenticates.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes; larger requests get 413. Default 64 MiB.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Ingest requests waiting for the writer beyond this many get 503 with
    /// `Retry-After` (back-pressure instead of unbounded memory). Default 64.
    #[serde(default = "default_max_pending")]
    pub max_pending_requests: usize,
    /// Processing time advances (timers, idle partitions, early results) this often
    /// when no event arrives. Default `1s`.
    #[serde(default = "default_tick")]
    pub tick_interval: Duration,
    /// Most rows one query answer holds (windows, dead letters, change-feed pages); a
    /// bigger `limit` is lowered to it, and the answer's `next` cursor resumes. Bounds
    /// the memory a query takes. Default 10,000.
    #[serde(default = "default_max_query_limit")]
    pub max_query_limit: usize,
    /// A client must send a request's headers within this long of starting it (or of
    /// the previous answer on a kept-alive connection), or the connection is closed.
    /// `0s` turns it off. Default `10s`.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// A client must send a request's whole body within this long of its headers, or it
    /// gets 408 and the connection is closed. `0s` turns it off. Default `30s`.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_pending_requests: default_max_pending(),
            tick_interval: default_tick(),
            max_query_limit: default_max_query_limit(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8086".into()
}
fn default_max_body() -> usize {
    64 << 20
}
fn default_max_pending() -> usize {
    64
}
fn default_max_query_limit() -> usize {
    10_000
}
fn default_tick() -> Duration {
    Duration(Span(1_000_000_000))
}
fn default_header_read_timeout() -> Duration {
    Duration(Span(10_000_000_000))
}
fn default_body_read_timeout() -> Duration {
    Duration(Span(30_000_000_000))
}

/// What a webhook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookNotify {
    /// Windows whose result changed after it was first emitted (late data, recomputes).
    #[default]
    Corrections,
    /// Every emission, first results included.
    All,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// A Slack incoming-webhook message (`{"text": …}`), readable by people.
    #[default]
    Slack,
    /// reckon's structured JSON, for programs.
    Json,
    /// Alertmanager's webhook shape (`{"version": "4", "status", "alerts": [...]}`) for
    /// `[[alert]]` rules: receivers of Prometheus alerts take reckon's as they are.
    Alertmanager,
    /// A batch run per alert episode that begins (seed 004's "onTrigger"): one message
    /// per episode firing, late fires included, with the tenant, the rule, the series
    /// and the window (`docs/alerts.md`); a `command` gets them as environment
    /// variables too.
    Trigger,
}

/// `[[webhook]]`: an HTTP endpoint told about corrected windows. Deliveries run beside
/// ingest and never block it; they resume from a durable cursor after a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name of this webhook (in metrics and the delivery log).
    pub name: String,
    /// The tenant owning it (`reckon tenant create`): its name is then local to the
    /// tenant, stored as `tenant/name`, and its references name the tenant's objects.
    /// Default: none (the operator's, seen only without tenants or with an admin token).
    #[serde(default)]
    pub tenant: Option<String>,
    /// URL to POST to (or give `command`).
    #[serde(default)]
    pub url: String,
    /// A program to run instead of a POST, with its arguments: the body goes to its
    /// standard input and a `trigger`'s fields to `RECKON_*` environment variables;
    /// exit status 0 is a delivery, another is retried like a `5xx`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Pipelines whose emissions are sent (default: all).
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// `slack` (default) or `json`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// `corrections` (default) or `all`.
    #[serde(default)]
    pub notify: WebhookNotify,
    /// Key for the `X-Reckon-Signature` HMAC-SHA256 header (none: unsigned).
    #[serde(default)]
    pub secret: Option<String>,
    /// At most one message per this interval, summarising every window corrected in
    /// it. Default `10s`; `0s` sends each commit's corrections at once.
    #[serde(default = "default_digest")]
    pub digest_interval: Duration,
    /// Windows (or reported ids) one message holds at most; in a burst the rest go in
    /// the next messages, still at most one per `digest_interval`. Default 10,000.
    #[serde(default = "default_digest_windows")]
    pub max_digest_windows: usize,
    /// Attempts per message before it is recorded as failed. Default 6.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First retry delay, doubled each retry up to `max_backoff`. Default `500ms`.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// Longest retry delay. Default `1m`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Time limit of one attempt. Default `10s`.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Duration,
}

fn default_digest() -> Duration {
    Duration(Span(10_000_000_000))
}
fn default_digest_windows() -> usize {
    10_000
}
fn default_attempts() -> u32 {
    6
}
fn default_backoff() -> Duration {
    Duration(Span(500_000_000))
}
fn default_max_backoff() -> Duration {
    Duration(Span(60_000_000_000))
}
fn default_webhook_timeout() -> Duration {
    Duration(Span(10_000_000_000))
}

impl Duration {
    /// As a `std::time::Duration` (negative spans are zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(u64::try_from(self.0.0).unwrap_or(0))
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the embedded store (created if missing). Default `reckon-data`.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("reckon-data")
}

/// How event times are written in a stream's events: a name below, or a
/// `strftime`-style pattern such as `"%Y-%m-%d %H:%M:%S"` (any text with a `%`),
/// read in the stream's `time_zone` unless the pattern has an offset (`%z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// An RFC 3339 string such as `2024-01-01T00:00:00.5Z` (default).
    #[default]
    Rfc3339,
    /// A number of seconds since the Unix epoch (fractions allowed).
    UnixS,
    /// A number of milliseconds since the Unix epoch.
    UnixMs,
    /// A number of microseconds since the Unix epoch.
    UnixUs,
    /// A number of nanoseconds since the Unix epoch.
    UnixNs,
    /// A `strftime`-style pattern (jiff's `strtime`), e.g. `%Y-%m-%d %H:%M:%S`.
    Pattern(TimePattern),
}

/// A time pattern and the zone its local times are in. The texts are interned for the
/// life of the process (a configuration is loaded a few times at most), so the format
/// stays a small `Copy` value the decoders pass around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePattern {
    /// The `strftime`-style pattern.
    pub pattern: &'static str,
    /// IANA zone of times without an offset (the stream's `time_zone`, default UTC).
    pub zone: &'static str,
}

fn intern(s: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = TEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = set.get(s) {
        return t;
    }
    let t: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(t);
    t
}

impl TimePattern {
    /// Parses `text` as this pattern says; the error says what did not match.
    pub fn parse(&self, text: &str) -> std::result::Result<reckon_core::EventTime, String> {
        let tm = jiff::fmt::strtime::parse(self.pattern, text).map_err(|e| {
            format!(
                "`{text}` does not match time_format `{}`: {e}",
                self.pattern
            )
        })?;
        let ts = if tm.offset().is_some() {
            tm.to_timestamp().map_err(|e| format!("`{text}`: {e}"))?
        } else {
            let dt = tm.to_datetime().map_err(|e| {
                format!(
                    "`{text}` does not give a date and time with `{}`: {e}",
                    self.pattern
                )
            })?;
            let tz = jiff::tz::TimeZone::get(self.zone)
                .map_err(|e| format!("time_zone `{}`: {e}", self.zone))?;
            // A local time that a DST change skips or repeats resolves as RFC 5545
            // says (jiff's "compatible": the later offset for a gap, the earlier for a fold).
            tz.to_zoned(dt)
                .map_err(|e| format!("`{text}` in {}: {e}", self.zone))?
                .timestamp()
        };
        let ns = i64::try_from(ts.as_nanosecond())
            .map_err(|_| format!("`{text}` is outside the time range reckon supports"))?;
        Ok(reckon_core::EventTime(ns))
    }
}

impl<'de> Deserialize<'de> for TimeFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix_s" => TimeFormat::UnixS,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_us" => TimeFormat::UnixUs,
            "unix_ns" => TimeFormat::UnixNs,
            p if p.contains('%') => TimeFormat::Pattern(TimePattern {
                pattern: intern(p),
                zone: "UTC",
            }),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown time_format `{other}`: rfc3339, unix_s, unix_ms, unix_us, unix_ns, or a pattern such as \"%Y-%m-%d %H:%M:%S\""
                )));
            }
        })
    }
}

/// How a stream's JSON events are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// One flat JSON object per event (default).
    #[default]
    Json,
    /// CloudEvents 1.0 structured JSON (`specversion`, `id`, `source`, `type`, `time`,
    /// `data`): the attributes are fields under their own names, the members of an
    /// object `data` are fields named `data.<member>` (any other `data` is the field
    /// `data`). `time_field` defaults to the `time` attribute.
    Cloudevents,
}

/// `[[stream]]`: one input stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name (InfluxDB's measurement or bucket, a topic...).
    pub name: String,
    /// The tenant owning it (`reckon tenant create`): its name is then local to the
    /// tenant, stored as `tenant/name`, and its references name the tenant's objects.
    /// Default: none (the operator's, seen only without tenants or with an admin token).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Fields whose values form the series key (tags). Other fields are values.
    #[serde(default)]
    pub key_fields: Vec<String>,
    /// The field holding the event time. Default `time`.
    #[serde(default = "default_time_field")]
    pub time_field: String,
    /// How the event time is written. Default `rfc3339`.
    #[serde(default)]
    pub time_format: TimeFormat,
    /// The IANA zone of local times a `time_format` pattern reads (one without `%z`),
    /// e.g. `Asia/Ho_Chi_Minh`. Default `UTC`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A field holding the event's id, for de-duplication (optional): an event whose
    /// id was already stored is dropped before any pipeline sees it.
    #[serde(default)]
    pub id_field: Option<String>,
    /// `json` (default) or `cloudevents`.
    #[serde(default)]
    pub format: EventFormat,
    /// The time guard: an event whose time is further ahead of the server's clock than
    /// this never moves a watermark and is not stored in the raw log; it is
    /// dead-lettered with kind `future` (the good events of the same request are
    /// kept). Default `1h`. Widen it for sources with fast clocks (`max_future = "1d"`)
    /// or turn the guard off with `max_future = "off"` (then one event dated 2200 would
    /// close every window of the stream for good: see `docs/semantics.md`).
    #[serde(default = "default_max_future")]
    pub max_future: FutureLimit,
}

fn default_time_field() -> String {
    "time".into()
}

fn default_max_future() -> FutureLimit {
    FutureLimit(Some(Span::hours(1)))
}

/// `max_future`: a duration, or `"off"` (no guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FutureLimit(pub Option<Span>);

impl<'de> Deserialize<'de> for FutureLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "off" {
            return Ok(FutureLimit(None));
        }
        let span = parse_duration(&s).map_err(serde::de::Error::custom)?;
        if span.0 < 0 {
            return Err(serde::de::Error::custom(format!(
                "max_future must not be negative, got `{s}`"
            )));
        }
        Ok(FutureLimit(Some(span)))
    }
}

/// A window as written in the file: `{ type = "tumbling", size = "1h" }`,
/// `{ type = "hopping", size = "1h", slide = "15m" }`,
/// `{ type = "calendar", unit = "day", tz = "Europe/Berlin" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// Back-to-back windows of `size`.
    Tumbling {
        /// Length of each window.
        size: Duration,
        /// Shift of the grid from the epoch (default 0).
        #[serde(default)]
        offset: Duration,
    },
    /// Windows of `size` every `slide`.
    Hopping {
        /// Length of each window.
        size: Duration,
        /// Distance between starts.
        slide: Duration,
        /// Shift of the grid from the epoch (default 0).
        #[serde(default)]
        offset: Duration,
    },
    /// Local days, ISO weeks or months in an IANA time zone.
    Calendar {
        /// `day`, `week` or `month`.
        unit: CalendarUnit,
        /// IANA zone name, e.g. `Europe/Berlin`. Default `UTC`.
        #[serde(default = "default_tz")]
        tz: String,
    },
}

impl WindowConfig {
    /// The engine's window spec.
    pub fn spec(&self) -> std::result::Result<WindowSpec, String> {
        Ok(match self {
            WindowConfig::Tumbling { size, offset } => WindowSpec::Tumbling {
                size: size.0,
                offset: offset.0,
            },
            WindowConfig::Hopping {
                size,
                slide,
                offset,
            } => WindowSpec::Hopping {
                size: size.0,
                slide: slide.0,
                offset: offset.0,
            },
            WindowConfig::Calendar { unit, tz } => {
                WindowSpec::calendar(*unit, tz).map_err(|e| e.to_string())?
            }
        })
    }
}

fn default_tz() -> String {
    "UTC".into()
}

/// An aggregate: `{ fn = "mean", field = "level", name = "mean" }`. `fn` is one of
/// count, sum, mean, min, max, first, last, variance, stddev, distinct, quantile (with
/// `q` and optional `accuracy`, default 0.01). `name` defaults to `<fn>_<field>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The function.
    #[serde(rename = "fn")]
    pub function: String,
    /// The field it reads (all but `count` need one).
    #[serde(default)]
    pub field: Option<String>,
    /// Output column name.
    #[serde(default)]
    pub name: Option<String>,
    /// For `quantile`: which one, in [0, 1].
    #[serde(default)]
    pub q: Option<f64>,
    /// For `quantile`: relative accuracy of the sketch (default 0.01).
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// Only events for which this expression is true are aggregated (SQL's
    /// `FILTER (WHERE …)`), e.g. `"value > threshold and threshold != 999999"`; see
    /// `docs/expressions.md`.
    #[serde(default)]
    pub filter: Option<String>,
}

/// `[[pipeline]]`: windows and aggregates over one stream, or (with `input`) a rollup
/// of another pipeline's results into coarser windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The pipeline's name (part of every window's identity).
    pub name: String,
    /// The tenant owning it (`reckon tenant create`): its name is then local to the
    /// tenant, stored as `tenant/name`, and its references name the tenant's objects.
    /// Default: none (the operator's, seen only without tenants or with an admin token).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The stream it reads (a window pipeline).
    #[serde(default)]
    pub stream: Option<String>,
    /// The pipeline whose results it rolls up (a rollup): its windows must be coarser
    /// and nest (a tumbling multiple, or calendar day, week or month), and it merges
    /// every aggregate of its input (so it has no `aggregates` of its own).
    #[serde(default)]
    pub input: Option<String>,
    /// Its windows.
    pub window: WindowConfig,
    /// What each window computes (a window pipeline; a rollup inherits its input's).
    #[serde(default)]
    pub aggregates: Vec<AggregateConfig>,
    /// Only events for which this expression is true enter the windows (the others are
    /// counted as filtered, not dead letters), e.g. `"status = 'ok' and value is not
    /// null"`; see `docs/expressions.md`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Fields computed from each event before the filter and the aggregates see it,
    /// e.g. `{ excess = "value - threshold" }`; one may read another (they are
    /// evaluated in the order their references need).
    #[serde(default)]
    pub derive: BTreeMap<String, String>,
    /// Bounded out-of-orderness of the watermark (default 0s).
    #[serde(default)]
    pub out_of_orderness: Option<Duration>,
    /// How long a closed window stays hot for instant corrections (default 24h; a
    /// rollup's default is its input's).
    #[serde(default)]
    pub allowed_lateness: Option<Duration>,
    /// How long raw events are kept behind the watermark (default 7d).
    #[serde(default)]
    pub retention: Option<Duration>,
    /// Silence after which a source partition stops holding the watermark, and a
    /// stalled watermark advances with the wall clock (default: never).
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
    /// Interval of early results of open windows (default: none).
    #[serde(default)]
    pub early_interval: Option<Duration>,
}

/// One side of a reconciliation: `{ stream = "payments", id_fields = ["payment_id"] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSide {
    /// The stream (its `[[stream]]` gives the event-time field and format).
    pub stream: String,
    /// The field(s) whose values form the id joined on (fields or key fields; with
    /// several, the values in this order). Events and audit records may name them
    /// differently.
    pub id_fields: Vec<String>,
}

/// `[[reconcile]]`: reconciles an event stream against an audit stream (seed 001):
/// reports ids audited but missing from the events, ids found after being reported
/// missing, and the completeness of every period, corrected as late data lands.
///
/// Keep `id_field` unset on both streams (or set it to a per-delivery id): a stream's
/// `id_field` drops records with an already stored id before the reconciliation could
/// count them as duplicates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// The reconciliation's name (its outputs are stored and queried under it, like a
    /// pipeline's).
    pub name: String,
    /// The tenant owning it (`reckon tenant create`): its name is then local to the
    /// tenant, stored as `tenant/name`, and its references name the tenant's objects.
    /// Default: none (the operator's, seen only without tenants or with an admin token).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The event stream.
    pub events: ReconcileSide,
    /// The audit stream; the fields of an audit record (but its id) are the context of
    /// its `missing` report.
    pub audit: ReconcileSide,
    /// *o*: completeness period (event time), e.g. `"15m"`.
    pub period: Duration,
    /// *n*: an audited id with no event by `audit time + n` of the watermark is
    /// missing; also the allowed out-of-orderness of both streams.
    pub missing_after: Duration,
    /// *m*: correction horizon and state retention, at least `missing_after`; records
    /// later than this are dead-lettered.
    pub horizon: Duration,
    /// *z*: processing time after which a silent stream stops holding the watermark and
    /// a stalled watermark advances with the wall clock (default: never).
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
}

impl ReconcileConfig {
    /// The engine's spec.
    pub fn spec(&self) -> Result<reckon_core::reconcile::ReconcileSpec> {
        let spec = reckon_core::reconcile::ReconcileSpec::new(
            &self.name,
            self.period.0,
            self.missing_after.0,
            self.horizon.0,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        match self.idle_timeout {
            Some(z) if z.0.0 <= 0 => Err(Error::Config(format!(
                "reconcile `{}`: idle_timeout (z) must be positive (leave it out for never)",
                self.name
            ))),
            Some(z) => Ok(spec.idle_timeout(z.0)),
            None => Ok(spec),
        }
    }
}

/// `reset = { at = "04:00", time_zone = "Europe/Amsterdam" }`: a daily reset at a local
/// time of day.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfig {
    /// `HH:MM` (or `HH:MM:SS`), local time.
    pub at: String,
    /// The IANA zone whose clock it follows (default UTC).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// `[[alert]]`: a rule on another pipeline's windows that fires (late, after
/// corrections) and retracts when corrections say so (`docs/alerts.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The rule's name: its episodes are stored and queried under it.
    pub name: String,
    /// The tenant owning it (see [`StreamConfig::tenant`]).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The pipeline (window, rollup, reconcile or running total) whose windows it
    /// watches.
    pub input: String,
    /// A filter expression over a window's values by name, and `count`:
    /// `above >= 10`.
    pub condition: String,
    /// Consecutive windows (in event time) the condition must hold before it fires.
    /// Default 1.
    #[serde(default = "default_for", rename = "for")]
    pub for_windows: u32,
    /// How long it keeps firing after the condition stops holding (event time).
    /// Default `0s`.
    #[serde(default)]
    pub keep_firing_for: Option<Duration>,
    /// Input windows older than the input's watermark minus this are no longer
    /// re-evaluated (their episodes are final). Default `7d`.
    #[serde(default)]
    pub retention: Option<Duration>,
    /// Labels of its notifications (Alertmanager's), e.g. `{ severity = "page" }`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations of its notifications, e.g. `{ summary = "many alarms" }`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn default_for() -> u32 {
    1
}

impl AlertConfig {
    /// The engine's spec.
    pub fn spec(&self) -> Result<reckon_core::operator::AlertSpec> {
        let bad = |m: String| Error::Config(format!("alert `{}`: {m}", self.name));
        if self.for_windows == 0 {
            return Err(bad("`for` must be at least 1 (windows)".into()));
        }
        reckon_core::Expr::parse_filter(&self.condition)
            .map_err(|e| bad(format!("condition: {e}\n{}", e.render(&self.condition))))?;
        let keep = self.keep_firing_for.map_or(Span(0), |d| d.0);
        let retention = self
            .retention
            .map_or(Span(7 * 24 * 3_600_000_000_000), |d| d.0);
        if keep.0 < 0 || retention.0 < 0 {
            return Err(bad(
                "keep_firing_for and retention must not be negative".into()
            ));
        }
        Ok(reckon_core::operator::AlertSpec {
            name: Arc::from(self.name.as_str()),
            input: Arc::from(self.input.as_str()),
            condition: self.condition.clone(),
            for_windows: self.for_windows,
            keep_firing_for: keep,
            retention,
        })
    }
}

/// `[[running_total]]`: per key, the cumulative sum of `value` in event-time order
/// (seed 003's occupancy), with as-of values at any event time (`docs/running-totals.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningTotalConfig {
    /// Its name (its buckets are stored and queried under it, like a pipeline's).
    pub name: String,
    /// The tenant owning it (`reckon tenant create`): its name is then local to the
    /// tenant, stored as `tenant/name`, and its references name the tenant's objects.
    /// Default: none (the operator's, seen only without tenants or with an admin token).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The stream it reads.
    pub stream: String,
    /// Width of the buckets it stores as versioned windows (e.g. `"1m"`).
    pub bucket: Duration,
    /// What each event adds: a field or an expression (`docs/expressions.md`), e.g.
    /// `"direction"` or `"entries - exits"`; without it each event counts 1.
    #[serde(default)]
    pub value: Option<String>,
    /// A daily reset at a local time.
    #[serde(default)]
    pub reset: Option<ResetConfig>,
    /// `true`: never below zero (occupancy).
    #[serde(default)]
    pub clamp: bool,
    /// `true`: each event is a reading (a gauge), and the value at a time is the last
    /// reading at or before it, not a sum (no clamp, no reset).
    #[serde(default)]
    pub gauge: bool,
    /// Bounded out-of-orderness of the watermark (default 0s).
    #[serde(default)]
    pub out_of_orderness: Option<Duration>,
    /// How long events are kept (in memory and in the raw log) behind the watermark,
    /// and late events accepted (default 7d).
    #[serde(default)]
    pub retention: Option<Duration>,
    /// Silence after which a partition stops holding the watermark (default: never).
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
    /// A time-valid mapping of the events' keys (a sensor) to the totals' keys (a
    /// space): `{ stream = "dpu_location", key_fields = ["space"] }`.
    #[serde(default)]
    pub mapping: Option<MappingConfig>,
}

/// `mapping = { stream = "dpu_location", key_fields = ["space"] }`: rows of `stream`,
/// keyed like the events (same `key_fields` on both streams), each valid from its event
/// time until the next row of the same key; `key_fields` are the row fields that make
/// the totals' key, and `value` may read the row's other fields (e.g. `sign`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// The stream of mapping rows.
    pub stream: String,
    /// The row fields that make a total's key.
    pub key_fields: Vec<String>,
}

impl RunningTotalConfig {
    /// The engine's spec; errors name the running total and the setting.
    pub fn spec(&self) -> Result<reckon_core::operator::RunningSpec> {
        let bad = |m: String| Error::Config(format!("running_total `{}`: {m}", self.name));
        let mut spec = reckon_core::operator::RunningSpec::new(&self.name, self.bucket.0);
        if let Some(src) = &self.value {
            spec.value =
                Some(Expr::parse(src).map_err(|e| bad(format!("value: {e}\n{}", e.render(src))))?);
        }
        if let Some(r) = &self.reset {
            let at = parse_time_of_day(&r.at).map_err(|m| bad(format!("reset.at: {m}")))?;
            let zone = r.time_zone.as_deref().unwrap_or("UTC");
            let tz = reckon_core::window::Tz::get(zone)
                .map_err(|e| bad(format!("reset.time_zone: {e}")))?;
            spec.reset = Some(reckon_core::operator::Reset { at, tz });
        }
        spec.clamp = self.clamp;
        spec.gauge = self.gauge;
        spec.mapping = self
            .mapping
            .as_ref()
            .map(|m| reckon_core::operator::Mapping {
                stream: Arc::from(m.stream.as_str()),
                key_fields: m.key_fields.clone(),
            });
        if let Some(d) = self.out_of_orderness {
            spec.out_of_orderness = d.0;
        }
        if let Some(d) = self.retention {
            spec.retention = d.0;
        }
        match self.idle_timeout {
            Some(z) if z.0.0 <= 0 => {
                return Err(bad(
                    "idle_timeout must be positive (leave it out for never)".into(),
                ));
            }
            Some(z) => spec.idle_timeout = Some(z.0),
            None => {}
        }
        spec.validate().map_err(|e| match e {
            reckon_core::Error::InvalidSpec(m) => Error::Config(m),
            other => Error::Config(other.to_string()),
        })?;
        Ok(spec)
    }
}

/// `"04:00"` or `"04:00:30"` as seconds after midnight.
fn parse_time_of_day(s: &str) -> std::result::Result<u32, String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let field = |i: usize, max: u32| -> std::result::Result<u32, String> {
        match parts.get(i) {
            None => Ok(0),
            Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let n: u32 = p.parse().map_err(|_| format!("`{s}` is not HH:MM"))?;
                if n > max {
                    Err(format!(
                        "`{s}` is not a time of day (HH:MM, 00:00 to 23:59)"
                    ))
                } else {
                    Ok(n)
                }
            }
            Some(_) => Err(format!("`{s}` is not a time of day (HH:MM or HH:MM:SS)")),
        }
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("`{s}` is not a time of day (HH:MM or HH:MM:SS)"));
    }
    Ok(field(0, 23)? * 3600 + field(1, 59)? * 60 + field(2, 59)?)
}

/// A duration written as `"90s"`, `"1h30m"`, `"7d"` (units ns, us, ms, s, m, h, d, w).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Duration(pub Span);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Duration)
            .map_err(serde::de::Error::custom)
    }
}

/// Checks a tenant's name: 1 to 63 of `a-z`, `0-9`, `_` and `-`, starting with a
/// letter or digit (it prefixes stored names and appears in URLs and metrics).
pub fn check_tenant_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !name.starts_with(['_', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant `{name}` is not a valid name: use 1 to 63 of a-z, 0-9, `_` and `-`, starting with a letter or digit"
        ))
    }
}

/// Parses `"1h30m"`-style durations; the error says what was expected.
pub fn parse_duration(s: &str) -> std::result::Result<Span, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (write e.g. \"10s\", \"1h30m\", \"7d\")".into());
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            "" => {
                return Err(format!(
                    "`{s}`: the number {n} needs a unit (ns, us, ms, s, m, h, d, w)"
                ));
            }
            other => {
                return Err(format!(
                    "`{s}`: unknown unit `{other}` (ns, us, ms, s, m, h, d, w)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("`{s}` is too long (at most about 292 years)"))?;
    }
    Ok(Span(total))
}

impl Config {
    /// Parses and checks a configuration; errors name the line, or the pipeline and
    /// setting.
    pub fn from_toml(text: &str) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.qualify_tenants()?;
        config.resolve_zones()?;
        config.check()?;
        Ok(config)
    }

    /// This configuration with `more`'s streams and operators added (the definitions
    /// made over the HTTP API, `docs/definitions.md`): `more`'s objects get their stored
    /// names as in a file, and the whole is checked as one file would be, with the same
    /// messages. `more`'s `[store]`, `[server]` and webhooks are ignored.
    pub fn extended(&self, mut more: Config) -> Result<Config> {
        more.qualify_tenants()?;
        more.resolve_zones()?;
        let mut c = self.clone();
        c.streams.append(&mut more.streams);
        c.pipelines.append(&mut more.pipelines);
        c.reconciles.append(&mut more.reconciles);
        c.running_totals.append(&mut more.running_totals);
        c.alerts.append(&mut more.alerts);
        c.check()?;
        Ok(c)
    }

    /// Checks every stream's `time_zone` and hands it to its time pattern.
    fn resolve_zones(&mut self) -> Result<()> {
        for s in &mut self.streams {
            let Some(zone) = &s.time_zone else {
                continue;
            };
            jiff::tz::TimeZone::get(zone).map_err(|e| {
                Error::Config(format!("stream `{}`: time_zone `{zone}`: {e}", s.name))
            })?;
            match &mut s.time_format {
                TimeFormat::Pattern(p) => p.zone = intern(zone),
                _ => {
                    return Err(Error::Config(format!(
                        "stream `{}`: time_zone applies to a time_format pattern (such as \"%Y-%m-%d %H:%M:%S\"); RFC 3339 and Unix times carry their own zone",
                        s.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Gives every tenant-owned object its stored name, `tenant/name`, and points its
    /// references at the same tenant's objects (a tenant cannot name another's).
    fn qualify_tenants(&mut self) -> Result<()> {
        fn qualify(what: &str, tenant: &Option<String>, names: &mut [&mut String]) -> Result<()> {
            let Some(t) = tenant else {
                return Ok(());
            };
            check_tenant_name(t).map_err(|e| Error::Config(format!("{what}: {e}")))?;
            for n in names.iter_mut() {
                if n.contains('/') {
                    return Err(Error::Config(format!(
                        "{what} of tenant `{t}`: `{n}` cannot contain `/` (names are local to the tenant)"
                    )));
                }
                **n = format!("{t}/{n}");
            }
            Ok(())
        }
        for s in &mut self.streams {
            let what = format!("stream `{}`", s.name);
            qualify(&what, &s.tenant, &mut [&mut s.name])?;
        }
        for p in &mut self.pipelines {
            let what = format!("pipeline `{}`", p.name);
            let mut names = vec![&mut p.name];
            names.extend(p.stream.as_mut());
            names.extend(p.input.as_mut());
            qualify(&what, &p.tenant, &mut names)?;
        }
        for r in &mut self.reconciles {
            let what = format!("reconcile `{}`", r.name);
            qualify(
                &what,
                &r.tenant,
                &mut [&mut r.name, &mut r.events.stream, &mut r.audit.stream],
            )?;
        }
        for r in &mut self.running_totals {
            let what = format!("running_total `{}`", r.name);
            let mut names = vec![&mut r.name, &mut r.stream];
            names.extend(r.mapping.as_mut().map(|m| &mut m.stream));
            qualify(&what, &r.tenant, &mut names)?;
        }
        for a in &mut self.alerts {
            let what = format!("alert `{}`", a.name);
            qualify(&what, &a.tenant, &mut [&mut a.name, &mut a.input])?;
        }
        for w in &mut self.webhooks {
            let what = format!("webhook `{}`", w.name);
            let mut names = vec![&mut w.name];
            names.extend(w.pipelines.iter_mut());
            qualify(&what, &w.tenant, &mut names)?;
        }
        Ok(())
    }

    /// The tenant owning a stored name (`tenant/name`), and the name local to it.
    pub fn split_tenant(name: &str) -> (Option<&str>, &str) {
        match name.split_once('/') {
            Some((t, n)) => (Some(t), n),
            None => (None, name),
        }
    }

    fn check(&self) -> Result<()> {
        for (i, s) in self.streams.iter().enumerate() {
            if self.streams[..i].iter().any(|t| t.name == s.name) {
                return Err(Error::Config(format!(
                    "stream `{}` is defined twice",
                    s.name
                )));
            }
        }
        for (i, p) in self.pipelines.iter().enumerate() {
            if self.pipelines[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::Config(format!(
                    "pipeline `{}` is defined twice",
                    p.name
                )));
            }
            match (&p.stream, &p.input) {
                (Some(stream), None) => {
                    if self.stream(stream).is_none() {
                        return Err(Error::Config(format!(
                            "pipeline `{}` reads stream `{stream}`, which no [[stream]] defines",
                            p.name
                        )));
                    }
                    if p.aggregates.is_empty() {
                        return Err(Error::Config(format!(
                            "pipeline `{}`: `aggregates` must name at least one aggregate",
                            p.name
                        )));
                    }
                    p.spec()?;
                }
                (None, Some(input)) => {
                    if !p.aggregates.is_empty() {
                        return Err(Error::Config(format!(
                            "pipeline `{}` rolls up `{input}` and merges all its aggregates: leave `aggregates` out",
                            p.name
                        )));
                    }
                    for (setting, set) in [
                        ("out_of_orderness", p.out_of_orderness.is_some()),
                        ("retention", p.retention.is_some()),
                        ("idle_timeout", p.idle_timeout.is_some()),
                        ("early_interval", p.early_interval.is_some()),
                        ("filter", p.filter.is_some()),
                        ("derive", !p.derive.is_empty()),
                    ] {
                        if set {
                            return Err(Error::Config(format!(
                                "pipeline `{}` rolls up `{input}`: `{setting}` comes from its input and cannot be set",
                                p.name
                            )));
                        }
                    }
                    if !self.pipelines.iter().any(|q| &q.name == input)
                        && !self.reconciles.iter().any(|r| &r.name == input)
                    {
                        return Err(Error::Config(format!(
                            "pipeline `{}` rolls up `{input}`, which no [[pipeline]] defines",
                            p.name
                        )));
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(Error::Config(format!(
                        "pipeline `{}`: give `stream` (events) or `input` (a pipeline to roll up), not both",
                        p.name
                    )));
                }
                (None, None) => {
                    return Err(Error::Config(format!(
                        "pipeline `{}`: missing `stream` (the events it reads) or `input` (a pipeline to roll up)",
                        p.name
                    )));
                }
            }
        }
        for (i, r) in self.reconciles.iter().enumerate() {
            if self.pipelines.iter().any(|p| p.name == r.name)
                || self.reconciles[..i].iter().any(|q| q.name == r.name)
            {
                return Err(Error::Config(format!(
                    "reconcile `{}`: the name is already used by another pipeline or reconcile",
                    r.name
                )));
            }
            for (side, cfg) in [("events", &r.events), ("audit", &r.audit)] {
                if self.stream(&cfg.stream).is_none() {
                    return Err(Error::Config(format!(
                        "reconcile `{}` reads {side} stream `{}`, which no [[stream]] defines",
                        r.name, cfg.stream
                    )));
                }
                if cfg.id_fields.is_empty() || cfg.id_fields.iter().any(|f| f.is_empty()) {
                    return Err(Error::Config(format!(
                        "reconcile `{}`: {side}.id_fields must name at least one field",
                        r.name
                    )));
                }
            }
            if r.events.stream == r.audit.stream {
                return Err(Error::Config(format!(
                    "reconcile `{}`: events and audit must be two different streams",
                    r.name
                )));
            }
            r.spec()?;
        }
        for (i, r) in self.running_totals.iter().enumerate() {
            if self.pipelines.iter().any(|p| p.name == r.name)
                || self.reconciles.iter().any(|q| q.name == r.name)
                || self.running_totals[..i].iter().any(|q| q.name == r.name)
            {
                return Err(Error::Config(format!(
                    "running_total `{}`: the name is already used by another pipeline, reconcile or running_total",
                    r.name
                )));
            }
            let Some(events) = self.stream(&r.stream) else {
                return Err(Error::Config(format!(
                    "running_total `{}` reads stream `{}`, which no [[stream]] defines",
                    r.name, r.stream
                )));
            };
            if let Some(m) = &r.mapping {
                let Some(rows) = self.stream(&m.stream) else {
                    return Err(Error::Config(format!(
                        "running_total `{}`: mapping.stream `{}` is not a [[stream]]",
                        r.name, m.stream
                    )));
                };
                if m.stream == r.stream {
                    return Err(Error::Config(format!(
                        "running_total `{}`: the mapping rows need a stream of their own, not `{}`",
                        r.name, r.stream
                    )));
                }
                if rows.key_fields != events.key_fields {
                    return Err(Error::Config(format!(
                        "running_total `{}`: mapping stream `{}` must be keyed like `{}` (key_fields {:?}, not {:?}): a row maps the events of its key",
                        r.name, m.stream, r.stream, events.key_fields, rows.key_fields
                    )));
                }
            }
            r.spec()?;
        }
        for (i, a) in self.alerts.iter().enumerate() {
            if self.output_names().filter(|n| *n == a.name).count() > 1
                || self.alerts[..i].iter().any(|b| b.name == a.name)
            {
                return Err(Error::Config(format!(
                    "alert `{}`: the name is already used by another pipeline or alert",
                    a.name
                )));
            }
            if !self.output_names().any(|n| n == a.input) {
                return Err(Error::Config(format!(
                    "alert `{}` watches `{}`, which no [[pipeline]], [[reconcile]], [[running_total]] or [[alert]] defines",
                    a.name, a.input
                )));
            }
            a.spec()?;
        }
        // The dataflow: every input exists and there is no cycle; rollups nest.
        let ordered = self.operators()?;
        for op in &ordered {
            if let OperatorConfig::Rollup(p) = op {
                self.rollup_spec(p)?;
            }
        }
        crate::connectors::validate(self)?;
        for (i, b) in self.backfills.iter().enumerate() {
            if b.name.is_empty() || b.name.contains('/') {
                return Err(Error::Config(format!(
                    "backfill `{}`: give a name without `/`",
                    b.name
                )));
            }
            if self.backfills[..i].iter().any(|c| c.name == b.name) {
                return Err(Error::Config(format!(
                    "backfill `{}` is defined twice",
                    b.name
                )));
            }
            if b.interval.0.0 <= 0 {
                return Err(Error::Config(format!(
                    "backfill `{}`: interval must be positive",
                    b.name
                )));
            }
            if let Some(g) = &b.on_gap
                && g != "fail"
                && g != "all"
            {
                return Err(Error::Config(format!(
                    "backfill `{}`: on_gap = \"{g}\": use \"fail\" or \"all\"",
                    b.name
                )));
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if self.webhooks[..i].iter().any(|v| v.name == w.name) {
                return Err(Error::Config(format!(
                    "webhook `{}` is defined twice",
                    w.name
                )));
            }
            match (w.url.is_empty(), w.command.is_empty()) {
                (true, true) => {
                    return Err(Error::Config(format!(
                        "webhook `{}`: give `url` (to POST to) or `command` (a program to run)",
                        w.name
                    )));
                }
                (false, false) => {
                    return Err(Error::Config(format!(
                        "webhook `{}`: give `url` or `command`, not both",
                        w.name
                    )));
                }
                (false, true) => {
                    if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                        return Err(Error::Config(format!(
                            "webhook `{}`: url `{}` must start with http:// or https://",
                            w.name, w.url
                        )));
                    }
                }
                (true, false) => {
                    if w.command[0].is_empty() {
                        return Err(Error::Config(format!(
                            "webhook `{}`: `command` must start with the program to run",
                            w.name
                        )));
                    }
                }
            }
            if w.format == WebhookFormat::Trigger
                && let Some(p) = w.pipelines.iter().find(|p| self.alert(p).is_none())
            {
                return Err(Error::Config(format!(
                    "webhook `{}` has format \"trigger\", which runs a batch per alert episode: `{p}` is not an [[alert]]",
                    w.name
                )));
            }
            if w.max_digest_windows == 0 {
                return Err(Error::Config(format!(
                    "webhook `{}`: max_digest_windows must be at least 1",
                    w.name
                )));
            }
            if w.max_attempts == 0 {
                return Err(Error::Config(format!(
                    "webhook `{}`: max_attempts must be at least 1",
                    w.name
                )));
            }
            for p in &w.pipelines {
                if !self.output_names().any(|q| q == p) {
                    return Err(Error::Config(format!(
                        "webhook `{}` names pipeline `{p}`, which no [[pipeline]] or [[reconcile]] defines",
                        w.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The stored names of `tenant`'s streams.
    pub fn streams_of(&self, tenant: &str) -> Vec<&str> {
        self.streams
            .iter()
            .filter(|s| s.tenant.as_deref() == Some(tenant))
            .map(|s| s.name.as_str())
            .collect()
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The names results are stored under: every pipeline's, then every
    /// reconciliation's, in configuration order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.pipelines
            .iter()
            .map(|p| p.name.as_str())
            .chain(self.reconciles.iter().map(|r| r.name.as_str()))
            .chain(self.running_totals.iter().map(|r| r.name.as_str()))
            .chain(self.alerts.iter().map(|a| a.name.as_str()))
    }

    /// An alert rule by name.
    pub fn alert(&self, name: &str) -> Option<&AlertConfig> {
        self.alerts.iter().find(|a| a.name == name)
    }

    /// A running total by name.
    pub fn running_total(&self, name: &str) -> Option<&RunningTotalConfig> {
        self.running_totals.iter().find(|r| r.name == name)
    }

    /// A reconciliation by name.
    pub fn reconcile(&self, name: &str) -> Option<&ReconcileConfig> {
        self.reconciles.iter().find(|r| r.name == name)
    }

    /// A pipeline (window or rollup) by name.
    pub fn pipeline(&self, name: &str) -> Option<&PipelineConfig> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// An operator (of any kind) by name.
    pub fn operator(&self, name: &str) -> Option<OperatorConfig<'_>> {
        self.pipeline(name)
            .map(OperatorConfig::of_pipeline)
            .or_else(|| self.reconcile(name).map(OperatorConfig::Reconcile))
            .or_else(|| self.running_total(name).map(OperatorConfig::Running))
            .or_else(|| self.alert(name).map(OperatorConfig::Alert))
    }

    /// Every operator, in topological order (an operator after every operator it reads;
    /// otherwise in configuration order: pipelines, then reconciliations). An unknown
    /// input or a cycle is an error naming them.
    pub fn operators(&self) -> Result<Vec<OperatorConfig<'_>>> {
        let all: Vec<OperatorConfig<'_>> = self
            .pipelines
            .iter()
            .map(OperatorConfig::of_pipeline)
            .chain(self.reconciles.iter().map(OperatorConfig::Reconcile))
            .chain(self.running_totals.iter().map(OperatorConfig::Running))
            .chain(self.alerts.iter().map(OperatorConfig::Alert))
            .collect();
        // Depth-first, in configuration order: 0 = not seen, 1 = on the path, 2 = done.
        let mut mark = vec![0u8; all.len()];
        let mut order = Vec::with_capacity(all.len());
        fn visit<'a>(
            i: usize,
            all: &[OperatorConfig<'a>],
            mark: &mut [u8],
            path: &mut Vec<usize>,
            order: &mut Vec<OperatorConfig<'a>>,
        ) -> Result<()> {
            match mark[i] {
                2 => return Ok(()),
                1 => {
                    let from = path.iter().position(|&p| p == i).unwrap_or(0);
                    let cycle: Vec<String> = path[from..]
                        .iter()
                        .chain(std::iter::once(&i))
                        .map(|&p| format!("`{}`", all[p].name()))
                        .collect();
                    return Err(Error::Config(format!(
                        "pipelines read each other in a cycle: {}",
                        cycle.join(" reads ")
                    )));
                }
                _ => {}
            }
            mark[i] = 1;
            path.push(i);
            for input in all[i].inputs() {
                if let Source::Operator(name) = input {
                    let Some(j) = all.iter().position(|o| o.name() == &*name) else {
                        return Err(Error::Config(format!(
                            "pipeline `{}` reads `{name}`, which no [[pipeline]] defines",
                            all[i].name()
                        )));
                    };
                    visit(j, all, mark, path, order)?;
                }
            }
            path.pop();
            mark[i] = 2;
            order.push(all[i]);
            Ok(())
        }
        let mut path = Vec::new();
        for i in 0..all.len() {
            visit(i, &all, &mut mark, &mut path, &mut order)?;
        }
        Ok(order)
    }

    /// The spec of a rollup: its input's aggregates (through a chain of rollups), its
    /// windows checked to nest in the input's.
    pub fn rollup_spec(&self, p: &PipelineConfig) -> Result<RollupSpec> {
        let bad = |m: String| Error::Config(format!("pipeline `{}`: {m}", p.name));
        let Some(input) = p.input.as_deref() else {
            return Err(bad("is not a rollup (it has no `input`)".into()));
        };
        let Some(up) = self.pipeline(input) else {
            return Err(bad(format!(
                "rolls up `{input}`, which is not a [[pipeline]] (a reconciliation's results have no aggregates to merge)"
            )));
        };
        // The window pipeline at the bottom of the chain (the chain has no cycle: the
        // topological order was checked first).
        let (child_window, base) = match &up.input {
            None => (up.spec()?.window, up.spec()?),
            Some(_) => {
                let r = self.rollup_spec(up)?;
                let base_name = self.base_of(up).unwrap_or(up);
                (r.window, base_name.spec()?)
            }
        };
        let window = p.window.spec().map_err(bad)?;
        let allowed_lateness = match p.allowed_lateness {
            Some(d) => d.0,
            None => base.allowed_lateness,
        };
        if allowed_lateness.0 < 0 {
            return Err(bad("allowed_lateness must not be negative".into()));
        }
        let spec = RollupSpec {
            name: Arc::from(p.name.as_str()),
            input: Arc::from(input),
            window,
            aggregates: base.aggregates.clone(),
            allowed_lateness,
        };
        spec.check_nesting(&child_window).map_err(bad)?;
        Ok(spec)
    }

    /// The window pipeline at the bottom of a chain of rollups (itself for a window
    /// pipeline).
    pub fn base_of<'a>(&'a self, mut p: &'a PipelineConfig) -> Option<&'a PipelineConfig> {
        for _ in 0..=self.pipelines.len() {
            match &p.input {
                None => return Some(p),
                Some(i) => p = self.pipeline(i)?,
            }
        }
        None
    }

    /// The stream whose events an operator's results come from, as people name it: a
    /// window pipeline's stream, a rollup's base stream, a reconciliation's audit
    /// stream.
    pub fn origin_stream(&self, name: &str) -> Option<&str> {
        match self.operator(name)? {
            OperatorConfig::Window(p) => p.stream.as_deref(),
            OperatorConfig::Rollup(p) => self.base_of(p).and_then(|b| b.stream.as_deref()),
            OperatorConfig::Reconcile(r) => Some(r.audit.stream.as_str()),
            OperatorConfig::Running(r) => Some(r.stream.as_str()),
            OperatorConfig::Alert(a) => self.origin_stream(&a.input),
        }
    }
}

/// One operator of the configuration, whatever its kind: what the runtime, the queries
/// and the webhooks see. A new kind is a variant here and a module in
/// `reckon_core::operator`.
#[derive(Debug, Clone, Copy)]
pub enum OperatorConfig<'a> {
    /// `[[pipeline]]` with a `stream`: windows and aggregates over events.
    Window(&'a PipelineConfig),
    /// `[[pipeline]]` with an `input`: coarser windows merged from another pipeline.
    Rollup(&'a PipelineConfig),
    /// `[[reconcile]]`: an event stream against an audit stream.
    Reconcile(&'a ReconcileConfig),
    /// `[[running_total]]`: cumulative sums per key.
    Running(&'a RunningTotalConfig),
    /// `[[alert]]`: a rule on another operator's windows.
    Alert(&'a AlertConfig),
}

/// A detail of an operator for people (`GET /v1/pipelines`, `reckon serve`'s log).
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// A name (a stream, an input).
    Name(String),
    /// A duration.
    Span(Span),
    /// Text shown as it is (an alert's condition).
    Text(String),
}

impl<'a> OperatorConfig<'a> {
    fn of_pipeline(p: &'a PipelineConfig) -> OperatorConfig<'a> {
        if p.input.is_some() {
            OperatorConfig::Rollup(p)
        } else {
            OperatorConfig::Window(p)
        }
    }

    /// Its name.
    pub fn name(&self) -> &'a str {
        match self {
            OperatorConfig::Window(p) | OperatorConfig::Rollup(p) => &p.name,
            OperatorConfig::Reconcile(r) => &r.name,
            OperatorConfig::Running(r) => &r.name,
            OperatorConfig::Alert(a) => &a.name,
        }
    }

    /// Its kind (`window`, `rollup`, `reconcile`).
    pub fn kind(&self) -> &'static str {
        match self {
            OperatorConfig::Window(_) => "window",
            OperatorConfig::Rollup(_) => "rollup",
            OperatorConfig::Reconcile(_) => "reconcile",
            OperatorConfig::Running(_) => "running_total",
            OperatorConfig::Alert(_) => "alert",
        }
    }

    /// Its inputs, in the order the engine counts them.
    pub fn inputs(&self) -> Vec<Source> {
        match self {
            OperatorConfig::Window(p) => p
                .stream
                .iter()
                .map(|s| Source::Stream(Arc::from(s.as_str())))
                .collect(),
            OperatorConfig::Rollup(p) => p
                .input
                .iter()
                .map(|s| Source::Operator(Arc::from(s.as_str())))
                .collect(),
            OperatorConfig::Reconcile(r) => vec![
                Source::Stream(Arc::from(r.events.stream.as_str())),
                Source::Stream(Arc::from(r.audit.stream.as_str())),
            ],
            OperatorConfig::Running(r) => std::iter::once(r.stream.as_str())
                .chain(r.mapping.as_ref().map(|m| m.stream.as_str()))
                .map(|s| Source::Stream(Arc::from(s)))
                .collect(),
            OperatorConfig::Alert(a) => vec![Source::Operator(Arc::from(a.input.as_str()))],
        }
    }

    /// What people want to know of it beyond name and kind.
    pub fn details(&self) -> Vec<(&'static str, Detail)> {
        match self {
            OperatorConfig::Window(p) => {
                vec![("stream", Detail::Name(p.stream.clone().unwrap_or_default()))]
            }
            OperatorConfig::Rollup(p) => {
                vec![("input", Detail::Name(p.input.clone().unwrap_or_default()))]
            }
            OperatorConfig::Reconcile(r) => vec![
                ("events", Detail::Name(r.events.stream.clone())),
                ("audit", Detail::Name(r.audit.stream.clone())),
                ("period", Detail::Span(r.period.0)),
                ("missing_after", Detail::Span(r.missing_after.0)),
                ("horizon", Detail::Span(r.horizon.0)),
            ],
            OperatorConfig::Running(r) => vec![
                ("stream", Detail::Name(r.stream.clone())),
                ("bucket", Detail::Span(r.bucket.0)),
            ],
            OperatorConfig::Alert(a) => vec![
                ("input", Detail::Name(a.input.clone())),
                ("condition", Detail::Text(a.condition.clone())),
            ],
        }
    }

    /// Builds its engine, restored from `snapshot` when there is one. `secret` keys a
    /// new reconciliation's id fingerprints; `max_id_bytes` bounds its ids.
    pub fn build(
        &self,
        config: &Config,
        snapshot: Option<&[u8]>,
        secret: [u8; reckon_core::reconcile::ID_SECRET_LEN],
        max_id_bytes: usize,
    ) -> Result<Box<dyn Operator>> {
        Ok(match self {
            OperatorConfig::Window(p) => Box::new(WindowOperator::new(
                p.spec()?,
                p.stream.as_deref().unwrap_or_default(),
                snapshot,
            )?),
            OperatorConfig::Rollup(p) => Box::new(Rollup::new(config.rollup_spec(p)?, snapshot)?),
            OperatorConfig::Reconcile(r) => {
                let side = |s: &ReconcileSide| IdFields {
                    stream: Arc::from(s.stream.as_str()),
                    names: s.id_fields.clone(),
                    stream_id_field: config.stream(&s.stream).and_then(|c| c.id_field.clone()),
                };
                Box::new(ReconcileOperator::new(
                    r.spec()?,
                    side(&r.events),
                    side(&r.audit),
                    max_id_bytes,
                    snapshot,
                    secret,
                )?)
            }
            OperatorConfig::Running(r) => {
                Box::new(RunningTotal::new(r.spec()?, &r.stream, snapshot)?)
            }
            OperatorConfig::Alert(a) => Box::new(AlertRule::new(a.spec()?, snapshot)?),
        })
    }
}

impl PipelineConfig {
    /// The engine's spec for this pipeline.
    pub fn spec(&self) -> Result<PipelineSpec> {
        let bad = |m: String| Error::Config(format!("pipeline `{}`: {m}", self.name));
        let window = self.window.spec().map_err(bad)?;
        let mut b = PipelineSpec::builder(&self.name).window(window);
        for (name, expr) in derive_order(&self.derive).map_err(bad)? {
            b = b.derive(name, expr);
        }
        if let Some(f) = &self.filter {
            b = b.filter(parse_filter(f, "filter").map_err(bad)?);
        }
        for a in &self.aggregates {
            let mut spec = aggregate(a).map_err(bad)?;
            if let Some(f) = &a.filter {
                let what = format!("aggregate `{}`: filter", spec.name);
                spec = spec.filtered(parse_filter(f, &what).map_err(bad)?);
            }
            b = b.aggregate(spec);
        }
        if let Some(d) = self.out_of_orderness {
            b = b.out_of_orderness(d.0);
        }
        if let Some(d) = self.allowed_lateness {
            b = b.allowed_lateness(d.0);
        }
        if let Some(d) = self.retention {
            b = b.retention(d.0);
        }
        if let Some(d) = self.idle_timeout {
            b = b.idle_timeout(d.0);
        }
        if let Some(d) = self.early_interval {
            b = b.early_interval(d.0);
        }
        b.build().map_err(|e| Error::Config(e.to_string()))
    }
}

/// A filter expression, or an error naming `what` with the source and a caret under
/// the position.
fn parse_filter(src: &str, what: &str) -> std::result::Result<Expr, String> {
    Expr::parse_filter(src).map_err(|e| format!("{what}: {e}\n{}", e.render(src)))
}

/// The derived fields, parsed, in an order where each comes after the derived fields
/// it reads (a cycle is an error naming it).
fn derive_order(
    derive: &BTreeMap<String, String>,
) -> std::result::Result<Vec<(&str, Expr)>, String> {
    let mut parsed: Vec<(&str, Expr)> = Vec::with_capacity(derive.len());
    for (name, src) in derive {
        if name.is_empty() {
            return Err("a derived field has an empty name".into());
        }
        let e = Expr::parse(src).map_err(|e| format!("derive `{name}`: {e}\n{}", e.render(src)))?;
        parsed.push((name.as_str(), e));
    }
    let mut order = Vec::with_capacity(parsed.len());
    let mut placed = vec![false; parsed.len()];
    while order.len() < parsed.len() {
        let before = order.len();
        for i in 0..parsed.len() {
            if placed[i] {
                continue;
            }
            let ready = parsed[i].1.fields().iter().all(|f| {
                &**f == parsed[i].0
                    || parsed
                        .iter()
                        .zip(&placed)
                        .all(|((n, _), p)| *p || *n != &**f)
            });
            if ready {
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            let stuck: Vec<String> = parsed
                .iter()
                .zip(&placed)
                .filter(|(_, p)| !**p)
                .map(|((n, _), _)| format!("`{n}`"))
                .collect();
            return Err(format!(
                "derived fields {} read each other in a cycle",
                stuck.join(", ")
            ));
        }
    }
    let mut slots: Vec<Option<(&str, Expr)>> = parsed.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

fn aggregate(a: &AggregateConfig) -> std::result::Result<AggregateSpec, String> {
    let kind = match a.function.as_str() {
        "count" => AggKind::Count,
        "sum" => AggKind::Sum,
        "mean" | "avg" => AggKind::Mean,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        "first" => AggKind::First,
        "last" => AggKind::Last,
        "variance" => AggKind::Variance,
        "stddev" => AggKind::Stddev,
        "distinct" => AggKind::DistinctApprox,
        "quantile" => AggKind::Quantile {
            q: a.q
                .ok_or("aggregate `quantile` needs `q` (e.g. q = 0.99)")?,
            accuracy: a.accuracy.unwrap_or(0.01),
        },
        other => {
            return Err(format!(
                "unknown aggregate fn `{other}` (count, sum, mean, min, max, first, last, variance, stddev, distinct, quantile)"
            ));
        }
    };
    if a.function != "quantile" && (a.q.is_some() || a.accuracy.is_some()) {
        return Err(format!(
            "`q` and `accuracy` only apply to quantile, not `{}`",
            a.function
        ));
    }
    let spec = match (&a.field, kind) {
        (None, AggKind::Count) => AggregateSpec::count(),
        (None, _) => return Err(format!("aggregate `{}` needs a `field`", a.function)),
        (Some(f), k) => AggregateSpec::new(k, f),
    };
    Ok(match &a.name {
        Some(n) => spec.named(n),
        None => spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED000: &str = r#"
        [store]
        path = "/tmp/x"

        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        time_format = "unix_ns"

        [[pipeline]]
        name = "water_level_mean_1h"
        stream = "water_level"
        window = { type = "tumbling", size = "1h" }
        aggregates = [{ fn = "mean", field = "level", name = "mean" }, { fn = "count" }]
        out_of_orderness = "10s"
        allowed_lateness = "24h"
        retention = "7d"
        idle_timeout = "1m30s"
    "#;

    #[test]
    fn seed000_config_builds_the_expected_spec() {
        let c = Config::from_toml(SEED000).unwrap();
        assert_eq!(
            c.stream("water_level").unwrap().time_format,
            TimeFormat::UnixNs
        );
        let spec = c.pipelines[0].spec().unwrap();
        assert_eq!(spec.window, WindowSpec::tumbling(Span::hours(1)));
        assert_eq!(
            &*spec
                .columns()
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            ["mean", "count"]
        );
        assert_eq!(spec.out_of_orderness, Span::secs(10));
        assert_eq!(spec.retention, Span::days(7));
        assert_eq!(spec.idle_timeout, Some(Span::secs(90)));
        assert_eq!(c.store.path, PathBuf::from("/tmp/x"));
    }

    /// The example in the README is a configuration that works.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\n[store]")
            .expect("the pipeline toml block in the README")
            + 8;
        let len = readme[start..].find("```").expect("end of the toml block");
        let c = Config::from_toml(&readme[start..start + len]).unwrap();
        assert_eq!(
            c.pipelines[0].spec().unwrap().allowed_lateness,
            Span::hours(24)
        );
        assert_eq!(c.streams[0].id_field.as_deref(), Some("id"));
    }

    const SEED001: &str = r#"
        [[stream]]
        name = "payments"
        format = "cloudevents"
        [[stream]]
        name = "payments_audit"
        [[reconcile]]
        name = "payments_recon"
        events = { stream = "payments", id_fields = ["data.payment_id"] }
        audit = { stream = "payments_audit", id_fields = ["ref"] }
        period = "15m"
        missing_after = "10m"
        horizon = "1h"
        idle_timeout = "2m"
    "#;

    #[test]
    fn a_reconcile_builds_its_spec_and_mistakes_are_named() {
        let c = Config::from_toml(SEED001).unwrap();
        assert_eq!(c.streams[0].format, EventFormat::Cloudevents);
        let spec = c.reconciles[0].spec().unwrap();
        assert_eq!(
            (
                spec.period,
                spec.missing_after,
                spec.horizon,
                spec.idle_timeout
            ),
            (
                Span::minutes(15),
                Span::minutes(10),
                Span::hours(1),
                Some(Span::minutes(2))
            )
        );
        assert_eq!(c.output_names().collect::<Vec<_>>(), ["payments_recon"]);
        for (from, to, want) in [
            (
                "horizon = \"1h\"",
                "horizon = \"5m\"",
                "reconcile `payments_recon`: the horizon (m, 5m) must be at least missing_after (n, 10m)",
            ),
            (
                "period = \"15m\"",
                "period = \"0s\"",
                "the period (o) must be positive",
            ),
            (
                "stream = \"payments_audit\", id",
                "stream = \"nope\", id",
                "reconcile `payments_recon` reads audit stream `nope`, which no [[stream]] defines",
            ),
            (
                "stream = \"payments_audit\", id",
                "stream = \"payments\", id",
                "events and audit must be two different streams",
            ),
            (
                "id_fields = [\"ref\"]",
                "id_fields = []",
                "audit.id_fields must name at least one field",
            ),
            ("period = ", "periodd = ", "unknown field `periodd`"),
            (
                "idle_timeout = \"2m\"",
                "idle_timeout = \"0s\"",
                "idle_timeout (z) must be positive",
            ),
            (
                "format = \"cloudevents\"",
                "format = \"avro\"",
                "unknown variant `avro`",
            ),
        ] {
            let e = Config::from_toml(&SEED001.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
        let twice = format!(
            "{SEED001}\n[[pipeline]]\nname = \"payments_recon\"\nstream = \"payments\"\nwindow = {{ type = \"tumbling\", size = \"1h\" }}\naggregates = [{{ fn = \"count\" }}]\n"
        );
        let e = Config::from_toml(&twice).unwrap_err().to_string();
        assert!(e.contains("already used by another pipeline"), "{e}");
        let hook = format!(
            "{SEED001}\n[[webhook]]\nname = \"ops\"\nurl = \"http://x\"\npipelines = [\"payments_recon\", \"nope\"]\n"
        );
        let e = Config::from_toml(&hook).unwrap_err().to_string();
        assert!(e.contains("names pipeline `nope`"), "{e}");
        // A webhook POSTs to a url or runs a command, one of the two; a trigger runs for
        // alert rules only.
        for (body, want) in [
            ("", "give `url` (to POST to) or `command`"),
            (
                "url = \"http://x\"\ncommand = [\"true\"]\n",
                "give `url` or `command`, not both",
            ),
            ("command = [\"\"]\n", "must start with the program"),
            (
                "command = [\"true\"]\nformat = \"trigger\"\npipelines = [\"payments_recon\"]\n",
                "`payments_recon` is not an [[alert]]",
            ),
        ] {
            let e = Config::from_toml(&format!("{SEED001}\n[[webhook]]\nname = \"w\"\n{body}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
        Config::from_toml(&format!(
            "{SEED001}\n[[webhook]]\nname = \"w\"\ncommand = [\"true\"]\nformat = \"json\"\n"
        ))
        .unwrap();
    }

    /// The reconciliation example in the README is a configuration that works.
    #[test]
    fn the_readme_reconcile_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\n# seed 001")
            .expect("the reconcile toml block in the README")
            + 8;
        let len = readme[start..].find("```").expect("end of the toml block");
        let block = &readme[start..start + len];
        assert_eq!(
            block,
            include_str!("../../../examples/seed001/reckon.toml"),
            "the README shows examples/seed001/reckon.toml as it is"
        );
        let c = Config::from_toml(block).unwrap();
        assert_eq!(c.reconciles.len(), 1);
        c.reconciles[0].spec().unwrap();
    }

    #[test]
    fn max_future_defaults_to_an_hour_and_can_be_widened_or_turned_off() {
        let c = Config::from_toml(SEED000).unwrap();
        assert_eq!(c.streams[0].max_future, FutureLimit(Some(Span::hours(1))));
        let with = |v: &str| {
            SEED000.replace(
                "time_format = \"unix_ns\"",
                &format!("time_format = \"unix_ns\"\nmax_future = \"{v}\""),
            )
        };
        let c = Config::from_toml(&with("2d")).unwrap();
        assert_eq!(c.streams[0].max_future, FutureLimit(Some(Span::days(2))));
        let c = Config::from_toml(&with("off")).unwrap();
        assert_eq!(c.streams[0].max_future, FutureLimit(None));
        let e = Config::from_toml(&with("soon")).unwrap_err().to_string();
        assert!(e.contains("max_future") || e.contains("soon"), "{e}");
    }

    #[test]
    fn durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("1h30m"), Ok(Span::minutes(90)));
        assert_eq!(parse_duration("2w"), Ok(Span::days(14)));
        assert_eq!(parse_duration("250ms"), Ok(Span(250_000_000)));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(
            parse_duration("10x")
                .unwrap_err()
                .contains("unknown unit `x`")
        );
        assert!(
            parse_duration("h")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(
            parse_duration("999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn mistakes_are_named_with_their_place() {
        let typo = SEED000.replace("allowed_lateness", "allowed_latenes");
        let e = Config::from_toml(&typo).unwrap_err().to_string();
        assert!(
            e.contains("unknown field `allowed_latenes`") && e.contains("line"),
            "{e}"
        );
        let e =
            Config::from_toml(&SEED000.replace("stream = \"water_level\"", "stream = \"nope\""))
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("reads stream `nope`, which no [[stream]] defines"),
            "{e}"
        );
        let e = Config::from_toml(&SEED000.replace("fn = \"mean\"", "fn = \"median\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipeline `water_level_mean_1h`: unknown aggregate fn `median`"),
            "{e}"
        );
        let e = Config::from_toml(&SEED000.replace("retention = \"7d\"", "retention = \"1h\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("retention") && e.contains("allowed_lateness"),
            "{e}"
        );
        let e = Config::from_toml(&SEED000.replace("\"1h\" }", "\"1h\", tz = \"UTC\" }"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `tz`"), "{e}");
        let cal = SEED000.replace(
            "{ type = \"tumbling\", size = \"1h\" }",
            "{ type = \"calendar\", unit = \"day\", tz = \"Mars/Base\" }",
        );
        let e = Config::from_toml(&cal).unwrap_err().to_string();
        assert!(e.contains("unknown time zone `Mars/Base`"), "{e}");
    }

    const ROLLUPS: &str = r#"
        [[stream]]
        name = "alarms"
        key_fields = ["station_id"]

        [[pipeline]]
        name = "a5m"
        stream = "alarms"
        window = { type = "tumbling", size = "5m" }
        aggregates = [{ fn = "count" }, { fn = "mean", field = "value" }]

        [[pipeline]]
        name = "ahour"
        input = "a5m"
        window = { type = "tumbling", size = "1h" }

        [[pipeline]]
        name = "aday"
        input = "ahour"
        window = { type = "calendar", unit = "day", tz = "Asia/Ho_Chi_Minh" }

        [[pipeline]]
        name = "amonth"
        input = "aday"
        window = { type = "calendar", unit = "month", tz = "Asia/Ho_Chi_Minh" }
    "#;

    fn config_err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn rollups_are_ordered_after_their_inputs_and_inherit_aggregates() {
        // Written in reverse order, still run inputs first.
        let mut parts: Vec<&str> = ROLLUPS.split("[[pipeline]]").collect();
        let stream = parts.remove(0);
        parts.reverse();
        let reversed = format!("{stream}[[pipeline]]{}", parts.join("[[pipeline]]"));
        let c = Config::from_toml(&reversed).unwrap();
        let names: Vec<&str> = c.operators().unwrap().iter().map(|o| o.name()).collect();
        assert_eq!(names, ["a5m", "ahour", "aday", "amonth"]);
        let month = c.rollup_spec(c.pipeline("amonth").unwrap()).unwrap();
        let cols: Vec<&str> = month.aggregates.iter().map(|a| &*a.name).collect();
        assert_eq!(cols, ["count", "mean_value"]);
        assert_eq!(month.allowed_lateness, Span::hours(24));
        assert_eq!(c.origin_stream("amonth"), Some("alarms"));
        let kinds: Vec<&str> = c.operators().unwrap().iter().map(|o| o.kind()).collect();
        assert_eq!(kinds, ["window", "rollup", "rollup", "rollup"]);
    }

    #[test]
    fn a_cycle_or_an_unknown_input_names_them() {
        let cyc = ROLLUPS.replace("input = \"a5m\"", "input = \"amonth\"");
        let e = config_err(&cyc);
        assert!(
            e.contains("pipelines read each other in a cycle: `ahour` reads `amonth` reads `aday` reads `ahour`"),
            "{e}"
        );
        let unknown = ROLLUPS.replace("input = \"a5m\"", "input = \"a10m\"");
        let e = config_err(&unknown);
        assert!(
            e.contains("pipeline `ahour` rolls up `a10m`, which no [[pipeline]] defines"),
            "{e}"
        );
    }

    #[test]
    fn a_rollup_must_be_coarser_and_nest() {
        let finer = ROLLUPS.replace("size = \"1h\"", "size = \"1m\"");
        let e = config_err(&finer);
        assert!(
            e.contains("pipeline `ahour`: its window (1m) must be a multiple of, and longer than, the windows of its input `a5m` (5m)"),
            "{e}"
        );
        let uneven = ROLLUPS.replace("size = \"1h\"", "size = \"7m\"");
        assert!(config_err(&uneven).contains("must be a multiple of"));
        let weeks = ROLLUPS
            .replace("input = \"aday\"", "input = \"aweek\"")
            .replace(
                "[[pipeline]]\n        name = \"amonth\"",
                "[[pipeline]]\n        name = \"aweek\"\n        input = \"aday\"\n        window = { type = \"calendar\", unit = \"week\", tz = \"Asia/Ho_Chi_Minh\" }\n\n        [[pipeline]]\n        name = \"amonth\"",
            );
        let e = config_err(&weeks);
        assert!(
            e.contains("pipeline `amonth`: ISO weeks of `aweek` do not nest in months"),
            "{e}"
        );
        // India is UTC+5:30: its midnights split hours.
        let india = ROLLUPS.replace("Asia/Ho_Chi_Minh\" }\n\n", "Asia/Kolkata\" }\n\n");
        let e = config_err(&india);
        assert!(
            e.contains("pipeline `aday`: a local midnight in Asia/Kolkata (UTC offset 5h30m) is not a boundary of the 1h windows of `ahour`"),
            "{e}"
        );
        let zones = ROLLUPS.replace(
            "unit = \"month\", tz = \"Asia/Ho_Chi_Minh\"",
            "unit = \"month\", tz = \"UTC\"",
        );
        assert!(
            config_err(&zones)
                .contains("its time zone UTC differs from its input `aday`'s (Asia/Ho_Chi_Minh)")
        );
        let own = ROLLUPS.replace(
            "input = \"a5m\"",
            "input = \"a5m\"\n        aggregates = [{ fn = \"count\" }]",
        );
        assert!(
            config_err(&own)
                .contains("rolls up `a5m` and merges all its aggregates: leave `aggregates` out")
        );
        let both = ROLLUPS.replace(
            "input = \"a5m\"",
            "input = \"a5m\"\n        stream = \"alarms\"",
        );
        assert!(
            config_err(&both)
                .contains("give `stream` (events) or `input` (a pipeline to roll up), not both")
        );
        let hop = ROLLUPS.replace(
            "{ type = \"tumbling\", size = \"5m\" }",
            "{ type = \"hopping\", size = \"10m\", slide = \"5m\" }",
        );
        assert!(config_err(&hop).contains("has hopping windows, which overlap"));
    }

    #[test]
    fn expressions_are_checked_at_load_with_the_position() {
        let with = |agg: &str| {
            ROLLUPS.replace(
                "aggregates = [{ fn = \"count\" }, { fn = \"mean\", field = \"value\" }]",
                &format!("aggregates = [{agg}, {{ fn = \"mean\", field = \"value\" }}]"),
            )
        };
        let e = config_err(&with(
            r#"{ fn = "count", name = "above", filter = "value > 'high' + 1" }"#,
        ));
        assert!(
            e.contains("pipeline `a5m`: aggregate `above`: filter: at 15: `+` needs numbers, but its left side is a string"),
            "{e}"
        );
        assert!(
            e.contains("  value > 'high' + 1\n                 ^"),
            "{e}"
        );
        let e = config_err(&with(
            r#"{ fn = "count", name = "n", filter = "value + 1" }"#,
        ));
        assert!(e.contains("pipeline `a5m`: aggregate `n`: filter:"), "{e}");
        let ok = Config::from_toml(&with(
            r#"{ fn = "count", name = "above", filter = "value > threshold and threshold != 999999" }"#,
        ))
        .unwrap();
        let spec = ok.pipelines[0].spec().unwrap();
        assert!(spec.aggregates[0].filter.is_some());
        let derive = ROLLUPS.replace(
            "window = { type = \"tumbling\", size = \"5m\" }",
            "window = { type = \"tumbling\", size = \"5m\" }\n        derive = { a_excess = \"b_twice - 1\", b_twice = \"value * 2\" }\n        filter = \"a_excess > 0\"",
        );
        let spec = Config::from_toml(&derive).unwrap().pipelines[0]
            .spec()
            .unwrap();
        let order: Vec<&str> = spec.derive.iter().map(|(n, _)| &**n).collect();
        assert_eq!(
            order,
            ["b_twice", "a_excess"],
            "a derived field comes after those it reads"
        );
        let cycle = derive.replace("\"value * 2\"", "\"a_excess * 2\"");
        assert!(
            config_err(&cycle)
                .contains("derived fields `a_excess`, `b_twice` read each other in a cycle")
        );
    }

    #[test]
    fn tenant_objects_get_stored_names_and_reference_only_their_tenant() {
        let two = |tenant_b: &str, stream_b: &str| {
            format!(
                r#"
                [store]
                path = "/tmp/x"
                [[stream]]
                name = "alarms"
                tenant = "acme"
                [[stream]]
                name = "alarms"
                tenant = "{tenant_b}"
                [[pipeline]]
                name = "rate"
                tenant = "acme"
                stream = "alarms"
                window = {{ type = "tumbling", size = "5m" }}
                aggregates = [{{ fn = "count" }}]
                [[pipeline]]
                name = "rate"
                tenant = "{tenant_b}"
                stream = "{stream_b}"
                window = {{ type = "tumbling", size = "5m" }}
                aggregates = [{{ fn = "count" }}]
                [[webhook]]
                name = "ops"
                tenant = "acme"
                url = "http://127.0.0.1:1/"
                pipelines = ["rate"]
                "#
            )
        };
        let c = Config::from_toml(&two("globex", "alarms")).unwrap();
        let names: Vec<&str> = c.output_names().collect();
        assert_eq!(names, ["acme/rate", "globex/rate"]);
        assert_eq!(c.pipelines[1].stream.as_deref(), Some("globex/alarms"));
        assert_eq!(c.webhooks[0].name, "acme/ops");
        assert_eq!(c.webhooks[0].pipelines, ["acme/rate"]);
        assert_eq!(Config::split_tenant("acme/rate"), (Some("acme"), "rate"));
        assert_eq!(Config::split_tenant("rate"), (None, "rate"));
        // The same names twice in one tenant are refused as before.
        assert!(
            config_err(&two("acme", "alarms")).contains("stream `acme/alarms` is defined twice")
        );
        // A name cannot reach into another tenant, nor can a tenant name be odd.
        assert!(config_err(&two("globex", "acme/alarms")).contains("cannot contain `/`"));
        assert!(
            config_err(&two("Globex", "alarms")).contains("tenant `Globex` is not a valid name")
        );
    }
}
