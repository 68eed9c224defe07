// The statistics dashboard as a browser shows it: Debian's chromium, driven headless by
// playwright-core, loads cart-stats' GET /dashboard after real traffic went through the gateway
// (priced adds in a currency no other suite uses, checkouts, a removal), and the figures, the top
// skus and the per-minute chart it shows are compared with what /v1/stats and
// /v1/stats/top-skus answer at the same moment. Then the API is cut off (playwright's route
// interception) and the page must say so instead of going blank, and a hidden tab must stop
// polling. A screenshot is left in build/stats-dashboard.png.
//
// cart-stats is found at STATS_URL (scripts/dev test sets it), else on 127.0.0.1 at
// TEST_CART_STATS_PORT (default 9201).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { closeAll, http, uniqueUser, waitFor } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const STATS_URL = (process.env.STATS_URL || `http://127.0.0.1:${process.env.TEST_CART_STATS_PORT || 9201}`).replace(/\/+$/, '');
const BUILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../build');
const OPTS = { timeout: 60_000 };
// The figures the page shows, by the API's field names.
const COUNTS = ['carts_created', 'lines_added', 'units_added', 'lines_removed', 'checkouts', 'carts_expired', 'carts_deleted', 'merges'];
const RATES = ['conversion', 'abandonment'];

// Kuwaiti dinars have 3 minor digits, and no other suite prices in them: the KWD checkout value
// in the 1h window grows by exactly what this suite checks out.
const CURRENCY = 'KWD';

let browser;
let traffic; // what this suite sent: { skus: {sku: units}, units, lines, removed, checkouts, value }
let before1h; // /v1/stats?window=1h before the traffic

const stats = async (window) => {
  const r = await http('GET', `${STATS_URL}/v1/stats?window=${window}`);
  assert.equal(r.status, 200, `GET /v1/stats?window=${window}: ${r.text}`);
  return r.json;
};
const topSkus = async (window, limit = 10) => {
  const r = await http('GET', `${STATS_URL}/v1/stats/top-skus?window=${window}&limit=${limit}`);
  assert.equal(r.status, 200, `GET /v1/stats/top-skus: ${r.text}`);
  return r.json;
};

/** Text with its runs of white space (Intl puts U+00A0 after a currency code) made one space. */
const squash = (s) => s.replace(/\s+/g, ' ').trim();

/** Groups an integer's digits by thousands with commas, the way an en locale writes it. */
const grouped = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');

/** What the page shows, read from the DOM: figures, money by currency, top skus and chart points. */
function readPage(page) {
  return page.evaluate(() => {
    const figures = {};
    for (const dd of document.querySelectorAll('dd[data-figure]')) {
      figures[dd.dataset.figure] = { text: dd.textContent, value: JSON.parse(dd.dataset.value) };
    }
    const money = {};
    for (const s of document.querySelectorAll('[data-figure="checkout_value"] [data-currency]')) {
      money[s.dataset.currency] = { text: s.textContent, value: Number(s.dataset.value) };
    }
    const top = [...document.querySelectorAll('[data-figure="top_skus"] tr[data-sku]')].map((tr) => ({
      sku: tr.children[1].textContent,
      units: tr.children[2].textContent,
    }));
    const points = [...document.querySelectorAll('#chart [data-point]')].map((r) => ({
      minute: r.dataset.minute,
      units_added: Number(r.dataset.unitsAdded),
      checkouts: Number(r.dataset.checkouts),
      label: r.getAttribute('aria-label'),
    }));
    return {
      state: document.body.dataset.state,
      window: document.body.dataset.window,
      refreshedAt: document.body.dataset.refreshedAt,
      figures,
      money,
      top,
      points,
      chartPoints: Number(document.querySelector('#chart svg')?.getAttribute('data-points')),
    };
  });
}

/**
 * The page and the API at the same moment: reads the API, waits until the page shows figures it
 * asked for after that read (data-asked-at), reads the API again; when both reads agree (no
 * minute rolled over in between), that is what the page must show. Returns { shown, api, top, hour }.
 */
async function sameMoment(page, window) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const api = await stats(window);
    const top = await topSkus(window);
    const hour = window === '1h' ? api : await stats('1h');
    const t0 = new Date().toISOString();
    await page.waitForFunction((since) => document.body.dataset.state === 'ok' && document.body.dataset.askedAt > since, t0, {
      timeout: 15_000,
    });
    const shown = await readPage(page);
    const [api2, top2, hour2] = [await stats(window), await topSkus(window), window === '1h' ? null : await stats('1h')];
    if (JSON.stringify(api) === JSON.stringify(api2) && JSON.stringify(top) === JSON.stringify(top2) && (!hour2 || JSON.stringify(hour) === JSON.stringify(hour2))) {
      return { shown, api, top, hour };
    }
  }
  throw new Error('the statistics kept changing although the traffic had stopped');
}

/** Asserts that the page shows exactly the API's figures, top skus and series. */
function assertShows({ shown, api, top, hour }, window) {
  assert.equal(shown.state, 'ok');
  assert.equal(shown.window, window);
  for (const f of COUNTS) {
    assert.equal(shown.figures[f].value, api[f], `${f}: data-value`);
    assert.equal(shown.figures[f].text, grouped(api[f]), `${f}: the text shown`);
  }
  assert.equal(shown.figures.active_carts.value, api.active_carts);
  assert.equal(squash(shown.figures.active_carts.text), `≈ ${grouped(api.active_carts)}`, 'active carts are marked approximate');
  for (const f of RATES) {
    assert.equal(shown.figures[f].value, api[f], `${f}: data-value`);
    assert.equal(shown.figures[f].text, api[f] === null ? '—' : `${(api[f] * 100).toFixed(1)}%`, `${f}: the text shown`);
  }
  assert.deepEqual(shown.figures.checkout_value.value, api.checkout_value);
  assert.deepEqual(
    Object.fromEntries(Object.entries(shown.money).map(([c, m]) => [c, m.value])),
    api.checkout_value,
    'one entry per currency, each with the API value',
  );
  assert.deepEqual(
    shown.top,
    top.map((t) => ({ sku: t.sku, units: grouped(t.units) })),
    'the top skus in the API order',
  );
  assert.equal(shown.chartPoints, hour.series.length);
  assert.equal(shown.points.length, 60, 'the chart has one point per minute of the last hour');
  assert.deepEqual(
    shown.points.map(({ label, ...p }) => p),
    hour.series.map((s) => ({ minute: s.minute, units_added: s.units_added, checkouts: s.checkouts })),
    "the chart's points are the 1h series",
  );
  for (let i = 1; i < shown.points.length; i++) {
    assert.equal(Date.parse(shown.points[i].minute) - Date.parse(shown.points[i - 1].minute), 60_000, `point ${i} is the minute after point ${i - 1}`);
  }
  for (const p of shown.points) assert.match(p.label, /^\d\d:\d\d UTC: [\d,]+ units added, [\d,]+ checkouts$/);
}

async function openDashboard(query = '', viewport = { width: 1280, height: 800 }) {
  const page = await browser.newPage({ viewport });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${STATS_URL}/dashboard${query}`);
  return { page, errors };
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is installed (scripts/dev installs Debian's chromium)`);
  const ready = await http('GET', `${STATS_URL}/readyz`).catch((e) => ({ status: 0, text: e.message }));
  assert.equal(ready.status, 200, `cart-stats at ${STATS_URL} is ready: ${ready.text}`);
  before1h = await stats('1h');

  // The traffic: 12 shoppers add two priced lines each (one sku shared by all), 8 check out,
  // 2 remove a line first, the others leave their carts. Everything through the gateway.
  const run = uniqueUser('dash').replace(/^dash-?/, '').slice(-8).toUpperCase();
  const skus = { [`DASH-${run}-TOP`]: 0, [`DASH-${run}-B`]: 0, [`DASH-${run}-C`]: 0 };
  const names = Object.keys(skus);
  traffic = { skus, units: 0, lines: 0, removed: 0, checkouts: 0, value: 0 };
  for (let i = 0; i < 12; i++) {
    const user = uniqueUser('dash');
    const lines = [
      { sku: names[0], quantity: 400 + 7 * i, unit_price: 1250, currency: CURRENCY, name: 'Top seller' },
      { sku: names[1 + (i % 2)], quantity: 1 + i, unit_price: 3075 + i, currency: CURRENCY, name: 'Other' },
    ];
    for (const line of lines) {
      const r = await http('POST', `/v1/carts/${user}/items`, { body: line });
      assert.equal(r.status, 200, `add ${line.sku}: ${r.text}`);
      skus[line.sku] += line.quantity;
      traffic.units += line.quantity;
      traffic.lines += 1;
    }
    let checkedOut = lines;
    if (i % 6 === 5) {
      const r = await http('DELETE', `/v1/carts/${user}/items/${lines[1].sku}`);
      assert.equal(r.status, 200, r.text);
      traffic.removed += 1;
      checkedOut = lines.slice(0, 1);
    }
    if (i < 8) {
      const r = await http('POST', `/v1/carts/${user}/checkout`);
      assert.equal(r.status, 200, `checkout: ${r.text}`);
      assert.equal(r.json.currency, CURRENCY);
      const value = checkedOut.reduce((a, l) => a + l.quantity * l.unit_price, 0);
      assert.equal(r.json.subtotal, value, 'the gateway agrees on the subtotal');
      traffic.value += value;
      traffic.checkouts += 1;
    }
  }

  // The traffic has stopped; wait until cart-stats has counted all of it.
  await waitFor(
    'cart-stats to count the traffic',
    async () => {
      const now = await stats('1h');
      return (now.checkout_value[CURRENCY] ?? 0) - (before1h.checkout_value[CURRENCY] ?? 0) === traffic.value &&
        now.units_added - before1h.units_added >= traffic.units
        ? now
        : false;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  );
  // Running as root needs --no-sandbox; the page is ours, on 127.0.0.1.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  await closeAll();
});

describe('the dashboard against the API', () => {
  test('cart-stats counted the traffic: checkout value in KWD, units, lines and checkouts', OPTS, async () => {
    const now = await stats('1h');
    assert.equal((now.checkout_value[CURRENCY] ?? 0) - (before1h.checkout_value[CURRENCY] ?? 0), traffic.value);
    // Nothing else writes while this suite runs, but a minute may leave the window meanwhile:
    // at least the traffic, then.
    assert.ok(now.units_added - before1h.units_added >= traffic.units, 'units added');
    assert.ok(now.lines_added - before1h.lines_added >= traffic.lines, 'lines added');
    assert.ok(now.lines_removed - before1h.lines_removed >= traffic.removed, 'lines removed');
    assert.ok(now.checkouts - before1h.checkouts >= traffic.checkouts, 'checkouts');
    const top = await topSkus('1h', 100);
    for (const [sku, units] of Object.entries(traffic.skus)) {
      assert.deepEqual(top.find((t) => t.sku === sku), { sku, units }, `${sku} in the top skus`);
    }
  });

  test('shows the 1h figures, the top skus and a point per minute exactly as the API answers them', OPTS, async () => {
    const { page, errors } = await openDashboard();
    try {
      const seen = await sameMoment(page, '1h');
      assertShows(seen, '1h');
      // The KWD value, written with its 3 minor digits, as this suite summed it up.
      const kwd = seen.api.checkout_value[CURRENCY];
      const major = Math.floor(kwd / 1000);
      assert.equal(squash(seen.shown.money[CURRENCY].text), `${CURRENCY} ${grouped(major)}.${String(kwd % 1000).padStart(3, '0')}`);
      // This suite's top seller, with its units.
      const mine = Object.keys(traffic.skus)[0];
      const row = seen.shown.top.find((t) => t.sku === mine);
      assert.ok(row, `${mine} is among the top skus shown`);
      assert.equal(row.units, grouped(seen.top.find((t) => t.sku === mine).units));
      mkdirSync(BUILD, { recursive: true });
      await page.screenshot({ path: path.join(BUILD, 'stats-dashboard.png'), fullPage: true });
      assert.deepEqual(errors, [], 'no script error on the page');
    } finally {
      await page.close();
    }
  });

  test('the window selector switches the figures to 5m and 24h, and the chart stays on the last hour', OPTS, async () => {
    const { page, errors } = await openDashboard();
    try {
      await page.waitForSelector('body[data-state="ok"]');
      for (const [label, window] of [
        ['5 min', '5m'],
        ['24 hours', '24h'],
      ]) {
        await page.getByLabel(label).check();
        await page.waitForSelector(`body[data-window="${window}"][data-state="ok"]`);
        assertShows(await sameMoment(page, window), window);
        assert.match(page.url(), new RegExp(`[?&]window=${window}\\b`), 'the window is in the address, to be linked');
      }
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('fits a narrow screen without a horizontal scroll bar', OPTS, async () => {
    const { page, errors } = await openDashboard('?window=5m', { width: 375, height: 740 });
    try {
      await page.waitForSelector('body[data-state="ok"]');
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
      assert.equal(await page.locator('#chart [data-point]').count(), 60);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});

describe('the dashboard when the API fails', () => {
  test('keeps the last figures, marks them stale and says why; recovers when the API answers again', OPTS, async () => {
    const { page, errors } = await openDashboard();
    try {
      await page.waitForSelector('body[data-state="ok"]');
      const good = await readPage(page);
      await page.route('**/v1/stats**', (route) =>
        route.fulfill({
          status: 503,
          contentType: 'application/problem+json',
          body: JSON.stringify({ type: 'urn:cartshard:problem:unavailable', title: 'Service Unavailable', status: 503, detail: 'statistics store down' }),
        }),
      );
      await page.waitForSelector('body[data-state="stale"]', { timeout: 10_000 });
      const alert = page.getByRole('alert');
      assert.match(await alert.innerText(), /could not be refreshed: .*503: statistics store down\. The figures below are stale/);
      assert.ok(await alert.isVisible());
      const stale = await readPage(page);
      assert.deepEqual(stale.figures, good.figures, 'the last figures stay on the page');
      assert.equal(stale.points.length, 60);

      await page.unroute('**/v1/stats**');
      await page.waitForSelector('body[data-state="ok"]', { timeout: 10_000 });
      assert.equal(await alert.isVisible(), false, 'the alert goes away');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('an API unreachable from the start gives an error, not a blank page', OPTS, async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      await page.route('**/v1/stats**', (route) => route.abort('connectionrefused'));
      await page.goto(`${STATS_URL}/dashboard`);
      await page.waitForSelector('body[data-state="error"]', { timeout: 10_000 });
      assert.match(await page.getByRole('alert').innerText(), /could not be loaded: .*unreachable/);
      assert.equal(await page.locator('#status').innerText(), 'No data yet');
      assert.ok(await page.getByRole('heading', { name: 'cartshard · cart statistics' }).isVisible());
    } finally {
      await page.close();
    }
  });

  test('a hidden tab stops asking the API, and asks again when shown', OPTS, async () => {
    const { page } = await openDashboard();
    try {
      await page.waitForSelector('body[data-state="ok"]');
      let asked = 0;
      page.on('request', (r) => {
        if (r.url().includes('/v1/stats')) asked++;
      });
      const setHidden = (hidden) =>
        page.evaluate((h) => {
          Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
          document.dispatchEvent(new Event('visibilitychange'));
        }, hidden);
      await setHidden(true);
      await page.waitForTimeout(500); // a refresh already under way may finish
      asked = 0;
      await page.waitForTimeout(4_000);
      assert.equal(asked, 0, 'no request while hidden (the page refreshes every 3 s when visible)');
      await setHidden(false);
      await page.waitForFunction(() => document.body.dataset.state === 'ok');
      await waitFor('a refresh once shown', () => asked > 0, { timeoutMs: 2_000 });
    } finally {
      await page.close();
    }
  });
});
