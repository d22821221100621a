//! Bytes on disk per raw event stay small: seed 000's data in format 3's columnar
//! blocks, raw log and journal together, after compaction, took 8.9 bytes per event
//! when this was written (format 2's one row per event: about 25); the bound leaves
//! room for noise, not for a return to rows.
#![allow(clippy::unwrap_used)]

use reckon_store::{CommitBatch, RawRecord, Store};
use reckon_workload::Seed000;

#[test]
fn seed_000_events_take_at_most_12_bytes_each_on_disk() {
    const EVENTS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut it = Seed000::default().arrivals().map(|a| RawRecord {
        partition: a.partition,
        ingested_at: a.at,
        event: a.event,
    });
    for _ in 0..EVENTS / 5_000 {
        store
            .commit(CommitBatch {
                events: it.by_ref().take(5_000).collect(),
                ..CommitBatch::default()
            })
            .unwrap();
    }
    store.compact_for_tests().unwrap();
    let usage = store.disk_usage_for_tests().unwrap();
    let bytes = |name: &str| usage.iter().find(|(n, _)| *n == name).unwrap().1 as f64;
    let per_event = (bytes("raw") + bytes("journal")) / EVENTS as f64;
    eprintln!("{usage:?}: {per_event:.2} bytes per event");
    assert!(per_event > 4.0, "suspiciously small: {per_event:.2}");
    assert!(per_event <= 12.0, "{per_event:.2} bytes per event");
    assert_eq!(store.raw_scan("water_level").unwrap().len(), EVENTS);
}

/// Bytes on disk per raw event of the results a real pipeline (the mean level and the
/// count per key and hour, seed 000 with half the events late) stores with them: every
/// version of every window, and the change feed pointing at them. Result rows name
/// their column set by id (format 4), not the names, which took 16 of a row's 71 bytes.
#[test]
fn seed_000_results_are_small_on_disk() {
    use reckon_core::{
        AggKind, AggregateSpec, BatchReport, PartitionId, Pipeline, PipelineSpec, Span, WindowSpec,
    };
    const EVENTS: usize = 100_000;
    let spec = PipelineSpec::builder("water_level_mean_1h")
        .window(WindowSpec::tumbling(Span::hours(1)))
        .aggregate(AggregateSpec::new(AggKind::Mean, "level"))
        .aggregate(AggregateSpec::count())
        .allowed_lateness(Span::hours(24))
        .retention(Span::days(7))
        .build()
        .unwrap();
    let mut pipeline = Pipeline::new(spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let arrivals: Vec<_> = Seed000::default().arrivals().take(EVENTS).collect();
    let mut emitted = 0;
    for chunk in arrivals.chunks(5_000) {
        let mut emissions = Vec::new();
        let mut report = BatchReport::default();
        for batch in chunk.chunk_by(|a, b| a.at == b.at) {
            pipeline.advance(batch[0].at, &mut emissions);
            pipeline.ingest_batch(PartitionId(0), batch, &mut report, &mut emissions);
        }
        emitted += emissions.len();
        store
            .commit(CommitBatch {
                events: chunk
                    .iter()
                    .map(|a| RawRecord {
                        partition: a.partition,
                        ingested_at: a.at,
                        event: a.event.clone(),
                    })
                    .collect(),
                emissions,
                ..CommitBatch::default()
            })
            .unwrap();
    }
    store.compact_for_tests().unwrap();
    let usage = store.disk_usage_for_tests().unwrap();
    let bytes = |name: &str| usage.iter().find(|(n, _)| *n == name).unwrap().1 as f64;
    let (results, changes) = (bytes("results"), bytes("changes"));
    eprintln!("{usage:?}");
    // The same stored versions in the format-3 layout (names inline in every row), for
    // the row bytes before compression (what memtables, fjall's journal and the block
    // cache hold). Its disk size is no baseline: the test hook inserts row by row, each
    // with its own fjall seqno, which compresses worse than one batch's.
    let inline_dir = tempfile::tempdir().unwrap();
    let inline = Store::open(inline_dir.path()).unwrap();
    let versions = store.changes_after(0, None, usize::MAX).unwrap();
    for (_, e) in &versions {
        inline.overwrite_result_for_tests(e).unwrap();
    }
    let stored = versions.len() as f64;
    drop((store, inline));
    let row_bytes = |dir: &std::path::Path| -> f64 {
        let db = fjall::Database::builder(dir).open().unwrap();
        let results = db
            .keyspace("results", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        results
            .iter()
            .map(|kv| kv.value().unwrap().len() as f64)
            .sum::<f64>()
    };
    let (interned_rows, inline_rows) = (row_bytes(dir.path()), row_bytes(inline_dir.path()));
    let n = EVENTS as f64;
    eprintln!(
        "{emitted} emissions, {stored} stored versions. results on disk: {:.2} bytes per \
         event ({:.1} per version); row values {:.1} bytes per version (names inline: \
         {:.1}); changes {:.2} bytes per event",
        results / n,
        results / stored,
        interned_rows / stored,
        inline_rows / stored,
        changes / n,
    );
    assert!(stored > 1_000.0, "{stored} versions");
    assert!(
        interned_rows < inline_rows - 10.0 * stored,
        "interning saves the names in every row: {interned_rows} vs {inline_rows}"
    );
    // 14.2 with the names inline, 13.9 interned (lz4 had squeezed most of them).
    assert!(
        results / n <= 15.0,
        "results: {:.2} bytes per event",
        results / n
    );
}
