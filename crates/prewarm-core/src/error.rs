//! Errors raised while reading or validating a trace.

use std::path::PathBuf;

/// What is wrong with a trace file, with the file and line where it was found.
///
/// Line numbers count from 1 and include the header line, as an editor shows them.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read the trace: {source}")]
    Io {
        /// The file read.
        path: PathBuf,
        #[source]
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The header does not start with `timestamp,requests`.
    #[error("{path}: line 1: the header must start with `timestamp,requests` (found `{found}`); convert raw traces with `prewarm trace import`")]
    BadHeader {
        /// The file read.
        path: PathBuf,
        /// The header found.
        found: String,
    },
    /// A line could not be parsed.
    #[error("{path}: line {line}: {message}")]
    Malformed {
        /// The file read.
        path: PathBuf,
        /// Line of the file, from 1.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Two lines carry the same timestamp.
    #[error("{path}: line {line}: duplicate timestamp {timestamp} (first seen on line {first_line}); keep one row per bucket")]
    Duplicate {
        /// The file read.
        path: PathBuf,
        /// Line of the file, from 1.
        line: u64,
        /// Line of the first row.
        first_line: u64,
        /// When the step or bucket starts.
        timestamp: String,
    },
    /// A timestamp is earlier than the one before it.
    #[error("{path}: line {line}: timestamp {timestamp} is earlier than the previous row's {previous}; sort the file by timestamp")]
    Unsorted {
        /// The file read.
        path: PathBuf,
        /// Line of the file, from 1.
        line: u64,
        /// When the step or bucket starts.
        timestamp: String,
        /// The previous row's timestamp.
        previous: String,
    },
    /// A request count below zero.
    #[error(
        "{path}: line {line}: column `{column}` is negative ({value}); counts must be zero or more"
    )]
    Negative {
        /// The file read.
        path: PathBuf,
        /// Line of the file, from 1.
        line: u64,
        /// The column.
        column: String,
        /// The value found.
        value: f64,
    },
    /// Timestamps that do not sit on one fixed interval.
    #[error("{path}: line {line}: timestamp {timestamp} is {offset_secs} s after the previous row, which is not a whole number of the trace's {step_secs} s interval; a trace must use one fixed interval (resample it first)")]
    MixedInterval {
        /// The file read.
        path: PathBuf,
        /// Line of the file, from 1.
        line: u64,
        /// When the step or bucket starts.
        timestamp: String,
        /// Seconds past the last bucket boundary.
        offset_secs: i64,
        /// Bucket width, seconds.
        step_secs: i64,
    },
    /// Fewer than two rows, so no interval can be derived.
    #[error(
        "{path}: the trace has {rows} data row(s); at least 2 are needed to know its interval"
    )]
    TooShort {
        /// The file read.
        path: PathBuf,
        /// Rows it holds.
        rows: usize,
    },
}
