//! A small typed expression language over events: pipeline filters, per-aggregate
//! filters (SQL's `FILTER (WHERE …)`) and derived fields.
//!
//! ```
//! use reckon_core::expr::Expr;
//! use reckon_core::{Event, EventTime, Key, Value};
//! # fn main() -> Result<(), reckon_core::expr::ExprError> {
//! let alarm = Expr::parse_filter("value > threshold and threshold != 999999")?;
//! let excess = Expr::parse("value - threshold")?;
//! let event = Event {
//!     stream: "alarms".into(),
//!     key: Key::from_tags([("station_id", "7")]).unwrap(),
//!     time: EventTime::from_secs(0),
//!     id: None,
//!     fields: vec![("value".into(), Value::I64(120)), ("threshold".into(), Value::I64(100))],
//! };
//! assert!(alarm.eval_filter(&event));
//! assert_eq!(excess.eval(&event), Some(Value::I64(20)));
//! assert_eq!(Expr::parse("station_id")?.eval(&event), Some(Value::Str("7".into())));
//! # Ok(())
//! # }
//! ```
//!
//! Expressions exist to be configured, so everything that can be decided when one is
//! loaded is decided then: syntax, the types of literals and operators, functions and
//! their arity, and (for filters) that the result is a condition. Errors carry the byte
//! offset they are about and render with a caret under it ([`ExprError::render`]).
//! Fields have no type until an event arrives; a field whose value has the wrong type
//! for what is done with it reads as null there, as a missing field does, and null
//! follows SQL: it propagates through arithmetic and comparisons, `and`/`or`/`not` are
//! three-valued, and a filter whose result is null does not pass.
//!
//! A loaded expression is a flat postfix program run on a small stack of
//! values that borrow from the event, so evaluating one allocates nothing. The language
//! reference is `docs/expressions.md`.

mod program;
mod syntax;

use crate::event::{Event, FieldName, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The static type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// An integer or a float (the two mix freely).
    Num,
    /// A string.
    Str,
    /// A boolean.
    Bool,
    /// Not known until an event arrives: a field, `null`, or a function of those.
    Unknown,
}

/// An expression that cannot be loaded: where (a byte offset into the source) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at {pos}: {message}")]
pub struct ExprError {
    /// The byte offset in the source the error is about.
    pub pos: usize,
    /// What is wrong, in a sentence.
    pub message: String,
}

impl ExprError {
    /// The error with the source line it is on and a caret under its position, for
    /// configuration errors:
    ///
    /// ```
    /// # use reckon_core::expr::Expr;
    /// let e = Expr::parse("value - 'abc'").unwrap_err();
    /// assert_eq!(e.render("value - 'abc'"),
    ///            "at 6: `-` needs numbers, but its right side is a string\n  \
    ///             value - 'abc'\n        ^");
    /// ```
    pub fn render(&self, source: &str) -> String {
        let pos = floor_char_boundary(source, self.pos);
        let line_start = source
            .get(..pos)
            .and_then(|s| s.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line_end = source
            .get(pos..)
            .and_then(|s| s.find('\n'))
            .map_or(source.len(), |i| pos + i);
        let line = source.get(line_start..line_end).unwrap_or_default();
        let before = source.get(line_start..pos).unwrap_or_default();
        // Tabs stay tabs so that the caret lines up however they are shown.
        let pad: String = before
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let line_no = source
            .get(..line_start)
            .map_or(0, |s| s.matches('\n').count())
            + 1;
        let place = if source.contains('\n') {
            format!(" (line {line_no})")
        } else {
            String::new()
        };
        format!("{self}{place}\n  {line}\n  {pad}^")
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A loaded expression: its source, its type and the program that evaluates it.
///
/// Two expressions are equal when their sources are; an expression serializes as its
/// source and deserializing parses it again (so specs holding one can be snapshotted).
/// Cloning is cheap (the program is shared).
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    ty: Type,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tree: syntax::Node,
    program: program::Program,
}

impl Expr {
    /// Parses and type-checks an expression of any type.
    pub fn parse(source: &str) -> Result<Expr, ExprError> {
        let tree = syntax::parse(source)?;
        let ty = syntax::check(&tree)?;
        let program = program::compile(&tree).map_err(|depth| ExprError {
            pos: 0,
            message: format!(
                "the expression is too large: it needs {depth} values at once, at most {} are allowed",
                program::MAX_STACK
            ),
        })?;
        Ok(Expr {
            source: Arc::from(source),
            ty,
            inner: Arc::new(Inner { tree, program }),
        })
    }

    /// Parses an expression that must be a condition: of type boolean, or of a type
    /// only known per event (a bare field, say), in which case a non-boolean value
    /// does not pass.
    pub fn parse_filter(source: &str) -> Result<Expr, ExprError> {
        let e = Expr::parse(source)?;
        e.check_filter()?;
        Ok(e)
    }

    /// `Ok` when the expression can be a filter (see [`Expr::parse_filter`]).
    pub fn check_filter(&self) -> Result<(), ExprError> {
        match self.ty {
            Type::Bool | Type::Unknown => Ok(()),
            ty => Err(ExprError {
                pos: 0,
                message: format!(
                    "a filter must be a condition (true or false), but this expression is {}",
                    match ty {
                        Type::Num => "a number",
                        _ => "a string",
                    }
                ),
            }),
        }
    }

    /// The source text, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The static type.
    pub fn ty(&self) -> Type {
        self.ty
    }

    /// The distinct field names the expression reads, in order of first use. A name
    /// not among an event's fields is looked up among its key's tags.
    pub fn fields(&self) -> &[FieldName] {
        &self.inner.program.fields
    }

    /// The expression as it was read: every operation in parentheses, keywords and
    /// function names in lower case, `=` and `!=` for equality, strings in single
    /// quotes, floats in Rust's shortest round-trip form, names backquoted only when
    /// they must be. Parsing the canonical form gives the same canonical form.
    ///
    /// ```
    /// # use reckon_core::expr::Expr;
    /// let e = Expr::parse("a + b * -c > 2 AND NOT x IS NULL").unwrap();
    /// assert_eq!(e.canonical(), "(((a + (b * (-c))) > 2) and (not (x is null)))");
    /// ```
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        syntax::canonical(&self.inner.tree, &mut out);
        out
    }

    /// The value of the expression for an event; `None` is null. Strings from fields
    /// and literals are shared (`Arc` clones); strings from tags are copied.
    pub fn eval(&self, event: &Event) -> Option<Value> {
        self.inner.program.run(event).to_value()
    }

    /// Whether the event passes, as a filter: only `true` passes (null and any
    /// non-boolean do not). Never allocates.
    pub fn eval_filter(&self, event: &Event) -> bool {
        matches!(self.inner.program.run(event), program::Val::Bool(true))
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.source == other.source
    }
}
impl Eq for Expr {}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&&*self.source).finish()
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expr, D::Error> {
        let source = String::deserialize(d)?;
        Expr::parse(&source)
            .map_err(|e| serde::de::Error::custom(format!("invalid expression `{source}`: {e}")))
    }
}

/// Sets derived fields: evaluates each expression in order on the event as it is so
/// far (a later one may read an earlier one) and sets the field to the result,
/// replacing a field of that name; a null result removes the field. A derived field
/// shadows a key tag of the same name.
pub fn apply_derived(derived: &[(FieldName, Expr)], event: &mut Event) {
    for (name, expr) in derived {
        let value = expr.eval(event);
        let at = event.fields.iter().position(|(n, _)| n == name);
        match (value, at) {
            (Some(v), Some(i)) => event.fields[i].1 = v,
            (Some(v), None) => event.fields.push((name.clone(), v)),
            (None, Some(i)) => {
                event.fields.remove(i);
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests;
