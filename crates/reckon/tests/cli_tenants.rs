//! Seed 004's tenants example (`examples/seed004/tenants.sh`) runs as written against the
//! real binary: `reckon token create --admin` ends single-user mode (401 without a
//! token), two tenants post to streams of the same name and each counts only its own
//! alarms, another tenant's name is 404, a write-only token reading is 403, a request
//! over the tenant's events/s quota is refused whole (429, Retry-After), and a tenant's
//! metrics hold only its own series.
#![allow(clippy::unwrap_used)]

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

#[test]
fn the_tenants_example_keeps_two_customers_apart() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("bash")
        .arg(format!("{root}/examples/seed004/tenants.sh"))
        .env("RECKON", env!("CARGO_BIN_EXE_reckon"))
        .env_remove("RECKON_TOKEN")
        .env_remove("RECKON_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        section(&stdout, "== now a request without a token"),
        ["401"]
    );
    // The alarms of hanoi (all 191 rows) and saigon (the last 100) in closed windows:
    // each its own, independently of the other posting to "alarms" too.
    assert_eq!(
        section(&stdout, "== alarms in each tenant's closed"),
        ["hanoi 138", "saigon 47"],
        "{stdout}"
    );
    assert_eq!(
        section(&stdout, "== saigon cannot reach hanoi's"),
        ["404", "403"]
    );
    assert_eq!(
        section(&stdout, "== saigon's quota is 120 events/s"),
        [
            "200 retry after ",
            "429 retry after 1",
            "series 25 accepted 200 throttled {'events_per_second': 1}"
        ],
        "{stdout}"
    );
    assert_eq!(
        section(&stdout, "== saigon's metrics"),
        [r#"reckon_events_accepted_total{stream="alarms"} 100"#]
    );
    assert_eq!(section(&stdout, "== tokens the operator manages"), ["4"]);
    // Tokens go to stdout alone; what they allow goes to stderr, never the secret twice.
    assert!(stderr.contains("of tenant saigon with scopes write:alarms, expires 20"));
    assert!(!stderr.contains("rk_"), "{stderr}");
}
