//! How results look on the wire: JSON objects and CSV rows, shared by the queries and
//! the change feed. Times are RFC 3339 in UTC with nanoseconds when they have them.

use crate::writer::kind_name;
use reckon_core::{Emission, Value};
use serde_json::{Map, Value as Json, json};

/// RFC 3339 text of a nanosecond timestamp.
pub fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| nanos.to_string())
}

/// A value as JSON (floats are finite in reckon, so they are always numbers).
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::F64(x) => json!(x),
        Value::I64(i) => json!(i),
        Value::Bool(b) => json!(b),
        Value::Str(s) => json!(&**s),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::F64(x) => format!("{x}"),
        Value::I64(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => s.to_string(),
    }
}

/// An emission as a JSON object; `change` is its change-feed number, if known.
pub fn emission_json(e: &Emission, change: Option<u64>) -> Json {
    let mut values = Map::new();
    for (c, v) in e.columns.iter().zip(&e.values) {
        values.insert(
            c.to_string(),
            v.as_ref().map(value_json).unwrap_or(Json::Null),
        );
    }
    let mut o = json!({
        "pipeline": crate::auth::local_name(&e.pipeline),
        "key": e.key.as_str(),
        "window": { "start": rfc3339(e.window.start.0), "end": rfc3339(e.window.end.0) },
        "version": e.version.0,
        "kind": kind_name(e.kind),
        "count": e.count,
        "values": values,
        "checksum": format!("{}:{:016x}", e.checksum.count, e.checksum.hash),
        "emitted_at": rfc3339(e.emitted_at.0),
        "watermark": rfc3339(e.watermark.0.0),
    });
    if let (Some(n), Some(obj)) = (change, o.as_object_mut()) {
        obj.insert("change".into(), json!(n));
    }
    o
}

/// CSV text of emissions. The value columns are every column of any row, in order of
/// first appearance (a window pipeline's rows share theirs; a reconciliation's
/// `missing`, `found` and `completeness` rows differ), empty where a row has none.
pub fn emissions_csv(rows: &[(Option<u64>, &Emission)]) -> Result<String, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut columns: Vec<String> = Vec::new();
    let mut last: Option<&std::sync::Arc<[std::sync::Arc<str>]>> = None;
    for (_, e) in rows {
        // Rows of one pipeline usually share one columns allocation: look once.
        if last.is_some_and(|l| std::sync::Arc::ptr_eq(l, &e.columns)) {
            continue;
        }
        last = Some(&e.columns);
        for c in e.columns.iter() {
            if !columns.iter().any(|k| **k == **c) {
                columns.push(c.to_string());
            }
        }
    }
    let with_change = rows.iter().any(|(c, _)| c.is_some());
    let mut header: Vec<String> = Vec::new();
    if with_change {
        header.push("change".into());
    }
    header.extend(
        [
            "pipeline",
            "key",
            "window_start",
            "window_end",
            "version",
            "kind",
            "events",
        ]
        .map(String::from),
    );
    header.extend(columns.iter().cloned());
    header.extend(["checksum", "emitted_at", "watermark"].map(String::from));
    w.write_record(&header).map_err(|e| e.to_string())?;
    for (change, e) in rows {
        let mut rec: Vec<String> = Vec::with_capacity(header.len());
        if with_change {
            rec.push(change.map(|c| c.to_string()).unwrap_or_default());
        }
        rec.push(crate::auth::local_name(&e.pipeline).to_string());
        rec.push(e.key.as_str().to_string());
        rec.push(rfc3339(e.window.start.0));
        rec.push(rfc3339(e.window.end.0));
        rec.push(e.version.0.to_string());
        rec.push(kind_name(e.kind).to_string());
        rec.push(e.count.to_string());
        for c in &columns {
            rec.push(e.value(c).map(value_text).unwrap_or_default());
        }
        rec.push(format!("{}:{:016x}", e.checksum.count, e.checksum.hash));
        rec.push(rfc3339(e.emitted_at.0));
        rec.push(rfc3339(e.watermark.0.0));
        w.write_record(&rec).map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// `new - old` for numbers, exactly (an absent side counts as zero); `None` when both
/// are absent.
pub(crate) fn difference(new: Option<&Value>, old: Option<&Value>) -> Option<Value> {
    let neg = |v: &Value| match v {
        Value::I64(i) => i.checked_neg().map_or(Value::F64(-(*i as f64)), Value::I64),
        Value::F64(x) => Value::F64(-x),
        other => other.clone(),
    };
    let mut d = reckon_core::aggregate::SumState::default();
    if let Some(n) = new {
        d.add(n);
    }
    if let Some(o) = old {
        d.add(&neg(o));
    }
    d.sum_value()
}

/// A running total's bucket version as the range correction it stands for: "from the
/// bucket's start on, every total moves by `delta`" (the new bucket sum minus the one
/// it replaced, `previous`), until the next reset (`until`, `null` without one).
pub(crate) fn range_json(e: &Emission, previous: Option<&Emission>, until: Option<i64>) -> Json {
    let delta = difference(e.value("delta"), previous.and_then(|p| p.value("delta")));
    serde_json::json!({
        "from": rfc3339(e.window.start.0),
        "until": until.map(rfc3339),
        "delta": delta.as_ref().map_or(Json::Null, value_json),
        "replaces": previous.map(|p| p.version.0),
    })
}
