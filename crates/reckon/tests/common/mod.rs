//! Helpers of the connector tests: `reckon serve` as a child process, a tiny HTTP
//! client, a deterministic generator and the shared configuration.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `reckon.toml` in `dir`: stream `levels` (keyed by `i`, Unix seconds, with
/// `stream_extra`), pipeline `levels_1h` (count and sum of `v`), then `extra`.
pub fn write_config(dir: &Path, stream_extra: &str, extra: &str) -> PathBuf {
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
name = "levels"
key_fields = ["i"]
time_format = "unix_s"
{stream_extra}
[[pipeline]]
name = "levels_1h"
stream = "levels"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "count" }}, {{ fn = "sum", field = "v", name = "sum" }}]
allowed_lateness = "30d"
retention = "60d"
# Open windows show their count too, so the test can wait for every event.
early_interval = "200ms"
{extra}
"#,
            dir.join("store").display()
        ),
    )
    .unwrap();
    path
}

/// A running `reckon serve`; killed if the test panics while it runs.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Gone already after `kill9` or `stop`; otherwise a failed test's server.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `reckon serve --config CONFIG`, its log appended to `log`.
pub fn serve(config: &Path, log: &Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RECKON_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("reckon listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    Server { child, base }
}

impl Server {
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
    }
    /// `GET path` as JSON (`Null` when it cannot be read).
    pub fn get(&self, path: &str) -> serde_json::Value {
        let r = http("GET", &format!("{}{path}", self.base), "").1;
        serde_json::from_str(&r).unwrap_or(serde_json::Value::Null)
    }
    /// `POST path` with `body`: the status (0 when unreachable) and body.
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        http("POST", &format!("{}{path}", self.base), body)
    }
    pub fn sources(&self) -> serde_json::Value {
        self.get("/v1/sources")
    }
    /// Events counted in all windows (paging through the windows query).
    pub fn counted(&self) -> u64 {
        let mut total = 0;
        let mut cursor = String::new();
        loop {
            let url = format!(
                "{}/v1/pipelines/levels_1h/windows?limit=1000{cursor}",
                self.base
            );
            let v: serde_json::Value =
                serde_json::from_str(&http("GET", &url, "").1).unwrap_or_default();
            for w in v["windows"].as_array().into_iter().flatten() {
                total += w["count"].as_u64().unwrap_or(0);
            }
            match v["next"].as_str() {
                Some(n) => cursor = format!("&cursor={n}"),
                None => return total,
            }
        }
    }
}

/// One HTTP/1.1 request over a plain TCP stream: the status (0 when unreachable) and
/// the body.
pub fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return (0, String::new());
    };
    let _ = write!(
        s,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits until `done` holds, up to `secs`.
pub fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
