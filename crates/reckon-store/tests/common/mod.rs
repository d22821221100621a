//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use reckon_core::{
    Checksum, Emission, EmissionKind, Event, EventId, EventTime, Key, PartitionId, ProcessingTime,
    Value, Version, Watermark, Window,
};
use reckon_store::RawRecord;
use std::sync::Arc;

pub const STREAM: &str = "water_level";
pub const PIPELINE: &str = "water_level_mean_1h";
pub const HOUR: i64 = 3_600_000_000_000;

pub fn key(i: u32) -> Key {
    Key::from_tags([("i", i.to_string())]).unwrap()
}

pub fn event(stream: &str, key: &Key, nanos: i64, level: f64, id: Option<&str>) -> Event {
    Event {
        stream: Arc::from(stream),
        key: key.clone(),
        time: EventTime(nanos),
        id: id.map(|s| EventId(Arc::from(s))),
        fields: vec![(Arc::from("level"), Value::F64(level))],
    }
}

pub fn rec(event: Event) -> RawRecord {
    RawRecord {
        partition: PartitionId(3),
        ingested_at: ProcessingTime(event.time.0 + 1_000),
        event,
    }
}

pub fn emission(key: &Key, start_hour: i64, version: u32, emitted_at: i64, mean: f64) -> Emission {
    Emission {
        pipeline: Arc::from(PIPELINE),
        key: key.clone(),
        window: Window {
            start: EventTime(start_hour * HOUR),
            end: EventTime((start_hour + 1) * HOUR),
        },
        version: Version(version),
        kind: if version == 1 {
            EmissionKind::OnTime
        } else {
            EmissionKind::Late
        },
        columns: Arc::from(vec![Arc::<str>::from("mean"), Arc::<str>::from("n")]),
        values: vec![Some(Value::F64(mean)), None],
        count: u64::from(version) * 10,
        checksum: Checksum {
            count: u64::from(version) * 10,
            hash: 0xdead_beef ^ u64::from(version),
        },
        emitted_at: ProcessingTime(emitted_at),
        watermark: Watermark(EventTime((start_hour + 1) * HOUR)),
        states: None,
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The commits the format-2 fixture (`tests/data/format2`) was written from, in order
/// (see `tests/data/format2/README.md`): several streams and keys, late and duplicate
/// times, ids, fields of every type, ticks, corrections, dead letters, a checkpoint
/// that prunes part of the journal, and sink deliveries. The migration test writes the
/// same commits into a fresh store and compares every read.
pub fn fixture_batches() -> Vec<reckon_store::CommitBatch> {
    use reckon_store::{Checkpoint, CommitBatch, DeadLetter, Delivery};
    let odd = "odd\0stream";
    let mut out = Vec::new();
    for b in 0..6i64 {
        let mut events = Vec::new();
        for i in 0..40i64 {
            let k = key((i % 5) as u32);
            // Mostly on time, every 7th late by up to 30 hours, some equal times.
            let t = b * 40 * 1_000_000_000 + i * 1_000_000_000
                - if i % 7 == 0 { (i % 30) * HOUR } else { 0 };
            let id = (i % 3 == 0).then(|| format!("id-{}", (b * 40 + i) % 50));
            let mut e = event(STREAM, &k, t, 4.0 + i as f64 * 0.013, id.as_deref());
            if i % 4 == 0 {
                e.fields.push((Arc::from("raw"), Value::I64(-i * 1_000)));
                e.fields.push((Arc::from("ok"), Value::Bool(i % 8 == 0)));
            }
            if i % 9 == 0 {
                e.fields
                    .push((Arc::from("note"), Value::Str(Arc::from("é\0x"))));
                e.fields
                    .push((Arc::from("pi"), Value::F64(std::f64::consts::PI)));
            }
            let mut r = rec(e);
            r.partition = PartitionId((i % 2) as u32);
            r.ingested_at = ProcessingTime(b * 50 * 1_000_000_000);
            events.push(r);
        }
        let k = key(1);
        events.push(rec(event(odd, &k, b * 1_000, -1.5, Some("same"))));
        let mut batch = CommitBatch {
            events,
            ticks: vec![(
                Arc::from(PIPELINE),
                ProcessingTime(b * 50 * 1_000_000_000 + 7),
            )],
            emissions: (0..3)
                .map(|w| emission(&key(w), w as i64, b as u32 + 1, b * 100 + w as i64, 4.5))
                .collect(),
            ..CommitBatch::default()
        };
        if b % 2 == 1 {
            batch.dead_letters.push(DeadLetter {
                pipeline: Arc::from(PIPELINE),
                stream: Arc::from(STREAM),
                event: event(STREAM, &key(9), -HOUR * 1_000, 0.0, None),
                kind: "beyond_retention".into(),
                reason: format!("batch {b}"),
                at: ProcessingTime(b),
            });
            batch.deliveries.push(Delivery {
                sink: Arc::from("slack"),
                id: b as u64,
                cursor: b as u64 * 3,
                record: format!("{{\"b\":{b}}}").into_bytes(),
            });
        }
        if b == 3 {
            batch.checkpoints.push(Checkpoint {
                pipeline: Arc::from(PIPELINE),
                seq: 90,
                snapshot: vec![1, 2, 3, 0, 255],
            });
        }
        out.push(batch);
    }
    out
}
