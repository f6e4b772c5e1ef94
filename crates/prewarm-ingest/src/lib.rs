//! Request-rate history of every fleet, in PostgreSQL.
//!
//! This crate owns the schema (`migrations/` at the workspace root, embedded in [`MIGRATOR`]), the
//! fleets and their API tokens, storing samples (validated whole, one transaction per batch,
//! re-sent buckets replaced rather than duplicated), bulk import of trace files with `COPY`, the
//! push API (`POST /v1/fleets/{fleet}/samples`), reading history back, and downsampling old data.

pub mod api;
mod error;
mod fleets;
pub mod prometheus;
mod samples;

pub use error::{IngestError, ItemError};
pub use fleets::{create_fleet, create_token, fleet_by_name, token_scope, Fleet, FleetSpec};
pub use samples::{
    downsample, downsample_fleet, history, import_trace, store_samples, validate, Sample,
    MAX_BATCH, MAX_FUTURE_SECS,
};

/// The schema's migrations, run at start and by `prewarm migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[cfg(test)]
mod tests;
