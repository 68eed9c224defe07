// The statistics under faults (docs/internals/stats.md, Exactly once): change notices published
// straight to CARTS_CHANGES (as a worker's outbox would) while cart-stats is killed with SIGKILL,
// while Redis loses everything, after FLUSHALL and `cart-stats rebuild`; notices sent again under
// another Nats-Msg-Id (past JetStream's duplicate window); a malformed notice. Every figure must
// come out exactly as if nothing had happened.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  CART_PARTITIONS,
  NATS_URL,
  REDIS_URL,
  SHARD_DSNS,
  STACK_CONTROL,
  STACK_DIR,
  STATS_URL,
  checkedStackPid,
  closeAll,
  freePort,
  http,
  publishRaw,
  redis,
  sleep,
  stackPid,
  stackUp,
  startProcess,
  stopProcess,
  waitFor,
} from './lib.mjs';
import { StatsModel, figuresReach, quietFigures, stats, statsMetric, topSkus } from './stats-lib.mjs';

after(closeAll);

const OPTS = { timeout: 180_000, skip: STACK_CONTROL ? false : 'needs the stack (scripts/dev test)' };
const STATS_BIN = process.env.CARTSHARD_STATS_BIN ?? '';
const tag = randomBytes(4).toString('hex');

/** A change notice as a worker writes it (docs/reference/events.md, Change notices). */
function notice(i, { type = 'cart.item_added', created = false, quantity = 1, sku = `sf-${tag}-S${i % 7}` } = {}) {
  return {
    event_id: `sf-${tag}-${i}`,
    type,
    user_id: `sf-${tag}-u${i % 40}`,
    cart_id: `sf-${tag}-c${i % 40}`,
    version: i + 1,
    status: 'active',
    partition: i % CART_PARTITIONS,
    items: [],
    item_count: 0,
    currency: null,
    subtotal: 0,
    applied_at: new Date().toISOString(),
    cart_created: created,
    line: { sku, quantity_before: 0, quantity_after: quantity },
  };
}

/** Publishes notices [from, to) and records them in the model. */
async function publishNotices(model, from, to) {
  for (let i = from; i < to; i++) {
    const n = notice(i, { created: i % 10 === 0, quantity: (i % 5) + 1 });
    await publishRaw(`carts.changes.${n.partition}`, n, { msgId: `chg-${n.event_id}` });
    // What the notice says it did, as the counting rules read it (not the cart rules: the
    // notices are made up, and only their members count).
    model.counters.carts_created += n.cart_created ? 1 : 0;
    model.counters.lines_added++;
    model.counters.units_added += n.line.quantity_after;
    model.skuUnits.set(n.line.sku, (model.skuUnits.get(n.line.sku) ?? 0) + n.line.quantity_after);
    model.carts.add(n.cart_id);
  }
}

/** Runs `cart-stats rebuild` against the test stack. */
function rebuild() {
  return new Promise((resolve, reject) => {
    execFile(
      STATS_BIN,
      ['rebuild'],
      {
        timeout: 60_000,
        env: {
          ...process.env,
          NATS_URL,
          REDIS_URL,
          SHARD_DSNS: SHARD_DSNS.join(','),
          CART_PARTITIONS: String(CART_PARTITIONS),
        },
      },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stdout}${stderr}`)) : resolve(stdout + stderr)),
    );
  });
}

describe('cart-stats counts exactly once under faults', OPTS, () => {
  let baseline;
  const model = new StatsModel();

  before(async () => {
    baseline = await quietFigures();
  });

  test('SIGKILL of cart-stats mid-stream, then a restart: still exact', OPTS, async () => {
    const counted = await statsMetric('cartshard_stats_changes_total{outcome="counted"}');
    const publishing = publishNotices(model, 0, 1500);
    await waitFor(
      'some notices counted',
      async () => (await statsMetric('cartshard_stats_changes_total{outcome="counted"}')) > counted + 200,
      { timeoutMs: 20_000 },
    );
    const pid = checkedStackPid('cart-stats');
    process.kill(pid, 'SIGKILL');
    await waitFor('cart-stats to die', () => stackPid('cart-stats') !== pid, { timeoutMs: 10_000 });
    await publishing;
    await stackUp();
    await figuresReach(baseline, model, { timeoutMs: 60_000 });
  });

  test('Redis restarted without its data mid-stream: rebuilt from PostgreSQL, still exact', OPTS, async () => {
    const rebuilds = await statsMetric('cartshard_stats_rebuilds_total');
    const publishing = publishNotices(model, 1500, 3000);
    await sleep(300);
    const pid = checkedStackPid('redis');
    process.kill(pid, 'SIGKILL');
    await waitFor('redis to die', () => stackPid('redis') !== pid, { timeoutMs: 10_000 });
    // Its append-only file goes too: Redis comes back empty.
    rmSync(path.join(STACK_DIR, 'redis', 'appendonlydir'), { recursive: true, force: true });
    rmSync(path.join(STACK_DIR, 'redis', 'dump.rdb'), { force: true });
    await stackUp();
    await publishing;
    await figuresReach(baseline, model, { timeoutMs: 60_000 });
    assert.ok((await statsMetric('cartshard_stats_rebuilds_total')) > rebuilds, 'cart-stats rebuilt Redis');
  });

  test('a notice sent again under another Nats-Msg-Id counts once', OPTS, async () => {
    const dup = await statsMetric('cartshard_stats_changes_total{outcome="duplicate"}');
    for (let i = 0; i < 20; i++) {
      const n = notice(i, { created: i % 10 === 0, quantity: (i % 5) + 1 });
      // Another message id: JetStream stores it again, as it would past its 2-minute window.
      await publishRaw(`carts.changes.${n.partition}`, n, { msgId: `again-${n.event_id}` });
    }
    await waitFor(
      'the copies to be seen as duplicates',
      async () => (await statsMetric('cartshard_stats_changes_total{outcome="duplicate"}')) >= dup + 20,
      { timeoutMs: 20_000 },
    );
    await figuresReach(baseline, model);
  });

  test('a malformed notice is counted as malformed, acknowledged, and harms nothing', OPTS, async () => {
    const bad = await statsMetric('cartshard_stats_changes_total{outcome="malformed"}');
    await publishRaw('carts.changes.0', 'not a notice', { msgId: `bad-${tag}-1` });
    await publishRaw('carts.changes.1', { event_id: `bad-${tag}-2`, type: 'cart.item_added' }, { msgId: `bad-${tag}-2` });
    await publishRaw(
      'carts.changes.2',
      { ...notice(99999), line: { sku: 'bad sku', quantity_before: 0, quantity_after: 1 } },
      { msgId: `bad-${tag}-3` },
    );
    await waitFor(
      'three malformed notices',
      async () => (await statsMetric('cartshard_stats_changes_total{outcome="malformed"}')) >= bad + 3,
      { timeoutMs: 20_000 },
    );
    await waitFor('nothing pending', async () => (await statsMetric('cartshard_stats_consumer_pending')) === 0, {
      timeoutMs: 20_000,
    });
    assert.equal((await http('GET', `${STATS_URL}/readyz`)).status, 200);
    await figuresReach(baseline, model);
  });

  test('two replicas share the consumer: both count, together exactly once', OPTS, async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const second = startProcess(STATS_BIN, [], {
      NATS_URL,
      REDIS_URL,
      SHARD_DSNS: SHARD_DSNS.join(','),
      CART_PARTITIONS: String(CART_PARTITIONS),
      CART_STATS_HOST: '127.0.0.1',
      CART_STATS_PORT: String(port),
      CART_STATS_ID: 'stats-fault-2',
      CART_STATS_BATCH: '16',
    });
    const counted = 'cartshard_stats_changes_total{outcome="counted"}';
    const theirs = async () => {
      const m = await http('GET', `${url}/metrics`);
      const line = m.text.split('\n').find((l) => l.startsWith(`${counted} `));
      return line ? Number(line.slice(counted.length + 1)) : 0;
    };
    try {
      await waitFor('the second replica ready', async () => (await http('GET', `${url}/readyz`).catch(() => ({}))).status === 200, {
        timeoutMs: 20_000,
      });
      const ours = await statsMetric(counted);
      await publishNotices(model, 3000, 4500);
      await figuresReach(baseline, model, { timeoutMs: 60_000 });
      const a = (await statsMetric(counted)) - ours;
      const b = await theirs();
      assert.ok(a > 0 && b > 0, `both replicas counted (${a} and ${b})`);
      assert.equal(a + b, 1500, 'together, each notice once');
    } finally {
      await stopProcess(second, 'SIGTERM');
    }
    assert.equal(second.exitCode, 0, `the second replica stopped cleanly: ${second.log()}`);
  });

  test('FLUSHALL, then cart-stats rebuild: the same figures', OPTS, async () => {
    const windows = ['5m', '1h', '24h'];
    const before = {};
    await quietFigures();
    for (const w of windows) before[w] = await stats(w);
    const topBefore = await topSkus('1h', 100);
    await redis('FLUSHALL');
    const during = await http('GET', `${STATS_URL}/v1/stats`);
    assert.equal(during.status, 503, 'no figures without the marker');
    assert.equal(during.json.type, 'urn:cartshard:problem:unavailable');
    await rebuild();
    for (const w of windows) {
      const now = await stats(w);
      // The same minutes unless a minute turned meanwhile: compare what the earlier read covered.
      if (now.from === before[w].from) assert.deepEqual(now, before[w], `window ${w}`);
      else assert.equal(now.units_added, before[w].units_added - before[w].series[0].units_added, `window ${w}`);
    }
    assert.deepEqual(await topSkus('1h', 100), topBefore);
  });
});
