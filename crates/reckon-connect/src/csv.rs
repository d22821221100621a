//! CSV events, for `reckon replay FILE.csv`: the first row names the columns, every
//! other row is one event of the stream, read according to the stream's configuration
//! (key fields, time field and format, id field) like a JSON event.
//!
//! The decoder streams: it reads any [`Read`] one record at a time, so a file larger
//! than memory replays in constant space, and [`CsvDecoder::bytes_read`] says how far it
//! got (for a progress bar, or to resume). Quoting follows RFC 4180 as the `csv` crate
//! reads it: quoted cells may hold commas, quotes (doubled) and newlines; lines may end
//! in LF or CRLF; a UTF-8 byte order mark at the start is skipped; blank lines are
//! skipped. Column names are trimmed of surrounding whitespace.
//!
//! CSV has no types, so a cell's text decides its value: empty (or only whitespace):
//! the field is absent; an integer: `I64` (beyond 64 bits: `F64`, as JSON numbers
//! are); a number: `F64`, except NaN and infinities, which are errors; `true` or
//! `false` in any case: `Bool`; anything else: `Str`. Numbers and booleans may be
//! surrounded by spaces. The time column is read as the stream's `time_format` says,
//! as the JSON decoder reads a string or a number; key and id columns are text, as
//! written.
//!
//! A bad record gives an error with its 1-based line (where the record starts) and the
//! column at fault; the records after it are still read.
//!
//! Records end at `\n` only, and a `\r` before it is removed here: with the `csv`
//! crate's default terminator a CRLF record ends at its `\r`, its `\n` is read with the
//! next record, and that record's position is reported one line too early (and
//! [`CsvDecoder::bytes_read`] stops one byte short of the line's end). A record's line
//! is counted back from where it ends, minus the newlines inside its quoted cells,
//! which is right even after blank lines (the `csv` crate's own record position counts
//! them as part of the record). Old Mac files ending lines with a lone `\r` are not
//! read.

use crate::common::{DecodeError, Interner, time_from_text};
use reckon_core::{Event, EventId, Key, StreamName, Value};
use reckon_runtime::{StreamConfig, TimeFormat};
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Decodes a CSV file, header first, into events of one stream; iterate it for the
/// events (or an error per bad record).
///
/// ```
/// use reckon_connect::csv::CsvDecoder;
/// let config = reckon_runtime::Config::from_toml(
///     "[[stream]]\nname = \"water\"\nkey_fields = [\"site\"]\n",
/// )?;
/// let file = "time,site,level\n2024-01-01T00:00:00Z,a,4.5\n";
/// let mut events = CsvDecoder::new(&config.streams[0], file.as_bytes())?;
/// let event = events.next().transpose()?.expect("one event");
/// assert_eq!(event.key.as_str(), "site=a");
/// assert_eq!(event.field("level"), Some(&reckon_core::Value::F64(4.5)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CsvDecoder<R: Read> {
    reader: ::csv::Reader<EndAware<R>>,
    /// Set once the input has no more bytes.
    ended: Arc<AtomicBool>,
    record: ::csv::ByteRecord,
    stream: StreamName,
    time_format: TimeFormat,
    /// The header's column names.
    columns: Vec<String>,
    /// The time column.
    time: usize,
    /// The column of each key field, in the order of `key_fields`.
    keys: Vec<usize>,
    /// The id column, if the stream has an id field and the header names it.
    id: Option<usize>,
    /// The other columns, with their field names shared by all events.
    fields: Vec<(usize, Arc<str>)>,
    interner: Interner,
}

impl<R: Read> fmt::Debug for CsvDecoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsvDecoder")
            .field("stream", &self.stream)
            .field("columns", &self.columns)
            .field("bytes_read", &self.bytes_read())
            .finish_non_exhaustive()
    }
}

impl<R: Read> CsvDecoder<R> {
    /// A decoder for the stream `config` describes, reading `reader`; reads the header.
    /// The header must name the time column and every key field column; the id column
    /// is optional (events then have no id).
    pub fn new(config: &StreamConfig, reader: R) -> Result<Self, DecodeError> {
        let ended = Arc::new(AtomicBool::new(false));
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .terminator(::csv::Terminator::Any(b'\n'))
            .from_reader(EndAware {
                inner: reader,
                ended: ended.clone(),
            });
        let mut header = ::csv::ByteRecord::new();
        let line = read_record(&mut reader, &mut header, &ended).map_err(|e| csv_error(&e))?;
        let header_error = |field: Option<&str>, message: String| DecodeError {
            line,
            field: field.map(str::to_string),
            message,
        };
        if line.is_none() {
            return Err(header_error(
                None,
                "the input is empty; the first row must be the header (the column names)".into(),
            ));
        }
        let mut columns: Vec<String> = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = std::str::from_utf8(raw).map(str::trim).map_err(|_| {
                header_error(
                    None,
                    format!("column {} of the header is not valid UTF-8", i + 1),
                )
            })?;
            if name.is_empty() {
                return Err(header_error(
                    None,
                    format!("column {} of the header has no name", i + 1),
                ));
            }
            if columns.iter().any(|c| c == name) {
                return Err(header_error(
                    Some(name),
                    "the header names this column twice".into(),
                ));
            }
            columns.push(name.to_string());
        }
        let find = |name: &str| columns.iter().position(|c| c == name);
        let time = find(&config.time_field).ok_or_else(|| {
            header_error(
                Some(&config.time_field),
                "no such column in the header (every event needs its event time)".into(),
            )
        })?;
        let keys = config
            .key_fields
            .iter()
            .map(|k| {
                find(k).ok_or_else(|| {
                    header_error(
                        Some(k),
                        "no such column in the header (it is a key field of this stream)".into(),
                    )
                })
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let id = config.id_field.as_deref().and_then(find);
        let fields = columns
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != time && !keys.contains(&i) && Some(i) != id)
            .map(|(i, name)| (i, Arc::from(name.as_str())))
            .collect();
        Ok(CsvDecoder {
            reader,
            ended,
            record: ::csv::ByteRecord::new(),
            stream: Arc::from(config.name.as_str()),
            time_format: config.time_format,
            columns,
            time,
            keys,
            id,
            fields,
            interner: Interner::default(),
        })
    }

    /// How many bytes of the input have been read (header included) up to the end of
    /// the last record returned: a position for a progress bar, or to resume from.
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The event of the record just read, which starts at `line`.
    fn event(&mut self, line: Option<usize>) -> Result<Event, DecodeError> {
        let (record, columns) = (&self.record, &self.columns);
        let error = |column: Option<&str>, message: String| DecodeError {
            line,
            field: column.map(str::to_string),
            message,
        };
        if record.len() != columns.len() {
            return Err(error(
                None,
                format!(
                    "the record has {} cells but the header has {} columns",
                    record.len(),
                    columns.len()
                ),
            ));
        }
        // The text of a cell; `None` when it is empty or only whitespace.
        let cell = |i: usize| -> Result<Option<&str>, DecodeError> {
            let raw = record.get(i).unwrap_or_default();
            // The `\r` of a CRLF line end.
            let raw = match raw.strip_suffix(b"\r") {
                Some(r) if i + 1 == record.len() => r,
                _ => raw,
            };
            let text = std::str::from_utf8(raw).map_err(|e| {
                error(
                    columns.get(i).map(String::as_str),
                    format!(
                        "not valid UTF-8 (invalid byte at position {} of the cell)",
                        e.valid_up_to() + 1
                    ),
                )
            })?;
            Ok(Some(text).filter(|t| !t.trim().is_empty()))
        };
        let name = |i: usize| columns.get(i).map_or("", String::as_str);

        let time_text = cell(self.time)?.ok_or_else(|| {
            error(
                Some(name(self.time)),
                "empty (every event needs its event time)".into(),
            )
        })?;
        let time = time_from_text(time_text, self.time_format)
            .map_err(|m| error(Some(name(self.time)), m))?;

        let mut tags = Vec::with_capacity(self.keys.len());
        for &k in &self.keys {
            let value = cell(k)?.ok_or_else(|| {
                error(
                    Some(name(k)),
                    "empty (it is a key field of this stream)".into(),
                )
            })?;
            tags.push((name(k), value));
        }
        let key = Key::from_tags(tags).map_err(|e| error(None, e.to_string()))?;

        let id = match self.id {
            Some(i) => cell(i)?.map(|t| EventId(Arc::from(t))),
            None => None,
        };

        let mut fields = Vec::with_capacity(self.fields.len());
        for (i, field) in &self.fields {
            if let Some(text) = cell(*i)? {
                let value = typed(text).map_err(|m| error(Some(field), m))?;
                fields.push((field.clone(), value));
            }
        }

        Ok(Event {
            stream: self.stream.clone(),
            key: self.interner.key(key),
            time,
            id,
            fields,
        })
    }
}

impl<R: Read> Iterator for CsvDecoder<R> {
    type Item = Result<Event, DecodeError>;

    /// The next record's event, or why it could not be decoded. A read error of the
    /// input is returned once and ends the iteration.
    fn next(&mut self) -> Option<Result<Event, DecodeError>> {
        match read_record(&mut self.reader, &mut self.record, &self.ended) {
            Ok(None) => None,
            Ok(Some(line)) => Some(self.event(Some(line))),
            // After an I/O error the reader reports the end of the input: no loop of
            // the same error.
            Err(e) => Some(Err(csv_error(&e))),
        }
    }
}

/// The value a cell's text stands for (see the module docs).
fn typed(text: &str) -> Result<Value, String> {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Ok(Value::I64(i));
    }
    if let Ok(x) = t.parse::<f64>() {
        return Value::float(x).map_err(|_| {
            format!("`{t}` is not a finite number (NaN and infinities are not accepted)")
        });
    }
    if t.eq_ignore_ascii_case("true") {
        return Ok(Value::Bool(true));
    }
    if t.eq_ignore_ascii_case("false") {
        return Ok(Value::Bool(false));
    }
    Ok(Value::Str(Arc::from(text)))
}

/// Reads the next record that is not a blank line; returns the line where it starts,
/// or `None` at the end of the input.
fn read_record<R: Read>(
    reader: &mut ::csv::Reader<EndAware<R>>,
    record: &mut ::csv::ByteRecord,
    ended: &AtomicBool,
) -> Result<Option<usize>, ::csv::Error> {
    loop {
        let before = reader.position().line();
        if !reader.read_byte_record(record)? {
            return Ok(None);
        }
        // A blank line ending in CRLF (LF-only blank lines are skipped by `csv`).
        if record.len() == 1 && record.get(0) == Some(&b"\r"[..]) {
            continue;
        }
        // The reader's line is after the record's `\n`, unless the record ends the
        // input without one (then `csv` asked for more input and found none). The
        // newlines before that are the record's own (in quoted cells). Blank lines
        // before the record are between `before` and its start.
        let inside = record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
        let terminated = u64::from(!ended.load(Ordering::Relaxed));
        let line = before.max(reader.position().line().saturating_sub(inside + terminated));
        return Ok(Some(usize::try_from(line).unwrap_or(usize::MAX)));
    }
}

/// The input, telling when it has ended. `csv` reads ahead through a buffer, so a read
/// that finds nothing happens only once the parser has used up everything before it.
struct EndAware<R> {
    inner: R,
    ended: Arc<AtomicBool>,
}

impl<R: Read> Read for EndAware<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

fn line_of(position: Option<&::csv::Position>) -> Option<usize> {
    position.and_then(|p| usize::try_from(p.line()).ok())
}

/// A read error of the `csv` reader (the only kind left once records are read as bytes
/// and of any length).
fn csv_error(e: &::csv::Error) -> DecodeError {
    let line = line_of(e.position());
    let message = match e.kind() {
        ::csv::ErrorKind::Io(io) => format!("cannot read the input: {io}"),
        _ => e.to_string(),
    };
    DecodeError {
        line,
        field: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reckon_core::EventTime;

    fn stream(extra: &str) -> StreamConfig {
        let cfg = reckon_runtime::Config::from_toml(&format!(
            "[[stream]]\nname = \"water\"\nkey_fields = [\"site\"]\nid_field = \"id\"\n{extra}\n"
        ))
        .unwrap();
        cfg.streams[0].clone()
    }

    fn decode(extra: &str, input: &str) -> (Vec<Event>, Vec<DecodeError>) {
        let decoder = CsvDecoder::new(&stream(extra), input.as_bytes()).unwrap();
        let (mut events, mut errors) = (Vec::new(), Vec::new());
        for r in decoder {
            match r {
                Ok(e) => events.push(e),
                Err(e) => errors.push(e),
            }
        }
        (events, errors)
    }

    fn new_error(extra: &str, input: &[u8]) -> String {
        CsvDecoder::new(&stream(extra), input)
            .unwrap_err()
            .to_string()
    }

    fn str_value(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    #[test]
    fn decodes_typed_cells_keys_times_and_ids() {
        let input = "time,site,id,level,n,ok,note,gone\n\
                     2024-01-01T00:00:00.5Z,007,e1,4.25,3,TRUE,\"hello, \"\"world\"\"\nsecond line\",\n\
                     2024-01-01T00:00:01Z,007,,-1e3, -2 ,false,x,\n";
        let (events, errors) = decode("", input);
        assert!(errors.is_empty(), "{errors:?}");
        let e = &events[0];
        assert_eq!(&*e.stream, "water");
        // Key columns are text, as written.
        assert_eq!(e.key.as_str(), "site=007");
        assert_eq!(e.time, EventTime(1_704_067_200_500_000_000));
        assert_eq!(e.id, Some(EventId(Arc::from("e1"))));
        let fields: Vec<(&str, &Value)> = e.fields.iter().map(|(n, v)| (&**n, v)).collect();
        assert_eq!(
            fields,
            vec![
                ("level", &Value::F64(4.25)),
                ("n", &Value::I64(3)),
                ("ok", &Value::Bool(true)),
                ("note", &str_value("hello, \"world\"\nsecond line")),
            ]
        );
        let e = &events[1];
        assert_eq!(e.id, None);
        assert_eq!(e.field("level"), Some(&Value::F64(-1000.0)));
        assert_eq!(e.field("n"), Some(&Value::I64(-2)));
        assert_eq!(e.field("ok"), Some(&Value::Bool(false)));
    }

    #[test]
    fn cell_types() {
        for (text, want) in [
            ("12", Value::I64(12)),
            (" 12 ", Value::I64(12)),
            ("+7", Value::I64(7)),
            ("007", Value::I64(7)),
            ("-0", Value::I64(0)),
            ("99999999999999999999", Value::F64(1e20)),
            ("1.5", Value::F64(1.5)),
            ("-2e-3", Value::F64(-0.002)),
            (".5", Value::F64(0.5)),
            ("-0.0", Value::F64(0.0)),
            ("true", Value::Bool(true)),
            ("False", Value::Bool(false)),
            (" TRUE", Value::Bool(true)),
            ("yes", str_value("yes")),
            (" spaced ", str_value(" spaced ")),
            ("1,5", str_value("1,5")),
            ("12abc", str_value("12abc")),
        ] {
            assert_eq!(typed(text), Ok(want), "{text:?}");
        }
        for text in ["NaN", "inf", "-Infinity", "1e999"] {
            assert_eq!(
                typed(text),
                Err(format!(
                    "`{text}` is not a finite number (NaN and infinities are not accepted)"
                ))
            );
        }
    }

    #[test]
    fn unix_time_formats() {
        for (format, cell, want) in [
            ("unix_s", "1.5", 1_500_000_000),
            ("unix_ms", "1500", 1_500_000_000),
            ("unix_us", "1500000", 1_500_000_000),
            ("unix_ns", "1500000000", 1_500_000_000),
        ] {
            let (events, errors) = decode(
                &format!("time_format = \"{format}\""),
                &format!("time,site\n{cell},a\n"),
            );
            assert!(errors.is_empty(), "{format}: {errors:?}");
            assert_eq!(events[0].time, EventTime(want), "{format}");
        }
    }

    #[test]
    fn a_configured_time_field_names_the_time_column() {
        let (events, errors) = decode(
            "time_field = \"ts\"\ntime_format = \"unix_ms\"",
            "site,ts,time\na,5,not a time\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events[0].time, EventTime(5_000_000));
        assert_eq!(events[0].field("time"), Some(&str_value("not a time")));
    }

    #[test]
    fn bom_crlf_blank_lines_and_headers_with_spaces() {
        let input = "\u{feff}time , site,v\r\n1,a,1\r\n\r\n\n2,b,\"2\"\r\n3,c";
        let (events, errors) = decode("time_format = \"unix_s\"", input);
        let got: Vec<(&str, EventTime, Option<&Value>)> = events
            .iter()
            .map(|e| (e.key.as_str(), e.time, e.field("v")))
            .collect();
        assert_eq!(
            got,
            vec![
                ("site=a", EventTime(1_000_000_000), Some(&Value::I64(1))),
                ("site=b", EventTime(2_000_000_000), Some(&Value::I64(2))),
            ]
        );
        // Lines are counted right across CRLF and blank lines, up to a last record
        // without a line end.
        assert_eq!(
            errors[0].to_string(),
            "line 6: the record has 2 cells but the header has 3 columns"
        );
        let (_, errors) = decode("", "\n\r\ntime,site\r\n\r\nx,a\r\n");
        assert_eq!(errors[0].line, Some(5));
        assert!(
            CsvDecoder::new(&stream(""), &b"\n\ntime,x\n"[..])
                .unwrap_err()
                .to_string()
                .starts_with("line 3: field `site`")
        );
    }

    #[test]
    fn keys_are_interned_and_field_names_shared() {
        let (events, _) = decode(
            "",
            "time,site,v\n2024-01-01T00:00:00Z,a,1\n2024-01-01T00:00:01Z,a,2\n",
        );
        assert!(events[0].key.ptr_eq(&events[1].key));
        assert!(Arc::ptr_eq(&events[0].fields[0].0, &events[1].fields[0].0));
    }

    #[test]
    fn bytes_read_follows_the_records() {
        let input = "time,site\n1,a\n22,b\r\n333,\"c\nd\"\n";
        let mut d = CsvDecoder::new(&stream("time_format = \"unix_s\""), input.as_bytes()).unwrap();
        let mut seen = vec![d.bytes_read()];
        while let Some(r) = d.next() {
            r.unwrap();
            seen.push(d.bytes_read());
        }
        let ends: Vec<u64> = ["time,site\n", "1,a\n", "22,b\r\n", "333,\"c\nd\"\n"]
            .iter()
            .scan(0, |at, part| {
                *at += part.len() as u64;
                Some(*at)
            })
            .collect();
        assert_eq!(seen, ends);
        assert_eq!(
            format!("{d:?}"),
            "CsvDecoder { stream: \"water\", columns: [\"time\", \"site\"], bytes_read: 30, .. }"
        );
    }

    #[test]
    fn header_errors_name_the_column() {
        assert_eq!(
            new_error("", b"site,level\n"),
            "line 1: field `time`: no such column in the header (every event needs its event time)"
        );
        assert_eq!(
            new_error("", b"time,level\n"),
            "line 1: field `site`: no such column in the header (it is a key field of this stream)"
        );
        assert_eq!(
            new_error("", b""),
            "the input is empty; the first row must be the header (the column names)"
        );
        assert_eq!(
            new_error("", b"time,site,v,v\n"),
            "line 1: field `v`: the header names this column twice"
        );
        assert_eq!(
            new_error("", b"time,site,\n"),
            "line 1: column 3 of the header has no name"
        );
        assert_eq!(
            new_error("", b"time,site,\xff\n"),
            "line 1: column 3 of the header is not valid UTF-8"
        );
        // The id column is optional.
        assert!(CsvDecoder::new(&stream(""), &b"time,site\n"[..]).is_ok());
    }

    #[test]
    fn bad_records_are_named_and_good_records_kept() {
        let input = b"time,site,id,v\n\
            2024-01-01T00:00:00Z,a,1,1\n\
            2024-01-01T00:00:00Z,a,2,NaN\n\
            2024-01-01T00:00:00Z,a,3,\"multi\nline\"\n\
            yesterday,a,4,1\n\
            ,a,5,1\n\
            2024-01-01T00:00:00Z, ,6,1\n\
            2024-01-01T00:00:00Z,a,7\n\
            2024-01-01T00:00:00Z,a,8,1,extra\n\
            2024-01-01T00:00:00Z,a,9,\xff\n\
            9999-01-01T00:00:00Z,a,10,1\n\
            2024-01-01T00:00:00Z,a,11,inf\n\
            2024-01-01T00:00:00Z,a,12,2\n";
        let decoder = CsvDecoder::new(&stream(""), &input[..]).unwrap();
        let (mut events, mut msgs) = (Vec::new(), Vec::new());
        for r in decoder {
            match r {
                Ok(e) => events.push(e),
                Err(e) => msgs.push(e.to_string()),
            }
        }
        assert_eq!(events.len(), 3, "{msgs:#?}");
        let want = [
            "line 3: field `v`: `NaN` is not a finite number (NaN and infinities are not accepted)",
            "line 6: field `time`: `yesterday` is not an RFC 3339 timestamp",
            "line 7: field `time`: empty (every event needs its event time)",
            "line 8: field `site`: empty (it is a key field of this stream)",
            "line 9: the record has 3 cells but the header has 4 columns",
            "line 10: the record has 5 cells but the header has 4 columns",
            "line 11: field `v`: not valid UTF-8 (invalid byte at position 1 of the cell)",
            "line 12: field `time`: is outside the supported range (years 1678 to 2262)",
            "line 13: field `v`: `inf` is not a finite number",
        ];
        assert_eq!(msgs.len(), want.len(), "{msgs:#?}");
        for (m, w) in msgs.iter().zip(want) {
            assert!(m.starts_with(w), "`{m}` should start with `{w}`");
        }
    }

    #[test]
    fn unix_time_errors() {
        let (_, errors) = decode("time_format = \"unix_ms\"", "time,site\nnoon,a\n1e300,a\n");
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "line 2: field `time`: expected a number (milliseconds since the Unix epoch), got `noon`",
                "line 3: field `time`: 1e300 is outside the supported range (years 1678 to 2262)",
            ]
        );
    }

    /// A reader that fails after its data, as a broken disk or pipe would.
    struct Failing(&'static [u8]);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_is_reported_once_and_ends_the_input() {
        let d = CsvDecoder::new(
            &stream("time_format = \"unix_s\""),
            Failing(b"time,site\n1,a\n"),
        )
        .unwrap();
        let results: Vec<Result<Event, DecodeError>> = d.collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        let e = results[1].as_ref().unwrap_err();
        assert_eq!(e.message, "cannot read the input: disk on fire");
        let e = CsvDecoder::new(&stream(""), Failing(b"")).unwrap_err();
        assert_eq!(e.message, "cannot read the input: disk on fire");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Records written by the `csv` crate's writer (quoting what needs it,
            /// LF or CRLF) decode to what was written, and a bad record after them is
            /// reported on the line where it starts.
            #[test]
            fn written_records_round_trip_with_their_line_numbers(
                rows in proptest::collection::vec(
                    ("[a-c ,\"\r\n]{1,5}", "[a-c ,\"\r\n]{0,5}", any::<i64>(), any::<f64>().prop_filter("finite", |x| x.is_finite()), -1_000_000_000_000i64..1_000_000_000_000),
                    0..8,
                ),
                crlf in any::<bool>(),
                blank_lines in 0usize..3,
            ) {
                let mut w = ::csv::WriterBuilder::new()
                    .terminator(if crlf { ::csv::Terminator::CRLF } else { ::csv::Terminator::Any(b'\n') })
                    .from_writer(Vec::new());
                w.write_record(["time", "site", "note", "n", "x"]).unwrap();
                for (site, note, n, x, t) in &rows {
                    // Notes start with a letter so that they stay text.
                    w.write_record([t.to_string(), format!("s{site}"), format!("n{note}"), n.to_string(), format!("{x:?}")]).unwrap();
                }
                let mut input = String::from_utf8(w.into_inner().unwrap()).unwrap();
                input += &"\n".repeat(blank_lines);
                let bad_line = input.matches('\n').count() + 1;
                input += "1,bad";
                let (events, errors) = decode("time_format = \"unix_ms\"", &input);
                prop_assert_eq!(events.len(), rows.len());
                for (e, (site, note, n, x, t)) in events.iter().zip(&rows) {
                    prop_assert_eq!(e.key.tags(), vec![("site".to_string(), format!("s{site}"))]);
                    prop_assert_eq!(e.time, EventTime(t * 1_000_000));
                    prop_assert_eq!(e.field("note"), Some(&str_value(&format!("n{note}"))));
                    prop_assert_eq!(e.field("n"), Some(&Value::I64(*n)));
                    prop_assert_eq!(e.field("x"), Some(&Value::float(*x).unwrap()));
                }
                prop_assert_eq!(errors.len(), 1);
                prop_assert_eq!(errors[0].line, Some(bad_line));
            }
        }
    }
}
