// Faults in the test stack: a model of what every client was told (model.mjs) checked against
// the shards after faults injected into the real processes of the test stack, mid-load:
//   kill -9 of a worker; kill -9 of nats-server (a worker stopped meanwhile); a PostgreSQL shard
//   restarted; Redis killed; workers scaled 1 -> 3 -> 1; SIGTERM to a worker and to a gateway;
//   poison and refused events; the partitions shared out by rank as workers come and go (6b); a
//   worker that acknowledges in long runs killed with acks held (9).
// After each: every acknowledged change applied exactly once, nothing refused applied, each
// user's changes in order, final carts as the model says, reads equal to the shards.
// The scenarios are numbered 1 to 9; 5, the three-node NATS cluster, is in fault-cluster.test.mjs.
//
// Needs STACK_DIR, CARTSHARD_DEV and CARTSHARD_STACK (scripts/dev test sets them).

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import pg from 'pg';

import {
  CART_PARTITIONS,
  CART_STORE_ADMIN_URLS,
  GATEWAY_URL,
  NATS_URL,
  REDIS_URL,
  SHARD_DSNS,
  STACK_CONTROL,
  STORE_BIN,
  cartEvent,
  closeAll,
  freePort,
  http,
  metricValue,
  nats,
  partitionOf,
  partitionOwners,
  processedEvents,
  publishEvent,
  publishRaw,
  refuseSkusOnShards,
  redis,
  shardCart,
  signalAndWait,
  sleep,
  stackHealthy,
  stackUp,
  startGateway,
  startProcess,
  stopProcess,
  uniqueUser,
  waitFor,
  workersMetric,
} from './lib.mjs';
import { Workload } from './model.mjs';

const FAULT_OPTS = {
  timeout: 120_000,
  skip: STACK_CONTROL ? false : 'needs STACK_DIR and CARTSHARD_DEV (scripts/dev test sets them)',
};

after(closeAll);

/** Restarts whatever of the stack is down and waits until it is ready. */
async function restartStack(wl) {
  await stackUp();
  wl.at('stack ready again');
}

/**
 * Runs `wl` and calls `fault(wl)` once `at` operations are answered; waits for both, then
 * checks the model and reports the figures.
 */
async function runScenario(t, wl, at, fault, checkOpts = {}) {
  let faultRun = null;
  wl.onAnswer = (n) => {
    if (n === at && faultRun === null) {
      faultRun = fault(wl).then(
        () => null,
        (err) => err,
      );
    }
  };
  await wl.run();
  assert.ok(faultRun, `the fault was injected (${wl.answered} answers)`);
  assert.ifError(await faultRun);
  const summary = await wl.check(checkOpts);
  t.diagnostic(JSON.stringify({ ...summary, timeline: undefined }));
  t.diagnostic(summary.timeline);
  await stackHealthy();
  return summary;
}

/**
 * A private cart-store on the stack's servers (one more member of the group), on a free admin
 * port; `env` adds or overrides settings.
 */
async function startWorker(name, env = {}) {
  const port = await freePort();
  const child = startProcess(STORE_BIN, [], {
    NATS_URL,
    REDIS_URL,
    SHARD_DSNS: SHARD_DSNS.join(','),
    CART_PARTITIONS: String(CART_PARTITIONS),
    CART_STORE_ADMIN_HOST: '127.0.0.1',
    CART_STORE_ADMIN_PORT: String(port),
    CART_STORE_ID: name,
    LOG_LEVEL: 'warn',
    ...env,
  });
  child.admin = `http://127.0.0.1:${port}`;
  await waitFor(`${name} to be ready (${child.log()})`, async () => {
    assert.equal(child.exitCode, null, `${name} exited: ${child.log()}`);
    return (await http('GET', `${child.admin}/readyz`, { timeoutMs: 500 }).catch(() => ({}))).status === 200;
  }, { timeoutMs: 15_000 });
  return child;
}

describe('faults mid-load, checked against the client model', FAULT_OPTS, () => {
  test('1. kill -9 of a cart-store, then restart', FAULT_OPTS, async (t) => {
    const wl = new Workload({ users: 20, ops: 30, pauseMs: 80 });
    await runScenario(t, wl, 150, async () => {
      await signalAndWait(wl, 'cs-1', 'SIGKILL');
      await sleep(1500);
      await restartStack(wl);
    });
  });

  test('2. kill -9 of nats-server, then restart: 503 meanwhile, never a lost 2xx', FAULT_OPTS, async (t) => {
    const wl = new Workload({ users: 20, ops: 30, pauseMs: 80, retries: 1 });
    const s = await runScenario(t, wl, 150, async () => {
      await signalAndWait(wl, 'nats', 'SIGKILL');
      await sleep(1500);
      // A worker stopped while the bus is away does not wait for answers that cannot come: the
      // deletion of its consumers (2 s per partition: 16 s here) and the acks of the change
      // notices it sent before the kill (their 5 s timeout: 3.5 s here). It stops in about 50 ms.
      await signalAndWait(wl, 'cs-1', 'SIGTERM', 2000);
      await restartStack(wl);
      await closeAll(); // this suite's own NATS connection lost its server too
    });
    assert.ok((s.statuses[503] ?? 0) > 0, 'writes were refused with 503 while the bus was away');
  });

  test('3. a PostgreSQL shard restarted: workers back off and retry, no partition is left dead', FAULT_OPTS, async (t) => {
    let readyDuring = [];
    const wl = new Workload({ users: 20, ops: 30, pauseMs: 80 });
    const s = await runScenario(t, wl, 150, async () => {
      await signalAndWait(wl, 'pg0', 'SIGINT'); // a fast shutdown, as a restart does
      // A shard is shared by every worker: its loss is reported, never a reason to be unready.
      const during = await waitFor('the workers to report shard 0 down', async () => {
        const all = await Promise.all(CART_STORE_ADMIN_URLS.map((u) => http('GET', `${u}/readyz`, { timeoutMs: 1000 })));
        return all.every((r) => r.json?.shards?.[0] === false) ? all : null;
      }, { timeoutMs: 5000, intervalMs: 100 });
      readyDuring = during.map((r) => `${r.status} ${JSON.stringify(r.json)}`);
      await sleep(1000);
      await restartStack(wl);
    });
    assert.equal(s.uncertain, 0, 'a shard away is waited for (202), never a refused write');
    for (const r of readyDuring) assert.match(r, /^200 \{"ready":true,/, 'a worker stays ready while a shard is down');
  });

  test('4. Redis killed: writes and reads go on, the cache refills once it is back', FAULT_OPTS, async (t) => {
    const wl = new Workload({ users: 20, ops: 30, pauseMs: 80 });
    const reads = { during: [], statuses: {} };
    let redisDown = false;
    const readLoop = (async () => {
      // A reader beside the writers: every answer while Redis is away must still be a cart or 404.
      while (wl.answered < wl.users.length * wl.opsPerUser) {
        const user = wl.users[Math.floor(Math.random() * wl.users.length)];
        const r = await http('GET', `/v1/carts/${user}`).catch(() => ({ status: 0 }));
        reads.statuses[r.status] = (reads.statuses[r.status] ?? 0) + 1;
        if (redisDown) reads.during.push(r.status);
        await sleep(20);
      }
    })();
    await runScenario(t, wl, 150, async () => {
      await signalAndWait(wl, 'redis', 'SIGKILL');
      redisDown = true;
      await sleep(2000);
      await restartStack(wl);
      redisDown = false;
    }, { readSettleMs: 5000 });
    await readLoop;
    t.diagnostic(`reads: ${JSON.stringify(reads.statuses)}; ${reads.during.length} while Redis was away`);
    assert.ok(reads.during.length > 0, 'reads happened while Redis was away');
    for (const s of reads.during) assert.ok(s === 200 || s === 404, `a read while Redis was away: ${s}`);
    // Refilled: reads put each user's current cart back into Redis. (A worker may still delete
    // a key it could not update while Redis was away right after a read filled it: so read again.)
    for (const user of wl.users.slice(0, 5)) {
      await waitFor(`cart:{${user}} in Redis at its current version`, async () => {
        const got = await http('GET', `/v1/carts/${user}`);
        const entry = await redis('GET', `cart:{${user}}`).catch(() => null);
        return got.status === 200 && entry !== null && JSON.parse(entry).version === got.json.version;
      }, { timeoutMs: 10_000, intervalMs: 200 });
    }
  });

  test('6. workers scaled 1 -> 3 -> 1 mid-load', FAULT_OPTS, async (t) => {
    const wl = new Workload({ users: 20, ops: 40, pauseMs: 80 });
    const extra = [];
    await runScenario(t, wl, 100, async () => {
      await signalAndWait(wl, 'cs-2', 'SIGTERM'); // 1 worker
      extra.push(await startWorker('fault-cs-3'), await startWorker('fault-cs-4')); // 3 workers
      wl.at('3 workers');
      await sleep(2500);
      for (const w of extra) await stopProcess(w, 'SIGTERM'); // 1 worker
      for (const w of extra) assert.equal(w.exitCode, 0, `a clean exit: ${w.log()}`);
      wl.at('1 worker');
      await sleep(1500);
      await restartStack(wl); // back to the stack's 2
    });
  });

  test('6b. the partitions go to the workers in runs by rank, a shard each for two; by count beside an unranked worker', FAULT_OPTS, async (t) => {
    // ownership.c: with W live workers ranked by CART_STORE_ID, rank r applies the partitions p
    // with p * W / CART_PARTITIONS = r. The owners are read from the shards' partition locks.
    const runs = (ids) => {
      const sorted = [...ids].sort();
      return Array.from({ length: CART_PARTITIONS }, (_, p) => sorted[Math.floor((p * sorted.length) / CART_PARTITIONS)]);
    };
    const ownersAre = (ids, what) =>
      waitFor(
        what,
        async () => {
          const owners = await partitionOwners();
          const want = runs(ids);
          return want.every((id, p) => owners.get(p) === id) ? owners : null;
        },
        { timeoutMs: 20_000, intervalMs: 250 },
      );
    const wl = new Workload({ users: 20, ops: 40, pauseMs: 80 });
    let extra = null;
    await runScenario(t, wl, 60, async () => {
      await ownersAre(['cs-1', 'cs-2'], 'cs-1 to apply shard 0 and cs-2 shard 1');
      wl.at('a shard each');
      extra = await startWorker('cs-3');
      await ownersAre(['cs-1', 'cs-2', 'cs-3'], 'three workers to apply 11, 11 and 10 partitions in runs');
      wl.at('runs of 11, 11, 10');
      await stopProcess(extra, 'SIGTERM');
      assert.equal(extra.exitCode, 0, `a clean exit: ${extra.log()}`);
      await signalAndWait(wl, 'cs-2', 'SIGTERM');
      await ownersAre(['cs-1'], 'cs-1 alone to apply every partition');
      wl.at('cs-1 alone');
      await restartStack(wl);
      await ownersAre(['cs-1', 'cs-2'], 'a shard each again');
    });

    // A member of the group that joined without the ranking lock (an older build, mid rolling
    // upgrade): every worker then takes at most ceil(partitions of the shard / live workers) of
    // each shard, as that build does, and ranks again once it is gone. This member applies
    // nothing, so nothing is written meanwhile.
    const older = SHARD_DSNS.map((dsn) => new pg.Client({ connectionString: dsn, application_name: 'cart-store cs-0-older' }));
    try {
      for (const c of older) {
        await c.connect();
        await c.query('SELECT pg_advisory_lock_shared($1::int, 0)', [0x47525550]); // CS_LOCK_NS_GROUP, 'GRUP'
      }
      const perShard = CART_PARTITIONS / SHARD_DSNS.length;
      const cap = Math.ceil(perShard / 3);
      const counted = await waitFor(
        `each worker to hold at most ${cap} partitions of each shard, both ${2 * cap} in all`,
        async () => {
          const owners = await partitionOwners();
          const held = { 'cs-1': [0, 0], 'cs-2': [0, 0] };
          for (const [p, id] of owners) held[id][Math.floor(p / perShard)]++;
          const ok = Object.values(held).every((byShard) => byShard.every((n) => n === cap));
          return ok ? held : null;
        },
        { timeoutMs: 20_000, intervalMs: 250 },
      );
      t.diagnostic(`beside an unranked member: ${JSON.stringify(counted)}`);
    } finally {
      for (const c of older) await c.end().catch(() => {});
    }
    await ownersAre(['cs-1', 'cs-2'], 'a shard each once the unranked member left');
  });

  test('7a. SIGTERM to a worker mid-load: its batch commits, nothing is delivered twice', FAULT_OPTS, async (t) => {
    const dupsOf = async () =>
      (await Promise.all(CART_STORE_ADMIN_URLS.map((u) => http('GET', `${u}/metrics`)))).map((r) =>
        Number(/^cartshard_events_duplicate_total (\S+)$/m.exec(r.text)?.[1] ?? Number.NaN),
      );
    const before = await dupsOf();
    const wl = new Workload({ users: 20, ops: 30, pauseMs: 80 });
    await runScenario(t, wl, 150, async () => {
      await signalAndWait(wl, 'cs-1', 'SIGTERM');
      await sleep(1000);
      await restartStack(wl);
    });
    const after = await dupsOf();
    assert.equal(after[1] - before[1] + after[0], 0, 'no duplicate deliveries (cs-1 restarted at 0)');
  });

  test('7b. SIGTERM to a gateway mid-load: no request in flight is cut off', FAULT_OPTS, async (t) => {
    const gw = await startGateway({ GATEWAY_THREADS: '2' });
    let target = gw.url;
    const wl = new Workload({ users: 20, ops: 30, pauseMs: 80, gateways: () => target });
    const cutOff = [];
    const send = wl.send.bind(wl);
    wl.send = async (user, op) => {
      const before = op.statuses.length;
      await send(user, op);
      // A connection refused before the request was sent is fine (the client goes elsewhere);
      // an answer lost after it was sent is a request cut off.
      op.statuses.slice(before).forEach((s, k) => {
        if (String(s).startsWith('no answer') && !String(s).includes('ECONNREFUSED')) cutOff.push(`${user} op ${op.i} attempt ${k}: ${s}`);
      });
    };
    await runScenario(t, wl, 150, async () => {
      const exited = new Promise((resolve) => gw.once('exit', (code, signal) => resolve({ code, signal })));
      gw.kill('SIGTERM');
      wl.at('SIGTERM gateway');
      // New connections are refused from here on: the clients move to the stack's gateway.
      target = GATEWAY_URL;
      const { code, signal } = await exited;
      wl.at('gateway exited');
      assert.equal(signal, null, gw.log());
      assert.equal(code, 0, gw.log());
    });
    assert.deepEqual(cutOff, [], 'every request the gateway had taken was answered');
  });

  test('8. a poison event and a change the shard refuses do not stop a partition', FAULT_OPTS, async (t) => {
    const wl = new Workload({ users: 20, ops: 30, pauseMs: 80 });
    const partitions = [...new Set(wl.users.map(partitionOf))];
    // Users on the same partitions as the workload, for the refused changes.
    const victims = partitions.slice(0, 4).map((p) => {
      for (;;) {
        const u = uniqueUser('refuse');
        if (partitionOf(u) === p) return u;
      }
    });
    const allow = await refuseSkusOnShards();
    const refused = [];
    try {
      await runScenario(t, wl, 100, async () => {
        for (const p of partitions) await publishRaw(`carts.events.${p}`, '{"this is": "not an event"');
        wl.at(`poison on ${partitions.length} partitions`);
        for (const u of victims) {
          refused.push(await http('POST', `/v1/carts/${u}/items`, { body: { sku: 'REFUSE1', quantity: 1 } }));
        }
        wl.at('refused changes sent');
      });
    } finally {
      await allow();
    }
    for (const r of refused) {
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.detail, /refused/);
    }
  });
});

describe('acknowledgements in runs (CART_STORE_ACK_EVERY, CART_STORE_ACK_DELAY_MS)', FAULT_OPTS, () => {
  // One worker alone (the stack's two stopped) acknowledges a partition's committed events at most
  // every 4 s. A client sends one event at a time, each awaited (so at most one is ever not
  // committed), for 9 s. The consumer's ack floor must lag behind what was committed and catch up
  // within the delay; the worker's acks must be a few, not one per event; its lag gauge, updated
  // every 5 s while acks are held, must count only what is not committed (at most the one in
  // flight). Then the worker is killed with acks held: the stack's workers take over from the
  // committed offsets, so nothing held comes back to them (no duplicate) and every event is
  // applied once.
  const DELAY_MS = 4000;

  /** The partition's consumer of the worker `name`, or null. */
  async function consumerOf(partition, name) {
    const jsm = await (await nats()).jetstreamManager();
    for await (const ci of jsm.consumers.list('CARTS')) {
      if (ci.config.filter_subject === `carts.events.${partition}` && ci.config.description?.startsWith(`cart-store ${name} `)) {
        return ci;
      }
    }
    return null;
  }

  test('9. committed events are acknowledged in runs; a worker killed with acks held loses and doubles nothing', { ...FAULT_OPTS, timeout: 90_000 }, async (t) => {
    const timeline = { at: (what) => t.diagnostic(what) };
    const user = uniqueUser('acks');
    const partition = partitionOf(user);
    let worker = null;
    try {
      await signalAndWait(timeline, 'cs-1', 'SIGTERM');
      await signalAndWait(timeline, 'cs-2', 'SIGTERM');
      worker = await startWorker('acks-cs', { CART_STORE_ACK_DELAY_MS: String(DELAY_MS), CART_STORE_ACK_EVERY: '256' });
      const metrics = async () => (await http('GET', `${worker.admin}/metrics`)).text;
      const lagOf = (text) => Number(new RegExp(`^cartshard_partition_lag\\{partition="${partition}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
      await waitFor('the worker to own every partition', async () => metricValue(await metrics(), 'cartshard_partitions_owned') === CART_PARTITIONS, {
        timeoutMs: 10_000,
      });
      const acksBefore = metricValue(await metrics(), 'cartshard_acks_total');

      let sent = 0;
      let lastSeq = 0;
      let heldSeen = 0;
      const lags = [];
      const start = Date.now();
      while (Date.now() - start < 9000) {
        const { ack, reply } = await publishEvent(cartEvent('cart.item_added', user, { sku: 'A', quantity: 1 }), { reply: true });
        assert.ok([200, 201].includes(reply.status), `${reply.status} ${reply.detail}`);
        sent++;
        lastSeq = ack.seq;
        const ci = await consumerOf(partition, 'acks-cs');
        assert.ok(ci, "the worker's consumer of the partition");
        if (ci.ack_floor.stream_seq < lastSeq) heldSeen++;
        lags.push(lagOf(await metrics()));
        await sleep(400);
      }
      const committedAt = Date.now();
      const caughtUp = await waitFor('the ack floor to reach the last committed event', async () => {
        const ci = await consumerOf(partition, 'acks-cs');
        return ci && ci.ack_floor.stream_seq === lastSeq && ci.num_ack_pending === 0 ? Date.now() : null;
      }, { timeoutMs: DELAY_MS + 3000, intervalMs: 100 });
      const acks = metricValue(await metrics(), 'cartshard_acks_total') - acksBefore;
      t.diagnostic(JSON.stringify({ sent, acks, heldSeen, caughtUpMs: caughtUp - committedAt, lags: lags.join(' ') }));
      assert.ok(sent >= 10, `events sent (${sent})`);
      assert.ok(heldSeen >= sent / 2, `the ack floor lagged behind the committed events (${heldSeen} of ${sent} looks)`);
      assert.ok(acks >= 1 && acks <= 4, `${acks} acks for ${sent} events in 9 s, each run at most ${DELAY_MS} ms old`);
      assert.ok(Math.max(...lags) <= 1, `the lag counts only the event in flight: ${lags.join(' ')}`);
      assert.ok(!lags.some(Number.isNaN), 'the partition has a lag gauge');
      await waitFor('the lag gauge to read 0 once everything was applied and acknowledged', async () => lagOf(await metrics()) === 0, {
        timeoutMs: 7000,
      });

      // Held acks, then SIGKILL: the next owners start from the committed offsets.
      for (let i = 0; i < 5; i++) {
        const { ack, reply } = await publishEvent(cartEvent('cart.item_added', user, { sku: 'A', quantity: 1 }), { reply: true });
        assert.equal(reply.status, 200, reply.detail);
        sent++;
        lastSeq = ack.seq;
      }
      const held = await consumerOf(partition, 'acks-cs');
      assert.ok(held.ack_floor.stream_seq < lastSeq, `acks held at the kill (floor ${held.ack_floor.stream_seq}, committed ${lastSeq})`);
      await stopProcess(worker, 'SIGKILL');
      timeline.at('SIGKILL acks-cs with acks held');
      worker = null;
      await stackUp();
      await stackHealthy();
      const { reply } = await publishEvent(cartEvent('cart.item_added', user, { sku: 'A', quantity: 1 }), {
        reply: true,
        replyTimeoutMs: 15_000,
      });
      assert.equal(reply.status, 200, reply.detail);
      sent++;
      assert.equal(await workersMetric('cartshard_events_duplicate_total'), 0, 'no committed event was delivered again');
      assert.equal((await processedEvents(user)).length, sent, 'every event recorded once');
      const cart = await shardCart(user);
      assert.equal(cart.version, sent, 'every event applied once');
      assert.deepEqual(cart.items, [{ sku: 'A', quantity: sent }]);
    } finally {
      if (worker) await stopProcess(worker, 'SIGTERM');
      await stackUp();
    }
  });
});
