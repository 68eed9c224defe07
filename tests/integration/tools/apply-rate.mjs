// apply-rate: how many events per second the cart-store workers commit, from a backlog.
//
//   node tools/apply-rate.mjs publish <events> [users]   publish a backlog straight to CARTS
//   node tools/apply-rate.mjs watch <events> <admin-url>...   wait until the workers applied that
//                                                         many more events; print the rate
//
// Stop the workers, `publish`, start `watch`, then start the workers: the rate is measured from
// the first applied event to the last (metric cartshard_events_applied_total of every admin URL),
// so start-up time does not count. Environment: NATS_URL and CART_PARTITIONS as the stack's
// (scripts/dev env). Each event adds one unit of one of `users` skus to one of `users` users.
import { randomUUID } from 'node:crypto';
import { connect, headers as natsHeaders } from 'nats';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const PARTITIONS = Number.parseInt(process.env.CART_PARTITIONS ?? '32', 10);

function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

async function publish(total, users) {
  const nc = await connect({ servers: NATS_URL, name: 'apply-rate' });
  const js = nc.jetstream();
  const run = randomUUID().slice(0, 8);
  const window = 2000;
  const inflight = new Set();
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const user = `rate-${run}-${i % users}`;
    const ev = {
      event_id: randomUUID(),
      type: 'cart.item_added',
      user_id: user,
      occurred_at: new Date().toISOString(),
      data: { sku: `S${i % 50}`, quantity: 1 },
    };
    const h = natsHeaders();
    h.set('Nats-Msg-Id', ev.event_id);
    const p = js.publish(`carts.events.${fnv1a32(user) % PARTITIONS}`, JSON.stringify(ev), { headers: h });
    inflight.add(p);
    p.finally(() => inflight.delete(p));
    if (inflight.size >= window) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const s = (performance.now() - t0) / 1000;
  console.log(`published ${total} events for ${users} users in ${s.toFixed(1)} s (${Math.round(total / s)}/s), run ${run}`);
  await nc.close();
}

async function applied(urls) {
  let sum = 0;
  for (const u of urls) {
    try {
      const text = await (await fetch(`${u.replace(/\/+$/, '')}/metrics`)).text();
      const m = text.match(/^cartshard_events_applied_total (\S+)$/m);
      if (m) sum += Number(m[1]);
    } catch {
      // a worker that is not up yet counts as 0
    }
  }
  return sum;
}

async function watch(total, urls) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const base = await applied(urls);
  let first = null;
  let last = base;
  const deadline = Date.now() + 30 * 60 * 1000;
  while (Date.now() < deadline) {
    const now = await applied(urls);
    if (now > base && first === null) first = { t: performance.now(), n: now };
    if (now - base >= total) {
      const t = (performance.now() - first.t) / 1000;
      const n = now - first.n;
      console.log(`applied ${now - base} events; ${n} in ${t.toFixed(2)} s after the first: ${Math.round(n / t)} events/s`);
      return;
    }
    if (now !== last) last = now;
    await sleep(first === null ? 5 : 50);
  }
  console.error(`gave up: ${last - base} of ${total} applied`);
  process.exitCode = 1;
}

const [cmd, n, ...rest] = process.argv.slice(2);
const count = Number.parseInt(n ?? '', 10);
if (cmd === 'publish' && count > 0) await publish(count, Number.parseInt(rest[0] ?? '1000', 10));
else if (cmd === 'watch' && count > 0 && rest.length > 0) await watch(count, rest);
else {
  console.error('usage: apply-rate.mjs publish <events> [users] | watch <events> <admin-url>...');
  process.exitCode = 2;
}
