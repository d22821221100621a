//! `reckon repair`: recovers a store poisoned by far-future events (written before the
//! time guard, or with it off) or finished by `reckon ingest --finish`.
//!
//! For every stream whose events beyond `now + max_future` are in the raw log, or one
//! of whose pipelines is finished:
//! 1. those events become dead letters of kind `future` (for every reader);
//! 2. every pipeline of the stream is rebuilt from the remaining raw log (in ingest
//!    order), its checkpoint replaced;
//! 3. the stream's dead letters of kind `beyond_retention` are offered again to the
//!    rebuilt pipelines: accepted ones go into the raw log, the others stay dead letters;
//! 4. every window the repair touched, and every window the rebuilt pipelines hold, is
//!    restated against its stored version ([`reckon_core::Pipeline::restate`]): a changed
//!    result is written as the next version, so versions stay monotone for sinks; a
//!    window only quarantined events made is removed from the store with its history
//!    and change-feed entries (a sink that already applied it keeps it: repair prints
//!    how many were removed).
//!
//! Everything of steps 1–4 is one atomic commit; the quarantined raw rows and the
//! re-offered dead letters are deleted after it (a crash between leaves extra copies,
//! never a loss, and running repair again finishes the job).
//!
//! Reconciliations reading a repaired stream are not rebuilt (their state cannot be
//! rebuilt from the raw log of one stream alone); the report names them.

use crate::config::Config;
use crate::error::{Error, Result};
use reckon_core::{EventTime, Key, Outcome, PartitionId, Pipeline, Prior, ProcessingTime, Window};
use reckon_store::{Checkpoint, CommitBatch, DeadLetter, RawRecord, Store};
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a repair did, per stream.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RepairReport {
    /// One entry per repaired stream.
    pub streams: Vec<StreamRepair>,
}

/// What a repair did to one stream.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StreamRepair {
    /// The stream.
    pub stream: String,
    /// Raw events moved to dead letters (kind `future`).
    pub quarantined: u64,
    /// Pipelines that had been finished and were reopened.
    pub reopened: Vec<String>,
    /// Pipelines rebuilt from the raw log.
    pub rebuilt: Vec<String>,
    /// Dead letters of kind `beyond_retention` offered again, and how many of them
    /// the rebuilt pipelines accepted (now in the raw log).
    pub reoffered: u64,
    /// Re-offered events now in the raw log.
    pub readmitted: u64,
    /// Windows written with a new version (corrections).
    pub restated: u64,
    /// Windows removed: only quarantined events had made them.
    pub removed: u64,
    /// Reconciliations and running totals reading the stream that were left as they
    /// were (they are not rebuilt from the kept events).
    pub reconciles_not_rebuilt: Vec<String>,
}

/// Repairs the store of `config` (open, and not used by anyone else) at processing
/// time `now` (the wall clock, for the time guard).
pub fn repair(config: &Config, store: &Store, now: ProcessingTime) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    for stream in &config.streams {
        let limit = stream.max_future.0.map(|s| EventTime(now.0).plus(s));
        let pipelines: Vec<_> = config
            .pipelines
            .iter()
            .filter(|p| p.stream.as_deref() == Some(stream.name.as_str()))
            .collect();
        let mut reopened = Vec::new();
        for p in &pipelines {
            if let Some(cp) = store.checkpoint(&p.name)? {
                let engine = Pipeline::restore(p.spec()?, &cp.snapshot)?;
                if engine.watermark().0 == EventTime::MAX {
                    reopened.push(p.name.clone());
                }
            }
        }
        let raw = store.raw_records(&stream.name)?;
        let (quarantined, kept): (Vec<RawRecord>, Vec<RawRecord>) = raw
            .into_iter()
            .partition(|r| limit.is_some_and(|l| r.event.time > l));
        if quarantined.is_empty() && reopened.is_empty() {
            continue;
        }
        let mut sr = StreamRepair {
            stream: stream.name.clone(),
            quarantined: quarantined.len() as u64,
            reopened,
            reconciles_not_rebuilt: config
                .reconciles
                .iter()
                .filter(|r| r.events.stream == stream.name || r.audit.stream == stream.name)
                .map(|r| r.name.clone())
                .chain(
                    config
                        .running_totals
                        .iter()
                        .filter(|r| r.stream == stream.name)
                        .map(|r| r.name.clone()),
                )
                .collect(),
            ..StreamRepair::default()
        };
        let stream_name: Arc<str> = Arc::from(stream.name.as_str());
        let mut batch = CommitBatch::default();
        let mut removed: Vec<(Arc<str>, Key, EventTime)> = Vec::new();
        let readers: Vec<Arc<str>> = pipelines
            .iter()
            .map(|p| Arc::from(p.name.as_str()))
            .chain(
                sr.reconciles_not_rebuilt
                    .iter()
                    .map(|r| Arc::from(r.as_str())),
            )
            .collect();
        for q in &quarantined {
            for pipeline in &readers {
                batch.dead_letters.push(DeadLetter {
                    pipeline: pipeline.clone(),
                    stream: stream_name.clone(),
                    event: q.event.clone(),
                    kind: "future".into(),
                    reason: format!(
                        "event time {} is beyond the time guard of stream `{}` (moved out of the raw log by `reckon repair` at {now})",
                        q.event.time, stream.name
                    ),
                    at: now,
                });
            }
        }
        // The re-offered events: each event once (one dead letter per pipeline).
        let dead_up_to = store.last_dead_letter();
        let mut offered: Vec<DeadLetter> = Vec::new();
        for d in store.dead_letters(&stream.name)? {
            if d.kind == "beyond_retention"
                && !offered.iter().any(|o| o.event == d.event && o.at == d.at)
                && !kept.iter().any(|r| r.event == d.event)
            {
                offered.push(d);
            }
        }
        sr.reoffered = offered.len() as u64;
        // Arrival order: the raw log by ingest time, the re-offered events at the time
        // they were dead-lettered.
        enum Item<'a> {
            Raw(&'a RawRecord),
            Offered(usize),
        }
        let mut items: Vec<(ProcessingTime, Item<'_>)> = kept
            .iter()
            .map(|r| (r.ingested_at, Item::Raw(r)))
            .chain(
                offered
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (d.at, Item::Offered(i))),
            )
            .collect();
        items.sort_by_key(|(t, _)| *t);
        let mut engines = Vec::new();
        for p in &pipelines {
            engines.push(Pipeline::new(p.spec()?)?);
        }
        let mut accepted = vec![false; offered.len()];
        let mut refused: Vec<Vec<(Arc<str>, String)>> = vec![Vec::new(); offered.len()];
        let mut sink = Vec::new();
        for (at, item) in &items {
            for (i, engine) in engines.iter_mut().enumerate() {
                engine.advance(*at, &mut sink);
                match item {
                    Item::Raw(r) => {
                        // An event another pipeline kept: this one's dead letter of it
                        // is written again (the old ones of its kind are replaced).
                        if let Outcome::DeadLettered(
                            reason @ reckon_core::DeadLetterReason::BeyondRetention { .. },
                        ) = engine.ingest(r.partition, &r.event, &mut sink)
                        {
                            batch.dead_letters.push(DeadLetter {
                                pipeline: Arc::from(pipelines[i].name.as_str()),
                                stream: stream_name.clone(),
                                event: r.event.clone(),
                                kind: "beyond_retention".into(),
                                reason: reason.to_string(),
                                at: now,
                            });
                        }
                    }
                    Item::Offered(j) => {
                        match engine.ingest(PartitionId(0), &offered[*j].event, &mut sink) {
                            Outcome::DeadLettered(reason) => refused[*j]
                                .push((Arc::from(pipelines[i].name.as_str()), reason.to_string())),
                            _ => accepted[*j] = true,
                        }
                    }
                }
            }
            // The engines' own emissions restart at version 1: the restate below
            // writes what changed with versions above the stored ones instead.
            sink.clear();
        }
        let mut admitted: Vec<RawRecord> = Vec::new();
        for (j, d) in offered.iter().enumerate() {
            if accepted[j] {
                admitted.push(RawRecord {
                    partition: PartitionId(0),
                    ingested_at: d.at,
                    event: d.event.clone(),
                });
            }
            for (pipeline, reason) in &refused[j] {
                batch.dead_letters.push(DeadLetter {
                    pipeline: pipeline.clone(),
                    stream: stream_name.clone(),
                    event: d.event.clone(),
                    kind: "beyond_retention".into(),
                    reason: reason.clone(),
                    at: now,
                });
            }
        }
        sr.readmitted = admitted.len() as u64;
        // Restate every window the repair may have changed, and every held window (so
        // its next emission continues above the stored version).
        for (i, engine) in engines.iter_mut().enumerate() {
            let spec = engine.spec().clone();
            let mut windows: BTreeSet<(Key, Window)> = engine.held_windows().into_iter().collect();
            let mut ws = Vec::new();
            for e in quarantined
                .iter()
                .map(|r| &r.event)
                .chain(admitted.iter().map(|r| &r.event))
            {
                ws.clear();
                if spec.window.assign(e.time, &mut ws).is_ok() {
                    windows.extend(ws.iter().map(|w| (e.key.clone(), *w)));
                }
            }
            for (key, w) in windows {
                let prior = store.latest(&spec.name, &key, w.start)?.map(|e| Prior {
                    version: e.version,
                    checksum: e.checksum,
                });
                let stored = store.raw_range(&stream.name, &key, w.start, w.end)?;
                let events = stored
                    .iter()
                    .filter(|e| limit.is_none_or(|l| e.time <= l))
                    .chain(
                        admitted
                            .iter()
                            .map(|r| &r.event)
                            .filter(|e| e.key == key && e.time >= w.start && e.time < w.end),
                    )
                    .collect::<Vec<_>>();
                if events.is_empty() {
                    // Only quarantined events made it: removed below, not restated.
                    if prior.is_some() {
                        removed.push((spec.name.clone(), key, w.start));
                    }
                    continue;
                }
                if let Some(em) = engine
                    .restate(&key, w, prior, events)
                    .map_err(Error::Engine)?
                {
                    batch.emissions.push(em);
                    sr.restated += 1;
                }
            }
            sr.rebuilt.push(pipelines[i].name.clone());
        }
        batch.events = admitted;
        let seq = store.last_seq() + batch.events.len() as u64;
        for engine in &engines {
            batch.checkpoints.push(Checkpoint {
                pipeline: engine.spec().name.clone(),
                seq,
                snapshot: engine.snapshot()?,
            });
        }
        store.commit(batch)?;
        if let Some(l) = limit {
            store.remove_raw_after(&stream.name, l)?;
        }
        store.remove_dead_letters(&stream.name, "beyond_retention", dead_up_to)?;
        sr.removed = removed.len() as u64;
        store.remove_windows(&removed)?;
        report.streams.push(sr);
    }
    Ok(report)
}
