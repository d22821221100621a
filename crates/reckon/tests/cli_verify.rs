//! `reckon verify` against the real binary: a missing store or an unknown pipeline is
//! a usage error (exit 2), and each pipeline is recomputed from the events it accepted,
//! not from everything in its stream's raw log.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reckon-verify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two pipelines on one stream: `short` keeps 2h, `long` keeps 7d.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("reckon.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
path = "{}"

[[stream]]
name = "s"
key_fields = ["k"]

[[pipeline]]
name = "short"
stream = "s"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "sum", field = "v", name = "sum" }}, {{ fn = "count" }}]
allowed_lateness = "1h"
retention = "2h"

[[pipeline]]
name = "long"
stream = "s"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "sum", field = "v", name = "sum" }}, {{ fn = "count" }}]
allowed_lateness = "1d"
retention = "7d"
"#,
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn reckon(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn verify_on_a_missing_store_path_is_exit_2_and_creates_nothing() {
    let dir = temp_dir("missing");
    let config = write_config(&dir);
    let out = reckon(&["verify", "-c", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dir.join("data").display().to_string()),
        "{}",
        text(&out)
    );
    assert!(!dir.join("data").exists(), "verify created a store");
}

#[test]
fn verify_of_an_unknown_pipeline_is_exit_2_naming_the_known_ones() {
    let dir = temp_dir("unknown");
    let config = write_config(&dir);
    let cfg = config.to_str().unwrap();
    let ingest = reckon(
        &["ingest", "-c", cfg, "-s", "s"],
        Some("{\"k\":\"a\",\"time\":\"2024-01-01T10:00:00Z\",\"v\":1}\n"),
    );
    assert!(ingest.status.success(), "{}", text(&ingest));
    let out = reckon(&["verify", "-c", cfg, "-p", "nope"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") && err.contains("short") && err.contains("long"),
        "{}",
        text(&out)
    );
}

#[test]
fn verify_excludes_events_a_pipeline_dead_lettered_but_another_kept() {
    let dir = temp_dir("dead");
    let config = write_config(&dir);
    let cfg = config.to_str().unwrap();
    // 10:30 arrives ten hours late: beyond `short`'s 2h retention (dead-lettered
    // there) but within `long`'s 1d lateness (a correction there). Both copies of the
    // late event are equal in content; `short` refused both.
    let lines = [
        r#"{"k":"a","time":"2024-01-01T10:00:00Z","v":1}"#,
        r#"{"k":"a","time":"2024-01-01T20:00:00Z","v":1}"#,
        r#"{"k":"a","time":"2024-01-01T10:30:00Z","v":5}"#,
        r#"{"k":"a","time":"2024-01-01T10:30:00Z","v":5}"#,
    ];
    let input = lines.join("\n") + "\n";
    let ingest = reckon(
        &["ingest", "-c", cfg, "-s", "s", "--batch", "1"],
        Some(&input),
    );
    assert!(ingest.status.success(), "{}", text(&ingest));
    let out = reckon(&["verify", "-c", cfg], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verified"), "{}", text(&out));
}
