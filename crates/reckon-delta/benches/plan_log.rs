//! Planning time over a long Delta log: a table of `RECKON_DELTA_COMMITS` commits
//! (default 10,000: small appends, a new day every 100, one in 20 late into an earlier
//! day, checkpoints every 100 as delta-rs writes them), made once with the Python
//! `deltalake` package by `scripts/delta_tables.py big` and kept under
//! `~/.cache/reckon-bench/`.
//!
//! - cold: a plan from the start (every commit read);
//! - incremental: a plan after the previous version (one new commit; the table at the
//!   cursor rebuilt from the newest checkpoint and the commits after it);
//!
//! each `RUNS` times (default 5), median wall time.
//!
//! `cargo bench -p reckon-delta --bench plan_log` (env `RECKON_DELTA_COMMITS`, `RUNS`).
#![allow(clippy::unwrap_used)]

use reckon_delta::{DeltaLog, PlanOptions, plan};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let commits = env("RECKON_DELTA_COMMITS", 10_000);
    let runs = env("RUNS", 5).max(1);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let home = std::env::var("HOME").unwrap();
    let table = PathBuf::from(home).join(format!(".cache/reckon-bench/delta-{commits}"));
    if !table.join("_delta_log").is_dir() {
        let py = Command::new("bash")
            .arg(repo.join("scripts/python-delta.sh"))
            .output()
            .unwrap();
        assert!(py.status.success(), "scripts/python-delta.sh failed");
        let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
        eprintln!("making {} (once; minutes)", table.display());
        let out = Command::new(py)
            .arg(repo.join("scripts/delta_tables.py"))
            .arg("big")
            .arg(&table)
            .env("RECKON_DELTA_COMMITS", commits.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = DeltaLog::open(&table).unwrap();
    let latest = log.listing().unwrap().latest().unwrap();
    for (what, since) in [
        ("cold, from the start", None),
        ("incremental, one new commit", Some(latest - 1)),
    ] {
        let mut secs = Vec::new();
        let mut result = (0, 0);
        for _ in 0..runs {
            let t = Instant::now();
            let p = plan(
                &log,
                &PlanOptions {
                    since_version: since,
                    ..PlanOptions::default()
                },
            )
            .unwrap();
            secs.push(t.elapsed().as_secs_f64());
            result = (p.changes.len(), p.partitions.len());
        }
        println!(
            "{what}: {:.1} ms median of {runs} ({} commits in the log, {} changes read, {} partitions to backfill)",
            median(secs) * 1e3,
            latest + 1,
            result.0,
            result.1
        );
    }
}
