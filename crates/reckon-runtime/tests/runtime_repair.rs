//! `repair`: a store poisoned by an event dated 2200 (written with the guard off) or
//! finished by `reckon ingest --finish` is recovered: the far-future event becomes a
//! dead letter, normal events are accepted again, the dead-lettered normal events are
//! re-offered, and every window equals the batch oracle with versions above the old.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::aggregate::values_agree;
use reckon_core::{Event, EventTime, Key, PartitionId, ProcessingTime, Value, batch};
use reckon_runtime::{Config, Runtime, RuntimeOptions, repair};
use std::collections::HashMap;
use std::path::Path;

const H: i64 = 3_600_000_000_000;
const T0: i64 = 1_700_000_000_000_000_000;
/// 2200-01-01T00:00:00Z.
const YEAR_2200: i64 = 7_258_118_400_000_000_000;

fn config(path: &Path, max_future: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        max_future = "{max_future}"
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        allowed_lateness = "2h"
        retention = "1d"
        "#,
        path.display()
    ))
    .unwrap()
}

fn ev(i: u32, t: i64, level: f64) -> Event {
    Event {
        stream: "water_level".into(),
        key: Key::from_tags([("i", i.to_string())]).unwrap(),
        time: EventTime(t),
        id: None,
        fields: vec![("level".into(), Value::F64(level))],
    }
}

/// Every stored window of `mean_1h` equals the batch oracle over the raw log, and
/// every version is above `old` (the versions before the repair).
fn assert_equals_oracle(rt: &Runtime, cfg: &Config, old: &HashMap<(Key, i64), u32>) {
    let spec = cfg.pipelines[0].spec().unwrap();
    let raw = rt.store().raw_scan("water_level").unwrap();
    let (expected, rejected) = batch::compute(&spec, &raw).unwrap();
    assert!(rejected.is_empty());
    let stored = rt
        .store()
        .windows("mean_1h", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap();
    for em in &stored {
        if let Some(v) = old.get(&(em.key.clone(), em.window.start.0)) {
            assert!(
                em.version.0 >= *v,
                "{} {}: version went back",
                em.key,
                em.window
            );
        }
        let Some(r) = expected.get(&(em.key.clone(), em.window)) else {
            assert_eq!(
                em.count, 0,
                "{} {}: a window with no raw event",
                em.key, em.window
            );
            continue;
        };
        assert_eq!(em.checksum, r.checksum, "{} {}", em.key, em.window);
        for (a, b) in r.values.iter().zip(&em.values) {
            assert!(
                values_agree(a.as_ref(), b.as_ref()),
                "{} {}",
                em.key,
                em.window
            );
        }
    }
    for (key, w) in expected.keys() {
        assert!(
            stored.iter().any(|e| &e.key == key && e.window == *w) || w.end.0 > T0 + 20 * H,
            "{key} {w}: no stored result"
        );
    }
}

#[test]
fn repair_recovers_a_store_poisoned_by_an_event_dated_2200() {
    let dir = tempfile::tempdir().unwrap();
    // Poisoned as before the guard: the guard off.
    let off = config(dir.path(), "off");
    let mut rt = Runtime::open(&off, RuntimeOptions::default()).unwrap();
    for h in 0..6 {
        rt.ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0 + h * H),
            vec![ev(1, T0 + h * H, h as f64), ev(2, T0 + h * H + 1, 10.0)],
            &mut |_| {},
        )
        .unwrap();
    }
    rt.ingest(
        "water_level",
        PartitionId(0),
        ProcessingTime(T0 + 6 * H),
        vec![ev(1, YEAR_2200, 99.0)],
        &mut |_| {},
    )
    .unwrap();
    // From now on every normal event is dead-lettered beyond retention.
    let r = rt
        .ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0 + 7 * H),
            vec![ev(1, T0 + 6 * H + 5, 7.0), ev(2, T0 + 5 * H + 5, 8.0)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r.dead_lettered, 2, "the store is poisoned: {r:?}");
    rt.finish(&mut |_| {}).unwrap();
    let old: HashMap<(Key, i64), u32> = rt
        .store()
        .windows("mean_1h", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .map(|e| ((e.key, e.window.start.0), e.version.0))
        .collect();
    let store = rt.store().clone();
    drop(rt);

    // Repair with the default guard, at a clock next to the real events.
    let cfg = config(dir.path(), "1h");
    let report = repair(&cfg, &store, ProcessingTime(T0 + 8 * H)).unwrap();
    let s = &report.streams[0];
    assert_eq!(
        (s.quarantined, s.reoffered, s.readmitted),
        (1, 2, 2),
        "{report:?}"
    );
    assert_eq!(s.reopened, vec!["mean_1h".to_string()]);
    assert_eq!(s.removed, 1, "{report:?}");
    drop(store);

    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let raw = rt.store().raw_scan("water_level").unwrap();
    assert!(raw.iter().all(|e| e.time.0 < YEAR_2200));
    assert_eq!(raw.len(), 14);
    let dead = rt.store().dead_letters("water_level").unwrap();
    let kinds: Vec<&str> = dead.iter().map(|d| &*d.kind).collect();
    assert_eq!(kinds, vec!["future"], "{dead:?}");
    assert!(rt.finished().is_empty());
    // Normal events are accepted again, late ones included.
    let r = rt
        .ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0 + 8 * H),
            vec![ev(1, T0 + 7 * H, 1.5), ev(2, T0 + 6 * H + 9, 2.5)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (2, 0), "{r:?}");
    rt.finish(&mut |_| {}).unwrap();
    assert_equals_oracle(&rt, &cfg, &old);
    // The window only the 2200 event made was never emitted (it was still open).
    let w2200 = rt
        .store()
        .windows(
            "mean_1h",
            None,
            EventTime(YEAR_2200 - H),
            EventTime::MAX,
            None,
        )
        .unwrap();
    assert!(w2200.iter().all(|e| e.count == 0), "{w2200:?}");
}

#[test]
fn repair_reopens_a_finished_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "1h");
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    rt.ingest(
        "water_level",
        PartitionId(0),
        ProcessingTime(T0),
        vec![ev(1, T0, 1.0), ev(1, T0 + H / 2, 3.0)],
        &mut |_| {},
    )
    .unwrap();
    rt.finish(&mut |_| {}).unwrap();
    let store = rt.store().clone();
    drop(rt);
    let report = repair(&cfg, &store, ProcessingTime(T0 + H)).unwrap();
    assert_eq!(report.streams[0].reopened, vec!["mean_1h".to_string()]);
    drop(store);
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let r = rt
        .ingest(
            "water_level",
            PartitionId(0),
            ProcessingTime(T0 + H),
            vec![ev(1, T0 + H / 4, 5.0), ev(1, T0 + H, 1.0)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (2, 0), "{r:?}");
    rt.finish(&mut |_| {}).unwrap();
    assert_equals_oracle(&rt, &cfg, &HashMap::new());
    let w = rt
        .store()
        .latest(
            "mean_1h",
            &Key::from_tags([("i", "1")]).unwrap(),
            EventTime(T0 - T0 % H),
        )
        .unwrap()
        .unwrap();
    assert_eq!(w.count, 3);
    assert!(w.version.0 >= 2, "{w:?}");
}
