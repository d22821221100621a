//! The runtime stops (between commits, as after a crash: every commit is atomic) at
//! random points, reopens from its checkpoint and journal, and carries on; at the end
//! every window in the store equals a batch recomputation over the stored raw events.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::aggregate::values_agree;
use reckon_core::batch;
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_workload::{Arrival, Seed000, SplitMix64};
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reckon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(path: &std::path::Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        allowed_lateness = "2h"
        retention = "3d"
        "#,
        path.display()
    ))
    .unwrap()
}

fn arrivals() -> Vec<Arrival> {
    let g = Seed000 {
        locations: 5,
        late_probability: 0.5,
        with_ids: true,
        ..Seed000::default()
    };
    g.arrivals().take(20_000).collect()
}

#[test]
fn restarts_at_random_points_end_equal_to_a_batch_recompute() {
    let dir = temp_dir("restart");
    let cfg = config(&dir);
    let options = RuntimeOptions {
        checkpoint_every: 7,
    };
    let mut rt = Runtime::open(&cfg, options.clone()).unwrap();
    let mut rng = SplitMix64::new(7);
    let all = arrivals();
    let mut restarts = 0;
    for batch in all.chunks(100) {
        let events = batch.iter().map(|a| a.event.clone()).collect();
        rt.ingest(
            "water_level",
            batch[0].partition,
            batch[0].at,
            events,
            &mut |_| {},
        )
        .unwrap();
        if rng.chance(0.06) {
            drop(rt);
            rt = Runtime::open(&cfg, options.clone()).unwrap();
            restarts += 1;
        }
    }
    assert!(restarts >= 5, "only {restarts} restarts");
    // A duplicate of an old event, far beyond the hot windows: the store's ids catch it.
    let old = all[10].event.clone();
    let r = rt
        .ingest(
            "water_level",
            all[0].partition,
            all.last().unwrap().at,
            vec![old],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.duplicates, r.accepted), (1, 0));
    rt.finish(&mut |_| {}).unwrap();

    let spec = cfg.pipelines[0].spec().unwrap();
    let raw = rt.store().raw_scan("water_level").unwrap();
    assert_eq!(raw.len(), all.len(), "every event stored exactly once");
    let (expected, rejected) = batch::compute(&spec, &raw).unwrap();
    assert!(rejected.is_empty());
    let stored = rt
        .store()
        .windows(
            "mean_1h",
            None,
            reckon_core::EventTime::MIN,
            reckon_core::EventTime::MAX,
            None,
        )
        .unwrap();
    assert_eq!(stored.len(), expected.len());
    for em in &stored {
        let r = &expected[&(em.key.clone(), em.window)];
        assert_eq!(em.checksum, r.checksum, "{} {}", em.key, em.window);
        for (a, b) in r.values.iter().zip(&em.values) {
            assert!(
                values_agree(a.as_ref(), b.as_ref()),
                "{} {}: {a:?} vs {b:?}",
                em.key,
                em.window
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_deletes_old_raw_events_but_keeps_every_result() {
    let dir = temp_dir("retention");
    let text = format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "count" }}]
        allowed_lateness = "1h"
        retention = "3h"
        "#,
        dir.display()
    );
    let cfg = Config::from_toml(&text).unwrap();
    let mut rt = Runtime::open(
        &cfg,
        RuntimeOptions {
            checkpoint_every: 1,
        },
    )
    .unwrap();
    let g = Seed000 {
        locations: 2,
        late_probability: 0.0,
        ..Seed000::default()
    };
    let all: Vec<Arrival> = g.arrivals().take(2 * 360 * 8).collect(); // 8 hours
    for batch in all.chunks(360) {
        let events = batch.iter().map(|a| a.event.clone()).collect();
        rt.ingest(
            "water_level",
            batch[0].partition,
            batch[0].at,
            events,
            &mut |_| {},
        )
        .unwrap();
    }
    let raw = rt.store().raw_scan("water_level").unwrap();
    let wm = rt.operator("mean_1h").unwrap().watermark().0;
    assert!(raw.len() < all.len(), "nothing deleted");
    assert!(
        raw.iter()
            .all(|e| e.time >= wm.minus(reckon_core::Span::hours(3))),
        "an event older than retention survived"
    );
    let results = rt
        .store()
        .windows(
            "mean_1h",
            None,
            reckon_core::EventTime::MIN,
            reckon_core::EventTime::MAX,
            None,
        )
        .unwrap();
    assert_eq!(results.len(), 2 * 7, "every closed window keeps its result");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An idle server ticks every second; ticks checkpoint like batches, so the journal a
/// restart replays stays short however long it idled, and the state after the restart
/// is the one it had.
#[test]
fn idle_ticks_checkpoint_so_the_replay_stays_short() {
    let dir = temp_dir("idle-ticks");
    let cfg = config(&dir);
    let options = RuntimeOptions {
        checkpoint_every: 16,
    };
    let mut rt = Runtime::open(&cfg, options.clone()).unwrap();
    let arrivals = arrivals();
    rt.ingest(
        "water_level",
        reckon_core::PartitionId(0),
        reckon_core::ProcessingTime(0),
        arrivals.iter().take(500).map(|a| a.event.clone()).collect(),
        &mut |_| {},
    )
    .unwrap();
    for s in 1..=1_000 {
        rt.tick(reckon_core::ProcessingTime(s * 1_000_000_000), &mut |_| {})
            .unwrap();
    }
    let cp = rt.store().checkpoint("mean_1h").unwrap().unwrap();
    let replay = rt.store().journal_after(cp.seq).unwrap().len();
    assert!(
        replay < 16,
        "{replay} journal entries to replay after 1,000 ticks"
    );
    let before = rt.operator("mean_1h").unwrap().snapshot().unwrap();
    drop(rt);
    let rt = Runtime::open(&cfg, options).unwrap();
    assert_eq!(rt.operator("mean_1h").unwrap().snapshot().unwrap(), before);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
