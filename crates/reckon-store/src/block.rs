//! Raw-log blocks (format 3): the events of one stream and series key from one commit
//! batch, stored column by column (specified in `docs/storage.md`).
//!
//! A block's key is `stream ‖ key ‖ min time ‖ min seq`; its events span at most
//! [`BLOCK_SPAN`] of event time, so the blocks holding any event of `[start, end)` all
//! have a key time in `[start - BLOCK_SPAN, end)`: a range read is one key-range scan.
//!
//! Inside, events are sorted by (time, seq) and each column has its own compact form:
//! times as deltas divided by their greatest common divisor (readings on whole seconds
//! cost a byte), sequence numbers, partitions and ingest times as constants or
//! zig-zag deltas, ids as a presence bitmap and their bytes, and fields, when every
//! event has the same field names, as one column per name (short decimals sharing one
//! scale become integer deltas); otherwise event by event.

use crate::RawRecord;
use crate::error::{Error, Result};
use crate::values::{Interner, StoredValue};
use reckon_core::{Event, EventId, EventTime, Key, PartitionId, ProcessingTime, Value};
use std::sync::Arc;

/// The widest event-time span of one block (one day). A commit's events of one key
/// spread wider than this become several blocks.
pub(crate) const BLOCK_SPAN: i64 = 86_400 * 1_000_000_000;

/// The first byte of every block value: its layout.
const LAYOUT_1: u8 = 1;

const INT_CONST: u8 = 0;
const INT_DELTAS: u8 = 1;

const IDS_NONE: u8 = 0;
const IDS_ALL: u8 = 1;
const IDS_SOME: u8 = 2;

const FIELDS_COLUMNS: u8 = 0;
const FIELDS_ROWS: u8 = 1;

const COLUMN_GENERIC: u8 = 0;
const COLUMN_DECIMAL: u8 = 1;
const COLUMN_INT: u8 = 2;

/// Powers of ten, each exactly representable as an `f64` (as in `values.rs`).
const POW10: [i64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];
/// Mantissas stay below 2^53 so that `mantissa as f64` is exact.
const MAX_MANTISSA: i64 = 1 << 53;

/// One event of a block with its journal sequence number.
pub(crate) struct Entry<'a> {
    pub(crate) seq: u64,
    pub(crate) rec: &'a RawRecord,
}

/// Splits `entries` (one stream and key, sorted by (time, seq)) into runs of at most
/// [`BLOCK_SPAN`] of event time, greedily: each run is one block.
pub(crate) fn split_by_span<'e, 'a>(entries: &'e [Entry<'a>]) -> Vec<&'e [Entry<'a>]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..entries.len() {
        let t0 = i128::from(entries[start].rec.event.time.0);
        if i128::from(entries[i].rec.event.time.0) - t0 > i128::from(BLOCK_SPAN) {
            out.push(&entries[start..i]);
            start = i;
        }
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

/// Encodes one block; `entries` are of one stream and key, sorted by (time, seq),
/// non-empty and within [`BLOCK_SPAN`]. Returns the (time, seq) of the block's key:
/// its first time and smallest seq, or `base` when a block is rewritten under its old
/// key (retention and repair remove events, never add them, so the old key's time and
/// seq are still at or below every event's).
pub(crate) fn encode(
    entries: &[Entry<'_>],
    base: Option<(i64, u64)>,
    out: &mut Vec<u8>,
) -> Result<(i64, u64)> {
    let Some(first) = entries.first() else {
        return Err(Error::Encode {
            what: "raw block",
            reason: "no events".into(),
        });
    };
    let first_time = first.rec.event.time.0;
    let smallest_seq = entries.iter().map(|e| e.seq).min().unwrap_or(first.seq);
    let (min_time, min_seq) = base.unwrap_or((first_time, smallest_seq));
    if first_time < min_time || smallest_seq < min_seq {
        return Err(Error::Encode {
            what: "raw block",
            reason: format!(
                "an event (time {first_time}, seq {smallest_seq}) lies before the block's key (time {min_time}, seq {min_seq})"
            ),
        });
    }
    out.push(LAYOUT_1);
    put_varint(out, entries.len() as u64);
    put_varint(out, first_time.wrapping_sub(min_time) as u64);

    // Times: non-negative deltas (sorted), divided by their gcd.
    let mut gcd = 0u64;
    for w in entries.windows(2) {
        gcd = gcd_u64(
            gcd,
            w[1].rec.event.time.0.wrapping_sub(w[0].rec.event.time.0) as u64,
        );
    }
    put_varint(out, gcd);
    // All times equal (gcd 0): no deltas are written.
    for w in entries.windows(2) {
        let d = w[1].rec.event.time.0.wrapping_sub(w[0].rec.event.time.0) as u64;
        if let Some(q) = d.checked_div(gcd) {
            put_varint(out, q);
        }
    }
    put_ints(out, entries.iter().map(|e| (e.seq - min_seq) as i64));
    put_ints(out, entries.iter().map(|e| i64::from(e.rec.partition.0)));
    put_ints(out, entries.iter().map(|e| e.rec.ingested_at.0));

    // Ids.
    let with_id = entries.iter().filter(|e| e.rec.event.id.is_some()).count();
    if with_id == 0 {
        out.push(IDS_NONE);
    } else {
        if with_id == entries.len() {
            out.push(IDS_ALL);
        } else {
            out.push(IDS_SOME);
            for chunk in entries.chunks(8) {
                let mut bits = 0u8;
                for (i, e) in chunk.iter().enumerate() {
                    if e.rec.event.id.is_some() {
                        bits |= 1 << i;
                    }
                }
                out.push(bits);
            }
        }
        for e in entries {
            if let Some(id) = &e.rec.event.id {
                put_bytes(out, id.0.as_bytes());
            }
        }
    }

    // Fields: columns when every event has the same names in the same order.
    let names: Vec<&str> = first.rec.event.fields.iter().map(|(n, _)| &**n).collect();
    let uniform = entries.iter().all(|e| {
        e.rec.event.fields.len() == names.len()
            && e.rec
                .event
                .fields
                .iter()
                .zip(&names)
                .all(|((n, _), m)| &**n == *m)
    });
    if uniform {
        out.push(FIELDS_COLUMNS);
        put_varint(out, names.len() as u64);
        for n in &names {
            put_bytes(out, n.as_bytes());
        }
        for c in 0..names.len() {
            let column: Vec<StoredValue<'_>> = entries
                .iter()
                .map(|e| StoredValue::from_value(&e.rec.event.fields[c].1))
                .collect();
            put_column(out, &column)?;
        }
    } else {
        out.push(FIELDS_ROWS);
        for e in entries {
            put_varint(out, e.rec.event.fields.len() as u64);
            for (n, v) in &e.rec.event.fields {
                put_bytes(out, n.as_bytes());
                put_stored(out, &StoredValue::from_value(v))?;
            }
        }
    }
    Ok((min_time, min_seq))
}

/// A decoded block event: its sequence number and record.
pub(crate) type Decoded = (u64, RawRecord);

/// Decodes a block of `stream` and `key` whose key holds `min_time` and `min_seq`.
pub(crate) fn decode(
    stream: &Arc<str>,
    key: &Key,
    min_time: i64,
    min_seq: u64,
    bytes: &[u8],
    names: &mut Interner,
) -> Result<Vec<Decoded>> {
    let mut r = Reader { b: bytes, at: 0 };
    let layout = r.u8()?;
    if layout != LAYOUT_1 {
        return Err(r.bad(format!("unknown block layout {layout}")));
    }
    let n = r.len()?;
    if n == 0 {
        return Err(r.bad("no events"));
    }
    let head = r.varint()?;
    // Times are written as wrapping differences of sorted values, so wrapping sums
    // give them back exactly.
    let mut t = min_time.wrapping_add(head as i64);
    let gcd = r.varint()?;
    let mut times = Vec::with_capacity(n);
    times.push(t);
    for _ in 1..n {
        let d = if gcd == 0 { 0 } else { r.varint()? };
        let step = d
            .checked_mul(gcd)
            .ok_or_else(|| r.bad("time delta overflows"))?;
        t = t.wrapping_add(step as i64);
        times.push(t);
    }
    let seqs = r.ints(n)?;
    let partitions = r.ints(n)?;
    let ingested = r.ints(n)?;

    let mut ids: Vec<Option<EventId>> = vec![None; n];
    match r.u8()? {
        IDS_NONE => {}
        IDS_ALL => {
            for id in ids.iter_mut() {
                *id = Some(EventId(Arc::from(r.str()?)));
            }
        }
        IDS_SOME => {
            let bitmap = r.take(n.div_ceil(8))?;
            for (i, id) in ids.iter_mut().enumerate() {
                if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                    *id = Some(EventId(Arc::from(r.str()?)));
                }
            }
        }
        other => return Err(r.bad(format!("unknown ids form {other}"))),
    }

    let mut fields: Vec<Vec<(Arc<str>, Value)>> = Vec::with_capacity(n);
    match r.u8()? {
        FIELDS_COLUMNS => {
            let m = r.len()?;
            let mut column_names = Vec::with_capacity(m);
            for _ in 0..m {
                column_names.push(names.get(r.str()?));
            }
            fields.resize_with(n, || Vec::with_capacity(m));
            for name in &column_names {
                let values = r.column(n)?;
                for (f, v) in fields.iter_mut().zip(values) {
                    f.push((name.clone(), v));
                }
            }
        }
        FIELDS_ROWS => {
            for _ in 0..n {
                let m = r.len()?;
                let mut f = Vec::with_capacity(m);
                for _ in 0..m {
                    let name = names.get(r.str()?);
                    f.push((name, r.stored()?.to_value()?));
                }
                fields.push(f);
            }
        }
        other => return Err(r.bad(format!("unknown fields form {other}"))),
    }
    if r.at != bytes.len() {
        return Err(r.bad(format!("{} trailing bytes", bytes.len() - r.at)));
    }

    let mut out = Vec::with_capacity(n);
    for (i, (f, id)) in fields.into_iter().zip(ids).enumerate() {
        let seq = u64::try_from(seqs[i])
            .ok()
            .and_then(|s| min_seq.checked_add(s))
            .ok_or_else(|| r.bad("sequence number out of range"))?;
        let partition =
            u32::try_from(partitions[i]).map_err(|_| r.bad("partition out of range"))?;
        out.push((
            seq,
            RawRecord {
                partition: PartitionId(partition),
                ingested_at: ProcessingTime(ingested[i]),
                event: Event {
                    stream: stream.clone(),
                    key: key.clone(),
                    time: EventTime(times[i]),
                    id,
                    fields: f,
                },
            },
        ));
    }
    Ok(out)
}

fn gcd_u64(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// An integer column: one value if all are equal, else the first and zig-zag deltas.
fn put_ints(out: &mut Vec<u8>, values: impl Iterator<Item = i64> + Clone) {
    let mut it = values.clone();
    let Some(first) = it.next() else {
        out.push(INT_CONST);
        put_varint(out, 0);
        return;
    };
    if it.all(|v| v == first) {
        out.push(INT_CONST);
        put_varint(out, zigzag(first));
        return;
    }
    out.push(INT_DELTAS);
    let mut prev = 0i64;
    for v in values {
        put_varint(out, zigzag(v.wrapping_sub(prev)));
        prev = v;
    }
}

fn put_stored(out: &mut Vec<u8>, v: &StoredValue<'_>) -> Result<()> {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(v, taken).map_err(|e| Error::Encode {
        what: "raw block value",
        reason: e.to_string(),
    })?;
    Ok(())
}

/// One field's values: decimals (of any scale) rescaled to the largest scale as
/// integer deltas, integers as deltas, anything else value by value.
fn put_column(out: &mut Vec<u8>, column: &[StoredValue<'_>]) -> Result<()> {
    if column.iter().all(|v| matches!(v, StoredValue::I64(_))) {
        out.push(COLUMN_INT);
        put_ints(
            out,
            column.iter().map(|v| match v {
                StoredValue::I64(i) => *i,
                _ => 0,
            }),
        );
        return Ok(());
    }
    if let Some(scale) = common_scale(column) {
        out.push(COLUMN_DECIMAL);
        out.push(scale);
        put_ints(
            out,
            column.iter().map(|v| match v {
                StoredValue::Dec(s, m) => m * POW10[usize::from(scale - *s)],
                _ => 0,
            }),
        );
        return Ok(());
    }
    out.push(COLUMN_GENERIC);
    for v in column {
        put_stored(out, v)?;
    }
    Ok(())
}

/// The largest scale of an all-decimal column, if every mantissa rescaled to it stays
/// exact (below 2^53): then `m' / 10^scale` is the same rational as `m / 10^s`, and the
/// one correctly rounded division gives the same bits.
fn common_scale(column: &[StoredValue<'_>]) -> Option<u8> {
    let mut scale = 0u8;
    for v in column {
        match v {
            StoredValue::Dec(s, _) if usize::from(*s) < POW10.len() => scale = scale.max(*s),
            _ => return None,
        }
    }
    let ok = column.iter().all(|v| match v {
        StoredValue::Dec(s, m) => m
            .checked_mul(POW10[usize::from(scale - *s)])
            .is_some_and(|x| x.abs() < MAX_MANTISSA),
        _ => false,
    });
    ok.then_some(scale)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, reason: impl std::fmt::Display) -> Error {
        Error::corrupt(format!("raw block (byte {})", self.at), reason)
    }

    fn u8(&mut self) -> Result<u8> {
        let v = *self.b.get(self.at).ok_or_else(|| self.bad("truncated"))?;
        self.at += 1;
        Ok(v)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| self.bad("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.bad("varint too long"))
    }

    /// A count that cannot exceed the bytes left (each item takes at least a byte), so
    /// a corrupt count cannot make a huge allocation.
    fn len(&mut self) -> Result<usize> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.b.len())
            .ok_or_else(|| self.bad(format!("count {n} exceeds the block")))
    }

    fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|e| self.bad(e))
    }

    fn ints(&mut self, n: usize) -> Result<Vec<i64>> {
        match self.u8()? {
            INT_CONST => Ok(vec![unzigzag(self.varint()?); n]),
            INT_DELTAS => {
                let mut out = Vec::with_capacity(n);
                let mut prev = 0i64;
                for _ in 0..n {
                    prev = prev.wrapping_add(unzigzag(self.varint()?));
                    out.push(prev);
                }
                Ok(out)
            }
            other => Err(self.bad(format!("unknown integer column form {other}"))),
        }
    }

    fn stored(&mut self) -> Result<StoredValue<'a>> {
        let rest = &self.b[self.at..];
        let (v, tail) = postcard::take_from_bytes::<StoredValue<'a>>(rest)
            .map_err(|e| self.bad(format!("field value: {e}")))?;
        self.at += rest.len() - tail.len();
        Ok(v)
    }

    fn column(&mut self, n: usize) -> Result<Vec<Value>> {
        match self.u8()? {
            COLUMN_INT => Ok(self.ints(n)?.into_iter().map(Value::I64).collect()),
            COLUMN_DECIMAL => {
                let scale = self.u8()?;
                if usize::from(scale) >= POW10.len() {
                    return Err(self.bad(format!("decimal scale {scale}")));
                }
                self.ints(n)?
                    .into_iter()
                    .map(|m| StoredValue::Dec(scale, m).to_value())
                    .collect()
            }
            COLUMN_GENERIC => (0..n).map(|_| self.stored()?.to_value()).collect(),
            other => Err(self.bad(format!("unknown column form {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(t: i64, id: Option<&str>, fields: Vec<(&str, Value)>) -> RawRecord {
        RawRecord {
            partition: PartitionId((t % 3) as u32),
            ingested_at: ProcessingTime(t.wrapping_mul(7)),
            event: Event {
                stream: Arc::from("s"),
                key: Key::from_tags([("k", "1")]).unwrap(),
                time: EventTime(t),
                id: id.map(|s| EventId(Arc::from(s))),
                fields: fields.into_iter().map(|(n, v)| (Arc::from(n), v)).collect(),
            },
        }
    }

    fn round_trip(recs: &[RawRecord]) -> usize {
        let entries: Vec<Entry<'_>> = recs
            .iter()
            .enumerate()
            .map(|(i, rec)| Entry {
                seq: 100 + (i as u64 * 7) % 11,
                rec,
            })
            .collect();
        let mut out = Vec::new();
        let (t, s) = encode(&entries, None, &mut out).unwrap();
        let back = decode(
            &Arc::from("s"),
            &recs[0].event.key,
            t,
            s,
            &out,
            &mut Interner::default(),
        )
        .unwrap();
        assert_eq!(back.len(), recs.len());
        for ((seq, r), e) in back.iter().zip(&entries) {
            assert_eq!(*seq, e.seq);
            assert_eq!(r, e.rec);
        }
        out.len()
    }

    #[test]
    fn columns_of_every_kind_round_trip() {
        let recs = vec![
            rec(
                10,
                Some("a"),
                vec![("x", Value::F64(4.25)), ("n", Value::I64(-3))],
            ),
            rec(
                10,
                None,
                vec![("x", Value::F64(4.5)), ("n", Value::I64(i64::MAX))],
            ),
            rec(
                20,
                Some("é"),
                vec![
                    ("x", Value::F64(f64::INFINITY)),
                    ("n", Value::I64(i64::MIN)),
                ],
            ),
            rec(
                35,
                None,
                vec![("x", Value::F64(-0.0)), ("n", Value::I64(0))],
            ),
        ];
        round_trip(&recs);
        let mixed = vec![
            rec(1, None, vec![("x", Value::Str(Arc::from("a\0b")))]),
            rec(
                2,
                Some("i"),
                vec![("y", Value::Bool(true)), ("x", Value::F64(1e300))],
            ),
            rec(3, None, vec![]),
        ];
        round_trip(&mixed);
        let one = vec![rec(i64::MIN, Some(""), vec![("x", Value::F64(0.1))])];
        round_trip(&one);
        let wide = vec![
            rec(i64::MIN, None, vec![]),
            rec(0, None, vec![]),
            rec(i64::MAX, None, vec![]),
        ];
        round_trip(&wide);
    }

    #[test]
    fn readings_on_whole_seconds_take_a_few_bytes_each() {
        let recs: Vec<RawRecord> = (0..100)
            .map(|i| {
                let mut r = rec(
                    1_700_000_000_000_000_000 + i * 10_000_000_000,
                    None,
                    vec![("level", Value::F64(4.0 + (i % 17) as f64 * 0.013))],
                );
                r.partition = PartitionId(0);
                r.ingested_at = ProcessingTime(1_700_000_000_000_000_000);
                r
            })
            .collect();
        let size = round_trip(&recs);
        assert!(size < 100 * 4, "{size} bytes for 100 readings");
    }

    #[test]
    fn a_rewritten_block_keeps_its_old_key() {
        let recs: Vec<RawRecord> = [5, 9, 12]
            .into_iter()
            .map(|t| rec(t, None, vec![]))
            .collect();
        let entries: Vec<Entry<'_>> = recs
            .iter()
            .enumerate()
            .map(|(i, rec)| Entry {
                seq: 40 + i as u64,
                rec,
            })
            .collect();
        let mut out = Vec::new();
        assert_eq!(
            encode(&entries[1..], Some((5, 40)), &mut out).unwrap(),
            (5, 40)
        );
        let back = decode(
            &Arc::from("s"),
            &recs[0].event.key,
            5,
            40,
            &out,
            &mut Interner::default(),
        )
        .unwrap();
        assert_eq!(
            back.iter()
                .map(|(s, r)| (*s, r.event.time.0))
                .collect::<Vec<_>>(),
            vec![(41, 9), (42, 12)]
        );
        assert!(encode(&entries, Some((6, 40)), &mut Vec::new()).is_err());
    }

    #[test]
    fn a_wide_batch_splits_into_blocks_within_the_span() {
        let recs: Vec<RawRecord> = [0, 1, BLOCK_SPAN, BLOCK_SPAN + 2, 3 * BLOCK_SPAN]
            .into_iter()
            .map(|t| rec(t, None, vec![]))
            .collect();
        let entries: Vec<Entry<'_>> = recs
            .iter()
            .enumerate()
            .map(|(i, rec)| Entry { seq: i as u64, rec })
            .collect();
        let blocks = split_by_span(&entries);
        let sizes: Vec<usize> = blocks.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![3, 1, 1]);
    }

    #[test]
    fn damaged_blocks_are_corrupt_not_panics() {
        let recs = [
            rec(1, Some("a"), vec![("x", Value::F64(1.5))]),
            rec(9, None, vec![("x", Value::F64(2.5))]),
        ];
        let entries: Vec<Entry<'_>> = recs
            .iter()
            .enumerate()
            .map(|(i, rec)| Entry { seq: i as u64, rec })
            .collect();
        let mut out = Vec::new();
        encode(&entries, None, &mut out).unwrap();
        for cut in 0..out.len() {
            let e = decode(
                &Arc::from("s"),
                &recs[0].event.key,
                1,
                0,
                &out[..cut],
                &mut Interner::default(),
            );
            assert!(matches!(e, Err(Error::Corrupt { .. })), "cut at {cut}");
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0xff;
            // Any answer but a panic.
            let _ = decode(
                &Arc::from("s"),
                &recs[0].event.key,
                1,
                0,
                &bad,
                &mut Interner::default(),
            );
        }
    }
}
