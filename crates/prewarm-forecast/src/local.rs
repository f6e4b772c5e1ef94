//! Local wall-clock time.
//!
//! Rush hours follow the fleet's clock, not UTC: after a daylight-saving change, 9:00 local is an
//! hour earlier or later in UTC. So a series with a time zone is re-gridded onto local wall-clock
//! buckets before fitting (the skipped spring-forward hour becomes a gap that is interpolated, the
//! repeated autumn hour is averaged), fitted there, and its forecast is read back at the local
//! time of each UTC bucket asked for.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;

use crate::ForecastError;

/// A series on local wall-clock buckets.
#[derive(Debug, Clone)]
pub struct LocalSeries {
    /// Local wall-clock start of the first bucket.
    pub start: NaiveDateTime,
    /// Bucket width in seconds.
    pub step_secs: i64,
    /// Values per local bucket (NaN where nothing was observed).
    pub values: Vec<f64>,
}

/// Local wall-clock time of a UTC instant, or the UTC time itself with no zone.
pub fn local_time(t: DateTime<Utc>, tz: Option<Tz>) -> NaiveDateTime {
    match tz {
        Some(tz) => t.with_timezone(&tz).naive_local(),
        None => t.naive_utc(),
    }
}

fn slot(
    local: NaiveDateTime,
    start: NaiveDateTime,
    step_secs: i64,
    tz: Option<Tz>,
) -> Result<i64, ForecastError> {
    let offset = (local - start).num_seconds();
    if offset.rem_euclid(step_secs) != 0 {
        return Err(ForecastError::ZoneOffGrid {
            step_secs,
            tz: tz
                .map(|t| t.name().to_string())
                .unwrap_or_else(|| "UTC".into()),
            at: local.to_string(),
        });
    }
    Ok(offset.div_euclid(step_secs))
}

/// Re-grids UTC buckets `values` (bucket `i` starts at `start + i * step_secs`) onto local time.
pub fn to_local(
    start: DateTime<Utc>,
    step_secs: i64,
    values: &[f64],
    tz: Option<Tz>,
) -> Result<LocalSeries, ForecastError> {
    // Without a zone, or with no change of its offset within the series, local buckets are the
    // UTC ones.
    let one = tz.is_none_or(|tz| one_offset(start, step_secs, values.len(), tz));
    if !one {
        return regrid(start, step_secs, values, tz);
    }
    Ok(LocalSeries {
        start: local_time(start, tz),
        step_secs,
        values: values.to_vec(),
    })
}

/// [`to_local`] bucket by bucket, whatever the zone's offsets.
fn regrid(
    start: DateTime<Utc>,
    step_secs: i64,
    values: &[f64],
    tz: Option<Tz>,
) -> Result<LocalSeries, ForecastError> {
    let local_start = local_time(start, tz);
    let mut sums: Vec<(f64, u32)> = Vec::with_capacity(values.len() + 16);
    for (i, v) in values.iter().enumerate() {
        let t = start + chrono::Duration::seconds(step_secs * i as i64);
        let s = slot(local_time(t, tz), local_start, step_secs, tz)?;
        let s = usize::try_from(s).unwrap_or(0);
        if s >= sums.len() {
            sums.resize(s + 1, (0.0, 0));
        }
        if !v.is_nan() {
            sums[s].0 += v;
            sums[s].1 += 1;
        }
    }
    Ok(LocalSeries {
        start: local_start,
        step_secs,
        values: sums
            .into_iter()
            .map(|(sum, n)| if n == 0 { f64::NAN } else { sum / n as f64 })
            .collect(),
    })
}

/// Whether `tz` keeps one UTC offset over `len` buckets of `step_secs` from `start`: the same at
/// the first bucket, the last, and every six hours between (a zone changes its offset at most a
/// few times a year, never twice within six hours).
fn one_offset(start: DateTime<Utc>, step_secs: i64, len: usize, tz: Tz) -> bool {
    use chrono::{Offset, TimeZone};
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let first = offset(start);
    let span = step_secs * len.saturating_sub(1) as i64;
    let mut at = 0;
    while at < span {
        if offset(start + chrono::Duration::seconds(at)) != first {
            return false;
        }
        at += 6 * 3_600;
    }
    offset(start + chrono::Duration::seconds(span)) == first
}

/// For each of `targets` (UTC bucket starts after the history), the local slot it falls in,
/// as an index into the local series (which may be inside the history after an autumn change).
pub(crate) fn target_slots(
    series: &LocalSeries,
    targets: &[DateTime<Utc>],
    tz: Option<Tz>,
) -> Result<Vec<usize>, ForecastError> {
    targets
        .iter()
        .map(|t| {
            slot(local_time(*t, tz), series.start, series.step_secs, tz)
                .map(|s| usize::try_from(s).unwrap_or(0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_forward_leaves_a_gap_and_autumn_averages_the_repeated_hour() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 02:00 local does not exist: 06:00Z is 01:00 EST, 07:00Z is 03:00 EDT.
        let start: DateTime<Utc> = "2026-03-08T06:00:00Z".parse().unwrap();
        let s = to_local(start, 3600, &[1.0, 2.0, 3.0], Some(tz)).unwrap();
        assert_eq!(s.values.len(), 4);
        assert!(s.values[1].is_nan());
        assert_eq!((s.values[0], s.values[2], s.values[3]), (1.0, 2.0, 3.0));

        // 2026-11-01 01:00 local happens twice: 05:00Z (EDT) and 06:00Z (EST).
        let start: DateTime<Utc> = "2026-11-01T04:00:00Z".parse().unwrap();
        let s = to_local(start, 3600, &[1.0, 2.0, 4.0, 5.0], Some(tz)).unwrap();
        assert_eq!(s.values, vec![1.0, 3.0, 5.0]);
        let next: DateTime<Utc> = "2026-11-01T08:00:00Z".parse().unwrap();
        assert_eq!(target_slots(&s, &[next], Some(tz)).unwrap(), vec![3]);
    }

    #[test]
    fn a_series_with_one_offset_is_regridded_as_bucket_by_bucket() {
        let values: Vec<f64> = (0..4_000)
            .map(|i| {
                if i % 97 == 0 {
                    f64::NAN
                } else {
                    i as f64 * 0.5
                }
            })
            .collect();
        for (zone, start) in [
            ("Europe/Berlin", "2026-01-05T00:00:00Z"),    // winter only
            ("Europe/Berlin", "2026-03-20T00:05:00Z"),    // across the spring change
            ("America/New_York", "2026-10-25T04:00:00Z"), // across the autumn change
            ("Asia/Kolkata", "2026-06-01T00:00:00Z"),     // a half-hour offset, no changes
        ] {
            let tz: Tz = zone.parse().unwrap();
            let start: DateTime<Utc> = start.parse().unwrap();
            for step in [60, 300] {
                let fast = to_local(start, step, &values, Some(tz)).unwrap();
                let slow = regrid(start, step, &values, Some(tz)).unwrap();
                assert_eq!(fast.start, slow.start);
                assert_eq!(fast.values.len(), slow.values.len(), "{zone} {step}");
                for (a, b) in fast.values.iter().zip(&slow.values) {
                    assert!(a.to_bits() == b.to_bits(), "{zone} {step}: {a} against {b}");
                }
            }
        }
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let across: DateTime<Utc> = "2026-03-20T00:00:00Z".parse().unwrap();
        assert!(!one_offset(across, 300, 4_000, berlin));
        assert!(one_offset(across, 300, 1_000, berlin));
    }

    #[test]
    fn an_interval_off_the_zone_grid_is_refused() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap(); // UTC+5:30
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let e = to_local(start, 3600, &[1.0, 2.0], Some(tz));
        assert!(e.is_ok(), "a constant offset keeps the grid");
        // A 2-hour step straddling New York's change is off grid.
        let tz: Tz = "America/New_York".parse().unwrap();
        let start: DateTime<Utc> = "2026-03-08T04:00:00Z".parse().unwrap();
        let e = to_local(start, 7200, &[1.0, 2.0, 3.0], Some(tz)).unwrap_err();
        assert!(e.to_string().contains("does not divide"), "{e}");
    }
}
