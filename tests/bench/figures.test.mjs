// figures.test.mjs: the bench's pure arithmetic (node --test; CTest runs it as bench_figures):
// reading /proc's context switches, the cost per request, pgbench's and js_publish's output,
// and the targets computed from a run's scenarios.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  costPerRequest,
  latencySummaryMs,
  parseJsPublish,
  parsePgbench,
  pgbenchLogLatencies,
} from './figures.mjs';
import { parseCtxSwitches, threadSwitches } from './procs.mjs';
import { otherRatios, targets } from './report.mjs';

test('parseCtxSwitches reads both counters of a status file, and nothing else', () => {
  const status = 'Name:\tcart-gateway\nThreads:\t9\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n';
  assert.deepEqual(parseCtxSwitches(status), { voluntary: 1234, involuntary: 56 });
  assert.deepEqual(parseCtxSwitches('voluntary_ctxt_switches:\t7\n'), { voluntary: 7, involuntary: 0 });
  assert.equal(parseCtxSwitches('Name:\tx\nVmRSS:\t 100 kB\n'), null);
  assert.equal(parseCtxSwitches(null), null);
});

test('threadSwitches counts every thread of a live process, and nothing for a gone one', () => {
  const mine = threadSwitches(process.pid);
  // Node runs several threads (the main one, libuv's pool, V8's platform threads).
  assert.ok(mine.length >= 2, `threads seen: ${mine.length}`);
  assert.ok(mine.some(([tid]) => tid === process.pid));
  for (const [, c] of mine) assert.ok(Number.isInteger(c.voluntary) && Number.isInteger(c.involuntary));
  assert.deepEqual(threadSwitches(2 ** 22 + 1), []); // above pid_max's default and limit
});

test('costPerRequest: µs and switches per request, services summed apart from the load tool', () => {
  const processes = {
    gateway: { cpu_s: 1.2, ctx_switches: { voluntary: 15000, involuntary: 3000 } },
    'cs-1': { cpu_s: 0.5, ctx_switches: { voluntary: 6000, involuntary: 0 } },
    'cart-stats': { cpu_s: 0.3, ctx_switches: { voluntary: 500, involuntary: 500 } },
    'postgres-0': { cpu_s: 2.3, ctx_switches: { voluntary: 4000, involuntary: 2000 } },
    wrk: { cpu_s: 0.4, ctx_switches: { voluntary: 1000, involuntary: 1000 } },
    'bench (node)': { cpu_s: 0.9 },
  };
  const c = costPerRequest(processes, 10000);
  assert.equal(c.requests, 10000);
  assert.deepEqual(c.cpu_us, { services: 430, gateway: 120, 'cs-1': 50, 'cart-stats': 30, 'postgres-0': 230, wrk: 40 });
  assert.deepEqual(c.ctx_switches, { services: 3.1, gateway: 1.8, 'cs-1': 0.6, 'cart-stats': 0.1, 'postgres-0': 0.6, wrk: 0.2 });
  // Without counted switches there are none to report; without requests there is no cost.
  const plain = costPerRequest({ gateway: { cpu_s: 1 } }, 1000, 'pgbench');
  assert.deepEqual(plain, { requests: 1000, cpu_us: { services: 1000, gateway: 1000 } });
  assert.equal(costPerRequest(processes, 0), null);
  assert.equal(costPerRequest(undefined, 10), null);
});

const PGBENCH_OUT = `pgbench (15.10 (Debian 15.10-0+deb12u1))
transaction type: /tmp/add.sql
scaling factor: 1
query mode: prepared
number of clients: 64
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 34567
number of failed transactions: 0 (0.000%)
latency average = 18.456 ms
initial connection time = 40.120 ms
tps = 3456.712345 (without initial connection time)
`;

test('parsePgbench reads the summary, and refuses an output without it', () => {
  assert.deepEqual(parsePgbench(PGBENCH_OUT), { transactions: 34567, failed: 0, tps: 3456.712345, latency_avg_ms: 18.456 });
  assert.equal(parsePgbench(PGBENCH_OUT.replace('failed transactions: 0', 'failed transactions: 12')).failed, 12);
  assert.throws(() => parsePgbench(PGBENCH_OUT.replace(/^tps = .*$/m, '')), /no tps/);
  assert.throws(() => parsePgbench('pgbench: error: connection refused\n'), /no transaction count/);
});

test('pgbenchLogLatencies and latencySummaryMs: the per-transaction log as percentiles', () => {
  const log = ['0 0 1500 0 1733530000 123456', '1 0 2500 0 1733530000 123457', '0 1 failed 0 1733530001 1', '', 'junk'].join('\n');
  assert.deepEqual(pgbenchLogLatencies(log), [1500, 2500]);
  const us = Array.from({ length: 1000 }, (_, i) => (1000 - i) * 10); // 10 µs .. 10 ms, reversed
  const s = latencySummaryMs(us);
  assert.equal(s.p50, 5.01);
  assert.equal(s.p99, 9.9);
  assert.equal(s.max, 10);
  assert.equal(s.mean, 5.005);
  assert.equal(latencySummaryMs([]), null);
});

test('parseJsPublish takes a clean run and refuses errors, duplicates or missing acknowledgements', () => {
  const ok = { published: 100, acked: 100, errors: 0, duplicates: 0, seconds: 1, rate: 100, inflight: 64 };
  assert.deepEqual(parseJsPublish(`${JSON.stringify(ok)}\n`), ok);
  assert.throws(() => parseJsPublish(JSON.stringify({ ...ok, acked: 99 })), /not every event/);
  assert.throws(() => parseJsPublish(JSON.stringify({ ...ok, duplicates: 1 })), /not every event/);
  assert.throws(() => parseJsPublish(JSON.stringify({ ...ok, failed: 'publish: Timeout' })), /publish: Timeout/);
  assert.throws(() => parseJsPublish('js_publish: connect: refused\n'), /no result/);
});

test('targets: the write paths as ratios to their parts, and the CPU per committed add', () => {
  const sc = {
    static_file: { throughput_rps: 100000 },
    get_hit: { throughput_rps: 60000 },
    js_publish: { throughput_rps: 40000 },
    add_async: { throughput_rps: 18000 },
    pg_direct_add: { throughput_rps: 3500 },
    add_sync_max: { throughput_rps: 2100 },
    add_sync: {
      throughput_rps: 1990,
      target_rps: 2000,
      rate_within_5pct: true,
      latency_ms: { p99: 9.5 },
      cost_per_request: { cpu_us: { services: 420 }, ctx_switches: { services: 25 } },
    },
    apply_2w: { events_per_s: 12000 },
    copy: { events_per_s: 40000 },
  };
  const t = Object.fromEntries(targets(sc).map((x) => [x.key, x]));
  assert.deepEqual(Object.keys(t), [
    'get_hit_vs_static',
    'add_sync_max_vs_pg_direct',
    'add_async_vs_js_publish',
    'sync_add_p99_ms',
    'sync_add_cpu_us',
    'apply_vs_copy',
    'gateway_peak_rss_mib',
    'cart_store_peak_rss_mib',
  ]);
  assert.equal(t.add_sync_max_vs_pg_direct.value, 0.6);
  assert.equal(t.add_sync_max_vs_pg_direct.met, false);
  assert.equal(t.add_async_vs_js_publish.value, 0.45);
  assert.equal(t.add_async_vs_js_publish.met, false);
  assert.equal(t.sync_add_p99_ms.met, true);
  assert.equal(t.sync_add_cpu_us.value, 420);
  assert.equal(t.sync_add_cpu_us.met, false);
  assert.match(t.sync_add_cpu_us.note, /25 context switches/);
  assert.equal(t.apply_vs_copy.value, 0.3);
  assert.equal(t.apply_vs_copy.met, true);
  assert.equal(t.gateway_peak_rss_mib.met, null); // mixed did not run

  // The goals' edges hold; a rate off by more than 5 % fails the latency and CPU targets alike.
  const edge = targets({
    ...sc,
    add_sync_max: { throughput_rps: 3500 },
    add_async: { throughput_rps: 20000 },
    add_sync: { ...sc.add_sync, rate_within_5pct: false, cost_per_request: { cpu_us: { services: 400 } } },
  });
  const e = Object.fromEntries(edge.map((x) => [x.key, x]));
  assert.equal(e.add_sync_max_vs_pg_direct.met, true);
  assert.equal(e.add_async_vs_js_publish.met, true);
  assert.equal(e.sync_add_cpu_us.met, false);
  assert.equal(e.sync_add_p99_ms.met, false);
  // Paced at another rate (BENCH_SYNC_RATE), both are measured against nothing: not met.
  const slow = targets({ ...sc, add_sync: { ...sc.add_sync, throughput_rps: 500, target_rps: 500, latency_ms: { p99: 5 } } });
  const sl = Object.fromEntries(slow.map((x) => [x.key, x]));
  assert.equal(sl.sync_add_p99_ms.met, false);
  assert.match(sl.sync_add_p99_ms.note, /paced at 500\/s, not the target's 2000\/s/);

  // Without the baselines the ratios are not measured, not missed.
  const alone = Object.fromEntries(targets({ add_sync_max: { throughput_rps: 1 } }).map((x) => [x.key, x.met]));
  assert.equal(alone.add_sync_max_vs_pg_direct, null);
  assert.equal(alone.add_async_vs_js_publish, null);

  const others = Object.fromEntries(otherRatios(sc).map(([k, v]) => [k, v]));
  assert.equal(others.async_add_vs_static, 0.18);
  assert.equal(others.add_sync_vs_add_sync_max, 0.948);
});
