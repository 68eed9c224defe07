// stats-lib.mjs: what the statistics suites share (stats, stats-fault): reading cart-stats, a
// model of what a load must add to the figures, and waiting for the consumer to count it.
//
// The figures are windows over the whole stack, which the other suites use too. The suites run
// one at a time, so a suite takes the figures of the `1h` window when the consumer is idle (its
// baseline), runs a load whose effect the model knows, and expects exactly baseline + model. The
// test stack lives minutes, so nothing leaves the `1h` window meanwhile.

import assert from 'node:assert/strict';

import { STATS_URL, http, sleep, waitFor } from './lib.mjs';

export const COUNTERS = [
  'carts_created',
  'lines_added',
  'units_added',
  'lines_removed',
  'checkouts',
  'carts_expired',
  'carts_deleted',
  'merges',
];

/** GET /v1/stats?window=… on cart-stats: the parsed figures (asserted 200). */
export async function stats(window = '1h') {
  const res = await http('GET', `${STATS_URL}/v1/stats?window=${window}`);
  assert.equal(res.status, 200, `GET /v1/stats?window=${window}: ${res.status} ${res.text}`);
  return res.json;
}

/** GET /v1/stats/top-skus: the parsed list (asserted 200). */
export async function topSkus(window = '1h', limit = 100) {
  const res = await http('GET', `${STATS_URL}/v1/stats/top-skus?window=${window}&limit=${limit}`);
  assert.equal(res.status, 200, `top-skus: ${res.status} ${res.text}`);
  return res.json;
}

/** A series of cart-stats's /metrics, written as it is rendered (with its labels); 0 when absent. */
export async function statsMetric(series) {
  const res = await http('GET', `${STATS_URL}/metrics`);
  const line = res.text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** Waits until the consumer has nothing pending and the 1h figures stop moving; resolves to them. */
export async function quietFigures({ timeoutMs = 30_000 } = {}) {
  let last = null;
  let result = null;
  await waitFor(
    'cart-stats to be idle',
    async () => {
      const pending = await statsMetric('cartshard_stats_consumer_pending');
      // 503 while the figures are (re)built: not idle yet.
      const now = await stats('1h').catch(() => null);
      if (now === null) return false;
      const same = last !== null && JSON.stringify(pick(now)) === JSON.stringify(pick(last));
      last = now;
      if (pending === 0 && same) result = now;
      if (!same || pending !== 0) await sleep(400);
      return result !== null;
    },
    { timeoutMs, intervalMs: 700 },
  );
  return result;
}

/** The counted members of a figures document: counters, checkout_value, active_carts. */
export function pick(f) {
  const out = {};
  for (const k of COUNTERS) out[k] = f[k];
  out.checkout_value = { ...f.checkout_value };
  out.active_carts = f.active_carts;
  return out;
}

/** baseline + delta, for the exact members (not active_carts). */
export function expected(baseline, delta) {
  const out = {};
  for (const k of COUNTERS) out[k] = baseline[k] + (delta.counters[k] ?? 0);
  out.checkout_value = { ...baseline.checkout_value };
  for (const [cur, v] of Object.entries(delta.values)) out.checkout_value[cur] = (out.checkout_value[cur] ?? 0) + v;
  return out;
}

function exact(f) {
  const out = {};
  for (const k of COUNTERS) out[k] = f[k];
  out.checkout_value = Object.fromEntries(Object.entries(f.checkout_value).sort());
  return out;
}

/**
 * Waits until the 1h figures are exactly baseline + the model's delta (or the time runs out, then
 * fails with the difference); resolves to the figures.
 */
export async function figuresReach(baseline, model, { timeoutMs = 30_000 } = {}) {
  const want = exact(expected(baseline, model));
  let got = null;
  try {
    await waitFor(
      'the figures to reach the model',
      async () => {
        // While Redis is away or being rebuilt the figures are 503: not yet.
        got = await stats('1h').catch(() => got);
        return got !== null && JSON.stringify(exact(got)) === JSON.stringify(want);
      },
      { timeoutMs, intervalMs: 250 },
    );
  } catch (e) {
    assert.deepEqual(got && exact(got), want, `the figures are not the model's: ${e.message}`);
  }
  // Nothing more comes: once reached, it stays.
  await sleep(600);
  assert.deepEqual(exact(await stats('1h')), want, 'the figures moved past the model');
  return got;
}

/**
 * What a load adds to the figures (docs/reference/api.md, Statistics: Counting), from the
 * operations as the client saw them succeed. It keeps each user's active cart (its lines) to know
 * when an operation starts a cart or removes a line, like the cart rules do.
 */
export class StatsModel {
  constructor() {
    this.counters = Object.fromEntries(COUNTERS.map((k) => [k, 0]));
    this.values = {};
    this.skuUnits = new Map();
    this.carts = new Set(); // distinct cart ids changed
    this.active = new Map(); // user -> Map(sku -> {quantity, price, currency})
  }

  #cart(user, cartId) {
    if (cartId) this.carts.add(cartId);
    if (!this.active.has(user)) {
      this.active.set(user, new Map());
      this.counters.carts_created++;
    }
    return this.active.get(user);
  }

  created(user, cartId) {
    this.#cart(user, cartId);
  }

  added(user, cartId, sku, quantity, price) {
    const lines = this.#cart(user, cartId);
    const line = lines.get(sku) ?? { quantity: 0 };
    lines.set(sku, { quantity: line.quantity + quantity, price: price ?? line.price });
    this.counters.lines_added++;
    this.counters.units_added += quantity;
    this.skuUnits.set(sku, (this.skuUnits.get(sku) ?? 0) + quantity);
  }

  set(user, cartId, sku, quantity) {
    const lines = this.#cart(user, cartId);
    if (quantity === 0) {
      if (lines.delete(sku)) this.counters.lines_removed++;
    } else {
      lines.set(sku, { ...(lines.get(sku) ?? {}), quantity });
    }
  }

  removed(user, cartId, sku) {
    if (cartId) this.carts.add(cartId);
    if (this.active.get(user)?.delete(sku)) this.counters.lines_removed++;
  }

  checkedOut(user, cartId) {
    this.carts.add(cartId);
    let total = 0;
    let currency = null;
    for (const line of this.active.get(user).values()) {
      if (line.price) {
        total += line.price.unit_price * line.quantity;
        currency = line.price.currency;
      }
    }
    this.counters.checkouts++;
    if (currency) this.values[currency] = (this.values[currency] ?? 0) + total;
    this.active.delete(user);
  }

  deleted(user, cartId) {
    this.carts.add(cartId);
    this.counters.carts_deleted++;
    this.active.delete(user);
  }

  expired(user, cartId) {
    this.carts.add(cartId);
    this.counters.carts_expired++;
    this.active.delete(user);
  }

  /** guest's lines joined into user's cart (created when the user had none); the guest's cart merged. */
  merged(guest, guestCartId, user, userCartId) {
    const lines = this.active.get(guest);
    const mine = this.#cart(user, userCartId);
    for (const [sku, line] of lines) mine.set(sku, { quantity: (mine.get(sku)?.quantity ?? 0) + line.quantity });
    this.carts.add(guestCartId);
    this.active.delete(guest);
    this.counters.merges++;
  }

  /** The top skus of the model, sorted as the API sorts them. */
  top() {
    return [...this.skuUnits.entries()]
      .map(([sku, units]) => ({ sku, units }))
      .sort((a, b) => b.units - a.units || (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
  }
}

/** The HyperLogLog's bound on active_carts: Redis documents a standard error of 0.81 %; allow 3 %
 * of the window's total, and at least 2, for a difference of two estimates. */
export function hllTolerance(total) {
  return Math.max(2, Math.ceil(total * 0.03));
}
