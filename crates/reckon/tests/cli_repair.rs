//! `reckon repair` end to end: a store poisoned by an event dated 2200 (ingested with
//! the guard off) and finished by `ingest --finish` is repaired; `verify` passes and
//! normal events are accepted again. A locked store and a finished store say why.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn reckon(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn write_config(dir: &Path, max_future: &str) -> String {
    let path = dir.join("reckon.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
path = "{}"
[[stream]]
name = "water_level"
key_fields = ["i"]
time_format = "rfc3339"
max_future = "{max_future}"
[[pipeline]]
name = "mean_1h"
stream = "water_level"
window = {{ type = "tumbling", size = "1h" }}
aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
allowed_lateness = "2h"
retention = "7d"
"#,
            dir.join("data").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn repair_recovers_a_poisoned_and_finished_store_and_verify_passes() {
    let dir = tempfile::tempdir().unwrap();
    let off = write_config(dir.path(), "off");
    let events = "{\"i\":\"1\",\"time\":\"2024-03-01T10:00:00Z\",\"level\":1}\n\
                  {\"i\":\"1\",\"time\":\"2024-03-01T10:30:00Z\",\"level\":3}\n\
                  {\"i\":\"1\",\"time\":\"2200-01-01T00:00:00Z\",\"level\":99}\n\
                  {\"i\":\"1\",\"time\":\"2024-03-01T11:00:00Z\",\"level\":5}\n";
    let o = reckon(
        &[
            "ingest",
            "-c",
            &off,
            "-s",
            "water_level",
            "--batch",
            "1",
            "--finish",
        ],
        events,
    );
    assert!(o.status.success(), "{}", text(&o));
    // Finished: ingest refuses and says what to do.
    let o = reckon(
        &["ingest", "-c", &off, "-s", "water_level"],
        "{\"i\":\"1\",\"time\":\"2024-03-01T12:00:00Z\",\"level\":7}\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("reckon ingest --finish") && err.contains("reckon repair"),
        "{err}"
    );

    let guarded = write_config(dir.path(), "1h");
    let o = reckon(&["repair", "-c", &guarded], "");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("1 events beyond max_future moved to dead letters"),
        "{out}"
    );
    let o = reckon(&["verify", "-c", &guarded], "");
    assert!(o.status.success(), "{}", text(&o));
    // Normal events are accepted again, late ones included.
    let o = reckon(
        &["ingest", "-c", &guarded, "-s", "water_level"],
        "{\"i\":\"1\",\"time\":\"2024-03-01T10:15:00Z\",\"level\":2}\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = reckon(&["verify", "-c", &guarded], "");
    assert!(o.status.success(), "{}", text(&o));
    // Repair again: nothing to do.
    let o = reckon(&["repair", "-c", &guarded], "");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("nothing to repair"),
        "{}",
        text(&o)
    );
}
