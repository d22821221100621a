//! An independent oracle for rollups: chains of pipelines where each level takes the
//! previous level's results, windows them more coarsely and merges the aggregate
//! states (5 minutes → hour → calendar day → ISO week → calendar month).
//!
//! A rollup is right when every window of every level has the value that aggregating
//! the accepted *base events* in it directly would give. This oracle computes exactly
//! that, without any rollup at all: it windows each base event once per level and
//! aggregates each window's events from the list, as the batch oracle in the crate
//! root does (with the same per-kind code, `expect`). It shares no windowing
//! or aggregation code with the engine (`reckon_core::window`, `aggregate`, `sketch`):
//! tumbling windows are plain arithmetic, calendar windows come from jiff's civil
//! dates. Each window also lists the windows of the level below that hold its events
//! (what a rollup merges), and [`Rollup::misnested`] says where they do not fit.
//! Filters and derived fields are Rust closures, not the engine's expression language,
//! so a bug in the language cannot hide in both.
//!
//! ```
//! use reckon_core::{AggKind, Event, EventTime, Key, Span, Value};
//! use reckon_testkit::rollup::{Level, OracleAgg, RollupOracle};
//!
//! let tz = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
//! let oracle = RollupOracle::new(tz)
//!     .level("m5", Level::Tumbling(Span::minutes(5)))
//!     .level("day", Level::Day)
//!     .aggregate(OracleAgg::new("mean", AggKind::Mean, Some("x")))
//!     .aggregate(OracleAgg::count("big").filter(|e| {
//!         e.field("x").and_then(Value::as_f64).is_some_and(|x| x > 1.0)
//!     }));
//! let ev = |secs: i64, x: f64| Event {
//!     stream: "s".into(),
//!     key: Key::empty(),
//!     time: EventTime::from_secs(secs),
//!     id: None,
//!     fields: vec![("x".into(), Value::F64(x))],
//! };
//! let out = oracle.run(&[ev(0, 1.0), ev(400, 3.0)]);
//! // Two 5-minute windows, one day (1970-01-01 07:00 local is 00:00 UTC).
//! assert_eq!(out.windows.len(), 3);
//! ```

use crate::{Expected, OracleWindow, expect};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use reckon_core::{AggKind, Event, EventTime, Key, Span, Value, Window};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

/// How one level of a rollup chain windows time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Fixed-size windows aligned to the Unix epoch (no offset): `[k·size, (k+1)·size)`.
    Tumbling(Span),
    /// A calendar day in the oracle's time zone: from the first instant of the civil
    /// date to the first instant of the next one (23 or 25 hours across DST changes).
    Day,
    /// An ISO week in the oracle's time zone: Monday's first instant to next Monday's.
    IsoWeek,
    /// A calendar month in the oracle's time zone: the 1st's first instant to the next 1st's.
    Month,
}

/// A filter on base events: only events for which it returns true feed the aggregate.
pub type Filter = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// A derived field: computed from the event (with the fields derived before it);
/// `None` leaves the field absent, as a missing field in the data.
pub type Derive = Arc<dyn Fn(&Event) -> Option<Value> + Send + Sync>;

/// One aggregate of every level: `kind` over `field` (`None`: count events), fed only
/// with the events that pass `filter`.
///
/// The kinds follow the batch oracle's conventions exactly (they are computed by the
/// same code): `count` without a field counts the events, with a field the events that
/// have it, and is `0` (not none) when the filter passes nothing; `sum`/`mean`/`min`/
/// `max` ignore non-numeric values and are none without numeric ones; `first`/`last`
/// go by event time, ties broken by the event's digest; `variance`/`stddev` are sample
/// statistics, none below two values, compared within 1e-7 relative.
#[derive(Clone)]
pub struct OracleAgg {
    /// The output column's name.
    pub name: String,
    /// Which aggregate.
    pub kind: AggKind,
    /// The field it reads (base or derived); `None` for a plain count.
    pub field: Option<String>,
    /// Which events it sees; `None`: all.
    pub filter: Option<Filter>,
}

impl OracleAgg {
    /// `kind` over `field`, unfiltered.
    pub fn new(name: &str, kind: AggKind, field: Option<&str>) -> OracleAgg {
        OracleAgg {
            name: name.to_owned(),
            kind,
            field: field.map(str::to_owned),
            filter: None,
        }
    }

    /// A count of events.
    pub fn count(name: &str) -> OracleAgg {
        OracleAgg::new(name, AggKind::Count, None)
    }

    /// Only events for which `f` is true feed this aggregate.
    pub fn filter(mut self, f: impl Fn(&Event) -> bool + Send + Sync + 'static) -> OracleAgg {
        self.filter = Some(Arc::new(f));
        self
    }
}

impl fmt::Debug for OracleAgg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OracleAgg")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("field", &self.field)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

/// A window of one level of one series: (level name, key, window).
pub type LevelWindow = (String, Key, Window);

/// One window of one level.
#[derive(Clone, Debug, PartialEq)]
pub struct RollupWindow {
    /// Count, hash and values, as the batch oracle gives them: `count` is the number of
    /// distinct base events, `hash` the wrapping sum of their digests (as given, derived
    /// fields not included), `values` one expectation per aggregate in order.
    pub result: OracleWindow,
    /// The previous level's windows (same key) holding this window's events: what a
    /// rollup merges into it. Empty at the first level.
    pub parts: BTreeSet<Window>,
}

/// Every window of every level.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollup {
    /// By level name, key and window.
    pub windows: BTreeMap<LevelWindow, RollupWindow>,
}

impl Rollup {
    /// How the newest stored results of one level (`latest`, by key and window) differ
    /// from this oracle's windows of it, in words (empty: they agree). Count and hash
    /// must be equal, values as [`Expected`] allows.
    pub fn diff_level(
        &self,
        level: &str,
        latest: &BTreeMap<(Key, Window), reckon_core::Emission>,
    ) -> Vec<String> {
        let mut diffs = Vec::new();
        let mut expected = 0usize;
        for (k, w, rw) in self.level(level) {
            expected += 1;
            let ow = &rw.result;
            let Some(em) = latest.get(&(k.clone(), *w)) else {
                diffs.push(format!(
                    "{level} {k} {w}: missing, the oracle has {} events",
                    ow.count
                ));
                continue;
            };
            if em.count != ow.count || em.checksum.hash != ow.hash {
                diffs.push(format!(
                    "{level} {k} {w}: count/hash {}/{:x}, the oracle's {}/{:x}",
                    em.count, em.checksum.hash, ow.count, ow.hash
                ));
            }
            for (i, exp) in ow.values.iter().enumerate() {
                let got = em.values.get(i).and_then(Option::as_ref);
                if !exp.accepts(got) {
                    diffs.push(format!(
                        "{level} {k} {w} {}: {got:?}, the oracle's {exp:?}",
                        em.columns.get(i).map_or("?", |c| &**c)
                    ));
                }
            }
        }
        if latest.len() != expected {
            for (k, w) in latest.keys() {
                if !self
                    .windows
                    .contains_key(&(level.to_owned(), k.clone(), *w))
                {
                    diffs.push(format!(
                        "{level} {k} {w}: stored, but the oracle has no event in it"
                    ));
                }
            }
        }
        diffs
    }

    /// The windows of one level.
    pub fn level<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Window, &'a RollupWindow)> + 'a {
        self.windows
            .iter()
            .filter(move |((l, _, _), _)| l == name)
            .map(|((_, k, w), rw)| (k, w, rw))
    }

    /// The windows whose parts stick out of them, in words. A chain whose levels do not
    /// nest (an epoch-aligned hour under a day in a zone with a half-hour offset) cannot
    /// be computed by merging: the engine must refuse it, and this says where it breaks.
    pub fn misnested(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((level, key, w), rw) in &self.windows {
            for p in &rw.parts {
                if p.start < w.start || w.end < p.end {
                    out.push(format!("{level} {key} {w}: part {p} is not inside"));
                }
            }
        }
        out
    }
}

/// The oracle: levels from finest to coarsest, a time zone for the calendar levels,
/// derived fields and aggregates (the same at every level).
#[derive(Clone)]
pub struct RollupOracle {
    levels: Vec<(String, Level)>,
    tz: TimeZone,
    derived: Vec<(String, Derive)>,
    aggs: Vec<OracleAgg>,
}

impl fmt::Debug for RollupOracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollupOracle")
            .field("levels", &self.levels)
            .field("tz", &self.tz.iana_name())
            .field(
                "derived",
                &self.derived.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("aggs", &self.aggs)
            .finish()
    }
}

impl RollupOracle {
    /// An oracle with no levels yet; calendar levels use `tz`.
    pub fn new(tz: TimeZone) -> RollupOracle {
        RollupOracle {
            levels: Vec::new(),
            tz,
            derived: Vec::new(),
            aggs: Vec::new(),
        }
    }

    /// Adds the next (coarser) level, named as its pipeline.
    pub fn level(mut self, name: &str, level: Level) -> RollupOracle {
        self.levels.push((name.to_owned(), level));
        self
    }

    /// Adds a derived field, computed from each base event before filters and
    /// aggregates see it (it sees the fields derived before it).
    pub fn derive(
        mut self,
        name: &str,
        f: impl Fn(&Event) -> Option<Value> + Send + Sync + 'static,
    ) -> RollupOracle {
        self.derived.push((name.to_owned(), Arc::new(f)));
        self
    }

    /// Adds an aggregate (a column of every level).
    pub fn aggregate(mut self, agg: OracleAgg) -> RollupOracle {
        self.aggs.push(agg);
        self
    }

    /// The window of `level` holding `t`.
    pub fn window_of(&self, level: Level, t: EventTime) -> Window {
        match level {
            Level::Tumbling(size) => tumbling_window(t, size),
            Level::Day => day_window(t, &self.tz),
            Level::IsoWeek => iso_week_window(t, &self.tz),
            Level::Month => month_window(t, &self.tz),
        }
    }

    /// Every window of every level over `events`. Duplicates by id: the first wins.
    pub fn run(&self, events: &[Event]) -> Rollup {
        let mut seen = HashSet::new();
        let mut base: Vec<(&Event, Event)> = Vec::new();
        for e in events {
            if let Some(id) = &e.id
                && !seen.insert(id.clone())
            {
                continue;
            }
            let mut ext = e.clone();
            for (name, f) in &self.derived {
                if let Some(v) = f(&ext) {
                    ext.fields.push((name.as_str().into(), v));
                }
            }
            base.push((e, ext));
        }
        // Per window: its events' indices in `base`, and the windows below it.
        let mut groups: BTreeMap<LevelWindow, (Vec<usize>, BTreeSet<Window>)> = BTreeMap::new();
        for (i, (e, _)) in base.iter().enumerate() {
            let mut below: Option<Window> = None;
            for (name, level) in &self.levels {
                let w = self.window_of(*level, e.time);
                let g = groups.entry((name.clone(), e.key.clone(), w)).or_default();
                g.0.push(i);
                if let Some(b) = below {
                    g.1.insert(b);
                }
                below = Some(w);
            }
        }
        let windows = groups
            .into_iter()
            .map(|(k, (idx, parts))| {
                let result = OracleWindow {
                    count: idx.len() as u64,
                    hash: idx
                        .iter()
                        .fold(0u64, |h, &i| h.wrapping_add(base[i].0.digest())),
                    values: self
                        .aggs
                        .iter()
                        .map(|a| {
                            let evs: Vec<&Event> = idx
                                .iter()
                                .map(|&i| &base[i].1)
                                .filter(|e| a.filter.as_ref().is_none_or(|f| f(e)))
                                .collect();
                            expect(a.kind, a.field.as_deref(), &evs)
                        })
                        .collect(),
                };
                (k, RollupWindow { result, parts })
            })
            .collect();
        Rollup { windows }
    }
}

/// The short form: every window of every level, without the parts.
pub fn rollup_oracle(
    levels: &[(String, Level)],
    tz: &TimeZone,
    aggs: &[OracleAgg],
    events: &[Event],
) -> BTreeMap<LevelWindow, OracleWindow> {
    let mut o = RollupOracle::new(tz.clone());
    for (name, level) in levels {
        o = o.level(name, *level);
    }
    for a in aggs {
        o = o.aggregate(a.clone());
    }
    o.run(events)
        .windows
        .into_iter()
        .map(|(k, rw)| (k, rw.result))
        .collect()
}

/// The epoch-aligned window of `size` holding `t`, by floor division (also for times
/// before 1970).
pub fn tumbling_window(t: EventTime, size: Span) -> Window {
    assert!(size.0 > 0, "a tumbling window needs a positive size");
    let start = i128::from(t.0).div_euclid(i128::from(size.0)) * i128::from(size.0);
    Window {
        start: EventTime(to_i64(start)),
        end: EventTime(to_i64(start + i128::from(size.0))),
    }
}

/// The local calendar day holding `t` in `tz`.
pub fn day_window(t: EventTime, tz: &TimeZone) -> Window {
    let d = local_date(t, tz);
    dates_window(
        d,
        d.tomorrow().expect("a date inside EventTime's range"),
        tz,
    )
}

/// The local ISO week (Monday to Monday) holding `t` in `tz`.
pub fn iso_week_window(t: EventTime, tz: &TimeZone) -> Window {
    let d = local_date(t, tz);
    let back = i64::from(d.weekday().to_monday_zero_offset());
    let monday = d
        .checked_sub(jiff::Span::new().days(back))
        .expect("a date inside EventTime's range");
    let next = monday
        .checked_add(jiff::Span::new().days(7))
        .expect("a date inside EventTime's range");
    dates_window(monday, next, tz)
}

/// The local calendar month holding `t` in `tz`.
pub fn month_window(t: EventTime, tz: &TimeZone) -> Window {
    let first = local_date(t, tz).first_of_month();
    let next = first
        .last_of_month()
        .tomorrow()
        .expect("a date inside EventTime's range");
    dates_window(first, next, tz)
}

/// The civil date of `t` in `tz`.
pub fn local_date(t: EventTime, tz: &TimeZone) -> Date {
    jiff::Timestamp::from_nanosecond(i128::from(t.0))
        .expect("EventTime is inside jiff's range")
        .to_zoned(tz.clone())
        .date()
}

/// The first instant of civil date `d` in `tz`: local midnight, or, where a DST gap
/// swallows midnight, the first clock time after the gap; where midnight happens twice,
/// the earlier one (jiff's "compatible" disambiguation).
pub fn start_of_date(d: Date, tz: &TimeZone) -> EventTime {
    let z = d
        .to_zoned(tz.clone())
        .expect("a date inside EventTime's range");
    EventTime(to_i64(z.timestamp().as_nanosecond()))
}

fn dates_window(from: Date, to: Date, tz: &TimeZone) -> Window {
    Window {
        start: start_of_date(from, tz),
        end: start_of_date(to, tz),
    }
}

fn to_i64(n: i128) -> i64 {
    i64::try_from(n).expect("window bound inside EventTime's range")
}

/// A shorthand for tests: `Expected::Exact(Some(v))`.
pub fn exact(v: Value) -> Expected {
    Expected::Exact(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reckon_core::EventId;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    /// An instant written with its offset, e.g. `2024-03-31T03:30:00+02:00`.
    fn at(s: &str) -> EventTime {
        let ts: jiff::Timestamp = s.parse().unwrap();
        EventTime(i64::try_from(ts.as_nanosecond()).unwrap())
    }

    fn win(a: &str, b: &str) -> Window {
        Window {
            start: at(a),
            end: at(b),
        }
    }

    fn ev(key: &str, t: EventTime, id: &str, x: f64) -> Event {
        Event {
            stream: "s".into(),
            key: Key::from_tags([("k", key)]).unwrap(),
            time: t,
            id: Some(EventId(id.into())),
            fields: vec![("x".into(), Value::F64(x))],
        }
    }

    fn key(k: &str) -> Key {
        Key::from_tags([("k", k)]).unwrap()
    }

    fn hours(w: &Window) -> f64 {
        (w.end.0 - w.start.0) as f64 / 3.6e12
    }

    #[test]
    fn tumbling_windows_floor_before_the_epoch() {
        let w = tumbling_window(EventTime(-1), Span(10));
        assert_eq!((w.start.0, w.end.0), (-10, 0));
        let w = tumbling_window(EventTime(20), Span(10));
        assert_eq!((w.start.0, w.end.0), (20, 30));
    }

    #[test]
    fn berlin_spring_day_has_23_hours_and_autumn_day_25() {
        let b = tz("Europe/Berlin");
        // 2024-03-31: clocks jump from 02:00 CET to 03:00 CEST.
        let spring = day_window(at("2024-03-31T12:00:00+02:00"), &b);
        assert_eq!(spring, win("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"));
        assert_eq!(hours(&spring), 23.0);
        // 2024-10-27: clocks fall back from 03:00 CEST to 02:00 CET.
        let autumn = day_window(at("2024-10-27T12:00:00+01:00"), &b);
        assert_eq!(autumn, win("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"));
        assert_eq!(hours(&autumn), 25.0);
        // Both 02:30s of the autumn night belong to that one day.
        assert_eq!(day_window(at("2024-10-27T02:30:00+02:00"), &b), autumn);
        assert_eq!(day_window(at("2024-10-27T02:30:00+01:00"), &b), autumn);
        // The last instant before local midnight is still the day before.
        assert_eq!(
            day_window(at("2024-10-26T23:59:59+02:00"), &b).end,
            autumn.start
        );
    }

    #[test]
    fn day_starting_in_a_dst_gap_starts_after_the_gap() {
        // America/Santiago 2024-09-08: 00:00 -04 jumps to 01:00 -03; no local midnight.
        let w = day_window(at("2024-09-08T12:00:00-03:00"), &tz("America/Santiago"));
        assert_eq!(w.start, at("2024-09-08T01:00:00-03:00"));
        assert_eq!(hours(&w), 23.0);
    }

    #[test]
    fn berlin_dst_day_rolls_up_hours_into_23_and_25_hour_days() {
        let b = tz("Europe/Berlin");
        let o = RollupOracle::new(b)
            .level("hour", Level::Tumbling(Span::hours(1)))
            .level("day", Level::Day)
            .aggregate(OracleAgg::count("n"))
            .aggregate(OracleAgg::new("sum", AggKind::Sum, Some("x")));
        // One event per UTC hour from local midnight to local midnight, both DST days,
        // plus one just outside each day.
        let mut events = Vec::new();
        for (day_start, n) in [("2024-03-30T23:30:00Z", 23), ("2024-10-26T22:30:00Z", 25)] {
            let t0 = at(day_start);
            for h in 0..n {
                let t = t0.plus(Span::hours(h));
                events.push(ev("a", t, &format!("{day_start}/{h}"), 1.0));
            }
            events.push(ev(
                "a",
                t0.plus(Span::hours(n)),
                &format!("{day_start}/out"),
                100.0,
            ));
        }
        let r = o.run(&events);
        let spring = &r.windows[&(
            "day".into(),
            key("a"),
            win("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"),
        )];
        assert_eq!(spring.result.count, 23);
        assert_eq!(spring.result.values[1], exact(Value::F64(23.0)));
        assert_eq!(spring.parts.len(), 23);
        let autumn = &r.windows[&(
            "day".into(),
            key("a"),
            win("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"),
        )];
        assert_eq!(autumn.result.count, 25);
        assert_eq!(autumn.result.values[0], exact(Value::I64(25)));
        assert_eq!(autumn.parts.len(), 25);
        // Berlin's offsets are whole hours: epoch-aligned hours nest in its days.
        assert!(r.misnested().is_empty());
        assert_eq!(r.level("day").count(), 4);
        assert_eq!(r.level("hour").count(), 50);
    }

    #[test]
    fn iso_week_spans_a_month_boundary() {
        let hcm = tz("Asia/Ho_Chi_Minh");
        let o = RollupOracle::new(hcm.clone())
            .level("day", Level::Day)
            .level("week", Level::IsoWeek)
            .level("month", Level::Month)
            .aggregate(OracleAgg::new("mean", AggKind::Mean, Some("x")))
            .aggregate(OracleAgg::new("max", AggKind::Max, Some("x")));
        // Tue 2024-07-30 and Fri 2024-08-02, local: one ISO week (2024-W31), two months.
        let events = [
            ev("a", at("2024-07-30T10:00:00+07:00"), "1", 1.0),
            ev("a", at("2024-08-02T10:00:00+07:00"), "2", 4.0),
            // Sunday 23:59:59 local is still W31; Monday 00:00 local starts W32.
            ev("a", at("2024-08-04T23:59:59+07:00"), "3", 7.0),
            ev("a", at("2024-08-05T00:00:00+07:00"), "4", 100.0),
        ];
        let r = o.run(&events);
        let week = win("2024-07-28T17:00:00Z", "2024-08-04T17:00:00Z");
        assert_eq!(iso_week_window(events[0].time, &hcm), week);
        let w31 = &r.windows[&("week".into(), key("a"), week)];
        assert_eq!(w31.result.count, 3);
        assert_eq!(w31.result.values[0], exact(Value::F64(4.0)));
        assert_eq!(w31.result.values[1], exact(Value::F64(7.0)));
        assert_eq!(w31.parts.len(), 3, "three local days");
        let july = win("2024-06-30T17:00:00Z", "2024-07-31T17:00:00Z");
        let aug = win("2024-07-31T17:00:00Z", "2024-08-31T17:00:00Z");
        let m7 = &r.windows[&("month".into(), key("a"), july)];
        assert_eq!(m7.result.values[0], exact(Value::F64(1.0)));
        let m8 = &r.windows[&("month".into(), key("a"), aug)];
        assert_eq!(m8.result.count, 3);
        assert_eq!(m8.result.values[0], exact(Value::F64(37.0)));
        // The week straddles the months: its parts are days, and each month's parts
        // are the two weeks it touches.
        assert_eq!(m8.parts.len(), 2);
        assert_eq!(m8.parts.first(), Some(&week));
        // W31 is not inside either month: months cannot be merged from ISO weeks
        // (only from days), and the oracle says so.
        assert!(!r.misnested().is_empty());
    }

    #[test]
    fn month_boundary_in_vietnam_is_17_00_utc() {
        let hcm = tz("Asia/Ho_Chi_Minh");
        let oct = win("2017-09-30T17:00:00Z", "2017-10-31T17:00:00Z");
        assert_eq!(month_window(at("2017-10-31T16:59:59Z"), &hcm), oct);
        let nov = month_window(at("2017-10-31T17:00:00Z"), &hcm);
        assert_eq!(nov, win("2017-10-31T17:00:00Z", "2017-11-30T17:00:00Z"));
        // In UTC, the same instant would still be October.
        assert_eq!(
            month_window(at("2017-10-31T17:00:00Z"), &TimeZone::UTC).start,
            at("2017-10-01T00:00:00Z")
        );
        // February of a leap year.
        let feb = month_window(at("2024-02-29T12:00:00+07:00"), &hcm);
        assert_eq!(hours(&feb), 29.0 * 24.0);
    }

    #[test]
    fn filters_derived_fields_duplicates_and_empty_aggregates() {
        let o = RollupOracle::new(TimeZone::UTC)
            .level("m5", Level::Tumbling(Span::minutes(5)))
            .level("hour", Level::Tumbling(Span::hours(1)))
            .derive("twice", |e| {
                e.field("x")
                    .and_then(Value::as_f64)
                    .map(|x| Value::F64(2.0 * x))
            })
            .aggregate(OracleAgg::count("all"))
            .aggregate(OracleAgg::count("big").filter(|e| {
                e.field("x")
                    .and_then(Value::as_f64)
                    .is_some_and(|x| x > 2.0)
            }))
            .aggregate(
                OracleAgg::new("big_mean", AggKind::Mean, Some("x")).filter(|e| {
                    e.field("x")
                        .and_then(Value::as_f64)
                        .is_some_and(|x| x > 2.0)
                }),
            )
            .aggregate(OracleAgg::new("sum2", AggKind::Sum, Some("twice")))
            .aggregate(OracleAgg::new("first", AggKind::First, Some("x")))
            .aggregate(OracleAgg::new("last", AggKind::Last, Some("x")))
            .aggregate(OracleAgg::new("min", AggKind::Min, Some("x")));
        let m = |min: i64, sec: i64| EventTime::from_secs(min * 60 + sec);
        let events = [
            ev("a", m(1, 0), "1", 1.0),
            ev("a", m(3, 0), "2", 3.0),
            ev("a", m(2, 0), "3", 2.0),
            // A duplicate with another value: the first copy wins.
            ev("a", m(2, 0), "3", 50.0),
            ev("a", m(7, 0), "4", 5.0),
            ev("a", m(8, 0), "5", 1.5),
            ev("b", m(59, 59), "6", 1.0),
        ];
        let r = o.run(&events);
        let get = |lvl: &str, k: &str, s: i64, e: i64| {
            &r.windows[&(
                lvl.to_owned(),
                key(k),
                Window {
                    start: EventTime::from_secs(s),
                    end: EventTime::from_secs(e),
                },
            )]
                .result
        };
        let w0 = get("m5", "a", 0, 300);
        assert_eq!(w0.count, 3);
        assert_eq!(
            w0.values,
            vec![
                exact(Value::I64(3)),
                exact(Value::I64(1)),
                exact(Value::F64(3.0)),
                exact(Value::F64(12.0)),
                exact(Value::F64(1.0)),
                exact(Value::F64(3.0)),
                exact(Value::F64(1.0)),
            ]
        );
        let h = get("hour", "a", 0, 3600);
        assert_eq!(h.count, 5);
        assert_eq!(h.values[1], exact(Value::I64(2)));
        assert_eq!(h.values[2], exact(Value::F64(4.0)));
        assert_eq!(h.values[3], exact(Value::F64(25.0)));
        assert_eq!(h.values[5], exact(Value::F64(1.5)), "last by event time");
        // The hash is over the events as given: the same as the batch oracle's.
        let digests = [&events[0], &events[1], &events[2], &events[4], &events[5]]
            .iter()
            .fold(0u64, |acc, e| acc.wrapping_add(e.digest()));
        assert_eq!(h.hash, digests);
        // A filter that passes nothing: count 0, mean none.
        let b = get("hour", "b", 0, 3600);
        assert_eq!(b.values[1], exact(Value::I64(0)));
        assert_eq!(b.values[2], Expected::Exact(None));
        assert_eq!(r.level("m5").count(), 3);
        assert!(r.misnested().is_empty());
    }

    #[test]
    fn short_form_agrees_with_the_oracle() {
        let levels = vec![
            ("m5".to_owned(), Level::Tumbling(Span::minutes(5))),
            ("day".to_owned(), Level::Day),
        ];
        let aggs = [OracleAgg::new("mean", AggKind::Mean, Some("x"))];
        let events = [ev("a", EventTime::from_secs(10), "1", 2.0)];
        let short = rollup_oracle(&levels, &TimeZone::UTC, &aggs, &events);
        assert_eq!(short.len(), 2);
        assert!(
            short
                .values()
                .all(|w| w.values == vec![exact(Value::F64(2.0))])
        );
    }

    #[test]
    fn half_hour_offset_days_do_not_nest_epoch_hours() {
        // Asia/Kolkata is UTC+05:30: local midnight falls in the middle of a UTC hour.
        let o = RollupOracle::new(tz("Asia/Kolkata"))
            .level("hour", Level::Tumbling(Span::hours(1)))
            .level("day", Level::Day)
            .aggregate(OracleAgg::count("n"));
        let r = o.run(&[
            ev("a", at("2024-01-01T23:50:00+05:30"), "1", 1.0),
            ev("a", at("2024-01-02T00:10:00+05:30"), "2", 1.0),
        ]);
        assert_eq!(r.misnested().len(), 2);
    }
}
