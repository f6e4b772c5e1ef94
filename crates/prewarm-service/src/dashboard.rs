//! The operator dashboard: a page at `/` (HTML, script and style compiled into the binary, no
//! network beyond this service) and the two reads it draws from.
//!
//! - `GET /`, `/dashboard.js`, `/dashboard.css`: the page. It holds no data and no secret: it asks
//!   for an API token once (kept in the browser's local storage) and calls the API with it.
//! - `GET /v1/dashboard` (scope `read`): every fleet the token covers, one row each: mode, GPUs,
//!   demand now against the band, timed-out share over 24 hours and 7 days, cost today, the lease
//!   holder, the last tick and refit.
//! - `GET /v1/fleets/{fleet}/dashboard?hours=N` (scope `read`, 1 to 168 hours, 24 by default): one
//!   fleet's demand, band, GPUs, decisions with their orders, orders, boot times, band coverage
//!   and the hourly tally over the last N hours, and the live forecast for the hours ahead.
//!
//! The page sets a Content-Security-Policy that runs only its own script and builds every text
//! with `textContent`: a fleet name, event label or reason is shown as text, never markup.

use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, Duration, Utc};
use prewarm_store::{dashboard, Scope};
use serde_json::json;

use crate::api::{db_error, error, grant_for, ingest_error, Authorized, Read, Shared};

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// Only the page's own script and style, and calls to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard page.
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// A share of requests, or none when there were none.
fn share(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// `GET /v1/dashboard`: every fleet the token covers.
pub(crate) async fn fleets(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let grant = match grant_for(&s, &headers, Scope::Read).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let now = s.clock.now();
    let (rows, fleets) = match tokio::try_join!(
        async {
            dashboard::fleets(&s.pool, grant.fleet_id, now)
                .await
                .map_err(db_error)
        },
        async {
            prewarm_store::list_fleets(&s.pool)
                .await
                .map_err(ingest_error)
        }
    ) {
        Ok(both) => both,
        Err(r) => return r,
    };
    let by_id: std::collections::HashMap<i64, &prewarm_store::Fleet> =
        fleets.iter().map(|f| (f.id, f)).collect();
    let out: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|r| {
            // A fleet created between the two reads is left for the next refresh.
            let fleet = by_id.get(&r.fleet_id)?;
            let cfg = s.planner_config(fleet, &[]);
            let band = match (r.demand_rps, r.forecast_p50_rps, r.forecast_upper_rps) {
                (Some(d), _, Some(u)) if d > u => "above",
                (Some(d), Some(p), _) if d <= p => "under median",
                (Some(_), Some(_), Some(_)) => "in band",
                _ => "no forecast",
            };
            Some(json!({
                "name": fleet.name,
                "time_zone": fleet.time_zone,
                "mode": s.mode_of(fleet, now).name(),
                "pinned_gpus": fleet.pinned_gpus,
                "pinned_until": fleet.pinned_until,
                "desired_gpus": r.desired_gpus,
                "gpus_ready": r.gpus_ready,
                "gpus_booting": r.gpus_booting,
                "gpus_standby": r.gpus_standby,
                "demand_rps": r.demand_rps,
                "demand_at": r.demand_at,
                "forecast_p50_rps": r.forecast_p50_rps,
                "forecast_upper_rps": r.forecast_upper_rps,
                "band": band,
                "slo_max_timeout_share": cfg.slo.max_timeout_share,
                "timed_out_share_24h": share(r.timed_out_24h, r.requests_24h),
                "timed_out_share_7d": share(r.timed_out_7d, r.requests_7d),
                "requests_24h": r.requests_24h,
                "cost_today_usd": r.cost_today_usd,
                "lease_holder": r.lease_holder,
                "last_tick": r.last_tick,
                "last_refit": fleet.refit_at,
                "refit_note": fleet.refit_note,
            }))
        })
        .collect();
    Json(json!({
        "now": now,
        "replica": s.replica(),
        "service_mode": s.config.service.mode,
        "fleets": out,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct Hours {
    hours: Option<i64>,
}

/// The share of demand buckets at or under the band the decision in force then planned on, per
/// hour: `(hour_start, buckets compared, buckets covered)`.
fn coverage(
    demand: &[(DateTime<Utc>, i32, f64)],
    decisions: &[dashboard::PageDecision],
) -> Vec<(DateTime<Utc>, u32, u32)> {
    let mut out: Vec<(DateTime<Utc>, u32, u32)> = Vec::new();
    let mut d = 0;
    for (start, secs, requests) in demand {
        // The decision in force while the bucket ran: the last one made by its start.
        while d + 1 < decisions.len() && decisions[d + 1].decided_at <= *start {
            d += 1;
        }
        let Some(upper) = decisions
            .get(d)
            .filter(|x| x.decided_at <= *start)
            .and_then(|x| x.forecast_upper_rps)
        else {
            continue;
        };
        let hour = *start - Duration::seconds(start.timestamp().rem_euclid(3_600));
        let covered = u32::from(requests / *secs as f64 <= upper);
        match out.last_mut() {
            Some(last) if last.0 == hour => {
                last.1 += 1;
                last.2 += covered;
            }
            _ => out.push((hour, 1, covered)),
        }
    }
    out
}

/// `GET /v1/fleets/{fleet}/dashboard?hours=N`: one fleet's page.
pub(crate) async fn fleet(
    State(s): State<Shared>,
    a: Authorized<Read>,
    Query(q): Query<Hours>,
) -> Response {
    let hours = q.hours.unwrap_or(24);
    if !(1..=168).contains(&hours) {
        return error(StatusCode::BAD_REQUEST, "hours must be 1 to 168");
    }
    let now = s.clock.now();
    let since = now - Duration::hours(hours);
    let id = a.fleet.id;
    let pool = &s.pool;
    let capacity = a.fleet.capacity();
    let gathered = tokio::try_join!(
        prewarm_store::samples::raw_buckets(pool, id, &capacity, since, now),
        dashboard::decisions_since(pool, id, since, now),
        dashboard::orders_since(pool, id, since, now),
        dashboard::boot_times(pool, id, now - Duration::days(7)),
        crate::callbacks::boot_stats(pool, id, now - Duration::days(7)),
        dashboard::hours_since(pool, id, since, now),
        crate::forecasts::latest_live_row(pool, id),
        s.events(id),
        prewarm_store::leases::holder(pool, id),
    );
    let (demand, decisions, orders, boots, stats, tally, live, events, holder) = match gathered {
        Ok(all) => all,
        Err(e) => return db_error(e),
    };
    let events_cfg = s.planner_config(&a.fleet, &events);
    // The lead the tick uses, from the same statistics as `/boot-stats`.
    let lead = s.lead_from(&stats).unwrap_or(events_cfg.boot_lead_secs);
    // Each point: start, median, the level planned on, and which quantile that level is (the SLO
    // sizer's for the local hour), so the band is labelled with what it really is.
    let ahead: Vec<serde_json::Value> = live
        .as_ref()
        .map(|row| {
            let levels: Option<prewarm_planner::LevelPlan> = row
                .levels
                .clone()
                .and_then(|l| serde_json::from_value(l).ok());
            row.p50_rps
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let start = row.origin + Duration::seconds(row.step_secs as i64 * i as i64);
                    let level = prewarm_planner::planned_level(&events_cfg, levels.as_ref(), start);
                    (start >= since && start <= now + Duration::hours(hours.min(12))).then(|| {
                        json!([
                            start,
                            p,
                            row.upper_rps.as_ref().and_then(|u| u.get(i)),
                            row.upper_rps
                                .as_ref()
                                .map(|_| prewarm_planner::LEVELS[level])
                        ])
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    // Work buckets (requests for a request-counted fleet): what the band is a band of.
    let work: Vec<(DateTime<Utc>, i32, f64)> = demand
        .iter()
        .filter(|b| b.work.is_finite())
        .map(|b| (b.start, b.secs, b.work))
        .collect();
    let cover = coverage(&work, &decisions);
    let fleet = &a.fleet;
    // Shadow mode's comparison over the window, for a fleet whose real replicas are observed.
    let shadow = match crate::shadow::over(&s, fleet, hours).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(fleet = fleet.name, error = %e, "the shadow comparison failed");
            None
        }
    };
    Json(json!({
        "now": now,
        "since": since,
        "fleet": {
            "name": fleet.name,
            "time_zone": fleet.time_zone,
            "mode": s.mode_of(fleet, now).name(),
            "paused": fleet.paused,
            "pinned_gpus": fleet.pinned_gpus,
            "pinned_until": fleet.pinned_until,
            "gpu_rps": fleet.gpu_rps,
            "gpu_profile": fleet.gpu_profile,
            "capacity": capacity,
            "demand_unit": capacity.unit(),
            "min_gpus": fleet.min_gpus,
            "max_gpus": fleet.max_gpus,
            "price_usd_per_gpu_hour": fleet.price_usd_per_gpu_hour,
            "slo": events_cfg.slo,
            "lease_holder": holder,
            "last_refit": fleet.refit_at,
            "refit_note": fleet.refit_note,
        },
        // [start, work per second, requests per second, prompt and output tokens per second
        // (null without them)] per bucket.
        "demand": demand.iter().filter(|b| b.work.is_finite()).map(|b| {
            let per_sec = |v: f64| (v.is_finite()).then(|| v / b.secs as f64);
            json!([b.start, b.work / b.secs as f64, b.requests / b.secs as f64, per_sec(b.tokens_in), per_sec(b.tokens_out)])
        }).collect::<Vec<_>>(),
        "decisions": decisions,
        "forecast": { "model": live.as_ref().map(|r| &r.model), "made_at": live.as_ref().map(|r| r.made_at), "points": ahead },
        "orders": orders,
        "boot": {
            "secs": boots,
            "p50_secs": stats.p50_secs,
            "p95_secs": stats.p95_secs,
            "lead_in_use_secs": lead,
        },
        "coverage": cover.iter().map(|(h, n, c)| json!({ "hour": h, "buckets": n, "covered": c })).collect::<Vec<_>>(),
        "hours": tally.iter().map(|(h, r, t, c)| json!({ "hour": h, "requests": r, "timed_out": t, "cost_usd": c })).collect::<Vec<_>>(),
        "events": events,
        "shadow": shadow,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(at: DateTime<Utc>, upper: Option<f64>) -> dashboard::PageDecision {
        dashboard::PageDecision {
            decided_at: at,
            mode: prewarm_store::DecisionMode::Act,
            desired_gpus: 1,
            gpus_ready: 1,
            gpus_booting: 0,
            gpus_standby: 0,
            gpus_resuming: 0,
            forecast_p50_rps: upper.map(|u| u / 2.0),
            forecast_upper_rps: upper,
            boot_lead_secs: None,
            reason: String::new(),
            orders: vec![],
        }
    }

    #[test]
    fn coverage_compares_each_bucket_with_the_band_in_force_and_counts_per_hour() {
        let t0: DateTime<Utc> = "2026-03-02T10:00:00Z".parse().unwrap();
        let m = |n: i64| t0 + Duration::minutes(n);
        // 10 rps upper from 10:00, 2 rps from 10:30; nothing planned on before 10:00.
        let decisions = [decision(m(0), Some(10.0)), decision(m(30), Some(2.0))];
        let demand = [
            (m(-5), 300, 60.0 * 5.0),   // before any decision: not compared
            (m(0), 300, 9.0 * 300.0),   // 9 rps <= 10: covered
            (m(25), 300, 11.0 * 300.0), // 11 rps > 10: not
            (m(30), 300, 2.0 * 300.0),  // 2 rps <= 2: covered
            (m(60), 300, 3.0 * 300.0),  // next hour, 3 > 2: not
        ];
        let c = coverage(&demand, &decisions);
        assert_eq!(c, vec![(m(0), 3, 2), (m(60), 1, 0)]);
    }
}
