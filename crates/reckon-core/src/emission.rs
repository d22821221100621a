//! What the engine says: emissions (results) and outcomes (what happened to an event).

use crate::checksum::Checksum;
use crate::event::{Key, Value};
use crate::time::ProcessingTime;
use crate::watermark::Watermark;
use crate::window::Window;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The version of a window's result. Version 1 is the first emission; every later
/// emission of the same window is the previous version + 1 and replaces it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Version(pub u32);

impl Version {
    /// The first version of a window.
    pub const FIRST: Version = Version(1);
    /// The version after this one.
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Why an emission was made.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmissionKind {
    /// A preview of a window that is still open (periodic, by processing time).
    Early,
    /// The watermark passed the window's end.
    OnTime,
    /// A late event within allowed lateness corrected the hot window state.
    Late,
    /// A late event beyond allowed lateness; the window was recomputed from raw events.
    Recomputed,
    /// Reconciliation: an audited id has no matching event (`docs/reconcile.md`).
    Missing,
    /// Reconciliation: an id reported missing was found (version 2 of its `missing`).
    Found,
    /// Reconciliation: a period's completeness counts (corrected as new versions).
    Completeness,
    /// Alert rule: an episode fires (possibly late, after a correction).
    Firing,
    /// Alert rule: a firing episode is over.
    Resolved,
    /// Alert rule: corrected input takes a fired episode back.
    Retracted,
}

impl EmissionKind {
    /// All kinds, for metrics.
    pub const ALL: [EmissionKind; 10] = [
        EmissionKind::Early,
        EmissionKind::OnTime,
        EmissionKind::Late,
        EmissionKind::Recomputed,
        EmissionKind::Missing,
        EmissionKind::Found,
        EmissionKind::Completeness,
        EmissionKind::Firing,
        EmissionKind::Resolved,
        EmissionKind::Retracted,
    ];
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EmissionKind::Early => "early",
            EmissionKind::OnTime => "on_time",
            EmissionKind::Late => "late",
            EmissionKind::Recomputed => "recomputed",
            EmissionKind::Missing => "missing",
            EmissionKind::Found => "found",
            EmissionKind::Completeness => "completeness",
            EmissionKind::Firing => "firing",
            EmissionKind::Resolved => "resolved",
            EmissionKind::Retracted => "retracted",
        }
    }
}

/// One result of one window, at one version.
///
/// Sinks upsert on `(pipeline, key, window.start)` and apply it only if `version` is
/// newer than what they hold, which makes replays and duplicates harmless.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Emission {
    /// The pipeline that computed it.
    pub pipeline: Arc<str>,
    /// The series.
    pub key: Key,
    /// The window.
    pub window: Window,
    /// Its version; replaces every lower version of the same window.
    pub version: Version,
    /// Why it was emitted.
    pub kind: EmissionKind,
    /// Names of the values, in order (the pipeline's aggregate names).
    pub columns: Arc<[Arc<str>]>,
    /// One value per aggregate; `None` where the aggregate had no input (e.g. the mean
    /// of a field no event in the window has).
    pub values: Vec<Option<Value>>,
    /// Number of events in the window.
    pub count: u64,
    /// Checksum of the window's events.
    pub checksum: Checksum,
    /// Processing time of the emission.
    pub emitted_at: ProcessingTime,
    /// The pipeline's watermark when it was emitted.
    pub watermark: Watermark,
    /// The aggregate states behind `values`, one per column, when an operator
    /// downstream merges them (a rollup): mergeable where `values` are not (a mean is
    /// a sum and a count). Kept with the stored result, never sent to clients.
    #[serde(skip)]
    pub states: Option<Arc<[crate::aggregate::AggState]>>,
}

impl Emission {
    /// The value of a named aggregate.
    pub fn value(&self, name: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c.as_ref() == name)?;
        self.values.get(i)?.as_ref()
    }
}

/// Why an event went to the dead-letter table instead of a result.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// A window the event belongs to starts before `watermark - retention`: its raw
    /// events may already be deleted, so it can no longer be recomputed correctly.
    BeyondRetention {
        /// The earliest window of the event.
        window: Window,
        /// The watermark when the event arrived.
        watermark: Watermark,
    },
    /// The event's time cannot be placed in a window (outside the supported range).
    Unwindowable {
        /// What went wrong.
        message: String,
    },
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterReason::BeyondRetention { window, watermark } => write!(
                f,
                "window {window} is beyond retention at watermark {watermark}"
            ),
            DeadLetterReason::Unwindowable { message } => {
                write!(f, "event cannot be windowed: {message}")
            }
        }
    }
}

/// What happened to one ingested event. Every event gets exactly one outcome, and each
/// outcome is counted in [`crate::Counters`]: no event is dropped silently.
#[derive(Clone, PartialEq, Debug)]
pub enum Outcome {
    /// Added to open windows; results come when the watermark passes their end.
    Applied,
    /// Added to a closed window still within allowed lateness; a `late` correction was
    /// emitted at once.
    Corrected,
    /// At least one of its windows is past allowed lateness: the driver must store the
    /// event and call [`crate::Pipeline::recompute`] for each listed window with that
    /// window's raw events. Windows still hot were corrected already.
    Recompute {
        /// The series.
        key: Key,
        /// The windows to recompute, in start order.
        windows: Vec<Window>,
    },
    /// An event with an id already counted in its window; not counted again.
    Duplicate,
    /// Kept out of every result, with the reason; the driver stores it as a dead letter.
    DeadLettered(DeadLetterReason),
    /// The pipeline's `filter` is not true for it: counted, in no result, not a dead
    /// letter (it still shows how far its partition has got).
    Filtered,
}
