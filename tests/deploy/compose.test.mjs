// The docker-compose deployment (docker/compose.yaml), run for real: images built from
// docker/Dockerfile, the stack started with docker-compose, a curl-like session through the
// published port, and one cart-store container killed (SIGKILL) while 20 users add items.
//
// This machine has no Docker engine and no image registry (see docs/deploy-compose.md, "How the
// test runs it"), so the suite:
//   - makes debian:bookworm-slim with debootstrap (tests/deploy/images/base.sh), once: later
//     runs find it in podman's storage;
//   - builds the two cartshard images under their own names (cartshard/cart-gateway and
//     cartshard/cart-store, tag `test` through CARTSHARD_VERSION), and stand-ins for the official
//     postgres, redis and nats images from Debian packages (tests/deploy/images/; nats-server 2.10
//     from Debian 13), and points the compose file at the stand-ins through its
//     CARTSHARD_*_IMAGE variables;
//   - runs the stack as a deployment would: Redis with a password from a file (a random one),
//     auth with a JWKS (ES256 keys made here) and CORS on;
//   - runs Debian's docker-compose 1.29 against podman's Docker API (`podman system service` on a
//     socket in a temporary directory);
//   - runs the compose file's health checks itself every 2 s (`podman healthcheck run`): podman
//     schedules them with systemd timers, and there is no systemd here.
// Everything it creates (containers, network, volumes, the podman service) is removed by id or
// pid in after(), also when a step fails. CARTSHARD_ROOT is the repository (scripts/dev sets it).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = resolve(process.env.CARTSHARD_ROOT ?? new URL('../..', import.meta.url).pathname);
const COMPOSE_FILE = join(ROOT, 'docker/compose.yaml');
const IMAGES_DIR = join(ROOT, 'tests/deploy/images');
const BASE_IMAGE = 'docker.io/library/debian:bookworm-slim';
// Fixed tags, so that podman's layer cache makes the next run's builds quick.
const TAG = 'test';
// The cartshard images under the names the compose file (and the Kubernetes manifests) use; the
// compose file finds them through CARTSHARD_VERSION=test.
const IMAGE = {
    gateway: `localhost/cartshard/cart-gateway:${TAG}`,
    cartStore: `localhost/cartshard/cart-store:${TAG}`,
    cartStats: `localhost/cartshard/cart-stats:${TAG}`,
    postgres: `localhost/cartshard-test/postgres:${TAG}`,
    redis: `localhost/cartshard-test/redis:${TAG}`,
    nats: `localhost/cartshard-test/nats:${TAG}`,
};
const SUBSTITUTED = [
    `postgres:15.14-bookworm -> ${IMAGE.postgres} (Debian postgresql-15)`,
    `redis:7.2.11-bookworm   -> ${IMAGE.redis} (Debian redis-server 7.0: the file's redis.conf, password and user, an older server)`,
    `nats:2.10.27-alpine     -> ${IMAGE.nats} (nats-server 2.10 from Debian 13, with docker/nats.conf as it is)`,
    `debian:bookworm-slim    -> debootstrap --variant=minbase bookworm, imported as ${BASE_IMAGE}`,
];
// Auth as an identity provider would set it up: an ES256 key whose public half is in the JWKS.
const ISSUER = 'https://issuer.compose-test.invalid';
const AUDIENCE = 'cartshard-compose-test';
const ORIGIN = 'https://shop.compose-test.invalid';
const KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const KID = `compose-${randomBytes(4).toString('hex')}`;

const USERS = 20;
const ADDS_PER_USER = 20;
const ADD_PACE_MS = 200;

const t0 = Date.now();
const timings = [];
const state = {
    tmp: null, // temporary directory: containers.conf, the API socket, logs
    project: `cstest${process.pid}${randomBytes(3).toString('hex')}`,
    service: null, // the `podman system service` child
    env: null, // environment of every podman and docker-compose command
    port: 0, // published gateway port on 127.0.0.1
    redisPassword: randomBytes(24).toString('hex'),
    built: false, // every image built
    composeStarted: false,
    up: false, // every service healthy
    pumping: false,
    pumpDone: null,
};

function log(msg) {
    process.stdout.write(`# compose: ${msg}\n`);
}

async function timed(name, fn) {
    const start = Date.now();
    try {
        return await fn();
    } finally {
        const s = (Date.now() - start) / 1000;
        timings.push([name, s]);
        log(`${name}: ${s.toFixed(1)} s`);
    }
}

// Runs a command; resolves to {code, stdout, stderr}. A command still running after timeoutMs is
// killed (SIGKILL) and reported as code null with timedOut set.
function run(cmd, args, { timeoutMs = 120_000, env = state.env ?? process.env } = {}) {
    return new Promise((resolvePromise) => {
        const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
        let stdout = '';
        let stderr = '';
        let timedOut = false;
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        const timer = setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
        }, timeoutMs);
        child.on('error', (err) => {
            clearTimeout(timer);
            resolvePromise({ code: -1, stdout, stderr: `${stderr}${err.message}`, timedOut });
        });
        child.on('close', (code) => {
            clearTimeout(timer);
            resolvePromise({ code, stdout, stderr, timedOut });
        });
    });
}

// Like run, but throws with the command's output when it fails.
async function must(cmd, args, opts = {}) {
    const r = await run(cmd, args, opts);
    if (r.code !== 0) {
        const why = r.timedOut ? `timed out after ${(opts.timeoutMs ?? 120_000) / 1000} s` : `exit status ${r.code}`;
        throw new Error(`${cmd} ${args.join(' ')}: ${why}\n${tail(r.stdout, 40)}\n${tail(r.stderr, 40)}`);
    }
    return r;
}

function tail(text, lines) {
    return String(text).trimEnd().split('\n').slice(-lines).join('\n');
}

function compose(args, opts = {}) {
    return run('docker-compose', ['--ansi', 'never', '-p', state.project, '-f', COMPOSE_FILE, ...args], opts);
}

async function composeMust(args, opts = {}) {
    const r = await compose(args, opts);
    if (r.code !== 0) {
        const why = r.timedOut ? 'timed out' : `exit status ${r.code}`;
        throw new Error(`docker-compose ${args.join(' ')}: ${why}\n${tail(r.stdout, 40)}\n${tail(r.stderr, 60)}`);
    }
    return r;
}

// The last lines of the stack's logs (every service, or the ones named), for failure messages.
async function stackLogs(services = [], lines = 40) {
    if (!state.composeStarted) return '(the stack was not started)';
    const r = await compose(['logs', '--no-color', `--tail=${lines}`, ...services], { timeoutMs: 30_000 });
    return `--- docker-compose logs ${services.join(' ') || '(all services)'} ---\n${r.stdout}${r.stderr}`;
}

async function containerStates() {
    const r = await run('podman', [
        'ps', '-a', '--filter', `label=com.docker.compose.project=${state.project}`,
        '--format', '{{.Names}} {{.Status}}',
    ], { timeoutMs: 30_000 });
    return r.stdout.trim();
}

// Runs fn; a failure gets the containers' states and logs appended to its message.
async function withLogs(fn, services = []) {
    try {
        return await fn();
    } catch (err) {
        const extra = `\n--- containers ---\n${await containerStates()}\n${await stackLogs(services)}`;
        err.message = `${err.message}${extra}`;
        throw err;
    }
}

// A free port below Linux's ephemeral range (32768-60999): one the kernel hands out for outgoing
// connections could be taken, between this check and the publish, by any client socket on the
// machine. TEST_COMPOSE_PORTS ("first-last"), by default 30000-30999: apart from the integration
// suites' private ports (TEST_PRIVATE_PORTS, 10000-19999 by default), the test stacks' ports and
// the benchmark's (3xxxx ports of scripts/lib/stack.sh all end in 080, 101, 102, 222, 380, 433,
// 434 above 34000).
const [PORT_FIRST, PORT_LAST] = (process.env.TEST_COMPOSE_PORTS || '30000-30999').split('-').map(Number);
assert.ok(PORT_FIRST >= 1024 && PORT_LAST >= PORT_FIRST && PORT_LAST < 32768, 'TEST_COMPOSE_PORTS: first-last, below 32768');
async function freePort() {
    for (let attempt = 0; attempt < 100; attempt++) {
        const candidate = PORT_FIRST + Math.floor(Math.random() * (PORT_LAST - PORT_FIRST + 1));
        const srv = createServer();
        const ok = await new Promise((resolvePromise) => {
            srv.once('error', () => resolvePromise(false));
            srv.listen(candidate, '127.0.0.1', () => resolvePromise(true));
        });
        if (ok) {
            await new Promise((resolvePromise) => srv.close(resolvePromise));
            return candidate;
        }
    }
    throw new Error(`no free port found in ${PORT_FIRST}-${PORT_LAST}`);
}

async function projectContainers(service) {
    const filters = ['--filter', `label=com.docker.compose.project=${state.project}`];
    if (service) filters.push('--filter', `label=com.docker.compose.service=${service}`);
    const r = await must('podman', ['ps', '-a', '-q', '--no-trunc', ...filters], { timeoutMs: 30_000 });
    return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
}

// podman runs HEALTHCHECKs with systemd timers; with no systemd, this loop runs them (each
// container's own check, as declared in the compose file), every 2 s until stopped.
function startHealthPump() {
    state.pumping = true;
    state.pumpDone = (async () => {
        while (state.pumping) {
            const r = await run('podman', [
                'ps', '-q', '--filter', `label=com.docker.compose.project=${state.project}`,
                '--filter', 'status=running',
            ], { timeoutMs: 30_000 });
            for (const id of r.stdout.split('\n').map((s) => s.trim()).filter(Boolean)) {
                if (!state.pumping) break;
                await run('podman', ['healthcheck', 'run', id], { timeoutMs: 15_000 });
            }
            await sleep(2000);
        }
    })();
}

async function health(id) {
    const r = await run('podman', ['inspect', '--format', '{{.State.Status}} {{.State.Health.Status}} {{.RestartCount}}', id], {
        timeoutMs: 30_000,
    });
    const [status, hs, restarts] = r.stdout.trim().split(/\s+/);
    return { status, health: hs, restarts: Number(restarts) || 0 };
}

// Waits until every container of the service (all when none) is running and healthy.
async function waitHealthy(service, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
        const ids = await projectContainers(service);
        const states = await Promise.all(ids.map(health));
        last = states.map((s, i) => `${ids[i].slice(0, 12)}: ${s.status}/${s.health}, ${s.restarts} restarts`).join(', ');
        if (ids.length > 0 && states.every((s) => s.status === 'running' && s.health === 'healthy')) return;
        // The restart policy hides a service that exits at once: do not wait the whole time for it.
        if (states.some((s) => s.restarts >= 3)) throw new Error(`${service ?? 'a service'} keeps exiting (${last})`);
        await sleep(1000);
    }
    throw new Error(`${service ?? 'the stack'} not healthy after ${timeoutMs / 1000} s (${last})`);
}

// ------------------------------------------------------------------------------------------
// HTTP helpers

function url(path) {
    return `http://127.0.0.1:${state.port}${path}`;
}

// An ES256 token for `sub`, signed with the key of the JWKS the gateway reads.
function token(sub, claims = {}) {
    const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const signing = `${b64({ alg: 'ES256', typ: 'JWT', kid: KID })}.${b64({ sub, iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 900, ...claims })}`;
    const sig = sign('sha256', Buffer.from(signing), { key: KEY.privateKey, dsaEncoding: 'ieee-p1363' });
    return `${signing}.${sig.toString('base64url')}`;
}

// Every /v1 request carries a token for the user it is about (the path's, or the body's user_id)
// unless the caller sets Authorization itself (or `auth: false`).
async function http(method, path, { body, headers = {}, timeoutMs = 10_000, auth = true } = {}) {
    const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(timeoutMs) };
    const user = /^\/v1\/carts\/([^/?]+)/.exec(path)?.[1] ?? body?.user_id;
    if (auth && user && !Object.keys(headers).some((h) => h.toLowerCase() === 'authorization')) {
        init.headers.authorization = `Bearer ${token(decodeURIComponent(user))}`;
    }
    if (body !== undefined) {
        init.body = JSON.stringify(body);
        init.headers['content-type'] = 'application/json';
    }
    const res = await fetch(url(path), init);
    const text = await res.text();
    let json = null;
    try {
        json = text ? JSON.parse(text) : null;
    } catch {
        json = null;
    }
    return { status: res.status, headers: res.headers, text, json };
}

function expectStatus(res, status, what) {
    assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text.slice(0, 400)}`);
}

// One more add (sku Z) for the user, and the cart as committed with it. Its 200 carries the cart
// the shard committed, after every earlier event of the user (they are applied in publish
// order): the truth, not a cache entry that a killed worker may have left stale. The add has an
// Idempotency-Key, so retrying it is safe; if it is answered 202 (the wait ran out), the cart is
// read until it shows Z: that read comes from the cache the commit of Z wrote.
async function finalCart(user) {
    const deadline = Date.now() + 60_000;
    let last = '';
    while (Date.now() < deadline) {
        const r = await http('POST', `/v1/carts/${user}/items`, {
            body: { sku: 'Z', quantity: 1 },
            headers: { 'idempotency-key': `final-${user}` },
            timeoutMs: 15_000,
        }).catch((err) => ({ status: 0, text: String(err) }));
        last = `POST: ${r.status} ${r.text.slice(0, 300)}`;
        if (r.status === 200 && r.json?.items?.some((it) => it.sku === 'Z')) return r.json;
        if (r.status === 200 || r.status === 202) {
            const g = await http('GET', `/v1/carts/${user}`).catch((err) => ({ status: 0, text: String(err) }));
            last += `; GET: ${g.status} ${g.text.slice(0, 300)}`;
            if (g.status === 200 && g.json?.items?.some((it) => it.sku === 'Z')) return g.json;
        }
        await sleep(1000);
    }
    throw new Error(`${user}: no cart with the final add after 60 s (${last})`);
}

// cartshard_partitions_owned of a worker, from its /metrics on the admin port inside its
// container (bash's /dev/tcp: the image has no curl, and the port is not published).
async function ownedPartitions(id) {
    const script = 'exec 3<>/dev/tcp/127.0.0.1/9101 && printf "GET /metrics HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3';
    const r = await must('podman', ['exec', id, 'bash', '-c', script], { timeoutMs: 30_000 });
    const m = r.stdout.match(/^cartshard_partitions_owned (\d+)/m);
    assert.ok(m, `no cartshard_partitions_owned in the metrics of ${id.slice(0, 12)}`);
    return Number(m[1]);
}

// ------------------------------------------------------------------------------------------

describe('docker-compose deployment (docker/compose.yaml)', { timeout: 15 * 60_000 }, () => {
    before(async () => {
        log(`project ${state.project}; repository ${ROOT}`);
        log('images substituted for the official ones (no registry here):');
        for (const line of SUBSTITUTED) log(`  ${line}`);
        for (const tool of ['podman', 'docker-compose', 'debootstrap']) {
            const r = await run('sh', ['-c', `command -v ${tool}`], { env: process.env });
            assert.equal(r.code, 0, `${tool} is not installed (scripts/dev installs DEPLOY_APT_PACKAGES, scripts/lib/test.sh)`);
        }
        state.tmp = mkdtempSync(join(tmpdir(), 'cartshard-compose-'));
        // The sandbox's cgroup v1 layout and fixed open-files limit (shared/containers.md); the
        // CNI backend because the dnsname plugin is what gives containers their names in DNS.
        writeFileSync(join(state.tmp, 'containers.conf'), [
            '[containers]',
            'default_ulimits = []',
            '[engine]',
            'runtime = "runc"',
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            '[network]',
            'network_backend = "cni"',
            '',
        ].join('\n'));
        state.port = await freePort();
        do state.statsPort = await freePort(); while (state.statsPort === state.port);
        // The Redis password: a file, readable by the containers' users (it is bind-mounted as
        // it is). The JWKS: in the directory the gateway mounts.
        const secret = join(state.tmp, 'redis-password');
        writeFileSync(secret, `${state.redisPassword}\n`);
        chmodSync(secret, 0o644);
        const authDir = join(state.tmp, 'auth');
        mkdirSync(authDir);
        chmodSync(state.tmp, 0o755);
        writeFileSync(join(authDir, 'jwks.json'), JSON.stringify({
            keys: [{ ...KEY.publicKey.export({ format: 'jwk' }), kid: KID, alg: 'ES256', use: 'sig' }],
        }));
        chmodSync(join(authDir, 'jwks.json'), 0o644);
        const socket = join(state.tmp, 'podman.sock');
        // Only what the suite says reaches the compose file: every variable it reads (`${NAME:-…}`)
        // is dropped from the inherited environment first, so a caller's CART_STORE_BATCH or
        // LOG_LEVEL cannot change the stack under test.
        const inherited = { ...process.env };
        for (const m of readFileSync(COMPOSE_FILE, 'utf8').matchAll(/\$\{([A-Z0-9_]+)/g)) delete inherited[m[1]];
        state.env = {
            ...inherited,
            CONTAINERS_CONF: join(state.tmp, 'containers.conf'),
            DOCKER_HOST: `unix://${socket}`,
            COMPOSE_INTERACTIVE_NO_CLI: '1',
            CARTSHARD_VERSION: TAG,
            CARTSHARD_POSTGRES_IMAGE: IMAGE.postgres,
            CARTSHARD_REDIS_IMAGE: IMAGE.redis,
            CARTSHARD_NATS_IMAGE: IMAGE.nats,
            CARTSHARD_REDIS_PASSWORD_FILE: secret,
            CARTSHARD_AUTH_DIR: authDir,
            AUTH_JWKS_FILE: '/etc/cartshard/auth/jwks.json',
            AUTH_ISSUER: ISSUER,
            AUTH_AUDIENCE: AUDIENCE,
            CORS_ALLOWED_ORIGINS: ORIGIN,
            CARTSHARD_BIND_ADDRESS: '127.0.0.1',
            CARTSHARD_GATEWAY_PORT: String(state.port),
            CARTSHARD_STATS_PORT: String(state.statsPort),
            // Every request of this suite comes from one client; the limiter is not under test.
            RATE_LIMIT_RPS: '1000000',
            RATE_LIMIT_BURST: '1000000',
        };

        state.service = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], {
            env: state.env,
            stdio: ['ignore', 'ignore', 'ignore'],
        });
        state.service.on('error', () => {});
        const deadline = Date.now() + 20_000;
        while (!existsSync(socket)) {
            assert.ok(state.service.exitCode === null, `podman system service exited (${state.service.exitCode})`);
            assert.ok(Date.now() < deadline, 'podman system service made no socket in 20 s');
            await sleep(100);
        }
        log(`podman API on ${socket} (pid ${state.service.pid}), gateway on 127.0.0.1:${state.port}`);
    });

    after(async () => {
        state.pumping = false;
        if (state.pumpDone) await state.pumpDone.catch(() => {});
        if (state.composeStarted) {
            const start = Date.now();
            const r = await compose(['down', '-v', '--remove-orphans', '-t', '10'], { timeoutMs: 180_000 });
            if (r.code !== 0) log(`docker-compose down failed (${r.code}): ${tail(r.stderr, 10)}`);
            // Whatever down left (it timed out, or the API died): by id.
            const label = `label=com.docker.compose.project=${state.project}`;
            const ids = (await run('podman', ['ps', '-a', '-q', '--filter', label], { timeoutMs: 30_000 })).stdout
                .split('\n').filter(Boolean);
            if (ids.length) await run('podman', ['rm', '-f', '-t', '0', ...ids], { timeoutMs: 120_000 });
            const vols = (await run('podman', ['volume', 'ls', '-q', '--filter', label], { timeoutMs: 30_000 })).stdout
                .split('\n').filter(Boolean);
            if (vols.length) await run('podman', ['volume', 'rm', '-f', ...vols], { timeoutMs: 60_000 });
            const nets = (await run('podman', ['network', 'ls', '-q', '--filter', label], { timeoutMs: 30_000 })).stdout
                .split('\n').filter(Boolean);
            if (nets.length) await run('podman', ['network', 'rm', '-f', ...nets], { timeoutMs: 60_000 });
            timings.push(['teardown', (Date.now() - start) / 1000]);
        }
        if (state.service && state.service.exitCode === null) {
            state.service.kill('SIGTERM');
            for (let i = 0; i < 50 && state.service.exitCode === null; i++) await sleep(100);
            if (state.service.exitCode === null) state.service.kill('SIGKILL');
        }
        if (state.tmp) rmSync(state.tmp, { recursive: true, force: true });
        const total = (Date.now() - t0) / 1000;
        log(`timings: ${timings.map(([n, s]) => `${n} ${s.toFixed(1)} s`).join(', ')}; total ${total.toFixed(1)} s`);
        log(`substituted images: ${SUBSTITUTED.map((s) => s.split(' -> ')[0].trim()).join(', ')} (see above)`);
    });

    test('the base image exists or is made with debootstrap', { timeout: 10 * 60_000 }, async () => {
        const exists = await run('podman', ['image', 'exists', BASE_IMAGE]);
        if (exists.code === 0) {
            log(`${BASE_IMAGE} is already in podman's storage`);
            return;
        }
        await timed('base image (debootstrap)', () =>
            must('bash', [join(IMAGES_DIR, 'base.sh'), BASE_IMAGE, join(state.tmp, 'base')], { timeoutMs: 8 * 60_000 }));
    });

    test('the images build (cartshard gateway, cart-store and cart-stats, and the stand-ins)', { timeout: 15 * 60_000 }, async () => {
        const rev = await run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { env: process.env });
        const common = ['build', '--format', 'docker', '--build-arg', `REVISION=${rev.stdout.trim() || 'unknown'}`];
        const dockerfile = join(ROOT, 'docker/Dockerfile');
        await timed('build cart-store image', () =>
            must('podman', [...common, '-f', dockerfile, '--target', 'cart-store', '-t', IMAGE.cartStore, ROOT],
                { timeoutMs: 12 * 60_000 }));
        await timed('build gateway image', () =>
            must('podman', [...common, '-f', dockerfile, '--target', 'cart-gateway', '-t', IMAGE.gateway, ROOT],
                { timeoutMs: 12 * 60_000 }));
        await timed('build cart-stats image', () =>
            must('podman', [...common, '-f', dockerfile, '--target', 'cart-stats', '-t', IMAGE.cartStats, ROOT],
                { timeoutMs: 12 * 60_000 }));
        // The stand-ins only download packages: build them side by side.
        await timed('build stand-in images', () => Promise.all(['postgres', 'redis', 'nats'].map((s) =>
            must('podman', ['build', '--format', 'docker', '-t', IMAGE[s], join(IMAGES_DIR, s)],
                { timeoutMs: 10 * 60_000 }))));
        for (const [name, ref, title] of [
            ['gateway', IMAGE.gateway, 'cart-gateway'],
            ['cart-store', IMAGE.cartStore, 'cart-store'],
            ['cart-stats', IMAGE.cartStats, 'cart-stats'],
        ]) {
            const r = await must('podman', ['image', 'inspect', '--format',
                '{{.Config.User}}|{{json .Config.ExposedPorts}}|{{.Config.StopSignal}}|{{index .Config.Labels "org.opencontainers.image.title"}}',
                ref]);
            const [user, ports, stop, label] = r.stdout.trim().split('|');
            assert.equal(user, '10001:10001', `${name} image must run as uid 10001`);
            assert.match(ports, { gateway: /8080\/tcp/, 'cart-store': /9101\/tcp/, 'cart-stats': /9201\/tcp/ }[name], `${name} image EXPOSE`);
            assert.equal(stop, 'SIGTERM', `${name} image STOPSIGNAL`);
            assert.equal(label, title, `${name} image OCI title label`);
            const hc = await must('podman', ['image', 'inspect', '--format', '{{json .HealthCheck}}', ref]);
            assert.match(hc.stdout, /cartshard-healthcheck/, `${name} image HEALTHCHECK: ${hc.stdout}`);
        }
        state.built = true;
    });

    test('docker-compose config accepts the file; one image name per service', async () => {
        const r = await composeMust(['config', '-q'], { timeoutMs: 60_000 });
        assert.equal(r.stderr.trim(), '', `docker-compose config warns: ${r.stderr}`);
        // One image name per service, the Kubernetes manifests' names, whatever the tag.
        const images = (await composeMust(['config'], { timeoutMs: 60_000 })).stdout;
        assert.doesNotMatch(images, /profiles:/, 'every service is in the default set');
        for (const name of ['cart-gateway', 'cart-store', 'cart-stats']) {
            assert.match(images, new RegExp(`image: cartshard/${name}:${TAG}$`, 'm'), `image cartshard/${name}`);
        }
    });

    test('docker-compose up: every service healthy, migrate exited 0', { timeout: 6 * 60_000 }, async (t) => {
        // Without the images, compose would try to pull them from a registry that is not there.
        if (!state.built) return t.skip('the images were not built');
        startHealthPump();
        state.composeStarted = true;
        await withLogs(async () => {
            await timed('compose up (until healthy)', async () => {
                await composeMust(['up', '-d', '--no-build'], { timeoutMs: 5 * 60_000 });
                for (const svc of ['nats', 'redis', 'pg0', 'pg1', 'gateway', 'cart-store', 'cart-stats']) {
                    await waitHealthy(svc, 90_000);
                }
            });
            const workers = await projectContainers('cart-store');
            assert.equal(workers.length, 2, 'two cart-store containers (scale: 2)');
            assert.equal((await projectContainers('cart-stats')).length, 1, 'one cart-stats container');
            const [mig] = await projectContainers('migrate');
            const r = await must('podman', ['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', mig]);
            assert.equal(r.stdout.trim(), 'exited 0', 'the migrate one-shot exits 0');
        });
        state.up = true;
    });

    test('a session through the published port: create, add, get (ETag), checkout', async (t) => {
        if (!state.up) return t.skip('the stack did not come up');
        await withLogs(async () => {
            for (const path of ['/healthz', '/readyz']) expectStatus(await http('GET', path), 200, `GET ${path}`);
            const metrics = await http('GET', '/metrics');
            expectStatus(metrics, 200, 'GET /metrics');
            assert.match(metrics.text, /^# (HELP|TYPE) /m, 'metrics in Prometheus text format');

            const user = `smoke-${state.project}`;
            let r = await http('POST', '/v1/carts', { body: { user_id: user } });
            expectStatus(r, 201, 'POST /v1/carts (new)');
            const cartId = r.json.cart_id;
            assert.equal(r.json.status, 'active');
            r = await http('POST', '/v1/carts', { body: { user_id: user } });
            expectStatus(r, 200, 'POST /v1/carts (existing)');
            assert.equal(r.json.cart_id, cartId, 'a duplicate create returns the same cart');

            r = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'B7', quantity: 1 } });
            expectStatus(r, 200, 'add B7');
            r = await http('POST', `/v1/carts/${user}/items`, { body: { sku: 'A1', quantity: 2 } });
            expectStatus(r, 200, 'add A1');
            assert.deepEqual(r.json.items, [{ sku: 'A1', quantity: 2 }, { sku: 'B7', quantity: 1 }]);

            r = await http('GET', `/v1/carts/${user}`);
            expectStatus(r, 200, 'GET cart');
            assert.equal(r.json.item_count, 3);
            assert.deepEqual(r.json.items.map((i) => i.sku), ['A1', 'B7'], 'items sorted by sku');
            const etag = r.headers.get('etag');
            assert.equal(etag, `"${r.json.version}"`, 'ETag is the quoted version');
            r = await http('GET', `/v1/carts/${user}`, { headers: { 'if-none-match': etag } });
            expectStatus(r, 304, 'GET with If-None-Match');

            r = await http('GET', `/v1/carts/nobody-${state.project}`);
            expectStatus(r, 404, 'GET an absent cart');
            assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);

            r = await http('POST', `/v1/carts/${user}/checkout`);
            expectStatus(r, 200, 'checkout');
            assert.equal(r.json.status, 'checked_out');
            assert.equal(r.json.item_count, 3);
            expectStatus(await http('GET', `/v1/carts/${user}`), 404, 'GET after checkout');
            expectStatus(await http('POST', `/v1/carts/${user}/checkout`), 409, 'checkout without a cart');
        }, ['gateway', 'cart-store']);
    });

    test('Redis is a cache with a password from the file; auth and CORS are on', async (t) => {
        if (!state.up) return t.skip('the stack did not come up');
        await withLogs(async () => {
            const [rds] = await projectContainers('redis');
            const cli = (args, env = []) => run('podman', ['exec', ...env, rds, 'redis-cli', ...args], { timeoutMs: 30_000 });
            const anonymous = await cli(['ping']);
            assert.match(`${anonymous.stdout}${anonymous.stderr}`, /NOAUTH/, 'Redis refuses a client without the password');
            const withPw = ['-e', `REDISCLI_AUTH=${state.redisPassword}`];
            // CONFIG GET answers the name, then the value, one per line (an empty value: an empty line).
            const conf = async (name) => (await cli(['config', 'get', name], withPw)).stdout.split('\n')[1] ?? null;
            assert.equal(await conf('appendonly'), 'no', 'no AOF');
            assert.equal(await conf('save'), '', 'no RDB snapshots');
            assert.equal(await conf('maxmemory-policy'), 'allkeys-lru');
            assert.equal(await conf('maxmemory'), String(256 * 1024 * 1024), 'maxmemory 256mb');
            // The password is on no command line in the container.
            const cmdlines = await must('podman', ['exec', rds, 'sh', '-c', 'cat /proc/[0-9]*/cmdline | tr "\\0" " "'], { timeoutMs: 30_000 });
            assert.ok(!cmdlines.stdout.includes(state.redisPassword), 'the password is in no process\'s arguments');
            // The gateway authenticated with REDIS_PASSWORD_FILE: /readyz reports Redis up.
            const ready = await http('GET', '/readyz');
            expectStatus(ready, 200, 'GET /readyz');
            assert.equal(ready.json.redis, true, `the gateway reaches Redis with the file's password: ${ready.text}`);
            assert.deepEqual(ready.json.shards, [true, true]);
            // nats-server 2.10 runs docker/nats.conf as it is (2.9 refuses its sync_interval).
            const [nats] = await projectContainers('nats');
            const v = await must('podman', ['exec', nats, 'nats-server', '--version'], { timeoutMs: 30_000 });
            assert.match(v.stdout, /v2\.(1[0-9]|[2-9][0-9])\./, `nats-server 2.10 or later: ${v.stdout}`);

            const user = `auth-${state.project}`;
            expectStatus(await http('GET', `/v1/carts/${user}`, { auth: false }), 401, 'no token');
            expectStatus(await http('GET', `/v1/carts/${user}`, { headers: { authorization: `Bearer ${token('someone-else')}` } }),
                403, "another user's token");
            expectStatus(await http('GET', `/v1/carts/${user}`, { headers: { authorization: `Bearer ${token(user, { aud: 'other' })}` } }),
                401, 'a token for another audience');
            expectStatus(await http('GET', `/v1/carts/${user}`), 404, 'a token from the JWKS');

            const preflight = await fetch(url(`/v1/carts/${user}/items`), {
                method: 'OPTIONS',
                headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization' },
            });
            assert.equal(preflight.status, 204, 'a preflight from the listed origin');
            assert.equal(preflight.headers.get('access-control-allow-origin'), ORIGIN);
            const other = await http('GET', `/v1/carts/${user}`, { headers: { origin: 'https://elsewhere.invalid' } });
            assert.equal(other.headers.get('access-control-allow-origin'), null, 'no CORS headers for an unlisted origin');
        }, ['redis', 'gateway']);
    });

    test('a cart-store container killed mid-load loses and doubles nothing', { timeout: 5 * 60_000 }, async (t) => {
        if (!state.up) return t.skip('the stack did not come up');
        await withLogs(async () => {
            const [victim, survivor] = await projectContainers('cart-store');
            const acquired = async (id, since) => {
                const args = ['logs', ...(since ? ['--since', since] : []), id];
                const r = await must('podman', args, { timeoutMs: 30_000 });
                return `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('"msg":"partition acquired"')).length;
            };
            assert.ok(await acquired(victim) > 0, `cart-store ${victim.slice(0, 12)} owns partitions before the kill`);
            let killTime = null;
            const users = Array.from({ length: USERS }, (_, i) => `load-${state.project}-${i}`);
            const tally = users.map(() => ({ accepted: 0, unknown: 0, other: [] }));
            let late = 0; // 202s: the commit took longer than CART_SYNC_TIMEOUT_MS
            const total = USERS * ADDS_PER_USER;
            let answered = 0;
            let killedAt = -1;

            // 20 users, each 20 paced adds of one unit of sku K, all in flight together.
            const load = timed('load (20 users x 20 adds) with a worker kill', () => Promise.all(users.map(async (u, i) => {
                for (let n = 0; n < ADDS_PER_USER; n++) {
                    try {
                        const r = await http('POST', `/v1/carts/${u}/items`, { body: { sku: 'K', quantity: 1 } });
                        if (r.status === 200 || r.status === 202) {
                            tally[i].accepted++;
                            if (r.status === 202) late++;
                        } else if (r.status === 503) {
                            tally[i].unknown++; // the bus did not confirm: stored or not
                        } else {
                            tally[i].other.push(`${r.status} ${r.text.slice(0, 200)}`);
                        }
                    } catch {
                        tally[i].unknown++; // no answer (timeout, reset): may or may not be applied
                    }
                    answered++;
                    await sleep(ADD_PACE_MS);
                }
            })));
            // SIGKILL one worker once a quarter of the adds are answered, and start it again
            // at once: its partitions move to the other worker and back while adds go on.
            // SIGKILL one worker once a quarter of the adds are answered; start it again once
            // the other worker has taken its partitions over (its log says so; `podman kill`
            // does not trigger the restart policy), so that both the failover and the return
            // happen while the adds go on.
            let takenOver = 0;
            let restartTime = null;
            const killer = (async () => {
                while (answered < total / 4) await sleep(20);
                killedAt = answered;
                killTime = new Date().toISOString();
                await must('podman', ['kill', '--signal', 'KILL', victim], { timeoutMs: 30_000 });
                log(`killed cart-store ${victim.slice(0, 12)} after ${killedAt}/${total} answers`);
                const deadline = Date.now() + 20_000;
                while ((takenOver = await acquired(survivor, killTime)) === 0 && Date.now() < deadline) await sleep(200);
                log(`cart-store ${survivor.slice(0, 12)} acquired ${takenOver} partitions after the kill ` +
                    `(${answered}/${total} answers)`);
                restartTime = new Date().toISOString();
                await must('podman', ['start', victim], { timeoutMs: 60_000 });
                log(`started ${victim.slice(0, 12)} again after ${answered}/${total} answers`);
            })();
            await Promise.all([load, killer]);
            assert.ok(killedAt >= 0 && killedAt < total, `the kill happened mid-load (at ${killedAt}/${total})`);
            assert.ok(takenOver > 0, 'the surviving worker took partitions over within 20 s of the kill');
            await timed('restarted worker healthy', () => waitHealthy('cart-store', 90_000));
            // Its health check run now, against the new process (not a status left from before).
            await must('podman', ['healthcheck', 'run', victim], { timeoutMs: 30_000 });
            // The survivor hands partitions back (fair share): the restarted worker gets some.
            const back = Date.now() + 30_000;
            let regained = 0;
            while ((regained = await acquired(victim, restartTime)) === 0 && Date.now() < back) await sleep(500);
            log(`the restarted worker acquired ${regained} partitions`);
            assert.ok(regained > 0, 'the restarted worker took partitions again within 30 s');

            const others = tally.flatMap((x, i) => x.other.map((o) => `${users[i]}: ${o}`));
            assert.deepEqual(others, [], 'every add answered 200, 202 or 503 (or not at all)');
            const accepted = tally.reduce((s, x) => s + x.accepted, 0);
            const unknown = tally.reduce((s, x) => s + x.unknown, 0);
            log(`adds: ${accepted} accepted (${accepted - late} answered 200, ${late} answered 202), ` +
                `${unknown} without a definite answer, of ${total}`);
            assert.ok(unknown <= total / 10, `at most a tenth of the adds without an answer (${unknown})`);

            // One more add per user, with an Idempotency-Key so that a retry is safe: its 200
            // carries the cart as the shard committed it, after every earlier event of the user
            // (applied in publish order), so it reads the truth, not a possibly stale cache entry.
            await timed('final read of every cart', () => Promise.all(users.map(async (u, i) => {
                const cart = await finalCart(u);
                const k = cart.items.find((it) => it.sku === 'K')?.quantity ?? 0;
                const { accepted: acc, unknown: unk } = tally[i];
                assert.ok(k >= acc, `${u}: quantity ${k} < ${acc} accepted adds: an accepted add was lost`);
                assert.ok(k <= acc + unk, `${u}: quantity ${k} > ${acc} accepted + ${unk} unanswered: an add was doubled`);
                // Every applied add bumps the version once (the first one creates the cart at 1).
                assert.equal(cart.version, k + 1, `${u}: version ${cart.version} for ${k} adds of K and one of Z`);
                state.unitsOfK = (state.unitsOfK ?? 0) + k;
            })));
            // cart-stats counted every applied add of K once, through the worker's death: its
            // notices are at least once (the outbox sends again what a dead worker left).
            await timed('cart-stats counts every applied add once', async () => {
                const deadline = Date.now() + 60_000;
                let units = null;
                while (Date.now() < deadline) {
                    const r = await fetch(`http://127.0.0.1:${state.statsPort}/v1/stats/top-skus?window=1h&limit=100`, {
                        signal: AbortSignal.timeout(10_000),
                    }).then((res) => res.json()).catch(() => null);
                    units = Array.isArray(r) ? (r.find((x) => x.sku === 'K')?.units ?? 0) : null;
                    if (units === state.unitsOfK) break;
                    await sleep(500);
                }
                assert.equal(units, state.unitsOfK, `units of K counted by cart-stats: ${units}; applied: ${state.unitsOfK}`);
                log(`cart-stats counted ${units} units of K, the applied adds exactly`);
            });
        }, ['gateway', 'cart-store', 'cart-stats']);
    });
    test('docker-compose up --scale cart-store=3 spreads the partitions over three workers', { timeout: 3 * 60_000 }, async (t) => {
        if (!state.up) return t.skip('the stack did not come up');
        await withLogs(async () => {
            await timed('scale to 3 workers', async () => {
                await composeMust(['up', '-d', '--no-build', '--scale', 'cart-store=3'], { timeoutMs: 3 * 60_000 });
                await waitHealthy('cart-store', 90_000);
            });
            const workers = await projectContainers('cart-store');
            assert.equal(workers.length, 3, 'three cart-store containers');
            // Each takes at most ceil(16 partitions of a shard / 3 workers) = 6 per shard.
            const partitions = 32;
            const most = 2 * Math.ceil(partitions / 2 / 3);
            const deadline = Date.now() + 30_000;
            let owned = [];
            while (Date.now() < deadline) {
                owned = await Promise.all(workers.map(ownedPartitions));
                const sum = owned.reduce((a, b) => a + b, 0);
                if (sum === partitions && owned.every((n) => n > 0 && n <= most)) break;
                await sleep(1000);
            }
            log(`partitions owned by the 3 workers: ${owned.join(', ')}`);
            assert.equal(owned.reduce((a, b) => a + b, 0), partitions, `all ${partitions} partitions owned (${owned})`);
            assert.ok(owned.every((n) => n > 0 && n <= most), `each worker owns 1..${most} partitions (${owned})`);
            const r = await http('POST', `/v1/carts/scaled-${state.project}/items`, { body: { sku: 'S', quantity: 3 } });
            expectStatus(r, 200, 'an add with three workers');
        }, ['cart-store']);
    });
});
