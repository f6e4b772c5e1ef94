-- What `prewarm serve` keeps beside the ledger: stored forecasts (their errors calibrate the next
-- band), per-fleet leases shared by replicas, once-per-slot job runs, operator controls (pause,
-- pin) and scheduled events.

ALTER TABLE fleets
    ADD COLUMN paused        BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN pinned_gpus   INTEGER CHECK (pinned_gpus >= 0),
    ADD COLUMN pinned_until  TIMESTAMPTZ;

ALTER TABLE decisions
    ADD COLUMN replica       TEXT NOT NULL DEFAULT '',
    ADD COLUMN mode          TEXT NOT NULL DEFAULT 'act' CHECK (mode IN ('act', 'forecast-only', 'paused', 'pinned')),
    ADD COLUMN boot_lead_secs INTEGER,
    ADD COLUMN forecast_id   BIGINT;

-- A terminated callback may name the terminate order that caused it; one without is a loss the
-- provisioner reports (a preempted or crashed GPU), and the planner replaces it.
ALTER TABLE instances
    ADD COLUMN terminated_by TEXT;

-- One row per fit: the median and (once enough errors are known) the calibrated upper quantile,
-- per bucket from `origin`. Rows made by the bootstrap backtest have kind 'backtest'.
CREATE TABLE forecasts (
    id              BIGSERIAL PRIMARY KEY,
    fleet_id        BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    made_at         TIMESTAMPTZ NOT NULL,
    origin          TIMESTAMPTZ NOT NULL,
    step_secs       INTEGER NOT NULL CHECK (step_secs > 0),
    kind            TEXT NOT NULL CHECK (kind IN ('live', 'backtest')),
    model           TEXT NOT NULL,
    p50_rps         DOUBLE PRECISION[] NOT NULL,
    upper_rps       DOUBLE PRECISION[],
    quantile        DOUBLE PRECISION NOT NULL,
    error_floor_rps DOUBLE PRECISION NOT NULL,
    errors_used     INTEGER NOT NULL DEFAULT 0,
    recent_error    DOUBLE PRECISION,
    replica         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX forecasts_by_fleet ON forecasts (fleet_id, origin);

-- Replicas announce themselves; leases give each fleet to one replica at a time.
CREATE TABLE replicas (
    replica_id  TEXT PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE fleet_leases (
    fleet_id    BIGINT PRIMARY KEY REFERENCES fleets (id) ON DELETE CASCADE,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX fleet_leases_by_holder ON fleet_leases (holder);

-- A job that must run once per slot (a fleet's local day, say) claims the slot here first.
CREATE TABLE job_runs (
    job      TEXT NOT NULL,
    scope    TEXT NOT NULL,
    slot     TEXT NOT NULL,
    ran_at   TIMESTAMPTZ NOT NULL,
    replica  TEXT NOT NULL,
    PRIMARY KEY (job, scope, slot)
);

-- Scheduled events on the fleet's wall clock: a launch multiplies demand, a holiday lowers it,
-- or demand is pinned for the window.
CREATE TABLE fleet_events (
    id          BIGSERIAL PRIMARY KEY,
    fleet_id    BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    label       TEXT NOT NULL DEFAULT '' CHECK (length(label) <= 200),
    starts_local TIMESTAMP NOT NULL,
    ends_local  TIMESTAMP NOT NULL CHECK (ends_local > starts_local),
    multiply    DOUBLE PRECISION CHECK (multiply >= 0),
    pin_rps     DOUBLE PRECISION CHECK (pin_rps >= 0),
    CHECK ((multiply IS NULL) <> (pin_rps IS NULL))
);
CREATE INDEX fleet_events_by_fleet ON fleet_events (fleet_id, ends_local);
