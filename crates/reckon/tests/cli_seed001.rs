//! The README's seed 001 example (`examples/seed001/run.sh`) runs as written against the
//! real binary: `reckon serve` with the example's `[[reconcile]]`, curl posting audit
//! records and CloudEvents, `reckon query` showing `missing`, `found` and the corrected
//! completeness.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_seed001_example_runs_as_the_readme_shows() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "the example needs curl (Debian: apt-get install curl)"
    );
    let out = Command::new("bash")
        .arg(format!("{root}/examples/seed001/run.sh"))
        .env("RECKON", env!("CARGO_BIN_EXE_reckon"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let feed_start = stdout.find("== the change feed").unwrap();
    let feed_end = stdout.find("== p2's payment arrives late").unwrap();
    let feed: serde_json::Value =
        serde_json::from_str(stdout[feed_start..feed_end].split_once('\n').unwrap().1).unwrap();
    let kinds: Vec<(String, String, u64)> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().into(),
                c["key"].as_str().unwrap().into(),
                c["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("missing".into(), "id=p2".into(), 1),
            ("completeness".into(), "".into(), 1)
        ],
        "{stdout}"
    );
    assert_eq!(feed["changes"][1]["values"]["matched"], 2, "{stdout}");
    // The corrected period: v2, audited 3, matched 3, missing 0, one duplicate audit,
    // one unexpected payment (p9), 100 %.
    assert!(
        stdout.contains(
            "payments_recon,,2024-05-01T10:00:00Z,2024-05-01T10:15:00Z,2,completeness,3,3,3,0,1,0,1,100,"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("payments_recon,id=p2,2024-05-01T10:00:00Z,2024-05-01T10:15:00Z,1,missing,1,missing,2024-05-01T10:01:00Z,2024-05-01T10:30:00Z,ledger,b-17,"),
        "{stdout}"
    );
    assert!(
        stdout.contains(",2,found,1,found,2024-05-01T10:01:00Z,,,,2024-05-01T10:30:00Z,2024-05-01T10:01:29Z,2024-05-01T10:30:00Z,29,"),
        "{stdout}"
    );
}
