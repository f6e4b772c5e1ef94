-- What the dashboard shows without scanning a week of samples and decisions per fleet: each
-- fleet's requests, estimated timed-out requests, paid GPU-seconds and cost, per UTC hour, added
-- by every tick; and the tick's queue estimate carried to the next one.
CREATE TABLE fleet_hours (
    fleet_id     BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    hour_start   TIMESTAMPTZ NOT NULL CHECK (date_trunc('hour', hour_start) = hour_start),
    requests     DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (requests >= 0),
    timed_out    DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (timed_out >= 0),
    gpu_seconds  DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (gpu_seconds >= 0),
    cost_usd     DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    PRIMARY KEY (fleet_id, hour_start)
);

CREATE TABLE fleet_queue (
    fleet_id     BIGINT PRIMARY KEY REFERENCES fleets (id) ON DELETE CASCADE,
    at           TIMESTAMPTZ NOT NULL,
    backlog      DOUBLE PRECISION NOT NULL CHECK (backlog >= 0)
);
