//! `reckon kafka-mock`: librdkafka's mock Kafka cluster, in memory, for trying the Kafka
//! source and sink without a broker (`examples/connectors/kafka.sh`).
//!
//! It speaks the Kafka protocol (produce, fetch, consumer groups, offset commits), so
//! `kcat` and any Kafka client can talk to it; it keeps nothing on disk and is not a
//! Kafka broker. reckon's own tests use the same mock.

use anyhow::{Context as _, Result};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct KafkaMockArgs {
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 1)]
    brokers: i32,
    /// A topic to create, `name` or `name:partitions` (default 1 partition); topics
    /// that are not created are made on first use with 4 partitions.
    #[arg(long = "topic")]
    topics: Vec<String>,
}

pub fn run(args: &KafkaMockArgs) -> Result<ExitCode> {
    let mock = rdkafka::mocking::MockCluster::new(args.brokers)
        .context("starting librdkafka's mock cluster")?;
    for t in &args.topics {
        let (name, partitions) = match t.split_once(':') {
            Some((n, p)) => (
                n,
                p.parse::<i32>()
                    .with_context(|| format!("--topic {t}: `{p}` is not a partition count"))?,
            ),
            None => (t.as_str(), 1),
        };
        mock.create_topic(name, partitions, 1)
            .with_context(|| format!("creating topic `{name}`"))?;
    }
    // The one line a script reads: where to connect.
    println!("{}", mock.bootstrap_servers());
    tracing::info!(
        "mock Kafka cluster on {} ({} broker(s)); Ctrl-C or SIGTERM stops it",
        mock.bootstrap_servers(),
        args.brokers
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        })?;
    drop(mock);
    Ok(ExitCode::SUCCESS)
}
