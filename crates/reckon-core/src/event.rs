//! Events: what reckon ingests.
//!
//! An [`Event`] is one timestamped observation of one [`Key`] (its tag set) with typed
//! fields. Keys are kept in one canonical string form so that two events with the same
//! tags in a different order are the same series, and so that a key is cheap to hash,
//! clone (an `Arc`) and print.

use crate::error::{Error, Result};
use crate::time::EventTime;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The name of an input stream (InfluxDB's measurement / bucket, a NATS subject...).
pub type StreamName = Arc<str>;
/// The name of a field of an event.
pub type FieldName = Arc<str>;

/// A series key: the event's tag set in canonical form `a=1,b=x` (sorted by tag name,
/// with `\`, `,` and `=` escaped by a backslash). The empty key is the series with no tags.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key(Arc<str>);

impl Key {
    /// The key of events that have no tags.
    pub fn empty() -> Key {
        Key(Arc::from(""))
    }

    /// Builds the canonical key of a tag set. Tags are sorted by name; a tag name given
    /// twice is an error (it would make the series ambiguous).
    pub fn from_tags<K, V, I>(tags: I) -> Result<Key>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut pairs: Vec<(K, V)> = tags.into_iter().collect();
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let mut s = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            let (k, v) = (k.as_ref(), v.as_ref());
            if k.is_empty() {
                return Err(Error::InvalidEvent("a tag has an empty name".into()));
            }
            if i > 0 {
                if pairs[i - 1].0.as_ref() == k {
                    return Err(Error::InvalidEvent(format!("tag `{k}` is given twice")));
                }
                s.push(',');
            }
            escape_into(&mut s, k);
            s.push('=');
            escape_into(&mut s, v);
        }
        Ok(Key(Arc::from(s)))
    }

    /// The canonical string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tags, in name order, unescaped.
    pub fn tags(&self) -> Vec<(String, String)> {
        // The canonical form always splits.
        split_tags(&self.0).unwrap_or_default()
    }

    /// The value of the tag `name`, if the key has it, borrowed from the key's text
    /// without allocating (expressions read tags this way on every event).
    ///
    /// ```
    /// # use reckon_core::Key;
    /// let key = Key::from_tags([("station_id", "42"), ("site", "a,b")]).unwrap();
    /// assert_eq!(key.tag("station_id").and_then(|t| t.as_plain()), Some("42"));
    /// assert_eq!(key.tag("site").unwrap().to_str(), "a,b");
    /// assert!(key.tag("alarm_id").is_none());
    /// ```
    pub fn tag(&self, name: &str) -> Option<TagValue<'_>> {
        let text: &str = &self.0;
        let mut start = 0;
        while start < text.len() {
            // The canonical form always has an unescaped `=` after each name.
            let eq = find_unescaped(text, start, b'=')?;
            let end = find_unescaped(text, eq + 1, b',').unwrap_or(text.len());
            let (tag_name, value) = (text.get(start..eq)?, text.get(eq + 1..end)?);
            if TagValue(tag_name).eq_plain(name) {
                return Some(TagValue(value));
            }
            start = end + 1;
        }
        None
    }

    /// A key written as text in its canonical form (`i=42`, `a=1,b=x`; `\` escapes
    /// `,`, `=` and `\`), in any tag order; the empty text is the empty key. The error
    /// says what is wrong.
    pub fn parse(text: &str) -> Result<Key> {
        let tags = split_tags(text).map_err(Error::InvalidEvent)?;
        Key::from_tags(tags)
    }

    /// The address of the key's allocation (for identity caches; never dereferenced).
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<u8>() as usize
    }

    /// Two handles to the very same key allocation (a cheap first check before `==`).
    pub fn ptr_eq(&self, other: &Key) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A tag's value borrowed from a [`Key`]'s canonical text, where `\`, `,` and `=` are
/// still escaped by a backslash. Most values have no escapes: [`TagValue::as_plain`]
/// gives them as they are; the others unescape on the fly ([`TagValue::bytes`]) or into
/// a new string ([`TagValue::to_str`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagValue<'a>(&'a str);

impl<'a> TagValue<'a> {
    /// The value as stored in the key, escapes included.
    pub fn escaped(self) -> &'a str {
        self.0
    }

    /// The value itself, when it has no escapes (the common case).
    pub fn as_plain(self) -> Option<&'a str> {
        (!self.0.contains('\\')).then_some(self.0)
    }

    /// The bytes of the unescaped value (UTF-8), computed as they are read.
    pub fn bytes(self) -> impl Iterator<Item = u8> + 'a {
        let mut raw = self.0.bytes();
        std::iter::from_fn(move || match raw.next()? {
            b'\\' => raw.next(),
            b => Some(b),
        })
    }

    /// The unescaped value; allocates only when the value has escapes.
    pub fn to_str(self) -> Cow<'a, str> {
        if let Some(plain) = self.as_plain() {
            return Cow::Borrowed(plain);
        }
        let mut out = String::with_capacity(self.0.len());
        let mut escaped = false;
        for c in self.0.chars() {
            if !escaped && c == '\\' {
                escaped = true;
                continue;
            }
            escaped = false;
            out.push(c);
        }
        Cow::Owned(out)
    }

    /// Whether the unescaped value is `plain`.
    fn eq_plain(self, plain: &str) -> bool {
        match self.as_plain() {
            Some(s) => s == plain,
            None => self.bytes().eq(plain.bytes()),
        }
    }
}

impl fmt::Debug for TagValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagValue({:?})", self.to_str())
    }
}

/// The byte offset of the first `target` at or after `from` that is not escaped.
fn find_unescaped(text: &str, from: usize, target: u8) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            i += 2;
        } else if b == target {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

/// Splits `a=1,b=x` (with `\` escapes) into unescaped `(name, value)` pairs; a tag
/// without `=value` is an error.
fn split_tags(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    if text.is_empty() {
        return Ok(out);
    }
    let (mut name, mut cur, mut in_value, mut escaped) =
        (String::new(), String::new(), false, false);
    for c in text.chars() {
        match (escaped, c) {
            (true, _) => {
                cur.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '=') if !in_value => {
                name = std::mem::take(&mut cur);
                in_value = true;
            }
            (false, ',') => {
                if !in_value {
                    return Err(format!("the tag `{cur}` has no `=value`"));
                }
                out.push((std::mem::take(&mut name), std::mem::take(&mut cur)));
                in_value = false;
            }
            (false, _) => cur.push(c),
        }
    }
    if !in_value {
        return Err(format!("the tag `{cur}` has no `=value`"));
    }
    out.push((name, cur));
    Ok(out)
}

fn escape_into(s: &mut String, raw: &str) {
    for c in raw.chars() {
        if matches!(c, '\\' | ',' | '=') {
            s.push('\\');
        }
        s.push(c);
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", &*self.0)
    }
}

/// A typed field value. Floats are always finite: [`Value::float`] refuses NaN and
/// infinities, so no aggregate is ever poisoned by one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A finite 64-bit float.
    F64(f64),
    /// A 64-bit signed integer.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(Arc<str>),
}

impl Value {
    /// A float value; NaN and infinities are refused with the reason. `-0.0` is stored
    /// as `0.0` so that equal readings hash equally.
    pub fn float(x: f64) -> Result<Value> {
        if x.is_finite() {
            Ok(Value::F64(if x == 0.0 { 0.0 } else { x }))
        } else {
            Err(Error::InvalidEvent(format!(
                "{x} is not a finite number (NaN and infinities are not accepted)"
            )))
        }
    }

    /// The value as a number, if it is one (integers are widened to `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(x) => Some(x),
            Value::I64(i) => Some(i as f64),
            _ => None,
        }
    }

    /// The name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::F64(_) => "float",
            Value::I64(_) => "integer",
            Value::Bool(_) => "boolean",
            Value::Str(_) => "string",
        }
    }

    /// Feeds the value into a hasher-like byte sink in a stable, type-tagged form.
    pub(crate) fn stable_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Value::F64(x) => {
                out.push(1);
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            Value::I64(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Bool(b) => out.extend_from_slice(&[3, u8::from(*b)]),
            Value::Str(s) => {
                out.push(4);
                out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::F64(x) => write!(f, "{x}"),
            Value::I64(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// An event's identity for de-duplication (e.g. a message id or a CloudEvents `id`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventId(pub Arc<str>);

impl EventId {
    /// A 128-bit fingerprint of the id; collisions are negligible (about 2^-64 among
    /// 2^32 ids), which lets windows remember ids in 16 bytes each.
    pub fn fingerprint(&self) -> u128 {
        xxhash_rust::xxh3::xxh3_128(self.0.as_bytes())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({:?})", &*self.0)
    }
}

/// One timestamped observation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The stream it came from.
    pub stream: StreamName,
    /// Its series (tag set).
    pub key: Key,
    /// When it happened.
    pub time: EventTime,
    /// Its identity, if the source gives one; events with the same id are duplicates.
    pub id: Option<EventId>,
    /// Its fields, in the order the source gave them (order does not matter to reckon).
    pub fields: Vec<(FieldName, Value)>,
}

impl AsRef<Event> for Event {
    fn as_ref(&self) -> &Event {
        self
    }
}

impl Event {
    /// The value of a field, if the event has it.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v)
    }

    /// The event's digest: a 64-bit hash of its event time and its fields, independent of
    /// field order. Window checksums add digests up, so a checksum changes when any
    /// value in the window changes, not only when the count does. The key is not part of
    /// it (a window belongs to one key) and neither is the id (it names the event, it is
    /// not data). The formula is part of the storage format: see `docs/checksum.md`.
    pub fn digest(&self) -> u64 {
        let mut h = mix64(self.time.0 as u64 ^ DIGEST_SEED);
        for (name, value) in &self.fields {
            h = h.wrapping_add(field_digest(name_hash(name), value));
        }
        mix64(h)
    }

    /// [`Event::digest`], with the hashes of field names remembered across events:
    /// events of one source share their field-name `Arc`s, so the name's hash is found
    /// by identity instead of hashing the name again. Same result as `digest`.
    #[inline]
    pub(crate) fn digest_with(&self, names: &mut NameHashes) -> u64 {
        let mut h = mix64(self.time.0 as u64 ^ DIGEST_SEED);
        for (i, (name, value)) in self.fields.iter().enumerate() {
            h = h.wrapping_add(field_digest(names.hash(i, name), value));
        }
        mix64(h)
    }
}

/// Hashes of the field names at the first positions of the last events, each with the
/// name's `Arc` (held, so its address cannot be reused by another name).
#[derive(Clone, Debug, Default)]
pub(crate) struct NameHashes([Option<(FieldName, u64)>; 4]);

impl NameHashes {
    #[inline]
    fn hash(&mut self, position: usize, name: &FieldName) -> u64 {
        let Some(slot) = self.0.get_mut(position) else {
            return name_hash(name);
        };
        if let Some((known, h)) = slot
            && Arc::ptr_eq(known, name)
        {
            return *h;
        }
        let h = name_hash(name);
        *slot = Some((name.clone(), h));
        h
    }
}

#[inline]
fn name_hash(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), FIELD_SEED)
}

/// Digest of one field: `mix64(xxh3(name) * K ^ value_digest)`, computed in registers
/// from the name's hash and the value's own bytes (building a byte buffer first costs a
/// store-to-load stall per event on this hot path).
#[inline]
fn field_digest(name_h: u64, value: &Value) -> u64 {
    let value_h = match value {
        Value::F64(x) => mix64(x.to_bits() ^ TAG_F64),
        Value::I64(i) => mix64(*i as u64 ^ TAG_I64),
        Value::Bool(b) => mix64(u64::from(*b) ^ TAG_BOOL),
        Value::Str(s) => xxhash_rust::xxh3::xxh3_64_with_seed(s.as_bytes(), TAG_STR),
    };
    mix64(name_h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ value_h)
}

// Seeds and type tags of the digest; part of the stored format (checksum v1).
const DIGEST_SEED: u64 = 0x7265_636b_6f6e_0001; // "reckon" 1
const FIELD_SEED: u64 = 0x7265_636b_6f6e_0002;
const TAG_F64: u64 = 0x7265_636b_6f6e_0101;
const TAG_I64: u64 = 0x7265_636b_6f6e_0102;
const TAG_BOOL: u64 = 0x7265_636b_6f6e_0103;
const TAG_STR: u64 = 0x7265_636b_6f6e_0104;

/// The finalizer of SplitMix64: a bijective avalanche so the per-field sums spread.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(fields: Vec<(&str, Value)>) -> Event {
        Event {
            stream: Arc::from("s"),
            key: Key::empty(),
            time: EventTime(42),
            id: None,
            fields: fields.into_iter().map(|(n, v)| (Arc::from(n), v)).collect(),
        }
    }

    #[test]
    fn key_is_canonical_whatever_the_tag_order() {
        let a = Key::from_tags([("site", "a"), ("i", "5")]).unwrap();
        let b = Key::from_tags([("i", "5"), ("site", "a")]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "i=5,site=a");
    }

    #[test]
    fn key_escapes_separators_and_round_trips() {
        let tags = [("a,b", "x=y"), ("c\\", "")];
        let k = Key::from_tags(tags).unwrap();
        assert_eq!(k.as_str(), "a\\,b=x\\=y,c\\\\=");
        assert_eq!(
            k.tags(),
            vec![
                ("a,b".to_string(), "x=y".to_string()),
                ("c\\".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn a_key_parses_from_its_text_in_any_tag_order_and_bad_text_says_why() {
        let k = Key::from_tags([("a,b", "x=y"), ("c\\", "")]).unwrap();
        assert_eq!(Key::parse(k.as_str()).unwrap(), k);
        assert_eq!(
            Key::parse("b=2,a=1").unwrap(),
            Key::from_tags([("a", "1"), ("b", "2")]).unwrap()
        );
        assert_eq!(Key::parse("").unwrap(), Key::empty());
        for (text, want) in [
            ("i", "the tag `i` has no `=value`"),
            ("a=1,b", "the tag `b` has no `=value`"),
            ("i=1,i=2", "tag `i` is given twice"),
        ] {
            let e = Key::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_tag_is_found_by_its_unescaped_name_without_allocating() {
        let k =
            Key::from_tags([("a,b", "x=y"), ("c\\", ""), ("site", "north"), ("z", "1")]).unwrap();
        assert_eq!(k.tag("site").unwrap().as_plain(), Some("north"));
        assert_eq!(k.tag("z").unwrap().as_plain(), Some("1"));
        assert_eq!(k.tag("c\\").unwrap().as_plain(), Some(""));
        let v = k.tag("a,b").unwrap();
        assert_eq!(v.as_plain(), None);
        assert_eq!(v.escaped(), "x\\=y");
        assert_eq!(v.to_str(), "x=y");
        assert_eq!(v.bytes().collect::<Vec<u8>>(), b"x=y");
        for missing in ["a", "b", "a\\,b", "c", "sit", "sites", ""] {
            assert!(k.tag(missing).is_none(), "{missing}");
        }
        assert!(Key::empty().tag("").is_none());
        assert!(Key::empty().tag("a").is_none());
    }

    #[test]
    fn key_refuses_duplicate_and_empty_tag_names() {
        let e = Key::from_tags([("i", "1"), ("i", "2")]).unwrap_err();
        assert!(e.to_string().contains("tag `i` is given twice"), "{e}");
        assert!(Key::from_tags([("", "1")]).is_err());
    }

    #[test]
    fn non_finite_floats_are_refused_with_a_reason() {
        let e = Value::float(f64::NAN).unwrap_err();
        assert!(e.to_string().contains("NaN is not a finite number"), "{e}");
        assert!(Value::float(f64::INFINITY).is_err());
        assert_eq!(Value::float(-0.0).unwrap(), Value::F64(0.0));
    }

    /// The digest is part of the stored format (checksums are persisted and audited
    /// later): these values must never change without a new checksum format version.
    #[test]
    fn digest_is_pinned() {
        let e = ev(vec![
            ("x", Value::F64(1.5)),
            ("n", Value::I64(-7)),
            ("b", Value::Bool(true)),
            ("s", Value::Str(Arc::from("short"))),
        ]);
        assert_eq!(
            e.digest(),
            DIGEST_GOLDEN,
            "digest formula changed: {:#x}",
            e.digest()
        );
        assert_eq!(
            ev(vec![]).digest(),
            EMPTY_GOLDEN,
            "digest formula changed: {:#x}",
            ev(vec![]).digest()
        );
    }
    const DIGEST_GOLDEN: u64 = 0xb1d8_73ce_ff9c_8cd2;
    const EMPTY_GOLDEN: u64 = 0xf84f_a036_e09b_78c8;

    #[test]
    fn digest_ignores_field_order_but_sees_every_value() {
        let a = ev(vec![("x", Value::F64(1.5)), ("y", Value::I64(2))]);
        let b = ev(vec![("y", Value::I64(2)), ("x", Value::F64(1.5))]);
        assert_eq!(a.digest(), b.digest());
        let c = ev(vec![("x", Value::F64(1.5)), ("y", Value::I64(3))]);
        assert_ne!(a.digest(), c.digest());
        // Same number, different type: a different event.
        let d = ev(vec![("x", Value::F64(1.5)), ("y", Value::F64(2.0))]);
        assert_ne!(a.digest(), d.digest());
        let mut e = a.clone();
        e.time = EventTime(43);
        assert_ne!(a.digest(), e.digest());
    }
}
