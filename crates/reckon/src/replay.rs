//! `reckon replay FILE`: a file of events (NDJSON, CSV or InfluxDB line protocol) into
//! a stream, durably, with a progress bar, resumable.
//!
//! The file is read in batches; each batch is decoded (bad lines are reported with
//! their line number and field and skipped), driven through the pipelines and committed.
//! After each durable commit the byte offset reached is written to a progress file in
//! the store (`<store>/replay/<file name>.<hash of its path>.progress`); a replay that
//! is interrupted (Ctrl-C, a crash) and started again continues from there
//! (`--restart` starts over). A batch committed just before the crash but not yet
//! recorded is read again: with an `id_field` its events are recognised as
//! duplicates; without ids they would be counted twice, so give long replays ids.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reckon_connect::csv::CsvDecoder;
use reckon_connect::lineproto::{LineProtocolDecoder, Precision};
use reckon_connect::{DecodeError, JsonDecoder};
use reckon_core::{Event, EventTime, PartitionId};
use reckon_runtime::{Runtime, RuntimeOptions, StreamConfig};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The format of a replayed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// A header row, then one event per row.
    Csv,
    /// InfluxDB line protocol.
    LineProtocol,
}

/// Options of `reckon replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The file to replay.
    file: PathBuf,
    /// The configuration file.
    #[arg(long, short, default_value = "reckon.toml")]
    config: PathBuf,
    /// The stream the events belong to.
    #[arg(long, short)]
    stream: String,
    /// The file's format (default: by extension: .csv, .lp/.line, otherwise NDJSON).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Line protocol timestamp precision: ns, us, ms, s.
    #[arg(long, default_value = "ns")]
    precision: String,
    /// Events per batch (one durable commit each).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// The input is complete: close every window at the end.
    #[arg(long)]
    finish: bool,
    /// Start from the beginning even if an earlier replay of this file was interrupted.
    #[arg(long)]
    restart: bool,
    /// No progress bar (for scripts; a summary is still printed).
    #[arg(long)]
    quiet: bool,
}

fn progress_path(store: &Path, file: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let hash = fnv1a(canonical.to_string_lossy().as_bytes());
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    store
        .join("replay")
        .join(format!("{name}.{hash:016x}.progress"))
}

/// FNV-1a: a stable name for the progress file (not security relevant).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// (byte offset, lines consumed) recorded after the last durable batch.
fn read_progress(path: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn write_progress(path: &Path, offset: u64, lines: u64) -> Result<()> {
    let tmp = path.with_extension("progress.tmp");
    std::fs::write(&tmp, format!("{offset} {lines}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

struct Replay<'a> {
    runtime: Runtime,
    stream: &'a StreamConfig,
    progress_file: PathBuf,
    bar: ProgressBar,
    bad: u64,
    accepted: u64,
    duplicates: u64,
    late: u64,
}

/// A line for the user: above the progress bar, or on stderr when there is none.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

impl Replay<'_> {
    fn commit(
        &mut self,
        events: Vec<Event>,
        errors: Vec<DecodeError>,
        offset: u64,
        lines: u64,
    ) -> Result<()> {
        for e in errors {
            say(&self.bar, format!("{}: {e}", self.stream.name));
            self.bad += 1;
        }
        let r = self.runtime.ingest(
            &self.stream.name,
            PartitionId(0),
            crate::ingest::wall_clock(),
            events,
            &mut |_| {},
        )?;
        self.accepted += r.accepted;
        self.duplicates += r.duplicates;
        self.late += r.late;
        write_progress(&self.progress_file, offset, lines)?;
        self.bar.set_position(offset);
        self.bar.set_message(format!(
            "{} events, {} late, {} duplicates, {} bad lines",
            self.accepted, self.late, self.duplicates, self.bad
        ));
        Ok(())
    }
}

/// Runs `reckon replay`.
pub fn run(args: &ReplayArgs) -> Result<ExitCode> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (config, stream) = crate::ingest::load_stream(&args.config, &args.stream)?;
    let precision =
        Precision::parse(&args.precision).map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
    let format = args.format.unwrap_or_else(|| {
        match args.file.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "csv" => Format::Csv,
            "lp" | "line" | "influx" => Format::LineProtocol,
            _ => Format::Ndjson,
        }
    });
    let mut file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let runtime = Runtime::open(&config, RuntimeOptions::default()).with_context(|| {
        format!(
            "opening the store at {} (is `reckon serve` using it?)",
            config.store.path.display()
        )
    })?;
    let progress_file = progress_path(&config.store.path, &args.file);
    if let Some(parent) = progress_file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let (start, start_line) = match read_progress(&progress_file) {
        Some(p) if !args.restart && p.0 <= len => p,
        _ => (0, 0),
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if start > 0 {
        say(
            &bar,
            format!(
                "resuming {} at line {} (byte {start}) after an interrupted replay; --restart starts over",
                args.file.display(),
                start_line + 1
            ),
        );
    }
    bar.set_position(start);
    let mut r = Replay {
        runtime,
        stream: &stream,
        progress_file,
        bar,
        bad: 0,
        accepted: 0,
        duplicates: 0,
        late: 0,
    };
    match format {
        Format::Csv => {
            // The header, then the rest of the file from where the last replay stopped.
            let mut header = String::new();
            BufReader::new(&mut file)
                .read_line(&mut header)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let header_len = header.len() as u64;
            let from = start.max(header_len);
            file.seek(SeekFrom::Start(from))?;
            let reader = std::io::Cursor::new(header.into_bytes()).chain(BufReader::new(file));
            let mut decoder = CsvDecoder::new(&stream, reader)
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
            let base_line = if start > 0 { start_line } else { 1 };
            let (mut events, mut errors, mut lines) = (Vec::new(), Vec::new(), base_line);
            loop {
                let next = decoder.next();
                let done = next.is_none();
                match next {
                    Some(Ok(e)) => events.push(e),
                    Some(Err(mut e)) => {
                        e.line = e.line.map(|l| l - 1 + base_line as usize);
                        errors.push(e);
                    }
                    None => {}
                }
                if !done {
                    lines += 1;
                }
                if events.len() + errors.len() >= args.batch
                    || (done && !(events.is_empty() && errors.is_empty()))
                {
                    let offset = from + decoder.bytes_read() - header_len;
                    r.commit(
                        std::mem::take(&mut events),
                        std::mem::take(&mut errors),
                        offset,
                        lines,
                    )?;
                }
                if done {
                    break;
                }
            }
        }
        Format::Ndjson | Format::LineProtocol => {
            file.seek(SeekFrom::Start(start))?;
            let mut reader = BufReader::new(file);
            let mut json = JsonDecoder::new(&stream);
            let mut lp = LineProtocolDecoder::new(&stream);
            let (mut offset, mut lines) = (start, start_line);
            let mut raw = Vec::new();
            loop {
                let (mut text, mut errors, mut n) = (String::new(), Vec::new(), 0usize);
                while n < args.batch {
                    raw.clear();
                    let got = reader.read_until(b'\n', &mut raw)?;
                    if got == 0 {
                        break;
                    }
                    offset += got as u64;
                    n += 1;
                    match std::str::from_utf8(&raw) {
                        Ok(s) => text.push_str(s),
                        Err(e) => {
                            errors.push(DecodeError {
                                line: Some(n),
                                field: None,
                                message: format!(
                                    "not valid UTF-8 (invalid byte at column {})",
                                    e.valid_up_to() + 1
                                ),
                            });
                            text.push('\n');
                        }
                    }
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                }
                if n == 0 {
                    break;
                }
                let (events, more) = match format {
                    Format::LineProtocol => {
                        lp.decode(&text, precision, EventTime(crate::ingest::wall_clock().0))
                    }
                    _ => json.decode_ndjson(&text),
                };
                errors.extend(more);
                for e in &mut errors {
                    e.line = e.line.map(|l| l + lines as usize);
                }
                errors.sort_by_key(|e| e.line);
                lines += n as u64;
                r.commit(events, errors, offset, lines)?;
            }
        }
    }
    if args.finish {
        r.runtime.finish(&mut |_| {})?;
    }
    r.bar.finish_and_clear();
    println!(
        "replayed {}: {} events stored, {} late, {} duplicates, {} bad lines{}",
        args.file.display(),
        r.accepted,
        r.late,
        r.duplicates,
        r.bad,
        if args.finish {
            "; every window closed"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
