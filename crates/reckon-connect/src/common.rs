//! What the event decoders (JSON, CSV, InfluxDB line protocol) share: the per-event
//! [`DecodeError`], the interning of field names and keys, and reading event times
//! written as RFC 3339 text or as a number of seconds, milliseconds, microseconds or
//! nanoseconds since the Unix epoch.
//!
//! Keeping these in one place makes the formats agree: the same time text means the
//! same [`EventTime`] and gives the same error message whichever format carried it.

use reckon_core::{EventTime, Key};
use reckon_runtime::TimeFormat;
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Why one event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    /// 1-based line of the input (NDJSON and line protocol lines, CSV records; the item
    /// index + 1 of a JSON array), if known.
    pub line: Option<usize>,
    /// The field at fault (a JSON field, a CSV column, a line protocol tag or field),
    /// if one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A [`DecodeError`] without a line (the caller knows it and sets it).
pub(crate) fn err(field: Option<&str>, message: impl Into<String>) -> DecodeError {
    DecodeError {
        line: None,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// Interning tables stop growing past this many entries (a bound on memory under
/// hostile input; beyond it names and keys are simply not shared).
pub(crate) const INTERN_LIMIT: usize = 100_000;

/// Field names and keys already seen by one decoder, so that the events of one source
/// share their `Arc`s and the engine recognises them by identity instead of hashing
/// and comparing strings. Bounded by [`INTERN_LIMIT`] entries per table.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    names: HashSet<Arc<str>>,
    keys: HashSet<InternedKey>,
    /// Keys by their tags as given (names and values in input order, each
    /// length-prefixed), so that a known series costs a lookup instead of a sort, an
    /// escape and three allocations. Only keys built without error are kept.
    by_tags: HashMap<Box<str>, Key>,
    /// The lookup text of the current tags, reused.
    scratch: String,
}

impl Interner {
    /// The shared `Arc` of a field name.
    pub(crate) fn name(&mut self, n: &str) -> Arc<str> {
        if let Some(a) = self.names.get(n) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(n);
        if self.names.len() < INTERN_LIMIT {
            self.names.insert(a.clone());
        }
        a
    }

    /// The shared key of the tags `names[i] = values[i]`: what
    /// `self.key(Key::from_tags(names.zip(values))?)` gives, from a cache after the first
    /// time.
    pub(crate) fn key_of<N: AsRef<str>, V: AsRef<str>>(
        &mut self,
        names: &[N],
        values: &[V],
    ) -> reckon_core::Result<Key> {
        use std::fmt::Write as _;
        self.scratch.clear();
        for (n, v) in names.iter().zip(values) {
            let (n, v) = (n.as_ref(), v.as_ref());
            // Writing to a String cannot fail.
            let _ = write!(self.scratch, "{}:{n}{}:{v}", n.len(), v.len());
        }
        if let Some(k) = self.by_tags.get(self.scratch.as_str()) {
            return Ok(k.clone());
        }
        let k = self.key(Key::from_tags(
            names
                .iter()
                .zip(values)
                .map(|(n, v)| (n.as_ref(), v.as_ref())),
        )?);
        if self.by_tags.len() < INTERN_LIMIT {
            self.by_tags
                .insert(Box::from(self.scratch.as_str()), k.clone());
        }
        Ok(k)
    }

    /// The shared handle of a key equal to `k` (`k` itself the first time).
    pub(crate) fn key(&mut self, k: Key) -> Key {
        if let Some(known) = self.keys.get(k.as_str()) {
            return known.0.clone();
        }
        if self.keys.len() < INTERN_LIMIT {
            self.keys.insert(InternedKey(k.clone()));
        }
        k
    }
}

/// A key looked up by its canonical text, without storing the text twice.
#[derive(Debug)]
struct InternedKey(Key);

impl Borrow<str> for InternedKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}
impl PartialEq for InternedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}
impl Eq for InternedKey {}
impl Hash for InternedKey {
    // Must hash exactly like the `str` it borrows as.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

/// The tail of every "time out of range" message.
pub(crate) const OUT_OF_RANGE: &str = "is outside the supported range (years 1678 to 2262)";

/// An RFC 3339 timestamp such as `2024-01-01T00:00:00.5Z`.
pub(crate) fn rfc3339_time(s: &str) -> Result<EventTime, String> {
    let ts: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp: {e}"))?;
    i64::try_from(ts.as_nanosecond())
        .map(EventTime)
        .map_err(|_| OUT_OF_RANGE.to_string())
}

/// Nanoseconds per unit of a Unix time format (1 for `rfc3339`, which has no unit).
pub(crate) fn unix_scale(format: TimeFormat) -> i64 {
    match format {
        TimeFormat::UnixS => 1_000_000_000,
        TimeFormat::UnixMs => 1_000_000,
        TimeFormat::UnixUs => 1_000,
        TimeFormat::UnixNs | TimeFormat::Rfc3339 | TimeFormat::Pattern(_) => 1,
    }
}

/// An integer Unix time in the unit of `format`.
pub(crate) fn unix_time_int(i: i64, format: TimeFormat) -> Result<EventTime, String> {
    i.checked_mul(unix_scale(format))
        .map(EventTime)
        .ok_or_else(|| OUT_OF_RANGE.to_string())
}

/// A fractional Unix time in the unit of `format`, rounded to the nanosecond; `shown`
/// is how the input wrote it (for the message).
pub(crate) fn unix_time_float(
    x: f64,
    format: TimeFormat,
    shown: &dyn fmt::Display,
) -> Result<EventTime, String> {
    let x = x * unix_scale(format) as f64;
    if x.is_finite() && x >= i64::MIN as f64 && x < i64::MAX as f64 {
        Ok(EventTime(x.round() as i64))
    } else {
        Err(format!("{shown} {OUT_OF_RANGE}"))
    }
}

/// An event time written as text (a CSV cell): RFC 3339, or a decimal number in the
/// unit of `format`. Surrounding whitespace is ignored.
pub(crate) fn time_from_text(s: &str, format: TimeFormat) -> Result<EventTime, String> {
    let s = s.trim();
    match format {
        TimeFormat::Rfc3339 => return rfc3339_time(s),
        TimeFormat::Pattern(p) => return p.parse(s),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return unix_time_int(i, format);
    }
    match s.parse::<f64>() {
        Ok(x) if looks_numeric(s) => unix_time_float(x, format, &s),
        _ => Err(format!(
            "expected a number ({}), got `{s}`",
            unit_name(format)
        )),
    }
}

/// Whether `s` is a plain decimal number (Rust's `f64` parser also takes `inf` and
/// `NaN`, which are never times).
fn looks_numeric(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
}

/// The unit of a Unix time format, for messages.
pub(crate) fn unit_name(f: TimeFormat) -> &'static str {
    match f {
        TimeFormat::UnixS => "seconds since the Unix epoch",
        TimeFormat::UnixMs => "milliseconds since the Unix epoch",
        TimeFormat::UnixUs => "microseconds since the Unix epoch",
        TimeFormat::UnixNs | TimeFormat::Rfc3339 | TimeFormat::Pattern(_) => {
            "nanoseconds since the Unix epoch"
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn interner_shares_names_and_keys() {
        let mut i = Interner::default();
        let (a, b) = (i.name("level"), i.name("level"));
        assert!(Arc::ptr_eq(&a, &b));
        let k1 = i.key(Key::from_tags([("i", "1")]).unwrap());
        let k2 = i.key(Key::from_tags([("i", "1")]).unwrap());
        assert!(k1.ptr_eq(&k2));
        assert!(!k1.ptr_eq(&i.key(Key::from_tags([("i", "2")]).unwrap())));
    }

    #[test]
    fn times_from_text() {
        use TimeFormat::*;
        let ok = |s: &str, f| time_from_text(s, f).unwrap();
        assert_eq!(
            ok("1970-01-01T00:00:01.5Z", Rfc3339),
            EventTime(1_500_000_000)
        );
        assert_eq!(ok(" 1.5 ", UnixS), EventTime(1_500_000_000));
        assert_eq!(ok("1500", UnixMs), EventTime(1_500_000_000));
        assert_eq!(ok("-1500", UnixUs), EventTime(-1_500_000));
        assert_eq!(ok("15e2", UnixNs), EventTime(1_500));
        let e = |s: &str, f| time_from_text(s, f).unwrap_err();
        assert_eq!(
            e("inf", UnixS),
            "expected a number (seconds since the Unix epoch), got `inf`"
        );
        assert_eq!(e("1e300", UnixS), format!("1e300 {OUT_OF_RANGE}"));
        assert_eq!(e("9223372036854775807", UnixMs), OUT_OF_RANGE);
        assert!(e("noon", Rfc3339).starts_with("`noon` is not an RFC 3339 timestamp"));
    }
}
