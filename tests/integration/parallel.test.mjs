// Many writes at once: parallel adds for one user are each applied exactly once and in some
// order (no lost or doubled update), and many users' rows land on the shard and partition the
// partition function names. See docs/reference/partitioning.md and docs/reference/guarantees.md.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  CART_PARTITIONS,
  SHARDS,
  addItem,
  assertCart,
  closeAll,
  http,
  partitionOf,
  processedEvents,
  queryAllShards,
  shardCart,
  shardOf,
  shardOfPartition,
  uniqueUser,
} from './lib.mjs';

after(closeAll);

const LOAD_OPTS = { timeout: 30_000 };

/** Runs `job(item)` for every item with at most `limit` running at once; resolves to the results. */
async function pool(items, limit, job) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await job(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

describe('parallel writes', LOAD_OPTS, () => {
  test('50 parallel "add one" for one user: all 200, quantity and version exactly 50', LOAD_OPTS, async () => {
    const user = uniqueUser('par');
    const answers = await Promise.all(Array.from({ length: 50 }, () => addItem(user, 'A1', 1)));
    for (const r of answers) assert.equal(r.status, 200, r.text);

    // Each answer is the cart right after its own event: 50 distinct versions, 1..50.
    const versions = answers.map((r) => r.json.version).sort((a, b) => a - b);
    assert.deepEqual(versions, Array.from({ length: 50 }, (_, i) => i + 1));
    for (const r of answers) {
      assert.deepEqual(r.json.items, [{ sku: 'A1', quantity: r.json.version }], 'quantity == version');
      assert.equal(r.headers.get('etag'), `"${r.json.version}"`);
    }
    const ids = new Set(answers.map((r) => r.json.cart_id));
    assert.equal(ids.size, 1, 'one cart');

    const get = await http('GET', `/v1/carts/${user}`);
    assert.equal(get.status, 200, get.text);
    assertCart(get.json, { user, version: 50, items: [{ sku: 'A1', quantity: 50 }] });
    assert.deepEqual(await shardCart(user), {
      cart_id: [...ids][0],
      version: 50,
      items: [{ sku: 'A1', quantity: 50 }],
    });
    const done = await processedEvents(user);
    assert.equal(done.length, 50, 'one processed_events row per add');
    assert.deepEqual(
      done.map((e) => Number(e.cart_version)).sort((a, b) => a - b),
      versions,
      'each event recorded the version it made',
    );
    for (const e of done) assert.equal(e.http_status, 200);
  });

  test('20 users x 10 parallel adds: each user ends at quantity 10, version 10', LOAD_OPTS, async () => {
    const users = Array.from({ length: 20 }, () => uniqueUser('par20'));
    const jobs = users.flatMap((user) => Array.from({ length: 10 }, (_, i) => ({ user, sku: i % 2 ? 'B2' : 'A1' })));
    const answers = await Promise.all(jobs.map((j) => addItem(j.user, j.sku, 1)));
    answers.forEach((r, i) => assert.equal(r.status, 200, `${jobs[i].user}: ${r.text}`));

    for (const user of users) {
      const mine = answers.filter((_, i) => jobs[i].user === user).map((r) => r.json.version);
      assert.deepEqual(
        mine.sort((a, b) => a - b),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        `${user}: distinct versions`,
      );
      const cart = await shardCart(user);
      assert.ok(cart, `${user} has a cart`);
      assert.equal(cart.version, 10, `${user}: version`);
      assert.deepEqual(cart.items, [
        { sku: 'A1', quantity: 5 },
        { sku: 'B2', quantity: 5 },
      ]);
    }
  });
});

describe('placement', LOAD_OPTS, () => {
  test("200 users' rows live only on the shard of their partition", LOAD_OPTS, async () => {
    const users = Array.from({ length: 200 }, () => uniqueUser('place'));
    await pool(users, 25, async (user) => {
      const created = await http('POST', '/v1/carts', { body: { user_id: user } });
      assert.equal(created.status, 201, `${user}: ${created.text}`);
      const added = await addItem(user, 'P1', 1);
      assert.equal(added.status, 200, `${user}: ${added.text}`);
    });

    const [carts, items, events] = await Promise.all([
      queryAllShards('SELECT user_id, partition FROM carts WHERE user_id = ANY($1)', [users]),
      queryAllShards(
        `SELECT c.user_id, i.sku, i.quantity FROM cart_items i JOIN carts c USING (cart_id)
          WHERE c.user_id = ANY($1)`,
        [users],
      ),
      queryAllShards('SELECT user_id, partition FROM processed_events WHERE user_id = ANY($1)', [users]),
    ]);
    const perShard = new Array(SHARDS).fill(0);
    for (const user of users) {
      const home = shardOf(user);
      const p = partitionOf(user);
      perShard[home] += 1;
      for (let s = 0; s < SHARDS; s++) {
        const c = carts[s].filter((r) => r.user_id === user);
        const i = items[s].filter((r) => r.user_id === user);
        const e = events[s].filter((r) => r.user_id === user);
        if (s === home) {
          assert.deepEqual(c, [{ user_id: user, partition: p }], `${user}: one carts row, partition ${p}`);
          assert.deepEqual(i, [{ user_id: user, sku: 'P1', quantity: 1 }], `${user}: one cart_items row`);
          assert.deepEqual(e, [{ user_id: user, partition: p }, { user_id: user, partition: p }], `${user}: two events`);
        } else {
          assert.equal(c.length + i.length + e.length, 0, `${user} (partition ${p}, shard ${home}) has rows on shard ${s}`);
        }
      }
    }
    for (let s = 0; s < SHARDS; s++) assert.ok(perShard[s] > 0, `some users live on shard ${s}`);

    // A shard keeps the stream offsets of its own partitions only.
    const offsets = await queryAllShards('SELECT partition FROM partition_offsets');
    offsets.forEach((rows, s) => {
      for (const r of rows) {
        assert.ok(r.partition >= 0 && r.partition < CART_PARTITIONS, `partition ${r.partition}`);
        assert.equal(shardOfPartition(r.partition), s, `partition ${r.partition}'s offset is on shard ${s}`);
      }
    });
  });
});
