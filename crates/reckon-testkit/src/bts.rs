//! The BTS alarms example (`examples/seed004/`): real alarm records of Vietnamese base
//! stations, rolled up 5 minutes → hour → day → ISO week → month per
//! (`station_id`, `alarm_id`), the calendar levels in `Asia/Ho_Chi_Minh`.
//!
//! [`load_bts`] reads the CSV with the `csv` crate and jiff, not with reckon's
//! connectors, and [`bts_expected`] computes every level's windows straight from the
//! rows with [`crate::rollup`]'s calendar arithmetic, so the example's expected output
//! depends on neither the engine's parsing nor its windowing nor its aggregates.

use crate::rollup::{day_window, iso_week_window, month_window, tumbling_window};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use reckon_core::{Event, EventId, EventTime, Key, Span, Value, Window};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The zone the data's local times are written in.
pub const BTS_TIME_ZONE: &str = "Asia/Ho_Chi_Minh";

/// The `threshold` that means "no threshold".
pub const NO_THRESHOLD: f64 = 999_999.0;

/// The levels of the chain, finest first, as named in [`bts_expected`]'s keys.
pub const BTS_LEVELS: [&str; 5] = ["5m", "hour", "day", "week", "month"];

/// One alarm record.
#[derive(Clone, Debug, PartialEq)]
pub struct BtsRow {
    /// Assigned as alarms were stored: ordering by it replays the arrival order.
    pub id: u64,
    /// The base station.
    pub station_id: String,
    /// The kind of alarm.
    pub alarm_id: String,
    /// `start_time`, read as local time in [`BTS_TIME_ZONE`].
    pub start: EventTime,
    /// The measured value; `None` when the cell is empty.
    pub value: Option<f64>,
    /// The threshold; `None` when the cell is empty (999999, "none", is kept as is).
    pub threshold: Option<f64>,
}

impl BtsRow {
    /// Whether the value exceeds a real threshold. SQL's NULL semantics: a missing
    /// value or threshold is not above, and neither is anything against 999999.
    pub fn above(&self) -> bool {
        match (self.value, self.threshold) {
            (Some(v), Some(t)) => v > t && t != NO_THRESHOLD,
            _ => false,
        }
    }

    /// The row as the engine would see it: key `station_id`, `alarm_id`; id; fields
    /// `value` and `threshold` as floats when present.
    pub fn to_event(&self) -> Event {
        let mut fields = Vec::new();
        for (name, v) in [("value", self.value), ("threshold", self.threshold)] {
            if let Some(x) = v {
                fields.push((name.into(), Value::F64(x)));
            }
        }
        Event {
            stream: "alarms".into(),
            key: bts_key(&self.station_id, &self.alarm_id),
            time: self.start,
            id: Some(EventId(self.id.to_string().into())),
            fields,
        }
    }
}

/// The series key of (`station_id`, `alarm_id`).
pub fn bts_key(station_id: &str, alarm_id: &str) -> Key {
    Key::from_tags([("station_id", station_id), ("alarm_id", alarm_id)])
        .expect("two distinct tag names")
}

/// The zone of [`BTS_TIME_ZONE`].
pub fn bts_zone() -> TimeZone {
    TimeZone::get(BTS_TIME_ZONE).expect("jiff bundles the tz database")
}

/// Reads an alarms CSV (header `id,station_id,alarm_id,parameter_id,start_time,
/// end_time,value,threshold`), rows in file order. A malformed row is a broken fixture:
/// it panics, naming the row.
pub fn load_bts(path: &Path) -> Vec<BtsRow> {
    let tz = bts_zone();
    let mut rd = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let headers = rd.headers().expect("a header row").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{}: no column {name}", path.display()))
    };
    let (id, station, alarm, start, value, threshold) = (
        col("id"),
        col("station_id"),
        col("alarm_id"),
        col("start_time"),
        col("value"),
        col("threshold"),
    );
    rd.records()
        .enumerate()
        .map(|(i, rec)| {
            let rec = rec.unwrap_or_else(|e| panic!("{} row {}: {e}", path.display(), i + 1));
            let cell = |c: usize| rec.get(c).unwrap_or("").trim();
            let num = |c: usize| {
                let s = cell(c);
                (!s.is_empty()).then(|| {
                    s.parse::<f64>()
                        .unwrap_or_else(|e| panic!("row {}: {s:?}: {e}", i + 1))
                })
            };
            BtsRow {
                id: cell(id)
                    .parse()
                    .unwrap_or_else(|e| panic!("row {}: id: {e}", i + 1)),
                station_id: cell(station).to_owned(),
                alarm_id: cell(alarm).to_owned(),
                start: local_time(cell(start), &tz),
                value: num(value),
                threshold: num(threshold),
            }
        })
        .collect()
}

/// `2017-10-23 12:00:25` as local time in `tz` (a time in a DST fold: the earlier).
fn local_time(s: &str, tz: &TimeZone) -> EventTime {
    let dt = DateTime::strptime("%Y-%m-%d %H:%M:%S", s)
        .unwrap_or_else(|e| panic!("start_time {s:?}: {e}"));
    let ns = dt
        .to_zoned(tz.clone())
        .unwrap_or_else(|e| panic!("start_time {s:?}: {e}"))
        .timestamp()
        .as_nanosecond();
    EventTime(i64::try_from(ns).expect("start_time inside EventTime's range"))
}

/// The expected values of one window.
#[derive(Clone, Debug, PartialEq)]
pub struct BtsWindow {
    /// Rows in the window.
    pub all: u64,
    /// Rows with [`BtsRow::above`].
    pub above: u64,
    /// The largest value; `None` if no row has one.
    pub max_value: Option<f64>,
    /// The mean value (exactly summed, rounded once); `None` if no row has one.
    pub mean_value: Option<f64>,
}

/// Every window of every level of [`BTS_LEVELS`], by (level, `station_id`, `alarm_id`,
/// window), straight from the rows. Duplicates by id: the first wins.
pub fn bts_expected(rows: &[BtsRow]) -> BTreeMap<(String, String, String, Window), BtsWindow> {
    let tz = bts_zone();
    let mut seen = HashSet::new();
    let mut groups: BTreeMap<(String, String, String, Window), Vec<&BtsRow>> = BTreeMap::new();
    for r in rows {
        if !seen.insert(r.id) {
            continue;
        }
        let windows = [
            tumbling_window(r.start, Span::minutes(5)),
            tumbling_window(r.start, Span::hours(1)),
            day_window(r.start, &tz),
            iso_week_window(r.start, &tz),
            month_window(r.start, &tz),
        ];
        for (level, w) in BTS_LEVELS.iter().zip(windows) {
            groups
                .entry((
                    (*level).to_owned(),
                    r.station_id.clone(),
                    r.alarm_id.clone(),
                    w,
                ))
                .or_default()
                .push(r);
        }
    }
    groups
        .into_iter()
        .map(|(k, rs)| {
            let values: Vec<f64> = rs.iter().filter_map(|r| r.value).collect();
            let bw = BtsWindow {
                all: rs.len() as u64,
                above: rs.iter().filter(|r| r.above()).count() as u64,
                max_value: values.iter().copied().reduce(f64::max),
                mean_value: (!values.is_empty())
                    .then(|| crate::fsum(&values) / values.len() as f64),
            };
            (k, bw)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expected;
    use crate::rollup::{Level, OracleAgg, RollupOracle, exact};
    use reckon_core::AggKind;
    use std::path::PathBuf;

    fn seed004(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/seed004")
            .join(file)
    }

    fn all_rows() -> Vec<BtsRow> {
        let mut rows = load_bts(&seed004("alarms.csv"));
        rows.extend(load_bts(&seed004("late.csv")));
        rows
    }

    /// `2017-10-23 hh:mm` local (UTC+7, no DST in Vietnam since 1975).
    fn local(hh: i64, mm: i64) -> EventTime {
        // 2017-10-23 00:00 local = 2017-10-22 17:00 UTC = 1508691600 s.
        EventTime::from_secs(1_508_691_600 + hh * 3600 + mm * 60)
    }

    fn get<'a>(
        m: &'a BTreeMap<(String, String, String, Window), BtsWindow>,
        level: &str,
        station: &str,
        alarm: &str,
        start: EventTime,
        end: EventTime,
    ) -> &'a BtsWindow {
        let k = (
            level.to_owned(),
            station.to_owned(),
            alarm.to_owned(),
            Window { start, end },
        );
        m.get(&k).unwrap_or_else(|| panic!("no window {k:?}"))
    }

    fn bw(all: u64, above: u64, max: f64, mean: f64) -> BtsWindow {
        BtsWindow {
            all,
            above,
            max_value: Some(max),
            mean_value: Some(mean),
        }
    }

    #[test]
    fn loads_the_example_in_arrival_order() {
        let main = load_bts(&seed004("alarms.csv"));
        let late = load_bts(&seed004("late.csv"));
        assert_eq!((main.len(), late.len()), (191, 3));
        assert!(main.windows(2).all(|p| p[0].id < p[1].id), "sorted by id");
        let first = &main[0];
        assert_eq!(first.id, 10_167_673);
        assert_eq!(
            (first.station_id.as_str(), first.alarm_id.as_str()),
            ("1161115040", "323")
        );
        assert_eq!(first.start, local(11, 51).plus(Span::secs(30)));
        assert_eq!(first.value, Some(999_999.0));
        assert!(!first.above(), "999999 is no threshold");
        // Every late row is at least 10 minutes older than the newest on-time row.
        let newest = main.iter().map(|r| r.start).max().unwrap();
        assert_eq!(newest, local(12, 59).plus(Span::secs(54)));
        let ids: Vec<u64> = late.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![10_167_672, 10_167_718, 10_167_731]);
        assert!(
            late.iter()
                .all(|r| r.start <= newest.minus(Span::minutes(10)))
        );
    }

    /// Figures computed by hand with Python's `csv` module over `alarms.csv` +
    /// `late.csv`, selecting rows by key and by the `start_time` text (`12:55:00` ≤ time
    /// < `13:00`, hour `11`, …), counting `float(value) > float(threshold) and
    /// threshold != "999999"`, and taking `max`/`sum/len` of the values.
    #[test]
    fn hand_checked_windows() {
        let m = bts_expected(&all_rows());
        let h = Span::hours(1);
        // 5m, 12:55 local: values 31 and 33.5 against threshold 30.
        let w = get(&m, "5m", "1161115002", "310", local(12, 55), local(13, 0));
        assert_eq!(w, &bw(2, 2, 33.5, 32.25));
        // Hour 11 local of a key whose only 11:xx row is the late 10167672.
        let w = get(&m, "hour", "1161115030", "308", local(11, 0), local(12, 0));
        assert_eq!(w, &bw(1, 1, 241.0, 241.0));
        assert_eq!(
            get(
                &m,
                "hour",
                "1161115030",
                "308",
                local(12, 0),
                local(12, 0).plus(h)
            ),
            &bw(15, 15, 241.0, 241.0)
        );
        // 5m 12:00 gains the late 10167731: 4 rows (3 without it).
        let w = get(&m, "5m", "1161114027", "308", local(12, 0), local(12, 5));
        assert_eq!(w, &bw(4, 4, 241.0, 241.0));
        let on_time = bts_expected(&load_bts(&seed004("alarms.csv")));
        let w = get(
            &on_time,
            "5m",
            "1161114027",
            "308",
            local(12, 0),
            local(12, 5),
        );
        assert_eq!(w.all, 3);
        // The late 10167718 alone in 11:55; 199 against 200 is not above.
        let w = get(&m, "5m", "1161114059", "309", local(11, 55), local(12, 0));
        assert_eq!(w, &bw(1, 0, 199.0, 199.0));
        // Day, ISO week (2017-10-23 is a Monday) and month, all local.
        let day = (local(0, 0), local(24, 0));
        let w = get(&m, "day", "1161115022", "319", day.0, day.1);
        assert_eq!(w, &bw(34, 34, 999_991.0, 999_991.0));
        let week_end = local(24 * 7, 0);
        let w = get(&m, "week", "1161114059", "323", day.0, week_end);
        assert_eq!(w, &bw(5, 0, 999_999.0, 999_999.0));
        // October 2017 local: 2017-09-30 17:00 UTC to 2017-10-31 17:00 UTC.
        let oct = (local(-22 * 24, 0), local(9 * 24, 0));
        assert_eq!(oct.0, EventTime::from_secs(1_506_790_800));
        let w = get(&m, "month", "1161114059", "309", oct.0, oct.1);
        assert_eq!(w, &bw(8, 0, 199.0, 199.0));
        // Window counts per level and the totals.
        let count = |level: &str| m.keys().filter(|k| k.0 == level).count();
        assert_eq!(
            [
                count("5m"),
                count("hour"),
                count("day"),
                count("week"),
                count("month")
            ],
            [97, 39, 36, 36, 36]
        );
        let day_rows: u64 = m
            .iter()
            .filter(|(k, _)| k.0 == "day")
            .map(|(_, w)| w.all)
            .sum();
        let day_above: u64 = m
            .iter()
            .filter(|(k, _)| k.0 == "day")
            .map(|(_, w)| w.above)
            .sum();
        assert_eq!((day_rows, day_above), (194, 110));
    }

    /// Two independent computations of the same thing agree: `bts_expected` over rows,
    /// and the rollup oracle over the rows as engine events with the filter as a closure.
    #[test]
    fn bts_expected_agrees_with_the_rollup_oracle() {
        let rows = all_rows();
        let events: Vec<Event> = rows.iter().map(BtsRow::to_event).collect();
        let num = |e: &Event, f: &str| e.field(f).and_then(Value::as_f64);
        let oracle = RollupOracle::new(bts_zone())
            .level("5m", Level::Tumbling(Span::minutes(5)))
            .level("hour", Level::Tumbling(Span::hours(1)))
            .level("day", Level::Day)
            .level("week", Level::IsoWeek)
            .level("month", Level::Month)
            .aggregate(OracleAgg::count("all"))
            .aggregate(OracleAgg::count("above").filter(move |e| {
                match (num(e, "value"), num(e, "threshold")) {
                    (Some(v), Some(t)) => v > t && t != NO_THRESHOLD,
                    _ => false,
                }
            }))
            .aggregate(OracleAgg::new("max_value", AggKind::Max, Some("value")))
            .aggregate(OracleAgg::new("mean_value", AggKind::Mean, Some("value")));
        let r = oracle.run(&events);
        let expected = bts_expected(&rows);
        assert_eq!(r.windows.len(), expected.len());
        for ((level, station, alarm, w), bw) in &expected {
            let key = bts_key(station, alarm);
            let got = &r.windows[&(level.clone(), key, *w)].result;
            let want = |x: Option<f64>| Expected::Exact(x.map(Value::F64));
            assert_eq!(
                (got.count, &got.values),
                (
                    bw.all,
                    &vec![
                        exact(Value::I64(bw.all as i64)),
                        exact(Value::I64(bw.above as i64)),
                        want(bw.max_value),
                        want(bw.mean_value),
                    ]
                ),
                "{level} {station} {alarm} {w}"
            );
        }
        // In UTC+7 every level but the month nests in the one below it; ISO weeks
        // do not nest in months in general, though this one week does.
        assert!(r.misnested().is_empty());
    }
}
