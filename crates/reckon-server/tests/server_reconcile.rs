//! Seed 001 under `reckon serve`, on a real socket: a `[[reconcile]]` of a CloudEvents
//! event stream against a plain-JSON audit stream. Its outputs (`missing`, `found`,
//! `completeness` with corrected versions) appear on the change feed, the window
//! queries (JSON and CSV), the history and the metrics; the idle timeout *z* fires
//! missing ids when the event stream goes silent.
#![allow(clippy::unwrap_used)]

mod common;

use reckon_runtime::Config;
use reckon_server::AppOptions;
use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [server]
        tick_interval = "100ms"
        [[stream]]
        name = "payments"
        format = "cloudevents"
        [[stream]]
        name = "payments_audit"
        key_fields = ["source"]
        [[reconcile]]
        name = "payments_recon"
        events = {{ stream = "payments", id_fields = ["data.payment_id"] }}
        audit = {{ stream = "payments_audit", id_fields = ["ref"] }}
        period = "15m"
        missing_after = "10m"
        horizon = "1h"
        idle_timeout = "2s"
        "#,
        dir.display()
    ))
    .unwrap()
}

fn audit(id: &str, time: &str) -> Json {
    json!({ "ref": id, "time": time, "source": "ledger", "note": format!("batch of {id}") })
}

fn cloud_event(n: u32, id: &str, time: &str) -> Json {
    json!({
        "specversion": "1.0", "id": format!("ev-{n}"), "source": "/shop/eu",
        "type": "com.shop.payment", "time": time,
        "data": { "payment_id": id, "amount": 12.5 }
    })
}

fn ndjson(items: &[Json]) -> String {
    items.iter().map(|j| format!("{j}\n")).collect()
}

async fn post(c: &reqwest::Client, url: String, items: &[Json]) -> Json {
    let r = c.post(url).body(ndjson(items)).send().await.unwrap();
    let status = r.status();
    let j: Json = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {j}");
    j
}

async fn get(c: &reqwest::Client, url: String) -> Json {
    let r = c.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

/// The change feed's JSON page from the start: (kind, key, version) of each change.
async fn feed(c: &reqwest::Client, run: &common::Running) -> Vec<(String, String, u64)> {
    let j = get(c, run.url("/v1/pipelines/payments_recon/changes?since=0")).await;
    j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap().to_string(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_runs_under_serve_and_its_outputs_are_fed_and_queried() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let run = common::serve(config(dir.path()), AppOptions::default()).await;
    let c = reqwest::Client::new();
    let audits = run.url("/v1/streams/payments_audit/events");
    let events = run.url("/v1/streams/payments/events");

    // Period [10:00, 10:15): p1, p2, p3 audited (p1 twice); p1 and p3 arrive as
    // CloudEvents, p1's before its audit record; p9 is an event nobody audited.
    post(
        &c,
        events.clone(),
        &[cloud_event(1, "p1", "2024-05-01T10:00:05Z")],
    )
    .await;
    post(
        &c,
        audits.clone(),
        &[
            audit("p1", "2024-05-01T10:00:00Z"),
            audit("p2", "2024-05-01T10:01:00Z"),
            audit("p3", "2024-05-01T10:02:00Z"),
            audit("p1", "2024-05-01T10:00:30Z"),
        ],
    )
    .await;
    post(
        &c,
        events.clone(),
        &[
            cloud_event(3, "p3", "2024-05-01T10:02:10Z"),
            cloud_event(9, "p9", "2024-05-01T10:03:00Z"),
        ],
    )
    .await;
    // A broken CloudEvent is named; the good one beside it is kept.
    let r = c
        .post(events.clone())
        .body(ndjson(&[
            json!({"id": "x", "source": "s", "type": "t", "time": "2024-05-01T10:04:00Z"}),
            cloud_event(10, "p10", "2024-05-01T10:40:00Z"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let j: Json = r.json().await.unwrap();
    assert_eq!(j["accepted"], 1, "{j}");
    let err = j["errors"][0]["error"].as_str().unwrap();
    assert!(
        err.starts_with("line 1: field `specversion`: missing"),
        "{err}"
    );
    // Both streams reach 10:40: the watermark is 10:30, the period closes (end + n).
    post(&c, audits.clone(), &[audit("p10", "2024-05-01T10:40:00Z")]).await;

    let changes = feed(&c, &run).await;
    assert_eq!(
        changes,
        [
            ("missing".into(), "id=p2".into(), 1),
            ("completeness".into(), "".into(), 1)
        ],
        "{changes:?}"
    );
    let w = get(
        &c,
        run.url("/v1/pipelines/payments_recon/windows?key=&from=2024-05-01T10:00:00Z"),
    )
    .await;
    let v1 = &w["windows"][0];
    assert_eq!(v1["window"]["start"], "2024-05-01T10:00:00Z");
    assert_eq!(v1["window"]["end"], "2024-05-01T10:15:00Z");
    assert_eq!(
        (
            &v1["values"]["audited"],
            &v1["values"]["matched"],
            &v1["values"]["missing"],
            &v1["values"]["duplicate_audits"],
            &v1["values"]["unexpected"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(1), &json!(1)),
        "{v1}"
    );
    let pct = v1["values"]["percent"].as_f64().unwrap();
    assert!((pct - 200.0 / 3.0).abs() < 1e-9, "{pct}");

    // p2's event arrives 29 s after its audit time, within the horizon: `found`, and the
    // period is corrected to v2 (3 of 3 matched).
    post(
        &c,
        events.clone(),
        &[cloud_event(2, "p2", "2024-05-01T10:01:29Z")],
    )
    .await;
    let changes = feed(&c, &run).await;
    assert_eq!(
        changes[2..],
        [
            ("found".into(), "id=p2".into(), 2),
            ("completeness".into(), "".into(), 2)
        ],
        "{changes:?}"
    );
    let h = get(
        &c,
        run.url("/v1/pipelines/payments_recon/history?key=id=p2&start=2024-05-01T10:00:00Z"),
    )
    .await;
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{h}");
    assert_eq!(versions[0]["kind"], "missing");
    assert_eq!(versions[0]["values"]["audit_time"], "2024-05-01T10:01:00Z");
    assert_eq!(versions[0]["values"]["detected_at"], "2024-05-01T10:30:00Z");
    assert_eq!(versions[0]["values"]["audit.source"], "ledger");
    assert_eq!(versions[0]["values"]["audit.note"], "batch of p2");
    assert_eq!(versions[1]["kind"], "found");
    assert_eq!(
        versions[1]["values"]["missing_since"],
        "2024-05-01T10:30:00Z"
    );
    assert_eq!(versions[1]["values"]["event_time"], "2024-05-01T10:01:29Z");
    assert_eq!(versions[1]["values"]["delay_s"], 29.0);

    // CSV of every output: the columns of all three kinds.
    let csv = c
        .get(run.url("/v1/pipelines/payments_recon/windows"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let header = csv.lines().next().unwrap();
    for col in ["audited", "percent", "status", "delay_s", "missing_since"] {
        assert!(header.split(',').any(|h| h == col), "{col} in {header}");
    }
    assert!(
        csv.lines()
            .any(|l| l.contains("id=p2") && l.contains(",found,")),
        "{csv}"
    );

    // z: the event stream goes silent while the audit stream goes on (a record every
    // 200 ms, from 11:00). p11 is audited at 10:35, but the silent event stream holds the
    // watermark at 10:30, so p11 is not missing yet; after 2 s of silence the event
    // stream stops holding it, the watermark follows the audits and p11 fires.
    post(&c, audits.clone(), &[audit("p11", "2024-05-01T10:35:00Z")]).await;
    let posted = Instant::now();
    let missing_p11 = |ch: &[(String, String, u64)]| {
        ch.iter()
            .any(|(k, key, _)| k == "missing" && key == "id=p11")
    };
    assert!(!missing_p11(&feed(&c, &run).await), "fired before z");
    for k in 0.. {
        let time = format!("2024-05-01T11:00:{:02}Z", k % 60);
        post(&c, audits.clone(), &[audit(&format!("q{k}"), &time)]).await;
        let ch = feed(&c, &run).await;
        if missing_p11(&ch) {
            assert!(
                posted.elapsed() >= Duration::from_millis(1_500),
                "fired after {:?}, before z",
                posted.elapsed()
            );
            break;
        }
        assert!(
            posted.elapsed() < Duration::from_secs(15),
            "z never fired: {ch:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The pipeline list and the metrics know it.
    let p = get(&c, run.url("/v1/pipelines")).await;
    let r = p["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "payments_recon")
        .unwrap()
        .clone();
    assert_eq!(r["kind"], "reconcile");
    assert_eq!(r["audit"], "payments_audit");
    let wm = r["watermark"].as_str().unwrap();
    assert!(wm.starts_with("2024-05-01T10:50:"), "{wm}");
    let metrics = c
        .get(run.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"reckon_emissions_total{pipeline="payments_recon",kind="found"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"reckon_reconcile_ids_held{pipeline="payments_recon"} "#),
        "{metrics}"
    );
    run.shutdown().await;

    // After a restart the state is back: a late audit duplicate of p3 within the horizon
    // corrects the period to v3 (one more duplicate audit).
    let run = common::serve(config(dir.path()), AppOptions::default()).await;
    post(
        &c,
        run.url("/v1/streams/payments_audit/events"),
        &[audit("p3", "2024-05-01T10:02:30Z")],
    )
    .await;
    let w = get(
        &c,
        run.url("/v1/pipelines/payments_recon/windows?key=&from=2024-05-01T10:00:00Z&to=2024-05-01T10:15:00Z"),
    )
    .await;
    let v3 = &w["windows"][0];
    assert_eq!(v3["version"], 3, "{w}");
    assert_eq!(v3["values"]["duplicate_audits"], 2, "{v3}");
    assert_eq!(v3["values"]["matched"], 3, "{v3}");
    run.shutdown().await;
}
