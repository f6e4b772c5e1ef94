//! Calibrated upper quantiles.
//!
//! augurs' intervals come from the trend model alone and are far too narrow, so the upper
//! quantile is set from out-of-sample errors instead, split-conformal style: the errors of past
//! forecasts, pooled by how far ahead they were made, give the quantile to add to a new median
//! forecast. Only errors whose actuals are already known are used, so the band never peeks at
//! the future.
//!
//! Errors are normalised by a scale `(point + floor)^gamma` before the quantile is taken. How
//! noise grows with the level differs between traffic (roughly constant for a bursty load
//! balancer, proportional for a diurnal API), so gamma is chosen per group among 0 (absolute),
//! 1/2 (Poisson-like) and 1 (relative) as the one giving the narrowest band on the recorded
//! errors; every choice holds the stated coverage on them, so the narrowest is the most useful.

use std::collections::VecDeque;

/// Exponents tried for the error scale, most level-dependent first (ties keep the first).
const GAMMAS: [f64; 3] = [1.0, 0.5, 0.0];

/// Out-of-sample errors of one model, and the upper quantile they imply.
#[derive(Debug, Clone)]
pub struct Calibrator {
    quantile: f64,
    horizon: usize,
    /// Per group of horizon steps: (point, actual, floor) of recent forecasts.
    bins: Vec<VecDeque<(f64, f64, f64)>>,
    capacity: usize,
}

/// A calibrated group: errors are scaled by `(point + floor)^gamma`, and `error` is their quantile.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fit {
    gamma: f64,
    error: f64,
}

impl Fit {
    fn upper(self, point: f64, floor: f64) -> f64 {
        (point + self.error * scale(point, floor, self.gamma))
            .max(point)
            .max(0.0)
    }
}

fn scale(point: f64, floor: f64, gamma: f64) -> f64 {
    (point.max(0.0) + floor).max(1e-12).powf(gamma)
}

impl Calibrator {
    /// A calibrator for forecasts `horizon` steps long, targeting `quantile` (e.g. 0.9), keeping
    /// the most recent `capacity` errors per group of horizon steps.
    pub fn new(quantile: f64, horizon: usize, capacity: usize) -> Self {
        let groups = horizon.clamp(1, 6);
        Self {
            quantile,
            horizon: horizon.max(1),
            bins: vec![VecDeque::new(); groups],
            capacity: capacity.max(1),
        }
    }

    fn bin(&self, step: usize) -> usize {
        (step.min(self.horizon - 1) * self.bins.len()) / self.horizon
    }

    /// Records the error of a forecast `point` made `step` steps ahead (0 = next bucket) once its
    /// `actual` is known; `floor` is added to the level before scaling, so that forecasts near
    /// zero do not produce huge relative errors.
    pub fn observe(&mut self, step: usize, point: f64, actual: f64, floor: f64) {
        if !(actual.is_finite() && point.is_finite() && floor.is_finite()) {
            return;
        }
        let b = self.bin(step);
        let bin = &mut self.bins[b];
        if bin.len() == self.capacity {
            bin.pop_front();
        }
        bin.push_back((point, actual, floor));
    }

    /// Number of errors recorded for `step`'s group.
    pub fn count(&self, step: usize) -> usize {
        self.bins[self.bin(step)].len()
    }

    /// The upper quantile for a forecast `point` made `step` steps ahead, or `None` while no error
    /// has been recorded for that group.
    pub fn upper(&self, step: usize, point: f64, floor: f64) -> Option<f64> {
        self.fit(self.bin(step)).map(|f| f.upper(point, floor))
    }

    /// [`Calibrator::upper`] for a whole forecast (`points[s]` made `s` steps ahead),
    /// calibrating each group once; steps of groups without errors get the point itself.
    pub fn upper_many(&self, points: &[f64], floor: f64) -> Vec<f64> {
        let fits: Vec<Option<Fit>> = (0..self.bins.len()).map(|b| self.fit(b)).collect();
        points
            .iter()
            .enumerate()
            .map(|(s, p)| fits[self.bin(s)].map_or(*p, |f| f.upper(*p, floor)))
            .collect()
    }

    /// Calibrates a group: for each candidate gamma, the finite-sample conformal rank
    /// ceil((n + 1) q) of the scaled errors (capped at the largest); keeps the narrowest band.
    fn fit(&self, bin: usize) -> Option<Fit> {
        let records = &self.bins[bin];
        let n = records.len();
        if n == 0 {
            return None;
        }
        let rank = ((((n + 1) as f64) * self.quantile).ceil() as usize).clamp(1, n);
        let mut best: Option<(f64, Fit)> = None;
        let mut scores = Vec::with_capacity(n);
        for gamma in GAMMAS {
            scores.clear();
            scores.extend(
                records
                    .iter()
                    .map(|(p, a, f)| (a - p) / scale(*p, *f, gamma)),
            );
            let (_, error, _) = scores.select_nth_unstable_by(rank - 1, f64::total_cmp);
            let fit = Fit {
                gamma,
                error: *error,
            };
            let width: f64 = records
                .iter()
                .map(|(p, _, f)| fit.upper(*p, *f) - p)
                .sum::<f64>()
                / n as f64;
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, fit));
            }
        }
        best.map(|(_, fit)| fit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_covers_the_stated_share_of_new_errors() {
        // Errors drawn from a fixed, skewed distribution: the calibrated band must cover about
        // 90% of fresh draws, whatever their shape.
        let mut state = 12345u64;
        let mut draw = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            -(1.0 - u).ln() * 20.0 - 10.0 // exponential, shifted
        };
        let mut c = Calibrator::new(0.9, 1, 2000);
        for _ in 0..1000 {
            c.observe(0, 100.0, 100.0 + draw(), 1.0);
        }
        let upper = c.upper(0, 100.0, 1.0).unwrap();
        let covered = (0..10_000).filter(|_| 100.0 + draw() <= upper).count();
        let share = covered as f64 / 10_000.0;
        assert!((0.87..=0.93).contains(&share), "coverage {share}");
    }

    #[test]
    fn the_error_scale_follows_how_noise_grows_with_the_level() {
        // Noise proportional to the level: the band grows with the forecast.
        let mut c = Calibrator::new(0.9, 1, 1000);
        for i in 0..400 {
            let level = if i % 2 == 0 { 10.0 } else { 1000.0 };
            c.observe(0, level, level * (1.0 + 0.01 * (i % 20) as f64), 0.0);
        }
        let low = c.upper(0, 10.0, 0.0).unwrap() - 10.0;
        let high = c.upper(0, 1000.0, 0.0).unwrap() - 1000.0;
        assert!((high / low - 100.0).abs() < 1e-6, "{low} {high}");
        // Constant noise whatever the level: the band is the same width everywhere, and much
        // narrower at high levels than a relative band would be.
        let mut c = Calibrator::new(0.9, 1, 1000);
        for i in 0..400 {
            let level = if i % 2 == 0 { 10.0 } else { 1000.0 };
            c.observe(0, level, level + (i % 20) as f64, 0.0);
        }
        let low = c.upper(0, 10.0, 0.0).unwrap() - 10.0;
        let high = c.upper(0, 1000.0, 0.0).unwrap() - 1000.0;
        assert!((high - low).abs() < 1e-9 && high < 20.0, "{low} {high}");
    }

    #[test]
    fn no_errors_means_no_band_and_steps_are_grouped() {
        let mut c = Calibrator::new(0.9, 12, 10);
        assert_eq!(c.upper(3, 10.0, 1.0), None);
        c.observe(11, 10.0, 12.0, 1.0);
        assert_eq!(c.count(10), 1);
        assert_eq!(c.count(0), 0);
        for _ in 0..20 {
            c.observe(0, 10.0, 11.0, 1.0);
        }
        assert_eq!(c.count(0), 10, "capacity bounds the memory");
        let many = c.upper_many(&[10.0, 10.0, 10.0], 1.0);
        assert_eq!(many[0], c.upper(0, 10.0, 1.0).unwrap());
        assert_eq!(many[2], 10.0, "a group without errors gets the point");
    }
}
