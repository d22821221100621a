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
/// version of every window, and the change feed pointing at them.
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
    let results = bytes("results") / EVENTS as f64;
    let changes = bytes("changes") / EVENTS as f64;
    let stored = store.last_change();
    eprintln!(
        "{usage:?}: {emitted} emissions, {stored} stored versions; results {results:.2} \
         bytes per event ({:.1} per version), changes {changes:.2} bytes per event",
        bytes("results") / stored as f64
    );
    assert!(stored > 1_000, "{stored} versions");
    assert!(results <= 16.0, "results: {results:.2} bytes per event");
}
