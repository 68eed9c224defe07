// The gateway's graceful shutdown (README: Shutdown): on SIGTERM the writes in flight are
// answered and applied once, new connections are refused and it exits 0; an idle gateway exits
// at once. The suite starts private gateways on free loopback ports and freezes the test stack's
// workers for a moment (SIGSTOP), so it needs STACK_DIR and CARTSHARD_DEV (scripts/dev test sets
// them).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { get as httpGet } from 'node:http';
import { after, describe, test } from 'node:test';

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import {
  STACK_CONTROL,
  closeAll,
  freePort,
  http,
  poll,
  startGateway,
  startProcess,
  stackPid,
  stopProcess,
  uniqueUser,
} from './lib.mjs';

const SLOW = { timeout: 30_000 };

after(closeAll);

describe('graceful shutdown', SLOW, () => {
  const needs = { ...SLOW, skip: STACK_CONTROL ? false : 'needs STACK_DIR and CARTSHARD_DEV (scripts/dev test sets them)' };
  test('SIGTERM: writes in flight are answered, new connections refused, then a clean exit', needs, async () => {
    const gw = await startGateway({ GATEWAY_THREADS: '2' });
    const users = Array.from({ length: 20 }, () => uniqueUser('term'));
    // Sync writes wait for their commit; with the workers frozen, they are surely still in flight
    // when the signal lands (and are answered 202 when the sync wait runs out).
    const workers = ['cs-1', 'cs-2'].map(stackPid).filter((pid) => pid !== null);
    for (const pid of workers) process.kill(pid, 'SIGSTOP');
    let answers;
    let code;
    let signal;
    try {
      const inflight = users.map((u) =>
        http('POST', `${gw.url}/v1/carts/${u}/items`, { body: { sku: 'A1', quantity: 1 } }).catch((e) => ({ status: 0, error: e })),
      );
      await new Promise((r) => setTimeout(r, 300));
      const exited = once(gw, 'exit');
      gw.kill('SIGTERM');
      answers = await Promise.all(inflight);
      [code, signal] = await exited;
    } finally {
      for (const pid of workers) process.kill(pid, 'SIGCONT');
    }
    assert.equal(signal, null, `no crash: ${gw.log()}`);
    assert.equal(code, 0, `exit status 0: ${gw.log()}`);
    for (const a of answers) assert.ok([200, 202, 503, 0].includes(a.status), `status ${a.status}`);
    const served = answers.filter((a) => a.status === 200 || a.status === 202).length;
    assert.ok(served >= 1, 'the requests already in flight were answered');
    // Whatever was answered 2xx is applied, once.
    for (const [i, a] of answers.entries()) {
      if (a.status !== 200 && a.status !== 202) continue;
      await poll(async () => (await http('GET', `/v1/carts/${users[i]}`)).status === 200, 5000, 'the commit');
      assert.deepEqual((await http('GET', `/v1/carts/${users[i]}`)).json.items, [{ sku: 'A1', quantity: 1 }]);
    }
    await assert.rejects(http('GET', `${gw.url}/healthz`, { timeoutMs: 1000 }), 'the port is closed');
  });

  test('SIGTERM to an idle gateway: it exits at once', needs, async (t) => {
    // Probed on connections closed after each answer (fetch keeps its own open, and the drain
    // gives an open keep-alive connection 300 ms for one more request).
    const gw = await startGateway({ GATEWAY_THREADS: '2' }, { ready: async (url) => (await getOnce(`${url}/readyz`)) === 200 });
    assert.equal(await getOnce(`${gw.url}/readyz`), 200);
    // No connection is open, so there is nothing to drain: the drain used to wait a second or
    // two for h2o's HTTP/2 shutdown timer, with no HTTP/2 connection to tell.
    const exited = once(gw, 'exit');
    const t0 = Date.now();
    gw.kill('SIGTERM');
    const [code] = await exited;
    const ms = Date.now() - t0;
    assert.equal(code, 0, `exit status 0: ${gw.log()}`);
    t.diagnostic(`exited ${ms} ms after SIGTERM`);
    assert.ok(ms < 1000, `exited ${ms} ms after SIGTERM: ${gw.log()}`);
  });

  test('NATS unreachable at start: the gateway serves, writes are 503, it connects later, SIGTERM stops it', SLOW, async () => {
    const port = await freePort();
    const healthy = async (url) => (await http('GET', `${url}/healthz`, { timeoutMs: 500 })).status === 200;
    const gw = await startGateway({ NATS_URL: `nats://127.0.0.1:${port}` }, { ready: healthy });
    const ready = await http('GET', `${gw.url}/readyz`);
    assert.equal(ready.status, 200, 'a shared dependency down does not make the gateway unready');
    assert.equal(ready.json.nats, false);
    const write = await http('POST', `${gw.url}/v1/carts/${uniqueUser('nonats')}/items`, { body: { sku: 'A1', quantity: 1 } });
    assert.equal(write.status, 503);
    // A server appears on that port: the gateway connects in the background.
    const dir = mkdtempSync(path.join(tmpdir(), 'cartshard-nats-'));
    const nats = startProcess('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir]);
    try {
      await poll(async () => (await http('GET', `${gw.url}/readyz`, { timeoutMs: 500 })).json?.nats === true, 15_000,
        'the gateway to connect to the late NATS');
    } finally {
      await stopProcess(nats);
      rmSync(dir, { recursive: true, force: true });
    }
    // And with no NATS at all, SIGTERM still stops a gateway at once.
    const lone = await startGateway({ NATS_URL: `nats://127.0.0.1:${await freePort()}` }, { ready: healthy });
    for (const g of [gw, lone]) {
      const exited = once(g, 'exit');
      g.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
    }
  });
});

/** The status of a GET of `url` on a connection of its own, closed after the answer. */
function getOnce(url) {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within 1 s`)));
    req.on('error', reject);
  });
}
