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
    /// Trigger the backfill runs of the newest plan and track them: each planned
    /// partition is a run, pending → triggered → done or failed (retried up to
    /// `--max-attempts`). Run it again to poll triggered runs and retry failed ones.
    Trigger(TriggerArgs),
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
    /// Changes to partitions within this much of the newest are not late (`1d`);
    /// with --event-time-column, rows within this much of the watermark.
    #[arg(long)]
    grace: Option<String>,
    /// A column of event times: a change is late when its rows are behind the
    /// table's event-time watermark (from the files' min/max statistics) by more
    /// than the grace, whatever partition they landed in.
    #[arg(long)]
    event_time_column: Option<String>,
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

/// Options of `reckon backfill trigger`.
#[derive(Debug, clap::Args)]
struct TriggerArgs {
    /// The table's name (as `plan` stored it).
    #[arg(long)]
    name: String,
    /// The store holding cursors, plans and runs.
    #[arg(long, default_value = "reckon-backfill-data")]
    store: PathBuf,
    /// Airflow's base URL (`http://localhost:8080`): a DAG run per partition through
    /// its stable REST API, with the partition as `logical_date` and in `conf`.
    #[arg(long, conflicts_with = "command")]
    airflow: Option<String>,
    /// The DAG to trigger (with `--airflow`).
    #[arg(long, requires = "airflow")]
    dag: Option<String>,
    /// Airflow's API version: `v2` (Airflow 3, default) or `v1` (Airflow 2).
    #[arg(long, default_value = "v2")]
    airflow_api: String,
    /// A bearer token for Airflow (Airflow 3's `/auth/token`).
    #[arg(long, env = "AIRFLOW_TOKEN", hide_env_values = true)]
    airflow_token: Option<String>,
    /// Basic-auth user and password for Airflow 2 (`user:password`).
    #[arg(long, env = "AIRFLOW_BASIC_AUTH", hide_env_values = true)]
    airflow_basic: Option<String>,
    /// A URL to POST one CloudEvent per partition to instead (structured JSON mode,
    /// type `dev.reckon.backfill.partition`); a 2xx answer is done.
    #[arg(long, conflicts_with_all = ["airflow", "command"])]
    webhook: Option<String>,
    /// A program to run per partition instead (its arguments follow); it gets
    /// `RECKON_TABLE`, `RECKON_PARTITION` and `RECKON_VERSION`; exit 0 is done.
    #[arg(long, num_args = 1.., allow_hyphen_values = true)]
    command: Option<Vec<String>>,
    /// Attempts per partition before it stays failed.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
}

/// One partition's backfill run, as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Run {
    partition: String,
    /// The plan's `lastProcessedVersion`.
    version: u64,
    /// `pending`, `triggered`, `done` or `failed`.
    status: String,
    attempts: u32,
    /// Airflow's DAG run id (deterministic: a trigger retried after a crash is the same
    /// run; a failed run is retried by clearing it).
    run_id: String,
    #[serde(default)]
    error: Option<String>,
    updated: String,
}

use reckon_server::backfill::{commit_plan, cursor, key, write_atomically};

/// Runs `reckon backfill …`.
pub fn run(args: &BackfillArgs) -> Result<ExitCode> {
    match &args.what {
        BackfillCommand::Plan(p) => plan(p),
        BackfillCommand::Status { store } => status(store),
        BackfillCommand::Trigger(t) => trigger(t),
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
            event_time_column: args.event_time_column.clone(),
        },
    )?;
    let mut out = plan.json();
    if let Some(o) = out.as_object_mut() {
        o.insert("name".into(), json!(name));
    }
    // Nothing new since the cursor: nothing to store (the cursor stays).
    let moved = plan.last_processed_version != since;
    if !args.dry_run && moved {
        commit_plan(&store, &name, &args.table, &plan, &out).map_err(anyhow::Error::msg)?;
        tracing::info!(
            table = %args.table.display(),
            name = %name,
            since = ?since,
            version = ?plan.last_processed_version,
            partitions = plan.partitions.len(),
            "backfill planned; cursor moved"
        );
    }
    if let Some(path) = &args.seed_json {
        write_atomically(path, &serde_json::to_vec(&plan.seed_json())?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

fn trigger(args: &TriggerArgs) -> Result<ExitCode> {
    if args.airflow.is_none() && args.command.is_none() && args.webhook.is_none() {
        bail!("give --airflow URL --dag ID, --webhook URL, or --command PROGRAM [ARGS...]");
    }
    if args.airflow.is_some() && args.dag.is_none() {
        bail!("--airflow needs --dag");
    }
    let store = Store::open(&args.store)
        .with_context(|| format!("opening the store at {}", args.store.display()))?;
    let plans = store.catalog(&key(&args.name, "plan/"))?;
    let Some((_, newest)) = plans.last() else {
        bail!(
            "no plan of `{}` in {}: run `reckon backfill plan` first",
            args.name,
            args.store.display()
        );
    };
    let plan: Json = serde_json::from_slice(newest)?;
    let version = plan["lastProcessedVersion"].as_u64().unwrap_or_default();
    let table = plan["table"].as_str().unwrap_or_default().to_string();
    let partitions: Vec<String> = plan["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(String::from))
        .collect();
    let now = || jiff::Timestamp::now().to_string();
    let run_key = |p: &str| key(&args.name, &format!("run/{version:020}/{p}"));
    let mut runs = Vec::new();
    for p in &partitions {
        let stored = store
            .catalog(&run_key(p))?
            .into_iter()
            .find(|(k, _)| *k == run_key(p));
        runs.push(match stored {
            Some((_, v)) => serde_json::from_slice::<Run>(&v)?,
            None => Run {
                partition: p.clone(),
                version,
                status: "pending".into(),
                attempts: 0,
                run_id: format!("reckon__{}__{p}__v{version}", args.name),
                error: None,
                updated: now(),
            },
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = reqwest::Client::new();
    for run in &mut runs {
        let due =
            run.status == "pending" || (run.status == "failed" && run.attempts < args.max_attempts);
        if due {
            run.attempts += 1;
            let outcome = match (&args.airflow, &args.command) {
                (Some(base), _) if run.attempts > 1 => {
                    rt.block_on(airflow_clear(&client, args, base, run, &table))
                }
                (Some(base), _) => rt.block_on(airflow_trigger(&client, args, base, run, &table)),
                (None, _) if args.webhook.is_some() => rt.block_on(cloudevent(
                    &client,
                    args.webhook.as_deref().unwrap_or_default(),
                    &args.name,
                    run,
                    &table,
                )),
                (None, Some(cmd)) => run_command(cmd, &table, run),
                (None, None) => unreachable_outcome(),
            };
            match outcome {
                Ok(status) => {
                    run.status = status;
                    run.error = None;
                }
                Err(e) => {
                    run.status = "failed".into();
                    run.error = Some(format!("{e:#}"));
                }
            }
        } else if run.status == "triggered"
            && let Some(base) = &args.airflow
        {
            match rt.block_on(airflow_state(&client, args, base, run)) {
                Ok(Some(done)) => run.status = done,
                Ok(None) => {}
                Err(e) => run.error = Some(format!("{e:#}")),
            }
        }
        run.updated = now();
        // Each run's state is durable before the next is triggered.
        store.commit(CommitBatch {
            catalog: vec![(run_key(&run.partition), Some(serde_json::to_vec(&*run)?))],
            ..CommitBatch::default()
        })?;
        tracing::info!(partition = %run.partition, status = %run.status, attempts = run.attempts, "backfill run");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({ "name": args.name, "version": version, "runs": runs })
        )?
    );
    Ok(ExitCode::SUCCESS)
}

fn unreachable_outcome() -> Result<String> {
    bail!("no trigger configured")
}

/// Airflow's DAG-runs endpoint of `args.dag`.
fn airflow_runs(args: &TriggerArgs, base: &str) -> String {
    format!(
        "{}/api/{}/dags/{}/dagRuns",
        base.trim_end_matches('/'),
        args.airflow_api,
        args.dag.as_deref().unwrap_or_default()
    )
}

fn airflow_auth(args: &TriggerArgs, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match (&args.airflow_token, &args.airflow_basic) {
        (Some(t), _) => req.bearer_auth(t),
        (None, Some(b)) => match b.split_once(':') {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req.basic_auth(b, None::<&str>),
        },
        (None, None) => req,
    }
}

/// The partition's start as a logical date: a date partition is its midnight UTC.
fn logical_date(partition: &str) -> Option<String> {
    if let Ok(d) = partition.parse::<jiff::civil::Date>() {
        return Some(format!("{d}T00:00:00Z"));
    }
    partition
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.to_string())
}

/// Triggers a DAG run for `run`: `triggered`, or an error. A run that exists already
/// (409: an earlier attempt got through) counts as triggered.
async fn airflow_trigger(
    client: &reqwest::Client,
    args: &TriggerArgs,
    base: &str,
    run: &Run,
    table: &str,
) -> Result<String> {
    let mut body = json!({
        "dag_run_id": run.run_id,
        "conf": {
            "table": table,
            "partition": run.partition,
            "lastProcessedVersion": run.version,
            "reason": "late data (reckon backfill plan)",
        },
        "note": format!("backfill of {} planned by reckon", run.partition),
    });
    if let Some(d) = logical_date(&run.partition) {
        body["logical_date"] = json!(d);
    }
    let resp = airflow_auth(args, client.post(airflow_runs(args, base)))
        .json(&body)
        .send()
        .await
        .context("reaching Airflow")?;
    let status = resp.status();
    if status.is_success() {
        return Ok("triggered".into());
    }
    let text = resp.text().await.unwrap_or_default();
    // 409: this run exists (an earlier attempt got through before a crash), or another
    // run has the logical date.
    if status == reqwest::StatusCode::CONFLICT {
        let url = format!("{}/{}", airflow_runs(args, base), run.run_id);
        let found = airflow_auth(args, client.get(url)).send().await;
        if found.is_ok_and(|r| r.status().is_success()) {
            return Ok("triggered".into());
        }
    }
    bail!(
        "Airflow answered {status}: {}",
        text.chars().take(300).collect::<String>()
    )
}

/// Retries a failed DAG run by clearing it (Airflow re-runs its tasks); one that never
/// reached Airflow is triggered.
async fn airflow_clear(
    client: &reqwest::Client,
    args: &TriggerArgs,
    base: &str,
    run: &Run,
    table: &str,
) -> Result<String> {
    let url = format!("{}/{}/clear", airflow_runs(args, base), run.run_id);
    let resp = airflow_auth(args, client.post(url))
        .json(&json!({ "dry_run": false }))
        .send()
        .await
        .context("reaching Airflow")?;
    let status = resp.status();
    if status.is_success() {
        return Ok("triggered".into());
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Box::pin(airflow_trigger(client, args, base, run, table)).await;
    }
    let text = resp.text().await.unwrap_or_default();
    bail!(
        "Airflow answered {status} to clearing the failed run: {}",
        text.chars().take(300).collect::<String>()
    )
}

/// Polls the DAG run of `run`: `Some("done" | "failed")` once it ended.
async fn airflow_state(
    client: &reqwest::Client,
    args: &TriggerArgs,
    base: &str,
    run: &Run,
) -> Result<Option<String>> {
    let url = format!("{}/{}", airflow_runs(args, base), run.run_id);
    let resp = airflow_auth(args, client.get(url))
        .send()
        .await
        .context("reaching Airflow")?;
    if !resp.status().is_success() {
        bail!("Airflow answered {} for the DAG run", resp.status());
    }
    let j: Json = resp.json().await.context("Airflow's answer")?;
    Ok(match j["state"].as_str() {
        Some("success") => Some("done".into()),
        Some("failed") => Some("failed".into()),
        _ => None,
    })
}

/// POSTs `run` as a CloudEvent (structured mode): `done` on a 2xx answer.
async fn cloudevent(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    run: &Run,
    table: &str,
) -> Result<String> {
    let event = json!({
        "specversion": "1.0",
        "id": run.run_id,
        "source": format!("reckon/backfill/{name}"),
        "type": "dev.reckon.backfill.partition",
        "subject": run.partition,
        "time": jiff::Timestamp::now().to_string(),
        "datacontenttype": "application/json",
        "data": {
            "table": table,
            "partition": run.partition,
            "lastProcessedVersion": run.version,
            "attempt": run.attempts,
        },
    });
    let resp = client
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/cloudevents+json",
        )
        .body(event.to_string())
        .send()
        .await
        .context("reaching the webhook")?;
    let status = resp.status();
    if status.is_success() {
        return Ok("done".into());
    }
    bail!("the webhook answered {status}")
}

/// Runs the command for `run`: `done` on exit 0.
fn run_command(cmd: &[String], table: &str, run: &Run) -> Result<String> {
    let Some((program, rest)) = cmd.split_first() else {
        bail!("--command is empty");
    };
    let status = std::process::Command::new(program)
        .args(rest)
        .env("RECKON_TABLE", table)
        .env("RECKON_PARTITION", &run.partition)
        .env("RECKON_VERSION", run.version.to_string())
        .status()
        .with_context(|| format!("running `{program}`"))?;
    if status.success() {
        Ok("done".into())
    } else {
        bail!("`{program}` exited with {status}")
    }
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
        } else if what.starts_with("run/") {
            if entry.get("runs").is_none() {
                entry["runs"] = json!([]);
            }
            if let Some(runs) = entry["runs"].as_array_mut() {
                runs.push(v);
            }
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
