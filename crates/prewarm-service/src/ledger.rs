//! The order ledger: decisions and their orders, written together.

use chrono::{DateTime, Duration, Utc};
use prewarm_planner::{Decision, FleetState, Order};
use sqlx::PgPool;

/// How long an undelivered order stays worth delivering: past this, the fleet has moved on and
/// the next plan decides afresh.
pub const ORDER_TTL_SECS: i64 = 300;

/// Records `decision` for a fleet and queues its orders, in one transaction. Pending orders of
/// the fleet's earlier decisions are cancelled first: a newer plan makes them obsolete, and the
/// planner (level-triggered, from ready and booting GPUs) re-orders whatever is still needed.
/// Returns the decision's id.
pub async fn record_decision(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    state: &FleetState,
    decision: &Decision,
) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE orders SET state = 'cancelled', last_error = 'superseded by a newer plan'
         WHERE fleet_id = $1 AND state = 'pending'",
    )
    .bind(fleet_id)
    .execute(&mut *tx)
    .await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO decisions (fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting,
         forecast_p50_rps, forecast_upper_rps, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(fleet_id)
    .bind(now)
    .bind(decision.desired_gpus as i32)
    .bind(state.gpus_ready as i32)
    .bind(state.booting.len() as i32)
    .bind(decision.forecast_p50_rps)
    .bind(decision.forecast_upper_rps)
    .bind(&decision.reason)
    .fetch_one(&mut *tx)
    .await?;
    for (n, order) in decision.orders.iter().enumerate() {
        let (kind, count) = match *order {
            Order::Boot(c) => ("boot", c),
            Order::Terminate(c) => ("terminate", c),
        };
        sqlx::query(
            "INSERT INTO orders (idempotency_key, fleet_id, decision_id, kind, count, next_attempt_at,
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $6)",
        )
        .bind(format!("order-{fleet_id}-{id}-{n}"))
        .bind(fleet_id)
        .bind(id)
        .bind(kind)
        .bind(count as i32)
        .bind(now)
        .bind(now + Duration::seconds(ORDER_TTL_SECS))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StoredOrder {
    pub id: i64,
    pub idempotency_key: String,
    pub fleet_id: i64,
    pub kind: String,
    pub count: i32,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// A fleet's orders, oldest first.
pub async fn orders(pool: &PgPool, fleet_id: i64) -> Result<Vec<StoredOrder>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, idempotency_key, fleet_id, kind, count, state, attempts, last_error
         FROM orders WHERE fleet_id = $1 ORDER BY id",
    )
    .bind(fleet_id)
    .fetch_all(pool)
    .await
}
