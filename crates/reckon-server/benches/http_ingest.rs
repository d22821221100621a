//! HTTP benchmarks with their load generator and their baselines in the same run
//! (release mode), all fed seed 000's workload (write.py: every 10 s a reading per
//! location plus a late one up to 24 h old) in batches of 5,000 events from `CLIENTS`
//! concurrent connections:
//!
//! 1. Durable ingest: reckon over HTTP as NDJSON and as InfluxDB line protocol (each
//!    request answered after its commit is fsync'd), with the store's size per event
//!    after the run (every keyspace, after a full compaction); the same batches
//!    through `Runtime::ingest_many` directly (no HTTP, no parsing); and a PostgreSQL
//!    peer built by hand (`PG_URL`, default `host=127.0.0.1 port=5432 user=postgres
//!    dbname=test`; skipped with a `SKIP` line if it cannot connect): a raw table and
//!    an hourly (count, sum) table upserted in the same transaction, one transaction
//!    per batch, `synchronous_commit = on`, with the size of both tables per event.
//! 2. Correction latency: a follower holds the SSE change feed open; one late event is
//!    POSTed at a time into a closed window; the time from sending the POST to the
//!    window's `late` emission arriving on the feed, p50, p99 and max over
//!    `LATENCY_SAMPLES`: with nothing else going on, and while a background client
//!    ingests at half the median NDJSON rate of step 1, the probe reading the whole feed
//!    (the load's changes too) or a feed of its own key (`?key=`).
//!
//! `cargo bench -p reckon-server --bench http_ingest` (env: `EVENTS`, `CLIENTS`,
//! `RUNS`, `PG_URL`, `LOAD_EVENTS` for the latency run's load, default 3M; `ONLY=ndjson`
//! runs just the NDJSON ingest, for a profiler; `LOAD_RATE=<events/s>` just the latency
//! runs at that load). The load generator and PostgreSQL share the cores with the server.
#![allow(clippy::unwrap_used)]

use reckon_core::ProcessingTime;
use reckon_runtime::{Config, IngestRequest, Runtime, RuntimeOptions};
use reckon_server::{App, AppOptions, ScaledClock};
use reckon_workload::{Seed000, line_protocol_line, ndjson_line};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BATCH: usize = 5_000;
const LATENCY_SAMPLES: usize = 300;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [server]
        max_pending_requests = 1024
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        time_format = "unix_ns"
        # The workload spans hours of event time in seconds of wall clock: no
        # future guard (else every event over an hour ahead is dead-lettered).
        max_future = "off"
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        out_of_orderness = "10s"
        allowed_lateness = "24h"
        retention = "7d"
        "#,
        dir.display()
    ))
    .unwrap()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 * p).ceil() as usize).clamp(1, xs.len()) - 1]
}

/// The wire format of a reckon HTTP run.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    /// `POST /v1/streams/water_level/events`, one JSON object a line.
    Ndjson,
    /// `POST /api/v2/write?bucket=water_level&precision=ns`, InfluxDB line protocol.
    LineProtocol,
}

/// A reckon server on a fresh store in a temporary directory, on 127.0.0.1.
struct Server {
    dir: tempfile::TempDir,
    base: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), reckon_server::Error>>,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let g = Seed000::default();
        let app = App::open(
            config(dir.path()),
            AppOptions {
                clock: Arc::new(ScaledClock::new(ProcessingTime(g.start.0), 1.0)),
                ..AppOptions::default()
            },
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = app.shutdown_signal();
        let task = tokio::spawn(app.serve(listener));
        Server {
            dir,
            base,
            stop,
            task,
        }
    }

    /// Stops the server, compacts its store fully and returns the bytes of every
    /// keyspace (fjall's write-ahead journal left out: it is emptied once the
    /// memtables are flushed, and is capped by `max_journaling_size`), the steady-state
    /// size as `runtime_restart` and `store_size` measure it.
    async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
        let store = reckon_store::Store::open(self.dir.path()).unwrap();
        store.compact_for_tests().unwrap();
        let usage = store.disk_usage_for_tests().unwrap();
        let keyspaces: u64 = usage
            .iter()
            .filter(|(n, _)| *n != "fjall_journal")
            .map(|(_, b)| b)
            .sum();
        keyspaces
    }
}

/// Events accepted, as an ingest response reports them.
async fn accepted(format: Format, r: reqwest::Response) -> u64 {
    match format {
        Format::Ndjson => {
            assert_eq!(r.status(), 200);
            let body: serde_json::Value = r.json().await.unwrap();
            body["accepted"].as_u64().unwrap()
        }
        Format::LineProtocol => {
            assert_eq!(r.status(), 204);
            r.headers()["x-reckon-accepted"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        }
    }
}

/// Events per second and store bytes per event of one reckon HTTP run.
async fn http_run(
    format: Format,
    events: usize,
    bodies: &Arc<Vec<String>>,
    clients: usize,
) -> (f64, f64) {
    let server = Server::start().await;
    let url = match format {
        Format::Ndjson => format!("{}/v1/streams/water_level/events", server.base),
        Format::LineProtocol => {
            format!(
                "{}/api/v2/write?bucket=water_level&precision=ns",
                server.base
            )
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, url) = (bodies.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let r = client.post(&url).body(body.clone()).send().await.unwrap();
                n += accepted(format, r).await;
            }
            n
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    // The same work as the peer's: every event stored (none deduplicated or
    // dead-lettered), or the comparison is void.
    assert_eq!(stored, events as u64, "reckon accepted every event");
    let bytes = server.stop().await;
    (events as f64 / secs, bytes as f64 / events as f64)
}

fn direct_run(arrivals: &[reckon_workload::Arrival], clients: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = Runtime::open(&config(dir.path()), RuntimeOptions::default()).unwrap();
    let stream: Arc<str> = Arc::from("water_level");
    let batches: Vec<Vec<reckon_core::Event>> = arrivals
        .chunks(BATCH)
        .map(|c| c.iter().map(|a| a.event.clone()).collect())
        .collect();
    let started = Instant::now();
    for group in batches.chunks(clients) {
        let now = ProcessingTime(Seed000::default().start.0);
        let reqs = group
            .iter()
            .map(|events| IngestRequest {
                stream: stream.clone(),
                partition: reckon_core::PartitionId(0),
                events: events.clone(),
            })
            .collect();
        rt.ingest_many(now, reqs, &mut |_| {}).unwrap();
    }
    arrivals.len() as f64 / started.elapsed().as_secs_f64()
}

/// The PostgreSQL peer's batches: the same events as columns.
struct PgBatch {
    keys: Vec<String>,
    times: Vec<i64>,
    values: Vec<f64>,
}

const HOUR_NS: i64 = 3_600_000_000_000;

const PG_SCHEMA: &str = "
    DROP TABLE IF EXISTS peer_raw, peer_hourly;
    CREATE TABLE peer_raw (
        key   text             NOT NULL,
        time  bigint           NOT NULL, -- unix nanoseconds, as reckon keeps them
        value double precision NOT NULL,
        id    text                       -- the event id; seed 000 sends none
    );
    CREATE TABLE peer_hourly (
        key          text             NOT NULL,
        window_start bigint           NOT NULL,
        count        bigint           NOT NULL,
        sum          double precision NOT NULL,
        PRIMARY KEY (key, window_start)
    );";

const PG_COPY: &str = "COPY peer_raw (key, time, value, id) FROM STDIN (FORMAT binary)";

/// The batch's hourly partial aggregates, sorted by (key, window_start) so that
/// concurrent transactions lock rows in the same order (no deadlocks).
const PG_UPSERT: &str = "
    INSERT INTO peer_hourly AS h (key, window_start, count, sum)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::float8[])
    ON CONFLICT (key, window_start) DO UPDATE
    SET count = h.count + excluded.count, sum = h.sum + excluded.sum";

fn pg_url() -> String {
    std::env::var("PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

async fn pg_connect() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Events per second and bytes of both tables per event of one PostgreSQL peer run:
/// each batch one transaction (COPY of the raw rows, then one upsert of the batch's
/// hourly partial aggregates), committed with `synchronous_commit = on`.
async fn pg_run(batches: &Arc<Vec<PgBatch>>, events: usize, clients: usize) -> (f64, f64) {
    let admin = pg_connect().await.unwrap();
    admin.batch_execute(PG_SCHEMA).await.unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::new();
    for _ in 0..clients {
        let c = pg_connect().await.unwrap();
        c.batch_execute("SET synchronous_commit = on")
            .await
            .unwrap();
        conns.push(c);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut client in conns {
        let (batches, next) = (batches.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            use tokio_postgres::binary_copy::BinaryCopyInWriter;
            use tokio_postgres::types::Type;
            let upsert = client.prepare(PG_UPSERT).await.unwrap();
            let none: Option<&str> = None;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(b) = batches.get(i) else { break };
                let tx = client.transaction().await.unwrap();
                let sink = tx.copy_in(PG_COPY).await.unwrap();
                let writer = BinaryCopyInWriter::new(
                    sink,
                    &[Type::TEXT, Type::INT8, Type::FLOAT8, Type::TEXT],
                );
                let mut writer = std::pin::pin!(writer);
                let mut hourly: std::collections::HashMap<(&str, i64), (i64, f64)> =
                    std::collections::HashMap::new();
                for ((k, t), v) in b.keys.iter().zip(&b.times).zip(&b.values) {
                    writer.as_mut().write(&[k, t, v, &none]).await.unwrap();
                    let a = hourly
                        .entry((k.as_str(), t.div_euclid(HOUR_NS) * HOUR_NS))
                        .or_default();
                    a.0 += 1;
                    a.1 += v;
                }
                writer.finish().await.unwrap();
                let mut rows: Vec<_> = hourly.into_iter().collect();
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                let keys: Vec<&str> = rows.iter().map(|r| r.0.0).collect();
                let starts: Vec<i64> = rows.iter().map(|r| r.0.1).collect();
                let counts: Vec<i64> = rows.iter().map(|r| r.1.0).collect();
                let sums: Vec<f64> = rows.iter().map(|r| r.1.1).collect();
                tx.execute(&upsert, &[&keys, &starts, &counts, &sums])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM peer_raw), (SELECT sum(count)::bigint FROM peer_hourly),
                    pg_total_relation_size('peer_raw') + pg_total_relation_size('peer_hourly')",
            &[],
        )
        .await
        .unwrap();
    let (raw, counted, bytes): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(raw, events as i64, "every raw row is stored");
    assert_eq!(counted, events as i64, "every event is counted once");
    (events as f64 / secs, bytes as f64 / events as f64)
}

/// The SSE change feed, read frame by frame.
struct Feed {
    resp: reqwest::Response,
    buf: String,
    frames: u64,
}

impl Feed {
    /// The whole feed, or with `key` only that series' emissions (`?key=`).
    async fn open(client: &reqwest::Client, base: &str, key: Option<&str>) -> Feed {
        let filter = key.map_or(String::new(), |k| format!("?key=i={k}"));
        let resp = client
            .get(format!("{base}/v1/pipelines/mean_1h/changes{filter}"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        Feed {
            resp,
            buf: String::new(),
            frames: 0,
        }
    }

    /// The next frame (`event: emission\nid: N\ndata: {...}`) that contains `needle`,
    /// skipping the others; `None` if none comes within `limit`.
    async fn find(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut at = 0;
            let mut found = None;
            while let Some(end) = self.buf[at..].find("\n\n") {
                let frame = &self.buf[at..at + end];
                at += end + 2;
                self.frames += 1;
                if frame.contains(needle) {
                    found = Some(frame.to_string());
                    break;
                }
            }
            self.buf.drain(..at);
            if found.is_some() {
                return found;
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .unwrap()
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// Latency figures: p50, p99, max and mean in ms, the samples taken, and (under load)
/// the background rate achieved while sampling; `ack_*` are the POST's own answer
/// (the event is durable), the rest is the feed.
struct Latency {
    ack_p50: f64,
    ack_p99: f64,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
    samples: usize,
    load_rate: f64,
}

fn latency_of(samples: Vec<(f64, f64)>, load_rate: f64) -> Latency {
    let taken = samples.len();
    let (mut acks, mut samples): (Vec<f64>, Vec<f64>) = samples.into_iter().unzip();
    if samples.is_empty() {
        samples.push(f64::NAN);
        acks.push(f64::NAN);
    }
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    Latency {
        ack_p50: percentile(&mut acks, 0.5),
        ack_p99: percentile(&mut acks, 0.99),
        p50: percentile(&mut samples, 0.5),
        p99: percentile(&mut samples, 0.99),
        max: percentile(&mut samples, 1.0),
        mean,
        samples: taken,
        load_rate,
    }
}

/// Sends one late event and waits for its `late` emission on the feed: the time from
/// sending the POST to its answer and to that frame, in ms. Prints the response and the frame when
/// `verbose` (and always when the emission does not come).
async fn probe(
    client: &reqwest::Client,
    base: &str,
    feed: &mut Feed,
    key: &str,
    time: i64,
    verbose: bool,
) -> Option<(f64, f64)> {
    let line = format!("{{\"i\":\"{key}\",\"time\":{time},\"level\":1.5}}\n");
    let sent = Instant::now();
    let r = client
        .post(format!("{base}/v1/streams/water_level/events"))
        .body(line.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let response = r.text().await.unwrap();
    let acked = sent.elapsed().as_secs_f64() * 1e3;
    let needle = format!("\"key\":\"i={key}\"");
    loop {
        let Some(frame) = feed.find(&needle, Duration::from_secs(10)).await else {
            println!(
                "  no emission of i={key} on the feed within 10 s: sent {}  answered {response}  ({} frames read)",
                line.trim(),
                feed.frames
            );
            return None;
        };
        if frame.contains("\"kind\":\"late\"") {
            let ms = sent.elapsed().as_secs_f64() * 1e3;
            if verbose {
                println!("  probe sent {}  answered {response}", line.trim());
                println!("  its frame: {}", frame.replace('\n', "\\n"));
            }
            return Some((acked, ms));
        }
        println!(
            "  an emission of i={key} that is not `late` (answered {response}): {}",
            frame.replace('\n', "\\n")
        );
    }
}

/// Correction latency with nothing else going on: two hours of on-time data, then one
/// late event at a time into the closed first hour.
async fn latency_idle(verbose: bool) -> Latency {
    let server = Server::start().await;
    let base = server.base.clone();
    let g = Seed000 {
        locations: 100,
        late_probability: 0.0,
        ..Seed000::default()
    };
    let client = reqwest::Client::new();
    // Two hours of on-time data: the first hour's windows are closed.
    let mut body = String::new();
    for a in g.arrivals().take(100 * 720 + 100) {
        ndjson_line(&a.event, &mut body);
    }
    let r = client
        .post(format!("{base}/v1/streams/water_level/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut feed = Feed::open(&client, &base, None).await;
    let mut samples = Vec::new();
    for k in 0..LATENCY_SAMPLES {
        let time = g.start.0 + 1_000_000_000 * (k as i64 + 1);
        let key = (k % 100).to_string();
        match probe(&client, &base, &mut feed, &key, time, verbose && k == 0).await {
            Some(ms) => samples.push(ms),
            None => break,
        }
    }
    drop(feed);
    server.stop().await;
    latency_of(samples, 0.0)
}

/// Correction latency while a background client sends seed 000's workload (late events
/// included) at `rate` events/s from `clients` connections. Each probe is a late event
/// of a key of its own (`i=p<k>`, which the load never sends, so the load's own late
/// emissions cannot be mistaken for it) 90 minutes behind the newest event time the
/// load has had acknowledged: its window has ended before the watermark (which is at
/// most one in-flight batch, 250 s of event time, ahead) and is well within the 24 h
/// allowed lateness, so the pipeline corrects it in memory (`late`, not `recomputed`).
/// With `keyed`, each probe watches a feed of its own key (`?key=`), as a dashboard of
/// one location would; else one follower reads the whole feed, the load's changes too.
async fn latency_loaded(
    bodies: &Arc<Vec<String>>,
    newest: &Arc<Vec<i64>>,
    rate: f64,
    clients: usize,
    keyed: bool,
    verbose: bool,
) -> Latency {
    let server = Server::start().await;
    let base = server.base.clone();
    let start = Seed000::default().start.0;
    let acked = Arc::new(AtomicI64::new(i64::MIN));
    let sent_events = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let began = tokio::time::Instant::now();
    let mut load = Vec::new();
    for _ in 0..clients {
        let (bodies, newest, next) = (bodies.clone(), newest.clone(), next.clone());
        let (acked, sent_events, done) = (acked.clone(), sent_events.clone(), done.clone());
        let url = format!("{base}/v1/streams/water_level/events");
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                // Paced: batch i leaves no earlier than i batches' worth at `rate`.
                tokio::time::sleep_until(
                    began + Duration::from_secs_f64(i as f64 * BATCH as f64 / rate),
                )
                .await;
                let r = client.post(&url).body(body.clone()).send().await.unwrap();
                let n = accepted(Format::Ndjson, r).await;
                sent_events.fetch_add(n as usize, Ordering::SeqCst);
                acked.fetch_max(newest[i], Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        }));
    }
    // Wait until the load has covered two hours of event time.
    while acked.load(Ordering::SeqCst) < start + 2 * HOUR_NS && !done.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = reqwest::Client::new();
    let mut whole = if keyed {
        None
    } else {
        Some(Feed::open(&client, &base, None).await)
    };
    let (t0, e0) = (Instant::now(), sent_events.load(Ordering::SeqCst));
    let mut samples = Vec::new();
    for k in 0..LATENCY_SAMPLES {
        if done.load(Ordering::SeqCst) {
            break;
        }
        let time = acked.load(Ordering::SeqCst) - HOUR_NS * 3 / 2;
        let key = format!("p{k}");
        let mut own = None;
        let feed = match &mut whole {
            Some(f) => f,
            None => own.insert(Feed::open(&client, &base, Some(&key)).await),
        };
        match probe(&client, &base, feed, &key, time, verbose && k == 0).await {
            Some(ms) => samples.push(ms),
            None => break,
        }
    }
    let load_rate = (sent_events.load(Ordering::SeqCst) - e0) as f64 / t0.elapsed().as_secs_f64();
    if samples.len() < LATENCY_SAMPLES {
        println!(
            "  under load: {} of {LATENCY_SAMPLES} samples before the load ran out of events",
            samples.len()
        );
    }
    drop(whole);
    for t in load {
        t.await.unwrap();
    }
    server.stop().await;
    latency_of(samples, load_rate)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = env("EVENTS", 1_000_000);
    let clients = env("CLIENTS", 4);
    let runs = env("RUNS", 3);
    // `ONLY=ndjson`: just the NDJSON ingest runs (for profiling the server's path).
    let only_ndjson = std::env::var("ONLY").is_ok_and(|v| v == "ndjson");
    // `LOAD_RATE=<events/s>`: only the latency runs, at that load (for iterating on them).
    let load_rate: Option<f64> = std::env::var("LOAD_RATE").ok().and_then(|v| v.parse().ok());
    let arrivals: Vec<_> = Seed000::default().arrivals().take(events).collect();
    let encode = |f: fn(&reckon_core::Event, &mut String)| -> Arc<Vec<String>> {
        Arc::new(
            arrivals
                .chunks(BATCH)
                .map(|c| {
                    let mut s = String::new();
                    c.iter().for_each(|a| f(&a.event, &mut s));
                    s
                })
                .collect(),
        )
    };
    let ndjson = encode(ndjson_line);
    let lines = encode(line_protocol_line);
    let pg_batches: Arc<Vec<PgBatch>> = Arc::new(
        arrivals
            .chunks(BATCH)
            .map(|c| PgBatch {
                keys: c.iter().map(|a| a.event.key.as_str().to_string()).collect(),
                times: c.iter().map(|a| a.event.time.0).collect(),
                values: c
                    .iter()
                    .map(
                        |a| match a.event.fields.iter().find(|(n, _)| &**n == "level") {
                            Some((_, reckon_core::Value::F64(x))) => *x,
                            other => panic!("seed 000 sends a float `level`, not {other:?}"),
                        },
                    )
                    .collect(),
            })
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = match rt.block_on(async {
        let c = pg_connect().await?;
        let row = c
            .query_one(
                "SELECT version(), current_setting('fsync'), current_setting('synchronous_commit'),
                        current_setting('shared_buffers'), current_setting('wal_level')",
                &[],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(format!(
            "{}; fsync={} synchronous_commit={} shared_buffers={} wal_level={}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
            row.get::<_, String>(4)
        ))
    }) {
        Ok(v) => {
            println!("PostgreSQL peer: {v}");
            true
        }
        Err(e) => {
            println!(
                "SKIP PostgreSQL peer: cannot connect to `{}`: {e:#} (set PG_URL)",
                pg_url()
            );
            false
        }
    };
    let (mut nd, mut lp, mut direct, mut peer) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        if load_rate.is_some() {
            break;
        }
        let n = rt.block_on(http_run(Format::Ndjson, events, &ndjson, clients));
        if only_ndjson {
            println!(
                "run {run}: reckon HTTP NDJSON {:.0} events/s ({:.1} B/event)",
                n.0, n.1
            );
            continue;
        }
        let l = rt.block_on(http_run(Format::LineProtocol, events, &lines, clients));
        let d = direct_run(&arrivals, clients);
        let p = pg.then(|| rt.block_on(pg_run(&pg_batches, events, clients)));
        println!(
            "run {run}: reckon HTTP NDJSON {:.0} events/s ({:.1} B/event)   reckon HTTP line protocol {:.0} events/s ({:.1} B/event)   runtime direct {:.0} events/s   PostgreSQL peer {}",
            n.0,
            n.1,
            l.0,
            l.1,
            d,
            p.map_or("skipped".into(), |p| format!(
                "{:.0} events/s ({:.1} B/event)",
                p.0, p.1
            ))
        );
        nd.push(n);
        lp.push(l);
        direct.push(d);
        peer.extend(p);
    }
    if only_ndjson {
        return;
    }
    let med = |xs: &[(f64, f64)]| {
        (
            median(xs.iter().map(|x| x.0).collect()),
            median(xs.iter().map(|x| x.1).collect()),
        )
    };
    let (nd, lp, peer) = if nd.is_empty() {
        ((f64::NAN, f64::NAN), (f64::NAN, f64::NAN), None)
    } else {
        (med(&nd), med(&lp), (!peer.is_empty()).then(|| med(&peer)))
    };
    let direct = if direct.is_empty() {
        f64::NAN
    } else {
        median(direct)
    };
    // The load for the latency under load: long enough for the probes (each waits
    // behind the load's own commits and feed frames), from the same workload.
    let load_events = env("LOAD_EVENTS", 3_000_000).max(events);
    let (load_bodies, load_newest) = {
        let (mut bodies, mut newest) = (Vec::new(), Vec::new());
        let mut it = Seed000::default().arrivals().take(load_events).peekable();
        while it.peek().is_some() {
            let (mut body, mut max) = (String::new(), i64::MIN);
            for a in it.by_ref().take(BATCH) {
                ndjson_line(&a.event, &mut body);
                max = max.max(a.event.time.0);
            }
            bodies.push(body);
            newest.push(max);
        }
        (Arc::new(bodies), Arc::new(newest))
    };
    let mut idle = Vec::new();
    let (mut loaded, mut keyed) = (Vec::new(), Vec::new());
    let rate = load_rate.unwrap_or(nd.0 / 2.0);
    for run in 0..runs {
        idle.push(rt.block_on(latency_idle(run == 0)));
        for (list, by_key) in [(&mut loaded, false), (&mut keyed, true)] {
            list.push(rt.block_on(latency_loaded(
                &load_bodies,
                &load_newest,
                rate,
                clients,
                by_key,
                run == 0,
            )));
        }
    }
    // The run with the median p99.
    let pick = |mut xs: Vec<Latency>| {
        xs.sort_by(|a, b| a.p99.total_cmp(&b.p99));
        xs.swap_remove(xs.len() / 2)
    };
    let (idle, loaded, keyed) = (pick(idle), pick(loaded), pick(keyed));
    println!();
    println!(
        "seed 000, {events} events, batches of {BATCH}, {clients} connections, median of {runs} runs (2 shared cores: noisy)"
    );
    println!("| ingest, durable                   | events/s  | bytes on disk per event |");
    println!("|-----------------------------------|-----------|-------------------------|");
    println!(
        "| reckon HTTP NDJSON                | {:>9.0} | {:>23.1} |",
        nd.0, nd.1
    );
    println!(
        "| reckon HTTP line protocol         | {:>9.0} | {:>23.1} |",
        lp.0, lp.1
    );
    match peer {
        Some(p) => println!(
            "| PostgreSQL peer (COPY + upsert)   | {:>9.0} | {:>23.1} |",
            p.0, p.1
        ),
        None => {
            println!("| PostgreSQL peer                   | SKIPPED   |                         |")
        }
    }
    println!(
        "| reckon runtime direct (no HTTP)   | {:>9.0} |                         |",
        direct
    );
    println!();
    println!(
        "correction latency, POST of a late event → its `late` emission on the SSE feed (ms; ack = the POST's answer), run with the median p99 of {runs}:"
    );
    println!(
        "| condition                                      | samples | ack p50 | ack p99 | p50    | p99    | max    | mean   |"
    );
    println!(
        "|------------------------------------------------|---------|---------|---------|--------|--------|--------|--------|"
    );
    for (name, l) in [
        ("idle, whole feed".to_string(), &idle),
        (
            format!("under load ({:.0} ev/s), whole feed", loaded.load_rate),
            &loaded,
        ),
        (
            format!("under load ({:.0} ev/s), ?key= feed", keyed.load_rate),
            &keyed,
        ),
    ] {
        println!(
            "| {name:<46} | {:>7} | {:>7.2} | {:>7.2} | {:>6.2} | {:>6.2} | {:>6.2} | {:>6.2} |",
            l.samples, l.ack_p50, l.ack_p99, l.p50, l.p99, l.max, l.mean
        );
    }
    println!("(load target: half the median NDJSON rate, {rate:.0} events/s)");
}
