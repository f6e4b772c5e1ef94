-- The planner's decisions and the orders they send to the provisioner (an outbox): a decision and
-- its orders are written in one transaction; a dispatcher delivers pending orders, at least once,
-- each with an idempotency key that the provisioner uses to apply it once.

CREATE TABLE decisions (
    id                  BIGSERIAL PRIMARY KEY,
    fleet_id            BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    decided_at          TIMESTAMPTZ NOT NULL,
    desired_gpus        INTEGER NOT NULL CHECK (desired_gpus >= 0),
    gpus_ready          INTEGER NOT NULL CHECK (gpus_ready >= 0),
    gpus_booting        INTEGER NOT NULL CHECK (gpus_booting >= 0),
    forecast_p50_rps    DOUBLE PRECISION,
    forecast_upper_rps  DOUBLE PRECISION,
    reason              TEXT NOT NULL
);
CREATE INDEX decisions_by_fleet ON decisions (fleet_id, decided_at);

CREATE TABLE orders (
    id               BIGSERIAL PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    fleet_id         BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    decision_id      BIGINT NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('boot', 'terminate')),
    count            INTEGER NOT NULL CHECK (count > 0),
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'cancelled', 'expired')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ
);
CREATE INDEX orders_due ON orders (next_attempt_at) WHERE state = 'pending';
CREATE INDEX orders_by_fleet ON orders (fleet_id, created_at);
