// contract.test.mjs: outside tools against docs/openapi.yaml and the gateway of the test stack.
//
// Issue 17: tried as a new user would, with the tools of others, the gateway never answered 5xx
// and never broke its own response schemas. This suite keeps it so, with the same tools:
//
// 1. Portman (portman-config.yaml) generates a Postman collection from docs/openapi.yaml: one
//    contract test per operation, variation tests for every error status a request can reach
//    (Portman's fuzzing of bodies and headers among them), and short sequences. newman runs it
//    against the gateway (GATEWAY_URL) and a private gateway with auth on, a rate limit of 1/s, a NATS
//    without JetStream and no Redis (401, 403, 429, 503; /readyz 200 with Redis reported down).
// 2. Stoplight Prism's validating proxy (`prism proxy docs/openapi.yaml <gateway> --errors`) stands
//    in front of both, and newman runs the same collection through it: Prism checks every answer
//    against the spec (status, headers, media type, body) and turns a violation into a 500 and an
//    sl-violations header, which the collection's own test script fails on. Requests the spec
//    calls invalid (a bad sku, quantity 1000) go through a second Prism that does not validate
//    requests (--validate-request=false), so that they reach the gateway and its refusals are
//    checked too.
// 3. Raw sockets: what neither tool can send (405s, bodies on GET, broken framing); never a 5xx.
//
// Every newman request is a subtest of its own. README.md beside this file: how to run it, and
// the tools' limits.
// Everything talks to 127.0.0.1 only; Prism is started and stopped by pid, newman is bounded.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import newman from 'newman';
import YAML from 'yaml';

import { GATEWAY_URL, closeAll, freePort, http, startGateway, startProcess, stopProcess, waitFor } from '../integration/lib.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OUT = `${ROOT}build/contract`;
const PORTMAN_BIN = `${HERE}node_modules/@apideck/portman/bin/portman`;
const PRISM_BIN = `${HERE}node_modules/@stoplight/prism-cli/dist/index.js`;
// The tools get the gateway's part of docs/openapi.yaml: a path with servers of its own is another
// service's (cart-stats, on its own port), which the stats suites check.
const spec = YAML.parse(readFileSync(`${ROOT}docs/openapi.yaml`, 'utf8'));
for (const [path, item] of Object.entries(spec.paths)) if (item.servers) delete spec.paths[path];
const SPEC_FILE = `${OUT}/gateway-openapi.yaml`;
mkdirSync(OUT, { recursive: true });
writeFileSync(SPEC_FILE, YAML.stringify(spec));

// ThreadSanitizer slows the gateway several times over; the 429 sequence (three requests within
// a second) and the time budget do not hold there. ASan runs it.
const SKIP = process.env.CARTSHARD_SANITIZE === 'tsan' ? 'not under ThreadSanitizer (too slow for the rate-limit sequence)' : false;

/** Cases expected to fail, each with its reason, run as todo: none since the HTTP front's rework. */
const PENDING = new Map();
const pending = (name) => PENDING.get(name) ?? false;

/** A host of the loopback range: Prism and newman talk to nothing else. */
function isLoopback(url) {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

// ---------------------------------------------------------------------------------------------
// processes: Portman, Prism (by pid, bounded)

/** Runs `node script args` to its end, at most `timeoutMs`; resolves to its output. */
function runNode(script, args, { cwd, timeoutMs }) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${script} ${args.join(' ')}: exit ${code ?? signal}\n${out.slice(-3000)}`));
    });
  });
}

/** Generates the collection from the spec and portman-config.yaml; resolves to its path. */
async function generateCollection() {
  const file = `${OUT}/collection.json`;
  const out = await runNode(
    PORTMAN_BIN,
    ['--local', SPEC_FILE, '--portmanConfigFile', 'portman-config.yaml', '--output', file],
    { cwd: HERE, timeoutMs: 60_000 },
  );
  writeFileSync(`${OUT}/portman.log`, out);
  // Portman leaves its intermediate files in ./tmp; they are of no use after the run.
  rmSync(`${HERE}tmp`, { recursive: true, force: true });
  assert.doesNotMatch(out, /WARNING|Invalid Portman Config/, `Portman warned:\n${out}`);
  return file;
}

const prisms = [];
// Should this process end early (a timeout of the runner), its Prisms end with it.
process.on('exit', () => prisms.forEach(({ child }) => child.exitCode === null && child.kill('SIGKILL')));

/**
 * Starts `prism proxy <specFile> <upstream>` on 127.0.0.1:port with `args`; its log goes to
 * build/contract/prism-<name>.log. Resolves once it accepts connections (at most 30 s).
 */
async function startPrism(name, upstream, port, args, specFile = SPEC_FILE) {
  assert.ok(isLoopback(upstream), `Prism's upstream is on the loopback: ${upstream}`);
  const logFile = `${OUT}/prism-${name}.log`;
  const fd = openSync(logFile, 'w');
  const child = spawn(
    process.execPath,
    [PRISM_BIN, 'proxy', specFile, upstream, '--host', '127.0.0.1', '--port', String(port), '--cors=false', ...args],
    { cwd: HERE, stdio: ['ignore', fd, fd], env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } },
  );
  closeSync(fd);
  const prism = { name, child, logFile, url: `http://127.0.0.1:${port}` };
  prisms.push(prism);
  await waitFor(`Prism ${name} to listen on ${port}`, async () => {
    assert.equal(child.exitCode, null, `Prism ${name} exited: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    return new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(() => resolve(true)));
      s.on('error', () => resolve(false));
    });
  }, { timeoutMs: 30_000, intervalMs: 100 });
  return prism;
}

async function stopPrisms() {
  await Promise.all(prisms.map(async ({ child }) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await stopProcess(child, 'SIGTERM');
    clearTimeout(killer);
  }));
}

/**
 * Prism's log lines that report a violation in an answer (request-side ones are expected): a
 * warning (an undocumented 4xx or 5xx status) is logged as `Violation: response...`; an error,
 * with --errors, ends the request (`Request terminated with error: ...#VIOLATIONS`), as does a
 * failure to forward or to read the answer.
 */
function responseViolations(prism) {
  return readFileSync(prism.logFile, 'utf8')
    .split('\n')
    .filter((line) => /Violation: response\b|Request terminated with error/.test(line));
}

// ---------------------------------------------------------------------------------------------
// the private gateway: auth on, 1 request/s with a burst of 2, a NATS without JetStream, no Redis

const SECRET = 'contract-suite-secret-of-at-least-32-bytes';
const b64url = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
function jwt(sub, secret = SECRET) {
  const signing = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${signing}.${createHmac('sha256', secret).update(signing).digest('base64url')}`;
}

/**
 * A gateway whose writes fail (503): its NATS has no JetStream, and its Redis is a port nobody
 * listens on (so /readyz reports Redis down, still 200, and it limits with its local limiter: the
 * same 1/s with a burst of 2).
 */
async function startAuthGateway() {
  const natsPort = await freePort();
  const nats = startProcess('nats-server', ['-a', '127.0.0.1', '-p', String(natsPort)]);
  await waitFor('the private nats-server', () => new Promise((resolve) => {
    const s = net.connect(natsPort, '127.0.0.1', () => s.end(() => resolve(true)));
    s.on('error', () => resolve(false));
  }), { timeoutMs: 10_000 });
  return startGateway(
    {
      NATS_URL: `nats://127.0.0.1:${natsPort}`,
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      AUTH_JWT_SECRET: SECRET,
      RATE_LIMIT_RPS: '1',
      RATE_LIMIT_BURST: '2',
      CART_SYNC_TIMEOUT_MS: '500',
    },
    // Ready all the same (a shared dependency down never makes /readyz 503): Redis reported down.
    { ready: async (url) => (await http('GET', `${url}/readyz`, { timeoutMs: 500 })).json?.redis === false },
  );
}

// ---------------------------------------------------------------------------------------------
// newman

/** Runs the collection with `vars` (a user of its own); resolves to newman's summary. */
function runNewman(collection, vars, name) {
  for (const key of ['baseUrl', 'rawUrl', 'authUrl']) assert.ok(isLoopback(vars[key]), `${key} is on the loopback`);
  const user = `ct-${name}-${randomBytes(4).toString('hex')}`;
  const all = {
    ...vars,
    userId: user,
    authToken: jwt(`${user}.auth`),
    otherToken: jwt(`${user}.someone-else`),
    limitedToken: jwt(`${user}.lim`),
    busToken: jwt(`${user}.bus`),
    badToken: jwt(`${user}.auth`, 'another-secret-of-at-least-32-bytes!!'),
    pad17k: 'p'.repeat(17 * 1024),
  };
  return new Promise((resolve, reject) => {
    newman.run(
      {
        collection: JSON.parse(readFileSync(collection, 'utf8')),
        envVar: Object.entries(all).map(([key, value]) => ({ key, value })),
        reporters: ['json'],
        reporter: { json: { export: `${OUT}/newman-${name}.json` } },
        timeoutRequest: 10_000,
        timeout: 120_000,
        ignoreRedirects: true,
      },
      (err, summary) => (err ? reject(err) : resolve(summary)),
    );
  });
}

/** Every request of a newman run as a subtest: its assertions and script errors. */
async function reportExecutions(t, summary, label) {
  const failures = summary.run.failures.filter((f) => f.error?.name !== 'AssertionError');
  assert.deepEqual(
    failures.map((f) => `${f.source?.name ?? '?'} (${f.at}): ${f.error?.message}`),
    [],
    'no script or request errors',
  );
  for (const ex of summary.run.executions) {
    const name = `newman: ${ex.request.method} ${ex.item.name}`;
    const problems = (ex.assertions ?? []).filter((a) => a.error).map((a) => `${a.assertion}: ${a.error.message}`);
    if (ex.requestError) problems.push(`request failed: ${ex.requestError.message}`);
    const body = ex.response?.stream ? Buffer.from(ex.response.stream).toString('utf8').slice(0, 400) : '';
    const where = `${label}: ${ex.request.method} ${ex.request.url.toString()} answered ${ex.response?.code}: ${body}`;
    await t.test(name, { todo: pending(name) }, () => {
      assert.deepEqual(problems, [], where);
    });
  }
}

/** docs/openapi.yaml's path template that a concrete path matches, or null. */
function templateOf(path) {
  for (const template of Object.keys(spec.paths)) {
    const re = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    if (re.test(path)) return template;
  }
  return null;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

// ---------------------------------------------------------------------------------------------
// raw sockets

/**
 * Sends `bytes` on a new connection (then half-closes it with `end`); resolves to the statuses of
 * the answers read until the server closes, at most 3 s.
 */
function rawExchange(baseUrl, bytes, { end = false } = {}) {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve) => {
    let data = '';
    const s = net.connect(Number(port), hostname, () => (end ? s.end(bytes) : s.write(bytes)));
    const done = () => {
      s.destroy();
      resolve({ statuses: [...data.matchAll(/^HTTP\/1\.[01] (\d{3})/gm)].map((m) => Number(m[1])), text: data });
    };
    s.setTimeout(3000, done);
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('end', done);
    s.on('error', done);
  });
}

// ---------------------------------------------------------------------------------------------

describe('outside tools: Portman and newman, Prism, raw sockets', { timeout: 240_000, skip: SKIP }, () => {
  let collection;
  let authGw;
  let strict;
  let raw;
  let authPrism;
  let directRun;
  let prismRun;
  const seen = new Map(); // "METHOD template" -> statuses answered (the direct newman run)

  before(async () => {
    assert.ok(isLoopback(GATEWAY_URL), `GATEWAY_URL is on the loopback: ${GATEWAY_URL}`);
    mkdirSync(OUT, { recursive: true });
    const base = Number(process.env.CONTRACT_PRISM_PORT) || 0;
    const port = async (i) => (base ? base + i : freePort());
    const ports = [await port(0), await port(1), await port(2)];
    [collection, strict, raw, [authGw, authPrism]] = await Promise.all([
      generateCollection(),
      startPrism('strict', GATEWAY_URL, ports[0], ['--errors']),
      startPrism('raw', GATEWAY_URL, ports[1], ['--errors', '--validate-request=false']),
      startAuthGateway().then(async (gw) => [gw, await startPrism('auth', gw.url, ports[2], ['--errors'])]),
    ]);
    // Both runs at once (users of their own): newman's script sandbox, not the gateway, takes most
    // of their time.
    directRun = runNewman(collection, { baseUrl: GATEWAY_URL, rawUrl: GATEWAY_URL, authUrl: authGw.url }, 'direct');
    prismRun = runNewman(
      collection,
      {
        baseUrl: strict.url,
        rawUrl: raw.url,
        authUrl: authPrism.url,
        headBypass: JSON.stringify({ [strict.url]: GATEWAY_URL, [raw.url]: GATEWAY_URL, [authPrism.url]: authGw.url }),
      },
      'prism',
    );
    // Awaited by the tests below; a failure is theirs to report, not an unhandled rejection.
    directRun.catch(() => {});
    prismRun.catch(() => {});
  });

  after(async () => {
    await stopPrisms();
    await closeAll();
  });

  test('Portman generated a test for every operation of docs/openapi.yaml', () => {
    const generated = JSON.parse(readFileSync(collection, 'utf8'));
    const scripts = JSON.stringify(generated);
    assert.doesNotMatch(scripts, /is not being validated against your spec/, 'Portman left no schema check out');
    const ops = new Set();
    const walk = (items) => {
      for (const item of items) {
        if (item.item) walk(item.item);
        else ops.add(`${item.request.method} ${templateOf(`/${item.request.url.path.join('/').replace(/:(\w+)/g, '{$1}')}`)}`);
      }
    };
    walk(generated.item);
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const m of METHODS.filter((x) => item[x])) assert.ok(ops.has(`${m.toUpperCase()} ${path}`), `${m} ${path}`);
    }
  });

  test('newman: the collection against the gateways', async (t) => {
    const summary = await directRun;
    for (const ex of summary.run.executions) {
      const path = new URL(ex.request.url.toString()).pathname;
      const key = `${ex.request.method} ${templateOf(path) ?? path}`;
      if (!seen.has(key)) seen.set(key, new Set());
      if (ex.response) seen.get(key).add(ex.response.code);
    }
    await reportExecutions(t, summary, 'direct');
  });

  test('every operation was called, and every status a client can reach answered', () => {
    const statuses = new Set();
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const m of METHODS.filter((x) => item[x])) {
        const got = seen.get(`${m.toUpperCase()} ${path}`);
        assert.ok(got, `${m.toUpperCase()} ${path} was called`);
        got.forEach((s) => statuses.add(s));
      }
    }
    for (const [key, got] of [...seen].sort()) console.log(`# ${key}: ${[...got].sort().join(' ')}`);
    // 405 is the answer to methods the spec does not list: the raw cases below send them.
    for (const s of [200, 201, 202, 204, 304, 400, 401, 403, 404, 409, 412, 413, 415, 422, 429, 503]) {
      assert.ok(statuses.has(s), `some request was answered ${s}`);
    }
  });

  test('newman through Prism\'s validating proxy', async (t) => {
    const summary = await prismRun;
    await reportExecutions(t, summary, 'through Prism');
  });

  // What neither tool can send. Each case: never a 5xx, and the status it should get.
  const user = `ct-raw-${randomBytes(4).toString('hex')}`;
  const big = 'p'.repeat(17 * 1024);
  const req = (head, body = '') => `${head}\r\n${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n${body}`;
  const host = () => `Host: ${new URL(GATEWAY_URL).host}`;
  const chunked = (...parts) => `${parts.map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`;
  const rawCases = [
    ['raw: PATCH on a cart (405)', () => req(`PATCH /v1/carts/${user} HTTP/1.1\r\n${host()}\r\nConnection: close`), [405], { problem: true }],
    ['raw: POST /healthz (405)', () => req(`POST /healthz HTTP/1.1\r\n${host()}\r\nConnection: close`), [405], { problem: true }],
    ['raw: GET a cart with a 17 KiB body (413)', () => req(`GET /v1/carts/${user} HTTP/1.1\r\n${host()}\r\nConnection: close`, big), [413], { problem: true }],
    ['raw: HEAD a cart with a 17 KiB body (413)', () => req(`HEAD /v1/carts/${user} HTTP/1.1\r\n${host()}\r\nConnection: close`, big), [413], { problem: true }],
    ['raw: GET /healthz with a 17 KiB body (413)', () => req(`GET /healthz HTTP/1.1\r\n${host()}\r\nConnection: close`, big), [413], { problem: true }],
    ['raw: DELETE a cart with a 17 KiB body (413)', () => req(`DELETE /v1/carts/${user} HTTP/1.1\r\n${host()}\r\nConnection: close`, big), [413], { problem: true }],
    ['raw: checkout with a 17 KiB body (413)', () => req(`POST /v1/carts/${user}/checkout HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nConnection: close`, big), [413], { problem: true }],
    ['raw: quantity 2.0 (400)', () => req(`POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nConnection: close`, '{"sku":"A1","quantity":2.0}'), [400], { problem: true }],
    ['raw: quantity 2e0 (400)', () => req(`POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nConnection: close`, '{"sku":"A1","quantity":2e0}'), [400], { problem: true }],
    ['raw: quantity past 64 bits (400)', () => req(`POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nConnection: close`, '{"sku":"A1","quantity":123456789012345678901234567890}'), [400], { problem: true }],
    ['raw: duplicate member (400)', () => req(`POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nConnection: close`, '{"sku":"A1","quantity":1,"quantity":2}'), [400], { problem: true }],
    ['raw: a chunked body (200)', () => `POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked('{"sku', '":"A1","quantity":1}')}`, [200]],
    ['raw: a bad chunk size (400 problem+json)', () => `POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`, [400], { problem: true }],
    ['raw: two requests pipelined', () => `GET /healthz HTTP/1.1\r\n${host()}\r\n\r\nGET /v1/carts/${user} HTTP/1.1\r\n${host()}\r\nConnection: close\r\n\r\n`, [200, 200]],
    ['raw: a garbage request line (400)', () => 'HELLO THERE\r\n\r\n', [400]],
    ['raw: a body cut short', () => `POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"sku"`, [], { end: true }],
    ['raw: OPTIONS preflight', () => req(`OPTIONS /v1/carts/${user} HTTP/1.1\r\n${host()}\r\nOrigin: http://127.0.0.1:3000\r\nAccess-Control-Request-Method: DELETE\r\nConnection: close`), [204]],
    ['raw: If-None-Match list', () => req(`GET /v1/carts/${user} HTTP/1.1\r\n${host()}\r\nIf-None-Match: "999999", "{ETAG}"\r\nConnection: close`), [304]],
    ['raw: If-Match list', () => req(`POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nIf-Match: "999999", "{ETAG}"\r\nConnection: close`, '{"sku":"B1","quantity":1}'), [200]],
    ['raw: percent-encoded user_id', () => req(`GET /v1/carts/${user.replace(/-/g, '%2D')} HTTP/1.1\r\n${host()}\r\nConnection: close`), [200]],
    ['raw: 20 KiB header', () => req(`GET /healthz HTTP/1.1\r\n${host()}\r\nX-Big: ${'h'.repeat(20 * 1024)}\r\nConnection: close`), [431]],
    // Both framings at once, each saying another body: chunked wins today and the add is applied.
    ['raw: Content-Length and Transfer-Encoding', () => `POST /v1/carts/${user}/items HTTP/1.1\r\n${host()}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked('{"sku":"C1","quantity":1}')}`, [400], { problem: true }],
    ['raw: no Host', () => req('GET /healthz HTTP/1.1\r\nConnection: close'), [400]],
    ['raw: two Host headers', () => req(`GET /healthz HTTP/1.1\r\n${host()}\r\n${host()}\r\nConnection: close`), [400]],
  ];

  test('raw sockets: what neither tool sends', async (t) => {
    // The user's cart, and its ETag, for the list cases.
    writeFileSync(`${OUT}/raw.log`, '');
    const made = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 1 } });
    assert.equal(made.status, 200, made.text);
    for (const [name, make, want, opts] of rawCases) {
      const etag = (await http('GET', `/v1/carts/${user}`)).headers.get('etag')?.replace(/"/g, '') ?? '0';
      const sent = make().replace('{ETAG}', etag);
      const { statuses, text } = await rawExchange(GATEWAY_URL, sent, opts);
      const head = text.split('\r\n\r\n')[0].slice(0, 400);
      // Every exchange, cut short, for whoever reads a failure (build/contract/raw.log).
      appendFileSync(`${OUT}/raw.log`, `### ${name}\n${sent.slice(0, 600)}\n--->\n${text.slice(0, 800)}\n\n`);
      await t.test(`${name}: no 5xx`, () => {
        assert.ok(statuses.every((s) => s < 500), `${statuses.join(', ')}\n${head}`);
      });
      await t.test(name, { todo: pending(name) }, () => {
        assert.deepEqual(statuses, want, head);
        // A refusal on an operation's path is a problem document (docs/openapi.yaml, Errors).
        if (opts?.problem) assert.match(head, /^content-type: application\/problem\+json/im);
      });
    }
    // The gateway still answers after all of them.
    assert.equal((await http('GET', '/healthz')).status, 200);
  });

  test('Prism logged no violation in an answer', () => {
    for (const prism of [strict, raw, authPrism]) {
      assert.deepEqual(responseViolations(prism), [], `${prism.name}: ${prism.logFile}`);
    }
  });

  // The checks above pass when Prism finds nothing; this one shows that it would find something:
  // the same Prism on a copy of the spec whose Cart requires a member the gateway never writes.
  test('Prism, on a spec the gateway does not meet, reports the violation', async () => {
    const broken = YAML.parse(readFileSync(SPEC_FILE, 'utf8'));
    broken.components.schemas.Cart.required.push('no_such_member');
    const file = `${OUT}/openapi-broken.yaml`;
    writeFileSync(file, YAML.stringify(broken));
    const base = Number(process.env.CONTRACT_PRISM_PORT) || 0;
    const prism = await startPrism('broken', GATEWAY_URL, base ? base + 3 : await freePort(), ['--errors'], file);
    const res = await http('GET', `${prism.url}/v1/carts/${user}`);
    assert.equal(res.status, 500, res.text);
    const listed = JSON.parse(res.headers.get('sl-violations') ?? '[]');
    assert.ok(listed.some((v) => v.location[0] === 'response' && /no_such_member/.test(v.message)), JSON.stringify(listed));
    // Prism logs it just after it answered.
    await waitFor('Prism to log the violation', () => responseViolations(prism).length > 0, { timeoutMs: 5000 });
  });
});
