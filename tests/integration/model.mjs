// model.mjs: a Jepsen-style client model for the fault suites.
//
// A Workload runs one sequential client per user (so each user's operations have a real order)
// against one or more gateways, while the caller injects faults into real processes. Every
// request carries an Idempotency-Key, so its event_id is known in advance
// ("idem-" + hex(SHA-256(user "\n" key)), as the gateway derives it), and every answer is
// recorded:
//   ok         2xx or 202: the change is stored and must be applied exactly once;
//   uncertain  503 or no answer, even after the retries (same key): it may or may not be applied;
//   refused    any other answer: it must not be applied.
// Operations per user: set-quantity of sku S to 1, 2, 3, ... (each value once, so the final value
// names the last applied set) and, every third operation, add one of sku C.
//
// check() then waits until every ok event is applied and compares the shards with the model:
// every ok event applied once, nothing refused or unsent applied, each user's applied events in
// the order they were sent, versions 1..n without a gap, the final quantities those of the last
// applied set and the number of applied adds, and the gateway's answer (cache or shard) equal to
// the shard's cart.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { GATEWAY_URL, http, queryAllShards, sleep, uniqueUser, waitFor } from './lib.mjs';

/** The event_id the gateway derives from an Idempotency-Key. */
export function idemEventId(user, key) {
  return `idem-${createHash('sha256').update(`${user}\n${key}`).digest('hex')}`;
}

export class Workload {
  /**
   * users: how many clients (one user each); ops: operations per user; pauseMs: pause between a
   * user's operations; retries: how often a 503 or a lost answer is retried with the same key;
   * gateways: a function returning the gateway URL to use for the next request (default the
   * stack's); asyncEvery: every n-th operation asks for Prefer: respond-async (0: never);
   * queryShards: runs one query on every shard of the deployment under test and resolves to the
   * row arrays in shard order (default lib's queryAllShards, the stack's shards).
   */
  constructor({
    users = 20,
    ops = 20,
    pauseMs = 50,
    retries = 2,
    gateways = () => GATEWAY_URL,
    asyncEvery = 5,
    prefix = 'fault',
    queryShards = queryAllShards,
  } = {}) {
    this.users = Array.from({ length: users }, () => uniqueUser(prefix));
    this.opsPerUser = ops;
    this.pauseMs = pauseMs;
    this.retries = retries;
    this.gateways = gateways;
    this.asyncEvery = asyncEvery;
    this.queryShards = queryShards;
    this.log = new Map(this.users.map((u) => [u, []]));
    this.answered = 0;
    this.tally = { ok: 0, uncertain: 0, refused: 0, retries: 0, statuses: {} };
    this.onAnswer = null; // called with the number of operations answered so far
    this.started = Date.now();
    this.timeline = [];
  }

  at(what) {
    this.timeline.push(`${what} at ${Date.now() - this.started} ms (${this.answered} answered)`);
  }

  /** The i-th operation of a user: its request and its effect in the model. */
  op(user, i) {
    const key = `${user}-op${i}`;
    const add = i % 3 === 2;
    const setValue = i - Math.floor(i / 3) + 1; // 1, 2, _, 3, 4, _, ...: increasing set values
    const headers = { 'Idempotency-Key': key };
    if (this.asyncEvery > 0 && i % this.asyncEvery === this.asyncEvery - 1) headers.Prefer = 'respond-async';
    return {
      i,
      key,
      eventId: idemEventId(user, key),
      kind: add ? 'add' : 'set',
      value: add ? 1 : setValue,
      method: add ? 'POST' : 'PUT',
      path: add ? `/v1/carts/${user}/items` : `/v1/carts/${user}/items/S`,
      body: add ? { sku: 'C', quantity: 1 } : { quantity: setValue },
      headers,
      outcome: null,
      statuses: [],
      version: null,
    };
  }

  /** Sends one operation, retrying 503s and lost answers with the same key. */
  async send(user, op) {
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (attempt > 0) {
        this.tally.retries += 1;
        await sleep(200 * attempt);
      }
      let res;
      try {
        res = await http(op.method, `${this.gateways()}${op.path}`, { body: op.body, headers: op.headers, timeoutMs: 8000 });
      } catch (err) {
        op.statuses.push(`no answer: ${err.cause?.code ?? err.name}`);
        continue;
      }
      op.statuses.push(res.status);
      this.tally.statuses[res.status] = (this.tally.statuses[res.status] ?? 0) + 1;
      if (res.status === 200 || res.status === 202) {
        op.outcome = 'ok';
        if (res.status === 200) op.version = res.json?.version ?? null;
        return;
      }
      if (res.status !== 503) {
        op.outcome = 'refused';
        op.refusal = `${res.status} ${res.text.slice(0, 200)}`;
        return;
      }
    }
    op.outcome = 'uncertain';
  }

  /** Runs every user's client to the end. */
  async run() {
    await Promise.all(
      this.users.map(async (user) => {
        for (let i = 0; i < this.opsPerUser; i++) {
          const op = this.op(user, i);
          this.log.get(user).push(op);
          await this.send(user, op);
          this.tally[op.outcome] += 1;
          this.answered += 1;
          this.onAnswer?.(this.answered);
          if (this.pauseMs > 0) await sleep(this.pauseMs);
        }
      }),
    );
    this.at('load done');
  }

  /** processed_events rows of this workload's users, by user. */
  async applied() {
    const rows = (
      await this.queryShards(
        'SELECT user_id, event_id, http_status, cart_version::int AS version FROM processed_events WHERE user_id = ANY($1)',
        [this.users],
      )
    ).flat();
    const by = new Map(this.users.map((u) => [u, []]));
    for (const r of rows) by.get(r.user_id).push(r);
    return by;
  }

  /**
   * Waits (at most `timeoutMs`) until every ok operation is applied, then checks the model (see
   * the top of this file). Returns a summary for the test's diagnostics.
   */
  async check({ timeoutMs = 30_000, gateway = GATEWAY_URL, readSettleMs = 0 } = {}) {
    const okIds = new Map(this.users.map((u) => [u, this.log.get(u).filter((o) => o.outcome === 'ok').map((o) => o.eventId)]));
    let applied;
    try {
      await waitFor(
        'every acknowledged change to be applied',
        async () => {
          applied = await this.applied();
          return this.users.every((u) => {
            const have = new Set(applied.get(u).map((r) => r.event_id));
            return okIds.get(u).every((id) => have.has(id));
          });
        },
        { timeoutMs, intervalMs: 250 },
      );
    } catch (err) {
      const lost = this.users.flatMap((u) => {
        const have = new Set(applied.get(u).map((r) => r.event_id));
        return this.log.get(u).filter((o) => o.outcome === 'ok' && !have.has(o.eventId)).map((o) => ({ user: u, op: o }));
      });
      const missing = lost.map(({ user, op }) => `${user} op ${op.i} ${JSON.stringify(op.statuses)}`);
      const failure = new assert.AssertionError({
        message: `${err.message}\nacknowledged but not applied (${missing.length}):\n${missing.slice(0, 20).join('\n')}`,
      });
      failure.missing = lost; // for the caller's diagnosis (see fault-cluster.test.mjs)
      throw failure;
    }
    await sleep(300); // anything applied twice or late would show by now
    applied = await this.applied();

    let nApplied = 0;
    let uncertainApplied = 0;
    for (const user of this.users) {
      const ops = this.log.get(user);
      const byId = new Map(ops.map((o) => [o.eventId, o]));
      const rows = applied.get(user);
      nApplied += rows.length;
      for (const r of rows) {
        const op = byId.get(r.event_id);
        assert.ok(op, `${user}: applied event ${r.event_id} was never sent`);
        assert.notEqual(op.outcome, 'refused', `${user} op ${op.i}: refused (${op.refusal}) but applied`);
        assert.equal(r.http_status, 200, `${user} op ${op.i}: applied with status ${r.http_status}`);
        if (op.outcome === 'uncertain') uncertainApplied += 1;
      }
      // Order: by version, the applied operations are in the order they were sent; versions 1..n.
      const sorted = [...rows].sort((a, b) => a.version - b.version);
      assert.deepEqual(
        sorted.map((r) => r.version),
        Array.from({ length: sorted.length }, (_, k) => k + 1),
        `${user}: versions 1..${sorted.length} without a gap or a repeat`,
      );
      const order = sorted.map((r) => byId.get(r.event_id).i);
      for (let k = 1; k < order.length; k++) {
        assert.ok(order[k - 1] < order[k], `${user}: applied out of order: ops ${order.join(', ')}`);
      }
      // A 200 named the version its event made.
      for (const r of rows) {
        const op = byId.get(r.event_id);
        if (op.version !== null) assert.equal(op.version, r.version, `${user} op ${op.i}: the 200 named version ${op.version}`);
      }
      // The final cart: the last applied set wins; the adds count.
      const appliedOps = sorted.map((r) => byId.get(r.event_id));
      const sets = appliedOps.filter((o) => o.kind === 'set');
      const adds = appliedOps.filter((o) => o.kind === 'add').length;
      const expected = [];
      if (adds > 0) expected.push({ sku: 'C', quantity: adds });
      if (sets.length > 0) expected.push({ sku: 'S', quantity: sets.at(-1).value });
      const cart = await this.queryShards(
        `SELECT c.version::int AS version, coalesce(json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity) ORDER BY i.sku)
           FILTER (WHERE i.sku IS NOT NULL), '[]') AS items
         FROM carts c LEFT JOIN cart_items i ON i.cart_id = c.cart_id
         WHERE c.user_id = $1 AND c.status = 'active' GROUP BY c.cart_id, c.version`,
        [user],
      ).then((per) => per.flat());
      if (rows.length === 0) {
        assert.equal(cart.length, 0, `${user}: no change applied, no cart`);
        continue;
      }
      assert.equal(cart.length, 1, `${user}: one active cart`);
      assert.equal(cart[0].version, rows.length, `${user}: the cart's version counts the applied changes`);
      assert.deepEqual(cart[0].items, expected, `${user}: the final cart is what the applied operations make`);
      // What a client reads now (cache or shard) is the shard's cart; after a cache outage, within
      // `readSettleMs` (the workers delete what they could not update once Redis is back).
      let read;
      await waitFor(
        `${user}: GET to show version ${cart[0].version}`,
        async () => {
          read = await http('GET', `${gateway}/v1/carts/${user}`);
          return read.status === 200 && read.json.version === cart[0].version;
        },
        { timeoutMs: readSettleMs, intervalMs: 100 },
      ).catch(() => {});
      assert.equal(read.status, 200, `${user}: GET ${read.status} ${read.text}`);
      assert.equal(read.json.version, cart[0].version, `${user}: GET shows the committed version`);
      assert.deepEqual(read.json.items, expected, `${user}: GET shows the committed items`);
    }
    return {
      operations: this.users.length * this.opsPerUser,
      ok: this.tally.ok,
      uncertain: this.tally.uncertain,
      uncertainApplied,
      refused: this.tally.refused,
      retries: this.tally.retries,
      applied: nApplied,
      statuses: this.tally.statuses,
      timeline: this.timeline.join('; '),
    };
  }
}
