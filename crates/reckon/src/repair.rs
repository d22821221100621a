//! `reckon repair`: recovers a store poisoned by far-future events (written before the
//! time guard existed, or with `max_future = "off"`) or finished by
//! `reckon ingest --finish`. The work is `reckon_runtime::repair`; this prints what it
//! did. Stop `reckon serve` first: the store is opened exclusively.

use anyhow::{Context, Result};
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `reckon repair`.
#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// The configuration file (its `max_future` per stream is the guard applied).
    #[arg(long, short, default_value = "reckon.toml")]
    config: PathBuf,
}

/// Runs `reckon repair`.
pub fn run(args: &RepairArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    if !config.store.path.exists() {
        anyhow::bail!(
            "there is no store at {} (from {}); nothing to repair",
            config.store.path.display(),
            args.config.display()
        );
    }
    let store = Store::open(&config.store.path)
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let report = reckon_runtime::repair(&config, &store, crate::ingest::wall_clock())?;
    // The repaired store opens like any other (checkpoints restore, the journal replays).
    drop(Runtime::with_store(
        &config,
        store,
        RuntimeOptions::default(),
    )?);
    if report.streams.is_empty() {
        println!(
            "nothing to repair: no stream has events beyond its max_future, and no pipeline is finished"
        );
    }
    for s in &report.streams {
        println!(
            "stream `{}`: {} events beyond max_future moved to dead letters (kind future); \
             {} dead letters re-offered, {} accepted; {} windows restated, {} removed; rebuilt: {}{}",
            s.stream,
            s.quarantined,
            s.reoffered,
            s.readmitted,
            s.restated,
            s.removed,
            if s.rebuilt.is_empty() {
                "none".to_string()
            } else {
                s.rebuilt.join(", ")
            },
            if s.reopened.is_empty() {
                String::new()
            } else {
                format!(" (reopened after --finish: {})", s.reopened.join(", "))
            }
        );
        if !s.reconciles_not_rebuilt.is_empty() {
            println!(
                "  reconciliations reading it were left as they were: {}",
                s.reconciles_not_rebuilt.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
