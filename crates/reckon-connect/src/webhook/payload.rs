//! Webhook bodies: a Slack message for people, structured JSON for programs.
//!
//! The Slack text carries what seed 000's alert carried (measurement, window time, old
//! and new count) and what it left out: the pipeline, the series key, the versions and
//! the old and new value of every aggregate, so the reader knows what changed and by
//! how much without opening a dashboard. Floats are printed in their shortest
//! round-trip form (`2.066666666666667`, neither the noisy `2.06666666666666687391`
//! nor a rounded `2.07` that hides small corrections), with an exponent only where
//! plain digits would be unreadable.

use super::Correction;
use reckon_core::{Emission, EmissionKind, Value};
use reckon_runtime::WebhookFormat;
use serde_json::{Map, Value as Json, json};
use std::fmt::Write as _;

/// Windows listed in one Slack message; the rest are summarised as "… and N more
/// windows" (Slack truncates long messages, and a wall of lines is not read anyway).
pub const SLACK_MAX_WINDOWS: usize = 20;

/// Characters of a string value shown in a Slack message before it is cut.
const SLACK_MAX_STRING: usize = 80;

/// The body of one webhook message about `corrections` (typically one
/// [`super::DigestBatch`]), from webhook `webhook_name`.
///
/// - [`WebhookFormat::Slack`]: `{"text": "…"}`, a Slack incoming-webhook message in
///   mrkdwn with one entry per window, at most [`SLACK_MAX_WINDOWS`].
/// - [`WebhookFormat::Json`]: `{"webhook": …, "corrections": [{"change", "pipeline",
///   "stream", "key", "window": {"start", "end"}, "kind", "version",
///   "previous_version", "count", "previous_count", "values", "previous_values",
///   "emitted_at"}]}`; the `previous_*` fields are `null` for a first result, times are
///   RFC 3339.
pub fn payload(format: WebhookFormat, webhook_name: &str, corrections: &[Correction]) -> Json {
    match format {
        WebhookFormat::Slack => json!({ "text": slack_text(webhook_name, corrections) }),
        WebhookFormat::Json => json!({
            "webhook": webhook_name,
            "corrections": corrections.iter().map(correction_json).collect::<Vec<_>>(),
        }),
        WebhookFormat::Alertmanager => {
            alertmanager(webhook_name, corrections, &AlertMeta::default())
        }
        WebhookFormat::Trigger => trigger(webhook_name, None, corrections, &AlertMeta::default()),
    }
}

/// Whether `c` is an alert episode beginning: its first stored version, or its first
/// after a retraction, firing or already over (an episode found when its windows had
/// closed is stored resolved at once). What a `trigger` webhook runs a batch for.
pub fn begins_episode(c: &Correction) -> bool {
    let e = &c.emission;
    matches!(e.kind, EmissionKind::Firing | EmissionKind::Resolved)
        && c.previous
            .as_ref()
            .is_none_or(|p| p.kind == EmissionKind::Retracted)
}

/// The body of a `trigger` webhook (seed 004's "onTrigger" batch): for one episode,
/// `{"trigger", "tenant", "rule", "key", "tags", "window": {"start", "end"}, "state",
/// "late", "detected_at", "value", "input_count", "labels", "annotations", "change",
/// "version"}`; for several, `{"trigger", "runs": [...]}` (a trigger's digest holds one).
pub fn trigger(
    webhook_name: &str,
    tenant: Option<&str>,
    corrections: &[Correction],
    meta: &AlertMeta,
) -> Json {
    let runs: Vec<Json> = corrections
        .iter()
        .map(|c| {
            let e = &c.emission;
            let (labels, annotations) = meta.get(&*e.pipeline).cloned().unwrap_or_default();
            let tags: Map<String, Json> = e
                .key
                .tags()
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect();
            json!({
                "trigger": webhook_name,
                "tenant": tenant,
                "rule": &*e.pipeline,
                "key": e.key.as_str(),
                "tags": tags,
                "window": { "start": e.window.start.to_string(), "end": e.window.end.to_string() },
                "state": e.kind.as_str(),
                "late": matches!(e.value("late"), Some(Value::Bool(true))),
                "detected_at": e.emitted_at.to_string(),
                "value": e.value("value").map(value_json),
                "input_count": e.value("input_count").map(value_json),
                "labels": labels,
                "annotations": annotations,
                "change": c.change,
                "version": e.version.0,
            })
        })
        .collect();
    match <[Json; 1]>::try_from(runs) {
        Ok([one]) => one,
        Err(runs) => json!({ "trigger": webhook_name, "runs": runs }),
    }
}

/// Labels and annotations of alert rules, by rule name (as its corrections name it).
pub type AlertMeta = std::collections::BTreeMap<
    String,
    (
        std::collections::BTreeMap<String, String>,
        std::collections::BTreeMap<String, String>,
    ),
>;

/// Alertmanager's webhook body (version 4) for the alert episodes among `corrections`
/// (other corrections are left out): one alert per episode version, `status` firing
/// or resolved (a retraction resolves it, annotated `reckon_retracted`), labels
/// `alertname`, the series' tags and the rule's labels, the rule's annotations plus
/// `reckon_late` (it fired after its window had closed) and `reckon_detected_at`.
pub fn alertmanager(webhook_name: &str, corrections: &[Correction], meta: &AlertMeta) -> Json {
    const NEVER: &str = "0001-01-01T00:00:00Z";
    let mut alerts = Vec::new();
    for c in corrections {
        let e = &c.emission;
        let state = match e.kind {
            EmissionKind::Firing => "firing",
            EmissionKind::Resolved => "resolved",
            EmissionKind::Retracted => "retracted",
            _ => continue,
        };
        let (rule_labels, rule_annotations) = meta.get(&*e.pipeline).cloned().unwrap_or_default();
        let mut labels = Map::new();
        labels.insert("alertname".into(), json!(&*e.pipeline));
        for (k, v) in e.key.tags() {
            labels.insert(k, json!(v));
        }
        for (k, v) in rule_labels {
            labels.insert(k, json!(v));
        }
        let mut annotations: Map<String, Json> = rule_annotations
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        let late = matches!(e.value("late"), Some(Value::Bool(true)));
        annotations.insert("reckon_late".into(), json!(late.to_string()));
        annotations.insert("reckon_detected_at".into(), json!(e.emitted_at.to_string()));
        annotations.insert(
            "reckon_window".into(),
            json!(format!("{} – {}", e.window.start, e.window.end)),
        );
        if state == "retracted" {
            annotations.insert(
                "reckon_retracted".into(),
                json!("a correction of the input took this alert back"),
            );
        }
        let starts = e.window.start.to_string();
        let ends = match (state, e.value("resolved_at")) {
            ("firing", _) => NEVER.to_string(),
            ("retracted", _) => starts.clone(),
            (_, Some(Value::Str(t))) => t.to_string(),
            _ => NEVER.to_string(),
        };
        let fingerprint = xxhash_rust::xxh3::xxh3_64(
            format!("{}\0{}\0{starts}", e.pipeline, e.key.as_str()).as_bytes(),
        );
        alerts.push(json!({
            "status": if state == "firing" { "firing" } else { "resolved" },
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts,
            "endsAt": ends,
            "generatorURL": "",
            "fingerprint": format!("{fingerprint:016x}"),
        }));
    }
    let common = |field: &str| -> Map<String, Json> {
        let mut all = alerts
            .iter()
            .map(|a| a[field].as_object().cloned().unwrap_or_default());
        let Some(first) = all.next() else {
            return Map::new();
        };
        all.fold(first, |acc, m| {
            acc.into_iter()
                .filter(|(k, v)| m.get(k) == Some(v))
                .collect()
        })
    };
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    let common_labels = common("labels");
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{webhook=\"{webhook_name}\"}}"),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": webhook_name,
        "groupLabels": {},
        "commonLabels": common_labels,
        "commonAnnotations": common("annotations"),
        "externalURL": "",
        "alerts": alerts,
    })
}

fn correction_json(c: &Correction) -> Json {
    let e = &c.emission;
    let p = c.previous.as_ref();
    json!({
        "change": c.change,
        "pipeline": &*e.pipeline,
        "stream": &*c.stream,
        "key": e.key.as_str(),
        "window": { "start": e.window.start.to_string(), "end": e.window.end.to_string() },
        "kind": e.kind.as_str(),
        "version": e.version.0,
        "previous_version": p.map(|p| p.version.0),
        "count": e.count,
        "previous_count": p.map(|p| p.count),
        "values": values_json(e),
        "previous_values": p.map(values_json),
        "emitted_at": e.emitted_at.to_string(),
    })
}

fn values_json(e: &Emission) -> Json {
    let mut m = Map::new();
    for (column, value) in e.columns.iter().zip(&e.values) {
        m.insert(
            column.to_string(),
            value.as_ref().map_or(Json::Null, value_json),
        );
    }
    Json::Object(m)
}

/// A value as JSON. reckon's floats are finite, so they are numbers (serde_json prints
/// them in shortest round-trip form); a non-finite one would become `null`, not text.
fn value_json(v: &Value) -> Json {
    match v {
        Value::F64(x) => json!(x),
        Value::I64(i) => json!(i),
        Value::Bool(b) => json!(b),
        Value::Str(s) => json!(&**s),
    }
}

fn slack_text(webhook_name: &str, corrections: &[Correction]) -> String {
    let total = corrections.len();
    let late = corrections.iter().filter(|c| c.is_late()).count();
    let windows = |n: usize| if n == 1 { "window" } else { "windows" };
    let mut s = String::new();
    let missing = count_kind(corrections, EmissionKind::Missing);
    let found = count_kind(corrections, EmissionKind::Found);
    if missing + found == total && total > 0 {
        let _ = write!(
            s,
            ":rotating_light: *{missing} missing, {found} found* (reconciliation)"
        );
    } else if missing + found > 0 {
        let windows_n = total - missing - found;
        let _ = write!(
            s,
            ":rotating_light: *{missing} missing, {found} found, {windows_n} {} updated*",
            windows(windows_n)
        );
    } else if late == total && total > 0 {
        let _ = write!(
            s,
            ":warning: *Late data corrected {total} {}*",
            windows(total)
        );
    } else if late == 0 {
        let _ = write!(s, "*{total} {} updated*", windows(total));
    } else {
        let _ = write!(
            s,
            ":warning: *{total} {} updated, {late} corrected by late data*",
            windows(total)
        );
    }
    let _ = write!(s, " (reckon webhook {})", code(webhook_name));
    for c in corrections.iter().take(SLACK_MAX_WINDOWS) {
        s.push('\n');
        window_entry(&mut s, c);
    }
    if total > SLACK_MAX_WINDOWS {
        let more = total - SLACK_MAX_WINDOWS;
        let _ = write!(s, "\n… and {more} more {}", windows(more));
    }
    s
}

/// Columns shown per reported id (its facts and the first context fields).
const SLACK_MAX_ID_COLUMNS: usize = 12;

fn count_kind(corrections: &[Correction], kind: EmissionKind) -> usize {
    corrections
        .iter()
        .filter(|c| c.emission.kind == kind)
        .count()
}

/// One line per id a reconciliation reported missing or found, with its facts.
fn id_entry(s: &mut String, c: &Correction) {
    let e = &c.emission;
    let id = e
        .key
        .tags()
        .into_iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let icon = if e.kind == EmissionKind::Missing {
        ":x:"
    } else {
        ":white_check_mark:"
    };
    let _ = write!(
        s,
        "• {icon} id {} {} · reconcile {}",
        code(&cut(&id)),
        e.kind.as_str(),
        code(&e.pipeline)
    );
    // The facts first; the audit context is cut to a few fields.
    for (column, value) in e.columns.iter().zip(&e.values).take(SLACK_MAX_ID_COLUMNS) {
        if &**column != "status" {
            // Times and context read better unquoted here.
            let text = match value {
                Some(Value::Str(v)) => escape(&cut(v)),
                other => value_text(other.as_ref()),
            };
            let _ = write!(s, " · {} {text}", escape(column));
        }
    }
}

/// Two lines per window: where (measurement, key, window time) and what changed.
fn window_entry(s: &mut String, c: &Correction) {
    if c.is_id_report() {
        return id_entry(s, c);
    }
    let e = &c.emission;
    let _ = write!(
        s,
        "• Measurement {} · key {} · window {} – {}\n    pipeline {} · ",
        bold(&c.stream),
        code(e.key.as_str()),
        e.window.start,
        e.window.end,
        code(&e.pipeline),
    );
    match &c.previous {
        Some(p) => {
            let _ = write!(s, "{} → {} ({})", p.version, e.version, e.kind.as_str());
            let _ = write!(s, " · count {} → {}", p.count, e.count);
        }
        None => {
            let _ = write!(s, "{} ({}) · count {}", e.version, e.kind.as_str(), e.count);
        }
    }
    for (column, value) in e.columns.iter().zip(&e.values) {
        let old = c.previous.as_ref().map(|p| p.value(column));
        if is_count_column(column, value.as_ref(), e.count)
            && c.previous
                .as_ref()
                .is_none_or(|p| is_count_column(column, p.value(column), p.count))
        {
            // Already shown as the window's count.
            continue;
        }
        let new = value_text(value.as_ref());
        match old {
            None => {
                let _ = write!(s, " · {} {new}", escape(column));
            }
            Some(old) => {
                let old = value_text(old);
                if old == new {
                    let _ = write!(s, " · {} {new} (unchanged)", escape(column));
                } else {
                    let _ = write!(s, " · {} {old} → {new}", escape(column));
                }
            }
        }
    }
}

/// A column named `count` holding the window's event count repeats what the entry
/// already says.
fn is_count_column(column: &str, value: Option<&Value>, count: u64) -> bool {
    column == "count" && value.and_then(Value::as_f64) == Some(count as f64)
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        None => "none".to_string(),
        Some(Value::F64(x)) => float_text(*x),
        Some(Value::I64(i)) => i.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Str(s)) => format!("\"{}\"", escape(&cut(s))),
    }
}

/// At most `SLACK_MAX_STRING` characters of `s`, with `…` if cut.
fn cut(s: &str) -> String {
    let mut cut: String = s.chars().take(SLACK_MAX_STRING).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    cut
}

/// The shortest text that parses back to `x`: plain digits for ordinary magnitudes,
/// scientific notation for very large or very small ones (Rust's `{}` would print
/// `1e300` as 301 digits).
pub(crate) fn float_text(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) || !x.is_finite() {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Slack mrkdwn needs `&`, `<` and `>` escaped; everything else is literal.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Line breaks in names would break the message's layout.
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

/// Inline code; a backtick in the text would end the span early, so it is replaced.
fn code(s: &str) -> String {
    format!("`{}`", escape(s).replace('`', "'"))
}

/// Bold; an asterisk in the text would end the span early, so it is replaced.
fn bold(s: &str) -> String {
    format!("*{}*", escape(s).replace('*', "∗"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reckon_core::{
        Checksum, EmissionKind, EventTime, Key, ProcessingTime, Version, Watermark, Window,
    };
    use std::sync::Arc;

    /// 2022-06-13T14:00:00Z, the hour of seed 000's alert.
    const T: i64 = 1_655_128_800;
    /// The mean of 360 readings summing to 744, then with a late reading of 3.6.
    const OLD_MEAN: f64 = 744.0 / 360.0;
    const NEW_MEAN: f64 = (744.0 + 3.6) / 361.0;

    fn emission(version: u32, kind: EmissionKind, count: u64, mean: f64) -> Emission {
        Emission {
            pipeline: Arc::from("water_level_mean_1h"),
            key: Key::from_tags([("i", "42")]).expect("valid key"),
            window: Window {
                start: EventTime::from_secs(T),
                end: EventTime::from_secs(T + 3600),
            },
            version: Version(version),
            kind,
            columns: Arc::from(vec![Arc::<str>::from("mean"), Arc::<str>::from("count")]),
            values: vec![Some(Value::F64(mean)), Some(Value::I64(count as i64))],
            count,
            checksum: Checksum::default(),
            emitted_at: ProcessingTime::from_secs(T + 7200),
            watermark: Watermark(EventTime::from_secs(T + 7190)),
            states: None,
        }
    }

    #[test]
    fn reconciliation_reports_are_news_and_read_as_one_line_per_id() {
        use reckon_core::Span;
        use reckon_core::reconcile::{Completeness, ReconOutput, ReconcileSpec};
        let spec = ReconcileSpec::new(
            "payments_recon",
            Span::minutes(15),
            Span::minutes(10),
            Span::hours(1),
        )
        .expect("valid spec");
        let at = |s: i64| EventTime::from_secs(T + s);
        let now = ProcessingTime::from_secs(T);
        let report = |o: ReconOutput| Correction {
            change: 1,
            stream: Arc::from("payments_audit"),
            emission: o.to_emission(&spec, now),
            previous: None,
        };
        let missing = report(ReconOutput::Missing {
            id: Arc::from("p2"),
            audit_time: at(60),
            context: vec![(Arc::from("source"), Value::Str(Arc::from("ledger")))],
            detected_at: Watermark(at(1800)),
        });
        let found = report(ReconOutput::Found {
            id: Arc::from("p2"),
            audit_time: at(60),
            missing_since: Watermark(at(1800)),
            event_time: at(89),
            found_at: Watermark(at(1900)),
            delay: Span::secs(29),
        });
        let period = |version| {
            report(ReconOutput::Completeness {
                period: Window {
                    start: at(0),
                    end: at(900),
                },
                version: Version(version),
                counts: Completeness {
                    audited: 3,
                    matched: 2,
                    missing: 1,
                    ..Completeness::default()
                },
                watermark: Watermark(at(1800)),
            })
        };
        assert!(missing.is_late() && found.is_late() && period(2).is_late());
        assert!(
            !period(1).is_late(),
            "a period's first counts are not a correction"
        );
        let t = text(&[missing.clone(), found]);
        assert!(
            t.starts_with(":rotating_light: *1 missing, 1 found*"),
            "{t}"
        );
        assert!(
            t.contains("• :x: id `p2` missing · reconcile `payments_recon` · audit_time 2022-06-13T14:01:00Z · detected_at 2022-06-13T14:30:00Z · audit.source ledger"),
            "{t}"
        );
        assert!(
            t.contains("• :white_check_mark: id `p2` found · reconcile `payments_recon`")
                && t.contains("· delay_s 29"),
            "{t}"
        );
        let t = text(&[missing, period(2)]);
        assert!(t.contains("percent"), "{t}");
    }

    fn seed_000() -> Correction {
        Correction {
            change: 17,
            stream: Arc::from("water_level"),
            emission: emission(2, EmissionKind::Late, 361, NEW_MEAN),
            previous: Some(emission(1, EmissionKind::OnTime, 360, OLD_MEAN)),
        }
    }

    fn text(corrections: &[Correction]) -> String {
        let p = payload(WebhookFormat::Slack, "ops", corrections);
        p["text"].as_str().expect("text is a string").to_string()
    }

    #[test]
    fn slack_carries_seed_000_facts_and_more() {
        let t = text(&[seed_000()]);
        for needle in [
            ":warning: *Late data corrected 1 window*",
            "`ops`",
            "Measurement *water_level*",
            "key `i=42`",
            "window 2022-06-13T14:00:00Z – 2022-06-13T15:00:00Z",
            "pipeline `water_level_mean_1h`",
            "v1 → v2 (late)",
            "count 360 → 361",
            "mean 2.066666666666667 → 2.0709141274238227",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
        }
        // The `count` aggregate equals the window count: not repeated.
        assert_eq!(t.matches("count").count(), 1, "{t}");
    }

    #[test]
    fn slack_first_result_and_unchanged_values() {
        let mut first = seed_000();
        first.previous = None;
        first.emission.kind = EmissionKind::OnTime;
        first.emission.version = Version(1);
        let t = text(&[first]);
        assert!(t.starts_with("*1 window updated*"), "{t}");
        assert!(t.contains("v1 (on_time) · count 361 · mean 2.0709141274238227"));

        let mut same = seed_000();
        same.emission.values[0] = Some(Value::F64(OLD_MEAN));
        assert!(text(&[same]).contains("mean 2.066666666666667 (unchanged)"));
    }

    #[test]
    fn slack_caps_windows() {
        let many: Vec<Correction> = (0..SLACK_MAX_WINDOWS + 3).map(|_| seed_000()).collect();
        let t = text(&many);
        assert_eq!(t.matches("• Measurement").count(), SLACK_MAX_WINDOWS);
        assert!(t.ends_with("… and 3 more windows"), "{t}");
        assert!(t.contains("corrected 23 windows"));
    }

    #[test]
    fn slack_escapes_markup() {
        let mut c = seed_000();
        c.stream = Arc::from("a<b>&*c");
        c.emission.key = Key::from_tags([("i", "`x`")]).expect("valid key");
        c.emission.values[0] = Some(Value::Str(Arc::from("<!channel>")));
        let t = text(&[c]);
        assert!(t.contains("*a&lt;b&gt;&amp;∗c*"), "{t}");
        assert!(t.contains("key `i='x'`"), "{t}");
        assert!(t.contains("\"&lt;!channel&gt;\""), "{t}");
        assert!(!t.contains("<!channel>"));
    }

    #[test]
    fn json_has_every_field() {
        let p = payload(WebhookFormat::Json, "ops", &[seed_000()]);
        assert_eq!(p["webhook"], "ops");
        let c = &p["corrections"][0];
        assert_eq!(c["change"], 17);
        assert_eq!(c["pipeline"], "water_level_mean_1h");
        assert_eq!(c["stream"], "water_level");
        assert_eq!(c["key"], "i=42");
        assert_eq!(c["window"]["start"], "2022-06-13T14:00:00Z");
        assert_eq!(c["window"]["end"], "2022-06-13T15:00:00Z");
        assert_eq!(c["kind"], "late");
        assert_eq!(c["version"], 2);
        assert_eq!(c["previous_version"], 1);
        assert_eq!(c["count"], 361);
        assert_eq!(c["previous_count"], 360);
        assert_eq!(c["values"]["mean"], NEW_MEAN);
        assert_eq!(c["values"]["count"], 361);
        assert_eq!(c["previous_values"]["mean"], OLD_MEAN);
        assert_eq!(c["emitted_at"], "2022-06-13T16:00:00Z");
        let body = serde_json::to_string(&p).expect("serialisable");
        assert!(body.contains("2.066666666666667"), "{body}");
        assert!(body.contains("2.0709141274238227"), "{body}");
    }

    #[test]
    fn json_first_result_has_null_previous() {
        let mut c = seed_000();
        c.previous = None;
        c.emission.values[0] = None;
        let p = payload(WebhookFormat::Json, "ops", &[c]);
        let c = &p["corrections"][0];
        assert!(c["previous_version"].is_null());
        assert!(c["previous_count"].is_null());
        assert!(c["previous_values"].is_null());
        assert!(c["values"]["mean"].is_null());
    }

    #[test]
    fn floats_print_shortest_round_trip() {
        for x in [
            0.1 + 0.2,
            2.066666666666667,
            1.0,
            -3.5,
            0.0,
            1e300,
            5e-324,
            123456.789,
            1e-5,
            f64::MAX,
        ] {
            let t = float_text(x);
            assert_eq!(t.parse::<f64>().ok(), Some(x), "{t}");
            assert!(t.len() <= 24, "{t} is too long");
        }
        assert_eq!(float_text(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float_text(1e300), "1e300");
        assert_eq!(float_text(2.5), "2.5");
    }
}
