// The statistics (docs/reference/api.md, Statistics; docs/internals/stats.md): a load through the
// gateway with known effects (adds, sets, removes, deletes, checkouts priced in two currencies, a
// merge, an expiry, a repeated write), then every figure of cart-stats exactly the model's, the
// distinct carts within the HyperLogLog's error, the top skus exact with their tie order, and the
// API's refusals. The test stack's workers look for idle carts every 300 ms, so a backdated cart
// expires at once (as in lifecycle).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

import { STATS_URL, closeAll, http, queryShard, shardOf, uniqueUser, waitFor } from './lib.mjs';
import { StatsModel, figuresReach, hllTolerance, quietFigures, stats, topSkus } from './stats-lib.mjs';

after(closeAll);

const OPTS = { timeout: 120_000 };
const tag = randomBytes(4).toString('hex');
const sku = (name) => `st-${tag}-${name}`;

async function ok(res, what, status = 200) {
  assert.equal(res.status, status, `${what}: ${res.status} ${res.text}`);
  return res.json;
}

const add = (user, s, quantity, price, headers = {}) =>
  http('POST', `/v1/carts/${user}/items`, { body: { sku: s, quantity, ...(price ?? {}) }, headers });

describe('cart-stats counts a known load exactly', OPTS, () => {
  const model = new StatsModel();
  let baseline;
  let baselineTop;

  before(async () => {
    baseline = await quietFigures();
    baselineTop = await topSkus('1h', 100);
  });

  test('the load: adds, sets, removes, deletes, checkouts in EUR and USD, a merge, an expiry', OPTS, async () => {
    const eur = (unit_price) => ({ unit_price, currency: 'EUR' });
    const usd = (unit_price) => ({ unit_price, currency: 'USD' });
    const buyers = Array.from({ length: 6 }, () => uniqueUser('stb'));
    const usdBuyers = Array.from({ length: 3 }, () => uniqueUser('stu'));
    const deleters = Array.from({ length: 3 }, () => uniqueUser('std'));

    await Promise.all(
      buyers.map(async (u) => {
        let c = await ok(await add(u, sku('X'), 450, eur(100), { 'Idempotency-Key': `${u}-x` }), 'add X');
        model.added(u, c.cart_id, sku('X'), 450, eur(100));
        // The same request again: answered from the first, counted once.
        const again = await add(u, sku('X'), 450, eur(100), { 'Idempotency-Key': `${u}-x` });
        assert.equal(again.headers.get('idempotent-replayed'), 'true');
        c = await ok(await add(u, sku('Y'), 450, eur(250)), 'add Y');
        model.added(u, c.cart_id, sku('Y'), 450, eur(250));
        c = await ok(await add(u, sku('T'), 5), 'add T');
        model.added(u, c.cart_id, sku('T'), 5);
        c = await ok(await http('PUT', `/v1/carts/${u}/items/${sku('T')}`, { body: { quantity: 2 } }), 'set T 2');
        model.set(u, c.cart_id, sku('T'), 2);
        c = await ok(await http('DELETE', `/v1/carts/${u}/items/${sku('T')}`), 'remove T');
        model.removed(u, c.cart_id, sku('T'));
        // Removing it again changes nothing: no notice, nothing counted.
        await ok(await http('DELETE', `/v1/carts/${u}/items/${sku('T')}`), 'remove T again');
        c = await ok(await http('POST', `/v1/carts/${u}/checkout`), 'checkout');
        model.checkedOut(u, c.cart_id);
      }),
    );
    await Promise.all(
      usdBuyers.map(async (u) => {
        let c = await ok(await add(u, sku('X'), 450, usd(300)), 'add X');
        model.added(u, c.cart_id, sku('X'), 450, usd(300));
        c = await ok(await add(u, sku('Z'), 450, usd(10)), 'add Z');
        model.added(u, c.cart_id, sku('Z'), 450, usd(10));
        c = await ok(await add(u, sku('T'), 3), 'add T');
        model.added(u, c.cart_id, sku('T'), 3);
        c = await ok(await http('PUT', `/v1/carts/${u}/items/${sku('T')}`, { body: { quantity: 0 } }), 'set T 0');
        model.set(u, c.cart_id, sku('T'), 0);
        c = await ok(await http('POST', `/v1/carts/${u}/checkout`), 'checkout');
        model.checkedOut(u, c.cart_id);
      }),
    );
    await Promise.all(
      deleters.map(async (u) => {
        let c = await ok(await http('POST', '/v1/carts', { body: { user_id: u } }), 'create', 201);
        model.created(u, c.cart_id);
        // A second create finds the active cart: nothing new.
        await ok(await http('POST', '/v1/carts', { body: { user_id: u } }), 'create again', 200);
        c = await ok(await add(u, sku('Y'), 450), 'add Y');
        model.added(u, c.cart_id, sku('Y'), 450);
        c = await ok(await add(u, sku('Z'), 450), 'add Z');
        model.added(u, c.cart_id, sku('Z'), 450);
        assert.equal((await http('DELETE', `/v1/carts/${u}`)).status, 204);
        model.deleted(u, c.cart_id);
      }),
    );

    // A guest's cart merged into a user without one: the user's cart is a new cart.
    const guest = uniqueUser('stg');
    const target = uniqueUser('stm');
    const g = await ok(await add(guest, sku('W'), 2), 'guest add W');
    model.added(guest, g.cart_id, sku('W'), 2);
    const m = await ok(await http('POST', `/v1/carts/${target}/merge`, { body: { from: guest } }), 'merge');
    model.merged(guest, g.cart_id, target, m.cart_id);

    // An abandoned cart: backdated in its shard, expired by its worker.
    const idle = uniqueUser('ste');
    const e = await ok(await add(idle, sku('W'), 1), 'idle add W');
    model.added(idle, e.cart_id, sku('W'), 1);
    await queryShard(shardOf(idle), "UPDATE carts SET updated_at = now() - interval '31 days' WHERE cart_id = $1", [
      e.cart_id,
    ]);
    await waitFor(
      'the idle cart to expire',
      async () => (await queryShard(shardOf(idle), 'SELECT status FROM carts WHERE cart_id = $1', [e.cart_id]))[0]
        ?.status === 'expired',
      { timeoutMs: 10_000 },
    );
    model.expired(idle, e.cart_id);
  });

  test('every figure of the 1h window is the baseline plus the model', OPTS, async () => {
    const got = await figuresReach(baseline, model);
    // active_carts is a HyperLogLog estimate: within its error of the model's distinct carts.
    const want = baseline.active_carts + model.carts.size;
    assert.ok(
      Math.abs(got.active_carts - want) <= hllTolerance(want),
      `active_carts ${got.active_carts}, the model says ${want}`,
    );
    // The ratios follow from the counters.
    assert.equal(got.conversion, got.carts_created ? got.checkouts / got.carts_created : null);
    const ended = got.carts_expired + got.checkouts;
    assert.equal(got.abandonment, ended ? got.carts_expired / ended : null);
    // The series: one entry per minute of the window, adding up to the window's sums.
    assert.equal(got.series.length, 60);
    assert.equal(got.series.reduce((s, m) => s + m.units_added, 0), got.units_added);
    assert.equal(got.series.reduce((s, m) => s + m.checkouts, 0), got.checkouts);
    assert.equal(got.from, got.series[0].minute);
    assert.equal(Date.parse(got.to) - Date.parse(got.from), 3_600_000);
  });

  test('the 5m and 24h windows hold the load too', OPTS, async () => {
    const day = await stats('24h');
    const hour = await stats('1h');
    assert.equal(day.window, '24h');
    assert.equal(day.series.length, 1440);
    // The stack is younger than an hour: the day is the hour.
    for (const k of ['carts_created', 'units_added', 'checkouts', 'merges']) assert.equal(day[k], hour[k], k);
    const five = await stats('5m');
    assert.equal(five.series.length, 5);
    assert.ok(five.units_added >= 0 && five.units_added <= hour.units_added);
  });

  test('top skus: exact units, ties by sku ascending, limit', OPTS, async () => {
    const before = new Map(baselineTop.map((e) => [e.sku, e.units]));
    const all = await topSkus('1h', 100);
    for (const { sku: s, units } of model.top()) {
      const want = (before.get(s) ?? 0) + units;
      const e = all.find((x) => x.sku === s);
      if (e) {
        assert.equal(e.units, want, `${s}'s units`);
      } else {
        // The other suites' skus fill the list: one of ours may rank below its 100th entry.
        const last = all.at(-1);
        assert.equal(all.length, 100, `${s} is listed`);
        assert.ok(last.units > want || (last.units === want && last.sku < s), `${s} ranks below the 100th`);
      }
    }
    // The load's two biggest skus tie (4050 units each): X before Y, then Z (2700), whatever the
    // other suites' skus around them.
    const at = (name) => all.findIndex((e) => e.sku === sku(name));
    assert.deepEqual(all[at('X')], { sku: sku('X'), units: 4050 });
    assert.deepEqual(all[at('Y')], { sku: sku('Y'), units: 4050 });
    assert.deepEqual(all[at('Z')], { sku: sku('Z'), units: 2700 });
    assert.ok(at('X') < at('Y') && at('Y') < at('Z'), 'X, Y, Z in that order');
    // limit cuts the same list.
    assert.deepEqual(await topSkus('1h', 3), all.slice(0, 3));
    // The whole list is in the documented order.
    for (let i = 1; i < all.length; i++) {
      const [a, b] = [all[i - 1], all[i]];
      assert.ok(a.units > b.units || (a.units === b.units && a.sku < b.sku), `order at ${i}`);
    }
    const def = await http('GET', `${STATS_URL}/v1/stats/top-skus`);
    assert.equal(def.status, 200);
    assert.ok(def.json.length <= 10, 'the default limit is 10');
  });
});

describe('the stats API as docs/openapi.yaml describes it', { timeout: 30_000 }, () => {
  const spec = YAML.parse(readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8'));
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  const refs = (x) => JSON.parse(JSON.stringify(x).replaceAll('#/components/schemas/', 'spec#/$defs/'));
  ajv.addSchema({ $id: 'spec', $defs: refs(spec.components.schemas) });
  const validator = (path, status) => {
    const op = spec.paths[path].get;
    let r = op.responses[status];
    if (r.$ref) r = spec.components.responses[r.$ref.split('/').pop()];
    const [type, media] = Object.entries(r.content)[0];
    return { type, check: ajv.compile(refs(media.schema)) };
  };

  test('cart-stats serves the paths that name its server', () => {
    for (const path of ['/v1/stats', '/v1/stats/top-skus']) {
      assert.equal(new URL(spec.paths[path].servers[0].url).port, '9201', `${path} is cart-stats's`);
    }
  });

  for (const [url, path, status] of [
    ['/v1/stats?window=5m', '/v1/stats', '200'],
    ['/v1/stats?window=24h', '/v1/stats', '200'],
    ['/v1/stats/top-skus?limit=3', '/v1/stats/top-skus', '200'],
    ['/v1/stats?window=7d', '/v1/stats', '400'],
    ['/v1/stats/top-skus?limit=0', '/v1/stats/top-skus', '400'],
  ]) {
    test(`GET ${url}: ${status} as the spec says`, async () => {
      const res = await http('GET', `${STATS_URL}${url}`);
      assert.equal(String(res.status), status);
      const { type, check } = validator(path, status);
      assert.equal(res.headers.get('content-type').split(';')[0], type);
      assert.ok(check(res.json), JSON.stringify(check.errors));
    });
  }
});

describe('the stats API refuses what it cannot answer', { timeout: 30_000 }, () => {
  const cases = [
    ['/v1/stats?window=2h', 400, 'invalid-query', /^window: /],
    ['/v1/stats?window=', 400, 'invalid-query', /^window: /],
    ['/v1/stats?window=5m&window=1h', 400, 'invalid-query', /more than once/],
    ['/v1/stats/top-skus?limit=0', 400, 'invalid-query', /^limit: /],
    ['/v1/stats/top-skus?limit=101', 400, 'invalid-query', /^limit: /],
    ['/v1/stats/top-skus?limit=ten', 400, 'invalid-query', /^limit: /],
    ['/v1/stats/top-skus?window=1w&limit=5', 400, 'invalid-query', /^window: /],
    ['/v1/statistics', 404, 'not-found', /serves/],
    ['/', 404, 'not-found', /serves/],
  ];
  for (const [path, status, slug, detail] of cases) {
    test(`GET ${path} is ${status} ${slug}`, async () => {
      const res = await http('GET', `${STATS_URL}${path}`);
      assert.equal(res.status, status);
      assert.match(res.headers.get('content-type'), /^application\/problem\+json/);
      assert.equal(res.json.type, `urn:cartshard:problem:${slug}`);
      assert.equal(res.json.status, status);
      assert.match(res.json.detail, detail);
    });
  }

  for (const method of ['POST', 'PUT', 'DELETE']) {
    test(`${method} /v1/stats is 405 with Allow`, async () => {
      const res = await http(method, `${STATS_URL}/v1/stats`, { body: method === 'DELETE' ? undefined : {} });
      assert.equal(res.status, 405);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
      assert.equal(res.json.type, 'urn:cartshard:problem:method-not-allowed');
    });
  }

  test('the dashboard is one HTML page with a strict CSP, not cached', async () => {
    const res = await http('GET', `${STATS_URL}/dashboard`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /https?:/, 'no outside origin');
    assert.match(res.text, /^<!doctype html>/i);
  });

  test('a bad setting stops cart-stats at start, naming the variable', async () => {
    const bin = process.env.CARTSHARD_STATS_BIN;
    assert.ok(bin, 'CARTSHARD_STATS_BIN is set');
    for (const [name, value] of [
      ['CART_STATS_PORT', 'abc'],
      ['STATS_DSN', 'mysql://x'],
      ['CART_STATS_BATCH', '0'],
    ]) {
      const r = spawnSync(bin, [], { env: { ...process.env, [name]: value }, encoding: 'utf8', timeout: 10_000 });
      assert.equal(r.status, 2, `${name}=${value}: exit 2`);
      assert.match(r.stderr, new RegExp(`^cart-stats: ${name}: `, 'm'));
    }
  });

  test('healthz, readyz (with its dependencies) and metrics', async () => {
    assert.equal((await http('GET', `${STATS_URL}/healthz`)).status, 200);
    const ready = await http('GET', `${STATS_URL}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(Object.keys(ready.json).sort(), ['nats', 'postgresql', 'ready', 'redis']);
    const m = await http('GET', `${STATS_URL}/metrics`);
    for (const series of [
      'cartshard_stats_changes_total{outcome="counted"}',
      'cartshard_stats_changes_total{outcome="duplicate"}',
      'cartshard_stats_changes_total{outcome="malformed"}',
      'cartshard_stats_consumer_pending',
      'cartshard_stats_flush_age_seconds',
      'cartshard_stats_figure{window="1h",figure="units_added"}',
      'cartshard_http_requests_total{route="/v1/stats",status="200"}',
      'cartshard_http_requests_total{route="/v1/stats",status="400"}',
    ]) {
      assert.ok(m.text.split('\n').some((l) => l.startsWith(`${series} `)), `${series} is rendered`);
    }
  });
});
