//! The push API.
//!
//! - `POST /v1/fleets/{fleet}/samples` with `{"samples": [{"timestamp", "requests", ...}]}`
//! - `POST /v1/samples` with `{"fleets": {"name": [samples...], ...}}` for several fleets at once
//!
//! Both need `Authorization: Bearer <token>`; a token made for one fleet writes only that fleet.
//! A batch is validated whole: any bad item rejects it with 422 and a body naming every bad item,
//! and nothing is stored. A good batch is stored in one transaction. When the database is down
//! the answer is 503 with `Retry-After`: retrying the same batch is safe, since a re-sent bucket
//! replaces itself.

use std::collections::BTreeMap;

use axum::{
    extract::{rejection::JsonRejection, DefaultBodyLimit, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;

use prewarm_store::{fleets, samples, tokens, Grant, ItemError, Sample, Scope, StoreError};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The push API's routes, to be served or nested into a larger router.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/fleets/{fleet}/samples", post(push_one))
        .route("/v1/samples", post(push_many))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(pool)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OneFleet {
    samples: Vec<Sample>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManyFleets {
    fleets: BTreeMap<String, Vec<Sample>>,
}

/// An API error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    message: String,
    items: Vec<ItemError>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            items: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if !self.items.is_empty() {
            body["items"] = json!(self.items);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(items) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: StoreError::Invalid(items.clone()).to_string(),
                items,
            },
            StoreError::UnknownFleet(name) => {
                Self::new(StatusCode::NOT_FOUND, format!("no fleet named `{name}`"))
            }
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; nothing was stored, retry the same batch",
            ),
            StoreError::Database(d) if prewarm_store::refused_value(&d).is_some() => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the database refused a value in the batch: {}; nothing was stored",
                    prewarm_store::refused_value(&d).unwrap_or_default()
                ),
            ),
            // Internal details stay in the server's log, not in the answer; every 500 is logged.
            e @ (StoreError::InvalidFleet(_)
            | StoreError::Conflict(_)
            | StoreError::InvalidToken(_)
            | StoreError::Database(_)) => {
                tracing::error!(error = %e, "push API: internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    let status = match rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the body is larger than {MAX_BODY_BYTES} bytes; send at most {} samples per request",
            samples::MAX_BATCH
        ),
        _ => format!("the body is not a valid batch: {}", rejection.body_text()),
    };
    ApiError::new(status, message)
}

/// The grant of the request's bearer token, which must hold `scope`.
pub async fn authorise(
    pool: &PgPool,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Grant, ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>`",
        )
    })?;
    let grant = tokens::authenticate(pool, token)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))?;
    if !grant.allows(scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token's scopes ({}) do not include `{scope}`",
                grant
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(grant)
}

async fn resolve(pool: &PgPool, grant: &Grant, name: &str) -> Result<fleets::Fleet, ApiError> {
    let fleet = fleets::fleet_by_name(pool, name).await?;
    if !grant.covers(fleet.id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token may not write fleet `{name}`"),
        ));
    }
    Ok(fleet)
}

async fn push_one(
    State(pool): State<PgPool>,
    Path(fleet): Path<String>,
    headers: HeaderMap,
    body: Result<Json<OneFleet>, JsonRejection>,
) -> Result<Response, ApiError> {
    let grant = authorise(&pool, &headers, Scope::Push).await?;
    let Json(batch) = body.map_err(json_error)?;
    let fleet = resolve(&pool, &grant, &fleet).await?;
    samples::validate(
        &batch.samples,
        Utc::now(),
        samples::max_plausible_rps(&fleet),
    )
    .map_err(StoreError::Invalid)?;
    let stored = samples::store_samples(&pool, &[(fleet.id, &batch.samples)]).await?;
    Ok((StatusCode::OK, Json(json!({ "stored": stored }))).into_response())
}

async fn push_many(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: Result<Json<ManyFleets>, JsonRejection>,
) -> Result<Response, ApiError> {
    let grant = authorise(&pool, &headers, Scope::Push).await?;
    let Json(batch) = body.map_err(json_error)?;
    let total: usize = batch.fleets.values().map(Vec::len).sum();
    if total > samples::MAX_BATCH {
        return Err(StoreError::Invalid(vec![ItemError {
            fleet: None,
            index: samples::MAX_BATCH,
            field: "samples",
            message: format!(
                "{total} samples in one batch; send at most {} per request",
                samples::MAX_BATCH
            ),
        }])
        .into());
    }
    let now = Utc::now();
    let mut resolved = Vec::with_capacity(batch.fleets.len());
    let mut errors = Vec::new();
    for (name, samples) in &batch.fleets {
        let fleet = resolve(&pool, &grant, name).await?;
        if let Err(items) = samples::validate(samples, now, samples::max_plausible_rps(&fleet)) {
            errors.extend(items.into_iter().map(|mut i| {
                i.fleet = Some(name.clone());
                i
            }));
        }
        resolved.push((fleet.id, samples.as_slice()));
    }
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors).into());
    }
    let stored = samples::store_samples(&pool, &resolved).await?;
    Ok((StatusCode::OK, Json(json!({ "stored": stored }))).into_response())
}

/// The bearer token of a request's `Authorization` header. The scheme is case-insensitive
/// (`Bearer`, `bearer`); a token is 1 to 256 characters.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 256)
        .then_some(token)
}
