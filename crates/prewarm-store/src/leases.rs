//! Per-fleet leases: each fleet is planned and dispatched by one replica at a time.
//!
//! Every replica renews its leases and announces itself every few seconds (`schedule.leases`).
//! A lease lasts `service.lease_ttl` (15 s by default): a replica that dies stops renewing, its
//! leases lapse, it drops out of the live count after the same time, and the next round of any
//! other replica takes its fleets: within `ttl + 5 s`, under the 30 s promised. Each replica
//! holds about its fair share (fleets / live replicas), so adding replicas spreads the fleets; a
//! replica whose ticks cannot plan its share in time announces the fleets it can plan (its
//! capacity), and the shares follow the capacities ([`fair_share`]), so it gives fleets up to the
//! others.
//! Writes are fenced: a decision is recorded only inside a transaction that sees the lease still
//! held by the writer (see [`crate::ledger::record`]).
//!
//! A holder is one process start, known by a random token made at start ([`Holder`]), not by its
//! replica id: two processes configured with the same id (every container's PID 1, say) are two
//! holders, so they can neither renew nor write under each other's leases.

use sqlx::PgPool;
use uuid::Uuid;

/// This process start as a lease holder: its random token, and the replica id people read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// This process start's random token.
    pub token: Uuid,
    /// The replica id people read.
    pub replica_id: String,
}

impl Holder {
    /// A new holder for a process start.
    pub fn new(replica_id: &str) -> Self {
        Self {
            token: Uuid::new_v4(),
            replica_id: replica_id.to_string(),
        }
    }
}

/// What one lease round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRound {
    /// Fleets this replica holds after the round, ascending.
    pub held: Vec<i64>,
    /// Fleets claimed this round.
    pub claimed: usize,
    /// Fleets released this round.
    pub released: usize,
    /// Replicas alive.
    pub live_replicas: i64,
    /// Fleets in the database.
    pub fleets: i64,
    /// Other live process starts that announce the same replica id (a configuration mistake
    /// the leases make harmless, but worth a warning).
    pub same_id_elsewhere: i64,
}

/// Renews, balances and claims this replica's leases. `capacity` is how many fleets this
/// replica can plan within a tick, when a tick has shown a limit (`None`: no limit seen).
pub async fn round(
    pool: &PgPool,
    me: &Holder,
    ttl_secs: i64,
    capacity: Option<i64>,
) -> Result<LeaseRound, sqlx::Error> {
    sqlx::query(
        "INSERT INTO replicas (token, replica_id, capacity) VALUES ($1, $2, $3)
         ON CONFLICT (token) DO UPDATE SET seen_at = now(), capacity = EXCLUDED.capacity",
    )
    .bind(me.token)
    .bind(&me.replica_id)
    .bind(capacity.map(|c| c.max(1)))
    .execute(pool)
    .await?;
    let (fleets, same_id, others): (i64, i64, Vec<Option<i64>>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM fleets),
                (SELECT count(*) FROM replicas WHERE seen_at > now() - make_interval(secs => $1)
                   AND replica_id = $2 AND token <> $3),
                (SELECT coalesce(array_agg(capacity), '{}') FROM replicas
                  WHERE seen_at > now() - make_interval(secs => $1) AND token <> $3)",
    )
    .bind(ttl_secs as f64)
    .bind(&me.replica_id)
    .bind(me.token)
    .fetch_one(pool)
    .await?;
    let live = 1 + others.len() as i64;
    let fair = fair_share(fleets, capacity, &others);

    let mut held: Vec<i64> = sqlx::query_scalar(
        "UPDATE fleet_leases SET expires_at = now() + make_interval(secs => $2)
         WHERE holder_token = $1 RETURNING fleet_id",
    )
    .bind(me.token)
    .bind(ttl_secs as f64)
    .fetch_all(pool)
    .await?;
    let mut released = 0;
    if held.len() as i64 > fair {
        // Hand the surplus to the others (a newly started replica, say).
        let surplus = held.len() as i64 - fair;
        let gone: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM fleet_leases WHERE fleet_id IN
               (SELECT fleet_id FROM fleet_leases WHERE holder_token = $1 ORDER BY fleet_id DESC LIMIT $2)
             RETURNING fleet_id",
        )
        .bind(me.token)
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
            "INSERT INTO fleet_leases (fleet_id, holder, holder_token, expires_at)
             SELECT f.id, $1, $4, now() + make_interval(secs => $2)
             FROM fleets f LEFT JOIN fleet_leases l ON l.fleet_id = f.id
             WHERE l.fleet_id IS NULL OR l.expires_at < now()
             ORDER BY f.id LIMIT $3
             ON CONFLICT (fleet_id) DO UPDATE
               SET holder = EXCLUDED.holder, holder_token = EXCLUDED.holder_token,
                   expires_at = EXCLUDED.expires_at, acquired_at = now()
               WHERE fleet_leases.expires_at < now()
             RETURNING fleet_id",
        )
        .bind(&me.replica_id)
        .bind(ttl_secs as f64)
        .bind(room)
        .bind(me.token)
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
        fleets,
        same_id_elsewhere: same_id,
    })
}

/// This replica's share of `fleets`, given its capacity and the other live replicas' (`None`:
/// no limit seen). The shares fill the replicas' capacities evenly (each replica takes the same
/// level, or its capacity when that is lower), so that together they hold every fleet when
/// their capacities allow it; when they do not, each holds in proportion to its capacity, and
/// every fleet is still held by someone (planned late rather than not at all). With no limits
/// seen, the even share: `ceil(fleets / live replicas)`.
pub fn fair_share(fleets: i64, mine: Option<i64>, others: &[Option<i64>]) -> i64 {
    let fleets = fleets.max(0);
    let caps: Vec<Option<i64>> = std::iter::once(mine)
        .chain(others.iter().copied())
        .map(|c| c.map(|c| c.max(1)))
        .collect();
    let held_at =
        |level: i64| -> i64 { caps.iter().map(|c| c.map_or(level, |c| c.min(level))).sum() };
    if caps.iter().all(Option::is_some) {
        let total: i64 = caps.iter().flatten().sum();
        if total < fleets {
            // Overloaded together: shares in proportion to the capacities, rounded up.
            let c = mine.unwrap_or(1).max(1);
            return (fleets * c + total - 1) / total;
        }
    }
    // The lowest level at which the replicas together hold every fleet.
    let (mut lo, mut hi) = (0, fleets);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if held_at(mid) >= fleets {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    mine.map_or(lo, |c| c.max(1).min(lo))
}

/// Gives up every lease of this replica (on shutdown), so others take over at once.
pub async fn release_all(pool: &PgPool, me: &Holder) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM replicas WHERE token = $1")
        .bind(me.token)
        .execute(pool)
        .await?;
    Ok(
        sqlx::query("DELETE FROM fleet_leases WHERE holder_token = $1")
            .bind(me.token)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// The replica holding a fleet's lease, if any holds it now.
pub async fn holder(pool: &PgPool, fleet_id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT holder FROM fleet_leases WHERE fleet_id = $1 AND expires_at > now()")
        .bind(fleet_id)
        .fetch_optional(pool)
        .await
}
