//! Unit tests of the expression language: parsing and precedence (through the
//! canonical form), error messages and positions, NULL semantics, numbers, tags.

use super::*;
use crate::event::Key;
use crate::time::EventTime;

fn event(fields: Vec<(&str, Value)>) -> Event {
    Event {
        stream: Arc::from("s"),
        key: Key::from_tags([("station_id", "42"), ("site", "a,b=c")]).unwrap(),
        time: EventTime(0),
        id: None,
        fields: fields.into_iter().map(|(n, v)| (Arc::from(n), v)).collect(),
    }
}

fn s(x: &str) -> Value {
    Value::Str(Arc::from(x))
}

/// The standard test event: ints, floats, a string, a boolean.
fn std_event() -> Event {
    event(vec![
        ("i", Value::I64(7)),
        ("j", Value::I64(-2)),
        ("x", Value::F64(1.5)),
        ("name", s("bts-1")),
        ("ok", Value::Bool(true)),
        ("no", Value::Bool(false)),
        ("big", Value::I64(i64::MAX)),
    ])
}

fn eval(src: &str) -> Option<Value> {
    Expr::parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(&std_event())
}

fn canon(src: &str) -> String {
    Expr::parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .canonical()
}

fn error(src: &str) -> String {
    match Expr::parse(src) {
        Ok(e) => panic!("{src} parsed as {}", e.canonical()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn literals_are_read() {
    for (src, want) in [
        ("42", "42"),
        ("1.5", "1.5"),
        ("1e3", "1000.0"),
        ("2.5E-7", "2.5e-7"),
    ] {
        assert_eq!(canon(src), want, "{src}");
    }
    assert_eq!(canon(r#"'it\'s'"#), r"'it\'s'");
    assert_eq!(canon(r#""say \"hi\" \\ \'""#), r#"'say "hi" \\ \''"#);
    assert_eq!(canon("TRUE"), "true");
    assert_eq!(canon("False"), "false");
    assert_eq!(canon("NULL"), "null");
    assert_eq!(canon("-9223372036854775808"), "-9223372036854775808");
    assert_eq!(canon("9223372036854775807"), "9223372036854775807");
    assert_eq!(eval("-9223372036854775808"), Some(Value::I64(i64::MIN)));
}

#[test]
fn names_may_have_dots_and_backquotes() {
    let e = Expr::parse("a.b + `odd name` + `and` + `x\\`y` + _z9 + a.b").unwrap();
    let names: Vec<&str> = e.fields().iter().map(|f| &**f).collect();
    assert_eq!(names, ["a.b", "odd name", "and", "x`y", "_z9"]);
    assert_eq!(
        e.canonical(),
        "(((((a.b + `odd name`) + `and`) + `x\\`y`) + _z9) + a.b)"
    );
    // A backquoted name is never a function.
    assert_eq!(canon("`abs` + 1"), "(abs + 1)");
}

#[test]
fn precedence_is_or_and_not_comparison_sum_product_unary() {
    for (src, want) in [
        ("a or b and c", "(a or (b and c))"),
        ("a and b or c", "((a and b) or c)"),
        ("not a and b", "((not a) and b)"),
        ("not a = 1", "(not (a = 1))"),
        ("not not a", "(not (not a))"),
        ("a = 1 or b <> 2", "((a = 1) or (b != 2))"),
        ("a == b", "(a = b)"),
        ("a + b * c", "(a + (b * c))"),
        ("a - b - c", "((a - b) - c)"),
        ("a / b % c * d", "(((a / b) % c) * d)"),
        ("-a * b", "((-a) * b)"),
        ("- -a", "(-(-a))"),
        ("a - -1", "(a - (-1))"),
        ("a + b < c * d", "((a + b) < (c * d))"),
        ("(a + b) * c", "((a + b) * c)"),
        (
            "a in (1, -2, 3.5) and b not in ('x')",
            "((a in (1, -2, 3.5)) and (b not in ('x')))",
        ),
        ("a + 1 is not null", "((a + 1) is not null)"),
        ("not a is null", "(not (a is null))"),
        (
            "ABS(a) + Min(a, b, 1) - max(c) + coalesce(d, 0)",
            "(((abs(a) + min(a, b, 1)) - max(c)) + coalesce(d, 0))",
        ),
        (
            "a >= b Or c <= d AND e > f",
            "((a >= b) or ((c <= d) and (e > f)))",
        ),
    ] {
        assert_eq!(canon(src), want, "{src}");
        // The canonical form reads back as itself.
        assert_eq!(canon(want), want, "{want}");
    }
}

#[test]
fn syntax_errors_say_where_and_what() {
    for (src, want) in [
        (
            "",
            "at 0: expected an expression, found the end of the expression",
        ),
        (
            "a +",
            "at 3: expected an expression, found the end of the expression",
        ),
        (
            "(a + 1",
            "at 6: expected `)` to close the `(` at 0, found the end of the expression",
        ),
        (
            "a b",
            "at 2: expected an operator or the end of the expression, found `b`",
        ),
        (
            "a < b < c",
            "at 6: comparisons do not chain: put parentheses around one, or join them with `and` (found `<`)",
        ),
        (
            "a = 1 is null",
            "at 6: comparisons do not chain: put parentheses around one, or join them with `and` (found `is`)",
        ),
        (
            "a is 1",
            "at 5: expected `null` or `not null` after `is`, found `1`",
        ),
        ("a in 1", "at 5: expected `(` after `in`, found `1`"),
        ("a in ()", "at 6: an `in` list cannot be empty"),
        (
            "a in (b)",
            "at 6: an `in` list holds literals (numbers, strings, true, false, null), found `b`",
        ),
        (
            "a in (1 2)",
            "at 8: expected `,` or `)` to close the `in` list opened at 5, found `2`",
        ),
        ("'abc", "at 0: this string is never closed"),
        (
            r"'a\nb'",
            r#"at 2: unknown escape `\n` in a string (the escapes are `\'`, `\"`, `\\`)"#,
        ),
        ("``", "at 0: a quoted name cannot be empty"),
        ("a ! b", "at 2: unknown operator `!` (use `!=` or `not`)"),
        (
            "a # b",
            "at 2: unexpected character `#` (a name with such characters is written in backquotes: `a name`)",
        ),
        ("12abc", "at 0: `12abc` is not a number"),
        ("1.2.3", "at 0: `1.2.3` is not a number"),
        (
            "9223372036854775808",
            "at 0: the integer `9223372036854775808` does not fit in 64 bits (write `9223372036854775808.0` for a float)",
        ),
        ("1e999", "at 0: the number `1e999` is too large"),
        (
            "foo(1)",
            "at 0: unknown function `foo` (the functions are abs, min, max and coalesce)",
        ),
        (
            "min(1, 2",
            "at 8: expected `,` or `)` to close the `(` of `min` at 3, found the end of the expression",
        ),
        ("a = not b", "at 4: expected an expression, found `not`"),
    ] {
        assert_eq!(error(src), want, "{src}");
    }
}

#[test]
fn type_errors_say_where_and_what() {
    for (src, want) in [
        (
            "'a' + 1",
            "at 4: `+` needs numbers, but its left side is a string",
        ),
        (
            "value > 1 and 'a' + 1",
            "at 18: `+` needs numbers, but its left side is a string",
        ),
        (
            "value - 'abc'",
            "at 6: `-` needs numbers, but its right side is a string",
        ),
        (
            "-'x'",
            "at 0: `-` needs a number, but its operand is a string",
        ),
        (
            "not 5",
            "at 0: `not` needs a boolean, but its operand is a number",
        ),
        (
            "value > 'x' and 3",
            "at 12: `and` needs booleans, but its right side is a number",
        ),
        (
            "1 or a",
            "at 2: `or` needs booleans, but its left side is a number",
        ),
        ("1 = 'a'", "at 2: `=` cannot compare a number with a string"),
        (
            "true < a",
            "at 5: `<` needs numbers or strings, but its left side is a boolean",
        ),
        (
            "a >= (b = c)",
            "at 2: `>=` needs numbers or strings, but its right side is a boolean",
        ),
        (
            "a in (1, 'x')",
            "at 9: an `in` list holds values of one type, but it mixes a number and a string",
        ),
        (
            "'a' not in (1, 2)",
            "at 4: `in` cannot compare a string with a list of numbers",
        ),
        (
            "abs('x')",
            "at 4: `abs` needs a number, but its argument is a string",
        ),
        (
            "abs(1, 2)",
            "at 0: `abs` takes 1 argument, but 2 were given",
        ),
        ("abs()", "at 0: `abs` takes 1 argument, but 0 were given"),
        ("min()", "at 0: `min` needs at least 1 argument"),
        (
            "max(a, 1, true)",
            "at 10: `max` needs numbers, but argument 3 is a boolean",
        ),
        (
            "coalesce(a, 1, 'x')",
            "at 15: `coalesce` needs arguments of one type, but argument 2 is a number and argument 3 is a string",
        ),
        (
            "coalesce(a, null, 1) + 'x'",
            "at 21: `+` needs numbers, but its right side is a string",
        ),
    ] {
        assert_eq!(error(src), want, "{src}");
    }
}

#[test]
fn a_filter_must_be_a_condition() {
    assert!(Expr::parse_filter("value > threshold and threshold != 999999").is_ok());
    assert!(Expr::parse_filter("flag").is_ok()); // unknown: checked per event
    assert!(Expr::parse_filter("coalesce(flag, false)").is_ok());
    assert_eq!(
        Expr::parse_filter("value - threshold")
            .unwrap_err()
            .to_string(),
        "at 0: a filter must be a condition (true or false), but this expression is a number"
    );
    assert_eq!(
        Expr::parse_filter("'yes'").unwrap_err().to_string(),
        "at 0: a filter must be a condition (true or false), but this expression is a string"
    );
    assert_eq!(Expr::parse("a + 1").unwrap().ty(), Type::Num);
    assert_eq!(Expr::parse("a").unwrap().ty(), Type::Unknown);
    assert_eq!(Expr::parse("a is null").unwrap().ty(), Type::Bool);
    assert_eq!(Expr::parse("coalesce(a, 'x')").unwrap().ty(), Type::Str);
}

#[test]
fn errors_render_with_a_caret_under_the_position() {
    let src = "value > 'x' and 3";
    let e = Expr::parse(src).unwrap_err();
    assert_eq!(
        e.render(src),
        "at 12: `and` needs booleans, but its right side is a number\n  value > 'x' and 3\n              ^"
    );
    // On a later line, with a tab and a multi-byte character before the caret.
    let src = "a > 1 and\n\t'é' + b";
    let e = Expr::parse(src).unwrap_err();
    assert_eq!(e.pos, 16);
    assert_eq!(
        e.render(src),
        "at 16: `+` needs numbers, but its left side is a string (line 2)\n  \t'é' + b\n  \t    ^"
    );
    // At the end of the source.
    let e = Expr::parse("a +").unwrap_err();
    assert_eq!(
        e.render("a +"),
        "at 3: expected an expression, found the end of the expression\n  a +\n     ^"
    );
}

#[test]
fn nesting_is_bounded_but_generous() {
    let ok = format!("{}a{}", "(".repeat(90), ")".repeat(90));
    assert!(Expr::parse(&ok).is_ok());
    let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
    assert!(
        error(&deep).contains("nests too deeply"),
        "{}",
        error(&deep)
    );
    let long = vec!["a"; 500].join(" + ");
    assert!(error(&long).contains("nests too deeply"));
    let wide = format!("min({})", vec!["1"; 300].join(", "));
    assert!(error(&wide).contains("too large"), "{}", error(&wide));
    let wide_ok = format!("min({})", vec!["1"; 200].join(", "));
    assert_eq!(eval(&wide_ok), Some(Value::I64(1)));
}

#[test]
fn null_propagates_and_logic_is_three_valued() {
    for (src, want) in [
        ("missing", None),
        ("missing + 1", None),
        ("-missing", None),
        ("missing = 1", None),
        ("missing != missing", None),
        ("not missing", None),
        ("null = null", None),
        ("missing is null", Some(Value::Bool(true))),
        ("missing is not null", Some(Value::Bool(false))),
        ("i is null", Some(Value::Bool(false))),
        ("false and missing", Some(Value::Bool(false))),
        ("missing and false", Some(Value::Bool(false))),
        ("true and missing", None),
        ("true or missing", Some(Value::Bool(true))),
        ("missing or true", Some(Value::Bool(true))),
        ("false or missing", None),
        ("missing in (1, 2)", None),
        ("i in (1, 7)", Some(Value::Bool(true))),
        ("i in (1, 2)", Some(Value::Bool(false))),
        ("i in (1, null)", None),
        ("i in (7, null)", Some(Value::Bool(true))),
        ("i not in (1, 2)", Some(Value::Bool(true))),
        ("i not in (1, null)", None),
        ("i in (null)", None),
        ("coalesce(missing, null, i, 3)", Some(Value::I64(7))),
        ("coalesce(missing, null)", None),
        ("min(missing, 3, i)", Some(Value::I64(3))),
        ("max(missing, 3, i)", Some(Value::I64(7))),
        ("max(missing)", None),
    ] {
        assert_eq!(eval(src), want, "{src}");
    }
    // A null filter does not pass, nor does a non-boolean one.
    let e = std_event();
    assert!(!Expr::parse_filter("missing > 1").unwrap().eval_filter(&e));
    assert!(
        !Expr::parse_filter("not (missing > 1)")
            .unwrap()
            .eval_filter(&e)
    );
    assert!(!Expr::parse_filter("i").unwrap().eval_filter(&e));
    assert!(Expr::parse_filter("ok").unwrap().eval_filter(&e));
    assert!(
        Expr::parse_filter("missing is null")
            .unwrap()
            .eval_filter(&e)
    );
}

#[test]
fn a_wrong_typed_field_reads_as_null_for_its_operator() {
    for (src, want) in [
        ("name + 1", None),
        ("-name", None),
        ("not i", None),
        ("i and true", None),
        ("i and false", Some(Value::Bool(false))),
        ("name or true", Some(Value::Bool(true))),
        ("name = 1", None),
        ("name > i", None),
        ("ok < no", None),
        ("ok = ok", Some(Value::Bool(true))),
        ("ok != no", Some(Value::Bool(true))),
        ("name in (1, 2)", None),
        ("abs(name)", None),
        ("min(i, name)", None),
        ("coalesce(name, 0)", Some(Value::I64(0))),
        ("coalesce(name, missing)", Some(s("bts-1"))),
        ("name is null", Some(Value::Bool(false))),
    ] {
        assert_eq!(eval(src), want, "{src}");
    }
}

#[test]
fn ints_and_floats_mix() {
    for (src, want) in [
        ("i + j", Some(Value::I64(5))),
        ("i * j", Some(Value::I64(-14))),
        ("i - 10", Some(Value::I64(-3))),
        ("i + x", Some(Value::F64(8.5))),
        ("x * 2", Some(Value::F64(3.0))),
        // `/` always divides as floats; `%` keeps integers.
        ("i / 2", Some(Value::F64(3.5))),
        ("6 / 3", Some(Value::F64(2.0))),
        ("i % 4", Some(Value::I64(3))),
        ("-7 % 4", Some(Value::I64(-3))),
        ("x % 1", Some(Value::F64(0.5))),
        ("i / 0", None),
        ("i % 0", None),
        ("x / 0.0", None),
        ("x % 0", None),
        // Overflow and non-finite results are null.
        ("big + 1", None),
        ("big * 2", None),
        ("-9223372036854775808 - 1", None),
        ("-(-9223372036854775808)", None),
        ("abs(-9223372036854775808)", None),
        ("-9223372036854775808 % -1", None),
        (
            "-9223372036854775808 / -1",
            Some(Value::F64(9_223_372_036_854_775_808.0)),
        ),
        ("big + 1.0", Some(Value::F64(9_223_372_036_854_775_808.0))),
        ("1e308 * 10", None),
        ("abs(j)", Some(Value::I64(2))),
        ("abs(-1.5)", Some(Value::F64(1.5))),
        ("0 * -1.0", Some(Value::F64(0.0))),
        ("min(i, x, 3)", Some(Value::F64(1.5))),
        ("max(1, 1.0)", Some(Value::I64(1))),
        ("max(1.0, 1)", Some(Value::F64(1.0))),
        // Comparisons are exact across the two kinds.
        ("i = 7.0", Some(Value::Bool(true))),
        ("i < 7.5", Some(Value::Bool(true))),
        ("x > 1", Some(Value::Bool(true))),
        ("big = 9223372036854775807.0", Some(Value::Bool(false))),
        ("big < 9223372036854775807.0", Some(Value::Bool(true))),
        (
            "9007199254740993 > 9007199254740992.0",
            Some(Value::Bool(true)),
        ),
        (
            "-9223372036854775808 = -9223372036854775808.0",
            Some(Value::Bool(true)),
        ),
        ("'abc' < 'abd'", Some(Value::Bool(true))),
        ("'b' > 'abc'", Some(Value::Bool(true))),
    ] {
        assert_eq!(eval(src), want, "{src}");
    }
    // -0.0 comes out as 0.0, as Value::float stores it.
    match eval("0 * -1.0") {
        Some(Value::F64(z)) => assert!(z.is_sign_positive()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_name_not_among_the_fields_is_a_key_tag() {
    let e = event(vec![
        ("value", Value::I64(1)),
        ("station_id", Value::I64(5)),
    ]);
    let tag = |src: &str| Expr::parse(src).unwrap().eval(&e);
    // A field shadows a tag of the same name.
    assert_eq!(tag("station_id"), Some(Value::I64(5)));
    let e = event(vec![("value", Value::I64(1))]);
    let tag = |src: &str| Expr::parse(src).unwrap().eval(&e);
    assert_eq!(tag("station_id"), Some(s("42")));
    assert_eq!(tag("station_id = '42'"), Some(Value::Bool(true)));
    assert_eq!(tag("station_id in ('41', '42')"), Some(Value::Bool(true)));
    assert_eq!(tag("station_id = 42"), None); // tags are strings
    // An escaped tag value compares and reads unescaped.
    assert_eq!(tag("site"), Some(s("a,b=c")));
    assert_eq!(tag("site = 'a,b=c'"), Some(Value::Bool(true)));
    assert_eq!(tag("site > 'a,b'"), Some(Value::Bool(true)));
    assert_eq!(tag("site < 'a,c'"), Some(Value::Bool(true)));
    assert_eq!(tag("site = site"), Some(Value::Bool(true)));
    assert_eq!(tag("site in ('a,b=c')"), Some(Value::Bool(true)));
    assert_eq!(tag("alarm_id"), None);
}

#[test]
fn derived_fields_apply_in_order_and_null_removes() {
    let derived: Vec<(FieldName, Expr)> = [
        ("excess", "value - threshold"),
        ("double", "excess * 2"),
        ("value", "value + 0.5"),
        ("gone", "missing"),
        ("threshold", "null"),
    ]
    .into_iter()
    .map(|(n, src)| (Arc::from(n), Expr::parse(src).unwrap()))
    .collect();
    let mut e = event(vec![
        ("value", Value::I64(10)),
        ("threshold", Value::I64(4)),
        ("gone", Value::I64(1)),
    ]);
    apply_derived(&derived, &mut e);
    assert_eq!(
        e.fields,
        vec![
            (Arc::from("value"), Value::F64(10.5)),
            (Arc::from("excess"), Value::I64(6)),
            (Arc::from("double"), Value::I64(12)),
        ]
    );
}

#[test]
fn an_expr_serializes_as_its_source_and_compares_by_it() {
    let e = Expr::parse("a > 1").unwrap();
    let bytes = postcard::to_stdvec(&e).unwrap();
    let back: Expr = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, e);
    assert_eq!(back.source(), "a > 1");
    assert_eq!(format!("{e:?}"), "Expr(\"a > 1\")");
    assert_ne!(e, Expr::parse("a>1").unwrap());
    let bad = postcard::to_stdvec("a >").unwrap();
    assert!(postcard::from_bytes::<Expr>(&bad).is_err());
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Expr>();
}

#[test]
fn and_or_skip_the_right_side_only_when_the_left_decides() {
    // The right side would be null; skipping it must not change the result.
    for (src, want) in [
        ("no and missing > 1", Some(Value::Bool(false))),
        ("ok or missing > 1", Some(Value::Bool(true))),
        ("(no and missing) is null", Some(Value::Bool(false))),
        ("(ok and missing) is null", Some(Value::Bool(true))),
        ("coalesce(no and missing, true)", Some(Value::Bool(false))),
        ("(ok or i) = true", Some(Value::Bool(true))),
        ("(no or missing) is null", Some(Value::Bool(true))),
    ] {
        assert_eq!(eval(src), want, "{src}");
    }
}
