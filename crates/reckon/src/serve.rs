//! `reckon serve`: the HTTP server on a configuration file, until Ctrl-C or SIGTERM.

use anyhow::{Context, Result};
use reckon_runtime::Config;
use reckon_server::{App, AppOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `reckon serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "reckon.toml")]
    config: PathBuf,
    /// Listen address, overriding `[server] listen` (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    listen: Option<String>,
}

/// Binds `listen`, or says clearly why not.
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM), naming the signal.
pub async fn stop_requested() -> &'static str {
    stop_signals().await
}

/// Like [`stop_requested`], but the signal handlers are installed before this returns
/// (so a signal sent right after is not lost to the default action).
pub fn stop_signals() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Logs what the server runs: version, configuration, store, streams, pipelines,
/// reconciliations and webhooks.
fn log_startup(path: &Path, config: &Config) {
    let names = |v: Vec<&str>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        store = %config.store.path.display(),
        "reckon {} starting",
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!(
        "streams: {}",
        names(config.streams.iter().map(|s| s.name.as_str()).collect())
    );
    // Every operator, in the order data flows through them; kinds other than window
    // pipelines say what they are.
    let operators: Vec<String> = config
        .operators()
        .unwrap_or_default()
        .iter()
        .map(|op| match op.kind() {
            "window" => op.name().to_string(),
            kind => format!("{} ({kind})", op.name()),
        })
        .collect();
    tracing::info!(
        "pipelines: {}",
        names(operators.iter().map(String::as_str).collect())
    );
    tracing::info!(
        "webhooks: {}",
        names(config.webhooks.iter().map(|w| w.name.as_str()).collect())
    );
    let s = &config.server;
    tracing::info!(
        "limits: max_body_bytes {}, max_pending_requests {}, header_read_timeout {:?}, \
         body_read_timeout {:?}",
        s.max_body_bytes,
        s.max_pending_requests,
        s.header_read_timeout.to_std(),
        s.body_read_timeout.to_std()
    );
}

/// Runs the server.
pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    let mut config = Config::load(&args.config)?;
    if let Some(l) = &args.listen {
        config.server.listen = l.clone();
    }
    log_startup(&args.config, &config);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = bind(&config.server.listen).await?;
        let addr = listener.local_addr()?;
        let app = App::open(config, AppOptions::default()).context("opening the store")?;
        tracing::info!(listen = %addr, "listening on http://{addr}");
        if !addr.ip().is_loopback() {
            tracing::warn!(
                listen = %addr,
                "listening on {addr}, which is not a loopback address: reckon has no \
                 authentication yet, so anyone who can reach this address can write and \
                 read every stream; keep it behind something that authenticates"
            );
        }
        let stop = app.shutdown_signal();
        let signals = stop_signals();
        // Tests and scripts read this line to find the port.
        println!("reckon listening on http://{addr}");
        tokio::spawn(async move {
            let signal = signals.await;
            tracing::info!("{signal} received: stopping");
            let _ = stop.send(true);
        });
        app.serve(listener).await?;
        Ok(ExitCode::SUCCESS)
    })
}
