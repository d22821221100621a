//! An independent oracle for alert rules (seed 004): from a pipeline's final windows, the
//! alert timeline a batch evaluation of the rule gives.
//!
//! It shares no code with the engine's `AlertRule`: it works on runs rather than windows.
//! A run is a maximal sequence of holding windows, each starting where the previous one
//! ends, and the condition is a Rust predicate, not the engine's expression language.
//!
//! - **Firing:** a run of at least `for` windows fires at the start of its `for`-th
//!   window.
//! - **Extending:** a later run that starts before the episode's resolution time (its last
//!   holding window's end plus `keep_firing_for`) extends the episode, whatever its length.
//! - **Resolving:** an episode is resolved at that time if the watermark has reached it,
//!   and firing otherwise.
//!
//! ```
//! use reckon_core::{EventTime, Key, Span};
//! use reckon_testkit::alert::{AlertOracle, OracleWindow};
//!
//! let m = |x: i64| EventTime(x * 60_000_000_000);
//! let k = Key::parse("s=a").unwrap();
//! let w = |start: i64, holds: bool| OracleWindow { key: k.clone(), start: m(start), end: m(start + 5), holds };
//! let oracle = AlertOracle { for_windows: 2, keep_firing_for: Span(0) };
//! let timeline = oracle.timeline(&[w(0, true), w(5, true), w(10, false)], EventTime::MAX);
//! assert_eq!(timeline[&(k, m(5))], Some(m(10)));
//! ```

use reckon_core::{EventTime, Key, Span};
use std::collections::BTreeMap;

/// One final input window: whether it holds the rule's condition.
#[derive(Clone, Debug, PartialEq)]
pub struct OracleWindow {
    /// The series.
    pub key: Key,
    /// Its start.
    pub start: EventTime,
    /// Its end.
    pub end: EventTime,
    /// Whether its final values hold the condition.
    pub holds: bool,
}

/// The rule's timing.
#[derive(Clone, Copy, Debug)]
pub struct AlertOracle {
    /// Consecutive holding windows before it fires.
    pub for_windows: u32,
    /// How long it keeps firing after the last holding window.
    pub keep_firing_for: Span,
}

impl AlertOracle {
    /// Every episode, `(key, fired_at) -> resolved_at` (`None` while firing), given the
    /// input's watermark.
    pub fn timeline(
        &self,
        windows: &[OracleWindow],
        watermark: EventTime,
    ) -> BTreeMap<(Key, EventTime), Option<EventTime>> {
        let mut by_key: BTreeMap<&Key, Vec<(EventTime, EventTime)>> = BTreeMap::new();
        for w in windows.iter().filter(|w| w.holds) {
            by_key.entry(&w.key).or_default().push((w.start, w.end));
        }
        let mut out = BTreeMap::new();
        for (key, mut holding) in by_key {
            holding.sort();
            // Maximal runs of consecutive holding windows.
            let mut runs: Vec<Vec<(EventTime, EventTime)>> = Vec::new();
            for w in holding {
                match runs.last_mut() {
                    Some(run) if run.last().map(|l| l.1) == Some(w.0) => run.push(w),
                    _ => runs.push(vec![w]),
                }
            }
            let n = self.for_windows.max(1) as usize;
            let mut open: Option<(EventTime, EventTime)> = None;
            let mut close = |ep: (EventTime, EventTime)| {
                let resolved = (watermark >= ep.1).then_some(ep.1);
                out.insert((key.clone(), ep.0), resolved);
            };
            for run in &runs {
                let (first, last) = (run[0], run[run.len() - 1]);
                let until = last.1.plus(self.keep_firing_for);
                if let Some(ep) = open.as_mut()
                    && first.0 < ep.1
                {
                    ep.1 = ep.1.max(until);
                    continue;
                }
                if let Some(ep) = open.take() {
                    close(ep);
                }
                if run.len() >= n {
                    open = Some((run[n - 1].0, until));
                }
            }
            if let Some(ep) = open {
                close(ep);
            }
        }
        out
    }
}
