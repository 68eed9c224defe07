// procs.mjs: CPU time and memory of the processes a scenario runs on, read from /proc.
//
// A scenario watches named groups of processes: one process each for the gateway, the workers,
// nats-server, redis-server and the load tools, and for each PostgreSQL shard the postmaster with
// all its children (backends, autovacuum, WAL writer, checkpointer...), found again at every
// sample since connections come and go. Every 100 ms the sampler reads each process's CPU time
// (utime + stime of /proc/<pid>/stat, all threads) and memory; a group's CPU is the sum of what
// each member used while watched, its peak memory the largest sum seen at one sample. Memory is
// VmRSS, except for PostgreSQL, whose processes all map the same shared buffers: there it is Pss
// (smaps_rollup), which counts a shared page once in total, read every 500 ms since it costs
// more. For the cartshard services the kernel's own peak (VmHWM) is read too, after resetting it
// when the scenario starts (clear_refs 5), so it is the peak of that scenario alone, including
// any spike between two samples.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const SAMPLE_MS = 100;
// Pss walks every mapping of a process: PostgreSQL's groups are measured every fifth sample only.
const PSS_EVERY = 5;

function readText(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

// Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses).
function statFields(pid) {
  const s = readText(`/proc/${pid}/stat`);
  if (s === null) return null;
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}

/** The CPU seconds (user + system, every thread) `pid` has used so far, or null once it is gone. */
export function cpuSeconds(pid) {
  const f = statFields(pid);
  // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
  return f === null ? null : (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

/**
 * The CPU seconds this process's children used, counted by the kernel once each was reaped:
 * the exact CPU time of a tool that ran and exited, as the difference around its run.
 */
export function reapedChildrenCpuSeconds() {
  const f = statFields('self');
  return (Number(f[13]) + Number(f[14])) / CLOCK_TICKS;
}

// A kB field (VmRSS:, VmHWM:, Pss:) of a /proc status-like file, in bytes; null when absent.
function kbField(text, name) {
  if (text === null) return null;
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : null;
}

/**
 * The context switches counted in a /proc/<pid>/task/<tid>/status text: { voluntary, involuntary }
 * (voluntary_ctxt_switches: the thread gave up the CPU, mostly to wait; nonvoluntary: it was
 * preempted), or null when the text has neither.
 */
export function parseCtxSwitches(text) {
  if (text === null) return null;
  const v = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(text);
  const n = /^nonvoluntary_ctxt_switches:\s+(\d+)$/m.exec(text);
  if (v === null && n === null) return null;
  return { voluntary: v ? Number(v[1]) : 0, involuntary: n ? Number(n[1]) : 0 };
}

/**
 * The context switches of every thread of `pid`: [[tid, { voluntary, involuntary }]...]. Each
 * thread's own status: /proc/<pid>/status counts only the main thread, and the gateway, the
 * workers and nats-server switch mostly in others.
 */
export function threadSwitches(pid) {
  let tids;
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out = [];
  for (const tid of tids) {
    const c = parseCtxSwitches(readText(`/proc/${pid}/task/${tid}/status`));
    if (c !== null) out.push([Number(tid), c]);
  }
  return out;
}

/** The kernel's peak resident set size (VmHWM) of `pid` in bytes, or null. */
export function peakRssBytes(pid) {
  return kbField(readText(`/proc/${pid}/status`), 'VmHWM');
}

/** Resets the peak resident set size of `pid` to its current size (Linux 4.0+). */
export function resetPeakRss(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * The pids whose parent is `pid`, from /proc/<pid>/task/<pid>/children (the children of its main
 * thread: all of them for a single-threaded parent such as the postmaster).
 */
export function childrenOf(pid) {
  const text = readText(`/proc/${pid}/task/${pid}/children`);
  return text === null ? [] : text.split(' ').filter(Boolean).map(Number);
}

/**
 * The machine's CPU seconds so far, all cores together (/proc/stat): busy (user, nice, system,
 * irq, softirq), iowait, and steal (time the hypervisor gave to other guests while this one had
 * work to run).
 */
export function machineCpu() {
  const f = readText('/proc/stat').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return {
    busy_s: (f[0] + f[1] + f[2] + f[5] + f[6]) / CLOCK_TICKS,
    iowait_s: f[4] / CLOCK_TICKS,
    steal_s: f[7] / CLOCK_TICKS,
  };
}

/**
 * Watches groups of processes while a scenario runs. A group is { name, pids: () => [pid...],
 * memory: 'rss' | 'pss', hwm: boolean, switches: boolean }; pids() is called at every sample, so
 * a group may follow a process that starts later (a load tool) or a changing set (PostgreSQL's
 * backends). With `switches`, every thread's context switches are counted too (as CPU time is: a
 * thread from its first sample to its last, so a thread or backend that ends between two samples
 * loses what it did since the last one; one that starts during the scenario counts from zero).
 */
export class ProcessWatch {
  constructor(groups) {
    this.groups = groups.map((g) => ({
      ...g,
      cpuStart: new Map(), // pid -> CPU seconds when first seen
      cpuLast: new Map(), // pid -> CPU seconds at the last sample
      peakBytes: 0,
      samples: 0,
      pidsSeen: new Set(),
      switchStart: new Map(), // "pid/tid" -> { voluntary, involuntary } when first seen
      switchLast: new Map(), // "pid/tid" -> at the last sample
    }));
    this.timer = null;
  }

  /** Resets the services' VmHWM and takes the first sample; then samples every 100 ms. */
  start() {
    for (const g of this.groups) {
      if (g.hwm) for (const pid of g.pids()) resetPeakRss(pid);
    }
    this.sample(true);
    this.timer = setInterval(() => this.sample(false), SAMPLE_MS);
    this.timer.unref();
    return this;
  }

  sample(first) {
    for (const g of this.groups) {
      const measure = g.memory !== 'pss' || g.samples % PSS_EVERY === 0;
      let bytes = 0;
      for (const pid of g.pids()) {
        const cpu = cpuSeconds(pid);
        if (cpu === null) continue;
        if (!g.cpuStart.has(pid)) {
          // A process already running when the scenario started counts from here; one that
          // started during it, from its beginning.
          g.cpuStart.set(pid, first ? cpu : 0);
        }
        g.cpuLast.set(pid, cpu);
        g.pidsSeen.add(pid);
        if (g.switches) {
          for (const [tid, c] of threadSwitches(pid)) {
            const key = `${pid}/${tid}`;
            if (!g.switchStart.has(key)) g.switchStart.set(key, first ? c : { voluntary: 0, involuntary: 0 });
            g.switchLast.set(key, c);
          }
        }
        if (!measure) continue;
        const mem =
          g.memory === 'pss'
            ? kbField(readText(`/proc/${pid}/smaps_rollup`), 'Pss')
            : kbField(readText(`/proc/${pid}/status`), 'VmRSS');
        bytes += mem ?? 0;
      }
      g.samples += 1;
      if (bytes > g.peakBytes) g.peakBytes = bytes;
    }
  }

  /**
   * Takes a last sample and stops. Resolves to { <group>: { cpu_s, peak_mib, hwm_mib?,
   * ctx_switches?, processes } }
   * for every group that had a process. `extraCpu` adds CPU measured elsewhere (a tool's exact
   * time once reaped) by group name, replacing the sampled value.
   */
  stop(extraCpu = {}) {
    clearInterval(this.timer);
    this.sample(false);
    const out = {};
    for (const g of this.groups) {
      if (g.pidsSeen.size === 0) continue;
      let cpu = 0;
      for (const [pid, last] of g.cpuLast) cpu += last - g.cpuStart.get(pid);
      const r = {
        cpu_s: round(extraCpu[g.name] ?? cpu, 2),
        peak_mib: round(g.peakBytes / 1048576, 1),
        processes: g.pidsSeen.size,
      };
      if (g.switches) {
        const sw = { voluntary: 0, involuntary: 0 };
        for (const [key, last] of g.switchLast) {
          const start = g.switchStart.get(key);
          sw.voluntary += last.voluntary - start.voluntary;
          sw.involuntary += last.involuntary - start.involuntary;
        }
        r.ctx_switches = sw;
      }
      if (g.hwm) {
        const hwm = Math.max(...g.pids().map((pid) => peakRssBytes(pid) ?? 0));
        if (hwm > 0) r.hwm_mib = round(hwm / 1048576, 1);
      }
      out[g.name] = r;
    }
    return out;
  }
}

export function round(x, digits) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
