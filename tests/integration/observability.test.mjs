// What the services tell about themselves (docs/reference/api.md: Request ids; Health, readiness
// and metrics): a request's id echoed and carried by its event, and each dependency's errors
// counted on /metrics (an unreachable shard, a bus without JetStream) with the status that goes
// with them. The suite starts private gateways, a private nats-server and a private cart-store on
// free loopback ports and stops them by pid.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  CART_PARTITIONS,
  NATS_URL,
  REDIS_URL,
  STORE_BIN,
  TEST_OPTS,
  closeAll,
  freePort,
  http,
  startGateway,
  startProcess as start,
  stopProcess as stop,
  waitFor,
  uniqueUser,
  userEvents,
} from './lib.mjs';

const SLOW = { timeout: 30_000 };

after(closeAll);

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
