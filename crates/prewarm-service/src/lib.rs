//! `prewarm serve`: refits forecasts on a schedule, plans every fleet every minute, delivers boot
//! and terminate orders to the provisioner's web hook, learns real boot times from its callbacks,
//! and explains every decision.
//!
//! - [`dashboard`]: the operator dashboard at `/` and what it reads.
//! - [`config`]: TOML file plus `PREWARM_...` environment overrides, checked at start.
//! - [`serve`]: the HTTP API and the scheduler's jobs; [`jobs`]: when they run.
//! - [`engine`]: refit, plan, record and dispatch for one fleet (the leases, the ledger and the
//!   fleet state it reads and writes are in `prewarm_store`).
//! - [`dispatcher`], [`webhook`]: the order outbox's signed delivery.
//! - [`keda`]: KEDA's external scaler (gRPC), for `provisioner.kind = "keda"`.
//! - [`callbacks`]: what the provisioner reports.
//! - `fake_cloud` (feature `fake-cloud`, on in tests): the reference provisioner, for the demo,
//!   `prewarm fake-cloud` and the tests.
//! - [`error`]: what a job can fail with, and the error policy.
//! - [`clock`]: the injectable clock.

pub mod api;
pub mod callbacks;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod dispatcher;
pub mod engine;
pub mod error;
#[cfg(any(test, feature = "fake-cloud"))]
pub mod fake_cloud;
pub mod forecasts;
pub mod jobs;
pub mod keda;
pub mod metrics;
pub mod serve;
pub mod shadow;
pub mod webhook;

#[cfg(test)]
mod browser_tests;
#[cfg(test)]
mod keda_tests;
#[cfg(test)]
mod safety_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
