//! The windowed pipeline engine: events in, versioned window results out.
//!
//! A [`Pipeline`] keeps the *hot* state of every window that may still change from
//! memory: open windows, and closed windows within `allowed_lateness`. For each event
//! it decides the lateness tier of every window the event falls into:
//!
//! | watermark `wm` vs window `[start, end)` | tier | what happens |
//! |---|---|---|
//! | `wm < end` | open | the event is added; the result comes when `wm` reaches `end` |
//! | `end <= wm < end + allowed_lateness` | hot late | added, and a `late` correction is emitted at once |
//! | `end + allowed_lateness <= wm`, `start >= wm - retention` | cold | [`Outcome::Recompute`]: the driver recomputes from raw events |
//! | `start < wm - retention` (earliest window) | dead | [`Outcome::DeadLettered`] |
//!
//! So `wm == end + allowed_lateness` is already cold: the state is evicted exactly when
//! the watermark reaches that point. Window results are versioned per window; every
//! emission is the previous version + 1 and replaces it.
//!
//! The engine is pure and deterministic: same calls, same emissions. Processing time
//! only enters through [`Pipeline::advance`].

use crate::aggregate::AggState;
use crate::checksum::Checksum;
use crate::emission::{DeadLetterReason, Emission, EmissionKind, Outcome, Version};
use crate::error::{Error, Result};
use crate::event::{Event, Key};
use crate::spec::PipelineSpec;
use crate::time::{EventTime, ProcessingTime};
use crate::watermark::{PartitionId, Watermark, WatermarkTracker};
use crate::window::Window;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What the driver knows of a window's latest stored version, handed to
/// [`Pipeline::recompute`] so the recomputed result gets the next version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Prior {
    /// The latest stored version.
    pub version: Version,
    /// Its checksum; a recompute that finds the same checksum emits nothing.
    pub checksum: Checksum,
}

/// What happened, counted. Every ingested event is counted in exactly one of
/// `applied`, `corrected`, `recompute_requested`, `duplicates`, `dead_lettered`,
/// `filtered`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Events ingested.
    pub events: u64,
    /// Events added to open windows only.
    pub applied: u64,
    /// Late events that corrected hot windows.
    pub corrected: u64,
    /// Late events that needed a cold recompute of at least one window.
    pub recompute_requested: u64,
    /// Events not counted again because their id was already in the window.
    pub duplicates: u64,
    /// Events kept out of every result (dead letters).
    pub dead_lettered: u64,
    /// Events the pipeline's filter kept out. Not in snapshots (their format predates
    /// filters): counted since the process started.
    #[serde(skip)]
    pub filtered: u64,
    /// Emissions of kind `early`.
    pub emitted_early: u64,
    /// Emissions of kind `on_time`.
    pub emitted_on_time: u64,
    /// Emissions of kind `late`.
    pub emitted_late: u64,
    /// Emissions of kind `recomputed`.
    pub emitted_recomputed: u64,
    /// Recomputes that found the window unchanged (e.g. a duplicate in a cold window).
    pub recompute_unchanged: u64,
    /// Window states evicted from memory after allowed lateness.
    pub evicted: u64,
}

impl Counters {
    fn count_emission(&mut self, kind: EmissionKind) {
        match kind {
            EmissionKind::Early => self.emitted_early += 1,
            EmissionKind::OnTime => self.emitted_on_time += 1,
            EmissionKind::Late => self.emitted_late += 1,
            EmissionKind::Recomputed => self.emitted_recomputed += 1,
            // Reconciliation kinds; a window pipeline never emits them.
            EmissionKind::Missing
            | EmissionKind::Found
            | EmissionKind::Completeness
            | EmissionKind::Firing
            | EmissionKind::Resolved
            | EmissionKind::Retracted => {}
        }
    }
}

/// Where an aggregate's field was found in the last event. Events of one source
/// usually share their field-name `Arc`s and field order, so a pointer check replaces
/// a string comparison; the slot holds a clone of the name, so the pointer it compares
/// with cannot be freed and reused for another name.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldSlot {
    name: Option<Arc<str>>,
    pos: usize,
}

impl FieldSlot {
    #[inline]
    pub(crate) fn find<'e>(
        &mut self,
        field: &str,
        e: &'e Event,
    ) -> Option<&'e crate::event::Value> {
        // The cached position holds only if it is the field's first occurrence (an
        // event may repeat a name; `Event::field` and the oracle read the first).
        if let (Some(cached), Some((n, v))) = (&self.name, e.fields.get(self.pos))
            && Arc::ptr_eq(cached, n)
            && e.fields[..self.pos]
                .iter()
                .all(|(m, _)| m.as_ref() != field)
        {
            return Some(v);
        }
        self.find_slow(field, e)
    }

    // Out of line: the string search and the `Arc` swap would otherwise spill the
    // registers of the whole event loop they are inlined into.
    #[inline(never)]
    fn find_slow<'e>(&mut self, field: &str, e: &'e Event) -> Option<&'e crate::event::Value> {
        let pos = e.fields.iter().position(|(n, _)| n.as_ref() == field)?;
        let (n, v) = &e.fields[pos];
        self.name = Some(n.clone());
        self.pos = pos;
        Some(v)
    }
}

/// How the hot path feeds one aggregate, decided once per pipeline from its spec, so
/// that the event loop adds numbers in place for the common kinds and leaves the
/// general [`AggState::update`] (filters, min/max, sketches) out of line. Both give the
/// same state: the common arms are `update`'s own arms for these kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    /// `count(*)` without a filter: one more per event.
    CountAll,
    /// `sum` or `mean` of a field without a filter: the field's number is added.
    Sum,
    /// Any other aggregate: [`AggState::update`].
    General,
}

impl Feed {
    fn plan(spec: &PipelineSpec) -> Box<[Feed]> {
        use crate::aggregate::AggKind;
        spec.aggregates
            .iter()
            .map(|a| match (a.kind, &a.field, &a.filter) {
                (AggKind::Count, None, None) => Feed::CountAll,
                (AggKind::Sum | AggKind::Mean, Some(_), None) => Feed::Sum,
                _ => Feed::General,
            })
            .collect()
    }
}

/// Facts about an event computed ahead of its sequential turn.
#[derive(Clone, Copy, Default, Debug)]
struct LookAhead {
    key: Option<u32>,
    digest: u64,
}

/// The outcomes of a batch: the common ones counted, the ones the driver must act on
/// (recomputes, dead letters) listed with the event's index in the batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchReport {
    /// Events added to open windows.
    pub applied: u64,
    /// Late events that corrected hot windows.
    pub corrected: u64,
    /// Duplicates not counted again.
    pub duplicates: u64,
    /// Events the pipeline's filter kept out.
    pub filtered: u64,
    /// `Recompute` and `DeadLettered` outcomes, by index in the batch.
    pub follow_ups: Vec<(usize, Outcome)>,
}

impl BatchReport {
    // Inline, with every variant named: the common outcomes own nothing, and the
    // compiler then sees that they need no drop (a generic `drop_in_place` call per
    // event cost ~18 instructions).
    #[inline]
    fn record(&mut self, index: usize, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Corrected => self.corrected += 1,
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::Filtered => self.filtered += 1,
            other @ (Outcome::Recompute { .. } | Outcome::DeadLettered(_)) => {
                self.follow_ups.push((index, other))
            }
        }
    }
}

/// Ids seen in one window (128-bit fingerprints); serialised sorted so snapshots of
/// equal states are equal bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct IdSet(HashSet<u128, foldhash::fast::RandomState>);

impl Serialize for IdSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut v: Vec<u128> = self.0.iter().copied().collect();
        v.sort_unstable();
        v.serialize(s)
    }
}
impl<'de> Deserialize<'de> for IdSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Vec::<u128>::deserialize(d)?;
        Ok(IdSet(v.into_iter().collect()))
    }
}

/// The aggregation of one window's events: aggregate states, checksum and the ids
/// seen. Shared by the hot path, the cold recompute and the batch computation, so the
/// three cannot disagree on what a window's result is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Accumulator {
    pub(crate) aggs: Vec<AggState>,
    pub(crate) checksum: Checksum,
    ids: Option<Box<IdSet>>,
}

impl Accumulator {
    pub(crate) fn new(spec: &PipelineSpec) -> Accumulator {
        Accumulator {
            aggs: spec.aggregates.iter().map(|a| a.empty_state()).collect(),
            checksum: Checksum::default(),
            ids: None,
        }
    }

    /// Whether an event with this id fingerprint is already in the window.
    #[inline]
    pub(crate) fn has_id(&self, fp: Option<u128>) -> bool {
        match (fp, &self.ids) {
            (Some(fp), Some(ids)) => ids.0.contains(&fp),
            _ => false,
        }
    }

    /// Adds an event (the caller has checked it is not a duplicate).
    #[inline]
    pub(crate) fn add(
        &mut self,
        spec: &PipelineSpec,
        slots: &mut [FieldSlot],
        e: &Event,
        digest: u64,
        fp: Option<u128>,
    ) {
        if let Some(fp) = fp {
            self.ids.get_or_insert_with(Box::default).0.insert(fp);
        }
        self.checksum.add(digest);
        for ((state, a), slot) in self.aggs.iter_mut().zip(&spec.aggregates).zip(slots) {
            if let Some(f) = &a.filter
                && !f.eval_filter(e)
            {
                continue;
            }
            let value = a.field.as_deref().and_then(|f| slot.find(f, e));
            state.update(value, a.field.is_none(), e.time, digest);
        }
    }

    /// [`Accumulator::add`] for the hot path, with each aggregate fed as `feeds` says
    /// (one per aggregate, from [`Feed::plan`] of the same spec); same resulting state.
    #[inline(always)]
    fn add_fed(
        &mut self,
        spec: &PipelineSpec,
        feeds: &[Feed],
        slots: &mut [FieldSlot],
        e: &Event,
        digest: u64,
        fp: Option<u128>,
    ) {
        if let Some(fp) = fp {
            self.insert_id(fp);
        }
        self.checksum.add(digest);
        let parts = self.aggs.iter_mut().zip(&spec.aggregates).zip(slots);
        for (((state, a), slot), feed) in parts.zip(feeds) {
            match (feed, state) {
                (Feed::CountAll, AggState::Count(n)) => *n += 1,
                (Feed::Sum, AggState::Sum(s) | AggState::Mean(s)) => {
                    if let Some(v) = a.field.as_deref().and_then(|f| slot.find(f, e)) {
                        s.add(v);
                    }
                }
                (_, state) => update_general(state, a, slot, e, digest),
            }
        }
    }

    #[inline(never)]
    fn insert_id(&mut self, fp: u128) {
        self.ids.get_or_insert_with(Box::default).0.insert(fp);
    }

    pub(crate) fn values(&self) -> Vec<Option<crate::event::Value>> {
        self.aggs.iter().map(AggState::output).collect()
    }
}

/// One aggregate's input as [`Accumulator::add`] gives it, out of line for the hot path.
#[inline(never)]
fn update_general(
    state: &mut AggState,
    a: &crate::aggregate::AggregateSpec,
    slot: &mut FieldSlot,
    e: &Event,
    digest: u64,
) {
    if let Some(f) = &a.filter
        && !f.eval_filter(e)
    {
        return;
    }
    let value = a.field.as_deref().and_then(|f| slot.find(f, e));
    state.update(value, a.field.is_none(), e.time, digest);
}

/// Hot state of one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WindowState {
    window: Window,
    acc: Accumulator,
    /// Last emitted version; 0 before the first emission.
    version: u32,
    /// The window has closed (its on-time result, or a first late one, was emitted).
    closed: bool,
    /// Changed since the last emission (for early emissions).
    dirty: bool,
}

/// All hot windows of one key, sorted by start. A `Vec` rather than a `VecDeque`:
/// windows are looked up once per event and removed once per window, and indexing a
/// `Vec` needs no wrap-around arithmetic (both serialise as the same sequence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Series {
    key: Key,
    windows: Vec<WindowState>,
}

impl Series {
    /// The index of the window starting at `start`, or where it would go.
    #[inline]
    fn find(&self, start: EventTime) -> std::result::Result<usize, usize> {
        // Most events go to the newest window: check it before searching.
        match self.windows.last() {
            Some(last) if last.window.start == start => Ok(self.windows.len() - 1),
            Some(last) if last.window.start < start => Err(self.windows.len()),
            _ => self
                .windows
                .binary_search_by_key(&start, |w| w.window.start),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub(crate) enum TimerKind {
    /// Close the window: emit its on-time result.
    Close,
    /// Allowed lateness is over: evict the state.
    Evict,
}

/// A timer due when the watermark reaches `at`. Ordered by due time, then kind (a
/// window closes before it is evicted), then key and start, so firing order is
/// deterministic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub(crate) struct Timer {
    at: EventTime,
    kind: TimerKind,
    key: u32,
    start: EventTime,
}

/// The windowed pipeline engine. See the module documentation for the tiers.
#[derive(Debug)]
pub struct Pipeline {
    spec: Arc<PipelineSpec>,
    columns: Arc<[Arc<str>]>,
    watermark: WatermarkTracker,
    now: ProcessingTime,
    keys: FastMap<Key, u32>,
    series: Vec<Series>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_early: Option<ProcessingTime>,
    counters: Counters,
    /// Field-name hashes of recent events, for digests.
    names: crate::event::NameHashes,
    /// Field positions cache, one slot per aggregate.
    slots: Vec<FieldSlot>,
    /// Direct-mapped cache from a key's allocation address to its index; a hit is
    /// confirmed by pointer identity with the series' own key (which keeps that
    /// allocation alive), so drivers that reuse key handles skip hashing.
    key_cache: Box<[u32; 256]>,
    /// Scratch buffer for window assignment (no allocation per event).
    assigned: Vec<Window>,
    /// The last two windows assigned, most recent first, for non-overlapping
    /// assigners: consecutive events mostly fall into the same window, and calendar
    /// windows are costly to compute. Two, so that a late event between on-time ones
    /// does not make the next on-time event miss.
    last_windows: [Option<Window>; 2],
    /// Emissions carry their aggregate states (an operator downstream merges them).
    keep_states: bool,
    /// The spec has no derived fields and no filter: events need no `prepare`.
    plain: bool,
    /// How each aggregate is fed, decided once from the spec (see [`Feed`]).
    feeds: Box<[Feed]>,
}

impl Pipeline {
    /// A new pipeline; the spec is validated.
    pub fn new(spec: PipelineSpec) -> Result<Pipeline> {
        spec.validate()?;
        let columns = spec.columns();
        let spec_len = spec.aggregates.len();
        let watermark = WatermarkTracker::new(spec.out_of_orderness, spec.idle_timeout);
        let plain = spec.derive.is_empty() && spec.filter.is_none();
        let feeds = Feed::plan(&spec);
        Ok(Pipeline {
            spec: Arc::new(spec),
            columns,
            watermark,
            now: ProcessingTime::MIN,
            keys: FastMap::default(),
            series: Vec::new(),
            timers: BinaryHeap::new(),
            next_early: None,
            counters: Counters::default(),
            names: Default::default(),
            slots: vec![FieldSlot::default(); spec_len],
            key_cache: Box::new([u32::MAX; 256]),
            assigned: Vec::with_capacity(4),
            last_windows: [None; 2],
            keep_states: false,
            plain,
            feeds,
        })
    }

    /// Makes every emission carry its aggregate states ([`Emission::states`]), for an
    /// operator downstream that merges them (a rollup). Not part of the snapshot: the
    /// driver sets it from the configuration.
    pub fn keep_states(&mut self, on: bool) {
        self.keep_states = on;
    }

    /// The spec.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }
    /// The pipeline watermark.
    pub fn watermark(&self) -> Watermark {
        self.watermark.current()
    }
    /// The watermark of one source partition.
    pub fn partition_watermark(&self, p: PartitionId) -> Option<Watermark> {
        self.watermark.partition(p)
    }
    /// Every source partition that has sent something, with its watermark.
    pub fn partition_watermarks(&self) -> Vec<(PartitionId, Watermark)> {
        self.watermark.partitions().collect()
    }
    /// The latest processing time handed to [`Pipeline::advance`].
    pub fn now(&self) -> ProcessingTime {
        self.now
    }
    /// What happened so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Number of windows held in memory.
    pub fn hot_windows(&self) -> usize {
        self.series.iter().map(|s| s.windows.len()).sum()
    }
    /// Whether the window `[start, ..)` of `key` is held in memory.
    pub fn is_hot(&self, key: &Key, start: EventTime) -> bool {
        self.keys
            .get(key)
            .is_some_and(|&k| self.series[k as usize].find(start).is_ok())
    }

    /// Processing time has reached `now` (it never goes back: an older `now` is
    /// ignored). Applies idle-partition and stalled-watermark rules, emits results of
    /// windows the watermark has passed, and early results when they are due.
    pub fn advance(&mut self, now: ProcessingTime, out: &mut Vec<Emission>) {
        if now > self.now {
            self.now = now;
        }
        if self.watermark.tick(self.now) {
            self.fire_timers(out);
        }
        if let Some(interval) = self.spec.early_interval {
            match self.next_early {
                None => self.next_early = Some(self.now.plus(interval)),
                Some(due) if self.now >= due => {
                    self.emit_early(out);
                    self.next_early = Some(self.now.plus(interval));
                }
                Some(_) => {}
            }
        }
    }

    /// The input is complete (end of a bounded replay or a test): the watermark jumps
    /// to the end of time, every window emits its final result and leaves memory.
    pub fn finish(&mut self, out: &mut Vec<Emission>) {
        self.watermark.finish();
        self.fire_timers(out);
    }

    /// Ingests one event from a source partition. Returns what happened to it and
    /// appends any emissions (a `late` correction, results of windows the event's
    /// progress closed) to `out`.
    pub fn ingest(
        &mut self,
        partition: PartitionId,
        e: &Event,
        out: &mut Vec<Emission>,
    ) -> Outcome {
        let ahead = self.look_ahead(e);
        self.ingest_prepared(partition, e, ahead, out)
    }

    /// Ingests a batch of events from one partition, exactly as if each were passed to
    /// [`Pipeline::ingest`] in order, and sums up the outcomes in `report`.
    ///
    /// It is faster: a short first pass over each chunk computes the events' digests
    /// and looks up their keys, so the cache misses of many events overlap instead of
    /// stalling one by one; the sequential pass then finds them in cache.
    ///
    /// For the cold path the driver appends the batch to the raw log, then recomputes
    /// each window listed in `report.follow_ups` once (several events of a batch may
    /// name the same window; one recompute over the raw log covers them all).
    pub fn ingest_batch<E: AsRef<Event>>(
        &mut self,
        partition: PartitionId,
        events: &[E],
        report: &mut BatchReport,
        out: &mut Vec<Emission>,
    ) {
        const CHUNK: usize = 32;
        let mut ahead = [LookAhead::default(); CHUNK];
        for (c, chunk) in events.chunks(CHUNK).enumerate() {
            for (a, e) in ahead.iter_mut().zip(chunk) {
                *a = self.look_ahead(e.as_ref());
            }
            for (i, (e, a)) in chunk.iter().zip(&ahead).enumerate() {
                let e = e.as_ref();
                if self.try_apply_open(partition, e, *a, out) {
                    report.applied += 1;
                    continue;
                }
                let outcome = self.ingest_prepared(partition, e, *a, out);
                report.record(c * CHUNK + i, outcome);
            }
        }
    }

    /// The most common event, applied with the fewest steps: no id, a spec without
    /// derived fields or filter and with one window per event, the key known, and the
    /// window the newest of its key and still open. That is exactly the case where
    /// [`Pipeline::ingest_prepared`] finds no dead letter, no duplicate, no cold or
    /// closed window and no window to create, and returns [`Outcome::Applied`]; this
    /// does the same (counters, state, watermark, timers) without classifying the
    /// event. Returns `false`, having changed nothing, for any other event.
    #[inline(always)]
    fn try_apply_open(
        &mut self,
        partition: PartitionId,
        e: &Event,
        ahead: LookAhead,
        out: &mut Vec<Emission>,
    ) -> bool {
        if !self.plain || e.id.is_some() {
            return false;
        }
        // Windows are only cached for assigners with one window per event.
        let (Some(k), Some(w)) = (ahead.key, self.cached_window(e.time)) else {
            return false;
        };
        if self.watermark.current().0 >= w.end {
            return false;
        }
        let Some(ws) = self
            .series
            .get_mut(k as usize)
            .and_then(|s| s.windows.last_mut())
        else {
            return false;
        };
        if ws.window != w {
            return false;
        }
        ws.acc.add_fed(
            &self.spec,
            &self.feeds,
            &mut self.slots,
            e,
            ahead.digest,
            None,
        );
        ws.dirty = true;
        self.counters.events += 1;
        self.counters.applied += 1;
        if self.watermark.observe(partition, e.time, self.now) {
            self.fire_timers(out);
        }
        true
    }

    /// What can be known of an event before its turn: its digest, and its key's index
    /// if the key is known (a new key is interned in the sequential pass, in order).
    #[inline]
    fn look_ahead(&mut self, e: &Event) -> LookAhead {
        LookAhead {
            key: self.cached_key_index(&e.key),
            digest: e.digest_with(&mut self.names),
        }
    }

    #[inline]
    fn cached_key_index(&mut self, key: &Key) -> Option<u32> {
        let slot = (key.addr() >> 4) & 255;
        let cached = self.key_cache[slot];
        if self
            .series
            .get(cached as usize)
            .is_some_and(|s| s.key.ptr_eq(key))
        {
            return Some(cached);
        }
        let i = *self.keys.get(key)?;
        if self.series[i as usize].key.ptr_eq(key) {
            self.key_cache[slot] = i;
        }
        Some(i)
    }

    #[inline]
    fn ingest_prepared(
        &mut self,
        partition: PartitionId,
        e: &Event,
        ahead: LookAhead,
        out: &mut Vec<Emission>,
    ) -> Outcome {
        self.counters.events += 1;
        // Without derived fields or a filter the windows see the event as it came:
        // `prepare` would only wrap it in a borrowed `Cow`, at a cost per event.
        let outcome = if self.plain {
            self.classify_and_apply(e, ahead, out)
        } else {
            match self.spec.prepare(e) {
                Some(prepared) => self.classify_and_apply(&prepared, ahead, out),
                None => Outcome::Filtered,
            }
        };
        match &outcome {
            Outcome::Applied => self.counters.applied += 1,
            Outcome::Corrected => self.counters.corrected += 1,
            Outcome::Recompute { .. } => self.counters.recompute_requested += 1,
            Outcome::Duplicate => self.counters.duplicates += 1,
            Outcome::DeadLettered(_) => self.counters.dead_lettered += 1,
            Outcome::Filtered => self.counters.filtered += 1,
        }
        // A duplicate still shows how far its partition has got. A dead letter does
        // not: one event with an absurd timestamp must not close every window, and a
        // replay of the raw log (which holds no dead letters) must see the same
        // watermarks as the first run.
        if !matches!(outcome, Outcome::DeadLettered(_))
            && self.watermark.observe(partition, e.time, self.now)
        {
            self.fire_timers(out);
        }
        outcome
    }

    fn assign(&mut self, t: EventTime) -> Result<()> {
        self.assigned.clear();
        if let Some(w) = self.cached_window(t) {
            self.assigned.push(w);
            return Ok(());
        }
        self.spec.window.assign(t, &mut self.assigned)?;
        if let [only] = self.assigned[..]
            && !self.spec.window.is_overlapping()
        {
            self.last_windows = [Some(only), self.last_windows[0]];
        }
        Ok(())
    }

    /// The cached window that holds `t`, if any (made the most recent).
    #[inline]
    fn cached_window(&mut self, t: EventTime) -> Option<Window> {
        match self.last_windows {
            [Some(w), _] if w.contains(t) => Some(w),
            [last, Some(w)] if w.contains(t) => {
                self.last_windows = [Some(w), last];
                Some(w)
            }
            _ => None,
        }
    }

    fn key_index(&mut self, key: &Key) -> u32 {
        if let Some(&i) = self.keys.get(key) {
            return i;
        }
        let i = u32::try_from(self.series.len()).unwrap_or(u32::MAX);
        self.keys.insert(key.clone(), i);
        self.series.push(Series {
            key: key.clone(),
            windows: Vec::new(),
        });
        i
    }

    fn classify_and_apply(
        &mut self,
        e: &Event,
        ahead: LookAhead,
        out: &mut Vec<Emission>,
    ) -> Outcome {
        if let Err(err) = self.assign(e.time) {
            return Outcome::DeadLettered(DeadLetterReason::Unwindowable {
                message: err.to_string(),
            });
        }
        let wm = self.watermark.current();
        let lateness = self.spec.allowed_lateness;
        let earliest = self.assigned[0];
        // Retention only matters to a window that must be recomputed from raw events
        // (cold): an open or hot window is never dead-lettered, however long it is.
        if earliest.end.plus(lateness) <= wm.0 && earliest.start < wm.0.minus(self.spec.retention) {
            return Outcome::DeadLettered(DeadLetterReason::BeyondRetention {
                window: earliest,
                watermark: wm,
            });
        }
        let k = match ahead.key {
            Some(k) => k,
            None => self.key_index(&e.key),
        };
        let fp = e.id.as_ref().map(|id| id.fingerprint());
        if let [w] = self.assigned[..] {
            return self.apply_one(k, w, e, ahead.digest, fp, out);
        }
        let series = &mut self.series[k as usize];
        if fp.is_some() {
            let dup = self.assigned.iter().any(|w| {
                series
                    .find(w.start)
                    .is_ok_and(|i| series.windows[i].acc.has_id(fp))
            });
            if dup {
                return Outcome::Duplicate;
            }
        }
        let digest = ahead.digest;
        let mut cold: Vec<Window> = Vec::new();
        let mut corrected = false;
        for &w in &self.assigned {
            if w.end.plus(lateness) <= wm.0 {
                cold.push(w);
                continue;
            }
            let is_open = wm.0 < w.end;
            let i = hot_window(
                series,
                &self.spec,
                &mut self.timers,
                k,
                w,
                is_open,
                lateness,
            );
            let ws = &mut series.windows[i];
            ws.acc
                .add_fed(&self.spec, &self.feeds, &mut self.slots, e, digest, fp);
            ws.dirty = true;
            if !is_open {
                corrected = true;
                let em = emit(
                    &self.spec,
                    &self.columns,
                    self.keep_states,
                    &series.key,
                    ws,
                    EmissionKind::Late,
                    self.now,
                    wm,
                );
                self.counters.count_emission(EmissionKind::Late);
                out.push(em);
            }
        }
        if !cold.is_empty() {
            Outcome::Recompute {
                key: series.key.clone(),
                windows: cold,
            }
        } else if corrected {
            Outcome::Corrected
        } else {
            Outcome::Applied
        }
    }

    /// [`Pipeline::classify_and_apply`] for an event in exactly one window (tumbling
    /// and calendar windows): the same steps in the same order (duplicate check, cold,
    /// add, `late` emission), without the loops over windows and the list of cold ones.
    #[inline]
    fn apply_one(
        &mut self,
        k: u32,
        w: Window,
        e: &Event,
        digest: u64,
        fp: Option<u128>,
        out: &mut Vec<Emission>,
    ) -> Outcome {
        let wm = self.watermark.current();
        let lateness = self.spec.allowed_lateness;
        let series = &mut self.series[k as usize];
        if fp.is_some()
            && series
                .find(w.start)
                .is_ok_and(|i| series.windows[i].acc.has_id(fp))
        {
            return Outcome::Duplicate;
        }
        if w.end.plus(lateness) <= wm.0 {
            return Outcome::Recompute {
                key: series.key.clone(),
                windows: vec![w],
            };
        }
        let is_open = wm.0 < w.end;
        let i = hot_window(
            series,
            &self.spec,
            &mut self.timers,
            k,
            w,
            is_open,
            lateness,
        );
        let ws = &mut series.windows[i];
        ws.acc
            .add_fed(&self.spec, &self.feeds, &mut self.slots, e, digest, fp);
        ws.dirty = true;
        if is_open {
            return Outcome::Applied;
        }
        let em = emit(
            &self.spec,
            &self.columns,
            self.keep_states,
            &series.key,
            ws,
            EmissionKind::Late,
            self.now,
            wm,
        );
        self.counters.count_emission(EmissionKind::Late);
        out.push(em);
        Outcome::Corrected
    }

    /// Fires every timer the watermark has reached: closes windows (on-time results)
    /// and evicts those whose allowed lateness is over.
    fn fire_timers(&mut self, out: &mut Vec<Emission>) {
        let wm = self.watermark.current();
        while let Some(&Reverse(t)) = self.timers.peek() {
            if t.at > wm.0 {
                break;
            }
            self.timers.pop();
            let series = &mut self.series[t.key as usize];
            let Ok(i) = series.find(t.start) else {
                // Cannot happen: a window leaves memory only by its own Evict timer.
                debug_assert!(false, "timer for a window not in memory: {t:?}");
                continue;
            };
            match t.kind {
                TimerKind::Close => {
                    let ws = &mut series.windows[i];
                    ws.closed = true;
                    let em = emit(
                        &self.spec,
                        &self.columns,
                        self.keep_states,
                        &series.key,
                        ws,
                        EmissionKind::OnTime,
                        self.now,
                        wm,
                    );
                    self.counters.count_emission(EmissionKind::OnTime);
                    out.push(em);
                    self.timers.push(Reverse(Timer {
                        at: ws.window.end.plus(self.spec.allowed_lateness),
                        kind: TimerKind::Evict,
                        key: t.key,
                        start: t.start,
                    }));
                }
                TimerKind::Evict => {
                    series.windows.remove(i);
                    self.counters.evicted += 1;
                }
            }
        }
    }

    fn emit_early(&mut self, out: &mut Vec<Emission>) {
        let wm = self.watermark.current();
        for series in &mut self.series {
            for ws in series.windows.iter_mut().filter(|w| !w.closed && w.dirty) {
                let em = emit(
                    &self.spec,
                    &self.columns,
                    self.keep_states,
                    &series.key,
                    ws,
                    EmissionKind::Early,
                    self.now,
                    wm,
                );
                self.counters.count_emission(EmissionKind::Early);
                out.push(em);
            }
        }
    }

    /// The cold path: recomputes one window of `key` from its raw events (every stored
    /// event of the key with a time in the window, in arrival order; duplicates by id
    /// are skipped, the first copy wins; events outside the window are ignored).
    /// `prior` is the latest stored version of the window, if any. Returns the
    /// `recomputed` emission, or `None` when the result is unchanged (same checksum).
    ///
    /// The window must be cold (past allowed lateness): recomputing a hot window would
    /// fork it from its in-memory state, which is a driver bug reported as
    /// [`Error::Internal`], as is a window this pipeline's spec does not produce.
    pub fn recompute<'a, I>(
        &mut self,
        key: &Key,
        window: Window,
        prior: Option<Prior>,
        events: I,
    ) -> Result<Option<Emission>>
    where
        I: IntoIterator<Item = &'a Event>,
    {
        let wm = self.watermark.current();
        let mut check = Vec::new();
        self.spec.window.assign(window.start, &mut check)?;
        if !check.contains(&window) {
            return Err(Error::Internal(format!(
                "recompute of {window}, which pipeline `{}` does not produce",
                self.spec.name
            )));
        }
        if wm.0 < window.end.plus(self.spec.allowed_lateness) {
            return Err(Error::Internal(format!(
                "recompute of {window} of `{key}` while it is still hot (watermark {wm})"
            )));
        }
        let acc = accumulate(&self.spec, key, window, events);
        if prior.is_some_and(|p| p.checksum == acc.checksum) {
            self.counters.recompute_unchanged += 1;
            return Ok(None);
        }
        let mut ws = WindowState {
            window,
            acc,
            version: prior.map_or(0, |p| p.version.0),
            closed: true,
            dirty: true,
        };
        let em = emit(
            &self.spec,
            &self.columns,
            self.keep_states,
            key,
            &mut ws,
            EmissionKind::Recomputed,
            self.now,
            wm,
        );
        self.counters.count_emission(EmissionKind::Recomputed);
        Ok(Some(em))
    }

    /// Repair (`reckon repair`): restates one window, hot or cold, from `events` (the
    /// window's raw events as [`Pipeline::recompute`] takes them) against `prior`, its
    /// latest stored version. Returns a `recomputed` emission with version
    /// `prior + 1` when the result differs (with no events: a retraction, count 0, when
    /// a non-empty prior exists), or `None` when it is the same or there is nothing to
    /// say. A window held in memory never emits a version at or below the stored one
    /// afterwards, so results stay monotone in version for sinks that apply only newer
    /// ones.
    pub fn restate<'a, I>(
        &mut self,
        key: &Key,
        window: Window,
        prior: Option<Prior>,
        events: I,
    ) -> Result<Option<Emission>>
    where
        I: IntoIterator<Item = &'a Event>,
    {
        let mut check = Vec::new();
        self.spec.window.assign(window.start, &mut check)?;
        if !check.contains(&window) {
            return Err(Error::Internal(format!(
                "restate of {window}, which pipeline `{}` does not produce",
                self.spec.name
            )));
        }
        let acc = accumulate(&self.spec, key, window, events);
        let floor = prior.map_or(0, |p| p.version.0);
        let unchanged = match prior {
            Some(p) => p.checksum == acc.checksum,
            None => acc.checksum.count == 0,
        };
        let held = self
            .series
            .iter_mut()
            .find(|s| &s.key == key)
            .and_then(|s| s.find(window.start).ok().map(|i| &mut s.windows[i]));
        if unchanged {
            if let Some(ws) = held {
                ws.version = ws.version.max(floor);
            }
            return Ok(None);
        }
        let wm = self.watermark.current();
        let mut ws = WindowState {
            window,
            acc,
            version: floor,
            closed: true,
            dirty: true,
        };
        let em = emit(
            &self.spec,
            &self.columns,
            self.keep_states,
            key,
            &mut ws,
            EmissionKind::Recomputed,
            self.now,
            wm,
        );
        if let Some(held) = held {
            held.version = held.version.max(em.version.0);
        }
        self.counters.count_emission(EmissionKind::Recomputed);
        Ok(Some(em))
    }

    /// The windows this pipeline holds in memory (hot), by key.
    pub fn held_windows(&self) -> Vec<(Key, Window)> {
        self.series
            .iter()
            .flat_map(|s| s.windows.iter().map(|w| (s.key.clone(), w.window)))
            .collect()
    }

    pub(crate) fn snapshot_parts(&self) -> Result<crate::snapshot::StateRef<'_>> {
        let mut timers: Vec<Timer> = self.timers.iter().map(|r| r.0).collect();
        timers.sort_unstable();
        Ok(crate::snapshot::StateRef {
            spec: crate::snapshot::spec_fingerprint(&self.spec)?,
            watermark: &self.watermark,
            now: self.now,
            series: &self.series,
            timers,
            next_early: self.next_early,
            counters: self.counters,
        })
    }

    pub(crate) fn from_parts(
        spec: PipelineSpec,
        s: crate::snapshot::StateOwned,
    ) -> Result<Pipeline> {
        let mut p = Pipeline::new(spec)?;
        p.watermark = s.watermark;
        p.now = s.now;
        p.next_early = s.next_early;
        p.counters = s.counters;
        for (i, series) in s.series.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| Error::Snapshot("too many keys".into()))?;
            if p.keys.insert(series.key.clone(), i).is_some() {
                return Err(Error::Snapshot(format!(
                    "key `{}` appears twice",
                    series.key
                )));
            }
        }
        for t in &s.timers {
            if s.series
                .get(t.key as usize)
                .is_none_or(|x| x.find(t.start).is_err())
            {
                return Err(Error::Snapshot(format!(
                    "a timer refers to a window not in the snapshot: {t:?}"
                )));
            }
        }
        p.series = s.series;
        p.timers = s.timers.into_iter().map(Reverse).collect();
        Ok(p)
    }
}

/// The index of window `w` (hot: not past allowed lateness) in `series`, created with
/// its timer when it is not held yet: `Close` at its end if it is still open, else
/// `Evict` when its allowed lateness is over.
#[inline]
fn hot_window(
    series: &mut Series,
    spec: &PipelineSpec,
    timers: &mut BinaryHeap<Reverse<Timer>>,
    k: u32,
    w: Window,
    is_open: bool,
    lateness: crate::time::Span,
) -> usize {
    match series.find(w.start) {
        Ok(i) => i,
        Err(i) => open_window(series, spec, timers, k, w, is_open, lateness, i),
    }
}

/// Creates window `w` at index `i` of `series`, with its timer (see [`hot_window`]).
/// Out of line: it runs once per window, not per event.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn open_window(
    series: &mut Series,
    spec: &PipelineSpec,
    timers: &mut BinaryHeap<Reverse<Timer>>,
    k: u32,
    w: Window,
    is_open: bool,
    lateness: crate::time::Span,
    i: usize,
) -> usize {
    series.windows.insert(
        i,
        WindowState {
            window: w,
            acc: Accumulator::new(spec),
            version: 0,
            closed: !is_open,
            dirty: false,
        },
    );
    let (at, kind) = if is_open {
        (w.end, TimerKind::Close)
    } else {
        (w.end.plus(lateness), TimerKind::Evict)
    };
    timers.push(Reverse(Timer {
        at,
        kind,
        key: k,
        start: w.start,
    }));
    i
}

/// Aggregates the events of `key` in `window`, skipping duplicate ids (first wins).
pub(crate) fn accumulate<'a, I>(
    spec: &PipelineSpec,
    key: &Key,
    window: Window,
    events: I,
) -> Accumulator
where
    I: IntoIterator<Item = &'a Event>,
{
    let mut acc = Accumulator::new(spec);
    let mut slots = vec![FieldSlot::default(); spec.aggregates.len()];
    for e in events {
        if &e.key != key || !window.contains(e.time) {
            continue;
        }
        let fp = e.id.as_ref().map(|id| id.fingerprint());
        if acc.has_id(fp) {
            continue;
        }
        let Some(prepared) = spec.prepare(e) else {
            continue;
        };
        // The digest is the event's as it arrived (the hot path's too).
        acc.add(spec, &mut slots, &prepared, e.digest(), fp);
    }
    acc
}

/// Builds the next emission of a window and bumps its version.
#[allow(clippy::too_many_arguments)]
fn emit(
    spec: &PipelineSpec,
    columns: &Arc<[Arc<str>]>,
    keep_states: bool,
    key: &Key,
    ws: &mut WindowState,
    kind: EmissionKind,
    now: ProcessingTime,
    wm: Watermark,
) -> Emission {
    ws.version = ws.version.saturating_add(1);
    ws.dirty = false;
    Emission {
        pipeline: spec.name.clone(),
        key: key.clone(),
        window: ws.window,
        version: Version(ws.version),
        kind,
        columns: columns.clone(),
        values: ws.acc.values(),
        count: ws.acc.checksum.count,
        checksum: ws.acc.checksum,
        emitted_at: now,
        watermark: wm,
        states: keep_states.then(|| Arc::from(ws.acc.aggs.as_slice())),
    }
}

pub(crate) use self::{Series as SeriesState, Timer as TimerState};
