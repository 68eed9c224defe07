// CORS as a browser sees it: Debian's chromium, driven headless by playwright-core, loads a page
// from a listed origin and from an unlisted one and calls a private gateway started with
// CORS_ALLOWED_ORIGINS from the page's script. The listed page's preflighted writes go through and
// its script reads the exposed headers; the unlisted page's writes never leave the browser, and
// its reads cannot be read. (http-front.test.mjs checks the headers themselves.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';

import { chromium } from 'playwright-core';

import { closeAll, freePort, http as request, startGateway, uniqueUser } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const OPTS = { timeout: 30_000 };

let browser;
let gw;
const pages = {}; // name -> { server, url }

/** A one-page site on its own port: the origin a script runs from. */
async function site() {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>shop</title><p>shop</p>');
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${port}` };
}

/** Runs `fn(gatewayUrl, user)` in a fresh page of `origin`; resolves to what it returns. */
async function inPage(origin, fn, user) {
  const page = await browser.newPage();
  try {
    await page.goto(`${origin}/`);
    return await page.evaluate(fn, { gateway: gw.url, user });
  } finally {
    await page.close();
  }
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is installed (scripts/dev installs Debian's chromium)`);
  pages.shop = await site();
  pages.other = await site();
  gw = await startGateway({ CORS_ALLOWED_ORIGINS: pages.shop.url, RATE_LIMIT_RPS: '1000', RATE_LIMIT_BURST: '1000' });
  // Running as root needs --no-sandbox; the pages are ours, on 127.0.0.1.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  for (const p of Object.values(pages)) p.server.close();
  await closeAll();
});

describe('a browser on a listed origin', () => {
  test('preflighted writes go through and the script reads ETag, X-Request-Id and RateLimit-*', OPTS, async () => {
    const user = uniqueUser('browser');
    const seen = await inPage(
      pages.shop.url,
      async ({ gateway, user: u }) => {
        const json = { 'Content-Type': 'application/json' };
        const add = await fetch(`${gateway}/v1/carts/${u}/items`, {
          method: 'POST',
          headers: { ...json, 'Idempotency-Key': `k-${u}`, 'X-Request-Id': 'from-the-page' },
          body: JSON.stringify({ sku: 'A1', quantity: 2 }),
        });
        const etag = add.headers.get('etag');
        const set = await fetch(`${gateway}/v1/carts/${u}/items/A1`, {
          method: 'PUT',
          headers: { ...json, 'If-Match': etag },
          body: JSON.stringify({ quantity: 5 }),
        });
        const stale = await fetch(`${gateway}/v1/carts/${u}/items/A1`, {
          method: 'PUT',
          headers: { ...json, 'If-Match': etag },
          body: JSON.stringify({ quantity: 6 }),
        });
        const read = await fetch(`${gateway}/v1/carts/${u}`, { headers: { 'If-None-Match': set.headers.get('etag') } });
        return {
          add: add.status,
          etag,
          requestId: add.headers.get('x-request-id'),
          remaining: add.headers.get('ratelimit-remaining'),
          set: set.status,
          items: (await set.json()).items,
          stale: stale.status,
          staleType: (await stale.json()).type,
          read: read.status,
        };
      },
      user,
    );
    assert.match(seen.remaining ?? '', /^\d+$/, 'RateLimit-Remaining is readable');
    delete seen.remaining;
    assert.deepEqual(seen, {
      add: 200,
      etag: '"1"',
      requestId: 'from-the-page',
      set: 200,
      items: [{ sku: 'A1', quantity: 5 }],
      stale: 412,
      staleType: 'urn:cartshard:problem:precondition-failed',
      read: 304,
    });
  });
});

describe('a browser on an unlisted origin', () => {
  test('its preflighted write never leaves the browser, and its read cannot be read', OPTS, async () => {
    const user = uniqueUser('browser');
    const seen = await inPage(
      pages.other.url,
      async ({ gateway, user: u }) => {
        const outcome = async (p) => p.then((r) => `status ${r.status}`, (err) => err.name);
        return {
          write: await outcome(
            fetch(`${gateway}/v1/carts/${u}/items`, {
              method: 'POST',
              headers: { 'Content-Type': 'application/json' },
              body: JSON.stringify({ sku: 'A1', quantity: 1 }),
            }),
          ),
          read: await outcome(fetch(`${gateway}/v1/carts/${u}`)),
        };
      },
      user,
    );
    assert.deepEqual(seen, { write: 'TypeError', read: 'TypeError' });
    // The preflight was refused, so the write itself was never sent.
    assert.equal((await request('GET', `${gw.url}/v1/carts/${user}`)).status, 404);
  });
});
