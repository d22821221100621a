//! An alert rule over HTTP (seed 004's trigger): readings posted as NDJSON, a rule on
//! a pipeline's 5-minute sums, and an Alertmanager-shaped webhook. On-time data fires
//! and resolves; a late reading fires late (`reckon_late`); a late negative reading
//! takes a fired alert back (resolved, `reckon_retracted`); the history of an episode is
//! queryable like any window's.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_server::AppOptions;
use serde_json::Value as Json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn extra(hook: &str, runs: &str) -> String {
    format!(
        r#"
        [[stream]]
        name = "alarms"
        key_fields = ["station"]
        time_format = "rfc3339"
        max_future = "off"
        [[pipeline]]
        name = "rate"
        stream = "alarms"
        window = {{ type = "tumbling", size = "5m" }}
        aggregates = [{{ fn = "sum", field = "above", name = "above" }}]
        out_of_orderness = "0s"
        allowed_lateness = "1d"
        [[alert]]
        name = "hot"
        input = "rate"
        condition = "above >= 10"
        labels = {{ severity = "page" }}
        annotations = {{ summary = "ten alarms above threshold in 5 minutes" }}
        [[webhook]]
        name = "am"
        url = "{hook}"
        pipelines = ["hot"]
        format = "alertmanager"
        notify = "all"
        digest_interval = "0s"
        # Seed 004's onTrigger: a batch run per episode that begins, over HTTP and as a
        # command.
        [[webhook]]
        name = "batch"
        url = "{hook}"
        pipelines = ["hot"]
        format = "trigger"
        digest_interval = "0s"
        [[webhook]]
        name = "batch_cmd"
        command = ["sh", "-c", "echo \"$RECKON_RULE $RECKON_KEY $RECKON_WINDOW_START $RECKON_WINDOW_END $RECKON_STATE late=$RECKON_LATE\" >> {runs}; cat > /dev/null"]
        pipelines = ["hot"]
        format = "trigger"
        digest_interval = "0s"
        "#
    )
}

/// Waits for `n` trigger bodies; returns them.
async fn triggers(got: &Arc<Mutex<Vec<Json>>>, n: usize) -> Vec<Json> {
    for _ in 0..500 {
        let all: Vec<Json> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.get("trigger").is_some())
            .cloned()
            .collect();
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} triggers: {:?}", got.lock().unwrap());
}

async fn receiver() -> (String, Arc<Mutex<Vec<Json>>>) {
    let got: Arc<Mutex<Vec<Json>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move { g.lock().unwrap().push(serde_json::from_str(&body).unwrap()) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/hook"), got)
}

/// Waits for the receiver to hold `n` alerts in all; returns them (status, annotations).
async fn alerts(got: &Arc<Mutex<Vec<Json>>>, n: usize) -> Vec<Json> {
    for _ in 0..500 {
        let all: Vec<Json> = got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|m| m["alerts"].as_array().cloned().unwrap_or_default())
            .collect();
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} alerts: {:?}", got.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_late_and_retract_through_an_alertmanager_webhook() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (hook, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.txt");
    let server = common::serve(
        common::config(dir.path(), &extra(&hook, runs.to_str().unwrap())),
        AppOptions::default(),
    )
    .await;
    let c = reqwest::Client::new();
    let post = |lines: &[(&str, &str, i64)]| {
        let body: String = lines
            .iter()
            .map(|(s, t, a)| {
                format!(r#"{{"station":"{s}","time":"2024-03-01T{t}Z","above":{a}}}"#) + "\n"
            })
            .collect();
        let (c, url) = (c.clone(), server.url("/v1/streams/alarms/events"));
        async move {
            let r = c.post(url).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    // On time: station a has 12 in 10:00-10:05 and 1 in 10:05, station c 5 in 10:00;
    // the watermark passes 10:10 with station b's reading.
    post(&[
        ("a", "10:01:00", 12),
        ("a", "10:06:00", 1),
        ("c", "10:02:00", 5),
        ("b", "10:11:00", 0),
    ])
    .await;
    let first = alerts(&got, 1).await;
    // Fired and resolved in the same commit (the window had closed by then): the store
    // keeps the newest version, resolved, and so does the feed.
    assert_eq!(first[0]["status"], "resolved", "{first:?}");
    assert_eq!(first[0]["annotations"]["reckon_late"], "false");
    assert_eq!(first[0]["endsAt"], "2024-03-01T10:05:00Z");

    // Late: station c's closed 10:00 window gets 6 more: it fires late.
    post(&[("c", "10:03:00", 6)]).await;
    let all = alerts(&got, 2).await;
    let late = all.last().unwrap();
    assert_eq!(late["labels"]["alertname"], "hot", "{late}");
    assert_eq!(late["labels"]["station"], "c");
    assert_eq!(late["labels"]["severity"], "page");
    assert_eq!(late["annotations"]["reckon_late"], "true", "{late}");
    assert_eq!(late["startsAt"], "2024-03-01T10:00:00Z", "{late}");

    // Late: station a's closed 10:05 window gets 9 more: its episode from 10:00 now
    // lasts to 10:10.
    post(&[("a", "10:07:00", 9)]).await;
    let all = alerts(&got, 3).await;
    let longer = all.last().unwrap();
    assert_eq!(
        (
            longer["labels"]["station"].as_str(),
            longer["endsAt"].as_str()
        ),
        (Some("a"), Some("2024-03-01T10:10:00Z")),
        "{longer}"
    );

    // A late negative reading takes 10:00-10:05 below the threshold: the episode from
    // 10:00 is gone; a new one starts at 10:05 (still holding).
    post(&[("a", "10:02:00", -5)]).await;
    let all = alerts(&got, 5).await;
    let all: Vec<Json> = all
        .into_iter()
        .filter(|a| a["labels"]["station"] == "a")
        .collect();
    let retracted: Vec<&Json> = all
        .iter()
        .filter(|a| a["annotations"].get("reckon_retracted").is_some())
        .collect();
    assert_eq!(retracted.len(), 1, "{all:?}");
    assert_eq!(retracted[0]["status"], "resolved");
    assert_eq!(retracted[0]["startsAt"], "2024-03-01T10:00:00Z");
    assert!(
        all.iter().any(|a| a["startsAt"] == "2024-03-01T10:05:00Z"),
        "{all:?}"
    );

    // The episode's history: every version, queryable like any window's.
    let h: Json = c
        .get(server.url("/v1/pipelines/hot/history?key=station=a&start=2024-03-01T10:00:00Z"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let states: Vec<&str> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["values"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.last(), Some(&"retracted"), "{h}");
    assert!(states.contains(&"resolved"), "{h}");

    // The batch trigger ran once per episode that began: a's from 10:00 (on time), c's
    // from 10:00 (late), a's from 10:05 (after the retraction); not for the longer
    // episode or the retraction.
    let runs_http = triggers(&got, 3).await;
    let seen: Vec<(String, String, bool)> = runs_http
        .iter()
        .map(|t| {
            assert_eq!(t["rule"], "hot", "{t}");
            assert_eq!(t["trigger"], "batch");
            assert_eq!(t["labels"]["severity"], "page", "{t}");
            (
                t["tags"]["station"].as_str().unwrap().to_string(),
                t["window"]["start"].as_str().unwrap().to_string(),
                t["late"].as_bool().unwrap(),
            )
        })
        .collect();
    let want = [
        ("a".to_string(), "2024-03-01T10:00:00Z".to_string(), false),
        ("c".into(), "2024-03-01T10:00:00Z".into(), true),
        ("a".into(), "2024-03-01T10:05:00Z".into(), true),
    ];
    assert_eq!(seen, want, "{runs_http:?}");
    let mut lines = Vec::new();
    for _ in 0..500 {
        lines = std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        lines,
        [
            "hot station=a 2024-03-01T10:00:00Z 2024-03-01T10:05:00Z resolved late=false",
            "hot station=c 2024-03-01T10:00:00Z 2024-03-01T10:05:00Z resolved late=true",
            "hot station=a 2024-03-01T10:05:00Z 2024-03-01T10:10:00Z resolved late=true",
        ],
        "{runs_http:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(triggers(&got, 3).await.len(), 3, "no other run");
    server.shutdown().await;
}
