//! JSON events: one object per event (NDJSON lines or array items), read according to
//! the stream's configuration (key fields, time field and format, id field).
//!
//! Every bad event gets an error naming its field (and, for NDJSON, its line); the good
//! events of the same input are kept. Field names and keys are interned per decoder,
//! so events of one source share their `Arc`s and the engine recognises them by
//! identity instead of hashing and comparing strings.

use crate::common::{Interner, err, rfc3339_time, unit_name, unix_time_float, unix_time_int};
use reckon_core::{Event, EventId, EventTime, Key, StreamName, Value};
use reckon_runtime::{EventFormat, StreamConfig, TimeFormat};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

pub use crate::common::DecodeError;

/// Decodes JSON objects into events of one stream.
#[derive(Debug)]
pub struct JsonDecoder {
    pub(crate) stream: StreamName,
    pub(crate) config: StreamConfig,
    pub(crate) interner: Interner,
}

impl JsonDecoder {
    /// A decoder for the stream `config` describes.
    pub fn new(config: &StreamConfig) -> JsonDecoder {
        JsonDecoder {
            stream: Arc::from(config.name.as_str()),
            config: config.clone(),
            interner: Interner::default(),
        }
    }

    /// Decodes one JSON object (for a `cloudevents` stream, one structured-mode
    /// CloudEvent).
    pub fn decode(&mut self, v: &Json) -> Result<Event, DecodeError> {
        let Json::Object(obj) = v else {
            return Err(err(
                None,
                format!("expected a JSON object, got {}", kind(v)),
            ));
        };
        match self.config.format {
            EventFormat::Json => self.decode_object(obj),
            EventFormat::Cloudevents => {
                let flat = cloudevent_fields(obj)?;
                self.decode_object(&flat)
            }
        }
    }

    fn decode_object(&mut self, obj: &Map<String, Json>) -> Result<Event, DecodeError> {
        let time_field = self.config.time_field.as_str();
        let raw_time = obj.get(time_field).ok_or_else(|| {
            err(
                Some(time_field),
                "missing (every event needs its event time)",
            )
        })?;
        let time =
            parse_time(raw_time, self.config.time_format).map_err(|m| err(Some(time_field), m))?;
        let mut tags = Vec::with_capacity(self.config.key_fields.len());
        for k in &self.config.key_fields {
            let v = obj
                .get(k)
                .ok_or_else(|| err(Some(k), "missing (it is a key field of this stream)"))?;
            tags.push((k.as_str(), scalar_text(v).map_err(|m| err(Some(k), m))?));
        }
        let canonical = Key::from_tags(tags.iter().map(|(k, v)| (*k, v.as_str())))
            .map_err(|e| err(None, e.to_string()))?;
        let key = self.interner.key(canonical);
        let id = match &self.config.id_field {
            Some(f) => match obj.get(f) {
                None | Some(Json::Null) => None,
                Some(v) => Some(EventId(Arc::from(
                    scalar_text(v).map_err(|m| err(Some(f), m))?,
                ))),
            },
            None => None,
        };
        let mut fields = Vec::with_capacity(obj.len());
        for (n, v) in obj {
            if *n == self.config.time_field
                || self.config.key_fields.iter().any(|k| k == n)
                || self.config.id_field.as_deref() == Some(n.as_str())
            {
                continue;
            }
            let value = match v {
                Json::Null => continue,
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(num) => match num.as_i64() {
                    Some(i) => Value::I64(i),
                    None => {
                        let x = num
                            .as_f64()
                            .ok_or_else(|| err(Some(n), format!("{num} is not representable")))?;
                        Value::float(x).map_err(|e| err(Some(n), e.to_string()))?
                    }
                },
                Json::String(s) => Value::Str(Arc::from(s.as_str())),
                other => {
                    return Err(err(
                        Some(n),
                        format!(
                            "{} values are not supported; use numbers, strings or booleans",
                            kind(other)
                        ),
                    ));
                }
            };
            fields.push((self.interner.name(n), value));
        }
        Ok(Event {
            stream: self.stream.clone(),
            key,
            time,
            id,
            fields,
        })
    }

    /// Decodes NDJSON text: the events of the good lines, and an error per bad line.
    /// Blank lines are skipped.
    ///
    /// A `json` stream's lines go through the fast path (`json_fast.rs`): each line
    /// straight into its event, without a `serde_json::Value` tree. A `cloudevents`
    /// stream's go through [`JsonDecoder::decode_ndjson_reference`].
    pub fn decode_ndjson(&mut self, text: &str) -> (Vec<Event>, Vec<DecodeError>) {
        match self.config.format {
            EventFormat::Json => self.decode_ndjson_fast(text),
            EventFormat::Cloudevents => self.decode_ndjson_reference(text),
        }
    }

    /// Decodes NDJSON text through a `serde_json::Value` per line: the reference path,
    /// slower, kept as the oracle the fast path is tested against
    /// (`tests/decode_oracle.rs`) and for CloudEvents. Same results as
    /// [`JsonDecoder::decode_ndjson`].
    pub fn decode_ndjson_reference(&mut self, text: &str) -> (Vec<Event>, Vec<DecodeError>) {
        let (mut events, mut errors) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let decoded = parse_unique(line).and_then(|v| self.decode(&v));
            match decoded {
                Ok(e) => events.push(e),
                Err(mut e) => {
                    e.line = Some(i + 1);
                    errors.push(e);
                }
            }
        }
        (events, errors)
    }

    /// Decodes a JSON array body (`[{…},{…}]`): the events of the good items, and an
    /// error per bad item (its `line` is the item's 1-based index). A body that is not
    /// a JSON array at all is one error, at the line where parsing failed.
    ///
    /// A `json` stream's items go through the fast path (`json_fast.rs`), each item
    /// straight into its event; a `cloudevents` stream's through
    /// [`JsonDecoder::decode_array_reference`].
    pub fn decode_array(&mut self, bytes: &[u8]) -> (Vec<Event>, Vec<DecodeError>) {
        match self.config.format {
            EventFormat::Json => self.decode_array_fast(bytes),
            EventFormat::Cloudevents => self.decode_array_reference(bytes),
        }
    }

    /// Decodes a JSON array body through a `serde_json::Value` per item: the reference
    /// path, slower, kept as the oracle the fast path is tested against
    /// (`tests/decode_oracle.rs`) and for CloudEvents. Same results as
    /// [`JsonDecoder::decode_array`].
    pub fn decode_array_reference(&mut self, bytes: &[u8]) -> (Vec<Event>, Vec<DecodeError>) {
        let items = match parse_unique_array(bytes) {
            Ok(items) => items,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![DecodeError {
                        line: Some(e.line()),
                        field: None,
                        message: format!("invalid JSON array: {e}"),
                    }],
                );
            }
        };
        let (mut events, mut errors) = (Vec::with_capacity(items.len()), Vec::new());
        for (i, item) in items.into_iter().enumerate() {
            match item.and_then(|v| self.decode(&v)) {
                Ok(e) => events.push(e),
                Err(mut e) => {
                    e.line = Some(i + 1);
                    e.message = format!("array item {}: {}", i + 1, e.message);
                    errors.push(e);
                }
            }
        }
        (events, errors)
    }
}

/// Parses one JSON value, refusing an object that gives a name twice at any depth
/// (`{"v":1,"v":100}`): which of the two a reader takes is not defined, so neither
/// is silently chosen. The error names the repeated name (dotted below the top
/// level: `data.x`).
pub fn parse_unique(text: &str) -> Result<Json, DecodeError> {
    let repeated = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Unique(&repeated)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| err(None, format!("invalid JSON: {e}")))?;
    match repeated.into_inner() {
        Some(name) => Err(err(Some(&name), REPEATED)),
        None => Ok(v),
    }
}

/// Parses a JSON array, each item as [`parse_unique`] does: an item with a repeated
/// name is an error of that item alone. `Err` if the text is not a JSON array.
pub fn parse_unique_array(
    bytes: &[u8],
) -> Result<Vec<Result<Json, DecodeError>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let items = UniqueItems.deserialize(&mut de)?;
    de.end()?;
    Ok(items)
}

pub(crate) const REPEATED: &str = "given twice (a name may appear once per object)";

/// Deserializes a [`Json`] value, noting in the cell the first name an object repeats
/// (its later values are read and dropped). Not an error at once, so that an array
/// item's repeated name rejects that item only.
#[derive(Clone, Copy)]
struct Unique<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Json;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Json, E> {
        Ok(Json::from(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Json, E> {
        Ok(Json::from(u))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Json, E> {
        // serde_json hands over only finite numbers; `from` maps any other to null.
        Ok(serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let seen_before = self.0.borrow().is_some();
            let v = map.next_value_seed(self)?;
            if !seen_before {
                let mut repeated = self.0.borrow_mut();
                if let Some(inner) = repeated.as_mut() {
                    // A repeat inside this member's value: name its path.
                    *inner = format!("{name}.{inner}");
                } else if out.contains_key(&name) {
                    *repeated = Some(name);
                    continue;
                }
            }
            if !out.contains_key(&name) {
                out.insert(name, v);
            }
        }
        Ok(Json::Object(out))
    }
}

/// Deserializes a JSON array into its items, each parsed by [`Unique`] on its own.
struct UniqueItems;

impl<'de> DeserializeSeed<'de> for UniqueItems {
    type Value = Vec<Result<Json, DecodeError>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for UniqueItems {
    type Value = Vec<Result<Json, DecodeError>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let repeated = RefCell::new(None);
            let Some(v) = seq.next_element_seed(Unique(&repeated))? else {
                break;
            };
            items.push(match repeated.into_inner() {
                Some(name) => Err(err(Some(&name), REPEATED)),
                None => Ok(v),
            });
        }
        Ok(items)
    }
}

/// The fields of a structured-mode CloudEvent (CloudEvents 1.0, JSON format): its
/// attributes under their own names, the members of an object `data` as
/// `data.<member>` (nested objects as `data.<member>.<inner>`), any other `data` as the
/// field `data`.
fn cloudevent_fields(obj: &Map<String, Json>) -> Result<Map<String, Json>, DecodeError> {
    match obj.get("specversion") {
        Some(Json::String(v)) if v.starts_with("1.") => {}
        Some(Json::String(v)) => {
            return Err(err(
                Some("specversion"),
                format!("CloudEvents `{v}` is not supported (reckon reads 1.x)"),
            ));
        }
        Some(other) => {
            return Err(err(
                Some("specversion"),
                format!("expected a string such as \"1.0\", got {}", kind(other)),
            ));
        }
        None => {
            return Err(err(
                Some("specversion"),
                "missing (this stream reads CloudEvents; a structured-mode event has specversion, id, source and type)",
            ));
        }
    }
    for required in ["id", "source", "type"] {
        match obj.get(required) {
            Some(Json::String(s)) if !s.is_empty() => {}
            Some(_) => {
                return Err(err(
                    Some(required),
                    "a CloudEvents attribute must be a non-empty string",
                ));
            }
            None => {
                return Err(err(
                    Some(required),
                    "missing (a required CloudEvents attribute)",
                ));
            }
        }
    }
    if obj.contains_key("data_base64") {
        return Err(err(
            Some("data_base64"),
            "binary data is not supported; send `data` as JSON",
        ));
    }
    let mut out = Map::with_capacity(obj.len() + 4);
    for (name, v) in obj {
        match (name.as_str(), v) {
            ("specversion", _) => {}
            ("data", Json::Object(members)) => flatten_into(&mut out, "data", members)?,
            _ => insert_once(&mut out, name.clone(), v)?,
        }
    }
    Ok(out)
}

fn flatten_into(
    out: &mut Map<String, Json>,
    prefix: &str,
    members: &Map<String, Json>,
) -> Result<(), DecodeError> {
    for (name, v) in members {
        let path = format!("{prefix}.{name}");
        match v {
            Json::Object(inner) => flatten_into(out, &path, inner)?,
            _ => insert_once(out, path, v)?,
        }
    }
    Ok(())
}

/// A flattened name given twice (`"data.x"` beside `"data": {"x": …}`) is ambiguous:
/// an error, not a silent choice.
fn insert_once(out: &mut Map<String, Json>, name: String, v: &Json) -> Result<(), DecodeError> {
    if out.contains_key(&name) {
        return Err(err(
            Some(&name),
            "given twice (as an attribute and inside `data`, or nested and dotted)",
        ));
    }
    out.insert(name, v.clone());
    Ok(())
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// A key or id value as text: strings as they are, numbers and booleans printed.
fn scalar_text(v: &Json) -> Result<String, String> {
    match v {
        Json::String(s) => Ok(s.clone()),
        Json::Number(n) => Ok(n.to_string()),
        Json::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, got {}",
            kind(other)
        )),
    }
}

fn parse_time(v: &Json, format: TimeFormat) -> Result<EventTime, String> {
    match format {
        TimeFormat::Rfc3339 => {
            let Json::String(s) = v else {
                return Err(format!(
                    "expected an RFC 3339 timestamp string, got {}",
                    kind(v)
                ));
            };
            rfc3339_time(s)
        }
        TimeFormat::Pattern(p) => {
            let Json::String(s) = v else {
                return Err(format!(
                    "expected a time string like `{}`, got {}",
                    p.pattern,
                    kind(v)
                ));
            };
            p.parse(s)
        }
        unix => {
            let Json::Number(n) = v else {
                return Err(format!(
                    "expected a number ({}), got {}",
                    unit_name(unix),
                    kind(v)
                ));
            };
            if let Some(i) = n.as_i64() {
                return unix_time_int(i, unix);
            }
            let x = n.as_f64().ok_or_else(|| format!("{n} is not a number"))?;
            unix_time_float(x, unix, n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(format: &str) -> StreamConfig {
        let cfg = reckon_runtime::Config::from_toml(&format!(
            "[[stream]]\nname = \"water_level\"\nkey_fields = [\"i\"]\ntime_format = \"{format}\"\nid_field = \"id\"\n"
        ))
        .unwrap();
        cfg.streams[0].clone()
    }

    #[test]
    fn decodes_keys_times_ids_and_typed_fields() {
        let mut d = JsonDecoder::new(&stream("rfc3339"));
        let (events, errors) = d.decode_ndjson(
            "{\"time\":\"2022-06-13T14:58:51.5Z\",\"i\":7,\"id\":\"a1\",\"level\":4.25,\"n\":3,\"ok\":true,\"site\":\"x\",\"gone\":null}\n\n\
             {\"time\":\"2022-06-13T14:58:52Z\",\"i\":\"7\",\"level\":1}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let e = &events[0];
        assert_eq!(e.key.as_str(), "i=7");
        assert_eq!(e.time, EventTime(1_655_132_331_500_000_000));
        assert_eq!(e.id, Some(EventId(Arc::from("a1"))));
        assert_eq!(e.field("level"), Some(&Value::F64(4.25)));
        assert_eq!(e.field("n"), Some(&Value::I64(3)));
        assert_eq!(e.field("ok"), Some(&Value::Bool(true)));
        assert_eq!(e.field("site"), Some(&Value::Str(Arc::from("x"))));
        assert_eq!(e.field("gone"), None);
        assert_eq!(e.fields.len(), 4);
        // Keys and names are interned: the engine sees the same Arcs.
        assert!(events[0].key.ptr_eq(&events[1].key));
        let name = |e: &Event| {
            e.fields
                .iter()
                .find(|(n, _)| &**n == "level")
                .map(|(n, _)| n.clone())
                .unwrap()
        };
        assert!(Arc::ptr_eq(&name(&events[0]), &name(&events[1])));
    }

    #[test]
    fn cloudevents_attributes_and_data_become_fields_and_bad_ones_are_named() {
        let cfg = reckon_runtime::Config::from_toml(
            "[[stream]]\nname = \"payments\"\nformat = \"cloudevents\"\nkey_fields = [\"source\"]\n",
        )
        .unwrap();
        let mut d = JsonDecoder::new(&cfg.streams[0]);
        let good = r#"{"specversion":"1.0","id":"ev-1","source":"/shop/eu","type":"com.shop.payment","time":"2024-05-01T10:00:03Z","datacontenttype":"application/json","data":{"payment_id":"p-42","amount":12.5,"card":{"brand":"visa"}}}"#;
        let (events, errors) = d.decode_ndjson(good);
        assert!(errors.is_empty(), "{errors:?}");
        let e = &events[0];
        assert_eq!(e.time, EventTime(1_714_557_603_000_000_000));
        assert_eq!(e.key.as_str(), "source=/shop/eu");
        assert_eq!(e.field("id"), Some(&Value::Str(Arc::from("ev-1"))));
        assert_eq!(
            e.field("type"),
            Some(&Value::Str(Arc::from("com.shop.payment")))
        );
        assert_eq!(
            e.field("data.payment_id"),
            Some(&Value::Str(Arc::from("p-42")))
        );
        assert_eq!(e.field("data.amount"), Some(&Value::F64(12.5)));
        assert_eq!(
            e.field("data.card.brand"),
            Some(&Value::Str(Arc::from("visa")))
        );
        assert_eq!(e.field("specversion"), None);
        // A scalar `data` is the field `data`.
        let (events, _) = d.decode_ndjson(
            r#"{"specversion":"1.0","id":"2","source":"s","type":"t","time":"2024-05-01T10:00:03Z","data":"hello"}"#,
        );
        assert_eq!(
            events[0].field("data"),
            Some(&Value::Str(Arc::from("hello")))
        );
        for (line, field, text) in [
            (
                r#"{"id":"1","source":"s","type":"t","time":"2024-05-01T10:00:03Z"}"#,
                "specversion",
                "missing",
            ),
            (
                r#"{"specversion":"0.3","id":"1","source":"s","type":"t","time":"2024-05-01T10:00:03Z"}"#,
                "specversion",
                "reckon reads 1.x",
            ),
            (
                r#"{"specversion":"1.0","source":"s","type":"t","time":"2024-05-01T10:00:03Z"}"#,
                "id",
                "required CloudEvents attribute",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"","type":"t","time":"2024-05-01T10:00:03Z"}"#,
                "source",
                "non-empty string",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#,
                "time",
                "missing",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2024-05-01T10:00:03Z","data_base64":"AA=="}"#,
                "data_base64",
                "not supported",
            ),
        ] {
            let (_, errors) = d.decode_ndjson(line);
            let e = errors[0].to_string();
            assert!(
                e.contains(&format!("`{field}`")) && e.contains(text),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn unix_formats_scale_to_nanoseconds() {
        for (format, input, want) in [
            ("unix_s", "1.5", 1_500_000_000),
            ("unix_ms", "1500", 1_500_000_000),
            ("unix_us", "1500000", 1_500_000_000),
            ("unix_ns", "1500000000", 1_500_000_000),
        ] {
            let mut d = JsonDecoder::new(&stream(format));
            let (events, errors) = d.decode_ndjson(&format!("{{\"time\":{input},\"i\":1}}"));
            assert!(errors.is_empty(), "{format}: {errors:?}");
            assert_eq!(events[0].time, EventTime(want), "{format}");
        }
    }

    #[test]
    fn bad_lines_are_named_and_good_lines_kept() {
        let mut d = JsonDecoder::new(&stream("rfc3339"));
        let input = [
            "{\"time\":\"2022-06-13T00:00:00Z\",\"i\":1,\"level\":1.0}",
            "{\"time\":\"yesterday\",\"i\":1}",
            "{\"i\":1}",
            "{\"time\":\"2022-06-13T00:00:00Z\"}",
            "{\"time\":\"2022-06-13T00:00:00Z\",\"i\":{\"a\":1}}",
            "{\"time\":\"2022-06-13T00:00:00Z\",\"i\":1,\"level\":[1]}",
            "[1,2]",
            "{not json",
            "{\"time\":\"2022-06-13T00:00:00Z\",\"i\":1,\"level\":1e999}",
            "{\"time\":\"9999-01-01T00:00:00Z\",\"i\":1}",
        ]
        .join("\n");
        let (events, errors) = d.decode_ndjson(&input);
        assert_eq!(events.len(), 1);
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let want = [
            "line 2: field `time`: `yesterday` is not an RFC 3339 timestamp",
            "line 3: field `time`: missing (every event needs its event time)",
            "line 4: field `i`: missing (it is a key field of this stream)",
            "line 5: field `i`: expected a string, number or boolean, got object",
            "line 6: field `level`: array values are not supported",
            "line 7: expected a JSON object, got array",
            "line 8: invalid JSON",
            "line 9: invalid JSON",
            "line 10: field `time`: is outside the supported range",
        ];
        assert_eq!(msgs.len(), want.len(), "{msgs:#?}");
        for (m, w) in msgs.iter().zip(want) {
            assert!(m.starts_with(w), "`{m}` should start with `{w}`");
        }
    }

    #[test]
    fn a_repeated_name_rejects_the_line_instead_of_taking_the_last_value() {
        let mut d = JsonDecoder::new(&stream("rfc3339"));
        let input = [
            r#"{"time":"2022-06-13T00:00:00Z","i":1,"v":1}"#,
            r#"{"time":"2022-06-13T00:00:00Z","i":1,"v":1,"v":100}"#,
            r#"{"time":"2022-06-13T00:00:00Z","time":"2030-01-01T00:00:00Z","i":1}"#,
            r#"{"time":"2022-06-13T00:00:00Z","i":1,"o":{"a":1,"a":2}}"#,
            r#"{"time":"2022-06-13T00:00:00Z","i":1,"l":[{"b":{"c":1,"c":1}}]}"#,
            r#"{"time":"2022-06-13T00:00:00Z","i":2,"v":2}"#,
        ]
        .join("\n");
        let (events, errors) = d.decode_ndjson(&input);
        assert_eq!(events.len(), 2, "{errors:?}");
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let want = [
            "line 2: field `v`: given twice",
            "line 3: field `time`: given twice",
            "line 4: field `o.a`: given twice",
            "line 5: field `l.b.c`: given twice",
        ];
        assert_eq!(msgs.len(), want.len(), "{msgs:#?}");
        for (m, w) in msgs.iter().zip(want) {
            assert!(m.starts_with(w), "`{m}` should start with `{w}`");
        }
    }

    #[test]
    fn a_repeated_name_in_an_array_item_rejects_that_item_only() {
        let mut d = JsonDecoder::new(&stream("rfc3339"));
        let (events, errors) = d.decode_array(
            br#"[{"time":"2022-06-13T00:00:00Z","i":1,"v":1,"v":100},
                 {"time":"2022-06-13T00:00:00Z","i":2,"v":2}]"#,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].field("v"), Some(&Value::I64(2)));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("line 1: field `v`: array item 1: given twice"),
            "{}",
            errors[0]
        );
        let (events, errors) = d.decode_array(b"[{\"time\":1}");
        assert!(events.is_empty());
        assert!(errors[0].message.starts_with("invalid JSON array"));
    }

    #[test]
    fn strict_parse_matches_serde_json_on_unique_input() {
        for text in [
            r#"{"a":1,"b":-2,"c":1.5,"d":"x","e":null,"f":true,"g":[1,{"h":2}],"i":18446744073709551615}"#,
            "[]",
            "3",
            r#""s""#,
        ] {
            let want: Json = serde_json::from_str(text).unwrap();
            assert_eq!(parse_unique(text).unwrap(), want, "{text}");
        }
        assert!(parse_unique("{} x").is_err());
        assert!(parse_unique("1e999").is_err());
    }
}
