// dedupe-failover: does a three-node nats-server cluster keep every acknowledged message, on every
// replica, when its stream leader is killed while clients retry publishes with the same
// Nats-Msg-Id? No cartshard process is involved: this measures nats-server alone, with the
// publish pattern of cartshard's gateway and its clients (docs/internals/failover.md).
//
//   node tools/dedupe-failover.mjs [--rounds N] [--seconds S] [--publishers P]
//
// Each round starts three clustered nodes of NATS_SERVER_BIN (default nats-server) on free
// loopback ports in a temporary directory, creates an R3 file stream with a 2-minute duplicate
// window, and runs P publishers for S seconds (default 10). Each publisher sends messages with
// fresh Nats-Msg-Ids on 32 subjects; a publish that is not acknowledged within 1 s is retried
// with the same id (up to 3 times), and one publish in five is sent a second time at once, as a
// client that lost the answer would. An answer "duplicate, sequence 0" (nats-server 2.10's for a
// copy of a message still being replicated) is counted, and confirms nothing. After a quarter of the time the stream's leader is killed
// (SIGKILL) and restarted 2 s after a new leader is elected. Then every acknowledged id must be
// in the stream at the sequence its ack named (read back from the leader), and every node must
// report the same message count and last sequence. Prints one line per round
// and a tally; exits 1 if any round lost or moved an acknowledged message or left
// the replicas disagreeing. Everything it starts is stopped by pid, and the directory removed.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { connect } from 'nats';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number.parseInt(args[i + 1], 10) : dflt;
};
const ROUNDS = opt('rounds', 10);
const SECONDS = opt('seconds', 10);
const PUBLISHERS = opt('publishers', 24);
const BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';
const PATH_ENV = `${process.env.PATH ?? ''}:/usr/sbin`;

async function freePort() {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    const ok = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
}

async function jsz(node) {
  try {
    const r = await fetch(`http://127.0.0.1:${node.monitor}/jsz?accounts=true&streams=true`, { signal: AbortSignal.timeout(1000) });
    const j = await r.json();
    return (j.account_details ?? []).flatMap((a) => a.stream_detail ?? []).find((s) => s.name === 'T') ?? null;
  } catch {
    return null;
  }
}

// Every node this run started and has not stopped, so that an interrupted run stops them too.
const running = new Set();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const child of running) child.kill('SIGKILL');
    process.exit(130);
  });
}

function start(node) {
  node.child = spawn(BIN, ['-c', node.conf], { stdio: 'ignore', env: { ...process.env, PATH: PATH_ENV } });
  running.add(node.child);
  node.child.once('exit', () => running.delete(node.child));
  return node.child;
}

async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

async function until(what, probe, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function round(n) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dedupe-failover-'));
  const nodes = [];
  let nc = null;
  try {
    for (let i = 1; i <= 3; i++) {
      nodes.push({ name: `n${i}`, port: await freePort(), monitor: await freePort(), cluster: await freePort(), conf: path.join(dir, `n${i}.conf`) });
    }
    for (const node of nodes) {
      const routes = nodes.filter((p) => p !== node).map((p) => `"nats://127.0.0.1:${p.cluster}"`);
      writeFileSync(
        node.conf,
        `server_name: "${node.name}"\nlisten: "127.0.0.1:${node.port}"\nhttp: "127.0.0.1:${node.monitor}"\n` +
          `jetstream { store_dir: "${path.join(dir, node.name)}" }\n` +
          `cluster { name: "dedupe-${n}", listen: "127.0.0.1:${node.cluster}", routes: [${routes.join(', ')}] }\n`,
      );
      start(node);
    }
    nc = await until('a connection', () => connect({ servers: nodes.map((x) => `127.0.0.1:${x.port}`), maxReconnectAttempts: -1, reconnectTimeWait: 100 }));
    const jsm = await until('JetStream', () => nc.jetstreamManager({ timeout: 2000 }));
    await until('the stream', () =>
      jsm.streams.add({ name: 'T', subjects: ['t.*'], num_replicas: 3, storage: 'file', duplicate_window: 120e9 }),
    );
    const js = nc.jetstream({ timeout: 1000 });

    const acked = new Map(); // msgId -> seq
    let sent = 0;
    let failed = 0;
    let zeroAcks = 0;
    let stopAt = Date.now() + SECONDS * 1000;
    const publisher = async (p) => {
      for (let k = 0; Date.now() < stopAt; k++) {
        const id = `p${p}-m${k}`;
        const subject = `t.${(p * 7 + k) % 32}`;
        const once = () => js.publish(subject, new TextEncoder().encode(id), { msgID: id, timeout: 1000 });
        for (let attempt = 0; attempt < 4; attempt++) {
          sent += 1;
          try {
            const tries = k % 5 === 0 ? [once(), once()] : [once()];
            let acks = (await Promise.allSettled(tries)).filter((r) => r.status === 'fulfilled').map((r) => r.value);
            // nats-server 2.10 answers a copy of a message whose first publish is still being
            // replicated "duplicate, sequence 0": that says nothing about whether the first will
            // be stored, so it confirms nothing (cartshard's gateway answers 503 to it).
            zeroAcks += acks.filter((a) => a.duplicate && a.seq === 0).length;
            acks = acks.filter((a) => !(a.duplicate && a.seq === 0));
            if (acks.length === 0) throw new Error('no ack');
            const seqs = new Set(acks.map((a) => a.seq));
            if (seqs.size > 1) throw new Error(`one id acknowledged at two sequences: ${[...seqs]}`);
            acked.set(id, acks[0].seq);
            break;
          } catch (err) {
            if (err.message.startsWith('one id')) throw err;
            failed += 1;
            await sleep(100 * (attempt + 1));
          }
        }
      }
    };
    const load = Promise.all(Array.from({ length: PUBLISHERS }, (_, p) => publisher(p)));

    await sleep((SECONDS * 1000) / 4);
    const info = await until('the leader', () => jsm.streams.info('T'));
    const victim = nodes.find((x) => x.name === info.cluster.leader);
    await stop(victim.child);
    const killedAt = Date.now();
    await until('a new leader', async () => {
      const si = await jsm.streams.info('T');
      return si.cluster?.leader && si.cluster.leader !== victim.name ? si : null;
    }, 30_000);
    const electedMs = Date.now() - killedAt;
    await sleep(2000);
    start(victim);
    stopAt = Math.max(stopAt, Date.now() + 2000);
    await load;

    // Every node current, then the stream read back through the leader.
    const final = await until('every replica to be current', async () => {
      const si = await jsm.streams.info('T');
      return si.cluster?.leader && (si.cluster.replicas ?? []).length === 2 && si.cluster.replicas.every((r) => r.current) ? si : null;
    }, 30_000);
    // Each acknowledged id read back, from the leader, at the sequence its ack named.
    const lost = [];
    const moved = [];
    const queue = [...acked];
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let next = queue.pop(); next; next = queue.pop()) {
          const [id, seq] = next;
          const m = await jsm.streams.getMessage('T', { seq }).catch(() => null);
          if (m === null) lost.push(`${id}@${seq}`);
          else if (m.header?.get('Nats-Msg-Id') !== id) moved.push(`${id}: acked at ${seq}, which holds ${m.header?.get('Nats-Msg-Id')}`);
        }
      }),
    );
    let replicas = [];
    const agree = await until(
      'the replicas to agree',
      async () => {
        replicas = await Promise.all(nodes.map(async (x) => ({ node: x.name, ...((await jsz(x))?.state ?? {}) })));
        return replicas.every((r) => r.messages === final.state.messages && r.last_seq === final.state.last_seq);
      },
      10_000,
    ).then(
      () => true,
      () => false,
    );
    const ok = lost.length === 0 && moved.length === 0 && agree;
    console.log(
      `round ${n}: ${ok ? 'ok' : 'FAILED'}; ${acked.size} acknowledged of ${sent} sends (${failed} failed), ` +
        `${final.state.messages} stored, ${zeroAcks} "duplicate, seq 0" answers, leader ${victim.name} killed, new leader after ${electedMs} ms; ` +
        `lost ${lost.length}${lost.length ? ` (${lost.slice(0, 5).join(', ')})` : ''}, moved ${moved.length}${moved.length ? ` (${moved.slice(0, 3).join('; ')})` : ''}; ` +
        `replicas ${agree ? 'agree' : `DISAGREE ${JSON.stringify(replicas.map((r) => [r.node, r.messages, r.first_seq, r.last_seq]))}`}`,
    );
    return ok;
  } finally {
    await nc?.close().catch(() => {});
    for (const node of nodes) await stop(node.child);
    rmSync(dir, { recursive: true, force: true });
  }
}

let failedRounds = 0;
for (let n = 1; n <= ROUNDS; n++) {
  let ok = false;
  try {
    ok = await round(n);
  } catch (err) {
    console.log(`round ${n}: FAILED: ${err.message}`);
  }
  if (!ok) failedRounds += 1;
}
console.log(`dedupe-failover (${BIN}): ${ROUNDS} rounds, ${ROUNDS - failedRounds} passed, ${failedRounds} failed`);
process.exit(failedRounds ? 1 : 0);
