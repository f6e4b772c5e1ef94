//! A refit's pure steps after the fit, one pipeline for the service and the simulator: calibrate
//! the demand distribution on the forecasts' scored minutes ([`calibrate`]), gather the recent
//! minutes to replay through the queue ([`Calibrated::replay`]), and choose the level to plan on
//! per local hour with the budget the fleet's own record allows ([`Replay::size`]). The hosts do
//! the I/O around it: the service reads the scored minutes and the fleet's record from the
//! database and stores the result; the simulator keeps them in memory.
//!
//! The steps are apart because the last needs the fleet's record (a database read in the
//! service), which only matters once there is a day of minutes to replay, and a fleet planning on
//! one fixed quantile needs no replay at all.

use chrono_tz::Tz;
use prewarm_forecast::{DemandCalibration, Forecaster, Scored};

use crate::{
    slo::{self, ReplayMinute, Sizing},
    PlannerConfig,
};

/// Whether a live fit reuses the trend's ETS candidate a search chose `age_secs` ago, for a fleet
/// with `history_secs` of history: while the choice is younger than
/// [`TREND_SPEC_SECS`](crate::defaults::TREND_SPEC_SECS) and the fleet has
/// [`TREND_REUSE_HISTORY_SECS`](crate::defaults::TREND_REUSE_HISTORY_SECS) of history; otherwise
/// the fit searches again.
pub fn reuses_trend_spec(age_secs: i64, history_secs: i64) -> bool {
    age_secs < crate::defaults::TREND_SPEC_SECS
        && history_secs >= crate::defaults::TREND_REUSE_HISTORY_SECS
}

/// The [`Forecaster`] a new fleet's bootstrap fits go through, in the service and the simulator
/// alike: seasons reused for [`BOOTSTRAP_RESEASON_SECS`](crate::defaults::BOOTSTRAP_RESEASON_SECS),
/// and for [`BOOTSTRAP_RESEASON_WEEKLY_SECS`](crate::defaults::BOOTSTRAP_RESEASON_WEEKLY_SECS)
/// with the weekly season.
pub fn bootstrap_forecaster() -> Forecaster {
    Forecaster::new(crate::defaults::BOOTSTRAP_RESEASON_SECS)
        .weekly(crate::defaults::BOOTSTRAP_RESEASON_WEEKLY_SECS)
}

/// The distribution calibrated on the scored minutes.
#[derive(Debug, Clone)]
pub struct Calibrated {
    /// The calibration (by horizon, local hour and minute of the hour).
    pub calibration: DemandCalibration,
}

/// Calibrates on `records` (the forecasts' scored minutes of the calibration window), with the
/// seasons on `tz`'s wall clock.
pub fn calibrate(records: &[Scored], tz: Option<Tz>) -> Calibrated {
    Calibrated {
        calibration: DemandCalibration::fit(records, tz),
    }
}

impl Calibrated {
    /// Scored minutes behind the thinnest horizon group.
    pub fn errors_used(&self) -> usize {
        self.calibration.min_errors()
    }

    /// Whether the distribution may be planned on: every horizon group has `min_errors`.
    pub fn is_calibrated(&self, min_errors: usize) -> bool {
        self.errors_used() >= min_errors
    }

    /// The minutes the sizer replays: each minute's actual demand against the quantiles of the
    /// forecast made about `lead_secs` (the boot lead) before it.
    pub fn replay(&self, records: &[Scored], lead_secs: i64) -> Replay {
        Replay {
            minutes: slo::replay_minutes(records, &self.calibration, lead_secs),
        }
    }
}

/// The recent minutes the SLO sizer replays.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The minutes, oldest first.
    pub minutes: Vec<ReplayMinute>,
}

impl Replay {
    /// Whether there is enough to size levels on ([`slo::MIN_REPLAY_MINUTES`], a day).
    pub fn can_size(&self) -> bool {
        self.minutes.len() >= slo::MIN_REPLAY_MINUTES
    }

    /// The levels to plan on per local hour: the budget from the fleet's record (the timed-out
    /// share it realised over the last week and the last day, against what the last sizing
    /// predicted, [`slo::budget_from_record`]; before a record, the start budget in proportion to
    /// the days replayed, up to a week) spent where it saves the most GPU-minutes
    /// ([`slo::choose_levels`], its search started from `last`, the levels the fleet plans on
    /// now, if any). `None` without a day of minutes.
    pub fn size(
        &self,
        cfg: &PlannerConfig,
        realised_week: Option<f64>,
        realised_day: Option<f64>,
        predicted: Option<f64>,
        tz: Option<Tz>,
        last: Option<&slo::LevelPlan>,
    ) -> Option<Sizing> {
        if !self.can_size() {
            return None;
        }
        let budget = slo::budget_from_record(
            realised_week,
            realised_day,
            predicted,
            self.minutes.len(),
            &cfg.slo,
        );
        Some(slo::choose_levels(
            &self.minutes,
            &slo::ReplayPlanner::of(cfg),
            &cfg.slo,
            budget,
            tz,
            last.map(slo::LevelPlan::day_level),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use prewarm_forecast::NUM_LEVELS;

    /// `days` of minutes replayed: a steady 10 requests a second, forecast exactly.
    fn replay(days: i64) -> Replay {
        let start = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        Replay {
            minutes: (0..days * 1_440)
                .map(|i| ReplayMinute {
                    at: start + Duration::minutes(i),
                    actual_rps: 10.0,
                    quantiles: [10.0; NUM_LEVELS],
                })
                .collect(),
        }
    }

    #[test]
    fn before_a_record_the_budget_grows_with_the_days_replayed_up_to_a_week() {
        let cfg = PlannerConfig::new(1.0);
        let slo = cfg.slo.max_timeout_share;
        let budget = |days: i64| {
            replay(days)
                .size(&cfg, None, None, None, None, None)
                .map(|s| s.budget_share)
        };
        let start = slo::START_BUDGET * slo;
        assert!((budget(1).unwrap() - start / 7.0).abs() < 1e-12);
        assert!((budget(3).unwrap() - 3.0 * start / 7.0).abs() < 1e-12);
        assert_eq!(budget(7), Some(start));
        assert_eq!(budget(8), Some(start));
        // Less than a day is not sized at all.
        assert_eq!(replay(0).size(&cfg, None, None, None, None, None), None);
        // With a record the record sets the budget, however short the replay.
        let record = Some(slo / 2.0);
        let sized = replay(1).size(&cfg, record, record, Some(slo / 2.0), None, None);
        assert_eq!(
            sized.map(|s| s.budget_share),
            Some(slo::budget_from_record(
                record,
                record,
                Some(slo / 2.0),
                1_440,
                &cfg.slo
            ))
        );
    }
}
