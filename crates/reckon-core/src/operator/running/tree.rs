//! A sparse segment tree of exact sums over bucket positions: O(log n) to add to one
//! bucket and O(log n) for the sum of any range of buckets, with memory for the buckets
//! that hold something only (nodes are made along the paths that are used).

use crate::aggregate::SumState;

/// No child yet.
const NONE: u32 = 0;

#[derive(Clone, Debug, Default)]
struct Node {
    sum: SumState,
    /// Children (left, right) by index into `nodes`; `NONE` when absent (the root is
    /// node 0, so no child is ever 0).
    child: [u32; 2],
}

/// Sums over positions `0 .. 2^bits`.
#[derive(Clone, Debug)]
pub(super) struct SumTree {
    nodes: Vec<Node>,
    bits: u32,
}

impl SumTree {
    /// A tree of positions `0 .. 2^bits` (`bits` at most 64).
    pub(super) fn new(bits: u32) -> SumTree {
        SumTree {
            nodes: vec![Node::default()],
            bits: bits.min(64),
        }
    }

    /// Adds `s` to the bucket at `pos`.
    pub(super) fn add(&mut self, pos: u64, s: &SumState) {
        let mut at = 0usize;
        self.nodes[at].sum.merge(s);
        for level in (0..self.bits).rev() {
            let side = ((pos >> level) & 1) as usize;
            let next = self.nodes[at].child[side];
            at = if next == NONE {
                let made = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
                self.nodes.push(Node::default());
                self.nodes[at].child[side] = made;
                made as usize
            } else {
                next as usize
            };
            self.nodes[at].sum.merge(s);
        }
    }

    /// The sum of the buckets at positions `lo ..= hi` (nothing when `lo > hi`).
    pub(super) fn range(&self, lo: u64, hi: u64) -> SumState {
        let mut acc = SumState::default();
        if lo <= hi {
            self.walk(0, 0, self.bits, u128::from(lo), u128::from(hi), &mut acc);
        }
        acc
    }

    fn walk(&self, at: usize, start: u128, level: u32, lo: u128, hi: u128, acc: &mut SumState) {
        let end = start + (1u128 << level) - 1;
        if end < lo || start > hi {
            return;
        }
        let node = &self.nodes[at];
        if lo <= start && end <= hi {
            acc.merge(&node.sum);
            return;
        }
        // Partly covered: not a leaf (a leaf is one position, covered or not).
        let half = 1u128 << (level - 1);
        for (side, child_start) in [(0, start), (1, start + half)] {
            let c = node.child[side];
            if c != NONE {
                self.walk(c as usize, child_start, level - 1, lo, hi, acc);
            }
        }
    }

    /// Nodes held (for memory figures).
    pub(super) fn nodes(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    fn s(x: i64) -> SumState {
        let mut s = SumState::default();
        s.add(&Value::I64(x));
        s
    }

    #[test]
    fn ranges_equal_a_plain_sum() {
        let mut t = SumTree::new(10);
        let mut plain = [0i64; 1024];
        let mut x: u64 = 7;
        for i in 0..500 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pos = (x >> 54) as usize;
            let v = (i % 13) as i64 - 6;
            t.add(pos as u64, &s(v));
            plain[pos] += v;
        }
        for (lo, hi) in [
            (0, 1023),
            (5, 5),
            (0, 0),
            (1023, 1023),
            (100, 900),
            (900, 100),
            (17, 530),
        ] {
            let want: i64 = if lo <= hi {
                plain[lo..=hi].iter().sum()
            } else {
                0
            };
            let got = t.range(lo as u64, hi as u64).sum_value();
            let got = match got {
                Some(Value::I64(g)) => g,
                None => 0,
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{lo}..={hi}");
        }
    }

    #[test]
    fn sixty_four_bits_reach_both_ends() {
        let mut t = SumTree::new(64);
        t.add(0, &s(1));
        t.add(u64::MAX, &s(2));
        assert_eq!(t.range(0, u64::MAX).sum_value(), Some(Value::I64(3)));
        assert_eq!(t.range(1, u64::MAX).sum_value(), Some(Value::I64(2)));
        assert_eq!(t.range(0, u64::MAX - 1).sum_value(), Some(Value::I64(1)));
        assert!(t.nodes() <= 1 + 2 * 64);
    }
}
