//! Backfill plans from real Delta tables written by the Python `deltalake` package
//! (delta-rs; installed by `scripts/python-delta.sh`): appends, a late append, OPTIMIZE
//! (compaction only), a DELETE, an overwrite of a partition, a new partition; a log of
//! more than 10 commits with a checkpoint, planned after its early commits are gone; a
//! multi-part checkpoint; a gap (commits after the cursor removed); an unsupported
//! reader feature; deletion vectors. Without Python it prints SKIP (and fails with
//! `RECKON_REQUIRE_SERVICES=1`, as in CI).
#![allow(clippy::unwrap_used)]

use reckon_delta::plan::OnGap;
use reckon_delta::{ChangeKind, DeltaLog, Error, PlanOptions, plan};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

use reckon_testkit::python::{deltalake as python, repo};

/// Makes `scenario`'s table in `dir`; the versions its steps made.
fn table(py: &Path, scenario: &str, dir: &Path) -> Value {
    let out = Command::new(py)
        .arg(repo().join("scripts/delta_tables.py"))
        .arg(scenario)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn since(v: u64) -> PlanOptions {
    PlanOptions {
        since_version: Some(v),
        ..PlanOptions::default()
    }
}

#[test]
fn late_appends_deletes_and_overwrites_are_late_compactions_and_new_days_are_not() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let steps = table(&py, "history", dir.path());
    assert_eq!(steps["new_day"], 7);
    let log = DeltaLog::open(dir.path()).unwrap();

    // Processed up to the three days: the late rows, the delete and the overwrite are
    // late; OPTIMIZE and the new day are not.
    let p = plan(&log, &since(2)).unwrap();
    assert_eq!(p.partitions, ["2024-01-01", "2024-01-02"]);
    assert_eq!(p.last_processed_version, Some(7));
    assert_eq!(p.current_partition.as_deref(), Some("2024-01-04"));
    let kinds: Vec<(u64, &str, ChangeKind, bool, u64)> = p
        .changes
        .iter()
        .map(|c| {
            (
                c.version,
                c.partition.as_str(),
                c.kind,
                c.late,
                c.rows_added,
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (3, "2024-01-01", ChangeKind::Append, true, 2),
            (4, "2024-01-01", ChangeKind::Compaction, false, 0),
            (5, "2024-01-02", ChangeKind::Delete, true, 4),
            (6, "2024-01-02", ChangeKind::Overwrite, true, 3),
            (7, "2024-01-04", ChangeKind::Append, false, 4),
        ]
    );
    // The seed's file, exactly, and the reasons beside it.
    assert_eq!(
        p.seed_json().to_string(),
        r#"{"lastProcessedVersion":7,"partitions":["2024-01-01","2024-01-02"]}"#
    );
    let full = p.json();
    assert_eq!(full["details"][0]["reasons"], serde_json::json!(["append"]));
    assert_eq!(full["details"][0]["rowsAdded"], 2);
    assert_eq!(full["details"][1]["versions"], serde_json::json!([5, 6]));

    // After the late append: the delete and the overwrite remain.
    let p = plan(&log, &since(3)).unwrap();
    assert_eq!(p.partitions, ["2024-01-02"]);
    // After the overwrite: a new day only, nothing to backfill.
    let p = plan(&log, &since(6)).unwrap();
    assert!(p.partitions.is_empty(), "{p:?}");
    let p = plan(&log, &since(7)).unwrap();
    assert!(p.partitions.is_empty() && p.changes.is_empty());
    assert_eq!(p.last_processed_version, Some(7));
    // From the start: the same late partitions (each day was the newest when written).
    let p = plan(&log, &PlanOptions::default()).unwrap();
    assert_eq!(p.partitions, ["2024-01-01", "2024-01-02"]);
    // A grace of two days: changes within two days of the newest day are not late.
    let p = plan(
        &log,
        &PlanOptions {
            since_version: Some(2),
            grace_ns: 2 * 86_400_000_000_000,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert!(
        p.partitions.is_empty(),
        "within two days of 2024-01-03: {p:?}"
    );
    // A cursor ahead of the table.
    assert!(matches!(plan(&log, &since(9)), Err(Error::Plan(_))));
}

#[test]
fn an_event_time_column_makes_lateness_follow_the_watermark_not_the_partition() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let steps = table(&py, "events", dir.path());
    assert_eq!(
        (steps["start"].as_u64(), steps["late_today"].as_u64()),
        (Some(2), Some(5))
    );
    // The commits before the cursor are gone: the watermark at the cursor comes from
    // the checkpoint's file statistics.
    for v in 0..2 {
        std::fs::remove_file(dir.path().join(format!("_delta_log/{v:020}.json"))).unwrap();
    }
    let log = DeltaLog::open(dir.path()).unwrap();
    let hour = 3_600_000_000_000;
    let by_event = plan(
        &log,
        &PlanOptions {
            since_version: Some(2),
            grace_ns: hour,
            event_time_column: Some("ts".into()),
            ..PlanOptions::default()
        },
    )
    .unwrap();
    // 23:55 of the first day, 25 minutes behind 00:20: within the grace. 02:00 of the
    // current day, ten hours behind noon: late, though its day is the newest.
    assert_eq!(by_event.partitions, ["2024-03-02"]);
    let seen: Vec<(u64, bool, Option<&str>, Option<&str>)> = by_event
        .changes
        .iter()
        .map(|c| {
            (
                c.version,
                c.late,
                c.min_event_time.as_deref(),
                c.watermark.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                3,
                false,
                Some("2024-03-01T23:55:00Z"),
                Some("2024-03-02T00:20:00Z")
            ),
            (
                4,
                false,
                Some("2024-03-02T12:00:00Z"),
                Some("2024-03-02T00:20:00Z")
            ),
            (
                5,
                true,
                Some("2024-03-02T02:00:00Z"),
                Some("2024-03-02T12:00:00Z")
            ),
        ]
    );
    let json = by_event.json();
    assert_eq!(json["eventTimeColumn"], "ts");
    assert_eq!(json["watermark"], "2024-03-02T12:00:00Z");
    // Without the column the partition rule holds: the first day is late, the
    // current one is not.
    let by_partition = plan(
        &log,
        &PlanOptions {
            since_version: Some(2),
            grace_ns: hour,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(by_partition.partitions, ["2024-03-01"]);
    assert!(by_partition.json().get("watermark").unwrap().is_null());

    // The checkpoint rewritten with zstd (this build reads snappy, lz4 and none):
    // refused, naming the codec.
    let cp = dir
        .path()
        .join(format!("_delta_log/{:020}.checkpoint.parquet", 2));
    let script = format!(
        "import pyarrow.parquet as pq\n\
         t = pq.read_table('{p}')\n\
         pq.write_table(t, '{p}', compression='zstd')\n",
        p = cp.display()
    );
    let out = Command::new(&py).arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = plan(&DeltaLog::open(dir.path()).unwrap(), &since(2)).unwrap_err();
    assert!(
        e.to_string().contains("zstd") && e.to_string().contains("codec"),
        "{e}"
    );
}

#[test]
fn a_long_log_plans_from_its_checkpoint_and_a_gap_is_reported() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let steps = table(&py, "long", dir.path());
    assert_eq!(
        (steps["checkpoint"].as_u64(), steps["after"].as_u64()),
        (Some(14), Some(15))
    );
    let logdir = dir.path().join("_delta_log");
    // Log retention removed the commits before the checkpoint: the table at version 14
    // comes from it, and planning after it works.
    for v in 0..14 {
        std::fs::remove_file(logdir.join(format!("{v:020}.json"))).unwrap();
    }
    let log = DeltaLog::open(dir.path()).unwrap();
    let p = plan(&log, &since(14)).unwrap();
    assert!(p.partitions.is_empty());
    assert_eq!(p.current_partition.as_deref(), Some("2024-02-15"));
    assert_eq!(p.changes.len(), 1);
    // A cursor before the checkpoint: the commits after it are gone. Refused, naming
    // them, unless every partition is planned.
    let e = plan(&log, &since(10)).unwrap_err();
    assert!(
        e.to_string().contains("commits 11 to 13") && e.to_string().contains("--on-gap all"),
        "{e}"
    );
    let p = plan(
        &log,
        &PlanOptions {
            since_version: Some(10),
            on_gap: OnGap::AllPartitions,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(p.gap, Some((11, 13)));
    assert_eq!(p.partitions.len(), 15);
    assert_eq!(p.last_processed_version, Some(15));

    // The same checkpoint split in two parts (as Spark writes big ones) reads the same.
    let single = logdir.join(format!("{:020}.checkpoint.parquet", 14));
    let script = format!(
        "import pyarrow.parquet as pq\n\
         t = pq.read_table('{single}')\n\
         h = t.num_rows // 2\n\
         pq.write_table(t.slice(0, h), '{dir}/{v:020}.checkpoint.{one:010}.{two:010}.parquet', compression='snappy')\n\
         pq.write_table(t.slice(h), '{dir}/{v:020}.checkpoint.{two:010}.{two:010}.parquet', compression='snappy')\n",
        single = single.display(),
        dir = logdir.display(),
        v = 14,
        one = 1,
        two = 2,
    );
    let out = Command::new(&py).arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&single).unwrap();
    let listing = log.listing().unwrap();
    assert_eq!(listing.checkpoints[&14].len(), 2);
    let p = plan(&log, &since(14)).unwrap();
    assert_eq!(p.current_partition.as_deref(), Some("2024-02-15"));
    // Half a multi-part checkpoint is no checkpoint: the table at 14 cannot be rebuilt.
    std::fs::remove_file(&listing.checkpoints[&14][1]).unwrap();
    assert!(matches!(plan(&log, &since(14)), Err(Error::Gap { .. })));
}

#[test]
fn an_unknown_reader_feature_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("_delta_log");
    std::fs::create_dir(&log).unwrap();
    std::fs::write(
        log.join(format!("{:020}.json", 0)),
        concat!(
            r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["columnMapping","deletionVectors"],"writerFeatures":["columnMapping"]}}"#,
            "\n",
            r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":["day"],"configuration":{}}}"#,
            "\n"
        ),
    )
    .unwrap();
    let e = plan(
        &DeltaLog::open(dir.path()).unwrap(),
        &PlanOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(
        e.to_string().contains("reader feature columnMapping"),
        "{e}"
    );
}

/// Deletion vectors (delta-rs does not write them; Spark and Databricks do): a file
/// re-added with a deletion vector over its removed self is a delete of its rows.
#[test]
fn a_deletion_vector_is_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("_delta_log");
    std::fs::create_dir(&log).unwrap();
    let add = |day: &str, path: &str, n: u64, dv: Option<u64>| {
        let dv = dv.map_or("null".to_string(), |c| {
            format!(
                r#"{{"storageType":"u","pathOrInlineDv":"ab^-aqEH.-t@S","offset":1,"sizeInBytes":36,"cardinality":{c}}}"#
            )
        });
        format!(
            r#"{{"add":{{"path":"{path}","partitionValues":{{"day":"{day}"}},"size":10,"modificationTime":0,"dataChange":true,"stats":"{{\"numRecords\":{n}}}","deletionVector":{dv}}}}}"#
        )
    };
    let commits = [
        vec![
            r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors"]}}"#.to_string(),
            r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":["day"],"configuration":{}}}"#.to_string(),
            add("2024-01-01", "a.parquet", 10, None),
        ],
        vec![add("2024-01-02", "b.parquet", 10, None)],
        vec![
            r#"{"commitInfo":{"timestamp":1,"operation":"DELETE","operationParameters":{"predicate":"id = 3"}}}"#.to_string(),
            r#"{"remove":{"path":"a.parquet","dataChange":true,"partitionValues":{"day":"2024-01-01"},"stats":"{\"numRecords\":10}"}}"#.to_string(),
            add("2024-01-01", "a.parquet", 10, Some(3)),
        ],
    ];
    for (v, lines) in commits.iter().enumerate() {
        std::fs::write(log.join(format!("{v:020}.json")), lines.join("\n")).unwrap();
    }
    let p = plan(&DeltaLog::open(dir.path()).unwrap(), &since(1)).unwrap();
    assert_eq!(p.partitions, ["2024-01-01"]);
    let c = &p.changes[0];
    assert_eq!(
        (c.kind, c.rows_added, c.rows_removed),
        (ChangeKind::Delete, 7, Some(10))
    );
}
