//! Webhooks: one task per `[[webhook]]`, following the change feed from the webhook's
//! durable cursor.
//!
//! Each task reads new changes from the store (woken by the writer after each commit),
//! keeps the ones its webhook wants (corrections by default), pairs each with the
//! version it replaced, and digests them: at most one message per `digest_interval`.
//! A message is sent with retries and backoff; then its delivery record and the new
//! cursor are stored in one durable write, so after a crash the webhook resumes after
//! the last change it handled (at-least-once). Tasks never touch the writer: a slow or
//! failing webhook never blocks ingest.

use crate::AppState;
use crate::error::{Error, Result};
use reckon_connect::webhook::{Correction, DeliveryOutcome, Digest, WebhookSender};
use reckon_runtime::WebhookConfig;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Changes read from the store at a time.
const PAGE: usize = 10_000;

/// Starts one task per configured webhook.
pub(crate) fn start(state: &AppState) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for w in &state.config().webhooks {
        let sender = WebhookSender::new(w).map_err(|e| Error::Webhook(e.to_string()))?;
        tasks.push(tokio::spawn(run(state.clone(), w.clone(), sender)));
    }
    Ok(tasks)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn run(state: AppState, cfg: WebhookConfig, sender: WebhookSender) {
    let name = cfg.name.clone();
    // The stream each result comes from (a reconciliation's: its audit stream).
    let config = state.config();
    let streams: HashMap<String, Arc<str>> = config
        .output_names()
        .filter_map(|p| Some((p.to_string(), Arc::from(config.origin_stream(p)?))))
        .collect();
    let sink = match state.store().sink_state(&name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("webhook `{name}`: cannot read its cursor ({e}); it is not running");
            return;
        }
    };
    let mut next_id = sink.last_delivery + 1;
    let mut seen = sink.cursor;
    let mut digest = Digest::new(cfg.digest_interval.to_std());
    let mut progress = state.progress();
    let mut shutdown = state.shutdown();
    loop {
        if *shutdown.borrow() {
            return;
        }
        progress.borrow_and_update();
        // A digest holding `max_digest_windows` windows reads no further until it is
        // sent: memory and message size stay bounded in a burst (the cursor only moves
        // with deliveries, so nothing is skipped; the rest goes in the next message).
        let mut full = false;
        let room = cfg.max_digest_windows.saturating_sub(digest.len());
        if room > 0 {
            // Reading the feed and looking up replaced versions are blocking store reads:
            // they run off the async workers, and only for changes this webhook wants.
            let (st, snd, filter, strm) = (
                state.clone(),
                sender.clone(),
                cfg.pipelines.clone(),
                streams.clone(),
            );
            let read = tokio::task::spawn_blocking(move || {
                let page = st.store().changes_page(seen, None, PAGE)?;
                let mut wanted = Vec::new();
                let mut scanned_to = page.scanned_to;
                for (n, e) in page.changes {
                    // Room for new windows only (a window already pending merges, but
                    // counting entries is the simple, safe bound).
                    if wanted.len() == room {
                        scanned_to = n.saturating_sub(1);
                        break;
                    }
                    if !filter.is_empty() && !filter.iter().any(|p| **p == *e.pipeline) {
                        continue;
                    }
                    let stream = strm
                        .get(&*e.pipeline)
                        .cloned()
                        .unwrap_or_else(|| Arc::from(""));
                    let mut c = Correction {
                        change: n,
                        stream,
                        previous: None,
                        emission: e,
                    };
                    if snd.wants(&c) {
                        c.previous = st.store().replaced_by(&c.emission)?;
                        wanted.push(c);
                    }
                }
                Ok::<_, reckon_store::Error>((scanned_to, wanted))
            })
            .await;
            let (scanned_to, wanted) = match read {
                Ok(Ok(r)) => r,
                _ => {
                    eprintln!("webhook `{name}`: reading the change feed failed; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            full = scanned_to >= seen.saturating_add(PAGE as u64);
            seen = seen.max(scanned_to);
            for c in wanted {
                digest.push(Instant::now(), c);
            }
        }
        if let Some(batch) = digest.poll(Instant::now()) {
            let id = next_id;
            next_id += 1;
            let body = sender.body(&batch.corrections);
            let started = unix_now();
            // Retries can take minutes; a shutdown does not wait for them (the cursor
            // does not move, so the message is sent again after the restart).
            let result = tokio::select! {
                r = sender.deliver(id, &body, started) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let outcome = match &result.outcome {
                DeliveryOutcome::Delivered { .. } => "delivered",
                DeliveryOutcome::Failed { .. } => "failed",
            };
            let m = state.metrics();
            m.inc(
                "reckon_webhook_deliveries_total",
                &[("webhook", &name), ("outcome", outcome)],
                1,
            );
            m.inc(
                "reckon_webhook_attempts_total",
                &[("webhook", &name)],
                u64::from(result.attempts),
            );
            let record = json!({
                "id": id,
                "webhook": name,
                "first_change": batch.first_change,
                "last_change": batch.last_change,
                "windows": batch.corrections.len(),
                "corrections": batch.received,
                "sent_at": crate::wire::rfc3339(started.saturating_mul(1_000_000_000)),
                "result": result,
            });
            let store = state.store().clone();
            let (n, last) = (name.clone(), batch.last_change);
            let saved = tokio::task::spawn_blocking(move || {
                store.record_delivery(&n, id, last, record.to_string().as_bytes())
            })
            .await;
            if !matches!(saved, Ok(Ok(()))) {
                eprintln!("webhook `{name}`: cannot record delivery {id}; stopping it");
                return;
            }
            continue;
        }
        if full {
            continue;
        }
        let wake = digest.next_send_at();
        tokio::select! {
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
