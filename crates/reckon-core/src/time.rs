//! Event time and processing time.
//!
//! reckon never reads a clock in the engine: event time comes from the data, and
//! processing time is handed in by whoever drives the engine (`Pipeline::advance`).
//! Both are nanoseconds since the Unix epoch in an `i64`, which covers the years
//! 1678..2262. Keeping them as distinct types stops the two from being mixed up,
//! which is the classic bug of event-time systems.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A point in event time: when the thing the event describes happened.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventTime(pub i64);

/// A point in processing time: when reckon saw something happen (wall clock of the driver).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProcessingTime(pub i64);

/// A span of time in nanoseconds, never negative once validated by a spec builder.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Span(pub i64);

impl Span {
    /// No time at all.
    pub const ZERO: Span = Span(0);
    /// Longer than any two event times can be apart: "forever".
    pub const MAX: Span = Span(i64::MAX);

    /// A span of whole seconds.
    pub const fn secs(s: i64) -> Span {
        Span(s.saturating_mul(NANOS_PER_SEC))
    }
    /// A span of whole minutes.
    pub const fn minutes(m: i64) -> Span {
        Span::secs(m.saturating_mul(60))
    }
    /// A span of whole hours.
    pub const fn hours(h: i64) -> Span {
        Span::secs(h.saturating_mul(3600))
    }
    /// A span of whole days (of 24 hours; calendar days are a window kind, not a span).
    pub const fn days(d: i64) -> Span {
        Span::hours(d.saturating_mul(24))
    }
    /// The span in nanoseconds.
    pub const fn nanos(self) -> i64 {
        self.0
    }
}

impl From<std::time::Duration> for Span {
    fn from(d: std::time::Duration) -> Self {
        Span(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl EventTime {
    /// The earliest representable time; also "no event seen yet".
    pub const MIN: EventTime = EventTime(i64::MIN);
    /// The latest representable time.
    pub const MAX: EventTime = EventTime(i64::MAX);

    /// Nanoseconds since the Unix epoch.
    pub const fn nanos(self) -> i64 {
        self.0
    }
    /// Whole seconds since the Unix epoch.
    pub const fn from_secs(s: i64) -> EventTime {
        EventTime(s.saturating_mul(NANOS_PER_SEC))
    }
    /// `self + span`, saturating at the ends of time.
    pub const fn plus(self, s: Span) -> EventTime {
        EventTime(self.0.saturating_add(s.0))
    }
    /// `self - span`, saturating at the ends of time.
    pub const fn minus(self, s: Span) -> EventTime {
        EventTime(self.0.saturating_sub(s.0))
    }
}

impl ProcessingTime {
    /// Before anything happened.
    pub const MIN: ProcessingTime = ProcessingTime(i64::MIN);

    /// Nanoseconds since the Unix epoch.
    pub const fn nanos(self) -> i64 {
        self.0
    }
    /// Whole seconds since the Unix epoch.
    pub const fn from_secs(s: i64) -> ProcessingTime {
        ProcessingTime(s.saturating_mul(NANOS_PER_SEC))
    }
    /// `self + span`, saturating.
    pub const fn plus(self, s: Span) -> ProcessingTime {
        ProcessingTime(self.0.saturating_add(s.0))
    }
    /// The span from `earlier` to `self`, saturating (never negative).
    pub const fn since(self, earlier: ProcessingTime) -> Span {
        let d = self.0.saturating_sub(earlier.0);
        Span(if d < 0 { 0 } else { d })
    }
}

fn fmt_rfc3339(nanos: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if nanos == i64::MIN {
        return f.write_str("-inf");
    }
    if nanos == i64::MAX {
        return f.write_str("+inf");
    }
    match jiff::Timestamp::from_nanosecond(i128::from(nanos)) {
        Ok(ts) => write!(f, "{ts}"),
        Err(_) => write!(f, "{nanos}ns"),
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_rfc3339(self.0, f)
    }
}
impl fmt::Debug for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventTime({self})")
    }
}
impl fmt::Display for ProcessingTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_rfc3339(self.0, f)
    }
}
impl fmt::Debug for ProcessingTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessingTime({self})")
    }
}
/// Written as a user writes it in `reckon.toml`: `24h`, `23h59m59s`, `1500ms`, `7d`,
/// `forever` for [`Span::MAX`]; parsing the text back gives the same span.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Span::MAX {
            return f.write_str("forever");
        }
        if self.0 == 0 {
            return f.write_str("0s");
        }
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let mut n = self.0.unsigned_abs();
        const NS: u64 = 1;
        const US: u64 = 1_000;
        const MS: u64 = 1_000_000;
        const S: u64 = 1_000_000_000;
        const M: u64 = 60 * S;
        const H: u64 = 60 * M;
        const D: u64 = 24 * H;
        // Sub-second parts are written in the single finest unit that keeps them exact
        // (`1500ms`, not `1s500ms`), as people write them.
        let sub = n % S;
        let fine = if sub == 0 {
            S
        } else if sub.is_multiple_of(MS) {
            MS
        } else if sub.is_multiple_of(US) {
            US
        } else {
            NS
        };
        if fine != S && n < 60 * S {
            let unit = match fine {
                MS => "ms",
                US => "us",
                _ => "ns",
            };
            return write!(f, "{}{unit}", n / fine);
        }
        // Whole days from two on are `2d`, `7d`; anything else counts hours (`24h`,
        // `36h`), as people write a day of lateness.
        let units: &[(u64, &str)] = if n.is_multiple_of(D) && n >= 2 * D {
            &[(D, "d")]
        } else {
            &[(H, "h"), (M, "m"), (S, "s")]
        };
        for &(size, unit) in units {
            if n >= size {
                write!(f, "{}{unit}", n / size)?;
                n %= size;
            }
        }
        if n > 0 {
            let (size, unit) = match fine {
                MS => (MS, "ms"),
                US => (US, "us"),
                _ => (NS, "ns"),
            };
            write!(f, "{}{unit}", n / size)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::SignedDuration::from_nanos(self.0) {
            d if self.0 == i64::MAX => write!(f, "Span(forever, {d:?})"),
            d => write!(f, "Span({d:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_display_as_users_write_them() {
        assert_eq!(Span(86_399 * NANOS_PER_SEC).to_string(), "23h59m59s");
        assert_eq!(Span::hours(24).to_string(), "24h");
        assert_eq!(Span::days(7).to_string(), "7d");
        assert_eq!(Span::hours(36).to_string(), "36h");
        assert_eq!(Span::hours(1).to_string(), "1h");
        assert_eq!(Span(1_500_000_000).to_string(), "1500ms");
        assert_eq!(Span::ZERO.to_string(), "0s");
        assert_eq!(Span::MAX.to_string(), "forever");
        assert_eq!(Span(90 * NANOS_PER_SEC + 5_000_000).to_string(), "1m30s5ms");
        assert_eq!(Span(-Span::secs(5).0).to_string(), "-5s");
    }
}
