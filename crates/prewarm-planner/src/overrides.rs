//! Scheduled events on the fleet's wall clock (a launch, a holiday) that multiply or pin the
//! forecast demand for a window. Windows are in local time, so a 9:00 launch is at 9:00 whatever
//! the daylight-saving offset that day.

use chrono::{Duration, NaiveDateTime};
use chrono_tz::Tz;

use crate::Band;

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
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub action: OverrideAction,
}

/// The band with every override applied.
pub(crate) fn apply(band: &Band, overrides: &[CalendarOverride], tz: Tz) -> Band {
    let mut out = band.clone();
    if overrides.is_empty() {
        return out;
    }
    for i in 0..out.p50_rps.len() {
        let t = band.start + Duration::seconds(band.step_secs * i as i64);
        let local = t.with_timezone(&tz).naive_local();
        for o in overrides
            .iter()
            .filter(|o| o.start <= local && local < o.end)
        {
            match o.action {
                OverrideAction::Multiply(f) => {
                    out.p50_rps[i] *= f;
                    out.upper_rps[i] *= f;
                }
                OverrideAction::PinRps(r) => {
                    out.p50_rps[i] = r;
                    out.upper_rps[i] = r;
                }
            }
        }
    }
    out
}
