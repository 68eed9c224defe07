// TLS and HTTP/2 on the gateway (GATEWAY_TLS_CERT / GATEWAY_TLS_KEY): a private gateway with a
// self-signed certificate made here by openssl, spoken to over HTTP/2 (ALPN "h2") and HTTP/1.1,
// the configuration errors that name the variable, and HTTP/2 with prior knowledge on the test
// stack's plain gateway. Private gateways are stopped by pid; the key material lives in a
// temporary directory removed at the end.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';

import {
  GATEWAY_URL,
  TEST_OPTS,
  closeAll,
  refusedGateway,
  startGateway,
  stopProcess,
  uniqueUser,
} from './lib.mjs';

const run = promisify(execFile);
const SLOW = { timeout: 30_000 };
const dir = mkdtempSync(path.join(tmpdir(), 'cartshard-tls-'));
const files = {
  cert: path.join(dir, 'cert.pem'),
  key: path.join(dir, 'key.pem'),
  otherKey: path.join(dir, 'other-key.pem'),
  garbage: path.join(dir, 'garbage.pem'),
};
let ca;
let gw;

/** A self-signed P-256 certificate for 127.0.0.1 and localhost, and an unrelated second key. */
async function makeCertificate() {
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', files.key, '-out', files.cert, '-days', '2', '-subj', '/CN=cartshard-test',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', files.otherKey]);
  writeFileSync(files.garbage, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
  ca = readFileSync(files.cert);
}

/** One HTTP/2 request on `session`; resolves to { status, headers, text, json }. */
function h2(session, method, p, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ':method': method, ':path': p, ...headers };
    let payload;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      if (h['content-type'] === undefined) h['content-type'] = 'application/json';
    }
    const req = session.request(h);
    let res;
    let text = '';
    req.setEncoding('utf8');
    req.on('response', (r) => {
      res = r;
    });
    req.on('data', (d) => {
      text += d;
    });
    req.on('end', () => {
      const type = res['content-type'] ?? '';
      resolve({ status: res[':status'], headers: res, text, json: /json/.test(type) && text ? JSON.parse(text) : undefined });
    });
    req.on('error', reject);
    req.setTimeout(8000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.end(payload);
  });
}

/** An HTTP/2 session over TLS to `url`, trusting only the test certificate. */
async function h2connect(url) {
  const session = http2.connect(url, { ca });
  session.on('error', () => {});
  await once(session, 'connect');
  return session;
}

/** An HTTP/1.1 request over TLS (ALPN offers only http/1.1). */
function h1(url, method, p, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      `${url}${p}`,
      {
        method,
        ca,
        ALPNProtocols: ['http/1.1'],
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
        timeout: 8000,
      },
      (res) => {
        const protocol = res.socket.alpnProtocol;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            headers: res.headers,
            protocol,
            json: /json/.test(res.headers['content-type'] ?? '') && text ? JSON.parse(text) : undefined,
          }),
        );
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(payload);
  });
}

/** The gateway answers on `url` over TLS: HTTP/2 GET /readyz is 200. */
async function readyOverTls(url) {
  const s = await h2connect(url);
  try {
    return (await h2(s, 'GET', '/readyz')).status === 200;
  } finally {
    s.close();
  }
}

/** Runs the gateway with `env` and expects it to refuse to start: exit status 2 and stderr. */

before(async () => {
  await makeCertificate();
  gw = await startGateway(
    { GATEWAY_TLS_CERT: files.cert, GATEWAY_TLS_KEY: files.key, GATEWAY_THREADS: '2' },
    { ready: readyOverTls },
  );
});

after(async () => {
  if (gw) await stopProcess(gw);
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('the gateway over TLS', SLOW, () => {
  test('ALPN picks HTTP/2, and the whole API works over it', TEST_OPTS, async () => {
    const s = await h2connect(gw.url);
    try {
      assert.equal(s.alpnProtocol, 'h2');
      assert.equal(s.socket.getPeerCertificate().subject.CN, 'cartshard-test');
      const user = uniqueUser('tls');
      const added = await h2(s, 'POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 2 } });
      assert.equal(added.status, 200, added.text);
      assert.deepEqual(added.json.items, [{ sku: 'A1', quantity: 2 }]);
      assert.equal(added.headers.etag, '"1"');
      assert.match(added.headers['x-request-id'], /\S/);
      const got = await h2(s, 'GET', `/v1/carts/${user}`);
      assert.equal(got.status, 200);
      assert.equal(got.json.version, 1);
      assert.equal((await h2(s, 'GET', `/v1/carts/${user}`, { headers: { 'if-none-match': '"1"' } })).status, 304);
      const bad = await h2(s, 'POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 0 } });
      assert.equal(bad.status, 422);
      assert.equal(bad.headers['content-type'], 'application/problem+json');
      const wrong = await h2(s, 'PATCH', `/v1/carts/${user}`);
      assert.equal(wrong.status, 405);
      assert.match(wrong.headers.allow, /GET/);
      // Over HTTP/2, h2o refuses a body over CART_MAX_BODY_BYTES by resetting its stream
      // (REFUSED_STREAM: nothing was processed) instead of answering 413
      // (docs/internals/http-front.md); the session goes on.
      const big = h2(s, 'POST', `/v1/carts/${user}/items`, { body: JSON.stringify({ sku: 'A1', quantity: 1, pad: 'x'.repeat(40_000) }) });
      await assert.rejects(big, /REFUSED_STREAM/);
      assert.deepEqual((await h2(s, 'GET', `/v1/carts/${user}`)).json.items, [{ sku: 'A1', quantity: 2 }]);
      const out = await h2(s, 'POST', `/v1/carts/${user}/checkout`);
      assert.equal(out.status, 200, out.text);
      assert.equal(out.json.status, 'checked_out');
    } finally {
      s.close();
    }
  });

  test('50 parallel adds multiplexed on one HTTP/2 connection leave exactly 50', TEST_OPTS, async () => {
    const s = await h2connect(gw.url);
    try {
      const user = uniqueUser('tls-mux');
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => h2(s, 'POST', `/v1/carts/${user}/items`, { body: { sku: 'M1', quantity: 1 } })),
      );
      assert.deepEqual([...new Set(answers.map((a) => a.status))], [200]);
      const got = await h2(s, 'GET', `/v1/carts/${user}`);
      assert.deepEqual(got.json.items, [{ sku: 'M1', quantity: 50 }]);
      assert.equal(got.json.version, 50);
    } finally {
      s.close();
    }
  });

  test('HTTP/1.1 over TLS for clients that do not offer h2', TEST_OPTS, async () => {
    const user = uniqueUser('tls-h1');
    const added = await h1(gw.url, 'POST', `/v1/carts/${user}/items`, { sku: 'B2', quantity: 3 });
    assert.equal(added.protocol, 'http/1.1');
    assert.equal(added.status, 200);
    assert.deepEqual(added.json.items, [{ sku: 'B2', quantity: 3 }]);
    assert.equal((await h1(gw.url, 'GET', '/healthz')).status, 200);
  });

  test('curl --http2 negotiates HTTP/2', TEST_OPTS, async () => {
    const { stdout } = await run('curl', ['-sS', '--http2', '--cacert', files.cert, '-o', '/dev/null', '-w', '%{http_code} %{http_version}', `${gw.url}/healthz`]);
    assert.equal(stdout, '200 2');
  });

  test('plain HTTP, an old TLS version and an untrusted peer are refused, and the gateway stays up', TEST_OPTS, async () => {
    const port = Number(new URL(gw.url).port);
    // Plain HTTP on the TLS port: the handshake fails and the connection is closed.
    const sock = net.connect(port, '127.0.0.1');
    await once(sock, 'connect');
    sock.end('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    let reply = '';
    sock.on('data', (d) => {
      reply += d;
    });
    await once(sock, 'close');
    assert.doesNotMatch(reply, /HTTP\/1\.1 200/);
    // TLS 1.1 is below the minimum.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const t = tls.connect({ port, host: '127.0.0.1', ca, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, resolve);
        t.on('error', reject);
      }),
    );
    // A client that does not trust the certificate refuses it (what the certificate is for).
    await assert.rejects(
      new Promise((resolve, reject) => {
        const t = tls.connect({ port, host: '127.0.0.1' }, resolve);
        t.on('error', reject);
      }),
      /self[- ]signed/i,
    );
    assert.equal(gw.exitCode, null, gw.log());
    assert.equal(await readyOverTls(gw.url), true);
  });

  test('SIGTERM with an idle HTTP/2 connection open: a clean exit, soon', SLOW, async () => {
    const own = await startGateway({ GATEWAY_TLS_CERT: files.cert, GATEWAY_TLS_KEY: files.key }, { ready: readyOverTls });
    const s = await h2connect(own.url);
    assert.equal((await h2(s, 'GET', '/healthz')).status, 200);
    const goaway = once(s, 'goaway');
    const t0 = Date.now();
    const exited = once(own, 'exit');
    own.kill('SIGTERM');
    const [code, signal] = await exited;
    assert.equal(signal, null, own.log());
    assert.equal(code, 0, own.log());
    assert.ok(Date.now() - t0 < 10_000, 'exited within the drain deadline');
    await Promise.race([goaway, once(s, 'close')]);
    s.destroy();
  });
});

describe('TLS configuration errors name the variable', () => {
  test('a certificate without a key', TEST_OPTS, async () => {
    const r = await refusedGateway({ GATEWAY_TLS_CERT: files.cert, GATEWAY_TLS_KEY: '' });
    assert.equal(r.code, 2);
    assert.match(r.log, /GATEWAY_TLS_KEY: expected the path of a PEM private key/);
  });

  test('a key without a certificate', TEST_OPTS, async () => {
    const r = await refusedGateway({ GATEWAY_TLS_KEY: files.key });
    assert.equal(r.code, 2);
    assert.match(r.log, /GATEWAY_TLS_CERT: expected the path of a PEM certificate/);
  });

  test('a missing file, a file that is not a certificate, a key that does not match', TEST_OPTS, async () => {
    let r = await refusedGateway({ GATEWAY_TLS_CERT: path.join(dir, 'nope.pem'), GATEWAY_TLS_KEY: files.key });
    assert.equal(r.code, 2);
    assert.match(r.log, /GATEWAY_TLS_CERT: cannot use ".*nope\.pem" as a PEM certificate chain: .+/);
    r = await refusedGateway({ GATEWAY_TLS_CERT: files.garbage, GATEWAY_TLS_KEY: files.key });
    assert.equal(r.code, 2);
    assert.match(r.log, /GATEWAY_TLS_CERT: cannot use/);
    r = await refusedGateway({ GATEWAY_TLS_CERT: files.cert, GATEWAY_TLS_KEY: files.garbage });
    assert.equal(r.code, 2);
    assert.match(r.log, /GATEWAY_TLS_KEY: cannot use ".*garbage\.pem" as a PEM private key/);
    r = await refusedGateway({ GATEWAY_TLS_CERT: files.cert, GATEWAY_TLS_KEY: files.otherKey });
    assert.equal(r.code, 2);
    assert.match(r.log, /GATEWAY_TLS_KEY: ".*other-key\.pem" is not the key of the certificate in GATEWAY_TLS_CERT/);
  });
});

describe('HTTP/2 without TLS', () => {
  test('the plain gateway speaks HTTP/2 to a client with prior knowledge (h2c), lower-case headers', TEST_OPTS, async () => {
    const s = http2.connect(GATEWAY_URL);
    s.on('error', () => {});
    try {
      const user = uniqueUser('h2c');
      const added = await h2(s, 'POST', `/v1/carts/${user}/items`, { body: { sku: 'C3', quantity: 1 } });
      assert.equal(added.status, 200, added.text);
      for (const name of Object.keys(added.headers)) assert.equal(name, name.toLowerCase());
      assert.equal(added.headers.etag, '"1"');
      assert.ok(added.headers['ratelimit-limit'] !== undefined);
      const got = await h2(s, 'GET', `/v1/carts/${user}`);
      assert.equal(got.status, 200);
      assert.deepEqual(got.json.items, [{ sku: 'C3', quantity: 1 }]);
    } finally {
      s.close();
    }
  });
});
