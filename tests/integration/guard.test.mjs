// The read path and the guard rails (docs/reference/api.md: Reads, Authentication, Rate limiting;
// docs/reference/storage.md: Redis): GET from the Redis cache with a read-through fill, JWT auth,
// the rate limit shared through Redis by several gateways, and what happens while Redis is down.
// Besides the test stack's own gateway this suite starts private gateways (and one private Redis)
// on free loopback ports and stops them by pid.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { get as httpGet } from 'node:http';
import { after, describe, test } from 'node:test';

import {
  CART_PARTITIONS,
  NATS_URL,
  REDIS_URL,
  STORE_BIN,
  STACK_CONTROL,
  TEST_OPTS,
  b64url,
  closeAll,
  freePort,
  hs256Jwt,
  http,
  startGateway,
  startProcess as start,
  stopProcess as stop,
  waitFor,
  redis,
  stackPid,
  uniqueUser,
  userEvents,
} from './lib.mjs';

const SLOW = { timeout: 30_000 };

after(closeAll);

/** Polls `fn` (a throw counts as not yet) until it is truthy, at most `ms`. */
function poll(fn, ms, what) {
  return waitFor(what, () => Promise.resolve().then(fn).catch(() => false), { timeoutMs: ms });
}

/** Another database of the test stack's Redis, so private limits never touch the stack's keys. */
function redisDb(n) {
  const u = new URL(REDIS_URL);
  u.pathname = `/${n}`;
  return u.toString();
}


const cacheKey = (user) => `cart:{${user}}`;

describe('GET through the cache', TEST_OPTS, () => {
  test('a hit is served from Redis; a miss is read from the shard and fills the cache', TEST_OPTS, async () => {
    const user = uniqueUser('read');
    const put = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 2 } });
    assert.equal(put.status, 200);
    const committed = put.json;

    // A planted entry (valid, newer) proves where a hit comes from.
    const planted = { ...committed, version: committed.version + 100, items: [{ sku: 'ZZ', quantity: 9 }], item_count: 9 };
    await redis('SET', cacheKey(user), JSON.stringify(planted));
    const hit = await http('GET', `/v1/carts/${user}`);
    assert.equal(hit.status, 200);
    assert.deepEqual(hit.json, planted);
    assert.equal(hit.headers.get('etag'), `"${planted.version}"`);
    const notModified = await http('GET', `/v1/carts/${user}`, { headers: { 'If-None-Match': `"${planted.version}"` } });
    assert.equal(notModified.status, 304);

    await redis('DEL', cacheKey(user));
    const miss = await http('GET', `/v1/carts/${user}`);
    assert.equal(miss.status, 200);
    assert.deepEqual(miss.json, committed, 'a miss reads the shard');
    await poll(async () => (await redis('GET', cacheKey(user))) !== null, 3000, 'the fill');
    assert.deepEqual(JSON.parse(await redis('GET', cacheKey(user))), committed, 'and fills the cache');
  });

  test('a corrupt, foreign or malformed entry is a miss, never an error', TEST_OPTS, async () => {
    const user = uniqueUser('read');
    const other = uniqueUser('read');
    const mine = (await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'B1', quantity: 1 } })).json;
    const theirs = (await http('POST', `/v1/carts/${other}/items`, { body: { sku: 'C1', quantity: 5 } })).json;
    const bad = [
      'garbage',
      '{"version": 99',
      JSON.stringify({ ...theirs, version: 99 }), // another user's cart
      JSON.stringify({ ...mine, version: 99, items: [{ sku: 'B1', quantity: 0 }] }), // quantity 0
      JSON.stringify({ ...mine, version: 99, extra: true }), // unknown key
      JSON.stringify({ ...mine, version: 99, item_count: 7 }), // wrong sum
    ];
    for (const entry of bad) {
      await redis('SET', cacheKey(user), entry);
      const res = await http('GET', `/v1/carts/${user}`);
      assert.equal(res.status, 200, `entry ${entry.slice(0, 40)}`);
      assert.deepEqual(res.json, mine);
    }
    await redis('DEL', cacheKey(user));
  });

  test('a cached cart that is no longer active is a 404', TEST_OPTS, async () => {
    const user = uniqueUser('read');
    await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'D1', quantity: 1 } });
    assert.equal((await http('POST', `/v1/carts/${user}/checkout`)).status, 200);
    const entry = JSON.parse(await redis('GET', cacheKey(user)));
    assert.equal(entry.status, 'checked_out', 'the worker cached the checked-out cart');
    assert.equal((await http('GET', `/v1/carts/${user}`)).status, 404);
  });
});

describe('request ids', TEST_OPTS, () => {
  test('a traceparent or X-Request-Id is echoed and travels with the event', TEST_OPTS, async () => {
    const user = uniqueUser('trace');
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const a = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 1 }, headers: { traceparent: tp } });
    assert.equal(a.headers.get('x-request-id'), tp);
    const b = await http('PUT', `/v1/carts/${user}/items/A1`, { body: { quantity: 2 }, headers: { 'X-Request-Id': 'req-42' } });
    assert.equal(b.headers.get('x-request-id'), 'req-42');
    const c = await http('DELETE', `/v1/carts/${user}/items/A1`, { headers: { traceparent: '00-bad' } });
    assert.match(c.headers.get('x-request-id'), /^[0-9a-f-]{36}$/, 'an invalid traceparent gets a new id');
    const events = await userEvents(user);
    assert.deepEqual(
      events.map((e) => e.body.trace),
      [tp, 'req-42', c.headers.get('x-request-id')],
    );
  });
});

describe('JWT auth', SLOW, () => {
  const secret = 'test-secret-0123456789abcdef-0123456789';
  const now = () => Math.floor(Date.now() / 1000);
  let gw;

  test('starts a gateway with AUTH_JWT_SECRET', SLOW, async () => {
    gw = await startGateway({ AUTH_JWT_SECRET: secret, REDIS_URL: redisDb(2) });
  });

  test('no token, a forged one, alg none and an expired one are 401', SLOW, async () => {
    const user = uniqueUser('jwt');
    const path = `${gw.url}/v1/carts/${user}`;
    const good = hs256Jwt(secret, { sub: user, exp: now() + 600 });
    const cases = {
      missing: {},
      'not bearer': { Authorization: `Basic ${b64url('a:b')}` },
      forged: { Authorization: `Bearer ${hs256Jwt('another-secret-0123456789abcdef-0123', { sub: user, exp: now() + 600 })}` },
      tampered: { Authorization: `Bearer ${good.slice(0, -2)}${good.endsWith('AA') ? 'AB' : 'AA'}` },
      'alg none': { Authorization: `Bearer ${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: user, exp: now() + 600 })}.` },
      'alg HS512': { Authorization: `Bearer ${hs256Jwt(secret, { sub: user, exp: now() + 600 }, { alg: 'HS512' })}` },
      expired: { Authorization: `Bearer ${hs256Jwt(secret, { sub: user, exp: now() - 120 })}` },
      'no exp': { Authorization: `Bearer ${hs256Jwt(secret, { sub: user })}` },
      malformed: { Authorization: 'Bearer abc.def' },
    };
    for (const [name, headers] of Object.entries(cases)) {
      for (const method of ['GET', 'POST']) {
        const res =
          method === 'GET'
            ? await http('GET', path, { headers })
            : await http('POST', `${path}/items`, { headers, body: { sku: 'A1', quantity: 1 } });
        assert.equal(res.status, 401, `${name} ${method}: ${res.text}`);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /, `${name}: WWW-Authenticate`);
        assert.match(res.headers.get('content-type'), /^application\/problem\+json/);
      }
    }
    assert.equal((await http('GET', `/v1/carts/${user}`)).status, 404, 'nothing was written');
  });

  test("a valid token works only for its own user: 403 for another's path or body", SLOW, async () => {
    const user = uniqueUser('jwt');
    const auth = { Authorization: `Bearer ${hs256Jwt(secret, { sub: user, exp: now() + 600 })}` };
    const add = await http('POST', `${gw.url}/v1/carts/${user}/items`, { headers: auth, body: { sku: 'A1', quantity: 1 } });
    assert.equal(add.status, 200, add.text);
    assert.equal((await http('GET', `${gw.url}/v1/carts/${user}`, { headers: auth })).status, 200);
    const other = uniqueUser('jwt');
    assert.equal((await http('GET', `${gw.url}/v1/carts/${other}`, { headers: auth })).status, 403);
    const del = await http('DELETE', `${gw.url}/v1/carts/${other}`, { headers: auth });
    assert.equal(del.status, 403);
    const create = await http('POST', `${gw.url}/v1/carts`, { headers: auth, body: { user_id: other } });
    assert.equal(create.status, 403);
    const createOwn = await http('POST', `${gw.url}/v1/carts`, { headers: auth, body: { user_id: user } });
    assert.equal(createOwn.status, 200, 'the existing cart');
    assert.equal((await http('GET', `${gw.url}/healthz`)).status, 200, 'probes need no token');
    await stop(gw);
  });
});

describe('rate limiting shared through Redis', SLOW, () => {
  test('two gateways on one Redis together allow the limit, not twice it', SLOW, async () => {
    const env = { RATE_LIMIT_RPS: '1', RATE_LIMIT_BURST: '10', REDIS_URL: redisDb(3) };
    const [a, b] = await Promise.all([startGateway(env), startGateway(env)]);
    const user = uniqueUser('rl');
    const started = Date.now();
    const answers = [];
    for (let i = 0; i < 30; i++) answers.push(await http('GET', `${(i % 2 ? a : b).url}/v1/carts/${user}`));
    const seconds = (Date.now() - started) / 1000;
    const allowed = answers.filter((r) => r.status === 404).length;
    const limited = answers.filter((r) => r.status === 429);
    assert.equal(allowed + limited.length, 30, 'only 404 (allowed, no cart) and 429');
    assert.ok(allowed >= 10, `the burst is allowed (${allowed})`);
    assert.ok(allowed <= 10 + Math.ceil(seconds) + 1, `${allowed} allowed in ${seconds.toFixed(2)} s: one budget`);
    const r = limited[0];
    assert.match(r.headers.get('content-type'), /^application\/problem\+json/);
    assert.equal(r.json.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.equal(r.headers.get('ratelimit-limit'), '10');
    assert.equal(r.headers.get('ratelimit-remaining'), '0');
    assert.ok(Number(r.headers.get('ratelimit-reset')) >= 1);
    const ok = answers.find((x) => x.status === 404);
    assert.equal(ok.headers.get('ratelimit-limit'), '10');
    await Promise.all([stop(a), stop(b)]);
  });
});

describe('Redis down', SLOW, () => {
  test('reads go to the shard, limits go local, and the cache refills when Redis is back', SLOW, async () => {
    const port = await freePort();
    const redisArgs = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    let rds = start('redis-server', redisArgs);
    const url = `redis://127.0.0.1:${port}`;
    const priv = (...args) =>
      new Promise((resolve, reject) => {
        const c = spawn('redis-cli', ['-p', String(port), '--no-raw', ...args]);
        let out = '';
        c.stdout.on('data', (d) => {
          out += d;
        });
        c.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`redis-cli ${code}`))));
      });
    await poll(async () => (await priv('PING')) === 'PONG', 5000, 'the private redis');
    const gw = await startGateway({ REDIS_URL: url, RATE_LIMIT_RPS: '2', RATE_LIMIT_BURST: '40' });
    const user = uniqueUser('down');
    assert.equal((await http('POST', `${gw.url}/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 3 } })).status, 200);
    assert.equal((await http('GET', `${gw.url}/v1/carts/${user}`)).status, 200);
    await poll(async () => (await priv('EXISTS', cacheKey(user))) === '(integer) 1', 3000, 'the fill');

    await stop(rds, 'SIGKILL');
    for (let i = 0; i < 5; i++) {
      const res = await http('GET', `${gw.url}/v1/carts/${user}`);
      assert.equal(res.status, 200, 'served from the shard');
      assert.deepEqual(res.json.items, [{ sku: 'A1', quantity: 3 }]);
    }
    const write = await http('POST', `${gw.url}/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 1 } });
    assert.equal(write.status, 200, 'writes do not need the gateway to reach Redis');
    assert.equal((await http('GET', `${gw.url}/v1/carts/${user}`)).json.items[0].quantity, 4);
    // The local limiter: 40 allowed at once, then about 2 per second.
    const burst = [];
    for (let i = 0; i < 60; i++) burst.push((await http('GET', `${gw.url}/v1/carts/${user}`)).status);
    assert.ok(burst.includes(429), 'the local limiter refuses past the burst');
    assert.ok(burst.filter((s) => s === 200).length >= 30, 'and serves the rest of the burst');
    const metrics = (await http('GET', `${gw.url}/metrics`)).text;
    assert.match(metrics, /^cartshard_rate_limit_local_total [1-9]/m);
    assert.match(metrics, /^cartshard_dependency_errors_total\{dependency="redis"\} [1-9]/m);

    rds = start('redis-server', redisArgs);
    await poll(async () => (await priv('PING')) === 'PONG', 5000, 'redis again');
    await new Promise((r) => setTimeout(r, 2500)); // the limiter's bucket refills; the client reconnects
    await poll(
      async () => {
        await http('GET', `${gw.url}/v1/carts/${user}`);
        return (await priv('EXISTS', cacheKey(user))) === '(integer) 1';
      },
      8000,
      'the cache to refill',
    );
    await stop(gw);
    await stop(rds);
  });
});

describe('graceful shutdown', SLOW, () => {
  const needs = { ...SLOW, skip: STACK_CONTROL ? false : 'needs STACK_DIR and CARTSHARD_DEV (scripts/dev test sets them)' };
  test('SIGTERM: writes in flight are answered, new connections refused, then a clean exit', needs, async () => {
    const gw = await startGateway({ GATEWAY_THREADS: '2' });
    const users = Array.from({ length: 20 }, () => uniqueUser('term'));
    // Sync writes wait for their commit; with the workers frozen, they are surely still in flight
    // when the signal lands (and are answered 202 when the sync wait runs out).
    const workers = ['cs-1', 'cs-2'].map(stackPid).filter((pid) => pid !== null);
    for (const pid of workers) process.kill(pid, 'SIGSTOP');
    let answers;
    let code;
    let signal;
    try {
      const inflight = users.map((u) =>
        http('POST', `${gw.url}/v1/carts/${u}/items`, { body: { sku: 'A1', quantity: 1 } }).catch((e) => ({ status: 0, error: e })),
      );
      await new Promise((r) => setTimeout(r, 300));
      const exited = once(gw, 'exit');
      gw.kill('SIGTERM');
      answers = await Promise.all(inflight);
      [code, signal] = await exited;
    } finally {
      for (const pid of workers) process.kill(pid, 'SIGCONT');
    }
    assert.equal(signal, null, `no crash: ${gw.log()}`);
    assert.equal(code, 0, `exit status 0: ${gw.log()}`);
    for (const a of answers) assert.ok([200, 202, 503, 0].includes(a.status), `status ${a.status}`);
    const served = answers.filter((a) => a.status === 200 || a.status === 202).length;
    assert.ok(served >= 1, 'the requests already in flight were answered');
    // Whatever was answered 2xx is applied, once.
    for (const [i, a] of answers.entries()) {
      if (a.status !== 200 && a.status !== 202) continue;
      await poll(async () => (await http('GET', `/v1/carts/${users[i]}`)).status === 200, 5000, 'the commit');
      assert.deepEqual((await http('GET', `/v1/carts/${users[i]}`)).json.items, [{ sku: 'A1', quantity: 1 }]);
    }
    await assert.rejects(http('GET', `${gw.url}/healthz`, { timeoutMs: 1000 }), 'the port is closed');
  });

  test('SIGTERM to an idle gateway: it exits at once', needs, async (t) => {
    // Probed on connections closed after each answer (fetch keeps its own open, and the drain
    // gives an open keep-alive connection 300 ms for one more request).
    const gw = await startGateway({ GATEWAY_THREADS: '2' }, { ready: async (url) => (await getOnce(`${url}/readyz`)) === 200 });
    assert.equal(await getOnce(`${gw.url}/readyz`), 200);
    // No connection is open, so there is nothing to drain: the drain used to wait a second or
    // two for h2o's HTTP/2 shutdown timer, with no HTTP/2 connection to tell.
    const exited = once(gw, 'exit');
    const t0 = Date.now();
    gw.kill('SIGTERM');
    const [code] = await exited;
    const ms = Date.now() - t0;
    assert.equal(code, 0, `exit status 0: ${gw.log()}`);
    t.diagnostic(`exited ${ms} ms after SIGTERM`);
    assert.ok(ms < 1000, `exited ${ms} ms after SIGTERM: ${gw.log()}`);
  });
});


describe('dependency errors on /metrics', SLOW, () => {
  /** The value of cartshard_dependency_errors_total{dependency=`dep`} in a /metrics text. */
  const depErrors = (text, dep) => {
    const m = new RegExp(`^cartshard_dependency_errors_total\\{dependency="${dep}"\\} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : Number.NaN;
  };
  /** Two shard DSNs on loopback ports nobody listens on. */
  const deadShards = async () => {
    const ports = [await freePort(), await freePort()];
    return ports.map((p) => `host=127.0.0.1 port=${p} dbname=cartshard user=cartshard connect_timeout=1`).join(',');
  };

  test('gateway: an unreachable shard is a 503 on a cache miss and a postgresql error', SLOW, async () => {
    const gw = await startGateway({ SHARD_DSNS: await deadShards() });
    const before = depErrors((await http('GET', `${gw.url}/metrics`)).text, 'postgresql');
    assert.ok(Number.isFinite(before), 'the series is there from the start');
    const res = await http('GET', `${gw.url}/v1/carts/${uniqueUser('deadshard')}`);
    assert.equal(res.status, 503, res.text);
    assert.match(res.headers.get('content-type'), /problem\+json/);
    const after = depErrors((await http('GET', `${gw.url}/metrics`)).text, 'postgresql');
    assert.ok(after > before, `postgresql errors counted (${before} -> ${after})`);
    assert.ok(depErrors((await http('GET', `${gw.url}/metrics`)).text, 'nats') === 0, 'and no NATS error');
    await stop(gw);
  });

  test('gateway: a bus without JetStream refuses writes with 503, counted as nats errors', SLOW, async () => {
    const port = await freePort();
    const nats = start('nats-server', ['-a', '127.0.0.1', '-p', String(port)]);
    try {
      const gw = await startGateway({ NATS_URL: `nats://127.0.0.1:${port}`, CART_SYNC_TIMEOUT_MS: '500' });
      const res = await http('POST', `${gw.url}/v1/carts/${uniqueUser('nojs')}/items`, { body: { sku: 'A1', quantity: 1 } });
      assert.equal(res.status, 503, res.text);
      assert.match(res.headers.get('retry-after') ?? '', /^\d+$/);
      const text = (await http('GET', `${gw.url}/metrics`)).text;
      assert.ok(depErrors(text, 'nats') >= 1, text.match(/^cartshard_dependency.*$/gm)?.join('\n'));
      await stop(gw);
    } finally {
      await stop(nats);
    }
  });

  test('cart-store: unreachable shards keep it unready, with postgresql errors counted', SLOW, async () => {
    const port = await freePort();
    const store = start(STORE_BIN, [], {
      NATS_URL,
      REDIS_URL,
      SHARD_DSNS: await deadShards(),
      CART_PARTITIONS: String(CART_PARTITIONS),
      CART_STORE_ADMIN_HOST: '127.0.0.1',
      CART_STORE_ADMIN_PORT: String(port),
      LOG_LEVEL: 'warn',
    });
    const admin = `http://127.0.0.1:${port}`;
    try {
      const text = await waitFor(`the private cart-store's /metrics to count errors (${store.log()})`, async () => {
        assert.equal(store.exitCode, null, `the private cart-store exited: ${store.log()}`);
        const r = await http('GET', `${admin}/metrics`, { timeoutMs: 500 }).catch(() => null);
        return r && depErrors(r.text, 'postgresql') >= 2 ? r.text : null;
      }, { timeoutMs: 10_000, intervalMs: 200 });
      assert.equal(depErrors(text, 'redis'), 0);
      const ready = await http('GET', `${admin}/readyz`);
      assert.equal(ready.status, 503, ready.text);
      assert.match(store.log(), /shard connect failed/);
      await stop(store);
      assert.equal(store.exitCode, 0, `a clean exit on SIGTERM: ${store.log()}`);
    } finally {
      await stop(store, 'SIGKILL');
    }
  });
});

/** The status of a GET of `url` on a connection of its own, closed after the answer. */
function getOnce(url) {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within 1 s`)));
    req.on('error', reject);
  });
}
