//! The fast decode paths against the reference decoders kept as their oracle: on
//! generated valid lines (and JSON array bodies), broken ones and arbitrary mutations
//! of both, the fast path gives exactly the same events (values, keys, times, ids,
//! field order) and the same errors (line, field, message).
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use reckon_connect::JsonDecoder;
use reckon_connect::lineproto::{LineProtocolDecoder, Precision};
use reckon_core::EventTime;
use reckon_runtime::{Config, StreamConfig};

fn stream(extra: &str) -> StreamConfig {
    Config::from_toml(&format!("[[stream]]\nname = \"s\"\n{extra}\n"))
        .unwrap()
        .streams[0]
        .clone()
}

/// The stream shapes the JSON decoder is configured with.
const JSON_STREAMS: &[&str] = &[
    "key_fields = [\"i\"]\ntime_format = \"rfc3339\"\nid_field = \"id\"",
    "key_fields = [\"i\"]\ntime_format = \"unix_ns\"",
    "key_fields = [\"i\", \"s\"]\ntime_format = \"unix_s\"\nid_field = \"id\"",
    "time_format = \"unix_ms\"",
    "key_fields = [\"s\"]\ntime_format = \"unix_us\"\ntime_field = \"t\"",
    "key_fields = [\"i\"]\ntime_format = \"%Y-%m-%d %H:%M:%S\"",
];

const NAMES: &[&str] = &[
    "time",
    "t",
    "i",
    "s",
    "id",
    "level",
    "n",
    "ok",
    "x",
    "a\\\"b",
    "\\u00e9t\\u00e9",
    "é",
    "lev\\nel",
    "",
];

const SCALARS: &[&str] = &[
    "0",
    "-0",
    "7",
    "-42",
    "1.5",
    "-0.0",
    "4.25",
    "1e3",
    "1E-3",
    "2.5e+2",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1655132331500000000",
    "1655132331.5",
    "1e300",
    "1e999",
    "-1e400",
    "01",
    "1.",
    ".5",
    "true",
    "false",
    "null",
    "\"x\"",
    "\"\"",
    "\"7\"",
    "\"caf\\u00e9 \\ud83d\\ude00\"",
    "\"tab\\tnew\\nline\\\\\"",
    "\"ünïcödé ✓\"",
    "\"2022-06-13T14:58:51.5Z\"",
    "\"2022-06-13T14:58:52+02:00\"",
    "\"2022-06-13 14:58:52\"",
    "\"9999-01-01T00:00:00Z\"",
    "\"yesterday\"",
    "[]",
    "[1,\"a\",{\"b\":1}]",
    "{}",
    "{\"a\":1,\"a\":2}",
    "[{\"b\":{\"c\":1,\"c\":1}}]",
    "{\"a\":{\"x\":1},\"b\":2}",
    "\"\\ud800\"",
];

fn member() -> impl Strategy<Value = String> {
    (
        prop::sample::select(NAMES),
        prop::sample::select(SCALARS),
        prop::sample::select(&[":", ":", ":", " : ", ""][..]),
    )
        .prop_map(|(n, v, colon)| format!("\"{n}\"{colon}{v}"))
}

/// A JSON object line: mostly well formed, with members from the pools above (so
/// missing, extra, repeated and mistyped members all occur).
fn object_line() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(member(), 0..7),
        prop::sample::select(&[",", ",", ",", ", ", ",,"][..]),
        prop::sample::select(&["", "", "", " ", "\r", " x", "}", "\t"][..]),
    )
        .prop_map(|(ms, sep, tail)| format!("{{{}}}{tail}", ms.join(sep)))
}

/// A line that is a typical event, so the good path is well covered.
fn good_line() -> impl Strategy<Value = String> {
    (
        0i64..2_000_000_000_000_000_000,
        0u32..5,
        -1000.0f64..1000.0,
        prop::option::of("[a-z0-9é\\\\\"]{0,6}"),
        0u8..4,
    )
        .prop_map(|(t, i, level, id, form)| {
            let mut obj = serde_json::Map::new();
            let ts = jiff::Timestamp::from_nanosecond(i128::from(t)).unwrap();
            let time: serde_json::Value = match form {
                0 => t.into(),
                1 => ts.to_string().into(),
                2 => ts.strftime("%Y-%m-%d %H:%M:%S").to_string().into(),
                _ => (t as f64 / 1e9).into(),
            };
            obj.insert("time".into(), time);
            obj.insert("t".into(), t.into());
            obj.insert("i".into(), i.into());
            obj.insert("s".into(), format!("s{i}").into());
            obj.insert("level".into(), level.into());
            if let Some(id) = id {
                obj.insert("id".into(), id.into());
            }
            serde_json::Value::Object(obj).to_string()
        })
}

/// Deletes, duplicates or inserts a few characters of a line.
fn mutate(line: String, edits: Vec<(usize, u8, char)>) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    for (at, op, c) in edits {
        if chars.is_empty() {
            chars.push(c);
            continue;
        }
        let at = at % chars.len();
        match op % 3 {
            0 => {
                chars.remove(at);
            }
            1 => {
                let d = chars[at];
                chars.insert(at, d);
            }
            _ => chars.insert(at, c),
        }
    }
    chars.into_iter().collect()
}

fn json_line() -> impl Strategy<Value = String> {
    let edit = prop::collection::vec(
        (
            any::<usize>(),
            any::<u8>(),
            prop::sample::select(
                &['"', '{', '}', ',', ':', '\\', '1', 'e', '.', ' ', '[', 'é'][..],
            ),
        ),
        1..3,
    );
    prop_oneof![
        4 => good_line(),
        4 => object_line(),
        2 => (prop_oneof![good_line(), object_line()], edit).prop_map(|(l, e)| mutate(l, e)),
        1 => prop::sample::select(&["", "   ", "\u{a0}", "[1,2]", "3", "\"s\"", "null", "{not json"][..])
            .prop_map(str::to_string),
    ]
}

fn lp_line() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(
        &[
            "m",
            "cpu",
            ",",
            " ",
            "=",
            "host",
            "a",
            "i",
            "id",
            "v",
            "x",
            "1",
            "-",
            "1.5",
            "2e3",
            "1i",
            "7u",
            "-3i",
            "18446744073709551615u",
            "9223372036854775808i",
            "t",
            "FALSE",
            "\"",
            "\"s\"",
            "\"a\\\"b\"",
            "\\",
            "\\ ",
            "\\,",
            "\\=",
            "é",
            "#",
            "\t",
            "\r",
            "1700000000000000000",
            "-1",
            "99999999999999999999",
            "1e999",
        ][..],
    );
    let structured = (
        prop::collection::vec(
            (
                prop::sample::select(&["host", "i", "id", "dc", "v"][..]),
                "[a-z0-9]{1,3}",
            ),
            0..3,
        ),
        prop::collection::vec(
            (
                prop::sample::select(&["v", "x", "id", "host", "s"][..]),
                prop::sample::select(
                    &[
                        "1",
                        "1.5",
                        "-2e-3",
                        "3i",
                        "4u",
                        "true",
                        "f",
                        "\"up\"",
                        "\"a b,c\"",
                    ][..],
                ),
            ),
            1..4,
        ),
        prop::option::of(-1_000_000_000_000i64..2_000_000_000_000_000_000),
    )
        .prop_map(|(tags, fields, ts)| {
            let mut s = String::from("m");
            for (k, v) in tags {
                s.push_str(&format!(",{k}={v}"));
            }
            let fs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push(' ');
            s.push_str(&fs.join(","));
            if let Some(t) = ts {
                s.push_str(&format!(" {t}"));
            }
            s
        });
    prop_oneof![
        3 => structured,
        1 => prop::collection::vec(piece, 0..14).prop_map(|p| p.concat()),
    ]
}

/// An object with members from the pools (missing, extra, repeated and mistyped
/// members, nested values) but well-formed syntax, so that most array bodies parse
/// and the items' own faults are compared.
fn array_object() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((prop::sample::select(NAMES), array_value()), 0..7),
        prop::sample::select(&[",", ", ", " ,\n\t"][..]),
    )
        .prop_map(|(ms, sep)| {
            let ms: Vec<String> = ms
                .into_iter()
                .map(|(n, v)| format!("\"{n}\":{v}"))
                .collect();
            format!("{{{}}}", ms.join(sep))
        })
}

/// A member value of [`array_object`]: mostly one that is valid JSON (a value that is
/// not, such as `1e999`, makes the whole body not an array).
fn array_value() -> impl Strategy<Value = &'static str> {
    let valid: Vec<&'static str> = SCALARS
        .iter()
        .copied()
        .filter(|v| serde_json::from_str::<serde_json::Value>(v).is_ok())
        .collect();
    prop_oneof![
        19 => prop::sample::select(valid),
        1 => prop::sample::select(SCALARS),
    ]
}

/// One item of an array body: mostly typical events and objects, some other values.
fn array_item() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => good_line(),
        4 => array_object(),
        1 => prop::sample::select(
            &["3", "\"s\"", "null", "true", "[]", "[1,2]", "{}", "[{\"a\":1,\"a\":2}]", "[[{}]]", "1.5"][..]
        )
        .prop_map(str::to_string),
    ]
}

/// A well-formed array body: items with whitespace around them (or none), sometimes
/// none at all, sometimes followed by more text so that it is not one array.
fn array_text() -> impl Strategy<Value = String> {
    let ws = || prop::sample::select(&["", "", " ", "\n", "\r\n  ", "\t"][..]);
    (
        prop::collection::vec((array_item(), ws(), ws()), 0..8),
        ws(),
        ws(),
        prop_oneof![
            9 => Just(""),
            1 => prop::sample::select(&[" x", ",", "]", "[]", "\n{}"][..]),
        ],
    )
        .prop_map(|(items, lead, trail, tail)| {
            let items: Vec<String> = items
                .into_iter()
                .map(|(item, before, after)| format!("{before}{item}{after}"))
                .collect();
            format!("{lead}[{}]{trail}{tail}", items.join(","))
        })
}

/// An array body: mostly [`array_text`], some mutated, some odd bodies.
fn array_body() -> impl Strategy<Value = String> {
    let edit = prop::collection::vec(
        (
            any::<usize>(),
            any::<u8>(),
            prop::sample::select(&['"', '{', '}', '[', ']', ',', ':', '\\', '1', ' '][..]),
        ),
        1..3,
    );
    prop_oneof![
        8 => array_text(),
        2 => (array_text(), edit).prop_map(|(b, e)| mutate(b, e)),
        1 => prop::sample::select(&["", "[", "]", "[]", "  [ ]  ", "{}", "null", "[,]", "[1,]", "\u{feff}[]"][..])
            .prop_map(str::to_string),
    ]
}

const LP_STREAMS: &[&str] = &[
    "",
    "key_fields = [\"host\"]",
    "key_fields = [\"host\", \"i\"]\nid_field = \"id\"",
    "id_field = \"id\"",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn ndjson_fast_path_matches_the_reference(
        lines in prop::collection::vec(json_line(), 1..8),
        config in prop::sample::select(JSON_STREAMS),
        crlf in any::<bool>(),
    ) {
        let body = lines.join(if crlf { "\r\n" } else { "\n" });
        let cfg = stream(config);
        let want = JsonDecoder::new(&cfg).decode_ndjson_reference(&body);
        // One decoder over two bodies: its caches must not change the results.
        let mut fast = JsonDecoder::new(&cfg);
        let got = fast.decode_ndjson(&body);
        prop_assert_eq!(&got, &want, "body: {:?}", body);
        prop_assert_eq!(fast.decode_ndjson(&body), want);
    }

    #[test]
    fn json_array_fast_path_matches_the_reference(
        body in array_body(),
        config in prop::sample::select(JSON_STREAMS),
    ) {
        let cfg = stream(config);
        let want = JsonDecoder::new(&cfg).decode_array_reference(body.as_bytes());
        // One decoder over two bodies: its caches must not change the results.
        let mut fast = JsonDecoder::new(&cfg);
        let got = fast.decode_array(body.as_bytes());
        prop_assert_eq!(&got, &want, "body: {:?}", body);
        prop_assert_eq!(fast.decode_array(body.as_bytes()), want);
    }

    #[test]
    fn line_protocol_fast_path_matches_the_reference(
        lines in prop::collection::vec(lp_line(), 1..8),
        config in prop::sample::select(LP_STREAMS),
        precision in prop::sample::select(&[Precision::Ns, Precision::Ms, Precision::S][..]),
        sep in prop::sample::select(&["\n", "\r\n", "\n\n", "\n# c\n"][..]),
    ) {
        let body = lines.join(sep);
        let cfg = stream(config);
        let now = EventTime(1_700_000_000_000_000_000);
        let want = LineProtocolDecoder::new(&cfg).decode_reference(&body, precision, now);
        let mut fast = LineProtocolDecoder::new(&cfg);
        let got = fast.decode(&body, precision, now);
        prop_assert_eq!(&got, &want, "body: {:?}", body);
        prop_assert_eq!(fast.decode(&body, precision, now), want);
    }
}

/// The generators reach both outcomes: good events and errors of many kinds, so the
/// comparisons above are not all on rejected lines.
#[test]
fn generated_input_has_good_and_bad_lines() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut events, mut messages) = (0, std::collections::BTreeSet::new());
    for n in 0..600 {
        let line = json_line().new_tree(&mut runner).unwrap().current();
        let cfg = stream(JSON_STREAMS[n % JSON_STREAMS.len()]);
        let (e, errs) = JsonDecoder::new(&cfg).decode_ndjson(&line);
        events += e.len();
        messages.extend(
            errs.into_iter()
                .map(|e| e.message.chars().take(16).collect::<String>()),
        );
    }
    assert!(events > 30, "{events} events");
    assert!(messages.len() > 8, "{messages:?}");
    let (mut events, mut errors) = (0, 0);
    for _ in 0..300 {
        let line = lp_line().new_tree(&mut runner).unwrap().current();
        let (e, errs) = LineProtocolDecoder::new(&stream(LP_STREAMS[0])).decode(
            &line,
            Precision::Ns,
            EventTime(0),
        );
        events += e.len();
        errors += errs.len();
    }
    assert!(
        events > 50 && errors > 20,
        "{events} events, {errors} errors"
    );
}

/// The array generator reaches every outcome: bodies that are not arrays, empty
/// arrays, good items and bad items of many kinds.
#[test]
fn generated_array_bodies_have_good_and_bad_items() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut events, mut not_arrays, mut empty) = (0, 0, 0);
    let mut item_errors = std::collections::BTreeSet::new();
    for n in 0..600 {
        let body = array_body().new_tree(&mut runner).unwrap().current();
        let cfg = stream(JSON_STREAMS[n % JSON_STREAMS.len()]);
        let (e, errs) = JsonDecoder::new(&cfg).decode_array(body.as_bytes());
        events += e.len();
        if e.is_empty() && errs.is_empty() {
            empty += 1;
        }
        for err in errs {
            if err.message.starts_with("invalid JSON array") {
                not_arrays += 1;
            } else {
                // "array item N: " then the item's fault.
                let fault = err.message.split_once(": ").map_or("", |(_, m)| m);
                item_errors.insert(fault.chars().take(16).collect::<String>());
            }
        }
    }
    assert!(events > 100, "{events} events");
    assert!(not_arrays > 50, "{not_arrays} bodies that are not arrays");
    assert!(empty > 10, "{empty} empty arrays");
    assert!(item_errors.len() > 8, "{item_errors:?}");
    assert!(
        item_errors.iter().any(|m| m.starts_with("given twice")),
        "{item_errors:?}"
    );
}
