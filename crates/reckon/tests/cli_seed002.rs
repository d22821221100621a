//! Seed 002 end to end (`examples/seed002/run.sh`) against the real binary and a real
//! Delta table written by the Python `deltalake` package: three days, nothing late; late
//! rows into the first day and a compaction of the second: the plan lists only the first
//! day, in the seed's JSON shape, with `lastProcessedVersion` advanced; planning again
//! finds nothing. And the plan and its cursor are one commit: a `reckon backfill plan`
//! killed with SIGKILL at any moment leaves the cursor naming a stored plan.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reckon_testkit::python::{deltalake as python, repo};

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
    let planner = |since: u64| {
        Command::new(env!("CARGO_BIN_EXE_reckon"))
            .args(["backfill", "plan", "--table"])
            .arg(&table)
            .arg("--store")
            .arg(&store)
            .args(["--since-version", &since.to_string()])
            .env("RECKON_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long one plan takes here: the kills land anywhere in up to 1.5 times that.
    let mut quickest = u64::MAX;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        assert!(planner(0).wait().unwrap().success());
        quickest = quickest.min(t.elapsed().as_millis() as u64);
    }
    let span = (quickest * 3 / 2).max(2);
    let mut rng = reckon_testkit::SplitMix64::new(11);
    let (mut killed, mut finished) = (0, 0);
    for round in 0..60 {
        let mut child = planner(rng.below(7));
        std::thread::sleep(Duration::from_millis(rng.below(span)));
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
        killed >= 2 && finished >= 2,
        "killed {killed}, finished {finished}"
    );
}

/// What the fake Airflow was asked: (method, path, authorization, body).
type Asked = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String, serde_json::Value)>>>;

/// A stand-in for Airflow 3's stable REST API: triggering a DAG run answers 200 (503
/// the first time for partition 2024-01-02); a DAG run's state is `success`.
async fn fake_airflow() -> (String, Asked) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    let asked: Asked = Asked::default();
    let post = |State(a): State<Asked>,
                UrlPath(dag): UrlPath<String>,
                h: HeaderMap,
                body: String| async move {
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let auth = h
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let mut a = a.lock().unwrap();
        let first_of_day2 = body["conf"]["partition"] == "2024-01-02"
            && !a
                .iter()
                .any(|(m, _, _, b)| m == "POST" && b["conf"]["partition"] == "2024-01-02");
        a.push((
            "POST".into(),
            format!("/api/v2/dags/{dag}/dagRuns"),
            auth,
            body.clone(),
        ));
        if first_of_day2 {
            return (StatusCode::SERVICE_UNAVAILABLE, "busy".to_string());
        }
        (
            StatusCode::OK,
            serde_json::json!({"dag_run_id": body["dag_run_id"], "state": "queued"}).to_string(),
        )
    };
    let get = |State(a): State<Asked>, UrlPath((dag, run)): UrlPath<(String, String)>| async move {
        a.lock().unwrap().push((
            "GET".into(),
            format!("/api/v2/dags/{dag}/dagRuns/{run}"),
            String::new(),
            serde_json::Value::Null,
        ));
        serde_json::json!({"dag_run_id": run, "state": "success"}).to_string()
    };
    let app = axum::Router::new()
        .route("/api/v2/dags/{dag}/dagRuns", axum::routing::post(post))
        .route("/api/v2/dags/{dag}/dagRuns/{run}", axum::routing::get(get))
        .with_state(asked.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), asked)
}

fn reckon(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(args)
        .env("RECKON_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn statuses(j: &serde_json::Value) -> Vec<(String, String, u64)> {
    j["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_partitions_trigger_airflow_dag_runs_tracked_to_done() {
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
    let (t, s) = (table.to_str().unwrap(), store.to_str().unwrap());
    let p = reckon(&[
        "backfill",
        "plan",
        "--table",
        t,
        "--store",
        s,
        "--since-version",
        "2",
    ]);
    assert_eq!(
        p["partitions"],
        serde_json::json!(["2024-01-01", "2024-01-02"])
    );
    let (url, asked) = fake_airflow().await;
    let (s_owned, url_owned) = (s.to_string(), url.clone());
    let trigger = move || {
        reckon(&[
            "backfill",
            "trigger",
            "--name",
            "t",
            "--store",
            &s_owned,
            "--airflow",
            &url_owned,
            "--dag",
            "backfill_devices",
            "--airflow-token",
            "secret-token",
        ])
    };
    // First: day 1 triggered; day 2's trigger refused (503): failed, to be retried.
    let first = tokio::task::spawn_blocking(trigger.clone()).await.unwrap();
    assert_eq!(
        statuses(&first),
        [
            ("2024-01-01".to_string(), "triggered".to_string(), 1),
            ("2024-01-02".into(), "failed".into(), 1)
        ]
    );
    {
        let a = asked.lock().unwrap();
        let (m, path, auth, body) = &a[0];
        assert_eq!(
            (m.as_str(), path.as_str()),
            ("POST", "/api/v2/dags/backfill_devices/dagRuns")
        );
        assert_eq!(auth, "Bearer secret-token");
        assert_eq!(body["logical_date"], "2024-01-01T00:00:00Z");
        assert_eq!(body["dag_run_id"], "reckon__t__2024-01-01__v7");
        assert_eq!(body["conf"]["partition"], "2024-01-01");
        assert_eq!(body["conf"]["lastProcessedVersion"], 7);
    }
    // Second: day 1's run polled (success: done); day 2 retried: triggered.
    let second = tokio::task::spawn_blocking(trigger.clone()).await.unwrap();
    assert_eq!(
        statuses(&second),
        [
            ("2024-01-01".to_string(), "done".to_string(), 1),
            ("2024-01-02".into(), "triggered".into(), 2)
        ]
    );
    let third = tokio::task::spawn_blocking(trigger).await.unwrap();
    assert_eq!(
        statuses(&third),
        [
            ("2024-01-01".to_string(), "done".to_string(), 1),
            ("2024-01-02".into(), "done".into(), 2)
        ]
    );
    let posts = asked
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.0 == "POST")
        .count();
    assert_eq!(posts, 3, "a done run is never triggered again");
    // The runs are in the store with the cursor and plans.
    let status = reckon(&["backfill", "status", "--store", s]);
    assert_eq!(status["tables"]["t"]["runs"].as_array().unwrap().len(), 2);

    // A command instead: it gets the partition in its environment.
    let log = dir.path().join("runs.txt");
    let p = reckon(&[
        "backfill",
        "plan",
        "--table",
        t,
        "--store",
        s,
        "--name",
        "u",
        "--since-version",
        "2",
    ]);
    assert_eq!(p["name"], "u");
    let cmd = format!(
        "echo \"$RECKON_PARTITION $RECKON_VERSION\" >> {}",
        log.display()
    );
    let done = reckon(&[
        "backfill",
        "trigger",
        "--name",
        "u",
        "--store",
        s,
        "--command",
        "sh",
        "-c",
        &cmd,
    ]);
    assert_eq!(
        statuses(&done),
        [
            ("2024-01-01".to_string(), "done".to_string(), 1),
            ("2024-01-02".into(), "done".into(), 1)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "2024-01-01 7\n2024-01-02 7\n"
    );

    // A webhook: one CloudEvent per partition.
    let events: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>> =
        Default::default();
    let e = events.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |h: axum::http::HeaderMap, body: String| {
            let e = e.clone();
            async move {
                let ct = h
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                e.lock()
                    .unwrap()
                    .push((ct, serde_json::from_str(&body).unwrap()));
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/events", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    reckon(&[
        "backfill",
        "plan",
        "--table",
        t,
        "--store",
        s,
        "--name",
        "w",
        "--since-version",
        "2",
    ]);
    let (s2, hook2) = (s.to_string(), hook.clone());
    let sent = tokio::task::spawn_blocking(move || {
        reckon(&[
            "backfill",
            "trigger",
            "--name",
            "w",
            "--store",
            &s2,
            "--webhook",
            &hook2,
        ])
    })
    .await
    .unwrap();
    assert_eq!(
        statuses(&sent),
        [
            ("2024-01-01".to_string(), "done".to_string(), 1),
            ("2024-01-02".into(), "done".into(), 1)
        ]
    );
    let got = events.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "application/cloudevents+json");
    let ev = &got[0].1;
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["type"], "dev.reckon.backfill.partition");
    assert_eq!(ev["source"], "reckon/backfill/w");
    assert_eq!(ev["subject"], "2024-01-01");
    assert_eq!(ev["data"]["lastProcessedVersion"], 7);
}
