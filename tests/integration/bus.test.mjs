// Events published straight to JetStream, as any client may: they are applied like the gateway's,
// each event_id at most once; what cannot be applied goes to CARTS_DLQ; every applied change is
// relayed once on carts.changes.<partition>. See docs/reference/events.md.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';

import { headers as natsHeaders } from 'nats';

import {
  CART_PARTITIONS,
  CART_STORE_ADMIN_URLS,
  RFC3339_RE,
  addItem,
  assertCart,
  cartEvent,
  closeAll,
  http,
  nats,
  partitionOf,
  processedEvents,
  refuseSkusOnShards,
  publishEvent,
  publishRaw,
  queryShard,
  setItem,
  shardCart,
  shardOf,
  shardPools,
  sleep,
  streamMessages,
  uniqueUser,
  userChanges,
  userEvents,
  waitFor,
  workersMetric,
} from './lib.mjs';

after(closeAll);

const BUS_OPTS = { timeout: 20_000 };

describe('events published by any client', BUS_OPTS, () => {
  test('every event type is applied, with the worker\'s reply after commit', BUS_OPTS, async () => {
    const user = uniqueUser('bus');
    const steps = [
      ['cart.created', undefined, 201, 1, []],
      ['cart.item_added', { sku: 'B7', quantity: 2 }, 200, 2, [{ sku: 'B7', quantity: 2 }]],
      [
        'cart.item_added',
        { sku: 'A1', quantity: 1 },
        200,
        3,
        [
          { sku: 'A1', quantity: 1 },
          { sku: 'B7', quantity: 2 },
        ],
      ],
      [
        'cart.item_quantity_set',
        { sku: 'A1', quantity: 4 },
        200,
        4,
        [
          { sku: 'A1', quantity: 4 },
          { sku: 'B7', quantity: 2 },
        ],
      ],
      ['cart.item_removed', { sku: 'B7' }, 200, 5, [{ sku: 'A1', quantity: 4 }]],
    ];
    let cartId = null;
    for (const [type, data, status, version, items] of steps) {
      const ev = cartEvent(type, user, data);
      const { ack, reply } = await publishEvent(ev, { reply: true });
      assert.equal(ack.stream, 'CARTS');
      assert.equal(ack.duplicate, false);
      assert.equal(reply.eventId, ev.event_id, 'Cart-Event-Id');
      assert.equal(reply.status, status, `${type}: ${reply.detail}`);
      assertCart(reply.cart, { user, version, items });
      cartId ??= reply.cart.cart_id;
      assert.equal(reply.cart.cart_id, cartId);
    }
    const co = await publishEvent(cartEvent('cart.checked_out', user), { reply: true });
    assert.equal(co.reply.status, 200, co.reply.detail);
    assertCart(co.reply.cart, { user, version: 6, items: [{ sku: 'A1', quantity: 4 }], status: 'checked_out' });
    assert.equal((await http('GET', `/v1/carts/${user}`)).status, 404);

    await publishEvent(cartEvent('cart.item_added', user, { sku: 'C3', quantity: 1 }), { reply: true });
    const del = await publishEvent(cartEvent('cart.deleted', user), { reply: true });
    assert.equal(del.reply.status, 204, del.reply.detail);
    assert.equal(await shardCart(user), null);
    assert.equal((await processedEvents(user)).length, 8, 'one processed_events row per event');
  });

  test('unknown fields are ignored; expected_version makes an event conditional', BUS_OPTS, async () => {
    const user = uniqueUser('bus-x');
    const ev = cartEvent('cart.item_added', user, { sku: 'A1', quantity: 2, colour: 'red' }, {
      future_field: { nested: [1, 2] },
    });
    const first = await publishEvent(ev, { reply: true });
    assert.equal(first.reply.status, 200, first.reply.detail);
    assertCart(first.reply.cart, { user, version: 1, items: [{ sku: 'A1', quantity: 2 }] });

    const stale = await publishEvent(cartEvent('cart.item_added', user, { sku: 'A1', quantity: 1 }, { expected_version: 0 }), {
      reply: true,
    });
    assert.equal(stale.reply.status, 412, stale.reply.detail);
    const current = await publishEvent(
      cartEvent('cart.item_added', user, { sku: 'A1', quantity: 1 }, { expected_version: 1 }),
      { reply: true },
    );
    assert.equal(current.reply.status, 200, current.reply.detail);
    assert.deepEqual(await shardCart(user), {
      cart_id: first.reply.cart.cart_id,
      version: 2,
      items: [{ sku: 'A1', quantity: 3 }],
    });
  });
});

describe('limits over the bus', BUS_OPTS, () => {
  // A quantity outside its type's domain is a malformed event (the DLQ test below); a change that
  // the cart's state takes over a limit is a refusal.
  test('a change over a limit is answered 422, recorded, and changes nothing', BUS_OPTS, async () => {
    const user = uniqueUser('bus-lim');
    const first = await publishEvent(cartEvent('cart.item_added', user, { sku: 'A1', quantity: 998 }), { reply: true });
    assert.equal(first.reply.status, 200, first.reply.detail);
    for (const [type, data] of [
      ['cart.item_added', { sku: 'A1', quantity: 2 }],
      ['cart.item_added', { sku: 'A1', quantity: 999 }],
    ]) {
      const ev = cartEvent(type, user, data);
      const r = await publishEvent(ev, { reply: true });
      assert.equal(r.reply.status, 422, `${type} ${JSON.stringify(data)}: ${r.reply.status} ${r.reply.detail}`);
      assert.match(r.reply.detail, /over the limit 999/);
      const rows = await processedEvents(user);
      assert.equal(rows.find((row) => row.event_id === ev.event_id)?.http_status, 422, 'the refusal is recorded');
    }
    assert.deepEqual(await shardCart(user), {
      cart_id: first.reply.cart.cart_id,
      version: 1,
      items: [{ sku: 'A1', quantity: 998 }],
    });
  });
});

describe('duplicate events', BUS_OPTS, () => {
  test('the same Nats-Msg-Id: JetStream stores the event once, it is applied once', BUS_OPTS, async () => {
    const user = uniqueUser('dup-js');
    const ev = cartEvent('cart.item_added', user, { sku: 'A1', quantity: 2 });
    const acks = [];
    for (let i = 0; i < 5; i++) acks.push((await publishEvent(ev)).ack);
    assert.deepEqual(
      acks.map((a) => a.duplicate),
      [false, true, true, true, true],
      'JetStream reports the repeats as duplicates',
    );
    assert.equal(new Set(acks.map((a) => a.seq)).size, 1, 'one stream sequence');

    const marker = await publishEvent(cartEvent('cart.item_added', user, { sku: 'M', quantity: 1 }), { reply: true });
    assert.equal(marker.reply.status, 200, marker.reply.detail);
    assertCart(marker.reply.cart, {
      user,
      version: 2,
      items: [
        { sku: 'A1', quantity: 2 },
        { sku: 'M', quantity: 1 },
      ],
    });
    assert.equal((await userEvents(user)).length, 2, 'two messages on CARTS');
    const rows = await processedEvents(user);
    assert.equal(rows.filter((r) => r.event_id === ev.event_id).length, 1);
    assert.equal(rows.length, 2);
  });

  test('other Nats-Msg-Ids: stored every time, applied once (processed_events)', BUS_OPTS, async () => {
    const user = uniqueUser('dup-pg');
    const dupsBefore = await workersMetric('cartshard_events_duplicate_total');
    const ev = cartEvent('cart.item_added', user, { sku: 'A1', quantity: 2 });

    // Five copies at once (most likely one batch), then two more after the first was committed.
    const acks = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => publishEvent(ev, { msgId: i === 0 ? ev.event_id : `${ev.event_id}.copy${i}` })),
    );
    assert.deepEqual(
      acks.map((a) => a.ack.duplicate),
      [false, false, false, false, false],
      'JetStream stores them all',
    );
    assert.equal(new Set(acks.map((a) => a.ack.seq)).size, 5);
    const m1 = await publishEvent(cartEvent('cart.item_added', user, { sku: 'M', quantity: 1 }), { reply: true });
    assert.equal(m1.reply.status, 200, m1.reply.detail);
    assert.equal(m1.reply.cart.version, 2, 'the copies did not make versions');

    // A late copy that even carries another body is still the same event: not applied again.
    const late = { ...ev, data: { sku: 'A1', quantity: 50 } };
    await publishEvent(late, { msgId: `${ev.event_id}.late1` });
    await publishEvent(ev, { msgId: `${ev.event_id}.late2` });
    const m2 = await publishEvent(cartEvent('cart.item_added', user, { sku: 'M', quantity: 1 }), { reply: true });
    assert.equal(m2.reply.status, 200, m2.reply.detail);
    assertCart(m2.reply.cart, {
      user,
      version: 3,
      items: [
        { sku: 'A1', quantity: 2 },
        { sku: 'M', quantity: 2 },
      ],
    });

    assert.equal((await userEvents(user)).length, 9, 'seven copies and two markers on CARTS');
    const rows = await processedEvents(user);
    assert.equal(rows.length, 3, 'three processed_events rows: the event and the two markers');
    assert.equal(rows.filter((r) => r.event_id === ev.event_id).length, 1);
    assert.equal(
      (await workersMetric('cartshard_events_duplicate_total')) - dupsBefore,
      6,
      'cartshard_events_duplicate_total counted the six copies',
    );
  });

  test('a copy with Cart-Reply-To is answered with the first outcome', BUS_OPTS, async () => {
    const user = uniqueUser('dup-reply');
    const ev = cartEvent('cart.item_added', user, { sku: 'A1', quantity: 3 });
    const first = await publishEvent(ev, { reply: true });
    assert.equal(first.reply.status, 200);
    const again = await publishEvent(ev, { msgId: `${ev.event_id}.again`, reply: true });
    assert.equal(again.ack.duplicate, false);
    assert.equal(again.reply.status, 200, 'the status of the first application');
    assertCart(again.reply.cart, { user, version: 1, items: [{ sku: 'A1', quantity: 3 }] });
  });
});

describe('malformed events go to CARTS_DLQ', BUS_OPTS, () => {
  test('each lands on carts.dlq.<partition> with its body and a Cart-Error; later events still apply', BUS_OPTS, async () => {
    const user = uniqueUser('dlq');
    const p = partitionOf(user);
    let other = uniqueUser('dlq-other');
    while (partitionOf(other) === p) other = uniqueUser('dlq-other');
    const dlqBefore = await workersMetric('cartshard_events_dead_lettered_total');

    const ev = (type, data, extra) => cartEvent(type, user, data, extra);
    const without = (obj, ...keys) => {
      const o = structuredClone(obj);
      for (const k of keys) {
        if (k.startsWith('data.')) delete o.data[k.slice(5)];
        else delete o[k];
      }
      return o;
    };
    const add = () => ev('cart.item_added', { sku: 'A1', quantity: 1 });
    const cases = [
      ['bad JSON', `{"event_id":"${randomUUID()}","type":"cart.item_added",`, /JSON/i],
      ['not an object', JSON.stringify(['cart.item_added', randomUUID()]), /object/i],
      [
        'not UTF-8',
        Buffer.concat([Buffer.from(`{"event_id":"${randomUUID()}","type":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
        /JSON|UTF/i,
      ],
      ['nested 5000 deep', `{"event_id":"${randomUUID()}","x":${'['.repeat(5000)}${']'.repeat(5000)}}`, /JSON|depth/i],
      ['null data', ev('cart.item_added', null), /data/],
      ['unknown type', ev('cart.exploded', { sku: 'A1', quantity: 1 }), /type/],
      ['type not a string', ev(7), /type/],
      ['a type with CR LF in it', ev('x\r\nInjected: 1'), /type/],
      ['no event_id', without(add(), 'event_id'), /event_id/],
      ['event_id too long', add(), /event_id/, (e) => ({ ...e, event_id: 'e'.repeat(129) })],
      ['no user_id', without(add(), 'user_id'), /user_id/],
      ['invalid user_id', add(), /user_id/, (e) => ({ ...e, user_id: 'bad user' })],
      ['no occurred_at', without(add(), 'occurred_at'), /occurred_at/],
      ['invalid occurred_at', add(), /occurred_at/, (e) => ({ ...e, occurred_at: 'yesterday' })],
      ['no data', without(add(), 'data'), /data/],
      ['no data.sku', without(add(), 'data.sku'), /sku/],
      ['invalid data.sku', ev('cart.item_added', { sku: 'a b', quantity: 1 }), /sku/],
      ['no data.quantity', without(add(), 'data.quantity'), /quantity/],
      ['data.quantity not an integer', ev('cart.item_quantity_set', { sku: 'A1', quantity: '3' }), /quantity/],
      // Outside the domain of its type (CART_MAX_QUANTITY is 999 on the test stack).
      ['an add of 0', ev('cart.item_added', { sku: 'A1', quantity: 0 }), /^invalid event: data\.quantity: expected an integer from 1 to 999$/],
      ['an add of -1', ev('cart.item_added', { sku: 'A1', quantity: -1 }), /data\.quantity/],
      ['an add of 1000', ev('cart.item_added', { sku: 'A1', quantity: 1000 }), /data\.quantity/],
      ['an add of 2^31', ev('cart.item_added', { sku: 'A1', quantity: 2 ** 31 }), /data\.quantity/],
      ['a set to 1000', ev('cart.item_quantity_set', { sku: 'A1', quantity: 1000 }), /^invalid event: data\.quantity: expected an integer from 0 to 999$/],
      ['a set to -5', ev('cart.item_quantity_set', { sku: 'A1', quantity: -5 }), /data\.quantity/],
      ['negative expected_version', ev('cart.deleted', undefined, { expected_version: -1 }), /expected_version/],
      [
        'a user of another partition',
        cartEvent('cart.item_added', other, { sku: 'A1', quantity: 1 }),
        /partition/,
      ],
    ];
    const published = [];
    for (const [name, body, errRe, tweak] of cases) {
      const obj = tweak ? tweak(body) : body;
      const raw = Buffer.isBuffer(obj) ? obj : Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj));
      const text = raw.toString('utf8');
      const ack = await publishRaw(`carts.events.${p}`, raw, { msgId: `dlq-test-${randomUUID()}` });
      assert.equal(ack.duplicate, false, name);
      published.push({ name, text, errRe });
    }

    // A valid event after them, on the same partition, is still applied.
    const okEvent = cartEvent('cart.item_added', user, { sku: 'OK', quantity: 1 });
    const ok = await publishEvent(okEvent, { reply: true });
    assert.equal(ok.reply.status, 200, ok.reply.detail);
    assertCart(ok.reply.cart, { user, version: 1, items: [{ sku: 'OK', quantity: 1 }] });

    const texts = new Set(published.map((x) => x.text));
    const dead = await waitFor(
      'the malformed events on CARTS_DLQ',
      async () => {
        const msgs = await streamMessages('CARTS_DLQ', `carts.dlq.${p}`, (_, m) => texts.has(m.string()));
        return msgs.length >= published.length ? msgs : null;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    for (const x of published) {
      const found = dead.filter((m) => m.text === x.text);
      assert.equal(found.length, 1, `${x.name}: one DLQ entry with the original body`);
      assert.equal(found[0].subject, `carts.dlq.${p}`, x.name);
      const why = found[0].headers?.get('Cart-Error') ?? '';
      assert.ok(why.length > 0, `${x.name}: a Cart-Error header`);
      assert.match(why, x.errRe, `${x.name}: Cart-Error names the fault`);
      assert.doesNotMatch(why, /[\r\n]/, `${x.name}: Cart-Error is one header line`);
    }
    assert.equal(dead.length, published.length, 'nothing else of ours on the DLQ');

    // None of them was applied.
    const rows = await processedEvents(user);
    assert.deepEqual(rows.map((r) => r.event_id), [okEvent.event_id]);
    assert.equal(await shardCart(other), null, 'the other partition\'s user got nothing');
    assert.ok(
      (await workersMetric('cartshard_events_dead_lettered_total')) - dlqBefore >= published.length,
      'cartshard_events_dead_lettered_total counted them',
    );
    for (const u of CART_STORE_ADMIN_URLS) {
      assert.equal((await http('GET', `${u}/healthz`)).status, 200, `${u} still runs`);
    }
  });

  test('a valid event on another partition\'s subject is dead-lettered, not applied', BUS_OPTS, async () => {
    const user = uniqueUser('dlq-wrong');
    const wrong = (partitionOf(user) + 1) % CART_PARTITIONS;
    const ev = cartEvent('cart.item_added', user, { sku: 'A1', quantity: 1 });
    await publishEvent(ev, { subject: `carts.events.${wrong}` });
    const dead = await waitFor(
      'the event on carts.dlq.<subject partition>',
      async () => {
        const msgs = await streamMessages('CARTS_DLQ', `carts.dlq.${wrong}`, (b) => b?.event_id === ev.event_id);
        return msgs.length ? msgs : null;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    assert.equal(dead.length, 1);
    assert.deepEqual(dead[0].body, ev);
    assert.match(dead[0].headers.get('Cart-Error') ?? '', /partition/);
    assert.equal(await shardCart(user), null);
    assert.deepEqual(await processedEvents(user), []);
  });

  test('a change the shard refuses (a constraint error) is answered 400, dead-lettered, and the partition goes on', BUS_OPTS, async () => {
    // A trigger makes every shard refuse lines whose sku starts with REFUSE, as a constraint would.
    const allow = await refuseSkusOnShards();
    try {
      const user = uniqueUser('refused');
      assert.equal((await addItem(user, 'A1', 1)).status, 200);
      const redoneBefore = await workersMetric('cartshard_batches_redone_total');
      const key = { 'Idempotency-Key': `refuse-${user}` };
      const t0 = Date.now();
      const refused = await addItem(user, 'REFUSE1', 1, key);
      assert.equal(refused.status, 400, refused.text);
      assert.equal(refused.json.type, 'urn:cartshard:problem:invalid-request');
      assert.match(refused.json.detail, /refused/);
      assert.ok(Date.now() - t0 < 1500, 'answered by the worker, not by the sync timeout');
      // The batch's one-statement-per-table write failed, so it was redone event by event.
      assert.ok((await workersMetric('cartshard_batches_redone_total')) > redoneBefore, 'a batch was redone');
      // The partition carries on: the user's next change and another in the same batch apply.
      const next = await addItem(user, 'B2', 2);
      assert.equal(next.status, 200, next.text);
      assert.deepEqual(next.json.items, [{ sku: 'A1', quantity: 1 }, { sku: 'B2', quantity: 2 }]);
      assert.equal(next.json.version, 2);
      // A retry of the refused change gets the same answer, and applies nothing.
      const again = await addItem(user, 'REFUSE1', 1, key);
      assert.equal(again.status, 400, again.text);
      assert.equal(again.json.detail, refused.json.detail);
      const rows = await processedEvents(user);
      assert.equal(rows.length, 3);
      assert.equal(rows.filter((r) => r.http_status === 400).length, 1);
      // The event itself is on the DLQ with the shard's reason.
      const dead = await waitFor(
        'the refused event on CARTS_DLQ',
        async () => {
          const msgs = await streamMessages('CARTS_DLQ', `carts.dlq.${partitionOf(user)}`, (b) => b?.user_id === user);
          return msgs.length ? msgs : null;
        },
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      assert.equal(dead.length, 1);
      assert.equal(dead[0].body.data.sku, 'REFUSE1');
      assert.match(dead[0].headers.get('Cart-Error') ?? '', /rejected by the shard: .*test trigger refuses sku REFUSE1/);
    } finally {
      await allow();
    }
  });
});

describe('one batch, several carts of one user', BUS_OPTS, () => {
  // A worker writes a batch's net effect, one statement per table: a cart checked out and its
  // successor, a cart deleted after lines were added, lines set and removed again. To have the ten
  // events in one batch for certain, the runner of their partition is first held up: the test
  // locks the shard's carts table, and another user's event on the same partition makes that
  // runner wait for the lock. The ten are then published and delivered to the worker; once the
  // lock goes, the runner finishes what it was doing and takes all ten at once. The dedup rows one
  // transaction wrote share its transaction id (xmin): one xmin, one batch.
  test('the shard ends exactly as applying the events one by one would', { ...BUS_OPTS, timeout: 60_000 }, async () => {
    const user = uniqueUser('onebatch');
    const shard = shardOf(user);
    const partition = partitionOf(user);
    let blocker = uniqueUser('blocker');
    while (partitionOf(blocker) !== partition) blocker = uniqueUser('blocker');
    const events = [
      cartEvent('cart.item_added', user, { sku: 'A', quantity: 2 }),
      cartEvent('cart.item_quantity_set', user, { sku: 'A', quantity: 5 }),
      cartEvent('cart.item_added', user, { sku: 'B', quantity: 1 }),
      cartEvent('cart.item_removed', user, { sku: 'B' }),
      cartEvent('cart.checked_out', user),
      cartEvent('cart.item_added', user, { sku: 'C', quantity: 1 }),
      cartEvent('cart.deleted', user),
      cartEvent('cart.item_added', user, { sku: 'D', quantity: 3 }),
      cartEvent('cart.item_quantity_set', user, { sku: 'D', quantity: 0 }),
      cartEvent('cart.item_added', user, { sku: 'E', quantity: 2 }),
    ];
    const redoneBefore = await workersMetric('cartshard_batches_redone_total');
    const lock = await shardPools()[shard].connect();
    let held;
    let last;
    try {
      await lock.query('BEGIN');
      await lock.query('LOCK TABLE carts IN EXCLUSIVE MODE');
      held = publishEvent(cartEvent('cart.item_added', blocker, { sku: 'X', quantity: 1 }), { reply: true });
      const owner = await waitFor('the partition\'s runner to wait for the lock', async () => {
        const c = await partitionConsumer(partition, (ci) => ci.num_pending === 0 && ci.num_ack_pending >= 1);
        const app = c?.config.description?.match(/^cart-store \S+/)?.[0];
        if (!app) return null;
        const [row] = await queryShard(
          shard,
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
          [app],
        );
        return row.n > 0 ? app : null;
      });
      for (const ev of events.slice(0, -1)) await publishEvent(ev);
      last = publishEvent(events.at(-1), { reply: true });
      await waitFor('the ten events to reach the worker', () =>
        partitionConsumer(partition, (ci) => ci.num_pending === 0 && ci.num_ack_pending >= 11 && ci.config.description?.startsWith(owner)),
      );
      await sleep(300); // from its connection to the runner's queue
    } finally {
      await lock.query('ROLLBACK').catch(() => {});
      lock.release();
    }
    assert.equal((await held).reply.status, 200);
    const { reply } = await last;
    assert.equal(reply.status, 200, reply.detail);
    assertCart(reply.cart, { user, version: 10, items: [{ sku: 'E', quantity: 2 }] });
    // Had the shard refused the batch's statements (say, the new cart inserted while the
    // checked-out one still held the one-active-cart index), it would have been redone event by
    // event, with the same end state: the counter tells.
    assert.equal(await workersMetric('cartshard_batches_redone_total'), redoneBefore, 'no batch redone');
    const xids = await queryShard(shard, 'SELECT DISTINCT xmin::text AS x FROM processed_events WHERE user_id = $1', [user]);
    assert.equal(xids.length, 1, 'the ten events were written by one transaction');

    const carts = await queryShard(
      shard,
      `SELECT c.cart_id::text, c.status, c.version::int AS version,
              coalesce(string_agg(i.sku || '=' || i.quantity, ',' ORDER BY i.sku), '') AS lines
         FROM carts c LEFT JOIN cart_items i USING (cart_id)
        WHERE c.user_id = $1 GROUP BY c.cart_id ORDER BY c.version`,
      [user],
    );
    assert.deepEqual(
      carts.map(({ status, version, lines }) => ({ status, version, lines })),
      [
        { status: 'checked_out', version: 5, lines: 'A=5' },
        { status: 'deleted', version: 7, lines: '' },
        { status: 'active', version: 10, lines: 'E=2' },
      ],
    );
    assert.equal(carts[2].cart_id, reply.cart.cart_id);
    const rows = await processedEvents(user);
    assert.deepEqual(
      rows.map((r) => r.event_id).sort(),
      events.map((e) => e.event_id).sort(),
      'every event recorded once',
    );
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    assert.deepEqual(
      events.map((e) => [byId.get(e.event_id).http_status, Number(byId.get(e.event_id).cart_version)]),
      [[200, 1], [200, 2], [200, 3], [200, 4], [200, 5], [200, 6], [204, 7], [200, 8], [200, 9], [200, 10]],
    );
  });
});

/** The consumer of stream CARTS on carts.events.<partition> that `ok(info)` accepts, or null. */
async function partitionConsumer(partition, ok) {
  const jsm = await (await nats()).jetstreamManager();
  for await (const ci of jsm.consumers.list('CARTS')) {
    if (ci.config.filter_subject === `carts.events.${partition}` && ok(ci)) return ci;
  }
  return null;
}

describe('a partition whose consumer stops delivering (the watchdog)', BUS_OPTS, () => {
  // The test stack's workers run with CART_STORE_STALL_MS=1000 and look every 2 s. The fault:
  // the partition's consumer is deleted on the server while the test keeps sending its
  // subscription heartbeats that say all is well (the last delivered sequences), so neither the
  // connection nor nats.c's heartbeat check notices: only the watchdog's comparison of the
  // committed offset with the stream can. This is how a consumer that is stuck in the server
  // looks to a worker.
  test('the stall is logged, counted and recovered without a restart: the event is applied once', { timeout: 30_000 }, async () => {
    const user = uniqueUser('stall');
    const subject = `carts.events.${partitionOf(user)}`;
    const first = await publishEvent(cartEvent('cart.item_added', user, { sku: 'A', quantity: 1 }), { reply: true });
    assert.ok([200, 201].includes(first.reply.status), `${first.reply.status} ${first.reply.detail}`);

    const conn = await nats();
    const jsm = await conn.jetstreamManager();
    let consumer = null;
    await waitFor(`the worker's consumer of ${subject} to have delivered the first event`, async () => {
      const all = [];
      for await (const ci of jsm.consumers.list('CARTS')) all.push(ci);
      const mine = all.filter((c) => c.config.filter_subject === subject && (c.config.description ?? '').startsWith('cart-store'));
      assert.ok(mine.length <= 1, `one consumer of ${subject}: ${mine.map((c) => c.name).join(', ')}`);
      consumer = mine[0] ?? null;
      return consumer !== null && consumer.delivered.stream_seq >= first.ack.seq;
    });
    const stalls = await workersMetric('cartshard_partition_stalls_total');
    const resyncs = await workersMetric('cartshard_partition_resyncs_total');

    // Heartbeats in the consumer's name, every 500 ms, from before its deletion to the end.
    const hb = natsHeaders(100, 'Idle Heartbeat');
    hb.set('Nats-Last-Consumer', String(consumer.delivered.consumer_seq));
    hb.set('Nats-Last-Stream', String(consumer.delivered.stream_seq));
    const beat = () => conn.publish(consumer.config.deliver_subject, new Uint8Array(), { headers: hb });
    beat();
    const beats = setInterval(beat, 500);
    try {
      await jsm.consumers.delete('CARTS', consumer.name);
      const second = cartEvent('cart.item_added', user, { sku: 'B', quantity: 2 });
      const { ack } = await publishEvent(second);
      const began = Date.now();
      await waitFor(
        'the event behind the stalled consumer to be applied',
        async () => (await processedEvents(user)).some((r) => r.event_id === second.event_id),
        { timeoutMs: 12_000, intervalMs: 100 },
      );
      const tookMs = Date.now() - began;
      assert.equal(await workersMetric('cartshard_partition_stalls_total'), stalls + 1, 'one stall counted');
      assert.equal(await workersMetric('cartshard_partition_resyncs_total'), resyncs, 'found by the watchdog, not by a resync');
      // Bounded by two looks of the watchdog (2 s apart) and CART_STORE_STALL_MS, plus the restart.
      assert.ok(tookMs < 8000, `recovered in ${tookMs} ms`);
      const rows = await queryShard(shardOf(user), 'SELECT event_id, stream_seq::text AS seq FROM processed_events WHERE user_id = $1', [user]);
      assert.equal(rows.length, 2, 'each event applied once');
      assert.equal(rows.find((r) => r.event_id === second.event_id)?.seq, String(ack.seq), 'applied from its stream sequence');
    } finally {
      clearInterval(beats);
    }
    const cart = await shardCart(user);
    assert.equal(cart.version, 2);
    assert.deepEqual(
      cart.items.map(({ sku, quantity }) => ({ sku, quantity })),
      [
        { sku: 'A', quantity: 1 },
        { sku: 'B', quantity: 2 },
      ],
    );
  });
});

describe('changes stream', BUS_OPTS, () => {
  /** Waits for `n` changes of `user`, then a little longer to see that no more come. */
  async function changesOf(user, n) {
    await waitFor(`${n} changes of ${user}`, async () => (await userChanges(user)).length >= n, {
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    await sleep(300);
    return userChanges(user);
  }

  test('each applied change appears once, in order, with its version; checkout carries the items', BUS_OPTS, async () => {
    const user = uniqueUser('chg');
    const p = partitionOf(user);
    const created = await http('POST', '/v1/carts', { body: { user_id: user } });
    assert.equal(created.status, 201, created.text);
    const writes = [
      () => addItem(user, 'A1', 2),
      () => http('POST', '/v1/carts', { body: { user_id: user } }), // no change
      () => addItem(user, 'B7', 1),
      () => setItem(user, 'A1', 5),
      () => http('DELETE', `/v1/carts/${user}/items/NONE`), // no change
      () => http('DELETE', `/v1/carts/${user}/items/B7`),
      () => http('POST', `/v1/carts/${user}/checkout`),
    ];
    for (const w of writes) {
      const r = await w();
      assert.equal(r.status, 200, r.text);
    }
    const events = await userEvents(user);
    assert.equal(events.length, 8);
    const changing = events.filter((_, i) => i !== 2 && i !== 5).map((e) => e.body);

    const changes = await changesOf(user, 6);
    const expected = [
      ['cart.created', []],
      ['cart.item_added', [{ sku: 'A1', quantity: 2 }]],
      [
        'cart.item_added',
        [
          { sku: 'A1', quantity: 2 },
          { sku: 'B7', quantity: 1 },
        ],
      ],
      [
        'cart.item_quantity_set',
        [
          { sku: 'A1', quantity: 5 },
          { sku: 'B7', quantity: 1 },
        ],
      ],
      ['cart.item_removed', [{ sku: 'A1', quantity: 5 }]],
      ['cart.checked_out', [{ sku: 'A1', quantity: 5 }]],
    ];
    assert.deepEqual(
      changes.map((c) => c.body.version),
      [1, 2, 3, 4, 5, 6],
      'one change per applied event, in order',
    );
    changes.forEach((c, i) => {
      const [type, items] = expected[i];
      assert.equal(c.subject, `carts.changes.${p}`);
      assert.equal(c.body.event_id, changing[i].event_id, `change ${i + 1} is event ${changing[i].type}`);
      assert.equal(c.headers?.get('Nats-Msg-Id'), `chg-${c.body.event_id}`);
      assert.equal(c.body.type, type);
      assert.equal(c.body.user_id, user);
      assert.equal(c.body.cart_id, created.json.cart_id);
      assert.equal(c.body.partition, p);
      assert.equal(c.body.status, i === 5 ? 'checked_out' : 'active');
      assert.deepEqual(c.body.items, items);
      assert.equal(c.body.item_count, items.reduce((n, it) => n + it.quantity, 0));
      assert.match(c.body.applied_at, RFC3339_RE);
    });
  });

  test('a delete is relayed too, and the next cart continues the versions', BUS_OPTS, async () => {
    const user = uniqueUser('chg-del');
    const first = await addItem(user, 'A1', 1);
    assert.equal(first.status, 200, first.text);
    assert.equal((await http('DELETE', `/v1/carts/${user}`)).status, 204);
    const again = await addItem(user, 'B2', 1);
    assert.equal(again.status, 200, again.text);
    const changes = await changesOf(user, 3);
    assert.deepEqual(
      changes.map((c) => [c.body.type, c.body.version, c.body.cart_id]),
      [
        ['cart.item_added', 1, first.json.cart_id],
        ['cart.deleted', 2, first.json.cart_id],
        ['cart.item_added', again.json.version, again.json.cart_id],
      ],
    );
    assert.equal(again.json.version, 3);
    assert.notEqual(changes[1].body.status, 'active', 'the deleted cart is not active');
  });
});
