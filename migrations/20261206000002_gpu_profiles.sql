-- GPU profiles: what one GPU (or replica) of a type does for one model, in tokens per second, and
-- its price. A fleet that names one plans in tokens: its work is its prompt tokens over the
-- prefill rate plus its output tokens over the decode rate (GPU-seconds). A fleet without one
-- plans in requests, at its gpu_rps.
CREATE TABLE gpu_profiles (
    name                    TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    prefill_tps             DOUBLE PRECISION NOT NULL CHECK (prefill_tps > 0 AND prefill_tps <= 1e9),
    decode_tps              DOUBLE PRECISION NOT NULL CHECK (decode_tps > 0 AND decode_tps <= 1e9),
    price_usd_per_gpu_hour  DOUBLE PRECISION CHECK (price_usd_per_gpu_hour >= 0),
    gpu_type                TEXT NOT NULL DEFAULT '' CHECK (length(gpu_type) <= 100),
    model                   TEXT NOT NULL DEFAULT '' CHECK (length(model) <= 200),
    source                  TEXT NOT NULL DEFAULT '' CHECK (length(source) <= 500),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A profile in use cannot be deleted; renaming one follows into its fleets.
ALTER TABLE fleets ADD COLUMN gpu_profile TEXT
    REFERENCES gpu_profiles (name) ON UPDATE CASCADE ON DELETE RESTRICT;
