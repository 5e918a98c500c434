// TURN credentials from signal-server, proven through a real coturn (PROTOCOL.md section 9).
//
// coturn (Debian's turnserver) runs on loopback, on free ports, with use-auth-secret and the
// secret signal-server signs with. Then:
// 1. Two demo pages in Chromium with iceTransportPolicy 'relay' (TURN only), each taking its
//    iceServers from its welcome, connect through coturn: the DataChannel carries messages both
//    ways and the selected candidate pair is relay <-> relay on both pages.
// 2. A credential signed with another secret, and 3. one past its expiry, are refused by coturn
//    (401): relay-only peers holding them gather no candidate and never connect.
//
// Environment: as browser.e2e.mjs, plus TURNSERVER_BIN (default turnserver, from Debian's coturn).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { demoState, launchChromium, openDemo, saveScreenshots } from './browser-lib.mjs';
import { startCoturn, startServer, stopAll, waitFor } from './harness.mjs';
import { startStaticServer } from './static-server.mjs';

const bin = process.env.SIGNAL_SERVER_BIN;
const skip = bin ? false : 'SIGNAL_SERVER_BIN not set';
const secret = randomBytes(24).toString('base64');

/** @type {{coturn: any, web: any, browser: any, turnUrl: string}} */
let env;
before(async () => {
  if (skip) return;
  const coturn = await startCoturn({ bin: process.env.TURNSERVER_BIN ?? 'turnserver', secrets: [secret] });
  const web = await startStaticServer();
  const browser = await launchChromium();
  env = { coturn, web, browser, turnUrl: `turn:127.0.0.1:${coturn.port}?transport=udp` };
});
after(async () => {
  await env?.browser.close();
  await env?.web.close();
  await env?.coturn.stop(); // by its pid (SIGTERM, then SIGKILL)
  await stopAll();
});

let roomSeq = 0;
const newRoom = () => `turn-${process.pid}-${++roomSeq}`;

/** Prints what the servers and coturn said, when a test failed. */
function report(servers) {
  for (const s of [...servers, env.coturn]) {
    console.log(`# ${s.name} output:\n${s.output.split('\n').slice(-80).join('\n').replace(/^/gm, '#   ')}`);
  }
}

/** The expiry (seconds since the epoch) in a use-auth-secret username `EXPIRY:CLIENTID`. */
function expiryOf(iceServers, clientId) {
  const turn = iceServers.find((s) => s.username);
  assert.ok(turn, `a TURN entry with a username in ${JSON.stringify(iceServers)}`);
  const [expiry, ...rest] = turn.username.split(':');
  assert.equal(rest.join(':'), clientId, 'username is EXPIRY:CLIENTID');
  assert.match(turn.credential, /^[A-Za-z0-9+/]{27}=$/, 'credential is base64 of a 20-byte HMAC-SHA1');
  return Number(expiry);
}

test('relay-only Chromium peers with iceServers from their welcome connect through coturn', { skip }, async (t) => {
  const server = await startServer({ bin, env: { TURN_URLS: env.turnUrl, TURN_SECRET: secret }, name: 'signal-server' });
  t.after(() => server.stop());
  const room = newRoom();
  const opened = [];
  try {
    const a = await openDemo(env.browser, env.web.url, { server: server.url, room, name: 'page-a', relay: true });
    opened.push(a);
    await waitFor(async () => (await demoState(a.page)).signaling === 'open', { timeoutMs: 15000, what: 'page A to join' });
    const b = await openDemo(env.browser, env.web.url, { server: server.url, room, name: 'page-b', relay: true });
    opened.push(b);
    const up = (s) =>
      s.pcState === 'connected' && s.pair && s.received.some((m) => m.kind === 'pong' || m.kind === 'ping');
    const [sa, sb] = await waitFor(
      async () => {
        const states = [await demoState(a.page), await demoState(b.page)];
        return states.every(up) && states.every((s) => s.rtts.length > 0) ? states : null;
      },
      { timeoutMs: 30000, intervalMs: 50, what: 'both pages connected through TURN, DataChannel both ways' },
    );
    const now = Date.now() / 1000;
    for (const [s, page] of [[sa, a.page], [sb, b.page]]) {
      assert.equal(s.iceTransportPolicy, 'relay');
      assert.deepEqual(s.iceServers, [env.turnUrl]);
      // Only relayed candidates were gathered, and the pair in use is relayed at both ends.
      assert.ok(s.localCandidates.length > 0 && s.localCandidates.every((c) => c === 'relay'), JSON.stringify(s.localCandidates));
      assert.equal(s.pair.local, 'relay', JSON.stringify(s.pair));
      assert.equal(s.pair.remote, 'relay', JSON.stringify(s.pair));
      assert.deepEqual(s.errors, []);
      // The credential the page used is its own, valid TURN_EXPIRY_SECONDS (default 14400).
      const ice = await page.evaluate(() => window.demoClient.iceServers);
      const expiry = expiryOf(ice, s.clientId);
      assert.ok(Math.abs(expiry - (now + 14400)) < 60, `expiry ${expiry} is about now + 14400`);
    }
    assert.ok(sa.received.some((m) => m.from === 'answerer') && sb.received.some((m) => m.from === 'offerer'));
    // coturn allocated a relay for each page's own username.
    for (const s of [sa, sb]) {
      assert.match(env.coturn.output, new RegExp(`user <\\d+:${s.clientId}>: incoming packet ALLOCATE processed, success`));
    }
    const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
    assert.match(metrics, /^cloudgaming_turn_credentials_issued_total 2$/m);
    console.log(`# relay pair: ${JSON.stringify(sa.pair)}; DataChannel RTT ${sa.rtts.at(-1).toFixed(2)} ms`);
    if (process.env.E2E_SCREENSHOTS === '1') await saveScreenshots([a.page, b.page], 'turn-relay-ok');
  } catch (err) {
    await saveScreenshots(opened.map((o) => o.page), 'turn-relay');
    for (const o of opened) {
      console.log(`# ${o.page.label} state: ${JSON.stringify(await demoState(o.page).catch(() => null))}`);
      for (const line of o.page.consoleLines) console.log(`# ${line}`);
    }
    report([server]);
    throw err;
  } finally {
    for (const o of opened) await o.context.close().catch(() => {});
  }
});

/**
 * Two members join `room` on `serverUrl` (SignalingClient, events=1) in one page and keep the
 * iceServers of their welcomes; returns them with the client ids.
 */
async function joinTwo(page, serverUrl, room) {
  return page.evaluate(
    async ({ serverUrl, room }) => {
      const { SignalingClient } = await import('/clients/js/signaling-client.js');
      window.members = [new SignalingClient({ reconnect: false }), new SignalingClient({ reconnect: false })];
      for (const c of window.members) await c.connect({ url: serverUrl, roomId: room, events: true });
      return window.members.map((c) => ({ clientId: c.welcome.clientId, iceServers: c.iceServers }));
    },
    { serverUrl, room },
  );
}

/**
 * Two relay-only RTCPeerConnections in the page, one per member with its own iceServers, set up
 * to call each other (offer, answer and candidates handed over directly). Resolves when both have
 * finished gathering, with what each gathered, the ICE server errors it saw and its state.
 */
async function tryRelayCall(page) {
  return page.evaluate(async () => {
    const pcs = window.members.map(
      (c) => new RTCPeerConnection(c.rtcConfiguration({ iceTransportPolicy: 'relay' })),
    );
    const seen = pcs.map(() => ({ candidates: [], errors: [] }));
    const gathered = pcs.map(
      (pc, i) =>
        new Promise((resolve) => {
          pc.onicecandidate = (e) => {
            if (!e.candidate) return resolve();
            seen[i].candidates.push(e.candidate.type);
            pcs[1 - i].addIceCandidate(e.candidate).catch(() => {});
          };
          pc.onicecandidateerror = (e) => seen[i].errors.push({ code: e.errorCode, url: e.url });
        }),
    );
    pcs[0].createDataChannel('probe');
    await pcs[0].setLocalDescription();
    await pcs[1].setRemoteDescription(pcs[0].localDescription);
    await pcs[1].setLocalDescription();
    await pcs[0].setRemoteDescription(pcs[1].localDescription);
    await Promise.all(gathered);
    const result = pcs.map((pc, i) => ({ ...seen[i], state: pc.connectionState, ice: pc.iceConnectionState }));
    for (const pc of pcs) pc.close();
    for (const c of window.members) c.close();
    return result;
  });
}

/** coturn refuses the credentials the server handed out: no relay, no connection. */
async function assertRefused(t, serverEnv, { beforeCall } = {}) {
  const server = await startServer({ bin, env: { TURN_URLS: env.turnUrl, ...serverEnv }, name: 'signal-server' });
  t.after(() => server.stop());
  const context = await env.browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  try {
    await page.goto(`${env.web.url}/clients/demo/`); // an origin that serves the client module
    const members = await joinTwo(page, server.url, newRoom());
    const expiries = members.map((m) => expiryOf(m.iceServers, m.clientId));
    await beforeCall?.(expiries);
    const result = await tryRelayCall(page);
    for (const [i, r] of result.entries()) {
      assert.deepEqual(r.candidates, [], `peer ${i} gathered no relay candidate: ${JSON.stringify(r)}`);
      assert.ok(
        r.errors.some((e) => e.code === 401 && e.url.startsWith(`turn:127.0.0.1:${env.coturn.port}`)),
        `peer ${i}: coturn answered 401: ${JSON.stringify(r.errors)}`,
      );
      assert.notEqual(r.state, 'connected');
    }
    // coturn's own word: the credential of each member, 401, and never an allocation.
    for (const [i, m] of members.entries()) {
      const user = `user <${expiries[i]}:${m.clientId}>`;
      await waitFor(() => env.coturn.output.includes(`${user}: incoming packet message processed, error 401`), {
        timeoutMs: 5000,
        what: `coturn to log its 401 to ${user}`,
      });
      assert.ok(!env.coturn.output.includes(`${user}: incoming packet ALLOCATE processed, success`));
    }
    return members;
  } catch (err) {
    report([server]);
    throw err;
  }
}

test('a credential signed with another secret is refused by coturn', { skip }, async (t) => {
  await assertRefused(t, { TURN_SECRET: randomBytes(24).toString('base64') });
});

test('a credential past its expiry is refused by coturn', { skip }, async (t) => {
  await assertRefused(t, { TURN_SECRET: secret, TURN_EXPIRY_SECONDS: '1' }, {
    // coturn refuses a username whose expiry is before its clock (whole seconds).
    beforeCall: (expiries) =>
      waitFor(() => Date.now() >= (Math.max(...expiries) + 1) * 1000, {
        timeoutMs: 5000,
        what: 'the credentials to expire',
      }),
  });
});
