//! The bad-input corpus: every case a new user (or a fuzzer) tripped on, replayed
//! through the router. Each row says what the server must answer (status and the
//! stable parts of the error text: line numbers and field names) and how many of the
//! request's good events must be stored; after every row the server must still be
//! healthy and take a good event.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use reckon_server::{App, AppOptions};
use tower::ServiceExt;

/// Event times near the server's clock: a pipeline whose watermark stalls advances
/// it by processing time, so 1970 times would be (rightly) beyond retention.
fn base() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    now - 2 * 3_600_000_000_000
}

/// One row of the corpus.
struct Case {
    /// Also the key (`i=<name>`) of the row's good events, so they can be counted.
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// Every one of these must appear in the answer's body.
    says: &'static [&'static str],
    /// Good events of this row stored in the raw log afterwards (key `i=<name>`).
    stored: usize,
    /// The stream whose raw log holds them.
    stream: &'static str,
}

/// A good NDJSON line of `water_level` for the row `tag`.
fn good(tag: &str, n: i64) -> String {
    format!(
        "{{\"i\":\"{tag}\",\"time\":{},\"level\":1.5,\"id\":\"{tag}-{n}\"}}\n",
        base() + n * 1000
    )
}

/// `good` lines `0..n`.
fn goods(tag: &str, n: i64) -> String {
    (0..n).map(|k| good(tag, k)).collect()
}

/// A good `rfc` line for the row `tag`, an hour before the server's clock.
fn rfc_now(tag: &str) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    format!("{{\"i\":\"{tag}\",\"time\":\"{t}\",\"v\":1}}\n")
}

/// A good line-protocol point of `water_level` for the row `tag`.
fn point(tag: &str, n: i64) -> String {
    format!("water_level,i={tag} level=2.5 {}\n", base() + n * 1000)
}

fn ndjson(
    name: &'static str,
    body: String,
    status: u16,
    says: &'static [&'static str],
    stored: usize,
) -> Case {
    Case {
        name,
        method: "POST",
        path: "/v1/streams/water_level/events",
        content_type: None,
        body: body.into_bytes(),
        status,
        says,
        stored,
        stream: "water_level",
    }
}

fn lp(
    name: &'static str,
    path: &'static str,
    body: String,
    status: u16,
    says: &'static [&'static str],
    stored: usize,
) -> Case {
    Case {
        name,
        method: "POST",
        path,
        content_type: Some("text/plain; charset=utf-8"),
        body: body.into_bytes(),
        status,
        says,
        stored,
        stream: "water_level",
    }
}

fn get(name: &'static str, path: &'static str, status: u16, says: &'static [&'static str]) -> Case {
    Case {
        name,
        method: "GET",
        path,
        content_type: None,
        body: Vec::new(),
        status,
        says,
        stored: 0,
        stream: "water_level",
    }
}

const W: &str = "/api/v2/write?org=o&bucket=water_level";

fn corpus() -> Vec<Case> {
    let deep = format!(
        "{}{{\"i\":\"deep\",\"time\":5,\"level\":{}1{}}}\n",
        goods("deep", 1),
        "[".repeat(200),
        "]".repeat(200)
    );
    let huge_key = format!(
        "{{\"i\":\"{}\",\"time\":1,\"level\":1}}\n{}",
        "k".repeat(20_000),
        goods("hugekey", 1)
    );
    let mut bad_utf8 = goods("utf8", 1).into_bytes();
    bad_utf8.extend_from_slice(b"{\"i\":\"\xc3\x28\",\"time\":1,\"level\":1}\n");
    bad_utf8.extend_from_slice(good("utf8", 1).as_bytes());
    let mut cases = vec![
        // NDJSON: one bad line among good ones names its line; the good ones are kept.
        ndjson(
            "badjson",
            format!(
                "{}{{\"i\":\"badjson\",\n{}",
                goods("badjson", 1),
                good("badjson", 1)
            ),
            400,
            &["line 2", "invalid JSON"],
            2,
        ),
        ndjson(
            "truncated",
            format!("{}{{\"i\":\"truncated\",\"time\":1", goods("truncated", 2)),
            400,
            &["line 3", "invalid JSON"],
            2,
        ),
        ndjson(
            "notobject",
            format!("{}42\n\"x\"\nnull\n", goods("notobject", 1)),
            400,
            &["line 2", "line 3", "line 4", "expected a JSON object"],
            1,
        ),
        ndjson(
            "notime",
            format!("{}{{\"i\":\"notime\",\"level\":1}}\n", goods("notime", 1)),
            400,
            &["line 2", "field `time`", "missing"],
            1,
        ),
        ndjson(
            "timestr",
            format!(
                "{}{{\"i\":\"timestr\",\"time\":\"noon\",\"level\":1}}\n",
                goods("timestr", 1)
            ),
            400,
            &["line 2", "field `time`", "expected a number"],
            1,
        ),
        ndjson(
            "timebool",
            format!(
                "{}{{\"i\":\"timebool\",\"time\":true,\"level\":1}}\n",
                goods("timebool", 1)
            ),
            400,
            &["line 2", "field `time`"],
            1,
        ),
        ndjson(
            "timeobj",
            format!(
                "{}{{\"i\":\"timeobj\",\"time\":{{\"s\":1}},\"level\":1}}\n",
                goods("timeobj", 1)
            ),
            400,
            &["line 2", "field `time`"],
            1,
        ),
        ndjson(
            "timearr",
            format!(
                "{}{{\"i\":\"timearr\",\"time\":[1],\"level\":1}}\n",
                goods("timearr", 1)
            ),
            400,
            &["line 2", "field `time`"],
            1,
        ),
        ndjson(
            "timefrac",
            // A number, so a time; but in 1970, so beyond retention: a dead letter.
            format!(
                "{}{{\"i\":\"timefrac\",\"time\":1.5,\"level\":1}}\n",
                goods("timefrac", 1)
            ),
            200,
            &["\"dead_lettered\":1"],
            1,
        ),
        ndjson(
            "timehuge",
            format!(
                "{}{{\"i\":\"timehuge\",\"time\":123456789012345678901234567890,\"level\":1}}\n",
                goods("timehuge", 1)
            ),
            400,
            &["line 2", "field `time`"],
            1,
        ),
        ndjson(
            "timenull",
            format!(
                "{}{{\"i\":\"timenull\",\"time\":null,\"level\":1}}\n",
                goods("timenull", 1)
            ),
            400,
            &["line 2", "field `time`"],
            1,
        ),
        ndjson(
            "nan",
            format!(
                "{}{{\"i\":\"nan\",\"time\":2,\"level\":NaN}}\n",
                goods("nan", 1)
            ),
            400,
            &["line 2", "invalid JSON"],
            1,
        ),
        ndjson(
            "infinity",
            format!(
                "{}{{\"i\":\"infinity\",\"time\":2,\"level\":Infinity}}\n",
                goods("infinity", 1)
            ),
            400,
            &["line 2", "invalid JSON"],
            1,
        ),
        ndjson(
            "bignum",
            format!(
                "{}{{\"i\":\"bignum\",\"time\":2,\"level\":1e999}}\n",
                goods("bignum", 1)
            ),
            400,
            &["line 2"],
            1,
        ),
        ndjson(
            "arrfield",
            format!(
                "{}{{\"i\":\"arrfield\",\"time\":2,\"level\":[1,2]}}\n",
                goods("arrfield", 1)
            ),
            400,
            &["line 2", "field `level`", "array values are not supported"],
            1,
        ),
        ndjson(
            "keyobj",
            format!(
                "{}{{\"i\":{{\"x\":1}},\"time\":2,\"level\":1}}\n",
                goods("keyobj", 1)
            ),
            400,
            &["line 2", "field `i`"],
            1,
        ),
        ndjson(
            "nokey",
            format!("{}{{\"time\":2,\"level\":1}}\n", goods("nokey", 1)),
            400,
            &[
                "line 2",
                "field `i`",
                "missing (it is a key field of this stream)",
            ],
            1,
        ),
        ndjson(
            "idnum",
            format!(
                "{}{{\"i\":\"idnum\",\"time\":2,\"level\":1,\"id\":[1]}}\n",
                goods("idnum", 1)
            ),
            400,
            &["line 2", "field `id`"],
            1,
        ),
        ndjson("deep", deep, 400, &["line 2"], 1),
        // An absurd series key is a dead letter (kind `invalid`), not a lost request.
        ndjson("hugekey", huge_key, 200, &["\"dead_lettered\":1"], 1),
        Case {
            name: "utf8",
            method: "POST",
            path: "/v1/streams/water_level/events",
            content_type: None,
            body: bad_utf8,
            status: 400,
            says: &["line 2: not valid UTF-8"],
            stored: 2,
            stream: "water_level",
        },
        ndjson(
            "bom",
            format!("\u{feff}{}", goods("bom", 2)),
            400,
            &["line 1"],
            1,
        ),
        ndjson(
            "crlf",
            goods("crlf", 3).replace('\n', "\r\n"),
            200,
            &["\"accepted\":3"],
            3,
        ),
        ndjson("empty", String::new(), 200, &["\"accepted\":0"], 0),
        ndjson("blank", "\n\n   \n\t\n".into(), 200, &["\"accepted\":0"], 0),
        ndjson(
            "blanks",
            format!("\n{}\n\n{}\n", good("blanks", 0), good("blanks", 1)),
            200,
            &["\"accepted\":2"],
            2,
        ),
        ndjson(
            "dupid",
            format!("{}{}", goods("dupid", 2), good("dupid", 1)),
            200,
            &["\"duplicates\":1"],
            2,
        ),
        ndjson(
            "array",
            format!(
                "[{},{{\"i\":\"array\",\"time\":\"x\"}},{}]",
                good("array", 0).trim(),
                good("array", 1).trim()
            ),
            400,
            &["array item 2", "field `time`"],
            2,
        ),
        ndjson(
            "badarray",
            format!("[{},", good("badarray", 0).trim()),
            400,
            &["invalid JSON array"],
            0,
        ),
        Case {
            path: "/v1/streams/water_level/events?atomic=true",
            ..ndjson(
                "atomic",
                format!("{}{{\"i\":\"atomic\"}}\n", goods("atomic", 3)),
                400,
                &["nothing was stored (atomic=true)", "line 4"],
                0,
            )
        },
        Case {
            path: "/v1/streams/water_level/events?atomic=yes",
            ..ndjson("atomicbad", goods("atomicbad", 1), 400, &["atomic"], 0)
        },
        Case {
            path: "/v1/streams/water_level/events?atomc=true",
            ..ndjson(
                "unknownparam",
                goods("unknownparam", 1),
                400,
                &["unknown field `atomc`"],
                0,
            )
        },
        Case {
            path: "/v1/streams/water_level/events?partition=-1",
            ..ndjson(
                "badpartition",
                goods("badpartition", 1),
                400,
                &["partition"],
                0,
            )
        },
        Case {
            path: "/v1/streams/lake/events",
            ..ndjson(
                "unknownstream",
                goods("unknownstream", 1),
                404,
                &["unknown stream `lake`"],
                0,
            )
        },
        ndjson(
            "toolarge",
            goods("toolarge", 1).repeat(1_048_576 / 50),
            413,
            &["larger than the limit of 1048576 bytes", "max_body_bytes"],
            0,
        ),
        // RFC 3339 times on the stream that expects them.
        Case {
            path: "/v1/streams/rfc/events",
            stream: "rfc",
            ..ndjson(
                "rfcbad",
                format!(
                    "{{\"i\":\"rfcbad\",\"time\":\"2022-13-45T00:00:00Z\",\"v\":1}}\n{}",
                    rfc_now("rfcbad")
                ),
                400,
                &["line 1", "field `time`", "not an RFC 3339 timestamp"],
                1,
            )
        },
        // The time guard (`rfc` keeps the default `max_future` of 1h): a far-future
        // event is a dead letter of kind `future` and never moves the watermark, so the
        // good event after it is still accepted.
        Case {
            path: "/v1/streams/rfc/events",
            stream: "rfc",
            ..ndjson(
                "future",
                format!(
                    "{{\"i\":\"future\",\"time\":\"2200-01-01T00:00:00Z\",\"v\":1}}\n{}",
                    rfc_now("future")
                ),
                200,
                &["\"dead_lettered\":1", "\"accepted\":1"],
                1,
            )
        },
        Case {
            path: "/v1/streams/rfc/events",
            stream: "rfc",
            ..ndjson(
                "afterfuture",
                rfc_now("afterfuture"),
                200,
                &["\"accepted\":1"],
                1,
            )
        },
        // Line protocol tells dead letters in a header; here: a series key too long.
        lp(
            "lpdead",
            W,
            format!(
                "water_level,i={} level=1 5\n{}",
                "k".repeat(20_000),
                point("lpdead", 0)
            ),
            204,
            &["x-reckon-dead-lettered: 1", "x-reckon-accepted: 1"],
            1,
        ),
        // Line protocol (InfluxDB v2 write).
        lp(
            "lpok",
            W,
            format!("{}{}", point("lpok", 0), point("lpok", 1)),
            204,
            &[],
            2,
        ),
        lp(
            "lpnofield",
            W,
            format!("{}water_level,i=lpnofield 5\n", point("lpnofield", 0)),
            400,
            &["partial write", "line 2"],
            1,
        ),
        lp(
            "lpbadvalue",
            W,
            format!(
                "{}water_level,i=lpbadvalue level=\"x 5\n",
                point("lpbadvalue", 0)
            ),
            400,
            &["partial write", "line 2"],
            1,
        ),
        lp(
            "lpbadtime",
            W,
            format!(
                "{}water_level,i=lpbadtime level=1 12ab\n",
                point("lpbadtime", 0)
            ),
            400,
            &["partial write", "line 2"],
            1,
        ),
        lp(
            "lphugetime",
            W,
            format!(
                "{}water_level,i=lphugetime level=1 99999999999999999999999\n",
                point("lphugetime", 0)
            ),
            400,
            &["partial write", "line 2"],
            1,
        ),
        lp(
            "lpnomeasure",
            W,
            format!("{},i=x level=1 5\n", point("lpnomeasure", 0)),
            400,
            &["partial write", "line 2"],
            1,
        ),
        lp(
            "lpbadescape",
            W,
            format!(
                "{}water_level,i=a\\ level=1 5\nwater_level,i level=1 5\n",
                point("lpbadescape", 0)
            ),
            400,
            &["partial write", "line 3"],
            1,
        ),
        lp(
            "lpnokey",
            W,
            format!("{}water_level level=1 5\n", point("lpnokey", 0)),
            400,
            &["partial write", "line 2", "`i`"],
            1,
        ),
        lp(
            "lpprecision",
            "/api/v2/write?org=o&bucket=water_level&precision=s",
            format!(
                "water_level,i=lpprecision level=1 {}\n",
                base() / 1_000_000_000
            ),
            204,
            &[],
            1,
        ),
        lp(
            "lpbadprecision",
            "/api/v2/write?org=o&bucket=water_level&precision=h",
            point("lpbadprecision", 0),
            400,
            &["`h`"],
            0,
        ),
        lp(
            "lpnobucket",
            "/api/v2/write?org=o",
            point("lpnobucket", 0),
            400,
            &["missing the `bucket` query parameter"],
            0,
        ),
        lp(
            "lpunknownbucket",
            "/api/v2/write?org=o&bucket=lake",
            point("lpunknownbucket", 0),
            404,
            &["not found"],
            0,
        ),
        lp("lpempty", W, String::new(), 204, &[], 0),
        // Queries.
        get(
            "qbadkey",
            "/v1/pipelines/mean_1h/windows?key=i",
            400,
            &["`key`", "no `=value`"],
        ),
        get(
            "qbadfrom",
            "/v1/pipelines/mean_1h/windows?from=yesterday",
            400,
            &["`from`", "RFC 3339"],
        ),
        get(
            "qbadasof",
            "/v1/pipelines/mean_1h/windows?as_of=soon",
            400,
            &["`as_of`"],
        ),
        get(
            "qlimit0",
            "/v1/pipelines/mean_1h/windows?limit=0",
            400,
            &["limit"],
        ),
        get(
            "qlimitneg",
            "/v1/pipelines/mean_1h/windows?limit=-5",
            400,
            &["limit"],
        ),
        get(
            "qcursor",
            "/v1/pipelines/mean_1h/windows?cursor=zz",
            400,
            &["`cursor`"],
        ),
        get(
            "qsince",
            "/v1/pipelines/mean_1h/changes?since=999999",
            400,
            &["past the last change"],
        ),
        get(
            "qsincebad",
            "/v1/pipelines/mean_1h/changes?since=x",
            400,
            &["since"],
        ),
        get(
            "qpipeline",
            "/v1/pipelines/nope/windows",
            404,
            &["unknown pipeline `nope`"],
        ),
        get(
            "qhistory",
            "/v1/pipelines/mean_1h/history?key=i=1",
            400,
            &["start"],
        ),
        get("qroute", "/v1/nothing", 404, &["no such endpoint"]),
        // A name given twice in one object: neither value is guessed.
        ndjson(
            "dupname",
            format!(
                "{}{{\"i\":\"dupname\",\"time\":5,\"level\":1,\"level\":100}}\n",
                goods("dupname", 1)
            ),
            400,
            &["line 2", "field `level`", "given twice"],
            1,
        ),
        ndjson(
            "duptime",
            format!(
                "{}{{\"i\":\"duptime\",\"time\":5,\"time\":9999999999999999999,\"level\":1}}\n",
                goods("duptime", 1)
            ),
            400,
            &["line 2", "field `time`", "given twice"],
            1,
        ),
        ndjson(
            "dupnested",
            format!(
                "{}{{\"i\":\"dupnested\",\"time\":5,\"o\":{{\"a\":1,\"a\":2}}}}\n",
                goods("dupnested", 1)
            ),
            400,
            &["line 2", "given twice"],
            1,
        ),
        ndjson(
            "duparray",
            format!(
                "[{},{{\"i\":\"duparray\",\"i\":\"x\",\"time\":5}}]",
                good("duparray", 0).trim()
            ),
            400,
            &["array item 2", "field `i`", "given twice"],
            1,
        ),
        // Error statuses axum or hyper produce come with a JSON body too.
        Case {
            method: "DELETE",
            ..get(
                "method",
                "/v1/streams/water_level/events",
                405,
                &["not allowed"],
            )
        },
        Case {
            path: Box::leak(
                format!("/v1/pipelines/mean_1h/windows?key=i={}", "x".repeat(20_000))
                    .into_boxed_str(),
            ),
            ..get("longuri", "/", 414, &["error"])
        },
        // - 405/414/415 answer with a JSON body.
    ];
    let _ = &mut cases;
    cases
}

async fn call(
    app: &App,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ct) = ct {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let r = app
        .router()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = r.status().as_u16();
    // reckon's own headers (counts of a line-protocol write) go in front of the body.
    let mut text: String = r
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-reckon-"))
        .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?")))
        .collect();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    text.push_str(&String::from_utf8_lossy(&bytes));
    (status, text)
}

/// Events of `water_level` in the raw log whose key is `i=<tag>`.
fn stored(app: &App, stream: &str, tag: &str) -> usize {
    let want = format!("i={tag}");
    app.state()
        .store()
        .raw_scan(stream)
        .unwrap()
        .iter()
        .filter(|e| e.key.as_str() == want)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_named_and_the_good_events_of_the_request_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::config(dir.path(), ""), AppOptions::default()).unwrap();
    // One window so that change-feed and history cases have something to be past.
    let (s, _) = call(
        &app,
        "POST",
        "/v1/streams/water_level/events",
        None,
        goods("seed", 1).into_bytes(),
    )
    .await;
    assert_eq!(s, 200);
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for (n, c) in cases.into_iter().enumerate() {
        let (status, text) = call(&app, c.method, c.path, c.content_type, c.body).await;
        let mut wrong = Vec::new();
        if status != c.status {
            wrong.push(format!("status {status}, expected {}", c.status));
        }
        for s in c.says {
            if !text.contains(s) {
                wrong.push(format!("answer lacks {s:?}"));
            }
        }
        if status >= 400 && !text.lines().any(|l| l.starts_with('{')) {
            wrong.push("error answer is not a JSON object".into());
        }
        let kept = stored(&app, c.stream, c.name);
        if kept != c.stored {
            wrong.push(format!("{kept} good events stored, expected {}", c.stored));
        }
        // The server is still healthy and takes a good event.
        let (h, _) = call(&app, "GET", "/healthz", None, Vec::new()).await;
        if h != 200 {
            wrong.push(format!("/healthz answered {h} afterwards"));
        }
        let tag = format!("after{n}");
        let (a, t) = call(
            &app,
            "POST",
            "/v1/streams/water_level/events",
            None,
            good(&tag, 7).into_bytes(),
        )
        .await;
        if a != 200 || stored(&app, "water_level", &tag) != 1 {
            wrong.push(format!("a good event afterwards: {a} {t}"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "case {n} `{}`: {}\n    answer: {text:.400}",
                c.name,
                wrong.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc_good_event_kept() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::config(dir.path(), ""), AppOptions::default()).unwrap();
    let body = "{\"i\":\"r\",\"time\":\"2022-13-45T00:00:00Z\",\"v\":1}\n{\"i\":\"r\",\"time\":\"2022-06-13T00:00:00Z\",\"v\":1}\n";
    let (s, text) = call(&app, "POST", "/v1/streams/rfc/events", None, body.into()).await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(stored(&app, "rfc", "r"), 1, "{text}");
}
