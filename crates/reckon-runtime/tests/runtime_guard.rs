//! The time guard: an event further ahead of the server's clock than its stream's
//! `max_future` never moves a watermark and never reaches the raw log; it is a dead
//! letter of kind `future` for every reader. A finished store refuses ingest.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::{Event, EventTime, Key, PartitionId, ProcessingTime, Value};
use reckon_runtime::{Config, Error, Runtime, RuntimeOptions};
use std::path::Path;

const H: i64 = 3_600_000_000_000;
const T0: i64 = 1_700_000_000_000_000_000;

fn config(path: &Path, max_future: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        {max_future}
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        allowed_lateness = "2h"
        retention = "1d"
        [[pipeline]]
        name = "max_15m"
        stream = "water_level"
        window = {{ type = "tumbling", size = "15m" }}
        aggregates = [{{ fn = "max", field = "level" }}]
        allowed_lateness = "2h"
        retention = "1d"
        "#,
        path.display()
    ))
    .unwrap()
}

fn ev(t: i64, level: f64) -> Event {
    Event {
        stream: "water_level".into(),
        key: Key::from_tags([("i", "1")]).unwrap(),
        time: EventTime(t),
        id: None,
        fields: vec![("level".into(), Value::F64(level))],
    }
}

/// 2200-01-01T00:00:00Z.
const YEAR_2200: i64 = 7_258_118_400_000_000_000;

#[test]
fn future_event_does_not_poison_stream() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let now = ProcessingTime(T0);
    let r = rt
        .ingest(
            "water_level",
            PartitionId(0),
            now,
            vec![ev(T0, 1.0), ev(YEAR_2200, 9.0), ev(T0 + H / 2, 2.0)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (2, 1), "{r:?}");
    for p in &r.pipelines {
        assert_eq!(p.dead_lettered, 1, "{p:?}");
        let c = &p.dead_letter_kinds["future"];
        assert_eq!(c.count, 1);
        assert!(c.reason.contains("2200-01-01T00:00:00Z"), "{}", c.reason);
        assert!(c.reason.contains("max_future 1h"), "{}", c.reason);
    }
    // The watermark stayed with the real events; a normal late event still counts.
    assert!(rt.watermark("mean_1h").unwrap().0 <= EventTime(T0 + H / 2));
    let r = rt
        .ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0 + H),
            vec![ev(T0 + 60_000_000_000, 3.0), ev(T0 + 2 * H + 1, 5.0)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (1, 1), "{r:?}");
    let raw = rt.store().raw_scan("water_level").unwrap();
    assert_eq!(raw.len(), 3);
    assert!(raw.iter().all(|e| e.time.0 <= T0 + H / 2));
    let dead = rt.store().dead_letters("water_level").unwrap();
    let mut who: Vec<(&str, &str)> = dead.iter().map(|d| (&*d.pipeline, &*d.kind)).collect();
    who.sort();
    assert_eq!(
        who,
        vec![
            ("max_15m", "future"),
            ("max_15m", "future"),
            ("mean_1h", "future"),
            ("mean_1h", "future")
        ]
    );
    // Just inside the limit is accepted.
    let r = rt
        .ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0 + H),
            vec![ev(T0 + 2 * H, 4.0)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (1, 0), "{r:?}");
}

#[test]
fn the_guard_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "max_future = \"off\"");
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let r = rt
        .ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0),
            vec![ev(YEAR_2200, 9.0)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (1, 0), "{r:?}");
}

#[test]
fn ingest_into_a_finished_store_is_refused_not_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    rt.ingest(
        "water_level",
        PartitionId(0),
        ProcessingTime(T0),
        vec![ev(T0, 1.0)],
        &mut |_| {},
    )
    .unwrap();
    rt.finish(&mut |_| {}).unwrap();
    drop(rt);
    // The finished state is in the checkpoints: it survives a restart.
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    assert_eq!(rt.finished().len(), 2);
    let e = rt
        .ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0 + H),
            vec![ev(T0 + H, 1.0)],
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(e, Error::Finished { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("reckon ingest --finish"), "{text}");
    assert!(text.contains("reckon repair"), "{text}");
    assert!(rt.store().dead_letters("water_level").unwrap().is_empty());
    assert_eq!(rt.store().raw_scan("water_level").unwrap().len(), 1);
}
