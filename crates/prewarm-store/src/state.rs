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

use std::collections::HashMap;

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
    let mut rows = state_rows_on(conn, &[fleet_id]).await?;
    Ok(rows
        .remove(&fleet_id)
        .unwrap_or_default()
        .state(now, stale_after_secs))
}

/// The ledger's rows a fleet's state is rebuilt from ([`StateRows::state`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateRows {
    /// Applied boot orders: units, order time, instances reported.
    boots: Vec<(i32, DateTime<Utc>, i64)>,
    /// Units of applied terminate and terminate_standby orders; instances ready, failed, lost,
    /// and lost from standby.
    counts: [i64; 6],
    /// Applied stop and resume orders: kind, units, order time, transitions reported.
    transitions: Vec<(crate::OrderKind, i32, DateTime<Utc>, i64)>,
}

/// The state rows of every fleet in `fleet_ids`, in three set-based queries (a tick reads many
/// fleets' at once). A fleet with no rows gets empty ones.
pub async fn state_rows(
    pool: &PgPool,
    fleet_ids: &[i64],
) -> Result<HashMap<i64, StateRows>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    state_rows_on(&mut conn, fleet_ids).await
}

/// [`state_rows`] on one connection.
pub async fn state_rows_on(
    conn: &mut PgConnection,
    fleet_ids: &[i64],
) -> Result<HashMap<i64, StateRows>, sqlx::Error> {
    let mut out: HashMap<i64, StateRows> = fleet_ids
        .iter()
        .map(|id| (*id, StateRows::default()))
        .collect();
    let boots: Vec<(i64, i32, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT o.fleet_id, o.count, o.created_at,
                (SELECT count(*) FROM instances i WHERE i.order_key = o.idempotency_key)
         FROM orders o WHERE o.fleet_id = ANY($1) AND o.kind = 'boot'
           AND (o.state = 'delivered' OR (o.state = 'pending' AND o.attempts > 0)
                OR EXISTS (SELECT 1 FROM instances i WHERE i.order_key = o.idempotency_key))",
    )
    .bind(fleet_ids)
    .fetch_all(&mut *conn)
    .await?;
    for (fleet, count, at, reported) in boots {
        if let Some(r) = out.get_mut(&fleet) {
            r.boots.push((count, at, reported));
        }
    }
    let counts: Vec<(i64, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT f.id,
           (SELECT coalesce(sum(count), 0) FROM orders
             WHERE fleet_id = f.id AND kind = 'terminate'
               AND (state = 'delivered' OR (state = 'pending' AND attempts > 0))),
           (SELECT coalesce(sum(count), 0) FROM orders
             WHERE fleet_id = f.id AND kind = 'terminate_standby'
               AND (state = 'delivered' OR (state = 'pending' AND attempts > 0))),
           (SELECT count(*) FROM instances WHERE fleet_id = f.id AND state = 'ready'),
           (SELECT count(*) FROM instances WHERE fleet_id = f.id AND state = 'failed'),
           (SELECT count(*) FROM instances
             WHERE fleet_id = f.id AND state = 'terminated' AND terminated_by IS NULL),
           (SELECT count(*) FROM instances
             WHERE fleet_id = f.id AND state = 'terminated' AND terminated_by IS NULL
               AND in_standby)
         FROM unnest($1::bigint[]) AS f (id)",
    )
    .bind(fleet_ids)
    .fetch_all(&mut *conn)
    .await?;
    for (fleet, a, b, c, d, e, f) in counts {
        if let Some(r) = out.get_mut(&fleet) {
            r.counts = [a, b, c, d, e, f];
        }
    }
    // Stop and resume units: reported ones, and unreported ones still within the stale window.
    let transitions: Vec<(i64, crate::OrderKind, i32, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT o.fleet_id, o.kind, o.count, o.created_at,
                (SELECT count(*) FROM instance_transitions t WHERE t.order_key = o.idempotency_key)
         FROM orders o WHERE o.fleet_id = ANY($1) AND o.kind IN ('stop', 'resume')
           AND (o.state = 'delivered' OR (o.state = 'pending' AND o.attempts > 0)
                OR EXISTS (SELECT 1 FROM instance_transitions t
                           WHERE t.order_key = o.idempotency_key))",
    )
    .bind(fleet_ids)
    .fetch_all(&mut *conn)
    .await?;
    for (fleet, kind, count, at, reported) in transitions {
        if let Some(r) = out.get_mut(&fleet) {
            r.transitions.push((kind, count, at, reported));
        }
    }
    Ok(out)
}

impl StateRows {
    /// The fleet's state at `now` from its rows; boot units unreported for longer than
    /// `stale_after_secs` count as lost.
    pub fn state(&self, now: DateTime<Utc>, stale_after_secs: i64) -> FleetState {
        let [terminated, terminated_standby, ready, failed, lost, lost_standby] = self.counts;
        let stale_before = now - Duration::seconds(stale_after_secs);
        let (mut stopped, mut resumed, mut stopping): (i64, i64, i64) = (0, 0, 0);
        let mut resuming: Vec<DateTime<Utc>> = Vec::new();
        for &(kind, count, at, reported) in &self.transitions {
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
        for &(count, at, reported) in &self.boots {
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
        FleetState {
            gpus_ready: ready as u32,
            booting: booting_times,
            standby: standby as u32,
            resuming,
        }
    }
}
