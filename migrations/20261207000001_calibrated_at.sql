-- When a live forecast's calibration and levels were made, and for which sizing settings: the
-- refits within the hour after a calibration fit a new median and keep them (as the simulator
-- recalibrates hourly), unless the settings the sizer reads changed.
ALTER TABLE forecasts ADD COLUMN calibrated_at timestamptz;
ALTER TABLE forecasts ADD COLUMN sized_for text;
