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

use crate::{fleets, samples, IngestError, ItemError, Sample};

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
    status: StatusCode,
    message: String,
    items: Vec<ItemError>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
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

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid(items) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("{} bad item(s); nothing was stored", items.len()),
                items,
            },
            IngestError::UnknownFleet(name) => {
                Self::new(StatusCode::NOT_FOUND, format!("no fleet named `{name}`"))
            }
            IngestError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; nothing was stored, retry the same batch",
            ),
            // Internal details stay in the server's log, not in the answer.
            IngestError::InvalidFleet(_) | IngestError::Database(_) => {
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

/// The fleet a bearer token may write (`None` = every fleet).
async fn authorise(pool: &PgPool, headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send `Authorization: Bearer <token>`",
            )
        })?;
    fleets::token_scope(pool, token)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
}

async fn resolve(pool: &PgPool, scope: Option<i64>, name: &str) -> Result<i64, ApiError> {
    let fleet = fleets::fleet_by_name(pool, name).await?;
    match scope {
        Some(allowed) if allowed != fleet.id => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token may not write fleet `{name}`"),
        )),
        _ => Ok(fleet.id),
    }
}

async fn push_one(
    State(pool): State<PgPool>,
    Path(fleet): Path<String>,
    headers: HeaderMap,
    body: Result<Json<OneFleet>, JsonRejection>,
) -> Result<Response, ApiError> {
    let scope = authorise(&pool, &headers).await?;
    let Json(batch) = body.map_err(json_error)?;
    let fleet_id = resolve(&pool, scope, &fleet).await?;
    samples::validate(&batch.samples, Utc::now()).map_err(IngestError::Invalid)?;
    let stored = samples::store_samples(&pool, &[(fleet_id, &batch.samples)]).await?;
    Ok((StatusCode::OK, Json(json!({ "stored": stored }))).into_response())
}

async fn push_many(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: Result<Json<ManyFleets>, JsonRejection>,
) -> Result<Response, ApiError> {
    let scope = authorise(&pool, &headers).await?;
    let Json(batch) = body.map_err(json_error)?;
    let total: usize = batch.fleets.values().map(Vec::len).sum();
    if total > samples::MAX_BATCH {
        return Err(IngestError::Invalid(vec![ItemError {
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
        let id = resolve(&pool, scope, name).await?;
        if let Err(items) = samples::validate(samples, now) {
            errors.extend(items.into_iter().map(|mut i| {
                i.fleet = Some(name.clone());
                i
            }));
        }
        resolved.push((id, samples.as_slice()));
    }
    if !errors.is_empty() {
        return Err(IngestError::Invalid(errors).into());
    }
    let stored = samples::store_samples(&pool, &resolved).await?;
    Ok((StatusCode::OK, Json(json!({ "stored": stored }))).into_response())
}
