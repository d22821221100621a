//! Mergeable approximate-aggregate sketches: [`Hll`] (distinct counts) and [`DdSketch`]
//! (quantiles).
//!
//! reckon checks that a window which received its data late and out of order ends up
//! *equal* (`==`) to a batch recomputation over the same events. For the approximate
//! aggregates that is only possible if the sketch state is a function of the multiset of
//! inputs alone: not of the insertion order, and not of the shape of the merge tree that
//! combined partial states. Both sketches here are built to have that property exactly,
//! including DDSketch's bin collapsing, and store their state in a canonical form so that
//! the derived `PartialEq` compares what matters. They are written here rather than taken
//! from a crate so that this determinism, and the serde layout that goes into reckon's
//! versioned snapshots, stay under our control.
//!
//! Neither type panics on any input: every finite `f64` (including `-0.0`, subnormals and
//! `f64::MAX`) and every `u64` hash is accepted, and deserialisation validates what the
//! code relies on.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

// ---------------------------------------------------------------------------------------
// HyperLogLog
// ---------------------------------------------------------------------------------------

/// Number of HLL registers, `2^PRECISION`.
const HLL_REGISTERS: usize = 1 << Hll::PRECISION;

/// The largest register value `insert_hash` can produce: the 52 hash bits left after the
/// register index are all zero, so the "position of the first one bit" is 52 + 1.
const HLL_MAX_RANK: u8 = (64 - Hll::PRECISION + 1) as u8;

/// HyperLogLog distinct counter with precision p = 12: 4096 one-byte registers (4 KiB),
/// about 1.6% standard error.
///
/// Laws (checked by the tests):
/// - insertion order does not matter, and inserting a hash twice is the same as once: the
///   state is a function of the *set* of inserted hashes;
/// - [`merge`](Hll::merge) is associative and commutative, with [`Hll::new`] as identity,
///   and merging the sketches of the parts of a partition gives exactly the sketch of the
///   whole.
///
/// All of this holds because each register is a maximum, and `max` is associative,
/// commutative, idempotent and has 0 (the empty register) as identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hll {
    /// Register `j` holds the largest rank seen among hashes whose top 12 bits are `j`.
    /// Deserialisation checks the length (4096) and that every rank is at most 53, so the
    /// estimate is always computed over the right number of registers.
    #[serde(deserialize_with = "deserialize_registers")]
    registers: Box<[u8]>,
}

impl Hll {
    /// Number of index bits; the sketch has `2^PRECISION` registers.
    pub const PRECISION: u32 = 12;

    /// An empty sketch (all registers zero).
    pub fn new() -> Hll {
        Hll {
            registers: vec![0; HLL_REGISTERS].into_boxed_slice(),
        }
    }

    /// Adds a value, given as a well-mixed 64-bit hash of it (reckon uses xxh3). The top 12
    /// bits choose the register, the rank is one plus the number of leading zeros of the
    /// remaining 52 bits.
    pub fn insert_hash(&mut self, h: u64) {
        let index = usize::try_from(h >> (64 - Self::PRECISION)).unwrap_or(0);
        let rest = h << Self::PRECISION;
        // `rest == 0` has 64 leading zeros; the rank is capped at 53, the value an
        // all-zero 52-bit suffix has, so that it stays independent of how we shifted.
        let rank = u8::try_from(rest.leading_zeros().saturating_add(1))
            .unwrap_or(HLL_MAX_RANK)
            .min(HLL_MAX_RANK);
        if let Some(register) = self.registers.get_mut(index)
            && rank > *register
        {
            *register = rank;
        }
    }

    /// Merges `other` into `self` (register-wise maximum): afterwards `self` is the sketch
    /// of the union of both inputs.
    pub fn merge(&mut self, other: &Hll) {
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers.iter()) {
            if *theirs > *mine {
                *mine = *theirs;
            }
        }
    }

    /// The estimated number of distinct values inserted: the HyperLogLog raw estimate
    /// `alpha_m * m^2 / sum(2^-register)`, replaced by linear counting `m * ln(m / V)` (V
    /// = number of zero registers) when the raw estimate is at most `2.5 m` and some
    /// register is still zero. Exactly `0.0` when empty. No large-range correction is
    /// needed with 64-bit hashes.
    pub fn estimate(&self) -> f64 {
        let m = HLL_REGISTERS as f64;
        let mut sum = 0.0_f64;
        let mut zeros = 0_u32;
        // Summing in register order keeps the floating-point result a function of the
        // state alone.
        for &r in self.registers.iter() {
            sum += (-f64::from(r)).exp2();
            if r == 0 {
                zeros = zeros.saturating_add(1);
            }
        }
        if zeros as usize >= HLL_REGISTERS {
            return 0.0;
        }
        let alpha_m = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha_m * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / f64::from(zeros)).ln()
        } else {
            raw
        }
    }

    /// Whether nothing has been inserted (every register is zero).
    pub fn is_empty(&self) -> bool {
        self.registers.iter().all(|&r| r == 0)
    }
}

impl Default for Hll {
    fn default() -> Hll {
        Hll::new()
    }
}

/// Reads the HLL registers, rejecting a wrong count or an impossible rank instead of
/// letting a corrupt snapshot produce a silently wrong estimate.
fn deserialize_registers<'de, D: Deserializer<'de>>(d: D) -> Result<Box<[u8]>, D::Error> {
    let registers = Vec::<u8>::deserialize(d)?;
    if registers.len() != HLL_REGISTERS {
        return Err(D::Error::invalid_length(
            registers.len(),
            &"4096 HyperLogLog registers",
        ));
    }
    if let Some(&bad) = registers.iter().find(|&&r| r > HLL_MAX_RANK) {
        return Err(D::Error::custom(format_args!(
            "HyperLogLog register value {bad} exceeds the maximum rank {HLL_MAX_RANK}"
        )));
    }
    Ok(registers.into_boxed_slice())
}

// ---------------------------------------------------------------------------------------
// DDSketch
// ---------------------------------------------------------------------------------------

/// Smallest relative accuracy accepted; smaller requests are raised to it. Below about
/// 1.7e-7 the bin indices of the finite `f64` range would no longer fit in an `i32`.
const MIN_ACCURACY: f64 = 1e-6;

/// Largest relative accuracy accepted; larger requests are lowered to it. As alpha
/// approaches 1 the bin growth factor gamma goes to infinity.
const MAX_ACCURACY: f64 = 0.99;

/// The bins are laid out for a slightly tighter accuracy, `alpha * (1 - MAPPING_MARGIN)`,
/// than the one promised. The rounding errors of `ln`, `exp` and the division (relative
/// ~1e-13 at the ends of the `f64` range) can put a value on the wrong side of a bin
/// boundary; this margin (at least 1e-10 relative, since alpha >= 1e-6) absorbs that, so
/// the promised bound holds strictly.
const MAPPING_MARGIN: f64 = 1e-4;

/// Magnitudes below this (subnormals and zeros) go to the zero bin. Subnormals have too
/// little precision for a bin representative to be within a relative error of them; the
/// absolute error of reporting them as 0 is below 2.3e-308.
const MIN_INDEXABLE: f64 = f64::MIN_POSITIVE;

/// The logarithmic index mapping of a DDSketch: bin `i` holds magnitudes in
/// `(gamma^(i-1), gamma^i]`, with `gamma = (1 + a) / (1 - a)` for the mapping accuracy
/// `a`. Only the requested accuracy is serialised; the rest is derived from it.
#[derive(Clone, Debug, PartialEq)]
struct Mapping {
    /// The relative accuracy promised to the user (after clamping).
    alpha: f64,
    /// `ln(gamma)`.
    ln_gamma: f64,
    /// `ln(2 / (gamma + 1)) = ln(1 - a)`: bin `i`'s representative is
    /// `exp(i ln gamma + ln_offset) = 2 gamma^i / (gamma + 1)`, the point whose relative
    /// distance to both ends of the bin is exactly `a`.
    ln_offset: f64,
}

impl Mapping {
    fn new(relative_accuracy: f64) -> Mapping {
        let alpha = if relative_accuracy.is_nan() {
            DdSketch::DEFAULT_ACCURACY
        } else {
            relative_accuracy.clamp(MIN_ACCURACY, MAX_ACCURACY)
        };
        let a = alpha * (1.0 - MAPPING_MARGIN);
        Mapping {
            alpha,
            ln_gamma: a.ln_1p() - (-a).ln_1p(),
            ln_offset: (-a).ln_1p(),
        }
    }

    /// The bin of a magnitude `m >= MIN_INDEXABLE`. The float-to-int cast saturates, but
    /// with alpha >= 1e-6 the index of every finite magnitude is within ±4e8.
    fn index(&self, magnitude: f64) -> i32 {
        (magnitude.ln() / self.ln_gamma).ceil() as i32
    }

    /// The representative magnitude of bin `i`. Near `f64::MAX` it may round to infinity;
    /// [`DdSketch::quantile`] clamps to the exact min/max, which are finite.
    fn value(&self, index: i32) -> f64 {
        (f64::from(index) * self.ln_gamma + self.ln_offset).exp()
    }
}

impl Serialize for Mapping {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.alpha)
    }
}

impl<'de> Deserialize<'de> for Mapping {
    /// Accepts exactly the accuracies [`Mapping::new`] can produce, so a snapshot
    /// round-trips to an equal sketch and a corrupt one is rejected.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mapping, D::Error> {
        let alpha = f64::deserialize(d)?;
        let mapping = Mapping::new(alpha);
        if mapping.alpha.to_bits() == alpha.to_bits() {
            Ok(mapping)
        } else {
            Err(D::Error::custom(format_args!(
                "DDSketch relative accuracy {alpha} is outside [{MIN_ACCURACY}, {MAX_ACCURACY}]"
            )))
        }
    }
}

/// Why [`DdSketch::merge`] refused: the two sketches bin values differently, so their bins
/// cannot be added up. Merging them anyway would silently produce a sketch whose state
/// depends on which side was merged into which.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AccuracyMismatch {
    /// Relative accuracy of the sketch merged into.
    pub ours: f64,
    /// Relative accuracy of the sketch that was to be merged.
    pub theirs: f64,
}

impl fmt::Display for AccuracyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot merge DDSketches of different relative accuracy ({} and {})",
            self.ours, self.theirs
        )
    }
}

impl std::error::Error for AccuracyMismatch {}

/// DDSketch quantile sketch (Masson, Rim, Lee, VLDB 2019) with relative accuracy alpha,
/// for finite `f64` of any sign.
///
/// Values are counted in logarithmically sized bins, separately for positive and negative
/// values (by magnitude), plus a zero bin for magnitudes below `f64::MIN_POSITIVE`
/// (zeros, `-0.0` and subnormals). The exact count, minimum and maximum are kept too.
///
/// Laws (checked by the tests):
/// - insertion order does not matter: the state is a function of the multiset of inserted
///   values, compared exactly with `==`;
/// - [`merge`](DdSketch::merge) is associative and commutative, with
///   `DdSketch::new(alpha)` as identity, and merging the sketches of the parts of any
///   partition, in any merge tree, gives exactly the sketch of the whole;
/// - all of this holds even when bins are collapsed (see below).
///
/// Accuracy: with lower-rank convention (see [`quantile`](DdSketch::quantile)), the
/// result is within relative error alpha of the exact quantile of the inputs, except for
/// values that were collapsed and for subnormal inputs, which are reported as 0.
///
/// Memory: each sign store holds at most [`MAX_BINS`](DdSketch::MAX_BINS) bins, which
/// span a magnitude factor of `gamma^MAX_BINS`: about e^41 (1.6e17) at alpha = 1%, e^205
/// at 5%, but only e^4.1 (a factor of 60) at 0.1%. Data of a wider range per sign is
/// collapsed.
///
/// # Collapsing, and why it is order-independent
///
/// A store whose bins span more than `MAX_BINS` indices is collapsed: with `H` its highest
/// index and `L = H - MAX_BINS + 1`, every bin below `L` is added into bin `L`. So the
/// lowest-magnitude bins lose accuracy (they only ever overestimate magnitudes) and the
/// highest magnitudes stay accurate, as in DDSketch's collapsing-lowest dense store.
///
/// Collapsing only moves a count from index `i` to `max(i, L)`, and never above the
/// highest index, so `H` is always the highest original index of the inputs in the store.
/// Every collapse ever applied used `L_t = H_t - MAX_BINS + 1 <= L_final`, where `H_final`
/// is the highest original index of *all* inputs, and clamping twice is clamping once to
/// the larger bound. The final check after the last insert or merge then clamps to
/// `L_final` if anything lies below it; if nothing does, every input originally below
/// `L_final` must already sit at some `L_t >= L_final`, i.e. exactly at `L_final`. Either
/// way each input ends in bin `max(i, H_final - MAX_BINS + 1)`: a function of the
/// multiset only, whatever the order of inserts and merges. Collapse runs after *every*
/// insert and merge, which is what this argument needs.
///
/// Counts add with saturation, so no input can make them overflow; the laws would only
/// break after 2^64 inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DdSketch {
    /// The index mapping; serialised as the relative accuracy alone.
    accuracy: Mapping,
    /// Bin index → count for positive values. A `BTreeMap` without zero counts is a
    /// canonical form, so derived equality compares the histograms.
    positive: BTreeMap<i32, u64>,
    /// Bin index (of the magnitude) → count for negative values.
    negative: BTreeMap<i32, u64>,
    /// Number of inputs with magnitude below `f64::MIN_POSITIVE`.
    zero_count: u64,
    /// Total number of inputs.
    count: u64,
    /// Smallest input (with `-0.0` stored as `0.0`, so it does not depend on which zero
    /// came first); 0.0 while empty, which keeps snapshots free of infinities.
    min: f64,
    /// Largest input, likewise.
    max: f64,
}

impl DdSketch {
    /// The relative accuracy reckon uses when none is given: 1%.
    pub const DEFAULT_ACCURACY: f64 = 0.01;

    /// Most bins per sign store; beyond it the lowest-magnitude bins are collapsed.
    pub const MAX_BINS: usize = 2048;

    /// An empty sketch with the given relative accuracy, which should be in `(0, 1)`.
    /// Values outside `[1e-6, 0.99]` are clamped into it and NaN means
    /// [`DEFAULT_ACCURACY`](DdSketch::DEFAULT_ACCURACY), so that no argument can make the
    /// bin indices overflow; [`relative_accuracy`](DdSketch::relative_accuracy) reports
    /// the value used.
    pub fn new(relative_accuracy: f64) -> DdSketch {
        DdSketch {
            accuracy: Mapping::new(relative_accuracy),
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
            zero_count: 0,
            count: 0,
            min: 0.0,
            max: 0.0,
        }
    }

    /// The relative accuracy this sketch guarantees (the one given to `new`, clamped).
    pub fn relative_accuracy(&self) -> f64 {
        self.accuracy.alpha
    }

    /// Adds a value. Non-finite values cannot be binned and are ignored (callers are
    /// expected not to pass them).
    pub fn insert(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        // -0.0 == 0.0, but `f64::min`/`max` may return either zero, which would make the
        // stored min/max depend on insertion order.
        let x = if x == 0.0 { 0.0 } else { x };
        let magnitude = x.abs();
        if magnitude < MIN_INDEXABLE {
            self.zero_count = self.zero_count.saturating_add(1);
        } else {
            let index = self.accuracy.index(magnitude);
            let store = if x > 0.0 {
                &mut self.positive
            } else {
                &mut self.negative
            };
            add_to_bin(store, index, 1);
            collapse(store);
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count = self.count.saturating_add(1);
    }

    /// Merges `other` into `self`: afterwards `self` is exactly the sketch of the union of
    /// both inputs.
    ///
    /// # Errors
    ///
    /// [`AccuracyMismatch`] if the sketches were created with different relative
    /// accuracies (their bins mean different things); `self` is then left unchanged.
    pub fn merge(&mut self, other: &DdSketch) -> Result<(), AccuracyMismatch> {
        if self.accuracy != other.accuracy {
            return Err(AccuracyMismatch {
                ours: self.accuracy.alpha,
                theirs: other.accuracy.alpha,
            });
        }
        for (&index, &n) in &other.positive {
            add_to_bin(&mut self.positive, index, n);
        }
        collapse(&mut self.positive);
        for (&index, &n) in &other.negative {
            add_to_bin(&mut self.negative, index, n);
        }
        collapse(&mut self.negative);
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        if other.count > 0 {
            if self.count == 0 {
                self.min = other.min;
                self.max = other.max;
            } else {
                self.min = self.min.min(other.min);
                self.max = self.max.max(other.max);
            }
        }
        self.count = self.count.saturating_add(other.count);
        Ok(())
    }

    /// The approximate `q`-quantile, `None` when the sketch is empty or `q` is NaN.
    ///
    /// Rank convention ("lower", like numpy's `method="lower"`): the `q`-quantile of `n`
    /// values is the value of 0-based rank `floor(q * (n - 1))` (computed in `f64`) in the
    /// sorted inputs. `q <= 0` returns the exact minimum and `q >= 1` the exact maximum;
    /// otherwise the result is within relative error alpha of the exact quantile (unless
    /// it lies in a collapsed bin or is subnormal) and always within `[min, max]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        if q <= 0.0 {
            return Some(self.min);
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let last_rank = self.count.saturating_sub(1) as f64;
        let rank = (q * last_rank).floor() as u64;
        let found = self.value_at_rank(rank).unwrap_or(self.max);
        // The representative can lie outside [min, max] (by up to alpha); clamping can
        // only bring it closer to the true value, which lies inside. `max`/`min` rather
        // than `clamp`, which would panic on a corrupt snapshot with min > max.
        Some(found.max(self.min).min(self.max))
    }

    /// Number of values inserted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The representative of the bin holding the value of the given rank: the bins are
    /// walked in value order (negatives from the largest magnitude down, zeros, positives
    /// from the smallest magnitude up). `None` only if the counts are inconsistent.
    fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let mut seen = 0_u64;
        for (&index, &n) in self.negative.iter().rev() {
            seen = seen.saturating_add(n);
            if rank < seen {
                return Some(-self.accuracy.value(index));
            }
        }
        seen = seen.saturating_add(self.zero_count);
        if rank < seen {
            return Some(0.0);
        }
        for (&index, &n) in &self.positive {
            seen = seen.saturating_add(n);
            if rank < seen {
                return Some(self.accuracy.value(index));
            }
        }
        None
    }
}

impl Default for DdSketch {
    /// An empty sketch with [`DEFAULT_ACCURACY`](DdSketch::DEFAULT_ACCURACY).
    fn default() -> DdSketch {
        DdSketch::new(DdSketch::DEFAULT_ACCURACY)
    }
}

/// Adds `n` to a bin, never creating a zero-count entry (which would break the canonical
/// form the derived equality relies on).
fn add_to_bin(store: &mut BTreeMap<i32, u64>, index: i32, n: u64) {
    if n > 0 {
        let bin = store.entry(index).or_insert(0);
        *bin = bin.saturating_add(n);
    }
}

/// Collapses a store spanning more than `MAX_BINS` indices: every bin below
/// `L = highest - MAX_BINS + 1` is added into bin `L`. See [`DdSketch`] for why the result
/// does not depend on the order of operations.
fn collapse(store: &mut BTreeMap<i32, u64>) {
    const SPAN: i64 = DdSketch::MAX_BINS as i64;
    let (Some((&lowest, _)), Some((&highest, _))) =
        (store.first_key_value(), store.last_key_value())
    else {
        return;
    };
    let width = i64::from(highest).saturating_sub(i64::from(lowest));
    if width < SPAN {
        return;
    }
    // `highest - lowest >= SPAN`, so the floor lies strictly between them and fits in i32.
    let Ok(floor) = i32::try_from(i64::from(highest).saturating_sub(SPAN - 1)) else {
        return;
    };
    let kept = store.split_off(&floor);
    let folded = store.values().fold(0_u64, |acc, &n| acc.saturating_add(n));
    *store = kept;
    add_to_bin(store, floor, folded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as ValueError, SeqDeserializer};
    use xxhash_rust::xxh3::xxh3_64;

    const QUANTILES: [f64; 7] = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0];

    /// splitmix64: a tiny deterministic generator for the fixed accuracy data sets.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
        }

        /// Standard normal (Box-Muller).
        fn normal(&mut self) -> f64 {
            let u1 = 1.0 - self.unit();
            let u2 = self.unit();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }

    /// The exact quantile under the documented lower-rank convention.
    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        sorted[rank]
    }

    fn sketch_of(values: &[f64], alpha: f64) -> DdSketch {
        let mut s = DdSketch::new(alpha);
        for &x in values {
            s.insert(x);
        }
        s
    }

    fn sorted(values: &[f64]) -> Vec<f64> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v
    }

    fn assert_within(est: f64, exact: f64, alpha: f64, what: &str) {
        if exact == 0.0 {
            assert_eq!(est, 0.0, "{what}: expected 0, got {est}");
        } else {
            let err = ((est - exact) / exact).abs();
            assert!(
                err <= alpha,
                "{what}: estimate {est} vs exact {exact}: relative error {err} > {alpha}"
            );
        }
    }

    fn assert_accurate(values: &[f64], alpha: f64, what: &str) {
        let s = sketch_of(values, alpha);
        let sorted = sorted(values);
        assert_eq!(s.count(), values.len() as u64);
        for q in QUANTILES {
            let est = s.quantile(q).unwrap();
            let exact = exact_quantile(&sorted, q);
            assert_within(est, exact, alpha, &format!("{what} q={q}"));
        }
        assert_eq!(s.quantile(0.0), Some(sorted[0]));
        assert_eq!(s.quantile(1.0), Some(sorted[sorted.len() - 1]));
    }

    /// Splits `values` at the given cut points, sketches each chunk with `make`, then
    /// merges the parts in a random binary tree driven by `picks`.
    fn split_and_merge<T: Clone>(
        values: &[T],
        cuts: &[usize],
        picks: &[u64],
        mut make: impl FnMut(&[T]) -> DdOrHll,
    ) -> DdOrHll {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(values.len())).collect();
        cuts.push(0);
        cuts.push(values.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut parts: Vec<DdOrHll> = cuts.windows(2).map(|w| make(&values[w[0]..w[1]])).collect();
        if parts.is_empty() {
            parts.push(make(&[]));
        }
        let mut k = 0;
        let mut pick = |len: usize| {
            let p = picks.get(k).copied().unwrap_or(0);
            k += 1;
            (p % len as u64) as usize
        };
        while parts.len() > 1 {
            let i = pick(parts.len());
            let mut a = parts.swap_remove(i);
            let j = pick(parts.len());
            let b = parts.swap_remove(j);
            a.merge(&b);
            parts.push(a);
        }
        parts.pop().unwrap()
    }

    #[derive(Clone, Debug, PartialEq)]
    enum DdOrHll {
        Dd(DdSketch),
        Hll(Hll),
    }

    impl DdOrHll {
        fn merge(&mut self, other: &DdOrHll) {
            match (self, other) {
                (DdOrHll::Dd(a), DdOrHll::Dd(b)) => a.merge(b).unwrap(),
                (DdOrHll::Hll(a), DdOrHll::Hll(b)) => a.merge(b),
                _ => unreachable!(),
            }
        }
    }

    /// Values covering signs, zeros of both signs, duplicates, subnormals, the extremes
    /// of `f64` and a magnitude range far wider than `MAX_BINS` bins (so collapsing is
    /// exercised constantly).
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => (-20_i32..=20).prop_map(f64::from),
            3 => -1e6..1e6_f64,
            3 => (any::<bool>(), 1.0..10.0_f64, -300_i32..=300).prop_map(|(neg, m, e)| {
                let v = m * 10_f64.powi(e);
                if neg { -v } else { v }
            }),
            2 => prop::num::f64::POSITIVE
                | prop::num::f64::NEGATIVE
                | prop::num::f64::NORMAL
                | prop::num::f64::SUBNORMAL
                | prop::num::f64::ZERO,
            1 => prop::sample::select(vec![
                0.0,
                -0.0,
                f64::MAX,
                f64::MIN,
                f64::MIN_POSITIVE,
                -f64::MIN_POSITIVE,
                5e-324,
                -5e-324,
                f64::EPSILON,
            ]),
        ]
    }

    fn alpha() -> impl Strategy<Value = f64> {
        prop::sample::select(vec![0.01, 0.001, 0.05, 0.3])
    }

    /// A multiset, a shuffle of it, cut points and merge-tree picks.
    fn case<T: Clone + std::fmt::Debug + 'static>(
        item: impl Strategy<Value = T> + 'static,
        max_len: usize,
    ) -> impl Strategy<Value = (Vec<T>, Vec<T>, Vec<usize>, Vec<u64>)> {
        prop::collection::vec(item, 0..max_len).prop_flat_map(|v| {
            let n = v.len();
            (
                Just(v.clone()),
                Just(v).prop_shuffle(),
                prop::collection::vec(0..=n, 0..10),
                prop::collection::vec(any::<u64>(), 0..24),
            )
        })
    }

    fn hll_of(hashes: &[u64]) -> Hll {
        let mut h = Hll::new();
        for &x in hashes {
            h.insert_hash(x);
        }
        h
    }

    fn hash_item() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            // Few distinct values: many duplicates.
            (0_u64..16).prop_map(|i| xxh3_64(&i.to_le_bytes())),
            // Extreme hashes: rank cap (suffix all zero) and register ends.
            prop::sample::select(vec![
                0,
                u64::MAX,
                1 << 52,
                (1 << 52) - 1,
                0xFFF0_0000_0000_0000
            ]),
        ]
    }

    /// Checks the canonical-form invariants that derived equality relies on.
    fn assert_canonical(s: &DdSketch) {
        for store in [&s.positive, &s.negative] {
            assert!(store.len() <= DdSketch::MAX_BINS);
            assert!(store.values().all(|&n| n > 0));
            if let (Some((&lo, _)), Some((&hi, _))) =
                (store.first_key_value(), store.last_key_value())
            {
                assert!(i64::from(hi) - i64::from(lo) < DdSketch::MAX_BINS as i64);
            }
        }
        let binned: u64 = s.positive.values().chain(s.negative.values()).sum();
        assert_eq!(binned + s.zero_count, s.count);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn dd_state_is_order_and_merge_tree_independent(
            (values, shuffled, cuts, picks) in case(value(), 400),
            alpha in alpha(),
        ) {
            let whole = sketch_of(&values, alpha);
            assert_canonical(&whole);
            prop_assert_eq!(&sketch_of(&shuffled, alpha), &whole);
            let merged = split_and_merge(&shuffled, &cuts, &picks, |c| DdOrHll::Dd(sketch_of(c, alpha)));
            prop_assert_eq!(merged, DdOrHll::Dd(whole.clone()));
            // Exact min, max and count whatever happened.
            prop_assert_eq!(whole.count(), values.len() as u64);
            if !values.is_empty() {
                let s = sorted(&values);
                prop_assert_eq!(whole.quantile(0.0), Some(s[0]));
                prop_assert_eq!(whole.quantile(1.0), Some(s[s.len() - 1]));
            }
        }

        #[test]
        fn dd_merge_identity_commutativity_associativity(
            a in prop::collection::vec(value(), 0..150),
            b in prop::collection::vec(value(), 0..150),
            c in prop::collection::vec(value(), 0..150),
            alpha in alpha(),
        ) {
            let (sa, sb, sc) = (sketch_of(&a, alpha), sketch_of(&b, alpha), sketch_of(&c, alpha));
            let empty = DdSketch::new(alpha);

            let mut x = sa.clone();
            x.merge(&empty).unwrap();
            prop_assert_eq!(&x, &sa);
            let mut x = empty.clone();
            x.merge(&sa).unwrap();
            prop_assert_eq!(&x, &sa);

            let mut ab = sa.clone();
            ab.merge(&sb).unwrap();
            let mut ba = sb.clone();
            ba.merge(&sa).unwrap();
            prop_assert_eq!(&ab, &ba);

            let mut ab_c = ab.clone();
            ab_c.merge(&sc).unwrap();
            let mut bc = sb.clone();
            bc.merge(&sc).unwrap();
            let mut a_bc = sa.clone();
            a_bc.merge(&bc).unwrap();
            prop_assert_eq!(&ab_c, &a_bc);

            let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
            prop_assert_eq!(&ab_c, &sketch_of(&all, alpha));
        }

        /// Without collapsing (a range within MAX_BINS bins), every quantile is within alpha of the
        /// exact lower-rank quantile, for any q.
        #[test]
        fn dd_quantiles_within_alpha(
            values in prop::collection::vec(
                prop_oneof![
                    -1e3..1e3_f64,
                    (-5_i32..=5).prop_map(f64::from),
                    (any::<bool>(), 1e-3..1e3_f64).prop_map(|(n, x)| if n { -x } else { x }),
                ],
                1..300,
            ),
            qs in prop::collection::vec(0.0..=1.0_f64, 1..20),
            // Values span a factor 1e6 (ln 13.8), within MAX_BINS bins for these alphas.
            alpha in prop::sample::select(vec![0.01, 0.05, 0.3]),
        ) {
            let s = sketch_of(&values, alpha);
            let sorted = sorted(&values);
            for q in qs {
                let est = s.quantile(q).unwrap();
                let exact = exact_quantile(&sorted, q);
                if exact == 0.0 {
                    prop_assert_eq!(est, 0.0);
                } else {
                    prop_assert!(((est - exact) / exact).abs() <= alpha,
                        "q={} est={} exact={}", q, est, exact);
                }
            }
        }

        #[test]
        fn hll_state_is_order_and_merge_tree_independent(
            (hashes, shuffled, cuts, picks) in case(hash_item(), 600),
        ) {
            let whole = hll_of(&hashes);
            prop_assert_eq!(&hll_of(&shuffled), &whole);
            let merged = split_and_merge(&shuffled, &cuts, &picks, |c| DdOrHll::Hll(hll_of(c)));
            prop_assert_eq!(merged, DdOrHll::Hll(whole.clone()));
            // Duplicates do not change the state.
            let doubled: Vec<u64> = hashes.iter().chain(&hashes).copied().collect();
            prop_assert_eq!(&hll_of(&doubled), &whole);
            prop_assert_eq!(whole.is_empty(), hashes.is_empty());
        }

        #[test]
        fn hll_merge_identity_commutativity_associativity(
            a in prop::collection::vec(hash_item(), 0..300),
            b in prop::collection::vec(hash_item(), 0..300),
            c in prop::collection::vec(hash_item(), 0..300),
        ) {
            let (ha, hb, hc) = (hll_of(&a), hll_of(&b), hll_of(&c));
            let mut x = ha.clone();
            x.merge(&Hll::new());
            prop_assert_eq!(&x, &ha);
            let mut x = Hll::new();
            x.merge(&ha);
            prop_assert_eq!(&x, &ha);

            let mut ab = ha.clone();
            ab.merge(&hb);
            let mut ba = hb.clone();
            ba.merge(&ha);
            prop_assert_eq!(&ab, &ba);

            let mut ab_c = ab;
            ab_c.merge(&hc);
            let mut bc = hb;
            bc.merge(&hc);
            let mut a_bc = ha;
            a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc);
        }
    }

    #[test]
    fn hll_accuracy() {
        for n in [0_u64, 1, 10, 1000, 100_000] {
            let mut h = Hll::new();
            for i in 0..n {
                h.insert_hash(xxh3_64(&i.to_le_bytes()));
            }
            let est = h.estimate();
            let n_f = n as f64;
            if n == 0 {
                assert_eq!(est, 0.0);
                assert!(h.is_empty());
            } else {
                assert!(!h.is_empty());
                assert!(
                    (est - n_f).abs() <= 0.05 * n_f,
                    "n={n}: estimate {est} not within 5%"
                );
            }
            if n <= 10 {
                // Linear counting is nearly exact while few registers are set.
                assert!((est - n_f).abs() < 0.5, "n={n}: estimate {est}");
            }
        }
        assert_eq!(Hll::default().estimate(), 0.0);
    }

    #[test]
    fn hll_rank_is_capped_and_index_uses_top_bits() {
        let mut h = Hll::new();
        h.insert_hash(0);
        assert_eq!(h.registers[0], HLL_MAX_RANK);
        h.insert_hash(u64::MAX);
        assert_eq!(h.registers[HLL_REGISTERS - 1], 1);
        h.insert_hash(1 << 52);
        assert_eq!(h.registers[1], HLL_MAX_RANK);
        assert_eq!(h.registers.len(), 4096);
    }

    #[test]
    fn hll_deserialisation_is_validated() {
        let ok: Result<_, ValueError> =
            deserialize_registers(SeqDeserializer::new(vec![3_u8; 4096].into_iter()));
        assert_eq!(ok.unwrap().len(), 4096);
        let short: Result<_, ValueError> =
            deserialize_registers(SeqDeserializer::new(vec![0_u8; 10].into_iter()));
        assert!(short.is_err());
        let mut bad = vec![0_u8; 4096];
        bad[7] = HLL_MAX_RANK + 1;
        let bad: Result<_, ValueError> =
            deserialize_registers(SeqDeserializer::new(bad.into_iter()));
        assert!(bad.is_err());
    }

    #[test]
    fn dd_accuracy_on_distributions() {
        let mut rng = Rng(42);
        let n = 10_000;
        let alpha = DdSketch::DEFAULT_ACCURACY;
        let uniform: Vec<f64> = (0..n).map(|_| rng.unit() * 1000.0).collect();
        let exponential: Vec<f64> = (0..n).map(|_| -(1.0 - rng.unit()).ln() * 50.0).collect();
        let normal: Vec<f64> = (0..n).map(|_| rng.normal() * 100.0).collect();
        let lognormal_signed: Vec<f64> = (0..n)
            .map(|_| {
                let v = (rng.normal() * 4.0).exp();
                if rng.next_u64().is_multiple_of(2) {
                    v
                } else {
                    -v
                }
            })
            .collect();
        let small_ints_with_zeros: Vec<f64> = (0..n)
            .map(|_| f64::from((rng.next_u64() % 41) as i32 - 20))
            .collect();
        let all_negative: Vec<f64> = (0..n).map(|_| -(rng.unit() * 1e6 + 1e-3)).collect();
        let mostly_zero: Vec<f64> = (0..n)
            .map(|i| if i % 10 == 0 { rng.normal() } else { 0.0 })
            .collect();
        let narrow: Vec<f64> = (0..n).map(|_| 100.0 + rng.unit() * 900.0).collect();
        // MAX_BINS bins span a factor gamma^2048: e^41 at alpha = 1%, e^205 at 5%, but
        // only e^4.1 (a factor of 60) at 0.1%, so the finest accuracy gets narrow data.
        for (name, values, alphas) in [
            ("uniform", &uniform, &[alpha, 0.05][..]),
            ("exponential", &exponential, &[alpha, 0.05]),
            ("normal", &normal, &[alpha, 0.05]),
            ("lognormal_signed", &lognormal_signed, &[alpha, 0.05]),
            (
                "small_ints_with_zeros",
                &small_ints_with_zeros,
                &[alpha, 0.001, 0.05],
            ),
            ("all_negative", &all_negative, &[alpha, 0.05]),
            ("mostly_zero", &mostly_zero, &[alpha, 0.05]),
            ("narrow", &narrow, &[alpha, 0.001, 0.05]),
        ] {
            for &a in alphas {
                assert_accurate(values, a, &format!("{name} alpha={a}"));
            }
        }
    }

    /// Log-uniform over 300 decades: ~34 500 distinct bins at alpha = 1%, far more than
    /// MAX_BINS, so the positive store collapses.
    fn wide_values(rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| 10_f64.powf(rng.unit() * 300.0 - 200.0))
            .collect()
    }

    #[test]
    fn dd_collapse_is_deterministic_and_keeps_the_top_accurate() {
        let alpha = DdSketch::DEFAULT_ACCURACY;
        let mut rng = Rng(7);
        let values = wide_values(&mut rng, 10_000);
        let whole = sketch_of(&values, alpha);
        assert_canonical(&whole);

        // Collapsed exactly as documented: span of MAX_BINS below the highest bin.
        let (&lo, _) = whole.positive.first_key_value().unwrap();
        let (&hi, _) = whole.positive.last_key_value().unwrap();
        assert_eq!(i64::from(hi) - i64::from(lo), DdSketch::MAX_BINS as i64 - 1);
        assert_eq!(
            whole.positive.len(),
            DdSketch::MAX_BINS.min(whole.positive.len())
        );
        let mapping = &whole.accuracy;
        let expected_floor = values.iter().map(|&x| mapping.index(x)).max().unwrap()
            - (DdSketch::MAX_BINS as i32 - 1);
        assert_eq!(lo, expected_floor);
        let below = values.iter().filter(|&&x| mapping.index(x) <= lo).count() as u64;
        assert_eq!(whole.positive[&lo], below);

        // Any order: ascending (collapses progressively), descending (collapses at
        // once), shuffled; and merge trees over chunks.
        let asc = sorted(&values);
        let desc: Vec<f64> = asc.iter().rev().copied().collect();
        assert_eq!(sketch_of(&asc, alpha), whole);
        assert_eq!(sketch_of(&desc, alpha), whole);
        let mut interleaved = Vec::with_capacity(values.len());
        for (a, b) in asc.iter().zip(desc.iter()).take(values.len() / 2) {
            interleaved.push(*a);
            interleaved.push(*b);
        }
        assert_eq!(sketch_of(&interleaved, alpha), whole);
        for chunk in [1, 7, 333, 2500] {
            // Merge the ascending chunks right-to-left and left-to-right.
            let parts: Vec<DdSketch> = asc.chunks(chunk).map(|c| sketch_of(c, alpha)).collect();
            let mut left = DdSketch::new(alpha);
            for p in &parts {
                left.merge(p).unwrap();
            }
            let mut right = DdSketch::new(alpha);
            for p in parts.iter().rev() {
                right.merge(p).unwrap();
            }
            assert_eq!(left, whole, "chunk {chunk} left fold");
            assert_eq!(right, whole, "chunk {chunk} right fold");
        }

        // The top ~5.9% of the range (17.8 of 300 decades) is uncollapsed: accurate.
        let floor_value = mapping.value(lo);
        for q in [0.96, 0.99, 0.999, 1.0] {
            let exact = exact_quantile(&asc, q);
            assert!(exact > floor_value * (1.0 + alpha), "test data too narrow");
            assert_within(whole.quantile(q).unwrap(), exact, alpha, &format!("q={q}"));
        }
        // Collapsed quantiles only overestimate, up to the floor bin, and q=0 is exact.
        for q in [0.01, 0.25, 0.5, 0.9] {
            let est = whole.quantile(q).unwrap();
            assert!(est >= exact_quantile(&asc, q));
            assert!(est <= floor_value);
        }
        assert_eq!(whole.quantile(0.0), Some(asc[0]));

        // Negative side: the lowest magnitudes (the largest values) collapse, the most
        // negative stay accurate.
        let negated: Vec<f64> = values.iter().map(|x| -x).collect();
        let neg = sketch_of(&negated, alpha);
        assert_canonical(&neg);
        assert!(neg.positive.is_empty());
        assert_eq!(sketch_of(&sorted(&negated), alpha), neg);
        let neg_sorted = sorted(&negated);
        for q in [0.0, 0.001, 0.01, 0.04] {
            assert_within(
                neg.quantile(q).unwrap(),
                exact_quantile(&neg_sorted, q),
                alpha,
                &format!("neg q={q}"),
            );
        }
        assert_eq!(neg.quantile(1.0), Some(neg_sorted[neg_sorted.len() - 1]));
    }

    #[test]
    fn dd_extreme_inputs_do_not_panic_and_are_exact_at_the_ends() {
        let specials = [
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1.0,
            -1.0,
        ];
        for alpha in [0.01, 1e-6, 0.99, 0.5, 1e-300, 0.0, 1.0, -3.0, f64::NAN, 7.0] {
            let mut s = DdSketch::new(alpha);
            for &x in &specials {
                s.insert(x);
            }
            assert_canonical(&s);
            assert_eq!(s.count(), specials.len() as u64);
            assert_eq!(s.quantile(0.0), Some(f64::MIN));
            assert_eq!(s.quantile(1.0), Some(f64::MAX));
            for q in [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99] {
                let v = s.quantile(q).unwrap();
                assert!(v.is_finite());
            }
            assert_eq!(s.quantile(f64::NAN), None);
        }
        // The top bin's representative (2 gamma^i / (gamma + 1)) can exceed f64::MAX and
        // round to infinity; the result is clamped to the exact max and stays accurate.
        let s = sketch_of(&[f64::MAX / 1.001, f64::MAX / 1.001, f64::MAX], 0.01);
        let v = s.quantile(0.5).unwrap();
        assert!(v.is_finite());
        assert_within(v, f64::MAX / 1.001, 0.01, "near MAX");
        // Subnormals count as zero; f64::MIN_POSITIVE is indexable and accurate.
        let s = sketch_of(&[5e-324, f64::MIN_POSITIVE, f64::MIN_POSITIVE * 3.0], 0.01);
        assert_eq!(s.zero_count, 1);
        assert_within(
            s.quantile(0.5).unwrap(),
            f64::MIN_POSITIVE,
            0.01,
            "min positive",
        );
        // Non-finite inputs are ignored.
        let mut s = DdSketch::default();
        s.insert(f64::NAN);
        s.insert(f64::INFINITY);
        s.insert(f64::NEG_INFINITY);
        assert_eq!(s, DdSketch::default());
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn dd_signed_zeros_are_order_independent() {
        let a = sketch_of(&[0.0, -0.0], 0.01);
        let b = sketch_of(&[-0.0, 0.0], 0.01);
        assert_eq!(a, b);
        assert_eq!(a.min.to_bits(), 0.0_f64.to_bits());
        assert_eq!(a.max.to_bits(), 0.0_f64.to_bits());
        let mut c = sketch_of(&[-0.0], 0.01);
        c.merge(&sketch_of(&[0.0], 0.01)).unwrap();
        assert_eq!(c, a);
    }

    #[test]
    fn dd_merge_rejects_a_different_accuracy() {
        let mut a = sketch_of(&[1.0, 2.0, 3.0], 0.01);
        let before = a.clone();
        let b = sketch_of(&[4.0], 0.02);
        let err = a.merge(&b).unwrap_err();
        assert_eq!(
            err,
            AccuracyMismatch {
                ours: 0.01,
                theirs: 0.02
            }
        );
        assert!(err.to_string().contains("different relative accuracy"));
        assert_eq!(a, before);
        // Even an empty sketch of another accuracy is refused: the rule is simple.
        assert!(a.merge(&DdSketch::new(0.05)).is_err());
        // Clamped accuracies are equal and merge.
        let mut tiny = DdSketch::new(1e-9);
        tiny.merge(&DdSketch::new(1e-12)).unwrap();
        assert_eq!(tiny.relative_accuracy(), 1e-6);
    }

    #[test]
    fn dd_accuracy_deserialisation_is_validated() {
        let ok: Result<Mapping, ValueError> = Mapping::deserialize(0.01_f64.into_deserializer());
        assert_eq!(ok.unwrap(), Mapping::new(0.01));
        for bad in [0.0, 1.0, -0.5, f64::NAN, 1e-9] {
            let r: Result<Mapping, ValueError> = Mapping::deserialize(bad.into_deserializer());
            assert!(r.is_err(), "{bad} accepted");
        }
    }
}
