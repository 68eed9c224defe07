// docs/openapi.yaml against the running gateway (GATEWAY_URL).
//
// Every operation of the spec is called for each status it can answer today (200, 201, 202, 204,
// 304, 400, 404, 405, 409, 412, 413, 415, 422 of both types; 401, 403 and 429 from a private
// gateway with auth on and a small rate limit, and the 403 of a price without the cart:price
// scope from another), and each response is checked against the spec:
// the status must be documented for that operation, every required header present and every
// documented header valid, the Content-Type one of the documented media types, and the body valid
// against the schema (JSON Schema 2020-12 through Ajv, $refs resolved to components). The valid
// requests are checked against the spec too (path parameters, headers, request bodies), so the
// spec accepts what the gateway serves. The spec's own examples are validated as well, since
// Spectral (lint_openapi in scripts/lib/test.sh) does not look at `examples` inside schemas.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

import { REDIS_URL, TEST_OPTS, closeAll, hs256Jwt, http, startGateway, uniqueUser } from './lib.mjs';

after(closeAll);

const SPEC_FILE = new URL('../../docs/openapi.yaml', import.meta.url);
// The gateway's part of the spec: a path with servers of its own is another service's
// (cart-stats, on its own port), which the stats suites check.
const spec = YAML.parse(readFileSync(SPEC_FILE, 'utf8'));
for (const [path, item] of Object.entries(spec.paths)) if (item.servers) delete spec.paths[path];

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const JSON_HEADERS = { 'Content-Type': 'application/json' };

// ---------------------------------------------------------------------------------------------
// the spec: $refs and schemas

/** The node a local $ref ("#/components/...") points at. */
function pointer(ref) {
  assert.ok(typeof ref === 'string' && ref.startsWith('#/'), `only local $refs are used: ${ref}`);
  let node = spec;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    assert.ok(node !== null && typeof node === 'object' && key in node, `$ref ${ref} resolves`);
    node = node[key];
  }
  return node;
}

/** Follows $refs until a node that is not one (responses, headers, parameters, examples). */
function deref(node) {
  for (let hops = 0; node && typeof node === 'object' && typeof node.$ref === 'string'; hops++) {
    assert.ok(hops < 16, 'no $ref cycle');
    node = pointer(node.$ref);
  }
  return node;
}

const SCHEMAS_ID = 'urn:cartshard:openapi:schemas';
const COMPONENT_SCHEMA = '#/components/schemas/';

/** A deep copy of a schema with every "#/components/schemas/X" rewritten to prefix + X. */
function rewriteRefs(node, prefix) {
  if (Array.isArray(node)) return node.map((v) => rewriteRefs(v, prefix));
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref' && typeof v === 'string' && v.startsWith(COMPONENT_SCHEMA)) {
      out[k] = prefix + v.slice(COMPONENT_SCHEMA.length);
    } else {
      out[k] = rewriteRefs(v, prefix);
    }
  }
  return out;
}

const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);
// OpenAPI's own schema keywords, allowed next to JSON Schema's.
ajv.addVocabulary(['example', 'xml', 'externalDocs', 'discriminator']);
// components.schemas become the $defs of one schema, so their $refs to each other resolve.
ajv.addSchema({ $id: SCHEMAS_ID, $defs: rewriteRefs(spec.components?.schemas ?? {}, '#/$defs/') });

const compiled = new WeakMap();

/** The Ajv validator of a schema taken from the spec (compiled once). */
function validatorOf(schema) {
  let v = compiled.get(schema);
  if (v === undefined) {
    v = ajv.compile(rewriteRefs(schema, `${SCHEMAS_ID}#/$defs/`));
    compiled.set(schema, v);
  }
  return v;
}

/** Asserts that `data` is valid against `schema`; `where` names the place in messages. */
function assertValid(where, schema, data) {
  const validate = validatorOf(schema);
  if (!validate(data)) {
    const errors = validate.errors.map((e) => `${e.instancePath || '(root)'} ${e.message}`).join('; ');
    assert.fail(`${where}: ${errors}\n  value: ${JSON.stringify(data)}`);
  }
}

/** The schema itself when it is a $ref to a component (to know its type). */
function schemaTarget(schema) {
  return schema && typeof schema.$ref === 'string' ? deref(schema) : schema;
}

/** A header's or parameter's string value as its schema sees it (integers as numbers). */
function coerce(schema, value) {
  const type = schemaTarget(schema)?.type;
  if ((type === 'integer' || type === 'number') && /^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  return value;
}

function mediaType(value) {
  const [essence, ...params] = value.split(';').map((s) => s.trim());
  const out = { essence: essence.toLowerCase(), params: {} };
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq > 0) out.params[p.slice(0, eq).trim().toLowerCase()] = p.slice(eq + 1).trim().replace(/^"|"$/g, '');
  }
  return out;
}

/** The documented media type object that a response's Content-Type matches, or null. */
function matchContent(content, contentType) {
  const got = mediaType(contentType);
  for (const [key, media] of Object.entries(content)) {
    const want = mediaType(key);
    if (want.essence === got.essence && Object.entries(want.params).every(([k, v]) => got.params[k] === v)) {
      return media;
    }
  }
  return null;
}

const isJsonType = (essence) => essence === 'application/json' || essence.endsWith('+json');

// ---------------------------------------------------------------------------------------------
// responses against the spec

/** Statuses seen per operationId, and over all (for the coverage check at the end). */
const seen = new Map();
const seenStatuses = new Set();

function record(key, status) {
  if (!seen.has(key)) seen.set(key, new Set());
  seen.get(key).add(status);
  seenStatuses.add(status);
}

function operationOf(method, template) {
  const item = spec.paths?.[template];
  assert.ok(item, `path ${template} is in the spec`);
  const op = item[method.toLowerCase()];
  assert.ok(op, `${method} ${template} is in the spec`);
  return op;
}

/** Validates one header value against a header object of the spec. */
function checkHeader(where, name, headerObj, value) {
  const h = deref(headerObj);
  if (value === null) {
    assert.ok(!h.required, `${where}: the required header ${name} is missing`);
    return;
  }
  assertValid(`${where}: header ${name}`, h.schema, coerce(h.schema, value));
}

/** X-Request-Id comes with every /v1 answer, valid by its schema. */
function checkRequestId(where, res) {
  const value = res.headers.get('x-request-id');
  assert.ok(value !== null, `${where}: every /v1 answer carries X-Request-Id`);
  checkHeader(where, 'X-Request-Id', spec.components.headers.XRequestId, value);
}

/** RateLimit-* come with every /v1 answer that went through the limiter: valid wherever present. */
function checkRateLimitHeaders(where, res) {
  for (const [name, component] of [
    ['RateLimit-Limit', 'RateLimitLimit'],
    ['RateLimit-Remaining', 'RateLimitRemaining'],
    ['RateLimit-Reset', 'RateLimitReset'],
  ]) {
    const value = res.headers.get(name);
    if (value !== null) checkHeader(where, name, spec.components.headers[component], value);
  }
}

/** The cart invariants a schema cannot say: sorted unique lines, item_count, ETag. */
function checkCart(where, res, cart) {
  const skus = cart.items.map((i) => i.sku);
  for (let i = 1; i < skus.length; i++) {
    assert.ok(skus[i - 1] < skus[i], `${where}: items sorted by sku, one line each (${skus.join(', ')})`);
  }
  const sum = cart.items.reduce((n, i) => n + i.quantity, 0);
  assert.equal(cart.item_count, sum, `${where}: item_count is the sum of the quantities`);
  assert.equal(res.headers.get('etag'), `"${cart.version}"`, `${where}: ETag is the cart's version`);
}

/**
 * Checks a response against a response object of the spec; returns the parsed body (undefined
 * when the response has none).
 */
function conformTo(where, method, responseObj, res) {
  const resp = deref(responseObj);
  for (const [name, h] of Object.entries(resp.headers ?? {})) {
    checkHeader(where, name, h, res.headers.get(name));
  }
  checkRateLimitHeaders(where, res);
  if (method === 'HEAD' || resp.content === undefined) {
    assert.equal(res.text, '', `${where}: no body`);
    return undefined;
  }
  const contentType = res.headers.get('content-type');
  assert.ok(contentType, `${where}: has a Content-Type`);
  const media = matchContent(resp.content, contentType);
  assert.ok(
    media,
    `${where}: Content-Type "${contentType}" is documented (${Object.keys(resp.content).join(' | ')}); body: ${res.text.slice(0, 200)}`,
  );
  let data = res.text;
  if (isJsonType(mediaType(contentType).essence)) {
    assert.doesNotThrow(() => {
      data = JSON.parse(res.text);
    }, `${where}: the body is JSON`);
  }
  if (media.schema !== undefined) assertValid(`${where}: body`, media.schema, data);
  if (media.schema?.$ref === `${COMPONENT_SCHEMA}Cart`) checkCart(where, res, data);
  return data;
}

/** Checks a response of an operation: its status documented, then everything conformTo checks. */
function conform(method, template, res) {
  const op = operationOf(method, template);
  record(op.operationId, res.status);
  const s = String(res.status);
  const resp = op.responses?.[s] ?? op.responses?.[`${s[0]}XX`] ?? op.responses?.default;
  assert.ok(
    resp,
    `${op.operationId}: status ${res.status} is not documented (documented: ${Object.keys(op.responses ?? {}).join(', ')}); body: ${res.text.slice(0, 200)}`,
  );
  if (template.startsWith('/v1')) checkRequestId(`${op.operationId} ${res.status}`, res);
  return conformTo(`${op.operationId} ${res.status}`, method, resp, res);
}

/** Checks a request the gateway should accept against the spec: parameters, headers, body. */
function checkRequest(method, template, params, headers, body) {
  const op = operationOf(method, template);
  const where = `${op.operationId} request`;
  const declared = [...(spec.paths[template].parameters ?? []), ...(op.parameters ?? [])].map(deref);
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  for (const p of declared) {
    const value = p.in === 'path' ? params[p.name] : p.in === 'header' ? lower[p.name.toLowerCase()] : undefined;
    if (value === undefined) {
      assert.ok(!p.required, `${where}: the required ${p.in} parameter ${p.name} is given`);
      continue;
    }
    assertValid(`${where}: ${p.in} parameter ${p.name}`, p.schema, coerce(p.schema, value));
  }
  for (const name of Object.keys(params)) {
    assert.ok(declared.some((p) => p.in === 'path' && p.name === name), `${where}: path parameter ${name} is declared`);
  }
  if (op.requestBody !== undefined) {
    const rb = deref(op.requestBody);
    if (body === undefined) {
      assert.ok(!rb.required, `${where}: the required body is given`);
    } else {
      const media = matchContent(rb.content, lower['content-type'] ?? 'application/json');
      assert.ok(media, `${where}: the body's media type is documented`);
      assertValid(`${where}: body`, media.schema, body);
    }
  }
}

/**
 * Sends a request for the operation `method template` with `params` filled into the path, and
 * checks the response against the spec. `valid: false` marks a request meant to be refused (it is
 * not checked against the spec). Resolves to { res, data }.
 */
async function call(method, template, { params = {}, body, headers = {}, valid = true, base = '' } = {}) {
  if (valid) checkRequest(method, template, params, headers, body);
  const path = template.replace(/\{(\w+)\}/g, (_, name) => {
    assert.ok(name in params, `a value for {${name}}`);
    return params[name];
  });
  const hdrs = { ...headers };
  if (body !== undefined && typeof body !== 'string' && !Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) {
    Object.assign(hdrs, JSON_HEADERS);
  }
  const res = await http(method, base + path, { body, headers: hdrs });
  const data = conform(method, template, res);
  return { res, data };
}

/** Sends a method the path does not serve: 405 as every operation of the path documents it. */
async function callOtherMethod(method, template, params = {}) {
  const item = spec.paths[template];
  const served = METHODS.filter((m) => item[m]);
  assert.ok(!served.includes(method.toLowerCase()), `${method} is not an operation of ${template}`);
  const path = template.replace(/\{(\w+)\}/g, (_, name) => params[name]);
  const res = await http(method, path);
  record(`${method} ${template}`, res.status);
  assert.equal(res.status, 405, `${method} ${template}: 405`);
  // HEAD and OPTIONS are answered for every path, never 405.
  const documented = served.filter((m) => m !== 'head' && m !== 'options').map((m) => item[m]);
  for (const op of documented) {
    assert.ok(op.responses?.['405'], `${op.operationId} documents 405 (the answer to other methods)`);
    assert.deepEqual(op.responses['405'], documented[0].responses['405'], `${op.operationId}: the same 405`);
  }
  if (template.startsWith('/v1')) checkRequestId(`${method} ${template} 405`, res);
  const data = conformTo(`${method} ${template} 405`, method, documented[0].responses['405'], res);
  const allow = res.headers.get('allow').split(',').map((m) => m.trim().toLowerCase());
  assert.deepEqual(allow.sort(), [...served].sort(), `Allow of ${template} lists the documented methods`);
  return { res, data };
}

// ---------------------------------------------------------------------------------------------
// small helpers for the scenarios

const CARTS = '/v1/carts';
const CART = '/v1/carts/{user_id}';
const ITEMS = '/v1/carts/{user_id}/items';
const ITEM = '/v1/carts/{user_id}/items/{sku}';
const CHECKOUT = '/v1/carts/{user_id}/checkout';
const MERGE = '/v1/carts/{user_id}/merge';
const LONG_ID = 'x'.repeat(65);
const ASYNC = { Prefer: 'respond-async' };

/** A user with an active cart holding `lines` ({sku: quantity}); resolves to { user, cart }. */
async function userWithCart(lines = { A1: 1 }) {
  const user = uniqueUser('oa');
  let cart;
  for (const [sku, quantity] of Object.entries(lines)) {
    const { res, data } = await call('POST', ITEMS, { params: { user_id: user }, body: { sku, quantity } });
    assert.equal(res.status, 200);
    cart = data;
  }
  return { user, cart };
}

function assertProblem(data, type) {
  assert.equal(data.type, `urn:cartshard:problem:${type}`);
}

function assertAccepted(res, data, user, { async = true } = {}) {
  assert.equal(res.status, 202);
  assert.equal(data.status, 'accepted');
  assert.equal(res.headers.get('location'), `/v1/carts/${user}`);
  if (async) assert.equal(res.headers.get('preference-applied'), 'respond-async');
}

/** A JSON body of more than 16 KiB (CART_MAX_BODY_BYTES). */
const HUGE_BODY = JSON.stringify({ sku: 'A1', quantity: 1, user_id: 'u1', pad: 'p'.repeat(17 * 1024) });

// ---------------------------------------------------------------------------------------------
// the spec itself

describe('docs/openapi.yaml', TEST_OPTS, () => {
  test('is OpenAPI 3.1 with the contract\'s paths and operations', () => {
    assert.match(spec.openapi, /^3\.1\.\d+$/);
    const ops = {};
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const m of METHODS) if (item[m]) (ops[path] ??= []).push(m);
    }
    assert.deepEqual(ops, {
      [CARTS]: ['post', 'options'],
      [CART]: ['get', 'delete', 'options', 'head'],
      [ITEMS]: ['post', 'options'],
      [ITEM]: ['put', 'delete', 'options'],
      [CHECKOUT]: ['post', 'options'],
      [MERGE]: ['post', 'options'],
      '/healthz': ['get', 'head'],
      '/readyz': ['get', 'head'],
      '/metrics': ['get', 'head'],
    });
    const ids = Object.values(spec.paths).flatMap((item) => METHODS.filter((m) => item[m]).map((m) => item[m].operationId));
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
  });

  test('documents every status of the contract, and the errors as problem+json', () => {
    const statuses = new Set();
    for (const item of Object.values(spec.paths)) {
      for (const m of METHODS) {
        if (!item[m]) continue;
        for (const [s, r] of Object.entries(item[m].responses)) {
          statuses.add(Number(s));
          const resp = deref(r);
          if (Number(s) >= 400 && m !== 'head' && resp.content) {
            const { schema } = resp.content['application/problem+json'] ?? {};
            if (item[m].operationId !== 'getReadiness') assert.ok(schema, `${item[m].operationId} ${s} is a problem`);
          }
        }
      }
    }
    for (const s of [200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 429, 503]) {
      assert.ok(statuses.has(s), `status ${s} is documented`);
    }
    // Every /v1 operation: auth, rate limit and dependency failures.
    for (const [path, item] of Object.entries(spec.paths)) {
      if (!path.startsWith('/v1/')) continue;
      // OPTIONS is neither authenticated nor rate limited, and needs no dependency.
      for (const m of METHODS.filter((x) => item[x] && x !== 'options')) {
        for (const s of ['400', '401', '403', '429', '503']) {
          assert.ok(item[m].responses[s], `${item[m].operationId} documents ${s}`);
        }
      }
    }
  });

  test('its examples are valid against their schemas', () => {
    let n = 0;
    const walkSchema = (where, schema) => {
      if (!schema || typeof schema !== 'object') return;
      for (const [i, ex] of (Array.isArray(schema.examples) ? schema.examples : []).entries()) {
        assertValid(`${where}.examples[${i}]`, schema, ex);
        n++;
      }
      for (const [k, sub] of Object.entries(schema.properties ?? {})) walkSchema(`${where}.properties.${k}`, sub);
      if (schema.items) walkSchema(`${where}.items`, schema.items);
    };
    for (const [name, schema] of Object.entries(spec.components.schemas)) walkSchema(name, schema);
    // Parameters, headers and media types: `example` and `examples` next to a `schema`.
    const walk = (where, node) => {
      if (Array.isArray(node)) return node.forEach((v, i) => walk(`${where}[${i}]`, v));
      if (!node || typeof node !== 'object') return;
      if (node.schema && typeof node.schema === 'object') {
        if ('example' in node) {
          assertValid(`${where}.example`, node.schema, coerce(node.schema, node.example));
          n++;
        }
        for (const [k, ex] of Object.entries(node.examples ?? {})) {
          assertValid(`${where}.examples.${k}`, node.schema, deref(ex).value);
          n++;
        }
      }
      for (const [k, v] of Object.entries(node)) if (k !== 'schema') walk(`${where}.${k}`, v);
    };
    walk('paths', spec.paths);
    walk('components', { parameters: spec.components.parameters, headers: spec.components.headers, responses: spec.components.responses });
    assert.ok(n > 20, `${n} examples checked`);
  });
});

// ---------------------------------------------------------------------------------------------
// the gateway's answers

describe('POST /v1/carts (createCart)', TEST_OPTS, () => {
  test('201 for a new cart, 200 with the same cart after', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const first = await call('POST', CARTS, { body: { user_id: user } });
    assert.equal(first.res.status, 201);
    assert.equal(first.data.user_id, user);
    assert.equal(first.data.status, 'active');
    assert.deepEqual(first.data.items, []);
    const again = await call('POST', CARTS, { body: { user_id: user } });
    assert.equal(again.res.status, 200);
    assert.equal(again.data.cart_id, first.data.cart_id, 'still one cart');
    assert.equal(again.data.version, first.data.version, 'nothing changed');
  });

  test('a repeated Idempotency-Key gets the first status again', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const headers = { 'Idempotency-Key': `create-${user}` };
    const first = await call('POST', CARTS, { body: { user_id: user }, headers });
    const again = await call('POST', CARTS, { body: { user_id: user }, headers });
    assert.equal(first.res.status, 201);
    assert.equal(again.res.status, 201);
    assert.equal(again.data.cart_id, first.data.cart_id);
    assert.equal(first.res.headers.get('location'), `/v1/carts/${user}`);
    assert.equal(first.res.headers.get('idempotent-replayed'), null);
    assert.equal(again.res.headers.get('idempotent-replayed'), 'true');
  });

  test('422 for an Idempotency-Key reused for another request', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const headers = { 'Idempotency-Key': `reuse-${user}` };
    assert.equal((await call('POST', CARTS, { body: { user_id: user }, headers })).res.status, 201);
    const { res, data } = await call('POST', ITEMS, { params: { user_id: user }, body: { sku: 'A1', quantity: 1 }, headers });
    assert.equal(res.status, 422);
    assert.equal(data.type, 'urn:cartshard:problem:idempotency-key-reused');
    const checkout = await call('POST', CHECKOUT, { params: { user_id: user }, headers });
    assert.equal(checkout.res.status, 422);
    assert.equal(checkout.data.type, 'urn:cartshard:problem:idempotency-key-reused');
  });

  test('202 with Prefer: respond-async', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const { res, data } = await call('POST', CARTS, { body: { user_id: user }, headers: ASYNC });
    assertAccepted(res, data, user);
  });

  test('400 for malformed JSON, an invalid field and an invalid Idempotency-Key', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    let r = await call('POST', CARTS, { body: '{"user_id":', headers: JSON_HEADERS, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'malformed-json');
    r = await call('POST', CARTS, { body: { user_id: 'no spaces' }, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'invalid-field');
    r = await call('POST', CARTS, { body: {}, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'invalid-field');
    r = await call('POST', CARTS, { body: { user_id: user }, headers: { 'Idempotency-Key': 'k'.repeat(129) }, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'invalid-header');
  });

  test('412 when If-Match names a version the user has not got', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const { res, data } = await call('POST', CARTS, { body: { user_id: user }, headers: { 'If-Match': '"5"' } });
    assert.equal(res.status, 412);
    assertProblem(data, 'precondition-failed');
  });

  test('415 for a body that is not JSON', TEST_OPTS, async () => {
    const { res, data } = await call('POST', CARTS, {
      body: 'user_id=u1',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      valid: false,
    });
    assert.equal(res.status, 415);
    assertProblem(data, 'unsupported-media-type');
  });

  test('OPTIONS on every /v1 path: 204 with Allow', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    for (const template of [CARTS, CART, ITEMS, ITEM, CHECKOUT, MERGE]) {
      const params = template === CARTS ? {} : template === ITEM ? { user_id: user, sku: 'A1' } : { user_id: user };
      const { res } = await call('OPTIONS', template, { params });
      assert.equal(res.status, 204);
      const allow = res.headers.get('allow').split(',').map((m) => m.trim().toLowerCase());
      const served = METHODS.filter((m) => spec.paths[template][m]);
      assert.deepEqual(allow.sort(), [...served].sort(), `Allow of ${template} lists the documented methods`);
    }
  });

  test('405 with Allow for another method', TEST_OPTS, async () => {
    await callOtherMethod('GET', CARTS);
    await callOtherMethod('DELETE', CARTS);
  });
});

describe('GET and HEAD /v1/carts/{user_id} (getCart, headCart)', TEST_OPTS, () => {
  test('200 with the cart, items sorted by sku', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart({ B2: 1, A1: 2, C3: 3 });
    const { res, data } = await call('GET', CART, { params: { user_id: user } });
    assert.equal(res.status, 200);
    assert.deepEqual(data, cart);
    assert.deepEqual(data.items.map((i) => i.sku), ['A1', 'B2', 'C3']);
  });

  test('304 for a matching If-None-Match, 200 for another', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    const etag = `"${cart.version}"`;
    let r = await call('GET', CART, { params: { user_id: user }, headers: { 'If-None-Match': etag } });
    assert.equal(r.res.status, 304);
    assert.equal(r.res.headers.get('etag'), etag);
    r = await call('GET', CART, { params: { user_id: user }, headers: { 'If-None-Match': '"999"' } });
    assert.equal(r.res.status, 200);
  });

  test('404 for a user without an active cart, 400 for an invalid user_id', TEST_OPTS, async () => {
    let r = await call('GET', CART, { params: { user_id: uniqueUser('oa') } });
    assert.equal(r.res.status, 404);
    assertProblem(r.data, 'not-found');
    r = await call('GET', CART, { params: { user_id: LONG_ID }, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'invalid-field');
  });

  test('HEAD: 200 with the ETag, 304, 404 and 400, never a body', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    let r = await call('HEAD', CART, { params: { user_id: user } });
    assert.equal(r.res.status, 200);
    assert.equal(r.res.headers.get('etag'), `"${cart.version}"`);
    r = await call('HEAD', CART, { params: { user_id: user }, headers: { 'If-None-Match': `"${cart.version}"` } });
    assert.equal(r.res.status, 304);
    r = await call('HEAD', CART, { params: { user_id: uniqueUser('oa') } });
    assert.equal(r.res.status, 404);
    r = await call('HEAD', CART, { params: { user_id: LONG_ID }, valid: false });
    assert.equal(r.res.status, 400);
  });

  test('405 with Allow for another method', TEST_OPTS, async () => {
    await callOtherMethod('PATCH', CART, { user_id: uniqueUser('oa') });
    await callOtherMethod('POST', CART, { user_id: uniqueUser('oa') });
  });
});

describe('DELETE /v1/carts/{user_id} (deleteCart)', TEST_OPTS, () => {
  test('204, again 204, and the cart is gone', TEST_OPTS, async () => {
    const { user } = await userWithCart();
    let r = await call('DELETE', CART, { params: { user_id: user } });
    assert.equal(r.res.status, 204);
    r = await call('DELETE', CART, { params: { user_id: user } });
    assert.equal(r.res.status, 204, 'idempotent');
    r = await call('GET', CART, { params: { user_id: user } });
    assert.equal(r.res.status, 404);
  });

  test('202 with Prefer: respond-async', TEST_OPTS, async () => {
    const { user } = await userWithCart();
    const { res, data } = await call('DELETE', CART, { params: { user_id: user }, headers: ASYNC });
    assertAccepted(res, data, user);
  });

  test('412 for another version, 400 for a malformed If-Match', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    let r = await call('DELETE', CART, { params: { user_id: user }, headers: { 'If-Match': `"${cart.version + 1}"` } });
    assert.equal(r.res.status, 412);
    r = await call('DELETE', CART, { params: { user_id: user }, headers: { 'If-Match': `W/"${cart.version}"` } });
    assert.equal(r.res.status, 412, 'a weak tag never matches under If-Match');
    r = await call('DELETE', CART, { params: { user_id: user }, headers: { 'If-Match': `${cart.version}` }, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'invalid-header');
    r = await call('DELETE', CART, { params: { user_id: user }, headers: { 'If-Match': `"${cart.version}"` } });
    assert.equal(r.res.status, 204, 'the matching version deletes');
  });
});

describe('POST /v1/carts/{user_id}/items (addItem)', TEST_OPTS, () => {
  test('200: creates the cart, then adds to the line', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    let r = await call('POST', ITEMS, { params: { user_id: user }, body: { sku: 'A1', quantity: 2 } });
    assert.equal(r.res.status, 200);
    assert.equal(r.data.version, 1);
    r = await call('POST', ITEMS, { params: { user_id: user }, body: { sku: 'A1', quantity: 3 } });
    assert.equal(r.res.status, 200);
    assert.deepEqual(r.data.items, [{ sku: 'A1', quantity: 5 }]);
    assert.equal(r.data.version, 2);
  });

  test('202 with Prefer: respond-async', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const { res, data } = await call('POST', ITEMS, { params: { user_id: user }, body: { sku: 'A1', quantity: 1 }, headers: ASYNC });
    assertAccepted(res, data, user);
  });

  test('400 for an invalid field or user_id', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    for (const body of [{ sku: 'A1', quantity: '2' }, { sku: 'A1', quantity: 1.5 }, { quantity: 1 }, { sku: 'A 1', quantity: 1 }]) {
      const r = await call('POST', ITEMS, { params: { user_id: user }, body, valid: false });
      assert.equal(r.res.status, 400, JSON.stringify(body));
      assertProblem(r.data, 'invalid-field');
    }
    const r = await call('POST', ITEMS, { params: { user_id: LONG_ID }, body: { sku: 'A1', quantity: 1 }, valid: false });
    assert.equal(r.res.status, 400);
  });

  test('422 over the quantity limits, and nothing changes', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart({ A1: 990 });
    for (const body of [{ sku: 'A1', quantity: 0 }, { sku: 'A1', quantity: 1000 }, { sku: 'A1', quantity: 10 }]) {
      const r = await call('POST', ITEMS, { params: { user_id: user }, body, valid: body.quantity === 10 });
      assert.equal(r.res.status, 422, JSON.stringify(body));
      assertProblem(r.data, 'limit-exceeded');
    }
    const now = await call('GET', CART, { params: { user_id: user } });
    assert.equal(now.data.version, cart.version);
  });

  test('200 with a line snapshot; 422 currency-mismatch and a subtotal over the limit', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const priced = { sku: 'A1', quantity: 2, name: 'Mug', unit_price: 1999, currency: 'EUR', attributes: { color: 'blue' } };
    let r = await call('POST', ITEMS, { params: { user_id: user }, body: priced });
    assert.equal(r.res.status, 200);
    assert.equal(r.data.items[0].line_total, 3998);
    assert.equal(r.data.currency, 'EUR');
    assert.equal(r.data.subtotal, 3998);
    r = await call('PUT', ITEM, { params: { user_id: user, sku: 'B7' }, body: { quantity: 1, unit_price: 5, currency: 'USD' } });
    assert.equal(r.res.status, 422);
    assertProblem(r.data, 'currency-mismatch');
    for (let i = 0; i < 11; i++) {
      r = await call('POST', ITEMS, {
        params: { user_id: user },
        body: { sku: `M${i}`, quantity: 999, unit_price: 100000000000, currency: 'EUR' },
      });
      if (r.res.status === 422) break;
      assert.equal(r.res.status, 200);
    }
    assert.equal(r.res.status, 422, 'the eleventh line of 999 x 10^11 takes the subtotal over 10^15');
    assertProblem(r.data, 'limit-exceeded');
    r = await call('POST', ITEMS, { params: { user_id: user }, body: { sku: 'A1', quantity: 1, currency: 'EUR' }, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'invalid-field');
  });

  test('412 for another version', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    const r = await call('POST', ITEMS, {
      params: { user_id: user },
      body: { sku: 'B1', quantity: 1 },
      headers: { 'If-Match': `"${cart.version + 7}"` },
    });
    assert.equal(r.res.status, 412);
  });

  test('415 for a body that is not JSON', TEST_OPTS, async () => {
    const r = await call('POST', ITEMS, {
      params: { user_id: uniqueUser('oa') },
      body: 'sku=A1&quantity=1',
      headers: { 'Content-Type': 'text/plain' },
      valid: false,
    });
    assert.equal(r.res.status, 415);
  });

  test('405 with Allow for another method', TEST_OPTS, async () => {
    await callOtherMethod('GET', ITEMS, { user_id: uniqueUser('oa') });
  });
});

describe('PUT and DELETE /v1/carts/{user_id}/items/{sku} (setItemQuantity, removeItem)', TEST_OPTS, () => {
  test('PUT 200: creates the cart, sets the line, 0 removes it', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    let r = await call('PUT', ITEM, { params: { user_id: user, sku: 'B7' }, body: { quantity: 5 } });
    assert.equal(r.res.status, 200);
    assert.deepEqual(r.data.items, [{ sku: 'B7', quantity: 5 }]);
    r = await call('PUT', ITEM, { params: { user_id: user, sku: 'B7' }, body: { quantity: 5 } });
    assert.equal(r.res.status, 200);
    assert.equal(r.data.version, 1, 'the same quantity changes nothing');
    r = await call('PUT', ITEM, { params: { user_id: user, sku: 'B7' }, body: { quantity: 0 } });
    assert.equal(r.res.status, 200);
    assert.deepEqual(r.data.items, []);
  });

  test('PUT 404 with 0 and no cart; 422 out of range; 400 not an integer or a bad sku', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    let r = await call('PUT', ITEM, { params: { user_id: user, sku: 'A1' }, body: { quantity: 0 } });
    assert.equal(r.res.status, 404);
    assertProblem(r.data, 'not-found');
    for (const quantity of [-1, 1000]) {
      r = await call('PUT', ITEM, { params: { user_id: user, sku: 'A1' }, body: { quantity }, valid: false });
      assert.equal(r.res.status, 422);
      assertProblem(r.data, 'limit-exceeded');
    }
    r = await call('PUT', ITEM, { params: { user_id: user, sku: 'A1' }, body: { quantity: 'five' }, valid: false });
    assert.equal(r.res.status, 400);
    r = await call('PUT', ITEM, { params: { user_id: user, sku: LONG_ID }, body: { quantity: 1 }, valid: false });
    assert.equal(r.res.status, 400);
    assertProblem(r.data, 'invalid-field');
  });

  test('PUT 202, 412 and 415', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    let r = await call('PUT', ITEM, { params: { user_id: user, sku: 'A1' }, body: { quantity: 4 }, headers: { 'If-Match': '"0"' } });
    assert.equal(r.res.status, 412);
    r = await call('PUT', ITEM, { params: { user_id: user, sku: 'A1' }, body: 'quantity=4', headers: { 'Content-Type': 'text/plain' }, valid: false });
    assert.equal(r.res.status, 415);
    r = await call('PUT', ITEM, { params: { user_id: user, sku: 'A1' }, body: { quantity: 4 }, headers: { ...ASYNC, 'If-Match': `"${cart.version}"` } });
    assertAccepted(r.res, r.data, user);
  });

  test('DELETE 200 with and without the line; 404 without a cart', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart({ A1: 1, B2: 2 });
    let r = await call('DELETE', ITEM, { params: { user_id: user, sku: 'A1' } });
    assert.equal(r.res.status, 200);
    assert.deepEqual(r.data.items, [{ sku: 'B2', quantity: 2 }]);
    assert.equal(r.data.version, cart.version + 1);
    r = await call('DELETE', ITEM, { params: { user_id: user, sku: 'ZZ' } });
    assert.equal(r.res.status, 200, 'an absent line is not an error');
    assert.equal(r.data.version, cart.version + 1, 'and changes nothing');
    r = await call('DELETE', ITEM, { params: { user_id: uniqueUser('oa'), sku: 'A1' } });
    assert.equal(r.res.status, 404);
  });

  test('DELETE 202, 412 and 400', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    let r = await call('DELETE', ITEM, { params: { user_id: user, sku: 'A1' }, headers: { 'If-Match': `"${cart.version + 1}"` } });
    assert.equal(r.res.status, 412);
    r = await call('DELETE', ITEM, { params: { user_id: user, sku: 'A1' }, headers: { 'If-Match': '*, "1"' }, valid: false });
    assert.equal(r.res.status, 400);
    r = await call('DELETE', ITEM, { params: { user_id: user, sku: 'A1' }, headers: ASYNC });
    assertAccepted(r.res, r.data, user);
  });

  test('405 with Allow for another method', TEST_OPTS, async () => {
    await callOtherMethod('POST', ITEM, { user_id: uniqueUser('oa'), sku: 'A1' });
    await callOtherMethod('GET', ITEM, { user_id: uniqueUser('oa'), sku: 'A1' });
  });
});

describe('POST /v1/carts/{user_id}/checkout (checkoutCart)', TEST_OPTS, () => {
  test('200 with the checked-out cart; then no active cart', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart({ B1: 1, A1: 2 });
    let r = await call('POST', CHECKOUT, { params: { user_id: user } });
    assert.equal(r.res.status, 200);
    assert.equal(r.data.status, 'checked_out');
    assert.equal(r.data.cart_id, cart.cart_id);
    assert.deepEqual(r.data.items, cart.items);
    r = await call('GET', CART, { params: { user_id: user } });
    assert.equal(r.res.status, 404);
  });

  test('409 for an empty or absent cart', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    let r = await call('POST', CHECKOUT, { params: { user_id: user } });
    assert.equal(r.res.status, 409);
    assertProblem(r.data, 'conflict');
    assert.equal((await call('POST', CARTS, { body: { user_id: user } })).res.status, 201);
    r = await call('POST', CHECKOUT, { params: { user_id: user } });
    assert.equal(r.res.status, 409);
  });

  test('202, 412 and 400', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    let r = await call('POST', CHECKOUT, { params: { user_id: user }, headers: { 'If-Match': `"${cart.version + 1}"` } });
    assert.equal(r.res.status, 412);
    r = await call('POST', CHECKOUT, { params: { user_id: LONG_ID }, valid: false });
    assert.equal(r.res.status, 400);
    r = await call('POST', CHECKOUT, { params: { user_id: user }, headers: ASYNC });
    assertAccepted(r.res, r.data, user);
  });

  test('a repeated refusal gets the same status and detail', TEST_OPTS, async () => {
    const { user, cart } = await userWithCart();
    const headers = { 'Idempotency-Key': `co-${user}`, 'If-Match': `"${cart.version + 3}"` };
    const first = await call('POST', CHECKOUT, { params: { user_id: user }, headers });
    const again = await call('POST', CHECKOUT, { params: { user_id: user }, headers });
    assert.equal(first.res.status, 412);
    assert.equal(again.res.status, 412);
    assert.equal(again.data.detail, first.data.detail);
  });

  test('405 with Allow for another method', TEST_OPTS, async () => {
    await callOtherMethod('GET', CHECKOUT, { user_id: uniqueUser('oa') });
  });
});

describe('POST /v1/carts/{user_id}/merge (mergeCart)', TEST_OPTS, () => {
  test("200 with the user's cart; then the guest's is gone", TEST_OPTS, async () => {
    const guest = await userWithCart({ A1: 2 });
    const user = await userWithCart({ A1: 1, B1: 1 });
    let r = await call('POST', MERGE, { params: { user_id: user.user }, body: { from: guest.user, strategy: 'sum' } });
    assert.equal(r.res.status, 200);
    assert.deepEqual(r.data.items.map((i) => [i.sku, i.quantity]), [['A1', 3], ['B1', 1]]);
    r = await call('GET', CART, { params: { user_id: guest.user } });
    assert.equal(r.res.status, 404);
  });

  test('404, 400, 422 and 202', TEST_OPTS, async () => {
    const user = await userWithCart({ A1: 999 });
    let r = await call('POST', MERGE, { params: { user_id: user.user }, body: { from: uniqueUser('oa') } });
    assert.equal(r.res.status, 404);
    r = await call('POST', MERGE, { params: { user_id: user.user }, body: { from: user.user } });
    assert.equal(r.res.status, 400);
    const guest = await userWithCart({ A1: 1 });
    r = await call('POST', MERGE, { params: { user_id: user.user }, body: { from: guest.user } });
    assert.equal(r.res.status, 422);
    r = await call('POST', MERGE, { params: { user_id: user.user }, body: { from: guest.user }, headers: ASYNC });
    assertAccepted(r.res, r.data, user.user);
  });

  test('405 with Allow for another method', TEST_OPTS, async () => {
    await callOtherMethod('GET', MERGE, { user_id: uniqueUser('oa') });
  });
});

describe('413: a body over 16 KiB', TEST_OPTS, () => {
  test('is a 413 problem for every operation with a body', TEST_OPTS, async () => {
    for (const [method, template, params] of [
      ['POST', CARTS, {}],
      ['POST', ITEMS, { user_id: 'oa-big' }],
      ['PUT', ITEM, { user_id: 'oa-big', sku: 'A1' }],
    ]) {
      const { res, data } = await call(method, template, { params, body: HUGE_BODY, headers: JSON_HEADERS, valid: false });
      assert.equal(res.status, 413);
      assertProblem(data, 'payload-too-large');
    }
  });
});

describe('repeats of a write after the cart has gone', TEST_OPTS, () => {
  // The repeat answers "with the cart as it is now": after a delete, the deleted cart (documented
  // in the Cart schema as appearing only in such repeats).
  test('answer with a documented cart', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const headers = { 'Idempotency-Key': `add-${user}` };
    const body = { sku: 'A1', quantity: 1 };
    assert.equal((await call('POST', ITEMS, { params: { user_id: user }, body, headers })).res.status, 200);
    assert.equal((await call('DELETE', CART, { params: { user_id: user } })).res.status, 204);
    const again = await call('POST', ITEMS, { params: { user_id: user }, body, headers });
    assert.equal(again.res.status, 200);
    assert.equal(again.data.status, 'deleted');
    assert.deepEqual(again.data.items, []);
  });
});

// ---------------------------------------------------------------------------------------------
// 401, 403 and 429: a private gateway on the stack's NATS, Redis and shards, with AUTH_JWT_SECRET
// and a rate limit of 1 request/s with a burst of 2 (the stack's own gateway has neither).

const SECRET = 'openapi-suite-secret-of-at-least-32-bytes';

/** A private gateway with its own Redis database, so private limits never touch the stack's keys. */
async function startPrivateGateway(env) {
  const redisUrl = new URL(REDIS_URL);
  redisUrl.pathname = '/7';
  const child = await startGateway({ REDIS_URL: redisUrl.toString(), ...env });
  return { child, url: child.url };
}

const jwt = (payload, secret = SECRET) => hs256Jwt(secret, payload);
const bearer = (sub, secret) => ({ Authorization: `Bearer ${jwt({ sub, exp: Math.floor(Date.now() / 1000) + 300 }, secret)}` });

describe('401, 403 and 429 (a private gateway with auth and a small rate limit)', { timeout: 30_000 }, () => {
  let gw;

  test('starts', { timeout: 15_000 }, async () => {
    gw = await startPrivateGateway({ AUTH_JWT_SECRET: SECRET, RATE_LIMIT_RPS: '1', RATE_LIMIT_BURST: '2' });
  });

  test('401 without a token or with a badly signed one', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    let r = await call('GET', CART, { params: { user_id: user }, base: gw.url });
    assert.equal(r.res.status, 401);
    assertProblem(r.data, 'unauthorized');
    r = await call('HEAD', CART, { params: { user_id: user }, base: gw.url });
    assert.equal(r.res.status, 401);
    r = await call('POST', ITEMS, {
      params: { user_id: user },
      body: { sku: 'A1', quantity: 1 },
      headers: bearer(user, 'another-secret-of-at-least-32-bytes!!'),
      base: gw.url,
    });
    assert.equal(r.res.status, 401);
    assert.match(r.res.headers.get('www-authenticate'), /error="invalid_token"/);
  });

  test("403 for another user's path or body", TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const headers = bearer(user);
    let r = await call('GET', CART, { params: { user_id: uniqueUser('oa') }, headers, base: gw.url });
    assert.equal(r.res.status, 403);
    assertProblem(r.data, 'forbidden');
    r = await call('POST', CARTS, { body: { user_id: uniqueUser('oa') }, headers, base: gw.url });
    assert.equal(r.res.status, 403);
  });

  test('200 with a valid token, then 429 over the limit', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const headers = bearer(user);
    const first = await call('POST', ITEMS, { params: { user_id: user }, body: { sku: 'A1', quantity: 1 }, headers, base: gw.url });
    assert.equal(first.res.status, 200);
    let limited = null;
    for (let i = 0; i < 6 && limited === null; i++) {
      const r = await call('GET', CART, { params: { user_id: user }, headers, base: gw.url });
      if (r.res.status === 429) limited = r;
      else assert.equal(r.res.status, 200);
    }
    assert.ok(limited, 'a burst of 2 at 1 request/s is used up within 7 requests');
    assertProblem(limited.data, 'rate-limited');
    assert.equal(limited.res.headers.get('ratelimit-limit'), '2');
  });

  test('stops', { timeout: 15_000 }, async () => {
    if (gw && gw.child.exitCode === null) {
      gw.child.kill('SIGTERM');
      await once(gw.child, 'exit');
    }
  });
});

describe('403 for a price without the cart:price scope (a private gateway with auth)', { timeout: 30_000 }, () => {
  let gw;

  test('starts', { timeout: 15_000 }, async () => {
    gw = await startPrivateGateway({ AUTH_JWT_SECRET: SECRET });
  });

  test('403 without the scope, 200 with it', TEST_OPTS, async () => {
    const user = uniqueUser('oa');
    const body = { sku: 'A1', quantity: 1, unit_price: 100, currency: 'EUR' };
    const exp = Math.floor(Date.now() / 1000) + 300;
    const shopper = { Authorization: `Bearer ${jwt({ sub: user, exp, scope: 'openid' })}` };
    let r = await call('POST', ITEMS, { params: { user_id: user }, body, headers: shopper, base: gw.url });
    assert.equal(r.res.status, 403);
    assertProblem(r.data, 'forbidden');
    r = await call('PUT', ITEM, { params: { user_id: user, sku: 'A1' }, body: { quantity: 1, unit_price: 1, currency: 'EUR' }, headers: shopper, base: gw.url });
    assert.equal(r.res.status, 403);
    const backend = { Authorization: `Bearer ${jwt({ sub: user, exp, scope: 'cart:price' })}` };
    r = await call('POST', ITEMS, { params: { user_id: user }, body, headers: backend, base: gw.url });
    assert.equal(r.res.status, 200);
    assert.equal(r.data.subtotal, 100);
  });

  test('stops', { timeout: 15_000 }, async () => {
    if (gw && gw.child.exitCode === null) {
      gw.child.kill('SIGTERM');
      await once(gw.child, 'exit');
    }
  });
});

describe('/healthz, /readyz, /metrics', TEST_OPTS, () => {
  test('GET and HEAD 200', TEST_OPTS, async () => {
    let r = await call('GET', '/healthz');
    assert.equal(r.res.status, 200);
    r = await call('HEAD', '/healthz');
    assert.equal(r.res.status, 200);
    r = await call('GET', '/readyz');
    assert.equal(r.res.status, 200);
    assert.equal(r.data.ready, true);
    r = await call('HEAD', '/readyz');
    assert.equal(r.res.status, 200);
    r = await call('GET', '/metrics');
    assert.equal(r.res.status, 200);
    assert.match(r.data, /^cartshard_http_requests_total\{/m);
    r = await call('HEAD', '/metrics');
    assert.equal(r.res.status, 200);
  });

  test('405 with Allow for another method', TEST_OPTS, async () => {
    await callOtherMethod('POST', '/healthz');
    await callOtherMethod('DELETE', '/readyz');
    await callOtherMethod('PUT', '/metrics');
  });
});

describe('coverage', TEST_OPTS, () => {
  test('every operation was called, and every status reachable today was seen', () => {
    for (const item of Object.values(spec.paths)) {
      for (const m of METHODS.filter((x) => item[x])) {
        const id = item[m].operationId;
        const ok = [...(seen.get(id) ?? [])].some((s) => s < 300);
        assert.ok(ok, `${id} was called and answered 2xx`);
      }
    }
    for (const s of [200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 429]) {
      assert.ok(seenStatuses.has(s), `status ${s} was seen`);
    }
  });
});
