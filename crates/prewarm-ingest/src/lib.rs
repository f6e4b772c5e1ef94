//! How request-rate history comes in: the push API (`POST /v1/fleets/{fleet}/samples`) and the
//! Prometheus pull. Both store through [`prewarm_store::samples`], which validates each batch whole
//! (nothing is stored when an item is bad) and replaces re-sent buckets rather than duplicating
//! them.

pub mod api;
pub mod prometheus;

#[cfg(test)]
mod tests;
