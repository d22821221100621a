//! `reckon serve`'s log on standard error (`RECKON_LOG` filter, default `info`):
//! startup (version, configuration, store, streams, pipelines, listen address), a
//! warning when listening on a non-loopback address, and shutdown; standard output
//! keeps only the `reckon listening on …` line scripts read.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("reckon.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
path = "{}"
[server]
listen = "127.0.0.1:0"
[[stream]]
name = "water_level"
key_fields = ["i"]
time_format = "unix_s"
[[pipeline]]
name = "mean_1h"
stream = "water_level"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "mean", field = "level", name = "mean" }}]
allowed_lateness = "1d"
retention = "7d"
"#,
            dir.join("store").display()
        ),
    )
    .unwrap();
    path
}

/// Runs `reckon serve` with `listen` and `RECKON_LOG=log` (unset if `None`), stops it
/// with SIGTERM once it listens; its first stdout line, the rest of stdout, and stderr.
fn serve(listen: &str, log: Option<&str>) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reckon"));
    cmd.args([
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        listen,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    match log {
        Some(l) => cmd.env("RECKON_LOG", l),
        None => cmd.env_remove("RECKON_LOG"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    (first, rest, err)
}

#[test]
fn non_loopback_listen_warns_and_startup_and_shutdown_are_logged() {
    let (first, rest, err) = serve("0.0.0.0:0", None);
    assert!(
        first.starts_with("reckon listening on http://0.0.0.0:"),
        "{first}"
    );
    assert_eq!(rest, "", "stdout has only the listening line");
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("no authentication"), "{err}");
    let version = format!("reckon {} starting", env!("CARGO_PKG_VERSION"));
    for want in [
        version.as_str(),
        "reckon.toml",
        "store",
        "streams: water_level",
        "pipelines: mean_1h",
        "header_read_timeout 10s, body_read_timeout 30s",
        "listening on http://0.0.0.0:",
        "SIGTERM received: stopping",
        "draining: finishing the requests in flight",
        "server stopped: every acknowledged write is durable",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn loopback_listen_does_not_warn() {
    let (first, _, err) = serve("127.0.0.1:0", None);
    assert!(
        first.starts_with("reckon listening on http://127.0.0.1:"),
        "{first}"
    );
    assert!(err.contains("pipelines: mean_1h"), "{err}");
    assert!(!err.contains("WARN"), "{err}");
}

#[test]
fn reckon_log_warn_hides_the_info_lines_but_not_the_warning() {
    let (first, _, err) = serve("0.0.0.0:0", Some("warn"));
    assert!(
        first.starts_with("reckon listening on http://0.0.0.0:"),
        "{first}"
    );
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(!err.contains("INFO"), "{err}");
    assert!(!err.contains("starting"), "{err}");
    assert!(!err.contains("pipelines:"), "{err}");
}

#[test]
fn an_invalid_reckon_log_is_reported_and_info_used() {
    let (_, _, err) = serve("127.0.0.1:0", Some("reckon=loud"));
    assert!(
        err.contains("RECKON_LOG=\"reckon=loud\" is not a valid filter"),
        "{err}"
    );
    assert!(err.contains("pipelines: mean_1h"), "{err}");
}
