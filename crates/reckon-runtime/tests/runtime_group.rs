//! `ingest_many` (several requests, one commit) must be indistinguishable from the same
//! requests ingested one by one at the same processing time: same raw log, same
//! latest version of every window, and the same change feed except for the versions a
//! group's one commit coalesced (a window's corrections within a commit are stored as
//! its newest version). The workload makes many late events
//! take the cold path, several in one group for the same window, and resends requests
//! (duplicates by id across the requests of one group).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use reckon_core::{EventTime, PartitionId};
use reckon_runtime::{Config, IngestRequest, Runtime, RuntimeOptions};
use reckon_workload::{Seed000, SplitMix64};
use std::path::Path;
use std::sync::Arc;

fn config(path: &Path) -> Config {
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
        allowed_lateness = "30m"
        retention = "3d"
        [[pipeline]]
        name = "max_15m"
        stream = "water_level"
        window = {{ type = "tumbling", size = "15m" }}
        aggregates = [{{ fn = "max", field = "level" }}]
        allowed_lateness = "2h"
        retention = "3d"
        "#,
        path.display()
    ))
    .unwrap()
}

type Feed = Vec<(String, String, i64, u32, u64, u64)>;

fn feed(rt: &Runtime) -> Feed {
    rt.store()
        .changes_after(0, None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, e)| {
            (
                e.pipeline.to_string(),
                e.key.as_str().to_string(),
                e.window.start.0,
                e.version.0,
                e.count,
                e.checksum.hash,
            )
        })
        .collect()
}

#[test]
fn a_group_of_requests_equals_the_requests_one_by_one() {
    let g = Seed000 {
        locations: 4,
        late_probability: 0.6,
        with_ids: true,
        ..Seed000::default()
    };
    let all: Vec<_> = g.arrivals().take(12_000).collect();
    let mut requests: Vec<Vec<reckon_core::Event>> = all
        .chunks(37)
        .map(|c| c.iter().map(|a| a.event.clone()).collect())
        .collect();
    // Resend some requests right after themselves (a client retrying).
    let mut rng = SplitMix64::new(3);
    let mut i = 0;
    while i < requests.len() {
        if rng.chance(0.1) {
            let again = requests[i].clone();
            requests.insert(i + 1, again);
            i += 1;
        }
        i += 1;
    }
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = RuntimeOptions {
        checkpoint_every: 5,
    };
    let mut one = Runtime::open(&config(dirs.0.path()), opts.clone()).unwrap();
    let mut many = Runtime::open(&config(dirs.1.path()), opts).unwrap();
    let stream: Arc<str> = Arc::from("water_level");
    let (mut groups, mut at) = (0, 0usize);
    let mut reports = (Vec::new(), Vec::new());
    while at < requests.len() {
        let n = 1 + (rng.next_u64() % 8) as usize;
        let group = &requests[at..(at + n).min(requests.len())];
        // The processing time of the group: its last event's arrival (a server stamps
        // the time it drains its queue).
        let now = all[((at + group.len()) * 37).min(all.len()) - 1].at;
        for events in group {
            reports.0.push(
                one.ingest(
                    "water_level",
                    PartitionId(0),
                    now,
                    events.clone(),
                    &mut |_| {},
                )
                .unwrap(),
            );
        }
        let reqs = group
            .iter()
            .map(|events| IngestRequest {
                stream: stream.clone(),
                partition: PartitionId(0),
                events: events.clone(),
            })
            .collect();
        reports
            .1
            .extend(many.ingest_many(now, reqs, &mut |_| {}).unwrap());
        at += group.len();
        groups += 1;
    }
    assert!(groups < requests.len() / 2, "groups of several requests");
    let counts = |r: &[reckon_runtime::IngestReport]| {
        r.iter()
            .map(|r| (r.accepted, r.duplicates, r.late, r.dead_lettered))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&reports.0), counts(&reports.1));
    assert!(reports.1.iter().map(|r| r.duplicates).sum::<u64>() > 100);
    assert!(reports.1.iter().map(|r| r.late).sum::<u64>() > 1_000);
    // A group is one commit: the versions of a window inside it coalesce into the
    // newest, so the grouped feed is the one-by-one feed with some versions left out —
    // in the same order, each identical — and never anything else.
    let (all, grouped) = (feed(&one), feed(&many));
    let mut rest = all.iter();
    for change in &grouped {
        assert!(
            rest.any(|c| c == change),
            "{change:?} is not in the one-by-one feed, in order"
        );
    }
    assert!(grouped.len() < all.len(), "some versions coalesced");
    for p in ["mean_1h", "max_15m"] {
        let w = |rt: &Runtime| {
            rt.store()
                .windows(p, None, EventTime::MIN, EventTime::MAX, None)
                .unwrap()
        };
        assert_eq!(w(&one), w(&many), "{p}");
    }
    assert_eq!(
        one.store().raw_scan("water_level").unwrap(),
        many.store().raw_scan("water_level").unwrap()
    );
}

#[test]
fn a_dead_lettered_id_resent_in_the_same_commit_is_dead_lettered_again() {
    let ev = |id: &str, secs: i64| reckon_core::Event {
        stream: "water_level".into(),
        key: reckon_core::Key::from_tags([("i", "1")]).unwrap(),
        time: EventTime::from_secs(secs),
        id: Some(reckon_core::EventId(Arc::from(id))),
        fields: vec![("level".into(), reckon_core::Value::F64(1.0))],
    };
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut one = Runtime::open(&config(dirs.0.path()), RuntimeOptions::default()).unwrap();
    let mut many = Runtime::open(&config(dirs.1.path()), RuntimeOptions::default()).unwrap();
    let day = 86_400;
    // The server's clock is past every event (the time guard dead-letters events
    // more than `max_future` ahead of it).
    let now = reckon_core::ProcessingTime::from_secs(11 * day);
    // The watermark moves 10 days ahead; an event of day 0 is then beyond retention (3 d).
    let requests = [
        vec![ev("ahead", 10 * day)],
        vec![ev("old", 0)],
        vec![ev("old", 0)],
    ];
    let a: Vec<_> = requests
        .iter()
        .map(|r| {
            one.ingest("water_level", PartitionId(0), now, r.clone(), &mut |_| {})
                .unwrap()
        })
        .collect();
    let b = many
        .ingest_many(
            now,
            requests
                .iter()
                .map(|r| IngestRequest {
                    stream: Arc::from("water_level"),
                    partition: PartitionId(0),
                    events: r.clone(),
                })
                .collect(),
            &mut |_| {},
        )
        .unwrap();
    let counts = |r: &[reckon_runtime::IngestReport]| {
        r.iter()
            .map(|r| (r.accepted, r.duplicates, r.dead_lettered))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&a), vec![(1, 0, 0), (0, 0, 1), (0, 0, 1)]);
    assert_eq!(counts(&a), counts(&b));
}
