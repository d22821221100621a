//! Structured-mode CloudEvents. Beyond "no panic": an accepted event has its required
//! attributes, no `specversion` field and each field name once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reckon_connect::JsonDecoder;
use reckon_core::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = reckon_runtime::Config::from_toml(
        "[[stream]]\nname = \"payments\"\nformat = \"cloudevents\"\nkey_fields = [\"source\"]\n",
    )
    .expect("a valid config");
    let mut d = JsonDecoder::new(&cfg.streams[0]);
    let (events, errors) = d.decode_ndjson(text);
    assert!(events.len() + errors.len() <= text.lines().count());
    for e in &events {
        assert!(e.field("specversion").is_none());
        for a in ["id", "type"] {
            assert!(
                matches!(e.field(a), Some(Value::Str(s)) if !s.is_empty()),
                "{a} in {e:?}"
            );
        }
        assert!(e.key.as_str().starts_with("source="), "{e:?}");
        for (i, (n, _)) in e.fields.iter().enumerate() {
            assert!(!e.fields[..i].iter().any(|(m, _)| m == n), "{n} twice");
        }
    }
});
