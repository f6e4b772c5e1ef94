//! API tokens: bearer secrets stored as SHA-256 hashes, each for one fleet or every fleet, each
//! with scopes that say what it may do, revocable, and every change recorded in the audit log.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{audit, Actor, StoreError};

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Push samples.
    Push,
    /// Read forecasts, plans, decisions, boot statistics, events and the audit log.
    Read,
    /// Pause, resume, pin, events, planner settings, refit.
    Operate,
    /// Fleets and tokens (and everything else).
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 4] = [Scope::Push, Scope::Read, Scope::Operate, Scope::Admin];

    /// The scope's name as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Push => "push",
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// Parses a comma-separated list (`push,read`).
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = part.parse()?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("give at least one scope: push, read, operate or admin".into());
        }
        scopes.sort();
        Ok(scopes)
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown scope `{}`: scopes are push, read, operate and admin",
                    prewarm_core::shorten(s, 40)
                )
            })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a presented token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The API token used, if any.
    pub token_id: i64,
    /// Words for people reading the calendar.
    pub label: String,
    /// The one fleet it is for, or `None` for every fleet.
    pub fleet_id: Option<i64>,
    /// What the token may do.
    pub scopes: Vec<Scope>,
}

impl Grant {
    /// Whether the token holds `scope` (an admin token holds every scope).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Whether the token is for this fleet (or for every fleet).
    pub fn covers(&self, fleet_id: i64) -> bool {
        self.fleet_id.is_none_or(|f| f == fleet_id)
    }

    /// Who the audit log names for changes made with this token.
    pub fn actor(&self) -> Actor {
        Actor {
            token_id: Some(self.token_id),
            name: if self.label.is_empty() {
                format!("token {}", self.token_id)
            } else {
                format!("token {} ({})", self.token_id, self.label)
            },
        }
    }
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn scope_names(scopes: &[Scope]) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_string()).collect()
}

fn parse_scopes(names: &[String]) -> Vec<Scope> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

/// Creates a bearer token for one fleet (or, with `None`, for every fleet) with `scopes`, and
/// returns its id and the token. Only its SHA-256 hash is stored: the token cannot be shown again.
pub async fn create_token(
    pool: &PgPool,
    fleet: Option<&str>,
    label: &str,
    scopes: &[Scope],
    actor: &Actor,
) -> Result<(i64, String), StoreError> {
    if scopes.is_empty() {
        return Err(StoreError::InvalidToken(
            "give at least one scope: push, read, operate or admin".into(),
        ));
    }
    if label.len() > 200 {
        return Err(StoreError::InvalidToken(
            "a label is at most 200 characters".into(),
        ));
    }
    let fleet = match fleet {
        Some(name) => Some(crate::fleet_by_name(pool, name).await?),
        None => None,
    };
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!("pw_{}", hex::encode(secret));
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (token_sha256, fleet_id, label, scopes) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(hash_token(&token))
    .bind(fleet.as_ref().map(|f| f.id))
    .bind(label)
    .bind(scope_names(scopes))
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        actor,
        fleet.as_ref().map(|f| (f.id, f.name.as_str())),
        "token.create",
        None,
        Some(serde_json::json!({ "token_id": id, "label": label, "scopes": scopes })),
    )
    .await?;
    tx.commit().await?;
    Ok((id, token))
}

/// The grant of a token that exists and is not revoked.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Option<Grant>, StoreError> {
    let row: Option<(i64, String, Option<i64>, Vec<String>)> = sqlx::query_as(
        "SELECT id, label, fleet_id, scopes FROM api_tokens
         WHERE token_sha256 = $1 AND revoked_at IS NULL",
    )
    .bind(hash_token(token))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(token_id, label, fleet_id, scopes)| Grant {
        token_id,
        label,
        fleet_id,
        scopes: parse_scopes(&scopes),
    }))
}

/// A token as listed (never the secret itself).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenInfo {
    /// The row's id.
    pub id: i64,
    /// Words for people reading the calendar.
    pub label: String,
    /// The fleet it is for (none: every fleet).
    pub fleet: Option<String>,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Every token (of one fleet, with `Some`), oldest first.
pub async fn list_tokens(
    pool: &PgPool,
    fleet_id: Option<i64>,
) -> Result<Vec<TokenInfo>, StoreError> {
    type Row = (
        i64,
        String,
        Option<String>,
        Vec<String>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.id, t.label, f.name, t.scopes, t.created_at, t.revoked_at
         FROM api_tokens t LEFT JOIN fleets f ON f.id = t.fleet_id
         WHERE $1::bigint IS NULL OR t.fleet_id = $1 ORDER BY t.id",
    )
    .bind(fleet_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, label, fleet, scopes, created_at, revoked_at)| TokenInfo {
                id,
                label,
                fleet,
                scopes: parse_scopes(&scopes),
                created_at,
                revoked_at,
            },
        )
        .collect())
}

/// Revokes a token at once; `false` when no token has that id (or it was revoked already).
pub async fn revoke_token(pool: &PgPool, id: i64, actor: &Actor) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let revoked: Option<(Option<i64>, String)> = sqlx::query_as(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
         RETURNING fleet_id, label",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((fleet_id, label)) = revoked else {
        return Ok(false);
    };
    let fleet_name: Option<String> = match fleet_id {
        Some(f) => {
            sqlx::query_scalar("SELECT name FROM fleets WHERE id = $1")
                .bind(f)
                .fetch_optional(&mut *tx)
                .await?
        }
        None => None,
    };
    audit::record(
        &mut tx,
        actor,
        fleet_id.zip(fleet_name.as_deref()),
        "token.revoke",
        Some(serde_json::json!({ "token_id": id, "label": label })),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
