//! NDJSON and JSON-array decoding. Beyond "no panic": the strict parser agrees with
//! serde_json on every input without a repeated name; a decoded event has each field
//! name once; and a decoded event, written back as JSON, decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reckon_connect::JsonDecoder;
use reckon_connect::json::{parse_unique, parse_unique_array};
use reckon_core::{Event, Value};
use serde_json::{Map, Value as Json};

fn stream(format: &str) -> reckon_runtime::StreamConfig {
    let text = format!(
        "[[stream]]\nname = \"s\"\nkey_fields = [\"i\", \"j\"]\ntime_format = \"{format}\"\nid_field = \"id\"\n"
    );
    reckon_runtime::Config::from_toml(&text)
        .expect("a valid config")
        .streams[0]
        .clone()
}

/// The event as a JSON object for a `unix_ns` stream.
fn encode(e: &Event) -> Json {
    let mut obj = Map::new();
    obj.insert("time".into(), Json::from(e.time.0));
    for (k, v) in e.key.tags() {
        obj.insert(k, Json::String(v));
    }
    if let Some(id) = &e.id {
        obj.insert("id".into(), Json::String(id.0.to_string()));
    }
    for (n, v) in &e.fields {
        let v = match v {
            Value::F64(x) => Json::Number(serde_json::Number::from_f64(*x).expect("finite")),
            Value::I64(i) => Json::from(*i),
            Value::Bool(b) => Json::Bool(*b),
            Value::Str(s) => Json::String(s.to_string()),
            #[allow(unreachable_patterns)]
            other => panic!("JSON decoded a value it cannot give: {other:?}"),
        };
        obj.insert(n.to_string(), v);
    }
    Json::Object(obj)
}

fn check(e: &Event) {
    for (i, (n, _)) in e.fields.iter().enumerate() {
        assert!(
            !e.fields[..i].iter().any(|(m, _)| m == n),
            "field {n} twice in {e:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // The strict parser is serde_json minus repeated names.
        let ours = parse_unique(text);
        let theirs = serde_json::from_str::<Json>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Ok(a), Err(e)) => panic!("strict parse accepts what serde_json refuses ({e}): {a:?}"),
            (Err(e), Ok(_)) => assert!(e.message.contains("given twice"), "{e}"),
            (Err(_), Err(_)) => {}
        }
        let lines = text.lines().count();
        for format in ["rfc3339", "unix_ns", "unix_s"] {
            let mut d = JsonDecoder::new(&stream(format));
            let (events, errors) = d.decode_ndjson(text);
            assert!(events.len() + errors.len() <= lines);
            for e in &errors {
                let l = e.line.expect("an NDJSON error has a line");
                assert!((1..=lines).contains(&l));
            }
            for e in &events {
                check(e);
                let mut again = JsonDecoder::new(&stream("unix_ns"));
                let back = again
                    .decode(&encode(e))
                    .unwrap_or_else(|err| panic!("{e:?} does not round-trip: {err}"));
                let (mut a, mut b) = (e.fields.clone(), back.fields.clone());
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(
                    (&e.key, e.time, &e.id, a),
                    (&back.key, back.time, &back.id, b)
                );
            }
        }
    }
    let mut d = JsonDecoder::new(&stream("unix_ms"));
    let (events, errors) = d.decode_array(data);
    if let Ok(items) = parse_unique_array(data) {
        assert_eq!(events.len() + errors.len(), items.len());
    }
    events.iter().for_each(check);
});
