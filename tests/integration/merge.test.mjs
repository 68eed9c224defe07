// Merging a guest's cart into a user's (docs/reference/api.md, Merging a guest cart;
// docs/internals/merge.md): each strategy across shards, the refusals (400, 403, 404, 422 with the
// guest cart restored), a second merge of the same guest, a write racing the merge, the guest's
// end state on its shard and the change notices.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  SHARDS,
  TEST_OPTS,
  addItem,
  afterTheDuplicateWindow,
  assertCartResponse,
  assertProblem,
  closeAll,
  http,
  queryShard,
  shardCart,
  shardOf,
  signJwt,
  startGateway,
  uniqueUser,
  uniqueUserOnShard,
  userChanges,
  waitFor,
} from './lib.mjs';

after(closeAll);

const OPTS = { timeout: 60_000 };

/** A guest and a user on different shards (when there are several). */
function pair(prefix) {
  const guest = uniqueUserOnShard(0, `${prefix}-g`);
  const user = uniqueUserOnShard(SHARDS > 1 ? 1 : 0, `${prefix}-u`);
  return { guest, user };
}

/** Fills `user`'s cart with `lines` ({sku: quantity}), one add each. */
async function fill(user, lines) {
  for (const [sku, quantity] of Object.entries(lines)) {
    assert.equal((await addItem(user, sku, quantity)).status, 200, `add ${sku} to ${user}`);
  }
}

function merge(user, body, { url = '', headers = {} } = {}) {
  return http('POST', `${url}/v1/carts/${user}/merge`, { body, headers });
}

/** The lines of a cart body as {sku: quantity}. */
const linesOf = (cart) => Object.fromEntries(cart.items.map((i) => [i.sku, i.quantity]));

/** The guest's latest cart row on its shard: { status, merged_into, items }. */
async function guestRow(guest) {
  const rows = await queryShard(
    shardOf(guest),
    `SELECT c.status, c.merged_into, i.sku, i.quantity FROM carts c LEFT JOIN cart_items i USING (cart_id)
      WHERE c.cart_id = (SELECT cart_id FROM carts WHERE user_id = $1 ORDER BY version DESC LIMIT 1)
      ORDER BY i.sku COLLATE "C"`,
    [guest],
  );
  return {
    status: rows[0]?.status,
    merged_into: rows[0]?.merged_into ?? null,
    items: Object.fromEntries(rows.filter((r) => r.sku !== null).map((r) => [r.sku, r.quantity])),
  };
}

/** Waits until the guest's cart is settled as merged into `user`, and checks its notices. */
async function assertMerged(guest, user, lines) {
  await waitFor(`${guest}'s cart merged into ${user}`, async () => (await guestRow(guest)).status === 'merged');
  assert.deepEqual(await guestRow(guest), { status: 'merged', merged_into: user, items: lines });
  assertProblem(await http('GET', `/v1/carts/${guest}`), 404);
  await waitFor(`${guest}'s cart.merged notice`, async () => {
    const notices = (await userChanges(guest)).map((m) => m.body);
    const merged = notices.find((n) => n.type === 'cart.merged');
    if (!merged) return false;
    assert.equal(merged.status, 'merged');
    assert.equal(merged.merged_into, user);
    assert.ok(notices.some((n) => n.type === 'cart.merge_requested' && n.status === 'merging'));
    return true;
  });
}

describe('POST /v1/carts/{user_id}/merge', OPTS, () => {
  const cases = [
    ['sum', { A: 1, B: 8, C: 2, D: 4 }],
    ['max', { A: 1, B: 5, C: 2, D: 4 }],
    ['replace', { B: 3, D: 4 }],
    ['keep', { A: 1, B: 5, C: 2, D: 4 }],
  ];
  for (const [strategy, want] of cases) {
    test(`${strategy}: the user's cart after the merge, the guest's merged`, OPTS, async () => {
      const { guest, user } = pair(strategy);
      await fill(user, { A: 1, B: 5, C: 2 });
      await fill(guest, { B: 3, D: 4 });
      const res = await merge(user, { from: guest, strategy });
      const cart = assertCartResponse(res, { user, items: res.json?.items ?? [] });
      assert.deepEqual(linesOf(cart), want);
      assert.equal(res.headers.get('etag'), `"${cart.version}"`);
      assert.deepEqual(linesOf(await shardCart(user)), want);
      await assertMerged(guest, user, { B: 3, D: 4 });
      await waitFor(`${user}'s cart.lines_merged notice`, async () =>
        (await userChanges(user)).some((m) => m.body.type === 'cart.lines_merged' && m.body.version === cart.version));
    });
  }

  test('the default strategy is sum; a user without a cart gets a new one', OPTS, async () => {
    const { guest, user } = pair('default');
    await fill(guest, { X: 2 });
    const res = await merge(user, { from: guest });
    assert.deepEqual(linesOf(assertCartResponse(res, { user, items: [{ sku: 'X', quantity: 2 }] })), { X: 2 });
    await assertMerged(guest, user, { X: 2 });
  });

  test('404 for a guest without an active cart, and for a second merge of the same guest', OPTS, async () => {
    const { guest, user } = pair('again');
    assertProblem(await merge(user, { from: guest }), 404);
    await fill(guest, { A: 1 });
    assert.equal((await merge(user, { from: guest })).status, 200);
    assertProblem(await merge(user, { from: guest }), 404);
    assertProblem(await merge(uniqueUser('other'), { from: guest }), 404);
    assert.deepEqual(linesOf(await shardCart(user)), { A: 1 }, 'the lines arrived once');
  });

  test('400: into itself, a bad id, a bad strategy, no body', OPTS, async () => {
    const user = uniqueUser('bad');
    await fill(user, { A: 1 });
    for (const body of [{ from: user }, { from: 'a b' }, { from: uniqueUser('g'), strategy: 'avg' }, {}]) {
      assertProblem(await merge(user, body), 400);
    }
    assertProblem(await http('GET', `/v1/carts/${user}/merge`), 405);
  });

  test('422 over the line limit: both carts keep their lines, the guest cart active again', OPTS, async () => {
    const { guest, user } = pair('limit');
    const lines = {};
    for (let i = 0; i < 99; i += 1) lines[`L${String(i).padStart(3, '0')}`] = 1;
    await fill(user, lines);
    await fill(guest, { G1: 1, G2: 2 });
    const before = await shardCart(user);
    const res = await merge(user, { from: guest, strategy: 'sum' });
    assertProblem(res, 422);
    assert.match(res.json.detail, /101 lines, over the limit 100/);
    assert.deepEqual(await shardCart(user), before, "the user's cart did not change");
    const guestCart = assertCartResponse(await http('GET', `/v1/carts/${guest}`), {
      user: guest,
      items: [{ sku: 'G1', quantity: 1 }, { sku: 'G2', quantity: 2 }],
    });
    assert.equal(guestCart.status, 'active');
    await waitFor(`${guest}'s cart.merge_refused notice`, async () =>
      (await userChanges(guest)).some((m) => m.body.type === 'cart.merge_refused' && m.body.status === 'active'));
    // The guest can shop on, and merge with another strategy.
    assert.equal((await addItem(guest, 'G3', 1)).status, 200);
    const replaced = await merge(user, { from: guest, strategy: 'replace' });
    assert.deepEqual(linesOf(assertCartResponse(replaced, { user, items: replaced.json?.items ?? [] })), {
      G1: 1,
      G2: 2,
      G3: 1,
    });
  });

  test('422 over the quantity limit under sum', OPTS, async () => {
    const { guest, user } = pair('qty');
    await fill(user, { A: 900 });
    await fill(guest, { A: 100 });
    assertProblem(await merge(user, { from: guest }), 422);
    assert.deepEqual(linesOf(await shardCart(user)), { A: 900 });
    assert.deepEqual(linesOf(await shardCart(guest)), { A: 100 });
  });

  test('a write to the guest racing the merge lands once: in the merged lines, or refused, or in a new cart', OPTS, async () => {
    for (let round = 0; round < 5; round += 1) {
      const { guest, user } = pair(`race${round}`);
      await fill(guest, { A: 1 });
      const [m, w] = await Promise.all([merge(user, { from: guest }), addItem(guest, 'R', 1)]);
      assert.equal(m.status, 200, JSON.stringify(m.json));
      const merged = linesOf(m.json);
      if (w.status === 200 && w.json.cart_id !== (await shardCart(guest))?.cart_id) {
        assert.deepEqual(merged, { A: 1, R: 1 }, 'the add came first and travelled with the guest');
      } else if (w.status === 409) {
        assert.deepEqual(merged, { A: 1 });
      } else {
        assert.equal(w.status, 200);
        assert.ok(merged.R === 1 || (await shardCart(guest))?.items.some((i) => i.sku === 'R'), 'R is somewhere once');
      }
    }
  });
});

/** Adds a line with its snapshot members (`snap`: name, unit_price, currency, attributes). */
async function addPriced(user, sku, quantity, snap) {
  const res = await http('POST', `/v1/carts/${user}/items`, { body: { sku, quantity, ...snap } });
  assert.equal(res.status, 200, `add ${sku} to ${user}: ${res.text}`);
  return res.json;
}

/** The snapshot members of a cart body's line of `sku`, with its quantity and line_total. */
function lineOf(cart, sku) {
  const { name, unit_price, currency, attributes, quantity, line_total } = cart.items.find((i) => i.sku === sku);
  return { name, unit_price, currency, attributes, quantity, line_total };
}

/** The snapshot columns of `user`'s active lines on their shard, by sku. */
async function shardSnapshots(user) {
  const rows = await queryShard(
    shardOf(user),
    `SELECT i.sku, i.name, i.unit_price::bigint AS unit_price, i.currency, i.attributes::text AS attributes
       FROM carts c JOIN cart_items i USING (cart_id) WHERE c.user_id = $1 AND c.status = 'active'`,
    [user],
  );
  return Object.fromEntries(
    rows.map((r) => [
      r.sku,
      {
        name: r.name ?? undefined,
        unit_price: r.unit_price === null ? undefined : Number(r.unit_price),
        currency: r.currency ?? undefined,
        attributes: r.attributes === null ? undefined : JSON.parse(r.attributes),
      },
    ]),
  );
}

describe('a merge of priced lines (line snapshots)', OPTS, () => {
  const MUG = { name: 'Mug', unit_price: 1200, currency: 'EUR', attributes: { color: 'red' } };
  const TEA = { name: 'Tea', unit_price: 450, currency: 'EUR', attributes: { size: 'L' } };

  test('a priced guest into a priced user: the guest lines keep their snapshots, the totals follow', OPTS, async () => {
    const { guest, user } = pair('priced');
    await addPriced(user, 'MUG', 2, MUG);
    await addPriced(guest, 'TEA', 3, TEA);
    await addPriced(guest, 'PLAIN', 1, {});
    const res = await merge(user, { from: guest, strategy: 'sum' });
    const cart = assertCartResponse(res, { user, items: res.json?.items ?? [] });
    assert.deepEqual(lineOf(cart, 'TEA'), { ...TEA, quantity: 3, line_total: 1350 });
    assert.deepEqual(lineOf(cart, 'MUG'), { ...MUG, quantity: 2, line_total: 2400 });
    assert.equal(lineOf(cart, 'PLAIN').unit_price, undefined);
    assert.equal(cart.currency, 'EUR');
    assert.equal(cart.subtotal, 3750);
    const rows = await shardSnapshots(user);
    assert.deepEqual(rows.TEA, TEA, "the user's shard holds the guest's snapshot");
    assert.deepEqual(rows.MUG, MUG);
    assert.deepEqual((await http('GET', `/v1/carts/${user}`)).json.subtotal, 3750);
    await assertMerged(guest, user, { TEA: 3, PLAIN: 1 });
  });

  for (const [strategy, quantity] of [
    ['sum', 5],
    ['max', 3],
  ]) {
    test(`${strategy}: a sku in both carts takes the snapshot members the guest's line has`, OPTS, async () => {
      const { guest, user } = pair(`snap-${strategy}`);
      await addPriced(user, 'MUG', 2, MUG);
      // The guest saw a newer price and another colour, and no name.
      await addPriced(guest, 'MUG', 3, { unit_price: 1000, currency: 'EUR', attributes: { color: 'blue' } });
      const res = await merge(user, { from: guest, strategy });
      const cart = assertCartResponse(res, { user, items: res.json?.items ?? [] });
      const want = { name: 'Mug', unit_price: 1000, currency: 'EUR', attributes: { color: 'blue' } };
      assert.deepEqual(lineOf(cart, 'MUG'), { ...want, quantity, line_total: 1000 * quantity });
      assert.equal(cart.subtotal, 1000 * quantity);
      assert.deepEqual((await shardSnapshots(user)).MUG, want);
    });
  }

  test("keep: the user's line stays as it was, snapshot and all", OPTS, async () => {
    const { guest, user } = pair('snap-keep');
    await addPriced(user, 'MUG', 2, MUG);
    await addPriced(guest, 'MUG', 3, { name: 'Cup', unit_price: 1000, currency: 'EUR' });
    await addPriced(guest, 'TEA', 1, TEA);
    const res = await merge(user, { from: guest, strategy: 'keep' });
    const cart = assertCartResponse(res, { user, items: res.json?.items ?? [] });
    assert.deepEqual(lineOf(cart, 'MUG'), { ...MUG, quantity: 2, line_total: 2400 });
    assert.deepEqual(lineOf(cart, 'TEA'), { ...TEA, quantity: 1, line_total: 450 });
    assert.deepEqual((await shardSnapshots(user)).MUG, MUG);
  });

  test('422 currency-mismatch: both carts keep their lines and snapshots, the guest cart active again', OPTS, async () => {
    const { guest, user } = pair('snap-cur');
    await addPriced(user, 'MUG', 2, MUG);
    await addPriced(guest, 'TEA', 1, { ...TEA, currency: 'USD' });
    const userBefore = (await http('GET', `/v1/carts/${user}`)).json;
    const guestBefore = (await http('GET', `/v1/carts/${guest}`)).json;
    const res = await merge(user, { from: guest, strategy: 'sum' });
    const p = assertProblem(res, 422);
    assert.equal(p.type, 'urn:cartshard:problem:currency-mismatch');
    assert.match(p.detail, /^currency mismatch: /);
    const userAfter = (await http('GET', `/v1/carts/${user}`)).json;
    assert.deepEqual(userAfter.items, userBefore.items, "the user's cart did not change");
    assert.equal(userAfter.version, userBefore.version);
    const guestAfter = assertCartResponse(await http('GET', `/v1/carts/${guest}`), {
      user: guest,
      items: guestBefore.items,
    });
    assert.equal(guestAfter.status, 'active');
    assert.deepEqual(lineOf(guestAfter, 'TEA'), { ...TEA, currency: 'USD', quantity: 1, line_total: 450 });
    assert.deepEqual((await shardSnapshots(guest)).TEA, { ...TEA, currency: 'USD' });
    await waitFor(`${guest}'s cart.merge_refused notice`, async () =>
      (await userChanges(guest)).some((m) => m.body.type === 'cart.merge_refused' && m.body.status === 'active'));
    // replace drops the user's EUR line: USD alone is fine.
    const replaced = await merge(user, { from: guest, strategy: 'replace' });
    const cart = assertCartResponse(replaced, { user, items: replaced.json?.items ?? [] });
    assert.equal(cart.currency, 'USD');
  });

  test('422 limit-exceeded over the money limit: both carts as they were', OPTS, async () => {
    const { guest, user } = pair('snap-money');
    const big = { unit_price: 100_000_000_000, currency: 'EUR' };
    // Each line 999 x 10^11; ten of them fit under 10^15, eleven do not.
    const mine = {};
    const theirs = {};
    for (let i = 0; i < 5; i += 1) mine[`U${i}`] = 999;
    for (let i = 0; i < 6; i += 1) theirs[`G${i}`] = 999;
    for (const sku of Object.keys(mine)) await addPriced(user, sku, 999, big);
    for (const sku of Object.keys(theirs)) await addPriced(guest, sku, 999, big);
    const res = await merge(user, { from: guest, strategy: 'sum' });
    const p = assertProblem(res, 422);
    assert.equal(p.type, 'urn:cartshard:problem:limit-exceeded');
    assert.match(p.detail, /subtotal over the limit/);
    assert.deepEqual(linesOf(await shardCart(user)), mine);
    const guestCart = (await http('GET', `/v1/carts/${guest}`)).json;
    assert.deepEqual(linesOf(guestCart), theirs);
    assert.equal(guestCart.subtotal, 6 * 999 * 100_000_000_000);
  });
});

describe('a merge with an Idempotency-Key', OPTS, () => {
  test('a repeat is the first merge again, whatever its from_token; another merge under the key is 422', OPTS, async () => {
    const { guest, user } = pair('idem');
    await fill(guest, { A: 1 });
    const key = `merge-${guest}`;
    const headers = { 'Idempotency-Key': key };
    const first = await merge(user, { from: guest, strategy: 'sum', from_token: 't1' }, { headers });
    assert.deepEqual(linesOf(assertCartResponse(first, { user, items: [{ sku: 'A', quantity: 1 }] })), { A: 1 });
    assert.equal(first.headers.get('idempotent-replayed'), null);
    // The same merge with another (unchecked here) from_token and its members reordered.
    const again = await merge(user, { from_token: 't2', strategy: 'sum', from: guest }, { headers });
    assert.equal(again.status, 202, again.text);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    for (const other of [
      { from: guest, strategy: 'max' },
      { from: guest },
    ]) {
      const res = await merge(user, other, { headers });
      assertProblem(res, 422);
      assert.equal(res.json.type, 'urn:cartshard:problem:idempotency-key-reused');
    }
    const cart = await http('GET', `/v1/carts/${user}`);
    assert.deepEqual(linesOf(cart.json), { A: 1 }, 'applied once');
  });

  test("the merge's key reused for a write on the user's own cart is 422, and the other way round", OPTS, async () => {
    // The merge is recorded on the guest's shard, under the guest: the gateway looks there too.
    const { guest, user } = pair('idem-other');
    await fill(guest, { A: 1 });
    await fill(user, { U: 1 });
    const key = `merge-then-add-${user}`;
    const merged = await merge(user, { from: guest }, { headers: { 'Idempotency-Key': key } });
    const cart = assertCartResponse(merged, { user, items: merged.json?.items ?? [] });
    assert.deepEqual(linesOf(cart), { A: 1, U: 1 });
    for (const prefer of [{}, { Prefer: 'respond-async' }]) {
      const res = await addItem(user, 'B', 1, { 'Idempotency-Key': key, ...prefer });
      assertProblem(res, 422);
      assert.equal(res.json.type, 'urn:cartshard:problem:idempotency-key-reused');
    }
    const after = (await http('GET', `/v1/carts/${user}`)).json;
    assert.deepEqual(linesOf(after), { A: 1, U: 1 }, 'nothing applied');
    assert.equal(after.version, cart.version);
    // The merge itself under its key is still the merge.
    const again = await merge(user, { from: guest }, { headers: { 'Idempotency-Key': key } });
    assert.equal(again.status, 202, again.text);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');

    // A write's key reused for a merge: 422, and the guest cart stays active with its lines.
    const { guest: guest2, user: user2 } = pair('idem-other2');
    await fill(guest2, { G: 2 });
    const key2 = `add-then-merge-${user2}`;
    assert.equal((await addItem(user2, 'W', 1, { 'Idempotency-Key': key2 })).status, 200);
    const res = await merge(user2, { from: guest2 }, { headers: { 'Idempotency-Key': key2 } });
    assertProblem(res, 422);
    assert.equal(res.json.type, 'urn:cartshard:problem:idempotency-key-reused');
    assert.deepEqual(linesOf(assertCartResponse(await http('GET', `/v1/carts/${guest2}`), {
      user: guest2,
      items: [{ sku: 'G', quantity: 2 }],
    })), { G: 2 });
    assert.deepEqual(linesOf(await shardCart(user2)), { W: 1 });
  });

  test("past JetStream's duplicate window, a merge's key and a write's key are still one key", OPTS, async () => {
    // The workers judge these, not the gateway: the merge's key is recorded on the user's shard
    // too, and a merge meets there any write of the user under its key (docs/internals/merge.md).
    const reused = (res, what) => {
      assertProblem(res, 422);
      assert.equal(res.json.type, 'urn:cartshard:problem:idempotency-key-reused', what);
    };
    await afterTheDuplicateWindow(async (forgotten) => {
      // 1. A merge that joined the lines, then an add of the user under its key.
      const a = pair('late-merge-add');
      await fill(a.guest, { A: 1 });
      await fill(a.user, { U: 1 });
      const keyA = `late-merge-add-${a.user}`;
      const merged = await merge(a.user, { from: a.guest }, { headers: { 'Idempotency-Key': keyA } });
      const cart = assertCartResponse(merged, { user: a.user, items: merged.json?.items ?? [] });
      const [request] = await queryShard(
        shardOf(a.guest),
        'SELECT event_id, request_fingerprint FROM processed_events WHERE user_id = $1 AND http_status = 202',
        [a.guest],
      );
      const rows = await queryShard(
        shardOf(a.user),
        'SELECT user_id, http_status, request_fingerprint FROM processed_events WHERE event_id = $1',
        [request.event_id],
      );
      assert.deepEqual(
        rows,
        [{ user_id: a.user, http_status: 200, request_fingerprint: request.request_fingerprint }],
        "the merge's key recorded on the user's shard, under the user",
      );
      await forgotten();
      reused(await addItem(a.user, 'B', 1, { 'Idempotency-Key': keyA }), 'an add under a merged key');
      const after1 = (await http('GET', `/v1/carts/${a.user}`)).json;
      assert.deepEqual(linesOf(after1), { A: 1, U: 1 }, 'nothing applied');
      assert.equal(after1.version, cart.version);

      // 2. A merge the guest's side refused (no guest cart: 404), then an add under its key.
      const b = pair('late-refused-add');
      await fill(b.user, { U: 1 });
      const keyB = `late-refused-add-${b.user}`;
      assertProblem(await merge(b.user, { from: b.guest }, { headers: { 'Idempotency-Key': keyB } }), 404);
      await forgotten();
      reused(await addItem(b.user, 'B', 1, { 'Idempotency-Key': keyB }), 'an add under a refused merge key');
      assert.deepEqual(linesOf(await shardCart(b.user)), { U: 1 });
      // The refused merge again under its key: the same 404.
      assertProblem(await merge(b.user, { from: b.guest }, { headers: { 'Idempotency-Key': keyB } }), 404);

      // 3. An add of the user, then a merge under its key: 422, the guest cart active with its lines.
      const c = pair('late-add-merge');
      await fill(c.guest, { G: 2 });
      const keyC = `late-add-merge-${c.user}`;
      assert.equal((await addItem(c.user, 'W', 1, { 'Idempotency-Key': keyC })).status, 200);
      await forgotten();
      reused(await merge(c.user, { from: c.guest }, { headers: { 'Idempotency-Key': keyC } }), 'a merge under an add key');
      assert.deepEqual(linesOf(assertCartResponse(await http('GET', `/v1/carts/${c.guest}`), {
        user: c.guest,
        items: [{ sku: 'G', quantity: 2 }],
      })), { G: 2 });
      assert.deepEqual(linesOf(await shardCart(c.user)), { W: 1 });
      // The merge again at once (the gateway reads its outcome while JetStream still knows the id)
      // and past the window (the guest's worker judges it): 422 both times, like the first answer.
      reused(await merge(c.user, { from: c.guest }, { headers: { 'Idempotency-Key': keyC } }), 'the merge again at once');
      await forgotten();
      reused(await merge(c.user, { from: c.guest }, { headers: { 'Idempotency-Key': keyC } }), 'the merge again later');
      assert.deepEqual(linesOf(await shardCart(c.guest)), { G: 2 });
      // The add again under its key is still the add.
      const again = await addItem(c.user, 'W', 1, { 'Idempotency-Key': keyC });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');

      // 4. The same with no guest cart: 422 (the key's reuse), not 404.
      const d = pair('late-add-merge-none');
      const keyD = `late-add-merge-none-${d.user}`;
      assert.equal((await addItem(d.user, 'W', 1, { 'Idempotency-Key': keyD })).status, 200);
      await forgotten();
      reused(await merge(d.user, { from: d.guest }, { headers: { 'Idempotency-Key': keyD } }), 'no guest cart');
      await forgotten();
      reused(await merge(d.user, { from: d.guest }, { headers: { 'Idempotency-Key': keyD } }), 'the same merge again');
      assert.deepEqual(linesOf(await shardCart(d.user)), { W: 1 });
    });
  });

  test('OPTIONS on the merge path answers POST, OPTIONS', OPTS, async () => {
    const res = await http('OPTIONS', `/v1/carts/${uniqueUser('opt')}/merge`);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('allow'), 'POST, OPTIONS');
  });
});

describe('merge with auth on', OPTS, () => {
  const SECRET = 'merge-test-secret-of-at-least-32-bytes!';
  const token = (sub) => signJwt(SECRET, { sub, exp: Math.floor(Date.now() / 1000) + 300 });
  const bearer = (sub) => ({ Authorization: `Bearer ${token(sub)}` });

  test("403 without the guest's token, or with another's; 200 with it", OPTS, async () => {
    const gw = await startGateway({ AUTH_JWT_SECRET: SECRET, RATE_LIMIT_RPS: '0' });
    const { guest, user } = pair('auth');
    const add = await http('POST', `${gw.url}/v1/carts/${guest}/items`, {
      body: { sku: 'A', quantity: 1 },
      headers: bearer(guest),
    });
    assert.equal(add.status, 200);
    const opts = { url: gw.url, headers: bearer(user) };
    assertProblem(await merge(user, { from: guest }, opts), 403);
    assertProblem(await merge(user, { from: guest, from_token: token(user) }, opts), 403);
    assertProblem(await merge(user, { from: guest, from_token: 'x.y.z' }, opts), 403);
    assertProblem(await merge(user, { from: guest, from_token: token(guest) }, { url: gw.url, headers: bearer(guest) }), 403);
    const res = await merge(user, { from: guest, from_token: token(guest) }, opts);
    assert.deepEqual(linesOf(assertCartResponse(res, { user, items: [{ sku: 'A', quantity: 1 }] })), { A: 1 });
  });
});
