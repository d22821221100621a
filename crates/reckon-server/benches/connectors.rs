//! Connector figures (`docs/BENCHMARKS.md`):
//!
//! 1. **Ingest rate into durable results** from a backlog: `EVENTS` events in messages
//!    of `PER_MESSAGE` NDJSON events (and of 1), consumed by a `[[source]]` from a
//!    private `nats-server -js` and a private `mosquitto` (a persistent session that
//!    queued the backlog while reckon was down), until every message is committed with
//!    its position. Side by side in the same run: the same events POSTed over HTTP in
//!    bodies of `PER_MESSAGE` events by 4 clients (the baseline).
//! 2. **Late message → corrected PostgreSQL row**: a late event published on NATS into
//!    a closed window, timed until the `[[sink]]`'s row for that window shows the new
//!    version (polled every millisecond on a connection of its own); p50/p99/max over
//!    `SAMPLES`, idle and while a publisher sends on-time events at `LOAD_RATE`/s.
//!
//! Kafka's rows need `--features kafka` and run against librdkafka's mock cluster in
//! the bench's own process (it shares the 2 cores with reckon).
//!
//! `cargo bench -p reckon-server --features kafka --bench connectors` (env `EVENTS`, `PER_MESSAGE`,
//! `SAMPLES`, `LOAD_RATE`, `RUNS`; `LATENCY_ONLY=1` skips the rates). Needs `nats-server`, `mosquitto` and PostgreSQL
//! on 127.0.0.1:5432 (`scripts/services.sh`).
#![allow(clippy::unwrap_used)]

use reckon_runtime::Config;
use reckon_server::{App, AppOptions};
use reckon_testkit::brokers::{Broker, Kind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BASE_S: i64 = 1_709_280_000; // 2024-03-01T08:00:00Z
const STATIONS: usize = 100;
const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &Path, extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
[store]
path = "{}"
[[stream]]
name = "levels"
key_fields = ["s"]
time_format = "unix_s"
[[pipeline]]
name = "levels_1m"
stream = "levels"
window = {{ type = "tumbling", size = "1m" }}
aggregates = [{{ fn = "count" }}, {{ fn = "sum", field = "v", name = "sum" }}]
out_of_orderness = "5s"
allowed_lateness = "30d"
retention = "60d"
{extra}
"#,
        dir.join("store").display()
    ))
    .unwrap()
}

/// `n` events of one message body: stations in turn, one second apart from `t0`.
fn body(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| {
            format!(
                "{{\"s\":\"{}\",\"time\":{},\"v\":1}}\n",
                i % STATIONS,
                BASE_S + (i / STATIONS) as i64
            )
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn start(config: Config) -> (App, tokio::sync::watch::Sender<bool>) {
    let app = App::open(config, AppOptions::default()).unwrap();
    let stop = app.shutdown_signal();
    (app, stop)
}

/// Waits until the source committed `messages` messages; the seconds it took.
async fn drained(app: &App, messages: u64, started: Instant) -> f64 {
    loop {
        let s = app.state().sources().list();
        if s.first().is_some_and(|s| s.messages >= messages) {
            return started.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn nats_rate(events: usize, per: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let nats = Broker::start(Kind::Nats, dir.path()).unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let messages = events / per;
    let mut acks = Vec::new();
    for m in 0..messages {
        acks.push(
            js.publish(format!("bench.{}", m % 8), body(m * per, per).into())
                .await
                .unwrap(),
        );
        if acks.len() >= 1000 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
    let cfg = config(
        dir.path(),
        &format!(
            "[[source]]\nname = \"b\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"levels\"\nsubject = \"bench.>\"\njetstream = \"BENCH\"\n",
            nats.url()
        ),
    );
    let started = Instant::now();
    let (app, stop) = start(cfg).await;
    let secs = drained(&app, messages as u64, started).await;
    let _ = stop.send(true);
    drop(app);
    events as f64 / secs
}

async fn mqtt_rate(events: usize, per: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(Kind::Mosquitto, dir.path()).unwrap();
    let cfg = || {
        config(
            dir.path(),
            &format!(
                "[[source]]\nname = \"b\"\nkind = \"mqtt\"\nurl = \"{}\"\nstream = \"levels\"\nsubject = \"bench/#\"\n",
                broker.url()
            ),
        )
    };
    // The session: subscribed once, then reckon is away while the backlog is queued.
    {
        let (app, stop) = start(cfg()).await;
        while app.state().sources().list()[0].connects == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let messages = events / per;
    let mut opts = rumqttc::MqttOptions::new("bench-publisher", "127.0.0.1", broker.port);
    opts.set_inflight(200);
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 1000);
    let acked = tokio::spawn(async move {
        let mut n = 0;
        while n < messages {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = el.poll().await {
                n += 1;
            }
        }
    });
    for m in 0..messages {
        client
            .publish(
                format!("bench/{}", m % 8),
                rumqttc::QoS::AtLeastOnce,
                false,
                body(m * per, per),
            )
            .await
            .unwrap();
    }
    acked.await.unwrap();
    let started = Instant::now();
    let (app, stop) = start(cfg()).await;
    let secs = drained(&app, messages as u64, started).await;
    let _ = stop.send(true);
    drop(app);
    events as f64 / secs
}

/// Kafka: the backlog on librdkafka's mock cluster (in this process), 8 partitions.
#[cfg(feature = "kafka")]
async fn kafka_rate(events: usize, per: usize) -> f64 {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let dir = tempfile::tempdir().unwrap();
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("bench", 8, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let messages = events / per;
    let mut pending = Vec::new();
    for m in 0..messages {
        let (key, payload) = (format!("{}", m % 8), body(m * per, per));
        loop {
            match producer.send_result(FutureRecord::to("bench").key(&key).payload(&payload)) {
                Ok(d) => break pending.push(d),
                // The queue is full: wait for what is in flight.
                Err(_) => {
                    for d in pending.drain(..) {
                        d.await.unwrap().unwrap();
                    }
                }
            }
        }
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    let cfg = config(
        dir.path(),
        &format!(
            "[[source]]\nname = \"b\"\nkind = \"kafka\"\nurl = \"kafka://{servers}\"\nstream = \"levels\"\nsubject = \"bench\"\npartition_by = \"partition\"\n"
        ),
    );
    let (app, stop) = start(cfg).await;
    // Timed from the first commit: joining the group (the mock delays a new group's
    // first rebalance by 3 s, as Kafka's `group.initial.rebalance.delay.ms`) is not
    // consumption.
    let (started, first) = loop {
        let m = app.state().sources().list()[0].messages;
        if m > 0 {
            break (Instant::now(), m);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let secs = drained(&app, messages as u64, started).await;
    let _ = stop.send(true);
    drop(app);
    (messages as u64 - first) as f64 * per as f64 / secs
}

#[cfg(not(feature = "kafka"))]
async fn kafka_rate(_: usize, _: usize) -> f64 {
    f64::NAN
}

async fn http_rate(events: usize, per: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (app, stop) = start(config(dir.path(), "")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/streams/levels/events",
        listener.local_addr().unwrap()
    );
    let task = tokio::spawn(app.serve(listener));
    let c = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let messages = events / per;
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (c, url, next) = (c.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let m = next.fetch_add(1, Ordering::Relaxed);
                    if m >= messages {
                        return;
                    }
                    let r = c.post(&url).body(body(m * per, per)).send().await.unwrap();
                    assert!(r.status().is_success());
                }
            })
        })
        .collect();
    for t in clients {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    events as f64 / secs
}

/// Where the latency bench publishes: a message is sent once the broker stored it.
#[derive(Clone)]
enum Publisher {
    Nats(Box<async_nats::jetstream::Context>),
    #[cfg(feature = "kafka")]
    Kafka(rdkafka::producer::FutureProducer),
}

impl Publisher {
    async fn send(&self, subject: &str, body: String) {
        match self {
            Publisher::Nats(js) => {
                js.publish(subject.to_string(), body.into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => {
                p.send(
                    rdkafka::producer::FutureRecord::to("lat")
                        .key(subject)
                        .payload(&body),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            }
        }
    }
}

/// Late message (NATS, or Kafka on the mock cluster) → corrected PostgreSQL row, in
/// ms: (idle, under load, load rate).
async fn latency(samples: usize, load_rate: usize, kafka: bool) -> (Vec<f64>, Vec<f64>, f64) {
    let dir = tempfile::tempdir().unwrap();
    let table = format!("reckon_bench_{}", std::process::id());
    let sink = format!(
        "[[sink]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"{PG}\"\ntable = \"{table}\"\n"
    );
    let _nats;
    #[cfg(feature = "kafka")]
    let _mock;
    let (js, source) = if !kafka {
        _nats = Broker::start(Kind::Nats, dir.path()).unwrap();
        let js = async_nats::jetstream::new(async_nats::connect(_nats.url()).await.unwrap());
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "LAT".into(),
            subjects: vec!["lat.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        (
            Publisher::Nats(Box::new(js)),
            format!(
                "[[source]]\nname = \"b\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"levels\"\nsubject = \"lat.>\"\njetstream = \"LAT\"\n",
                _nats.url()
            ),
        )
    } else {
        #[cfg(feature = "kafka")]
        {
            // The mock answers a fetch that found nothing only after its whole
            // `fetch.wait.max.ms` (500 ms by default), even when a message arrives
            // meanwhile; a Kafka broker answers at once. So the consumer asks with a
            // short wait here, or the figure would be the mock's timer.
            _mock = rdkafka::mocking::MockCluster::new(1).unwrap();
            _mock.create_topic("lat", 1, 1).unwrap();
            let servers = _mock.bootstrap_servers();
            let p: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("linger.ms", "0")
                .create()
                .unwrap();
            (
                Publisher::Kafka(p),
                format!(
                    "[[source]]\nname = \"b\"\nkind = \"kafka\"\nurl = \"kafka://{servers}\"\nstream = \"levels\"\nsubject = \"lat\"\nproperties = {{ \"fetch.wait.max.ms\" = \"5\" }}\n"
                ),
            )
        }
        #[cfg(not(feature = "kafka"))]
        unreachable!("Kafka's latency needs --features kafka")
    };
    let cfg = config(dir.path(), &format!("{source}{sink}"));
    let (app, stop) = start(cfg).await;
    // Ten minutes of every station: the first nine minutes' windows close.
    for m in 0..60 {
        js.send("lat.a", body(m * 1000, 1000)).await;
    }
    let (pg, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let version = |station: usize, start: i64| {
        let pg = &pg;
        let table = table.clone();
        async move {
            pg.query_opt(
                &format!(
                    "SELECT version FROM {table} WHERE key = $1 AND window_start = to_timestamp($2)"
                ),
                &[&format!("s={station}"), &(start as f64)],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, i64>(0))
        }
    };
    // Until the sink wrote the closed windows.
    while version(0, BASE_S).await.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let probe = |k: usize| {
        let js = js.clone();
        let version = &version;
        async move {
            let station = k % STATIONS;
            let start = BASE_S + 60 * (k / STATIONS % 5) as i64;
            let before = version(station, start).await.unwrap_or(0);
            let late = format!("{{\"s\":\"{station}\",\"time\":{},\"v\":1}}\n", start + 30);
            let t = Instant::now();
            js.send("lat.late", late).await;
            loop {
                if version(station, start).await.unwrap_or(0) > before {
                    return t.elapsed().as_secs_f64() * 1e3;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let mut idle = Vec::new();
    for k in 0..samples {
        idle.push(probe(k).await);
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let load = {
        let (js, stopping) = (js.clone(), stopping.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut sent = 0usize;
            let mut first = 60_000;
            while !stopping.load(Ordering::Relaxed) {
                js.send("lat.load", body(first, 100)).await;
                first += 100;
                sent += 100;
                let due = Duration::from_secs_f64(sent as f64 / load_rate as f64);
                if let Some(w) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(w).await;
                }
            }
            sent as f64 / started.elapsed().as_secs_f64()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut loaded = Vec::new();
    for k in samples..2 * samples {
        loaded.push(probe(k).await);
    }
    stopping.store(true, Ordering::Relaxed);
    let rate = load.await.unwrap();
    let _ = stop.send(true);
    drop(app);
    let _ = pg
        .execute(&format!("DROP TABLE IF EXISTS {table}"), &[])
        .await;
    (idle, loaded, rate)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = env("EVENTS", 200_000);
    let per = env("PER_MESSAGE", 100);
    let runs = env("RUNS", 3);
    let samples = env("SAMPLES", 50);
    let load_rate = env("LOAD_RATE", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let rates = if std::env::var("LATENCY_ONLY").is_ok() {
        Vec::new()
    } else {
        vec![
            (format!("NATS, {per} events/message"), events, per),
            (format!("MQTT, {per} events/message"), events, per),
            (
                format!("Kafka (mock cluster, in process), {per} events/message"),
                events,
                per,
            ),
            (
                format!("HTTP, {per} events/POST, 4 clients (baseline)"),
                events,
                per,
            ),
            ("NATS, 1 event/message".to_string(), events / 10, 1),
            ("MQTT, 1 event/message".to_string(), events / 10, 1),
            (
                "Kafka (mock cluster, in process), 1 event/message".to_string(),
                events / 10,
                1,
            ),
        ]
    };
    for (name, e, p) in rates {
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(rt.block_on(async {
                if name.starts_with("NATS") {
                    nats_rate(e, p).await
                } else if name.starts_with("MQTT") {
                    mqtt_rate(e, p).await
                } else if name.starts_with("Kafka") {
                    kafka_rate(e, p).await
                } else {
                    http_rate(e, p).await
                }
            }));
        }
        eprintln!("{name}: {v:.0?}");
        rows.push((name, v));
    }
    println!("| source | events/s (median of {runs}) | runs |");
    println!("|---|---|---|");
    for (name, mut v) in rows {
        let runs = v
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("| {name} | {:.0} | {runs} |", median(&mut v));
    }
    for (broker, kafka) in [("NATS", false), ("Kafka (mock cluster)", true)] {
        if kafka && cfg!(not(feature = "kafka")) {
            continue;
        }
        let mut idle = Vec::new();
        let mut loaded = Vec::new();
        let mut rates = Vec::new();
        for _ in 0..runs {
            let (i, l, r) = rt.block_on(latency(samples, load_rate, kafka));
            idle.extend(i);
            loaded.extend(l);
            rates.push(r);
        }
        println!();
        println!("| late {broker} message → corrected PostgreSQL row | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|");
        for (name, v) in [
            ("idle".to_string(), &mut idle),
            (
                format!("under load ({:.0} events/s on-time)", median(&mut rates)),
                &mut loaded,
            ),
        ] {
            let max = v.iter().copied().fold(0.0, f64::max);
            println!(
                "| {name} | {:.1} | {:.1} | {max:.1} |",
                percentile(v, 0.5),
                percentile(v, 0.99)
            );
        }
    }
}
