//! The compiled form of an expression and its evaluator.
//!
//! A checked tree is flattened into a postfix program (a `Vec<Op>`) that runs on a
//! small fixed-size stack of [`Val`]s, which borrow strings from the event, its key or
//! the program. Evaluating an event therefore never allocates; `and`/`or` jump over
//! their right side when the left side already decides the result.

use super::Type;
use super::syntax::{ArithOp, CmpOp, Func, Kind, Lit, Node};
use crate::event::{Event, FieldName, TagValue, Value};
use std::cmp::Ordering;
use std::sync::Arc;

/// The most values a program may need on its stack at once.
pub(super) const MAX_STACK: usize = 256;

/// Where a binary operator takes an operand from: reading a field or a literal
/// directly saves pushing it first, which is most of the work in `value > threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Operand {
    /// Popped from the stack.
    Stack,
    /// The field with this index in [`Program::fields`].
    Field(u32),
    /// The literal with this index in [`Program::consts`].
    Const(u32),
}

#[derive(Clone, Debug, PartialEq)]
enum Op {
    /// Pushes the literal with this index in [`Program::consts`].
    Const(u32),
    /// Pushes the field with this index in [`Program::fields`].
    Field(u32),
    Neg,
    Not,
    Arith(ArithOp, Operand, Operand),
    Cmp(CmpOp, Operand, Operand),
    /// If the top is `false`, jump to the target (the `and` is false).
    AndJump(u32),
    /// If the top is `true`, jump to the target (the `or` is true).
    OrJump(u32),
    And,
    Or,
    In {
        /// The list is `lists[start..start + len]`.
        start: u32,
        len: u32,
        negated: bool,
    },
    IsNull {
        negated: bool,
    },
    Abs,
    Min(u32),
    Max(u32),
    /// The first of `n` values that is not null and has type `ty` (any, if unknown).
    Coalesce {
        n: u32,
        ty: Type,
    },
}

/// A compiled expression.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Program {
    ops: Vec<Op>,
    /// The literals outside `in` lists.
    consts: Vec<Lit>,
    /// The literals of every `in` list, one after the other.
    lists: Vec<Lit>,
    /// The distinct fields read, in order of first use.
    pub(super) fields: Vec<FieldName>,
    /// The most values on the stack at once.
    depth: usize,
}

/// Flattens a checked tree; `Err` with the stack depth it would need when that exceeds
/// [`MAX_STACK`].
pub(super) fn compile(node: &Node) -> Result<Program, usize> {
    let mut c = Compiler {
        prog: Program {
            ops: Vec::new(),
            consts: Vec::new(),
            lists: Vec::new(),
            fields: Vec::new(),
            depth: 0,
        },
        height: 0,
    };
    c.emit(node);
    if c.prog.depth > MAX_STACK {
        return Err(c.prog.depth);
    }
    Ok(c.prog)
}

struct Compiler {
    prog: Program,
    height: usize,
}

impl Compiler {
    fn push(&mut self, op: Op, pops: usize, pushes: usize) {
        self.prog.ops.push(op);
        self.height = self.height - pops + pushes;
        self.prog.depth = self.prog.depth.max(self.height);
    }

    fn jump_target(&self) -> u32 {
        u32::try_from(self.prog.ops.len()).unwrap_or(u32::MAX)
    }

    fn field(&mut self, name: &FieldName) -> u32 {
        let fields = &mut self.prog.fields;
        let i = match fields.iter().position(|f| f == name) {
            Some(i) => i,
            None => {
                fields.push(name.clone());
                fields.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(u32::MAX)
    }

    fn constant(&mut self, l: &Lit) -> u32 {
        self.prog.consts.push(l.clone());
        u32::try_from(self.prog.consts.len() - 1).unwrap_or(u32::MAX)
    }

    /// A field or literal operand is read in place; anything else is emitted and
    /// taken from the stack.
    fn operand(&mut self, node: &Node) -> Operand {
        match &node.kind {
            Kind::Field(name) => Operand::Field(self.field(name)),
            Kind::Lit(l) => Operand::Const(self.constant(l)),
            _ => {
                self.emit(node);
                Operand::Stack
            }
        }
    }

    fn binary(&mut self, l: &Node, r: &Node, op: impl FnOnce(Operand, Operand) -> Op) {
        let (lo, ro) = (self.operand(l), self.operand(r));
        let pops = usize::from(lo == Operand::Stack) + usize::from(ro == Operand::Stack);
        self.push(op(lo, ro), pops, 1);
    }

    fn emit(&mut self, node: &Node) {
        match &node.kind {
            Kind::Lit(l) => {
                let i = self.constant(l);
                self.push(Op::Const(i), 0, 1);
            }
            Kind::Field(name) => {
                let i = self.field(name);
                self.push(Op::Field(i), 0, 1);
            }
            Kind::Neg(x) => {
                self.emit(x);
                self.push(Op::Neg, 1, 1);
            }
            Kind::Not(x) => {
                self.emit(x);
                self.push(Op::Not, 1, 1);
            }
            Kind::Arith(op, l, r) => self.binary(l, r, |a, b| Op::Arith(*op, a, b)),
            Kind::Cmp(op, l, r) => self.binary(l, r, |a, b| Op::Cmp(*op, a, b)),
            Kind::And(l, r) | Kind::Or(l, r) => {
                let is_and = matches!(node.kind, Kind::And(..));
                self.emit(l);
                let jump = self.prog.ops.len();
                self.push(Op::AndJump(0), 0, 0);
                self.emit(r);
                self.push(if is_and { Op::And } else { Op::Or }, 2, 1);
                let target = self.jump_target();
                self.prog.ops[jump] = if is_and {
                    Op::AndJump(target)
                } else {
                    Op::OrJump(target)
                };
            }
            Kind::In { x, list, negated } => {
                self.emit(x);
                let start = u32::try_from(self.prog.lists.len()).unwrap_or(u32::MAX);
                self.prog.lists.extend(list.iter().map(|(l, _)| l.clone()));
                let len = u32::try_from(list.len()).unwrap_or(u32::MAX);
                self.push(
                    Op::In {
                        start,
                        len,
                        negated: *negated,
                    },
                    1,
                    1,
                );
            }
            Kind::IsNull { x, negated } => {
                self.emit(x);
                self.push(Op::IsNull { negated: *negated }, 1, 1);
            }
            Kind::Call(func, args) => {
                for arg in args {
                    self.emit(arg);
                }
                let n = args.len();
                let n32 = u32::try_from(n).unwrap_or(u32::MAX);
                let op = match func {
                    Func::Abs => Op::Abs,
                    Func::Min => Op::Min(n32),
                    Func::Max => Op::Max(n32),
                    Func::Coalesce => {
                        // The checker passed it, so the call's type is the known type
                        // of its arguments, if any has one.
                        let ty = args
                            .iter()
                            .find_map(|a| match super::syntax::check(a) {
                                Ok(Type::Unknown) | Err(_) => None,
                                Ok(t) => Some(t),
                            })
                            .unwrap_or(Type::Unknown);
                        Op::Coalesce { n: n32, ty }
                    }
                };
                self.push(op, n, 1);
            }
        }
    }
}

/// A string borrowed from the program, an event field or a key tag.
#[derive(Clone, Copy, Debug)]
pub(super) enum Text<'a> {
    /// A literal or a field's value: becomes a `Value` by cloning the `Arc`.
    Shared(&'a Arc<str>),
    /// A tag value without escapes.
    Plain(&'a str),
    /// A tag value with escapes, unescaped as it is read.
    Escaped(TagValue<'a>),
}

impl Text<'_> {
    fn plain(&self) -> Option<&str> {
        match self {
            Text::Shared(s) => Some(s),
            Text::Plain(s) => Some(s),
            Text::Escaped(_) => None,
        }
    }

    fn cmp(&self, other: &Text<'_>) -> Ordering {
        // Escaped tag values are compared byte by byte as they unescape (str order is
        // byte order), so even they need no copy.
        match (self, other) {
            (Text::Escaped(a), Text::Escaped(b)) => a.bytes().cmp(b.bytes()),
            (Text::Escaped(a), b) => a.bytes().cmp(b.plain().unwrap_or_default().bytes()),
            (a, Text::Escaped(b)) => a.plain().unwrap_or_default().bytes().cmp(b.bytes()),
            (a, b) => a.plain().cmp(&b.plain()),
        }
    }
}

/// A value during evaluation.
#[derive(Clone, Copy, Debug)]
pub(super) enum Val<'a> {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(Text<'a>),
}

impl<'a> Val<'a> {
    fn of_value(v: &'a Value) -> Val<'a> {
        match v {
            Value::I64(i) => Val::Int(*i),
            // A non-finite float cannot be built through `Value::float`; should one
            // arrive anyway, it reads as null rather than poisoning arithmetic.
            Value::F64(x) if x.is_finite() => Val::Float(*x),
            Value::F64(_) => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Str(s) => Val::Str(Text::Shared(s)),
        }
    }

    fn of_lit(l: &'a Lit) -> Val<'a> {
        match l {
            Lit::Null => Val::Null,
            Lit::Int(i) => Val::Int(*i),
            Lit::Float(x) => Val::Float(*x),
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Str(s) => Val::Str(Text::Shared(s)),
        }
    }

    fn float(x: f64) -> Val<'a> {
        if x.is_finite() {
            Val::Float(x)
        } else {
            Val::Null
        }
    }

    fn truth(self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn has_type(self, ty: Type) -> bool {
        matches!(
            (self, ty),
            (_, Type::Unknown)
                | (Val::Int(_) | Val::Float(_), Type::Num)
                | (Val::Str(_), Type::Str)
                | (Val::Bool(_), Type::Bool)
        )
    }

    /// The value as an event value (`None` for null); clones a shared string's `Arc`,
    /// copies a tag's text.
    pub(super) fn to_value(self) -> Option<Value> {
        Some(match self {
            Val::Null => return None,
            Val::Int(i) => Value::I64(i),
            // `-0.0` is stored as `0.0`, as `Value::float` does.
            Val::Float(x) => Value::F64(if x == 0.0 { 0.0 } else { x }),
            Val::Bool(b) => Value::Bool(b),
            Val::Str(Text::Shared(s)) => Value::Str(s.clone()),
            Val::Str(Text::Plain(s)) => Value::Str(Arc::from(s)),
            Val::Str(Text::Escaped(t)) => Value::Str(Arc::from(t.to_str().as_ref())),
        })
    }
}

/// `i` against `x` exactly (`x` finite), without rounding `i` to a float.
fn cmp_int_float(i: i64, x: f64) -> Ordering {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if x >= TWO_63 {
        return Ordering::Less;
    }
    if x < -TWO_63 {
        return Ordering::Greater;
    }
    // Within [-2^63, 2^63) the integer part of `x` is an exact i64.
    let whole = x.trunc();
    match i.cmp(&(whole as i64)) {
        Ordering::Equal => whole.partial_cmp(&x).unwrap_or(Ordering::Equal),
        o => o,
    }
}

/// How two values compare: `None` when either is null or they are of different kinds
/// (numbers of both kinds compare with each other exactly).
#[inline(always)]
fn compare(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(&y),
        (Val::Int(x), Val::Float(y)) => Some(cmp_int_float(x, y)),
        (Val::Float(x), Val::Int(y)) => Some(cmp_int_float(y, x).reverse()),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(&y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

#[inline(always)]
fn comparison<'a>(op: CmpOp, a: Val<'a>, b: Val<'a>) -> Val<'a> {
    if op.is_ordering() && matches!(a, Val::Bool(_)) {
        return Val::Null;
    }
    let Some(o) = compare(a, b) else {
        return Val::Null;
    };
    Val::Bool(match op {
        CmpOp::Eq => o.is_eq(),
        CmpOp::Ne => o.is_ne(),
        CmpOp::Lt => o.is_lt(),
        CmpOp::Le => o.is_le(),
        CmpOp::Gt => o.is_gt(),
        CmpOp::Ge => o.is_ge(),
    })
}

#[inline]
fn arith<'a>(op: ArithOp, a: Val<'a>, b: Val<'a>) -> Val<'a> {
    let (x, y) = match (a, b) {
        (Val::Int(x), Val::Int(y)) => {
            let r = match op {
                ArithOp::Add => x.checked_add(y),
                ArithOp::Sub => x.checked_sub(y),
                ArithOp::Mul => x.checked_mul(y),
                // `/` always divides as floats: 7 / 2 is 3.5.
                ArithOp::Div if y == 0 => None,
                ArithOp::Div => return Val::float(x as f64 / y as f64),
                ArithOp::Rem => x.checked_rem(y),
            };
            return r.map_or(Val::Null, Val::Int);
        }
        (Val::Int(x), Val::Float(y)) => (x as f64, y),
        (Val::Float(x), Val::Int(y)) => (x, y as f64),
        (Val::Float(x), Val::Float(y)) => (x, y),
        _ => return Val::Null,
    };
    Val::float(match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Rem if y == 0.0 => return Val::Null,
        ArithOp::Div => x / y,
        ArithOp::Rem => x % y,
    })
}

#[inline(always)]
fn and<'a>(a: Val<'a>, b: Val<'a>) -> Val<'a> {
    match (a.truth(), b.truth()) {
        (Some(false), _) | (_, Some(false)) => Val::Bool(false),
        (Some(true), Some(true)) => Val::Bool(true),
        _ => Val::Null,
    }
}

#[inline]
fn or<'a>(a: Val<'a>, b: Val<'a>) -> Val<'a> {
    match (a.truth(), b.truth()) {
        (Some(true), _) | (_, Some(true)) => Val::Bool(true),
        (Some(false), Some(false)) => Val::Bool(false),
        _ => Val::Null,
    }
}

/// `x in list`: null if `x` is null or of another kind than the list; true if an
/// element equals it; otherwise null if the list holds a null, else false.
fn member<'a>(x: Val<'a>, list: &'a [Lit]) -> Val<'a> {
    if matches!(x, Val::Null) {
        return Val::Null;
    }
    let (mut comparable, mut saw_null) = (false, false);
    for l in list {
        let v = Val::of_lit(l);
        if matches!(v, Val::Null) {
            saw_null = true;
            continue;
        }
        match compare(x, v) {
            Some(Ordering::Equal) => return Val::Bool(true),
            Some(_) => comparable = true,
            None => {}
        }
    }
    if !comparable || saw_null {
        Val::Null
    } else {
        Val::Bool(false)
    }
}

/// `min`/`max`: nulls are skipped; any other non-number makes the result null.
fn extreme<'a>(args: &[Val<'a>], want: Ordering) -> Val<'a> {
    let mut best = Val::Null;
    for &v in args {
        match v {
            Val::Null => {}
            Val::Int(_) | Val::Float(_) => {
                if matches!(best, Val::Null) || compare(v, best) == Some(want) {
                    best = v;
                }
            }
            _ => return Val::Null,
        }
    }
    best
}

/// `a == b`, for the short strings field names are: names of 4 to 16 bytes compare
/// as two overlapping words each, without a call to `memcmp` (measured: about 20 of
/// the filter's 475 instructions per event saved).
#[inline(always)]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word8 = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| w.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let word4 = |s: &[u8], at: usize| {
        s.get(at..at + 4)
            .and_then(|w| w.try_into().ok())
            .map(u32::from_le_bytes)
    };
    match n {
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        _ => a == b,
    }
}

/// A field of the event, else a tag of its key, else null.
#[inline(always)]
fn field<'a>(event: &'a Event, name: &str) -> Val<'a> {
    for (n, v) in &event.fields {
        if same_name(n, name) {
            return Val::of_value(v);
        }
    }
    match event.key.tag(name) {
        Some(t) => match t.as_plain() {
            Some(s) => Val::Str(Text::Plain(s)),
            None => Val::Str(Text::Escaped(t)),
        },
        None => Val::Null,
    }
}

impl Program {
    #[inline(always)]
    fn constant(&self, i: u32) -> Val<'_> {
        self.consts.get(i as usize).map_or(Val::Null, Val::of_lit)
    }

    #[inline(always)]
    fn field<'a>(&'a self, event: &'a Event, i: u32) -> Val<'a> {
        match self.fields.get(i as usize) {
            Some(name) => field(event, name),
            None => Val::Null,
        }
    }

    /// An operand's value; a stack operand is popped. (The right operand is taken
    /// first: it is the one on top.)
    #[inline(always)]
    fn take<'a>(
        &'a self,
        o: Operand,
        event: &'a Event,
        stack: &[Val<'a>],
        sp: &mut usize,
    ) -> Val<'a> {
        match o {
            Operand::Stack => {
                *sp -= 1;
                stack[*sp]
            }
            Operand::Field(i) => self.field(event, i),
            Operand::Const(i) => self.constant(i),
        }
    }

    /// Runs the program on an event.
    pub(super) fn run<'a>(&'a self, event: &'a Event) -> Val<'a> {
        // The smallest stack that fits: clearing a few slots is cheaper than many.
        if self.depth <= 8 {
            self.run_with::<8>(event)
        } else if self.depth <= 32 {
            self.run_with::<32>(event)
        } else {
            self.run_with::<MAX_STACK>(event)
        }
    }

    fn run_with<'a, const N: usize>(&'a self, event: &'a Event) -> Val<'a> {
        let mut stack = [Val::Null; N];
        // `sp` is the number of values on the stack; the compiler checked that the
        // program never needs more than `depth <= N` of them, nor pops an empty stack.
        let mut sp = 0usize;
        let mut pc = 0usize;
        while let Some(op) = self.ops.get(pc) {
            pc += 1;
            match op {
                Op::Const(i) => {
                    stack[sp] = self.constant(*i);
                    sp += 1;
                }
                Op::Field(i) => {
                    stack[sp] = self.field(event, *i);
                    sp += 1;
                }
                Op::Neg => {
                    stack[sp - 1] = match stack[sp - 1] {
                        Val::Int(i) => i.checked_neg().map_or(Val::Null, Val::Int),
                        Val::Float(x) => Val::Float(-x),
                        _ => Val::Null,
                    };
                }
                Op::Not => {
                    stack[sp - 1] = match stack[sp - 1] {
                        Val::Bool(b) => Val::Bool(!b),
                        _ => Val::Null,
                    };
                }
                Op::Arith(a, l, r) => {
                    let (y, x) = (
                        self.take(*r, event, &stack, &mut sp),
                        self.take(*l, event, &stack, &mut sp),
                    );
                    stack[sp] = arith(*a, x, y);
                    sp += 1;
                }
                Op::Cmp(c, l, r) => {
                    let (y, x) = (
                        self.take(*r, event, &stack, &mut sp),
                        self.take(*l, event, &stack, &mut sp),
                    );
                    stack[sp] = comparison(*c, x, y);
                    sp += 1;
                }
                Op::AndJump(target) => {
                    if let Val::Bool(false) = stack[sp - 1] {
                        pc = *target as usize;
                    }
                }
                Op::OrJump(target) => {
                    if let Val::Bool(true) = stack[sp - 1] {
                        pc = *target as usize;
                    }
                }
                Op::And => {
                    sp -= 1;
                    stack[sp - 1] = and(stack[sp - 1], stack[sp]);
                }
                Op::Or => {
                    sp -= 1;
                    stack[sp - 1] = or(stack[sp - 1], stack[sp]);
                }
                Op::In {
                    start,
                    len,
                    negated,
                } => {
                    let (start, len) = (*start as usize, *len as usize);
                    let list = self.lists.get(start..start + len).unwrap_or_default();
                    let r = member(stack[sp - 1], list);
                    stack[sp - 1] = match (r, negated) {
                        (Val::Bool(b), true) => Val::Bool(!b),
                        (r, _) => r,
                    };
                }
                Op::IsNull { negated } => {
                    let null = matches!(stack[sp - 1], Val::Null);
                    stack[sp - 1] = Val::Bool(null != *negated);
                }
                Op::Abs => {
                    stack[sp - 1] = match stack[sp - 1] {
                        Val::Int(i) => i.checked_abs().map_or(Val::Null, Val::Int),
                        Val::Float(x) => Val::Float(x.abs()),
                        _ => Val::Null,
                    };
                }
                Op::Min(n) | Op::Max(n) => {
                    let want = if matches!(op, Op::Min(_)) {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    };
                    let first = sp - *n as usize;
                    stack[first] = extreme(&stack[first..sp], want);
                    sp = first + 1;
                }
                Op::Coalesce { n, ty } => {
                    let first = sp - *n as usize;
                    stack[first] = stack[first..sp]
                        .iter()
                        .copied()
                        .find(|v| !matches!(v, Val::Null) && v.has_type(*ty))
                        .unwrap_or(Val::Null);
                    sp = first + 1;
                }
            }
        }
        stack[0]
    }
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn same_name_is_string_equality_at_every_length_and_position() {
        let base = "abcdefghijklmnopqrstuvwxyz";
        for n in 0..=20 {
            let a = &base[..n];
            assert!(same_name(a, a), "{a}");
            assert!(!same_name(a, &base[..n + 1]), "{a} vs longer");
            for i in 0..n {
                let mut b = a.as_bytes().to_vec();
                b[i] = b'_';
                let b = String::from_utf8(b).unwrap();
                assert!(!same_name(a, &b), "{a} vs {b}");
            }
        }
    }
}
