//! Request-rate samples: validation, storage, bulk import, reading back, downsampling.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use prewarm_core::Trace;
use sqlx::PgPool;

use crate::{ItemError, StoreError};

/// Most samples in one batch.
pub const MAX_BATCH: usize = 10_000;
/// How far in the future a sample's bucket may start (clock skew allowance).
pub const MAX_FUTURE_SECS: i64 = 300;

/// One bucket of a fleet's request rate.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Start of the bucket (RFC 3339).
    pub timestamp: DateTime<Utc>,
    /// Requests that arrived in the bucket.
    pub requests: f64,
    /// Bucket width in seconds (default 60).
    #[serde(default = "default_bucket")]
    pub bucket_secs: i32,
    #[serde(default)]
    /// Input tokens, if reported.
    pub tokens_in: Option<f64>,
    #[serde(default)]
    /// Output tokens, if reported.
    pub tokens_out: Option<f64>,
}

fn default_bucket() -> i32 {
    60
}

/// The earliest bucket start accepted: timestamps before the Unix epoch are typing mistakes
/// (a year 1 from a zeroed date), not history.
pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// How many times what a fleet's `max_gpus` serve a sample's rate may be. Above it the value is
/// refused: no fleet could serve it, and planning on it would only scale the fleet to its limit.
pub const PLAUSIBLE_FACTOR: f64 = 1_000.0;

/// The highest request rate a fleet's samples may show: [`PLAUSIBLE_FACTOR`] times what
/// `max_gpus` GPUs serve.
pub fn max_plausible_rps(fleet: &crate::Fleet) -> f64 {
    PLAUSIBLE_FACTOR * fleet.gpu_rps * fleet.max_gpus.max(1) as f64
}

/// The rules every sample meets, pushed or imported: what is wrong with one, if anything.
/// `requests` and the token counts must be finite and not negative, the bucket 1 s to 1 day
/// wide, its start between [`EARLIEST`] and [`MAX_FUTURE_SECS`] after `now`, and its rate at most
/// `max_rps`.
fn check_sample(
    timestamp: DateTime<Utc>,
    bucket_secs: i64,
    values: [(&'static str, Option<f64>); 3],
    now: DateTime<Utc>,
    max_rps: f64,
) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if timestamp > now + Duration::seconds(MAX_FUTURE_SECS) {
        problems.push((
            "timestamp",
            format!(
                "{} is more than {MAX_FUTURE_SECS} s in the future (server time {}); check the sender's clock",
                timestamp.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
    } else if timestamp < EARLIEST {
        problems.push((
            "timestamp",
            format!(
                "{} is before 1970; check the sender's dates",
                timestamp.to_rfc3339()
            ),
        ));
    }
    if !(1..=86_400).contains(&bucket_secs) {
        problems.push((
            "bucket_secs",
            format!("{bucket_secs} s is not between 1 s and 1 day"),
        ));
    }
    for (field, value) in values {
        let Some(v) = value else { continue };
        if !v.is_finite() || v < 0.0 {
            problems.push((
                field,
                format!("{} is not a finite number of zero or more", quoted(v)),
            ));
        } else if field == "requests" && (1..=86_400).contains(&bucket_secs) {
            let rps = v / bucket_secs as f64;
            if rps > max_rps {
                problems.push((
                    field,
                    format!(
                        "{} requests in {bucket_secs} s is {rps:.3e} requests/s, over {PLAUSIBLE_FACTOR} times what this fleet's max_gpus serve ({max_rps:.3e} requests/s at most); check the units (requests per bucket, not per second or per day)",
                        quoted(v)
                    ),
                ));
            }
        }
    }
    problems
}

/// Checks a whole batch for a fleet whose samples may show at most `max_rps`
/// ([`max_plausible_rps`]); every bad item is named.
pub fn validate(
    samples: &[Sample],
    now: DateTime<Utc>,
    max_rps: f64,
) -> Result<(), Vec<ItemError>> {
    let mut errors = Vec::new();
    if samples.len() > MAX_BATCH {
        errors.push(ItemError {
            fleet: None,
            index: MAX_BATCH,
            field: "samples",
            message: format!(
                "{} samples in one batch; send at most {MAX_BATCH} per request",
                samples.len()
            ),
        });
    }
    for (i, s) in samples.iter().enumerate().take(MAX_BATCH) {
        let values = [
            ("requests", Some(s.requests)),
            ("tokens_in", s.tokens_in),
            ("tokens_out", s.tokens_out),
        ];
        for (field, message) in
            check_sample(s.timestamp, s.bucket_secs as i64, values, now, max_rps)
        {
            errors.push(ItemError {
                fleet: None,
                index: i,
                field,
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The most time between two rows of an imported trace.
pub const MAX_ROW_GAP_SECS: i64 = 86_400;

/// A value quoted in an error: plain when short, in scientific notation when it would print with
/// more than 15 digits.
fn quoted(v: f64) -> String {
    if v.is_finite() && v.abs() < 1e15 {
        v.to_string()
    } else {
        format!("{v:e}")
    }
}

/// Checks a trace about to be imported with the push API's rules ([`validate`]); items name
/// the file's line (`Trace::locate`).
pub fn validate_trace(
    trace: &Trace,
    now: DateTime<Utc>,
    max_rps: f64,
) -> Result<(), Vec<ItemError>> {
    let mut errors = Vec::new();
    if !(1..=86_400).contains(&trace.step_secs) {
        errors.push(ItemError {
            fleet: None,
            index: 1,
            field: "interval",
            message: format!(
                "the trace's rows are {} s apart ({} and the next row); a sample is 1 s to 1 day wide, so resample it or fill the gap",
                trace.step_secs,
                trace.locate(0)
            ),
        });
        return Err(errors);
    }
    // Rows more than a day apart leave a hole no forecast can bridge (a file joined from two
    // periods, say): refuse them, as the push API would never have sent them.
    let mut previous: Option<usize> = None;
    for i in (0..trace.len()).filter(|&i| !trace.requests[i].is_nan()) {
        if let Some(p) = previous {
            let apart = (i - p) as i64 * trace.step_secs;
            if apart > MAX_ROW_GAP_SECS {
                errors.push(ItemError {
                    fleet: None,
                    index: i,
                    field: "timestamp",
                    message: format!(
                        "{} comes {} after the row before it ({}); rows more than {} apart are refused: import each period on its own, or fill the gap",
                        trace.locate(i),
                        prewarm_core::format_duration(apart),
                        trace.locate(p),
                        prewarm_core::format_duration(MAX_ROW_GAP_SECS)
                    ),
                });
                if errors.len() >= 100 {
                    return Err(errors);
                }
            }
        }
        previous = Some(i);
    }
    let tokens_in = trace.column("tokens_in");
    let tokens_out = trace.column("tokens_out");
    let present = |v: f64| (!v.is_nan()).then_some(v);
    for i in 0..trace.len() {
        let requests = trace.requests[i];
        if requests.is_nan() {
            continue;
        }
        let values = [
            ("requests", Some(requests)),
            ("tokens_in", tokens_in.and_then(|c| present(c[i]))),
            ("tokens_out", tokens_out.and_then(|c| present(c[i]))),
        ];
        for (field, message) in
            check_sample(trace.timestamp(i), trace.step_secs, values, now, max_rps)
        {
            errors.push(ItemError {
                fleet: None,
                index: i,
                field,
                message: format!("{}: {message}", trace.locate(i)),
            });
            if errors.len() >= 100 {
                return Err(errors);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Keeps the last of several samples for the same bucket: a batch that repeats a bucket stores
/// what it said last, as separate batches would.
fn last_per_bucket(samples: &[Sample]) -> Vec<&Sample> {
    let mut index: HashMap<(i64, i32), usize> = HashMap::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        index.insert((s.timestamp.timestamp_micros(), s.bucket_secs), i);
    }
    let mut keep: Vec<usize> = index.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &samples[i]).collect()
}

/// Upserts samples for several fleets in one transaction: all are stored, or none.
pub async fn store_samples(pool: &PgPool, batches: &[(i64, &[Sample])]) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut stored = 0;
    for (fleet_id, samples) in batches {
        let unique = last_per_bucket(samples);
        let starts: Vec<DateTime<Utc>> = unique.iter().map(|s| s.timestamp).collect();
        let widths: Vec<i32> = unique.iter().map(|s| s.bucket_secs).collect();
        let requests: Vec<f64> = unique.iter().map(|s| s.requests).collect();
        let tokens_in: Vec<Option<f64>> = unique.iter().map(|s| s.tokens_in).collect();
        let tokens_out: Vec<Option<f64>> = unique.iter().map(|s| s.tokens_out).collect();
        let result = sqlx::query(
            "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests, tokens_in, tokens_out)
             SELECT $1, * FROM UNNEST($2::timestamptz[], $3::int[], $4::float8[], $5::float8[], $6::float8[])
             ON CONFLICT (fleet_id, bucket_start, bucket_secs) DO UPDATE
             SET requests = EXCLUDED.requests, tokens_in = EXCLUDED.tokens_in,
                 tokens_out = EXCLUDED.tokens_out, received_at = now()",
        )
        .bind(fleet_id)
        .bind(&starts)
        .bind(&widths)
        .bind(&requests)
        .bind(&tokens_in)
        .bind(&tokens_out)
        .execute(&mut *tx)
        .await?;
        stored += result.rows_affected();
    }
    tx.commit().await?;
    Ok(stored)
}

/// A fleet's samples of one bucket width in `[from, to)`, oldest first: (bucket start, requests).
pub async fn history(
    pool: &PgPool,
    fleet_id: i64,
    bucket_secs: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, f64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT bucket_start, requests FROM samples
         WHERE fleet_id = $1 AND bucket_start >= $2 AND bucket_start < $3 AND bucket_secs = $4
         ORDER BY bucket_start",
    )
    .bind(fleet_id)
    .bind(from)
    .bind(to)
    .bind(bucket_secs)
    .fetch_all(pool)
    .await?)
}

/// Loads a trace into a fleet's history with `COPY`, in one transaction; importing the same file
/// again changes nothing (buckets are replaced, not added). Missing buckets are skipped. The
/// trace is checked whole first with the push API's rules ([`validate_trace`]): a bad row rejects
/// it, and nothing is written.
pub async fn import_trace(
    pool: &PgPool,
    fleet: &crate::Fleet,
    trace: &Trace,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    validate_trace(trace, now, max_plausible_rps(fleet)).map_err(StoreError::Invalid)?;
    let fleet_id = fleet.id;
    let bucket_secs = trace.step_secs as i32;
    let tokens_in = trace.column("tokens_in");
    let tokens_out = trace.column("tokens_out");
    let mut text = String::with_capacity(trace.len() * 64);
    let mut rows = 0u64;
    let (mut first, mut last) = (None, None);
    let optional = |v: Option<&[f64]>, i: usize| {
        v.map(|c| c[i])
            .filter(|x| !x.is_nan())
            .map(|x| x.to_string())
            .unwrap_or_default()
    };
    for i in 0..trace.len() {
        let requests = trace.requests[i];
        if requests.is_nan() {
            continue;
        }
        let t = trace.timestamp(i);
        first.get_or_insert(t);
        last = Some(t);
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "{fleet_id},{},{bucket_secs},{requests},{},{}",
            t.format("%Y-%m-%dT%H:%M:%S%.fZ"),
            optional(tokens_in, i),
            optional(tokens_out, i)
        );
        rows += 1;
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(0);
    };
    let data = text.into_bytes();
    let mut tx = pool.begin().await?;
    // Fast path: nothing stored in the range yet, so COPY straight into the table. Should a
    // writer fill part of the range meanwhile, the key check fails and the upsert path runs.
    let occupied: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM samples WHERE fleet_id = $1 AND bucket_start >= $2
         AND bucket_start <= $3 AND bucket_secs = $4)",
    )
    .bind(fleet_id)
    .bind(first)
    .bind(last)
    .bind(bucket_secs)
    .fetch_one(&mut *tx)
    .await?;
    if !occupied {
        sqlx::query("SAVEPOINT direct_copy")
            .execute(&mut *tx)
            .await?;
        let copied = async {
            let mut copy = tx
                .copy_in_raw(
                    "COPY samples (fleet_id, bucket_start, bucket_secs, requests, tokens_in, tokens_out)
                     FROM STDIN WITH (FORMAT csv)",
                )
                .await?;
            copy.send(data.as_slice()).await?;
            copy.finish().await
        }
        .await;
        match copied {
            Ok(_) => {
                tx.commit().await?;
                return Ok(rows);
            }
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
                sqlx::query("ROLLBACK TO SAVEPOINT direct_copy")
                    .execute(&mut *tx)
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    sqlx::query(
        "CREATE TEMP TABLE import_samples (fleet_id bigint, bucket_start timestamptz, bucket_secs int,
         requests float8, tokens_in float8, tokens_out float8) ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    let mut copy = tx
        .copy_in_raw("COPY import_samples FROM STDIN WITH (FORMAT csv)")
        .await?;
    copy.send(data.as_slice()).await?;
    copy.finish().await?;
    sqlx::query(
        "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests, tokens_in, tokens_out)
         SELECT fleet_id, bucket_start, bucket_secs, requests, tokens_in, tokens_out FROM import_samples
         ON CONFLICT (fleet_id, bucket_start, bucket_secs) DO UPDATE
         SET requests = EXCLUDED.requests, tokens_in = EXCLUDED.tokens_in,
             tokens_out = EXCLUDED.tokens_out, received_at = now()",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Replaces raw samples (buckets shorter than an hour) that start before `older_than` with hourly
/// sums, in one transaction. Returns (hourly rows written, raw rows removed).
pub async fn downsample(
    pool: &PgPool,
    older_than: DateTime<Utc>,
) -> Result<(u64, u64), StoreError> {
    downsample_fleet(pool, None, older_than).await
}

/// [`downsample`] for one fleet (`Some`) or all (`None`).
pub async fn downsample_fleet(
    pool: &PgPool,
    fleet: Option<i64>,
    older_than: DateTime<Utc>,
) -> Result<(u64, u64), StoreError> {
    let mut tx = pool.begin().await?;
    let written = sqlx::query(
        "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests, tokens_in, tokens_out)
         SELECT fleet_id, date_trunc('hour', bucket_start), 3600, sum(requests), sum(tokens_in), sum(tokens_out)
         FROM samples WHERE bucket_secs < 3600 AND bucket_start < date_trunc('hour', $1::timestamptz)
           AND ($2::bigint IS NULL OR fleet_id = $2)
         GROUP BY fleet_id, date_trunc('hour', bucket_start)
         ON CONFLICT (fleet_id, bucket_start, bucket_secs) DO UPDATE
         SET requests = samples.requests + EXCLUDED.requests,
             tokens_in = samples.tokens_in + EXCLUDED.tokens_in,
             tokens_out = samples.tokens_out + EXCLUDED.tokens_out",
    )
    .bind(older_than)
    .bind(fleet)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let removed = sqlx::query(
        "DELETE FROM samples WHERE bucket_secs < 3600 AND bucket_start < date_trunc('hour', $1::timestamptz)
           AND ($2::bigint IS NULL OR fleet_id = $2)",
    )
    .bind(older_than)
    .bind(fleet)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok((written, removed))
}

/// One raw sample bucket as the planner reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawBucket {
    /// When the bucket starts.
    pub start: DateTime<Utc>,
    /// Its width, seconds.
    pub secs: i32,
    /// Requests in it.
    pub requests: f64,
    /// Their prompt tokens (NaN when not sent).
    pub tokens_in: f64,
    /// Their output tokens (NaN when not sent).
    pub tokens_out: f64,
    /// Their work under the fleet's capacity ([`prewarm_planner::Capacity::work`]): the requests
    /// for a request-counted fleet, GPU-seconds for a token fleet (NaN when the bucket has no
    /// token counts: the bucket is then missing).
    pub work: f64,
}

type RawRow = (DateTime<Utc>, i32, f64, Option<f64>, Option<f64>);

fn buckets(rows: Vec<RawRow>, capacity: &prewarm_planner::Capacity) -> Vec<RawBucket> {
    rows.into_iter()
        .map(|(start, secs, requests, tokens_in, tokens_out)| {
            let load = prewarm_planner::Load {
                requests,
                tokens_in: tokens_in.unwrap_or(f64::NAN),
                tokens_out: tokens_out.unwrap_or(f64::NAN),
            };
            RawBucket {
                start,
                secs,
                requests,
                tokens_in: load.tokens_in,
                tokens_out: load.tokens_out,
                work: capacity.work(&load),
            }
        })
        .collect()
}

/// A fleet's raw buckets (shorter than an hour) starting in `[from, to)`, oldest first, with
/// their work under `capacity`.
pub async fn raw_buckets(
    pool: &PgPool,
    fleet_id: i64,
    capacity: &prewarm_planner::Capacity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<RawBucket>, sqlx::Error> {
    Ok(raw_buckets_of(pool, &[(fleet_id, *capacity)], from, to)
        .await?
        .remove(&fleet_id)
        .unwrap_or_default())
}

/// The raw buckets (shorter than an hour) of every fleet in `fleets` starting in `[from, to)`,
/// oldest first, each with its work under the fleet's capacity: one query for many fleets (a
/// tick reads them at once).
pub async fn raw_buckets_of(
    pool: &PgPool,
    fleets: &[(i64, prewarm_planner::Capacity)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<std::collections::HashMap<i64, Vec<RawBucket>>, sqlx::Error> {
    let ids: Vec<i64> = fleets.iter().map(|(id, _)| *id).collect();
    // The fleet, then a raw row's columns.
    type Row = (i64, DateTime<Utc>, i32, f64, Option<f64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT fleet_id, bucket_start, bucket_secs, requests, tokens_in, tokens_out FROM samples
         WHERE fleet_id = ANY($1) AND bucket_start >= $2 AND bucket_start < $3
           AND bucket_secs < 3600
         ORDER BY fleet_id, bucket_start",
    )
    .bind(&ids)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let mut by_fleet: std::collections::HashMap<i64, Vec<RawRow>> = Default::default();
    for (id, start, secs, requests, tokens_in, tokens_out) in rows {
        by_fleet
            .entry(id)
            .or_default()
            .push((start, secs, requests, tokens_in, tokens_out));
    }
    Ok(fleets
        .iter()
        .map(|(id, capacity)| {
            (
                *id,
                buckets(by_fleet.remove(id).unwrap_or_default(), capacity),
            )
        })
        .collect())
}

/// A fleet's raw buckets (shorter than an hour) that overlap `[from, to)`, oldest first, with
/// their work under `capacity`. Such a bucket starts after `from` less an hour: said in the query
/// too, so that its index scan starts there rather than at the fleet's oldest sample.
pub async fn raw_buckets_overlapping(
    pool: &PgPool,
    fleet_id: i64,
    capacity: &prewarm_planner::Capacity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<RawBucket>, sqlx::Error> {
    let rows: Vec<RawRow> = sqlx::query_as(
        "SELECT bucket_start, bucket_secs, requests, tokens_in, tokens_out FROM samples
         WHERE fleet_id = $1 AND bucket_start > $2 - make_interval(secs => bucket_secs)
           AND bucket_start > $2 - interval '1 hour'
           AND bucket_start < $3 AND bucket_secs < 3600
         ORDER BY bucket_start",
    )
    .bind(fleet_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(buckets(rows, capacity))
}

/// Start of a fleet's newest bucket, if it has any.
pub async fn newest(pool: &PgPool, fleet_id: i64) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(bucket_start) FROM samples WHERE fleet_id = $1")
        .bind(fleet_id)
        .fetch_one(pool)
        .await
}

/// Start of a fleet's newest bucket of exactly `bucket_secs`, if it has any.
pub async fn newest_of_width(
    pool: &PgPool,
    fleet_id: i64,
    bucket_secs: i64,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(bucket_start) FROM samples WHERE fleet_id = $1 AND bucket_secs = $2",
    )
    .bind(fleet_id)
    .bind(bucket_secs as i32)
    .fetch_one(pool)
    .await
}
