// RS256 and ES256 bearer tokens against AUTH_JWKS_FILE (docs/reference/api.md, Authentication):
// private gateways on the stack's NATS, Redis and shards. node:crypto makes the keys and signs the
// tokens as an identity provider would (RS256, ES256 as r || s); the JWKS lives in a temporary
// directory, removed at the end, and is rewritten while a gateway runs (a key rotation, a broken
// file). Then an RS256 token against a gateway with AUTH_JWT_SECRET only, and the configuration
// errors that name the variable.

import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  TEST_OPTS,
  b64url,
  closeAll,
  hs256Jwt,
  http,
  refusedGateway,
  startGateway,
  stopProcess,
  uniqueUser,
  waitFor,
} from './lib.mjs';

const SLOW = { timeout: 30_000 };
const ISSUER = 'https://idp.test/realms/shop';
const AUDIENCE = 'cart-api';
const SECRET = 'jwks-suite-secret-of-at-least-32-bytes';
const dir = mkdtempSync(path.join(tmpdir(), 'cartshard-jwks-'));
const jwksFile = path.join(dir, 'jwks.json');

const now = () => Math.floor(Date.now() / 1000);

/** A new key pair for `alg` (RS256: RSA 2048; ES256: P-256) and its public JWK, as published. */
function makeKey(alg, kid) {
  const { privateKey, publicKey } =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { alg, kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg } };
}

/** A token of `claims` signed with `key`; `header` adds to or overrides the key's alg and kid. */
function signed(key, claims, header = {}) {
  const input = `${b64url({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header })}.${b64url(claims)}`;
  const how = key.alg === 'ES256' ? { key: key.privateKey, dsaEncoding: 'ieee-p1363' } : key.privateKey;
  return `${input}.${sign('sha256', Buffer.from(input), how).toString('base64url')}`;
}

/** Claims for `sub` that the JWKS gateway accepts, with `extra` added or overridden. */
const claims = (sub, extra = {}) => ({ sub, exp: now() + 600, iss: ISSUER, aud: AUDIENCE, ...extra });

/** Writes the JWKS beside its place and renames it over it, as a rotation should be done. */
function publish(keys) {
  writeFileSync(`${jwksFile}.tmp`, JSON.stringify({ keys: keys.map((k) => k.jwk) }));
  renameSync(`${jwksFile}.tmp`, jwksFile);
}

/** GET of `user`'s cart on `gw` with `token`: the answer (404 when the token passed: no cart). */
const getCart = (gw, user, token) =>
  http('GET', `${gw.url}/v1/carts/${user}`, { headers: { Authorization: `Bearer ${token}` } });

/** Asserts a 401 whose detail is `detail`, with the Bearer challenge. */
async function assertRefused(answer, detail) {
  const res = await answer;
  assert.equal(res.status, 401, res.text);
  assert.equal(res.json.detail, detail);
  assert.match(res.headers.get('www-authenticate'), /^Bearer realm="cartshard", error="invalid_token"/);
}

const rsa1 = makeKey('RS256', 'rsa-1');
const ec1 = makeKey('ES256', 'ec-1');

after(async () => {
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('a gateway with AUTH_JWKS_FILE, AUTH_ISSUER and AUTH_AUDIENCE', SLOW, () => {
  let gw;

  before(async () => {
    publish([rsa1, ec1]);
    // Two threads: both verify with the one key set, and both see it change.
    gw = await startGateway({
      AUTH_JWKS_FILE: jwksFile,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      GATEWAY_THREADS: '2',
    });
  });

  after(async () => {
    if (gw) await stopProcess(gw);
  });

  test('RS256 and ES256 tokens work for their own user, and are 403 for another', TEST_OPTS, async () => {
    for (const key of [rsa1, ec1]) {
      const user = uniqueUser('jwks');
      const headers = { Authorization: `Bearer ${signed(key, claims(user))}` };
      const add = await http('POST', `${gw.url}/v1/carts/${user}/items`, { headers, body: { sku: 'A1', quantity: 1 } });
      assert.equal(add.status, 200, `${key.alg}: ${add.text}`);
      assert.equal((await http('GET', `${gw.url}/v1/carts/${user}`, { headers })).status, 200);
      const other = uniqueUser('jwks');
      assert.equal((await http('GET', `${gw.url}/v1/carts/${other}`, { headers })).status, 403);
      const create = await http('POST', `${gw.url}/v1/carts`, { headers, body: { user_id: other } });
      assert.equal(create.status, 403);
    }
  });

  test('an unknown kid, no kid, another key, a mismatched alg, alg none, HS256 and expiry are 401', TEST_OPTS, async () => {
    const user = uniqueUser('jwks');
    const stranger = makeKey('RS256', 'rsa-1');
    await assertRefused(getCart(gw, user, signed(rsa1, claims(user), { kid: 'rsa-9' })), 'unknown kid');
    await assertRefused(getCart(gw, user, signed(rsa1, claims(user), { kid: undefined })), 'kid missing');
    await assertRefused(getCart(gw, user, signed(stranger, claims(user))), 'signature does not match');
    await assertRefused(getCart(gw, user, signed(ec1, claims(user), { kid: 'rsa-1' })), "alg does not match the key's");
    const unsigned = `${b64url({ alg: 'none', kid: 'rsa-1' })}.${b64url(claims(user))}.`;
    await assertRefused(getCart(gw, user, unsigned), 'alg must be HS256, RS256 or ES256');
    // No AUTH_JWT_SECRET here: HS256 is not accepted, whatever key it was made with.
    await assertRefused(getCart(gw, user, hs256Jwt(SECRET, claims(user))), 'alg HS256 not accepted here');
    await assertRefused(getCart(gw, user, signed(ec1, claims(user, { exp: now() - 120 }))), 'token expired');
    await assertRefused(getCart(gw, user, signed(ec1, claims(user, { nbf: now() + 600 }))), 'token not yet valid');
  });

  test('iss and aud must be the configured ones; aud may be an array', TEST_OPTS, async () => {
    const user = uniqueUser('jwks');
    assert.equal((await getCart(gw, user, signed(rsa1, claims(user, { aud: ['account', AUDIENCE] })))).status, 404);
    await assertRefused(getCart(gw, user, signed(rsa1, claims(user, { aud: 'account' }))), 'wrong audience');
    await assertRefused(getCart(gw, user, signed(ec1, claims(user, { aud: ['account', 'web'] }))), 'wrong audience');
    await assertRefused(getCart(gw, user, signed(ec1, claims(user, { aud: undefined }))), 'aud missing');
    await assertRefused(getCart(gw, user, signed(rsa1, claims(user, { iss: `${ISSUER}/` }))), 'wrong issuer');
  });

  test("a merge's from_token is checked like the bearer token: RS256 or ES256, iss and aud", TEST_OPTS, async () => {
    for (const [userKey, guestKey] of [
      [rsa1, ec1],
      [ec1, rsa1],
    ]) {
      const user = uniqueUser('jwks-u');
      const guest = uniqueUser('jwks-g');
      const asGuest = { Authorization: `Bearer ${signed(guestKey, claims(guest))}` };
      const add = await http('POST', `${gw.url}/v1/carts/${guest}/items`, {
        headers: asGuest,
        body: { sku: 'G1', quantity: 2 },
      });
      assert.equal(add.status, 200, add.text);
      const headers = { Authorization: `Bearer ${signed(userKey, claims(user))}` };
      const merge = (fromToken) =>
        http('POST', `${gw.url}/v1/carts/${user}/merge`, { headers, body: { from: guest, from_token: fromToken } });
      for (const bad of [
        signed(guestKey, claims(guest, { aud: 'account' })),
        signed(guestKey, claims(guest, { iss: `${ISSUER}/` })),
        signed(guestKey, claims(user)),
        hs256Jwt(SECRET, claims(guest)),
      ]) {
        const res = await merge(bad);
        assert.equal(res.status, 403, `${guestKey.alg}: ${res.text}`);
        assert.match(res.json.detail, /^from_token: /);
      }
      const res = await merge(signed(guestKey, claims(guest)));
      assert.equal(res.status, 200, `${guestKey.alg}: ${res.text}`);
      assert.deepEqual(
        res.json.items.map((i) => [i.sku, i.quantity]),
        [['G1', 2]],
      );
    }
  });

  test('a key rotation is picked up without a restart; a broken file keeps the keys in force', SLOW, async () => {
    const user = uniqueUser('jwks');
    const rsa2 = makeKey('RS256', 'rsa-2');
    const oldToken = signed(rsa1, claims(user));
    const newToken = signed(rsa2, claims(user));
    const pid = gw.pid;
    await assertRefused(getCart(gw, user, newToken), 'unknown kid');

    publish([rsa2, ec1]);
    // Several requests each round, so that both threads are seen to have the new set.
    const allOf = async (token, status) => {
      const answers = await Promise.all([1, 2, 3, 4].map(() => getCart(gw, user, token)));
      return answers.every((r) => r.status === status);
    };
    await waitFor('the new key to be accepted', () => allOf(newToken, 404), { timeoutMs: 8000 });
    await assertRefused(getCart(gw, user, oldToken), 'unknown kid');
    assert.equal(await allOf(oldToken, 401), true);

    // A rotation gone wrong (a key of a kind the gateway cannot use): logged, and ignored.
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ kty: 'oct', kid: 'h', k: 'c2VjcmV0' }] }));
    await waitFor('the broken file to be reported', () => /AUTH_JWKS_FILE: key 1: unsupported kty/.test(gw.log()), {
      timeoutMs: 8000,
    });
    assert.equal(await allOf(newToken, 404), true, 'the keys in force are kept');

    // Rewritten in place this time, with the old key back.
    writeFileSync(jwksFile, JSON.stringify({ keys: [rsa1.jwk] }));
    await waitFor('the old key to be accepted again', () => allOf(oldToken, 404), { timeoutMs: 8000 });
    assert.equal(await allOf(newToken, 401), true);
    assert.equal(gw.pid, pid);
    assert.equal(gw.exitCode, null, 'no restart');
  });
});

describe('a gateway with AUTH_JWT_SECRET only', SLOW, () => {
  test('refuses RS256 and ES256 tokens, and HS256 headed as RS256', SLOW, async () => {
    const gw = await startGateway({ AUTH_JWT_SECRET: SECRET });
    try {
      const user = uniqueUser('jwks');
      const mine = { sub: user, exp: now() + 600 };
      assert.equal((await getCart(gw, user, hs256Jwt(SECRET, mine))).status, 404, 'HS256 still works');
      await assertRefused(getCart(gw, user, signed(rsa1, mine)), 'alg RS256 not accepted here');
      await assertRefused(getCart(gw, user, signed(ec1, mine)), 'alg ES256 not accepted here');
      // An HMAC under the secret, but the header says RS256: never verified with the secret.
      const confused = hs256Jwt(SECRET, mine, { alg: 'RS256', typ: 'JWT', kid: 'rsa-1' });
      await assertRefused(getCart(gw, user, confused), 'alg RS256 not accepted here');
    } finally {
      await stopProcess(gw);
    }
  });
});

describe('JWKS configuration errors name the variable', () => {
  test('a missing file, a key of an unsupported kind, an audience without auth', TEST_OPTS, async () => {
    let r = await refusedGateway({ AUTH_JWKS_FILE: path.join(dir, 'nope.json') });
    assert.equal(r.code, 2);
    assert.match(r.log, /cart-gateway: AUTH_JWKS_FILE: .*nope\.json: No such file or directory/);
    const bad = path.join(dir, 'oct.json');
    writeFileSync(bad, JSON.stringify({ keys: [rsa1.jwk, { kty: 'oct', kid: 'h', k: 'c2VjcmV0' }] }));
    r = await refusedGateway({ AUTH_JWKS_FILE: bad });
    assert.equal(r.code, 2);
    assert.match(r.log, /cart-gateway: AUTH_JWKS_FILE: key 2: unsupported kty "oct"/);
    r = await refusedGateway({ AUTH_AUDIENCE: AUDIENCE });
    assert.equal(r.code, 2);
    assert.match(r.log, /AUTH_AUDIENCE: set, but auth is off/);
  });
});
