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

/// One event of a hand-shaped batch (see [`shaped_batches`]).
#[derive(Debug, Clone)]
struct Shaped {
    key: u8,
    /// Seconds the batch's event-time cursor moves forward before this event.
    step: u16,
    /// Seconds this event lies behind the cursor (0: on time).
    back: u16,
    id: Option<u8>,
    x: Option<i16>,
    /// Copy an earlier event of the same batch instead (an exact duplicate).
    copy_of: Option<prop::sample::Index>,
}

/// Specs for the batch/event-by-event comparison: single-window (tumbling) and
/// multi-window (hopping) assignment, aggregates fed in place (count, sum, mean) and
/// through the general path (every kind, a filtered aggregate), and specs with a
/// filter and a derived field (events prepared first).
fn shaped_spec() -> impl Strategy<Value = PipelineSpec> {
    (
        prop_oneof![
            Just(WindowSpec::tumbling(Span::secs(60))),
            Just(WindowSpec::hopping(Span::secs(120), Span::secs(60))),
        ],
        prop_oneof![Just(0), Just(10)],
        prop_oneof![Just(0), Just(60), Just(180)],
        prop_oneof![Just(300), Just(86_400)],
        proptest::option::of(Just(30)),
        0u8..4,
    )
        .prop_map(|(window, ooo, lateness, retention, early, aggs)| {
            let mut b = PipelineSpec::builder("shaped")
                .window(window)
                .out_of_orderness(Span::secs(ooo))
                .allowed_lateness(Span::secs(lateness))
                .retention(Span::secs(retention));
            if let Some(e) = early {
                b = b.early_interval(Span::secs(e));
            }
            let fast = [
                AggregateSpec::count(),
                AggregateSpec::new(AggKind::Sum, "x"),
                AggregateSpec::new(AggKind::Mean, "x"),
            ];
            let list = match aggs {
                0 | 2 => fast.to_vec(),
                1 => all_aggregates(),
                _ => Vec::new(),
            };
            for a in list {
                b = b.aggregate(a);
            }
            match aggs {
                0 | 1 => {}
                2 => {
                    let positive = reckon_core::Expr::parse_filter("x > 0").unwrap();
                    b = b.aggregate(AggregateSpec::count().named("positive").filtered(positive));
                }
                _ => {
                    b = b
                        .derive("y", reckon_core::Expr::parse("x * 2").unwrap())
                        .filter(reckon_core::Expr::parse_filter("x != 3").unwrap())
                        .aggregate(AggregateSpec::count())
                        .aggregate(AggregateSpec::new(AggKind::Sum, "y"));
                }
            }
            b.build().expect("valid spec")
        })
}

/// Batches of one partition each, shaped to put into one batch what per-batch code is
/// most likely to get wrong: several keys and windows, the event-time cursor crossing
/// window ends (the watermark advances and timers fire mid-batch), late events before
/// and after such a crossing, ids repeated within a batch, exact copies, events
/// without the field.
fn shaped_batches() -> impl Strategy<Value = Vec<(u32, Vec<Shaped>)>> {
    let event = (
        0u8..3,
        prop_oneof![Just(0u16), 1u16..31],
        prop_oneof![3 => Just(0u16), 2 => 1u16..600],
        proptest::option::of(0u8..5),
        proptest::option::weighted(0.9, -5i16..20),
        proptest::option::weighted(0.15, any::<prop::sample::Index>()),
    )
        .prop_map(|(key, step, back, id, x, copy_of)| Shaped {
            key,
            step,
            back,
            id,
            x,
            copy_of,
        });
    proptest::collection::vec((0u32..2, proptest::collection::vec(event, 1..40)), 1..7)
}

/// Runs `batches` through one pipeline event by event and through another batch by
/// batch, and checks they agree on everything: outcomes (as batch reports), emissions
/// in order, counters and snapshots, after every batch and after `finish`. Returns the
/// event-by-event outcomes and emissions, for tests that check what was exercised.
fn batch_equals_events(
    spec: &PipelineSpec,
    batches: &[(u32, Vec<Shaped>)],
) -> Result<(Vec<reckon_core::Outcome>, Vec<reckon_core::Emission>), TestCaseError> {
    use reckon_core::{
        BatchReport, Event, EventId, Outcome, PartitionId, Pipeline, ProcessingTime, Value,
    };
    let keys: Vec<Key> = ["a", "b", "c"]
        .iter()
        .map(|k| Key::from_tags([("k", k.to_string())]).unwrap())
        .collect();
    let field: reckon_core::FieldName = "x".into();
    let (mut one, mut many) = (
        Pipeline::new(spec.clone()).unwrap(),
        Pipeline::new(spec.clone()).unwrap(),
    );
    let (mut out1, mut out2) = (Vec::new(), Vec::new());
    let mut outcomes = Vec::new();
    // A multiple of 60 s: window ends are easy to see in the fixed test.
    let mut cursor = 999_960i64;
    for (b, (partition, shaped)) in batches.iter().enumerate() {
        let mut events: Vec<Event> = Vec::with_capacity(shaped.len());
        for s in shaped {
            if let Some(i) = &s.copy_of
                && !events.is_empty()
            {
                let copy = events[i.index(events.len())].clone();
                events.push(copy);
                continue;
            }
            cursor += i64::from(s.step);
            events.push(Event {
                stream: "s".into(),
                key: keys[usize::from(s.key)].clone(),
                time: EventTime::from_secs(cursor - i64::from(s.back)),
                id: s.id.map(|n| EventId(format!("id{n}").into())),
                fields: s
                    .x
                    .map(|x| (field.clone(), Value::F64(f64::from(x) / 4.0)))
                    .into_iter()
                    .collect(),
            });
        }
        let at = ProcessingTime::from_secs(10 * b as i64);
        let partition = PartitionId(*partition);
        one.advance(at, &mut out1);
        many.advance(at, &mut out2);
        let mut expected = BatchReport::default();
        for (i, e) in events.iter().enumerate() {
            let outcome = one.ingest(partition, e, &mut out1);
            match &outcome {
                Outcome::Applied => expected.applied += 1,
                Outcome::Corrected => expected.corrected += 1,
                Outcome::Duplicate => expected.duplicates += 1,
                Outcome::Filtered => expected.filtered += 1,
                other => expected.follow_ups.push((i, other.clone())),
            }
            outcomes.push(outcome);
        }
        let mut report = BatchReport::default();
        many.ingest_batch(partition, &events, &mut report, &mut out2);
        prop_assert_eq!(report, expected, "batch {}", b);
        prop_assert_eq!(&out1, &out2, "emissions after batch {}", b);
        prop_assert_eq!(one.counters(), many.counters());
        prop_assert_eq!(one.snapshot().unwrap(), many.snapshot().unwrap());
    }
    one.finish(&mut out1);
    many.finish(&mut out2);
    prop_assert_eq!(&out1, &out2);
    prop_assert_eq!(one.snapshot().unwrap(), many.snapshot().unwrap());
    Ok((outcomes, out1))
}

proptest! {
    #![proptest_config(config())]

    /// `ingest_batch` equals `ingest` in a loop on batches shaped to hold duplicates,
    /// late events on both sides of a timer, several keys and windows, and watermark
    /// advances mid-batch.
    #[test]
    fn shaped_batch_ingest_equals_event_by_event_ingest(
        spec in shaped_spec(),
        batches in shaped_batches(),
    ) {
        batch_equals_events(&spec, &batches)?;
    }
}

/// The shaped batches do reach what they are meant to: in one fixed batch, a window
/// closes mid-batch (its on-time result between the batch's other emissions), late
/// events before and after that close are corrected, an id repeats, one event is past
/// allowed lateness (recompute) and one past retention (dead letter); and the batch
/// path agrees with event-by-event ingest on it.
#[test]
fn one_batch_with_every_tier_equals_event_by_event() {
    use reckon_core::{EmissionKind, Outcome};
    let spec = PipelineSpec::builder("tiers")
        .window(WindowSpec::tumbling(Span::secs(60)))
        .aggregate(AggregateSpec::count())
        .aggregate(AggregateSpec::new(AggKind::Mean, "x"))
        .allowed_lateness(Span::secs(300))
        .retention(Span::secs(600))
        .build()
        .unwrap();
    let ev = |key: u8, step: u16, back: u16, id: Option<u8>| Shaped {
        key,
        step,
        back,
        id,
        x: Some(1),
        copy_of: None,
    };
    // Times in seconds from the (aligned) start; the watermark is the latest time.
    let warm = vec![ev(0, 0, 0, None), ev(1, 10, 0, Some(1))]; // a@0, b@10 id 1
    let batch = vec![
        ev(0, 200, 0, Some(2)), // a@210: [0, 60) of a and b close (on time)
        ev(1, 0, 205, Some(1)), // b@5, id 1 again in b's [0, 60): duplicate
        ev(0, 0, 170, None),    // a@40: [0, 60) closed but hot: late correction
        ev(0, 40, 0, None),     // a@250: [180, 240) closes mid-batch (on time)
        ev(0, 0, 30, None),     // a@220: late correction after that timer
        ev(1, 500, 0, None),    // b@750: windows up to [360, 420) are past lateness
        ev(1, 0, 500, None),    // b@250 in [240, 300), past allowed lateness: recompute
        ev(0, 0, 700, None),    // a@50: [0, 60) starts before 750 - 600: dead letter
    ];
    let mut batches = vec![(0, warm), (0, batch)];
    batches[1].1[1].x = Some(7);
    let (outcomes, emissions) = batch_equals_events(&spec, &batches).unwrap();
    let second = &outcomes[2..];
    assert!(matches!(second[1], Outcome::Duplicate), "{second:?}");
    assert!(matches!(second[2], Outcome::Corrected), "{second:?}");
    assert!(matches!(second[4], Outcome::Corrected), "{second:?}");
    assert!(matches!(second[6], Outcome::Recompute { .. }), "{second:?}");
    assert!(matches!(second[7], Outcome::DeadLettered(_)), "{second:?}");
    // A late correction, then an on-time result, then a late one: the timer fired
    // between two events of the batch.
    let kinds: Vec<EmissionKind> = emissions.iter().map(|e| e.kind).collect();
    let first_late = kinds.iter().position(|k| *k == EmissionKind::Late).unwrap();
    let last_late = kinds
        .iter()
        .rposition(|k| *k == EmissionKind::Late)
        .unwrap();
    assert!(
        kinds[first_late..last_late].contains(&EmissionKind::OnTime),
        "{kinds:?}"
    );
}
