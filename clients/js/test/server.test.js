// SignalingClient against the real signal-server binary (SIGNAL_SERVER_BIN), started on
// ports the OS picks. Skipped when SIGNAL_SERVER_BIN is not set or there is no WebSocket
// (Node 20: run with --experimental-websocket, as `npm test` and ctest do).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { SignalingClient } from '../signaling-client.js';
import { startServer, stopAll, waitFor } from '../../../tests/e2e/harness.mjs';

const bin = process.env.SIGNAL_SERVER_BIN;
const skip = !bin
  ? 'SIGNAL_SERVER_BIN not set'
  : typeof globalThis.WebSocket !== 'function'
    ? 'no global WebSocket (node --experimental-websocket)'
    : false;

const FAST = { initialDelayMs: 50, maxDelayMs: 400, drainingDelayMs: 300 };
let roomSeq = 0;
const room = () => `js-${process.pid}-${++roomSeq}`;

after(stopAll);

/** Collects every event of a client, for waitFor() conditions. */
function record(client) {
  const log = [];
  for (const t of ['open', 'welcome', 'offer', 'answer', 'candidate', 'control', 'peer-joined',
    'peer-disconnected', 'schema-error', 'close', 'reconnecting']) {
    client.on(t, (ev) => log.push({ t, ev }));
  }
  log.of = (t) => log.filter((e) => e.t === t).map((e) => e.ev);
  return log;
}

function newClient(opts = {}) {
  const c = new SignalingClient({ reconnect: FAST, ...opts });
  return { c, log: record(c) };
}

test('two clients relay every message type through the server', { skip }, async (t) => {
  const server = await startServer({ bin });
  t.after(() => server.stop());
  const roomId = room();
  const a = newClient();
  const b = newClient();
  t.after(() => {
    a.c.close();
    b.c.close();
  });
  await a.c.connect({ url: server.url, roomId, events: true });
  assert.equal(a.c.welcome.peers, 0);
  assert.equal(a.c.welcome.roomId, roomId);

  // queued before b is even connecting: must arrive at a once b is admitted
  b.c.sendOffer('v=0 queued offer');
  await b.c.connect({ url: server.url, roomId, events: true });
  assert.equal(b.c.welcome.peers, 1);
  await waitFor(() => a.log.of('peer-joined').length === 1, { what: 'peer-joined at a' });
  assert.equal(a.log.of('peer-joined')[0].clientId, b.c.welcome.clientId);
  await waitFor(() => a.log.of('offer').length === 1, { what: 'queued offer at a' });
  assert.equal(a.log.of('offer')[0].sdp, 'v=0 queued offer');

  a.c.sendAnswer('v=0 answer');
  a.c.sendCandidate({ candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 });
  a.c.sendControl('ping', { n: 1 });
  await waitFor(() => b.log.of('control').length === 1, { what: 'control at b' });
  assert.deepEqual(b.log.of('answer'), [{ type: 'answer', sdp: 'v=0 answer' }]);
  assert.deepEqual(b.log.of('candidate'), [
    { type: 'candidate', candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 },
  ]);
  assert.deepEqual(b.log.of('control'), [{ type: 'control', action: 'ping', payload: { n: 1 } }]);

  // the server refuses an empty sdp and tells the sender alone
  b.c.send({ type: 'offer', sdp: '' });
  await waitFor(() => b.log.of('schema-error').length === 1, { what: 'schema-error at b' });
  assert.equal(a.log.of('offer').length, 1);

  b.c.close();
  await waitFor(() => a.log.of('peer-disconnected').length === 1, { what: 'peer-disconnected at a' });
});

test('"Room is full" is final: connect() rejects and no retry follows', { skip }, async (t) => {
  const server = await startServer({ bin });
  t.after(() => server.stop());
  const roomId = room();
  const a = newClient();
  const b = newClient();
  const c = newClient();
  t.after(() => [a, b, c].forEach((x) => x.c.close()));
  await a.c.connect({ url: server.url, roomId, events: true });
  await b.c.connect({ url: server.url, roomId, events: true });
  await assert.rejects(c.c.connect({ url: server.url, roomId, events: true }),
    (err) => err.code === 1000 && err.reason === 'Room is full');
  assert.equal(c.c.state, 'closed');
  assert.equal(c.log.of('reconnecting').length, 0);
  assert.equal(a.log.of('peer-joined').length, 1);
});

test('1008 (invalid roomId) is final', { skip }, async (t) => {
  const server = await startServer({ bin });
  t.after(() => server.stop());
  const x = newClient();
  await assert.rejects(x.c.connect({ url: server.url, roomId: 'not a valid room!', events: true }),
    (err) => err.code === 1008 && err.reason === 'Invalid roomId');
  assert.equal(x.log.of('reconnecting').length, 0);
  assert.equal(x.c.state, 'closed');
});

test('1013 (server at capacity) is retried with backoff until a seat frees up', { skip }, async (t) => {
  const server = await startServer({ bin, env: { MAX_CONNECTIONS: '1' } });
  t.after(() => server.stop());
  const roomId = room();
  const a = newClient();
  const b = newClient();
  t.after(() => [a, b].forEach((x) => x.c.close()));
  await a.c.connect({ url: server.url, roomId, events: true });
  const bJoined = b.c.connect({ url: server.url, roomId, events: true });
  await waitFor(() => b.log.of('reconnecting').length >= 2, { what: 'b to retry twice' });
  const r = b.log.of('reconnecting');
  assert.equal(r[0].code, 1013);
  assert.equal(r[0].reason, 'Server at capacity');
  assert.equal(r[1].attempt, 2);
  a.c.close();
  await bJoined;
  assert.equal(b.c.state, 'open');
});

test('a draining server (1012) is left and the client comes back when a server is there again', { skip }, async (t) => {
  const first = await startServer({ bin, name: 'draining-server' });
  t.after(() => first.stop('SIGKILL'));
  const roomId = room();
  const a = newClient();
  const b = newClient();
  t.after(() => [a, b].forEach((x) => x.c.close()));
  await a.c.connect({ url: first.url, roomId, events: true });
  await b.c.connect({ url: first.url, roomId, events: true });

  assert.equal(await first.stop('SIGTERM'), 0);
  for (const x of [a, b]) {
    await waitFor(() => x.log.of('reconnecting').length >= 1, { what: 'reconnect after drain' });
    const close = x.log.of('close')[0];
    assert.equal(close.code, 1012);
    assert.equal(close.reason, 'Server draining');
    assert.equal(close.willReconnect, true);
    assert.ok(close.delayMs >= FAST.drainingDelayMs, `delay ${close.delayMs} honours draining`);
  }
  a.c.sendControl('sent-while-away');

  // The replacement takes the same address (as a restarted instance or a load balancer would).
  const second = await waitFor(async () => {
    try {
      return await startServer({ bin, port: first.port, name: 'replacement-server' });
    } catch {
      return null; // the port can linger for a moment after the exit
    }
  }, { timeoutMs: 15000, intervalMs: 200, what: 'replacement server on the same port' });
  t.after(() => second.stop());

  await waitFor(() => a.c.state === 'open' && b.c.state === 'open', { timeoutMs: 15000, what: 'both back' });
  assert.deepEqual(a.log.of('open').at(-1), { reconnected: true });
  // whichever came back first had the queued message relayed only if the other was there:
  // send a fresh one too, which must arrive once both are in.
  a.c.sendControl('after-return');
  await waitFor(() => b.log.of('control').some((m) => m.action === 'after-return'), {
    what: 'message relayed after reconnect',
  });
});
