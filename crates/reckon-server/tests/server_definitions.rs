//! Pipelines by API (`/v1/definitions`): streams, pipelines and alert rules defined,
//! replaced and deleted while the server runs, with `reckon.toml`'s schema as JSON and
//! its messages; a new pipeline starts from the stream's stored history; a different
//! definition starts fresh under a new identity (and so do the rules reading it), the
//! same one changes nothing; everything survives a restart; a tenant defines only its
//! own objects and sees no one else's.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_runtime::Config;
use reckon_server::AppOptions;
use serde_json::{Value as Json, json};

const FILE: &str = r#"
    [[stream]]
    name = "alarms"
    key_fields = ["station"]
    time_format = "rfc3339"
    max_future = "off"
"#;

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(&self, method: &str, path: &str, body: Option<Json>) -> (u16, Json) {
        self.call_as(method, path, body, None).await
    }

    async fn call_as(
        &self,
        method: &str,
        path: &str,
        body: Option<Json>,
        token: Option<&str>,
    ) -> (u16, Json) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Json::String(text)),
        )
    }

    async fn post(&self, stream: &str, lines: &[(&str, &str)]) {
        let body: String = lines
            .iter()
            .map(|(s, t)| format!(r#"{{"station":"{s}","time":"2024-03-01T{t}Z"}}"#) + "\n")
            .collect();
        let r = self
            .http
            .post(format!("{}/v1/streams/{stream}/events", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// `(station, start, count)` of every window of `pipeline`.
    async fn counts(&self, pipeline: &str) -> Vec<(String, String, i64)> {
        let (s, w) = self
            .call("GET", &format!("/v1/pipelines/{pipeline}/windows"), None)
            .await;
        assert_eq!(s, 200, "{w}");
        w["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["key"].as_str().unwrap().to_string(),
                    w["window"]["start"].as_str().unwrap().to_string(),
                    w["count"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

fn rate(size: &str) -> Json {
    json!({
        "stream": "alarms",
        "window": { "type": "tumbling", "size": size },
        "aggregates": [{ "fn": "count", "name": "n" }],
        "allowed_lateness": "1d",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_defined_while_running_start_from_history_replace_under_a_new_identity_and_survive_a_restart()
 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let server = common::serve(common::config(dir.path(), FILE), AppOptions::default()).await;
    let c = Client {
        base: server.url(""),
        http: reqwest::Client::new(),
    };
    // History before any pipeline reads the stream.
    c.post(
        "alarms",
        &[
            ("a", "10:01:00"),
            ("a", "10:20:00"),
            ("a", "10:40:00"),
            ("b", "10:05:00"),
            ("a", "11:10:00"),
        ],
    )
    .await;

    // Created: it starts from the stream's stored history.
    let (s, r) = c
        .call("PUT", "/v1/definitions/pipeline/rate", Some(rate("1h")))
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["status"], "created");
    assert_eq!(r["identity"], "rate");
    assert_eq!(r["started"], json!(["rate"]));
    let a10 = ("station=a".to_string(), "2024-03-01T10:00:00Z".to_string());
    let hourly = c.counts("rate").await;
    // The 11:00 hour is still open (the watermark is at 11:10).
    assert_eq!(
        hourly,
        [
            (a10.0.clone(), a10.1.clone(), 3),
            ("station=b".into(), a10.1.clone(), 1),
        ]
    );
    // A rule on it, also from what exists: station a's 10:00 hour has 3.
    let busy = json!({ "input": "rate", "condition": "n >= 3" });
    let (s, r) = c
        .call("PUT", "/v1/definitions/alert/busy", Some(busy.clone()))
        .await;
    assert_eq!(s, 201, "{r}");
    let (_, w) = c.call("GET", "/v1/pipelines/busy/windows", None).await;
    assert_eq!(w["windows"].as_array().unwrap().len(), 1, "{w}");
    assert_eq!(w["windows"][0]["window"]["start"], "2024-03-01T10:00:00Z");

    // The same definition again: nothing happens.
    let (s, r) = c
        .call("PUT", "/v1/definitions/pipeline/rate", Some(rate("1h")))
        .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("unchanged")), "{r}");
    assert_eq!(r["started"], json!([]));

    // Checked with the file's messages: the same text a reckon.toml with the same
    // definition gets.
    let mut bad = rate("1h");
    bad["stream"] = json!("nope");
    let (s, r) = c
        .call("PUT", "/v1/definitions/pipeline/broken", Some(bad))
        .await;
    assert_eq!(s, 422, "{r}");
    let file = Config::from_toml(&format!(
        "{FILE}\n[[pipeline]]\nname = \"broken\"\nstream = \"nope\"\nwindow = {{ type = \"tumbling\", size = \"1h\" }}\naggregates = [{{ fn = \"count\", name = \"n\" }}]\n"
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        format!("configuration: {}", r["error"].as_str().unwrap()),
        file,
        "{r}"
    );
    let mut typo = rate("1h");
    typo["windw"] = json!("1h");
    let (s, r) = c
        .call("PUT", "/v1/definitions/pipeline/broken", Some(typo))
        .await;
    assert_eq!(s, 422, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `windw`"),
        "{r}"
    );
    let (s, r) = c
        .call("PUT", "/v1/definitions/stream/alarms", Some(json!({})))
        .await;
    assert_eq!(s, 409, "{r}");
    assert!(r["error"].as_str().unwrap().contains("configuration file"));
    let (s, _) = c
        .call("PUT", "/v1/definitions/pipeline/a%2Fb", Some(rate("1h")))
        .await;
    assert_eq!(s, 400);
    let (s, _) = c.call("GET", "/v1/pipelines/broken/windows", None).await;
    assert_eq!(s, 404, "a refused definition runs nothing");

    // A different definition: it starts fresh as rate@2, and so does the rule reading it.
    let (s, r) = c
        .call("PUT", "/v1/definitions/pipeline/rate", Some(rate("30m")))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "replaced", "{r}");
    assert_eq!(r["identity"], "rate@2");
    assert_eq!(r["previous_identity"], "rate");
    assert_eq!(r["restarted"][0]["identity"], "busy@2", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("starts fresh as `rate@2`")
    );
    assert_eq!(r["stopped"], json!(["busy", "rate"]), "{r}");
    let half_hourly = c.counts("rate").await;
    assert_eq!(half_hourly, c.counts("rate@2").await);
    assert_eq!(
        half_hourly,
        [
            (a10.0.clone(), a10.1.clone(), 2),
            (a10.0.clone(), "2024-03-01T10:30:00Z".into(), 1),
            ("station=b".into(), a10.1.clone(), 1),
        ],
        "30-minute windows"
    );
    let (_, w) = c.call("GET", "/v1/pipelines/busy/windows", None).await;
    assert_eq!(w["windows"], json!([]), "no 30-minute window has 3: {w}");
    let (_, list) = c.call("GET", "/v1/pipelines", None).await;
    let names: Vec<&str> = list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"rate@2") && !names.contains(&"rate"),
        "{names:?}"
    );

    // A late event corrects the new identity; its feed names it.
    c.post("alarms", &[("a", "10:25:00"), ("a", "10:29:00")])
        .await;
    let (_, w) = c.call("GET", "/v1/pipelines/busy/windows", None).await;
    assert_eq!(w["windows"][0]["pipeline"].as_str(), Some("busy@2"), "{w}");
    let mut sse = c
        .http
        .get(c.base.clone() + "/v1/pipelines/rate/changes?since=0")
        .send()
        .await
        .unwrap();
    let mut feed = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(std::time::Duration::from_millis(300), sse.chunk()).await
    {
        feed.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(feed.contains(r#""pipeline":"rate@2""#), "{feed}");

    // A restart: the definitions run again, with what they had.
    let before = (c.counts("rate").await, c.counts("busy").await);
    server.shutdown().await;
    let server = common::serve(common::config(dir.path(), FILE), AppOptions::default()).await;
    let c = Client {
        base: server.url(""),
        http: reqwest::Client::new(),
    };
    assert_eq!((c.counts("rate").await, c.counts("busy").await), before);
    assert_eq!(before.1.len(), 1, "the late events fired busy@2");
    // The restart's replay finds the same episode (one event at a time, where the
    // first run had both late events in one batch) and does not restate it.
    let (_, h) = c
        .call(
            "GET",
            "/v1/pipelines/busy/history?key=station=a&start=2024-03-01T10:00:00Z",
            None,
        )
        .await;
    assert_eq!(h["versions"].as_array().unwrap().len(), 1, "{h}");
    let (_, defs) = c.call("GET", "/v1/definitions", None).await;
    let got: Vec<(String, String)> = defs["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["identity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alert".to_string(), "busy@2".to_string()),
            ("pipeline".into(), "rate@2".into())
        ]
    );
    let (s, d) = c.call("GET", "/v1/definitions/pipeline/rate", None).await;
    assert_eq!(s, 200);
    assert_eq!(d["definition"]["window"]["size"], "30m", "{d}");

    // Deleting: not while a rule reads it; then the rule, then the pipeline.
    let (s, r) = c
        .call("DELETE", "/v1/definitions/pipeline/rate", None)
        .await;
    assert_eq!(s, 409, "{r}");
    assert!(r["error"].as_str().unwrap().contains("busy"), "{r}");
    let (s, _) = c.call("DELETE", "/v1/definitions/alert/busy", None).await;
    assert_eq!(s, 200);
    let (s, r) = c
        .call("DELETE", "/v1/definitions/pipeline/rate", None)
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, _) = c.call("GET", "/v1/pipelines/rate/windows", None).await;
    assert_eq!(s, 404);
    let (s, _) = c
        .call("DELETE", "/v1/definitions/pipeline/rate", None)
        .await;
    assert_eq!(s, 404);
    // Defined again, it never meets an earlier generation's results.
    let (s, r) = c
        .call("PUT", "/v1/definitions/pipeline/rate", Some(rate("1h")))
        .await;
    assert_eq!((s, r["identity"].as_str()), (201, Some("rate@3")), "{r}");
    let counts = c.counts("rate").await;
    assert_eq!(counts[0], (a10.0.clone(), a10.1.clone(), 5), "{counts:?}");

    // A stream by API: events, a pipeline on it; deleted only once nothing reads it,
    // with its raw events.
    let (s, r) = c
        .call(
            "PUT",
            "/v1/definitions/stream/doors",
            Some(json!({ "key_fields": ["station"], "max_future": "off" })),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    c.post(
        "doors",
        &[("d", "09:00:00"), ("d", "09:10:00"), ("d", "10:30:00")],
    )
    .await;
    let mut opened = rate("1h");
    opened["stream"] = json!("doors");
    let (s, _) = c
        .call("PUT", "/v1/definitions/pipeline/opened", Some(opened))
        .await;
    assert_eq!(s, 201);
    assert_eq!(c.counts("opened").await[0].2, 2);
    let (s, r) = c.call("DELETE", "/v1/definitions/stream/doors", None).await;
    assert_eq!(s, 409, "{r}");
    let (s, _) = c
        .call("DELETE", "/v1/definitions/pipeline/opened", None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = c.call("DELETE", "/v1/definitions/stream/doors", None).await;
    assert_eq!(s, 200);
    let r = c
        .http
        .post(c.base.clone() + "/v1/streams/doors/events")
        .body(r#"{"station":"d","time":"2024-03-01T09:20:00Z"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(server.state.store().raw_scan("doors").unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_defines_its_own_objects_only_and_sees_no_one_elses() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let server = common::serve(common::config(dir.path(), FILE), AppOptions::default()).await;
    let c = Client {
        base: server.url(""),
        http: reqwest::Client::new(),
    };
    let token = |body: Json, admin: Option<String>| {
        let c = &c;
        async move {
            let (s, r) = c
                .call_as("POST", "/v1/tokens", Some(body), admin.as_deref())
                .await;
            assert_eq!(s, 201, "{r}");
            r["token"].as_str().unwrap().to_string()
        }
    };
    let root = token(json!({ "scopes": ["admin"] }), None).await;
    for t in ["acme", "globex"] {
        let (s, r) = c
            .call_as(
                "POST",
                "/v1/tenants",
                Some(json!({ "name": t })),
                Some(&root),
            )
            .await;
        assert_eq!(s, 201, "{r}");
    }
    let acme = token(
        json!({ "tenant": "acme", "scopes": ["admin"] }),
        Some(root.clone()),
    )
    .await;
    let globex = token(
        json!({ "tenant": "globex", "scopes": ["admin"] }),
        Some(root.clone()),
    )
    .await;
    let reader = token(
        json!({ "tenant": "acme", "scopes": ["read"] }),
        Some(root.clone()),
    )
    .await;

    // Each tenant defines a stream and a pipeline, both called the same.
    for (t, who) in [("acme", &acme), ("globex", &globex)] {
        let (s, r) = c
            .call_as(
                "PUT",
                "/v1/definitions/stream/alarms",
                Some(json!({ "key_fields": ["station"], "max_future": "off" })),
                Some(who),
            )
            .await;
        assert_eq!(s, 201, "{t}: {r}");
        let (s, r) = c
            .call_as(
                "PUT",
                "/v1/definitions/pipeline/rate",
                Some(rate("1h")),
                Some(who),
            )
            .await;
        assert_eq!(s, 201, "{t}: {r}");
        assert_eq!(r["identity"], "rate", "{r}");
    }
    let r = c
        .http
        .post(c.base.clone() + "/v1/streams/alarms/events")
        .bearer_auth(&acme)
        .body(
            "{\"station\":\"ACME-1\",\"time\":\"2024-03-01T10:00:00Z\"}\n\
             {\"station\":\"ACME-2\",\"time\":\"2024-03-01T12:00:00Z\"}",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Globex's pipeline of the same name has nothing of acme's; its listing only its own.
    let (_, w) = c
        .call_as("GET", "/v1/pipelines/rate/windows", None, Some(&globex))
        .await;
    assert_eq!(w["windows"], json!([]), "{w}");
    let (_, w) = c
        .call_as("GET", "/v1/pipelines/rate/windows", None, Some(&acme))
        .await;
    assert_eq!(w["windows"][0]["key"], "station=ACME-1", "{w}");
    let (_, defs) = c
        .call_as("GET", "/v1/definitions", None, Some(&globex))
        .await;
    assert_eq!(defs["definitions"].as_array().unwrap().len(), 2, "{defs}");
    assert!(!defs.to_string().contains("acme"), "{defs}");
    // Another tenant's definitions are not there for it, by any name.
    for path in [
        "/v1/definitions?tenant=acme",
        "/v1/definitions/pipeline/acme%2Frate",
        "/v1/definitions/pipeline/rate?tenant=acme",
    ] {
        let (s, r) = c.call_as("GET", path, None, Some(&globex)).await;
        assert_eq!(s, 404, "{path}: {r}");
        assert!(!r.to_string().contains("ACME"), "{r}");
    }
    let (s, _) = c
        .call_as(
            "DELETE",
            "/v1/definitions/pipeline/rate?tenant=acme",
            None,
            Some(&globex),
        )
        .await;
    assert_eq!(s, 404);
    // A tenant cannot read another's stream from its definition either.
    let mut theirs = rate("1h");
    theirs["stream"] = json!("acme/alarms");
    let (s, r) = c
        .call_as(
            "PUT",
            "/v1/definitions/pipeline/spy",
            Some(theirs),
            Some(&globex),
        )
        .await;
    assert_eq!(s, 422, "{r}");
    assert!(r["error"].as_str().unwrap().contains("`/`"), "{r}");
    // A reader reads definitions but does not make them.
    let (s, r) = c
        .call_as(
            "PUT",
            "/v1/definitions/pipeline/x",
            Some(rate("1h")),
            Some(&reader),
        )
        .await;
    assert_eq!(s, 403, "{r}");
    let (s, _) = c
        .call_as("GET", "/v1/definitions", None, Some(&reader))
        .await;
    assert_eq!(s, 200);
    // The operator sees every tenant's, with their tenant.
    let (_, all) = c.call_as("GET", "/v1/definitions", None, Some(&root)).await;
    let owners: Vec<&str> = all["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 4, "{all}");
    assert!(owners.contains(&"acme") && owners.contains(&"globex"));
    server.shutdown().await;
}
