//! Scheduled events on the fleet's wall clock (a launch, a holiday) that multiply or pin the
//! forecast demand for a window. Windows are in local time, so a 9:00 launch is at 9:00 whatever
//! the daylight-saving offset that day.

use chrono::{Duration, NaiveDateTime};
use chrono_tz::Tz;

use crate::DemandDistribution;

/// What an override does to the forecast inside its window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideAction {
    /// Multiply median and upper quantile (e.g. 3.0 for a launch, 0.2 for a holiday).
    Multiply(f64),
    /// Replace both with this many requests per second.
    PinRps(f64),
}

/// One scheduled event: `[start, end)` on the fleet's local wall clock.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalendarOverride {
    /// Start on the fleet's wall clock.
    pub start: NaiveDateTime,
    /// End of the event on the wall clock (exclusive).
    pub end: NaiveDateTime,
    /// What the event does to the forecast.
    pub action: OverrideAction,
}

/// The distribution with every override applied (a borrowed copy when there are none).
pub(crate) fn apply<'a>(
    dist: &'a DemandDistribution,
    overrides: &[CalendarOverride],
    tz: Tz,
) -> std::borrow::Cow<'a, DemandDistribution> {
    if overrides.is_empty() {
        return std::borrow::Cow::Borrowed(dist);
    }
    let mut out = dist.clone();
    for i in 0..out.median_rps.len() {
        let t = dist.start + Duration::minutes(i as i64);
        let local = t.with_timezone(&tz).naive_local();
        for o in overrides
            .iter()
            .filter(|o| o.start <= local && local < o.end)
        {
            match o.action {
                OverrideAction::Multiply(f) => {
                    out.median_rps[i] *= f;
                    for q in out.quantiles[i].iter_mut() {
                        *q *= f;
                    }
                }
                OverrideAction::PinRps(r) => {
                    out.median_rps[i] = r;
                    out.quantiles[i] = [r; crate::NUM_LEVELS];
                }
            }
        }
    }
    std::borrow::Cow::Owned(out)
}
