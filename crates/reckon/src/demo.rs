//! `reckon demo --in-process`: seed 000's workload through the engine, in process
//! (the default `reckon demo` runs it through the server: `demo_live.rs`).
//!
//! It plays the part the runtime will play (issue "durable store and runtime"): a raw
//! log indexed by key and time, cold recomputes from it, and a sink that keeps the
//! latest version of every window. What it prints is what a user of seed 000 wanted to
//! see: windows closing, late points landing, each correction with its old and new
//! values and versions, and at the end a check of every window against a batch
//! recomputation over all raw events.

use anyhow::{Context, Result, bail};
use reckon_core::aggregate::values_agree;
use reckon_core::batch;
use reckon_core::{
    AggKind, AggregateSpec, BatchReport, Emission, EmissionKind, Event, EventTime, Key, Outcome,
    PartitionId, Pipeline, PipelineSpec, Prior, Span, Value, Window, WindowSpec,
};
use reckon_workload::{Seed000, WATER_LEVEL};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::time::Instant;

/// Options of `reckon demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Hours of event time to simulate (a tick every 10 s).
    #[arg(long, default_value_t = 6)]
    pub(crate) hours: u32,
    /// Number of locations (tag `i`), 100 in seed 000.
    #[arg(long, default_value_t = 100)]
    pub(crate) locations: u32,
    /// Probability that a location also sends a late point in a tick (write.py: 1).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) late_probability: f64,
    /// Allowed lateness in minutes: later points are recomputed from the raw log.
    /// Seed 000 handles points up to 24 h late; try 60 to watch the cold path.
    #[arg(long, default_value_t = 24 * 60)]
    pub(crate) allowed_lateness_minutes: i64,
    /// How many example lines of each kind to print.
    #[arg(long, default_value_t = 3)]
    pub(crate) examples: usize,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Run the engine in process, as fast as it goes, without the server and the store.
    #[arg(long)]
    pub(crate) in_process: bool,
    /// Event time runs this many times faster than real time (360: an hour in 10 s).
    #[arg(long, default_value_t = 360.0)]
    pub(crate) speed: f64,
    /// Address of the demo's server (if taken, any free port).
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub(crate) listen: String,
    /// Keep the store here (default: a temporary directory, deleted at the end).
    #[arg(long)]
    pub(crate) data: Option<std::path::PathBuf>,
    /// Send the corrections to this webhook (e.g. a Slack incoming-webhook URL) instead
    /// of the demo's own receiver, which prints them.
    #[arg(long)]
    pub(crate) webhook: Option<String>,
}

fn spec(args: &DemoArgs) -> Result<PipelineSpec> {
    Ok(PipelineSpec::builder("water_level_mean_1h")
        .window(WindowSpec::tumbling(Span::hours(1)))
        .aggregate(AggregateSpec::new(AggKind::Mean, "level").named("mean"))
        .aggregate(AggregateSpec::count())
        .out_of_orderness(Span::secs(10))
        .allowed_lateness(Span::minutes(args.allowed_lateness_minutes))
        .retention(Span::days(7))
        .build()?)
}

/// The raw log, indexed by key and event time (what the store's range scan will give).
#[derive(Default)]
struct RawLog {
    by_key: HashMap<Key, BTreeMap<(EventTime, u64), Event>>,
    seq: u64,
}

impl RawLog {
    fn append(&mut self, e: &Event) {
        self.seq += 1;
        self.by_key
            .entry(e.key.clone())
            .or_default()
            .insert((e.time, self.seq), e.clone());
    }
    fn window(&self, key: &Key, w: Window) -> impl Iterator<Item = &Event> {
        self.by_key
            .get(key)
            .into_iter()
            .flat_map(move |m| m.range((w.start, 0)..(w.end, 0)).map(|(_, e)| e))
    }
    fn all(&self) -> impl Iterator<Item = &Event> {
        self.by_key.values().flat_map(|m| m.values())
    }
}

#[derive(Default)]
struct Shown {
    /// Print nothing (history warm-up).
    quiet: bool,
    on_time: usize,
    late: usize,
    recomputed: usize,
    alert: bool,
}

fn hm(t: EventTime) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(t.0))
        .map(|ts| ts.strftime("%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn ago(d: i64) -> String {
    let s = d / 1_000_000_000;
    match s {
        ..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn mean(e: &Emission) -> String {
    match e.value("mean") {
        Some(Value::F64(x)) => format!("{x:.4}"),
        other => format!("{other:?}"),
    }
}

/// Runs the demo; the exit code says whether every window verified.
pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    if !args.in_process {
        return crate::demo_live::run(args);
    }
    if !(0.0..=1.0).contains(&args.late_probability) {
        bail!(
            "--late-probability must be between 0 and 1, got {}",
            args.late_probability
        );
    }
    let spec = spec(args).context("building the demo pipeline")?;
    let generator = Seed000 {
        locations: args.locations,
        late_probability: args.late_probability,
        seed: args.seed,
        ..Seed000::default()
    };
    let end = generator.start.plus(Span::hours(i64::from(args.hours)));
    // A day of on-time history first, so late points land in windows that have data.
    let history = Seed000 {
        start: generator.start.minus(Span::hours(24)),
        late_probability: 0.0,
        seed: args.seed.wrapping_add(1),
        ..generator.clone()
    };
    let history: Vec<_> = history
        .arrivals()
        .take_while(|a| a.at.0 < generator.start.0)
        .collect();
    let live_from = history.len();
    let arrivals: Vec<_> = history
        .into_iter()
        .chain(generator.arrivals().take_while(|a| a.at.0 < end.0))
        .collect();

    println!("reckon demo — seed 000: mean water level per location over 1 h windows");
    println!(
        "  {} locations, a reading every 10 s, {} h of event time; late points up to 24 h old ({}% chance per location per tick)",
        args.locations,
        args.hours,
        (args.late_probability * 100.0).round()
    );
    println!(
        "  pipeline `{}`: allowed lateness {} min (hot correction), beyond that recomputed from the raw log",
        spec.name, args.allowed_lateness_minutes
    );
    println!(
        "  first a day of on-time history ({live_from} events), then live data with late points\n"
    );

    let mut pipeline = Pipeline::new(spec.clone())?;
    let mut raw = RawLog::default();
    let mut latest: HashMap<(Key, Window), Emission> = HashMap::new();
    let mut shown = Shown::default();
    let (mut out, mut report) = (Vec::new(), BatchReport::default());
    let mut next_progress = generator.start.plus(Span::hours(1));
    let mut dead = 0usize;
    let started = Instant::now();

    let mut seen = 0usize;
    for batch in arrivals.chunk_by(|a, b| a.at == b.at) {
        let now = batch[0].at;
        let live = seen >= live_from;
        seen += batch.len();
        shown.quiet = !live;
        pipeline.advance(now, &mut out);
        report.follow_ups.clear();
        pipeline.ingest_batch(PartitionId(0), batch, &mut report, &mut out);
        // The raw log gets every event that is not a dead letter, before any recompute.
        let mut recompute: BTreeSet<(Key, Window)> = BTreeSet::new();
        let mut skip = BTreeSet::new();
        for (i, o) in &report.follow_ups {
            match o {
                Outcome::Recompute { key, windows } => {
                    recompute.extend(windows.iter().map(|w| (key.clone(), *w)))
                }
                Outcome::DeadLettered(reason) => {
                    dead += 1;
                    skip.insert(*i);
                    eprintln!("dead letter: {reason}");
                }
                _ => {}
            }
        }
        for (i, a) in batch.iter().enumerate() {
            if !skip.contains(&i) {
                raw.append(&a.event);
            }
        }
        publish(&mut out, &mut latest, &mut shown, args, batch, now.0);
        for (key, w) in recompute {
            let prior = latest.get(&(key.clone(), w)).map(|e| Prior {
                version: e.version,
                checksum: e.checksum,
            });
            if let Some(em) = pipeline.recompute(&key, w, prior, raw.window(&key, w))? {
                out.push(em);
            }
        }
        publish(&mut out, &mut latest, &mut shown, args, batch, now.0);
        if live && now.0 >= next_progress.0 {
            let c = pipeline.counters();
            println!(
                "[{}] watermark {}  events {:>7}  on_time {:>5}  late-corrected {:>6}  recomputed {:>6}  hot windows {}",
                hm(EventTime(now.0)),
                hm(pipeline.watermark().0),
                c.events,
                c.emitted_on_time,
                c.emitted_late,
                c.emitted_recomputed,
                pipeline.hot_windows()
            );
            next_progress = next_progress.plus(Span::hours(1));
        }
    }
    pipeline.finish(&mut out);
    publish(&mut out, &mut latest, &mut shown, args, &[], end.0);
    let secs = started.elapsed().as_secs_f64();
    let c = *pipeline.counters();
    println!(
        "\n{} events in {:.2} s ({:.2} M events/s, recomputes and printing included)",
        c.events,
        secs,
        c.events as f64 / secs / 1e6
    );
    println!(
        "  applied {}  hot corrections {}  cold recomputes requested {}  duplicates {}  dead letters {}",
        c.applied, c.corrected, c.recompute_requested, c.duplicates, dead
    );
    println!(
        "  emissions: on_time {}  late {}  recomputed {}  (unchanged recomputes {})",
        c.emitted_on_time, c.emitted_late, c.emitted_recomputed, c.recompute_unchanged
    );

    // The final check: every window's latest version against a batch recomputation.
    let events: Vec<&Event> = raw.all().collect();
    let (expected, rejected) = batch::compute(&spec, events.iter().copied())?;
    let mut bad = rejected.len();
    for (k, r) in &expected {
        let ok = latest.get(k).is_some_and(|e| {
            e.checksum == r.checksum
                && r.values
                    .iter()
                    .zip(&e.values)
                    .all(|(a, b)| values_agree(a.as_ref(), b.as_ref()))
        });
        if !ok {
            bad += 1;
            println!(
                "MISMATCH {} {}: stored {:?}, batch {:?}",
                k.0,
                k.1,
                latest.get(k).map(|e| (&e.values, e.checksum)),
                r
            );
        }
    }
    bad += latest.keys().filter(|k| !expected.contains_key(*k)).count();
    if bad == 0 {
        println!(
            "\nverified: all {} windows equal a batch recomputation over the {} raw events (values, count and checksum)",
            expected.len(),
            events.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nverification FAILED: {bad} windows differ from the batch recomputation");
        Ok(ExitCode::from(1))
    }
}

/// Hands emissions to the sink (latest version per window) and prints examples.
fn publish(
    out: &mut Vec<Emission>,
    latest: &mut HashMap<(Key, Window), Emission>,
    shown: &mut Shown,
    args: &DemoArgs,
    batch: &[reckon_workload::Arrival],
    now: i64,
) {
    for em in out.drain(..) {
        let k = (em.key.clone(), em.window);
        let old = latest.get(&k);
        if old.is_some_and(|o| o.version >= em.version) {
            continue;
        }
        let window = format!("[{} – {})", hm(em.window.start), hm(em.window.end));
        match em.kind {
            _ if shown.quiet => {}
            EmissionKind::OnTime if shown.on_time < args.examples => {
                shown.on_time += 1;
                println!(
                    "window closed   {:<5} {window}  mean {}  count {}  {}",
                    em.key.as_str(),
                    mean(&em),
                    em.count,
                    em.version
                );
            }
            EmissionKind::Late | EmissionKind::Recomputed => {
                let (n, label) = match em.kind {
                    EmissionKind::Late => (&mut shown.late, "late point    "),
                    _ => (&mut shown.recomputed, "cold recompute"),
                };
                if *n < args.examples {
                    *n += 1;
                    let point = batch
                        .iter()
                        .find(|a| a.event.key == em.key && em.window.contains(a.event.time));
                    let age = point.map_or(String::new(), |a| {
                        format!(" {} late,", ago(now - a.event.time.0))
                    });
                    let (old_mean, old_count, old_v) = old
                        .map_or(("-".into(), 0, "none".into()), |o| {
                            (mean(o), o.count, o.version.to_string())
                        });
                    println!(
                        "{label}  {:<5}{age} window {window}: count {old_count} → {}, mean {old_mean} → {}, {old_v} → {}",
                        em.key.as_str(),
                        em.count,
                        mean(&em),
                        em.version
                    );
                }
                if !shown.alert {
                    shown.alert = true;
                    println!(
                        "\n  the notification seed 000 sent to Slack, with reckon's extra facts:"
                    );
                    println!(
                        "  | WARNING: Late arriving data.\n  | Details:\n  | Measurement: {WATER_LEVEL}"
                    );
                    println!(
                        "  | Time: {}\n  | Old Count:  {}\n  | New Count : {}",
                        em.window.start,
                        old.map_or(0, |o| o.count),
                        em.count
                    );
                    println!(
                        "  | Key: {}  Version: {}  Old mean: {}  New mean: {}\n",
                        em.key.as_str(),
                        em.version,
                        old.map_or("-".into(), mean),
                        mean(&em)
                    );
                }
            }
            _ => {}
        }
        latest.insert(k, em);
    }
}
