//! The provisioner's callbacks: `POST /v1/instances/{id}/ready`, `/failed` and `/terminated`, and
//! for the standby tier `/stopped` and `/resumed` (and `/failed` for a resume that failed), which
//! name the stop or resume order in `caused_by`.
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
use prewarm_store::instances;
pub use prewarm_store::instances::{boot_stats, BootStats, Callback, Event, Recorded};
use sqlx::PgPool;

use crate::{
    clock::SharedClock,
    webhook::{Secret, TOLERANCE_SECS},
};

/// How far before its boot order an event may be dated: the provisioner's clock and prewarm's
/// may differ by this much.
pub const CLOCK_SKEW_SECS: i64 = 30;

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
            "events are ready, failed, terminated, stopped and resumed",
        );
    };
    if instance.is_empty() || instance.len() > 200 {
        return error(
            StatusCode::BAD_REQUEST,
            "instance ids are 1 to 200 characters",
        );
    }
    // Text the database cannot hold is refused for good (422), never answered as an outage
    // (503), which the provisioner would retry forever.
    if instance.contains('\0') {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the instance id in the path contains a NUL character",
        );
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a callback: {e}")),
    };
    if let Some(field) = crate::api::nul_field(&value) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{field}` contains a NUL character, which no text field may hold"),
        );
    }
    let callback: Callback = match serde_json::from_value(value) {
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
    let transition = matches!(callback.event, Event::Stopped | Event::Resumed)
        || (callback.event == Event::Failed && callback.caused_by.is_some());
    let outcome = if transition {
        record_transition(&state.pool, &message_id, &callback, state.clock.now()).await
    } else {
        record(&state.pool, &message_id, &callback, state.clock.now())
            .await
            .map(|r| r.map(instances::Transition::from))
    };
    match outcome {
        Ok(Ok(instances::Transition::Applied)) => (
            StatusCode::OK,
            Json(serde_json::json!({ "recorded": true })),
        ),
        Ok(Ok(instances::Transition::Duplicate)) => (
            StatusCode::OK,
            Json(serde_json::json!({ "recorded": false, "duplicate": true })),
        ),
        Ok(Ok(instances::Transition::Gone)) => (
            StatusCode::OK,
            Json(serde_json::json!({ "recorded": false, "gone": true })),
        ),
        Ok(Ok(instances::Transition::MessageIdReused)) => error(
            StatusCode::CONFLICT,
            "this webhook-id was used for another message; give each message its own id",
        ),
        Ok(Ok(instances::Transition::UnknownInstance)) => error(
            StatusCode::NOT_FOUND,
            format!(
                "instance `{}` of boot order `{}` was never reported ready: there is nothing to stop or resume",
                prewarm_core::shorten(&callback.instance_id, 80),
                prewarm_core::shorten(&callback.order_id, 80)
            ),
        ),
        Ok(Err((status, message))) => error(status, message),
        Err(e) if prewarm_store::is_unavailable(&e) => {
            tracing::warn!(error = %e, "callback not recorded: database unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; send the callback again",
            )
        }
        Err(e) => match prewarm_store::refused_value(&e) {
            Some(message) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the database refused a value in the callback: {message}"),
            ),
            None => {
                tracing::error!(error = %e, "callback not recorded: database error");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (logged by the service)",
                )
            }
        },
    }
}

/// Checks a callback's order and times, then records it ([`instances::record`]); `Err` is the
/// answer that refuses it.
pub async fn record(
    pool: &PgPool,
    message_id: &str,
    callback: &Callback,
    now: DateTime<Utc>,
) -> Result<Result<Recorded, (StatusCode, String)>, sqlx::Error> {
    let Some((fleet_id, ordered_at)) = instances::boot_order(pool, &callback.order_id).await?
    else {
        return Ok(Err((
            StatusCode::NOT_FOUND,
            format!(
                "no boot order `{}`",
                prewarm_core::shorten(&callback.order_id, 80)
            ),
        )));
    };
    if callback.at < ordered_at - Duration::seconds(CLOCK_SKEW_SECS) {
        return Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`at` {} is before its boot order was made ({}); check the provisioner's clock",
                callback.at.to_rfc3339(),
                ordered_at.to_rfc3339()
            ),
        )));
    }
    if callback.at > now + Duration::seconds(TOLERANCE_SECS) {
        return Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`at` {} is more than {TOLERANCE_SECS} s after now ({}); check the provisioner's clock",
                callback.at.to_rfc3339(),
                now.to_rfc3339()
            ),
        )));
    }
    Ok(Ok(instances::record(
        pool, message_id, callback, fleet_id, ordered_at,
    )
    .await?))
}

/// Checks a `stopped`, `resumed` or failed-resume callback's cause (`caused_by`: a stop order for
/// `stopped`, a resume order otherwise, of the instance's fleet) and times, then records it
/// ([`instances::record_transition`]); `Err` is the answer that refuses it.
pub async fn record_transition(
    pool: &PgPool,
    message_id: &str,
    callback: &Callback,
    now: DateTime<Utc>,
) -> Result<Result<instances::Transition, (StatusCode, String)>, sqlx::Error> {
    let wanted = if callback.event == Event::Stopped {
        prewarm_store::OrderKind::Stop
    } else {
        prewarm_store::OrderKind::Resume
    };
    let Some(cause) = callback.caused_by.as_deref() else {
        return Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "a `{}` callback names the {} order that caused it in `caused_by`",
                callback.event.as_str(),
                wanted
            ),
        )));
    };
    let boot = instances::boot_order(pool, &callback.order_id).await?;
    let order = instances::order(pool, cause).await?;
    let (Some((fleet_id, _)), Some((cause_fleet, kind, cause_at))) = (boot, order) else {
        return Ok(Err((
            StatusCode::NOT_FOUND,
            format!(
                "no boot order `{}` with a {} order `{}`",
                prewarm_core::shorten(&callback.order_id, 80),
                wanted,
                prewarm_core::shorten(cause, 80)
            ),
        )));
    };
    if kind != wanted || cause_fleet != fleet_id {
        return Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`caused_by` names a {kind} order{}; a `{}` callback names a {wanted} order of the instance's fleet",
                if cause_fleet != fleet_id { " of another fleet" } else { "" },
                callback.event.as_str()
            ),
        )));
    }
    if callback.at < cause_at - Duration::seconds(CLOCK_SKEW_SECS)
        || callback.at > now + Duration::seconds(TOLERANCE_SECS)
    {
        return Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`at` {} is not between its {wanted} order ({}) and {TOLERANCE_SECS} s after now ({}); check the provisioner's clock",
                callback.at.to_rfc3339(),
                cause_at.to_rfc3339(),
                now.to_rfc3339()
            ),
        )));
    }
    Ok(Ok(instances::record_transition(
        pool, message_id, callback, cause, cause_at,
    )
    .await?))
}

/// Forgets callback receipts older than twice the signature tolerance: their timestamps are
/// refused anyway.
pub async fn prune_receipts(pool: &PgPool) -> Result<u64, sqlx::Error> {
    instances::prune_receipts(pool, 2 * TOLERANCE_SECS).await
}
