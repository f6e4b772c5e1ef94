//! A fleet's GPUs as the ledger and the provisioner's callbacks tell them.
//!
//! The planner is level-triggered: each tick compares the desired size with what exists, so after
//! a crash or restart nothing needs replaying: state is rebuilt here from delivered orders and
//! callbacks.
//!
//! - provisioned = units of applied boot orders − units of applied terminate orders − instances
//!   that failed to boot − instances lost without a terminate order − boot units never reported
//!   after `stale_after` (the provisioner lost them). An order counts as applied once delivered,
//!   while in doubt (attempted, not acknowledged, still being retried under its key), and, for a
//!   boot that expired or was cancelled, once an instance of it is reported;
//! - ready = instances reported ready and not yet terminated, less those still stopping (at most
//!   `provisioned`);
//! - standby = units of stop orders reported (or unreported and younger than `stale_after`: still
//!   stopping) − units of resume orders likewise − units of applied `terminate_standby` orders −
//!   standby instances lost without a terminate order; a failed resume leaves the fleet (it is
//!   counted as failed);
//! - resuming = units of resume orders not yet reported, younger than `stale_after`;
//! - booting = the rest, with the order times of the youngest unreported boot units.

use chrono::{DateTime, Duration, Utc};
use prewarm_planner::FleetState;
use sqlx::{PgConnection, PgPool};

/// The fleet's state at `now`; boot units unreported for longer than `stale_after_secs` count as
/// lost.
pub async fn fleet_state(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    stale_after_secs: i64,
) -> Result<FleetState, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    fleet_state_on(&mut conn, fleet_id, now, stale_after_secs).await
}

/// [`fleet_state`] read on one connection (inside a transaction that holds the fleet's row, say).
pub async fn fleet_state_on(
    conn: &mut PgConnection,
    fleet_id: i64,
    now: DateTime<Utc>,
    stale_after_secs: i64,
) -> Result<FleetState, sqlx::Error> {
    let boots: Vec<(i32, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT o.count, o.created_at,
                (SELECT count(*) FROM instances i WHERE i.order_key = o.idempotency_key)
         FROM orders o WHERE o.fleet_id = $1 AND o.kind = 'boot'
           AND (o.state = 'delivered' OR (o.state = 'pending' AND o.attempts > 0)
                OR EXISTS (SELECT 1 FROM instances i WHERE i.order_key = o.idempotency_key))",
    )
    .bind(fleet_id)
    .fetch_all(&mut *conn)
    .await?;
    let (terminated, terminated_standby, ready, failed, lost, lost_standby): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT
           (SELECT coalesce(sum(count), 0) FROM orders
             WHERE fleet_id = $1 AND kind = 'terminate'
               AND (state = 'delivered' OR (state = 'pending' AND attempts > 0))),
           (SELECT coalesce(sum(count), 0) FROM orders
             WHERE fleet_id = $1 AND kind = 'terminate_standby'
               AND (state = 'delivered' OR (state = 'pending' AND attempts > 0))),
           (SELECT count(*) FROM instances WHERE fleet_id = $1 AND state = 'ready'),
           (SELECT count(*) FROM instances WHERE fleet_id = $1 AND state = 'failed'),
           (SELECT count(*) FROM instances
             WHERE fleet_id = $1 AND state = 'terminated' AND terminated_by IS NULL),
           (SELECT count(*) FROM instances
             WHERE fleet_id = $1 AND state = 'terminated' AND terminated_by IS NULL
               AND in_standby)",
    )
    .bind(fleet_id)
    .fetch_one(&mut *conn)
    .await?;
    let stale_before = now - Duration::seconds(stale_after_secs);
    // Stop and resume units: reported ones, and unreported ones still within the stale window.
    let transitions: Vec<(crate::OrderKind, i32, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT o.kind, o.count, o.created_at,
                (SELECT count(*) FROM instance_transitions t WHERE t.order_key = o.idempotency_key)
         FROM orders o WHERE o.fleet_id = $1 AND o.kind IN ('stop', 'resume')
           AND (o.state = 'delivered' OR (o.state = 'pending' AND o.attempts > 0)
                OR EXISTS (SELECT 1 FROM instance_transitions t
                           WHERE t.order_key = o.idempotency_key))",
    )
    .bind(fleet_id)
    .fetch_all(&mut *conn)
    .await?;
    let (mut stopped, mut resumed, mut stopping): (i64, i64, i64) = (0, 0, 0);
    let mut resuming: Vec<DateTime<Utc>> = Vec::new();
    for (kind, count, at, reported) in transitions {
        let units = if at < stale_before {
            reported
        } else {
            (count as i64).max(reported)
        };
        let unreported = (units - reported).max(0) as usize;
        if kind == crate::OrderKind::Stop {
            stopped += units;
            stopping += unreported as i64;
        } else {
            resumed += units;
            resuming.extend(std::iter::repeat_n(at, unreported));
        }
    }
    let mut ordered: i64 = 0;
    let mut unreported: Vec<DateTime<Utc>> = Vec::new();
    let mut stale: i64 = 0;
    for (count, at, reported) in boots {
        ordered += count as i64;
        let missing = (count as i64 - reported).max(0);
        if at < stale_before {
            stale += missing;
        } else {
            unreported.extend(std::iter::repeat_n(at, missing as usize));
        }
    }
    let total = (ordered - terminated - terminated_standby - failed - lost - stale).max(0);
    let standby = (stopped - resumed - terminated_standby - lost_standby).clamp(0, total);
    let provisioned = total - standby;
    // GPUs still stopping were reported ready: they serve no more.
    let ready = (ready - stopping).clamp(0, provisioned);
    resuming.sort_unstable();
    let resuming_count = resuming.len().min((provisioned - ready) as usize);
    let resuming = resuming[resuming.len() - resuming_count..].to_vec();
    let booting = (provisioned - ready) as usize - resuming_count;
    unreported.sort_unstable();
    let booting_times: Vec<DateTime<Utc>> = if unreported.len() >= booting {
        unreported[unreported.len() - booting..].to_vec()
    } else {
        // Terminations hit ready GPUs whose callbacks are still on their way.
        let mut v = unreported.clone();
        v.resize(booting, now);
        v
    };
    Ok(FleetState {
        gpus_ready: ready as u32,
        booting: booting_times,
        standby: standby as u32,
        resuming,
    })
}
