//! `reckon serve`: the HTTP server on a configuration file, until Ctrl-C or SIGTERM.

use anyhow::{Context, Result};
use reckon_runtime::Config;
use reckon_server::{App, AppOptions};
use std::path::PathBuf;
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

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_requested() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the server.
pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    let mut config = Config::load(&args.config)?;
    if let Some(l) = &args.listen {
        config.server.listen = l.clone();
    }
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = bind(&config.server.listen).await?;
        let addr = listener.local_addr()?;
        let app = App::open(config, AppOptions::default()).context("opening the store")?;
        // Tests and scripts read this line to find the port.
        println!("reckon listening on http://{addr}");
        let stop = app.shutdown_signal();
        tokio::spawn(async move {
            stop_requested().await;
            eprintln!("stopping: finishing requests in flight");
            let _ = stop.send(true);
        });
        app.serve(listener).await?;
        Ok(ExitCode::SUCCESS)
    })
}
