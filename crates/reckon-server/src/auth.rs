//! Tenants and tokens: who is asking, and what they may see.
//!
//! - A **tenant** owns streams, pipelines and webhooks (`tenant = "acme"` in
//!   `reckon.toml`); they are stored as `acme/name` and the tenant names them `name`.
//! - A **token** (`rk_` and 48 hex digits) belongs to a tenant, or to no tenant (an
//!   operator's), and has scopes: `admin`, `read`, `write`, or `read:NAME` /
//!   `write:NAME` for one stream or pipeline; it may expire. Only its SHA-256 is
//!   stored (in the store's `catalog` keyspace); the token itself is shown once.
//! - Every route but the health checks authenticates with `Authorization: Bearer …` (or
//!   InfluxDB's `Token …`). A request without a valid token gets 401; with one, a name
//!   outside its tenant is 404 (its existence is not revealed) and a name of its tenant
//!   outside its scopes is 403.
//! - Until the first token exists reckon runs in single-user mode: every route is open
//!   to loopback clients (and only to them). The first token must be an operator's
//!   admin token, so that someone can manage reckon once authentication is on.
//!
//! [`Principal`] is what a request is allowed; the [`authenticate`] middleware puts one
//! in every request's extensions. Documented in `docs/tenants.md`.

use crate::AppState;
use crate::error::ApiError;
use crate::quota::{Limits, Quotas};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use reckon_runtime::{Config, check_tenant_name};
use reckon_store::CommitBatch;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

const TENANT_PREFIX: &[u8] = b"tenant/";
const TOKEN_PREFIX: &[u8] = b"token/";

/// The peer address of a connection, put in each request's extensions by the server
/// (requests handed to the router in-process have none and count as loopback).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything of its tenant (of every tenant for an operator's token), including
    /// tokens and, for an operator, tenants.
    Admin,
    /// Reading results, feeds, dead letters and metrics; of one name, or all.
    Read(Option<String>),
    /// Writing events; to one stream, or all.
    Write(Option<String>),
}

impl Scope {
    /// Parses `admin`, `read`, `write`, `read:NAME` or `write:NAME`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        let (what, name) = match s.split_once(':') {
            Some((w, n)) => (w, Some(n)),
            None => (s, None),
        };
        if let Some(n) = name
            && (n.is_empty() || n.contains('/'))
        {
            return Err(format!(
                "scope `{s}`: the name after `:` must be a stream or pipeline name (without `/`)"
            ));
        }
        let name = name.map(str::to_string);
        match (what, name) {
            ("admin", None) => Ok(Scope::Admin),
            ("read", n) => Ok(Scope::Read(n)),
            ("write", n) => Ok(Scope::Write(n)),
            _ => Err(format!(
                "unknown scope `{s}`: use admin, read, write, read:NAME or write:NAME"
            )),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Read(None) => f.write_str("read"),
            Scope::Write(None) => f.write_str("write"),
            Scope::Read(Some(n)) => write!(f, "read:{n}"),
            Scope::Write(Some(n)) => write!(f, "write:{n}"),
        }
    }
}

/// What a request does to a named object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read results of a pipeline, or a stream's dead letters.
    Read,
    /// Write events to a stream.
    Write,
}

/// A token as stored (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its public id: the first 12 hex digits of its SHA-256.
    pub id: String,
    /// The tenant it belongs to (none: an operator's).
    pub tenant: Option<String>,
    /// What it allows (as written: `admin`, `read:rate`...).
    pub scopes: Vec<String>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// When it was made (Unix nanoseconds).
    pub created: i64,
    /// When it stops working (Unix nanoseconds), if ever.
    pub expires: Option<i64>,
    /// Its SHA-256, hex.
    pub sha256: String,
    #[serde(skip)]
    parsed: Vec<Scope>,
}

/// A tenant as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Its name.
    pub name: String,
    /// When it was made (Unix nanoseconds).
    pub created: i64,
    /// Its limits on ingest.
    #[serde(default)]
    pub quotas: Quotas,
}

/// Whether enforcing `q` needs the tenant's series and stored bytes from the store.
pub(crate) fn needs_scan(q: &Quotas) -> bool {
    q.max_series.is_some() || q.max_stored_bytes.is_some()
}

/// Who is asking, as far as the authentication middleware could tell.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No token exists yet: single-user mode, everything is allowed (loopback only).
    Open,
    /// Authentication is on and the request had no token (only the health checks).
    Anonymous,
    /// A valid token.
    Token(Arc<TokenRecord>),
}

impl Principal {
    /// The tenant whose objects this principal sees; `None` sees the operator's view
    /// (every stored name).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Token(t) => t.tenant.as_deref(),
            _ => None,
        }
    }

    fn scopes(&self) -> &[Scope] {
        match self {
            Principal::Token(t) => &t.parsed,
            _ => &[],
        }
    }

    /// Whether it may manage tokens (of its tenant) and, without a tenant, tenants.
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Open) || self.scopes().contains(&Scope::Admin)
    }

    /// Whether it may read everything of its tenant (`read` or `admin`).
    pub fn reads_all(&self) -> bool {
        matches!(self, Principal::Open)
            || self
                .scopes()
                .iter()
                .any(|s| matches!(s, Scope::Admin | Scope::Read(None)))
    }

    /// Whether it sees every tenant (single-user mode, or an operator's token).
    pub fn is_operator(&self) -> bool {
        match self {
            Principal::Open => true,
            Principal::Anonymous => false,
            Principal::Token(t) => t.tenant.is_none(),
        }
    }

    /// The stored name of the object this principal calls `local`.
    pub fn stored(&self, local: &str) -> String {
        match self.tenant() {
            Some(t) => format!("{t}/{local}"),
            None => local.to_string(),
        }
    }

    /// The name this principal knows a stored object by, if it may see it at all.
    pub fn local<'a>(&self, stored: &'a str) -> Option<&'a str> {
        match self {
            Principal::Anonymous => None,
            Principal::Open => Some(stored),
            Principal::Token(t) => match &t.tenant {
                None => Some(stored),
                Some(tenant) => stored
                    .strip_prefix(tenant.as_str())
                    .and_then(|rest| rest.strip_prefix('/')),
            },
        }
    }

    /// Whether it may `access` the object it calls `local` (which it can see).
    pub fn may(&self, access: Access, local: &str) -> bool {
        if matches!(self, Principal::Open) {
            return true;
        }
        self.scopes().iter().any(|s| match (s, access) {
            (Scope::Admin, _) => true,
            (Scope::Read(n), Access::Read) | (Scope::Write(n), Access::Write) => {
                n.as_deref().is_none_or(|n| n == local)
            }
            // A writer of a stream may read its dead letters.
            (Scope::Write(n), Access::Read) => n.as_deref().is_none_or(|n| n == local),
            (Scope::Read(_), Access::Write) => false,
        })
    }

    /// The stored names this principal may `access`, as `(stored, local)` pairs.
    pub fn visible<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        access: Access,
    ) -> Vec<(&'a str, &'a str)> {
        names
            .filter_map(|stored| Some((stored, self.local(stored)?)))
            .filter(|(_, local)| self.may(access, local))
            .collect()
    }

    /// Resolves the name this principal gave to a stored name: 404 if it names nothing
    /// it can see (naming only what it can), 403 if outside its scopes.
    pub fn resolve<'a>(
        &self,
        what: &str,
        local: &str,
        names: impl Iterator<Item = &'a str>,
        access: Access,
    ) -> Result<String, ApiError> {
        let stored = self.stored(local);
        let names: Vec<&str> = names.collect();
        if !names.contains(&stored.as_str()) {
            let mut known: Vec<&str> = names.iter().filter_map(|n| self.local(n)).collect();
            known.sort_unstable();
            return Err(ApiError::not_found(format!(
                "unknown {what} `{local}` ({what}s you can see: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        if !self.may(access, local) {
            return Err(self.forbidden(&format!(
                "{} {what} `{local}`",
                match access {
                    Access::Read => "read",
                    Access::Write => "write to",
                }
            )));
        }
        Ok(stored)
    }

    /// 403: the token may not do `what`.
    pub fn forbidden(&self, what: &str) -> ApiError {
        let scopes: Vec<String> = self.scopes().iter().map(Scope::to_string).collect();
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token may not {what} (its scopes: {})",
                if scopes.is_empty() {
                    "none".to_string()
                } else {
                    scopes.join(", ")
                }
            ),
        )
    }
}

/// The tenants and tokens, loaded from the store and kept in memory.
#[derive(Debug, Default)]
pub struct Registry {
    tenants: BTreeMap<String, TenantRecord>,
    tokens: HashMap<[u8; 32], Arc<TokenRecord>>,
}

/// Tenants and tokens of a server.
#[derive(Debug, Default)]
pub struct Auth {
    registry: RwLock<Registry>,
    /// Serializes changes (check, commit, then update the registry).
    changes: tokio::sync::Mutex<()>,
}

fn sha256(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Loads the tenants and tokens of `store`.
    pub fn load(store: &reckon_store::Store) -> crate::Result<Auth> {
        let corrupt = |what: &str, e: String| crate::Error::Catalog(format!("{what}: {e}"));
        let mut r = Registry::default();
        for (k, v) in store.catalog(TENANT_PREFIX)? {
            let t: TenantRecord = serde_json::from_slice(&v)
                .map_err(|e| corrupt(&String::from_utf8_lossy(&k), e.to_string()))?;
            r.tenants.insert(t.name.clone(), t);
        }
        for (k, v) in store.catalog(TOKEN_PREFIX)? {
            let what = String::from_utf8_lossy(&k).into_owned();
            let mut t: TokenRecord =
                serde_json::from_slice(&v).map_err(|e| corrupt(&what, e.to_string()))?;
            t.parsed = t
                .scopes
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(&what, e))?;
            let hash: [u8; 32] = hex::decode(&t.sha256)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| corrupt(&what, "sha256 is not 32 bytes of hex".into()))?;
            r.tokens.insert(hash, Arc::new(t));
        }
        Ok(Auth {
            registry: RwLock::new(r),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether authentication is on (some token exists).
    pub fn enabled(&self) -> bool {
        !self.read().tokens.is_empty()
    }

    /// Whether `tenant` exists.
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.read().tenants.contains_key(tenant)
    }

    /// The tenants, in name order.
    pub fn tenants(&self) -> Vec<TenantRecord> {
        self.read().tenants.values().cloned().collect()
    }

    /// Who presents the `Authorization` value `header` at processing time `now`.
    pub fn authenticate(&self, header: Option<&str>, now: i64) -> Result<Principal, ApiError> {
        let Some(header) = header else {
            return Err(unauthorized(
                "missing token: send `Authorization: Bearer <token>` (or InfluxDB's `Token <token>`)",
            ));
        };
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")
            })
            .map(|(_, t)| t.trim())
            .ok_or_else(|| {
                unauthorized("the Authorization header must be `Bearer <token>` or `Token <token>`")
            })?;
        let found = self.read().tokens.get(&sha256(token)).cloned();
        match found {
            None => Err(unauthorized("invalid token (unknown or revoked)")),
            Some(t) if t.expires.is_some_and(|e| e <= now) => Err(unauthorized(format!(
                "token {} expired at {}",
                t.id,
                crate::wire::rfc3339(t.expires.unwrap_or(now))
            ))),
            Some(t) => Ok(Principal::Token(t)),
        }
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Health checks and the dashboard's files: answered without a token.
fn is_health(path: &str) -> bool {
    matches!(path, "/healthz" | "/health" | "/ping") || crate::dashboard::is_page(path)
}

/// Middleware: puts the request's [`Principal`] in its extensions, or answers 401.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let auth = state.auth();
    let principal = if !auth.enabled() {
        let loopback = req
            .extensions()
            .get::<Peer>()
            .is_none_or(|p| p.0.ip().is_loopback());
        if !loopback && !is_health(req.uri().path()) {
            return unauthorized(
                "reckon has no tokens yet and answers only loopback clients: create an admin \
                 token on this machine first (`reckon token create --admin`, docs/tenants.md)",
            )
            .into_response();
        }
        Principal::Open
    } else {
        let header = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        match auth.authenticate(header, state.clock().now().0) {
            Ok(p) => p,
            Err(_) if is_health(req.uri().path()) => Principal::Anonymous,
            Err(e) => return e.into_response(),
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

// ---------------------------------------------------------------- the admin API

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenant {
    name: String,
    #[serde(default)]
    quotas: Quotas,
}

/// A JSON request body (any content type), or 400 naming the problem and an example.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    example: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body: {e} (expected JSON such as {example})"
        ))
    })
}

fn operator_only(who: &Principal, what: &str) -> Result<(), ApiError> {
    if who.is_operator() && who.is_admin() {
        Ok(())
    } else {
        Err(who.forbidden(what))
    }
}

async fn commit_catalog(
    state: &AppState,
    catalog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Result<(), ApiError> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || {
        store.commit(CommitBatch {
            catalog,
            ..CommitBatch::default()
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("committing the catalog: {e}")))??;
    Ok(())
}

fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn tenant_json(t: &TenantRecord) -> serde_json::Value {
    json!({ "name": t.name, "created": crate::wire::rfc3339(t.created), "quotas": t.quotas })
}

/// Applies `t`'s quotas, counting its series and stored bytes first if they need it.
async fn apply_quotas(state: &AppState, t: &TenantRecord) -> Result<(), ApiError> {
    let scan = if needs_scan(&t.quotas) {
        let (store, streams) = (
            state.store().clone(),
            state
                .config()
                .streams_of(&t.name)
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
        );
        let scanned = tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = streams.iter().map(String::as_str).collect();
            Limits::scan(&store, &names)
        })
        .await
        .map_err(|e| ApiError::internal(format!("counting series: {e}")))??;
        Some(scanned)
    } else {
        None
    };
    state.limits().set(&t.name, t.quotas.clone(), scan);
    Ok(())
}

/// `POST /v1/tenants`: creates a tenant (an operator's admin token).
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    operator_only(&who, "create tenants (an operator's admin token can)")?;
    let new: NewTenant = json_body(&body, r#"{"name": "acme"}"#)?;
    check_tenant_name(&new.name).map_err(ApiError::bad_request)?;
    let auth = state.auth();
    let _one = auth.changes.lock().await;
    if auth.has_tenant(&new.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("tenant `{}` exists already", new.name),
        ));
    }
    let t = TenantRecord {
        name: new.name.clone(),
        created: state.clock().now().0,
        quotas: new.quotas,
    };
    let value = serde_json::to_vec(&t).map_err(|e| ApiError::internal(e.to_string()))?;
    commit_catalog(&state, vec![(key(TENANT_PREFIX, &t.name), Some(value))]).await?;
    apply_quotas(&state, &t).await?;
    tracing::info!(tenant = %t.name, quotas = ?t.quotas, "tenant created");
    let body = tenant_json(&t);
    auth.write().tenants.insert(t.name.clone(), t);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tenants`: every tenant (an operator), or the token's own.
pub(crate) async fn tenants(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    if !who.is_admin() {
        return Err(who.forbidden("list tenants"));
    }
    let list: Vec<_> = state
        .auth()
        .tenants()
        .iter()
        .filter(|t| who.is_operator() || who.tenant() == Some(&t.name))
        .map(tenant_json)
        .collect();
    Ok(Json(json!({ "tenants": list })).into_response())
}

/// `PUT /v1/tenants/{tenant}/quotas`: replaces a tenant's quotas (an operator's admin
/// token), in effect at once.
pub(crate) async fn set_quotas(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    operator_only(&who, "set quotas (an operator's admin token can)")?;
    let quotas: Quotas = json_body(
        &body,
        r#"{"events_per_second": 10000, "bytes_per_second": 4000000, "max_series": 50000, "max_stored_bytes": 10000000000}"#,
    )?;
    let auth = state.auth();
    let _one = auth.changes.lock().await;
    let Some(mut t) = auth.read().tenants.get(&tenant).cloned() else {
        return Err(ApiError::not_found(format!("unknown tenant `{tenant}`")));
    };
    t.quotas = quotas;
    let value = serde_json::to_vec(&t).map_err(|e| ApiError::internal(e.to_string()))?;
    commit_catalog(&state, vec![(key(TENANT_PREFIX, &t.name), Some(value))]).await?;
    apply_quotas(&state, &t).await?;
    tracing::info!(tenant = %t.name, quotas = ?t.quotas, "quotas set");
    let body = tenant_json(&t);
    auth.write().tenants.insert(t.name.clone(), t);
    Ok(Json(body).into_response())
}

/// `GET /v1/tenants/{tenant}/usage`: a tenant's quotas and what it uses of them (an
/// operator, or a token of the tenant that may read all of it).
pub(crate) async fn usage(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let visible = who.is_operator() || who.tenant() == Some(tenant.as_str());
    let found = visible
        .then(|| state.limits().usage(&tenant, state.clock().now().0))
        .flatten();
    let Some(body) = found else {
        return Err(ApiError::not_found(format!("unknown tenant `{tenant}`")));
    };
    if !who.reads_all() {
        return Err(who.forbidden("read the tenant's usage (a `read` or `admin` scope can)"));
    }
    Ok(Json(body).into_response())
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    #[serde(default)]
    tenant: Option<String>,
    scopes: Vec<String>,
    /// `30d`, `12h`...
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    description: String,
}

fn token_json(t: &TokenRecord) -> serde_json::Value {
    json!({
        "id": t.id,
        "tenant": t.tenant,
        "scopes": t.scopes,
        "description": t.description,
        "created": crate::wire::rfc3339(t.created),
        "expires": t.expires.map(crate::wire::rfc3339),
    })
}

/// `POST /v1/tokens`: makes a token and answers it, once.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !who.is_admin() {
        return Err(who.forbidden("create tokens (an admin token can)"));
    }
    let new: NewToken = json_body(
        &body,
        r#"{"tenant": "acme", "scopes": ["read", "write:alarms"], "expires_in": "90d"}"#,
    )?;
    let parsed: Vec<Scope> = new
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<_, _>>()
        .map_err(ApiError::bad_request)?;
    if parsed.is_empty() {
        return Err(ApiError::bad_request(
            "`scopes` must name at least one scope (admin, read, write, read:NAME, write:NAME)",
        ));
    }
    // A tenant's admin makes tokens of its own tenant only.
    let tenant = match (who.tenant(), new.tenant) {
        (Some(own), None) => Some(own.to_string()),
        (Some(own), Some(t)) if t == own => Some(t),
        (Some(_), Some(_)) => {
            return Err(who.forbidden("create tokens of another tenant"));
        }
        (None, t) => t,
    };
    let auth = state.auth();
    let _one = auth.changes.lock().await;
    let operator_admin = tenant.is_none() && parsed.contains(&Scope::Admin);
    if !auth.enabled() && !operator_admin {
        return Err(ApiError::bad_request(
            "the first token must be an operator's admin token (no tenant, scope admin: \
             `reckon token create --admin`): once a token exists every request needs one",
        ));
    }
    if let Some(t) = &tenant
        && !auth.has_tenant(t)
    {
        return Err(ApiError::not_found(format!(
            "unknown tenant `{t}` (create it first: reckon tenant create {t})"
        )));
    }
    let now = state.clock().now().0;
    let expires = match &new.expires_in {
        None => None,
        Some(s) => {
            let span = reckon_runtime::config::parse_duration(s)
                .map_err(|e| ApiError::bad_request(format!("expires_in: {e}")))?;
            if span.0 <= 0 {
                return Err(ApiError::bad_request("expires_in must be positive"));
            }
            Some(now.saturating_add(span.0))
        }
    };
    let mut secret = [0u8; 24];
    getrandom::fill(&mut secret)
        .map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
    let token = format!("rk_{}", hex::encode(secret));
    let hash = sha256(&token);
    let hash_hex = hex::encode(hash);
    let record = TokenRecord {
        id: hash_hex[..12].to_string(),
        tenant,
        scopes: parsed.iter().map(Scope::to_string).collect(),
        description: new.description,
        created: now,
        expires,
        sha256: hash_hex,
        parsed,
    };
    let value = serde_json::to_vec(&record).map_err(|e| ApiError::internal(e.to_string()))?;
    commit_catalog(&state, vec![(key(TOKEN_PREFIX, &record.id), Some(value))]).await?;
    tracing::info!(
        id = %record.id,
        tenant = record.tenant.as_deref().unwrap_or("(operator)"),
        scopes = %record.scopes.join(","),
        "token created"
    );
    let mut body = token_json(&record);
    body["token"] = json!(token);
    body["note"] = json!("the token is shown only now; reckon keeps only its SHA-256");
    auth.write().tokens.insert(hash, Arc::new(record));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/tokens`: the tokens an admin may manage (never their secrets).
pub(crate) async fn tokens(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    if !who.is_admin() {
        return Err(who.forbidden("list tokens"));
    }
    let mut list: Vec<_> = state
        .auth()
        .read()
        .tokens
        .values()
        .filter(|t| who.is_operator() || t.tenant.as_deref() == who.tenant())
        .cloned()
        .collect();
    list.sort_by_key(|t| (t.tenant.clone(), t.created));
    let list: Vec<_> = list.iter().map(|t| token_json(t)).collect();
    Ok(Json(json!({ "tokens": list })).into_response())
}

/// `DELETE /v1/tokens/{id}`: revokes a token at once.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !who.is_admin() {
        return Err(who.forbidden("revoke tokens"));
    }
    let auth = state.auth();
    let _one = auth.changes.lock().await;
    let found = auth
        .read()
        .tokens
        .iter()
        .find(|(_, t)| t.id == id && (who.is_operator() || t.tenant.as_deref() == who.tenant()))
        .map(|(h, t)| (*h, t.clone()));
    let Some((hash, record)) = found else {
        return Err(ApiError::not_found(format!("unknown token `{id}`")));
    };
    commit_catalog(&state, vec![(key(TOKEN_PREFIX, &id), None)]).await?;
    auth.write().tokens.remove(&hash);
    tracing::info!(id = %id, tenant = record.tenant.as_deref().unwrap_or("(operator)"), "token revoked");
    Ok(Json(json!({ "revoked": token_json(&record) })).into_response())
}

/// The local name of a stored one for output (the tenant's prefix removed).
pub(crate) fn local_name(stored: &str) -> &str {
    Config::split_tenant(stored).1
}
