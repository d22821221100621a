//! Column sets (format 4): a pipeline's column names are stored once in `meta` and
//! result rows name them by id. Rows read back with their names after a restart, per
//! pipeline, across schema changes, next to older rows that carry their names inline,
//! and a torn commit never leaves a row whose set is missing.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use reckon_core::{Emission, EventTime, Key};
use reckon_store::{CommitBatch, Error, FORMAT_VERSION, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn cols(names: &[&str]) -> Arc<[Arc<str>]> {
    names.iter().map(|n| Arc::<str>::from(*n)).collect()
}

/// `common::emission` of `pipeline` with `names` as its columns (and a value each).
fn em(pipeline: &str, names: &[&str], k: &Key, hour: i64, version: u32) -> Emission {
    let mut e = emission(k, hour, version, i64::from(version) * 1_000, 1.5);
    e.pipeline = Arc::from(pipeline);
    e.columns = cols(names);
    e.values = (0..names.len())
        .map(|i| Some(reckon_core::Value::I64(i as i64)))
        .collect();
    e
}

fn commit(store: &Store, emissions: Vec<Emission>) {
    store
        .commit(CommitBatch {
            emissions,
            ..CommitBatch::default()
        })
        .unwrap();
}

/// The column names of every stored version of a window, in version order.
fn history_columns(store: &Store, pipeline: &str, k: &Key, hour: i64) -> Vec<(u32, Vec<String>)> {
    store
        .history(pipeline, k, EventTime(hour * HOUR))
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e.values.len(), e.columns.len());
            (
                e.version.0,
                e.columns.iter().map(|c| c.to_string()).collect(),
            )
        })
        .collect()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The `meta/colset/...` entries: (pipeline, id, names), in key order.
fn stored_sets(dir: &Path) -> Vec<(String, u32, Vec<String>)> {
    let db = Database::builder(dir).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    meta.prefix("colset/")
        .map(|kv| {
            let (k, v) = kv.into_inner().unwrap();
            let rest = &k[b"colset/".len()..];
            let end = rest.windows(2).position(|w| w == [0, 1]).unwrap();
            let pipeline = String::from_utf8(rest[..end].to_vec()).unwrap();
            let id = u32::from_be_bytes(rest[end + 2..].try_into().unwrap());
            let names: Vec<String> = postcard::from_bytes(&v).unwrap();
            (pipeline, id, names)
        })
        .collect()
}

/// Whether any `results` value contains `needle` (a column name written inline).
fn results_contain(dir: &Path, needle: &[u8]) -> bool {
    let db = Database::builder(dir).open().unwrap();
    let results = db
        .keyspace("results", KeyspaceCreateOptions::default)
        .unwrap();
    results.iter().any(|kv| {
        let v = kv.value().unwrap();
        v.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn column_names_are_stored_once_and_rows_read_back_with_them() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let names = ["mean_level", "count_of_readings"];
    for v in 1..=3 {
        commit(
            &store,
            (0..4)
                .map(|k| em(PIPELINE, &names, &key(k), 0, v))
                .collect(),
        );
    }
    // Every read path resolves the id.
    assert_eq!(
        history_columns(&store, PIPELINE, &key(1), 0),
        (1..=3).map(|v| (v, strings(&names))).collect::<Vec<_>>()
    );
    let latest = store
        .latest(PIPELINE, &key(2), EventTime(0))
        .unwrap()
        .unwrap();
    assert_eq!(latest, em(PIPELINE, &names, &key(2), 0, 3));
    let windows = store
        .windows(PIPELINE, None, EventTime::MIN, EventTime::MAX, None)
        .unwrap();
    assert_eq!(windows.len(), 4);
    assert!(windows.iter().all(|e| *e.columns == *cols(&names)));
    let changes = store.changes_after(0, None, 100).unwrap();
    assert_eq!(changes.len(), 12);
    assert!(changes.iter().all(|(_, e)| *e.columns == *cols(&names)));
    let replaced = store.replaced_by(&latest).unwrap().unwrap();
    assert_eq!(replaced, em(PIPELINE, &names, &key(2), 0, 2));
    drop(store);

    // Stored once, not in the rows.
    assert_eq!(
        stored_sets(dir.path()),
        vec![(PIPELINE.to_string(), 0, strings(&names))]
    );
    assert!(!results_contain(dir.path(), b"count_of_readings"));

    // After a restart the sets are loaded again.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        history_columns(&store, PIPELINE, &key(3), 0),
        (1..=3).map(|v| (v, strings(&names))).collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .latest(PIPELINE, &key(0), EventTime(0))
            .unwrap()
            .unwrap(),
        em(PIPELINE, &names, &key(0), 0, 3)
    );
    // The next commit of the same columns reuses the set.
    commit(&store, vec![em(PIPELINE, &names, &key(0), 0, 4)]);
    drop(store);
    assert_eq!(stored_sets(dir.path()).len(), 1);
}

#[test]
fn pipelines_have_their_own_sets() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = (["mean", "n"], ["max", "min", "stddev"]);
    // One group holding both pipelines' first rows.
    commit(
        &store,
        vec![
            em("a", &a, &key(1), 0, 1),
            em("b", &b, &key(1), 0, 1),
            em("a", &a, &key(2), 0, 1),
        ],
    );
    commit(&store, vec![em("b", &b, &key(1), 0, 2)]);
    let check = |store: &Store| {
        assert_eq!(
            history_columns(store, "a", &key(2), 0),
            vec![(1, strings(&a))]
        );
        assert_eq!(
            history_columns(store, "b", &key(1), 0),
            vec![(1, strings(&b)), (2, strings(&b))]
        );
        let feed: Vec<(String, Vec<String>)> = store
            .changes_after(0, None, 100)
            .unwrap()
            .into_iter()
            .map(|(_, e)| {
                (
                    e.pipeline.to_string(),
                    e.columns.iter().map(|c| c.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            feed,
            vec![
                ("a".to_string(), strings(&a)),
                ("b".to_string(), strings(&b)),
                ("a".to_string(), strings(&a)),
                ("b".to_string(), strings(&b)),
            ]
        );
    };
    check(&store);
    drop(store);
    // Ids are per pipeline: both start at 0.
    assert_eq!(
        stored_sets(dir.path()),
        vec![
            ("a".to_string(), 0, strings(&a)),
            ("b".to_string(), 0, strings(&b)),
        ]
    );
    check(&Store::open(dir.path()).unwrap());
}

#[test]
fn a_schema_change_gets_a_new_set_and_old_versions_keep_their_names() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let v1 = ["mean", "n"];
    let v2 = ["mean", "n", "max"];
    let v3 = ["n", "mean"]; // the same names in another order are another set
    commit(&store, vec![em(PIPELINE, &v1, &key(1), 0, 1)]);
    commit(&store, vec![em(PIPELINE, &v2, &key(1), 0, 2)]);
    // Back to the first columns: the first set again, no new entry.
    commit(&store, vec![em(PIPELINE, &v1, &key(1), 0, 3)]);
    let want = vec![(1, strings(&v1)), (2, strings(&v2)), (3, strings(&v1))];
    assert_eq!(history_columns(&store, PIPELINE, &key(1), 0), want);
    drop(store);
    assert_eq!(
        stored_sets(dir.path()),
        vec![
            (PIPELINE.to_string(), 0, strings(&v1)),
            (PIPELINE.to_string(), 1, strings(&v2)),
        ]
    );

    // After a restart a further change gets the next id, never a used one.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(history_columns(&store, PIPELINE, &key(1), 0), want);
    commit(&store, vec![em(PIPELINE, &v3, &key(1), 0, 4)]);
    let mut want = want;
    want.push((4, strings(&v3)));
    assert_eq!(history_columns(&store, PIPELINE, &key(1), 0), want);
    drop(store);
    assert_eq!(
        stored_sets(dir.path()).last().unwrap(),
        &(PIPELINE.to_string(), 2, strings(&v3))
    );
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(history_columns(&store, PIPELINE, &key(1), 0), want);
}

#[test]
fn a_format_3_store_with_names_inline_still_reads_and_becomes_format_4() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let names = ["mean", "n"];
    // Rows in the format-3 layout (names inline), which the test hook writes, then a
    // commit to make them durable.
    for k in 0..3 {
        store
            .overwrite_result_for_tests(&em(PIPELINE, &names, &key(k), 0, 1))
            .unwrap();
    }
    let mut with_states = em(PIPELINE, &names, &key(5), 0, 1);
    with_states.states = Some(Arc::from(vec![
        reckon_core::AggState::Count(7),
        reckon_core::AggState::Count(8),
    ]));
    store.overwrite_result_for_tests(&with_states).unwrap();
    store
        .commit(CommitBatch {
            events: vec![rec(event(STREAM, &key(1), 1, 1.0, None))],
            ..CommitBatch::default()
        })
        .unwrap();
    drop(store);
    assert!(results_contain(dir.path(), b"mean"));
    assert!(stored_sets(dir.path()).is_empty());
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        meta.insert("format_version", 3u32.to_be_bytes()).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }

    let store = Store::open(dir.path()).unwrap();
    for k in 0..3 {
        assert_eq!(
            store
                .latest(PIPELINE, &key(k), EventTime(0))
                .unwrap()
                .unwrap(),
            em(PIPELINE, &names, &key(k), 0, 1)
        );
    }
    assert_eq!(
        store
            .latest(PIPELINE, &key(5), EventTime(0))
            .unwrap()
            .unwrap(),
        with_states
    );
    // New versions of the same windows name the set; the history mixes both layouts.
    commit(&store, vec![em(PIPELINE, &names, &key(1), 0, 2)]);
    assert_eq!(
        history_columns(&store, PIPELINE, &key(1), 0),
        vec![(1, strings(&names)), (2, strings(&names))]
    );
    let windows = store
        .windows(PIPELINE, None, EventTime::MIN, EventTime::MAX, None)
        .unwrap();
    assert_eq!(windows.len(), 4);
    assert!(windows.iter().all(|e| *e.columns == *cols(&names)));
    drop(store);
    let db = Database::builder(dir.path()).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    assert_eq!(
        meta.get("format_version").unwrap().map(|v| v.to_vec()),
        Some(FORMAT_VERSION.to_be_bytes().to_vec())
    );
    assert_eq!(FORMAT_VERSION, 4);
}

#[test]
fn a_row_naming_a_set_that_is_not_stored_is_corrupt_naming_pipeline_and_id() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    commit(&store, vec![em(PIPELINE, &["mean", "n"], &key(1), 0, 1)]);
    drop(store);
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        let k: Vec<_> = meta.prefix("colset/").map(|kv| kv.key().unwrap()).collect();
        assert_eq!(k.len(), 1);
        meta.remove(k[0].clone()).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let e = store.latest(PIPELINE, &key(1), EventTime(0)).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(PIPELINE) && msg.contains("column set 0"),
        "{msg}"
    );
    let e = store.changes_after(0, None, 10).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
}

/// fjall's journal files (`<n>.jnl`), newest last.
fn newest_journal(dir: &Path) -> PathBuf {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "jnl") {
                let n: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
                out.push((n, p));
            }
        }
    }
    out.sort();
    out.pop().unwrap().1
}

/// The end of the written part of a (preallocated, zero-filled) journal file.
fn data_end(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// A commit that introduces a new column set, torn anywhere in its journal bytes, is
/// lost whole: its row and its set go together (they are one storage batch), so the
/// store never holds a row naming a missing set; the id is free again and the next
/// commit of other columns takes it without misreading anything.
#[test]
fn a_torn_commit_loses_its_row_and_its_new_set_together() {
    let (v1, v2, v3) = (["mean", "n"], ["mean", "n", "max"], ["p99"]);
    for cut in 0..8 {
        let dir = tempdir();
        let store = Store::open(dir.path()).unwrap();
        commit(&store, vec![em(PIPELINE, &v1, &key(1), 0, 1)]);
        let journal = newest_journal(dir.path());
        let before = data_end(&journal);
        commit(
            &store,
            vec![
                em(PIPELINE, &v2, &key(1), 0, 2),
                em(PIPELINE, &v2, &key(2), 0, 1),
            ],
        );
        let after = data_end(&journal);
        drop(store);
        assert_eq!(newest_journal(dir.path()), journal);
        assert!(after > before + 8, "the second commit is in this journal");
        // Cut somewhere inside the second commit's bytes.
        let len = before + (after - before) * cut / 8 + 1;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&journal)
            .unwrap();
        f.set_len(len as u64).unwrap();
        drop(f);

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            history_columns(&store, PIPELINE, &key(1), 0),
            vec![(1, strings(&v1))],
            "cut at {len} of {before}..{after}"
        );
        assert!(
            store
                .latest(PIPELINE, &key(2), EventTime(0))
                .unwrap()
                .is_none()
        );
        assert_eq!(store.changes_after(0, None, 10).unwrap().len(), 1);
        // Other columns now: they take id 1, which no durable row names.
        commit(&store, vec![em(PIPELINE, &v3, &key(2), 0, 1)]);
        assert_eq!(
            history_columns(&store, PIPELINE, &key(2), 0),
            vec![(1, strings(&v3))]
        );
        drop(store);
        assert_eq!(
            stored_sets(dir.path()),
            vec![
                (PIPELINE.to_string(), 0, strings(&v1)),
                (PIPELINE.to_string(), 1, strings(&v3)),
            ]
        );
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            history_columns(&store, PIPELINE, &key(1), 0),
            vec![(1, strings(&v1))]
        );
        assert_eq!(
            history_columns(&store, PIPELINE, &key(2), 0),
            vec![(1, strings(&v3))]
        );
    }
}
