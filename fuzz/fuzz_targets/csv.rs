//! CSV decoding. Beyond "no panic": the decoder ends; record lines only go forward;
//! `bytes_read` never passes the input's length; each event's fields are named once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reckon_connect::csv::CsvDecoder;

fuzz_target!(|data: &[u8]| {
    let (format, body) = match data.split_first() {
        Some((b, rest)) => (["rfc3339", "unix_ms", "unix_s"][*b as usize % 3], rest),
        None => ("rfc3339", data),
    };
    let text = format!(
        "[[stream]]\nname = \"s\"\nkey_fields = [\"i\"]\ntime_format = \"{format}\"\nid_field = \"id\"\n"
    );
    let cfg = reckon_runtime::Config::from_toml(&text).expect("a valid config");
    let Ok(mut d) = CsvDecoder::new(&cfg.streams[0], body) else {
        return;
    };
    let mut last_line = 0;
    let mut n = 0usize;
    while let Some(r) = d.next() {
        n += 1;
        assert!(n <= body.len() + 1, "more records than bytes");
        assert!(d.bytes_read() <= body.len() as u64);
        match r {
            Ok(e) => {
                for (i, (f, _)) in e.fields.iter().enumerate() {
                    assert!(!e.fields[..i].iter().any(|(m, _)| m == f), "{f} twice");
                }
            }
            Err(e) => {
                if let Some(l) = e.line {
                    assert!(l >= last_line, "line {l} after {last_line}");
                    last_line = l;
                }
            }
        }
    }
});
