// Access control (docs/reference/api.md: Authentication, Rate limiting): JWT auth on a gateway
// started with AUTH_JWT_SECRET, and the rate limit that several gateways share through Redis.
// The suite starts private gateways on free loopback ports, each on a database of the test
// stack's Redis of its own, and stops them by pid.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { REDIS_URL, b64url, closeAll, hs256Jwt, http, startGateway, stopProcess as stop, uniqueUser } from './lib.mjs';

const SLOW = { timeout: 30_000 };

after(closeAll);

/** Another database of the test stack's Redis, so private limits never touch the stack's keys. */
function redisDb(n) {
  const u = new URL(REDIS_URL);
  u.pathname = `/${n}`;
  return u.toString();
}

describe('JWT auth', SLOW, () => {
  const secret = 'test-secret-0123456789abcdef-0123456789';
  const now = () => Math.floor(Date.now() / 1000);
  let gw;

  test('starts a gateway with AUTH_JWT_SECRET', SLOW, async () => {
    gw = await startGateway({ AUTH_JWT_SECRET: secret, REDIS_URL: redisDb(2) });
  });

  test('no token, a forged one, alg none and an expired one are 401', SLOW, async () => {
    const user = uniqueUser('jwt');
    const path = `${gw.url}/v1/carts/${user}`;
    const good = hs256Jwt(secret, { sub: user, exp: now() + 600 });
    const cases = {
      missing: {},
      'not bearer': { Authorization: `Basic ${b64url('a:b')}` },
      forged: { Authorization: `Bearer ${hs256Jwt('another-secret-0123456789abcdef-0123', { sub: user, exp: now() + 600 })}` },
      tampered: { Authorization: `Bearer ${good.slice(0, -2)}${good.endsWith('AA') ? 'AB' : 'AA'}` },
      'alg none': { Authorization: `Bearer ${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: user, exp: now() + 600 })}.` },
      'alg HS512': { Authorization: `Bearer ${hs256Jwt(secret, { sub: user, exp: now() + 600 }, { alg: 'HS512' })}` },
      expired: { Authorization: `Bearer ${hs256Jwt(secret, { sub: user, exp: now() - 120 })}` },
      'no exp': { Authorization: `Bearer ${hs256Jwt(secret, { sub: user })}` },
      malformed: { Authorization: 'Bearer abc.def' },
    };
    for (const [name, headers] of Object.entries(cases)) {
      for (const method of ['GET', 'POST']) {
        const res =
          method === 'GET'
            ? await http('GET', path, { headers })
            : await http('POST', `${path}/items`, { headers, body: { sku: 'A1', quantity: 1 } });
        assert.equal(res.status, 401, `${name} ${method}: ${res.text}`);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /, `${name}: WWW-Authenticate`);
        assert.match(res.headers.get('content-type'), /^application\/problem\+json/);
      }
    }
    assert.equal((await http('GET', `/v1/carts/${user}`)).status, 404, 'nothing was written');
  });

  test("a valid token works only for its own user: 403 for another's path or body", SLOW, async () => {
    const user = uniqueUser('jwt');
    const auth = { Authorization: `Bearer ${hs256Jwt(secret, { sub: user, exp: now() + 600 })}` };
    const add = await http('POST', `${gw.url}/v1/carts/${user}/items`, { headers: auth, body: { sku: 'A1', quantity: 1 } });
    assert.equal(add.status, 200, add.text);
    assert.equal((await http('GET', `${gw.url}/v1/carts/${user}`, { headers: auth })).status, 200);
    const other = uniqueUser('jwt');
    assert.equal((await http('GET', `${gw.url}/v1/carts/${other}`, { headers: auth })).status, 403);
    const del = await http('DELETE', `${gw.url}/v1/carts/${other}`, { headers: auth });
    assert.equal(del.status, 403);
    const create = await http('POST', `${gw.url}/v1/carts`, { headers: auth, body: { user_id: other } });
    assert.equal(create.status, 403);
    const createOwn = await http('POST', `${gw.url}/v1/carts`, { headers: auth, body: { user_id: user } });
    assert.equal(createOwn.status, 200, 'the existing cart');
    assert.equal((await http('GET', `${gw.url}/healthz`)).status, 200, 'probes need no token');
    await stop(gw);
  });
});

describe('rate limiting shared through Redis', SLOW, () => {
  test('two gateways on one Redis together allow the limit, not twice it', SLOW, async () => {
    const env = { RATE_LIMIT_RPS: '1', RATE_LIMIT_BURST: '10', REDIS_URL: redisDb(3) };
    const [a, b] = await Promise.all([startGateway(env), startGateway(env)]);
    const user = uniqueUser('rl');
    const started = Date.now();
    const answers = [];
    for (let i = 0; i < 30; i++) answers.push(await http('GET', `${(i % 2 ? a : b).url}/v1/carts/${user}`));
    const seconds = (Date.now() - started) / 1000;
    const allowed = answers.filter((r) => r.status === 404).length;
    const limited = answers.filter((r) => r.status === 429);
    assert.equal(allowed + limited.length, 30, 'only 404 (allowed, no cart) and 429');
    assert.ok(allowed >= 10, `the burst is allowed (${allowed})`);
    assert.ok(allowed <= 10 + Math.ceil(seconds) + 1, `${allowed} allowed in ${seconds.toFixed(2)} s: one budget`);
    const r = limited[0];
    assert.match(r.headers.get('content-type'), /^application\/problem\+json/);
    assert.equal(r.json.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.equal(r.headers.get('ratelimit-limit'), '10');
    assert.equal(r.headers.get('ratelimit-remaining'), '0');
    assert.ok(Number(r.headers.get('ratelimit-reset')) >= 1);
    const ok = answers.find((x) => x.status === 404);
    assert.equal(ok.headers.get('ratelimit-limit'), '10');
    await Promise.all([stop(a), stop(b)]);
  });
});
