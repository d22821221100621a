//! `reckon backfill plan|status|changed`: which partitions of a Delta table need a backfill
//! since the last plan, from the table's transaction log alone (seed 002;
//! `docs/backfill.md`).
//!
//! `plan` reads the commits after the table's cursor, classifies each partition's
//! change (`reckon_delta::plan`), and stores the plan **and** the new cursor in one
//! atomic, durable commit of a reckon store: a crash leaves either both or neither, so
//! no late partition is planned twice or lost. It then prints the plan (the seed's
//! `{"partitions", "lastProcessedVersion"}` plus why) and, with `--seed-json`, writes the
//! seed's `backfilling_configuration.json` exactly (an existing DAG reads it unchanged).

use anyhow::{Context, Result, bail};
use reckon_delta::plan::OnGap;
use reckon_delta::{DeltaLog, PlanOptions};
use reckon_store::{CommitBatch, Store};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `reckon backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    #[command(subcommand)]
    what: BackfillCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BackfillCommand {
    /// Plan the backfill of a Delta table: the partitions that got late data since
    /// the last plan (or `--since-version`), stored with the new cursor in one commit.
    Plan(PlanArgs),
    /// reckon's own results as a source: which days (or `--by` partitions) of a
    /// pipeline a running server corrected after change `--since` (print the answer's
    /// `lastChange` and pass it next time).
    Changed {
        #[command(flatten)]
        server: crate::admin::Server,
        /// The pipeline.
        pipeline: String,
        /// The change number already handled (default 0).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// The partition size (`1d`, `1h`).
        #[arg(long, default_value = "1d")]
        by: String,
        /// Count every new result, not only corrections.
        #[arg(long)]
        all: bool,
    },
    /// The cursor and recent plans of every table planned in the store.
    Status {
        /// The store holding cursors and plans.
        #[arg(long, default_value = "reckon-backfill-data")]
        store: PathBuf,
    },
}

/// Options of `reckon backfill plan`.
#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The Delta table (a directory with `_delta_log`).
    #[arg(long)]
    table: PathBuf,
    /// The name its cursor is kept under (default: the table directory's name).
    #[arg(long)]
    name: Option<String>,
    /// Plan after this version instead of the stored cursor (`-1`: from the start).
    #[arg(long, allow_hyphen_values = true)]
    since_version: Option<i64>,
    /// The partition column that orders partitions in time (default: the first).
    #[arg(long)]
    partition_column: Option<String>,
    /// Changes to partitions within this much of the newest are not late (`1d`).
    #[arg(long)]
    grace: Option<String>,
    /// When commits after the cursor are gone from the log: `fail` (default) or `all`
    /// (plan every partition the table has).
    #[arg(long, default_value = "fail")]
    on_gap: String,
    /// The store holding cursors and plans (created if missing).
    #[arg(long, default_value = "reckon-backfill-data")]
    store: PathBuf,
    /// Also write the seed's `{"partitions", "lastProcessedVersion"}` here.
    #[arg(long)]
    seed_json: Option<PathBuf>,
    /// Print the plan without storing it or moving the cursor.
    #[arg(long)]
    dry_run: bool,
}

/// Catalog keys: `backfill/<name>/cursor` and `backfill/<name>/plan/<version>.<since>`
/// (`since`: the cursor it planned after, or `start`).
fn key(name: &str, what: &str) -> Vec<u8> {
    format!("backfill/{name}/{what}").into_bytes()
}

/// Runs `reckon backfill …`.
pub fn run(args: &BackfillArgs) -> Result<ExitCode> {
    match &args.what {
        BackfillCommand::Plan(p) => plan(p),
        BackfillCommand::Status { store } => status(store),
        BackfillCommand::Changed {
            server,
            pipeline,
            since,
            by,
            all,
        } => crate::admin::get_and_print(
            server,
            &format!("/v1/pipelines/{pipeline}/changed?since={since}&by={by}&all={all}"),
        ),
    }
}

fn plan(args: &PlanArgs) -> Result<ExitCode> {
    let log = DeltaLog::open(&args.table)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .table
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .context("name the table with --name")?,
    };
    if name.is_empty() || name.contains('/') {
        bail!("--name `{name}`: give a name without `/`");
    }
    let on_gap = match args.on_gap.as_str() {
        "fail" => OnGap::Fail,
        "all" => OnGap::AllPartitions,
        other => bail!("--on-gap `{other}`: use fail or all"),
    };
    let grace_ns = match &args.grace {
        Some(g) => {
            reckon_runtime::config::parse_duration(g)
                .map_err(|e| anyhow::anyhow!("--grace: {e}"))?
                .0
        }
        None => 0,
    };
    let store = Store::open(&args.store)
        .with_context(|| format!("opening the store at {}", args.store.display()))?;
    let stored = cursor(&store, &name)?;
    let since = match args.since_version {
        Some(v) if v < 0 => None,
        Some(v) => Some(v as u64),
        None => stored,
    };
    let plan = reckon_delta::plan(
        &log,
        &PlanOptions {
            since_version: since,
            partition_column: args.partition_column.clone(),
            grace_ns,
            on_gap,
        },
    )?;
    let mut out = plan.json();
    if let Some(o) = out.as_object_mut() {
        o.insert("name".into(), json!(name));
    }
    // Nothing new since the cursor: nothing to store (the cursor stays).
    let moved = plan.last_processed_version != since;
    if !args.dry_run && moved {
        let Some(version) = plan.last_processed_version else {
            bail!("the table has no version yet");
        };
        let after = since.map_or("start".to_string(), |s| format!("{s:020}"));
        // The plan and the cursor move together: one commit, fsync'd.
        store.commit(CommitBatch {
            catalog: vec![
                (
                    key(&name, &format!("plan/{version:020}.{after}")),
                    Some(serde_json::to_vec(&out)?),
                ),
                (
                    key(&name, "cursor"),
                    Some(serde_json::to_vec(&json!({
                        "version": version,
                        "plan": format!("{version:020}.{after}"),
                        "table": args.table,
                        "planned_at": jiff::Timestamp::now().to_string(),
                    }))?),
                ),
            ],
            ..CommitBatch::default()
        })?;
        tracing::info!(
            table = %args.table.display(),
            name = %name,
            since = ?since,
            version,
            partitions = plan.partitions.len(),
            "backfill planned; cursor moved"
        );
    }
    if let Some(path) = &args.seed_json {
        write_atomically(path, &serde_json::to_vec(&plan.seed_json())?)?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// The stored cursor of `name`, if it was planned before.
fn cursor(store: &Store, name: &str) -> Result<Option<u64>> {
    let k = key(name, "cursor");
    let Some((_, v)) = store.catalog(&k)?.into_iter().find(|(key, _)| *key == k) else {
        return Ok(None);
    };
    let c: Json = serde_json::from_slice(&v).context("a stored cursor is not JSON")?;
    Ok(c["version"].as_u64())
}

fn status(store: &Path) -> Result<ExitCode> {
    if !store.exists() {
        bail!("no store at {}: nothing was planned", store.display());
    }
    let store = Store::open(store)?;
    let mut tables = serde_json::Map::new();
    for (k, v) in store.catalog(b"backfill/")? {
        let k = String::from_utf8_lossy(&k).into_owned();
        let mut parts = k.splitn(3, '/').skip(1);
        let (Some(name), Some(what)) = (parts.next(), parts.next()) else {
            continue;
        };
        let v: Json = serde_json::from_slice(&v).unwrap_or(Json::Null);
        let entry = tables
            .entry(name.to_string())
            .or_insert_with(|| json!({ "plans": [] }));
        if what == "cursor" {
            entry["cursor"] = v;
        } else if let Some(plans) = entry["plans"].as_array_mut() {
            plans.push(json!({
                "lastProcessedVersion": v["lastProcessedVersion"],
                "sinceVersion": v["sinceVersion"],
                "partitions": v["partitions"],
            }));
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "tables": tables }))?
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so a reader never
/// sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
