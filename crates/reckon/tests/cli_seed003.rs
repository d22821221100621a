//! The README's seed 003 example (`examples/seed003/run.sh`) runs as written against the
//! real binary and prints the counts the README describes: the seed's two queries, the
//! café's real-time count next to its reconciled one, and the lobby's count at 17:24:25
//! corrected by two late crossings while `--known-at` still answers what was known, then
//! a late mapping change that moves a sensor's crossings from the cafe to the lobby.
#![allow(clippy::unwrap_used)]

use std::process::Command;

/// The JSON object printed after the line that starts with `header` (the `nth` one).
fn answer(stdout: &str, header: &str, nth: usize) -> serde_json::Value {
    let at = stdout
        .find(header)
        .unwrap_or_else(|| panic!("no `{header}` in:\n{stdout}"));
    let rest = stdout[at..].split_once('\n').unwrap().1;
    let mut de = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    de.nth(nth).unwrap().unwrap()
}

#[test]
fn the_seed003_example_runs_as_the_readme_shows() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("bash")
        .arg(format!("{root}/examples/seed003/run.sh"))
        .env("RECKON", env!("CARGO_BIN_EXE_reckon"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let posted = answer(&stdout, "== crossings as the DPUs sent them", 0);
    assert_eq!(
        (posted["accepted"].clone(), posted["duplicates"].clone()),
        (11.into(), 1.into()),
        "{stdout}"
    );
    let lobby = answer(&stdout, "== the lobby now", 0);
    assert_eq!(
        (lobby["value"].clone(), lobby["real_time"].clone()),
        (2.into(), 2.into()),
        "{stdout}"
    );
    let cafe = answer(&stdout, "== the cafe now", 0);
    assert_eq!(
        (
            cafe["value"].clone(),
            cafe["real_time"].clone(),
            cafe["difference"].clone()
        ),
        (1.into(), 2.into(), (-1).into()),
        "{stdout}"
    );
    assert_eq!(
        answer(&stdout, "== the lobby at 2018-02-24T17:24:25.493Z", 0)["value"],
        2
    );
    assert_eq!(
        answer(&stdout, "== the lobby at 2018-02-24T17:24:25.493Z", 1)["value"],
        serde_json::Value::Null
    );
    assert_eq!(
        answer(&stdout, "== the lobby at 17:24:25.493 again", 0)["value"],
        0,
        "{stdout}"
    );
    let feed = answer(&stdout, "== the change feed since", 0);
    let mut minutes: Vec<(String, u64)> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["window"]["start"].as_str().unwrap()[11..16].to_string(),
                c["version"].as_u64().unwrap(),
            )
        })
        .collect();
    minutes.sort();
    assert_eq!(
        minutes,
        [
            ("17:06".into(), 1),
            ("17:07".into(), 1),
            ("17:10".into(), 3),
            ("17:20".into(), 3)
        ],
        "{stdout}"
    );
    // The late mapping change: d3's crossings (17:04 in, 17:30 out) move to the lobby.
    assert_eq!(
        answer(&stdout, "== the lobby at 17:24:25.493 and the cafe now", 0)["value"],
        1,
        "{stdout}"
    );
    assert_eq!(
        answer(&stdout, "== the lobby at 17:24:25.493 and the cafe now", 1)["value"],
        1,
        "{stdout}"
    );
    let moved = answer(&stdout, "== the change feed since (recomputed)", 0);
    let changes = moved["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["kind"] == "recomputed"),
        "{stdout}"
    );
    let at = |key: &str, minute: &str| {
        changes
            .iter()
            .find(|c| c["key"] == key && c["window"]["start"].as_str().unwrap()[11..16] == *minute)
            .unwrap_or_else(|| panic!("no change of {key} at {minute}:\n{stdout}"))
    };
    assert_eq!(
        at("space=cafe", "17:04")["count"],
        0,
        "the cafe's 17:04 is emptied"
    );
    assert_eq!(
        at("space=lobby", "17:04")["values"]["delta"],
        1,
        "the lobby's 17:04 gains it"
    );
    let known = answer(&stdout, "== the lobby at 17:24:25 as the results said", 0);
    assert_eq!(
        (known["value"].clone(), known["resolution"].clone()),
        (2.into(), "bucket".into()),
        "{stdout}"
    );
}
