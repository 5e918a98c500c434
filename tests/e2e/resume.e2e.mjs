// Session resume in a browser. The demo page (Chromium, `resume: true`) signals through a TCP
// proxy the test cuts (cut-proxy.mjs: both sides dropped, no close frame, as in a Wi-Fi blip);
// a werift host (werift-peer.mjs) is the other party, connected directly.
//
// 1. Cut mid-negotiation, after the page's offer went out and before the answer and the host's
//    candidates reached it: the page resumes its session, the server replays what it missed,
//    and the call connects on that one offer (no renegotiation, no session-lost).
// 2. Cut during a call, network down until the resume window passed: the page reports the
//    session lost, joins afresh and the call is set up again (the host offers to the newcomer).
//
//   page (Chromium, demo) -- cut-proxy -- signal-server -- werift host
//
// Environment: as browser.e2e.mjs.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { demoState, launchChromium, openDemo, saveScreenshots } from './browser-lib.mjs';
import { startCutProxy } from './cut-proxy.mjs';
import { startServer, stopAll, waitFor } from './harness.mjs';
import { startStaticServer } from './static-server.mjs';
import { startStunResponder } from './stun-responder.mjs';
import { startWeriftPeer } from './werift-peer.mjs';

const bin = process.env.SIGNAL_SERVER_BIN;
const skip = bin ? false : 'SIGNAL_SERVER_BIN not set';
after(stopAll);

let shared = null;
/** Chromium, the page server and the STUN responder, shared by the tests. */
async function setup() {
  if (shared) return shared;
  const web = await startStaticServer();
  const stun = await startStunResponder();
  const browser = await launchChromium();
  shared = { web, stun, browser };
  return shared;
}
after(async () => {
  if (!shared) return;
  await shared.browser.close();
  await shared.web.close();
  await shared.stun.close();
});

const ms = (x) => (x === undefined ? '-' : `${x.toFixed(2)} ms`);

/** Both ends connected with the DataChannel carrying messages both ways since `since`. */
const callUp = (b, h, since = { page: 0, host: 0 }) =>
  b.pcState === 'connected' && h.pcState === 'connected' &&
  b.received.slice(since.page).some((m) => m.from === 'host') &&
  h.received.slice(since.host).some((m) => m.kind === 'ping' || m.kind === 'pong');

/**
 * Runs `body` with a server (env), a proxy in front of it (onDown, see cut-proxy.mjs), the demo
 * page joined through the proxy, and a function that starts the host; reports everything on
 * failure.
 */
async function withCall(t, name, { env = {}, onDown } = {}, body) {
  const { web, stun, browser } = await setup();
  const server = await startServer({ bin, env });
  t.after(() => server.stop());
  const proxy = await startCutProxy({ port: server.port, onDown: (text) => onDown?.(text, proxy) });
  t.after(() => proxy.close());
  const room = `e2e-resume-${name}-${process.pid}`;
  const hostLog = [];
  const log = (l) => hostLog.push(`${(performance.now() / 1000).toFixed(3)} ${l}`);
  let host = null;
  let page = null;
  let context = null;
  try {
    ({ page, context } = await openDemo(browser, web.url, { server: proxy.url, room, name: 'browser' }));
    await waitFor(async () => (await demoState(page)).signaling === 'open', { timeoutMs: 15000, what: 'page to join' });
    assert.equal((await demoState(page)).session, 'new');
    const startHost = async () => {
      host = await startWeriftPeer({ url: server.url, roomId: room, iceServers: [{ urls: stun.url }], log });
      return host;
    };
    await body({ server, proxy, page, startHost });
  } catch (err) {
    if (page) {
      await saveScreenshots([page], `resume-${name}`);
      try {
        console.log(`# browser state: ${JSON.stringify(await demoState(page))}`);
      } catch {}
      for (const line of page.consoleLines) console.log(`# ${line}`);
      try {
        console.log(`# page log:\n${(await page.textContent('#log')).replace(/^/gm, '#   ')}`);
      } catch {}
    }
    if (host) console.log(`# host state: ${JSON.stringify({ ...host.state, received: host.state.received.length })}`);
    for (const line of hostLog) console.log(`# [host] ${line}`);
    console.log(`# proxy: ${JSON.stringify(proxy.stats)}`);
    console.log(`# server output:\n${server.output.replace(/^/gm, '#   ')}`);
    throw err;
  } finally {
    await host?.close();
    await context?.close().catch(() => {});
  }
}

test('signaling cut mid-negotiation: the page resumes and the call connects on the first offer', {
  skip,
  timeout: 120000,
}, async (t) => {
  let armed = true;
  const onDown = (text, proxy) => {
    // the page has been told about the host: its offer is next, and what answers it is held
    if (armed && text.includes('"action":"peer-joined"')) {
      armed = false;
      proxy.hold({ down: true });
    }
  };
  await withCall(t, 'mid-negotiation', { onDown }, async ({ server, proxy, page, startHost }) => {
    const host = await startHost();
    // The offer reached the host; its answer and a candidate went back towards the page, and
    // are held in the proxy.
    await waitFor(() => host.state.offersReceived === 1, { timeoutMs: 15000, what: 'the offer at the host' });
    await waitFor(() => {
      const held = proxy.held().down;
      return held.includes('"type":"answer"') && held.includes('"type":"candidate"');
    }, { timeoutMs: 15000, what: 'the answer and a host candidate held in the proxy' });
    const before = await demoState(page);
    assert.equal(before.offersSent, 1);
    assert.equal(before.answersReceived, 0, 'the answer has not reached the page');
    assert.notEqual(before.pcState, 'connected');
    assert.equal(proxy.cut(), 1);

    const s = await waitFor(async () => {
      const b = await demoState(page);
      return callUp(b, host.state) ? b : null;
    }, { timeoutMs: 45000, intervalMs: 50, what: 'page and host connected after the resume, DataChannel both ways' });
    assert.equal(s.session, 'resumed');
    assert.equal(s.resumes, 1);
    assert.equal(s.sessionsLost, 0);
    assert.equal(s.offersSent, 1, 'the page sent one offer');
    assert.equal(s.answersReceived, 1, 'the answer arrived once, replayed');
    assert.equal(host.state.offersReceived, 1, 'the host received one offer');
    assert.equal(host.state.offersSent, 0);
    assert.equal(s.role, 'offerer');
    assert.equal(host.state.role, 'answerer');
    assert.deepEqual([...s.errors, ...host.state.errors], []);
    assert.equal(proxy.stats.cuts, 1);
    assert.equal(proxy.stats.accepted, 2, 'one connection, then the resume');
    const resumedLine = server.output.split('\n').find((l) => l.includes('"msg":"Client resumed"'));
    assert.ok(resumedLine, 'the server logged the resume');
    await waitFor(() => host.state.rtpPackets > 0, { timeoutMs: 15000, what: 'RTP at the host' });
    console.log(`# ${resumedLine}`);
    console.log(
      `# connected after the cut on the first offer; RTT page ${ms(s.rtts.at(-1))}, ` +
        `host ${ms(host.state.rtts.at(-1))}; RTP packets at host ${host.state.rtpPackets}`,
    );
  });
});

test('signaling down longer than the resume window: session-lost, and the call is set up again', {
  skip,
  timeout: 120000,
}, async (t) => {
  await withCall(t, 'lost', { env: { RESUME_WINDOW_MS: '500' } }, async ({ proxy, page, startHost }) => {
    const host = await startHost();
    await waitFor(async () => callUp(await demoState(page), host.state), {
      timeoutMs: 45000, intervalMs: 50, what: 'the first call',
    });
    const first = await demoState(page);
    assert.equal(first.role, 'offerer');
    const since = { page: first.received.length, host: host.state.received.length };

    proxy.refuse = true;
    assert.equal(proxy.cut(), 1);
    // The network stays down until the server has given the seat up (the host is told).
    await waitFor(() => host.state.pcState === 'closed', { timeoutMs: 15000, what: 'peer-disconnected at the host' });
    await waitFor(() => proxy.stats.refused >= 1, { timeoutMs: 15000, what: 'a reconnect refused' });
    proxy.refuse = false;

    const s = await waitFor(async () => {
      const b = await demoState(page);
      return b.sessionsLost === 1 && callUp(b, host.state, since) ? b : null;
    }, { timeoutMs: 45000, intervalMs: 50, what: 'session-lost at the page, then the call set up again' });
    assert.equal(s.lastLost, 'not-recovered');
    assert.equal(s.session, 'new');
    assert.equal(s.resumes, 0);
    assert.equal(s.role, 'answerer', 'the host, in the room first now, offered');
    assert.equal(s.offersSent, 1);
    assert.equal(s.offersReceived, 1);
    assert.equal(host.state.offersSent, 1);
    assert.equal(host.state.role, 'offerer');
    assert.deepEqual([...s.errors, ...host.state.errors], []);
    console.log(`# session lost (${s.lastLost}) and the call set up again; RTT page ${ms(s.rtts.at(-1))}`);
  });
});
