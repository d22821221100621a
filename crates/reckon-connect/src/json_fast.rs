//! The fast JSON paths (NDJSON lines and JSON array items): each object is
//! deserialized straight into the parts of an event by a borrowing serde visitor,
//! without building a `serde_json::Value` tree. Names and strings without escapes are
//! borrowed from the body; one scratch list of members is reused for every line or
//! item.
//!
//! They give exactly the events and errors of the reference paths
//! ([`JsonDecoder::decode_ndjson_reference`], [`JsonDecoder::decode_array_reference`]),
//! which `tests/decode_oracle.rs` checks on generated valid and broken input. That
//! fixes the order in which faults are reported: a body or line that is not JSON
//! first, then a name given twice at any depth, then the time, the key fields in their
//! configured order, the id, and the other members in name order (the order of
//! `serde_json::Map`, which the reference paths iterate).

use crate::common::{DecodeError, err, rfc3339_time, unit_name, unix_time_float, unix_time_int};
use crate::json::{JsonDecoder, REPEATED};
use reckon_core::{Event, EventId, EventTime, Value};
use reckon_runtime::TimeFormat;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// A member value as the event needs it: scalars kept, arrays and objects reduced to
/// their kind (they are only ever an error, but are parsed fully for the syntax and
/// for names given twice).
#[derive(Debug, Clone)]
pub(crate) enum Raw<'de> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl Raw<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Raw::Null => "null",
            Raw::Bool(_) => "boolean",
            Raw::I64(_) | Raw::U64(_) | Raw::F64(_) => "number",
            Raw::Str(_) => "string",
            Raw::Array => "array",
            Raw::Object => "object",
        }
    }

    /// The number as `serde_json` prints it (`None` if not a number).
    fn number(&self) -> Option<serde_json::Number> {
        match *self {
            Raw::I64(i) => Some(i.into()),
            Raw::U64(u) => Some(u.into()),
            Raw::F64(x) => serde_json::Number::from_f64(x),
            _ => None,
        }
    }
}

/// The members of one top-level object, in input order.
pub(crate) type Members<'de> = Vec<(Cow<'de, str>, Raw<'de>)>;

/// What one line parsed into.
enum Parsed {
    /// An object, its members in the scratch list.
    Object,
    /// Any other value, by kind.
    Other(&'static str),
}

/// Deserializes a top-level value: an object into the scratch list, anything else to
/// its kind. The first name repeated at any depth goes into `repeated`, dotted.
struct TopSeed<'s, 'de> {
    members: &'s mut Members<'de>,
    repeated: &'s mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, 'de> {
    type Value = Parsed;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, 'de> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Parsed, E> {
        Ok(Parsed::Other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Parsed, E> {
        Ok(Parsed::Other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Parsed, E> {
        Ok(Parsed::Other("number"))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Parsed, E> {
        // As the reference path: a non-finite number (never handed over) is null.
        Ok(Parsed::Other(if x.is_finite() { "number" } else { "null" }))
    }
    fn visit_str<E>(self, _: &str) -> Result<Parsed, E> {
        Ok(Parsed::Other("string"))
    }
    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other("null"))
    }
    fn visit_none<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other("null"))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Parsed, A::Error> {
        Inner(self.repeated).visit_seq(seq)?;
        Ok(Parsed::Other("array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let TopSeed { members, repeated } = self;
        while let Some(name) = map.next_key_seed(NameSeed)? {
            let seen_before = repeated.is_some();
            let v = map.next_value_seed(ValueSeed(repeated))?;
            if !seen_before {
                if let Some(inner) = repeated.as_mut() {
                    // A repeat inside this member's value: name its path.
                    *inner = format!("{name}.{inner}");
                } else if members.iter().any(|(n, _)| *n == name) {
                    *repeated = Some(name.into_owned());
                    continue;
                }
            }
            members.push((name, v));
        }
        Ok(Parsed::Object)
    }
}

/// A member name, borrowed unless it has escapes.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

/// A member value of the top-level object.
struct ValueSeed<'s>(&'s mut Option<String>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Raw<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::I64(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Raw<'de>, E> {
        // `serde_json::Number` keeps a u64 that fits an i64 as that i64's value.
        Ok(match i64::try_from(u) {
            Ok(i) => Raw::I64(i),
            Err(_) => Raw::U64(u),
        })
    }
    fn visit_f64<E>(self, x: f64) -> Result<Raw<'de>, E> {
        Ok(if x.is_finite() {
            Raw::F64(x)
        } else {
            Raw::Null
        })
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Raw<'de>, A::Error> {
        Inner(self.0).visit_seq(seq)?;
        Ok(Raw::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Raw<'de>, A::Error> {
        Inner(self.0).visit_map(map)?;
        Ok(Raw::Object)
    }
}

/// A value nested below a member: parsed for its syntax and its repeated names only.
struct Inner<'s>(&'s mut Option<String>);

impl<'de> DeserializeSeed<'de> for Inner<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Inner<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Inner(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut names = BTreeSet::new();
        while let Some(name) = map.next_key_seed(NameSeed)? {
            let seen_before = self.0.is_some();
            map.next_value_seed(Inner(&mut *self.0))?;
            if !seen_before {
                if let Some(inner) = self.0.as_mut() {
                    *inner = format!("{name}.{inner}");
                } else if names.contains(&name) {
                    *self.0 = Some(name.into_owned());
                    continue;
                }
            }
            names.insert(name);
        }
        Ok(())
    }
}

impl JsonDecoder {
    /// Decodes NDJSON text on the fast path (what [`JsonDecoder::decode_ndjson`] does
    /// for `json` streams).
    pub(crate) fn decode_ndjson_fast(&mut self, text: &str) -> (Vec<Event>, Vec<DecodeError>) {
        let (mut events, mut errors) = (Vec::new(), Vec::new());
        let mut members: Members<'_> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            // Most lines start with `{`; only the others need the (Unicode) trim.
            if !line.starts_with('{') && line.trim().is_empty() {
                continue;
            }
            members.clear();
            match self.decode_line(line, &mut members) {
                Ok(e) => events.push(e),
                Err(mut e) => {
                    e.line = Some(i + 1);
                    errors.push(e);
                }
            }
        }
        (events, errors)
    }

    /// Decodes a JSON array body on the fast path (what [`JsonDecoder::decode_array`]
    /// does for `json` streams): each item is decoded as soon as it is parsed, its
    /// members in one reused scratch list. A body that is not a JSON array is one error
    /// and no events, as on the reference path, which parses the whole body first: the
    /// events of the items before the fault are dropped.
    pub(crate) fn decode_array_fast(&mut self, bytes: &[u8]) -> (Vec<Event>, Vec<DecodeError>) {
        let (mut events, mut errors) = (Vec::new(), Vec::new());
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = ArraySeed {
            decoder: self,
            events: &mut events,
            errors: &mut errors,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        match parsed {
            Ok(()) => (events, errors),
            Err(e) => (
                Vec::new(),
                vec![DecodeError {
                    line: Some(e.line()),
                    field: None,
                    message: format!("invalid JSON array: {e}"),
                }],
            ),
        }
    }

    fn decode_line<'de>(
        &mut self,
        line: &'de str,
        members: &mut Members<'de>,
    ) -> Result<Event, DecodeError> {
        let mut repeated = None;
        let mut de = serde_json::Deserializer::from_str(line);
        let parsed = TopSeed {
            members,
            repeated: &mut repeated,
        }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| err(None, format!("invalid JSON: {e}")))?;
        if let Some(name) = repeated {
            return Err(err(Some(&name), REPEATED));
        }
        if let Parsed::Other(kind) = parsed {
            return Err(err(None, format!("expected a JSON object, got {kind}")));
        }
        self.event_from(members)
    }

    /// The event of one object's members (unique names).
    pub(crate) fn event_from(&mut self, members: &mut Members<'_>) -> Result<Event, DecodeError> {
        let get = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let config = &self.config;
        let time_field = config.time_field.as_str();
        let raw_time = get(time_field).ok_or_else(|| {
            err(
                Some(time_field),
                "missing (every event needs its event time)",
            )
        })?;
        let time =
            parse_time(raw_time, config.time_format).map_err(|m| err(Some(time_field), m))?;

        let mut values: Vec<Cow<'_, str>> = Vec::with_capacity(config.key_fields.len());
        for k in &config.key_fields {
            let v =
                get(k).ok_or_else(|| err(Some(k), "missing (it is a key field of this stream)"))?;
            values.push(scalar_text(v).map_err(|m| err(Some(k), m))?);
        }
        let key = self
            .interner
            .key_of(&config.key_fields, &values)
            .map_err(|e| err(None, e.to_string()))?;

        let id = match &config.id_field {
            Some(f) => match get(f) {
                None | Some(Raw::Null) => None,
                Some(v) => Some(EventId(Arc::from(
                    scalar_text(v).map_err(|m| err(Some(f), m))?,
                ))),
            },
            None => None,
        };

        // The reference path reads the members in name order (`serde_json::Map`).
        if !members.is_sorted_by(|a, b| a.0 <= b.0) {
            members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        let mut fields = Vec::with_capacity(members.len());
        for (n, v) in members.iter() {
            let n: &str = n;
            if n == config.time_field
                || config.key_fields.iter().any(|k| k == n)
                || config.id_field.as_deref() == Some(n)
            {
                continue;
            }
            let value = match v {
                Raw::Null => continue,
                Raw::Bool(b) => Value::Bool(*b),
                Raw::I64(i) => Value::I64(*i),
                Raw::U64(u) => Value::float(*u as f64).map_err(|e| err(Some(n), e.to_string()))?,
                Raw::F64(x) => Value::float(*x).map_err(|e| err(Some(n), e.to_string()))?,
                Raw::Str(s) => Value::Str(Arc::from(&**s)),
                other => {
                    return Err(err(
                        Some(n),
                        format!(
                            "{} values are not supported; use numbers, strings or booleans",
                            other.kind()
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
}

/// Deserializes a JSON array body, decoding each item into an event (or an error of
/// that item alone) as soon as it is parsed.
struct ArraySeed<'s> {
    decoder: &'s mut JsonDecoder,
    events: &'s mut Vec<Event>,
    errors: &'s mut Vec<DecodeError>,
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_> {
    type Value = ();

    // The reference path's words, so that a body that is not an array gets the same
    // message.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ArraySeed {
            decoder,
            events,
            errors,
        } = self;
        let mut members: Members<'de> = Vec::new();
        let mut item = 0usize;
        loop {
            members.clear();
            let mut repeated = None;
            let Some(parsed) = seq.next_element_seed(TopSeed {
                members: &mut members,
                repeated: &mut repeated,
            })?
            else {
                break;
            };
            item += 1;
            // In the reference path's order: a repeated name, then not an object, then
            // the event's own faults.
            let decoded = match (repeated, parsed) {
                (Some(name), _) => Err(err(Some(&name), REPEATED)),
                (None, Parsed::Other(kind)) => {
                    Err(err(None, format!("expected a JSON object, got {kind}")))
                }
                (None, Parsed::Object) => decoder.event_from(&mut members),
            };
            match decoded {
                Ok(e) => events.push(e),
                Err(mut e) => {
                    e.line = Some(item);
                    e.message = format!("array item {item}: {}", e.message);
                    errors.push(e);
                }
            }
        }
        Ok(())
    }
}

/// A key or id value as text: strings as they are, numbers and booleans printed as
/// `serde_json` prints them.
fn scalar_text<'a>(v: &'a Raw<'_>) -> Result<Cow<'a, str>, String> {
    match v {
        Raw::Str(s) => Ok(Cow::Borrowed(&**s)),
        Raw::Bool(b) => Ok(Cow::Borrowed(if *b { "true" } else { "false" })),
        other => match other.number() {
            Some(n) => Ok(Cow::Owned(n.to_string())),
            None => Err(format!(
                "expected a string, number or boolean, got {}",
                other.kind()
            )),
        },
    }
}

fn parse_time(v: &Raw<'_>, format: TimeFormat) -> Result<EventTime, String> {
    match format {
        TimeFormat::Rfc3339 => {
            let Raw::Str(s) = v else {
                return Err(format!(
                    "expected an RFC 3339 timestamp string, got {}",
                    v.kind()
                ));
            };
            rfc3339_time(s)
        }
        TimeFormat::Pattern(p) => {
            let Raw::Str(s) = v else {
                return Err(format!(
                    "expected a time string like `{}`, got {}",
                    p.pattern,
                    v.kind()
                ));
            };
            p.parse(s)
        }
        unix => match *v {
            Raw::I64(i) => unix_time_int(i, unix),
            Raw::U64(u) => unix_time_float(u as f64, unix, &u),
            Raw::F64(x) => match serde_json::Number::from_f64(x) {
                Some(n) => unix_time_float(x, unix, &n),
                None => Err(format!("{x} is not a number")),
            },
            _ => Err(format!(
                "expected a number ({}), got {}",
                unit_name(unix),
                v.kind()
            )),
        },
    }
}
