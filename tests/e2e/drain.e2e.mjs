// A call that outlives the drain of its signaling instance. Two signal-server instances share
// one redis-server (REDIS_URL) and one RESUME_SECRET; the demo page (Chromium, `resume: true`)
// signals to instance 1 through a TCP proxy (cut-proxy.mjs, the "load balancer"), a werift host
// (werift-peer.mjs) signals to instance 2 directly.
//
// Once the call is up (DataChannel both ways), instance 1 gets SIGTERM: it closes the page's
// socket with 1012 (its resume token stays valid) and exits 0. The proxy turns new connections
// away meanwhile, then sends them to instance 2, where the page resumes its session
// (recovered: true) and gets the signaling sent to it in the gap, once: no session-lost, no new
// offer or answer, the DataChannel still carries messages both ways and signaling still relays
// both ways.
//
//   page (Chromium, demo) -- cut-proxy -- signal-server 1 --(SIGTERM)
//                                   \____ signal-server 2 -- werift host
//                            (after the drain)    \____ redis-server
//
// Environment: as browser.e2e.mjs (SIGNAL_SERVER_BIN, REDIS_SERVER_BIN, E2E_NODE_MODULES).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { demoState, launchChromium, openDemo, saveScreenshots } from './browser-lib.mjs';
import { startCutProxy } from './cut-proxy.mjs';
import { startRedis, startServer, stopAll, waitFor } from './harness.mjs';
import { startStaticServer } from './static-server.mjs';
import { startStunResponder } from './stun-responder.mjs';
import { startWeriftPeer } from './werift-peer.mjs';

const bin = process.env.SIGNAL_SERVER_BIN;
const skip = bin ? false : 'SIGNAL_SERVER_BIN not set';
after(stopAll);

const ms = (x) => (x === undefined ? '-' : `${x.toFixed(2)} ms`);

/** Both ends connected with the DataChannel carrying messages both ways since `since`. */
const callUp = (b, h, since = { page: 0, host: 0 }) =>
  b.pcState === 'connected' && h.pcState === 'connected' &&
  b.received.slice(since.page).some((m) => m.from === 'host') &&
  h.received.slice(since.host).some((m) => m.kind === 'ping' || m.kind === 'pong');

/**
 * Makes the page's SignalingClient reachable (window.e2eClient) and records what it emits that
 * the demo does not keep (window.e2e): closes, resumed payloads, session-lost, opens, controls.
 * The demo's client is a module variable; the library module is shared, so patching its
 * prototype's _emit catches the instance on its next event.
 */
async function instrumentPage(page) {
  await page.evaluate(async () => {
    const { SignalingClient } = await import('/clients/js/signaling-client.js');
    const w = /** @type {any} */ (window);
    w.e2e = { closes: [], resumed: [], lost: [], opens: [], controls: [] };
    const proto = /** @type {any} */ (SignalingClient.prototype);
    const orig = proto._emit;
    proto._emit = function (type, ev) {
      w.e2eClient = this;
      const rec = w.e2e;
      if (type === 'close') rec.closes.push({ code: ev.code, reason: ev.reason, willReconnect: ev.willReconnect });
      if (type === 'resumed') rec.resumed.push(ev);
      if (type === 'session-lost') rec.lost.push(ev);
      if (type === 'open') rec.opens.push(ev);
      if (type === 'control') rec.controls.push({ action: ev.action, payload: ev.payload });
      return orig.call(this, type, ev);
    };
  });
}
const pageRecord = (page) => page.evaluate(() => JSON.parse(JSON.stringify(/** @type {any} */ (window).e2e)));

/** GET /readyz answers 200. */
async function ready(server) {
  try {
    const r = await fetch(`http://127.0.0.1:${server.port}/readyz`);
    return r.status === 200;
  } catch {
    return false;
  }
}

test('instance drained under a call: the page resumes on the other instance, nothing renegotiated', {
  skip,
  timeout: 150000,
}, async (t) => {
  const web = await startStaticServer();
  t.after(() => web.close());
  const stun = await startStunResponder();
  t.after(() => stun.close());
  const redis = await startRedis({ bin: process.env.REDIS_SERVER_BIN ?? 'redis-server' });
  t.after(() => redis.stop());
  const env = { REDIS_URL: redis.url, RESUME_SECRET: `e2e-drain-${process.pid}` };
  const one = await startServer({ bin, env, name: 'server-1' });
  t.after(() => one.stop());
  const two = await startServer({ bin, env, name: 'server-2' });
  t.after(() => two.stop());
  for (const s of [one, two]) {
    await waitFor(() => ready(s), { timeoutMs: 15000, intervalMs: 50, what: `${s.name} /readyz` });
  }
  const proxy = await startCutProxy({ port: one.port });
  t.after(() => proxy.close());
  const browser = await launchChromium();
  t.after(() => browser.close());

  const room = `e2e-drain-${process.pid}`;
  const hostLog = [];
  const log = (l) => hostLog.push(`${(performance.now() / 1000).toFixed(3)} ${l}`);
  const hostEvents = { suspended: 0, resumed: 0, disconnected: 0, controls: [] };
  let host = null;
  let page = null;
  let context = null;
  let oneExit;
  try {
    ({ page, context } = await openDemo(browser, web.url, { server: proxy.url, room, name: 'browser' }));
    await waitFor(async () => (await demoState(page)).signaling === 'open', { timeoutMs: 15000, what: 'page to join' });
    assert.equal((await demoState(page)).session, 'new');
    await instrumentPage(page);

    host = await startWeriftPeer({ url: two.url, roomId: room, iceServers: [{ urls: stun.url }], log });
    host.client.on('peer-suspended', () => hostEvents.suspended++);
    host.client.on('peer-resumed', () => hostEvents.resumed++);
    host.client.on('peer-disconnected', () => hostEvents.disconnected++);
    host.client.on('control', (m) => hostEvents.controls.push({ action: m.action, payload: m.payload }));

    await waitFor(async () => callUp(await demoState(page), host.state), {
      timeoutMs: 45000, intervalMs: 50, what: 'the call across the two instances, DataChannel both ways',
    });
    const first = await demoState(page);
    assert.equal(first.role, 'offerer');
    assert.equal(first.offersSent, 1);
    assert.equal(first.answersReceived, 1);
    assert.equal(host.state.offersReceived, 1);
    assert.ok(await page.evaluate(() => !!(/** @type {any} */ (window).e2eClient)), 'the page client is reachable');
    assert.equal(proxy.stats.accepted, 1);

    // Drain instance 1. The proxy turns new connections away meanwhile (a load balancer
    // taking the instance out), so the page's early reconnects go nowhere.
    proxy.refuse = true;
    const drainStart = performance.now();
    oneExit = await one.stop('SIGTERM', 20000);
    const drainMs = performance.now() - drainStart;
    assert.equal(oneExit, 0, 'instance 1 exits 0 after draining');
    const rec0 = await pageRecord(page);
    assert.ok(rec0.closes.some((c) => c.code === 1012 && c.willReconnect), `the page saw 1012: ${JSON.stringify(rec0.closes)}`);
    // Signaling sent to the page while it has no socket is kept for it and replayed once.
    assert.equal(host.client.sendControl('e2e-gap', { from: 'host' }), 'sent');
    proxy.retarget({ port: two.port });
    proxy.refuse = false;

    // The page resumes on instance 2.
    await waitFor(async () => (await demoState(page)).resumes >= 1, {
      timeoutMs: 30000, intervalMs: 50, what: 'the page to resume on instance 2',
    });
    const atResume = await demoState(page);
    const since = { page: atResume.received.length, host: host.state.received.length };
    const rec = await pageRecord(page);
    assert.equal(atResume.session, 'resumed');
    assert.equal(atResume.signaling, 'open');
    assert.deepEqual(rec.lost, [], 'no session-lost');
    assert.equal(rec.resumed.length, 1);
    assert.equal(rec.resumed[0].recovered, true, 'resumed with recovered: true');
    assert.ok(rec.opens.some((o) => o.resumed === true), 'open with resumed: true');
    await waitFor(async () => (await pageRecord(page)).controls.some((c) => c.action === 'e2e-gap'), {
      timeoutMs: 10000, what: 'the control sent during the gap, replayed to the page',
    });
    await waitFor(() => hostEvents.suspended >= 1 && hostEvents.resumed >= 1, {
      timeoutMs: 15000, what: 'peer-suspended and peer-resumed at the host',
    });

    // Signaling still relays both ways, across the two instances.
    await page.evaluate(() => /** @type {any} */ (window).e2eClient.sendControl('e2e-note', { from: 'page', n: 1 }));
    await waitFor(() => hostEvents.controls.some((c) => c.action === 'e2e-note' && c.payload?.from === 'page'), {
      timeoutMs: 10000, what: 'the page\'s control message at the host',
    });
    host.client.sendControl('e2e-note', { from: 'host', n: 1 });
    await waitFor(async () => (await pageRecord(page)).controls.some((c) => c.action === 'e2e-note' && c.payload?.from === 'host'), {
      timeoutMs: 10000, what: 'the host\'s control message at the page',
    });

    // The DataChannel still carries messages both ways (pings and their pongs, each side).
    const s = await waitFor(async () => {
      const b = await demoState(page);
      const h = host.state.received.slice(since.host);
      const p = b.received.slice(since.page);
      const ok = callUp(b, host.state, since) &&
        p.some((m) => m.kind === 'ping') && p.some((m) => m.kind === 'pong') &&
        h.some((m) => m.kind === 'ping') && h.some((m) => m.kind === 'pong');
      return ok ? b : null;
    }, { timeoutMs: 15000, intervalMs: 50, what: 'DataChannel pings and pongs both ways after the drain' });

    const end = await pageRecord(page);
    assert.equal(s.session, 'resumed');
    assert.equal(s.resumes, 1);
    assert.equal(s.sessionsLost, 0);
    assert.deepEqual(end.lost, []);
    assert.equal(end.controls.filter((c) => c.action === 'e2e-gap').length, 1, 'the gap\'s control arrived once');
    assert.equal(s.offersSent, 1, 'the page sent one offer');
    assert.equal(s.offersReceived, 0);
    assert.equal(s.answersReceived, 1, 'the page received one answer');
    assert.equal(host.state.offersReceived, 1, 'the host received one offer');
    assert.equal(host.state.offersSent, 0);
    assert.equal(host.state.answersReceived, 0);
    assert.equal(hostEvents.disconnected, 0, 'the host never saw the page leave');
    assert.equal(s.pcState, 'connected');
    assert.equal(host.state.pcState, 'connected');
    assert.deepEqual([...s.errors, ...host.state.errors], []);
    assert.equal(proxy.stats.accepted, 2, 'one connection to instance 1, then the resume on instance 2');
    const resumedLine = two.output.split('\n').find((l) => l.includes('"msg":"Client resumed"'));
    assert.ok(resumedLine, 'instance 2 logged the resume');
    console.log(`# instance 1 drained in ${drainMs.toFixed(0)} ms (exit ${oneExit}); reconnects refused meanwhile: ${proxy.stats.refused}`);
    console.log(`# ${resumedLine}`);
    console.log(
      `# resumed on instance 2 with the first offer; RTT page ${ms(s.rtts.at(-1))}, ` +
        `host ${ms(host.state.rtts.at(-1))}; RTP packets at host ${host.state.rtpPackets}`,
    );
  } catch (err) {
    if (page) {
      await saveScreenshots([page], 'drain');
      try {
        console.log(`# browser state: ${JSON.stringify(await demoState(page))}`);
        console.log(`# page client events: ${JSON.stringify(await pageRecord(page))}`);
      } catch {}
      for (const line of page.consoleLines) console.log(`# ${line}`);
      try {
        console.log(`# page log:\n${(await page.textContent('#log')).replace(/^/gm, '#   ')}`);
      } catch {}
    }
    if (host) console.log(`# host state: ${JSON.stringify({ ...host.state, received: host.state.received.length })}`);
    console.log(`# host events: ${JSON.stringify(hostEvents)}`);
    for (const line of hostLog) console.log(`# [host] ${line}`);
    console.log(`# proxy: ${JSON.stringify(proxy.stats)} target ${JSON.stringify(proxy.target)}`);
    console.log(`# instance 1 (exit ${oneExit ?? one.exitCode}):\n${one.output.replace(/^/gm, '#   ')}`);
    console.log(`# instance 2:\n${two.output.replace(/^/gm, '#   ')}`);
    throw err;
  } finally {
    await host?.close();
    await context?.close().catch(() => {});
  }
});
