// Idempotency-Key (docs/reference/api.md, Idempotency keys): the same key for the same user is
// applied at most once, however often and however concurrently it is retried, and a repeat gets
// the first answer's status with the cart as it is now, marked Idempotent-Replayed. Also the
// worker's side of it: an event_id that comes back after JetStream's 2-minute duplicate window is
// still applied once and answered like the first. A key names one request: a repeat with another
// method, path or body is 422 idempotency-key-reused, whether JetStream still knows the key (the
// gateway compares with processed_events) or not (the worker compares).

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';

import { headers as natsHeaders } from 'nats';

import {
  TEST_OPTS,
  afterTheDuplicateWindow,
  cartEvent,
  closeAll,
  http,
  nats,
  partitionOf,
  publishEvent,
  queryShard,
  shardOf,
  uniqueUser,
  userEvents,
  waitFor,
} from './lib.mjs';

after(closeAll);

/** The event_id the gateway derives from a key (documented in README "Idempotency"). */
function idemEventId(user, key) {
  return `idem-${createHash('sha256').update(`${user}\n${key}`).digest('hex')}`;
}

function add(user, sku, quantity, headers = {}) {
  return http('POST', `/v1/carts/${user}/items`, { body: { sku, quantity }, headers });
}

async function processedRows(user, eventId) {
  return queryShard(shardOf(user), 'SELECT http_status, detail FROM processed_events WHERE event_id = $1', [eventId]);
}

/**
 * The request fingerprint the gateway computes (docs/reference/api.md, Idempotency keys): the hex
 * SHA-256 of the method, a space, the path as routed, a newline and the canonical body (members
 * sorted by name, no whitespace), which the caller writes out.
 */
function fingerprint(method, path, canonicalBody = '') {
  return createHash('sha256').update(`${method} ${path}\n${canonicalBody}`).digest('hex');
}

async function fingerprintRows(user, eventId) {
  return queryShard(
    shardOf(user),
    'SELECT http_status, request_fingerprint FROM processed_events WHERE event_id = $1',
    [eventId],
  );
}

/** Asserts a 422 for a key reused for another request. */
function assertReused(res) {
  assert.equal(res.status, 422, res.text);
  assert.match(res.headers.get('content-type'), /^application\/problem\+json/);
  assert.match(res.json.type, /idempotency-key-reused$/);
  assert.match(res.json.detail, /Idempotency-Key/);
  assert.equal(res.headers.get('idempotent-replayed'), null, 'a refusal is not a replay');
}

describe('Idempotency-Key through the gateway', TEST_OPTS, () => {
  test('sequential retries of one add apply it once and answer alike', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    const headers = { 'Idempotency-Key': 'order-42/add-1' };
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await add(user, 'A1', 2, headers));
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(a.json.version, 1, 'every repeat shows the cart as it is: still version 1');
      assert.deepEqual(a.json.items, [{ sku: 'A1', quantity: 2 }]);
      assert.equal(a.headers.get('etag'), '"1"');
    }
    const rows = await processedRows(user, idemEventId(user, headers['Idempotency-Key']));
    assert.equal(rows.length, 1, 'one dedup row, under the derived event_id');
    assert.equal(rows[0].http_status, 200);
    const events = await userEvents(user);
    assert.equal(events.length, 1, 'JetStream stored the event once (Nats-Msg-Id dedup)');
  });

  test('20 concurrent retries of one add apply it once', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => add(user, 'B1', 1, { 'Idempotency-Key': 'burst' })),
    );
    for (const a of answers) assert.equal(a.status, 200, a.text);
    const cart = await http('GET', `/v1/carts/${user}`);
    assert.equal(cart.status, 200);
    assert.deepEqual(cart.json.items, [{ sku: 'B1', quantity: 1 }]);
    assert.equal(cart.json.version, 1);
  });

  test('the same key for two users, and two keys for one user, are separate changes', TEST_OPTS, async () => {
    const u1 = uniqueUser('idem');
    const u2 = uniqueUser('idem');
    assert.equal((await add(u1, 'C1', 1, { 'Idempotency-Key': 'k' })).status, 200);
    assert.equal((await add(u2, 'C1', 1, { 'Idempotency-Key': 'k' })).status, 200);
    assert.equal((await add(u1, 'C1', 1, { 'Idempotency-Key': 'k2' })).status, 200);
    assert.deepEqual((await http('GET', `/v1/carts/${u1}`)).json.items, [{ sku: 'C1', quantity: 2 }]);
    assert.deepEqual((await http('GET', `/v1/carts/${u2}`)).json.items, [{ sku: 'C1', quantity: 1 }]);
  });

  test('a repeat gets the first status: 201 for a create, with the cart as it is now', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    const headers = { 'Idempotency-Key': 'create-1' };
    const first = await http('POST', '/v1/carts', { body: { user_id: user }, headers });
    assert.equal(first.status, 201);
    assert.equal((await add(user, 'D1', 3)).status, 200);
    const again = await http('POST', '/v1/carts', { body: { user_id: user }, headers });
    assert.equal(again.status, 201, 'the first status again');
    assert.equal(again.json.cart_id, first.json.cart_id);
    assert.equal(again.json.version, 2, 'the cart as it is now, with the later add');
    assert.deepEqual(again.json.items, [{ sku: 'D1', quantity: 3 }]);
  });

  test('a refusal is repeated as it was, even when the change would now succeed', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    assert.equal((await add(user, 'E1', 1)).status, 200); // version 1
    assert.equal((await add(user, 'E1', 1)).status, 200); // version 2
    const headers = { 'Idempotency-Key': 'cond', 'If-Match': '"1"' };
    const first = await add(user, 'E1', 5, headers);
    assert.equal(first.status, 412);
    assert.match(first.headers.get('content-type'), /^application\/problem\+json/);
    await http('PUT', `/v1/carts/${user}/items/E1`, { body: { quantity: 1 } }); // version 3
    const byVersion = await http('GET', `/v1/carts/${user}`);
    assert.equal(byVersion.json.version, 3);
    const again = await add(user, 'E1', 5, { 'Idempotency-Key': 'cond', 'If-Match': '"3"' });
    assert.equal(again.status, 412, 'the key was used: the first answer, not a new attempt');
    assert.equal(again.json.detail, first.json.detail);
    assert.deepEqual((await http('GET', `/v1/carts/${user}`)).json.items, [{ sku: 'E1', quantity: 1 }]);
    const over = await add(user, 'E2', 1000, { 'Idempotency-Key': 'big' });
    assert.equal(over.status, 422, 'over the limit (refused by the gateway, never published)');
  });

  test('a repeated checkout answers 200 with the checked-out cart', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    await add(user, 'F1', 2);
    const headers = { 'Idempotency-Key': 'pay-1' };
    const first = await http('POST', `/v1/carts/${user}/checkout`, { headers });
    assert.equal(first.status, 200);
    assert.equal(first.json.status, 'checked_out');
    const again = await http('POST', `/v1/carts/${user}/checkout`, { headers });
    assert.equal(again.status, 200);
    assert.equal(again.json.status, 'checked_out');
    assert.equal(again.json.cart_id, first.json.cart_id);
    assert.deepEqual(again.json.items, [{ sku: 'F1', quantity: 2 }]);
    const del = await http('DELETE', `/v1/carts/${user}`, { headers: { 'Idempotency-Key': 'del-1' } });
    const delAgain = await http('DELETE', `/v1/carts/${user}`, { headers: { 'Idempotency-Key': 'del-1' } });
    assert.equal(del.status, 204);
    assert.equal(delAgain.status, 204);
  });

  test('respond-async repeats are 202 and still apply once', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    const headers = { 'Idempotency-Key': 'async-1', Prefer: 'respond-async' };
    const a = await add(user, 'G1', 1, headers);
    const b = await add(user, 'G1', 1, headers);
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.equal(a.json.event_id, idemEventId(user, 'async-1'));
    assert.equal(b.json.event_id, a.json.event_id);
    const synced = await add(user, 'G1', 1, { 'Idempotency-Key': 'async-1' });
    assert.equal(synced.status, 200, 'a sync repeat waits for the first answer');
    assert.deepEqual(synced.json.items, [{ sku: 'G1', quantity: 1 }]);
  });

  test('an invalid key is 400 and publishes nothing', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    for (const key of ['with space', 'x'.repeat(129), 'caf\u00e9']) {
      const res = await add(user, 'H1', 1, { 'Idempotency-Key': key }).catch((e) => ({ status: 0, text: String(e) }));
      // fetch itself refuses a non-ASCII header value; the others reach the gateway
      if (res.status === 0) continue;
      assert.equal(res.status, 400, `key ${JSON.stringify(key)}: ${res.text}`);
      assert.match(res.json.detail, /Idempotency-Key/);
    }
    assert.equal((await http('GET', `/v1/carts/${user}`)).status, 404);
    assert.equal((await userEvents(user)).length, 0);
  });
});

describe('an event_id seen again after the duplicate window', TEST_OPTS, () => {
  /**
   * Publishes `event` straight to CARTS with its own Nats-Msg-Id (so JetStream does not drop it,
   * as after its 2-minute window) and waits for the worker's reply.
   */
  async function publishAndWait(event, msgId) {
    const nc = await nats();
    const inbox = `_CARTSHARD.test.${randomUUID()}`;
    const sub = nc.subscribe(inbox, { max: 1, timeout: 8000 });
    const h = natsHeaders();
    h.set('Nats-Msg-Id', msgId);
    h.set('Cart-Reply-To', inbox);
    await nc.jetstream().publish(`carts.events.${partitionOf(event.user_id)}`, JSON.stringify(event), { headers: h });
    for await (const m of sub) {
      return {
        status: Number(m.headers.get('Cart-Status')),
        detail: m.headers.get('Cart-Detail'),
        cart: m.data.length ? JSON.parse(new TextDecoder().decode(m.data)) : null,
      };
    }
    throw new Error('no reply from the worker');
  }

  test('the worker answers a late repeat with the first status and the current cart', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    const first = await add(user, 'J1', 2, { 'Idempotency-Key': 'late' });
    assert.equal(first.status, 200);
    await add(user, 'J2', 1); // the cart moves on: version 2
    const event = {
      event_id: idemEventId(user, 'late'),
      type: 'cart.item_added',
      user_id: user,
      occurred_at: new Date().toISOString(),
      data: { sku: 'J1', quantity: 2 },
    };
    const reply = await publishAndWait(event, `late-${randomUUID()}`);
    assert.equal(reply.status, 200);
    assert.equal(reply.cart.version, 2, 'the cart as it is now');
    assert.deepEqual(reply.cart.items, [
      { sku: 'J1', quantity: 2 },
      { sku: 'J2', quantity: 1 },
    ]);
    const rows = await processedRows(user, event.event_id);
    assert.equal(rows.length, 1);
  });

  test('a late repeat of a refusal is refused again with the same detail', TEST_OPTS, async () => {
    const user = uniqueUser('idem');
    await add(user, 'K1', 1);
    const event = {
      event_id: `evt-${randomUUID()}`,
      type: 'cart.item_quantity_set',
      user_id: user,
      occurred_at: new Date().toISOString(),
      data: { sku: 'K1', quantity: 7 },
      expected_version: 9,
    };
    const first = await publishAndWait(event, `a-${randomUUID()}`);
    assert.equal(first.status, 412);
    assert.ok(first.detail, 'a refusal has a detail');
    const again = await publishAndWait({ ...event, expected_version: 1 }, `b-${randomUUID()}`);
    assert.equal(again.status, 412, 'the event_id decides, not the body of the repeat');
    assert.equal(again.detail, first.detail);
    const rows = await processedRows(user, event.event_id);
    assert.deepEqual(rows, [{ http_status: 412, detail: first.detail }]);
    assert.deepEqual((await http('GET', `/v1/carts/${user}`)).json.items, [{ sku: 'K1', quantity: 1 }]);
  });
});

describe('a key names one request', TEST_OPTS, () => {
  test('the same body, reordered and respaced, is a replay: Idempotent-Replayed on the repeat only', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const headers = { 'Idempotency-Key': 'same-body', 'Content-Type': 'application/json' };
    const path = `/v1/carts/${user}/items`;
    const first = await http('POST', path, { body: '{"sku":"A1","quantity":2,"note":{"b":1,"a":"x"}}', headers });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('idempotent-replayed'), null, 'a first answer is not a replay');
    const again = await http('POST', path, {
      body: ' {\n  "note" : {"a":"\\u0078", "b":1.0},\r\n  "quantity": 2, "sku": "A\\u0031"\n} ',
      headers,
    });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.json.version, 1);
    assert.deepEqual(again.json.items, [{ sku: 'A1', quantity: 2 }]);
    assert.equal(again.headers.get('etag'), '"1"');
    // The fingerprint kept is the one the reference defines.
    const rows = await fingerprintRows(user, idemEventId(user, 'same-body'));
    assert.deepEqual(rows, [
      {
        http_status: 200,
        request_fingerprint: fingerprint('POST', path, '{"note":{"a":"x","b":1},"quantity":2,"sku":"A1"}'),
      },
    ]);
  });

  test('another body, while JetStream knows the key: 422, nothing applied, the first outcome stays', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const headers = { 'Idempotency-Key': 'reuse-now' };
    const first = await add(user, 'B1', 2, headers);
    assert.equal(first.status, 200, first.text);
    assertReused(await add(user, 'B1', 3, headers));
    assertReused(await add(user, 'B2', 2, headers));
    // Another method or path with the same key is another request too, bodiless ones included.
    assertReused(await http('PUT', `/v1/carts/${user}/items/B1`, { body: { quantity: 2 }, headers }));
    assertReused(await http('POST', `/v1/carts/${user}/checkout`, { headers }));
    assertReused(await http('DELETE', `/v1/carts/${user}/items/B1`, { headers }));
    assertReused(await add(user, 'B1', 3, { ...headers, Prefer: 'respond-async' }));
    // The first request, repeated after all that, still gets its own outcome.
    const again = await add(user, 'B1', 2, headers);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    const cart = await http('GET', `/v1/carts/${user}`);
    assert.equal(cart.json.version, 1, 'nothing but the first was applied');
    assert.deepEqual(cart.json.items, [{ sku: 'B1', quantity: 2 }]);
    assert.equal((await userEvents(user)).length, 1, 'JetStream kept only the first event');
    const rows = await fingerprintRows(user, idemEventId(user, 'reuse-now'));
    assert.equal(rows.length, 1);
    assert.equal(rows[0].request_fingerprint, fingerprint('POST', `/v1/carts/${user}/items`, '{"quantity":2,"sku":"B1"}'));
  });

  test('a refusal as the first outcome: the same request gets it again, another one 422', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const headers = { 'Idempotency-Key': 'refused-first' };
    const first = await http('DELETE', `/v1/carts/${user}/items/C1`, { headers });
    assert.equal(first.status, 404, first.text);
    const again = await http('DELETE', `/v1/carts/${user}/items/C1`, { headers });
    assert.equal(again.status, 404);
    assert.equal(again.json.detail, first.json.detail);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assertReused(await http('DELETE', `/v1/carts/${user}/items/C2`, { headers }));
  });

  test('concurrent requests under one key: one is applied, its copies replayed, the others 422', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const headers = { 'Idempotency-Key': 'race' };
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => add(user, 'D1', 1 + (i % 2), headers)));
    const cart = await http('GET', `/v1/carts/${user}`);
    assert.equal(cart.json.version, 1, 'one change');
    const won = cart.json.items[0].quantity;
    for (const [i, a] of answers.entries()) {
      if (1 + (i % 2) === won) {
        assert.equal(a.status, 200, a.text);
        assert.deepEqual(a.json.items, [{ sku: 'D1', quantity: won }]);
      } else {
        assertReused(a);
      }
    }
    const replayed = answers.filter((a) => a.headers.get('idempotent-replayed') === 'true').length;
    assert.equal(
      replayed,
      5,
      `every copy of the applied request but one is marked replayed: ${JSON.stringify(
        answers.map((a) => [a.status, a.headers.get('idempotent-replayed')]),
      )}`,
    );
  });

  test('the same key for another user is another key, whatever the body', TEST_OPTS, async () => {
    const users = [uniqueUser('fp'), uniqueUser('fp')];
    const headers = { 'Idempotency-Key': 'shared' };
    for (const [i, user] of users.entries()) {
      const res = await add(user, `E${i}`, i + 1, headers);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get('idempotent-replayed'), null, "a first answer, not the other user's replayed");
      assert.deepEqual(res.json.items, [{ sku: `E${i}`, quantity: i + 1 }]);
    }
    // A create under one key for both: each is its user's own first request.
    const creates = await Promise.all(
      users.map((user) => http('POST', '/v1/carts', { body: { user_id: user }, headers: { 'Idempotency-Key': 'shared-create' } })),
    );
    assert.deepEqual(
      creates.map((c) => [c.status, c.headers.get('idempotent-replayed')]),
      [
        [200, null],
        [200, null],
      ],
      'each user has a cart already: the create is answered with it',
    );
  });

  test('201 Created carries Location, the first answer and its replay alike', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const headers = { 'Idempotency-Key': 'create-loc' };
    const first = await http('POST', '/v1/carts', { body: { user_id: user }, headers });
    assert.equal(first.status, 201, first.text);
    assert.equal(first.headers.get('location'), `/v1/carts/${user}`);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const again = await http('POST', '/v1/carts', { body: { user_id: user }, headers });
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('location'), `/v1/carts/${user}`);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    // Without a key too.
    const other = uniqueUser('fp');
    const plain = await http('POST', '/v1/carts', { body: { user_id: other } });
    assert.equal(plain.status, 201);
    assert.equal(plain.headers.get('location'), `/v1/carts/${other}`);
    assert.equal(plain.headers.get('idempotent-replayed'), null);
    assertReused(await http('POST', '/v1/carts', { body: { user_id: user, note: 'x' }, headers }));
  });

  test('respond-async: the same request is 202, another one 422 once the first is committed', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const headers = { 'Idempotency-Key': 'async-fp', Prefer: 'respond-async' };
    assert.equal((await add(user, 'F1', 1, headers)).status, 202);
    await waitFor('the first change committed', async () => (await http('GET', `/v1/carts/${user}`)).status === 200);
    const same = await add(user, 'F1', 1, headers);
    assert.equal(same.status, 202);
    assert.equal(same.headers.get('idempotent-replayed'), null, 'a 202 reports no outcome');
    assertReused(await add(user, 'F1', 2, headers));
    assert.deepEqual((await http('GET', `/v1/carts/${user}`)).json.items, [{ sku: 'F1', quantity: 1 }]);
  });
});

describe('a key reused after the duplicate window (the worker compares)', TEST_OPTS, () => {
  test('through the gateway: another body is 422, the same one a replay, nothing recorded again', { timeout: 20_000 }, async () => {
    const user = uniqueUser('fp');
    const headers = { 'Idempotency-Key': 'late-fp', 'Content-Type': 'application/json' };
    const path = `/v1/carts/${user}/items`;
    await afterTheDuplicateWindow(async (forgotten) => {
      const first = await add(user, 'G1', 2, headers);
      assert.equal(first.status, 200, first.text);
      await forgotten();
      const other = await add(user, 'G1', 3, headers);
      assertReused(other);
      await forgotten();
      const again = await http('POST', path, { body: '{"quantity":2,"sku":"G1"}', headers });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.json.items, [{ sku: 'G1', quantity: 2 }]);
    });
    // The worker met each repeat: JetStream stored all three.
    assert.equal((await userEvents(user)).length, 3);
    const cart = await http('GET', `/v1/carts/${user}`);
    assert.equal(cart.json.version, 1);
    const rows = await fingerprintRows(user, idemEventId(user, 'late-fp'));
    assert.deepEqual(rows, [{ http_status: 200, request_fingerprint: fingerprint('POST', path, '{"quantity":2,"sku":"G1"}') }]);
  });

  test('on the bus: Cart-Replayed, Cart-Fingerprint and Cart-Problem for any client', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const first = await add(user, 'H1', 2, { 'Idempotency-Key': 'late-bus' });
    assert.equal(first.status, 200);
    const fp = fingerprint('POST', `/v1/carts/${user}/items`, '{"quantity":2,"sku":"H1"}');
    const ev = cartEvent('cart.item_added', user, { sku: 'H1', quantity: 2 }, { event_id: idemEventId(user, 'late-bus') });

    const same = await publishEvent({ ...ev, request_fingerprint: fp }, { msgId: `late-${randomUUID()}`, reply: true });
    assert.equal(same.reply.status, 200);
    assert.equal(same.reply.replayed, true);
    assert.equal(same.reply.fingerprint, fp);
    assert.equal(same.reply.problem, '');

    const other = await publishEvent(
      { ...ev, data: { sku: 'H1', quantity: 9 }, request_fingerprint: 'another-request' },
      { msgId: `late-${randomUUID()}`, reply: true },
    );
    assert.equal(other.reply.status, 422);
    assert.equal(other.reply.problem, 'idempotency-key-reused');
    assert.equal(other.reply.fingerprint, fp, 'the first request\'s fingerprint');
    assert.equal(other.reply.replayed, false);
    assert.equal(other.reply.cart, null);

    // Without a fingerprint: a repeat, as before fingerprints.
    const bare = await publishEvent(ev, { msgId: `late-${randomUUID()}`, reply: true });
    assert.equal(bare.reply.status, 200);
    assert.equal(bare.reply.replayed, true);
    assert.deepEqual((await fingerprintRows(user, ev.event_id)).map((r) => r.request_fingerprint), [fp]);
    assert.deepEqual((await http('GET', `/v1/carts/${user}`)).json.items, [{ sku: 'H1', quantity: 2 }]);
  });

  test('two requests under one event_id published back to back: one applied, the other 422', TEST_OPTS, async () => {
    const user = uniqueUser('fp');
    const ev = cartEvent('cart.item_added', user, { sku: 'J1', quantity: 1 });
    // Both reach the worker, most often in one batch (the working set compares them there).
    const [a, b] = await Promise.all([
      publishEvent({ ...ev, request_fingerprint: 'req-a' }, { msgId: `a-${randomUUID()}`, reply: true }),
      publishEvent({ ...ev, data: { sku: 'J1', quantity: 5 }, request_fingerprint: 'req-b' }, { msgId: `b-${randomUUID()}`, reply: true }),
    ]);
    const [won, lost] = a.ack.seq < b.ack.seq ? [a, b] : [b, a];
    assert.equal(won.reply.status, 200);
    assert.equal(won.reply.replayed, false);
    assert.equal(lost.reply.status, 422);
    assert.equal(lost.reply.problem, 'idempotency-key-reused');
    assert.equal(lost.reply.fingerprint, won === a ? 'req-a' : 'req-b');
    assert.equal((await http('GET', `/v1/carts/${user}`)).json.version, 1);
  });
});
