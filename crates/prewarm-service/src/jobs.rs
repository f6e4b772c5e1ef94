//! When jobs run.
//!
//! Interval jobs (the planning tick, refits, dispatch retries, lease renewal, pulls) follow cron
//! patterns with seconds evaluated in UTC, so daylight-saving time neither stretches nor squeezes
//! them. In production tokio-cron-scheduler fires them; under a [`crate::clock::ManualClock`]
//! (tests, `prewarm demo`) [`Pattern::fires_in`] tells which firings a step of simulated time holds,
//! with the same patterns.
//!
//! Jobs tied to a fleet's local calendar (the daily retention fold at 03:00 local) run once per
//! local date: a frequent check finds them due once the fleet's wall clock has passed their time,
//! and `claim_slot` (in `prewarm_store::jobs`) lets exactly one run (and one replica) take each date. On a spring-forward
//! day a time that does not exist (02:30 in New York) runs when the clock jumps past it; on a
//! fall-back day the repeated hour finds the date already claimed.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use croner::{parser::CronParser, Cron};

/// A cron pattern with seconds: `sec min hour day-of-month month day-of-week`.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The text.
    pub text: String,
    cron: Cron,
}

impl Pattern {
    /// Parses a schedule; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map_err(|e| {
                format!("`{text}` is not a cron pattern with seconds (e.g. \"0 * * * * *\"): {e}")
            })?;
        Ok(Self {
            text: text.to_string(),
            cron,
        })
    }

    /// Firing times in `(from, to]`, in UTC.
    pub fn fires_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        while let Ok(next) = self.cron.find_next_occurrence(&t, false) {
            if next > to {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }
}

/// `HH:MM` as a time of day.
pub fn parse_local_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// The local date whose daily job is due at `now`, if the fleet's wall clock has passed `at`.
pub fn daily_slot(tz: Tz, at: NaiveTime, now: DateTime<Utc>) -> Option<NaiveDate> {
    let local = now.with_timezone(&tz).naive_local();
    (local.time() >= at).then(|| local.date())
}

pub use prewarm_store::jobs::claim_slot;
