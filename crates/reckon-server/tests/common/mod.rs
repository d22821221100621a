//! Shared setup of the server tests: a configuration on a temporary store, and an app
//! serving on a real socket.
#![allow(dead_code, clippy::unwrap_used)]

use reckon_runtime::Config;
use reckon_server::{App, AppOptions, AppState};
use std::net::SocketAddr;

/// Seed 000's stream and pipeline (plus `extra` TOML), on a store in `dir`. The
/// `water_level` stream has no time guard (its workloads run ahead of the clock); the
/// `rfc` stream has the default one (`max_future = "1h"`).
pub fn config(dir: &std::path::Path, extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [store]
        path = "{}"
        [server]
        max_body_bytes = 1048576
        [[stream]]
        name = "water_level"
        key_fields = ["i"]
        time_field = "time"
        time_format = "unix_ns"
        id_field = "id"
        # The workloads post days of event time within seconds of the test's clock.
        max_future = "off"
        [[stream]]
        name = "rfc"
        key_fields = ["i"]
        time_format = "rfc3339"
        [[pipeline]]
        name = "mean_1h"
        stream = "water_level"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "mean", field = "level", name = "mean" }}, {{ fn = "count" }}]
        out_of_orderness = "10s"
        allowed_lateness = "2h"
        retention = "7d"
        [[pipeline]]
        name = "rfc_sum"
        stream = "rfc"
        window = {{ type = "tumbling", size = "1h" }}
        aggregates = [{{ fn = "sum", field = "v" }}]
        allowed_lateness = "1h"
        retention = "2h"
        {extra}
        "#,
        dir.display()
    ))
    .unwrap()
}

/// An app serving on 127.0.0.1:<free port>; stop it with `stop.send(true)`.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<reckon_server::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

pub async fn serve(config: Config, options: AppOptions) -> Running {
    let app = App::open(config, options).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = app.state().clone();
    let stop = app.shutdown_signal();
    let task = tokio::spawn(app.serve(listener));
    Running {
        addr,
        state,
        stop,
        task,
    }
}
