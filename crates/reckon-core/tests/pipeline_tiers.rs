//! The exact rules, one scenario each: window boundaries, lateness tiers and their
//! edges, idle partitions, a stalled watermark, early results, duplicates, dead
//! letters, snapshots, and calendar windows across DST.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::{
    AggKind, AggregateSpec, CalendarUnit, DeadLetterReason, Emission, EmissionKind, Event, EventId,
    EventTime, Key, Outcome, PartitionId, Pipeline, PipelineSpec, Prior, ProcessingTime, Span,
    Value, Version, Window, WindowSpec,
};
use std::sync::Arc;

const P0: PartitionId = PartitionId(0);
const P1: PartitionId = PartitionId(1);

fn s(secs: i64) -> EventTime {
    EventTime::from_secs(secs)
}

fn ev(t: EventTime, x: f64) -> Event {
    Event {
        stream: Arc::from("s"),
        key: Key::from_tags([("i", "1")]).unwrap(),
        time: t,
        id: None,
        fields: vec![(Arc::from("x"), Value::F64(x))],
    }
}

fn with_id(mut e: Event, id: &str) -> Event {
    e.id = Some(EventId(Arc::from(id)));
    e
}

/// 60 s tumbling windows, sum and count of `x`, no out-of-orderness, 10 s lateness.
fn spec() -> reckon_core::PipelineSpecBuilder {
    PipelineSpec::builder("t")
        .window(WindowSpec::tumbling(Span::secs(60)))
        .aggregate(AggregateSpec::count())
        .aggregate(AggregateSpec::new(AggKind::Sum, "x"))
        .allowed_lateness(Span::secs(10))
        .retention(Span::secs(3600))
}

fn pipeline() -> Pipeline {
    Pipeline::new(spec().build().unwrap()).unwrap()
}

fn w(start: i64, end: i64) -> Window {
    Window {
        start: s(start),
        end: s(end),
    }
}

fn kinds(out: &[Emission]) -> Vec<(EmissionKind, Window, u32, u64)> {
    out.iter()
        .map(|e| (e.kind, e.window, e.version.0, e.count))
        .collect()
}

#[test]
fn an_event_at_the_window_end_belongs_to_the_next_window() {
    let mut p = pipeline();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(0), 1.0), &mut out);
    p.ingest(P0, &ev(s(60), 2.0), &mut out);
    // The watermark is now 60 = end of [0, 60): closed, with only the first event.
    assert_eq!(kinds(&out), vec![(EmissionKind::OnTime, w(0, 60), 1, 1)]);
    assert_eq!(out[0].value("sum_x"), Some(&Value::F64(1.0)));
    assert!(p.is_hot(&ev(s(0), 0.0).key, s(60)));
}

#[test]
fn no_on_time_result_before_the_watermark_reaches_the_end() {
    let mut p = pipeline();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(10), 1.0), &mut out);
    p.ingest(P0, &ev(EventTime(s(60).0 - 1), 1.0), &mut out);
    assert!(out.is_empty(), "emitted at watermark end - 1ns: {out:?}");
    p.ingest(P0, &ev(s(60), 1.0), &mut out);
    assert_eq!(kinds(&out), vec![(EmissionKind::OnTime, w(0, 60), 1, 2)]);
    assert_eq!(out[0].watermark.0, s(60));
}

#[test]
fn late_within_allowed_lateness_is_corrected_at_once_with_the_next_version() {
    let mut p = pipeline();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(5), 1.0), &mut out);
    p.ingest(P0, &ev(s(65), 1.0), &mut out); // closes [0, 60): v1
    out.clear();
    let o = p.ingest(P0, &ev(s(30), 2.5), &mut out);
    assert_eq!(o, Outcome::Corrected);
    assert_eq!(kinds(&out), vec![(EmissionKind::Late, w(0, 60), 2, 2)]);
    assert_eq!(out[0].value("sum_x"), Some(&Value::F64(3.5)));
    assert_eq!(p.counters().corrected, 1);
}

#[test]
fn watermark_at_end_plus_allowed_lateness_is_the_cold_edge() {
    // Last nanosecond of allowed lateness: still hot.
    let mut p = pipeline();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(5), 1.0), &mut out);
    p.ingest(P0, &ev(EventTime(s(70).0 - 1), 1.0), &mut out);
    assert_eq!(p.watermark().0, EventTime(s(70).0 - 1));
    assert_eq!(p.ingest(P0, &ev(s(6), 1.0), &mut out), Outcome::Corrected);

    // Watermark exactly end + allowed lateness: the state is gone, recompute.
    let mut p = pipeline();
    p.ingest(P0, &ev(s(5), 1.0), &mut out);
    p.ingest(P0, &ev(s(70), 1.0), &mut out);
    assert!(!p.is_hot(&ev(s(0), 0.0).key, s(0)));
    out.clear();
    let o = p.ingest(P0, &ev(s(6), 1.0), &mut out);
    assert_eq!(
        o,
        Outcome::Recompute {
            key: ev(s(0), 0.0).key,
            windows: vec![w(0, 60)]
        }
    );
    assert!(
        out.is_empty(),
        "a cold event must not emit from hot state: {out:?}"
    );
}

#[test]
fn zero_allowed_lateness_sends_every_late_event_to_the_cold_path() {
    let mut p = Pipeline::new(spec().allowed_lateness(Span::ZERO).build().unwrap()).unwrap();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(5), 1.0), &mut out);
    p.ingest(P0, &ev(s(60), 1.0), &mut out);
    assert_eq!(kinds(&out), vec![(EmissionKind::OnTime, w(0, 60), 1, 1)]);
    assert!(matches!(
        p.ingest(P0, &ev(s(59), 1.0), &mut out),
        Outcome::Recompute { .. }
    ));
}

#[test]
fn a_cold_recompute_replaces_the_stored_version_and_skips_duplicates() {
    let mut p = pipeline();
    let mut out = Vec::new();
    let raw = vec![
        with_id(ev(s(5), 1.0), "a"),
        ev(s(100), 1.0), // closes and evicts [0, 60)
        with_id(ev(s(7), 2.0), "b"),
        with_id(ev(s(5), 1.0), "a"), // duplicate of the first
    ];
    p.ingest(P0, &raw[0], &mut out);
    p.ingest(P0, &raw[1], &mut out);
    let v1 = out.iter().find(|e| e.window == w(0, 60)).unwrap().clone();
    assert_eq!(v1.version, Version(1));
    let Outcome::Recompute { key, windows } = p.ingest(P0, &raw[2], &mut out) else {
        panic!("expected a recompute")
    };
    let prior = Prior {
        version: v1.version,
        checksum: v1.checksum,
    };
    let v2 = p
        .recompute(&key, windows[0], Some(prior), &raw[..3])
        .unwrap()
        .unwrap();
    assert_eq!(
        (v2.kind, v2.version, v2.count),
        (EmissionKind::Recomputed, Version(2), 2)
    );
    assert_eq!(v2.value("sum_x"), Some(&Value::F64(3.0)));
    // The duplicate reaches a cold window: recomputing finds nothing new.
    assert!(matches!(
        p.ingest(P0, &raw[3], &mut out),
        Outcome::Recompute { .. }
    ));
    let prior = Prior {
        version: v2.version,
        checksum: v2.checksum,
    };
    assert_eq!(
        p.recompute(&key, windows[0], Some(prior), &raw).unwrap(),
        None
    );
    assert_eq!(p.counters().recompute_unchanged, 1);
    // Recomputing a hot window, or one the spec does not make, is a driver bug.
    let e = p.recompute(&key, w(60, 120), None, &raw).unwrap_err();
    assert!(e.to_string().contains("still hot"), "{e}");
    let e = p.recompute(&key, w(0, 30), None, &raw).unwrap_err();
    assert!(e.to_string().contains("does not produce"), "{e}");
}

#[test]
fn duplicates_by_id_are_not_counted_twice_while_the_window_is_hot() {
    let mut p = pipeline();
    let mut out = Vec::new();
    assert_eq!(
        p.ingest(P0, &with_id(ev(s(5), 1.0), "a"), &mut out),
        Outcome::Applied
    );
    assert_eq!(
        p.ingest(P0, &with_id(ev(s(5), 1.0), "a"), &mut out),
        Outcome::Duplicate
    );
    p.ingest(P0, &ev(s(60), 0.0), &mut out);
    // Also after the window closed, within allowed lateness.
    assert_eq!(
        p.ingest(P0, &with_id(ev(s(5), 1.0), "a"), &mut out),
        Outcome::Duplicate
    );
    assert_eq!(kinds(&out), vec![(EmissionKind::OnTime, w(0, 60), 1, 1)]);
    assert_eq!(p.counters().duplicates, 2);
}

#[test]
fn events_beyond_retention_are_dead_lettered_and_do_not_move_the_watermark() {
    let mut p = pipeline();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(7200), 1.0), &mut out);
    // Window [3600, 3660) starts exactly retention (1 h) before the watermark: kept.
    assert!(matches!(
        p.ingest(P0, &ev(s(3600), 1.0), &mut out),
        Outcome::Recompute { .. }
    ));
    let o = p.ingest(P0, &ev(s(3599), 1.0), &mut out);
    assert_eq!(
        o,
        Outcome::DeadLettered(DeadLetterReason::BeyondRetention {
            window: w(3540, 3600),
            watermark: p.watermark()
        })
    );
    // An absurd timestamp is a dead letter and must not close every window.
    let o = p.ingest(P0, &ev(EventTime::MAX, 1.0), &mut out);
    assert!(
        matches!(
            o,
            Outcome::DeadLettered(DeadLetterReason::Unwindowable { .. })
        ),
        "{o:?}"
    );
    assert_eq!(p.watermark().0, s(7200));
    let c = p.counters();
    assert_eq!((c.dead_lettered, c.events), (2, 4));
}

#[test]
fn hopping_windows_each_get_the_event() {
    let spec = spec()
        .window(WindowSpec::hopping(Span::secs(60), Span::secs(20)))
        .build()
        .unwrap();
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(45), 1.0), &mut out);
    p.finish(&mut out);
    let got: Vec<_> = out.iter().map(|e| (e.window, e.count)).collect();
    assert_eq!(got, vec![(w(0, 60), 1), (w(20, 80), 1), (w(40, 100), 1)]);
}

#[test]
fn the_slowest_partition_holds_results_until_it_goes_idle() {
    let spec = spec().idle_timeout(Span::secs(30)).build().unwrap();
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    p.advance(ProcessingTime::from_secs(0), &mut out);
    p.ingest(P0, &ev(s(10), 1.0), &mut out);
    p.ingest(P1, &ev(s(10), 1.0), &mut out);
    p.advance(ProcessingTime::from_secs(20), &mut out);
    p.ingest(P0, &ev(s(200), 1.0), &mut out);
    assert!(out.is_empty(), "P1 still holds the watermark at 10 s");
    p.advance(ProcessingTime::from_secs(29), &mut out);
    assert!(out.is_empty());
    // P1 silent for 30 s: idle, the watermark follows P0 and [0, 60) closes.
    p.advance(ProcessingTime::from_secs(30), &mut out);
    assert_eq!(kinds(&out), vec![(EmissionKind::OnTime, w(0, 60), 1, 2)]);
    assert_eq!(p.watermark().0, s(200));
}

#[test]
fn a_stalled_watermark_advances_by_processing_time_and_closes_windows() {
    let spec = spec().idle_timeout(Span::secs(30)).build().unwrap();
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    p.advance(ProcessingTime::from_secs(1000), &mut out);
    p.ingest(P0, &ev(s(50), 1.0), &mut out);
    p.advance(ProcessingTime::from_secs(1029), &mut out);
    assert!(out.is_empty());
    // Stalled for 30 s: watermark 50 + 30 = 80 closes [0, 60).
    p.advance(ProcessingTime::from_secs(1030), &mut out);
    assert_eq!(p.watermark().0, s(80));
    assert_eq!(kinds(&out), vec![(EmissionKind::OnTime, w(0, 60), 1, 1)]);
}

#[test]
fn early_results_come_every_interval_only_for_changed_open_windows() {
    let spec = spec().early_interval(Span::secs(10)).build().unwrap();
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    p.advance(ProcessingTime::from_secs(0), &mut out);
    p.ingest(P0, &ev(s(1), 1.0), &mut out);
    p.advance(ProcessingTime::from_secs(9), &mut out);
    assert!(out.is_empty());
    p.advance(ProcessingTime::from_secs(10), &mut out);
    assert_eq!(kinds(&out), vec![(EmissionKind::Early, w(0, 60), 1, 1)]);
    p.advance(ProcessingTime::from_secs(20), &mut out);
    assert_eq!(out.len(), 1, "unchanged window re-emitted early");
    p.ingest(P0, &ev(s(2), 1.0), &mut out);
    p.ingest(P0, &ev(s(60), 1.0), &mut out);
    assert_eq!(kinds(&out)[1], (EmissionKind::OnTime, w(0, 60), 2, 2));
}

#[test]
fn snapshot_restore_continues_exactly_and_refuses_what_it_cannot_read() {
    let spec = spec().build().unwrap();
    let mut a = Pipeline::new(spec.clone()).unwrap();
    let mut out_a = Vec::new();
    for t in [5, 30, 61, 20] {
        a.ingest(P0, &with_id(ev(s(t), t as f64), &t.to_string()), &mut out_a);
    }
    let snap = a.snapshot().unwrap();
    let mut b = Pipeline::restore(spec.clone(), &snap).unwrap();
    assert_eq!(
        b.snapshot().unwrap(),
        snap,
        "restore then snapshot changes bytes"
    );
    let (mut oa, mut ob) = (Vec::new(), Vec::new());
    for e in [
        with_id(ev(s(20), 20.0), "20"),
        ev(s(66), 1.0),
        ev(s(200), 1.0),
    ] {
        assert_eq!(a.ingest(P0, &e, &mut oa), b.ingest(P0, &e, &mut ob));
    }
    assert_eq!(oa, ob);
    assert_eq!(a.counters(), b.counters());

    let mut newer = snap.clone();
    newer[8..10].copy_from_slice(&2u16.to_le_bytes());
    let e = Pipeline::restore(spec.clone(), &newer).unwrap_err();
    assert!(e.to_string().contains("format version 2 is newer"), "{e}");
    let e = Pipeline::restore(spec.clone(), b"not a snapshot").unwrap_err();
    assert!(e.to_string().contains("bad magic"), "{e}");
    let e = Pipeline::restore(spec.clone(), &snap[..snap.len() / 2]).unwrap_err();
    assert!(e.to_string().contains("corrupt payload"), "{e}");
    let other = PipelineSpec::builder("t")
        .aggregate(AggregateSpec::count())
        .build()
        .unwrap();
    let e = Pipeline::restore(other, &snap).unwrap_err();
    assert!(e.to_string().contains("different spec"), "{e}");
}

#[test]
fn calendar_days_follow_dst_in_the_pipeline_zone() {
    let spec = PipelineSpec::builder("daily")
        .window(WindowSpec::calendar(CalendarUnit::Day, "America/New_York").unwrap())
        .aggregate(AggregateSpec::count())
        .build()
        .unwrap();
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    // 2024-03-10 (23 h in New York) 12:00 local = 16:00Z.
    let noon = jiff::Timestamp::from_second(1_710_086_400).unwrap(); // 2024-03-10T16:00Z
    p.ingest(
        P0,
        &ev(EventTime(noon.as_nanosecond() as i64), 1.0),
        &mut out,
    );
    p.finish(&mut out);
    let day = out[0].window;
    assert_eq!(day.end.0 - day.start.0, Span::hours(23).0);
    assert_eq!(day.start.to_string(), "2024-03-10T05:00:00Z");
}

/// Regression: an on-time event of an open window longer than retention (a monthly
/// rollup with 7 days of retention) was dead-lettered; retention only concerns cold
/// windows.
#[test]
fn open_and_hot_windows_longer_than_retention_are_never_dead_lettered() {
    let spec = PipelineSpec::builder("monthly")
        .window(WindowSpec::calendar(CalendarUnit::Month, "UTC").unwrap())
        .aggregate(AggregateSpec::count())
        .allowed_lateness(Span::days(1))
        .retention(Span::days(7))
        .build()
        .unwrap();
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    let jan10 = s(1_704_844_800);
    p.ingest(P0, &ev(jan10, 1.0), &mut out);
    assert_eq!(
        p.ingest(P0, &ev(EventTime(jan10.0 + 1), 1.0), &mut out),
        Outcome::Applied
    );
    // Feb 1 + 12 h: January is closed but hot: corrected, not dead.
    let feb1 = s(1_706_745_600);
    p.ingest(P0, &ev(feb1.plus(Span::hours(12)), 1.0), &mut out);
    assert_eq!(p.ingest(P0, &ev(jan10, 2.0), &mut out), Outcome::Corrected);
    // Feb 2: January is cold and starts more than 7 days back: now it is dead.
    p.ingest(P0, &ev(feb1.plus(Span::days(1)), 1.0), &mut out);
    assert!(matches!(
        p.ingest(P0, &ev(jan10, 3.0), &mut out),
        Outcome::DeadLettered(_)
    ));

    // Tumbling windows longer than retention, the same rule.
    let spec = spec_with(|b| {
        b.window(WindowSpec::tumbling(Span::secs(100)))
            .retention(Span::secs(10))
    });
    let mut p = Pipeline::new(spec).unwrap();
    p.ingest(P0, &ev(s(50), 1.0), &mut out);
    assert_eq!(p.ingest(P0, &ev(s(60), 1.0), &mut out), Outcome::Applied);
}

fn spec_with(
    f: impl FnOnce(reckon_core::PipelineSpecBuilder) -> reckon_core::PipelineSpecBuilder,
) -> PipelineSpec {
    f(spec()).build().unwrap()
}

/// Regression: with a field name repeated in an event, the hot path's field cache
/// read the second occurrence while recompute and the oracle read the first.
#[test]
fn a_repeated_field_name_reads_its_first_occurrence_on_every_path() {
    let spec = spec_with(|b| b.allowed_lateness(Span::ZERO));
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    let (x_a, x_b): (Arc<str>, Arc<str>) = (Arc::from("x"), Arc::from("x"));
    let mk = |t: i64, fields: Vec<(Arc<str>, Value)>| Event {
        fields,
        ..ev(s(t), 0.0)
    };
    let e1 = mk(
        1,
        vec![
            (Arc::from("y"), Value::F64(0.0)),
            (x_a.clone(), Value::F64(1.0)),
        ],
    );
    let e2 = mk(
        61,
        vec![(x_b, Value::F64(10.0)), (x_a.clone(), Value::F64(100.0))],
    );
    p.ingest(P0, &e1, &mut out);
    p.ingest(P0, &e2, &mut out);
    p.finish(&mut out);
    let hot = out.iter().find(|e| e.window.start == s(60)).unwrap();
    assert_eq!(hot.value("sum_x"), Some(&Value::F64(10.0)));
    let cold = p
        .recompute(&e1.key, hot.window, None, [&e1, &e2])
        .unwrap()
        .unwrap();
    assert_eq!(hot.values, cold.values);
}

/// Regression: progress of a partition that joined behind did not restart the stall
/// clock, so the stall rule pushed the watermark past every live partition.
#[test]
fn progress_behind_the_watermark_restarts_the_stall_clock() {
    let spec = spec_with(|b| {
        b.window(WindowSpec::tumbling(Span::secs(10)))
            .allowed_lateness(Span::ZERO)
            .idle_timeout(Span::secs(30))
    });
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    p.advance(ProcessingTime::from_secs(0), &mut out);
    p.ingest(P0, &ev(s(1000), 1.0), &mut out);
    p.ingest(P1, &ev(s(100), 1.0), &mut out);
    for i in 1..=40 {
        p.advance(ProcessingTime::from_secs(i), &mut out);
        p.ingest(P0, &ev(s(1000), 1.0), &mut out);
        p.ingest(P1, &ev(s(100 + 10 * i), 1.0), &mut out);
    }
    assert_eq!(p.watermark().0, s(1000));
}

/// Regression: events ingested before the first `advance` anchored the idle and stall
/// clocks at the beginning of time, and the first `advance` sent the watermark to +inf.
#[test]
fn ingest_before_the_first_advance_does_not_stall_to_infinity() {
    let spec = spec_with(|b| b.idle_timeout(Span::secs(60)));
    let mut p = Pipeline::new(spec).unwrap();
    let mut out = Vec::new();
    p.ingest(P0, &ev(s(1_700_000_000), 1.0), &mut out);
    p.advance(ProcessingTime::from_secs(1_700_000_001), &mut out);
    assert_eq!(p.watermark().0, s(1_700_000_000));
    // The stall rule then runs from the first processing time it knew.
    p.advance(ProcessingTime::from_secs(1_700_000_061), &mut out);
    assert_eq!(p.watermark().0, s(1_700_000_060));
}
