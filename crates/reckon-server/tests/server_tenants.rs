//! Tenants and tokens over HTTP: single-user mode until the first (admin) token, then
//! 401 without a valid token, 403 outside a token's scopes, and no route (every one the
//! router has, the change feed and metrics included) that shows one tenant another's
//! data or names.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

mod common;

use reckon_core::ProcessingTime;
use reckon_server::AppOptions;
use reckon_server::clock::Clock;
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug)]
struct SetClock(AtomicI64);

impl Clock for SetClock {
    fn now(&self) -> ProcessingTime {
        ProcessingTime(self.0.load(Ordering::SeqCst))
    }
}

/// 2024-03-01 12:00 UTC.
const START: i64 = 1_709_294_400_000_000_000;

/// Two tenants with the same names (`alarms`, `rate`, `net`, `ops`), one more pipeline
/// of acme's, on top of the operator's own `water_level`/`mean_1h` of `common::config`.
fn tenant_objects(t: &str, hook: &str) -> String {
    format!(
        r#"
        [[stream]]
        name = "alarms"
        tenant = "{t}"
        key_fields = ["station"]
        time_format = "rfc3339"
        [[stream]]
        name = "audit"
        tenant = "{t}"
        key_fields = ["station"]
        time_format = "rfc3339"
        [[pipeline]]
        name = "rate"
        tenant = "{t}"
        stream = "alarms"
        window = {{ type = "tumbling", size = "5m" }}
        aggregates = [{{ fn = "count" }}, {{ fn = "sum", field = "value" }}]
        out_of_orderness = "0s"
        allowed_lateness = "1d"
        [[running_total]]
        name = "net"
        tenant = "{t}"
        stream = "alarms"
        bucket = "1m"
        value = "value"
        [[webhook]]
        name = "ops"
        tenant = "{t}"
        url = "{hook}/{t}"
        format = "json"
        notify = "all"
        digest_interval = "0s"
        max_attempts = 1
        "#
    )
}

const ACME_ONLY: &str = r#"
[[pipeline]]
name = "acme_private"
tenant = "acme"
stream = "audit"
window = { type = "tumbling", size = "1h" }
aggregates = [{ fn = "count" }]
"#;

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or(Json::Null)
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
        self.call_as(method, path, token.map(|t| format!("Bearer {t}")), body)
            .await
    }

    async fn call_as(
        &self,
        method: &str,
        path: &str,
        authorization: Option<String>,
        body: &str,
    ) -> Reply {
        let mut r = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        if !body.is_empty() {
            r = r.body(body.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Reads a change feed as server-sent events for `ms` milliseconds.
    async fn sse(&self, path: &str, token: &str, ms: u64) -> (u16, String) {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, resp.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        (status, text)
    }

    async fn token(&self, admin: Option<&str>, body: Json) -> String {
        let r = self
            .call("POST", "/v1/tokens", admin, &body.to_string())
            .await;
        assert_eq!(r.status, 201, "{body}: {}", r.body);
        r.json()["token"].as_str().unwrap().to_string()
    }
}

/// Everything acme has that globex must never see: its data and its own names.
const ACME_SECRETS: &[&str] = &["ACME-SECRET", "acme/", "acme_private", "7777.25"];
/// The operator's objects, which no tenant sees either.
const OPERATOR_NAMES: &[&str] = &["water_level", "mean_1h", "rfc_sum"];

/// Fails if `reply` (to a request of globex's for `path`) shows anything of acme's or of
/// the operator's, except what the request itself named.
fn assert_no_leak(path: &str, reply: &Reply) {
    let path = path.replace("%2F", "/");
    for s in ACME_SECRETS.iter().chain(OPERATOR_NAMES) {
        if path.contains(s) {
            continue;
        }
        assert!(
            !reply.body.contains(s),
            "{path} shows `{s}` to another tenant: {}",
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_keeps_tenants_apart_and_tokens_in_their_scopes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SetClock(AtomicI64::new(START)));
    // A receiver of both tenants' webhooks, keeping each message by tenant.
    let got: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let hook = {
        let got = got.clone();
        let app = axum::Router::new().route(
            "/hook/{t}",
            axum::routing::post(
                move |axum::extract::Path(t): axum::extract::Path<String>, body: String| {
                    let got = got.clone();
                    async move { got.lock().unwrap().push((t, body)) }
                },
            ),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/hook")
    };
    let extra = format!(
        "{}{}{ACME_ONLY}",
        tenant_objects("acme", &hook),
        tenant_objects("globex", &hook)
    );
    let server = common::serve(
        common::config(dir.path(), &extra),
        AppOptions {
            clock: clock.clone(),
            ..AppOptions::default()
        },
    )
    .await;
    let c = Client {
        http: reqwest::Client::new(),
        base: server.url(""),
    };

    // Single-user mode: open to this (loopback) client; the first token must be admin.
    assert_eq!(c.call("GET", "/v1/pipelines", None, "").await.status, 200);
    let r = c
        .call(
            "POST",
            "/v1/tokens",
            None,
            r#"{"tenant":"acme","scopes":["read"]}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("first token must be an operator"),
        "{}",
        r.body
    );
    let admin = c.token(None, json!({"scopes": ["admin"]})).await;
    assert!(admin.starts_with("rk_") && admin.len() == 51, "{admin}");

    // Authentication is on: no token, a wrong one, a wrong scheme are 401.
    let r = c.call("GET", "/v1/pipelines", None, "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"reckon\"");
    assert_eq!(
        c.call("GET", "/v1/pipelines", Some("rk_nope"), "")
            .await
            .status,
        401
    );
    let basic = c
        .call_as("GET", "/v1/pipelines", Some(format!("Basic {admin}")), "")
        .await;
    assert_eq!(basic.status, 401, "{}", basic.body);
    // Health checks stay open, without the server-wide change count.
    let h = c.call("GET", "/healthz", None, "").await;
    assert_eq!(
        (h.status, h.json().get("last_change")),
        (200, None),
        "{}",
        h.body
    );
    assert_eq!(c.call("GET", "/ping", None, "").await.status, 204);

    // The operator makes the tenants and their tokens.
    for t in ["acme", "globex"] {
        let r = c
            .call(
                "POST",
                "/v1/tenants",
                Some(&admin),
                &json!({ "name": t }).to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let again = c
        .call("POST", "/v1/tenants", Some(&admin), r#"{"name":"acme"}"#)
        .await;
    assert_eq!(again.status, 409);
    let unknown = c
        .call(
            "POST",
            "/v1/tokens",
            Some(&admin),
            r#"{"tenant":"initech","scopes":["read"]}"#,
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let acme_admin = c
        .token(Some(&admin), json!({"tenant": "acme", "scopes": ["admin"]}))
        .await;
    let acme = c
        .token(Some(&acme_admin), json!({"scopes": ["read", "write"]}))
        .await;
    let globex = c
        .token(
            Some(&admin),
            json!({"tenant": "globex", "scopes": ["read", "write"]}),
        )
        .await;
    let globex_admin = c
        .token(
            Some(&admin),
            json!({"tenant": "globex", "scopes": ["admin"]}),
        )
        .await;
    let acme_writer = c
        .token(Some(&acme_admin), json!({"scopes": ["write:alarms"]}))
        .await;
    let acme_rate_reader = c
        .token(Some(&acme_admin), json!({"scopes": ["read:rate"]}))
        .await;
    let short = c
        .token(
            Some(&acme_admin),
            json!({"scopes": ["read"], "expires_in": "1m"}),
        )
        .await;

    // Acme defines a pipeline over the API too (`docs/definitions.md`).
    let r = c
        .call(
            "PUT",
            "/v1/definitions/pipeline/acme_private_api",
            Some(&acme_admin),
            r#"{"stream": "audit", "window": {"type": "tumbling", "size": "1h"}, "aggregates": [{"fn": "count"}]}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Each tenant writes its own `alarms` (acme also dead-letters one from the future,
    // and InfluxDB's `Token` scheme works for line protocol).
    let post = |token: &str, stream: &str, body: &str| {
        let (c, token, path, body) = (
            &c,
            token.to_string(),
            format!("/v1/streams/{stream}/events"),
            body.to_string(),
        );
        async move { c.call("POST", &path, Some(&token), &body).await }
    };
    let r = post(
        &acme,
        "alarms",
        concat!(
            r#"{"station":"ACME-SECRET-1","time":"2024-03-01T10:00:00Z","value":7777.25}"#,
            "\n",
            r#"{"station":"ACME-SECRET-1","time":"2024-03-01T11:00:00Z","value":1}"#,
            "\n",
            r#"{"station":"ACME-SECRET-1","time":"2024-03-09T11:00:00Z","value":1}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c
        .call_as(
            "POST",
            "/api/v2/write?bucket=audit&precision=s",
            Some(format!("Token {acme}")),
            "audit,station=ACME-SECRET-2 value=7777.25 1709287200",
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = post(
        &globex,
        "alarms",
        concat!(
            r#"{"station":"G-1","time":"2024-03-01T10:01:00Z","value":7}"#,
            "\n",
            r#"{"station":"G-1","time":"2024-03-01T11:00:00Z","value":7}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A late one: a correction the webhooks and the feed carry.
    let r = post(
        &acme,
        "alarms",
        r#"{"station":"ACME-SECRET-1","time":"2024-03-01T10:02:00Z","value":7777.25}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Globex cannot write into acme's stream by naming it (nor the operator's).
    for stream in ["acme%2Falarms", "water_level"] {
        let r = post(
            &globex,
            stream,
            r#"{"station":"G","time":"2024-03-01T10:00:00Z"}"#,
        )
        .await;
        assert_eq!(r.status, 404, "{stream}: {}", r.body);
        assert_no_leak(stream, &r);
    }
    let r = c
        .call_as(
            "POST",
            "/api/v2/write?bucket=acme%2Faudit",
            Some(format!("Token {globex}")),
            "audit,station=G value=1 1709287200",
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Acme sees its own data under its own names.
    let w = c
        .call("GET", "/v1/pipelines/rate/windows", Some(&acme), "")
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    assert!(w.body.contains("ACME-SECRET-1"), "{}", w.body);
    assert_eq!(w.json()["windows"][0]["pipeline"], "rate", "{}", w.body);
    let list = c.call("GET", "/v1/pipelines", Some(&acme), "").await.json();
    let mut names: Vec<&str> = list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["acme_private", "acme_private_api", "net", "rate"],
        "{list}"
    );
    let dl = c
        .call("GET", "/v1/streams/alarms/dead_letters", Some(&acme), "")
        .await;
    // One per pipeline reading the stream (rate and net).
    assert_eq!(dl.json()["total"], 2, "{}", dl.body);
    let m = c.call("GET", "/metrics", Some(&acme), "").await;
    assert!(
        m.body
            .contains(r#"reckon_events_accepted_total{stream="alarms"}"#),
        "{}",
        m.body
    );
    assert!(!m.body.contains("globex") && !m.body.contains("water_level"));
    // The operator sees every tenant under stored names.
    let all = c.call("GET", "/v1/pipelines", Some(&admin), "").await;
    assert!(all.body.contains("\"acme/rate\"") && all.body.contains("\"globex/rate\""));
    let op = c
        .call("GET", "/v1/pipelines/acme%2Frate/windows", Some(&admin), "")
        .await;
    assert!(op.body.contains("ACME-SECRET-1"), "{}", op.body);

    // Let the webhooks record their (failed) deliveries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = c
            .call("GET", "/v1/webhooks/ops/deliveries", Some(&acme), "")
            .await;
        let g = c
            .call("GET", "/v1/webhooks/ops/deliveries", Some(&globex), "")
            .await;
        if !d.json()["deliveries"].as_array().unwrap().is_empty()
            && !g.json()["deliveries"].as_array().unwrap().is_empty()
        {
            assert_no_leak("", &g);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no deliveries: {}",
            d.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Each tenant's webhook told it of its own windows, named as it names them.
    let messages = got.lock().unwrap().clone();
    for t in ["acme", "globex"] {
        let bodies: Vec<&String> = messages
            .iter()
            .filter(|(w, _)| w == t)
            .map(|(_, b)| b)
            .collect();
        assert!(!bodies.is_empty(), "no message to {t}");
        for b in bodies {
            assert!(
                b.contains(r#""pipeline":"rate""#) || b.contains(r#""pipeline":"net""#),
                "{b}"
            );
            assert!(
                !b.contains("acme/") && !b.contains("globex/"),
                "stored names: {b}"
            );
            assert_eq!(b.contains("ACME-SECRET"), t == "acme", "{t} got {b}");
        }
    }

    // Every route of the router, asked by globex for its own names and for acme's and
    // the operator's: its own answers hold nothing of acme's; the others are 404 (or
    // 403 for the admin routes) and name nothing of acme's either.
    let routes: &[(&str, &str, &str)] = &[
        (
            "POST",
            "/v1/streams/{stream}/events",
            r#"{"station":"G-1","time":"2024-03-01T10:03:00Z"}"#,
        ),
        ("GET", "/v1/streams/{stream}/dead_letters", ""),
        ("GET", "/v1/pipelines", ""),
        ("GET", "/v1/pipelines/{pipeline}/windows", ""),
        (
            "GET",
            "/v1/pipelines/{pipeline}/windows?as_of=2024-03-01T12:00:00Z",
            "",
        ),
        (
            "GET",
            "/v1/pipelines/{pipeline}/history?key=station=ACME-SECRET-1&start=2024-03-01T10:00:00Z",
            "",
        ),
        (
            "GET",
            "/v1/pipelines/{pipeline}/history?key=station=G-1&start=2024-03-01T10:00:00Z",
            "",
        ),
        ("GET", "/v1/pipelines/{pipeline}/changes?since=0", ""),
        (
            "GET",
            "/v1/pipelines/{total}/total?key=station=ACME-SECRET-1",
            "",
        ),
        ("GET", "/v1/pipelines/{total}/total?key=station=G-1", ""),
        ("GET", "/v1/pipelines/{pipeline}/backfill", ""),
        ("GET", "/v1/pipelines/{pipeline}/changed?since=0", ""),
        ("GET", "/v1/backfills", ""),
        ("GET", "/v1/sources", ""),
        ("GET", "/v1/sinks", ""),
        (
            "POST",
            "/v1/rules/backfill",
            r#"{"input": "rate", "condition": "count >= 1"}"#,
        ),
        ("GET", "/v1/webhooks", ""),
        ("GET", "/v1/webhooks/{webhook}/deliveries", ""),
        ("GET", "/metrics", ""),
        ("GET", "/v1/tenants", ""),
        ("GET", "/v1/tenants/{tenant}/usage", ""),
        (
            "PUT",
            "/v1/tenants/{tenant}/quotas",
            r#"{"events_per_second":1}"#,
        ),
        ("POST", "/v1/tenants", r#"{"name":"globex2"}"#),
        ("GET", "/v1/tokens", ""),
        (
            "POST",
            "/v1/tokens",
            r#"{"tenant":"acme","scopes":["read"]}"#,
        ),
        ("DELETE", "/v1/tokens/{token}", ""),
        ("GET", "/v1/definitions?tenant={tenant}", ""),
        (
            "GET",
            "/v1/definitions/{kind}/{pipeline}?tenant={tenant}",
            "",
        ),
        (
            "PUT",
            "/v1/definitions/{kind}/{pipeline}?tenant={tenant}",
            r#"{"stream": "alarms", "window": {"type": "tumbling", "size": "1h"}, "aggregates": [{"fn": "count"}]}"#,
        ),
        (
            "DELETE",
            "/v1/definitions/{kind}/{pipeline}?tenant={tenant}",
            "",
        ),
        (
            "POST",
            "/api/v2/write?bucket={stream}&precision=s",
            "alarms,station=G-1 value=1 1709287300",
        ),
        ("GET", "/", ""),
        ("GET", "/ui/{file}", ""),
        ("GET", "/healthz", ""),
        ("GET", "/health", ""),
        ("GET", "/ping", ""),
        ("GET", "/no/such/route", ""),
    ];
    let acme_token_id = {
        let t = c
            .call("GET", "/v1/tokens", Some(&acme_admin), "")
            .await
            .json();
        t["tokens"][0]["id"].as_str().unwrap().to_string()
    };
    for (method, template, body) in routes {
        let own = template
            .replace("{stream}", "alarms")
            .replace("{pipeline}", "rate")
            .replace("{total}", "net")
            .replace("{webhook}", "ops")
            .replace("{tenant}", "globex")
            .replace("{kind}", "pipeline")
            .replace("{token}", "0123456789ab")
            .replace("{file}", "app.js");
        let token = if template.starts_with("/v1/tokens")
            || template.starts_with("/v1/tenants")
            || template.starts_with("/v1/definitions")
        {
            &globex_admin
        } else {
            &globex
        };
        let r = c.call(method, &own, Some(token), body).await;
        assert!(r.status < 500, "{method} {own}: {}", r.body);
        assert_no_leak(&own, &r);
        for (theirs, stream) in [
            ("acme%2F", "acme%2Falarms"),
            ("", "water_level"),
            ("", "audit_of_acme"),
        ] {
            let other = template
                .replace("{stream}", stream)
                .replace("{pipeline}", &format!("{theirs}acme_private"))
                .replace("{total}", &format!("{theirs}net_of_acme"))
                .replace("{webhook}", &format!("{theirs}ops_of_acme"))
                .replace("{tenant}", "acme")
                .replace("{kind}", "pipeline")
                .replace("{token}", &acme_token_id)
                .replace("{file}", "app.js");
            if other == own && !template.contains("tokens") {
                continue;
            }
            let r = c.call(method, &other, Some(token), body).await;
            assert_no_leak(&other, &r);
            if template.contains('{') || other.contains("tokens") && *method != "GET" {
                assert!(
                    [403, 404].contains(&r.status),
                    "{method} {other} by globex: {} {}",
                    r.status,
                    r.body
                );
            }
        }
        // The change feed as server-sent events, for a while.
        if template.contains("/changes") {
            let (s, text) = c.sse(&own, &globex, 500).await;
            assert_eq!(s, 200);
            assert!(text.contains("G-1"), "{text}");
            assert_no_leak(
                &own,
                &Reply {
                    status: s,
                    headers: Default::default(),
                    body: text,
                },
            );
            let (s, _) = c
                .sse("/v1/pipelines/acme%2Frate/changes", &globex, 100)
                .await;
            assert_eq!(s, 404);
        }
    }
    // The list covers every route the router has (a multi-line `.route(` call has its
    // path on the next line).
    let shape = |path: &str| -> String {
        let path = path.split('?').next().unwrap_or(path);
        path.split('/')
            .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    };
    let lib = include_str!("../src/lib.rs");
    let lines: Vec<&str> = lib.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.contains(".route(") {
            continue;
        }
        let path = match line.split('"').nth(1) {
            Some(p) => p,
            None => lines[i + 1].split('"').nth(1).unwrap(),
        };
        assert!(
            routes.iter().any(|(_, t, _)| shape(t) == shape(path)),
            "route {path} is not in this test's list"
        );
    }

    // Scopes: a writer cannot read results, a reader of one pipeline only that one, a
    // tenant's admin manages only its tenant; 403 each time.
    let r = c
        .call("GET", "/v1/pipelines/rate/windows", Some(&acme_writer), "")
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("write:alarms"), "{}", r.body);
    let r = post(
        &acme_writer,
        "audit",
        r#"{"station":"x","time":"2024-03-01T10:00:00Z"}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(
        &acme_rate_reader,
        "alarms",
        r#"{"station":"x","time":"2024-03-01T10:00:00Z"}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        c.call(
            "GET",
            "/v1/pipelines/rate/windows",
            Some(&acme_rate_reader),
            ""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.call(
            "GET",
            "/v1/pipelines/net/total?key=station=x",
            Some(&acme_rate_reader),
            ""
        )
        .await
        .status,
        403
    );
    let listed = c
        .call("GET", "/v1/pipelines", Some(&acme_rate_reader), "")
        .await
        .json();
    assert_eq!(listed["pipelines"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        c.call("GET", "/metrics", Some(&acme_rate_reader), "")
            .await
            .status,
        403
    );
    for (m, p, b) in [
        ("POST", "/v1/tenants", r#"{"name":"x"}"#),
        (
            "POST",
            "/v1/tokens",
            r#"{"tenant":"globex","scopes":["read"]}"#,
        ),
        ("POST", "/v1/tokens", r#"{"scopes":["read"]}"#),
    ] {
        let who = if b.contains("globex") {
            &acme_admin
        } else {
            &acme
        };
        let r = c.call(m, p, Some(who), b).await;
        assert_eq!(r.status, 403, "{m} {p} {b}: {}", r.body);
    }
    let tokens = c
        .call("GET", "/v1/tokens", Some(&acme_admin), "")
        .await
        .json();
    let tenants: Vec<&Json> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["tenant"])
        .collect();
    assert!(tenants.iter().all(|t| *t == "acme"), "{tokens}");
    assert!(
        !tokens.to_string().contains("rk_"),
        "no secrets listed: {tokens}"
    );

    // Expiry and revocation take effect at once.
    assert_eq!(
        c.call("GET", "/v1/pipelines", Some(&short), "")
            .await
            .status,
        200
    );
    clock.0.store(START + 61_000_000_000, Ordering::SeqCst);
    let r = c.call("GET", "/v1/pipelines", Some(&short), "").await;
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("expired at 2024-03-01T12:01:00Z"),
        "{}",
        r.body
    );
    let id = c
        .call("GET", "/v1/tokens", Some(&acme_admin), "")
        .await
        .json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scopes"] == json!(["read", "write"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .call(
            "DELETE",
            &format!("/v1/tokens/{id}"),
            Some(&globex_admin),
            "",
        )
        .await;
    assert_eq!(r.status, 404, "another tenant's token: {}", r.body);
    let r = c
        .call("DELETE", &format!("/v1/tokens/{id}"), Some(&acme_admin), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        c.call("GET", "/v1/pipelines", Some(&acme), "").await.status,
        401
    );

    // Tokens and tenants survive a restart (only hashes are stored).
    server.shutdown().await;
    let server = common::serve(
        common::config(dir.path(), &extra),
        AppOptions {
            clock: clock.clone(),
            ..AppOptions::default()
        },
    )
    .await;
    let c = Client {
        http: reqwest::Client::new(),
        base: server.url(""),
    };
    assert_eq!(c.call("GET", "/v1/pipelines", None, "").await.status, 401);
    assert_eq!(
        c.call("GET", "/v1/pipelines", Some(&globex), "")
            .await
            .status,
        200
    );
    assert_eq!(
        c.call("GET", "/v1/pipelines", Some(&acme), "").await.status,
        401
    );
    let w = c
        .call("GET", "/v1/pipelines/rate/windows", Some(&globex), "")
        .await;
    assert!(
        w.body.contains("G-1") && !w.body.contains("ACME"),
        "{}",
        w.body
    );
    server.shutdown().await;
}
