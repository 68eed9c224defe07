// data.mjs: the carts and events the scenarios work on, and the rows of the COPY baseline.
//
// Every user of a run is "<tag>-<letter>-<nnnnnn>" (a random tag per run, so a kept stack can be
// benchmarked again without meeting its old carts): the same length for every scenario, so that
// every cart body has the same size. The typical cart is three lines, A1 x2, B7 x1, C3 x1, at
// version 3.

import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

import { addItem, nats, partitionOf, queryShard, SHARDS, shardOf } from '../integration/lib.mjs';

// The integration suites' npm packages (tests/integration/package.json) serve the bench too.
const { headers: natsHeaders } = createRequire(new URL('../integration/package.json', import.meta.url))('nats');

export const USER_WIDTH = 6;
export const TYPICAL_LINES = [
  { sku: 'A1', quantity: 2 },
  { sku: 'B7', quantity: 1 },
  { sku: 'C3', quantity: 1 },
];

/** The user ids prefix + 000000 .. prefix + (count-1), as cart.lua names them too. */
export function userIds(prefix, count) {
  return Array.from({ length: count }, (_, n) => prefix + String(n).padStart(USER_WIDTH, '0'));
}

// Runs `fn` over `items` with at most `limit` calls in flight.
async function eachLimited(items, limit, fn) {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  });
  await Promise.all(lanes);
}

/**
 * Gives each user the typical cart through the API (one add per line, each waiting for the
 * commit), so the workers write the carts and their cache entries as in production.
 */
export async function createTypicalCarts(users, concurrency = 32) {
  await eachLimited(users, concurrency, async (u) => {
    for (const line of TYPICAL_LINES) {
      const res = await addItem(u, line.sku, line.quantity);
      if (res.status !== 200) throw new Error(`creating ${u}'s cart: ${res.status} ${res.text}`);
    }
  });
}

/**
 * Writes the typical cart of every user straight into its shard (the rows a worker would have
 * written for the three adds; no processed_events, which reads never look at). Much faster than
 * the API for the tens of thousands of carts of the cache-miss scenario, which only reads them.
 */
export async function seedTypicalCarts(users) {
  const CHUNK = 5000;
  const byShard = Array.from({ length: SHARDS }, () => []);
  for (const u of users) byShard[shardOf(u)].push(u);
  await Promise.all(
    byShard.map(async (list, shard) => {
      for (let i = 0; i < list.length; i += CHUNK) {
        const part = list.slice(i, i + CHUNK);
        const ids = part.map(() => randomUUID());
        await queryShard(
          shard,
          `INSERT INTO carts (cart_id, user_id, partition, status, version, created_at, updated_at)
           SELECT c, u, p, 'active', 3, now(), now() FROM unnest($1::uuid[], $2::text[], $3::int[]) AS t(c, u, p)`,
          [ids, part, part.map(partitionOf)],
        );
        await queryShard(
          shard,
          `INSERT INTO cart_items (cart_id, sku, quantity)
           SELECT c, l.sku, l.quantity FROM unnest($1::uuid[]) AS c
             CROSS JOIN jsonb_to_recordset($2::jsonb) AS l(sku text, quantity int)`,
          [ids, JSON.stringify(TYPICAL_LINES)],
        );
      }
    }),
  );
}

/** The sku of a user's round-th add in the apply backlog: ten rounds, ten new lines. */
export function backlogSku(round) {
  return `S${round}`;
}

/**
 * Publishes `rounds` cart.item_added events for every user straight to JetStream, as the gateway
 * does for an add with Prefer: respond-async: subject carts.events.<fnv1a_32(user) mod
 * CART_PARTITIONS>, header Nats-Msg-Id = event_id, the event JSON of docs/reference/events.md
 * with a trace id. Round r adds one of sku S<r> to every user, users interleaved, so each batch a
 * worker takes spans many carts and every event makes a new line.
 *
 * Published the way nats.c's js_PublishMsgAsync (the gateway's call) does it: a plain publish
 * with a reply subject on which JetStream acknowledges, at most `window` unacknowledged at once.
 * (nats.js's js.publish() makes a promise and a timer per message, which caps a Node process at a
 * third of this rate.) Rejects if JetStream refuses one or stops acknowledging for 30 s.
 * Resolves to { events, seconds }.
 */
export async function publishBacklog(users, rounds, { window = 1024 } = {}) {
  const nc = await nats();
  const enc = new TextEncoder();
  const subjects = users.map((u) => `carts.events.${partitionOf(u)}`);
  const inbox = `_INBOX.cartshard-bench.${randomUUID()}`;
  const sub = nc.subscribe(`${inbox}.*`);
  let acked = 0;
  let refused = null;
  let waiter = null;
  const reader = (async () => {
    for await (const m of sub) {
      const ack = m.json();
      if (ack.error || ack.duplicate) refused ??= JSON.stringify(ack);
      acked += 1;
      if (waiter !== null && acked >= waiter.until) {
        waiter.resolve();
        waiter = null;
      }
    }
  })();
  const ackedUpTo = async (until) => {
    if (acked >= until) return;
    const reached = new Promise((resolve) => {
      waiter = { until, resolve };
    });
    const stalled = sleep(30_000, 'stalled');
    if ((await Promise.race([reached, stalled])) === 'stalled') {
      throw new Error(`JetStream acknowledged ${acked} of ${until} backlog events, then nothing for 30 s`);
    }
  };
  const started = performance.now();
  let sent = 0;
  try {
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < users.length; i++) {
        const ev = {
          event_id: randomUUID(),
          type: 'cart.item_added',
          user_id: users[i],
          occurred_at: new Date().toISOString(),
          data: { sku: backlogSku(r), quantity: 1 },
          trace: randomUUID(),
        };
        const h = natsHeaders();
        h.set('Nats-Msg-Id', ev.event_id);
        nc.publish(subjects[i], enc.encode(JSON.stringify(ev)), { headers: h, reply: `${inbox}.${sent}` });
        sent += 1;
        if (sent - acked >= window) await ackedUpTo(sent - window / 2);
      }
    }
    await ackedUpTo(sent);
  } finally {
    sub.unsubscribe();
    await reader;
  }
  if (refused !== null) throw new Error(`JetStream refused a backlog event: ${refused}`);
  return { events: sent, seconds: (performance.now() - started) / 1000 };
}

// One CSV field: quoted when it holds a comma, quote or newline; an empty unquoted field is NULL.
function csv(v) {
  if (v === null) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

async function writeLine(stream, fields) {
  if (!stream.write(fields.map(csv).join(',') + '\n')) await once(stream, 'drain');
}

/**
 * Writes, per shard, the rows the workers leave for the backlog of publishBacklog(users, rounds):
 * for each event a processed_events row (status 200, the cart version it made) and an outbox row
 * (the carts.changes document of the cart after it, as cart-store builds it), for each line a
 * cart_items row (quantity 1: every event added a new line), for each user one carts row (active,
 * version = rounds). Files: <dir>/shard<i>/{carts,cart_items,processed_events,outbox}.csv.
 * Resolves to { shards: [{ dir, rows: { table: n } }], rows } (rows: the total).
 */
export async function writeCopyRows(dir, users, rounds) {
  const shards = Array.from({ length: SHARDS }, (_, i) => {
    const d = path.join(dir, `shard${i}`);
    mkdirSync(d, { recursive: true });
    const open = (t) => createWriteStream(path.join(d, `${t}.csv`));
    return {
      dir: d,
      files: {
        carts: open('carts'),
        cart_items: open('cart_items'),
        processed_events: open('processed_events'),
        outbox: open('outbox'),
      },
      rows: { carts: 0, cart_items: 0, processed_events: 0, outbox: 0 },
    };
  });
  const now = new Date().toISOString();
  let seq = 0;
  for (const u of users) {
    const sh = shards[shardOf(u)];
    const part = partitionOf(u);
    const cartId = randomUUID();
    const items = [];
    await writeLine(sh.files.carts, [cartId, u, part, 'active', rounds, now, now]);
    sh.rows.carts += 1;
    for (let r = 0; r < rounds; r++) {
      const eventId = randomUUID();
      seq += 1;
      items.push({ sku: backlogSku(r), quantity: 1 });
      items.sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
      const change = {
        event_id: eventId,
        type: 'cart.item_added',
        user_id: u,
        cart_id: cartId,
        version: r + 1,
        status: 'active',
        partition: part,
        items,
        item_count: r + 1,
        applied_at: now,
      };
      await writeLine(sh.files.cart_items, [cartId, backlogSku(r), 1]);
      await writeLine(sh.files.processed_events, [eventId, u, part, seq, 200, r + 1, null]);
      await writeLine(sh.files.outbox, [part, `carts.changes.${part}`, `chg-${eventId}`, JSON.stringify(change)]);
      sh.rows.cart_items += 1;
      sh.rows.processed_events += 1;
      sh.rows.outbox += 1;
    }
  }
  await Promise.all(
    shards.flatMap((sh) =>
      Object.values(sh.files).map((f) => {
        f.end();
        return once(f, 'close');
      }),
    ),
  );
  const total = shards.reduce((n, sh) => n + Object.values(sh.rows).reduce((a, b) => a + b, 0), 0);
  return { shards: shards.map((sh) => ({ dir: sh.dir, rows: sh.rows })), rows: total };
}
