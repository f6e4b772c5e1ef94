//! Errors of the forecasting crate.

/// Why a forecast could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    /// The history is too short for any model that was asked for.
    #[error("{model} needs at least {needed} points of history ({needed_human}) but has {have}; give it more history or pick a simpler model")]
    TooShort {
        /// The forecasting model.
        model: String,
        /// Points needed.
        needed: usize,
        /// The history needed, in words.
        needed_human: String,
        /// Points the history holds.
        have: usize,
    },
    /// The history holds no observed value at all.
    #[error("the history has no observed values (all buckets are missing)")]
    NoData,
    /// A model name that is not known.
    #[error("unknown model `{0}`: choose from mstl, ets, snaive-week, snaive-day, naive")]
    UnknownModel(String),
    /// A setting out of its range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// The time zone's offsets do not fall on the series' grid.
    #[error("the series' {step_secs} s interval does not divide the time zone {tz}'s UTC offset change at {at}; use an interval that divides 15 minutes, or no time zone")]
    ZoneOffGrid {
        /// Bucket width, seconds.
        step_secs: i64,
        /// The IANA time zone.
        tz: String,
        /// When the offset changes.
        at: String,
    },
    /// The underlying model failed to fit.
    #[error("{model} failed to fit: {message}")]
    Fit {
        /// The model.
        model: String,
        /// What the fit said.
        message: String,
    },
}
