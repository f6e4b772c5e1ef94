-- A fleet with GPUs is not deleted under them: `DELETE ... ?drain=true` (or `prewarm fleet delete
-- --drain`) marks it draining, the tick terminates every GPU it holds, and once the provisioner has
-- confirmed (or the terminations have had their time) the tick deletes it.
ALTER TABLE fleets
    ADD COLUMN draining_since      TIMESTAMPTZ,
    ADD COLUMN drain_requested_by  TEXT CHECK (length(drain_requested_by) <= 300);

ALTER TABLE decisions DROP CONSTRAINT decisions_mode_check;
ALTER TABLE decisions ADD CONSTRAINT decisions_mode_check
    CHECK (mode IN ('act', 'forecast-only', 'paused', 'pinned', 'draining'));

-- A callback's receipt remembers the message it acknowledged: the same webhook-id with another
-- body is a conflict, not a duplicate. Receipts made before have none and compare by instance and
-- event only.
ALTER TABLE callback_receipts ADD COLUMN body_sha256 BYTEA CHECK (length(body_sha256) = 32);

-- Delivery errors stored before URLs were kept out of them: a URL's credentials or query could be
-- in the text.
UPDATE orders SET last_error = regexp_replace(last_error, 'https?://[^\s)]*', '<provisioner url>', 'g')
WHERE last_error ~ 'https?://';
