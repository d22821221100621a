//! Processing time for the server: the wall clock, or a scaled clock for the demo.
//!
//! The engine never reads a clock; the server stamps each batch with the time its
//! writer takes it. The demo replays seed 000 faster than real time, so its server runs
//! on a [`ScaledClock`] that advances `speed` times faster from a chosen origin; event
//! times written by the demo's generator and processing times then agree.

use reckon_core::ProcessingTime;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of processing time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current processing time.
    fn now(&self) -> ProcessingTime;
}

/// The system clock (nanoseconds since the Unix epoch).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> ProcessingTime {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        ProcessingTime(nanos)
    }
}

/// A clock that starts at `origin` and runs `speed` times faster than real time.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    origin: ProcessingTime,
    started: Instant,
    speed: f64,
}

impl ScaledClock {
    /// Starts now at `origin`.
    pub fn new(origin: ProcessingTime, speed: f64) -> ScaledClock {
        ScaledClock {
            origin,
            started: Instant::now(),
            speed,
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> ProcessingTime {
        let elapsed = self.started.elapsed().as_nanos() as f64 * self.speed;
        ProcessingTime(self.origin.0.saturating_add(elapsed as i64))
    }
}
