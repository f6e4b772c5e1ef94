-- Fleets, their API tokens, and their request-rate history.

CREATE TABLE fleets (
    id                      BIGSERIAL PRIMARY KEY,
    -- Names go into URLs and logs: letters, digits, '.', '_' and '-' only.
    name                    TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    time_zone               TEXT NOT NULL DEFAULT 'UTC',
    gpu_type                TEXT NOT NULL DEFAULT '' CHECK (length(gpu_type) <= 100),
    gpu_rps                 DOUBLE PRECISION NOT NULL DEFAULT 1 CHECK (gpu_rps > 0),
    price_usd_per_gpu_hour  DOUBLE PRECISION NOT NULL DEFAULT 3 CHECK (price_usd_per_gpu_hour >= 0),
    min_gpus                INTEGER NOT NULL DEFAULT 1 CHECK (min_gpus >= 0),
    max_gpus                INTEGER NOT NULL DEFAULT 100 CHECK (max_gpus >= min_gpus),
    budget_usd_per_hour     DOUBLE PRECISION CHECK (budget_usd_per_hour >= 0),
    -- The planner's settings (quantile, utilisation, hold, boot lead, ...), as JSON.
    planner                 JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Bearer tokens, stored as SHA-256 hashes only. A token with no fleet may write every fleet.
CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    token_sha256  BYTEA NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    fleet_id      BIGINT REFERENCES fleets (id) ON DELETE CASCADE,
    label         TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per fleet, bucket width and bucket start. A re-sent sample replaces the values of its
-- bucket (last write wins), so sending a batch twice, or out of order, stores the same history.
-- The primary key's order serves "one fleet's last N days" as an index range scan.
-- fleet_id has no foreign key: its per-row check took three quarters of a bulk import's time.
-- Every writer resolves the fleet by name first, and removing a fleet must remove its samples in
-- the same transaction.
CREATE TABLE samples (
    fleet_id      BIGINT NOT NULL,
    bucket_start  TIMESTAMPTZ NOT NULL,
    bucket_secs   INTEGER NOT NULL CHECK (bucket_secs > 0 AND bucket_secs <= 86400),
    requests      DOUBLE PRECISION NOT NULL CHECK (requests >= 0 AND requests < 'Infinity'),
    tokens_in     DOUBLE PRECISION CHECK (tokens_in >= 0 AND tokens_in < 'Infinity'),
    tokens_out    DOUBLE PRECISION CHECK (tokens_out >= 0 AND tokens_out < 'Infinity'),
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (fleet_id, bucket_start, bucket_secs)
);
