//! The NATS JetStream source: a durable pull consumer on the source's subject.
//!
//! reckon's store, not the consumer, holds the position (the stream sequence of the
//! last message committed with its events). On every connect the durable consumer is
//! made anew to start right after it (`DeliverPolicy::ByStartSequence`), so what the
//! broker delivers is exactly what reckon does not have yet, in stream order, whatever
//! the consumer had acknowledged before a crash. Acknowledgement is `AckPolicy::All`:
//! one ack after each commit covers the whole batch.

use super::{Broker, Message, Positions};
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use reckon_runtime::SourceConfig;
use std::sync::Arc;
use std::time::Duration;

/// How long JetStream waits for an acknowledgement before delivering again (longer
/// than any commit; a redelivery is skipped by position anyway).
const ACK_WAIT: Duration = Duration::from_secs(60);

pub(crate) struct Nats {
    url: String,
    subject: String,
    stream: String,
    durable: String,
    consumer: Option<consumer::Consumer<consumer::pull::Config>>,
    /// The last message of the last batch (acknowledging it acknowledges all).
    last: Option<jetstream::Message>,
    /// Its one lane, `""`.
    lane: Arc<str>,
}

impl Nats {
    pub(crate) fn new(cfg: &SourceConfig) -> Nats {
        Nats {
            url: cfg.url.clone(),
            subject: cfg.subject.clone(),
            stream: cfg.jetstream_name(),
            durable: cfg.durable_name(),
            consumer: None,
            last: None,
            lane: Arc::from(""),
        }
    }
}

/// Reads a pull to its end into `out`, keeping its last message in `last`.
async fn read(
    lane: &Arc<str>,
    mut messages: consumer::pull::Batch,
    out: &mut Vec<Message>,
    last: &mut Option<jetstream::Message>,
) -> Result<(), String> {
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| format!("fetching: {e}"))?;
        let seq = m
            .info()
            .map_err(|e| format!("a message without JetStream metadata: {e}"))?
            .stream_sequence;
        out.push(Message {
            subject: m.subject.to_string(),
            payload: m.payload.to_vec(),
            lane: lane.clone(),
            position: Some(seq),
            partition: None,
        });
        *last = Some(m);
    }
    Ok(())
}

impl Broker for Nats {
    async fn connect(&mut self, positions: &Positions) -> Result<(), String> {
        let position = positions.get("").copied();
        self.consumer = None;
        self.last = None;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url.as_str())
            .await
            .map_err(|e| format!("connecting to {}: {e}", crate::connector::redact(&self.url)))?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("JetStream stream `{}`: {e}", self.stream))?;
        let mut stream = stream;
        let info = stream
            .info()
            .await
            .map_err(|e| format!("JetStream stream `{}`: {e}", self.stream))?;
        // The consumer is made anew on every connect: on a stream that keeps messages
        // only while a consumer wants them, that would drop the backlog.
        if info.config.retention != jetstream::stream::RetentionPolicy::Limits {
            return Err(format!(
                "JetStream stream `{}` has {:?} retention; a source needs a stream with limits retention (the default), as its position is kept in reckon's store",
                self.stream, info.config.retention
            ));
        }
        if let Some(p) = position {
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            if p > last {
                // Counting on would skip the new stream's first messages in silence.
                return Err(format!(
                    "JetStream stream `{}` ends at sequence {last}, but reckon committed position {p} of it: it was deleted and created anew, or purged. Give the source a new name to read it from its start",
                    self.stream
                ));
            }
            if first > p + 1 {
                tracing::warn!(
                    "JetStream stream `{}` starts at sequence {first}: messages {} to {} were removed (its limits) before reckon read them",
                    self.stream,
                    p + 1,
                    first - 1
                );
            }
        }
        // Not found is fine: the first start.
        let _ = stream.delete_consumer(&self.durable).await;
        let deliver_policy = match position {
            Some(p) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: p + 1,
            },
            None => consumer::DeliverPolicy::All,
        };
        let c = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(self.durable.clone()),
                description: Some("reckon source; its position is kept in reckon's store".into()),
                filter_subject: self.subject.clone(),
                deliver_policy,
                ack_policy: consumer::AckPolicy::All,
                ack_wait: ACK_WAIT,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("durable consumer `{}`: {e}", self.durable))?;
        self.consumer = Some(c);
        Ok(())
    }

    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>, String> {
        let Some(c) = &self.consumer else {
            return Err("not connected".into());
        };
        let fetched = |r: Result<consumer::pull::Batch, _>| {
            r.map_err(|e: consumer::pull::BatchError| format!("fetching: {e}"))
        };
        // What is there now; if nothing, wait up to `wait` for one message and then
        // take what came with it. Each pull is read to its end: a pull left half
        // read would deliver its rest to nobody until the ack wait ran out.
        let mut out = Vec::new();
        let now = fetched(c.fetch().max_messages(max).messages().await)?;
        read(&self.lane, now, &mut out, &mut self.last).await?;
        if out.is_empty() {
            let one = c
                .batch()
                .max_messages(1)
                .expires(wait.max(Duration::from_millis(10)))
                .messages()
                .await;
            read(&self.lane, fetched(one)?, &mut out, &mut self.last).await?;
            if !out.is_empty() && max > 1 {
                let rest = fetched(c.fetch().max_messages(max - 1).messages().await)?;
                read(&self.lane, rest, &mut out, &mut self.last).await?;
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, _positions: &Positions) -> Result<(), String> {
        match self.last.take() {
            Some(m) => m.ack().await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    async fn lag(&mut self) -> Option<u64> {
        let c = self.consumer.as_mut()?;
        c.info().await.ok().map(|i| i.num_pending)
    }
}
