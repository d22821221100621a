//! The `reckon` binary: subcommands, argument parsing and exit codes. Logic lives in
//! the library crates; this file only wires them to a terminal.
//!
//! Exit codes: 0 success; 1 the run found a wrong result (a window that disagrees with
//! its batch recomputation); 2 bad usage or configuration, or the store could not be
//! used (the message says which).

mod admin;
mod backfill;
mod demo;
mod demo_live;
mod ingest;
#[cfg(feature = "kafka")]
mod kafka_mock;
mod query;
mod repair;
mod replay;
mod serve;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// reckon keeps event-time aggregates correct when data arrives late.
#[derive(Debug, Parser)]
#[command(name = "reckon", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run seed 000's water-level workload through the server and watch late data being
    /// corrected: events/s, corrections with old and new values, the webhook message,
    /// where to look (change feed, queries, metrics), and a final check of every window
    /// against a batch recompute. `--in-process` runs the engine alone, as fast as it goes.
    Demo(demo::DemoArgs),
    /// Run the HTTP server on a configuration file (ingest, queries, change feed,
    /// webhooks, metrics) until Ctrl-C or SIGTERM.
    Serve(serve::ServeArgs),
    /// Replay a file of events (NDJSON, CSV or InfluxDB line protocol) into a stream,
    /// durably, with a progress bar; an interrupted replay resumes where it stopped.
    Replay(replay::ReplayArgs),
    /// Ask a running server: windows (JSON or CSV, `--as-of`), a window's history, dead
    /// letters, or the change feed (`changes --follow` prints corrections as they land).
    Query(query::QueryArgs),
    /// Read NDJSON events from standard input into a stream; prints `ack <lines> <seq>`
    /// after each batch is durable.
    Ingest(ingest::IngestArgs),
    /// Recompute every stored window from the raw log and report any that disagrees
    /// (values, count or checksum); exit 1 if one does.
    Verify(verify::VerifyArgs),
    /// Recover a store poisoned by far-future events or finished by `ingest --finish`:
    /// events beyond `max_future` become dead letters, pipelines are rebuilt.
    Repair(repair::RepairArgs),
    /// Create or list a running server's tenants (an operator's admin token).
    Tenant(admin::TenantArgs),
    /// Create, list or revoke a running server's tokens (`--admin` for the first).
    Token(admin::TokenArgs),
    /// Define streams, pipelines and alert rules in a running server, without a
    /// restart (`docs/definitions.md`): `apply` a TOML file, `list`, `show`, `delete`.
    Define(admin::DefineArgs),
    /// Alert rules: `backfill` computes a rule's timeline over stored history.
    Rules(admin::RulesArgs),
    /// Delta Lake backfills (seed 002): `plan` the partitions that got late data since
    /// the last plan, from the table's log; `status` of the cursors.
    Backfill(backfill::BackfillArgs),
    /// Run librdkafka's mock Kafka cluster in memory and print its bootstrap address,
    /// to try the Kafka source and sink without a broker (not a Kafka broker: nothing
    /// is kept).
    #[cfg(feature = "kafka")]
    KafkaMock(kafka_mock::KafkaMockArgs),
}

/// The filter without `RECKON_LOG`: reckon's own `info`, and only warnings of the
/// store's engine (fjall logs every keyspace it recovers at `info`).
const DEFAULT_LOG: &str = "info,fjall=warn,lsm_tree=warn";

/// Log lines go to standard error, filtered by `RECKON_LOG` (`tracing_subscriber`'s
/// filter syntax, e.g. `warn` or `info,reckon_server=debug`; default `info`, the store engine at `warn`). Standard
/// output stays for what scripts read (`reckon listening on …`, `ack …`, query answers).
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let (filter, bad) = match std::env::var("RECKON_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(DEFAULT_LOG), Some((v, e))),
        },
        _ => (EnvFilter::new(DEFAULT_LOG), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some((value, e)) = bad {
        tracing::warn!("RECKON_LOG={value:?} is not a valid filter ({e}); logging at info");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // The one TLS provider (ring) for the HTTP clients (webhooks, `reckon query`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Query(args) => query::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Ingest(args) => ingest::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Repair(args) => repair::run(&args),
        Command::Tenant(args) => admin::tenant(&args),
        Command::Token(args) => admin::token(&args),
        Command::Define(args) => admin::define(&args),
        Command::Rules(args) => admin::rules(&args),
        Command::Backfill(args) => backfill::run(&args),
        #[cfg(feature = "kafka")]
        Command::KafkaMock(args) => kafka_mock::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
