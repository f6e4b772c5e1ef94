-- A standby tier: stopped GPUs (weights on their local disk) resumed in a minute or two.
-- Orders gain `stop` (ready -> standby), `resume` (standby -> ready) and `terminate_standby`
-- (standby -> terminated); instances gain the `standby` state.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_kind_check;
ALTER TABLE orders ADD CONSTRAINT orders_kind_check
    CHECK (kind IN ('boot', 'terminate', 'stop', 'resume', 'terminate_standby'));

ALTER TABLE instances DROP CONSTRAINT IF EXISTS instances_state_check;
ALTER TABLE instances ADD CONSTRAINT instances_state_check
    CHECK (state IN ('ready', 'failed', 'terminated', 'standby'));
-- Whether the instance was in standby when it was last reported (a standby instance lost
-- without a terminate order leaves the standby count, not the running one).
ALTER TABLE instances ADD COLUMN in_standby BOOLEAN NOT NULL DEFAULT false;
-- The last resume's time from its order to serving: the fleet's learned resume lead.
ALTER TABLE instances ADD COLUMN resume_secs DOUBLE PRECISION CHECK (resume_secs >= 0);
ALTER TABLE instances ADD COLUMN resumed_at TIMESTAMPTZ;

-- Each stop or resume order's units as the provisioner reports them, once per instance and
-- order: a callback delivered twice, or late, counts once; units never reported within the stale
-- window count as not done.
CREATE TABLE instance_transitions (
    order_key    TEXT NOT NULL REFERENCES orders (idempotency_key) ON DELETE CASCADE,
    instance_id  TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    event        TEXT NOT NULL CHECK (event IN ('stopped', 'resumed', 'failed')),
    at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_key, instance_id)
);
CREATE INDEX instance_transitions_by_instance ON instance_transitions (instance_id);

-- Each decision records the standby tier it saw.
ALTER TABLE decisions
    ADD COLUMN gpus_standby  INTEGER NOT NULL DEFAULT 0 CHECK (gpus_standby >= 0),
    ADD COLUMN gpus_resuming INTEGER NOT NULL DEFAULT 0 CHECK (gpus_resuming >= 0),
    ADD COLUMN resume_lead_secs BIGINT;
