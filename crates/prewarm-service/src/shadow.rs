//! Shadow mode: what prewarm would have saved or lost next to a fleet it does not scale.
//!
//! A fleet planned in forecast-only mode while its real replicas are observed records, each
//! minute, what prewarm would want (the decision's desired GPUs) next to what the real fleet had
//! (the observation). [`compare`] replays both over a window through the same fluid queue the
//! simulator uses, on the fleet's recorded demand: the real fleet serves with the GPUs it had
//! ready and pays for the GPUs it had (ready or starting); prewarm's pays for what it wanted from
//! the minute it wanted it (boots billed from the order) and serves with what it had wanted
//! continuously for a boot lead (a GPU wanted at t serves from t + lead; one let go stops at once).

use chrono::{DateTime, Duration, Utc};
use prewarm_planner::{
    accounting::{Accounting, BootTime, SimConfig},
    Capacity,
};
use prewarm_store::observed::Observation;

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Side {
    /// GPU-hours paid.
    pub gpu_hours: f64,
    /// Their cost, US dollars.
    pub cost_usd: f64,
    /// Requests that waited past the timeout.
    pub timed_out_requests: f64,
    /// Their share of the requests.
    pub timed_out_share: f64,
}

/// What prewarm would have done against what the real fleet did, over the minutes both are known.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Start of the window.
    pub from: DateTime<Utc>,
    /// End of the window.
    pub to: DateTime<Utc>,
    /// Minutes compared: those with an observation and a decision at or before them.
    pub minutes: usize,
    /// Requests in those minutes.
    pub requests: f64,
    /// The real fleet.
    pub real: Side,
    /// prewarm's decisions.
    pub prewarm: Side,
    /// GPU-hours prewarm would have saved (negative: spent more).
    pub saved_gpu_hours: f64,
    /// Dollars prewarm would have saved (negative: spent more).
    pub saved_usd: f64,
    /// Requests prewarm would have timed out beyond the real fleet's (negative: fewer).
    pub extra_timed_out_requests: f64,
    /// The boot lead prewarm's GPUs were given.
    pub boot_lead_secs: i64,
}

/// What the comparison reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Demand per minute from `from`: (work in the capacity's unit, requests).
    pub demand: &'a [(f64, f64)],
    /// The real fleet's observations, oldest first (some may be before `from`).
    pub observations: &'a [Observation],
    /// prewarm's decisions (time, desired GPUs), oldest first (some may be before `from`).
    pub decisions: &'a [(DateTime<Utc>, u32)],
    /// GPUs per replica of the real fleet.
    pub gpus_per_replica: u32,
    /// What a GPU does.
    pub capacity: Capacity,
    /// A request waiting longer than this is lost.
    pub timeout_secs: i64,
    /// Price of a GPU-hour.
    pub price_usd_per_gpu_hour: f64,
    /// The boot lead.
    pub boot_lead_secs: i64,
}

/// The latest value at or before `t` of a time-ordered series.
fn at<T: Copy>(series: &[(DateTime<Utc>, T)], t: DateTime<Utc>) -> Option<T> {
    let i = series.partition_point(|(s, _)| *s <= t);
    (i > 0).then(|| series[i - 1].1)
}

/// Replays both sides over the minutes from `from`.
pub fn compare(from: DateTime<Utc>, inputs: &Inputs<'_>) -> Comparison {
    let per = inputs.gpus_per_replica.max(1);
    let observed: Vec<(DateTime<Utc>, (u32, u32))> = inputs
        .observations
        .iter()
        .map(|o| {
            let ready = o.ready_replicas.max(0) as u32 * per;
            let paid = o.desired_replicas.max(o.ready_replicas).max(0) as u32 * per;
            (o.observed_at, (ready, paid))
        })
        .collect();
    let sim = SimConfig {
        capacity: inputs.capacity,
        timeout_secs: inputs.timeout_secs,
        boot: BootTime::Fixed {
            secs: inputs.boot_lead_secs,
        },
        price_usd_per_gpu_hour: inputs.price_usd_per_gpu_hour,
        score_from_step: 0,
        standby: None,
    };
    let (mut real, mut ours) = (Accounting::new(60, &sim), Accounting::new(60, &sim));
    let lead_minutes = (inputs.boot_lead_secs.max(0) as usize).div_ceil(60);
    // prewarm's wanted GPUs per compared minute, to know what it has had for a boot lead.
    let mut wanted: Vec<u32> = Vec::new();
    let mut start_paid = None;
    let mut step = 0usize;
    let mut requests = 0.0;
    for (m, &(work, reqs)) in inputs.demand.iter().enumerate() {
        let t = from + Duration::minutes(m as i64 + 1) - Duration::seconds(1);
        let (Some((ready, paid)), Some(want)) = (at(&observed, t), at(inputs.decisions, t)) else {
            continue;
        };
        // Before a boot lead has passed, prewarm starts from what the real fleet had.
        let start = *start_paid.get_or_insert(paid);
        wanted.push(want);
        let k = wanted.len() - 1;
        let since = k.saturating_sub(lead_minutes);
        let mut ours_ready = wanted[since..=k].iter().copied().min().unwrap_or(0);
        if k < lead_minutes {
            ours_ready = ours_ready.min(start);
        }
        real.step(step, work, reqs, ready, paid, 0, false);
        ours.step(step, work, reqs, ours_ready, want, 0, false);
        requests += reqs;
        step += 1;
    }
    let side = |a: &Accounting| {
        let s = a.summary("");
        Side {
            gpu_hours: s.gpu_hours,
            cost_usd: s.cost_usd,
            timed_out_requests: s.timed_out_requests,
            timed_out_share: s.timed_out_share,
        }
    };
    let (real, prewarm) = (side(&real), side(&ours));
    Comparison {
        from,
        to: from + Duration::minutes(inputs.demand.len() as i64),
        minutes: step,
        requests,
        saved_gpu_hours: real.gpu_hours - prewarm.gpu_hours,
        saved_usd: real.cost_usd - prewarm.cost_usd,
        extra_timed_out_requests: prewarm.timed_out_requests - real.timed_out_requests,
        real,
        prewarm,
        boot_lead_secs: inputs.boot_lead_secs,
    }
}

/// The comparison over the last `hours` for a fleet, read from the database; `None` when the
/// fleet's real replicas were not observed in the window.
pub async fn over(
    s: &crate::engine::Service,
    fleet: &prewarm_store::Fleet,
    hours: i64,
) -> Result<Option<Comparison>, crate::error::ServiceError> {
    let now = s.clock.now();
    let to = now - Duration::seconds(now.timestamp().rem_euclid(60));
    let from = to - Duration::hours(hours);
    let cfg = s.planner_config(fleet, &[]);
    let lead = s.boot_lead(fleet.id, cfg.boot_lead_secs, now).await?;
    let look_back = from - Duration::hours(1);
    let observations = prewarm_store::observed::history(&s.pool, fleet.id, look_back, to).await?;
    if observations.is_empty() {
        return Ok(None);
    }
    let decisions: Vec<(DateTime<Utc>, i32)> = sqlx::query_as(
        "SELECT decided_at, desired_gpus FROM decisions
         WHERE fleet_id = $1 AND decided_at >= $2 AND decided_at < $3 ORDER BY decided_at, id",
    )
    .bind(fleet.id)
    .bind(look_back)
    .bind(to)
    .fetch_all(&s.pool)
    .await?;
    let buckets =
        prewarm_store::samples::raw_buckets(&s.pool, fleet.id, &cfg.capacity, from, to).await?;
    let decisions: Vec<(DateTime<Utc>, u32)> = decisions
        .into_iter()
        .map(|(t, d)| (t, d.max(0) as u32))
        .collect();
    let demand = per_minute(&buckets, from, to);
    Ok(Some(compare(
        from,
        &Inputs {
            demand: &demand,
            observations: &observations,
            decisions: &decisions,
            gpus_per_replica: fleet.gpus_per_replica.max(1) as u32,
            capacity: cfg.capacity,
            timeout_secs: cfg.slo.timeout_secs,
            price_usd_per_gpu_hour: fleet.price_usd_per_gpu_hour,
            boot_lead_secs: lead,
        },
    )))
}

/// Demand per minute over `[from, to)` from stored buckets (a wider bucket spread evenly over
/// its minutes; a missing minute is no demand).
pub fn per_minute(
    buckets: &[prewarm_store::samples::RawBucket],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(f64, f64)> {
    let n = ((to - from).num_seconds().max(0) / 60) as usize;
    let mut out = vec![(0.0, 0.0); n];
    for b in buckets {
        if !b.work.is_finite() {
            continue;
        }
        let minutes = (b.secs.max(1) as u32).div_ceil(60) as i64;
        for j in 0..minutes {
            let t = b.start + Duration::minutes(j);
            let m = (t - from).num_seconds().div_euclid(60);
            if (0..n as i64).contains(&m) {
                let o = &mut out[m as usize];
                o.0 += b.work / minutes as f64;
                o.1 += b.requests / minutes as f64;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn obs(min: i64, ready: i32, desired: i32) -> Observation {
        Observation {
            observed_at: t0() + Duration::minutes(min),
            ready_replicas: ready,
            desired_replicas: desired,
        }
    }

    #[test]
    fn a_fleet_kept_at_its_peak_is_dearer_than_prewarm_s_plan_and_a_late_one_loses_requests() {
        // Two hours: 2 requests a second, then 8 from minute 60 (a GPU serves 1 a second).
        let demand: Vec<(f64, f64)> = (0..120)
            .map(|m| {
                if m < 60 {
                    (120.0, 120.0)
                } else {
                    (480.0, 480.0)
                }
            })
            .collect();
        // The real fleet sits at 10 GPUs all along.
        let observations = [obs(0, 10, 10)];
        // prewarm wants 3, then 9 from minute 45 (a boot lead of 10 minutes before the rush).
        let decisions = [(t0(), 3), (t0() + Duration::minutes(45), 9)];
        let inputs = Inputs {
            demand: &demand,
            observations: &observations,
            decisions: &decisions,
            gpus_per_replica: 1,
            capacity: Capacity::requests(1.0),
            timeout_secs: 120,
            price_usd_per_gpu_hour: 3.0,
            boot_lead_secs: 600,
        };
        let c = compare(t0(), &inputs);
        assert_eq!(c.minutes, 120);
        assert!((c.real.gpu_hours - 20.0).abs() < 1e-9, "{c:?}");
        // 3 GPUs for 45 minutes and 9 for 75: 2.25 + 11.25 = 13.5 GPU-hours.
        assert!((c.prewarm.gpu_hours - 13.5).abs() < 1e-9, "{c:?}");
        assert!((c.saved_gpu_hours - 6.5).abs() < 1e-9);
        assert!((c.saved_usd - 19.5).abs() < 1e-9);
        assert_eq!(c.real.timed_out_requests, 0.0);
        assert_eq!(c.prewarm.timed_out_requests, 0.0, "{c:?}");
        // Wanted only at minute 58: the GPUs serve from minute 68, and the rush's first minutes
        // time out.
        let late = [(t0(), 3), (t0() + Duration::minutes(58), 9)];
        let c = compare(
            t0(),
            &Inputs {
                decisions: &late,
                ..inputs
            },
        );
        assert!(c.extra_timed_out_requests > 0.0, "{c:?}");
        assert!(c.prewarm.timed_out_share > 0.0);
    }

    #[test]
    fn minutes_without_an_observation_or_a_decision_are_not_compared() {
        let demand = vec![(60.0, 60.0); 30];
        let observations = [obs(10, 2, 2)];
        let decisions = [(t0() + Duration::minutes(20), 2)];
        let c = compare(
            t0(),
            &Inputs {
                demand: &demand,
                observations: &observations,
                decisions: &decisions,
                gpus_per_replica: 2,
                capacity: Capacity::requests(1.0),
                timeout_secs: 120,
                price_usd_per_gpu_hour: 3.0,
                boot_lead_secs: 600,
            },
        );
        assert_eq!(c.minutes, 10);
        assert!((c.requests - 600.0).abs() < 1e-9);
        // The real fleet: 2 replicas of 2 GPUs for 10 minutes.
        assert!((c.real.gpu_hours - 4.0 / 6.0).abs() < 1e-9, "{c:?}");
    }
}
