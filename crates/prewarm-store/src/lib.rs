//! prewarm's storage: the one owner of the PostgreSQL schema and of every query against it.
//!
//! - [`MIGRATOR`]: the schema (`migrations/` at the workspace root), run at start and by
//!   `prewarm migrate`.
//! - [`fleets`]: fleets (one [`Fleet`] row, its time zone parsed once), their operator settings
//!   (pause, pin, planner settings) and calendar events.
//! - [`tokens`], [`audit`]: API tokens and their scopes; the audit log of every change.
//! - [`samples`]: request-rate history: validated batches, `COPY` import, reads, downsampling.
//! - [`forecasts`]: stored forecasts, their calibration and the levels planned on.
//! - [`instances`]: GPU instances as the provisioner's callbacks report them, and boot times.
//! - [`ledger`]: decisions and the order outbox; [`leases`]: which replica plans which fleet;
//!   [`state`]: a fleet's GPUs rebuilt from orders and the provisioner's callbacks.
//! - [`jobs`]: which replica ran each slot of a scheduled job.
//! - [`dashboard`]: what the operator dashboard reads, and the hourly tally each tick adds to.
//! - [`kinds`]: order kinds, order states and decision modes as the database stores them.
//! - [`admin`]: scratch databases and statistics for tools; [`seed`]: synthetic fleets for the
//!   service benchmark.
//!
//! Queries are checked by tests rather than at compile time: `sqlx::query!` needs a database or
//! a committed offline cache at build time, and this workspace builds without either. Every query
//! on the hot path (the tick's state, the ledger, the dispatcher's claims, leases, operator
//! changes) runs against the migrated schema in this crate's own tests (`tests.rs`); the rest run
//! in the ingestion, service and CLI tests.

pub mod admin;
pub mod audit;
pub mod dashboard;
mod error;
pub mod fleets;
pub mod forecasts;
pub mod instances;
pub mod jobs;
pub mod kinds;
pub mod leases;
pub mod ledger;
pub mod observed;
pub mod profiles;
pub mod samples;
pub mod seed;
pub mod state;
pub mod tokens;

pub use audit::Actor;
pub use error::{is_unavailable, refused_value, ItemError, StoreError};
pub use fleets::{
    create_fleet, delete_fleet, fleet_by_name, list_fleets, update_fleet, valid_name, Fleet,
    FleetEvent, FleetSpec, FleetUpdate, TimeZone, MAX_GPUS_LIMIT,
};
pub use kinds::{DecisionMode, OrderKind, OrderState};
pub use samples::{
    downsample, downsample_fleet, history, import_trace, max_plausible_rps, store_samples,
    validate, Sample, EARLIEST, MAX_BATCH, MAX_FUTURE_SECS, PLAUSIBLE_FACTOR,
};
pub use tokens::{authenticate, create_token, list_tokens, revoke_token, Grant, Scope, TokenInfo};

#[cfg(test)]
mod tests;

/// The schema's migrations, run at start and by `prewarm migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// The positions of `keys` split into rounds in which each key is at most once, in order: a
/// key's first place in the first round, its second in the second, and so on. A statement that
/// writes many fleets' rows at once writes a round at a time.
pub(crate) fn distinct_rounds(keys: impl Iterator<Item = i64>) -> Vec<Vec<usize>> {
    let mut seen: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, key) in keys.enumerate() {
        let round = seen.entry(key).or_insert(0);
        if *round == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[*round].push(i);
        *round += 1;
    }
    rounds
}

/// Whether the database answers.
pub async fn ping(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await?;
    Ok(())
}
