// lib.mjs: what the integration suites share.
//
// The stack's addresses come from the environment, as `scripts/dev test` sets them for its own
// stack (and `eval "$(scripts/dev env)"` for the dev stack):
//   GATEWAY_URL, NATS_URL, REDIS_URL, SHARD_DSNS (comma-separated, in shard order), CART_PARTITIONS.
// Every connection is opened lazily and closed by closeAll(), which a suite calls in its after().

import { randomBytes } from 'node:crypto';
import net from 'node:net';

import { connect as natsConnect } from 'nats';
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

// Bounds every single step, so that a hung service fails a test instead of stalling CI.
export const STEP_TIMEOUT_MS = 8000;
// The per-test option of node:test: { timeout } for test() and describe().
export const TEST_OPTS = { timeout: 10_000 };

// ---------------------------------------------------------------------------------------------
// partitioning (contract section 2)

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

// ---------------------------------------------------------------------------------------------
// PostgreSQL: one pool per shard

let pools = null;

/** The pg.Pool of every shard, in shard order (created on first use). */
export function shardPools() {
  if (pools === null) {
    pools = SHARD_DSNS.map(
      (dsn) => new pg.Pool({ connectionString: dsn, max: 4, connectionTimeoutMillis: STEP_TIMEOUT_MS }),
    );
  }
  return pools;
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

// ---------------------------------------------------------------------------------------------
// NATS JetStream

let nc = null;

/** The suite's NATS connection (opened on first use). */
export async function nats() {
  if (nc === null) {
    nc = await natsConnect({ servers: NATS_URL, name: 'cartshard-integration', timeout: STEP_TIMEOUT_MS });
  }
  return nc;
}

/**
 * Every message stored on `subject` of `stream`, oldest first, that `keep(body)` accepts (the body
 * parsed as JSON; a body that is not JSON is passed as null). Each item is
 * { seq, subject, headers, body }. Reads through a short-lived ordered consumer, so it sees the
 * whole subject whoever else is publishing.
 */
export async function streamMessages(stream, subject, keep = () => true) {
  const js = (await nats()).jetstream();
  const jsm = await (await nats()).jetstreamManager();
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  const total = info.state.subjects?.[subject] ?? 0;
  const out = [];
  if (total === 0) return out;

  const consumer = await js.consumers.get(stream, { filterSubjects: subject });
  let seen = 0;
  try {
    while (seen < total) {
      const m = await consumer.next({ expires: STEP_TIMEOUT_MS });
      if (m === null) break;
      seen += 1;
      let body = null;
      try {
        body = m.json();
      } catch {
        body = null;
      }
      if (keep(body)) out.push({ seq: m.seq, subject: m.subject, headers: m.headers, body });
      if (m.info.pending === 0) break;
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
export async function closeAll() {
  const jobs = [];
  if (pools !== null) jobs.push(...pools.map((p) => p.end()));
  pools = null;
  if (nc !== null) jobs.push(nc.drain().catch(() => nc.close()));
  nc = null;
  await Promise.allSettled(jobs);
}
