// The gateway's HTTP front against the RFCs real clients, proxies and browsers rely on
// (docs/internals/http-front.md): conditional requests with the whole entity-tag grammar (RFC 9110
// section 13), percent-encoded paths (RFC 3986), message framing, Host and header sizes (RFC 9112,
// RFC 6585), Expect: 100-continue, CORS (a private gateway with CORS_ALLOWED_ORIGINS), and
// problem details that name no library option. The framing cases go over raw sockets: fetch
// would not send them.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import {
  GATEWAY_URL,
  TEST_OPTS,
  addItem,
  assertProblem,
  closeAll,
  http,
  startGateway,
  uniqueUser,
} from './lib.mjs';

after(closeAll);

const GATEWAY = new URL(GATEWAY_URL);
const JSON_CT = { 'Content-Type': 'application/json' };

/**
 * Writes `raw` to the gateway (or `port`) on a fresh connection and collects what comes back
 * until the server closes the connection or `quietMs` pass without a byte. Resolves to
 * { text, closed, responses } where responses are the status codes in order.
 */
function rawExchange(raw, { port = Number(GATEWAY.port), quietMs = 400, write } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    let timer;
    const done = (closed) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ text, closed, responses: [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1])) });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => done(false), quietMs);
    };
    sock.on('connect', () => {
      if (write) write(sock);
      else sock.write(raw);
      arm();
    });
    sock.on('data', (d) => {
      text += d.toString('latin1');
      arm();
    });
    sock.on('end', () => done(true));
    sock.on('error', (err) => (text === '' ? reject(err) : done(true)));
  });
}

/** The body of the first response in a raw exchange, parsed as JSON. */
function firstBody(text) {
  const start = text.indexOf('\r\n\r\n') + 4;
  const length = Number(/^content-length: *(\d+)/im.exec(text)[1]);
  return JSON.parse(text.slice(start, start + length));
}

/** A user with an active cart at version 2 (created by an add, then one more add). */
async function cartAtVersion2(prefix) {
  const user = uniqueUser(prefix);
  assert.equal((await addItem(user, 'A1', 1)).status, 200);
  const res = await addItem(user, 'B2', 1);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('etag'), '"2"');
  return user;
}

describe('If-None-Match: RFC 9110 section 13.1.2, weak comparison', () => {
  test('a list, a weak tag, "*" and several field lines match; others do not', TEST_OPTS, async () => {
    const user = await cartAtVersion2('inm');
    const path = `/v1/carts/${user}`;
    for (const value of ['"2"', '"1", "2"', 'W/"2"', ' "7" ,W/"2" , ', '*', '"x", "2"']) {
      const res = await http('GET', path, { headers: { 'If-None-Match': value } });
      assert.equal(res.status, 304, `If-None-Match: ${value}`);
      assert.equal(res.headers.get('etag'), '"2"');
      assert.equal(res.text, '');
    }
    for (const value of ['"1"', 'W/"1", "3"', '"02x"', '"abc"']) {
      const res = await http('GET', path, { headers: { 'If-None-Match': value } });
      assert.equal(res.status, 200, `If-None-Match: ${value}`);
      assert.equal(res.json.version, 2);
    }
    // Two field lines make one list (RFC 9110 section 5.3).
    const two = await rawExchange(
      `GET ${path} HTTP/1.1\r\nHost: a\r\nIf-None-Match: "1"\r\nIf-None-Match: "2"\r\nConnection: close\r\n\r\n`,
    );
    assert.deepEqual(two.responses, [304]);
  });

  test('a malformed value is 400 invalid-header', TEST_OPTS, async () => {
    const user = await cartAtVersion2('inmbad');
    for (const value of ['2', '"2', '"2" "3"', '*, "2"', 'w/"2"']) {
      const res = await http('GET', `/v1/carts/${user}`, { headers: { 'If-None-Match': value } });
      const p = assertProblem(res, 400);
      assert.match(p.type, /invalid-header$/);
      assert.match(p.detail, /^If-None-Match: /);
    }
  });

  test('"*" on a user without an active cart is still 404', TEST_OPTS, async () => {
    const res = await http('GET', `/v1/carts/${uniqueUser('inmnone')}`, { headers: { 'If-None-Match': '*' } });
    assertProblem(res, 404);
  });
});

describe('If-Match: RFC 9110 section 13.1.1, strong comparison', () => {
  test('"*" needs an active cart: 412 without one, applied with one', TEST_OPTS, async () => {
    const fresh = uniqueUser('imany');
    const refused = await addItem(fresh, 'A1', 1, { 'If-Match': '*' });
    assertProblem(refused, 412);
    assertProblem(await http('GET', `/v1/carts/${fresh}`), 404);
    const user = await cartAtVersion2('imany2');
    const res = await addItem(user, 'C3', 1, { 'If-Match': '*' });
    assert.equal(res.status, 200);
    assert.equal(res.json.version, 3);
  });

  test('a list applies when one of its tags is the version, else 412 and nothing changes', TEST_OPTS, async () => {
    const user = await cartAtVersion2('imlist');
    const ok = await addItem(user, 'C3', 1, { 'If-Match': '"1", "2", "9"' });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.version, 3);
    const stale = await addItem(user, 'C3', 1, { 'If-Match': '"1", "2"' });
    const p = assertProblem(stale, 412);
    assert.match(p.detail, /version is 3/);
    assert.equal((await http('GET', `/v1/carts/${user}`)).json.version, 3);
  });

  test('a weak tag never matches: 412 at once, even for the current version', TEST_OPTS, async () => {
    const user = await cartAtVersion2('imweak');
    const res = await http('DELETE', `/v1/carts/${user}`, { headers: { 'If-Match': 'W/"2"' } });
    assertProblem(res, 412);
    assert.equal((await http('GET', `/v1/carts/${user}`)).json.version, 2);
  });

  test('several field lines make one list', TEST_OPTS, async () => {
    const user = await cartAtVersion2('imlines');
    const body = '{"sku":"D4","quantity":1}';
    const res = await rawExchange(
      `POST /v1/carts/${user}/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n` +
        `If-Match: "1"\r\nIf-Match: "2"\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      { quietMs: 3000 },
    );
    assert.deepEqual(res.responses, [200]);
    assert.equal(firstBody(res.text).version, 3);
  });

  test('a malformed value is 400 and changes nothing', TEST_OPTS, async () => {
    const user = await cartAtVersion2('imbad');
    for (const value of ['2', '"2" "3"', '*, "2"', '"2",,"3', '']) {
      const res = await addItem(user, 'E5', 1, { 'If-Match': value });
      assertProblem(res, 400);
    }
    assert.equal((await http('GET', `/v1/carts/${user}`)).json.version, 2);
  });
});

describe('paths: RFC 3986 percent-encoding', () => {
  test('an encoded ":" reaches the same cart, for reads and writes', TEST_OPTS, async () => {
    const user = `anon:${uniqueUser('pct')}`;
    const encoded = encodeURIComponent(user);
    assert.notEqual(encoded, user);
    const created = await http('POST', `/v1/carts/${encoded}/items`, { body: { sku: 'A1', quantity: 2 } });
    assert.equal(created.status, 200);
    assert.equal(created.json.user_id, user);
    const plain = await http('GET', `/v1/carts/${user}`);
    assert.equal(plain.status, 200);
    assert.equal(plain.json.cart_id, created.json.cart_id);
    const set = await http('PUT', `/v1/carts/${encoded}/items/%41%31`, { body: { quantity: 5 } });
    assert.equal(set.status, 200);
    assert.deepEqual(set.json.items, [{ sku: 'A1', quantity: 5 }]);
  });

  test('an escape that decodes outside the alphabet, or is malformed, is 400', TEST_OPTS, async () => {
    for (const path of ['/v1/carts/a%2Fb', '/v1/carts/a%2fb/checkout', '/v1/carts/a%20b', '/v1/carts/a%zz', '/v1/carts/a%4']) {
      const res = await http(path.endsWith('checkout') ? 'POST' : 'GET', path);
      const p = assertProblem(res, 400);
      assert.match(p.detail, /^(user_id|path): /, path);
    }
  });
});

describe('framing and Host: RFC 9112', () => {
  test('Content-Length with Transfer-Encoding is 400 and the connection is closed', TEST_OPTS, async () => {
    const user = uniqueUser('smuggle');
    const smuggled = `GET /v1/carts/${user} HTTP/1.1\r\nHost: a\r\n\r\n`;
    const body = '{"sku":"A1","quantity":1}';
    const chunk = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const res = await rawExchange(
      `POST /v1/carts/${user}/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${chunk.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}${smuggled}`,
    );
    assert.deepEqual(res.responses, [400], 'one answer; the request behind it is never read');
    assert.ok(res.closed, 'the connection is closed');
    assert.match(res.text, /^connection: close/im);
    assert.match(firstBody(res.text).detail, /framed two ways/);
    assertProblem(await http('GET', `/v1/carts/${user}`), 404); // and the add was not applied
  });

  test('two different Content-Lengths are 400', TEST_OPTS, async () => {
    const res = await rawExchange(
      'POST /v1/carts HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n' +
        'Content-Length: 3\r\n\r\n{} ',
    );
    assert.equal(res.responses[0], 400);
  });

  test('an HTTP/1.1 request without Host, or with two, is 400; HTTP/1.0 needs none', TEST_OPTS, async () => {
    const none = await rawExchange('GET /v1/carts/u1 HTTP/1.1\r\nConnection: close\r\n\r\n');
    assert.deepEqual(none.responses, [400]);
    assert.match(firstBody(none.text).detail, /needs a Host/);
    const two = await rawExchange('GET /v1/carts/u1 HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n');
    assert.deepEqual(two.responses, [400]);
    assert.match(firstBody(two.text).detail, /more than one Host/);
    const old = await rawExchange('GET /healthz HTTP/1.0\r\n\r\n');
    assert.match(old.text, /^HTTP\/1\.1 200/);
  });
});

describe('header sizes: 431 (GATEWAY_MAX_HEADER_BYTES, 8 KiB a field, 32 KiB in all)', () => {
  test('one field over 8 KiB, and many fields over 32 KiB, are 431; 8 KiB is accepted', TEST_OPTS, async () => {
    const user = await cartAtVersion2('hdr');
    const path = `/v1/carts/${user}`;
    // "x-pad: " is 7 bytes: the field line is exactly 8192 bytes.
    const exact = await http('GET', path, { headers: { 'x-pad': 'a'.repeat(8192 - 7) } });
    assert.equal(exact.status, 200);
    const over = await http('GET', path, { headers: { 'x-pad': 'a'.repeat(8192 - 6) } });
    const p = assertProblem(over, 431);
    assert.match(p.type, /header-too-large$/);
    const many = {};
    for (let i = 0; i < 5; i++) many[`x-pad-${i}`] = 'b'.repeat(7000);
    assertProblem(await http('GET', path, { headers: many }), 431);
    const huge = await rawExchange(`GET ${path} HTTP/1.1\r\nHost: a\r\nX-Big: ${'c'.repeat(200_000)}\r\nConnection: close\r\n\r\n`);
    assert.equal(huge.responses[0], 431, 'a 200 KB header is refused, not served');
  });
});

describe('bodies over the limit: 413 at once', () => {
  test('Expect: 100-continue with a length over the limit is 413 without a 100 and without the body', TEST_OPTS, async () => {
    const user = uniqueUser('expect');
    const res = await rawExchange(
      `POST /v1/carts/${user}/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n` +
        'Content-Length: 20000\r\nExpect: 100-continue\r\n\r\n',
    );
    assert.deepEqual(res.responses, [413], 'no 100 Continue first');
    assert.match(res.text, /^content-type: application\/problem\+json/im);
    const p = firstBody(res.text);
    assert.equal(p.status, 413);
    assert.match(p.type, /payload-too-large$/);
    assert.equal(p.detail, 'the body is over 16384 bytes');
  });

  test('Expect: 100-continue within the limit gets its 100 and its answer', TEST_OPTS, async () => {
    const user = uniqueUser('expectok');
    const body = '{"sku":"A1","quantity":1}';
    const res = await rawExchange(null, {
      quietMs: 3000,
      write: (sock) => {
        sock.write(
          `POST /v1/carts/${user}/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
        );
        sock.once('data', () => sock.write(body));
      },
    });
    assert.deepEqual(res.responses, [100, 200]);
  });
});

describe('problem details name no library option', () => {
  test('a NUL in a JSON string is refused in our own words', TEST_OPTS, async () => {
    const res = await http('POST', `/v1/carts/${uniqueUser('nul')}/items`, {
      body: '{"sku":"A\\u0000B","quantity":1}',
      headers: JSON_CT,
    });
    const p = assertProblem(res, 400);
    assert.doesNotMatch(p.detail, /JSON_/);
    assert.match(p.detail, /NUL/);
  });
});

describe('OPTIONS and CORS (CORS_ALLOWED_ORIGINS)', () => {
  const SHOP = 'https://shop.example';
  const LOCAL = 'http://127.0.0.1:3000';
  let gw;

  test('without CORS: OPTIONS says the methods, and no origin is granted', TEST_OPTS, async () => {
    const res = await http('OPTIONS', `/v1/carts/${uniqueUser('opt')}/items/A1`, { headers: { Origin: SHOP } });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('allow'), 'PUT, DELETE, OPTIONS');
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    const get = await http('GET', `/v1/carts/${uniqueUser('opt')}`, { headers: { Origin: SHOP } });
    assert.equal(get.headers.get('access-control-allow-origin'), null);
  });

  test('a listed origin gets the preflight answered and its responses readable', { timeout: 20_000 }, async () => {
    gw = await startGateway({ CORS_ALLOWED_ORIGINS: `${SHOP}, ${LOCAL}`, RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' });
    const user = uniqueUser('cors');
    const pre = await http('OPTIONS', `${gw.url}/v1/carts/${user}/items/A1`, {
      headers: {
        Origin: SHOP,
        'Access-Control-Request-Method': 'PUT',
        'Access-Control-Request-Headers': 'content-type, if-match, idempotency-key',
      },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), SHOP);
    assert.equal(pre.headers.get('access-control-allow-methods'), 'PUT, DELETE, OPTIONS');
    const allowed = pre.headers.get('access-control-allow-headers').split(',').map((h) => h.trim().toLowerCase());
    for (const h of ['content-type', 'authorization', 'if-match', 'if-none-match', 'idempotency-key', 'prefer', 'x-request-id', 'traceparent']) {
      assert.ok(allowed.includes(h), `${h} may be sent`);
    }
    assert.equal(pre.headers.get('access-control-max-age'), '600');
    assert.match(pre.headers.get('vary'), /Origin/);

    const add = await http('POST', `${gw.url}/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 1 }, headers: { Origin: LOCAL } });
    assert.equal(add.status, 200);
    assert.equal(add.headers.get('access-control-allow-origin'), LOCAL);
    const exposed = add.headers.get('access-control-expose-headers').split(',').map((h) => h.trim());
    assert.deepEqual(exposed, [
      'ETag',
      'Location',
      'RateLimit-Limit',
      'RateLimit-Remaining',
      'RateLimit-Reset',
      'Retry-After',
      'X-Request-Id',
      'Idempotent-Replayed',
    ]);
    // Errors are readable too.
    const bad = await http('GET', `${gw.url}/v1/carts/${uniqueUser('cors')}`, { headers: { Origin: SHOP } });
    assert.equal(bad.status, 404);
    assert.equal(bad.headers.get('access-control-allow-origin'), SHOP);
  });

  test('an unlisted origin gets no CORS headers, never a wider grant', { timeout: 20_000 }, async () => {
    assert.ok(gw, 'the CORS gateway runs');
    const user = uniqueUser('cors');
    for (const origin of ['https://evil.example', 'https://shop.example.evil', 'http://shop.example', 'null', 'https://SHOP.example:443']) {
      const pre = await http('OPTIONS', `${gw.url}/v1/carts/${user}/items`, { headers: { Origin: origin, 'Access-Control-Request-Method': 'POST' } });
      assert.equal(pre.status, 204, origin);
      for (const h of ['access-control-allow-origin', 'access-control-allow-methods', 'access-control-allow-headers', 'access-control-expose-headers']) {
        assert.equal(pre.headers.get(h), null, `${origin}: no ${h}`);
      }
      const get = await http('GET', `${gw.url}/v1/carts/${user}`, { headers: { Origin: origin } });
      assert.equal(get.headers.get('access-control-allow-origin'), null, origin);
      assert.match(get.headers.get('vary') ?? '', /Origin/, 'the answer varies with Origin');
    }
  });
});
