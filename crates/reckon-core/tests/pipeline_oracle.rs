//! The invariant, checked by property tests: for any arrival order, lateness,
//! duplication, idle sources and crash/restore point, once all data has arrived the
//! latest version of every window equals an independent batch oracle; versions of a
//! window go up by one; no emission breaks its kind's timing rule; every event is
//! accounted for.
//!
//! `PROPTEST_CASES` raises the number of cases (CI runs the default below; the soak
//! command in the README runs thousands).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use proptest::prelude::*;
use reckon_core::batch;
use reckon_core::{
    AggKind, AggregateSpec, CalendarUnit, EventTime, Key, PipelineSpec, Span, Window, WindowSpec,
};
use reckon_testkit::{Arrival, Driver, RandomWorkload, diff_with_oracle, oracle_windows};
use std::collections::BTreeMap;

fn all_aggregates() -> Vec<AggregateSpec> {
    vec![
        AggregateSpec::count(),
        AggregateSpec::new(AggKind::Count, "n"),
        AggregateSpec::new(AggKind::Sum, "x"),
        AggregateSpec::new(AggKind::Sum, "n"),
        AggregateSpec::new(AggKind::Mean, "x"),
        AggregateSpec::new(AggKind::Min, "x"),
        AggregateSpec::new(AggKind::Max, "n"),
        AggregateSpec::new(AggKind::First, "x"),
        AggregateSpec::new(AggKind::Last, "tag"),
        AggregateSpec::new(AggKind::Variance, "x"),
        AggregateSpec::new(AggKind::Stddev, "n"),
        AggregateSpec::new(AggKind::DistinctApprox, "n"),
        AggregateSpec::new(
            AggKind::Quantile {
                q: 0.5,
                accuracy: 0.01,
            },
            "x",
        ),
        AggregateSpec::new(
            AggKind::Quantile {
                q: 0.99,
                accuracy: 0.02,
            },
            "n",
        ),
    ]
}

fn window_spec() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        prop_oneof![Just(60), Just(600), Just(3600)]
            .prop_map(|s| WindowSpec::tumbling(Span::secs(s))),
        (prop_oneof![Just(600), Just(3600)], 2i64..5)
            .prop_map(|(size, k)| WindowSpec::hopping(Span::secs(size), Span::secs(size / k))),
        Just(WindowSpec::Tumbling {
            size: Span::secs(900),
            offset: Span::secs(7)
        }),
        Just(WindowSpec::calendar(CalendarUnit::Day, "America/New_York").expect("zone")),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    spec: PipelineSpec,
    workload: RandomWorkload,
    /// Arrival indexes at which to checkpoint, and at which to crash.
    checkpoints: Vec<usize>,
    crashes: Vec<usize>,
    /// Ticks of processing time with no event, after these arrival indexes.
    ticks: Vec<(usize, i64)>,
}

fn case(retention: Option<Span>) -> impl Strategy<Value = Case> {
    (
        window_spec(),
        prop_oneof![Just(0), Just(30), Just(300)],
        prop_oneof![Just(0), Just(600), Just(3600), Just(86_400)],
        proptest::option::of(prop_oneof![Just(120), Just(900)]),
        proptest::option::of(Just(60)),
        (
            any::<u64>(),
            1u32..6,
            1u32..4,
            0usize..250,
            0.0f64..0.6,
            prop_oneof![Just(600), Just(7200), Just(86_400)],
            0.0f64..0.2,
            0.0f64..0.05,
        ),
        proptest::collection::vec(0usize..300, 0..3),
        proptest::collection::vec(0usize..300, 0..3),
        proptest::collection::vec((0usize..300, 1i64..3600), 0..4),
    )
        .prop_map(
            move |(window, ooo, lateness, idle, early, w, checkpoints, crashes, ticks)| {
                let mut b = PipelineSpec::builder("prop")
                    .window(window)
                    .out_of_orderness(Span::secs(ooo))
                    .allowed_lateness(Span::secs(lateness).min(retention.unwrap_or(Span::MAX)))
                    .retention(retention.unwrap_or(Span::days(3650)));
                if let Some(z) = idle {
                    b = b.idle_timeout(Span::secs(z));
                }
                if let Some(e) = early {
                    b = b.early_interval(Span::secs(e));
                }
                for a in all_aggregates() {
                    b = b.aggregate(a);
                }
                let spec = b.build().expect("valid spec");
                let (seed, keys, partitions, events, late_p, max_late, dup_p, silence_p) = w;
                let workload = RandomWorkload {
                    keys,
                    partitions,
                    events,
                    late_probability: late_p,
                    max_lateness: Span::secs(max_late),
                    duplicate_probability: dup_p,
                    silence_probability: silence_p,
                    seed,
                    ..RandomWorkload::default()
                };
                Case {
                    spec,
                    workload,
                    checkpoints,
                    crashes,
                    ticks,
                }
            },
        )
}

/// Runs a case through the driver; returns the driver and the arrivals.
fn run(c: &Case) -> (Driver, Vec<Arrival>) {
    let arrivals = c.workload.arrivals();
    let mut d = Driver::new(c.spec.clone());
    for (i, a) in arrivals.iter().enumerate() {
        d.arrive(a);
        for &(_, dt) in c.ticks.iter().filter(|(at, _)| *at == i) {
            d.tick(reckon_core::ProcessingTime(a.at.0 + dt * 1_000_000_000));
        }
        if c.checkpoints.contains(&i) {
            d.checkpoint();
        }
        if c.crashes.contains(&i) {
            d.crash_and_recover();
        }
    }
    d.finish();
    (d, arrivals)
}

/// Per window, every emission that raises the version raises it by exactly one;
/// without crashes no version is ever repeated.
fn check_versions(d: &Driver, crashed: bool) -> Result<(), TestCaseError> {
    let mut top: BTreeMap<(Key, Window), u32> = BTreeMap::new();
    for em in &d.emissions {
        let cur = top.entry((em.key.clone(), em.window)).or_insert(0);
        if em.version.0 > *cur {
            prop_assert_eq!(
                em.version.0,
                *cur + 1,
                "version gap in {:?} {}",
                em.key,
                em.window
            );
            *cur = em.version.0;
        } else {
            prop_assert!(
                crashed,
                "version {} of {:?} {} repeated without a crash",
                em.version,
                em.key,
                em.window
            );
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(192),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The invariant of DESIGN.md against the independent oracle, with crashes.
    #[test]
    fn latest_versions_equal_the_oracle(c in case(None)) {
        let (d, arrivals) = run(&c);
        let crashed = !c.crashes.is_empty();
        let raw = d.raw_events();
        // Nothing is lost: with retention this long there are no dead letters.
        prop_assert!(d.dead_letters.is_empty(), "unexpected dead letters: {:?}", d.dead_letters);
        prop_assert_eq!(raw.len(), arrivals.len());
        let diffs = diff_with_oracle(&c.spec, &d.latest, &raw);
        prop_assert!(diffs.is_empty(), "{} differences, first: {:?}", diffs.len(), &diffs[..diffs.len().min(5)]);
        // The engine's batch path agrees exactly (sketches included) with the
        // incremental one.
        let (batch, rejected) = batch::compute(&c.spec, &raw).expect("batch");
        prop_assert!(rejected.is_empty());
        prop_assert_eq!(batch.len(), d.latest.len());
        for (k, r) in &batch {
            let em = &d.latest[k];
            prop_assert_eq!(r.checksum, em.checksum);
            for (a, b) in r.values.iter().zip(&em.values) {
                prop_assert!(reckon_core::aggregate::values_agree(a.as_ref(), b.as_ref()), "{:?}: batch {:?} vs incremental {:?}", k, a, b);
            }
        }
        check_versions(&d, crashed)?;
        if !crashed {
            let n = d.pipeline.counters();
            prop_assert_eq!(n.events as usize, arrivals.len());
            prop_assert_eq!(n.applied + n.corrected + n.recompute_requested + n.duplicates + n.dead_lettered, n.events);
        }
        // After the end of input nothing is left in memory.
        prop_assert_eq!(d.pipeline.hot_windows(), 0);
    }

    /// With a short retention some events are dead-lettered: exactly those whose
    /// earliest window was cold and started before `watermark - retention` when they
    /// arrived (windows can be longer than retention: calendar days, 2 h), with
    /// the watermark recomputed here from the accepted events (one partition, no idle
    /// rules). Everything else is in a result.
    #[test]
    fn dead_letters_are_exactly_the_events_beyond_retention(
        c in case(Some(Span::secs(7200))).prop_map(|mut c| {
            c.workload.partitions = 1;
            c.spec.idle_timeout = None;
            c.spec.allowed_lateness = c.spec.allowed_lateness.min(Span::secs(3600));
            c.workload.late_probability = 0.5;
            c.workload.max_lateness = Span::hours(6);
            c.crashes.clear();
            c
        })
    ) {
        let (d, arrivals) = run(&c);
        let mut max_t = EventTime::MIN;
        let mut expected_dead = Vec::new();
        for a in &arrivals {
            let wm = max_t.minus(c.spec.out_of_orderness);
            let earliest = oracle_windows(&c.spec.window, a.event.time)[0];
            let cold = earliest.end.plus(c.spec.allowed_lateness) <= wm;
            if cold && earliest.start < wm.minus(c.spec.retention) {
                expected_dead.push(a.event.clone());
            } else {
                max_t = max_t.max(a.event.time);
            }
        }
        let got_dead: Vec<_> = d.dead_letters.iter().map(|(e, _)| e.clone()).collect();
        prop_assert_eq!(&got_dead, &expected_dead);
        let raw = d.raw_events();
        prop_assert_eq!(raw.len() + got_dead.len(), arrivals.len());
        let diffs = diff_with_oracle(&c.spec, &d.latest, &raw);
        prop_assert!(diffs.is_empty(), "{:?}", &diffs[..diffs.len().min(5)]);
        check_versions(&d, false)?;
    }

    /// A crash and replay from a checkpoint ends in exactly the same sink as an
    /// uninterrupted run (emission times aside).
    #[test]
    fn restart_gives_the_same_results_as_no_restart(c in case(None)) {
        let uninterrupted = Case { checkpoints: vec![], crashes: vec![], ..c.clone() };
        let (a, _) = run(&uninterrupted);
        let (b, _) = run(&c);
        let strip = |d: &Driver| d.latest.iter().map(|(k, e)| (k.clone(), (e.values.clone(), e.checksum))).collect::<BTreeMap<_, _>>();
        prop_assert_eq!(strip(&a), strip(&b));
    }
}

proptest! {
    #![proptest_config(config())]

    /// `ingest_batch` is `ingest` in a loop: same emissions in the same order, same
    /// counters, and the same follow-ups (recomputes, dead letters) at the same indexes.
    #[test]
    fn batch_ingest_equals_event_by_event_ingest(c in case(Some(Span::days(1)))) {
        use reckon_core::{BatchReport, Outcome, Pipeline};
        let arrivals = c.workload.arrivals();
        let (mut one, mut many) = (Pipeline::new(c.spec.clone()).unwrap(), Pipeline::new(c.spec.clone()).unwrap());
        let (mut out1, mut out2) = (Vec::new(), Vec::new());
        for batch in arrivals.chunk_by(|a, b| a.partition == b.partition && a.at.0 / 60_000_000_000 == b.at.0 / 60_000_000_000) {
            one.advance(batch[0].at, &mut out1);
            many.advance(batch[0].at, &mut out2);
            let mut expected = Vec::new();
            for (i, a) in batch.iter().enumerate() {
                match one.ingest(a.partition, &a.event, &mut out1) {
                    Outcome::Applied | Outcome::Corrected | Outcome::Duplicate => {}
                    other => expected.push((i, other)),
                }
            }
            let mut report = BatchReport::default();
            many.ingest_batch(batch[0].partition, batch, &mut report, &mut out2);
            prop_assert_eq!(report.follow_ups, expected);
        }
        prop_assert_eq!(out1, out2);
        prop_assert_eq!(one.counters(), many.counters());
        prop_assert_eq!(one.snapshot().unwrap(), many.snapshot().unwrap());
    }
}

/// Regression (test kit): a dead-lettered arrival's processing-time advance was not
/// journaled, so a replay after a crash followed another processing-time history and
/// re-emitted early versions with other content; older replayed versions were not even
/// compared. Now the replay must reproduce every version exactly.
#[test]
fn replay_after_a_dead_letter_reproduces_every_version() {
    use reckon_core::{Event, PartitionId, ProcessingTime, Value};
    let spec = PipelineSpec::builder("t")
        .window(WindowSpec::tumbling(Span::secs(3600)))
        .aggregate(AggregateSpec::count())
        .allowed_lateness(Span::ZERO)
        .retention(Span::secs(3600))
        .early_interval(Span::secs(10))
        .build()
        .unwrap();
    let a = |at: i64, t: i64| Arrival {
        at: ProcessingTime::from_secs(at),
        partition: PartitionId(0),
        event: Event {
            stream: "s".into(),
            key: Key::empty(),
            time: EventTime::from_secs(t),
            id: None,
            fields: vec![("x".into(), Value::I64(1))],
        },
    };
    let mut d = Driver::new(spec);
    d.arrive(&a(0, 7200));
    d.arrive(&a(10, 0)); // dead letter
    assert_eq!(d.dead_letters.len(), 1);
    d.arrive(&a(15, 7201));
    d.tick(ProcessingTime::from_secs(20));
    d.arrive(&a(21, 7202));
    d.tick(ProcessingTime::from_secs(30));
    d.crash_and_recover();
    d.arrive(&a(32, 7203));
    d.tick(ProcessingTime::from_secs(40));
    d.finish();
    assert_eq!(d.latest.values().next().unwrap().count, 4);
}
