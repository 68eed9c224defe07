// The read path (docs/reference/api.md: Reads; docs/reference/storage.md: Redis): GET from the
// Redis cache with a read-through fill from the shard, entries that are not to be trusted, and
// what happens while Redis is down (reads from PostgreSQL, the local rate limiter, the cache
// refilled once Redis is back). The last starts a private Redis and a private gateway on free
// loopback ports and stops them by pid.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, test } from 'node:test';

import {
  TEST_OPTS,
  closeAll,
  freePort,
  http,
  poll,
  startGateway,
  startProcess as start,
  stopProcess as stop,
  redis,
  uniqueUser,
} from './lib.mjs';

const SLOW = { timeout: 30_000 };

after(closeAll);

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
    // Redis is a shared cache: its loss is reported, but the gateway stays in service.
    const unready = await poll(async () => {
      const r = await http('GET', `${gw.url}/readyz`);
      return r.json?.redis === false ? r : null;
    }, 8000, 'the gateway to report Redis down');
    assert.equal(unready.status, 200, unready.text);
    assert.equal(unready.json.ready, true);
    assert.equal(unready.json.nats, true);
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
    await poll(async () => (await http('GET', `${gw.url}/readyz`)).json?.redis === true, 8000, 'Redis reported up again');
    await stop(gw);
    await stop(rds);
  });
});
