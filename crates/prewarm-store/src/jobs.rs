//! Runs of the scheduled jobs (`job_runs`): which replica ran a job's slot.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Claims `slot` of `job` for `scope` (a fleet): true for the one caller that gets it.
pub async fn claim_slot(
    pool: &PgPool,
    job: &str,
    scope: &str,
    slot: &str,
    now: DateTime<Utc>,
    replica: &str,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO job_runs (job, scope, slot, ran_at, replica) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(job)
    .bind(scope)
    .bind(slot)
    .bind(now)
    .bind(replica)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}
