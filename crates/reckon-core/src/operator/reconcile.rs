//! Seed 001's reconciliation of an event stream against an audit stream, as an
//! operator: how each stream's events become the [`Reconciler`]'s records.

use super::{ColdData, DeadEvent, Operator, Source, StepReport};
use crate::emission::Emission;
use crate::error::{Error, Result};
use crate::event::{Event, EventId, Key, Value};
use crate::pipeline::Prior;
use crate::reconcile::{ReconOutcome, ReconOutput, ReconcileSpec, Reconciler, Side};
use crate::time::{EventTime, ProcessingTime, Span};
use crate::watermark::{PartitionId, Watermark};
use crate::window::Window;
use std::sync::Arc;

/// Where one side's join id comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdFields {
    /// The stream.
    pub stream: Arc<str>,
    /// The configured id fields, in order (fields or key tags).
    pub names: Vec<String>,
    /// The stream's `id_field`, which the decoders move out of the fields into
    /// `Event::id`.
    pub stream_id_field: Option<String>,
}

/// A reconciliation: input 0 is the event stream, input 1 the audit stream.
#[derive(Debug)]
pub struct ReconcileOperator {
    engine: Reconciler,
    inputs: [Source; 2],
    ids: [IdFields; 2],
    /// Longest id accepted (its results are keyed `id=<id>` in the store).
    max_id_bytes: usize,
    out: Vec<ReconOutput>,
}

impl ReconcileOperator {
    /// A reconciliation restored from `snapshot`, or a new one whose id fingerprints are
    /// keyed with `secret`.
    pub fn new(
        spec: ReconcileSpec,
        events: IdFields,
        audit: IdFields,
        max_id_bytes: usize,
        snapshot: Option<&[u8]>,
        secret: [u8; crate::reconcile::ID_SECRET_LEN],
    ) -> Result<ReconcileOperator> {
        let engine = match snapshot {
            Some(bytes) => Reconciler::restore(spec, bytes)?,
            None => Reconciler::with_secret(spec, secret),
        };
        Ok(ReconcileOperator {
            engine,
            inputs: [
                Source::Stream(events.stream.clone()),
                Source::Stream(audit.stream.clone()),
            ],
            ids: [events, audit],
            max_id_bytes,
            out: Vec::new(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Reconciler {
        &self.engine
    }

    /// The reconciliation's record of an event of input `side`: its id is the value(s)
    /// of the side's id fields (joined by `,`, with `\\` and `,` escaped, when there
    /// are several); its fields are the event's tags and other fields (an audit
    /// record's context).
    pub fn record(&self, side: usize, e: &Event) -> std::result::Result<Event, String> {
        let ids = &self.ids[side];
        let names = &ids.names;
        let tags = e.key.tags();
        let mut id = String::new();
        for (i, name) in names.iter().enumerate() {
            let text = match e.field(name) {
                Some(Value::Str(s)) => s.to_string(),
                Some(v) => v.to_string(),
                None => match tags.iter().find(|(k, _)| k == name) {
                    Some((_, v)) => v.clone(),
                    // The stream's own id field is the event's id.
                    None => match &e.id {
                        Some(event_id) if ids.stream_id_field.as_deref() == Some(name) => {
                            event_id.0.to_string()
                        }
                        _ => {
                            return Err(format!(
                                "the record has no `{name}`, an id field of reconcile `{}`",
                                self.name()
                            ));
                        }
                    },
                },
            };
            if text.is_empty() {
                return Err(format!(
                    "the record's `{name}` is empty; reconcile `{}` joins on it",
                    self.name()
                ));
            }
            if names.len() == 1 {
                id = text;
            } else {
                if i > 0 {
                    id.push(',');
                }
                for c in text.chars() {
                    if matches!(c, '\\' | ',') {
                        id.push('\\');
                    }
                    id.push(c);
                }
            }
        }
        if id.len() > self.max_id_bytes {
            return Err(format!(
                "the record's id ({}) is {} bytes long; at most {} are allowed",
                names.join(", "),
                id.len(),
                self.max_id_bytes
            ));
        }
        let mut fields: Vec<(Arc<str>, Value)> = tags
            .into_iter()
            .filter(|(k, _)| !names.contains(k))
            .map(|(k, v)| (Arc::from(k), Value::Str(Arc::from(v))))
            .collect();
        fields.extend(
            e.fields
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| **n == **k))
                .cloned(),
        );
        Ok(Event {
            stream: e.stream.clone(),
            key: Key::empty(),
            time: e.time,
            id: Some(EventId(Arc::from(id))),
            fields,
        })
    }

    /// Moves the engine's outputs into `into` as emissions made at `now`.
    fn drain(&mut self, now: ProcessingTime, into: &mut Vec<Emission>) {
        let spec = self.engine.spec();
        into.extend(self.out.drain(..).map(|o| o.to_emission(spec, now)));
    }
}

impl Operator for ReconcileOperator {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &Arc<str> {
        &self.engine.spec().name
    }
    fn kind(&self) -> &'static str {
        "reconcile"
    }
    fn inputs(&self) -> &[Source] {
        &self.inputs
    }
    fn watermark(&self) -> Watermark {
        self.engine.watermark()
    }
    fn now(&self) -> ProcessingTime {
        self.engine.now()
    }
    fn is_finished(&self) -> bool {
        self.engine.is_finished()
    }
    fn advance(&mut self, now: ProcessingTime, out: &mut Vec<Emission>) {
        self.engine.advance(now, &mut self.out);
        self.drain(now, out);
    }
    fn finish(&mut self, out: &mut Vec<Emission>) {
        let now = self.engine.now();
        self.engine.finish(&mut self.out);
        self.drain(now, out);
    }

    fn ingest_events(
        &mut self,
        input: usize,
        _partition: PartitionId,
        events: &[Event],
        out: &mut Vec<Emission>,
        report: &mut StepReport,
    ) {
        let side = if input == 0 { Side::Event } else { Side::Audit };
        for (index, e) in events.iter().enumerate() {
            let (kind, reason) = match self.record(input, e) {
                Err(reason) => ("invalid", reason),
                Ok(record) => match self.engine.ingest(side, &record, &mut self.out) {
                    ReconOutcome::Applied | ReconOutcome::Duplicate => continue,
                    ReconOutcome::DeadLettered { kind, reason } => (kind, reason),
                },
            };
            report.dead.push(DeadEvent {
                index,
                kind,
                reason,
            });
        }
        let now = self.engine.now();
        self.drain(now, out);
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
            "reconcile `{}` reads streams, not results",
            self.name()
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
            "reconcile `{}` corrects from its own state and has no cold path",
            self.name()
        )))
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        self.engine.snapshot()
    }

    fn retention_horizon(&self, _input: usize) -> Option<EventTime> {
        // One whose watermark has not started yet holds no raw rows back; a
        // reconciliation keeps state for records within m + n.
        let wm = self.engine.watermark();
        if wm == Watermark::MIN {
            return None;
        }
        let spec = self.engine.spec();
        Some(wm.0.minus(Span(spec.horizon.0.saturating_add(spec.missing_after.0))))
    }

    fn keep_states(&mut self) {}

    fn gauges(&self) -> Vec<(&'static str, f64)> {
        vec![(
            "reckon_reconcile_ids_held",
            self.engine.pending_ids() as f64,
        )]
    }
}
