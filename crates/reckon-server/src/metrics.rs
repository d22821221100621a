//! `GET /metrics`: counters, gauges and latency histograms in the Prometheus text
//! format (version 0.0.4).
//!
//! A small registry of our own rather than the `metrics` crate's global recorder: each
//! server instance owns its metrics (tests run several servers in one process, and a
//! global recorder can be installed only once), and the few metric families reckon has
//! are known up front. Names follow `reckon_<thing>_<unit>_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Every metric family: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "reckon_source_messages_total",
        "counter",
        "Messages a [[source]] committed with their events, per source.",
    ),
    (
        "reckon_source_events_total",
        "counter",
        "Events decoded from a source's committed messages, per source.",
    ),
    (
        "reckon_source_redelivered_total",
        "counter",
        "Messages a broker delivered again that were committed already (skipped), per source.",
    ),
    (
        "reckon_source_decode_errors_total",
        "counter",
        "Lines of a source's messages that could not be decoded (skipped and logged), per source.",
    ),
    (
        "reckon_source_paused_total",
        "counter",
        "Times a source waited because the writer's queue was full (back-pressure), per source.",
    ),
    (
        "reckon_source_reconnects_total",
        "counter",
        "Failed connections or broker errors after which a source reconnects, per source.",
    ),
    (
        "reckon_sink_written_total",
        "counter",
        "Changes a [[sink]] wrote (its pipelines' windows, newest version each), per sink.",
    ),
    (
        "reckon_sink_errors_total",
        "counter",
        "Failed connections or writes of a sink (each retried with backoff), per sink.",
    ),
    (
        "reckon_source_lag_messages",
        "gauge",
        "Messages the broker holds for a source and has not delivered yet (NATS), per source.",
    ),
    (
        "reckon_events_accepted_total",
        "counter",
        "Events stored in the raw log, per stream.",
    ),
    (
        "reckon_events_duplicated_total",
        "counter",
        "Events dropped as duplicates by id, per stream.",
    ),
    (
        "reckon_events_rejected_total",
        "counter",
        "Events that could not be decoded (bad lines), per stream.",
    ),
    (
        "reckon_events_late_applied_total",
        "counter",
        "Late events applied to a window still in memory (hot correction), per pipeline.",
    ),
    (
        "reckon_events_recomputed_total",
        "counter",
        "Late events whose window was recomputed from the raw log (cold path), per pipeline.",
    ),
    (
        "reckon_events_dead_lettered_total",
        "counter",
        "Events kept out of a pipeline's results, per pipeline and kind: beyond_retention, unwindowable, invalid (series key or reconcile id unusable), future (beyond the stream's max_future), late (a reconciliation's record beyond its horizon).",
    ),
    (
        "reckon_emissions_total",
        "counter",
        "Results emitted, per pipeline and kind (early, on_time, late, recomputed; missing, found, completeness for a reconciliation).",
    ),
    (
        "reckon_reconcile_ids_held",
        "gauge",
        "Ids a reconciliation holds in state (waiting for a partner, or within the horizon).",
    ),
    (
        "reckon_alerts_firing",
        "gauge",
        "Episodes of an alert rule firing now (in event time), per rule.",
    ),
    (
        "reckon_watermark_seconds",
        "gauge",
        "The pipeline's watermark (event time, Unix seconds).",
    ),
    (
        "reckon_watermark_lag_seconds",
        "gauge",
        "Processing time minus the pipeline's watermark, in seconds.",
    ),
    (
        "reckon_partition_watermark_seconds",
        "gauge",
        "The watermark of one source partition of a pipeline (its maximum event time minus the out-of-orderness), in Unix seconds; the pipeline's is the minimum over the active ones.",
    ),
    (
        "reckon_ingest_requests_total",
        "counter",
        "Ingest requests by outcome (ok, partial, rejected, throttled by a tenant's quota, overloaded, failed).",
    ),
    (
        "reckon_commits_total",
        "counter",
        "Durable commits made by the writer (each holds one or more requests).",
    ),
    (
        "reckon_webhook_deliveries_total",
        "counter",
        "Webhook messages by webhook and outcome (delivered, failed).",
    ),
    (
        "reckon_webhook_attempts_total",
        "counter",
        "Webhook HTTP attempts, retries included, by webhook.",
    ),
    (
        "reckon_change_feed_clients",
        "gauge",
        "Open server-sent-event change feeds.",
    ),
    (
        "reckon_tenant_series",
        "gauge",
        "Distinct series (stream and key) of a tenant with a max_series or max_stored_bytes quota.",
    ),
    (
        "reckon_tenant_stored_bytes",
        "gauge",
        "Raw-log bytes of a tenant with a quota (at startup, plus the request bytes accepted since).",
    ),
    (
        "reckon_tenant_throttled_total",
        "counter",
        "Ingest requests refused (429) by a tenant's quota, per tenant and quota.",
    ),
    (
        "reckon_backfill_plans_total",
        "counter",
        "Backfill plans stored (a [[backfill]] table's log had new commits), per backfill.",
    ),
    (
        "reckon_backfill_partitions_total",
        "counter",
        "Late partitions those plans named, per backfill.",
    ),
    (
        "reckon_backfill_errors_total",
        "counter",
        "Planning rounds that failed (the cursor stays; the log says why), per backfill.",
    ),
    (
        "reckon_ingest_latency_seconds",
        "histogram",
        "From an ingest request's arrival at the writer queue to its durable commit.",
    ),
    (
        "reckon_correction_latency_seconds",
        "histogram",
        "From the arrival of a request with late events to the durable commit of the corrections it caused.",
    ),
];

/// Upper bounds of the latency histograms' buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The metrics of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Registry>,
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

impl Metrics {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &'static str, l: &[(&'static str, &str)], by: u64) {
        *self
            .registry()
            .counters
            .entry((name, labels(l)))
            .or_default() += by;
    }

    /// Sets a counter kept elsewhere (it must only go up).
    pub fn set_counter(&self, name: &'static str, l: &[(&'static str, &str)], value: u64) {
        self.registry().counters.insert((name, labels(l)), value);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, l: &[(&'static str, &str)], value: f64) {
        self.registry().gauges.insert((name, labels(l)), value);
    }

    /// Adds `delta` to a gauge.
    pub fn add(&self, name: &'static str, l: &[(&'static str, &str)], delta: f64) {
        *self.registry().gauges.entry((name, labels(l))).or_default() += delta;
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, l: &[(&'static str, &str)], seconds: f64) {
        let mut r = self.registry();
        let h = r.histograms.entry((name, labels(l))).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (c, b) in h.counts.iter_mut().zip(BUCKETS) {
            if seconds <= *b {
                *c += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// A counter's value (0 if never incremented).
    pub fn counter(&self, name: &'static str, l: &[(&'static str, &str)]) -> u64 {
        self.registry()
            .counters
            .get(&(name, labels(l)))
            .copied()
            .unwrap_or(0)
    }

    /// A gauge's value, if set.
    pub fn gauge(&self, name: &'static str, l: &[(&'static str, &str)]) -> Option<f64> {
        self.registry().gauges.get(&(name, labels(l))).copied()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.render_with(|l| Some(l.clone()))
    }

    /// The series of `tenant` only, named as the tenant names its objects: a series is
    /// shown when it names the tenant's pipelines, streams or webhooks (`tenant/name`,
    /// shown as `name`) or the tenant itself (a `tenant` label), and names nothing
    /// else. Server-wide series (commit counts, latencies of every request) are not.
    pub fn render_tenant(&self, tenant: &str) -> String {
        self.render_with(|l| {
            let mut mine = false;
            let mut out = Labels::with_capacity(l.len());
            for (k, v) in l {
                match *k {
                    "pipeline" | "stream" | "webhook" => {
                        let local = v.strip_prefix(tenant)?.strip_prefix('/')?;
                        mine = true;
                        out.push((k, local.to_string()));
                    }
                    "tenant" => {
                        if v != tenant {
                            return None;
                        }
                        mine = true;
                        out.push((k, v.clone()));
                    }
                    _ => out.push((k, v.clone())),
                }
            }
            mine.then_some(out)
        })
    }

    /// The exposition of the series whose labels `shown` keeps (and maps).
    fn render_with(&self, shown: impl Fn(&Labels) -> Option<Labels>) -> String {
        let r = self.registry();
        let mut out = String::new();
        for (name, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for ((n, l), v) in r.counters.range((*name, Vec::new())..) {
                if n != name {
                    break;
                }
                let Some(l) = &shown(l) else { continue };
                let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
            }
            for ((n, l), v) in r.gauges.range((*name, Vec::new())..) {
                if n != name {
                    break;
                }
                let Some(l) = &shown(l) else { continue };
                let _ = writeln!(out, "{name}{} {}", fmt_labels(l, None), fmt_f64(*v));
            }
            for ((n, l), h) in r.histograms.range((*name, Vec::new())..) {
                if n != name {
                    break;
                }
                let Some(l) = &shown(l) else { continue };
                for (c, b) in h.counts.iter().zip(BUCKETS) {
                    let le = fmt_f64(*b);
                    let _ = writeln!(out, "{name}_bucket{} {c}", fmt_labels(l, Some(&le)));
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    fmt_labels(l, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), fmt_f64(h.sum));
                let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
            }
        }
        out
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

fn fmt_labels(l: &Labels, le: Option<&str>) -> String {
    if l.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let m = Metrics::default();
        m.inc("reckon_events_accepted_total", &[("stream", "w\"x")], 3);
        m.inc("reckon_events_accepted_total", &[("stream", "w\"x")], 2);
        m.set("reckon_watermark_lag_seconds", &[("pipeline", "p")], 1.5);
        m.observe("reckon_ingest_latency_seconds", &[], 0.003);
        m.observe("reckon_ingest_latency_seconds", &[], 0.2);
        let text = m.render();
        assert!(
            text.contains("reckon_events_accepted_total{stream=\"w\\\"x\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("reckon_watermark_lag_seconds{pipeline=\"p\"} 1.5\n"));
        assert!(text.contains("reckon_ingest_latency_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("reckon_ingest_latency_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("reckon_ingest_latency_seconds_bucket{le=\"0.25\"} 2\n"));
        assert!(text.contains("reckon_ingest_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("reckon_ingest_latency_seconds_count 2\n"));
        assert!(text.contains("# TYPE reckon_emissions_total counter\n"));
        assert_eq!(
            m.counter("reckon_events_accepted_total", &[("stream", "w\"x")]),
            5
        );
    }
}
