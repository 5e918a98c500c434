// A non-browser host (werift, pure JavaScript, in Node) and a Chromium page call each other
// through signal-server: offer/answer/candidates relayed, the connection reaches
// `connected`, DataChannel messages go both ways. Both orders: the browser offers (the host
// joins second) and the host offers (the browser joins second).
// Environment: as browser.e2e.mjs.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { demoState, launchChromium, openDemo, saveScreenshots } from './browser-lib.mjs';
import { startServer, stopAll, waitFor } from './harness.mjs';
import { startStaticServer } from './static-server.mjs';
import { startStunResponder } from './stun-responder.mjs';
import { startWeriftPeer } from './werift-peer.mjs';

const bin = process.env.SIGNAL_SERVER_BIN;
const skip = bin ? false : 'SIGNAL_SERVER_BIN not set';
after(stopAll);

let env = null;
async function setup() {
  if (env) return env;
  const server = await startServer({ bin });
  const web = await startStaticServer();
  const browser = await launchChromium();
  const stun = await startStunResponder();
  env = { server, web, browser, stun };
  return env;
}
after(async () => {
  if (!env) return;
  await env.browser.close();
  await env.web.close();
  await env.stun.close();
  await env.server.stop();
});

async function call(t, { hostFirst }) {
  const { server, web, browser, stun } = await setup();
  const iceServers = [{ urls: stun.url }];
  const room = `e2e-werift-${hostFirst ? 'host' : 'browser'}-first-${process.pid}`;
  const hostLog = [];
  const log = (l) => hostLog.push(`${(performance.now() / 1000).toFixed(3)} ${l}`);
  let host = null;
  let page = null;
  let context = null;
  try {
    if (hostFirst) host = await startWeriftPeer({ url: server.url, roomId: room, iceServers, log });
    ({ page, context } = await openDemo(browser, web.url, { server: server.url, room, name: 'browser' }));
    await waitFor(async () => (await demoState(page)).signaling === 'open', { timeoutMs: 15000, what: 'page to join' });
    if (!hostFirst) host = await startWeriftPeer({ url: server.url, roomId: room, iceServers, log });

    const s = await waitFor(
      async () => {
        const b = await demoState(page);
        const h = host.state;
        const ok = b.pcState === 'connected' && h.pcState === 'connected' && b.rtts.length > 0 &&
          h.rtts.length > 0 && b.received.some((m) => m.from === 'host') &&
          h.received.some((m) => m.kind === 'ping' || m.kind === 'pong');
        return ok ? b : null;
      },
      { timeoutMs: 45000, intervalMs: 50, what: 'browser and host connected, DataChannel both ways' },
    );
    assert.equal(s.role, hostFirst ? 'answerer' : 'offerer');
    assert.equal(host.state.role, hostFirst ? 'offerer' : 'answerer');
    assert.deepEqual([...s.errors, ...host.state.errors], []);
    if (!hostFirst) {
      // the browser's offer carries its canvas video: the host receives RTP
      await waitFor(() => host.state.rtpPackets > 0, { timeoutMs: 15000, what: 'RTP at the host' });
    }
    if (process.env.E2E_VERBOSE === '1') for (const line of hostLog) console.log(`# [host] ${line}`);
    console.log(
      `# ${hostFirst ? 'host' : 'browser'} offered: connected; RTT browser ${s.rtts.at(-1).toFixed(2)} ms, ` +
        `host ${host.state.rtts.at(-1).toFixed(2)} ms; RTP packets at host ${host.state.rtpPackets}`,
    );
  } catch (err) {
    if (page) {
      await saveScreenshots([page], `werift-${hostFirst ? 'host' : 'browser'}-first`);
      try {
        console.log(`# browser state: ${JSON.stringify(await demoState(page))}`);
      } catch {}
      for (const line of page.consoleLines) console.log(`# ${line}`);
    }
    if (host) console.log(`# host state: ${JSON.stringify({ ...host.state, received: host.state.received.length })}`);
    for (const line of hostLog) console.log(`# [host] ${line}`);
    console.log(`# server output:\n${server.output.replace(/^/gm, '#   ')}`);
    throw err;
  } finally {
    await host?.close();
    await context?.close().catch(() => {});
  }
}

test('browser offers, werift host answers', { skip, timeout: 120000 }, (t) => call(t, { hostFirst: false }));
test('werift host offers, browser answers', { skip, timeout: 120000 }, (t) => call(t, { hostFirst: true }));
