//! Watermarks: how far event time has progressed, per source partition and overall.
//!
//! A partition's watermark is `max event time seen − out_of_orderness`. The pipeline's
//! watermark is the minimum over its *active* partitions, and it never goes back (law:
//! every value this tracker reports is ≥ the previous one). Two processing-time rules
//! keep results flowing when sources go quiet (seed 001's *z*):
//!
//! - a partition with no data for `idle_timeout` is idle and stops holding the
//!   watermark back, until it sends data again;
//! - when the data-driven watermark has not moved for `idle_timeout`, the watermark
//!   advances with processing time from where it stalled: after a stall of `d ≥
//!   idle_timeout` since the last progress at watermark `w`, it is `w + d`. It assumes
//!   event time kept pace with the wall clock while the sources were silent.
//!
//! Data that arrives behind a watermark moved this way is late and goes through the
//! lateness tiers like any other late data; nothing is lost.

use crate::time::{EventTime, ProcessingTime, Span};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The pipeline's event-time progress: every window with `end <= watermark` is closed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark(pub EventTime);

impl Watermark {
    /// Before any data: nothing is closed.
    pub const MIN: Watermark = Watermark(EventTime::MIN);
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl fmt::Debug for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Watermark({})", self.0)
    }
}

/// A source partition (a Kafka partition, a NATS subject shard, an HTTP client...).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct PartitionId(pub u32);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Partition {
    id: PartitionId,
    max_time: EventTime,
    last_seen: ProcessingTime,
}

/// Tracks partition watermarks and derives the pipeline watermark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatermarkTracker {
    out_of_orderness: Span,
    idle_timeout: Option<Span>,
    partitions: Vec<Partition>,
    current: Watermark,
    /// The data-driven watermark last computed (min over active partitions); it can
    /// go down when a partition joins or comes back behind.
    data: Watermark,
    /// The pipeline watermark and processing time when `data` last increased: the
    /// stall rule measures from here.
    anchor: Option<(Watermark, ProcessingTime)>,
    /// Cache: index of the last partition seen (most batches come from one).
    #[serde(skip)]
    last_index: usize,
}

impl WatermarkTracker {
    /// A tracker with no partitions yet (watermark at its minimum).
    pub fn new(out_of_orderness: Span, idle_timeout: Option<Span>) -> WatermarkTracker {
        WatermarkTracker {
            out_of_orderness,
            idle_timeout,
            partitions: Vec::new(),
            current: Watermark::MIN,
            data: Watermark::MIN,
            anchor: None,
            last_index: 0,
        }
    }

    /// Declares `partition` before it has sent anything: it holds the watermark at its
    /// minimum until it sends, or until it is idle for `idle_timeout` counted from the
    /// first known processing time. For inputs known in advance (a reconciliation's
    /// two streams), so that the one that starts first does not run ahead alone.
    pub fn expect(&mut self, partition: PartitionId) {
        if !self.partitions.iter().any(|p| p.id == partition) {
            self.partitions.push(Partition {
                id: partition,
                max_time: EventTime::MIN,
                last_seen: ProcessingTime::MIN,
            });
        }
    }

    /// The pipeline watermark.
    #[inline]
    pub fn current(&self) -> Watermark {
        self.current
    }

    /// The watermark of one partition, if it has sent anything.
    pub fn partition(&self, id: PartitionId) -> Option<Watermark> {
        self.partitions
            .iter()
            .find(|p| p.id == id)
            .map(|p| Watermark(p.max_time.minus(self.out_of_orderness)))
    }

    /// Every partition that has sent something, with its watermark, in the order they
    /// first sent.
    pub fn partitions(&self) -> impl Iterator<Item = (PartitionId, Watermark)> + '_ {
        self.partitions
            .iter()
            .filter(|p| p.max_time > EventTime::MIN)
            .map(|p| (p.id, Watermark(p.max_time.minus(self.out_of_orderness))))
    }

    /// Records an event at `t` from `partition` seen at processing time `now`. Returns
    /// whether the pipeline watermark moved.
    #[inline]
    pub fn observe(&mut self, partition: PartitionId, t: EventTime, now: ProcessingTime) -> bool {
        let i = match self.partitions.get(self.last_index) {
            Some(p) if p.id == partition => self.last_index,
            _ => self.index_of(partition, now),
        };
        self.last_index = i;
        let was_idle = self.is_idle(self.partitions[i].last_seen, now);
        let p = &mut self.partitions[i];
        p.last_seen = now;
        // An idle partition coming back may lower the minimum; the watermark itself never
        // goes back, so only a raise of the max or a change of the active set matters.
        if t > p.max_time {
            p.max_time = t;
        } else if !was_idle {
            return false;
        }
        self.recompute(now)
    }

    fn index_of(&mut self, partition: PartitionId, now: ProcessingTime) -> usize {
        match self.partitions.iter().position(|p| p.id == partition) {
            Some(i) => i,
            None => {
                self.partitions.push(Partition {
                    id: partition,
                    max_time: EventTime::MIN,
                    last_seen: now,
                });
                self.partitions.len() - 1
            }
        }
    }

    #[inline]
    fn is_idle(&self, last_seen: ProcessingTime, now: ProcessingTime) -> bool {
        self.idle_timeout.is_some_and(|z| now.since(last_seen) >= z)
    }

    /// Processing time passed: applies the idle and stall rules. Returns whether the
    /// pipeline watermark moved.
    pub fn tick(&mut self, now: ProcessingTime) -> bool {
        // Events seen before the first processing time was known start their idle and
        // stall clocks now, not at the beginning of time.
        if now > ProcessingTime::MIN {
            for p in &mut self.partitions {
                if p.last_seen == ProcessingTime::MIN {
                    p.last_seen = now;
                }
            }
            if let Some((w, at)) = self.anchor
                && at == ProcessingTime::MIN
            {
                self.anchor = Some((w, now));
            }
        }
        let moved = self.recompute(now);
        if let (Some(z), Some((w, at))) = (self.idle_timeout, self.anchor) {
            let stalled_for = now.since(at);
            if stalled_for >= z {
                let w = Watermark(w.0.plus(stalled_for));
                if w > self.current {
                    self.current = w;
                    return true;
                }
            }
        }
        moved
    }

    /// The input is complete (a bounded replay ended): event time is over.
    pub fn finish(&mut self) {
        self.current = Watermark(EventTime::MAX);
    }

    /// Derives the data-driven watermark from the active partitions.
    fn recompute(&mut self, now: ProcessingTime) -> bool {
        let active = self
            .partitions
            .iter()
            .filter(|p| !self.is_idle(p.last_seen, now))
            .map(|p| p.max_time)
            .min();
        let candidate = match active {
            Some(m) => Some(m),
            // Every partition is idle, and one of them never sent anything (declared with
            // `expect`): it held the watermark at its minimum until now, maybe going idle
            // at the same tick as the others, so the partitions that did send decide.
            // Without such a partition nothing changes (the stall rule applies).
            None if self.partitions.iter().any(|p| p.max_time == EventTime::MIN) => self
                .partitions
                .iter()
                .filter(|p| p.max_time > EventTime::MIN)
                .map(|p| p.max_time)
                .min(),
            None => None,
        };
        let Some(min_max) = candidate else {
            return false;
        };
        let data_wm = Watermark(min_max.minus(self.out_of_orderness));
        // Progress of the data resets the stall clock even when a stall already pushed
        // the watermark further than the data: the sources are alive again.
        if data_wm > self.data {
            self.anchor = Some((data_wm.max(self.current), now));
        }
        self.data = data_wm;
        if data_wm > self.current {
            self.current = data_wm;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: PartitionId = PartitionId(0);
    const P1: PartitionId = PartitionId(1);

    fn pt(s: i64) -> ProcessingTime {
        ProcessingTime::from_secs(s)
    }
    fn et(s: i64) -> EventTime {
        EventTime::from_secs(s)
    }
    fn wm(s: i64) -> Watermark {
        Watermark(et(s))
    }

    #[test]
    fn watermark_is_max_minus_out_of_orderness_and_never_goes_back() {
        let mut t = WatermarkTracker::new(Span::secs(5), None);
        assert_eq!(t.current(), Watermark::MIN);
        assert!(t.observe(P0, et(100), pt(0)));
        assert_eq!(t.current(), wm(95));
        assert!(!t.observe(P0, et(50), pt(1)));
        assert_eq!(t.current(), wm(95));
        assert!(t.observe(P0, et(101), pt(2)));
        assert_eq!(t.current(), wm(96));
    }

    #[test]
    fn partitions_lists_each_that_sent_with_its_own_watermark() {
        let mut t = WatermarkTracker::new(Span::secs(5), None);
        t.expect(P1);
        assert_eq!(t.partitions().count(), 0, "expected, but nothing sent yet");
        t.observe(P0, et(100), pt(0));
        t.observe(P1, et(40), pt(0));
        t.observe(P1, et(30), pt(1));
        let got: Vec<_> = t.partitions().collect();
        assert_eq!(got, vec![(P1, wm(35)), (P0, wm(95))]);
    }

    #[test]
    fn the_slowest_partition_holds_the_watermark() {
        let mut t = WatermarkTracker::new(Span::ZERO, None);
        t.observe(P0, et(100), pt(0));
        t.observe(P1, et(10), pt(0));
        // P1 joined behind P0: the watermark does not go back, it just stops moving.
        assert_eq!(t.current(), wm(100));
        t.observe(P0, et(200), pt(1));
        assert_eq!(t.current(), wm(100));
        t.observe(P1, et(150), pt(2));
        assert_eq!(t.current(), wm(150));
        assert_eq!(t.partition(P1), Some(wm(150)));
    }

    #[test]
    fn an_idle_partition_stops_holding_the_watermark_back() {
        let mut t = WatermarkTracker::new(Span::ZERO, Some(Span::secs(30)));
        t.observe(P0, et(100), pt(0));
        t.observe(P1, et(100), pt(0));
        t.observe(P0, et(500), pt(10));
        assert_eq!(t.current(), wm(100));
        // P1 last seen at 0; at 29 s it still holds, at exactly 30 s it is idle.
        assert!(!t.tick(pt(29)));
        assert_eq!(t.current(), wm(100));
        t.observe(P0, et(500), pt(29)); // P0 alive
        assert!(t.tick(pt(30)));
        assert_eq!(t.current(), wm(500));
        // P1 comes back behind: the watermark stays, P1 holds again from now on.
        t.observe(P1, et(400), pt(31));
        assert_eq!(t.current(), wm(500));
        t.observe(P0, et(900), pt(32));
        assert_eq!(t.current(), wm(500));
        t.observe(P1, et(700), pt(33));
        assert_eq!(t.current(), wm(700));
    }

    #[test]
    fn a_stalled_watermark_advances_with_processing_time_after_the_timeout() {
        let mut t = WatermarkTracker::new(Span::secs(5), Some(Span::secs(60)));
        t.observe(P0, et(1000), pt(100));
        assert_eq!(t.current(), wm(995));
        assert!(!t.tick(pt(159)));
        assert_eq!(t.current(), wm(995));
        assert!(t.tick(pt(160)));
        assert_eq!(t.current(), wm(1055));
        assert!(t.tick(pt(200)));
        assert_eq!(t.current(), wm(1095));
        // The source comes back behind the advanced watermark: no going back, and the
        // stall clock restarts from the data's progress.
        t.observe(P0, et(1050), pt(201));
        assert_eq!(t.current(), wm(1095));
        assert!(!t.tick(pt(250)));
        // Data keeps progressing (still behind): the stall clock keeps restarting.
        t.observe(P0, et(1060), pt(250));
        assert!(!t.tick(pt(309)));
        assert_eq!(t.current(), wm(1095));
        assert!(t.tick(pt(310)));
        assert_eq!(t.current(), wm(1095 + 60));
    }

    #[test]
    fn without_idle_timeout_nothing_moves_by_processing_time() {
        let mut t = WatermarkTracker::new(Span::ZERO, None);
        t.observe(P0, et(10), pt(0));
        assert!(!t.tick(pt(1_000_000)));
        assert_eq!(t.current(), wm(10));
    }
}
