// SignalingClient against the real signal-server binary (SIGNAL_SERVER_BIN), started on
// ports the OS picks. Skipped when SIGNAL_SERVER_BIN is not set or there is no WebSocket
// (Node 20: run with --experimental-websocket, as `npm test` and ctest do).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { SignalingClient } from '../signaling-client.js';
import { startCutProxy } from '../../../tests/e2e/cut-proxy.mjs';
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
    'peer-disconnected', 'schema-error', 'close', 'reconnecting', 'message', 'resumed',
    'session-lost', 'peer-suspended', 'peer-resumed']) {
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

// --- session resume (PROTOCOL.md section 8) through a proxy the test cuts like a Wi-Fi drop ---

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** A numbered message; `tag` is unique text, found in the raw bytes the proxy holds. */
const numbered = (c, from, n) => c.sendControl('msg', { from, n, tag: `<${from}${n}>` });
/** The numbers of the 'msg' controls from `from` that reached the app, in arrival order. */
const numbers = (log, from) =>
  log.of('control').filter((m) => m.action === 'msg' && m.payload.from === from).map((m) => m.payload.n);
/** The seq of every message the app saw (the server's welcome and resumed carry none). */
const seqs = (log) => log.of('message').map((m) => m.seq).filter((s) => s !== undefined);

// Node 20's own WebSocket (undici 6) fires `error` but never `close` when a connection cannot be
// opened (nodejs/undici#3546); the client takes such a socket as closed (1006) after a grace of
// 1 s (ERROR_CLOSE_GRACE_MS), so a refused reconnect is followed by the next one.
test('a reconnect attempt that is refused is followed by the next one (Node\'s own WebSocket)', { skip }, async (t) => {
  const server = await startServer({ bin });
  t.after(() => server.stop());
  const proxy = await startCutProxy({ port: server.port });
  t.after(() => proxy.close());
  const a = newClient(); // globalThis.WebSocket as is
  t.after(() => a.c.close());
  await a.c.connect({ url: proxy.url, roomId: room(), events: true });
  proxy.refuse = true;
  proxy.cut();
  await waitFor(() => proxy.stats.refused >= 1, { what: 'a first attempt, refused' });
  await waitFor(() => proxy.stats.refused >= 2, { timeoutMs: 3000, what: 'a second attempt' });
  // the cut, then each refused attempt taken as closed (1006) once its grace is over
  await waitFor(() => a.log.of('close').length >= 3, { timeoutMs: 3000, what: 'both refusals taken as closes' });
  proxy.refuse = false;
  await waitFor(() => a.c.state === 'open', { timeoutMs: 5000, what: 'a back in the room' });
  const closes = a.log.of('close');
  assert.ok(closes.every((e) => e.code === 1006 && !e.wasClean && e.willReconnect), JSON.stringify(closes));
  const attempts = a.log.of('reconnecting').map((e) => e.attempt);
  assert.deepEqual(attempts, range(1, attempts.length), 'backoff counts the refused attempts');
  assert.deepEqual(a.log.of('open').at(-1), { reconnected: true });
  assert.equal(a.log.of('welcome').length, 2);
});

/** a through a cuttable proxy, b direct, both resumable, in one room; a joined first. */
async function resumablePair(t, env = {}) {
  const server = await startServer({ bin, env });
  t.after(() => server.stop());
  const proxy = await startCutProxy({ port: server.port });
  t.after(() => proxy.close());
  const roomId = room();
  const a = newClient();
  const b = newClient();
  t.after(() => [a, b].forEach((x) => x.c.close()));
  await a.c.connect({ url: proxy.url, roomId, resume: true });
  await b.c.connect({ url: server.url, roomId, resume: true });
  await waitFor(() => a.log.of('peer-joined').length === 1, { what: 'peer-joined at a' });
  assert.ok(a.c.session?.resumeToken, 'the welcome carries a resume token');
  return { server, proxy, a, b };
}

test('resume after a network cut: what either side sent around the cut arrives exactly once, in order', { skip }, async (t) => {
  const { proxy, a, b } = await resumablePair(t);
  const before = { ...a.c.session, clientId: a.c.welcome.clientId };

  for (const n of range(1, 5)) {
    numbered(a.c, 'a', n);
    numbered(b.c, 'b', n);
  }
  for (const n of range(6, 8)) numbered(a.c, 'a', n);
  await waitFor(() => numbers(b.log, 'a').length === 8 && numbers(a.log, 'b').length === 5, {
    what: 'a1..a8 at b and b1..b5 at a',
  });

  // The network stalls: what is sent now stays in the proxy and is lost with the cut. a's 9
  // and 10 never reach the server; b's 6 and 7 are written to a's socket but never arrive.
  proxy.hold({ up: true, down: true });
  numbered(a.c, 'a', 9);
  numbered(a.c, 'a', 10);
  numbered(b.c, 'b', 6);
  numbered(b.c, 'b', 7);
  await waitFor(() => proxy.held().down.includes('<b7>'), { what: "b's 6 and 7 written towards a" });
  await waitFor(() => proxy.held().up.length > 0, { what: "a's frames in the proxy" });
  proxy.refuse = true;
  assert.equal(proxy.cut(), 1);

  // While a is away: the server suspends it (b is told) and keeps b's 8..10 for it; a queues 11.
  await waitFor(() => b.log.of('peer-suspended').length === 1, { what: 'peer-suspended at b' });
  assert.equal(b.log.of('peer-suspended')[0].clientId, before.clientId);
  await waitFor(() => a.c.state === 'reconnecting', { what: 'a to notice the cut' });
  for (const n of range(8, 10)) numbered(b.c, 'b', n);
  assert.equal(numbered(a.c, 'a', 11), 'queued');
  await waitFor(() => proxy.stats.refused >= 1, { what: 'a reconnect refused while the network is down' });
  proxy.refuse = false;

  await waitFor(
    () => a.log.of('open').length === 2 && numbers(b.log, 'a').length >= 11 && numbers(a.log, 'b').length >= 10,
    { what: 'a resumed, a1..a11 at b, b1..b10 at a' },
  );
  assert.deepEqual(a.log.of('open')[1], { reconnected: true, resumed: true });
  const resumed = a.log.of('resumed');
  assert.equal(resumed.length, 1);
  assert.equal(resumed[0].recovered, true);
  assert.equal(resumed[0].received, 8, 'the server got a1..a8 (and nothing else) before the cut');
  assert.equal(a.c.session.sessionId, before.sessionId);
  assert.equal(a.c.welcome.clientId, before.clientId);
  await waitFor(() => b.log.of('peer-resumed').length === 1, { what: 'peer-resumed at b' });

  // One more each way on the resumed session, then: exactly once, in order, nothing lost.
  numbered(a.c, 'a', 12);
  numbered(b.c, 'b', 11);
  await waitFor(() => numbers(b.log, 'a').length >= 12 && numbers(a.log, 'b').length >= 11, {
    what: 'live traffic after the resume',
  });
  assert.deepEqual(numbers(b.log, 'a'), range(1, 12));
  assert.deepEqual(numbers(a.log, 'b'), range(1, 11));
  // a's seq run is gap-free across both connections (a duplicate would have been dropped by
  // the client, a hole would show here)
  assert.deepEqual(seqs(a.log), range(1, seqs(a.log).length));
  assert.deepEqual(seqs(b.log), range(1, seqs(b.log).length));
  assert.equal(a.log.of('session-lost').length, 0);
  assert.equal(a.log.of('welcome').length, 1);
  assert.equal(b.log.of('peer-disconnected').length, 0);
  assert.equal(b.log.of('peer-joined').length, 0);
});

test('resume window passed: session-lost (not-recovered), then a new session in the same room', { skip }, async (t) => {
  const { proxy, a, b } = await resumablePair(t, { RESUME_WINDOW_MS: '300' });
  const before = { ...a.c.session, clientId: a.c.welcome.clientId };
  assert.equal(before.resumeWindowMs, 300);
  numbered(a.c, 'a', 1);
  await waitFor(() => numbers(b.log, 'a').length === 1, { what: 'a1 at b' });

  proxy.refuse = true;
  assert.equal(proxy.cut(), 1);
  await waitFor(() => b.log.of('peer-suspended').length === 1, { what: 'peer-suspended at b' });
  await waitFor(() => a.c.state === 'reconnecting', { what: 'a to notice the cut' });
  assert.equal(numbered(a.c, 'a', 2), 'queued'); // belongs to the old session: dropped later
  // The network stays down until the window has passed: the server releases the seat.
  await waitFor(() => b.log.of('peer-disconnected').length === 1, {
    timeoutMs: 5000,
    what: 'peer-disconnected at b when the resume window passed',
  });
  await waitFor(() => proxy.stats.refused >= 1, { what: 'a reconnect refused while the network is down' });
  proxy.refuse = false;

  await waitFor(() => a.log.of('session-lost').length === 1 && a.c.state === 'open', {
    what: 'session-lost at a, then admitted afresh',
  });
  assert.deepEqual(a.log.of('session-lost'), [{ reason: 'not-recovered', dropped: 1 }]);
  assert.equal(a.log.of('resumed').length, 1);
  assert.equal(a.log.of('resumed')[0].recovered, false);
  assert.deepEqual(a.log.of('open').at(-1), { reconnected: true, resumed: false });
  assert.equal(a.log.of('welcome').length, 2);
  assert.ok(a.c.session?.resumeToken, 'the new session is resumable too');
  assert.notEqual(a.c.session.sessionId, before.sessionId);
  assert.notEqual(a.c.session.resumeToken, before.resumeToken);
  assert.equal(a.c.welcome.peers, 1);

  // b sees a newcomer, and the new session carries traffic both ways.
  await waitFor(() => b.log.of('peer-joined').length === 1, { what: 'peer-joined at b' });
  assert.equal(b.log.of('peer-joined')[0].clientId, a.c.welcome.clientId);
  numbered(a.c, 'a', 3);
  numbered(b.c, 'b', 1);
  await waitFor(() => numbers(b.log, 'a').length >= 2 && numbers(a.log, 'b').length >= 1, {
    what: 'traffic in the new session',
  });
  assert.deepEqual(numbers(b.log, 'a'), [1, 3], 'the message queued for the old session was dropped');
  assert.deepEqual(numbers(a.log, 'b'), [1]);
  assert.equal(a.log.of('session-lost').length, 1);
});
