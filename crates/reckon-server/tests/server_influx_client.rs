//! The official InfluxDB v2 client library (Python, from PyPI) writes to reckon's
//! `/api/v2/write` unchanged: points, line-protocol text and dicts, in several
//! precisions; a late point corrects a window; a bad line and an unknown bucket raise
//! the client's error with reckon's message.
//!
//! The client is installed by `scripts/python-clients.sh` (a virtualenv under
//! `~/.cache`). Without Python or PyPI the test prints SKIP, unless
//! `RECKON_REQUIRE_SERVICES=1` (CI), where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use reckon_core::{EventTime, Key, Value};
use reckon_server::AppOptions;
use std::path::PathBuf;
use std::process::Command;

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RECKON_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/python-clients.sh");
    let out = Command::new("bash").arg(&script).output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_influxdb_client_writes_unchanged() {
    let Some(py) = python() else {
        assert!(
            std::env::var("RECKON_REQUIRE_SERVICES").is_err(),
            "the InfluxDB Python client could not be installed (scripts/python-clients.sh)"
        );
        println!(
            "SKIP: the InfluxDB Python client is not available (scripts/python-clients.sh failed)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
        [[stream]]
        name = "lake"
        key_fields = ["i"]
        [[pipeline]]
        name = "lake_1h"
        stream = "lake"
        window = { type = "tumbling", size = "1h" }
        aggregates = [{ fn = "sum", field = "level", name = "sum" }, { fn = "count" }]
        allowed_lateness = "1d"
        retention = "7d"
    "#;
    let server = common::serve(common::config(dir.path(), extra), AppOptions::default()).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/influx_client.py");
    let url = server.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .arg(url)
            .arg("lake")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["health"], "pass");
    assert_eq!(r["bad"]["status"], 400, "{r}");
    let bad = r["bad"]["message"].as_str().unwrap();
    assert!(
        bad.starts_with("partial write: 1 of 2 lines are invalid, 1 points stored: line 2"),
        "{bad}"
    );
    assert_eq!(r["unknown"]["status"], 404, "{r}");
    assert!(
        r["unknown"]["message"]
            .as_str()
            .unwrap()
            .starts_with("bucket \"nope\" not found"),
        "{r}"
    );

    let store = server.state.store();
    let t0 = EventTime::from_secs(1_655_078_400);
    let k1 = Key::from_tags([("i", "1")]).unwrap();
    let h = store.history("lake_1h", &k1, t0).unwrap();
    assert_eq!(
        h.len(),
        2,
        "on time, then corrected by the late point: {h:?}"
    );
    let last = h.last().unwrap();
    assert_eq!(last.count, 5);
    // 4 + 5 + 6 (points) + 7 (dict, ms) + 2 (late).
    assert_eq!(last.value("sum"), Some(&Value::F64(24.0)));
    // The non-key tag became a string field of the raw events.
    let raw = store
        .raw_range("lake", &k1, t0, EventTime::from_secs(1_655_078_400 + 3600))
        .unwrap();
    assert_eq!(raw.len(), 5);
    assert!(
        raw.iter()
            .any(|e| e.field("site") == Some(&Value::Str("north".into())))
    );
    // Line protocol text with integer and string fields, nanosecond precision.
    let k2 = Key::from_tags([("i", "2")]).unwrap();
    let raw2 = store
        .raw_range("lake", &k2, t0, EventTime::from_secs(1_655_078_400 + 3600))
        .unwrap();
    assert_eq!(raw2.len(), 2);
    assert_eq!(raw2[0].time, EventTime(1_655_078_400_000_000_005));
    assert_eq!(raw2[0].field("n"), Some(&Value::I64(3)));
    assert_eq!(raw2[0].field("note"), Some(&Value::Str("a b, c".into())));
    server.shutdown().await;
}
