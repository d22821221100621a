//! Windows and aggregates over one stream: the [`Pipeline`] engine as an operator.

use super::{ColdData, ColdRequest, DeadEvent, Operator, Source, StepReport};
use crate::emission::{DeadLetterReason, Emission, Outcome};
use crate::error::{Error, Result};
use crate::event::{Event, Key};
use crate::pipeline::{BatchReport, Pipeline, Prior};
use crate::spec::PipelineSpec;
use crate::time::{EventTime, ProcessingTime};
use crate::watermark::{PartitionId, Watermark};
use crate::window::Window;
use std::sync::Arc;

/// A window pipeline over one stream (its only input).
#[derive(Debug)]
pub struct WindowOperator {
    engine: Pipeline,
    inputs: [Source; 1],
}

impl WindowOperator {
    /// A new pipeline reading `stream`, or one restored from `snapshot`.
    pub fn new(
        spec: PipelineSpec,
        stream: &str,
        snapshot: Option<&[u8]>,
    ) -> Result<WindowOperator> {
        let engine = match snapshot {
            Some(bytes) => Pipeline::restore(spec, bytes)?,
            None => Pipeline::new(spec)?,
        };
        Ok(WindowOperator {
            engine,
            inputs: [Source::Stream(Arc::from(stream))],
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Pipeline {
        &self.engine
    }
}

/// The stored kind of a window pipeline's dead letter.
pub fn dead_letter_kind(r: &DeadLetterReason) -> &'static str {
    match r {
        DeadLetterReason::BeyondRetention { .. } => "beyond_retention",
        DeadLetterReason::Unwindowable { .. } => "unwindowable",
    }
}

impl Operator for WindowOperator {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &Arc<str> {
        &self.engine.spec().name
    }
    fn kind(&self) -> &'static str {
        "window"
    }
    fn inputs(&self) -> &[Source] {
        &self.inputs
    }
    fn watermark(&self) -> Watermark {
        self.engine.watermark()
    }
    fn partition_watermarks(&self) -> Vec<(crate::PartitionId, Watermark)> {
        self.engine.partition_watermarks()
    }
    fn now(&self) -> ProcessingTime {
        self.engine.now()
    }
    fn is_finished(&self) -> bool {
        self.engine.watermark() == Watermark(EventTime::MAX)
    }
    fn advance(&mut self, now: ProcessingTime, out: &mut Vec<Emission>) {
        self.engine.advance(now, out);
    }
    fn finish(&mut self, out: &mut Vec<Emission>) {
        self.engine.finish(out);
    }

    fn ingest_events(
        &mut self,
        _input: usize,
        partition: PartitionId,
        events: &[Event],
        out: &mut Vec<Emission>,
        report: &mut StepReport,
    ) {
        let mut br = BatchReport::default();
        self.engine.ingest_batch(partition, events, &mut br, out);
        report.corrected += br.corrected;
        report.filtered += br.filtered;
        for (index, outcome) in br.follow_ups {
            match outcome {
                Outcome::Recompute { key, windows } => {
                    report.recomputed += 1;
                    report
                        .cold
                        .extend(windows.into_iter().map(|window| ColdRequest {
                            input: 0,
                            key: key.clone(),
                            window,
                        }));
                }
                Outcome::DeadLettered(reason) => report.dead.push(DeadEvent {
                    index,
                    kind: dead_letter_kind(&reason),
                    reason: reason.to_string(),
                }),
                _ => {}
            }
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
            "window pipeline `{}` reads a stream, not results",
            self.name()
        )))
    }

    fn recompute(
        &mut self,
        key: &Key,
        window: Window,
        prior: Option<Prior>,
        data: ColdData<'_>,
    ) -> Result<Option<Emission>> {
        match data {
            ColdData::Events(events) => self.engine.recompute(key, window, prior, events),
            ColdData::Results(_) => Err(Error::Internal(format!(
                "window pipeline `{}` recomputes from raw events, not results",
                self.name()
            ))),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        self.engine.snapshot()
    }

    fn retention_horizon(&self, _input: usize) -> Option<EventTime> {
        Some(
            self.engine
                .watermark()
                .0
                .minus(self.engine.spec().retention),
        )
    }

    fn keep_states(&mut self) {
        self.engine.keep_states(true);
    }
}
