// stats.mjs: the statistics consumer's rate (docs/performance.md, stats): change notices
// published straight to CARTS_CHANGES with cart-stats running, timed until its counters say all of
// them were counted, with the CPU cart-stats spent per notice (/proc/<pid>/stat). The bench's
// `stats` scenario runs it; on its own, against any stack with cart-stats:
//
//   NATS_URL=... STATS_URL=... STACK_DIR=... node tests/bench/stats.mjs [notices]

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

import { CART_PARTITIONS, STATS_URL, http, nats, stackPid } from '../integration/lib.mjs';
import { cpuSeconds, round } from './procs.mjs';

/** A series of cart-stats's /metrics (with its labels, as rendered); 0 when absent. */
export async function statsSeries(series) {
  const res = await http('GET', `${STATS_URL}/metrics`);
  const line = res.text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

const handled = async () =>
  (await statsSeries('cartshard_stats_changes_total{outcome="counted"}')) +
  (await statsSeries('cartshard_stats_changes_total{outcome="duplicate"}'));

/** A notice as a worker writes it: an add of 1..5 units of one of 50 skus to one of 5000 carts. */
function notice(tag, i) {
  const user = `${tag}-u${i % 5000}`;
  return JSON.stringify({
    event_id: `${tag}-${i}`,
    type: 'cart.item_added',
    user_id: user,
    cart_id: `${tag}-c${i % 5000}`,
    version: Math.floor(i / 5000) + 1,
    status: 'active',
    partition: i % CART_PARTITIONS,
    items: [{ sku: `${tag}-s${i % 50}`, quantity: (i % 5) + 1 }],
    item_count: (i % 5) + 1,
    currency: null,
    subtotal: 0,
    applied_at: new Date().toISOString(),
    cart_created: i < 5000,
    line: { sku: `${tag}-s${i % 50}`, quantity_before: 0, quantity_after: (i % 5) + 1 },
  });
}

/**
 * Publishes `n` notices (500 in flight at a time) while cart-stats runs and waits until it has
 * handled them all. Resolves to { notices, publish_s, count_s, changes_per_s, cpu_us_per_change }.
 */
export async function statsRate(n, tag = `sr${Date.now().toString(36)}`) {
  const js = (await nats()).jetstream();
  const pid = stackPid('cart-stats');
  if (pid === null) throw new Error('cart-stats is not running');
  const before = await handled();
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  for (let i = 0; i < n; i += 500) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 500); j++) {
      batch.push(js.publish(`carts.changes.${j % CART_PARTITIONS}`, Buffer.from(notice(tag, j)), { msgID: `chg-${tag}-${j}` }));
    }
    await Promise.all(batch);
  }
  const published = performance.now();
  const deadline = published + Math.max(120, n / 100) * 1000;
  let done = 0;
  for (;;) {
    done = (await handled()) - before;
    if (done >= n) break;
    if (performance.now() > deadline) throw new Error(`only ${done} of ${n} notices counted in time`);
    await sleep(100);
  }
  const t1 = performance.now();
  const cpu = cpuSeconds(pid) - cpu0;
  return {
    notices: n,
    publish_s: round((published - t0) / 1000, 2),
    count_s: round((t1 - t0) / 1000, 2),
    changes_per_s: round(n / ((t1 - t0) / 1000), 1),
    cpu_us_per_change: round((cpu * 1e6) / n, 1),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { closeAll } = await import('../integration/lib.mjs');
  try {
    console.log(JSON.stringify(await statsRate(Number(process.argv[2] ?? 20_000))));
  } finally {
    await closeAll();
  }
}
