//! Forecast accuracy measures, as reported by the backtest.

/// Mean absolute error of the in-sample seasonal-naive forecast with lag `period`: the scale of
/// MASE. Missing values (NaN) are skipped; `None` when no pair is available or the scale is zero.
pub fn seasonal_naive_scale(history: &[f64], period: usize) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for i in period..history.len() {
        let d = history[i] - history[i - period];
        if d.is_finite() {
            sum += d.abs();
            n += 1;
        }
    }
    (n > 0 && sum > 0.0).then(|| sum / n as f64)
}

/// Accuracy of one forecast against what came; NaN actuals are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Scores {
    /// Mean absolute error divided by the in-sample seasonal-naive error.
    pub mase: f64,
    /// Symmetric mean absolute percentage error, in percent (0 to 200).
    pub smape: f64,
    /// Mean pinball loss of the upper quantile.
    pub pinball: f64,
    /// Number of actuals at or below the upper quantile.
    pub covered: usize,
    /// Number of actuals scored.
    pub scored: usize,
}

/// Scores a median `point` and `upper` quantile forecast against `actual`.
pub fn score(point: &[f64], upper: &[f64], actual: &[f64], quantile: f64, scale: f64) -> Scores {
    let (mut abs, mut smape, mut pinball) = (0.0, 0.0, 0.0);
    let (mut covered, mut scored) = (0, 0);
    for ((p, u), a) in point.iter().zip(upper).zip(actual) {
        if !a.is_finite() {
            continue;
        }
        scored += 1;
        abs += (a - p).abs();
        let denom = a.abs() + p.abs();
        if denom > 0.0 {
            smape += 200.0 * (a - p).abs() / denom;
        }
        let d = a - u;
        pinball += if d >= 0.0 {
            quantile * d
        } else {
            (quantile - 1.0) * d
        };
        if a <= u {
            covered += 1;
        }
    }
    if scored == 0 {
        return Scores::default();
    }
    let n = scored as f64;
    Scores {
        mase: abs / n / scale,
        smape: smape / n,
        pinball: pinball / n,
        covered,
        scored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_scores() {
        // Errors 1 and 3 (MAE 2), scale 4: MASE 0.5.
        let s = score(&[10.0, 20.0], &[12.0, 21.0], &[11.0, 23.0], 0.9, 4.0);
        assert!((s.mase - 0.5).abs() < 1e-12);
        let smape = (200.0 * 1.0 / 21.0 + 200.0 * 3.0 / 43.0) / 2.0;
        assert!((s.smape - smape).abs() < 1e-9);
        // 11 <= 12 covered (loss 0.1 * 1); 23 > 21 missed (loss 0.9 * 2).
        assert!((s.pinball - (0.1 + 1.8) / 2.0).abs() < 1e-12);
        assert_eq!((s.covered, s.scored), (1, 2));
    }

    #[test]
    fn missing_actuals_are_skipped_and_scale_is_seasonal_naive() {
        let s = score(&[1.0, 1.0], &[2.0, 2.0], &[f64::NAN, 1.0], 0.9, 1.0);
        assert_eq!(s.scored, 1);
        assert_eq!(seasonal_naive_scale(&[1.0, 2.0, 4.0, 2.0], 2), Some(1.5));
        assert_eq!(seasonal_naive_scale(&[1.0, 1.0, 1.0], 1), None);
    }
}
