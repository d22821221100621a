//! Running totals (seed 003): per key, the cumulative sum of a value in event-time
//! order, optionally reset at a local time of day and optionally clamped at zero.
//!
//! The value of key `k` at event time `t` is the sum of `k`'s values with a time `≤ t`
//! since the last reset at or before `t` (or since the beginning without a reset). A
//! late event changes every later value; reckon stores one thing for it, not one per
//! later value:
//!
//! - Each key's events fall into **buckets** (`bucket`, e.g. 1 minute) whose sum is an
//!   ordinary versioned window: `delta`, the sum of the bucket's values, with `count`
//!   and `checksum`. A bucket is emitted (`on_time`) once the watermark passes its end,
//!   and a late event re-emits its one bucket (`late`): "from the bucket's start on,
//!   every total changes by the new `delta` minus the old one, until the next reset".
//!   A late event costs O(log n) whatever the number of later buckets.
//! - The totals themselves come from a sparse segment tree of the bucket sums
//!   ([`RunningTotal::value_at`]: O(log n) for the buckets, plus the events of the one
//!   bucket `t` falls in), exact for integers and for floats alike (the sums are the
//!   order-independent [`SumState`]).
//! - **Clamped at zero** (`clamp`, occupancy is never negative), a total is
//!   `max(0, previous + the values at one time)`, applied in event-time order (values
//!   with the same time are applied together, so their order does not matter). That is
//!   not linear: a late event changes later totals by different amounts, so a clamped
//!   total's buckets also carry `total` (the total at the bucket's end), and a late
//!   event recomputes from its bucket to the next reset (stopping early where the
//!   totals meet the old ones again) and re-emits every emitted bucket whose `total`
//!   changed.
//!
//! Every event inside `retention` (behind the watermark) is kept in memory with its
//! bucket, so no late event needs the raw log; an event older than that is a dead
//! letter (`beyond_retention`), and so is a value that is not a number (`invalid`).

mod tree;

use super::{ColdData, DeadEvent, Operator, StepReport};
use crate::aggregate::SumState;
use crate::checksum::Checksum;
use crate::emission::{Emission, EmissionKind, Version};
use crate::error::{Error, Result};
use crate::event::{Event, Key, Value};
use crate::expr::{Expr, Type};
use crate::pipeline::Prior;
use crate::time::{EventTime, ProcessingTime, Span};
use crate::watermark::{PartitionId, Watermark, WatermarkTracker};
use crate::window::{Tz, Window};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tree::SumTree;

/// Magic bytes of a running total's snapshot.
pub const RUNNING_MAGIC: &[u8; 8] = b"RKNRUNT\0";
/// The snapshot format this build writes and the newest it reads.
pub const RUNNING_FORMAT: u16 = 1;

/// The daily reset of a running total: at a local time of day in a time zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Reset {
    /// Seconds after local midnight.
    pub at: u32,
    /// The zone whose clock it follows (DST included: the reset is at that local time
    /// every day, 23 or 25 hours apart across a change; a time a spring-forward gap
    /// skips resets at the first instant after the gap).
    pub tz: Tz,
}

/// What a running total computes.
#[derive(Clone, Debug)]
pub struct RunningSpec {
    /// Its name (its buckets are stored and queried under it).
    pub name: Arc<str>,
    /// Width of a bucket (event time).
    pub bucket: Span,
    /// The value each event adds (an expression of its fields); `None`: each event
    /// counts 1.
    pub value: Option<Expr>,
    /// The daily reset, if any.
    pub reset: Option<Reset>,
    /// Never below zero.
    pub clamp: bool,
    /// A gauge: each event is a reading, and the value at `t` is the last reading at or
    /// before `t` (by time, then digest), not a sum.
    pub gauge: bool,
    /// Bounded out-of-orderness of the watermark.
    pub out_of_orderness: Span,
    /// Silence after which a partition stops holding the watermark back.
    pub idle_timeout: Option<Span>,
    /// How long events are kept behind the watermark (and late events accepted).
    pub retention: Span,
    /// Time-valid mapping of the events' keys to the keys totals are kept by, if any.
    pub mapping: Option<Mapping>,
}

/// A time-valid mapping (seed 003's `dpu_location`): rows of a second stream, keyed like
/// the events (a sensor), each valid from its event time until the next row of the same
/// key. An event takes the row valid at its time: its total's key is made of the row's
/// `key_fields`, and `value` reads the event's fields and the row's (the event's win
/// where both have one). A row that arrives for a time in the past moves exactly the
/// events it now covers, from the totals of the key they had to those of the key they
/// have now.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    /// The stream of mapping rows (input 1).
    pub stream: Arc<str>,
    /// The row fields (or tags) that make a total's key, e.g. `["space"]`.
    pub key_fields: Vec<String>,
}

/// The 15 minutes every time zone's offset is a multiple of (today's zones): a bucket
/// that divides it starts at every local reset time that is a multiple of it.
const QUARTER_HOUR: i64 = 15 * 60 * 1_000_000_000;

impl RunningSpec {
    /// A running total of `bucket`-wide buckets counting every event (set `value`,
    /// `reset`, `clamp` and the rest on the result, then [`RunningSpec::validate`]).
    pub fn new(name: &str, bucket: Span) -> RunningSpec {
        RunningSpec {
            name: Arc::from(name),
            bucket,
            value: None,
            reset: None,
            clamp: false,
            gauge: false,
            out_of_orderness: Span(0),
            idle_timeout: None,
            retention: Span::days(7),
            mapping: None,
        }
    }

    /// Checks the settings together; the message names the one at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| {
            Err(Error::InvalidSpec(format!(
                "running total `{}`: {m}",
                self.name
            )))
        };
        if self.bucket.0 <= 0 {
            return bad(format!("bucket must be positive, got {}", self.bucket));
        }
        if self.out_of_orderness.0 < 0 {
            return bad("out_of_orderness must not be negative".into());
        }
        if self.retention.0 < self.bucket.0 {
            return bad(format!(
                "retention ({}) must be at least one bucket ({})",
                self.retention, self.bucket
            ));
        }
        if self.gauge && (self.clamp || self.reset.is_some()) {
            return bad("a gauge (the last reading) has no clamp and no reset".into());
        }
        if let Some(m) = &self.mapping
            && (m.key_fields.is_empty() || m.key_fields.iter().any(String::is_empty))
        {
            return bad("mapping.key_fields must name at least one field".into());
        }
        if let Some(v) = &self.value
            && !matches!(v.ty(), Type::Num | Type::Unknown)
        {
            return bad(format!("value `{}` is not a number", v.source()));
        }
        if let Some(r) = &self.reset {
            if r.at >= 86_400 {
                return bad(format!("reset.at must be a time of day, got {}s", r.at));
            }
            if QUARTER_HOUR % self.bucket.0 != 0 {
                return bad(format!(
                    "with a reset, bucket must divide 15 minutes (so every reset starts a bucket), got {}",
                    self.bucket
                ));
            }
            if (i64::from(r.at) * 1_000_000_000) % self.bucket.0 != 0 {
                return bad(format!(
                    "reset.at must be a multiple of the bucket ({}) after midnight",
                    self.bucket
                ));
            }
            if self.retention.0 < 25 * 3_600 * 1_000_000_000 {
                return bad(format!(
                    "with a daily reset, retention must be at least 25h (a day across a DST change), got {}",
                    self.retention
                ));
            }
        }
        Ok(())
    }

    /// The value columns of its buckets.
    pub fn columns(&self) -> Arc<[Arc<str>]> {
        if self.gauge {
            return vec![Arc::from("last")].into();
        }
        let mut c: Vec<Arc<str>> = vec![Arc::from("delta")];
        if self.clamp {
            c.push(Arc::from("total"));
        }
        c.into()
    }

    /// The latest reset at or before `t` (`None` without a reset).
    pub fn reset_at_or_before(
        &self,
        t: EventTime,
    ) -> std::result::Result<Option<EventTime>, String> {
        let Some(r) = &self.reset else {
            return Ok(None);
        };
        let date = zoned(t, &r.tz)?.date();
        let today = reset_on(date, r)?;
        if today <= t {
            return Ok(Some(today));
        }
        let yesterday = date.yesterday().map_err(|e| e.to_string())?;
        reset_on(yesterday, r).map(Some)
    }

    /// The first reset after `t` (`None` without a reset).
    pub fn reset_after(&self, t: EventTime) -> std::result::Result<Option<EventTime>, String> {
        let Some(r) = &self.reset else {
            return Ok(None);
        };
        let date = zoned(t, &r.tz)?.date();
        let today = reset_on(date, r)?;
        if today > t {
            return Ok(Some(today));
        }
        let tomorrow = date.tomorrow().map_err(|e| e.to_string())?;
        reset_on(tomorrow, r).map(Some)
    }

    fn fingerprint(&self) -> Result<u64> {
        #[derive(Serialize)]
        struct Canon<'a> {
            name: &'a str,
            bucket: i64,
            value: Option<String>,
            reset: Option<(u32, &'a str)>,
            clamp: bool,
            gauge: bool,
            out_of_orderness: i64,
            idle_timeout: Option<i64>,
            retention: i64,
            mapping: Option<(&'a str, &'a [String])>,
        }
        crate::snapshot::spec_fingerprint(&Canon {
            name: &self.name,
            bucket: self.bucket.0,
            value: self.value.as_ref().map(Expr::canonical),
            reset: self.reset.as_ref().map(|r| (r.at, r.tz.name())),
            clamp: self.clamp,
            gauge: self.gauge,
            out_of_orderness: self.out_of_orderness.0,
            idle_timeout: self.idle_timeout.map(|s| s.0),
            retention: self.retention.0,
            mapping: self
                .mapping
                .as_ref()
                .map(|m| (&*m.stream, &m.key_fields[..])),
        })
    }
}

fn zoned(t: EventTime, tz: &Tz) -> std::result::Result<jiff::Zoned, String> {
    jiff::Timestamp::from_nanosecond(i128::from(t.0))
        .map(|ts| ts.to_zoned(tz.zone().clone()))
        .map_err(|e| format!("time {t} is outside the calendar: {e}"))
}

/// The reset instant on a local date (a time skipped by a DST gap: the instant after
/// the gap; a time repeated by a fold: its first occurrence).
fn reset_on(date: jiff::civil::Date, r: &Reset) -> std::result::Result<EventTime, String> {
    let at = jiff::civil::Time::new(
        (r.at / 3600) as i8,
        (r.at / 60 % 60) as i8,
        (r.at % 60) as i8,
        0,
    )
    .map_err(|e| e.to_string())?;
    let z =
        r.tz.zone()
            .to_ambiguous_zoned(date.to_datetime(at))
            .compatible()
            .map_err(|e| e.to_string())?;
    i64::try_from(z.timestamp().as_nanosecond())
        .map(EventTime)
        .map_err(|_| format!("the reset on {date} is outside the supported times"))
}

/// One event of a bucket: what the totals inside the bucket need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    time: i64,
    value: Value,
    digest: u64,
    id: Option<u128>,
}

/// One bucket of one key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Bucket {
    /// Its events, by (time, digest).
    points: Vec<Point>,
    sum: SumState,
    checksum: Checksum,
    /// The version last emitted (0: never).
    version: u32,
    /// Clamped totals: the total after the bucket's last event.
    end_total: SumState,
    /// Clamped totals: the `end_total` last emitted.
    emitted_total: SumState,
    /// An event came after the watermark passed its end since it was last emitted.
    late: bool,
    /// A mapping row moved an event into it since it was last emitted.
    moved: bool,
}

/// One key's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Series {
    key: Key,
    /// Buckets inside retention, by bucket index.
    buckets: BTreeMap<i64, Bucket>,
    /// A bucket with events was dropped by retention (so every total after the
    /// horizon has data before it).
    had_dropped: bool,
    /// A gauge: the last reading of the last bucket dropped by retention.
    base_last: Option<Value>,
    /// Clamped, without a reset: the total at the end of the last bucket dropped from
    /// `buckets` (the start of every later total).
    base_total: SumState,
    /// Buckets dropped from `buckets` whose sums the tree still holds (rebuilt when
    /// they outnumber the live ones).
    dropped: u64,
    /// The bucket sums (rebuilt on restore).
    #[serde(skip)]
    tree: Option<SumTree>,
    /// The real-time counter: every accepted event added in arrival order (clamped
    /// like the total), reset when processing time passes a reset instant.
    live: SumState,
    /// The reset instant (processing time read as event time) `live` counts from.
    live_since: Option<i64>,
    /// Processing time of the last late event of the series (a correction).
    corrected_at: Option<ProcessingTime>,
}

/// A series' real-time counter next to its reconciled total ([`RunningTotal::live`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// What was shown live: every event added as it arrived, in arrival order (and
    /// reset by the clock), as a counter fed by the stream would show it.
    pub real_time: Value,
    /// The total at event time `now` over every event received so far, in event-time
    /// order (late ones where they belong).
    pub reconciled: Option<Value>,
    /// When the last late event of the series corrected its totals.
    pub corrected_at: Option<ProcessingTime>,
}

/// A mapped event as the running total holds it: the source event, and where it is
/// counted now (series and the value it added), if a row maps it and its value is a
/// number.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Source {
    event: Event,
    counted: Option<(u32, Value)>,
}

/// One mapping row: the key it maps to and its fields.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    target: Key,
    fields: Vec<(crate::event::FieldName, Value)>,
}

/// With a mapping: the source events (inside retention) and the rows, per source key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Mapped {
    sources: BTreeMap<Key, BTreeMap<(i64, u64), Source>>,
    rows: BTreeMap<Key, BTreeMap<(i64, u64), Row>>,
    /// Events moved by mapping rows that came for past times, and the series touched.
    moved: u64,
    touched: u64,
}

#[derive(Serialize)]
struct StateRef<'a> {
    spec: u64,
    watermark: &'a WatermarkTracker,
    now: ProcessingTime,
    series: &'a [Series],
    /// Without a reset: each series' sum of the buckets dropped before the tree was
    /// last rebuilt, in series order.
    bases: Vec<SumState>,
    dropped_before: i64,
    finished: bool,
    mapped: &'a Mapped,
}

#[derive(Deserialize)]
struct StateOwned {
    spec: u64,
    watermark: WatermarkTracker,
    now: ProcessingTime,
    series: Vec<Series>,
    bases: Vec<SumState>,
    dropped_before: i64,
    finished: bool,
    mapped: Mapped,
}

/// A running total over one stream (input 0), and with a mapping its rows' stream
/// (input 1).
#[derive(Debug)]
pub struct RunningTotal {
    spec: RunningSpec,
    inputs: Vec<super::Source>,
    columns: Arc<[Arc<str>]>,
    watermark: WatermarkTracker,
    now: ProcessingTime,
    series: Vec<Series>,
    index: HashMap<Key, u32>,
    /// Buckets not emitted yet, by (end, series, bucket index).
    pending: BTreeSet<(i64, u32, i64)>,
    /// Emitted buckets to emit again (scratch).
    dirty: BTreeSet<(u32, i64)>,
    /// Clamped: per series, the first and last bucket changed (scratch).
    clamp_changed: BTreeMap<u32, (i64, i64)>,
    /// Without a reset: per series, the sum of every bucket dropped by retention (the
    /// tree holds it at position 0 once rebuilt; until then, at the buckets' own).
    bases: Vec<SumState>,
    /// Buckets before this index were dropped (retention): never accepted again, even
    /// when the watermark goes back down (a partition that joins behind).
    dropped_before: i64,
    finished: bool,
    /// The mapping's sources and rows (empty without a mapping).
    mapped: Mapped,
    /// The last reset period computed (a cache, see [`RunningTotal::period_at`]).
    period: Option<(i64, i64)>,
    /// Bucket index of the earliest representable bucket, and the tree's width.
    min_bucket: i64,
    bits: u32,
}

impl RunningTotal {
    /// A new running total reading `stream`, or one restored from `snapshot` (taken
    /// with the same spec).
    pub fn new(spec: RunningSpec, stream: &str, snapshot: Option<&[u8]>) -> Result<RunningTotal> {
        spec.validate()?;
        let b = spec.bucket.0;
        let min_bucket = i64::MIN.div_euclid(b);
        let span = (i64::MAX.div_euclid(b) as i128 - min_bucket as i128) as u128;
        let bits = 128 - span.leading_zeros();
        let mut rt = RunningTotal {
            columns: spec.columns(),
            inputs: std::iter::once(Arc::from(stream))
                .chain(spec.mapping.as_ref().map(|m| m.stream.clone()))
                .map(super::Source::Stream)
                .collect(),
            watermark: WatermarkTracker::new(spec.out_of_orderness, spec.idle_timeout),
            now: ProcessingTime(i64::MIN),
            series: Vec::new(),
            index: HashMap::new(),
            pending: BTreeSet::new(),
            dirty: BTreeSet::new(),
            clamp_changed: BTreeMap::new(),
            bases: Vec::new(),
            dropped_before: i64::MIN,
            mapped: Mapped::default(),
            period: None,
            finished: false,
            min_bucket,
            bits,
            spec,
        };
        if let Some(bytes) = snapshot {
            rt.restore(bytes)?;
        }
        Ok(rt)
    }

    /// The spec.
    pub fn spec(&self) -> &RunningSpec {
        &self.spec
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let s: StateOwned = crate::snapshot::decode(
            bytes,
            RUNNING_MAGIC,
            RUNNING_FORMAT,
            "running-total snapshot",
        )?;
        if s.spec != self.spec.fingerprint()? {
            return Err(Error::Snapshot(format!(
                "the snapshot of running total `{}` was taken with another definition",
                self.spec.name
            )));
        }
        if s.bases.len() != s.series.len() {
            return Err(Error::Snapshot(
                "running-total snapshot: bases do not match series".into(),
            ));
        }
        self.watermark = s.watermark;
        self.now = s.now;
        self.finished = s.finished;
        self.dropped_before = s.dropped_before;
        self.mapped = s.mapped;
        self.bases = s.bases;
        self.series = s.series;
        for (k, series) in self.series.iter_mut().enumerate() {
            let k = k as u32;
            self.index.insert(series.key.clone(), k);
            for (&bi, b) in &series.buckets {
                if b.version == 0 {
                    self.pending
                        .insert((bucket_end(bi, self.spec.bucket.0), k, bi));
                }
            }
        }
        for k in 0..self.series.len() {
            self.rebuild_tree(k);
        }
        Ok(())
    }

    fn pos(&self, bi: i64) -> u64 {
        (bi as i128 - self.min_bucket as i128) as u64
    }

    /// Rebuilds series `k`'s tree from its live buckets (and its base, without a reset).
    fn rebuild_tree(&mut self, k: usize) {
        let mut tree = SumTree::new(self.bits);
        if self.spec.reset.is_none() {
            tree.add(0, &self.bases[k]);
        }
        for (&bi, b) in &self.series[k].buckets {
            tree.add(self.pos(bi), &b.sum);
        }
        self.series[k].tree = Some(tree);
        self.series[k].dropped = 0;
    }

    fn series_index(&mut self, key: &Key) -> usize {
        if let Some(&k) = self.index.get(key) {
            return k as usize;
        }
        let k = self.series.len();
        self.series.push(Series {
            key: key.clone(),
            buckets: BTreeMap::new(),
            had_dropped: false,
            base_last: None,
            base_total: SumState::default(),
            dropped: 0,
            tree: Some(SumTree::new(self.bits)),
            live: SumState::default(),
            live_since: None,
            corrected_at: None,
        });
        self.bases.push(SumState::default());
        self.index.insert(key.clone(), k as u32);
        k
    }

    /// The value an event adds, or why it has none.
    fn value_of(&self, e: &Event) -> std::result::Result<Value, String> {
        let Some(expr) = &self.spec.value else {
            return Ok(Value::I64(1));
        };
        match expr.eval(e) {
            Some(v @ (Value::I64(_) | Value::F64(_))) => Ok(v),
            Some(v) => Err(format!(
                "the value `{}` of running total `{}` is a {} here, not a number",
                expr.source(),
                self.spec.name,
                v.type_name()
            )),
            None => Err(format!(
                "the value `{}` of running total `{}` is null for this event (a field it reads is missing)",
                expr.source(),
                self.spec.name
            )),
        }
    }

    /// The total of `key` at event time `at`: the sum of its values at or before `at`
    /// since the last reset (clamped when the spec says so); `Ok(None)` when the key
    /// has no event at or before `at`. `at` before the retention horizon (the
    /// watermark minus `retention`) is an error: its events are no longer in memory.
    pub fn value_at(&self, key: &Key, at: EventTime) -> std::result::Result<Option<Value>, String> {
        let Some(&k) = self.index.get(key) else {
            return Ok(None);
        };
        let s = &self.series[k as usize];
        let has_data = s.had_dropped
            || s.buckets
                .values()
                .find(|b| b.checksum.count > 0)
                .and_then(|b| b.points.first())
                .is_some_and(|p| p.time <= at.0);
        if !has_data {
            return Ok(None);
        }
        let horizon = self.horizon();
        if at.0 < horizon {
            return Err(format!(
                "{at} is before the retention horizon {} of running total `{}`",
                EventTime(horizon),
                self.spec.name
            ));
        }
        let b = self.spec.bucket.0;
        let bi = at.0.div_euclid(b);
        let reset = self.spec.reset_at_or_before(at)?;
        let in_bucket = s.buckets.get(&bi).map_or(&[][..], |b| &b.points[..]);
        if self.spec.gauge {
            // The last reading at or before `at`: in its bucket, else the newest
            // earlier bucket with one, else the last one dropped by retention.
            let here = in_bucket.iter().take_while(|p| p.time <= at.0).last();
            let before = || {
                s.buckets
                    .range(..bi)
                    .rev()
                    .find_map(|(_, b)| b.points.last())
            };
            return Ok(here
                .or_else(before)
                .map(|p| p.value.clone())
                .or_else(|| s.base_last.clone()));
        }
        let total = if self.spec.clamp {
            let mut x = self.start_total(s, bi, reset);
            apply_clamped(&mut x, in_bucket.iter().take_while(|p| p.time <= at.0));
            x
        } else {
            let from = reset.map_or(0, |r| self.pos(r.0.div_euclid(b)));
            let tree = s.tree.as_ref().ok_or("running total: tree missing")?;
            let mut x = tree.range(from, self.pos(bi).saturating_sub(1));
            if self.pos(bi) == 0 {
                x = SumState::default();
            }
            for p in in_bucket.iter().take_while(|p| p.time <= at.0) {
                x.add(&p.value);
            }
            x
        };
        Ok(Some(total_value(&total)))
    }

    /// The real-time counter of `key` next to its reconciled total at event time `now`
    /// (processing time read as event time): `None` for a key never seen.
    pub fn live(&self, key: &Key, now: ProcessingTime) -> Option<Live> {
        let &k = self.index.get(key)?;
        let s = &self.series[k as usize];
        let period = self
            .spec
            .reset_at_or_before(EventTime(now.0))
            .ok()
            .flatten()
            .map(|r| r.0);
        let real_time = if period == s.live_since {
            total_value(&s.live)
        } else {
            Value::I64(0) // the clock passed a reset since the last event
        };
        Some(Live {
            real_time,
            reconciled: self.value_at(key, EventTime(now.0)).ok().flatten(),
            corrected_at: s.corrected_at,
        })
    }

    /// Clamped: the total before bucket `bi` (the end total of the last bucket before
    /// it in the same reset period, else zero).
    fn start_total(&self, s: &Series, bi: i64, reset: Option<EventTime>) -> SumState {
        let b = self.spec.bucket.0;
        let first = reset.map(|r| r.0.div_euclid(b));
        match s.buckets.range(..bi).next_back() {
            Some((&prev, pb)) if first.is_none_or(|f| prev >= f) => pb.end_total,
            Some(_) => SumState::default(),
            None if first.is_none() => s.base_total,
            None => SumState::default(),
        }
    }

    /// Times before this are no longer answerable: the watermark minus retention, or
    /// the start of the first bucket not dropped, whichever is later.
    fn horizon(&self) -> i64 {
        let by_watermark = self.watermark.current().0.minus(self.spec.retention).0;
        by_watermark.max(self.dropped_before.saturating_mul(self.spec.bucket.0))
    }

    /// Clamped: recomputes series `k`'s end totals from bucket `from` on, marking the
    /// emitted buckets whose total changed; stops once the totals meet the old ones
    /// again after the last changed bucket.
    fn recompute_clamped(
        &mut self,
        k: usize,
        from: i64,
        last_changed: i64,
    ) -> std::result::Result<(), String> {
        let b = self.spec.bucket.0;
        let start = EventTime(from.saturating_mul(b));
        let reset = self.spec.reset_at_or_before(start)?;
        let mut x = self.start_total(&self.series[k], from, reset);
        let mut next_reset = self.spec.reset_after(start)?;
        let spec = &self.spec;
        let s = &mut self.series[k];
        for (&bi, bucket) in s.buckets.range_mut(from..) {
            let bstart = EventTime(bi.saturating_mul(b));
            if let Some(r) = next_reset
                && bstart >= r
            {
                x = SumState::default();
                next_reset = spec.reset_after(bstart)?;
            }
            apply_clamped(&mut x, bucket.points.iter());
            // By the sum, not the counts behind it: a late event the clamp swallowed
            // leaves later totals as they were.
            let unchanged = x.same_sum(&bucket.end_total);
            bucket.end_total = x;
            if bucket.version > 0 && !x.same_sum(&bucket.emitted_total) {
                self.dirty.insert((k as u32, bi));
            }
            if unchanged && bi > last_changed {
                break;
            }
        }
        Ok(())
    }

    fn emission(&self, k: usize, bi: i64, kind: EmissionKind) -> Option<Emission> {
        let s = &self.series[k];
        let bucket = s.buckets.get(&bi)?;
        let mut values = if self.spec.gauge {
            vec![bucket.points.last().map(|p| p.value.clone())]
        } else {
            vec![bucket.sum.sum_value()]
        };
        if self.spec.clamp {
            values.push(Some(total_value(&bucket.end_total)));
        }
        let b = self.spec.bucket.0;
        Some(Emission {
            pipeline: self.spec.name.clone(),
            key: s.key.clone(),
            window: Window {
                start: EventTime(bi.saturating_mul(b)),
                end: EventTime(bucket_end(bi, b)),
            },
            version: Version(bucket.version),
            kind,
            columns: self.columns.clone(),
            values,
            count: bucket.checksum.count,
            checksum: bucket.checksum,
            emitted_at: self.now,
            watermark: self.watermark.current(),
            states: None,
        })
    }

    /// Emits the buckets the watermark has passed (`on_time`, or `late` when a late
    /// event made the bucket), then drops what retention no longer needs.
    fn fire(&mut self, out: &mut Vec<Emission>) {
        let wm = self.watermark.current().0.0;
        while let Some(&(end, k, bi)) = self.pending.first() {
            if end > wm {
                break;
            }
            self.pending.pop_first();
            let kind = match self.series[k as usize].buckets.get(&bi) {
                Some(b) if b.moved => EmissionKind::Recomputed,
                Some(b) if b.late => EmissionKind::Late,
                _ => EmissionKind::OnTime,
            };
            self.emit(k as usize, bi, kind, out);
        }
        self.sweep();
    }

    fn emit(&mut self, k: usize, bi: i64, kind: EmissionKind, out: &mut Vec<Emission>) {
        let Some(bucket) = self.series[k].buckets.get_mut(&bi) else {
            return;
        };
        if bucket.version == 0 && bucket.checksum.count == 0 {
            // Never emitted and emptied before (a mapping row moved its events away):
            // nothing to say, nothing to retract.
            return;
        }
        bucket.version += 1;
        bucket.emitted_total = bucket.end_total;
        bucket.late = false;
        bucket.moved = false;
        if let Some(em) = self.emission(k, bi, kind) {
            out.push(em);
        }
    }

    /// Drops the buckets retention no longer needs (with a reset, only those before
    /// the period the horizon is in) once the horizon passes a bucket's end. It depends
    /// on the watermark's history only (not on when snapshots were taken), so a replay
    /// drops, and dead-letters, exactly what the first run did.
    fn sweep(&mut self) {
        let b = self.spec.bucket.0;
        let mut horizon = self.watermark.current().0.minus(self.spec.retention).0;
        if horizon.div_euclid(b) - 1 < self.dropped_before {
            return; // not past another bucket yet (or the watermark went back)
        }
        if self.spec.reset.is_some() {
            match self.spec.reset_at_or_before(EventTime(horizon)) {
                Ok(Some(r)) => horizon = horizon.min(r.0),
                _ => return,
            }
        }
        let last_dropped = horizon.div_euclid(b) - 1; // buckets ending at or before
        if last_dropped < self.dropped_before {
            return; // the watermark went back: nothing more to drop
        }
        self.dropped_before = last_dropped + 1;
        let reset = self.spec.reset.is_some();
        // A mapping's held events go with their buckets (a row for those times can no
        // longer move them).
        let first_kept = self.dropped_before.saturating_mul(b);
        for held in self.mapped.sources.values_mut() {
            while held
                .first_key_value()
                .is_some_and(|((t, _), _)| *t < first_kept)
            {
                held.pop_first();
            }
        }
        for k in 0..self.series.len() {
            let s = &mut self.series[k];
            let mut dropped = 0;
            while let Some((&bi, _)) = s.buckets.first_key_value() {
                if bi > last_dropped || self.pending.contains(&(bucket_end(bi, b), k as u32, bi)) {
                    break;
                }
                if let Some((_, bucket)) = s.buckets.pop_first() {
                    s.base_total = bucket.end_total;
                    s.had_dropped |= bucket.checksum.count > 0;
                    if let Some(p) = bucket.points.last() {
                        s.base_last = Some(p.value.clone());
                    }
                    if !reset {
                        // Kept with the state (the tree is rebuilt from it on restore).
                        self.bases[k].merge(&bucket.sum);
                    }
                    dropped += 1;
                }
            }
            s.dropped += dropped;
            if dropped > 0 && s.dropped as usize > s.buckets.len().max(64) {
                self.rebuild_tree(k);
            }
        }
    }

    /// The resets around `t` can be computed and start a bucket (a zone's historical
    /// offset, such as Amsterdam's +00:19:32 before 1937, may put one inside a bucket).
    fn resets_fit(&mut self, t: EventTime) -> bool {
        self.period_at(t).is_some()
    }

    /// The reset period `[start, next reset)` that holds `t` (`Some(None)` without a
    /// reset; `None` when its resets cannot be computed or do not start a bucket).
    /// Remembers the last one: most events and clocks fall in the same day, and the
    /// time zone lookups cost more than the rest of an event.
    fn period_at(&mut self, t: EventTime) -> Option<Option<(i64, i64)>> {
        if self.spec.reset.is_none() {
            return Some(None);
        }
        if let Some((lo, hi)) = self.period
            && lo <= t.0
            && t.0 < hi
        {
            return Some(Some((lo, hi)));
        }
        let b = self.spec.bucket.0;
        let lo = self.spec.reset_at_or_before(t).ok()??;
        let hi = self.spec.reset_after(t).ok()??;
        if lo.0.rem_euclid(b) != 0 || hi.0.rem_euclid(b) != 0 {
            return None;
        }
        self.period = Some((lo.0, hi.0));
        Some(Some((lo.0, hi.0)))
    }

    /// Observes an event's time on the watermark, and fires what is due when it moved
    /// (or when `due` says a late bucket is waiting).
    fn observe(
        &mut self,
        partition: PartitionId,
        t: EventTime,
        due: bool,
        out: &mut Vec<Emission>,
    ) {
        if self.watermark.observe(partition, t, self.now) || due {
            self.fire(out);
        }
    }

    /// Adds one value to series `k` at time `t`: `None` for a duplicate (its id is in
    /// the bucket), else whether the bucket had been emitted (then it is marked for a
    /// new version; else it waits for the watermark).
    fn add_point(
        &mut self,
        k: usize,
        t: i64,
        value: Value,
        digest: u64,
        id: Option<u128>,
        late: bool,
    ) -> Option<bool> {
        let b = self.spec.bucket.0;
        let bi = t.div_euclid(b);
        let pos = self.pos(bi);
        let s = &mut self.series[k];
        let bucket = s.buckets.entry(bi).or_default();
        if id.is_some() && bucket.points.iter().any(|p| p.id == id) {
            return None;
        }
        let at = bucket
            .points
            .partition_point(|p| (p.time, p.digest) <= (t, digest));
        let mut one = SumState::default();
        one.add(&value);
        bucket.points.insert(
            at,
            Point {
                time: t,
                value,
                digest,
                id,
            },
        );
        bucket.sum.merge(&one);
        bucket.checksum.add(digest);
        bucket.late |= late;
        let emitted = bucket.version > 0;
        if let Some(tree) = s.tree.as_mut() {
            tree.add(pos, &one);
        }
        self.changed(k, bi, emitted);
        Some(emitted)
    }

    /// Takes a value back out of series `k` (a mapping row moved its event).
    fn remove_point(&mut self, k: usize, t: i64, digest: u64, value: &Value) {
        let b = self.spec.bucket.0;
        let bi = t.div_euclid(b);
        let pos = self.pos(bi);
        let s = &mut self.series[k];
        let Some(bucket) = s.buckets.get_mut(&bi) else {
            return; // dropped by retention with its events
        };
        let Some(i) = bucket
            .points
            .iter()
            .position(|p| p.time == t && p.digest == digest)
        else {
            return;
        };
        bucket.points.remove(i);
        bucket.sum.remove(value);
        bucket.checksum.remove(digest);
        let mut back = SumState::default();
        back.remove(value);
        if let Some(tree) = s.tree.as_mut() {
            tree.add(pos, &back);
        }
        let emitted = bucket.version > 0;
        self.changed(k, bi, emitted);
    }

    /// Bucket `bi` of series `k` changed: an emitted bucket gets a new version, and a
    /// clamped total is recomputed from it.
    fn changed(&mut self, k: usize, bi: i64, emitted: bool) {
        if emitted {
            self.dirty.insert((k as u32, bi));
        } else {
            self.pending
                .insert((bucket_end(bi, self.spec.bucket.0), k as u32, bi));
        }
        if self.spec.clamp {
            let r = self.clamp_changed.entry(k as u32).or_insert((bi, bi));
            *r = (r.0.min(bi), r.1.max(bi));
        }
    }

    /// Emits what the changes since the last call call for: clamped totals recomputed,
    /// then every changed emitted bucket once, as `kind`.
    fn settle(&mut self, kind: EmissionKind, out: &mut Vec<Emission>) {
        for (k, (from, to)) in std::mem::take(&mut self.clamp_changed) {
            if let Err(reason) = self.recompute_clamped(k as usize, from, to) {
                debug_assert!(
                    false,
                    "times outside the calendar are dead letters: {reason}"
                );
            }
        }
        for (k, bi) in std::mem::take(&mut self.dirty) {
            self.emit(k as usize, bi, kind, out);
        }
    }

    /// The real-time counter: an arriving event, in arrival order.
    fn count_live(&mut self, k: usize, value: &Value, late: bool) {
        // The clock's period (read as event time); none without a reset, or when the
        // clock's day cannot be placed.
        let period = self
            .period_at(EventTime(self.now.0))
            .flatten()
            .map(|(start, _)| start);
        let (now, clamp, gauge) = (self.now, self.spec.clamp, self.spec.gauge);
        let s = &mut self.series[k];
        if s.live_since != period {
            s.live = SumState::default();
            s.live_since = period;
        }
        if gauge {
            s.live = SumState::default(); // a gauge shows the last reading that arrived
        }
        s.live.add(value);
        if clamp && s.live.total() < 0.0 {
            s.live = SumState::default();
        }
        if late {
            s.corrected_at = Some(now);
        }
    }

    /// The mapped view of `e` under the row valid at its time: the row's key, the
    /// event's fields and then the row's; `None` without such a row (or without a
    /// mapping).
    fn resolve(&self, e: &Event) -> Option<Event> {
        let rows = self.mapped.rows.get(&e.key)?;
        let (_, row) = rows.range(..=(e.time.0, u64::MAX)).next_back()?;
        let mut m = e.clone();
        m.key = row.target.clone();
        for (name, v) in &row.fields {
            if !m.fields.iter().any(|(n, _)| n == name) {
                m.fields.push((name.clone(), v.clone()));
            }
        }
        Some(m)
    }

    /// A mapping row (input 1): stored, then every held event it now covers is moved to
    /// the key (and value) the row gives it. Errors name what the row lacks.
    fn ingest_row(
        &mut self,
        row: &Event,
        out: &mut Vec<Emission>,
    ) -> std::result::Result<(), String> {
        let Some(m) = &self.spec.mapping else {
            return Err(format!("running total `{}` has no mapping", self.spec.name));
        };
        let mut tags: Vec<(String, String)> = Vec::new();
        for f in &m.key_fields {
            let v = match row.field(f) {
                Some(Value::Str(s)) => s.to_string(),
                Some(v) => v.to_string(),
                None => match row.key.tags().into_iter().find(|(k, _)| k == f) {
                    Some((_, v)) => v,
                    None => {
                        return Err(format!(
                            "the mapping row has no `{f}`, a key field of running total `{}`'s mapping",
                            self.spec.name
                        ));
                    }
                },
            };
            tags.push((f.clone(), v));
        }
        let target = Key::from_tags(tags).map_err(|e| format!("the mapping row's key: {e}"))?;
        let at = (row.time.0, row.digest());
        let rows = self.mapped.rows.entry(row.key.clone()).or_default();
        rows.insert(
            at,
            Row {
                target,
                fields: row.fields.clone(),
            },
        );
        let next = rows
            .range((std::ops::Bound::Excluded(at), std::ops::Bound::Unbounded))
            .next()
            .map(|((t, _), _)| *t);
        // The events the row now covers: from its time to the next row's.
        let covered: Vec<(i64, u64)> = self
            .mapped
            .sources
            .get(&row.key)
            .map(|s| {
                s.range((row.time.0, 0)..)
                    .take_while(|((t, _), _)| next.is_none_or(|n| *t < n))
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        let mut touched = BTreeSet::new();
        for at in covered {
            self.remap(&row.key, at, &mut touched);
        }
        self.mapped.touched += touched.len() as u64;
        self.settle(EmissionKind::Recomputed, out);
        self.fire(out);
        Ok(())
    }

    /// Moves one held event to where the rows map it now, if that changed.
    fn remap(&mut self, src: &Key, at: (i64, u64), touched: &mut BTreeSet<u32>) {
        let Some(source) = self
            .mapped
            .sources
            .get(src)
            .and_then(|s| s.get(&at))
            .cloned()
        else {
            return;
        };
        let now = self.resolve(&source.event).and_then(|m| {
            let v = self.value_of(&m).ok()?;
            Some((m.key, v))
        });
        let same = match (&now, &source.counted) {
            (Some((key, v)), Some((k, old))) => self.index.get(key) == Some(k) && v == old,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let e = &source.event;
        if let Some((k, old)) = &source.counted {
            self.remove_point(*k as usize, e.time.0, at.1, old);
            touched.insert(*k);
        }
        let b = self.spec.bucket.0;
        let late = bucket_end(e.time.0.div_euclid(b), b) <= self.watermark.current().0.0;
        let counted = match now {
            Some((key, v)) => {
                let k = self.series_index(&key);
                let id = e.id.as_ref().map(|id| id.fingerprint());
                let added = self.add_point(k, e.time.0, v.clone(), at.1, id, late);
                let bi = e.time.0.div_euclid(b);
                // Recomputed: a bucket the watermark had passed that now holds it.
                if added.is_some()
                    && late
                    && let Some(bucket) = self.series[k].buckets.get_mut(&bi)
                {
                    bucket.moved = true;
                }
                added.map(|_| (k as u32, v))
            }
            None => None,
        };
        if let Some((k, _)) = &counted {
            touched.insert(*k);
        }
        self.mapped.moved += 1;
        if let Some(s) = self
            .mapped
            .sources
            .get_mut(src)
            .and_then(|s| s.get_mut(&at))
        {
            s.counted = counted;
        }
    }

    /// With a mapping: events moved by rows for past times so far, and the series
    /// those moves touched (summed per row).
    pub fn remapped(&self) -> (u64, u64) {
        (self.mapped.moved, self.mapped.touched)
    }

    /// Series and buckets held, and tree nodes (for figures).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let buckets = self.series.iter().map(|s| s.buckets.len()).sum();
        let nodes = self
            .series
            .iter()
            .map(|s| s.tree.as_ref().map_or(0, SumTree::nodes))
            .sum();
        (self.series.len(), buckets, nodes)
    }
}

fn bucket_end(bi: i64, b: i64) -> i64 {
    bi.saturating_mul(b).saturating_add(b)
}

/// A total as a value: zero when nothing was added.
fn total_value(s: &SumState) -> Value {
    s.sum_value().unwrap_or(Value::I64(0))
}

/// Applies points in time order to a clamped total: the values of one time together,
/// then `max(0, ·)`.
fn apply_clamped<'a>(x: &mut SumState, points: impl Iterator<Item = &'a Point>) {
    let mut points = points.peekable();
    while let Some(p) = points.next() {
        let mut step = SumState::default();
        step.add(&p.value);
        while let Some(q) = points.next_if(|q| q.time == p.time) {
            step.add(&q.value);
        }
        x.merge(&step);
        if x.total() < 0.0 {
            *x = SumState::default();
        }
    }
}

impl Operator for RunningTotal {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &Arc<str> {
        &self.spec.name
    }
    fn kind(&self) -> &'static str {
        "running_total"
    }
    fn inputs(&self) -> &[super::Source] {
        &self.inputs
    }
    fn watermark(&self) -> Watermark {
        self.watermark.current()
    }
    fn now(&self) -> ProcessingTime {
        self.now
    }
    fn is_finished(&self) -> bool {
        self.finished
    }
    fn advance(&mut self, now: ProcessingTime, out: &mut Vec<Emission>) {
        self.now = self.now.max(now);
        if self.watermark.tick(self.now) {
            self.fire(out);
        }
    }
    fn finish(&mut self, out: &mut Vec<Emission>) {
        self.watermark.finish();
        self.finished = true;
        self.fire(out);
    }

    fn ingest_events(
        &mut self,
        input: usize,
        partition: PartitionId,
        events: &[Event],
        out: &mut Vec<Emission>,
        report: &mut StepReport,
    ) {
        if input == 1 {
            for (index, row) in events.iter().enumerate() {
                if let Err(reason) = self.ingest_row(row, out) {
                    report.dead.push(DeadEvent {
                        index,
                        kind: "invalid",
                        reason,
                    });
                }
            }
            return;
        }
        let b = self.spec.bucket.0;
        for (index, e) in events.iter().enumerate() {
            let t = e.time.0;
            let wm = self.watermark.current().0;
            let bi = t.div_euclid(b);
            let (start, end) = (bi.saturating_mul(b), bucket_end(bi, b));
            let dead = |kind: &'static str, reason: String| DeadEvent {
                index,
                kind,
                reason,
            };
            if end == i64::MAX || start == i64::MIN || !self.resets_fit(e.time) {
                report.dead.push(dead(
                    "unwindowable",
                    format!(
                        "time {} cannot be placed in a bucket of running total `{}`",
                        e.time, self.spec.name
                    ),
                ));
                continue;
            }
            let late = end <= wm.0;
            if (late && start < wm.minus(self.spec.retention).0) || bi < self.dropped_before {
                report.dead.push(dead(
                    "beyond_retention",
                    format!(
                        "bucket {} is beyond retention at watermark {}",
                        Window {
                            start: EventTime(start),
                            end: EventTime(end)
                        },
                        Watermark(wm)
                    ),
                ));
                self.observe(partition, e.time, false, out);
                continue;
            }
            // With a mapping: the key and fields of the row valid at the event's time;
            // without a row yet, the event waits for one (counted nowhere until then).
            let mapped = match &self.spec.mapping {
                None => None,
                Some(_) => match self.resolve(e) {
                    Some(m) => Some(m),
                    None => {
                        let at = (t, e.digest());
                        self.mapped
                            .sources
                            .entry(e.key.clone())
                            .or_default()
                            .insert(
                                at,
                                Source {
                                    event: e.clone(),
                                    counted: None,
                                },
                            );
                        self.observe(partition, e.time, false, out);
                        continue;
                    }
                },
            };
            let value = match self.value_of(mapped.as_ref().unwrap_or(e)) {
                Ok(v) => v,
                Err(reason) => {
                    report.dead.push(dead("invalid", reason));
                    self.observe(partition, e.time, false, out);
                    continue;
                }
            };
            let key = mapped.as_ref().map_or(&e.key, |m| &m.key);
            let k = self.series_index(key);
            let id = e.id.as_ref().map(|id| id.fingerprint());
            let digest = e.digest();
            let Some(emitted) = self.add_point(k, t, value.clone(), digest, id, late) else {
                self.observe(partition, e.time, false, out);
                continue; // a duplicate: counted once
            };
            if self.spec.mapping.is_some() {
                self.mapped
                    .sources
                    .entry(e.key.clone())
                    .or_default()
                    .insert(
                        (t, digest),
                        Source {
                            event: e.clone(),
                            counted: Some((k as u32, value.clone())),
                        },
                    );
            }
            self.count_live(k, &value, late);
            // Each event's emissions at once (as event-by-event ingest would make them,
            // so a replay in other batches makes the same versions): its bucket if it
            // was emitted, and with a clamp every emitted bucket whose total moved.
            self.settle(EmissionKind::Late, out);
            if late {
                report.corrected += 1;
            }
            // A late event's new bucket is due at once (the watermark passed its end).
            self.observe(partition, e.time, late && !emitted, out);
        }
    }

    fn ingest_results(
        &mut self,
        _input: usize,
        _results: &[Emission],
        _watermark: Watermark,
        _out: &mut Vec<Emission>,
        _report: &mut StepReport,
    ) -> Result<()> {
        Err(Error::Internal(format!(
            "running total `{}` reads a stream, not results",
            self.spec.name
        )))
    }

    fn recompute(
        &mut self,
        _key: &Key,
        _window: Window,
        _prior: Option<Prior>,
        _data: ColdData<'_>,
    ) -> Result<Option<Emission>> {
        Err(Error::Internal(format!(
            "running total `{}` keeps every event inside retention in memory: it never asks for a recompute",
            self.spec.name
        )))
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        crate::snapshot::encode(
            RUNNING_MAGIC,
            RUNNING_FORMAT,
            &StateRef {
                spec: self.spec.fingerprint()?,
                watermark: &self.watermark,
                now: self.now,
                series: &self.series,
                bases: self.bases.clone(),
                dropped_before: self.dropped_before,
                finished: self.finished,
                mapped: &self.mapped,
            },
        )
    }

    fn retention_horizon(&self, input: usize) -> Option<EventTime> {
        // Mapping rows (input 1) are kept: a row from long ago may still be the one
        // valid now.
        (input == 0).then(|| EventTime(self.horizon()))
    }

    fn keep_states(&mut self) {}

    fn value_at(
        &self,
        key: &Key,
        at: EventTime,
    ) -> Option<std::result::Result<Option<Value>, String>> {
        Some(RunningTotal::value_at(self, key, at))
    }

    fn gauges(&self) -> Vec<(&'static str, f64)> {
        let (series, buckets, _) = self.sizes();
        vec![
            ("reckon_running_total_series", series as f64),
            ("reckon_running_total_buckets", buckets as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> EventTime {
        let ts: jiff::Timestamp = s.parse().unwrap();
        EventTime(i64::try_from(ts.as_nanosecond()).unwrap())
    }

    fn spec(at: u32, tz: &str) -> RunningSpec {
        let mut s = RunningSpec::new("t", Span::minutes(1));
        s.reset = Some(Reset {
            at,
            tz: Tz::get(tz).unwrap(),
        });
        s.validate().unwrap();
        s
    }

    #[test]
    fn resets_follow_the_local_clock_across_dst() {
        // Europe/Amsterdam, 02:00 local. 2022-03-27: 02:00 does not exist (clocks go
        // from 02:00 CET to 03:00 CEST at 01:00 UTC): the reset is the first instant
        // after the gap, 01:00 UTC. 2022-10-30: 02:00 happens twice: the first, CEST,
        // is 00:00 UTC.
        let s = spec(2 * 3600, "Europe/Amsterdam");
        let cases = [
            (
                "2022-03-26T12:00:00Z",
                "2022-03-26T01:00:00Z",
                "2022-03-27T01:00:00Z",
            ),
            (
                "2022-03-27T00:59:59Z",
                "2022-03-26T01:00:00Z",
                "2022-03-27T01:00:00Z",
            ),
            (
                "2022-03-27T01:00:00Z",
                "2022-03-27T01:00:00Z",
                "2022-03-28T00:00:00Z",
            ),
            (
                "2022-10-29T23:59:59Z",
                "2022-10-29T00:00:00Z",
                "2022-10-30T00:00:00Z",
            ),
            (
                "2022-10-30T00:30:00Z",
                "2022-10-30T00:00:00Z",
                "2022-10-31T01:00:00Z",
            ),
            (
                "2022-10-30T01:30:00Z",
                "2022-10-30T00:00:00Z",
                "2022-10-31T01:00:00Z",
            ),
        ];
        for (t, before, after) in cases {
            assert_eq!(
                s.reset_at_or_before(utc(t)).unwrap(),
                Some(utc(before)),
                "{t}"
            );
            assert_eq!(s.reset_after(utc(t)).unwrap(), Some(utc(after)), "{t}");
        }
        // The periods are 23 h and 25 h long across the changes.
        let spring = utc("2022-03-28T00:00:00Z").0 - utc("2022-03-27T01:00:00Z").0;
        assert_eq!(spring, 23 * 3600 * 1_000_000_000);
        let fall = utc("2022-10-31T01:00:00Z").0 - utc("2022-10-30T00:00:00Z").0;
        assert_eq!(fall, 25 * 3600 * 1_000_000_000);
        // New York at 04:00 is outside its 02:00 changes: 08:00 UTC in summer time.
        let ny = spec(4 * 3600, "America/New_York");
        assert_eq!(
            ny.reset_at_or_before(utc("2022-03-13T09:00:00Z")).unwrap(),
            Some(utc("2022-03-13T08:00:00Z"))
        );
        assert_eq!(
            ny.reset_at_or_before(utc("2022-03-13T07:59:00Z")).unwrap(),
            Some(utc("2022-03-12T09:00:00Z"))
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let msg = |f: &dyn Fn(&mut RunningSpec)| {
            let mut s = RunningSpec::new("occ", Span::minutes(1));
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(
            msg(&|s| s.bucket = Span(0)).contains("running total `occ`: bucket must be positive")
        );
        let tz = Tz::get("UTC").unwrap();
        let with_reset = |at: u32, bucket: Span| {
            let tz = tz.clone();
            move |s: &mut RunningSpec| {
                s.bucket = bucket;
                s.reset = Some(Reset { at, tz: tz.clone() });
            }
        };
        assert!(msg(&with_reset(0, Span::minutes(7))).contains("bucket must divide 15 minutes"));
        assert!(
            msg(&with_reset(90, Span::minutes(1)))
                .contains("reset.at must be a multiple of the bucket")
        );
        assert!(
            msg(&|s| {
                s.reset = Some(Reset {
                    at: 0,
                    tz: tz.clone(),
                });
                s.retention = Span::hours(24);
            })
            .contains("retention must be at least 25h")
        );
        assert!(
            msg(&|s| s.value = Some(Expr::parse("name = 'x'").unwrap()))
                .contains("is not a number")
        );
    }

    fn ev(key: &str, secs: i64, d: i64) -> Event {
        Event {
            stream: "doors".into(),
            key: Key::parse(key).unwrap(),
            time: EventTime::from_secs(secs),
            id: None,
            fields: vec![("d".into(), Value::I64(d))],
        }
    }

    #[test]
    fn a_late_event_is_one_new_version_of_one_bucket() {
        let mut s = RunningSpec::new("occ", Span::minutes(1));
        s.value = Some(Expr::parse("d").unwrap());
        let mut rt = RunningTotal::new(s, "doors", None).unwrap();
        let (mut out, mut report) = (Vec::new(), StepReport::default());
        // 10,000 minutes of one crossing each, then the watermark is past them all.
        let events: Vec<Event> = (0..10_000).map(|m| ev("space=a", m * 60, 1)).collect();
        rt.ingest_events(0, PartitionId(0), &events, &mut out, &mut report);
        rt.ingest_events(
            0,
            PartitionId(0),
            &[ev("space=a", 10_001 * 60, 1)],
            &mut out,
            &mut report,
        );
        assert_eq!(out.len(), 10_000);
        assert!(out.iter().all(|e| e.kind == EmissionKind::OnTime));
        let key = Key::parse("space=a").unwrap();
        assert_eq!(
            rt.value_at(&key, EventTime::from_secs(5_000 * 60)).unwrap(),
            Some(Value::I64(5_001))
        );
        out.clear();
        // A late -1 at minute 10: one emission, its bucket's v2; every later total moves.
        rt.ingest_events(
            0,
            PartitionId(0),
            &[ev("space=a", 10 * 60 + 5, -1)],
            &mut out,
            &mut report,
        );
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(
            (e.kind, e.version, e.window.start),
            (EmissionKind::Late, Version(2), EventTime::from_secs(600))
        );
        assert_eq!(e.values, vec![Some(Value::I64(0))]);
        assert_eq!(report.corrected, 1);
        assert_eq!(
            rt.value_at(&key, EventTime::from_secs(10 * 60 + 4))
                .unwrap(),
            Some(Value::I64(11))
        );
        assert_eq!(
            rt.value_at(&key, EventTime::from_secs(10 * 60 + 5))
                .unwrap(),
            Some(Value::I64(10))
        );
        assert_eq!(
            rt.value_at(&key, EventTime::from_secs(5_000 * 60)).unwrap(),
            Some(Value::I64(5_000))
        );
        assert_eq!(rt.value_at(&key, EventTime::from_secs(-1)).unwrap(), None);
        assert_eq!(
            rt.value_at(&Key::parse("space=b").unwrap(), EventTime::from_secs(0))
                .unwrap(),
            None
        );
    }

    #[test]
    fn the_real_time_counter_follows_arrivals_and_the_clock() {
        // Daily reset at 04:00 UTC; events at 03:50 and 04:10 on day 1.
        let mut s = RunningSpec::new("occ", Span::minutes(1));
        s.value = Some(Expr::parse("d").unwrap());
        s.reset = Some(Reset {
            at: 4 * 3600,
            tz: Tz::get("UTC").unwrap(),
        });
        let mut rt = RunningTotal::new(s, "doors", None).unwrap();
        let (mut out, mut report) = (Vec::new(), StepReport::default());
        let day = 86_400;
        let at = |secs: i64| ProcessingTime::from_secs(day + secs);
        let key = Key::parse("k=1").unwrap();
        rt.advance(at(3 * 3600 + 50 * 60), &mut out);
        rt.ingest_events(
            0,
            PartitionId(0),
            &[ev("k=1", day + 3 * 3600 + 50 * 60, 5)],
            &mut out,
            &mut report,
        );
        let live = rt.live(&key, at(3 * 3600 + 55 * 60)).unwrap();
        assert_eq!(
            (live.real_time, live.reconciled),
            (Value::I64(5), Some(Value::I64(5)))
        );
        // The clock passes 04:00: the live counter starts again at zero.
        let live = rt.live(&key, at(4 * 3600 + 5 * 60)).unwrap();
        assert_eq!(
            (live.real_time, live.reconciled),
            (Value::I64(0), Some(Value::I64(0)))
        );
        rt.advance(at(4 * 3600 + 10 * 60), &mut out);
        rt.ingest_events(
            0,
            PartitionId(0),
            &[ev("k=1", day + 4 * 3600 + 10 * 60, 2)],
            &mut out,
            &mut report,
        );
        // A late +3 from 03:55 arrives after the reset: live counts it today, the
        // reconciled total puts it in yesterday's period.
        rt.advance(at(4 * 3600 + 20 * 60), &mut out);
        rt.ingest_events(
            0,
            PartitionId(0),
            &[ev("k=1", day + 3 * 3600 + 55 * 60, 3)],
            &mut out,
            &mut report,
        );
        let live = rt.live(&key, at(4 * 3600 + 20 * 60)).unwrap();
        assert_eq!(
            (live.real_time, live.reconciled),
            (Value::I64(5), Some(Value::I64(2)))
        );
        assert_eq!(live.corrected_at, Some(at(4 * 3600 + 20 * 60)));
        assert_eq!(
            rt.value_at(&key, EventTime::from_secs(day + 3 * 3600 + 59 * 60))
                .unwrap(),
            Some(Value::I64(8))
        );
        assert!(rt.live(&Key::parse("k=2").unwrap(), at(0)).is_none());
    }

    #[test]
    fn a_retroactive_mapping_row_moves_exactly_the_events_it_covers() {
        let mut s = RunningSpec::new("occ", Span::minutes(1));
        s.value = Some(Expr::parse("d * sign").unwrap());
        s.mapping = Some(Mapping {
            stream: Arc::from("dpu_location"),
            key_fields: vec!["space".into()],
        });
        let mut rt = RunningTotal::new(s, "doors", None).unwrap();
        let (mut out, mut report) = (Vec::new(), StepReport::default());
        let row = |dpu: &str, secs: i64, space: &str, sign: i64| Event {
            stream: "dpu_location".into(),
            key: Key::parse(dpu).unwrap(),
            time: EventTime::from_secs(secs),
            id: None,
            fields: vec![
                ("space".into(), Value::Str(Arc::from(space))),
                ("sign".into(), Value::I64(sign)),
            ],
        };
        // DPU 1 on space A from 0; DPU 2 on space C from 0 (facing in: sign -1).
        let rows = [row("dpu=1", 0, "A", 1), row("dpu=2", 0, "C", -1)];
        rt.ingest_events(1, PartitionId(0), &rows, &mut out, &mut report);
        // A crossing every minute for 3 hours on each DPU.
        let events: Vec<Event> = (0..180)
            .flat_map(|m| [ev("dpu=1", m * 60, 1), ev("dpu=2", m * 60 + 1, -1)])
            .collect();
        rt.ingest_events(0, PartitionId(0), &events, &mut out, &mut report);
        let (a, b, c) = ["space=A", "space=B", "space=C"]
            .map(|k| Key::parse(k).unwrap())
            .into();
        let at = EventTime::from_secs(3 * 3600);
        assert_eq!(rt.value_at(&a, at).unwrap(), Some(Value::I64(180)));
        assert_eq!(rt.value_at(&c, at).unwrap(), Some(Value::I64(180)));
        out.clear();
        // DPU 1 was really on space A again from 02:00 (a row that changes nothing:
        // nothing moves), and on space B from 01:00 (a row for the past, covering up to
        // the 02:00 row): its 60 crossings of that hour move, nothing else.
        let rows = [row("dpu=1", 7200, "A", 1), row("dpu=1", 3600, "B", 1)];
        rt.ingest_events(1, PartitionId(0), &rows, &mut out, &mut report);
        assert!(report.dead.is_empty(), "{:?}", report.dead);
        assert_eq!(rt.remapped(), (60, 2), "60 events moved, touching A and B");
        assert_eq!(rt.value_at(&a, at).unwrap(), Some(Value::I64(120)));
        assert_eq!(rt.value_at(&b, at).unwrap(), Some(Value::I64(60)));
        assert_eq!(rt.value_at(&c, at).unwrap(), Some(Value::I64(180)));
        assert_eq!(rt.value_at(&b, EventTime::from_secs(3599)).unwrap(), None);
        // The 60 minutes of A lose their crossing (count 0), the 60 of B gain it.
        assert!(out.iter().all(|e| e.kind == EmissionKind::Recomputed));
        assert_eq!(
            out.iter().filter(|e| e.key == a && e.count == 0).count(),
            60
        );
        assert_eq!(
            out.iter().filter(|e| e.key == b && e.count == 1).count(),
            60
        );
        assert!(out.iter().all(|e| e.key != c));
        // A row without the key field is refused, naming it.
        report.dead.clear();
        let mut bad = row("dpu=3", 0, "A", 1);
        bad.fields.remove(0);
        rt.ingest_events(1, PartitionId(0), &[bad], &mut out, &mut report);
        assert!(
            report.dead[0]
                .reason
                .contains("the mapping row has no `space`"),
            "{:?}",
            report.dead
        );
    }

    #[test]
    fn a_late_event_the_clamp_swallows_re_emits_only_its_bucket() {
        // +1 at 00:10, -1 at 00:20 (total 0), then +1 a minute for 99 minutes. A late
        // -1 at 00:25 is swallowed by the clamp (0 stays 0): later totals do not move,
        // so only its own bucket gets a new version (found by review: counts behind
        // equal sums made every later bucket look changed).
        let mut s = RunningSpec::new("occ", Span::minutes(1));
        s.value = Some(Expr::parse("d").unwrap());
        s.clamp = true;
        let mut rt = RunningTotal::new(s, "doors", None).unwrap();
        let (mut out, mut report) = (Vec::new(), StepReport::default());
        let mut events = vec![ev("k=1", 10, 1), ev("k=1", 20, -1)];
        events.extend((1..100).map(|m| ev("k=1", m * 60, 1)));
        events.push(ev("k=1", 200 * 60, 0));
        rt.ingest_events(0, PartitionId(0), &events, &mut out, &mut report);
        out.clear();
        rt.ingest_events(
            0,
            PartitionId(0),
            &[ev("k=1", 25, -1)],
            &mut out,
            &mut report,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].window.start, EventTime(0));
    }

    #[test]
    fn a_clamped_total_never_goes_below_zero_and_a_late_event_moves_later_totals() {
        let mut s = RunningSpec::new("occ", Span::minutes(1));
        s.value = Some(Expr::parse("d").unwrap());
        s.clamp = true;
        let mut rt = RunningTotal::new(s, "doors", None).unwrap();
        let (mut out, mut report) = (Vec::new(), StepReport::default());
        // +1 at 0 s, -1 at 60 s, -1 at 120 s (clamped: 0, not -1), +1 at 180 s.
        let events = [
            ev("k=1", 0, 1),
            ev("k=1", 60, -1),
            ev("k=1", 120, -1),
            ev("k=1", 180, 1),
            ev("k=1", 600, 0),
        ];
        rt.ingest_events(0, PartitionId(0), &events, &mut out, &mut report);
        let totals: Vec<_> = out.iter().map(|e| e.values[1].clone()).collect();
        assert_eq!(
            totals,
            [
                Some(Value::I64(1)),
                Some(Value::I64(0)),
                Some(Value::I64(0)),
                Some(Value::I64(1))
            ]
        );
        out.clear();
        // A late +2 at 30 s: totals 3, 2, 1, 2 — every later bucket changes, once.
        rt.ingest_events(
            0,
            PartitionId(0),
            &[ev("k=1", 30, 2)],
            &mut out,
            &mut report,
        );
        let totals: Vec<_> = out
            .iter()
            .map(|e| (e.window.start.0 / 1_000_000_000, e.values[1].clone()))
            .collect();
        assert_eq!(
            totals,
            [
                (0, Some(Value::I64(3))),
                (60, Some(Value::I64(2))),
                (120, Some(Value::I64(1))),
                (180, Some(Value::I64(2)))
            ]
        );
        let key = Key::parse("k=1").unwrap();
        assert_eq!(
            rt.value_at(&key, EventTime::from_secs(150)).unwrap(),
            Some(Value::I64(1))
        );
    }
}
