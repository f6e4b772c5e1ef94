//! Preparing a history for fitting: gaps filled, outliers replaced (and reported), and an
//! optional variance-stabilising transform.
//!
//! Outliers are judged against the same time of day on nearby days (the median of up to three
//! days before and after), so an outage's zeros or a retry storm stand out while an ordinary
//! rush hour does not. Residuals are relative to that reference, since the noise of request
//! counts grows with their level.

use crate::ForecastError;

/// Linear interpolation of NaN values; leading and trailing gaps take the nearest observed value.
///
/// Returns [`ForecastError::NoData`] when nothing was observed.
pub fn interpolate(values: &[f64]) -> Result<Vec<f64>, ForecastError> {
    let observed: Vec<usize> = (0..values.len()).filter(|&i| !values[i].is_nan()).collect();
    let (&first, &last) = match (observed.first(), observed.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(ForecastError::NoData),
    };
    let mut out = values.to_vec();
    out[..first].fill(values[first]);
    out[last + 1..].fill(values[last]);
    for pair in observed.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        for (i, slot) in out.iter_mut().enumerate().take(b).skip(a + 1) {
            let t = (i - a) as f64 / (b - a) as f64;
            *slot = values[a] + t * (values[b] - values[a]);
        }
    }
    Ok(out)
}

/// One run of consecutive points replaced as outliers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutlierRun {
    /// Index of the first replaced point.
    pub start: usize,
    /// Number of points replaced.
    pub len: usize,
    /// Mean of the original values over the run.
    pub mean_original: f64,
    /// Mean of the replacement values over the run.
    pub mean_replacement: f64,
}

/// Settings of outlier detection.
#[derive(Debug, Clone, Copy)]
pub struct OutlierSettings {
    /// How many robust standard deviations from the reference make an outlier.
    pub threshold: f64,
    /// Longest run replaced, as a share of a day: a longer departure (a weekend, a holiday) is
    /// a pattern to learn, not an outlier.
    pub max_run_share_of_day: f64,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            threshold: 6.0,
            max_run_share_of_day: 1.0 / 8.0,
        }
    }
}

/// Replaces outliers in a gap-free series in place and returns the runs replaced.
///
/// `period` is the number of points per day; with less than two days of history the reference
/// is a rolling median of the neighbouring points instead.
pub fn replace_outliers(
    values: &mut [f64],
    period: usize,
    settings: OutlierSettings,
) -> Vec<OutlierRun> {
    let n = values.len();
    if n < 8 {
        return Vec::new();
    }
    let reference = reference_values(values, period);
    let typical = upper_median(values.iter().copied());
    // A floor keeps quiet hours (near zero) from producing huge relative residuals.
    let floor = 0.1 * typical + 1.0;
    let relative: Vec<f64> = values
        .iter()
        .zip(&reference)
        .map(|(v, r)| (v - r) / (r.abs() + floor))
        .collect();
    let scale = (1.4826 * upper_median(relative.iter().map(|r| r.abs()))).max(0.02);
    let limit = settings.threshold * scale;
    let max_run = ((period as f64 * settings.max_run_share_of_day) as usize).max(1);
    // With more than a week of history, a point that matches the same time a week away is not
    // an outlier either (weekday and weekend levels differ).
    let week = 7 * period;
    let departs = |i: usize, values: &[f64]| {
        if relative[i].abs() <= limit {
            return false;
        }
        if period == 0 || n <= week {
            return true;
        }
        let r = reference[i].abs() + floor;
        [i.checked_sub(week), Some(i + week).filter(|j| *j < n)]
            .into_iter()
            .flatten()
            .all(|j| ((values[i] - values[j]) / r).abs() > limit)
    };
    let flags: Vec<bool> = (0..n).map(|i| departs(i, values)).collect();

    let mut runs: Vec<OutlierRun> = Vec::new();
    let mut i = 0;
    while i < n {
        if !flags[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && flags[i] {
            i += 1;
        }
        let len = i - start;
        if len > max_run {
            continue;
        }
        let orig: f64 = values[start..i].iter().sum();
        let repl: f64 = reference[start..i].iter().sum();
        for j in start..i {
            values[j] = reference[j].max(0.0);
        }
        runs.push(OutlierRun {
            start,
            len,
            mean_original: orig / len as f64,
            mean_replacement: repl / len as f64,
        });
    }
    runs
}

/// The expected value of each point: the median of the same time of day on up to three days
/// either side, or a rolling median when the history is shorter than two days.
fn reference_values(values: &[f64], period: usize) -> Vec<f64> {
    let n = values.len();
    // Up to six neighbours, as keys in f64's total order: a median of so few by insertion on
    // integers is several times faster than a sort call per point, and the same value.
    let mut buf = [0i64; 6];
    (0..n)
        .map(|i| {
            let mut m = 0;
            let mut push = |v: f64| {
                buf[m] = total_key(v);
                m += 1;
            };
            if n >= 2 * period && period > 0 {
                for k in 1..=3 {
                    if i >= k * period {
                        push(values[i - k * period]);
                    }
                    if i + k * period < n {
                        push(values[i + k * period]);
                    }
                }
            } else {
                let lo = i.saturating_sub(3);
                let hi = (i + 4).min(n);
                for (j, v) in values[lo..hi].iter().enumerate() {
                    if lo + j != i {
                        push(*v);
                    }
                }
            }
            let buf = &mut buf[..m];
            for a in 1..m {
                let mut b = a;
                while b > 0 && buf[b - 1] > buf[b] {
                    buf.swap(b - 1, b);
                    b -= 1;
                }
            }
            if m == 0 {
                values[i]
            } else if m % 2 == 1 {
                from_total_key(buf[m / 2])
            } else {
                0.5 * (from_total_key(buf[m / 2 - 1]) + from_total_key(buf[m / 2]))
            }
        })
        .collect()
}

/// The element at rank `n / 2` of `n` values in `f64::total_cmp`'s order, by selection on
/// integer keys: the same order statistic a sort gives, in linear time.
pub(crate) fn upper_median(values: impl Iterator<Item = f64>) -> f64 {
    let mut keys: Vec<i64> = values.map(total_key).collect();
    let mid = keys.len() / 2;
    from_total_key(*keys.select_nth_unstable(mid).1)
}

/// An integer that orders as `f64::total_cmp` orders `v`.
pub(crate) fn total_key(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

/// The value of a [`total_key`] (the map is its own inverse).
pub(crate) fn from_total_key(k: i64) -> f64 {
    f64::from_bits((k ^ (((k >> 63) as u64) >> 1) as i64) as u64)
}

/// A monotone transform applied before fitting and undone on the forecast.
///
/// Since it is monotone, the back-transformed median forecast is the median of the original
/// scale.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Transform {
    /// No transform.
    #[default]
    None,
    /// `ln(1 + y)`.
    Log,
    /// Box-Cox with the given lambda, on `1 + y` so zeros are allowed.
    BoxCox(f64),
}

impl std::str::FromStr for Transform {
    type Err = ForecastError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "none" => Ok(Transform::None),
            "log" => Ok(Transform::Log),
            _ => s
                .strip_prefix("boxcox:")
                .and_then(|l| l.parse::<f64>().ok())
                .filter(|l| l.is_finite() && (-2.0..=2.0).contains(l))
                .map(Transform::BoxCox)
                .ok_or_else(|| {
                    ForecastError::InvalidSetting(format!(
                        "transform `{s}`: use none, log or boxcox:LAMBDA with LAMBDA between -2 and 2"
                    ))
                }),
        }
    }
}

impl Transform {
    /// Applies the transform to a non-negative value.
    pub fn forward(self, y: f64) -> f64 {
        let y = y.max(0.0);
        match self {
            Transform::None => y,
            Transform::Log => y.ln_1p(),
            Transform::BoxCox(l) if l.abs() < 1e-9 => y.ln_1p(),
            Transform::BoxCox(l) => ((1.0 + y).powf(l) - 1.0) / l,
        }
    }

    /// Undoes the transform; results are clamped at zero.
    pub fn inverse(self, z: f64) -> f64 {
        let y = match self {
            Transform::None => z,
            Transform::Log => z.exp_m1(),
            Transform::BoxCox(l) if l.abs() < 1e-9 => z.exp_m1(),
            Transform::BoxCox(l) => (l * z + 1.0).max(0.0).powf(1.0 / l) - 1.0,
        };
        y.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_fills_inner_and_outer_gaps() {
        let v = [f64::NAN, 2.0, f64::NAN, f64::NAN, 8.0, f64::NAN];
        assert_eq!(interpolate(&v).unwrap(), vec![2.0, 2.0, 4.0, 6.0, 8.0, 8.0]);
        assert!(matches!(
            interpolate(&[f64::NAN; 3]),
            Err(ForecastError::NoData)
        ));
    }

    fn daily(days: usize, per_day: usize) -> Vec<f64> {
        (0..days * per_day)
            .map(|i| {
                let phase = (i % per_day) as f64 / per_day as f64 * std::f64::consts::TAU;
                200.0 + 150.0 * phase.sin() + ((i * 31) % 7) as f64
            })
            .collect()
    }

    #[test]
    fn an_outage_and_a_retry_storm_are_replaced_but_rush_hours_are_not() {
        let per_day = 96;
        let mut v = daily(7, per_day);
        let clean = v.clone();
        // An outage: 6 points of zeros on day 3 at a busy hour.
        for x in &mut v[3 * per_day + 20..3 * per_day + 26] {
            *x = 0.0;
        }
        // A retry storm: 3 points at five times the level on day 5.
        for x in &mut v[5 * per_day + 60..5 * per_day + 63] {
            *x *= 5.0;
        }
        let runs = replace_outliers(&mut v, per_day, OutlierSettings::default());
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!((runs[0].start, runs[0].len), (3 * per_day + 20, 6));
        assert_eq!(runs[0].mean_original, 0.0);
        assert_eq!((runs[1].start, runs[1].len), (5 * per_day + 60, 3));
        for (a, b) in v.iter().zip(&clean) {
            assert!((a - b).abs() < 12.0, "replaced {a} vs clean {b}");
        }
        // A clean series loses nothing.
        let mut c = clean.clone();
        assert!(replace_outliers(&mut c, per_day, OutlierSettings::default()).is_empty());
        assert_eq!(c, clean);
    }

    #[test]
    fn weekends_and_long_departures_are_patterns_not_outliers() {
        let per_day = 48;
        let weekly: Vec<f64> = daily(21, per_day)
            .iter()
            .enumerate()
            .map(|(i, v)| if (i / per_day) % 7 >= 5 { v * 0.5 } else { *v })
            .collect();
        let mut v = weekly.clone();
        assert!(replace_outliers(&mut v, per_day, OutlierSettings::default()).is_empty());
        assert_eq!(v, weekly);
        // A half-day at a fifth of the level (a holiday) is longer than an outage.
        let mut v = daily(7, per_day);
        for x in &mut v[3 * per_day..3 * per_day + per_day / 2] {
            *x *= 0.2;
        }
        assert!(replace_outliers(&mut v, per_day, OutlierSettings::default()).is_empty());
    }

    #[test]
    fn short_history_uses_neighbours() {
        let mut v = vec![10.0, 11.0, 10.0, 12.0, 11.0, 300.0, 10.0, 11.0, 12.0, 10.0];
        let runs = replace_outliers(&mut v, 96, OutlierSettings::default());
        assert_eq!(runs.len(), 1);
        assert!(v[5] < 13.0);
    }

    #[test]
    fn transforms_invert() {
        for t in [
            Transform::None,
            Transform::Log,
            Transform::BoxCox(0.3),
            Transform::BoxCox(0.0),
        ] {
            for y in [0.0, 1.0, 17.5, 12_000.0] {
                assert!(
                    (t.inverse(t.forward(y)) - y).abs() < 1e-6 * (1.0 + y),
                    "{t:?} {y}"
                );
            }
        }
        assert_eq!(
            "boxcox:0.5".parse::<Transform>().unwrap(),
            Transform::BoxCox(0.5)
        );
        assert!("boxcox:9".parse::<Transform>().is_err());
        assert!("sqrt"
            .parse::<Transform>()
            .unwrap_err()
            .to_string()
            .contains("boxcox:LAMBDA"));
    }

    /// The medians as a sort of each neighbourhood gives them.
    fn reference_by_sorting(values: &[f64], period: usize) -> Vec<f64> {
        let n = values.len();
        (0..n)
            .map(|i| {
                let mut buf: Vec<f64> = if n >= 2 * period && period > 0 {
                    (1..=3)
                        .flat_map(|k| {
                            [
                                i.checked_sub(k * period),
                                Some(i + k * period).filter(|j| *j < n),
                            ]
                        })
                        .flatten()
                        .map(|j| values[j])
                        .collect()
                } else {
                    let (lo, hi) = (i.saturating_sub(3), (i + 4).min(n));
                    (lo..hi).filter(|j| *j != i).map(|j| values[j]).collect()
                };
                buf.sort_by(f64::total_cmp);
                let m = buf.len();
                match m {
                    0 => values[i],
                    _ if m % 2 == 1 => buf[m / 2],
                    _ => 0.5 * (buf[m / 2 - 1] + buf[m / 2]),
                }
            })
            .collect()
    }

    #[test]
    fn reference_medians_are_the_sorted_ones_bit_for_bit() {
        // Ties, both zeros, negatives, tiny and huge values; periods that take either branch and
        // series too short for any neighbour.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pool = [0.0, -0.0, 1.0, 1.0, -3.5, 1e-300, 7e12, 2.5, -0.0, 42.0];
        for n in [1, 2, 5, 9, 30, 97, 400] {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        pool[(r >> 8) as usize % pool.len()]
                    } else {
                        (r >> 11) as f64 / (1u64 << 40) as f64 - 2_000.0
                    }
                })
                .collect();
            for period in [0, 1, 3, 12, 48, 200] {
                let fast = reference_values(&values, period);
                let sorted = reference_by_sorting(&values, period);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&sorted), "n {n}, period {period}");
            }
        }
        for v in [0.0, -0.0, 1.5, -1.5, f64::MAX, f64::MIN, 1e-310, -1e-310] {
            assert_eq!(from_total_key(total_key(v)).to_bits(), v.to_bits());
        }
        // The upper median by selection on keys is the sorted one.
        for n in [1, 2, 3, 10, 333] {
            let values: Vec<f64> = (0..n)
                .map(|_| pool[(next() >> 8) as usize % pool.len()] * (next() % 3) as f64)
                .collect();
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(
                upper_median(values.iter().copied()).to_bits(),
                sorted[n / 2].to_bits(),
                "n {n}"
            );
        }
    }
}
