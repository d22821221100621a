//! The expression language against an independent reference, by property tests.
//!
//! Random trees (well- and ill-typed) are rendered to text three ways: with the fewest
//! parentheses precedence allows, noisily (redundant parentheses, keyword case, `==`
//! and `<>`, odd whitespace, either quote style) and fully parenthesised in the
//! canonical spelling. Each text must load exactly when the reference type checker
//! below accepts the tree, must read back as that very tree (its canonical form), and
//! must evaluate on random events (fields present, missing, wrong-typed; key tags, some
//! with escapes) to what the naive tree-walking interpreter below computes. Nothing here
//! shares code with `reckon_core::expr`; the rules are restated from
//! `docs/expressions.md`.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failure

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reckon_core::expr::{Expr, Type};
use reckon_core::{Event, EventTime, Key, Value};
use std::cmp::Ordering;
use std::sync::Arc;

/// Field names: plain, dotted, needing backquotes, a keyword, a function name. `t`,
/// `u` and `odd name` are also key tags in some events.
const NAMES: [&str; 8] = ["a", "b", "x.y", "odd name", "NULL", "n_1", "t", "abs"];
const TAG_NAMES: [&str; 3] = ["t", "u", "odd name"];
const STRS: [&str; 8] = ["", "a", "b", "a,b", "x=y", "é", "it's", "back\\slash\""];

// ---------------------------------------------------------------------------------
// The tree

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum F {
    Abs,
    Min,
    Max,
    Coalesce,
}

#[derive(Clone, Debug, PartialEq)]
enum L {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

#[derive(Clone, Debug)]
enum E {
    /// A literal; numbers here are never negative (a minus is a `Neg`).
    Lit(L),
    Field(&'static str),
    Neg(Box<E>),
    Not(Box<E>),
    Bin(Bin, Box<E>, Box<E>),
    /// List literals may be negative.
    In(Box<E>, Vec<L>, bool),
    IsNull(Box<E>, bool),
    Call(F, Vec<E>),
}

fn num_lit() -> impl Strategy<Value = L> {
    prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(2),
            Just(3),
            Just(7),
            Just(i64::MAX),
            Just(1 << 62),
            Just(9_007_199_254_740_993),
        ]
        .prop_map(L::Int),
        prop_oneof![
            Just(0.0f64),
            Just(0.5),
            Just(1.0),
            Just(1.5),
            Just(2.5),
            Just(1e300),
            Just(1e-7),
            Just(9_223_372_036_854_775_808.0),
            (0.0f64..1e20),
            // `-0.0 >= 0.0`, so the sign bit is what must be clear.
            any::<f64>().prop_filter("finite, not negative", |x| x.is_finite()
                && x.is_sign_positive()),
        ]
        .prop_map(L::Float),
    ]
}

fn str_lit() -> impl Strategy<Value = L> {
    proptest::sample::select(&STRS[..]).prop_map(|s| L::Str(s.to_string()))
}

fn leaf() -> impl Strategy<Value = E> {
    prop_oneof![
        2 => num_lit().prop_map(E::Lit),
        1 => str_lit().prop_map(E::Lit),
        1 => any::<bool>().prop_map(|b| E::Lit(L::Bool(b))),
        1 => Just(E::Lit(L::Null)),
        6 => proptest::sample::select(&NAMES[..]).prop_map(E::Field),
    ]
}

/// A literal of an `in` list (may be negative).
fn list_lit() -> impl Strategy<Value = L> {
    prop_oneof![
        (-3i64..=3).prop_map(L::Int),
        Just(L::Int(i64::MIN)),
        prop_oneof![Just(-1.5f64), Just(-0.0), Just(0.5), Just(2.0)].prop_map(L::Float),
        Just(L::Null),
    ]
}

fn in_list() -> impl Strategy<Value = Vec<L>> {
    prop_oneof![
        // Numbers (and null), strings (and null), booleans, or anything mixed.
        3 => proptest::collection::vec(list_lit(), 1..4),
        2 => proptest::collection::vec(prop_oneof![3 => str_lit(), 1 => Just(L::Null)], 1..4),
        1 => proptest::collection::vec(any::<bool>().prop_map(L::Bool), 1..3),
        1 => proptest::collection::vec(
            prop_oneof![list_lit(), str_lit(), any::<bool>().prop_map(L::Bool)],
            1..4
        ),
    ]
}

fn bin_op() -> impl Strategy<Value = Bin> {
    proptest::sample::select(
        &[
            Bin::Add,
            Bin::Sub,
            Bin::Mul,
            Bin::Div,
            Bin::Rem,
            Bin::Eq,
            Bin::Ne,
            Bin::Lt,
            Bin::Le,
            Bin::Gt,
            Bin::Ge,
            Bin::And,
            Bin::Or,
        ][..],
    )
}

fn tree() -> impl Strategy<Value = E> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        let b = |e: E| Box::new(e);
        prop_oneof![
            2 => inner.clone().prop_map(move |x| E::Neg(b(x))),
            2 => inner.clone().prop_map(move |x| E::Not(b(x))),
            8 => (bin_op(), inner.clone(), inner.clone())
                .prop_map(move |(op, l, r)| E::Bin(op, b(l), b(r))),
            2 => (inner.clone(), in_list(), any::<bool>())
                .prop_map(move |(x, l, n)| E::In(b(x), l, n)),
            2 => (inner.clone(), any::<bool>()).prop_map(move |(x, n)| E::IsNull(b(x), n)),
            2 => (
                proptest::sample::select(&[F::Abs, F::Min, F::Max, F::Coalesce][..]),
                prop_oneof![
                    6 => proptest::collection::vec(inner.clone(), 1..2),
                    3 => proptest::collection::vec(inner.clone(), 2..4),
                    1 => Just(Vec::new()),
                ]
            )
                .prop_map(|(f, args)| E::Call(f, args)),
        ]
    })
}

// ---------------------------------------------------------------------------------
// Rendering

const KEYWORDS: [&str; 8] = ["and", "or", "not", "in", "is", "null", "true", "false"];

fn name_text(name: &str) -> String {
    let mut cs = name.chars();
    let plain = cs.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && cs.all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        && !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(name));
    if plain {
        return name.to_string();
    }
    let mut out = String::from("`");
    for c in name.chars() {
        if c == '`' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// A tiny deterministic generator for rendering choices.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Minimal,
    Noisy,
    Canonical,
}

struct Renderer {
    style: Style,
    noise: Noise,
}

impl Renderer {
    fn kw(&mut self, word: &str) -> String {
        if self.style != Style::Noisy {
            return word.to_string();
        }
        match self.noise.next() % 3 {
            0 => word.to_uppercase(),
            1 => {
                let mut c = word.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
            _ => word.to_string(),
        }
    }

    fn space(&mut self) -> &'static str {
        if self.style == Style::Noisy {
            ["  ", "\n", "\t", " "][(self.noise.next() % 4) as usize]
        } else {
            " "
        }
    }

    fn lit(&mut self, l: &L) -> String {
        match l {
            L::Null => self.kw("null"),
            L::Int(i) => i.to_string(),
            L::Float(x) => format!("{x:?}"),
            L::Bool(b) => self.kw(if *b { "true" } else { "false" }),
            L::Str(s) => {
                let double = self.style == Style::Noisy && self.noise.one_in(2);
                let q = if double { '"' } else { '\'' };
                let mut out = String::from(q);
                for c in s.chars() {
                    if c == q
                        || c == '\\'
                        || (self.style == Style::Noisy && c == '\'' && self.noise.one_in(2))
                    {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push(q);
                out
            }
        }
    }

    fn bin_text(&mut self, op: Bin) -> String {
        let noisy = self.style == Style::Noisy;
        match op {
            Bin::Add => "+".into(),
            Bin::Sub => "-".into(),
            Bin::Mul => "*".into(),
            Bin::Div => "/".into(),
            Bin::Rem => "%".into(),
            Bin::Eq if noisy && self.noise.one_in(2) => "==".into(),
            Bin::Eq => "=".into(),
            Bin::Ne if noisy && self.noise.one_in(2) => "<>".into(),
            Bin::Ne => "!=".into(),
            Bin::Lt => "<".into(),
            Bin::Le => "<=".into(),
            Bin::Gt => ">".into(),
            Bin::Ge => ">=".into(),
            Bin::And => self.kw("and"),
            Bin::Or => self.kw("or"),
        }
    }

    /// The node's text; in minimal and noisy styles `min` is the least precedence
    /// level the context accepts without parentheses.
    fn render(&mut self, e: &E, min: u8) -> String {
        let (level, text) = self.bare(e);
        let wrap = match self.style {
            Style::Canonical => false,
            Style::Minimal => level < min,
            Style::Noisy => level < min || self.noise.one_in(5),
        };
        if wrap { format!("({text})") } else { text }
    }

    /// The node's precedence level and its text without outer parentheses (in the
    /// canonical style, compound nodes carry their own).
    fn bare(&mut self, e: &E) -> (u8, String) {
        let canon = self.style == Style::Canonical;
        match e {
            E::Lit(l) => (8, self.lit(l)),
            E::Field(n) => (8, name_text(n)),
            E::Neg(x) => {
                let inner = self.render(x, 7);
                let sep = if inner.starts_with('-') { " " } else { "" };
                if canon {
                    (8, format!("(-{inner})"))
                } else {
                    (7, format!("-{sep}{inner}"))
                }
            }
            E::Not(x) => {
                let inner = self.render(x, 3);
                let kw = self.kw("not");
                let sp = self.space();
                if canon {
                    (8, format!("(not {inner})"))
                } else {
                    (3, format!("{kw}{sp}{inner}"))
                }
            }
            E::Bin(op, l, r) => {
                let (level, lmin, rmin) = match op {
                    Bin::Or => (1, 1, 2),
                    Bin::And => (2, 2, 3),
                    Bin::Eq | Bin::Ne | Bin::Lt | Bin::Le | Bin::Gt | Bin::Ge => (4, 5, 5),
                    Bin::Add | Bin::Sub => (5, 5, 6),
                    Bin::Mul | Bin::Div | Bin::Rem => (6, 6, 7),
                };
                let lt = self.render(l, lmin);
                let ot = self.bin_text(*op);
                let (s1, s2) = (self.space(), self.space());
                let rt = self.render(r, rmin);
                if canon {
                    (8, format!("({lt} {ot} {rt})"))
                } else {
                    (level, format!("{lt}{s1}{ot}{s2}{rt}"))
                }
            }
            E::In(x, list, negated) => {
                let xt = self.render(x, 5);
                let not = if *negated {
                    format!("{} ", self.kw("not"))
                } else {
                    String::new()
                };
                let inw = self.kw("in");
                let items: Vec<String> = list.iter().map(|l| self.lit(l)).collect();
                let text = format!("{xt} {not}{inw} ({})", items.join(", "));
                if canon {
                    (8, format!("({text})"))
                } else {
                    (4, text)
                }
            }
            E::IsNull(x, negated) => {
                let xt = self.render(x, 5);
                let is = self.kw("is");
                let not = if *negated {
                    format!("{} ", self.kw("not"))
                } else {
                    String::new()
                };
                let null = self.kw("null");
                let text = format!("{xt} {is} {not}{null}");
                if canon {
                    (8, format!("({text})"))
                } else {
                    (4, text)
                }
            }
            E::Call(f, args) => {
                let name = match f {
                    F::Abs => "abs",
                    F::Min => "min",
                    F::Max => "max",
                    F::Coalesce => "coalesce",
                };
                let name = self.kw(name);
                let items: Vec<String> = args.iter().map(|a| self.render(a, 1)).collect();
                (8, format!("{name}({})", items.join(", ")))
            }
        }
    }
}

fn render(e: &E, style: Style, seed: u64) -> String {
    Renderer {
        style,
        noise: Noise(seed),
    }
    .render(e, 1)
}

// ---------------------------------------------------------------------------------
// The reference type checker

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Num,
    Str,
    Bool,
    Unk,
}

fn lit_ty(l: &L) -> Ty {
    match l {
        L::Null => Ty::Unk,
        L::Int(_) | L::Float(_) => Ty::Num,
        L::Bool(_) => Ty::Bool,
        L::Str(_) => Ty::Str,
    }
}

/// `Some(type)` when the tree is well typed.
fn type_of(e: &E) -> Option<Ty> {
    let fits = |t: Ty, want: Ty| t == want || t == Ty::Unk;
    let clash = |a: Ty, b: Ty| a != Ty::Unk && b != Ty::Unk && a != b;
    Some(match e {
        E::Lit(l) => lit_ty(l),
        E::Field(_) => Ty::Unk,
        E::Neg(x) => fits(type_of(x)?, Ty::Num).then_some(Ty::Num)?,
        E::Not(x) => fits(type_of(x)?, Ty::Bool).then_some(Ty::Bool)?,
        E::Bin(op, l, r) => {
            let (a, b) = (type_of(l)?, type_of(r)?);
            match op {
                Bin::Add | Bin::Sub | Bin::Mul | Bin::Div | Bin::Rem => {
                    (fits(a, Ty::Num) && fits(b, Ty::Num)).then_some(Ty::Num)?
                }
                Bin::And | Bin::Or => {
                    (fits(a, Ty::Bool) && fits(b, Ty::Bool)).then_some(Ty::Bool)?
                }
                Bin::Eq | Bin::Ne => (!clash(a, b)).then_some(Ty::Bool)?,
                _ => (!clash(a, b) && a != Ty::Bool && b != Ty::Bool).then_some(Ty::Bool)?,
            }
        }
        E::In(x, list, _) => {
            let xt = type_of(x)?;
            let known: Vec<Ty> = list.iter().map(lit_ty).filter(|t| *t != Ty::Unk).collect();
            if known.windows(2).any(|w| w[0] != w[1]) {
                return None;
            }
            if let Some(&lt) = known.first()
                && clash(xt, lt)
            {
                return None;
            }
            Ty::Bool
        }
        E::IsNull(x, _) => {
            type_of(x)?;
            Ty::Bool
        }
        E::Call(f, args) => {
            let tys: Vec<Ty> = args.iter().map(type_of).collect::<Option<_>>()?;
            match f {
                F::Abs => (tys.len() == 1 && fits(tys[0], Ty::Num)).then_some(Ty::Num)?,
                F::Min | F::Max => {
                    (!tys.is_empty() && tys.iter().all(|t| fits(*t, Ty::Num))).then_some(Ty::Num)?
                }
                F::Coalesce => {
                    let known: Vec<Ty> = tys.iter().copied().filter(|t| *t != Ty::Unk).collect();
                    if tys.is_empty() || known.windows(2).any(|w| w[0] != w[1]) {
                        return None;
                    }
                    known.first().copied().unwrap_or(Ty::Unk)
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------
// The reference evaluator

#[derive(Clone, Debug, PartialEq)]
enum V {
    Null,
    I(i64),
    F(f64),
    B(bool),
    S(String),
}

#[derive(Clone, Debug)]
struct Ev {
    fields: Vec<(&'static str, Value)>,
    tags: Vec<(&'static str, String)>,
}

impl Ev {
    fn event(&self) -> Event {
        Event {
            stream: "s".into(),
            key: Key::from_tags(self.tags.iter().map(|(k, v)| (*k, v.as_str()))).unwrap(),
            time: EventTime(0),
            id: None,
            fields: self
                .fields
                .iter()
                .map(|(n, v)| (Arc::from(*n), v.clone()))
                .collect(),
        }
    }
}

/// `i` against `x` exactly, through 128-bit integers.
fn cmp_i_f(i: i64, x: f64) -> Ordering {
    let i = i128::from(i);
    if x.fract() == 0.0 {
        if x.abs() < 1e38 {
            i.cmp(&(x as i128))
        } else if x > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    } else if i <= x.floor() as i128 {
        // A float with a fraction is below 2^53 in size, so its floor is exact.
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn num_cmp(a: &V, b: &V) -> Option<Ordering> {
    match (a, b) {
        (V::I(x), V::I(y)) => Some(x.cmp(y)),
        (V::F(x), V::F(y)) => x.partial_cmp(y),
        (V::I(x), V::F(y)) => Some(cmp_i_f(*x, *y)),
        (V::F(x), V::I(y)) => Some(cmp_i_f(*y, *x).reverse()),
        _ => None,
    }
}

fn value_cmp(a: &V, b: &V) -> Option<Ordering> {
    match (a, b) {
        (V::S(x), V::S(y)) => Some(x.cmp(y)),
        (V::B(x), V::B(y)) => Some(x.cmp(y)),
        _ => num_cmp(a, b),
    }
}

fn float(x: f64) -> V {
    if x.is_finite() { V::F(x) } else { V::Null }
}

fn as_f(v: &V) -> Option<f64> {
    match v {
        V::I(i) => Some(*i as f64),
        V::F(x) => Some(*x),
        _ => None,
    }
}

fn truth(v: &V) -> Option<bool> {
    match v {
        V::B(b) => Some(*b),
        _ => None,
    }
}

fn of_lit(l: &L) -> V {
    match l {
        L::Null => V::Null,
        L::Int(i) => V::I(*i),
        L::Float(x) => V::F(*x),
        L::Bool(b) => V::B(*b),
        L::Str(s) => V::S(s.clone()),
    }
}

fn has_ty(v: &V, t: Ty) -> bool {
    matches!(
        (v, t),
        (_, Ty::Unk) | (V::I(_) | V::F(_), Ty::Num) | (V::S(_), Ty::Str) | (V::B(_), Ty::Bool)
    )
}

fn eval(e: &E, ev: &Ev) -> V {
    match e {
        E::Lit(l) => of_lit(l),
        E::Field(n) => {
            if let Some((_, v)) = ev.fields.iter().find(|(f, _)| f == n) {
                return match v {
                    Value::I64(i) => V::I(*i),
                    Value::F64(x) => V::F(*x),
                    Value::Bool(b) => V::B(*b),
                    Value::Str(s) => V::S(s.to_string()),
                };
            }
            match ev.tags.iter().find(|(t, _)| t == n) {
                Some((_, v)) => V::S(v.clone()),
                None => V::Null,
            }
        }
        E::Neg(x) => match eval(x, ev) {
            V::I(i) => i.checked_neg().map_or(V::Null, V::I),
            V::F(x) => V::F(-x),
            _ => V::Null,
        },
        E::Not(x) => match eval(x, ev) {
            V::B(b) => V::B(!b),
            _ => V::Null,
        },
        E::Bin(op, l, r) => {
            let (a, b) = (eval(l, ev), eval(r, ev));
            match op {
                Bin::And => match (truth(&a), truth(&b)) {
                    (Some(false), _) | (_, Some(false)) => V::B(false),
                    (Some(true), Some(true)) => V::B(true),
                    _ => V::Null,
                },
                Bin::Or => match (truth(&a), truth(&b)) {
                    (Some(true), _) | (_, Some(true)) => V::B(true),
                    (Some(false), Some(false)) => V::B(false),
                    _ => V::Null,
                },
                Bin::Eq | Bin::Ne | Bin::Lt | Bin::Le | Bin::Gt | Bin::Ge => {
                    let ordering = !matches!(op, Bin::Eq | Bin::Ne);
                    if ordering && matches!(a, V::B(_)) {
                        return V::Null;
                    }
                    match value_cmp(&a, &b) {
                        None => V::Null,
                        Some(o) => V::B(match op {
                            Bin::Eq => o == Ordering::Equal,
                            Bin::Ne => o != Ordering::Equal,
                            Bin::Lt => o == Ordering::Less,
                            Bin::Le => o != Ordering::Greater,
                            Bin::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        }),
                    }
                }
                _ => match (&a, &b) {
                    (V::I(x), V::I(y)) => {
                        let r = match op {
                            Bin::Add => x.checked_add(*y),
                            Bin::Sub => x.checked_sub(*y),
                            Bin::Mul => x.checked_mul(*y),
                            Bin::Rem => x.checked_rem(*y),
                            _ => {
                                return if *y == 0 {
                                    V::Null
                                } else {
                                    float(*x as f64 / *y as f64)
                                };
                            }
                        };
                        r.map_or(V::Null, V::I)
                    }
                    _ => match (as_f(&a), as_f(&b)) {
                        (Some(x), Some(y)) => match op {
                            Bin::Add => float(x + y),
                            Bin::Sub => float(x - y),
                            Bin::Mul => float(x * y),
                            _ if y == 0.0 => V::Null,
                            Bin::Div => float(x / y),
                            _ => float(x % y),
                        },
                        _ => V::Null,
                    },
                },
            }
        }
        E::In(x, list, negated) => {
            let xv = eval(x, ev);
            if xv == V::Null {
                return V::Null;
            }
            let items: Vec<V> = list.iter().map(of_lit).filter(|v| *v != V::Null).collect();
            let has_null = items.len() < list.len();
            let same_kind: Vec<&V> = items
                .iter()
                .filter(|v| value_cmp(&xv, v).is_some())
                .collect();
            let r = if same_kind
                .iter()
                .any(|v| value_cmp(&xv, v) == Some(Ordering::Equal))
            {
                V::B(true)
            } else if same_kind.is_empty() || has_null {
                V::Null
            } else {
                V::B(false)
            };
            match (r, negated) {
                (V::B(b), true) => V::B(!b),
                (r, _) => r,
            }
        }
        E::IsNull(x, negated) => V::B((eval(x, ev) == V::Null) != *negated),
        E::Call(f, args) => {
            let vals: Vec<V> = args.iter().map(|a| eval(a, ev)).collect();
            match f {
                F::Abs => match &vals[0] {
                    V::I(i) => i.checked_abs().map_or(V::Null, V::I),
                    V::F(x) => V::F(x.abs()),
                    _ => V::Null,
                },
                F::Min | F::Max => {
                    let want = if *f == F::Min {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    };
                    let mut best = V::Null;
                    for v in vals {
                        match v {
                            V::Null => {}
                            V::I(_) | V::F(_) => {
                                if best == V::Null || num_cmp(&v, &best) == Some(want) {
                                    best = v;
                                }
                            }
                            _ => return V::Null,
                        }
                    }
                    best
                }
                F::Coalesce => {
                    let ty = type_of(e).unwrap_or(Ty::Unk);
                    vals.into_iter()
                        .find(|v| *v != V::Null && has_ty(v, ty))
                        .unwrap_or(V::Null)
                }
            }
        }
    }
}

fn to_value(v: V) -> Option<Value> {
    match v {
        V::Null => None,
        V::I(i) => Some(Value::I64(i)),
        V::F(x) => Some(Value::F64(x)),
        V::B(b) => Some(Value::Bool(b)),
        V::S(s) => Some(Value::Str(Arc::from(s))),
    }
}

fn fields_in_order(e: &E, out: &mut Vec<&'static str>) {
    match e {
        E::Lit(_) => {}
        E::Field(n) => {
            if !out.contains(n) {
                out.push(n);
            }
        }
        E::Neg(x) | E::Not(x) | E::In(x, _, _) | E::IsNull(x, _) => fields_in_order(x, out),
        E::Bin(_, l, r) => {
            fields_in_order(l, out);
            fields_in_order(r, out);
        }
        E::Call(_, args) => args.iter().for_each(|a| fields_in_order(a, out)),
    }
}

// ---------------------------------------------------------------------------------
// Events

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop_oneof![(-3i64..=3), Just(i64::MAX), Just(i64::MIN), Just(1 << 62)].prop_map(Value::I64),
        3 => prop_oneof![
            Just(-1.5f64), Just(0.0), Just(0.5), Just(1.0), Just(2.0), Just(3.0),
            Just(1e300), Just(-1e300), Just(9_223_372_036_854_775_808.0), -10.0f64..10.0
        ]
        .prop_map(Value::F64),
        2 => proptest::sample::select(&STRS[..]).prop_map(|s| Value::Str(Arc::from(s))),
        1 => any::<bool>().prop_map(Value::Bool),
    ]
}

fn event() -> impl Strategy<Value = Ev> {
    (
        proptest::collection::vec(proptest::option::weighted(0.7, value()), NAMES.len()),
        proptest::collection::vec(
            proptest::option::weighted(0.6, proptest::sample::select(&STRS[..])),
            TAG_NAMES.len(),
        ),
    )
        .prop_map(|(fields, tags)| Ev {
            fields: NAMES
                .iter()
                .zip(fields)
                .filter_map(|(n, v)| v.map(|v| (*n, v)))
                .collect(),
            tags: TAG_NAMES
                .iter()
                .zip(tags)
                .filter_map(|(n, v)| v.map(|v| (*n, v.to_string())))
                .collect(),
        })
}

// ---------------------------------------------------------------------------------
// Properties

fn same_type(ours: Type, theirs: Ty) -> bool {
    matches!(
        (ours, theirs),
        (Type::Num, Ty::Num)
            | (Type::Str, Ty::Str)
            | (Type::Bool, Ty::Bool)
            | (Type::Unknown, Ty::Unk)
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    /// Loads exactly the well-typed trees, reads each as the tree it was rendered from,
    /// and evaluates it as the reference does.
    #[test]
    fn expressions_match_the_reference(
        e in tree(),
        events in proptest::collection::vec(event(), 6),
        seed in any::<u64>(),
    ) {
        let want_ty = type_of(&e);
        let canonical = render(&e, Style::Canonical, 0);
        for text in [render(&e, Style::Minimal, 0), render(&e, Style::Noisy, seed), canonical.clone()] {
            let parsed = Expr::parse(&text);
            match (&parsed, want_ty) {
                (Ok(x), None) => prop_assert!(false, "{text:?} loaded ({}) but is ill-typed", x.canonical()),
                (Err(err), Some(t)) => prop_assert!(false, "{text:?} ({t:?}) refused: {err}"),
                (Err(err), None) => prop_assert!(err.pos <= text.len(), "{text:?}: {err}"),
                (Ok(x), Some(t)) => {
                    prop_assert_eq!(x.canonical(), canonical.clone(), "{:?}", text);
                    prop_assert!(same_type(x.ty(), t), "{text:?}: {:?} vs {t:?}", x.ty());
                    let mut names = Vec::new();
                    fields_in_order(&e, &mut names);
                    let got: Vec<&str> = x.fields().iter().map(|f| &**f).collect();
                    prop_assert_eq!(got, names);
                    for ev in &events {
                        let want = to_value(eval(&e, ev));
                        let event = ev.event();
                        prop_assert_eq!(x.eval(&event), want.clone(), "{:?} on {:?}", text, ev);
                        prop_assert_eq!(x.eval_filter(&event), want == Some(Value::Bool(true)));
                    }
                }
            }
        }
    }
}

/// Numbers where rounding an integer to a float would change the answer (around 2^53
/// and 2^63), ties between an integer and an equal float, signed zeros, extremes.
fn hard_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(
            &[
                0i64,
                1,
                -1,
                3,
                i64::MAX,
                i64::MIN,
                i64::MIN + 1,
                1 << 53,
                (1 << 53) + 1,
                -(1 << 53) - 1,
            ][..]
        )
        .prop_map(Value::I64),
        proptest::sample::select(
            &[
                0.0f64,
                -0.0,
                1.0,
                -1.0,
                3.0,
                0.5,
                9_223_372_036_854_775_808.0,
                -9_223_372_036_854_775_808.0,
                9_007_199_254_740_992.0,
                9_007_199_254_740_994.0,
                -9_007_199_254_740_992.0,
                1e300,
            ][..]
        )
        .prop_map(Value::F64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    /// Mixed integer/float arithmetic, comparisons and `min`/`max` ties on the numbers
    /// where a sloppy implementation goes wrong.
    #[test]
    fn numbers_mix_exactly(a in hard_number(), b in hard_number(), c in hard_number()) {
        let f = |n| Box::new(E::Field(n));
        let bin = |op, l, r| E::Bin(op, l, r);
        let trees = [
            bin(Bin::Lt, f("a"), f("b")),
            bin(Bin::Le, f("a"), f("b")),
            bin(Bin::Eq, f("a"), f("b")),
            bin(Bin::Ne, f("b"), f("a")),
            bin(Bin::Gt, f("a"), f("b")),
            bin(Bin::Ge, f("b"), f("a")),
            bin(Bin::Add, f("a"), f("b")),
            bin(Bin::Sub, f("a"), f("b")),
            bin(Bin::Mul, f("a"), f("b")),
            bin(Bin::Div, f("a"), f("b")),
            bin(Bin::Rem, f("a"), f("b")),
            E::Neg(f("a")),
            E::Call(F::Abs, vec![E::Field("a")]),
            E::Call(F::Min, vec![E::Field("a"), E::Field("b")]),
            E::Call(F::Max, vec![E::Field("a"), E::Field("b"), E::Field("n_1")]),
            E::In(f("a"), vec![L::Int(1), L::Float(9_007_199_254_740_992.0), L::Int(i64::MIN)], false),
        ];
        let ev = Ev { fields: vec![("a", a), ("b", b), ("n_1", c)], tags: vec![] };
        let event = ev.event();
        for e in &trees {
            let text = render(e, Style::Minimal, 0);
            let x = Expr::parse(&text).unwrap();
            prop_assert_eq!(x.eval(&event), to_value(eval(e, &ev)), "{} on {:?}", text, ev);
        }
    }
}

/// The generator is worth something only if it makes both kinds of tree often, and
/// trees whose values are not all null.
#[test]
fn the_generator_makes_well_and_ill_typed_trees() {
    let mut runner = TestRunner::deterministic();
    let (mut good, mut bad, mut non_null, n) = (0, 0, 0, 2000);
    let ev = event();
    for _ in 0..n {
        let e = tree().new_tree(&mut runner).unwrap().current();
        let x = ev.new_tree(&mut runner).unwrap().current();
        match type_of(&e) {
            Some(_) => {
                good += 1;
                if eval(&e, &x) != V::Null {
                    non_null += 1;
                }
            }
            None => bad += 1,
        }
    }
    assert!(good * 4 > n, "well-typed: {good} of {n}");
    assert!(bad * 4 > n, "ill-typed: {bad} of {n}");
    assert!(
        non_null * 3 > good,
        "non-null results: {non_null} of {good}"
    );
}

#[test]
fn the_reference_agrees_with_hand_worked_cases() {
    // Guards the reference itself against a shared misreading of the rules.
    let ev = Ev {
        fields: vec![("a", Value::I64(7)), ("b", Value::F64(0.5))],
        tags: vec![("t", "x,y".into())],
    };
    let f = |n| Box::new(E::Field(n));
    let lit = |l| Box::new(E::Lit(l));
    assert_eq!(
        eval(&E::Bin(Bin::Div, f("a"), lit(L::Int(2))), &ev),
        V::F(3.5)
    );
    assert_eq!(
        eval(
            &E::Bin(Bin::And, lit(L::Bool(false)), f("missing_not_in_names")),
            &ev
        ),
        V::B(false)
    );
    assert_eq!(
        eval(&E::Bin(Bin::Eq, f("t"), lit(L::Str("x,y".into()))), &ev),
        V::B(true)
    );
    assert_eq!(
        eval(&E::Bin(Bin::Lt, f("a"), lit(L::Float(7.5))), &ev),
        V::B(true)
    );
    assert_eq!(
        cmp_i_f(i64::MAX, 9_223_372_036_854_775_808.0),
        Ordering::Less
    );
    assert_eq!(
        render(&E::Neg(Box::new(E::Neg(f("a")))), Style::Minimal, 0),
        "- -a"
    );
    assert_eq!(
        render(
            &E::Bin(
                Bin::Sub,
                f("a"),
                Box::new(E::Bin(Bin::Sub, f("b"), f("odd name")))
            ),
            Style::Minimal,
            0
        ),
        "a - (b - `odd name`)"
    );
}
