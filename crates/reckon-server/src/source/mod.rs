//! Sources: one task per `[[source]]`, consuming a broker into a stream with the
//! effect of exactly once (`docs/connectors.md`).
//!
//! Every kind of broker is one [`Broker`]: it connects (resuming after the positions
//! reckon committed last), hands over batches of [`Message`]s, acknowledges them and
//! says how far behind it is. A position is per *lane*: the one JetStream stream of a
//! NATS source, or each Kafka topic-partition. The loop here does the rest the same
//! way for all:
//!
//! 1. Messages at or before the committed position (a broker delivering again what
//!    reckon already has) are acknowledged and skipped.
//! 2. The rest are decoded as the HTTP ingest decodes a body, grouped into one
//!    request per watermark partition, and handed to the writer **with the new
//!    position**: events and position commit together, in one durable commit, or
//!    not at all. A crash before the commit loses nothing (the broker delivers the
//!    unacknowledged messages again); a crash after it counts nothing twice (step 1).
//!    A broker without positions (MQTT) relies on event ids instead: the stream's
//!    `id_field`, or an id made from the message's topic and payload.
//! 3. Only once the commit is durable are the messages acknowledged.
//!
//! A full writer queue pauses the source (the batch is offered again after a wait,
//! nothing more is taken from the broker), so memory stays bounded; a lost
//! connection is retried with backoff. `GET /v1/sources` and the `reckon_source_*`
//! metrics show what each source is doing.

#[cfg(feature = "kafka")]
mod kafka;
mod mqtt;
mod nats;

use crate::AppState;
use crate::connector::{Backoff, pause, redact};
use crate::writer::SubmitError;
use reckon_connect::DecodeError;
use reckon_connect::lineproto::Precision;
use reckon_core::{Event, EventId, EventTime, PartitionId};
use reckon_runtime::{IngestRequest, PartitionBy, SourceConfig, SourceFormat, SourceKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much longer than `max_wait` a batch may take before the broker counts as gone.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a source has got to: for each lane (`""` for a NATS source's stream,
/// `topic/partition` for Kafka), the position of the last message committed.
pub(crate) type Positions = BTreeMap<String, u64>;

/// One message taken from a broker.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The subject (NATS) or topic (MQTT, Kafka) it was published on.
    pub subject: String,
    /// Its body.
    pub payload: Vec<u8>,
    /// The lane of `position`.
    pub lane: Arc<str>,
    /// Where it is in its lane of the broker's log (a JetStream stream sequence, a
    /// Kafka offset), if the broker has positions; increasing within a lane.
    pub position: Option<u64>,
    /// The broker's partition (Kafka), for `partition_by = "partition"`.
    pub partition: Option<u32>,
}

/// A broker a source consumes. `connect` is called again after any error.
pub(crate) trait Broker: Send {
    /// Connects, resuming each lane after its position in `positions` (the last
    /// committed), a lane without one from the start.
    fn connect(&mut self, positions: &Positions)
    -> impl Future<Output = Result<(), String>> + Send;
    /// Up to `max` messages, waiting at most `wait` for the first ones.
    fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Message>, String>> + Send;
    /// Acknowledges every message of the last batch (they are durable, and
    /// `positions` are committed).
    fn ack(&mut self, positions: &Positions) -> impl Future<Output = Result<(), String>> + Send;
    /// Messages the broker holds for this source and has not delivered yet.
    fn lag(&mut self) -> impl Future<Output = Option<u64>> + Send;
    /// What is wrong with the connection now, for a broker whose client recovers by
    /// itself (Kafka) and so never fails a batch.
    fn trouble(&self) -> Option<String> {
        None
    }
}

/// What `GET /v1/sources` shows of one source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// Its name.
    pub name: String,
    /// `nats`, `mqtt` or `kafka`.
    pub kind: &'static str,
    /// The stream it feeds.
    pub stream: String,
    /// `connecting`, `running`, `paused` (the writer is full), `reconnecting`, or
    /// `stopped` (with `error`).
    pub state: &'static str,
    /// The last committed position (JetStream stream sequence), if it has one lane.
    pub position: Option<u64>,
    /// The last committed position of each lane (Kafka: of each `topic/partition`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub positions: Positions,
    /// Messages waiting in the broker, as it last said.
    pub lag: Option<u64>,
    /// Successful connections since startup (more than 1: it reconnected).
    pub connects: u64,
    /// Messages committed (with their events) since startup.
    pub messages: u64,
    /// Events they held.
    pub events: u64,
    /// Messages skipped because they were committed already (redeliveries).
    pub redelivered: u64,
    /// Messages (or lines of them) that could not be decoded.
    pub decode_errors: u64,
    /// The last error, if any.
    pub error: Option<String>,
}

/// Every source's status, shared between the tasks and `GET /v1/sources`.
pub type Sources = crate::connector::Statuses<SourceStatus>;

/// The catalog key of a source's committed position.
fn position_key(name: &str) -> Vec<u8> {
    format!("source/{name}").into_bytes()
}

/// The source's committed positions: `{"position": N}` for the one lane `""`,
/// `{"positions": {lane: N, …}}` for named lanes.
pub(crate) fn committed(store: &reckon_store::Store, name: &str) -> Result<Positions, String> {
    let key = position_key(name);
    let row = store
        .catalog(&key)
        .map_err(|e| format!("cannot read the committed position of source `{name}`: {e}"))?
        .into_iter()
        .find(|(k, _)| *k == key);
    let value = match row {
        None => None,
        Some((_, v)) => Some(serde_json::from_slice::<serde_json::Value>(&v).map_err(|e| {
            format!("the committed position of source `{name}` is not JSON ({e}); it is kept under the catalog key `source/{name}`")
        })?),
    };
    let mut out = Positions::new();
    if let Some(v) = value {
        if let Some(p) = v.get("position").and_then(|p| p.as_u64()) {
            out.insert(String::new(), p);
        }
        if let Some(m) = v.get("positions").and_then(|m| m.as_object()) {
            for (lane, p) in m {
                if let Some(p) = p.as_u64() {
                    out.insert(lane.clone(), p);
                }
            }
        }
    }
    Ok(out)
}

/// `positions` as stored in the catalog (see [`committed`]).
fn encode_positions(positions: &Positions) -> Vec<u8> {
    let (one, named) = split_positions(positions);
    let mut v = serde_json::Map::new();
    if let Some(p) = one {
        v.insert("position".into(), p.into());
    }
    if !named.is_empty() {
        v.insert("positions".into(), serde_json::json!(named));
    }
    serde_json::Value::Object(v).to_string().into_bytes()
}

/// The position of the lane `""` and the named lanes'.
fn split_positions(positions: &Positions) -> (Option<u64>, Positions) {
    let mut named = positions.clone();
    (named.remove(""), named)
}

/// Starts one task per `[[source]]`.
pub(crate) fn start(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for s in &state.config().sources {
        let (position, positions) =
            split_positions(&committed(state.store(), &s.name).unwrap_or_default());
        state.sources().insert(
            &s.name,
            SourceStatus {
                name: s.name.clone(),
                kind: kind_name(s.kind),
                stream: s.stream.clone(),
                state: "connecting",
                position,
                positions,
                ..SourceStatus::default()
            },
        );
        let (st, cfg) = (state.clone(), s.clone());
        tasks.push(match s.kind {
            SourceKind::Nats => tokio::spawn(async move {
                let broker = nats::Nats::new(&cfg);
                run(st, cfg, broker).await
            }),
            SourceKind::Mqtt => tokio::spawn(async move {
                match mqtt::Mqtt::new(&cfg) {
                    Ok(broker) => run(st, cfg, broker).await,
                    Err(e) => stopped(&st, &cfg.name, e),
                }
            }),
            #[cfg(feature = "kafka")]
            SourceKind::Kafka => tokio::spawn(async move {
                let broker = kafka::Kafka::new(&cfg);
                run(st, cfg, broker).await
            }),
            #[cfg(not(feature = "kafka"))]
            SourceKind::Kafka => {
                stopped(state, &s.name, crate::connector::NO_KAFKA.into());
                continue;
            }
        });
    }
    tasks
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Nats => "nats",
        SourceKind::Mqtt => "mqtt",
        SourceKind::Kafka => "kafka",
    }
}

fn stopped(state: &AppState, name: &str, error: String) {
    tracing::error!(source = name, "source `{name}` stopped: {error}");
    state.sources().update(name, |s| {
        s.state = "stopped";
        s.error = Some(error);
    });
}

/// A message's events, decoded as the HTTP ingest decodes a body.
fn decode(
    state: &AppState,
    cfg: &SourceConfig,
    stream: &reckon_runtime::StreamConfig,
    m: &Message,
) -> (Vec<Event>, Vec<DecodeError>) {
    let (mut events, errors) = match cfg.format {
        SourceFormat::Json => crate::ingest::decode_json(state, stream, &m.payload),
        SourceFormat::LineProtocol => {
            let precision =
                Precision::parse(cfg.precision.as_deref().unwrap_or("ns")).unwrap_or_default();
            let now = EventTime(state.clock().now().0);
            let (text, mut errors) = crate::ingest::utf8_lines(&m.payload);
            let (events, more) = state.with_lines(stream, |d| d.decode(&text, precision, now));
            errors.extend(more);
            (events, errors)
        }
    };
    if m.position.is_none() && events.iter().any(|e| e.id.is_none()) {
        // No position to skip a redelivery by: an event without an id of its own (the
        // stream has no `id_field`, or this event lacks it) is identified by the
        // message's topic and payload and its place in it, so one delivered again
        // after a crash is a duplicate by id.
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(m.subject.as_bytes());
        h.update([0]);
        h.update(&m.payload);
        let digest = hex::encode(&h.finalize()[..16]);
        for (i, e) in events.iter_mut().enumerate() {
            if e.id.is_none() {
                e.id = Some(EventId(Arc::from(format!("{}#{digest}#{i}", m.subject))));
            }
        }
    }
    (events, errors)
}

/// The watermark partition of a message's events.
fn partition_of(cfg: &SourceConfig, m: &Message) -> PartitionId {
    match cfg.partition_by {
        PartitionBy::Fixed => PartitionId(cfg.partition),
        PartitionBy::Subject => {
            // Stable across restarts and machines (a watermark partition is stored).
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(m.subject.as_bytes());
            PartitionId(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
        }
        PartitionBy::Partition => PartitionId(cfg.partition.wrapping_add(m.partition.unwrap_or(0))),
    }
}

/// Logs and counts a broker failure and shows it; then waits the backoff (`false` on
/// shutdown).
async fn failed(
    state: &AppState,
    name: &str,
    what: &str,
    error: String,
    backoff: &mut Backoff,
) -> bool {
    tracing::warn!(
        source = name,
        "source `{name}`: {what} ({error}); retrying in {:?}",
        backoff.next()
    );
    state
        .metrics()
        .inc("reckon_source_reconnects_total", &[("source", name)], 1);
    state.sources().update(name, |s| {
        s.state = "reconnecting";
        s.error = Some(error);
    });
    backoff.wait(state).await
}

/// The source loop (see the module's documentation).
async fn run<B: Broker>(state: AppState, cfg: SourceConfig, mut broker: B) {
    let name = cfg.name.clone();
    let sources = || state.sources();
    let labels = [("source", name.as_str())];
    // A position that cannot be read is not a first start: starting over would count
    // everything again.
    let mut positions = match committed(state.store(), &name) {
        Ok(p) => p,
        Err(e) => return stopped(&state, &name, e),
    };
    let mut backoff = Backoff::default();
    let mut shutdown = state.shutdown();
    'connect: loop {
        if *shutdown.borrow() {
            return;
        }
        let connect = tokio::select! {
            r = tokio::time::timeout(BATCH_TIMEOUT * 3, broker.connect(&positions)) => {
                r.unwrap_or_else(|_| Err(format!("no answer within {:?} while connecting", BATCH_TIMEOUT * 3)))
            }
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match connect {
            Ok(()) => {
                tracing::info!(source = %name, ?positions, "source `{name}` connected to {}", redact(&cfg.url));
                sources().update(&name, |s| {
                    s.state = "running";
                    s.error = None;
                    s.connects += 1;
                });
            }
            Err(e) => {
                if !failed(&state, &name, "cannot connect", e, &mut backoff).await {
                    return;
                }
                continue;
            }
        }
        let mut lag_at = Instant::now() - Duration::from_secs(10);
        loop {
            if lag_at.elapsed() >= Duration::from_secs(1) {
                lag_at = Instant::now();
                let lag = broker.lag().await;
                if let Some(l) = lag {
                    state
                        .metrics()
                        .set("reckon_source_lag_messages", &labels, l as f64);
                }
                let trouble = broker.trouble();
                sources().update(&name, |s| {
                    s.lag = lag;
                    if trouble.is_some() || s.state == "running" {
                        s.error = trouble;
                    }
                });
            }
            // A broker that dies in the middle of a pull may never answer it: a batch
            // that takes far longer than `max_wait` counts as a failure (reconnecting
            // starts again after the committed position, so nothing is lost).
            let wait = cfg.max_wait.to_std();
            let batch = tokio::select! {
                b = tokio::time::timeout(wait + BATCH_TIMEOUT, broker.next_batch(cfg.batch, wait)) => {
                    b.unwrap_or_else(|_| Err(format!("no answer to a pull within {:?}", wait + BATCH_TIMEOUT)))
                }
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let batch = match batch {
                // Only a broker that answers resets the backoff: one that fails the same
                // way after every reconnect waits longer and longer.
                Ok(b) => {
                    backoff.reset();
                    b
                }
                Err(e) => {
                    if !failed(&state, &name, "the broker failed", e, &mut backoff).await {
                        return;
                    }
                    continue 'connect;
                }
            };
            if batch.is_empty() {
                continue;
            }
            let config = state.config();
            let Some(stream) = config.stream(&cfg.stream).cloned() else {
                stopped(
                    &state,
                    &name,
                    format!("stream `{}` is no longer defined", cfg.stream),
                );
                return;
            };
            let (mut redelivered, mut bad) = (0u64, 0u64);
            let mut parts: BTreeMap<PartitionId, Vec<Event>> = BTreeMap::new();
            let mut next = positions.clone();
            let mut events = 0u64;
            for m in &batch {
                if let Some(p) = m.position
                    && positions.get(&*m.lane).is_some_and(|done| p <= *done)
                {
                    redelivered += 1;
                    continue;
                }
                let (evs, errors) = decode(&state, &cfg, &stream, m);
                if !errors.is_empty() {
                    bad += errors.len() as u64;
                    let first = &errors[0];
                    tracing::warn!(
                        source = %name,
                        subject = %m.subject,
                        position = ?m.position,
                        "source `{name}`: {} bad line(s) in a message on `{}`, skipped; the first{}: {}",
                        errors.len(),
                        m.subject,
                        first.line.map(|l| format!(" (line {l})")).unwrap_or_default(),
                        first.message
                    );
                }
                events += evs.len() as u64;
                parts.entry(partition_of(&cfg, m)).or_default().extend(evs);
                if let Some(p) = m.position {
                    match next.get_mut(&*m.lane) {
                        Some(at) => *at = (*at).max(p),
                        None => {
                            next.insert(m.lane.to_string(), p);
                        }
                    }
                }
            }
            let requests: Vec<IngestRequest> = parts
                .into_iter()
                .map(|(partition, events)| IngestRequest {
                    stream: Arc::from(stream.name.as_str()),
                    partition,
                    events,
                })
                .collect();
            let fresh = batch.len() as u64 - redelivered;
            let catalog = if next != positions {
                vec![(position_key(&name), Some(encode_positions(&next)))]
            } else {
                Vec::new()
            };
            if fresh > 0 {
                let mut wait = Duration::from_millis(5);
                loop {
                    match state
                        .writer()
                        .ingest_with(requests.clone(), catalog.clone())
                        .await
                    {
                        Ok(_) => break,
                        Err(SubmitError::Overloaded) => {
                            // Back-pressure: take nothing more from the broker until
                            // the writer has room.
                            state
                                .metrics()
                                .inc("reckon_source_paused_total", &labels, 1);
                            sources().update(&name, |s| s.state = "paused");
                            if !pause(&state, wait).await {
                                return;
                            }
                            wait = (wait * 2).min(Duration::from_millis(500));
                        }
                        Err(SubmitError::Stopped(e)) => {
                            stopped(&state, &name, format!("the writer stopped: {e}"));
                            return;
                        }
                        Err(SubmitError::Finished(e)) => {
                            stopped(&state, &name, e);
                            return;
                        }
                    }
                }
                positions = next;
            }
            if let Err(e) = broker.ack(&positions).await {
                // Durable already: the broker delivers them again, and they are
                // skipped by position or id.
                tracing::warn!(source = %name, "source `{name}`: acknowledging failed ({e}); the messages will come again and be skipped");
            }
            let m = state.metrics();
            m.inc("reckon_source_messages_total", &labels, fresh);
            m.inc("reckon_source_events_total", &labels, events);
            m.inc("reckon_source_redelivered_total", &labels, redelivered);
            m.inc("reckon_source_decode_errors_total", &labels, bad);
            let (position, named) = split_positions(&positions);
            sources().update(&name, |s| {
                s.state = "running";
                s.position = position;
                s.positions = named;
                s.messages += fresh;
                s.events += events;
                s.redelivered += redelivered;
                s.decode_errors += bad;
            });
        }
    }
}

/// `GET /v1/sources`: every source's state, position, lag and counts (an operator's
/// token).
pub(crate) async fn list(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
) -> Result<axum::Json<serde_json::Value>, crate::ApiError> {
    if !(who.is_operator() && who.reads_all()) {
        return Err(who.forbidden("read the sources (an operator's token can)"));
    }
    Ok(axum::Json(
        serde_json::json!({ "sources": state.sources().list() }),
    ))
}
