//! Per-fleet leases: each fleet is planned and dispatched by one replica at a time.
//!
//! Every replica renews its leases and announces itself every few seconds (`schedule.leases`).
//! A lease lasts `service.lease_ttl` (15 s by default): a replica that dies stops renewing, its
//! leases lapse, it drops out of the live count after the same time, and the next round of any
//! other replica takes its fleets: within `ttl + 5 s`, under the 30 s promised. Each replica
//! holds about its fair share (fleets / live replicas), so adding replicas spreads the fleets.
//! Writes are fenced: a decision is recorded only inside a transaction that sees the lease still
//! held by the writer (see [`crate::ledger::record`]).

use sqlx::PgPool;

/// What one lease round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRound {
    /// Fleets this replica holds after the round, ascending.
    pub held: Vec<i64>,
    pub claimed: usize,
    pub released: usize,
    pub live_replicas: i64,
}

/// Renews, balances and claims this replica's leases.
pub async fn round(pool: &PgPool, replica: &str, ttl_secs: i64) -> Result<LeaseRound, sqlx::Error> {
    sqlx::query(
        "INSERT INTO replicas (replica_id) VALUES ($1)
         ON CONFLICT (replica_id) DO UPDATE SET seen_at = now()",
    )
    .bind(replica)
    .execute(pool)
    .await?;
    let (live, fleets): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM replicas WHERE seen_at > now() - make_interval(secs => $1)),
                (SELECT count(*) FROM fleets)",
    )
    .bind(ttl_secs as f64)
    .fetch_one(pool)
    .await?;
    let live = live.max(1);
    let fair = (fleets + live - 1) / live;

    let mut held: Vec<i64> = sqlx::query_scalar(
        "UPDATE fleet_leases SET expires_at = now() + make_interval(secs => $2)
         WHERE holder = $1 RETURNING fleet_id",
    )
    .bind(replica)
    .bind(ttl_secs as f64)
    .fetch_all(pool)
    .await?;
    let mut released = 0;
    if held.len() as i64 > fair {
        // Hand the surplus to the others (a newly started replica, say).
        let surplus = held.len() as i64 - fair;
        let gone: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM fleet_leases WHERE fleet_id IN
               (SELECT fleet_id FROM fleet_leases WHERE holder = $1 ORDER BY fleet_id DESC LIMIT $2)
             RETURNING fleet_id",
        )
        .bind(replica)
        .bind(surplus)
        .fetch_all(pool)
        .await?;
        released = gone.len();
        held.retain(|f| !gone.contains(f));
    }
    let mut claimed = 0;
    let room = fair - held.len() as i64;
    if room > 0 {
        let new: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO fleet_leases (fleet_id, holder, expires_at)
             SELECT f.id, $1, now() + make_interval(secs => $2)
             FROM fleets f LEFT JOIN fleet_leases l ON l.fleet_id = f.id
             WHERE l.fleet_id IS NULL OR l.expires_at < now()
             ORDER BY f.id LIMIT $3
             ON CONFLICT (fleet_id) DO UPDATE
               SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at, acquired_at = now()
               WHERE fleet_leases.expires_at < now()
             RETURNING fleet_id",
        )
        .bind(replica)
        .bind(ttl_secs as f64)
        .bind(room)
        .fetch_all(pool)
        .await?;
        claimed = new.len();
        held.extend(new);
    }
    held.sort_unstable();
    Ok(LeaseRound {
        held,
        claimed,
        released,
        live_replicas: live,
    })
}

/// Gives up every lease of this replica (on shutdown), so others take over at once.
pub async fn release_all(pool: &PgPool, replica: &str) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM replicas WHERE replica_id = $1")
        .bind(replica)
        .execute(pool)
        .await?;
    Ok(sqlx::query("DELETE FROM fleet_leases WHERE holder = $1")
        .bind(replica)
        .execute(pool)
        .await?
        .rows_affected())
}

/// The replica holding a fleet's lease, if any holds it now.
pub async fn holder(pool: &PgPool, fleet_id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT holder FROM fleet_leases WHERE fleet_id = $1 AND expires_at > now()")
        .bind(fleet_id)
        .fetch_optional(pool)
        .await
}
