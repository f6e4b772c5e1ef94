//! Synthetic traces with a known shape, for tests and for trying prewarm on traffic whose
//! answer is known: Poisson counts around a rate that follows the fleet's wall clock.
//!
//! - [`Shape::Office`]: a weekday office curve on the local clock (a 09:30 rush, a 14:00 peak,
//!   quiet nights, weekends at a third), the smooth case a planner should nearly match a perfect
//!   schedule on. Across a daylight-saving change the rush stays at 09:30 local.
//! - [`Shape::Bursts`]: a daily base load plus clients that fire on a schedule: each starts at :00
//!   or :30 past the hour, every 1.5 to 2.5 hours, and sends 3 to 4 times the base rate for 2 to 5
//!   minutes (batch jobs, cron-driven agents).
//! - [`Shape::Sparse`]: a sparse service (an image generator): a low base with a daily cycle, and
//!   bursts at random moments (about 3 an hour in the day, fewer at night) whose size is
//!   heavy-tailed (Pareto, 2 to 30 times the base) and shorter than a boot (1 to 6 minutes).
//! - [`Shape::Drift`]: a daily rush that starts a few minutes later each day (4 minutes a day, over
//!   a week 28 minutes), as a user base shifts: a forecast that keeps yesterday's exact minute is
//!   always a little early.
//! - [`Shape::Daily`]: a base load with a rush every day at one local time (`rush_at`): the rate
//!   steps up to the peak for an hour, the plainest case of a rise a boot lead must anticipate.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::Trace;

/// The traffic's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Weekday office hours: a 09:30 rush and a 14:00 peak, quiet nights and weekends.
    Office,
    /// A daily base plus clients that fire at :00 and :30 past the hour every 1.5 to 2.5 hours.
    Bursts,
    /// A low base with bursts at random moments, heavy-tailed in size, shorter than a boot.
    Sparse,
    /// A daily rush that comes 4 minutes later each day.
    Drift,
    /// A base load with an hour-long rush at the same local time every day.
    Daily,
}

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "office" => Ok(Shape::Office),
            "bursts" => Ok(Shape::Bursts),
            "sparse" => Ok(Shape::Sparse),
            "drift" => Ok(Shape::Drift),
            "daily" => Ok(Shape::Daily),
            other => Err(format!(
                "unknown shape `{}`: choose office, bursts, sparse, drift or daily",
                crate::shorten(other, 40)
            )),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// The traffic shape.
    pub shape: Shape,
    /// The first bucket's start.
    pub start: DateTime<Utc>,
    /// Days to generate.
    pub days: u32,
    /// Bucket width in seconds (60 for per-minute counts).
    pub step_secs: i64,
    /// The wall clock the shape follows.
    pub tz: Tz,
    /// Requests per minute at the busiest hour of a weekday.
    pub peak_per_minute: f64,
    /// Seed of the random draws (the same seed, the same result).
    pub seed: u64,
    /// When the daily shape's rush starts, on the local clock.
    pub rush_at: chrono::NaiveTime,
}

/// SplitMix64: the same seed gives the same trace on every platform (and the same draws to the
/// tests that use it).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A draw uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A whole number uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.unit() * n as f64) as u64).min(n.saturating_sub(1))
    }

    /// A Poisson count of mean `mean` (exact below 30, normal approximation above).
    pub fn poisson(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        if mean < 30.0 {
            let limit = (-mean).exp();
            let (mut k, mut p) = (0.0, 1.0);
            loop {
                p *= self.unit();
                if p <= limit {
                    return k;
                }
                k += 1.0;
            }
        }
        // Box-Muller.
        let (u1, u2) = (self.unit().max(1e-300), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mean + z * mean.sqrt()).round().max(0.0)
    }
}

/// The office curve's rate at a local time, as a share of the weekday peak.
fn office_share(hour: f64, weekday: Weekday) -> f64 {
    let bump = |centre: f64, width: f64| (-(hour - centre).powi(2) / (2.0 * width * width)).exp();
    let day = 0.08 + 0.55 * bump(9.5, 0.6) + 0.92 * bump(14.0, 2.2) + 0.25 * bump(11.5, 1.5);
    let day = day.min(1.0);
    match weekday {
        Weekday::Sat | Weekday::Sun => 0.08 + (day - 0.08) / 3.0,
        _ => day,
    }
}

/// A daily base load for the bursts shape, as a share of its peak.
fn base_share(hour: f64) -> f64 {
    0.35 + 0.65 * (-(hour - 15.0).powi(2) / (2.0 * 4.0 * 4.0)).exp()
}

/// Generates a trace of Poisson counts.
pub fn synthesize(spec: &SynthSpec) -> Trace {
    let mut rng = Rng(spec.seed);
    let steps = (spec.days as i64 * 86_400 / spec.step_secs) as usize;
    let per_step = spec.step_secs as f64 / 60.0;
    let local_hour = |t: DateTime<Utc>| {
        let local = t.with_timezone(&spec.tz);
        (
            local.hour() as f64 + local.minute() as f64 / 60.0,
            local.weekday(),
        )
    };
    // Scheduled clients: (next firing, period in minutes, burst minutes, amplitude).
    let mut clients: Vec<(DateTime<Utc>, i64, i64, f64)> = Vec::new();
    if spec.shape == Shape::Bursts {
        for _ in 0..4 {
            let period = 90 + (rng.unit() * 60.0) as i64;
            // Period rounded to the half hour, so that the client keeps to :00 and :30.
            let period = ((period + 15) / 30) * 30;
            let offset = (rng.unit() * (period / 30) as f64) as i64 * 30;
            let duration = 2 + (rng.unit() * 4.0) as i64;
            let amplitude = 3.0 + rng.unit();
            clients.push((
                spec.start + Duration::minutes(offset),
                period,
                duration,
                amplitude,
            ));
        }
    }
    // Sparse bursts: (start step, minutes, multiple of the base), drawn up front.
    let mut sparse: Vec<(usize, usize, f64)> = Vec::new();
    if spec.shape == Shape::Sparse {
        let per_minute = 60 / spec.step_secs.max(1);
        let mut i = 0usize;
        while i < steps {
            let t = spec.start + Duration::seconds(spec.step_secs * i as i64);
            let (hour, _) = local_hour(t);
            // About 3 bursts an hour at the day's busiest, a third of that at night.
            let per_hour = 1.0 + 2.0 * base_share(hour);
            if rng.unit() < per_hour / 60.0 / per_minute.max(1) as f64 {
                let minutes = 1 + (rng.unit() * 6.0) as usize;
                // Pareto (shape 1.5) from 2 times the base, at most 30.
                let size = (2.0 / (1.0 - rng.unit()).max(1e-9).powf(1.0 / 1.5)).min(30.0);
                sparse.push((i, minutes * per_minute.max(1) as usize, size));
            }
            i += 1;
        }
    }
    let requests = (0..steps)
        .map(|i| {
            let t = spec.start + Duration::seconds(spec.step_secs * i as i64);
            let (hour, weekday) = local_hour(t);
            let rate = match spec.shape {
                Shape::Office => spec.peak_per_minute * office_share(hour, weekday),
                Shape::Bursts => {
                    let base = spec.peak_per_minute / 4.0 * base_share(hour);
                    let mut extra = 0.0;
                    for (next, period, duration, amplitude) in &mut clients {
                        while *next + Duration::minutes(*period) <= t {
                            *next += Duration::minutes(*period);
                        }
                        if t >= *next && t < *next + Duration::minutes(*duration) {
                            extra += base * (*amplitude - 1.0);
                        }
                    }
                    base + extra
                }
                Shape::Sparse => {
                    let base = spec.peak_per_minute / 30.0 * (0.3 + 0.7 * base_share(hour));
                    let extra: f64 = sparse
                        .iter()
                        .filter(|(from, len, _)| i >= *from && i < from + len)
                        .map(|(_, _, size)| base * (size - 1.0))
                        .sum();
                    base + extra
                }
                Shape::Daily => {
                    // An hour at the peak from `rush_at`, a sixth of it otherwise.
                    let start = spec.rush_at.num_seconds_from_midnight() as f64 / 3_600.0;
                    let into = (hour - start).rem_euclid(24.0);
                    spec.peak_per_minute * if into < 1.0 { 1.0 } else { 1.0 / 6.0 }
                }
                Shape::Drift => {
                    let day = (t - spec.start).num_days() as f64;
                    // The rush at 10:00 on the first day, 4 minutes later each day after.
                    let centre = 10.0 + 4.0 * day / 60.0;
                    let rush = (-(hour - centre).powi(2) / (2.0 * 0.75 * 0.75)).exp();
                    spec.peak_per_minute * (0.15 + 0.85 * rush)
                }
            };
            rng.poisson(rate * per_step)
        })
        .collect();
    Trace::new(spec.start, spec.step_secs, requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: Shape) -> SynthSpec {
        SynthSpec {
            shape,
            start: "2026-03-02T05:00:00Z".parse().unwrap(),
            days: 14,
            step_secs: 60,
            tz: chrono_tz::America::New_York,
            peak_per_minute: 600.0,
            rush_at: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            seed: 1,
        }
    }

    #[test]
    fn the_office_rush_stays_at_its_local_hour_across_dst() {
        let trace = synthesize(&spec(Shape::Office));
        assert_eq!(trace.len(), 14 * 1_440);
        // The busiest minute of Friday 6 March (EST) and of Thursday 12 March (EDT) are both in
        // the early afternoon, local: an hour apart in UTC.
        let busiest = |day: &str| {
            let from: DateTime<Utc> = format!("{day}T05:00:00Z").parse().unwrap();
            let i0 = ((from - trace.start).num_minutes()) as usize;
            let (i, _) = trace.requests[i0..i0 + 1_440]
                .iter()
                .enumerate()
                .fold((0, 0.0), |b, (i, v)| if *v > b.1 { (i, *v) } else { b });
            trace
                .timestamp(i0 + i)
                .with_timezone(&chrono_tz::America::New_York)
                .hour()
        };
        for day in ["2026-03-06", "2026-03-12"] {
            assert!((12..=16).contains(&busiest(day)), "{day}: {}", busiest(day));
        }
        // Deterministic.
        assert_eq!(synthesize(&spec(Shape::Office)), trace);
    }

    #[test]
    fn scheduled_bursts_fire_at_zero_and_thirty_past() {
        let trace = synthesize(&spec(Shape::Bursts));
        let mut by_minute = [0.0; 60];
        for (i, v) in trace.requests.iter().enumerate() {
            by_minute[trace.timestamp(i).minute() as usize] += v;
        }
        let quiet = by_minute[15..25].iter().sum::<f64>() / 10.0;
        assert!(
            by_minute[0] > 1.3 * quiet && by_minute[30] > 1.3 * quiet,
            "{by_minute:?}"
        );
    }

    #[test]
    fn sparse_bursts_are_short_heavy_tailed_and_random_and_the_drift_moves_the_rush() {
        let trace = synthesize(&spec(Shape::Sparse));
        let mut sorted = trace.requests.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let top = sorted[sorted.len() - 1];
        // The biggest burst is many times the usual minute; most minutes are quiet.
        assert!(top > 8.0 * median, "median {median}, top {top}");
        let bursting = trace.requests.iter().filter(|v| **v > 3.0 * median).count();
        assert!(bursting < trace.len() / 10, "{bursting}");
        // Bursts land on any minute of the hour, not a schedule.
        let minutes: std::collections::HashSet<u32> = trace
            .requests
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 3.0 * median)
            .map(|(i, _)| trace.timestamp(i).minute())
            .collect();
        assert!(minutes.len() > 40, "{}", minutes.len());

        // On UTC, so that no daylight-saving change moves the rush as well.
        let drift = synthesize(&SynthSpec {
            tz: chrono_tz::UTC,
            ..spec(Shape::Drift)
        });
        // The busiest minute of a day, in minutes after local midnight: 4 minutes later a day.
        let busiest = |day: usize| {
            let day = &drift.requests[day * 1_440..(day + 1) * 1_440];
            let smoothed: Vec<f64> = (0..1_440 - 30)
                .map(|m| day[m..m + 30].iter().sum::<f64>())
                .collect();
            smoothed
                .iter()
                .enumerate()
                .fold((0, 0.0), |b, (i, v)| if *v > b.1 { (i, *v) } else { b })
                .0 as f64
        };
        let shift = (busiest(12) - busiest(2)) / 10.0;
        assert!((2.0..6.0).contains(&shift), "{shift} minutes a day");
    }

    #[test]
    fn the_daily_rush_starts_at_its_local_time_every_day() {
        let daily = synthesize(&SynthSpec {
            rush_at: chrono::NaiveTime::from_hms_opt(8, 50, 0).unwrap(),
            days: 3,
            ..spec(Shape::Daily)
        });
        // New York is 4 hours behind UTC in March after the change (the 8th), 5 before.
        for (i, v) in daily.requests.iter().enumerate() {
            let local = daily
                .timestamp(i)
                .with_timezone(&chrono_tz::America::New_York);
            let into = (local.hour() * 60 + local.minute()) as i64 - (8 * 60 + 50);
            let mean = if (0..60).contains(&into) {
                600.0
            } else {
                100.0
            };
            assert!(
                (*v - mean).abs() < 6.0 * mean.sqrt(),
                "{local}: {v} requests, mean {mean}"
            );
        }
    }
}
