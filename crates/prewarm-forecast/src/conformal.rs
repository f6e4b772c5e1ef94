//! Calibrated upper quantiles.
//!
//! augurs' intervals come from the trend model alone and are far too narrow, so the upper
//! quantile is set from out-of-sample errors instead, split-conformal style: the errors of past
//! forecasts (relative to the forecast's level, since errors grow with traffic), pooled by how
//! far ahead they were made, give the quantile to add to a new median forecast. Only errors whose
//! actuals are already known are used, so the band never peeks at the future.

use std::collections::VecDeque;

/// Out-of-sample errors of one model, and the upper quantile they imply.
#[derive(Debug, Clone)]
pub struct Calibrator {
    quantile: f64,
    horizon: usize,
    bins: Vec<VecDeque<f64>>,
    capacity: usize,
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
    /// `actual` is known; `floor` is the level below which errors are scaled as at the floor.
    pub fn observe(&mut self, step: usize, point: f64, actual: f64, floor: f64) {
        if !(actual.is_finite() && point.is_finite()) {
            return;
        }
        let b = self.bin(step);
        let bin = &mut self.bins[b];
        if bin.len() == self.capacity {
            bin.pop_front();
        }
        bin.push_back((actual - point) / (point.max(0.0) + floor));
    }

    /// Number of errors recorded for `step`'s group.
    pub fn count(&self, step: usize) -> usize {
        self.bins[self.bin(step)].len()
    }

    /// The upper quantile for a forecast `point` made `step` steps ahead, or `None` while no error
    /// has been recorded for that group.
    pub fn upper(&self, step: usize, point: f64, floor: f64) -> Option<f64> {
        self.error_quantile(self.bin(step))
            .map(|e| widen(point, e, floor))
    }

    /// The calibrated error of a group: the finite-sample conformal rank ceil((n + 1) q) of its
    /// errors, capped at the largest.
    fn error_quantile(&self, bin: usize) -> Option<f64> {
        let mut errors: Vec<f64> = self.bins[bin].iter().copied().collect();
        errors.sort_by(f64::total_cmp);
        let n = errors.len();
        let rank = (((n + 1) as f64) * self.quantile).ceil() as usize;
        (n > 0).then(|| errors[rank.clamp(1, n) - 1])
    }
}

fn widen(point: f64, error: f64, floor: f64) -> f64 {
    (point + error * (point.max(0.0) + floor))
        .max(point)
        .max(0.0)
}

impl Calibrator {
    /// [`Calibrator::upper`] for a whole forecast (`points[s]` made `s` steps ahead), sorting each
    /// group's errors once; steps of groups without errors get the point itself.
    pub fn upper_many(&self, points: &[f64], floor: f64) -> Vec<f64> {
        let quantiles: Vec<Option<f64>> = (0..self.bins.len())
            .map(|b| self.error_quantile(b))
            .collect();
        points
            .iter()
            .enumerate()
            .map(|(s, p)| match quantiles[self.bin(s)] {
                Some(e) => widen(*p, e, floor),
                None => *p,
            })
            .collect()
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
    fn errors_scale_with_the_forecast_level() {
        let mut c = Calibrator::new(0.9, 1, 100);
        for i in 0..50 {
            c.observe(0, 100.0, 100.0 + (i % 10) as f64, 0.0);
        }
        let low = c.upper(0, 100.0, 0.0).unwrap();
        let high = c.upper(0, 1000.0, 0.0).unwrap();
        assert!((high - 1000.0 - 10.0 * (low - 100.0)).abs() < 1e-9);
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
