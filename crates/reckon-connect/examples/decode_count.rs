//! Decodes the body of `benches/decode.rs` (100K seed-000 events with ids) a given
//! number of times with one decoder, so that the instructions of one decode can be
//! counted under `valgrind --tool=callgrind`: the difference between a run with two
//! passes and a run with one is one warm pass (the same decoder, its caches filled),
//! without the cost of generating and encoding the workload.
//!
//! Usage: `decode_count <ndjson|json_array|line_protocol> <fast|reference> <passes>`
//! (commands and figures in docs/BENCHMARKS.md, "Decode fast path (issue 12)").

use reckon_connect::JsonDecoder;
use reckon_connect::lineproto::{LineProtocolDecoder, Precision};
use reckon_core::{Event, EventTime};
use reckon_runtime::Config;
use reckon_workload::{Seed000, line_protocol_line, ndjson_line};
use std::hint::black_box;

const EVENTS: usize = 100_000;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [format, path, passes] = args.as_slice() else {
        return Err(
            "usage: decode_count <ndjson|json_array|line_protocol> <fast|reference> <passes>"
                .into(),
        );
    };
    let passes: usize = passes
        .parse()
        .map_err(|e| format!("passes `{passes}`: {e}"))?;
    let fast = match path.as_str() {
        "fast" => true,
        "reference" => false,
        other => return Err(format!("path `{other}`: expected fast or reference")),
    };
    let cfg = Config::from_toml(
        "[[stream]]\nname = \"water_level\"\nkey_fields = [\"i\"]\ntime_format = \"unix_ns\"\nid_field = \"id\"\n",
    )
    .map_err(|e| e.to_string())?;
    let stream = cfg.streams.first().ok_or("no stream")?;
    let events: Vec<Event> = Seed000 {
        with_ids: true,
        ..Seed000::with_late_fraction(0.1)
    }
    .arrivals()
    .take(EVENTS)
    .map(|a| a.event)
    .collect();
    let mut nd = String::new();
    for e in &events {
        ndjson_line(e, &mut nd);
    }

    let mut decoded = 0;
    match format.as_str() {
        "ndjson" => {
            let mut d = JsonDecoder::new(stream);
            for _ in 0..passes {
                let (e, errors) = if fast {
                    d.decode_ndjson(black_box(&nd))
                } else {
                    d.decode_ndjson_reference(black_box(&nd))
                };
                decoded += e.len() + errors.len();
            }
        }
        "json_array" => {
            let array = format!("[{}]", nd.lines().collect::<Vec<_>>().join(","));
            let mut d = JsonDecoder::new(stream);
            for _ in 0..passes {
                let (e, errors) = if fast {
                    d.decode_array(black_box(array.as_bytes()))
                } else {
                    d.decode_array_reference(black_box(array.as_bytes()))
                };
                decoded += e.len() + errors.len();
            }
        }
        "line_protocol" => {
            let lp = line_protocol(&events);
            let mut d = LineProtocolDecoder::new(stream);
            for _ in 0..passes {
                let (e, errors) = if fast {
                    d.decode(black_box(&lp), Precision::Ns, EventTime(0))
                } else {
                    d.decode_reference(black_box(&lp), Precision::Ns, EventTime(0))
                };
                decoded += e.len() + errors.len();
            }
        }
        other => {
            return Err(format!(
                "format `{other}`: expected ndjson, json_array or line_protocol"
            ));
        }
    }
    if decoded != passes * EVENTS {
        return Err(format!(
            "decoded {decoded} events and errors, expected {}",
            passes * EVENTS
        ));
    }
    println!("{format} {path}: {passes} passes of {EVENTS} events");
    Ok(())
}

fn line_protocol(events: &[Event]) -> String {
    let mut out = String::new();
    events.iter().for_each(|e| line_protocol_line(e, &mut out));
    out
}
