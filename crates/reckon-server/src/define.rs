//! Definitions over the HTTP API (`docs/definitions.md`): a tenant's streams, pipelines,
//! reconciliations, running totals and alert rules, in `reckon.toml`'s schema written
//! as JSON, made while the server runs.
//!
//! - `PUT /v1/definitions/{kind}/{name}` creates or replaces one, `DELETE` removes it,
//!   `GET /v1/definitions[/{kind}/{name}]` reads them.
//! - A definition is checked with the file's checks and messages, against everything
//!   else that runs; its row in the `catalog` keyspace is committed in the same commit
//!   that starts its operators ([`reckon_runtime::Runtime::reconfigure`]), and the
//!   server loads it at startup with `reckon.toml`.
//! - **Identity.** An operator's results are stored under its name. A replaced
//!   operator whose definition differs cannot carry its state over, so it starts fresh
//!   under a new identity, `name@N` (its generation `N`), and the answer says so; so
//!   does every operator reading it, transitively (what they read changed). The plain
//!   name means the current generation in queries. A stream keeps its name (its raw
//!   log is the stream); a changed stream restarts the operators reading it.
//! - Deleting a definition stops its operators (a stream's raw events are deleted);
//!   its generation is remembered, so a name defined again never meets the results of
//!   an earlier definition.

use crate::auth::{Principal, json_body};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reckon_runtime::Config;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Catalog keys of definitions: `def/{kind}/{tenant}/{name}` (an empty tenant: the
/// operator's own).
const PREFIX: &[u8] = b"def/";

/// Longest name of a definition.
const MAX_NAME: usize = 128;

/// What a definition defines: a table of `reckon.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Stream,
    Pipeline,
    Reconcile,
    RunningTotal,
    Alert,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Stream,
        Kind::Pipeline,
        Kind::Reconcile,
        Kind::RunningTotal,
        Kind::Alert,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Stream => "stream",
            Kind::Pipeline => "pipeline",
            Kind::Reconcile => "reconcile",
            Kind::RunningTotal => "running_total",
            Kind::Alert => "alert",
        }
    }

    fn parse(s: &str) -> Result<Kind, ApiError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "unknown kind of definition `{s}` (kinds: stream, pipeline, reconcile, running_total, alert)"
                ))
            })
    }

    /// A short example body, for error messages.
    fn example(self) -> &'static str {
        match self {
            Kind::Stream => r#"{"key_fields": ["station"], "time_field": "time"}"#,
            Kind::Pipeline => {
                r#"{"stream": "alarms", "window": {"type": "tumbling", "size": "1h"}, "aggregates": [{"fn": "count"}]}"#
            }
            Kind::Reconcile => {
                r#"{"events": {"stream": "payments", "id_fields": ["id"]}, "audit": {"stream": "ledger", "id_fields": ["id"]}, "period": "1d"}"#
            }
            Kind::RunningTotal => r#"{"stream": "readings", "field": "kwh"}"#,
            Kind::Alert => r#"{"input": "rate", "condition": "above >= 10", "for": 2}"#,
        }
    }

    /// The names a definition of this kind reads, by whether each is a stream.
    fn references(self, body: &Value) -> Vec<(bool, String)> {
        let at = |path: &[&str]| {
            let mut v = body;
            for p in path {
                v = v.get(*p)?;
            }
            v.as_str().map(str::to_string)
        };
        let (streams, operators): (Vec<&[&str]>, Vec<&[&str]>) = match self {
            Kind::Stream => (vec![], vec![]),
            Kind::Pipeline => (vec![&["stream"]], vec![&["input"]]),
            Kind::Reconcile => (vec![&["events", "stream"], &["audit", "stream"]], vec![]),
            Kind::RunningTotal => (vec![&["stream"], &["mapping", "stream"]], vec![]),
            Kind::Alert => (vec![], vec![&["input"]]),
        };
        let s = streams.into_iter().filter_map(|p| Some((true, at(p)?)));
        let o = operators.into_iter().filter_map(|p| Some((false, at(p)?)));
        s.chain(o).collect()
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One definition as stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Definition {
    tenant: Option<String>,
    kind: Kind,
    name: String,
    /// 1 for the first definition of the name; one more for each replacement with a
    /// different definition and for each definition after a deletion.
    generation: u32,
    /// The definition as given, without `name` and `tenant`.
    body: Value,
    /// What its running operator is made of: the body, and the identity and
    /// fingerprint of each definition it reads (empty until settled).
    fingerprint: String,
    /// When it was first defined and last changed (Unix nanoseconds).
    created: i64,
    updated: i64,
    /// Deleted: kept to remember the generation.
    #[serde(default)]
    deleted: bool,
}

impl Definition {
    /// The name its results are stored under (local to its tenant): the name, or
    /// `name@N` from the second generation on (a stream keeps its name).
    fn identity(&self) -> String {
        if self.kind == Kind::Stream || self.generation <= 1 {
            self.name.clone()
        } else {
            format!("{}@{}", self.name, self.generation)
        }
    }

    fn key(&self) -> Vec<u8> {
        let mut k = PREFIX.to_vec();
        k.extend_from_slice(
            format!(
                "{}/{}/{}",
                self.kind,
                self.tenant.as_deref().unwrap_or_default(),
                self.name
            )
            .as_bytes(),
        );
        k
    }

    fn slot(&self) -> Slot {
        (
            self.tenant.clone(),
            self.kind == Kind::Stream,
            self.name.clone(),
        )
    }

    fn json(&self, who: &Principal) -> Value {
        let mut definition = self.body.clone();
        if let Some(o) = definition.as_object_mut() {
            o.insert("name".into(), json!(self.name));
        }
        let mut out = json!({
            "kind": self.kind,
            "name": self.name,
            "identity": self.identity(),
            "generation": self.generation,
            "definition": definition,
            "created": crate::wire::rfc3339(self.created),
            "updated": crate::wire::rfc3339(self.updated),
        });
        if who.tenant().is_none()
            && let Some(o) = out.as_object_mut()
        {
            o.insert("tenant".into(), json!(self.tenant));
        }
        out
    }
}

/// Where a definition lives: (tenant, whether a stream, name). Streams and operators
/// have separate names, as in `reckon.toml`.
type Slot = (Option<String>, bool, String);

/// Every definition made over the API (deleted ones too).
#[derive(Debug, Default, Clone)]
pub(crate) struct Catalog {
    defs: BTreeMap<Slot, Definition>,
}

impl Catalog {
    /// The definitions of `store`.
    pub(crate) fn load(store: &reckon_store::Store) -> crate::Result<Catalog> {
        let mut c = Catalog::default();
        for (k, v) in store.catalog(PREFIX)? {
            let d: Definition = serde_json::from_slice(&v).map_err(|e| {
                crate::Error::Catalog(format!("{}: {e}", String::from_utf8_lossy(&k)))
            })?;
            c.defs.insert(d.slot(), d);
        }
        Ok(c)
    }

    fn live(&self) -> impl Iterator<Item = &Definition> {
        self.defs.values().filter(|d| !d.deleted)
    }

    /// The live definitions as a configuration to add to the file's
    /// ([`Config::extended`]): each named by its identity, its operator inputs by
    /// theirs. An error names the definition and what is wrong.
    pub(crate) fn fragment(&self) -> Result<Config, String> {
        let mut c = Config::default();
        for d in self.live() {
            let mut body = d.body.clone();
            let Some(o) = body.as_object_mut() else {
                return Err(format!(
                    "{} `{}`: the definition must be a JSON object",
                    d.kind, d.name
                ));
            };
            o.insert("name".into(), json!(d.identity()));
            if let Some(t) = &d.tenant {
                o.insert("tenant".into(), json!(t));
            }
            if let Some(Value::String(input)) = o.get("input") {
                let slot = (d.tenant.clone(), false, input.clone());
                if let Some(up) = self.defs.get(&slot).filter(|u| !u.deleted) {
                    o.insert("input".into(), json!(up.identity()));
                }
            }
            let what = |e: serde_json::Error| format!("{} `{}`: {e}", d.kind, d.name);
            match d.kind {
                Kind::Stream => c.streams.push(serde_json::from_value(body).map_err(what)?),
                Kind::Pipeline => c
                    .pipelines
                    .push(serde_json::from_value(body).map_err(what)?),
                Kind::Reconcile => c
                    .reconciles
                    .push(serde_json::from_value(body).map_err(what)?),
                Kind::RunningTotal => c
                    .running_totals
                    .push(serde_json::from_value(body).map_err(what)?),
                Kind::Alert => c.alerts.push(serde_json::from_value(body).map_err(what)?),
            }
        }
        Ok(c)
    }

    /// Stored name → stored identity, of the operators past their first generation
    /// (a query naming `rate` means `rate@2`).
    pub(crate) fn aliases(&self) -> HashMap<String, String> {
        self.live()
            .filter(|d| d.identity() != d.name)
            .map(|d| (stored(&d.tenant, &d.name), stored(&d.tenant, &d.identity())))
            .collect()
    }

    /// Gives `tenant`'s live definitions their fingerprints: one whose fingerprint
    /// changed (its body, or the identity or definition of what it reads) goes to its
    /// next generation, but for a stream. Returns the slots that did.
    fn settle(&mut self, tenant: &Option<String>, now: i64) -> Vec<Slot> {
        let slots: Vec<Slot> = self
            .live()
            .filter(|d| &d.tenant == tenant)
            .map(Definition::slot)
            .collect();
        let (mut visiting, mut done, mut bumped) = (HashSet::new(), HashSet::new(), Vec::new());
        for s in &slots {
            self.settle_one(s, &mut visiting, &mut done, &mut bumped, now);
        }
        bumped
    }

    fn settle_one(
        &mut self,
        slot: &Slot,
        visiting: &mut HashSet<Slot>,
        done: &mut HashSet<Slot>,
        bumped: &mut Vec<Slot>,
        now: i64,
    ) {
        if done.contains(slot) || !visiting.insert(slot.clone()) {
            // Settled, or a cycle (which the configuration's check refuses).
            return;
        }
        let Some(def) = self.defs.get(slot).cloned() else {
            return;
        };
        let mut parts = vec![def.kind.as_str().to_string(), canonical(&def.body)];
        for (is_stream, name) in def.kind.references(&def.body) {
            let up = (def.tenant.clone(), is_stream, name.clone());
            match self.defs.get(&up) {
                Some(u) if !u.deleted => {
                    self.settle_one(&up, visiting, done, bumped, now);
                    if let Some(u) = self.defs.get(&up) {
                        parts.push(format!("{name}={}:{}", u.identity(), u.fingerprint));
                    }
                }
                // Defined in the file (which does not change while running), or not
                // at all (which the check refuses).
                _ => parts.push(format!("{name}=file")),
            }
        }
        let fingerprint = hex::encode(&sha2::Sha256::digest(parts.join("\n").as_bytes())[..12]);
        if let Some(d) = self.defs.get_mut(slot) {
            if d.fingerprint.is_empty() {
                d.fingerprint = fingerprint;
            } else if d.fingerprint != fingerprint {
                if d.kind != Kind::Stream {
                    d.generation += 1;
                    bumped.push(slot.clone());
                }
                d.fingerprint = fingerprint;
                d.updated = now;
            }
        }
        visiting.remove(slot);
        done.insert(slot.clone());
    }

    /// The catalog rows that turn `self` into `next`.
    fn rows(&self, next: &Catalog) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        next.defs
            .values()
            .filter(|d| self.defs.get(&d.slot()) != Some(*d))
            .filter_map(|d| Some((d.key(), Some(serde_json::to_vec(d).ok()?))))
            .collect()
    }
}

/// JSON with object keys sorted, so equal definitions print equal.
fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let m: BTreeMap<&String, Value> = o.iter().map(|(k, v)| (k, sorted(v))).collect();
                json!(m)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// The stored name of `tenant`'s `name`.
fn stored(tenant: &Option<String>, name: &str) -> String {
    match tenant {
        Some(t) => format!("{t}/{name}"),
        None => name.to_string(),
    }
}

/// `local` as `who` names the current generation of its operator, if `local` is a
/// definition's plain name past its first generation.
pub(crate) fn current_identity(state: &AppState, who: &Principal, local: &str) -> Option<String> {
    let aliases = state.aliases();
    let identity = aliases.get(&who.stored(local))?;
    who.local(identity).map(str::to_string)
}

/// `?tenant=`: whose definitions an operator means.
#[derive(Debug, Deserialize)]
pub(crate) struct TenantQuery {
    #[serde(default)]
    tenant: Option<String>,
}

/// The tenant whose definitions a request reads or changes: a tenant's token's own,
/// or for an operator `?tenant=` (none: the operator's own objects).
fn owner(
    state: &AppState,
    who: &Principal,
    asked: Option<String>,
) -> Result<Option<String>, ApiError> {
    match (who.tenant(), asked) {
        (Some(own), None) => Ok(Some(own.to_string())),
        (Some(own), Some(t)) if t == own => Ok(Some(t)),
        (Some(_), Some(t)) => Err(ApiError::not_found(format!("unknown tenant `{t}`"))),
        (None, Some(t)) if !state.auth().has_tenant(&t) => Err(ApiError::not_found(format!(
            "unknown tenant `{t}` (create it first: reckon tenant create {t})"
        ))),
        (None, t) => Ok(t),
    }
}

fn check_name(kind: Kind, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{kind} name `{name}`: use 1 to {MAX_NAME} letters, digits, `_`, `-` or `.`"
        )))
    }
}

/// A configuration error as the tenant sees it: its names without the `tenant/` prefix.
fn localise(message: &str, tenant: &Option<String>) -> String {
    let message = message.strip_prefix("configuration: ").unwrap_or(message);
    match tenant {
        Some(t) => message.replace(&format!("{t}/"), ""),
        None => message.to_string(),
    }
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Why [`apply`] did not change anything.
enum Refusal {
    /// The configuration with the change does not check: the message says why.
    Invalid(String),
    /// Anything else, as answered.
    Api(ApiError),
}

/// Checks `next` against the file's configuration, has the writer run it and commit
/// its rows, then makes it the running configuration and `catalog` (held locked by
/// the caller).
async fn apply(
    state: &AppState,
    catalog: &mut Catalog,
    next: Catalog,
    purge: Vec<Arc<str>>,
    tenant: &Option<String>,
) -> Result<reckon_runtime::Reconfigured, Refusal> {
    let fragment = next
        .fragment()
        .map_err(|m| Refusal::Invalid(localise(&m, tenant)))?;
    let config = state
        .base_config()
        .extended(fragment)
        .map_err(|e| Refusal::Invalid(localise(&e.to_string(), tenant)))?;
    let rows = catalog.rows(&next);
    if rows.is_empty() && purge.is_empty() {
        return Ok(reckon_runtime::Reconfigured::default());
    }
    let done = state
        .writer()
        .reconfigure(config.clone(), rows, purge)
        .await
        .map_err(|e| match e {
            crate::writer::ReconfigureError::Refused(m) => Refusal::Invalid(localise(&m, tenant)),
            crate::writer::ReconfigureError::Submit(e) => {
                Refusal::Api(crate::ingest::submit_error(e))
            }
        })?;
    state.set_config(config, next.aliases());
    *catalog = next;
    Ok(done)
}

/// The local names of `names` (stored), as `who` sees them.
fn locals(who: &Principal, names: &[Arc<str>]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| who.local(n).map(str::to_string))
        .collect()
}

/// `GET /v1/definitions`: the definitions made over the API of the token's tenant (an
/// operator: of every tenant, or of `?tenant=`).
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, ApiError> {
    let every = who.is_operator() && q.tenant.is_none();
    let tenant = owner(&state, &who, q.tenant)?;
    if !who.reads_all() {
        return Err(who.forbidden("read definitions (a `read` or `admin` scope can)"));
    }
    let catalog = state.definitions().lock().await;
    let list: Vec<Value> = catalog
        .live()
        .filter(|d| every || d.tenant == tenant)
        .map(|d| d.json(&who))
        .collect();
    Ok(Json(json!({ "definitions": list })).into_response())
}

/// `GET /v1/definitions/{kind}/{name}`: one definition.
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, ApiError> {
    let kind = Kind::parse(&kind)?;
    let tenant = owner(&state, &who, q.tenant)?;
    if !who.reads_all() {
        return Err(who.forbidden("read definitions (a `read` or `admin` scope can)"));
    }
    let catalog = state.definitions().lock().await;
    let slot = (tenant, kind == Kind::Stream, name.clone());
    match catalog.defs.get(&slot) {
        Some(d) if !d.deleted && d.kind == kind => Ok(Json(d.json(&who)).into_response()),
        _ => Err(not_defined(&catalog, kind, &name, &slot.0)),
    }
}

fn not_defined(catalog: &Catalog, kind: Kind, name: &str, tenant: &Option<String>) -> ApiError {
    let mut known: Vec<String> = catalog
        .live()
        .filter(|d| &d.tenant == tenant && d.kind == kind)
        .map(|d| d.name.clone())
        .collect();
    known.sort();
    ApiError::not_found(format!(
        "no {kind} `{name}` was defined over the API ({kind}s defined: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// `PUT /v1/definitions/{kind}/{name}`: creates or replaces a definition and starts
/// what it defines; answers what happened (201 when created).
pub(crate) async fn put(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let kind = Kind::parse(&kind)?;
    let tenant = owner(&state, &who, q.tenant)?;
    if !who.is_admin() {
        return Err(who.forbidden(&format!("define a {kind} (an admin token can)")));
    }
    check_name(kind, &name)?;
    let mut body: Value = json_body(&body, kind.example())?;
    let Some(o) = body.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the request body must be a JSON object, such as {}",
            kind.example()
        )));
    };
    match o.remove("name") {
        None => {}
        Some(Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`name` in the body ({other}) differs from the name in the path (`{name}`)"
            )));
        }
    }
    match o.remove("tenant") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if Some(&t) == tenant.as_ref() => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`tenant` in the body ({other}): a definition belongs to the token's tenant (an operator names it with ?tenant=)"
            )));
        }
    }
    let stored_name = stored(&tenant, &name);
    let in_file = {
        let base = state.base_config();
        if kind == Kind::Stream {
            base.stream(&stored_name).is_some()
        } else {
            base.output_names().any(|n| n == stored_name)
        }
    };
    if in_file {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("`{name}` is defined in the configuration file; change it there"),
        ));
    }
    let now = state.clock().now().0;
    let mut catalog = state.definitions().lock().await;
    let slot = (tenant.clone(), kind == Kind::Stream, name.clone());
    let prev = catalog.defs.get(&slot).cloned();
    let def = match &prev {
        Some(p) if !p.deleted && p.kind != kind => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "`{name}` is a {} defined over the API; delete it first (DELETE /v1/definitions/{}/{name})",
                    p.kind, p.kind
                ),
            ));
        }
        Some(p) if !p.deleted => Definition {
            kind,
            body,
            ..p.clone()
        },
        gone => Definition {
            tenant: tenant.clone(),
            kind,
            name: name.clone(),
            generation: gone.as_ref().map_or(1, |p| p.generation + 1),
            body,
            fingerprint: String::new(),
            created: now,
            updated: now,
            deleted: false,
        },
    };
    let mut next = catalog.clone();
    next.defs.insert(slot.clone(), def);
    let bumped = next.settle(&tenant, now);
    let done = match apply(&state, &mut catalog, next, Vec::new(), &tenant).await {
        Ok(done) => done,
        Err(Refusal::Invalid(m)) => return Err(unprocessable(m)),
        Err(Refusal::Api(e)) => return Err(e),
    };
    let Some(def) = catalog.defs.get(&slot) else {
        return Err(ApiError::internal("the definition vanished"));
    };
    let previous = prev.filter(|p| !p.deleted);
    let restarted: Vec<&Definition> = bumped
        .iter()
        .filter(|s| **s != slot)
        .filter_map(|s| catalog.defs.get(s))
        .collect();
    let status = match &previous {
        None => "created",
        Some(p) if p.generation != def.generation => "replaced",
        Some(p) if p.fingerprint != def.fingerprint => "updated",
        Some(_) => "unchanged",
    };
    let mut message = match status {
        "created" if kind == Kind::Stream => format!("stream `{name}` created"),
        "created" => format!(
            "{kind} `{}` created: it started from what its inputs hold already",
            def.identity()
        ),
        "replaced" => format!(
            "{kind} `{name}` changed, and its state cannot carry over: it starts fresh as `{}` (`{name}` now means `{}`; `{}`'s results are no longer served)",
            def.identity(),
            def.identity(),
            previous
                .as_ref()
                .map(Definition::identity)
                .unwrap_or_default()
        ),
        "updated" => format!("{kind} `{name}` updated"),
        _ => format!("{kind} `{name}` is unchanged: nothing restarted"),
    };
    for r in &restarted {
        message.push_str(&format!(
            "; {} `{}` reads it and starts fresh as `{}`",
            r.kind,
            r.name,
            r.identity()
        ));
    }
    tracing::info!(
        tenant = tenant.as_deref().unwrap_or("(operator)"),
        kind = kind.as_str(),
        name = %name,
        identity = %def.identity(),
        status,
        started = done.started.len(),
        stopped = done.stopped.len(),
        "definition {status}: {message}"
    );
    let answer = json!({
        "status": status,
        "kind": kind,
        "name": name,
        "identity": def.identity(),
        "generation": def.generation,
        "previous_identity": previous.as_ref().map(Definition::identity),
        "restarted": restarted.iter().map(|r| json!({
            "kind": r.kind,
            "name": r.name,
            "identity": r.identity(),
            "generation": r.generation,
        })).collect::<Vec<_>>(),
        "started": locals(&who, &done.started),
        "stopped": locals(&who, &done.stopped),
        "results": done.emissions,
        "message": message,
    });
    let code = if status == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(answer)).into_response())
}

/// `DELETE /v1/definitions/{kind}/{name}`: stops what a definition defines (a stream's
/// raw events are deleted); refused while another definition reads it.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, ApiError> {
    let kind = Kind::parse(&kind)?;
    let tenant = owner(&state, &who, q.tenant)?;
    if !who.is_admin() {
        return Err(who.forbidden(&format!("delete a {kind} (an admin token can)")));
    }
    let now = state.clock().now().0;
    let mut catalog = state.definitions().lock().await;
    let slot = (tenant.clone(), kind == Kind::Stream, name.clone());
    let mut def = match catalog.defs.get(&slot) {
        Some(d) if !d.deleted && d.kind == kind => d.clone(),
        _ => return Err(not_defined(&catalog, kind, &name, &tenant)),
    };
    let identity = def.identity();
    def.deleted = true;
    def.updated = now;
    let mut next = catalog.clone();
    next.defs.insert(slot, def);
    let purge = if kind == Kind::Stream {
        vec![Arc::from(stored(&tenant, &name).as_str())]
    } else {
        Vec::new()
    };
    let done = match apply(&state, &mut catalog, next, purge, &tenant).await {
        Ok(done) => done,
        Err(Refusal::Invalid(m)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("cannot delete {kind} `{name}`: without it, {m}"),
            ));
        }
        Err(Refusal::Api(e)) => return Err(e),
    };
    tracing::info!(
        tenant = tenant.as_deref().unwrap_or("(operator)"),
        kind = kind.as_str(),
        name = %name,
        identity = %identity,
        "definition deleted"
    );
    Ok(Json(json!({
        "status": "deleted",
        "kind": kind,
        "name": name,
        "identity": identity,
        "stopped": locals(&who, &done.stopped),
        "message": if kind == Kind::Stream {
            format!("stream `{name}` deleted with its raw events")
        } else {
            format!("{kind} `{identity}` stopped; a new definition of `{name}` will start fresh under a new identity")
        },
    }))
    .into_response())
}
