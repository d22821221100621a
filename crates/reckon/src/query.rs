//! `reckon query`: asks a running server (`reckon serve`, `reckon demo`) over HTTP.
//!
//! Windows, a window's history, a running total, dead letters and the change feed, printed as the
//! server sends them: JSON (pretty), CSV with `--csv`, or with `changes --follow` one
//! JSON object per line as corrections arrive (server-sent events, resumable with
//! `--since`). Window queries come a page at a time (`--limit`, `--cursor`); `--all`
//! follows the server's `next` cursor to the end, printing page by page.
//!
//! Everything goes to stdout through [`Out`], which treats a closed pipe
//! (`reckon query … | head`) as the reader having seen enough: exit 0, no message.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::process::ExitCode;

/// Standard output for query answers. A write that fails with a broken pipe becomes
/// [`Closed`], which [`run`] turns into a quiet, successful exit.
struct Out(std::io::Stdout);

/// The reader of stdout went away (EPIPE).
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for Closed {}

impl Out {
    fn new() -> Out {
        Out(std::io::stdout())
    }
    /// Writes `text` and flushes, so a closed pipe is noticed at once.
    fn write(&mut self, text: &str) -> Result<()> {
        let mut lock = self.0.lock();
        let written = lock.write_all(text.as_bytes()).and_then(|()| lock.flush());
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
            Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        }
    }
}

/// Options of `reckon query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8086", env = "RECKON_URL")]
    url: String,
    /// The token to send, once the server has tokens (`reckon token create`).
    #[arg(long, env = "RECKON_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
        /// At most this many windows per page (the server caps it at its `[server]
        /// max_query_limit`, 10,000 by default).
        #[arg(long)]
        limit: Option<u64>,
        /// Start at this page cursor (the `next` of an earlier answer).
        #[arg(long)]
        cursor: Option<String>,
        /// Every window: follow the `next` cursor page by page until the end.
        #[arg(long)]
        all: bool,
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
        /// At most this many changes (default 1,000; capped by the server).
        #[arg(long)]
        limit: Option<u64>,
        /// Keep following: print each change as it is committed (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
    },
    /// A running total's value of one key: now (with the real-time counter beside the
    /// reconciled total), at an event time, or as known at a processing time.
    Total {
        /// The running total.
        pipeline: String,
        /// The series key, e.g. `space=lobby`.
        #[arg(long)]
        key: String,
        /// At this event time (RFC 3339; default: now).
        #[arg(long)]
        at: Option<String>,
        /// As the stored results said at this processing time (RFC 3339).
        #[arg(long)]
        known_at: Option<String>,
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
/// A closed stdout ends it quietly with exit 0.
pub fn run(args: &QueryArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match rt.block_on(query(args, &mut Out::new())) {
        Err(e) if e.is::<Closed>() => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

async fn query(args: &QueryArgs, out: &mut Out) -> Result<ExitCode> {
    let base = args.url.trim_end_matches('/');
    let client = crate::admin::client(args.token.as_deref())?;
    let (path, csv) = match &args.what {
        What::Windows {
            pipeline,
            key,
            from,
            to,
            as_of,
            limit,
            cursor,
            all,
            csv,
        } => {
            let limit = limit.map(|l| l.to_string());
            let path = format!(
                "/v1/pipelines/{}/windows{}",
                enc(pipeline),
                query_string(&[
                    ("key", key.as_deref()),
                    ("from", from.as_deref()),
                    ("to", to.as_deref()),
                    ("as_of", as_of.as_deref()),
                    ("limit", limit.as_deref()),
                ])
            );
            let pages = Pages {
                client: &client,
                base,
                path: &path,
                csv: *csv,
            };
            return pages.print(cursor.clone(), *all, out).await;
        }
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
        What::Total {
            pipeline,
            key,
            at,
            known_at,
        } => (
            format!(
                "/v1/pipelines/{}/total{}",
                enc(pipeline),
                query_string(&[
                    ("key", Some(key)),
                    ("at", at.as_deref()),
                    ("known_at", known_at.as_deref()),
                ])
            ),
            false,
        ),
        What::DeadLetters { stream } => {
            (format!("/v1/streams/{}/dead_letters", enc(stream)), false)
        }
        What::Changes {
            pipeline,
            since,
            limit,
            follow,
        } => {
            let s = since.map(|s| s.to_string());
            let l = limit.map(|l| l.to_string());
            let path = format!(
                "/v1/pipelines/{}/changes{}",
                enc(pipeline),
                query_string(&[("since", s.as_deref()), ("limit", l.as_deref())])
            );
            if *follow {
                return follow_feed(&client, &format!("{base}{path}"), out).await;
            }
            (path, false)
        }
    };
    let (text, _) = fetch(&client, base, &path, csv).await?;
    if csv {
        out.write(&text)?;
    } else {
        let v: serde_json::Value = serde_json::from_str(&text).context("the answer is not JSON")?;
        out.write(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// GETs `base` + `path` (as CSV if `csv`): the body and the CSV next-page cursor, or
/// the server's error message.
async fn fetch(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    csv: bool,
) -> Result<(String, Option<String>)> {
    let mut req = client.get(format!("{base}{path}"));
    if csv {
        req = req.header("accept", "text/csv");
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach reckon at {base} (is `reckon serve` running?)"))?;
    let status = resp.status();
    let next = resp
        .headers()
        .get("x-reckon-next-cursor")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let text = resp.text().await.context("reading the answer")?;
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or(text);
        bail!("{status}: {msg}");
    }
    Ok((text, next))
}

/// The pages of one windows query.
struct Pages<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    /// The path with its query string (without `cursor`).
    path: &'a str,
    csv: bool,
}

impl Pages<'_> {
    async fn page(&self, cursor: Option<&str>) -> Result<(String, Option<String>)> {
        let path = match cursor {
            None => self.path.to_string(),
            Some(c) => {
                let sep = if self.path.contains('?') { '&' } else { '?' };
                format!("{}{sep}cursor={}", self.path, enc(c))
            }
        };
        fetch(self.client, self.base, &path, self.csv).await
    }

    /// Prints one page, or with `all` every page from `cursor` on: CSV with one header,
    /// JSON as one document whose `windows` are written page by page (memory stays
    /// bounded by one page).
    async fn print(
        &self,
        mut cursor: Option<String>,
        all: bool,
        out: &mut Out,
    ) -> Result<ExitCode> {
        let mut first = true;
        loop {
            let (text, csv_next) = self.page(cursor.as_deref()).await?;
            let next = if self.csv {
                let body = if first {
                    text.as_str()
                } else {
                    // The header again: skip it.
                    text.split_once('\n').map_or("", |(_, rows)| rows)
                };
                out.write(body)?;
                csv_next
            } else {
                let v: serde_json::Value =
                    serde_json::from_str(&text).context("the answer is not JSON")?;
                let next = v.get("next").and_then(|n| n.as_str()).map(String::from);
                if !all {
                    out.write(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
                } else {
                    if first {
                        out.write(&format!(
                            "{{\n  \"pipeline\": {},\n  \"as_of\": {},\n  \"windows\": [",
                            v["pipeline"], v["as_of"]
                        ))?;
                    }
                    let empty = Vec::new();
                    let windows = v["windows"].as_array().unwrap_or(&empty);
                    let mut chunk = String::new();
                    for (i, w) in windows.iter().enumerate() {
                        if !(first && i == 0) {
                            chunk.push(',');
                        }
                        chunk.push_str("\n    ");
                        chunk.push_str(&w.to_string());
                    }
                    out.write(&chunk)?;
                    if next.is_none() {
                        out.write("\n  ],\n  \"next\": null\n}\n")?;
                    }
                }
                next
            };
            first = false;
            match next {
                Some(n) if all => cursor = Some(n),
                Some(n) => {
                    if self.csv {
                        // JSON shows `next` in the answer; CSV would hide it.
                        eprintln!(
                            "more windows follow: add --cursor {n} (or --all for every page)"
                        );
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                None => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// Prints each `emission` event of the SSE feed as one JSON line.
async fn follow_feed(client: &reqwest::Client, url: &str, out: &mut Out) -> Result<ExitCode> {
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
                out.write(&format!("{}\n", data.join("\n")))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
