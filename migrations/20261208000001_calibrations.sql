-- A live forecast's calibration (how demand strays from the median, by horizon and phase: some
-- 50 kB of JSON) is stored once, when a refit makes it, and referenced by the forecasts planned
-- on it: the refits within the hour after a calibration keep it and write their median only.
-- Copied into every forecast, it made a fleet refitted every 15 minutes write 200 kB of JSON an
-- hour and keep 768 copies (eight days of forecasts, some 19 MB as stored); a calibration is read
-- only with the forecasts of the last two hours, so older ones are pruned.
CREATE TABLE calibrations (
    id          BIGSERIAL PRIMARY KEY,
    fleet_id    BIGINT NOT NULL REFERENCES fleets (id) ON DELETE CASCADE,
    made_at     TIMESTAMPTZ NOT NULL,
    calibration JSONB NOT NULL
);
CREATE INDEX calibrations_by_fleet ON calibrations (fleet_id, made_at);

ALTER TABLE forecasts
    ADD COLUMN calibration_id BIGINT REFERENCES calibrations (id) ON DELETE SET NULL;
CREATE INDEX forecasts_by_calibration ON forecasts (calibration_id);

-- What is stored moves: each calibrated forecast's calibration to a row of its own.
ALTER TABLE calibrations ADD COLUMN moved_from BIGINT;
INSERT INTO calibrations (fleet_id, made_at, calibration, moved_from)
    SELECT fleet_id, COALESCE(calibrated_at, made_at), calibration, id
    FROM forecasts WHERE calibration IS NOT NULL;
UPDATE forecasts f SET calibration_id = c.id FROM calibrations c WHERE c.moved_from = f.id;
ALTER TABLE calibrations DROP COLUMN moved_from;
ALTER TABLE forecasts DROP COLUMN calibration;
