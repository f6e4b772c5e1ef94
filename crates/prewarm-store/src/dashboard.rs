//! What the operator dashboard reads: every fleet's state in one query, one fleet's last hours,
//! and the hourly tally each tick adds to (requests, estimated timed-out requests, paid GPUs).
//!
//! The tally keeps the dashboard's week of SLO attainment and today's cost at 168 rows per fleet
//! whatever the sample and tick rates, so the all-fleets view reads one row per fleet.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::PgPool;

use crate::{kinds::DecisionMode, OrderKind, OrderState};

/// One tick's view of a fleet, as the tally counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickLoad {
    /// Demand in the last complete sample bucket: work per second in the capacity's unit
    /// (requests per second for a request-counted fleet).
    pub demand_rps: f64,
    /// Requests per second carrying that work (the same as `demand_rps` for a request-counted
    /// fleet).
    pub requests_rps: f64,
    /// GPUs serving.
    pub gpus_ready: u32,
    /// What one GPU does.
    pub capacity: prewarm_planner::Capacity,
    /// How long a request may wait before it is lost, seconds.
    pub timeout_secs: i64,
    /// GPUs paid in full (ready, booting, resuming) plus standby GPUs at their price share.
    pub paid_gpus: f64,
    /// Price of a GPU-hour, US dollars.
    pub price_usd_per_gpu_hour: f64,
}

/// The longest gap between two ticks the tally counts: a longer one (the service was down, the
/// lease moved) is counted as this long, not as hours of demand at the last rate.
pub const MAX_TICK_GAP_SECS: f64 = 300.0;

/// The fluid FIFO queue over one interval of `secs`: work arrives at `demand_rps`, is served at
/// what the ready GPUs do ([`prewarm_planner::Capacity::served`]), and what would wait past the
/// timeout is lost. Returns the backlog of work left and the requests lost (the lost work at the
/// interval's requests per unit of work). The simulator's [`prewarm_planner::accounting`] keeps
/// each minute's arrivals apart; this per-tick estimate carries one backlog, which is what a
/// tick of any length can carry in one stored number.
pub fn queue_step(backlog: f64, secs: f64, load: &TickLoad) -> (f64, f64) {
    let capacity = load.capacity.served(load.gpus_ready, 1.0);
    let queued = (backlog + load.demand_rps * secs - capacity * secs).max(0.0);
    // A queue longer than the timeout's worth of service: its tail waits past the timeout.
    let most = capacity * load.timeout_secs as f64;
    let lost = (queued - most).max(0.0);
    let per_work = if load.demand_rps > 0.0 {
        load.requests_rps / load.demand_rps
    } else {
        1.0
    };
    (queued - lost, lost * per_work)
}

/// Where a fleet's queue estimate stood after a tick: when, and the requests still queued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueState {
    /// The tick's time.
    pub at: DateTime<Utc>,
    /// Requests still waiting then.
    pub backlog: f64,
}

/// One tick's additions to the tally, per UTC hour: `(hour_start, requests, timed_out,
/// gpu_seconds, cost_usd)`, and the queue it leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// The hours the interval touched, oldest first.
    pub hours: Vec<(DateTime<Utc>, f64, f64, f64, f64)>,
    /// The queue estimate after the tick.
    pub after: QueueState,
}

/// What a tick at `now` adds to the tally after `previous` (none: the fleet's first tick, which
/// only starts the count): the interval since, at most [`MAX_TICK_GAP_SECS`], split at hour ends.
/// `None` when `previous` is not before `now` (a later tick already counted it).
pub fn tally(previous: Option<QueueState>, now: DateTime<Utc>, load: &TickLoad) -> Option<Tally> {
    let (since, mut backlog) = match previous {
        Some(p) if p.at >= now => return None,
        Some(p) => {
            let gap = ((now - p.at).num_milliseconds() as f64 / 1000.0).min(MAX_TICK_GAP_SECS);
            (
                now - Duration::milliseconds((gap * 1000.0) as i64),
                p.backlog,
            )
        }
        None => (now, 0.0),
    };
    let mut hours = Vec::new();
    let mut from = since;
    while from < now {
        let hour = from
            .duration_trunc(Duration::hours(1))
            .expect("an hour divides any time");
        let to = (hour + Duration::hours(1)).min(now);
        let secs = (to - from).num_milliseconds() as f64 / 1000.0;
        let (left, lost) = queue_step(backlog, secs, load);
        backlog = left;
        hours.push((
            hour,
            load.requests_rps * secs,
            lost,
            load.paid_gpus * secs,
            load.paid_gpus * secs / 3_600.0 * load.price_usd_per_gpu_hour,
        ));
        from = to;
    }
    Some(Tally {
        hours,
        after: QueueState { at: now, backlog },
    })
}

/// Adds a tick at `now` to the fleet's hourly tally, from `known` (what this process last wrote
/// for the fleet) or, without it, from the database: [`tally_ticks`] for one fleet. Returns the
/// queue state to remember.
pub async fn tally_tick(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    load: &TickLoad,
    known: Option<QueueState>,
) -> Result<Option<QueueState>, sqlx::Error> {
    let tick = TallyTick {
        fleet_id,
        now,
        load: *load,
        known,
    };
    Ok(tally_ticks(pool, &[tick])
        .await?
        .remove(&fleet_id)
        .flatten())
}

/// One fleet's tick for [`tally_ticks`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TallyTick {
    /// The fleet.
    pub fleet_id: i64,
    /// The tick's time.
    pub now: DateTime<Utc>,
    /// What the tick saw.
    pub load: TickLoad,
    /// The queue state this process last wrote for the fleet; `None` reads the stored one.
    pub known: Option<QueueState>,
}

/// Adds many fleets' ticks to their hourly tallies, in one statement for all of them (a fleet
/// ticked more than once is counted in order, one statement per repeat). Each fleet's tick
/// counts from `known`, or without it from the stored state, and is written only while the
/// stored queue state is still that one: a fleet another replica ticked meanwhile is counted
/// again from the stored state (once more, in a second statement). Returns each fleet's queue
/// state to remember.
pub async fn tally_ticks(
    pool: &PgPool,
    ticks: &[TallyTick],
) -> Result<HashMap<i64, Option<QueueState>>, sqlx::Error> {
    // Rounds in which each fleet is once; a repeat counts from what the round before left.
    let mut out: HashMap<i64, Option<QueueState>> = HashMap::with_capacity(ticks.len());
    for (k, round) in crate::distinct_rounds(ticks.iter().map(|t| t.fleet_id))
        .into_iter()
        .enumerate()
    {
        let mut round: Vec<TallyTick> = round.into_iter().map(|i| ticks[i]).collect();
        if k > 0 {
            for t in &mut round {
                if let Some(state) = out.get(&t.fleet_id) {
                    t.known = *state;
                }
            }
        }
        out.extend(tally_once_each(pool, &round).await?);
    }
    Ok(out)
}

/// [`tally_ticks`] for ticks of distinct fleets.
async fn tally_once_each(
    pool: &PgPool,
    ticks: &[TallyTick],
) -> Result<HashMap<i64, Option<QueueState>>, sqlx::Error> {
    let mut out = HashMap::with_capacity(ticks.len());
    let mut previous: HashMap<i64, Option<QueueState>> = ticks
        .iter()
        .filter_map(|t| Some((t.fleet_id, Some(t.known?))))
        .collect();
    let mut pending: Vec<&TallyTick> = ticks.iter().collect();
    for attempt in 0..2 {
        let unknown: Vec<i64> = pending
            .iter()
            .map(|t| t.fleet_id)
            .filter(|id| !previous.contains_key(id))
            .collect();
        if !unknown.is_empty() {
            let mut stored = queue_states(pool, &unknown).await?;
            for id in unknown {
                previous.insert(id, stored.remove(&id));
            }
        }
        let mut rows = TallyRows::default();
        let mut written_if = HashMap::new();
        for t in &pending {
            let before = previous[&t.fleet_id];
            let Some(tally) = tally(before, t.now, &t.load) else {
                out.insert(t.fleet_id, before);
                continue;
            };
            written_if.insert(t.fleet_id, tally.after);
            rows.push(t.fleet_id, before, tally);
        }
        pending.retain(|t| written_if.contains_key(&t.fleet_id));
        if pending.is_empty() {
            break;
        }
        for id in write_tally_rows(pool, &rows).await? {
            if let Some(after) = written_if.remove(&id) {
                out.insert(id, Some(after));
            }
        }
        pending.retain(|t| written_if.contains_key(&t.fleet_id));
        if pending.is_empty() || attempt == 1 {
            break;
        }
        // The stored state moved on: count from it instead.
        for t in &pending {
            previous.remove(&t.fleet_id);
        }
    }
    // Not written twice: the stored state read for the second attempt is the one to remember.
    for t in pending {
        out.insert(t.fleet_id, previous[&t.fleet_id]);
    }
    Ok(out)
}

/// Ticks' rows for [`write_tally_rows`]: per fleet its queue after the tick and the state it
/// expects stored; per hour the tick touched, what it adds.
#[derive(Default)]
struct TallyRows {
    fleet: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    backlog: Vec<f64>,
    before: Vec<Option<DateTime<Utc>>>,
    hour_fleet: Vec<i64>,
    hour: Vec<DateTime<Utc>>,
    requests: Vec<f64>,
    timed_out: Vec<f64>,
    gpu_seconds: Vec<f64>,
    cost: Vec<f64>,
}

impl TallyRows {
    fn push(&mut self, fleet_id: i64, before: Option<QueueState>, tally: Tally) {
        self.fleet.push(fleet_id);
        self.at.push(tally.after.at);
        self.backlog.push(tally.after.backlog);
        self.before.push(before.map(|p| p.at));
        for (hour, requests, timed_out, gpu_seconds, cost) in tally.hours {
            self.hour_fleet.push(fleet_id);
            self.hour.push(hour);
            self.requests.push(requests);
            self.timed_out.push(timed_out);
            self.gpu_seconds.push(gpu_seconds);
            self.cost.push(cost);
        }
    }
}

/// Writes ticks' rows in one statement, each fleet's only while its stored queue state is the
/// one it expects (none: no state stored yet). Returns the fleets written.
async fn write_tally_rows(pool: &PgPool, rows: &TallyRows) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::timestamptz[])
                 AS i(fleet_id, at, backlog, before)),
         moved AS (
             UPDATE fleet_queue fq SET at = i.at, backlog = i.backlog
             FROM input i
             WHERE fq.fleet_id = i.fleet_id AND fq.at = i.before
             RETURNING fq.fleet_id),
         started AS (
             INSERT INTO fleet_queue (fleet_id, at, backlog)
             SELECT fleet_id, at, backlog FROM input WHERE before IS NULL
             ON CONFLICT (fleet_id) DO NOTHING
             RETURNING fleet_id),
         q AS (SELECT fleet_id FROM moved UNION ALL SELECT fleet_id FROM started),
         h AS (
             INSERT INTO fleet_hours (fleet_id, hour_start, requests, timed_out, gpu_seconds, cost_usd)
             SELECT u.f, u.h, u.r, u.t, u.g, u.c
             FROM unnest($5::bigint[], $6::timestamptz[], $7::float8[], $8::float8[], $9::float8[],
                         $10::float8[]) AS u(f, h, r, t, g, c)
             WHERE u.f IN (SELECT fleet_id FROM q)
             ON CONFLICT (fleet_id, hour_start) DO UPDATE SET
                 requests = fleet_hours.requests + EXCLUDED.requests,
                 timed_out = fleet_hours.timed_out + EXCLUDED.timed_out,
                 gpu_seconds = fleet_hours.gpu_seconds + EXCLUDED.gpu_seconds,
                 cost_usd = fleet_hours.cost_usd + EXCLUDED.cost_usd
             RETURNING 1)
         SELECT fleet_id FROM q",
    )
    .bind(&rows.fleet)
    .bind(&rows.at)
    .bind(&rows.backlog)
    .bind(&rows.before)
    .bind(&rows.hour_fleet)
    .bind(&rows.hour)
    .bind(&rows.requests)
    .bind(&rows.timed_out)
    .bind(&rows.gpu_seconds)
    .bind(&rows.cost)
    .fetch_all(pool)
    .await
}

/// The queue estimates the last ticks left, for many fleets in one query.
async fn queue_states(
    pool: &PgPool,
    fleet_ids: &[i64],
) -> Result<HashMap<i64, QueueState>, sqlx::Error> {
    let rows: Vec<(i64, DateTime<Utc>, f64)> =
        sqlx::query_as("SELECT fleet_id, at, backlog FROM fleet_queue WHERE fleet_id = ANY($1)")
            .bind(fleet_ids)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, backlog)| (id, QueueState { at, backlog }))
        .collect())
}

/// Drops tally hours that started before `before`.
pub async fn prune_hours(
    pool: &PgPool,
    fleet_id: i64,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM fleet_hours WHERE fleet_id = $1 AND hour_start < $2")
            .bind(fleet_id)
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// One fleet's row in the all-fleets view: what the fleet's own row ([`crate::Fleet`]) does not
/// hold.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct FleetRow {
    /// The fleet's id.
    pub fleet_id: i64,
    /// The latest decision's time (the last tick).
    pub last_tick: Option<DateTime<Utc>>,
    /// GPUs the latest decision wanted.
    pub desired_gpus: Option<i32>,
    /// GPUs serving at the latest decision.
    pub gpus_ready: Option<i32>,
    /// GPUs booting at the latest decision.
    pub gpus_booting: Option<i32>,
    /// GPUs in standby at the latest decision.
    pub gpus_standby: Option<i32>,
    /// The demand distribution's median then, requests per second.
    pub forecast_p50_rps: Option<f64>,
    /// The quantile planned on then, requests per second.
    pub forecast_upper_rps: Option<f64>,
    /// Demand in the newest sample bucket, requests per second.
    pub demand_rps: Option<f64>,
    /// When that bucket started.
    pub demand_at: Option<DateTime<Utc>>,
    /// The replica holding the fleet's lease (none when no live lease).
    pub lease_holder: Option<String>,
    /// Requests counted over the last 24 hours.
    pub requests_24h: f64,
    /// Of them, estimated timed out.
    pub timed_out_24h: f64,
    /// Requests counted over the last 7 days.
    pub requests_7d: f64,
    /// Of them, estimated timed out.
    pub timed_out_7d: f64,
    /// Paid since the fleet's local midnight (hours that started since), US dollars.
    pub cost_today_usd: f64,
}

/// Every fleet (or the one `only` names) as the all-fleets view shows it, in the order of their
/// names. Leases are on the database's clock, as they are taken (a simulated clock, as in `prewarm
/// demo`, moves the rest only). The tally's hours are summed in one grouped pass for all fleets (a lateral sum per fleet
/// took 160 ms for 1,000 fleets), and the two cases are two statements, so that neither is planned
/// for the other's filter.
pub async fn fleets(
    pool: &PgPool,
    only: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Vec<FleetRow>, sqlx::Error> {
    let (filter, hours_filter) = if only.is_some() {
        ("WHERE id = $2", "AND fleet_id = $2")
    } else {
        ("WHERE $2::bigint IS NULL", "AND $2::bigint IS NULL")
    };
    // The week's tally is summed in one grouped pass over the hours alone; today's cost, which
    // needs each fleet's local midnight, over the last 26 hours only (a local day is at most 25
    // hours long): joining the week's rows to the fleets' midnights made PostgreSQL hash the
    // week's rows, most of the view's time.
    sqlx::query_as(&format!(
        "WITH z AS (
             SELECT id, date_trunc('hour', date_trunc('day', $1 AT TIME ZONE time_zone)
                                          AT TIME ZONE time_zone) AS midnight
             FROM fleets {filter}),
         h AS (
             SELECT fleet_id,
                    sum(requests) FILTER (WHERE hour_start >= $1 - interval '24 hours') AS requests_24h,
                    sum(timed_out) FILTER (WHERE hour_start >= $1 - interval '24 hours') AS timed_out_24h,
                    sum(requests) AS requests_7d, sum(timed_out) AS timed_out_7d
             FROM fleet_hours
             WHERE hour_start >= $1 - interval '7 days' {hours_filter}
             GROUP BY fleet_id),
         c AS (
             SELECT fh.fleet_id, sum(fh.cost_usd) AS cost_today_usd
             FROM fleet_hours fh JOIN z ON z.id = fh.fleet_id
             WHERE fh.hour_start >= $1 - interval '26 hours' AND fh.hour_start >= z.midnight
             GROUP BY fh.fleet_id)
         SELECT f.id AS fleet_id,
                d.decided_at AS last_tick, d.desired_gpus, d.gpus_ready, d.gpus_booting,
                d.gpus_standby, d.forecast_p50_rps, d.forecast_upper_rps,
                s.demand_rps, s.bucket_start AS demand_at,
                l.holder AS lease_holder,
                coalesce(h.requests_24h, 0) AS requests_24h,
                coalesce(h.timed_out_24h, 0) AS timed_out_24h,
                coalesce(h.requests_7d, 0) AS requests_7d,
                coalesce(h.timed_out_7d, 0) AS timed_out_7d,
                coalesce(c.cost_today_usd, 0) AS cost_today_usd
         FROM fleets f
         JOIN z ON z.id = f.id
         LEFT JOIN LATERAL (
             SELECT decided_at, desired_gpus, gpus_ready, gpus_booting, gpus_standby,
                    forecast_p50_rps, forecast_upper_rps
             FROM decisions WHERE fleet_id = f.id ORDER BY decided_at DESC, id DESC LIMIT 1) d ON true
         LEFT JOIN LATERAL (
             SELECT requests / bucket_secs AS demand_rps, bucket_start
             FROM samples WHERE fleet_id = f.id AND bucket_start <= $1
             ORDER BY bucket_start DESC LIMIT 1) s ON true
         LEFT JOIN fleet_leases l ON l.fleet_id = f.id AND l.expires_at > now()
         LEFT JOIN h ON h.fleet_id = f.id
         LEFT JOIN c ON c.fleet_id = f.id
         ORDER BY f.name"
    ))
    .bind(now)
    .bind(only)
    .fetch_all(pool)
    .await
}

/// A decision as one fleet's page shows it, with the orders it wrote.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct PageDecision {
    /// When.
    pub decided_at: DateTime<Utc>,
    /// The mode it was made in.
    pub mode: DecisionMode,
    /// GPUs wanted.
    pub desired_gpus: i32,
    /// GPUs serving.
    pub gpus_ready: i32,
    /// GPUs booting.
    pub gpus_booting: i32,
    /// GPUs in standby.
    pub gpus_standby: i32,
    /// GPUs resuming.
    pub gpus_resuming: i32,
    /// The median planned on, requests per second.
    pub forecast_p50_rps: Option<f64>,
    /// The quantile planned on, requests per second.
    pub forecast_upper_rps: Option<f64>,
    /// Boot lead in use, seconds.
    pub boot_lead_secs: Option<i64>,
    /// Why.
    pub reason: String,
    /// The kinds of the orders it wrote (`boot`, `terminate`, ...), none when it ordered nothing.
    pub orders: Vec<String>,
}

/// A fleet's decisions in `[since, now]`, oldest first.
pub async fn decisions_since(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<PageDecision>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.decided_at, d.mode, d.desired_gpus, d.gpus_ready, d.gpus_booting, d.gpus_standby,
                d.gpus_resuming, d.forecast_p50_rps, d.forecast_upper_rps, d.boot_lead_secs, d.reason,
                coalesce(array_agg(o.kind ORDER BY o.id) FILTER (WHERE o.id IS NOT NULL), '{}') AS orders
         FROM decisions d LEFT JOIN orders o ON o.decision_id = d.id
         WHERE d.fleet_id = $1 AND d.decided_at >= $2 AND d.decided_at <= $3
         GROUP BY d.id ORDER BY d.decided_at, d.id",
    )
    .bind(fleet_id)
    .bind(since)
    .bind(now)
    .fetch_all(pool)
    .await
}

/// An order on one fleet's timeline.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct PageOrder {
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// What it asks for.
    pub kind: OrderKind,
    /// How many GPUs.
    pub count: i32,
    /// Where it is in its delivery.
    pub state: OrderState,
    /// Delivery attempts made.
    pub attempts: i32,
    /// When the provisioner accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last delivery error.
    pub last_error: Option<String>,
}

/// A fleet's orders written in `[since, now]`, oldest first.
pub async fn orders_since(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<PageOrder>, sqlx::Error> {
    sqlx::query_as(
        "SELECT created_at, kind, count, state, attempts, delivered_at, last_error
         FROM orders WHERE fleet_id = $1 AND created_at >= $2 AND created_at <= $3
         ORDER BY created_at, id",
    )
    .bind(fleet_id)
    .bind(since)
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Boot times (seconds) the provisioner reported for instances ready since `since`.
pub async fn boot_times(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
) -> Result<Vec<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT boot_secs FROM instances
         WHERE fleet_id = $1 AND boot_secs IS NOT NULL AND ready_at >= $2 ORDER BY boot_secs",
    )
    .bind(fleet_id)
    .bind(since)
    .fetch_all(pool)
    .await
}

/// Hours of a fleet's tally in `[since, now]`: `(hour_start, requests, timed_out, cost_usd)`.
pub async fn hours_since(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, f64, f64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT hour_start, requests, timed_out, cost_usd FROM fleet_hours
         WHERE fleet_id = $1 AND hour_start >= $2 AND hour_start <= $3 ORDER BY hour_start",
    )
    .bind(fleet_id)
    .bind(since.duration_trunc(Duration::hours(1)).unwrap_or(since))
    .bind(now)
    .fetch_all(pool)
    .await
}
