//! Text to a typed tree: the lexer, the recursive-descent parser, the type checker and
//! the canonical (fully parenthesised) rendering of a tree.
//!
//! The tree exists only while an expression is loaded: [`super::program`] compiles it
//! into the flat program that runs per event, and [`canonical`] prints it so that tests
//! can see exactly how a text was read.

use super::{ExprError, Type};
use std::fmt::Write as _;
use std::sync::Arc;

/// How deeply expressions may nest (parentheses, unary operators, arguments); deeper
/// ones are refused so that neither the parser nor anything walking the tree can run
/// out of stack on hostile input.
/// A chain such as `a + b + c` counts one level per operator: its tree is that deep.
const MAX_NESTING: usize = 100;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An integer literal up to 2^63 (2^63 itself only right after a unary minus).
    Int(u64),
    Float(f64),
    Str(Arc<str>),
    /// A name; `quoted` when it was written in backquotes (never a keyword).
    Ident {
        name: Arc<str>,
        quoted: bool,
    },
    Kw(Kw),
    LParen,
    RParen,
    Comma,
    Arith(ArithOp),
    Cmp(CmpOp),
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    True,
    False,
}

const KEYWORDS: [(&str, Kw); 8] = [
    ("and", Kw::And),
    ("or", Kw::Or),
    ("not", Kw::Not),
    ("in", Kw::In),
    ("is", Kw::Is),
    ("null", Kw::Null),
    ("true", Kw::True),
    ("false", Kw::False),
];

fn keyword(word: &str) -> Option<Kw> {
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|&(_, kw)| kw)
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// `<`, `<=`, `>`, `>=`: these need an order, which booleans do not have.
    pub(super) fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// A built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Func {
    Abs,
    Min,
    Max,
    Coalesce,
}

const FUNCTIONS: [(&str, Func); 4] = [
    ("abs", Func::Abs),
    ("min", Func::Min),
    ("max", Func::Max),
    ("coalesce", Func::Coalesce),
];

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Min => "min",
            Func::Max => "max",
            Func::Coalesce => "coalesce",
        }
    }
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Lit {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(Arc<str>),
}

impl Lit {
    fn ty(&self) -> Type {
        match self {
            Lit::Null => Type::Unknown,
            Lit::Int(_) | Lit::Float(_) => Type::Num,
            Lit::Bool(_) => Type::Bool,
            Lit::Str(_) => Type::Str,
        }
    }
}

/// A node of the tree, with the byte offset errors about it point at (an operator's
/// own position, a literal's or field's first character, a function's name).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Node {
    pub pos: usize,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
    Lit(Lit),
    Field(Arc<str>),
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    In {
        x: Box<Node>,
        /// Each literal with its position.
        list: Vec<(Lit, usize)>,
        negated: bool,
    },
    IsNull {
        x: Box<Node>,
        negated: bool,
    },
    Call(Func, Vec<Node>),
}

// ---------------------------------------------------------------------------------
// Lexer

fn err(pos: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        pos,
        message: message.into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        let next = bytes.get(i + 1).copied();
        let (tok, len) = match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Arith(ArithOp::Add), 1),
            b'-' => (Tok::Arith(ArithOp::Sub), 1),
            b'*' => (Tok::Arith(ArithOp::Mul), 1),
            b'/' => (Tok::Arith(ArithOp::Div), 1),
            b'%' => (Tok::Arith(ArithOp::Rem), 1),
            b'=' if next == Some(b'=') => (Tok::Cmp(CmpOp::Eq), 2),
            b'=' => (Tok::Cmp(CmpOp::Eq), 1),
            b'!' if next == Some(b'=') => (Tok::Cmp(CmpOp::Ne), 2),
            b'!' => {
                return Err(err(start, "unknown operator `!` (use `!=` or `not`)"));
            }
            b'<' if next == Some(b'=') => (Tok::Cmp(CmpOp::Le), 2),
            b'<' if next == Some(b'>') => (Tok::Cmp(CmpOp::Ne), 2),
            b'<' => (Tok::Cmp(CmpOp::Lt), 1),
            b'>' if next == Some(b'=') => (Tok::Cmp(CmpOp::Ge), 2),
            b'>' => (Tok::Cmp(CmpOp::Gt), 1),
            b'0'..=b'9' => lex_number(src, start)?,
            b'\'' | b'"' => {
                let (text, len) = lex_quoted(src, start, "string", &['\'', '"'])?;
                (Tok::Str(text), len)
            }
            b'`' => {
                let (name, len) = lex_quoted(src, start, "quoted name", &['`'])?;
                if name.is_empty() {
                    return Err(err(start, "a quoted name cannot be empty"));
                }
                (Tok::Ident { name, quoted: true }, len)
            }
            _ => {
                let rest = src.get(start..).unwrap_or_default();
                let c = rest.chars().next().unwrap_or_default();
                if !is_ident_start(c) {
                    return Err(err(
                        start,
                        format!(
                            "unexpected character `{c}` (a name with such characters is written in backquotes: `a name`)"
                        ),
                    ));
                }
                let len = rest
                    .char_indices()
                    .find(|&(_, c)| !is_ident_continue(c))
                    .map_or(rest.len(), |(n, _)| n);
                let word = rest.get(..len).unwrap_or_default();
                let tok = match keyword(word) {
                    Some(kw) => Tok::Kw(kw),
                    None => Tok::Ident {
                        name: Arc::from(word),
                        quoted: false,
                    },
                };
                (tok, len)
            }
        };
        i += len;
        out.push(Token { tok, start, end: i });
    }
    out.push(Token {
        tok: Tok::End,
        start: src.len(),
        end: src.len(),
    });
    Ok(out)
}

/// A number at `start`: `123`, `1.5`, `1e3`, `2.5E-7`; a float when it has a fraction or
/// an exponent. Letters, digits, `_` or `.` right after it make it an invalid number.
fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let bytes = src.as_bytes();
    let digits_from = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits_from(start);
    let mut float = false;
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i = digits_from(i + 1);
        float = true;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let after_sign = i + 1 + usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
        if bytes.get(after_sign).is_some_and(u8::is_ascii_digit) {
            i = digits_from(after_sign);
            float = true;
        }
    }
    let rest = src.get(i..).unwrap_or_default();
    if rest.chars().next().is_some_and(is_ident_continue) {
        let bad_len = rest
            .char_indices()
            .find(|&(_, c)| !is_ident_continue(c))
            .map_or(rest.len(), |(n, _)| n);
        let bad = src.get(start..i + bad_len).unwrap_or_default();
        return Err(err(start, format!("`{bad}` is not a number")));
    }
    let text = src.get(start..i).unwrap_or_default();
    let tok = if float {
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Tok::Float(x),
            _ => return Err(err(start, format!("the number `{text}` is too large"))),
        }
    } else {
        match text.parse::<u64>() {
            Ok(n) if n <= 1 << 63 => Tok::Int(n),
            _ => {
                return Err(err(
                    start,
                    format!(
                        "the integer `{text}` does not fit in 64 bits (write `{text}.0` for a float)"
                    ),
                ));
            }
        }
    };
    Ok((tok, i - start))
}

/// A quoted string or name starting at `start` with its quote character; `\` escapes
/// itself and the `escapes`. Returns the text and its length in the source.
fn lex_quoted(
    src: &str,
    start: usize,
    what: &str,
    escapes: &[char],
) -> Result<(Arc<str>, usize), ExprError> {
    let rest = src.get(start..).unwrap_or_default();
    let mut chars = rest.char_indices();
    let quote = chars.next().map(|(_, c)| c).unwrap_or_default();
    let mut text = String::new();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e)) if e == '\\' || escapes.contains(&e) => text.push(e),
                Some((_, e)) => {
                    let known: Vec<String> = escapes
                        .iter()
                        .chain(['\\'].iter())
                        .map(|c| format!("`\\{c}`"))
                        .collect();
                    return Err(err(
                        start + at,
                        format!(
                            "unknown escape `\\{e}` in a {what} (the escapes are {})",
                            known.join(", ")
                        ),
                    ));
                }
                None => break,
            },
            c if c == quote => return Ok((Arc::from(text), at + c.len_utf8())),
            c => text.push(c),
        }
    }
    Err(err(start, format!("this {what} is never closed")))
}

// ---------------------------------------------------------------------------------
// Parser

/// Parses `src` into a tree (without checking types).
pub(super) fn parse(src: &str) -> Result<Node, ExprError> {
    let tokens = lex(src)?;
    let mut p = Parser {
        src,
        tokens,
        at: 0,
        depth: 0,
    };
    let node = p.or_expr()?;
    let t = p.peek();
    if t.tok != Tok::End {
        return Err(err(
            t.start,
            format!(
                "expected an operator or the end of the expression, found {}",
                p.describe(t)
            ),
        ));
    }
    Ok(node)
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with `End`, which is never consumed.
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.at.min(last)]
    }

    fn peek2(&self) -> &Tok {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[(self.at + 1).min(last)].tok
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    fn describe(&self, t: &Token) -> String {
        match t.tok {
            Tok::End => "the end of the expression".to_string(),
            _ => format!("`{}`", self.src.get(t.start..t.end).unwrap_or_default()),
        }
    }

    fn is_kw(&self, kw: Kw) -> bool {
        self.peek().tok == Tok::Kw(kw)
    }

    fn nest(&mut self, pos: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(err(
                pos,
                format!("the expression nests too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and_expr()?;
        let depth = self.depth;
        while self.is_kw(Kw::Or) {
            let pos = self.bump().start;
            self.nest(pos)?;
            let right = self.and_expr()?;
            left = Node {
                pos,
                kind: Kind::Or(Box::new(left), Box::new(right)),
            };
        }
        self.depth = depth;
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Node, ExprError> {
        let mut left = self.not_expr()?;
        let depth = self.depth;
        while self.is_kw(Kw::And) {
            let pos = self.bump().start;
            self.nest(pos)?;
            let right = self.not_expr()?;
            left = Node {
                pos,
                kind: Kind::And(Box::new(left), Box::new(right)),
            };
        }
        self.depth = depth;
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Node, ExprError> {
        if self.is_kw(Kw::Not) {
            let pos = self.bump().start;
            self.nest(pos)?;
            let x = self.not_expr()?;
            self.depth -= 1;
            return Ok(Node {
                pos,
                kind: Kind::Not(Box::new(x)),
            });
        }
        self.cmp_expr()
    }

    /// Whether the next tokens start a comparison, `in`, `not in` or `is`.
    fn at_comparison(&self) -> bool {
        matches!(self.peek().tok, Tok::Cmp(_) | Tok::Kw(Kw::In | Kw::Is))
            || (self.is_kw(Kw::Not) && *self.peek2() == Tok::Kw(Kw::In))
    }

    fn cmp_expr(&mut self) -> Result<Node, ExprError> {
        let left = self.sum()?;
        if !self.at_comparison() {
            return Ok(left);
        }
        let op = self.bump();
        let node = match op.tok {
            Tok::Cmp(c) => {
                let right = self.sum()?;
                Node {
                    pos: op.start,
                    kind: Kind::Cmp(c, Box::new(left), Box::new(right)),
                }
            }
            Tok::Kw(Kw::Is) => {
                let negated = self.is_kw(Kw::Not);
                if negated {
                    self.bump();
                }
                if !self.is_kw(Kw::Null) {
                    let t = self.peek();
                    return Err(err(
                        t.start,
                        format!(
                            "expected `null` or `not null` after `is`, found {}",
                            self.describe(t)
                        ),
                    ));
                }
                self.bump();
                Node {
                    pos: op.start,
                    kind: Kind::IsNull {
                        x: Box::new(left),
                        negated,
                    },
                }
            }
            _ => {
                let negated = op.tok == Tok::Kw(Kw::Not);
                if negated {
                    self.bump(); // `in`
                }
                let list = self.in_list()?;
                Node {
                    pos: op.start,
                    kind: Kind::In {
                        x: Box::new(left),
                        list,
                        negated,
                    },
                }
            }
        };
        if self.at_comparison() {
            let t = self.peek();
            return Err(err(
                t.start,
                format!(
                    "comparisons do not chain: put parentheses around one, or join them with `and` (found {})",
                    self.describe(t)
                ),
            ));
        }
        Ok(node)
    }

    /// `( lit, lit, ... )` after `in`: literals only, a number may have a minus sign.
    fn in_list(&mut self) -> Result<Vec<(Lit, usize)>, ExprError> {
        let open = self.peek().clone();
        if open.tok != Tok::LParen {
            return Err(err(
                open.start,
                format!("expected `(` after `in`, found {}", self.describe(&open)),
            ));
        }
        self.bump();
        let mut list = Vec::new();
        loop {
            let t = self.bump();
            let negative = t.tok == Tok::Arith(ArithOp::Sub);
            let lit_tok = if negative { self.bump() } else { t.clone() };
            let lit = match (&lit_tok.tok, negative) {
                (Tok::Int(n), _) => int_literal(*n, negative, lit_tok.start)?,
                (Tok::Float(x), _) => Lit::Float(if negative { -*x } else { *x }),
                (Tok::Str(s), false) => Lit::Str(s.clone()),
                (Tok::Kw(Kw::True), false) => Lit::Bool(true),
                (Tok::Kw(Kw::False), false) => Lit::Bool(false),
                (Tok::Kw(Kw::Null), false) => Lit::Null,
                (Tok::RParen, false) if list.is_empty() => {
                    return Err(err(t.start, "an `in` list cannot be empty"));
                }
                _ => {
                    return Err(err(
                        lit_tok.start,
                        format!(
                            "an `in` list holds literals (numbers, strings, true, false, null), found {}",
                            self.describe(&lit_tok)
                        ),
                    ));
                }
            };
            list.push((lit, t.start));
            let sep = self.bump();
            match sep.tok {
                Tok::Comma => {}
                Tok::RParen => return Ok(list),
                _ => {
                    return Err(err(
                        sep.start,
                        format!(
                            "expected `,` or `)` to close the `in` list opened at {}, found {}",
                            open.start,
                            self.describe(&sep)
                        ),
                    ));
                }
            }
        }
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let depth = self.depth;
        let mut left = self.product()?;
        while let Tok::Arith(op @ (ArithOp::Add | ArithOp::Sub)) = self.peek().tok {
            let pos = self.bump().start;
            self.nest(pos)?;
            let right = self.product()?;
            left = Node {
                pos,
                kind: Kind::Arith(op, Box::new(left), Box::new(right)),
            };
        }
        self.depth = depth;
        Ok(left)
    }

    fn product(&mut self) -> Result<Node, ExprError> {
        let depth = self.depth;
        let mut left = self.unary()?;
        while let Tok::Arith(op @ (ArithOp::Mul | ArithOp::Div | ArithOp::Rem)) = self.peek().tok {
            let pos = self.bump().start;
            self.nest(pos)?;
            let right = self.unary()?;
            left = Node {
                pos,
                kind: Kind::Arith(op, Box::new(left), Box::new(right)),
            };
        }
        self.depth = depth;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.peek().tok != Tok::Arith(ArithOp::Sub) {
            return self.primary();
        }
        let pos = self.bump().start;
        // -9223372036854775808 is the one integer whose digits alone do not fit.
        if let Tok::Int(n) = self.peek().tok
            && n == 1 << 63
        {
            self.bump();
            return Ok(Node {
                pos,
                kind: Kind::Lit(Lit::Int(i64::MIN)),
            });
        }
        self.nest(pos)?;
        let x = self.unary()?;
        self.depth -= 1;
        Ok(Node {
            pos,
            kind: Kind::Neg(Box::new(x)),
        })
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let t = self.bump();
        let kind = match &t.tok {
            Tok::Int(n) => Kind::Lit(int_literal(*n, false, t.start)?),
            Tok::Float(x) => Kind::Lit(Lit::Float(*x)),
            Tok::Str(s) => Kind::Lit(Lit::Str(s.clone())),
            Tok::Kw(Kw::True) => Kind::Lit(Lit::Bool(true)),
            Tok::Kw(Kw::False) => Kind::Lit(Lit::Bool(false)),
            Tok::Kw(Kw::Null) => Kind::Lit(Lit::Null),
            Tok::Ident { name, quoted } => {
                if !quoted && self.peek().tok == Tok::LParen {
                    return self.call(&t, name);
                }
                Kind::Field(name.clone())
            }
            Tok::LParen => {
                self.nest(t.start)?;
                let inner = self.or_expr()?;
                self.depth -= 1;
                let close = self.bump();
                if close.tok != Tok::RParen {
                    return Err(err(
                        close.start,
                        format!(
                            "expected `)` to close the `(` at {}, found {}",
                            t.start,
                            self.describe(&close)
                        ),
                    ));
                }
                return Ok(inner);
            }
            _ => {
                return Err(err(
                    t.start,
                    format!("expected an expression, found {}", self.describe(&t)),
                ));
            }
        };
        Ok(Node { pos: t.start, kind })
    }

    fn call(&mut self, name_tok: &Token, name: &str) -> Result<Node, ExprError> {
        let Some(&(_, func)) = FUNCTIONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            return Err(err(
                name_tok.start,
                format!("unknown function `{name}` (the functions are abs, min, max and coalesce)"),
            ));
        };
        let open = self.bump();
        self.nest(open.start)?;
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.bump();
        } else {
            loop {
                args.push(self.or_expr()?);
                let sep = self.bump();
                match sep.tok {
                    Tok::Comma => {}
                    Tok::RParen => break,
                    _ => {
                        return Err(err(
                            sep.start,
                            format!(
                                "expected `,` or `)` to close the `(` of `{name}` at {}, found {}",
                                open.start,
                                self.describe(&sep)
                            ),
                        ));
                    }
                }
            }
        }
        self.depth -= 1;
        Ok(Node {
            pos: name_tok.start,
            kind: Kind::Call(func, args),
        })
    }
}

fn int_literal(n: u64, negative: bool, pos: usize) -> Result<Lit, ExprError> {
    let value = if negative {
        0i64.checked_sub_unsigned(n)
    } else {
        i64::try_from(n).ok()
    };
    value.map(Lit::Int).ok_or_else(|| {
        err(
            pos,
            format!("the integer `{n}` does not fit in 64 bits (write `{n}.0` for a float)"),
        )
    })
}

// ---------------------------------------------------------------------------------
// Types

fn a(ty: Type) -> &'static str {
    match ty {
        Type::Num => "a number",
        Type::Str => "a string",
        Type::Bool => "a boolean",
        Type::Unknown => "of unknown type",
    }
}

fn known(ty: Type) -> Option<Type> {
    (ty != Type::Unknown).then_some(ty)
}

/// The type of a tree, or the first type error in it (children before parents, left
/// before right).
pub(super) fn check(node: &Node) -> Result<Type, ExprError> {
    let pos = node.pos;
    let need = |ty: Type, want: Type, what: String| match known(ty) {
        Some(t) if t != want => Err(err(pos, format!("{what} is {}", a(t)))),
        _ => Ok(()),
    };
    Ok(match &node.kind {
        Kind::Lit(l) => l.ty(),
        Kind::Field(_) => Type::Unknown,
        Kind::Neg(x) => {
            need(
                check(x)?,
                Type::Num,
                "`-` needs a number, but its operand".into(),
            )?;
            Type::Num
        }
        Kind::Not(x) => {
            need(
                check(x)?,
                Type::Bool,
                "`not` needs a boolean, but its operand".into(),
            )?;
            Type::Bool
        }
        Kind::Arith(op, l, r) => {
            let (lt, rt) = (check(l)?, check(r)?);
            let sym = op.symbol();
            need(
                lt,
                Type::Num,
                format!("`{sym}` needs numbers, but its left side"),
            )?;
            need(
                rt,
                Type::Num,
                format!("`{sym}` needs numbers, but its right side"),
            )?;
            Type::Num
        }
        Kind::Cmp(op, l, r) => {
            let (lt, rt) = (check(l)?, check(r)?);
            let sym = op.symbol();
            if op.is_ordering() {
                for (ty, side) in [(lt, "left"), (rt, "right")] {
                    if ty == Type::Bool {
                        return Err(err(
                            pos,
                            format!(
                                "`{sym}` needs numbers or strings, but its {side} side is a boolean"
                            ),
                        ));
                    }
                }
            }
            if let (Some(x), Some(y)) = (known(lt), known(rt))
                && x != y
            {
                return Err(err(
                    pos,
                    format!("`{sym}` cannot compare {} with {}", a(x), a(y)),
                ));
            }
            Type::Bool
        }
        Kind::And(l, r) | Kind::Or(l, r) => {
            let (lt, rt) = (check(l)?, check(r)?);
            let word = if matches!(node.kind, Kind::And(..)) {
                "and"
            } else {
                "or"
            };
            need(
                lt,
                Type::Bool,
                format!("`{word}` needs booleans, but its left side"),
            )?;
            need(
                rt,
                Type::Bool,
                format!("`{word}` needs booleans, but its right side"),
            )?;
            Type::Bool
        }
        Kind::In { x, list, .. } => {
            let xt = check(x)?;
            let mut list_ty: Option<Type> = None;
            for (lit, at) in list {
                let Some(t) = known(lit.ty()) else { continue };
                match list_ty {
                    None => list_ty = Some(t),
                    Some(first) if first != t => {
                        return Err(err(
                            *at,
                            format!(
                                "an `in` list holds values of one type, but it mixes {} and {}",
                                a(first),
                                a(t)
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if let (Some(x), Some(l)) = (known(xt), list_ty)
                && x != l
            {
                let plural = match l {
                    Type::Num => "numbers",
                    Type::Str => "strings",
                    _ => "booleans",
                };
                return Err(err(
                    pos,
                    format!("`in` cannot compare {} with a list of {plural}", a(x)),
                ));
            }
            Type::Bool
        }
        Kind::IsNull { x, .. } => {
            check(x)?;
            Type::Bool
        }
        Kind::Call(func, args) => check_call(pos, *func, args)?,
    })
}

fn check_call(pos: usize, func: Func, args: &[Node]) -> Result<Type, ExprError> {
    let name = func.name();
    match (func, args.len()) {
        (Func::Abs, 1) => {}
        (Func::Abs, n) => {
            return Err(err(
                pos,
                format!("`abs` takes 1 argument, but {n} were given"),
            ));
        }
        (_, 0) => return Err(err(pos, format!("`{name}` needs at least 1 argument"))),
        _ => {}
    }
    let mut first: Option<(usize, Type)> = None;
    for (i, arg) in args.iter().enumerate() {
        let Some(t) = known(check(arg)?) else {
            continue;
        };
        match func {
            Func::Abs if t != Type::Num => {
                return Err(err(
                    arg.pos,
                    format!("`abs` needs a number, but its argument is {}", a(t)),
                ));
            }
            Func::Min | Func::Max if t != Type::Num => {
                return Err(err(
                    arg.pos,
                    format!("`{name}` needs numbers, but argument {} is {}", i + 1, a(t)),
                ));
            }
            Func::Coalesce => match first {
                None => first = Some((i, t)),
                Some((j, f)) if f != t => {
                    return Err(err(
                        arg.pos,
                        format!(
                            "`coalesce` needs arguments of one type, but argument {} is {} and argument {} is {}",
                            j + 1,
                            a(f),
                            i + 1,
                            a(t)
                        ),
                    ));
                }
                Some(_) => {}
            },
            _ => {}
        }
    }
    Ok(match func {
        Func::Coalesce => first.map_or(Type::Unknown, |(_, t)| t),
        _ => Type::Num,
    })
}

// ---------------------------------------------------------------------------------
// Canonical rendering

/// Prints a tree fully parenthesised in one fixed spelling (see [`super::Expr::canonical`]).
pub(super) fn canonical(node: &Node, out: &mut String) {
    match &node.kind {
        Kind::Lit(l) => lit(l, out),
        Kind::Field(name) => field_name(name, out),
        Kind::Neg(x) => {
            out.push_str("(-");
            canonical(x, out);
            out.push(')');
        }
        Kind::Not(x) => {
            out.push_str("(not ");
            canonical(x, out);
            out.push(')');
        }
        Kind::Arith(op, l, r) => binary(l, op.symbol(), r, out),
        Kind::Cmp(op, l, r) => binary(l, op.symbol(), r, out),
        Kind::And(l, r) => binary(l, "and", r, out),
        Kind::Or(l, r) => binary(l, "or", r, out),
        Kind::In { x, list, negated } => {
            out.push('(');
            canonical(x, out);
            out.push_str(if *negated { " not in (" } else { " in (" });
            for (i, (l, _)) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                lit(l, out);
            }
            out.push_str("))");
        }
        Kind::IsNull { x, negated } => {
            out.push('(');
            canonical(x, out);
            out.push_str(if *negated {
                " is not null)"
            } else {
                " is null)"
            });
        }
        Kind::Call(func, args) => {
            out.push_str(func.name());
            out.push('(');
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                canonical(arg, out);
            }
            out.push(')');
        }
    }
}

fn binary(l: &Node, op: &str, r: &Node, out: &mut String) {
    out.push('(');
    canonical(l, out);
    out.push(' ');
    out.push_str(op);
    out.push(' ');
    canonical(r, out);
    out.push(')');
}

fn lit(l: &Lit, out: &mut String) {
    match l {
        Lit::Null => out.push_str("null"),
        Lit::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Lit::Float(x) => {
            let _ = write!(out, "{x:?}");
        }
        Lit::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Lit::Str(s) => {
            out.push('\'');
            for c in s.chars() {
                if c == '\'' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('\'');
        }
    }
}

/// A field name as written in source: bare when it reads back as the same name,
/// backquoted otherwise.
pub(super) fn field_name(name: &str, out: &mut String) {
    let mut chars = name.chars();
    let bare = chars.next().is_some_and(is_ident_start)
        && chars.all(is_ident_continue)
        && keyword(name).is_none();
    if bare {
        out.push_str(name);
        return;
    }
    out.push('`');
    for c in name.chars() {
        if c == '`' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
}
