//! Decode rate of the event formats on seed 000's workload: each fast path next to
//! the reference decoder it is tested against (`tests/decode_oracle.rs`), in the same
//! run.
//!
//! Workload: 100K events of `Seed000::with_late_fraction(0.1)` with ids (100
//! locations, a reading every 10 s per location, about 10% late by up to 24 h), as
//! one body per format:
//!
//! - NDJSON, as `reckon_workload::ndjson_line` writes it (what the load generator
//!   sends): `{"i":"7","id":"7-1655078400000000000","level":4.217,"time":1655078400000000000}`;
//! - a JSON array of the same objects (`[{…},{…}]`);
//! - InfluxDB line protocol, the id as a tag:
//!   `water_level,i=7,id=7-1655078400000000000 level=4.217 1655078400000000000`.
//!
//! The stream has `key_fields = ["i"]`, `time_format = "unix_ns"`, `id_field = "id"`.
//! One decoder per benchmark, reused across iterations, as a source reuses its
//! decoder across requests (its name and key caches are warm after the first body).
//!
//! Run: `cargo bench -p reckon-connect --bench decode` (figures in
//! docs/BENCHMARKS.md, "Decode fast path (issue 12)").

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reckon_connect::JsonDecoder;
use reckon_connect::lineproto::{LineProtocolDecoder, Precision};
use reckon_core::{Event, EventTime};
use reckon_runtime::{Config, StreamConfig};
use reckon_workload::{Seed000, line_protocol_line, ndjson_line};
use std::hint::black_box;
use std::time::Duration;

const EVENTS: usize = 100_000;

fn events() -> Vec<Event> {
    Seed000 {
        with_ids: true,
        ..Seed000::with_late_fraction(0.1)
    }
    .arrivals()
    .take(EVENTS)
    .map(|a| a.event)
    .collect()
}

fn stream() -> StreamConfig {
    let cfg = Config::from_toml(
        "[[stream]]\nname = \"water_level\"\nkey_fields = [\"i\"]\ntime_format = \"unix_ns\"\nid_field = \"id\"\n",
    )
    .expect("valid stream config");
    cfg.streams[0].clone()
}

fn ndjson(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        ndjson_line(e, &mut out);
    }
    out
}

fn json_array(ndjson: &str) -> Vec<u8> {
    let mut out = String::from("[");
    for (i, line) in ndjson.lines().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(line);
    }
    out.push(']');
    out.into_bytes()
}

fn line_protocol(events: &[Event]) -> String {
    let mut out = String::new();
    events.iter().for_each(|e| line_protocol_line(e, &mut out));
    out
}

/// Fails the run if a decoder drops or rejects events: a figure for a decoder that
/// does not decode would mean nothing.
fn check(path: &str, (events, errors): (Vec<Event>, Vec<reckon_connect::DecodeError>)) {
    assert!(errors.is_empty(), "{path}: {:?}", errors.first());
    assert_eq!(events.len(), EVENTS, "{path}");
}

fn bench(c: &mut Criterion) {
    let cfg = stream();
    let events = events();
    let nd = ndjson(&events);
    let array = json_array(&nd);
    let lp = line_protocol(&events);
    let now = EventTime(0);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));

    type Json = fn(&mut JsonDecoder, &str) -> (Vec<Event>, Vec<reckon_connect::DecodeError>);
    let ndjson_paths: [(&str, Json); 2] = [
        ("fast", JsonDecoder::decode_ndjson),
        ("reference", JsonDecoder::decode_ndjson_reference),
    ];
    for (path, decode) in ndjson_paths {
        let mut d = JsonDecoder::new(&cfg);
        check(path, decode(&mut d, &nd));
        g.bench_function(BenchmarkId::new("ndjson", path), |b| {
            b.iter(|| black_box(decode(&mut d, black_box(&nd))))
        });
    }

    type Array = fn(&mut JsonDecoder, &[u8]) -> (Vec<Event>, Vec<reckon_connect::DecodeError>);
    let array_paths: [(&str, Array); 2] = [
        ("fast", JsonDecoder::decode_array),
        ("reference", JsonDecoder::decode_array_reference),
    ];
    for (path, decode) in array_paths {
        let mut d = JsonDecoder::new(&cfg);
        check(path, decode(&mut d, &array));
        g.bench_function(BenchmarkId::new("json_array", path), |b| {
            b.iter(|| black_box(decode(&mut d, black_box(&array))))
        });
    }

    type Lp = fn(
        &mut LineProtocolDecoder,
        &str,
        Precision,
        EventTime,
    ) -> (Vec<Event>, Vec<reckon_connect::DecodeError>);
    let lp_paths: [(&str, Lp); 2] = [
        ("fast", LineProtocolDecoder::decode),
        ("reference", LineProtocolDecoder::decode_reference),
    ];
    for (path, decode) in lp_paths {
        let mut d = LineProtocolDecoder::new(&cfg);
        check(path, decode(&mut d, &lp, Precision::Ns, now));
        g.bench_function(BenchmarkId::new("line_protocol", path), |b| {
            b.iter(|| black_box(decode(&mut d, black_box(&lp), Precision::Ns, now)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
