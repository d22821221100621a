//! Rollups: coarser windows merged from another operator's aggregate *states*.
//!
//! A rollup reads the results of a window pipeline (or of another rollup) and groups
//! its windows ("children") into coarser ones ("parents"): a multiple of a tumbling
//! size, or local days, ISO weeks or months. A parent's result is the merge of its
//! children's newest aggregate states — count, sum, min, max, mean as sum and count,
//! variance by the parallel merge, sketches, first and last by time — never an average
//! of averages, so it equals a batch computation over the events of the whole parent.
//!
//! Time comes from the input: a parent closes (its `on_time` result) when the input's
//! watermark reaches its end, since every child ends by then. A child that changes
//! later (a late correction or a recompute below) re-merges its parent at once and
//! emits a `late` correction, in the same commit as the event that caused it. After
//! `allowed_lateness` the parent leaves memory; a child change after that is the cold
//! path: the driver reads the input's stored results of the parent's span (states are
//! stored with them) and [`Operator::recompute`] merges them.

use super::{ColdData, ColdRequest, Operator, Source, StepReport};
use crate::aggregate::{AggState, AggregateSpec};
use crate::checksum::Checksum;
use crate::emission::{Emission, EmissionKind, Version};
use crate::error::{Error, Result};
use crate::event::{Event, Key};
use crate::pipeline::Prior;
use crate::snapshot::{self, spec_fingerprint};
use crate::time::{EventTime, ProcessingTime, Span};
use crate::watermark::{PartitionId, Watermark};
use crate::window::{CalendarUnit, Window, WindowSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The magic bytes of a rollup's snapshot.
pub const ROLLUP_MAGIC: &[u8; 8] = b"RKNROLL\0";
/// The rollup snapshot format this build writes and the newest it reads.
pub const ROLLUP_FORMAT: u16 = 1;

/// What a rollup computes.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RollupSpec {
    /// The rollup's name.
    pub name: Arc<str>,
    /// The operator whose results it merges.
    pub input: Arc<str>,
    /// Its (coarser) windows.
    pub window: WindowSpec,
    /// The input's aggregates: the rollup merges every one of them.
    pub aggregates: Vec<AggregateSpec>,
    /// How long after a parent closed it stays in memory for instant corrections.
    pub allowed_lateness: Span,
}

impl RollupSpec {
    /// Checks that the rollup's windows are coarser than the input's (`child`) and that
    /// every child window lies in exactly one parent; the error says why not.
    pub fn check_nesting(&self, child: &WindowSpec) -> std::result::Result<(), String> {
        let day = Span::days(1);
        match (&self.window, child) {
            (WindowSpec::Hopping { .. }, _) => {
                Err("a rollup's windows must not overlap: use tumbling or calendar windows".into())
            }
            (_, WindowSpec::Hopping { .. }) => Err(format!(
                "its input `{}` has hopping windows, which overlap: their states cannot be merged without counting events twice",
                self.input
            )),
            (
                WindowSpec::Tumbling { size, offset },
                WindowSpec::Tumbling {
                    size: csize,
                    offset: coffset,
                },
            ) => {
                if size.0 <= csize.0 || size.0 % csize.0 != 0 {
                    return Err(format!(
                        "its window ({size}) must be a multiple of, and longer than, the windows of its input `{}` ({csize})",
                        self.input
                    ));
                }
                if (offset.0 - coffset.0).rem_euclid(csize.0) != 0 {
                    return Err(format!(
                        "its window offset ({offset}) does not fall on a window boundary of its input `{}` (offset {coffset})",
                        self.input
                    ));
                }
                Ok(())
            }
            (WindowSpec::Tumbling { .. }, WindowSpec::Calendar { unit, .. }) => Err(format!(
                "tumbling windows cannot roll up calendar {} windows of `{}` (their lengths vary); use a calendar window",
                unit_name(*unit),
                self.input
            )),
            (
                WindowSpec::Calendar { unit, tz },
                WindowSpec::Tumbling {
                    size: csize,
                    offset: coffset,
                },
            ) => {
                if csize.0 > day.0 || day.0 % csize.0 != 0 {
                    return Err(format!(
                        "calendar {} windows need input windows that divide a day; `{}` has {csize}",
                        unit_name(*unit),
                        self.input
                    ));
                }
                // A local midnight is `days * 24h - offset` in UTC: it falls on the
                // input's grid if `offset + grid offset` does, for every offset the zone
                // has used since 1970.
                for off in zone_offsets(tz.zone()) {
                    if (off.saturating_add(coffset.0)).rem_euclid(csize.0) != 0 {
                        return Err(format!(
                            "a local midnight in {} (UTC offset {}) is not a boundary of the {csize} windows of `{}`: its days would split them",
                            tz.name(),
                            Span(off),
                            self.input
                        ));
                    }
                }
                Ok(())
            }
            (
                WindowSpec::Calendar { unit, tz },
                WindowSpec::Calendar {
                    unit: cunit,
                    tz: ctz,
                },
            ) => {
                if tz != ctz {
                    return Err(format!(
                        "its time zone {} differs from its input `{}`'s ({}): their days do not nest",
                        tz.name(),
                        self.input,
                        ctz.name()
                    ));
                }
                match (unit, cunit) {
                    (CalendarUnit::Week | CalendarUnit::Month, CalendarUnit::Day) => Ok(()),
                    (CalendarUnit::Month, CalendarUnit::Week) => Err(format!(
                        "ISO weeks of `{}` do not nest in months (a week can span two); roll months up from days",
                        self.input
                    )),
                    _ => Err(format!(
                        "calendar {} windows are not coarser than the calendar {} windows of its input `{}`",
                        unit_name(*unit),
                        unit_name(*cunit),
                        self.input
                    )),
                }
            }
        }
    }

    /// The output column names.
    pub fn columns(&self) -> Arc<[Arc<str>]> {
        self.aggregates.iter().map(|a| a.name.clone()).collect()
    }
}

fn unit_name(u: CalendarUnit) -> &'static str {
    match u {
        CalendarUnit::Day => "day",
        CalendarUnit::Week => "week",
        CalendarUnit::Month => "month",
    }
}

/// Every UTC offset (in ns) the zone used between 1970 and 2100.
fn zone_offsets(tz: &jiff::tz::TimeZone) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    let (Ok(start), Ok(end)) = (
        jiff::Timestamp::from_second(0),
        jiff::Timestamp::from_second(4_102_444_800),
    ) else {
        return out;
    };
    out.insert(i64::from(tz.to_offset(start).seconds()) * 1_000_000_000);
    for t in tz.following(start) {
        if t.timestamp() > end {
            break;
        }
        out.insert(i64::from(t.offset().seconds()) * 1_000_000_000);
    }
    out
}

/// The newest state of one child window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Child {
    states: Vec<AggState>,
    checksum: Checksum,
}

/// One parent window held in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Parent {
    window: Window,
    /// Child windows by start.
    children: BTreeMap<EventTime, Child>,
    /// Last emitted version (0 before the first).
    version: u32,
    /// Its on-time result was emitted.
    closed: bool,
    /// Checksum of the last emitted version.
    emitted: Option<Checksum>,
}

#[derive(Serialize)]
struct StateRef<'a> {
    spec: u64,
    observed: Watermark,
    now: ProcessingTime,
    parents: &'a BTreeMap<(Key, EventTime), Parent>,
}

#[derive(Deserialize)]
struct StateOwned {
    spec: u64,
    observed: Watermark,
    now: ProcessingTime,
    parents: BTreeMap<(Key, EventTime), Parent>,
}

/// A rollup (see the module docs). Its only input is another operator.
#[derive(Debug)]
pub struct Rollup {
    spec: RollupSpec,
    columns: Arc<[Arc<str>]>,
    inputs: [Source; 1],
    /// The input's watermark, as far as it was seen.
    observed: Watermark,
    now: ProcessingTime,
    parents: BTreeMap<(Key, EventTime), Parent>,
    /// Parents not closed yet, by end.
    open: BTreeSet<(EventTime, Key, EventTime)>,
    /// Closed parents, by the end of their allowed lateness.
    hot: BTreeSet<(EventTime, Key, EventTime)>,
    keep_states: bool,
    scratch: Vec<Window>,
}

impl Rollup {
    /// A new rollup, or one restored from `snapshot` (taken with the same spec).
    pub fn new(spec: RollupSpec, snapshot: Option<&[u8]>) -> Result<Rollup> {
        spec.window.validate()?;
        if spec.window.is_overlapping() {
            return Err(Error::InvalidSpec(format!(
                "rollup `{}`: its windows must not overlap",
                spec.name
            )));
        }
        if spec.allowed_lateness.0 < 0 {
            return Err(Error::InvalidSpec(format!(
                "rollup `{}`: allowed_lateness must not be negative",
                spec.name
            )));
        }
        let mut r = Rollup {
            columns: spec.columns(),
            inputs: [Source::Operator(spec.input.clone())],
            spec,
            observed: Watermark::MIN,
            now: ProcessingTime::MIN,
            parents: BTreeMap::new(),
            open: BTreeSet::new(),
            hot: BTreeSet::new(),
            keep_states: false,
            scratch: Vec::with_capacity(1),
        };
        if let Some(bytes) = snapshot {
            let s: StateOwned =
                snapshot::decode(bytes, ROLLUP_MAGIC, ROLLUP_FORMAT, "rollup snapshot")?;
            if s.spec != spec_fingerprint(&r.spec)? {
                return Err(Error::Snapshot(format!(
                    "the snapshot was taken with a different spec of rollup `{}`",
                    r.spec.name
                )));
            }
            r.observed = s.observed;
            r.now = s.now;
            for ((key, start), p) in &s.parents {
                if p.closed {
                    r.hot.insert((
                        p.window.end.plus(r.spec.allowed_lateness),
                        key.clone(),
                        *start,
                    ));
                } else {
                    r.open.insert((p.window.end, key.clone(), *start));
                }
            }
            r.parents = s.parents;
        }
        Ok(r)
    }

    /// The spec.
    pub fn spec(&self) -> &RollupSpec {
        &self.spec
    }

    /// Number of parent windows held in memory.
    pub fn hot_windows(&self) -> usize {
        self.parents.len()
    }

    /// The parent window containing a child starting at `start`.
    fn parent_of(&mut self, child: Window) -> Result<Window> {
        self.scratch.clear();
        self.spec.window.assign(child.start, &mut self.scratch)?;
        match self.scratch.first() {
            Some(&w) if child.end <= w.end => Ok(w),
            _ => Err(Error::Internal(format!(
                "window {child} of `{}` is in no window of rollup `{}` (they do not nest)",
                self.spec.input, self.spec.name
            ))),
        }
    }

    fn merged<'a, I>(&self, children: I) -> Result<(Vec<AggState>, Checksum)>
    where
        I: IntoIterator<Item = (&'a [AggState], Checksum)>,
    {
        let mut states: Vec<AggState> = self
            .spec
            .aggregates
            .iter()
            .map(AggregateSpec::empty_state)
            .collect();
        let mut checksum = Checksum::default();
        for (child, sum) in children {
            if child.len() != states.len() {
                return Err(Error::Internal(format!(
                    "rollup `{}`: a result of `{}` has {} aggregate states, expected {}",
                    self.spec.name,
                    self.spec.input,
                    child.len(),
                    states.len()
                )));
            }
            for (s, c) in states.iter_mut().zip(child) {
                s.merge(c)?;
            }
            checksum.merge(&sum);
        }
        Ok((states, checksum))
    }

    fn emission(
        &self,
        key: &Key,
        window: Window,
        version: u32,
        kind: EmissionKind,
        states: Vec<AggState>,
        checksum: Checksum,
    ) -> Emission {
        Emission {
            pipeline: self.spec.name.clone(),
            key: key.clone(),
            window,
            version: Version(version),
            kind,
            columns: self.columns.clone(),
            values: states.iter().map(AggState::output).collect(),
            count: checksum.count,
            checksum,
            emitted_at: self.now,
            watermark: self.observed,
            states: self.keep_states.then(|| Arc::from(states)),
        }
    }

    /// Emits the parent's merged result if it differs from the last one emitted.
    fn emit_parent(
        &mut self,
        at: &(Key, EventTime),
        kind: EmissionKind,
        out: &mut Vec<Emission>,
    ) -> Result<()> {
        let Some(p) = self.parents.get(at) else {
            return Ok(());
        };
        let (states, checksum) = self.merged(
            p.children
                .values()
                .map(|c| (c.states.as_slice(), c.checksum)),
        )?;
        if p.emitted == Some(checksum) {
            return Ok(());
        }
        let version = p.version.saturating_add(1);
        let em = self.emission(&at.0, p.window, version, kind, states, checksum);
        if let Some(p) = self.parents.get_mut(at) {
            p.version = version;
            p.emitted = Some(checksum);
        }
        out.push(em);
        Ok(())
    }

    /// The input's watermark reached `wm`: parents ending by then close, parents past
    /// their allowed lateness leave memory.
    fn observe(&mut self, wm: Watermark, out: &mut Vec<Emission>) -> Result<()> {
        if wm <= self.observed {
            return Ok(());
        }
        self.observed = wm;
        while let Some(first) = self.open.first() {
            if first.0 > wm.0 {
                break;
            }
            let Some((end, key, start)) = self.open.pop_first() else {
                break;
            };
            let at = (key, start);
            self.emit_parent(&at, EmissionKind::OnTime, out)?;
            if let Some(p) = self.parents.get_mut(&at) {
                p.closed = true;
            }
            self.hot
                .insert((end.plus(self.spec.allowed_lateness), at.0, at.1));
        }
        while let Some(first) = self.hot.first() {
            if first.0 > wm.0 {
                break;
            }
            let Some((_, key, start)) = self.hot.pop_first() else {
                break;
            };
            self.parents.remove(&(key, start));
        }
        Ok(())
    }

    /// One result of the input.
    fn apply(
        &mut self,
        em: &Emission,
        report: &mut StepReport,
        out: &mut Vec<Emission>,
    ) -> Result<()> {
        let Some(states) = &em.states else {
            return Err(Error::Internal(format!(
                "rollup `{}`: a result of `{}` carries no aggregate states",
                self.spec.name, self.spec.input
            )));
        };
        let parent = self.parent_of(em.window)?;
        let at = (em.key.clone(), parent.start);
        let child = Child {
            states: states.to_vec(),
            checksum: em.checksum,
        };
        if let Some(p) = self.parents.get_mut(&at) {
            p.children.insert(em.window.start, child);
            if p.closed {
                self.emit_parent(&at, EmissionKind::Late, out)?;
            }
            return Ok(());
        }
        let wm = self.observed;
        if parent.end.plus(self.spec.allowed_lateness) <= wm.0 {
            // Gone from memory: merged again from the input's stored results.
            report.cold.push(ColdRequest {
                input: 0,
                key: em.key.clone(),
                window: parent,
            });
            return Ok(());
        }
        let closed = parent.end <= wm.0;
        let mut children = BTreeMap::new();
        children.insert(em.window.start, child);
        self.parents.insert(
            at.clone(),
            Parent {
                window: parent,
                children,
                version: 0,
                closed,
                emitted: None,
            },
        );
        if closed {
            self.hot.insert((
                parent.end.plus(self.spec.allowed_lateness),
                at.0.clone(),
                at.1,
            ));
            self.emit_parent(&at, EmissionKind::Late, out)?;
        } else {
            self.open.insert((parent.end, at.0, at.1));
        }
        Ok(())
    }
}

impl Operator for Rollup {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &Arc<str> {
        &self.spec.name
    }
    fn kind(&self) -> &'static str {
        "rollup"
    }
    fn inputs(&self) -> &[Source] {
        &self.inputs
    }
    fn watermark(&self) -> Watermark {
        self.observed
    }
    fn now(&self) -> ProcessingTime {
        self.now
    }
    fn is_finished(&self) -> bool {
        self.observed == Watermark(EventTime::MAX)
    }
    fn advance(&mut self, now: ProcessingTime, _out: &mut Vec<Emission>) {
        self.now = self.now.max(now);
    }
    fn finish(&mut self, out: &mut Vec<Emission>) {
        // Cannot fail for parents built from valid results; an error here would be a
        // bug already reported when the results came in.
        let _ = self.observe(Watermark(EventTime::MAX), out);
    }

    fn ingest_events(
        &mut self,
        _input: usize,
        _partition: PartitionId,
        _events: &[Event],
        _out: &mut Vec<Emission>,
        _report: &mut StepReport,
    ) {
        debug_assert!(
            false,
            "rollup `{}` reads results, not events",
            self.spec.name
        );
    }

    fn ingest_results(
        &mut self,
        _input: usize,
        results: &[Emission],
        watermark: Watermark,
        out: &mut Vec<Emission>,
        report: &mut StepReport,
    ) -> Result<()> {
        for em in results {
            match em.kind {
                // An open child's early result: its on-time one follows.
                EmissionKind::Early => continue,
                // A correction was made at the input's watermark before the event that
                // caused it; parents that closed by then are closed first.
                EmissionKind::Late | EmissionKind::Recomputed => self.observe(em.watermark, out)?,
                _ => {}
            }
            self.apply(em, report, out)?;
        }
        self.observe(watermark, out)
    }

    fn recompute(
        &mut self,
        key: &Key,
        window: Window,
        prior: Option<Prior>,
        data: ColdData<'_>,
    ) -> Result<Option<Emission>> {
        let ColdData::Results(results) = data else {
            return Err(Error::Internal(format!(
                "rollup `{}` recomputes from results, not events",
                self.spec.name
            )));
        };
        if self.parents.contains_key(&(key.clone(), window.start)) {
            return Err(Error::Internal(format!(
                "recompute of {window} of `{key}` while rollup `{}` holds it",
                self.spec.name
            )));
        }
        let mut children = Vec::with_capacity(results.len());
        for r in results {
            if &r.key != key || r.window.start < window.start || r.window.end > window.end {
                continue;
            }
            let Some(states) = &r.states else {
                return Err(Error::Internal(format!(
                    "rollup `{}`: the stored result {} of `{}` has no aggregate states (written before the rollup existed?); `reckon repair` restates it",
                    self.spec.name, r.window, self.spec.input
                )));
            };
            children.push((&states[..], r.checksum));
        }
        let (states, checksum) = self.merged(children)?;
        if prior.is_some_and(|p| p.checksum == checksum) {
            return Ok(None);
        }
        let version = prior.map_or(0, |p| p.version.0).saturating_add(1);
        Ok(Some(self.emission(
            key,
            window,
            version,
            EmissionKind::Recomputed,
            states,
            checksum,
        )))
    }

    fn resync(
        &mut self,
        latest: &mut dyn FnMut(&Key, Window) -> Result<Option<Prior>>,
        out: &mut Vec<Emission>,
    ) -> Result<()> {
        let closed: Vec<(Key, EventTime)> = self
            .parents
            .iter()
            .filter(|(_, p)| p.closed)
            .map(|(at, _)| at.clone())
            .collect();
        for at in closed {
            let Some(p) = self.parents.get_mut(&at) else {
                continue;
            };
            let prior = latest(&at.0, p.window)?;
            p.version = prior.map_or(0, |x| x.version.0);
            p.emitted = prior.map(|x| x.checksum);
            self.emit_parent(&at, EmissionKind::Recomputed, out)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        snapshot::encode(
            ROLLUP_MAGIC,
            ROLLUP_FORMAT,
            &StateRef {
                spec: spec_fingerprint(&self.spec)?,
                observed: self.observed,
                now: self.now,
                parents: &self.parents,
            },
        )
    }

    fn retention_horizon(&self, _input: usize) -> Option<EventTime> {
        None
    }

    fn keep_states(&mut self) {
        self.keep_states = true;
    }
}
