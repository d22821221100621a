//! The raw log (format 3): blocks of one stream, series key and commit batch, keyed
//! `stream ‖ key ‖ time ‖ seq` (see [`crate::block`] and `docs/storage.md`).
//!
//! Appending a batch sorts its events by (stream, key, time, seq) and writes one block
//! per run of one key within [`BLOCK_SPAN`]; the batch's journal row names the blocks.
//! Reads scan the blocks whose key time lies in `[start - BLOCK_SPAN, end)` and keep the
//! events inside `[start, end)`. Retention and repair remove events by rewriting a block
//! under its old key, or deleting it once empty.

use crate::RawRecord;
pub(crate) use crate::block::BLOCK_SPAN;
use crate::block::{self, Entry};
use crate::error::{Error, Result};
use crate::keys::{self, KeyReader};
use crate::values::{self, Interner};
use fjall::Keyspace;
use reckon_core::{Event, Key};
use std::sync::Arc;

/// Journal tag of a block reference (format 3): the block's raw key follows.
pub(crate) const JOURNAL_BLOCK: u8 = 2;

/// `stream ‖ key ‖ time ‖ seq`: the key of a block.
pub(crate) fn block_key(stream: &str, key: &str, time: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + key.len() + 20);
    keys::put_str(&mut k, stream);
    keys::put_str(&mut k, key);
    keys::put_time(&mut k, time);
    keys::put_u64(&mut k, seq);
    k
}

/// The blocks of one commit batch: `events[i]` has seq `first_seq + i`. Each block's
/// `(key, value)` goes to `rows`, and its key, tagged [`JOURNAL_BLOCK`], to the batch's
/// journal row.
pub(crate) fn append_blocks(
    events: &[RawRecord],
    first_seq: u64,
    rows: &mut Vec<(Vec<u8>, Vec<u8>)>,
    journal_row: &mut Vec<u8>,
) -> Result<()> {
    let mut order: Vec<u32> = (0..events.len() as u32).collect();
    let ev = |i: u32| &events[i as usize].event;
    order.sort_unstable_by(|&i, &j| {
        let (a, b) = (ev(i), ev(j));
        let same_series = (Arc::ptr_eq(&a.stream, &b.stream) || a.stream == b.stream)
            && (a.key.ptr_eq(&b.key) || a.key == b.key);
        if same_series {
            a.time.cmp(&b.time).then(i.cmp(&j))
        } else {
            a.stream
                .cmp(&b.stream)
                .then_with(|| a.key.as_str().cmp(b.key.as_str()))
        }
    });
    let entries: Vec<Entry<'_>> = order
        .iter()
        .map(|&i| Entry {
            seq: first_seq + u64::from(i),
            rec: &events[i as usize],
        })
        .collect();
    let mut start = 0;
    while start < entries.len() {
        let head = &entries[start].rec.event;
        let run = entries[start..]
            .iter()
            .take_while(|e| e.rec.event.stream == head.stream && e.rec.event.key == head.key)
            .count();
        for blk in block::split_by_span(&entries[start..start + run]) {
            let mut value = Vec::with_capacity(16 + blk.len() * 6);
            let (time, seq) = block::encode(blk, None, &mut value)?;
            let k = block_key(&head.stream, head.key.as_str(), time, seq);
            journal_row.push(JOURNAL_BLOCK);
            journal_row.extend_from_slice(&k);
            rows.push((k, value));
        }
        start += run;
    }
    Ok(())
}

/// Turns the series-key bytes of raw keys into [`Key`]s, remembering the last one
/// (blocks of one key are neighbours).
#[derive(Default)]
pub(crate) struct Keys {
    last: Option<(Vec<u8>, Key)>,
}

impl Keys {
    pub(crate) fn get(&mut self, encoded: &[u8], what: &'static str) -> Result<Key> {
        if let Some((b, k)) = &self.last
            && b.as_slice() == encoded
        {
            return Ok(k.clone());
        }
        let key = values::key_from_canonical(&KeyReader::new(encoded, what).str()?)?;
        self.last = Some((encoded.to_vec(), key.clone()));
        Ok(key)
    }
}

/// Turns the stream bytes of raw keys into names, remembering the last one.
#[derive(Default)]
pub(crate) struct Streams {
    last: Option<(Vec<u8>, Arc<str>)>,
}

impl Streams {
    pub(crate) fn get(&mut self, encoded: &[u8], what: &'static str) -> Result<Arc<str>> {
        if let Some((b, s)) = &self.last
            && b.as_slice() == encoded
        {
            return Ok(s.clone());
        }
        let s: Arc<str> = Arc::from(KeyReader::new(encoded, what).str()?);
        self.last = Some((encoded.to_vec(), s.clone()));
        Ok(s)
    }
}

/// The parts of a raw key: encoded stream, encoded series key, time, seq.
pub(crate) struct RawKey<'a> {
    pub(crate) stream: &'a [u8],
    pub(crate) key: &'a [u8],
    pub(crate) time: i64,
    pub(crate) seq: u64,
}

pub(crate) fn parse_key(k: &[u8]) -> Result<RawKey<'_>> {
    let mut r = KeyReader::new(k, "raw");
    let stream = r.skip_str()?;
    let key = r.skip_str()?;
    let time = r.time()?;
    let seq = r.u64()?;
    r.end()?;
    Ok(RawKey {
        stream,
        key,
        time,
        seq,
    })
}

/// Decodes the block at raw key `k`.
pub(crate) fn decode_block(
    stream: &Arc<str>,
    key: &Key,
    k: &[u8],
    v: &[u8],
    names: &mut Interner,
) -> Result<Vec<block::Decoded>> {
    let rk = parse_key(k)?;
    block::decode(stream, key, rk.time, rk.seq, v, names)
}

/// Re-encodes the kept events of a block under its old key (sorted by time and seq).
pub(crate) fn rewrite(k: &[u8], kept: &[block::Decoded]) -> Result<Vec<u8>> {
    let rk = parse_key(k)?;
    let entries: Vec<Entry<'_>> = kept
        .iter()
        .map(|(seq, rec)| Entry { seq: *seq, rec })
        .collect();
    let mut value = Vec::new();
    block::encode(&entries, Some((rk.time, rk.seq)), &mut value)?;
    Ok(value)
}

/// The key prefix `stream ‖ key`.
pub(crate) fn series_prefix(stream: &str, key: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(stream.len() + key.len() + 4);
    keys::put_str(&mut p, stream);
    keys::put_str(&mut p, key);
    p
}

/// Events of one series with `start <= time < end`, in (time, seq) order, with seqs.
pub(crate) fn range(
    raw: &Keyspace,
    stream: &str,
    key: &Key,
    start: i64,
    end: i64,
) -> Result<Vec<block::Decoded>> {
    let mut out = Vec::new();
    if start >= end {
        return Ok(out);
    }
    let prefix = series_prefix(stream, key.as_str());
    let (mut lo, mut hi) = (prefix.clone(), prefix);
    keys::put_time(&mut lo, start.saturating_sub(BLOCK_SPAN));
    keys::put_time(&mut hi, end);
    let stream: Arc<str> = Arc::from(stream);
    let mut names = Interner::default();
    for kv in raw.range(lo..hi) {
        let (k, v) = kv.into_inner()?;
        for d in decode_block(&stream, key, &k, &v, &mut names)? {
            if (start..end).contains(&d.1.event.time.0) {
                out.push(d);
            }
        }
    }
    out.sort_unstable_by_key(|(seq, r)| (r.event.time, *seq));
    Ok(out)
}

/// Every record of `stream`, in (key, time, seq) order.
pub(crate) fn scan(raw: &Keyspace, stream: &str) -> Result<Vec<RawRecord>> {
    let mut prefix = Vec::new();
    keys::put_str(&mut prefix, stream);
    let stream: Arc<str> = Arc::from(stream);
    let mut names = Interner::default();
    let mut keys = Keys::default();
    let mut out = Vec::new();
    let mut series: Vec<block::Decoded> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let flush = |series: &mut Vec<block::Decoded>, out: &mut Vec<RawRecord>| {
        series.sort_unstable_by_key(|(seq, r)| (r.event.time, *seq));
        out.extend(series.drain(..).map(|(_, r)| r));
    };
    for kv in raw.prefix(&prefix) {
        let (k, v) = kv.into_inner()?;
        let rk = parse_key(&k)?;
        if rk.key != current.as_slice() {
            flush(&mut series, &mut out);
            current = rk.key.to_vec();
        }
        let key = keys.get(rk.key, "raw")?;
        series.extend(block::decode(
            &stream, &key, rk.time, rk.seq, &v, &mut names,
        )?);
    }
    flush(&mut series, &mut out);
    Ok(out)
}

/// The distinct series keys of `stream`'s raw log (in key order) and the bytes its raw
/// blocks take (keys and values, before compression on disk).
pub(crate) fn usage(raw: &Keyspace, stream: &str) -> Result<(Vec<Key>, u64)> {
    let mut prefix = Vec::new();
    keys::put_str(&mut prefix, stream);
    let mut keys = Keys::default();
    let mut series = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut bytes = 0u64;
    for kv in raw.prefix(&prefix) {
        let (k, v) = kv.into_inner()?;
        bytes += (k.len() + v.len()) as u64;
        let rk = parse_key(&k)?;
        if series.is_empty() || rk.key != current.as_slice() {
            current = rk.key.to_vec();
            series.push(keys.get(rk.key, "raw")?);
        }
    }
    Ok((series, bytes))
}

/// Rewrites every format-2 raw row (one event, keyed `stream ‖ key ‖ time ‖ seq`) as a
/// block of one event under the same key, in write batches of `chunk` rows, resuming
/// after `cursor` (the last row rewritten, recorded with each batch by `record`).
pub(crate) fn migrate_v2_rows(
    db: &fjall::Database,
    raw: &Keyspace,
    mut cursor: Option<Vec<u8>>,
    chunk: usize,
    mut record: impl FnMut(&mut fjall::OwnedWriteBatch, &[u8]),
) -> Result<u64> {
    let mut names = Interner::default();
    let mut keys = Keys::default();
    let mut streams = Streams::default();
    let mut migrated = 0u64;
    loop {
        let rows: Vec<(fjall::UserKey, fjall::UserValue)> = match &cursor {
            Some(c) => {
                let mut from = c.clone();
                from.push(0); // the smallest key after `c`
                raw.range(from..)
                    .take(chunk)
                    .map(|kv| kv.into_inner())
                    .collect::<fjall::Result<_>>()?
            }
            None => raw
                .iter()
                .take(chunk)
                .map(|kv| kv.into_inner())
                .collect::<fjall::Result<_>>()?,
        };
        let Some((last, _)) = rows.last() else {
            return Ok(migrated);
        };
        let last = last.to_vec();
        let mut wb = db.batch();
        for (k, v) in &rows {
            let rk = parse_key(k)?;
            let stream = streams.get(rk.stream, "raw")?;
            let key = keys.get(rk.key, "raw")?;
            let d = values::decode_raw(&stream, &key, rk.time, v, &mut names)?;
            let rec = RawRecord {
                partition: d.partition,
                ingested_at: d.ingested_at,
                event: d.event,
            };
            let mut value = Vec::new();
            block::encode(
                &[Entry {
                    seq: rk.seq,
                    rec: &rec,
                }],
                Some((rk.time, rk.seq)),
                &mut value,
            )?;
            wb.insert(raw, k.clone(), value);
        }
        record(&mut wb, &last);
        wb.commit()?;
        migrated += rows.len() as u64;
        cursor = Some(last);
    }
}

/// The events of decoded blocks, without their seqs.
pub(crate) fn events(decoded: Vec<block::Decoded>) -> Vec<Event> {
    decoded.into_iter().map(|(_, r)| r.event).collect()
}

/// A raw key's seq, or a corrupt error naming the journal row that pointed at it.
pub(crate) fn journal_block_key(body: &[u8]) -> Result<(&[u8], &[u8])> {
    let mut r = KeyReader::new(body, "journal block");
    let stream = r.skip_str()?;
    let key = r.skip_str()?;
    r.time()?;
    r.u64()?;
    let len = stream.len() + key.len() + 16;
    if body.len() < len {
        return Err(Error::corrupt("journal block", "truncated"));
    }
    Ok(body.split_at(len))
}
