//! `[[source]]` and `[[sink]]`: brokers reckon reads events from and systems it writes
//! results to (`docs/connectors.md`).
//!
//! A source is read by `reckon serve`: its messages are decoded as the HTTP ingest
//! decodes a body (the stream's JSON or CloudEvents, or InfluxDB line protocol), and
//! the source's position is committed **with** the events, so a crash replays nothing
//! twice and loses nothing. A sink follows the change feed from a durable cursor.

use crate::config::{Config, Duration};
use crate::error::{Error, Result};
use reckon_core::Span;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The broker a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A NATS JetStream stream, through a durable pull consumer.
    Nats,
    /// An MQTT broker, QoS 1 with a persistent session.
    Mqtt,
    /// Kafka topics, through a consumer group (needs the `kafka` build feature).
    Kafka,
}

/// How a source's messages are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// The stream's own format (`format` of its `[[stream]]`: JSON or CloudEvents);
    /// a message may hold one object, NDJSON or a JSON array.
    #[default]
    Json,
    /// InfluxDB line protocol, one or more lines per message.
    LineProtocol,
}

/// Which watermark partition a message's events go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionBy {
    /// All in `partition` (default 0).
    #[default]
    Fixed,
    /// One partition per subject (NATS) or topic (MQTT): a device that goes quiet on
    /// its own topic then does not hold back the others' watermark (idle partitions).
    Subject,
    /// Kafka: the message's Kafka partition, plus `partition` (one watermark per
    /// Kafka partition, as Flink keeps them).
    Partition,
}

/// `[[source]]`: a broker `reckon serve` consumes into a stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The name its position is kept under (and its metrics' `source` label).
    pub name: String,
    /// `nats`, `mqtt` or `kafka`.
    pub kind: SourceKind,
    /// The broker: `nats://127.0.0.1:4222`, `mqtt://127.0.0.1:1883`,
    /// `kafka://127.0.0.1:9092[,host:port…]` (the bootstrap servers).
    pub url: String,
    /// The reckon stream the events go to.
    pub stream: String,
    /// `json` (the stream's format, default) or `line_protocol`.
    #[serde(default)]
    pub format: SourceFormat,
    /// Line protocol timestamps: `ns` (default), `us`, `ms` or `s`.
    #[serde(default)]
    pub precision: Option<String>,
    /// NATS: the subject filter (`plant.>`); MQTT: the topic filter (`plant/+/level`);
    /// Kafka: the topic, several separated by `,`, or a regex starting with `^`.
    pub subject: String,
    /// NATS: the JetStream stream holding the subject (created over `subject`, file
    /// storage, when missing). Default: the source's name.
    #[serde(default)]
    pub jetstream: Option<String>,
    /// NATS: the durable consumer's name; MQTT: the client id of the persistent
    /// session; Kafka: the consumer group. Default `reckon-{name}`.
    #[serde(default)]
    pub durable: Option<String>,
    /// `fixed` (default: every event in `partition`), `subject` (one watermark
    /// partition per subject or topic) or `partition` (Kafka: one per Kafka
    /// partition).
    #[serde(default)]
    pub partition_by: PartitionBy,
    /// The partition of `partition_by = "fixed"`, or the first of `"partition"`.
    /// Default 0.
    #[serde(default)]
    pub partition: u32,
    /// Kafka: more librdkafka settings for the consumer (`fetch.max.bytes`,
    /// `session.timeout.ms`, …), as strings.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Messages taken at most per commit. Default 1000.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// How long a batch waits to fill before it is committed. Default `50ms`.
    #[serde(default = "default_max_wait")]
    pub max_wait: Duration,
}

fn default_batch() -> usize {
    1000
}

fn default_max_wait() -> Duration {
    Duration(Span(50_000_000))
}

impl SourceConfig {
    /// The JetStream stream (NATS).
    pub fn jetstream_name(&self) -> String {
        self.jetstream.clone().unwrap_or_else(|| self.name.clone())
    }

    /// The durable consumer or MQTT client id.
    pub fn durable_name(&self) -> String {
        self.durable
            .clone()
            .unwrap_or_else(|| format!("reckon-{}", self.name))
    }
}

/// The system a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// PostgreSQL: one row per window, upserted, only ever to a newer version.
    Postgres,
    /// Redis: the latest value of each window and of each key, for real-time reads.
    Redis,
    /// NATS JetStream: every change as a CloudEvent on `{subject}.{pipeline}`.
    Nats,
    /// Kafka: every change as a CloudEvent on `topic`, keyed by its window (needs the
    /// `kafka` build feature).
    Kafka,
}

/// `[[sink]]`: a system `reckon serve` keeps up to date from the change feed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The name its cursor is kept under (and its metrics' `sink` label).
    pub name: String,
    /// `postgres`, `redis`, `nats` or `kafka`.
    pub kind: SinkKind,
    /// `postgresql://postgres@127.0.0.1:5432/test` (or `host=… user=… dbname=…`),
    /// `redis://127.0.0.1:6379[/db]`, `nats://127.0.0.1:4222`,
    /// `kafka://127.0.0.1:9092[,host:port…]`.
    pub url: String,
    /// The pipelines (or reconciliations, running totals, alerts) whose changes go to
    /// the sink. Default: all.
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// PostgreSQL: the table (created if missing). Default `reckon_results`.
    #[serde(default)]
    pub table: Option<String>,
    /// Redis: the prefix of its keys. Default `reckon:`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// NATS: the subject prefix; a change goes to `{subject}.{pipeline}`. Default
    /// `reckon.changes`.
    #[serde(default)]
    pub subject: Option<String>,
    /// NATS: the JetStream stream over `{subject}.>` (created if missing). Default
    /// `RECKON_CHANGES`.
    #[serde(default)]
    pub jetstream: Option<String>,
    /// Kafka: the topic (created by the broker's auto-create if missing). Default
    /// `reckon-changes`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Kafka: more librdkafka settings for the producer, as strings.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Changes written at most per round trip (one transaction, one pipeline of
    /// commands). Default 500.
    #[serde(default = "default_sink_batch")]
    pub batch: usize,
}

fn default_sink_batch() -> usize {
    500
}

impl SinkConfig {
    /// The PostgreSQL table.
    pub fn table_name(&self) -> &str {
        self.table.as_deref().unwrap_or("reckon_results")
    }

    /// The Redis key prefix.
    pub fn redis_prefix(&self) -> &str {
        self.key_prefix.as_deref().unwrap_or("reckon:")
    }

    /// The NATS subject prefix.
    pub fn subject_prefix(&self) -> &str {
        self.subject.as_deref().unwrap_or("reckon.changes")
    }

    /// The NATS JetStream stream.
    pub fn jetstream_name(&self) -> &str {
        self.jetstream.as_deref().unwrap_or("RECKON_CHANGES")
    }

    /// The Kafka topic.
    pub fn topic_name(&self) -> &str {
        self.topic.as_deref().unwrap_or("reckon-changes")
    }
}

/// The Kafka bootstrap servers of a `kafka://host:port[,host:port…]` url.
pub fn kafka_servers(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("kafka://")?.trim_end_matches('/');
    let ok = !rest.is_empty()
        && rest.split(',').all(|hp| {
            hp.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        });
    ok.then_some(rest)
}

/// Whether `t` is a usable Kafka topic name (letters, digits, `.`, `_`, `-`; at most
/// 249).
fn kafka_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether `s` can name a PostgreSQL table without quoting surprises: letters, digits
/// and `_`, not starting with a digit, optionally `schema.table`.
fn plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').count() <= 2
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        })
}

/// Checks the `[[source]]` and `[[sink]]` tables against the rest of `config`.
pub(crate) fn validate(config: &Config) -> Result<()> {
    let bad = |m: String| Err(Error::Config(m));
    for (i, s) in config.sources.iter().enumerate() {
        let what = format!("source `{}`", s.name);
        if s.name.is_empty() || s.name.contains('/') {
            return bad(format!("{what}: give a name without `/`"));
        }
        if config.sources[..i].iter().any(|o| o.name == s.name) {
            return bad(format!("{what} is defined twice"));
        }
        if config.stream(&s.stream).is_none() {
            return bad(format!(
                "{what} feeds stream `{}`, which no [[stream]] defines",
                s.stream
            ));
        }
        if s.subject.is_empty() {
            return bad(format!(
                "{what}: give `subject` (a NATS subject or MQTT topic filter)"
            ));
        }
        let scheme = match s.kind {
            SourceKind::Nats => "nats://",
            SourceKind::Mqtt => "mqtt://",
            SourceKind::Kafka => "kafka://",
        };
        if !s.url.starts_with(scheme) {
            return bad(format!("{what}: url `{}` must start with {scheme}", s.url));
        }
        if s.kind == SourceKind::Kafka {
            if kafka_servers(&s.url).is_none() {
                return bad(format!(
                    "{what}: url `{}`: give kafka://host:port, several separated by `,`",
                    s.url
                ));
            }
            if !s.subject.starts_with('^') && !s.subject.split(',').all(|t| kafka_topic(t.trim())) {
                return bad(format!(
                    "{what}: subject = \"{}\": give Kafka topics (letters, digits, `.`, `_`, `-`) separated by `,`, or a regex starting with `^`",
                    s.subject
                ));
            }
        }
        if s.partition_by == PartitionBy::Partition && s.kind != SourceKind::Kafka {
            return bad(format!(
                "{what}: partition_by = \"partition\" is for kind = \"kafka\" (use \"subject\" or \"fixed\")"
            ));
        }
        if !s.properties.is_empty() && s.kind != SourceKind::Kafka {
            return bad(format!("{what}: properties are for kind = \"kafka\""));
        }
        if s.batch == 0 {
            return bad(format!("{what}: batch must be at least 1"));
        }
        if s.max_wait.0.0 <= 0 {
            return bad(format!("{what}: max_wait must be positive"));
        }
        if let Some(p) = &s.precision
            && !["ns", "us", "ms", "s"].contains(&p.as_str())
        {
            return bad(format!("{what}: precision = \"{p}\": use ns, us, ms or s"));
        }
        if s.precision.is_some() && s.format != SourceFormat::LineProtocol {
            return bad(format!(
                "{what}: precision is for format = \"line_protocol\""
            ));
        }
        if s.kind != SourceKind::Nats && s.jetstream.is_some() {
            return bad(format!("{what}: jetstream is for kind = \"nats\""));
        }
    }
    for (i, k) in config.sinks.iter().enumerate() {
        let what = format!("sink `{}`", k.name);
        if k.name.is_empty() || k.name.contains('/') {
            return bad(format!("{what}: give a name without `/`"));
        }
        if config.sinks[..i].iter().any(|o| o.name == k.name)
            || config.webhooks.iter().any(|w| w.name == k.name)
        {
            return bad(format!(
                "{what}: the name is already used by another sink or webhook (their cursors share one namespace)"
            ));
        }
        let scheme: &[&str] = match k.kind {
            SinkKind::Postgres => &["postgres://", "postgresql://", "host="],
            SinkKind::Redis => &["redis://"],
            SinkKind::Nats => &["nats://"],
            SinkKind::Kafka => &["kafka://"],
        };
        if !scheme.iter().any(|p| k.url.starts_with(p)) {
            return bad(format!(
                "{what}: url must start with {}",
                scheme.join(" or ")
            ));
        }
        for p in &k.pipelines {
            if !config.output_names().any(|n| n == p) {
                return bad(format!(
                    "{what} follows `{p}`, which no [[pipeline]], [[reconcile]], [[running_total]] or [[alert]] defines"
                ));
            }
        }
        if !plain_identifier(k.table_name()) {
            return bad(format!(
                "{what}: table = \"{}\": use letters, digits and `_` (optionally schema.table)",
                k.table_name()
            ));
        }
        if k.batch == 0 {
            return bad(format!("{what}: batch must be at least 1"));
        }
        let wrong =
            |field: &str, kind: &str| bad(format!("{what}: {field} is for kind = \"{kind}\""));
        if k.table.is_some() && k.kind != SinkKind::Postgres {
            return wrong("table", "postgres");
        }
        if k.key_prefix.is_some() && k.kind != SinkKind::Redis {
            return wrong("key_prefix", "redis");
        }
        if (k.subject.is_some() || k.jetstream.is_some()) && k.kind != SinkKind::Nats {
            return wrong("subject and jetstream", "nats");
        }
        if (k.topic.is_some() || !k.properties.is_empty()) && k.kind != SinkKind::Kafka {
            return wrong("topic and properties", "kafka");
        }
        if k.kind == SinkKind::Kafka {
            if kafka_servers(&k.url).is_none() {
                return bad(format!(
                    "{what}: url `{}`: give kafka://host:port, several separated by `,`",
                    k.url
                ));
            }
            if !kafka_topic(k.topic_name()) {
                return bad(format!(
                    "{what}: topic = \"{}\": use letters, digits, `.`, `_` and `-`",
                    k.topic_name()
                ));
            }
        }
        if k.subject_prefix().is_empty()
            || k.subject_prefix()
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>', ' ']))
        {
            return bad(format!(
                "{what}: subject = \"{}\": give dot-separated tokens without wildcards",
                k.subject_prefix()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<Config> {
        Config::from_toml(&format!(
            r#"
[[stream]]
name = "levels"
key_fields = ["i"]

[[pipeline]]
name = "mean_1h"
stream = "levels"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "count" }}]
{extra}
"#
        ))
    }

    #[test]
    fn sources_and_sinks_parse_with_their_defaults() {
        let c = config(
            r#"
[[source]]
name = "plant"
kind = "nats"
url = "nats://127.0.0.1:4222"
stream = "levels"
subject = "plant.>"

[[sink]]
name = "pg"
kind = "postgres"
url = "postgresql://127.0.0.1/test"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = &c.sources[0];
        assert_eq!(s.kind, SourceKind::Nats);
        assert_eq!(s.format, SourceFormat::Json);
        assert_eq!(s.jetstream_name(), "plant");
        assert_eq!(s.durable_name(), "reckon-plant");
        assert_eq!((s.batch, s.max_wait.0.0), (1000, 50_000_000));
        assert_eq!(c.sinks[0].table_name(), "reckon_results");
    }

    #[test]
    fn bad_sources_and_sinks_are_refused_naming_what() {
        let cases = [
            (
                "[[source]]\nname = \"a\"\nkind = \"nats\"\nurl = \"nats://x\"\nstream = \"nope\"\nsubject = \"s\"",
                "source `a` feeds stream `nope`",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"mqtt\"\nurl = \"nats://x\"\nstream = \"levels\"\nsubject = \"s\"",
                "must start with mqtt://",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"pulsar\"\nurl = \"x\"\nstream = \"levels\"\nsubject = \"s\"",
                "unknown variant `pulsar`",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"kafka\"\nurl = \"kafka://h\"\nstream = \"levels\"\nsubject = \"s\"",
                "give kafka://host:port",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"kafka\"\nurl = \"kafka://h:9092\"\nstream = \"levels\"\nsubject = \"a b\"",
                "subject = \"a b\"",
            ),
            (
                "[[source]]\nname = \"a\"\nkind = \"nats\"\nurl = \"nats://x\"\nstream = \"levels\"\nsubject = \"s\"\npartition_by = \"partition\"",
                "is for kind = \"kafka\"",
            ),
            (
                "[[sink]]\nname = \"k\"\nkind = \"kafka\"\nurl = \"kafka://h:1\"\ntopic = \"a/b\"",
                "topic = \"a/b\"",
            ),
            (
                "[[sink]]\nname = \"k\"\nkind = \"redis\"\nurl = \"redis://x\"\ntopic = \"t\"",
                "topic and properties is for kind = \"kafka\"",
            ),
            (
                "[[sink]]\nname = \"p\"\nkind = \"postgres\"\nurl = \"postgres://x\"\ntable = \"x; drop\"",
                "table = \"x; drop\"",
            ),
            (
                "[[sink]]\nname = \"p\"\nkind = \"redis\"\nurl = \"redis://x\"\npipelines = [\"other\"]",
                "follows `other`",
            ),
            (
                "[[sink]]\nname = \"p\"\nkind = \"redis\"\nurl = \"redis://x\"\ntable = \"t\"",
                "table is for kind = \"postgres\"",
            ),
        ];
        for (toml, want) in cases {
            match config(toml) {
                Ok(_) => panic!("accepted: {toml}"),
                Err(e) => assert!(e.to_string().contains(want), "{toml}: {e}"),
            }
        }
    }
}
