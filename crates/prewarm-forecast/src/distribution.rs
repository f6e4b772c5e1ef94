//! The demand distribution: for each future minute, demand at fixed quantile levels.
//!
//! A forecast gives the median; how far demand strays from it comes from the model's own
//! out-of-sample errors, split-conformal style, made at the same resolution the fleet is run at
//! (a minute), so count noise at low rates and bursts within a bucket are part of it. Errors are
//! scored as `(actual - median) / (level + floor)^gamma`, where the level is the median averaged
//! over the hour around the minute ([`levels_of`]), with gamma chosen per horizon group among 1
//! (noise proportional to the level), 1/2 (Poisson-like) and 0 (constant) as the one giving the
//! narrowest band. Their quantiles are taken over all errors of a horizon group, then moved by
//! phase: the hour of the fleet's local day, and the minute of the hour (clients that fire at fixed
//! minutes past the hour make some minutes burstier than others). A phase's own quantiles count in
//! full once it holds [`PHASE_MIN_ERRORS`] errors, in proportion before, so a thin phase leans on
//! the pooled shape; and a phase pattern counts only as far as it repeats: the shifts found on the
//! odd days and on the even days are compared, and weighted by their correlation (a pattern of
//! noise, or of one rare burst, does not repeat, and moving quantiles by it would only overfit).
//! Only errors whose actuals are known are used: the distribution never peeks.
//!
//! [`DemandCalibration`] is built once per refit from the recorded errors and applied to any
//! median; [`DemandDistribution`] holds the result for the minutes a plan looks at.

use crate::prepare::{from_total_key, total_key};
use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;

/// The quantile levels every distribution is given at.
pub const LEVELS: [f64; 17] = [
    0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999,
];

/// Number of levels.
pub const NUM_LEVELS: usize = LEVELS.len();

/// Index of the median in [`LEVELS`].
pub const MEDIAN: usize = 3;

/// The level whose band width chooses the error scale (0.95).
const WIDTH_LEVEL: usize = 10;

/// Errors a phase needs for its own quantiles to count in full; with fewer, they count in
/// proportion.
pub const PHASE_MIN_ERRORS: f64 = 30.0;

/// Horizon groups, by how far ahead a forecast was made: errors grow with the horizon.
pub const HORIZON_GROUPS_SECS: [i64; 3] = [0, 1_200, 2_700];

/// Exponents tried for the error scale, most level-dependent first (ties keep the first).
const GAMMAS: [f64; 3] = [1.0, 0.5, 0.0];

/// Minutes on each side a forecast's median is averaged over to give the level errors are scaled
/// by ([`levels_of`]).
pub const LEVEL_WINDOW_MINUTES: usize = 30;

/// The level of a median forecast per minute: its average over the [`LEVEL_WINDOW_MINUTES`] on
/// each side (fewer at the ends). Errors are scaled by the level, not by the median itself: a
/// median with a spike (a client that fires at the same minutes every day) would otherwise widen
/// the band in proportion to the spike, and count the burst twice.
pub fn levels_of(median_rps: &[f64]) -> Vec<f64> {
    let n = median_rps.len();
    let mut prefix = vec![0.0; n + 1];
    for (i, m) in median_rps.iter().enumerate() {
        prefix[i + 1] = prefix[i] + m.max(0.0);
    }
    (0..n)
        .map(|i| {
            let a = i.saturating_sub(LEVEL_WINDOW_MINUTES);
            let b = (i + LEVEL_WINDOW_MINUTES + 1).min(n);
            (prefix[b] - prefix[a]) / (b - a) as f64
        })
        .collect()
}

/// Where a minute sits on the fleet's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Hour of the local day, 0 to 23.
    pub hour: usize,
    /// Minute of the hour, 0 to 59.
    pub minute: usize,
}

/// The phase of `t` on the wall clock of `tz` (UTC when `None`).
pub fn phase_of(t: DateTime<Utc>, tz: Option<Tz>) -> Phase {
    let local = crate::local_time(t, tz);
    Phase {
        hour: local.hour() as usize,
        minute: local.minute() as usize,
    }
}

fn horizon_group(horizon_secs: i64) -> usize {
    HORIZON_GROUPS_SECS
        .iter()
        .rposition(|g| horizon_secs >= *g)
        .unwrap_or(0)
}

/// One out-of-sample error: what a forecast said of a minute, and what came.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scored {
    /// Start of the minute.
    pub at: DateTime<Utc>,
    /// How long before `at` the forecast was made (its origin to `at`).
    pub horizon_secs: i64,
    /// The forecast's median, requests per second.
    pub median_rps: f64,
    /// The forecast's level around the minute ([`levels_of`]), requests per second.
    pub level_rps: f64,
    /// What arrived, requests per second over the minute.
    pub actual_rps: f64,
    /// Level below which errors are scaled as at this level (requests per second).
    pub floor_rps: f64,
}

/// Two phases' shifts of one quantile, together: the larger when they point the same way (both
/// may see the same bursts, a client firing at :00 in the hours it runs, and would count them
/// twice), their sum when they point apart.
fn combine(hour: f64, minute: f64) -> f64 {
    if hour * minute > 0.0 {
        if hour.abs() > minute.abs() {
            hour
        } else {
            minute
        }
    } else {
        hour + minute
    }
}

/// Pearson's correlation of two equally long series (0 when either is constant).
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    if aa <= 0.0 || bb <= 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

fn scale(median: f64, floor: f64, gamma: f64) -> f64 {
    power(scale_base(median, floor), gamma)
}

/// `base` to the power `gamma`: without a call to `powf` for the exponents [`GAMMAS`] tries (a
/// calibration takes one per scored minute and exponent, some 80,000 of each a week): 1 and 0
/// exactly, 1/2 as the correctly rounded square root (`powf` may be a unit in the last place off
/// it).
fn power(base: f64, gamma: f64) -> f64 {
    if gamma == 1.0 {
        base
    } else if gamma == 0.0 {
        1.0
    } else if gamma == 0.5 {
        base.sqrt()
    } else {
        base.powf(gamma)
    }
}

/// What the error scale is a power of: the level plus the floor.
fn scale_base(median: f64, floor: f64) -> f64 {
    (median.max(0.0) + floor.max(0.0)).max(1e-9)
}

/// The rank (1-based) of the finite-sample conformal quantile at `level` among `n` scores:
/// `ceil((n + 1) level)`, capped at the largest.
fn conformal_rank(n: usize, level: f64) -> usize {
    ((((n + 1) as f64) * level).ceil() as usize).clamp(1, n)
}

/// The finite-sample conformal quantiles at [`LEVELS`] (rank `ceil((n + 1) level)`, capped at
/// the largest) of the scores whose [`total_key`]s are `keys`; `keys` is reordered in place. Each
/// is found by selection in the part above the one before, not by sorting: the same order
/// statistics, in linear time, compared as integers (in `f64::total_cmp`'s order).
fn conformal_quantiles(keys: &mut [i64]) -> [f64; NUM_LEVELS] {
    let n = keys.len();
    let mut out = [0.0; NUM_LEVELS];
    if n == 0 {
        return out;
    }
    // Everything before `from` is at most the order statistic at `from - 1`, everything after
    // it at least: the next (higher) rank is selected among the rest.
    let mut from = 0;
    for (k, level) in LEVELS.iter().enumerate() {
        let index = conformal_rank(n, *level) - 1;
        if index >= from {
            let (_, nth, _) = keys[from..].select_nth_unstable(index - from);
            out[k] = from_total_key(*nth);
            from = index + 1;
        } else {
            out[k] = from_total_key(keys[index]);
        }
    }
    out
}

/// The conformal quantile at `level` alone of the scores whose keys are `keys` (reorders them).
fn conformal_quantile(keys: &mut [i64], level: f64) -> f64 {
    if keys.is_empty() {
        return 0.0;
    }
    let index = conformal_rank(keys.len(), level) - 1;
    from_total_key(*keys.select_nth_unstable(index).1)
}

/// The errors of one horizon group, fitted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct GroupFit {
    gamma: f64,
    errors: usize,
    pooled: [f64; NUM_LEVELS],
    /// Per local hour: how far its quantiles sit from the pooled ones (already weighted).
    #[serde(with = "packed_rows")]
    by_hour: Vec<[f64; NUM_LEVELS]>,
    /// Per minute of the hour: likewise.
    #[serde(with = "packed_rows")]
    by_minute: Vec<[f64; NUM_LEVELS]>,
}

/// A table of shifts as stored: one base64 string of the numbers' bits (little-endian), row after
/// row, exact to the bit. PostgreSQL reads a `jsonb` string far faster than as many numbers (a
/// calibration is written at every hourly recalibration of every fleet: 1.4 against 3.9 ms for
/// its 4,300 numbers, measured in `psql`). Tables stored as arrays of numbers, as before, are
/// read too.
mod packed_rows {
    use super::NUM_LEVELS;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    const ROW_BYTES: usize = 8 * NUM_LEVELS;

    pub(super) fn serialize<S: Serializer>(
        rows: &[[f64; NUM_LEVELS]],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(rows.len() * ROW_BYTES);
        for x in rows.iter().flatten() {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Packed(String),
        Numbers(Vec<[f64; NUM_LEVELS]>),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<[f64; NUM_LEVELS]>, D::Error> {
        let text = match Stored::deserialize(d)? {
            Stored::Numbers(rows) => return Ok(rows),
            Stored::Packed(text) => text,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| serde::de::Error::custom(format!("a table of shifts: {e}")))?;
        if bytes.len() % ROW_BYTES != 0 {
            return Err(serde::de::Error::custom(format!(
                "a table of shifts of {} bytes is not whole rows of {NUM_LEVELS} numbers",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(ROW_BYTES)
            .map(|row| {
                let mut out = [0.0; NUM_LEVELS];
                for (x, b) in out.iter_mut().zip(row.chunks_exact(8)) {
                    *x = f64::from_le_bytes(b.try_into().expect("eight bytes"));
                }
                out
            })
            .collect())
    }
}

/// One horizon group's records, as its fit reads them: per record, its error (actual less
/// median), the base of its error scale ([`scale_base`]), its phase, and whether its day (UTC) is
/// odd.
#[derive(Debug, Default)]
struct GroupInput {
    errors: Vec<f64>,
    bases: Vec<f64>,
    phases: Vec<Phase>,
    odd_day: Vec<bool>,
}

impl GroupInput {
    fn push(&mut self, r: &Scored, phase: Phase) {
        self.errors.push(r.actual_rps - r.median_rps);
        self.bases.push(scale_base(r.level_rps, r.floor_rps));
        self.phases.push(phase);
        self.odd_day
            .push(r.at.timestamp().div_euclid(86_400).rem_euclid(2) == 1);
    }
}

impl GroupFit {
    fn fit(input: &GroupInput) -> Option<Self> {
        let GroupInput {
            errors,
            bases,
            phases,
            odd_day,
        } = input;
        if errors.is_empty() {
            return None;
        }
        // Per exponent, the scores (as keys) and the width of the band they give; the narrowest
        // band's scores are kept.
        let mut best: Option<(f64, f64)> = None;
        let mut all: Vec<i64> = Vec::new();
        let mut scales = Vec::with_capacity(errors.len());
        let mut scores = Vec::with_capacity(errors.len());
        let mut selected = Vec::with_capacity(errors.len());
        for gamma in GAMMAS {
            scales.clear();
            scales.extend(bases.iter().map(|b| power(*b, gamma)));
            scores.clear();
            scores.extend(errors.iter().zip(&scales).map(|(e, s)| total_key(e / s)));
            selected.clear();
            selected.extend_from_slice(&scores);
            let upper = conformal_quantile(&mut selected, LEVELS[WIDTH_LEVEL]);
            let width: f64 =
                scales.iter().map(|s| (upper * s).abs()).sum::<f64>() / errors.len() as f64;
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, gamma));
                std::mem::swap(&mut all, &mut scores);
            }
        }
        let gamma = best.map_or(0.5, |(_, g)| g);
        // The chosen scale's scores, in the records' order.
        let pooled = conformal_quantiles(&mut all.clone());
        // A phase's shift from the pooled quantiles, from a set of records (by index).
        let shifts_of = |part: &mut dyn Iterator<Item = usize>,
                         bins: usize,
                         key: &dyn Fn(&Phase) -> usize|
         -> Vec<[f64; NUM_LEVELS]> {
            let mut grouped: Vec<Vec<i64>> = vec![Vec::new(); bins];
            for i in part {
                grouped[key(&phases[i])].push(all[i]);
            }
            grouped
                .into_iter()
                .map(|mut s| {
                    let weight = (s.len() as f64 / PHASE_MIN_ERRORS).min(1.0);
                    let own = conformal_quantiles(&mut s);
                    let mut shift = [0.0; NUM_LEVELS];
                    if weight > 0.0 {
                        for k in 0..NUM_LEVELS {
                            shift[k] = weight * (own[k] - pooled[k]);
                        }
                    }
                    shift
                })
                .collect()
        };
        // How far a phase's shifts can be trusted: the agreement of the shifts found on the odd
        // and on the even days (their correlation over the phases, per level, none when
        // negative). A real pattern (bursts at :00, noisier nights) shows on both; noise, or a
        // rare burst that happened to fall in one phase, does not, and is left out.
        let shifts = |bins: usize, key: &dyn Fn(&Phase) -> usize| -> Vec<[f64; NUM_LEVELS]> {
            let n = errors.len();
            let all = shifts_of(&mut (0..n), bins, key);
            let odd = shifts_of(&mut (0..n).filter(|i| odd_day[*i]), bins, key);
            let even = shifts_of(&mut (0..n).filter(|i| !odd_day[*i]), bins, key);
            let mut out = all;
            for k in 0..NUM_LEVELS {
                let a: Vec<f64> = odd.iter().map(|s| s[k]).collect();
                let b: Vec<f64> = even.iter().map(|s| s[k]).collect();
                let trust = correlation(&a, &b).max(0.0);
                for shift in out.iter_mut() {
                    shift[k] *= trust;
                }
            }
            out
        };
        let by_hour = shifts(24, &|p| p.hour);
        let by_minute = shifts(60, &|p| p.minute);
        Some(Self {
            gamma,
            errors: errors.len(),
            pooled,
            by_hour,
            by_minute,
        })
    }

    fn quantiles(&self, phase: Phase, median: f64, level: f64, floor: f64) -> [f64; NUM_LEVELS] {
        let s = scale(level, floor, self.gamma);
        let mut out = [0.0; NUM_LEVELS];
        let mut previous = 0.0f64;
        for (k, q) in out.iter_mut().enumerate() {
            let z = self.pooled[k]
                + combine(self.by_hour[phase.hour][k], self.by_minute[phase.minute][k]);
            // Quantiles never decrease with the level, and demand is never negative.
            previous = previous.max((median + z * s).max(0.0));
            *q = previous;
        }
        out
    }
}

/// How demand strays from a model's median, learned from its out-of-sample errors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DemandCalibration {
    /// The fleet's time zone (phases are on its wall clock).
    #[serde(with = "tz_name")]
    tz: Option<Tz>,
    groups: Vec<Option<GroupFit>>,
}

mod tz_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(tz: &Option<Tz>, s: S) -> Result<S::Ok, S::Error> {
        match tz {
            Some(t) => s.serialize_some(t.name()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tz>, D::Error> {
        let name: Option<String> = Option::deserialize(d)?;
        name.map(|n| n.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl DemandCalibration {
    /// Fits the calibration on `records` (the errors of earlier forecasts, each scored once its
    /// minute had passed).
    pub fn fit(records: &[Scored], tz: Option<Tz>) -> Self {
        let mut grouped: Vec<GroupInput> = (0..HORIZON_GROUPS_SECS.len())
            .map(|_| GroupInput::default())
            .collect();
        // Records come grouped by minute (each minute scored by several forecasts): its phase is
        // found once.
        let mut last: Option<(DateTime<Utc>, Phase)> = None;
        for r in records.iter().filter(|r| {
            r.actual_rps.is_finite() && r.median_rps.is_finite() && r.floor_rps.is_finite()
        }) {
            let phase = match last {
                Some((at, phase)) if at == r.at => phase,
                _ => phase_of(r.at, tz),
            };
            last = Some((r.at, phase));
            grouped[horizon_group(r.horizon_secs)].push(r, phase);
        }
        Self {
            tz,
            groups: grouped.iter().map(GroupFit::fit).collect(),
        }
    }

    /// Errors behind the horizon group of `horizon_secs`.
    pub fn errors(&self, horizon_secs: i64) -> usize {
        self.group(horizon_secs).map_or(0, |g| g.errors)
    }

    /// The fewest errors behind any horizon group.
    pub fn min_errors(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.as_ref().map_or(0, |g| g.errors))
            .min()
            .unwrap_or(0)
    }

    fn group(&self, horizon_secs: i64) -> Option<&GroupFit> {
        // A group without errors borrows the nearest one before it.
        let g = horizon_group(horizon_secs);
        (0..=g).rev().find_map(|i| self.groups[i].as_ref())
    }

    /// Demand at every level of [`LEVELS`] for the minute starting at `at`, from a median (and
    /// the level around it) made `horizon_secs` before it; `None` while no error is recorded.
    pub fn quantiles(
        &self,
        at: DateTime<Utc>,
        horizon_secs: i64,
        median_rps: f64,
        level_rps: f64,
        floor_rps: f64,
    ) -> Option<[f64; NUM_LEVELS]> {
        self.group(horizon_secs)
            .map(|g| g.quantiles(phase_of(at, self.tz), median_rps, level_rps, floor_rps))
    }

    /// [`DemandCalibration::quantiles`] of a scored minute.
    pub fn quantiles_of(&self, r: &Scored) -> Option<[f64; NUM_LEVELS]> {
        self.quantiles(r.at, r.horizon_secs, r.median_rps, r.level_rps, r.floor_rps)
    }

    /// The distribution of the minutes a median covers (`median_rps[i]` for the minute starting
    /// `start + i` minutes), made at `origin`.
    pub fn distribution(
        &self,
        origin: DateTime<Utc>,
        start: DateTime<Utc>,
        median_rps: &[f64],
        floor_rps: f64,
    ) -> Option<DemandDistribution> {
        let mut quantiles = Vec::with_capacity(median_rps.len());
        let levels = levels_of(median_rps);
        for (i, m) in median_rps.iter().enumerate() {
            let at = start + Duration::minutes(i as i64);
            quantiles.push(self.quantiles(
                at,
                (at - origin).num_seconds(),
                *m,
                levels[i],
                floor_rps,
            )?);
        }
        Some(DemandDistribution {
            start,
            median_rps: median_rps.to_vec(),
            quantiles,
        })
    }
}

/// Demand for each minute of a stretch of time: its median and its quantiles at [`LEVELS`].
#[derive(Debug, Clone, PartialEq)]
pub struct DemandDistribution {
    /// Start of the first minute.
    pub start: DateTime<Utc>,
    /// The forecast's median per minute, requests per second.
    pub median_rps: Vec<f64>,
    /// Requests per second at each level, per minute.
    pub quantiles: Vec<[f64; NUM_LEVELS]>,
}

impl DemandDistribution {
    /// End of the last minute.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::minutes(self.median_rps.len() as i64)
    }

    /// Index of the minute holding `t`.
    pub fn index(&self, t: DateTime<Utc>) -> Option<usize> {
        let offset = (t - self.start).num_seconds();
        (offset >= 0)
            .then_some((offset / 60) as usize)
            .filter(|i| *i < self.median_rps.len())
    }

    /// Quantiles for the minute holding `t`.
    pub fn at(&self, t: DateTime<Utc>) -> Option<&[f64; NUM_LEVELS]> {
        self.index(t).map(|i| &self.quantiles[i])
    }

    /// Whether every minute of `[from, to)` is covered.
    pub fn covers(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        from >= self.start && to <= self.end()
    }

    /// This distribution with the minutes of `earlier` (an older forecast's) that come before
    /// it prepended, at most `minutes` of them: what demand was expected to be just before a
    /// refit, to compare recent demand with. Unchanged when `earlier` does not reach this one's
    /// start.
    pub fn after(&self, earlier: &DemandDistribution, minutes: usize) -> Self {
        let from = (self.start - Duration::minutes(minutes as i64)).max(earlier.start);
        if earlier.end() < self.start {
            return self.clone();
        }
        let (Some(a), b) = (
            earlier.index(from),
            earlier
                .index(self.start)
                .unwrap_or(earlier.median_rps.len()),
        ) else {
            return self.clone();
        };
        let mut median_rps = earlier.median_rps[a..b].to_vec();
        median_rps.extend_from_slice(&self.median_rps);
        let mut quantiles = earlier.quantiles[a..b].to_vec();
        quantiles.extend_from_slice(&self.quantiles);
        Self {
            start: earlier.start + Duration::minutes(a as i64),
            median_rps,
            quantiles,
        }
    }

    /// The same distribution with every value multiplied by `factor` (a level correction).
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            start: self.start,
            median_rps: self.median_rps.iter().map(|m| m * factor).collect(),
            quantiles: self
                .quantiles
                .iter()
                .map(|q| q.map(|v| v * factor))
                .collect(),
        }
    }
}

/// One local hour's coverage: (hour, scored minutes, share covered per level).
pub type HourCoverage = (usize, usize, Vec<f64>);

/// Coverage of each level: the share of actuals at or under the quantile, per level, over
/// `records` scored with `calibration`, overall and per local hour. Used to check that the
/// distribution is calibrated (`prewarm backtest` reports it).
pub fn coverage(
    calibration: &DemandCalibration,
    records: &[Scored],
) -> (Vec<f64>, Vec<HourCoverage>) {
    let mut all = [0usize; NUM_LEVELS];
    let mut n_all = 0usize;
    let mut hours = vec![(0usize, vec![0usize; NUM_LEVELS]); 24];
    for r in records {
        let Some(q) = calibration.quantiles_of(r) else {
            continue;
        };
        let hour = phase_of(r.at, calibration.tz).hour;
        n_all += 1;
        hours[hour].0 += 1;
        for k in 0..NUM_LEVELS {
            if r.actual_rps <= q[k] + 1e-12 {
                all[k] += 1;
                hours[hour].1[k] += 1;
            }
        }
    }
    let share = |c: usize, n: usize| {
        if n == 0 {
            f64::NAN
        } else {
            c as f64 / n as f64
        }
    };
    (
        all.iter().map(|c| share(*c, n_all)).collect(),
        hours
            .into_iter()
            .enumerate()
            .map(|(h, (n, c))| (h, n, c.iter().map(|c| share(*c, n)).collect()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator for the tests.
    struct Lcg(u64);
    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn poisson(&mut self, mean: f64) -> f64 {
            // Knuth's method; the means here are small.
            let l = (-mean).exp();
            let (mut k, mut p) = (0.0, 1.0);
            loop {
                p *= self.unit();
                if p <= l {
                    return k;
                }
                k += 1.0;
            }
        }
    }

    fn start() -> DateTime<Utc> {
        "2026-03-02T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn quantiles_by_selection_are_the_sorted_order_statistics() {
        // The conformal quantiles found by selection are exactly those of a sorted copy, with
        // ties, negative zeros and every size from 1 up.
        let mut rng = Lcg(11);
        for n in 1..300 {
            let scores: Vec<f64> = (0..n)
                .map(|i| match i % 7 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => (rng.unit() * 4.0).floor(),
                    _ => rng.unit() * 10.0 - 5.0,
                })
                .collect();
            let mut sorted = scores.clone();
            sorted.sort_by(f64::total_cmp);
            let expected = LEVELS.map(|l| sorted[conformal_rank(n, l) - 1]);
            let keys: Vec<i64> = scores.iter().map(|s| total_key(*s)).collect();
            let got = conformal_quantiles(&mut keys.clone());
            assert_eq!(got.map(f64::to_bits), expected.map(f64::to_bits), "n = {n}");
            assert_eq!(
                conformal_quantile(&mut keys.clone(), LEVELS[WIDTH_LEVEL]).to_bits(),
                expected[WIDTH_LEVEL].to_bits()
            );
        }
        assert_eq!(conformal_quantiles(&mut []), [0.0; NUM_LEVELS]);
    }

    #[test]
    fn count_noise_is_calibrated_at_low_and_high_rates_alike() {
        // Poisson counts around a perfect median: a fleet at 1 request a minute and one at 30.
        let mut rng = Lcg(7);
        let mut records = Vec::new();
        for i in 0..20_000 {
            let per_minute = if i % 2 == 0 { 1.0 } else { 30.0 };
            records.push(Scored {
                at: start() + Duration::minutes(i),
                horizon_secs: 600,
                median_rps: per_minute / 60.0,
                level_rps: per_minute / 60.0,
                actual_rps: rng.poisson(per_minute) / 60.0,
                floor_rps: 1.0 / 60.0,
            });
        }
        let (train, test) = records.split_at(10_000);
        let cal = DemandCalibration::fit(train, None);
        for rate in [1.0, 30.0] {
            let part: Vec<Scored> = test
                .iter()
                .filter(|r| (r.median_rps * 60.0 - rate).abs() < 1e-9)
                .copied()
                .collect();
            let (levels, _) = coverage(&cal, &part);
            for (k, level) in LEVELS.iter().enumerate().filter(|(_, l)| **l >= 0.8) {
                assert!(
                    levels[k] >= level - 0.06,
                    "rate {rate}/min, level {level}: coverage {}",
                    levels[k]
                );
            }
        }
        // The 0.99 quantile is a higher multiple of the median at 1 request a minute.
        let q = |m: f64| {
            cal.quantiles(start(), 600, m / 60.0, m / 60.0, 1.0 / 60.0)
                .unwrap()[13]
                * 60.0
        };
        assert!(q(1.0) / 1.0 > q(30.0) / 30.0, "{} {}", q(1.0), q(30.0));
    }

    #[test]
    fn a_minute_of_the_hour_with_scheduled_bursts_gets_its_own_tail() {
        // Base load of 20 a minute; at :00 and :30 a client adds 60 in a third of the hours.
        let mut rng = Lcg(11);
        let mut records = Vec::new();
        for i in 0..(14 * 1_440) {
            let at = start() + Duration::minutes(i);
            let minute = at.minute();
            let burst = (minute == 0 || minute == 30) && rng.unit() < 1.0 / 3.0;
            let actual = rng.poisson(20.0) + if burst { 60.0 } else { 0.0 };
            records.push(Scored {
                at,
                horizon_secs: 900,
                median_rps: 20.0 / 60.0,
                level_rps: 20.0 / 60.0,
                actual_rps: actual / 60.0,
                floor_rps: 1.0 / 60.0,
            });
        }
        let (train, test) = records.split_at(7 * 1_440);
        let cal = DemandCalibration::fit(train, None);
        let at = |m: u32| start().with_minute(m).unwrap();
        let q90 = |m: u32| {
            cal.quantiles(at(m), 900, 20.0 / 60.0, 20.0 / 60.0, 1.0 / 60.0)
                .unwrap()[8]
                * 60.0
        };
        assert!(
            q90(0) > 60.0,
            "the burst minute's p90 holds the burst: {}",
            q90(0)
        );
        assert!(q90(15) < 35.0, "a quiet minute's p90 does not: {}", q90(15));
        // Calibrated per minute of the hour on the days it never saw.
        for m in [0, 15, 30] {
            let part: Vec<Scored> = test
                .iter()
                .filter(|r| r.at.minute() == m)
                .copied()
                .collect();
            let (levels, _) = coverage(&cal, &part);
            assert!(
                (levels[8] - 0.9).abs() < 0.08,
                "minute {m}: p90 coverage {}",
                levels[8]
            );
        }
    }

    #[test]
    fn quantiles_rise_with_the_level_and_serialize() {
        let records: Vec<Scored> = (0..500)
            .map(|i| Scored {
                at: start() + Duration::minutes(i),
                horizon_secs: (i % 4) * 1_200,
                median_rps: 10.0,
                level_rps: 10.0,
                actual_rps: 10.0 + ((i * 37) % 11) as f64 - 5.0,
                floor_rps: 0.1,
            })
            .collect();
        let cal = DemandCalibration::fit(&records, Some(chrono_tz::America::New_York));
        let q = cal.quantiles(start(), 3_000, 10.0, 10.0, 0.1).unwrap();
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "{q:?}");
        let back: DemandCalibration =
            serde_json::from_str(&serde_json::to_string(&cal).unwrap()).unwrap();
        let again = back.quantiles(start(), 3_000, 10.0, 10.0, 0.1).unwrap();
        assert!(
            q.iter().zip(again).all(|(a, b)| (a - b).abs() < 1e-9),
            "a stored calibration reads back"
        );
        assert_eq!(back, cal, "to the bit");
        assert_eq!(
            DemandCalibration::fit(&[], None).quantiles(start(), 0, 1.0, 1.0, 0.1),
            None
        );
    }

    #[test]
    fn shift_tables_are_stored_packed_and_read_in_either_form() {
        let mut rng = Lcg(5);
        let records: Vec<Scored> = (0..3 * 1_440)
            .map(|i| Scored {
                at: start() + Duration::minutes(i),
                horizon_secs: (i % 3) * 1_200,
                median_rps: 10.0,
                level_rps: 10.0,
                actual_rps: 10.0 + 4.0 * (rng.unit() - 0.5) + if i % 60 == 0 { 20.0 } else { 0.0 },
                floor_rps: 0.1,
            })
            .collect();
        let cal = DemandCalibration::fit(&records, Some(chrono_tz::Europe::Berlin));
        let stored = serde_json::to_value(&cal).unwrap();
        let group = &stored["groups"][0];
        // One string per table, the numbers' bits: 24 and 60 rows of 17.
        let packed = group["by_minute"].as_str().expect("a packed table");
        assert_eq!(packed.len(), (60 * NUM_LEVELS * 8).div_ceil(3) * 4);
        assert!(group["by_hour"].is_string());
        let back: DemandCalibration = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(back, cal, "read back to the bit");
        // A calibration stored before, its tables as arrays of numbers, reads the same.
        let mut plain = stored.clone();
        for (g, fit) in cal.groups.iter().enumerate() {
            let Some(fit) = fit else { continue };
            plain["groups"][g]["by_hour"] = serde_json::to_value(&fit.by_hour).unwrap();
            plain["groups"][g]["by_minute"] = serde_json::to_value(&fit.by_minute).unwrap();
        }
        assert!(plain["groups"][0]["by_minute"].is_array());
        let old: DemandCalibration = serde_json::from_value(plain).unwrap();
        assert_eq!(old, cal);
        // A table cut short says what is wrong.
        let mut cut = stored;
        cut["groups"][0]["by_hour"] = serde_json::Value::String("AAAA".into());
        let err = serde_json::from_value::<DemandCalibration>(cut).unwrap_err();
        assert!(err.to_string().contains("not whole rows"), "{err}");
    }
}
