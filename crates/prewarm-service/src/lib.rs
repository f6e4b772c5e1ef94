//! The parts of `prewarm serve` that deliver the planner's orders: signed web-hooks, the order
//! ledger (an outbox in PostgreSQL), the dispatcher, and the reference provisioner `fake-cloud`.

pub mod callbacks;
pub mod dispatcher;
pub mod fake_cloud;
pub mod ledger;
pub mod webhook;

#[cfg(test)]
mod tests;
