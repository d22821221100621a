//! Alert rules on another operator's windows, evaluated in event time (seed 004's
//! triggers): they fire late and retract when corrections say so.
//!
//! A rule reads one operator's results (`input`). For every series, each input window
//! (its newest version; early previews are ignored) holds the `condition` or not. A
//! window missing from the input (no data) does not hold.
//!
//! - **Firing:** an **episode** starts at the `for`-th consecutive holding window
//!   (consecutive: each starts where the previous ends). It goes on through every
//!   holding window after it that is consecutive or starts before the episode's
//!   `resolve_at`, which is the end of its last holding window plus `keep_firing_for`.
//! - **Resolving:** the episode is resolved once the input's watermark reaches
//!   `resolve_at`; until then it is firing.
//! - **Corrections:** a new version of any input window re-evaluates its series, and the
//!   episodes are compared with what was emitted. An episode keyed by its first window's
//!   start (`fired_at`) is emitted as a new version when its state or resolution time
//!   changed: kind `firing`, `resolved`, or `retracted` when a correction took it away.
//!   An episode first found after its firing window had already closed is `late`, and its
//!   emission's `emitted_at` is when it was detected.
//!
//! The final alert timeline (the newest version of every episode, retracted ones left
//! out) equals a batch evaluation of the rule over the input's final results, whatever
//! the order and grouping the results arrived in (`tests/alert_oracle.rs`). Every
//! retraction follows a firing of the same episode. See `docs/alerts.md`.

use super::{ColdData, Operator, Source, StepReport};
use crate::checksum::Checksum;
use crate::emission::{Emission, EmissionKind, Version};
use crate::error::{Error, Result};
use crate::event::{Event, Key, Value};
use crate::expr::Expr;
use crate::pipeline::Prior;
use crate::snapshot;
use crate::time::{EventTime, ProcessingTime, Span};
use crate::watermark::{PartitionId, Watermark};
use crate::window::Window;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Magic bytes of an alert rule's snapshot.
pub const ALERT_MAGIC: &[u8; 8] = b"RKNALRT\0";
/// The alert snapshot format this build writes and the newest it reads.
pub const ALERT_FORMAT: u16 = 1;

/// The values of an alert's emissions, in order.
pub const ALERT_COLUMNS: [&str; 5] = ["state", "resolved_at", "late", "value", "input_count"];

/// What an alert rule computes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AlertSpec {
    /// The rule's name (its episodes are stored under it).
    pub name: Arc<str>,
    /// The operator whose windows it watches.
    pub input: Arc<str>,
    /// A filter expression over an input window's values (by column name) and `count`.
    pub condition: String,
    /// Consecutive holding windows before it fires (at least 1).
    pub for_windows: u32,
    /// How long it keeps firing after the last holding window ends (event time).
    pub keep_firing_for: Span,
    /// Input windows older than the input watermark minus this are forgotten; their
    /// episodes are final.
    pub retention: Span,
}

/// What an alert emission says of its episode.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum AlertState {
    /// Firing (not yet resolved).
    Firing,
    /// Over: the input watermark passed `resolved_at`.
    Resolved,
    /// Taken back: corrected input windows no longer make it fire.
    Retracted,
}

impl AlertState {
    /// As people read it.
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Retracted => "retracted",
        }
    }

    fn kind(self) -> EmissionKind {
        match self {
            AlertState::Firing => EmissionKind::Firing,
            AlertState::Resolved => EmissionKind::Resolved,
            AlertState::Retracted => EmissionKind::Retracted,
        }
    }
}

/// An input window as the rule needs it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
struct Win {
    end: EventTime,
    holds: bool,
    value: Option<Value>,
    count: u64,
}

/// What was last emitted of an episode.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
struct Sent {
    version: u32,
    state: AlertState,
    resolved_at: Option<EventTime>,
    fire_end: EventTime,
    late: bool,
    value: Option<Value>,
    count: u64,
}

#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
struct Series {
    windows: BTreeMap<EventTime, Win>,
    sent: BTreeMap<EventTime, Sent>,
}

/// One episode of the current evaluation.
#[derive(Clone, PartialEq, Debug)]
struct Episode {
    fired_at: EventTime,
    fire_end: EventTime,
    resolve_at: EventTime,
}

/// The episodes of one series: `windows` in start order (see the module docs).
fn episodes(windows: &BTreeMap<EventTime, Win>, for_windows: u32, keep: Span) -> Vec<Episode> {
    let mut out = Vec::new();
    let mut current: Option<Episode> = None;
    let mut run = 0u32;
    let mut run_end: Option<EventTime> = None;
    for (&start, w) in windows {
        if !w.holds {
            continue;
        }
        let consecutive = run_end == Some(start);
        run = if consecutive {
            run.saturating_add(1)
        } else {
            1
        };
        run_end = Some(w.end);
        if let Some(ep) = current.as_mut() {
            if consecutive || start < ep.resolve_at {
                ep.resolve_at = ep.resolve_at.max(w.end.plus(keep));
                continue;
            }
            out.extend(current.take());
        }
        if run >= for_windows {
            current = Some(Episode {
                fired_at: start,
                fire_end: w.end,
                resolve_at: w.end.plus(keep),
            });
        }
    }
    out.extend(current);
    out
}

/// An alert rule (see the module docs).
#[derive(Debug)]
pub struct AlertRule {
    spec: AlertSpec,
    condition: Expr,
    value_field: Option<Arc<str>>,
    inputs: [Source; 1],
    columns: Arc<[Arc<str>]>,
    series: BTreeMap<Key, Series>,
    watermark: Watermark,
    now: ProcessingTime,
    finished: bool,
}

#[derive(Serialize)]
struct StateRef<'a> {
    spec: &'a AlertSpec,
    series: &'a BTreeMap<Key, Series>,
    watermark: Watermark,
    now: ProcessingTime,
    finished: bool,
}

#[derive(Deserialize)]
struct State {
    spec: AlertSpec,
    series: BTreeMap<Key, Series>,
    watermark: Watermark,
    now: ProcessingTime,
    finished: bool,
}

impl AlertRule {
    /// A rule from its spec, restored from `snapshot` when there is one.
    pub fn new(spec: AlertSpec, snapshot: Option<&[u8]>) -> Result<AlertRule> {
        let bad = |m: String| Error::InvalidSpec(format!("alert `{}`: {m}", spec.name));
        let condition = Expr::parse_filter(&spec.condition)
            .map_err(|e| bad(format!("condition: {e}\n{}", e.render(&spec.condition))))?;
        if spec.for_windows == 0 {
            return Err(bad("`for` must be at least 1 window".into()));
        }
        if spec.keep_firing_for.0 < 0 || spec.retention.0 < 0 {
            return Err(bad(
                "keep_firing_for and retention must not be negative".into()
            ));
        }
        let value_field = condition.fields().first().map(|f| Arc::from(&**f));
        let mut rule = AlertRule {
            inputs: [Source::Operator(spec.input.clone())],
            columns: ALERT_COLUMNS.iter().map(|c| Arc::from(*c)).collect(),
            condition,
            value_field,
            spec,
            series: BTreeMap::new(),
            watermark: Watermark::MIN,
            now: ProcessingTime::MIN,
            finished: false,
        };
        if let Some(bytes) = snapshot {
            let s: State = snapshot::decode(bytes, ALERT_MAGIC, ALERT_FORMAT, "alert snapshot")?;
            if s.spec != rule.spec {
                return Err(Error::Snapshot(format!(
                    "the snapshot was taken with a different definition of alert `{}`",
                    rule.spec.name
                )));
            }
            rule.series = s.series;
            rule.watermark = s.watermark;
            rule.now = s.now;
            rule.finished = s.finished;
        }
        Ok(rule)
    }

    /// The rule's spec.
    pub fn spec(&self) -> &AlertSpec {
        &self.spec
    }

    /// Whether an input window holds the condition: its values by column name, and
    /// `count`, as the fields of an event.
    fn holds(&self, e: &Emission) -> (bool, Option<Value>) {
        let mut fields: Vec<(Arc<str>, Value)> = e
            .columns
            .iter()
            .zip(&e.values)
            .filter_map(|(c, v)| Some((c.clone(), v.clone()?)))
            .collect();
        if !e.columns.iter().any(|c| &**c == "count") {
            fields.push((Arc::from("count"), Value::I64(e.count as i64)));
        }
        let probe = Event {
            stream: e.pipeline.clone(),
            key: e.key.clone(),
            time: e.window.start,
            id: None,
            fields,
        };
        let value = self
            .value_field
            .as_ref()
            .and_then(|f| probe.fields.iter().find(|(n, _)| n == f))
            .map(|(_, v)| v.clone());
        (self.condition.eval_filter(&probe), value)
    }

    fn emission(&self, key: &Key, fired_at: EventTime, s: &Sent) -> Emission {
        let values = vec![
            Some(Value::Str(Arc::from(s.state.name()))),
            s.resolved_at.map(|t| Value::Str(Arc::from(t.to_string()))),
            Some(Value::Bool(s.late)),
            s.value.clone(),
            Some(Value::I64(s.count as i64)),
        ];
        Emission {
            pipeline: self.spec.name.clone(),
            key: key.clone(),
            window: Window {
                start: fired_at,
                end: s.fire_end,
            },
            version: Version(s.version),
            kind: s.state.kind(),
            columns: self.columns.clone(),
            values,
            count: s.count,
            checksum: fingerprint(s),
            emitted_at: self.now,
            watermark: self.watermark,
            states: None,
        }
    }

    /// Re-evaluates `key` and emits what changed. `before` is the input watermark
    /// before the results being applied: an episode whose firing window had closed by
    /// then is found late.
    fn evaluate(&mut self, key: &Key, before: Watermark, out: &mut Vec<Emission>) {
        let horizon = self.horizon();
        let Some(series) = self.series.get(key) else {
            return;
        };
        let found = episodes(
            &series.windows,
            self.spec.for_windows,
            self.spec.keep_firing_for,
        );
        let mut changes: Vec<(EventTime, Sent)> = Vec::new();
        let mut live = BTreeSet::new();
        for ep in &found {
            live.insert(ep.fired_at);
            let resolved = self.watermark.0 >= ep.resolve_at;
            let state = if resolved {
                AlertState::Resolved
            } else {
                AlertState::Firing
            };
            let resolved_at = resolved.then_some(ep.resolve_at);
            let w = series.windows.get(&ep.fired_at);
            let (value, count) = w.map_or((None, 0), |w| (w.value.clone(), w.count));
            match series.sent.get(&ep.fired_at) {
                Some(s)
                    if s.state != AlertState::Retracted
                        && s.state == state
                        && s.resolved_at == resolved_at =>
                {
                    continue;
                }
                Some(s) if s.state != AlertState::Retracted => {
                    let mut next = s.clone();
                    next.version += 1;
                    next.state = state;
                    next.resolved_at = resolved_at;
                    changes.push((ep.fired_at, next));
                }
                prior => {
                    // New, or back after a retraction: it fires (and, if over already,
                    // resolves at once).
                    let late = before.0 >= ep.fire_end;
                    let mut next = Sent {
                        version: prior.map_or(0, |p| p.version) + 1,
                        state: AlertState::Firing,
                        resolved_at: None,
                        fire_end: ep.fire_end,
                        late,
                        value,
                        count,
                    };
                    changes.push((ep.fired_at, next.clone()));
                    if resolved {
                        next.version += 1;
                        next.state = AlertState::Resolved;
                        next.resolved_at = resolved_at;
                        changes.push((ep.fired_at, next));
                    }
                }
            }
        }
        for (at, s) in &series.sent {
            if s.state != AlertState::Retracted && !live.contains(at) && *at >= horizon {
                let mut next = s.clone();
                next.version += 1;
                next.state = AlertState::Retracted;
                next.resolved_at = None;
                changes.push((*at, next));
            }
        }
        for (at, s) in changes {
            out.push(self.emission(key, at, &s));
            if let Some(series) = self.series.get_mut(key) {
                series.sent.insert(at, s);
            }
        }
    }

    /// Input windows starting before this are forgotten.
    fn horizon(&self) -> EventTime {
        self.watermark.0.minus(self.spec.retention)
    }

    fn prune(&mut self) {
        let horizon = self.horizon();
        self.series.retain(|_, s| {
            s.windows = s.windows.split_off(&horizon);
            s.sent = s.sent.split_off(&horizon);
            !(s.windows.is_empty() && s.sent.is_empty())
        });
    }

    /// Series with a firing episode: the watermark alone may resolve them.
    fn firing(&self) -> Vec<Key> {
        self.series
            .iter()
            .filter(|(_, s)| s.sent.values().any(|x| x.state == AlertState::Firing))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The checksum slot of an alert emission fingerprints the episode's place on the
/// timeline, so that a restart can tell a stored version from the one it would emit:
/// `count` is the state (1 firing, 2 resolved, 3 retracted), `hash` its end. What the
/// rule knew when it found the episode (`late`, `value`, `input_count`) is left out: a
/// replay that groups the input differently finds the same episode with other
/// intermediate values, and must not restate it for that.
fn fingerprint(s: &Sent) -> Checksum {
    let resolved = s.resolved_at.map_or(0, |t| t.0 as u64);
    Checksum {
        count: state_code(s.state),
        hash: resolved.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    }
}

fn state_code(s: AlertState) -> u64 {
    match s {
        AlertState::Firing => 1,
        AlertState::Resolved => 2,
        AlertState::Retracted => 3,
    }
}

fn state_of(code: u64) -> Option<AlertState> {
    match code {
        1 => Some(AlertState::Firing),
        2 => Some(AlertState::Resolved),
        3 => Some(AlertState::Retracted),
        _ => None,
    }
}

impl Operator for AlertRule {
    fn name(&self) -> &Arc<str> {
        &self.spec.name
    }

    fn kind(&self) -> &'static str {
        "alert"
    }

    fn inputs(&self) -> &[Source] {
        &self.inputs
    }

    fn watermark(&self) -> Watermark {
        self.watermark
    }

    fn now(&self) -> ProcessingTime {
        self.now
    }

    fn is_finished(&self) -> bool {
        self.finished
    }

    fn advance(&mut self, now: ProcessingTime, _out: &mut Vec<Emission>) {
        self.now = self.now.max(now);
    }

    fn finish(&mut self, out: &mut Vec<Emission>) {
        let before = self.watermark;
        self.watermark = Watermark(EventTime::MAX);
        self.finished = true;
        for key in self.firing() {
            self.evaluate(&key, before, out);
        }
    }

    fn ingest_events(
        &mut self,
        _input: usize,
        _partition: PartitionId,
        _events: &[Event],
        _out: &mut Vec<Emission>,
        _report: &mut StepReport,
    ) {
    }

    fn ingest_results(
        &mut self,
        _input: usize,
        results: &[Emission],
        watermark: Watermark,
        out: &mut Vec<Emission>,
        _report: &mut StepReport,
    ) -> Result<()> {
        let before = self.watermark;
        let horizon = self.horizon();
        let mut dirty: BTreeSet<Key> = BTreeSet::new();
        for e in results {
            if e.kind == EmissionKind::Early || e.window.start < horizon {
                continue;
            }
            let (holds, value) = self.holds(e);
            let w = Win {
                end: e.window.end,
                holds,
                value,
                count: e.count,
            };
            let series = self.series.entry(e.key.clone()).or_default();
            if series.windows.get(&e.window.start) != Some(&w) {
                series.windows.insert(e.window.start, w);
                dirty.insert(e.key.clone());
            }
        }
        if watermark > self.watermark {
            self.watermark = watermark;
            dirty.extend(self.firing());
        }
        for key in &dirty {
            self.evaluate(key, before, out);
        }
        self.prune();
        Ok(())
    }

    fn recompute(
        &mut self,
        _key: &Key,
        _window: Window,
        _prior: Option<Prior>,
        _data: ColdData<'_>,
    ) -> Result<Option<Emission>> {
        Ok(None)
    }

    fn resync(
        &mut self,
        latest: &mut dyn FnMut(&Key, Window) -> Result<Option<Prior>>,
        out: &mut Vec<Emission>,
    ) -> Result<()> {
        // A replay can group the input's results differently and emit other versions
        // than the first run stored, or none of an episode the first run stored (fired
        // and retracted between two of the replay's batches). Every episode stored at
        // an input window this rule holds is compared: the rule continues from the
        // stored version, and emits its own state where the stored one differs.
        let mut changes = Vec::new();
        let mut kept = Vec::new();
        let mut adopted: Vec<Key> = Vec::new();
        for (key, series) in &mut self.series {
            let starts: Vec<(EventTime, EventTime)> = series
                .windows
                .iter()
                .map(|(s, w)| (*s, w.end))
                .filter(|(s, _)| !series.sent.contains_key(s))
                .collect();
            let mut taken = BTreeSet::new();
            for (start, end) in starts {
                let Some(p) = latest(key, Window { start, end })? else {
                    continue;
                };
                let Some(state) = state_of(p.checksum.count) else {
                    continue;
                };
                series.sent.insert(
                    start,
                    Sent {
                        version: p.version.0,
                        state,
                        resolved_at: None,
                        fire_end: end,
                        late: false,
                        value: None,
                        count: 0,
                    },
                );
                adopted.push(key.clone());
                taken.insert(start);
            }
            for (at, s) in &series.sent {
                if taken.contains(at) {
                    continue;
                }
                let window = Window {
                    start: *at,
                    end: s.fire_end,
                };
                let prior = latest(key, window)?;
                match prior {
                    // The same episode as stored: the rule continues from its version.
                    Some(p) if p.checksum == fingerprint(s) => {
                        kept.push((key.clone(), *at, p.version.0));
                    }
                    _ => {
                        let mut next = s.clone();
                        next.version = prior.map_or(0, |p| p.version.0).max(s.version) + 1;
                        changes.push((key.clone(), *at, next));
                    }
                }
            }
        }
        for (key, at, version) in kept {
            if let Some(s) = self.series.get_mut(&key).and_then(|x| x.sent.get_mut(&at)) {
                s.version = version;
            }
        }
        for (key, at, s) in changes {
            out.push(self.emission(&key, at, &s));
            if let Some(series) = self.series.get_mut(&key) {
                series.sent.insert(at, s);
            }
        }
        // What was adopted from the store is brought to this rule's evaluation.
        adopted.dedup();
        let now = self.watermark;
        for key in adopted {
            self.evaluate(&key, now, out);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        snapshot::encode(
            ALERT_MAGIC,
            ALERT_FORMAT,
            &StateRef {
                spec: &self.spec,
                series: &self.series,
                watermark: self.watermark,
                now: self.now,
                finished: self.finished,
            },
        )
    }

    fn retention_horizon(&self, _input: usize) -> Option<EventTime> {
        None
    }

    fn keep_states(&mut self) {}

    fn gauges(&self) -> Vec<(&'static str, f64)> {
        let firing = self
            .series
            .values()
            .flat_map(|s| s.sent.values())
            .filter(|s| s.state == AlertState::Firing)
            .count();
        vec![("reckon_alerts_firing", firing as f64)]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const M: i64 = 60_000_000_000;

    fn spec(for_windows: u32, keep_minutes: i64) -> AlertSpec {
        AlertSpec {
            name: Arc::from("hot"),
            input: Arc::from("rate"),
            condition: "above >= 10".into(),
            for_windows,
            keep_firing_for: Span(keep_minutes * M),
            retention: Span(7 * 24 * 60 * M),
        }
    }

    fn window(key: &str, minute: i64, above: i64, version: u32, kind: EmissionKind) -> Emission {
        Emission {
            pipeline: Arc::from("rate"),
            key: Key::from_tags([("s", key)]).unwrap(),
            window: Window {
                start: EventTime(minute * M),
                end: EventTime((minute + 5) * M),
            },
            version: Version(version),
            kind,
            columns: Arc::from(vec![Arc::from("above")]),
            values: vec![Some(Value::I64(above))],
            count: above as u64,
            checksum: Checksum::default(),
            emitted_at: ProcessingTime(0),
            watermark: Watermark::MIN,
            states: None,
        }
    }

    fn feed(
        rule: &mut AlertRule,
        results: &[Emission],
        watermark_min: i64,
    ) -> Vec<(i64, &'static str, bool, Option<i64>)> {
        let mut out = Vec::new();
        rule.ingest_results(
            0,
            results,
            Watermark(EventTime(watermark_min * M)),
            &mut out,
            &mut StepReport::default(),
        )
        .unwrap();
        out.iter()
            .map(|e| {
                let late = e.value("late") == Some(&Value::Bool(true));
                let resolved = match e.value("resolved_at") {
                    // Minutes of 1970-01-01 (`1970-01-01THH:MM:00Z`).
                    Some(Value::Str(t)) => Some(
                        t[11..13].parse::<i64>().unwrap() * 60 + t[14..16].parse::<i64>().unwrap(),
                    ),
                    _ => None,
                };
                (
                    e.window.start.0 / M,
                    AlertState::name(match e.kind {
                        EmissionKind::Firing => AlertState::Firing,
                        EmissionKind::Resolved => AlertState::Resolved,
                        _ => AlertState::Retracted,
                    }),
                    late,
                    resolved,
                )
            })
            .collect()
    }

    #[test]
    fn fires_after_for_windows_resolves_when_the_watermark_passes_and_keeps_firing() {
        let mut r = AlertRule::new(spec(2, 5), None).unwrap();
        let on = EmissionKind::OnTime;
        // 0:00 holds, 0:05 holds -> fires at 0:05; 0:10 does not hold.
        assert_eq!(feed(&mut r, &[window("a", 0, 12, 1, on)], 5), []);
        assert_eq!(
            feed(&mut r, &[window("a", 5, 15, 1, on)], 10),
            [(5, "firing", false, None)]
        );
        // Kept firing until 0:15 (0:10 end + 5m): not resolved at 0:14.
        assert_eq!(feed(&mut r, &[window("a", 10, 1, 1, on)], 14), []);
        assert_eq!(feed(&mut r, &[], 15), [(5, "resolved", false, Some(15))]);
    }

    #[test]
    fn a_correction_fires_late_and_another_retracts() {
        let mut r = AlertRule::new(spec(1, 0), None).unwrap();
        let on = EmissionKind::OnTime;
        assert_eq!(feed(&mut r, &[window("a", 0, 3, 1, on)], 5), []);
        // A late correction at 0:30 brings the closed 0:00 window over the threshold:
        // it fires late, and is over at once (the watermark is past it).
        let late = feed(&mut r, &[window("a", 0, 11, 2, EmissionKind::Late)], 30);
        assert_eq!(
            late,
            [(0, "firing", true, None), (0, "resolved", true, Some(5))]
        );
        // Another correction takes it back below: retracted.
        let back = feed(&mut r, &[window("a", 0, 9, 3, EmissionKind::Late)], 30);
        assert_eq!(back, [(0, "retracted", true, None)]);
        // Early previews never count.
        assert_eq!(
            feed(&mut r, &[window("a", 30, 50, 1, EmissionKind::Early)], 30),
            []
        );
    }

    #[test]
    fn a_gap_in_the_input_breaks_for_and_keep_firing_for_bridges_it() {
        // for = 2: holding 0:00 and 0:10 (no 0:05 window) is not two in a row.
        let mut r = AlertRule::new(spec(2, 0), None).unwrap();
        let on = EmissionKind::OnTime;
        let got = feed(
            &mut r,
            &[window("a", 0, 12, 1, on), window("a", 10, 12, 1, on)],
            20,
        );
        assert_eq!(got, []);
        // keep_firing_for 10m: a holding window starting inside it extends the episode.
        let mut r = AlertRule::new(spec(1, 10), None).unwrap();
        let got = feed(
            &mut r,
            &[window("a", 0, 12, 1, on), window("a", 10, 12, 1, on)],
            20,
        );
        assert_eq!(got, [(0, "firing", false, None)]);
        assert_eq!(feed(&mut r, &[], 25), [(0, "resolved", false, Some(25))]);
    }

    #[test]
    fn a_snapshot_restores_the_timeline_and_a_different_rule_is_refused() {
        let mut r = AlertRule::new(spec(1, 0), None).unwrap();
        feed(&mut r, &[window("a", 0, 12, 1, EmissionKind::OnTime)], 1);
        let bytes = r.snapshot().unwrap();
        let mut back = AlertRule::new(spec(1, 0), Some(&bytes)).unwrap();
        assert_eq!(feed(&mut back, &[], 5), [(0, "resolved", false, Some(5))]);
        let e = AlertRule::new(spec(2, 0), Some(&bytes)).unwrap_err();
        assert!(e.to_string().contains("different definition"), "{e}");
    }
}
