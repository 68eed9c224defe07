// End to end: one user's writes go through the gateway, JetStream and a cart-store into the right
// shard, and come back through the API; then a GET without a cart, and the gateway's probes. See
// docs/reference/ (partitioning.md, api.md, events.md, storage.md).

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  RFC3339_RE,
  SHARDS,
  TEST_OPTS,
  assertCart,
  closeAll,
  http,
  partitionOf,
  queryAllShards,
  shardOf,
  uniqueUser,
  userEvents,
} from './lib.mjs';

after(closeAll);

function assertJson(res) {
  assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/i, 'Content-Type is application/json');
}

describe('end to end: one user adds items', TEST_OPTS, () => {
  const user = uniqueUser('e2e');
  const partition = partitionOf(user);
  const shard = shardOf(user);
  let first = null; // the cart after each write
  let last = null;

  test('POST /v1/carts/{user}/items creates the cart', TEST_OPTS, async () => {
    const res = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 2 } });
    assert.equal(res.status, 200, res.text);
    assertJson(res);
    assertCart(res.json, { user, version: 1, items: [{ sku: 'A1', quantity: 2 }] });
    assert.equal(res.headers.get('etag'), '"1"');
    first = res.json;
    last = res.json;
  });

  test('a second sku is added, and items stay sorted by sku', TEST_OPTS, async () => {
    assert.ok(first, 'needs the cart of the first step');
    const res = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'B7', quantity: 1 } });
    assert.equal(res.status, 200, res.text);
    assertJson(res);
    assertCart(res.json, {
      user,
      version: 2,
      items: [
        { sku: 'A1', quantity: 2 },
        { sku: 'B7', quantity: 1 },
      ],
    });
    assert.equal(res.json.cart_id, first.cart_id, 'same cart');
    assert.equal(res.json.created_at, first.created_at);
    assert.equal(res.headers.get('etag'), '"2"');
    last = res.json;
  });

  test('adding an existing sku adds to its quantity', TEST_OPTS, async () => {
    assert.ok(first, 'needs the cart of the first step');
    const res = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 3 } });
    assert.equal(res.status, 200, res.text);
    assertJson(res);
    assertCart(res.json, {
      user,
      version: 3,
      items: [
        { sku: 'A1', quantity: 5 },
        { sku: 'B7', quantity: 1 },
      ],
    });
    assert.equal(res.json.cart_id, first.cart_id, 'same cart');
    assert.equal(res.headers.get('etag'), '"3"');
    last = res.json;
  });

  test('GET /v1/carts/{user} returns the same cart and ETag', TEST_OPTS, async () => {
    assert.ok(last, 'needs the cart of the earlier steps');
    const res = await http('GET', `/v1/carts/${user}`);
    assert.equal(res.status, 200, res.text);
    assertJson(res);
    assert.deepEqual(res.json, last);
    assert.equal(res.headers.get('etag'), `"${last.version}"`);
  });

  test("the user's rows are on the shard the partition function names, and on no other", TEST_OPTS, async () => {
    assert.ok(last, 'needs the cart of the earlier steps');
    const [carts, items, events] = await Promise.all([
      queryAllShards(
        'SELECT cart_id::text, partition, status, version FROM carts WHERE user_id = $1 ORDER BY version',
        [user],
      ),
      queryAllShards(
        `SELECT i.sku, i.quantity FROM cart_items i JOIN carts c USING (cart_id)
          WHERE c.user_id = $1 ORDER BY i.sku`,
        [user],
      ),
      queryAllShards('SELECT event_id, partition FROM processed_events WHERE user_id = $1', [user]),
    ]);
    for (let s = 0; s < SHARDS; s++) {
      if (s === shard) continue;
      assert.equal(carts[s].length, 0, `no carts row on shard ${s}`);
      assert.equal(items[s].length, 0, `no cart_items row on shard ${s}`);
      assert.equal(events[s].length, 0, `no processed_events row on shard ${s}`);
    }
    assert.deepEqual(carts[shard], [{ cart_id: last.cart_id, partition, status: 'active', version: '3' }]);
    assert.deepEqual(items[shard], [
      { sku: 'A1', quantity: 5 },
      { sku: 'B7', quantity: 1 },
    ]);
    assert.equal(events[shard].length, 3, 'one processed_events row per write');
    for (const e of events[shard]) assert.equal(e.partition, partition);
  });

  test('each write is an event on stream CARTS at carts.events.<partition>', TEST_OPTS, async () => {
    assert.ok(last, 'needs the cart of the earlier steps');
    const events = await userEvents(user);
    assert.equal(events.length, 3, 'three events for three writes');
    const expected = [
      { sku: 'A1', quantity: 2 },
      { sku: 'B7', quantity: 1 },
      { sku: 'A1', quantity: 3 },
    ];
    events.forEach((e, i) => {
      assert.equal(e.subject, `carts.events.${partition}`);
      assert.ok(e.body, 'the body is JSON');
      assert.equal(e.body.type, 'cart.item_added');
      assert.equal(e.body.user_id, user);
      assert.equal(typeof e.body.event_id, 'string');
      assert.ok(e.body.event_id.length > 0, 'event_id is not empty');
      assert.equal(e.headers?.get('Nats-Msg-Id'), e.body.event_id, 'Nats-Msg-Id is the event_id');
      assert.match(e.body.occurred_at, RFC3339_RE, 'occurred_at is RFC 3339');
      assert.deepEqual(e.body.data, expected[i]);
    });

    // The dedup records are exactly these events.
    const rows = (await queryAllShards('SELECT event_id FROM processed_events WHERE user_id = $1', [user])).flat();
    assert.deepEqual(rows.map((r) => r.event_id).sort(), events.map((e) => e.body.event_id).sort());
  });
});

describe('end to end: reads and probes', TEST_OPTS, () => {
  test('GET of a user without a cart is a 404 problem', TEST_OPTS, async () => {
    const res = await http('GET', `/v1/carts/${uniqueUser('nobody')}`);
    assert.equal(res.status, 404, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json\b/i);
    assert.ok(res.json, 'the body is JSON');
    assert.equal(typeof res.json.type, 'string');
    assert.equal(typeof res.json.title, 'string');
    assert.equal(res.json.status, 404);
    assert.equal(typeof res.json.detail, 'string');
  });

  test('GET /healthz is 200', TEST_OPTS, async () => {
    const res = await http('GET', '/healthz');
    assert.equal(res.status, 200, res.text);
  });

  test('GET /readyz is 200', TEST_OPTS, async () => {
    const res = await http('GET', '/readyz');
    assert.equal(res.status, 200, res.text);
  });

  test('GET /metrics is Prometheus text', TEST_OPTS, async () => {
    const res = await http('GET', '/metrics');
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain\b/i);
    assert.match(res.text, /^# TYPE \S+ (counter|gauge|histogram|summary|untyped)$/m, 'at least one # TYPE line');
  });
});
