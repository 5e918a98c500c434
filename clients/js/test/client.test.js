// Unit tests of SignalingClient against a scripted WebSocket (no network, no server).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  SignalingClient,
  SignalingCloseError,
  backoffDelay,
  buildUrl,
} from '../signaling-client.js';

/** A WebSocket stand-in the test drives: open(), message(), serverClose(), error(). */
class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  message(obj) {
    this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
  }
  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }
  /** A failure as Node 20's own WebSocket reports one that never opened: error, no close. */
  error() {
    this.onerror?.({ type: 'error' });
  }
  static last() {
    return FakeWebSocket.instances.at(-1);
  }
  static reset() {
    FakeWebSocket.instances = [];
  }
}

const FAST = { initialDelayMs: 5, maxDelayMs: 40, drainingDelayMs: 30, stableAfterMs: 10000 };
const half = () => 0.5;

function client(opts = {}) {
  FakeWebSocket.reset();
  return new SignalingClient({ WebSocket: FakeWebSocket, reconnect: FAST, random: half, ...opts });
}

function until(cond, timeoutMs = 2000) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error('timed out'));
      setTimeout(tick, 2);
    };
    tick();
  });
}

test('buildUrl puts roomId, token and events in the query and keeps the rest', () => {
  const u = new URL(buildUrl({ url: 'ws://h:1/sig?x=1', roomId: 'r 1', token: 't.k', events: true }));
  assert.equal(u.pathname, '/sig');
  assert.equal(u.searchParams.get('x'), '1');
  assert.equal(u.searchParams.get('roomId'), 'r 1');
  assert.equal(u.searchParams.get('token'), 't.k');
  assert.equal(u.searchParams.get('events'), '1');
  const plain = new URL(buildUrl({ url: 'ws://h:1', roomId: 'r' }));
  assert.equal(plain.searchParams.has('events'), false);
  assert.equal(plain.searchParams.has('token'), false);
});

test('backoff grows exponentially, is capped, jittered within [base/2, base], and waits longer when draining', () => {
  const r = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, drainingDelayMs: 700 };
  assert.equal(backoffDelay(1, 1006, r, () => 0), 50);
  assert.equal(backoffDelay(1, 1006, r, () => 1), 100);
  assert.equal(backoffDelay(3, 1006, r, () => 1), 400);
  assert.equal(backoffDelay(10, 1006, r, () => 1), 1000);
  assert.equal(backoffDelay(10, 1006, r, () => 0), 500);
  assert.equal(backoffDelay(1, 1012, r, () => 0), 700);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(2, 1013, r);
    assert.ok(d >= 100 && d <= 200, `delay ${d}`);
  }
});

test('messages sent before open are queued and flushed in order on open', async () => {
  const c = client();
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  assert.equal(c.sendOffer('v=0 offer'), 'queued');
  c.sendCandidate({ candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 });
  c.sendControl('hello', { n: 1 });
  assert.equal(c.queued, 3);
  FakeWebSocket.last().open();
  await p;
  assert.equal(c.state, 'open');
  assert.deepEqual(FakeWebSocket.last().sent, [
    { type: 'offer', sdp: 'v=0 offer' },
    { type: 'candidate', candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 },
    { type: 'control', action: 'hello', payload: { n: 1 } },
  ]);
  c.sendAnswer('v=0 answer');
  assert.deepEqual(FakeWebSocket.last().sent.at(-1), { type: 'answer', sdp: 'v=0 answer' });
  c.close();
});

test('with events=1 the queue waits for the welcome (admission), not for open', async () => {
  const c = client();
  const welcomes = [];
  c.on('welcome', (w) => welcomes.push(w));
  const p = c.connect({ url: 'ws://x', roomId: 'r', events: true });
  c.sendControl('early');
  const ws = FakeWebSocket.last();
  assert.match(ws.url, /events=1/);
  ws.open();
  assert.equal(ws.sent.length, 0);
  assert.equal(c.state, 'connecting');
  ws.message({ type: 'control', action: 'welcome', payload: { clientId: 'a', roomId: 'r', peers: 1 } });
  await p;
  assert.deepEqual(ws.sent, [{ type: 'control', action: 'early' }]);
  assert.deepEqual(welcomes, [{ clientId: 'a', roomId: 'r', peers: 1 }]);
  assert.deepEqual(c.welcome, { clientId: 'a', roomId: 'r', peers: 1 });
  c.close();
});

test('each message type reaches its own event; junk is ignored', async () => {
  const c = client();
  const got = [];
  for (const t of ['offer', 'answer', 'candidate', 'control', 'peer-joined', 'peer-disconnected', 'schema-error']) {
    c.on(t, (ev) => got.push([t, ev]));
  }
  let all = 0;
  c.on('message', () => all++);
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  const ws = FakeWebSocket.last();
  ws.open();
  await p;
  ws.message({ type: 'offer', sdp: 'o' });
  ws.message({ type: 'answer', sdp: 'a' });
  ws.message({ type: 'candidate', candidate: 'c', sdpMid: null, sdpMLineIndex: null });
  ws.message({ type: 'control', action: 'mute', payload: true });
  ws.message({ type: 'control', action: 'peer-joined', payload: { clientId: 'b' } });
  ws.message({ type: 'peer-disconnected' });
  ws.message({ type: 'control', action: 'schema-error' });
  ws.message('not json');
  ws.message('[1,2]');
  ws.message({ type: 'unknown' });
  assert.deepEqual(got, [
    ['offer', { type: 'offer', sdp: 'o' }],
    ['answer', { type: 'answer', sdp: 'a' }],
    ['candidate', { type: 'candidate', candidate: 'c', sdpMid: null, sdpMLineIndex: null }],
    ['control', { type: 'control', action: 'mute', payload: true }],
    ['peer-joined', { clientId: 'b' }],
    ['peer-disconnected', { type: 'peer-disconnected' }],
    ['schema-error', { type: 'control', action: 'schema-error' }],
  ]);
  assert.equal(all, 8);
  c.close();
});

for (const code of [1006, 1011, 1012, 1013]) {
  test(`close ${code} reconnects with backoff and flushes what was queued meanwhile`, async () => {
    const c = client();
    const closes = [];
    const reconnects = [];
    c.on('close', (e) => closes.push(e));
    c.on('reconnecting', (e) => reconnects.push(e));
    const opens = [];
    c.on('open', (e) => opens.push(e));
    const p = c.connect({ url: 'ws://x', roomId: 'r' });
    FakeWebSocket.last().open();
    await p;
    FakeWebSocket.last().serverClose(code, 'bye');
    assert.equal(c.state, 'reconnecting');
    c.sendControl('while-away');
    assert.equal(closes[0].willReconnect, true);
    // attempt 1, random 0.5: 0.75 * initialDelay, or the draining floor for 1012
    const expected = code === 1012 ? FAST.drainingDelayMs : Math.round(FAST.initialDelayMs * 0.75);
    assert.equal(reconnects[0].delayMs, expected);
    assert.equal(reconnects[0].attempt, 1);
    await until(() => FakeWebSocket.instances.length === 2);
    // a second failure before admission doubles the delay
    FakeWebSocket.last().serverClose(code, 'again');
    const second = code === 1012 ? FAST.drainingDelayMs : Math.round(FAST.initialDelayMs * 2 * 0.75);
    assert.equal(reconnects[1].delayMs, second);
    await until(() => FakeWebSocket.instances.length === 3);
    FakeWebSocket.last().open();
    assert.equal(c.state, 'open');
    assert.deepEqual(opens, [{ reconnected: false }, { reconnected: true }]);
    assert.deepEqual(FakeWebSocket.last().sent, [{ type: 'control', action: 'while-away' }]);
    c.close();
  });
}

test('1008 is final: no reconnect, connect() rejects with the code and reason', async () => {
  const c = client();
  const closes = [];
  c.on('close', (e) => closes.push(e));
  // events=1: the refusal comes after the upgrade, and no welcome came, so connect() rejects
  const p = c.connect({ url: 'ws://x', roomId: 'r', events: true });
  c.sendControl('dropped');
  const ws = FakeWebSocket.last();
  ws.open();
  ws.serverClose(1008, 'Unauthorized');
  await assert.rejects(p, (err) => err instanceof SignalingCloseError && err.code === 1008 && err.reason === 'Unauthorized');
  assert.equal(c.state, 'closed');
  assert.equal(c.queued, 0);
  assert.deepEqual(closes, [{ code: 1008, reason: 'Unauthorized', wasClean: true, willReconnect: false }]);
  await new Promise((r) => setTimeout(r, 3 * FAST.maxDelayMs));
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(c.send({ type: 'control', action: 'late' }), 'dropped');
});

test('without events=1, open counts as admitted; a refusal right after it still closes for good', async () => {
  const c = client();
  const closes = [];
  c.on('close', (e) => closes.push(e));
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  FakeWebSocket.last().open();
  await p;
  FakeWebSocket.last().serverClose(1008, 'Invalid roomId');
  assert.equal(c.state, 'closed');
  assert.equal(closes[0].willReconnect, false);
  await new Promise((r) => setTimeout(r, 3 * FAST.maxDelayMs));
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('"Room is full" (1000) is final, even after having been in the room', async () => {
  const c = client();
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  FakeWebSocket.last().open();
  await p;
  FakeWebSocket.last().serverClose(1000, 'Room is full');
  assert.equal(c.state, 'closed');
  await new Promise((r) => setTimeout(r, 3 * FAST.maxDelayMs));
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('maxAttempts gives up and rejects connect()', async () => {
  const c = client({ reconnect: { ...FAST, maxAttempts: 2 } });
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  FakeWebSocket.last().serverClose(1006);
  await until(() => FakeWebSocket.instances.length === 2);
  FakeWebSocket.last().serverClose(1006);
  await until(() => FakeWebSocket.instances.length === 3);
  FakeWebSocket.last().serverClose(1006);
  await assert.rejects(p, (err) => err.code === 1006);
  assert.equal(c.state, 'closed');
});

test('reconnect: false never reconnects', async () => {
  const c = client({ reconnect: false });
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  FakeWebSocket.last().serverClose(1012, 'Server draining');
  await assert.rejects(p, (err) => err.code === 1012);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('close() cancels a scheduled reconnect', async () => {
  const c = client();
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  FakeWebSocket.last().serverClose(1013, 'Rate limited');
  assert.equal(c.state, 'reconnecting');
  c.close();
  await assert.rejects(p, SignalingCloseError);
  await new Promise((r) => setTimeout(r, 3 * FAST.maxDelayMs));
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(c.state, 'closed');
});

test('close() sends a normal close and stops', async () => {
  const c = client();
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  const ws = FakeWebSocket.last();
  ws.open();
  await p;
  c.close();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: '' });
  assert.equal(c.state, 'closed');
});

test('a connection that stayed open resets the backoff', async () => {
  const c = client({ reconnect: { ...FAST, stableAfterMs: 20 } });
  const delays = [];
  c.on('reconnecting', (e) => delays.push(e.attempt));
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  FakeWebSocket.last().serverClose(1006);
  await until(() => FakeWebSocket.instances.length === 2);
  FakeWebSocket.last().open();
  await p;
  await new Promise((r) => setTimeout(r, 40));
  FakeWebSocket.last().serverClose(1006);
  assert.deepEqual(delays, [1, 1]);
  c.close();
});

test('queue overflow policies: drop-oldest (default), drop-newest, throw', () => {
  const a = client({ queueLimit: 2 });
  const dropped = [];
  a.on('queue-overflow', (e) => dropped.push(e.dropped.action));
  a.sendControl('1');
  a.sendControl('2');
  a.sendControl('3');
  assert.deepEqual(dropped, ['1']);
  assert.deepEqual(a._queue.map((m) => m.action), ['2', '3']);

  const b = client({ queueLimit: 2, queueOverflow: 'drop-newest' });
  const droppedB = [];
  b.on('queue-overflow', (e) => droppedB.push(e.dropped.action));
  b.sendControl('1');
  b.sendControl('2');
  assert.equal(b.send({ type: 'control', action: '3' }), 'dropped');
  assert.deepEqual(droppedB, ['3']);
  assert.deepEqual(b._queue.map((m) => m.action), ['1', '2']);

  const t = client({ queueLimit: 1, queueOverflow: 'throw' });
  t.sendControl('1');
  assert.throws(() => t.sendControl('2'), RangeError);
});

test('invalid arguments are refused before anything is sent', async () => {
  const c = client();
  assert.throws(() => c.sendOffer(''), TypeError);
  assert.throws(() => c.sendAnswer(undefined), TypeError);
  assert.throws(() => c.sendCandidate({ candidate: '' }), TypeError);
  assert.throws(() => c.sendControl(''), TypeError);
  await assert.rejects(c.connect({ url: 'ws://x' }), TypeError);
  assert.throws(() => new SignalingClient({ WebSocket: 42 }), TypeError);
});

test('on() returns an unsubscribe; once() fires once; a throwing listener does not break others', async () => {
  const errors = [];
  const c = client({ onListenerError: (err, type) => errors.push(`${type}: ${err.message}`) });
  const got = [];
  const off = c.on('state', (s) => got.push(`a:${s}`));
  c.once('state', (s) => got.push(`b:${s}`));
  c.on('state', () => {
    throw new Error('listener bug');
  });
  c.on('state', (s) => got.push(`c:${s}`));
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  off();
  FakeWebSocket.last().open();
  await p;
  assert.deepEqual(got, ['a:connecting', 'b:connecting', 'c:connecting', 'c:open']);
  assert.deepEqual(errors, ['state: listener bug', 'state: listener bug']);
  c.close();
});

// Node 20's built-in WebSocket (undici 6, nodejs/undici#3546) fires `error` but never `close`
// when the connection cannot be opened; the client must not wait for that close for good.
const GRACE_MS = 1000; // ERROR_CLOSE_GRACE_MS in signaling-client.js

/** Every close, reconnecting and state event, in order, as [type, payload]. */
function recordCloses(c) {
  const log = [];
  for (const t of ['close', 'reconnecting', 'open']) c.on(t, (ev) => log.push([t, ev]));
  log.of = (t) => log.filter((e) => e[0] === t).map((e) => e[1]);
  return log;
}

test('error without close while connecting counts as 1006 after a grace; a late close is ignored', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const c = client();
  const log = recordCloses(c);
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  c.sendControl('queued');
  const first = FakeWebSocket.last();
  first.error();
  t.mock.timers.tick(GRACE_MS - 1);
  assert.equal(c.state, 'connecting', 'a close may still follow the error');
  assert.equal(log.length, 0);
  t.mock.timers.tick(1);
  assert.deepEqual([...log], [
    ['close', { code: 1006, reason: '', wasClean: false, willReconnect: true, delayMs: 4 }],
    ['reconnecting', { attempt: 1, delayMs: 4, code: 1006, reason: '' }],
  ]);
  assert.equal(c.state, 'reconnecting');
  t.mock.timers.tick(4);
  assert.equal(FakeWebSocket.instances.length, 2);
  const second = FakeWebSocket.last();

  // The first socket's own close, long overdue: neither reported nor acted on again, even
  // while the second socket is connecting. Nor is another error from it.
  first.serverClose(1006);
  first.error();
  t.mock.timers.tick(5 * GRACE_MS);
  assert.equal(log.length, 2);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(c.state, 'connecting', 'never admitted yet: the retries of connect() are connecting');

  // The next attempt fails the same way: backoff goes on (attempt 2), then one opens.
  second.error();
  second.error(); // a second error does not arm a second close
  t.mock.timers.tick(GRACE_MS);
  assert.deepEqual(log.of('reconnecting').at(-1), { attempt: 2, delayMs: 8, code: 1006, reason: '' });
  t.mock.timers.tick(8);
  assert.equal(FakeWebSocket.instances.length, 3);
  t.mock.timers.tick(5 * GRACE_MS);
  assert.equal(log.of('close').length, 2);
  FakeWebSocket.last().open();
  await p;
  assert.equal(c.state, 'open');
  assert.deepEqual(log.of('open'), [{ reconnected: false }]);
  assert.deepEqual(FakeWebSocket.last().sent, [{ type: 'control', action: 'queued' }]);
  c.close();
});

test('error then close (browsers, ws): handled once, as before, with the close\'s own code', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const c = client();
  const log = recordCloses(c);
  c.connect({ url: 'ws://x', roomId: 'r' }).catch(() => {});
  const ws = FakeWebSocket.last();
  ws.error();
  ws.serverClose(1006);
  assert.deepEqual(log.of('close'), [{ code: 1006, reason: '', wasClean: false, willReconnect: true, delayMs: 4 }]);
  t.mock.timers.tick(4);
  assert.equal(FakeWebSocket.instances.length, 2);
  t.mock.timers.tick(5 * GRACE_MS);
  assert.equal(log.of('close').length, 1, 'no second close from the grace timer');
  assert.equal(FakeWebSocket.instances.length, 2);

  // A close later than the error but within the grace: still the close, with its own code.
  FakeWebSocket.last().error();
  t.mock.timers.tick(GRACE_MS / 2);
  FakeWebSocket.last().serverClose(1013, 'Try again');
  t.mock.timers.tick(5 * GRACE_MS);
  assert.deepEqual(log.of('close').slice(1), [
    { code: 1013, reason: 'Try again', wasClean: true, willReconnect: true, delayMs: 8 },
  ]);
  assert.equal(FakeWebSocket.instances.length, 3);
  c.close();
});

test('an error on an open socket waits for its close; close() during the grace stops everything', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const c = client();
  const log = recordCloses(c);
  const p = c.connect({ url: 'ws://x', roomId: 'r' });
  const ws = FakeWebSocket.last();
  ws.open();
  await p;
  ws.error();
  t.mock.timers.tick(5 * GRACE_MS);
  assert.equal(c.state, 'open', 'an opened socket always fires its close');
  assert.equal(log.of('close').length, 0);
  ws.serverClose(1011, 'Internal error');
  assert.equal(log.of('close')[0].code, 1011);
  t.mock.timers.tick(4);
  assert.equal(FakeWebSocket.instances.length, 2);

  FakeWebSocket.last().error();
  c.close();
  assert.equal(c.state, 'closed');
  t.mock.timers.tick(5 * GRACE_MS);
  assert.deepEqual(log.of('close').slice(1), [{ code: 1000, reason: '', wasClean: true, willReconnect: false }]);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(c.state, 'closed');
});
