-- The last stream sequence of CARTS applied for each partition, committed in the same
-- transaction as the changes it covers. A worker that takes a partition over starts its
-- consumer right after this sequence, so events are applied in stream order exactly once even
-- when the previous owner died holding unacknowledged messages.
CREATE TABLE partition_offsets (
  partition   integer PRIMARY KEY CHECK (partition >= 0),
  stream_seq  bigint NOT NULL CHECK (stream_seq >= 0),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
