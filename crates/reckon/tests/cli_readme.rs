//! Every command the README shows runs as written, from a fresh clone.
//!
//! Each line of each ```sh block of README.md is run in order with `sh -c`, in a temporary
//! directory that sees the repository's `examples/` (stores are created there), with the
//! freshly built `reckon` first on PATH (`cargo run --release -p reckon --` is the same
//! binary, so it is rewritten to `reckon`), and asserted to succeed. `reckon serve` is
//! started in the background on a free port, which replaces `127.0.0.1:8086` in the
//! commands after it (and is `RECKON_URL` for `reckon query`); commands that need a
//! server when none runs get one on `examples/seed000/reckon.toml` (the demo's
//! "where to look" commands name the same pipeline). Streams that never end (`curl -N`,
//! `--follow`) must still be streaming after 3 s. A command that can't run in a test
//! is on the short allow-list below with its reason; any other command that fails, or a
//! new one that is neither runnable nor allowed, fails this test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Commands that are not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo test --workspace --locked --no-fail-fast",
        "the test suite itself (asserted below to be exactly what .ci/run runs)",
    ),
    (
        "cargo run --release -p reckon -- demo --webhook https://hooks.slack.com/services/…",
        "a placeholder for the user's own Slack URL",
    ),
    (
        "cargo run --release -p reckon -- demo",
        "a minute of event time in release mode; cli_demo runs the same demo with fewer hours",
    ),
    (
        "cargo run --release -p reckon -- demo --allowed-lateness-minutes 60",
        "as above; cli_demo covers the cold path",
    ),
    (
        "cargo run --release -p reckon -- demo --in-process",
        "as above; cli_demo runs --in-process",
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The command lines of every ```sh block, comments removed, with their README line.
fn sh_commands(readme: &str) -> Vec<Vec<(usize, String)>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<(usize, String)>> = None;
    for (n, line) in readme.lines().enumerate() {
        let t = line.trim_start();
        if let Some(block) = current.as_mut() {
            if t.starts_with("```") {
                blocks.push(current.take().unwrap());
                continue;
            }
            let cmd = match line.find("  #") {
                Some(i) => &line[..i],
                None => line,
            }
            .trim();
            if !cmd.is_empty() && !cmd.starts_with('#') {
                block.push((n + 1, cmd.to_string()));
            }
        } else if t == "```sh" {
            current = Some(Vec::new());
        }
    }
    blocks
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(workdir: &Path, path: &str, config: &str) -> Server {
        let mut child = Command::new("reckon")
            .env("PATH", path)
            .current_dir(workdir)
            .args(["serve", "--config", config, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("reckon listening on http://")
            .unwrap_or_else(|| panic!("`reckon serve --config {config}` printed {line:?}"))
            .to_string();
        Server { child, addr }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "reckon serve stopped with {status}");
    }
}

/// Whether a command talks to a running server.
fn needs_server(cmd: &str) -> bool {
    cmd.contains("127.0.0.1:8086") || cmd.starts_with("reckon query")
}

/// Whether a command opens the store itself (the server must not hold it).
fn needs_store(cmd: &str) -> bool {
    [
        "reckon ingest",
        "reckon verify",
        "reckon repair",
        "reckon replay",
    ]
    .iter()
    .any(|p| cmd.starts_with(p))
}

#[test]
fn every_readme_command_runs_as_written() {
    let root = repo().canonicalize().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let blocks = sh_commands(&readme);
    // The README's first block is the two commands: the demo and the tests, which are
    // exactly what CI runs.
    assert_eq!(blocks[0].len(), 2, "{:?}", blocks[0]);
    assert!(blocks[0][0].1.ends_with(" demo"), "{:?}", blocks[0]);
    assert!(
        ci.lines().any(|l| l.trim() == blocks[0][1].1),
        "the README's test command `{}` is not what .ci/run runs",
        blocks[0][1].1
    );

    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("examples"), work.path().join("examples")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_reckon")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut server: Option<Server> = None;
    let mut ran = 0;
    let started = Instant::now();
    for block in &blocks {
        for (line, written) in block {
            if let Some((_, why)) = NOT_RUN.iter().find(|(c, _)| c == written) {
                eprintln!("README:{line}: not run ({why}): {written}");
                continue;
            }
            let mut cmd = written
                .replace("cargo run --release -p reckon -- ", "reckon ")
                .trim_end_matches('&')
                .trim()
                .to_string();
            if let Some(config) = cmd.strip_prefix("reckon serve --config ") {
                if let Some(s) = server.take() {
                    s.stop();
                }
                server = Some(Server::start(work.path(), &path, config.trim()));
                ran += 1;
                continue;
            }
            if needs_store(&cmd)
                && let Some(s) = server.take()
            {
                s.stop();
            }
            if needs_server(&cmd) && server.is_none() {
                server = Some(Server::start(
                    work.path(),
                    &path,
                    "examples/seed000/reckon.toml",
                ));
            }
            let url = server.as_ref().map(|s| s.addr.clone()).unwrap_or_default();
            cmd = cmd.replace("127.0.0.1:8086", &url);
            if let Some(rest) = cmd.strip_prefix("curl ") {
                // Fail on an HTTP error status, quietly otherwise.
                cmd = format!("curl -sS --fail-with-body {rest}");
            }
            let streams = cmd.contains("curl -sS --fail-with-body -N") || cmd.contains("--follow");
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(if streams {
                    format!("timeout 3 {cmd}")
                } else {
                    cmd.clone()
                })
                .current_dir(work.path())
                .env("PATH", &path)
                .env("RECKON", env!("CARGO_BIN_EXE_reckon"))
                .env("RECKON_URL", format!("http://{url}"))
                .env("RECKON_LOG", "warn");
            let out = c.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let ok = if streams {
                // Still streaming after 3 s (`timeout` ends it with 124; an HTTP error
                // or a refused connection would have ended it at once with another code).
                out.status.code() == Some(124)
            } else {
                out.status.success()
            };
            assert!(
                ok,
                "README:{line}: `{written}` (run as `{cmd}`) failed: {}\nstdout: {stdout:.2000}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    if let Some(s) = server.take() {
        s.stop();
    }
    assert!(ran >= 25, "only {ran} README commands ran");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the README's commands took {:?}",
        started.elapsed()
    );
}
