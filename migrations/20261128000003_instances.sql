-- GPUs the provisioner started for boot orders, as its callbacks report them: the source of each
-- fleet's real boot-time distribution.
CREATE TABLE instances (
    instance_id   TEXT PRIMARY KEY CHECK (length(instance_id) BETWEEN 1 AND 200),
    fleet_id      BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    order_key     TEXT NOT NULL REFERENCES orders (idempotency_key) ON DELETE CASCADE,
    ordered_at    TIMESTAMPTZ NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('ready', 'failed', 'terminated')),
    ready_at      TIMESTAMPTZ,
    boot_secs     DOUBLE PRECISION CHECK (boot_secs >= 0),
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX instances_ready_by_fleet ON instances (fleet_id, ready_at) WHERE boot_secs IS NOT NULL;
