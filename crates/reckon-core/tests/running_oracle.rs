//! Running totals' invariant (`docs/running-totals.md`), checked by property tests
//! against the independent oracle in `reckon_testkit::running`: for any arrival order,
//! lateness, duplicates, batch shapes and crashes with restarts from a snapshot, once
//! everything has arrived every total at any event time equals a batch computation
//! over the accepted events, and every bucket's latest version equals the oracle's
//! bucket. Batches make the same emissions as event-by-event ingest (so a replay in
//! other batches makes the same versions).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use proptest::prelude::*;
use reckon_core::operator::{Reset, RunningSpec, RunningTotal};
use reckon_core::window::Tz;
use reckon_core::{
    Emission, EmissionKind, Event, EventId, EventTime, Expr, Key, Operator, PartitionId,
    ProcessingTime, Span, StepReport, Value,
};
use reckon_testkit::running::RunningOracle;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const SEC: i64 = 1_000_000_000;
/// 2022-03-26T00:00:00Z: the next day Europe/Amsterdam springs forward at 01:00 UTC
/// (02:00 local does not exist), and its 02:00 reset falls in the gap.
const BASE: i64 = 1_648_252_800 * SEC;

/// A mapping row: (sensor, valid from s, space, plus, arrival s).
type RowCase = (u8, i64, u8, bool, i64);

#[derive(Clone, Debug)]
struct Case {
    bucket_min: i64,
    reset: Option<(u32, &'static str)>,
    clamp: bool,
    /// A gauge (the last reading; then no reset and no clamp).
    gauge: bool,
    counter: bool,
    floats: bool,
    retention_h: i64,
    partitions: u32,
    /// (key, time offset s, value, id, lateness s, duplicate)
    events: Vec<(u8, i64, i64, Option<u32>, i64, bool)>,
    /// With a mapping: the events' keys are sensors (`dpu=0..3`), and these rows map a
    /// sensor to a space and a sign from a time on: (sensor, valid from s, space,
    /// plus, arrival s). Rows arrive at any time, often for a time long past.
    rows: Option<Vec<RowCase>>,
    batches: Vec<usize>,
    crashes: Vec<usize>,
    checkpoints: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let event = (
        0u8..3,
        0..72 * 3600i64,
        -3i64..=3,
        prop::option::weighted(0.5, 0u32..10_000),
        prop_oneof![3 => 0..120i64, 2 => 0..6 * 3600i64, 1 => 0..40 * 3600i64],
        prop::bool::weighted(0.1),
    );
    (
        prop_oneof![Just(1i64), Just(5), Just(15)],
        prop_oneof![
            Just(None),
            Just(Some((2 * 3600, "Europe/Amsterdam"))),
            Just(Some((4 * 3600, "America/New_York"))),
        ],
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
        (
            prop_oneof![3 => Just(24 * 30i64), 1 => Just(26i64)],
            prop::bool::weighted(0.2),
        ),
        1u32..=2,
        prop::collection::vec(event, 1..150),
        prop::collection::vec(1usize..25, 1..40),
        prop::collection::vec(0usize..200, 0..3),
        prop::collection::vec(0usize..200, 0..4),
        prop::option::weighted(
            0.4,
            prop::collection::vec(
                (
                    0u8..4,
                    0..72 * 3600i64,
                    0u8..3,
                    any::<bool>(),
                    0..80 * 3600i64,
                ),
                1..12,
            ),
        ),
    )
        .prop_map(
            |(
                bucket_min,
                reset,
                clamp,
                counter,
                floats,
                (retention_h, gauge),
                partitions,
                events,
                batches,
                crashes,
                checkpoints,
                rows,
            )| Case {
                bucket_min,
                reset: if gauge { None } else { reset },
                clamp: clamp && !gauge,
                gauge,
                counter,
                // Clamped totals compare exactly on integers only (floats are summed
                // exactly, but a clamp's comparison with zero on rounded sums is not
                // the point here).
                floats: floats && !clamp,
                // A row for a time beyond retention cannot move events that are gone:
                // with rows, everything stays inside retention.
                retention_h: if rows.is_some() { 24 * 30 } else { retention_h },
                partitions,
                events,
                batches,
                crashes,
                checkpoints,
                rows,
            },
        )
}

fn spec(c: &Case) -> RunningSpec {
    let mut s = RunningSpec::new("occupancy", Span::minutes(c.bucket_min));
    match (c.counter, c.rows.is_some()) {
        (true, _) => {}
        (false, false) => s.value = Some(Expr::parse("d").unwrap()),
        (false, true) => s.value = Some(Expr::parse("d * sign").unwrap()),
    }
    if c.rows.is_some() {
        s.mapping = Some(reckon_core::operator::Mapping {
            stream: Arc::from("dpu_location"),
            key_fields: vec!["space".into()],
        });
    }
    s.reset = c.reset.map(|(at, tz)| Reset {
        at,
        tz: Tz::get(tz).unwrap(),
    });
    s.clamp = c.clamp;
    s.gauge = c.gauge;
    s.retention = Span::hours(c.retention_h);
    s.validate().unwrap();
    s
}

fn oracle(c: &Case) -> RunningOracle {
    let value: reckon_testkit::running::ValueFn = match (c.counter, c.rows.is_some()) {
        (true, _) => |_| Some(Value::I64(1)),
        (false, false) => |e| e.field("d").cloned(),
        (false, true) => |e| match (e.field("d"), e.field("sign")) {
            (Some(Value::I64(d)), Some(Value::I64(s))) => Some(Value::I64(d * s)),
            (Some(Value::F64(d)), Some(Value::I64(s))) => Some(Value::F64(d * *s as f64)),
            _ => None,
        },
    };
    let mut o = RunningOracle::new(Span::minutes(c.bucket_min), value);
    if let Some((at, tz)) = c.reset {
        let t = jiff::civil::Time::new((at / 3600) as i8, 0, 0, 0).unwrap();
        o = o.reset(t, jiff::tz::TimeZone::get(tz).unwrap());
    }
    if c.clamp {
        o = o.clamp();
    }
    if c.gauge {
        o = o.gauge();
    }
    o
}

/// The mapping rows as events of the `dpu_location` stream, with their arrival time.
fn rows(c: &Case) -> Vec<(i64, Event)> {
    let spaces = ["a", "b", "c"];
    c.rows
        .iter()
        .flatten()
        .map(|&(dpu, t, space, plus, arrive)| {
            let e = Event {
                stream: "dpu_location".into(),
                key: Key::parse(&format!("dpu={dpu}")).unwrap(),
                time: EventTime(BASE + t * SEC),
                id: None,
                fields: vec![
                    (
                        "space".into(),
                        Value::Str(Arc::from(spaces[space as usize])),
                    ),
                    ("sign".into(), Value::I64(if plus { 1 } else { -1 })),
                ],
            };
            (arrive, e)
        })
        .collect()
}

/// Arrivals: (input, partition, event), in arrival order.
fn arrivals(c: &Case) -> Vec<(usize, PartitionId, Event)> {
    let keys = if c.rows.is_some() {
        ["dpu=0", "dpu=1", "dpu=2"]
    } else {
        ["space=a", "space=b", "space=c"]
    };
    let mut out: Vec<(i64, usize, usize, PartitionId, Event)> = Vec::new();
    for (n, &(k, t, d, id, late, dup)) in c.events.iter().enumerate() {
        let value = if c.floats {
            Value::F64(d as f64 * 0.25 + 0.1)
        } else {
            Value::I64(d)
        };
        let e = Event {
            stream: "doors".into(),
            key: Key::parse(keys[k as usize]).unwrap(),
            time: EventTime(BASE + t * SEC),
            id: id.map(|i| EventId(Arc::from(format!("e{i}-{n}")))),
            fields: vec![("d".into(), value)],
        };
        let p = PartitionId(n as u32 % c.partitions);
        if dup && e.id.is_some() {
            out.push((t + late + 7, 2 * n + 1, 0, p, e.clone()));
        }
        out.push((t + late, 2 * n, 0, p, e));
    }
    for (n, (arrive, e)) in rows(c).into_iter().enumerate() {
        out.push((arrive, 1_000_000 + n, 1, PartitionId(0), e));
    }
    out.sort_by_key(|(at, n, _, _, _)| (*at, *n));
    out.into_iter().map(|(_, _, i, p, e)| (i, p, e)).collect()
}

/// Plays the runtime: batches with a processing time, a journal, checkpoints, crashes
/// (restore the last checkpoint, replay the journal after it one event at a time), a
/// versioned sink.
struct Run {
    spec: RunningSpec,
    op: RunningTotal,
    journal: Vec<(ProcessingTime, usize, PartitionId, Vec<Event>)>,
    checkpoint: Option<(Vec<u8>, usize)>,
    accepted: Vec<Event>,
    latest: BTreeMap<(Key, EventTime), Emission>,
    versions: HashMap<(Key, EventTime, u32), Emission>,
    emissions: Vec<Emission>,
}

impl Run {
    fn new(spec: RunningSpec) -> Run {
        Run {
            op: RunningTotal::new(spec.clone(), "doors", None).unwrap(),
            spec,
            journal: Vec::new(),
            checkpoint: None,
            accepted: Vec::new(),
            latest: BTreeMap::new(),
            versions: HashMap::new(),
            emissions: Vec::new(),
        }
    }

    fn batch(&mut self, now: ProcessingTime, input: usize, p: PartitionId, events: Vec<Event>) {
        let (out, report) = step(&mut self.op, now, input, p, &events);
        assert!(
            input == 0 || report.dead.is_empty(),
            "a mapping row was refused: {:?}",
            report.dead
        );
        let dead: Vec<usize> = report.dead.iter().map(|d| d.index).collect();
        for (i, e) in events.iter().enumerate() {
            if !dead.contains(&i) {
                self.accepted.push(e.clone());
            }
        }
        self.journal.push((now, input, p, events));
        self.sink(out, false);
    }

    fn sink(&mut self, out: Vec<Emission>, replay: bool) {
        for em in out {
            let k = (em.key.clone(), em.window.start, em.version.0);
            match self.versions.get(&k) {
                Some(first) => assert_eq!(
                    (&first.values, first.checksum, first.kind),
                    (&em.values, em.checksum, em.kind),
                    "version {} of {:?} differs when replayed",
                    em.version,
                    k
                ),
                None => {
                    assert!(
                        !replay
                            || self
                                .latest
                                .get(&(k.0.clone(), k.1))
                                .is_none_or(|l| l.version.0 < k.2)
                    );
                    self.versions.insert(k.clone(), em.clone());
                }
            }
            let at = (em.key.clone(), em.window.start);
            if self.latest.get(&at).is_none_or(|l| l.version < em.version) {
                if let Some(l) = self.latest.get(&at) {
                    assert_eq!(l.version.0 + 1, em.version.0, "versions go up by one");
                }
                self.latest.insert(at, em.clone());
            }
            self.emissions.push(em);
        }
    }

    fn checkpoint(&mut self) {
        self.checkpoint = Some((self.op.snapshot().unwrap(), self.journal.len()));
    }

    fn crash(&mut self) {
        let (snap, from) = match &self.checkpoint {
            Some((s, n)) => (Some(s.clone()), *n),
            None => (None, 0),
        };
        self.op = RunningTotal::new(self.spec.clone(), "doors", snap.as_deref()).unwrap();
        for i in from..self.journal.len() {
            let (now, input, p, events) = self.journal[i].clone();
            for e in events {
                let (out, _) = step(&mut self.op, now, input, p, std::slice::from_ref(&e));
                self.sink(out, true);
            }
        }
    }
}

fn step(
    op: &mut RunningTotal,
    now: ProcessingTime,
    input: usize,
    p: PartitionId,
    events: &[Event],
) -> (Vec<Emission>, StepReport) {
    let mut out = Vec::new();
    let mut report = StepReport::default();
    op.advance(now, &mut out);
    op.ingest_events(input, p, events, &mut out, &mut report);
    (out, report)
}

fn check(c: Case) {
    let spec = spec(&c);
    let arrivals = arrivals(&c);
    let mut run = Run::new(spec.clone());
    // The same arrivals event by event, without crashes: the same emissions.
    let mut single = Run::new(spec.clone());
    let (mut at, mut b, mut now) = (0, 0, 0i64);
    while at < arrivals.len() {
        let n = c.batches[b % c.batches.len()].min(arrivals.len() - at);
        now += SEC;
        // One input and partition per batch, as the runtime hands them over.
        let (input, p) = (arrivals[at].0, arrivals[at].1);
        let mut batch = Vec::new();
        while batch.len() < n
            && at < arrivals.len()
            && (arrivals[at].0, arrivals[at].1) == (input, p)
        {
            batch.push(arrivals[at].2.clone());
            at += 1;
        }
        for e in &batch {
            single.batch(ProcessingTime(now), input, p, vec![e.clone()]);
        }
        run.batch(ProcessingTime(now), input, p, batch);
        if c.checkpoints.contains(&b) {
            run.checkpoint();
        }
        if c.crashes.contains(&b) {
            run.crash();
        }
        b += 1;
    }
    let strip = |ems: &[Emission]| -> Vec<_> {
        ems.iter()
            .map(|e| {
                (
                    e.key.clone(),
                    e.window,
                    e.version,
                    e.kind,
                    e.values.clone(),
                    e.checksum,
                )
            })
            .collect()
    };
    if c.crashes.iter().all(|&x| x >= b) {
        assert_eq!(
            strip(&run.emissions),
            strip(&single.emissions),
            "batches equal event by event"
        );
    }
    assert_eq!(run.accepted.len(), single.accepted.len());

    // The real-time counters (arrival order) survive crashes: the replay is in the
    // same order.
    for key in ["space=a", "space=b", "space=c"] {
        let key = Key::parse(key).unwrap();
        let now = ProcessingTime(now);
        assert_eq!(run.op.live(&key, now), single.op.live(&key, now), "{key}");
    }

    // Every total at any time, before the end (the horizon is behind the watermark).
    let (rows, events): (Vec<Event>, Vec<Event>) = single
        .accepted
        .iter()
        .cloned()
        .partition(|e| &*e.stream == "dpu_location");
    let events = &events;
    let mut o = oracle(&c);
    if c.rows.is_some() {
        o = o.mapping(&rows, &["space"]);
    }
    let mut times: Vec<i64> = events
        .iter()
        .flat_map(|e| [e.time.0 - 1, e.time.0, e.time.0 + 1])
        .collect();
    times.extend((0..80).map(|h| BASE + h * 3600 * SEC));
    let keys = ["space=a", "space=b", "space=c", "space=none"];
    for key in keys {
        let key = Key::parse(key).unwrap();
        for &t in &times {
            let want = o.total_at(events, &key, EventTime(t));
            match run.op.value_at(&key, EventTime(t)) {
                Ok(got) => assert!(
                    values_equal(want.as_ref(), got.as_ref()),
                    "{key} at {}: engine {got:?}, oracle {want:?}",
                    EventTime(t)
                ),
                Err(e) => assert!(
                    t < run.op.watermark().0.minus(spec.retention).0,
                    "{key} at {}: {e}",
                    EventTime(t)
                ),
            }
        }
    }

    // The end: every bucket's latest version against the oracle.
    let mut out = Vec::new();
    run.op.finish(&mut out);
    run.sink(out, false);
    let want = o.buckets(events);
    // A bucket whose events a mapping row moved away is retracted: count 0.
    let got: BTreeMap<_, _> = run.latest.iter().filter(|(_, e)| e.count > 0).collect();
    assert_eq!(
        got.keys().map(|k| (*k).clone()).collect::<Vec<_>>(),
        want.keys().cloned().collect::<Vec<_>>(),
        "the buckets emitted are the buckets with events"
    );
    for (k, w) in &want {
        let em = &run.latest[k];
        assert_eq!((em.count, em.checksum.hash), (w.count, w.hash), "{k:?}");
        assert!(
            values_equal(Some(&w.delta), em.values[0].as_ref()),
            "{k:?}: delta {:?} vs {:?}",
            em.values[0],
            w.delta
        );
        if c.clamp {
            assert!(
                values_equal(w.total.as_ref(), em.values[1].as_ref()),
                "{k:?}: total {:?} vs {:?}",
                em.values[1],
                w.total
            );
        }
        assert!(em.window.end.0 - em.window.start.0 == c.bucket_min * 60 * SEC);
        assert!(
            matches!(em.kind, EmissionKind::OnTime | EmissionKind::Late)
                || (c.rows.is_some() && em.kind == EmissionKind::Recomputed)
        );
    }
}

fn values_equal(want: Option<&Value>, got: Option<&Value>) -> bool {
    match (want, got) {
        (Some(Value::F64(a)), Some(Value::F64(b))) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        (a, b) => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn every_total_and_bucket_equals_the_oracle(c in case()) {
        check(c);
    }
}
