// `cart-store migrate` on a live shard (docs/reference/storage.md, Migrations): its waits are
// bounded (MIGRATE_LOCK_TIMEOUT_MS, MIGRATE_STATEMENT_TIMEOUT_MS), a migration that cannot get its
// lock fails and leaves nothing of itself, and a second run applies what the first did not, once.
// The suite migrates a database of its own, created on the test stack's first PostgreSQL server
// and dropped afterwards; the stack's own databases are only read.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { SHARD_DSNS, STORE_BIN, closeAll, queryShard } from './lib.mjs';

const SLOW = { timeout: 60_000 };
const MIGRATIONS = readdirSync(fileURLToPath(new URL('../../migrations', import.meta.url)))
  .filter((f) => /^\d{4}_.+\.sql$/.test(f))
  .sort();

/** Runs `cart-store migrate` with `env` over the test environment; resolves to {code, log, ms}. */
function migrate(env) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(STORE_BIN, ['migrate'], { env: { ...process.env, LOG_LEVEL: 'info', ...env }, timeout: 45_000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, log: stdout + stderr, ms: Date.now() - t0 }));
  });
}

/** The DSN of database `db` on the server of `dsn`. */
function withDatabase(dsn, db) {
  const u = new URL(dsn);
  u.pathname = `/${db}`;
  return u.toString();
}

const db = `cartshard_migrate_${randomBytes(4).toString('hex')}`;
const dsn = withDatabase(SHARD_DSNS[0], db);
let client = null; // a session on the suite's database

before(async () => {
  await queryShard(0, `CREATE DATABASE ${db}`);
  client = new pg.Client({ connectionString: dsn });
  await client.connect();
});

after(async () => {
  await client?.end().catch(() => {});
  await queryShard(0, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
  await closeAll();
});

describe('cart-store migrate', SLOW, () => {
  test('a new database gets every file in migrations/, each recorded once', SLOW, async () => {
    const r = await migrate({ SHARD_DSNS: dsn });
    assert.equal(r.code, 0, r.log);
    const rows = (await client.query('SELECT version, name FROM schema_migrations ORDER BY version')).rows;
    assert.deepEqual(rows.map((x) => x.name), MIGRATIONS);
    const again = await migrate({ SHARD_DSNS: dsn });
    assert.equal(again.code, 0, again.log);
    assert.match(again.log, /"applied":0\b/, 'nothing applied twice');
  });

  test('a migration that cannot get its table lock fails, leaves nothing, and applies on the next run', SLOW, async () => {
    // The shard as it was before 0006: its column gone, its record gone.
    await client.query('ALTER TABLE processed_events DROP COLUMN request_fingerprint');
    await client.query("DELETE FROM schema_migrations WHERE name = '0006_idempotency_fingerprint.sql'");
    // A long reader (a report, a dump) holds the table; the ALTER must not queue behind it for long,
    // since every worker's write would queue behind the ALTER.
    const reader = new pg.Client({ connectionString: dsn });
    await reader.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM processed_events');
      const blocked = await migrate({ SHARD_DSNS: dsn, MIGRATE_LOCK_TIMEOUT_MS: '300' });
      assert.notEqual(blocked.code, 0, `migrate fails while the lock is held: ${blocked.log}`);
      assert.match(blocked.log, /lock timeout/i, blocked.log);
      assert.match(blocked.log, /0006_idempotency_fingerprint\.sql/, 'the log names the file');
      // 0006 bounds its own wait at 5 s (SET LOCAL); nothing waits longer than that.
      assert.ok(blocked.ms < 15_000, `gave up in ${blocked.ms} ms`);
      const col = await client.query(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'processed_events' AND column_name = 'request_fingerprint'");
      assert.equal(col.rowCount, 0, 'nothing of the migration is left');
      const rec = await client.query("SELECT 1 FROM schema_migrations WHERE name = '0006_idempotency_fingerprint.sql'");
      assert.equal(rec.rowCount, 0, 'and it is not recorded');
    } finally {
      await reader.query('ROLLBACK').catch(() => {});
      await reader.end().catch(() => {});
    }
    const r = await migrate({ SHARD_DSNS: dsn, MIGRATE_LOCK_TIMEOUT_MS: '300' });
    assert.equal(r.code, 0, r.log);
    assert.match(r.log, /"applied":1\b/, 'exactly the missing one');
    const col = await client.query(
      "SELECT 1 FROM information_schema.columns WHERE table_name = 'processed_events' AND column_name = 'request_fingerprint'");
    assert.equal(col.rowCount, 1);
  });

  test('the session limits apply to every statement: a held lock on schema_migrations', SLOW, async () => {
    const holder = new pg.Client({ connectionString: dsn });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE');
      const byLock = await migrate({ SHARD_DSNS: dsn, MIGRATE_LOCK_TIMEOUT_MS: '200' });
      assert.notEqual(byLock.code, 0, byLock.log);
      assert.match(byLock.log, /lock timeout/i, byLock.log);
      assert.ok(byLock.ms < 10_000, `gave up in ${byLock.ms} ms`);
      const byStatement = await migrate({
        SHARD_DSNS: dsn,
        MIGRATE_LOCK_TIMEOUT_MS: '600000',
        MIGRATE_STATEMENT_TIMEOUT_MS: '200',
      });
      assert.notEqual(byStatement.code, 0, byStatement.log);
      assert.match(byStatement.log, /statement timeout/i, byStatement.log);
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end().catch(() => {});
    }
    const r = await migrate({ SHARD_DSNS: dsn });
    assert.equal(r.code, 0, r.log);
  });

  test('bad settings stop it at once, naming the variable', async () => {
    for (const [name, value] of [
      ['MIGRATE_LOCK_TIMEOUT_MS', '0'],
      ['MIGRATE_LOCK_TIMEOUT_MS', '5s'],
      ['MIGRATE_STATEMENT_TIMEOUT_MS', '-1'],
    ]) {
      const r = await migrate({ SHARD_DSNS: dsn, [name]: value });
      assert.equal(r.code, 2, `${name}=${value}: ${r.log}`);
      assert.match(r.log, new RegExp(`${name}: expected an integer`), r.log);
    }
  });
});
