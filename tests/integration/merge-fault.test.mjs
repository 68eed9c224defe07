// Merges under faults (issue 19; docs/internals/merge.md): a paced load of guest carts filled and
// merged into users on the other shard (model.mjs, MergeWorkload: every strategy, merges refused
// over the quantity and the line limits, Idempotency-Keys and retries as a real client's), while
// the guests' worker, the users' worker or nats-server is killed with SIGKILL at random moments of
// the load, then restarted. Afterwards the model replays what each shard recorded and checks the
// carts and every answer: an acknowledged merge moved each guest line once by its strategy and
// closed the guest cart; a refused one left the guest cart active with its lines; a merge whose
// answer was lost ran to one end or never began; no line doubled or lost.
//
// Needs STACK_DIR, CARTSHARD_DEV and CARTSHARD_STACK (scripts/dev test sets them).

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  SHARDS,
  STACK_CONTROL,
  closeAll,
  partitionOf,
  partitionOwners,
  procComm,
  shardOfPartition,
  signalAndWait,
  sleep,
  stackHealthy,
  stackPid,
  stackUp,
  uniqueUserOnShard,
} from './lib.mjs';
import { MergeWorkload } from './model.mjs';

const OPTS = {
  timeout: 180_000,
  skip:
    !STACK_CONTROL ? 'needs STACK_DIR and CARTSHARD_DEV (scripts/dev test sets them)'
    : SHARDS < 2 ? 'needs two shards'
    : false,
};
const PROGRAMS = { 'cs-1': 'cart-store', 'cs-2': 'cart-store', nats: 'nats-server' };
const KILLS = 2; // per scenario, while the load runs
const LOAD = { pairs: 48, linesPairs: 2, qtyPairs: 4, startEveryMs: 300, pauseMs: 60, retries: 4 };

after(async () => {
  try {
    // Later suites need the whole stack.
    if (STACK_CONTROL && Object.entries(PROGRAMS).some(([name, program]) => procComm(stackPid(name)) !== program)) {
      await stackUp();
    }
  } finally {
    await closeAll();
  }
});

/** A new user on `shard` whose partition `owner` holds (any of the shard's when it holds none). */
function userHeldBy(owners, shard, owner, prefix) {
  const held = [...owners].some(([p, o]) => o === owner && shardOfPartition(p) === shard);
  for (;;) {
    const u = uniqueUserOnShard(shard, prefix);
    if (!held || owners.get(partitionOf(u)) === owner) return u;
  }
}

/** The worker that holds most of `users`' partitions now. */
async function holderOf(users) {
  const owners = await partitionOwners();
  const votes = {};
  for (const u of users) {
    const o = owners.get(partitionOf(u));
    if (o) votes[o] = (votes[o] ?? 0) + 1;
  }
  const [best] = Object.entries(votes).sort((a, b) => b[1] - a[1]);
  assert.ok(best && PROGRAMS[best[0]], `a stack worker holds the partitions (${JSON.stringify(votes)})`);
  return best[0];
}

/**
 * Runs the merge load with guests on shard 0 held by one worker and users on shard 1 held by the
 * other, and kills `target` ('guests': the guests' worker, 'users': the users' worker, 'nats')
 * KILLS times at random moments of the load, each 0 to 5 ms after a merge was sent, and each
 * followed by a restart; then checks the model.
 * `load` overrides LOAD.
 */
async function scenario(t, target, load = {}) {
  const owners = await partitionOwners();
  const workers = ['cs-1', 'cs-2'];
  const wl = new MergeWorkload({
    ...LOAD,
    ...load,
    guestId: () => userHeldBy(owners, 0, workers[0], 'mf-g'),
    userId: () => userHeldBy(owners, 1, workers[1], 'mf-u'),
  });
  const filled = await wl.prepare();
  const kills = [];
  const faults = async () => {
    while (kills.length < KILLS && !wl.done) {
      await sleep(1000 + Math.random() * 3000);
      let victim = 'nats';
      if (target === 'guests') victim = await holderOf(wl.pairs.map((p) => p.guest));
      if (target === 'users') victim = await holderOf(wl.pairs.map((p) => p.user));
      // Into a saga: once a merge is on its way, after 0 to 5 ms (a saga takes a few ms).
      while (wl.mergesInFlight === 0 && !wl.done) await sleep(1);
      if (wl.done) break;
      await sleep(Math.random() * 5);
      const inFlight = wl.mergesInFlight;
      await signalAndWait(wl, victim, 'SIGKILL');
      kills.push(`${victim} after ${wl.answered} answers, ${inFlight} merges in flight`);
      await sleep(1000 + Math.random() * 1000);
      await stackUp();
      wl.at('stack up');
      await stackHealthy();
    }
  };
  await Promise.all([wl.run(), faults()]);
  assert.ok(kills.length > 0, 'a kill happened during the load');
  const counts = await wl.check();
  const report = {
    scenario: target,
    kills,
    operations: wl.answered,
    prepared: filled,
    answers: wl.tally.statuses,
    retries: wl.tally.retries,
    mergesTold: wl.tally.merges,
    ...counts,
  };
  t.diagnostic(JSON.stringify(report));
  t.diagnostic(wl.timeline.join('; '));
  await stackHealthy();
  return report;
}

describe('merges under kill -9, checked against the model', OPTS, () => {
  test("kill -9 of the guests' worker", OPTS, async (t) => {
    await scenario(t, 'guests');
  });

  test("kill -9 of the users' worker", OPTS, async (t) => {
    await scenario(t, 'users');
  });

  test('kill -9 of nats-server', OPTS, async (t) => {
    // One retry only: some clients give up while the bus is away and never learn their merge's fate.
    const r = await scenario(t, 'nats', { retries: 1 });
    assert.ok((r.answers[503] ?? 0) > 0, 'writes were refused with 503 while the bus was away');
  });
});
