//! The digester: turns a stream of corrections into at most one message per interval.
//!
//! Late data tends to come in bursts (a device reconnects and uploads an hour of
//! readings), and seed 000 sent one Slack message per recomputed window, which floods a
//! channel exactly when people need to read it. A [`Digest`] holds corrections until a
//! message is due and folds repeated corrections of one window into one entry, so a
//! message says "this window went from A to B" once, however many versions lay between.
//!
//! It never reads a clock: every call that depends on time takes `now`, which makes the
//! pacing testable and lets the caller use tokio's (possibly paused) clock.

use super::Correction;
use reckon_core::{EventTime, Key, Version};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A window's identity across versions: `(pipeline, key, window start)`.
type WindowId = (Arc<str>, Key, EventTime);

/// Collects corrections and says when to send them.
///
/// Pacing: at most one message per `interval`. The first message after a quiet period
/// (nothing sent for at least `interval`) is due as soon as its first correction
/// arrives; corrections arriving within the interval after a message wait for the next
/// slot. An interval of zero sends whatever is pending at every [`Digest::poll`].
///
/// ```
/// use reckon_connect::webhook::Digest;
/// use std::time::{Duration, Instant};
///
/// let t0 = Instant::now();
/// let mut digest = Digest::new(Duration::from_secs(10));
/// assert!(digest.poll(t0).is_none()); // nothing pending
/// assert_eq!(digest.next_send_at(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Digest {
    interval: Duration,
    /// When the last batch was taken.
    last_sent: Option<Instant>,
    /// When the oldest pending correction arrived.
    first_pending_at: Option<Instant>,
    /// One entry per window, in order of first arrival.
    pending: Vec<Correction>,
    index: HashMap<WindowId, usize>,
    /// Corrections pushed since the last batch (before merging).
    received: usize,
    first_change: u64,
    last_change: u64,
}

/// One message's worth of corrections, taken from a [`Digest`].
#[derive(Debug, Clone, PartialEq)]
pub struct DigestBatch {
    /// One entry per window, in the order the windows were first corrected. Each has
    /// the oldest `previous` and the newest emission seen for its window, and the
    /// change number of that newest emission.
    pub corrections: Vec<Correction>,
    /// The smallest change number folded into this batch.
    pub first_change: u64,
    /// The largest change number folded into this batch: once the batch is delivered
    /// (or given up on), the caller's cursor can move here.
    pub last_change: u64,
    /// How many corrections were pushed to make this batch (≥ `corrections.len()`;
    /// larger when windows were corrected several times).
    pub received: usize,
}

impl Digest {
    /// The longest pacing interval: a year. Longer ones would only risk overflowing
    /// `Instant` arithmetic; nobody waits a year for an alert.
    pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

    /// An empty digest sending at most one message per `interval` (at most
    /// [`Digest::MAX_INTERVAL`]; longer intervals are shortened to it).
    pub fn new(interval: Duration) -> Digest {
        Digest {
            interval: interval.min(Self::MAX_INTERVAL),
            last_sent: None,
            first_pending_at: None,
            pending: Vec::new(),
            index: HashMap::new(),
            received: 0,
            first_change: u64::MAX,
            last_change: 0,
        }
    }

    /// The pacing interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Number of windows pending (a window corrected twice counts once).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Adds a correction that arrived at `now`. A correction of a window already
    /// pending is merged into it: the entry keeps the older `previous` and the newer
    /// emission (by version; on a tie, the later push wins).
    pub fn push(&mut self, now: Instant, correction: Correction) {
        if self.first_pending_at.is_none() {
            self.first_pending_at = Some(now);
        }
        self.received += 1;
        self.first_change = self.first_change.min(correction.change);
        self.last_change = self.last_change.max(correction.change);
        let id: WindowId = (
            correction.emission.pipeline.clone(),
            correction.emission.key.clone(),
            correction.emission.window.start,
        );
        match self.index.entry(id) {
            Entry::Vacant(v) => {
                v.insert(self.pending.len());
                self.pending.push(correction);
            }
            Entry::Occupied(o) => {
                if let Some(entry) = self.pending.get_mut(*o.get()) {
                    merge(entry, correction);
                }
            }
        }
    }

    /// When the pending corrections are due, or `None` if nothing is pending.
    pub fn next_send_at(&self) -> Option<Instant> {
        let first = self.first_pending_at?;
        let slot = match self.last_sent {
            None => first,
            // The interval is capped, so this only fails for an `Instant` at the very
            // end of its range; sending then beats never sending.
            Some(sent) => sent.checked_add(self.interval).unwrap_or(first),
        };
        Some(slot.max(first))
    }

    /// Takes the pending corrections if a message is due at `now`, and records `now`
    /// as the time of that message.
    pub fn poll(&mut self, now: Instant) -> Option<DigestBatch> {
        match self.next_send_at() {
            Some(due) if due <= now => self.take(now),
            _ => None,
        }
    }

    /// Takes the pending corrections whether or not a message is due (at shutdown),
    /// recording `now` as the time of that message.
    pub fn flush(&mut self, now: Instant) -> Option<DigestBatch> {
        self.take(now)
    }

    fn take(&mut self, now: Instant) -> Option<DigestBatch> {
        if self.pending.is_empty() {
            return None;
        }
        let batch = DigestBatch {
            corrections: std::mem::take(&mut self.pending),
            first_change: self.first_change,
            last_change: self.last_change,
            received: self.received,
        };
        self.index.clear();
        self.first_pending_at = None;
        self.received = 0;
        self.first_change = u64::MAX;
        self.last_change = 0;
        self.last_sent = Some(now);
        Some(batch)
    }
}

/// Orders "what a window held before": no result at all is older than any version.
fn previous_rank(c: &Correction) -> Version {
    c.previous.as_ref().map_or(Version(0), |p| p.version)
}

fn merge(entry: &mut Correction, newer: Correction) {
    let keep_previous_of_newer = previous_rank(&newer) < previous_rank(entry);
    let Correction {
        change,
        stream,
        emission,
        previous,
    } = newer;
    if keep_previous_of_newer {
        entry.previous = previous;
    }
    if emission.version >= entry.emission.version {
        entry.emission = emission;
        entry.change = change;
        entry.stream = stream;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reckon_core::{Checksum, Emission, EmissionKind, ProcessingTime, Value, Watermark, Window};

    const HOUR: i64 = 3_600_000_000_000;

    fn emission(key: &str, hour: i64, version: u32, count: u64) -> Emission {
        Emission {
            pipeline: Arc::from("water_level_mean_1h"),
            key: Key::from_tags([("i", key)]).expect("valid key"),
            window: Window {
                start: EventTime(hour * HOUR),
                end: EventTime((hour + 1) * HOUR),
            },
            version: Version(version),
            kind: if version == 1 {
                EmissionKind::OnTime
            } else {
                EmissionKind::Late
            },
            columns: Arc::from(vec![Arc::<str>::from("mean")]),
            values: vec![Some(Value::F64(count as f64 / 100.0))],
            count,
            checksum: Checksum {
                count,
                hash: u64::from(version),
            },
            emitted_at: ProcessingTime(hour * HOUR),
            watermark: Watermark(EventTime(hour * HOUR)),
            states: None,
        }
    }

    /// Version `v` of window `(key, hour)`, replacing version `v - 1`.
    fn corr(change: u64, key: &str, hour: i64, v: u32) -> Correction {
        Correction {
            change,
            stream: Arc::from("water_level"),
            emission: emission(key, hour, v, 359 + u64::from(v)),
            previous: (v > 1).then(|| emission(key, hour, v - 1, 358 + u64::from(v))),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_message_after_quiet_period_goes_at_once() {
        let t0 = Instant::now();
        let mut d = Digest::new(ms(10_000));
        assert!(d.poll(t0).is_none());
        d.push(t0, corr(1, "1", 0, 2));
        assert_eq!(d.next_send_at(), Some(t0));
        let b = d.poll(t0).expect("due at once");
        assert_eq!(b.corrections.len(), 1);
        assert!(d.is_empty());
        assert_eq!(d.next_send_at(), None);
    }

    #[test]
    fn interval_is_respected() {
        let t0 = Instant::now();
        let mut d = Digest::new(ms(10_000));
        d.push(t0, corr(1, "1", 0, 2));
        assert!(d.poll(t0).is_some());
        // Arrives 1 s after a message: waits for the slot at 10 s.
        d.push(t0 + ms(1_000), corr(2, "2", 0, 2));
        assert_eq!(d.next_send_at(), Some(t0 + ms(10_000)));
        assert!(d.poll(t0 + ms(1_000)).is_none());
        assert!(d.poll(t0 + ms(9_999)).is_none());
        d.push(t0 + ms(9_000), corr(3, "3", 0, 2));
        let b = d.poll(t0 + ms(10_000)).expect("due at the slot");
        assert_eq!(b.corrections.len(), 2);
        assert_eq!((b.first_change, b.last_change), (2, 3));
        // A quiet period longer than the interval: the next one goes at once again.
        d.push(t0 + ms(30_000), corr(4, "4", 0, 2));
        assert_eq!(d.next_send_at(), Some(t0 + ms(30_000)));
        assert!(d.poll(t0 + ms(30_000)).is_some());
    }

    #[test]
    fn zero_interval_sends_every_poll() {
        let t0 = Instant::now();
        let mut d = Digest::new(Duration::ZERO);
        for i in 0..3u64 {
            d.push(t0, corr(i + 1, "1", i as i64, 2));
            let b = d.poll(t0).expect("zero interval never waits");
            assert_eq!(b.first_change, i + 1);
        }
    }

    #[test]
    fn same_window_is_merged_oldest_previous_newest_emission() {
        let t0 = Instant::now();
        let mut d = Digest::new(ms(1_000));
        d.push(t0, corr(10, "7", 5, 2)); // v1 -> v2
        d.push(t0, corr(11, "8", 5, 2)); // another key
        d.push(t0, corr(12, "7", 5, 3)); // v2 -> v3
        d.push(t0, corr(13, "7", 6, 2)); // another window of the same key
        d.push(t0, corr(14, "7", 5, 4)); // v3 -> v4
        assert_eq!(d.len(), 3);
        let b = d.poll(t0).expect("due");
        assert_eq!(b.received, 5);
        assert_eq!((b.first_change, b.last_change), (10, 14));
        let first = &b.corrections[0];
        assert_eq!(first.emission.key.as_str(), "i=7");
        assert_eq!(first.emission.window.start, EventTime(5 * HOUR));
        assert_eq!(first.emission.version, Version(4));
        assert_eq!(first.previous.as_ref().map(|p| p.version), Some(Version(1)));
        assert_eq!(first.change, 14);
        assert_eq!(first.emission.count, 363);
        assert_eq!(first.previous.as_ref().map(|p| p.count), Some(360));
        assert_eq!(b.corrections[1].emission.key.as_str(), "i=8");
        assert_eq!(b.corrections[2].emission.window.start, EventTime(6 * HOUR));
    }

    #[test]
    fn merge_is_by_version_not_arrival() {
        let t0 = Instant::now();
        let mut d = Digest::new(Duration::ZERO);
        d.push(t0, corr(21, "1", 0, 3));
        d.push(t0, corr(20, "1", 0, 2)); // older correction pushed late
        let b = d.poll(t0).expect("due");
        let c = &b.corrections[0];
        assert_eq!(c.emission.version, Version(3));
        assert_eq!(c.change, 21);
        assert_eq!(c.previous.as_ref().map(|p| p.version), Some(Version(1)));
        assert_eq!((b.first_change, b.last_change), (20, 21));
    }

    #[test]
    fn first_result_then_correction_keeps_no_previous() {
        let t0 = Instant::now();
        let mut d = Digest::new(Duration::ZERO);
        d.push(t0, corr(1, "1", 0, 1)); // first result (notify = all)
        d.push(t0, corr(2, "1", 0, 2));
        let b = d.poll(t0).expect("due");
        assert_eq!(b.corrections.len(), 1);
        assert!(b.corrections[0].previous.is_none());
        assert_eq!(b.corrections[0].emission.version, Version(2));
    }

    #[test]
    fn flush_takes_what_is_not_yet_due() {
        let t0 = Instant::now();
        let mut d = Digest::new(ms(10_000));
        d.push(t0, corr(1, "1", 0, 2));
        assert!(d.poll(t0).is_some());
        d.push(t0, corr(2, "1", 0, 3));
        assert!(d.poll(t0).is_none());
        let b = d.flush(t0).expect("flush ignores pacing");
        assert_eq!(b.last_change, 2);
        assert!(d.flush(t0).is_none());
    }

    #[test]
    fn huge_interval_does_not_overflow() {
        let t0 = Instant::now();
        let mut d = Digest::new(Duration::MAX);
        d.push(t0, corr(1, "1", 0, 2));
        assert!(d.poll(t0).is_some());
        d.push(t0, corr(2, "1", 0, 3));
        assert_eq!(d.interval(), Digest::MAX_INTERVAL);
        assert_eq!(d.next_send_at(), Some(t0 + Digest::MAX_INTERVAL));
        assert!(d.poll(t0 + ms(1_000)).is_none());
    }
}
