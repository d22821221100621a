//! reckon's test kit: an independent batch oracle and a driver that plays the
//! runtime's part around the pure engine (raw log, cold recomputes, a versioned sink,
//! crashes with restore and replay).
//!
//! The oracle is deliberately naive and shares no aggregation code with the engine:
//! it windows events with its own arithmetic, keeps every value in a list and computes
//! each aggregate from the list. If the engine and the oracle agree on shuffled, late,
//! duplicated, crash-interrupted input, the engine is right.

pub use reckon_workload::{Arrival, RandomWorkload, Seed000, SplitMix64};

pub mod alert;
pub mod brokers;
pub mod bts;
pub mod python;
pub mod reconcile;
pub mod rollup;
pub mod running;

use reckon_core::{
    AggKind, DeadLetterReason, Emission, EmissionKind, Event, EventTime, Key, Outcome, Pipeline,
    PipelineSpec, Prior, Value, Window, WindowSpec,
};
use std::collections::{BTreeMap, HashSet};

/// What the oracle expects of one aggregate.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// This exact value (floats within a relative 1e-9 of the oracle's own exact reference).
    Exact(Option<Value>),
    /// An approximate aggregate: within `relative * |value| + absolute` of `value`
    /// (the exact answer).
    Approx {
        /// The exact answer.
        value: Option<f64>,
        /// Allowed relative error.
        relative: f64,
        /// Allowed absolute error on top (HyperLogLog can be off by one at tiny
        /// cardinalities when two values share a register).
        absolute: f64,
    },
}

impl Expected {
    /// Whether `got` meets the expectation.
    pub fn accepts(&self, got: Option<&Value>) -> bool {
        match self {
            Expected::Exact(v) => reckon_core::aggregate::values_agree(v.as_ref(), got),
            Expected::Approx { value: None, .. } => got.is_none(),
            Expected::Approx {
                value: Some(x),
                relative,
                absolute,
            } => got
                .and_then(Value::as_f64)
                .is_some_and(|g| (g - x).abs() <= relative * x.abs() + absolute + 1e-9),
        }
    }
}

/// The oracle's result for one window.
#[derive(Clone, Debug, PartialEq)]
pub struct OracleWindow {
    /// Number of distinct events.
    pub count: u64,
    /// Wrapping sum of the events' digests.
    pub hash: u64,
    /// One expectation per aggregate.
    pub values: Vec<Expected>,
}

/// The windows of `t`, by plain arithmetic (calendar windows: the engine's assigner,
/// which has its own DST tests).
pub fn oracle_windows(spec: &WindowSpec, t: EventTime) -> Vec<Window> {
    let floor = |x: i128, step: i128| x.div_euclid(step) * step;
    let w = |s: i128, size: i128| Window {
        start: EventTime(s as i64),
        end: EventTime((s + size) as i64),
    };
    let t128 = i128::from(t.0);
    match spec {
        WindowSpec::Tumbling { size, offset } => {
            let (size, off) = (i128::from(size.0), i128::from(offset.0));
            vec![w(floor(t128 - off, size) + off, size)]
        }
        WindowSpec::Hopping {
            size,
            slide,
            offset,
        } => {
            let (size, slide, off) = (
                i128::from(size.0),
                i128::from(slide.0),
                i128::from(offset.0),
            );
            // Every grid start in (t - size, t].
            let mut s = floor(t128 - off, slide) + off;
            let mut out = Vec::new();
            while s > t128 - size {
                out.push(w(s, size));
                s -= slide;
            }
            out.reverse();
            out
        }
        WindowSpec::Calendar { .. } => {
            let mut out = Vec::new();
            spec.assign(t, &mut out).unwrap_or_default();
            out
        }
    }
}

/// Computes every window of `events` naively. Duplicates by id: the first wins.
pub fn oracle(spec: &PipelineSpec, events: &[Event]) -> BTreeMap<(Key, Window), OracleWindow> {
    let mut seen = HashSet::new();
    let mut groups: BTreeMap<(Key, Window), Vec<&Event>> = BTreeMap::new();
    for e in events {
        if let Some(id) = &e.id
            && !seen.insert(id.clone())
        {
            continue;
        }
        for w in oracle_windows(&spec.window, e.time) {
            groups.entry((e.key.clone(), w)).or_default().push(e);
        }
    }
    groups
        .into_iter()
        .map(|(k, evs)| {
            let ow = OracleWindow {
                count: evs.len() as u64,
                hash: evs.iter().fold(0u64, |h, e| h.wrapping_add(e.digest())),
                values: spec
                    .aggregates
                    .iter()
                    .map(|a| expect(a.kind, a.field.as_deref(), &evs))
                    .collect(),
            };
            (k, ow)
        })
        .collect()
}

/// One aggregate's expectation over a window's events (shared with [`rollup`]).
pub(crate) fn expect(kind: AggKind, field: Option<&str>, evs: &[&Event]) -> Expected {
    let Some(field) = field else {
        return Expected::Exact(Some(Value::I64(evs.len() as i64)));
    };
    let present: Vec<(&Event, &Value)> = evs
        .iter()
        .filter_map(|e| e.field(field).map(|v| (*e, v)))
        .collect();
    let nums: Vec<&Value> = present
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.as_f64().is_some())
        .collect();
    let floats: Vec<f64> = nums.iter().filter_map(|v| v.as_f64()).collect();
    let exact = |v: Option<Value>| Expected::Exact(v);
    let by_time = |e: &&(&Event, &Value)| (e.0.time, e.0.digest());
    match kind {
        AggKind::Count => exact(Some(Value::I64(present.len() as i64))),
        AggKind::Sum | AggKind::Mean => {
            if nums.is_empty() {
                return exact(None);
            }
            let ints: i128 = nums
                .iter()
                .filter_map(|v| {
                    if let Value::I64(i) = v {
                        Some(i128::from(*i))
                    } else {
                        None
                    }
                })
                .sum();
            let fl: Vec<f64> = nums
                .iter()
                .filter_map(|v| {
                    if let Value::F64(x) = v {
                        Some(*x)
                    } else {
                        None
                    }
                })
                .collect();
            // The exact sum, rounded once (Shewchuk), however the terms cancel.
            let total = ints as f64 + fsum(&fl);
            if kind == AggKind::Mean {
                exact(Some(Value::F64(total / nums.len() as f64)))
            } else if fl.is_empty() && i64::try_from(ints).is_ok() {
                exact(Some(Value::I64(ints as i64)))
            } else {
                exact(Some(Value::F64(total)))
            }
        }
        AggKind::Min | AggKind::Max => {
            let key = |v: &&Value| (v.as_f64().unwrap_or(0.0), matches!(v, Value::F64(_)));
            let mut sorted = nums.clone();
            sorted.sort_by(|a, b| key(a).0.total_cmp(&key(b).0).then(key(a).1.cmp(&key(b).1)));
            let pick = if kind == AggKind::Min {
                sorted.first()
            } else {
                sorted.last()
            };
            exact(pick.map(|v| (*v).clone()))
        }
        AggKind::First => exact(
            present
                .iter()
                .min_by_key(by_time)
                .map(|(_, v)| (*v).clone()),
        ),
        AggKind::Last => exact(
            present
                .iter()
                .max_by_key(by_time)
                .map(|(_, v)| (*v).clone()),
        ),
        AggKind::Variance | AggKind::Stddev => {
            if floats.len() < 2 {
                return exact(None);
            }
            let n = floats.len() as f64;
            let mean = floats.iter().sum::<f64>() / n;
            let var = floats.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
            // Two-pass and Welford differ by rounding: compare loosely.
            let value = if kind == AggKind::Variance {
                var
            } else {
                var.sqrt()
            };
            Expected::Approx {
                value: Some(value),
                relative: 1e-7,
                absolute: 1e-9,
            }
        }
        AggKind::DistinctApprox => {
            if present.is_empty() {
                return Expected::Approx {
                    value: None,
                    relative: 0.0,
                    absolute: 0.0,
                };
            }
            let mut distinct: Vec<String> = present.iter().map(|(_, v)| format!("{v:?}")).collect();
            distinct.sort();
            distinct.dedup();
            Expected::Approx {
                value: Some(distinct.len() as f64),
                relative: 0.05,
                absolute: 2.0,
            }
        }
        AggKind::Quantile { q, accuracy } => {
            if floats.is_empty() {
                return Expected::Approx {
                    value: None,
                    relative: 0.0,
                    absolute: 0.0,
                };
            }
            let mut s = floats.clone();
            s.sort_by(f64::total_cmp);
            let rank = (q * (s.len() - 1) as f64).floor() as usize;
            Expected::Approx {
                value: Some(s[rank.min(s.len() - 1)]),
                relative: accuracy,
                absolute: 0.0,
            }
        }
    }
}

/// One entry of the driver's journal: what the runtime would log so that a replay
/// after a crash sees exactly what the first run saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// An accepted event (not a dead letter).
    Arrive(Arrival),
    /// Processing time passed with no event.
    Tick(reckon_core::ProcessingTime),
}

/// The sum of `xs` as if computed exactly and rounded once (Shewchuk's algorithm, as
/// Python's `math.fsum`): the oracle's reference for sums whose terms cancel.
pub fn fsum(xs: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &x0 in xs {
        let mut x = x0;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        partials.push(x);
    }
    // Non-overlapping partials in increasing magnitude: add from the largest.
    partials.iter().rev().fold(0.0, |acc, p| acc + p)
}

/// Plays the runtime around the engine: keeps a journal (the raw log plus ticks),
/// recomputes cold windows from it, upserts emissions into a versioned sink, stores
/// dead letters, and can crash: restore the last checkpoint and replay the journal
/// written after it, while the sink keeps everything it already had.
#[derive(Debug)]
pub struct Driver {
    /// The engine.
    pub pipeline: Pipeline,
    spec: PipelineSpec,
    /// Accepted events and ticks, in order.
    pub journal: Vec<Entry>,
    /// Dead letters with their reasons.
    pub dead_letters: Vec<(Event, DeadLetterReason)>,
    /// The sink: latest version of every window.
    pub latest: BTreeMap<(Key, Window), Emission>,
    /// Every emission, in order (replays included).
    pub emissions: Vec<Emission>,
    /// Checkpoint: the engine snapshot and the journal length it covers.
    checkpoint: Option<(Vec<u8>, usize)>,
    /// Every version ever emitted per window: a replay must reproduce each exactly.
    versions: std::collections::HashMap<(Key, Window, u32), Emission>,
    buf: Vec<Emission>,
}

impl Driver {
    /// A driver around a new pipeline.
    pub fn new(spec: PipelineSpec) -> Driver {
        Driver {
            pipeline: Pipeline::new(spec.clone()).expect("valid spec"),
            spec,
            journal: Vec::new(),
            dead_letters: Vec::new(),
            latest: BTreeMap::new(),
            emissions: Vec::new(),
            checkpoint: None,
            versions: std::collections::HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// One event arrives.
    pub fn arrive(&mut self, a: &Arrival) {
        self.pipeline.advance(a.at, &mut self.buf);
        let outcome = self.pipeline.ingest(a.partition, &a.event, &mut self.buf);
        if let Outcome::DeadLettered(reason) = outcome {
            self.dead_letters.push((a.event.clone(), reason));
            // The raw log will not hold it, but its arrival advanced processing time:
            // journal that, or a replay would follow another processing-time history.
            self.journal.push(Entry::Tick(a.at));
        } else {
            // The runtime appends the event to the raw log before any recompute reads it.
            self.journal.push(Entry::Arrive(a.clone()));
            self.settle(outcome);
        }
        self.flush();
    }

    /// Processing time passes with no event.
    pub fn tick(&mut self, now: reckon_core::ProcessingTime) {
        self.journal.push(Entry::Tick(now));
        self.pipeline.advance(now, &mut self.buf);
        self.flush();
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Outcome::Recompute { key, windows } = outcome {
            for w in windows {
                // Emissions before this one must reach the sink first: the prior
                // version may be among them.
                self.flush();
                let prior = self.latest.get(&(key.clone(), w)).map(|e| Prior {
                    version: e.version,
                    checksum: e.checksum,
                });
                let evs = self.journal.iter().filter_map(|e| match e {
                    Entry::Arrive(a) => Some(&a.event),
                    Entry::Tick(_) => None,
                });
                if let Some(em) = self
                    .pipeline
                    .recompute(&key, w, prior, evs)
                    .expect("recompute")
                {
                    self.buf.push(em);
                }
            }
        }
    }

    /// The input is complete.
    pub fn finish(&mut self) {
        self.pipeline.finish(&mut self.buf);
        self.flush();
    }

    /// Takes a checkpoint of the engine state now.
    pub fn checkpoint(&mut self) {
        let snap = self.pipeline.snapshot().expect("snapshot");
        self.checkpoint = Some((snap, self.journal.len()));
    }

    /// Crashes: the engine loses its memory, restarts from the last checkpoint (or
    /// from nothing) and replays the journal written since. The sink keeps what it had.
    pub fn crash_and_recover(&mut self) {
        let (pipeline, from) = match &self.checkpoint {
            Some((snap, n)) => (
                Pipeline::restore(self.spec.clone(), snap).expect("restore"),
                *n,
            ),
            None => (Pipeline::new(self.spec.clone()).expect("spec"), 0),
        };
        self.pipeline = pipeline;
        for i in from..self.journal.len() {
            match self.journal[i].clone() {
                Entry::Tick(now) => self.pipeline.advance(now, &mut self.buf),
                Entry::Arrive(a) => {
                    self.pipeline.advance(a.at, &mut self.buf);
                    let outcome = self.pipeline.ingest(a.partition, &a.event, &mut self.buf);
                    assert!(
                        !matches!(outcome, Outcome::DeadLettered(_)),
                        "replay dead-lettered an event the first run accepted: {a:?}"
                    );
                    self.settle(outcome);
                }
            }
            self.flush();
        }
    }

    fn flush(&mut self) {
        for em in self.buf.drain(..) {
            check_emission_timing(&self.spec, &em);
            let k = (em.key.clone(), em.window);
            // A replay must reproduce every version emitted before, bit for bit
            // (emission time and watermark aside), not only the latest one.
            match self.versions.get(&(k.0.clone(), k.1, em.version.0)) {
                Some(first) => assert_eq!(
                    (&first.values, first.checksum, first.kind),
                    (&em.values, em.checksum, em.kind),
                    "replayed version {} of {:?} differs from the first emission",
                    em.version,
                    k
                ),
                None => {
                    self.versions
                        .insert((k.0.clone(), k.1, em.version.0), em.clone());
                }
            }
            if self
                .latest
                .get(&k)
                .is_none_or(|cur| cur.version < em.version)
            {
                self.latest.insert(k, em.clone());
            }
            self.emissions.push(em);
        }
    }

    /// Events in the raw log (accepted, in arrival order).
    pub fn raw_events(&self) -> Vec<Event> {
        self.journal
            .iter()
            .filter_map(|e| match e {
                Entry::Arrive(a) => Some(a.event.clone()),
                Entry::Tick(_) => None,
            })
            .collect()
    }
}

/// The emission kinds' timing rules: no on-time result before the watermark passes the
/// window end, early ones only while it is open, late ones only within allowed
/// lateness, recomputed ones only beyond it.
pub fn check_emission_timing(spec: &PipelineSpec, em: &Emission) {
    let (wm, end) = (em.watermark.0, em.window.end);
    let hot_until = end.plus(spec.allowed_lateness);
    let ok = match em.kind {
        EmissionKind::Early => wm < end,
        EmissionKind::OnTime => end <= wm,
        EmissionKind::Late => end <= wm && (wm < hot_until || wm == EventTime::MAX),
        EmissionKind::Recomputed => hot_until <= wm,
        EmissionKind::Missing
        | EmissionKind::Found
        | EmissionKind::Completeness
        | EmissionKind::Firing
        | EmissionKind::Resolved
        | EmissionKind::Retracted => {
            panic!(
                "a window pipeline emitted the kind {:?} of another operator",
                em.kind
            )
        }
    };
    assert!(
        ok,
        "{:?} emission of {} at watermark {}",
        em.kind, em.window, em.watermark
    );
}

/// Compares the driver's sink with the oracle over the raw log; returns the
/// differences in words (empty when they agree).
pub fn diff_with_oracle(
    spec: &PipelineSpec,
    latest: &BTreeMap<(Key, Window), Emission>,
    events: &[Event],
) -> Vec<String> {
    let expected = oracle(spec, events);
    let mut diffs = Vec::new();
    for (k, ow) in &expected {
        match latest.get(k) {
            None => diffs.push(format!("{k:?}: missing, oracle has {} events", ow.count)),
            Some(em) => {
                if em.count != ow.count || em.checksum.hash != ow.hash {
                    diffs.push(format!(
                        "{k:?}: count/hash {}/{:x} vs oracle {}/{:x}",
                        em.count, em.checksum.hash, ow.count, ow.hash
                    ));
                }
                for (i, exp) in ow.values.iter().enumerate() {
                    let got = em.values.get(i).and_then(Option::as_ref);
                    if !exp.accepts(got) {
                        diffs.push(format!(
                            "{k:?} {}: {got:?} vs oracle {exp:?}",
                            em.columns[i]
                        ));
                    }
                }
            }
        }
    }
    for k in latest.keys() {
        if !expected.contains_key(k) {
            diffs.push(format!("{k:?}: emitted but the oracle has no such window"));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use reckon_core::{AggregateSpec, Span};

    #[test]
    fn oracle_windows_match_hand_computed_bounds() {
        let h = WindowSpec::hopping(Span(30), Span(10));
        let got: Vec<_> = oracle_windows(&h, EventTime(25))
            .iter()
            .map(|w| (w.start.0, w.end.0))
            .collect();
        assert_eq!(got, vec![(0, 30), (10, 40), (20, 50)]);
        let t = WindowSpec::tumbling(Span(10));
        assert_eq!(oracle_windows(&t, EventTime(-1))[0].start, EventTime(-10));
    }

    #[test]
    fn oracle_computes_hand_checked_values() {
        let spec = PipelineSpec::builder("p")
            .window(WindowSpec::tumbling(Span(100)))
            .aggregate(AggregateSpec::new(AggKind::Mean, "x"))
            .aggregate(AggregateSpec::new(AggKind::Last, "x"))
            .build()
            .unwrap();
        let ev = |t: i64, x: f64, id: &str| Event {
            stream: "s".into(),
            key: Key::empty(),
            time: EventTime(t),
            id: Some(reckon_core::EventId(id.into())),
            fields: vec![("x".into(), Value::F64(x))],
        };
        let o = oracle(
            &spec,
            &[
                ev(5, 1.0, "a"),
                ev(7, 3.0, "b"),
                ev(7, 3.0, "b"),
                ev(150, 9.0, "c"),
            ],
        );
        let w0 = &o[&(
            Key::empty(),
            Window {
                start: EventTime(0),
                end: EventTime(100),
            },
        )];
        assert_eq!(w0.count, 2);
        assert_eq!(w0.values[0], Expected::Exact(Some(Value::F64(2.0))));
        assert_eq!(w0.values[1], Expected::Exact(Some(Value::F64(3.0))));
        assert_eq!(o.len(), 2);
    }
}
