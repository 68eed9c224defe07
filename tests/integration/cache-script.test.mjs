// The cache write script, shared/lua/cache_put.lua, run by the test stack's Redis: a write never
// replaces a newer version with an older one (docs/reference/storage.md, Redis), and anything in
// the key that is not a versioned cart is overwritten. Needs only REDIS_URL.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';

import { TEST_OPTS, closeAll, redis, uniqueUser } from './lib.mjs';

const SCRIPT = readFileSync(new URL('../../shared/lua/cache_put.lua', import.meta.url), 'utf8');
const TTL = 300;

const used = new Set();

/** A fresh cache key of the real form cart:{<user_id>}, deleted after the suite. */
function freshKey() {
  const key = `cart:{${uniqueUser('cachelua')}}`;
  used.add(key);
  return key;
}

/** Cart JSON as the cart-store writes it, with its version inside. */
function cartJson(user, version, items = [{ sku: 'A1', quantity: version }]) {
  return JSON.stringify({
    user_id: user,
    cart_id: '6f1c2d3e-0000-4000-8000-000000000001',
    status: 'active',
    version,
    items,
    item_count: items.reduce((n, it) => n + it.quantity, 0),
    created_at: '2026-11-22T10:00:00Z',
    updated_at: '2026-11-22T10:01:02Z',
  });
}

/** Runs the script on `key`; resolves to its reply (1 written, 0 kept). */
function put(key, version, json, ttl = TTL) {
  return redis('EVAL', SCRIPT, 1, key, version, json, ttl);
}

after(async () => {
  if (used.size > 0) await redis('DEL', ...used);
  await closeAll();
});

describe('cache_put.lua', TEST_OPTS, () => {
  test('an absent key is written, with the TTL', TEST_OPTS, async () => {
    const key = freshKey();
    const json = cartJson('u', 1);
    assert.equal(await put(key, 1, json), 1);
    assert.equal(await redis('GET', key), json);
    const ttl = await redis('TTL', key);
    assert.ok(ttl > 0 && ttl <= TTL, `TTL ${ttl} is in (0, ${TTL}]`);
  });

  test('a newer version replaces an older one', TEST_OPTS, async () => {
    const key = freshKey();
    assert.equal(await put(key, 1, cartJson('u', 1)), 1);
    const v2 = cartJson('u', 2);
    assert.equal(await put(key, 2, v2), 1);
    assert.equal(await redis('GET', key), v2);
  });

  test('an older version is refused: returns 0 and leaves value and TTL alone', TEST_OPTS, async () => {
    const key = freshKey();
    const v5 = cartJson('u', 5);
    assert.equal(await put(key, 5, v5, 1000), 1);
    assert.equal(await put(key, 4, cartJson('u', 4), 50), 0);
    assert.equal(await put(key, 1, cartJson('u', 1), 50), 0);
    assert.equal(await redis('GET', key), v5);
    assert.ok((await redis('TTL', key)) > 50, 'the kept entry keeps its own TTL');
  });

  test('versions compare as numbers, not as text', TEST_OPTS, async () => {
    const key = freshKey();
    const v10 = cartJson('u', 10);
    assert.equal(await put(key, 10, v10), 1);
    assert.equal(await put(key, 9, cartJson('u', 9)), 0, '9 < 10 although "9" > "10"');
    assert.equal(await redis('GET', key), v10);

    const big = freshKey();
    const n = 2 ** 50;
    assert.equal(await put(big, n, cartJson('u', n)), 1);
    assert.equal(await put(big, n - 1, cartJson('u', n - 1)), 0);
    assert.equal(await put(big, n + 1, cartJson('u', n + 1)), 1);
    assert.equal(JSON.parse(await redis('GET', big)).version, n + 1);
  });

  test('an equal version is rewritten and its TTL renewed', TEST_OPTS, async () => {
    const key = freshKey();
    assert.equal(await put(key, 3, cartJson('u', 3, [{ sku: 'A1', quantity: 1 }]), 20), 1);
    const again = cartJson('u', 3, [{ sku: 'B2', quantity: 2 }]);
    assert.equal(await put(key, 3, again, 1000), 1);
    assert.equal(await redis('GET', key), again);
    assert.ok((await redis('TTL', key)) > 20, 'the TTL was renewed');
  });

  test('whatever is not a versioned JSON object is replaced', TEST_OPTS, async () => {
    const corrupt = [
      'not json',
      '{"version": 99',
      '',
      'null',
      '42',
      '[{"version": 99}]',
      '{"user_id": "u", "items": []}',
      '{"version": "99"}',
      '{"version": null}',
      '{"version": true}',
      '{"version": {"n": 99}}',
      '{"version": 1e400}',
      '{"version": NaN}',
      '\u00ff\u00fe\u0000garbage',
    ];
    for (const stored of corrupt) {
      const key = freshKey();
      await redis('SET', key, stored);
      const json = cartJson('u', 1);
      assert.equal(await put(key, 1, json), 1, `replaces ${JSON.stringify(stored)}`);
      assert.equal(await redis('GET', key), json);
      assert.ok((await redis('TTL', key)) > 0, 'and sets a TTL');
    }
  });

  test('a key of another type is replaced', TEST_OPTS, async () => {
    const key = freshKey();
    await redis('HSET', key, 'version', '99');
    const json = cartJson('u', 1);
    assert.equal(await put(key, 1, json), 1);
    assert.equal(await redis('TYPE', key), 'string');
    assert.equal(await redis('GET', key), json);
  });

  test('bad arguments are an error reply, and nothing is written', TEST_OPTS, async () => {
    const key = freshKey();
    await assert.rejects(put(key, 'abc', cartJson('u', 1)), /cache_put: the version must be an integer/);
    await assert.rejects(put(key, '1.5', cartJson('u', 1)), /cache_put: the version must be an integer/);
    await assert.rejects(put(key, 1, cartJson('u', 1), 0), /cache_put: the TTL must be a positive integer/);
    await assert.rejects(put(key, 1, cartJson('u', 1), '1h'), /cache_put: the TTL must be a positive integer/);
    await assert.rejects(redis('EVAL', SCRIPT, 1, key, 1), /cache_put: expected 1 key and 3 arguments/);
    assert.equal(await redis('EXISTS', key), 0);
  });

  test('SCRIPT LOAD gives the SHA-1 of the file, and EVALSHA behaves the same', TEST_OPTS, async () => {
    const sha = await redis('SCRIPT', 'LOAD', SCRIPT);
    assert.equal(sha, createHash('sha1').update(SCRIPT).digest('hex'));
    const key = freshKey();
    assert.equal(await redis('EVALSHA', sha, 1, key, 7, cartJson('u', 7), TTL), 1);
    assert.equal(await redis('EVALSHA', sha, 1, key, 6, cartJson('u', 6), TTL), 0);
    assert.equal(JSON.parse(await redis('GET', key)).version, 7);
  });
});
