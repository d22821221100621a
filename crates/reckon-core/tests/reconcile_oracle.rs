//! Reconciliation's invariant (`docs/reconcile.md`), checked by property tests: for any
//! arrival order within the horizon, with duplicates on both sides, events before their
//! audit records and ids on only one side, the final completeness of every period and
//! the ids missing for good equal the batch oracle; every `found` follows a `missing`
//! of the same id; nothing is reported twice; each period's versions go up by one.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use proptest::prelude::*;
use reckon_core::reconcile::{ReconOutcome, ReconOutput, ReconcileSpec, Reconciler, Side};
use reckon_core::{Event, EventId, EventTime, Key, Span, Value};
use reckon_testkit::reconcile::reconcile_oracle;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

const MIN: i64 = 60_000_000_000;

fn record(id: u32, time: i64, tag: i64) -> Event {
    Event {
        stream: "s".into(),
        key: Key::empty(),
        time: EventTime(time),
        id: Some(EventId(Arc::from(format!("id{id}")))),
        fields: vec![("ctx".into(), Value::I64(tag))],
    }
}

/// Records of `ids` ids (times within n/2 of each other per id), each with an arrival
/// key `time + delay`, `delay < m - n`, so nothing arrives beyond the horizon.
fn workload(ids: u32) -> impl Strategy<Value = Vec<(Side, Event, i64)>> {
    let one = (
        0..50 * 15 * MIN,
        0u8..100,
        0u8..100,
        0u8..100,
        0u8..100,
        proptest::collection::vec((0..5 * MIN, 0..40 * MIN), 4),
    );
    proptest::collection::vec(one, ids as usize).prop_map(|per_id| {
        let mut out = Vec::new();
        for (i, (base, has_audit, has_event, dup_a, dup_e, jit)) in per_id.into_iter().enumerate() {
            let id = i as u32;
            let mut push = |side, k: usize, tag: i64| {
                let (j, delay) = jit[k];
                let t = base + j;
                out.push((side, record(id, t, tag), t + delay));
            };
            if has_audit < 90 {
                push(Side::Audit, 0, 1);
                if dup_a < 20 {
                    push(Side::Audit, 1, 2);
                }
            }
            if has_event < 85 {
                push(Side::Event, 2, 3);
                if dup_e < 15 {
                    push(Side::Event, 3, 4);
                }
                if dup_e > 95 {
                    // An exact resend.
                    push(Side::Event, 2, 3);
                }
            }
        }
        out
    })
}

fn check(records: Vec<(Side, Event, i64)>, shuffle_seed: u64) {
    // o = 15 min, n = 10 min, m = 60 min: delays < 40 min keep everything in the horizon.
    let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN)).unwrap();
    let mut order: Vec<usize> = (0..records.len()).collect();
    // Arrival: by arrival key, ties broken by a seeded shuffle.
    let mut rng = reckon_workload::SplitMix64::new(shuffle_seed);
    let ties: Vec<u64> = (0..records.len()).map(|_| rng.next_u64()).collect();
    order.sort_by_key(|&i| (records[i].2, ties[i]));
    let mut r = Reconciler::new(spec.clone());
    let mut out = Vec::new();
    for &i in &order {
        let (side, e, _) = &records[i];
        let o = r.ingest(*side, e, &mut out);
        assert!(!matches!(o, ReconOutcome::DeadLettered { .. }), "{o:?}");
    }
    r.finish(&mut out);

    let all: Vec<(Side, Event)> = records.iter().map(|(s, e, _)| (*s, e.clone())).collect();
    let oracle = reconcile_oracle(spec.period, spec.missing_after, &all);

    let mut latest = BTreeMap::new();
    let mut versions: HashMap<i64, u32> = HashMap::new();
    let (mut missing, mut found) = (BTreeSet::new(), BTreeSet::new());
    for o in &out {
        match o {
            ReconOutput::Missing { id, .. } => {
                assert!(
                    missing.insert(id.to_string()),
                    "{id} reported missing twice"
                );
            }
            ReconOutput::Found { id, .. } => {
                assert!(
                    missing.contains(&id.to_string()),
                    "{id} found before missing"
                );
                assert!(found.insert(id.to_string()), "{id} found twice");
            }
            ReconOutput::Completeness {
                period,
                version,
                counts,
                ..
            } => {
                let v = versions.entry(period.start.0).or_insert(0);
                assert_eq!(version.0, *v + 1, "versions go up by one");
                *v = version.0;
                latest.insert(period.start.0, *counts);
            }
        }
    }
    // A period whose content moved away (e.g. its only unexpected event got matched by
    // an audit in another period) ends with an all-zero version: a retraction.
    latest.retain(|_, c| *c != reckon_core::reconcile::Completeness::default());
    let keys: BTreeSet<i64> = latest
        .keys()
        .chain(oracle.periods.keys())
        .copied()
        .collect();
    let diff: Vec<_> = keys
        .into_iter()
        .filter(|k| latest.get(k) != oracle.periods.get(k))
        .map(|k| {
            (
                k / MIN,
                latest.get(&k).copied(),
                oracle.periods.get(&k).copied(),
            )
        })
        .collect();
    assert!(diff.is_empty(), "period (min), engine, oracle: {diff:?}");
    let never_found: BTreeSet<String> = missing.difference(&found).cloned().collect();
    assert_eq!(never_found, oracle.missing, "ids missing for good");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_arrival_order_within_the_horizon_ends_equal_to_the_oracle(
        records in workload(60),
        seed in any::<u64>(),
    ) {
        check(records, seed);
    }

    /// Restarts from snapshots at any points change nothing: the outputs are exactly
    /// those of an uninterrupted run, and a restored state snapshots to the same bytes.
    #[test]
    fn restarts_from_snapshots_change_nothing(
        records in workload(40),
        cuts in proptest::collection::btree_set(0usize..200, 0..4),
        ticks in proptest::collection::vec(0i64..20, 200),
    ) {
        let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN))
            .unwrap()
            .idle_timeout(Span(5 * MIN));
        let mut order: Vec<&(Side, Event, i64)> = records.iter().collect();
        order.sort_by_key(|r| r.2);
        let run = |restart: bool| {
            let mut r = Reconciler::new(spec.clone());
            let mut out = Vec::new();
            for (i, (side, e, _)) in order.iter().enumerate() {
                if restart && cuts.contains(&i) {
                    let bytes = r.snapshot().unwrap();
                    r = Reconciler::restore(spec.clone(), &bytes).unwrap();
                    assert_eq!(r.snapshot().unwrap(), bytes, "a restored state snapshots the same");
                }
                // Processing time moves too, so idle streams and stalls are covered.
                let now = reckon_core::ProcessingTime(ticks[i % ticks.len()] * i as i64 * MIN);
                r.advance(now, &mut out);
                r.ingest(*side, e, &mut out);
            }
            r.finish(&mut out);
            out
        };
        prop_assert_eq!(run(false), run(true));
    }
}

#[test]
fn a_snapshot_is_refused_under_other_periods_or_when_corrupt() {
    let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN)).unwrap();
    let mut r = Reconciler::new(spec.clone());
    r.ingest(Side::Audit, &record(1, MIN, 0), &mut Vec::new());
    let bytes = r.snapshot().unwrap();
    let other = ReconcileSpec::new("r", Span(30 * MIN), Span(10 * MIN), Span(60 * MIN)).unwrap();
    let e = Reconciler::restore(other, &bytes).unwrap_err().to_string();
    assert!(e.contains("different spec of reconciliation `r`"), "{e}");
    let e = Reconciler::restore(spec.clone(), &bytes[..12])
        .unwrap_err()
        .to_string();
    assert!(e.contains("corrupt payload"), "{e}");
    let e = Reconciler::restore(spec, b"RKNSNAP\0\x01\x00")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad magic"), "{e}");
}

#[test]
fn an_event_before_its_audit_record_is_matched() {
    let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN)).unwrap();
    let mut r = Reconciler::new(spec);
    let mut out = Vec::new();
    assert_eq!(
        r.ingest(Side::Event, &record(1, MIN, 0), &mut out),
        ReconOutcome::Applied
    );
    assert_eq!(
        r.ingest(Side::Audit, &record(1, 2 * MIN, 0), &mut out),
        ReconOutcome::Applied
    );
    // Time passes on both streams: the period [0, 15 min) closes at 25 min.
    r.ingest(Side::Audit, &record(2, 40 * MIN, 0), &mut out);
    r.ingest(Side::Event, &record(2, 40 * MIN, 0), &mut out);
    let c: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            ReconOutput::Completeness { period, counts, .. } if period.start.0 == 0 => {
                Some(*counts)
            }
            _ => None,
        })
        .collect();
    assert_eq!(c.len(), 1, "{out:?}");
    assert_eq!(
        (c[0].audited, c[0].matched, c[0].missing, c[0].unexpected),
        (1, 1, 0, 0)
    );
    assert_eq!(c[0].percent(), Some(100.0));
    assert!(!out.iter().any(|o| matches!(o, ReconOutput::Missing { .. })));
}

#[test]
fn a_missing_id_is_found_when_its_event_arrives_within_the_horizon_and_the_period_is_corrected() {
    let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN)).unwrap();
    let mut r = Reconciler::new(spec);
    let mut out = Vec::new();
    r.ingest(Side::Audit, &record(1, MIN, 0), &mut out);
    r.ingest(Side::Audit, &record(2, 30 * MIN, 0), &mut out);
    r.ingest(Side::Event, &record(2, 30 * MIN, 0), &mut out);
    // W = 20 min ≥ 1 min + 10 min: id1 missing; period 0 closes at W ≥ 25 min.
    assert!(
        matches!(&out[0], ReconOutput::Missing { id, .. } if &**id == "id1"),
        "{out:?}"
    );
    r.ingest(Side::Audit, &record(3, 40 * MIN, 0), &mut out);
    r.ingest(Side::Event, &record(3, 40 * MIN, 0), &mut out);
    let v1 = out.iter().find_map(|o| match o {
        ReconOutput::Completeness {
            period,
            version,
            counts,
            ..
        } if period.start.0 == 0 => Some((*version, *counts)),
        _ => None,
    });
    let (v, c) = v1.unwrap();
    assert_eq!((v.0, c.audited, c.matched, c.missing), (1, 1, 0, 1));
    out.clear();
    // The late event (within m): found, and period 0 gets version 2 at 100%.
    r.ingest(Side::Event, &record(1, 2 * MIN, 0), &mut out);
    assert!(
        matches!(&out[0], ReconOutput::Found { id, delay, .. } if &**id == "id1" && *delay == Span(MIN)),
        "{out:?}"
    );
    assert!(
        matches!(&out[1], ReconOutput::Completeness { version, counts, .. } if version.0 == 2 && counts.matched == 1 && counts.missing == 0),
        "{out:?}"
    );
    // A record older than W − m is dead-lettered.
    r.ingest(Side::Audit, &record(9, 200 * MIN, 0), &mut out);
    r.ingest(Side::Event, &record(9, 200 * MIN, 0), &mut out);
    assert!(
        matches!(r.ingest(Side::Event, &record(4, 5 * MIN, 0), &mut out), ReconOutcome::DeadLettered { reason: m, .. } if m.starts_with("beyond_horizon"))
    );
    assert_eq!(r.dead_letters(), 1);
}
