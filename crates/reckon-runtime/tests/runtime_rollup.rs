//! Rollups through the runtime: 5-minute windows rolled up to hours, local days, ISO
//! weeks and months (Asia/Ho_Chi_Minh), with events in any arrival order, late by
//! minutes or by days (past every level's allowed lateness: the cold paths), resent
//! duplicates and restarts at random points. At the end every level's newest stored
//! results equal the test kit's independent rollup oracle over the events, every
//! window's versions go up by one, and a late event corrects every level in the same
//! commit.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use proptest::prelude::*;
use reckon_core::{
    AggKind, Emission, EmissionKind, Event, EventId, EventTime, Key, PartitionId, ProcessingTime,
    Value, Window,
};
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_testkit::rollup::{Level, OracleAgg, RollupOracle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const LEVELS: [&str; 5] = ["b5m", "bhour", "bday", "bweek", "bmonth"];
const MIN: i64 = 60_000_000_000;
/// 2024-01-28T00:00:00Z: the data spans the end of January (a week across months).
const T0: i64 = 1_706_400_000_000_000_000;

fn temp_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "reckon-rollup-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(path: &Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "m"
        key_fields = ["k"]
        max_future = "off"
        [[pipeline]]
        name = "b5m"
        stream = "m"
        window = {{ type = "tumbling", size = "5m" }}
        aggregates = [{{ fn = "count" }}, {{ fn = "sum", field = "v" }}, {{ fn = "mean", field = "v" }}, {{ fn = "max", field = "v" }}, {{ fn = "variance", field = "v" }}, {{ fn = "count", filter = "v > 100 and w < 900", name = "big" }}, {{ fn = "sum", field = "w" }}]
        derive = {{ w = "v * 2" }}
        filter = "v != 13 and v != 42"
        allowed_lateness = "20m"
        retention = "60d"
        [[pipeline]]
        name = "bhour"
        input = "b5m"
        window = {{ type = "tumbling", size = "1h" }}
        allowed_lateness = "30m"
        [[pipeline]]
        name = "bday"
        input = "bhour"
        window = {{ type = "calendar", unit = "day", tz = "Asia/Ho_Chi_Minh" }}
        allowed_lateness = "3h"
        [[pipeline]]
        name = "bweek"
        input = "bday"
        window = {{ type = "calendar", unit = "week", tz = "Asia/Ho_Chi_Minh" }}
        allowed_lateness = "1h"
        [[pipeline]]
        name = "bmonth"
        input = "bday"
        window = {{ type = "calendar", unit = "month", tz = "Asia/Ho_Chi_Minh" }}
        "#,
        path.display()
    ))
    .unwrap()
}

fn oracle() -> RollupOracle {
    let tz = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
    RollupOracle::new(tz)
        .level("b5m", Level::Tumbling(reckon_core::Span::minutes(5)))
        .level("bhour", Level::Tumbling(reckon_core::Span::hours(1)))
        .level("bday", Level::Day)
        .level("bweek", Level::IsoWeek)
        .level("bmonth", Level::Month)
        .aggregate(OracleAgg::count("count"))
        .aggregate(OracleAgg::new("sum_v", AggKind::Sum, Some("v")))
        .aggregate(OracleAgg::new("mean_v", AggKind::Mean, Some("v")))
        .aggregate(OracleAgg::new("max_v", AggKind::Max, Some("v")))
        .aggregate(OracleAgg::new("variance_v", AggKind::Variance, Some("v")))
        .derive("w", |e| match e.field("v") {
            Some(Value::I64(v)) => Some(Value::I64(v * 2)),
            _ => None,
        })
        .aggregate(OracleAgg::count("big").filter(|e| {
            matches!((e.field("v"), e.field("w")), (Some(Value::I64(v)), Some(Value::I64(w))) if *v > 100 && *w < 900)
        }))
        .aggregate(OracleAgg::new("sum_w", AggKind::Sum, Some("w")))
}

/// The pipeline's `filter`, for the oracle: the events it keeps.
fn kept(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter(|e| !matches!(e.field("v"), Some(Value::I64(13 | 42))))
        .cloned()
        .collect()
}

fn event(id: u64, key: u8, t: i64, v: i64) -> Event {
    Event {
        stream: "m".into(),
        key: Key::from_tags([("k", format!("s{key}"))]).unwrap(),
        time: EventTime(t),
        id: Some(EventId(format!("e{id}").into())),
        fields: vec![("v".into(), Value::I64(v))],
    }
}

fn latest(rt: &Runtime, level: &str) -> BTreeMap<(Key, Window), Emission> {
    rt.store()
        .windows(level, None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .map(|e| ((e.key.clone(), e.window), e))
        .collect()
}

/// Every level equals the oracle and every window's stored versions strictly increase.
fn check(rt: &Runtime, events: &[Event]) -> Result<(), TestCaseError> {
    let want = oracle().run(&kept(events));
    for level in LEVELS {
        let got = latest(rt, level);
        let diffs = want.diff_level(level, &got);
        prop_assert!(diffs.is_empty(), "{}", diffs.join("\n"));
        for (key, w) in got.keys() {
            let versions: Vec<u32> = rt
                .store()
                .history(level, key, w.start)
                .unwrap()
                .iter()
                .map(|e| e.version.0)
                .collect();
            // Strictly increasing from 1 on: a commit stores only the newest of the
            // versions it carries for a window, so numbers may be skipped.
            prop_assert!(
                versions.first().is_some_and(|v| *v >= 1)
                    && versions.windows(2).all(|p| p[0] < p[1]),
                "{} {} {}: {:?}",
                level,
                key,
                w,
                versions
            );
        }
    }
    Ok(())
}

/// One arrival: an event (or a resend of one) with its delay behind event time.
#[derive(Clone, Debug)]
struct Plan {
    events: Vec<(u8, i64, i64)>,
    delays: Vec<i64>,
    resend: Vec<usize>,
    batch: usize,
    restart_every: usize,
}

fn plan() -> impl Strategy<Value = Plan> {
    (5usize..120).prop_flat_map(|n| {
        (
            // key, minutes from T0 over ~6 weeks, value
            proptest::collection::vec(
                (
                    0u8..3,
                    0i64..60_000,
                    prop_oneof![8 => -50i64..500, 1 => Just(13i64), 1 => Just(42i64)],
                ),
                n,
            ),
            // delay in minutes: mostly none, some within lateness, some days late
            proptest::collection::vec(
                prop_oneof![
                    6 => Just(0i64),
                    3 => 0i64..90,
                    1 => 0i64..20_000,
                ],
                n,
            ),
            proptest::collection::vec(0usize..n, 0..n / 5 + 1),
            1usize..12,
            2usize..9,
        )
            .prop_map(|(events, delays, resend, batch, restart_every)| Plan {
                events,
                delays,
                resend,
                batch,
                restart_every,
            })
    })
}

fn run(plan: &Plan) -> Result<(), TestCaseError> {
    let dir = temp_dir();
    let cfg = config(&dir);
    let options = RuntimeOptions {
        checkpoint_every: 3,
    };
    let events: Vec<Event> = plan
        .events
        .iter()
        .enumerate()
        .map(|(i, &(k, m, v))| event(i as u64, k, T0 + m * MIN, v))
        .collect();
    // Arrival order: by event time plus delay; resends arrive after the last event.
    let mut order: Vec<(i64, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.time.0 + plan.delays[i] * MIN, i))
        .collect();
    order.sort();
    let mut arrivals: Vec<&Event> = order.iter().map(|&(_, i)| &events[i]).collect();
    arrivals.extend(plan.resend.iter().map(|&i| &events[i]));
    let mut rt = Runtime::open(&cfg, options.clone()).unwrap();
    let mut now = 0i64;
    for (b, chunk) in arrivals.chunks(plan.batch).enumerate() {
        now += 1;
        let batch: Vec<Event> = chunk.iter().map(|e| (*e).clone()).collect();
        rt.ingest("m", PartitionId(0), ProcessingTime(now), batch, &mut |_| {})
            .unwrap();
        if b % plan.restart_every == plan.restart_every - 1 {
            drop(rt);
            rt = Runtime::open(&cfg, options.clone()).unwrap();
        }
    }
    rt.finish(&mut |_| {}).unwrap();
    let result = check(&rt, &events);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_level_equals_the_oracle_in_any_arrival_order(plan in plan()) {
        run(&plan)?;
    }
}

#[test]
fn a_late_event_corrects_every_level_in_the_same_commit() {
    let dir = temp_dir();
    let cfg = config(&dir);
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    // Days of data, then an event three days late: past every level's allowed
    // lateness but the month's, so most levels take the cold path.
    let mut evs: Vec<Event> = (0..300)
        .map(|i| event(i, 0, T0 + (i as i64) * 17 * MIN, 10))
        .collect();
    evs.push(event(1000, 0, T0 + 4 * 24 * 60 * MIN, 1));
    rt.ingest(
        "m",
        PartitionId(0),
        ProcessingTime(1),
        evs.clone(),
        &mut |_| {},
    )
    .unwrap();
    let before = rt.store().last_change();
    let late = event(2000, 0, T0 + 7 * MIN, 100); // a Sunday: its ISO week is closed too
    let mut seen = Vec::new();
    let report = rt
        .ingest(
            "m",
            PartitionId(0),
            ProcessingTime(2),
            vec![late.clone()],
            &mut |e| seen.push(e.clone()),
        )
        .unwrap();
    assert_eq!(report.accepted, 1);
    // One commit: every level's correction is in the change feed after `before`, in
    // the order data flows, and nothing else is.
    let page = rt.store().changes_page(before, None, 100).unwrap();
    let levels: Vec<&str> = page.changes.iter().map(|(_, e)| &*e.pipeline).collect();
    assert_eq!(levels, LEVELS, "{:#?}", page.changes);
    assert_eq!(seen.len(), LEVELS.len());
    for (_, e) in &page.changes {
        assert!(
            matches!(e.kind, EmissionKind::Recomputed | EmissionKind::Late),
            "{} {:?}",
            e.pipeline,
            e.kind
        );
        // The 5-minute window is new (v1); every level above it held the day already.
        if &*e.pipeline != "b5m" {
            assert!(e.version.0 >= 2, "{} v{}", e.pipeline, e.version.0);
        }
    }
    evs.push(late);
    // An event the pipeline's filter keeps out: stored and counted, not a dead letter,
    // and it causes no emission at any level.
    let before = rt.store().last_change();
    let skipped = event(3000, 0, T0 + 7 * MIN, 13);
    let r = rt
        .ingest(
            "m",
            PartitionId(0),
            ProcessingTime(3),
            vec![skipped.clone()],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (1, 0));
    assert_eq!(r.pipelines[0].filtered, 1);
    assert_eq!(rt.store().last_change(), before);
    evs.push(skipped);
    rt.finish(&mut |_| {}).unwrap();
    check(&rt, &evs).unwrap();
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
