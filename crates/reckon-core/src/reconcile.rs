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

use crate::checksum::Checksum;
use crate::emission::{Emission, EmissionKind};
use crate::event::{Event, Key, Value};
use crate::time::{EventTime, ProcessingTime, Span};
use crate::watermark::{PartitionId, Watermark, WatermarkTracker};
use crate::{Error, Result, Version, Window};
use serde::{Deserialize, Serialize};
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
    /// Later than the horizon (`time < watermark − m`): kept out, with the reason.
    DeadLettered(String),
}

/// One record of one side of an id: (time, digest).
type Rec = (EventTime, u64);

#[derive(Debug, Default, Serialize, Deserialize)]
struct IdState {
    audits: Vec<Rec>,
    events: Vec<Rec>,
    /// Fields of the canonical audit record.
    context: Vec<(Arc<str>, Value)>,
    /// `detected_at` and `audit_time` of the `Missing` reported, if one was.
    missing: Option<(Watermark, EventTime)>,
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

#[derive(Debug, Default, Serialize, Deserialize)]
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
        // Both streams hold the watermark from the start: the one that sends first must
        // not run ahead alone and report every audited id missing (`docs/reconcile.md`).
        let mut tracker = WatermarkTracker::new(spec.missing_after, spec.idle_timeout);
        tracker.expect(Side::Event.partition());
        tracker.expect(Side::Audit.partition());
        Reconciler {
            tracker,
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

    /// The latest processing time it was given.
    pub fn now(&self) -> ProcessingTime {
        self.now
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
            && let Some((_, e)) = matched
            && let Some((since, reported_audit)) = state.missing
            && !state.found
        {
            state.found = true;
            out.push(ReconOutput::Found {
                id: id.clone(),
                // The audit time its `Missing` reported (a duplicate audit record with an
                // earlier time may have become canonical since): both outputs of one id
                // address the same result.
                audit_time: reported_audit,
                missing_since: since,
                event_time: e.0,
                found_at: w,
                delay: Span(e.0.0.saturating_sub(reported_audit.0)),
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
                s.missing = Some((w, t));
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
        let period = |t: EventTime| {
            let start = t.0.div_euclid(spec.period.0).saturating_mul(spec.period.0);
            Window {
                start: EventTime(start),
                end: EventTime(start.saturating_add(spec.period.0)),
            }
        };
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
                    period(*audit_time),
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
                period(*audit_time),
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
        }
    }
}

/// The magic bytes that start every reconciliation snapshot.
pub const RECON_MAGIC: &[u8; 8] = b"RKNRECN\0";
/// The reconciliation snapshot format this build writes and the newest it reads.
pub const RECON_SNAPSHOT_FORMAT: u16 = 1;

#[derive(Serialize)]
struct ReconStateRef<'a> {
    spec: u64,
    tracker: &'a WatermarkTracker,
    now: ProcessingTime,
    ids: Vec<(&'a Arc<str>, &'a IdState)>,
    periods: &'a BTreeMap<i64, PeriodState>,
    pending: &'a BTreeSet<(EventTime, Arc<str>)>,
    finished: bool,
    dead_letters: u64,
    retained_at: EventTime,
}

#[derive(Deserialize)]
struct ReconState {
    spec: u64,
    tracker: WatermarkTracker,
    now: ProcessingTime,
    ids: Vec<(Arc<str>, IdState)>,
    periods: BTreeMap<i64, PeriodState>,
    pending: BTreeSet<(EventTime, Arc<str>)>,
    finished: bool,
    dead_letters: u64,
    retained_at: EventTime,
}

fn recon_fingerprint(spec: &ReconcileSpec) -> Result<u64> {
    let bytes = postcard::to_stdvec(spec)
        .map_err(|e| Error::Internal(format!("spec encoding failed: {e}")))?;
    Ok(xxhash_rust::xxh3::xxh3_64(&bytes))
}

impl Reconciler {
    /// Serialises the whole state (magic, format version, postcard payload). Equal
    /// states give equal bytes: ids are written in order.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let mut ids: Vec<(&Arc<str>, &IdState)> = self.ids.iter().collect();
        ids.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let state = ReconStateRef {
            spec: recon_fingerprint(&self.spec)?,
            tracker: &self.tracker,
            now: self.now,
            ids,
            periods: &self.periods,
            pending: &self.pending,
            finished: self.finished,
            dead_letters: self.dead_letters,
            retained_at: self.retained_at,
        };
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(RECON_MAGIC);
        out.extend_from_slice(&RECON_SNAPSHOT_FORMAT.to_le_bytes());
        let body = postcard::to_stdvec(&state)
            .map_err(|e| Error::Internal(format!("snapshot encoding failed: {e}")))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Restores a reconciliation from a snapshot taken with the same spec.
    pub fn restore(spec: ReconcileSpec, bytes: &[u8]) -> Result<Reconciler> {
        let rest = bytes.strip_prefix(RECON_MAGIC.as_slice()).ok_or_else(|| {
            Error::Snapshot("not a reckon reconciliation snapshot (bad magic bytes)".into())
        })?;
        let (ver, body) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| Error::Snapshot("truncated header".into()))?;
        let ver = u16::from_le_bytes(*ver);
        if ver == 0 || ver > RECON_SNAPSHOT_FORMAT {
            return Err(Error::Snapshot(format!(
                "reconciliation snapshot format {ver} is not one this build reads (1..={RECON_SNAPSHOT_FORMAT}); upgrade reckon"
            )));
        }
        let state: ReconState = postcard::from_bytes(body)
            .map_err(|e| Error::Snapshot(format!("corrupt payload: {e}")))?;
        if state.spec != recon_fingerprint(&spec)? {
            return Err(Error::Snapshot(format!(
                "the snapshot was taken with a different spec of reconciliation `{}` (periods changed); its state cannot be carried over",
                spec.name
            )));
        }
        Ok(Reconciler {
            spec,
            tracker: state.tracker,
            now: state.now,
            ids: state.ids.into_iter().collect(),
            periods: state.periods,
            pending: state.pending,
            finished: state.finished,
            dead_letters: state.dead_letters,
            retained_at: state.retained_at,
        })
    }
}
