// The write endpoints of the HTTP API, one by one: statuses, bodies, ETags, limits, bad input,
// Prefer: respond-async and If-Match. See docs/reference/api.md (Writes, Limits, Errors, and Cart
// semantics).

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  GATEWAY_URL,
  TEST_OPTS,
  UUID_RE,
  addItem,
  assertCart,
  assertCartResponse,
  assertProblem,
  closeAll,
  http,
  processedEvents,
  queryShard,
  setItem,
  shardCart,
  shardOf,
  uniqueUser,
  userEvents,
  waitFor,
} from './lib.mjs';

after(closeAll);

/** GET /v1/carts/{user}: the cart, or null for a 404 (anything else fails). */
async function getCart(user) {
  const res = await http('GET', `/v1/carts/${user}`);
  if (res.status === 404) return null;
  return assertCartResponse(res, { user, items: res.json?.items ?? [], status: 'active' });
}

/** Asserts that the user's cart is exactly `before` (a GET body) through the API and on its shard. */
async function assertUnchanged(user, before) {
  assert.deepEqual(await getCart(user), before, 'the cart did not change');
  const row = await shardCart(user);
  if (before === null) {
    assert.equal(row, null, 'no active cart on the shard');
  } else {
    assert.deepEqual(row, { cart_id: before.cart_id, version: before.version, items: before.items });
  }
}

const JSON_CT = { 'Content-Type': 'application/json' };

describe('POST /v1/carts', TEST_OPTS, () => {
  test('creates an empty cart: 201, then 200 with the same cart', TEST_OPTS, async () => {
    const user = uniqueUser('create');
    const first = assertCartResponse(await http('POST', '/v1/carts', { body: { user_id: user } }), {
      user,
      version: 1,
      items: [],
    }, 201);
    const again = assertCartResponse(await http('POST', '/v1/carts', { body: { user_id: user } }), {
      user,
      version: 1,
      items: [],
    });
    assert.equal(again.cart_id, first.cart_id, 'a duplicate create answers with the existing cart');
    assert.equal(again.created_at, first.created_at);
    assert.deepEqual(await getCart(user), first);
  });

  test('racing creates: one 201, the others 200, one active cart', { timeout: 15_000 }, async () => {
    const user = uniqueUser('race');
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => http('POST', '/v1/carts', { body: { user_id: user } })),
    );
    const statuses = answers.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 201], answers.map((r) => r.text).join('\n'));
    const ids = new Set(answers.map((r) => r.json.cart_id));
    assert.equal(ids.size, 1, 'every answer names the same cart');
    const rows = await queryShard(shardOf(user), "SELECT cart_id::text FROM carts WHERE user_id = $1", [user]);
    assert.deepEqual(rows, [{ cart_id: [...ids][0] }], 'one carts row');
  });

  test('a missing or invalid user_id is 400 and creates nothing', TEST_OPTS, async () => {
    for (const body of [{}, { user_id: '' }, { user_id: 'bad user' }, { user_id: 'x'.repeat(65) }, { user_id: 7 }]) {
      assertProblem(await http('POST', '/v1/carts', { body }), 400);
    }
    const longest = 'L'.repeat(60) + uniqueUser('').slice(-4);
    assert.equal(longest.length, 64);
    assertCartResponse(await http('POST', '/v1/carts', { body: { user_id: longest } }), {
      user: longest,
      version: 1,
      items: [],
    }, 201);
  });
});

describe('POST /v1/carts/{user}/items', TEST_OPTS, () => {
  test('creates the cart, adds to quantities, keeps items sorted by sku', TEST_OPTS, async () => {
    const user = uniqueUser('add');
    const first = assertCartResponse(await addItem(user, 'M5', 2), {
      user,
      version: 1,
      items: [{ sku: 'M5', quantity: 2 }],
    });
    assertCartResponse(await addItem(user, 'A1', 1), {
      user,
      version: 2,
      items: [
        { sku: 'A1', quantity: 1 },
        { sku: 'M5', quantity: 2 },
      ],
    });
    assertCartResponse(await addItem(user, 'Z9', 4), { user, version: 3, items: [
      { sku: 'A1', quantity: 1 },
      { sku: 'M5', quantity: 2 },
      { sku: 'Z9', quantity: 4 },
    ] });
    const last = assertCartResponse(await addItem(user, 'M5', 7), {
      user,
      version: 4,
      items: [
        { sku: 'A1', quantity: 1 },
        { sku: 'M5', quantity: 9 },
        { sku: 'Z9', quantity: 4 },
      ],
    });
    assert.equal(last.item_count, 14);
    assert.equal(last.cart_id, first.cart_id, 'same cart');
    assert.deepEqual(await getCart(user), last);
    assert.deepEqual(await shardCart(user), { cart_id: last.cart_id, version: 4, items: last.items });
  });

  test('every character the contract allows in user_id and sku works', TEST_OPTS, async () => {
    const user = `Az09._:-${uniqueUser('x')}`.slice(0, 64);
    const sku = 'a.B:c-D_9';
    assertCartResponse(await addItem(user, sku, 2), { user, version: 1, items: [{ sku, quantity: 2 }] });
    assertCartResponse(await setItem(user, sku, 3), { user, version: 2, items: [{ sku, quantity: 3 }] });
    assertCartResponse(await http('DELETE', `/v1/carts/${user}/items/${sku}`), { user, version: 3, items: [] });
  });
});

describe('PUT /v1/carts/{user}/items/{sku}', TEST_OPTS, () => {
  test('sets quantities, 0 removes the line, the same quantity changes nothing', TEST_OPTS, async () => {
    const user = uniqueUser('set');
    assertCartResponse(await setItem(user, 'B2', 3), { user, version: 1, items: [{ sku: 'B2', quantity: 3 }] });
    assertCartResponse(await setItem(user, 'A1', 5), {
      user,
      version: 2,
      items: [
        { sku: 'A1', quantity: 5 },
        { sku: 'B2', quantity: 3 },
      ],
    });
    assertCartResponse(await setItem(user, 'B2', 999), {
      user,
      version: 3,
      items: [
        { sku: 'A1', quantity: 5 },
        { sku: 'B2', quantity: 999 },
      ],
    });
    assertCartResponse(await setItem(user, 'A1', 0), { user, version: 4, items: [{ sku: 'B2', quantity: 999 }] });
    // README: setting the quantity a line has does not bump the version.
    const same = assertCartResponse(await setItem(user, 'B2', 999), {
      user,
      version: 4,
      items: [{ sku: 'B2', quantity: 999 }],
    });
    assert.deepEqual(await getCart(user), same);
  });

  test('quantity 0 for a user without a cart is 404 and creates nothing', TEST_OPTS, async () => {
    const user = uniqueUser('set0');
    assertProblem(await setItem(user, 'A1', 0), 404);
    await assertUnchanged(user, null);
  });
});

describe('DELETE /v1/carts/{user}/items/{sku}', TEST_OPTS, () => {
  test('removes a line; an absent line is 200 and changes nothing', TEST_OPTS, async () => {
    const user = uniqueUser('rm');
    await addItem(user, 'A1', 1);
    assertCartResponse(await addItem(user, 'B2', 2), {
      user,
      version: 2,
      items: [
        { sku: 'A1', quantity: 1 },
        { sku: 'B2', quantity: 2 },
      ],
    });
    assertCartResponse(await http('DELETE', `/v1/carts/${user}/items/A1`), {
      user,
      version: 3,
      items: [{ sku: 'B2', quantity: 2 }],
    });
    const absent = assertCartResponse(await http('DELETE', `/v1/carts/${user}/items/NOPE`), {
      user,
      version: 3,
      items: [{ sku: 'B2', quantity: 2 }],
    });
    await assertUnchanged(user, absent);
    assertCartResponse(await http('DELETE', `/v1/carts/${user}/items/B2`), { user, version: 4, items: [] });
  });

  test('a user without a cart is 404', TEST_OPTS, async () => {
    const user = uniqueUser('rm404');
    assertProblem(await http('DELETE', `/v1/carts/${user}/items/A1`), 404);
    await assertUnchanged(user, null);
  });
});

describe('DELETE /v1/carts/{user}', TEST_OPTS, () => {
  test('204, idempotent, then 404; the next cart has a new cart_id and a higher version', TEST_OPTS, async () => {
    const user = uniqueUser('del');
    await addItem(user, 'A1', 1);
    const old = assertCartResponse(await addItem(user, 'B2', 1), {
      user,
      version: 2,
      items: [
        { sku: 'A1', quantity: 1 },
        { sku: 'B2', quantity: 1 },
      ],
    });
    for (let i = 0; i < 2; i++) {
      const res = await http('DELETE', `/v1/carts/${user}`);
      assert.equal(res.status, 204, res.text);
      assert.equal(res.text, '', 'no body');
    }
    assert.equal(await getCart(user), null, 'GET is 404 after the delete');
    assert.equal(await shardCart(user), null, 'no active cart on the shard');

    const next = assertCartResponse(await addItem(user, 'C3', 1), {
      user,
      version: undefined,
      items: [{ sku: 'C3', quantity: 1 }],
    });
    assert.notEqual(next.cart_id, old.cart_id, 'a new cart_id');
    assert.ok(next.version > old.version, `version ${next.version} > ${old.version}`);
  });

  test('a user who never had a cart: 204', TEST_OPTS, async () => {
    const user = uniqueUser('del0');
    const res = await http('DELETE', `/v1/carts/${user}`);
    assert.equal(res.status, 204, res.text);
    await assertUnchanged(user, null);
  });
});

describe('POST /v1/carts/{user}/checkout', TEST_OPTS, () => {
  test('200 checked_out with the items; then 404, 409, and a new cart', TEST_OPTS, async () => {
    const user = uniqueUser('co');
    await addItem(user, 'B7', 1);
    const before = assertCartResponse(await addItem(user, 'A1', 2), {
      user,
      version: 2,
      items: [
        { sku: 'A1', quantity: 2 },
        { sku: 'B7', quantity: 1 },
      ],
    });
    const done = assertCartResponse(await http('POST', `/v1/carts/${user}/checkout`), {
      user,
      version: 3,
      items: before.items,
      status: 'checked_out',
    });
    assert.equal(done.cart_id, before.cart_id, 'the same cart is checked out');
    assert.equal(await getCart(user), null, 'no active cart after checkout');
    const rows = await queryShard(shardOf(user), 'SELECT status FROM carts WHERE cart_id = $1', [done.cart_id]);
    assert.deepEqual(rows, [{ status: 'checked_out' }]);

    assertProblem(await http('POST', `/v1/carts/${user}/checkout`), 409);
    const next = assertCartResponse(await addItem(user, 'A1', 1), {
      user,
      version: undefined,
      items: [{ sku: 'A1', quantity: 1 }],
    });
    assert.notEqual(next.cart_id, done.cart_id, 'a new cart_id');
    assert.ok(next.version > done.version, `version ${next.version} > ${done.version}`);
  });

  test('an empty cart is 409 and stays active', TEST_OPTS, async () => {
    const user = uniqueUser('co-empty');
    const cart = assertCartResponse(await http('POST', '/v1/carts', { body: { user_id: user } }), {
      user,
      version: 1,
      items: [],
    }, 201);
    assertProblem(await http('POST', `/v1/carts/${user}/checkout`), 409);
    await assertUnchanged(user, cart);
  });

  test('a user without a cart is 409', TEST_OPTS, async () => {
    const user = uniqueUser('co-none');
    assertProblem(await http('POST', `/v1/carts/${user}/checkout`), 409);
    await assertUnchanged(user, null);
  });
});

describe('limits: 422 and nothing changes', TEST_OPTS, () => {
  test('quantity out of range for add (1-999) and set (0-999)', TEST_OPTS, async () => {
    const user = uniqueUser('lim');
    const cart = assertCartResponse(await addItem(user, 'A1', 5), { user, version: 1, items: [{ sku: 'A1', quantity: 5 }] });
    for (const q of [0, 1000, -1, 1_000_000]) assertProblem(await addItem(user, 'A1', q), 422);
    for (const q of [0, 1000]) assertProblem(await addItem(user, 'NEW', q), 422);
    for (const q of [1000, -1]) assertProblem(await setItem(user, 'A1', q), 422);
    await assertUnchanged(user, cart);

    const fresh = uniqueUser('lim0');
    assertProblem(await addItem(fresh, 'A1', 1000), 422);
    assertProblem(await setItem(fresh, 'A1', 1000), 422);
    await assertUnchanged(fresh, null);
  });

  test('a line total over 999', TEST_OPTS, async () => {
    const user = uniqueUser('lim-line');
    await addItem(user, 'A1', 500);
    const cart = assertCartResponse(await addItem(user, 'A1', 499), {
      user,
      version: 2,
      items: [{ sku: 'A1', quantity: 999 }],
    });
    assertProblem(await addItem(user, 'A1', 1), 422);
    await assertUnchanged(user, cart);
  });

  test('the 101st distinct line', { timeout: 20_000 }, async () => {
    const user = uniqueUser('lim-lines');
    const skus = Array.from({ length: 100 }, (_, i) => `S${String(i).padStart(3, '0')}`);
    const answers = await Promise.all(skus.map((sku) => addItem(user, sku, 1)));
    assert.deepEqual(
      answers.map((r) => r.status),
      skus.map(() => 200),
      'all 100 lines added',
    );
    const cart = await getCart(user);
    assertCart(cart, { user, version: 100, items: skus.map((sku) => ({ sku, quantity: 1 })) });

    assertProblem(await addItem(user, 'S100', 1), 422);
    assertProblem(await setItem(user, 'S100', 1), 422);
    await assertUnchanged(user, cart);
    // An existing line can still grow.
    const grown = assertCartResponse(await addItem(user, 'S000', 1), { user, version: 101, items: [
      { sku: 'S000', quantity: 2 },
      ...skus.slice(1).map((sku) => ({ sku, quantity: 1 })),
    ] });
    assert.equal(grown.items.length, 100);
  });
});

describe('bad requests', TEST_OPTS, () => {
  test('400 for malformed JSON or an invalid field, and nothing is created', TEST_OPTS, async () => {
    const user = uniqueUser('bad');
    const items = `/v1/carts/${user}/items`;
    const cases = [
      ['POST', items, '{"sku": "A1", "quantity": 1'],
      ['POST', items, 'not json'],
      ['POST', items, ''],
      ['POST', items, '[1, 2]'],
      ['POST', items, { quantity: 1 }],
      ['POST', items, { sku: 'A1' }],
      ['POST', items, { sku: '', quantity: 1 }],
      ['POST', items, { sku: 'bad sku', quantity: 1 }],
      ['POST', items, { sku: 'x'.repeat(65), quantity: 1 }],
      ['POST', items, { sku: 'é', quantity: 1 }],
      ['POST', items, { sku: 12, quantity: 1 }],
      ['POST', items, { sku: 'A\u0000B', quantity: 1 }],
      ['POST', items, { sku: 'A1', quantity: 1e30 }],
      ['POST', items, { sku: 'A1', quantity: '2' }],
      ['POST', items, { sku: 'A1', quantity: 2.5 }],
      ['POST', items, { sku: 'A1', quantity: null }],
      ['PUT', `${items}/A1`, '{"quantity":'],
      ['PUT', `${items}/A1`, {}],
      ['PUT', `${items}/A1`, { quantity: '5' }],
      ['PUT', `${items}/bad%20sku`, { quantity: 1 }],
      ['PUT', `${items}/${'x'.repeat(65)}`, { quantity: 1 }],
      ['POST', '/v1/carts/bad%20user/items', { sku: 'A1', quantity: 1 }],
      ['POST', `/v1/carts/${'u'.repeat(65)}/items`, { sku: 'A1', quantity: 1 }],
      ['DELETE', '/v1/carts/bad%21user', undefined],
      ['POST', '/v1/carts/bad%2Fuser/checkout', undefined],
      ['POST', '/v1/carts', '{"user_id": '],
    ];
    for (const [method, path, body] of cases) {
      const headers = body === undefined ? {} : JSON_CT;
      const res = await http(method, path, { body, headers });
      assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${res.status} ${res.text}`);
      assertProblem(res, 400);
    }
    await assertUnchanged(user, null);
    assert.deepEqual(await userEvents(user), [], 'no event was published');
  });

  test('415 when the body is not application/json', TEST_OPTS, async () => {
    const user = uniqueUser('ct');
    const body = JSON.stringify({ sku: 'A1', quantity: 1 });
    for (const headers of [{ 'Content-Type': 'text/plain' }, { 'Content-Type': 'application/x-www-form-urlencoded' }]) {
      assertProblem(await http('POST', `/v1/carts/${user}/items`, { body, headers }), 415);
      assertProblem(await http('PUT', `/v1/carts/${user}/items/A1`, { body: '{"quantity":1}', headers }), 415);
      assertProblem(await http('POST', '/v1/carts', { body: JSON.stringify({ user_id: user }), headers }), 415);
    }
    // fetch sends a string body without a type as text/plain; a Blob without a type sends none.
    const res = await fetch(`${GATEWAY_URL}/v1/carts/${user}/items`, {
      method: 'POST',
      body: new Blob([body]),
      signal: AbortSignal.timeout(8000),
    });
    assert.equal(res.status, 415, await res.text());
    await assertUnchanged(user, null);
    // The media type is case-insensitive and may carry parameters.
    assertCartResponse(
      await http('POST', `/v1/carts/${user}/items`, { body, headers: { 'Content-Type': 'Application/JSON; charset=utf-8' } }),
      { user, version: 1, items: [{ sku: 'A1', quantity: 1 }] },
    );
  });

  test('413 for a body over 16 KiB; exactly 16 KiB is accepted', TEST_OPTS, async () => {
    const user = uniqueUser('big');
    const sized = (n) => {
      const s = JSON.stringify({ sku: 'A1', quantity: 1, pad: '' });
      return s.replace('"pad":""', `"pad":"${'x'.repeat(n - s.length)}"`);
    };
    assert.equal(Buffer.byteLength(sized(16385)), 16385);
    const big = await http('POST', `/v1/carts/${user}/items`, { body: sized(16385), headers: JSON_CT });
    assert.equal(big.status, 413, big.text);
    await assertUnchanged(user, null);
    assertCartResponse(await http('POST', `/v1/carts/${user}/items`, { body: sized(16384), headers: JSON_CT }), {
      user,
      version: 1,
      items: [{ sku: 'A1', quantity: 1 }],
    });
  });

  test('the 413 is an application/problem+json document', TEST_OPTS, async () => {
    const user = uniqueUser('big-problem');
    const body = JSON.stringify({ sku: 'A1', quantity: 1, pad: 'x'.repeat(17_000) });
    assertProblem(await http('POST', `/v1/carts/${user}/items`, { body, headers: JSON_CT }), 413);
  });

  test('405 with Allow for a method a route does not take', TEST_OPTS, async () => {
    const user = uniqueUser('m');
    const cases = [
      ['PUT', '/v1/carts', ['OPTIONS', 'POST']],
      ['GET', '/v1/carts', ['OPTIONS', 'POST']],
      ['PATCH', `/v1/carts/${user}`, ['DELETE', 'GET', 'OPTIONS']],
      ['POST', `/v1/carts/${user}`, ['DELETE', 'GET', 'OPTIONS']],
      ['GET', `/v1/carts/${user}/items`, ['OPTIONS', 'POST']],
      ['DELETE', `/v1/carts/${user}/items`, ['OPTIONS', 'POST']],
      ['POST', `/v1/carts/${user}/items/A1`, ['DELETE', 'OPTIONS', 'PUT']],
      ['GET', `/v1/carts/${user}/items/A1`, ['DELETE', 'OPTIONS', 'PUT']],
      ['GET', `/v1/carts/${user}/checkout`, ['OPTIONS', 'POST']],
      ['PUT', `/v1/carts/${user}/checkout`, ['OPTIONS', 'POST']],
    ];
    for (const [method, path, allowed] of cases) {
      const res = await http(method, path, { body: method === 'GET' ? undefined : '{}', headers: JSON_CT });
      assertProblem(res, 405);
      const allow = (res.headers.get('allow') ?? '')
        .split(',')
        .map((m) => m.trim())
        .filter((m) => m !== '' && m !== 'HEAD');
      assert.deepEqual(allow.sort(), allowed, `Allow of ${method} ${path}`);
    }
    await assertUnchanged(user, null);
  });

  test('404 for a path that is not in the API', TEST_OPTS, async () => {
    const user = uniqueUser('nf');
    for (const path of [`/v1/carts/${user}/other`, `/v1/carts/${user}/items/A1/x`, '/v2/carts', `/v1/cart/${user}`]) {
      assertProblem(await http('POST', path, { body: '{}', headers: JSON_CT }), 404);
    }
  });
});

describe('Prefer: respond-async', TEST_OPTS, () => {
  test('202 at once with Preference-Applied, Location and the event_id; applied soon after', TEST_OPTS, async () => {
    const user = uniqueUser('async');
    const prefer = { Prefer: 'respond-async' };
    const res = await addItem(user, 'A1', 3, prefer);
    assert.equal(res.status, 202, res.text);
    assert.equal(res.headers.get('preference-applied'), 'respond-async');
    assert.equal(res.headers.get('location'), `/v1/carts/${user}`);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/i);
    assert.deepEqual(Object.keys(res.json).sort(), ['event_id', 'status']);
    assert.equal(res.json.status, 'accepted');
    assert.equal(typeof res.json.event_id, 'string');
    assert.ok(res.json.event_id.length > 0);

    const cart = await waitFor('the async add to be applied', () => getCart(user));
    assertCart(cart, { user, version: 1, items: [{ sku: 'A1', quantity: 3 }] });
    const events = await userEvents(user);
    assert.deepEqual(events.map((e) => e.body.event_id), [res.json.event_id], 'the 202 names the published event');
    const done = await processedEvents(user);
    assert.deepEqual(done.map((e) => e.event_id), [res.json.event_id], 'and that event was applied');

    // Every kind of write takes the preference; they are applied in order.
    const writes = [
      () => setItem(user, 'B2', 2, prefer),
      () => http('DELETE', `/v1/carts/${user}/items/A1`, { headers: prefer }),
      () => http('POST', `/v1/carts/${user}/checkout`, { headers: prefer }),
      () => http('POST', '/v1/carts', { body: { user_id: user }, headers: prefer }),
    ];
    const ids = [];
    for (const w of writes) {
      const r = await w();
      assert.equal(r.status, 202, r.text);
      assert.equal(r.headers.get('preference-applied'), 'respond-async');
      assert.equal(r.json.status, 'accepted');
      ids.push(r.json.event_id);
    }
    assert.equal(new Set([res.json.event_id, ...ids]).size, 5, 'every write has its own event_id');
    const fresh = await waitFor('the async create after the async checkout', async () => {
      const c = await getCart(user);
      return c && c.cart_id !== cart.cart_id ? c : null;
    });
    assertCart(fresh, { user, version: 5, items: [] });
    const checkedOut = await queryShard(
      shardOf(user),
      "SELECT version::int FROM carts WHERE cart_id = $1 AND status = 'checked_out'",
      [cart.cart_id],
    );
    assert.deepEqual(checkedOut, [{ version: 4 }], 'the first cart was checked out at version 4');

    const del = await http('DELETE', `/v1/carts/${user}`, { headers: prefer });
    assert.equal(del.status, 202, del.text);
    assert.equal(del.headers.get('location'), `/v1/carts/${user}`);
    await waitFor('the async delete', async () => (await getCart(user)) === null);
  });
});

describe('If-Match', TEST_OPTS, () => {
  test('the current ETag applies; a stale one is 412 and changes nothing', TEST_OPTS, async () => {
    const user = uniqueUser('ifm');
    const v1 = await addItem(user, 'A1', 1);
    assert.equal(v1.headers.get('etag'), '"1"');
    const v2 = assertCartResponse(await addItem(user, 'A1', 1, { 'If-Match': v1.headers.get('etag') }), {
      user,
      version: 2,
      items: [{ sku: 'A1', quantity: 2 }],
    });
    const stale = { 'If-Match': '"1"' };
    const writes = [
      () => addItem(user, 'A1', 1, stale),
      () => addItem(user, 'B2', 1, stale),
      () => setItem(user, 'A1', 7, stale),
      () => http('DELETE', `/v1/carts/${user}/items/A1`, { headers: stale }),
      () => http('POST', `/v1/carts/${user}/checkout`, { headers: stale }),
      () => http('DELETE', `/v1/carts/${user}`, { headers: stale }),
      () => addItem(user, 'A1', 1, { 'If-Match': '"3"' }),
    ];
    for (const w of writes) assertProblem(await w(), 412);
    await assertUnchanged(user, v2);

    assertCartResponse(await setItem(user, 'A1', 7, { 'If-Match': '"2"' }), {
      user,
      version: 3,
      items: [{ sku: 'A1', quantity: 7 }],
    });
    const gone = await http('DELETE', `/v1/carts/${user}`, { headers: { 'If-Match': '"3"' } });
    assert.equal(gone.status, 204, gone.text);
    assert.equal(await getCart(user), null);
  });

  test('a malformed If-Match is a 4xx problem and changes nothing', TEST_OPTS, async () => {
    const user = uniqueUser('ifm-bad');
    const cart = assertCartResponse(await addItem(user, 'A1', 1), { user, version: 1, items: [{ sku: 'A1', quantity: 1 }] });
    for (const v of ['1', '"abc"', '""', '"-1"', 'W/"1"x']) {
      const res = await addItem(user, 'A1', 1, { 'If-Match': v });
      assert.ok(res.status >= 400 && res.status < 500, `If-Match ${v}: ${res.status} ${res.text}`);
      assertProblem(res, res.status);
    }
    await assertUnchanged(user, cart);
  });
});

describe('ETag', TEST_OPTS, () => {
  test('every write answer carries ETag "<version>", matching GET', TEST_OPTS, async () => {
    const user = uniqueUser('etag');
    const answers = [
      await http('POST', '/v1/carts', { body: { user_id: user } }),
      await addItem(user, 'A1', 1),
      await setItem(user, 'A1', 4),
      await http('DELETE', `/v1/carts/${user}/items/A1`),
    ];
    answers.forEach((r, i) => {
      assert.ok(r.status === 200 || r.status === 201, r.text);
      assert.equal(r.headers.get('etag'), `"${i + 1}"`);
      assert.equal(r.json.version, i + 1);
    });
    const get = await http('GET', `/v1/carts/${user}`);
    assert.equal(get.headers.get('etag'), '"4"');
    assert.match(answers[0].json.cart_id, UUID_RE);
  });
});
