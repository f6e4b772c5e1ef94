//! GPU instances as the provisioner reports them (`instances`), and the receipts of its
//! callbacks (`callback_receipts`): each message applied once, states only moving forward, and
//! the boot times the planner learns its lead from.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

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
    /// Stopped into standby by a stop order.
    Stopped,
    /// Serving again after a resume order.
    Resumed,
}

impl Event {
    /// The name used in paths and bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Ready => "ready",
            Event::Failed => "failed",
            Event::Terminated => "terminated",
            Event::Stopped => "stopped",
            Event::Resumed => "resumed",
        }
    }

    /// The event a path segment names.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Event::Ready,
            Event::Failed,
            Event::Terminated,
            Event::Stopped,
            Event::Resumed,
        ]
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
    /// For `stopped` and `resumed`, and `failed` after a resume: the stop or resume order that
    /// caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<String>,
}

/// What became of a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Applied (or a harmless no-op, such as news of an instance already terminated).
    Applied,
    /// This message id was seen already with the same message: nothing changed.
    Duplicate,
    /// This message id was seen with another message: refused.
    MessageIdReused,
}

/// Records the receipt of message `message_id` in `tx`: `None` when it is new (go on and apply
/// it), else what it was: the same message again, or the id reused for another (another
/// instance, event, order, time or cause: the whole callback is compared, by a hash of its
/// canonical form, so a repeat re-serialised by the provisioner still matches).
async fn receipt(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    message_id: &str,
    callback: &Callback,
) -> Result<Option<Recorded>, sqlx::Error> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(serde_json::to_vec(callback).unwrap_or_default()).to_vec();
    let new: Option<(String,)> = sqlx::query_as(
        "INSERT INTO callback_receipts (message_id, instance_id, event, body_sha256)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (message_id) DO NOTHING RETURNING instance_id",
    )
    .bind(message_id)
    .bind(&callback.instance_id)
    .bind(callback.event.as_str())
    .bind(&digest)
    .fetch_optional(&mut **tx)
    .await?;
    if new.is_some() {
        return Ok(None);
    }
    let seen: Option<(String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT instance_id, event, body_sha256 FROM callback_receipts WHERE message_id = $1",
    )
    .bind(message_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(Some(match seen {
        // Receipts made before bodies were hashed compare by instance and event.
        Some((i, e, body))
            if i == callback.instance_id
                && e == callback.event.as_str()
                && body.as_ref().is_none_or(|b| *b == digest) =>
        {
            Recorded::Duplicate
        }
        _ => Recorded::MessageIdReused,
    }))
}

/// The fleet and order time of the boot order with this idempotency key.
pub async fn boot_order(
    pool: &PgPool,
    order_key: &str,
) -> Result<Option<(i64, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT fleet_id, created_at FROM orders WHERE idempotency_key = $1 AND kind = 'boot'",
    )
    .bind(order_key)
    .fetch_optional(pool)
    .await
}

/// Records one callback received with message id `message_id` about an instance of the boot
/// order made for `fleet_id` at `ordered_at`, in one transaction with its receipt.
pub async fn record(
    pool: &PgPool,
    message_id: &str,
    callback: &Callback,
    fleet_id: i64,
    ordered_at: DateTime<Utc>,
) -> Result<Recorded, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(seen) = receipt(&mut tx, message_id, callback).await? {
        return Ok(seen);
    }
    let event = callback.event.as_str();
    let boot_secs = (callback.event == Event::Ready)
        .then(|| ((callback.at - ordered_at).num_milliseconds() as f64 / 1000.0).max(0.0));
    // The first `ready` of an instance wins; states only move forward (ready, then failed or
    // terminated), and an instance already failed or terminated changes no more: a late `ready`
    // neither revives it nor teaches a boot time, nor wakes one in standby (only a `resumed`
    // does).
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
           AND NOT (instances.state = 'standby' AND EXCLUDED.state = 'ready')
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

/// The fleet, kind and order time of the order with this idempotency key.
pub async fn order(
    pool: &PgPool,
    order_key: &str,
) -> Result<Option<(i64, crate::OrderKind, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as("SELECT fleet_id, kind, created_at FROM orders WHERE idempotency_key = $1")
        .bind(order_key)
        .fetch_optional(pool)
        .await
}

/// What a stop or resume callback found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Recorded (the unit counted; the state moved if the event is the instance's latest).
    Applied,
    /// This message id was seen already with the same message: nothing changed.
    Duplicate,
    /// This message id was seen with another message: refused.
    MessageIdReused,
    /// No instance of that id and boot order has been reported ready: nothing to stop or resume.
    UnknownInstance,
    /// The instance is terminated or failed: nothing changed.
    Gone,
}

impl From<Recorded> for Transition {
    fn from(r: Recorded) -> Self {
        match r {
            Recorded::Applied => Transition::Applied,
            Recorded::Duplicate => Transition::Duplicate,
            Recorded::MessageIdReused => Transition::MessageIdReused,
        }
    }
}

/// Records a `stopped`, `resumed` or failed-resume callback (message id `message_id`) caused by
/// the stop or resume order `cause` made at `cause_at`, in one transaction with its receipt. The
/// order's unit is counted once per instance. The instance's state follows the event only when it
/// is later than the last event applied to it, so a `resumed` delivered before its `stopped`
/// leaves the instance serving and both units counted.
pub async fn record_transition(
    pool: &PgPool,
    message_id: &str,
    callback: &Callback,
    cause: &str,
    cause_at: DateTime<Utc>,
) -> Result<Transition, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(seen) = receipt(&mut tx, message_id, callback).await? {
        return Ok(seen.into());
    }
    let current: Option<(crate::kinds::InstanceState,)> = sqlx::query_as(
        "SELECT state FROM instances WHERE instance_id = $1 AND order_key = $2 FOR UPDATE",
    )
    .bind(&callback.instance_id)
    .bind(&callback.order_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((state,)) = current else {
        tx.rollback().await?;
        return Ok(Transition::UnknownInstance);
    };
    if matches!(
        state,
        crate::kinds::InstanceState::Terminated | crate::kinds::InstanceState::Failed
    ) {
        tx.commit().await?;
        return Ok(Transition::Gone);
    }
    sqlx::query(
        "INSERT INTO instance_transitions (order_key, instance_id, event, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (order_key, instance_id) DO NOTHING",
    )
    .bind(cause)
    .bind(&callback.instance_id)
    .bind(callback.event.as_str())
    .bind(callback.at)
    .execute(&mut *tx)
    .await?;
    let new_state = match callback.event {
        Event::Stopped => "standby",
        Event::Resumed => "ready",
        _ => "failed",
    };
    let resume_secs = (callback.event == Event::Resumed)
        .then(|| ((callback.at - cause_at).num_milliseconds() as f64 / 1000.0).max(0.0));
    sqlx::query(
        "UPDATE instances SET state = $2, in_standby = ($2 = 'standby'),
                resume_secs = COALESCE($3, resume_secs),
                resumed_at = CASE WHEN $3 IS NULL THEN resumed_at ELSE $4 END,
                updated_at = $4
         WHERE instance_id = $1 AND updated_at <= $4",
    )
    .bind(&callback.instance_id)
    .bind(new_state)
    .bind(resume_secs)
    .bind(callback.at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Transition::Applied)
}

/// A fleet's resume times since `since`, as [`BootStats`].
pub async fn resume_stats(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
) -> Result<BootStats, sqlx::Error> {
    durations(pool, fleet_id, since, Timed::Resume).await
}

/// Forgets callback receipts older than `older_than_secs`.
pub async fn prune_receipts(pool: &PgPool, older_than_secs: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM callback_receipts WHERE received_at < now() - make_interval(secs => $1)",
    )
    .bind(older_than_secs as f64)
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
    durations(pool, fleet_id, since, Timed::Boot).await
}

/// What an instance's time is measured for.
#[derive(Debug, Clone, Copy)]
enum Timed {
    /// From the boot order to ready.
    Boot,
    /// From the resume order to serving again.
    Resume,
}

/// Count, p50, p95 and longest of the fleet's boot or resume times since `since`.
async fn durations(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
    timed: Timed,
) -> Result<BootStats, sqlx::Error> {
    let mut all = durations_of(pool, &[fleet_id], since, timed).await?;
    Ok(all.remove(&fleet_id).unwrap_or(BootStats {
        count: 0,
        p50_secs: None,
        p95_secs: None,
        max_secs: None,
    }))
}

/// Boot times of every fleet in `fleet_ids` since `since`, in one query (a tick reads many
/// fleets' at once).
pub async fn boot_stats_of(
    pool: &PgPool,
    fleet_ids: &[i64],
    since: DateTime<Utc>,
) -> Result<std::collections::HashMap<i64, BootStats>, sqlx::Error> {
    durations_of(pool, fleet_ids, since, Timed::Boot).await
}

/// Resume times of every fleet in `fleet_ids` since `since`, in one query.
pub async fn resume_stats_of(
    pool: &PgPool,
    fleet_ids: &[i64],
    since: DateTime<Utc>,
) -> Result<std::collections::HashMap<i64, BootStats>, sqlx::Error> {
    durations_of(pool, fleet_ids, since, Timed::Resume).await
}

/// Count, p50, p95 and longest of boot or resume times since `since`, per fleet of `fleet_ids`
/// (each one present, with a count of 0 when it has none).
async fn durations_of(
    pool: &PgPool,
    fleet_ids: &[i64],
    since: DateTime<Utc>,
    timed: Timed,
) -> Result<std::collections::HashMap<i64, BootStats>, sqlx::Error> {
    // An observed fleet's boots (`observed_boots`, one row per replica) count with the
    // provisioner's.
    let source = match timed {
        Timed::Boot => {
            "SELECT boot_secs AS secs FROM instances
              WHERE fleet_id = f.id AND boot_secs IS NOT NULL AND ready_at >= $2
             UNION ALL
             SELECT boot_secs FROM observed_boots WHERE fleet_id = f.id AND ready_at >= $2"
        }
        Timed::Resume => {
            "SELECT resume_secs AS secs FROM instances
              WHERE fleet_id = f.id AND resume_secs IS NOT NULL AND resumed_at >= $2"
        }
    };
    // Per fleet: count, p50, p95, longest.
    type Row = (i64, i64, Option<f64>, Option<f64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT f.id, count(t.secs), percentile_cont(0.5) WITHIN GROUP (ORDER BY t.secs),
                percentile_cont(0.95) WITHIN GROUP (ORDER BY t.secs), max(t.secs)
         FROM unnest($1::bigint[]) AS f (id) LEFT JOIN LATERAL ({source}) t ON true
         GROUP BY f.id"
    ))
    .bind(fleet_ids)
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, count, p50, p95, max)| {
            (
                id,
                BootStats {
                    count,
                    p50_secs: p50,
                    p95_secs: p95,
                    max_secs: max,
                },
            )
        })
        .collect())
}
