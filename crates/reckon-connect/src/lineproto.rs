//! InfluxDB line protocol events, as written to `POST /api/v2/write?bucket=<stream>` by
//! the InfluxDB client libraries, Telegraf's `outputs.influxdb_v2` and anything else that
//! speaks to InfluxDB 2. The bucket is the stream; each line is one event:
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//!
//! # Mapping
//!
//! - The stream's `key_fields` name the tags whose values form the series key; with no
//!   `key_fields`, all tags do (but the id tag, if any). Tags that are not key fields
//!   become string fields, so nothing written is lost. A missing key tag is an error
//!   naming it.
//! - The stream's `id_field`, if set, is read from a tag or a field of that name and
//!   becomes the event's id (it is not also kept as a field).
//! - Field values keep their type: floats (`1.5`, `-2e-3`), integers (`1i`), unsigned
//!   integers (`1u`, which must fit a signed 64-bit integer: reckon has one integer
//!   type), strings (`"text"`) and booleans (`t`, `true`, `F`, `FALSE`...). A float too
//!   large to be finite is an error.
//! - The timestamp is scaled by the request's [`Precision`] (overflow is an error);
//!   a line without one gets the time the request was received, as in InfluxDB.
//! - The measurement name is checked but not kept: a reckon event has no place for it
//!   because the stream (bucket) already says what the events are. Write one
//!   measurement per bucket, or give the fields of different measurements distinct
//!   names.
//!
//! Every bad line gives a [`DecodeError`] with its 1-based line number (a line whose
//! string field spans several lines is numbered by where it starts), the tag or field at
//! fault and what is wrong; the good lines of the same body are kept.
//!
//! # Why a parser of our own
//!
//! The `influxdb-line-protocol` crate (InfluxDB 3's parser) was the first choice, but
//! used as it is it loses the line numbers (it skips blank and comment lines without
//! saying so), rejects what clients do send (CRLF line ends, trailing whitespace after
//! the fields) and its errors name neither the field nor the fault precisely
//! ("A generic parsing error occurred: TakeWhile1"). So this module has a small
//! zero-copy parser: names and strings are borrowed from the body unless they contain
//! escapes. It follows the crate's grammar, which the tests use as the oracle
//! (property tests compare both on generated points and on arbitrary lines), with
//! these differences:
//!
//! - accepted in addition: trailing spaces, tabs and `\r` (CRLF) at the end of a line;
//! - rejected in addition, as InfluxDB 2 does: an unescaped `,` in a tag or field name,
//!   an unescaped `=` in a tag value, a tag given twice, a `,` after the last field;
//!   and, unlike InfluxDB, a field given twice in one line (InfluxDB keeps the last;
//!   reckon refuses to guess);
//! - floats follow the crate (and InfluxDB 3): `.5` and `1.`, which InfluxDB 2 also
//!   takes and no client writes, are refused;
//! - a comment line ends at the end of the line even if it contains a `"` (the crate
//!   and InfluxDB 2 may read the next lines as part of such a comment).
//!
//! Like both, lines are split at newlines that are neither escaped nor inside a string
//! field (so a string left open runs on to the next `"`, and the lines in between are
//! one bad line, as in InfluxDB); a backslash escapes only the characters listed by the
//! InfluxDB docs (`\\`, `\,`, `\=` and `\ ` in names and tag values, `\,` `\ ` and `\\` in
//! the measurement, `\"` and `\\` in strings) and is kept as it is before anything
//! else; names and tag values may not end with a backslash.

use crate::common::{DecodeError, Interner, OUT_OF_RANGE, err};
use reckon_core::{Event, EventId, EventTime, Key, StreamName, Value};
use reckon_runtime::StreamConfig;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The unit of the timestamps in a write (the `precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Nanoseconds since the Unix epoch (the default).
    #[default]
    Ns,
    /// Microseconds since the Unix epoch.
    Us,
    /// Milliseconds since the Unix epoch.
    Ms,
    /// Seconds since the Unix epoch.
    S,
}

impl Precision {
    /// Reads the `precision` parameter: `ns`, `us`, `ms` or `s`, also InfluxDB 1's
    /// `n` and `u`; empty means the default, nanoseconds.
    ///
    /// ```
    /// use reckon_connect::lineproto::Precision;
    /// assert_eq!(Precision::parse("ms"), Ok(Precision::Ms));
    /// assert_eq!(Precision::parse(""), Ok(Precision::Ns));
    /// assert!(Precision::parse("h").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Precision, DecodeError> {
        match s {
            "" | "ns" | "n" => Ok(Precision::Ns),
            "us" | "u" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            other => Err(err(
                None,
                format!("unknown precision `{}`; use ns, us, ms or s", shown(other)),
            )),
        }
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }
}

impl FromStr for Precision {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Precision, DecodeError> {
        Precision::parse(s)
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        })
    }
}

/// Decodes line protocol bodies into events of one stream.
#[derive(Debug)]
pub struct LineProtocolDecoder {
    stream: StreamName,
    key_fields: Vec<String>,
    id_field: Option<String>,
    interner: Interner,
}

impl LineProtocolDecoder {
    /// A decoder for the stream `config` describes (its `time_field` and `time_format`
    /// do not apply: line protocol has its own timestamp).
    pub fn new(config: &StreamConfig) -> Self {
        LineProtocolDecoder {
            stream: Arc::from(config.name.as_str()),
            key_fields: config.key_fields.clone(),
            id_field: config.id_field.clone(),
            interner: Interner::default(),
        }
    }

    /// Decodes a body: the events of the good lines, and an error per bad line. Blank
    /// lines and `#` comments are skipped.
    ///
    /// `now`: event time for lines without a timestamp (InfluxDB uses the server time).
    pub fn decode(
        &mut self,
        body: &str,
        precision: Precision,
        now: EventTime,
    ) -> (Vec<Event>, Vec<DecodeError>) {
        self.decode_with(body, precision, now, Path::Fast)
    }

    /// [`LineProtocolDecoder::decode`] as it was before the fast path: every key built
    /// and sorted anew, each line scanned twice. Kept as the oracle the fast path is
    /// tested against (`tests/decode_oracle.rs`); same results.
    pub fn decode_reference(
        &mut self,
        body: &str,
        precision: Precision,
        now: EventTime,
    ) -> (Vec<Event>, Vec<DecodeError>) {
        self.decode_with(body, precision, now, Path::Reference)
    }

    fn decode_with(
        &mut self,
        body: &str,
        precision: Precision,
        now: EventTime,
        path: Path,
    ) -> (Vec<Event>, Vec<DecodeError>) {
        let (mut events, mut errors) = (Vec::new(), Vec::new());
        // One line's parts, reused: they borrow from `body`, not from each other.
        let mut line = Line::default();
        let mut lines = lines(body);
        lines.one_pass = path == Path::Fast;
        for (number, text) in lines {
            let decoded =
                parse_line(text, &mut line).and_then(|()| self.event(&line, precision, now, path));
            match decoded {
                Ok(e) => events.push(e),
                Err(mut e) => {
                    e.line = Some(number);
                    errors.push(e);
                }
            }
        }
        (events, errors)
    }

    fn event(
        &mut self,
        line: &Line<'_>,
        precision: Precision,
        now: EventTime,
        path: Path,
    ) -> Result<Event, DecodeError> {
        let time = match line.timestamp {
            None => now,
            Some(t) => t
                .checked_mul(precision.nanos())
                .map(EventTime)
                .ok_or_else(|| {
                    err(
                        None,
                        format!("timestamp {t} (precision {precision}) {OUT_OF_RANGE}"),
                    )
                })?,
        };

        let id_field = self.id_field.as_deref();
        let key = if self.key_fields.is_empty() {
            // All tags but the id (one series per event would help no one).
            let tags = line
                .tags
                .iter()
                .filter(|(k, _)| Some(k.as_ref()) != id_field);
            match path {
                Path::Reference => Key::from_tags(tags.map(|(k, v)| (k.as_ref(), v.as_ref())))
                    .map(|k| self.interner.key(k)),
                Path::Fast => {
                    let (names, values): (Vec<&str>, Vec<&str>) =
                        tags.map(|(k, v)| (k.as_ref(), v.as_ref())).unzip();
                    self.interner.key_of(&names, &values)
                }
            }
        } else {
            let mut tags = Vec::with_capacity(self.key_fields.len());
            for k in &self.key_fields {
                let Some((_, v)) = line.tags.iter().find(|(n, _)| n == k) else {
                    let message = if line.fields.iter().any(|(n, _)| n == k) {
                        "is a field in this line, but a key field must be a tag"
                    } else {
                        "missing tag (it is a key field of this stream)"
                    };
                    return Err(err(Some(k), message));
                };
                tags.push((k.as_str(), v.as_ref()));
            }
            match path {
                Path::Reference => Key::from_tags(tags).map(|k| self.interner.key(k)),
                Path::Fast => {
                    let values: Vec<&str> = tags.iter().map(|(_, v)| *v).collect();
                    self.interner.key_of(&self.key_fields, &values)
                }
            }
        }
        .map_err(|e| err(None, e.to_string()))?;

        let id = match id_field {
            None => None,
            Some(f) => {
                let tag = line.tags.iter().find(|(n, _)| n == f);
                let field = line.fields.iter().find(|(n, _)| n == f);
                match (tag, field) {
                    (Some(_), Some(_)) => {
                        return Err(err(
                            Some(f),
                            "is both a tag and a field; the event id must be one of them",
                        ));
                    }
                    (Some((_, v)), None) => Some(EventId(Arc::from(v.as_ref()))),
                    (None, Some((_, v))) => Some(EventId(Arc::from(v.text()))),
                    (None, None) => None,
                }
            }
        };

        let key_fields = &self.key_fields;
        let is_key = |n: &str| key_fields.is_empty() || key_fields.iter().any(|k| k == n);
        let mut fields = Vec::with_capacity(line.tags.len() + line.fields.len());
        for (n, v) in &line.tags {
            if is_key(n) || Some(n.as_ref()) == id_field {
                continue;
            }
            if line.fields.iter().any(|(f, _)| f == n) {
                return Err(err(
                    Some(n),
                    "is both a tag and a field (tags that are not key fields become fields)",
                ));
            }
            fields.push((self.interner.name(n), Value::Str(Arc::from(v.as_ref()))));
        }
        for (n, v) in &line.fields {
            if Some(n.as_ref()) == id_field {
                continue;
            }
            let value = match v {
                // Line protocol cannot write NaN or infinities; an exponent out of range
                // parses as an infinity.
                FieldValue::F64(x) => Value::float(*x).map_err(|_| {
                    err(
                        Some(n),
                        "the value is too large for a 64-bit float (it would be infinite)",
                    )
                })?,
                FieldValue::I64(i) => Value::I64(*i),
                FieldValue::U64(u) => Value::I64(i64::try_from(*u).map_err(|_| {
                    err(
                        Some(n),
                        format!(
                            "{u}u does not fit a 64-bit signed integer (reckon's only integer type)"
                        ),
                    )
                })?),
                FieldValue::Str(s) => Value::Str(Arc::from(s.as_ref())),
                FieldValue::Bool(b) => Value::Bool(*b),
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

/// Which decode path: the fast one, or the reference kept as its oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Fast,
    Reference,
}

/// One parsed line; names and strings borrow from the body unless they had escapes.
#[derive(Debug, Default, PartialEq)]
struct Line<'a> {
    measurement: Cow<'a, str>,
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    timestamp: Option<i64>,
}

/// A field value as line protocol types it.
#[derive(Debug, Clone, PartialEq)]
enum FieldValue<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Str(Cow<'a, str>),
    Bool(bool),
}

impl FieldValue<'_> {
    /// The value as text, for an event id.
    fn text(&self) -> String {
        match self {
            FieldValue::F64(x) => x.to_string(),
            FieldValue::I64(i) => i.to_string(),
            FieldValue::U64(u) => u.to_string(),
            FieldValue::Str(s) => s.to_string(),
            FieldValue::Bool(b) => b.to_string(),
        }
    }
}

/// The lines of a body that hold points, each with its 1-based line number, without
/// leading spaces and tabs and without trailing spaces, tabs and `\r`.
fn lines(body: &str) -> Lines<'_> {
    Lines {
        body,
        pos: 0,
        number: 1,
        one_pass: false,
    }
}

#[derive(Debug)]
struct Lines<'a> {
    body: &'a str,
    pos: usize,
    number: usize,
    /// Count the newlines inside a line while finding its end, instead of scanning
    /// the line again (the fast path).
    one_pass: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let b = self.body.as_bytes();
        while self.pos < b.len() {
            let (start, number) = (self.pos, self.number);
            let mut i = start;
            while i < b.len() && matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
            let content = i;
            let (end, inner) = if b.get(i) == Some(&b'#') {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                (end, 0)
            } else {
                line_end(b, i)
            };
            self.number += 1 + if self.one_pass {
                inner
            } else {
                b[start..end].iter().filter(|&&c| c == b'\n').count()
            };
            self.pos = end + 1;
            // `content` and `end` are at ASCII bytes (or the ends), so both are char
            // boundaries.
            let text = self
                .body
                .get(content..end)
                .unwrap_or_default()
                .trim_end_matches([' ', '\t', '\r']);
            if !text.is_empty() && !text.starts_with('#') {
                return Some((number, text));
            }
        }
        None
    }
}

/// Where the line starting at `i` ends: the first newline that is neither escaped nor
/// inside a string field, or the end. This is InfluxDB's `scanLine` (and the
/// `influxdb-line-protocol` crate's `split_lines`): a `"` opens or closes a string only
/// after the first space and where more `=` than `,` have been seen, which is exactly
/// where field values start.
///
/// Also returns how many newlines the line holds (escaped or quoted ones).
fn line_end(b: &[u8], mut i: usize) -> (usize, usize) {
    let (mut fields, mut quoted) = (false, false);
    let mut newlines = 0;
    let (mut equals, mut commas) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            // The escaped byte is skipped; if it starts a multi-byte character, the rest
            // of it is never a delimiter.
            b'\\' => {
                newlines += usize::from(b.get(i + 1) == Some(&b'\n'));
                i += 2;
                continue;
            }
            b' ' => fields = true,
            b'=' if fields && !quoted => equals += 1,
            b',' if fields && !quoted => commas += 1,
            b'"' if fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => return (i, newlines),
            b'\n' => newlines += 1,
            _ => {}
        }
        i += 1;
    }
    (b.len(), newlines)
}

/// The characters a backslash escapes in a measurement.
const MEASUREMENT_ESCAPES: &[u8] = b", \\";
/// The characters a backslash escapes in tag names, tag values and field names.
const NAME_ESCAPES: &[u8] = b",= \\";

const NO_FIELDS: &str =
    "no fields (a line is `measurement[,tag=value...] field=value[,field=value...] [timestamp]`)";

/// Parses one line (already trimmed) into `out`.
fn parse_line<'a>(s: &'a str, out: &mut Line<'a>) -> Result<(), DecodeError> {
    out.tags.clear();
    out.fields.clear();
    out.timestamp = None;
    let b = s.as_bytes();

    let (measurement, mut i) = token(s, 0, MEASUREMENT_ESCAPES, |c| {
        matches!(c, b' ' | b',' | b'\t' | b'\n' | 0)
    });
    if measurement.is_empty() {
        return Err(err(
            None,
            match b.first() {
                Some(&c) if c != b',' => {
                    format!("unexpected {} at the start of the line", describe(c))
                }
                _ => "missing measurement (the line starts with `,`)".into(),
            },
        ));
    }
    if measurement.ends_with('\\') {
        return Err(err(None, "the measurement ends with a backslash"));
    }
    match b.get(i) {
        None => return Err(err(None, NO_FIELDS)),
        Some(b',' | b' ') => {}
        Some(&c) => {
            return Err(err(
                None,
                format!("unexpected {} in the measurement", describe(c)),
            ));
        }
    }
    out.measurement = measurement;

    while b.get(i) == Some(&b',') {
        let (name, j) = token(s, i + 1, NAME_ESCAPES, |c| {
            matches!(c, b' ' | b'\t' | b'\n' | b'=' | b',')
        });
        if name.is_empty() {
            return Err(err(
                None,
                if b.get(j) == Some(&b',') {
                    "a tag has an empty name (an unescaped `,` where the name should start)"
                } else {
                    "a tag has an empty name"
                },
            ));
        }
        match b.get(j) {
            Some(b'=') => {}
            Some(b',') => {
                return Err(err(
                    Some(&name),
                    "tag without a value (an unescaped `,` follows the name; a comma in a name is written `\\,`)",
                ));
            }
            _ => {
                return Err(err(
                    Some(&name),
                    "tag without a value (expected `=` after the name)",
                ));
            }
        }
        if name.ends_with('\\') {
            return Err(err(Some(&name), "the tag name ends with a backslash"));
        }
        let (value, k) = token(s, j + 1, NAME_ESCAPES, |c| {
            matches!(c, b' ' | b'\t' | b'\n' | b'=' | b',')
        });
        if value.is_empty() {
            return Err(err(Some(&name), "the tag value is empty"));
        }
        match b.get(k) {
            None | Some(b',' | b' ') => {}
            Some(b'=') => {
                return Err(err(
                    Some(&name),
                    "unescaped `=` in the tag value (write `\\=`)",
                ));
            }
            Some(&c) => {
                return Err(err(
                    Some(&name),
                    format!("unexpected {} in the tag value", describe(c)),
                ));
            }
        }
        if value.ends_with('\\') {
            return Err(err(Some(&name), "the tag value ends with a backslash"));
        }
        if out.tags.iter().any(|(n, _)| *n == name) {
            return Err(err(Some(&name), "the tag is given twice"));
        }
        out.tags.push((name, value));
        i = k;
    }

    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if i >= b.len() {
        return Err(err(None, NO_FIELDS));
    }
    loop {
        let (name, j) = token(s, i, NAME_ESCAPES, |c| {
            matches!(c, b' ' | b'\t' | b'\n' | b'=' | b',')
        });
        if name.is_empty() {
            return Err(err(
                None,
                match b.get(j) {
                    Some(b',') => {
                        "a field has an empty name (an unescaped `,` where the name should start)"
                    }
                    None | Some(b' ') if i > 0 && b.get(i - 1) == Some(&b',') => {
                        "a `,` after the last field (remove it)"
                    }
                    _ => "a field has an empty name",
                },
            ));
        }
        match b.get(j) {
            Some(b'=') => {}
            Some(b',') => {
                return Err(err(
                    Some(&name),
                    "field without a value (an unescaped `,` follows the name; a comma in a name is written `\\,`)",
                ));
            }
            _ => {
                return Err(err(
                    Some(&name),
                    "field without a value (expected `=` after the name)",
                ));
            }
        }
        if name.ends_with('\\') {
            return Err(err(Some(&name), "the field name ends with a backslash"));
        }
        let (value, k) = field_value(s, j + 1).map_err(|m| err(Some(&name), m))?;
        if out.fields.iter().any(|(n, _)| *n == name) {
            return Err(err(Some(&name), "the field is given twice"));
        }
        out.fields.push((name, value));
        i = k;
        if b.get(i) == Some(&b',') {
            i += 1;
        } else {
            break;
        }
    }

    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if let Some(t) = s.get(i..).filter(|t| !t.is_empty()) {
        let digits = t.strip_prefix('-').unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err(
                None,
                format!(
                    "timestamp `{}` is not an integer (it is the number of ns, us, ms or s since the Unix epoch, per the precision)",
                    shown(t)
                ),
            ));
        }
        let t = t.parse::<i64>().map_err(|_| {
            err(
                None,
                format!(
                    "timestamp `{}` does not fit a 64-bit signed integer",
                    shown(t)
                ),
            )
        })?;
        out.timestamp = Some(t);
    }
    Ok(())
}

/// Reads a name (or tag value, or measurement) from `i` up to the first unescaped byte
/// for which `stop` is true; returns it unescaped and where it ends. A backslash before
/// a byte in `escapes` stands for that byte; before anything else it is kept, together
/// with the character after it, as InfluxDB does.
fn token<'a>(
    s: &'a str,
    mut i: usize,
    escapes: &[u8],
    stop: impl Fn(u8) -> bool,
) -> (Cow<'a, str>, usize) {
    let b = s.as_bytes();
    let (start, mut segment) = (i, i);
    let mut owned: Option<String> = None;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            match b.get(i + 1) {
                Some(&n) if escapes.contains(&n) => {
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(s.get(segment..i).unwrap_or_default());
                    o.push(char::from(n));
                    i += 2;
                    segment = i;
                }
                Some(_) => {
                    let n = s.get(i + 1..).and_then(|r| r.chars().next());
                    i += 1 + n.map_or(1, char::len_utf8);
                }
                None => i += 1,
            }
            continue;
        }
        if stop(c) {
            break;
        }
        i += 1;
    }
    // Every index above is at an ASCII byte, the end, or just after a whole character.
    let text = match owned {
        Some(mut o) => {
            o.push_str(s.get(segment..i).unwrap_or_default());
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s.get(start..i).unwrap_or_default()),
    };
    (text, i)
}

/// Reads the field value starting at `i`; returns it and where it ends (at a `,`, a
/// space or the end of the line).
fn field_value(s: &str, i: usize) -> Result<(FieldValue<'_>, usize), String> {
    let b = s.as_bytes();
    match b.get(i) {
        None | Some(b',' | b' ') => Err("missing value after `=`".into()),
        Some(b'"') => {
            let (text, end) = string_value(s, i + 1)?;
            match b.get(end) {
                None | Some(b',' | b' ') => Ok((FieldValue::Str(text), end)),
                Some(&c) => Err(format!(
                    "unexpected {} after the closing `\"` of the string value",
                    describe(c)
                )),
            }
        }
        Some(_) => {
            let end = b[i..]
                .iter()
                .position(|&c| c == b',' || c == b' ')
                .map_or(b.len(), |p| i + p);
            let text = s.get(i..end).unwrap_or_default();
            scalar(text).map(|v| (v, end))
        }
    }
}

/// Reads a string value whose opening quote is just before `i`; returns it and the
/// index after the closing quote. Only `\"` and `\\` are escapes.
fn string_value(s: &str, mut i: usize) -> Result<(Cow<'_, str>, usize), String> {
    let b = s.as_bytes();
    let (start, mut segment) = (i, i);
    let mut owned: Option<String> = None;
    loop {
        match b.get(i) {
            None => return Err("the string value has no closing `\"`".into()),
            Some(b'"') => break,
            Some(b'\\') => match b.get(i + 1) {
                Some(&n @ (b'"' | b'\\')) => {
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(s.get(segment..i).unwrap_or_default());
                    o.push(char::from(n));
                    i += 2;
                    segment = i;
                }
                _ => i += 1,
            },
            Some(_) => i += 1,
        }
    }
    let text = match owned {
        Some(mut o) => {
            o.push_str(s.get(segment..i).unwrap_or_default());
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s.get(start..i).unwrap_or_default()),
    };
    Ok((text, i + 1))
}

/// A value that is not a string: integer, unsigned, boolean or float.
fn scalar(t: &str) -> Result<FieldValue<'static>, String> {
    if let Some(digits) = t.strip_suffix('i')
        && is_integer(digits)
    {
        return digits
            .parse()
            .map(FieldValue::I64)
            .map_err(|_| format!("`{}` does not fit a 64-bit signed integer", shown(t)));
    }
    if let Some(digits) = t.strip_suffix('u')
        && is_digits(digits)
    {
        return digits
            .parse()
            .map(FieldValue::U64)
            .map_err(|_| format!("`{}` does not fit a 64-bit unsigned integer", shown(t)));
    }
    match t {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    if is_float(t) {
        // The grammar checked above is a subset of what `f64::from_str` accepts; an
        // out-of-range exponent gives an infinity, refused when the event is made.
        if let Ok(x) = t.parse::<f64>() {
            return Ok(FieldValue::F64(x));
        }
    }
    Err(format!(
        "`{}` is not a value (write floats as 1.5 or -2e-3, integers as 1i, unsigned integers as 1u, strings in double quotes, booleans as true or false)",
        shown(t)
    ))
}

fn is_digits(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())
}

/// `-?[0-9]+`
fn is_integer(t: &str) -> bool {
    is_digits(t.strip_prefix('-').unwrap_or(t))
}

/// `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`: the crate's (and InfluxDB 3's) float
/// grammar. InfluxDB 2 also takes `.5` and `1.`; no client writes those.
fn is_float(t: &str) -> bool {
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(p) => (&t[..p], Some(&t[p + 1..])),
        None => (t, None),
    };
    let mantissa = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => is_digits(int) && is_digits(frac),
        None => is_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| is_digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// A delimiter byte found where it does not belong, for messages.
fn describe(c: u8) -> String {
    match c {
        b'\t' => "tab".into(),
        b'\n' => "newline".into(),
        0 => "NUL character".into(),
        c => format!("`{}`", char::from(c)),
    }
}

/// Input text quoted in a message: control characters escaped, at most 64 characters.
fn shown(t: &str) -> String {
    let mut out = String::new();
    for (n, c) in t.chars().enumerate() {
        if n == 64 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: EventTime = EventTime(1_700_000_000_000_000_000);

    fn stream(extra: &str) -> StreamConfig {
        let cfg = reckon_runtime::Config::from_toml(&format!(
            "[[stream]]\nname = \"telegraf\"\n{extra}\n"
        ))
        .unwrap();
        cfg.streams[0].clone()
    }

    fn decode(extra: &str, body: &str) -> (Vec<Event>, Vec<DecodeError>) {
        LineProtocolDecoder::new(&stream(extra)).decode(body, Precision::Ns, NOW)
    }

    fn decode_ok(extra: &str, body: &str) -> Vec<Event> {
        let (events, errors) = decode(extra, body);
        assert!(errors.is_empty(), "{errors:#?}");
        events
    }

    fn str_value(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    fn parsed(s: &str) -> Line<'_> {
        let mut line = Line::default();
        parse_line(s, &mut line).unwrap();
        line
    }

    #[test]
    fn decodes_a_telegraf_line() {
        let events = decode_ok(
            "key_fields = [\"host\", \"cpu\"]",
            "cpu,cpu=cpu-total,host=server01,region=eu usage_idle=98.5,usage_user=1.25,n=3i,big=7u,ok=true,state=\"up\" 1700000000123456789\n",
        );
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(&*e.stream, "telegraf");
        assert_eq!(e.key.as_str(), "cpu=cpu-total,host=server01");
        assert_eq!(e.time, EventTime(1_700_000_000_123_456_789));
        assert_eq!(e.id, None);
        let fields: Vec<(&str, &Value)> = e.fields.iter().map(|(n, v)| (&**n, v)).collect();
        assert_eq!(
            fields,
            vec![
                ("region", &str_value("eu")),
                ("usage_idle", &Value::F64(98.5)),
                ("usage_user", &Value::F64(1.25)),
                ("n", &Value::I64(3)),
                ("big", &Value::I64(7)),
                ("ok", &Value::Bool(true)),
                ("state", &str_value("up")),
            ]
        );
    }

    #[test]
    fn without_key_fields_all_tags_form_the_key() {
        let events = decode_ok("", "m,b=2,a=1 x=1\nm x=2\n");
        assert_eq!(events[0].key.as_str(), "a=1,b=2");
        assert_eq!(events[0].fields.len(), 1);
        assert_eq!(events[1].key, Key::empty());
    }

    #[test]
    fn tags_that_are_not_key_fields_become_string_fields() {
        let events = decode_ok("key_fields = [\"host\"]", "m,host=a,dc=x\\ 1,rack=7 v=1i");
        assert_eq!(events[0].key.as_str(), "host=a");
        assert_eq!(events[0].field("dc"), Some(&str_value("x 1")));
        // A tag value is text even when it looks like a number.
        assert_eq!(events[0].field("rack"), Some(&str_value("7")));
        assert_eq!(events[0].field("v"), Some(&Value::I64(1)));
    }

    #[test]
    fn escapes_in_measurement_tags_and_field_names() {
        let line =
            parsed(r#"my\ meas\,ure=ment,t\ a\,b\=c=v\ 1\,2\=3\\4,u=\x\é f\=x\ y\,z=1i,g\\h=2i"#);
        assert_eq!(line.measurement, "my meas,ure=ment");
        assert_eq!(
            line.tags,
            vec![
                (Cow::from("t a,b=c"), Cow::from("v 1,2=3\\4")),
                // Backslash before anything else is kept as it is.
                (Cow::from("u"), Cow::from(r"\x\é")),
            ]
        );
        assert_eq!(line.fields[0].0, "f=x y,z");
        assert_eq!(line.fields[1].0, "g\\h");
        // `\=` is not an escape in the measurement.
        assert_eq!(parsed(r"a\=b f=1").measurement, r"a\=b");
    }

    #[test]
    fn names_without_escapes_are_borrowed() {
        let line = parsed("m,t=v f=\"s\" 1");
        assert!(matches!(line.measurement, Cow::Borrowed(_)));
        assert!(matches!(line.tags[0].1, Cow::Borrowed(_)));
        assert!(matches!(
            line.fields[0],
            (Cow::Borrowed(_), FieldValue::Str(Cow::Borrowed(_)))
        ));
    }

    #[test]
    fn string_fields_unescape_quotes_and_backslashes_only() {
        let line = parsed(r#"m a="say \"hi\"",b="C:\\dir\\",c="a\b",d="",e="x,y=z w""#);
        let strings: Vec<(&str, &str)> = line
            .fields
            .iter()
            .map(|(n, v)| match v {
                FieldValue::Str(s) => (&**n, &**s),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            strings,
            vec![
                ("a", r#"say "hi""#),
                ("b", r"C:\dir\"),
                ("c", r"a\b"),
                ("d", ""),
                ("e", "x,y=z w"),
            ]
        );
    }

    #[test]
    fn value_types() {
        let events = decode_ok(
            "",
            "m a=1,b=-1.5,c=1e3,d=1.5E-3,e=-2e+2,f=1.0E20,g=-0,h=0.1\n\
             m i=-9223372036854775808i,j=9223372036854775807u,k=0u,l=\"s\"\n\
             m b1=t,b2=T,b3=true,b4=True,b5=TRUE,b6=f,b7=F,b8=false,b9=False,b10=FALSE\n",
        );
        let f = |i: usize, n: &str| events[i].field(n).cloned().unwrap();
        assert_eq!(f(0, "a"), Value::F64(1.0));
        assert_eq!(f(0, "b"), Value::F64(-1.5));
        assert_eq!(f(0, "c"), Value::F64(1000.0));
        assert_eq!(f(0, "d"), Value::F64(0.0015));
        assert_eq!(f(0, "e"), Value::F64(-200.0));
        assert_eq!(f(0, "f"), Value::F64(1e20));
        assert_eq!(f(0, "g"), Value::F64(0.0));
        assert_eq!(f(0, "h"), Value::F64(0.1));
        assert_eq!(f(1, "i"), Value::I64(i64::MIN));
        assert_eq!(f(1, "j"), Value::I64(i64::MAX));
        assert_eq!(f(1, "k"), Value::I64(0));
        assert_eq!(f(1, "l"), str_value("s"));
        for (n, want) in (1..=10).map(|n| (format!("b{n}"), n <= 5)) {
            assert_eq!(f(2, &n), Value::Bool(want), "{n}");
        }
    }

    #[test]
    fn comments_blank_lines_crlf_and_surrounding_whitespace() {
        let body = "# written by a test\r\n\
                    \r\n\
                    m,k=a f=1i 10 \t\r\n\
                    \t m,k=b f=2i\r\n\
                    \x20  # a comment with an \"unclosed=quote\r\n\
                    m,k=c f=3i   \n\
                    \n\
                    bad\r\n";
        let (events, errors) = decode("", body);
        let got: Vec<(&str, EventTime)> = events.iter().map(|e| (e.key.as_str(), e.time)).collect();
        assert_eq!(
            got,
            vec![("k=a", EventTime(10)), ("k=b", NOW), ("k=c", NOW)]
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(8));
        assert!(decode("", "").0.is_empty());
        assert!(decode("", "\n\r\n# only comments\n").1.is_empty());
    }

    #[test]
    fn string_fields_may_span_lines_and_lines_are_numbered_by_where_they_start() {
        let body =
            "m s=\"one\ntwo\",t=\"a \\\"quoted\\\"\n=,\" 5\nm x=oops\r\nm s=\"3\r\n4\"\nm y=oops\n";
        let (events, errors) = decode("", body);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].field("s"), Some(&str_value("one\ntwo")));
        assert_eq!(events[0].field("t"), Some(&str_value("a \"quoted\"\n=,")));
        assert_eq!(events[0].time, EventTime(5));
        assert_eq!(events[1].field("s"), Some(&str_value("3\r\n4")));
        let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(4), Some(7)]);
    }

    #[test]
    fn an_escaped_newline_joins_lines_as_in_influxdb() {
        let (events, errors) = decode("", "m,t=a\\\nb f=1\nm f=2\n");
        assert_eq!(events.len(), 2, "{errors:?}");
        assert_eq!(
            events[0].key.tags(),
            vec![("t".to_string(), "a\\\nb".to_string())]
        );
    }

    #[test]
    fn precision_scales_timestamps_and_overflow_is_an_error() {
        let config = stream("");
        for (p, want) in [
            (Precision::Ns, 1_500),
            (Precision::Us, 1_500_000),
            (Precision::Ms, 1_500_000_000),
            (Precision::S, 1_500_000_000_000),
        ] {
            let (events, errors) =
                LineProtocolDecoder::new(&config).decode("m f=1 1500\nm f=1 -1500\n", p, NOW);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(events[0].time, EventTime(want), "{p}");
            assert_eq!(events[1].time, EventTime(-want), "{p}");
        }
        let (events, errors) = LineProtocolDecoder::new(&config).decode(
            "m f=1 9300000000\nm f=1\n",
            Precision::S,
            NOW,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].time, NOW);
        assert_eq!(
            errors[0].to_string(),
            "line 1: timestamp 9300000000 (precision s) is outside the supported range (years 1678 to 2262)"
        );
    }

    #[test]
    fn precision_parameter() {
        for (s, p) in [
            ("", Precision::Ns),
            ("ns", Precision::Ns),
            ("n", Precision::Ns),
            ("us", Precision::Us),
            ("u", Precision::Us),
            ("ms", Precision::Ms),
            ("s", Precision::S),
        ] {
            assert_eq!(Precision::parse(s), Ok(p), "{s}");
            assert_eq!(s.parse::<Precision>(), Ok(p), "{s}");
        }
        assert_eq!(Precision::default(), Precision::Ns);
        assert_eq!(
            Precision::parse("h").unwrap_err().to_string(),
            "unknown precision `h`; use ns, us, ms or s"
        );
    }

    #[test]
    fn the_id_comes_from_a_tag_or_a_field() {
        let events = decode_ok(
            "key_fields = [\"host\"]\nid_field = \"id\"",
            "m,host=a,id=x1 v=1\nm,host=a v=1,id=\"x2\"\nm,host=a v=1,id=3i\nm,host=a v=1\n",
        );
        let ids: Vec<Option<&str>> = events
            .iter()
            .map(|e| e.id.as_ref().map(|i| &*i.0))
            .collect();
        assert_eq!(ids, vec![Some("x1"), Some("x2"), Some("3"), None]);
        // The id is not kept as a field too.
        assert!(events.iter().all(|e| e.field("id").is_none()));
        // Nor is it part of the key when all tags form the key.
        let events = decode_ok("id_field = \"id\"", "m,host=a,id=x1 v=1\n");
        assert_eq!(events[0].key.as_str(), "host=a");
        assert_eq!(events[0].id, Some(EventId(Arc::from("x1"))));
    }

    #[test]
    fn keys_and_names_are_interned() {
        let events = decode_ok(
            "key_fields = [\"host\"]",
            "m,host=a,dc=x v=1\nm,dc=x,host=a v=2\n",
        );
        assert!(events[0].key.ptr_eq(&events[1].key));
        for i in 0..2 {
            assert!(Arc::ptr_eq(&events[0].fields[i].0, &events[1].fields[i].0));
        }
    }

    #[test]
    fn bad_lines_are_named_and_good_lines_kept() {
        let input = [
            "cpu,host=a usage=1",
            "cpu usage=1",
            "cpu usage=1,host=\"a\"",
            ",host=a usage=1",
            "cpu,host=a",
            "cpu,host=a   ",
            "cpu,host usage=1",
            "cpu,host=a,b=c=d usage=1",
            "cpu,host=a,host=b usage=1",
            "cpu,host=a usage=1,usage=2",
            "cpu,host=a usage=abc",
            "cpu,host=a usage=",
            "cpu,host=a n=99999999999999999999i",
            "cpu,host=a n=9223372036854775808u",
            "cpu,host=a x=1e400",
            "cpu,host=a x=1 12.5",
            "cpu,host=a x=1 99999999999999999999",
            "cpu,host=a,site=x x=1,site=2i",
            "cpu,host=a,id=1 x=1,id=\"2\"",
            "cpu,host=a\\ x=1",
            "cpu,host=a\\\\ x=1",
            "cpu,host=a x=1,",
            "cpu,host=a x=1i,y",
            "cpu,host=a a,b=1",
            "cpu\tx=1",
            "cpu,host=a x=t1",
            "cpu,host=a x=\"s\"y",
            "cpu,host=a x=.5",
            "cpu,host=a,=b x=1",
            "cpu,host= x=1",
            "cpu,host=a x=1 12 13",
            "cpu,host=a\tx=1",
            "cpu,host=a x=1,y=2i",
            // Last: an unclosed string runs on to the next `"`, as in InfluxDB.
            "cpu,host=a usage=\"open",
        ]
        .join("\n");
        let (events, errors) = decode("key_fields = [\"host\"]\nid_field = \"id\"", &input);
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(events.len(), 2, "{msgs:#?}");
        let want = [
            "line 2: field `host`: missing tag (it is a key field of this stream)",
            "line 3: field `host`: is a field in this line, but a key field must be a tag",
            "line 4: missing measurement (the line starts with `,`)",
            "line 5: no fields (a line is `measurement[,tag=value...] field=value[,field=value...] [timestamp]`)",
            "line 6: no fields",
            "line 7: field `host`: tag without a value (expected `=` after the name)",
            "line 8: field `b`: unescaped `=` in the tag value (write `\\=`)",
            "line 9: field `host`: the tag is given twice",
            "line 10: field `usage`: the field is given twice",
            "line 11: field `usage`: `abc` is not a value (write floats as 1.5 or -2e-3, integers as 1i, unsigned integers as 1u, strings in double quotes, booleans as true or false)",
            "line 12: field `usage`: missing value after `=`",
            "line 13: field `n`: `99999999999999999999i` does not fit a 64-bit signed integer",
            "line 14: field `n`: 9223372036854775808u does not fit a 64-bit signed integer (reckon's only integer type)",
            "line 15: field `x`: the value is too large for a 64-bit float (it would be infinite)",
            "line 16: timestamp `12.5` is not an integer (it is the number of ns, us, ms or s since the Unix epoch, per the precision)",
            "line 17: timestamp `99999999999999999999` does not fit a 64-bit signed integer",
            "line 18: field `site`: is both a tag and a field (tags that are not key fields become fields)",
            "line 19: field `id`: is both a tag and a field; the event id must be one of them",
            "line 20: field `host`: unescaped `=` in the tag value",
            "line 21: field `host`: the tag value ends with a backslash",
            "line 22: a `,` after the last field (remove it)",
            "line 23: field `y`: field without a value (expected `=` after the name)",
            "line 24: field `a`: field without a value (an unescaped `,` follows the name; a comma in a name is written `\\,`)",
            "line 25: unexpected tab in the measurement",
            "line 26: field `x`: `t1` is not a value",
            "line 27: field `x`: unexpected `y` after the closing `\"` of the string value",
            "line 28: field `x`: `.5` is not a value",
            "line 29: a tag has an empty name",
            "line 30: field `host`: the tag value is empty",
            "line 31: timestamp `12 13` is not an integer",
            "line 32: field `host`: unexpected tab in the tag value",
            "line 34: field `usage`: the string value has no closing `\"`",
        ];
        assert_eq!(msgs.len(), want.len(), "{msgs:#?}");
        for (m, w) in msgs.iter().zip(want) {
            assert!(m.starts_with(w), "`{m}` should start with `{w}`");
        }
    }

    #[test]
    fn messages_quote_input_safely() {
        let long = "x".repeat(100);
        let (_, errors) = decode("", &format!("m f={long}\u{7}"));
        let m = errors[0].to_string();
        assert!(m.contains(&format!("`{}…`", "x".repeat(64))), "{m}");
        let (_, errors) = decode("", "m f=a\u{7}b");
        assert!(
            errors[0].to_string().contains("`a\\u{7}b`"),
            "{}",
            errors[0]
        );
    }

    /// Property tests: generated points round-trip through an encoder written here,
    /// and the `influxdb-line-protocol` crate is the oracle for the grammar.
    mod props {
        use super::*;
        use influxdb_line_protocol::{FieldValue as Oracle, ParsedLine};
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Gen {
            /// A float and how to write it (0: `1.5`, 1: `1.5e0`, 2: `1.5E+0`).
            F64(f64, u8),
            I64(i64),
            U64(u64),
            Str(String),
            /// A boolean and which of its five spellings to use.
            Bool(bool, usize),
        }

        #[derive(Debug, Clone)]
        struct Point {
            measurement: String,
            /// The first tag is always `k`.
            tags: Vec<(String, String)>,
            fields: Vec<(String, Gen)>,
            timestamp: Option<i64>,
        }

        /// Text full of what line protocol escapes. Names and tag values may not end
        /// with a backslash, nor hold tabs or newlines (InfluxDB cannot represent them).
        fn text() -> impl Strategy<Value = String> {
            "[a-c ,=\\\\\"é#]{1,6}".prop_map(|mut s| {
                if s.ends_with('\\') {
                    s.push('x');
                }
                s
            })
        }

        fn value() -> impl Strategy<Value = Gen> {
            prop_oneof![
                (
                    any::<f64>().prop_filter("finite", |x| x.is_finite()),
                    0u8..3
                )
                    .prop_map(|(x, f)| Gen::F64(x, f)),
                any::<i64>().prop_map(Gen::I64),
                (0..=i64::MAX as u64).prop_map(Gen::U64),
                "[a-c ,=\\\\\"é#\t\n\r]{0,6}".prop_map(Gen::Str),
                (any::<bool>(), 0usize..5).prop_map(|(b, n)| Gen::Bool(b, n)),
            ]
        }

        fn point() -> impl Strategy<Value = Point> {
            (
                text().prop_map(|m| {
                    if m.starts_with('#') {
                        format!("m{m}")
                    } else {
                        m
                    }
                }),
                text(),
                proptest::collection::vec((text(), text()), 0..3),
                proptest::collection::vec((text(), value()), 1..4),
                proptest::option::of(-9_000_000_000i64..9_000_000_000),
            )
                .prop_map(|(measurement, k, more_tags, more_fields, timestamp)| {
                    let mut tags = vec![("k".to_string(), k)];
                    for (n, v) in more_tags {
                        if tags.iter().all(|(t, _)| *t != n) {
                            tags.push((n, v));
                        }
                    }
                    let mut fields: Vec<(String, Gen)> = Vec::new();
                    for (n, v) in more_fields {
                        if tags
                            .iter()
                            .chain(&fields_names(&fields))
                            .all(|(t, _)| *t != n)
                        {
                            fields.push((n, v));
                        }
                    }
                    Point {
                        measurement,
                        tags,
                        fields,
                        timestamp,
                    }
                })
                .prop_filter("a field survives de-duplication", |p| !p.fields.is_empty())
        }

        fn fields_names(fields: &[(String, Gen)]) -> Vec<(String, String)> {
            fields
                .iter()
                .map(|(n, _)| (n.clone(), String::new()))
                .collect()
        }

        fn escape(s: &str, special: &[char]) -> String {
            let mut out = String::new();
            for c in s.chars() {
                if c == '\\' || special.contains(&c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }

        const BOOLS: [[&str; 5]; 2] = [
            ["f", "F", "false", "False", "FALSE"],
            ["t", "T", "true", "True", "TRUE"],
        ];

        fn encode(p: &Point) -> String {
            let mut s = escape(&p.measurement, &[',', ' ']);
            for (k, v) in &p.tags {
                s += &format!(
                    ",{}={}",
                    escape(k, &[',', '=', ' ']),
                    escape(v, &[',', '=', ' '])
                );
            }
            for (i, (k, v)) in p.fields.iter().enumerate() {
                s.push(if i == 0 { ' ' } else { ',' });
                s += &escape(k, &[',', '=', ' ']);
                s.push('=');
                s += &match v {
                    Gen::F64(x, 0) => format!("{x}"),
                    Gen::F64(x, 1) => format!("{x:e}"),
                    Gen::F64(x, _) => {
                        let e = format!("{x:E}");
                        if e.contains("E-") {
                            e
                        } else {
                            e.replace('E', "E+")
                        }
                    }
                    Gen::I64(i) => format!("{i}i"),
                    Gen::U64(u) => format!("{u}u"),
                    Gen::Str(t) => format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")),
                    Gen::Bool(b, n) => BOOLS[usize::from(*b)][*n].to_string(),
                };
            }
            if let Some(t) = p.timestamp {
                s += &format!(" {t}");
            }
            s
        }

        fn expected_value(v: &Gen) -> Value {
            match v {
                Gen::F64(x, _) => Value::float(*x).unwrap(),
                Gen::I64(i) => Value::I64(*i),
                Gen::U64(u) => Value::I64(i64::try_from(*u).unwrap()),
                Gen::Str(s) => str_value(s),
                Gen::Bool(b, _) => Value::Bool(*b),
            }
        }

        /// A parsed line in a form both parsers can be compared in.
        type Plain = (
            String,
            Vec<(String, String)>,
            Vec<(String, String)>,
            Option<i64>,
        );

        fn plain_ours(l: &Line<'_>) -> Plain {
            (
                l.measurement.to_string(),
                l.tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                l.fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            FieldValue::F64(x) => format!("f{:x}", x.to_bits()),
                            FieldValue::I64(i) => format!("i{i}"),
                            FieldValue::U64(u) => format!("u{u}"),
                            FieldValue::Str(s) => format!("s{s}"),
                            FieldValue::Bool(b) => format!("b{b}"),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
                l.timestamp,
            )
        }

        fn plain_oracle(l: &ParsedLine<'_>) -> Plain {
            (
                l.series.measurement.to_string(),
                l.series
                    .tag_set
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                l.field_set
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Oracle::F64(x) => format!("f{:x}", x.to_bits()),
                            Oracle::I64(i) => format!("i{i}"),
                            Oracle::U64(u) => format!("u{u}"),
                            Oracle::String(s) => format!("s{s}"),
                            Oracle::Boolean(b) => format!("b{b}"),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
                l.timestamp,
            )
        }

        fn plain_point(p: &Point) -> Plain {
            (
                p.measurement.clone(),
                p.tags.clone(),
                p.fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Gen::F64(x, _) => format!("f{:x}", x.to_bits()),
                            Gen::I64(i) => format!("i{i}"),
                            Gen::U64(u) => format!("u{u}"),
                            Gen::Str(s) => format!("s{s}"),
                            Gen::Bool(b, _) => format!("b{b}"),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
                p.timestamp,
            )
        }

        /// Pieces of line protocol, valid and not.
        const PIECES: &[&str] = &[
            "m",
            "cpu",
            "x",
            "é",
            ",",
            "=",
            " ",
            "  ",
            "\"",
            "\\",
            "#",
            "\t",
            "\r",
            "\0",
            "t",
            "1",
            "-",
            ".",
            "e",
            "E",
            "+",
            "i",
            "u",
            "TRUE",
            "1.5",
            "12",
            "a=1",
            "b=\"s,=\\\" \"",
            ",t=v",
            " 123",
            "\\ ",
            "\\,",
            "\\=",
            "\\\\",
            "\\\"",
            "f=1e5",
            "g=-3i",
            "h=7u",
        ];

        fn pieces(n: usize) -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(PIECES), 0..n)
                .prop_map(|v| v.concat())
        }

        // The parts of a line: mostly valid ones, and a few that are not.
        const MEASUREMENTS: (&[&str], &[&str]) = (
            &[
                "m", "cpu", "a\\ b", "x\\,y", "é", "m=1", "\\\\m", "\"q", "a\\=b",
            ],
            &["", "m\\", "#m", "\0"],
        );
        const NAMES: (&[&str], &[&str]) = (
            &[
                "t", "host", "a\\ b", "a\\=b", "a\\,b", "\\\\x", "v\"", "é", "a\\xb", "u",
            ],
            &["", "a=b", "a,b", "x\\", "x\\\\", "\\", "t"],
        );
        const VALUES: (&[&str], &[&str]) = (
            &[
                "1",
                "-1.5",
                "1e5",
                "1.5E-3",
                "-2e+2",
                "1i",
                "-3i",
                "7u",
                "t",
                "TRUE",
                "False",
                "\"s\"",
                "\"a\\\"b\\\\\"",
                "\"x,y=z w\"",
                "\"\"",
                "1e400",
                "\"a\\b\"",
            ],
            &[
                "-1u",
                "18446744073709551616u",
                "99999999999999999999i",
                "Trux",
                "\"open",
                "\"a\"b",
                "1.",
                ".5",
                "abc",
                "",
                "-",
                "1.5i",
            ],
        );
        const TIMESTAMPS: (&[&str], &[&str]) = (
            &["", "", " 123", " -5", "  99", " 123 "],
            &[" 1.5", " x", " 99999999999999999999", "\t1", " 1 2"],
        );

        fn pick(
            parts: (&'static [&'static str], &'static [&'static str]),
        ) -> BoxedStrategy<&'static str> {
            use proptest::sample::select;
            prop_oneof![12 => select(parts.0), 1 => select(parts.1)].boxed()
        }

        /// Lines built from the parts of a line, mostly valid.
        fn structured() -> impl Strategy<Value = String> {
            let tag = (pick(NAMES), pick(NAMES)).prop_map(|(k, v)| format!(",{k}={v}"));
            let field = (pick(NAMES), pick(VALUES)).prop_map(|(k, v)| format!("{k}={v}"));
            (
                pick(MEASUREMENTS),
                proptest::collection::vec(tag, 0..3),
                pick((&[" ", "  "], &["\t", ""])),
                proptest::collection::vec(field, 1..4),
                pick((&[","], &[", ", ",,"])),
                pick(TIMESTAMPS),
                pick((&["", " "], &["\t", "\r", " \r"])),
            )
                .prop_map(|(m, tags, sep, fields, comma, ts, end)| {
                    format!("{m}{}{sep}{}{ts}{end}", tags.concat(), fields.join(comma))
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Points written as clients write them (plus CRLF, trailing whitespace,
            /// comments and blank lines) decode to what was written, under both key
            /// mappings; the oracle reads the clean text the same way; and line numbers
            /// stay right across all of it.
            #[test]
            fn generated_points_round_trip(
                points in proptest::collection::vec(point(), 1..6),
                dirt in proptest::collection::vec((any::<bool>(), 0usize..3, any::<bool>()), 6),
                precision in prop_oneof![
                    Just(Precision::Ns), Just(Precision::Us), Just(Precision::Ms), Just(Precision::S)
                ],
            ) {
                let clean: Vec<String> = points.iter().map(encode).collect();
                let mut body = String::new();
                for (line, &(crlf, junk, comment)) in clean.iter().zip(&dirt) {
                    let eol = if crlf { "\r\n" } else { "\n" };
                    if comment {
                        body += &format!("# a \"comment=1{eol}{eol}");
                    }
                    body += line;
                    body += [" ", " \t ", ""][junk];
                    body += eol;
                }
                body += "not line protocol\n";
                let lines_before_last = body.matches('\n').count();

                for key_fields in ["key_fields = [\"k\"]", ""] {
                    let (events, errors) = LineProtocolDecoder::new(&stream(key_fields))
                        .decode(&body, precision, NOW);
                    prop_assert_eq!(errors.len(), 1, "{:?}", errors);
                    prop_assert_eq!(errors[0].line, Some(lines_before_last));
                    prop_assert_eq!(events.len(), points.len());
                    for (e, p) in events.iter().zip(&points) {
                        let (key_tags, field_tags) = if key_fields.is_empty() {
                            (&p.tags[..], &p.tags[..0])
                        } else {
                            (&p.tags[..1], &p.tags[1..])
                        };
                        prop_assert_eq!(&e.key, &Key::from_tags(key_tags.iter().map(|(k, v)| (k, v))).unwrap());
                        let want_time = p.timestamp.map_or(NOW, |t| EventTime(t * precision.nanos()));
                        prop_assert_eq!(e.time, want_time);
                        let want: Vec<(String, Value)> = field_tags
                            .iter()
                            .map(|(k, v)| (k.clone(), str_value(v)))
                            .chain(p.fields.iter().map(|(k, v)| (k.clone(), expected_value(v))))
                            .collect();
                        let got: Vec<(String, Value)> =
                            e.fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                        prop_assert_eq!(got, want);
                    }
                }

                let oracle: Vec<Plain> = influxdb_line_protocol::parse_lines(&clean.join("\n"))
                    .map(|l| l.map(|l| plain_oracle(&l)).map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()
                    .map_err(TestCaseError::fail)?;
                let want: Vec<Plain> = points.iter().map(plain_point).collect();
                prop_assert_eq!(oracle, want);
            }

            /// On any single line, this parser and the crate agree, except where this
            /// one is stricter on purpose (see the module docs); trailing whitespace,
            /// which the crate refuses, is trimmed for it first.
            #[test]
            fn any_line_parses_as_the_oracle_parses_it(s in prop_oneof![3 => structured(), 1 => pieces(16)]) {
                let ours: Vec<(usize, &str)> = lines(&s).collect();
                let trimmed = s.trim_end_matches([' ', '\t', '\r']);
                let theirs: Vec<_> = influxdb_line_protocol::parse_lines(trimmed).collect();
                prop_assert_eq!(ours.len(), theirs.len(), "{:?} vs {:?}", ours, theirs.iter().map(|r| r.is_ok()).collect::<Vec<_>>());
                if let (Some((_, text)), Some(theirs)) = (ours.first(), theirs.first()) {
                    let mut line = Line::default();
                    match (parse_line(text, &mut line), theirs) {
                        (Ok(()), Ok(t)) => prop_assert_eq!(plain_ours(&line), plain_oracle(t)),
                        (Ok(()), Err(e)) => {
                            return Err(TestCaseError::fail(format!("we accept what the oracle refuses ({e}): {:?}", plain_ours(&line))));
                        }
                        (Err(e), Ok(_)) => prop_assert!(
                            ["unescaped `,`", "unescaped `=`", "given twice", "after the last field"]
                                .iter()
                                .any(|m| e.message.contains(m)),
                            "we refuse what the oracle accepts: {}", e
                        ),
                        (Err(_), Err(_)) => {}
                    }
                }
            }

            /// Lines are split where the crate (and InfluxDB) split them, whatever the
            /// quotes, escapes and newlines (for lines that do not start with
            /// whitespace or `#`, where this splitter is deliberately different).
            #[test]
            fn lines_split_as_the_oracle_splits_them(s in pieces(40), breaks in proptest::collection::vec(0usize..40, 0..6)) {
                let mut s: Vec<char> = s.chars().collect();
                for b in breaks {
                    s.insert(b.min(s.len()), '\n');
                }
                let mut text = String::new();
                let mut at_start = true;
                for c in s {
                    text.push(if at_start && matches!(c, ' ' | '\t' | '#') { 'x' } else { c });
                    at_start = c == '\n';
                }
                let ours: Vec<&str> = lines(&text).map(|(_, l)| l).collect();
                let theirs: Vec<&str> = influxdb_line_protocol::split_lines(&text)
                    .map(|l| l.trim_end_matches([' ', '\t', '\r']))
                    .filter(|l| !l.is_empty())
                    .collect();
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
