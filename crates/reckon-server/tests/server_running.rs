//! A running total over HTTP (seed 003): door crossings posted as NDJSON, the total of
//! a space now and at past times, a late crossing that corrects every later total as
//! one bucket version on the change feed, and the total as it was known before it.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_core::ProcessingTime;
use reckon_server::AppOptions;
use reckon_server::clock::Clock;
use serde_json::Value as Json;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock the test sets.
#[derive(Debug)]
struct SetClock(AtomicI64);

impl SetClock {
    fn set(&self, t: ProcessingTime) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for SetClock {
    fn now(&self) -> ProcessingTime {
        ProcessingTime(self.0.load(Ordering::SeqCst))
    }
}

const EXTRA: &str = r#"
[[stream]]
name = "crossings"
key_fields = ["space"]
time_format = "rfc3339"
max_future = "off"
[[running_total]]
name = "occupancy"
stream = "crossings"
bucket = "1m"
value = "direction"
reset = { at = "04:00", time_zone = "Europe/Amsterdam" }
clamp = true
[[running_total]]
name = "crossings_net"
stream = "crossings"
bucket = "1m"
value = "direction"
reset = { at = "04:00", time_zone = "Europe/Amsterdam" }
"#;

async fn get(c: &reqwest::Client, url: String) -> (u16, Json) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The server's clock at the start: 2022-06-13 12:00 UTC, standing still until set.
const START: i64 = 1_655_121_600_000_000_000;

/// A server with the running totals above on a fresh store, on a clock the test sets.
async fn serve() -> (tempfile::TempDir, Arc<SetClock>, common::Running) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SetClock(AtomicI64::new(START)));
    let server = common::serve(
        common::config(dir.path(), EXTRA),
        AppOptions {
            clock: clock.clone(),
            ..AppOptions::default()
        },
    )
    .await;
    (dir, clock, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_now_at_a_past_time_after_a_late_crossing_and_as_known_before() {
    let (_dir, clock, server) = serve().await;
    let c = reqwest::Client::new();
    let post = |body: &'static str| {
        let (c, url) = (c.clone(), server.url("/v1/streams/crossings/events"));
        async move {
            let r = c.post(url).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Json>().await.unwrap()
        }
    };
    // Three in, one out, in the lobby, between 10:00 and 10:03; the watermark passes
    // those minutes with an event at 11:00 in another space.
    post(concat!(
        r#"{"space":"lobby","time":"2022-06-13T10:00:05Z","direction":1}"#,
        "\n",
        r#"{"space":"lobby","time":"2022-06-13T10:00:40Z","direction":1}"#,
        "\n",
        r#"{"space":"lobby","time":"2022-06-13T10:01:10Z","direction":1}"#,
        "\n",
        r#"{"space":"lobby","time":"2022-06-13T10:03:00Z","direction":-1}"#,
        "\n",
        r#"{"space":"hall","time":"2022-06-13T11:00:00Z","direction":1}"#,
        "\n",
    ))
    .await;
    let total = |q: &str| {
        let (c, url) = (
            c.clone(),
            server.url(&format!("/v1/pipelines/occupancy/total?{q}")),
        );
        async move { get(&c, url).await }
    };
    let (s, now) = total("key=space=lobby").await;
    assert_eq!(s, 200, "{now}");
    assert_eq!(now["value"], 2, "{now}");
    assert_eq!(
        (now["real_time"].clone(), now["corrected_at"].clone()),
        (Json::from(2), Json::Null),
        "{now}"
    );
    assert_eq!(now["at"], "2022-06-13T12:00:00Z");
    let (_, past) = total("key=space=lobby&at=2022-06-13T10:00:59Z").await;
    assert_eq!(past["value"], 2, "{past}");
    let (_, before) = total("key=space=lobby&at=2022-06-13T09:59:00Z").await;
    assert_eq!(before["value"], Json::Null, "no data yet: {before}");
    let (_, nobody) = total("key=space=nobody").await;
    assert_eq!(nobody["value"], Json::Null);

    // As the results said at 12:00: buckets 10:00 (2) and 10:01 (3) and 10:03 (2).
    let known = "known_at=2022-06-13T12:00:00Z";
    let (_, k) = total(&format!("key=space=lobby&at=2022-06-13T10:02:00Z&{known}")).await;
    assert_eq!(
        (k["value"].clone(), k["resolution"].clone()),
        (Json::from(3), Json::from("bucket")),
        "{k}"
    );

    // At 12:30 a late "out" at 10:00:50 arrives: from 10:00:50 on every total is one less.
    clock.set(ProcessingTime(START + 1_800_000_000_000));
    let mut feed_since = server.state.store().last_change();
    let before_late = feed_since;
    let r = post(concat!(
        r#"{"space":"lobby","time":"2022-06-13T10:00:50Z","direction":-1}"#,
        "\n"
    ))
    .await;
    assert_eq!(r["late"], 1, "{r}");
    let (_, now) = total("key=space=lobby").await;
    assert_eq!(now["value"], 1, "{now}");
    // Live, the late "out" came after 3 in and 1 out: 1 as well (no clamp was hit).
    assert_eq!(
        (now["real_time"].clone(), now["difference"].clone()),
        (Json::from(1), Json::from(0)),
        "{now}"
    );
    assert_eq!(now["corrected_at"], "2022-06-13T12:30:00Z");
    let (_, past) = total("key=space=lobby&at=2022-06-13T10:00:45Z").await;
    assert_eq!(
        past["value"], 2,
        "before the late crossing: unchanged: {past}"
    );
    let (_, past) = total("key=space=lobby&at=2022-06-13T10:00:55Z").await;
    assert_eq!(past["value"], 1, "{past}");
    // One change per bucket whose clamped total moved, each a new version.
    let (_, page) = get(
        &c,
        server.url(&format!(
            "/v1/pipelines/occupancy/changes?since={feed_since}"
        )),
    )
    .await;
    let changes = page["changes"].as_array().unwrap();
    let starts: Vec<&str> = changes
        .iter()
        .map(|e| e["window"]["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2022-06-13T10:00:00Z",
            "2022-06-13T10:01:00Z",
            "2022-06-13T10:03:00Z"
        ],
        "{page}"
    );
    assert!(
        changes
            .iter()
            .all(|e| e["version"] == 2 && e["kind"] == "late"),
        "{page}"
    );
    assert_eq!(
        changes[0]["values"],
        serde_json::json!({"delta": 1, "total": 1})
    );
    feed_since = page["next"].as_u64().unwrap();
    assert!(feed_since > 0);

    // Unclamped, the late crossing is one record: its bucket's new version, saying
    // which range of totals it moves and by how much.
    let (_, net) = get(
        &c,
        server.url(&format!(
            "/v1/pipelines/crossings_net/changes?since={before_late}"
        )),
    )
    .await;
    let records = net["changes"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{net}");
    assert_eq!(
        records[0]["range"],
        serde_json::json!({"from": "2022-06-13T10:00:00Z", "until": "2022-06-14T02:00:00Z", "delta": -1, "replaces": 1}),
        "{net}"
    );
    assert_eq!(records[0]["values"]["delta"], 1, "the bucket: +1 +1 -1");

    // As known at 12:00 (before the late crossing) and at 12:30 (after it).
    let (_, k) = total(&format!("key=space=lobby&at=2022-06-13T10:02:00Z&{known}")).await;
    assert_eq!(k["value"], 3, "{k}");
    let (_, k) =
        total("key=space=lobby&at=2022-06-13T10:02:00Z&known_at=2022-06-13T12:30:00Z").await;
    assert_eq!(k["value"], 2, "{k}");

    // The café: an "out" arrives first, its "in" (earlier in event time) after it.
    // Live, the out hit the clamp and the in counted: 1. Reconciled, in then out: 0.
    post(concat!(
        r#"{"space":"cafe","time":"2022-06-13T10:30:00Z","direction":-1}"#,
        "\n"
    ))
    .await;
    post(concat!(
        r#"{"space":"cafe","time":"2022-06-13T10:20:00Z","direction":1}"#,
        "\n"
    ))
    .await;
    let (_, cafe) = total("key=space=cafe").await;
    assert_eq!(
        (
            cafe["value"].clone(),
            cafe["real_time"].clone(),
            cafe["difference"].clone()
        ),
        (Json::from(0), Json::from(1), Json::from(-1)),
        "{cafe}"
    );

    // Errors say what is wrong.
    let (s, e) = total("at=2022-06-13T10:00:00Z").await;
    assert_eq!(s, 400);
    assert!(
        e["error"].as_str().unwrap().contains("`key` is required"),
        "{e}"
    );
    let (s, e) = get(&c, server.url("/v1/pipelines/mean_1h/total?key=i=1")).await;
    assert_eq!(s, 400);
    assert!(
        e["error"].as_str().unwrap().contains("not a running_total"),
        "{e}"
    );
    let (s, _) = get(&c, server.url("/v1/pipelines/nope/total?key=i=1")).await;
    assert_eq!(s, 404);
    let (s, e) = total("key=space=lobby&at=yesterday").await;
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("`at`"), "{e}");
    server.shutdown().await;
}

/// `known_at` answers what the stored results said at that processing time: crossings
/// (many late) posted in 12 requests, the clock moving between them; afterwards, for
/// every request's time and many event times, the answer equals the oracle over the
/// crossings posted by then, over the buckets the watermark had passed by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_at_answers_equal_what_the_results_said_then() {
    let (_dir, clock, server) = serve().await;
    let c = reqwest::Client::new();
    let base_s = 1_655_110_800i64; // 2022-06-13T09:00:00Z
    let mut rng = reckon_workload::SplitMix64::new(17);
    let mut posted: Vec<reckon_core::Event> = Vec::new();
    let mut checkpoints: Vec<(i64, usize, i64)> = Vec::new(); // (processing time, events, watermark)
    let mut newest = i64::MIN;
    for request in 0..12i64 {
        let now = START + request * 60_000_000_000;
        clock.set(ProcessingTime(now));
        let mut body = String::new();
        for _ in 0..40 {
            let space = ["lobby", "cafe"][(rng.next_u64() % 2) as usize];
            // Mostly in order (10 minutes a request), a quarter up to 2 hours late.
            let late = if rng.next_u64().is_multiple_of(4) {
                rng.next_u64() % 7200
            } else {
                0
            } as i64;
            let t = base_s + request * 600 + (rng.next_u64() % 600) as i64 - late;
            let d = if rng.next_u64().is_multiple_of(3) {
                -1
            } else {
                1
            };
            let time = jiff::Timestamp::from_second(t).unwrap();
            body.push_str(&format!(
                "{{\"space\":\"{space}\",\"time\":\"{time}\",\"direction\":{d}}}\n"
            ));
            posted.push(reckon_core::Event {
                stream: "crossings".into(),
                key: reckon_core::Key::from_tags([("space", space)]).unwrap(),
                time: reckon_core::EventTime::from_secs(t),
                id: None,
                fields: vec![("direction".into(), reckon_core::Value::I64(d))],
            });
            newest = newest.max(t * 1_000_000_000);
        }
        let r = c
            .post(server.url("/v1/streams/crossings/events"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        checkpoints.push((now, posted.len(), newest));
    }
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let four = jiff::civil::time(4, 0, 0, 0);
    let value = |e: &reckon_core::Event| e.field("direction").cloned();
    let mut checked = 0;
    for &(now, n, watermark) in &checkpoints {
        let known = jiff::Timestamp::from_nanosecond(i128::from(now)).unwrap();
        for (pipeline, clamp) in [("occupancy", true), ("crossings_net", false)] {
            let mut oracle =
                reckon_testkit::running::RunningOracle::new(reckon_core::Span::minutes(1), value)
                    .reset(four, tz.clone());
            if clamp {
                oracle = oracle.clamp();
            }
            for space in ["lobby", "cafe"] {
                let key = reckon_core::Key::from_tags([("space", space)]).unwrap();
                for k in 0..25i64 {
                    let at_s = base_s - 7200 + k * 397;
                    let at_ns = at_s * 1_000_000_000;
                    // The buckets that end at or before `at` and that the watermark had
                    // passed (so were stored) by then: up to the last such minute.
                    let cut =
                        (at_ns + 1).min(watermark).div_euclid(60_000_000_000) * 60_000_000_000;
                    let by_then = &posted[..n];
                    let before_cut: Vec<reckon_core::Event> =
                        by_then.iter().filter(|e| e.time.0 < cut).cloned().collect();
                    let want = oracle.total_at(&before_cut, &key, reckon_core::EventTime(cut - 1));
                    // A total reset since the period's start with no bucket yet: zero
                    // when there was data before the period, as the stored results say.
                    let at = jiff::Timestamp::from_second(at_s).unwrap();
                    let (s, got) = get(
                        &c,
                        server.url(&format!(
                            "/v1/pipelines/{pipeline}/total?key=space={space}&at={at}&known_at={known}"
                        )),
                    )
                    .await;
                    assert_eq!(s, 200, "{got}");
                    let want_json = want.as_ref().map_or(Json::Null, |v| match v {
                        reckon_core::Value::I64(i) => Json::from(*i),
                        other => panic!("{other:?}"),
                    });
                    assert_eq!(
                        got["value"], want_json,
                        "{pipeline} {space} at {at} known at {known}: {got}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 12 * 2 * 2 * 25);
    server.shutdown().await;
}
