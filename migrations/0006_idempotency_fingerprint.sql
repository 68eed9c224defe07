-- 0006_idempotency_fingerprint: the request an event_id was first answered for.
--
-- An event made from an Idempotency-Key carries request_fingerprint (the request's method, path
-- and body, docs/reference/api.md). The worker records it with the first outcome; a later event
-- with the same event_id and another fingerprint is refused (422 idempotency-key-reused) and the
-- first outcome stays. NULL: the event had none (another client, or an earlier gateway), and any
-- repeat is answered as before fingerprints.
--
-- Online: a nullable column without a default is a change to the catalog only (PostgreSQL 11 and
-- later): no row is rewritten or read, whatever the table's size. It still takes the table's
-- ACCESS EXCLUSIVE lock for a moment. Waiting in the lock queue behind a long transaction (a
-- dump, a report) would hold up every worker's writes queued behind it, so the wait is bounded:
-- after 5 s the migration fails, the shard holds none of it, and `cart-store migrate` can simply
-- be run again.
SET LOCAL lock_timeout = '5s';
ALTER TABLE processed_events ADD COLUMN request_fingerprint text;
