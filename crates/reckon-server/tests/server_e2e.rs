//! End to end over a real socket: seed 000's workload (late points up to 24 h, resent
//! requests) is posted as NDJSON while a client follows the change feed over SSE,
//! disconnects half way and resumes with `Last-Event-ID`. The feed must hold every
//! change exactly once, in order, and the newest version of every window in it must
//! equal the independent oracle over every event posted.
#![allow(clippy::unwrap_used)]

mod common;

use reckon_core::{Event, ProcessingTime, Window};
use reckon_server::{AppOptions, ScaledClock};
use reckon_workload::{Seed000, ndjson_line};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
struct Change {
    id: u64,
    json: serde_json::Value,
}

/// Reads SSE `emission` events until `stop(changes)` says so.
async fn follow(
    client: &reqwest::Client,
    url: &str,
    last_event_id: Option<u64>,
    mut stop: impl FnMut(&[Change]) -> bool,
) -> Vec<Change> {
    let mut req = client.get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (mut buf, mut out) = (String::new(), Vec::new());
    while !stop(&out) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), resp.chunk())
            .await
            .expect("the change feed stalled")
            .unwrap()
            .expect("the change feed ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<u64>().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.as_deref() == Some("emission") {
                out.push(Change {
                    id: id.unwrap(),
                    json: serde_json::from_str(&data).unwrap(),
                });
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_over_http_with_a_resumed_change_feed_equals_the_oracle() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), "");
    let spec = config.pipelines[0].spec().unwrap();
    let g = Seed000 {
        locations: 8,
        late_probability: 0.5,
        with_ids: true,
        ..Seed000::default()
    };
    let arrivals: Vec<_> = g.arrivals().take(20_000).collect();
    let clock = Arc::new(ScaledClock::new(ProcessingTime(g.start.0), 1.0));
    let server = common::serve(
        config,
        AppOptions {
            clock,
            ..AppOptions::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let feed_url = server.url("/v1/pipelines/mean_1h/changes?since=0");

    // The first follower reads 300 changes, then hangs up.
    let first = tokio::spawn({
        let (client, url) = (client.clone(), feed_url.clone());
        async move { follow(&client, &url, None, |c| c.len() >= 300).await }
    });

    let post_url = server.url("/v1/streams/water_level/events");
    let mut posted: Vec<Event> = Vec::new();
    let mut resent = 0;
    for (n, batch) in arrivals.chunks(400).enumerate() {
        let mut body = String::new();
        batch.iter().for_each(|a| ndjson_line(&a.event, &mut body));
        let r = client
            .post(&post_url)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        posted.extend(batch.iter().map(|a| a.event.clone()));
        if n % 7 == 3 {
            // A client retry: every event of the batch again, all duplicates.
            let r: serde_json::Value = client
                .post(&post_url)
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(r["duplicates"].as_u64(), Some(batch.len() as u64), "{r}");
            assert_eq!(r["accepted"], 0);
            resent += 1;
        }
    }
    assert!(resent > 5);
    let first = first.await.unwrap();
    let resume_after = first.last().unwrap().id;

    // The second follower resumes after the last change the first one saw and reads
    // until it has caught up with everything committed.
    let last_change = server.state.store().last_change();
    assert!(last_change > 300);
    let second = follow(
        &client,
        &server.url("/v1/pipelines/mean_1h/changes"),
        Some(resume_after),
        |c| c.last().is_some_and(|l| l.id >= last_change),
    )
    .await;

    let ids: Vec<u64> = first.iter().chain(&second).map(|c| c.id).collect();
    assert_eq!(
        ids,
        (1..=last_change).collect::<Vec<_>>(),
        "every change once, in order"
    );

    // The newest version of every window in the feed, against the oracle.
    let mut latest: BTreeMap<(String, String), &serde_json::Value> = BTreeMap::new();
    let mut versions: BTreeMap<(String, String), u64> = BTreeMap::new();
    for c in first.iter().chain(&second) {
        let k = (
            c.json["key"].as_str().unwrap().to_string(),
            c.json["window"]["start"].as_str().unwrap().to_string(),
        );
        let v = c.json["version"].as_u64().unwrap();
        let prev = versions.insert(k.clone(), v);
        assert!(prev.is_none_or(|p| p < v), "versions grow: {k:?}");
        latest.insert(k, &c.json);
    }
    let oracle = reckon_testkit::oracle(&spec, &posted);
    let max_time = posted.iter().map(|e| e.time).max().unwrap();
    let mut corrected = 0;
    for ((key, window), ow) in &oracle {
        let start = jiff::Timestamp::from_nanosecond(i128::from(window.start.0))
            .unwrap()
            .to_string();
        let got = latest.get(&(key.as_str().to_string(), start.clone()));
        // Windows the watermark has passed must be in the feed.
        let closed = window.end.0 + 10_000_000_000 <= max_time.0;
        let Some(got) = got else {
            assert!(!closed, "{key} {window}: closed but not in the feed");
            continue;
        };
        assert_eq!(got["count"].as_u64(), Some(ow.count), "{key} {window}");
        let mean = got["values"]["mean"].as_f64().map(reckon_core::Value::F64);
        assert!(ow.values[0].accepts(mean.as_ref()), "{key} {window}: {got}");
        if got["version"].as_u64().unwrap() > 1 {
            corrected += 1;
        }
    }
    assert_eq!(
        latest.len(),
        oracle
            .keys()
            .filter(|(k, w)| latest.contains_key(&(k.as_str().to_string(), rfc(w))))
            .count(),
        "every window in the feed is one the oracle knows"
    );
    assert!(corrected > 50, "late data corrected windows ({corrected})");

    // `?key=` keeps exactly that series' changes, with the feed's own change numbers,
    // on the SSE stream and on a JSON page.
    let all: Vec<&Change> = first.iter().chain(&second).collect();
    let of_key = |key: &str| -> Vec<(u64, serde_json::Value)> {
        all.iter()
            .filter(|c| c.json["key"] == key)
            .map(|c| (c.id, c.json.clone()))
            .collect()
    };
    let want = of_key("i=3");
    assert!(
        want.len() > 20 && want.len() < all.len() / 4,
        "{}",
        want.len()
    );
    let last_of_key = want.last().unwrap().0;
    let keyed = follow(
        &client,
        &server.url("/v1/pipelines/mean_1h/changes?key=i=3&since=0"),
        None,
        |c| c.last().is_some_and(|l| l.id >= last_of_key),
    )
    .await;
    let keyed: Vec<(u64, serde_json::Value)> = keyed.into_iter().map(|c| (c.id, c.json)).collect();
    assert_eq!(keyed, want, "the keyed SSE feed is the feed's i=3 changes");
    let page: serde_json::Value = client
        .get(server.url(&format!(
            "/v1/pipelines/mean_1h/changes?key=i=3&since=0&limit={last_change}"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paged: Vec<(u64, serde_json::Value)> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["change"].as_u64().unwrap(), j.clone()))
        .collect();
    assert_eq!(paged, want, "the keyed JSON page is the feed's i=3 changes");
    server.shutdown().await;
}

fn rfc(w: &Window) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(w.start.0))
        .unwrap()
        .to_string()
}
