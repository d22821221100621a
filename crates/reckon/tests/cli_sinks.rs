//! `[[sink]]` kinds `postgres` and `redis` against the machine's real services:
//!
//! - events (many late, so windows get several versions) are posted while `reckon
//!   serve` is killed with SIGKILL twice, mid-delivery; once the sinks caught up, every
//!   PostgreSQL row and Redis hash holds exactly the store's latest version of its
//!   window (count and values), and each key's `latest` hash its newest window;
//! - a second sink replaying the whole change feed into the same table and keys after
//!   one row and one hash were given a far higher version leaves both alone (only a
//!   newer version is ever applied) and everything else equal to the store.
//!
//! - the Kafka sink (against librdkafka's mock cluster) keys every change by its
//!   window, so the topic, read as compaction keeps it, equals the store through
//!   crashes and a full replay.
//!
//! Without PostgreSQL or Redis it prints SKIP (a failure with
//! `RECKON_REQUIRE_SERVICES=1`, as in CI).
#![allow(clippy::unwrap_used)]

use reckon_core::{Emission, EventTime, Key, Value, Window};
use reckon_runtime::Config;
use reckon_store::Store;
use reckon_testkit::brokers::service_up;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{Rng, serve, wait_for, write_config};

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-At",
            "-F",
            "|",
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `HGET key field` for each `(key, field)`, in one `redis-cli` run.
fn redis_hget(gets: &[(String, &str)]) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "--raw"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (k, f) in gets {
        input.push_str(&format!("HGET {k} {f}\n"));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn latest(config: &Path) -> BTreeMap<(Key, Window), Emission> {
    let cfg = Config::load(config).unwrap();
    let store = Store::open(&cfg.store.path).unwrap();
    store
        .windows("levels_1h", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .map(|e| ((e.key.clone(), e.window), e))
        .collect()
}

fn sum(e: &Emission) -> i64 {
    match e.value("sum") {
        Some(Value::I64(i)) => *i,
        Some(Value::F64(f)) => *f as i64,
        other => panic!("sum {other:?}"),
    }
}

/// PostgreSQL's rows: (key, window start in µs) → (version, count, sum).
fn pg_rows(table: &str) -> BTreeMap<(String, i64), (u64, u64, i64)> {
    psql(&format!(
        "SELECT key, (extract(epoch from window_start) * 1000000)::bigint, version, count, (result->>'sum')::numeric::bigint FROM {table} WHERE pipeline = 'levels_1h'"
    ))
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        (
            (f[0].to_string(), f[1].parse().unwrap()),
            (f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap()),
        )
    })
    .collect()
}

fn store_rows(
    latest: &BTreeMap<(Key, Window), Emission>,
) -> BTreeMap<(String, i64), (u64, u64, i64)> {
    latest
        .values()
        .map(|e| {
            (
                (e.key.as_str().to_string(), e.window.start.0 / 1000),
                (u64::from(e.version.0), e.count, sum(e)),
            )
        })
        .collect()
}

fn redis_key(prefix: &str, e: &Emission) -> String {
    let start = jiff::Timestamp::from_nanosecond(i128::from(e.window.start.0)).unwrap();
    format!("{prefix}levels_1h:{}:{start}", e.key.as_str())
}

#[test]
fn postgres_and_redis_sinks_hold_the_latest_versions_through_crashes_and_replays() {
    if !service_up("PostgreSQL", 5432) || !service_up("Redis", 6379) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let table = format!("reckon_sink_test_{tag}");
    let prefix = format!("reckontest:{tag}:");
    let sinks = format!(
        r#"
[[sink]]
name = "pg"
kind = "postgres"
url = "{PG}"
table = "{table}"
batch = 37

[[sink]]
name = "cache"
kind = "redis"
url = "redis://127.0.0.1:6379"
key_prefix = "{prefix}"
"#
    );
    let config = write_config(dir.path(), r#"id_field = "id""#, &sinks);
    let log = dir.path().join("serve.log");
    let mut rng = Rng(5);
    // 30 posts of 60 events; a post is sent again until it is acknowledged (ids make
    // a repeat harmless), and the server dies twice on the way.
    let posts: Vec<String> = (0..30)
        .map(|p| {
            (0..60)
                .map(|j| {
                    format!(
                        r#"{{"id":"{p}-{j}","i":"d{}","time":{},"v":{}}}"#,
                        rng.below(4),
                        1_700_000_000 + rng.below(30 * 3600),
                        rng.below(50)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let kills = [7usize, 19];
    let mut server = serve(&config, &log);
    for (p, body) in posts.iter().enumerate() {
        loop {
            let (status, _) = server.post("/v1/streams/levels/events", body);
            if status == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if kills.contains(&p) {
            // Mid-delivery: the sinks are catching up with what was just posted.
            std::thread::sleep(Duration::from_millis(rng.below(60)));
            server.kill9();
            server = serve(&config, &log);
        }
    }
    let caught_up = |s: &common::Server| {
        let v = s.get("/v1/sinks");
        let last = v["last_change"].as_u64();
        v["sinks"].as_array().is_some_and(|a| {
            a.len() >= 2
                && a.iter()
                    .all(|k| k["cursor"].as_u64() == last && last > Some(0))
        })
    };
    // Early results stop once nothing changes: wait for a quiet, caught-up feed.
    wait_for(120, "the sinks to catch up", || {
        caught_up(&server) && {
            std::thread::sleep(Duration::from_millis(600));
            caught_up(&server)
        }
    });
    server.stop();
    let store = latest(&config);
    assert!(store.len() > 20, "{} windows", store.len());
    assert!(
        store.values().any(|e| e.version.0 > 1),
        "no window was corrected: the test would not tell versions apart"
    );
    let want = store_rows(&store);
    assert_eq!(pg_rows(&table), want, "PostgreSQL rows vs the store");
    let gets: Vec<(String, &str)> = store
        .values()
        .map(|e| (redis_key(&prefix, e), "version"))
        .collect();
    let versions = redis_hget(&gets);
    let expected: Vec<String> = store.values().map(|e| e.version.0.to_string()).collect();
    assert_eq!(versions, expected, "Redis window versions vs the store");
    // Each key's latest: its newest window.
    let mut newest: BTreeMap<&str, &Emission> = BTreeMap::new();
    for e in store.values() {
        newest.insert(e.key.as_str(), e);
    }
    let gets: Vec<(String, &str)> = newest
        .keys()
        .map(|k| (format!("{prefix}levels_1h:{k}:latest"), "start"))
        .collect();
    let starts = redis_hget(&gets);
    let expected: Vec<String> = newest
        .values()
        .map(|e| (e.window.start.0 / 1_000_000).to_string())
        .collect();
    assert_eq!(starts, expected);

    // A replay of the whole feed (a new sink name: cursor 0) into the same table and
    // keys, after one row and one hash were given a far higher version.
    let (victim_key, victim) = want.iter().next().map(|(k, v)| (k.clone(), *v)).unwrap();
    psql(&format!(
        "UPDATE {table} SET version = 1000000 WHERE key = '{}' AND window_start = 'epoch'::timestamptz + {} * interval '1 microsecond'",
        victim_key.0, victim_key.1
    ));
    let first = store.values().next().unwrap();
    let hkey = redis_key(&prefix, first);
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "HSET", &hkey, "version", "1000000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let replay = sinks
        .replace("name = \"pg\"", "name = \"pg_replay\"")
        .replace("name = \"cache\"", "name = \"cache_replay\"");
    let config = write_config(dir.path(), r#"id_field = "id""#, &replay);
    let server = serve(&config, &log);
    wait_for(120, "the replay to finish", || caught_up(&server));
    server.stop();
    let mut after = pg_rows(&table);
    assert_eq!(after.remove(&victim_key).map(|v| v.0), Some(1_000_000));
    assert_ne!(victim.0, 1_000_000);
    let mut rest = want.clone();
    rest.remove(&victim_key);
    assert_eq!(after, rest, "a replay changed PostgreSQL rows");
    assert_eq!(redis_hget(&[(hkey, "version")]), ["1000000"]);
    psql(&format!("DROP TABLE {table}"));
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -h 127.0.0.1 --scan --pattern '{prefix}*' | xargs -r redis-cli -h 127.0.0.1 DEL >/dev/null"
        ))
        .status();
}

#[test]
fn nats_sink_publishes_each_version_once_as_a_cloudevent_even_when_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) =
        reckon_testkit::brokers::Broker::start(reckon_testkit::brokers::Kind::Nats, dir.path())
    else {
        return;
    };
    let sink = |name: &str| {
        format!(
            "[[sink]]\nname = \"{name}\"\nkind = \"nats\"\nurl = \"{}\"\nsubject = \"feed\"\njetstream = \"FEED\"\nbatch = 25\n",
            nats.url()
        )
    };
    let config = write_config(dir.path(), r#"id_field = "id""#, &sink("feed"));
    let log = dir.path().join("serve.log");
    let mut rng = Rng(9);
    let server = serve(&config, &log);
    for p in 0..10 {
        let body: Vec<String> = (0..40)
            .map(|j| {
                format!(
                    r#"{{"id":"{p}-{j}","i":"d{}","time":{},"v":1}}"#,
                    rng.below(3),
                    1_700_000_000 + rng.below(6 * 3600)
                )
            })
            .collect();
        let (status, out) = server.post("/v1/streams/levels/events", &body.join("\n"));
        assert_eq!(status, 200, "{out}");
    }
    let caught_up = |s: &common::Server| {
        let v = s.get("/v1/sinks");
        let last = v["last_change"].as_u64();
        last > Some(0) && v["sinks"][0]["cursor"].as_u64() == last
    };
    wait_for(60, "the NATS sink to catch up", || {
        caught_up(&server) && {
            std::thread::sleep(Duration::from_millis(600));
            caught_up(&server)
        }
    });
    let changes = server.get("/v1/sinks")["last_change"].as_u64().unwrap();
    server.stop();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let read = || {
        rt.block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
            let mut stream = js.get_stream("FEED").await.unwrap();
            let n = stream.info().await.unwrap().state.messages;
            let mut newest: BTreeMap<(String, String), u64> = BTreeMap::new();
            for seq in 1..=n {
                let m = stream.get_raw_message(seq).await.unwrap();
                assert!(m.subject.starts_with("feed.levels_1h"), "{}", m.subject);
                let ev: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!(ev["specversion"], "1.0");
                let d = &ev["data"];
                let v = d["version"].as_u64().unwrap();
                assert_eq!(
                    ev["id"].as_str().unwrap(),
                    format!(
                        "levels_1h/{}/{}/v{v}",
                        d["key"].as_str().unwrap(),
                        d["window"]["start"].as_str().unwrap()
                    )
                );
                let k = (
                    d["key"].as_str().unwrap().to_string(),
                    d["window"]["start"].as_str().unwrap().to_string(),
                );
                let e = newest.entry(k).or_default();
                *e = (*e).max(v);
            }
            (n, newest)
        })
    };
    let (n, newest) = read();
    assert_eq!(n, changes, "one message per change");
    let store = latest(&config);
    let want: BTreeMap<(String, String), u64> = store
        .values()
        .map(|e| {
            let start = jiff::Timestamp::from_nanosecond(i128::from(e.window.start.0)).unwrap();
            (
                (e.key.as_str().to_string(), start.to_string()),
                u64::from(e.version.0),
            )
        })
        .collect();
    assert_eq!(newest, want);
    assert!(want.values().any(|v| *v > 1), "no window was corrected");

    // The whole feed again under a new name (cursor 0): JetStream keeps one of each.
    let config = write_config(dir.path(), r#"id_field = "id""#, &sink("feed_replay"));
    let server = serve(&config, &log);
    wait_for(60, "the replay to finish", || caught_up(&server));
    server.stop();
    assert_eq!(read().0, changes, "a replayed change was stored twice");
}

/// Every record of a topic on the mock cluster: (partition, key, `ce_id` header,
/// CloudEvent), in offset order per partition.
#[cfg(feature = "kafka")]
fn kafka_records(servers: &str, topic: &str) -> Vec<(i32, String, String, serde_json::Value)> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::{Headers as _, Message as _};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "test-reader")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut want = 0i64;
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        want += hi - lo;
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < want && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            out.push((
                m.partition(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                id,
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
            ));
        }
    }
    assert_eq!(out.len() as i64, want, "could not read the whole topic");
    out
}

/// The Kafka sink against librdkafka's mock cluster: every change a record keyed by
/// its window, with its CloudEvent id; killed mid-delivery and replayed in full, the
/// topic still reads, as compaction would keep it (the last record per key), as the
/// store's latest versions, and every version is there at least once.
#[cfg(feature = "kafka")]
#[test]
fn kafka_sink_keyed_by_window_reads_as_the_latest_versions_through_crashes_and_replays() {
    use rdkafka::mocking::MockCluster;
    let dir = tempfile::tempdir().unwrap();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("results", 3, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let sink = |name: &str| {
        format!(
            "[[sink]]\nname = \"{name}\"\nkind = \"kafka\"\nurl = \"kafka://{servers}\"\ntopic = \"results\"\nbatch = 20\n"
        )
    };
    let config = write_config(dir.path(), r#"id_field = "id""#, &sink("feed"));
    let log = dir.path().join("serve.log");
    let mut rng = Rng(21);
    let post = |server: &common::Server, rng: &mut Rng, p: usize| {
        let body: Vec<String> = (0..40)
            .map(|j| {
                format!(
                    r#"{{"id":"{p}-{j}","i":"d{}","time":{},"v":{}}}"#,
                    rng.below(3),
                    1_700_000_000 + rng.below(6 * 3600),
                    rng.below(10)
                )
            })
            .collect();
        let (status, out) = server.post("/v1/streams/levels/events", &body.join("\n"));
        assert_eq!(status, 200, "{out}");
    };
    let caught_up = |s: &common::Server| {
        let v = s.get("/v1/sinks");
        let last = v["last_change"].as_u64();
        last > Some(0) && v["sinks"][0]["cursor"].as_u64() == last
    };
    let mut p = 0;
    for _ in 0..2 {
        let server = serve(&config, &log);
        for _ in 0..6 {
            post(&server, &mut rng, p);
            p += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        server.kill9();
    }
    let server = serve(&config, &log);
    for _ in 0..4 {
        post(&server, &mut rng, p);
        p += 1;
    }
    wait_for(60, "the Kafka sink to catch up", || {
        caught_up(&server) && {
            std::thread::sleep(Duration::from_millis(600));
            caught_up(&server)
        }
    });
    let changes = server.get("/v1/sinks")["last_change"].as_u64().unwrap();
    server.stop();

    let store = latest(&config);
    let want: BTreeMap<String, (u64, u64)> = store
        .values()
        .map(|e| {
            let start = jiff::Timestamp::from_nanosecond(i128::from(e.window.start.0)).unwrap();
            (
                format!("levels_1h/{}/{start}", e.key.as_str()),
                (u64::from(e.version.0), e.count),
            )
        })
        .collect();
    assert!(want.values().any(|v| v.0 > 1), "no window was corrected");
    // (Versions of a window may repeat out of order: a crash resends the batch whose
    // cursor was not committed, a replay everything; the last record is the newest.)
    let check = |records: &[(i32, String, String, serde_json::Value)]| {
        // The last record of each key (what a compacted topic keeps), in offset order.
        let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
        let mut ids = std::collections::BTreeSet::new();
        for (partition, key, id, ev) in records {
            let d = &ev["data"];
            let v = d["version"].as_u64().unwrap();
            assert_eq!(ev["specversion"], "1.0");
            assert_eq!(
                *id,
                ev["id"].as_str().unwrap(),
                "the ce_id header is the id"
            );
            assert_eq!(*id, format!("{key}/v{v}"));
            assert_eq!(
                *partition_of.entry(key).or_insert(*partition),
                *partition,
                "one window, one partition"
            );
            last.insert(key.clone(), (v, d["count"].as_u64().unwrap()));
            ids.insert(id.clone());
        }
        assert_eq!(last, want);
        ids.len() as u64
    };
    let first = kafka_records(&servers, "results");
    assert!(first.len() as u64 >= changes, "a change is missing");
    assert_eq!(check(&first), changes, "every change at least once");

    // The whole feed again under a new name (cursor 0): every record again, and the
    // topic still reads as the store.
    let config = write_config(dir.path(), r#"id_field = "id""#, &sink("feed_replay"));
    let server = serve(&config, &log);
    wait_for(60, "the replay to finish", || caught_up(&server));
    server.stop();
    let all = kafka_records(&servers, "results");
    assert_eq!(all.len(), first.len() + changes as usize);
    assert_eq!(check(&all), changes);
}
