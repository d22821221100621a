//! Real brokers for connector tests, each a private server on a free port of its own
//! (Debian's `nats-server` with JetStream and `mosquitto`), so a test can kill one and
//! start it again without touching the machine's shared services. Without the binary a
//! test prints SKIP; with `RECKON_REQUIRE_SERVICES` set (CI) that is a panic instead.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `nats-server -js`, its JetStream store in the broker's directory.
    Nats,
    /// `mosquitto`, queueing without limit for persistent sessions.
    Mosquitto,
}

/// A broker process on 127.0.0.1:`port`; killed when dropped.
#[derive(Debug)]
pub struct Broker {
    kind: Kind,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn binary(kind: Kind) -> &'static str {
    match kind {
        Kind::Nats => "nats-server",
        Kind::Mosquitto => "mosquitto",
    }
}

fn find(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// A free TCP port on 127.0.0.1 (free when asked; the broker binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Broker {
    /// Starts a broker of `kind` keeping its files in `dir`, or `None` after printing
    /// SKIP when its binary is missing.
    pub fn start(kind: Kind, dir: &Path) -> Option<Broker> {
        if find(binary(kind)).is_none() {
            // The project's script installs Debian's package where it can.
            services();
        }
        if find(binary(kind)).is_none() {
            assert!(
                std::env::var("RECKON_REQUIRE_SERVICES").is_err(),
                "{} is not installed (Debian package {})",
                binary(kind),
                binary(kind)
            );
            eprintln!("SKIP: {} is not installed", binary(kind));
            return None;
        }
        let mut b = Broker {
            kind,
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        b.restart();
        Some(b)
    }

    /// The broker's URL (`nats://127.0.0.1:P` or `mqtt://127.0.0.1:P`).
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            Kind::Mosquitto => format!("mqtt://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the broker with SIGKILL (what it held in memory is gone; NATS keeps its
    /// JetStream files).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port and files; returns once it accepts
    /// connections.
    pub fn restart(&mut self) {
        self.kill();
        let path = find(binary(self.kind)).unwrap_or_else(|| binary(self.kind).into());
        let mut cmd = Command::new(path);
        match self.kind {
            Kind::Nats => {
                cmd.args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(self.dir.join("jetstream"));
            }
            Kind::Mosquitto => {
                let conf = self.dir.join("mosquitto.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 100\n",
                        self.port
                    ),
                )
                .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
                cmd.arg("-c").arg(conf);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary(self.kind)));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on port {} within 20 s",
                binary(self.kind),
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `scripts/services.sh` (starts, or installs and starts, the machine's
/// PostgreSQL, Redis, Mosquitto and NATS when they do not answer), once per process.
fn services() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = Command::new("bash")
            .arg(crate::python::repo().join("scripts/services.sh"))
            .stdout(Stdio::null())
            .status();
    });
}

/// Whether a TCP service answers on 127.0.0.1:`port` (after `scripts/services.sh` had
/// a chance to start it); if not, prints SKIP and returns `false` (a panic with
/// `RECKON_REQUIRE_SERVICES` set, as in CI).
pub fn service_up(name: &str, port: u16) -> bool {
    let answers = || {
        TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .is_ok()
    };
    if answers() {
        return true;
    }
    services();
    if answers() {
        return true;
    }
    assert!(
        std::env::var("RECKON_REQUIRE_SERVICES").is_err(),
        "{name} is not reachable on 127.0.0.1:{port} (scripts/services.sh starts it)"
    );
    eprintln!("SKIP: {name} is not reachable on 127.0.0.1:{port}");
    false
}
