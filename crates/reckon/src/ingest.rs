//! `reckon ingest`: NDJSON events on standard input into a stream, durably.
//!
//! Lines are read in batches; each batch is decoded (bad lines are reported on stderr
//! with their line number and field, good lines are kept), driven through the
//! pipelines and committed to the store. Only after the commit is durable does it
//! print `ack <lines> <seq>` on stdout: `<lines>` is how many input lines are now
//! consumed in total. A client that resends every line after the last ack (after a
//! crash, say) gets exactly-once results: duplicates are recognised by id.

use anyhow::{Context, Result, bail};
use reckon_connect::JsonDecoder;
use reckon_core::{PartitionId, ProcessingTime};
use reckon_runtime::{Config, Runtime, RuntimeOptions, StreamConfig};
use reckon_server::Clock as _;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `reckon ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "reckon.toml")]
    config: PathBuf,
    /// The stream the events belong to.
    #[arg(long, short)]
    stream: String,
    /// Lines per batch (one durable commit each).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Source partition of this input (for watermarks).
    #[arg(long, default_value_t = 0)]
    partition: u32,
    /// The input is complete: close every window at the end (a bounded replay).
    #[arg(long)]
    finish: bool,
    /// Checkpoint every n batches.
    #[arg(long, default_value_t = 16)]
    checkpoint_every: u64,
}

/// The processing time of a batch read from a file or a pipe: the system clock.
pub(crate) fn wall_clock() -> ProcessingTime {
    reckon_server::SystemClock.now()
}

/// The configuration at `path` and its stream `name` (an error names both if missing).
pub(crate) fn load_stream(path: &std::path::Path, name: &str) -> Result<(Config, StreamConfig)> {
    let config = Config::load(path)?;
    let stream = config
        .stream(name)
        .with_context(|| format!("stream `{name}` is not defined in {}", path.display()))?
        .clone();
    Ok((config, stream))
}

/// Runs `reckon ingest`.
pub fn run(args: &IngestArgs) -> Result<ExitCode> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (config, stream) = load_stream(&args.config, &args.stream)?;
    let mut runtime = Runtime::open(
        &config,
        RuntimeOptions {
            checkpoint_every: args.checkpoint_every,
        },
    )
    .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let mut decoder = JsonDecoder::new(&stream);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut lines = stdin.lock().lines();
    let (mut consumed, mut bad) = (0usize, 0usize);
    loop {
        let mut text = String::new();
        let mut n = 0;
        for line in lines.by_ref().take(args.batch) {
            text.push_str(&line.context("reading standard input")?);
            text.push('\n');
            n += 1;
        }
        if n == 0 {
            break;
        }
        let (events, errors) = decoder.decode_ndjson(&text);
        for mut e in errors {
            e.line = e.line.map(|l| l + consumed);
            eprintln!("{e}");
            bad += 1;
        }
        let report = runtime.ingest(
            &args.stream,
            PartitionId(args.partition),
            wall_clock(),
            events,
            &mut |_| {},
        )?;
        consumed += n;
        writeln!(stdout, "ack {consumed} {}", report.last_seq)?;
        stdout.flush()?;
    }
    if args.finish {
        runtime.finish(&mut |_| {})?;
        writeln!(stdout, "finished")?;
    }
    if bad > 0 {
        eprintln!("{bad} of {consumed} lines were rejected (see above)");
    }
    Ok(ExitCode::SUCCESS)
}
