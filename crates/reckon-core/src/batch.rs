//! Batch computation of every window from a complete set of events.
//!
//! This is what the incremental engine must agree with once all data has arrived (the
//! invariant of `DESIGN.md`), and what `reckon verify` recomputes from the raw log. It
//! shares the per-window [`crate::pipeline`] accumulation with the cold path, so a
//! recomputed window and a batch window are computed by the same code; the tests
//! compare both with an independent, naive oracle in `reckon-testkit`.

use crate::checksum::Checksum;
use crate::error::Result;
use crate::event::{Event, Key, Value};
use crate::pipeline::{Accumulator, FieldSlot};
use crate::spec::PipelineSpec;
use crate::window::Window;
use std::collections::BTreeMap;

/// The result of one window computed in batch.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult {
    /// One value per aggregate, in the spec's order.
    pub values: Vec<Option<Value>>,
    /// Number of events.
    pub count: u64,
    /// Checksum of the events.
    pub checksum: Checksum,
}

/// Every window's batch result, by key and window.
pub type BatchResults = BTreeMap<(Key, Window), WindowResult>;

/// Events that could not be windowed, with their index in the input and the reason.
pub type Rejected = Vec<(usize, crate::Error)>;

/// Computes every window of every key from `events` (in arrival order: with duplicate
/// ids the first copy wins). Events that cannot be windowed are returned in the second
/// list with their index, so nothing is dropped silently.
pub fn compute<'a, I>(spec: &PipelineSpec, events: I) -> Result<(BatchResults, Rejected)>
where
    I: IntoIterator<Item = &'a Event>,
{
    spec.validate()?;
    let mut accs: BTreeMap<(Key, Window), Accumulator> = BTreeMap::new();
    let mut rejected = Vec::new();
    let mut windows = Vec::new();
    let mut slots = vec![FieldSlot::default(); spec.aggregates.len()];
    for (i, raw) in events.into_iter().enumerate() {
        let Some(e) = spec.prepare(raw) else {
            continue;
        };
        let e = &*e;
        windows.clear();
        if let Err(err) = spec.window.assign(e.time, &mut windows) {
            rejected.push((i, err));
            continue;
        }
        let fp = e.id.as_ref().map(|id| id.fingerprint());
        let digest = raw.digest();
        for &w in &windows {
            let acc = accs
                .entry((e.key.clone(), w))
                .or_insert_with(|| Accumulator::new(spec));
            if !acc.has_id(fp) {
                acc.add(spec, &mut slots, e, digest, fp);
            }
        }
    }
    let results = accs
        .into_iter()
        .map(|(k, acc)| {
            let r = WindowResult {
                values: acc.values(),
                count: acc.checksum.count,
                checksum: acc.checksum,
            };
            (k, r)
        })
        .collect();
    Ok((results, rejected))
}
