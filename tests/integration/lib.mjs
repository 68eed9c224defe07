// lib.mjs: what the integration suites share.
//
// The stack's addresses come from the environment, as `scripts/dev test` sets them for its own
// stack (and `eval "$(scripts/dev env)"` for the dev stack):
//   GATEWAY_URL, NATS_URL, REDIS_URL, SHARD_DSNS (comma-separated, in shard order), CART_PARTITIONS.
// `scripts/dev test` also tells the suites how to reach and restart the processes of its stack:
//   CART_STORE_ADMIN_URLS (the workers' admin URLs, comma-separated), STACK_DIR (the stack's
//   directory, with pids/<name>.pid), CARTSHARD_DEV (the path of scripts/dev) and CARTSHARD_STACK
//   (its stack name, for `scripts/dev stack-up <stack>`), STATS_URL (cart-stats) and
//   CARTSHARD_STATS_BIN (its binary, for `cart-stats rebuild`).
// Every connection is opened lazily and closed by closeAll(), which a suite calls in its after().

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { connect as natsConnect, headers as natsHeaders } from 'nats';
import pg from 'pg';

function env(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

export const GATEWAY_URL = env('GATEWAY_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const NATS_URL = env('NATS_URL', 'nats://127.0.0.1:4222');
export const REDIS_URL = env('REDIS_URL', 'redis://127.0.0.1:6380');
export const SHARD_DSNS = env(
  'SHARD_DSNS',
  'postgresql://postgres@127.0.0.1:5433/cartshard,postgresql://postgres@127.0.0.1:5434/cartshard',
).split(',');
export const SHARDS = SHARD_DSNS.length;
export const CART_PARTITIONS = Number.parseInt(env('CART_PARTITIONS', '32'), 10);
export const CART_STORE_ADMIN_URLS = env('CART_STORE_ADMIN_URLS', 'http://127.0.0.1:9101,http://127.0.0.1:9102')
  .split(',')
  .map((u) => u.replace(/\/+$/, ''));
export const STATS_URL = env('STATS_URL', 'http://127.0.0.1:9201').replace(/\/+$/, '');
export const STACK_DIR = env('STACK_DIR', '');
export const CARTSHARD_DEV = env('CARTSHARD_DEV', '');
export const CARTSHARD_STACK = env('CARTSHARD_STACK', 'test');

// Bounds every single step, so that a hung service fails a test instead of stalling CI.
export const STEP_TIMEOUT_MS = 8000;
// The per-test option of node:test: { timeout } for test() and describe().
export const TEST_OPTS = { timeout: 10_000 };

// ---------------------------------------------------------------------------------------------
// partitioning (docs/reference/partitioning.md)

/** FNV-1a 32 over the UTF-8 bytes of `s` (offset basis 2166136261, prime 16777619). */
export function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The partition of a user: fnv1a_32(user_id) mod CART_PARTITIONS. */
export function partitionOf(userId) {
  return fnv1a32(userId) % CART_PARTITIONS;
}

/** The shard that owns a partition: partition * SHARDS / CART_PARTITIONS, in integers. */
export function shardOfPartition(partition) {
  return Math.floor((partition * SHARDS) / CART_PARTITIONS);
}

/** The shard index whose database holds a user's rows. */
export function shardOf(userId) {
  return shardOfPartition(partitionOf(userId));
}

// ---------------------------------------------------------------------------------------------
// identifiers

let userCounter = 0;

/** A user id no other test (or earlier run) uses: [A-Za-z0-9._:-], at most 64 characters. */
export function uniqueUser(prefix = 'it') {
  userCounter += 1;
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}-${userCounter}`;
}

/** An HS256 token (the gateway's bearer tokens) of `payload`, signed with `secret`. */
export function signJwt(secret, payload, header = { alg: 'HS256', typ: 'JWT' }) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const signing = `${b64(header)}.${b64(payload)}`;
  return `${signing}.${createHmac('sha256', secret).update(signing).digest('base64url')}`;
}

/** A unique user whose rows land on shard `shard`. */
export function uniqueUserOnShard(shard, prefix = 'it') {
  for (;;) {
    const u = uniqueUser(prefix);
    if (shardOf(u) === shard) return u;
  }
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

// ---------------------------------------------------------------------------------------------
// waiting

export { sleep };

/**
 * Calls `probe` until it resolves to a truthy value, and resolves to that value. Rejects naming
 * `what` (and the last value seen) when `timeoutMs` runs out: the asynchronous parts of the write
 * path (respond-async, the outbox relay, dead letters) are checked this way.
 */
export async function waitFor(what, probe, { timeoutMs = STEP_TIMEOUT_MS, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(v)})`);
    }
    await sleep(intervalMs);
  }
}

/** Polls `fn` (a throw counts as not yet) until it is truthy, at most `ms`. */
export function poll(fn, ms, what) {
  return waitFor(what, () => Promise.resolve().then(fn).catch(() => false), { timeoutMs: ms });
}

// ---------------------------------------------------------------------------------------------
// HTTP

/**
 * One request to the gateway (or any URL when `path` starts with http). A plain-object `body` is
 * sent as JSON; a string is sent as is. Resolves to { status, headers, text, json }, where json is
 * the parsed body when the response's Content-Type is a JSON type (else undefined).
 */
export async function http(method, path, { body, headers = {}, timeoutMs = STEP_TIMEOUT_MS } = {}) {
  const url = /^https?:\/\//.test(path) ? path : GATEWAY_URL + path;
  const h = { ...headers };
  let payload = body;
  if (body !== undefined && typeof body !== 'string') {
    payload = JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
  }
  const res = await fetch(url, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let json;
  if (/^application\/([a-z.+-]*\+)?json\b/i.test(res.headers.get('content-type') ?? '') && text !== '') {
    json = JSON.parse(text);
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** POST /v1/carts/{user}/items {sku, quantity}: adds to a line. */
export function addItem(userId, sku, quantity, headers = {}) {
  return http('POST', `/v1/carts/${userId}/items`, { body: { sku, quantity }, headers });
}

/** PUT /v1/carts/{user}/items/{sku} {quantity}. */
export function setItem(userId, sku, quantity, headers = {}) {
  return http('PUT', `/v1/carts/${userId}/items/${sku}`, { body: { quantity }, headers });
}

/**
 * Checks that `cart` is the API's cart (docs/reference/api.md, The cart) of `user` at `version`
 * holding `items` (in this order), with `status` ('active' unless given).
 */
export function assertCart(cart, { user, version, items, status = 'active' }) {
  assert.ok(cart && typeof cart === 'object', 'the body is a JSON object');
  assert.equal(cart.user_id, user);
  assert.match(cart.cart_id, UUID_RE, 'cart_id is a UUID');
  assert.equal(cart.status, status);
  if (version !== undefined) assert.equal(cart.version, version);
  assert.deepEqual(cart.items, items);
  assert.equal(
    cart.item_count,
    items.reduce((n, it) => n + it.quantity, 0),
    'item_count is the sum of the quantities',
  );
  assert.match(cart.created_at, RFC3339_RE, 'created_at is RFC 3339');
  assert.match(cart.updated_at, RFC3339_RE, 'updated_at is RFC 3339');
  assert.ok(Date.parse(cart.updated_at) >= Date.parse(cart.created_at), 'updated_at >= created_at');
}

/**
 * Checks that `res` is a cart response with `status` (200 unless given): application/json, the
 * API's cart (see assertCart) and ETag "<version>". Returns the cart.
 */
export function assertCartResponse(res, expected, status = 200) {
  assert.equal(res.status, status, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/i, 'Content-Type is application/json');
  assertCart(res.json, expected);
  assert.equal(res.headers.get('etag'), `"${res.json.version}"`, 'ETag is "<version>"');
  return res.json;
}

/** Checks that `res` is an RFC 9457 problem with HTTP status `status`. Returns the problem. */
export function assertProblem(res, status) {
  assert.equal(res.status, status, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json\b/i, 'a problem+json body');
  assert.ok(res.json && typeof res.json === 'object', 'the body is a JSON object');
  assert.equal(typeof res.json.type, 'string', 'type');
  assert.equal(typeof res.json.title, 'string', 'title');
  assert.equal(res.json.status, status, 'status');
  assert.equal(typeof res.json.detail, 'string', 'detail');
  return res.json;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: one pool per shard

let pools = null;

/** The pg.Pool of every shard, in shard order (created on first use). */
export function shardPools() {
  if (pools === null) {
    pools = SHARD_DSNS.map((dsn) => {
      const pool = new pg.Pool({ connectionString: dsn, max: 4, connectionTimeoutMillis: STEP_TIMEOUT_MS });
      // An idle connection dies when its shard restarts (the fault suites do that); the pool
      // drops it and the next query opens another.
      pool.on('error', () => {});
      return pool;
    });
  }
  return pools;
}

/**
 * Makes every shard refuse cart lines whose sku starts with REFUSE, as a constraint would
 * (SQLSTATE 23514, check_violation), until the returned function is called.
 */
export async function refuseSkusOnShards() {
  await queryAllShards(`CREATE OR REPLACE FUNCTION cartshard_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.sku LIKE 'REFUSE%' THEN
        RAISE EXCEPTION 'test trigger refuses sku %', NEW.sku USING ERRCODE = 'check_violation';
      END IF;
      RETURN NEW;
    END $$`);
  await queryAllShards(`CREATE OR REPLACE TRIGGER cartshard_test_refuse BEFORE INSERT OR UPDATE ON cart_items
    FOR EACH ROW EXECUTE FUNCTION cartshard_test_refuse()`);
  return async () => {
    await queryAllShards('DROP TRIGGER IF EXISTS cartshard_test_refuse ON cart_items');
    await queryAllShards('DROP FUNCTION IF EXISTS cartshard_test_refuse()');
  };
}

/** Runs one query on shard `shard`; resolves to its rows. */
export async function queryShard(shard, sql, params = []) {
  const res = await shardPools()[shard].query({ text: sql, values: params, query_timeout: STEP_TIMEOUT_MS });
  return res.rows;
}

/** Runs one query on every shard; resolves to an array of row arrays, in shard order. */
export function queryAllShards(sql, params = []) {
  return Promise.all(SHARD_DSNS.map((_, i) => queryShard(i, sql, params)));
}

/**
 * The active cart of a user as its shard holds it: { cart_id, version, items } (items sorted by
 * sku, versions as numbers), or null when the user has no active cart.
 */
export async function shardCart(userId) {
  const rows = await queryShard(
    shardOf(userId),
    `SELECT c.cart_id::text, c.version::bigint AS version, i.sku, i.quantity
       FROM carts c LEFT JOIN cart_items i USING (cart_id)
      WHERE c.user_id = $1 AND c.status = 'active' ORDER BY i.sku COLLATE "C"`,
    [userId],
  );
  if (rows.length === 0) return null;
  return {
    cart_id: rows[0].cart_id,
    version: Number(rows[0].version),
    items: rows.filter((r) => r.sku !== null).map((r) => ({ sku: r.sku, quantity: r.quantity })),
  };
}

/** The processed_events rows of a user on every shard, flattened: [{ event_id, partition, shard }]. */
export async function processedEvents(userId) {
  const perShard = await queryAllShards(
    'SELECT event_id, partition, http_status, cart_version FROM processed_events WHERE user_id = $1',
    [userId],
  );
  return perShard.flatMap((rows, shard) => rows.map((r) => ({ ...r, shard })));
}

// ---------------------------------------------------------------------------------------------
// NATS JetStream

// The promise of the connection, so that callers racing on the first use share one connection.
let nc = null;

/** The suite's NATS connection (opened on first use). */
export function nats() {
  if (nc === null) {
    nc = natsConnect({ servers: NATS_URL, name: 'cartshard-integration', timeout: STEP_TIMEOUT_MS });
    nc.catch(() => {
      nc = null; // the next call tries again
    });
  }
  return nc;
}

/**
 * Runs `fn` while stream CARTS forgets a message id after 300 ms instead of 2 minutes, so that a
 * repeat published again later is stored, and a worker (not the gateway) meets it: the path of a
 * repeat after JetStream's duplicate window, without the wait. The window is restored after.
 */
export async function afterTheDuplicateWindow(fn) {
  const jsm = await (await nats()).jetstreamManager();
  const { config } = await jsm.streams.info('CARTS');
  const window = config.duplicate_window;
  await jsm.streams.update('CARTS', { duplicate_window: 300_000_000 });
  try {
    return await fn(() => sleep(1000)); // what the caller waits, each time, for the ids to be forgotten
  } finally {
    await jsm.streams.update('CARTS', { duplicate_window: window });
  }
}

/**
 * Every message stored on `subject` of `stream`, oldest first, that `keep(body, msg)` accepts (the
 * body parsed as JSON; a body that is not JSON is passed as null). Each item is
 * { seq, subject, headers, body, text } (text: the body as it was stored). Reads through a short-lived ordered consumer, so it sees the
 * whole subject whoever else is publishing. `conn`: another NATS connection than the suite's (a
 * deployment of the suite's own).
 */
export async function streamMessages(stream, subject, keep = () => true, { conn = null } = {}) {
  const c = conn ?? (await nats());
  const js = c.jetstream();
  const jsm = await c.jetstreamManager();
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  const total = info.state.subjects?.[subject] ?? 0;
  const out = [];
  if (total === 0) return out;

  const consumer = await js.consumers.get(stream, { filterSubjects: subject });
  let seen = 0;
  let done = false;
  try {
    // In batches: one pull request per message is slow once a subject holds thousands.
    while (!done && seen < total) {
      const batch = await consumer.fetch({ max_messages: Math.min(total - seen, 500), expires: STEP_TIMEOUT_MS });
      let got = 0;
      for await (const m of batch) {
        got += 1;
        seen += 1;
        let body = null;
        try {
          body = m.json();
        } catch {
          body = null;
        }
        if (keep(body, m)) out.push({ seq: m.seq, subject: m.subject, headers: m.headers, body, text: m.string() });
        if (m.info.pending === 0) done = true;
      }
      if (got === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
  return out;
}

/** The events a user's writes produced on stream CARTS (subject carts.events.<partition>). */
export function userEvents(userId) {
  return streamMessages('CARTS', `carts.events.${partitionOf(userId)}`, (b) => b?.user_id === userId);
}

/** The changes relayed for a user on stream CARTS_CHANGES (subject carts.changes.<partition>). */
export function userChanges(userId) {
  return streamMessages('CARTS_CHANGES', `carts.changes.${partitionOf(userId)}`, (b) => b?.user_id === userId);
}

/**
 * An event (docs/reference/events.md, The event envelope) of `type` for `userId`, with a fresh
 * event_id and occurred_at now; `data` is left out when undefined, and `extra` fields are merged
 * over the result.
 */
export function cartEvent(type, userId, data, extra = {}) {
  const ev = { event_id: randomUUID(), type, user_id: userId, occurred_at: new Date().toISOString() };
  if (data !== undefined) ev.data = data;
  return { ...ev, ...extra };
}

/**
 * Publishes `payload` (a Buffer or string as is, anything else as JSON) on `subject` through JetStream,
 * with `Nats-Msg-Id: msgId` and any other `headers`. Resolves to the PubAck
 * ({ stream, seq, duplicate }).
 */
export async function publishRaw(subject, payload, { msgId, headers = {} } = {}) {
  const js = (await nats()).jetstream();
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  let data = payload;
  if (!Buffer.isBuffer(payload)) data = Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload), 'utf8');
  return js.publish(subject, data, { msgID: msgId, headers: h, timeout: STEP_TIMEOUT_MS });
}

/**
 * Publishes event `ev` on carts.events.<partition of its user> (or `subject`), with
 * `Nats-Msg-Id: msgId` (the event_id unless given), as any client may (docs/reference/events.md,
 * Publishing events yourself).
 * With `reply: true` it also asks for the worker's answer (header Cart-Reply-To) and resolves to
 * { ack, reply: { status, eventId, detail, replayed, fingerprint, problem, cart } } once the event
 * was committed (replayed, fingerprint and problem: Cart-Replayed, Cart-Fingerprint, Cart-Problem);
 * else to { ack }.
 * `replyTimeoutMs` bounds the wait for the answer (longer when a backlog is applied first).
 */
export async function publishEvent(ev, { msgId = ev.event_id, subject, reply = false, replyTimeoutMs = STEP_TIMEOUT_MS } = {}) {
  const subj = subject ?? `carts.events.${partitionOf(ev.user_id)}`;
  if (!reply) return { ack: await publishRaw(subj, ev, { msgId }) };

  const conn = await nats();
  const inbox = `_INBOX.cartshard-it.${randomUUID()}`;
  const sub = conn.subscribe(inbox, { max: 1, timeout: replyTimeoutMs });
  const answer = (async () => {
    for await (const m of sub) return m;
    return null;
  })();
  try {
    const ack = await publishRaw(subj, ev, { msgId, headers: { 'Cart-Reply-To': inbox } });
    const m = await answer;
    assert.ok(m, `the worker answered event ${ev.event_id}`);
    const text = m.string();
    return {
      ack,
      reply: {
        status: Number(m.headers?.get('Cart-Status')),
        eventId: m.headers?.get('Cart-Event-Id'),
        detail: m.headers?.get('Cart-Detail') ?? '',
        replayed: m.headers?.get('Cart-Replayed') === 'true',
        fingerprint: m.headers?.get('Cart-Fingerprint') ?? '',
        problem: m.headers?.get('Cart-Problem') ?? '',
        cart: text === '' ? null : JSON.parse(text),
      },
    };
  } finally {
    sub.unsubscribe();
  }
}

// ---------------------------------------------------------------------------------------------
// the workers' admin endpoints

/** The value of the unlabelled Prometheus sample `name` in `text` (NaN when absent). */
export function metricValue(text, name) {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** The sum of metric `name` over every cart-store worker (CART_STORE_ADMIN_URLS). */
export async function workersMetric(name) {
  const texts = await Promise.all(CART_STORE_ADMIN_URLS.map((u) => http('GET', `${u}/metrics`)));
  return texts.reduce((sum, r) => {
    assert.equal(r.status, 200, `worker /metrics: ${r.text}`);
    return sum + metricValue(r.text, name);
  }, 0);
}

// ---------------------------------------------------------------------------------------------
// the stack's processes (STACK_DIR, CARTSHARD_DEV, CARTSHARD_STACK)

/** True when the suites know how to find and restart the stack's processes. */
export const STACK_CONTROL = STACK_DIR !== '' && CARTSHARD_DEV !== '';

/** The pid of the stack's process `name` (gateway, cs-1, ...) when it is alive, else null. */
export function stackPid(name) {
  let pid;
  try {
    pid = Number.parseInt(readFileSync(path.join(STACK_DIR, 'pids', `${name}.pid`), 'utf8'), 10);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    // A zombie still has a /proc entry, but its state is Z.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z') ? null : pid;
  } catch {
    return null;
  }
}

/** The program name (/proc/<pid>/comm) of `pid`, or null. */
export function procComm(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

/** The program each process of the stack runs, by its pid-file name. */
export const STACK_PROGRAMS = {
  'cs-1': 'cart-store',
  'cs-2': 'cart-store',
  gateway: 'cart-gateway',
  'cart-stats': 'cart-stats',
  nats: 'nats-server',
  redis: 'redis-server',
  pg0: 'postgres',
  pg1: 'postgres',
};

/** The live pid of the stack's `name`, checked to be the program a suite means to signal. */
export function checkedStackPid(name) {
  const pid = stackPid(name);
  assert.ok(pid, `${name} runs (pid file in the stack's pids/)`);
  assert.equal(procComm(pid), STACK_PROGRAMS[name], `pid ${pid} is ${STACK_PROGRAMS[name]}`);
  return pid;
}

/**
 * Runs `scripts/dev stack-up <CARTSHARD_STACK>`: starts whatever of the stack is not running and
 * waits until every service is ready. Resolves to its output; rejects with it on failure.
 */
export function stackUp({ timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(CARTSHARD_DEV, ['stack-up', CARTSHARD_STACK], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${CARTSHARD_DEV} stack-up ${CARTSHARD_STACK} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}

/**
 * Sends `signal` to the stack's `name` and waits until it is gone. `wl` (a model.mjs workload, or
 * anything with at(what)) notes both moments on its timeline.
 */
export async function signalAndWait(wl, name, signal, timeoutMs = 15_000) {
  const pid = checkedStackPid(name);
  process.kill(pid, signal);
  wl.at(`${signal} ${name}`);
  await waitFor(`${name} (pid ${pid}) to exit after ${signal}`, () => stackPid(name) !== pid, { timeoutMs });
  wl.at(`${name} exited`);
}

/** Every worker's /readyz is 200 and each owns partitions again (the stack is whole). */
export async function stackHealthy({ timeoutMs = 20_000 } = {}) {
  await waitFor(
    'both workers ready with partitions',
    async () => {
      const states = await Promise.all(
        CART_STORE_ADMIN_URLS.map(async (u) => {
          const r = await http('GET', `${u}/readyz`, { timeoutMs: 1000 }).catch(() => ({ status: 0 }));
          const m = await http('GET', `${u}/metrics`, { timeoutMs: 1000 }).catch(() => ({ text: '' }));
          const owned = Number(/^cartshard_partitions_owned (\S+)$/m.exec(m.text ?? '')?.[1] ?? 0);
          return r.status === 200 && owned > 0;
        }),
      );
      return states.every(Boolean);
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/**
 * Which worker holds each partition's lock now (ownership.c: one session advisory lock per
 * partition, on the partition's shard): Map partition -> CART_STORE_ID (cs-1, ...). A partition
 * nobody holds is absent.
 */
export async function partitionOwners() {
  const rows = (
    await queryAllShards(
      `SELECT l.objid::int AS partition, substr(a.application_name, length('cart-store ') + 1) AS owner
         FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = $1::int::oid
          AND a.application_name LIKE 'cart-store %'`,
      [0x43415254], // CS_LOCK_NS_PARTITION, 'CART'
    )
  ).flat();
  return new Map(rows.map((r) => [r.partition, r.owner]));
}

// ---------------------------------------------------------------------------------------------
// Redis: a minimal RESP client (one command per connection; enough for checking the cache)

/**
 * Sends one command to REDIS_URL and resolves to its reply: a string, a number, null, or an array
 * of those. A Redis error reply rejects with an Error holding its message.
 */
export function redis(...args) {
  const u = new URL(REDIS_URL);
  const db = u.pathname.length > 1 ? u.pathname.slice(1) : null;
  const password = u.password ? decodeURIComponent(u.password) : null;
  const commands = [];
  if (password !== null) commands.push(['AUTH', password]);
  if (db !== null) commands.push(['SELECT', db]);
  commands.push(args.map(String));
  const wire = commands
    .map((c) => `*${c.length}\r\n` + c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''))
    .join('');

  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
    let buf = Buffer.alloc(0);
    const replies = [];
    sock.setTimeout(STEP_TIMEOUT_MS, () => sock.destroy(new Error(`redis: no answer in ${STEP_TIMEOUT_MS} ms`)));
    sock.on('error', reject);
    sock.on('connect', () => sock.write(wire));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const parsed = parseResp(buf, 0);
        if (parsed === null) return; // incomplete
        buf = buf.subarray(parsed.end);
        replies.push(parsed.value);
        if (replies.length === commands.length) {
          sock.end();
          const errs = replies.filter((r) => r instanceof Error);
          if (errs.length) reject(errs[0]);
          else resolve(replies[replies.length - 1]);
          return;
        }
      }
    });
  });
}

// Parses one RESP2 value at `at`; null when `buf` does not hold all of it yet.
function parseResp(buf, at) {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const item = parseResp(buf, pos);
        if (item === null) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`redis: unexpected reply type ${JSON.stringify(type)}`);
  }
}

// ---------------------------------------------------------------------------------------------

/** Closes every connection the helpers opened. */
// ---------------------------------------------------------------------------------------------
// private processes: gateways (and servers) a suite starts on free loopback ports

export const GATEWAY_BIN =
  process.env.CARTSHARD_GATEWAY_BIN ??
  fileURLToPath(new URL('../../build/services/gateway/cart-gateway', import.meta.url));

export const STORE_BIN =
  process.env.CARTSHARD_STORE_BIN ??
  fileURLToPath(new URL('../../build/services/cart-store/cart-store', import.meta.url));

const children = new Set();

// Where freePort looks: TEST_PRIVATE_PORTS ("first-last"), by default 10000-19999. Below Linux's
// ephemeral range (32768-60999): a port the kernel hands out for outgoing connections could be
// taken, between the check and the listen, by any client socket on the machine, the process's own
// connections to NATS, Redis or PostgreSQL included.
const [PORT_FIRST, PORT_LAST] = env('TEST_PRIVATE_PORTS', '10000-19999').split('-').map(Number);
assert.ok(PORT_FIRST >= 1024 && PORT_LAST >= PORT_FIRST && PORT_LAST < 32768, 'TEST_PRIVATE_PORTS: first-last, below 32768');

/** A TCP port nobody listens on right now, picked at random from TEST_PRIVATE_PORTS. */
export async function freePort() {
  for (let attempt = 0; ; attempt++) {
    const candidate = PORT_FIRST + Math.floor(Math.random() * (PORT_LAST - PORT_FIRST + 1));
    const srv = net.createServer();
    const ok = await new Promise((resolve) => {
      srv.once('error', () => resolve(false));
      srv.listen(candidate, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise((resolve) => srv.close(resolve));
      return candidate;
    }
    if (attempt >= 100) throw new Error(`no free port found in ${PORT_FIRST}-${PORT_LAST}`);
  }
}

function stderrFile(pid) {
  mkdirSync(process.env.CARTSHARD_STDERR_DIR, { recursive: true });
  return path.join(process.env.CARTSHARD_STDERR_DIR, `${pid}.log`);
}

/**
 * Starts `cmd`; child.log() is the tail of its stderr. closeAll() kills it (by pid) if the suite
 * did not stop it. With `logFile`, the whole stderr is appended to that file too (a restarted
 * process can share its predecessor's file).
 */
export function startProcess(cmd, args, env = {}, { logFile = null } = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  // Under a sanitizer (scripts/dev sets CARTSHARD_STDERR_DIR), the whole stderr is kept by pid,
  // for the report of that pid.
  const keep = process.env.CARTSHARD_STDERR_DIR && child.pid ? stderrFile(child.pid) : null;
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
    if (keep) appendFileSync(keep, d);
    if (logFile) appendFileSync(logFile, d);
  });
  child.log = () => stderr;
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Sends `signal` and waits for the exit (nothing if it has exited already). */
export async function stopProcess(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/**
 * A private cart-gateway on the stack's NATS, Redis and shards, one thread, on a free port; `env`
 * overrides any setting. Resolves once `ready(url)` (by default: GET /readyz answers 200 and
 * reports NATS and Redis reached: the gateway connects to them in the background) holds,
 * at most 10 s, with child.url set (https:// when env sets GATEWAY_TLS_CERT).
 */
export async function startGateway(env = {}, { ready, logFile = null } = {}) {
  assert.ok(existsSync(GATEWAY_BIN), `${GATEWAY_BIN} is built`);
  const port = await freePort();
  const child = startProcess(GATEWAY_BIN, [], {
    NATS_URL,
    REDIS_URL,
    SHARD_DSNS: SHARD_DSNS.join(','),
    CART_PARTITIONS: String(CART_PARTITIONS),
    GATEWAY_HOST: '127.0.0.1',
    GATEWAY_PORT: String(port),
    GATEWAY_THREADS: '1',
    LOG_LEVEL: 'warn',
    ...env,
  }, { logFile });
  child.url = `${env.GATEWAY_TLS_CERT ? 'https' : 'http'}://127.0.0.1:${port}`;
  const isReady =
    ready ??
    (async (url) => {
      const r = await http('GET', `${url}/readyz`, { timeoutMs: 500 }).catch(() => ({}));
      return r.status === 200 && r.json?.nats === true && r.json?.redis === true;
    });
  await waitFor(`the private gateway on port ${port} to be ready (${child.log()})`, async () => {
    assert.equal(child.exitCode, null, `the private gateway exited: ${child.log()}`);
    return isReady(child.url).catch(() => false);
  }, { timeoutMs: 10_000 });
  return child;
}

/** A cart-gateway that must refuse to start with `env`: resolves to its exit code and stderr. */
export async function refusedGateway(env) {
  const child = startProcess(GATEWAY_BIN, [], { GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: '1', LOG_LEVEL: 'warn', ...env });
  const [code] = await once(child, 'exit');
  return { code, log: child.log() };
}

// ---------------------------------------------------------------------------------------------
// bearer tokens

/** base64url of a string or Buffer as is, of anything else as JSON. */
export const b64url = (v) =>
  Buffer.from(typeof v === 'string' || Buffer.isBuffer(v) ? v : JSON.stringify(v)).toString('base64url');

/** A JWT of `payload` signed with HS256 under `secret`. */
export function hs256Jwt(secret, payload, header = { alg: 'HS256', typ: 'JWT' }) {
  const signing = `${b64url(header)}.${b64url(payload)}`;
  return `${signing}.${createHmac('sha256', secret).update(signing).digest('base64url')}`;
}

export async function closeAll() {
  for (const c of children) c.kill('SIGKILL');
  const jobs = [];
  if (pools !== null) jobs.push(...pools.map((p) => p.end()));
  pools = null;
  if (nc !== null) {
    jobs.push(nc.then((c) => c.drain().catch(() => c.close())));
  }
  nc = null;
  await Promise.allSettled(jobs);
}
