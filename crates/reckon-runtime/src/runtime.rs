//! The runtime: drives batches of events through the dataflow's operators and commits
//! what happened to the store in one atomic, durable write.
//!
//! The operators (window pipelines, rollups, reconciliations: every kind behind
//! [`reckon_core::Operator`]) are held in topological order, so an operator comes after
//! every operator whose results it reads. For each batch: duplicates by id are dropped
//! (the store remembers ids for the whole retention, beyond what the engines keep hot);
//! a *wave* runs through the operators in order: those reading the batch's stream
//! advance to the batch's processing time and ingest it, those reading an operator that
//! emitted or moved its watermark in this wave take its new results. Windows an
//! operator cannot correct from memory are recomputed (the cold path) from what they
//! are made of: the raw log for a stream input, the stored results for an operator
//! input, each with what this commit has not written yet. Then the events, every
//! emission of every level, dead letters and — every `checkpoint_every` batches — the
//! snapshots go to the store in one commit, acknowledged only after fsync. On open,
//! each operator restores its checkpoint and the journal written after it is replayed,
//! so the state is as if it had never stopped.
//!
//! The runtime is the store's only writer, which lets it know the journal sequence
//! numbers a commit will get (a checkpoint names the last one it covers).

use crate::config::{Config, OperatorConfig};
use crate::error::{Error, Result};
use reckon_core::{
    ColdData, ColdRequest, Emission, Event, EventId, EventTime, Operator, PartitionId, Prior,
    ProcessingTime, Source, StepReport, Watermark,
};
use reckon_store::{Checkpoint, CommitBatch, DeadLetter, JournalEntry, RawRecord, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Longest series key accepted (the store's keys hold it; fjall allows 64 KiB keys).
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Options of a running instance.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Snapshot every operator in the commit of every n-th batch (bounds replay on
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

/// One operator and its place in the dataflow.
struct Node {
    op: Box<dyn Operator>,
    /// Per input: the node it reads (an operator input) or `None` (a stream).
    upstream: Vec<Option<usize>>,
}

/// Where a wave's input stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// New events: not in the store yet (the cold path adds them to what it reads).
    Live,
    /// A restart's replay of the journal: the events are stored, and so is what came
    /// of them (later versions too): "unchanged" against the store means nothing here.
    Replay,
    /// Stored events fed to operators just started: their results are not stored.
    Backfill,
}

/// What a wave does at each operator.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// Events of `stream` from `partition` (the operators reading it ingest them).
    Events {
        stream: &'a str,
        partition: PartitionId,
        events: &'a [Event],
    },
    /// Processing time passed: every operator (or only the named one) advances.
    Tick { only: Option<&'a str> },
    /// The input is complete: every operator finishes.
    Finish,
}

/// What a wave did.
struct WaveOut {
    /// Every emission, in operator order.
    emissions: Vec<Emission>,
    /// Per node: whether it took part, and what it reported.
    reports: Vec<Option<StepReport>>,
}

/// What a wave's cold path may read that the store does not hold yet.
struct Staged<'a> {
    /// Emissions of earlier requests of this commit.
    emissions: &'a [Emission],
    /// Events of earlier requests of this commit.
    events: &'a [RawRecord],
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
    /// Events its filter kept out (counted, not dead letters).
    pub filtered: u64,
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

/// A running reckon: the store and the operators of the configuration.
pub struct Runtime {
    store: Store,
    /// The time guard of each stream that has one (`max_future`).
    max_future: HashMap<Arc<str>, reckon_core::Span>,
    /// Every operator, in topological order.
    nodes: Vec<Node>,
    /// Per stream: the operators reading it directly (node indices, in order).
    readers: HashMap<Arc<str>, Vec<usize>>,
    options: RuntimeOptions,
    batches: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field(
                "operators",
                &self.nodes.iter().map(|n| n.op.name()).collect::<Vec<_>>(),
            )
            .field("batches", &self.batches)
            .finish()
    }
}

impl Runtime {
    /// Opens the store of `config`, restores every operator from its checkpoint and
    /// replays the journal written since.
    pub fn open(config: &Config, options: RuntimeOptions) -> Result<Runtime> {
        let store = Store::open(&config.store.path)?;
        Runtime::with_store(config, store, options)
    }

    /// Like [`Runtime::open`], on an already open store.
    pub fn with_store(config: &Config, store: Store, options: RuntimeOptions) -> Result<Runtime> {
        let ordered = config.operators()?;
        let layout = layout(&ordered)?;
        let mut nodes = Vec::with_capacity(ordered.len());
        let mut checkpointed = Vec::with_capacity(ordered.len());
        for (oc, upstream) in ordered.iter().zip(layout) {
            let (op, seq) = build(oc, config, &store)?;
            nodes.push(Node { op, upstream });
            checkpointed.push(seq);
        }
        // Operators checkpoint together, so one without a checkpoint beside others that
        // have one was added to the configuration since: the journal may not go back
        // to its beginning any more. It starts as one added while running does
        // ([`Runtime::reconfigure`]), from the raw log and its inputs' stored results.
        let added: Vec<usize> = if checkpointed.iter().any(Option::is_some) {
            (0..nodes.len())
                .filter(|&i| checkpointed[i].is_none())
                .collect()
        } else {
            Vec::new()
        };
        let covered: Vec<u64> = checkpointed
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                _ if added.contains(&i) => u64::MAX,
                Some(seq) => *seq,
                None => 0,
            })
            .collect();
        let mut rt = Runtime {
            store,
            max_future: max_future(config),
            nodes,
            readers: HashMap::new(),
            options,
            batches: 0,
        };
        rt.rewire();
        let emissions = rt.replay_journal(&covered)?;
        // Everything replayed was committed before, with these versions; the store keeps
        // the newer of the two, so this commit only restores what a crash lost between
        // a commit and nothing (it is harmless either way).
        if !emissions.is_empty() {
            rt.store.commit(CommitBatch {
                emissions,
                ..CommitBatch::default()
            })?;
        }
        let resynced = rt.resync(&|i| !added.contains(&i))?;
        if !resynced.is_empty() {
            rt.store.commit(CommitBatch {
                emissions: resynced,
                ..CommitBatch::default()
            })?;
        }
        if !added.is_empty() {
            rt.start(&added, Vec::new(), Vec::new())?;
        }
        Ok(rt)
    }

    /// Who reads each stream, and which operators must keep their aggregate states
    /// (those another merges), from the nodes' inputs.
    fn rewire(&mut self) {
        self.readers.clear();
        for (i, node) in self.nodes.iter().enumerate() {
            for src in node.op.inputs() {
                if let Source::Stream(s) = src {
                    let r = self.readers.entry(s.clone()).or_default();
                    if r.last() != Some(&i) {
                        r.push(i);
                    }
                }
            }
        }
        let merged: Vec<usize> = self
            .nodes
            .iter()
            .flat_map(|n| n.upstream.iter().flatten().copied())
            .collect();
        for u in merged {
            self.nodes[u].op.keep_states();
        }
    }

    /// Changes the dataflow of a running instance to `config`'s without a restart
    /// (pipelines defined over the HTTP API): operators whose name `config` no longer
    /// has stop; operators it names that are not running start, each restored from its
    /// checkpoint if the store has one (else new), then fed what already exists: the
    /// journal (every event of its streams the raw log still holds) and, for an
    /// operator input that was running before, that operator's stored results (its
    /// newest version of every window). Operators running before go on untouched (a
    /// name is an identity: a changed definition must come under a new name). What
    /// the new operators emitted, their checkpoints and `catalog` (the definitions'
    /// rows) go to the store in **one** commit, so a restart finds them exactly as they
    /// are now (a stopped operator's checkpoint is deleted in it; its stored results
    /// stay); emissions are handed to `sink` after it. On an error nothing changed:
    /// the previous dataflow runs on.
    pub fn reconfigure(
        &mut self,
        config: &Config,
        catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        sink: &mut dyn FnMut(&Emission),
    ) -> Result<Reconfigured> {
        let ordered = config.operators()?;
        let layout = layout(&ordered)?;
        let mut built = Vec::with_capacity(ordered.len());
        for oc in &ordered {
            // A new operator starts empty (a leftover checkpoint of its name is
            // replaced by the one this change commits).
            built.push(match self.operator(oc.name()) {
                Some(_) => None,
                None => Some(oc.build(config, None, random_secret(), MAX_KEY_BYTES)?),
            });
        }
        // Nothing has changed yet; from here on a failure puts the previous dataflow back.
        let previous: Vec<(Arc<str>, Vec<Option<usize>>)> = self
            .nodes
            .iter()
            .map(|n| (n.op.name().clone(), n.upstream.clone()))
            .collect();
        let previous_future = std::mem::replace(&mut self.max_future, max_future(config));
        let mut held: HashMap<Arc<str>, Box<dyn Operator>> = self
            .nodes
            .drain(..)
            .map(|n| (n.op.name().clone(), n.op))
            .collect();
        let mut started = Vec::new();
        let mut missing = None;
        for ((oc, upstream), fresh) in ordered.iter().zip(layout).zip(built) {
            let op = match fresh {
                Some(op) => {
                    started.push(self.nodes.len());
                    op
                }
                None => match held.remove(oc.name()) {
                    Some(op) => op,
                    None => {
                        missing = Some(oc.name());
                        break;
                    }
                },
            };
            self.nodes.push(Node { op, upstream });
        }
        let result = match missing {
            Some(name) => Err(Error::Config(format!(
                "operator `{name}` vanished while the dataflow was changed"
            ))),
            None => {
                self.rewire();
                let dropped = held.keys().cloned().collect();
                self.start(&started, dropped, catalog)
            }
        };
        match result {
            Ok(emissions) => {
                emissions.iter().for_each(sink);
                let mut stopped: Vec<Arc<str>> = held.into_keys().collect();
                stopped.sort();
                Ok(Reconfigured {
                    started: started
                        .iter()
                        .map(|&i| self.nodes[i].op.name().clone())
                        .collect(),
                    stopped,
                    emissions: emissions.len(),
                })
            }
            Err(e) => {
                for n in self.nodes.drain(..) {
                    held.insert(n.op.name().clone(), n.op);
                }
                for (name, upstream) in previous {
                    if let Some(op) = held.remove(&name) {
                        self.nodes.push(Node { op, upstream });
                    }
                }
                self.max_future = previous_future;
                self.rewire();
                Err(e)
            }
        }
    }

    /// Feeds the operators just started (node indices `started`) what exists already,
    /// and commits what they emitted with their checkpoints, `catalog`, and the removal
    /// of the checkpoints of the operators that stopped (`dropped`: kept, they would
    /// hold the journal back for good).
    fn start(
        &mut self,
        started: &[usize],
        dropped: Vec<Arc<str>>,
        catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<Vec<Emission>> {
        let is_new = |i: usize| started.contains(&i);
        let mut emissions = self.replay_raw(&is_new)?;
        // An input that ran before has results the journal replay did not make (it
        // skips operators that were running): the new operator takes them as stored, in
        // the order they were emitted; its own results flow on to new operators after it.
        let n = self.nodes.len();
        let mut produced: Vec<Option<(usize, usize)>> = vec![None; n];
        for &i in started {
            let mut out = Vec::new();
            let mut rep = StepReport::default();
            let inputs: Vec<(usize, usize)> = self.nodes[i]
                .upstream
                .iter()
                .enumerate()
                .filter_map(|(j, u)| Some((j, (*u)?)))
                .collect();
            for (j, u) in inputs {
                let wm = self.nodes[u].op.watermark();
                let results = if is_new(u) {
                    produced[u].map_or_else(Vec::new, |(a, b)| emissions[a..b].to_vec())
                } else {
                    let mut stored = self.store.windows(
                        self.nodes[u].op.name(),
                        None,
                        EventTime::MIN,
                        EventTime::MAX,
                        None,
                    )?;
                    stored.sort_by(|a, b| {
                        (a.emitted_at, &a.key, a.window.start).cmp(&(
                            b.emitted_at,
                            &b.key,
                            b.window.start,
                        ))
                    });
                    stored
                };
                if results.is_empty() && is_new(u) {
                    continue;
                }
                self.nodes[i]
                    .op
                    .ingest_results(j, &results, wm, &mut out, &mut rep)?;
            }
            let cold = std::mem::take(&mut rep.cold);
            if !cold.is_empty() {
                let staged = Staged {
                    emissions: &emissions,
                    events: &[],
                };
                let ctx = ColdContext {
                    store: &self.store,
                    staged: &staged,
                    step: Step::Tick { only: None },
                    mode: Mode::Backfill,
                    wave: &[],
                    produced: &vec![None; n],
                };
                ctx.run(&mut self.nodes[i], cold, &rep, &mut out)?;
            }
            let a = emissions.len();
            emissions.append(&mut out);
            produced[i] = Some((a, emissions.len()));
        }
        emissions.extend(self.resync(&is_new)?);
        // Only the newest version of each window is committed: the ones before it were
        // never seen by anyone (operators downstream took them above), like the
        // versions one commit of several requests coalesces.
        let mut newest: HashMap<(Arc<str>, reckon_core::Key, EventTime), usize> = HashMap::new();
        for (i, e) in emissions.iter().enumerate() {
            newest.insert((e.pipeline.clone(), e.key.clone(), e.window.start), i);
        }
        let emissions: Vec<Emission> = emissions
            .into_iter()
            .enumerate()
            .filter(|(i, e)| {
                newest.get(&(e.pipeline.clone(), e.key.clone(), e.window.start)) == Some(i)
            })
            .map(|(_, e)| e)
            .collect();
        // Every operator is checkpointed, not only the new ones: operators checkpoint
        // together, which is how a restart tells an operator added to the configuration
        // (no checkpoint beside others that have one) from one that has not reached its
        // first checkpoint yet.
        let mut batch = CommitBatch {
            emissions: emissions.clone(),
            dropped_checkpoints: dropped,
            catalog,
            ..CommitBatch::default()
        };
        self.checkpoints_into(&mut batch, self.store.last_seq())?;
        self.store.commit(batch)?;
        Ok(emissions)
    }

    /// Replays the journal after the oldest checkpoint; operator `i` skips entries its
    /// checkpoint covers (`covered[i]`). Returns what the replay emitted (not committed).
    fn replay_journal(&mut self, covered: &[u64]) -> Result<Vec<Emission>> {
        let Some(&from) = covered.iter().min() else {
            return Ok(Vec::new());
        };
        if from == u64::MAX {
            return Ok(Vec::new());
        }
        let journal = self.store.journal_after(from)?;
        let mut emissions = Vec::new();
        for (seq, entry) in journal {
            let skip = |i: usize| seq <= covered[i];
            let staged = Staged {
                emissions: &emissions,
                events: &[],
            };
            let out = match &entry {
                JournalEntry::Tick { pipeline, at } => self.wave(
                    *at,
                    Step::Tick {
                        only: Some(pipeline),
                    },
                    &skip,
                    &staged,
                    Mode::Replay,
                )?,
                JournalEntry::Event(raw) => self.wave(
                    raw.ingested_at,
                    Step::Events {
                        stream: &raw.event.stream,
                        partition: raw.partition,
                        events: std::slice::from_ref(&raw.event),
                    },
                    &skip,
                    &staged,
                    Mode::Replay,
                )?,
            };
            emissions.extend(out.emissions);
        }
        Ok(emissions)
    }

    /// Feeds the operators `which` selects (new ones) every event the raw log holds of
    /// the streams they read, in the order they arrived (by processing time; the
    /// journal itself only goes back to the oldest checkpoint), as a replay: the
    /// events are stored already. Returns what they emitted (not committed).
    fn replay_raw(&mut self, which: &dyn Fn(usize) -> bool) -> Result<Vec<Emission>> {
        let streams: BTreeSet<Arc<str>> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| which(*i))
            .flat_map(|(_, n)| n.op.inputs())
            .filter_map(|s| match s {
                Source::Stream(s) => Some(s.clone()),
                Source::Operator(_) => None,
            })
            .collect();
        let mut records = Vec::new();
        for s in &streams {
            records.extend(self.store.raw_records(s)?);
        }
        // Stable: within one processing time, by stream, key and event time.
        records.sort_by_key(|r| r.ingested_at);
        let skip = |i: usize| !which(i);
        let mut emissions = Vec::new();
        let mut rest = &records[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|r| {
                    r.ingested_at == first.ingested_at
                        && r.partition == first.partition
                        && r.event.stream == first.event.stream
                })
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let events: Vec<Event> = group.iter().map(|r| r.event.clone()).collect();
            let staged = Staged {
                emissions: &emissions,
                events: &[],
            };
            let out = self.wave(
                first.ingested_at,
                Step::Events {
                    stream: &first.event.stream,
                    partition: first.partition,
                    events: &events,
                },
                &skip,
                &staged,
                Mode::Backfill,
            )?;
            emissions.extend(out.emissions);
        }
        Ok(emissions)
    }

    /// After a replay: operators fed by others' emissions make their versions
    /// consistent with the store's ([`Operator::resync`]); only the nodes `which`
    /// selects. Returns what they emitted (not committed).
    fn resync(&mut self, which: &dyn Fn(usize) -> bool) -> Result<Vec<Emission>> {
        let mut resynced = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !which(i) {
                continue;
            }
            let name = node.op.name().clone();
            let store = &self.store;
            node.op.resync(
                &mut |key, w| {
                    Ok(store
                        .latest(&name, key, w.start)
                        .map_err(|e| {
                            reckon_core::Error::Internal(format!("reading `{name}` {w}: {e}"))
                        })?
                        .map(|e| Prior {
                            version: e.version,
                            checksum: e.checksum,
                        }))
                },
                &mut resynced,
            )?;
        }
        Ok(resynced)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every operator, in topological order (an operator after those it reads).
    pub fn operators(&self) -> impl Iterator<Item = &dyn Operator> {
        self.nodes.iter().map(|n| &*n.op)
    }

    /// An operator by name.
    pub fn operator(&self, name: &str) -> Option<&dyn Operator> {
        self.operators().find(|o| &**o.name() == name)
    }

    /// The watermark of an operator.
    pub fn watermark(&self, name: &str) -> Option<Watermark> {
        self.operator(name).map(|o| o.watermark())
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
        self.ingest_many_with(now, requests, Vec::new(), sink)
    }

    /// [`Runtime::ingest_many`], with `catalog` rows committed in the same commit as
    /// the events: a source's position (`(key, Some(value))` puts, `(key, None)`
    /// removes, applied in order), so the events and where the source stood after them
    /// are durable together or not at all.
    pub fn ingest_many_with(
        &mut self,
        now: ProcessingTime,
        requests: Vec<IngestRequest>,
        catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
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
        // `stage` checks every id against the store (`ids_seen`) and lets only unseen
        // ones through, and this runtime is the store's only writer: the committer
        // need not look them up again.
        let mut batch = CommitBatch {
            ids_checked: true,
            catalog,
            ..CommitBatch::default()
        };
        // Ids of this group's events per stream: the store does not know them yet.
        let mut pending_ids: HashMap<Arc<str>, HashSet<EventId>> = HashMap::new();
        let mut touched: BTreeSet<usize> = BTreeSet::new();
        let mut reports = Vec::with_capacity(requests.len());
        for req in requests {
            let known = pending_ids.entry(req.stream.clone()).or_default();
            reports.push(self.stage(now, req, known, &mut batch, &mut touched)?);
        }
        // Every operator that took part advanced to `now`, even if none of its events
        // is journaled (all duplicates, invalid or dead-lettered): a tick makes the
        // replay advance exactly as this run did (idle partitions and the stall rule
        // depend on it).
        for &i in &touched {
            batch.ticks.push((self.nodes[i].op.name().clone(), now));
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
        // With a checkpoint, raw events no reader of the group's streams needs any more
        // are deleted in the same commit (by the committer, the store's only writer).
        if !batch.checkpoints.is_empty() {
            let streams: BTreeSet<Arc<str>> = pending_ids.into_keys().collect();
            for s in streams {
                if let Some(before) = self.retention_horizon(&s) {
                    batch.retention.push((s, before));
                }
            }
        }
        let retention = batch.retention.clone();
        // The sink sees the emissions only once they are durable.
        let emissions = batch.emissions.clone();
        let committed = self.store.commit(batch)?;
        for r in &mut reports {
            r.last_seq = committed.last_seq;
        }
        emissions.iter().for_each(sink);
        if committed.retention_pending {
            // More rows than one commit deletes: drive it on in commits of its own.
            for (s, before) in retention {
                self.store.apply_retention(&s, before)?;
            }
        }
        Ok(reports)
    }

    /// An operator reading `stream` that was finished ([`Runtime::finish`]: its
    /// watermark is at the end of time, so it would dead-letter every event). Ingest
    /// into such a stream is refused.
    pub fn finished_reader(&self, stream: &str) -> Option<Arc<str>> {
        self.readers
            .get(stream)?
            .iter()
            .map(|&i| &self.nodes[i].op)
            .find(|op| op.is_finished())
            .map(|op| op.name().clone())
    }

    /// Every finished operator (see [`Runtime::finished_reader`]).
    pub fn finished(&self) -> Vec<Arc<str>> {
        self.operators()
            .filter(|o| o.is_finished())
            .map(|o| o.name().clone())
            .collect()
    }

    /// The time guard of `stream`: events later than this at `now` are dead-lettered
    /// with kind `future` (`None`: no guard).
    pub fn future_limit(&self, stream: &str, now: ProcessingTime) -> Option<EventTime> {
        self.max_future
            .get(stream)
            .map(|s| EventTime(now.0).plus(*s))
    }

    /// The names of the operators reading `stream` directly.
    fn reader_names(&self, stream: &str) -> Vec<Arc<str>> {
        self.readers
            .get(stream)
            .into_iter()
            .flatten()
            .map(|&i| self.nodes[i].op.name().clone())
            .collect()
    }

    /// Runs one request through the dataflow and adds what it caused to `batch` (not
    /// committed yet); `touched` collects the operators that took part.
    fn stage(
        &mut self,
        now: ProcessingTime,
        req: IngestRequest,
        known: &mut HashSet<EventId>,
        batch: &mut CommitBatch,
        touched: &mut BTreeSet<usize>,
    ) -> Result<IngestReport> {
        let IngestRequest {
            stream,
            partition,
            events,
        } = req;
        let mut report = IngestReport::default();
        let dead_letters_before = batch.dead_letters.len();
        let readers = self.reader_names(&stream);
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
        let direct: Vec<usize> = self.readers.get(&stream).cloned().unwrap_or_default();
        let out = {
            let staged = Staged {
                emissions: &batch.emissions,
                events: &batch.events,
            };
            self.wave(
                now,
                Step::Events {
                    stream: &stream,
                    partition,
                    events: &fresh,
                },
                &|_| false,
                &staged,
                Mode::Live,
            )?
        };
        let mut dead = vec![false; fresh.len()];
        let mut accepted_by_any = vec![direct.is_empty(); fresh.len()];
        for (i, rep) in out.reports.into_iter().enumerate() {
            let Some(rep) = rep else {
                continue;
            };
            touched.insert(i);
            if !direct.contains(&i) {
                continue;
            }
            let name = self.nodes[i].op.name().clone();
            let mut dead_here = vec![false; fresh.len()];
            for d in &rep.dead {
                let Some(e) = fresh.get(d.index) else {
                    continue;
                };
                dead_here[d.index] = true;
                dead[d.index] = true;
                batch.dead_letters.push(DeadLetter {
                    pipeline: name.clone(),
                    stream: stream.clone(),
                    event: e.clone(),
                    kind: d.kind.into(),
                    reason: d.reason.clone(),
                    at: now,
                });
            }
            for (j, d) in dead_here.iter().enumerate() {
                if !d {
                    accepted_by_any[j] = true;
                }
            }
            report.late = report.late.max(rep.corrected + rep.recomputed);
            report.pipelines.push(PipelineReport {
                pipeline: name,
                late_applied: rep.corrected,
                recomputed: rep.recomputed,
                filtered: rep.filtered,
                ..PipelineReport::default()
            });
        }
        batch.emissions.extend(out.emissions);
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

    /// Runs one step through every operator in topological order: an operator takes
    /// part if the step is for it (it reads the events' stream; a tick for it or for
    /// all; a finish) or if an operator it reads took part (then it takes that one's
    /// new results and watermark). `skip` leaves operators out (a replay skips what
    /// their checkpoint covers). `mode`: whether the step's events, and the results,
    /// are in the store already (see [`Mode`]).
    fn wave(
        &mut self,
        now: ProcessingTime,
        step: Step<'_>,
        skip: &dyn Fn(usize) -> bool,
        staged: &Staged<'_>,
        mode: Mode,
    ) -> Result<WaveOut> {
        let n = self.nodes.len();
        let mut emissions: Vec<Emission> = Vec::new();
        let mut produced: Vec<Option<(usize, usize)>> = vec![None; n];
        let mut reports: Vec<Option<StepReport>> = vec![None; n];
        for i in 0..n {
            if skip(i) {
                continue;
            }
            let node = &self.nodes[i];
            let streams: Vec<usize> = match step {
                Step::Events { stream, .. } => node
                    .op
                    .inputs()
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| matches!(s, Source::Stream(x) if **x == *stream))
                    .map(|(j, _)| j)
                    .collect(),
                _ => Vec::new(),
            };
            // (input, upstream node, its results, its watermark)
            let fed: Vec<(usize, (usize, usize), Watermark)> = node
                .upstream
                .iter()
                .enumerate()
                .filter_map(|(j, u)| {
                    let u = (*u)?;
                    Some((j, produced[u]?, self.nodes[u].op.watermark()))
                })
                .collect();
            let active = match step {
                Step::Events { .. } => !streams.is_empty() || !fed.is_empty(),
                Step::Tick { only } => {
                    only.is_none_or(|o| **node.op.name() == *o) || !fed.is_empty()
                }
                Step::Finish => true,
            };
            if !active {
                continue;
            }
            let mut out = Vec::new();
            let mut rep = StepReport::default();
            let op = &mut self.nodes[i].op;
            if !matches!(step, Step::Finish) {
                op.advance(now, &mut out);
            }
            if let Step::Events {
                partition, events, ..
            } = step
            {
                for &j in &streams {
                    op.ingest_events(j, partition, events, &mut out, &mut rep);
                }
            }
            for &(j, (a, b), wm) in &fed {
                op.ingest_results(j, &emissions[a..b], wm, &mut out, &mut rep)?;
            }
            if matches!(step, Step::Finish) {
                op.finish(&mut out);
            }
            let cold = std::mem::take(&mut rep.cold);
            if !cold.is_empty() {
                let ctx = ColdContext {
                    store: &self.store,
                    staged,
                    step,
                    mode,
                    wave: &emissions,
                    produced: &produced,
                };
                ctx.run(&mut self.nodes[i], cold, &rep, &mut out)?;
            }
            let a = emissions.len();
            emissions.append(&mut out);
            produced[i] = Some((a, emissions.len()));
            reports[i] = Some(rep);
        }
        Ok(WaveOut { emissions, reports })
    }

    /// Deletes raw events of `stream` that no operator reading it can need any more:
    /// older than the retention horizon of every one of them (results are kept).
    /// Returns how many were deleted.
    pub fn apply_retention(&self, stream: &str) -> Result<u64> {
        match self.retention_horizon(stream) {
            Some(before) => Ok(self.store.apply_retention(stream, before)?),
            None => Ok(0),
        }
    }

    /// The time before which no operator reading `stream` needs its raw events (the
    /// earliest retention horizon among them), if any.
    fn retention_horizon(&self, stream: &str) -> Option<EventTime> {
        let horizon = self
            .readers
            .get(stream)
            .into_iter()
            .flatten()
            .flat_map(|&i| {
                let op = &self.nodes[i].op;
                op.inputs()
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| matches!(s, Source::Stream(x) if **x == *stream))
                    .filter_map(|(j, _)| op.retention_horizon(j))
                    .collect::<Vec<_>>()
            })
            .min();
        horizon.filter(|&before| before > EventTime::MIN)
    }

    /// Processing time passed with no event: timers, idle partitions, stalled
    /// watermarks and early results. Commits what it emitted with a journal tick per
    /// operator, so a replay advances exactly as this run did.
    pub fn tick(&mut self, now: ProcessingTime, sink: &mut dyn FnMut(&Emission)) -> Result<usize> {
        let out = self.wave(
            now,
            Step::Tick { only: None },
            &|_| false,
            &Staged {
                emissions: &[],
                events: &[],
            },
            Mode::Live,
        )?;
        let mut batch = CommitBatch {
            emissions: out.emissions,
            ticks: self
                .nodes
                .iter()
                .map(|n| (n.op.name().clone(), now))
                .collect(),
            ..CommitBatch::default()
        };
        // Ticks count like batches for checkpoints, so an idle server's journal (a tick
        // row per operator per tick) does not grow the replay at restart without bound.
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

    /// The input is complete (end of a bounded replay): every operator closes all its
    /// windows; the final results are committed with a checkpoint.
    pub fn finish(&mut self, sink: &mut dyn FnMut(&Emission)) -> Result<()> {
        let now = self
            .operators()
            .map(|o| o.now())
            .max()
            .unwrap_or(ProcessingTime::MIN);
        let out = self.wave(
            now,
            Step::Finish,
            &|_| false,
            &Staged {
                emissions: &[],
                events: &[],
            },
            Mode::Live,
        )?;
        let mut batch = CommitBatch {
            emissions: out.emissions,
            ..CommitBatch::default()
        };
        let seq = self.store.last_seq();
        self.checkpoints_into(&mut batch, seq)?;
        let emissions = batch.emissions.clone();
        self.store.commit(batch)?;
        emissions.iter().for_each(sink);
        Ok(())
    }

    /// Snapshots every operator now, in one commit.
    pub fn checkpoint(&mut self) -> Result<()> {
        let mut batch = CommitBatch::default();
        let seq = self.store.last_seq();
        self.checkpoints_into(&mut batch, seq)?;
        self.store.commit(batch)?;
        Ok(())
    }

    fn checkpoints_into(&self, batch: &mut CommitBatch, seq: u64) -> Result<()> {
        for n in &self.nodes {
            batch.checkpoints.push(Checkpoint {
                pipeline: n.op.name().clone(),
                seq,
                snapshot: n.op.snapshot()?,
            });
        }
        Ok(())
    }
}

/// What the cold path of one operator in a wave can read.
struct ColdContext<'a> {
    store: &'a Store,
    staged: &'a Staged<'a>,
    step: Step<'a>,
    mode: Mode,
    /// Emissions of operators earlier in this wave, and which are whose.
    wave: &'a [Emission],
    produced: &'a [Option<(usize, usize)>],
}

impl ColdContext<'_> {
    /// Recomputes each requested window of `node` from what it is made of: the raw log
    /// (plus this commit's events not written yet) for a stream input, the input
    /// operator's stored results (plus this commit's) for an operator input.
    fn run(
        &self,
        node: &mut Node,
        mut requests: Vec<ColdRequest>,
        rep: &StepReport,
        out: &mut Vec<Emission>,
    ) -> Result<()> {
        requests.sort();
        requests.dedup();
        let name = node.op.name().clone();
        for r in requests {
            // The newest version of the window: emitted in this call, staged by an
            // earlier request of this commit, or stored.
            let prior = match out
                .iter()
                .rev()
                .chain(self.staged.emissions.iter().rev())
                .find(|e| e.pipeline == name && e.key == r.key && e.window == r.window)
            {
                Some(e) => Some(Prior {
                    version: e.version,
                    checksum: e.checksum,
                }),
                None => self
                    .store
                    .latest(&name, &r.key, r.window.start)?
                    .map(|e| Prior {
                        version: e.version,
                        checksum: e.checksum,
                    }),
            };
            // A replay's store already holds what came later: "unchanged" against it
            // does not mean unchanged at this point of the journal, and operators
            // downstream must still see the window's state. So a replay recomputes
            // against nothing and gives the result the stored version, which the store
            // ignores (it is not newer) and the operators downstream take.
            let (engine_prior, stored_version) = if self.mode == Mode::Replay {
                (None, prior.map(|p| p.version))
            } else {
                (prior, None)
            };
            let Some(input) = node.op.inputs().get(r.input).cloned() else {
                return Err(Error::Engine(reckon_core::Error::Internal(format!(
                    "`{name}` asked for a recompute from input {}, which it does not have",
                    r.input
                ))));
            };
            let em = match &input {
                Source::Stream(s) => {
                    let stored = self
                        .store
                        .raw_range(s, &r.key, r.window.start, r.window.end)?;
                    let mut events: Vec<&Event> = stored.iter().collect();
                    events.extend(
                        self.staged
                            .events
                            .iter()
                            .filter(|x| *x.event.stream == **s)
                            .map(|x| &x.event),
                    );
                    if let Step::Events {
                        stream,
                        events: now,
                        ..
                    } = self.step
                        && self.mode == Mode::Live
                        && *stream == **s
                    {
                        let dead: HashSet<usize> = rep.dead.iter().map(|d| d.index).collect();
                        events.extend(
                            now.iter()
                                .enumerate()
                                .filter(|(k, _)| !dead.contains(k))
                                .map(|(_, e)| e),
                        );
                    }
                    node.op
                        .recompute(&r.key, r.window, engine_prior, ColdData::Events(events))?
                }
                Source::Operator(up) => {
                    let mut latest: BTreeMap<EventTime, Emission> = BTreeMap::new();
                    for e in
                        self.store
                            .windows(up, Some(&r.key), r.window.start, r.window.end, None)?
                    {
                        latest.insert(e.window.start, e);
                    }
                    let this_wave = node.upstream[r.input]
                        .and_then(|u| self.produced[u])
                        .map_or(&[][..], |(a, b)| &self.wave[a..b]);
                    for e in self.staged.emissions.iter().chain(this_wave) {
                        if e.pipeline != *up
                            || e.key != r.key
                            || e.window.start < r.window.start
                            || e.window.start >= r.window.end
                        {
                            continue;
                        }
                        match latest.get(&e.window.start) {
                            Some(x) if x.version >= e.version => {}
                            _ => {
                                latest.insert(e.window.start, e.clone());
                            }
                        }
                    }
                    node.op.recompute(
                        &r.key,
                        r.window,
                        engine_prior,
                        ColdData::Results(latest.values().collect()),
                    )?
                }
            };
            out.extend(em.map(|mut em| {
                if let Some(v) = stored_version {
                    em.version = v;
                }
                em
            }));
        }
        Ok(())
    }
}

/// What [`Runtime::reconfigure`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconfigured {
    /// Operators started, in topological order.
    pub started: Vec<Arc<str>>,
    /// Operators stopped (their names are no longer in the configuration).
    pub stopped: Vec<Arc<str>>,
    /// Results the started operators emitted from what existed already.
    pub emissions: usize,
}

/// Per operator of `ordered` (topological order), per input: the index of the operator
/// it reads, or `None` for a stream.
fn layout(ordered: &[OperatorConfig<'_>]) -> Result<Vec<Vec<Option<usize>>>> {
    let index: HashMap<&str, usize> = ordered
        .iter()
        .enumerate()
        .map(|(i, oc)| (oc.name(), i))
        .collect();
    ordered
        .iter()
        .enumerate()
        .map(|(i, oc)| {
            oc.inputs()
                .iter()
                .map(|src| match src {
                    Source::Stream(_) => Ok(None),
                    Source::Operator(name) => match index.get(&**name) {
                        Some(&u) if u < i => Ok(Some(u)),
                        _ => Err(Error::Config(format!(
                            "`{}` reads `{name}`, which does not come before it",
                            oc.name()
                        ))),
                    },
                })
                .collect()
        })
        .collect()
}

/// The engine of `oc`, restored from its checkpoint if the store has one, and the
/// journal sequence number the checkpoint covers (`None` without one).
fn build(
    oc: &OperatorConfig<'_>,
    config: &Config,
    store: &Store,
) -> Result<(Box<dyn Operator>, Option<u64>)> {
    let cp = store.checkpoint(oc.name())?;
    let op = oc.build(
        config,
        cp.as_ref().map(|c| c.snapshot.as_slice()),
        random_secret(),
        MAX_KEY_BYTES,
    )?;
    Ok((op, cp.map(|c| c.seq)))
}

/// The time guard of every stream that has one.
fn max_future(config: &Config) -> HashMap<Arc<str>, reckon_core::Span> {
    config
        .streams
        .iter()
        .filter_map(|s| Some((Arc::from(s.name.as_str()), s.max_future.0?)))
        .collect()
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
