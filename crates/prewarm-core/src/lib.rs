//! Shared types of prewarm.
//!
//! This crate owns the project's trace format (`timestamp,requests[,extra...]` CSV at a fixed
//! interval), its strict validating reader and writer, and small helpers for durations written
//! the way users type them (`10m`, `21d`). It has no heavy dependencies, so every other crate
//! (the service included) can use it.

mod duration;
mod error;
mod trace;

pub use duration::{format_duration, parse_duration, parse_duration_or_zero};
pub use error::TraceError;
pub use trace::{parse_trace, read_trace, write_trace, Trace};
