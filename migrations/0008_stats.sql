-- 0008_stats: the minute rows of cart-stats (docs/internals/stats.md), on the database STATS_DSN
-- names (by default the first shard; every shard gets the tables, only that one fills them).
--
-- A minute is a whole UTC minute, as minutes since the epoch. stats_seen holds the event_id of
-- every change notice counted, in the same transaction as its counts: it is what makes a notice
-- delivered twice count once, and what `cart-stats rebuild` gives back to Redis. Rows older than
-- the longest window and the redelivery horizon are pruned by cart-stats.
--
-- New tables only: nothing existing is locked or rewritten. The lock timeout bounds the wait
-- for the catalog all the same (docs/reference/storage.md, Migrations).
SET LOCAL lock_timeout = '5s';

CREATE TABLE stats_minutes (
  minute bigint PRIMARY KEY,
  notices bigint NOT NULL DEFAULT 0 CHECK (notices >= 0),
  carts_created bigint NOT NULL DEFAULT 0 CHECK (carts_created >= 0),
  lines_added bigint NOT NULL DEFAULT 0 CHECK (lines_added >= 0),
  units_added bigint NOT NULL DEFAULT 0 CHECK (units_added >= 0),
  lines_removed bigint NOT NULL DEFAULT 0 CHECK (lines_removed >= 0),
  checkouts bigint NOT NULL DEFAULT 0 CHECK (checkouts >= 0),
  carts_expired bigint NOT NULL DEFAULT 0 CHECK (carts_expired >= 0),
  carts_deleted bigint NOT NULL DEFAULT 0 CHECK (carts_deleted >= 0),
  merges bigint NOT NULL DEFAULT 0 CHECK (merges >= 0)
);

CREATE TABLE stats_minute_values (
  minute bigint NOT NULL,
  currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  value bigint NOT NULL CHECK (value >= 0),
  PRIMARY KEY (minute, currency)
);

CREATE TABLE stats_minute_skus (
  minute bigint NOT NULL,
  sku text NOT NULL,
  units bigint NOT NULL CHECK (units >= 0),
  PRIMARY KEY (minute, sku)
);

-- The distinct carts changed in a minute: Redis keeps them as a HyperLogLog, PostgreSQL exactly,
-- so that a rebuild can add them again.
CREATE TABLE stats_minute_carts (
  minute bigint NOT NULL,
  cart_id text NOT NULL,
  PRIMARY KEY (minute, cart_id)
);

CREATE TABLE stats_seen (
  event_id text PRIMARY KEY,
  minute bigint NOT NULL
);
CREATE INDEX stats_seen_minute ON stats_seen (minute);
