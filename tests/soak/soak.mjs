// The soak run behind `scripts/dev soak`: a paced, mixed load on one gateway for SOAK_MINUTES,
// with the memory and open descriptors of every process of the stack measured after the warm-up,
// every SOAK_SAMPLE_S seconds and at the end, so that a leak shows as growth.
//
// Input (environment): GATEWAY_URL; SOAK_PROCESSES, a file of "name pid kind" lines (kind
// "process", or "tree" for a PostgreSQL postmaster, measured with its backends); SOAK_OUT, the
// directory for report.json and report.md. Knobs: SOAK_MINUTES (10), SOAK_WARMUP_S (30),
// SOAK_SAMPLE_S (60), SOAK_RPS (200), SOAK_CONCURRENCY (32), SOAK_USERS (2000), SOAK_RSS_PCT (20),
// SOAK_FD_DELTA (10).
//
// Exit status: 0 when the run completed (even with SUSPECT rows: they are for a human to judge),
// 1 when the load itself failed (most requests got no HTTP answer), 3 when a process of the stack
// died or was replaced during the run.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const num = (name, dflt) => {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, not ${process.env[name]}`);
  return v;
};

const GATEWAY_URL = new URL(process.env.GATEWAY_URL ?? 'http://127.0.0.1:48080');
const MINUTES = num('SOAK_MINUTES', 10);
const WARMUP_S = num('SOAK_WARMUP_S', 30);
const SAMPLE_S = num('SOAK_SAMPLE_S', 60);
const RPS = num('SOAK_RPS', 200);
const CONCURRENCY = Math.round(num('SOAK_CONCURRENCY', 32));
const USERS = Math.round(num('SOAK_USERS', 2000));
const RSS_PCT = num('SOAK_RSS_PCT', 20);
const FD_DELTA = num('SOAK_FD_DELTA', 10);
const OUT = process.env.SOAK_OUT ?? 'build/soak';
const PROCESSES_FILE = process.env.SOAK_PROCESSES;

// ---------------------------------------------------------------------------------------------
// the processes and what /proc says about them

/** The processes to watch, from SOAK_PROCESSES. */
function readProcesses() {
  if (!PROCESSES_FILE) throw new Error('SOAK_PROCESSES is not set');
  return readFileSync(PROCESSES_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [name, pid, kind] = l.trim().split(/\s+/);
      if (!/^\d+$/.test(pid) || !['process', 'tree'].includes(kind)) throw new Error(`bad line in ${PROCESSES_FILE}: ${l}`);
      return { name, pid: Number(pid), kind, startTime: startTimeOf(Number(pid)) };
    });
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), or null if the process is gone or a zombie. */
function startTimeOf(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? null : fields[19];
}

function parentOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return -1;
  }
}

/** `pid` and its children (a postmaster's backends and helpers). */
function treeOf(pid) {
  const pids = [pid];
  for (const e of readdirSync('/proc')) {
    if (/^\d+$/.test(e) && parentOf(Number(e)) === pid) pids.push(Number(e));
  }
  return pids;
}

/** VmRSS, VmHWM, RssShmem (kB), threads and open descriptors of one process; null if it is gone. */
function measureOne(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key) => Number((status.match(new RegExp(`^${key}:\\s+(\\d+)`, 'm')) ?? [0, 0])[1]);
    return {
      rssKb: kb('VmRSS'),
      hwmKb: kb('VmHWM'),
      shmemKb: kb('RssShmem'),
      threads: kb('Threads'),
      fds: readdirSync(`/proc/${pid}/fd`).length,
    };
  } catch {
    return null;
  }
}

/** True for a PostgreSQL backend that serves a client ("postgres: user db 127.0.0.1(port) idle"). */
function isClientBackend(pid) {
  try {
    return /\(\d+\)|\[local\]/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * One measurement of a watched process, summed over its tree for kind "tree"; a tree also counts
 * its client connections and its root's own descriptors.
 */
function measure(p) {
  const pids = p.kind === 'tree' ? treeOf(p.pid) : [p.pid];
  const m = { pids: 0, rssKb: 0, hwmKb: 0, shmemKb: 0, threads: 0, fds: 0 };
  for (const pid of pids) {
    const one = measureOne(pid);
    if (one === null) continue;
    m.pids += 1;
    for (const k of ['rssKb', 'hwmKb', 'shmemKb', 'threads', 'fds']) m[k] += one[k];
    if (p.kind === 'tree' && pid === p.pid) m.rootFds = one.fds;
    if (p.kind === 'tree' && pid !== p.pid && isClientBackend(pid)) m.clients = (m.clients ?? 0) + 1;
  }
  // Private memory: PostgreSQL's backends count the shared buffers they have touched in their RSS,
  // which grows with the data and is no leak; for the other processes this is their RSS.
  m.privateKb = m.rssKb - m.shmemKb;
  return m;
}

function snapshot(procs, t) {
  const s = { t: Math.round(t), at: new Date().toISOString(), processes: {} };
  for (const p of procs) s.processes[p.name] = measure(p);
  return s;
}

/** The watched processes that died or whose pid now names another process. */
function deadProcesses(procs) {
  return procs.filter((p) => startTimeOf(p.pid) !== p.startTime).map((p) => p.name);
}

// ---------------------------------------------------------------------------------------------
// the load: 10 GET : 2 add : 1 checkout over many users, some keyed (and repeated) adds, a few
// invalid requests

// FIFO: every connection is used in turn, so none sits idle long enough for the gateway to close
// it (its keep-alive timeout is 10 s); the gateway's descriptors stay put once all are open.
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY, scheduling: 'fifo' });
const runTag = randomBytes(3).toString('hex');
const pick = (n) => Math.floor(Math.random() * n);
const user = () => `soak-${runTag}-${pick(USERS)}`;
const JSON_CT = { 'Content-Type': 'application/json' };
const recentKeyed = []; // the last keyed adds, repeated now and then with the same key and body

function nextRequest() {
  if (Math.random() < 0.01) return invalidRequest();
  const r = pick(13);
  if (r < 10) return { op: 'get', method: 'GET', path: `/v1/carts/${user()}` };
  if (r === 12) return { op: 'checkout', method: 'POST', path: `/v1/carts/${user()}/checkout` };
  if (Math.random() < 0.15) {
    if (recentKeyed.length > 0 && Math.random() < 0.5) return { ...recentKeyed[pick(recentKeyed.length)], op: 'add-repeat' };
    const req = {
      op: 'add-keyed',
      method: 'POST',
      path: `/v1/carts/${user()}/items`,
      headers: { ...JSON_CT, 'Idempotency-Key': randomBytes(8).toString('hex') },
      body: JSON.stringify({ sku: `S${pick(30)}`, quantity: 1 + pick(3) }),
    };
    recentKeyed.push(req);
    if (recentKeyed.length > 64) recentKeyed.shift();
    return req;
  }
  return {
    op: 'add',
    method: 'POST',
    path: `/v1/carts/${user()}/items`,
    headers: JSON_CT,
    body: JSON.stringify({ sku: `S${pick(30)}`, quantity: 1 + pick(3) }),
  };
}

function invalidRequest() {
  const u = user();
  const choices = [
    { method: 'POST', path: `/v1/carts/${u}/items`, headers: JSON_CT, body: '{"sku": "A1", "quantity": ' },
    { method: 'POST', path: `/v1/carts/${u}/items`, headers: JSON_CT, body: '{"sku": "A1", "quantity": 0}' },
    { method: 'POST', path: `/v1/carts/${u}/items`, headers: { 'Content-Type': 'text/plain' }, body: 'A1 x 2' },
    { method: 'GET', path: '/v1/carts/bad%20user!' },
    { method: 'GET', path: '/v1/nothing-here' },
    { method: 'PATCH', path: `/v1/carts/${u}` },
  ];
  return { ...choices[pick(choices.length)], op: 'invalid' };
}

/** Sends one request; resolves to its status, or to an Error for a transport failure. */
function send(req) {
  return new Promise((resolve) => {
    const r = http.request(
      {
        host: GATEWAY_URL.hostname,
        port: GATEWAY_URL.port,
        method: req.method,
        path: req.path,
        headers: { ...(req.headers ?? {}), ...(req.body ? { 'Content-Length': Buffer.byteLength(req.body) } : {}) },
        agent,
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
        res.on('error', (e) => resolve(e));
      },
    );
    r.on('timeout', () => r.destroy(new Error('timed out after 10 s')));
    r.on('error', (e) => resolve(e));
    r.end(req.body);
  });
}

const tally = { requests: 0, answered: 0, errors: {}, statuses: {}, repeatMismatch: 0 };
const firstStatus = new Map(); // Idempotency-Key -> the first answer's status

function count(op, result, req) {
  tally.requests += 1;
  if (result instanceof Error) {
    tally.errors[result.message] = (tally.errors[result.message] ?? 0) + 1;
    return;
  }
  tally.answered += 1;
  tally.statuses[op] ??= {};
  tally.statuses[op][result] = (tally.statuses[op][result] ?? 0) + 1;
  const key = req.headers?.['Idempotency-Key'];
  if (key === undefined) return;
  if (!firstStatus.has(key)) firstStatus.set(key, result);
  else if (firstStatus.get(key) !== result && result !== 503 && firstStatus.get(key) !== 503) tally.repeatMismatch += 1;
}

/** Runs `CONCURRENCY` clients that share one schedule of RPS requests a second until `endAt`. */
async function load(endAt) {
  const interval = 1000 / RPS;
  let next = Date.now();
  const client = async () => {
    for (;;) {
      const at = next;
      next += interval;
      if (at >= endAt) return;
      const wait = at - Date.now();
      if (wait > 0) await sleep(wait);
      const req = nextRequest();
      count(req.op, await send(req), req);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
}

// ---------------------------------------------------------------------------------------------
// the report

const mb = (kb) => (kb / 1024).toFixed(1);
const pct = (a, b) => (a > 0 ? ((b - a) * 100) / a : 0);
const signed = (v, digits = 1) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;

function judge(procs, start, end) {
  return procs.map((p) => {
    const a = start.processes[p.name];
    const b = end.processes[p.name];
    const row = {
      name: p.name,
      kind: p.kind,
      pid: p.pid,
      start: a,
      end: b,
      rssGrowthPct: pct(a.rssKb, b.rssKb),
      privateGrowthPct: pct(a.privateKb, b.privateKb),
      fdGrowth: b.fds - a.fds,
      reasons: [],
    };
    if (row.privateGrowthPct > RSS_PCT) row.reasons.push(`memory +${row.privateGrowthPct.toFixed(1)}% > ${RSS_PCT}%`);
    if (p.kind === 'tree') {
      // A backend caches open files (up to max_files_per_process) and autovacuum workers come and
      // go, so the tree's total moves by hundreds: a leak shows in the postmaster's own
      // descriptors or as client connections that pile up.
      row.rootFdGrowth = b.rootFds - a.rootFds;
      row.clientGrowth = (b.clients ?? 0) - (a.clients ?? 0);
      if (row.rootFdGrowth > FD_DELTA) row.reasons.push(`postmaster FDs +${row.rootFdGrowth} > ${FD_DELTA}`);
      if (row.clientGrowth > 2) row.reasons.push(`client connections +${row.clientGrowth}`);
    } else if (row.fdGrowth > FD_DELTA) {
      row.reasons.push(`FDs +${row.fdGrowth} > ${FD_DELTA}`);
    }
    row.verdict = row.reasons.length > 0 ? 'SUSPECT' : 'ok';
    return row;
  });
}

function markdown(report) {
  const lines = [];
  lines.push(`# Soak run ${report.started_at}`);
  lines.push('');
  lines.push(
    `${report.minutes} min of load at ${report.rps_target} req/s target (${report.rps_achieved.toFixed(1)} achieved), ` +
      `${report.load.requests} requests, ${report.load.answered} answered; start after ${report.warmup_s} s of warm-up, ` +
      `end at ${report.end_t} s. SUSPECT: memory growth over ${report.thresholds.rss_pct}% ` +
      `(RSS without shared memory) or more than ${report.thresholds.fd_delta} new FDs (for PostgreSQL: ` +
      `the postmaster's own, or more client connections).`,
  );
  lines.push('');
  lines.push(
    '| process | procs | RSS start MB | RSS end MB | RSS growth | VmHWM start MB | VmHWM end MB | FDs start | FDs end | FD growth | verdict |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of report.processes) {
    const tree = r.kind === 'tree';
    const mem = tree ? `${signed(r.rssGrowthPct)}% (private ${signed(r.privateGrowthPct)}%)` : `${signed(r.rssGrowthPct)}%`;
    const fds = tree
      ? `${signed(r.fdGrowth, 0)} (postmaster ${signed(r.rootFdGrowth, 0)}, clients ${r.start.clients ?? 0}→${r.end.clients ?? 0})`
      : signed(r.fdGrowth, 0);
    lines.push(
      `| ${r.name}${tree ? ' (postmaster + backends)' : ''} | ${r.start.pids}→${r.end.pids} | ${mb(r.start.rssKb)} | ` +
        `${mb(r.end.rssKb)} | ${mem} | ${mb(r.start.hwmKb)} | ${mb(r.end.hwmKb)} | ${r.start.fds} | ${r.end.fds} | ` +
        `${fds} | ${r.verdict}${r.reasons.length ? ` (${r.reasons.join(', ')})` : ''} |`,
    );
  }
  const names = report.processes.map((r) => r.name);
  const perSample = (title, cell) => {
    lines.push('');
    lines.push(`${title} at each sample (t = seconds since the load began):`);
    lines.push('');
    lines.push(`| t | ${names.join(' | ')} |`);
    lines.push(`|---|${names.map(() => '---').join('|')}|`);
    for (const s of report.samples) lines.push(`| ${s.t} | ${names.map((n) => cell(s.processes[n])).join(' | ')} |`);
  };
  perSample('RSS in MB', (m) => mb(m.rssKb));
  perSample('Open descriptors', (m) => String(m.fds));
  lines.push('');
  lines.push('Answers by kind of request:');
  lines.push('');
  for (const [op, statuses] of Object.entries(report.load.statuses)) {
    lines.push(`- ${op}: ${Object.entries(statuses).map(([s, n]) => `${s}×${n}`).join(', ')}`);
  }
  if (Object.keys(report.load.errors).length > 0) {
    lines.push(`- no answer: ${Object.entries(report.load.errors).map(([e, n]) => `${e} ×${n}`).join(', ')}`);
  }
  lines.push(`- keyed repeats answered with another status than the first: ${report.load.repeat_mismatch}`);
  if (report.died.length > 0) lines.push(`\n**Died during the run: ${report.died.join(', ')}**`);
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const procs = readProcesses();
  const gone = deadProcesses(procs);
  if (gone.length > 0) throw new Error(`not running at the start: ${gone.join(', ')}`);
  const t0 = Date.now();
  const endAt = t0 + MINUTES * 60_000;
  const since = () => (Date.now() - t0) / 1000;
  console.log(
    `soak: ${MINUTES} min, ${RPS} req/s target, ${CONCURRENCY} connections, ${USERS} users; ` +
      `first measurement after ${WARMUP_S} s, then every ${SAMPLE_S} s`,
  );

  // Every connection opens now, so the gateway's descriptors do not grow with the first bursts.
  await Promise.all(Array.from({ length: CONCURRENCY }, () => send({ method: 'GET', path: '/healthz' })));
  const samples = [];
  let died = [];
  const loadDone = load(endAt).then(() => 'done');
  // Measure on schedule and check every 2 s that nothing died; stop the load early if something did.
  let nextSample = Math.min(WARMUP_S, MINUTES * 60);
  while (Date.now() < endAt) {
    const r = await Promise.race([loadDone, sleep(2000)]);
    died = deadProcesses(procs);
    if (died.length > 0) break;
    if (r === 'done') break;
    if (since() >= nextSample && Date.now() < endAt) {
      const s = snapshot(procs, since());
      samples.push(s);
      const line = procs.map((p) => `${p.name} ${mb(s.processes[p.name].rssKb)}MB/${s.processes[p.name].fds}fd`).join(', ');
      console.log(`soak: t=${s.t}s ${tally.requests} requests; ${line}`);
      nextSample += SAMPLE_S;
    }
  }
  if (died.length === 0) died = deadProcesses(procs);
  if (died.length > 0) {
    console.error(`soak: died during the run: ${died.join(', ')}; stopping the load`);
  }
  const endT = since();
  if (died.length === 0) samples.push(snapshot(procs, endT));
  else samples.push(snapshot(procs.filter((p) => !died.includes(p.name)), endT));
  await Promise.race([loadDone, sleep(12_000)]);
  agent.destroy();

  const start = samples[0];
  const end = samples[samples.length - 1];
  const report = {
    started_at: new Date(t0).toISOString(),
    minutes: MINUTES,
    warmup_s: WARMUP_S,
    end_t: end.t,
    rps_target: RPS,
    rps_achieved: tally.requests / Math.max(endT, 1),
    concurrency: CONCURRENCY,
    users: USERS,
    thresholds: { rss_pct: RSS_PCT, fd_delta: FD_DELTA },
    load: {
      requests: tally.requests,
      answered: tally.answered,
      statuses: tally.statuses,
      errors: tally.errors,
      repeat_mismatch: tally.repeatMismatch,
    },
    died,
    processes: died.length === 0 && samples.length > 1 ? judge(procs, start, end) : [],
    samples,
  };
  mkdirSync(OUT, { recursive: true });
  const md = markdown(report);
  writeFileSync(path.join(OUT, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(path.join(OUT, 'report.md'), md);
  console.log(`\n${md}`);
  console.log(`soak: wrote ${path.join(OUT, 'report.json')} and ${path.join(OUT, 'report.md')}`);
  const suspects = report.processes.filter((r) => r.verdict === 'SUSPECT').map((r) => r.name);
  if (suspects.length > 0) console.log(`soak: SUSPECT growth in ${suspects.join(', ')}`);
  if (died.length > 0) return 3;
  if (tally.answered < tally.requests / 2 || tally.answered === 0) {
    console.error(`soak: the load failed: ${tally.answered} of ${tally.requests} requests answered`);
    return 1;
  }
  return 0;
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(`soak: ${e.stack ?? e}`);
    process.exit(1);
  },
);
