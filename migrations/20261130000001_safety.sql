-- Safe to run for real: per-start lease tokens, scoped and revocable tokens, an audit log of
-- operator changes, callback receipts (replays are refused), wide enough durations, and the
-- outcome of each fleet's last refit.

-- A replica is one process start: its token is random per start, so two processes configured
-- with the same replica id are still two holders, and a lease can only be renewed or used by the
-- start that took it. `replica_id` is the name people read.
DROP TABLE replicas;
CREATE TABLE replicas (
    token       UUID PRIMARY KEY,
    replica_id  TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Leases taken before this migration have no token: no start can renew them, so they lapse
-- within one TTL and are claimed afresh.
ALTER TABLE fleet_leases ADD COLUMN holder_token UUID;
CREATE INDEX fleet_leases_by_token ON fleet_leases (holder_token);

-- Durations in seconds: a boot lead learned from a bad callback once overflowed 32 bits.
ALTER TABLE decisions ALTER COLUMN boot_lead_secs TYPE BIGINT;

-- Tokens carry scopes: push (samples), read (forecasts, plans, decisions), operate (pause, pin,
-- events, planner settings, refit), admin (fleets and tokens). Tokens made before scopes existed
-- could push, read and operate: they keep exactly that. New tokens get what they are made with.
ALTER TABLE api_tokens
    ADD COLUMN scopes TEXT[] NOT NULL DEFAULT '{push,read,operate}'
        CHECK (scopes <@ ARRAY['push', 'read', 'operate', 'admin']::TEXT[] AND cardinality(scopes) > 0),
    ADD COLUMN revoked_at TIMESTAMPTZ;
ALTER TABLE api_tokens ALTER COLUMN scopes SET DEFAULT '{push}';

-- Every operator change: who (the token's id and label, or the command line), what, when, and
-- the values before and after.
CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    token_id     BIGINT,
    actor        TEXT NOT NULL,
    fleet_id     BIGINT,
    fleet_name   TEXT,
    action       TEXT NOT NULL,
    before       JSONB,
    after        JSONB
);
CREATE INDEX audit_log_by_fleet ON audit_log (fleet_id, at);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- Callback message ids seen within the signature tolerance: a replayed message is not applied
-- again. Older receipts are pruned (their timestamps are refused anyway).
CREATE TABLE callback_receipts (
    message_id   TEXT PRIMARY KEY CHECK (length(message_id) BETWEEN 1 AND 256),
    instance_id  TEXT NOT NULL,
    event        TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX callback_receipts_by_time ON callback_receipts (received_at);

-- What the fleet's last refit did (a forecast, or why none: too little or too old history).
ALTER TABLE fleets
    ADD COLUMN refit_at    TIMESTAMPTZ,
    ADD COLUMN refit_note  TEXT;

-- The demand distribution: each live forecast stores its calibration (how demand strays from the
-- median, by horizon and phase) and the levels the SLO sizer chose, so a tick (or a restarted
-- replica) rebuilds exactly the distribution the refit made.
ALTER TABLE forecasts
    ADD COLUMN calibration JSONB,
    ADD COLUMN levels JSONB;
-- The timed-out share the SLO sizer predicted for the levels it chose: the next refit compares it
-- with what the fleet realised.
ALTER TABLE forecasts ADD COLUMN predicted_timed_out_share DOUBLE PRECISION;
