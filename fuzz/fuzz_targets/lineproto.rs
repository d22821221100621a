//! InfluxDB line protocol. Beyond "no panic": errors name lines in order and within
//! the body; on a one-line body, whatever reckon accepts the `influxdb-line-protocol`
//! crate (the oracle of the parser's property tests) accepts too, with the same
//! timestamp (reckon is stricter on purpose, never looser; see `lineproto.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reckon_connect::lineproto::{LineProtocolDecoder, Precision};
use reckon_core::EventTime;

fuzz_target!(|data: &[u8]| {
    let Some((p, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    let precision = [Precision::Ns, Precision::Us, Precision::Ms, Precision::S][*p as usize % 4];
    let cfg =
        reckon_runtime::Config::from_toml("[[stream]]\nname = \"s\"\nkey_fields = [\"host\"]\n")
            .expect("a valid config");
    let mut d = LineProtocolDecoder::new(&cfg.streams[0]);
    let now = EventTime(1_700_000_000_000_000_000);
    let (events, errors) = d.decode(body, precision, now);
    let lines = body.split('\n').count();
    let mut last = 0;
    for e in &errors {
        let l = e.line.expect("a line protocol error has a line");
        assert!(
            l > last && l <= lines,
            "line {l} (after {last}, of {lines})"
        );
        last = l;
    }
    if !body.contains(['\n', '\r']) && events.len() == 1 {
        let trimmed = body.trim_end_matches([' ', '\t']);
        let theirs: Vec<_> = influxdb_line_protocol::parse_lines(trimmed).collect();
        match theirs.as_slice() {
            [Ok(t)] => {
                let want = t.timestamp.map_or(now.0, |ts| ts * precision.nanos());
                assert_eq!(events[0].time.0, want, "{body:?}");
            }
            other => panic!("reckon accepts what the oracle does not: {body:?}: {other:?}"),
        }
    }
});
