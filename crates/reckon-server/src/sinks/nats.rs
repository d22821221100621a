//! The NATS sink: every change of its pipelines as a CloudEvent (structured JSON) on
//! `{subject}.{pipeline}`, published to JetStream and waited for.
//!
//! Each message carries `Nats-Msg-Id: {pipeline}/{key}/{window start}/v{version}`, the
//! CloudEvent's `id`: JetStream drops a message whose id it has seen within the
//! stream's duplicate window (2 minutes by default), so a batch published again after
//! a crash is stored once. A consumer reading later than that can drop repeats by the
//! same id: one id is one version of one window.

use super::{Sink, cloudevent};
use async_nats::jetstream;
use reckon_core::Emission;
use reckon_runtime::SinkConfig;
use std::time::Duration;

pub(crate) struct Nats {
    url: String,
    prefix: String,
    stream: String,
    js: Option<jetstream::Context>,
}

impl Nats {
    pub(crate) fn new(cfg: &SinkConfig) -> Nats {
        Nats {
            url: cfg.url.clone(),
            prefix: cfg.subject_prefix().to_string(),
            stream: cfg.jetstream_name().to_string(),
            js: None,
        }
    }
}

/// A pipeline's name as one subject token (`tenant/name` → `tenant_name`).
fn token(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' | '*' | '>' | '/' | ' ' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

impl Sink for Nats {
    async fn connect(&mut self) -> Result<(), String> {
        self.js = None;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url.as_str())
            .await
            .map_err(|e| format!("connecting to {}: {e}", crate::connector::redact(&self.url)))?;
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            ..Default::default()
        })
        .await
        .map_err(|e| format!("JetStream stream `{}`: {e}", self.stream))?;
        self.js = Some(js);
        Ok(())
    }

    async fn write(&mut self, changes: &[&(u64, Emission)]) -> Result<(), String> {
        let Some(js) = &self.js else {
            return Err("not connected".into());
        };
        // Published one after the other, the acknowledgements awaited together: one
        // round trip's latency per batch, the order kept.
        let mut acks = Vec::with_capacity(changes.len());
        for (n, e) in changes {
            let (id, ev) = cloudevent(*n, e);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            let subject = format!("{}.{}", self.prefix, token(&e.pipeline));
            acks.push(
                js.publish_with_headers(subject, headers, ev.to_string().into())
                    .await
                    .map_err(|e| format!("publishing: {e}"))?,
            );
        }
        for a in acks {
            a.await
                .map_err(|e| format!("JetStream did not store a change: {e}"))?;
        }
        Ok(())
    }
}
