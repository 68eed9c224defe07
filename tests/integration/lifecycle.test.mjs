// After the commit: the Redis cache entry (docs/reference/storage.md, Redis) and abandoned carts
// (cart.expired on carts.changes.<partition>, after CART_IDLE_TTL). The test stack's workers look
// for idle carts every 300 ms (CART_EXPIRY_INTERVAL_MS), so a cart backdated in its shard expires
// at once.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  TEST_OPTS,
  closeAll,
  http,
  partitionOf,
  queryShard,
  redis,
  shardOf,
  streamMessages,
  uniqueUser,
} from './lib.mjs';

after(closeAll);

const cacheKey = (user) => `cart:{${user}}`;

async function cached(user) {
  const v = await redis('GET', cacheKey(user));
  return v === null ? null : JSON.parse(v);
}

/** Polls `fn` until it returns a truthy value or `ms` pass; resolves to the last value. */
async function eventually(fn, ms = 5000) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the cache after commit', TEST_OPTS, () => {
  test('a committed write leaves its cart in cart:{user} before the answer', TEST_OPTS, async () => {
    const user = uniqueUser('cache');
    const res = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 2 } });
    assert.equal(res.status, 200);
    assert.deepEqual(await cached(user), res.json, 'the entry is the answered cart, version included');
    const ttl = await redis('TTL', cacheKey(user));
    assert.ok(ttl > 0 && ttl <= 3600, `the entry expires (TTL ${ttl})`);
  });

  test('a delete leaves a newer entry saying so, so an older cart cannot come back', TEST_OPTS, async () => {
    const user = uniqueUser('cache');
    const added = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 1 } });
    assert.equal((await http('DELETE', `/v1/carts/${user}`)).status, 204);
    const entry = await cached(user);
    assert.equal(entry.status, 'deleted');
    assert.equal(entry.version, added.json.version + 1);
    assert.deepEqual(entry.items, []);
  });

  test('a newer entry is never replaced by an older version', TEST_OPTS, async () => {
    const user = uniqueUser('cache');
    await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 1 } });
    const newer = { ...(await cached(user)), version: 1000 };
    await redis('SET', cacheKey(user), JSON.stringify(newer));
    const res = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 1 } });
    assert.equal(res.json.version, 2);
    assert.deepEqual(await cached(user), newer, 'version 1000 stays');
    await redis('DEL', cacheKey(user));
  });

  test('a corrupt entry is simply replaced by the next commit', TEST_OPTS, async () => {
    const user = uniqueUser('cache');
    await redis('SET', cacheKey(user), '{"version": not json');
    const res = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'Z9', quantity: 4 } });
    assert.equal(res.status, 200);
    assert.deepEqual(await cached(user), res.json);
  });
});

describe('abandoned carts', TEST_OPTS, () => {
  test('a cart idle for CART_IDLE_TTL expires, is announced with its items, and a new cart follows', TEST_OPTS, async () => {
    const user = uniqueUser('idle');
    const shard = shardOf(user);
    const added = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 3 } });
    assert.equal(added.status, 200);
    const { cart_id: cartId, version } = added.json;

    // 31 days of silence (the default TTL is 30 days).
    await queryShard(shard, "UPDATE carts SET updated_at = now() - interval '31 days' WHERE cart_id = $1", [cartId]);

    const rows = await eventually(async () => {
      const r = await queryShard(shard, 'SELECT status, version FROM carts WHERE cart_id = $1', [cartId]);
      return r[0]?.status === 'expired' ? r : null;
    });
    assert.ok(rows, 'the worker expired the cart within 5 s');
    assert.equal(Number(rows[0].version), version + 1, 'an expiry is a change: version + 1');
    const lines = await queryShard(shard, 'SELECT sku, quantity FROM cart_items WHERE cart_id = $1', [cartId]);
    assert.deepEqual(lines, [{ sku: 'A1', quantity: 3 }], 'the abandoned lines are kept');

    assert.equal((await http('GET', `/v1/carts/${user}`)).status, 404, 'no active cart any more');
    const entry = await eventually(async () => ((await cached(user))?.status === 'expired' ? cached(user) : null));
    assert.equal(entry?.version, version + 1, 'the cache says expired too');

    const changes = await eventually(async () => {
      const all = await streamMessages('CARTS_CHANGES', `carts.changes.${partitionOf(user)}`, (b) => b?.user_id === user);
      return all.some((m) => m.body.type === 'cart.expired') ? all : null;
    });
    const expired = changes.filter((m) => m.body.type === 'cart.expired');
    assert.equal(expired.length, 1, 'announced once');
    assert.equal(expired[0].body.cart_id, cartId);
    assert.equal(expired[0].body.version, version + 1);
    assert.equal(expired[0].body.status, 'expired');
    assert.deepEqual(expired[0].body.items, [{ sku: 'A1', quantity: 3 }]);
    assert.equal(expired[0].headers.get('Nats-Msg-Id'), `chg-exp-${cartId}`);

    const next = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'B1', quantity: 1 } });
    assert.equal(next.status, 200);
    assert.notEqual(next.json.cart_id, cartId, 'a new cart');
    assert.equal(next.json.version, version + 2, 'versions go on rising across carts');
    assert.deepEqual(next.json.items, [{ sku: 'B1', quantity: 1 }]);

    const checkout = await http('POST', `/v1/carts/${user}/checkout`);
    assert.equal(checkout.status, 200);
  });

  test('a cart touched recently, and a checked-out cart, do not expire', TEST_OPTS, async () => {
    const fresh = uniqueUser('idle');
    const done = uniqueUser('idle');
    const f = await http('POST', `/v1/carts/${fresh}/items`, { body: { sku: 'A1', quantity: 1 } });
    await http('POST', `/v1/carts/${done}/items`, { body: { sku: 'A1', quantity: 1 } });
    const c = await http('POST', `/v1/carts/${done}/checkout`);
    assert.equal(c.status, 200);
    // 29 days idle: under the TTL. The checked-out cart is very old, but not active.
    await queryShard(shardOf(fresh), "UPDATE carts SET updated_at = now() - interval '29 days' WHERE cart_id = $1", [
      f.json.cart_id,
    ]);
    await queryShard(shardOf(done), "UPDATE carts SET updated_at = now() - interval '90 days' WHERE cart_id = $1", [
      c.json.cart_id,
    ]);
    await new Promise((r) => setTimeout(r, 1500)); // several expiry rounds
    const [a] = await queryShard(shardOf(fresh), 'SELECT status FROM carts WHERE cart_id = $1', [f.json.cart_id]);
    const [b] = await queryShard(shardOf(done), 'SELECT status FROM carts WHERE cart_id = $1', [c.json.cart_id]);
    assert.equal(a.status, 'active');
    assert.equal(b.status, 'checked_out');
  });
});
