//! The store: opening, the format-version check, and every read.
//!
//! Writes go through group commit (`commit.rs`); reads go straight to the
//! keyspaces. fjall applies one write batch under one sequence number, so a read sees a
//! commit group entirely or not at all.

use crate::colsets::ColumnSets;
use crate::commit::{self, CommitterState, Request};
use crate::error::{Error, Result};
use crate::keys::{self, KeyReader};
use crate::raw;
use crate::values::{self, ColumnsCache, Interner};
use crate::{
    ChangesPage, Checkpoint, CommitBatch, Committed, DeadLetter, Delivery, FORMAT_VERSION,
    JournalEntry, RawRecord, SinkState, StoreStats,
};
use fjall::config::{BlockSizePolicy, CompressionPolicy, FilterPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use reckon_core::{Emission, Event, EventId, EventTime, Key, ProcessingTime};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

/// fjall's journal is bounded to this size: once it is exceeded, memtables are flushed
/// and old journal files deleted, so a restart replays at most this much.
const MAX_JOURNALING_SIZE: u64 = 64 * 1024 * 1024;
/// Deliveries kept per sink in the delivery log.
pub const DELIVERIES_KEPT: u64 = 10_000;
/// Retention deletes at most this many raw rows per commit group (bounding the group's
/// write batch and how long it holds up the commits behind it); the rest is carried
/// over to later commits.
pub const RETENTION_ROWS_PER_COMMIT: usize = 10_000;

pub(crate) const META_FORMAT_VERSION: &[u8] = b"format_version";
pub(crate) const META_LAST_SEQ: &[u8] = b"last_seq";
pub(crate) const META_LAST_DEAD_LETTER: &[u8] = b"last_dead_letter";
pub(crate) const META_LAST_CHANGE: &[u8] = b"last_change";

/// Journal value tags.
pub(crate) const JOURNAL_EVENT: u8 = 0;
pub(crate) const JOURNAL_TICK: u8 = 1;

/// The keyspaces of the store (names and layouts in `docs/storage.md`).
pub(crate) struct Keyspaces {
    pub(crate) meta: Keyspace,
    pub(crate) raw: Keyspace,
    pub(crate) ids: Keyspace,
    pub(crate) journal: Keyspace,
    pub(crate) results: Keyspace,
    pub(crate) checkpoints: Keyspace,
    pub(crate) dead: Keyspace,
    pub(crate) changes: Keyspace,
    pub(crate) sinks: Keyspace,
    pub(crate) deliveries: Keyspace,
    pub(crate) catalog: Keyspace,
}

/// Memtable size of the big keyspaces; bounds how much journal fjall replays on open.
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

impl Keyspaces {
    fn open(db: &Database) -> Result<Keyspaces> {
        // Range-scanned keyspaces: no bloom filters (they only help point reads), lz4 in
        // every level (fjall's default leaves the first two levels uncompressed) and
        // 16 KiB blocks, which compress better than the default 4 KiB.
        // Memtables of 8 MiB (fjall's default is 64 MiB): fjall replays the journal of
        // every unflushed memtable on open, so smaller memtables bound restart time.
        let scanned = || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(MEMTABLE_BYTES)
                .filter_policy(FilterPolicy::disabled())
                .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
                .data_block_size_policy(BlockSizePolicy::all(16 * 1024))
        };
        Ok(Keyspaces {
            meta: db.keyspace("meta", KeyspaceCreateOptions::default)?,
            raw: db.keyspace("raw", scanned)?,
            // Point-read keyspace (fingerprints are random: compression would not help).
            ids: db.keyspace("ids", || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })?,
            journal: db.keyspace("journal", scanned)?,
            results: db.keyspace("results", scanned)?,
            checkpoints: db.keyspace("checkpoints", KeyspaceCreateOptions::default)?,
            dead: db.keyspace("dead_letters", scanned)?,
            changes: db.keyspace("changes", scanned)?,
            sinks: db.keyspace("sinks", KeyspaceCreateOptions::default)?,
            deliveries: db.keyspace("deliveries", scanned)?,
            catalog: db.keyspace("catalog", KeyspaceCreateOptions::default)?,
        })
    }
}

/// State shared by the store handles.
pub(crate) struct Shared {
    pub(crate) db: Database,
    pub(crate) ks: Keyspaces,
    pub(crate) queue: Mutex<commit::Queue>,
    /// Notified when a leader has answered its group and handed the lead on.
    pub(crate) wake: Condvar,
    /// The counters and caches of the commit path, locked by the group's leader.
    pub(crate) committer: Mutex<CommitterState>,
    /// Set (with the cause) by the first failed write or fsync; never cleared.
    pub(crate) poison: Mutex<Option<String>>,
    pub(crate) poisoned: AtomicBool,
    pub(crate) fail_next_persist: AtomicBool,
    /// Held while a storage batch is built and written, so that repair's removals and
    /// the committer never interleave their read-then-write of the ids keyspace.
    pub(crate) write_lock: Mutex<()>,
    pub(crate) last_seq: AtomicU64,
    /// The newest change-feed sequence number durable.
    pub(crate) last_change: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) retention_deleted: AtomicU64,
    /// The pipelines' column sets, named by id in result rows.
    pub(crate) colsets: ColumnSets,
}

impl Shared {
    pub(crate) fn poison_error(&self) -> Error {
        let msg = self
            .poison
            .lock()
            .map(|p| p.clone().unwrap_or_default())
            .unwrap_or_else(|e| e.into_inner().clone().unwrap_or_default());
        Error::Poisoned(msg)
    }

    pub(crate) fn set_poison(&self, cause: &str) {
        let mut p = self.poison.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(cause.to_string());
        }
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// A cache resolving the column names of result rows.
    pub(crate) fn columns_cache(&self) -> ColumnsCache<'_> {
        ColumnsCache::new(&self.colsets, &self.ks.meta)
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            Err(self.poison_error())
        } else {
            Ok(())
        }
    }
}

/// The last store handle: dropping it commits what is still staged (a [`Staged`]
/// dropped without waiting) and closes the database.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let shared = &self.shared;
        let group = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.shutdown = true;
            // No other handle exists, so no other caller can be leading or waiting.
            commit::take_lead(&mut q)
        };
        if let Some(group) = group {
            commit::lead(shared, group);
        }
    }
}

/// A batch queued for the committer ([`Store::stage`]); [`Staged::wait`] gives its
/// answer once it is durable.
#[must_use = "a staged batch is committed with the next group; wait for its answer"]
pub struct Staged {
    store: Store,
    answer: Answer,
}

enum Answer {
    /// Answered already (refused, or nothing to write).
    Ready(Result<Committed>),
    Waiting(mpsc::Receiver<Result<Committed>>),
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged").finish_non_exhaustive()
    }
}

impl Staged {
    /// Waits until the batch is durable (or refused). If it is still staged, it is
    /// committed now (with whatever else is waiting).
    pub fn wait(self) -> Result<Committed> {
        let rx = match self.answer {
            Answer::Ready(r) => return r,
            Answer::Waiting(rx) => rx,
        };
        let shared = self.store.shared();
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Answered by the leader of the group it went into (maybe this caller).
            match rx.try_recv() {
                Ok(answer) => return answer,
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(Error::Closed(
                        "a commit group ended without answering (this is a bug in reckon)".into(),
                    ));
                }
            }
            // No commit running: lead the next group (it holds this batch, staged or
            // pending). Else wait until the leader hands on.
            match commit::take_lead(&mut q) {
                Some(group) => {
                    drop(q);
                    let lead = commit::LeadGuard(shared);
                    commit::lead(shared, group);
                    drop(lead);
                    q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                }
                None => q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// reckon's durable store. Cheap to clone (a handle); safe to share between threads.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("last_seq", &self.last_seq())
            .field("poisoned", &self.shared().poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Store {
    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Opens the store at `path`, creating it if it does not exist.
    ///
    /// A new store records [`FORMAT_VERSION`]; an existing one must have a version this
    /// build reads, else [`Error::FormatTooNew`] ("store format 2 is newer than this
    /// reckon supports (1); upgrade reckon"). Opening replays fjall's journal (bounded
    /// to 64 MiB), dropping a torn last write if the previous process died mid-write.
    pub fn open(path: &Path) -> Result<Store> {
        let db = open_database(path)?;
        let ks = Keyspaces::open(&db)?;
        check_format(&db, &ks)?;

        let meta_u64 = |name: &[u8]| -> Result<u64> {
            match ks.meta.get(name)? {
                Some(v) => keys::u64_from_bytes(&v, "meta value"),
                None => Ok(0),
            }
        };
        let mut last_seq = meta_u64(META_LAST_SEQ)?;
        // The meta counter is written in the same batch as the entries, so they agree;
        // the journal's last row is a second witness.
        if let Some(kv) = ks.journal.last_key_value() {
            let (k, v) = kv.into_inner()?;
            last_seq = last_seq.max(journal_row_span(&k, &v)?.1);
        }
        let mut last_change = meta_u64(META_LAST_CHANGE)?;
        if let Some(kv) = ks.changes.last_key_value() {
            let k = kv.key()?;
            last_change = last_change.max(keys::u64_from_bytes(&k, "changes key")?);
        }
        let colsets = ColumnSets::load(&ks.meta)?;
        let state = CommitterState {
            last_seq,
            last_dead_letter: meta_u64(META_LAST_DEAD_LETTER)?,
            last_change,
            versions: std::collections::HashMap::new(),
            retention: std::collections::BTreeMap::new(),
        };

        let shared = Arc::new(Shared {
            db,
            ks,
            queue: Mutex::new(commit::Queue::default()),
            wake: Condvar::new(),
            committer: Mutex::new(state),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            fail_next_persist: AtomicBool::new(false),
            write_lock: Mutex::new(()),
            last_seq: AtomicU64::new(last_seq),
            last_change: AtomicU64::new(last_change),
            commits: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            retention_deleted: AtomicU64::new(0),
            colsets,
        });
        Ok(Store {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Writes `batch` atomically and durably.
    ///
    /// Everything in the batch goes into one storage write batch across keyspaces,
    /// which is fsync'd before this returns: after `Ok`, the batch survives a crash;
    /// after a crash during the call, either all of it is there or none of it.
    ///
    /// Group commit: the caller that finds no commit running takes every batch
    /// waiting, writes them in one storage batch, fsyncs once and answers all their
    /// callers, so concurrent callers share an fsync (see `commit.rs`). Sequence numbers are assigned in commit order.
    ///
    /// Emissions with a version not newer than the stored latest of their window are
    /// ignored. A checkpoint replaces its pipeline's checkpoint, and journal entries
    /// that were durable before this commit and that every pipeline's checkpoint covers
    /// are deleted.
    ///
    /// A failed write or fsync poisons the store: that commit and every later one
    /// return [`Error::Poisoned`] until the store is reopened.
    pub fn commit(&self, batch: CommitBatch) -> Result<Committed> {
        let staged = self.enqueue(batch, true);
        staged.wait()
    }

    /// Queues `batch` to be written with the **next** commit group, whoever's commit
    /// starts it, without starting one: a caller about to commit anyway (the server's
    /// writer, with a webhook's delivery in hand) gets the staged batch into its own
    /// group and fsync. [`Staged::wait`] returns once it is durable, starting a commit
    /// of its own if none came. Dropping the [`Staged`] does not cancel the batch.
    ///
    /// ```
    /// # use reckon_store::{CommitBatch, Delivery, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let delivery = Delivery { sink: "slack".into(), id: 1, cursor: 0, record: b"{}".to_vec() };
    /// let staged = store.stage(CommitBatch { deliveries: vec![delivery], ..CommitBatch::default() });
    /// // ... the caller's own commit, which carries the staged batch along ...
    /// staged.wait()?;
    /// assert_eq!(store.sink_state("slack")?.last_delivery, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stage(&self, batch: CommitBatch) -> Staged {
        self.enqueue(batch, false)
    }

    /// Queues `batch`: `pending` for the next group, else staged (it starts no commit).
    fn enqueue(&self, batch: CommitBatch, pending: bool) -> Staged {
        let shared = self.shared();
        let done = |r: Result<Committed>| Staged {
            store: self.clone(),
            answer: Answer::Ready(r),
        };
        if let Err(e) = shared.check_writable() {
            return done(Err(e));
        }
        if batch.is_empty() {
            let last = shared.last_seq.load(Ordering::SeqCst);
            return done(Ok(Committed {
                first_seq: last + 1,
                last_seq: last,
                last_change: self.last_change(),
                retention_deleted: 0,
                retention_pending: false,
            }));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let Ok(mut q) = shared.queue.lock() else {
                return done(Err(Error::Closed("commit queue lock poisoned".into())));
            };
            if q.shutdown {
                return done(Err(Error::Closed("the store is shutting down".into())));
            }
            let request = Request { batch, reply };
            if pending {
                q.pending.push(request);
            } else {
                q.deferred.push(request);
            }
        }
        Staged {
            store: self.clone(),
            answer: Answer::Waiting(answer),
        }
    }

    /// The sequence number of the last durable journal entry (0 if none yet).
    pub fn last_seq(&self) -> u64 {
        self.shared().last_seq.load(Ordering::SeqCst)
    }

    /// The number of the newest durable change (stored result version); 0 if none.
    pub fn last_change(&self) -> u64 {
        self.shared().last_change.load(Ordering::SeqCst)
    }

    /// Commit and fsync counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.shared().commits.load(Ordering::SeqCst),
            fsyncs: self.shared().fsyncs.load(Ordering::SeqCst),
            retention_deleted: self.shared().retention_deleted.load(Ordering::SeqCst),
        }
    }

    /// Whether a failed write poisoned the store.
    pub fn is_poisoned(&self) -> bool {
        self.shared().poisoned.load(Ordering::SeqCst)
    }

    /// Test hook: the next fsync of a commit group fails as if the disk had failed.
    #[doc(hidden)]
    pub fn fail_next_persist_for_tests(&self) {
        self.shared()
            .fail_next_persist
            .store(true, Ordering::SeqCst);
    }

    // ---------------------------------------------------------------- raw log

    /// Events of `stream` and `key` with `start <= time < end`, in (time, seq) order.
    pub fn raw_range(
        &self,
        stream: &str,
        key: &Key,
        start: EventTime,
        end: EventTime,
    ) -> Result<Vec<Event>> {
        Ok(raw::events(raw::range(
            &self.shared().ks.raw,
            stream,
            key,
            start.0,
            end.0,
        )?))
    }

    /// Every raw event of `stream`, in (key, time, seq) order (for `verify`).
    pub fn raw_scan(&self, stream: &str) -> Result<Vec<Event>> {
        Ok(self
            .raw_records(stream)?
            .into_iter()
            .map(|r| r.event)
            .collect())
    }

    /// Every raw record of `stream` (with partition and ingest time), in (key, time,
    /// seq) order.
    pub fn raw_records(&self, stream: &str) -> Result<Vec<RawRecord>> {
        raw::scan(&self.shared().ks.raw, stream)
    }

    /// The distinct series keys of `stream` in the raw log, in key order, and the bytes
    /// of its raw blocks (for per-tenant quotas; one scan of the stream's raw log).
    pub fn raw_usage(&self, stream: &str) -> Result<(Vec<Key>, u64)> {
        raw::usage(&self.shared().ks.raw, stream)
    }

    /// The journal after `seq` (exclusive), in sequence order: what must be replayed
    /// after restoring a checkpoint that covers `seq`. An event whose raw row was
    /// already deleted by retention is left out (see `docs/storage.md`).
    pub fn journal_after(&self, seq: u64) -> Result<Vec<(u64, JournalEntry)>> {
        let mut out = Vec::new();
        let Some(from) = seq.checked_add(1) else {
            return Ok(out);
        };
        let ks = &self.shared().ks;
        // Rows are keyed by their first seq: start at the row holding `from`, if any.
        let start = match ks.journal.range(..=from.to_be_bytes()).next_back() {
            Some(kv) => kv.key()?.to_vec(),
            None => from.to_be_bytes().to_vec(),
        };
        let mut names = Interner::default();
        let mut series = raw::Keys::default();
        let mut streams = raw::Streams::default();
        let mut row: Vec<(u64, JournalEntry)> = Vec::new();
        let mut ticks: Vec<(Arc<str>, ProcessingTime)> = Vec::new();
        let mut raw_key = Vec::new();
        for kv in ks.journal.range(start..) {
            let (k, v) = kv.into_inner()?;
            let (first, last) = journal_row_span(&k, &v)?;
            if last < from {
                continue;
            }
            let mut rest = v.get(4..).unwrap_or_default();
            // Format 2 rows name one event per entry (its seq is its place in the row);
            // format 3 rows name blocks, whose events carry their seqs. Ticks come
            // last in both, on the row's last seqs.
            let mut n = first;
            row.clear();
            ticks.clear();
            while let Some((&tag, body)) = rest.split_first() {
                let block_key = match tag {
                    JOURNAL_EVENT => {
                        let mut r = KeyReader::new(body, "journal event");
                        let sk = r.skip_str()?;
                        let kk = r.skip_str()?;
                        r.time()?;
                        let len = sk.len() + kk.len() + 8;
                        raw_key.clear();
                        raw_key.extend_from_slice(&body[..len]);
                        keys::put_u64(&mut raw_key, n);
                        n += 1;
                        rest = &body[len..];
                        raw_key.as_slice()
                    }
                    raw::JOURNAL_BLOCK => {
                        let (at, tail) = raw::journal_block_key(body)?;
                        rest = tail;
                        at
                    }
                    JOURNAL_TICK => {
                        let ((pipeline, at), tail) = values::decode_tick(body)?;
                        rest = tail;
                        ticks.push((pipeline, at));
                        continue;
                    }
                    _ => {
                        return Err(Error::corrupt(
                            format!("journal row {first}"),
                            format!("unknown entry tag {tag}"),
                        ));
                    }
                };
                // A missing block was removed by retention (or its events by repair):
                // what is gone is left out.
                let Some(value) = ks.raw.get(block_key)? else {
                    continue;
                };
                let rk = raw::parse_key(block_key)?;
                let stream = streams.get(rk.stream, "journal")?;
                let key = series.get(rk.key, "journal")?;
                for (s, rec) in raw::decode_block(&stream, &key, block_key, &value, &mut names)? {
                    // A format-2 row's entry names exactly one event.
                    if s >= from && (tag != JOURNAL_EVENT || s == n - 1) {
                        row.push((s, JournalEntry::Event(rec)));
                    }
                }
            }
            let tick_first = last + 1 - ticks.len() as u64;
            for (i, (pipeline, at)) in ticks.drain(..).enumerate() {
                let s = tick_first + i as u64;
                if s >= from {
                    row.push((s, JournalEntry::Tick { pipeline, at }));
                }
            }
            row.sort_unstable_by_key(|(s, _)| *s);
            out.append(&mut row);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- ids

    /// For each id: was an event of `stream` with this id committed (and not yet
    /// removed by retention)?
    pub fn ids_seen(&self, stream: &str, ids: &[&EventId]) -> Result<Vec<bool>> {
        let mut prefix = Vec::new();
        keys::put_str(&mut prefix, stream);
        let mut key = prefix.clone();
        ids.iter()
            .map(|id| {
                key.truncate(prefix.len());
                put_fingerprint(&mut key, id);
                Ok(self.shared().ks.ids.contains_key(&key)?)
            })
            .collect()
    }

    // ---------------------------------------------------------------- results

    /// The newest version of the window of `pipeline` and `key` that starts at `start`.
    pub fn latest(&self, pipeline: &str, key: &Key, start: EventTime) -> Result<Option<Emission>> {
        let prefix = result_prefix(pipeline, key, start);
        let Some(kv) = self.shared().ks.results.prefix(&prefix).next_back() else {
            return Ok(None);
        };
        let (k, v) = kv.into_inner()?;
        let version = result_version(&k, prefix.len())?;
        let p: Arc<str> = Arc::from(pipeline);
        values::decode_emission(
            &p,
            key,
            start.0,
            version,
            &v,
            &mut self.shared().columns_cache(),
        )
        .map(Some)
    }

    /// The version `e` replaced: the newest stored version of its window older than
    /// `e.version` (one reverse read), or `None` for a first result.
    pub fn replaced_by(&self, e: &Emission) -> Result<Option<Emission>> {
        let prefix = result_prefix(&e.pipeline, &e.key, e.window.start);
        let mut hi = prefix.clone();
        keys::put_u32(&mut hi, e.version.0);
        let Some(kv) = self
            .shared()
            .ks
            .results
            .range(prefix.clone()..hi)
            .next_back()
        else {
            return Ok(None);
        };
        let (k, v) = kv.into_inner()?;
        let version = result_version(&k, prefix.len())?;
        values::decode_emission(
            &e.pipeline,
            &e.key,
            e.window.start.0,
            version,
            &v,
            &mut self.shared().columns_cache(),
        )
        .map(Some)
    }

    /// Every stored version of one window, in version order (its revision history).
    pub fn history(&self, pipeline: &str, key: &Key, start: EventTime) -> Result<Vec<Emission>> {
        let prefix = result_prefix(pipeline, key, start);
        let p: Arc<str> = Arc::from(pipeline);
        let mut cols = self.shared().columns_cache();
        let mut out = Vec::new();
        for kv in self.shared().ks.results.prefix(&prefix) {
            let (k, v) = kv.into_inner()?;
            let version = result_version(&k, prefix.len())?;
            out.push(values::decode_emission(
                &p, key, start.0, version, &v, &mut cols,
            )?);
        }
        Ok(out)
    }

    /// One bounded page of a window's history: at most `limit` versions newer than
    /// `after` (all without it), in version order, and whether newer ones remain (then
    /// pass the page's last version as the next `after`).
    pub fn history_page(
        &self,
        pipeline: &str,
        key: &Key,
        start: EventTime,
        after: Option<u32>,
        limit: usize,
    ) -> Result<(Vec<Emission>, bool)> {
        let prefix = result_prefix(pipeline, key, start);
        let mut lo = prefix.clone();
        match after {
            None => {}
            Some(v) => match v.checked_add(1) {
                Some(n) => keys::put_u32(&mut lo, n),
                None => return Ok((Vec::new(), false)),
            },
        }
        let mut hi = prefix.clone();
        keys::put_u32(&mut hi, u32::MAX);
        let p: Arc<str> = Arc::from(pipeline);
        let mut cols = self.shared().columns_cache();
        let mut out = Vec::new();
        for kv in self.shared().ks.results.range(lo..=hi) {
            let (k, v) = kv.into_inner()?;
            if out.len() >= limit {
                return Ok((out, true));
            }
            let version = result_version(&k, prefix.len())?;
            out.push(values::decode_emission(
                &p, key, start.0, version, &v, &mut cols,
            )?);
        }
        Ok((out, false))
    }

    /// The newest version of every window of `pipeline` with `from <= start < to`, of
    /// one key or (with `key = None`) of every key, ordered by (key, start).
    ///
    /// With `as_of`, each window is read as it was known at that processing time: its
    /// newest version with `emitted_at <= as_of` ("what did the dashboard show at
    /// 09:00?"); windows first emitted later are left out.
    ///
    /// This reads every matching window into memory; answers to clients should use the
    /// bounded [`Store::windows_page`].
    pub fn windows(
        &self,
        pipeline: &str,
        key: Option<&Key>,
        from: EventTime,
        to: EventTime,
        as_of: Option<ProcessingTime>,
    ) -> Result<Vec<Emission>> {
        Ok(self
            .windows_page(pipeline, key, from, to, as_of, None, usize::MAX)?
            .0)
    }

    /// Like [`Store::windows`], one bounded page at a time: at most `limit` windows
    /// strictly after the position `after` (the `(key, start)` of an earlier page's
    /// last window), in the same (key, start) order, and whether at least one more
    /// matching window follows. A reader that resumes after the last window it got sees
    /// every window exactly once while nothing changes. Memory is bounded by `limit`:
    /// the read stops as soon as it has found `limit + 1` windows.
    #[allow(clippy::too_many_arguments)]
    pub fn windows_page(
        &self,
        pipeline: &str,
        key: Option<&Key>,
        from: EventTime,
        to: EventTime,
        as_of: Option<ProcessingTime>,
        after: Option<(&Key, EventTime)>,
        limit: usize,
    ) -> Result<(Vec<Emission>, bool)> {
        let mut windows = Vec::new();
        if from >= to || limit == 0 {
            return Ok((windows, false));
        }
        let p: Arc<str> = Arc::from(pipeline);
        let mut read = WindowsRead {
            pipeline: &p,
            to,
            as_of,
            cols: self.shared().columns_cache(),
            out: &mut windows,
            want: limit.saturating_add(1),
        };
        let mut pipeline_prefix = Vec::new();
        keys::put_str(&mut pipeline_prefix, pipeline);
        // The first start to read of the key `after` names: just past its window.
        // (`None`: the key's last possible window was read already.)
        let resume = |k: &Key| -> Option<EventTime> {
            match after {
                Some((ak, s)) if ak == k => s.0.checked_add(1).map(|n| EventTime(n.max(from.0))),
                _ => Some(from),
            }
        };
        match key {
            Some(key) => {
                if after.is_some_and(|(ak, _)| ak.as_str() > key.as_str()) {
                    return Ok((windows, false));
                }
                let mut kp = pipeline_prefix.clone();
                keys::put_str(&mut kp, key.as_str());
                if let Some(lo) = resume(key) {
                    self.windows_of_key(&mut read, key, &kp, lo)?;
                }
            }
            None => {
                // Skip-scan: find the next key, read its windows in range, jump past it.
                let end = keys::after_str_prefix(&pipeline_prefix);
                let mut cursor = pipeline_prefix.clone();
                if let Some((ak, _)) = after {
                    // Keys sort as their encoded strings: start at the cursor's key.
                    keys::put_str(&mut cursor, ak.as_str());
                }
                while read.out.len() < read.want
                    && let Some(kv) = self.shared().ks.results.range(cursor..end.clone()).next()
                {
                    let k = kv.key()?;
                    let mut r = KeyReader::new(&k[pipeline_prefix.len()..], "results");
                    let key_bytes = r.skip_str()?;
                    let key =
                        values::key_from_canonical(&KeyReader::new(key_bytes, "results").str()?)?;
                    let mut kp = pipeline_prefix.clone();
                    kp.extend_from_slice(key_bytes);
                    if let Some(lo) = resume(&key) {
                        self.windows_of_key(&mut read, &key, &kp, lo)?;
                    }
                    cursor = keys::after_str_prefix(&kp);
                }
            }
        }
        let more = windows.len() > limit;
        windows.truncate(limit);
        Ok((windows, more))
    }

    /// Reads the windows of one key starting in `[lo, read.to)` into `read.out`, until
    /// it holds `read.want`.
    fn windows_of_key(
        &self,
        read: &mut WindowsRead<'_>,
        key: &Key,
        key_prefix: &[u8],
        lo: EventTime,
    ) -> Result<()> {
        if lo >= read.to || read.out.len() >= read.want {
            return Ok(());
        }
        let (mut lo_k, mut hi_k) = (key_prefix.to_vec(), key_prefix.to_vec());
        keys::put_time(&mut lo_k, lo.0);
        keys::put_time(&mut hi_k, read.to.0);
        // The chosen row of the window being read: (start, version, value).
        let mut best: Option<(i64, u32, fjall::UserValue)> = None;
        let mut current_start: Option<i64> = None;
        let flush = |read: &mut WindowsRead<'_>,
                     best: &mut Option<(i64, u32, fjall::UserValue)>|
         -> Result<()> {
            if let Some((start, version, v)) = best.take() {
                let e = values::decode_emission(
                    read.pipeline,
                    key,
                    start,
                    version,
                    &v,
                    &mut read.cols,
                )?;
                read.out.push(e);
            }
            Ok(())
        };
        for kv in self.shared().ks.results.range(lo_k..hi_k) {
            let (k, v) = kv.into_inner()?;
            let mut r = KeyReader::new(&k[key_prefix.len()..], "results");
            let start = r.time()?;
            let version = r.u32()?;
            r.end()?;
            if current_start != Some(start) {
                flush(read, &mut best)?;
                if read.out.len() >= read.want {
                    return Ok(());
                }
                current_start = Some(start);
            }
            let visible = match read.as_of {
                None => true,
                Some(t) => values::emission_emitted_at(&v)? <= t.0,
            };
            if visible {
                best = Some((start, version, v));
            }
        }
        flush(read, &mut best)
    }

    // ---------------------------------------------------------------- change feed, sinks

    /// The change feed: up to `limit` stored results with change number greater than
    /// `after`, in change order, each with its number. With `pipeline`, only that
    /// pipeline's. Every stored version of every window appears exactly once, in the
    /// order it became durable; a replayed or older version that the version guard
    /// rejected never appears. A reader that resumes after the last number it saw misses
    /// nothing and sees nothing twice.
    pub fn changes_after(
        &self,
        after: u64,
        pipeline: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(u64, Emission)>> {
        Ok(self.changes_page(after, pipeline, limit)?.changes)
    }

    /// Like [`Store::changes_after`], also saying how far it looked: `scanned_to` is
    /// the last change number examined (matching or not), so a reader filtering by
    /// pipeline resumes after it instead of scanning other pipelines' changes again.
    /// Only durable changes are read (never one whose commit is not fsync'd yet), and at
    /// most `100 × limit` rows are examined per call.
    pub fn changes_page(
        &self,
        after: u64,
        pipeline: Option<&str>,
        limit: usize,
    ) -> Result<ChangesPage> {
        let ks = &self.shared().ks;
        let durable = self.last_change();
        let mut page = ChangesPage {
            changes: Vec::new(),
            scanned_to: after,
        };
        if after >= durable {
            return Ok(page);
        }
        let mut cols = self.shared().columns_cache();
        let mut names = Interner::default();
        let budget = limit.saturating_mul(100).max(1);
        for kv in ks
            .changes
            .range(after.saturating_add(1).to_be_bytes()..=durable.to_be_bytes())
            .take(budget)
        {
            if page.changes.len() >= limit {
                break;
            }
            let (k, v) = kv.into_inner()?;
            let n = keys::u64_from_bytes(&k, "changes key")?;
            page.scanned_to = n;
            let mut r = KeyReader::new(&v, "changes value");
            let p = r.str()?;
            if pipeline.is_some_and(|want| want != p) {
                continue;
            }
            let key = values::key_from_canonical(&r.str()?)?;
            let start = r.time()?;
            let version = r.u32()?;
            r.end()?;
            let Some(row) = ks.results.get(&v)? else {
                return Err(Error::corrupt(
                    format!("change {n}"),
                    "points at a result that is not stored",
                ));
            };
            let p = names.get(&p);
            page.changes.push((
                n,
                values::decode_emission(&p, &key, start, version, &row, &mut cols)?,
            ));
        }
        Ok(page)
    }

    /// A sink's durable position in the change feed.
    pub fn sink_state(&self, sink: &str) -> Result<SinkState> {
        let mut k = Vec::new();
        keys::put_str(&mut k, sink);
        match self.shared().ks.sinks.get(&k)? {
            None => Ok(SinkState::default()),
            Some(v) => {
                let mut r = KeyReader::new(&v, "sinks value");
                let state = SinkState {
                    cursor: r.u64()?,
                    last_delivery: r.u64()?,
                };
                r.end()?;
                Ok(state)
            }
        }
    }

    /// Records delivery `id` of `sink` (`record` is the caller's encoding, e.g. JSON)
    /// and moves the sink's cursor to `cursor`, atomically and durably: a commit of one
    /// [`Delivery`] (through the committer, like every write). Only the newest
    /// [`DELIVERIES_KEPT`] deliveries of a sink are kept.
    pub fn record_delivery(&self, sink: &str, id: u64, cursor: u64, record: &[u8]) -> Result<()> {
        self.commit(CommitBatch {
            deliveries: vec![Delivery {
                sink: Arc::from(sink),
                id,
                cursor,
                record: record.to_vec(),
            }],
            ..CommitBatch::default()
        })?;
        Ok(())
    }

    /// A sink's recorded deliveries, newest first, at most `limit`.
    pub fn deliveries(&self, sink: &str, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut prefix = Vec::new();
        keys::put_str(&mut prefix, sink);
        let mut out = Vec::new();
        for kv in self
            .shared()
            .ks
            .deliveries
            .prefix(&prefix)
            .rev()
            .take(limit)
        {
            let (k, v) = kv.into_inner()?;
            let mut r = KeyReader::new(&k[prefix.len()..], "deliveries key");
            out.push((r.u64()?, v.to_vec()));
        }
        Ok(out)
    }

    /// Every catalog entry whose key starts with `prefix`, in key order (see
    /// [`CommitBatch::catalog`]).
    pub fn catalog(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.shared().ks.catalog.prefix(prefix) {
            let (k, v) = kv.into_inner()?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- checkpoints, dead letters

    /// The pipeline's checkpoint, if it has one.
    pub fn checkpoint(&self, pipeline: &str) -> Result<Option<Checkpoint>> {
        let mut k = Vec::new();
        keys::put_str(&mut k, pipeline);
        let Some(v) = self.shared().ks.checkpoints.get(&k)? else {
            return Ok(None);
        };
        let (seq, snapshot) = v
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::corrupt(format!("checkpoint of {pipeline}"), "too short"))?;
        Ok(Some(Checkpoint {
            pipeline: Arc::from(pipeline),
            seq: u64::from_be_bytes(*seq),
            snapshot: snapshot.to_vec(),
        }))
    }

    /// The dead letters of `stream`, in the order they were committed.
    pub fn dead_letters(&self, stream: &str) -> Result<Vec<DeadLetter>> {
        let mut prefix = Vec::new();
        keys::put_str(&mut prefix, stream);
        let s: Arc<str> = Arc::from(stream);
        let mut out = Vec::new();
        for kv in self.shared().ks.dead.prefix(&prefix) {
            let (_, v) = kv.into_inner()?;
            out.push(values::decode_dead_letter(&s, &v)?);
        }
        Ok(out)
    }

    /// One bounded page of the dead letters of `stream`, going back in time: the
    /// newest `limit` with a number below `before` (all of them without it), returned
    /// oldest first, each with its number, and whether older ones remain (then pass the
    /// page's first number as the next `before`). Memory is bounded by `limit`.
    pub fn dead_letters_page(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<(u64, DeadLetter)>, bool)> {
        let mut prefix = Vec::new();
        keys::put_str(&mut prefix, stream);
        let end = match before {
            Some(n) => {
                let mut k = prefix.clone();
                keys::put_u64(&mut k, n);
                k
            }
            None => keys::after_str_prefix(&prefix),
        };
        let s: Arc<str> = Arc::from(stream);
        let mut out = Vec::new();
        let mut more = false;
        for kv in self.shared().ks.dead.range(prefix.clone()..end).rev() {
            if out.len() >= limit {
                more = true;
                break;
            }
            let (k, v) = kv.into_inner()?;
            let mut r = KeyReader::new(&k[prefix.len()..], "dead letters key");
            let n = r.u64()?;
            r.end()?;
            out.push((n, values::decode_dead_letter(&s, &v)?));
        }
        out.reverse();
        Ok((out, more))
    }

    /// How many dead letters `stream` has (a key scan; nothing is kept in memory).
    pub fn dead_letter_count(&self, stream: &str) -> Result<u64> {
        let mut prefix = Vec::new();
        keys::put_str(&mut prefix, stream);
        let mut n = 0;
        for kv in self.shared().ks.dead.prefix(&prefix) {
            kv.key()?;
            n += 1;
        }
        Ok(n)
    }

    // ---------------------------------------------------------------- retention

    /// Deletes the raw events of `stream` with event time `< before`, and their ids
    /// (unless a newer event with the same id is still kept). Results, dead letters and
    /// checkpoints are kept. Returns how many events were deleted.
    ///
    /// This commits [`CommitBatch::retention`] `[(stream, before)]` through the committer
    /// until it is finished (a commit deletes at most [`RETENTION_ROWS_PER_COMMIT`]
    /// rows; each is fsync'd); a poisoned store refuses. Callers that commit anyway can
    /// put the entry into their own batch instead and let later commits carry it on.
    pub fn apply_retention(&self, stream: &str, before: EventTime) -> Result<u64> {
        let stream: Arc<str> = Arc::from(stream);
        let mut deleted = 0;
        loop {
            let c = self.commit(CommitBatch {
                retention: vec![(stream.clone(), before)],
                ..CommitBatch::default()
            })?;
            deleted += c.retention_deleted;
            if !c.retention_pending {
                return Ok(deleted);
            }
        }
    }

    /// Repair (`reckon repair`): deletes the raw events of `stream` with event time
    /// `> after` (events a time guard would have refused) and their ids. Returns how
    /// many were deleted; fsync'd before it returns. The journal leaves out events
    /// whose raw row is gone, so a replay never sees them again.
    pub fn remove_raw_after(&self, stream: &str, after: EventTime) -> Result<u64> {
        let shared = self.shared();
        shared.check_writable()?;
        let mut stream_prefix = Vec::new();
        keys::put_str(&mut stream_prefix, stream);
        let end = keys::after_str_prefix(&stream_prefix);
        let stream_name: Arc<str> = Arc::from(stream);
        let mut names = Interner::default();
        let mut series = raw::Keys::default();
        let mut cursor = stream_prefix.clone();
        // Blocks to delete (`None`) or rewrite, and the ids of the events removed.
        let mut doomed: Vec<(fjall::UserKey, Option<Vec<u8>>)> = Vec::new();
        let mut removed_ids: Vec<EventId> = Vec::new();
        let mut n = 0u64;
        if after.0 == i64::MAX {
            return Ok(0); // no event is later
        }
        loop {
            let Some(kv) = shared.ks.raw.range(cursor.clone()..end.clone()).next() else {
                break;
            };
            let k = kv.key()?;
            let mut r = KeyReader::new(&k[stream_prefix.len()..], "raw");
            let key_bytes = r.skip_str()?;
            let key = series.get(key_bytes, "raw")?;
            let mut kp = stream_prefix.clone();
            kp.extend_from_slice(key_bytes);
            let hi = keys::after_str_prefix(&kp);
            // A block holding an event later than `after` starts at most one span
            // before it.
            let mut lo = kp.clone();
            keys::put_time(&mut lo, after.0.saturating_sub(raw::BLOCK_SPAN));
            for kv in shared.ks.raw.range(lo..hi) {
                let (k, v) = kv.into_inner()?;
                let (gone, kept): (Vec<_>, Vec<_>) =
                    raw::decode_block(&stream_name, &key, &k, &v, &mut names)?
                        .into_iter()
                        .partition(|(_, r)| r.event.time > after);
                if gone.is_empty() {
                    continue;
                }
                n += gone.len() as u64;
                removed_ids.extend(gone.into_iter().filter_map(|(_, r)| r.event.id));
                let rewritten = if kept.is_empty() {
                    None
                } else {
                    Some(raw::rewrite(&k, &kept)?)
                };
                doomed.push((k, rewritten));
            }
            cursor = keys::after_str_prefix(&kp);
        }
        if n == 0 {
            return Ok(0);
        }
        let _w = shared.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        shared.check_writable()?;
        let mut wb = shared.db.batch();
        for (k, v) in doomed {
            match v {
                Some(v) => wb.insert(&shared.ks.raw, k, v),
                None => wb.remove(&shared.ks.raw, k),
            }
        }
        let mut id_key = stream_prefix.clone();
        for id in &removed_ids {
            id_key.truncate(stream_prefix.len());
            put_fingerprint(&mut id_key, id);
            if let Some(t) = shared.ks.ids.get(&id_key)?
                && keys::time_from_bytes(&t, "ids value")? > after.0
            {
                wb.remove(&shared.ks.ids, id_key.clone());
            }
        }
        if let Err(e) = wb.commit() {
            shared.set_poison(&e.to_string());
            return Err(e.into());
        }
        drop(_w);
        self.persist_or_poison()?;
        Ok(n)
    }

    /// Repair: deletes the dead letters of `stream` of kind `kind` committed at or
    /// before dead-letter number `up_to` (the ones repair re-offered; those still
    /// refused were written again with a higher number). Returns how many; fsync'd.
    pub fn remove_dead_letters(&self, stream: &str, kind: &str, up_to: u64) -> Result<u64> {
        let shared = self.shared();
        shared.check_writable()?;
        let mut prefix = Vec::new();
        keys::put_str(&mut prefix, stream);
        let s: Arc<str> = Arc::from(stream);
        let mut doomed = Vec::new();
        for kv in shared.ks.dead.prefix(&prefix) {
            let (k, v) = kv.into_inner()?;
            let n = keys::u64_from_bytes(k.get(prefix.len()..).unwrap_or_default(), "dead key")?;
            if n <= up_to && values::decode_dead_letter(&s, &v)?.kind == kind {
                doomed.push(k);
            }
        }
        let n = doomed.len() as u64;
        if n == 0 {
            return Ok(0);
        }
        let _w = shared.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut wb = shared.db.batch();
        for k in doomed {
            wb.remove(&shared.ks.dead, k);
        }
        if let Err(e) = wb.commit() {
            shared.set_poison(&e.to_string());
            return Err(e.into());
        }
        drop(_w);
        self.persist_or_poison()?;
        Ok(n)
    }

    /// Repair: deletes every version of the given windows `(pipeline, key, start)` and
    /// the change-feed entries pointing at them: windows that only events moved out of
    /// the raw log had made (their history goes with them; a sink that already applied
    /// one keeps it). Returns how many result rows were deleted; fsync'd.
    pub fn remove_windows(&self, windows: &[(Arc<str>, Key, EventTime)]) -> Result<u64> {
        if windows.is_empty() {
            return Ok(0);
        }
        let shared = self.shared();
        shared.check_writable()?;
        let prefixes: std::collections::HashSet<Vec<u8>> = windows
            .iter()
            .map(|(p, k, s)| result_prefix(p, k, *s))
            .collect();
        let _w = shared.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut wb = shared.db.batch();
        let mut n = 0u64;
        for prefix in &prefixes {
            for kv in shared.ks.results.prefix(prefix) {
                wb.remove(&shared.ks.results, kv.key()?);
                n += 1;
            }
        }
        for kv in shared.ks.changes.iter() {
            let (k, v) = kv.into_inner()?;
            if v.len() >= 4 && prefixes.contains(&v[..v.len() - 4]) {
                wb.remove(&shared.ks.changes, k);
            }
        }
        if let Err(e) = wb.commit() {
            shared.set_poison(&e.to_string());
            return Err(e.into());
        }
        drop(_w);
        self.persist_or_poison()?;
        Ok(n)
    }

    /// The number of the last dead letter committed (dead letters are numbered in
    /// commit order).
    pub fn last_dead_letter(&self) -> u64 {
        self.shared()
            .ks
            .dead
            .iter()
            .filter_map(|kv| kv.key().ok())
            .filter_map(|k| {
                k.len()
                    .checked_sub(8)
                    .and_then(|i| k.get(i..))
                    .and_then(|b| keys::u64_from_bytes(b, "dead key").ok())
            })
            .max()
            .unwrap_or(0)
    }

    fn persist_or_poison(&self) -> Result<()> {
        let shared = self.shared();
        if let Err(e) = shared.db.persist(PersistMode::SyncAll) {
            shared.set_poison(&e.to_string());
            return Err(e.into());
        }
        Ok(())
    }

    /// Test hook for `verify`: writes a result row directly, bypassing the version
    /// guard (e.g. to tamper with the newest version of a window). Not durable until
    /// the next commit. The row carries its column names inline (the format-3 layout,
    /// which reads still accept): only the committer adds column sets.
    #[doc(hidden)]
    pub fn overwrite_result_for_tests(&self, e: &Emission) -> Result<()> {
        let shared = self.shared();
        let _w = shared.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut k = result_prefix(&e.pipeline, &e.key, e.window.start);
        keys::put_u32(&mut k, e.version.0);
        shared
            .ks
            .results
            .insert(k, values::encode_emission_inline(e)?)?;
        Ok(())
    }

    /// Bytes on disk per keyspace, and of fjall's own journal (for benchmarks).
    #[doc(hidden)]
    pub fn disk_usage_for_tests(&self) -> Result<Vec<(&'static str, u64)>> {
        let shared = self.shared();
        let ks = &shared.ks;
        Ok(vec![
            ("raw", ks.raw.disk_space()),
            ("journal", ks.journal.disk_space()),
            ("ids", ks.ids.disk_space()),
            ("results", ks.results.disk_space()),
            ("checkpoints", ks.checkpoints.disk_space()),
            ("dead_letters", ks.dead.disk_space()),
            ("meta", ks.meta.disk_space()),
            ("changes", ks.changes.disk_space()),
            ("sinks", ks.sinks.disk_space()),
            ("deliveries", ks.deliveries.disk_space()),
            ("catalog", ks.catalog.disk_space()),
            ("fjall_journal", shared.db.journal_disk_space()?),
        ])
    }

    /// Flushes every memtable to disk tables and compacts them fully, so that
    /// [`Store::disk_space_for_tests`] shows the steady-state size (for benchmarks).
    #[doc(hidden)]
    pub fn compact_for_tests(&self) -> Result<()> {
        let ks = &self.shared().ks;
        for k in [
            &ks.raw,
            &ks.journal,
            &ks.ids,
            &ks.results,
            &ks.meta,
            &ks.checkpoints,
            &ks.dead,
            &ks.changes,
            &ks.sinks,
            &ks.deliveries,
            &ks.catalog,
        ] {
            k.rotate_memtable_and_wait()?;
            k.major_compact()?;
        }
        Ok(())
    }
}

/// Opens fjall. Its journal recovery asserts on some damaged journals (a length field
/// that disagrees with another, in debug builds); a damaged file is an error to report,
/// not a reason to crash the caller, so such a panic becomes [`Error::Corrupt`].
fn open_database(path: &Path) -> Result<Database> {
    clear_interrupted_create(path)?;
    let open = || {
        Database::builder(path)
            .max_journaling_size(MAX_JOURNALING_SIZE)
            .open()
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(Err(fjall::Error::Locked)) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Ok(db) => Ok(db?),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Error::corrupt(
                format!("storage engine files under {}", path.display()),
                format!("fjall panicked while recovering: {msg}"),
            ))
        }
    }
}

/// fjall creates a database in steps: the lock file, `keyspaces/`, the first journal
/// `0.jnl`, and last the `version` marker, fsynced. A process killed between the journal
/// and the marker leaves files that fjall's next open cannot get past: with no marker it
/// creates the database again and fails on the existing `0.jnl` ("File exists"). Nothing
/// was ever written to such a database (fjall returns only after the marker), so the
/// partial files are removed, under the lock, and the open creates the store afresh.
fn clear_interrupted_create(path: &Path) -> Result<()> {
    use std::io::ErrorKind;
    const VERSION: &str = "version";
    // The marker is 3 magic bytes and a version byte.
    const MARKER_LEN: u64 = 4;
    let io = |what: &str, e: std::io::Error| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("{what} under {}: {e}", path.display()),
        ))
    };
    let marker = match std::fs::metadata(path.join(VERSION)) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading fjall's version marker", e)),
    };
    if marker.is_some_and(|len| len >= MARKER_LEN) {
        return Ok(());
    }
    let journal = path.join("0.jnl");
    if marker.is_none()
        && !journal
            .try_exists()
            .map_err(|e| io("looking for 0.jnl", e))?
    {
        // A new directory, or one fjall has not got as far as its journal in.
        return Ok(());
    }
    // Only the journals fjall wrote before its marker may be here, and an empty
    // `keyspaces/`; anything else means this is not an interrupted create.
    let keyspaces = path.join("keyspaces");
    let unexpected = std::fs::read_dir(&keyspaces)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if unexpected {
        return Err(Error::corrupt(
            format!("storage engine files under {}", path.display()),
            "fjall's version marker is missing or short but keyspaces/ holds data",
        ));
    }
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path.join("lock"))
        .map_err(|e| io("opening the lock file", e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                path: path.to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io("locking the store", e)),
    }
    tracing::warn!(
        path = %path.display(),
        "the store was being created when its process ended (fjall's version marker is \
         missing); it holds no data: removing the partial files and creating it again"
    );
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("removing a partial file", e)),
        _ => Ok(()),
    };
    remove(&journal)?;
    remove(&path.join(VERSION))?;
    // The lock is released when `lock` drops, after the files are gone.
    drop(lock);
    Ok(())
}

/// Reads and checks the format version, recording it in a new store.
fn check_format(db: &Database, ks: &Keyspaces) -> Result<()> {
    match ks.meta.get(META_FORMAT_VERSION)? {
        Some(v) => {
            let arr: [u8; 4] = v
                .as_ref()
                .try_into()
                .map_err(|_| Error::corrupt("meta format_version", "expected 4 bytes"))?;
            let found = u32::from_be_bytes(arr);
            if found > FORMAT_VERSION {
                return Err(Error::FormatTooNew {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            if found == 0 {
                return Err(Error::corrupt(
                    "meta format_version",
                    "version 0 does not exist",
                ));
            }
            if found == 1 {
                migrate_v1_changes(db, ks)?;
            }
            if found <= 2 {
                migrate_v2_raw_blocks(db, ks)?;
            } else if found == 3 {
                // Format 4 only adds column sets: format-3 rows (names inline) are
                // read as they are, so recording the version is the whole migration.
                // It is recorded before any row naming a set is written, so a build
                // that reads only format 3 refuses the store instead of misreading it.
                ks.meta
                    .insert(META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes())?;
                db.persist(PersistMode::SyncAll)?;
            }
            Ok(())
        }
        None => {
            ks.meta
                .insert(META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes())?;
            db.persist(PersistMode::SyncAll)?;
            Ok(())
        }
    }
}

/// Format 1 had no change feed: give every stored result a change number, in the order
/// they were emitted (ties in key order), so the feed starts with the whole history.
fn migrate_v1_changes(db: &Database, ks: &Keyspaces) -> Result<()> {
    let mut rows: Vec<(i64, fjall::UserKey)> = Vec::new();
    for kv in ks.results.iter() {
        let (k, v) = kv.into_inner()?;
        rows.push((values::emission_emitted_at(&v)?, k));
    }
    rows.sort();
    let mut wb = db.batch();
    let mut n = 0u64;
    for (_, k) in rows {
        n += 1;
        wb.insert(&ks.changes, n.to_be_bytes(), k.as_ref());
    }
    wb.insert(&ks.meta, META_LAST_CHANGE, n.to_be_bytes());
    wb.insert(&ks.meta, META_FORMAT_VERSION, 2u32.to_be_bytes());
    wb.commit()?;
    db.persist(PersistMode::SyncAll)?;
    Ok(())
}

/// Where the format 2 → 3 migration has got to: the last raw row rewritten.
const META_MIGRATE_3_CURSOR: &[u8] = b"migrate_3_cursor";

/// Format 2 stored one raw row per event; format 3 stores blocks under keys of the same
/// shape, so each row becomes a block of one event under its own key (the journal's
/// format-2 entries then name those blocks). Rows are rewritten in write batches that
/// also record how far the migration got, so a migration cut short by a crash resumes
/// where it stopped instead of reading format-3 blocks as format-2 rows.
fn migrate_v2_raw_blocks(db: &Database, ks: &Keyspaces) -> Result<()> {
    let cursor = ks.meta.get(META_MIGRATE_3_CURSOR)?.map(|c| c.to_vec());
    raw::migrate_v2_rows(db, &ks.raw, cursor, 10_000, |wb, last| {
        wb.insert(&ks.meta, META_MIGRATE_3_CURSOR, last);
    })?;
    let mut wb = db.batch();
    wb.remove(&ks.meta, META_MIGRATE_3_CURSOR);
    wb.insert(&ks.meta, META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes());
    wb.commit()?;
    db.persist(PersistMode::SyncAll)?;
    Ok(())
}

/// `pipeline ‖ key ‖ start`: the prefix of every version of one window.
pub(crate) fn result_prefix(pipeline: &str, key: &Key, start: EventTime) -> Vec<u8> {
    let mut k = Vec::with_capacity(pipeline.len() + key.as_str().len() + 16);
    keys::put_str(&mut k, pipeline);
    keys::put_str(&mut k, key.as_str());
    keys::put_time(&mut k, start.0);
    k
}

fn result_version(k: &[u8], prefix_len: usize) -> Result<u32> {
    let mut r = KeyReader::new(k.get(prefix_len..).unwrap_or_default(), "results");
    let v = r.u32()?;
    r.end()?;
    Ok(v)
}

/// The first and last seq of a journal row (key = first seq, value starts with the
/// entry count as a `u32`).
pub(crate) fn journal_row_span(k: &[u8], v: &[u8]) -> Result<(u64, u64)> {
    let first = keys::u64_from_bytes(k, "journal key")?;
    let count = v
        .first_chunk::<4>()
        .map(|c| u32::from_be_bytes(*c))
        .ok_or_else(|| Error::corrupt(format!("journal row {first}"), "too short"))?;
    if count == 0 {
        return Err(Error::corrupt(format!("journal row {first}"), "no entries"));
    }
    Ok((first, first + u64::from(count) - 1))
}

/// Appends the 16-byte big-endian xxh3-128 fingerprint of an id.
pub(crate) fn put_fingerprint(out: &mut Vec<u8>, id: &EventId) {
    out.extend_from_slice(&id.fingerprint().to_be_bytes());
}

/// The state of one bounded windows read (see [`Store::windows_page`]).
struct WindowsRead<'a> {
    pipeline: &'a Arc<str>,
    to: EventTime,
    as_of: Option<ProcessingTime>,
    cols: ColumnsCache<'a>,
    out: &'a mut Vec<Emission>,
    /// Stop once `out` holds this many windows.
    want: usize,
}
