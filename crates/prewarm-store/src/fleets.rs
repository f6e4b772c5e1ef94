//! Fleets: creating, listing, changing and deleting them.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use prewarm_planner::defaults;
use sqlx::PgPool;

use crate::StoreError;

/// What a fleet is made with.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct FleetSpec {
    /// The fleet's name (1 to 63 letters, digits, `.`, `_`, `-`).
    pub name: String,
    #[serde(default = "default_tz")]
    /// IANA time zone of the fleet's users.
    pub time_zone: String,
    #[serde(default)]
    /// GPU type, for people reading the configuration.
    pub gpu_type: String,
    #[serde(default = "default_gpu_rps")]
    /// Requests per second one GPU serves at full load.
    pub gpu_rps: f64,
    #[serde(default = "default_price")]
    /// Price of a GPU-hour, US dollars.
    pub price_usd_per_gpu_hour: f64,
    #[serde(default = "default_min")]
    /// Fewest GPUs the fleet keeps.
    pub min_gpus: i32,
    #[serde(default = "default_max")]
    /// Most GPUs the fleet may have.
    pub max_gpus: i32,
    #[serde(default)]
    /// Spending limit, US dollars per hour (none: no limit).
    pub budget_usd_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The fleet's own planner settings (the standby tier, the SLO...), as
    /// `PUT /v1/fleets/{fleet}/planner` sets them.
    pub planner: Option<prewarm_planner::Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The GPU profile the fleet plans with: it then plans in tokens (none: in requests, at
    /// `gpu_rps`).
    pub gpu_profile: Option<String>,
    #[serde(default = "default_gpus_per_replica")]
    /// GPUs one replica holds (a vLLM pod with tensor parallelism 4 holds 4): a fleet scaled in
    /// replicas (KEDA, an observed Deployment) is planned in GPUs and scaled in replicas.
    pub gpus_per_replica: i32,
}

fn default_gpus_per_replica() -> i32 {
    1
}

fn default_tz() -> String {
    "UTC".into()
}
fn default_gpu_rps() -> f64 {
    defaults::GPU_RPS
}
fn default_price() -> f64 {
    defaults::PRICE_USD_PER_GPU_HOUR
}
fn default_min() -> i32 {
    defaults::MIN_GPUS as i32
}
fn default_max() -> i32 {
    defaults::MAX_GPUS as i32
}

impl FleetSpec {
    /// A fleet with default settings.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            time_zone: default_tz(),
            gpu_type: String::new(),
            gpu_rps: default_gpu_rps(),
            price_usd_per_gpu_hour: default_price(),
            min_gpus: default_min(),
            max_gpus: default_max(),
            budget_usd_per_hour: None,
            planner: None,
            gpu_profile: None,
            gpus_per_replica: 1,
        }
    }
}

/// A stored fleet: its settings, and what its operators set (pause, pin, planner settings).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Fleet {
    /// The row's id.
    pub id: i64,
    /// The fleet's name (1 to 63 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Parsed once, when the row is read: a name the time zone database does not know is an
    /// error then, not a silent UTC later.
    pub time_zone: TimeZone,
    /// GPU type, for people reading the configuration.
    pub gpu_type: String,
    /// Requests per second one GPU serves at full load.
    pub gpu_rps: f64,
    /// Price of a GPU-hour, US dollars.
    pub price_usd_per_gpu_hour: f64,
    /// Fewest GPUs the fleet keeps.
    pub min_gpus: i32,
    /// Most GPUs the fleet may have.
    pub max_gpus: i32,
    /// Spending limit, US dollars per hour (none: no limit).
    pub budget_usd_per_hour: Option<f64>,
    /// The fleet's own planner settings (`prewarm_planner::Settings` as JSON).
    pub planner: serde_json::Value,
    /// Paused by an operator: decisions are recorded, nothing is ordered.
    pub paused: bool,
    /// Pinned by an operator to this many GPUs.
    pub pinned_gpus: Option<i32>,
    /// Until when the pin holds (none: until cleared).
    pub pinned_until: Option<DateTime<Utc>>,
    /// When the fleet's last refit ran, and what it did (a forecast, or why none was made).
    pub refit_at: Option<DateTime<Utc>>,
    /// What the last refit did.
    pub refit_note: Option<String>,
    /// Set when a deletion was asked for while the fleet had GPUs: the tick terminates them, and
    /// deletes the fleet once they are gone.
    pub draining_since: Option<DateTime<Utc>>,
    /// Who asked for the deletion.
    pub drain_requested_by: Option<String>,
    /// The GPU profile the fleet plans with (none: it plans in requests).
    pub gpu_profile: Option<String>,
    /// The profile's prefill rate, prompt tokens per second per GPU.
    pub prefill_tps: Option<f64>,
    /// The profile's decode rate, output tokens per second per GPU.
    pub decode_tps: Option<f64>,
    /// GPUs one replica holds.
    pub gpus_per_replica: i32,
}

impl Fleet {
    /// The fleet's time zone.
    pub fn tz(&self) -> Tz {
        self.time_zone.0
    }

    /// What one of the fleet's GPUs does: its profile's token rates, or `gpu_rps` requests per
    /// second.
    pub fn capacity(&self) -> prewarm_planner::Capacity {
        match (self.prefill_tps, self.decode_tps) {
            (Some(p), Some(d)) => prewarm_planner::Capacity::Tokens(prewarm_planner::TokenRates {
                prefill_tps: p,
                decode_tps: d,
            }),
            _ => prewarm_planner::Capacity::requests(self.gpu_rps),
        }
    }

    /// The fleet's own planner settings; unset ones come from the service's `[planner]`. Stored
    /// settings were checked when they were set; a value no longer readable counts as unset.
    pub fn planner_settings(&self) -> prewarm_planner::Settings {
        serde_json::from_value(self.planner.clone()).unwrap_or_default()
    }
}

/// A fleet's time zone, stored as its IANA name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub Tz);

impl std::fmt::Display for TimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl serde::Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl sqlx::Type<sqlx::Postgres> for TimeZone {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for TimeZone {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        name.parse::<Tz>().map(TimeZone).map_err(|_| {
            format!(
                "stored time zone `{}` is not one this build knows (an IANA name such as Europe/Berlin)",
                prewarm_core::shorten(name, 80)
            )
            .into()
        })
    }
}

/// One scheduled event on a fleet's wall clock, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct FleetEvent {
    #[serde(default)]
    /// The row's id.
    pub id: i64,
    #[serde(default)]
    /// Words for people reading the calendar.
    pub label: String,
    /// Start on the fleet's wall clock.
    pub starts_local: NaiveDateTime,
    /// End on the fleet's wall clock (exclusive).
    pub ends_local: NaiveDateTime,
    #[serde(default)]
    /// Multiply the forecast by this.
    pub multiply: Option<f64>,
    #[serde(default)]
    /// Plan for this many requests per second instead of the forecast.
    pub pin_rps: Option<f64>,
}

/// Whether a fleet name is one the schema accepts (checked here too, for a clear message).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The most GPUs a fleet may be given: a limit that catches a typo before it reaches a bill.
pub const MAX_GPUS_LIMIT: i32 = prewarm_planner::settings::limits::MAX_GPUS as i32;

impl FleetSpec {
    /// Checks every setting; the message names the setting and what it accepts.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::InvalidFleet(m));
        if !valid_name(&self.name) {
            return bad(format!(
                "name `{}` must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
                prewarm_core::shorten(&self.name, 80)
            ));
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return bad(format!(
                "time zone `{}` is not an IANA name such as Europe/Berlin",
                prewarm_core::shorten(&self.time_zone, 80)
            ));
        }
        if self.gpu_type.len() > 100 {
            return bad("gpu_type is at most 100 characters".into());
        }
        if !(self.gpu_rps.is_finite() && self.gpu_rps > 0.0 && self.gpu_rps <= 1e6) {
            return bad(
                "gpu_rps must be a positive number of requests per second (at most 1000000)".into(),
            );
        }
        if !(self.price_usd_per_gpu_hour.is_finite()
            && (0.0..=10_000.0).contains(&self.price_usd_per_gpu_hour))
        {
            return bad("price_usd_per_gpu_hour must be 0 to 10000".into());
        }
        if self.min_gpus < 0 || self.max_gpus < self.min_gpus || self.max_gpus > MAX_GPUS_LIMIT {
            return bad(format!(
                "min_gpus must be at least 0, max_gpus at least min_gpus and at most {MAX_GPUS_LIMIT}"
            ));
        }
        if self
            .budget_usd_per_hour
            .is_some_and(|b| !(b.is_finite() && b >= 0.0))
        {
            return bad("budget_usd_per_hour must be a finite number of zero or more".into());
        }
        if !(1..=64).contains(&self.gpus_per_replica) {
            return bad(format!(
                "gpus_per_replica must be 1 to 64 (got {})",
                self.gpus_per_replica
            ));
        }
        if let Some(p) = &self.planner {
            if let Err(e) = p
                .check()
                .and_then(|_| p.check_standby(self.max_gpus.max(0) as u32))
            {
                return bad(format!("planner: {e}"));
            }
        }
        if let Some(p) = &self.gpu_profile {
            if !prewarm_planner::profile::valid_name(p) {
                return Err(unknown_profile(Some(p)));
            }
        }
        Ok(())
    }
}

/// A fleet named a profile that is not stored.
fn unknown_profile(name: Option<&str>) -> StoreError {
    StoreError::InvalidFleet(format!(
        "no GPU profile named `{}`; store it first (`prewarm profile import FILE`)",
        prewarm_core::shorten(name.unwrap_or_default(), 80)
    ))
}

/// Creates a fleet and returns it.
pub async fn create_fleet(pool: &PgPool, spec: &FleetSpec) -> Result<Fleet, StoreError> {
    spec.check()?;
    let fleet = sqlx::query_as::<_, Fleet>(&format!(
        "INSERT INTO fleets (name, time_zone, gpu_type, gpu_rps, price_usd_per_gpu_hour, min_gpus, max_gpus, budget_usd_per_hour, planner, gpu_profile, gpus_per_replica)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, '{{}}'::jsonb), $10, $11)
         RETURNING {FLEET_COLUMNS}"
    ))
    .bind(&spec.name)
    .bind(&spec.time_zone)
    .bind(&spec.gpu_type)
    .bind(spec.gpu_rps)
    .bind(spec.price_usd_per_gpu_hour)
    .bind(spec.min_gpus)
    .bind(spec.max_gpus)
    .bind(spec.budget_usd_per_hour)
    .bind(spec.planner.as_ref().map(|p| serde_json::json!(p)))
    .bind(&spec.gpu_profile)
    .bind(spec.gpus_per_replica)
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            StoreError::InvalidFleet(format!("a fleet named `{}` exists already", spec.name))
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
            unknown_profile(spec.gpu_profile.as_deref())
        }
        _ => e.into(),
    })?;
    Ok(fleet)
}

const FLEET_COLUMNS: &str = "id, name, time_zone, gpu_type, gpu_rps, price_usd_per_gpu_hour, min_gpus, max_gpus, budget_usd_per_hour, planner, paused, pinned_gpus, pinned_until, refit_at, refit_note, draining_since, drain_requested_by, gpu_profile, gpus_per_replica,
    (SELECT p.prefill_tps FROM gpu_profiles p WHERE p.name = fleets.gpu_profile) AS prefill_tps,
    (SELECT p.decode_tps FROM gpu_profiles p WHERE p.name = fleets.gpu_profile) AS decode_tps";

/// Every fleet, by name.
pub async fn list_fleets(pool: &PgPool) -> Result<Vec<Fleet>, StoreError> {
    Ok(
        sqlx::query_as::<_, Fleet>(&format!("SELECT {FLEET_COLUMNS} FROM fleets ORDER BY name"))
            .fetch_all(pool)
            .await?,
    )
}

/// Changes to a fleet's settings; unset fields keep their value.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// IANA time zone of the fleet's users.
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// GPU type, for people reading the configuration.
    pub gpu_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Requests per second one GPU serves at full load.
    pub gpu_rps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Price of a GPU-hour, US dollars.
    pub price_usd_per_gpu_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Fewest GPUs the fleet keeps.
    pub min_gpus: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Most GPUs the fleet may have.
    pub max_gpus: Option<i32>,
    /// `Some(None)` removes the budget.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub budget_usd_per_hour: Option<Option<f64>>,
    /// `Some(None)` plans in requests again (at `gpu_rps`); `Some(Some(name))` plans with that
    /// profile.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub gpu_profile: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// GPUs one replica holds.
    pub gpus_per_replica: Option<i32>,
}

/// A field that is present, perhaps as `null`: `Some(None)` for `null`, `None` when absent.
fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Changes a fleet's settings, checked as a new fleet's are, and records the change in the audit
/// log in the same transaction. Returns the fleet before and after.
pub async fn update_fleet(
    pool: &PgPool,
    name: &str,
    update: &FleetUpdate,
    actor: &crate::Actor,
) -> Result<(Fleet, Fleet), StoreError> {
    let mut tx = pool.begin().await?;
    let before = sqlx::query_as::<_, Fleet>(&format!(
        "SELECT {FLEET_COLUMNS} FROM fleets WHERE name = $1 FOR UPDATE"
    ))
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::UnknownFleet(name.to_string()))?;
    let spec = FleetSpec {
        name: before.name.clone(),
        time_zone: update
            .time_zone
            .clone()
            .unwrap_or_else(|| before.time_zone.to_string()),
        gpu_type: update.gpu_type.clone().unwrap_or(before.gpu_type.clone()),
        gpu_rps: update.gpu_rps.unwrap_or(before.gpu_rps),
        price_usd_per_gpu_hour: update
            .price_usd_per_gpu_hour
            .unwrap_or(before.price_usd_per_gpu_hour),
        min_gpus: update.min_gpus.unwrap_or(before.min_gpus),
        max_gpus: update.max_gpus.unwrap_or(before.max_gpus),
        budget_usd_per_hour: update
            .budget_usd_per_hour
            .unwrap_or(before.budget_usd_per_hour),
        planner: None,
        gpu_profile: update
            .gpu_profile
            .clone()
            .unwrap_or(before.gpu_profile.clone()),
        gpus_per_replica: update.gpus_per_replica.unwrap_or(before.gpus_per_replica),
    };
    spec.check()?;
    let after = sqlx::query_as::<_, Fleet>(&format!(
        "UPDATE fleets SET time_zone = $2, gpu_type = $3, gpu_rps = $4, price_usd_per_gpu_hour = $5,
         min_gpus = $6, max_gpus = $7, budget_usd_per_hour = $8, gpu_profile = $9, gpus_per_replica = $10
         WHERE id = $1
         RETURNING {FLEET_COLUMNS}"
    ))
    .bind(before.id)
    .bind(&spec.time_zone)
    .bind(&spec.gpu_type)
    .bind(spec.gpu_rps)
    .bind(spec.price_usd_per_gpu_hour)
    .bind(spec.min_gpus)
    .bind(spec.max_gpus)
    .bind(spec.budget_usd_per_hour)
    .bind(&spec.gpu_profile)
    .bind(spec.gpus_per_replica)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
            unknown_profile(spec.gpu_profile.as_deref())
        }
        _ => e.into(),
    })?;
    crate::audit::record(
        &mut tx,
        actor,
        Some((after.id, &after.name)),
        "fleet.update",
        Some(serde_json::to_value(&before).unwrap_or_default()),
        Some(serde_json::to_value(&after).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    Ok((before, after))
}

/// How a fleet is to be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// At once, and only if it holds no GPU ([`StoreError::Conflict`] otherwise, saying how to
    /// drain it).
    IfEmpty,
    /// At once if it holds no GPU; otherwise mark it draining: the service's tick terminates its
    /// GPUs, and deletes it once they are gone ([`finish_drain`]).
    Drain,
}

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deleted {
    /// The fleet is gone, with this many samples.
    Deleted {
        /// Samples removed.
        samples_removed: u64,
    },
    /// The fleet is draining: these GPUs are being terminated first.
    Draining {
        /// What it still holds.
        held: GpusHeld,
        /// Since when it drains.
        since: DateTime<Utc>,
    },
}

/// The GPUs (and orders that may have reached the provisioner) a fleet still holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GpusHeld {
    /// Serving.
    pub ready: u32,
    /// Booting.
    pub booting: u32,
    /// Resuming from standby.
    pub resuming: u32,
    /// Stopped in the standby tier.
    pub standby: u32,
    /// Orders sent (or maybe sent) and not yet acknowledged.
    pub orders_in_flight: u32,
    /// Instances the provisioner last reported ready or in standby (its word, before the
    /// terminations are confirmed).
    pub reported_up: u32,
}

impl GpusHeld {
    /// Whether anything is still running, stopped, or on its way.
    pub fn any(&self) -> bool {
        self.ready + self.booting + self.resuming + self.standby + self.orders_in_flight > 0
    }

    /// In words: "3 GPUs running (2 ready, 1 booting), 2 in standby, 1 order in flight".
    pub fn describe(&self) -> String {
        let running = self.ready + self.booting + self.resuming;
        let mut parts = vec![format!(
            "{running} GPU{} running ({} ready, {} booting{})",
            if running == 1 { "" } else { "s" },
            self.ready,
            self.booting,
            if self.resuming > 0 {
                format!(", {} resuming", self.resuming)
            } else {
                String::new()
            }
        )];
        if self.standby > 0 {
            parts.push(format!("{} in standby", self.standby));
        }
        if self.orders_in_flight > 0 {
            parts.push(format!(
                "{} order{} in flight",
                self.orders_in_flight,
                if self.orders_in_flight == 1 { "" } else { "s" }
            ));
        }
        parts.join(", ")
    }
}

/// How long a boot unit may go unreported before a deletion's check counts it lost: three times
/// the longest boot lead the planner uses, so a slow boot is never taken for a lost one.
pub const DELETE_STALE_AFTER_SECS: i64 = 3 * 3_600;

/// What `fleet_id` holds at `now` (its GPUs as the planner counts them, boot units unreported for
/// longer than `stale_after_secs` counted lost), read on `conn`.
pub async fn gpus_held(
    conn: &mut sqlx::PgConnection,
    fleet_id: i64,
    now: DateTime<Utc>,
    stale_after_secs: i64,
) -> Result<GpusHeld, sqlx::Error> {
    let state = crate::state::fleet_state_on(conn, fleet_id, now, stale_after_secs).await?;
    let (in_flight, reported_up): (i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM orders WHERE fleet_id = $1 AND state = 'pending' AND attempts > 0),
           (SELECT count(*) FROM instances WHERE fleet_id = $1 AND state IN ('ready', 'standby'))",
    )
    .bind(fleet_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(GpusHeld {
        ready: state.gpus_ready,
        booting: state.booting.len() as u32,
        resuming: state.resuming.len() as u32,
        standby: state.standby,
        orders_in_flight: in_flight.max(0) as u32,
        reported_up: reported_up.max(0) as u32,
    })
}

/// Deletes a fleet with everything it owns (its samples too, in the same transaction: samples
/// carry no foreign key), unless it holds GPUs: deleting it then would leave them running and
/// billed with nobody to stop them. Such a fleet is refused ([`Deletion::IfEmpty`]) or set draining
/// ([`Deletion::Drain`]). The fleet's row and its unsent orders are locked while its GPUs are
/// counted, so no tick or dispatcher can send an order the count missed.
pub async fn delete_fleet(
    pool: &PgPool,
    name: &str,
    actor: &crate::Actor,
    how: Deletion,
    now: DateTime<Utc>,
) -> Result<Deleted, StoreError> {
    let mut tx = pool.begin().await?;
    let fleet = sqlx::query_as::<_, Fleet>(&format!(
        "SELECT {FLEET_COLUMNS} FROM fleets WHERE name = $1 FOR UPDATE"
    ))
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::UnknownFleet(prewarm_core::shorten(name, 80)))?;
    // A dispatcher claims orders with SKIP LOCKED: once these are locked, none is sent until this
    // transaction ends (and a deletion removes them with the fleet).
    sqlx::query("SELECT id FROM orders WHERE fleet_id = $1 AND state = 'pending' FOR UPDATE")
        .bind(fleet.id)
        .fetch_all(&mut *tx)
        .await?;
    let held = gpus_held(&mut tx, fleet.id, now, DELETE_STALE_AFTER_SECS).await?;
    if held.any() {
        match how {
            Deletion::IfEmpty => {
                return Err(StoreError::Conflict(format!(
                    "fleet `{}` still has {}: deleting it now would leave them running and billed. Drain it first: `prewarm fleet delete {} --drain --yes` (or `DELETE /v1/fleets/{}?drain=true`) terminates every GPU, waits for the provisioner to confirm, then deletes the fleet",
                    fleet.name,
                    held.describe(),
                    fleet.name,
                    fleet.name
                )));
            }
            Deletion::Drain => {
                let since = match fleet.draining_since {
                    Some(since) => since,
                    None => {
                        sqlx::query(
                            "UPDATE fleets SET draining_since = $2, drain_requested_by = $3 WHERE id = $1",
                        )
                        .bind(fleet.id)
                        .bind(now)
                        .bind(prewarm_core::shorten(&actor.name, 200))
                        .execute(&mut *tx)
                        .await?;
                        crate::audit::record(
                            &mut tx,
                            actor,
                            Some((fleet.id, &fleet.name)),
                            "fleet.drain",
                            Some(serde_json::to_value(&fleet).unwrap_or_default()),
                            Some(serde_json::json!({ "draining_since": now, "held": held })),
                        )
                        .await?;
                        now
                    }
                };
                tx.commit().await?;
                return Ok(Deleted::Draining { held, since });
            }
        }
    }
    let samples = remove(&mut tx, &fleet, actor, None).await?;
    tx.commit().await?;
    Ok(Deleted::Deleted {
        samples_removed: samples,
    })
}

/// Deletes a draining fleet once its GPUs are gone: nothing running, stopped or in flight as the
/// planner counts it (boot units unreported for `stale_after_secs` lost), and every instance
/// the provisioner reported up confirmed terminated, or `stale_after_secs` passed since the drain
/// began (callbacks lost). Returns the samples removed, or `None` while it must wait (or when
/// the fleet is not draining, or gone).
pub async fn finish_drain(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    stale_after_secs: i64,
) -> Result<Option<u64>, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(fleet) = sqlx::query_as::<_, Fleet>(&format!(
        "SELECT {FLEET_COLUMNS} FROM fleets WHERE id = $1 AND draining_since IS NOT NULL FOR UPDATE"
    ))
    .bind(fleet_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    sqlx::query("SELECT id FROM orders WHERE fleet_id = $1 AND state = 'pending' FOR UPDATE")
        .bind(fleet.id)
        .fetch_all(&mut *tx)
        .await?;
    let held = gpus_held(&mut tx, fleet.id, now, stale_after_secs).await?;
    let since = fleet.draining_since.unwrap_or(now);
    let confirmed =
        held.reported_up == 0 || now - since >= chrono::Duration::seconds(stale_after_secs);
    if held.any() || !confirmed {
        return Ok(None);
    }
    let actor = crate::Actor {
        token_id: None,
        name: format!(
            "the service, draining as {} asked",
            fleet.drain_requested_by.as_deref().unwrap_or("an admin")
        ),
    };
    let samples = remove(&mut tx, &fleet, &actor, Some(held)).await?;
    tx.commit().await?;
    Ok(Some(samples))
}

/// Deletes `fleet` and its samples in `tx`, audited.
async fn remove(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    fleet: &Fleet,
    actor: &crate::Actor,
    drained: Option<GpusHeld>,
) -> Result<u64, StoreError> {
    let samples = sqlx::query("DELETE FROM samples WHERE fleet_id = $1")
        .bind(fleet.id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM fleets WHERE id = $1")
        .bind(fleet.id)
        .execute(&mut **tx)
        .await?;
    crate::audit::record(
        tx,
        actor,
        Some((fleet.id, &fleet.name)),
        "fleet.delete",
        Some(serde_json::to_value(fleet).unwrap_or_default()),
        Some(serde_json::json!({
            "samples_removed": samples,
            "drained": drained.is_some(),
            "instances_unconfirmed": drained.map(|h| h.reported_up),
        })),
    )
    .await?;
    Ok(samples)
}

/// The fleet of that name.
pub async fn fleet_by_name(pool: &PgPool, name: &str) -> Result<Fleet, StoreError> {
    // A name the schema cannot hold (a NUL byte, say) names no fleet ([`find_fleet`] answers so
    // without asking the database, which would refuse the text itself).
    find_fleet(pool, name)
        .await?
        .ok_or_else(|| StoreError::UnknownFleet(prewarm_core::shorten(name, 80)))
}

/// The fleet with this id (`None`: deleted).
pub async fn fleet_by_id(pool: &PgPool, id: i64) -> Result<Option<Fleet>, sqlx::Error> {
    Ok(fleets_by_ids(pool, &[id]).await?.pop())
}

/// The fleets with these ids (those that still exist), in one query.
pub async fn fleets_by_ids(pool: &PgPool, ids: &[i64]) -> Result<Vec<Fleet>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {FLEET_COLUMNS} FROM fleets WHERE id = ANY($1) ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// The fleet of that name, if there is one.
pub async fn find_fleet(pool: &PgPool, name: &str) -> Result<Option<Fleet>, sqlx::Error> {
    // A name the schema cannot hold (a NUL byte, say) names no fleet.
    if !valid_name(name) {
        return Ok(None);
    }
    sqlx::query_as(&format!(
        "SELECT {FLEET_COLUMNS} FROM fleets WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// A fleet's calendar events, in time order.
pub async fn events(pool: &PgPool, fleet_id: i64) -> Result<Vec<FleetEvent>, sqlx::Error> {
    Ok(events_of(pool, &[fleet_id])
        .await?
        .remove(&fleet_id)
        .unwrap_or_default())
}

/// The calendar events of every fleet in `fleet_ids` (each in time order), in one query; a fleet
/// without events is absent.
pub async fn events_of(
    pool: &PgPool,
    fleet_ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<FleetEvent>>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        fleet_id: i64,
        #[sqlx(flatten)]
        event: FleetEvent,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT fleet_id, id, label, starts_local, ends_local, multiply, pin_rps FROM fleet_events
         WHERE fleet_id = ANY($1) ORDER BY fleet_id, starts_local, id",
    )
    .bind(fleet_ids)
    .fetch_all(pool)
    .await?;
    let mut out: std::collections::HashMap<i64, Vec<FleetEvent>> = Default::default();
    for r in rows {
        out.entry(r.fleet_id).or_default().push(r.event);
    }
    Ok(out)
}

/// When each of these fleets was last refitted (`None`: never), in one query.
pub async fn refit_times(
    pool: &PgPool,
    ids: &[i64],
) -> Result<Vec<(i64, Option<DateTime<Utc>>)>, sqlx::Error> {
    sqlx::query_as("SELECT id, refit_at FROM fleets WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(pool)
        .await
}

/// Records what a fleet's last refit did.
pub async fn set_refit_note(
    pool: &PgPool,
    fleet_id: i64,
    at: DateTime<Utc>,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE fleets SET refit_at = $2, refit_note = $3 WHERE id = $1")
        .bind(fleet_id)
        .bind(at)
        .bind(note)
        .execute(pool)
        .await?;
    Ok(())
}

/// What an operator changes on a fleet through the API (checked by the caller against the
/// fleet's limits).
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorChange {
    /// Pause (true) or resume (false) the fleet's orders.
    Pause(bool),
    /// Hold the fleet at this many GPUs, until a time or until unpinned.
    Pin {
        /// A GPU count.
        gpus: i32,
        /// Until when (none: until cleared).
        until: Option<DateTime<Utc>>,
    },
    /// Clear the pin.
    Unpin,
    /// The fleet's own planner settings, checked.
    Planner(prewarm_planner::Settings),
    /// Add a calendar event.
    AddEvent(FleetEvent),
    /// Remove the calendar event with this id.
    RemoveEvent(i64),
}

impl OperatorChange {
    /// The audit log's name of the change.
    pub fn action(&self) -> &'static str {
        match self {
            OperatorChange::Pause(true) => "fleet.pause",
            OperatorChange::Pause(false) => "fleet.resume",
            OperatorChange::Pin { .. } => "fleet.pin",
            OperatorChange::Unpin => "fleet.unpin",
            OperatorChange::Planner(_) => "fleet.planner",
            OperatorChange::AddEvent(_) => "event.add",
            OperatorChange::RemoveEvent(_) => "event.remove",
        }
    }
}

/// What an operator change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// The change was made (and audited).
    Done {
        /// The id of an added event.
        event_id: Option<i64>,
    },
    /// Nothing matched (the fleet was deleted meanwhile, or the event was not the fleet's).
    NothingMatched,
}

/// Makes an operator's change and records it in the audit log with the value before and after,
/// in one transaction.
pub async fn change(
    pool: &PgPool,
    fleet: &Fleet,
    actor: &crate::Actor,
    change: &OperatorChange,
) -> Result<Changed, StoreError> {
    use serde_json::json;
    let mut tx = pool.begin().await?;
    let (rows, event_id, before, after) = match change {
        OperatorChange::Pause(paused) => {
            let rows = sqlx::query("UPDATE fleets SET paused = $2 WHERE id = $1")
                .bind(fleet.id)
                .bind(paused)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            (
                rows,
                None,
                json!({ "paused": fleet.paused }),
                json!({ "paused": paused }),
            )
        }
        OperatorChange::Pin { gpus, until } => {
            let rows =
                sqlx::query("UPDATE fleets SET pinned_gpus = $2, pinned_until = $3 WHERE id = $1")
                    .bind(fleet.id)
                    .bind(gpus)
                    .bind(until)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            (
                rows,
                None,
                json!({ "pinned_gpus": fleet.pinned_gpus, "until": fleet.pinned_until }),
                json!({ "pinned_gpus": gpus, "until": until }),
            )
        }
        OperatorChange::Unpin => {
            let rows = sqlx::query(
                "UPDATE fleets SET pinned_gpus = NULL, pinned_until = NULL WHERE id = $1",
            )
            .bind(fleet.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            (
                rows,
                None,
                json!({ "pinned_gpus": fleet.pinned_gpus, "until": fleet.pinned_until }),
                json!({ "pinned_gpus": null }),
            )
        }
        OperatorChange::Planner(settings) => {
            let value = json!(settings);
            let rows = sqlx::query("UPDATE fleets SET planner = $2 WHERE id = $1")
                .bind(fleet.id)
                .bind(&value)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            (rows, None, fleet.planner.clone(), value)
        }
        OperatorChange::AddEvent(e) => {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO fleet_events (fleet_id, label, starts_local, ends_local, multiply, pin_rps)
                 SELECT id, $2, $3, $4, $5, $6 FROM fleets WHERE id = $1 RETURNING id",
            )
            .bind(fleet.id)
            .bind(&e.label)
            .bind(e.starts_local)
            .bind(e.ends_local)
            .bind(e.multiply)
            .bind(e.pin_rps)
            .fetch_optional(&mut *tx)
            .await?;
            let stored = FleetEvent {
                id: id.unwrap_or_default(),
                ..e.clone()
            };
            (
                u64::from(id.is_some()),
                id,
                serde_json::Value::Null,
                json!(stored),
            )
        }
        OperatorChange::RemoveEvent(event_id) => {
            let before: Option<FleetEvent> = sqlx::query_as(
                "DELETE FROM fleet_events WHERE fleet_id = $1 AND id = $2
                 RETURNING id, label, starts_local, ends_local, multiply, pin_rps",
            )
            .bind(fleet.id)
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?;
            (
                u64::from(before.is_some()),
                None,
                json!(before),
                serde_json::Value::Null,
            )
        }
    };
    if rows == 0 {
        return Ok(Changed::NothingMatched);
    }
    crate::audit::record(
        &mut tx,
        actor,
        Some((fleet.id, &fleet.name)),
        change.action(),
        (!before.is_null()).then_some(before),
        (!after.is_null()).then_some(after),
    )
    .await?;
    tx.commit().await?;
    Ok(Changed::Done { event_id })
}
