//! Evaluates an expression (or the equivalent closure) on N BTS alarm events, for
//! instruction counts: `valgrind --tool=callgrind target/release/examples/expr_profile
//! filter 100000` (modes `filter`, `derive`, `closure-filter`, `closure-derive`,
//! `none` for the setup alone). Subtracting two runs with different N gives the
//! instructions per event without the setup.

use reckon_core::expr::Expr;
use reckon_core::{Event, EventTime, Key, Value};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "filter".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    // Seed 004's shape, with a tenth of the thresholds the 999999 "none".
    let events: Vec<Event> = (0..1000u32)
        .map(|i| Event {
            stream: "alarms".into(),
            key: Key::from_tags([
                ("station_id", format!("11611150{}", 20 + i % 40)),
                ("alarm_id", format!("{}", 300 + i % 25)),
            ])
            .expect("two distinct tags"),
            time: EventTime::from_secs(i64::from(i)),
            id: None,
            fields: vec![
                ("id".into(), Value::I64(10_167_673 + i64::from(i))),
                ("value".into(), Value::F64(f64::from(i % 50))),
                (
                    "threshold".into(),
                    Value::F64(if i % 10 == 0 { 999_999.0 } else { 25.0 }),
                ),
            ],
        })
        .collect();
    let filter = Expr::parse_filter("value > threshold and threshold != 999999").expect("filter");
    let derive = Expr::parse("value - threshold").expect("derive");
    let mut hits = 0usize;
    for e in events.iter().cycle().take(n) {
        let e = black_box(e);
        hits += match mode.as_str() {
            "filter" => usize::from(filter.eval_filter(e)),
            "derive" => usize::from(black_box(derive.eval(e)).is_some()),
            "closure-filter" => usize::from(closure_filter(e)),
            "closure-derive" => usize::from(black_box(closure_derive(e)).is_some()),
            _ => 0,
        };
    }
    println!("{mode}: {hits} of {n}");
}

fn closure_filter(e: &Event) -> bool {
    let num = |name| e.field(name).and_then(Value::as_f64);
    match (num("value"), num("threshold")) {
        (Some(v), Some(t)) => v > t && t != 999_999.0,
        _ => false,
    }
}

fn closure_derive(e: &Event) -> Option<Value> {
    match (e.field("value")?, e.field("threshold")?) {
        (Value::I64(v), Value::I64(t)) => v.checked_sub(*t).map(Value::I64),
        (v, t) => Value::float(v.as_f64()? - t.as_f64()?).ok(),
    }
}
