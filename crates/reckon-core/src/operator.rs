//! One interface for every kind of operator of the dataflow.
//!
//! An [`Operator`] reads one or more inputs, each a stream of events or another
//! operator's results ([`Source`]), and emits versioned [`Emission`]s. The driver (the
//! runtime) holds every operator of the configuration behind this trait, in
//! topological order, and never asks which kind it is: it hands events and results in,
//! advances processing time, runs the cold path an operator asks for, snapshots and
//! restores, and deletes raw events no operator needs any more. A new kind of operator
//! is one module implementing the trait.
//!
//! Like everything in `reckon-core` an operator is pure: no I/O, no clock. The cold path
//! is two-phase for that reason: an operator names the window it cannot correct from
//! memory ([`ColdRequest`]); the driver fetches what that window is made of (the raw
//! events of a stream input, or the stored results of an operator input, including
//! those not committed yet) and calls [`Operator::recompute`].
//!
//! Kinds: [`WindowOperator`] (windows and aggregates over a stream),
//! [`ReconcileOperator`] (seed 001's reconciliation of two streams), [`Rollup`]
//! (coarser windows merged from another operator's aggregate states) and
//! [`RunningTotal`] (seed 003's cumulative sums per key, with as-of values) and
//! [`AlertRule`] (seed 004's triggers, evaluated in event time on another operator's
//! windows: they fire late and retract when corrections say so).

mod alert;
mod reconcile;
mod rollup;
mod running;
mod window;

pub use alert::{ALERT_COLUMNS, ALERT_FORMAT, ALERT_MAGIC, AlertRule, AlertSpec, AlertState};
pub use reconcile::{IdFields, ReconcileOperator};
pub use rollup::{ROLLUP_FORMAT, ROLLUP_MAGIC, Rollup, RollupSpec};
pub use running::{Live, Mapping, RUNNING_FORMAT, RUNNING_MAGIC, Reset, RunningSpec, RunningTotal};
pub use window::{WindowOperator, dead_letter_kind};

use crate::emission::Emission;
use crate::error::Result;
use crate::event::{Event, Key};
use crate::pipeline::Prior;
use crate::time::{EventTime, ProcessingTime};
use crate::watermark::{PartitionId, Watermark};
use crate::window::Window;
use std::fmt;
use std::sync::Arc;

/// Where one input of an operator comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The events of a stream.
    Stream(Arc<str>),
    /// The results of another operator (a DAG: the driver orders operators so an
    /// input always comes first).
    Operator(Arc<str>),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Stream(s) => write!(f, "stream `{s}`"),
            Source::Operator(o) => write!(f, "pipeline `{o}`"),
        }
    }
}

/// An event an operator kept out of its results, by index in the batch it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadEvent {
    /// Index of the event in the batch.
    pub index: usize,
    /// The dead letter's kind (`beyond_retention`, `unwindowable`, `invalid`, ...).
    pub kind: &'static str,
    /// Why, for people.
    pub reason: String,
}

/// A window an operator cannot correct from memory: the driver fetches what it is made
/// of from input `input` and calls [`Operator::recompute`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColdRequest {
    /// The input whose data the window is made of.
    pub input: usize,
    /// The series.
    pub key: Key,
    /// The window (of this operator).
    pub window: Window,
}

/// What the driver fetched for a [`ColdRequest`].
#[derive(Debug)]
pub enum ColdData<'a> {
    /// The raw events of the series with a time in the window (stored, then not yet
    /// committed), for a stream input. Others may be mixed in: they are ignored.
    Events(Vec<&'a Event>),
    /// The newest version of every window of the input operator, of the series, that
    /// starts in the window (with their aggregate states).
    Results(Vec<&'a Emission>),
}

/// What one call did, beyond the emissions: counted for the ingest report, and the
/// follow-ups the driver must act on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepReport {
    /// Late events applied to windows still in memory.
    pub corrected: u64,
    /// Late events whose windows must be recomputed (cold).
    pub recomputed: u64,
    /// Events a filter kept out (a counted outcome, not a dead letter).
    pub filtered: u64,
    /// Events kept out of every result of this operator.
    pub dead: Vec<DeadEvent>,
    /// Windows to recompute (the driver dedupes them).
    pub cold: Vec<ColdRequest>,
}

/// The kind-independent interface of the dataflow's operators (see the module docs).
pub trait Operator: Send + fmt::Debug {
    /// The operator's name: its results are stored and queried under it.
    fn name(&self) -> &Arc<str>;
    /// Its kind, as users see it (`window`, `reconcile`, `rollup`).
    fn kind(&self) -> &'static str;
    /// Its inputs, in the order the `input` arguments count them.
    fn inputs(&self) -> &[Source];
    /// Its watermark: results of windows ending at or before it are final but for late
    /// data.
    fn watermark(&self) -> Watermark;
    /// The latest processing time it was advanced to.
    fn now(&self) -> ProcessingTime;
    /// Finished ([`Operator::finish`]): its watermark is at the end of time, so every
    /// further event would be dead-lettered.
    fn is_finished(&self) -> bool;
    /// Processing time passed (timers, idle inputs, early results).
    fn advance(&mut self, now: ProcessingTime, out: &mut Vec<Emission>);
    /// The input is complete: close everything and emit final results.
    fn finish(&mut self, out: &mut Vec<Emission>);
    /// Events of stream input `input` from one source partition, in arrival order.
    fn ingest_events(
        &mut self,
        input: usize,
        partition: PartitionId,
        events: &[Event],
        out: &mut Vec<Emission>,
        report: &mut StepReport,
    );
    /// New results of operator input `input`, in the order it emitted them, and its
    /// watermark after them (called also with no results when only the watermark
    /// moved).
    fn ingest_results(
        &mut self,
        input: usize,
        results: &[Emission],
        watermark: Watermark,
        out: &mut Vec<Emission>,
        report: &mut StepReport,
    ) -> Result<()>;
    /// The cold path of a [`ColdRequest`]: the window from what it is made of, against
    /// `prior` (its newest stored version). `None` when the result is unchanged.
    fn recompute(
        &mut self,
        key: &Key,
        window: Window,
        prior: Option<Prior>,
        data: ColdData<'_>,
    ) -> Result<Option<Emission>>;
    /// After a restart's replay: windows held in memory whose version may have drifted
    /// from the stored one (an operator fed by others' emissions sees them grouped
    /// differently in a replay) are made consistent with `latest` (the newest stored
    /// version of a window), emitting a new version where the content differs.
    fn resync(
        &mut self,
        _latest: &mut dyn FnMut(&Key, Window) -> Result<Option<Prior>>,
        _out: &mut Vec<Emission>,
    ) -> Result<()> {
        Ok(())
    }
    /// The whole state, for a checkpoint.
    fn snapshot(&self) -> Result<Vec<u8>>;
    /// Raw events of stream input `input` older than this are never needed again
    /// (`None`: it holds nothing back).
    fn retention_horizon(&self, input: usize) -> Option<EventTime>;
    /// An operator downstream merges this one's aggregate states: emissions must carry
    /// them ([`Emission::states`]).
    fn keep_states(&mut self);
    /// Gauges worth exporting, by metric name (`reckon_reconcile_ids_held`, say).
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// The watermark of each source partition it tracks (its own watermark is their
    /// minimum over the active ones); empty for operators without partitions.
    fn partition_watermarks(&self) -> Vec<(crate::PartitionId, Watermark)> {
        Vec::new()
    }
    /// The operator itself, for queries of one kind (a running total's real-time
    /// counter): `op.as_any().downcast_ref::<RunningTotal>()`.
    fn as_any(&self) -> &dyn std::any::Any;
    /// The value of series `key` at event time `at`, for kinds whose results have one
    /// at every instant (a running total's total); `None` for the others. Inside:
    /// `Ok(None)` when the series has no data at or before `at`, and an error (for
    /// people) when `at` is no longer answerable (before the retention horizon).
    fn value_at(
        &self,
        _key: &Key,
        _at: EventTime,
    ) -> Option<std::result::Result<Option<crate::event::Value>, String>> {
        None
    }
}
