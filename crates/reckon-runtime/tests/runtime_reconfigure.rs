//! [`Runtime::reconfigure`]: operators started in a running instance (pipelines defined
//! over the HTTP API) end with the same results as if they had been configured from the
//! start, through a restart after the change; a change that cannot start leaves the
//! running dataflow exactly as it was; a removed operator stops.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::{Emission, EventTime, PartitionId, Value};
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_workload::{Arrival, Seed000};
use std::path::Path;

fn base(path: &Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        id_field = "id"
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        allowed_lateness = "1h"
        "#,
        path.display()
    ))
    .unwrap()
}

/// What is defined later: a window pipeline over the same stream, a rollup of it, and
/// alert rules on the pipeline that ran before (its stored results) and on the rollup
/// (started with it).
const MORE: &str = r#"
    [[pipeline]]
    name = "max_15m"
    stream = "water_level"
    window = { type = "tumbling", size = "15m" }
    aggregates = [{ fn = "max", field = "level", name = "max" }]
    allowed_lateness = "2h"
    [[pipeline]]
    name = "max_1h"
    input = "max_15m"
    window = { type = "tumbling", size = "1h" }
    [[alert]]
    name = "high_mean"
    input = "mean_1h"
    condition = "mean > 6.2"
    for = 2
    [[alert]]
    name = "high_max"
    input = "max_1h"
    condition = "max > 6.8"
"#;

fn full(path: &Path) -> Config {
    base(path).extended(toml::from_str(MORE).unwrap()).unwrap()
}

fn arrivals() -> Vec<Arrival> {
    Seed000 {
        locations: 4,
        interval: reckon_core::Span::secs(60),
        late_probability: 0.5,
        max_lateness: reckon_core::Span::hours(5),
        with_ids: true,
        ..Seed000::default()
    }
    .arrivals()
    .take(9_000)
    .collect()
}

fn ingest(rt: &mut Runtime, batch: &[Arrival]) {
    for chunk in batch.chunks(50) {
        let now = chunk.last().unwrap().at;
        let events = chunk.iter().map(|a| a.event.clone()).collect();
        rt.ingest("water_level", PartitionId(0), now, events, &mut |_| {})
            .unwrap();
    }
}

fn latest(rt: &Runtime, op: &str) -> Vec<Emission> {
    rt.store()
        .windows(op, None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
}

/// A window's content: what a batch evaluation would give, without the versions and
/// processing times of how it got there. An alert episode is its window, state and
/// end: its `late`, `value` and `input_count` say what the rule knew when it found the
/// episode, and a rule started later finds past episodes with their final input.
fn content(e: &Emission) -> Content {
    let alert = e.columns.iter().any(|c| &**c == "state");
    let values = e
        .columns
        .iter()
        .zip(e.values.iter())
        .filter(|(c, _)| !alert || matches!(&***c, "state" | "resolved_at"))
        .map(|(c, v)| (c.to_string(), v.clone()))
        .collect();
    (
        e.key.as_str().to_string(),
        e.window.start.0,
        e.window.end.0,
        values,
        if alert { 0 } else { e.count },
    )
}

/// The contents of `op`'s windows; of an alert, its timeline: the episodes that stand
/// (a retracted one is history of how the rule got there).
fn contents(rt: &Runtime, op: &str) -> Vec<Content> {
    latest(rt, op)
        .iter()
        .filter(|e| e.value("state") != Some(&Value::Str("retracted".into())))
        .map(content)
        .collect()
}

type Content = (String, i64, i64, Vec<(String, Option<Value>)>, u64);

fn versions(rt: &Runtime, op: &str) -> Vec<(Content, u32)> {
    latest(rt, op)
        .iter()
        .map(|e| (content(e), e.version.0))
        .collect()
}

/// Equal, or a panic naming the first difference (not both lists).
fn same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if let Some((i, (g, w))) = got.iter().zip(want).enumerate().find(|(_, (g, w))| g != w) {
        panic!("{what}: window {i} differs:\n got {g:?}\nwant {w:?}");
    }
    assert_eq!(got.len(), want.len(), "{what}: number of windows");
}

#[test]
fn operators_started_while_running_equal_operators_configured_from_the_start() {
    let all = arrivals();
    let (a, b) = (all.len() * 2 / 5, all.len() * 7 / 10);
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = RuntimeOptions {
        checkpoint_every: 7,
    };
    let mut reference = Runtime::open(&full(dirs.0.path()), opts.clone()).unwrap();
    ingest(&mut reference, &all);

    let mut live = Runtime::open(&base(dirs.1.path()), opts.clone()).unwrap();
    ingest(&mut live, &all[..a]);
    let mut started_emissions = 0;
    let done = live
        .reconfigure(&full(dirs.1.path()), vec![], &mut |_| {
            started_emissions += 1
        })
        .unwrap();
    assert_eq!(
        done.started,
        ["max_15m", "max_1h", "high_mean", "high_max"].map(std::sync::Arc::from)
    );
    assert!(done.stopped.is_empty());
    assert_eq!(done.emissions, started_emissions);
    // The new pipeline computed the stream's history, the rule on the old one read its
    // stored results.
    assert!(!latest(&live, "max_15m").is_empty());
    assert!(
        !latest(&live, "high_mean").is_empty(),
        "the rule found past episodes"
    );
    ingest(&mut live, &all[a..b]);
    // A restart right after finds the started operators from their checkpoints.
    drop(live);
    let mut live = Runtime::open(&full(dirs.1.path()), opts).unwrap();
    ingest(&mut live, &all[b..]);

    // The pipeline that ran all along: the same versions too.
    same(
        &versions(&live, "mean_1h"),
        &versions(&reference, "mean_1h"),
        "mean_1h",
    );
    for op in ["max_15m", "max_1h", "high_mean", "high_max"] {
        let want = contents(&reference, op);
        assert!(!want.is_empty(), "{op} has results");
        same(&contents(&live, op), &want, op);
    }
    let firing = |rt: &Runtime, op: &str| {
        latest(rt, op)
            .iter()
            .filter(|e| e.value("state") == Some(&Value::Str("resolved".into())))
            .count()
    };
    assert!(firing(&reference, "high_mean") > 2, "episodes to compare");
    assert!(firing(&reference, "high_max") > 2, "episodes to compare");
}

#[test]
fn a_change_that_cannot_start_leaves_the_dataflow_as_it_was_and_a_removed_operator_stops() {
    let all = arrivals();
    let half = all.len() / 2;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut reference = Runtime::open(&base(dirs.0.path()), RuntimeOptions::default()).unwrap();
    let mut live = Runtime::open(&base(dirs.1.path()), RuntimeOptions::default()).unwrap();
    ingest(&mut reference, &all[..half]);
    ingest(&mut live, &all[..half]);
    // A rollup of `mean_1h` needs its aggregate states, which its stored results (made
    // before anything merged them) do not carry: refused, and nothing changes.
    let rollup = base(dirs.1.path())
        .extended(
            toml::from_str(
                r#"
                [[pipeline]]
                name = "mean_1d"
                input = "mean_1h"
                window = { type = "tumbling", size = "1d" }
                "#,
            )
            .unwrap(),
        )
        .unwrap();
    let err = live.reconfigure(&rollup, vec![], &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("aggregate states"), "{err}");
    assert_eq!(
        live.operators()
            .map(|o| o.name().to_string())
            .collect::<Vec<_>>(),
        ["mean_1h"]
    );
    assert!(latest(&live, "mean_1d").is_empty());
    live.reconfigure(&full(dirs.1.path()), vec![], &mut |_| {})
        .unwrap();
    assert_eq!(live.operators().count(), 5);
    // Back to the first configuration: the others stop, `mean_1h` goes on as if
    // nothing had happened.
    let done = live
        .reconfigure(&base(dirs.1.path()), vec![], &mut |_| {})
        .unwrap();
    assert!(done.started.is_empty());
    assert_eq!(
        done.stopped,
        ["high_max", "high_mean", "max_15m", "max_1h"].map(std::sync::Arc::from)
    );
    // Their checkpoints are gone with them (they would hold the journal back).
    for op in &done.stopped {
        assert!(live.store().checkpoint(op).unwrap().is_none(), "{op}");
    }
    assert!(live.store().checkpoint("mean_1h").unwrap().is_some());
    ingest(&mut reference, &all[half..]);
    ingest(&mut live, &all[half..]);
    same(
        &versions(&live, "mean_1h"),
        &versions(&reference, "mean_1h"),
        "mean_1h",
    );
    let max_before = latest(&live, "max_15m").len();
    assert!(max_before > 0);
    assert_eq!(live.operators().count(), 1);
}

/// Operators added to the configuration between two runs start the same way: the
/// journal no longer goes back to the beginning (checkpoints pruned it), the raw log
/// and the stored results do.
#[test]
fn operators_added_to_the_configuration_before_a_restart_start_from_the_raw_log() {
    let all = arrivals();
    let half = all.len() / 2;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = RuntimeOptions {
        checkpoint_every: 5,
    };
    let mut reference = Runtime::open(&full(dirs.0.path()), opts.clone()).unwrap();
    ingest(&mut reference, &all);
    let mut live = Runtime::open(&base(dirs.1.path()), opts.clone()).unwrap();
    ingest(&mut live, &all[..half]);
    assert!(
        live.store().journal_after(0).unwrap().len() < half,
        "checkpoints pruned the journal"
    );
    drop(live);
    let mut live = Runtime::open(&full(dirs.1.path()), opts).unwrap();
    for op in ["max_15m", "max_1h", "high_mean", "high_max"] {
        assert!(live.store().checkpoint(op).unwrap().is_some(), "{op}");
    }
    ingest(&mut live, &all[half..]);
    same(
        &versions(&live, "mean_1h"),
        &versions(&reference, "mean_1h"),
        "mean_1h",
    );
    for op in ["max_15m", "max_1h", "high_mean", "high_max"] {
        same(&contents(&live, op), &contents(&reference, op), op);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

        /// Any workload (seed, lateness), any moment of the change, requests resent
        /// (duplicates by id), with or without a restart right after it: the operators
        /// started while running end equal to the same operators configured from the
        /// start.
        #[test]
        fn started_while_running_equals_configured_from_the_start(
            seed in 0u64..1_000,
            late in 0.1f64..0.9,
            split in 0.05f64..0.95,
            resend in proptest::collection::vec(0usize..60, 0..6),
            restart in any::<bool>(),
        ) {
            let all: Vec<Arrival> = Seed000 {
                locations: 3,
                interval: reckon_core::Span::secs(60),
                late_probability: late,
                max_lateness: reckon_core::Span::hours(4),
                with_ids: true,
                seed,
                ..Seed000::default()
            }
            .arrivals()
            .take(1_500)
            .collect();
            // Requests of 50 events; some sent twice (a client retrying).
            let mut requests: Vec<&[Arrival]> = all.chunks(50).collect();
            for r in resend {
                if r < requests.len() {
                    requests.insert(r, requests[r]);
                }
            }
            let at = ((requests.len() as f64) * split) as usize;
            let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let opts = RuntimeOptions { checkpoint_every: 3 };
            let mut reference = Runtime::open(&full(dirs.0.path()), opts.clone()).unwrap();
            let mut live = Runtime::open(&base(dirs.1.path()), opts.clone()).unwrap();
            for r in &requests {
                ingest(&mut reference, r);
            }
            for r in &requests[..at] {
                ingest(&mut live, r);
            }
            live.reconfigure(&full(dirs.1.path()), vec![], &mut |_| {}).unwrap();
            if restart {
                drop(live);
                live = Runtime::open(&full(dirs.1.path()), opts).unwrap();
            }
            for r in &requests[at..] {
                ingest(&mut live, r);
            }
            prop_assert_eq!(versions(&live, "mean_1h"), versions(&reference, "mean_1h"));
            for op in ["max_15m", "max_1h", "high_mean", "high_max"] {
                prop_assert_eq!(contents(&live, op), contents(&reference, op), "{}", op);
            }
        }
    }
}
