//! The order ledger: decisions and their orders, written together.

use chrono::{DateTime, Duration, Utc};
use prewarm_planner::{Decision, FleetState};
use sqlx::PgPool;

use crate::kinds::{DecisionMode, OrderKind, OrderState};

/// How long an undelivered order stays worth delivering: past this, the fleet has moved on and
/// the next plan decides afresh.
pub const ORDER_TTL_SECS: i64 = 300;

/// Records `decision` for a fleet and queues its orders, in one transaction (no lease check: for
/// tools and tests; the service uses [`record`]). Returns the decision's id.
pub async fn record_decision(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    state: &FleetState,
    decision: &Decision,
) -> Result<i64, sqlx::Error> {
    let meta = Meta {
        replica: "",
        resume_lead_secs: None,
        mode: DecisionMode::Act,
        boot_lead_secs: None,
        forecast_id: None,
        fence: None,
        write_orders: true,
    };
    Ok(record(pool, fleet_id, now, state, decision, &meta)
        .await?
        .expect("an unfenced record always writes"))
}

/// Who records a decision, and how.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    /// The replica that wrote it.
    pub replica: &'a str,
    /// What the operators had set when the decision was made.
    pub mode: DecisionMode,
    /// Boot lead in use, seconds.
    pub boot_lead_secs: Option<i64>,
    /// Resume lead in use, seconds (fleets with a standby tier).
    pub resume_lead_secs: Option<i64>,
    /// The stored forecast planned on, if any.
    pub forecast_id: Option<i64>,
    /// Write only while the process start with this lease token holds the fleet's lease
    /// ([`crate::leases::Holder`]).
    pub fence: Option<uuid::Uuid>,
    /// Queue the decision's orders (false: record the decision only).
    pub write_orders: bool,
}

/// Records `decision` for a fleet and queues its orders, in one transaction. Pending orders of
/// the fleet's earlier decisions that were never sent are cancelled first: a newer plan makes them
/// obsolete, and the planner (level-triggered, from ready and booting GPUs) re-orders whatever is
/// still needed. Orders already attempted may have reached the provisioner: they stay, are
/// retried under the same key, and the planner counts them ([`crate::state`]).
/// With `meta.fence`, nothing is written unless that process start still holds the fleet's lease
/// (`Ok(None)`): a replica that lost its lease while planning cannot write over its successor,
/// and a second process configured with the same replica id cannot write at all.
///
/// Each order gets an idempotency key that is unique across installations and restored backups
/// (`ord_` and a random UUID): a provisioner that remembers keys from another database never
/// mistakes a new order for one it has applied.
pub async fn record(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    state: &FleetState,
    decision: &Decision,
    meta: &Meta<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let one = ToRecord {
        fleet_id,
        now,
        state,
        decision,
        meta: *meta,
    };
    Ok(record_many(pool, &[one]).await?.pop().flatten())
}

/// One fleet's decision for [`record_many`].
#[derive(Debug, Clone, Copy)]
pub struct ToRecord<'a> {
    /// The fleet.
    pub fleet_id: i64,
    /// When it was decided.
    pub now: DateTime<Utc>,
    /// The fleet's GPUs it was decided on.
    pub state: &'a FleetState,
    /// The decision.
    pub decision: &'a Decision,
    /// Who records it, and how.
    pub meta: Meta<'a>,
}

/// [`record`] for many fleets' decisions in one statement: each fleet's lease check, superseded
/// orders, decision and orders as its own statement would write them, all in one transaction
/// and one round trip (a fleet decided more than once is written in order, one statement per
/// repeat). Returns each decision's id in `decisions`' order, `None` where the fence's lease
/// was not held.
pub async fn record_many(
    pool: &PgPool,
    decisions: &[ToRecord<'_>],
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let mut ids = vec![None; decisions.len()];
    for round in crate::distinct_rounds(decisions.iter().map(|d| d.fleet_id)) {
        let written = record_distinct(pool, round.iter().map(|i| &decisions[*i])).await?;
        for i in round {
            ids[i] = written.get(&decisions[i].fleet_id).copied();
        }
    }
    Ok(ids)
}

/// [`record_many`] for decisions of distinct fleets: the decision's id per fleet written.
async fn record_distinct<'a>(
    pool: &PgPool,
    decisions: impl Iterator<Item = &'a ToRecord<'a>>,
) -> Result<std::collections::HashMap<i64, i64>, sqlx::Error> {
    let mut d = Decisions::default();
    for r in decisions {
        d.push(r);
    }
    if d.fleet.is_empty() {
        return Ok(Default::default());
    }
    // One statement, so one atomic write and one round trip: each fenced decision's lease check
    // (its row shared until the write commits, so no other replica takes the lease meanwhile),
    // the pending orders it supersedes, the decision and its orders, each only while the lease
    // is held; an unfenced decision (tools and tests) is written as it is.
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH input AS (
           SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::int[], $5::int[],
             $6::float8[], $7::float8[], $8::text[], $9::text[], $10::text[], $11::bigint[],
             $12::bigint[], $13::int[], $14::int[], $15::bigint[], $16::uuid[])
             AS i(fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting, forecast_p50_rps,
               forecast_upper_rps, reason, replica, mode, boot_lead_secs, forecast_id,
               gpus_standby, gpus_resuming, resume_lead_secs, fence)),
         leased AS (
           SELECT l.fleet_id FROM fleet_leases l JOIN input i ON i.fleet_id = l.fleet_id
           WHERE l.holder_token = i.fence AND l.expires_at > now() FOR SHARE OF l),
         held AS (
           SELECT fleet_id FROM leased
           UNION ALL SELECT fleet_id FROM input WHERE fence IS NULL),
         cancelled AS (
           UPDATE orders SET state = 'cancelled', last_error = 'superseded by a newer plan'
           WHERE fleet_id IN (SELECT fleet_id FROM held) AND state = 'pending' AND attempts = 0),
         d AS (
           INSERT INTO decisions (fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting,
             forecast_p50_rps, forecast_upper_rps, reason, replica, mode, boot_lead_secs,
             forecast_id, gpus_standby, gpus_resuming, resume_lead_secs)
           SELECT fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting, forecast_p50_rps,
             forecast_upper_rps, reason, replica, mode, boot_lead_secs, forecast_id,
             gpus_standby, gpus_resuming, resume_lead_secs
           FROM input WHERE fleet_id IN (SELECT fleet_id FROM held)
           RETURNING id, fleet_id, decided_at),
         o AS (
           INSERT INTO orders (idempotency_key, fleet_id, decision_id, kind, count, next_attempt_at,
             expires_at, created_at)
           SELECT u.key, u.fleet_id, d.id, u.kind, u.count, d.decided_at,
             d.decided_at + make_interval(secs => $21), d.decided_at
           FROM unnest($17::bigint[], $18::text[], $19::text[], $20::int[])
             WITH ORDINALITY AS u (fleet_id, key, kind, count, n)
           JOIN d ON d.fleet_id = u.fleet_id
           ORDER BY u.n)
         SELECT fleet_id, id FROM d",
    )
    .bind(&d.fleet)
    .bind(&d.at)
    .bind(&d.desired)
    .bind(&d.ready)
    .bind(&d.booting)
    .bind(&d.p50)
    .bind(&d.upper)
    .bind(&d.reason)
    .bind(&d.replica)
    .bind(&d.mode)
    .bind(&d.boot_lead)
    .bind(&d.forecast)
    .bind(&d.standby)
    .bind(&d.resuming)
    .bind(&d.resume_lead)
    .bind(&d.fence)
    .bind(&d.order_fleet)
    .bind(&d.key)
    .bind(&d.kind)
    .bind(&d.count)
    .bind(ORDER_TTL_SECS as f64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The columns of decisions written together ([`record_distinct`]), and of their orders (each
/// with its fleet).
#[derive(Default)]
struct Decisions<'a> {
    fleet: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    desired: Vec<i32>,
    ready: Vec<i32>,
    booting: Vec<i32>,
    p50: Vec<Option<f64>>,
    upper: Vec<Option<f64>>,
    reason: Vec<&'a str>,
    replica: Vec<&'a str>,
    mode: Vec<&'a str>,
    boot_lead: Vec<Option<i64>>,
    forecast: Vec<Option<i64>>,
    standby: Vec<i32>,
    resuming: Vec<i32>,
    resume_lead: Vec<Option<i64>>,
    fence: Vec<Option<uuid::Uuid>>,
    order_fleet: Vec<i64>,
    key: Vec<String>,
    kind: Vec<&'static str>,
    count: Vec<i32>,
}

impl<'a> Decisions<'a> {
    fn push(&mut self, r: &'a ToRecord<'a>) {
        let (state, decision, meta) = (r.state, r.decision, &r.meta);
        self.fleet.push(r.fleet_id);
        self.at.push(r.now);
        self.desired.push(decision.desired_gpus as i32);
        self.ready.push(state.gpus_ready as i32);
        self.booting.push(state.booting.len() as i32);
        self.p50.push(decision.forecast_p50_rps);
        self.upper.push(decision.forecast_upper_rps);
        self.reason.push(decision.reason.as_str());
        self.replica.push(meta.replica);
        self.mode.push(meta.mode.as_str());
        self.boot_lead.push(meta.boot_lead_secs);
        self.forecast.push(meta.forecast_id);
        self.standby.push(state.standby as i32);
        self.resuming.push(state.resuming.len() as i32);
        self.resume_lead.push(meta.resume_lead_secs);
        self.fence.push(meta.fence);
        if meta.write_orders {
            for order in &decision.orders {
                let (kind, count) = OrderKind::of(*order);
                self.order_fleet.push(r.fleet_id);
                self.key.push(new_order_key());
                self.kind.push(kind.as_str());
                self.count.push(count as i32);
            }
        }
    }
}

/// A new idempotency key: `ord_` and a random (version 4) UUID.
pub fn new_order_key() -> String {
    format!("ord_{}", uuid::Uuid::new_v4().simple())
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StoredOrder {
    /// The row's id.
    pub id: i64,
    /// The order's idempotency key (`webhook-id`).
    pub idempotency_key: String,
    /// The fleet.
    pub fleet_id: i64,
    /// Boot or terminate.
    pub kind: OrderKind,
    /// How many GPUs.
    pub count: i32,
    /// Where the order is in its delivery.
    pub state: OrderState,
    /// Delivery attempts made.
    pub attempts: i32,
    /// The last delivery error.
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

/// A recorded decision, for the operator API.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StoredDecision {
    /// The row's id.
    pub id: i64,
    /// When it was decided.
    pub decided_at: DateTime<Utc>,
    /// GPUs the plan wants.
    pub desired_gpus: i32,
    /// GPUs serving.
    pub gpus_ready: i32,
    /// GPUs ordered and not yet serving.
    pub gpus_booting: i32,
    /// The demand distribution's median, requests per second.
    pub forecast_p50_rps: Option<f64>,
    /// The quantile planned on, requests per second.
    pub forecast_upper_rps: Option<f64>,
    /// Why, in words an operator reads.
    pub reason: String,
    /// The replica that wrote it.
    pub replica: String,
    /// What the operators had set when the decision was made.
    pub mode: DecisionMode,
    /// Boot lead in use, seconds.
    pub boot_lead_secs: Option<i64>,
    /// The stored forecast planned on, if any.
    pub forecast_id: Option<i64>,
    /// GPUs in standby.
    pub gpus_standby: i32,
    /// GPUs resuming from standby.
    pub gpus_resuming: i32,
    /// Resume lead in use, seconds (fleets with a standby tier).
    pub resume_lead_secs: Option<i64>,
}

/// A fleet's latest decisions, newest first.
pub async fn decisions(
    pool: &PgPool,
    fleet_id: i64,
    limit: i64,
) -> Result<Vec<StoredDecision>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, decided_at, desired_gpus, gpus_ready, gpus_booting, forecast_p50_rps,
                forecast_upper_rps, reason, replica, mode, boot_lead_secs, forecast_id,
                gpus_standby, gpus_resuming, resume_lead_secs
         FROM decisions WHERE fleet_id = $1 ORDER BY decided_at DESC, id DESC LIMIT $2",
    )
    .bind(fleet_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Decisions and orders across every fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Totals {
    /// Decisions recorded.
    pub decisions: i64,
    /// Orders delivered.
    pub delivered: i64,
    /// Orders pending.
    pub pending: i64,
}

/// How many decisions are recorded, and how many orders were delivered or are pending.
pub async fn totals(pool: &PgPool) -> Result<Totals, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM decisions) AS decisions,
                count(*) FILTER (WHERE state = 'delivered') AS delivered,
                count(*) FILTER (WHERE state = 'pending') AS pending
         FROM orders",
    )
    .fetch_one(pool)
    .await
}

/// An order claimed for delivery.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DueOrder {
    /// The row's id.
    pub id: i64,
    /// The order's idempotency key (`webhook-id`).
    pub idempotency_key: String,
    /// The fleet's name.
    pub fleet: String,
    /// Boot or terminate.
    pub kind: OrderKind,
    /// How many GPUs.
    pub count: i32,
    /// Attempts before this one.
    pub attempts: i32,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// Which pending orders a dispatcher may claim.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimScope<'a> {
    /// Only this fleet's orders.
    pub fleet_id: Option<i64>,
    /// Only orders of fleets whose lease this process start holds.
    pub holder: Option<&'a uuid::Uuid>,
}

/// Claims up to `batch` pending orders that are due at `now`, in one transaction committed before
/// anything is sent: each claimed order's attempt is counted and it is held for `hold` (no other
/// dispatcher sends it meanwhile), so an order whose delivery may have reached the provisioner is
/// known to be in doubt if the process dies (never cancelled by a newer plan, counted by the
/// planner, sent again under the same key). Orders past their time to live are expired instead.
/// Returns the claimed orders and how many expired.
pub async fn claim_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    batch: i64,
    hold: Duration,
    scope: ClaimScope<'_>,
) -> Result<(Vec<DueOrder>, usize), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        order: DueOrder,
        expires_at: DateTime<Utc>,
    }
    let mut tx = pool.begin().await?;
    let due: Vec<Row> = sqlx::query_as(
        "SELECT o.id, o.idempotency_key, f.name AS fleet, o.kind, o.count, o.attempts,
                o.created_at, o.expires_at
         FROM orders o JOIN fleets f ON f.id = o.fleet_id
         WHERE o.state = 'pending' AND o.next_attempt_at <= $1
           AND ($3::bigint IS NULL OR o.fleet_id = $3)
           AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM fleet_leases l
                WHERE l.fleet_id = o.fleet_id AND l.holder_token = $4 AND l.expires_at > now()))
         ORDER BY o.next_attempt_at LIMIT $2
         FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(now)
    .bind(batch)
    .bind(scope.fleet_id)
    .bind(scope.holder.copied())
    .fetch_all(&mut *tx)
    .await?;
    let (mut claimed, mut expired) = (Vec::with_capacity(due.len()), 0);
    for row in due {
        if row.expires_at <= now {
            sqlx::query("UPDATE orders SET state = 'expired' WHERE id = $1")
                .bind(row.order.id)
                .execute(&mut *tx)
                .await?;
            expired += 1;
            continue;
        }
        sqlx::query(
            "UPDATE orders SET attempts = attempts + 1, next_attempt_at = $2 WHERE id = $1",
        )
        .bind(row.order.id)
        .bind(now + hold)
        .execute(&mut *tx)
        .await?;
        claimed.push(row.order);
    }
    tx.commit().await?;
    Ok((claimed, expired))
}

/// Records that the provisioner acknowledged an order.
pub async fn mark_delivered(
    pool: &PgPool,
    order_id: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET state = 'delivered', delivered_at = $2, last_error = NULL
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(order_id)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed delivery and when to try again. The error is stored with any URL in it
/// redacted and cut to 500 characters: it is returned by the API to every token that may read the
/// fleet.
pub async fn mark_failed(
    pool: &PgPool,
    order_id: i64,
    retry_at: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET next_attempt_at = $2, last_error = $3
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(order_id)
    .bind(retry_at)
    .bind(
        prewarm_core::scrub_urls(error)
            .chars()
            .take(500)
            .collect::<String>(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Drops a fleet's decisions made before `before` that ordered nothing (those with orders stay:
/// the fleet's state is counted from them).
pub async fn prune_decisions(
    pool: &PgPool,
    fleet_id: i64,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM decisions d WHERE d.fleet_id = $1 AND d.decided_at < $2
         AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.decision_id = d.id)",
    )
    .bind(fleet_id)
    .bind(before)
    .execute(pool)
    .await?
    .rows_affected())
}

/// The GPUs ready at each decision made in `[from, to)` while the fleet was acting (not paused,
/// pinned or forecast-only) on a forecast whose levels the SLO sizer had chosen, oldest first:
/// the fleet's own record of what served its demand. Decisions of a young fleet (reactive rules,
/// or a forecast on its start level) are left out: they say little of what the sized levels do,
/// and a bad first day would hold the budget down for the week the record spans.
pub async fn ready_when_acting(
    pool: &PgPool,
    fleet_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, i32)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.decided_at, d.gpus_ready FROM decisions d
         JOIN forecasts f ON f.id = d.forecast_id AND f.levels IS NOT NULL
         WHERE d.fleet_id = $1 AND d.decided_at >= $2 AND d.decided_at < $3 AND d.mode = 'act'
         ORDER BY d.decided_at",
    )
    .bind(fleet_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}
