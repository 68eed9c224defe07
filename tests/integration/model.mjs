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

import { GATEWAY_URL, http, queryAllShards, sleep, uniqueUser, uniqueUserOnShard, waitFor } from './lib.mjs';

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
        if (res.status === 200) {
          op.version = res.json?.version ?? null;
          op.cart = res.json ?? null;
        }
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

// ---------------------------------------------------------------------------------------------
// Merges (docs/internals/merge.md): guests filled and merged into users, checked by replaying
// what each shard recorded.

/** The cart limits of the stack under test (docs/reference/api.md; the test stack's defaults). */
export const CART_LIMITS = {
  maxLines: Number(process.env.CART_MAX_LINES || 100),
  maxQuantity: Number(process.env.CART_MAX_QUANTITY || 999),
};

const MERGE_STRATEGIES = ['sum', 'max', 'replace', 'keep'];

/**
 * A merge as the user's worker makes it (cart_merge_lines): `mine` and `theirs` are {sku:
 * quantity} (mine null when the user has no active cart). Returns { status: 200, lines } or
 * { status: 422, why } (a line over maxQuantity, or more than maxLines lines).
 */
export function mergeLines(mine, theirs, strategy, { maxLines, maxQuantity } = CART_LIMITS) {
  const own = mine ?? {};
  const lines = {};
  for (const sku of new Set([...Object.keys(own), ...Object.keys(theirs)])) {
    const a = own[sku];
    const b = theirs[sku];
    let q;
    if (strategy === 'replace') q = b;
    else if (b === undefined) q = a;
    else if (a === undefined) q = b;
    else if (strategy === 'sum') q = a + b;
    else if (strategy === 'max') q = Math.max(a, b);
    else q = a; // keep
    if (q === undefined || q === 0) continue;
    if (q > maxQuantity) return { status: 422, why: `${sku}: ${q} over ${maxQuantity}` };
    lines[sku] = q;
  }
  if (Object.keys(lines).length > maxLines) return { status: 422, why: `${Object.keys(lines).length} lines` };
  return { status: 200, lines };
}

/** The lines of a cart body ({items: [{sku, quantity}]}) as {sku: quantity}. */
const linesOfCart = (cart) => Object.fromEntries((cart?.items ?? []).map((i) => [i.sku, i.quantity]));

/**
 * A paced load of merges: `pairs` guests (ids from `guestId()`, by default on shard 0), each
 * filled with adds and merged into its own user (from `userId()`, by default on shard 1) with the
 * next strategy of sum, max, replace, keep. One sequential client per pair: the user's adds, the
 * guest's adds, then the merge, every request with an Idempotency-Key, 503s and lost answers
 * retried with it (as Workload.send does). A pair starts every `startEveryMs`.
 *
 * The kinds of pair:
 *   ok     user A, B, U and guest A, B, G1, G2 with small quantities: the merge succeeds;
 *   qty    user A 900, guest A 100 and G1 under sum: over the quantity limit, refused 422;
 *   lines  the user holds maxLines - 2 lines from prepare() (not part of the load) and the guest
 *          three new skus, under sum, keep or max: over the line limit, refused 422.
 * The first `qtyPairs` pairs after the `linesPairs` ones are qty pairs; the others are ok pairs.
 *
 * check() waits until every acknowledged add is applied and every merge the guest's worker took
 * has settled, then replays each cart's processed_events (in stream order, the order its worker
 * applied them) through the cart rules and mergeLines(), and checks the shards and the answers
 * against that replay: see check().
 */
export class MergeWorkload extends Workload {
  constructor({
    pairs = 40,
    linesPairs = 2,
    qtyPairs = 4,
    startEveryMs = 250,
    guestId = () => uniqueUserOnShard(0, 'mg-g'),
    userId = () => uniqueUserOnShard(1, 'mg-u'),
    ...rest
  } = {}) {
    super({ ...rest, users: 0, ops: 0 });
    this.startEveryMs = startEveryMs;
    this.pairs = Array.from({ length: pairs }, (_, k) => {
      const kind = k < linesPairs ? 'lines' : k < linesPairs + qtyPairs ? 'qty' : 'ok';
      const strategy = kind === 'qty' ? 'sum' : kind === 'lines' ? ['sum', 'keep', 'max'][k % 3] : MERGE_STRATEGIES[k % 4];
      return this.plan(k, kind, strategy, guestId(), userId());
    });
    this.users = this.pairs.flatMap((p) => [p.guest, p.user]);
    this.tally.merges = {};
    this.mergesInFlight = 0; // merges sent and not answered yet (a fault's moment in the sagas)
  }

  /** One pair's operations (see the class comment). */
  plan(k, kind, strategy, guest, user) {
    const q = () => 1 + Math.floor(Math.random() * 5);
    const userLines = { ok: [['A', q()], ['B', q()], ['U', 1]], qty: [['A', 900]], lines: [] }[kind];
    const guestLines = { ok: [['A', q()], ['B', q()], ['G1', q()], ['G2', q()]], qty: [['A', 100], ['G1', 1]] }[kind] ?? [
      ['G1', 1],
      ['G2', 2],
      ['G3', 3],
    ];
    const add = (who, [sku, quantity], i) => {
      const key = `${who}-add${i}`;
      return this.request(who, key, 'POST', `/v1/carts/${who}/items`, { sku, quantity }, { kind: 'add', sku, quantity });
    };
    const pair = { k, kind, strategy, guest, user };
    pair.ops = [...userLines.map((l, i) => add(user, l, i)), ...guestLines.map((l, i) => add(guest, l, i))];
    pair.merge = this.request(user, `${user}-merge`, 'POST', `/v1/carts/${user}/merge`, { from: guest, strategy }, {
      kind: 'merge',
    });
    pair.ops.push(pair.merge);
    return pair;
  }

  /** An operation like Workload.op's, for any request. */
  request(user, key, method, path, body, extra) {
    const headers = { 'Idempotency-Key': key };
    return { user, key, eventId: idemEventId(user, key), method, path, body, headers, outcome: null, statuses: [], version: null, ...extra };
  }

  /** Fills the lines pairs' users with maxLines - 2 lines each (before the load; all must be 200). */
  async prepare() {
    const jobs = this.pairs
      .filter((p) => p.kind === 'lines')
      .flatMap((p) =>
        Array.from({ length: CART_LIMITS.maxLines - 2 }, (_, i) =>
          this.request(p.user, `${p.user}-fill${i}`, 'POST', `/v1/carts/${p.user}/items`, { sku: `L${String(i).padStart(3, '0')}`, quantity: 1 }, { kind: 'add', sku: `L${String(i).padStart(3, '0')}`, quantity: 1, pair: p }),
        ),
      );
    for (let at = 0; at < jobs.length; at += 8) {
      await Promise.all(
        jobs.slice(at, at + 8).map(async (op) => {
          await this.send(op.user, op);
          assert.equal(op.outcome, 'ok', `${op.user}: fill ${op.sku}: ${JSON.stringify(op.statuses)}`);
          op.pair.ops.unshift(op);
        }),
      );
    }
    return jobs.length;
  }

  /** Runs every pair's client to the end; a pair starts every startEveryMs. */
  async run() {
    this.started = Date.now();
    await Promise.all(
      this.pairs.map(async (pair) => {
        await sleep(pair.k * this.startEveryMs);
        for (const op of pair.ops) {
          if (op.outcome !== null) continue; // prepared
          const merging = op === pair.merge ? 1 : 0;
          this.mergesInFlight += merging;
          await this.send(op.user, op);
          this.mergesInFlight -= merging;
          this.tally[op.outcome] += 1;
          this.answered += 1;
          this.onAnswer?.(this.answered);
          if (this.pauseMs > 0) await sleep(this.pauseMs);
        }
        const last = pair.merge.statuses.at(-1);
        const said = pair.merge.outcome === 'uncertain' ? 'unknown' : String(last);
        this.tally.merges[said] = (this.tally.merges[said] ?? 0) + 1;
      }),
    );
    this.done = true;
    this.at('load done');
  }

  /** Every processed_events row and every cart of the load's users, from every shard. */
  async snapshot() {
    const [events, carts] = await Promise.all([
      this.queryShards(
        `SELECT user_id, event_id, http_status, stream_seq::bigint AS seq FROM processed_events WHERE user_id = ANY($1)`,
        [this.users],
      ),
      this.queryShards(
        `SELECT c.user_id, c.status, c.merged_into, c.version::bigint AS version,
                coalesce(json_object_agg(i.sku, i.quantity) FILTER (WHERE i.sku IS NOT NULL), '{}') AS lines
           FROM carts c LEFT JOIN cart_items i USING (cart_id) WHERE c.user_id = ANY($1) GROUP BY c.cart_id`,
        [this.users],
      ),
    ]);
    const rows = new Map(this.users.map((u) => [u, []]));
    for (const r of events.flat()) rows.get(r.user_id).push({ ...r, seq: Number(r.seq) });
    for (const list of rows.values()) list.sort((a, b) => a.seq - b.seq);
    const cartsOf = new Map(this.users.map((u) => [u, []]));
    for (const c of carts.flat()) cartsOf.get(c.user_id).push({ ...c, version: Number(c.version) });
    return { rows, cartsOf };
  }

  /** The rows of the merge of `pair`: the request (guest), the lines (user), the settlement (guest). */
  static sagaRows(pair, rows) {
    const id = pair.merge.eventId;
    return {
      requested: rows.get(pair.guest).find((r) => r.event_id === id),
      lines: rows.get(pair.user).find((r) => r.event_id === `mrg-${id}`),
      settled: rows.get(pair.guest).find((r) => r.event_id === `stl-${id}`),
    };
  }

  /**
   * Waits (at most `timeoutMs`) until every acknowledged add is applied and every merge whose
   * request the guest's worker took (202 recorded) has run its saga to the end, then checks, pair
   * by pair:
   *   - every applied event was sent, by this pair's client or its saga; no refused add applied;
   *   - the guest's events, replayed in stream order: adds build its cart, the merge request takes
   *     an active cart (else it is refused), the settlement ends it merged or active again as the
   *     user's side answered;
   *   - the user's events, replayed likewise: the lines arrive once, refused exactly when
   *     mergeLines() refuses them, joined by the strategy otherwise;
   *   - the shards hold what the replays make: the user's active cart, the guest's merged cart
   *     (merged_into the user, its lines those it had at the request) or its active cart;
   *   - what the client was told: an add's 2xx applied; a merge's 200 is the user's cart the replay
   *     makes and the guest ends merged with no active cart; 422 left the guest cart active with
   *     its lines; 202 ran to one end; a merge whose answer was lost ran to one end or never began;
   *     any other refusal never began.
   * Returns the counts.
   */
  async check({ timeoutMs = 60_000 } = {}) {
    let snap;
    const pending = () => {
      const out = [];
      for (const p of this.pairs) {
        for (const op of p.ops) {
          if (op.kind === 'add' && op.outcome === 'ok' && !snap.rows.get(op.user).some((r) => r.event_id === op.eventId)) {
            out.push(`${op.user} ${op.key} ${JSON.stringify(op.statuses)}`);
          }
        }
        const saga = MergeWorkload.sagaRows(p, snap.rows);
        const took = saga.requested?.http_status === 202;
        const told = ['ok', 'refused'].includes(p.merge.outcome) && [202, 422].includes(p.merge.statuses.at(-1));
        if ((took || told) && !(saga.requested && saga.lines && saga.settled)) {
          out.push(`${p.user} merge ${JSON.stringify(p.merge.statuses)}: ${['requested', 'lines', 'settled'].filter((s) => !saga[s]).join(', ')} missing`);
        }
        // A refusal of the guest's side goes on to the user's side, which records the key.
        if (saga.requested && !took && !saga.lines) out.push(`${p.user} merge refused ${saga.requested.http_status}: lines missing`);
      }
      return out;
    };
    try {
      await waitFor(
        'every acknowledged add applied and every merge settled',
        async () => {
          snap = await this.snapshot();
          return pending().length === 0;
        },
        { timeoutMs, intervalMs: 500 },
      );
    } catch (err) {
      throw new assert.AssertionError({ message: `${err.message}\n${pending().slice(0, 20).join('\n')}` });
    }
    await sleep(300); // a step applied twice or late would show by now
    snap = await this.snapshot();

    const counts = { pairs: this.pairs.length, merged: 0, refused: 0, notBegun: 0, linesMoved: 0, lateGuestAdds: 0 };
    for (const p of this.pairs) this.checkPair(p, snap, counts);
    return counts;
  }

  /** The checks of check() for one pair. */
  checkPair(p, { rows, cartsOf }, counts) {
    const who = `pair ${p.k} (${p.kind}, ${p.strategy}; guest ${p.guest}, user ${p.user})`;
    const byId = new Map(p.ops.map((o) => [o.eventId, o]));
    const saga = MergeWorkload.sagaRows(p, rows);
    const sagaIds = new Set([saga.lines, saga.settled].filter(Boolean).map((r) => r.event_id));
    const merge = p.merge;

    // The guest's replay.
    const g = { state: 'none', lines: {}, atRequest: null, late: 0, adds: 0, settledAt: null };
    for (const r of rows.get(p.guest)) {
      if (r.event_id === merge.eventId) {
        if (r.http_status === 202) {
          assert.equal(g.state, 'active', `${who}: the merge request took a ${g.state} cart`);
          g.atRequest = { ...g.lines };
          g.state = 'merging';
        } else {
          assert.notEqual(g.state, 'active', `${who}: the merge request refused ${r.http_status} with an active cart`);
        }
        continue;
      }
      if (sagaIds.has(r.event_id)) {
        assert.equal(g.state, 'merging', `${who}: settled a ${g.state} cart`);
        assert.ok(saga.lines, `${who}: settled before the user's side applied the lines`);
        g.state = saga.lines.http_status === 200 ? 'merged' : 'active';
        g.settledAt = g.adds;
        if (g.state === 'active') g.lines = { ...g.atRequest };
        continue;
      }
      const op = byId.get(r.event_id);
      assert.ok(op && op.kind === 'add' && op.user === p.guest, `${who}: guest event ${r.event_id} was never sent`);
      if (r.http_status !== 200) {
        assert.equal(g.state, 'merging', `${who}: ${op.key} refused ${r.http_status} on a ${g.state} cart`);
        continue;
      }
      assert.notEqual(op.outcome, 'refused', `${who}: ${op.key} refused (${op.refusal}) but applied`);
      assert.notEqual(g.state, 'merging', `${who}: ${op.key} applied to a merging cart`);
      if (g.state !== 'active') {
        if (g.state === 'merged') {
          // A new guest cart after the merge: only an add whose answer was lost can land this late.
          assert.equal(op.outcome, 'uncertain', `${who}: ${op.key} (${op.outcome}) applied after the merge`);
          g.late += 1;
        }
        g.state = 'active';
        g.lines = {};
      }
      g.lines[op.sku] = (g.lines[op.sku] ?? 0) + op.quantity;
      g.adds += 1;
    }

    // The user's replay.
    const u = { lines: null, afterMerge: null };
    const took = saga.requested?.http_status === 202;
    for (const r of rows.get(p.user)) {
      if (r.event_id === merge.eventId) {
        // The merge's key, recorded under the user with the merge's outcome there.
        assert.ok(saga.lines, `${who}: the merge's key recorded without its lines step`);
        assert.equal(r.http_status, saga.lines.http_status, `${who}: the key's record says what the lines step said`);
        continue;
      }
      if (r.event_id === `mrg-${merge.eventId}` && !took) {
        // The guest's side refused: the user's side only answered it, under the key.
        assert.equal(r.http_status, saga.requested.http_status, `${who}: the refusal answered as the guest's side gave it`);
        continue;
      }
      if (r.event_id === `mrg-${merge.eventId}`) {
        assert.ok(g.atRequest, `${who}: lines arrived for a request the guest never took`);
        const want = mergeLines(u.lines, g.atRequest, p.strategy);
        assert.equal(r.http_status, want.status, `${who}: the lines were answered ${r.http_status}; the model says ${want.status} (${want.why ?? 'fits'})`);
        if (want.status === 200) u.lines = want.lines;
        u.afterMerge = u.lines;
        continue;
      }
      const op = byId.get(r.event_id);
      assert.ok(op && op.kind === 'add' && op.user === p.user, `${who}: user event ${r.event_id} was never sent`);
      assert.equal(r.http_status, 200, `${who}: ${op.key} refused ${r.http_status}`);
      assert.notEqual(op.outcome, 'refused', `${who}: ${op.key} refused (${op.refusal}) but applied`);
      u.lines = { ...(u.lines ?? {}), [op.sku]: (u.lines?.[op.sku] ?? 0) + op.quantity };
    }

    // The shards hold what the replays make.
    const active = (user) => cartsOf.get(user).filter((c) => c.status === 'active');
    assert.ok(active(p.user).length <= 1 && active(p.guest).length <= 1, `${who}: at most one active cart each`);
    assert.deepEqual(active(p.user)[0]?.lines ?? null, u.lines, `${who}: the user's cart is what its events make`);
    assert.notEqual(g.state, 'merging', `${who}: the guest cart is still merging`);
    assert.deepEqual(active(p.guest)[0]?.lines ?? null, g.state === 'active' ? g.lines : null, `${who}: the guest's active cart`);
    if (saga.lines?.http_status === 200) {
      const closed = cartsOf.get(p.guest).filter((c) => c.status === 'merged');
      assert.equal(closed.length, 1, `${who}: one merged guest cart`);
      assert.equal(closed[0].merged_into, p.user, `${who}: merged_into`);
      assert.deepEqual(closed[0].lines, g.atRequest, `${who}: the merged guest cart keeps the lines it had`);
    } else {
      assert.equal(cartsOf.get(p.guest).filter((c) => c.status !== 'active').length, 0, `${who}: no merged guest cart`);
    }

    // What the client was told.
    const said = merge.outcome === 'uncertain' ? 'unknown' : merge.statuses.at(-1);
    if (took) assert.ok(saga.lines && saga.settled, `${who}: a merge begun ran to its end`);
    else assert.ok(!saga.settled && (!saga.requested || saga.lines), `${who}: a merge never begun has a refusal step and no settlement`);
    assert.ok(rows.get(p.user).some((r) => r.event_id === merge.eventId) === Boolean(saga.lines),
      `${who}: the merge's key is recorded under the user exactly when its lines step ran`);
    if (said === 200) {
      assert.equal(saga.lines?.http_status, 200, `${who}: answered 200, the lines were refused`);
      assert.deepEqual(linesOfCart(merge.cart), u.afterMerge, `${who}: the 200 is the user's cart after the merge`);
    } else if (said === 422) {
      assert.equal(saga.lines?.http_status, 422, `${who}: answered 422`);
      assert.equal(g.state, 'active', `${who}: refused, the guest cart is active again`);
    } else if (said === 202) {
      assert.ok(took, `${who}: answered 202, never taken`);
    } else if (said !== 'unknown') {
      assert.ok(!took, `${who}: answered ${said}, but the merge began`);
    }
    if (saga.lines?.http_status === 200) {
      assert.equal(g.state === 'merged' || g.late > 0, true, `${who}: merged, yet the guest is ${g.state}`);
      counts.merged += 1;
      counts.linesMoved += Object.keys(g.atRequest).length;
    } else if (took) {
      if (g.settledAt === g.adds) {
        assert.deepEqual(active(p.guest)[0]?.lines, g.atRequest, `${who}: the refused merge left the guest's lines as they were`);
      }
      counts.refused += 1;
    } else {
      counts.notBegun += 1;
    }
    counts.lateGuestAdds += g.late;
  }
}
