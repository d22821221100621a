//! A `[[reconcile]]` driven by the runtime: records of both streams arrive out of order,
//! with duplicates, in requests grouped into commits, and the runtime stops and reopens
//! (checkpoint + journal replay) at random points. At the end the results in the store
//! (latest version of every period and every id) equal the batch oracle.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::reconcile::{Completeness, Side};
use reckon_core::{
    EmissionKind, Event, EventId, EventTime, Key, PartitionId, ProcessingTime, Value,
};
use reckon_runtime::{Config, IngestRequest, Runtime, RuntimeOptions};
use reckon_testkit::reconcile::reconcile_oracle;
use reckon_workload::SplitMix64;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MIN: i64 = 60_000_000_000;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reckon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(path: &Path) -> Config {
    config_with(
        path,
        "",
        "period = \"15m\"\nmissing_after = \"10m\"\nhorizon = \"1h\"",
    )
}

/// The two streams and the reconciliation `recon`, with `stream_extra` on the payments
/// stream and `periods` (o, n, m and z as TOML lines).
fn config_with(path: &Path, stream_extra: &str, periods: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [[stream]]
        name = "payments"
        max_future = "off"
        {stream_extra}
        [[stream]]
        name = "payments_audit"
        key_fields = ["source"]
        max_future = "off"
        [[reconcile]]
        name = "recon"
        events = {{ stream = "payments", id_fields = ["payment_id"] }}
        audit = {{ stream = "payments_audit", id_fields = ["ref"] }}
        {periods}
        "#,
        path.display()
    ))
    .unwrap()
}

// The processing times of these tests are not wall-clock times next to the event
// times, so the time guard (`max_future`) is off; `runtime_guard.rs` tests it.

/// One arriving record: its side, the event as a source sends it, and arrival time.
struct Arrival {
    side: Side,
    event: Event,
    at: i64,
}

fn event(side: Side, id: u32, time: i64, tag: i64) -> Event {
    let (stream, key, fields) = match side {
        Side::Event => (
            "payments",
            Key::empty(),
            vec![
                ("payment_id".into(), Value::Str(Arc::from(format!("p{id}")))),
                ("amount".into(), Value::I64(tag)),
            ],
        ),
        Side::Audit => (
            "payments_audit",
            Key::from_tags([("source", "ledger")]).unwrap(),
            vec![
                ("ref".into(), Value::Str(Arc::from(format!("p{id}")))),
                ("note".into(), Value::I64(tag)),
            ],
        ),
    };
    Event {
        stream: stream.into(),
        key,
        time: EventTime(time),
        id: None,
        fields,
    }
}

/// `ids` ids over ~12 h; per id an audit (90%), a second audit (20% of those), an event
/// (85%), a second event (15%) or an exact resend (4%); arrivals up to 40 min late,
/// which keeps everything within the 1 h horizon.
fn workload(ids: u32, seed: u64) -> Vec<Arrival> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for id in 0..ids {
        let mut r = |n: u64| rng.next_u64() % n;
        let base = 1_700_000_000_000_000_000 + (r(12 * 60) as i64) * MIN;
        let mut push = |side, tag: i64, jitter: i64, delay: i64| {
            let t = base + jitter;
            out.push(Arrival {
                side,
                event: event(side, id, t, tag),
                at: t + delay,
            });
        };
        let rolls: Vec<u64> = (0..5).map(|_| r(100)).collect();
        let jit: Vec<(i64, i64)> = (0..4)
            .map(|_| (r(5 * MIN as u64) as i64, r(40 * MIN as u64) as i64))
            .collect();
        if rolls[0] < 90 {
            let (a, b) = jit[0];
            push(Side::Audit, 1, a, b);
            if rolls[1] < 20 {
                let (a, b) = jit[1];
                push(Side::Audit, 2, a, b);
            }
        }
        if rolls[2] < 85 {
            let (a, b) = jit[2];
            push(Side::Event, 3, a, b);
            let dup = rolls[3];
            if dup < 15 {
                let (c, d) = jit[3];
                push(Side::Event, 4, c, d);
            } else if dup < 19 {
                push(Side::Event, 3, a, b + 1);
            }
        }
    }
    out.sort_by_key(|a| a.at);
    out
}

/// The reconciliation's view of a record, for the oracle.
fn oracle_record(a: &Arrival) -> (Side, Event) {
    let id_field = if a.side == Side::Event {
        "payment_id"
    } else {
        "ref"
    };
    let Some(Value::Str(id)) = a.event.field(id_field) else {
        unreachable!()
    };
    let mut e = a.event.clone();
    e.id = Some(EventId(id.clone()));
    (a.side, e)
}

/// Feeds `arrivals` as requests of runs of one stream, several requests per commit,
/// reopening the runtime at random points.
fn drive(dir: &Path, arrivals: &[Arrival], seed: u64, restart_every: u64) -> Runtime {
    let cfg = config(dir);
    let options = RuntimeOptions {
        checkpoint_every: 5,
    };
    let mut rt = Runtime::open(&cfg, options.clone()).unwrap();
    let mut rng = SplitMix64::new(seed);
    let mut i = 0;
    let mut restarts = 0;
    while i < arrivals.len() {
        let now = ProcessingTime(arrivals[i].at);
        let mut requests = Vec::new();
        for _ in 0..1 + rng.next_u64() % 3 {
            if i >= arrivals.len() {
                break;
            }
            let side = arrivals[i].side;
            let take = 1 + (rng.next_u64() % 12) as usize;
            let mut events = Vec::new();
            while i < arrivals.len() && arrivals[i].side == side && events.len() < take {
                events.push(arrivals[i].event.clone());
                i += 1;
            }
            requests.push(IngestRequest {
                stream: events[0].stream.clone(),
                partition: PartitionId(0),
                events,
            });
        }
        let reports = rt.ingest_many(now, requests, &mut |_| {}).unwrap();
        for r in &reports {
            assert_eq!(r.dead_lettered, 0, "{r:?}");
        }
        if restart_every > 0 && rng.next_u64().is_multiple_of(restart_every) {
            drop(rt);
            rt = Runtime::open(&cfg, options.clone()).unwrap();
            restarts += 1;
        }
    }
    if restart_every > 0 {
        assert!(restarts > 3, "only {restarts} restarts");
    }
    rt.finish(&mut |_| {}).unwrap();
    rt
}

/// The store's final answer: latest completeness per period start (all-zero ones, the
/// retractions, left out) and the ids whose latest result is `missing`.
fn results(rt: &Runtime) -> (BTreeMap<i64, Completeness>, BTreeSet<String>) {
    let all = rt
        .store()
        .windows("recon", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap();
    let (mut periods, mut missing) = (BTreeMap::new(), BTreeSet::new());
    for e in all {
        let int = |name: &str| match e.value(name) {
            Some(Value::I64(i)) => *i as u64,
            other => panic!("{name}: {other:?}"),
        };
        match e.kind {
            EmissionKind::Completeness => {
                let c = Completeness {
                    audited: int("audited"),
                    matched: int("matched"),
                    missing: int("missing"),
                    duplicate_audits: int("duplicate_audits"),
                    duplicate_events: int("duplicate_events"),
                    unexpected: int("unexpected"),
                };
                assert_eq!(e.key, Key::empty());
                assert_eq!(e.count, c.audited);
                if c != Completeness::default() {
                    periods.insert(e.window.start.0, c);
                }
            }
            EmissionKind::Missing => {
                assert_eq!(e.version.0, 1);
                missing.insert(e.key.tags()[0].1.clone());
            }
            EmissionKind::Found => assert_eq!(e.version.0, 2),
            other => panic!("a reconciliation stored a {other:?} result"),
        }
    }
    (periods, missing)
}

#[test]
fn restarts_and_grouped_commits_end_equal_to_the_oracle() {
    let arrivals = workload(400, 11);
    let records: Vec<(Side, Event)> = arrivals.iter().map(oracle_record).collect();
    let oracle = reconcile_oracle(
        reckon_core::Span(15 * MIN),
        reckon_core::Span(10 * MIN),
        &records,
    );
    assert!(oracle.missing.len() > 20, "the workload has missing ids");
    assert!(
        oracle.periods.values().any(|c| c.duplicate_audits > 0)
            && oracle.periods.values().any(|c| c.duplicate_events > 0)
            && oracle.periods.values().any(|c| c.unexpected > 0),
        "the workload has duplicates and unexpected events"
    );

    let dir = temp_dir("recon-restart");
    let rt = drive(&dir, &arrivals, 5, 9);
    let (periods, missing) = results(&rt);
    assert_eq!(periods, oracle.periods);
    assert_eq!(missing, oracle.missing);

    // Found ids have history v1 missing → v2 found, at the same window.
    let found: Vec<_> = rt
        .store()
        .windows("recon", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EmissionKind::Found)
        .collect();
    assert!(!found.is_empty(), "late events find missing ids");
    let h = rt
        .store()
        .history("recon", &found[0].key, found[0].window.start)
        .unwrap();
    assert_eq!(
        h.iter().map(|e| (e.version.0, e.kind)).collect::<Vec<_>>(),
        [(1, EmissionKind::Missing), (2, EmissionKind::Found)]
    );
    // The missing report carries the audit record's context (its tags and fields).
    assert_eq!(
        h[0].value("audit.source"),
        Some(&Value::Str("ledger".into()))
    );
    assert!(h[0].value("audit.note").is_some());
    drop(rt);

    // The same input without restarts stores the same final results.
    let dir2 = temp_dir("recon-straight");
    let straight = drive(&dir2, &arrivals, 5, 0);
    assert_eq!(results(&straight), (periods, missing));
    drop(straight);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn records_without_an_id_or_beyond_the_horizon_are_dead_lettered_with_the_reason() {
    let dir = temp_dir("recon-dead");
    let cfg = config(&dir);
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let t0 = 1_700_000_000_000_000_000;
    let now = ProcessingTime(t0);
    let req = |side, events: Vec<Event>| IngestRequest {
        stream: if side == Side::Event {
            "payments"
        } else {
            "payments_audit"
        }
        .into(),
        partition: PartitionId(0),
        events,
    };
    // Both streams move to t0 + 3 h: the watermark is t0 + 2 h 50 min.
    let r = rt
        .ingest_many(
            now,
            vec![
                req(Side::Event, vec![event(Side::Event, 1, t0 + 180 * MIN, 0)]),
                req(Side::Audit, vec![event(Side::Audit, 1, t0 + 180 * MIN, 0)]),
            ],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r[1].dead_lettered, 0);
    let mut no_id = event(Side::Audit, 2, t0 + 180 * MIN, 0);
    no_id.fields.retain(|(n, _)| &**n != "ref");
    let too_late = event(Side::Audit, 3, t0, 0);
    let r = rt
        .ingest(
            "payments_audit",
            PartitionId(0),
            now,
            vec![no_id, too_late],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (0, 2));
    assert_eq!(r.pipelines[0].dead_lettered, 2);
    let dead = rt.store().dead_letters("payments_audit").unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(&*dead[0].kind, "invalid");
    assert!(
        dead[0]
            .reason
            .contains("no `ref`, an id field of reconcile `recon`"),
        "{}",
        dead[0].reason
    );
    assert_eq!(&*dead[1].kind, "beyond_horizon");
    assert!(dead[1].reason.contains("horizon"), "{}", dead[1].reason);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

fn config_with_z(path: &Path, stream_extra: &str) -> Config {
    config_with(
        path,
        stream_extra,
        "period = \"1m\"\nmissing_after = \"5s\"\nhorizon = \"10m\"\nidle_timeout = \"10s\"",
    )
}

/// Every stored result, as (kind, key, window start, version, values).
type Stored = Vec<(EmissionKind, String, i64, u32, Vec<Option<Value>>)>;

fn stored(rt: &Runtime) -> Stored {
    rt.store()
        .windows("recon", None, EventTime::MIN, EventTime::MAX, None)
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.kind,
                e.key.to_string(),
                e.window.start.0,
                e.version.0,
                e.values,
            )
        })
        .collect()
}

/// A request that leaves nothing in the journal (its only record has no id) still moved
/// processing time: with z, the stall rule reported `a` missing then. A replay must
/// advance the same way, or the `found` after a restart would carry another
/// `missing_since` than the stored `missing`.
#[test]
fn a_replay_advances_processing_time_as_the_run_did_even_for_requests_that_left_no_events() {
    const S: i64 = 1_000_000_000;
    let t0 = 1_700_000_000_000_000_000;
    let steps = |rt: &mut Runtime, step: usize| {
        let (now, stream, events) = match step {
            0 => {
                rt.ingest(
                    "payments_audit",
                    PartitionId(0),
                    ProcessingTime(0),
                    vec![event(Side::Audit, 1, t0, 0)],
                    &mut |_| {},
                )
                .unwrap();
                (0, "payments", vec![event(Side::Event, 2, t0, 0)])
            }
            1 => {
                let mut no_id = event(Side::Event, 3, t0, 0);
                no_id.fields.retain(|(n, _)| &**n != "payment_id");
                (20 * S, "payments", vec![no_id])
            }
            2 => (35 * S, "payments", vec![event(Side::Event, 4, t0 + S, 0)]),
            _ => (
                40 * S,
                "payments",
                vec![event(Side::Event, 1, t0 + 2 * S, 0)],
            ),
        };
        rt.ingest(
            stream,
            PartitionId(0),
            ProcessingTime(now),
            events,
            &mut |_| {},
        )
        .unwrap();
    };
    let run = |name: &str, restart: bool| {
        let dir = temp_dir(name);
        let cfg = config_with_z(&dir, "");
        let options = RuntimeOptions {
            checkpoint_every: 0,
        };
        let mut rt = Runtime::open(&cfg, options.clone()).unwrap();
        for step in 0..4 {
            steps(&mut rt, step);
            if restart {
                drop(rt);
                rt = Runtime::open(&cfg, options.clone()).unwrap();
            }
        }
        let out = stored(&rt);
        drop(rt);
        let _ = std::fs::remove_dir_all(&dir);
        out
    };
    let straight = run("recon-ticks-straight", false);
    let found = straight
        .iter()
        .find(|r| r.0 == EmissionKind::Found)
        .expect("p1 is found");
    // Missing at 20 s of processing time: watermark t0 − 5 s + 20 s (the stall rule).
    let want = Value::Str(EventTime(t0 + 15 * S).to_string().into());
    assert_eq!(found.4[2], Some(want), "missing_since: {found:?}");
    assert_eq!(run("recon-ticks-restart", true), straight);
}

/// Hostile or broken ids are kept out with the reason instead of reaching the store's
/// keys; an over-long series key on a stream only a reconciliation reads is a dead
/// letter too; a stream's own `id_field` can be the id joined on.
#[test]
fn long_ids_and_keys_are_dead_letters_and_the_stream_id_field_can_be_joined_on() {
    let dir = temp_dir("recon-hostile");
    let cfg = config_with_z(&dir, "id_field = \"payment_id\"");
    let mut rt = Runtime::open(&cfg, RuntimeOptions::default()).unwrap();
    let t0 = 1_700_000_000_000_000_000;
    let mut huge = event(Side::Audit, 1, t0, 0);
    huge.fields[0].1 = Value::Str("x".repeat(70_000).into());
    let mut long_key = event(Side::Audit, 2, t0, 0);
    long_key.key = Key::from_tags([("source", "k".repeat(20_000))]).unwrap();
    let r = rt
        .ingest(
            "payments_audit",
            PartitionId(0),
            ProcessingTime(0),
            vec![huge, long_key, event(Side::Audit, 3, t0, 0)],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (1, 2), "{r:?}");
    let dead = rt.store().dead_letters("payments_audit").unwrap();
    assert_eq!(dead.len(), 2);
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (&*d.pipeline, d.reason.as_str()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(p, r)| *p == "recon" && r.contains("is 70000 bytes long"))
            && reasons
                .iter()
                .any(|(p, r)| *p == "recon" && r.contains("series key is 20007 bytes")),
        "{reasons:?}"
    );
    // `payment_id` is the payments stream's id_field: the decoders move it into the
    // event's id, and the reconciliation joins on it there.
    let mut e = event(Side::Event, 3, t0, 0);
    e.fields.retain(|(n, _)| &**n != "payment_id");
    e.id = Some(EventId("p3".into()));
    let r = rt
        .ingest(
            "payments",
            PartitionId(0),
            ProcessingTime(0),
            vec![e],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.dead_lettered), (1, 0), "{r:?}");
    rt.finish(&mut |_| {}).unwrap();
    let c: Vec<_> = stored(&rt)
        .into_iter()
        .filter(|r| r.0 == EmissionKind::Completeness)
        .collect();
    // p3 audited and matched; nothing missing.
    assert_eq!(
        c[0].4[..3],
        [
            Some(Value::I64(1)),
            Some(Value::I64(1)),
            Some(Value::I64(0))
        ]
    );
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
