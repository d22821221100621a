//! Seed 004 end to end: the real BTS alarms of `examples/seed004` through its own
//! `reckon.toml` (CSV with local Vietnam times, a per-aggregate filter, 5-minute
//! windows rolled up to hour, day, ISO week and month), in their real arrival order
//! (by id), then the three held-back rows. Every window of every level is checked
//! against the test kit's independent computation from the rows (`bts_expected`), and
//! the late rows are shown to correct every level in their own commit.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_connect::csv::CsvDecoder;
use reckon_core::{Event, EventTime, PartitionId, ProcessingTime, Value};
use reckon_runtime::{Config, Runtime, RuntimeOptions};
use reckon_testkit::bts::{BTS_LEVELS, bts_expected, load_bts};
use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed004")
}

fn config(store: &Path) -> Config {
    let text = std::fs::read_to_string(example().join("reckon.toml")).unwrap();
    let text = text.replace(
        "path = \"reckon-seed004-data\"",
        &format!("path = \"{}\"", store.display()),
    );
    assert!(
        text.contains(&store.display().to_string()),
        "store path not replaced"
    );
    Config::from_toml(&text).unwrap()
}

fn decode(cfg: &Config, file: &str) -> Vec<Event> {
    let bytes = std::fs::read(example().join(file)).unwrap();
    CsvDecoder::new(cfg.stream("alarms").unwrap(), &bytes[..])
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::I64(i) => Some(*i as f64),
        Value::F64(x) => Some(*x),
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn every_level_of_the_bts_rollups_equals_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("store"));
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let alarms = decode(&cfg, "alarms.csv");
    let late = decode(&cfg, "late.csv");
    assert_eq!((alarms.len(), late.len()), (191, 3));
    // Local times: 2017-10-23 11:51:30 in Vietnam is 04:51:30 UTC.
    let first = alarms
        .iter()
        .find(|e| e.id.as_ref().unwrap().0.as_ref() == "10167673");
    assert_eq!(
        first.unwrap().time,
        EventTime::from_secs(1_508_734_290) // 2017-10-23T04:51:30Z
    );
    // Processing time: late 2026, as the server clock would be (the time guard
    // compares event times with it).
    let mut now = 1_796_000_000_000_000_000;
    for chunk in alarms.chunks(16) {
        now += 1;
        rt.ingest(
            "alarms",
            PartitionId(0),
            ProcessingTime(now),
            chunk.to_vec(),
            &mut |_| {},
        )
        .unwrap();
    }
    // The held-back rows, one request each: every level that holds them is corrected
    // in that request's commit.
    for e in &late {
        now += 1;
        let mut seen = Vec::new();
        let r = rt
            .ingest(
                "alarms",
                PartitionId(0),
                ProcessingTime(now),
                vec![e.clone()],
                &mut |em| seen.push(em.pipeline.to_string()),
            )
            .unwrap();
        assert_eq!(r.accepted, 1);
        // Every level whose window of the row has closed emits its correction now;
        // a level still open takes the row into its result when it closes.
        let mut corrected = 0;
        for level in BTS_LEVELS {
            let name = format!("alarms_{level}");
            let wm = rt.watermark(&name).unwrap();
            let held = rt
                .store()
                .windows(&name, Some(&e.key), EventTime::MIN, EventTime::MAX, None)
                .unwrap()
                .into_iter()
                .find(|w| w.window.contains(e.time));
            let closed = held.as_ref().is_some_and(|w| w.window.end <= wm.0);
            if closed {
                corrected += 1;
                assert!(seen.contains(&name), "{name} not corrected: {seen:?}");
            } else {
                assert!(
                    !seen.contains(&name),
                    "{name} is open but emitted: {seen:?}"
                );
            }
        }
        assert!(corrected >= 1, "{e:?} corrected nothing");
    }
    rt.finish(&mut |_| {}).unwrap();

    let mut rows = load_bts(&example().join("alarms.csv"));
    rows.extend(load_bts(&example().join("late.csv")));
    let expected = bts_expected(&rows);
    let mut checked = 0;
    for level in BTS_LEVELS {
        let name = format!("alarms_{level}");
        let stored = rt
            .store()
            .windows(&name, None, EventTime::MIN, EventTime::MAX, None)
            .unwrap();
        let want: Vec<_> = expected.iter().filter(|((l, ..), _)| l == level).collect();
        assert_eq!(stored.len(), want.len(), "{name}: window count");
        for ((_, station, alarm, w), bw) in want {
            let key = reckon_testkit::bts::bts_key(station, alarm);
            let em = stored
                .iter()
                .find(|e| e.key == key && e.window == *w)
                .unwrap_or_else(|| panic!("{name} {key} {w}: missing"));
            let what = format!("{name} {key} {w}");
            assert_eq!(em.count, bw.all, "{what}: all");
            assert_eq!(number(em.value("all")), Some(bw.all as f64), "{what}: all");
            assert_eq!(
                number(em.value("above")),
                Some(bw.above as f64),
                "{what}: above"
            );
            assert_eq!(number(em.value("max_value")), bw.max_value, "{what}: max");
            match (number(em.value("mean_value")), bw.mean_value) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "{what}: mean {a} vs {b}"
                ),
                (a, b) => assert_eq!(a, b, "{what}: mean"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 97 + 39 + 36 + 36 + 36);
    // Day totals, by hand from the file: 194 alarms, 110 above their threshold.
    let days = rt
        .store()
        .windows("alarms_day", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap();
    let total = |c: &str| {
        days.iter()
            .map(|e| number(e.value(c)).unwrap())
            .sum::<f64>()
    };
    assert_eq!((total("all"), total("above")), (194.0, 110.0));
}

/// The example's alert rule (`alarms_above`: an alarm above its threshold in a 5-minute
/// window, kept firing 5 minutes) through the runtime, with restarts between requests: after the
/// late rows and the end of the sample, its stored timeline equals the test kit's batch
/// evaluation of the rule over the stored 5-minute windows.
#[test]
fn the_alert_on_the_above_threshold_rate_equals_a_batch_evaluation() {
    use reckon_testkit::alert::{AlertOracle, OracleWindow};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("store"));
    let alarms = decode(&cfg, "alarms.csv");
    let late = decode(&cfg, "late.csv");
    let mut now = 1_796_000_000_000_000_000;
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let mut emitted = Vec::new();
    for (i, chunk) in alarms.chunks(16).chain(late.chunks(1)).enumerate() {
        now += 1;
        rt.ingest(
            "alarms",
            PartitionId(0),
            ProcessingTime(now),
            chunk.to_vec(),
            &mut |em| {
                if &*em.pipeline == "alarms_above" {
                    emitted.push(em.clone());
                }
            },
        )
        .unwrap();
        if i % 4 == 3 {
            drop(rt);
            rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
        }
    }
    rt.finish(&mut |em| {
        if &*em.pipeline == "alarms_above" {
            emitted.push(em.clone());
        }
    })
    .unwrap();
    let windows: Vec<OracleWindow> = rt
        .store()
        .windows("alarms_5m", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .iter()
        .map(|w| OracleWindow {
            key: w.key.clone(),
            start: w.window.start,
            end: w.window.end,
            holds: number(w.value("above")).is_some_and(|a| a >= 1.0),
        })
        .collect();
    let oracle = AlertOracle {
        for_windows: 1,
        keep_firing_for: reckon_core::Span(5 * 60_000_000_000),
    };
    let want: std::collections::BTreeMap<_, _> = oracle
        .timeline(&windows, EventTime::MAX)
        .into_iter()
        .map(|(at, r)| (at, r.map(|r| r.to_string())))
        .collect();
    let stored: std::collections::BTreeMap<_, _> = rt
        .store()
        .windows("alarms_above", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind != reckon_core::EmissionKind::Retracted)
        .map(|e| {
            let resolved = match e.value("resolved_at") {
                Some(Value::Str(t)) => Some(t.to_string()),
                _ => None,
            };
            ((e.key.clone(), e.window.start), resolved)
        })
        .collect();
    assert_eq!(stored, want);
    assert_eq!(want.len(), 22, "{want:?}");
    // Station 1161115030's late 11:50:03 row (above its threshold) lands in a closed
    // window: the alert fires late for 11:50 local (04:50Z), and is over at once.
    let late_fires: Vec<String> = emitted
        .iter()
        .filter(|e| e.value("late") == Some(&Value::Bool(true)))
        .map(|e| format!("{} {} {}", e.key, e.window.start, e.kind.as_str()))
        .collect();
    assert_eq!(
        late_fires,
        [
            "alarm_id=308,station_id=1161115030 2017-10-23T04:50:00Z firing",
            "alarm_id=308,station_id=1161115030 2017-10-23T04:50:00Z resolved"
        ]
    );
}
