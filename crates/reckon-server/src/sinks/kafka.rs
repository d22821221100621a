//! The Kafka sink: every change of its pipelines as a CloudEvent (structured JSON) on
//! one topic, produced with librdkafka's idempotent producer and waited for.
//!
//! A record's key is its window, `{pipeline}/{key}/{window start}`: all versions of
//! one window go to one partition in version order, and on a compacted topic
//! (`cleanup.policy=compact`) the newest version is what stays, so the topic reads as
//! a table of results. The record carries the CloudEvent's id
//! (`{pipeline}/{key}/{start}/v{version}`) in the `ce_id` header as well as in the
//! body. Kafka has no deduplication by id across producer sessions, so a batch written
//! again after a crash (between the write and the cursor's commit) appears twice in
//! the log: a consumer drops repeats by id, or reads the compacted topic, where they
//! collapse.

use super::{Sink, cloudevent};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use reckon_core::Emission;
use reckon_runtime::SinkConfig;
use std::time::Duration;

/// How long a change may wait for room in the producer's queue, and for delivery.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Kafka {
    config: ClientConfig,
    topic: String,
    producer: Option<FutureProducer>,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka").field("topic", &self.topic).finish()
    }
}

impl Kafka {
    pub(crate) fn new(cfg: &SinkConfig) -> Kafka {
        let servers = reckon_runtime::connectors::kafka_servers(&cfg.url).unwrap_or_default();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", servers)
            .set("client.id", format!("reckon-{}", cfg.name))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string());
        for (k, v) in &cfg.properties {
            config.set(k, v);
        }
        config.set_log_level(RDKafkaLogLevel::Warning);
        Kafka {
            config,
            topic: cfg.topic_name().to_string(),
            producer: None,
        }
    }
}

impl Sink for Kafka {
    async fn connect(&mut self) -> Result<(), String> {
        self.producer = None;
        let producer: FutureProducer = self
            .config
            .create()
            .map_err(|e| format!("creating the Kafka producer: {e}"))?;
        // Fails here, not at the first write, when no broker answers.
        let p = producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map(|_| ())
        })
        .await
        .map_err(|e| format!("asking for the topic's metadata: {e}"))?
        .map_err(|e| format!("no Kafka broker answered for topic `{}`: {e}", self.topic))?;
        self.producer = Some(producer);
        Ok(())
    }

    async fn write(&mut self, changes: &[&(u64, Emission)]) -> Result<(), String> {
        let Some(producer) = &self.producer else {
            return Err("not connected".into());
        };
        // Enqueued one after the other (the order kept per window), the deliveries
        // awaited together.
        let mut deliveries = Vec::with_capacity(changes.len());
        for (n, e) in changes {
            let (id, ev) = cloudevent(*n, e);
            let key = format!(
                "{}/{}/{}",
                e.pipeline,
                e.key.as_str(),
                crate::wire::rfc3339(e.window.start.0)
            );
            let body = ev.to_string();
            match producer.send_result(record(&self.topic, &key, &body, &id)) {
                Ok(d) => deliveries.push(d),
                Err(_) => {
                    // The queue is full: wait for what is in flight, then this one.
                    for d in deliveries.drain(..) {
                        delivered(d, &self.topic).await?;
                    }
                    producer
                        .send(
                            record(&self.topic, &key, &body, &id),
                            Timeout::After(SEND_TIMEOUT),
                        )
                        .await
                        .map_err(|(e, _)| format!("producing to `{}`: {e}", self.topic))?;
                }
            }
        }
        for d in deliveries {
            delivered(d, &self.topic).await?;
        }
        Ok(())
    }
}

/// A change's record: keyed by its window, the CloudEvent as its body.
fn record<'a>(topic: &'a str, key: &'a str, body: &'a str, id: &str) -> FutureRecord<'a, str, str> {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some("application/cloudevents+json; charset=UTF-8"),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(id),
        });
    FutureRecord::to(topic)
        .key(key)
        .payload(body)
        .headers(headers)
}

/// Waits for one record's delivery.
async fn delivered(d: rdkafka::producer::DeliveryFuture, topic: &str) -> Result<(), String> {
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(format!("Kafka did not store a change on `{topic}`: {e}")),
        Err(_) => Err(format!("the producer went away while writing to `{topic}`")),
    }
}
