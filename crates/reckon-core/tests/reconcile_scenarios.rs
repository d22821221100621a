//! Reconciliation scenarios in plain words (`docs/reconcile.md`): duplicates on both
//! sides, audit records late by less and more than the horizon, an event with no audit
//! record, and the audit stream going silent (z fires the missing records).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::reconcile::{
    Completeness, ReconOutcome, ReconOutput, ReconcileSpec, Reconciler, Side,
};
use reckon_core::{Event, EventId, EventTime, Key, ProcessingTime, Span, Value};
use std::sync::Arc;

const MIN: i64 = 60_000_000_000;

fn rec(id: &str, minute: i64, tag: i64) -> Event {
    Event {
        stream: "s".into(),
        key: Key::empty(),
        time: EventTime(minute * MIN),
        id: Some(EventId(Arc::from(id))),
        fields: vec![("ctx".into(), Value::I64(tag))],
    }
}

/// o = 15 min, n = 10 min, m = 60 min.
fn reconciler() -> Reconciler {
    Reconciler::new(
        ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN)).unwrap(),
    )
}

fn completeness(out: &[ReconOutput], period_start_min: i64) -> Vec<(u32, Completeness)> {
    out.iter()
        .filter_map(|o| match o {
            ReconOutput::Completeness {
                period,
                version,
                counts,
                ..
            } if period.start.0 == period_start_min * MIN => Some((version.0, *counts)),
            _ => None,
        })
        .collect()
}

/// Moves both streams' watermark to `minute − n`.
fn push_time(r: &mut Reconciler, minute: i64, out: &mut Vec<ReconOutput>) {
    let id = format!("clock{minute}");
    r.ingest(Side::Audit, &rec(&id, minute, 0), out);
    r.ingest(Side::Event, &rec(&id, minute, 0), out);
}

#[test]
fn duplicates_on_both_sides_are_counted_and_matched_once() {
    let mut r = reconciler();
    let mut out = Vec::new();
    assert_eq!(
        r.ingest(Side::Audit, &rec("a", 1, 1), &mut out),
        ReconOutcome::Applied
    );
    assert_eq!(
        r.ingest(Side::Audit, &rec("a", 1, 1), &mut out),
        ReconOutcome::Duplicate
    );
    assert_eq!(
        r.ingest(Side::Audit, &rec("a", 2, 2), &mut out),
        ReconOutcome::Duplicate
    );
    assert_eq!(
        r.ingest(Side::Event, &rec("a", 3, 0), &mut out),
        ReconOutcome::Applied
    );
    assert_eq!(
        r.ingest(Side::Event, &rec("a", 3, 0), &mut out),
        ReconOutcome::Duplicate
    );
    push_time(&mut r, 40, &mut out);
    let c = completeness(&out, 0);
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].1,
        Completeness {
            audited: 1,
            matched: 1,
            missing: 0,
            duplicate_audits: 2,
            duplicate_events: 1,
            unexpected: 0
        }
    );
}

#[test]
fn an_audit_record_late_by_less_than_the_horizon_corrects_its_period() {
    let mut r = reconciler();
    let mut out = Vec::new();
    r.ingest(Side::Event, &rec("a", 5, 0), &mut out);
    push_time(&mut r, 40, &mut out);
    // Period 0 closed with an unexpected event (no audit yet).
    assert_eq!(completeness(&out, 0)[0].1.unexpected, 1);
    // The audit record arrives 35 min after the watermark passed it: within m = 60 min.
    assert_eq!(
        r.ingest(Side::Audit, &rec("a", 4, 0), &mut out),
        ReconOutcome::Applied
    );
    let c = completeness(&out, 0);
    assert_eq!(c.len(), 2, "a new version replaces the first");
    assert_eq!(
        (c[1].0, c[1].1.audited, c[1].1.matched, c[1].1.unexpected),
        (2, 1, 1, 0)
    );
    assert_eq!(c[1].1.percent(), Some(100.0));
    // It was never missing: the event was there first.
    assert!(
        !out.iter()
            .any(|o| matches!(o, ReconOutput::Missing { id, .. } if &**id == "a"))
    );
}

#[test]
fn an_audit_record_later_than_the_horizon_is_dead_lettered_and_changes_nothing() {
    let mut r = reconciler();
    let mut out = Vec::new();
    r.ingest(Side::Event, &rec("a", 5, 0), &mut out);
    push_time(&mut r, 90, &mut out); // W = 80 min; horizon 20 min
    let before = out.len();
    match r.ingest(Side::Audit, &rec("a", 4, 0), &mut out) {
        ReconOutcome::DeadLettered { kind, reason } => {
            assert!(reason.starts_with("beyond_horizon"), "{reason}");
            assert_eq!(kind, "beyond_horizon");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out.len(), before, "nothing emitted");
    assert_eq!(r.dead_letters(), 1);
}

#[test]
fn an_event_with_no_audit_record_is_unexpected() {
    let mut r = reconciler();
    let mut out = Vec::new();
    r.ingest(Side::Event, &rec("stray", 7, 0), &mut out);
    r.ingest(Side::Audit, &rec("b", 8, 0), &mut out);
    r.ingest(Side::Event, &rec("b", 8, 0), &mut out);
    r.finish(&mut out);
    let c = completeness(&out, 0);
    assert_eq!(
        c.last().unwrap().1,
        Completeness {
            audited: 1,
            matched: 1,
            missing: 0,
            duplicate_audits: 0,
            duplicate_events: 0,
            unexpected: 1
        }
    );
}

#[test]
fn a_silent_audit_stream_stops_holding_the_watermark_after_z_and_missing_records_fire() {
    let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN))
        .unwrap()
        .idle_timeout(Span(5 * MIN));
    let mut r = Reconciler::new(spec);
    let mut out = Vec::new();
    r.advance(ProcessingTime(0), &mut out);
    r.ingest(Side::Audit, &rec("a", 1, 0), &mut out);
    r.ingest(Side::Event, &rec("x", 1, 0), &mut out);
    // The event stream moves on; the audit stream goes silent at minute 1.
    for minute in 2..40 {
        r.advance(ProcessingTime(minute * MIN), &mut out);
        r.ingest(
            Side::Event,
            &rec(&format!("e{minute}"), minute, 0),
            &mut out,
        );
    }
    let missing: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            ReconOutput::Missing {
                id, detected_at, ..
            } => Some((id.to_string(), *detected_at)),
            _ => None,
        })
        .collect();
    assert!(
        missing.iter().any(|(id, _)| id == "a"),
        "z must let `a` be reported missing: {out:?}"
    );
    // Without z the silent audit stream holds the watermark back: nothing fires.
    let mut r = reconciler();
    let mut out = Vec::new();
    r.advance(ProcessingTime(0), &mut out);
    r.ingest(Side::Audit, &rec("a", 1, 0), &mut out);
    for minute in 2..40 {
        r.advance(ProcessingTime(minute * MIN), &mut out);
        r.ingest(
            Side::Event,
            &rec(&format!("e{minute}"), minute, 0),
            &mut out,
        );
    }
    assert!(
        !out.iter().any(|o| matches!(o, ReconOutput::Missing { .. })),
        "{out:?}"
    );
}

#[test]
fn state_is_dropped_past_the_horizon() {
    let mut r = reconciler();
    let mut out = Vec::new();
    for k in 0..100 {
        r.ingest(Side::Audit, &rec(&format!("id{k}"), k, 0), &mut out);
        r.ingest(Side::Event, &rec(&format!("id{k}"), k, 0), &mut out);
    }
    // W = 89 min. Retention runs once per period (15 min) of watermark progress and
    // drops ids older than W − (m + n) whose periods are final: the ids of the first
    // minutes are gone, the last 70 minutes' are kept.
    let held = r.pending_ids();
    assert!((70..100).contains(&held), "{held}");
    // Much later, only recent ids remain.
    push_time(&mut r, 400, &mut out);
    push_time(&mut r, 420, &mut out);
    assert!(r.pending_ids() <= 4, "{}", r.pending_ids());
}

#[test]
fn the_stream_that_starts_first_does_not_run_ahead_until_the_other_sends_or_z_passes() {
    // Without z: audit records up to 2 h, the event stream has sent nothing; it holds
    // the watermark, so nothing is reported missing.
    let mut r = reconciler();
    let mut out = Vec::new();
    r.advance(ProcessingTime(0), &mut out);
    for m in [1, 2, 120] {
        r.ingest(Side::Audit, &rec(&format!("a{m}"), m, 0), &mut out);
    }
    r.advance(ProcessingTime(3_600_000_000_000), &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(r.watermark().0, EventTime::MIN);
    // The event stream's first record (at 2 h) releases it: a1 and a2 are missing.
    r.ingest(Side::Event, &rec("a120", 120, 0), &mut out);
    let missing: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            ReconOutput::Missing { id, .. } => Some(id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(missing, ["a1", "a2"]);

    // With z = 1 min: the event stream that never sends stops holding after 1 min of
    // processing time, counted from the first known processing time.
    let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN))
        .unwrap()
        .idle_timeout(Span(MIN));
    let mut r = Reconciler::new(spec);
    let mut out = Vec::new();
    r.advance(ProcessingTime(0), &mut out);
    r.ingest(Side::Audit, &rec("a1", 1, 0), &mut out);
    r.ingest(Side::Audit, &rec("a2", 120, 0), &mut out);
    r.advance(ProcessingTime(MIN - 1), &mut out);
    assert!(out.is_empty(), "{out:?}");
    r.advance(ProcessingTime(MIN), &mut out);
    assert!(
        matches!(&out[0], ReconOutput::Missing { id, .. } if &**id == "a1"),
        "{out:?}"
    );
}

#[test]
fn the_period_at_the_end_of_time_keeps_its_versions() {
    // o = 3 ns, n = m = 0, z = 5 ns: the watermark reaches i64::MAX, and the period
    // holding it must not count as final (its end is past i64::MAX).
    let spec = ReconcileSpec::new("r", Span(3), Span(0), Span(0))
        .unwrap()
        .idle_timeout(Span(5));
    let mut r = Reconciler::new(spec);
    let mut out = Vec::new();
    let at = |id: &str, t: i64| Event {
        time: EventTime(t),
        ..rec(id, 0, 0)
    };
    r.advance(ProcessingTime(0), &mut out);
    r.ingest(Side::Event, &at("e", i64::MAX), &mut out);
    r.ingest(Side::Event, &at("e", 5), &mut out);
    r.ingest(Side::Audit, &at("a", i64::MAX - 1), &mut out);
    r.advance(ProcessingTime(10), &mut out);
    r.ingest(Side::Event, &at("f", i64::MAX), &mut out);
    let top: Vec<u32> = out
        .iter()
        .filter_map(|o| match o {
            ReconOutput::Completeness {
                period, version, ..
            } if period.start.0 > i64::MAX - 3 => Some(version.0),
            _ => None,
        })
        .collect();
    assert_eq!(top, [1, 2], "{out:?}");
}

#[test]
fn the_fingerprint_secret_changes_nothing_but_the_fingerprints_and_is_kept_by_snapshots() {
    let spec = ReconcileSpec::new("r", Span(15 * MIN), Span(10 * MIN), Span(60 * MIN)).unwrap();
    let run = |mut r: Reconciler| {
        let mut out = Vec::new();
        for (side, id, m) in [
            (Side::Audit, "a", 1),
            (Side::Audit, "b", 2),
            (Side::Event, "a", 3),
            (Side::Audit, "b", 4),
        ] {
            r.ingest(side, &rec(id, m, 0), &mut out);
        }
        let bytes = r.snapshot().unwrap();
        let mut r = Reconciler::restore(r.spec().clone(), &bytes).unwrap();
        assert_eq!(r.snapshot().unwrap(), bytes);
        push_time(&mut r, 60, &mut out);
        r.finish(&mut out);
        (out, bytes)
    };
    let (fixed, fixed_bytes) = run(Reconciler::new(spec.clone()));
    let (keyed, keyed_bytes) = run(Reconciler::with_secret(spec, [7; 192]));
    assert_eq!(fixed, keyed);
    assert_ne!(fixed_bytes, keyed_bytes, "the secret is part of the state");
}
