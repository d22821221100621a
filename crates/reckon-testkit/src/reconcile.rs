//! The batch oracle of reconciliation (`docs/reconcile.md`), written from the page and
//! sharing no code with the engine: all records at once, grouped by id.

use reckon_core::reconcile::{Completeness, Side};
use reckon_core::{Event, Span};
use std::collections::{BTreeMap, BTreeSet};

/// The final answer: completeness per period start (ns) and the ids missing for good.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ReconcileOracle {
    /// Completeness of every period with any content, by period start.
    pub periods: BTreeMap<i64, Completeness>,
    /// Audited ids with no matching event.
    pub missing: BTreeSet<String>,
}

/// Computes the oracle over every record (`period` = *o*, `n` = missing-after).
pub fn reconcile_oracle(period: Span, n: Span, records: &[(Side, Event)]) -> ReconcileOracle {
    #[derive(Default)]
    struct Id {
        audits: Vec<(i64, u64)>,
        events: Vec<(i64, u64)>,
    }
    let mut ids: BTreeMap<String, Id> = BTreeMap::new();
    for (side, e) in records {
        let Some(id) = &e.id else { continue };
        let entry = ids.entry(id.0.to_string()).or_default();
        let r = (e.time.0, e.digest());
        match side {
            Side::Audit => entry.audits.push(r),
            Side::Event => entry.events.push(r),
        }
    }
    let start = |t: i64| t.div_euclid(period.0) * period.0;
    let mut out = ReconcileOracle::default();
    for (id, s) in &ids {
        let audit = s.audits.iter().min();
        let event = s.events.iter().min();
        let matched = match (audit, event) {
            (Some(a), Some(e)) => (a.0 - e.0).abs() <= n.0,
            _ => false,
        };
        if let Some(a) = audit {
            let c = out.periods.entry(start(a.0)).or_default();
            c.audited += 1;
            if matched {
                c.matched += 1;
            } else {
                c.missing += 1;
                out.missing.insert(id.clone());
            }
            c.duplicate_audits += s.audits.len() as u64 - 1;
        }
        if let Some(e) = event {
            let c = out.periods.entry(start(e.0)).or_default();
            c.duplicate_events += s.events.len() as u64 - 1;
            if !matched {
                c.unexpected += 1;
            }
        }
    }
    // A period only matched events fall into has nothing to report.
    out.periods.retain(|_, c| *c != Completeness::default());
    out
}
