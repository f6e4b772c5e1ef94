-- Fleets that prewarm does not boot itself (a Kubernetes Deployment scaled by KEDA, say): a replica
-- holds gpus_per_replica GPUs, and the real fleet's ready and desired replicas are observed (a
-- Prometheus query per fleet). The planner's state for such a fleet is the latest observation, and
-- its boot times are learned from a raised desired count to the replicas becoming ready.
ALTER TABLE fleets ADD COLUMN gpus_per_replica INTEGER NOT NULL DEFAULT 1
    CHECK (gpus_per_replica BETWEEN 1 AND 64);

CREATE TABLE observations (
    fleet_id          BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    observed_at       TIMESTAMPTZ NOT NULL,
    ready_replicas    INTEGER NOT NULL CHECK (ready_replicas >= 0),
    desired_replicas  INTEGER NOT NULL CHECK (desired_replicas >= 0),
    PRIMARY KEY (fleet_id, observed_at)
);

-- Boot times of observed fleets: from the observation at which the desired count first covered a
-- replica to the one at which it was ready.
CREATE TABLE observed_boots (
    fleet_id   BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    ready_at   TIMESTAMPTZ NOT NULL,
    boot_secs  DOUBLE PRECISION NOT NULL CHECK (boot_secs >= 0),
    replicas   INTEGER NOT NULL CHECK (replicas > 0)
);
CREATE INDEX observed_boots_by_fleet ON observed_boots (fleet_id, ready_at);
