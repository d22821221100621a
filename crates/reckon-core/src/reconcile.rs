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
//! completeness is recomputed from the per-id state whenever it changes, so it depends
//! on the set of records seen, not on their order.

use crate::event::{Event, Value};
use crate::time::{EventTime, ProcessingTime, Span};
use crate::watermark::{PartitionId, Watermark, WatermarkTracker};
use crate::{Error, Result, Version, Window};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
#[derive(Clone, Debug, PartialEq)]
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
            return bad("the period (o) must be positive".into());
        }
        if missing_after.0 < 0 {
            return bad("missing_after (n) must not be negative".into());
        }
        if horizon.0 < missing_after.0 {
            return bad("the horizon (m) must be at least missing_after (n)".into());
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
}

/// The counts of one completeness period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// Later than the horizon (`time < watermark − m`): kept out, with the reason.
    DeadLettered(String),
}

/// One record of one side of an id: (time, digest).
type Rec = (EventTime, u64);

#[derive(Debug, Default)]
struct IdState {
    audits: Vec<Rec>,
    events: Vec<Rec>,
    /// Fields of the canonical audit record.
    context: Vec<(Arc<str>, Value)>,
    /// `detected_at` of the `Missing` reported, if one was.
    missing: Option<Watermark>,
    found: bool,
}

impl IdState {
    fn canonical(recs: &[Rec]) -> Option<Rec> {
        recs.iter().min().copied()
    }
    fn matched(&self, n: Span) -> Option<(Rec, Rec)> {
        let a = IdState::canonical(&self.audits)?;
        let e = IdState::canonical(&self.events)?;
        (e.0.0.abs_diff(a.0.0) <= n.0.unsigned_abs()).then_some((a, e))
    }
    fn newest(&self) -> EventTime {
        self.audits
            .iter()
            .chain(&self.events)
            .map(|r| r.0)
            .max()
            .unwrap_or(EventTime::MIN)
    }
}

#[derive(Debug, Default)]
struct PeriodState {
    /// Ids whose canonical audit or canonical event falls in the period.
    ids: BTreeSet<Arc<str>>,
    emitted: Option<(Version, Completeness)>,
    dirty: bool,
}

/// The reconciliation engine (see the module docs).
#[derive(Debug)]
pub struct Reconciler {
    spec: ReconcileSpec,
    tracker: WatermarkTracker,
    now: ProcessingTime,
    ids: HashMap<Arc<str>, IdState>,
    periods: BTreeMap<i64, PeriodState>,
    /// Unmatched, unreported audits by canonical audit time: the `Missing` queue.
    pending: BTreeSet<(EventTime, Arc<str>)>,
    finished: bool,
    dead_letters: u64,
    /// The watermark at the last retention pass (a pass scans every id, so it runs once
    /// per period of watermark progress, not per record).
    retained_at: EventTime,
}

impl Reconciler {
    /// A reconciliation with no state.
    pub fn new(spec: ReconcileSpec) -> Reconciler {
        Reconciler {
            tracker: WatermarkTracker::new(spec.missing_after, spec.idle_timeout),
            spec,
            now: ProcessingTime::MIN,
            ids: HashMap::new(),
            periods: BTreeMap::new(),
            pending: BTreeSet::new(),
            finished: false,
            dead_letters: 0,
            retained_at: EventTime::MIN,
        }
    }

    /// The spec.
    pub fn spec(&self) -> &ReconcileSpec {
        &self.spec
    }

    /// The watermark.
    pub fn watermark(&self) -> Watermark {
        self.tracker.current()
    }

    /// Ids held in state.
    pub fn pending_ids(&self) -> usize {
        self.ids.len()
    }

    /// Records dead-lettered so far.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    fn period_of(&self, t: EventTime) -> i64 {
        t.0.div_euclid(self.spec.period.0)
    }

    fn window_of(&self, k: i64) -> Window {
        let start = k.saturating_mul(self.spec.period.0);
        Window {
            start: EventTime(start),
            end: EventTime(start.saturating_add(self.spec.period.0)),
        }
    }

    /// Periods an id contributes to (its canonical audit's and canonical event's).
    fn periods_of(&self, s: &IdState) -> Vec<i64> {
        let mut v = Vec::with_capacity(2);
        if let Some(a) = IdState::canonical(&s.audits) {
            v.push(self.period_of(a.0));
        }
        if let Some(e) = IdState::canonical(&s.events) {
            v.push(self.period_of(e.0));
        }
        v
    }

    /// Processing time passed: idle streams and the stall rule may move the watermark.
    pub fn advance(&mut self, now: ProcessingTime, out: &mut Vec<ReconOutput>) {
        self.now = self.now.max(now);
        self.tracker.tick(self.now);
        self.progress(out);
    }

    /// All data has arrived: every audit without an event is missing, every period is
    /// emitted in its final state.
    pub fn finish(&mut self, out: &mut Vec<ReconOutput>) {
        self.tracker.finish();
        self.finished = true;
        self.progress(out);
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
            return ReconOutcome::DeadLettered("the record has no id to reconcile on".into());
        };
        let w = self.watermark();
        let horizon = w.0.minus(self.spec.horizon);
        if w > Watermark::MIN && record.time < horizon {
            self.dead_letters += 1;
            return ReconOutcome::DeadLettered(format!(
                "beyond_horizon: time {} is before watermark {} − horizon",
                record.time, w
            ));
        }
        let id: Arc<str> = id.0.clone();
        let n = self.spec.missing_after;
        let rec = (record.time, record.digest());
        // Periods the id counted in before this record (its canonical records may move).
        let mut touched = self
            .ids
            .get(&id)
            .map(|s| self.periods_of(s))
            .unwrap_or_default();
        let state = self.ids.entry(id.clone()).or_default();
        let was_matched = state.matched(n).is_some();
        let old_audit = IdState::canonical(&state.audits);
        let list = match side {
            Side::Audit => &mut state.audits,
            Side::Event => &mut state.events,
        };
        // Any second record of a side and id is a duplicate, even the very same record
        // resent (at-least-once sources): counted, never matched twice.
        let duplicate = !list.is_empty();
        list.push(rec);
        if side == Side::Audit && IdState::canonical(&state.audits) == Some(rec) {
            state.context = record.fields.clone();
        }
        let new_audit = IdState::canonical(&state.audits);
        let matched = state.matched(n);
        // The missing queue follows the canonical audit and the match.
        if let Some(a) = old_audit
            && state.missing.is_none()
        {
            self.pending.remove(&(a.0, id.clone()));
        }
        if let Some(a) = new_audit
            && state.missing.is_none()
            && matched.is_none()
        {
            self.pending.insert((a.0, id.clone()));
        }
        if !was_matched
            && let Some((a, e)) = matched
            && let Some(since) = state.missing
            && !state.found
        {
            state.found = true;
            out.push(ReconOutput::Found {
                id: id.clone(),
                audit_time: a.0,
                missing_since: since,
                event_time: e.0,
                found_at: w,
                delay: Span(e.0.0.saturating_sub(a.0.0)),
            });
        }
        if let Some(s) = self.ids.get(&id) {
            touched.extend(self.periods_of(s));
        }
        for k in touched {
            let p = self.periods.entry(k).or_default();
            p.ids.insert(id.clone());
            p.dirty = true;
        }
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

    /// Recomputes a period's counts from the per-id state.
    fn counts(&self, k: i64) -> Completeness {
        let mut c = Completeness::default();
        let n = self.spec.missing_after;
        let Some(p) = self.periods.get(&k) else {
            return c;
        };
        for id in &p.ids {
            let Some(s) = self.ids.get(id) else { continue };
            let matched = s.matched(n).is_some();
            if let Some(a) = IdState::canonical(&s.audits)
                && self.period_of(a.0) == k
            {
                c.audited += 1;
                c.matched += u64::from(matched);
                c.duplicate_audits += s.audits.len() as u64 - 1;
            }
            if let Some(e) = IdState::canonical(&s.events)
                && self.period_of(e.0) == k
            {
                c.duplicate_events += s.events.len() as u64 - 1;
                c.unexpected += u64::from(!matched);
            }
        }
        c.missing = c.audited - c.matched;
        c
    }

    /// Emits what the watermark now allows: missing ids, closed or corrected periods;
    /// then drops state past the horizon.
    fn progress(&mut self, out: &mut Vec<ReconOutput>) {
        let w = self.watermark();
        let n = self.spec.missing_after;
        // Missing: canonical audit time + n ≤ watermark, no match.
        while let Some((t, id)) = self.pending.first().cloned() {
            if !(self.finished || t.plus(n) <= w.0) {
                break;
            }
            self.pending.pop_first();
            if let Some(s) = self.ids.get_mut(&id)
                && s.missing.is_none()
                && s.matched(n).is_none()
            {
                s.missing = Some(w);
                out.push(ReconOutput::Missing {
                    id: id.clone(),
                    audit_time: t,
                    context: s.context.clone(),
                    detected_at: w,
                });
            }
        }
        // Completeness of closed periods that changed.
        let dirty: Vec<i64> = self
            .periods
            .iter()
            .filter(|(_, p)| p.dirty)
            .map(|(k, _)| *k)
            .collect();
        for k in dirty {
            let window = self.window_of(k);
            if !(self.finished || window.end.plus(n) <= w.0) {
                continue;
            }
            let counts = self.counts(k);
            let Some(p) = self.periods.get_mut(&k) else {
                continue;
            };
            p.dirty = false;
            let changed = p.emitted.is_none_or(|(_, c)| c != counts);
            if changed && !(p.emitted.is_none() && counts.is_empty()) {
                let version = Version(p.emitted.map_or(1, |(v, _)| v.0 + 1));
                p.emitted = Some((version, counts));
                out.push(ReconOutput::Completeness {
                    period: window,
                    version,
                    counts,
                    watermark: w,
                });
            }
        }
        if self.finished || w.0 < self.retained_at.plus(self.spec.period) {
            return;
        }
        self.retained_at = w.0;
        // Retention: ids all of whose records are past `W − (m + n)` and whose periods
        // are final (`end + m ≤ W`), and final periods.
        let m = self.spec.horizon;
        let keep_from = w.0.minus(Span(m.0.saturating_add(n.0)));
        let final_before = w.0.minus(m);
        let spec_period = self.spec.period.0;
        let final_k = |t: EventTime| {
            (t.0.div_euclid(spec_period) + 1).saturating_mul(spec_period) <= final_before.0
        };
        let expired: Vec<Arc<str>> = self
            .ids
            .iter()
            .filter(|(_, s)| {
                s.newest() < keep_from && s.audits.iter().chain(&s.events).all(|r| final_k(r.0))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.ids.remove(&id);
        }
        let done: Vec<i64> = self
            .periods
            .iter()
            .filter(|(k, p)| !p.dirty && self.window_of(**k).end <= final_before)
            .map(|(k, _)| *k)
            .filter(|k| {
                self.periods
                    .get(k)
                    .is_some_and(|p| p.ids.iter().all(|id| !self.ids.contains_key(id)))
            })
            .collect();
        for k in done {
            self.periods.remove(&k);
        }
    }
}
