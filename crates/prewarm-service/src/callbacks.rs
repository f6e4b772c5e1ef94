//! The provisioner's callbacks: `POST /v1/instances/{id}/ready`, `/failed` and `/terminated`.
//!
//! Each is signed like the orders (Standard Webhooks, same secret): a bad signature or a stale
//! timestamp gets 401 and changes nothing. The signed body names the instance and the event
//! (`instance_id`, `event`), and they must be the path's: a signature cannot be carried over to
//! another instance or another event. Each message id is remembered within the signature
//! tolerance: a message delivered again is acknowledged (`"duplicate": true`) and applied once.
//! An event's time `at` must lie between its boot order (less [`CLOCK_SKEW_SECS`]) and the
//! tolerance after now, or it is refused with 422. States only move forward: a callback for a
//! terminated or failed instance changes nothing. A `ready` callback records how long the
//! instance took from its boot order to serving: the fleet's boot-time distribution, whose p95
//! the planner uses as its lead.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Json, Router,
};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::{
    clock::SharedClock,
    webhook::{Secret, TOLERANCE_SECS},
};

/// How far before its boot order an event may be dated: the provisioner's clock and prewarm's
/// may differ by this much.
pub const CLOCK_SKEW_SECS: i64 = 30;

/// What the provisioner reports about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Serving.
    Ready,
    /// It never became ready (a failed boot).
    Failed,
    /// Gone, by a terminate order or lost (preempted, crashed).
    Terminated,
}

impl Event {
    /// The name used in paths and bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Ready => "ready",
            Event::Failed => "failed",
            Event::Terminated => "terminated",
        }
    }

    /// The event a path segment names.
    pub fn parse(text: &str) -> Option<Self> {
        [Event::Ready, Event::Failed, Event::Terminated]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

/// The callback body.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// The instance this is about: must be the path's `{id}`.
    pub instance_id: String,
    /// What happened: must be the path's event.
    pub event: Event,
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
    clock: SharedClock,
}

/// The callback routes.
pub fn router(pool: PgPool, secret: Secret, clock: SharedClock) -> Router {
    Router::new()
        .route("/v1/instances/{id}/{event}", post(receive))
        .with_state(CallbackState {
            pool,
            secret,
            clock,
        })
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
    let message_id = header("webhook-id").unwrap_or_default().to_string();
    if message_id.len() > 256 {
        return error(
            StatusCode::BAD_REQUEST,
            "webhook-id is at most 256 characters",
        );
    }
    let Some(event) = Event::parse(&event) else {
        return error(
            StatusCode::NOT_FOUND,
            "events are ready, failed and terminated",
        );
    };
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
    if callback.instance_id != instance || callback.event != event {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the signed body reports `{}` for instance `{}`, not `{}` for `{}` as the path says; send each event to its own path",
                callback.event.as_str(),
                prewarm_core::shorten(&callback.instance_id, 80),
                event.as_str(),
                prewarm_core::shorten(&instance, 80)
            ),
        );
    }
    match record(&state.pool, &message_id, &callback, state.clock.now()).await {
        Ok(Recorded::Applied) => (
            StatusCode::OK,
            Json(serde_json::json!({ "recorded": true })),
        ),
        Ok(Recorded::Duplicate) => (
            StatusCode::OK,
            Json(serde_json::json!({ "recorded": false, "duplicate": true })),
        ),
        Ok(Recorded::Refused(status, message)) => error(status, message),
        Err(e) => {
            tracing::warn!(error = %e, "callback not recorded: database unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; send the callback again",
            )
        }
    }
}

/// What became of a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Applied (or a harmless no-op, such as news of an instance already terminated).
    Applied,
    /// This message id was seen already: nothing changed.
    Duplicate,
    /// Refused, with the answer's status and why.
    Refused(StatusCode, String),
}

/// Records one callback received with message id `message_id` at `now` (the service's clock).
pub async fn record(
    pool: &PgPool,
    message_id: &str,
    callback: &Callback,
    now: DateTime<Utc>,
) -> Result<Recorded, sqlx::Error> {
    let order: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT fleet_id, created_at FROM orders WHERE idempotency_key = $1 AND kind = 'boot'",
    )
    .bind(&callback.order_id)
    .fetch_optional(pool)
    .await?;
    let Some((fleet_id, ordered_at)) = order else {
        return Ok(Recorded::Refused(
            StatusCode::NOT_FOUND,
            format!(
                "no boot order `{}`",
                prewarm_core::shorten(&callback.order_id, 80)
            ),
        ));
    };
    if callback.at < ordered_at - Duration::seconds(CLOCK_SKEW_SECS) {
        return Ok(Recorded::Refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`at` {} is before its boot order was made ({}); check the provisioner's clock",
                callback.at.to_rfc3339(),
                ordered_at.to_rfc3339()
            ),
        ));
    }
    if callback.at > now + Duration::seconds(TOLERANCE_SECS) {
        return Ok(Recorded::Refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`at` {} is more than {TOLERANCE_SECS} s after now ({}); check the provisioner's clock",
                callback.at.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
    }
    let mut tx = pool.begin().await?;
    let receipt: Option<(String, String)> = sqlx::query_as(
        "INSERT INTO callback_receipts (message_id, instance_id, event) VALUES ($1, $2, $3)
         ON CONFLICT (message_id) DO NOTHING RETURNING instance_id, event",
    )
    .bind(message_id)
    .bind(&callback.instance_id)
    .bind(callback.event.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if receipt.is_none() {
        let seen: Option<(String, String)> = sqlx::query_as(
            "SELECT instance_id, event FROM callback_receipts WHERE message_id = $1",
        )
        .bind(message_id)
        .fetch_optional(&mut *tx)
        .await?;
        return Ok(match seen {
            Some((i, e)) if i == callback.instance_id && e == callback.event.as_str() => {
                Recorded::Duplicate
            }
            _ => Recorded::Refused(
                StatusCode::CONFLICT,
                "this webhook-id was used for another message; give each message its own id".into(),
            ),
        });
    }
    let event = callback.event.as_str();
    let boot_secs = (callback.event == Event::Ready)
        .then(|| ((callback.at - ordered_at).num_milliseconds() as f64 / 1000.0).max(0.0));
    // The first `ready` of an instance wins; states only move forward (ready, then failed or
    // terminated), and an instance already failed or terminated changes no more: a late `ready`
    // neither revives it nor teaches a boot time.
    sqlx::query(
        "INSERT INTO instances (instance_id, fleet_id, order_key, ordered_at, state, ready_at, boot_secs, updated_at, terminated_by)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'ready' THEN $6 END, $7, $6, $8)
         ON CONFLICT (instance_id) DO UPDATE SET
           terminated_by = COALESCE(instances.terminated_by, EXCLUDED.terminated_by),
           state = EXCLUDED.state,
           ready_at = COALESCE(instances.ready_at, EXCLUDED.ready_at),
           boot_secs = COALESCE(instances.boot_secs, EXCLUDED.boot_secs),
           updated_at = GREATEST(instances.updated_at, EXCLUDED.updated_at)
         WHERE instances.state NOT IN ('terminated', 'failed')
           AND instances.order_key = EXCLUDED.order_key",
    )
    .bind(&callback.instance_id)
    .bind(fleet_id)
    .bind(&callback.order_id)
    .bind(ordered_at)
    .bind(event)
    .bind(callback.at)
    .bind(boot_secs)
    .bind(
        callback
            .terminated_by
            .as_deref()
            .filter(|_| callback.event == Event::Terminated),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Recorded::Applied)
}

/// Forgets callback receipts older than twice the signature tolerance: their timestamps are
/// refused anyway.
pub async fn prune_receipts(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM callback_receipts WHERE received_at < now() - make_interval(secs => $1)",
    )
    .bind((2 * TOLERANCE_SECS) as f64)
    .execute(pool)
    .await?
    .rows_affected())
}

/// A fleet's boot times since `since`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BootStats {
    /// Boots reported.
    pub count: i64,
    /// Median boot time, seconds.
    pub p50_secs: Option<f64>,
    /// 95th percentile boot time, seconds.
    pub p95_secs: Option<f64>,
    /// Longest boot, seconds.
    pub max_secs: Option<f64>,
}

/// Boot times the provisioner reported for a fleet since `since`: count, p50, p95 and longest.
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
