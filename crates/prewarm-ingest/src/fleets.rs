//! Fleets and their API tokens.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::IngestError;

/// What a fleet is made with.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct FleetSpec {
    pub name: String,
    #[serde(default = "default_tz")]
    pub time_zone: String,
    #[serde(default)]
    pub gpu_type: String,
    #[serde(default = "default_gpu_rps")]
    pub gpu_rps: f64,
    #[serde(default = "default_price")]
    pub price_usd_per_gpu_hour: f64,
    #[serde(default = "default_min")]
    pub min_gpus: i32,
    #[serde(default = "default_max")]
    pub max_gpus: i32,
    #[serde(default)]
    pub budget_usd_per_hour: Option<f64>,
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_gpu_rps() -> f64 {
    1.0
}
fn default_price() -> f64 {
    3.0
}
fn default_min() -> i32 {
    1
}
fn default_max() -> i32 {
    100
}

impl FleetSpec {
    /// A fleet with default settings.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            time_zone: default_tz(),
            gpu_type: String::new(),
            gpu_rps: default_gpu_rps(),
            price_usd_per_gpu_hour: default_price(),
            min_gpus: default_min(),
            max_gpus: default_max(),
            budget_usd_per_hour: None,
        }
    }
}

/// A stored fleet.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Fleet {
    pub id: i64,
    pub name: String,
    pub time_zone: String,
    pub gpu_type: String,
    pub gpu_rps: f64,
    pub price_usd_per_gpu_hour: f64,
    pub min_gpus: i32,
    pub max_gpus: i32,
    pub budget_usd_per_hour: Option<f64>,
}

/// Whether a fleet name is one the schema accepts (checked here too, for a clear message).
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Creates a fleet and returns it.
pub async fn create_fleet(pool: &PgPool, spec: &FleetSpec) -> Result<Fleet, IngestError> {
    if !valid_name(&spec.name) {
        return Err(IngestError::InvalidFleet(format!(
            "name `{}` must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
            spec.name
        )));
    }
    if spec.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(IngestError::InvalidFleet(format!(
            "time zone `{}` is not an IANA name such as Europe/Berlin",
            spec.time_zone
        )));
    }
    if !(spec.gpu_rps.is_finite() && spec.gpu_rps > 0.0) {
        return Err(IngestError::InvalidFleet(
            "gpu_rps must be a positive number".into(),
        ));
    }
    if spec.min_gpus < 0 || spec.max_gpus < spec.min_gpus {
        return Err(IngestError::InvalidFleet(
            "min_gpus must be at least 0 and at most max_gpus".into(),
        ));
    }
    let fleet = sqlx::query_as::<_, Fleet>(
        "INSERT INTO fleets (name, time_zone, gpu_type, gpu_rps, price_usd_per_gpu_hour, min_gpus, max_gpus, budget_usd_per_hour)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, name, time_zone, gpu_type, gpu_rps, price_usd_per_gpu_hour, min_gpus, max_gpus, budget_usd_per_hour",
    )
    .bind(&spec.name)
    .bind(&spec.time_zone)
    .bind(&spec.gpu_type)
    .bind(spec.gpu_rps)
    .bind(spec.price_usd_per_gpu_hour)
    .bind(spec.min_gpus)
    .bind(spec.max_gpus)
    .bind(spec.budget_usd_per_hour)
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            IngestError::InvalidFleet(format!("a fleet named `{}` exists already", spec.name))
        }
        _ => e.into(),
    })?;
    Ok(fleet)
}

/// The fleet of that name.
pub async fn fleet_by_name(pool: &PgPool, name: &str) -> Result<Fleet, IngestError> {
    sqlx::query_as::<_, Fleet>(
        "SELECT id, name, time_zone, gpu_type, gpu_rps, price_usd_per_gpu_hour, min_gpus, max_gpus, budget_usd_per_hour
         FROM fleets WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| IngestError::UnknownFleet(name.to_string()))
}

pub(crate) fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a bearer token for one fleet (or, with `None`, for every fleet) and returns it. Only
/// its SHA-256 hash is stored: the token cannot be shown again.
pub async fn create_token(
    pool: &PgPool,
    fleet: Option<&str>,
    label: &str,
) -> Result<String, IngestError> {
    let fleet_id = match fleet {
        Some(name) => Some(fleet_by_name(pool, name).await?.id),
        None => None,
    };
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!("pw_{}", hex::encode(secret));
    sqlx::query("INSERT INTO api_tokens (token_sha256, fleet_id, label) VALUES ($1, $2, $3)")
        .bind(hash_token(&token))
        .bind(fleet_id)
        .bind(label)
        .execute(pool)
        .await?;
    Ok(token)
}

/// What a token may write: `Some(None)` every fleet, `Some(Some(id))` one fleet, `None` nothing.
pub async fn token_scope(pool: &PgPool, token: &str) -> Result<Option<Option<i64>>, IngestError> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT fleet_id FROM api_tokens WHERE token_sha256 = $1")
            .bind(hash_token(token))
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(fleet,)| fleet))
}
