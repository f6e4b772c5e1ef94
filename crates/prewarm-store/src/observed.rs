//! Fleets that prewarm does not boot itself: their ready and desired replicas, observed.
//!
//! A fleet scaled by another actuator (KEDA's HPA on a Kubernetes Deployment, say) sends no
//! callbacks; its state is what a query of the real fleet says (kube-state-metrics'
//! `kube_deployment_status_replicas_ready` and `kube_deployment_spec_replicas`). Each observation
//! is stored; the planner's state is the latest one (ready replicas, and the replicas desired but
//! not ready as booting since the desired count first covered them), and a replica that becomes
//! ready teaches the boot lead the time since the desired count first covered it.

use chrono::{DateTime, Duration, Utc};
use prewarm_planner::FleetState;
use sqlx::PgPool;

use crate::StoreError;

/// One observation of the real fleet, in replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Observation {
    /// When it was observed.
    pub observed_at: DateTime<Utc>,
    /// Replicas ready (serving).
    pub ready_replicas: i32,
    /// Replicas the fleet's controller wants (ready or not yet).
    pub desired_replicas: i32,
}

impl Observation {
    /// An observation from what two queries answered; the error says what is wrong with a
    /// value (not a number, negative, fractional or absurdly large).
    pub fn from_values(at: DateTime<Utc>, ready: f64, desired: f64) -> Result<Self, String> {
        let count = |what: &str, v: f64| -> Result<i32, String> {
            if !v.is_finite() {
                return Err(format!("{what} replicas is not a number ({v})"));
            }
            if v < 0.0 {
                return Err(format!("{what} replicas is negative ({v})"));
            }
            if v.fract() != 0.0 {
                return Err(format!("{what} replicas is not a whole number ({v})"));
            }
            if v > 100_000.0 {
                return Err(format!("{what} replicas is more than 100000 ({v})"));
            }
            Ok(v as i32)
        };
        Ok(Self {
            observed_at: at,
            ready_replicas: count("ready", ready)?,
            desired_replicas: count("desired", desired)?,
        })
    }
}

/// When the desired count first covered replica `unit` (0-based) without dropping below it
/// since, among `history` (oldest first); `None` when it covered it already at the oldest
/// observation (the start is not known) or does not cover it now.
fn covered_since(history: &[Observation], unit: i32) -> Option<DateTime<Utc>> {
    let mut since = None;
    for o in history.iter().rev() {
        if o.desired_replicas > unit {
            since = Some(o.observed_at);
        } else {
            return since;
        }
    }
    // Covered at the oldest observation: its start is before what is known.
    None
}

/// The planner's state from observations (oldest first, the latest last), in GPUs: ready
/// replicas, and the replicas desired but not ready as booting since the desired count first
/// covered each (the oldest observation's time when that is before the history).
pub fn state_from(history: &[Observation], gpus_per_replica: u32) -> FleetState {
    let Some(last) = history.last() else {
        return FleetState::default();
    };
    let oldest = history[0].observed_at;
    let ready = last.ready_replicas.max(0);
    let mut booting = Vec::new();
    for unit in ready..last.desired_replicas.max(ready) {
        let since = covered_since(history, unit).unwrap_or(oldest);
        booting.extend(std::iter::repeat_n(since, gpus_per_replica as usize));
    }
    booting.sort_unstable();
    FleetState {
        gpus_ready: ready as u32 * gpus_per_replica,
        booting,
        standby: 0,
        resuming: Vec::new(),
    }
}

/// Boot times a new observation teaches, given the history before it (oldest first): one per
/// replica that became ready, from when the desired count first covered it. Replicas whose start
/// is before the history are not timed.
pub fn boots_learned(history: &[Observation], new: &Observation) -> Vec<f64> {
    let Some(prev) = history.last() else {
        return Vec::new();
    };
    (prev.ready_replicas..new.ready_replicas)
        .filter_map(|unit| covered_since(history, unit))
        .map(|since| (new.observed_at - since).num_milliseconds() as f64 / 1e3)
        .collect()
}

/// Observations of a fleet since `since`, oldest first.
pub async fn history(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Observation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT observed_at, ready_replicas, desired_replicas FROM observations
         WHERE fleet_id = $1 AND observed_at >= $2 AND observed_at <= $3 ORDER BY observed_at",
    )
    .bind(fleet_id)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await
}

/// How far back an observation's boot times look: longer than any boot.
pub const BOOT_WINDOW_SECS: i64 = 3 * 3_600;

/// Records an observation and the boot times it teaches, in one transaction. An observation
/// older than the latest one stored, or at the same time, is refused (the pull answers in
/// order; an old one would rewrite what was learned).
pub async fn record(pool: &PgPool, fleet_id: i64, o: &Observation) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    // One writer per fleet at a time: the fleet's row is the lock.
    let found: Option<(i64,)> = sqlx::query_as("SELECT id FROM fleets WHERE id = $1 FOR UPDATE")
        .bind(fleet_id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(StoreError::UnknownFleet(format!("#{fleet_id}")));
    }
    let history: Vec<Observation> = sqlx::query_as(
        "SELECT observed_at, ready_replicas, desired_replicas FROM observations
         WHERE fleet_id = $1 AND observed_at >= $2 ORDER BY observed_at",
    )
    .bind(fleet_id)
    .bind(o.observed_at - Duration::seconds(BOOT_WINDOW_SECS))
    .fetch_all(&mut *tx)
    .await?;
    if let Some(last) = history.last() {
        if last.observed_at >= o.observed_at {
            return Err(StoreError::Conflict(format!(
                "an observation at {} is not after the latest one stored ({})",
                o.observed_at.to_rfc3339(),
                last.observed_at.to_rfc3339()
            )));
        }
    }
    let boots = boots_learned(&history, o);
    sqlx::query(
        "INSERT INTO observations (fleet_id, observed_at, ready_replicas, desired_replicas)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(fleet_id)
    .bind(o.observed_at)
    .bind(o.ready_replicas)
    .bind(o.desired_replicas)
    .execute(&mut *tx)
    .await?;
    for secs in &boots {
        sqlx::query(
            "INSERT INTO observed_boots (fleet_id, ready_at, boot_secs, replicas)
             VALUES ($1, $2, $3, 1)",
        )
        .bind(fleet_id)
        .bind(o.observed_at)
        .bind(secs)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(boots.len())
}

/// Which of these fleets have ever been observed (they are then planned on their observations),
/// in one query.
pub async fn observed_among(
    pool: &PgPool,
    fleet_ids: &[i64],
) -> Result<std::collections::HashSet<i64>, sqlx::Error> {
    let found: Vec<i64> = sqlx::query_scalar(
        "SELECT f.id FROM unnest($1::bigint[]) AS f (id)
         WHERE EXISTS (SELECT 1 FROM observations o WHERE o.fleet_id = f.id)",
    )
    .bind(fleet_ids)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().collect())
}

/// Forgets a fleet's observations and observed boot times from before `before` (the daily
/// retention job, with the raw samples' horizon). Returns the rows removed.
pub async fn prune(
    pool: &PgPool,
    fleet_id: i64,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let observations =
        sqlx::query("DELETE FROM observations WHERE fleet_id = $1 AND observed_at < $2")
            .bind(fleet_id)
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected();
    let boots = sqlx::query("DELETE FROM observed_boots WHERE fleet_id = $1 AND ready_at < $2")
        .bind(fleet_id)
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(observations + boots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(min)
    }

    fn obs(min: i64, ready: i32, desired: i32) -> Observation {
        Observation {
            observed_at: at(min),
            ready_replicas: ready,
            desired_replicas: desired,
        }
    }

    #[test]
    fn replicas_desired_but_not_ready_boot_since_the_count_first_covered_them() {
        // 2 ready; desired raised to 3 at minute 2 and to 5 at minute 4.
        let h = [
            obs(0, 2, 2),
            obs(1, 2, 2),
            obs(2, 2, 3),
            obs(3, 2, 3),
            obs(4, 2, 5),
        ];
        let s = state_from(&h, 4);
        assert_eq!(s.gpus_ready, 8);
        assert_eq!(s.booting.len(), 12);
        assert_eq!(s.booting[..4], [at(2); 4]);
        assert_eq!(s.booting[4..], [at(4); 8]);
        // Desired above ready since before the history: the oldest time.
        let s = state_from(&[obs(0, 1, 3), obs(1, 1, 3)], 1);
        assert_eq!(s.booting, vec![at(0), at(0)]);
        // Scaling down: nothing boots.
        let s = state_from(&[obs(0, 5, 5), obs(1, 5, 2)], 1);
        assert_eq!((s.gpus_ready, s.booting.len()), (5, 0));
        assert_eq!(state_from(&[], 2), FleetState::default());
    }

    #[test]
    fn a_replica_that_becomes_ready_teaches_its_boot_time() {
        let h = [obs(0, 2, 2), obs(1, 2, 4), obs(5, 2, 4), obs(6, 3, 4)];
        // The third replica was desired from minute 1 and ready at minute 6.
        assert_eq!(boots_learned(&h[..3], &h[3]), vec![300.0]);
        // The fourth at minute 8: seven minutes.
        assert_eq!(boots_learned(&h, &obs(8, 4, 4)), vec![420.0]);
        // Ready already when the history starts: not timed.
        assert!(boots_learned(&[obs(0, 1, 3)], &obs(1, 3, 3)).is_empty());
        // A lowered then raised count restarts the clock.
        let h = [obs(0, 1, 2), obs(1, 1, 1), obs(2, 1, 2)];
        assert_eq!(boots_learned(&h, &obs(4, 2, 2)), vec![120.0]);
    }

    #[test]
    fn bad_values_are_refused_saying_which() {
        let e = Observation::from_values(at(0), f64::NAN, 1.0).unwrap_err();
        assert!(e.contains("ready replicas is not a number"), "{e}");
        let e = Observation::from_values(at(0), 1.0, -2.0).unwrap_err();
        assert!(e.contains("desired replicas is negative"), "{e}");
        let e = Observation::from_values(at(0), 1.5, 2.0).unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        assert_eq!(
            Observation::from_values(at(0), 1.0, 3.0).unwrap(),
            obs(0, 1, 3)
        );
    }
}
