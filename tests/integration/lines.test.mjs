// Line snapshots, prices and totals (docs/reference/api.md, Line snapshots and totals;
// docs/reference/events.md, Line snapshots in events): the members over HTTP and on the bus,
// their domains (400 from the gateway, CARTS_DLQ on the bus), the money rules (422 refusals),
// old and new events on one cart, the change notices, and the cart:price scope on a private
// gateway with AUTH_JWT_SECRET.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';

import {
  REDIS_URL,
  TEST_OPTS,
  assertProblem,
  cartEvent,
  closeAll,
  hs256Jwt,
  http,
  partitionOf,
  processedEvents,
  publishEvent,
  publishRaw,
  queryShard,
  redis,
  shardOf,
  startGateway,
  stopProcess,
  streamMessages,
  uniqueUser,
  userChanges,
  userEvents,
  waitFor,
} from './lib.mjs';

after(closeAll);

const SLOW = { timeout: 30_000 };
const PRICE_MAX = 100_000_000_000;
const MONEY_MAX = 1_000_000_000_000_000;

function add(user, body, headers = {}, base = '') {
  return http('POST', `${base}/v1/carts/${user}/items`, { body, headers });
}

function put(user, sku, body, headers = {}, base = '') {
  return http('PUT', `${base}/v1/carts/${user}/items/${sku}`, { body, headers });
}

/** Checks a 200 cart answer and resolves to its cart. */
function ok(res) {
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get('etag'), `"${res.json.version}"`);
  return res.json;
}

/** The snapshot columns of a user's active cart on its shard, by sku. */
async function shardLines(user) {
  const rows = await queryShard(
    shardOf(user),
    `SELECT i.sku, i.quantity, i.name, i.unit_price::text AS unit_price, i.currency, i.attributes
       FROM carts c JOIN cart_items i USING (cart_id)
      WHERE c.user_id = $1 AND c.status = 'active' ORDER BY i.sku COLLATE "C"`,
    [user],
  );
  return Object.fromEntries(rows.map((r) => [r.sku, r]));
}

/** The cart's totals as the API defines them, from its lines. */
function expectedTotals(cart) {
  const priced = cart.items.filter((i) => i.unit_price !== undefined);
  for (const i of priced) assert.equal(i.line_total, i.unit_price * i.quantity, `${i.sku}: line_total`);
  for (const i of cart.items.filter((x) => x.unit_price === undefined)) {
    assert.ok(!('currency' in i) && !('line_total' in i), `${i.sku}: no price, no currency, no total`);
  }
  assert.equal(new Set(priced.map((i) => i.currency)).size <= 1, true, 'one currency');
  assert.equal(cart.currency, priced.length ? priced[0].currency : null, 'the cart currency');
  assert.equal(cart.subtotal, priced.reduce((n, i) => n + i.line_total, 0), 'the subtotal');
}

describe('snapshots over HTTP', TEST_OPTS, () => {
  test('a priced add shows line_total, currency and subtotal; the cache and the shard agree', TEST_OPTS, async () => {
    const user = uniqueUser('ln');
    let cart = ok(
      await add(user, {
        sku: 'A1',
        quantity: 2,
        name: 'Mug "Blue" \u2615',
        unit_price: 1999,
        currency: 'EUR',
        attributes: { size: 'L', color: 'blue' },
      }),
    );
    assert.deepEqual(cart.items, [
      {
        sku: 'A1',
        quantity: 2,
        name: 'Mug "Blue" \u2615',
        unit_price: 1999,
        currency: 'EUR',
        line_total: 3998,
        attributes: { color: 'blue', size: 'L' },
      },
    ]);
    assert.deepEqual(Object.keys(cart.items[0].attributes), ['color', 'size'], 'attributes shown with sorted keys');
    assert.equal(cart.currency, 'EUR');
    assert.equal(cart.subtotal, 3998);

    // An unpriced line counts in item_count, not in the subtotal; a price of 0 is a price.
    cart = ok(await add(user, { sku: 'B7', quantity: 1 }));
    assert.deepEqual(cart.items[1], { sku: 'B7', quantity: 1 });
    cart = ok(await add(user, { sku: 'C3', quantity: 3, unit_price: 0, currency: 'EUR' }));
    assert.deepEqual(cart.items[2], { sku: 'C3', quantity: 3, unit_price: 0, currency: 'EUR', line_total: 0 });
    assert.equal(cart.item_count, 6);
    assert.equal(cart.subtotal, 3998);
    expectedTotals(cart);

    // The cache entry, a read through the shard and the rows hold the same.
    const hit = await http('GET', `/v1/carts/${user}`);
    assert.equal(hit.text, JSON.stringify(cart), 'the cache entry is the answer of the last write');
    await redis('DEL', `cart:{${user}}`);
    const miss = await http('GET', `/v1/carts/${user}`);
    assert.equal(miss.text, hit.text, 'read from the shard, the same bytes');
    const rows = await shardLines(user);
    assert.deepEqual(
      { name: rows.A1.name, unit_price: rows.A1.unit_price, currency: rows.A1.currency, attributes: rows.A1.attributes },
      { name: 'Mug "Blue" \u2615', unit_price: '1999', currency: 'EUR', attributes: '{"color":"blue","size":"L"}' },
    );
    assert.deepEqual(
      { name: rows.B7.name, unit_price: rows.B7.unit_price, currency: rows.B7.currency, attributes: rows.B7.attributes },
      { name: null, unit_price: null, currency: null, attributes: null },
    );
  });

  test("a member given replaces the line's; one left out is kept", TEST_OPTS, async () => {
    const user = uniqueUser('ln');
    let cart = ok(
      await add(user, { sku: 'A1', quantity: 1, name: 'Mug', unit_price: 1000, currency: 'EUR', attributes: { color: 'red' } }),
    );
    cart = ok(await put(user, 'A1', { quantity: 2, name: 'Mug v2' }));
    assert.deepEqual(cart.items[0], {
      sku: 'A1',
      quantity: 2,
      name: 'Mug v2',
      unit_price: 1000,
      currency: 'EUR',
      line_total: 2000,
      attributes: { color: 'red' },
    });
    assert.equal(cart.version, 2);
    // The same quantity and snapshot again: nothing changes, not even the version.
    cart = ok(await put(user, 'A1', { quantity: 2, name: 'Mug v2', unit_price: 1000, currency: 'EUR' }));
    assert.equal(cart.version, 2);
    // Attributes go as a whole object; an empty name is a name.
    cart = ok(await put(user, 'A1', { quantity: 2, attributes: { gift: 'yes' }, name: '' }));
    assert.deepEqual(cart.items[0].attributes, { gift: 'yes' });
    assert.equal(cart.items[0].name, '');
    assert.equal(cart.version, 3);
    // An add with a new price reprices the whole line.
    cart = ok(await add(user, { sku: 'A1', quantity: 1, unit_price: 1799, currency: 'EUR' }));
    assert.equal(cart.items[0].quantity, 3);
    assert.equal(cart.items[0].line_total, 5397);
    assert.equal(cart.subtotal, 5397);
    // A set to 0 removes the line, whatever it carries; the cart then has no currency.
    cart = ok(await put(user, 'A1', { quantity: 0, name: 'gone' }));
    assert.deepEqual(cart.items, []);
    assert.equal(cart.currency, null);
    assert.equal(cart.subtotal, 0);
    cart = ok(await add(user, { sku: 'A1', quantity: 1 }));
    assert.deepEqual(cart.items, [{ sku: 'A1', quantity: 1 }], 'a new line starts without a snapshot');
  });

  test('a member outside its domain is a 400 naming it, and nothing is published', TEST_OPTS, async () => {
    const user = uniqueUser('ln-400');
    const many = Object.fromEntries([...Array(17).keys()].map((i) => [`k${i}`, 'v']));
    const big = Object.fromEntries([...Array(8).keys()].map((i) => [`a${i}`, 'v'.repeat(256)]));
    const cases = [
      [{ name: 'n'.repeat(201) }, /^name: /],
      [{ name: '\u2615'.repeat(67) }, /^name: /], // 201 bytes of UTF-8
      [{ name: 5 }, /^name: /],
      [{ name: null }, /^name: /],
      [{ unit_price: -1, currency: 'EUR' }, /^unit_price: expected an integer from 0 to 100000000000$/],
      [{ unit_price: PRICE_MAX + 1, currency: 'EUR' }, /^unit_price: /],
      [{ unit_price: 1.5, currency: 'EUR' }, /^unit_price: /],
      [{ unit_price: '5', currency: 'EUR' }, /^unit_price: /],
      [{ unit_price: 5, currency: 'eur' }, /^currency: expected an ISO 4217 code/],
      [{ unit_price: 5, currency: 'EURO' }, /^currency: /],
      [{ currency: 'EUR' }, /^currency: needs unit_price$/],
      [{ unit_price: 5 }, /^currency: required with unit_price$/],
      [{ attributes: [] }, /^attributes: /],
      [{ attributes: many }, /^attributes: expected an object of at most 16 members$/],
      [{ attributes: { 'a b': 'v' } }, /^attributes: expected keys/],
      [{ attributes: { size: 1 } }, /^attributes\.size: /],
      [{ attributes: { size: 'v'.repeat(257) } }, /^attributes\.size: /],
      [{ attributes: big }, /^attributes: expected at most 2048 bytes of compact JSON$/],
    ];
    for (const [members, detail] of cases) {
      for (const res of [await add(user, { sku: 'A1', quantity: 1, ...members }), await put(user, 'A1', { quantity: 1, ...members })]) {
        const p = assertProblem(res, 400);
        assert.equal(p.type, 'urn:cartshard:problem:invalid-field', JSON.stringify(members));
        assert.match(p.detail, detail, JSON.stringify(members).slice(0, 80));
      }
    }
    assert.equal((await userEvents(user)).length, 0, 'no event was published');
  });

  test("a priced line in another currency is a 422 currency-mismatch; the cart's only priced line may change it", TEST_OPTS, async () => {
    const user = uniqueUser('ln-cur');
    let cart = ok(await add(user, { sku: 'A1', quantity: 1, unit_price: 1000, currency: 'EUR' }));
    ok(await add(user, { sku: 'B2', quantity: 1 }));
    let res = await add(user, { sku: 'C3', quantity: 1, unit_price: 500, currency: 'USD' });
    let p = assertProblem(res, 422);
    assert.equal(p.type, 'urn:cartshard:problem:currency-mismatch');
    assert.equal(p.detail, "currency mismatch: the cart's currency is EUR, not USD");
    res = await put(user, 'B2', { quantity: 1, unit_price: 500, currency: 'USD' });
    assert.equal(assertProblem(res, 422).type, 'urn:cartshard:problem:currency-mismatch');
    assert.equal((await http('GET', `/v1/carts/${user}`)).json.version, 2, 'nothing changed');

    // The only priced line moves to another currency, and the cart's follows.
    cart = ok(await put(user, 'A1', { quantity: 1, unit_price: 900, currency: 'GBP' }));
    assert.equal(cart.currency, 'GBP');
    assert.equal(cart.subtotal, 900);

    // A repeat of the refused write (the same Idempotency-Key) gets the same problem type.
    const key = { 'Idempotency-Key': `cur-${randomUUID()}` };
    for (let i = 0; i < 2; i++) {
      p = assertProblem(await add(user, { sku: 'C3', quantity: 1, unit_price: 500, currency: 'USD' }, key), 422);
      assert.equal(p.type, 'urn:cartshard:problem:currency-mismatch', `attempt ${i + 1}`);
      assert.equal(p.detail, "currency mismatch: the cart's currency is GBP, not USD");
    }
  });

  test('a line total or subtotal over 10^15 minor units is a 422 limit-exceeded', TEST_OPTS, async () => {
    const user = uniqueUser('ln-max');
    let cart;
    for (let i = 0; i < 10; i++) {
      cart = ok(await add(user, { sku: `S${i}`, quantity: 999, unit_price: PRICE_MAX, currency: 'JPY' }));
    }
    assert.equal(cart.subtotal, 10 * 999 * PRICE_MAX);
    assert.ok(cart.subtotal < MONEY_MAX);
    let p = assertProblem(await add(user, { sku: 'S10', quantity: 999, unit_price: PRICE_MAX, currency: 'JPY' }), 422);
    assert.equal(p.type, 'urn:cartshard:problem:limit-exceeded');
    assert.equal(p.detail, 'a subtotal over the limit of 10^15 minor units');
    // Exactly up to the limit is fine: 10^15 - 10 * 999 * 10^11 = 10^12 = 10 * 10^11.
    cart = ok(await add(user, { sku: 'S10', quantity: 10, unit_price: PRICE_MAX, currency: 'JPY' }));
    assert.equal(cart.subtotal, MONEY_MAX);
    // Raising a priced line's quantity, with no price in the request, is held to it too.
    p = assertProblem(await put(user, 'S10', { quantity: 11 }), 422);
    assert.equal(p.detail, 'a subtotal over the limit of 10^15 minor units');
    assert.equal((await http('GET', `/v1/carts/${user}`)).json.subtotal, MONEY_MAX);
  });

  test('a stale If-Match is a 412 also for a priced write', TEST_OPTS, async () => {
    const user = uniqueUser('ln-412');
    const cart = ok(await add(user, { sku: 'A1', quantity: 1 }));
    const res = await add(user, { sku: 'A1', quantity: 1, unit_price: 5, currency: 'EUR' }, { 'If-Match': `"${cart.version + 1}"` });
    assertProblem(res, 412);
  });
});

describe('snapshots on the bus', TEST_OPTS, () => {
  test('old and new events on one cart: a line keeps its snapshot through events without one', SLOW, async () => {
    const user = uniqueUser('ln-mix');
    const send = async (type, data) => {
      const r = await publishEvent(cartEvent(type, user, data), { reply: true });
      assert.equal(r.reply.status, 200, `${type} ${JSON.stringify(data)}: ${r.reply.detail}`);
      return r.reply.cart;
    };
    // Old shape: only sku and quantity, as every event before snapshots.
    let cart = await send('cart.item_added', { sku: 'A1', quantity: 1 });
    assert.deepEqual(cart.items, [{ sku: 'A1', quantity: 1 }]);
    assert.equal(cart.currency, null);
    // New shape on the same line.
    cart = await send('cart.item_added', { sku: 'A1', quantity: 1, name: 'Tea', unit_price: 250, currency: 'CHF' });
    assert.deepEqual(cart.items, [{ sku: 'A1', quantity: 2, name: 'Tea', unit_price: 250, currency: 'CHF', line_total: 500 }]);
    // Old shape again: the snapshot stays, the total follows the quantity.
    cart = await send('cart.item_quantity_set', { sku: 'A1', quantity: 5 });
    assert.deepEqual(cart.items[0], { sku: 'A1', quantity: 5, name: 'Tea', unit_price: 250, currency: 'CHF', line_total: 1250 });
    cart = await send('cart.item_added', { sku: 'B1', quantity: 1, note: 'an unknown member is ignored' });
    cart = await send('cart.item_quantity_set', { sku: 'B1', quantity: 1, attributes: { grind: 'fine' } });
    assert.deepEqual(cart.items[1], { sku: 'B1', quantity: 1, attributes: { grind: 'fine' } });
    expectedTotals(cart);
    assert.equal(cart.subtotal, 1250);
    // The gateway reads the same cart, from the cache and from the shard.
    const got = (await http('GET', `/v1/carts/${user}`)).json;
    assert.deepEqual(got, cart);
    await redis('DEL', `cart:{${user}}`);
    assert.deepEqual((await http('GET', `/v1/carts/${user}`)).json, cart);
  });

  test('the change notices carry the snapshots; the checkout notice the final lines, currency and subtotal', SLOW, async () => {
    const user = uniqueUser('ln-chg');
    ok(await add(user, { sku: 'A1', quantity: 2, name: 'Mug', unit_price: 1999, currency: 'EUR', attributes: { color: 'blue' } }));
    ok(await add(user, { sku: 'B7', quantity: 1, name: 'Card' }));
    const checkout = await http('POST', `/v1/carts/${user}/checkout`);
    const final = ok(checkout);
    assert.equal(final.status, 'checked_out');
    const notices = await waitFor('three change notices', async () => {
      const msgs = await userChanges(user);
      return msgs.length >= 3 ? msgs : null;
    });
    const bodies = notices.map((m) => m.body).sort((a, b) => a.version - b.version);
    assert.deepEqual(bodies.map((b) => b.type), ['cart.item_added', 'cart.item_added', 'cart.checked_out']);
    assert.deepEqual(bodies[0].items, [
      { sku: 'A1', quantity: 2, name: 'Mug', unit_price: 1999, currency: 'EUR', line_total: 3998, attributes: { color: 'blue' } },
    ]);
    assert.equal(bodies[0].currency, 'EUR');
    assert.equal(bodies[0].subtotal, 3998);
    const done = bodies[2];
    assert.equal(done.status, 'checked_out');
    assert.equal(done.partition, partitionOf(user));
    assert.deepEqual(done.items, final.items, 'the final lines with their snapshots');
    assert.equal(done.item_count, 3);
    assert.equal(done.currency, 'EUR');
    assert.equal(done.subtotal, 3998);
  });

  test('an event outside its domain goes to CARTS_DLQ naming the member; a refusal is recorded and answered', SLOW, async () => {
    const user = uniqueUser('ln-dlq');
    const p = partitionOf(user);
    const ev = (data) => cartEvent('cart.item_added', user, { sku: 'A1', quantity: 1, ...data });
    const cases = [
      ['a name of 201 bytes', ev({ name: 'n'.repeat(201) }), /^invalid event: data\.name: /],
      ['a null name', ev({ name: null }), /data\.name/],
      ['a negative price', ev({ unit_price: -1, currency: 'EUR' }), /^invalid event: data\.unit_price: /],
      ['a price over 10^11', ev({ unit_price: PRICE_MAX + 1, currency: 'EUR' }), /data\.unit_price/],
      ['a real price', ev({ unit_price: 19.99, currency: 'EUR' }), /data\.unit_price/],
      ['a lower-case currency', ev({ unit_price: 5, currency: 'eur' }), /^invalid event: data\.currency: expected an ISO 4217 code/],
      ['a currency without a price', ev({ currency: 'EUR' }), /^invalid event: data\.currency: needs unit_price$/],
      ['a price without a currency', ev({ unit_price: 5 }), /data\.currency: required with unit_price/],
      ['17 attributes', ev({ attributes: Object.fromEntries([...Array(17).keys()].map((i) => [`k${i}`, 'v'])) }), /data\.attributes/],
      ['an attribute of 257 bytes', ev({ attributes: { size: 'v'.repeat(257) } }), /^invalid event: data\.attributes\.size: /],
      ['a set with a bad currency', cartEvent('cart.item_quantity_set', user, { sku: 'A1', quantity: 2, unit_price: 1, currency: 'E1R' }), /data\.currency/],
      ['a sku of 65 characters', ev({ sku: 'S'.repeat(65) }), /data\.sku/],
    ];
    for (const [, body] of cases) {
      const ack = await publishRaw(`carts.events.${p}`, body, { msgId: `ln-dlq-${randomUUID()}` });
      assert.equal(ack.duplicate, false);
    }
    // A priced line, and then one in another currency: a refusal, answered and recorded.
    const priced = await publishEvent(ev({ unit_price: 100, currency: 'EUR' }), { reply: true });
    assert.equal(priced.reply.status, 200, priced.reply.detail);
    const other = cartEvent('cart.item_added', user, { sku: 'B2', quantity: 1, unit_price: 100, currency: 'USD' });
    const refused = await publishEvent(other, { reply: true });
    assert.equal(refused.reply.status, 422);
    assert.match(refused.reply.detail, /^currency mismatch: /);

    const ids = new Set(cases.map(([, body]) => body.event_id));
    const dead = await waitFor(
      'the malformed events on CARTS_DLQ',
      async () => {
        const msgs = await streamMessages('CARTS_DLQ', `carts.dlq.${p}`, (b) => ids.has(b?.event_id));
        return msgs.length >= cases.length ? msgs : null;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    assert.equal(dead.length, cases.length, 'each once');
    for (const [name, body, errRe] of cases) {
      const m = dead.find((d) => d.body.event_id === body.event_id);
      assert.ok(m, `${name}: dead-lettered`);
      assert.equal(m.text, JSON.stringify(body), `${name}: the original body`);
      assert.match(m.headers.get('Cart-Error') ?? '', errRe, `${name}: Cart-Error names the member`);
    }
    const rows = await processedEvents(user);
    assert.deepEqual(rows.map((r) => r.event_id).sort(), [priced.reply.eventId, other.event_id].sort(), 'only the valid ones are recorded');
    assert.equal(rows.find((r) => r.event_id === other.event_id).http_status, 422);
    const refusedDead = await streamMessages('CARTS_DLQ', `carts.dlq.${p}`, (b) => b?.event_id === other.event_id);
    assert.equal(refusedDead.length, 0, 'a refusal is never dead-lettered');
  });
});

// ---------------------------------------------------------------------------------------------
// the cart:price scope: a private gateway with AUTH_JWT_SECRET on the stack's NATS, Redis and shards

const SECRET = 'lines-suite-secret-of-at-least-32-bytes';
/** The Authorization header of a token for `sub`, with a `scope` claim unless it is undefined. */
function token(sub, scope) {
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + 300 };
  if (scope !== undefined) claims.scope = scope;
  return { Authorization: `Bearer ${hs256Jwt(SECRET, claims)}` };
}

describe('who may set a price (auth on)', SLOW, () => {
  let gw;

  test('starts a gateway with AUTH_JWT_SECRET', SLOW, async () => {
    const u = new URL(REDIS_URL);
    u.pathname = '/5';
    gw = await startGateway({ AUTH_JWT_SECRET: SECRET, REDIS_URL: u.toString() });
  });

  test("a shopper's token may add lines and names, not prices: 403", SLOW, async () => {
    const user = uniqueUser('ln-auth');
    for (const scope of [undefined, 'openid profile', 'cart:prices', ['cart:price']]) {
      const headers = token(user, scope);
      const p = assertProblem(await add(user, { sku: 'A1', quantity: 1, unit_price: 100, currency: 'EUR' }, headers, gw.url), 403);
      assert.equal(p.type, 'urn:cartshard:problem:forbidden');
      assert.match(p.detail, /cart:price/, JSON.stringify(scope));
      assertProblem(await put(user, 'A1', { quantity: 1, unit_price: 100, currency: 'EUR' }, headers, gw.url), 403);
    }
    const shopper = token(user, 'openid profile');
    // A currency alone is a 400 before the scope is looked at.
    assertProblem(await put(user, 'A1', { quantity: 1, currency: 'EUR' }, shopper, gw.url), 400);
    const cart = ok(await add(user, { sku: 'A1', quantity: 1, name: 'Mug', attributes: { color: 'blue' } }, shopper, gw.url));
    assert.deepEqual(cart.items, [{ sku: 'A1', quantity: 1, name: 'Mug', attributes: { color: 'blue' } }]);
    assert.equal((await userEvents(user)).length, 1, 'the refused requests published nothing');
  });

  test('a token whose scope holds cart:price may', SLOW, async () => {
    const user = uniqueUser('ln-auth');
    const backend = token(user, 'openid cart:price');
    let cart = ok(await add(user, { sku: 'A1', quantity: 2, unit_price: 1999, currency: 'EUR' }, backend, gw.url));
    assert.equal(cart.subtotal, 3998);
    cart = ok(await put(user, 'A1', { quantity: 2, unit_price: 1799, currency: 'EUR' }, token(user, 'cart:price'), gw.url));
    assert.equal(cart.subtotal, 3598);
    // The price stays when the shopper changes the quantity later.
    cart = ok(await put(user, 'A1', { quantity: 3 }, token(user, 'openid'), gw.url));
    assert.equal(cart.items[0].line_total, 3 * 1799);
  });

  test('stops', SLOW, async () => {
    if (gw) await stopProcess(gw);
  });
});
