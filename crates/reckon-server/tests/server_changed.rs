//! reckon's own results as a source of backfills: `GET /v1/pipelines/{p}/changed`
//! names the days (or any partition size) whose windows were corrected after a change
//! cursor, so a downstream batch re-runs exactly those. Checked against what the test
//! sent: on-time data corrects nothing, late data corrects the days it lands in, and the
//! returned cursor moves past them.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_server::AppOptions;
use serde_json::Value as Json;

const EXTRA: &str = r#"
    [[stream]]
    name = "alarms"
    key_fields = ["station"]
    time_format = "rfc3339"
    max_future = "off"
    [[pipeline]]
    name = "rate"
    stream = "alarms"
    window = { type = "tumbling", size = "1h" }
    aggregates = [{ fn = "count" }]
    allowed_lateness = "7d"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_days_reckon_corrected_since_a_cursor() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let server = common::serve(common::config(dir.path(), EXTRA), AppOptions::default()).await;
    let c = reqwest::Client::new();
    let post = |lines: Vec<(&'static str, String)>| {
        let body: String = lines
            .iter()
            .map(|(s, t)| format!(r#"{{"station":"{s}","time":"{t}"}}"#) + "\n")
            .collect();
        let (c, url) = (c.clone(), server.url("/v1/streams/alarms/events"));
        async move {
            let r = c.post(url).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let get = |q: &str| {
        let (c, url) = (
            c.clone(),
            server.url(&format!("/v1/pipelines/rate/changed{q}")),
        );
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Json>().await.unwrap()
        }
    };
    // Three days of on-time readings, every hour, two stations.
    let mut on_time = Vec::new();
    for day in 1..=3 {
        for h in 0..24 {
            for s in ["a", "b"] {
                on_time.push((s, format!("2024-03-0{day}T{h:02}:10:00Z")));
            }
        }
    }
    on_time.push(("a", "2024-03-04T01:00:00Z".to_string()));
    post(on_time).await;
    let first = get("?since=0").await;
    assert_eq!(
        first["partitions"],
        serde_json::json!([]),
        "nothing corrected: {first}"
    );
    let cursor = first["lastChange"].as_u64().unwrap();
    assert!(cursor > 140, "{first}");
    let every = get("?since=0&all=true").await;
    assert_eq!(
        every["partitions"],
        serde_json::json!(["2024-03-01", "2024-03-02", "2024-03-03"])
    );
    assert_eq!(every["details"][0]["windows"], 48);

    // Late readings into closed hours of the first and third days.
    post(vec![
        ("a", "2024-03-01T05:30:00Z".into()),
        ("b", "2024-03-01T06:30:00Z".into()),
        ("b", "2024-03-03T23:59:00Z".into()),
    ])
    .await;
    let late = get(&format!("?since={cursor}")).await;
    assert_eq!(
        late["partitions"],
        serde_json::json!(["2024-03-01", "2024-03-03"]),
        "{late}"
    );
    assert_eq!(late["details"][0]["windows"], 2);
    assert_eq!(late["details"][1]["windows"], 1);
    assert_eq!(late["more"], false);
    let next = late["lastChange"].as_u64().unwrap();
    assert!(next > cursor);
    // Hours instead of days; and nothing after the new cursor.
    let hours = get(&format!("?since={cursor}&by=1h")).await;
    assert_eq!(
        hours["partitions"],
        serde_json::json!([
            "2024-03-01T05:00:00Z",
            "2024-03-01T06:00:00Z",
            "2024-03-03T23:00:00Z"
        ])
    );
    let none = get(&format!("?since={next}")).await;
    assert_eq!(none["partitions"], serde_json::json!([]));
    assert_eq!(none["lastChange"], next);
    let bad = c
        .get(server.url("/v1/pipelines/rate/changed?by=0s"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    server.shutdown().await;
}
