//! Webhooks: one task per `[[webhook]]`, following the change feed from the webhook's
//! durable cursor.
//!
//! Each task subscribes to the change-feed follower (`follow.rs`) from its durable
//! cursor, keeps the changes its webhook wants (corrections by default), pairs each with
//! the version it replaced, and digests them: at most one message per
//! `digest_interval`. A message is sent with retries and backoff; then its delivery
//! record and the new cursor go to the writer thread (the store's only writer), which
//! commits them with its next commit and answers once durable, so after a crash the
//! webhook resumes after the last change it handled (at-least-once). A slow or failing
//! webhook never blocks ingest: sending happens here, and a webhook that falls behind
//! reads the store itself until it catches up.

use crate::AppState;
use crate::error::{Error, Result};
use reckon_connect::webhook::{AlertMeta, Correction, DeliveryOutcome, Digest, WebhookSender};
use reckon_runtime::WebhookConfig;
use reckon_store::Delivery;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Starts one task per configured webhook.
pub(crate) fn start(state: &AppState) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for w in &state.config().webhooks {
        // Messages name the webhook as its tenant does.
        let mut shown = w.clone();
        shown.name = crate::auth::local_name(&w.name).to_string();
        let sender = WebhookSender::new(&shown)
            .map_err(|e| Error::Webhook(e.to_string()))?
            .with_alerts(alerts_of(&state.config(), w));
        tasks.push(tokio::spawn(run(state.clone(), w.clone(), sender)));
    }
    Ok(tasks)
}

/// The labels and annotations of the alert rules webhook `w` may report, by the name
/// its corrections carry (a tenant's webhook: the tenant's names).
fn alerts_of(config: &reckon_runtime::Config, w: &WebhookConfig) -> AlertMeta {
    config
        .alerts
        .iter()
        .filter(|a| a.tenant == w.tenant)
        .map(|a| {
            let name = if w.tenant.is_some() {
                crate::auth::local_name(&a.name).to_string()
            } else {
                a.name.clone()
            };
            (name, (a.labels.clone(), a.annotations.clone()))
        })
        .collect()
}

/// The stream each result comes from (a reconciliation's: its audit stream).
fn streams_of(config: &reckon_runtime::Config) -> HashMap<String, Arc<str>> {
    config
        .output_names()
        .filter_map(|p| Some((p.to_string(), Arc::from(config.origin_stream(p)?))))
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn run(state: AppState, cfg: WebhookConfig, mut sender: WebhookSender) {
    let name = cfg.name.clone();
    // A tenant's webhook hears of its tenant's pipelines only (all of them when it names
    // none, also those defined later over the API), and its messages name them as the
    // tenant does.
    let tenant = cfg.tenant.clone();
    let prefix = tenant.as_ref().map(|t| format!("{t}/"));
    let shown = crate::auth::local_name(&name).to_string();
    let mut epoch = state.epoch();
    let mut streams = streams_of(&state.config());
    let sink = match state.store().sink_state(&name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("webhook `{name}`: cannot read its cursor ({e}); it is not running");
            return;
        }
    };
    let mut next_id = sink.last_delivery + 1;
    let mut digest = Digest::new(cfg.digest_interval.to_std());
    let mut changes = state.follower().subscribe(sink.cursor);
    // The rest of a page a full digest had no room for.
    let mut leftover: Option<crate::follow::Page> = None;
    let mut shutdown = state.shutdown();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // A digest holding `max_digest_windows` windows takes no more until it is sent:
        // memory and message size stay bounded in a burst (the cursor only moves with
        // deliveries, so nothing is skipped; the rest goes in the next message).
        let room = sender
            .max_windows(cfg.max_digest_windows)
            .saturating_sub(digest.len());
        if state.epoch() != epoch {
            // The definitions changed: what comes from which stream, and the alert
            // rules' labels.
            epoch = state.epoch();
            let config = state.config();
            streams = streams_of(&config);
            sender = sender.with_alerts(alerts_of(&config, &cfg));
        }
        if room > 0
            && let Some(page) = leftover.take()
        {
            // Looking up replaced versions is a blocking store read: it runs off the
            // async workers, and only for changes this webhook wants.
            let tenant = tenant.clone();
            let (st, snd, filter, strm, pg, own) = (
                state.clone(),
                sender.clone(),
                cfg.pipelines.clone(),
                streams.clone(),
                page.clone(),
                prefix.clone(),
            );
            let read = tokio::task::spawn_blocking(move || {
                let page = pg;
                let mut wanted = Vec::new();
                let mut rest = None;
                for (i, (n, e)) in page.changes().iter().enumerate() {
                    // Room for new windows only (a window already pending merges, but
                    // counting entries is the simple, safe bound).
                    if wanted.len() == room {
                        rest = page.skip(i);
                        break;
                    }
                    if !filter.is_empty() && !filter.iter().any(|p| **p == *e.pipeline) {
                        continue;
                    }
                    if let Some(own) = &own
                        && !e.pipeline.starts_with(own.as_str())
                    {
                        continue;
                    }
                    let stream = strm
                        .get(&*e.pipeline)
                        .cloned()
                        .unwrap_or_else(|| Arc::from(""));
                    let mut c = Correction {
                        change: *n,
                        stream,
                        previous: None,
                        emission: e.clone(),
                    };
                    if snd.wants(&c) {
                        c.previous = st.store().replaced_by(&c.emission)?;
                        if !snd.takes(&c) {
                            continue;
                        }
                        if tenant.is_some() {
                            local_names(&mut c);
                        }
                        wanted.push(c);
                    }
                }
                Ok::<_, reckon_store::Error>((wanted, rest))
            })
            .await;
            match read {
                Ok(Ok((wanted, rest))) => {
                    leftover = rest;
                    for c in wanted {
                        digest.push(Instant::now(), c);
                    }
                }
                _ => {
                    eprintln!("webhook `{name}`: reading the change feed failed; retrying in 1 s");
                    leftover = Some(page);
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
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
                "webhook": shown,
                "first_change": batch.first_change,
                "last_change": batch.last_change,
                "windows": batch.corrections.len(),
                "corrections": batch.received,
                "sent_at": crate::wire::rfc3339(started.saturating_mul(1_000_000_000)),
                "result": result,
            });
            // The writer commits it (the store's only writer); the next message waits
            // until it is durable. The writer answers even during a shutdown (it stops
            // after the webhooks), so this does not wait on `shutdown`.
            let delivery = Delivery {
                sink: Arc::from(name.as_str()),
                id,
                cursor: batch.last_change,
                record: record.to_string().into_bytes(),
            };
            if let Err(e) = state.writer().record(delivery).await {
                eprintln!("webhook `{name}`: cannot record delivery {id} ({e:?}); stopping it");
                return;
            }
            continue;
        }
        if room > 0 && leftover.is_some() {
            continue;
        }
        let wake = digest.next_send_at();
        let mut failed = false;
        tokio::select! {
            page = changes.next_page(), if room > 0 => match page {
                Ok(Some(page)) => leftover = Some(page),
                Ok(None) => return,
                Err(e) => {
                    eprintln!("webhook `{name}`: reading the change feed failed ({e}); retrying in 1 s");
                    failed = true;
                }
            },
            _ = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if failed {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// Names a tenant's correction as the tenant does (its pipeline and stream without the
/// `tenant/` prefix).
fn local_names(c: &mut Correction) {
    let local = |n: &Arc<str>| Arc::from(crate::auth::local_name(n));
    c.stream = local(&c.stream);
    c.emission.pipeline = local(&c.emission.pipeline);
    if let Some(p) = &mut c.previous {
        p.pipeline = local(&p.pipeline);
    }
}
