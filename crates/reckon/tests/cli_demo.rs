//! `reckon demo` as a user runs it: the real binary, its output and exit codes.

use std::process::Command;

fn reckon(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reckon"))
        .args(args)
        .output()
        .expect("run reckon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_through_the_server_shows_corrections_webhook_and_verifies() {
    let (code, out, err) = reckon(&[
        "demo",
        "--hours",
        "2",
        "--locations",
        "10",
        "--speed",
        "7200",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for needle in [
        "curl -N -H 'Accept: text/event-stream' http://127.0.0.1:",
        "/v1/pipelines/water_level_mean_1h/changes",
        "history: ",
        "events/s",
        "webhook message (seed 000's Slack alert, as reckon sends it)",
        "Measurement *water_level*",
        "count 360 → 361",
        "verified: all",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("correction #") && l.contains("v1 → v2") && l.contains("mean")),
        "{out}"
    );
}

#[test]
fn demo_in_process_shows_corrections_and_verifies_every_window() {
    let (code, out, err) = reckon(&[
        "demo",
        "--in-process",
        "--hours",
        "2",
        "--locations",
        "5",
        "--allowed-lateness-minutes",
        "120",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for needle in [
        "window closed",
        "late point",
        "cold recompute",
        "WARNING: Late arriving data.",
        "Old Count:  360",
        "New Count : 361",
        "verified: all",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    // Every line of a correction names old and new values and versions.
    assert!(
        out.lines().any(|l| l.starts_with("late point")
            && l.contains("→")
            && l.contains(" late, window [")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("cold recompute")
            && l.contains("count 360 → 361")
            && l.contains("v1 → v2")),
        "{out}"
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let (code, _, err) = reckon(&["demo", "--late-probability", "2", "--in-process"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--late-probability must be between 0 and 1, got 2"),
        "{err}"
    );
    let (code, _, err) = reckon(&["demo", "--allowed-lateness-minutes=-5", "--in-process"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("allowed_lateness must not be negative"),
        "{err}"
    );
    let (code, _, err) = reckon(&["demo", "--late-probability", "2"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--late-probability must be between 0 and 1, got 2"),
        "{err}"
    );
    let (code, _, err) = reckon(&["demo", "--speed", "0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--speed must be a positive number, got 0"),
        "{err}"
    );
    let (code, _, err) = reckon(&["demo", "--allowed-lateness-minutes=-5"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("allowed_lateness must not be negative"),
        "{err}"
    );
}

#[test]
fn demo_fell_back_to_another_port_silently_and_hid_the_webhook_error() {
    // A taken port, and a webhook URL nobody listens on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    // Port 1 (tcpmux) is outside the ephemeral range, so the demo's own fallback port can
    // never be it; a port freed by this test could be handed back to the demo, which then
    // answered the webhook with its own 404 (a flake seen in CI).
    let closed = "127.0.0.1:1";
    assert!(
        std::net::TcpStream::connect(closed).is_err(),
        "something listens on {closed}; this test needs it closed"
    );
    let hook = format!("http://{closed}/hook");
    let listen = taken_addr.to_string();
    let (code, out, err) = reckon(&[
        "demo",
        "--hours",
        "2",
        "--locations",
        "10",
        "--speed",
        "7200",
        "--listen",
        &listen,
        "--webhook",
        &hook,
    ]);
    drop(taken);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for needle in [
        format!("{listen} is taken"),
        "pass --url http://127.0.0.1:".to_owned(),
        "webhook delivery failed:".to_owned(),
    ] {
        assert!(
            out.contains(&needle),
            "missing `{needle}` in:\n{out}\nstderr:\n{err}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("webhook delivery failed:")
                && l.to_lowercase().contains("refused")),
        "{out}"
    );
}
