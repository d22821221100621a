//! The Kafka source: a consumer group on the source's topics (librdkafka, built with
//! the `kafka` feature).
//!
//! As with NATS, reckon's store holds the positions: per `topic/partition` lane, the
//! offset of the last message committed with its events. When the group assigns the
//! consumer a partition, it starts right after that offset (the rebalance callback
//! sets it in the assignment), whatever the group had committed; a partition reckon
//! has never read starts at the group's committed offset, or at the earliest. Offsets
//! are committed to the group too, but only after reckon's commit and only as a
//! courtesy (lag tools, a consumer that takes over without reckon's store).
//!
//! librdkafka reconnects to brokers by itself; what it reports meanwhile shows as the
//! source's `error` and in the log. Its prefetch is bounded
//! (`queued.max.messages.kbytes`, 16 MiB here by default), and since reckon takes no
//! more from it while the writer is full, a full writer stops the fetching.

use super::{Broker, Message, Positions};
use futures_util::FutureExt as _;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use reckon_runtime::SourceConfig;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What the consumer's callbacks share with the source.
struct Ctx {
    source: String,
    /// The committed positions, as the source last acknowledged them.
    committed: Mutex<Positions>,
    /// Messages behind, from librdkafka's statistics.
    lag: Mutex<Option<u64>>,
    /// The last error librdkafka reported, cleared by the next message.
    trouble: Mutex<Option<String>>,
    /// The lane names of the partitions assigned, by (topic, partition).
    lanes: Mutex<BTreeMap<(String, i32), Arc<str>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A Kafka partition's lane.
fn lane(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let source = self.source.as_str();
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(source, "librdkafka {fac}: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(source, "librdkafka {fac}: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(source, "librdkafka {fac}: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(source, "librdkafka {fac}: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(source = %self.source, "source `{}`: Kafka: {error} ({reason})", self.source);
        *locked(&self.trouble) = Some(format!("{error}: {reason}"));
    }

    fn stats(&self, stats: Statistics) {
        let mut lag = 0u64;
        for t in stats.topics.values() {
            for (p, s) in &t.partitions {
                // -1 is librdkafka's internal partition; a negative lag is unknown.
                if *p >= 0 && s.consumer_lag >= 0 && s.fetch_state != "none" {
                    lag += s.consumer_lag as u64;
                }
            }
        }
        *locked(&self.lag) = Some(lag);
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let committed = locked(&self.committed).clone();
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let mut lanes = locked(&self.lanes);
                lanes.clear();
                let mut from = Vec::new();
                for (topic, partition) in parts {
                    let name = lane(&topic, partition);
                    if let Some(p) = committed.get(&name) {
                        // Right after what reckon has, whatever the group committed.
                        let at = i64::try_from(p.saturating_add(1)).unwrap_or(i64::MAX);
                        if let Err(e) =
                            tpl.set_partition_offset(&topic, partition, Offset::Offset(at))
                        {
                            tracing::error!(source = %self.source, "source `{}`: cannot start {name} at {at}: {e}", self.source);
                        }
                        from.push(format!("{name}@{at}"));
                    } else {
                        from.push(format!("{name}@group"));
                    }
                    lanes.insert((topic, partition), Arc::from(name));
                }
                drop(lanes);
                tracing::info!(source = %self.source, "source `{}`: assigned {}", self.source, from.join(", "));
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(source = %self.source, "source `{}`: assigning partitions failed: {e}", self.source);
                    *locked(&self.trouble) = Some(format!("assigning partitions: {e}"));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(source = %self.source, "source `{}`: partitions revoked ({})", self.source, tpl.count());
                locked(&self.lanes).clear();
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(source = %self.source, "source `{}`: unassigning failed: {e}", self.source);
                }
            }
            other => {
                tracing::error!(source = %self.source, "source `{}`: rebalance failed: {other:?}", self.source);
                *locked(&self.trouble) = Some(format!("rebalance failed: {other:?}"));
                locked(&self.lanes).clear();
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            // Only a courtesy: reckon's own positions are committed already.
            tracing::debug!(source = %self.source, "source `{}`: committing offsets to the group failed: {e}", self.source);
        }
    }
}

pub(crate) struct Kafka {
    source: String,
    config: ClientConfig,
    topics: Vec<String>,
    consumer: Option<Arc<StreamConsumer<Ctx>>>,
    /// What the group was last told, per lane.
    acked: Positions,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("topics", &self.topics)
            .finish()
    }
}

impl Kafka {
    pub(crate) fn new(cfg: &SourceConfig) -> Kafka {
        let servers = reckon_runtime::connectors::kafka_servers(&cfg.url).unwrap_or_default();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", servers)
            .set("group.id", cfg.durable_name())
            .set("client.id", format!("reckon-{}", cfg.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            .set("queued.max.messages.kbytes", "16384")
            .set("isolation.level", "read_committed");
        for (k, v) in &cfg.properties {
            config.set(k, v);
        }
        config.set_log_level(RDKafkaLogLevel::Warning);
        Kafka {
            source: cfg.name.clone(),
            config,
            topics: cfg
                .subject
                .split(',')
                .map(|t| t.trim().to_string())
                .collect(),
            consumer: None,
            acked: Positions::new(),
        }
    }

    /// The callbacks' state of the consumer, if connected.
    fn ctx(&self) -> Option<&Ctx> {
        self.consumer.as_deref().map(|c| &**c.context())
    }

    /// A message as the source loop takes it.
    fn message(ctx: &Ctx, m: &BorrowedMessage<'_>) -> Message {
        let (topic, partition) = (m.topic(), m.partition());
        let lane = locked(&ctx.lanes)
            .get(&(topic.to_string(), partition))
            .cloned()
            .unwrap_or_else(|| Arc::from(lane(topic, partition)));
        Message {
            subject: topic.to_string(),
            payload: m.payload().unwrap_or_default().to_vec(),
            lane,
            position: u64::try_from(m.offset()).ok(),
            partition: u32::try_from(partition).ok(),
        }
    }
}

impl Broker for Kafka {
    async fn connect(&mut self, positions: &Positions) -> Result<(), String> {
        // A new consumer joins the group again; the assignment starts each partition
        // after `positions`.
        self.consumer = None;
        self.acked = positions.clone();
        let ctx = Ctx {
            source: self.source.clone(),
            committed: Mutex::new(positions.clone()),
            lag: Mutex::new(None),
            trouble: Mutex::new(None),
            lanes: Mutex::new(BTreeMap::new()),
        };
        let consumer: StreamConsumer<Ctx> = self
            .config
            .create_with_context(ctx)
            .map_err(|e| format!("creating the Kafka consumer: {e}"))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("subscribing to {}: {e}", topics.join(",")))?;
        self.consumer = Some(Arc::new(consumer));
        Ok(())
    }

    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>, String> {
        let Some(c) = self.consumer.clone() else {
            return Err("not connected".into());
        };
        let ctx = &**c.context();
        let mut out = Vec::new();
        // The first message waits up to `wait`; then what is there already, without
        // waiting. (No message is held across an await: they borrow the consumer.)
        let failed = match tokio::time::timeout(wait, c.recv()).await {
            Err(_) => return Ok(out),
            Ok(Ok(m)) => {
                out.push(Kafka::message(ctx, &m));
                None
            }
            Ok(Err(e)) => Some(e),
        };
        let failed = failed.or_else(|| {
            while out.len() < max {
                match c.recv().now_or_never() {
                    None => break,
                    Some(Ok(m)) => out.push(Kafka::message(ctx, &m)),
                    Some(Err(e)) => return Some(e),
                }
            }
            None
        });
        match failed {
            Some(e) => self.consume_error(e, out, wait).await,
            None => {
                *locked(&ctx.trouble) = None;
                Ok(out)
            }
        }
    }

    async fn ack(&mut self, positions: &Positions) -> Result<(), String> {
        let Some(c) = &self.consumer else {
            return Ok(());
        };
        *locked(&c.context().committed) = positions.clone();
        let mut tpl = TopicPartitionList::new();
        for (name, p) in positions {
            if self.acked.get(name) == Some(p) {
                continue;
            }
            let Some((topic, partition)) = name
                .rsplit_once('/')
                .and_then(|(t, n)| Some((t, n.parse::<i32>().ok()?)))
            else {
                continue;
            };
            let at = i64::try_from(p.saturating_add(1)).unwrap_or(i64::MAX);
            tpl.add_partition_offset(topic, partition, Offset::Offset(at))
                .map_err(|e| format!("offset of {name}: {e}"))?;
        }
        self.acked = positions.clone();
        if tpl.count() == 0 {
            return Ok(());
        }
        c.commit(&tpl, CommitMode::Async)
            .map_err(|e| format!("committing offsets to the group: {e}"))
    }

    async fn lag(&mut self) -> Option<u64> {
        *locked(&self.ctx()?.lag)
    }

    fn trouble(&self) -> Option<String> {
        locked(&self.ctx()?.trouble).clone()
    }
}

impl Kafka {
    /// An error from the consumer. librdkafka recovers from most by itself (a broker
    /// restarting, a topic not created yet): those are shown and the batch so far is
    /// returned after a pause, so a persisting error does not spin. A fatal one makes
    /// the source connect again.
    async fn consume_error(
        &self,
        e: KafkaError,
        out: Vec<Message>,
        wait: Duration,
    ) -> Result<Vec<Message>, String> {
        let fatal = self
            .consumer
            .as_ref()
            .and_then(|c| c.client().fatal_error())
            .map(|(code, reason)| format!("{code:?}: {reason}"));
        if let Some(f) = fatal {
            return Err(format!("a fatal Kafka error: {f}"));
        }
        tracing::warn!(source = %self.source, "source `{}`: consuming: {e}", self.source);
        if let Some(ctx) = self.ctx() {
            *locked(&ctx.trouble) = Some(e.to_string());
        }
        if out.is_empty() {
            tokio::time::sleep(wait.max(Duration::from_millis(200))).await;
        }
        Ok(out)
    }
}
