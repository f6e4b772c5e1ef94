//! The audit log: every operator change (who, what, when, from what to what), written in the
//! same transaction as the change itself, and readable through the API and the command line.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::StoreError;

/// Who made a change: a token (by id and label) or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The API token used, if any.
    pub token_id: Option<i64>,
    /// Who acted: a token's name, or `cli`.
    pub name: String,
}

impl Actor {
    /// Changes made with the `prewarm` command on the database directly.
    pub fn cli() -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Self {
            token_id: None,
            name: format!("command line ({})", prewarm_core::shorten(&user, 40)),
        }
    }
}

/// Records one change.
pub async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    fleet: Option<(i64, &str)>,
    action: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (token_id, actor, fleet_id, fleet_name, action, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(actor.token_id)
    .bind(&actor.name)
    .bind(fleet.map(|f| f.0))
    .bind(fleet.map(|f| f.1))
    .bind(action)
    .bind(before)
    .bind(after)
    .execute(conn)
    .await?;
    Ok(())
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct AuditEntry {
    /// The row's id.
    pub id: i64,
    /// When it was done.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// The API token used, if any.
    pub token_id: Option<i64>,
    /// The fleet it touched, if any.
    pub fleet: Option<String>,
    /// What was done (`fleet.pause`, `event.add`, ...).
    pub action: String,
    /// The value before.
    pub before: Option<serde_json::Value>,
    /// The value after.
    pub after: Option<serde_json::Value>,
}

/// The latest changes (to one fleet, with `Some`), newest first.
pub async fn list(
    pool: &PgPool,
    fleet_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, at, actor, token_id, fleet_name AS fleet, action, before, after FROM audit_log
         WHERE $1::bigint IS NULL OR fleet_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(fleet_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
