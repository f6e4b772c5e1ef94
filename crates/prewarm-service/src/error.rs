//! What can go wrong in the service's jobs, and what the service does about it.
//!
//! The error policy, one place for every job (tick, refit, dispatch, daily):
//! - every failure is logged with its job and fleet, and counted in
//!   `prewarm_job_errors_total{task, kind}` ([`ServiceError::kind`]);
//! - a transient failure ([`ServiceError::is_transient`]: the database unreachable or shutting
//!   down) is retried by the job's next run: ticks every minute, dispatch every few seconds with
//!   the orders' own backoff, refits at the next refit (the previous forecast stays in use);
//! - a fleet deleted while a job ran is not an error: a tick says [`crate::engine::TickOutcome::FleetGone`]
//!   and a refit [`ServiceError::FleetGone`], and nothing is retried;
//! - anything else (a query the schema refuses, a stored value that cannot be read) is logged
//!   at error level: it will not go away by itself.

use prewarm_store::StoreError;

/// Why a job failed for a fleet.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The database could not be reached or dropped the connection.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused a query, or a stored value could not be read.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The fleet was deleted while the job ran.
    #[error("fleet {0} no longer exists")]
    FleetGone(i64),
    /// Storage refused the change (a value out of range, an unknown fleet).
    #[error("{0}")]
    Store(StoreError),
    /// An observed fleet's real replicas are not known (no recent observation): it is not
    /// planned until they are.
    #[error("{0}")]
    Unobserved(String),
}

impl ServiceError {
    /// The metric label of the error's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceError::Unavailable(_) => "unavailable",
            ServiceError::Database(_) => "database",
            ServiceError::FleetGone(_) => "fleet_gone",
            ServiceError::Store(_) => "store",
            ServiceError::Unobserved(_) => "unobserved",
        }
    }

    /// Whether the job's next run may well succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ServiceError::Unavailable(_))
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(text) => ServiceError::Unavailable(text),
            StoreError::Database(e) => ServiceError::Database(e),
            other => ServiceError::Store(other),
        }
    }
}

/// The service's scheduled jobs, as the error metric labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The planning tick.
    Tick,
    /// The forecast refit.
    Refit,
    /// Order delivery.
    Dispatch,
    /// The daily retention job.
    Daily,
    /// The lease round.
    Leases,
    /// A Prometheus pull.
    Pull,
}

impl Job {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Tick => "tick",
            Job::Refit => "refit",
            Job::Dispatch => "dispatch",
            Job::Daily => "daily",
            Job::Leases => "leases",
            Job::Pull => "pull",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_transient_and_a_refused_query_is_not() {
        let e = ServiceError::from(sqlx::Error::PoolTimedOut);
        assert!(e.is_transient() && e.kind() == "unavailable", "{e:?}");
        let e = ServiceError::from(sqlx::Error::RowNotFound);
        assert!(!e.is_transient() && e.kind() == "database", "{e:?}");
        assert!(!ServiceError::FleetGone(3).is_transient());
        let e = ServiceError::from(StoreError::UnknownFleet("x".into()));
        assert_eq!(e.kind(), "store");
    }
}
