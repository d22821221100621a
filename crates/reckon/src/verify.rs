//! `reckon verify`: recompute every window from the raw log and compare it with the
//! stored latest version — values, count and checksum. Seed 000's checksum task,
//! turned into an auditor that cannot disagree with itself.

use anyhow::{Context, Result};
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
        let spec = p.spec()?;
        let raw = store.raw_scan(&p.stream)?;
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
