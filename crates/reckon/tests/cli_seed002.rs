//! Seed 002 end to end (`examples/seed002/run.sh`) against the real binary and a real
//! Delta table written by the Python `deltalake` package: three days, nothing late; late
//! rows into the first day and a compaction of the second: the plan lists only the first
//! day, in the seed's JSON shape, with `lastProcessedVersion` advanced; planning again
//! finds nothing. And the plan and its cursor are one commit: a `reckon backfill plan`
//! killed with SIGKILL at any moment leaves the cursor naming a stored plan.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python with `deltalake`, or `None` (SKIP) when it cannot be installed.
fn python() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/python-delta.sh"))
        .output()
        .unwrap();
    if out.status.success() {
        return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    assert!(
        std::env::var("RECKON_REQUIRE_SERVICES").is_err(),
        "the deltalake Python package could not be installed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("SKIP: the deltalake Python package is not available");
    None
}

/// The lines printed after the line that starts with `header`, up to the next `==`.
fn section<'a>(stdout: &'a str, header: &str) -> Vec<&'a str> {
    let at = stdout
        .find(header)
        .unwrap_or_else(|| panic!("no `{header}` in:\n{stdout}"));
    stdout[at..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("=="))
        .collect()
}

#[test]
fn seed_002_plans_only_the_late_day() {
    if python().is_none() {
        return;
    }
    let out = Command::new("bash")
        .arg(repo().join("examples/seed002/run.sh"))
        .env("RECKON", env!("CARGO_BIN_EXE_reckon"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        section(&stdout, "== the DAG's run for 2024-01-03"),
        [r#"{"lastProcessedVersion":3,"partitions":[]}"#]
    );
    assert_eq!(
        section(&stdout, "== the next plan lists only the late day"),
        [
            r#"{"lastProcessedVersion":5,"partitions":["2024-01-01"]}"#,
            "late: 2024-01-01 reasons ['append'] rows 3 versions [4]",
            "change: v4 2024-01-01 append late=True",
            "change: v5 2024-01-02 compaction late=False",
        ]
    );
    assert_eq!(
        section(&stdout, "== planning again"),
        [r#"{"lastProcessedVersion":5,"partitions":[]}"#]
    );
    assert_eq!(
        section(&stdout, "== the cursor"),
        ["cursor 5 plans [[], ['2024-01-01']]"]
    );
}

fn cursor_and_plans(store: &Path) -> (Option<serde_json::Value>, Vec<String>) {
    let store = reckon_store::Store::open(store).unwrap();
    let mut cursor = None;
    let mut plans = Vec::new();
    for (k, v) in store.catalog(b"backfill/t/").unwrap() {
        let k = String::from_utf8(k).unwrap();
        if k.ends_with("/cursor") {
            cursor = Some(serde_json::from_slice(&v).unwrap());
        } else if let Some(p) = k.strip_prefix("backfill/t/plan/") {
            plans.push(p.to_string());
        }
    }
    (cursor, plans)
}

#[test]
fn a_plan_and_its_cursor_survive_kill_9_together() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let out = Command::new(&py)
        .arg(repo().join("scripts/delta_tables.py"))
        .arg("history")
        .arg(&table)
        .output()
        .unwrap();
    assert!(out.status.success());
    let store = dir.path().join("state");
    let mut rng = reckon_testkit::SplitMix64::new(11);
    let (mut killed, mut finished) = (0, 0);
    for round in 0..40 {
        let since = rng.below(7);
        let mut child = Command::new(env!("CARGO_BIN_EXE_reckon"))
            .args(["backfill", "plan", "--table"])
            .arg(&table)
            .arg("--store")
            .arg(&store)
            .args(["--since-version", &since.to_string()])
            .env("RECKON_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(40)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        } else {
            finished += 1;
        }
        child.wait().unwrap();
        // Whatever the moment, the cursor names a plan that is stored.
        let (cursor, plans) = cursor_and_plans(&store);
        if let Some(c) = cursor {
            let plan = c["plan"].as_str().unwrap();
            assert!(
                plans.iter().any(|p| p == plan),
                "round {round}: the cursor names plan {plan}, which is not stored ({plans:?})"
            );
            assert_eq!(c["version"], 7);
        }
    }
    assert!(
        killed > 3 && finished > 3,
        "killed {killed}, finished {finished}"
    );
}
