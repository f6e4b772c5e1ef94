//! Shared types of prewarm.
//!
//! This crate owns the project's trace format (`timestamp,requests[,extra...]` CSV at a fixed
//! interval), its strict validating reader and writer, and small helpers for durations written
//! the way users type them (`10m`, `21d`). It has no heavy dependencies, so every other crate
//! (the service included) can use it.

mod duration;
mod error;
mod redact;
pub mod synth;
mod trace;

pub use duration::{format_duration, parse_duration, parse_duration_or_zero, Span, SpanOrZero};
pub use error::TraceError;
pub use redact::{redact_url, scrub_urls};
pub use trace::{parse_trace, read_trace, write_trace, Trace};

/// `text` for a message: at most `max` characters, with how much was left out. A value a user
/// sent is quoted in errors, but a 50 MiB field must not be echoed whole.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.escape_debug().to_string(),
        Some((cut, _)) => format!(
            "{}... ({} bytes in all)",
            text[..cut].escape_debug(),
            text.len()
        ),
    }
}
