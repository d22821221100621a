//! `reckon rules backfill` over HTTP: the timeline of a rule evaluated at once over its
//! input's stored windows equals the independent batch evaluation
//! (`reckon_testkit::alert`) of those windows, for a running rule (where it also equals
//! the episodes the rule stored as the data came, late and out of order), for a rule
//! given in the request that never ran, and for a sub-range.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_core::{EventTime, Key, Span};
use reckon_server::AppOptions;
use reckon_testkit::SplitMix64;
use reckon_testkit::alert::{AlertOracle, OracleWindow};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

const EXTRA: &str = r#"
    [[stream]]
    name = "alarms"
    key_fields = ["station"]
    time_format = "rfc3339"
    max_future = "off"
    [[pipeline]]
    name = "rate"
    stream = "alarms"
    window = { type = "tumbling", size = "5m" }
    aggregates = [{ fn = "sum", field = "above", name = "above" }]
    allowed_lateness = "1d"
    [[alert]]
    name = "hot"
    input = "rate"
    condition = "above >= 8"
    for = 2
    keep_firing_for = "5m"
"#;

/// 2024-03-01T10:00:00Z.
const T0: i64 = 1_709_287_200_000_000_000;

/// An RFC 3339 time of an answer.
fn at(v: &Json) -> EventTime {
    EventTime(
        v.as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_nanosecond() as i64,
    )
}

/// (key, fired_at) → resolved_at of an answer's episodes (`None` while firing).
fn timeline(episodes: &Json) -> BTreeMap<(Key, EventTime), Option<EventTime>> {
    episodes
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    Key::parse(e["key"].as_str().unwrap()).unwrap(),
                    at(&e["window"]["start"]),
                ),
                e["values"]["resolved_at"]
                    .as_str()
                    .map(|_| at(&e["values"]["resolved_at"])),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_timeline_equals_the_batch_evaluation_of_the_stored_windows() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let server = common::serve(common::config(dir.path(), EXTRA), AppOptions::default()).await;
    let c = reqwest::Client::new();
    // Six stations over five hours; readings arrive in shuffled batches, some hours late.
    let mut rng = SplitMix64::new(7);
    let mut readings = Vec::new();
    for minute in 0..300i64 {
        for s in 0..6 {
            if rng.chance(0.8) {
                let above = rng.below(6) as i64 - 1;
                readings.push((s, minute, above));
            }
        }
    }
    for i in (1..readings.len()).rev() {
        // Mostly in time order, with a third moved anywhere (late or early).
        if rng.chance(0.33) {
            let j = rng.below(i as u64 + 1) as usize;
            readings.swap(i, j);
        }
    }
    for chunk in readings.chunks(40) {
        let body: String = chunk
            .iter()
            .map(|(s, m, a)| {
                let t =
                    jiff::Timestamp::from_nanosecond(i128::from(T0 + m * 60_000_000_000)).unwrap();
                format!(r#"{{"station":"s{s}","time":"{t}","above":{a}}}"#) + "\n"
            })
            .collect();
        let r = c
            .post(server.url("/v1/streams/alarms/events"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The oracle: the stored final windows of `rate`, each holding or not.
    let windows: Json = c
        .get(server.url("/v1/pipelines/rate/windows"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let windows: Vec<(OracleWindow, i64)> = windows["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let above = w["values"]["above"].as_i64().unwrap();
            (
                OracleWindow {
                    key: Key::parse(w["key"].as_str().unwrap()).unwrap(),
                    start: at(&w["window"]["start"]),
                    end: at(&w["window"]["end"]),
                    holds: above >= 8,
                },
                above,
            )
        })
        .collect();
    assert!(windows.len() > 300, "{}", windows.len());
    let watermark = EventTime(T0 + 299 * 60_000_000_000);
    let oracle = |for_windows: u32, keep: Span, holds: &dyn Fn(i64) -> bool, range: (i64, i64)| {
        let ws: Vec<OracleWindow> = windows
            .iter()
            .filter(|(w, _)| w.start.0 >= range.0 && w.start.0 < range.1)
            .map(|(w, above)| OracleWindow {
                holds: holds(*above),
                ..w.clone()
            })
            .collect();
        AlertOracle {
            for_windows,
            keep_firing_for: keep,
        }
        .timeline(&ws, watermark)
    };
    let everything = (i64::MIN, i64::MAX);

    // The running rule: backfilled, it equals the oracle and what it stored as it ran.
    let got: Json = c
        .get(server.url("/v1/pipelines/hot/backfill"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = oracle(2, Span::minutes(5), &|a| a >= 8, everything);
    assert!(want.len() >= 5, "episodes to compare: {want:?}");
    assert_eq!(timeline(&got["episodes"]), want, "{got}");
    assert_eq!(
        got["input_windows"].as_u64().unwrap() as usize,
        windows.len()
    );
    let stored: Json = c
        .get(server.url("/v1/pipelines/hot/windows"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: Vec<Json> = stored["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["values"]["state"] != "retracted")
        .cloned()
        .collect();
    assert_eq!(timeline(&Json::Array(stored)), want);

    // A rule that never ran, given in the request; and a sub-range of the history.
    let rule = json!({
        "input": "rate",
        "condition": "above >= 6",
        "for": 3,
        "keep_firing_for": "10m",
    });
    let post = |query: &str, body: &Json| {
        let (c, url, body) = (
            c.clone(),
            server.url(&format!("/v1/rules/backfill{query}")),
            body.to_string(),
        );
        async move {
            let r = c.post(url).body(body).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Json>().await.unwrap())
        }
    };
    let (s, got) = post("", &rule).await;
    assert_eq!(s, 200, "{got}");
    let want = oracle(3, Span::minutes(10), &|a| a >= 6, everything);
    assert!(want.len() >= 5, "{want:?}");
    assert_eq!(timeline(&got["episodes"]), want);
    let (s, got) = post("?from=2024-03-01T11:00:00Z&to=2024-03-01T13:00:00Z", &rule).await;
    assert_eq!(s, 200, "{got}");
    let range = (T0 + 3_600_000_000_000, T0 + 3 * 3_600_000_000_000);
    let want = oracle(3, Span::minutes(10), &|a| a >= 6, range);
    assert!(!want.is_empty());
    assert_eq!(timeline(&got["episodes"]), want);
    // Nothing of it was stored or runs.
    let r = c
        .get(server.url("/v1/pipelines/backfill/windows"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Mistakes get the configuration's messages; only rules have a timeline.
    let (s, got) = post("", &json!({ "input": "nope", "condition": "above >= 1" })).await;
    assert_eq!(s, 422, "{got}");
    assert!(
        got["error"].as_str().unwrap().contains("watches `nope`"),
        "{got}"
    );
    let (s, got) = post("", &json!({ "input": "rate", "condition": "above >=" })).await;
    assert_eq!(s, 422, "{got}");
    let r = c
        .get(server.url("/v1/pipelines/rate/backfill"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(
            server.url(
                "/v1/pipelines/hot/backfill?from=2024-03-02T00:00:00Z&to=2024-03-01T00:00:00Z",
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.shutdown().await;
}
