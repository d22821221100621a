//! `reckon.toml` parsing. Beyond "no panic": parsing is deterministic (the same text
//! gives the same answer twice).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let a = reckon_runtime::Config::from_toml(text);
    let b = reckon_runtime::Config::from_toml(text);
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("from_toml is not deterministic on {text:?}"),
    }
});
