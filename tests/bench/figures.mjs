// figures.mjs: the bench's pure arithmetic, apart from the code that runs things so that
// figures.test.mjs can check it without a stack: what an add costs across the processes, and
// the output of pgbench and of js_publish read into a scenario's figures.

import { round } from './procs.mjs';

/**
 * The stack's processes as ProcessWatch groups name them: the cost of cartshard itself, the
 * statistics service included (it counts every change: its share of NATS, Redis and shard 0 is
 * in those processes' figures anyway).
 */
export const SERVICE_GROUPS = ['gateway', 'cs-1', 'cs-2', 'cart-stats', 'nats-server', 'redis-server', 'postgres-0', 'postgres-1'];

/**
 * What one request cost, from a scenario's `processes` ({ group: { cpu_s, ctx_switches? } }) and
 * its request count: CPU µs and context switches per request, for each group, for the services
 * (SERVICE_GROUPS summed: the target's figure) and for the load tool (`tool`, e.g. 'wrk').
 * Context switches are there only when the watch counted them. Null without requests.
 */
export function costPerRequest(processes, requests, tool = 'wrk') {
  if (!processes || !(requests > 0)) return null;
  const us = (s) => round((s * 1e6) / requests, 1);
  const each = (n) => round(n / requests, 2);
  const cpu = {};
  const switches = {};
  let services = 0;
  let servicesSwitches = 0;
  let counted = false;
  for (const name of SERVICE_GROUPS) {
    const p = processes[name];
    if (p === undefined) continue;
    cpu[name] = us(p.cpu_s);
    services += p.cpu_s;
    if (p.ctx_switches) {
      counted = true;
      const n = p.ctx_switches.voluntary + p.ctx_switches.involuntary;
      switches[name] = each(n);
      servicesSwitches += n;
    }
  }
  const out = {
    requests,
    cpu_us: { services: us(services), ...cpu },
  };
  if (processes[tool] !== undefined) out.cpu_us[tool] = us(processes[tool].cpu_s);
  if (counted) {
    out.ctx_switches = { services: each(servicesSwitches), ...switches };
    const t = processes[tool]?.ctx_switches;
    if (t) out.ctx_switches[tool] = each(t.voluntary + t.involuntary);
  }
  return out;
}

/**
 * The summary of pgbench's stdout: { transactions, failed, tps, latency_avg_ms }. Throws when a
 * line it needs is missing, with the output, so that a changed pgbench fails loudly.
 */
export function parsePgbench(stdout) {
  const num = (re, what) => {
    const m = re.exec(stdout);
    if (m === null) throw new Error(`pgbench printed no ${what}:\n${stdout}`);
    return Number(m[1]);
  };
  return {
    transactions: num(/^number of transactions actually processed: (\d+)/m, 'transaction count'),
    failed: /^number of failed transactions: (\d+)/m.exec(stdout) ? num(/^number of failed transactions: (\d+)/m, '') : 0,
    tps: num(/^tps = ([\d.]+) \(without initial connection time\)/m, 'tps'),
    latency_avg_ms: num(/^latency average = ([\d.]+) ms/m, 'average latency'),
  };
}

/**
 * The latencies (µs) of pgbench's per-transaction log lines (-l): "client_id transaction_no time
 * script_no time_epoch time_us [schedule_lag]", where time is the transaction's latency in µs. A
 * failed transaction (time "failed" or "skipped") is left out.
 */
export function pgbenchLogLatencies(text) {
  const out = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const us = Number(f[2]);
    if (Number.isFinite(us)) out.push(us);
  }
  return out;
}

/** p50, p90, p99, p99.9, mean and max in ms of latencies in µs (any order); null for none. */
export function latencySummaryMs(latenciesUs) {
  if (latenciesUs.length === 0) return null;
  const v = Float64Array.from(latenciesUs).sort();
  const at = (q) => round(v[Math.round(q * (v.length - 1))] / 1000, 3);
  const sum = v.reduce((a, b) => a + b, 0);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p99_9: at(0.999), mean: round(sum / v.length / 1000, 3), max: at(1) };
}

/**
 * js_publish's JSON line (tests/bench/js_publish.c) from its stdout. Throws when there is none,
 * or when it reports a failure or an event not acknowledged exactly once.
 */
export function parseJsPublish(stdout) {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`js_publish printed no result:\n${stdout}`);
  const r = JSON.parse(line);
  if (r.failed !== undefined || r.errors > 0 || r.duplicates > 0 || r.acked !== r.published) {
    throw new Error(`js_publish: ${r.failed ?? 'not every event acknowledged once'} (${line})`);
  }
  return r;
}
