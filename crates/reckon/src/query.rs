//! `reckon query`: asks a running server (`reckon serve`, `reckon demo`) over HTTP.
//!
//! Windows, a window's history, dead letters and the change feed, printed as the
//! server sends them: JSON (pretty), CSV with `--csv`, or with `changes --follow` one
//! JSON object per line as corrections arrive (server-sent events, resumable with
//! `--since`).

use anyhow::{Context, Result, bail};
use std::process::ExitCode;

/// Options of `reckon query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8086", env = "RECKON_URL")]
    url: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The newest version of each window (or as it was at `--as-of`).
    Windows {
        /// The pipeline.
        pipeline: String,
        /// One series key, e.g. `i=42`.
        #[arg(long)]
        key: Option<String>,
        /// Windows starting at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Windows starting before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// As the results were at this processing time (RFC 3339).
        #[arg(long)]
        as_of: Option<String>,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
    },
    /// Every version of one window.
    History {
        /// The pipeline.
        pipeline: String,
        /// The series key, e.g. `i=42`.
        #[arg(long)]
        key: String,
        /// The window's start (RFC 3339).
        #[arg(long)]
        start: String,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
    },
    /// The change feed: every stored version, in order, from a cursor.
    Changes {
        /// The pipeline.
        pipeline: String,
        /// Start after this change number (default: from the beginning, or with
        /// `--follow` from now).
        #[arg(long)]
        since: Option<u64>,
        /// Keep following: print each change as it is committed (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
    },
    /// The newest dead letters of a stream.
    DeadLetters {
        /// The stream.
        stream: String,
    },
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query_string(params: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Runs the query; exit 2 when the server cannot be reached or refuses the query.
pub fn run(args: &QueryArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(query(args))
}

async fn query(args: &QueryArgs) -> Result<ExitCode> {
    let base = args.url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let (path, csv) = match &args.what {
        What::Windows {
            pipeline,
            key,
            from,
            to,
            as_of,
            csv,
        } => (
            format!(
                "/v1/pipelines/{}/windows{}",
                enc(pipeline),
                query_string(&[
                    ("key", key.as_deref()),
                    ("from", from.as_deref()),
                    ("to", to.as_deref()),
                    ("as_of", as_of.as_deref()),
                ])
            ),
            *csv,
        ),
        What::History {
            pipeline,
            key,
            start,
            csv,
        } => (
            format!(
                "/v1/pipelines/{}/history{}",
                enc(pipeline),
                query_string(&[("key", Some(key)), ("start", Some(start))])
            ),
            *csv,
        ),
        What::DeadLetters { stream } => {
            (format!("/v1/streams/{}/dead_letters", enc(stream)), false)
        }
        What::Changes {
            pipeline,
            since,
            follow,
        } => {
            let s = since.map(|s| s.to_string());
            let path = format!(
                "/v1/pipelines/{}/changes{}",
                enc(pipeline),
                query_string(&[("since", s.as_deref())])
            );
            if *follow {
                return follow_feed(&client, &format!("{base}{path}")).await;
            }
            (path, false)
        }
    };
    let url = format!("{base}{path}");
    let mut req = client.get(&url);
    if csv {
        req = req.header("accept", "text/csv");
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach reckon at {base} (is `reckon serve` running?)"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the answer")?;
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or(text);
        bail!("{status}: {msg}");
    }
    if csv {
        print!("{text}");
    } else {
        let v: serde_json::Value = serde_json::from_str(&text).context("the answer is not JSON")?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints each `emission` event of the SSE feed as one JSON line.
async fn follow_feed(client: &reqwest::Client, url: &str) -> Result<ExitCode> {
    let mut resp = client
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .with_context(|| format!("cannot reach {url} (is `reckon serve` running?)"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("{status}: {}", resp.text().await.unwrap_or_default());
    }
    let mut buf = String::new();
    while let Some(chunk) = resp.chunk().await.context("reading the change feed")? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if !data.is_empty() {
                println!("{}", data.join("\n"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
