//! `reckon-core`: the pure engine of reckon.
//!
//! Everything hard about time lives here, with no I/O, no clock reads and no async:
//! a [`Pipeline`] is driven by [`Pipeline::ingest`] (an event arrives) and
//! [`Pipeline::advance`] (processing time passes), and answers with [`Emission`]s and
//! one [`Outcome`] per event. Being pure makes it deterministic: the same calls in the
//! same order give the same emissions, which is what the property tests lean on.
//!
//! The semantics are the contract in `DESIGN.md`: watermarks per source partition,
//! lateness tiers (hot correction within allowed lateness, cold recompute beyond it,
//! dead letter beyond retention), versioned emissions that replace each other, and
//! checksums that can be audited against the raw events.
//!
//! ```
//! use reckon_core::{AggKind, AggregateSpec, Event, EventTime, Key, Outcome, PartitionId,
//!                   Pipeline, PipelineSpec, Span, Value, WindowSpec};
//! # fn main() -> Result<(), reckon_core::Error> {
//! let spec = PipelineSpec::builder("water_level_mean_1h")
//!     .window(WindowSpec::tumbling(Span::hours(1)))
//!     .aggregate(AggregateSpec::new(AggKind::Mean, "level").named("mean"))
//!     .allowed_lateness(Span::hours(24))
//!     .build()?;
//! let mut pipeline = Pipeline::new(spec)?;
//! let mut out = Vec::new();
//! let reading = |secs, level| Event {
//!     stream: "water_level".into(),
//!     key: Key::from_tags([("i", "7")]).unwrap(),
//!     time: EventTime::from_secs(secs),
//!     id: None,
//!     fields: vec![("level".into(), Value::F64(level))],
//! };
//! pipeline.ingest(PartitionId(0), &reading(60, 4.0), &mut out);
//! pipeline.ingest(PartitionId(0), &reading(3600, 5.0), &mut out); // closes [0, 1h): v1, mean 4.0
//! let late = pipeline.ingest(PartitionId(0), &reading(120, 6.0), &mut out); // late: v2, mean 5.0
//! assert_eq!(late, Outcome::Corrected);
//! assert_eq!(out[1].value("mean"), Some(&Value::F64(5.0)));
//! # Ok(())
//! # }
//! ```

pub mod aggregate;
pub mod batch;
pub mod checksum;
pub mod emission;
pub mod error;
pub mod event;
pub mod expr;
pub mod pipeline;
pub mod reconcile;
pub mod sketch;
pub mod snapshot;
pub mod spec;
pub mod time;
pub mod watermark;
pub mod window;

pub use aggregate::{AggKind, AggState, AggregateSpec};
pub use checksum::Checksum;
pub use emission::{DeadLetterReason, Emission, EmissionKind, Outcome, Version};
pub use error::{Error, Result};
pub use event::{Event, EventId, FieldName, Key, StreamName, TagValue, Value};
pub use expr::{Expr, ExprError};
pub use pipeline::{BatchReport, Counters, Pipeline, Prior};
pub use spec::{PipelineSpec, PipelineSpecBuilder};
pub use time::{EventTime, ProcessingTime, Span};
pub use watermark::{PartitionId, Watermark};
pub use window::{CalendarUnit, Window, WindowSpec};
