//! Group commit: the caller that finds no commit under way writes every waiting batch
//! in one storage batch and fsyncs once for all of them.
//!
//! Why groups: an fsync costs milliseconds whatever it covers, so the rate of durable
//! commits is bounded by fsyncs, not bytes. Callers queue their batch; the first one
//! that finds no commit running becomes the group's leader: it takes everything queued,
//! assigns sequence numbers in queue order, writes one fjall write batch across
//! keyspaces, persists it with `SyncAll`, answers every caller of the group and hands
//! the lead on. While it is fsyncing, new batches queue up and form the next group,
//! which one of their callers leads. There is no committer thread and no second queue:
//! the server's writer, the only caller in normal operation, commits on its own thread.
//!
//! The leader is the store's only writer in normal operation: besides the batches'
//! events, results, dead letters and checkpoints it writes the sinks' deliveries and
//! cursors and deletes what retention removes, all in the group's one write batch. (The
//! exceptions are opening a store, which writes the format version or migrates before
//! any commit, and `reckon repair`'s offline removals.)
//!
//! A failed write or fsync poisons the store: what reached the disk is unknown, so no
//! later write may build on it. Every caller of the failed group, and every later one,
//! gets `Error::Poisoned`; reopening the store recovers the last durable state.

use crate::colsets;
use crate::error::{Error, Result};
use crate::keys;
use crate::raw;
use crate::store::{
    DELIVERIES_KEPT, JOURNAL_TICK, META_LAST_CHANGE, META_LAST_DEAD_LETTER, META_LAST_SEQ,
    RETENTION_ROWS_PER_COMMIT, Shared, journal_row_span, put_fingerprint, result_prefix,
};
use crate::values;
use crate::{CommitBatch, Committed};
use fjall::{OwnedWriteBatch, PersistMode};
use reckon_core::EventTime;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;

/// One caller's batch and where to send its answer.
pub(crate) struct Request {
    pub(crate) batch: CommitBatch,
    pub(crate) reply: SyncSender<Result<Committed>>,
}

/// Batches waiting for a commit.
#[derive(Default)]
pub(crate) struct Queue {
    /// Batches whose callers wait: the next leader commits them.
    pub(crate) pending: Vec<Request>,
    /// Staged batches (`Store::stage`): they start no commit, but go first into the
    /// next group.
    pub(crate) deferred: Vec<Request>,
    /// A leader is writing a group (the lead passes on once it has answered).
    pub(crate) leading: bool,
    pub(crate) shutdown: bool,
}

/// Retention of one stream not finished yet: carried over from commit to commit.
#[derive(Debug)]
pub(crate) struct RetentionJob {
    /// Delete raw rows with event time `< before`.
    before: EventTime,
    /// The raw key to go on scanning from (the stream's prefix at the start).
    cursor: Vec<u8>,
    /// Rows deleted and not yet reported to a batch naming the stream.
    unreported: u64,
    /// Every row older than `before` was deleted (kept only until `unreported` is).
    done: bool,
}

/// Counters only the group's leader changes (under `Shared::committer`), recovered
/// from `meta` on open.
#[derive(Debug)]
pub(crate) struct CommitterState {
    pub(crate) last_seq: u64,
    pub(crate) last_dead_letter: u64,
    pub(crate) last_change: u64,
    /// Newest stored version of recently written windows (`results` prefix → version),
    /// so the version guard needs no read for hot windows. Only the committer writes
    /// results, so the cache is never stale; it is cleared when it grows too big.
    pub(crate) versions: HashMap<Vec<u8>, u32>,
    /// Retention still to do, per stream (see [`retention`]).
    pub(crate) retention: BTreeMap<Arc<str>, RetentionJob>,
}

/// Series keys retention visits at most per commit group (a seek each), so a stream with
/// very many keys and nothing to delete does not hold up one commit for long either.
const RETENTION_KEYS_PER_COMMIT: usize = 100_000;

/// The version cache is cleared beyond this many windows (about 100 MB at most).
const VERSION_CACHE_LIMIT: usize = 1 << 20;

/// Commits `group` as its leader and answers every caller in it. The caller holds the
/// lead (`Queue::leading`) and not the queue's lock.
pub(crate) fn lead(shared: &Shared, group: Vec<Request>) {
    if group.is_empty() {
        return;
    }
    if shared.poisoned.load(Ordering::SeqCst) {
        for r in group {
            let _ = r.reply.send(Err(shared.poison_error()));
        }
        return;
    }
    let mut state = shared.committer.lock().unwrap_or_else(|e| e.into_inner());
    match commit_group(shared, &mut state, &group) {
        Ok(answers) => {
            shared.last_seq.store(state.last_seq, Ordering::SeqCst);
            shared
                .last_change
                .store(state.last_change, Ordering::SeqCst);
            shared
                .commits
                .fetch_add(group.len() as u64, Ordering::SeqCst);
            for (r, a) in group.into_iter().zip(answers) {
                let _ = r.reply.send(Ok(a));
            }
        }
        Err(e) => {
            shared.set_poison(&e.to_string());
            for r in group {
                let _ = r.reply.send(Err(shared.poison_error()));
            }
        }
    }
}

/// Held by a group's leader: dropping it, after the group is answered or while a
/// panic unwinds, hands the lead on and wakes the waiting callers (so a panic in a
/// commit cannot leave them waiting for ever: their replies are dropped with the group,
/// which they see as `Error::Closed`).
pub(crate) struct LeadGuard<'a>(pub(crate) &'a Shared);

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.leading = false;
        drop(q);
        self.0.wake.notify_all();
    }
}

/// Takes the lead if no group is being written and something waits: the group is
/// everything staged, then everything pending. `None` if another caller leads or
/// nothing waits.
pub(crate) fn take_lead(q: &mut Queue) -> Option<Vec<Request>> {
    if q.leading || (q.pending.is_empty() && q.deferred.is_empty()) {
        return None;
    }
    q.leading = true;
    let mut group = std::mem::take(&mut q.deferred);
    group.append(&mut q.pending);
    Some(group)
}

/// Writes and fsyncs one group; on success the state has advanced past it.
fn commit_group(
    shared: &Shared,
    state: &mut CommitterState,
    group: &[Request],
) -> Result<Vec<Committed>> {
    let ks = &shared.ks;
    let _w = shared.write_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut wb = shared.db.batch();
    let mut seq = state.last_seq;
    let mut dead = state.last_dead_letter;
    let mut change = state.last_change;
    let mut answers = Vec::with_capacity(group.len());
    // Newest version per window and newest time per id, including this group's writes.
    if state.versions.len() > VERSION_CACHE_LIMIT {
        state.versions.clear();
    }
    // This group's versions go to a copy-on-write overlay: if the group fails, the
    // cache must not remember versions that never became durable.
    let mut versions: HashMap<Vec<u8>, u32> = HashMap::new();
    // Column sets this group adds, published once it is durable (like `versions`).
    let mut new_sets = colsets::NewSets::default();
    let mut id_times: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut checkpoint_seqs: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut dropped: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut key = Vec::with_capacity(128);
    let mut journal_row = Vec::new();
    // Raw blocks are inserted in key order: the memtable is a skip list, and inserting
    // in arrival order makes every insert a walk through cold memory; sorted,
    // neighbouring inserts share their path.
    let mut raw_rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    // Sink cursors and delivery rows (`None`: pruned), the last write of a key winning.
    let mut sink_states: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut delivery_rows: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut catalog_rows: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();

    for req in group {
        let b = &req.batch;
        let first_seq = seq + 1;
        // One journal row per batch: key = its first seq, value = entry count and the
        // entries (the raw-log keys of the batch's blocks, then the ticks).
        journal_row.clear();
        let entries = b.events.len() + b.ticks.len();
        journal_row.extend_from_slice(
            &u32::try_from(entries)
                .map_err(|_| Error::Encode {
                    what: "journal row",
                    reason: format!("{entries} entries in one batch (at most 2^32 - 1)"),
                })?
                .to_be_bytes(),
        );
        for rec in &b.events {
            seq += 1;
            let e = &rec.event;
            if let Some(id) = &e.id {
                let mut ik = Vec::with_capacity(e.stream.len() + 18);
                keys::put_str(&mut ik, &e.stream);
                put_fingerprint(&mut ik, id);
                let known = match id_times.get(&ik) {
                    Some(t) => Some(*t),
                    None if b.ids_checked => None,
                    None => match ks.ids.get(&ik)? {
                        Some(v) => Some(keys::time_from_bytes(&v, "ids value")?),
                        None => None,
                    },
                };
                if known.is_none_or(|t| t < e.time.0) {
                    wb.insert(&ks.ids, ik.as_slice(), keys::time_bytes(e.time.0));
                    id_times.insert(ik, e.time.0);
                }
            }
        }
        // The batch's events as blocks (one per stream, key and span), which its
        // journal row names.
        raw::append_blocks(&b.events, first_seq, &mut raw_rows, &mut journal_row)?;
        for (pipeline, at) in &b.ticks {
            seq += 1;
            journal_row.push(JOURNAL_TICK);
            values::encode_tick(pipeline, *at, &mut journal_row)?;
        }
        if entries > 0 {
            wb.insert(&ks.journal, first_seq.to_be_bytes(), journal_row.as_slice());
        }
        // One version per window per batch: corrections of one window inside one
        // commit coalesce into its newest version (the ones it replaces were never
        // durable, so no reader could have seen them).
        let prefixes: Vec<Vec<u8>> = b
            .emissions
            .iter()
            .map(|em| result_prefix(&em.pipeline, &em.key, em.window.start))
            .collect();
        let mut newest: HashMap<&[u8], u32> = HashMap::with_capacity(prefixes.len());
        for (em, prefix) in b.emissions.iter().zip(&prefixes) {
            let v = newest.entry(prefix.as_slice()).or_insert(em.version.0);
            *v = (*v).max(em.version.0);
        }
        for (em, prefix) in b.emissions.iter().zip(&prefixes) {
            if newest
                .get(prefix.as_slice())
                .is_some_and(|v| *v > em.version.0)
            {
                continue; // superseded inside this batch
            }
            let prefix = prefix.clone();
            let stored = match versions
                .get(&prefix)
                .or_else(|| state.versions.get(&prefix))
            {
                Some(v) => Some(*v),
                None => match ks.results.prefix(&prefix).next_back() {
                    Some(kv) => {
                        let k = kv.key()?;
                        let mut r = keys::KeyReader::new(&k[prefix.len()..], "results");
                        Some(r.u32()?)
                    }
                    None => None,
                },
            };
            if stored.is_some_and(|v| v >= em.version.0) {
                continue; // a replay or a duplicate: the newer version stays
            }
            let mut k = prefix.clone();
            keys::put_u32(&mut k, em.version.0);
            // The change feed: the next change number points at the stored version.
            change += 1;
            wb.insert(&ks.changes, change.to_be_bytes(), k.as_slice());
            // The row names its columns by id; a set new to the pipeline is written
            // in this same storage batch, so no durable row names a set that is not.
            let column_set = shared.colsets.id_for(
                &ks.meta,
                &mut wb,
                &mut new_sets,
                &em.pipeline,
                &em.columns,
            )?;
            wb.insert(&ks.results, k, values::encode_emission(em, column_set)?);
            versions.insert(prefix, em.version.0);
        }
        for d in &b.dead_letters {
            dead += 1;
            key.clear();
            keys::put_str(&mut key, &d.stream);
            keys::put_u64(&mut key, dead);
            wb.insert(&ks.dead, key.as_slice(), values::encode_dead_letter(d)?);
        }
        for p in &b.dropped_checkpoints {
            let mut k = Vec::new();
            keys::put_str(&mut k, p);
            wb.remove(&ks.checkpoints, k.as_slice());
            checkpoint_seqs.remove(&k);
            dropped.insert(k);
        }
        for c in &b.checkpoints {
            let mut k = Vec::new();
            keys::put_str(&mut k, &c.pipeline);
            let mut v = Vec::with_capacity(8 + c.snapshot.len());
            keys::put_u64(&mut v, c.seq);
            v.extend_from_slice(&c.snapshot);
            wb.insert(&ks.checkpoints, k.as_slice(), v);
            dropped.remove(&k);
            checkpoint_seqs.insert(k, c.seq);
        }
        for d in &b.deliveries {
            let mut name = Vec::with_capacity(d.sink.len() + 2);
            keys::put_str(&mut name, &d.sink);
            let mut dk = name.clone();
            keys::put_u64(&mut dk, d.id);
            delivery_rows.insert(dk, Some(d.record.clone()));
            if let Some(old) = d.id.checked_sub(DELIVERIES_KEPT) {
                let mut ok = name.clone();
                keys::put_u64(&mut ok, old);
                delivery_rows.insert(ok, None);
            }
            let mut v = Vec::with_capacity(16);
            keys::put_u64(&mut v, d.cursor);
            keys::put_u64(&mut v, d.id);
            sink_states.insert(name, v);
        }
        for (k, v) in &b.catalog {
            catalog_rows.insert(k.clone(), v.clone());
        }
        answers.push(Committed {
            first_seq,
            last_seq: seq,
            last_change: change,
            retention_deleted: 0,
            retention_pending: false,
        });
    }

    // Sinks: one write per key (the last of the group wins), so no key is written twice
    // in one storage batch.
    for (k, v) in sink_states {
        wb.insert(&ks.sinks, k, v);
    }
    for (k, v) in delivery_rows {
        match v {
            Some(v) => wb.insert(&ks.deliveries, k, v),
            None => wb.remove(&ks.deliveries, k),
        }
    }
    for (k, v) in catalog_rows {
        match v {
            Some(v) => wb.insert(&ks.catalog, k, v),
            None => wb.remove(&ks.catalog, k),
        }
    }

    // Retention, after every batch's events: the ids this group writes are known, so an
    // id is never written and removed in one storage batch. The rows this group inserts
    // are not in the keyspace yet, so they are never seen (a later retention gets them).
    let mut retention = std::mem::take(&mut state.retention);
    for req in group {
        for (stream, before) in &req.batch.retention {
            match retention.get_mut(stream) {
                Some(job) if job.done => {
                    // Finished earlier (its count not reported yet): scan again, rows
                    // may have been committed since.
                    job.done = false;
                    job.before = job.before.max(*before);
                    job.cursor = stream_prefix(stream);
                }
                Some(job) if job.before >= *before => {}
                Some(job) => {
                    // A later horizon: scan the stream again from the start.
                    job.before = *before;
                    job.cursor = stream_prefix(stream);
                }
                None => {
                    retention.insert(
                        stream.clone(),
                        RetentionJob {
                            before: *before,
                            cursor: stream_prefix(stream),
                            unreported: 0,
                            done: false,
                        },
                    );
                }
            }
        }
    }
    let mut budget = RetentionBudget {
        rows: RETENTION_ROWS_PER_COMMIT,
        keys: RETENTION_KEYS_PER_COMMIT,
    };
    let mut doomed_ids: HashSet<Vec<u8>> = HashSet::new();
    let mut deleted_total = 0u64;
    for (stream, job) in retention.iter_mut().filter(|(_, j)| !j.done) {
        if budget.rows == 0 || budget.keys == 0 {
            break;
        }
        let (n, done) = retain(
            shared,
            &mut wb,
            stream,
            job,
            &mut budget,
            &id_times,
            &mut doomed_ids,
        )?;
        job.unreported += n;
        job.done = done;
        deleted_total += n;
    }
    // Counts go to this group's first batch naming the stream; a finished job stays
    // until its count is reported (`StoreStats::retention_deleted` counts everything).
    for (req, answer) in group.iter().zip(answers.iter_mut()) {
        for (stream, _) in &req.batch.retention {
            if let Some(job) = retention.get_mut(stream) {
                answer.retention_deleted += std::mem::take(&mut job.unreported);
                answer.retention_pending |= !job.done;
            }
        }
    }
    retention.retain(|_, j| !j.done || j.unreported > 0);

    raw_rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in raw_rows {
        wb.insert(&ks.raw, k, v);
    }
    if seq != state.last_seq {
        wb.insert(&ks.meta, META_LAST_SEQ, seq.to_be_bytes());
    }
    if change != state.last_change {
        wb.insert(&ks.meta, META_LAST_CHANGE, change.to_be_bytes());
    }
    if dead != state.last_dead_letter {
        wb.insert(&ks.meta, META_LAST_DEAD_LETTER, dead.to_be_bytes());
    }
    if !checkpoint_seqs.is_empty() || !dropped.is_empty() {
        // Every pipeline's checkpoint, with this group's replacing the stored ones (and
        // without those it drops).
        let mut min = u64::MAX;
        for kv in ks.checkpoints.iter() {
            let (k, v) = kv.into_inner()?;
            if checkpoint_seqs.contains_key(k.as_ref()) || dropped.contains(k.as_ref()) {
                continue;
            }
            let s = keys::u64_from_bytes(v.get(..8).unwrap_or_default(), "checkpoint value")?;
            min = min.min(s);
        }
        min = checkpoint_seqs.values().fold(min, |m, s| m.min(*s));
        // No checkpoint left at all: nothing says what is covered.
        if min == u64::MAX {
            min = 0;
        }
        // Delete the rows all of whose entries are covered. Only rows durable before
        // this group are seen (this group's rows are not in the keyspace yet), so a
        // row is never inserted and removed in one storage batch.
        for kv in ks.journal.range(..=min.to_be_bytes()) {
            let (k, v) = kv.into_inner()?;
            let (_, last) = journal_row_span(&k, &v)?;
            if last > min {
                break;
            }
            wb.remove(&ks.journal, k);
        }
    }

    wb.commit()?;
    if shared.fail_next_persist.swap(false, Ordering::SeqCst) {
        return Err(Error::Io(std::io::Error::other(
            "injected fsync failure (fail_next_persist_for_tests)",
        )));
    }
    shared.db.persist(PersistMode::SyncAll)?;
    shared.fsyncs.fetch_add(1, Ordering::SeqCst);

    state.last_seq = seq;
    state.last_dead_letter = dead;
    state.last_change = change;
    state.versions.extend(versions);
    shared.colsets.publish(new_sets);
    state.retention = retention;
    shared
        .retention_deleted
        .fetch_add(deleted_total, Ordering::SeqCst);
    Ok(answers)
}

/// What retention may still do in this commit group.
struct RetentionBudget {
    rows: usize,
    keys: usize,
}

fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(stream.len() + 2);
    keys::put_str(&mut p, stream);
    p
}

/// Adds to `wb` the removal of `stream`'s raw rows older than `job.before` (and of their
/// ids, unless the id's newest time is kept or this group writes it), from `job.cursor`
/// on, key by key (one range per series key), within `budget`. Returns how many rows
/// it removed and whether the stream is done; if not, `job.cursor` is where to go on
/// (the first row not removed, or the next series key).
fn retain(
    shared: &Shared,
    wb: &mut OwnedWriteBatch,
    stream: &str,
    job: &mut RetentionJob,
    budget: &mut RetentionBudget,
    id_times: &HashMap<Vec<u8>, i64>,
    doomed_ids: &mut HashSet<Vec<u8>>,
) -> Result<(u64, bool)> {
    let ks = &shared.ks;
    let prefix = stream_prefix(stream);
    let end = keys::after_str_prefix(&prefix);
    let mut deleted = 0u64;
    let mut id_key = prefix.clone();
    let stream_name: Arc<str> = Arc::from(stream);
    let mut names = values::Interner::default();
    let mut series = raw::Keys::default();
    loop {
        if budget.rows == 0 || budget.keys == 0 {
            return Ok((deleted, false));
        }
        let Some(kv) = ks.raw.range(job.cursor.clone()..end.clone()).next() else {
            return Ok((deleted, true));
        };
        budget.keys -= 1;
        let k = kv.key()?;
        let mut r = keys::KeyReader::new(k.get(prefix.len()..).unwrap_or_default(), "raw");
        let key_bytes = r.skip_str()?;
        let mut kp = prefix.clone();
        kp.extend_from_slice(key_bytes);
        // Resume inside this key if the cursor points into it.
        let lo = if job.cursor.starts_with(&kp) {
            job.cursor.clone()
        } else {
            kp.clone()
        };
        // Every block holding an event older than `before` has a key time below it.
        let mut hi = kp.clone();
        keys::put_time(&mut hi, job.before.0);
        let key = series.get(key_bytes, "raw")?;
        for kv in ks.raw.range(lo..hi) {
            let (k, v) = kv.into_inner()?;
            if budget.rows == 0 {
                job.cursor = k.to_vec();
                return Ok((deleted, false));
            }
            let decoded = raw::decode_block(&stream_name, &key, &k, &v, &mut names)?;
            let (mut old, mut kept): (Vec<_>, Vec<_>) = decoded
                .into_iter()
                .partition(|(_, r)| r.event.time.0 < job.before.0);
            if old.is_empty() {
                continue;
            }
            // Within the budget exactly: the oldest events go first (blocks are sorted
            // by time), the rest of the block waits for the next commit.
            let unfinished = old.len() > budget.rows;
            if unfinished {
                kept.extend(old.drain(budget.rows..));
                kept.sort_unstable_by_key(|(seq, r)| (r.event.time, *seq));
            }
            budget.rows -= old.len();
            deleted += old.len() as u64;
            for (_, r) in &old {
                let Some(id) = &r.event.id else { continue };
                id_key.truncate(prefix.len());
                put_fingerprint(&mut id_key, id);
                if !id_times.contains_key(&id_key)
                    && !doomed_ids.contains(&id_key)
                    && let Some(t) = ks.ids.get(&id_key)?
                    && keys::time_from_bytes(&t, "ids value")? < job.before.0
                {
                    wb.remove(&ks.ids, id_key.clone());
                    doomed_ids.insert(id_key.clone());
                }
            }
            if kept.is_empty() {
                wb.remove(&ks.raw, k.clone());
            } else {
                wb.insert(&ks.raw, k.clone(), raw::rewrite(&k, &kept)?);
            }
            if unfinished {
                job.cursor = k.to_vec();
                return Ok((deleted, false));
            }
        }
        job.cursor = keys::after_str_prefix(&kp);
    }
}
