// Process helpers for the end-to-end tests: start signal-server and redis-server on free
// ports, wait for conditions with deadlines, stop everything that was started.
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Loads an npm dependency of the e2e tests: from E2E_NODE_MODULES (the directory holding
 * node_modules that the ctest setup step filled, in the build tree) or, when unset, from
 * tests/e2e/node_modules (`npm ci` in tests/e2e).
 * @param {string} name
 */
export function requireDep(name) {
  const dir = process.env.E2E_NODE_MODULES;
  const from = dir ? path.join(path.resolve(dir), 'noop.js') : import.meta.url;
  return createRequire(from)(name);
}

/** Every child started here; stopAll() ends those still running. */
const children = new Set();

/**
 * Polls `cond` (sync or async) until it returns a truthy value or the deadline passes.
 * @template T
 * @param {() => T | Promise<T>} cond
 * @param {{timeoutMs?: number, intervalMs?: number, what?: string}} [opts]
 * @returns {Promise<T>}
 */
export async function waitFor(cond, { timeoutMs = 10000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A port the OS reports free on 127.0.0.1 (for programs that cannot bind port 0 and say so). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

class Child {
  constructor(name, cmd, args, opts) {
    this.name = name;
    this.output = '';
    this.exitCode = undefined;
    this.proc = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    const add = (d) => {
      this.output += d.toString();
    };
    this.proc.stdout.on('data', add);
    this.proc.stderr.on('data', add);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitCode = code ?? 128 + (os.constants.signals[signal] ?? 0);
        children.delete(this);
        resolve(this.exitCode);
      });
      this.proc.once('error', (err) => {
        this.output += `spawn error: ${err.message}\n`;
        this.exitCode = 127;
        children.delete(this);
        resolve(127);
      });
    });
    children.add(this);
  }

  get running() {
    return this.exitCode === undefined;
  }

  /** Sends `signal`, waits up to timeoutMs for the exit, then SIGKILL. Returns the exit code. */
  async stop(signal = 'SIGTERM', timeoutMs = 8000) {
    if (!this.running) return this.exitCode;
    this.proc.kill(signal);
    const t = setTimeout(() => this.running && this.proc.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

/**
 * Starts signal-server on 127.0.0.1 with WS_PORT=0 (the OS picks the port) in a scratch
 * directory (so no stray .env is read); resolves once its start-up log names the port.
 * @param {{bin: string, env?: Record<string, string>, port?: number, name?: string}} o
 */
export async function startServer({ bin, env = {}, port = 0, name = 'signal-server' }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'signal-e2e-'));
  const child = new Child(name, bin, [], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      WS_PORT: String(port),
      LOG_LEVEL: 'info',
      THREADS: '1',
      RATE_LIMIT_CONN_PER_10S: '1000',
      ...env,
    },
  });
  child.exited.then(() => rmSync(dir, { recursive: true, force: true }));
  const m = await waitFor(() => child.output.match(/"port":(\d+)/) || !child.running, {
    timeoutMs: 15000,
    what: `${name} to listen`,
  });
  if (!child.running || !Array.isArray(m)) {
    throw new Error(`${name} did not start (exit ${child.exitCode}):\n${child.output}`);
  }
  child.port = Number(m[1]);
  child.url = `ws://127.0.0.1:${child.port}`;
  return child;
}

/**
 * Starts redis-server on a free loopback port, without persistence.
 * @param {{bin?: string}} [o]
 */
export async function startRedis({ bin = 'redis-server' } = {}) {
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    const child = new Child('redis-server', bin, [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    ], { cwd: os.tmpdir(), env: { PATH: process.env.PATH } });
    try {
      await waitFor(() => /Ready to accept connections/.test(child.output) || !child.running, {
        timeoutMs: 10000,
        what: 'redis-server to start',
      });
    } catch (err) {
      await child.stop('SIGKILL');
      throw err;
    }
    if (child.running) {
      child.port = port;
      child.url = `redis://127.0.0.1:${port}`;
      return child;
    }
    // Another process took the port between the probe and the bind: try another one.
    if (tries >= 4) throw new Error(`redis-server did not start:\n${child.output}`);
  }
}

/** Whether udp4 `port` on 127.0.0.1 can be bound now. */
function udpFree(port) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', () => resolve(false));
    sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)));
  });
}

/** A loopback port free for both TCP and UDP (coturn listens on both). */
async function freeTcpUdpPort() {
  for (let tries = 0; tries < 20; tries++) {
    const port = await freePort();
    if (await udpFree(port)) return port;
  }
  throw new Error('no port free for both TCP and UDP on 127.0.0.1');
}

/**
 * `count` consecutive UDP ports free on 127.0.0.1, above the usual ephemeral range (32768-60999)
 * so that sockets the browsers open meanwhile do not land in it. Returns the first.
 */
async function freeUdpRange(count) {
  for (let tries = 0; tries < 50; tries++) {
    const base = 61000 + Math.floor(Math.random() * (65535 - 61000 - count));
    const free = await Promise.all(Array.from({ length: count }, (_, i) => udpFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free UDP ports above 61000 on 127.0.0.1`);
}

/**
 * Resolves true when a STUN Binding request (RFC 5389) to udp 127.0.0.1:port is answered
 * within `timeoutMs`, else false.
 */
export function stunAnswers(port, timeoutMs = 250) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const req = Buffer.alloc(20);
    req.writeUInt16BE(0x0001, 0); // Binding request, no attributes
    req.writeUInt32BE(0x2112a442, 4); // magic cookie
    randomFillSync(req, 8, 12); // transaction id
    let timer;
    const done = (ok) => {
      clearTimeout(timer);
      sock.close();
      resolve(ok);
    };
    timer = setTimeout(() => done(false), timeoutMs);
    sock.on('message', (msg) => done(msg.length >= 20 && msg.readUInt16BE(0) === 0x0101));
    sock.on('error', () => done(false));
    sock.send(req, port, '127.0.0.1');
  });
}

/**
 * Starts coturn (Debian's `turnserver`) on loopback only, on free ports, with the TURN REST API
 * scheme signal-server's credentials follow (use-auth-secret: username EXPIRY:ID, password
 * base64(HMAC-SHA1(secret, username))); every one of `secrets` is accepted, as during a
 * rotation. Plain UDP/TCP only (no TLS), no admin CLI, and loopback peers allowed (coturn refuses
 * relaying to 127.0.0.0/8 by default; here both ends' relayed addresses are on it). Its own
 * configuration files are not read (-n). Resolves once it answers a STUN Binding request.
 * @param {{bin?: string, secrets: string[], realm?: string, relayPorts?: number}} o
 */
export async function startCoturn({ bin = 'turnserver', secrets, realm = 'signal-e2e', relayPorts = 20 }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'signal-coturn-'));
  const port = await freeTcpUdpPort();
  const minPort = await freeUdpRange(relayPorts);
  const args = [
    '-n',
    '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    `--min-port=${minPort}`, `--max-port=${minPort + relayPorts - 1}`,
    '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers', '--no-software-attribute',
    `--realm=${realm}`, '--fingerprint', '--use-auth-secret',
    ...secrets.map((s) => `--static-auth-secret=${s}`),
    '--verbose', '--log-file=stdout', '--simple-log', `--pidfile=${path.join(dir, 'turnserver.pid')}`,
    `--db=${path.join(dir, 'turndb')}`,
  ];
  const child = new Child('coturn', bin, args, { cwd: dir, env: { PATH: process.env.PATH } });
  child.exited.then(() => rmSync(dir, { recursive: true, force: true }));
  try {
    await waitFor(async () => !child.running || (await stunAnswers(port)), {
      timeoutMs: 10000,
      intervalMs: 50,
      what: 'coturn to answer STUN',
    });
  } catch (err) {
    await child.stop('SIGKILL');
    throw new Error(`${err.message}\n${child.output}`);
  }
  if (!child.running) {
    throw new Error(`coturn (${bin}) did not start (exit ${child.exitCode}); install coturn ` +
      `(scripts/deps.sh test):\n${child.output}`);
  }
  child.port = port;
  child.relayPorts = [minPort, minPort + relayPorts - 1];
  return child;
}

/** Ends every child process still running (SIGTERM, then SIGKILL). */
export async function stopAll() {
  await Promise.all([...children].map((c) => c.stop('SIGTERM', 5000)));
}

/** Median of a list of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export { Child };

// A test that throws or is interrupted still leaves no process behind.
process.on('exit', () => {
  for (const c of children) c.proc.kill('SIGKILL');
});
