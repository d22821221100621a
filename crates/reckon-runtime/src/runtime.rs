//! The runtime: drives batches of events through every pipeline of their stream and
//! commits what happened to the store in one atomic, durable write.
//!
//! For each batch: duplicates by id are dropped (the store remembers ids for the whole
//! retention, beyond what the engine keeps hot); each pipeline of the stream advances
//! to the batch's processing time and ingests it; windows past allowed lateness are
//! recomputed from the raw log (plus the batch itself, which is not committed yet);
//! then the events, the emissions they caused, dead letters and — every
//! `checkpoint_every` batches — the engine snapshots go to the store in one commit,
//! acknowledged only after fsync. On open, each pipeline restores its checkpoint and
//! replays the journal written after it, so the state is as if it had never stopped.
//!
//! The runtime is the store's only writer, which lets it know the journal sequence
//! numbers a commit will get (a checkpoint names the last one it covers).

use crate::config::{Config, ReconcileConfig};
use crate::error::{Error, Result};
use reckon_core::reconcile::{ReconOutcome, ReconOutput, Reconciler, Side};
use reckon_core::{
    BatchReport, Emission, Event, EventId, Key, Outcome, PartitionId, Pipeline, Prior,
    ProcessingTime, Value, Watermark, Window,
};
use reckon_store::{Checkpoint, CommitBatch, DeadLetter, JournalEntry, RawRecord, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Longest series key accepted (the store's keys hold it; fjall allows 64 KiB keys).
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Options of a running instance.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Snapshot every pipeline in the commit of every n-th batch (bounds replay on
    /// restart; 0 = only on `checkpoint()`).
    pub checkpoint_every: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            checkpoint_every: 64,
        }
    }
}

struct PipelineRun {
    engine: Pipeline,
    stream: Arc<str>,
}

/// A reconciliation and how its two streams' events become its records.
struct ReconRun {
    engine: Reconciler,
    events: Arc<str>,
    audit: Arc<str>,
    event_ids: IdFields,
    audit_ids: IdFields,
    out: Vec<ReconOutput>,
}

/// Where one side's join id comes from.
struct IdFields {
    /// The configured id fields, in order.
    names: Vec<String>,
    /// The stream's `id_field`, which the decoders move out of the fields into
    /// `Event::id`.
    stream_id_field: Option<String>,
}

impl ReconRun {
    fn new(config: &Config, r: &ReconcileConfig, engine: Reconciler) -> ReconRun {
        let side = |s: &crate::config::ReconcileSide| IdFields {
            names: s.id_fields.clone(),
            stream_id_field: config.stream(&s.stream).and_then(|c| c.id_field.clone()),
        };
        ReconRun {
            engine,
            events: Arc::from(r.events.stream.as_str()),
            audit: Arc::from(r.audit.stream.as_str()),
            event_ids: side(&r.events),
            audit_ids: side(&r.audit),
            out: Vec::new(),
        }
    }

    fn name(&self) -> &Arc<str> {
        &self.engine.spec().name
    }

    /// The side `stream` is, if the reconciliation reads it.
    fn side(&self, stream: &str) -> Option<Side> {
        if *self.events == *stream {
            Some(Side::Event)
        } else if *self.audit == *stream {
            Some(Side::Audit)
        } else {
            None
        }
    }

    /// The reconciliation's record of an event: its id is the value(s) of the side's id
    /// fields (joined by `,`, with `\\` and `,` escaped, when there are several); its
    /// fields are the event's tags and other fields (an audit record's context).
    fn record(&self, side: Side, e: &Event) -> std::result::Result<Event, String> {
        let ids = match side {
            Side::Event => &self.event_ids,
            Side::Audit => &self.audit_ids,
        };
        let names = &ids.names;
        let tags = e.key.tags();
        let mut id = String::new();
        for (i, name) in names.iter().enumerate() {
            let text = match e.field(name) {
                Some(Value::Str(s)) => s.to_string(),
                Some(v) => v.to_string(),
                None => match tags.iter().find(|(k, _)| k == name) {
                    Some((_, v)) => v.clone(),
                    // The stream's own id field is the event's id.
                    None => match &e.id {
                        Some(event_id) if ids.stream_id_field.as_deref() == Some(name) => {
                            event_id.0.to_string()
                        }
                        _ => {
                            return Err(format!(
                                "the record has no `{name}`, an id field of reconcile `{}`",
                                self.name()
                            ));
                        }
                    },
                },
            };
            if text.is_empty() {
                return Err(format!(
                    "the record's `{name}` is empty; reconcile `{}` joins on it",
                    self.name()
                ));
            }
            if names.len() == 1 {
                id = text;
            } else {
                if i > 0 {
                    id.push(',');
                }
                for c in text.chars() {
                    if matches!(c, '\\' | ',') {
                        id.push('\\');
                    }
                    id.push(c);
                }
            }
        }
        // Its results are keyed `id=<id>` in the store, whose keys are bounded.
        if id.len() > MAX_KEY_BYTES {
            return Err(format!(
                "the record's id ({}) is {} bytes long; at most {MAX_KEY_BYTES} are allowed",
                names.join(", "),
                id.len()
            ));
        }
        let mut fields: Vec<(Arc<str>, Value)> = tags
            .into_iter()
            .filter(|(k, _)| !names.contains(k))
            .map(|(k, v)| (Arc::from(k), Value::Str(Arc::from(v))))
            .collect();
        fields.extend(
            e.fields
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| **n == **k))
                .cloned(),
        );
        Ok(Event {
            stream: e.stream.clone(),
            key: Key::empty(),
            time: e.time,
            id: Some(EventId(Arc::from(id))),
            fields,
        })
    }

    /// Moves the engine's outputs into `into` as emissions made at `now`.
    fn drain(&mut self, now: ProcessingTime, into: &mut Vec<Emission>) {
        let spec = self.engine.spec();
        into.extend(self.out.drain(..).map(|o| o.to_emission(spec, now)));
    }
}

/// One batch of events of one stream from one partition, as a source delivered it.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// The stream the events belong to.
    pub stream: Arc<str>,
    /// The source partition (watermarks are per partition).
    pub partition: PartitionId,
    /// The events, in arrival order.
    pub events: Vec<Event>,
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IngestReport {
    /// Events stored in the raw log.
    pub accepted: u64,
    /// Events dropped as duplicates (by id, against the store or earlier in the batch).
    pub duplicates: u64,
    /// Late events: the most any one pipeline of the stream found late (hot
    /// corrections plus cold recomputes).
    pub late: u64,
    /// Events dead-lettered by at least one pipeline (and stored as dead letters).
    pub dead_lettered: u64,
    /// Journal sequence number of the batch's last entry.
    pub last_seq: u64,
    /// What each pipeline of the stream did with the batch.
    pub pipelines: Vec<PipelineReport>,
}

/// What one pipeline did with one batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PipelineReport {
    /// The pipeline.
    pub pipeline: Arc<str>,
    /// Late events applied to windows still in memory (hot corrections).
    pub late_applied: u64,
    /// Late events whose windows were recomputed from the raw log (cold path).
    pub recomputed: u64,
    /// Events this pipeline dead-lettered.
    pub dead_lettered: u64,
    /// Those dead letters by kind (`beyond_retention`, `unwindowable`, `invalid`,
    /// `future`, ...): how many and the first one's reason, for metrics and logs.
    pub dead_letter_kinds: BTreeMap<String, DeadLetterCount>,
}

/// Dead letters of one kind in one batch of one pipeline.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeadLetterCount {
    /// How many.
    pub count: u64,
    /// The reason of the first one.
    pub reason: String,
}

/// A running reckon: the store and the engines of all configured pipelines.
pub struct Runtime {
    store: Store,
    /// The time guard of each stream that has one (`max_future`).
    max_future: HashMap<Arc<str>, reckon_core::Span>,
    pipelines: Vec<PipelineRun>,
    recons: Vec<ReconRun>,
    options: RuntimeOptions,
    batches: u64,
    buf: Vec<Emission>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("pipelines", &self.pipelines.len())
            .field("reconciles", &self.recons.len())
            .field("batches", &self.batches)
            .finish()
    }
}

impl Runtime {
    /// Opens the store of `config`, restores every pipeline from its checkpoint and
    /// replays the journal written since.
    pub fn open(config: &Config, options: RuntimeOptions) -> Result<Runtime> {
        let store = Store::open(&config.store.path)?;
        Runtime::with_store(config, store, options)
    }

    /// Like [`Runtime::open`], on an already open store.
    pub fn with_store(config: &Config, store: Store, options: RuntimeOptions) -> Result<Runtime> {
        let mut pipelines = Vec::new();
        let mut from = u64::MAX;
        for p in &config.pipelines {
            let spec = p.spec()?;
            let (engine, seq) = match store.checkpoint(&p.name)? {
                Some(cp) => (Pipeline::restore(spec, &cp.snapshot)?, cp.seq),
                None => (Pipeline::new(spec)?, 0),
            };
            from = from.min(seq);
            pipelines.push((
                PipelineRun {
                    engine,
                    stream: Arc::from(p.stream.as_str()),
                },
                seq,
            ));
        }
        let mut recons = Vec::new();
        for r in &config.reconciles {
            let spec = r.spec()?;
            let (engine, seq) = match store.checkpoint(&r.name)? {
                Some(cp) => (Reconciler::restore(spec, &cp.snapshot)?, cp.seq),
                None => (Reconciler::with_secret(spec, random_secret()), 0),
            };
            from = from.min(seq);
            recons.push((ReconRun::new(config, r, engine), seq));
        }
        let max_future = config
            .streams
            .iter()
            .filter_map(|s| Some((Arc::from(s.name.as_str()), s.max_future.0?)))
            .collect();
        let mut rt = Runtime {
            store,
            max_future,
            pipelines: Vec::new(),
            recons: Vec::new(),
            options,
            batches: 0,
            buf: Vec::new(),
        };
        let covered: Vec<u64> = pipelines.iter().map(|(_, s)| *s).collect();
        let recons_covered: Vec<u64> = recons.iter().map(|(_, s)| *s).collect();
        rt.pipelines = pipelines.into_iter().map(|(p, _)| p).collect();
        rt.recons = recons.into_iter().map(|(r, _)| r).collect();
        if from != u64::MAX {
            rt.replay(from, &covered, &recons_covered)?;
        }
        Ok(rt)
    }

    /// Replays the journal after `from`; pipeline `i` skips entries it already covers
    /// (`covered[i]`), and so does reconciliation `i` (`recons_covered[i]`).
    fn replay(&mut self, from: u64, covered: &[u64], recons_covered: &[u64]) -> Result<()> {
        let journal = self.store.journal_after(from)?;
        let mut emissions = Vec::new();
        for (seq, entry) in journal {
            for (r, &covered_to) in self.recons.iter_mut().zip(recons_covered) {
                if seq <= covered_to {
                    continue;
                }
                match &entry {
                    JournalEntry::Tick { pipeline, at } if **pipeline == **r.name() => {
                        r.engine.advance(*at, &mut r.out);
                        r.drain(*at, &mut emissions);
                    }
                    JournalEntry::Event(raw) => {
                        if let Some(side) = r.side(&raw.event.stream)
                            && let Ok(record) = r.record(side, &raw.event)
                        {
                            r.engine.advance(raw.ingested_at, &mut r.out);
                            r.engine.ingest(side, &record, &mut r.out);
                            r.drain(raw.ingested_at, &mut emissions);
                        }
                    }
                    _ => {}
                }
            }
            for (i, &covered_to) in covered.iter().enumerate() {
                if seq <= covered_to {
                    continue;
                }
                match &entry {
                    JournalEntry::Tick { pipeline, at }
                        if **pipeline == *self.pipelines[i].engine.spec().name =>
                    {
                        self.pipelines[i].engine.advance(*at, &mut self.buf);
                    }
                    JournalEntry::Event(r) if *r.event.stream == *self.pipelines[i].stream => {
                        let p = &mut self.pipelines[i];
                        p.engine.advance(r.ingested_at, &mut self.buf);
                        let outcome = p.engine.ingest(r.partition, &r.event, &mut self.buf);
                        if let Outcome::Recompute { key, windows } = outcome {
                            self.recompute(i, &key, &windows, &[], &[])?;
                        }
                    }
                    _ => {}
                }
                emissions.append(&mut self.buf);
            }
        }
        // Everything replayed was committed before, with these versions; the store keeps
        // the newer of the two, so this commit only restores what a crash lost between
        // a commit and nothing (it is harmless either way).
        if !emissions.is_empty() {
            self.store.commit(CommitBatch {
                emissions,
                ..CommitBatch::default()
            })?;
        }
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The names of every pipeline, then every reconciliation, in configuration order.
    pub fn pipeline_names(&self) -> Vec<Arc<str>> {
        self.pipelines
            .iter()
            .map(|p| p.engine.spec().name.clone())
            .chain(self.recons.iter().map(|r| r.name().clone()))
            .collect()
    }

    /// The engine of a reconciliation.
    pub fn reconciler(&self, name: &str) -> Option<&Reconciler> {
        self.recons
            .iter()
            .map(|r| &r.engine)
            .find(|r| &*r.spec().name == name)
    }

    /// The watermark of a pipeline or reconciliation.
    pub fn watermark(&self, name: &str) -> Option<Watermark> {
        self.pipeline(name)
            .map(Pipeline::watermark)
            .or_else(|| self.reconciler(name).map(Reconciler::watermark))
    }

    /// The engine of a pipeline.
    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines
            .iter()
            .map(|p| &p.engine)
            .find(|p| &*p.spec().name == name)
    }

    /// Ingests a batch of `stream`'s events from one partition, arrived at `now`.
    /// Returns once everything it caused is durable. Emissions are handed to `sink`
    /// after the commit, in order.
    pub fn ingest(
        &mut self,
        stream: &str,
        partition: PartitionId,
        now: ProcessingTime,
        events: Vec<Event>,
        sink: &mut dyn FnMut(&Emission),
    ) -> Result<IngestReport> {
        let mut reports = self.ingest_many(
            now,
            vec![IngestRequest {
                stream: Arc::from(stream),
                partition,
                events,
            }],
            sink,
        )?;
        Ok(reports.pop().unwrap_or_default())
    }

    /// Ingests several batches (of any streams and partitions) arrived at `now`, in
    /// order, as if one after the other, but in **one** durable commit: a server that
    /// drains its queue of requests pays one fsync for all of them. Returns one report
    /// per request, once everything is durable; emissions go to `sink` after the commit.
    pub fn ingest_many(
        &mut self,
        now: ProcessingTime,
        requests: Vec<IngestRequest>,
        sink: &mut dyn FnMut(&Emission),
    ) -> Result<Vec<IngestReport>> {
        for req in &requests {
            if let Some(pipeline) = self.finished_reader(&req.stream) {
                return Err(Error::Finished {
                    stream: req.stream.to_string(),
                    pipeline: pipeline.to_string(),
                });
            }
        }
        let mut batch = CommitBatch::default();
        // Ids of this group's events per stream: the store does not know them yet.
        let mut pending_ids: HashMap<Arc<str>, HashSet<EventId>> = HashMap::new();
        let mut reports = Vec::with_capacity(requests.len());
        for req in requests {
            let known = pending_ids.entry(req.stream.clone()).or_default();
            reports.push(self.stage(now, req, known, &mut batch)?);
        }
        // Every engine reading a stream of this group advanced to `now`, even if none of
        // its events is journaled (all duplicates, invalid or dead-lettered): a tick
        // makes the replay advance exactly as this run did (idle partitions and the
        // stall rule depend on it).
        let streams: BTreeSet<Arc<str>> = pending_ids.into_keys().collect();
        for p in self
            .pipelines
            .iter()
            .filter(|p| streams.contains(&p.stream))
        {
            batch.ticks.push((p.engine.spec().name.clone(), now));
        }
        for r in &self.recons {
            if streams.contains(&r.events) || streams.contains(&r.audit) {
                batch.ticks.push((r.name().clone(), now));
            }
        }
        self.batches += 1;
        // The store numbers the events, then the ticks.
        let entries = (batch.events.len() + batch.ticks.len()) as u64;
        if self.options.checkpoint_every > 0
            && self.batches.is_multiple_of(self.options.checkpoint_every)
        {
            let seq = self.store.last_seq() + entries;
            self.checkpoints_into(&mut batch, seq)?;
        }
        let checkpointed = !batch.checkpoints.is_empty();
        // The sink sees the emissions only once they are durable.
        let emissions = batch.emissions.clone();
        let committed = self.store.commit(batch)?;
        for r in &mut reports {
            r.last_seq = committed.last_seq;
        }
        emissions.iter().for_each(sink);
        if checkpointed {
            for s in &streams {
                self.apply_retention(s)?;
            }
        }
        Ok(reports)
    }

    /// A pipeline or reconciliation reading `stream` that was finished
    /// ([`Runtime::finish`]: its watermark is at the end of time, so it would
    /// dead-letter every event). Ingest into such a stream is refused.
    pub fn finished_reader(&self, stream: &str) -> Option<Arc<str>> {
        self.pipelines
            .iter()
            .filter(|p| *p.stream == *stream)
            .find(|p| p.engine.watermark() == Watermark(reckon_core::EventTime::MAX))
            .map(|p| p.engine.spec().name.clone())
            .or_else(|| {
                self.recons
                    .iter()
                    .find(|r| r.side(stream).is_some() && r.engine.is_finished())
                    .map(|r| r.name().clone())
            })
    }

    /// Every finished pipeline or reconciliation (see [`Runtime::finished_reader`]).
    pub fn finished(&self) -> Vec<Arc<str>> {
        self.pipelines
            .iter()
            .filter(|p| p.engine.watermark() == Watermark(reckon_core::EventTime::MAX))
            .map(|p| p.engine.spec().name.clone())
            .chain(
                self.recons
                    .iter()
                    .filter(|r| r.engine.is_finished())
                    .map(|r| r.name().clone()),
            )
            .collect()
    }

    /// The time guard of `stream`: events later than this at `now` are dead-lettered
    /// with kind `future` (`None`: no guard).
    pub fn future_limit(
        &self,
        stream: &str,
        now: ProcessingTime,
    ) -> Option<reckon_core::EventTime> {
        self.max_future
            .get(stream)
            .map(|s| reckon_core::EventTime(now.0).plus(*s))
    }

    /// The names of the pipelines and reconciliations reading `stream`.
    fn readers(&self, stream: &str) -> Vec<Arc<str>> {
        self.pipelines
            .iter()
            .filter(|p| *p.stream == *stream)
            .map(|p| p.engine.spec().name.clone())
            .chain(
                self.recons
                    .iter()
                    .filter(|r| r.side(stream).is_some())
                    .map(|r| r.name().clone()),
            )
            .collect()
    }

    /// Runs one request through the engines of its stream and adds what it caused to
    /// `batch` (not committed yet).
    fn stage(
        &mut self,
        now: ProcessingTime,
        req: IngestRequest,
        known: &mut HashSet<EventId>,
        batch: &mut CommitBatch,
    ) -> Result<IngestReport> {
        let IngestRequest {
            stream,
            partition,
            events,
        } = req;
        let mut report = IngestReport::default();
        let dead_letters_before = batch.dead_letters.len();
        let readers = self.readers(&stream);
        let future_limit = self.future_limit(&stream, now);
        // Duplicates: against the store (whole retention), earlier requests of this
        // group, and within the batch.
        let fresh_ids: Vec<&EventId> = events
            .iter()
            .filter_map(|e| e.id.as_ref())
            .filter(|id| !known.contains(*id))
            .collect();
        let seen = self.store.ids_seen(&stream, &fresh_ids)?;
        let stored: HashSet<EventId> = fresh_ids
            .iter()
            .zip(&seen)
            .filter(|(_, s)| **s)
            .map(|(id, _)| (*id).clone())
            .collect();
        let mut fresh = Vec::with_capacity(events.len());
        for e in events {
            // Refused before any engine sees it, for every reader: the store's keys hold
            // the series key, so an absurdly long one (hostile or broken input) is kept
            // out of every result; an event from too far in the future would move the
            // watermark past every real event (the time guard).
            let refused = if e.key.as_str().len() > MAX_KEY_BYTES {
                Some((
                    "invalid",
                    format!(
                        "the series key is {} bytes long; at most {MAX_KEY_BYTES} are allowed",
                        e.key.as_str().len()
                    ),
                ))
            } else {
                match future_limit {
                    Some(limit) if e.time > limit => Some((
                        "future",
                        format!(
                            "event time {} is beyond {limit}, the limit of stream `{stream}` (the server's clock {now} + max_future {})",
                            e.time,
                            self.max_future.get(&*stream).copied().unwrap_or_default()
                        ),
                    )),
                    _ => None,
                }
            };
            if let Some((kind, reason)) = refused {
                report.dead_lettered += 1;
                for pipeline in &readers {
                    batch.dead_letters.push(DeadLetter {
                        pipeline: pipeline.clone(),
                        stream: stream.clone(),
                        reason: reason.clone(),
                        event: e.clone(),
                        kind: kind.into(),
                        at: now,
                    });
                }
                continue;
            }
            if let Some(id) = &e.id
                && (stored.contains(id) || !known.insert(id.clone()))
            {
                report.duplicates += 1;
                continue;
            }
            fresh.push(e);
        }
        let mut dead = vec![false; fresh.len()];
        let read_by_none = self.pipelines.iter().all(|p| *p.stream != *stream)
            && self.recons.iter().all(|r| r.side(&stream).is_none());
        let mut accepted_by_any = vec![read_by_none; fresh.len()];
        // Events of this stream staged by earlier requests of the group: not in the raw
        // log yet, but the cold path must see them.
        let staged_before = batch.events.len();
        for i in 0..self.pipelines.len() {
            if *self.pipelines[i].stream != *stream {
                continue;
            }
            let mut br = BatchReport::default();
            let p = &mut self.pipelines[i];
            p.engine.advance(now, &mut self.buf);
            p.engine
                .ingest_batch(partition, &fresh, &mut br, &mut self.buf);
            let mut cold: BTreeSet<(Key, Window)> = BTreeSet::new();
            let mut late_here = br.corrected;
            let mut dead_here = vec![false; fresh.len()];
            let mut pr = PipelineReport {
                pipeline: p.engine.spec().name.clone(),
                late_applied: br.corrected,
                ..PipelineReport::default()
            };
            for (idx, outcome) in &br.follow_ups {
                match outcome {
                    Outcome::Recompute { key, windows } => {
                        late_here += 1;
                        pr.recomputed += 1;
                        cold.extend(windows.iter().map(|w| (key.clone(), *w)));
                    }
                    Outcome::DeadLettered(reason) => {
                        dead_here[*idx] = true;
                        pr.dead_lettered += 1;
                        batch.dead_letters.push(DeadLetter {
                            pipeline: p.engine.spec().name.clone(),
                            stream: stream.clone(),
                            event: fresh[*idx].clone(),
                            kind: dead_letter_kind(reason).into(),
                            reason: reason.to_string(),
                            at: now,
                        });
                    }
                    _ => {}
                }
            }
            for (j, d) in dead_here.iter().enumerate() {
                if *d {
                    dead[j] = true;
                } else {
                    accepted_by_any[j] = true;
                }
            }
            let uncommitted: Vec<&Event> = batch.events[..staged_before]
                .iter()
                .map(|r| &r.event)
                .filter(|e| *e.stream == *stream)
                .chain(
                    fresh
                        .iter()
                        .zip(&dead_here)
                        .filter(|(_, d)| !**d)
                        .map(|(e, _)| e),
                )
                .collect();
            for (key, w) in cold {
                self.recompute(i, &key, &[w], &uncommitted, &batch.emissions)?;
            }
            batch.emissions.append(&mut self.buf);
            report.late = report.late.max(late_here);
            report.pipelines.push(pr);
        }
        for r in &mut self.recons {
            let Some(side) = r.side(&stream) else {
                continue;
            };
            r.engine.advance(now, &mut r.out);
            let mut pr = PipelineReport {
                pipeline: r.name().clone(),
                ..PipelineReport::default()
            };
            for (j, e) in fresh.iter().enumerate() {
                let (kind, reason) = match r.record(side, e) {
                    Err(reason) => ("invalid", reason),
                    Ok(record) => match r.engine.ingest(side, &record, &mut r.out) {
                        ReconOutcome::Applied | ReconOutcome::Duplicate => {
                            accepted_by_any[j] = true;
                            continue;
                        }
                        ReconOutcome::DeadLettered { kind, reason } => (kind, reason),
                    },
                };
                dead[j] = true;
                pr.dead_lettered += 1;
                batch.dead_letters.push(DeadLetter {
                    pipeline: r.name().clone(),
                    stream: stream.clone(),
                    event: e.clone(),
                    kind: kind.into(),
                    reason,
                    at: now,
                });
            }
            r.drain(now, &mut batch.emissions);
            report.pipelines.push(pr);
        }
        for (j, e) in fresh.into_iter().enumerate() {
            if !accepted_by_any[j]
                && let Some(id) = &e.id
            {
                // Not stored, so the store will not know its id: a resend in a later
                // request of this commit must be dead-lettered again, as it would be
                // one request at a time.
                known.remove(id);
            }
            if accepted_by_any[j] {
                batch.events.push(RawRecord {
                    partition,
                    ingested_at: now,
                    event: e,
                });
                report.accepted += 1;
            }
            if dead[j] {
                report.dead_lettered += 1;
            }
        }
        // Each reader's dead letters of this request, by kind (the refused ones above
        // are every reader's).
        for pr in &mut report.pipelines {
            pr.dead_lettered = 0;
            pr.dead_letter_kinds.clear();
        }
        for d in &batch.dead_letters[dead_letters_before..] {
            if let Some(pr) = report
                .pipelines
                .iter_mut()
                .find(|p| p.pipeline == d.pipeline)
            {
                pr.dead_lettered += 1;
                let c = pr.dead_letter_kinds.entry(d.kind.clone()).or_default();
                if c.count == 0 {
                    c.reason = d.reason.clone();
                }
                c.count += 1;
            }
        }
        Ok(report)
    }

    /// Deletes raw events of `stream` that no pipeline reading it can need any more:
    /// older than `watermark - retention` of every one of them (results are kept).
    /// Returns how many were deleted.
    pub fn apply_retention(&self, stream: &str) -> Result<u64> {
        let horizon = self
            .pipelines
            .iter()
            .filter(|p| *p.stream == *stream)
            .map(|p| p.engine.watermark().0.minus(p.engine.spec().retention))
            .chain(
                self.recons
                    .iter()
                    // One whose watermark has not started yet holds no raw rows back.
                    .filter(|r| r.side(stream).is_some() && r.engine.watermark() > Watermark::MIN)
                    .map(|r| {
                        // A reconciliation keeps state for records within m + n.
                        let spec = r.engine.spec();
                        r.engine.watermark().0.minus(reckon_core::Span(
                            spec.horizon.0.saturating_add(spec.missing_after.0),
                        ))
                    }),
            )
            .min();
        match horizon {
            Some(before) if before > reckon_core::EventTime::MIN => {
                Ok(self.store.apply_retention(stream, before)?)
            }
            _ => Ok(0),
        }
    }

    /// Processing time passed with no event: timers, idle partitions, stalled
    /// watermarks and early results. Commits what it emitted with a journal tick per
    /// pipeline, so a replay advances exactly as this run did.
    pub fn tick(&mut self, now: ProcessingTime, sink: &mut dyn FnMut(&Emission)) -> Result<usize> {
        let mut batch = CommitBatch::default();
        for p in &mut self.pipelines {
            p.engine.advance(now, &mut self.buf);
            batch.ticks.push((p.engine.spec().name.clone(), now));
            batch.emissions.append(&mut self.buf);
        }
        for r in &mut self.recons {
            r.engine.advance(now, &mut r.out);
            batch.ticks.push((r.name().clone(), now));
            r.drain(now, &mut batch.emissions);
        }
        // Ticks count like batches for checkpoints, so an idle server's journal (a tick
        // row per engine per tick) does not grow the replay at restart without bound.
        self.batches += 1;
        if self.options.checkpoint_every > 0
            && self.batches.is_multiple_of(self.options.checkpoint_every)
        {
            let seq = self.store.last_seq() + batch.ticks.len() as u64;
            self.checkpoints_into(&mut batch, seq)?;
        }
        let emissions = batch.emissions.clone();
        self.store.commit(batch)?;
        emissions.iter().for_each(sink);
        Ok(emissions.len())
    }

    /// The input is complete (end of a bounded replay): every pipeline closes all its
    /// windows; the final results are committed with a checkpoint.
    pub fn finish(&mut self, sink: &mut dyn FnMut(&Emission)) -> Result<()> {
        let mut batch = CommitBatch::default();
        for p in &mut self.pipelines {
            p.engine.finish(&mut self.buf);
            batch.emissions.append(&mut self.buf);
        }
        let now = self
            .recons
            .iter()
            .map(|r| r.engine.now())
            .max()
            .unwrap_or(ProcessingTime::MIN);
        for r in &mut self.recons {
            r.engine.finish(&mut r.out);
            r.drain(now, &mut batch.emissions);
        }
        let seq = self.store.last_seq();
        self.checkpoints_into(&mut batch, seq)?;
        let emissions = batch.emissions.clone();
        self.store.commit(batch)?;
        emissions.iter().for_each(sink);
        Ok(())
    }

    /// Snapshots every pipeline now, in one commit.
    pub fn checkpoint(&mut self) -> Result<()> {
        let mut batch = CommitBatch::default();
        let seq = self.store.last_seq();
        self.checkpoints_into(&mut batch, seq)?;
        self.store.commit(batch)?;
        Ok(())
    }

    fn checkpoints_into(&self, batch: &mut CommitBatch, seq: u64) -> Result<()> {
        for p in &self.pipelines {
            batch.checkpoints.push(Checkpoint {
                pipeline: p.engine.spec().name.clone(),
                seq,
                snapshot: p.engine.snapshot()?,
            });
        }
        for r in &self.recons {
            batch.checkpoints.push(Checkpoint {
                pipeline: r.name().clone(),
                seq,
                snapshot: r.engine.snapshot()?,
            });
        }
        Ok(())
    }

    /// The cold path: recomputes windows of pipeline `i` from the raw log plus events
    /// of the current batch that are not committed yet.
    fn recompute(
        &mut self,
        i: usize,
        key: &Key,
        windows: &[Window],
        uncommitted: &[&Event],
        staged: &[Emission],
    ) -> Result<()> {
        let p = &mut self.pipelines[i];
        for &w in windows {
            // The newest version of the window: emitted in this call, staged by an
            // earlier request of this commit, or stored.
            let name = p.engine.spec().name.clone();
            let prior = self
                .buf
                .iter()
                .rev()
                .chain(staged.iter().rev())
                .find(|e| e.pipeline == name && &e.key == key && e.window == w)
                .cloned()
                .or(self.store.latest(&p.engine.spec().name, key, w.start)?)
                .map(|e| Prior {
                    version: e.version,
                    checksum: e.checksum,
                });
            let stored = self.store.raw_range(&p.stream, key, w.start, w.end)?;
            let events = stored.iter().chain(uncommitted.iter().copied());
            if let Some(em) = p
                .engine
                .recompute(key, w, prior, events)
                .map_err(Error::Engine)?
            {
                self.buf.push(em);
            }
        }
        Ok(())
    }
}

/// Random bytes for a reconciliation's id fingerprints, from the standard library's
/// randomly keyed SipHash (seeded by the OS): ids that collide under them cannot be
/// crafted. Kept in the reconciliation's checkpoints.
fn random_secret() -> [u8; reckon_core::reconcile::ID_SECRET_LEN] {
    use std::hash::{BuildHasher, Hasher};
    let mut secret = [0u8; reckon_core::reconcile::ID_SECRET_LEN];
    for (i, chunk) in secret.chunks_exact_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    secret
}

fn dead_letter_kind(r: &reckon_core::DeadLetterReason) -> &'static str {
    match r {
        reckon_core::DeadLetterReason::BeyondRetention { .. } => "beyond_retention",
        reckon_core::DeadLetterReason::Unwindowable { .. } => "unwindowable",
    }
}
