-- The ETS candidate a live fit's MSTL trend used, and when a search last chose it: the next
-- refits fit that candidate alone until it is six hours old, then search again.
ALTER TABLE forecasts ADD COLUMN trend_spec jsonb;
ALTER TABLE forecasts ADD COLUMN trend_chosen_at timestamptz;
