//! Window checksums: count plus an order-independent hash of the window's events.
//!
//! Seed 000 used a bare count as its checksum, so a corrected value with the same count
//! went unnoticed. reckon's checksum adds up (wrapping) the 64-bit digests of the events
//! ([`crate::Event::digest`]), so it is independent of arrival order, can be merged,
//! and changes when any value of any event in the window changes. It is stored in the
//! same atomic write as the result it describes and can be recomputed from the raw log.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Count and order-independent hash of a window's events.
///
/// Law: `add` is commutative and associative, and `merge` of two checksums equals the
/// checksum of the union of their (disjoint) events; `Checksum::default()` is the identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Checksum {
    /// Number of events in the window (duplicates excluded).
    pub count: u64,
    /// Wrapping sum of the events' digests.
    pub hash: u64,
}

impl Checksum {
    /// Adds one event by its digest.
    #[inline]
    pub fn add(&mut self, digest: u64) {
        self.count += 1;
        self.hash = self.hash.wrapping_add(digest);
    }

    /// Takes back one event [`Checksum::add`] added (it moved to another window).
    #[inline]
    pub fn remove(&mut self, digest: u64) {
        self.count = self.count.saturating_sub(1);
        self.hash = self.hash.wrapping_sub(digest);
    }

    /// Combines the checksums of two disjoint sets of events.
    pub fn merge(&mut self, other: &Checksum) {
        self.count += other.count;
        self.hash = self.hash.wrapping_add(other.hash);
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:016x}", self.count, self.hash)
    }
}
impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_and_merge_is_union() {
        let digests = [7u64, u64::MAX, 3, 1 << 63];
        let mut a = Checksum::default();
        digests.iter().for_each(|&d| a.add(d));
        let mut b = Checksum::default();
        digests.iter().rev().for_each(|&d| b.add(d));
        assert_eq!(a, b);
        let (mut left, mut right) = (Checksum::default(), Checksum::default());
        left.add(7);
        left.add(u64::MAX);
        right.add(3);
        right.add(1 << 63);
        left.merge(&right);
        assert_eq!(left, a);
        assert_eq!(a.count, 4);
    }
}
