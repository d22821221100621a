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
