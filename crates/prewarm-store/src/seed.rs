//! Synthetic fleets and history for `prewarm bench service`: many fleets at once, made in the
//! database in a few statements instead of row by row.

use chrono::{DateTime, Utc};
use sqlx::{Executor, PgPool};

/// Replaces every fleet with `n` fleets (`fleet-1` ...), each with 35 minutes of 1-minute
/// samples before `now`, a live forecast made this hour (without a calibration, so planned on by
/// the reactive rules until [`copy_live_forecasts`] gives it a refitted fleet's), a decision an
/// hour ago whose boot of 10 was delivered, and the 10 instances it started (ready, with boot
/// times).
pub async fn fleets_in_steady_state(
    pool: &PgPool,
    n: usize,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    pool.execute(
        "TRUNCATE fleets, samples, fleet_leases, replicas, job_runs RESTART IDENTITY CASCADE",
    )
    .await?;
    sqlx::query(
        "INSERT INTO fleets (name, gpu_rps, min_gpus, max_gpus)
         SELECT 'fleet-' || g, 1.0, 1, 1000 FROM generate_series(1, $1) g",
    )
    .bind(n as i64)
    .execute(pool)
    .await?;
    // 35 minutes of 1-minute samples per fleet, levels differing between fleets.
    sqlx::query(
        "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests)
         SELECT f.id, $1 - make_interval(mins => m), 60, 60 * (5 + (f.id % 17) + (m % 5))
         FROM fleets f, generate_series(1, 35) m",
    )
    .bind(now)
    .execute(pool)
    .await?;
    // A calibrated forecast made this hour.
    sqlx::query(
        "INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps, upper_rps,
                                quantile, error_floor_rps, errors_used)
         SELECT f.id, $1 - interval '5 minutes', $1 - interval '10 minutes', 300, 'live', 'bench',
                array_fill((8 + f.id % 17)::float8, ARRAY[24]), array_fill((12 + f.id % 17)::float8, ARRAY[24]),
                0.98, 1.0, 60
         FROM fleets f",
    )
    .bind(now)
    .execute(pool)
    .await?;
    // A delivered boot order and its ready instances.
    sqlx::query(
        "INSERT INTO decisions (fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting, reason)
         SELECT id, $1 - interval '1 hour', 10, 0, 0, 'bench' FROM fleets",
    )
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO orders (idempotency_key, fleet_id, decision_id, kind, count, state, attempts,
                             next_attempt_at, expires_at, created_at, delivered_at)
         SELECT 'bench-' || d.fleet_id, d.fleet_id, d.id, 'boot', 10, 'delivered', 1, d.decided_at,
                d.decided_at, d.decided_at, d.decided_at FROM decisions d",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO instances (instance_id, fleet_id, order_key, ordered_at, state, ready_at, boot_secs, updated_at)
         SELECT 'bench-' || o.fleet_id || '-' || k, o.fleet_id, o.idempotency_key, o.created_at, 'ready',
                o.created_at + interval '8 minutes', 420 + k, o.created_at
         FROM orders o, generate_series(1, 10) k",
    )
    .execute(pool)
    .await?;
    pool.execute("ANALYZE").await?;
    Ok(())
}

/// Gives every fleet (or only `only`) a week of 5-minute history before its 35 recent minutes (a
/// daily cycle, levels differing between fleets) and removes forecasts and leases: every fleet's
/// next refit is its first.
pub async fn week_of_history(
    pool: &PgPool,
    now: DateTime<Utc>,
    only: Option<i64>,
) -> Result<(), sqlx::Error> {
    days_of_history(pool, now, 7, only).await
}

/// [`week_of_history`] with `days` of history instead of a week.
pub async fn days_of_history(
    pool: &PgPool,
    now: DateTime<Utc>,
    days: i64,
    only: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests)
         SELECT f.id, $1 - make_interval(mins => 5 * k), 300,
                300 * (10 + 8 * sin(2 * pi() * k / 288.0) + (f.id % 7) + (k * 7919 % 13) / 6.0)
         FROM fleets f, generate_series(36 / 5 + 1, $3::int * 288) k
         WHERE $2::bigint IS NULL OR f.id = $2
         ON CONFLICT DO NOTHING",
    )
    .bind(now)
    .bind(only)
    .bind(days as i32)
    .execute(pool)
    .await?;
    pool.execute("TRUNCATE forecasts, calibrations, fleet_leases, replicas")
        .await?;
    Ok(())
}

/// Gives every fleet a week of live forecasts before `now`, one every 15 minutes as the
/// service's refits make them (each a copy of the fleet's backtest fit at the hour before it,
/// its origin moved to its own quarter hour), so that a benchmark's recalibration scores what a
/// fleet a week old scores. The fleets must have been bootstrapped (their backtests stored).
pub async fn week_of_live_forecasts(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps,
                                quantile, error_floor_rps, errors_used, replica)
         SELECT b.fleet_id, b.origin + make_interval(mins => 15 * q), b.origin + make_interval(mins => 15 * q),
                b.step_secs, 'live', b.model, b.p50_rps, b.quantile, b.error_floor_rps, 0, 'bench'
         FROM forecasts b, generate_series(0, 3) q
         WHERE b.kind = 'backtest' AND b.origin + make_interval(mins => 15 * q) < $1
           AND b.origin + make_interval(mins => 15 * q) >= $1 - interval '7 days'",
    )
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    pool.execute("ANALYZE forecasts").await?;
    Ok(n)
}

/// Gives every other fleet a copy of `template`'s live forecasts (a refit's calibrated
/// distribution and SLO levels), so that a benchmark's ticks read and rebuild what a refitted
/// fleet's do without refitting every fleet.
pub async fn copy_live_forecasts(pool: &PgPool, template: i64) -> Result<u64, sqlx::Error> {
    let n = sqlx::query(
        "WITH copied AS (
           INSERT INTO calibrations (fleet_id, made_at, calibration)
           SELECT f.id, c.made_at, c.calibration FROM fleets f, calibrations c
           WHERE f.id <> $1 AND c.fleet_id = $1
           RETURNING id, fleet_id, made_at)
         INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps, upper_rps,
                                quantile, error_floor_rps, errors_used, recent_error, replica,
                                calibration_id, levels, predicted_timed_out_share, calibrated_at,
                                sized_for)
         SELECT f.id, t.made_at, t.origin, t.step_secs, t.kind, t.model, t.p50_rps, t.upper_rps,
                t.quantile, t.error_floor_rps, t.errors_used, t.recent_error, t.replica,
                copied.id, t.levels, t.predicted_timed_out_share, t.calibrated_at, t.sized_for
         FROM fleets f
         JOIN forecasts t ON t.fleet_id = $1 AND t.kind = 'live'
         LEFT JOIN calibrations c ON c.id = t.calibration_id
         LEFT JOIN copied ON copied.fleet_id = f.id AND copied.made_at = c.made_at
         WHERE f.id <> $1",
    )
    .bind(template)
    .execute(pool)
    .await?
    .rows_affected();
    pool.execute("ANALYZE forecasts").await?;
    Ok(n)
}

/// Gives every fleet a week of the dashboard's hourly tally before `now` (requests, timed-out
/// requests, GPU-seconds and cost per hour), as a fleet running for a week has.
pub async fn week_of_tally(pool: &PgPool, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO fleet_hours (fleet_id, hour_start, requests, timed_out, gpu_seconds, cost_usd)
         SELECT f.id, date_trunc('hour', $1) - make_interval(hours => h), 3600 * (5 + f.id % 17),
                (h * f.id) % 3, 36000, 30
         FROM fleets f, generate_series(1, 168) h
         ON CONFLICT DO NOTHING",
    )
    .bind(now)
    .execute(pool)
    .await?;
    pool.execute("ANALYZE fleet_hours").await?;
    Ok(())
}
