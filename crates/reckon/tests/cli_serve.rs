//! `reckon serve`, `reckon query` and `reckon replay` as a user runs them: the real
//! binary on a real socket, SIGTERM for a clean stop, exit codes.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

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
id_field = "id"
[[pipeline]]
name = "mean_1h"
stream = "water_level"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
allowed_lateness = "1d"
retention = "7d"
"#,
            dir.join("store").display()
        ),
    )
    .unwrap();
    path
}

fn curl_like(url: &str, body: Option<&str>) -> String {
    // A minimal HTTP/1.1 client over a TcpStream, so the test needs no HTTP crate.
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let req = match body {
        Some(b) => format!(
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    };
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out
}

#[test]
fn serve_ingests_answers_queries_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let lines = "{\"i\":\"1\",\"time\":10,\"level\":2,\"id\":\"a\"}\n\
                 {\"i\":\"1\",\"time\":7300,\"level\":4,\"id\":\"b\"}\n\
                 {\"i\":\"1\",\"time\":20,\"level\":6,\"id\":\"c\"}\n";
    let r = curl_like(
        &format!("{base}/v1/streams/water_level/events"),
        Some(lines),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"accepted\":3"), "{r}");
    let r = curl_like(&format!("{base}/healthz"), None);
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"status\":\"ok\""),
        "{r}"
    );

    let (code, out, err) = reckon(&[
        "query", "--url", &base, "windows", "mean_1h", "--key", "i=1",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["windows"][0]["version"], 2, "{out}");
    assert_eq!(v["windows"][0]["values"]["mean"], 4.0, "{out}");
    let (code, out, _) = reckon(&["query", "--url", &base, "windows", "mean_1h", "--csv"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pipeline,key,window_start"), "{out}");
    let (code, out, _) = reckon(&[
        "query", "--url", &base, "changes", "mean_1h", "--since", "0",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // One POST, one commit: the window's on-time v1 and its late v2 coalesce into v2.
    assert_eq!(v["changes"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(v["changes"][0]["version"], 2, "{out}");
    let (code, _, err) = reckon(&["query", "--url", &base, "windows", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("404 Not Found: unknown pipeline `nope`"),
        "{err}"
    );

    // SIGTERM: a clean stop, exit 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The store is closed and consistent.
    let (code, out, _) = reckon(&["verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // No server: `query` says so, exit 2.
    let (code, _, err) = reckon(&["query", "--url", &base, "windows", "mean_1h"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach reckon at"), "{err}");
}

/// `reckon replay FILE -c CFG -s water_level EXTRA...`.
fn replay(cfg: &str, file: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["replay", file, "-c", cfg, "-s", "water_level"];
    args.extend_from_slice(extra);
    reckon(&args)
}

#[test]
fn replay_loads_ndjson_csv_and_line_protocol_and_resumes_after_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let cfg = config.to_str().unwrap();
    let ndjson = dir.path().join("a.ndjson");
    let mut text = String::new();
    for k in 0..100 {
        text.push_str(&format!(
            "{{\"i\":\"{}\",\"time\":{},\"level\":1.5,\"id\":\"n{k}\"}}\n",
            k % 3,
            k * 60
        ));
    }
    text.push_str("{\"i\":\"1\",\"time\":\"x\"}\n");
    std::fs::write(&ndjson, &text).unwrap();
    let (code, out, err) = replay(cfg, ndjson.to_str().unwrap(), &["--batch", "7", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("100 events stored, 0 late, 0 duplicates, 1 bad lines"),
        "{out}"
    );
    assert!(err.contains("line 101: field `time`"), "{err}");
    // More lines appended: a second replay resumes after the last batch.
    let mut more = String::new();
    for k in 100..130 {
        more.push_str(&format!(
            "{{\"i\":\"0\",\"time\":{},\"level\":2.5,\"id\":\"n{k}\"}}\n",
            k * 60
        ));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&ndjson)
        .unwrap()
        .write_all(more.as_bytes())
        .unwrap();
    let (code, out, err) = replay(cfg, ndjson.to_str().unwrap(), &["--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("30 events stored, 0 late, 0 duplicates, 0 bad lines"),
        "{out}"
    );
    assert!(
        err.contains("resuming") && err.contains("at line 102"),
        "{err}"
    );
    // --restart reads it all again: every event is a duplicate by id.
    let (code, out, _) = replay(cfg, ndjson.to_str().unwrap(), &["--quiet", "--restart"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 events stored, 0 late, 130 duplicates, 1 bad lines"),
        "{out}"
    );

    // CSV with a header, a quoted cell and a bad row.
    let csv = dir.path().join("b.csv");
    std::fs::write(
        &csv,
        "i,time,level,id,note\n5,60,1.0,c1,\"a, b\"\n5,120,x2,c2,\n5,notatime,3,c3,\n",
    )
    .unwrap();
    let (code, out, err) = replay(cfg, csv.to_str().unwrap(), &["--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 events stored"), "{out}");
    assert!(err.contains("line 4") && err.contains("`time`"), "{err}");

    // Line protocol, seconds precision, closing every window at the end.
    let lp = dir.path().join("c.lp");
    std::fs::write(
        &lp,
        "water_level,i=9 level=1,id=\"l1\" 60\nwater_level,i=9 level=3,id=\"l2\" 120\nbad line\n",
    )
    .unwrap();
    let (code, out, err) = replay(
        cfg,
        lp.to_str().unwrap(),
        &["--quiet", "--precision", "s", "--finish"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 events stored") && out.contains("every window closed"),
        "{out}"
    );
    assert!(err.contains("line 3"), "{err}");
    let (code, out, _) = reckon(&["verify", "--config", cfg]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = replay(cfg, "/nonexistent.ndjson", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot open /nonexistent.ndjson"), "{err}");
}
