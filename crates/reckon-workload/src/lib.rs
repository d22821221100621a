//! Deterministic workload generators for reckon's demo, benchmarks and tests.
//!
//! - [`Seed000`] reproduces seed 000's `write.py`: water levels at 100 locations
//!   (tag `i` = 0..99), one reading per location every 10 s, plus late readings spread
//!   over the last 24 h.
//! - [`RandomWorkload`] makes messier input: several keys and source partitions,
//!   late events, exact duplicates (same id), partitions that go silent.
//!
//! Both are pure functions of their config and seed (own [`SplitMix64`] generator, so
//! the streams do not change when a dependency does).

use reckon_core::{Event, EventId, EventTime, Key, PartitionId, ProcessingTime, Span, Value};
use std::sync::Arc;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for test data.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` (`n > 0`); 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// One event as it arrives: when (processing time), from which partition, what.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// Processing time of the arrival.
    pub at: ProcessingTime,
    /// Source partition.
    pub partition: PartitionId,
    /// The event.
    pub event: Event,
}

impl AsRef<Event> for Arrival {
    fn as_ref(&self) -> &Event {
        &self.event
    }
}

/// Seed 000's workload (`write.py`).
#[derive(Clone, Debug)]
pub struct Seed000 {
    /// Number of locations (tag `i`), 100 in the seed.
    pub locations: u32,
    /// Time between two readings of a location, 10 s in the seed.
    pub interval: Span,
    /// Probability that a location also sends one late reading in a tick; 1.0 in the
    /// seed (one late point per location per tick), about 0.11 gives 10% late events.
    pub late_probability: f64,
    /// How old a late reading can be, 24 h in the seed.
    pub max_lateness: Span,
    /// Event time (and processing time) of the first tick.
    pub start: EventTime,
    /// Random seed.
    pub seed: u64,
    /// Give every event an id (`<i>-<nanos>`), for de-duplication.
    pub with_ids: bool,
}

impl Default for Seed000 {
    fn default() -> Self {
        Seed000 {
            locations: 100,
            interval: Span::secs(10),
            late_probability: 1.0,
            max_lateness: Span::hours(24),
            // 2022-06-13T00:00:00Z, the day of the seed's Slack message.
            start: EventTime::from_secs(1_655_078_400),
            seed: 0,
            with_ids: false,
        }
    }
}

/// The stream name of seed 000 (InfluxDB measurement).
pub const WATER_LEVEL: &str = "water_level";

impl Seed000 {
    /// Seed 000 with about `fraction` of all events late (e.g. 0.1).
    pub fn with_late_fraction(fraction: f64) -> Seed000 {
        // Per tick a location sends 1 on-time + p late readings: late share p / (1 + p).
        let p = if fraction >= 1.0 {
            1.0
        } else {
            fraction / (1.0 - fraction)
        };
        Seed000 {
            late_probability: p.min(1.0),
            ..Seed000::default()
        }
    }

    /// An endless, deterministic stream of arrivals, tick by tick.
    pub fn arrivals(&self) -> impl Iterator<Item = Arrival> + use<> {
        let cfg = self.clone();
        let stream: Arc<str> = Arc::from(WATER_LEVEL);
        let field: Arc<str> = Arc::from("level");
        let keys: Vec<Key> = (0..cfg.locations)
            .map(|i| Key::from_tags([("i", i.to_string())]).unwrap_or_else(|_| Key::empty()))
            .collect();
        let mut rng = SplitMix64::new(cfg.seed);
        let mut tick: i64 = 0;
        let mut buf: std::collections::VecDeque<Arrival> = std::collections::VecDeque::new();
        std::iter::from_fn(move || {
            while buf.is_empty() {
                let now = cfg
                    .start
                    .0
                    .saturating_add(tick.saturating_mul(cfg.interval.0));
                for (i, key) in keys.iter().enumerate() {
                    let mut push = |t: i64, rng: &mut SplitMix64| {
                        buf.push_back(Arrival {
                            at: ProcessingTime(now),
                            partition: PartitionId(0),
                            event: Event {
                                stream: stream.clone(),
                                key: key.clone(),
                                time: EventTime(t),
                                id: cfg.with_ids.then(|| EventId(Arc::from(format!("{i}-{t}")))),
                                fields: vec![(field.clone(), Value::F64(level(i, t, rng)))],
                            },
                        });
                    };
                    push(now, &mut rng);
                    if rng.chance(cfg.late_probability) {
                        let back = 1 + rng.below(cfg.max_lateness.0.max(1) as u64) as i64;
                        push(now - back, &mut rng);
                    }
                }
                tick += 1;
            }
            buf.pop_front()
        })
    }
}

/// A water level: a daily tide per location plus noise, in metres, rounded to mm.
fn level(i: usize, t: i64, rng: &mut SplitMix64) -> f64 {
    let day = 86_400e9;
    let phase = (t as f64 / day) * std::f64::consts::TAU + i as f64;
    let x = 5.0 + 2.0 * phase.sin() + (rng.unit() - 0.5) * 0.2;
    (x * 1000.0).round() / 1000.0
}

/// A messy random workload for property tests and soaks.
#[derive(Clone, Debug)]
pub struct RandomWorkload {
    /// Number of distinct keys.
    pub keys: u32,
    /// Number of source partitions.
    pub partitions: u32,
    /// Number of distinct events (duplicates come on top).
    pub events: usize,
    /// Average event-time step of the "current" time per event.
    pub step: Span,
    /// Probability that an event is late (its time is drawn behind the current time).
    pub late_probability: f64,
    /// How far behind a late event can be.
    pub max_lateness: Span,
    /// Probability that an event is sent again later (same id, same content).
    pub duplicate_probability: f64,
    /// Probability that a partition goes silent for a while after an event.
    pub silence_probability: f64,
    /// How long (processing time) a silence lasts at most.
    pub max_silence: Span,
    /// Random seed.
    pub seed: u64,
}

impl Default for RandomWorkload {
    fn default() -> Self {
        RandomWorkload {
            keys: 4,
            partitions: 2,
            events: 200,
            step: Span::secs(7),
            late_probability: 0.2,
            max_lateness: Span::hours(2),
            duplicate_probability: 0.05,
            silence_probability: 0.01,
            max_silence: Span::minutes(10),
            seed: 0,
        }
    }
}

impl RandomWorkload {
    /// The arrivals, in arrival order, with non-decreasing processing times. Event
    /// times start at 2024-01-01T00:00:00Z; processing time follows event time, plus
    /// the silences.
    pub fn arrivals(&self) -> Vec<Arrival> {
        let mut rng = SplitMix64::new(self.seed);
        let stream: Arc<str> = Arc::from("random");
        let names: [Arc<str>; 3] = [Arc::from("x"), Arc::from("n"), Arc::from("tag")];
        let keys: Vec<Key> = (0..self.keys.max(1))
            .map(|k| Key::from_tags([("k", k.to_string())]).unwrap_or_else(|_| Key::empty()))
            .collect();
        let partitions = self.partitions.max(1);
        let t0 = EventTime::from_secs(1_704_067_200).0;
        let mut now = t0;
        let mut pt = t0;
        // Per partition: processing time until which it is silent.
        let mut silent_until = vec![i64::MIN; partitions as usize];
        let mut out: Vec<Arrival> = Vec::with_capacity(self.events + self.events / 8);
        let mut pending_dups: Vec<(i64, Arrival)> = Vec::new();
        for n in 0..self.events {
            now += rng.below(2 * self.step.0.max(1) as u64) as i64;
            pt = pt.max(now) + rng.below(1_000_000_000) as i64;
            let mut p = rng.below(u64::from(partitions)) as u32;
            // A silent partition's events go to another partition (if any is awake).
            if silent_until[p as usize] > pt {
                if let Some(q) = (0..partitions).find(|&q| silent_until[q as usize] <= pt) {
                    p = q;
                } else {
                    pt = silent_until[p as usize];
                }
            }
            let t = if rng.chance(self.late_probability) {
                now - rng.below(self.max_lateness.0.max(1) as u64) as i64
            } else {
                now
            };
            let key = keys[rng.below(keys.len() as u64) as usize].clone();
            let mut fields = vec![(
                names[0].clone(),
                Value::F64(((rng.unit() * 2000.0 - 1000.0) * 100.0).round() / 100.0),
            )];
            if rng.chance(0.7) {
                fields.push((names[1].clone(), Value::I64(rng.below(100) as i64 - 50)));
            }
            if rng.chance(0.2) {
                fields.push((
                    names[2].clone(),
                    Value::Str(Arc::from(format!("t{}", rng.below(5)))),
                ));
            }
            let arrival = Arrival {
                at: ProcessingTime(pt),
                partition: PartitionId(p),
                event: Event {
                    stream: stream.clone(),
                    key,
                    time: EventTime(t),
                    id: Some(EventId(Arc::from(format!("e{n}")))),
                    fields,
                },
            };
            if rng.chance(self.duplicate_probability) {
                let delay = rng.below(self.max_lateness.0.max(1) as u64) as i64;
                pending_dups.push((pt + delay, arrival.clone()));
            }
            out.push(arrival);
            if rng.chance(self.silence_probability) {
                silent_until[p as usize] = pt + rng.below(self.max_silence.0.max(1) as u64) as i64;
            }
        }
        // Duplicates arrive later, on a random partition, in processing-time order.
        for (at, mut a) in pending_dups {
            a.at = ProcessingTime(at);
            a.partition = PartitionId(rng.below(u64::from(partitions)) as u32);
            out.push(a);
        }
        out.sort_by_key(|a| a.at);
        out
    }
}

/// Appends `e` as one NDJSON line (with the newline) in the form reckon's JSON
/// decoder reads with `time_format = "unix_ns"`: the key's tags, `time` as integer
/// nanoseconds, `id` if the event has one, then the fields. What the demo's generator,
/// the end-to-end tests and the HTTP load generator send.
pub fn ndjson_line(e: &Event, out: &mut String) {
    use std::fmt::Write as _;
    let mut obj = serde_json::Map::new();
    for (k, v) in e.key.tags() {
        obj.insert(k, serde_json::Value::String(v));
    }
    obj.insert("time".into(), serde_json::Value::from(e.time.0));
    if let Some(id) = &e.id {
        obj.insert("id".into(), serde_json::Value::String(id.0.to_string()));
    }
    for (n, v) in &e.fields {
        let j = match v {
            reckon_core::Value::F64(x) => serde_json::Value::from(*x),
            reckon_core::Value::I64(i) => serde_json::Value::from(*i),
            reckon_core::Value::Bool(b) => serde_json::Value::from(*b),
            reckon_core::Value::Str(s) => serde_json::Value::from(&**s),
        };
        obj.insert(n.to_string(), j);
    }
    let _ = writeln!(out, "{}", serde_json::Value::Object(obj));
}

/// Appends `e` as one line of InfluxDB line protocol (with the newline): the stream as
/// the measurement, the key's tags and the id (if any) as tags, the fields as fields
/// (floats as Rust prints them, which line protocol reads as floats; integers with
/// `i`), the time in nanoseconds. What the decode and HTTP benchmarks send.
pub fn line_protocol_line(e: &Event, out: &mut String) {
    use std::fmt::Write as _;
    out.push_str(&e.stream);
    for (k, v) in e.key.tags() {
        let _ = write!(out, ",{k}={v}");
    }
    if let Some(id) = &e.id {
        let _ = write!(out, ",id={}", id.0);
    }
    for (i, (n, v)) in e.fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        let _ = match v {
            Value::F64(x) => write!(out, "{n}={x}"),
            Value::I64(x) => write!(out, "{n}={x}i"),
            Value::Bool(b) => write!(out, "{n}={b}"),
            Value::Str(s) => write!(out, "{n}=\"{s}\""),
        };
    }
    let _ = writeln!(out, " {}", e.time.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed000_is_deterministic_and_has_the_requested_late_share() {
        let cfg = Seed000::with_late_fraction(0.1);
        let a: Vec<_> = cfg.arrivals().take(50_000).collect();
        let b: Vec<_> = cfg.arrivals().take(50_000).collect();
        assert_eq!(a, b);
        let late = a.iter().filter(|x| x.event.time.0 < x.at.0).count() as f64;
        let share = late / a.len() as f64;
        assert!((share - 0.1).abs() < 0.01, "late share {share}");
        // On-time readings come every 10 s per location.
        assert_eq!(a[0].event.time, cfg.start);
        assert!(
            a.iter()
                .all(|x| x.at.0 - x.event.time.0 <= Span::hours(24).0)
        );
    }

    #[test]
    fn seed000_default_sends_one_late_point_per_location_per_tick() {
        let a: Vec<_> = Seed000::default().arrivals().take(2000).collect();
        assert_eq!(a.len(), 2000);
        let late = a.iter().filter(|x| x.event.time.0 < x.at.0).count();
        assert_eq!(late, 1000);
    }

    #[test]
    fn random_workload_has_duplicates_and_ordered_arrivals() {
        let w = RandomWorkload {
            events: 2000,
            duplicate_probability: 0.1,
            ..RandomWorkload::default()
        };
        let a = w.arrivals();
        assert!(a.len() > 2100);
        assert!(a.windows(2).all(|p| p[0].at <= p[1].at));
        let ids: std::collections::HashSet<_> = a.iter().map(|x| x.event.id.clone()).collect();
        assert_eq!(ids.len(), 2000);
        assert_eq!(a, w.arrivals());
    }
}
