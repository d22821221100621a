//! Aggregates: what a window computes over its events.
//!
//! Each aggregate keeps an [`AggState`] per window. Every state obeys the same law, which
//! the tests check: `merge` is associative and commutative, the empty state of its kind
//! is the identity, and the state after inserting a multiset of inputs does not depend on
//! their order — exactly (bit for bit) for counts, sums, means, min/max, first/last and
//! the sketches, and up to floating-point rounding (relative 1e-9) for variances. That
//! law is what lets a window corrected by late data in any order end up equal to a batch
//! recomputation, and what will let rollups combine window states later.

use crate::error::{Error, Result};
use crate::event::{FieldName, Value};
use crate::sketch::{DdSketch, Hll};
use crate::time::EventTime;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// The kind of an aggregate.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "fn", rename_all = "snake_case")]
pub enum AggKind {
    /// Number of events (without a field), or of events that have the field.
    Count,
    /// Sum of a numeric field; an integer while every input is an integer.
    Sum,
    /// Arithmetic mean of a numeric field.
    Mean,
    /// Smallest numeric value.
    Min,
    /// Largest numeric value.
    Max,
    /// Value of the field in the earliest event (by event time; ties broken by digest).
    First,
    /// Value of the field in the latest event (by event time; ties broken by digest).
    Last,
    /// Sample variance (divides by n - 1; none below two inputs).
    Variance,
    /// Sample standard deviation.
    Stddev,
    /// Approximate number of distinct values (HyperLogLog, p = 12, ~1.6% error).
    DistinctApprox,
    /// Approximate quantile `q` (DDSketch with relative `accuracy`).
    Quantile {
        /// Which quantile, in `[0, 1]`.
        q: f64,
        /// Relative accuracy of the sketch, in `(0, 1)`; 0.01 is typical.
        accuracy: f64,
    },
}

impl AggKind {
    fn short_name(&self) -> String {
        match self {
            AggKind::Count => "count".into(),
            AggKind::Sum => "sum".into(),
            AggKind::Mean => "mean".into(),
            AggKind::Min => "min".into(),
            AggKind::Max => "max".into(),
            AggKind::First => "first".into(),
            AggKind::Last => "last".into(),
            AggKind::Variance => "variance".into(),
            AggKind::Stddev => "stddev".into(),
            AggKind::DistinctApprox => "distinct".into(),
            AggKind::Quantile { q, .. } => format!("p{}", q * 100.0),
        }
    }
}

/// One aggregate of a pipeline: a kind, the field it reads and the name of its output.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct AggregateSpec {
    /// Output column name.
    pub name: Arc<str>,
    /// What it computes.
    pub kind: AggKind,
    /// The field it reads; only `count` may go without one.
    pub field: Option<FieldName>,
    /// Only events for which this is true are aggregated (SQL's `FILTER (WHERE …)`).
    /// Left out of the encoding when unset, so older specs keep their fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::expr::Expr>,
}

impl AggregateSpec {
    /// An aggregate of `kind` over `field`, named `<kind>_<field>` (e.g. `mean_level`).
    pub fn new(kind: AggKind, field: &str) -> AggregateSpec {
        AggregateSpec {
            name: Arc::from(format!("{}_{field}", kind.short_name())),
            kind,
            field: Some(Arc::from(field)),
            filter: None,
        }
    }
    /// `count` of events, named `count`.
    pub fn count() -> AggregateSpec {
        AggregateSpec {
            name: Arc::from("count"),
            kind: AggKind::Count,
            field: None,
            filter: None,
        }
    }
    /// Aggregates only events for which `expr` is true.
    pub fn filtered(mut self, expr: crate::expr::Expr) -> AggregateSpec {
        self.filter = Some(expr);
        self
    }

    /// Renames the output column.
    pub fn named(mut self, name: &str) -> AggregateSpec {
        self.name = Arc::from(name);
        self
    }

    /// Checks the settings, naming the aggregate in the error.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| {
            Err(Error::InvalidSpec(format!(
                "aggregate `{}`: {m}",
                self.name
            )))
        };
        if self.name.is_empty() {
            return Err(Error::InvalidSpec("an aggregate has an empty name".into()));
        }
        if self.field.is_none() && self.kind != AggKind::Count {
            return bad("needs a field (only count may go without one)".into());
        }
        if let AggKind::Quantile { q, accuracy } = self.kind {
            if !(0.0..=1.0).contains(&q) {
                return bad(format!("quantile q must be in [0, 1], got {q}"));
            }
            if !(accuracy > 0.0 && accuracy < 1.0) {
                return bad(format!(
                    "quantile accuracy must be in (0, 1), got {accuracy}"
                ));
            }
        }
        Ok(())
    }

    /// The empty state of this aggregate (the identity of `merge`).
    pub fn empty_state(&self) -> AggState {
        match self.kind {
            AggKind::Count => AggState::Count(0),
            AggKind::Sum => AggState::Sum(SumState::default()),
            AggKind::Mean => AggState::Mean(SumState::default()),
            AggKind::Min => AggState::Min(None),
            AggKind::Max => AggState::Max(None),
            AggKind::First => AggState::First(None),
            AggKind::Last => AggState::Last(None),
            AggKind::Variance => AggState::Variance(Moments::default()),
            AggKind::Stddev => AggState::Stddev(Moments::default()),
            AggKind::DistinctApprox => AggState::Distinct(Box::default()),
            AggKind::Quantile { accuracy, q } => AggState::Quantile {
                q,
                sketch: Box::new(DdSketch::new(accuracy)),
            },
        }
    }
}

impl fmt::Display for AggregateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} = {}({field})", self.name, self.kind.short_name()),
            None => write!(f, "{} = {}(*)", self.name, self.kind.short_name()),
        }
    }
}

/// Sum of numbers, the same whatever the order of the inputs, bit for bit.
///
/// Integers are summed exactly in an `i128`. Each float is split exactly into two
/// fixed-point parts, at scales 2^-32 and 2^-95, summed in `i128`s: integer addition is
/// associative, so the total does not depend on arrival order, and it is exact for
/// every |x| from about 1e-13 to 2^94 (smaller bits are truncated, the same way every
/// time). Floats of 2^94 or more (never seen in practice) fall back to compensated
/// floating point. The accumulators hold more than 2^30 inputs of the largest exact
/// magnitude before they could wrap.
#[derive(Clone, Copy, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct SumState {
    int: i128,
    hi: i128,
    lo: i128,
    huge: f64,
    huge_compensation: f64,
    n_int: u64,
    n_float: u64,
}

/// `x` as fixed-point parts `(hi, lo)` with `x = hi·2^-32 + lo·2^-95`, exact but for
/// bits below 2^-95 (truncated toward zero, the same way every time), or `None` when
/// |x| ≥ 2^94.
#[inline]
fn split_fixed(x: f64) -> Option<(i128, i128)> {
    const TWO_32: f64 = 4_294_967_296.0;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const TWO_126: f64 = 85_070_591_730_234_615_865_843_651_857_942_052_864.0;
    // Scaling by a power of two is exact; so is taking the integer part (truncation)
    // and subtracting it (the fraction of a 53-bit float fits in 53 bits).
    let scaled = x * TWO_32;
    if scaled.abs() < TWO_63 {
        let hi = scaled as i64;
        let frac = scaled - hi as f64;
        return Some((i128::from(hi), i128::from((frac * TWO_63) as i64)));
    }
    if scaled.abs() >= TWO_126 {
        return None;
    }
    // From 2^31 on the scaled value is a whole number: no fraction.
    Some((scaled as i128, 0))
}

impl SumState {
    #[inline]
    fn add_float(&mut self, x: f64) {
        match split_fixed(x) {
            Some((hi, lo)) => {
                self.hi = self.hi.wrapping_add(hi);
                self.lo = self.lo.wrapping_add(lo);
            }
            None => self.add_huge(x),
        }
        self.n_float += 1;
    }
    fn add_huge(&mut self, x: f64) {
        // Neumaier's compensated summation for the (practically absent) huge floats.
        let t = self.huge + x;
        if self.huge.abs() >= x.abs() {
            self.huge_compensation += (self.huge - t) + x;
        } else {
            self.huge_compensation += (x - t) + self.huge;
        }
        self.huge = t;
    }
    /// Adds a number (other values are ignored).
    #[inline]
    pub fn add(&mut self, v: &Value) {
        match *v {
            Value::I64(i) => {
                self.int += i128::from(i);
                self.n_int += 1;
            }
            Value::F64(x) => self.add_float(x),
            _ => {}
        }
    }
    pub(crate) fn merge(&mut self, o: &SumState) {
        self.int = self.int.wrapping_add(o.int);
        self.hi = self.hi.wrapping_add(o.hi);
        self.lo = self.lo.wrapping_add(o.lo);
        self.add_huge(o.huge);
        self.huge_compensation += o.huge_compensation;
        // Wrapping: a state made by `remove` alone counts -1 (a running total's move).
        self.n_int = self.n_int.wrapping_add(o.n_int);
        self.n_float = self.n_float.wrapping_add(o.n_float);
    }
    /// The same sum as `o` (and the same kind: integer or not), whatever the counts of
    /// inputs behind either.
    pub(crate) fn same_sum(&self, o: &SumState) -> bool {
        self.int == o.int
            && self.hi == o.hi
            && self.lo == o.lo
            && self.huge.to_bits() == o.huge.to_bits()
            && self.huge_compensation.to_bits() == o.huge_compensation.to_bits()
            && (self.n_float == 0) == (o.n_float == 0)
    }
    /// Takes back a number [`SumState::add`] added: exact (the fixed-point parts of
    /// `-x` are those of `x` negated), so adding and removing the same values in any
    /// order leaves the state it started from (but for floats of 2^94 or more).
    pub(crate) fn remove(&mut self, v: &Value) {
        match *v {
            Value::I64(i) => {
                self.int = self.int.wrapping_sub(i128::from(i));
                self.n_int = self.n_int.wrapping_sub(1);
            }
            Value::F64(x) => {
                match split_fixed(x) {
                    Some((hi, lo)) => {
                        self.hi = self.hi.wrapping_sub(hi);
                        self.lo = self.lo.wrapping_sub(lo);
                    }
                    None => self.add_huge(-x),
                }
                self.n_float = self.n_float.wrapping_sub(1);
            }
            _ => {}
        }
    }
    fn n(&self) -> u64 {
        self.n_int + self.n_float
    }
    pub(crate) fn total(&self) -> f64 {
        // Carry the whole 2^-32 units out of `lo` so that `hi` holds all but a fraction
        // below 2^-32: then the float conversion of the sum is as precise as it can be.
        let hi = self.hi.wrapping_add(self.lo >> 63);
        let lo = self.lo & ((1i128 << 63) - 1);
        let fixed = (hi as f64) * 2f64.powi(-32) + (lo as f64) * 2f64.powi(-95);
        (self.int as f64) + fixed + (self.huge + self.huge_compensation)
    }
    /// The sum: an integer while every input was one, `None` with no input.
    pub fn sum_value(&self) -> Option<Value> {
        if self.n() == 0 {
            return None;
        }
        if self.n_float == 0
            && let Ok(i) = i64::try_from(self.int)
        {
            return Some(Value::I64(i));
        }
        Some(Value::F64(self.total()))
    }
}

/// Count, mean and sum of squared deviations (Welford), merged with Chan's formula.
#[derive(Clone, Copy, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    #[inline]
    fn add(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }
    fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        let (na, nb, nf) = (self.n as f64, o.n as f64, n as f64);
        self.mean += delta * nb / nf;
        self.m2 += o.m2 + delta * delta * na * nb / nf;
        self.n = n;
    }
    fn variance(&self) -> Option<f64> {
        (self.n >= 2).then(|| (self.m2 / (self.n - 1) as f64).max(0.0))
    }
}

/// A value with the event time and digest of the event it came from, ordered by
/// `(time, digest)` so that first/last do not depend on arrival order even for ties.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Stamped {
    time: EventTime,
    digest: u64,
    value: Value,
}

impl Stamped {
    fn order(&self) -> (EventTime, u64) {
        (self.time, self.digest)
    }
}

/// A total order on numbers for min/max: by numeric value, then (for integers beyond
/// 2^53 that round to the same float) exactly, then integers before floats.
fn num_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::I64(x), Value::I64(y)) => x.cmp(y),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.total_cmp(&y).then_with(|| {
                let tag = |v: &Value| u8::from(matches!(v, Value::F64(_)));
                tag(a).cmp(&tag(b))
            })
        }
    }
}

/// Per-window state of one aggregate.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum AggState {
    /// See [`AggKind::Count`].
    Count(u64),
    /// See [`AggKind::Sum`].
    Sum(SumState),
    /// See [`AggKind::Mean`].
    Mean(SumState),
    /// See [`AggKind::Min`].
    Min(Option<Value>),
    /// See [`AggKind::Max`].
    Max(Option<Value>),
    /// See [`AggKind::First`].
    First(Option<Stamped>),
    /// See [`AggKind::Last`].
    Last(Option<Stamped>),
    /// See [`AggKind::Variance`].
    Variance(Moments),
    /// See [`AggKind::Stddev`].
    Stddev(Moments),
    /// See [`AggKind::DistinctApprox`].
    Distinct(Box<Hll>),
    /// See [`AggKind::Quantile`].
    Quantile {
        /// Which quantile to report.
        q: f64,
        /// The sketch of all inputs.
        sketch: Box<DdSketch>,
    },
}

impl AggState {
    /// Adds one event's input: `value` is the event's value of the aggregate's field
    /// (`None` if it has none, or for `count(*)`), `time` and `digest` identify the event.
    /// Inputs of the wrong type for a numeric aggregate (a string for a mean) are not
    /// numbers and are skipped, like SQL skips NULL.
    #[inline]
    pub fn update(
        &mut self,
        value: Option<&Value>,
        counts_all: bool,
        time: EventTime,
        digest: u64,
    ) {
        match self {
            AggState::Count(n) => {
                if counts_all || value.is_some() {
                    *n += 1;
                }
            }
            AggState::Sum(s) | AggState::Mean(s) => {
                if let Some(v) = value {
                    s.add(v);
                }
            }
            AggState::Min(cur) => {
                if let Some(v) = value.filter(|v| v.as_f64().is_some())
                    && cur.as_ref().is_none_or(|c| num_cmp(v, c) == Ordering::Less)
                {
                    *cur = Some(v.clone());
                }
            }
            AggState::Max(cur) => {
                if let Some(v) = value.filter(|v| v.as_f64().is_some())
                    && cur
                        .as_ref()
                        .is_none_or(|c| num_cmp(v, c) == Ordering::Greater)
                {
                    *cur = Some(v.clone());
                }
            }
            AggState::First(cur) => {
                if let Some(v) = value
                    && cur.as_ref().is_none_or(|c| (time, digest) < c.order())
                {
                    *cur = Some(Stamped {
                        time,
                        digest,
                        value: v.clone(),
                    });
                }
            }
            AggState::Last(cur) => {
                if let Some(v) = value
                    && cur.as_ref().is_none_or(|c| (time, digest) > c.order())
                {
                    *cur = Some(Stamped {
                        time,
                        digest,
                        value: v.clone(),
                    });
                }
            }
            AggState::Variance(m) | AggState::Stddev(m) => {
                if let Some(x) = value.and_then(Value::as_f64) {
                    m.add(x);
                }
            }
            AggState::Distinct(h) => {
                if let Some(v) = value {
                    let mut buf = Vec::with_capacity(16);
                    v.stable_bytes(&mut buf);
                    h.insert_hash(xxhash_rust::xxh3::xxh3_64(&buf));
                }
            }
            AggState::Quantile { sketch, .. } => {
                if let Some(x) = value.and_then(Value::as_f64) {
                    sketch.insert(x);
                }
            }
        }
    }

    /// Merges another state of the same aggregate into this one. Associative and
    /// commutative, with the empty state as identity. Merging states of different
    /// kinds is a bug and reported as [`Error::Internal`].
    pub fn merge(&mut self, other: &AggState) -> Result<()> {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::Sum(a), AggState::Sum(b)) | (AggState::Mean(a), AggState::Mean(b)) => {
                a.merge(b)
            }
            (AggState::Min(a), AggState::Min(b)) => {
                if let Some(bv) = b
                    && a.as_ref()
                        .is_none_or(|av| num_cmp(bv, av) == Ordering::Less)
                {
                    *a = Some(bv.clone());
                }
            }
            (AggState::Max(a), AggState::Max(b)) => {
                if let Some(bv) = b
                    && a.as_ref()
                        .is_none_or(|av| num_cmp(bv, av) == Ordering::Greater)
                {
                    *a = Some(bv.clone());
                }
            }
            (AggState::First(a), AggState::First(b)) => {
                if let Some(bv) = b
                    && a.as_ref().is_none_or(|av| bv.order() < av.order())
                {
                    *a = Some(bv.clone());
                }
            }
            (AggState::Last(a), AggState::Last(b)) => {
                if let Some(bv) = b
                    && a.as_ref().is_none_or(|av| bv.order() > av.order())
                {
                    *a = Some(bv.clone());
                }
            }
            (AggState::Variance(a), AggState::Variance(b))
            | (AggState::Stddev(a), AggState::Stddev(b)) => a.merge(b),
            (AggState::Distinct(a), AggState::Distinct(b)) => a.merge(b),
            (AggState::Quantile { sketch: a, .. }, AggState::Quantile { sketch: b, .. }) => {
                // States of one aggregate share its accuracy; a mismatch is a bug.
                a.merge(b).map_err(|e| Error::Internal(e.to_string()))?
            }
            (a, b) => {
                return Err(Error::Internal(format!(
                    "merging aggregate states of different kinds: {a:?} and {b:?}"
                )));
            }
        }
        Ok(())
    }

    /// The aggregate's current value; `None` when it has no input.
    pub fn output(&self) -> Option<Value> {
        match self {
            AggState::Count(n) => Some(Value::I64(i64::try_from(*n).unwrap_or(i64::MAX))),
            AggState::Sum(s) => s.sum_value(),
            AggState::Mean(s) => (s.n() > 0).then(|| Value::F64(s.total() / s.n() as f64)),
            AggState::Min(v) | AggState::Max(v) => v.clone(),
            AggState::First(s) | AggState::Last(s) => s.as_ref().map(|s| s.value.clone()),
            AggState::Variance(m) => m.variance().map(Value::F64),
            AggState::Stddev(m) => m.variance().map(|v| Value::F64(v.sqrt())),
            AggState::Distinct(h) => {
                (!h.is_empty()).then(|| Value::I64(h.estimate().round() as i64))
            }
            AggState::Quantile { q, sketch } => sketch.quantile(*q).map(Value::F64),
        }
    }
}

/// Whether two aggregate outputs agree: exactly for integers, strings, booleans and
/// sketches, within a relative 1e-9 for floats (variances depend on rounding order; float
/// sums and means are exact, the tolerance only matters for an independent reference).
pub fn values_agree(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::F64(x)), Some(Value::F64(y))) => {
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300)
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_specs() -> Vec<AggregateSpec> {
        let kinds = [
            AggKind::Count,
            AggKind::Sum,
            AggKind::Mean,
            AggKind::Min,
            AggKind::Max,
            AggKind::First,
            AggKind::Last,
            AggKind::Variance,
            AggKind::Stddev,
            AggKind::DistinctApprox,
            AggKind::Quantile {
                q: 0.9,
                accuracy: 0.01,
            },
        ];
        let mut v: Vec<_> = kinds.iter().map(|k| AggregateSpec::new(*k, "x")).collect();
        v.push(AggregateSpec::count());
        v
    }

    fn state_of(spec: &AggregateSpec, inputs: &[(i64, Option<Value>)]) -> AggState {
        let mut s = spec.empty_state();
        for (t, v) in inputs {
            // Like an event's digest, type-tagged: `"s"` and `0` must not tie (they did
            // when strings hashed as 0.0, which made `first` depend on order).
            let digest = crate::event::mix64(
                *t as u64
                    ^ v.as_ref().map_or(0, |v| {
                        let mut bytes = Vec::new();
                        v.stable_bytes(&mut bytes);
                        xxhash_rust::xxh3::xxh3_64(&bytes)
                    }),
            );
            s.update(v.as_ref(), spec.field.is_none(), EventTime(*t), digest);
        }
        s
    }

    fn input() -> impl Strategy<Value = (i64, Option<Value>)> {
        let value = prop_oneof![
            (-1000i64..1000).prop_map(Value::I64),
            (-1e6f64..1e6).prop_map(|x| Value::F64(if x == 0.0 { 0.0 } else { x })),
            Just(Value::Str(Arc::from("s"))),
        ];
        (0i64..50, proptest::option::weighted(0.9, value))
    }

    fn agree(a: &AggState, b: &AggState) -> bool {
        values_agree(a.output().as_ref(), b.output().as_ref())
    }

    proptest! {
        /// Insertion order does not change the result; merge of any split equals the
        /// whole; the empty state is the identity; merge is commutative.
        #[test]
        fn merge_laws_hold_for_every_aggregate(
            inputs in proptest::collection::vec(input(), 0..60),
            split in 0usize..60,
            seed in any::<u64>(),
        ) {
            for spec in all_specs() {
                let whole = state_of(&spec, &inputs);
                let mut shuffled = inputs.clone();
                let mut r = seed;
                for i in (1..shuffled.len()).rev() {
                    r = crate::event::mix64(r.wrapping_add(i as u64));
                    shuffled.swap(i, (r % (i as u64 + 1)) as usize);
                }
                let reordered = state_of(&spec, &shuffled);
                prop_assert!(agree(&whole, &reordered), "{spec}: order changed {whole:?} vs {reordered:?}");

                let k = split.min(inputs.len());
                let (left, right) = (state_of(&spec, &inputs[..k]), state_of(&spec, &inputs[k..]));
                let mut lr = left.clone();
                lr.merge(&right).unwrap();
                let mut rl = right.clone();
                rl.merge(&left).unwrap();
                prop_assert!(agree(&lr, &whole), "{spec}: merge of split differs");
                prop_assert!(agree(&lr, &rl), "{spec}: merge not commutative");
                let mut id = whole.clone();
                id.merge(&spec.empty_state()).unwrap();
                prop_assert_eq!(&id, &whole, "{}: empty state is not the identity", spec);
            }
        }
    }

    #[test]
    fn outputs_match_hand_computed_values() {
        let inputs: Vec<(i64, Option<Value>)> = vec![
            (3, Some(Value::I64(4))),
            (1, Some(Value::F64(2.5))),
            (2, Some(Value::I64(-1))),
            (5, None),
            (4, Some(Value::Str(Arc::from("not a number")))),
        ];
        let out = |k: AggKind| state_of(&AggregateSpec::new(k, "x"), &inputs).output();
        assert_eq!(out(AggKind::Count), Some(Value::I64(4)));
        assert_eq!(
            state_of(&AggregateSpec::count(), &inputs).output(),
            Some(Value::I64(5))
        );
        assert_eq!(out(AggKind::Sum), Some(Value::F64(5.5)));
        assert_eq!(out(AggKind::Mean), Some(Value::F64(5.5 / 3.0)));
        assert_eq!(out(AggKind::Min), Some(Value::I64(-1)));
        assert_eq!(out(AggKind::Max), Some(Value::I64(4)));
        assert_eq!(out(AggKind::First), Some(Value::F64(2.5)));
        assert_eq!(
            out(AggKind::Last),
            Some(Value::Str(Arc::from("not a number")))
        );
        // Sample variance of 4, 2.5, -1: mean 11/6.
        let m = 5.5 / 3.0;
        let var =
            ((4.0 - m) * (4.0f64 - m) + (2.5 - m) * (2.5 - m) + (-1.0 - m) * (-1.0 - m)) / 2.0;
        match out(AggKind::Variance) {
            Some(Value::F64(v)) => assert!((v - var).abs() < 1e-12, "{v} vs {var}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(out(AggKind::DistinctApprox), Some(Value::I64(4)));
    }

    /// Regression: float sums that cancel to almost nothing differed in their rounding
    /// residue between arrival orders (1.10e-13 vs 1.14e-13), so a verify could flag a
    /// correct window. Sums are now the same bit for bit in any order.
    #[test]
    fn float_sums_are_identical_in_any_order_even_when_they_cancel() {
        let xs: Vec<f64> = (0..200)
            .map(|i| ((i * 7919 % 2001) as f64 - 1000.0) / 100.0)
            .collect();
        let mut with_neg = xs.clone();
        with_neg.extend(xs.iter().map(|x| -x));
        with_neg.push(0.1);
        with_neg.push(0.2);
        with_neg.push(-0.3);
        let sum = |v: &[f64]| {
            let mut st = SumState::default();
            v.iter().for_each(|&x| st.add_float(x));
            st
        };
        let forward = sum(&with_neg);
        let mut rev = with_neg.clone();
        rev.reverse();
        let mut shuffled = with_neg.clone();
        shuffled.sort_by_key(|x| x.to_bits() % 97);
        assert_eq!(forward.total().to_bits(), sum(&rev).total().to_bits());
        assert_eq!(forward.total().to_bits(), sum(&shuffled).total().to_bits());
        // Everything else cancels exactly; the binary values of 0.1 + 0.2 - 0.3 sum
        // exactly to 2^-55 (float arithmetic in this order gives 2^-54).
        assert_eq!(forward.total(), 2f64.powi(-55));
        // Split parts reproduce the value exactly across magnitudes.
        for x in [
            1.5e-13,
            123.45,
            -9.75e12,
            3.0e20,
            f64::MIN_POSITIVE,
            1e-300,
            -0.001,
        ] {
            let (hi, lo) = split_fixed(x).unwrap();
            let back = (hi as f64) * 2f64.powi(-32) + (lo as f64) * 2f64.powi(-95);
            let tol = 2f64.powi(-95) * 2.0;
            assert!((back - x).abs() <= tol.max(x.abs() * 1e-15), "{x}: {back}");
        }
        assert_eq!(split_fixed(2f64.powi(94)), None);
        assert!(split_fixed(2f64.powi(93)).is_some());
    }

    #[test]
    fn integer_sums_are_exact_and_stay_integers() {
        let big = i64::MAX / 2;
        let inputs: Vec<(i64, Option<Value>)> = vec![
            (0, Some(Value::I64(big))),
            (1, Some(Value::I64(big))),
            (2, Some(Value::I64(-big))),
        ];
        assert_eq!(
            state_of(&AggregateSpec::new(AggKind::Sum, "x"), &inputs).output(),
            Some(Value::I64(big))
        );
    }

    #[test]
    fn empty_inputs_give_no_value_except_count() {
        for spec in all_specs() {
            let out = spec.empty_state().output();
            if spec.kind == AggKind::Count {
                assert_eq!(out, Some(Value::I64(0)));
            } else {
                assert_eq!(out, None, "{spec}");
            }
        }
    }

    #[test]
    fn variance_needs_two_inputs() {
        let one = state_of(
            &AggregateSpec::new(AggKind::Variance, "x"),
            &[(0, Some(Value::F64(1.0)))],
        );
        assert_eq!(one.output(), None);
    }

    #[test]
    fn merging_different_kinds_is_an_internal_error() {
        let mut a = AggState::Count(1);
        let e = a.merge(&AggState::Min(None)).unwrap_err();
        assert!(e.to_string().contains("bug in reckon"), "{e}");
    }

    #[test]
    fn invalid_aggregates_are_named_in_the_error() {
        let mut a = AggregateSpec::new(
            AggKind::Quantile {
                q: 1.5,
                accuracy: 0.01,
            },
            "x",
        );
        let e = a.validate().unwrap_err();
        assert!(
            e.to_string()
                .contains("aggregate `p150_x`: quantile q must be in [0, 1]"),
            "{e}"
        );
        a.field = None;
        a.kind = AggKind::Mean;
        assert!(
            a.validate()
                .unwrap_err()
                .to_string()
                .contains("needs a field")
        );
    }
}
