//! Calendar windows: local days, ISO weeks and months in an IANA time zone.
//!
//! reckon's calendar rollups ("revenue per day in Europe/Berlin", "active users per
//! ISO week in America/New_York") group events by the local calendar of a zone, not by
//! fixed 24-hour buckets. A local day is therefore 23, 24 or 25 hours long (23.5 or
//! 24.5 in zones with half-hour DST), and months and weeks inherit that irregularity.
//! This module turns an instant into the half-open window `[start, end)` of the
//! calendar period that contains it.
//!
//! A period starts at the first instant whose local date is on or after its first
//! day. That is usually local midnight, but not always:
//!
//! - Where DST starts at midnight (America/Havana, America/Santiago, Asia/Beirut),
//!   midnight does not exist that day and the day starts at 01:00.
//! - Where a gap straddles midnight (America/Toronto on 1919-03-31 jumped from 23:30
//!   to 00:30), the day starts at the transition, which is not what resolving
//!   midnight with jiff's "compatible" rule gives (that would be 01:00), so the
//!   transition is looked up explicitly.
//! - Where midnight happens twice (a fold), the first one starts the day.
//! - Where a whole day is skipped (Pacific/Apia, 2011-12-30), that day's window is
//!   empty and is never returned.
//!
//! Defining the start this way makes it non-decreasing in the date, so consecutive
//! periods tile time with no gap and no overlap, and each window is a pure function
//! of `(unit, zone, t)`.

use super::{CalendarUnit, Tz, Window};
use crate::error::{Error, Result};
use crate::time::EventTime;
use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};

/// How many periods past the one named by `t`'s local date we may have to step.
///
/// A fold that crosses midnight backwards (America/Goose_Bay until 2010 went from
/// 00:01 back to 23:01 of the previous day) gives instants whose local date is the
/// previous day although they come after the start of the next one; those need one
/// step forward. Anything beyond a couple of steps means the zone data is broken.
const MAX_STEPS: usize = 4;

/// `EventTime(i64::MIN)` and `EventTime(i64::MAX)` as RFC 3339, for error messages.
const EARLIEST: &str = "1677-09-21T00:12:43.145224192Z";
const LATEST: &str = "2262-04-11T23:47:16.854775807Z";

/// The calendar window of `unit` in `tz` that contains `t`.
pub(super) fn containing(unit: CalendarUnit, tz: &Tz, t: EventTime) -> Result<Window> {
    let zone = tz.zone();
    let unit_name = match unit {
        CalendarUnit::Day => "day",
        CalendarUnit::Week => "week",
        CalendarUnit::Month => "month",
    };
    // jiff fails only far outside reckon's 1677..2262 range, but report it all the same.
    let jiff_err = |e: jiff::Error| Error::TimeOutOfRange {
        nanos: t.0,
        reason: format!("cannot find its {unit_name} in {}: {e}", tz.name()),
    };

    // Every i64 of nanoseconds is a valid jiff timestamp, so this only guards against
    // a future narrowing of jiff's range.
    let ts = Timestamp::from_nanosecond(i128::from(t.0)).map_err(jiff_err)?;
    let local_date = zone.to_datetime(ts).date();

    let mut first = period_first_day(unit, local_date).map_err(jiff_err)?;
    let mut start = period_start(zone, first).map_err(jiff_err)?;
    let mut next = next_period_first_day(unit, first).map_err(jiff_err)?;
    let mut end = period_start(zone, next).map_err(jiff_err)?;

    // The local date of `t` names its period except inside a fold that crosses
    // midnight backwards, where `t` already lies past the next period's start; step
    // forward then, so the window is still the latest one starting at or before `t`.
    let mut steps = 0;
    while ts >= end {
        steps += 1;
        if steps > MAX_STEPS {
            return Err(Error::Internal(format!(
                "no {unit_name} in {} contains {t} after {MAX_STEPS} steps",
                tz.name()
            )));
        }
        first = next;
        start = end;
        next = next_period_first_day(unit, first).map_err(jiff_err)?;
        end = period_start(zone, next).map_err(jiff_err)?;
    }
    if ts < start {
        // A start is the first instant whose local date is on or after the period's
        // first day, and `t`'s own local date is such a date, so this cannot happen.
        return Err(Error::Internal(format!(
            "the {unit_name} in {} that should contain {t} starts after it",
            tz.name()
        )));
    }

    let start = to_event_time(start).ok_or_else(|| Error::TimeOutOfRange {
        nanos: t.0,
        reason: format!(
            "its {unit_name} in {} starts at {start}, before {EARLIEST}, the earliest instant reckon can represent",
            tz.name(),
        ),
    })?;
    let end = to_event_time(end).ok_or_else(|| Error::TimeOutOfRange {
        nanos: t.0,
        reason: format!(
            "its {unit_name} in {} ends at {end}, after {LATEST}, the latest instant reckon can represent",
            tz.name(),
        ),
    })?;
    Ok(Window { start, end })
}

/// The first local day of the period of `unit` that `date` falls in.
fn period_first_day(unit: CalendarUnit, date: Date) -> Result<Date, jiff::Error> {
    match unit {
        CalendarUnit::Day => Ok(date),
        CalendarUnit::Week => {
            // ISO 8601 weeks start on Monday; the offset is 0 for Monday .. 6 for Sunday.
            let back = i64::from(date.weekday().to_monday_zero_offset());
            date.checked_sub(back.days())
        }
        CalendarUnit::Month => Ok(date.first_of_month()),
    }
}

/// The first local day of the period after the one starting on `first`.
fn next_period_first_day(unit: CalendarUnit, first: Date) -> Result<Date, jiff::Error> {
    match unit {
        CalendarUnit::Day => first.tomorrow(),
        CalendarUnit::Week => first.checked_add(7.days()),
        CalendarUnit::Month => first.checked_add(1.month()),
    }
}

/// The first instant whose local date in `zone` is `date` or later.
///
/// This is local midnight when midnight exists, the earlier midnight when it happens
/// twice, and the moment of the transition when midnight falls in a gap.
fn period_start(zone: &TimeZone, date: Date) -> Result<Timestamp, jiff::Error> {
    let midnight = date.to_datetime(Time::midnight());
    match zone.to_ambiguous_timestamp(midnight).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(midnight),
        // The offset in force before the transition is the one under which local
        // time first reaches midnight.
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(midnight),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the later offset, midnight is an instant shortly before the
            // transition (local time there is still the previous day); read with the
            // earlier offset it is shortly after it. The transition between the two
            // is the first instant of the day. For gaps that begin exactly at
            // midnight this equals the "after" reading, but for gaps that straddle
            // midnight it is earlier, which is why it is looked up.
            let just_before = after.to_timestamp(midnight)?;
            let just_after = before.to_timestamp(midnight)?;
            let transition = zone
                .following(just_before)
                .next()
                .map(|tr| tr.timestamp())
                .filter(|&tr| tr <= just_after);
            // Without a transition in that interval the zone data contradicts itself;
            // the "after" reading is then the deterministic choice (it is what jiff's
            // own `start_of_day` returns).
            Ok(transition.unwrap_or(just_after))
        }
    }
}

fn to_event_time(ts: Timestamp) -> Option<EventTime> {
    i64::try_from(ts.as_nanosecond()).ok().map(EventTime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NANOS_PER_SEC;

    const HOUR: i64 = 3600 * NANOS_PER_SEC;
    const DAY: i64 = 24 * HOUR;

    fn tz(name: &str) -> Tz {
        Tz::get(name).unwrap()
    }

    /// Nanoseconds of an RFC 3339 instant, e.g. `2024-03-10T05:00:00Z`.
    fn ns(s: &str) -> i64 {
        let ts: Timestamp = s.parse().unwrap();
        i64::try_from(ts.as_nanosecond()).unwrap()
    }

    /// The window as a pair of RFC 3339 instants in UTC, for readable assertions.
    fn window(unit: CalendarUnit, zone: &str, t: &str) -> (String, String) {
        let w = containing(unit, &tz(zone), EventTime(ns(t))).unwrap();
        (w.start.to_string(), w.end.to_string())
    }

    fn len(unit: CalendarUnit, zone: &str, t: &str) -> i64 {
        let w = containing(unit, &tz(zone), EventTime(ns(t))).unwrap();
        w.end.0 - w.start.0
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn utc_day_week_and_month() {
        use CalendarUnit::*;
        let day = pair("2024-05-15T00:00:00Z", "2024-05-16T00:00:00Z");
        assert_eq!(window(Day, "UTC", "2024-05-15T13:45:00Z"), day);
        assert_eq!(window(Day, "UTC", "2024-05-15T00:00:00Z"), day);
        assert_eq!(window(Day, "UTC", "2024-05-15T23:59:59.999999999Z"), day);
        // Exactly at the end belongs to the next day.
        assert_eq!(
            window(Day, "UTC", "2024-05-16T00:00:00Z"),
            pair("2024-05-16T00:00:00Z", "2024-05-17T00:00:00Z")
        );

        // 2024-05-15 is a Wednesday.
        let week = pair("2024-05-13T00:00:00Z", "2024-05-20T00:00:00Z");
        assert_eq!(window(Week, "UTC", "2024-05-15T13:45:00Z"), week);
        assert_eq!(window(Week, "UTC", "2024-05-13T00:00:00Z"), week);
        assert_eq!(window(Week, "UTC", "2024-05-19T23:59:59.999999999Z"), week);
        assert_eq!(
            window(Week, "UTC", "2024-05-20T00:00:00Z"),
            pair("2024-05-20T00:00:00Z", "2024-05-27T00:00:00Z")
        );

        // February of a leap year.
        let feb = pair("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z");
        assert_eq!(window(Month, "UTC", "2024-02-29T12:00:00Z"), feb);
        assert_eq!(window(Month, "UTC", "2024-02-29T23:59:59.999999999Z"), feb);
        assert_eq!(
            window(Month, "UTC", "2024-03-01T00:00:00Z"),
            pair("2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z")
        );
        assert_eq!(len(Month, "UTC", "2023-02-10T00:00:00Z"), 28 * DAY);
        assert_eq!(
            window(Month, "UTC", "2024-12-31T23:59:59Z"),
            pair("2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z")
        );
    }

    #[test]
    fn instants_before_the_epoch() {
        use CalendarUnit::*;
        assert_eq!(
            window(Day, "UTC", "1969-12-31T23:59:59.999999999Z"),
            pair("1969-12-31T00:00:00Z", "1970-01-01T00:00:00Z")
        );
        // 1970-01-01 was a Thursday.
        assert_eq!(
            window(Week, "UTC", "1970-01-01T00:00:00Z"),
            pair("1969-12-29T00:00:00Z", "1970-01-05T00:00:00Z")
        );
    }

    #[test]
    fn new_york_dst_days_are_23_and_25_hours() {
        use CalendarUnit::Day;
        // Spring forward on 2024-03-10: starts at EST (-05), ends at EDT (-04).
        assert_eq!(
            window(Day, "America/New_York", "2024-03-10T12:00:00Z"),
            pair("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z")
        );
        assert_eq!(
            len(Day, "America/New_York", "2024-03-10T12:00:00Z"),
            23 * HOUR
        );
        // Fall back on 2024-11-03: starts at EDT, ends at EST.
        assert_eq!(
            window(Day, "America/New_York", "2024-11-03T12:00:00Z"),
            pair("2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z")
        );
        assert_eq!(
            len(Day, "America/New_York", "2024-11-03T12:00:00Z"),
            25 * HOUR
        );
        // Both 01:30 local times of the repeated hour are in the same day.
        let first = window(Day, "America/New_York", "2024-11-03T05:30:00Z");
        let second = window(Day, "America/New_York", "2024-11-03T06:30:00Z");
        assert_eq!(first, second);
        // Local midnight is the boundary: 04:59:59 UTC on 2024-03-10 is still 9 March.
        assert_eq!(
            window(Day, "America/New_York", "2024-03-10T04:59:59.999999999Z"),
            pair("2024-03-09T05:00:00Z", "2024-03-10T05:00:00Z")
        );
    }

    #[test]
    fn berlin_march_loses_an_hour() {
        use CalendarUnit::Month;
        assert_eq!(
            window(Month, "Europe/Berlin", "2024-03-31T12:00:00Z"),
            pair("2024-02-29T23:00:00Z", "2024-03-31T22:00:00Z")
        );
        assert_eq!(
            len(Month, "Europe/Berlin", "2024-03-15T00:00:00Z"),
            31 * DAY - HOUR
        );
        // October gains it back.
        assert_eq!(
            len(Month, "Europe/Berlin", "2024-10-15T00:00:00Z"),
            31 * DAY + HOUR
        );
    }

    #[test]
    fn day_starts_at_one_when_midnight_is_skipped() {
        use CalendarUnit::*;
        // Cuba springs forward at 00:00 -> 01:00 on 2024-03-10 (CST -05 -> CDT -04), so
        // the day starts at 01:00 local = 05:00Z, which is also when 9 March ends.
        assert_eq!(
            window(Day, "America/Havana", "2024-03-10T12:00:00Z"),
            pair("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z")
        );
        assert_eq!(
            window(Day, "America/Havana", "2024-03-10T04:59:59Z"),
            pair("2024-03-09T05:00:00Z", "2024-03-10T05:00:00Z")
        );
        let start = containing(
            Day,
            &tz("America/Havana"),
            EventTime(ns("2024-03-10T12:00:00Z")),
        )
        .unwrap()
        .start;
        let local = Timestamp::from_nanosecond(i128::from(start.0))
            .unwrap()
            .to_zoned(TimeZone::get("America/Havana").unwrap());
        assert_eq!(local.time(), Time::constant(1, 0, 0, 0));
        assert_eq!(local.date(), jiff::civil::date(2024, 3, 10));

        // Chile springs forward at 24:00 on Saturday 2024-09-07 (-04 -> -03), so
        // Sunday 8 September starts at 01:00 local = 04:00Z.
        assert_eq!(
            window(Day, "America/Santiago", "2024-09-08T12:00:00Z"),
            pair("2024-09-08T04:00:00Z", "2024-09-09T03:00:00Z")
        );
        // Lebanon skipped midnight on Sunday 2024-03-31 (+02 -> +03 at 22:00Z): that
        // day starts at the switch, and March, which contains it, is an hour short.
        assert_eq!(
            window(Month, "Asia/Beirut", "2024-03-31T12:00:00Z"),
            pair("2024-02-29T22:00:00Z", "2024-03-31T21:00:00Z")
        );
        assert_eq!(
            window(Day, "Asia/Beirut", "2024-03-31T12:00:00Z"),
            pair("2024-03-30T22:00:00Z", "2024-03-31T21:00:00Z")
        );
    }

    #[test]
    fn gap_straddling_midnight_starts_the_day_at_the_transition() {
        use CalendarUnit::Day;
        // Toronto jumped from 1919-03-30 23:30 EST to 1919-03-31 00:30 EDT at 04:30Z.
        // 00:30 local is the first instant of 31 March; jiff's compatible reading of
        // midnight would say 01:00 (05:00Z) and leave 00:30..01:00 in no window.
        assert_eq!(
            window(Day, "America/Toronto", "1919-03-31T04:45:00Z"),
            pair("1919-03-31T04:30:00Z", "1919-04-01T04:00:00Z")
        );
        assert_eq!(
            window(Day, "America/Toronto", "1919-03-31T04:29:59Z"),
            pair("1919-03-30T05:00:00Z", "1919-03-31T04:30:00Z")
        );
    }

    #[test]
    fn fold_crossing_midnight_keeps_windows_ordered() {
        use CalendarUnit::Day;
        // Goose Bay fell back from 2010-11-07 00:01 ADT to 2010-11-06 23:01 AST at
        // 03:01Z. Local midnight of 7 November first happened at 03:00Z; the minute
        // after it, then an hour labelled 6 November again. Those instants come after
        // the start of 7 November, so they belong to 7 November's window.
        let seventh = pair("2010-11-07T03:00:00Z", "2010-11-08T04:00:00Z");
        assert_eq!(
            window(Day, "America/Goose_Bay", "2010-11-07T03:00:30Z"),
            seventh
        );
        assert_eq!(
            window(Day, "America/Goose_Bay", "2010-11-07T03:30:00Z"),
            seventh
        );
        assert_eq!(
            window(Day, "America/Goose_Bay", "2010-11-07T04:00:00Z"),
            seventh
        );
        assert_eq!(
            window(Day, "America/Goose_Bay", "2010-11-07T02:59:59Z"),
            pair("2010-11-06T03:00:00Z", "2010-11-07T03:00:00Z")
        );
    }

    #[test]
    fn skipped_day_leaves_no_empty_window() {
        use CalendarUnit::*;
        // Samoa skipped 2011-12-30 entirely: 29 December (-10) ended at 10:00Z and
        // 31 December (+14) began at the same instant.
        assert_eq!(
            window(Day, "Pacific/Apia", "2011-12-30T09:59:59Z"),
            pair("2011-12-29T10:00:00Z", "2011-12-30T10:00:00Z")
        );
        assert_eq!(
            window(Day, "Pacific/Apia", "2011-12-30T10:00:00Z"),
            pair("2011-12-30T10:00:00Z", "2011-12-31T10:00:00Z")
        );
        assert_eq!(len(Month, "Pacific/Apia", "2011-12-15T00:00:00Z"), 30 * DAY);
        assert_eq!(len(Week, "Pacific/Apia", "2011-12-28T00:00:00Z"), 6 * DAY);
    }

    #[test]
    fn lord_howe_has_half_hour_dst() {
        use CalendarUnit::Day;
        // Lord Howe Island moves from +10:30 to +11 at 02:00 on 2024-10-06.
        assert_eq!(
            window(Day, "Australia/Lord_Howe", "2024-10-06T06:00:00Z"),
            pair("2024-10-05T13:30:00Z", "2024-10-06T13:00:00Z")
        );
        assert_eq!(
            len(Day, "Australia/Lord_Howe", "2024-10-06T06:00:00Z"),
            23 * HOUR + HOUR / 2
        );
        // And back from +11 to +10:30 at 02:00 on 2024-04-07.
        assert_eq!(
            len(Day, "Australia/Lord_Howe", "2024-04-07T06:00:00Z"),
            24 * HOUR + HOUR / 2
        );
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        use CalendarUnit::Week;
        // Sunday 2024-03-17 belongs to the week of Monday 2024-03-11.
        assert_eq!(
            window(Week, "UTC", "2024-03-17T23:00:00Z"),
            pair("2024-03-11T00:00:00Z", "2024-03-18T00:00:00Z")
        );
        // A week across the new year: Monday 2024-12-30 .. Monday 2025-01-06.
        let new_year = pair("2024-12-30T00:00:00Z", "2025-01-06T00:00:00Z");
        assert_eq!(window(Week, "UTC", "2024-12-30T00:00:00Z"), new_year);
        assert_eq!(window(Week, "UTC", "2025-01-01T08:00:00Z"), new_year);
        assert_eq!(
            window(Week, "UTC", "2025-01-05T23:59:59.999999999Z"),
            new_year
        );
        // Local Monday, not UTC Monday: Sunday 20:00 in New York is Monday 01:00 UTC.
        assert_eq!(
            window(Week, "America/New_York", "2024-03-18T01:00:00Z"),
            pair("2024-03-11T04:00:00Z", "2024-03-18T04:00:00Z")
        );
        // The week with the spring-forward Sunday is an hour short.
        assert_eq!(
            len(Week, "America/New_York", "2024-03-10T12:00:00Z"),
            7 * DAY - HOUR
        );
    }

    #[test]
    fn windows_tile_a_dst_year_in_new_york() {
        let ny = tz("America/New_York");
        let from = ns("2023-12-25T00:00:00Z");
        let to = ns("2025-01-10T00:00:00Z");
        // A step that is not a divisor of an hour, so instants land all over the day.
        let step = 37 * 60 * NANOS_PER_SEC + 123_456_789;
        for unit in [CalendarUnit::Day, CalendarUnit::Week, CalendarUnit::Month] {
            let mut t = from;
            let mut prev: Option<Window> = None;
            while t < to {
                let w = containing(unit, &ny, EventTime(t)).unwrap();
                assert!(
                    w.start.0 <= t && t < w.end.0,
                    "{unit:?} {w} does not contain {t}"
                );
                let next = containing(unit, &ny, w.end).unwrap();
                assert_eq!(next.start, w.end, "{unit:?} {w} is not followed by {next}");
                assert!(next.end > next.start);
                if let Some(p) = prev
                    && p != w
                {
                    assert_eq!(p.end, w.start, "{unit:?} {p} then {w}");
                }
                // One nanosecond before the start is in the previous window.
                let before = containing(unit, &ny, EventTime(w.start.0 - 1)).unwrap();
                assert_eq!(before.end, w.start);
                prev = Some(w);
                t += step;
            }
        }
        // Every day of 2024 in New York: 363 of 24 h, one of 23 h, one of 25 h.
        let mut lengths = std::collections::BTreeMap::new();
        let mut t = EventTime(ns("2024-01-01T05:00:00Z"));
        while t.0 < ns("2025-01-01T05:00:00Z") {
            let w = containing(CalendarUnit::Day, &ny, t).unwrap();
            *lengths.entry((w.end.0 - w.start.0) / HOUR).or_insert(0) += 1;
            t = w.end;
        }
        assert_eq!(
            lengths.into_iter().collect::<Vec<_>>(),
            vec![(23, 1), (24, 364), (25, 1)]
        );
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let utc = tz("UTC");
        for unit in [CalendarUnit::Day, CalendarUnit::Week, CalendarUnit::Month] {
            for t in [i64::MAX, i64::MIN] {
                let e = containing(unit, &utc, EventTime(t)).unwrap_err();
                match e {
                    Error::TimeOutOfRange { nanos, ref reason } => {
                        assert_eq!(nanos, t);
                        assert!(reason.contains("reckon can represent"), "{reason}");
                    }
                    other => panic!("expected TimeOutOfRange, got {other:?}"),
                }
            }
        }
        let e = containing(CalendarUnit::Month, &tz("Asia/Tokyo"), EventTime::MAX).unwrap_err();
        assert!(
            e.to_string()
                .contains("its month in Asia/Tokyo ends at 2262-04-30T15:00:00Z, after 2262"),
            "{e}"
        );
        let e = containing(CalendarUnit::Day, &utc, EventTime::MIN).unwrap_err();
        assert!(
            e.to_string()
                .contains("its day in UTC starts at 1677-09-21T00:00:00Z, before 1677"),
            "{e}"
        );
        // The bounds quoted in the messages are the real ones.
        let earliest = Timestamp::from_nanosecond(i128::from(i64::MIN)).unwrap();
        let latest = Timestamp::from_nanosecond(i128::from(i64::MAX)).unwrap();
        assert_eq!(earliest.to_string(), EARLIEST);
        assert_eq!(latest.to_string(), LATEST);
        // Close to the ends but with windows inside the range, it works.
        let w = containing(
            CalendarUnit::Day,
            &utc,
            EventTime(ns("2262-04-10T12:00:00Z")),
        )
        .unwrap();
        assert_eq!(w.end.0, ns("2262-04-11T00:00:00Z"));
        let w = containing(
            CalendarUnit::Month,
            &utc,
            EventTime(ns("1677-10-15T00:00:00Z")),
        )
        .unwrap();
        assert_eq!(w.start.0, ns("1677-10-01T00:00:00Z"));
    }
}
