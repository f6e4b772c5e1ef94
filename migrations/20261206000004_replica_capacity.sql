-- How many fleets a replica can plan within a tick, once a tick has shown it cannot plan its
-- even share in time (NULL: no limit seen). Lease rounds share the fleets out by these
-- capacities, so an overloaded replica gives fleets up to the others.
ALTER TABLE replicas ADD COLUMN capacity bigint CHECK (capacity IS NULL OR capacity >= 1);
