//! Crash safety of the real binary: `reckon ingest` is killed with SIGKILL at random
//! moments while a client feeds it a generated workload and resends everything after
//! the last ack (at-least-once). At the end: every event is stored exactly once, there
//! are no dead letters, every window equals the independent oracle, and `reckon
//! verify` is clean. `verify` also catches a result tampered with in the store.
//!
//! CI runs 20 kills; `RECKON_CRASH_KILLS=300 cargo test --release -p reckon --test
//! cli_crash` runs a longer soak.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::{EventTime, Value};
use reckon_runtime::Config;
use reckon_store::Store;
use reckon_testkit::{Seed000, SplitMix64, diff_with_oracle};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reckon-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("reckon.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
path = "{}"

[[stream]]
name = "water_level"
key_fields = ["i"]
time_format = "unix_ns"
id_field = "id"

[[pipeline]]
name = "mean_1h"
stream = "water_level"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
allowed_lateness = "3h"
retention = "30d"
"#,
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// Seed 000's workload as NDJSON lines, every event with a unique id.
fn workload(n: usize) -> Vec<String> {
    let g = Seed000 {
        locations: 20,
        late_probability: 0.3,
        with_ids: true,
        seed: 3,
        ..Seed000::default()
    };
    g.arrivals()
        .take(n)
        .map(|a| {
            let e = a.event;
            let level = match e.field("level") {
                Some(Value::F64(x)) => *x,
                _ => 0.0,
            };
            let tags = e.key.tags();
            format!(
                r#"{{"time":{},"i":"{}","id":"{}","level":{level}}}"#,
                e.time.0,
                tags[0].1,
                e.id.unwrap().0
            )
        })
        .collect()
}

fn reckon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reckon"))
}

/// When a run is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after the process started: may hit startup and recovery.
    AfterStart(Duration),
    /// This long after its first acknowledgement: every such run makes progress, so a
    /// loaded machine (slow startups) cannot starve the test of acknowledgements.
    AfterFirstAck(Duration),
}

/// Runs `reckon ingest` on `lines[from..]`, kills it as `kill` says (if any), and
/// returns how many lines were acknowledged in total.
fn ingest(config: &Path, lines: &[String], from: usize, kill: Option<Kill>, finish: bool) -> usize {
    let mut cmd = reckon();
    cmd.args(["ingest", "--config"]).arg(config).args([
        "--stream",
        "water_level",
        "--batch",
        "150",
        "--checkpoint-every",
        "3",
    ]);
    if finish {
        cmd.arg("--finish");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<String> = lines[from..].to_vec();
    let writer = std::thread::spawn(move || {
        for l in input {
            // The child may be killed mid-write: a broken pipe is expected then.
            if writeln!(stdin, "{l}").is_err() {
                return;
            }
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ack ") {
                let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
                let _ = tx.send(n);
            }
        }
    });
    let mut started = Instant::now();
    let mut acked = from;
    match kill {
        Some(kill) => {
            let d = match kill {
                Kill::AfterStart(d) => d,
                Kill::AfterFirstAck(d) => {
                    // Generous: a cold start on a loaded 2-core machine can take seconds.
                    let n = match rx.recv_timeout(Duration::from_secs(120)) {
                        Ok(n) => n,
                        Err(e) => {
                            // Say why: the child's exit and its stderr.
                            let _ = child.kill();
                            let out = child.wait_with_output().unwrap();
                            panic!(
                                "no acknowledgement within 120 s of starting `reckon ingest` ({e}): {}: {}",
                                out.status,
                                String::from_utf8_lossy(&out.stderr)
                            );
                        }
                    };
                    acked = from + n;
                    started = Instant::now();
                    d
                }
            };
            while started.elapsed() < d {
                if let Ok(n) = rx.recv_timeout(Duration::from_millis(5)) {
                    acked = from + n;
                }
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
        None => {
            let status = child.wait().unwrap();
            assert!(status.success(), "ingest failed: {status}");
        }
    }
    writer.join().unwrap();
    reader.join().unwrap();
    while let Ok(n) = rx.try_recv() {
        acked = acked.max(from + n);
    }
    acked
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_counts_nothing_twice() {
    let kills: usize = std::env::var("RECKON_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = temp_dir("crash");
    let config = write_config(&dir);
    let lines = workload(400 * kills.max(10));
    let mut rng = SplitMix64::new(42);
    let mut acked: usize = 0;
    for run in 0..kills {
        let after = Duration::from_millis(20 + rng.below(250));
        let kill_after = if run % 2 == 0 {
            Kill::AfterStart(after)
        } else {
            Kill::AfterFirstAck(after)
        };
        // At-least-once: resend from the last ack, sometimes from a bit earlier too.
        let from = acked.saturating_sub(rng.below(200) as usize);
        let now_acked = ingest(&config, &lines, from, Some(kill_after), false);
        acked = acked.max(now_acked);
        if acked == lines.len() {
            break;
        }
    }
    assert!(acked > 0, "nothing was ever acknowledged");
    assert_eq!(ingest(&config, &lines, acked, None, true), lines.len());

    let cfg = Config::load(&config).unwrap();
    let store = Store::open(&cfg.store.path).unwrap();
    let raw = store.raw_scan("water_level").unwrap();
    assert_eq!(raw.len(), lines.len(), "every event exactly once");
    let mut ids: Vec<_> = raw.iter().map(|e| e.id.clone().unwrap().0).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), lines.len(), "an event was stored twice");
    assert!(store.dead_letters("water_level").unwrap().is_empty());
    let spec = cfg.pipelines[0].spec().unwrap();
    let latest = store
        .windows("mean_1h", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .map(|e| ((e.key.clone(), e.window), e))
        .collect();
    let diffs = diff_with_oracle(&spec, &latest, &raw);
    assert!(
        diffs.is_empty(),
        "{} windows differ from the oracle: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(5)]
    );
    drop(store);

    let out = reckon()
        .args(["verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Tamper with one stored result: verify must catch it and exit 1.
    let store = Store::open(&cfg.store.path).unwrap();
    let mut victim = latest_any(&store);
    victim.values[0] = Some(Value::F64(-1.0));
    store.overwrite_result_for_tests(&victim).unwrap();
    drop(store);
    let out = reckon()
        .args(["verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(victim.key.as_str()) && text.contains("windows disagree with the raw log"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn latest_any(store: &Store) -> reckon_core::Emission {
    store
        .windows("mean_1h", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .swap_remove(3)
}
