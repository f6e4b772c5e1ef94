//! The provisioner's callbacks: `POST /v1/instances/{id}/ready`, `/failed` and `/terminated`.
//!
//! Each is signed like the orders (Standard Webhooks, same secret): a bad signature or a stale
//! timestamp gets 401 and changes nothing. A `ready` callback records how long the instance took
//! from its boot order to serving; repeated callbacks are harmless (the first `ready` wins). The
//! boot times give each fleet's boot-time distribution, whose p95 the planner uses as its lead.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Json, Router,
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::webhook::Secret;

/// The callback body.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// The boot order's id (its idempotency key).
    pub order_id: String,
    /// When the event happened at the provisioner.
    pub at: DateTime<Utc>,
    /// For `terminated`: the terminate order that caused it. A termination without one is a
    /// loss (preemption, crash) that the planner replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_by: Option<String>,
}

#[derive(Clone)]
struct CallbackState {
    pool: PgPool,
    secret: Secret,
}

/// The callback routes.
pub fn router(pool: PgPool, secret: Secret) -> Router {
    Router::new()
        .route("/v1/instances/{id}/{event}", post(receive))
        .with_state(CallbackState { pool, secret })
}

fn error(status: StatusCode, message: impl Into<String>) -> (StatusCode, Json<serde_json::Value>) {
    (status, Json(serde_json::json!({ "error": message.into() })))
}

async fn receive(
    State(state): State<CallbackState>,
    Path((instance, event)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = state.secret.verify(
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        Utc::now().timestamp(),
    ) {
        return error(StatusCode::UNAUTHORIZED, e.to_string());
    }
    if !matches!(event.as_str(), "ready" | "failed" | "terminated") {
        return error(
            StatusCode::NOT_FOUND,
            "events are ready, failed and terminated",
        );
    }
    if instance.is_empty() || instance.len() > 200 {
        return error(
            StatusCode::BAD_REQUEST,
            "instance ids are 1 to 200 characters",
        );
    }
    let callback: Callback = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a callback: {e}")),
    };
    match record(&state.pool, &instance, &event, &callback).await {
        Ok(true) => (
            StatusCode::OK,
            Json(serde_json::json!({ "recorded": true })),
        ),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no boot order `{}`", callback.order_id),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; send the callback again",
        ),
    }
}

/// Records one callback; `false` when its boot order is unknown.
pub async fn record(
    pool: &PgPool,
    instance: &str,
    event: &str,
    callback: &Callback,
) -> Result<bool, sqlx::Error> {
    let order: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT fleet_id, created_at FROM orders WHERE idempotency_key = $1 AND kind = 'boot'",
    )
    .bind(&callback.order_id)
    .fetch_optional(pool)
    .await?;
    let Some((fleet_id, ordered_at)) = order else {
        return Ok(false);
    };
    let boot_secs = (event == "ready")
        .then(|| ((callback.at - ordered_at).num_milliseconds() as f64 / 1000.0).max(0.0));
    // The first `ready` of an instance wins; states only move forward (ready, then failed or
    // terminated), so a late duplicate cannot bring a terminated instance back.
    sqlx::query(
        "INSERT INTO instances (instance_id, fleet_id, order_key, ordered_at, state, ready_at, boot_secs, updated_at, terminated_by)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'ready' THEN $6 END, $7, $6, $8)
         ON CONFLICT (instance_id) DO UPDATE SET
           terminated_by = COALESCE(instances.terminated_by, EXCLUDED.terminated_by),
           state = CASE WHEN instances.state IN ('terminated', 'failed') THEN instances.state
                        ELSE EXCLUDED.state END,
           ready_at = COALESCE(instances.ready_at, EXCLUDED.ready_at),
           boot_secs = COALESCE(instances.boot_secs, EXCLUDED.boot_secs),
           updated_at = GREATEST(instances.updated_at, EXCLUDED.updated_at)",
    )
    .bind(instance)
    .bind(fleet_id)
    .bind(&callback.order_id)
    .bind(ordered_at)
    .bind(event)
    .bind(callback.at)
    .bind(boot_secs)
    .bind(callback.terminated_by.as_deref().filter(|_| event == "terminated"))
    .execute(pool)
    .await?;
    Ok(true)
}

/// A fleet's boot times since `since`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BootStats {
    pub count: i64,
    pub p50_secs: Option<f64>,
    pub p95_secs: Option<f64>,
    pub max_secs: Option<f64>,
}

pub async fn boot_stats(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
) -> Result<BootStats, sqlx::Error> {
    let (count, p50, p95, max): (i64, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY boot_secs),
                percentile_cont(0.95) WITHIN GROUP (ORDER BY boot_secs), max(boot_secs)
         FROM instances WHERE fleet_id = $1 AND boot_secs IS NOT NULL AND ready_at >= $2",
    )
    .bind(fleet_id)
    .bind(since)
    .fetch_one(pool)
    .await?;
    Ok(BootStats {
        count,
        p50_secs: p50,
        p95_secs: p95,
        max_secs: max,
    })
}
