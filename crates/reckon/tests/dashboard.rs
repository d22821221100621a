//! The dashboard in a real browser: headless Debian `chromium`, driven by
//! `tests/dashboard/check.mjs` (playwright-core), against `reckon serve`.
//!
//! The page must show every window of the first key as a point; five late events
//! POSTed one after the other must each be marked revised on the chart within 1 s;
//! a click on a revised point shows its revision history (every version, old → new);
//! and the "as known at" slider at its start shows that window's first version again.
//! Screenshots go to `docs/dashboard.png` and `docs/dashboard-history.png` when
//! `RECKON_SCREENSHOTS` names a folder. Without chromium or node it prints SKIP (a
//! failure with `RECKON_REQUIRE_SERVICES=1`, as in CI); `scripts/browser.sh` installs
//! them.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

mod common;
use common::{serve, wait_for, write_config};

const T0: i64 = 1_700_002_800; // 2023-11-14T23:00:00Z, an hour's start

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `scripts/browser.sh` (installs what is missing); false when the browser cannot run.
fn browser_ready() -> bool {
    let ok = Command::new("bash")
        .arg(repo().join("scripts/browser.sh"))
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("RECKON_REQUIRE_SERVICES").is_err(),
            "chromium, node or playwright-core is missing (scripts/browser.sh)"
        );
        eprintln!("SKIP: chromium, node or playwright-core is missing (run scripts/browser.sh)");
    }
    ok
}

/// Runs `check.mjs` on the page at `base` with `arg`; its JSON answer (the page
/// raised no script error).
fn run_page(base: &str, arg: &serde_json::Value) -> serde_json::Value {
    run_page_with(base, arg, |_| {})
}

/// `run_page`, calling `on_wait` for each `wait` step (the page waits meanwhile).
fn run_page_with(
    base: &str,
    arg: &serde_json::Value,
    mut on_wait: impl FnMut(&str),
) -> serde_json::Value {
    use std::io::{BufRead, Write};
    let node_modules = std::env::var("HOME").unwrap() + "/.cache/reckon-node/node_modules";
    let mut child = Command::new("node")
        .arg(repo().join("crates/reckon/tests/dashboard/check.mjs"))
        .arg(base)
        .arg(arg.to_string())
        .env("RECKON_NODE_MODULES", &node_modules)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut last = String::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        match v["waiting"].as_str() {
            Some(what) => {
                on_wait(what);
                stdin.write_all(b"go\n").unwrap();
            }
            None => last = line,
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "check.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(last.trim()).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(
        r["errors"],
        serde_json::json!([]),
        "errors in the page: {r}"
    );
    r
}

fn start(t: i64) -> String {
    jiff::Timestamp::from_second(t).unwrap().to_string()
}

#[test]
fn the_dashboard_marks_a_late_correction_within_a_second_and_replays_what_was_known() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", "");
    let log = dir.path().join("serve.log");
    let server = serve(&config, &log);
    // 24 hours of key d0, two events an hour; then d1 far later closes them all.
    let mut body = String::new();
    for h in 0..24 {
        for m in [5, 35] {
            body.push_str(&format!(
                "{{\"i\":\"d0\",\"time\":{},\"v\":{}}}\n",
                T0 + h * 3600 + m * 60,
                h + 1
            ));
        }
    }
    body.push_str(&format!(
        "{{\"i\":\"d1\",\"time\":{},\"v\":1}}\n",
        T0 + 40 * 3600
    ));
    let (status, out) = server.post("/v1/streams/levels/events", &body);
    assert_eq!(status, 200, "{out}");
    wait_for(30, "the windows", || server.counted() == 49);
    let late: Vec<serde_json::Value> = [2, 5, 8, 11, 14]
        .iter()
        .map(|h| {
            serde_json::json!({
                "path": "/v1/streams/levels/events",
                "body": format!("{{\"i\":\"d0\",\"time\":{},\"v\":100}}", T0 + h * 3600 + 600),
                "start": start(T0 + h * 3600),
            })
        })
        .collect();
    let shots = std::env::var("RECKON_SCREENSHOTS").ok();
    let arg = serde_json::json!({
        "points": 24,
        "late": late,
        "history": start(T0 + 2 * 3600),
        "shots": shots,
    });
    let r = run_page(&server.base, &arg);
    eprintln!("{r}");
    assert_eq!(r["points"], 24, "{r}");
    assert_eq!(r["plotted"], 24, "{r}");
    assert_eq!(r["revised_before"], 0, "{r}");
    assert_eq!(r["revised_after"], 5, "five windows marked revised: {r}");
    let lat: Vec<f64> = r["latency_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(lat.len(), 5);
    assert!(
        lat.iter().all(|ms| *ms <= 1000.0),
        "a correction took more than 1 s to show: {lat:?}"
    );
    // The history of the 01:00 window: its versions, the late one last, old → new.
    let rows = r["history_rows"].as_u64().unwrap();
    assert!(rows >= 2, "{r}");
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("late"), "{detail}");
    assert!(detail.contains("→"), "{detail}");
    // As known at the slider's start: a version before the late one.
    let history = server.get(&format!(
        "/v1/pipelines/levels_1h/history?key=i=d0&start={}",
        start(T0 + 2 * 3600)
    ));
    let versions = history["versions"].as_array().unwrap();
    let newest = versions.last().unwrap()["version"].as_u64().unwrap();
    assert_eq!(versions.len() as u64, rows);
    assert!(
        r["as_of_version"].as_u64().unwrap() < newest,
        "as known at the start, the window was not yet revised: {r}"
    );
    // The overview: the pipeline, with its one partition's lag (its watermark is in
    // /metrics per partition).
    let overview = r["overview"].as_str().unwrap();
    assert!(overview.contains("levels_1h"), "{r}");
    assert!(
        overview.contains("0: "),
        "no partition lag shown: {overview}"
    );
    let metrics = common::http("GET", &format!("{}/metrics", server.base), "").1;
    assert!(
        metrics
            .contains("reckon_partition_watermark_seconds{partition=\"0\",pipeline=\"levels_1h\"}")
            || metrics.contains(
                "reckon_partition_watermark_seconds{pipeline=\"levels_1h\",partition=\"0\"}"
            ),
        "{metrics}"
    );
    server.stop();
}

/// A server killed (kill -9) and started again under an open page: the page's feed
/// reconnects, and a late event after the restart is still marked revised.
#[test]
fn the_dashboard_follows_the_feed_again_after_the_server_restarts() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", "");
    // The same port both times: the page's address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, toml).unwrap();
    let log = dir.path().join("serve.log");
    let mut server = Some(serve(&config, &log));
    let base = server.as_ref().unwrap().base.clone();
    let mut body = String::new();
    for h in 0..6 {
        body.push_str(&format!(
            "{{\"i\":\"d0\",\"time\":{},\"v\":1}}\n",
            T0 + h * 3600 + 60
        ));
    }
    body.push_str(&format!(
        "{{\"i\":\"d1\",\"time\":{},\"v\":1}}\n",
        T0 + 40 * 3600
    ));
    let (status, out) = server
        .as_ref()
        .unwrap()
        .post("/v1/streams/levels/events", &body);
    assert_eq!(status, 200, "{out}");
    wait_for(30, "the windows", || {
        server.as_ref().unwrap().counted() == 7
    });
    let late = start(T0 + 3 * 3600);
    let arg = serde_json::json!({
        "points": 6,
        "steps": [
            { "wait": "restart" },
            // The page saw its feed break and opened it again.
            { "until": "reckon.state.reconnects > 0", "timeout": 15000 },
            { "path": "/v1/streams/levels/events",
              "body": format!("{{\"i\":\"d0\",\"time\":{},\"v\":100}}", T0 + 3 * 3600 + 600),
              // Marked revised on the chart: from the feed opened again, or the windows
              // read again when the feed had given no change before it broke.
              "until": format!("(reckon.state.wins.get('{late}') || {{ e: {{}} }}).e.kind === 'late' && reckon.state.plot.data[2].some((v) => v != null)"), "timeout": 20000 },
        ],
    });
    let r = run_page_with(&base, &arg, |_| {
        server.take().unwrap().kill9();
        server = Some(serve(&config, &log));
    });
    assert_eq!(r["steps_ms"].as_array().unwrap().len(), 3, "{r}");
    server.take().unwrap().stop();
}

/// The dashboard's figures (`docs/BENCHMARKS.md`), not part of the suite:
/// `cargo test --release -p reckon --test dashboard -- --ignored --nocapture`.
/// First paint of a key with 100,000 one-minute windows (every page of the windows
/// query loaded and drawn), and correction → browser latency over `SAMPLES` (default
/// 100) late events, each POSTed once the previous one was marked, with `LOAD` on-time
/// events/s of other keys posted meanwhile (default 0).
#[test]
#[ignore]
fn dashboard_figures() {
    if !browser_ready() {
        return;
    }
    let points: i64 = std::env::var("POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let samples: i64 = std::env::var("SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
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
[[stream]]
name = "levels"
key_fields = ["i"]
time_format = "unix_s"
[[pipeline]]
name = "levels_1m"
stream = "levels"
window = {{ type = "tumbling", size = "1m" }}
aggregates = [{{ fn = "sum", field = "v", name = "sum" }}, {{ fn = "count" }}]
allowed_lateness = "1000d"
retention = "1000d"
"#,
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let server = serve(&config, &log);
    let t0 = T0 - points * 60;
    for chunk in (0..points).collect::<Vec<_>>().chunks(20_000) {
        let body: String = chunk
            .iter()
            .map(|m| {
                format!(
                    "{{\"i\":\"d0\",\"time\":{},\"v\":{}}}\n",
                    t0 + m * 60 + 5,
                    m % 50
                )
            })
            .collect();
        let (status, out) = server.post("/v1/streams/levels/events", &body);
        assert_eq!(status, 200, "{out}");
    }
    let (status, out) = server.post(
        "/v1/streams/levels/events",
        &format!("{{\"i\":\"d1\",\"time\":{},\"v\":1}}", T0 + 3600),
    );
    assert_eq!(status, 200, "{out}");
    let late: Vec<serde_json::Value> = (0..samples)
        .map(|k| {
            let m = points - 1 - k * 7;
            serde_json::json!({
                "path": "/v1/streams/levels/events",
                "body": format!("{{\"i\":\"d0\",\"time\":{},\"v\":1000}}", t0 + m * 60 + 30),
                "start": start(t0 + m * 60),
            })
        })
        .collect();
    let arg = serde_json::json!({ "points": points, "late": late });
    // `LOAD` on-time events/s of other keys meanwhile (batches of 100), if set.
    let load: u64 = std::env::var("LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = (load > 0).then(|| {
        let (stop, base) = (stop.clone(), server.base.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body: String = (0..100)
                    .map(|j| {
                        format!(
                            "{{\"i\":\"k{}\",\"time\":{},\"v\":1}}\n",
                            j % 20,
                            T0 + 3600 + (sent / 100) as i64
                        )
                    })
                    .collect();
                common::http("POST", &format!("{base}/v1/streams/levels/events"), &body);
                sent += 100;
                let due = std::time::Duration::from_secs_f64(sent as f64 / load as f64);
                if let Some(w) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(w);
                }
            }
            sent as f64 / started.elapsed().as_secs_f64()
        })
    });
    let r = run_page(&server.base, &arg);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rate = loader.map(|t| t.join().unwrap()).unwrap_or(0.0);
    let mut lat: Vec<f64> = r["latency_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "page JavaScript: {} bytes ({} sent gzipped); first paint with {} points: {} ms; correction → browser over {} samples, at {rate:.0} other events/s: p50 {} ms, p99 {} ms, max {} ms",
        reckon_server::dashboard::script_bytes().0,
        reckon_server::dashboard::script_bytes().1,
        r["points"],
        r["first_paint_ms"],
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
    server.stop();
}

/// The alert timeline's figures (`docs/BENCHMARKS.md`), not part of the suite:
/// `cargo test --release -p reckon --test dashboard alert_timeline_figures -- --ignored --nocapture`.
/// `SERIES` (default 100) series with `EPISODES` (default 60) episodes each, one-minute
/// windows; first paint of the rule (its timeline drawn with every bar), then the time
/// from a late event POSTed until the page shows the episode it fires, outlined as found
/// late, over `SAMPLES` (default 50) late events, each sent once the previous one showed.
#[test]
#[ignore]
fn alert_timeline_figures() {
    if !browser_ready() {
        return;
    }
    let env = |k: &str, d: i64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (series, episodes, samples) = (env("SERIES", 100), env("EPISODES", 60), env("SAMPLES", 50));
    assert!(
        samples <= episodes,
        "SAMPLES ≤ EPISODES: a late fire per gap of s0"
    );
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
[[stream]]
name = "levels"
key_fields = ["i"]
time_format = "unix_s"
[[pipeline]]
name = "levels_1m"
stream = "levels"
window = {{ type = "tumbling", size = "1m" }}
aggregates = [{{ fn = "sum", field = "v", name = "sum" }}]
allowed_lateness = "1000d"
retention = "1000d"
[[alert]]
name = "hot"
input = "levels_1m"
condition = "sum >= 50"
retention = "1000d"
"#,
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let server = serve(&config, &log);
    // Series s: minute 4k holds (an episode), the three after it do not.
    let t0 = T0 - episodes * 4 * 60;
    let mut body = String::new();
    for s in 0..series {
        for m in 0..episodes * 4 {
            let v = if m % 4 == 0 { 100 } else { 1 };
            body.push_str(&format!(
                "{{\"i\":\"s{s}\",\"time\":{},\"v\":{v}}}\n",
                t0 + m * 60 + 5
            ));
        }
    }
    body.push_str(&format!("{{\"i\":\"z\",\"time\":{},\"v\":1}}\n", T0 + 3600));
    let (status, out) = server.post("/v1/streams/levels/events", &body);
    assert_eq!(status, 200, "{out}");
    let total = (series * episodes) as usize;
    wait_for(120, "the episodes", || {
        server.get("/v1/pipelines/hot/windows?limit=100000")["windows"]
            .as_array()
            .is_some_and(|w| w.len() == total)
    });
    // A late 100 at minute 4k + 2 of s0: a new episode there, found late.
    let steps: Vec<serde_json::Value> = (0..samples)
        .map(|k| {
            let m = 4 * k + 2;
            serde_json::json!({
                "path": "/v1/streams/levels/events",
                "body": format!("{{\"i\":\"s0\",\"time\":{},\"v\":100}}", t0 + m * 60 + 30),
                "until": format!("document.querySelector('#extra i.late[data-s=\"{}\"]')", start(t0 + m * 60)),
            })
        })
        .collect();
    let arg = serde_json::json!({
        "points": episodes,
        "select": { "pipe": "hot", "key": "i=s0" },
        "steps": steps,
        "values": { "bars": "document.querySelectorAll('#extra i').length" },
    });
    let r = run_page(&server.base, &arg);
    assert_eq!(r["values"]["bars"], total + samples as usize, "{r}");
    let mut lat: Vec<f64> = r["steps_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    // The server's part: a late fire POSTed until the windows query has its episode.
    let mut server_ms = Vec::new();
    for k in samples..episodes.min(samples + 10) {
        let m = 4 * k + 2;
        let sent = std::time::Instant::now();
        let (status, out) = server.post(
            "/v1/streams/levels/events",
            &format!("{{\"i\":\"s0\",\"time\":{},\"v\":100}}", t0 + m * 60 + 30),
        );
        assert_eq!(status, 200, "{out}");
        let (from, to) = (start(t0 + m * 60), start(t0 + m * 60 + 60));
        while server.get(&format!(
            "/v1/pipelines/hot/windows?key=i=s0&from={from}&to={to}"
        ))["windows"]
            .as_array()
            .is_none_or(|w| w.is_empty())
        {
            assert!(sent.elapsed().as_secs() < 10, "no late episode at {from}");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        server_ms.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    server_ms.sort_by(f64::total_cmp);
    println!(
        "server: late fire → stored episode, median of {}: {:.1} ms",
        server_ms.len(),
        server_ms
            .get(server_ms.len() / 2)
            .copied()
            .unwrap_or(f64::NAN)
    );
    println!(
        "alert timeline: {series} series, {total} episodes; first paint {} ms; late fire → bar over {} samples: p50 {} ms, p99 {} ms, max {} ms",
        r["first_paint_ms"],
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
    server.stop();
}

/// A running total in the dashboard: its buckets are points; below them a chart of the
/// reconciled total beside the real-time counter, sampled live, parts when an event
/// arrives out of order and the clamp makes arrival order matter; and a click on a
/// bucket shows both as `/total` gives them.
#[test]
fn the_dashboard_shows_a_running_total_real_time_beside_reconciled() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "",
        "[[running_total]]\nname = \"net\"\nstream = \"levels\"\nbucket = \"1h\"\nvalue = \"v\"\nclamp = true\nretention = \"5000d\"\n",
    );
    let log = dir.path().join("serve.log");
    let server = serve(&config, &log);
    let event = |t: i64, v: i64| format!("{{\"i\":\"d0\",\"time\":{t},\"v\":{v}}}");
    let mut body = String::new();
    for h in 0..6 {
        body.push_str(&event(T0 + h * 3600 + 60, 1));
        body.push('\n');
    }
    let (status, out) = server.post("/v1/streams/levels/events", &body);
    assert_eq!(status, 200, "{out}");
    // A late +10 for 01:00: the bucket gets a new version.
    let (status, out) = server.post("/v1/streams/levels/events", &event(T0 + 3600 + 120, 10));
    assert_eq!(status, 200, "{out}");
    // Five closed buckets (the watermark is in the sixth).
    wait_for(30, "the buckets", || {
        server.get("/v1/pipelines/net/windows?key=i=d0")["windows"]
            .as_array()
            .is_some_and(|w| w.len() == 5)
    });
    // The last sample of the page's chart: [reconciled, real-time].
    let last = "(() => { const r = reckon.state.rt, n = r[0].length - 1; return n >= 0 && [r[1][n], r[2][n]]; })()";
    let is = |a: i64, b: i64| format!("JSON.stringify({last}) === '[{a},{b}]'");
    let arg = serde_json::json!({
        "points": 5,
        "select": { "pipe": "net", "key": "i=d0" },
        "steps": [
            // −20 after everything: 16 − 20 hits the clamp, in both orders.
            { "path": "/v1/streams/levels/events", "body": event(T0 + 5 * 3600 + 600, -20), "until": is(0, 0) },
            // +5 before everything, late: reconciled 5+1+1+10+1+1+1+1 − 20 = 1; the
            // real-time counter adds it to its 0: 5.
            { "path": "/v1/streams/levels/events", "body": event(T0 + 30, 5), "until": is(1, 5) },
        ],
        "values": {
            "samples": "reckon.state.rt[0].length",
            "series": "reckon.state.rtPlot.series.map((s) => s.label).slice(1)",
            "heading": "document.querySelector('#extra h3').innerText",
            "last": last,
        },
        "history": start(T0 + 3600),
        "shot": "dashboard-totals.png",
        "shots": std::env::var("RECKON_SCREENSHOTS").ok(),
    });
    let r = run_page(&server.base, &arg);
    assert_eq!(r["points"], 5, "{r}");
    let v = &r["values"];
    assert!(v["samples"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(
        v["series"],
        serde_json::json!(["reconciled", "real-time"]),
        "{r}"
    );
    assert!(v["heading"].as_str().unwrap().contains("real-time"), "{r}");
    // The page's last sample is what the server says.
    let total = server.get("/v1/pipelines/net/total?key=i=d0");
    assert_eq!(
        v["last"],
        serde_json::json!([total["value"], total["real_time"]]),
        "{r}"
    );
    assert_eq!(
        (&total["value"], &total["real_time"], &total["difference"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(5),
            &serde_json::json!(-4)
        ),
        "{total}"
    );
    let detail = r["detail"].as_str().unwrap();
    let want = format!(
        "now: reconciled {}, real-time {} (difference {})",
        total["value"], total["real_time"], total["difference"]
    );
    assert!(detail.contains(&want), "{detail}\nwanted: {want}");
    server.stop();
}

/// An alert rule's timeline: every series' episodes as bars in event time, a late fire
/// outlined and a retraction drawn hollow as each lands, and a bar's history on click.
#[test]
fn the_dashboard_draws_an_alert_timeline_with_late_fires_and_retractions_live() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "",
        "[[alert]]\nname = \"hot\"\ninput = \"levels_1h\"\ncondition = \"sum >= 50\"\n",
    );
    let log = dir.path().join("serve.log");
    let server = serve(&config, &log);
    let event = |key: &str, t: i64, v: i64| format!("{{\"i\":\"{key}\",\"time\":{t},\"v\":{v}}}\n");
    let mut body = String::new();
    for h in 0..6 {
        body.push_str(&event(
            "d0",
            T0 + h * 3600 + 60,
            if h == 2 { 100 } else { 1 },
        ));
        body.push_str(&event(
            "d1",
            T0 + h * 3600 + 60,
            if h == 4 { 100 } else { 1 },
        ));
    }
    body.push_str(&event("d9", T0 + 10 * 3600, 1));
    let (status, out) = server.post("/v1/streams/levels/events", &body);
    assert_eq!(status, 200, "{out}");
    // Two episodes, both over: d0 at 02:00, d1 at 04:00.
    wait_for(30, "the episodes", || {
        server.get("/v1/pipelines/hot/windows")["windows"]
            .as_array()
            .is_some_and(|w| w.len() == 2 && w.iter().all(|e| e["values"]["state"] == "resolved"))
    });
    let (h0, h2) = (start(T0), start(T0 + 2 * 3600));
    let arg = serde_json::json!({
        "points": 1,
        "select": { "pipe": "hot", "key": "i=d0" },
        "steps": [
            // A late 100 at 00:10 fires d0 at 00:00, found late.
            { "path": "/v1/streams/levels/events", "body": event("d0", T0 + 600, 100),
              "until": format!("document.querySelector('#extra i.late[data-s=\"{h0}\"]')") },
            // A late −100 at 02:15 takes back d0's episode at 02:00.
            { "path": "/v1/streams/levels/events", "body": event("d0", T0 + 2 * 3600 + 900, -100),
              "until": format!("document.querySelector('#extra i.retracted[data-s=\"{h2}\"]')") },
            // A click on the late bar: its history.
            { "do": "document.querySelector('#extra i.late').dispatchEvent(new MouseEvent('click', { bubbles: true }))",
              "until": format!("document.querySelector('#detail table') && document.querySelector('#detail b').innerText.includes('{h0}')") },
        ],
        "values": {
            "rows": "[...document.querySelectorAll('#extra .row span')].map((s) => s.innerText)",
            "bars": "[...document.querySelectorAll('#extra i')].map((i) => i.className + ' ' + i.dataset.k + ' ' + i.dataset.s)",
            "revised": "reckon.state.plot.data[2].filter((v) => v != null).length",
            "detail": "document.querySelector('#detail').innerText",
        },
        "shot": "dashboard-alerts.png",
        "shots": std::env::var("RECKON_SCREENSHOTS").ok(),
    });
    let r = run_page(&server.base, &arg);
    let v = &r["values"];
    assert_eq!(v["rows"], serde_json::json!(["i=d0", "i=d1"]), "{r}");
    let mut bars: Vec<String> = v["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    bars.sort();
    assert_eq!(
        bars,
        [
            format!("resolved i=d1 {}", start(T0 + 4 * 3600)),
            format!("resolved late i=d0 {h0}"),
            format!("retracted i=d0 {h2}"),
        ],
        "{r}"
    );
    // On d0's chart, both of its episodes are revised points.
    assert_eq!(v["revised"], 2, "{r}");
    assert!(v["detail"].as_str().unwrap().contains("late"), "{r}");
    // The page's bars are the rule's stored episodes.
    let stored = server.get("/v1/pipelines/hot/windows");
    assert_eq!(stored["windows"].as_array().unwrap().len(), 3, "{stored}");
    server.stop();
}

/// A reconciliation in the dashboard (seed 001's files): its completeness per period
/// is the chart of the empty key, and a click on a period lists the ids reported
/// missing and those found late.
#[test]
fn the_dashboard_lists_a_reconciliation_periods_missing_and_found_ids() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = repo().join("examples/seed001");
    let toml = std::fs::read_to_string(seed.join("reckon.toml"))
        .unwrap()
        .replace(
            "path = \"reckon-seed001-data\"",
            &format!(
                "path = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"",
                dir.path().join("store").display()
            ),
        );
    let config = dir.path().join("reckon.toml");
    std::fs::write(&config, toml).unwrap();
    let log = dir.path().join("serve.log");
    let server = serve(&config, &log);
    for (stream, file) in [
        ("payments_audit", "audit.ndjson"),
        ("payments", "payments.ndjson"),
        ("payments", "late.ndjson"),
    ] {
        let body = std::fs::read_to_string(seed.join(file)).unwrap();
        let (status, out) = server.post(&format!("/v1/streams/{stream}/events"), &body);
        assert_eq!(status, 200, "{out}");
    }
    let period = "2024-05-01T10:00:00Z";
    let found = server.get(&format!(
        "/v1/pipelines/payments_recon/windows?key=id=p2&from={period}&to=2024-05-01T10:15:00Z"
    ));
    assert_eq!(found["windows"][0]["kind"], "found", "{found}");
    let arg = serde_json::json!({
        "points": 1,
        "select": { "pipe": "payments_recon", "key": "" },
        "history": period,
    });
    let r = run_page(&server.base, &arg);
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("found late: p2"), "{detail}");
    assert!(detail.contains("missing: none"), "{detail}");
    server.stop();
}
