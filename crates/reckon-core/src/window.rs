//! Window assigners: which windows an event time belongs to.
//!
//! Every window is a half-open interval `[start, end)` of event time, and its bounds
//! are a pure function of the spec and the event time, so the same window always has
//! the same identity `(pipeline, key, start)` — across restarts, recomputes and nodes.
//! An event exactly at `end` belongs to the next window.

mod calendar;

use crate::error::{Error, Result};
use crate::time::{EventTime, Span};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One window: `[start, end)` in event time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Window {
    /// First instant inside the window.
    pub start: EventTime,
    /// First instant after the window.
    pub end: EventTime,
}

impl Window {
    /// Whether `t` lies in `[start, end)`.
    pub fn contains(&self, t: EventTime) -> bool {
        self.start <= t && t < self.end
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// A calendar unit for calendar windows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarUnit {
    /// A local calendar day, midnight to midnight (23, 24 or 25 hours around DST).
    Day,
    /// An ISO 8601 week, Monday 00:00 to the next Monday 00:00, local time.
    Week,
    /// A calendar month, the 1st 00:00 to the next 1st 00:00, local time.
    Month,
}

/// An IANA time zone, kept with its name (which is what is serialised).
#[derive(Clone)]
pub struct Tz {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl Tz {
    /// Looks a zone up in the IANA database compiled into reckon (so every machine
    /// agrees on the rules). `UTC` is always there.
    pub fn get(name: &str) -> Result<Tz> {
        let zone = jiff::tz::TimeZone::get(name).map_err(|source| Error::UnknownTimeZone {
            name: name.to_string(),
            source,
        })?;
        Ok(Tz {
            name: name.to_string(),
            zone,
        })
    }
    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The jiff zone.
    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }
}

impl PartialEq for Tz {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Tz {}
impl fmt::Debug for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tz({})", self.name)
    }
}
impl Serialize for Tz {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}
impl<'de> Deserialize<'de> for Tz {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Tz::get(&name).map_err(serde::de::Error::custom)
    }
}

/// How events are grouped into windows.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WindowSpec {
    /// Back-to-back windows of `size`, aligned so that `offset` (mod `size`) is a start.
    Tumbling {
        /// Length of each window.
        size: Span,
        /// Shift of the window grid from the Unix epoch.
        offset: Span,
    },
    /// Windows of `size` starting every `slide`; an event is in `ceil(size / slide)` of
    /// them (fewer when `slide` does not divide `size`).
    Hopping {
        /// Length of each window.
        size: Span,
        /// Distance between consecutive starts.
        slide: Span,
        /// Shift of the start grid from the Unix epoch.
        offset: Span,
    },
    /// Local calendar days, ISO weeks or months in a time zone, DST-correct.
    Calendar {
        /// Day, week or month.
        unit: CalendarUnit,
        /// The IANA zone whose local calendar defines the bounds.
        tz: Tz,
    },
}

impl WindowSpec {
    /// Tumbling windows of `size` aligned to the epoch.
    pub fn tumbling(size: Span) -> WindowSpec {
        WindowSpec::Tumbling {
            size,
            offset: Span::ZERO,
        }
    }

    /// Hopping windows of `size` every `slide`, aligned to the epoch.
    pub fn hopping(size: Span, slide: Span) -> WindowSpec {
        WindowSpec::Hopping {
            size,
            slide,
            offset: Span::ZERO,
        }
    }

    /// Calendar windows of `unit` in the named IANA zone.
    pub fn calendar(unit: CalendarUnit, tz: &str) -> Result<WindowSpec> {
        Ok(WindowSpec::Calendar {
            unit,
            tz: Tz::get(tz)?,
        })
    }

    /// Checks the spec: sizes and slides positive, offsets non-negative.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        match *self {
            WindowSpec::Tumbling { size, offset } => {
                if size.0 <= 0 {
                    return bad(format!("window size must be positive, got {size}"));
                }
                if offset.0 < 0 {
                    return bad(format!("window offset must not be negative, got {offset}"));
                }
            }
            WindowSpec::Hopping {
                size,
                slide,
                offset,
            } => {
                if size.0 <= 0 || slide.0 <= 0 {
                    return bad(format!(
                        "window size and slide must be positive, got {size} and {slide}"
                    ));
                }
                if slide > size {
                    return bad(format!(
                        "a slide ({slide}) longer than the size ({size}) leaves gaps no window covers"
                    ));
                }
                if offset.0 < 0 {
                    return bad(format!("window offset must not be negative, got {offset}"));
                }
            }
            WindowSpec::Calendar { .. } => {}
        }
        Ok(())
    }

    /// Whether an event can fall into more than one window.
    pub fn is_overlapping(&self) -> bool {
        matches!(self, WindowSpec::Hopping { size, slide, .. } if slide < size)
    }

    /// Appends the windows containing `t` to `out`, in increasing start order.
    /// Fails only at the ends of representable time.
    pub fn assign(&self, t: EventTime, out: &mut Vec<Window>) -> Result<()> {
        match *self {
            WindowSpec::Tumbling { size, offset } => {
                let start = grid_floor(t, size, offset)?;
                out.push(Window {
                    start,
                    end: checked_end(start, size, t)?,
                });
            }
            WindowSpec::Hopping {
                size,
                slide,
                offset,
            } => {
                let last = grid_floor(t, slide, offset)?;
                // Starts at last, last - slide, ... while the window still covers t.
                let mut first = last;
                loop {
                    // The window before `first` still covers t if prev + size > t.
                    let prev = i128::from(first.0) - i128::from(slide.0);
                    if prev + i128::from(size.0) <= i128::from(t.0) {
                        break;
                    }
                    first = i64::try_from(prev).map(EventTime).map_err(|_| {
                        Error::TimeOutOfRange {
                            nanos: t.0,
                            reason: "one of its windows would start before the earliest representable time".into(),
                        }
                    })?;
                }
                let mut s = first;
                while s <= last {
                    out.push(Window {
                        start: s,
                        end: checked_end(s, size, t)?,
                    });
                    s = EventTime(s.0 + slide.0);
                }
            }
            WindowSpec::Calendar { unit, ref tz } => {
                out.push(calendar::containing(unit, tz, t)?);
            }
        }
        Ok(())
    }
}

/// The greatest `s <= t` with `s ≡ offset (mod step)`.
#[inline]
fn grid_floor(t: EventTime, step: Span, offset: Span) -> Result<EventTime> {
    // The common case in 64 bits; 128 bits only near the ends of time.
    if let Some(shifted) = t.0.checked_sub(offset.0)
        && let Some(start) = t.0.checked_sub(shifted.rem_euclid(step.0))
    {
        return Ok(EventTime(start));
    }
    let rem = (i128::from(t.0) - i128::from(offset.0)).rem_euclid(i128::from(step.0));
    let start = i128::from(t.0) - rem;
    i64::try_from(start)
        .map(EventTime)
        .map_err(|_| Error::TimeOutOfRange {
            nanos: t.0,
            reason: "its window would start before the earliest representable time".into(),
        })
}

fn checked_end(start: EventTime, size: Span, t: EventTime) -> Result<EventTime> {
    start
        .0
        .checked_add(size.0)
        .map(EventTime)
        .ok_or_else(|| Error::TimeOutOfRange {
            nanos: t.0,
            reason: "its window would end after the latest representable time".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(spec: &WindowSpec, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        spec.assign(EventTime(t), &mut out).unwrap();
        out.iter().map(|w| (w.start.0, w.end.0)).collect()
    }

    #[test]
    fn an_event_at_end_belongs_to_the_next_window() {
        let spec = WindowSpec::tumbling(Span(10));
        assert_eq!(assign(&spec, 9), vec![(0, 10)]);
        assert_eq!(assign(&spec, 10), vec![(10, 20)]);
        assert_eq!(assign(&spec, 0), vec![(0, 10)]);
    }

    #[test]
    fn tumbling_handles_negative_times_and_offsets() {
        let spec = WindowSpec::tumbling(Span(10));
        assert_eq!(assign(&spec, -1), vec![(-10, 0)]);
        assert_eq!(assign(&spec, -10), vec![(-10, 0)]);
        let shifted = WindowSpec::Tumbling {
            size: Span(10),
            offset: Span(3),
        };
        assert_eq!(assign(&shifted, 2), vec![(-7, 3)]);
        assert_eq!(assign(&shifted, 3), vec![(3, 13)]);
    }

    #[test]
    fn hopping_windows_overlap_in_start_order() {
        let spec = WindowSpec::hopping(Span(30), Span(10));
        assert_eq!(assign(&spec, 25), vec![(0, 30), (10, 40), (20, 50)]);
        // At a slide boundary the window starting there is included, the one ending there is not.
        assert_eq!(assign(&spec, 30), vec![(10, 40), (20, 50), (30, 60)]);
        // A slide that does not divide the size: 25/10 -> 2 or 3 windows.
        let uneven = WindowSpec::hopping(Span(25), Span(10));
        assert_eq!(assign(&uneven, 24), vec![(0, 25), (10, 35), (20, 45)]);
        assert_eq!(assign(&uneven, 26), vec![(10, 35), (20, 45)]);
    }

    #[test]
    fn hopping_equal_to_tumbling_when_slide_is_size() {
        let h = WindowSpec::hopping(Span(10), Span(10));
        let t = WindowSpec::tumbling(Span(10));
        for x in -25..25 {
            assert_eq!(assign(&h, x), assign(&t, x), "t={x}");
        }
        assert!(!h.is_overlapping());
    }

    #[test]
    fn invalid_specs_name_the_setting() {
        let e = WindowSpec::tumbling(Span(0)).validate().unwrap_err();
        assert!(
            e.to_string().contains("window size must be positive"),
            "{e}"
        );
        let e = WindowSpec::hopping(Span(10), Span(20))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("leaves gaps"), "{e}");
        let e = WindowSpec::calendar(CalendarUnit::Day, "Mars/Olympus").unwrap_err();
        assert!(
            e.to_string().contains("unknown time zone `Mars/Olympus`"),
            "{e}"
        );
    }

    #[test]
    fn extreme_times_are_errors_not_panics() {
        let spec = WindowSpec::tumbling(Span(10));
        let mut out = Vec::new();
        assert!(spec.assign(EventTime(i64::MAX), &mut out).is_err());
        assert!(spec.assign(EventTime(i64::MIN), &mut out).is_err());
    }

    /// Regression: near the earliest time a hopping assigner silently returned only
    /// the windows it could represent, putting the event into some of its windows.
    #[test]
    fn hopping_near_the_earliest_time_is_all_windows_or_an_error() {
        let spec = WindowSpec::hopping(Span(30), Span(10));
        let mut out = Vec::new();
        let r = spec.assign(EventTime(i64::MIN + 8), &mut out);
        assert!(r.is_err(), "got {out:?}");
        out.clear();
        // Far enough from the edge: all three windows.
        spec.assign(EventTime(i64::MIN + 100), &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }
}
