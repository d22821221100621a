//! An independent oracle for running totals (seed 003): from the final list of accepted
//! events, every bucket's sum and count, and the total of any key at any event time.
//!
//! It shares no code with the engine's running total (`reckon_core::operator`): no
//! segment tree, no incremental state. A total at `t` is a plain loop over the key's
//! events sorted by time, summed exactly (integers in `i128`, floats with
//! [`crate::fsum`]); a clamped total applies the values of each distinct time together
//! and takes `max(0, ·)`, from zero at each reset. Resets come from jiff's civil dates
//! (`DateTime::to_zoned`, the `compatible` rule: a gap resets at the first instant after
//! it, a fold at its first occurrence). Values are a Rust closure, not the engine's
//! expression language.
//!
//! ```
//! use reckon_core::{Event, EventTime, Key, Span, Value};
//! use reckon_testkit::running::RunningOracle;
//!
//! let ev = |secs: i64, d: i64| Event {
//!     stream: "doors".into(),
//!     key: Key::parse("space=a").unwrap(),
//!     time: EventTime::from_secs(secs),
//!     id: None,
//!     fields: vec![("d".into(), Value::I64(d))],
//! };
//! let oracle = RunningOracle::new(Span::minutes(1), |e| e.field("d").cloned());
//! let events = [ev(0, 1), ev(30, 1), ev(90, -1)];
//! let key = Key::parse("space=a").unwrap();
//! assert_eq!(oracle.total_at(&events, &key, EventTime::from_secs(45)), Some(Value::I64(2)));
//! assert_eq!(oracle.total_at(&events, &key, EventTime::from_secs(-1)), None);
//! assert_eq!(oracle.buckets(&events).len(), 2);
//! ```

use crate::fsum;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use reckon_core::{Event, EventTime, Key, Span, Value};
use std::collections::{BTreeMap, HashSet};

/// The value an event adds (`None`: it has none; such events are not accepted).
pub type ValueFn = fn(&Event) -> Option<Value>;

/// What the oracle computes: the engine's `RunningSpec`, restated.
#[derive(Clone, Debug)]
pub struct RunningOracle {
    bucket: i64,
    value: ValueFn,
    reset: Option<(Time, TimeZone)>,
    clamp: bool,
    gauge: bool,
    /// Mapping rows (their key is the events' key, their time the start of their
    /// validity) and the row fields that make the totals' key.
    mapping: Option<(Vec<Event>, Vec<String>)>,
}

/// One bucket: its count, the wrapping sum of its events' digests, its sum, and (with a
/// clamp) the total at its end.
#[derive(Clone, Debug, PartialEq)]
pub struct OracleBucket {
    /// Events in the bucket.
    pub count: u64,
    /// Wrapping sum of their digests (the checksum's hash).
    pub hash: u64,
    /// The sum of their values.
    pub delta: Value,
    /// Clamped: the total after the bucket's last event.
    pub total: Option<Value>,
}

/// An exact sum: integers exactly, floats through `fsum`.
#[derive(Default)]
struct Sum {
    int: i128,
    floats: Vec<f64>,
}

impl Sum {
    fn add(&mut self, v: &Value) {
        match v {
            Value::I64(i) => self.int += i128::from(*i),
            Value::F64(x) => self.floats.push(*x),
            other => panic!("the oracle sums numbers, not {other:?}"),
        }
    }
    fn value(&self) -> Value {
        if self.floats.is_empty() {
            return Value::I64(i64::try_from(self.int).expect("the test's sums fit in i64"));
        }
        let mut xs = self.floats.clone();
        xs.push(self.int as f64);
        Value::F64(fsum(&xs))
    }
}

impl RunningOracle {
    /// Buckets of `bucket`, each event adding `value(event)`, no reset, no clamp.
    pub fn new(bucket: Span, value: ValueFn) -> RunningOracle {
        RunningOracle {
            bucket: bucket.0,
            value,
            reset: None,
            clamp: false,
            gauge: false,
            mapping: None,
        }
    }

    /// Maps each event by the row of `rows` with its key that is valid at its time (the
    /// latest row at or before it; rows at the same time: the one with the largest
    /// digest): the total's key is the row's `key_fields`, and the value reads the
    /// event's fields, then the row's. Events without a row are in no total.
    pub fn mapping(mut self, rows: &[Event], key_fields: &[&str]) -> RunningOracle {
        self.mapping = Some((
            rows.to_vec(),
            key_fields.iter().map(|f| f.to_string()).collect(),
        ));
        self
    }

    /// The event as its row maps it (itself without a mapping); `None` without a row.
    fn mapped(&self, e: &Event) -> Option<Event> {
        let Some((rows, key_fields)) = &self.mapping else {
            return Some(e.clone());
        };
        let mut best: Option<&Event> = None;
        for r in rows {
            if r.key == e.key
                && r.time <= e.time
                && best.is_none_or(|b| (r.time, r.digest()) > (b.time, b.digest()))
            {
                best = Some(r);
            }
        }
        let row = best?;
        let tags: Vec<(String, String)> = key_fields
            .iter()
            .map(|f| {
                let v = match row.field(f) {
                    Some(Value::Str(s)) => s.to_string(),
                    Some(v) => v.to_string(),
                    None => panic!("the oracle's rows have every key field"),
                };
                (f.clone(), v)
            })
            .collect();
        let mut m = e.clone();
        m.key = Key::from_tags(tags).expect("a key");
        for (name, v) in &row.fields {
            if m.field(name).is_none() {
                m.fields.push((name.clone(), v.clone()));
            }
        }
        Some(m)
    }

    /// Resets every day at local time `at` in `tz`.
    pub fn reset(mut self, at: Time, tz: TimeZone) -> RunningOracle {
        self.reset = Some((at, tz));
        self
    }

    /// Clamped at zero.
    pub fn clamp(mut self) -> RunningOracle {
        self.clamp = true;
        self
    }

    /// A gauge: the value at `t` is the last reading at or before it (by time, then
    /// the digest of the event as sent), and a bucket's `delta` is its last reading.
    pub fn gauge(mut self) -> RunningOracle {
        self.gauge = true;
        self
    }

    /// The latest reset at or before `t`, if there is a reset.
    pub fn reset_before(&self, t: EventTime) -> Option<EventTime> {
        let (at, tz) = self.reset.as_ref()?;
        let ts = jiff::Timestamp::from_nanosecond(i128::from(t.0)).expect("a time jiff knows");
        let mut date = ts.to_zoned(tz.clone()).date();
        loop {
            let r = date
                .to_datetime(*at)
                .to_zoned(tz.clone())
                .expect("a reset jiff knows");
            let r = EventTime(i64::try_from(r.timestamp().as_nanosecond()).expect("i64 time"));
            if r <= t {
                return Some(r);
            }
            date = date.yesterday().expect("a date jiff knows");
        }
    }

    /// The distinct events (an id seen before, for the same key, is a duplicate), as
    /// their rows map them, with a value; each with the digest of the event as it was
    /// sent (what its window's checksum counts).
    fn distinct(&self, events: &[Event]) -> Vec<(Event, u64)> {
        let mut seen = HashSet::new();
        events
            .iter()
            .filter(|e| match &e.id {
                Some(id) => seen.insert((e.key.clone(), id.0.clone())),
                None => true,
            })
            .filter_map(|e| Some((self.mapped(e)?, e.digest())))
            .filter(|(e, _)| (self.value)(e).is_some())
            .collect()
    }

    /// Every bucket with an event, by (key, bucket start).
    pub fn buckets(&self, events: &[Event]) -> BTreeMap<(Key, EventTime), OracleBucket> {
        let mut by: BTreeMap<(Key, i64), Vec<(Event, u64)>> = BTreeMap::new();
        for (e, digest) in self.distinct(events) {
            let start = e.time.0.div_euclid(self.bucket) * self.bucket;
            by.entry((e.key.clone(), start))
                .or_default()
                .push((e, digest));
        }
        by.into_iter()
            .map(|((key, start), evs)| {
                let mut sum = Sum::default();
                let mut hash = 0u64;
                for (e, digest) in &evs {
                    sum.add(&(self.value)(e).expect("filtered above"));
                    hash = hash.wrapping_add(*digest);
                }
                let last = evs
                    .iter()
                    .map(|(e, _)| e.time)
                    .max()
                    .expect("a bucket has events");
                let total = self.clamp.then(|| {
                    self.total_at(events, &key, last)
                        .expect("the bucket's own events are at or before its last")
                });
                // A gauge's bucket: its last reading (by time, then digest as sent).
                let reading = evs
                    .iter()
                    .max_by_key(|(e, d)| (e.time, *d))
                    .and_then(|(e, _)| (self.value)(e));
                let b = OracleBucket {
                    count: evs.len() as u64,
                    hash,
                    delta: if self.gauge {
                        reading.expect("a bucket has events")
                    } else {
                        sum.value()
                    },
                    total,
                };
                ((key, EventTime(start)), b)
            })
            .collect()
    }

    /// The total of `key` at `at`: `None` when the key has no event at or before it.
    pub fn total_at(&self, events: &[Event], key: &Key, at: EventTime) -> Option<Value> {
        if self.gauge {
            return self
                .distinct(events)
                .into_iter()
                .filter(|(e, _)| &e.key == key && e.time <= at)
                .max_by_key(|(e, d)| (e.time, *d))
                .and_then(|(e, _)| (self.value)(&e));
        }
        let mut evs: Vec<Event> = self
            .distinct(events)
            .into_iter()
            .map(|(e, _)| e)
            .filter(|e| &e.key == key && e.time <= at)
            .collect();
        if evs.is_empty() {
            return None;
        }
        let from = self.reset_before(at).unwrap_or(EventTime::MIN);
        evs.retain(|e| e.time >= from);
        evs.sort_by_key(|e| e.time);
        if !self.clamp {
            let mut sum = Sum::default();
            for e in &evs {
                sum.add(&(self.value)(e).expect("filtered above"));
            }
            return Some(sum.value());
        }
        // Clamped: the values of each time together, then max(0, ·).
        let mut x = Sum::default();
        let mut i = 0;
        while i < evs.len() {
            let t = evs[i].time;
            while i < evs.len() && evs[i].time == t {
                x.add(&(self.value)(&evs[i]).expect("filtered above"));
                i += 1;
            }
            let negative = match x.value() {
                Value::I64(v) => v < 0,
                Value::F64(v) => v < 0.0,
                _ => false,
            };
            if negative {
                x = Sum::default();
            }
        }
        Some(x.value())
    }
}
