//! `[[backfill]]` under `reckon serve`: the server watches a Delta table (written by the
//! Python `deltalake` package) and plans from its log every interval, as `reckon
//! backfill plan` does: the seed's file is written, `GET /v1/backfills` shows the
//! cursor, and a late append planned after it moves the cursor and names only its day.
//! Without Python it prints SKIP (and fails with `RECKON_REQUIRE_SERVICES=1`).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_server::AppOptions;
use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reckon_testkit::python::{deltalake as python, repo};

/// Waits until `path` holds JSON whose `lastProcessedVersion` is `version`.
async fn seed_file(path: &Path, version: u64) -> Json {
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(j) = serde_json::from_str::<Json>(&text)
            && j["lastProcessedVersion"] == version
        {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no plan of version {version} in {}: {:?}",
        path.display(),
        std::fs::read_to_string(path)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_plans_a_watched_table_every_interval() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("devices");
    let out = Command::new(&py)
        .arg(repo().join("scripts/delta_tables.py"))
        .arg("history")
        .arg(&table)
        .output()
        .unwrap();
    assert!(out.status.success());
    let seed = dir.path().join("backfilling_configuration.json");
    let extra = format!(
        "[[backfill]]\nname = \"devices\"\ntable = \"{}\"\ninterval = \"50ms\"\nseed_json = \"{}\"\n",
        table.display(),
        seed.display()
    );
    let server = common::serve(common::config(dir.path(), &extra), AppOptions::default()).await;
    // The first plan, from the start: the late day and the deleted-and-overwritten day.
    let first = seed_file(&seed, 7).await;
    assert_eq!(
        first,
        serde_json::json!({"partitions": ["2024-01-01", "2024-01-02"], "lastProcessedVersion": 7})
    );
    let c = reqwest::Client::new();
    let list: Json = c
        .get(server.url("/v1/backfills"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["backfills"][0]["cursor"], 7, "{list}");
    // Late rows into the first day: the next round plans only that day.
    let out = Command::new(&py)
        .arg("-c")
        .arg(format!(
            "import pyarrow as pa\nfrom deltalake import write_deltalake\n\
             write_deltalake('{}', pa.table({{'day': ['2024-01-01'], 'id': [999], 'v': [2.0]}}), partition_by=['day'], mode='append')\n",
            table.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = seed_file(&seed, 8).await;
    assert_eq!(second["partitions"], serde_json::json!(["2024-01-01"]));
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"reckon_backfill_plans_total{backfill="devices"} 2"#),
        "{metrics}"
    );
    server.shutdown().await;
}
