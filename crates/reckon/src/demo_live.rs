//! `reckon demo`: seed 000 end to end through the real server.
//!
//! It writes a `reckon.toml` (stream `water_level`, pipeline `water_level_mean_1h`, a
//! webhook), starts the server on an embedded store, and runs a generator that does
//! what seed 000's `write.py` does: every 10 s of event time a reading per location,
//! plus a late reading per location up to 24 h old, posted as NDJSON over HTTP. Event
//! time runs `--speed` times faster than real time (the server's processing-time clock
//! runs at the same speed). It prints events/s, corrections and the watermark every
//! second, the first corrections with their old and new values, the webhook message
//! seed 000 sent to Slack, and where to look (the change feed, queries, metrics). At the
//! end it stops the server and checks every stored window against a recomputation from
//! the raw log; exit 1 if one differs.

use crate::demo::DemoArgs;
use anyhow::{Context, Result, bail};
use reckon_core::{ProcessingTime, Span};
use reckon_runtime::Config;
use reckon_server::{App, AppOptions, Clock, ScaledClock};
use reckon_workload::{Seed000, ndjson_line};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PIPELINE: &str = "water_level_mean_1h";

fn config_text(data: &std::path::Path, args: &DemoArgs, webhook: &str) -> String {
    format!(
        r#"# Written by `reckon demo`: seed 000 as a reckon configuration.
[store]
path = "{store}"

[server]
listen = "{listen}"

[[stream]]
name = "water_level"
key_fields = ["i"]
time_field = "time"
time_format = "unix_ns"
id_field = "id"

[[pipeline]]
name = "{PIPELINE}"
stream = "water_level"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
out_of_orderness = "10s"
allowed_lateness = "{lateness}m"
retention = "7d"

[[webhook]]
name = "late-data"
url = "{webhook}"
pipelines = ["{PIPELINE}"]
format = "slack"
digest_interval = "2s"
# A short demo: give up on an unreachable webhook soon enough to say why.
max_attempts = 3
backoff = "200ms"
max_backoff = "1s"
"#,
        store = data.join("store").display().to_string().replace('\\', "/"),
        listen = args.listen,
        lateness = args.allowed_lateness_minutes,
    )
}

/// The demo's own webhook receiver: prints the first messages it gets.
async fn receiver(printed: Arc<AtomicU64>) -> Result<String> {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: String| {
            let printed = printed.clone();
            async move {
                if printed.fetch_add(1, Ordering::SeqCst) < 2 {
                    let text = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(String::from))
                        .unwrap_or(body);
                    let shown: Vec<&str> = text.lines().take(14).collect();
                    println!(
                        "\n── webhook message (seed 000's Slack alert, as reckon sends it) ──\n{}\n──\n",
                        shown.join("\n")
                    );
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/hook"))
}

fn hm(t: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(t))
        .map(|ts| ts.strftime("%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// Runs the demo through the server.
pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        bail!("--speed must be a positive number, got {}", args.speed);
    }
    if !(0.0..=1.0).contains(&args.late_probability) {
        bail!(
            "--late-probability must be between 0 and 1, got {}",
            args.late_probability
        );
    }
    if args.allowed_lateness_minutes < 0 {
        bail!(
            "--allowed-lateness-minutes: allowed_lateness must not be negative, got {}",
            args.allowed_lateness_minutes
        );
    }
    let (data, temporary) = match &args.data {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("reckon-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let code = rt.block_on(live(args, &data));
    drop(rt);
    let code = code?;
    if temporary {
        let _ = std::fs::remove_dir_all(&data);
    } else {
        println!("the store and reckon.toml are kept in {}", data.display());
    }
    Ok(code)
}

async fn live(args: &DemoArgs, data: &std::path::Path) -> Result<ExitCode> {
    let printed = Arc::new(AtomicU64::new(0));
    let hook = match &args.webhook {
        Some(u) => u.clone(),
        None => receiver(printed.clone()).await?,
    };
    let text = config_text(data, args, &hook);
    let config_path: PathBuf = data.join("reckon.toml");
    std::fs::write(&config_path, &text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let config = Config::from_toml(&text)?;

    let generator = Seed000 {
        locations: args.locations,
        late_probability: args.late_probability,
        seed: args.seed,
        with_ids: true,
        ..Seed000::default()
    };
    let end = generator.start.plus(Span::hours(i64::from(args.hours)));
    let history: Vec<_> = Seed000 {
        start: generator.start.minus(Span::hours(24)),
        late_probability: 0.0,
        seed: args.seed.wrapping_add(1),
        ..generator.clone()
    }
    .arrivals()
    .take_while(|a| a.at.0 < generator.start.0)
    .collect();

    let clock = Arc::new(ScaledClock::new(
        ProcessingTime(generator.start.0),
        args.speed,
    ));
    let (listener, fell_back) = match crate::serve::bind(&config.server.listen).await {
        Ok(l) => (l, None),
        Err(e) => (crate::serve::bind("127.0.0.1:0").await?, Some(e)),
    };
    let addr = listener.local_addr()?;
    if let Some(e) = &fell_back {
        println!(
            "note: {} is taken ({e:#}); the demo listens on {addr} instead.\n  pass --url http://{addr} to reckon query, e.g. reckon query --url http://{addr} windows {PIPELINE}",
            config.server.listen
        );
    }
    let app = App::open(
        config.clone(),
        AppOptions {
            clock: clock.clone(),
            ..AppOptions::default()
        },
    )
    .context("opening the demo store")?;
    let state = app.state().clone();
    let stop = app.shutdown_signal();
    let server = tokio::spawn(app.serve(listener));
    let base = format!("http://{addr}");

    println!(
        "reckon demo — seed 000 through the server: mean water level per location, 1 h windows"
    );
    println!(
        "  {} locations, a reading every 10 s plus a late one per location up to 24 h old; event time runs {}x real time",
        args.locations, args.speed
    );
    println!("  configuration: {}", config_path.display());
    println!("\nwhere to look (in another terminal):");
    println!(
        "  curl -N -H 'Accept: text/event-stream' {base}/v1/pipelines/{PIPELINE}/changes   # the change feed, live"
    );
    println!(
        "  curl '{base}/v1/pipelines/{PIPELINE}/windows?key=i=42'                          # windows of location 42"
    );
    println!(
        "  curl -H 'Accept: text/csv' '{base}/v1/pipelines/{PIPELINE}/windows'            # every window as CSV"
    );
    println!(
        "  curl {base}/v1/webhooks/late-data/deliveries                                     # webhook deliveries"
    );
    println!(
        "  curl {base}/metrics                                                              # Prometheus metrics"
    );
    println!("  (Ctrl-C stops the demo early; it still verifies what was stored)\n");

    let client = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let url = format!("{base}/v1/streams/water_level/events");
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let i = interrupted.clone();
        tokio::spawn(async move {
            crate::serve::stop_requested().await;
            i.store(true, Ordering::SeqCst);
        });
    }

    // A day of history, as fast as the server takes it.
    let started = Instant::now();
    let mut body = String::new();
    for chunk in history.chunks(5_000) {
        body.clear();
        chunk.iter().for_each(|a| ndjson_line(&a.event, &mut body));
        post(&client, &url, body.clone()).await?;
    }
    println!(
        "history: {} on-time events of the day before posted in {:.1} s; now live",
        history.len(),
        started.elapsed().as_secs_f64()
    );

    // Live: one request per tick, when the (scaled) clock reaches it.
    let mut shown_corrections = 0u64;
    let mut cursor = state.store().last_change();
    let mut last_report = Instant::now();
    let mut webhook_error: Option<String> = None;
    let mut last_accepted = accepted(&state);
    let mut arrivals = generator
        .arrivals()
        .take_while(|a| a.at.0 < end.0)
        .peekable();
    while let Some(first) = arrivals.next() {
        if interrupted.load(Ordering::SeqCst) {
            println!("interrupted");
            break;
        }
        let at = first.at;
        let mut batch = vec![first];
        while let Some(a) = arrivals.next_if(|a| a.at == at) {
            batch.push(a);
        }
        let wait = (at.0 - clock.now().0) as f64 / args.speed;
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
        }
        body.clear();
        batch.iter().for_each(|a| ndjson_line(&a.event, &mut body));
        post(&client, &url, body.clone()).await?;

        // The first corrections, with old and new values (read from the change feed).
        if shown_corrections < args.examples as u64 {
            let page = state.store().changes_page(cursor, Some(PIPELINE), 1_000)?;
            cursor = page.scanned_to;
            for (n, e) in page.changes {
                if shown_corrections < args.examples as u64
                    && let Some(old) = state.store().replaced_by(&e)?
                {
                    shown_corrections += 1;
                    println!(
                        "correction #{n}: {} {} window {}: count {} → {}, mean {} → {}, v{} → v{} ({:?})",
                        PIPELINE,
                        e.key,
                        hm(e.window.start.0),
                        old.count,
                        e.count,
                        fmt_mean(&old),
                        fmt_mean(&e),
                        old.version.0,
                        e.version.0,
                        e.kind
                    );
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let now_accepted = accepted(&state);
            let m = state.metrics();
            let corrections = m.counter(
                "reckon_emissions_total",
                &[("pipeline", PIPELINE), ("kind", "late")],
            ) + m.counter(
                "reckon_emissions_total",
                &[("pipeline", PIPELINE), ("kind", "recomputed")],
            );
            let wm = m
                .gauge("reckon_watermark_seconds", &[("pipeline", PIPELINE)])
                .map(|s| hm((s * 1e9) as i64))
                .unwrap_or_else(|| "-".into());
            println!(
                "[{}] {:>6.0} events/s  events {:>8}  corrections {:>7}  watermark {}  change #{}  webhook messages {}",
                hm(at.0),
                (now_accepted - last_accepted) as f64 / last_report.elapsed().as_secs_f64(),
                now_accepted,
                corrections,
                wm,
                state.store().last_change(),
                m.counter(
                    "reckon_webhook_deliveries_total",
                    &[("webhook", "late-data"), ("outcome", "delivered")]
                ),
            );
            report_webhook_failure(&state, &mut webhook_error);
            last_accepted = now_accepted;
            last_report = Instant::now();
        }
    }
    // Let the last digest go out, then stop.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    report_webhook_failure(&state, &mut webhook_error);
    let _ = stop.send(true);
    server.await.context("the server task failed")??;
    drop(state);

    let store = reckon_store::Store::open(&config.store.path).context("reopening the store")?;
    let (checked, bad) = crate::verify::check(&config, &store, None, &mut |l| println!("{l}"))?;
    if bad == 0 {
        println!(
            "\nverified: all {checked} stored windows equal a batch recomputation over the raw events"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n{bad} of {checked} windows disagree with a batch recomputation");
        Ok(ExitCode::from(1))
    }
}

/// Prints the error of the webhook's newest delivery when it failed (once per distinct
/// error), so an unreachable `--webhook` says why instead of only "webhook messages 0".
fn report_webhook_failure(state: &reckon_server::AppState, last: &mut Option<String>) {
    let Ok(rows) = state.store().deliveries("late-data", 1) else {
        return;
    };
    let Some(record) = rows
        .first()
        .and_then(|(_, bytes)| serde_json::from_slice::<serde_json::Value>(bytes).ok())
    else {
        return;
    };
    let Some(error) = record
        .get("result")
        .and_then(|r| r.get("error"))
        .and_then(|e| e.as_str())
    else {
        return;
    };
    if last.as_deref() != Some(error) {
        println!("webhook delivery failed: {error}");
        *last = Some(error.to_owned());
    }
}

fn accepted(state: &reckon_server::AppState) -> u64 {
    state
        .metrics()
        .counter("reckon_events_accepted_total", &[("stream", "water_level")])
}

fn fmt_mean(e: &reckon_core::Emission) -> String {
    match e.value("mean") {
        Some(reckon_core::Value::F64(x)) => format!("{x:.4}"),
        other => format!("{other:?}"),
    }
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> Result<()> {
    let r = client
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {url}"))?;
    if !r.status().is_success() {
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        bail!("the server answered {status}: {text}");
    }
    Ok(())
}
