//! `[[source]]` against real brokers (private `nats-server -js` and `mosquitto`
//! instances on free ports, `reckon_testkit::brokers`), through crashes:
//!
//! - messages are published while `reckon serve` is killed with SIGKILL at random
//!   moments, mid-consumption, several times, then started again; at the end every
//!   window equals the batch oracle over what was published, and the raw log holds
//!   each published event exactly once. The NATS stream has **no id field**: only the
//!   position committed with the events keeps a redelivered message from counting
//!   twice. MQTT has no positions: the ids made from topic and payload do it.
//! - the broker is killed and started again under a running server: the source
//!   reconnects and goes on.
//!
//! Without the brokers' binaries it prints SKIP (a failure with
//! `RECKON_REQUIRE_SERVICES=1`, as in CI).
#![allow(clippy::unwrap_used)]

use reckon_core::{EventTime, Value};
use reckon_runtime::Config;
use reckon_store::Store;
use reckon_testkit::brokers::{Broker, Kind};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod common;
use common::{Rng, serve, wait_for, write_config};

/// One published event: key, event time (Unix seconds), value.
type Published = (String, i64, i64);

/// Messages of 1–3 NDJSON events, times spread over two days in any order (many
/// late), each event numbered so no two messages are alike.
fn messages(rng: &mut Rng, n: usize, first: usize) -> Vec<(String, String, Vec<Published>)> {
    (0..n)
        .map(|m| {
            let device = rng.below(4);
            let events: Vec<Published> = (0..1 + rng.below(3))
                .map(|_| {
                    (
                        format!("d{}", rng.below(5)),
                        1_700_000_000 + rng.below(2 * 86_400) as i64,
                        rng.below(100) as i64,
                    )
                })
                .collect();
            let body = events
                .iter()
                .enumerate()
                .map(|(j, (k, t, v))| {
                    format!(
                        r#"{{"i":"{k}","time":{t},"v":{v},"n":"{}-{j}"}}"#,
                        first + m
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            (format!("plant.device{device}"), body, events)
        })
        .collect()
}

/// Every window in the store equals the oracle over `published`, and the raw log
/// holds each published event once.
fn check_against_oracle(config: &Path, published: &[Published]) {
    let cfg = Config::load(config).unwrap();
    let store = Store::open(&cfg.store.path).unwrap();
    let raw = store.raw_scan("levels").unwrap();
    assert_eq!(
        raw.len(),
        published.len(),
        "the raw log must hold every published event exactly once"
    );
    let spec = cfg.pipelines[0].spec().unwrap();
    let latest: BTreeMap<_, _> = store
        .windows("levels_1h", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .map(|e| ((e.key.clone(), e.window), e))
        .collect();
    let diffs = reckon_testkit::diff_with_oracle(&spec, &latest, &raw);
    assert!(
        diffs.is_empty(),
        "{} windows differ: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(5)]
    );
    // And by hand from what was published (independent of decoding).
    let mut want: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    for (k, t, v) in published {
        let w = want.entry((k.clone(), t - t.rem_euclid(3600))).or_default();
        w.0 += 1;
        w.1 += v;
    }
    let got: BTreeMap<(String, i64), (u64, i64)> = latest
        .values()
        .map(|e| {
            let k = e.key.as_str().trim_start_matches("i=").to_string();
            let sum = match e.value("sum") {
                Some(Value::I64(i)) => *i,
                Some(Value::F64(f)) => *f as i64,
                other => panic!("sum {other:?}"),
            };
            ((k, e.window.start.0 / 1_000_000_000), (e.count, sum))
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn nats_source_survives_sigkill_with_every_event_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut nats) = Broker::start(Kind::Nats, dir.path()) else {
        return;
    };
    let config = write_config(
        dir.path(),
        "",
        &format!(
            r#"
[[source]]
name = "plant"
kind = "nats"
url = "{}"
stream = "levels"
subject = "plant.>"
jetstream = "PLANT"
partition_by = "subject"
batch = 40
"#,
            nats.url()
        ),
    );
    let log = dir.path().join("serve.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let js = rt.block_on(async {
        let c = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(c);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "PLANT".into(),
            subjects: vec!["plant.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js
    });
    let publish = |batch: &[(String, String, Vec<Published>)]| {
        rt.block_on(async {
            for (subject, body, _) in batch {
                js.publish(subject.clone(), body.clone().into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        })
    };
    let mut rng = Rng(7);
    let mut published: Vec<Published> = Vec::new();
    let mut sent = 0usize;
    let first = messages(&mut rng, 1500, 0);
    publish(&first);
    sent += first.len();
    published.extend(first.into_iter().flat_map(|m| m.2));
    // Killed mid-consumption, again and again, with more published in between.
    for round in 0..6 {
        let server = serve(&config, &log);
        std::thread::sleep(Duration::from_millis(80 + rng.below(400)));
        server.kill9();
        let more = messages(&mut rng, 150, sent);
        publish(&more);
        sent += more.len();
        published.extend(more.into_iter().flat_map(|m| m.2));
        eprintln!("round {round}: {sent} messages published");
    }
    let server = serve(&config, &log);
    wait_for(120, "the source to commit every message", || {
        server.sources()["sources"][0]["position"].as_u64() == Some(sent as u64)
    });
    // A message alone with nothing decodable: skipped and logged, the position moves
    // past it.
    publish(&[("plant.device0".into(), "not json".into(), Vec::new())]);
    sent += 1;
    wait_for(60, "the position to move past a bad message", || {
        server.sources()["sources"][0]["position"].as_u64() == Some(sent as u64)
    });
    let s = server.sources();
    assert_eq!(s["sources"][0]["state"], "running", "{s}");
    assert_eq!(server.counted(), published.len() as u64);

    // The broker goes away and comes back: the source reconnects and goes on.
    let connects = server.sources()["sources"][0]["connects"].as_u64().unwrap();
    nats.kill();
    std::thread::sleep(Duration::from_millis(1500));
    nats.restart();
    let js2 = rt.block_on(async {
        async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap())
    });
    let last = messages(&mut rng, 100, sent);
    rt.block_on(async {
        for (subject, body, _) in &last {
            js2.publish(subject.clone(), body.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    sent += last.len();
    published.extend(last.into_iter().flat_map(|m| m.2));
    wait_for(120, "the source to reconnect and commit the rest", || {
        server.sources()["sources"][0]["position"].as_u64() == Some(sent as u64)
    });
    // (The NATS client reconnects by itself; the source may not even notice.)
    let _ = connects;
    server.stop();
    check_against_oracle(&config, &published);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("source `plant` connected"), "{text}");

    // The JetStream stream deleted and made anew: its sequences start again below
    // the committed position. The source says so instead of skipping them.
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        js.delete_stream("PLANT").await.unwrap();
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "PLANT".into(),
            subjects: vec!["plant.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("plant.device0", "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let server = serve(&config, &log);
    wait_for(30, "the source to refuse the new stream", || {
        server.sources()["sources"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("deleted and created anew"))
    });
    assert_eq!(server.counted(), published.len() as u64);
    server.stop();
}

#[test]
fn mqtt_source_survives_sigkill_with_every_event_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::start(Kind::Mosquitto, dir.path()) else {
        return;
    };
    let config = write_config(
        dir.path(),
        "",
        &format!(
            r#"
[[source]]
name = "plant"
kind = "mqtt"
url = "{}"
stream = "levels"
subject = "plant/#"
batch = 40
"#,
            broker.url()
        ),
    );
    let log = dir.path().join("serve.log");
    // The persistent session exists once the server first subscribed.
    let server = serve(&config, &log);
    wait_for(30, "the MQTT source to subscribe", || {
        server.sources()["sources"][0]["state"] == "running"
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publish = |port: u16, batch: &[(String, String, Vec<Published>)]| {
        rt.block_on(async {
            let mut opts = rumqttc::MqttOptions::new("publisher", "127.0.0.1", port);
            opts.set_inflight(100);
            let (client, mut events) = rumqttc::AsyncClient::new(opts, 200);
            let want = batch.len();
            let acks = tokio::spawn(async move {
                let mut n = 0;
                while n < want {
                    if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) =
                        events.poll().await
                    {
                        n += 1;
                    }
                }
            });
            for (subject, body, _) in batch {
                let topic = subject.replace('.', "/");
                client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, body.clone())
                    .await
                    .unwrap();
            }
            tokio::time::timeout(Duration::from_secs(60), acks)
                .await
                .unwrap()
                .unwrap();
            let _ = client.disconnect().await;
        })
    };
    let mut rng = Rng(11);
    let mut published: Vec<Published> = Vec::new();
    let mut sent = 0usize;
    server.kill9();
    let first = messages(&mut rng, 1200, 0);
    publish(broker.port, &first);
    sent += first.len();
    published.extend(first.iter().flat_map(|m| m.2.clone()));
    let mut all = first;
    for round in 0..6 {
        let server = serve(&config, &log);
        std::thread::sleep(Duration::from_millis(80 + rng.below(400)));
        server.kill9();
        let mut more = messages(&mut rng, 120, sent);
        sent += more.len();
        published.extend(more.iter().flat_map(|m| m.2.clone()));
        all.extend(more.iter().cloned());
        // A publisher's retries: ten earlier messages sent again, counted once.
        for _ in 0..10 {
            more.push(all[rng.below(all.len() as u64) as usize].clone());
        }
        publish(broker.port, &more);
        eprintln!("round {round}: {sent} messages published, and 10 again");
    }
    let server = serve(&config, &log);
    let want = published.len() as u64;
    wait_for(120, "every event to be counted", || {
        let n = server.counted();
        if n < want {
            eprintln!("{n} of {want}: {}", server.sources());
            eprintln!(
                "{}",
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        n >= want
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.counted(), want, "an event was counted twice");

    // The broker goes away (its sessions with it) and comes back: the source
    // reconnects, subscribes again and goes on.
    let connects = server.sources()["sources"][0]["connects"].as_u64().unwrap();
    broker.kill();
    std::thread::sleep(Duration::from_millis(1000));
    broker.restart();
    wait_for(60, "the MQTT source to reconnect", || {
        server.sources()["sources"][0]["connects"].as_u64() > Some(connects)
    });
    let last = messages(&mut rng, 100, sent);
    publish(broker.port, &last);
    published.extend(last.into_iter().flat_map(|m| m.2));
    let want = published.len() as u64;
    wait_for(120, "the rest to be counted", || server.counted() >= want);
    server.stop();
    check_against_oracle(&config, &published);
}

/// Kafka, against librdkafka's mock cluster (the Kafka protocol over TCP, in this
/// process, so it outlives every reckon killed): three partitions, one watermark
/// partition each, the consumer group's members killed mid-consumption again and
/// again, the broker taken down and up, and at the end the group's offsets reset
/// to the start. Only the offsets committed with the events (per `topic/partition`)
/// keep a message that comes again from counting twice: the stream has no id field.
#[cfg(feature = "kafka")]
#[test]
fn kafka_source_survives_sigkill_with_every_event_counted_once() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let dir = tempfile::tempdir().unwrap();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("plant", 3, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            r#"
[[source]]
name = "plant"
kind = "kafka"
url = "kafka://{servers}"
stream = "levels"
subject = "plant"
partition_by = "partition"
batch = 10
# A member killed without leaving is given up after this, not Kafka's 45 s.
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
"#
        ),
    );
    let log = dir.path().join("serve.log");
    let producer = || -> BaseProducer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .unwrap()
    };
    let publish = |producer: &BaseProducer, batch: &[(String, String, Vec<Published>)]| {
        for (subject, body, _) in batch {
            let mut record = BaseRecord::to("plant").key(subject).payload(body);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    // Every offset committed: the lanes' positions (the last offset) add up.
    let committed = |server: &common::Server| -> u64 {
        let s = server.sources();
        s["sources"][0]["positions"]
            .as_object()
            .map(|m| m.values().filter_map(|p| p.as_u64()).map(|p| p + 1).sum())
            .unwrap_or(0)
    };
    let mut rng = Rng(13);
    let mut published: Vec<Published> = Vec::new();
    let mut sent = 0usize;
    let first = messages(&mut rng, 2000, 0);
    let p = producer();
    publish(&p, &first);
    sent += first.len();
    published.extend(first.into_iter().flat_map(|m| m.2));
    for round in 0..4 {
        let server = serve(&config, &log);
        // Killed once it has the partitions (after the killed member is given up)
        // and is committing: mid-consumption of the backlog.
        let before = committed(&server);
        wait_for(60, "the source to commit more", || {
            committed(&server) > before
        });
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        eprintln!("round {round}: {} of {sent} committed", committed(&server));
        server.kill9();
        let more = messages(&mut rng, 600, sent);
        publish(&p, &more);
        sent += more.len();
        published.extend(more.into_iter().flat_map(|m| m.2));
    }
    let server = serve(&config, &log);
    wait_for(120, "the source to commit every message", || {
        committed(&server) == sent as u64
    });
    let s = server.sources();
    assert_eq!(s["sources"][0]["state"], "running", "{s}");
    assert_eq!(
        s["sources"][0]["positions"].as_object().unwrap().len(),
        3,
        "{s}"
    );
    // (Windows show what is committed once the early results are out.)
    let want = published.len() as u64;
    wait_for(30, "every event to be counted", || server.counted() >= want);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.counted(), want, "an event was counted twice");

    server.stop();

    // The group's offsets go back to the start (a crash before they were committed
    // to Kafka, or an operator resetting the group): reckon starts after its own.
    {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
        use rdkafka::{Offset, TopicPartitionList};
        let group: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", "reckon-plant")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("plant", p, Offset::Offset(0))
                .unwrap();
        }
        // As a member of the group (the mock takes commits only from members).
        group.subscribe(&["plant"]).unwrap();
        wait_for(60, "the test's consumer to join the group", || {
            let _ = group.poll(Duration::from_millis(100));
            group.assignment().is_ok_and(|a| a.count() == 3)
        });
        group.commit(&tpl, CommitMode::Sync).unwrap();
        group.unsubscribe();
        for _ in 0..10 {
            let _ = group.poll(Duration::from_millis(50));
        }
    }
    let server = serve(&config, &log);
    let last = messages(&mut rng, 50, sent);
    publish(&producer(), &last);
    sent += last.len();
    published.extend(last.into_iter().flat_map(|m| m.2));
    wait_for(120, "the source to commit the last ones", || {
        committed(&server) == sent as u64
    });
    let want = published.len() as u64;
    wait_for(30, "the last ones to be counted", || {
        server.counted() >= want
    });

    // The broker goes away and comes back: librdkafka reconnects, the source goes on.
    mock.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    mock.broker_up(1).unwrap();
    let last = messages(&mut rng, 100, sent);
    publish(&producer(), &last);
    sent += last.len();
    published.extend(last.into_iter().flat_map(|m| m.2));
    wait_for(120, "the source to commit the rest", || {
        committed(&server) == sent as u64
    });
    let want = published.len() as u64;
    wait_for(30, "the rest to be counted", || server.counted() >= want);
    server.stop();
    check_against_oracle(&config, &published);
    // One watermark partition per Kafka partition: the three are used.
    let cfg = Config::load(&config).unwrap();
    let raw = Store::open(&cfg.store.path)
        .unwrap()
        .raw_records("levels")
        .unwrap();
    let parts: std::collections::BTreeSet<u32> = raw.iter().map(|r| r.partition.0).collect();
    assert_eq!(parts.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("source `plant`: assigned plant/"), "{log}");
}
