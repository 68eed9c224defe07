-- 0001_init: the cart tables of one shard.
--
-- Every shard holds the same schema; a user's rows live on exactly one shard, chosen by
-- shard = partition * SHARDS / CART_PARTITIONS (contract section 2). Applied by
-- `cart-store migrate` in one transaction together with its schema_migrations row.

-- carts: one row per cart a user ever had. At most one is 'active' per user; a checked-out or
-- deleted cart keeps its row (with a new cart_id for the next one), so history stays queryable.
CREATE TABLE carts (
  cart_id     uuid PRIMARY KEY,
  user_id     text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
  partition   integer NOT NULL CHECK (partition >= 0),
  status      text NOT NULL CHECK (status IN ('active', 'checked_out', 'deleted')),
  version     bigint NOT NULL CHECK (version >= 1),
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL
);
-- The database itself guarantees "one active cart per user".
CREATE UNIQUE INDEX carts_one_active_per_user ON carts (user_id) WHERE status = 'active';
-- A user's newest cart first (versions continue across carts).
CREATE INDEX carts_user_version ON carts (user_id, version DESC);
-- Finds active carts idle longer than CART_IDLE_TTL.
CREATE INDEX carts_active_idle ON carts (updated_at) WHERE status = 'active';

-- cart_items: the lines of a cart, one per sku; a line with quantity 0 is deleted, not kept.
CREATE TABLE cart_items (
  cart_id   uuid NOT NULL REFERENCES carts (cart_id) ON DELETE CASCADE,
  sku       text NOT NULL CHECK (sku ~ '^[A-Za-z0-9._:-]{1,64}$'),
  quantity  integer NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (cart_id, sku)
);

-- processed_events: the dedup record. An event_id is applied at most once: its row is written in
-- the same transaction as the change, with the HTTP status the change resolved to (so a retried
-- event or Idempotency-Key gets the first answer again).
CREATE TABLE processed_events (
  event_id      text PRIMARY KEY,
  user_id       text NOT NULL,
  partition     integer NOT NULL,
  stream_seq    bigint,
  http_status   smallint NOT NULL,
  cart_version  bigint,
  processed_at  timestamptz NOT NULL DEFAULT now()
);
-- Lets old dedup rows be pruned by age.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- outbox: change notifications committed with the change and published afterwards on
-- carts.changes.<partition> (msg_id becomes Nats-Msg-Id); a row is deleted once JetStream has
-- acknowledged it, so a commit is never left unpublished even if the worker dies in between.
CREATE TABLE outbox (
  id          bigserial PRIMARY KEY,
  partition   integer NOT NULL,
  subject     text NOT NULL,
  msg_id      text NOT NULL,
  payload     text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
