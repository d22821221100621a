//! `reckon tenant …`, `reckon token …` and `reckon define …`: manage a running server's
//! tenants, tokens and definitions over its admin API (`/v1/tenants`, `/v1/tokens`,
//! `/v1/definitions`; see `docs/tenants.md` and `docs/definitions.md`).
//!
//! `token create` prints the new token alone on stdout (so `TOKEN=$(reckon token create
//! …)` keeps it) and what it allows on stderr; everything else prints the server's JSON.

use anyhow::{Context, Result, bail};
use serde_json::{Value as Json, json};
use std::process::ExitCode;

/// Where the server is and who asks.
#[derive(Debug, clap::Args)]
pub struct Server {
    /// The server's base URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8086",
        env = "RECKON_URL",
        global = true
    )]
    url: String,
    /// The token to send (`Authorization: Bearer …`); none is needed before the first
    /// token exists (single-user mode, loopback only).
    #[arg(long, env = "RECKON_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

/// An HTTP client sending `token` with every request.
pub fn client(token: Option<&str>) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .context("RECKON_TOKEN / --token is not a valid header value")?;
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("making the HTTP client")
}

/// Options of `reckon tenant`.
#[derive(Debug, clap::Args)]
pub struct TenantArgs {
    #[command(flatten)]
    server: Server,
    #[command(subcommand)]
    what: TenantCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TenantCommand {
    /// Create a tenant (an operator's admin token). Its objects are the `[[stream]]`,
    /// `[[pipeline]]`… with `tenant = "NAME"`.
    Create {
        /// 1 to 63 of a-z, 0-9, `_` and `-`.
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// List the tenants.
    List,
    /// Replace a tenant's quotas (an operator's admin token); unset ones are unlimited.
    Quotas {
        /// The tenant.
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// A tenant's quotas and what it uses of them.
    Usage {
        /// The tenant.
        name: String,
    },
}

/// A tenant's limits (each unlimited when not given).
#[derive(Debug, clap::Args)]
struct QuotaArgs {
    /// Events per second (a request over it is refused whole with 429 and Retry-After).
    #[arg(long)]
    events_per_second: Option<u64>,
    /// Request bytes per second.
    #[arg(long)]
    bytes_per_second: Option<u64>,
    /// Distinct series (stream and key) in its raw log.
    #[arg(long)]
    max_series: Option<u64>,
    /// Bytes of its raw log.
    #[arg(long)]
    max_stored_bytes: Option<u64>,
}

impl QuotaArgs {
    fn json(&self) -> Json {
        json!({
            "events_per_second": self.events_per_second,
            "bytes_per_second": self.bytes_per_second,
            "max_series": self.max_series,
            "max_stored_bytes": self.max_stored_bytes,
        })
    }
}

/// Options of `reckon token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    server: Server,
    #[command(subcommand)]
    what: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once (reckon keeps only its SHA-256).
    Create {
        /// The tenant it belongs to (default: the asking token's tenant; an operator's
        /// token without it makes an operator's token).
        #[arg(long)]
        tenant: Option<String>,
        /// Shorthand for `--scope admin`.
        #[arg(long)]
        admin: bool,
        /// `admin`, `read`, `write`, `read:NAME` or `write:NAME`; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Stops working after this long (`90d`, `12h`); default never.
        #[arg(long)]
        expires_in: Option<String>,
        /// What it is for (shown by `token list`).
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the tokens (never their secrets).
    List,
    /// Revoke a token by its id (from `token list`), at once.
    Revoke {
        /// The token's id.
        id: String,
    },
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

/// Sends one request and returns the JSON answer, or fails with the server's message.
async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Json>,
) -> Result<Json> {
    let base = server.url.trim_end_matches('/');
    let mut req = client(server.token.as_deref())?.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach reckon at {base} (is `reckon serve` running?)"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the answer")?;
    let json: Json = serde_json::from_str(&text).unwrap_or(Json::String(text));
    if !status.is_success() {
        let msg = json
            .get("error")
            .and_then(|e| e.as_str())
            .map(String::from)
            .unwrap_or_else(|| json.to_string());
        bail!("{status}: {msg}");
    }
    Ok(json)
}

/// GETs `path` of the server and prints its JSON answer (`reckon backfill changed`).
pub fn get_and_print(server: &Server, path: &str) -> Result<ExitCode> {
    block_on(async { print(&call(server, reqwest::Method::GET, path, None).await?) })
}

fn print(json: &Json) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(json)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs `reckon tenant …`.
pub fn tenant(args: &TenantArgs) -> Result<ExitCode> {
    block_on(async {
        match &args.what {
            TenantCommand::Create { name, quotas } => {
                let j = call(
                    &args.server,
                    reqwest::Method::POST,
                    "/v1/tenants",
                    Some(json!({ "name": name, "quotas": quotas.json() })),
                )
                .await?;
                print(&j)
            }
            TenantCommand::Quotas { name, quotas } => print(
                &call(
                    &args.server,
                    reqwest::Method::PUT,
                    &format!("/v1/tenants/{name}/quotas"),
                    Some(quotas.json()),
                )
                .await?,
            ),
            TenantCommand::Usage { name } => print(
                &call(
                    &args.server,
                    reqwest::Method::GET,
                    &format!("/v1/tenants/{name}/usage"),
                    None,
                )
                .await?,
            ),
            TenantCommand::List => {
                print(&call(&args.server, reqwest::Method::GET, "/v1/tenants", None).await?)
            }
        }
    })
}

/// Runs `reckon token …`.
pub fn token(args: &TokenArgs) -> Result<ExitCode> {
    block_on(async {
        match &args.what {
            TokenCommand::Create {
                tenant,
                admin,
                scopes,
                expires_in,
                description,
            } => {
                let mut scopes = scopes.clone();
                if *admin && !scopes.iter().any(|s| s == "admin") {
                    scopes.insert(0, "admin".into());
                }
                if scopes.is_empty() {
                    bail!(
                        "give at least one --scope (admin, read, write, read:NAME, write:NAME) or --admin"
                    );
                }
                let j = call(
                    &args.server,
                    reqwest::Method::POST,
                    "/v1/tokens",
                    Some(json!({
                        "tenant": tenant,
                        "scopes": scopes,
                        "expires_in": expires_in,
                        "description": description,
                    })),
                )
                .await?;
                let token = j["token"].as_str().context("the server sent no token")?;
                println!("{token}");
                eprintln!(
                    "token {} of {} with scopes {}, expires {}: store it now, reckon keeps only its SHA-256",
                    j["id"].as_str().unwrap_or("?"),
                    j["tenant"]
                        .as_str()
                        .map_or("the operator".to_string(), |t| format!("tenant {t}")),
                    scopes.join(", "),
                    j["expires"].as_str().unwrap_or("never"),
                );
                Ok(ExitCode::SUCCESS)
            }
            TokenCommand::List => {
                print(&call(&args.server, reqwest::Method::GET, "/v1/tokens", None).await?)
            }
            TokenCommand::Revoke { id } => print(
                &call(
                    &args.server,
                    reqwest::Method::DELETE,
                    &format!("/v1/tokens/{id}"),
                    None,
                )
                .await?,
            ),
        }
    })
}

/// Options of `reckon define`.
#[derive(Debug, clap::Args)]
pub struct DefineArgs {
    #[command(flatten)]
    server: Server,
    /// The tenant whose definitions these are (an operator's token; a tenant's token
    /// always means its own).
    #[arg(long, global = true)]
    tenant: Option<String>,
    #[command(subcommand)]
    what: DefineCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DefineCommand {
    /// Create or replace every `[[stream]]`, `[[pipeline]]`, `[[reconcile]]`,
    /// `[[running_total]]` and `[[alert]]` of a TOML file (reckon.toml's schema), in
    /// that order, and print what each did; a changed pipeline starts fresh under a
    /// new identity (`name@2`).
    Apply {
        /// The file (`-`: standard input).
        file: String,
    },
    /// List the definitions made over the API.
    List,
    /// Print one definition.
    Show {
        /// stream, pipeline, reconcile, running_total or alert.
        kind: String,
        /// Its name.
        name: String,
    },
    /// Delete a definition (refused while another reads it); a stream's raw events go
    /// with it.
    Delete {
        /// stream, pipeline, reconcile, running_total or alert.
        kind: String,
        /// Its name.
        name: String,
    },
}

/// The kinds of definitions, in the order `define apply` sends them (what is read
/// before what reads it).
const KINDS: [&str; 5] = ["stream", "pipeline", "reconcile", "running_total", "alert"];

/// Runs `reckon define …`.
pub fn define(args: &DefineArgs) -> Result<ExitCode> {
    let query = args
        .tenant
        .as_ref()
        .map(|t| format!("?tenant={t}"))
        .unwrap_or_default();
    block_on(async {
        match &args.what {
            DefineCommand::Apply { file } => {
                let text = if file == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                } else {
                    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
                };
                let doc: toml::Table = toml::from_str(&text).with_context(|| file.clone())?;
                if let Some(other) = doc.keys().find(|k| !KINDS.contains(&k.as_str())) {
                    bail!(
                        "{file}: `{other}` cannot be defined over the API (only [[stream]], [[pipeline]], [[reconcile]], [[running_total]] and [[alert]]; the rest belongs in the server's reckon.toml)"
                    );
                }
                let mut applied = 0;
                for kind in KINDS {
                    let Some(entries) = doc.get(kind) else {
                        continue;
                    };
                    let Some(entries) = entries.as_array() else {
                        bail!("{file}: `{kind}` must be an array of tables ([[{kind}]])");
                    };
                    for entry in entries {
                        let body = serde_json::to_value(entry)?;
                        let Some(name) = body.get("name").and_then(Json::as_str) else {
                            bail!("{file}: a [[{kind}]] has no `name`");
                        };
                        let j = call(
                            &args.server,
                            reqwest::Method::PUT,
                            &format!("/v1/definitions/{kind}/{name}{query}"),
                            Some(body.clone()),
                        )
                        .await
                        .with_context(|| format!("{kind} `{name}`"))?;
                        println!(
                            "{}: {}",
                            j["status"].as_str().unwrap_or("?"),
                            j["message"].as_str().unwrap_or_default()
                        );
                        applied += 1;
                    }
                }
                if applied == 0 {
                    bail!("{file} defines nothing (no [[stream]], [[pipeline]], … tables)");
                }
                Ok(ExitCode::SUCCESS)
            }
            DefineCommand::List => print(
                &call(
                    &args.server,
                    reqwest::Method::GET,
                    &format!("/v1/definitions{query}"),
                    None,
                )
                .await?,
            ),
            DefineCommand::Show { kind, name } => print(
                &call(
                    &args.server,
                    reqwest::Method::GET,
                    &format!("/v1/definitions/{kind}/{name}{query}"),
                    None,
                )
                .await?,
            ),
            DefineCommand::Delete { kind, name } => {
                let j = call(
                    &args.server,
                    reqwest::Method::DELETE,
                    &format!("/v1/definitions/{kind}/{name}{query}"),
                    None,
                )
                .await?;
                println!("{}", j["message"].as_str().unwrap_or_default());
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Options of `reckon rules`.
#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    #[command(flatten)]
    server: Server,
    #[command(subcommand)]
    what: RulesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RulesCommand {
    /// The timeline an alert rule gives over stored history: the rule evaluated at once
    /// over its input's stored windows starting in [--from, --to); nothing is stored or
    /// sent. Name a running rule, or give one that does not run with --file.
    Backfill {
        /// A running rule (an `[[alert]]` of the server).
        rule: Option<String>,
        /// A TOML file with one `[[alert]]` table (reckon.toml's schema) to evaluate
        /// instead.
        #[arg(long, conflicts_with = "rule")]
        file: Option<String>,
        /// Windows starting at or after this time (RFC 3339); default: all.
        #[arg(long)]
        from: Option<String>,
        /// Windows starting before this time (RFC 3339); default: all.
        #[arg(long)]
        to: Option<String>,
        /// Print CSV instead of JSON.
        #[arg(long)]
        csv: bool,
    },
}

/// Runs `reckon rules …`.
pub fn rules(args: &RulesArgs) -> Result<ExitCode> {
    let RulesCommand::Backfill {
        rule,
        file,
        from,
        to,
        csv,
    } = &args.what;
    let mut query = Vec::new();
    for (name, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push(format!("{name}={}", v.replace('+', "%2B")));
        }
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let (method, path, body) = match (rule, file) {
        (Some(r), None) => (
            reqwest::Method::GET,
            format!("/v1/pipelines/{r}/backfill{query}"),
            None,
        ),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
            let doc: toml::Table = toml::from_str(&text).with_context(|| f.clone())?;
            let alerts = doc
                .get("alert")
                .and_then(|a| a.as_array())
                .filter(|a| a.len() == 1)
                .with_context(|| format!("{f} must hold exactly one [[alert]] table"))?;
            (
                reqwest::Method::POST,
                format!("/v1/rules/backfill{query}"),
                Some(serde_json::to_value(&alerts[0])?),
            )
        }
        _ => bail!("name a running rule, or give one with --file rule.toml"),
    };
    block_on(async {
        if *csv {
            let base = args.server.url.trim_end_matches('/');
            let mut req = client(args.server.token.as_deref())?
                .request(method, format!("{base}{path}"))
                .header(reqwest::header::ACCEPT, "text/csv");
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.with_context(|| {
                format!("cannot reach reckon at {base} (is `reckon serve` running?)")
            })?;
            let status = resp.status();
            let text = resp.text().await.context("reading the answer")?;
            if !status.is_success() {
                let msg = serde_json::from_str::<Json>(&text)
                    .ok()
                    .and_then(|j| j["error"].as_str().map(String::from))
                    .unwrap_or(text);
                bail!("{status}: {msg}");
            }
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        print(&call(&args.server, method, &path, body).await?)
    })
}
