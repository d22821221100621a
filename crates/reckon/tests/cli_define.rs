//! Seed 004's pipelines-by-API example (`examples/seed004/define.sh`) runs as written
//! against the real binary: a pipeline and an alert rule defined while reckon runs
//! start from the stored alarms, and their windows and episodes equal a batch
//! computation over `alarms.csv` (closed windows only); the same file again changes
//! nothing; a changed window starts fresh as `station_alarms@2` with the rule restarted
//! as `station_busy@2`, again equal to the batch computation; a restart keeps them; a
//! typo gets the configuration file's message; another tenant sees nothing; deletion
//! follows what reads what.
#![allow(clippy::unwrap_used)]

use reckon_core::Span;
use reckon_testkit::bts::load_bts;
use reckon_testkit::rollup::tumbling_window;
use std::collections::BTreeMap;
use std::process::Command;

/// The lines printed after the line that starts with `header`, up to the next `==`.
fn section<'a>(stdout: &'a str, header: &str) -> Vec<&'a str> {
    let at = stdout
        .find(header)
        .unwrap_or_else(|| panic!("no `{header}` in:\n{stdout}"));
    stdout[at..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("=="))
        .collect()
}

/// What the script prints of `minutes`-minute windows of alarms.csv, computed from the
/// rows: the closed windows (ending at or before the watermark, the latest alarm minus
/// the 10 minutes of out-of-orderness), the alarms above threshold in them, and the
/// episodes of `above >= 5` (a run of consecutive such windows fires at its first).
fn expected(minutes: i64, pipeline: &str, rule: &str) -> Vec<String> {
    let rows = load_bts(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed004/alarms.csv"
    )));
    let watermark = rows.iter().map(|r| r.start).max().unwrap().0 - Span::minutes(10).0;
    let mut windows: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    for r in &rows {
        let w = tumbling_window(r.start, Span::minutes(minutes));
        if w.end.0 <= watermark {
            *windows
                .entry((r.alarm_id.clone(), r.station_id.clone(), w.start.0))
                .or_default() += u64::from(r.above());
        }
    }
    let size = Span::minutes(minutes).0;
    let first_end = windows
        .keys()
        .map(|k| k.2)
        .filter(|s| s % 3_600_000_000_000 == 0)
        .map(|s| reckon_core::EventTime(s + size).to_string()[11..16].to_string())
        .min()
        .unwrap();
    let mut out = vec![format!(
        "{pipeline} windows {} ending {first_end} above {}",
        windows.len(),
        windows.values().sum::<u64>()
    )];
    let mut episodes: Vec<String> = windows
        .iter()
        .filter(|((a, s, start), above)| {
            **above >= 5
                && windows
                    .get(&(a.clone(), s.clone(), start - size))
                    .is_none_or(|b| *b < 5)
        })
        .map(|((a, s, start), _)| {
            format!(
                "{rule} alarm_id={a},station_id={s} {} resolved",
                reckon_core::EventTime(*start)
            )
        })
        .collect();
    episodes.sort();
    out.extend(episodes);
    out
}

#[test]
fn the_definitions_example_defines_replaces_and_deletes_while_reckon_runs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("bash")
        .arg(format!("{root}/examples/seed004/define.sh"))
        .env("RECKON", env!("CARGO_BIN_EXE_reckon"))
        .env_remove("RECKON_TOKEN")
        .env_remove("RECKON_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        section(&stdout, "== hanoi defines"),
        [
            "created: pipeline `station_alarms` created: it started from what its inputs hold already",
            "created: alert `station_busy` created: it started from what its inputs hold already",
        ]
    );
    let mut got = section(&stdout, "== the new pipeline started");
    got.extend(section(&stdout, "== the rule's episodes"));
    assert_eq!(
        got,
        expected(15, "station_alarms", "station_busy"),
        "{stdout}"
    );
    assert_eq!(
        section(&stdout, "== the same file again"),
        [
            "unchanged: pipeline `station_alarms` is unchanged: nothing restarted",
            "unchanged: alert `station_busy` is unchanged: nothing restarted",
        ]
    );
    let replaced = section(&stdout, "== a 30-minute window instead");
    assert!(
        replaced[0].starts_with("replaced: pipeline `station_alarms` changed")
            && replaced[0].contains("starts fresh as `station_alarms@2`")
            && replaced[0]
                .ends_with("alert `station_busy` reads it and starts fresh as `station_busy@2`"),
        "{stdout}"
    );
    assert_eq!(
        section(&stdout, "== station_alarms now means"),
        expected(30, "station_alarms@2", "station_busy@2"),
        "{stdout}"
    );
    assert_eq!(
        section(&stdout, "== after a restart"),
        [
            "pipeline station_alarms@2 {'size': '30m', 'type': 'tumbling'}",
            "alert station_busy@2 station_alarms",
        ]
    );
    assert_eq!(
        section(&stdout, "== a mistake is refused"),
        [
            "pipeline `typo`: 422 Unprocessable Entity: pipeline `typo` reads stream `alarm`, which no [[stream]] defines"
        ]
    );
    let saigon = section(&stdout, "== saigon sees none");
    assert_eq!(saigon[..3], ["{", "  \"definitions\": []", "}"]);
    assert!(saigon[3].contains("422") && saigon[3].contains("cannot contain `/`"));
    assert!(!saigon.join("\n").contains("station_busy"));
    let deleting = section(&stdout, "== deleting");
    assert!(deleting[0].starts_with("409 Conflict: cannot delete pipeline `station_alarms`"));
    assert!(deleting[0].contains("alert `station_busy@2` watches"));
    assert_eq!(
        deleting[1..],
        [
            "alert `station_busy@2` stopped; a new definition of `station_busy` will start fresh under a new identity",
            "pipeline `station_alarms@2` stopped; a new definition of `station_alarms` will start fresh under a new identity",
        ]
    );
}
