//! Value encodings (postcard), as specified in `docs/storage.md`.
//!
//! Parts of a record that are already in its key (stream, series key, event time,
//! sequence number, window start, version) are not repeated in the value. Numbers are
//! postcard varints, and a float that is a short decimal (a reading like `4.217`) is
//! stored as a scale and an integer mantissa when that gives back exactly the same bits,
//! which halves the size of a typical reading.

use crate::colsets::{ColumnSets, Columns};
use crate::error::{Error, Result};
use reckon_core::{
    Checksum, EmissionKind, Event, EventId, EventTime, Key, PartitionId, ProcessingTime, Value,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A field value as stored. The variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(crate) enum StoredValue<'a> {
    /// Any finite float, as its 8 bytes.
    F64(f64),
    /// A float equal, bit for bit, to `mantissa / 10^scale` (scale 0..=9).
    Dec(u8, i64),
    /// An integer.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'a str),
}

/// Powers of ten, each exactly representable as an `f64`.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Mantissas are kept below 2^53 so that `mantissa as f64` is exact.
const MAX_MANTISSA: f64 = 9_007_199_254_740_992.0;

impl<'a> StoredValue<'a> {
    pub(crate) fn from_value(v: &'a Value) -> StoredValue<'a> {
        match v {
            Value::F64(x) => compact_f64(*x),
            Value::I64(i) => StoredValue::I64(*i),
            Value::Bool(b) => StoredValue::Bool(*b),
            Value::Str(s) => StoredValue::Str(s),
        }
    }

    pub(crate) fn to_value(&self) -> Result<Value> {
        Ok(match *self {
            StoredValue::F64(x) => Value::F64(x),
            StoredValue::Dec(scale, m) => {
                let Some(p) = POW10.get(usize::from(scale)) else {
                    return Err(Error::corrupt("value", format!("decimal scale {scale}")));
                };
                Value::F64(m as f64 / p)
            }
            StoredValue::I64(i) => Value::I64(i),
            StoredValue::Bool(b) => Value::Bool(b),
            StoredValue::Str(s) => Value::Str(Arc::from(s)),
        })
    }
}

/// The shortest exact decimal form of `x`, or its raw bits. Decoding computes
/// `mantissa as f64 / 10^scale`, one correctly rounded IEEE division, so it gives the
/// same bits on every machine; the form is only chosen when that division gives back
/// exactly `x`.
fn compact_f64<'a>(x: f64) -> StoredValue<'a> {
    for (scale, p) in POW10.iter().enumerate() {
        let m = (x * p).round();
        if m.abs() >= MAX_MANTISSA {
            break;
        }
        // Check with exactly the decoder's computation (which, e.g., turns -0.0 into 0.0).
        let mantissa = m as i64;
        if (mantissa as f64 / p).to_bits() == x.to_bits() {
            return StoredValue::Dec(scale as u8, mantissa);
        }
    }
    StoredValue::F64(x)
}

/// Field names and other small strings seen while decoding many rows: rows of one
/// source share their names, so they share one `Arc` after decoding too.
#[derive(Debug, Default)]
pub(crate) struct Interner(Vec<Arc<str>>);

impl Interner {
    pub(crate) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.iter().find(|a| a.as_ref() == s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.0.len() < 64 {
            self.0.push(a.clone());
        }
        a
    }
}

/// The value of a format-2 raw-log row (one event), read by the migration to format 3
/// (and written by the tests that check that form).
#[derive(Serialize, Deserialize, Debug)]
struct RawValue<'a> {
    partition: u32,
    /// `ingested_at - time` (wrapping): small for on-time events.
    ingest_delta: i64,
    #[serde(borrow)]
    id: Option<&'a str>,
    #[serde(borrow)]
    fields: Vec<(&'a str, StoredValue<'a>)>,
}

#[cfg(test)]
pub(crate) fn encode_raw(
    partition: PartitionId,
    ingested_at: ProcessingTime,
    event: &Event,
    out: &mut Vec<u8>,
) -> Result<()> {
    let v = RawValue {
        partition: partition.0,
        ingest_delta: ingested_at.0.wrapping_sub(event.time.0),
        id: event.id.as_ref().map(|id| &*id.0),
        fields: event
            .fields
            .iter()
            .map(|(n, v)| (&**n, StoredValue::from_value(v)))
            .collect(),
    };
    extend(out, &v, "raw event")
}

/// A decoded raw-log row.
pub(crate) struct DecodedRaw {
    pub(crate) partition: PartitionId,
    pub(crate) ingested_at: ProcessingTime,
    pub(crate) event: Event,
}

pub(crate) fn decode_raw(
    stream: &Arc<str>,
    key: &Key,
    time: i64,
    bytes: &[u8],
    names: &mut Interner,
) -> Result<DecodedRaw> {
    let v: RawValue<'_> =
        postcard::from_bytes(bytes).map_err(|e| Error::corrupt("raw event value", e))?;
    let mut fields = Vec::with_capacity(v.fields.len());
    for (n, val) in &v.fields {
        fields.push((names.get(n), val.to_value()?));
    }
    Ok(DecodedRaw {
        partition: PartitionId(v.partition),
        ingested_at: ProcessingTime(time.wrapping_add(v.ingest_delta)),
        event: Event {
            stream: stream.clone(),
            key: key.clone(),
            time: EventTime(time),
            id: v.id.map(|s| EventId(Arc::from(s))),
            fields,
        },
    })
}

/// A key from its canonical string. `Key` has no public constructor from the canonical
/// form, but its serde form is exactly that string (a newtype), so postcard builds it.
pub(crate) fn key_from_canonical(s: &str) -> Result<Key> {
    let bytes = postcard::to_allocvec(s).map_err(|e| Error::corrupt("series key", e))?;
    postcard::from_bytes(&bytes).map_err(|e| Error::corrupt("series key", e))
}

/// The fields every results row starts with, in every layout (format 2 on). Since
/// format 4 the writer leaves `columns` empty and names the row's column set after
/// `states` instead ([`decode_value`]); older rows carry the names here.
#[derive(Deserialize, Debug)]
struct EmissionHead<'a> {
    end: i64,
    kind: EmissionKind,
    #[serde(borrow)]
    columns: Vec<&'a str>,
    #[serde(borrow)]
    values: Vec<Option<StoredValue<'a>>>,
    count: u64,
    checksum: Checksum,
    emitted_at: i64,
    watermark: i64,
}

/// A results row as written: the head and the aggregate states (for rollups; came
/// after format 2's first rows). Since format 4 the id of the pipeline's column set
/// follows it (a plain varint, appended by [`encode_emission`]); without it the names
/// are inline in `columns`, the format-3 layout, which the test hook
/// [`encode_emission_inline`] still writes.
#[derive(Serialize, Debug)]
struct EmissionOut<'a> {
    end: i64,
    kind: EmissionKind,
    columns: &'a [&'a str],
    values: Vec<Option<StoredValue<'a>>>,
    count: u64,
    checksum: Checksum,
    emitted_at: i64,
    watermark: i64,
    states: Option<&'a [reckon_core::AggState]>,
}

/// Where a row's column names are.
#[derive(Debug, PartialEq)]
enum RowColumns<'a> {
    /// In the row (formats 2 and 3).
    Inline(Vec<&'a str>),
    /// In the pipeline's column set with this id (format 4).
    Set(u32),
}

/// A decoded results row.
#[derive(Debug)]
struct DecodedValue<'a> {
    head: EmissionHead<'a>,
    states: Option<Vec<reckon_core::AggState>>,
    columns: RowColumns<'a>,
}

/// Decodes the three layouts of a results row by what follows the head: nothing (a
/// format-2 row: no states, names inline), the states only (format 3: names inline), or
/// the states and a column set id (format 4, whose inline list is empty). Bytes after
/// the id are ignored, as postcard ignores them, for fields a later build may add.
fn decode_value(bytes: &[u8]) -> Result<DecodedValue<'_>> {
    let corrupt = |e: postcard::Error| Error::corrupt("result value", e);
    let (mut head, rest) = postcard::take_from_bytes::<EmissionHead<'_>>(bytes).map_err(corrupt)?;
    if rest.is_empty() {
        let columns = RowColumns::Inline(std::mem::take(&mut head.columns));
        return Ok(DecodedValue {
            head,
            states: None,
            columns,
        });
    }
    let (states, rest) =
        postcard::take_from_bytes::<Option<Vec<reckon_core::AggState>>>(rest).map_err(corrupt)?;
    if rest.is_empty() {
        let columns = RowColumns::Inline(std::mem::take(&mut head.columns));
        return Ok(DecodedValue {
            head,
            states,
            columns,
        });
    }
    let (id, _later) = postcard::take_from_bytes::<u32>(rest).map_err(corrupt)?;
    if !head.columns.is_empty() {
        return Err(Error::corrupt(
            "result value",
            format!("names its columns both inline and as column set {id}"),
        ));
    }
    Ok(DecodedValue {
        head,
        states,
        columns: RowColumns::Set(id),
    })
}

fn emission_out<'a>(e: &'a reckon_core::Emission, columns: &'a [&'a str]) -> EmissionOut<'a> {
    EmissionOut {
        end: e.window.end.0,
        kind: e.kind,
        columns,
        values: e
            .values
            .iter()
            .map(|v| v.as_ref().map(StoredValue::from_value))
            .collect(),
        count: e.count,
        checksum: e.checksum,
        emitted_at: e.emitted_at.0,
        watermark: e.watermark.0.0,
        states: e.states.as_deref(),
    }
}

/// A results row naming its columns by `column_set`, the id of `e.columns` in its
/// pipeline's column sets (the committer assigns it, see `colsets.rs`).
pub(crate) fn encode_emission(e: &reckon_core::Emission, column_set: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    extend(&mut out, &emission_out(e, &[]), "emission")?;
    extend(&mut out, &column_set, "emission")?;
    Ok(out)
}

/// A results row in the format-3 layout, its column names inline: what the test hook
/// `Store::overwrite_result_for_tests` writes (it is no committer, so it adds no
/// column set) and what the tests of older rows write.
pub(crate) fn encode_emission_inline(e: &reckon_core::Emission) -> Result<Vec<u8>> {
    let names: Vec<&str> = e.columns.iter().map(|c| &**c).collect();
    let mut out = Vec::new();
    extend(&mut out, &emission_out(e, &names), "emission")?;
    Ok(out)
}

/// Just the processing time of a stored emission (for as-of queries), without building it.
pub(crate) fn emission_emitted_at(bytes: &[u8]) -> Result<i64> {
    let (head, _) = postcard::take_from_bytes::<EmissionHead<'_>>(bytes)
        .map_err(|e| Error::corrupt("result value", e))?;
    Ok(head.emitted_at)
}

/// Resolves the column names of many rows: the last set and the last inline list are
/// reused (rows of one pipeline share them), other sets are looked up in the store's
/// [`ColumnSets`].
pub(crate) struct ColumnsCache<'s> {
    sets: &'s ColumnSets,
    meta: &'s fjall::Keyspace,
    last_set: Option<(Arc<str>, u32, Columns)>,
    last_inline: Option<Columns>,
}

impl<'s> ColumnsCache<'s> {
    pub(crate) fn new(sets: &'s ColumnSets, meta: &'s fjall::Keyspace) -> ColumnsCache<'s> {
        ColumnsCache {
            sets,
            meta,
            last_set: None,
            last_inline: None,
        }
    }

    fn get(&mut self, pipeline: &Arc<str>, columns: &RowColumns<'_>) -> Result<Columns> {
        match columns {
            RowColumns::Set(id) => {
                if let Some((p, i, c)) = &self.last_set
                    && i == id
                    && p == pipeline
                {
                    return Ok(c.clone());
                }
                let c = self.sets.resolve(self.meta, pipeline, *id)?;
                self.last_set = Some((pipeline.clone(), *id, c.clone()));
                Ok(c)
            }
            RowColumns::Inline(names) => match &self.last_inline {
                Some(c)
                    if c.len() == names.len() && c.iter().zip(names).all(|(a, b)| &**a == *b) =>
                {
                    Ok(c.clone())
                }
                _ => {
                    let c: Columns = names.iter().map(|c| Arc::from(*c)).collect();
                    self.last_inline = Some(c.clone());
                    Ok(c)
                }
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_emission(
    pipeline: &Arc<str>,
    key: &Key,
    start: i64,
    version: u32,
    bytes: &[u8],
    cols: &mut ColumnsCache<'_>,
) -> Result<reckon_core::Emission> {
    let DecodedValue {
        head: v,
        states,
        columns,
    } = decode_value(bytes)?;
    let columns = cols.get(pipeline, &columns)?;
    let mut values = Vec::with_capacity(v.values.len());
    for x in &v.values {
        values.push(match x {
            Some(x) => Some(x.to_value()?),
            None => None,
        });
    }
    Ok(reckon_core::Emission {
        pipeline: pipeline.clone(),
        key: key.clone(),
        window: reckon_core::Window {
            start: EventTime(start),
            end: EventTime(v.end),
        },
        version: reckon_core::Version(version),
        kind: v.kind,
        columns,
        values,
        count: v.count,
        checksum: v.checksum,
        emitted_at: ProcessingTime(v.emitted_at),
        watermark: reckon_core::Watermark(EventTime(v.watermark)),
        states: states.map(Arc::from),
    })
}

/// The value of a dead-letter row (encoding side).
#[derive(Serialize, Debug)]
struct DeadLetterOut<'a> {
    pipeline: &'a str,
    event: &'a Event,
    kind: &'a str,
    reason: &'a str,
    at: i64,
}

/// The value of a dead-letter row (decoding side).
#[derive(Deserialize, Debug)]
struct DeadLetterIn {
    pipeline: Arc<str>,
    event: Event,
    kind: String,
    reason: String,
    at: i64,
}

pub(crate) fn encode_dead_letter(d: &crate::DeadLetter) -> Result<Vec<u8>> {
    let v = DeadLetterOut {
        pipeline: &d.pipeline,
        event: &d.event,
        kind: &d.kind,
        reason: &d.reason,
        at: d.at.0,
    };
    let mut out = Vec::new();
    extend(&mut out, &v, "dead letter")?;
    Ok(out)
}

pub(crate) fn decode_dead_letter(stream: &Arc<str>, bytes: &[u8]) -> Result<crate::DeadLetter> {
    let v: DeadLetterIn =
        postcard::from_bytes(bytes).map_err(|e| Error::corrupt("dead letter value", e))?;
    Ok(crate::DeadLetter {
        pipeline: v.pipeline,
        stream: stream.clone(),
        event: v.event,
        kind: v.kind,
        reason: v.reason,
        at: ProcessingTime(v.at),
    })
}

/// A journaled tick: `(pipeline, at)`.
pub(crate) fn encode_tick(pipeline: &str, at: ProcessingTime, out: &mut Vec<u8>) -> Result<()> {
    extend(out, &(pipeline, at.0), "tick")
}

/// A journaled tick: the pipeline and the processing time it was advanced to.
pub(crate) type Tick = (Arc<str>, ProcessingTime);

/// Decodes a tick and returns the bytes after it.
pub(crate) fn decode_tick(bytes: &[u8]) -> Result<(Tick, &[u8])> {
    let ((p, at), rest): ((&str, i64), &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| Error::corrupt("journal tick", e))?;
    Ok(((Arc::from(p), ProcessingTime(at)), rest))
}

fn extend<T: Serialize>(out: &mut Vec<u8>, v: &T, what: &'static str) -> Result<()> {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(v, taken).map_err(|e| Error::Encode {
        what,
        reason: e.to_string(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn floats_round_trip_bit_for_bit() {
        let xs = [
            0.0,
            -0.0,
            1.0,
            -1.5,
            4.217,
            5.001,
            0.1,
            0.3,
            1e-9,
            123456.789,
            1e300,
            -2.5e-300,
            f64::MIN_POSITIVE,
            f64::MAX,
            9_007_199_254_740_993.0,
            1.0 / 3.0,
        ];
        for x in xs {
            let v = Value::F64(x);
            let back = StoredValue::from_value(&v).to_value().unwrap();
            match back {
                Value::F64(y) => assert_eq!(x.to_bits(), y.to_bits(), "{x}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(compact_f64(4.217), StoredValue::Dec(3, 4217));
        assert_eq!(compact_f64(-0.0), StoredValue::F64(-0.0));
    }

    #[test]
    fn a_reading_is_small() {
        let e = Event {
            stream: Arc::from("water_level"),
            key: Key::from_tags([("i", "42")]).unwrap(),
            time: EventTime(1_655_078_400_000_000_000),
            id: None,
            fields: vec![(Arc::from("level"), Value::F64(5.123))],
        };
        let mut out = Vec::new();
        encode_raw(PartitionId(0), ProcessingTime(e.time.0), &e, &mut out).unwrap();
        assert!(out.len() <= 14, "{} bytes: {out:?}", out.len());
        let d = decode_raw(&e.stream, &e.key, e.time.0, &out, &mut Interner::default()).unwrap();
        assert_eq!(d.event, e);
        assert_eq!(d.ingested_at, ProcessingTime(e.time.0));
    }

    fn emission(
        columns: &[&str],
        states: Option<Vec<reckon_core::AggState>>,
    ) -> reckon_core::Emission {
        reckon_core::Emission {
            pipeline: Arc::from("p"),
            key: Key::from_tags([("i", "1")]).unwrap(),
            window: reckon_core::Window {
                start: EventTime(0),
                end: EventTime(3_600_000_000_000),
            },
            version: reckon_core::Version(2),
            kind: EmissionKind::Late,
            columns: columns.iter().map(|c| Arc::<str>::from(*c)).collect(),
            values: vec![Some(Value::F64(4.217)), None],
            count: 12,
            checksum: Checksum {
                count: 12,
                hash: 99,
            },
            emitted_at: ProcessingTime(5),
            watermark: reckon_core::Watermark(EventTime(-7)),
            states: states.map(Arc::from),
        }
    }

    /// The format-2 layout: the head only (no states field).
    #[derive(Serialize)]
    struct V2<'a> {
        end: i64,
        kind: EmissionKind,
        columns: Vec<&'a str>,
        values: Vec<Option<StoredValue<'a>>>,
        count: u64,
        checksum: Checksum,
        emitted_at: i64,
        watermark: i64,
    }

    fn check_head(v: &DecodedValue<'_>) {
        assert_eq!(v.head.end, 3_600_000_000_000);
        assert_eq!(v.head.kind, EmissionKind::Late);
        assert_eq!(v.head.values, vec![Some(StoredValue::Dec(3, 4217)), None]);
        assert_eq!(
            (v.head.count, v.head.emitted_at, v.head.watermark),
            (12, 5, -7)
        );
    }

    #[test]
    fn every_results_layout_decodes() {
        let names = ["mean_level", "count"];
        let states = vec![
            reckon_core::AggState::Count(3),
            reckon_core::AggState::Count(4),
        ];
        // Format 4: no names in the row, the set id after the states.
        let row = encode_emission(&emission(&names, None), 300).unwrap();
        let v = decode_value(&row).unwrap();
        check_head(&v);
        assert_eq!((v.columns, v.states), (RowColumns::Set(300), None));
        let row = encode_emission(&emission(&names, Some(states.clone())), 0).unwrap();
        let v = decode_value(&row).unwrap();
        assert_eq!(v.columns, RowColumns::Set(0));
        assert_eq!(v.states.as_deref(), Some(&states[..]));
        // Format 3: names inline, with or without states.
        let row = encode_emission_inline(&emission(&names, None)).unwrap();
        let v = decode_value(&row).unwrap();
        check_head(&v);
        assert_eq!(
            (v.columns, v.states),
            (RowColumns::Inline(names.to_vec()), None)
        );
        let row = encode_emission_inline(&emission(&names, Some(states.clone()))).unwrap();
        let v = decode_value(&row).unwrap();
        assert_eq!(v.columns, RowColumns::Inline(names.to_vec()));
        assert_eq!(v.states.as_deref(), Some(&states[..]));
        // Format 2: the head only.
        let old = V2 {
            end: 3_600_000_000_000,
            kind: EmissionKind::Late,
            columns: names.to_vec(),
            values: vec![Some(StoredValue::Dec(3, 4217)), None],
            count: 12,
            checksum: Checksum {
                count: 12,
                hash: 99,
            },
            emitted_at: 5,
            watermark: -7,
        };
        let row = postcard::to_allocvec(&old).unwrap();
        let v = decode_value(&row).unwrap();
        check_head(&v);
        assert_eq!(
            (v.columns, v.states),
            (RowColumns::Inline(names.to_vec()), None)
        );
        assert_eq!(emission_emitted_at(&row).unwrap(), 5);
    }

    #[test]
    fn an_interned_row_is_smaller_by_its_names() {
        let e = emission(&["mean_level", "count"], None);
        let interned = encode_emission(&e, 0).unwrap();
        let inline = encode_emission_inline(&e).unwrap();
        // The names and their lengths (17 bytes) against a one-byte id.
        assert_eq!(inline.len() - interned.len(), 16, "{interned:?} {inline:?}");
    }

    #[test]
    fn damaged_results_rows_are_corrupt_not_a_panic() {
        let e = emission(&["a", "b"], None);
        // Names inline and a set id: written by nothing, so damage.
        let mut both = encode_emission_inline(&e).unwrap();
        extend(&mut both, &7u32, "test").unwrap();
        let err = decode_value(&both).unwrap_err();
        assert!(err.to_string().contains("column set 7"), "{err}");
        // Every truncation of a format-4 row is an error or an older layout's prefix,
        // never a panic.
        let row = encode_emission(&e, 9).unwrap();
        for n in 0..row.len() {
            let _ = decode_value(&row[..n]);
        }
        // A set id that is not a varint u32.
        let mut bad = encode_emission(&e, 0).unwrap();
        bad.pop();
        bad.extend_from_slice(&[0xFF; 6]);
        assert!(matches!(decode_value(&bad), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn keys_rebuild_from_their_canonical_form() {
        let k = Key::from_tags([("a,b", "x=y"), ("c", "")]).unwrap();
        assert_eq!(key_from_canonical(k.as_str()).unwrap(), k);
    }
}
