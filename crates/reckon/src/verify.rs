//! `reckon verify`: recompute every window from the raw log and compare it with the
//! stored latest version — values, count and checksum. Seed 000's checksum task,
//! turned into an auditor that cannot disagree with itself.
//!
//! Each pipeline is recomputed from the events it accepted: the raw log of its stream
//! minus the events this pipeline dead-lettered. Another pipeline on the same stream
//! may have kept an event this one refused (a shorter retention, say), so the raw log
//! alone would report false mismatches.

use anyhow::{Context, Result, bail};
use reckon_core::aggregate::values_agree;
use reckon_core::{EventTime, batch};
use reckon_runtime::Config;
use reckon_store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `reckon verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "reckon.toml")]
    config: PathBuf,
    /// Only this pipeline (default: all).
    #[arg(long, short)]
    pipeline: Option<String>,
}

/// Runs `reckon verify`; exit 1 when any window disagrees.
pub fn run(args: &VerifyArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    // Opening a missing path would create an empty store and "verify" nothing.
    if !config.store.path.exists() {
        bail!(
            "no store at {} (from {}): nothing to verify",
            config.store.path.display(),
            args.config.display()
        );
    }
    if let Some(name) = args.pipeline.as_deref()
        && !config.pipelines.iter().any(|p| p.name == name)
    {
        let known: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no pipeline {name:?} in {}; known pipelines: {}",
            args.config.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    let store = Store::open(&config.store.path)
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let (checked, bad) = check(&config, &store, args.pipeline.as_deref(), &mut |line| {
        println!("{line}")
    })?;
    if bad == 0 {
        println!(
            "verified {checked} windows: every stored result equals its recomputation from the raw log"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{bad} windows disagree with the raw log");
        Ok(ExitCode::from(1))
    }
}

/// Recomputes every stored window (of one pipeline, or all) from the raw log; reports
/// each disagreement through `report`. Returns (windows checked, disagreements).
pub fn check(
    config: &Config,
    store: &Store,
    only: Option<&str>,
    report: &mut dyn FnMut(String),
) -> Result<(usize, usize)> {
    let mut bad = 0usize;
    let mut checked = 0usize;
    for p in &config.pipelines {
        if only.is_some_and(|name| name != p.name) {
            continue;
        }
        // A rollup is checked against the raw events of the pipeline at the bottom of
        // its chain, aggregated straight into the rollup's windows: its merged states
        // must give what one batch over the events gives.
        let base = config.base_of(p).unwrap_or(p);
        let mut spec = base.spec()?;
        if p.input.is_some() {
            let rollup = config.rollup_spec(p)?;
            spec.name = rollup.name;
            spec.window = rollup.window;
        }
        let stream = base.stream.as_deref().unwrap_or_default();
        let raw = accepted_events(
            store.raw_scan(stream)?,
            &base.name,
            store.dead_letters(stream)?,
        );
        let (expected, rejected) = batch::compute(&spec, &raw)?;
        for (i, e) in &rejected {
            report(format!("{}: raw event {i} cannot be windowed: {e}", p.name));
            bad += 1;
        }
        let stored = store.windows(&p.name, None, EventTime::MIN, EventTime::MAX, None)?;
        // Windows the watermark has passed must have a result; open ones may not yet.
        let closed_before = stored
            .iter()
            .map(|e| e.watermark.0)
            .max()
            .unwrap_or(EventTime::MIN);
        let mut seen = std::collections::HashSet::new();
        for em in &stored {
            checked += 1;
            seen.insert((em.key.clone(), em.window));
            match expected.get(&(em.key.clone(), em.window)) {
                None => {
                    bad += 1;
                    report(format!(
                        "{} {} {}: stored v{} but the raw log has no event in it",
                        p.name, em.key, em.window, em.version.0
                    ));
                }
                Some(r) => {
                    let values_ok = r
                        .values
                        .iter()
                        .zip(&em.values)
                        .all(|(a, b)| values_agree(a.as_ref(), b.as_ref()));
                    if r.checksum != em.checksum || r.count != em.count || !values_ok {
                        bad += 1;
                        report(format!(
                            "{} {} {}: stored v{} count {} checksum {} values {:?}; raw log gives count {} checksum {} values {:?}",
                            p.name,
                            em.key,
                            em.window,
                            em.version.0,
                            em.count,
                            em.checksum,
                            em.values,
                            r.count,
                            r.checksum,
                            r.values
                        ));
                    }
                }
            }
        }
        for ((key, window), r) in &expected {
            if window.end <= closed_before && !seen.contains(&(key.clone(), *window)) {
                bad += 1;
                report(format!(
                    "{} {} {}: closed, {} raw events, but no stored result",
                    p.name, key, window, r.count
                ));
            }
        }
    }
    Ok((checked, bad))
}

/// The raw events of a stream that `pipeline` accepted: one raw copy is removed for
/// each of its dead letters. Events are matched by content, as a multiset, so of two
/// equal raw events of which one was dead-lettered, the other is still counted.
fn accepted_events(
    raw: Vec<reckon_core::Event>,
    pipeline: &str,
    dead: Vec<reckon_store::DeadLetter>,
) -> Vec<reckon_core::Event> {
    let mut refused: Vec<reckon_core::Event> = dead
        .into_iter()
        .filter(|d| &*d.pipeline == pipeline)
        .map(|d| d.event)
        .collect();
    if refused.is_empty() {
        return raw;
    }
    // Later raw copies are the ones most likely refused (a re-send beyond retention),
    // so match from the end.
    let mut kept: Vec<reckon_core::Event> = Vec::with_capacity(raw.len());
    for e in raw.into_iter().rev() {
        if let Some(i) = refused.iter().position(|r| *r == e) {
            refused.swap_remove(i);
        } else {
            kept.push(e);
        }
    }
    kept.reverse();
    kept
}
