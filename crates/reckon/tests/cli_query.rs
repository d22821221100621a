//! `reckon query` against a real `reckon serve`: `--limit`, `--cursor` and `--all`
//! (JSON and CSV), and a stdout pipe closed early (`reckon query … | head`) ending the
//! CLI quietly with exit 0.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

/// Keys and hours of the data: `KEYS × (HOURS - 1)` closed windows.
const KEYS: u32 = 3;
const HOURS: i64 = 500;

fn reckon(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(args)
        .output()
        .expect("run reckon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server on a free port whose `max_query_limit` is 300, holding the test data.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reckon.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
path = "{}"
[server]
listen = "127.0.0.1:0"
max_query_limit = 300
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
retention = "10000d"
"#,
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("reckon listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    let mut body = String::new();
    for h in 0..HOURS {
        for k in 0..KEYS {
            body.push_str(&format!(
                "{{\"i\":\"{k}\",\"time\":{},\"level\":{h}}}\n",
                h * 3600 + 1
            ));
        }
    }
    let r = post(&base, "/v1/streams/water_level/events", &body);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    Server {
        child,
        base,
        _dir: dir,
    }
}

fn post(base: &str, path: &str, body: &str) -> String {
    let host = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// (key, start) of every window, in query order.
fn all_windows() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for k in 0..KEYS {
        for h in 0..HOURS - 1 {
            let start = jiff::Timestamp::from_second(h * 3600).unwrap().to_string();
            v.push((format!("i={k}"), start));
        }
    }
    v.sort();
    v
}

#[test]
fn limit_cursor_and_all_page_through_every_window_once_in_json_and_csv() {
    let server = serve();
    let base = server.base.as_str();

    // One page of 100, with the cursor of the next.
    let (code, out, err) = reckon(&[
        "query", "--url", base, "windows", "mean_1h", "--limit", "100",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["windows"].as_array().unwrap().len(), 100);
    let next = v["next"].as_str().unwrap().to_string();
    let (code, out, err) = reckon(&[
        "query", "--url", base, "windows", "mean_1h", "--limit", "100", "--cursor", &next,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["windows"][0]["key"], "i=0", "{out}");
    assert_eq!(v["windows"][0]["window"]["start"], "1970-01-05T04:00:00Z"); // hour 100

    // --all, JSON: one document with every window, the server's cap (300) per page.
    let (code, out, err) = reckon(&["query", "--url", base, "windows", "mean_1h", "--all"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<(String, String)> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["key"].as_str().unwrap().to_string(),
                w["window"]["start"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, all_windows());
    assert_eq!(v["next"], serde_json::Value::Null);

    // --all --csv: one header, every row once, in order. Regression: CSV stopped at
    // the limit without a marker.
    let (code, out, err) = reckon(&[
        "query", "--url", base, "windows", "mean_1h", "--all", "--csv", "--limit", "250",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("pipeline,key,window_start")
    );
    let got: Vec<(String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[2].to_string())
        })
        .collect();
    assert_eq!(got, all_windows());

    // One CSV page that is not the last: stderr says how to go on.
    let (code, out, err) = reckon(&["query", "--url", base, "windows", "mean_1h", "--csv"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 301);
    assert!(
        err.starts_with("more windows follow: add --cursor "),
        "{err}"
    );

    // A stale change-feed cursor is refused, naming the last change.
    let (code, _, err) = reckon(&[
        "query", "--url", base, "changes", "mean_1h", "--since", "999999",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("since=999999 is past the last change 1497 of pipeline `mean_1h`"),
        "{err}"
    );
}

/// Runs `reckon query …` with its stdout a pipe that is closed after `keep` bytes
/// were read (0: before it writes anything); its exit code and stderr.
fn with_pipe_closed_after(args: &[&str], keep: usize) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    if keep > 0 {
        let mut buf = vec![0; keep];
        stdout.read_exact(&mut buf).unwrap();
    }
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code(), err)
}

#[test]
fn a_stdout_closed_early_ends_query_quietly() {
    // Regression: `reckon query changes P --since 0 | head` panicked (broken pipe).
    let server = serve();
    let base = server.base.as_str();
    let cases: [&[&str]; 4] = [
        &["query", "--url", base, "changes", "mean_1h", "--since", "0"],
        &["query", "--url", base, "windows", "mean_1h"],
        &["query", "--url", base, "windows", "mean_1h", "--all"],
        &[
            "query", "--url", base, "windows", "mean_1h", "--all", "--csv",
        ],
    ];
    for args in cases {
        for keep in [0, 100] {
            let (code, err) = with_pipe_closed_after(args, keep);
            assert_eq!(code, Some(0), "{args:?} after {keep} bytes: {err}");
            assert_eq!(err, "", "{args:?} after {keep} bytes");
        }
    }
}
