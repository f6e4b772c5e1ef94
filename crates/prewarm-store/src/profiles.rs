//! GPU profiles in the database: what the service's token fleets plan with.

use prewarm_planner::GpuProfile;
use sqlx::PgPool;

use crate::StoreError;

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    prefill_tps: f64,
    decode_tps: f64,
    price_usd_per_gpu_hour: Option<f64>,
    gpu_type: String,
    model: String,
    source: String,
}

impl From<Row> for GpuProfile {
    fn from(r: Row) -> Self {
        GpuProfile {
            name: r.name,
            prefill_tps: r.prefill_tps,
            decode_tps: r.decode_tps,
            price_usd_per_gpu_hour: r.price_usd_per_gpu_hour,
            gpu_type: r.gpu_type,
            model: r.model,
            source: r.source,
        }
    }
}

const COLUMNS: &str =
    "name, prefill_tps, decode_tps, price_usd_per_gpu_hour, gpu_type, model, source";

/// Every stored profile, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<GpuProfile>, StoreError> {
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM gpu_profiles ORDER BY name"))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(GpuProfile::from).collect())
}

/// The profile of that name, if stored.
pub async fn find(pool: &PgPool, name: &str) -> Result<Option<GpuProfile>, StoreError> {
    if name.contains('\0') {
        return Ok(None);
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gpu_profiles WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(GpuProfile::from))
}

/// Stores profiles (checked first, all or none), replacing those of the same names, audited
/// with the values before and after. The fleets that name a replaced profile plan with its new
/// rates from their next tick. Returns how many were new.
pub async fn upsert(
    pool: &PgPool,
    profiles: &[GpuProfile],
    actor: &crate::Actor,
) -> Result<usize, StoreError> {
    for p in profiles {
        p.check().map_err(StoreError::InvalidFleet)?;
    }
    let mut tx = pool.begin().await?;
    let mut created = 0;
    for p in profiles {
        let before: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM gpu_profiles WHERE name = $1 FOR UPDATE"
        ))
        .bind(&p.name)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO gpu_profiles (name, prefill_tps, decode_tps, price_usd_per_gpu_hour, gpu_type, model, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET prefill_tps = EXCLUDED.prefill_tps,
                 decode_tps = EXCLUDED.decode_tps,
                 price_usd_per_gpu_hour = EXCLUDED.price_usd_per_gpu_hour,
                 gpu_type = EXCLUDED.gpu_type, model = EXCLUDED.model, source = EXCLUDED.source,
                 updated_at = now()",
        )
        .bind(&p.name)
        .bind(p.prefill_tps)
        .bind(p.decode_tps)
        .bind(p.price_usd_per_gpu_hour)
        .bind(&p.gpu_type)
        .bind(&p.model)
        .bind(&p.source)
        .execute(&mut *tx)
        .await?;
        created += usize::from(before.is_none());
        crate::audit::record(
            &mut tx,
            actor,
            None,
            "profile.store",
            before.map(|b| serde_json::json!(GpuProfile::from(b))),
            Some(serde_json::json!(p)),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(created)
}

/// Deletes a profile no fleet uses (a fleet that names it keeps it: the error names them).
/// Returns whether there was one.
pub async fn delete(pool: &PgPool, name: &str, actor: &crate::Actor) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let users: Vec<String> =
        sqlx::query_scalar("SELECT name FROM fleets WHERE gpu_profile = $1 ORDER BY name")
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
    if !users.is_empty() {
        return Err(StoreError::Conflict(format!(
            "profile `{name}` is used by fleet(s) {}: give them another (`prewarm fleet update NAME --gpu-profile OTHER`) first",
            users.join(", ")
        )));
    }
    let before: Option<Row> = sqlx::query_as(&format!(
        "DELETE FROM gpu_profiles WHERE name = $1 RETURNING {COLUMNS}"
    ))
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else {
        return Ok(false);
    };
    crate::audit::record(
        &mut tx,
        actor,
        None,
        "profile.delete",
        Some(serde_json::json!(GpuProfile::from(before))),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
