//! Reconciliation (seed 001): is every audited id really in the event stream?
//!
//! A [`Reconciler`] reads two streams, events and audit records, each an [`Event`] with
//! an id, and reports ids that are missing, ids found after being reported missing, and
//! the completeness of every period of audit time, corrected as late data lands. The
//! semantics are in `docs/reconcile.md`; the engine is pure like [`crate::Pipeline`]:
//! records and processing time in, outputs out, no I/O and no clock.
//!
//! Order independence rests on two choices: per side and id the *canonical* record is
//! the one with the smallest `(time, digest)`, whatever arrived first; and a period's
//! completeness is the sum of what its ids contribute, kept up to date by taking an id's
//! old contribution out and its new one in whenever a record changes it, so it depends
//! on the set of records seen, not on their order.
//!
//! Per id the engine keeps the canonical record of each side and a count of the others
//! (every record beyond the first per side and id is a duplicate), not the records: a
//! 48-byte slot, 6–12 bytes of index (depending on how full it is), and 4 bytes in the
//! missing queue while the id waits for its verdict; see `Slot`.

use crate::checksum::Checksum;
use crate::emission::{Emission, EmissionKind};
use crate::event::{Event, Key, Value};
use crate::snapshot::{self, spec_fingerprint};
use crate::time::{EventTime, ProcessingTime, Span};
use crate::watermark::{PartitionId, Watermark, WatermarkTracker};
use crate::{Error, Result, Version, Window};
use serde::{Deserialize, Serialize};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Which stream a record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The event stream.
    Event,
    /// The audit stream.
    Audit,
}

impl Side {
    fn partition(self) -> PartitionId {
        match self {
            Side::Event => PartitionId(0),
            Side::Audit => PartitionId(1),
        }
    }
}

/// A reconciliation's configuration (seed 001's *o*, *n*, *m*, *z*).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileSpec {
    /// The pipeline's name.
    pub name: Arc<str>,
    /// *o*: completeness period (event time).
    pub period: Span,
    /// *n*: missing-after and allowed out-of-orderness (event time).
    pub missing_after: Span,
    /// *m*: correction horizon and state retention (event time), at least *n*.
    pub horizon: Span,
    /// *z*: processing-time timeout of a silent stream or a stalled watermark.
    pub idle_timeout: Option<Span>,
}

impl ReconcileSpec {
    /// Checks the periods: `o > 0`, `n ≥ 0`, `m ≥ n`.
    pub fn new(name: &str, period: Span, missing_after: Span, horizon: Span) -> Result<Self> {
        let bad = |m: String| Err(Error::InvalidSpec(format!("reconcile `{name}`: {m}")));
        if period.0 <= 0 {
            return bad(format!("the period (o) must be positive, got {period}"));
        }
        if missing_after.0 < 0 {
            return bad(format!(
                "missing_after (n) must not be negative, got {missing_after}"
            ));
        }
        if horizon.0 < missing_after.0 {
            return bad(format!(
                "the horizon (m, {horizon}) must be at least missing_after (n, {missing_after})"
            ));
        }
        Ok(ReconcileSpec {
            name: Arc::from(name),
            period,
            missing_after,
            horizon,
            idle_timeout: None,
        })
    }

    /// With *z*.
    pub fn idle_timeout(mut self, z: Span) -> Self {
        self.idle_timeout = Some(z);
        self
    }

    /// Period `k`: `[k·o, (k+1)·o)` (saturating at the ends of time).
    pub fn period_window(&self, k: i64) -> Window {
        let start = k.saturating_mul(self.period.0);
        Window {
            start: EventTime(start),
            end: EventTime(start.saturating_add(self.period.0)),
        }
    }

    /// The period holding event time `t`.
    pub fn period_of(&self, t: EventTime) -> Window {
        self.period_window(t.0.div_euclid(self.period.0))
    }
}

/// The counts of one completeness period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    /// Ids whose canonical audit time is in the period.
    pub audited: u64,
    /// Of those, ids with a matching event.
    pub matched: u64,
    /// `audited − matched`.
    pub missing: u64,
    /// Duplicate audit records of the audited ids.
    pub duplicate_audits: u64,
    /// Duplicate event records of ids whose canonical event time is in the period.
    pub duplicate_events: u64,
    /// Canonical events in the period that no audit record matches.
    pub unexpected: u64,
}

impl Completeness {
    /// `100 · matched / audited`; `None` when nothing was audited.
    pub fn percent(&self) -> Option<f64> {
        (self.audited > 0).then(|| 100.0 * self.matched as f64 / self.audited as f64)
    }
    fn is_empty(&self) -> bool {
        *self == Completeness::default()
    }
}

/// What a reconciliation reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ReconOutput {
    /// An audited id had no matching event by `audit_time + n` of the watermark.
    Missing {
        /// The id.
        id: Arc<str>,
        /// Its canonical audit time.
        audit_time: EventTime,
        /// The audit record's fields.
        context: Vec<(Arc<str>, Value)>,
        /// The watermark when it was found missing.
        detected_at: Watermark,
    },
    /// A reported-missing id's event arrived within the horizon.
    Found {
        /// The id.
        id: Arc<str>,
        /// Its canonical audit time.
        audit_time: EventTime,
        /// The `detected_at` of its `Missing`.
        missing_since: Watermark,
        /// The matching event's time.
        event_time: EventTime,
        /// The watermark when it arrived.
        found_at: Watermark,
        /// `event_time − audit_time`.
        delay: Span,
    },
    /// A period's completeness; a newer version replaces the older.
    Completeness {
        /// The period `[k·o, (k+1)·o)`.
        period: Window,
        /// Its version (1, 2, … per period).
        version: Version,
        /// The counts.
        counts: Completeness,
        /// The watermark when it was emitted.
        watermark: Watermark,
    },
}

/// What happened to one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReconOutcome {
    /// Taken into the state.
    Applied,
    /// A duplicate (same side and id): counted, not matched again.
    Duplicate,
    /// Kept out of the state, with its kind and the reason: `beyond_horizon` (later than
    /// the horizon, `time < watermark − m`), `invalid` (no id) or `state_full`.
    DeadLettered {
        /// The dead letter's kind (as stored and counted).
        kind: &'static str,
        /// Why, for people.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------
// State per id.
//
// An id is held as one 48-byte `Slot` in a dense slab (`Reconciler::slab`), found
// through a compact open-addressing index of slab positions keyed by the id's
// fingerprint (`xxh3_128` of the id). A slot holds only what every id needs: the
// fingerprint, its canonical audit time, its canonical event time, and, while the id
// waits in the missing queue, its text (the `Missing` output names it; every other
// output is caused by a record of the id, which brings the text along). The rare rest
// lives in side maps keyed by fingerprint: duplicate counts, the latest time over all
// records, the `missing`/`found` report (`Extra`), and the canonical audit record's
// fields when it has any (`Context`).
// ---------------------------------------------------------------------------------------

/// The id's fingerprint: `xxh3_128` of its text, less the top four bits (below).
type Fp = u128;

/// Flags kept in the top four bits of a slot's fingerprint (the id's fingerprint proper
/// is the other 124 bits, so two ids collide with probability 2^-124).
const HAS_AUDIT: u64 = 1 << 63;
const HAS_EVENT: u64 = 1 << 62;
/// An `Extra` exists for the id.
const HAS_EXTRA: u64 = 1 << 61;
/// A `Context` exists for the id (its canonical audit record has fields).
const HAS_CONTEXT: u64 = 1 << 60;
const FLAGS: u64 = HAS_AUDIT | HAS_EVENT | HAS_EXTRA | HAS_CONTEXT;

/// The two halves of a fingerprint as a slot holds them (flags cleared).
fn split(fp: Fp) -> (u64, u64) {
    (fp as u64, ((fp >> 64) as u64) & !FLAGS)
}

/// One id (48 bytes).
#[derive(Debug, Default)]
struct Slot {
    /// Low half of the fingerprint.
    lo: u64,
    /// High half of the fingerprint, its top four bits the flags; no side flag: a free slot.
    hi: u64,
    /// Canonical audit time (with `HAS_AUDIT`).
    audit: i64,
    /// Canonical event time (with `HAS_EVENT`).
    event: i64,
    /// The id, exactly while it waits in the missing queue: audited, unmatched, not
    /// reported.
    text: Option<Arc<str>>,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 48);

impl Slot {
    fn has(&self, flag: u64) -> bool {
        self.hi & flag != 0
    }
    fn live(&self) -> bool {
        self.has(HAS_AUDIT | HAS_EVENT)
    }
    fn fp(&self) -> Fp {
        (u128::from(self.hi & !FLAGS) << 64) | u128::from(self.lo)
    }
    fn is(&self, lo: u64, hi: u64) -> bool {
        self.lo == lo && self.hi & !FLAGS == hi
    }
    fn audit(&self) -> Option<i64> {
        self.has(HAS_AUDIT).then_some(self.audit)
    }
    fn event(&self) -> Option<i64> {
        self.has(HAS_EVENT).then_some(self.event)
    }
    /// The canonical event and audit times are at most `n` apart.
    fn matched(&self, n: Span) -> bool {
        self.has(HAS_AUDIT)
            && self.has(HAS_EVENT)
            && self.event.abs_diff(self.audit) <= n.0.unsigned_abs()
    }
    /// The latest canonical time: the latest time of any record when there are no
    /// duplicates.
    fn newest_canonical(&self) -> i64 {
        self.audit()
            .into_iter()
            .chain(self.event())
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// Slots in chunks of `CHUNK` (never moved or copied as the slab grows).
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Debug, Default)]
struct Slab {
    chunks: Vec<Vec<Slot>>,
    /// Per chunk, a lower bound of the latest record time of each of its ids, so that a
    /// retention pass skips the chunks with nothing old enough.
    oldest: Vec<i64>,
    len: usize,
}

impl Slab {
    fn get(&self, i: u32) -> Option<&Slot> {
        self.chunks
            .get((i >> CHUNK_BITS) as usize)?
            .get(i as usize & (CHUNK - 1))
    }
    fn at(&self, i: u32) -> &Slot {
        &self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }
    fn at_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }
    /// Appends a slot; `None` past 2^32 slots.
    fn push(&mut self, slot: Slot) -> Option<u32> {
        let i = u32::try_from(self.len).ok()?;
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
            self.oldest.push(i64::MAX);
        }
        self.chunks.last_mut()?.push(slot);
        self.len += 1;
        Some(i)
    }
    /// Slot `i` has a record at `t`.
    fn note(&mut self, i: u32, t: i64) {
        if let Some(b) = self.oldest.get_mut((i >> CHUNK_BITS) as usize) {
            *b = (*b).min(t);
        }
    }
    fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| (i as u32, s))
    }
}

/// What few ids need: created at the first duplicate or the `missing` report, kept while
/// the id is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Extra {
    /// Audit records beyond the first.
    dup_audits: u64,
    /// Event records beyond the first.
    dup_events: u64,
    /// The latest time of any record of the id, duplicates included (retention).
    newest: i64,
    /// `detected_at` and `audit_time` of the `Missing` reported, if one was.
    missing: Option<(Watermark, EventTime)>,
    /// Whether its `Found` was reported.
    found: bool,
}

/// The canonical audit record's fields, when it has any, with its digest (the canonical
/// record is the smallest `(time, digest)`; a record without fields has the digest of
/// its time alone, so that one need not be kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Context {
    digest: u64,
    fields: Vec<(Arc<str>, Value)>,
}

/// A hasher for fingerprints, which are already uniformly distributed.
#[derive(Clone, Copy, Debug, Default)]
struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64 ^ (i >> 64) as u64;
    }
}

type FpMap<V> = HashMap<Fp, V, BuildHasherDefault<FpHasher>>;

// ---------------------------------------------------------------------------------------
// The index: fingerprint → slab position. Groups of twelve lanes in one cache line, each
// lane a control byte (empty, or seven bits of the fingerprint) and a `u32` position,
// with a count of the ids that had to go past the group because it was full: a lookup
// ends at the first group that has not overflowed. At most 7/8 full; about 5.3 bytes a
// lane.
// ---------------------------------------------------------------------------------------

const LANES: usize = 12;
const EMPTY: u8 = 0;

#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
struct Group {
    ctrl: [u8; LANES],
    /// Ids whose probe went past this group (it was full when they were placed).
    overflow: u32,
    slot: [u32; LANES],
}

const _: () = assert!(std::mem::size_of::<Group>() == 64);

impl Group {
    /// A bit per lane whose control byte is `c`.
    #[inline]
    fn lanes_with(&self, c: u8) -> u32 {
        self.ctrl
            .iter()
            .enumerate()
            .fold(0, |m, (i, &b)| m | (u32::from(b == c) << i))
    }
}

#[derive(Debug, Default)]
struct Index {
    /// A power of two of groups (or none yet).
    groups: Vec<Group>,
    items: usize,
}

impl Index {
    fn tag(lo: u64) -> u8 {
        0x80 | (lo >> 57) as u8
    }

    fn mask(&self) -> usize {
        self.groups.len().wrapping_sub(1)
    }

    /// The slab position of a fingerprint.
    #[inline]
    fn find(&self, lo: u64, hi: u64, slab: &Slab) -> Option<u32> {
        let tag = Index::tag(lo);
        let mask = self.mask();
        let mut g = lo as usize & mask;
        for _ in 0..self.groups.len() {
            let group = &self.groups[g];
            let mut lanes = group.lanes_with(tag);
            while lanes != 0 {
                let lane = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                let slot = group.slot[lane];
                if slab.get(slot).is_some_and(|s| s.is(lo, hi)) {
                    return Some(slot);
                }
            }
            if group.overflow == 0 {
                return None;
            }
            g = (g + 1) & mask;
        }
        None
    }

    /// Adds a fingerprint that is not there (after `reserve`).
    #[inline]
    fn insert(&mut self, lo: u64, slot: u32) {
        let mask = self.mask();
        let mut g = lo as usize & mask;
        for _ in 0..self.groups.len() {
            let group = &mut self.groups[g];
            let empty = group.lanes_with(EMPTY);
            if empty != 0 {
                let lane = empty.trailing_zeros() as usize;
                group.ctrl[lane] = Index::tag(lo);
                group.slot[lane] = slot;
                self.items += 1;
                return;
            }
            group.overflow += 1;
            g = (g + 1) & mask;
        }
    }

    /// Takes out the lane holding `slot` (whose fingerprint's low half is `lo`).
    fn remove(&mut self, lo: u64, slot: u32) {
        let (tag, mask) = (Index::tag(lo), self.mask());
        let home = lo as usize & mask;
        let mut g = home;
        for _ in 0..self.groups.len() {
            let group = &mut self.groups[g];
            if let Some(lane) = (0..LANES).find(|&l| group.ctrl[l] == tag && group.slot[l] == slot)
            {
                group.ctrl[lane] = EMPTY;
                self.items -= 1;
                self.unwind(home, g);
                return;
            }
            if group.overflow == 0 {
                return;
            }
            g = (g + 1) & mask;
        }
    }

    /// An id placed in group `at` whose probe started at `home` is gone: the groups it
    /// went past count one overflow less.
    fn unwind(&mut self, home: usize, at: usize) {
        let mask = self.mask();
        let mut g = home;
        while g != at {
            let group = &mut self.groups[g];
            group.overflow = group.overflow.saturating_sub(1);
            g = (g + 1) & mask;
        }
    }

    /// Removes every slot marked in `gone` (a bitmap of slab positions) in one pass over
    /// the index, cheaper than a lookup per id when many go at once.
    fn sweep(&mut self, gone: &[u64], slab: &Slab) {
        let marked = |slot: u32| {
            gone.get(slot as usize / 64)
                .is_some_and(|w| w & (1 << (slot % 64)) != 0)
        };
        let mask = self.mask();
        for g in 0..self.groups.len() {
            for lane in 0..LANES {
                let group = &mut self.groups[g];
                if group.ctrl[lane] == EMPTY || !marked(group.slot[lane]) {
                    continue;
                }
                let slot = group.slot[lane];
                group.ctrl[lane] = EMPTY;
                self.items -= 1;
                // Nothing went past the previous group: the id was in its home group.
                let before = g.wrapping_sub(1) & mask;
                if self.groups[before].overflow > 0 {
                    let lo = slab.get(slot).map_or(0, |s| s.lo);
                    self.unwind(lo as usize & mask, g);
                }
            }
        }
    }

    /// Room for one more id: doubles past 7/8 full.
    fn reserve(&mut self, slab: &Slab) {
        if (self.items + 1) * 8 <= self.groups.len() * LANES * 7 {
            return;
        }
        let groups = ((self.items + 1) * 8)
            .div_ceil(7 * LANES)
            .next_power_of_two()
            .max(self.groups.len() * 2)
            .max(1);
        self.rebuild(groups, slab);
    }

    fn rebuild(&mut self, groups: usize, slab: &Slab) {
        self.groups = Vec::new();
        self.groups.resize(groups, Group::default());
        self.items = 0;
        for (i, s) in slab.iter() {
            if s.live() {
                self.insert(s.lo, i);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The missing queue: slab positions of ids waiting for their `missing` verdict, bucketed
// by canonical audit time; a bucket is opened (its still-current entries moved to a
// small heap by exact time) once the watermark reaches its start + n. Entries are not
// removed when an id is matched or its canonical audit moves: they are checked against
// the slot when they come due (a slot reused by another id is checked the same way).
// ---------------------------------------------------------------------------------------

const QUEUE_CHUNK: usize = 4096;

#[derive(Debug)]
struct MissingQueue {
    /// Bucket width (event time).
    width: i64,
    /// Unopened buckets: bucket → slab positions (in chunks of up to `QUEUE_CHUNK`).
    buckets: BTreeMap<i64, Vec<Vec<u32>>>,
    /// Entries of opened buckets: (canonical audit time, slab position), earliest first.
    near: BinaryHeap<Reverse<(i64, u32)>>,
    /// Buckets below this are opened: their entries go to `near` directly.
    opened_below: i64,
    /// `earliest()`, kept up to date.
    next: Option<i64>,
}

impl MissingQueue {
    fn new(spec: &ReconcileSpec) -> MissingQueue {
        let (o, n) = (spec.period.0, spec.missing_after.0);
        MissingQueue {
            width: o.min(n.max(o / 64)).max(1),
            buckets: BTreeMap::new(),
            near: BinaryHeap::new(),
            opened_below: i64::MIN,
            next: None,
        }
    }

    fn bucket(&self, t: i64) -> i64 {
        t.div_euclid(self.width)
    }

    /// The id in `slot` waits with canonical audit time `t`.
    fn push(&mut self, t: i64, slot: u32) {
        let b = self.bucket(t);
        let at = if b < self.opened_below {
            self.near.push(Reverse((t, slot)));
            t
        } else {
            let chunks = self.buckets.entry(b).or_default();
            match chunks.last_mut() {
                Some(c) if c.len() < QUEUE_CHUNK => c.push(slot),
                _ => chunks.push(vec![slot]),
            }
            b.saturating_mul(self.width)
        };
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }

    /// The earliest audit time anything in the queue may have.
    fn earliest(&self) -> Option<i64> {
        let near = self.near.peek().map(|Reverse((t, _))| *t);
        let far = self
            .buckets
            .first_key_value()
            .map(|(b, _)| b.saturating_mul(self.width));
        match (near, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Periods.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct PeriodState {
    /// The counts, kept up to date as ids change (`missing` is derived).
    audited: u64,
    matched: u64,
    duplicate_audits: u64,
    duplicate_events: u64,
    unexpected: u64,
    /// Canonical audit and event records of ids held in state that fall in the period.
    refs: u64,
    emitted: Option<(Version, Completeness)>,
    dirty: bool,
}

impl PeriodState {
    fn counts(&self) -> Completeness {
        Completeness {
            audited: self.audited,
            matched: self.matched,
            missing: self.audited.saturating_sub(self.matched),
            duplicate_audits: self.duplicate_audits,
            duplicate_events: self.duplicate_events,
            unexpected: self.unexpected,
        }
    }
}

/// What one id adds to the periods of its canonical records: per side the period and
/// the side's duplicates, and whether it is matched.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Contribution {
    audit: Option<(i64, u64)>,
    event: Option<(i64, u64)>,
    matched: bool,
}

/// Changes to the counts of one period.
#[derive(Clone, Copy, Debug, Default)]
struct Delta {
    refs: i64,
    audited: i64,
    matched: i64,
    duplicate_audits: i64,
    duplicate_events: i64,
    unexpected: i64,
}

/// The changes one record makes, merged per period (an id counts in at most two periods
/// before and two after).
#[derive(Debug, Default)]
struct Deltas {
    items: [(i64, Delta); 4],
    len: usize,
}

impl Deltas {
    fn at(&mut self, k: i64) -> &mut Delta {
        let found = self.items[..self.len].iter().position(|(p, _)| *p == k);
        let i = found.unwrap_or_else(|| {
            self.items[self.len] = (k, Delta::default());
            self.len += 1;
            self.len - 1
        });
        &mut self.items[i].1
    }

    /// Adds (`sign` 1) or takes away (`sign` −1) a contribution.
    fn add(&mut self, c: Contribution, sign: i64) {
        let m = i64::from(c.matched);
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX) * sign;
        if let Some((k, dups)) = c.audit {
            let d = self.at(k);
            d.refs += sign;
            d.audited += sign;
            d.matched += m * sign;
            d.duplicate_audits += count(dups);
        }
        if let Some((k, dups)) = c.event {
            let d = self.at(k);
            d.refs += sign;
            d.duplicate_events += count(dups);
            d.unexpected += (1 - m) * sign;
        }
    }
}

/// The reconciliation engine (see the module docs).
#[derive(Debug)]
pub struct Reconciler {
    spec: ReconcileSpec,
    tracker: WatermarkTracker,
    now: ProcessingTime,
    /// The ids; a slot without side flags is free (and listed in `free`).
    slab: Slab,
    free: Vec<u32>,
    /// Fingerprint → slab position.
    index: Index,
    extras: FpMap<Extra>,
    contexts: FpMap<Context>,
    periods: BTreeMap<i64, PeriodState>,
    /// The first dirty period, if any.
    first_dirty: Option<i64>,
    /// Audited, unmatched, unreported ids: the `Missing` queue.
    queue: MissingQueue,
    finished: bool,
    dead_letters: u64,
    /// The watermark at the last retention pass (a pass looks at every id that may have
    /// expired, so it runs once per period of watermark progress, not per record).
    retained_at: EventTime,
    /// The secret of the ids' fingerprints (`xxh3_128` with a custom secret): ids are
    /// told apart only by their fingerprints, and with xxh3's public default secret
    /// colliding ids can be crafted (an audited id would then look matched by another
    /// id's event). With a secret the sender does not know they cannot.
    secret: Box<[u8; ID_SECRET_LEN]>,
}

/// Length of the ids' fingerprint secret (xxh3's default secret size).
pub const ID_SECRET_LEN: usize = 192;

/// A fixed secret for [`Reconciler::new`] (deterministic, for tests and benchmarks).
fn fixed_secret() -> Box<[u8; ID_SECRET_LEN]> {
    let mut secret = Box::new([0u8; ID_SECRET_LEN]);
    for (i, chunk) in secret.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&crate::event::mix64(0x5eed_0000 + i as u64).to_le_bytes());
    }
    secret
}

impl Reconciler {
    /// A reconciliation with no state and a fixed fingerprint secret: deterministic, but
    /// ids that collide under it can be crafted by whoever reads this code. A service
    /// exposed to untrusted ids uses [`Reconciler::with_secret`] with random bytes.
    pub fn new(spec: ReconcileSpec) -> Reconciler {
        Reconciler::with_secret_box(spec, fixed_secret())
    }

    /// A reconciliation with no state whose ids are fingerprinted under `secret` (give
    /// it random bytes; it is kept in the snapshot).
    pub fn with_secret(spec: ReconcileSpec, secret: [u8; ID_SECRET_LEN]) -> Reconciler {
        Reconciler::with_secret_box(spec, Box::new(secret))
    }

    fn with_secret_box(spec: ReconcileSpec, secret: Box<[u8; ID_SECRET_LEN]>) -> Reconciler {
        // Both streams hold the watermark from the start: the one that sends first must
        // not run ahead alone and report every audited id missing (`docs/reconcile.md`).
        let mut tracker = WatermarkTracker::new(spec.missing_after, spec.idle_timeout);
        tracker.expect(Side::Event.partition());
        tracker.expect(Side::Audit.partition());
        Reconciler {
            tracker,
            queue: MissingQueue::new(&spec),
            spec,
            now: ProcessingTime::MIN,
            slab: Slab::default(),
            free: Vec::new(),
            index: Index::default(),
            extras: FpMap::default(),
            contexts: FpMap::default(),
            periods: BTreeMap::new(),
            first_dirty: None,
            finished: false,
            dead_letters: 0,
            retained_at: EventTime::MIN,
            secret,
        }
    }

    /// An id's fingerprint under this reconciliation's secret.
    fn fingerprint(&self, id: &str) -> Fp {
        xxhash_rust::xxh3::xxh3_128_with_secret(id.as_bytes(), &self.secret[..])
    }

    /// The spec.
    pub fn spec(&self) -> &ReconcileSpec {
        &self.spec
    }

    /// The watermark.
    pub fn watermark(&self) -> Watermark {
        self.tracker.current()
    }

    /// The latest processing time it was given.
    pub fn now(&self) -> ProcessingTime {
        self.now
    }

    /// Ids held in state.
    pub fn pending_ids(&self) -> usize {
        self.slab.len - self.free.len()
    }

    /// Records dead-lettered so far.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    fn period_of(&self, t: i64) -> i64 {
        t.div_euclid(self.spec.period.0)
    }

    /// Processing time passed: idle streams and the stall rule may move the watermark.
    pub fn advance(&mut self, now: ProcessingTime, out: &mut Vec<ReconOutput>) {
        self.now = self.now.max(now);
        self.tracker.tick(self.now);
        self.progress(out);
    }

    /// Whether [`Reconciler::finish`] was called: all data has arrived, nothing more
    /// can be reconciled.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// All data has arrived: every audit without an event is missing, every period is
    /// emitted in its final state.
    pub fn finish(&mut self, out: &mut Vec<ReconOutput>) {
        self.tracker.finish();
        self.finished = true;
        self.progress(out);
    }

    /// The slot of an id, and whether it was there already (a new one for a first
    /// record at `t`); `None` when no slot position is left (2^32 ids held at once).
    fn locate(&mut self, lo: u64, hi: u64, t: i64) -> Option<(u32, bool)> {
        if let Some(slot) = self.index.find(lo, hi, &self.slab) {
            return Some((slot, true));
        }
        let fresh = Slot {
            lo,
            hi,
            ..Slot::default()
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                *self.slab.at_mut(slot) = fresh;
                slot
            }
            None => self.slab.push(fresh)?,
        };
        self.slab.note(slot, t);
        self.index.reserve(&self.slab);
        self.index.insert(lo, slot);
        Some((slot, false))
    }

    fn extra(&self, slot: u32) -> Option<&Extra> {
        let s = self.slab.at(slot);
        if s.has(HAS_EXTRA) {
            self.extras.get(&s.fp())
        } else {
            None
        }
    }

    /// The id's `Extra`, created if it has none.
    fn extra_mut(&mut self, slot: u32) -> &mut Extra {
        let s = self.slab.at_mut(slot);
        let newest = s.newest_canonical();
        s.hi |= HAS_EXTRA;
        self.extras.entry(s.fp()).or_insert(Extra {
            dup_audits: 0,
            dup_events: 0,
            newest,
            missing: None,
            found: false,
        })
    }

    /// Audited, unmatched, not reported: waits in the missing queue.
    fn is_pending(&self, slot: u32) -> bool {
        let s = self.slab.at(slot);
        s.has(HAS_AUDIT)
            && !s.matched(self.spec.missing_after)
            && self.extra(slot).is_none_or(|x| x.missing.is_none())
    }

    fn contribution(&self, slot: u32) -> Contribution {
        let s = self.slab.at(slot);
        let (da, de) = self
            .extra(slot)
            .map_or((0, 0), |x| (x.dup_audits, x.dup_events));
        Contribution {
            audit: s.audit().map(|a| (self.period_of(a), da)),
            event: s.event().map(|e| (self.period_of(e), de)),
            matched: s.matched(self.spec.missing_after),
        }
    }

    /// Applies changes to the periods' counts, marking the periods dirty if `dirty` (a
    /// change by a record; expiry changes nothing that is reported).
    fn apply(&mut self, deltas: &Deltas, dirty: bool) {
        for (k, d) in &deltas.items[..deltas.len] {
            let p = self.periods.entry(*k).or_default();
            p.refs = p.refs.saturating_add_signed(d.refs);
            p.audited = p.audited.saturating_add_signed(d.audited);
            p.matched = p.matched.saturating_add_signed(d.matched);
            p.duplicate_audits = p.duplicate_audits.saturating_add_signed(d.duplicate_audits);
            p.duplicate_events = p.duplicate_events.saturating_add_signed(d.duplicate_events);
            p.unexpected = p.unexpected.saturating_add_signed(d.unexpected);
            if dirty {
                p.dirty = true;
                self.first_dirty = Some(self.first_dirty.map_or(*k, |f| f.min(*k)));
            }
        }
    }

    /// Takes one record of `side`; its id is `record.id` (a record without one is
    /// dead-lettered).
    pub fn ingest(
        &mut self,
        side: Side,
        record: &Event,
        out: &mut Vec<ReconOutput>,
    ) -> ReconOutcome {
        let Some(id) = &record.id else {
            self.dead_letters += 1;
            return ReconOutcome::DeadLettered {
                kind: "invalid",
                reason: "the record has no id to reconcile on".into(),
            };
        };
        let w = self.watermark();
        let horizon = w.0.minus(self.spec.horizon);
        if w > Watermark::MIN && record.time < horizon {
            self.dead_letters += 1;
            return ReconOutcome::DeadLettered {
                kind: "beyond_horizon",
                reason: format!(
                    "beyond_horizon: time {} is before watermark {} − horizon",
                    record.time, w
                ),
            };
        }
        let n = self.spec.missing_after;
        let t = record.time.0;
        let (lo, hi) = split(self.fingerprint(&id.0));
        let Some((slot, existed)) = self.locate(lo, hi, t) else {
            self.dead_letters += 1;
            return ReconOutcome::DeadLettered {
                kind: "state_full",
                reason: "state_full: 2^32 ids are held at once; none can be added".into(),
            };
        };
        // The id's contribution to its periods before the record (its canonical records
        // may move) goes out, the one after comes in.
        let mut deltas = Deltas::default();
        if existed {
            deltas.add(self.contribution(slot), -1);
        }
        let s = self.slab.at(slot);
        let was_matched = s.matched(n);
        let old_audit = s.audit();
        let side_flag = match side {
            Side::Audit => HAS_AUDIT,
            Side::Event => HAS_EVENT,
        };
        // Any second record of a side and id is a duplicate, even the very same record
        // resent (at-least-once sources): counted, never matched twice.
        let duplicate = s.has(side_flag);
        let (reported, found) = self
            .extra(slot)
            .map_or((None, false), |x| (x.missing, x.found));
        let was_pending = old_audit.is_some() && !was_matched && reported.is_none();
        if duplicate {
            let x = self.extra_mut(slot);
            match side {
                Side::Audit => x.dup_audits = x.dup_audits.saturating_add(1),
                Side::Event => x.dup_events = x.dup_events.saturating_add(1),
            }
        }
        match side {
            Side::Audit => {
                let digest = record.digest();
                let canonical = !duplicate || {
                    let s = self.slab.at(slot);
                    match t.cmp(&s.audit) {
                        Ordering::Less => true,
                        Ordering::Greater => false,
                        Ordering::Equal => {
                            let known = if s.has(HAS_CONTEXT) {
                                self.contexts.get(&s.fp()).map(|c| c.digest)
                            } else {
                                None
                            };
                            // Without fields, the canonical record's digest is its time's.
                            let canonical_digest = known.unwrap_or_else(|| {
                                Event {
                                    stream: record.stream.clone(),
                                    key: record.key.clone(),
                                    time: record.time,
                                    id: None,
                                    fields: Vec::new(),
                                }
                                .digest()
                            });
                            digest <= canonical_digest
                        }
                    }
                };
                if canonical {
                    let s = self.slab.at_mut(slot);
                    s.audit = t;
                    s.hi |= HAS_AUDIT;
                    if !record.fields.is_empty() {
                        s.hi |= HAS_CONTEXT;
                        self.contexts.insert(
                            s.fp(),
                            Context {
                                digest,
                                fields: record.fields.clone(),
                            },
                        );
                    } else if s.has(HAS_CONTEXT) {
                        s.hi &= !HAS_CONTEXT;
                        self.contexts.remove(&s.fp());
                    }
                }
            }
            Side::Event => {
                let s = self.slab.at_mut(slot);
                if !duplicate || t < s.event {
                    s.event = t;
                    s.hi |= HAS_EVENT;
                }
            }
        }
        if self.slab.at(slot).has(HAS_EXTRA) {
            let x = self.extra_mut(slot);
            x.newest = x.newest.max(t);
        }
        let s = self.slab.at(slot);
        let matched = s.matched(n);
        let new_audit = s.audit();
        // The missing queue follows the canonical audit and the match.
        let pending = new_audit.is_some() && !matched && reported.is_none();
        if pending {
            if let Some(a) = new_audit
                && !(was_pending && old_audit == new_audit)
            {
                self.queue.push(a, slot);
            }
            if s.text.is_none() {
                self.slab.at_mut(slot).text = Some(id.0.clone());
            }
        } else if s.text.is_some() {
            self.slab.at_mut(slot).text = None;
        }
        if !was_matched
            && matched
            && let Some((since, reported_audit)) = reported
            && !found
        {
            let e = EventTime(self.slab.at(slot).event);
            self.extra_mut(slot).found = true;
            out.push(ReconOutput::Found {
                id: id.0.clone(),
                // The audit time its `Missing` reported (a duplicate audit record with an
                // earlier time may have become canonical since): both outputs of one id
                // address the same result.
                audit_time: reported_audit,
                missing_since: since,
                event_time: e,
                found_at: w,
                delay: Span(e.0.saturating_sub(reported_audit.0)),
            });
        }
        deltas.add(self.contribution(slot), 1);
        self.apply(&deltas, true);
        // Progress: the record may move the watermark.
        self.tracker
            .observe(side.partition(), record.time, self.now);
        self.progress(out);
        if duplicate {
            ReconOutcome::Duplicate
        } else {
            ReconOutcome::Applied
        }
    }

    /// Emits what the watermark now allows: missing ids, closed or corrected periods;
    /// then drops state past the horizon.
    fn progress(&mut self, out: &mut Vec<ReconOutput>) {
        let w = self.watermark();
        let n = self.spec.missing_after;
        let finished = self.finished;
        let due = |t: i64| finished || EventTime(t).plus(n) <= w.0;
        // Missing: canonical audit time + n ≤ watermark, no match.
        if self.queue.next.is_some_and(due) {
            self.emit_missing(w, out);
        }
        // Completeness of closed periods that changed.
        if let Some(k) = self.first_dirty
            && due(self.spec.period_window(k).end.0)
        {
            self.emit_completeness(w, out);
        }
        if self.finished || w.0 < self.retained_at.plus(self.spec.period) {
            return;
        }
        self.retained_at = w.0;
        self.retain(w);
    }

    fn emit_missing(&mut self, w: Watermark, out: &mut Vec<ReconOutput>) {
        let n = self.spec.missing_after;
        let finished = self.finished;
        let due = |t: i64| finished || EventTime(t).plus(n) <= w.0;
        let width = self.queue.width;
        while let Some(bucket) = self.queue.buckets.first_entry() {
            let b = *bucket.key();
            if !due(b.saturating_mul(width)) {
                break;
            }
            let chunks = bucket.remove();
            self.queue.opened_below = self.queue.opened_below.max(b.saturating_add(1));
            for slot in chunks.into_iter().flatten() {
                let s = self.slab.at(slot);
                if s.has(HAS_AUDIT) && s.audit.div_euclid(width) == b && self.is_pending(slot) {
                    self.queue.near.push(Reverse((s.audit, slot)));
                }
            }
        }
        let mut missing = Vec::new();
        while let Some(&Reverse((t, slot))) = self.queue.near.peek() {
            if !due(t) {
                break;
            }
            self.queue.near.pop();
            let s = self.slab.at(slot);
            if !(s.has(HAS_AUDIT) && s.audit == t && self.is_pending(slot)) {
                continue;
            }
            let context = if s.has(HAS_CONTEXT) {
                self.contexts
                    .get(&s.fp())
                    .map(|c| c.fields.clone())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let text = self.slab.at_mut(slot).text.take();
            self.extra_mut(slot).missing = Some((w, EventTime(t)));
            if let Some(id) = text {
                missing.push((EventTime(t), id, context));
            }
        }
        self.queue.next = self.queue.earliest();
        // In (audit time, id) order.
        missing.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out.extend(
            missing
                .into_iter()
                .map(|(audit_time, id, context)| ReconOutput::Missing {
                    id,
                    audit_time,
                    context,
                    detected_at: w,
                }),
        );
    }

    fn emit_completeness(&mut self, w: Watermark, out: &mut Vec<ReconOutput>) {
        let n = self.spec.missing_after;
        let Some(first) = self.first_dirty else {
            return;
        };
        let mut next_dirty = None;
        let finished = self.finished;
        for (&k, p) in self.periods.range_mut(first..) {
            if !p.dirty {
                continue;
            }
            let window = self.spec.period_window(k);
            // Period ends only grow with k: the first open period ends the pass.
            if !(finished || window.end.plus(n) <= w.0) {
                next_dirty = Some(k);
                break;
            }
            p.dirty = false;
            let counts = p.counts();
            let changed = p.emitted.is_none_or(|(_, c)| c != counts);
            if changed && !(p.emitted.is_none() && counts.is_empty()) {
                // Saturates (2^32 versions of one period); the store keeps the newest.
                let version = p.emitted.map_or(Version::FIRST, |(v, _)| v.next());
                p.emitted = Some((version, counts));
                out.push(ReconOutput::Completeness {
                    period: window,
                    version,
                    counts,
                    watermark: w,
                });
            }
        }
        self.first_dirty = next_dirty;
    }

    /// Retention: ids all of whose records are past `W − (m + n)` and whose periods are
    /// final (`end + m ≤ W`), and final periods no id held counts in.
    fn retain(&mut self, w: Watermark) {
        let n = self.spec.missing_after;
        let m = self.spec.horizon;
        let keep_from = w.0.minus(Span(m.0.saturating_add(n.0))).0;
        let final_before = w.0.minus(m).0;
        let spec_period = self.spec.period.0;
        // The latest record's period is final, so are all of the id's.
        // Period ends in i128: the period holding i64::MAX ends past it and is never
        // final before `finish` (a saturated end would make it final too early).
        let end_of = |k: i64| (i128::from(k) + 1) * i128::from(spec_period);
        let expired = |newest: i64| {
            newest < keep_from && end_of(newest.div_euclid(spec_period)) <= i128::from(final_before)
        };
        let mut gone = Vec::new();
        for c in 0..self.slab.chunks.len() {
            if self.slab.oldest[c] >= keep_from {
                continue;
            }
            let mut oldest = i64::MAX;
            for (j, s) in self.slab.chunks[c].iter().enumerate() {
                if !s.live() {
                    continue;
                }
                let newest = if s.has(HAS_EXTRA) {
                    self.extras
                        .get(&s.fp())
                        .map_or_else(|| s.newest_canonical(), |x| x.newest)
                } else {
                    s.newest_canonical()
                };
                if expired(newest) {
                    gone.push(((c << CHUNK_BITS) + j) as u32);
                } else {
                    oldest = oldest.min(newest);
                }
            }
            self.slab.oldest[c] = oldest;
        }
        // Out of the index: one pass over it when many go, else one lookup each.
        if gone.len() * 16 > self.index.groups.len() {
            let mut marks = vec![0u64; self.slab.len.div_ceil(64)];
            for &slot in &gone {
                marks[slot as usize / 64] |= 1 << (slot % 64);
            }
            self.index.sweep(&marks, &self.slab);
        } else {
            for &slot in &gone {
                let lo = self.slab.at(slot).lo;
                self.index.remove(lo, slot);
            }
        }
        let mut deltas = Deltas::default();
        for slot in gone {
            deltas.len = 0;
            deltas.add(self.contribution(slot), -1);
            self.apply(&deltas, false);
            let s = self.slab.at(slot);
            let fp = s.fp();
            if s.has(HAS_EXTRA) {
                self.extras.remove(&fp);
            }
            if s.has(HAS_CONTEXT) {
                self.contexts.remove(&fp);
            }
            *self.slab.at_mut(slot) = Slot::default();
            self.free.push(slot);
        }
        self.periods
            .retain(|&k, p| p.dirty || end_of(k) > i128::from(final_before) || p.refs > 0);
    }
}

/// Column names of a `completeness` emission, in order.
pub const COMPLETENESS_COLUMNS: [&str; 7] = [
    "audited",
    "matched",
    "missing",
    "duplicate_audits",
    "duplicate_events",
    "unexpected",
    "percent",
];

impl ReconOutput {
    /// The output as an [`Emission`] of pipeline `spec.name`, emitted at `now`, so it is
    /// stored, versioned, queried and fed like a window's result (`docs/reconcile.md`):
    ///
    /// - `completeness`: the series with the empty key, window = the period, its own
    ///   versions (a newer one replaces the older);
    /// - `missing` and `found`: the series `id=<id>`, window = the period of the audit
    ///   time; `missing` is version 1 and the `found` that resolves it version 2.
    pub fn to_emission(&self, spec: &ReconcileSpec, now: ProcessingTime) -> Emission {
        let text = |s: String| Some(Value::Str(Arc::from(s)));
        let id_key = |id: &str| Key::from_tags([("id", id)]).unwrap_or_else(|_| Key::empty());
        let (key, window, version, kind, columns, values, count, watermark) = match self {
            ReconOutput::Completeness {
                period,
                version,
                counts,
                watermark,
            } => {
                let ints = [
                    counts.audited,
                    counts.matched,
                    counts.missing,
                    counts.duplicate_audits,
                    counts.duplicate_events,
                    counts.unexpected,
                ];
                let mut values: Vec<Option<Value>> = ints
                    .iter()
                    .map(|c| Some(Value::I64(i64::try_from(*c).unwrap_or(i64::MAX))))
                    .collect();
                values.push(counts.percent().and_then(|p| Value::float(p).ok()));
                (
                    Key::empty(),
                    *period,
                    *version,
                    EmissionKind::Completeness,
                    COMPLETENESS_COLUMNS.iter().map(|c| Arc::from(*c)).collect(),
                    values,
                    counts.audited,
                    *watermark,
                )
            }
            ReconOutput::Missing {
                id,
                audit_time,
                context,
                detected_at,
            } => {
                let mut columns: Vec<Arc<str>> = ["status", "audit_time", "detected_at"]
                    .into_iter()
                    .map(Arc::from)
                    .collect();
                let mut values = vec![
                    text("missing".into()),
                    text(audit_time.to_string()),
                    text(detected_at.0.to_string()),
                ];
                for (name, v) in context {
                    columns.push(Arc::from(format!("audit.{name}")));
                    values.push(Some(v.clone()));
                }
                (
                    id_key(id),
                    spec.period_of(*audit_time),
                    Version::FIRST,
                    EmissionKind::Missing,
                    columns,
                    values,
                    1,
                    *detected_at,
                )
            }
            ReconOutput::Found {
                id,
                audit_time,
                missing_since,
                event_time,
                found_at,
                delay,
            } => (
                id_key(id),
                spec.period_of(*audit_time),
                Version::FIRST.next(),
                EmissionKind::Found,
                [
                    "status",
                    "audit_time",
                    "missing_since",
                    "event_time",
                    "found_at",
                    "delay_s",
                ]
                .into_iter()
                .map(Arc::from)
                .collect(),
                vec![
                    text("found".into()),
                    text(audit_time.to_string()),
                    text(missing_since.0.to_string()),
                    text(event_time.to_string()),
                    text(found_at.0.to_string()),
                    Value::float(delay.0 as f64 / 1e9).ok(),
                ],
                1,
                *found_at,
            ),
        };
        // The checksum fingerprints the values, so two versions with equal counts are
        // recognisably equal.
        let mut bytes = Vec::new();
        for v in values.iter().flatten() {
            v.stable_bytes(&mut bytes);
        }
        Emission {
            pipeline: spec.name.clone(),
            key,
            window,
            version,
            kind,
            columns: columns.into(),
            values,
            count,
            checksum: Checksum {
                count,
                hash: xxhash_rust::xxh3::xxh3_64(&bytes),
            },
            emitted_at: now,
            watermark,
            states: None,
        }
    }
}

/// The magic bytes that start every reconciliation snapshot.
pub const RECON_MAGIC: &[u8; 8] = b"RKNRECN\0";
/// The reconciliation snapshot format this build writes and the newest it reads.
pub const RECON_SNAPSHOT_FORMAT: u16 = 1;

/// One id in a snapshot.
#[derive(Serialize)]
struct IdRef<'a> {
    fp: Fp,
    audit: Option<i64>,
    event: Option<i64>,
    text: Option<&'a Arc<str>>,
    extra: Option<&'a Extra>,
    context: Option<&'a Context>,
}

#[derive(Deserialize)]
struct IdOwned {
    fp: Fp,
    audit: Option<i64>,
    event: Option<i64>,
    text: Option<Arc<str>>,
    extra: Option<Extra>,
    context: Option<Context>,
}

#[derive(Serialize)]
struct ReconStateRef<'a> {
    spec: u64,
    tracker: &'a WatermarkTracker,
    now: ProcessingTime,
    ids: Vec<IdRef<'a>>,
    periods: &'a BTreeMap<i64, PeriodState>,
    finished: bool,
    dead_letters: u64,
    retained_at: EventTime,
    secret: &'a [u8],
}

#[derive(Deserialize)]
struct ReconState {
    spec: u64,
    tracker: WatermarkTracker,
    now: ProcessingTime,
    ids: Vec<IdOwned>,
    periods: BTreeMap<i64, PeriodState>,
    finished: bool,
    dead_letters: u64,
    retained_at: EventTime,
    secret: Vec<u8>,
}

impl Reconciler {
    /// Serialises the whole state (magic, format version, postcard payload). Equal
    /// states give equal bytes: ids are written in fingerprint order (the missing queue
    /// and the index are rebuilt from them on restore).
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let mut ids: Vec<IdRef<'_>> = self
            .slab
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.live())
            .map(|s| {
                let fp = s.fp();
                IdRef {
                    fp,
                    audit: s.audit(),
                    event: s.event(),
                    text: s.text.as_ref(),
                    extra: if s.has(HAS_EXTRA) {
                        self.extras.get(&fp)
                    } else {
                        None
                    },
                    context: if s.has(HAS_CONTEXT) {
                        self.contexts.get(&fp)
                    } else {
                        None
                    },
                }
            })
            .collect();
        ids.sort_unstable_by_key(|r| r.fp);
        let state = ReconStateRef {
            spec: spec_fingerprint(&self.spec)?,
            tracker: &self.tracker,
            now: self.now,
            ids,
            periods: &self.periods,
            finished: self.finished,
            dead_letters: self.dead_letters,
            retained_at: self.retained_at,
            secret: &self.secret[..],
        };
        snapshot::encode(RECON_MAGIC, RECON_SNAPSHOT_FORMAT, &state)
    }

    /// Restores a reconciliation from a snapshot taken with the same spec.
    pub fn restore(spec: ReconcileSpec, bytes: &[u8]) -> Result<Reconciler> {
        let state: ReconState = snapshot::decode(
            bytes,
            RECON_MAGIC,
            RECON_SNAPSHOT_FORMAT,
            "reconciliation snapshot",
        )?;
        if state.spec != spec_fingerprint(&spec)? {
            return Err(Error::Snapshot(format!(
                "the snapshot was taken with a different spec of reconciliation `{}` (periods changed); its state cannot be carried over",
                spec.name
            )));
        }
        let corrupt = |what: &str| Error::Snapshot(format!("corrupt payload: {what}"));
        if u32::try_from(state.ids.len()).is_err() {
            return Err(corrupt("more ids than a reconciliation holds"));
        }
        let secret: [u8; ID_SECRET_LEN] = state
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("the id secret is not 192 bytes"))?;
        let mut r = Reconciler::with_secret(spec, secret);
        r.tracker = state.tracker;
        r.now = state.now;
        r.finished = state.finished;
        r.dead_letters = state.dead_letters;
        r.retained_at = state.retained_at;
        r.periods = state.periods;
        r.first_dirty = r.periods.iter().find(|(_, p)| p.dirty).map(|(k, _)| *k);
        let mut last = None;
        for id in state.ids {
            let (lo, hi) = split(id.fp);
            if last.is_some_and(|l| l >= id.fp) || (u128::from(hi) << 64 | u128::from(lo)) != id.fp
            {
                return Err(corrupt("ids out of order"));
            }
            last = Some(id.fp);
            let mut flags = 0;
            if id.audit.is_some() {
                flags |= HAS_AUDIT;
            }
            if id.event.is_some() {
                flags |= HAS_EVENT;
            }
            if flags == 0 {
                return Err(corrupt("an id without records"));
            }
            if let Some(x) = id.extra {
                flags |= HAS_EXTRA;
                r.extras.insert(id.fp, x);
            }
            if let Some(c) = id.context {
                flags |= HAS_CONTEXT;
                r.contexts.insert(id.fp, c);
            }
            let slot = Slot {
                lo,
                hi: hi | flags,
                audit: id.audit.unwrap_or(0),
                event: id.event.unwrap_or(0),
                text: id.text,
            };
            let newest = r
                .extras
                .get(&id.fp)
                .map_or_else(|| slot.newest_canonical(), |x| x.newest);
            let i = r
                .slab
                .push(slot)
                .ok_or_else(|| corrupt("more ids than a reconciliation holds"))?;
            r.slab.note(i, newest);
        }
        let groups = ((r.slab.len + 1) * 8)
            .div_ceil(7 * LANES)
            .next_power_of_two();
        r.index.rebuild(groups, &r.slab);
        for slot in 0..r.slab.len as u32 {
            let s = r.slab.at(slot);
            if r.is_pending(slot) {
                match &s.text {
                    None => {
                        return Err(corrupt("an id waiting for its verdict without its text"));
                    }
                    Some(t) if split(r.fingerprint(t)) != (s.lo, s.hi & !FLAGS) => {
                        return Err(corrupt("an id's text does not match its fingerprint"));
                    }
                    Some(_) => {}
                }
                r.queue.push(s.audit, slot);
            } else if s.text.is_some() {
                return Err(corrupt("the text of an id not waiting for its verdict"));
            }
        }
        Ok(r)
    }
}
