//! A store written by an earlier format opens, is migrated, and reads exactly like a
//! fresh store given the same commits: `tests/data/format2` was written by the landed
//! format-2 code (see its README) from `common::fixture_batches()`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{PIPELINE, STREAM, fixture_batches, key};
use reckon_core::{EventId, EventTime, Key};
use reckon_store::{CommitBatch, FORMAT_VERSION, RawRecord, Store};
use std::path::Path;
use std::sync::Arc;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "README.md" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Everything a reader can ask of the fixture's data, in one comparable value.
fn reads(store: &Store) -> String {
    let mut out = String::new();
    let odd = "odd\0stream";
    for stream in [STREAM, odd] {
        let records: Vec<RawRecord> = store.raw_records(stream).unwrap();
        out += &format!("raw_records {stream:?}: {records:?}\n");
        for k in 0..5 {
            for (a, b) in [
                (i64::MIN, i64::MAX),
                (0, 100_000_000_000),
                (-20 * common::HOUR, 0),
            ] {
                let r = store
                    .raw_range(stream, &key(k), EventTime(a), EventTime(b))
                    .unwrap();
                out += &format!("raw_range {stream:?} {k} {a} {b}: {r:?}\n");
            }
        }
        let ids: Vec<EventId> = (0..60)
            .map(|i| EventId(Arc::from(format!("id-{i}"))))
            .chain([EventId(Arc::from("same"))])
            .collect();
        let refs: Vec<&EventId> = ids.iter().collect();
        out += &format!(
            "ids {stream:?}: {:?}\n",
            store.ids_seen(stream, &refs).unwrap()
        );
        out += &format!(
            "dead {stream:?}: {:?}\n",
            store.dead_letters(stream).unwrap()
        );
    }
    out += &format!("journal: {:?}\n", store.journal_after(0).unwrap());
    out += &format!(
        "journal after 100: {:?}\n",
        store.journal_after(100).unwrap()
    );
    out += &format!("checkpoint: {:?}\n", store.checkpoint(PIPELINE).unwrap());
    for k in 0..3 {
        for w in 0..3 {
            let h = store
                .history(PIPELINE, &key(k), EventTime(w * common::HOUR))
                .unwrap();
            out += &format!("history {k} {w}: {h:?}\n");
        }
    }
    let all: Option<&Key> = None;
    out += &format!(
        "windows: {:?}\n",
        store
            .windows(PIPELINE, all, EventTime::MIN, EventTime::MAX, None)
            .unwrap()
    );
    out += &format!(
        "changes: {:?}\n",
        store.changes_after(0, None, 1000).unwrap()
    );
    out += &format!("sink: {:?}\n", store.sink_state("slack").unwrap());
    out += &format!(
        "deliveries: {:?}\n",
        store.deliveries("slack", 100).unwrap()
    );
    out += &format!(
        "last seq {} change {}\n",
        store.last_seq(),
        store.last_change()
    );
    out
}

#[test]
fn a_format_2_store_is_migrated_and_reads_like_a_fresh_one() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format2");
    let old = common::tempdir();
    copy_dir(&fixture, old.path());
    let migrated = Store::open(old.path()).unwrap();

    let fresh_dir = common::tempdir();
    let fresh = Store::open(fresh_dir.path()).unwrap();
    for b in fixture_batches() {
        fresh.commit(b).unwrap();
    }
    let expected = reads(&fresh);
    assert!(
        expected.contains("é\\0x") && expected.contains("Tick"),
        "{expected}"
    );
    assert_eq!(reads(&migrated), expected);

    // The migrated store takes new commits and reopens at the current format.
    let more = CommitBatch {
        events: vec![common::rec(common::event(
            STREAM,
            &key(2),
            5_000_000_000,
            7.25,
            Some("id-1"),
        ))],
        ..CommitBatch::default()
    };
    migrated.commit(more.clone()).unwrap();
    fresh.commit(more).unwrap();
    drop(migrated);
    let migrated = Store::open(old.path()).unwrap();
    assert_eq!(reads(&migrated), reads(&fresh));
    drop(migrated);
    let db = fjall::Database::builder(old.path()).open().unwrap();
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    assert_eq!(
        meta.get("format_version").unwrap().map(|v| v.to_vec()),
        Some(FORMAT_VERSION.to_be_bytes().to_vec())
    );
}
