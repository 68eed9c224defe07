-- 0004_hot_cart_updates: applying an event updates its cart's row without touching any index.
--
-- Nearly every event changes its cart's version and updated_at, and leaves its user, id and
-- status alone. PostgreSQL updates a row in place (a HOT update: no new index entries, and dead
-- versions pruned from the page as it goes) only when no indexed column changes and the page has
-- room. Two indexes held a column that changes with every event: (user_id, version) and the idle
-- carts' (updated_at). Four index entries per event went with them, one in each of the table's
-- indexes, plus their cleanup.

-- A user's carts by user; the newest is picked by version among them (a user has few).
CREATE INDEX carts_user ON carts (user_id);
DROP INDEX carts_user_version;

-- Idle carts are found by the hour of their last change, which moves at most once an hour per
-- cart; the expiry reads the exact updated_at of that hour's candidates.
ALTER TABLE carts ADD COLUMN idle_hour timestamp
  GENERATED ALWAYS AS (date_trunc('hour', updated_at AT TIME ZONE 'UTC')) STORED;
CREATE INDEX carts_active_idle_hour ON carts (idle_hour) WHERE status = 'active';
DROP INDEX carts_active_idle;

-- Room on each page for the next versions of its rows.
ALTER TABLE carts SET (fillfactor = 80);
