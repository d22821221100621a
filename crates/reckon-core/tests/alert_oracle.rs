//! Alert rules against the independent oracle (`reckon_testkit::alert`).
//!
//! An input pipeline's windows arrive as versions in any order (each window's versions in
//! order, as a pipeline emits them), some windows never, in random batches, with the
//! watermark moving forward by random steps. Corrections change whether a window holds.
//! A model of the store keeps the newest version of each episode. Restarts come in two
//! forms: from a snapshot, and crashes that go back to an older snapshot, replay what
//! came since (one at a time, or all in one batch: fewer versions than the first run
//! stored), and resync against the store.
//!
//! - **After every batch** (without a crash in between): the stored timeline equals a batch
//!   evaluation of the rule over the windows so far, at the current watermark.
//! - **At the end:** after `finish`, it equals the oracle over the final windows.
//! - **Always:** every retraction follows a firing of the same episode, and stored
//!   versions only go up.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use proptest::prelude::*;
use reckon_core::operator::{AlertRule, AlertSpec, Operator, StepReport};
use reckon_core::{
    Checksum, Emission, EmissionKind, EventTime, Key, ProcessingTime, Span, Value, Version,
    Watermark, Window,
};
use reckon_testkit::alert::{AlertOracle, OracleWindow};
use std::collections::BTreeMap;
use std::sync::Arc;

const M: i64 = 60_000_000_000;
const SIZE: i64 = 5;
const THRESHOLD: i64 = 10;

fn spec(for_windows: u32, keep: i64) -> AlertSpec {
    AlertSpec {
        name: Arc::from("hot"),
        input: Arc::from("rate"),
        condition: format!("above >= {THRESHOLD}"),
        for_windows,
        keep_firing_for: Span(keep * SIZE * M),
        retention: Span(365 * 24 * 60 * M),
    }
}

fn key(k: u8) -> Key {
    Key::parse(&format!("s={k}")).unwrap()
}

fn window(k: u8, slot: i64, above: i64, version: u32) -> Emission {
    Emission {
        pipeline: Arc::from("rate"),
        key: key(k),
        window: Window {
            start: EventTime(slot * SIZE * M),
            end: EventTime((slot + 1) * SIZE * M),
        },
        version: Version(version),
        kind: if version == 1 {
            EmissionKind::OnTime
        } else {
            EmissionKind::Late
        },
        columns: Arc::from(vec![Arc::from("above")]),
        values: vec![Some(Value::I64(above))],
        count: above.max(0) as u64,
        checksum: Checksum::default(),
        emitted_at: ProcessingTime(0),
        watermark: Watermark::MIN,
        states: None,
    }
}

/// The store: the newest version of each episode, and every emission in order.
#[derive(Default)]
struct Store {
    latest: BTreeMap<(Key, EventTime), Emission>,
    log: Vec<Emission>,
    /// After a crash the replay may restate an episode's history in other versions
    /// (at-least-once, like a webhook's): only the end state is checked then.
    crashed: bool,
}

impl Store {
    fn apply(&mut self, out: Vec<Emission>) {
        for e in out {
            let at = (e.key.clone(), e.window.start);
            if self.latest.get(&at).is_some_and(|s| s.version >= e.version) {
                continue;
            }
            if e.kind == EmissionKind::Retracted && !self.crashed {
                assert!(
                    self.latest
                        .get(&at)
                        .is_some_and(|s| s.kind != EmissionKind::Retracted),
                    "a retraction of {at:?} without a firing before it"
                );
            }
            self.log.push(e.clone());
            self.latest.insert(at, e);
        }
    }

    fn timeline(&self) -> BTreeMap<(Key, EventTime), Option<String>> {
        self.latest
            .iter()
            .filter(|(_, e)| e.kind != EmissionKind::Retracted)
            .map(|(at, e)| {
                let resolved = match e.value("resolved_at") {
                    Some(Value::Str(t)) => Some(t.to_string()),
                    _ => None,
                };
                (at.clone(), resolved)
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// Deliver the next `n` window versions with the watermark advanced by `wm` slots.
    Batch { n: usize, wm: i64 },
    /// Restart from a snapshot taken now.
    Restart,
    /// Crash: go back to the last snapshot and replay everything since, one at a time
    /// (`true`) or all in one batch at the last watermark (`false`).
    Crash(bool),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            6 => (1usize..6, 0i64..4).prop_map(|(n, wm)| Step::Batch { n, wm }),
            1 => Just(Step::Restart),
            1 => any::<bool>().prop_map(Step::Crash),
        ],
        1..40,
    )
}

/// Windows of 2 keys over 30 slots: per window 0 to 3 versions of `above` (0..16).
fn inputs() -> impl Strategy<Value = Vec<(u8, i64, Vec<i64>)>> {
    prop::collection::vec(
        (0u8..2, 0i64..30, prop::collection::vec(0i64..16, 1..4)),
        0..50,
    )
}

fn run(
    for_windows: u32,
    keep: i64,
    windows: Vec<(u8, i64, Vec<i64>)>,
    order: Vec<usize>,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    // One entry per (key, slot): the last generated set of versions wins.
    let mut by_window: BTreeMap<(u8, i64), Vec<i64>> = BTreeMap::new();
    for (k, s, vs) in windows {
        by_window.insert((k, s), vs);
    }
    // Arrival order: a random interleaving that keeps each window's versions in order.
    let mut queues: Vec<((u8, i64), Vec<i64>, usize)> = by_window
        .iter()
        .map(|(w, vs)| (*w, vs.clone(), 0))
        .collect();
    let mut arrivals: Vec<Emission> = Vec::new();
    let mut pick = order.into_iter().cycle();
    while queues.iter().any(|q| q.2 < q.1.len()) {
        let live: Vec<usize> = (0..queues.len())
            .filter(|&i| queues[i].2 < queues[i].1.len())
            .collect();
        let i = live[pick.next().unwrap_or(0) % live.len()];
        let ((k, s), vs, next) = &mut queues[i];
        arrivals.push(window(*k, *s, vs[*next], *next as u32 + 1));
        *next += 1;
    }

    let oracle = AlertOracle {
        for_windows,
        keep_firing_for: Span(keep * SIZE * M),
    };
    let mut rule = AlertRule::new(spec(for_windows, keep), None).unwrap();
    let mut store = Store::default();
    let mut pos = 0usize;
    let mut wm = i64::MIN;
    // The last snapshot: (bytes, arrivals delivered, watermark then, steps' watermarks since).
    let mut saved: (Vec<u8>, usize, i64) = (rule.snapshot().unwrap(), 0, wm);
    let mut since: Vec<(usize, i64)> = Vec::new();
    let mut crashed = false;
    let deliver = |rule: &mut AlertRule, store: &mut Store, batch: &[Emission], wm: i64| {
        let mut out = Vec::new();
        rule.ingest_results(
            0,
            batch,
            Watermark(EventTime(wm)),
            &mut out,
            &mut StepReport::default(),
        )
        .unwrap();
        store.apply(out);
    };
    for step in steps {
        match step {
            Step::Batch { n, wm: dw } => {
                let end = (pos + n).min(arrivals.len());
                let slot = if wm == i64::MIN {
                    dw - 1
                } else {
                    wm / (SIZE * M) + dw
                };
                wm = wm.max(slot * SIZE * M);
                deliver(&mut rule, &mut store, &arrivals[pos..end], wm);
                since.push((end, wm));
                pos = end;
                if !crashed {
                    let known: Vec<OracleWindow> = final_windows(&arrivals[..pos]);
                    prop_assert_eq!(
                        store.timeline(),
                        shown(oracle.timeline(&known, EventTime(wm))),
                        "after {} arrivals at watermark {}",
                        pos,
                        wm
                    );
                }
            }
            Step::Restart => {
                saved = (rule.snapshot().unwrap(), pos, wm);
                since.clear();
                rule = AlertRule::new(spec(for_windows, keep), Some(&saved.0)).unwrap();
            }
            Step::Crash(fine) => {
                store.crashed = true;
                // Back to the snapshot; the replay feeds what came since one at a time
                // (grouped differently), with the watermarks of the steps in between.
                rule = AlertRule::new(spec(for_windows, keep), Some(&saved.0)).unwrap();
                let mut at = saved.1;
                if fine {
                    for &(end, w) in &since {
                        while at < end {
                            deliver(&mut rule, &mut store, &arrivals[at..at + 1], w);
                            at += 1;
                        }
                        deliver(&mut rule, &mut store, &[], w);
                    }
                } else if let Some(&(end, w)) = since.last() {
                    deliver(&mut rule, &mut store, &arrivals[at..end], w);
                }
                let mut out = Vec::new();
                let latest = store.latest.clone();
                rule.resync(
                    &mut |k, w| {
                        Ok(latest
                            .get(&(k.clone(), w.start))
                            .map(|e| reckon_core::Prior {
                                version: e.version,
                                checksum: e.checksum,
                            }))
                    },
                    &mut out,
                )
                .unwrap();
                store.apply(out);
                crashed = true;
            }
        }
    }
    // The rest, then the end of input.
    deliver(&mut rule, &mut store, &arrivals[pos..], wm);
    let mut out = Vec::new();
    rule.finish(&mut out);
    store.apply(out);
    prop_assert_eq!(
        store.timeline(),
        shown(oracle.timeline(&final_windows(&arrivals), EventTime::MAX))
    );
    // Stored versions of one episode only go up, each one a step from the one before
    // when there was no crash.
    let mut last: BTreeMap<(Key, EventTime), u32> = BTreeMap::new();
    for e in &store.log {
        let prev = last
            .insert((e.key.clone(), e.window.start), e.version.0)
            .unwrap_or(0);
        prop_assert!(e.version.0 > prev);
        if !crashed {
            prop_assert_eq!(e.version.0, prev + 1);
        }
    }
    Ok(())
}

/// The oracle's timeline with times as an alert emission writes them (RFC 3339).
fn shown(
    t: BTreeMap<(Key, EventTime), Option<EventTime>>,
) -> BTreeMap<(Key, EventTime), Option<String>> {
    t.into_iter()
        .map(|(at, r)| (at, r.map(|r| r.to_string())))
        .collect()
}

/// The newest version of each window among `arrivals`, as the oracle reads them.
fn final_windows(arrivals: &[Emission]) -> Vec<OracleWindow> {
    let mut latest: BTreeMap<(Key, EventTime), &Emission> = BTreeMap::new();
    for e in arrivals {
        latest.insert((e.key.clone(), e.window.start), e);
    }
    latest
        .values()
        .map(|e| OracleWindow {
            key: e.key.clone(),
            start: e.window.start,
            end: e.window.end,
            holds: matches!(e.value("above"), Some(Value::I64(v)) if *v >= THRESHOLD),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_alert_timeline_equals_a_batch_evaluation_whatever_the_order(
        for_windows in 1u32..4,
        keep in 0i64..3,
        windows in inputs(),
        order in prop::collection::vec(0usize..1000, 1..60),
        steps in steps(),
    ) {
        run(for_windows, keep, windows, order, steps)?;
    }
}
