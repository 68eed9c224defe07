-- 0003_expiry_and_answers: abandoned carts, and the full first answer of every event.
--
-- A cart untouched for CART_IDLE_TTL is expired by its worker: status 'expired', announced as
-- cart.expired on carts.changes.<partition>. Like a checked-out cart it keeps its row and lines.
ALTER TABLE carts DROP CONSTRAINT carts_status_check;
ALTER TABLE carts ADD CONSTRAINT carts_status_check
  CHECK (status IN ('active', 'checked_out', 'deleted', 'expired'));

-- The reason given with a refusal (412, 422, 404, 409), so that a retried event or
-- Idempotency-Key gets the first answer again, detail included.
ALTER TABLE processed_events ADD COLUMN detail text;

-- Finds a partition's old dedup rows for pruning.
CREATE INDEX processed_events_partition_processed_at ON processed_events (partition, processed_at);
DROP INDEX processed_events_processed_at;
