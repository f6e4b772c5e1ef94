//! The operator's HTTP API.
//!
//! - `GET /healthz`: the process is up. `GET /readyz`: the database answers and the scheduler runs
//!   (503 within a second otherwise).
//! - `GET /metrics`: Prometheus text format (behind `http.metrics_token` when it is set).
//! - `GET /`: the operator dashboard, which reads `GET /v1/dashboard` and
//!   `/v1/fleets/{fleet}/dashboard` (scope `read`; see [`crate::dashboard`]).
//! - `GET /v1/fleets`, `/v1/fleets/{fleet}/forecast`, `/plan` (`?dry_run=true`: what a tick
//!   would decide now, neither recorded nor sent), `/decisions?limit=N`,
//!   `/boot-stats`, `/events`, `/audit` (scope `read`).
//! - `POST /v1/fleets/{fleet}/pause`, `/resume`, `/refit`, `PUT /v1/fleets/{fleet}/pin`
//!   `{"gpus": N, "until": "..."}`, `DELETE /v1/fleets/{fleet}/pin`, `POST /v1/fleets/{fleet}/events`,
//!   `DELETE /v1/fleets/{fleet}/events/{id}`, `PUT /v1/fleets/{fleet}/planner` (scope `operate`).
//! - `POST /v1/fleets`, `PATCH`/`DELETE /v1/fleets/{fleet}`, `GET`/`POST /v1/tokens`,
//!   `DELETE /v1/tokens/{id}`, `GET /v1/audit` (scope `admin`).
//!
//! Every endpoint under `/v1` needs `Authorization: Bearer <token>` with the scope it names; a
//! fleet's token sees and changes only that fleet. Every change is written to the audit log in
//! the same transaction, with the token that made it and the values before and after.

use std::{collections::HashMap, marker::PhantomData, sync::Arc};

use axum::{
    extract::{rejection::JsonRejection, DefaultBodyLimit, FromRequestParts, Path, Query, State},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use chrono::{DateTime, Duration, Utc};
use prewarm_store::{audit, Actor, Grant, Scope, StoreError};
use serde_json::json;

use prewarm_store::{
    fleets::{self, Changed, OperatorChange},
    leases, ledger, Fleet, FleetEvent, OrderState,
};

use crate::{callbacks, dashboard, engine::Service, forecasts};

pub(crate) type Shared = Arc<Service>;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// 503 with a retry hint: the database is unavailable.
fn unavailable() -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; try again shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

/// A database error as the operator API answers it: 503 (retry) only when the database could not
/// be reached; 422 when it refused a value the request carried (a data exception, a check); 500
/// otherwise, logged (the answer carries no internals).
pub(crate) fn db_error(e: sqlx::Error) -> Response {
    if prewarm_store::is_unavailable(&e) {
        tracing::warn!(error = %e, "database unavailable in the operator API");
        return unavailable();
    }
    if let Some(message) = prewarm_store::refused_value(&e) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the database refused a value in the request: {message}"),
        );
    }
    tracing::error!(error = %e, "database error in the operator API");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (logged by the service)",
    )
}

/// A job's error as the operator API answers it.
fn service_error(e: crate::error::ServiceError, fleet: &str) -> Response {
    use crate::error::ServiceError;
    match e {
        ServiceError::FleetGone(_) => error(
            StatusCode::NOT_FOUND,
            format!("fleet `{fleet}` was deleted meanwhile"),
        ),
        ServiceError::Store(e) => ingest_error(e),
        ServiceError::Database(e) => db_error(e),
        ServiceError::Unavailable(text) => {
            tracing::warn!(error = %text, "database error in the operator API");
            unavailable()
        }
        ServiceError::Unobserved(text) => error(StatusCode::CONFLICT, text),
    }
}

pub(crate) fn ingest_error(e: StoreError) -> Response {
    match e {
        StoreError::Database(d) => db_error(d),
        StoreError::Unavailable(_) => unavailable(),
        StoreError::UnknownFleet(name) => {
            error(StatusCode::NOT_FOUND, format!("no fleet named `{name}`"))
        }
        StoreError::InvalidFleet(m) | StoreError::InvalidToken(m) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, m)
        }
        StoreError::Conflict(m) => error(StatusCode::CONFLICT, m),
        StoreError::Invalid(items) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Invalid(items).to_string(),
        ),
    }
}

/// The operator routes.
pub fn router(service: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/v1/dashboard", get(dashboard::fleets))
        .route("/v1/fleets/{fleet}/dashboard", get(dashboard::fleet))
        .route("/v1/fleets", get(list_fleets).post(create_fleet))
        .route(
            "/v1/fleets/{fleet}",
            axum::routing::patch(update_fleet).delete(delete_fleet),
        )
        .route("/v1/fleets/{fleet}/forecast", get(forecast))
        .route("/v1/fleets/{fleet}/plan", get(plan))
        .route("/v1/fleets/{fleet}/decisions", get(decisions))
        .route("/v1/fleets/{fleet}/boot-stats", get(boot_stats))
        .route("/v1/fleets/{fleet}/shadow", get(shadow))
        .route("/v1/fleets/{fleet}/audit", get(fleet_audit))
        .route("/v1/fleets/{fleet}/pause", post(pause))
        .route("/v1/fleets/{fleet}/resume", post(resume))
        .route("/v1/fleets/{fleet}/refit", post(refit))
        .route(
            "/v1/fleets/{fleet}/pin",
            axum::routing::put(pin).delete(unpin),
        )
        .route(
            "/v1/fleets/{fleet}/events",
            get(list_events).post(add_event),
        )
        .route("/v1/fleets/{fleet}/events/{id}", delete(remove_event))
        .route(
            "/v1/fleets/{fleet}/planner",
            axum::routing::put(set_planner),
        )
        .route("/v1/profiles", get(list_profiles))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/audit", get(all_audit))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(service)
}

async fn readyz(State(s): State<Shared>) -> Response {
    // Answer within a second whatever the database does: probes time out at one.
    let db = tokio::time::timeout(
        std::time::Duration::from_millis(900),
        prewarm_store::ping(&s.pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let scheduler = s
        .scheduler_running
        .load(std::sync::atomic::Ordering::Relaxed);
    let body = json!({ "database": db, "scheduler": scheduler, "replica": s.replica(), "fleets_held": s.held().len() });
    let status = if db && scheduler {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let required = &s.config.http.metrics_token.0;
    if !required.is_empty() {
        let presented = prewarm_ingest::api::bearer(&headers);
        let allowed = match presented {
            Some(t) if same_secret(t, required) => true,
            // An API token that may read every fleet may read their metrics too.
            Some(t) => match prewarm_store::authenticate(&s.pool, t).await {
                Ok(Some(g)) if g.allows(Scope::Read) && g.fleet_id.is_none() => true,
                // A valid token that may not see every fleet is known, and refused as such.
                Ok(Some(g)) => {
                    return error(
                        StatusCode::FORBIDDEN,
                        if g.fleet_id.is_some() {
                            "this token is for one fleet, and /metrics shows every fleet: use a `read` token made without --fleet, or http.metrics_token"
                        } else {
                            "this token lacks the `read` scope that /metrics needs (or use http.metrics_token)"
                        },
                    )
                }
                Ok(None) => false,
                Err(e) => return ingest_error(e),
            },
            None => false,
        };
        if !allowed {
            return error(
                StatusCode::UNAUTHORIZED,
                "/metrics needs `Authorization: Bearer <http.metrics_token>` (Prometheus: `authorization: {credentials: ...}` in the scrape config)",
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// A JSON body, or an answer saying what is wrong with it: 400 for a body that is not the JSON
/// expected (with what was expected), 422 naming the field for text the database cannot hold (a
/// NUL character).
// The error is the response itself, returned at once by every handler.
#[allow(clippy::result_large_err)]
fn parsed<T: serde::de::DeserializeOwned>(
    body: Result<Json<serde_json::Value>, JsonRejection>,
    expected: &str,
) -> Result<T, Response> {
    let value = body.map(|Json(v)| v).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("expected {expected}: {}", e.body_text()),
        )
    })?;
    if let Some(field) = nul_field(&value) {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{field}` contains a NUL character, which no text field may hold"),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "expected {expected}: {}",
                prewarm_core::shorten(&e.to_string(), 300)
            ),
        )
    })
}

/// The path of the first string (or key) in `value` that holds a NUL character, which
/// PostgreSQL's text cannot store: `label`, `scopes[1]`, `planner.x`.
pub(crate) fn nul_field(value: &serde_json::Value) -> Option<String> {
    fn walk(value: &serde_json::Value, path: &mut String) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            serde_json::Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&prewarm_core::shorten(k, 60));
                let found = k.contains('\0') || walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then(|| if path.is_empty() { "body".into() } else { path })
}

/// The caller's grant, which must hold `scope`.
pub(crate) async fn grant_for(
    s: &Service,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Grant, Response> {
    prewarm_ingest::api::authorise(&s.pool, headers, scope)
        .await
        .map_err(IntoResponse::into_response)
}

/// The scope an endpoint needs.
pub(crate) trait Need {
    const SCOPE: Scope;
}

/// Reading forecasts, plans, decisions and the audit log.
pub(crate) struct Read;
impl Need for Read {
    const SCOPE: Scope = Scope::Read;
}

/// Changing how a fleet is run (pause, pin, events, planner settings, refit).
struct Operate;
impl Need for Operate {
    const SCOPE: Scope = Scope::Operate;
}

/// Fleets and tokens.
struct Admin;
impl Need for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// A fleet named in the path, with a caller's token that holds the scope `N` for it: every fleet
/// endpoint takes one.
pub(crate) struct Authorized<N> {
    pub(crate) fleet: Fleet,
    pub(crate) name: String,
    grant: Grant,
    _need: PhantomData<N>,
}

impl<N> Authorized<N> {
    fn actor(&self) -> Actor {
        self.grant.actor()
    }
}

impl<N: Need + Send + Sync> FromRequestParts<Shared> for Authorized<N> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Response> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
        let name = params
            .get("fleet")
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "no fleet in the path"))?;
        let grant = grant_for(s, &parts.headers, N::SCOPE).await?;
        let shown = prewarm_core::shorten(&name, 80);
        let fleet = s
            .fleet_by_name(&name)
            .await
            .map_err(db_error)?
            .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no fleet named `{shown}`")))?;
        if !grant.covers(fleet.id) {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!("this token is not for fleet `{shown}`"),
            ));
        }
        Ok(Self {
            fleet,
            name,
            grant,
            _need: PhantomData,
        })
    }
}

/// Records an operator change in the audit log.
async fn audited(
    s: &Service,
    actor: &Actor,
    fleet: &Fleet,
    action: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> Result<(), Response> {
    let mut conn = s.pool.acquire().await.map_err(db_error)?;
    audit::record(
        &mut conn,
        actor,
        Some((fleet.id, &fleet.name)),
        action,
        Some(before),
        Some(after),
    )
    .await
    .map_err(ingest_error)?;
    tracing::info!(
        fleet = fleet.name,
        action,
        actor = actor.name,
        "operator change"
    );
    Ok(())
}

/// Makes an operator's change and records it in the audit log ([`fleets::change`]).
async fn operator_change(
    s: &Service,
    actor: &Actor,
    fleet: &Fleet,
    change: OperatorChange,
) -> Result<Changed, Response> {
    let changed = fleets::change(&s.pool, fleet, actor, &change)
        .await
        .map_err(ingest_error)?;
    if changed != Changed::NothingMatched {
        tracing::info!(
            fleet = fleet.name,
            action = change.action(),
            actor = actor.name,
            "operator change"
        );
    }
    Ok(changed)
}

async fn list_fleets(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let grant = match grant_for(&s, &headers, Scope::Read).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match prewarm_store::list_fleets(&s.pool).await {
        Ok(fleets) => {
            let fleets: Vec<_> = fleets.into_iter().filter(|f| grant.covers(f.id)).collect();
            Json(json!({ "fleets": fleets })).into_response()
        }
        Err(e) => ingest_error(e),
    }
}

async fn forecast(State(s): State<Shared>, a: Authorized<Read>) -> Response {
    let (fleet, name) = (&a.fleet, &a.name);
    let row = match forecasts::latest_live_row(&s.pool, fleet.id).await {
        Ok(r) => r,
        Err(e) => return db_error(e),
    };
    let Some(row) = row else {
        let why = fleet.refit_note.clone().unwrap_or_else(|| {
            format!(
                "no refit has run yet; a forecast needs {} of history (refit now: POST /v1/fleets/{name}/refit)",
                prewarm_core::format_duration(s.config.planner.min_history.0)
            )
        });
        // A refit's note may already say who plans meanwhile.
        let meanwhile = if why.contains("reactive rules plan meanwhile") {
            ""
        } else {
            "; the reactive rules plan meanwhile"
        };
        return error(
            StatusCode::NOT_FOUND,
            format!("no forecast for `{name}` yet: {why}{meanwhile}"),
        );
    };
    // The level each bucket's upper value is: the quantile of the demand distribution the SLO
    // sizer chose for its local hour (the start level before the sizer has chosen).
    let levels: Option<prewarm_planner::LevelPlan> = row
        .levels
        .clone()
        .and_then(|l| serde_json::from_value(l).ok());
    let cfg = s.planner_config(fleet, &[]);
    let points: Vec<serde_json::Value> = row
        .p50_rps
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let start = row.origin + Duration::seconds(row.step_secs as i64 * i as i64);
            let level = prewarm_planner::planned_level(&cfg, levels.as_ref(), start);
            json!({
                "start": start,
                "p50_rps": p,
                "upper_rps": row.upper_rps.as_ref().and_then(|u| u.get(i)),
                "upper_quantile": row.upper_rps.as_ref().map(|_| prewarm_planner::LEVELS[level]),
            })
        })
        .collect();
    let capacity = fleet.capacity();
    // The stored row's `quantile` column holds the SLO the forecast was sized for (a share of
    // requests that may time out), not a quantile: it is answered under its own name.
    let mut forecast = serde_json::to_value(&row).unwrap_or_default();
    if let Some(o) = forecast.as_object_mut() {
        if let Some(share) = o.remove("quantile") {
            o.insert("slo_max_timeout_share".into(), share);
        }
    }
    Json(json!({
        "fleet": name,
        "forecast": forecast,
        "points": points,
        "calibrated": row.upper_rps.is_some(),
        // The rates are work per second in this unit: requests/s, or GPU-s/s for a fleet that
        // plans in tokens (the GPUs its work keeps busy).
        "unit": capacity.unit(),
        "capacity": capacity,
    }))
    .into_response()
}

/// `GET /v1/profiles`: the stored GPU profiles (scope `read`).
async fn list_profiles(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = grant_for(&s, &headers, Scope::Read).await {
        return r;
    }
    match prewarm_store::profiles::list(&s.pool).await {
        Ok(profiles) => Json(json!({ "profiles": profiles })).into_response(),
        Err(e) => ingest_error(e),
    }
}

#[derive(serde::Deserialize)]
struct PlanQuery {
    dry_run: Option<bool>,
}

async fn plan(
    State(s): State<Shared>,
    a: Authorized<Read>,
    Query(q): Query<PlanQuery>,
) -> Response {
    if q.dry_run == Some(true) {
        return dry_run(&s, &a).await;
    }
    let fleet = &a.fleet;
    let now = s.clock.now();
    let result = async {
        let latest = ledger::decisions(&s.pool, fleet.id, 1).await?;
        let events = s.events(fleet.id).await?;
        let cfg = s.planner_config(fleet, &events);
        let lead = s.boot_lead(fleet.id, cfg.boot_lead_secs, now).await?;
        let resume_lead = match cfg.standby {
            Some(sb) => Some(s.resume_lead(fleet.id, sb.resume_secs, now).await?),
            None => None,
        };
        let holder = leases::holder(&s.pool, fleet.id).await?;
        let live = forecasts::latest(&s.pool, fleet.id, now, forecasts::LIVE_MAX_AGE_SECS).await?;
        let orders = ledger::orders(&s.pool, fleet.id).await?;
        let pending: Vec<_> = orders
            .into_iter()
            .filter(|o| o.state == OrderState::Pending)
            .collect();
        Ok::<_, sqlx::Error>(json!({
            "fleet": fleet,
            "now": now,
            "latest_decision": latest.first(),
            "pending_orders": pending,
            "planner": cfg,
            "boot_lead_secs": lead,
            "resume_lead_secs": resume_lead,
            "lease_holder": holder,
            "forecast_id": live.as_ref().map(|f| f.id),
            "levels": live.as_ref().and_then(|f| f.levels),
            "events": events,
            "mode": s.config.service.mode,
            "demand_unit": cfg.capacity.unit(),
            "last_refit": { "at": fleet.refit_at, "note": fleet.refit_note },
        }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => db_error(e),
    }
}

/// What the fleet's next tick would decide now, from the same gather and decide as the tick,
/// without recording it or sending an order.
async fn dry_run(s: &Shared, a: &Authorized<Read>) -> Response {
    let now = s.clock.now();
    let gathered = match s.gather(a.fleet.id, now).await {
        Ok(Some(g)) => g,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no fleet named `{}`", a.name),
            )
        }
        Err(e) => return service_error(e, &a.name),
    };
    let d = gathered.decide();
    let orders: Vec<_> = d
        .orders
        .iter()
        .map(|o| {
            let (kind, n) = prewarm_store::OrderKind::of(*o);
            json!({ "kind": kind, "count": n })
        })
        .collect();
    Json(json!({
        "fleet": a.name,
        "now": now,
        "dry_run": true,
        "recorded": false,
        "mode": gathered.mode.name(),
        "would_send_orders": gathered.mode.orders() && !orders.is_empty(),
        "decision": {
            "desired_gpus": d.desired_gpus,
            "orders": orders,
            "reason": d.reason,
            "breach": d.breach,
            "forecast_p50_rps": d.forecast_p50_rps,
            "forecast_upper_rps": d.forecast_upper_rps,
        },
        "state": {
            "gpus_ready": gathered.state.gpus_ready,
            "gpus_booting": gathered.state.booting.len(),
            "gpus_standby": gathered.state.standby,
            "gpus_resuming": gathered.state.resuming.len(),
        },
        "boot_lead_secs": gathered.cfg.boot_lead_secs,
        "resume_lead_secs": gathered.cfg.standby.map(|s| s.resume_secs),
        "forecast_id": gathered.live.as_ref().map(|f| f.id),
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<i64>,
}

impl Limit {
    // The error is the response itself, returned at once by the handler.
    #[allow(clippy::result_large_err)]
    fn get(&self) -> Result<i64, Response> {
        let limit = self.limit.unwrap_or(100);
        if (1..=10_000).contains(&limit) {
            Ok(limit)
        } else {
            Err(error(StatusCode::BAD_REQUEST, "limit must be 1 to 10000"))
        }
    }
}

async fn decisions(
    State(s): State<Shared>,
    a: Authorized<Read>,
    Query(q): Query<Limit>,
) -> Response {
    let limit = match q.get() {
        Ok(l) => l,
        Err(r) => return r,
    };
    match ledger::decisions(&s.pool, a.fleet.id, limit).await {
        Ok(d) => Json(json!({ "fleet": a.name, "decisions": d })).into_response(),
        Err(e) => db_error(e),
    }
}

async fn boot_stats(State(s): State<Shared>, a: Authorized<Read>) -> Response {
    let now = s.clock.now();
    let cfg = s.planner_config(&a.fleet, &[]);
    let stats = match callbacks::boot_stats(&s.pool, a.fleet.id, now - Duration::days(7)).await {
        Ok(stats) => stats,
        Err(e) => return db_error(e),
    };
    let learned = s.lead_from(&stats);
    let resumes =
        match prewarm_store::instances::resume_stats(&s.pool, a.fleet.id, now - Duration::days(7))
            .await
        {
            Ok(r) => r,
            Err(e) => return db_error(e),
        };
    let resume_lead = match cfg.standby {
        Some(sb) => match s.resume_lead(a.fleet.id, sb.resume_secs, now).await {
            Ok(l) => Some(l),
            Err(e) => return db_error(e),
        },
        None => None,
    };
    Json(json!({
        "fleet": a.name,
        "last_7_days": stats,
        "resumes_last_7_days": resumes,
        "resume_lead_secs": resume_lead,
        "boot_lead_secs": learned.unwrap_or(cfg.boot_lead_secs),
        "lead_from": if learned.is_some() { "p95 of real boots" } else { "configuration (too few boots reported)" },
    }))
    .into_response()
}

async fn fleet_audit(
    State(s): State<Shared>,
    a: Authorized<Read>,
    Query(q): Query<Limit>,
) -> Response {
    let limit = match q.get() {
        Ok(l) => l,
        Err(r) => return r,
    };
    match audit::list(&s.pool, Some(a.fleet.id), limit).await {
        Ok(entries) => Json(json!({ "fleet": a.name, "audit": entries })).into_response(),
        Err(e) => ingest_error(e),
    }
}

async fn all_audit(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Response {
    let grant = match grant_for(&s, &headers, Scope::Admin).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let limit = match q.get() {
        Ok(l) => l,
        Err(r) => return r,
    };
    match audit::list(&s.pool, grant.fleet_id, limit).await {
        Ok(entries) => Json(json!({ "audit": entries })).into_response(),
        Err(e) => ingest_error(e),
    }
}

async fn set_paused(s: &Service, a: Authorized<Operate>, paused: bool) -> Response {
    match operator_change(s, &a.actor(), &a.fleet, OperatorChange::Pause(paused)).await {
        Ok(_) => Json(json!({ "fleet": a.name, "paused": paused })).into_response(),
        Err(r) => r,
    }
}

async fn pause(State(s): State<Shared>, a: Authorized<Operate>) -> Response {
    set_paused(&s, a, true).await
}

async fn resume(State(s): State<Shared>, a: Authorized<Operate>) -> Response {
    set_paused(&s, a, false).await
}

async fn refit(State(s): State<Shared>, a: Authorized<Operate>) -> Response {
    match s.refit_fleet(a.fleet.id).await {
        Ok(report) => {
            if let Err(r) = audited(
                &s,
                &a.actor(),
                &a.fleet,
                "fleet.refit",
                json!({ "forecast": a.fleet.refit_note }),
                json!(report),
            )
            .await
            {
                return r;
            }
            Json(json!({ "fleet": a.name, "refit": report })).into_response()
        }
        Err(e) => service_error(e, &a.name),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    gpus: i64,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

async fn pin(
    State(s): State<Shared>,
    a: Authorized<Operate>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let p = match parsed::<Pin>(body, r#"{"gpus": N, "until": RFC 3339 (optional)}"#) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let cfg = s.planner_config(&a.fleet, &[]);
    let cap = cfg.cap() as i64;
    if p.gpus < 0 || p.gpus > cap {
        let (limit, by) = cfg.limit();
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "gpus must be 0 to {cap}: the fleet's {by} allows {limit}{}",
                if cap > limit as i64 {
                    format!(" and its exceed_max_share setting up to {cap}")
                } else {
                    "; raise max_gpus (PATCH /v1/fleets/{fleet}, scope admin) or set exceed_max_share to go above it".to_string()
                }
            ),
        );
    }
    if p.until.is_some_and(|u| u <= s.clock.now()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "until is in the past");
    }
    let change = OperatorChange::Pin {
        gpus: p.gpus as i32,
        until: p.until,
    };
    match operator_change(&s, &a.actor(), &a.fleet, change).await {
        Ok(_) => Json(json!({ "fleet": a.name, "pinned_gpus": p.gpus, "until": p.until }))
            .into_response(),
        Err(r) => r,
    }
}

async fn unpin(State(s): State<Shared>, a: Authorized<Operate>) -> Response {
    match operator_change(&s, &a.actor(), &a.fleet, OperatorChange::Unpin).await {
        Ok(_) => Json(json!({ "fleet": a.name, "pinned_gpus": null })).into_response(),
        Err(r) => r,
    }
}

async fn list_events(State(s): State<Shared>, a: Authorized<Read>) -> Response {
    match s.events(a.fleet.id).await {
        Ok(e) => Json(json!({ "fleet": a.name, "time_zone": a.fleet.time_zone, "events": e }))
            .into_response(),
        Err(e) => db_error(e),
    }
}

/// The most an event may multiply the forecast by.
const MAX_EVENT_MULTIPLY: f64 = 100.0;

async fn add_event(
    State(s): State<Shared>,
    a: Authorized<Operate>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let e = match parsed::<FleetEvent>(
        body,
        r#"{"label", "starts_local": "2026-12-24T00:00:00", "ends_local", and "multiply" or "pin_rps"}"#,
    ) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let cfg = s.planner_config(&a.fleet, &[]);
    let most_rps = cfg.capacity.served(cfg.cap(), 1.0);
    let problem = if e.ends_local <= e.starts_local {
        Some("ends_local must be after starts_local".to_string())
    } else if e.multiply.is_some() == e.pin_rps.is_some() {
        Some("give exactly one of multiply and pin_rps".into())
    } else if e
        .multiply
        .or(e.pin_rps)
        .is_some_and(|v| !(v.is_finite() && v >= 0.0))
    {
        Some("multiply and pin_rps must be finite and not negative".into())
    } else if e.multiply.is_some_and(|m| m > MAX_EVENT_MULTIPLY) {
        Some(format!("multiply is at most {MAX_EVENT_MULTIPLY}"))
    } else if e.pin_rps.is_some_and(|r| r > most_rps) {
        Some(format!(
            "pin_rps {} needs more GPUs than the fleet's limit of {} serve ({most_rps} requests/s at full load)",
            e.pin_rps.unwrap_or_default(),
            cfg.cap()
        ))
    } else if e.label.len() > 200 {
        Some("label is at most 200 characters".into())
    } else if e.ends_local - e.starts_local > Duration::days(366) {
        Some("an event lasts at most a year".into())
    } else {
        None
    };
    if let Some(p) = problem {
        return error(StatusCode::UNPROCESSABLE_ENTITY, p);
    }
    match operator_change(&s, &a.actor(), &a.fleet, OperatorChange::AddEvent(e)).await {
        Ok(Changed::Done { event_id: Some(id) }) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "time_zone": a.fleet.time_zone })),
        )
            .into_response(),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            format!("fleet `{}` was deleted meanwhile", a.name),
        ),
        Err(r) => r,
    }
}

async fn remove_event(
    State(s): State<Shared>,
    a: Authorized<Operate>,
    Path((_, id)): Path<(String, i64)>,
) -> Response {
    match operator_change(&s, &a.actor(), &a.fleet, OperatorChange::RemoveEvent(id)).await {
        Ok(Changed::Done { .. }) => StatusCode::NO_CONTENT.into_response(),
        Ok(Changed::NothingMatched) => error(
            StatusCode::NOT_FOUND,
            format!("fleet `{}` has no event {id}", a.name),
        ),
        Err(r) => r,
    }
}

async fn set_planner(
    State(s): State<Shared>,
    a: Authorized<Operate>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let p = match parsed::<prewarm_planner::Settings>(
        body,
        "any of max_timeout_share, queue_timeout_secs, quantile, target_utilization, miss_load, hold_secs, boot_lead_secs, exceed_max_share, standby_max_gpus, standby_price_share, resume_secs",
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = p
        .check()
        .and_then(|_| p.check_standby(a.fleet.max_gpus.max(0) as u32))
    {
        return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    }
    // Going past an admin's `max_gpus` is an admin's decision: an operate token may lower the
    // share the plan may exceed it by, not raise it.
    let service = s.config.planner.settings();
    let share = |x: &prewarm_planner::Settings| x.over(&service).exceed_max_share.unwrap_or(0.0);
    let (before, after) = (share(&a.fleet.planner_settings()), share(&p));
    if after > before && !a.grant.allows(Scope::Admin) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "exceed_max_share lets the fleet go past its max_gpus ({}); raising it from {before} to {after} needs a token with the admin scope (an operate token may lower it)",
                a.fleet.max_gpus
            ),
        );
    }
    let value = json!(p);
    match operator_change(&s, &a.actor(), &a.fleet, OperatorChange::Planner(p)).await {
        Ok(_) => Json(json!({ "fleet": a.name, "planner": value })).into_response(),
        Err(r) => r,
    }
}

/// Fleet administration needs an admin token for every fleet, or one for this fleet.
async fn create_fleet(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let grant = match grant_for(&s, &headers, Scope::Admin).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if grant.fleet_id.is_some() {
        return error(
            StatusCode::FORBIDDEN,
            "only an admin token for every fleet may create fleets",
        );
    }
    let spec = match parsed::<prewarm_store::FleetSpec>(
        body,
        r#"{"name", "time_zone", "gpu_rps" or "gpu_profile", "min_gpus", "max_gpus", ...}"#,
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fleet = match prewarm_store::create_fleet(&s.pool, &spec).await {
        Ok(f) => f,
        Err(e) => return ingest_error(e),
    };
    let mut conn = match s.pool.acquire().await {
        Ok(c) => c,
        Err(e) => return db_error(e),
    };
    if let Err(e) = audit::record(
        &mut conn,
        &grant.actor(),
        Some((fleet.id, &fleet.name)),
        "fleet.create",
        None,
        Some(json!(fleet)),
    )
    .await
    {
        return ingest_error(e);
    }
    (StatusCode::CREATED, Json(json!({ "fleet": fleet }))).into_response()
}

async fn update_fleet(
    State(s): State<Shared>,
    a: Authorized<Admin>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let update = match parsed::<prewarm_store::FleetUpdate>(
        body,
        "any of time_zone, gpu_type, gpu_rps, gpu_profile, price_usd_per_gpu_hour, min_gpus, max_gpus, budget_usd_per_hour",
    ) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match prewarm_store::update_fleet(&s.pool, &a.name, &update, &a.actor()).await {
        Ok((before, after)) => Json(json!({ "before": before, "fleet": after })).into_response(),
        Err(e) => ingest_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowQuery {
    /// Hours back from now (default 24, at most 31 days).
    #[serde(default = "default_shadow_hours")]
    hours: i64,
}

fn default_shadow_hours() -> i64 {
    24
}

/// Shadow mode's answer: what prewarm's decisions would have paid and timed out over the last
/// `hours`, next to what the observed real fleet did, replayed on the fleet's recorded demand
/// ([`crate::shadow`]).
async fn shadow(
    State(s): State<Shared>,
    a: Authorized<Read>,
    q: Result<Query<ShadowQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let hours = match q {
        Ok(Query(q)) if (1..=31 * 24).contains(&q.hours) => q.hours,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "the only query parameter is hours, a whole number from 1 to 744",
            )
        }
    };
    match crate::shadow::over(&s, &a.fleet, hours).await {
        Ok(Some(comparison)) => Json(json!({ "fleet": a.name, "shadow": comparison })).into_response(),
        Ok(None) => error(
            StatusCode::CONFLICT,
            format!(
                "fleet `{}` has no observation of its real replicas in the window: give its pull a ready_query and a desired_query",
                a.name
            ),
        ),
        Err(e) => service_error(e, &a.name),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    drain: bool,
}

/// Deletes a fleet that holds no GPU (200); one that does is refused (409, saying how to drain
/// it), or with `?drain=true` set draining (202): the tick terminates its GPUs and deletes it once
/// the provisioner has confirmed.
async fn delete_fleet(
    State(s): State<Shared>,
    a: Authorized<Admin>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "the only query parameter is drain=true|false",
        );
    };
    let how = if q.drain {
        fleets::Deletion::Drain
    } else {
        fleets::Deletion::IfEmpty
    };
    match prewarm_store::delete_fleet(&s.pool, &a.name, &a.actor(), how, s.clock.now()).await {
        Ok(fleets::Deleted::Deleted { samples_removed }) => {
            Json(json!({ "deleted": a.name, "samples_removed": samples_removed })).into_response()
        }
        Ok(fleets::Deleted::Draining { held, since }) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "draining": a.name,
                "since": since,
                "held": held,
                "note": format!("the fleet still has {}: the service terminates them and deletes the fleet once the provisioner has confirmed", held.describe()),
            })),
        )
            .into_response(),
        Err(e) => ingest_error(e),
    }
}

async fn list_tokens(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let grant = match grant_for(&s, &headers, Scope::Admin).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match prewarm_store::list_tokens(&s.pool, grant.fleet_id).await {
        Ok(tokens) => Json(json!({ "tokens": tokens })).into_response(),
        Err(e) => ingest_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    fleet: Option<String>,
    #[serde(default)]
    label: String,
    scopes: Vec<Scope>,
}

async fn create_token(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let grant = match grant_for(&s, &headers, Scope::Admin).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let t = match parsed::<NewToken>(
        body,
        r#"{"fleet": "name" (optional), "label": "...", "scopes": ["push", "read", "operate", "admin"]}"#,
    ) {
        Ok(t) => t,
        Err(r) => return r,
    };
    // A fleet's admin makes tokens for that fleet only.
    if let Some(own) = grant.fleet_id {
        let target = match &t.fleet {
            Some(name) => match prewarm_store::fleet_by_name(&s.pool, name).await {
                Ok(f) => Some(f.id),
                Err(e) => return ingest_error(e),
            },
            None => None,
        };
        if target != Some(own) {
            return error(
                StatusCode::FORBIDDEN,
                "this admin token is for one fleet: it makes tokens for that fleet only",
            );
        }
    }
    match prewarm_store::create_token(
        &s.pool,
        t.fleet.as_deref(),
        &t.label,
        &t.scopes,
        &grant.actor(),
    )
    .await
    {
        Ok((id, token)) => (
            StatusCode::CREATED,
            Json(
                json!({ "id": id, "token": token, "scopes": t.scopes, "fleet": t.fleet,
                         "note": "keep the token now: only its hash is stored" }),
            ),
        )
            .into_response(),
        Err(e) => ingest_error(e),
    }
}

async fn revoke_token(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let grant = match grant_for(&s, &headers, Scope::Admin).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if let Some(own) = grant.fleet_id {
        let tokens = match prewarm_store::list_tokens(&s.pool, Some(own)).await {
            Ok(t) => t,
            Err(e) => return ingest_error(e),
        };
        if !tokens.iter().any(|t| t.id == id) {
            return error(
                StatusCode::NOT_FOUND,
                format!("no token {id} for this admin token's fleet"),
            );
        }
    }
    match prewarm_store::revoke_token(&s.pool, id, &grant.actor()).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no token {id}, or it is revoked already"),
        ),
        Err(e) => ingest_error(e),
    }
}
