-- 0007_merge: a guest's cart merged into a user's (docs/internals/merge.md). While the merge is in
-- flight the guest cart is 'merging'; it ends 'merged' (or 'active' again when the user's side
-- refused the lines). merged_into names the user, on merging and merged carts only.
--
-- Applied to live shards, so it neither rewrites nor scans carts. ADD COLUMN without a default is
-- a change to the catalog only (the table keeps its relfilenode), and so is DROP CONSTRAINT. The
-- new CHECKs are added NOT VALID, which skips checking the existing rows: each of them passed the
-- old status check, a subset of the new one, and has NULL in merged_into, which passes both new
-- checks, so the scan could find nothing. NOT VALID constraints are enforced on every row written
-- from here on. An operator may still run ALTER TABLE carts VALIDATE CONSTRAINT ... later, outside
-- this transaction: it scans under SHARE UPDATE EXCLUSIVE, which does not block writes.
--
-- The ALTER takes an ACCESS EXCLUSIVE lock for the few milliseconds this transaction lasts, once
-- the transactions using carts are done; the lock timeout bounds the queue behind it: migrate
-- then fails, changes nothing, and can be run again. How it was checked: docs/reference/storage.md,
-- Migrations.
SET LOCAL lock_timeout = '5s';

ALTER TABLE carts
  DROP CONSTRAINT carts_status_check,
  ADD CONSTRAINT carts_status_check
    CHECK (status IN ('active', 'checked_out', 'deleted', 'expired', 'merging', 'merged')) NOT VALID,
  ADD COLUMN merged_into text,
  ADD CONSTRAINT carts_merged_into_check
    CHECK (merged_into ~ '^[A-Za-z0-9._:-]{1,64}$' AND merged_into <> user_id) NOT VALID,
  ADD CONSTRAINT carts_merged_into_status_check
    CHECK ((merged_into IS NOT NULL) = (status IN ('merging', 'merged'))) NOT VALID;
