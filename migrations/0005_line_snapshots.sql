-- 0005_line_snapshots: what the shopper saw when a line was added (docs/reference/api.md, Line
-- snapshots and totals): a name, a unit price in its currency, attributes. Each may be absent
-- (NULL), as on every line written before this migration; the totals are computed, not stored.
--
-- Applied to live shards, so it neither rewrites nor scans cart_items. On PostgreSQL 15 an
-- ADD COLUMN without a default is a change to the catalog only: no row is touched, the table keeps
-- its file. A CHECK constraint, though, is verified against every row while the table is locked
-- ACCESS EXCLUSIVE, unless it is added NOT VALID: every row has NULL in the new columns, which
-- passes each check below, so that verification could find nothing. NOT VALID constraints are
-- enforced on every row inserted or updated from here on, like any other.
--
-- The ALTER still takes an ACCESS EXCLUSIVE lock, for as long as this transaction lasts (a few
-- milliseconds), but it must first wait for the transactions that use the table (the workers'
-- batches, the gateways' reads), and everything that comes after it queues behind it. The lock
-- timeout bounds that stall: `cart-store migrate` then fails, changes nothing, and can be run
-- again. How this was checked (relfilenode, sequential scans, pg_locks): docs/reference/storage.md,
-- Migrations.
SET LOCAL lock_timeout = '5s';

ALTER TABLE cart_items
  ADD COLUMN name text,
  ADD COLUMN unit_price bigint,
  ADD COLUMN currency text,
  -- The attributes object as the API shows it: compact JSON with sorted keys, kept as text so
  -- that it is read back byte for byte (jsonb would reorder the keys and add blanks).
  ADD COLUMN attributes text,
  ADD CONSTRAINT cart_items_name_check CHECK (octet_length(name) <= 200) NOT VALID,
  ADD CONSTRAINT cart_items_unit_price_check CHECK (unit_price BETWEEN 0 AND 100000000000) NOT VALID,
  ADD CONSTRAINT cart_items_currency_check CHECK (currency ~ '^[A-Z]{3}$') NOT VALID,
  -- A price is an amount in a currency: both or neither.
  ADD CONSTRAINT cart_items_priced_check CHECK ((unit_price IS NULL) = (currency IS NULL)) NOT VALID,
  ADD CONSTRAINT cart_items_attributes_check
    CHECK (octet_length(attributes) <= 2048 AND json_typeof(attributes::json) = 'object') NOT VALID;
