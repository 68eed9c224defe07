// tools.mjs: the programs the bench drives (wrk, redis-benchmark, h2o, psql), each run as a
// child process whose CPU time is measured exactly (see reapedChildrenCpuSeconds).

import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { reapedChildrenCpuSeconds, round } from './procs.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LUA_SCRIPT = path.join(HERE, 'cart.lua');

/**
 * A running tool: `holder.pid` is its pid while it runs (a ProcessWatch group reads it), and
 * the promise resolves to { code, stdout, stderr, cpu_s } once it exited. Rejects when it cannot
 * be started, or is still running after `timeoutMs` (then it is killed).
 */
export function runTool(cmd, args, { timeoutMs = 600_000, holder = {} } = {}) {
  return new Promise((resolve, reject) => {
    const cpuBefore = reapedChildrenCpuSeconds();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    holder.pid = child.pid;
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-20000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      holder.pid = undefined;
      reject(new Error(`${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      holder.pid = undefined;
      if (signal === 'SIGKILL') {
        reject(new Error(`${cmd} ${args.join(' ')}: still running after ${timeoutMs / 1000} s, killed`));
        return;
      }
      resolve({ code, stdout, stderr, cpu_s: round(reapedChildrenCpuSeconds() - cpuBefore, 2) });
    });
  });
}

/** Like runTool, but rejects with the tool's output unless it exits 0. */
export async function runToolOk(cmd, args, opts) {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stderr || r.stdout}`);
  }
  return r;
}

/**
 * wrk with cart.lua: { url, threads, connections, seconds, lua: { key: value } } (see cart.lua
 * for the options). Resolves to cart.lua's result plus the command line and wrk's CPU time.
 */
export async function wrk({ url, threads, connections, seconds, lua, holder }) {
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '10s',
    '-s',
    LUA_SCRIPT,
    url,
    '--',
    `threads=${threads}`,
    ...Object.entries(lua).map(([k, v]) => `${k}=${v}`),
  ];
  const r = await runToolOk('wrk', args, { holder, timeoutMs: (seconds + 60) * 1000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
  if (line === undefined) throw new Error(`wrk printed no result:\n${r.stdout}\n${r.stderr}`);
  const res = JSON.parse(line.slice('BENCH_RESULT '.length));
  return { ...res, command: `wrk ${args.join(' ')}`, cpu_s: r.cpu_s };
}

/**
 * redis-benchmark GET with 2 threads: resolves to { rps, latency_ms: { mean, p50, p95, p99, max },
 * command, cpu_s } from its CSV line.
 */
export async function redisBenchmarkGet({ port, clients, requests, valueBytes, holder }) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-t', 'get', '-c', String(clients), '-n', String(requests),
    '-d', String(valueBytes), '--threads', '2', '--csv'];
  const r = await runToolOk('redis-benchmark', args, { holder, timeoutMs: 300_000 });
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const row = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith('"GET"'));
  if (row === undefined) throw new Error(`redis-benchmark printed no GET line:\n${r.stdout}`);
  const f = row.split(',').map((x) => Number(x.replace(/"/g, '')));
  return {
    rps: f[1],
    latency_ms: { mean: f[2], p50: f[4], p95: f[5], p99: f[6], max: f[7] },
    command: `redis-benchmark ${args.join(' ')}`,
    cpu_s: r.cpu_s,
  };
}

/** A port in 37000..37999 that nothing listens on (tried in order from `from`). */
export async function freePortIn37k(from = 37080) {
  for (let port = from; port <= 37999; port++) {
    const ok = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port in 37000..37999');
}

async function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts h2o serving `dir` on 127.0.0.1:`port` with `threads` threads, HTTP/1.1 keep-alive and no
 * access log (so it does no more per request than the gateway, which logs none either). Resolves
 * to { child, pid, stop() } once it accepts connections. The config and h2o's error log go to
 * `workDir`.
 */
export async function startH2o({ dir, port, threads, workDir }) {
  mkdirSync(workDir, { recursive: true });
  const conf = path.join(workDir, 'h2o.conf');
  writeFileSync(
    conf,
    [
      '# written by tests/bench/tools.mjs for the static-file baseline',
      'listen:',
      '  host: 127.0.0.1',
      `  port: ${port}`,
      `num-threads: ${threads}`,
      `error-log: ${path.join(workDir, 'h2o-error.log')}`,
      'hosts:',
      `  "127.0.0.1:${port}":`,
      '    paths:',
      '      "/":',
      `        file.dir: ${dir}`,
      '',
    ].join('\n'),
  );
  const child = spawn('h2o', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (let i = 0; i < 100 && !(await accepts(port)); i++) {
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  if (child.exitCode !== null || !(await accepts(port))) {
    child.kill('SIGKILL');
    throw new Error(`h2o did not start on port ${port}: ${stderr}`);
  }
  return {
    pid: child.pid,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
