//! The operator's HTTP API.
//!
//! - `GET /healthz`: the process is up. `GET /readyz`: the database answers and the scheduler runs.
//! - `GET /metrics`: Prometheus text format.
//! - `GET /v1/fleets/{fleet}/forecast`, `/plan`, `/decisions?limit=N`, `/boot-stats`, `/events`.
//! - `POST /v1/fleets/{fleet}/pause`, `/resume`, `PUT /v1/fleets/{fleet}/pin` `{"gpus": N,
//!   "until": "..."}`, `DELETE /v1/fleets/{fleet}/pin`, `POST /v1/fleets/{fleet}/events`,
//!   `DELETE /v1/fleets/{fleet}/events/{id}`, `PUT /v1/fleets/{fleet}/planner` (per-fleet planner
//!   settings over the configuration's defaults).
//!
//! Fleet endpoints need `Authorization: Bearer <token>` (the push API's tokens; a fleet's token
//! sees and changes only that fleet).

use std::sync::Arc;

use std::collections::HashMap;

use axum::{
    extract::{rejection::JsonRejection, DefaultBodyLimit, FromRequestParts, Path, Query, State},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::{
    callbacks,
    engine::{FleetEvent, FleetPlannerSettings, FleetRow, Service},
    forecasts, leases, ledger,
};

type Shared = Arc<Service>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn db_error(e: sqlx::Error) -> Response {
    tracing::warn!(error = %e, "database error in the operator API");
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; try again shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

/// The operator routes.
pub fn router(service: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/fleets/{fleet}/forecast", get(forecast))
        .route("/v1/fleets/{fleet}/plan", get(plan))
        .route("/v1/fleets/{fleet}/decisions", get(decisions))
        .route("/v1/fleets/{fleet}/boot-stats", get(boot_stats))
        .route("/v1/fleets/{fleet}/pause", post(pause))
        .route("/v1/fleets/{fleet}/resume", post(resume))
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
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(service)
}

async fn readyz(State(s): State<Shared>) -> Response {
    let db = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&s.pool)
        .await
        .is_ok();
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

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// A JSON body, or 400 saying what was expected and what was wrong.
fn parsed<T>(body: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, Response> {
    body.map(|Json(t)| t).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("expected {expected}: {}", e.body_text()),
        )
    })
}

/// Resolves the fleet and checks the caller's token against it.
async fn authorize(s: &Service, headers: &HeaderMap, name: &str) -> Result<FleetRow, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "send `Authorization: Bearer <token>` (make one with `prewarm token create`)",
            )
        })?;
    let scope = prewarm_ingest::token_scope(&s.pool, token)
        .await
        .map_err(|e| match e {
            prewarm_ingest::IngestError::Database(d) => db_error(d),
            other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "unknown token"))?;
    let fleet = s
        .fleet_by_name(name)
        .await
        .map_err(db_error)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no fleet named `{name}`")))?;
    match scope {
        Some(id) if id != fleet.id => Err(error(
            StatusCode::FORBIDDEN,
            format!("this token is not for fleet `{name}`"),
        )),
        _ => Ok(fleet),
    }
}

/// A fleet named in the path whose token the caller holds: every fleet endpoint takes one.
struct Authorized {
    fleet: FleetRow,
    name: String,
}

impl FromRequestParts<Shared> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Response> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
        let name = params
            .get("fleet")
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "no fleet in the path"))?;
        let fleet = authorize(s, &parts.headers, &name).await?;
        Ok(Self { fleet, name })
    }
}

#[derive(sqlx::FromRow, serde::Serialize)]
struct ForecastRow {
    id: i64,
    made_at: DateTime<Utc>,
    origin: DateTime<Utc>,
    step_secs: i32,
    model: String,
    p50_rps: Vec<f64>,
    upper_rps: Option<Vec<f64>>,
    quantile: f64,
    errors_used: i32,
    recent_error: Option<f64>,
    replica: String,
}

async fn forecast(State(s): State<Shared>, Authorized { fleet, name }: Authorized) -> Response {
    let row: Option<ForecastRow> = match sqlx::query_as(
        "SELECT id, made_at, origin, step_secs, model, p50_rps, upper_rps, quantile, errors_used,
                recent_error, replica
         FROM forecasts WHERE fleet_id = $1 AND kind = 'live' ORDER BY made_at DESC, id DESC LIMIT 1",
    )
    .bind(fleet.id)
    .fetch_optional(&s.pool)
    .await
    {
        Ok(r) => r,
        Err(e) => return db_error(e),
    };
    let Some(row) = row else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no forecast for `{name}` yet: it needs {} of history; the reactive rules plan meanwhile", prewarm_core::format_duration(s.config.planner.min_history.0)),
        );
    };
    let points: Vec<serde_json::Value> = row
        .p50_rps
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "start": row.origin + Duration::seconds(row.step_secs as i64 * i as i64),
                "p50_rps": p,
                "upper_rps": row.upper_rps.as_ref().and_then(|u| u.get(i)),
            })
        })
        .collect();
    Json(json!({ "fleet": name, "forecast": row, "points": points, "calibrated": row.upper_rps.is_some() })).into_response()
}

async fn plan(State(s): State<Shared>, Authorized { fleet, .. }: Authorized) -> Response {
    let now = s.clock.now();
    let result = async {
        let latest = ledger::decisions(&s.pool, fleet.id, 1).await?;
        let events = s.events(fleet.id).await?;
        let cfg = s.planner_config(&fleet, &events);
        let lead = s.boot_lead(fleet.id, cfg.boot_lead_secs, now).await?;
        let holder = leases::holder(&s.pool, fleet.id).await?;
        let band = forecasts::latest_band(&s.pool, fleet.id, now, 7_200).await?;
        let orders = ledger::orders(&s.pool, fleet.id).await?;
        let pending: Vec<_> = orders
            .into_iter()
            .filter(|o| o.state == "pending")
            .collect();
        Ok::<_, sqlx::Error>(json!({
            "fleet": fleet,
            "now": now,
            "latest_decision": latest.first(),
            "pending_orders": pending,
            "planner": cfg,
            "boot_lead_secs": lead,
            "lease_holder": holder,
            "band_forecast_id": band.map(|(id, _)| id),
            "events": events,
            "mode": s.config.service.mode,
        }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => db_error(e),
    }
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn decisions(
    State(s): State<Shared>,
    Authorized { fleet, name }: Authorized,
    Query(q): Query<Limit>,
) -> Response {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "limit must be 1 to 10000");
    }
    match ledger::decisions(&s.pool, fleet.id, limit).await {
        Ok(d) => Json(json!({ "fleet": name, "decisions": d })).into_response(),
        Err(e) => db_error(e),
    }
}

async fn boot_stats(State(s): State<Shared>, Authorized { fleet, name }: Authorized) -> Response {
    let now = s.clock.now();
    let cfg = s.planner_config(&fleet, &[]);
    let stats = match callbacks::boot_stats(&s.pool, fleet.id, now - Duration::days(7)).await {
        Ok(stats) => stats,
        Err(e) => return db_error(e),
    };
    let learned = s.lead_from(&stats);
    Json(json!({
        "fleet": name,
        "last_7_days": stats,
        "boot_lead_secs": learned.unwrap_or(cfg.boot_lead_secs),
        "lead_from": if learned.is_some() { "p95 of real boots" } else { "configuration (too few boots reported)" },
    }))
    .into_response()
}

async fn set_paused(s: &Service, fleet: FleetRow, name: &str, paused: bool) -> Response {
    match sqlx::query("UPDATE fleets SET paused = $2 WHERE id = $1")
        .bind(fleet.id)
        .bind(paused)
        .execute(&s.pool)
        .await
    {
        Ok(_) => {
            tracing::info!(fleet = name, paused, "operator changed pause");
            Json(json!({ "fleet": name, "paused": paused })).into_response()
        }
        Err(e) => db_error(e),
    }
}

async fn pause(State(s): State<Shared>, Authorized { fleet, name }: Authorized) -> Response {
    set_paused(&s, fleet, &name, true).await
}

async fn resume(State(s): State<Shared>, Authorized { fleet, name }: Authorized) -> Response {
    set_paused(&s, fleet, &name, false).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    gpus: i32,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

async fn pin(
    State(s): State<Shared>,
    Authorized { fleet, name }: Authorized,
    body: Result<Json<Pin>, JsonRejection>,
) -> Response {
    let p = match parsed(body, r#"{"gpus": N, "until": RFC 3339 (optional)}"#) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if p.gpus < 0 || p.gpus > 100_000 {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "gpus must be 0 to 100000");
    }
    if p.until.is_some_and(|u| u <= s.clock.now()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "until is in the past");
    }
    match sqlx::query("UPDATE fleets SET pinned_gpus = $2, pinned_until = $3 WHERE id = $1")
        .bind(fleet.id)
        .bind(p.gpus)
        .bind(p.until)
        .execute(&s.pool)
        .await
    {
        Ok(_) => {
            Json(json!({ "fleet": name, "pinned_gpus": p.gpus, "until": p.until })).into_response()
        }
        Err(e) => db_error(e),
    }
}

async fn unpin(State(s): State<Shared>, Authorized { fleet, name }: Authorized) -> Response {
    match sqlx::query("UPDATE fleets SET pinned_gpus = NULL, pinned_until = NULL WHERE id = $1")
        .bind(fleet.id)
        .execute(&s.pool)
        .await
    {
        Ok(_) => Json(json!({ "fleet": name, "pinned_gpus": null })).into_response(),
        Err(e) => db_error(e),
    }
}

async fn list_events(State(s): State<Shared>, Authorized { fleet, name }: Authorized) -> Response {
    match s.events(fleet.id).await {
        Ok(e) => Json(json!({ "fleet": name, "time_zone": fleet.time_zone, "events": e }))
            .into_response(),
        Err(e) => db_error(e),
    }
}

async fn add_event(
    State(s): State<Shared>,
    Authorized { fleet, .. }: Authorized,
    body: Result<Json<FleetEvent>, JsonRejection>,
) -> Response {
    let e = match parsed(
        body,
        r#"{"label", "starts_local": "2026-12-24T00:00:00", "ends_local", and "multiply" or "pin_rps"}"#,
    ) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let problem = if e.ends_local <= e.starts_local {
        Some("ends_local must be after starts_local")
    } else if e.multiply.is_some() == e.pin_rps.is_some() {
        Some("give exactly one of multiply and pin_rps")
    } else if e
        .multiply
        .or(e.pin_rps)
        .is_some_and(|v| !(v.is_finite() && v >= 0.0))
    {
        Some("multiply and pin_rps must be finite and not negative")
    } else if e.label.len() > 200 {
        Some("label is at most 200 characters")
    } else if e.ends_local - e.starts_local > Duration::days(366) {
        Some("an event lasts at most a year")
    } else {
        None
    };
    if let Some(p) = problem {
        return error(StatusCode::UNPROCESSABLE_ENTITY, p);
    }
    match sqlx::query_scalar::<_, i64>(
        "INSERT INTO fleet_events (fleet_id, label, starts_local, ends_local, multiply, pin_rps)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(fleet.id)
    .bind(&e.label)
    .bind(e.starts_local)
    .bind(e.ends_local)
    .bind(e.multiply)
    .bind(e.pin_rps)
    .fetch_one(&s.pool)
    .await
    {
        Ok(id) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "time_zone": fleet.time_zone })),
        )
            .into_response(),
        Err(e) => db_error(e),
    }
}

async fn remove_event(
    State(s): State<Shared>,
    Authorized { fleet, name }: Authorized,
    Path((_, id)): Path<(String, i64)>,
) -> Response {
    match sqlx::query("DELETE FROM fleet_events WHERE fleet_id = $1 AND id = $2")
        .bind(fleet.id)
        .bind(id)
        .execute(&s.pool)
        .await
    {
        Ok(r) if r.rows_affected() == 1 => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            format!("fleet `{name}` has no event {id}"),
        ),
        Err(e) => db_error(e),
    }
}

async fn set_planner(
    State(s): State<Shared>,
    Authorized { fleet, name }: Authorized,
    body: Result<Json<FleetPlannerSettings>, JsonRejection>,
) -> Response {
    let p = match parsed(
        body,
        "any of quantile, target_utilization, miss_load, hold_secs, boot_lead_secs, exceed_max_share",
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let problem = if p.quantile.is_some_and(|q| !(0.5..1.0).contains(&q)) {
        Some("quantile must be at least 0.5 and below 1")
    } else if p.target_utilization.is_some_and(|u| !(u > 0.0 && u <= 1.0)) {
        Some("target_utilization must be above 0 and at most 1")
    } else if p.miss_load.is_some_and(|u| !(u > 0.0 && u <= 1.0)) {
        Some("miss_load must be above 0 and at most 1")
    } else if p.hold_secs.is_some_and(|h| !(0..=3_600).contains(&h)) {
        Some("hold_secs must be 0 to 3600")
    } else if p.boot_lead_secs.is_some_and(|b| !(60..=3_600).contains(&b)) {
        Some("boot_lead_secs must be 60 to 3600")
    } else if p
        .exceed_max_share
        .is_some_and(|x| !(0.0..=10.0).contains(&x))
    {
        Some("exceed_max_share must be 0 to 10")
    } else {
        None
    };
    if let Some(problem) = problem {
        return error(StatusCode::UNPROCESSABLE_ENTITY, problem);
    }
    let value = match serde_json::to_value(&p) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match sqlx::query("UPDATE fleets SET planner = $2 WHERE id = $1")
        .bind(fleet.id)
        .bind(&value)
        .execute(&s.pool)
        .await
    {
        Ok(_) => Json(json!({ "fleet": name, "planner": value })).into_response(),
        Err(e) => db_error(e),
    }
}
