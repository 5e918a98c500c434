// Unit tests of session resume (the `resume` connect option, PROTOCOL.md section 8) against a
// scripted WebSocket: the test plays the server's side of the contract.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SignalingClient, buildUrl } from '../signaling-client.js';

/** A WebSocket stand-in the test drives: open(), message(), serverClose(). */
class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.query = new URL(url).searchParams;
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
  static last() {
    return FakeWebSocket.instances.at(-1);
  }
  static reset() {
    FakeWebSocket.instances = [];
  }
}

const FAST = { initialDelayMs: 5, maxDelayMs: 40, drainingDelayMs: 30, stableAfterMs: 10000 };
const URL_ = 'ws://x';

function client(opts = {}) {
  FakeWebSocket.reset();
  return new SignalingClient({ WebSocket: FakeWebSocket, reconnect: FAST, random: () => 0.5, ...opts });
}

/** Every event of interest, in order, as [type, payload]. */
function record(c) {
  const log = [];
  for (const t of ['open', 'welcome', 'resumed', 'session-lost', 'close', 'reconnecting', 'offer',
    'candidate', 'control', 'peer-joined', 'peer-suspended', 'peer-resumed', 'peer-disconnected']) {
    c.on(t, (ev) => log.push([t, ev]));
  }
  log.of = (t) => log.filter((e) => e[0] === t).map((e) => e[1]);
  return log;
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function welcome(n = 1, extra = {}) {
  return {
    type: 'control',
    action: 'welcome',
    payload: { clientId: `c${n}`, roomId: 'r', peers: 1, sessionId: `s${n}`, resumeToken: `tok${n}`,
      resumeWindowMs: 20000, ...extra },
  };
}
const resumed = (recovered, received) => ({
  type: 'control',
  action: 'resumed',
  payload: recovered ? { recovered, received } : { recovered },
});
const ctl = (action, seq) => ({ type: 'control', action, seq });

/** Connects with resume and admits the client: returns the first socket. */
async function joined(c, log, n = 1) {
  const p = c.connect({ url: URL_, roomId: 'r', resume: true });
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message(welcome(n));
  await p;
  return ws;
}

/** Drops the current socket uncleanly and waits for the client's next one. */
async function drop(code = 1006, reason = '') {
  const count = FakeWebSocket.instances.length;
  FakeWebSocket.last().serverClose(code, reason);
  await until(() => FakeWebSocket.instances.length === count + 1);
  return FakeWebSocket.last();
}

test('buildUrl: resume=1 for a new session, resume=TOKEN&lastSeq=N to resume; events=1 either way', () => {
  const fresh = new URL(buildUrl({ url: 'ws://h/?x=1', roomId: 'r', resume: true }));
  assert.equal(fresh.searchParams.get('resume'), '1');
  assert.equal(fresh.searchParams.get('events'), '1');
  assert.equal(fresh.searchParams.has('lastSeq'), false);
  assert.equal(fresh.searchParams.get('x'), '1');
  const back = new URL(
    buildUrl({ url: 'ws://h', roomId: 'r', resume: true }, { resumeToken: 'a.b/c+=', lastSeq: 7 }),
  );
  assert.equal(back.searchParams.get('resume'), 'a.b/c+=');
  assert.equal(back.searchParams.get('lastSeq'), '7');
  const plain = new URL(buildUrl({ url: 'ws://h', roomId: 'r' }, { resumeToken: 't', lastSeq: 1 }));
  assert.equal(plain.searchParams.has('resume'), false);
  assert.equal(plain.searchParams.has('lastSeq'), false);
});

test('the welcome of a resumable session stores its token; admission waits for the welcome', async () => {
  const c = client();
  const log = record(c);
  assert.equal(c.session, null);
  const p = c.connect({ url: URL_, roomId: 'r', resume: true });
  c.sendControl('early');
  const ws = FakeWebSocket.last();
  assert.equal(ws.query.get('resume'), '1');
  assert.equal(ws.query.get('events'), '1');
  ws.open();
  assert.equal(c.state, 'connecting');
  assert.deepEqual(ws.sent, []);
  ws.message(welcome());
  await p;
  assert.deepEqual(c.session, {
    sessionId: 's1', resumeToken: 'tok1', resumeWindowMs: 20000, lastSeq: 0, sent: 1,
  });
  assert.equal(c.welcome.resumeToken, 'tok1');
  assert.deepEqual(ws.sent, [{ type: 'control', action: 'early' }]);
  assert.deepEqual(log.of('open'), [{ reconnected: false, resumed: false }]);
  c.close();
});

test('lastSeq is the highest seq seen; welcome/resumed do not move it; duplicates are dropped', async () => {
  const c = client();
  const log = record(c);
  const ws = await joined(c, log);
  ws.message({ type: 'control', action: 'peer-joined', payload: { clientId: 'b' }, seq: 1 });
  ws.message({ type: 'offer', sdp: 'o', seq: 2 });
  ws.message({ type: 'control', action: 'peer-suspended', payload: { clientId: 'b' }, seq: 3 });
  ws.message({ type: 'control', action: 'peer-resumed', payload: { clientId: 'b' }, seq: 4 });
  assert.equal(c.session.lastSeq, 4);
  ws.message({ type: 'offer', sdp: 'again', seq: 2 }); // already delivered
  ws.message(ctl('mute', 5));
  ws.message({ type: 'peer-disconnected', seq: 7 }); // the highest seen, even past a gap
  assert.equal(c.session.lastSeq, 7);
  assert.deepEqual(log.of('offer'), [{ type: 'offer', sdp: 'o', seq: 2 }]);
  assert.deepEqual(log.of('peer-suspended'), [{ clientId: 'b' }]);
  assert.deepEqual(log.of('peer-resumed'), [{ clientId: 'b' }]);
  assert.deepEqual(log.of('control'), [ctl('mute', 5)]);
  assert.equal(log.of('peer-disconnected').length, 1);
  // a peer's relayed control named like the server's notices is just a control
  ws.message({ ...welcome(9), seq: 8 });
  ws.message({ ...resumed(false), seq: 9 });
  assert.equal(c.session.resumeToken, 'tok1');
  assert.equal(log.of('welcome').length, 1);
  assert.equal(log.of('resumed').length, 0);
  assert.deepEqual(log.of('control').map((m) => m.action), ['mute', 'welcome', 'resumed']);
  assert.equal(c.session.lastSeq, 9);
  c.close();
});

for (const code of [1006, 1011, 1012, 1013]) {
  test(`close ${code}: the reconnect carries the resume token and lastSeq, and keeps the welcome`, async () => {
    const c = client();
    const log = record(c);
    const ws = await joined(c, log);
    ws.message(ctl('a', 1));
    ws.message(ctl('b', 2));
    ws.serverClose(code, 'gone');
    assert.equal(log.of('close')[0].willReconnect, true);
    assert.equal(c.welcome.clientId, 'c1');
    await until(() => FakeWebSocket.instances.length === 2);
    const again = FakeWebSocket.last();
    assert.equal(again.query.get('resume'), 'tok1');
    assert.equal(again.query.get('lastSeq'), '2');
    assert.equal(again.query.get('roomId'), 'r');
    assert.equal(c.welcome.clientId, 'c1');
    // a failed attempt keeps the token: the next one asks again with the same lastSeq
    again.serverClose(1013, 'Rate limited');
    await until(() => FakeWebSocket.instances.length === 3);
    assert.equal(FakeWebSocket.last().query.get('resume'), 'tok1');
    assert.equal(FakeWebSocket.last().query.get('lastSeq'), '2');
    c.close();
  });
}

test('resumed recovered:true, received=M: exactly M+1.. re-sent once, in order, before anything new', async () => {
  const c = client();
  const log = record(c);
  const ws1 = await joined(c, log);
  for (let i = 1; i <= 5; i++) c.sendControl(`m${i}`);
  ws1.message(ctl('x', 1));
  ws1.message(ctl('y', 2));
  assert.equal(c.session.sent, 5);

  ws1.serverClose(1006);
  c.sendControl('while-away'); // queued, never written: becomes message 6
  await until(() => FakeWebSocket.instances.length === 2);
  const ws2 = FakeWebSocket.last();
  assert.equal(ws2.query.get('lastSeq'), '2');
  ws2.open();
  assert.deepEqual(ws2.sent, []); // nothing before the server says what it has
  ws2.message(resumed(true, 3));
  c.sendControl('after'); // message 7
  assert.deepEqual(ws2.sent.map((m) => m.action), ['m4', 'm5', 'while-away', 'after']);
  assert.equal(c.session.sent, 7);
  assert.deepEqual(log.of('resumed'), [{ recovered: true, received: 3 }]);
  assert.deepEqual(log.of('open').at(-1), { reconnected: true, resumed: true });
  assert.equal(log.of('session-lost').length, 0);
  assert.equal(c.state, 'open');
  // the server replays what we missed, then live traffic; nothing already seen is redelivered
  ws2.message(ctl('y', 2));
  ws2.message(ctl('z', 3));
  assert.deepEqual(log.of('control').map((m) => m.action), ['x', 'y', 'z']);
  assert.equal(c.session.lastSeq, 3);

  // counted over the whole session, across resumes: the server has 1..6, so only 7 again
  ws2.serverClose(1012, 'Server draining');
  await until(() => FakeWebSocket.instances.length === 3);
  const ws3 = FakeWebSocket.last();
  assert.equal(ws3.query.get('resume'), 'tok1');
  assert.equal(ws3.query.get('lastSeq'), '3');
  ws3.open();
  ws3.message(resumed(true, 6));
  assert.deepEqual(ws3.sent.map((m) => m.action), ['after']);

  // and when the server has everything, nothing is sent again
  await drop(1006);
  FakeWebSocket.last().open();
  FakeWebSocket.last().message(resumed(true, 7));
  assert.deepEqual(FakeWebSocket.last().sent, []);
  assert.equal(c.session.sent, 7);
  c.close();
});

test('a listener that sends on the state change cannot jump ahead of the re-sent messages', async () => {
  const c = client();
  const log = record(c);
  await joined(c, log);
  c.sendControl('m1');
  c.sendControl('m2');
  c.on('state', (s) => s === 'open' && c.sendControl('from-listener'));
  const ws = await drop();
  ws.open();
  ws.message(resumed(true, 0));
  assert.deepEqual(ws.sent.map((m) => m.action), ['m1', 'm2', 'from-listener']);
  c.close();
});

test('recovered:false: session-lost, nothing re-sent, queued messages dropped, the new welcome adopted', async () => {
  const c = client();
  const log = record(c);
  const ws1 = await joined(c, log);
  c.sendControl('old1');
  c.sendControl('old2');
  ws1.message(ctl('x', 1));
  ws1.message(ctl('y', 2));
  ws1.serverClose(1006);
  c.sendControl('stale'); // belongs to the lost negotiation
  c.on('session-lost', () => c.sendControl('renegotiate')); // the app starts over at once
  const ws2 = await until(() => FakeWebSocket.instances.length === 2).then(() => FakeWebSocket.last());
  ws2.open();
  ws2.message(resumed(false));
  assert.deepEqual(log.of('session-lost'), [{ reason: 'not-recovered', dropped: 1 }]);
  assert.equal(c.session, null);
  assert.equal(c.welcome, null);
  assert.equal(c.state, 'reconnecting'); // the new welcome admits
  assert.deepEqual(ws2.sent, []);
  ws2.message(welcome(2, { peers: 0 }));
  assert.equal(c.state, 'open');
  assert.deepEqual(ws2.sent, [{ type: 'control', action: 'renegotiate' }]);
  assert.deepEqual(c.session, {
    sessionId: 's2', resumeToken: 'tok2', resumeWindowMs: 20000, lastSeq: 0, sent: 1,
  });
  assert.deepEqual(log.of('open').at(-1), { reconnected: true, resumed: false });
  // the new session's seq starts at 1 again and is not mistaken for a duplicate
  ws2.message(ctl('fresh', 1));
  assert.deepEqual(log.of('control').map((m) => m.action), ['x', 'y', 'fresh']);
  // the next drop resumes the new session
  const ws3 = await drop();
  assert.equal(ws3.query.get('resume'), 'tok2');
  assert.equal(ws3.query.get('lastSeq'), '1');
  ws3.open();
  ws3.message(resumed(true, 0));
  assert.deepEqual(ws3.sent, [{ type: 'control', action: 'renegotiate' }]);
  c.close();
});

for (const [reason, lost] of [['Invalid resume token', 'invalid-token'], ['Invalid lastSeq', 'invalid-lastSeq']]) {
  test(`1008 ${reason} on a resume: session-lost, then a fresh resume=1 reconnect`, async () => {
    const c = client();
    const log = record(c);
    const ws1 = await joined(c, log);
    c.sendControl('old');
    ws1.message(ctl('x', 1));
    const ws2 = await drop(1006);
    c.sendControl('stale');
    ws2.open();
    ws2.serverClose(1008, reason);
    assert.deepEqual(log.of('close').at(-1), { code: 1008, reason, wasClean: true, willReconnect: true, delayMs: 8 });
    assert.deepEqual(log.of('session-lost'), [{ reason: lost, dropped: 1 }]);
    assert.equal(c.session, null);
    assert.equal(c.state, 'reconnecting');
    await until(() => FakeWebSocket.instances.length === 3);
    const ws3 = FakeWebSocket.last();
    assert.equal(ws3.query.get('resume'), '1');
    assert.equal(ws3.query.has('lastSeq'), false);
    ws3.open();
    ws3.message(welcome(2));
    assert.deepEqual(ws3.sent, []); // neither the old nor the stale message
    assert.equal(c.session.resumeToken, 'tok2');
    c.close();
  });
}

test('other 1008 refusals of a resume stay final, as without resume', async () => {
  const c = client();
  const log = record(c);
  await joined(c, log);
  const ws2 = await drop(1006);
  ws2.open();
  ws2.serverClose(1008, 'Unauthorized');
  assert.equal(c.state, 'closed');
  assert.equal(log.of('session-lost').length, 0);
  assert.equal(c.session, null);
  await sleep(3 * FAST.maxDelayMs);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test('4001 Session resumed elsewhere: no reconnect, the close is reported', async () => {
  const c = client({ reconnect: { ...FAST, retryCodes: [1006, 4001] } }); // even if asked to
  const log = record(c);
  const ws = await joined(c, log);
  ws.serverClose(4001, 'Session resumed elsewhere');
  assert.equal(c.state, 'closed');
  assert.deepEqual(log.of('close'), [
    { code: 4001, reason: 'Session resumed elsewhere', wasClean: true, willReconnect: false },
  ]);
  assert.equal(log.of('session-lost').length, 0);
  assert.equal(c.session, null);
  assert.equal(c.sendControl('late'), 'dropped');
  await sleep(3 * FAST.maxDelayMs);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('a re-send the bounded history no longer holds: leave, session-lost, join afresh', async () => {
  const c = client({ resumeHistory: 2 });
  const log = record(c);
  await joined(c, log);
  for (let i = 1; i <= 5; i++) c.sendControl(`m${i}`);
  const ws2 = await drop(1006);
  ws2.open();
  ws2.message(resumed(true, 2)); // needs m3..m5, only m4, m5 kept
  assert.deepEqual(ws2.sent, []);
  assert.deepEqual(ws2.closedWith, { code: 1000, reason: 'Session lost' }); // ends it server-side
  assert.deepEqual(log.of('session-lost'), [{ reason: 'cannot-resend', dropped: 0 }]);
  await until(() => FakeWebSocket.instances.length === 3);
  assert.equal(FakeWebSocket.last().query.get('resume'), '1');
  c.close();
});

test('a resumed that claims more than was sent is not trusted either', async () => {
  const c = client();
  const log = record(c);
  await joined(c, log);
  c.sendControl('m1');
  const ws2 = await drop(1006);
  ws2.open();
  ws2.message(resumed(true, 4));
  assert.deepEqual(log.of('session-lost'), [{ reason: 'cannot-resend', dropped: 0 }]);
  assert.deepEqual(ws2.sent, []);
  c.close();
});

test('close() ends the session: close frame, no resume on the next connect()', async () => {
  const c = client();
  const log = record(c);
  const ws = await joined(c, log);
  ws.message(ctl('x', 1));
  c.close();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: '' });
  assert.equal(c.session, null);
  const p = c.connect({ url: URL_, roomId: 'r', resume: true });
  assert.equal(FakeWebSocket.last().query.get('resume'), '1');
  FakeWebSocket.last().open();
  FakeWebSocket.last().message(welcome(2));
  await p;
  assert.equal(c.session.resumeToken, 'tok2');
  c.close();
});

test('a session-lost listener may close the client: no reconnect follows', async () => {
  const c = client();
  const log = record(c);
  await joined(c, log);
  const ws2 = await drop(1006);
  c.on('session-lost', () => c.close());
  ws2.open();
  ws2.serverClose(1008, 'Invalid resume token');
  assert.equal(c.state, 'closed');
  assert.equal(log.of('reconnecting').length, 1); // the first drop's only
  await sleep(3 * FAST.maxDelayMs);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test('a server without resume (no token in the welcome): reconnects join afresh, as before', async () => {
  const c = client();
  const log = record(c);
  const p = c.connect({ url: URL_, roomId: 'r', resume: true });
  FakeWebSocket.last().open();
  FakeWebSocket.last().message({ type: 'control', action: 'welcome', payload: { clientId: 'a', roomId: 'r', peers: 0 } });
  await p;
  assert.equal(c.session, null);
  const ws2 = await drop(1006);
  assert.equal(ws2.query.get('resume'), '1');
  ws2.open();
  ws2.message({ type: 'control', action: 'welcome', payload: { clientId: 'b', roomId: 'r', peers: 0 } });
  assert.equal(c.state, 'open');
  assert.equal(log.of('session-lost').length, 0);
  c.close();
});

test('without the resume option nothing changes: no resume query, seq ignored, nothing re-sent', async () => {
  const c = client();
  const log = record(c);
  const p = c.connect({ url: URL_, roomId: 'r', events: true });
  const ws1 = FakeWebSocket.last();
  assert.equal(ws1.query.has('resume'), false);
  ws1.open();
  ws1.message({ type: 'control', action: 'welcome', payload: { clientId: 'a', roomId: 'r', peers: 1 } });
  await p;
  c.sendControl('m1');
  ws1.message(ctl('x', 5));
  ws1.message(ctl('x', 5)); // no session: not deduplicated
  assert.equal(c.session, null);
  // peer notices reach events=1 clients whether or not they resume themselves
  ws1.message({ type: 'control', action: 'peer-suspended', payload: { clientId: 'b' } });
  const ws2 = await drop(1006);
  assert.equal(ws2.query.has('resume'), false);
  assert.equal(ws2.query.has('lastSeq'), false);
  ws2.open();
  ws2.message({ type: 'control', action: 'welcome', payload: { clientId: 'a2', roomId: 'r', peers: 1 } });
  assert.deepEqual(ws2.sent, []);
  assert.deepEqual(log.of('open'), [{ reconnected: false }, { reconnected: true }]);
  assert.equal(log.of('control').length, 2);
  assert.deepEqual(log.of('peer-suspended'), [{ clientId: 'b' }]);
  assert.equal(log.of('session-lost').length, 0);
  c.close();
});

test('iceServers: the welcome\'s, fresh ones from resumed, rtcConfiguration() puts them in', async () => {
  const turn = (n) => [
    { urls: ['stun:s:3478'] },
    { urls: ['turn:t:3478'], username: `${1000 + n}:c1`, credential: `cred${n}` },
  ];
  const c = client();
  const log = record(c);
  const ice = [];
  c.on('ice-servers', (list) => ice.push(list));
  assert.equal(c.iceServers, null);
  assert.deepEqual(c.rtcConfiguration(), { iceServers: [] });
  const p = c.connect({ url: URL_, roomId: 'r', resume: true });
  const ws1 = FakeWebSocket.last();
  ws1.open();
  let seenInWelcome = null;
  c.on('welcome', () => (seenInWelcome = c.iceServers)); // set before the welcome event
  ws1.message(welcome(1, { iceServers: turn(1) }));
  await p;
  assert.deepEqual(seenInWelcome, turn(1));
  assert.deepEqual(c.iceServers, turn(1));
  assert.deepEqual(c.rtcConfiguration({ iceTransportPolicy: 'relay', iceServers: [{ urls: 'stun:mine' }] }), {
    iceTransportPolicy: 'relay',
    iceServers: turn(1),
  });
  // recovered:true brings fresh credentials
  const ws2 = await drop();
  ws2.open();
  ws2.message({ ...resumed(true, 0), payload: { recovered: true, received: 0, iceServers: turn(2) } });
  assert.deepEqual(c.iceServers, turn(2));
  // recovered:false: the welcome that follows carries the new session's (one event, not two)
  const ws3 = await drop();
  ws3.open();
  ws3.message({ ...resumed(false), payload: { recovered: false, iceServers: turn(3) } });
  ws3.message(welcome(2, { iceServers: turn(4) }));
  assert.deepEqual(c.iceServers, turn(4));
  assert.deepEqual(ice, [turn(1), turn(2), turn(4)]);
  // a resumed without them (an older server) keeps what the client has
  const ws4 = await drop();
  ws4.open();
  ws4.message(resumed(true, 0));
  assert.deepEqual(c.iceServers, turn(4));
  // a welcome without them (a server without TURN_URLS): none, and the app's own are used
  const ws5 = await drop();
  ws5.open();
  ws5.message(resumed(false));
  ws5.message(welcome(3));
  assert.equal(c.iceServers, null);
  assert.deepEqual(c.rtcConfiguration({ iceServers: [{ urls: 'stun:mine' }] }), {
    iceServers: [{ urls: 'stun:mine' }],
  });
  // junk is not handed to RTCPeerConnection
  const ws6 = await drop();
  ws6.open();
  ws6.message(resumed(false));
  ws6.message(welcome(4, { iceServers: [{ urls: 42 }] }));
  assert.equal(c.iceServers, null);
  assert.equal(log.of('welcome').length, 4);
  c.close();
});
