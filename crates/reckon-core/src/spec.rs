//! A pipeline's specification: windows, aggregates and the time settings.
//!
//! Built with [`PipelineSpec::builder`], which checks every setting and names the bad
//! one. Defaults follow seed 000: 1 h tumbling windows, data up to 24 h late is still
//! corrected from hot state, raw events are kept 7 days.

use crate::aggregate::AggregateSpec;
use crate::error::{Error, Result};
use crate::event::{Event, FieldName};
use crate::expr::{Expr, apply_derived};
use crate::time::Span;
use crate::window::WindowSpec;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// What a windowed pipeline computes and how it treats time.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// The pipeline's name; part of every window's identity.
    pub name: Arc<str>,
    /// How events are grouped into windows.
    pub window: WindowSpec,
    /// What each window computes, in output column order.
    pub aggregates: Vec<AggregateSpec>,
    /// How far behind the newest event of a partition an event may be and still be on
    /// time: a partition's watermark is its max event time minus this.
    pub out_of_orderness: Span,
    /// How long after a window closed its state stays hot: late events within it are
    /// corrected at once; beyond it the window is recomputed from raw events.
    pub allowed_lateness: Span,
    /// How long raw events are kept (behind the watermark); an event whose window
    /// starts before `watermark - retention` is dead-lettered.
    pub retention: Span,
    /// Processing time after which a silent partition stops holding the watermark back
    /// and a stalled watermark advances with processing time; `None`: never.
    pub idle_timeout: Option<Span>,
    /// Processing-time interval of `early` emissions of open windows; `None`: none.
    pub early_interval: Option<Span>,
    /// Derived fields, set on each event in order before the filter and the
    /// aggregates see it (a later one may read an earlier one). Left out of the
    /// encoding when empty, so specs written before they existed keep their
    /// fingerprint (and their snapshots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derive: Vec<(FieldName, Expr)>,
    /// Only events for which this is true are aggregated; the others are counted as
    /// filtered (SQL `WHERE`; null is not true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Expr>,
}

impl PipelineSpec {
    /// The event as the windows see it: derived fields set (a copy, only when there
    /// are any); `None` when the filter is not true for it.
    pub fn prepare<'e>(&self, e: &'e Event) -> Option<Cow<'e, Event>> {
        let e = if self.derive.is_empty() {
            Cow::Borrowed(e)
        } else {
            let mut owned = e.clone();
            apply_derived(&self.derive, &mut owned);
            Cow::Owned(owned)
        };
        match &self.filter {
            Some(f) if !f.eval_filter(&e) => None,
            _ => Some(e),
        }
    }

    /// Starts a spec named `name` with seed 000's defaults.
    pub fn builder(name: &str) -> PipelineSpecBuilder {
        PipelineSpecBuilder {
            spec: PipelineSpec {
                name: Arc::from(name),
                window: WindowSpec::tumbling(Span::hours(1)),
                aggregates: Vec::new(),
                out_of_orderness: Span::ZERO,
                allowed_lateness: Span::hours(24),
                retention: Span::days(7),
                idle_timeout: None,
                early_interval: None,
                derive: Vec::new(),
                filter: None,
            },
        }
    }

    /// Checks every setting; the error names the setting and the pipeline.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(format!("pipeline `{}`: {m}", self.name)));
        if self.name.is_empty() {
            return Err(Error::InvalidSpec("a pipeline has an empty name".into()));
        }
        self.window
            .validate()
            .map_err(|e| Error::InvalidSpec(format!("pipeline `{}`: {e}", self.name)))?;
        if self.aggregates.is_empty() {
            return bad("has no aggregates".into());
        }
        for (i, a) in self.aggregates.iter().enumerate() {
            a.validate()
                .map_err(|e| Error::InvalidSpec(format!("pipeline `{}`: {e}", self.name)))?;
            if self.aggregates[..i].iter().any(|b| b.name == a.name) {
                return bad(format!("two aggregates are named `{}`", a.name));
            }
        }
        for (what, s) in [
            ("out_of_orderness", self.out_of_orderness),
            ("allowed_lateness", self.allowed_lateness),
            ("retention", self.retention),
        ] {
            if s.0 < 0 {
                return bad(format!("{what} must not be negative, got {s}"));
            }
        }
        if self.retention < self.allowed_lateness {
            return bad(format!(
                "retention ({}) must be at least allowed_lateness ({}): a hot window's raw events must still be there to recompute it",
                self.retention, self.allowed_lateness
            ));
        }
        for (what, s) in [
            ("idle_timeout", self.idle_timeout),
            ("early_interval", self.early_interval),
        ] {
            if let Some(s) = s
                && s.0 <= 0
            {
                return bad(format!("{what} must be positive when set, got {s}"));
            }
        }
        Ok(())
    }

    /// The output column names.
    pub fn columns(&self) -> Arc<[Arc<str>]> {
        self.aggregates.iter().map(|a| a.name.clone()).collect()
    }
}

/// Builder of a [`PipelineSpec`]; `build` validates.
#[derive(Debug, Clone)]
pub struct PipelineSpecBuilder {
    spec: PipelineSpec,
}

impl PipelineSpecBuilder {
    /// Sets the windows.
    pub fn window(mut self, w: WindowSpec) -> Self {
        self.spec.window = w;
        self
    }
    /// Adds an aggregate (output columns follow the order of calls).
    pub fn aggregate(mut self, a: AggregateSpec) -> Self {
        self.spec.aggregates.push(a);
        self
    }
    /// Sets the bounded out-of-orderness of the watermark.
    pub fn out_of_orderness(mut self, s: Span) -> Self {
        self.spec.out_of_orderness = s;
        self
    }
    /// Sets allowed lateness (hot corrections).
    pub fn allowed_lateness(mut self, s: Span) -> Self {
        self.spec.allowed_lateness = s;
        self
    }
    /// Sets raw-event retention.
    pub fn retention(mut self, s: Span) -> Self {
        self.spec.retention = s;
        self
    }
    /// Sets the idle timeout (idle partitions and stalled watermark).
    pub fn idle_timeout(mut self, s: Span) -> Self {
        self.spec.idle_timeout = Some(s);
        self
    }
    /// Sets the early-emission interval.
    pub fn early_interval(mut self, s: Span) -> Self {
        self.spec.early_interval = Some(s);
        self
    }
    /// Adds a derived field (evaluated after those added before it).
    pub fn derive(mut self, name: &str, expr: Expr) -> Self {
        self.spec.derive.push((FieldName::from(name), expr));
        self
    }
    /// Keeps only events for which `expr` is true.
    pub fn filter(mut self, expr: Expr) -> Self {
        self.spec.filter = Some(expr);
        self
    }
    /// Validates and returns the spec.
    pub fn build(self) -> Result<PipelineSpec> {
        self.spec.validate()?;
        Ok(self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggKind;

    #[test]
    fn builder_names_the_bad_setting() {
        let e = PipelineSpec::builder("p").build().unwrap_err();
        assert!(
            e.to_string().contains("pipeline `p`: has no aggregates"),
            "{e}"
        );
        let e = PipelineSpec::builder("p")
            .aggregate(AggregateSpec::count())
            .allowed_lateness(Span::hours(48))
            .retention(Span::hours(24))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("retention"), "{e}");
    }

    #[test]
    fn durations_in_errors_read_as_written_not_as_debug() {
        let e = PipelineSpec::builder("p")
            .aggregate(AggregateSpec::count())
            .allowed_lateness(Span::hours(24))
            .retention(Span::secs(86_399))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("retention (23h59m59s) must be at least allowed_lateness (24h)"),
            "{e}"
        );
        assert!(!e.contains("Span("), "{e}");
    }

    #[test]
    fn builder_names_more_bad_settings() {
        let e = PipelineSpec::builder("p")
            .aggregate(AggregateSpec::count())
            .aggregate(AggregateSpec::new(AggKind::Sum, "x").named("count"))
            .build()
            .unwrap_err();
        assert!(
            e.to_string().contains("two aggregates are named `count`"),
            "{e}"
        );
        let e = PipelineSpec::builder("p")
            .aggregate(AggregateSpec::count())
            .idle_timeout(Span::ZERO)
            .build()
            .unwrap_err();
        assert!(
            e.to_string().contains("idle_timeout must be positive"),
            "{e}"
        );
    }
}
