// Readiness (docs/reference/api.md: Health, readiness and metrics): a gateway's /readyz is 200
// from the moment it serves until it begins to drain, whatever its dependencies do; the body
// reports NATS, Redis and each shard. A shared dependency that is down never makes it 503: the
// requests cope by themselves (writes answer 503 without the bus, a read of an unreachable shard
// answers 503). Redis going down is covered where the read path is (read-path.test.mjs). The
// suite starts private gateways and a private nats-server on free loopback ports and stops them
// by pid.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import {
  CART_STORE_ADMIN_URLS,
  SHARD_DSNS,
  assertProblem,
  closeAll,
  freePort,
  http,
  poll,
  refusedGateway,
  startGateway,
  startProcess,
  stopProcess,
  uniqueUser,
  uniqueUserOnShard,
} from './lib.mjs';

const SLOW = { timeout: 30_000 };

after(closeAll);

/** GET `url` on `agent`'s connection; resolves to {status, json}. */
function getOn(agent, url) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent, method: 'GET' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, json: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error(`GET ${url}: no answer in 2 s`)));
    req.end();
  });
}

/** Asserts the shape of a gateway's /readyz body: booleans, and one entry per shard. */
function assertReadyBody(json, shards) {
  assert.ok(json && typeof json === 'object', 'a JSON body');
  for (const k of ['ready', 'draining', 'nats', 'redis']) assert.equal(typeof json[k], 'boolean', k);
  assert.ok(Array.isArray(json.shards), 'shards is an array');
  assert.equal(json.shards.length, shards, 'one entry per shard');
  for (const s of json.shards) assert.equal(typeof s, 'boolean');
}

describe('gateway readiness does not follow shared dependencies', SLOW, () => {
  test('the stack gateway: 200, every dependency reported up', async () => {
    const res = await http('GET', '/readyz');
    assert.equal(res.status, 200, res.text);
    assertReadyBody(res.json, SHARD_DSNS.length);
    assert.deepEqual(res.json, {
      ready: true,
      draining: false,
      nats: true,
      redis: true,
      shards: SHARD_DSNS.map(() => true),
    });
  });

  test('NATS down: /readyz stays 200 with nats false; writes are 503 problems; reads are served', SLOW, async () => {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'cartshard-ready-nats-'));
    const nats = startProcess('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir]);
    let gw = null;
    try {
      // A cart on the stack, so that a read has something to find.
      const user = uniqueUser('rdy-nats');
      assert.equal((await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 2 } })).status, 200);
      gw = await startGateway({ NATS_URL: `nats://127.0.0.1:${port}` }, {
        ready: async (url) => (await http('GET', `${url}/readyz`, { timeoutMs: 500 })).json?.nats === true,
      });
      await stopProcess(nats, 'SIGKILL');
      const down = await poll(async () => {
        const r = await http('GET', `${gw.url}/readyz`, { timeoutMs: 500 });
        return r.json?.nats === false ? r : null;
      }, 10_000, 'the gateway to see NATS gone');
      assert.equal(down.status, 200, `NATS down does not make the gateway unready: ${down.text}`);
      assertReadyBody(down.json, SHARD_DSNS.length);
      assert.equal(down.json.ready, true);
      assert.equal(down.json.redis, true);

      const write = await http('POST', `${gw.url}/v1/carts/${user}/items`, { body: { sku: 'B1', quantity: 1 } });
      assertProblem(write, 503);
      assert.match(write.headers.get('retry-after') ?? '', /^\d+$/, 'Retry-After in seconds');
      const read = await http('GET', `${gw.url}/v1/carts/${user}`);
      assert.equal(read.status, 200, read.text);
      assert.deepEqual(read.json.items, [{ sku: 'A1', quantity: 2 }]);
      assert.equal((await http('GET', `${gw.url}/readyz`)).status, 200, 'still ready after the refused write');
    } finally {
      if (gw) await stopProcess(gw);
      await stopProcess(nats, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a shard unreachable: /readyz stays 200 and names it; only its reads are 503', SLOW, async () => {
    assert.ok(SHARD_DSNS.length >= 2, 'the test stack has two shards');
    const deadPort = await freePort(); // nothing listens there
    const dsns = [...SHARD_DSNS];
    dsns[1] = `postgresql://postgres@127.0.0.1:${deadPort}/cartshard?connect_timeout=1`;
    const gw = await startGateway({ SHARD_DSNS: dsns.join(',') });
    try {
      const res = await poll(async () => {
        const r = await http('GET', `${gw.url}/readyz`, { timeoutMs: 500 });
        return r.json?.shards?.[0] === true ? r : null;
      }, 10_000, 'the live shard to be connected');
      assert.equal(res.status, 200, res.text);
      assertReadyBody(res.json, dsns.length);
      assert.deepEqual(res.json.shards, [true, false]);
      // Never written, so never cached: each read goes to its shard.
      const live = await http('GET', `${gw.url}/v1/carts/${uniqueUserOnShard(0, 'rdy-live')}`);
      assert.equal(live.status, 404, `a read on the live shard is answered: ${live.text}`);
      assertProblem(await http('GET', `${gw.url}/v1/carts/${uniqueUserOnShard(1, 'rdy-dead')}`), 503);
    } finally {
      await stopProcess(gw);
    }
  });

  test('SIGTERM: /readyz is 503 with draining true while the gateway drains', SLOW, async () => {
    const gw = await startGateway();
    // One kept-alive connection: the drain still answers a request on it for a moment.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = await getOn(agent, `${gw.url}/readyz`);
      assert.equal(before.status, 200);
      assert.equal(before.json.draining, false);
      const exited = once(gw, 'exit');
      gw.kill('SIGTERM');
      // Asked again on the same connection until the drain has begun (the signal takes a moment
      // to reach the loop); the first answer of the drain closes the connection after it.
      let during = before;
      for (let i = 0; i < 20 && during.status === 200; i++) {
        await new Promise((r) => setTimeout(r, 10));
        during = await getOn(agent, `${gw.url}/readyz`);
      }
      assert.equal(during.status, 503, JSON.stringify(during.json));
      assert.equal(during.json.ready, false);
      assert.equal(during.json.draining, true);
      const [code] = await exited;
      assert.equal(code, 0, `a clean exit: ${gw.log()}`);
    } finally {
      agent.destroy();
      await stopProcess(gw, 'SIGKILL');
    }
  });
});

describe('REDIS_PASSWORD_FILE', SLOW, () => {
  test('the gateway authenticates with the password from the file; a wrong one is reported as Redis down', SLOW, async () => {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'cartshard-ready-redis-'));
    const password = `pw-${Date.now().toString(36)}`;
    // The password reaches this Redis in a config file, as it does in the compose deployment.
    writeFileSync(path.join(dir, 'redis.conf'), `port ${port}\nbind 127.0.0.1\nsave ""\nappendonly no\nrequirepass ${password}\n`);
    writeFileSync(path.join(dir, 'good'), `${password}\n`, { mode: 0o600 });
    writeFileSync(path.join(dir, 'wrong'), 'not-the-password\n', { mode: 0o600 });
    const rds = startProcess('redis-server', [path.join(dir, 'redis.conf')]);
    const gws = [];
    try {
      const url = `redis://127.0.0.1:${port}`;
      const good = await startGateway({ REDIS_URL: url, REDIS_PASSWORD_FILE: path.join(dir, 'good') });
      gws.push(good);
      await poll(async () => (await http('GET', `${good.url}/readyz`)).json?.redis === true, 8000,
        'the gateway to authenticate with the file\'s password');
      const wrong = await startGateway({ REDIS_URL: url, REDIS_PASSWORD_FILE: path.join(dir, 'wrong') }, {
        ready: async (u) => (await http('GET', `${u}/readyz`, { timeoutMs: 500 })).status === 200,
      });
      gws.push(wrong);
      await new Promise((r) => setTimeout(r, 1500)); // a health check or two
      const res = await http('GET', `${wrong.url}/readyz`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.redis, false, 'a refused password is Redis unreachable, reported');
    } finally {
      for (const g of gws) await stopProcess(g);
      await stopProcess(rds);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a missing file or a second password stops the gateway at start, naming the variable', async () => {
    const missing = await refusedGateway({ REDIS_PASSWORD_FILE: '/nonexistent/redis-password' });
    assert.equal(missing.code, 2, missing.log);
    assert.match(missing.log, /REDIS_PASSWORD_FILE: cannot read \/nonexistent\/redis-password/);
    const dir = mkdtempSync(path.join(tmpdir(), 'cartshard-ready-redis-'));
    try {
      writeFileSync(path.join(dir, 'pw'), 'secret-one\n');
      const both = await refusedGateway({ REDIS_URL: 'redis://:secret-two@127.0.0.1:6379', REDIS_PASSWORD_FILE: path.join(dir, 'pw') });
      assert.equal(both.code, 2, both.log);
      assert.match(both.log, /REDIS_PASSWORD_FILE: set, but REDIS_URL holds a password too/);
      assert.doesNotMatch(both.log, /secret-one|secret-two/, 'no password is echoed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('worker readiness', SLOW, () => {
  test("each worker's /readyz: 200, NATS and every shard reported", async () => {
    for (const u of CART_STORE_ADMIN_URLS) {
      const res = await http('GET', `${u}/readyz`);
      assert.equal(res.status, 200, `${u}: ${res.text}`);
      assert.deepEqual(res.json, { ready: true, nats: true, shards: SHARD_DSNS.map(() => true) }, u);
    }
  });
});
