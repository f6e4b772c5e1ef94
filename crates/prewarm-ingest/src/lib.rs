//! Request-rate history of every fleet, in PostgreSQL.
//!
//! This crate owns the schema (`migrations/` at the workspace root, embedded in [`MIGRATOR`]), the
//! fleets and their API tokens, storing samples (validated whole, one transaction per batch,
//! re-sent buckets replaced rather than duplicated), bulk import of trace files with `COPY`, the
//! push API (`POST /v1/fleets/{fleet}/samples`), reading history back, and downsampling old data.

pub mod api;
pub mod audit;
mod error;
mod fleets;
pub mod prometheus;
mod samples;
mod tokens;

pub use audit::Actor;
pub use error::{IngestError, ItemError};
pub use fleets::{
    create_fleet, delete_fleet, fleet_by_name, list_fleets, update_fleet, valid_name, Fleet,
    FleetSpec, FleetUpdate, MAX_GPUS_LIMIT,
};
pub use samples::{
    downsample, downsample_fleet, history, import_trace, max_plausible_rps, store_samples,
    validate, Sample, EARLIEST, MAX_BATCH, MAX_FUTURE_SECS, PLAUSIBLE_FACTOR,
};
pub use tokens::{
    authenticate, bearer, create_token, list_tokens, revoke_token, Grant, Scope, TokenInfo,
};

/// The schema's migrations, run at start and by `prewarm migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[cfg(test)]
mod tests;
