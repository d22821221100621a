//! Backfill planning: which partitions got late data since a cursor version.
//!
//! Every commit after the cursor is read and its data-changing actions are grouped by
//! partition. A partition's change in one commit is classified:
//!
//! - [`ChangeKind::Compaction`]: only `dataChange = false` actions (OPTIMIZE, Z-order,
//!   a checkpoint of rearranged files). Never a reason to backfill.
//! - [`ChangeKind::Append`]: files added, none removed.
//! - [`ChangeKind::Delete`]: files removed and none added, or a `DELETE` (a rewrite
//!   without the deleted rows, or deletion vectors).
//! - [`ChangeKind::Overwrite`]: a `WRITE` in overwrite mode (or `CREATE OR REPLACE`).
//! - [`ChangeKind::Rewrite`]: files removed and added otherwise (`UPDATE`, `MERGE`).
//!
//! A change is **late** when its partition is older than the newest partition the
//! table had before the commit, by more than the grace. Partitions compare by the
//! partition column's values read as dates, timestamps or integers when they are, else
//! as text. The partitions to backfill are those with at least one late change.
//!
//! With an event-time column ([`PlanOptions::event_time_column`]) lateness follows the
//! table's **event-time watermark** instead: the newest value of the column among the
//! table's data files before the commit (from their `stats.maxValues`). A change is late
//! when the oldest row it touched (`stats.minValues` of the files it added or removed)
//! is behind that watermark by more than the grace, so late rows into the current
//! partition count and rows that arrive within the grace into the previous one do not.
//! A change whose files carry no statistics for the column falls back to the partition
//! rule.
//!
//! A gap (commits after the cursor removed by log retention or VACUUM) is an error by
//! default ([`OnGap::Fail`]); [`OnGap::AllPartitions`] plans every partition the table
//! has instead, with the reason `gap`.

use crate::error::{Error, Result};
use crate::log::{Action, Add, DeltaLog, Listing, MetaData, Protocol};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What to do when the log lost commits after the cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnGap {
    /// Refuse to plan (the changes in the lost commits are unknown).
    #[default]
    Fail,
    /// Plan every partition the table has now.
    AllPartitions,
}

/// How to plan.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// The last version already processed (`None`: none, plan from version 0).
    pub since_version: Option<u64>,
    /// The partition column that orders partitions in time (default: the first).
    pub partition_column: Option<String>,
    /// A change to a partition within this much of the newest is not late
    /// (nanoseconds; for date and timestamp partitions).
    pub grace_ns: i64,
    /// What a gap in the log does.
    pub on_gap: OnGap,
    /// A column of event times: lateness then follows the table's event-time
    /// watermark from file statistics, not the partition order.
    pub event_time_column: Option<String>,
}

/// What happened to a partition in a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Files added, none removed.
    Append,
    /// Files removed and added by an `UPDATE`, `MERGE` or similar.
    Rewrite,
    /// A `WRITE` in overwrite mode replaced the partition's files.
    Overwrite,
    /// Rows deleted.
    Delete,
    /// Files rearranged, no data changed.
    Compaction,
    /// Unknown: the commit is gone from the log.
    Gap,
}

/// One partition's change in one commit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// The commit.
    pub version: u64,
    /// Its `commitInfo.timestamp` (ms since the epoch).
    pub timestamp: Option<i64>,
    /// Its `commitInfo.operation`.
    pub operation: Option<String>,
    /// The partition (`2024-01-01`; `a=1/b=2` with several partition columns).
    pub partition: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Rows in the data-changing files added (`stats.numRecords`, less deletion
    /// vectors); files without statistics count 0.
    pub rows_added: u64,
    /// Rows in the data-changing files removed, when their statistics were written.
    pub rows_removed: Option<u64>,
    /// Files added and removed (all, compaction included).
    pub files_added: usize,
    /// Files removed.
    pub files_removed: usize,
    /// Older than the newest partition before the commit (beyond the grace), or
    /// with an event-time column, rows behind the watermark beyond the grace.
    pub late: bool,
    /// With an event-time column: the oldest event time the change touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_event_time: Option<String>,
    /// With an event-time column: the table's watermark before the commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

/// A backfill plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The table.
    pub table: PathBuf,
    /// The cursor it started after.
    pub since_version: Option<u64>,
    /// The newest version read: the next cursor.
    pub last_processed_version: Option<u64>,
    /// The partition column ordering partitions.
    pub partition_column: String,
    /// The newest partition once every commit read is applied.
    pub current_partition: Option<String>,
    /// The partitions to backfill, in order.
    pub partitions: Vec<String>,
    /// Every change read, by version then partition.
    pub changes: Vec<Change>,
    /// Versions the log no longer has (planned as [`ChangeKind::Gap`]).
    pub gap: Option<(u64, u64)>,
    /// With an event-time column: the column and the table's watermark once every
    /// commit read is applied.
    pub event_time: Option<(String, Option<String>)>,
}

impl Plan {
    /// The seed's `backfilling_configuration.json`, exactly:
    /// `{"partitions": [...], "lastProcessedVersion": N}`.
    pub fn seed_json(&self) -> Value {
        json!({
            "partitions": self.partitions,
            "lastProcessedVersion": self.last_processed_version,
        })
    }

    /// The seed's keys plus why: per partition its reasons, rows added and versions,
    /// and every change read.
    pub fn json(&self) -> Value {
        let mut details: BTreeMap<&str, (BTreeSet<ChangeKind>, u64, BTreeSet<u64>)> =
            BTreeMap::new();
        for c in self.changes.iter().filter(|c| c.late) {
            let d = details.entry(&c.partition).or_default();
            d.0.insert(c.kind);
            d.1 += c.rows_added;
            d.2.insert(c.version);
        }
        json!({
            "partitions": self.partitions,
            "lastProcessedVersion": self.last_processed_version,
            "table": self.table,
            "sinceVersion": self.since_version,
            "partitionColumn": self.partition_column,
            "currentPartition": self.current_partition,
            "gap": self.gap.map(|(a, b)| json!({ "from": a, "to": b })),
            "eventTimeColumn": self.event_time.as_ref().map(|(c, _)| c),
            "watermark": self.event_time.as_ref().and_then(|(_, w)| w.as_ref()),
            "details": details.iter().map(|(p, (kinds, rows, versions))| json!({
                "partition": p,
                "reasons": kinds,
                "rowsAdded": rows,
                "versions": versions,
            })).collect::<Vec<_>>(),
            "changes": self.changes,
        })
    }
}

/// A partition value, ordered in time when it reads as one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Order {
    /// A date or timestamp, in nanoseconds since the epoch.
    Time(i64),
    /// An integer.
    Int(i64),
    /// Anything else.
    Text(String),
}

impl Order {
    fn of(v: &str) -> Order {
        if let Ok(d) = v.parse::<jiff::civil::Date>()
            && let Ok(z) = d.to_zoned(jiff::tz::TimeZone::UTC)
        {
            return Order::Time(z.timestamp().as_nanosecond() as i64);
        }
        if let Ok(t) = v.parse::<jiff::Timestamp>() {
            return Order::Time(t.as_nanosecond() as i64);
        }
        if let Ok(dt) = v.parse::<jiff::civil::DateTime>()
            && let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::UTC)
        {
            return Order::Time(z.timestamp().as_nanosecond() as i64);
        }
        if let Ok(i) = v.parse::<i64>() {
            return Order::Int(i);
        }
        Order::Text(v.to_string())
    }

    /// Whether `self` is older than `current` by more than `grace_ns`.
    fn older(&self, current: &Order, grace_ns: i64) -> bool {
        match (self, current) {
            (Order::Time(a), Order::Time(b)) => a.saturating_add(grace_ns) < *b,
            _ => self < current,
        }
    }
}

/// The table at one version: its files' partition values, protocol and metadata.
#[derive(Clone, Debug, Default)]
struct State {
    files: BTreeMap<String, File>,
    protocol: Option<Protocol>,
    meta: Option<MetaData>,
}

/// A live data file: its partition values and statistics.
#[derive(Clone, Debug, Default)]
struct File {
    values: BTreeMap<String, Option<String>>,
    stats: Option<String>,
}

impl State {
    fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Add(add) => {
                    self.files.insert(
                        add.path.clone(),
                        File {
                            values: add.partition_values.clone(),
                            stats: add.stats.clone(),
                        },
                    );
                }
                Action::Remove(r) => {
                    self.files.remove(&r.path);
                }
                Action::Protocol(p) => self.protocol = Some(p.clone()),
                Action::MetaData(m) => self.meta = Some(m.clone()),
                Action::CommitInfo(_) => {}
            }
        }
    }
}

/// The table at `version`, from the newest checkpoint at or before it and the commits
/// after; or, when the log no longer reaches back that far, from a later checkpoint with
/// the commits in between undone (their removes carry partition values).
fn state_at(log: &DeltaLog, listing: &Listing, version: u64) -> Result<State> {
    let have = |v: u64| listing.commits.binary_search(&v).is_ok();
    let base = listing
        .checkpoints
        .range(..=version)
        .next_back()
        .filter(|(k, _)| (**k + 1..=version).all(have));
    let mut state = State::default();
    match base {
        Some((k, files)) => {
            state.apply(&log.checkpoint(files)?);
            for v in k + 1..=version {
                state.apply(&log.commit(v)?.actions);
            }
            return Ok(state);
        }
        None if (0..=version).all(have) => {
            for v in 0..=version {
                state.apply(&log.commit(v)?.actions);
            }
            return Ok(state);
        }
        None => {}
    }
    let later = listing
        .checkpoints
        .range(version + 1..)
        .find(|(k, _)| (version + 1..=**k).all(have));
    let Some((k, files)) = later else {
        return Err(Error::Gap {
            table: log.table().to_path_buf(),
            message: format!(
                "the log cannot rebuild the table at version {version}: the commits up to it and every checkpoint at or before it are gone"
            ),
        });
    };
    state.apply(&log.checkpoint(files)?);
    for v in (version + 1..=*k).rev() {
        for a in log.commit(v)?.actions.iter().rev() {
            match a {
                Action::Add(add) => {
                    state.files.remove(&add.path);
                }
                Action::Remove(r) => {
                    if let Some(pv) = &r.partition_values {
                        state.files.insert(
                            r.path.clone(),
                            File {
                                values: pv.clone(),
                                stats: r.stats.clone(),
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }
    Ok(state)
}

/// The partition of `values` as planned: the value with one partition column, else
/// `a=1/b=2` in the metadata's column order.
fn partition_name(values: &BTreeMap<String, Option<String>>, columns: &[String]) -> String {
    let text = |c: &String| {
        values
            .get(c)
            .cloned()
            .flatten()
            .unwrap_or_else(|| "null".into())
    };
    match columns {
        [one] => text(one),
        _ => columns
            .iter()
            .map(|c| format!("{c}={}", text(c)))
            .collect::<Vec<_>>()
            .join("/"),
    }
}

/// The newest value of `column` among `state`'s files.
fn newest(state: &State, column: &str) -> Option<(Order, String)> {
    state
        .files
        .values()
        .filter_map(|f| f.values.get(column).cloned().flatten())
        .map(|v| (Order::of(&v), v))
        .max()
}

/// `stats.{which}[column]` of a file (`minValues` or `maxValues`), as text and order.
fn stat(stats: Option<&str>, which: &str, column: &str) -> Option<(Order, String)> {
    let stats: Value = serde_json::from_str(stats?).ok()?;
    let v = match stats.get(which)?.get(column)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some((Order::of(&v), v))
}

/// The table's event-time watermark: the newest `column` value among its files.
fn watermark(state: &State, column: &str) -> Option<(Order, String)> {
    state
        .files
        .values()
        .filter_map(|f| stat(f.stats.as_deref(), "maxValues", column))
        .max()
}

/// Plans the backfill of the table `log` since `options.since_version`.
pub fn plan(log: &DeltaLog, options: &PlanOptions) -> Result<Plan> {
    let listing = log.listing()?;
    let table = log.table().to_path_buf();
    let Some(latest) = listing.latest() else {
        return Err(Error::Plan(format!(
            "{}: _delta_log holds no commit yet",
            table.display()
        )));
    };
    let since = options.since_version;
    if since.is_some_and(|c| c > latest) {
        return Err(Error::Plan(format!(
            "{}: the cursor (version {}) is ahead of the table's newest version {latest}: was the table recreated?",
            table.display(),
            since.unwrap_or_default()
        )));
    }
    let first = since.map_or(0, |c| c + 1);
    let end = latest_state(log, &listing, latest)?;
    let protocol = end.protocol.clone().ok_or_else(|| {
        Error::Plan(format!(
            "{}: the log has no protocol action",
            table.display()
        ))
    })?;
    protocol.check(&table)?;
    let columns = end
        .meta
        .as_ref()
        .map(|m| m.partition_columns.clone())
        .unwrap_or_default();
    let column = match &options.partition_column {
        Some(c) if columns.contains(c) => c.clone(),
        Some(c) => {
            return Err(Error::Plan(format!(
                "{}: `{c}` is not a partition column (the table's: {})",
                table.display(),
                if columns.is_empty() {
                    "none".into()
                } else {
                    columns.join(", ")
                }
            )));
        }
        None => columns.first().cloned().ok_or_else(|| {
            Error::Plan(format!(
                "{}: the table is not partitioned, so no partition can be late",
                table.display()
            ))
        })?,
    };
    let missing: Vec<u64> = (first..=latest)
        .filter(|v| listing.commits.binary_search(v).is_err())
        .collect();
    let mut plan = Plan {
        table: table.clone(),
        since_version: since,
        last_processed_version: Some(latest),
        partition_column: column.clone(),
        current_partition: newest(&end, &column).map(|(_, v)| v),
        partitions: Vec::new(),
        changes: Vec::new(),
        gap: None,
        event_time: None,
    };
    if let (Some(&a), Some(&b)) = (missing.first(), missing.last()) {
        if options.on_gap == OnGap::Fail {
            return Err(Error::Gap {
                table,
                message: format!(
                    "commits {a} to {b} after the cursor {} are gone from _delta_log (log retention or VACUUM removed them): what they changed is unknown. Plan every partition with --on-gap all, or reprocess the table",
                    since.map_or("(none)".into(), |c| c.to_string())
                ),
            });
        }
        plan.gap = Some((a, b));
        let parts: BTreeSet<(Order, String)> = end
            .files
            .values()
            .map(|f| {
                let name = partition_name(&f.values, &columns);
                (Order::of(&name), name)
            })
            .collect();
        for (_, p) in parts {
            plan.changes.push(Change {
                version: b,
                timestamp: None,
                operation: None,
                partition: p.clone(),
                kind: ChangeKind::Gap,
                rows_added: 0,
                rows_removed: None,
                files_added: 0,
                files_removed: 0,
                late: true,
                min_event_time: None,
                watermark: None,
            });
            plan.partitions.push(p);
        }
        return Ok(plan);
    }
    // The newest partition before the first commit read.
    let event = options.event_time_column.as_deref();
    let start = match since {
        None => None,
        Some(c) => Some(state_at(log, &listing, c)?),
    };
    let mut current: Option<Order> = start
        .as_ref()
        .and_then(|s| newest(s, &column))
        .map(|(o, _)| o);
    let mut wm: Option<(Order, String)> = match (event, &start) {
        (Some(e), Some(s)) => watermark(s, e),
        _ => None,
    };
    let mut late = BTreeSet::new();
    for v in first..=latest {
        let commit = log.commit(v)?;
        for a in &commit.actions {
            if let Action::Protocol(p) = a {
                p.check(&table)?;
            }
        }
        let info = commit.info().cloned().unwrap_or_default();
        let op = info
            .operation
            .clone()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let overwrite = info
            .operation_parameters
            .as_ref()
            .and_then(|p| p.get("mode"))
            .and_then(Value::as_str)
            .is_some_and(|m| m.eq_ignore_ascii_case("overwrite"))
            || op.contains("REPLACE");
        #[derive(Default)]
        struct Part<'a> {
            added: Vec<&'a Add>,
            removed_paths: BTreeSet<&'a str>,
            removed_rows: Option<u64>,
            data_removed: usize,
            files_added: usize,
            files_removed: usize,
            value: Option<String>,
            min_event: Option<(Order, String)>,
            max_event: Option<(Order, String)>,
        }
        let widen = |p: &mut Part<'_>, stats: Option<&str>| {
            let Some(e) = event else { return };
            if let Some(m) = stat(stats, "minValues", e)
                && p.min_event.as_ref().is_none_or(|c| m < *c)
            {
                p.min_event = Some(m);
            }
        };
        let mut parts: BTreeMap<String, Part<'_>> = BTreeMap::new();
        for a in &commit.actions {
            match a {
                Action::Add(add) => {
                    let p = parts
                        .entry(partition_name(&add.partition_values, &columns))
                        .or_default();
                    p.files_added += 1;
                    p.value = add.partition_values.get(&column).cloned().flatten();
                    if add.data_change {
                        p.added.push(add);
                        widen(p, add.stats.as_deref());
                        if let Some(e) = event
                            && let Some(m) = stat(add.stats.as_deref(), "maxValues", e)
                            && p.max_event.as_ref().is_none_or(|c| m > *c)
                        {
                            p.max_event = Some(m);
                        }
                    }
                }
                Action::Remove(r) => {
                    let pv = r.partition_values.clone().unwrap_or_default();
                    let p = parts.entry(partition_name(&pv, &columns)).or_default();
                    p.files_removed += 1;
                    if p.value.is_none() {
                        p.value = pv.get(&column).cloned().flatten();
                    }
                    if r.data_change {
                        p.data_removed += 1;
                        p.removed_paths.insert(&r.path);
                        widen(p, r.stats.as_deref());
                        let rows = r
                            .stats
                            .as_deref()
                            .and_then(|s| serde_json::from_str::<Value>(s).ok())
                            .and_then(|s| s.get("numRecords")?.as_u64());
                        p.removed_rows = match (p.removed_rows, rows) {
                            (Some(a), Some(b)) => Some(a + b),
                            (None, Some(b)) if p.data_removed == 1 => Some(b),
                            _ => None,
                        };
                    }
                }
                _ => {}
            }
        }
        let before = current.clone();
        let wm_before = wm.clone();
        for (name, p) in &parts {
            // A file re-added with a deletion vector over its removed self: rows deleted.
            let dv_delete = p
                .added
                .iter()
                .any(|a| a.deletion_vector.is_some() && p.removed_paths.contains(a.path.as_str()));
            let kind = match (p.added.is_empty(), p.data_removed == 0) {
                (true, true) => ChangeKind::Compaction,
                (false, true) => ChangeKind::Append,
                (true, false) => ChangeKind::Delete,
                (false, false) if op == "DELETE" || dv_delete => ChangeKind::Delete,
                (false, false) if overwrite => ChangeKind::Overwrite,
                (false, false) => ChangeKind::Rewrite,
            };
            let by_partition = || match (&p.value, &before) {
                (Some(v), Some(cur)) => Order::of(v).older(cur, options.grace_ns),
                _ => false,
            };
            let is_late = kind != ChangeKind::Compaction
                && match (&p.min_event, &wm_before) {
                    (Some((m, _)), Some((w, _))) => m.older(w, options.grace_ns),
                    // The first rows ever: nothing to be late behind.
                    (Some(_), None) => false,
                    (None, _) => by_partition(),
                };
            if is_late {
                late.insert((Order::of(name), name.clone()));
            }
            plan.changes.push(Change {
                version: v,
                timestamp: info.timestamp,
                operation: info.operation.clone(),
                partition: name.clone(),
                kind,
                rows_added: p.added.iter().filter_map(|a| a.live_rows()).sum(),
                rows_removed: p.removed_rows,
                files_added: p.files_added,
                files_removed: p.files_removed,
                late: is_late,
                min_event_time: p.min_event.as_ref().map(|(_, v)| v.clone()),
                watermark: event.and(wm_before.as_ref().map(|(_, v)| v.clone())),
            });
            if let Some(m) = &p.max_event
                && wm.as_ref().is_none_or(|w| m > w)
            {
                wm = Some(m.clone());
            }
            if !p.added.is_empty()
                && let Some(v) = &p.value
            {
                let o = Order::of(v);
                if current.as_ref().is_none_or(|c| o > *c) {
                    current = Some(o);
                }
            }
        }
    }
    plan.partitions = late.into_iter().map(|(_, p)| p).collect();
    plan.event_time = event.map(|e| (e.to_string(), wm.map(|(_, v)| v)));
    Ok(plan)
}

/// The table at its newest version.
fn latest_state(log: &DeltaLog, listing: &Listing, latest: u64) -> Result<State> {
    state_at(log, listing, latest)
}
